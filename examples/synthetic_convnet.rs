//! Evidence that the synthetic set is learnable by a small convnet: trains a 3-layer convnet
//! with SGD (momentum 0.9) through the data loader for a few hundred steps on the CPU backend
//! and prints the validation accuracy.
//! `cargo run --release --example synthetic_convnet -- [STEPS] [CLASSES]`

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use repopt_tui::data::{self, Augment, Loader, LoaderConfig};

#[derive(Module, Debug)]
struct Net<B: Backend> {
    c1: Conv2d<B>,
    c2: Conv2d<B>,
    c3: Conv2d<B>,
    pool: AdaptiveAvgPool2d,
    fc: Linear<B>,
    act: Relu,
}

impl<B: Backend> Net<B> {
    fn new(classes: usize, device: &B::Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Net {
            c1: conv(3, 16),
            c2: conv(16, 32),
            c3: conv(32, 64),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(64, classes).init(device),
            act: Relu::new(),
        }
    }
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self.act.forward(self.c1.forward(x));
        let x = self.act.forward(self.c2.forward(x));
        let x = self.act.forward(self.c3.forward(x));
        let x = self.pool.forward(x);
        self.fc.forward(x.flatten(1, 3))
    }
}

fn main() -> anyhow::Result<()> {
    type B = Autodiff<Flex>;
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(300);
    let classes: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let spec = data::DatasetSpec::synthetic(classes, 32, 20_000, 1_000, 1);
    let ds = data::open(&spec)?;
    let device = Default::default();
    let mut model = Net::<B>::new(classes, &device);
    let mut opt = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let train = Loader::new(
        ds.train.clone(),
        ds.pipeline(Augment::CifarStandard, true),
        LoaderConfig::train(64, 0, 1),
    );
    let t0 = std::time::Instant::now();
    let mut step = 0;
    'epochs: for epoch in 0.. {
        for batch in train.epoch(epoch, 0) {
            let (x, y) = batch?.into_tensors::<B>(&device);
            let loss = loss_fn.forward(model.forward(x), y);
            if step % 50 == 0 {
                let l: f32 = loss.clone().into_scalar();
                println!(
                    "step {step:4}  loss {l:.3}  ({:.1} s)",
                    t0.elapsed().as_secs_f64()
                );
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(0.05, model, grads);
            step += 1;
            if step == steps {
                break 'epochs;
            }
        }
    }
    let model = model.valid();
    let val = Loader::new(
        ds.val.clone(),
        ds.pipeline(Augment::CifarStandard, false),
        LoaderConfig::eval(250, 1),
    );
    let (mut right, mut total) = (0usize, 0usize);
    for batch in val.epoch(0, 0) {
        let (x, y) = batch?.into_tensors::<Flex>(&device);
        let pred = model.forward(x).argmax(1).flatten::<1>(0, 1);
        let p: Vec<i64> = pred
            .into_data()
            .convert::<i64>()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let t: Vec<i64> = y
            .into_data()
            .convert::<i64>()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        right += p.iter().zip(&t).filter(|(a, b)| a == b).count();
        total += t.len();
    }
    println!(
        "{classes} classes, {steps} SGD steps of 64: val accuracy {:.3} ({right}/{total}), {:.1} s",
        right as f64 / total as f64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

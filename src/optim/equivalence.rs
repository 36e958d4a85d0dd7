//! The equivalence check behind `repopt-tui verify`: a CSLA model (the HS model with constant
//! s and t, trainable identity scales) trained with plain SGD/AdamW, against the plain model
//! trained with the RepOptimizer from the equivalent initial kernels, side by side on the same
//! random batches. If gradient re-parameterization is ported right, the plain model's kernels
//! stay equal to the CSLA model's equivalent kernels, and so do the outputs.

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::kernels::equivalent_kernel;
use super::optimizer::{GradMults, OptimizerConfig, RepOptimizer, UpdatePath, UpdateRule};
use crate::model::loss::cross_entropy;
use crate::model::{HsNet, TargetNet, Variant};
use crate::profile::{BlockScales, ScalesProfile};

#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub variant: Variant,
    /// Scales of the imaginary CSLA blocks; random (some negative) when None.
    pub scales: Option<ScalesProfile>,
    pub optimizer: OptimizerConfig,
    pub steps: usize,
    pub batch: usize,
    pub resolution: usize,
    pub classes: usize,
    pub lr: f64,
    pub seed: u64,
    /// Use the tensor-operation update even on the CPU (the path GPUs take).
    pub tensor_ops: bool,
    /// Use this update path on both sides (None: the backend's own).
    pub update_path: Option<UpdatePath>,
}

impl VerifyConfig {
    /// The official SGD recipe (momentum 0.9, Nesterov, wd 4e-5) on a tiny variant.
    pub fn new(variant: Variant) -> Self {
        VerifyConfig {
            variant,
            scales: None,
            optimizer: OptimizerConfig::new(UpdateRule::official_sgd(), 4e-5),
            steps: 20,
            batch: 8,
            resolution: 32,
            classes: 10,
            lr: 0.01,
            seed: 1,
            tensor_ops: false,
            update_path: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Largest relative L2 difference, over blocks, between the RepOpt model's 3x3 kernel and
    /// the CSLA model's equivalent kernel after training.
    pub kernel_rel_diff: f64,
    /// Block where `kernel_rel_diff` was found.
    pub worst_block: String,
    /// Relative L2 difference of the two models' logits on a held-out batch (eval mode).
    pub output_rel_diff: f64,
    /// Training losses of the CSLA and the RepOpt model, per step.
    pub csla_losses: Vec<f64>,
    pub repopt_losses: Vec<f64>,
    /// How far the kernels moved from their initial values (relative): shows training happened.
    pub kernel_motion: f64,
}

impl VerifyReport {
    pub fn max_rel_diff(&self) -> f64 {
        self.kernel_rel_diff.max(self.output_rel_diff)
    }
}

/// Random per-channel scales: s and t in ±[0.2, 1.5] with about a quarter negative, u in [0.3, 1.3].
pub fn random_scales(variant: &Variant, seed: u64, allow_negative: bool) -> ScalesProfile {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5ca1e5);
    let draw = |n: usize, rng: &mut ChaCha8Rng| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let m = rng.random_range(0.2f32..1.5);
                if allow_negative && rng.random_bool(0.25) {
                    -m
                } else {
                    m
                }
            })
            .collect()
    };
    let blocks = variant
        .plan()
        .iter()
        .map(|p| {
            let c = p.out_channels;
            let s = draw(c, &mut rng);
            let t = draw(c, &mut rng);
            let u = p
                .has_identity()
                .then(|| (0..c).map(|_| rng.random_range(0.3f32..1.3)).collect());
            BlockScales {
                name: p.name.clone(),
                s,
                t,
                u,
            }
        })
        .collect();
    ScalesProfile {
        variant: variant.name.to_string(),
        source: format!("random (seed {seed})"),
        blocks,
    }
}

fn host(t: Tensor<impl burn::tensor::backend::Backend, 1>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32")
}

fn host4(t: Tensor<impl burn::tensor::backend::Backend, 4>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32")
}

/// The CSLA model's equivalent 3x3 kernel per block, with its current u.
fn csla_kernels<AB: AutodiffBackend>(hs: &HsNet<AB>, scales: &ScalesProfile) -> Vec<Vec<f32>> {
    hs.blocks()
        .zip(&scales.blocks)
        .map(|(b, sc)| {
            let cin = b.conv.weight.dims()[1];
            let u = b.scale_identity.as_ref().map(|l| host(l.weight.val()));
            equivalent_kernel(
                &host4(b.conv.weight.val()),
                &host4(b.conv_1x1.weight.val()),
                cin,
                &sc.s,
                &sc.t,
                u.as_deref(),
            )
        })
        .collect()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn batch<AB: AutodiffBackend>(
    cfg: &VerifyConfig,
    rng: &mut ChaCha8Rng,
    device: &AB::Device,
) -> (Tensor<AB, 4>, Tensor<AB, 1, Int>) {
    let shape = [cfg.batch, 3, cfg.resolution, cfg.resolution];
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n).map(|_| normal(rng)).collect();
    let y: Vec<i64> = (0..cfg.batch)
        .map(|_| rng.random_range(0..cfg.classes as i64))
        .collect();
    (
        Tensor::from_data(TensorData::new(x, shape), device),
        Tensor::from_data(TensorData::new(y, [cfg.batch]), device),
    )
}

/// Trains both models side by side and measures how far apart they end up.
pub fn run_equivalence<AB: AutodiffBackend>(
    cfg: &VerifyConfig,
    device: &AB::Device,
) -> VerifyReport {
    let variant = &cfg.variant;
    let scales = cfg
        .scales
        .clone()
        .unwrap_or_else(|| random_scales(variant, cfg.seed, true));

    // The CSLA model: HS blocks with s, t set to the scales (then frozen) and u trainable.
    let hs: HsNet<AB> = HsNet::init(variant, cfg.classes, cfg.seed, device);
    let hs = hs.map_blocks(|i, mut b| {
        let sc = &scales.blocks[i];
        let set = |p: Param<Tensor<AB, 1>>, v: &[f32]| {
            p.map(|_| {
                Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device).require_grad()
            })
        };
        b.scale_conv.weight = set(b.scale_conv.weight, &sc.s);
        b.scale_1x1.weight = set(b.scale_1x1.weight, &sc.t);
        if let (Some(l), Some(u)) = (b.scale_identity.take(), sc.u.as_ref()) {
            b.scale_identity = Some(crate::model::layers::ScaleLayer {
                weight: set(l.weight, u),
            });
        }
        b
    });
    let frozen: Vec<String> = variant
        .plan()
        .iter()
        .flat_map(|p| {
            [
                format!("{}.scale_conv.weight", p.name),
                format!("{}.scale_1x1.weight", p.name),
            ]
        })
        .collect();

    // The plain model, starting from the equivalent kernels, same BN and classifier.
    let initial = csla_kernels(&hs, &scales);
    let target: TargetNet<AB> = TargetNet::init(variant, cfg.classes, cfg.seed, device);
    let mut target = target.map_blocks(|i, mut b| {
        let shape = b.conv.weight.dims();
        let k = initial[i].clone();
        b.conv.weight = b
            .conv
            .weight
            .map(|_| Tensor::from_data(TensorData::new(k, shape), device).require_grad());
        b
    });
    target.linear.weight = Param::from_tensor(Tensor::from_data(
        hs.linear.weight.val().into_data(),
        device,
    ));
    target.linear.bias =
        Param::from_tensor(Tensor::from_data(hs.linear.bias.val().into_data(), device));

    let mut csla_opt = RepOptimizer::<AB::InnerBackend>::plain(cfg.optimizer).with_frozen(frozen);
    let masks = GradMults::from_scales(&scales, variant, cfg.optimizer.rule.mask_power(), device);
    let mut repopt = RepOptimizer::<AB::InnerBackend>::new(cfg.optimizer, masks);
    if cfg.tensor_ops {
        csla_opt = csla_opt.with_tensor_ops();
        repopt = repopt.with_tensor_ops();
    }
    if let Some(path) = cfg.update_path {
        csla_opt = csla_opt.with_path(path);
        repopt = repopt.with_path(path);
    }

    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xda7a);
    let (mut hs, mut csla_losses, mut repopt_losses) = (hs, vec![], vec![]);
    for _ in 0..cfg.steps {
        let (x, y) = batch::<AB>(cfg, &mut rng, device);
        let loss = cross_entropy(hs.forward(x.clone(), true), y.clone(), 0.1);
        let grads = GradientsParams::from_grads(loss.backward(), &hs);
        csla_losses.push(loss.into_scalar().elem_f64());
        hs = csla_opt.step(hs, grads, cfg.lr).0;

        let loss = cross_entropy(target.forward(x, true), y, 0.1);
        let grads = GradientsParams::from_grads(loss.backward(), &target);
        repopt_losses.push(loss.into_scalar().elem_f64());
        target = repopt.step(target, grads, cfg.lr).0;
    }

    let finals = csla_kernels(&hs, &scales);
    let (mut kernel_rel_diff, mut worst_block, mut motion) = (0.0f64, String::new(), 0.0f64);
    for ((b, k_csla), (k0, p)) in target
        .blocks()
        .zip(&finals)
        .zip(initial.iter().zip(variant.plan()))
    {
        let k_plain = host4(b.conv.weight.val());
        let d = rel_l2(&k_plain, k_csla);
        if d >= kernel_rel_diff {
            kernel_rel_diff = d;
            worst_block = p.name.clone();
        }
        motion = motion.max(rel_l2(k_csla, k0));
    }
    let (x, _) = batch::<AB>(cfg, &mut rng, device);
    let out_csla = hs
        .forward(x.clone(), false)
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32");
    let out_plain = target
        .forward(x, false)
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32");
    VerifyReport {
        kernel_rel_diff,
        worst_block,
        output_rel_diff: rel_l2(&out_plain, &out_csla),
        csla_losses,
        repopt_losses,
        kernel_motion: motion,
    }
}

trait ElemF64 {
    fn elem_f64(self) -> f64;
}

impl<E: burn::tensor::ElementConversion> ElemF64 for E {
    fn elem_f64(self) -> f64 {
        self.elem::<f64>()
    }
}

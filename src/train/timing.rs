//! Timed training steps on a synthetic batch: the probe's trials and `bench model` both measure
//! a full step (forward, backward, optimizer) this way.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::loss::cross_entropy;
use crate::model::{Classifier, ModelKind, Variant};
use crate::optim::equivalence::random_scales;
use crate::optim::{GradMults, OptimizerConfig, RepOptimizer, UpdateRule};

/// The learning rate of measured steps (any small value: only the time is used).
const LR: f64 = 0.01;
/// The label smoothing of measured steps, as in the paper's recipes.
const LABEL_SMOOTHING: f64 = 0.1;

/// Seeded images in [-1, 1) and labels: the same batch for every model and engine.
pub fn synthetic_batch<B: Backend>(
    batch: usize,
    resolution: usize,
    classes: usize,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let shape = [batch, 3, resolution, resolution];
    let x: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let y: Vec<i64> = (0..batch)
        .map(|_| rng.random_range(0..classes as i64))
        .collect();
    (
        Tensor::from_data(TensorData::new(x, shape), device),
        Tensor::from_data(TensorData::new(y, [batch]), device),
    )
}

/// The official SGD (momentum 0.9, weight decay 4e-5) that measured steps use.
pub fn measurement_sgd() -> OptimizerConfig {
    OptimizerConfig::new(UpdateRule::official_sgd(), 4e-5)
}

/// The optimizer a model kind trains with: the RepOptimizer with the Grad Mult masks of random
/// scales for RepOpt-VGG (so its masks' memory and time are measured), plain SGD otherwise.
pub fn measurement_optimizer<B: Backend>(
    kind: ModelKind,
    variant: &Variant,
    device: &B::Device,
) -> RepOptimizer<B> {
    match kind {
        ModelKind::Target => {
            let masks =
                GradMults::from_scales(&random_scales(variant, 1, true), variant, 2, device);
            RepOptimizer::new(measurement_sgd(), masks)
        }
        _ => RepOptimizer::plain(measurement_sgd()),
    }
}

/// Mean seconds of a measured step and of its optimizer update alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTimes {
    pub step_s: f64,
    pub optimizer_s: f64,
}

/// One training step of `model` on the batch, ended by a device sync (so asynchronous engines
/// are timed to completion): the model after it, and the seconds of the step and of its
/// optimizer update.
fn timed_step<B: AutodiffBackend, M: AutodiffModule<B> + Classifier<B>>(
    model: M,
    opt: &mut RepOptimizer<B::InnerBackend>,
    (x, y): &(Tensor<B, 4>, Tensor<B, 1, Int>),
    device: &B::Device,
) -> (M, StepTimes) {
    let start = Instant::now();
    let loss = cross_entropy(model.logits(x.clone(), true), y.clone(), LABEL_SMOOTHING);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let before_opt = Instant::now();
    let model = opt.step(model, grads, LR).0;
    B::sync(device).expect("device sync");
    let _ = loss.into_scalar();
    let times = StepTimes {
        step_s: start.elapsed().as_secs_f64(),
        optimizer_s: before_opt.elapsed().as_secs_f64(),
    };
    (model, times)
}

/// Runs `warmup + steps` training steps of `model` on one batch and returns the means over the
/// last `steps` (the first ones pay for allocation and kernel selection).
pub fn timed_steps<B: AutodiffBackend, M: AutodiffModule<B> + Classifier<B>>(
    model: M,
    opt: &mut RepOptimizer<B::InnerBackend>,
    data: &(Tensor<B, 4>, Tensor<B, 1, Int>),
    warmup: usize,
    steps: usize,
    device: &B::Device,
) -> StepTimes {
    let [times] = timed_steps_alternating([(model, opt)], data, warmup, steps, device);
    times
}

/// [`timed_steps`] of several models, each with its optimizer, taking steps in turn (the
/// first one first on even steps, the last one first on odd steps): each sees the machine as
/// the others do, so their ratio is not moved by a machine whose speed drifts over seconds.
pub fn timed_steps_alternating<B, M, const N: usize>(
    runs: [(M, &mut RepOptimizer<B::InnerBackend>); N],
    data: &(Tensor<B, 4>, Tensor<B, 1, Int>),
    warmup: usize,
    steps: usize,
    device: &B::Device,
) -> [StepTimes; N]
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Classifier<B>,
{
    let mut runs = runs.map(Some);
    let mut totals = [StepTimes {
        step_s: 0.0,
        optimizer_s: 0.0,
    }; N];
    for i in 0..warmup + steps {
        let order: Vec<usize> = if i % 2 == 0 {
            (0..N).collect()
        } else {
            (0..N).rev().collect()
        };
        for r in order {
            let (model, opt) = runs[r].take().expect("each run is put back after its step");
            let (model, times) = timed_step(model, opt, data, device);
            runs[r] = Some((model, opt));
            if i >= warmup {
                totals[r].step_s += times.step_s;
                totals[r].optimizer_s += times.optimizer_s;
            }
        }
    }
    let n = steps.max(1) as f64;
    totals.map(|t| StepTimes {
        step_s: t.step_s / n,
        optimizer_s: t.optimizer_s / n,
    })
}

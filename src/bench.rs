//! `repopt-tui bench model`: seconds per training step (forward, backward, optimizer) of the
//! target, RepVGG and HS models, and the RepOptimizer's step against plain SGD's.

use burn::tensor::backend::AutodiffBackend;

use crate::model::{ModelKind, Variant};
use crate::optim::RepOptimizer;
use crate::train::timing::{measurement_optimizer, measurement_sgd, synthetic_batch, timed_steps};

#[derive(Debug, Clone)]
pub struct ModelBenchConfig {
    pub variant: Variant,
    pub resolution: usize,
    pub batch: usize,
    pub classes: usize,
    pub models: Vec<ModelKind>,
    pub warmup: usize,
    pub steps: usize,
}

#[derive(Debug, Clone)]
pub struct ModelBenchResult {
    pub kind: ModelKind,
    /// Mean seconds of a full training step.
    pub step_s: f64,
    pub images_per_s: f64,
    /// Mean seconds of the optimizer update alone (RepOptimizer for the target model).
    pub optimizer_s: f64,
    /// Mean seconds of a plain SGD update of the same model (target model only).
    pub plain_sgd_s: Option<f64>,
}

/// Times every model of `cfg.models` on `device`.
pub fn bench_models<B: AutodiffBackend>(
    cfg: &ModelBenchConfig,
    device: &B::Device,
) -> Vec<ModelBenchResult> {
    let v = &cfg.variant;
    let data = synthetic_batch::<B>(cfg.batch, cfg.resolution, cfg.classes, device);
    let (warmup, steps, classes) = (cfg.warmup, cfg.steps, cfg.classes);
    cfg.models
        .iter()
        .map(|&kind| {
            let (times, plain_sgd_s) = crate::with_network!(kind, B, |init| {
                // RepOpt-VGG: plain SGD first, then the RepOptimizer, each on a fresh model, so
                // the comparison does not favour the one measured second.
                let plain_sgd_s = (kind == ModelKind::Target).then(|| {
                    let mut plain = RepOptimizer::plain(measurement_sgd());
                    let model = init(v, classes, 0, device);
                    timed_steps(model, &mut plain, &data, warmup, steps, device).optimizer_s
                });
                let mut opt = measurement_optimizer(kind, v, device);
                let model = init(v, classes, 0, device);
                let times = timed_steps(model, &mut opt, &data, warmup, steps, device);
                (times, plain_sgd_s)
            });
            let (step_s, optimizer_s) = (times.step_s, times.optimizer_s);
            ModelBenchResult {
                kind,
                step_s,
                images_per_s: cfg.batch as f64 / step_s,
                optimizer_s,
                plain_sgd_s,
            }
        })
        .collect()
}

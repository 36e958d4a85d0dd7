//! `repopt-tui bench model`: seconds per training step (forward, backward, optimizer) of the
//! target, RepVGG and HS models, and the RepOptimizer's step against plain SGD's.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::loss::cross_entropy;
use crate::model::{Classifier, HsNet, ModelKind, RepVggNet, TargetNet, Variant};
use crate::optim::equivalence::random_scales;
use crate::optim::{GradMults, OptimizerConfig, RepOptimizer, UpdateRule};

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

fn batch<B: AutodiffBackend>(
    cfg: &ModelBenchConfig,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let shape = [cfg.batch, 3, cfg.resolution, cfg.resolution];
    let x: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let y: Vec<i64> = (0..cfg.batch)
        .map(|_| rng.random_range(0..cfg.classes as i64))
        .collect();
    (
        Tensor::from_data(TensorData::new(x, shape), device),
        Tensor::from_data(TensorData::new(y, [cfg.batch]), device),
    )
}

fn time_steps<B: AutodiffBackend, M: AutodiffModule<B> + Classifier<B>>(
    cfg: &ModelBenchConfig,
    mut model: M,
    opt: &mut RepOptimizer<B::InnerBackend>,
    device: &B::Device,
) -> (f64, f64, M) {
    let (x, y) = batch::<B>(cfg, device);
    let (mut total, mut optim) = (0.0, 0.0);
    for i in 0..cfg.warmup + cfg.steps {
        let start = Instant::now();
        let loss = cross_entropy(model.logits(x.clone(), true), y.clone(), 0.1);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let before_opt = Instant::now();
        model = opt.step(model, grads, 0.01).0;
        B::sync(device).expect("device sync");
        let _ = loss.into_scalar();
        if i >= cfg.warmup {
            total += start.elapsed().as_secs_f64();
            optim += before_opt.elapsed().as_secs_f64();
        }
    }
    let n = cfg.steps.max(1) as f64;
    (total / n, optim / n, model)
}

/// Times every model of `cfg.models` on `device`.
pub fn bench_models<B: AutodiffBackend>(
    cfg: &ModelBenchConfig,
    device: &B::Device,
) -> Vec<ModelBenchResult> {
    let sgd = OptimizerConfig::new(UpdateRule::official_sgd(), 4e-5);
    let v = &cfg.variant;
    cfg.models
        .iter()
        .map(|&kind| {
            let (step_s, optimizer_s, plain_sgd_s) = match kind {
                ModelKind::Target => {
                    // Plain SGD first, then the RepOptimizer, each on a fresh model: the
                    // comparison does not favour the one measured second.
                    let fresh = || TargetNet::<B>::init(v, cfg.classes, 0, device);
                    let mut plain = RepOptimizer::plain(sgd);
                    let (_, plain_optim, _) = time_steps(cfg, fresh(), &mut plain, device);
                    let masks = GradMults::from_scales(&random_scales(v, 1, true), v, 2, device);
                    let mut opt = RepOptimizer::new(sgd, masks);
                    let (step, optim, _) = time_steps(cfg, fresh(), &mut opt, device);
                    (step, optim, Some(plain_optim))
                }
                ModelKind::RepVgg => {
                    let (step, optim, _) = time_steps(
                        cfg,
                        RepVggNet::<B>::init(v, cfg.classes, 0, device),
                        &mut RepOptimizer::plain(sgd),
                        device,
                    );
                    (step, optim, None)
                }
                ModelKind::Hs => {
                    let (step, optim, _) = time_steps(
                        cfg,
                        HsNet::<B>::init(v, cfg.classes, 0, device),
                        &mut RepOptimizer::plain(sgd),
                        device,
                    );
                    (step, optim, None)
                }
                ModelKind::Deploy => {
                    let model = crate::model::DeployNet::<B>::init(v, cfg.classes, 0, device);
                    let (step, optim, _) =
                        time_steps(cfg, model, &mut RepOptimizer::plain(sgd), device);
                    (step, optim, None)
                }
            };
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

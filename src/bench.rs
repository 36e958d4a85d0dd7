//! `repopt-tui bench model`: seconds per training step (forward, backward, optimizer) of the
//! target, RepVGG and HS models, and the RepOptimizer's step against plain SGD's.
//! `repopt-tui bench collective`: the multi-node all-reduce and step on loopback.

use burn::tensor::backend::AutodiffBackend;

use crate::model::{ModelKind, Variant};
use crate::optim::RepOptimizer;
use crate::train::timing::{
    measurement_optimizer, measurement_sgd, synthetic_batch, timed_steps, timed_steps_alternating,
};

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
    /// Target model only: the RepOptimizer's update against plain SGD's.
    pub sgd_comparison: Option<SgdComparison>,
}

/// Mean seconds of the RepOptimizer's update and of plain SGD's on the same model, measured
/// on two fresh models taking steps in turn.
#[derive(Debug, Clone, Copy)]
pub struct SgdComparison {
    pub repopt_s: f64,
    pub plain_sgd_s: f64,
}

impl SgdComparison {
    /// The RepOptimizer's extra time over plain SGD's, as a fraction of the latter.
    pub fn overhead(&self) -> f64 {
        self.repopt_s / self.plain_sgd_s - 1.0
    }
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
            let (times, sgd_comparison) = crate::with_network!(kind, B, |init| {
                let mut opt = measurement_optimizer(kind, v, device);
                let model = init(v, classes, 0, device);
                // Alone, as the PyTorch peer measures its models.
                let times = timed_steps(model, &mut opt, &data, warmup, steps, device);
                let comparison = (kind == ModelKind::Target).then(|| {
                    // The RepOptimizer and plain SGD, each on a fresh model, step by step in
                    // turn: their ratio compares steps a fraction of a second apart (measured
                    // one after the other, it moved by ±10% with the machine's speed).
                    let mut opt = measurement_optimizer(kind, v, device);
                    let mut plain = RepOptimizer::plain(measurement_sgd());
                    let [repopt, plain] = timed_steps_alternating(
                        [
                            (init(v, classes, 0, device), &mut opt),
                            (init(v, classes, 0, device), &mut plain),
                        ],
                        &data,
                        warmup,
                        steps,
                        device,
                    );
                    SgdComparison {
                        repopt_s: repopt.optimizer_s,
                        plain_sgd_s: plain.optimizer_s,
                    }
                });
                (times, comparison)
            });
            let (step_s, optimizer_s) = (times.step_s, times.optimizer_s);
            ModelBenchResult {
                kind,
                step_s,
                images_per_s: cfg.batch as f64 / step_s,
                optimizer_s,
                sgd_comparison,
            }
        })
        .collect()
}

/// `repopt-tui bench collective`, one node's part: the all-reduce of each variant's step vector
/// (every float tensor of its target model: gradients and BN statistics) and full training
/// steps of `step_variant` with the gradients averaged over the nodes.
#[derive(Debug, Clone)]
pub struct CollectiveBenchConfig {
    pub variants: Vec<Variant>,
    pub iters: usize,
    pub step_variant: Variant,
    pub resolution: usize,
    pub batch: usize,
    pub classes: usize,
    pub warmup: usize,
    pub steps: usize,
}

/// What a node measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CollectiveBenchResult {
    /// Per variant: name, values all-reduced, mean seconds per all-reduce.
    pub all_reduce: Vec<(String, usize, f64)>,
    /// Mean seconds of a training step (data on the device, forward, backward, all-reduce,
    /// optimizer), and of its all-reduce alone.
    pub step_s: f64,
    pub step_all_reduce_s: f64,
}

/// Values of the step vector of `variant`'s target model with 1000 classes.
fn step_vector_len(variant: &Variant) -> usize {
    use burn::backend::Flex;
    let model = crate::model::TargetNet::<Flex>::init(variant, 1000, 0, &Default::default());
    crate::model::params::named_shapes::<Flex, _>(&model)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

/// One node of the benchmark (the job joined already).
pub fn collective_node(
    c: &crate::dist::Collective,
    cfg: &CollectiveBenchConfig,
) -> anyhow::Result<CollectiveBenchResult> {
    use burn::backend::{Autodiff, Flex};
    use std::time::Instant;
    let mut all_reduce = Vec::new();
    for v in &cfg.variants {
        let n = step_vector_len(v);
        let mut total = 0.0;
        for i in 0..cfg.iters + 1 {
            let values = vec![1.0f32; n];
            let start = Instant::now();
            let out = c.all_reduce_sum("benchmark all-reduce", values)?;
            if i > 0 {
                total += start.elapsed().as_secs_f64();
            }
            anyhow::ensure!(
                out.first() == Some(&(c.nodes() as f32)),
                "the all-reduce summed wrong"
            );
        }
        all_reduce.push((v.name.to_string(), n, total / cfg.iters.max(1) as f64));
    }
    type B = Autodiff<Flex>;
    let device = Default::default();
    let (step_s, step_all_reduce_s) =
        timed_dp_steps::<B>(Some(c), cfg, &device).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(CollectiveBenchResult {
        all_reduce,
        step_s,
        step_all_reduce_s,
    })
}

/// Mean seconds per training step of `cfg.step_variant`'s target model, its gradients averaged
/// over the job's nodes when `c` is given, and of the all-reduce within it.
pub fn timed_dp_steps<B: AutodiffBackend>(
    c: Option<&crate::dist::Collective>,
    cfg: &CollectiveBenchConfig,
    device: &B::Device,
) -> Result<(f64, f64), crate::dist::DistError> {
    use crate::model::loss::cross_entropy;
    use crate::train::collective::{LocalStep, sync_step};
    use burn::optim::GradientsParams;
    use std::time::Instant;
    let v = &cfg.step_variant;
    let (x, y) = synthetic_batch::<B>(cfg.batch, cfg.resolution, cfg.classes, device);
    let mut model = crate::model::TargetNet::<B>::init(v, cfg.classes, 0, device);
    let mut opt = measurement_optimizer::<B::InnerBackend>(ModelKind::Target, v, device);
    let (mut total, mut reduce) = (0.0, 0.0);
    for i in 0..cfg.warmup + cfg.steps {
        let start = Instant::now();
        let loss = cross_entropy(
            crate::model::Classifier::logits(&model, x.clone(), true),
            y.clone(),
            0.1,
        );
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let reduce_start = Instant::now();
        if let Some(c) = c {
            let local = LocalStep {
                loss_sum: 0.0,
                correct: 0,
                images: cfg.batch,
                compute_s: 0.0,
                stop: 0,
            };
            let (m, job) = sync_step::<B, _>(c, model, grads, local)?;
            (model, grads) = (m, job.grads);
        }
        let reduce_s = reduce_start.elapsed().as_secs_f64();
        model = opt.step(model, grads, 0.01).0;
        B::sync(device).expect("device sync");
        if i >= cfg.warmup {
            total += start.elapsed().as_secs_f64();
            reduce += reduce_s;
        }
    }
    let n = cfg.steps.max(1) as f64;
    Ok((total / n, reduce / n))
}

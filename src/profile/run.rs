//! Run profiles: everything about one run (kind, model, data, recipe, devices, scales,
//! checkpoint policy, seed). Strict RON: unknown fields and missing required fields are errors
//! with file, line and column.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Invalid, ProfileError, ScaleSource, load_ron, to_ron};
use crate::data::{Augment, DatasetSpec};
use crate::device::DeviceSpec;
use crate::model::{ModelKind, Variant, variant};
use crate::optim::schedule::{LrSchedule, scaled_lr};
use crate::optim::{IdentityInit, UpdateRule};
use crate::rundir::events::RunKindTag;

/// The four kinds of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunKind {
    /// Train the HS model (CSLA blocks with trainable scales) with plain SGD; its scales are
    /// the RepOptimizer's hyper-parameters.
    #[serde(alias = "HS")]
    HyperSearch,
    /// Train the plain RepOpt-VGG with the RepOptimizer (re-initialization + Grad Mult).
    /// Shown as "RepOpt", which profiles accept too.
    #[serde(alias = "RepOpt")]
    Target,
    /// Train RepVGG (three branches) with plain SGD, then convert it to its deploy form.
    #[serde(alias = "RepVGG")]
    Baseline,
    /// Train the plain RepOpt-VGG with plain SGD (no re-initialization, no masks).
    Ablation,
}

impl RunKind {
    /// The `run_kind` written in `started` events.
    /// The kind as run directories record it.
    pub fn tag(&self) -> RunKindTag {
        match self {
            RunKind::HyperSearch => RunKindTag::HyperSearch,
            RunKind::Target => RunKindTag::Target,
            RunKind::Baseline => RunKindTag::Baseline,
            RunKind::Ablation => RunKindTag::Ablation,
        }
    }

    /// The run kind a run directory or checkpoint records, if it is one a profile can train.
    pub fn from_tag(tag: &RunKindTag) -> Option<RunKind> {
        match tag {
            RunKindTag::HyperSearch => Some(RunKind::HyperSearch),
            RunKindTag::Target => Some(RunKind::Target),
            RunKindTag::Baseline => Some(RunKind::Baseline),
            RunKindTag::Ablation => Some(RunKind::Ablation),
            RunKindTag::Probe | RunKindTag::Other(_) => None,
        }
    }

    /// The name users read for this kind, in the console and the dashboard alike (one name per
    /// kind; profiles also accept it as the `kind`).
    pub fn label(&self) -> &'static str {
        match self {
            RunKind::HyperSearch => "HS",
            RunKind::Target => "RepOpt",
            RunKind::Baseline => "RepVGG",
            RunKind::Ablation => "ablation",
        }
    }

    /// The model this kind of run trains.
    pub fn model(&self) -> ModelKind {
        match self {
            RunKind::HyperSearch => ModelKind::Hs,
            RunKind::Target | RunKind::Ablation => ModelKind::Target,
            RunKind::Baseline => ModelKind::RepVgg,
        }
    }
}

/// How the model is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub epochs: u32,
    /// Images per device per iteration.
    pub batch_size: usize,
    /// Base learning rate at total batch 256 (scaled linearly by total batch / 256).
    pub lr: f64,
    /// Apply the linear scaling rule (official: yes).
    #[serde(default = "yes")]
    pub lr_scaling: bool,
    /// Linear warm-up from 0, in epochs.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Where the cosine ends (official: 0).
    #[serde(default)]
    pub min_lr: f64,
    /// The update rule, written in the profile as the optimizer's own type.
    pub optimizer: UpdateRule,
    pub weight_decay: f64,
    #[serde(default)]
    pub label_smoothing: f64,
    /// Training augmentation preset.
    pub augment: Augment,
    /// Clip the global gradient norm (Hyper-Search only: clipping breaks the equivalence).
    #[serde(default)]
    pub grad_clip: Option<f64>,
    /// Loader worker threads.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Evaluation batch size per device (default: the training batch size).
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
    /// Cap on iterations per epoch (CPU-sized runs); the schedule uses the capped count.
    #[serde(default)]
    pub max_iters_per_epoch: Option<u64>,
}

fn yes() -> bool {
    true
}

fn default_workers() -> usize {
    2
}

/// When checkpoints are written and which are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPolicy {
    /// Also write a checkpoint every N minutes inside an epoch.
    #[serde(default)]
    pub every_minutes: Option<f64>,
    /// How many of the newest checkpoints to keep (the best is kept apart).
    #[serde(default = "default_keep")]
    pub keep_last: usize,
    /// Keep a copy of the checkpoint with the best validation top-1 as `ckpt/best.ckpt`.
    #[serde(default = "yes")]
    pub keep_best: bool,
}

fn default_keep() -> usize {
    3
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every_minutes: None,
            keep_last: default_keep(),
            keep_best: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunProfile {
    pub kind: RunKind,
    /// Model variant: A0 … L2, or the small T0 / T1.
    pub variant: String,
    pub data: DatasetSpec,
    pub recipe: Recipe,
    /// `Cpu`, `Cuda(0)`, `Cuda(1)`, …, `LibTorchCpu`, `LibTorchCuda(0)`, … (one engine; one replica
    /// per device, gradients averaged).
    pub devices: Vec<DeviceSpec>,
    /// Target runs: where the scales come from (`ScaleSource`): a scales profile
    /// (`profiles/scales/b1.ron`), an HS run directory, `run:<profile name or run id>` for the
    /// `scales.ron` of the newest such run in the runs directory, `ones` or `hs-init`.
    #[serde(default)]
    pub scales: Option<String>,
    /// Start from these weights instead of a fresh initialization (fine-tuning): an official
    /// PyTorch checkpoint (`.pth`), safetensors, or a checkpoint of this tool. Target runs then
    /// skip the re-initialization (the weights already are the trained model).
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// Target runs: what the identity branch contributes to the re-initialization.
    #[serde(default)]
    pub reinit_identity: IdentityInit,
    /// Target runs (ablation, the paper's Table 4): replace each layer's s, t and u by their
    /// average across the layer's channels before the RepOptimizer uses them. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_channels: Option<bool>,
    /// Target runs (ablation): re-initialize every conv kernel from the scales (the paper's
    /// Eq. 4) before training. Default: true; `false` trains from the plain initialization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reinit: Option<bool>,
    /// Target runs (ablation): multiply the 3x3 kernels' gradients by the Grad Mult masks built
    /// from the scales. Default: true; `false` updates with the plain optimizer (same momentum,
    /// weight decay and groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modify_gradients: Option<bool>,
    #[serde(default)]
    pub checkpoint: CheckpointPolicy,
    #[serde(default)]
    pub seed: u64,
    /// Write a `step` event every N iterations.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Hyper-Search runs: also write the searched scales here (e.g. `profiles/scales/mine.ron`).
    #[serde(default)]
    pub export_scales: Option<PathBuf>,
}

/// Largest batch per device a profile may ask for (range check before any allocation).
pub const MAX_BATCH: usize = 65_536;
/// Shortest interval between timed checkpoints.
pub const MIN_CHECKPOINT_MINUTES: f64 = 0.01;

fn default_log_every() -> u64 {
    10
}

impl RunProfile {
    /// Loads and validates a run profile.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let profile: RunProfile = load_ron(path)?;
        profile.validate().map_err(|e| e.in_file(path))?;
        Ok(profile)
    }

    pub fn to_ron(&self) -> String {
        to_ron(self)
    }

    pub fn variant(&self) -> Variant {
        variant(&self.variant).expect("validated")
    }

    /// Checks what the types cannot: known variant, sensible numbers (every float finite and in
    /// range), fields that fit the kind. Runs before anything is allocated or trained.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.problems().map_err(Invalid)
    }

    /// [`validate`](Self::validate)'s checks, the first problem as a sentence.
    fn problems(&self) -> Result<(), String> {
        variant(&self.variant).map_err(|e| e.to_string())?;
        let r = &self.recipe;
        let finite = |name: &str, v: f64| -> Result<(), String> {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number, not {v}"))
            }
        };
        if r.epochs == 0 {
            return Err("recipe.epochs must be at least 1".into());
        }
        if r.epochs > 1_000_000 {
            return Err(format!(
                "recipe.epochs must be at most 1000000, not {}",
                r.epochs
            ));
        }
        if r.batch_size == 0 {
            return Err("recipe.batch_size must be at least 1".into());
        }
        if r.batch_size > MAX_BATCH {
            return Err(format!(
                "recipe.batch_size must be at most {MAX_BATCH} per device, not {}",
                r.batch_size
            ));
        }
        if r.eval_batch_size == Some(0) || r.eval_batch_size.is_some_and(|b| b > MAX_BATCH) {
            return Err(format!(
                "recipe.eval_batch_size must be between 1 and {MAX_BATCH}"
            ));
        }
        if !(r.lr > 0.0 && r.lr.is_finite()) {
            return Err(format!("recipe.lr must be a positive number, not {}", r.lr));
        }
        finite("recipe.min_lr", r.min_lr)?;
        if r.min_lr < 0.0 || r.min_lr > r.lr {
            return Err(format!(
                "recipe.min_lr must be between 0 and lr ({}), not {}",
                r.lr, r.min_lr
            ));
        }
        finite("recipe.weight_decay", r.weight_decay)?;
        if r.weight_decay < 0.0 {
            return Err(format!(
                "recipe.weight_decay must not be negative, not {}",
                r.weight_decay
            ));
        }
        if !(0.0..1.0).contains(&r.label_smoothing) {
            return Err(format!(
                "recipe.label_smoothing must be in [0, 1), not {}",
                r.label_smoothing
            ));
        }
        finite("recipe.warmup_epochs", r.warmup_epochs)?;
        if r.warmup_epochs < 0.0 || r.warmup_epochs > r.epochs as f64 {
            return Err(format!(
                "recipe.warmup_epochs must be between 0 and epochs ({}), not {}",
                r.epochs, r.warmup_epochs
            ));
        }
        if let Some(c) = r.grad_clip
            && !(c > 0.0 && c.is_finite())
        {
            return Err(format!(
                "recipe.grad_clip must be a positive number (the largest gradient norm), not {c}"
            ));
        }
        match r.optimizer {
            UpdateRule::Sgd { momentum, .. } => {
                if !(0.0..1.0).contains(&momentum) {
                    return Err(format!(
                        "recipe.optimizer: Sgd momentum must be in [0, 1), not {momentum}"
                    ));
                }
            }
            UpdateRule::AdamW { beta1, beta2, eps } => {
                for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
                    if !(0.0..1.0).contains(&b) {
                        return Err(format!(
                            "recipe.optimizer: AdamW {name} must be in [0, 1), not {b}"
                        ));
                    }
                }
                if !(eps > 0.0 && eps.is_finite()) {
                    return Err(format!(
                        "recipe.optimizer: AdamW eps must be a positive number, not {eps}"
                    ));
                }
            }
        }
        if r.max_iters_per_epoch == Some(0) {
            return Err("recipe.max_iters_per_epoch must be at least 1".into());
        }
        if r.workers > 1024 {
            return Err(format!(
                "recipe.workers must be at most 1024, not {}",
                r.workers
            ));
        }
        if self.devices.is_empty() {
            return Err("devices must list at least one device (Cpu, Cuda(N), LibTorchCpu or LibTorchCuda(N))".into());
        }
        if let Some(d) = self
            .devices
            .iter()
            .find(|d| d.engine() != self.devices[0].engine())
        {
            return Err(format!(
                "devices must all use one engine: {} ({}) and {d} ({}) differ",
                self.devices[0],
                self.devices[0].engine().name(),
                d.engine().name()
            ));
        }
        if self.log_every == 0 {
            return Err("log_every must be at least 1".into());
        }
        if let Some(m) = self.checkpoint.every_minutes {
            finite("checkpoint.every_minutes", m)?;
            if m < MIN_CHECKPOINT_MINUTES {
                return Err(format!(
                    "checkpoint.every_minutes must be at least {MIN_CHECKPOINT_MINUTES} (about a second), not {m}; leave it out to checkpoint once per epoch"
                ));
            }
        }
        if self.checkpoint.keep_last == 0 {
            return Err("checkpoint.keep_last must be at least 1".into());
        }
        match self.kind {
            RunKind::Target => {
                let Some(spec) = &self.scales else {
                    return Err(format!(
                        "a Target run needs `scales`: {}",
                        ScaleSource::FORMS
                    ));
                };
                ScaleSource::parse(spec).map_err(|e| format!("scales: {e}"))?;
                if r.grad_clip.is_some() {
                    return Err("grad_clip is for HyperSearch runs only: clipping breaks the RepOptimizer's equivalence".into());
                }
                if !self.reinit() && !self.modify_gradients() {
                    return Err(
                        "reinit: false and modify_gradients: false leave nothing of the RepOptimizer \
                         (the scales would be unused): that run is `kind: Ablation` (plain SGD on RepOpt-VGG)"
                            .into(),
                    );
                }
                if self.reinit == Some(true) && self.weights.is_some() {
                    return Err(
                        "reinit: true and weights conflict: a run that starts from `weights` keeps them \
                         (leave reinit out, or drop weights)"
                            .into(),
                    );
                }
            }
            RunKind::HyperSearch => {}
            RunKind::Baseline | RunKind::Ablation => {
                if self.scales.is_some() {
                    return Err(format!(
                        "`scales` is for Target runs; a {:?} run trains with plain SGD",
                        self.kind
                    ));
                }
            }
        }
        if self.kind != RunKind::Target {
            for (name, set) in [
                ("average_channels", self.average_channels.is_some()),
                ("reinit", self.reinit.is_some()),
                ("modify_gradients", self.modify_gradients.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "`{name}` is a switch of Target runs (the RepOptimizer's ablations); a {:?} run has no scales to use",
                        self.kind
                    ));
                }
            }
        }
        if self.export_scales.is_some() && self.kind != RunKind::HyperSearch {
            return Err("export_scales is for HyperSearch runs".into());
        }
        self.data.validate().map_err(|e| e.to_string())
    }

    /// Checks that the files the run will write outside its run directory can be written, so a
    /// bad path fails now and not after hours of training.
    pub fn check_output_paths(&self) -> Result<(), Invalid> {
        self.output_path_problems().map_err(Invalid)
    }

    fn output_path_problems(&self) -> Result<(), String> {
        if let Some(path) = &self.export_scales {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if path.is_dir() {
                return Err(format!(
                    "export_scales: {} is a directory; give a file name (e.g. scales/mine.ron)",
                    path.display()
                ));
            }
            let probe = dir.join(format!(".export-check-{}", std::process::id()));
            match std::fs::File::create(&probe) {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                }
                Err(e) => {
                    return Err(format!(
                        "export_scales: cannot write into {} ({e}); fix the path or create the folder",
                        dir.display()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Target runs: whether each layer's scales are averaged across channels (default no).
    pub fn average_channels(&self) -> bool {
        self.average_channels.unwrap_or(false)
    }

    /// Target runs: whether the kernels are re-initialized from the scales (default yes).
    pub fn reinit(&self) -> bool {
        self.reinit.unwrap_or(true)
    }

    /// Target runs: whether the gradients are multiplied by the Grad Mult masks (default yes).
    pub fn modify_gradients(&self) -> bool {
        self.modify_gradients.unwrap_or(true)
    }

    /// Images per iteration over all devices.
    pub fn total_batch(&self) -> usize {
        self.recipe.batch_size * self.devices.len()
    }

    /// The learning-rate schedule for `iters_per_epoch` iterations per epoch.
    pub fn schedule(&self, iters_per_epoch: u64) -> LrSchedule {
        self.schedule_on_nodes(iters_per_epoch, 1)
    }

    /// [`Self::schedule`] of a job of `nodes` nodes with these devices each: the linear scaling
    /// counts the images of every node (batch × devices × nodes, as DDP's world size).
    pub fn schedule_on_nodes(&self, iters_per_epoch: u64, nodes: usize) -> LrSchedule {
        let r = &self.recipe;
        let scale = |lr: f64| {
            if r.lr_scaling {
                scaled_lr(lr, self.total_batch() * nodes.max(1))
            } else {
                lr
            }
        };
        LrSchedule {
            base_lr: scale(r.lr),
            warmup_iters: (r.warmup_epochs * iters_per_epoch as f64) as u64,
            warmup_lr: 0.0,
            total_iters: r.epochs as u64 * iters_per_epoch,
            min_lr: scale(r.min_lr),
        }
    }
}

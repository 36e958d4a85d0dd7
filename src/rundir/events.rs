//! The `events.jsonl` schema: one JSON object per line, each with `t` (unix seconds) and `kind`.
//!
//! This file is the contract between a run (the writer) and whoever watches it (the dashboard,
//! `tail -f`, jq, a notebook). Add fields as `Option` / `#[serde(default)]` so older run
//! directories stay readable.

use serde::{Deserialize, Serialize};

/// One line of `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix time in seconds (fractional).
    pub t: f64,
    #[serde(flatten)]
    pub body: EventBody,
}

/// What happened, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// The run process started (or resumed).
    Started(Started),
    /// One training iteration (written every `log_every` iterations, not every one).
    Step(Step),
    /// End-of-epoch evaluation on the validation split.
    Eval(Eval),
    /// HS runs: per-layer statistics of the trainable scales.
    Scales(ScalesEvent),
    /// A GPU sample (NVML).
    Gpu(GpuSample),
    /// A checkpoint was written.
    Checkpoint(CheckpointEvent),
    /// A checkpoint could not be written (disk full, permissions, a diverged model); training
    /// went on and the earlier checkpoints are intact.
    CheckpointFailed(CheckpointFailed),
    /// A max-batch-size probe result for one model.
    Probe(ProbeResult),
    /// `repopt-tui quantize` on the run's weights: FP32 and INT8 top-1 per scheme.
    Quantize(QuantizeEvent),
    /// The run completed all its epochs.
    Finished(Finished),
    /// The run was stopped on request (SIGINT/SIGTERM) after writing a checkpoint.
    Stopped(Stopped),
    /// The run failed; `message` says why.
    Failed(Failed),
}

/// The kind of run a directory holds, as its events and checkpoints record it (`hyper_search`,
/// `target`, `baseline`, `ablation`, `probe`). A kind written by a newer version reads as
/// `Other` with its name, so its directory still lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKindTag {
    HyperSearch,
    Target,
    Baseline,
    Ablation,
    Probe,
    #[serde(untagged)]
    Other(String),
}

impl RunKindTag {
    /// The name in events and checkpoints.
    pub fn as_str(&self) -> &str {
        match self {
            RunKindTag::HyperSearch => "hyper_search",
            RunKindTag::Target => "target",
            RunKindTag::Baseline => "baseline",
            RunKindTag::Ablation => "ablation",
            RunKindTag::Probe => "probe",
            RunKindTag::Other(name) => name,
        }
    }

    /// The one name users read for the kind, in the console and every view: HS, RepOpt,
    /// RepVGG, ablation, probe (an unknown kind by its own name).
    pub fn label(&self) -> &str {
        match self {
            RunKindTag::HyperSearch => "HS",
            RunKindTag::Target => "RepOpt",
            RunKindTag::Baseline => "RepVGG",
            RunKindTag::Ablation => "ablation",
            RunKindTag::Probe => "probe",
            RunKindTag::Other(name) => name,
        }
    }
}

impl From<&str> for RunKindTag {
    fn from(name: &str) -> RunKindTag {
        match name {
            "hyper_search" => RunKindTag::HyperSearch,
            "target" => RunKindTag::Target,
            "baseline" => RunKindTag::Baseline,
            "ablation" => RunKindTag::Ablation,
            "probe" => RunKindTag::Probe,
            other => RunKindTag::Other(other.into()),
        }
    }
}

impl std::fmt::Display for RunKindTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub run_id: String,
    pub run_kind: RunKindTag,
    pub variant: String,
    /// Human-readable data set description, e.g. `cifar100:/data/cifar-100-binary`.
    pub dataset: String,
    pub epochs: u32,
    pub iters_per_epoch: u64,
    /// Per-device batch size.
    pub batch_size: usize,
    pub devices: Vec<String>,
    pub pid: u32,
    /// The checkpoint this process resumed from, if any.
    #[serde(default)]
    pub resumed_from: Option<String>,
    /// The profile file the run was started from.
    #[serde(default)]
    pub profile_path: Option<String>,
    /// Multi-node jobs: the number of nodes, each with `devices` (README, "Multi-node").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// 0-based epoch.
    pub epoch: u32,
    /// 0-based iteration inside the epoch.
    pub iter: u64,
    /// Global 0-based iteration (epoch * iters_per_epoch + iter).
    pub global_iter: u64,
    /// Mean training loss over the iterations since the previous step event.
    pub loss: f64,
    /// Learning rate used for this iteration.
    pub lr: f64,
    /// Training throughput over the iterations since the previous step event.
    pub images_per_s: f64,
    /// Training top-1 (%) over the same iterations, if measured.
    #[serde(default)]
    pub top1: Option<f64>,
    /// Estimated seconds until the run finishes.
    #[serde(default)]
    pub eta_s: Option<f64>,
    /// Multi-node jobs: each rank's own throughput (its images over its data, forward and
    /// backward time), by rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_images_per_s: Option<Vec<f64>>,
    /// Multi-node jobs: mean milliseconds per step rank 0 spent in the gradients' all-reduce
    /// (waiting for the others included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_reduce_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    pub epoch: u32,
    /// Validation loss, top-1 and top-5 in percent.
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    /// Mean training loss / top-1 over the epoch.
    #[serde(default)]
    pub train_loss: Option<f64>,
    #[serde(default)]
    pub train_top1: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalesEvent {
    pub epoch: u32,
    /// In forward order: `stage0`, `stage1.0`, ….
    pub layers: Vec<LayerScales>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerScales {
    pub name: String,
    /// The 3x3 branch scale.
    pub s: ScaleStats,
    /// The 1x1 branch scale.
    pub t: ScaleStats,
    /// The identity branch scale (blocks with in = out channels and stride 1 only).
    #[serde(default)]
    pub u: Option<ScaleStats>,
}

/// Summary and histogram of one per-channel scale vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleStats {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// How many channels are negative.
    pub negative: usize,
    /// Histogram over [lo, hi] with equal-width bins.
    pub hist: Histogram,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub devices: Vec<GpuDeviceSample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuDeviceSample {
    pub index: u32,
    pub name: String,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// GPU utilization in percent.
    #[serde(default)]
    pub utilization: Option<u32>,
    #[serde(default)]
    pub temperature_c: Option<u32>,
    #[serde(default)]
    pub power_w: Option<f64>,
    /// Memory used by this run's process on this device, when NVML reports it.
    #[serde(default)]
    pub process_memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointEvent {
    /// Epochs completed when the checkpoint was taken; a resumed run continues with this
    /// (0-based) epoch, at iteration `global_iter - epoch × iters_per_epoch` of it.
    pub epoch: u32,
    /// Global iteration the checkpoint resumes at.
    pub global_iter: u64,
    /// Path relative to the run directory, e.g. `ckpt/e0003-i000120`.
    pub path: String,
    /// Whether this is the best checkpoint so far (by validation top-1).
    #[serde(default)]
    pub best: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointFailed {
    /// The position the checkpoint would have held (as in [`CheckpointEvent`]).
    pub epoch: u32,
    pub global_iter: u64,
    /// The path it would have had, relative to the run directory.
    pub path: String,
    /// Why it was not written.
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// `target`, `repvgg` or `hs`.
    pub model: String,
    pub variant: String,
    pub resolution: usize,
    pub device: String,
    /// The memory budget the probe ran under (CPU), if any.
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
    /// Largest per-device batch whose training step fits; None when even batch 1 did not.
    pub max_batch: Option<usize>,
    /// Peak memory of a step at `max_batch`.
    #[serde(default)]
    pub peak_bytes: Option<u64>,
    /// Training throughput at batch 32 and at `max_batch`.
    #[serde(default)]
    pub images_per_s_at_32: Option<f64>,
    #[serde(default)]
    pub images_per_s_at_max: Option<f64>,
    /// The upper end of the search (`probe --max-batch`): a `max_batch` there means "at least".
    /// Events written before it was recorded read as the default ceiling.
    #[serde(default)]
    pub max_batch_ceiling: Option<usize>,
}

/// `probe --max-batch`'s default: the ceiling of events that do not record theirs.
pub const DEFAULT_PROBE_CEILING: usize = 4096;

impl ProbeResult {
    /// Whether `max_batch` is only a lower bound: the search stopped at its ceiling.
    pub fn at_ceiling(&self) -> bool {
        let ceiling = self.max_batch_ceiling.unwrap_or(DEFAULT_PROBE_CEILING);
        self.max_batch.is_some_and(|m| m >= ceiling)
    }

    /// `472`, `≥ 4096` at the search's ceiling, `none` when not even batch 1 fits.
    pub fn max_batch_text(&self) -> String {
        match self.max_batch {
            None => "none".into(),
            Some(m) if self.at_ceiling() => format!("≥ {m}"),
            Some(m) => m.to_string(),
        }
    }
}

/// INT8 post-training quantization of a run's weights (simulated in float).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizeEvent {
    /// The weights quantized (a checkpoint path).
    pub weights: String,
    /// `target`, `hs`, `repvgg` or `deploy`: the model the weights belong to.
    pub model: String,
    pub variant: String,
    /// Training images the activation ranges were calibrated on.
    pub calibration_images: usize,
    /// The percentile of the percentile calibration.
    pub percentile: f64,
    /// Validation top-1 of the float deploy form.
    pub fp32_top1: f64,
    pub schemes: Vec<QuantizeScheme>,
    /// Per layer of the deploy form (blocks, then `linear`).
    pub layers: Vec<QuantizeLayer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizeScheme {
    /// `per-channel` or `per-tensor`.
    pub weights: String,
    /// `min/max` or `p<percentile>`.
    pub activations: String,
    /// `none`, `first-and-linear` or `first-and-last`.
    pub keep_float: String,
    pub top1: f64,
    /// fp32_top1 − top1, in points.
    pub drop: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizeLayer {
    pub name: String,
    /// (max − min) / standard deviation of the deploy kernel.
    pub range_over_std: f64,
    /// ‖Q(W) − W‖ / ‖W‖ per tensor and per output channel.
    pub error_per_tensor: f64,
    pub error_per_channel: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub epochs: u32,
    #[serde(default)]
    pub best_top1: Option<f64>,
    #[serde(default)]
    pub final_top1: Option<f64>,
    pub wall_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    pub epoch: u32,
    pub global_iter: u64,
    /// e.g. `SIGINT`, `SIGTERM`.
    pub reason: String,
    /// The checkpoint written on the way out (relative path), if any.
    #[serde(default)]
    pub checkpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub message: String,
}

impl Event {
    pub fn now(body: EventBody) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Event { t, body }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_kinds_read_their_names_and_keep_unknown_ones() {
        use super::RunKindTag;
        for (tag, name) in [
            (RunKindTag::HyperSearch, "hyper_search"),
            (RunKindTag::Target, "target"),
            (RunKindTag::Probe, "probe"),
            (RunKindTag::Other("distill".into()), "distill"),
        ] {
            let json = serde_json::to_string(&tag).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<RunKindTag>(&json).unwrap(), tag);
            assert_eq!(tag.as_str(), name);
        }
        assert_eq!(RunKindTag::Target.label(), "RepOpt");
    }

    use super::*;

    #[test]
    fn a_max_batch_at_the_search_ceiling_reads_as_a_lower_bound() {
        let probe = |max_batch, ceiling| ProbeResult {
            model: "target".into(),
            variant: "T1".into(),
            resolution: 32,
            device: "cpu".into(),
            memory_limit_bytes: None,
            max_batch,
            peak_bytes: None,
            images_per_s_at_32: None,
            images_per_s_at_max: None,
            max_batch_ceiling: ceiling,
        };
        assert_eq!(probe(Some(472), Some(4096)).max_batch_text(), "472");
        assert_eq!(probe(Some(1024), Some(1024)).max_batch_text(), "≥ 1024");
        assert_eq!(probe(Some(4096), Some(8192)).max_batch_text(), "4096");
        assert_eq!(probe(None, Some(64)).max_batch_text(), "none");
        // Events written before the ceiling was recorded: the default ceiling.
        assert_eq!(probe(Some(4096), None).max_batch_text(), "≥ 4096");
        let old =
            r#"{"model":"hs","variant":"B1","resolution":224,"device":"cuda:0","max_batch":4096}"#;
        let read: ProbeResult = serde_json::from_str(old).unwrap();
        assert!(read.at_ceiling());
    }

    #[test]
    fn step_line_has_t_and_kind_at_top_level() {
        let e = Event {
            t: 12.5,
            body: EventBody::Step(Step {
                epoch: 1,
                iter: 2,
                global_iter: 10,
                loss: 2.25,
                lr: 0.1,
                images_per_s: 300.0,
                top1: None,
                eta_s: None,
                rank_images_per_s: None,
                all_reduce_ms: None,
            }),
        };
        let line = serde_json::to_string(&e).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "step");
        assert_eq!(v["t"], 12.5);
        assert_eq!(v["global_iter"], 10);
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }
}

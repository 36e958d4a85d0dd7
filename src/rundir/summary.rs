//! What the runs list shows about one run, folded from its events and its lock.

use std::path::{Path, PathBuf};

use super::events::{Event, EventBody, QuantizeEvent, QuantizeScheme, RunKindTag};
use super::{EVENTS_FILE, EventReader, LOCK_FILE, LockTable};

/// The state of a run, derived from its events and from whether a live process owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// A live process owns the run.
    Running,
    /// The last process wrote `finished`.
    Finished,
    /// The last process was stopped on request (`stopped`).
    Stopped,
    /// The last process wrote `failed`.
    Failed,
    /// The last process started but left no terminal event and no process owns the run any more
    /// (killed, crashed, machine rebooted). Resumable from its newest checkpoint.
    Interrupted,
    /// No events yet and no owner (just created, or the process has not started writing).
    New,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::New => "new",
        }
    }

    /// Whether a live process is on it.
    pub fn is_live(self) -> bool {
        self == RunStatus::Running
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last lifecycle event seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Started,
    Finished,
    Stopped,
    Failed,
}

/// One run as the runs list shows it. Build it with [`summarize_run`], or fold events into it
/// incrementally with [`RunSummary::apply`] and then call [`RunSummary::set_owner`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The directory name, `<profile-stem>-<YYYYmmdd-HHMMSS>`.
    pub id: String,
    pub path: PathBuf,
    /// From `started`; `probe` for a directory holding only probe results; `None` while no
    /// event says.
    pub kind: Option<RunKindTag>,
    pub variant: String,
    pub dataset: String,
    pub status: RunStatus,
    /// Pid of the live owner.
    pub owner_pid: Option<u32>,
    /// Current 0-based epoch (of the last step or eval).
    pub epoch: Option<u32>,
    pub epochs: Option<u32>,
    pub iters_per_epoch: Option<u64>,
    pub global_iter: Option<u64>,
    pub best_top1: Option<f64>,
    pub last_top1: Option<f64>,
    pub last_top5: Option<f64>,
    pub last_loss: Option<f64>,
    pub images_per_s: Option<f64>,
    pub eta_s: Option<f64>,
    pub lr: Option<f64>,
    /// Time of the first event.
    pub first_t: Option<f64>,
    /// Time of the last event.
    pub last_t: Option<f64>,
    /// Time of the last `started` (the current or last process).
    pub started_t: Option<f64>,
    /// Wall time of the finished run.
    pub wall_s: Option<f64>,
    /// `failed` message.
    pub failure: Option<String>,
    /// `stopped` reason.
    pub stop_reason: Option<String>,
    /// Checkpoint named by the last `started` as the one resumed from.
    pub resumed_from: Option<String>,
    /// Newest checkpoint named by an event.
    pub last_checkpoint: Option<String>,
    pub checkpoints: usize,
    pub devices: Vec<String>,
    pub batch_size: Option<usize>,
    pub pid_in_events: Option<u32>,
    pub profile_path: Option<String>,
    pub events: u64,
    pub probe_events: u64,
    pub other_events: u64,
    /// Unparsable lines in events.jsonl.
    pub skipped_lines: u64,
    /// The newest `quantize` event's results.
    pub quantize: Option<QuantizeSummary>,
    lifecycle: Option<Lifecycle>,
    lifecycle_t: f64,
}

impl RunSummary {
    /// An empty summary of the run in `path` (status [`RunStatus::New`]).
    pub fn new(path: &Path) -> Self {
        let id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        RunSummary {
            id,
            path: path.to_path_buf(),
            kind: None,
            variant: String::new(),
            dataset: String::new(),
            status: RunStatus::New,
            owner_pid: None,
            epoch: None,
            epochs: None,
            iters_per_epoch: None,
            global_iter: None,
            best_top1: None,
            last_top1: None,
            last_top5: None,
            last_loss: None,
            images_per_s: None,
            eta_s: None,
            lr: None,
            first_t: None,
            last_t: None,
            started_t: None,
            wall_s: None,
            failure: None,
            stop_reason: None,
            resumed_from: None,
            last_checkpoint: None,
            checkpoints: 0,
            devices: Vec::new(),
            batch_size: None,
            pid_in_events: None,
            profile_path: None,
            events: 0,
            probe_events: 0,
            other_events: 0,
            skipped_lines: 0,
            quantize: None,
            lifecycle: None,
            lifecycle_t: 0.0,
        }
    }

    /// Forgets all events (the file was truncated or replaced).
    pub fn reset(&mut self) {
        let mut fresh = RunSummary::new(&self.path);
        fresh.owner_pid = self.owner_pid;
        *self = fresh;
    }

    /// Folds one event in.
    pub fn apply(&mut self, e: &Event) {
        self.events += 1;
        self.first_t.get_or_insert(e.t);
        self.last_t = Some(self.last_t.map_or(e.t, |l| l.max(e.t)));
        match &e.body {
            EventBody::Started(s) => {
                self.kind = Some(s.run_kind.clone());
                self.variant = s.variant.clone();
                self.dataset = s.dataset.clone();
                self.epochs = Some(s.epochs);
                self.iters_per_epoch = Some(s.iters_per_epoch);
                self.batch_size = Some(s.batch_size);
                self.devices = s.devices.clone();
                self.pid_in_events = Some(s.pid);
                self.resumed_from = s.resumed_from.clone();
                if s.profile_path.is_some() {
                    self.profile_path = s.profile_path.clone();
                }
                self.started_t = Some(e.t);
                self.failure = None;
                self.stop_reason = None;
                self.wall_s = None;
                self.set_lifecycle(Lifecycle::Started, e.t);
            }
            EventBody::Step(s) => {
                self.epoch = Some(s.epoch);
                self.global_iter = Some(s.global_iter);
                self.last_loss = Some(s.loss);
                self.lr = Some(s.lr);
                self.images_per_s = Some(s.images_per_s);
                if s.eta_s.is_some() {
                    self.eta_s = s.eta_s;
                }
            }
            EventBody::Eval(v) => {
                self.epoch = Some(self.epoch.map_or(v.epoch, |e| e.max(v.epoch)));
                self.last_top1 = Some(v.top1);
                self.last_top5 = Some(v.top5);
                if v.top1.is_finite() {
                    self.best_top1 = Some(self.best_top1.map_or(v.top1, |b| b.max(v.top1)));
                }
            }
            EventBody::Checkpoint(c) => {
                self.checkpoints += 1;
                self.last_checkpoint = Some(c.path.clone());
            }
            EventBody::Probe(p) => {
                self.probe_events += 1;
                if self.variant.is_empty() {
                    self.variant = p.variant.clone();
                }
            }
            // A tool's record about the run's weights: the run's own state is unchanged. Events
            // are appended under the run's lock, so the last one in the file is the newest.
            EventBody::Quantize(q) => self.quantize = Some(QuantizeSummary::of(e.t, q)),
            EventBody::Finished(f) => {
                if f.best_top1.is_some() {
                    self.best_top1 = f.best_top1;
                }
                self.wall_s = Some(f.wall_s);
                self.eta_s = None;
                self.set_lifecycle(Lifecycle::Finished, e.t);
            }
            EventBody::Stopped(s) => {
                self.stop_reason = Some(s.reason.clone());
                if let Some(c) = &s.checkpoint {
                    self.last_checkpoint = Some(c.clone());
                }
                self.eta_s = None;
                self.set_lifecycle(Lifecycle::Stopped, e.t);
            }
            EventBody::Failed(f) => {
                self.failure = Some(f.message.clone());
                self.eta_s = None;
                self.set_lifecycle(Lifecycle::Failed, e.t);
            }
            EventBody::Scales(_) | EventBody::Gpu(_) | EventBody::CheckpointFailed(_) => {
                self.other_events += 1
            }
        }
        if self.kind.is_none() && self.probe_events > 0 && self.lifecycle.is_none() {
            self.kind = Some(RunKindTag::Probe);
        }
        self.derive_status(None);
    }

    fn set_lifecycle(&mut self, l: Lifecycle, t: f64) {
        self.lifecycle = Some(l);
        self.lifecycle_t = t;
    }

    /// Sets the live owner (from [`super::live_owner`] / [`LockTable`]) and derives the status.
    /// `lock_since` is the modification time of `run.lock` (written when it is acquired): an owner
    /// that took the lock after the last terminal event is a resumed process not yet logging.
    pub fn set_owner(&mut self, owner: Option<u32>, lock_since: Option<f64>) {
        self.owner_pid = owner;
        self.derive_status(lock_since);
    }

    fn derive_status(&mut self, lock_since: Option<f64>) {
        let terminal = match self.lifecycle {
            Some(Lifecycle::Finished) => Some(RunStatus::Finished),
            Some(Lifecycle::Stopped) => Some(RunStatus::Stopped),
            Some(Lifecycle::Failed) => Some(RunStatus::Failed),
            _ => None,
        };
        self.status = match (self.owner_pid, terminal) {
            (Some(_), None) => RunStatus::Running,
            (Some(_), Some(t)) => {
                // The owner wrote its terminal event and is exiting, unless it took the lock after
                // that event (a resumed process that has not written `started` yet).
                if lock_since.is_some_and(|since| since > self.lifecycle_t) {
                    RunStatus::Running
                } else {
                    t
                }
            }
            (None, Some(t)) => t,
            (None, None) => match self.lifecycle {
                Some(Lifecycle::Started) => RunStatus::Interrupted,
                _ if self.events == 0 => RunStatus::New,
                // Only probe results and no lifecycle: a completed probe.
                _ if self.probe_events > 0 => RunStatus::Finished,
                _ => RunStatus::Interrupted,
            },
        };
    }

    /// Progress through the run in [0, 1], from the last step (or eval) and the epoch count.
    pub fn progress(&self) -> Option<f64> {
        let epochs = self.epochs? as f64;
        if epochs <= 0.0 {
            return None;
        }
        if self.status == RunStatus::Finished {
            return Some(1.0);
        }
        let done = match (self.global_iter, self.iters_per_epoch) {
            (Some(g), Some(ipe)) if ipe > 0 => (g + 1) as f64 / ipe as f64,
            _ => self.epoch? as f64,
        };
        Some((done / epochs).clamp(0.0, 1.0))
    }

    /// The time of the latest activity: the last event, else the directory's modification time.
    pub fn last_update(&self) -> Option<f64> {
        self.last_t.or_else(|| mtime(&self.path))
    }
}

/// What the runs view shows of a `quantize` event: the top-1 figures, not the per-layer
/// statistics (the summary is cloned on every refresh; the report reads those from the events).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeSummary {
    /// Time of the event.
    pub t: f64,
    /// The checkpoint quantized, relative to the run directory.
    pub weights: String,
    pub calibration_images: usize,
    pub fp32_top1: f64,
    pub schemes: Vec<QuantizeScheme>,
}

impl QuantizeSummary {
    pub fn of(t: f64, q: &QuantizeEvent) -> Self {
        QuantizeSummary {
            t,
            weights: q.weights.clone(),
            calibration_images: q.calibration_images,
            fp32_top1: q.fp32_top1,
            schemes: q.schemes.clone(),
        }
    }

    /// Index of the scheme with the highest INT8 top-1 (the first of equals); non-finite
    /// figures never win.
    pub fn best(&self) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, s) in self.schemes.iter().enumerate() {
            if s.top1.is_finite() && best.is_none_or(|(_, b)| s.top1 > b) {
                best = Some((i, s.top1));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Modification time of a path as Unix seconds.
pub fn mtime(path: &Path) -> Option<f64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// Reads a run directory once and summarizes it (events + lock).
pub fn summarize_run(dir: &Path) -> std::io::Result<RunSummary> {
    summarize_with(dir, &LockTable::snapshot())
}

fn summarize_with(dir: &Path, locks: &LockTable) -> std::io::Result<RunSummary> {
    let mut summary = RunSummary::new(dir);
    let mut reader = EventReader::new(dir.join(EVENTS_FILE));
    let batch = reader.read_new()?;
    for e in &batch.events {
        summary.apply(e);
    }
    summary.skipped_lines = reader.skipped();
    summary.set_owner(locks.live_owner(dir), mtime(&dir.join(LOCK_FILE)));
    Ok(summary)
}

/// Every run directory under `runs_dir` (each subdirectory is one run), newest first (by the time
/// of its first event, else the directory's modification time). A missing `runs_dir` is an empty
/// list.
pub fn list_runs(runs_dir: &Path) -> std::io::Result<Vec<RunSummary>> {
    let entries = match std::fs::read_dir(runs_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let locks = LockTable::snapshot();
    let mut runs = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        runs.push(summarize_with(&entry.path(), &locks)?);
    }
    sort_newest_first(&mut runs);
    Ok(runs)
}

/// Orders runs newest first by start time (first event, else directory mtime), then by id.
pub fn sort_newest_first(runs: &mut [RunSummary]) {
    let key = |r: &RunSummary| r.first_t.or_else(|| mtime(&r.path)).unwrap_or(0.0);
    runs.sort_by(|a, b| {
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| b.id.cmp(&a.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rundir::events::{Finished, QuantizeEvent, QuantizeScheme};

    fn scheme(weights: &str, top1: f64, fp32: f64) -> QuantizeScheme {
        QuantizeScheme {
            weights: weights.into(),
            activations: "min/max".into(),
            keep_float: "none".into(),
            top1,
            drop: fp32 - top1,
        }
    }

    fn quantize(t: f64, weights: &str, fp32: f64, schemes: Vec<QuantizeScheme>) -> Event {
        Event {
            t,
            body: EventBody::Quantize(QuantizeEvent {
                weights: weights.into(),
                model: "target".into(),
                variant: "A0".into(),
                calibration_images: 256,
                percentile: 99.99,
                fp32_top1: fp32,
                schemes,
                layers: Vec::new(),
            }),
        }
    }

    #[test]
    fn the_newest_quantize_event_is_kept_and_leaves_the_run_state_alone() {
        let mut s = RunSummary::new(Path::new("/runs/a0-20261201-120000"));
        s.apply(&Event {
            t: 10.0,
            body: EventBody::Finished(Finished {
                epochs: 2,
                best_top1: Some(70.5),
                final_top1: Some(70.0),
                wall_s: 9.0,
            }),
        });
        assert_eq!(s.quantize, None);
        s.apply(&quantize(
            20.0,
            "checkpoints/old.safetensors",
            70.0,
            vec![scheme("per-tensor", 60.0, 70.0)],
        ));
        s.apply(&quantize(
            30.0,
            "checkpoints/new.safetensors",
            70.5,
            vec![
                scheme("per-tensor", 65.25, 70.5),
                scheme("per-channel", 69.75, 70.5),
            ],
        ));
        let q = s.quantize.as_ref().unwrap();
        assert_eq!(q.t, 30.0);
        assert_eq!(q.weights, "checkpoints/new.safetensors");
        assert_eq!(q.fp32_top1, 70.5);
        assert_eq!(q.calibration_images, 256);
        assert_eq!(q.schemes.len(), 2);
        assert_eq!(q.schemes[1].top1, 69.75);
        assert_eq!(q.best(), Some(1));
        // A tool's record: the run stays finished with its own best top-1.
        assert_eq!(s.status, RunStatus::Finished);
        assert_eq!(s.best_top1, Some(70.5));
        assert_eq!(s.other_events, 0);
        // Forgetting the events (file replaced) forgets the quantization too.
        s.reset();
        assert_eq!(s.quantize, None);
    }

    #[test]
    fn best_scheme_is_the_first_highest_finite_top1() {
        let q = QuantizeSummary {
            t: 0.0,
            weights: String::new(),
            calibration_images: 8,
            fp32_top1: 50.0,
            schemes: vec![
                scheme("a", f64::NAN, 50.0),
                scheme("b", 40.0, 50.0),
                scheme("c", 45.0, 50.0),
                scheme("d", 45.0, 50.0),
            ],
        };
        assert_eq!(q.best(), Some(2));
        let none = QuantizeSummary {
            schemes: vec![scheme("a", f64::NAN, 50.0)],
            ..q
        };
        assert_eq!(none.best(), None);
    }
}

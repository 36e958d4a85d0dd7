//! The run directory (`checkpoints/<run-id>/`): the contract between a run and its watchers.
//!
//! Layout:
//! - `profile.ron`   the resolved run profile, frozen when the run started
//! - `events.jsonl`  append-only events (schema in [`events`])
//! - `ckpt/*.ckpt`   checkpoints (see `train::checkpoint`)
//! - `scales.ron`    HS runs: the searched scales as a scales profile
//! - `scales.frozen.ron` Target runs: the scales the run uses, copied byte for byte at its start
//! - `run.lock`      held (flock) by the live process that owns the run; holds its pid
//! - `stdout.log`    output of a run spawned by the dashboard
//!
//! This module reads and writes that directory: [`EventReader`] (incremental, tolerant tail of
//! `events.jsonl`), [`EventWriter`] (append-only, one `write` per line), [`RunLock`] /
//! [`live_owner`] (who owns the run), [`RunSummary`] / [`list_runs`] (what the runs list shows).

mod create;
pub mod events;
pub mod ids;
mod lock;
mod reader;
pub mod series;
mod stats;
mod summary;
mod writer;

pub use create::{OwnRunDirError, OwnedRunDir, own_run_dir};
pub use lock::{LockError, LockTable, RunLock, live_owner};
pub use reader::{EventReader, ReadBatch, SkippedLine, read_all, tail_lines};
pub use stats::{EpochMeans, network_means, scale_stats, scales_history};
pub use summary::{
    QuantizeSummary, RunStatus, RunSummary, list_runs, mtime as file_mtime, sort_newest_first,
    summarize_run,
};
pub use writer::EventWriter;

/// File names inside a run directory.
pub const EVENTS_FILE: &str = "events.jsonl";
pub const LOCK_FILE: &str = "run.lock";
pub const PROFILE_FILE: &str = "profile.ron";
pub const SCALES_FILE: &str = "scales.ron";
pub const FROZEN_SCALES_FILE: &str = "scales.frozen.ron";
/// The final weights' kernel statistics (`kernel-stats --json` of `model.safetensors`).
pub const KERNEL_STATS_FILE: &str = "kernel_stats.json";
pub const STDOUT_LOG: &str = "stdout.log";
pub const CKPT_DIR: &str = "ckpt";

/// A run's `kernel_stats.json`: `Ok(None)` when the run has none (it has not finished, or it
/// predates the file), an error naming the file when it cannot be read or parsed.
pub fn read_kernel_stats(
    run_dir: &std::path::Path,
) -> Result<Option<crate::model::kernel_stats::KernelStatsReport>, String> {
    let path = run_dir.join(KERNEL_STATS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: not kernel statistics: {e}", path.display()))
}

/// A run's frozen `profile.ron`, read with the strict profile loader: `Ok(None)` when the run has
/// none (probe directories), an error naming the file otherwise.
pub fn read_frozen_profile(
    run_dir: &std::path::Path,
) -> Result<Option<crate::profile::RunProfile>, String> {
    let path = run_dir.join(PROFILE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    crate::profile::parse_ron(&text, &path)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Current Unix time in seconds (fractional); 0 if the clock is before 1970.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

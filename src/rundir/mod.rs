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
mod stats;
mod summary;
mod writer;

pub use create::{OwnRunDirError, OwnedRunDir, own_run_dir};
pub use lock::{LockError, LockTable, RunLock, live_owner};
pub use reader::{EventReader, ReadBatch, SkippedLine, read_all, tail_lines};
pub use stats::{network_means, scale_stats};
pub use summary::{
    RunStatus, RunSummary, list_runs, mtime as file_mtime, sort_newest_first, summarize_run,
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

/// Current Unix time in seconds (fractional); 0 if the clock is before 1970.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

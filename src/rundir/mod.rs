//! The run directory (`checkpoints/<run-id>/`): the contract between a run and its watchers.
//!
//! Layout:
//! - `profile.ron`   the resolved run profile, frozen when the run started
//! - `events.jsonl`  append-only events (schema in [`events`])
//! - `ckpt/*.ckpt`   checkpoints (see `train::checkpoint`)
//! - `scales.ron`    HS runs: the searched scales as a scales profile
//! - `run.lock`      held (flock) by the live process that owns the run; holds its pid
//! - `stdout.log`    output of a run spawned by the dashboard

pub mod events;

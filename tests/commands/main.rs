//! The binary end to end and the run directory: the command line, runs and resume, the probe,
//! profiles, events, a hostile environment, README's figures and events table.
//!
//! One test binary per area: each binary links burn, so a few large ones build and link far
//! faster (and take far less disk) than one per file.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod ablation;
mod cli_core;
mod cli_runs;
mod event_schema;
mod hardening;
mod multinode;
mod probe;
mod profiles;
mod quantize;
mod readme_figures;
mod report;
mod resume_kinds;
mod rundir_events;
mod rundir_runs;
mod runs;

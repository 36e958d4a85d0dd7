//! repopt-tui: train convnets with RepOptimizers from a terminal workstation.
//!
//! Layers, dependencies pointing down only:
//! - `tui` (dashboard) and `report` (Markdown and SVG charts) read run directories; they never
//!   call into training.
//! - `train`, `probe` orchestrate runs from `model`, `optim`, `data`, `profile`, `rundir`, `gpu`,
//!   `dist` (the collective engine that joins the processes of a multi-node job).
//! - `model`, `optim` are the numerics; `data` the input pipeline; `interop` file formats.

pub mod bench;
pub mod cli;
pub mod data;
pub mod device;
pub mod dist;
pub mod gpu;
pub mod interop;
pub mod model;
pub mod optim;
pub mod output;
pub mod probe;
pub mod profile;
pub mod report;
pub mod rundir;
pub mod train;
pub mod tui;

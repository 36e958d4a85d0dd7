//! The dashboard: snapshot views on TestBackend, end-to-end runs in a pseudo-terminal, and its
//! measurements (ignored by default).
//!
//! One test binary per area: each binary links burn, so a few large ones build and link far
//! faster (and take far less disk) than one per file.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod tui_e2e;
mod tui_e2e_table;
mod tui_measure;
mod tui_quantize;
mod tui_views;

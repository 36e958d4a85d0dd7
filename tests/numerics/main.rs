//! Numerics against independent references: CSLA ≡ RepOptimizer, the optimizer against PyTorch's
//! trajectories, model structure, PyTorch interop, data parallelism.
//!
//! One test binary per area: each binary links burn, so a few large ones build and link far
//! faster (and take far less disk) than one per file.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod equivalence;
mod interop;
mod interop_strided;
mod models;
mod multi_device;
mod multinode;
mod optim_reference;

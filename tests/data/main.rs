//! The data layer against the real shared data: readers, transforms, the loader.
//!
//! One test binary per area: each binary links burn, so a few large ones build and link far
//! faster (and take far less disk) than one per file.

#![allow(clippy::unwrap_used)]

#[path = "../data_support/mod.rs"]
mod data_support;

mod data_pipeline;
mod data_readers;

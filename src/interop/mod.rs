//! File formats shared with PyTorch: reading `.pth` state dicts (official scales and
//! checkpoints) and writing safetensors with the official names.

pub mod pickle;
pub mod pth;
pub mod safetensors;

pub use pth::{ImportError, import_scales, read_pth};

//! The models: RepOpt-VGG target, the Hyper-Search (CSLA) model, RepVGG and its deploy form.

pub mod blocks;
pub mod fuse;
pub mod kernel_stats;
mod kind_dispatch;
pub mod layers;
pub mod loss;
pub mod net;
pub mod params;
pub mod quantize;
#[cfg(feature = "tch")]
pub mod torch_ops;
pub mod variant;

pub use blocks::{Block, DeployBlock, HsBlock, RepVggBlock, TargetBlock};
pub use net::{Classifier, DeployNet, HsNet, Net, RepVggNet, TargetNet};
pub use variant::{BlockPlan, ModelKind, VARIANTS, Variant, variant};

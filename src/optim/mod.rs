//! The RepOptimizer: SGD and AdamW whose gradients of the 3x3 conv weights are multiplied by
//! masks built from the Hyper-Search scales (Grad Mult), the re-initialization rule that goes
//! with it, and the learning-rate schedule. Plain SGD is the same code without masks.

pub mod equivalence;
pub mod host;
pub mod kernels;
pub mod optimizer;
pub mod reinit;
pub mod scale_sources;
pub mod schedule;
#[cfg(feature = "tch")]
pub mod torch;

pub use kernels::{equivalent_kernel, grad_mult};
pub use optimizer::{GradMults, OptimizerConfig, RepOptimizer, UpdatePath, UpdateRule, decays};
pub use reinit::{IdentityInit, reinitialize};
pub use schedule::LrSchedule;

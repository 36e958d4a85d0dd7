//! The one place that maps a [`ModelKind`](super::ModelKind) to its network type.
//!
//! Code generic over the network (training, evaluation, export, probe, bench) names the kind
//! once and writes its body once; the macro compiles the body for each network type. A new model
//! kind is added here (and in `ModelKind`), not in every command.

/// Evaluates `$body` with `$init` bound to the constructor of `$kind`'s network on backend `$B`:
/// `$init(variant: &Variant, classes: usize, seed: u64, device: &B::Device)`.
///
/// `with_network!(trainable ...)` is for run kinds, which never train the deploy form: its body
/// need not compile for `DeployNet`.
#[macro_export]
macro_rules! with_network {
    ($kind:expr, $B:ty, |$init:ident| $body:expr) => {
        match $kind {
            $crate::model::ModelKind::Deploy => {
                let $init = <$crate::model::DeployNet<$B>>::init;
                $body
            }
            other => $crate::with_network!(trainable other, $B, |$init| $body),
        }
    };
    (trainable $kind:expr, $B:ty, |$init:ident| $body:expr) => {
        match $kind {
            $crate::model::ModelKind::Target => {
                let $init = <$crate::model::TargetNet<$B>>::init;
                $body
            }
            $crate::model::ModelKind::Hs => {
                let $init = <$crate::model::HsNet<$B>>::init;
                $body
            }
            $crate::model::ModelKind::RepVgg => {
                let $init = <$crate::model::RepVggNet<$B>>::init;
                $body
            }
            $crate::model::ModelKind::Deploy => {
                unreachable!("run kinds train the RepVGG training form, never its deploy form")
            }
        }
    };
}

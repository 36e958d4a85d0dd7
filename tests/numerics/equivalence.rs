//! CSLA ≡ RepOptimizer. The reference is independent of the RepOptimizer: the multi-branch CSLA
//! model (3x3, 1x1 and trainable identity branches, constant per-channel scales) trained with
//! plain SGD / AdamW. The RepOptimizer trains the plain model from the equivalent kernels.
//!
//! Settings: T0 (every block kind), batch 8 at 32x32, lr 0.01, 20 steps of a smoothed
//! cross-entropy through BN and ReLU. Larger steps make a ReLU whose input is within f32 rounding
//! of 0 flip in one model and not the other, a genuine discontinuity unrelated to the optimizer.

use burn::backend::{Autodiff, Flex};
use repopt_tui::model::variant;
use repopt_tui::optim::equivalence::{VerifyConfig, VerifyReport, random_scales, run_equivalence};
use repopt_tui::optim::{OptimizerConfig, UpdateRule};

type B = Autodiff<Flex>;

const NESTEROV: UpdateRule = UpdateRule::Sgd {
    momentum: 0.9,
    nesterov: true,
};
/// AdamW's eps enters once per branch in the CSLA model but once per kernel in the RepOptimizer:
/// the two are equal only as eps → 0, so the check uses a negligible eps.
const ADAMW: UpdateRule = UpdateRule::AdamW {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-12,
};

fn run(rule: UpdateRule, lr: f64, negative_scales: bool, mask_weight_decay: bool) -> VerifyReport {
    run_with(rule, lr, negative_scales, mask_weight_decay, false)
}

fn run_with(
    rule: UpdateRule,
    lr: f64,
    negative_scales: bool,
    mask_weight_decay: bool,
    tensor_ops: bool,
) -> VerifyReport {
    let mut cfg = VerifyConfig::new(variant("T0").unwrap());
    cfg.tensor_ops = tensor_ops;
    cfg.optimizer = OptimizerConfig::new(rule, 0.05);
    cfg.optimizer.mask_weight_decay = mask_weight_decay;
    cfg.lr = lr;
    cfg.steps = 20;
    cfg.scales = Some(random_scales(&cfg.variant, 7, negative_scales));
    if negative_scales {
        let s = cfg.scales.as_ref().unwrap();
        assert!(
            s.negative_count() > 10,
            "the scales must include negative values"
        );
    }
    let report = run_equivalence::<B>(&cfg, &Default::default());
    println!(
        "{rule:?} lr {lr}: kernels {:.2e} at {}, outputs {:.2e}, motion {:.3}",
        report.kernel_rel_diff, report.worst_block, report.output_rel_diff, report.kernel_motion
    );
    assert!(
        report.kernel_motion > 0.05,
        "training must move the kernels: {}",
        report.kernel_motion
    );
    report
}

#[test]
fn sgd_nesterov_with_weight_decay_and_negative_scales_is_equivalent() {
    let r = run(NESTEROV, 0.01, true, false);
    assert!(
        r.kernel_rel_diff < 1e-5,
        "kernels differ: {:e} at {}",
        r.kernel_rel_diff,
        r.worst_block
    );
    assert!(
        r.output_rel_diff < 1e-5,
        "outputs differ: {:e}",
        r.output_rel_diff
    );
    assert!(
        r.csla_losses
            .iter()
            .zip(&r.repopt_losses)
            .all(|(a, b)| (a - b).abs() < 1e-4)
    );
}

#[test]
fn negative_control_masking_the_weight_decay_breaks_the_equivalence() {
    let r = run(NESTEROV, 0.01, true, true);
    assert!(
        r.kernel_rel_diff > 1e-2,
        "the wrong order must be detected: {:e}",
        r.kernel_rel_diff
    );
}

#[test]
fn adamw_with_positive_scales_is_equivalent() {
    let r = run(ADAMW, 0.002, false, false);
    assert!(
        r.kernel_rel_diff < 1e-5,
        "kernels differ: {:e} at {}",
        r.kernel_rel_diff,
        r.worst_block
    );
    assert!(
        r.output_rel_diff < 1e-5,
        "outputs differ: {:e}",
        r.output_rel_diff
    );
}

#[test]
fn adamw_with_negative_scales_is_not_equivalent() {
    let r = run(ADAMW, 0.002, true, false);
    assert!(
        r.kernel_rel_diff > 1e-2,
        "negative scales must break AdamW: {:e}",
        r.kernel_rel_diff
    );
}

#[test]
fn the_tensor_operation_update_used_on_gpus_is_equivalent_too() {
    for (rule, lr, negative) in [(NESTEROV, 0.01, true), (ADAMW, 0.002, false)] {
        let r = run_with(rule, lr, negative, false, true);
        assert!(
            r.kernel_rel_diff < 1e-5 && r.output_rel_diff < 1e-5,
            "{rule:?}: {:e} / {:e}",
            r.kernel_rel_diff,
            r.output_rel_diff
        );
    }
}

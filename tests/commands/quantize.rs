//! `repopt-tui quantize` end to end: tiny runs trained by the binary, quantized from their run
//! directory (the event recorded) and from a checkpoint file (nothing recorded).

use std::path::{Path, PathBuf};

use repopt_tui::rundir::events::{EventBody, QuantizeEvent};
use repopt_tui::train::checkpoint;

use crate::common::runs::{events, run};

/// A tiny synthetic profile of `kind` (T0, 16x16, 96 training and 32 validation images).
fn profile(dir: &Path, kind: &str) -> PathBuf {
    let path = dir.join(format!("{kind}.ron"));
    std::fs::write(
        &path,
        format!(
            r#"(
    kind: {kind},
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 96, synthetic_val: 32, synthetic_seed: 3),
    recipe: (
        epochs: 1, batch_size: 16, lr: 0.05, lr_scaling: false, warmup_epochs: 0.0,
        optimizer: Sgd(momentum: 0.9, nesterov: true),
        weight_decay: 4e-5, label_smoothing: 0.1, augment: CifarStandard, workers: 2,
    ),
    devices: [Cpu],
    seed: 5,
)"#
        ),
    )
    .unwrap();
    path
}

/// Trains `kind` for one epoch; returns the profile and the run directory.
fn trained(root: &Path, kind: &str) -> (PathBuf, PathBuf) {
    let p = profile(root, kind);
    let runs = root.join("runs");
    let out = run(&[
        "--profile",
        p.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        kind,
    ]);
    assert!(out.status.success());
    (p, runs.join(kind))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number after `prefix` in `text` (up to a '%').
fn number_after(text: &str, prefix: &str) -> f64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no '{prefix}' in {text}"))
        + prefix.len();
    text[at..]
        .split('%')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn quantize_events(dir: &Path) -> Vec<QuantizeEvent> {
    events(dir)
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Quantize(q) => Some(q),
            _ => None,
        })
        .collect()
}

/// A RepVGG run: its deploy form's FP32 top-1 is the training-form model's (as `eval` measures
/// it), four schemes by default, and the event in the run directory says the same.
#[test]
fn quantize_a_repvgg_run_directory_records_fp32_and_int8_per_scheme() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, dir) = trained(tmp.path(), "Baseline");
    let (found, _) = checkpoint::newest_valid(&dir.join("ckpt"));
    let ckpt = found.unwrap().0;
    let eval = run(&[
        "eval",
        "--profile",
        p.to_str().unwrap(),
        "--weights",
        ckpt.to_str().unwrap(),
    ]);
    assert!(eval.status.success());
    let eval_top1 = number_after(&stdout(&eval), "top-1 ");

    let out = run(&[
        "quantize",
        "--profile",
        p.to_str().unwrap(),
        "--weights",
        dir.to_str().unwrap(),
        "--calibration-images",
        "40",
    ]);
    assert!(out.status.success());
    let text = stdout(&out);
    let fp32 = number_after(&text, "FP32 top-1 ");
    assert_eq!(
        fp32, eval_top1,
        "the deploy form equals the trained model\n{text}"
    );
    assert!(text.contains("calibrated on 40 training images"), "{text}");
    for row in [
        "per-channel  min/max",
        "per-channel  p99.99",
        "per-tensor   min/max",
        "per-tensor   p99.99",
    ] {
        assert!(text.contains(row), "'{row}' in\n{text}");
    }
    assert!(text.contains("range/std"), "{text}");

    let recorded = quantize_events(&dir);
    assert_eq!(recorded.len(), 1);
    let q = &recorded[0];
    assert_eq!(q.model, "repvgg");
    assert_eq!(q.variant, "T0");
    assert_eq!(q.calibration_images, 40);
    assert_eq!(q.percentile, 99.99);
    assert_eq!(q.fp32_top1, fp32);
    assert!(q.weights.starts_with("ckpt/"), "{}", q.weights);
    assert_eq!(q.schemes.len(), 4);
    for s in &q.schemes {
        assert_eq!(s.keep_float, "none");
        assert!((0.0..=100.0).contains(&s.top1));
        assert!((s.drop - (q.fp32_top1 - s.top1)).abs() < 1e-9);
    }
    // T0: 1 + 1 + 2 + 2 + 1 blocks, then the classifier.
    let names: Vec<&str> = q.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert_eq!(names[0], "stage0");
    assert_eq!(names[7], "linear");
    for l in &q.layers {
        assert!(l.range_over_std > 1.0, "{l:?}");
        assert!(l.error_per_channel <= l.error_per_tensor + 1e-12, "{l:?}");
        assert!(
            l.error_per_tensor > 0.0 && l.error_per_tensor < 0.5,
            "{l:?}"
        );
    }
}

/// A plain-VGG run (conv + BN, folded) from a checkpoint file: the schemes asked for, and
/// nothing recorded (the weights are not a run directory).
#[test]
fn quantize_a_checkpoint_with_layers_kept_in_float() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, dir) = trained(tmp.path(), "Ablation");
    let (found, _) = checkpoint::newest_valid(&dir.join("ckpt"));
    let ckpt = found.unwrap().0;
    let before = events(&dir).len();
    let out = run(&[
        "quantize",
        "--profile",
        p.to_str().unwrap(),
        "--weights",
        ckpt.to_str().unwrap(),
        "--weight-scales",
        "per-tensor",
        "--keep-float",
        "first-and-linear,first-and-last",
        "--calibration-images",
        "16",
        "--percentile",
        "99.9",
    ]);
    assert!(out.status.success());
    let text = stdout(&out);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("per-")).collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows[0].contains("min/max") && rows[0].contains("first-and-linear"),
        "{text}"
    );
    assert!(
        rows[1].contains("p99.9") && rows[1].contains("first-and-linear"),
        "{text}"
    );
    assert!(
        rows[3].contains("p99.9") && rows[3].contains("first-and-last"),
        "{text}"
    );
    assert!(rows.iter().all(|r| r.starts_with("per-tensor")), "{text}");
    assert_eq!(
        events(&dir).len(),
        before,
        "a checkpoint file records nothing"
    );
    assert!(quantize_events(&dir).is_empty());
}

#[test]
fn quantize_refuses_a_percentile_out_of_range() {
    let out = run(&[
        "quantize",
        "--profile",
        "none.ron",
        "--weights",
        "none.ckpt",
        "--percentile",
        "0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--percentile must be in (0, 100]"), "{err}");
}

//! Headless runs end to end through the binary: resume exactness, SIGINT, corrupt checkpoints,
//! real HS → target runs on CIFAR-10 images.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::shared_data;
use repopt_tui::rundir::events::{Event, EventBody};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_repopt-tui"))
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("binary runs");
    if !out.status.success() {
        eprintln!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn events(dir: &Path) -> Vec<Event> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn step_losses(events: &[Event]) -> Vec<(u64, f64)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Step(s) => Some((s.global_iter, s.loss)),
            _ => None,
        })
        .collect()
}

/// A tiny synthetic profile: T0, 2 epochs of 6 iterations, a step event every iteration.
fn tiny_profile(dir: &Path, name: &str, kind: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(
        &path,
        format!(
            r#"(
    kind: {kind},
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 96, synthetic_val: 32, synthetic_seed: 3),
    recipe: (
        epochs: 2, batch_size: 16, lr: 0.05, lr_scaling: false, warmup_epochs: 0.5,
        optimizer: Sgd(momentum: 0.9, nesterov: true), weight_decay: 4e-5, label_smoothing: 0.1,
        augment: CifarStandard, workers: 2,
    ),
    devices: [Cpu],
    seed: 5,
    log_every: 1,
    {extra}
)"#
        ),
    )
    .unwrap();
    path
}

/// The final weights of a run, by name.
fn final_weights(run_dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(run_dir.join("model.safetensors")).unwrap();
    let (_, tensors) = repopt_tui::interop::safetensors::from_bytes(&bytes).unwrap();
    tensors
        .into_iter()
        .map(|(n, d)| (n, d.to_vec::<f32>().unwrap()))
        .collect()
}

#[test]
fn resume_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "tiny", "Ablation", "");
    let runs_s = runs.to_str().unwrap();

    // 12 iterations in one go.
    assert!(
        run(&[
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            runs_s,
            "--run-id",
            "whole"
        ])
        .status
        .success()
    );
    // 7 iterations (into the second epoch), interrupted with a checkpoint, then resumed.
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs_s,
        "--run-id",
        "split",
        "--stop-after",
        "7",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("continue with: repopt-tui --profile")
            && stdout.contains("--run-id split")
            && stdout.contains("--resume"),
        "{stdout}"
    );
    let split = runs.join("split");
    assert!(
        events(&split)
            .iter()
            .any(|e| matches!(&e.body, EventBody::Stopped(s) if s.global_iter == 7))
    );
    assert!(
        run(&[
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            runs_s,
            "--run-id",
            "split",
            "--resume"
        ])
        .status
        .success()
    );

    let whole = step_losses(&events(&runs.join("whole")));
    let resumed = step_losses(&events(&split));
    assert_eq!(whole.len(), 12);
    assert_eq!(whole, resumed, "identical loss sequence");
    let (a, b) = (final_weights(&runs.join("whole")), final_weights(&split));
    assert_eq!(a.len(), b.len());
    let differing: Vec<&String> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| &x.0)
        .collect();
    assert!(
        differing.is_empty(),
        "identical weights expected; these differ: {differing:?}"
    );
    let ev = events(&split);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e.body, EventBody::Started(_)))
            .count(),
        2
    );
    assert!(matches!(&ev.last().unwrap().body, EventBody::Finished(_)));
}

#[test]
fn a_corrupt_newest_checkpoint_is_reported_and_the_previous_one_used() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let profile = tiny_profile(
        tmp.path(),
        "tiny",
        "Ablation",
        "checkpoint: (keep_last: 5),",
    );
    // Epoch 1 checkpoint (i6), then a stop checkpoint at i9.
    assert!(
        run(&[
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            runs_s,
            "--run-id",
            "r",
            "--stop-after",
            "9"
        ])
        .status
        .success()
    );
    let ckpt = runs.join("r/ckpt");
    let newest = ckpt.join("e0001-i000000009.ckpt");
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40; // one flipped bit
    std::fs::write(&newest, &bytes).unwrap();

    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs_s,
        "--run-id",
        "r",
        "--resume",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("e0001-i000000009.ckpt is corrupt (checksum mismatch"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("resumed from ckpt/e0001-i000000006.ckpt"),
        "{stdout}"
    );

    // A truncated one is detected too.
    let newest = repopt_tui::train::checkpoint::list(&ckpt).pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let err = repopt_tui::train::checkpoint::read(&newest)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is corrupt"), "{err}");
}

#[test]
fn sigint_checkpoints_and_exits_cleanly_then_resume_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    // Long enough to be interrupted: 30 epochs.
    let profile = tmp.path().join("long.ron");
    let text = std::fs::read_to_string(tiny_profile(tmp.path(), "long", "Ablation", ""))
        .unwrap()
        .replace("epochs: 2,", "epochs: 30,");
    std::fs::write(&profile, text).unwrap();
    let child = bin()
        .args([
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            runs_s,
            "--run-id",
            "live",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dir = runs.join("live");
    let start = std::time::Instant::now();
    loop {
        let steps = std::fs::read_to_string(dir.join("events.jsonl"))
            .map(|t| t.matches("\"kind\":\"step\"").count())
            .unwrap_or(0);
        if steps >= 3 {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "the run did not start stepping"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill takes plain integers; the pid is our own child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let ev = events(&dir);
    let stopped = ev.iter().find_map(|e| match &e.body {
        EventBody::Stopped(s) => Some(s.clone()),
        _ => None,
    });
    let stopped = stopped.expect("a stopped event");
    assert_eq!(stopped.reason, "SIGINT");
    let ckpt = stopped.checkpoint.expect("a checkpoint on the way out");
    assert!(dir.join(&ckpt).exists());
    assert!(
        repopt_tui::rundir::live_owner(&dir).is_none(),
        "the lock is released"
    );

    // Resume, but only a few more iterations.
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs_s,
        "--run-id",
        "live",
        "--resume",
        "--stop-after",
        "3",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("resumed from {ckpt}")));
}

#[test]
fn two_processes_never_write_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let dir = runs.join("busy");
    std::fs::create_dir_all(&dir).unwrap();
    let _lock = repopt_tui::rundir::RunLock::acquire(&dir).unwrap();
    let profile = tiny_profile(tmp.path(), "tiny", "Ablation", "");
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "busy",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&std::process::id().to_string()),
        "names the owner: {stderr}"
    );
}

/// The CIFAR-10 JPEG tree (237 MB), extracted into a temporary directory that is deleted when
/// the returned guard drops (at the end of the test, passed or failed).
fn cifar10_tree() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("repopt-runs-cifar10-")
        .tempdir()
        .unwrap();
    for split in ["train", "test"] {
        let archive = shared_data().join(format!("cifar10-jpeg/{split}.tar.gz"));
        let file = std::fs::File::open(&archive).unwrap();
        tar::Archive::new(flate2::read::GzDecoder::new(file))
            .unpack(dir.path())
            .unwrap();
    }
    dir
}

#[test]
fn hs_then_target_on_cifar10_images_learn_and_chain() {
    let tree = cifar10_tree();
    let data = tree.path();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let body = |kind: &str, extra: &str| {
        format!(
            r#"(
    kind: {kind},
    variant: "T1",
    data: (kind: ImageFolder, path: "{}", classes: 10, image_size: 32, train_limit: 3072, val_limit: 1000, subset_seed: 1),
    recipe: (
        epochs: 3, batch_size: 64, lr: 0.1, lr_scaling: false,
        optimizer: Sgd(momentum: 0.9, nesterov: true), weight_decay: 4e-5,
        augment: CifarStandard, workers: 2, {}
    ),
    devices: [Cpu],
    seed: 2,
    log_every: 4,
    {extra}
)"#,
            data.display(),
            if kind == "HyperSearch" {
                "grad_clip: 5.0,"
            } else {
                "warmup_epochs: 0.3, label_smoothing: 0.1,"
            }
        )
    };
    let hs = tmp.path().join("cifar-hs.ron");
    std::fs::write(&hs, body("HyperSearch", "")).unwrap();
    assert!(
        run(&[
            "--profile",
            hs.to_str().unwrap(),
            "--runs-dir",
            runs_s,
            "--run-id",
            "cifar-hs"
        ])
        .status
        .success()
    );
    let target = tmp.path().join("cifar-target.ron");
    std::fs::write(&target, body("Target", "scales: \"run:cifar-hs\",")).unwrap();
    assert!(
        run(&[
            "--profile",
            target.to_str().unwrap(),
            "--runs-dir",
            runs_s,
            "--run-id",
            "cifar-target"
        ])
        .status
        .success()
    );

    for id in ["cifar-hs", "cifar-target"] {
        let ev = events(&runs.join(id));
        let losses = step_losses(&ev);
        let first: f64 = losses[..3].iter().map(|l| l.1).sum::<f64>() / 3.0;
        let last: f64 = losses[losses.len() - 3..].iter().map(|l| l.1).sum::<f64>() / 3.0;
        assert!(
            last < first - 0.2,
            "{id}: the loss must fall ({first:.3} → {last:.3})"
        );
        let top1 = last_eval_top1(&runs.join(id));
        assert!(
            top1 > 30.0,
            "{id}: top-1 {top1:.1}% must be well above chance (10%)"
        );
    }
    // The HS run left a scales profile that the target run loaded (its frozen profile names it).
    let scales = runs.join("cifar-hs/scales.ron");
    let loaded = repopt_tui::profile::ScalesProfile::load_for(
        &scales,
        &repopt_tui::model::variant("T1").unwrap(),
    )
    .unwrap();
    assert_eq!(loaded.blocks.len(), 1 + 2 + 2 + 4 + 1);
    let frozen = std::fs::read_to_string(runs.join("cifar-target/profile.ron")).unwrap();
    assert!(
        frozen.contains(&std::path::absolute(&scales).unwrap().display().to_string()),
        "{frozen}"
    );
    assert!(
        events(&runs.join("cifar-hs"))
            .iter()
            .any(|e| matches!(e.body, EventBody::Scales(_)))
    );
}

fn last_eval_top1(dir: &Path) -> f64 {
    events(dir)
        .iter()
        .filter_map(|e| {
            if let EventBody::Eval(v) = &e.body {
                Some(v.top1)
            } else {
                None
            }
        })
        .next_back()
        .unwrap()
}

/// A top-1 as `eval` prints it (`{:.2}`, which rounds ties to even: 53.125 → "53.12"), not
/// `(x * 100).round() / 100` (ties away from zero: 53.13). With 32 validation images top-1 is a
/// multiple of 3.125, so every fourth value is such a tie.
fn two_decimals(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap()
}

#[test]
fn top1_ties_are_compared_as_printed() {
    assert_eq!(two_decimals(53.125), 53.12);
    assert_ne!(two_decimals(53.125), (53.125f64 * 100.0).round() / 100.0);
    assert_eq!(two_decimals(100.0 * 17.0 / 32.0), 53.12);
}

fn eval_top1(stdout: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.contains("top-1"))
        .unwrap_or_else(|| panic!("{text}"));
    line.split("top-1 ")
        .nth(1)
        .unwrap()
        .split('%')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn export_and_eval_reproduce_the_runs_accuracy_and_read_official_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    for (id, kind) in [("abl", "Ablation"), ("base", "Baseline")] {
        let profile = tiny_profile(tmp.path(), id, kind, "");
        assert!(
            run(&[
                "--profile",
                profile.to_str().unwrap(),
                "--runs-dir",
                runs_s,
                "--run-id",
                id
            ])
            .status
            .success()
        );
    }
    // Export the ablation run's newest checkpoint and evaluate it.
    let dir = runs.join("abl");
    let exported = tmp.path().join("abl.safetensors");
    assert!(
        run(&[
            "export",
            dir.to_str().unwrap(),
            "-o",
            exported.to_str().unwrap()
        ])
        .status
        .success()
    );
    let frozen = dir.join("profile.ron");
    let out = run(&[
        "eval",
        "--profile",
        frozen.to_str().unwrap(),
        "--weights",
        exported.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(eval_top1(&out.stdout), two_decimals(last_eval_top1(&dir)));
    let (_, tensors) =
        repopt_tui::interop::safetensors::from_bytes(&std::fs::read(&exported).unwrap()).unwrap();
    assert!(
        tensors.iter().any(|(n, _)| n == "stage1.0.conv.weight")
            && tensors.iter().any(|(n, _)| n == "stage0.bn.running_var")
    );

    // The baseline wrote its deploy form, which evaluates like the training form.
    let base = runs.join("base");
    let deploy = base.join("deploy.safetensors");
    let out = run(&[
        "eval",
        "--profile",
        base.join("profile.ron").to_str().unwrap(),
        "--weights",
        deploy.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("RepVGG T0 deploy-form weights"));
    assert_eq!(eval_top1(&out.stdout), two_decimals(last_eval_top1(&base)));
    let out = run(&[
        "export",
        base.to_str().unwrap(),
        "--deploy",
        "-o",
        tmp.path().join("d.safetensors").to_str().unwrap(),
    ]);
    assert!(out.status.success());

    // An official PyTorch checkpoint (T0 target, 10 classes) evaluates on a matching profile.
    let p10 = tmp.path().join("ten.ron");
    std::fs::write(
        &p10,
        std::fs::read_to_string(tiny_profile(tmp.path(), "t", "Ablation", ""))
            .unwrap()
            .replace("classes: 4", "classes: 10"),
    )
    .unwrap();
    let pth = common::fixture("pth/t0-target.pth");
    let out = run(&[
        "eval",
        "--profile",
        p10.to_str().unwrap(),
        "--weights",
        pth.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    // …and the wrong model kind is refused by name.
    let out = run(&[
        "eval",
        "--profile",
        p10.to_str().unwrap(),
        "--weights",
        common::fixture("pth/t0-repvgg.pth").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not fit the target model"));
}

#[test]
fn a_diverging_loss_is_recorded_as_failed_and_the_last_good_checkpoint_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let text = std::fs::read_to_string(tiny_profile(tmp.path(), "x", "Ablation", ""))
        .unwrap()
        .replace("lr: 0.05,", "lr: 1e12,")
        .replace("warmup_epochs: 0.5,", "");
    let profile = tmp.path().join("diverge.ron");
    std::fs::write(&profile, text).unwrap();
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "nan",
    ]);
    assert!(!out.status.success(), "a failed run exits non-zero");
    let ev = events(&runs.join("nan"));
    let failed = ev
        .iter()
        .find_map(|e| {
            if let EventBody::Failed(f) = &e.body {
                Some(f.message.clone())
            } else {
                None
            }
        })
        .expect("failed event");
    assert!(
        failed.contains("the loss became") && failed.contains("Lower the learning rate"),
        "{failed}"
    );
    assert!(
        !ev.iter()
            .any(|e| matches!(e.body, EventBody::Checkpoint(_))),
        "nothing is checkpointed after a NaN"
    );
}

#[test]
fn a_failed_checkpoint_write_is_reported_and_training_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(
        tmp.path(),
        "tiny",
        "Ablation",
        "checkpoint: (keep_last: 5),",
    );
    // A directory where the second epoch's checkpoint file would go makes that write fail,
    // as a full disk or a permission problem would.
    let blocked = runs.join("blocked/ckpt/e0002-i000000012.ckpt");
    std::fs::create_dir_all(&blocked).unwrap();
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "blocked",
    ]);
    assert!(out.status.success(), "the run still finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("checkpoint failed") && stderr.contains("e0002-i000000012.ckpt"),
        "{stderr}"
    );
    let first = runs.join("blocked/ckpt/e0001-i000000006.ckpt");
    repopt_tui::train::checkpoint::read(&first).expect("the earlier checkpoint is intact");
    let leftovers: Vec<_> = std::fs::read_dir(runs.join("blocked/ckpt"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left behind");
}

#[test]
fn fine_tuning_starts_from_given_weights_and_refuses_ones_that_do_not_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let fresh = tiny_profile(tmp.path(), "fresh", "Ablation", "");
    assert!(
        run(&[
            "--profile",
            fresh.to_str().unwrap(),
            "--runs-dir",
            runs_s,
            "--run-id",
            "first"
        ])
        .status
        .success()
    );
    let trained = runs.join("first/model.safetensors");
    let tuned = tiny_profile(
        tmp.path(),
        "tuned",
        "Ablation",
        &format!("weights: \"{}\",", trained.display()),
    );
    assert!(
        run(&[
            "--profile",
            tuned.to_str().unwrap(),
            "--runs-dir",
            runs_s,
            "--run-id",
            "second"
        ])
        .status
        .success()
    );
    let first_loss = |id: &str| step_losses(&events(&runs.join(id)))[0].1;
    assert!(
        first_loss("second") < first_loss("first") - 0.05,
        "{} vs {}",
        first_loss("second"),
        first_loss("first")
    );

    let wrong = tiny_profile(
        tmp.path(),
        "wrong",
        "Ablation",
        &format!(
            "weights: \"{}\",",
            common::fixture("pth/t0-repvgg.pth").display()
        ),
    );
    let out = run(&[
        "--profile",
        wrong.to_str().unwrap(),
        "--runs-dir",
        runs_s,
        "--run-id",
        "third",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("t0-repvgg.pth does not fit the target model"),
        "{stderr}"
    );
}

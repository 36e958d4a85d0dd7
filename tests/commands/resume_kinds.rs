//! Exact resume of every kind of run (stop, resume, compare with an uninterrupted run:
//! identical losses and weights), the frozen scales of Target runs, re-initialization as a
//! Target run does it, and a non-finite loss after good checkpoints.

use crate::common;

use crate::common::runs::{events, final_weights, run, step_losses};

use std::path::{Path, PathBuf};
use std::process::Output;

use repopt_tui::model::params::named_tensors;
use repopt_tui::model::{TargetNet, variant};
use repopt_tui::optim::{IdentityInit, reinitialize};
use repopt_tui::profile::ScalesProfile;
use repopt_tui::rundir::events::EventBody;
use repopt_tui::train::checkpoint;

/// A tiny synthetic profile (T0, 96 training images, 2 epochs, a step event every iteration).
/// `recipe_extra` goes into the recipe, `extra` at the top level.
fn profile(dir: &Path, name: &str, kind: &str, recipe_extra: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.ron"));
    let optimizer = if recipe_extra.contains("optimizer:") {
        ""
    } else {
        "optimizer: Sgd(momentum: 0.9, nesterov: true),"
    };
    let devices = if extra.contains("devices:") {
        ""
    } else {
        "devices: [Cpu],"
    };
    std::fs::write(
        &path,
        format!(
            r#"(
    kind: {kind},
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 96, synthetic_val: 32, synthetic_seed: 3),
    recipe: (
        epochs: 2, batch_size: 16, lr: 0.05, lr_scaling: false, warmup_epochs: 0.5,
        weight_decay: 4e-5, label_smoothing: 0.1, augment: CifarStandard, workers: 2,
        {optimizer} {recipe_extra}
    ),
    {devices}
    seed: 5,
    log_every: 1,
    {extra}
)"#
        ),
    )
    .unwrap();
    path
}

struct Runs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    runs: PathBuf,
}

impl Runs {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        Runs {
            runs: root.join("runs"),
            root,
            _tmp: tmp,
        }
    }

    fn start(&self, profile: &Path, id: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            self.runs.to_str().unwrap(),
            "--run-id",
            id,
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.runs.join(id)
    }
}

/// The uninterrupted run `whole` against `split` (stopped after `stop_after` iterations, then
/// resumed): identical step losses and identical final weights.
fn assert_same_run(r: &Runs, whole: &str, split: &str, iterations: usize) {
    let (a, b) = (step_losses(&r.dir(whole)), step_losses(&r.dir(split)));
    assert_eq!(a.len(), iterations, "{whole}: one step event per iteration");
    assert_eq!(a, b, "identical loss sequence");
    let (a, b) = (final_weights(&r.dir(whole)), final_weights(&r.dir(split)));
    assert_eq!(a.len(), b.len());
    let differing: Vec<&String> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| &x.0)
        .collect();
    assert!(differing.is_empty(), "these weights differ: {differing:?}");
    let ev = events(&r.dir(split));
    let started = ev
        .iter()
        .filter(|e| matches!(e.body, EventBody::Started(_)))
        .count();
    assert_eq!(started, 2, "{split}: started, then resumed");
    assert!(matches!(ev.last().unwrap().body, EventBody::Finished(_)));
}

/// Runs `profile` whole and split at `stop_after`, then compares.
fn whole_vs_split(r: &Runs, profile: &Path, name: &str, stop_after: u64, iterations: usize) {
    let whole = format!("{name}-whole");
    let split = format!("{name}-split");
    assert!(r.start(profile, &whole, &[]).status.success());
    let n = stop_after.to_string();
    let out = r.start(profile, &split, &["--stop-after", &n]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("continue with: repopt-tui --profile"));
    assert!(r.start(profile, &split, &["--resume"]).status.success());
    assert_same_run(r, &whole, &split, iterations);
}

#[test]
fn hyper_search_with_gradient_clipping_resumes_exactly() {
    let r = Runs::new();
    // Clipping at 0.2 binds on this model (checked below).
    let p = profile(&r.root, "hs", "HyperSearch", "grad_clip: 0.2,", "");
    whole_vs_split(&r, &p, "hs", 7, 12);
    // The clipping binds: without it the same run trains differently.
    let free = profile(&r.root, "hs-free", "HyperSearch", "", "");
    assert!(r.start(&free, "hs-free", &[]).status.success());
    assert_ne!(
        step_losses(&r.dir("hs-free"))[1..],
        step_losses(&r.dir("hs-whole"))[1..]
    );
    // The searched scales of both runs are the same too.
    assert_eq!(
        std::fs::read(r.dir("hs-whole/scales.ron")).unwrap().len(),
        std::fs::read(r.dir("hs-split/scales.ron")).unwrap().len()
    );
    let load = |id: &str| {
        ScalesProfile::load(&r.dir(id).join("scales.ron"))
            .unwrap()
            .blocks
    };
    assert_eq!(load("hs-whole"), load("hs-split"));
}

#[test]
fn adamw_target_resumes_exactly() {
    let r = Runs::new();
    let scales = common::fixture("t0-scales.ron");
    let p = profile(
        &r.root,
        "adamw",
        "Target",
        "optimizer: AdamW(beta1: 0.9, beta2: 0.999, eps: 1e-8),",
        &format!("scales: \"{}\",", scales.display()),
    );
    whole_vs_split(&r, &p, "adamw", 7, 12);
}

#[test]
fn a_two_replica_run_resumes_exactly() {
    let r = Runs::new();
    let scales = common::fixture("t0-scales.ron");
    // 96 images, 2 × 16 per iteration: 3 iterations per epoch.
    let p = profile(
        &r.root,
        "two",
        "Target",
        "",
        &format!("devices: [Cpu, Cpu], scales: \"{}\",", scales.display()),
    );
    whole_vs_split(&r, &p, "two", 4, 6);
}

/// `run:<hs>` resolves to the HS run's `scales.ron`, which that run rewrites every epoch (and a
/// resumed HS run rewrites again). A Target run freezes the scales it started with into its own
/// directory; a resume uses that copy and checks it against the checksum in the checkpoint.
#[test]
fn target_with_run_scales_resumes_exactly_after_the_scales_file_changed() {
    let r = Runs::new();
    let hs = profile(&r.root, "src-hs", "HyperSearch", "", "");
    // Give the HS run a fixed id: `run:src-hs` finds it by exact name.
    assert!(r.start(&hs, "src-hs", &[]).status.success());
    let source = r.dir("src-hs/scales.ron");
    let original = std::fs::read(&source).unwrap();

    let p = profile(&r.root, "tgt", "Target", "", "scales: \"run:src-hs\",");
    assert!(r.start(&p, "tgt-whole", &[]).status.success());
    assert!(
        r.start(&p, "tgt-split", &["--stop-after", "7"])
            .status
            .success()
    );
    let split = r.dir("tgt-split");
    let frozen = split.join("scales.frozen.ron");
    assert_eq!(
        std::fs::read(&frozen).unwrap(),
        original,
        "the run froze the scales it started with, byte for byte"
    );
    // Every checkpoint records the checksum of the frozen scales.
    let sha = checkpoint::sha256_hex(&original);
    let ckpts = checkpoint::list(&split.join("ckpt"));
    assert!(!ckpts.is_empty());
    for c in &ckpts {
        let state = checkpoint::read(c).unwrap().state;
        assert_eq!(state.scales_sha256.as_deref(), Some(sha.as_str()), "{c:?}");
    }

    // The HS source changes (as when that run goes on): every s and t scaled.
    let mut changed = ScalesProfile::load(&source).unwrap();
    for b in &mut changed.blocks {
        b.s.iter_mut().for_each(|x| *x *= 1.7);
        b.t.iter_mut().for_each(|x| *x *= 0.4);
    }
    changed.save(&source).unwrap();
    assert_ne!(std::fs::read(&source).unwrap(), original);

    // Copies of the stopped run, for the checks below.
    let tampered = r.dir("tgt-tampered");
    common::copy_tree(&split, &tampered);
    let lost = r.dir("tgt-lost");
    common::copy_tree(&split, &lost);

    // The stopped run resumes with the scales it started with: same as the uninterrupted run.
    assert!(r.start(&p, "tgt-split", &["--resume"]).status.success());
    assert_same_run(&r, "tgt-whole", "tgt-split", 12);

    // Frozen scales edited after the checkpoint was written are refused on resume.
    changed.save(&tampered.join("scales.frozen.ron")).unwrap();
    let out = r.start(&p, "tgt-tampered", &["--resume"]);
    assert!(!out.status.success(), "edited frozen scales are refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scales.frozen.ron changed since") && stderr.contains(&sha),
        "{stderr}"
    );

    // A lost frozen copy is not replaced by a source that changed since.
    std::fs::remove_file(lost.join("scales.frozen.ron")).unwrap();
    let out = r.start(&p, "tgt-lost", &["--resume"]);
    assert!(!out.status.success(), "a changed source does not stand in");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scales.frozen.ron is missing")
            && stderr.contains("not the file the run started with"),
        "{stderr}"
    );

    // Control: a run started now takes the changed scales and trains differently, so the
    // comparison above would have seen a resume that followed the source file.
    assert!(r.start(&p, "tgt-later", &[]).status.success());
    assert_ne!(
        step_losses(&r.dir("tgt-whole")),
        step_losses(&r.dir("tgt-later"))
    );
}

/// A Target run re-initializes its convs from the scales (Eq. 4) with its seed and its
/// `reinit_identity`: with the learning rate at 0 for the first steps (warm-up from 0), the first
/// checkpoint holds exactly `reinitialize` of the fresh model.
#[test]
fn a_target_run_starts_from_the_reinitialized_kernels() {
    let r = Runs::new();
    let scales_path = common::fixture("t0-scales.ron");
    let v = variant("T0").unwrap();
    let scales = ScalesProfile::load_for(&scales_path, &v).unwrap();
    let expected = |identity| {
        let fresh = TargetNet::<burn::backend::Flex>::init(&v, 4, 5, &Default::default());
        named_tensors::<burn::backend::Flex, _>(&reinitialize(fresh, &v, &scales, identity, 5))
            .into_iter()
            .filter(|(n, _)| n.ends_with(".conv.weight"))
            .map(|(n, d)| (n, d.to_vec::<f32>().unwrap()))
            .collect::<Vec<_>>()
    };
    for (identity, setting) in [
        (IdentityInit::Trained, ""),
        (IdentityInit::One, "reinit_identity: One,"),
    ] {
        let id = format!("{identity:?}");
        let p = profile(
            &r.root,
            &id,
            "Target",
            "",
            &format!("scales: \"{}\", {setting}", scales_path.display()),
        );
        assert!(r.start(&p, &id, &["--stop-after", "1"]).status.success());
        let (found, _) = checkpoint::newest_valid(&r.dir(&id).join("ckpt"));
        let ckpt = found.expect("a valid checkpoint").1;
        assert_eq!(ckpt.state.global_iter, 1);
        let convs: Vec<(String, Vec<f32>)> = ckpt
            .model
            .into_iter()
            .filter(|(n, _)| n.ends_with(".conv.weight"))
            .map(|(n, d)| (n, d.to_vec::<f32>().unwrap()))
            .collect();
        let mut convs = convs;
        convs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want = expected(identity);
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(convs, want, "{id}: the run's kernels are Eq. 4's");
        let mut other = expected(match identity {
            IdentityInit::Trained => IdentityInit::One,
            IdentityInit::One => IdentityInit::Trained,
        });
        other.sort_by(|a, b| a.0.cmp(&b.0));
        assert_ne!(convs, other, "{id}: the identity choice is the profile's");
    }
}

/// A loss that turns non-finite after good checkpoints: the run records `failed`, exits
/// non-zero, leaves its checkpoints readable, and resumes from them once the cause is gone.
#[test]
fn a_nan_or_infinite_loss_after_good_checkpoints_fails_and_the_run_resumes() {
    let r = Runs::new();
    let p = profile(&r.root, "nf", "Ablation", "", "checkpoint: (keep_last: 5),");
    for (id, how) in [("nan", "NaN"), ("inf", "inf")] {
        // Epoch 1 checkpoint (i6) and a stop checkpoint (i7).
        assert!(r.start(&p, id, &["--stop-after", "7"]).status.success());
        let dir = r.dir(id);
        let good = dir.join("ckpt/e0001-i000000007.ckpt");
        let mut ckpt = checkpoint::read(&good).unwrap();
        // Poison the classifier's bias so the next forward pass gives a NaN loss, or logits
        // whose softmax puts all weight on one class (an infinite loss for the others).
        for (name, data) in &mut ckpt.model {
            if name == "linear.bias" {
                let n = data.num_elements();
                let values: Vec<f32> = (0..n)
                    .map(|i| match how {
                        "NaN" => f32::NAN,
                        _ if i == 0 => 3.0e38,
                        _ => -3.0e38,
                    })
                    .collect();
                *data = burn::tensor::TensorData::new(values, [n]);
            }
        }
        ckpt.state.global_iter += 1; // written as the newest checkpoint
        let bad = dir.join("ckpt").join(checkpoint::file_name(
            ckpt.state.epoch,
            ckpt.state.global_iter,
        ));
        checkpoint::write(&bad, &ckpt).unwrap();

        let out = r.start(&p, id, &["--resume"]);
        assert!(!out.status.success(), "{id}: a failed run exits non-zero");
        let failed = events(&dir)
            .iter()
            .find_map(|e| match &e.body {
                EventBody::Failed(f) => Some(f.message.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{id}: a failed event"));
        assert!(
            failed.contains(&format!("the loss became {how}")),
            "{id}: {failed}"
        );
        // The good checkpoints are intact and readable.
        for name in ["e0001-i000000006.ckpt", "e0001-i000000007.ckpt"] {
            checkpoint::read(&dir.join("ckpt").join(name))
                .unwrap_or_else(|e| panic!("{id}: {name}: {e}"));
        }
        // Resume from the last good one: the run finishes.
        std::fs::remove_file(&bad).unwrap();
        let out = r.start(&p, id, &["--resume"]);
        assert!(out.status.success(), "{id}: resumes after the failure");
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains("resumed from ckpt/e0001-i000000007.ckpt"),
            "{id}"
        );
        assert!(matches!(
            events(&dir).last().unwrap().body,
            EventBody::Finished(_)
        ));
    }
}

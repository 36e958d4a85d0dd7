//! The headless command line as a user meets it: the command printed to continue a stopped run
//! works as printed, `--resume` never continues a finished run, bare profile names, start-up
//! errors that leave nothing behind, and what an HS run says at its end.

use std::path::Path;
use std::process::Output;

use crate::common::runs::{bin, events};
use repopt_tui::rundir::events::EventBody;

/// A tiny synthetic profile (T0, 2 epochs of 6 iterations) of `kind`.
fn profile_text(kind: &str, extra: &str) -> String {
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
    )
}

/// A working directory with `profiles/<name>.ron` for each (name, text).
fn workdir(profiles: &[(&str, String)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("profiles")).unwrap();
    for (name, text) in profiles {
        std::fs::write(tmp.path().join(format!("profiles/{name}.ron")), text).unwrap();
    }
    tmp
}

/// The binary run in `cwd`, with stdout and stderr as text.
fn run_in(cwd: &Path, args: &[&str]) -> (Output, String, String) {
    let out = bin().args(args).current_dir(cwd).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    (out, o, e)
}

fn finished(dir: &Path) -> bool {
    matches!(
        events(dir).last().map(|e| &e.body),
        Some(EventBody::Finished(_))
    )
}

#[test]
fn the_printed_resume_command_continues_that_run_and_resume_never_picks_a_finished_one() {
    let tmp = workdir(&[("tiny", profile_text("Ablation", ""))]);
    let cwd = tmp.path();
    // One finished run of the profile, then one stopped after 3 iterations.
    let (out, _, e) = run_in(cwd, &["--profile", "tiny", "--run-id", "done"]);
    assert!(out.status.success(), "{e}");
    let (out, stdout, e) = run_in(
        cwd,
        &["--profile", "tiny", "--run-id", "half", "--stop-after", "3"],
    );
    assert!(out.status.success(), "{e}");
    let line = stdout
        .lines()
        .find(|l| l.contains("continue with: "))
        .unwrap_or_else(|| panic!("no resume hint in\n{stdout}"));
    let command = line.split("continue with: ").nth(1).unwrap();
    assert_eq!(
        command, "repopt-tui --profile tiny --run-id half --resume",
        "{line}"
    );
    // Followed literally, it continues `half` (not the finished `done`).
    let words: Vec<&str> = command.split(' ').skip(1).collect();
    let (out, stdout, e) = run_in(cwd, &words);
    assert!(out.status.success(), "{e}");
    assert!(
        stdout.contains("[half]") && stdout.contains("resumed from"),
        "{stdout}"
    );
    assert!(finished(&cwd.join("checkpoints/half")));
    let done_events = events(&cwd.join("checkpoints/done")).len();

    // Without --run-id: the newest unfinished run is continued, never a finished one.
    let (out, _, e) = run_in(
        cwd,
        &[
            "--profile",
            "tiny",
            "--run-id",
            "third",
            "--stop-after",
            "2",
        ],
    );
    assert!(out.status.success(), "{e}");
    let (out, stdout, e) = run_in(cwd, &["--profile", "tiny", "--resume"]);
    assert!(out.status.success(), "{e}");
    assert!(
        stdout.contains("[third]") && stdout.contains("resumed from"),
        "{stdout}"
    );

    // Every run finished: refused, naming them; nothing was appended to a finished run.
    let (out, _, e) = run_in(cwd, &["--profile", "tiny", "--resume"]);
    assert!(!out.status.success());
    for id in ["done (finished", "half (finished", "third (finished"] {
        assert!(e.contains(id), "{id} not named in {e}");
    }
    let (out, _, e) = run_in(cwd, &["--profile", "tiny", "--run-id", "done", "--resume"]);
    assert!(!out.status.success() && e.contains("is finished"), "{e}");
    assert_eq!(events(&cwd.join("checkpoints/done")).len(), done_events);

    // With another --runs-dir the printed command names it too.
    let (out, stdout, e) = run_in(
        cwd,
        &[
            "--profile",
            "profiles/tiny.ron",
            "--runs-dir",
            "other runs",
            "--run-id",
            "x",
            "--stop-after",
            "1",
        ],
    );
    assert!(out.status.success(), "{e}");
    assert!(
        stdout.contains(
            "continue with: repopt-tui --profile profiles/tiny.ron --run-id x --runs-dir 'other runs' --resume"
        ),
        "{stdout}"
    );
}

#[test]
fn a_bare_profile_name_is_found_and_a_wrong_one_lists_the_profiles() {
    let tmp = workdir(&[
        ("tiny", profile_text("Ablation", "")),
        ("other", profile_text("Ablation", "")),
    ]);
    let cwd = tmp.path();
    let (out, _, e) = run_in(cwd, &["--profile", "tinny"]);
    assert!(!out.status.success());
    assert!(
        e.contains("tinny") && e.contains("Available: other, tiny"),
        "{e}"
    );
    assert!(!cwd.join("checkpoints").exists(), "nothing created");
    let (out, stdout, e) = run_in(cwd, &["--profile", "tiny", "--stop-after", "1"]);
    assert!(out.status.success(), "{e}");
    assert!(stdout.contains("stopped (stop-after)"), "{stdout}");
}

#[test]
fn a_run_that_cannot_start_leaves_no_run_directory() {
    let tmp = workdir(&[
        (
            "zero-epochs",
            profile_text("Ablation", "").replace("epochs: 2", "epochs: 0"),
        ),
        (
            "no-data",
            profile_text("Ablation", "").replace(
                "data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 96, synthetic_val: 32, synthetic_seed: 3)",
                r#"data: (kind: ImageFolder, path: "missing/imagenet", image_size: 16, classes: 4)"#,
            ),
        ),
        (
            "wrong-scales",
            profile_text("Target", r#"scales: "profiles/scales/t1.ron","#),
        ),
    ]);
    let cwd = tmp.path();
    std::fs::create_dir(cwd.join("profiles/scales")).unwrap();
    // Scales of another variant: read and checked before anything is created.
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/profiles/scales/t0-demo.ron"
        ),
        cwd.join("profiles/scales/t1.ron"),
    )
    .unwrap();
    let t1 = std::fs::read_to_string(cwd.join("profiles/scales/t1.ron"))
        .unwrap()
        .replace("\"T0\"", "\"T1\"");
    std::fs::write(cwd.join("profiles/scales/t1.ron"), t1).unwrap();
    for (name, says) in [
        ("zero-epochs", "epochs"),
        ("no-data", "missing/imagenet"),
        ("wrong-scales", "T1"),
    ] {
        let (out, _, e) = run_in(cwd, &["--profile", name, "--runs-dir", "runs"]);
        assert!(!out.status.success(), "{name} started");
        assert!(e.contains(says), "{name}: {e}");
        let left: Vec<_> = std::fs::read_dir(cwd.join("runs"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{name} left {left:?}");
        assert!(
            !cwd.join("runs").exists(),
            "{name} created the runs directory"
        );
    }
}

#[test]
fn a_gpu_profile_without_a_gpu_says_to_edit_the_profile_not_to_pass_device() {
    let text = profile_text("Ablation", "").replace("devices: [Cpu]", "devices: [Cuda(0)]");
    let tmp = workdir(&[("gpu", text)]);
    let cwd = tmp.path();
    let (out, _, e) = run_in(cwd, &["--profile", "gpu", "--stop-after", "1"]);
    if out.status.success() {
        return; // a CUDA build on a machine with a GPU: nothing to advise
    }
    assert!(
        e.contains("devices: [Cpu]") && e.contains("profiles/gpu.ron"),
        "{e}"
    );
    assert!(
        !e.contains("--device"),
        "a profile run takes no --device: {e}"
    );
    assert!(!cwd.join("checkpoints").exists());
}

#[test]
fn an_hs_run_ends_with_its_scales_and_the_command_that_trains_the_target() {
    let tmp = workdir(&[
        ("tiny-hs", profile_text("HyperSearch", "")),
        (
            "tiny-target",
            profile_text("RepOpt", r#"scales: "run:tiny-hs","#),
        ),
    ]);
    let cwd = tmp.path();
    let (out, stdout, e) = run_in(cwd, &["--profile", "tiny-hs"]);
    assert!(out.status.success(), "{e}");
    assert!(stdout.contains("] HS T0 on cpu"), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let dir = std::fs::read_dir(cwd.join("checkpoints"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let scales = format!(
        "checkpoints/{}/scales.ron",
        dir.file_name().unwrap().to_str().unwrap()
    );
    assert!(cwd.join(&scales).is_file());
    assert!(
        last.contains(&format!("scales written to {scales}")),
        "{last}"
    );
    let next = last
        .split("with them: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no next step in {last}"));
    assert_eq!(next, "repopt-tui --profile profiles/tiny-target.ron");
    // The next step works as printed, and the kind reads as the dashboard names it.
    let words: Vec<&str> = next.split(' ').skip(1).collect();
    let (out, stdout, e) = run_in(cwd, &words);
    assert!(out.status.success(), "{e}");
    assert!(stdout.contains("] RepOpt T0 on cpu"), "{stdout}");
    assert!(!stdout.contains("with them"), "{stdout}");
}

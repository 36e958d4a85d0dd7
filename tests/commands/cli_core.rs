//! The command line of the core numerics: scales import/show, models, verify, bad input.

use std::process::Command;

use crate::common::{fixture, shared_data};

fn repopt(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_repopt-tui"))
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scales_import_then_show() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b1.ron");
    let pth = shared_data().join("official-scales/RepOpt-VGG-B1-scales.pth");
    let (ok, stdout, stderr) = repopt(&[
        "scales",
        "import",
        pth.to_str().unwrap(),
        "--variant",
        "B1",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("28 blocks of variant B1, 156 negative values"),
        "{stdout}"
    );
    let (ok, stdout, _) = repopt(&["scales", "show", out.to_str().unwrap()]);
    assert!(ok);
    assert!(
        stdout.contains("stage1.3") && stdout.contains("negative values in all: 156"),
        "{stdout}"
    );
    // The shipped profile is the same import.
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/profiles/scales/b1.ron"
    ))
    .unwrap();
    assert_eq!(shipped, std::fs::read_to_string(&out).unwrap());
}

#[test]
fn bad_input_is_one_clear_line_and_a_failure() {
    let (ok, _, stderr) = repopt(&[
        "scales",
        "import",
        "x.pth",
        "--variant",
        "Z7",
        "-o",
        "/tmp/x.ron",
    ]);
    assert!(
        !ok && stderr.contains("unknown model variant 'Z7'") && stderr.contains("B1"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "hello").unwrap();
    let (ok, _, stderr) = repopt(&[
        "scales",
        "import",
        text.to_str().unwrap(),
        "--variant",
        "B1",
        "-o",
        "/tmp/x.ron",
    ]);
    assert!(
        !ok && stderr.contains("notes.pth") && stderr.contains("not a readable PyTorch state dict"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let b1 = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/scales/b1.ron");
    let (ok, _, stderr) = repopt(&["verify", "--variant", "B2", "--scales", b1]);
    assert!(
        !ok && stderr.contains("these scales are for variant B1, the run uses B2"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let broken = dir.path().join("broken.ron");
    std::fs::write(
        &broken,
        "(variant: \"T0\", source: \"x\", blocks: [], colour: 3)",
    )
    .unwrap();
    let (ok, _, stderr) = repopt(&["scales", "show", broken.to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("broken.ron:1:") && stderr.contains("colour"),
        "{stderr}"
    );
}

#[test]
fn models_lists_every_variant_with_published_counts() {
    let (ok, stdout, _) = repopt(&["models"]);
    assert!(ok);
    for needle in [
        "A0",
        "8,313,880",
        "B1",
        "51,841,832",
        "57,415,016",
        "L2",
        "118,132,776",
    ] {
        assert!(stdout.contains(needle), "{needle} missing in\n{stdout}");
    }
}

#[test]
fn verify_passes_for_sgd_and_adamw_and_fails_when_tolerance_is_impossible() {
    let (ok, stdout, stderr) = repopt(&["verify", "--steps", "10"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("PASS"), "{stdout}");
    let (ok, stdout, _) = repopt(&["verify", "--optimizer", "adamw", "--steps", "10"]);
    assert!(ok && stdout.contains("PASS"), "{stdout}");
    let scales = fixture("pth/t0-scales.pth");
    let dir = tempfile::tempdir().unwrap();
    let ron = dir.path().join("t0.ron");
    assert!(
        repopt(&[
            "scales",
            "import",
            scales.to_str().unwrap(),
            "--variant",
            "T0",
            "-o",
            ron.to_str().unwrap()
        ])
        .0
    );
    let (ok, stdout, _) = repopt(&[
        "verify",
        "--scales",
        ron.to_str().unwrap(),
        "--steps",
        "5",
        "--tolerance",
        "1e-12",
    ]);
    assert!(!ok && stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn a_cuda_device_in_a_cpu_build_says_how_to_get_one() {
    let (ok, _, stderr) = repopt(&["verify", "--device", "cuda:0", "--steps", "1"]);
    assert!(!ok);
    assert!(
        stderr.contains("--features cuda") || stderr.contains("no NVIDIA driver found"),
        "{stderr}"
    );
}

/// `bench model --torch --rounds`: the peer runs once per model and round, just before ours, and
/// the summary gives each model's median ratio over the rounds it printed.
#[test]
fn bench_model_alternates_the_peer_with_ours_and_reports_median_ratios() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("peer.log");
    let peer = tmp.path().join("peer.py");
    // A stand-in peer: logs its --kinds and reports a different images/s each call.
    std::fs::write(
        &peer,
        format!(
            r#"import json, sys
kinds = sys.argv[sys.argv.index("--kinds") + 1]
with open({log:?}, "a") as f:
    f.write(kinds + "\n")
calls = sum(1 for _ in open({log:?}))
for k in kinds.split(","):
    print(json.dumps({{"kind": k, "img_per_s": [50.0, 5.0, 20.0][calls % 3]}}))
"#,
            log = log.to_str().unwrap()
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = repopt(&[
        "bench",
        "model",
        "--variant",
        "T0",
        "--res",
        "16",
        "--batch",
        "4",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--models",
        "target,repvgg",
        "--rounds",
        "3",
        "--torch",
        "python3",
        "--torch-script",
        peer.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["target", "repvgg", "target", "repvgg", "target", "repvgg"],
        "one peer run per model and round"
    );
    for kind in ["target", "repvgg"] {
        let mut ratios: Vec<f64> = (1..=3)
            .map(|round| {
                let row = stdout
                    .lines()
                    .find(|l| l.starts_with(&format!("{kind} #{round} ")))
                    .unwrap_or_else(|| panic!("no row {kind} #{round}: {stdout}"));
                row.split_whitespace().last().unwrap().parse().unwrap()
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let summary = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(kind) && l.contains("ours/PyTorch "))
            .unwrap_or_else(|| panic!("no median line for {kind}: {stdout}"));
        assert!(
            summary.contains(&format!("ours/PyTorch {:.2}", ratios[1])),
            "median of {ratios:?} in {summary}"
        );
    }
    // The target's RepOptimizer against plain SGD: one line per round (the two taking steps in
    // turn), and their median in the target's summary.
    let mut overheads: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("vs plain SGD step") && l.ends_with(", in turn"))
        .map(|l| {
            l.rsplit_once('(')
                .unwrap()
                .1
                .split('%')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(overheads.len(), 3, "{stdout}");
    overheads.sort_by(|a, b| a.parse::<f64>().unwrap().total_cmp(&b.parse().unwrap()));
    assert!(
        stdout.contains(&format!("RepOptimizer step vs plain SGD {}%", overheads[1])),
        "median of {overheads:?}: {stdout}"
    );
}

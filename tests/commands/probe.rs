//! The max-batch-size probe on the CPU under a real heap budget. One thread per trial makes the
//! peak heap exactly reproducible (several threads move it by a few percent).

use std::process::Command;

use repopt_tui::rundir::events::{Event, EventBody};

fn probe(runs: &std::path::Path, id: &str) -> Vec<(String, Option<usize>)> {
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/demo-hs.ron");
    let out = Command::new(env!("CARGO_BIN_EXE_repopt-tui"))
        .env("REPOPT_TUI_EXE", env!("CARGO_BIN_EXE_repopt-tui"))
        .args([
            "probe",
            "--profile",
            profile,
            "--variant",
            "T0",
            "--models",
            "target,repvgg",
            "--memory-limit",
            "24MiB",
            "--steps",
            "1",
            "--threads",
            "1",
        ])
        .args(["--runs-dir", runs.to_str().unwrap(), "--run-id", id])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("memory allocation of"),
        "trials beyond the budget die of it:\n{stdout}"
    );
    assert!(stdout.contains("RepOpt-VGG / RepVGG:"), "{stdout}");
    std::fs::read_to_string(runs.join(id).join("events.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| match serde_json::from_str::<Event>(l).unwrap().body {
            EventBody::Probe(p) => {
                assert_eq!(p.memory_limit_bytes, Some(24 * 1024 * 1024));
                assert!(
                    p.peak_bytes.unwrap() <= 24 * 1024 * 1024,
                    "the peak stays under the budget"
                );
                Some((p.model, p.max_batch))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn probe_finds_a_reproducible_max_batch_and_repopt_fits_more_than_repvgg() {
    let tmp = tempfile::tempdir().unwrap();
    let first = probe(tmp.path(), "a");
    let second = probe(tmp.path(), "b");
    assert_eq!(first.len(), 2);
    for ((m1, b1), (m2, b2)) in first.iter().zip(&second) {
        assert_eq!(m1, m2);
        let (b1, b2) = (b1.expect("found"), b2.expect("found"));
        assert!(b1.abs_diff(b2) <= 1, "{m1}: {b1} vs {b2}");
        assert!(b1 > 1 && b1 < 4096);
    }
    let (target, repvgg) = (first[0].1.unwrap(), first[1].1.unwrap());
    assert!(
        target > repvgg,
        "RepOpt-VGG's plain blocks need less training memory: {target} vs {repvgg}"
    );
}

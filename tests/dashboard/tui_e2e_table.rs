//! End to end, in a pseudo-terminal, on the real binary (`repopt-tui dashboard`) over a copy of
//! the fixture runs: filter the runs table with `/`, sort it by a column, mark two runs and open
//! the diff of their frozen profiles, go back with Esc, quit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::pty::{Pty, dashboard_command};
use crate::common::*;

#[test]
fn dashboard_filters_sorts_and_diffs_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("checkpoints");
    let profiles = tmp.path().join("profiles");
    copy_tree(&fixture_runs(), &runs);
    copy_tree(&fixture_profiles(), &profiles);
    let runner = PathBuf::from(env!("CARGO_BIN_EXE_repopt-tui"));
    let t = Duration::from_secs(20);
    let mut pty = Pty::spawn(dashboard_command(&runs, &profiles, &runner));

    pty.wait_text("Runs (5)", t);
    // Filter: the B1 runs (target, RepVGG baseline, probe).
    pty.send("/B1");
    let s = pty.wait_text("Runs (3 of 5)", t);
    assert!(s.contains("/B1"), "{s}");
    assert!(!s.contains(HS_ID), "{s}");
    pty.send("\r");
    // Sort by best top-1 (the sixth column: status, run, kind, model, epoch, best top-1).
    pty.send(">>>>>>");
    let s = pty.wait_text("sorted by best top-1 ▼", t);
    let row = |id: &str| {
        s.lines()
            .position(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} not shown:\n{s}"))
    };
    // 71.x before 9.80; the probe (no top-1) last.
    assert!(row(TARGET_ID) < row(REPVGG_ID), "{s}");
    assert!(row(REPVGG_ID) < row(PROBE_ID), "{s}");
    // Mark the first two rows and diff their frozen profiles.
    pty.send("g  d");
    let s = pty.wait_text("fields differ", t);
    assert!(s.contains("profile.ron of 2 marked runs"), "{s}");
    let wd = s
        .lines()
        .find(|l| l.contains("recipe.weight_decay"))
        .unwrap_or_else(|| panic!("no weight decay row:\n{s}"));
    assert!(
        wd.contains('≠') && wd.contains("4e-5") && wd.contains("0.0001"),
        "{wd}"
    );
    // Esc goes back to the (still filtered) table, a second Esc clears the filter.
    pty.send("\x1b");
    pty.wait_text("Runs (3 of 5)", t);
    pty.send("\x1b");
    pty.wait_text("Runs (5)", t);

    pty.send("q");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = pty.child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < t, "the dashboard did not quit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

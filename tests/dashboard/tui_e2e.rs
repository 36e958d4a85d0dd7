//! End to end, in a pseudo-terminal: start the dashboard, start a run from it, watch its curve
//! move, stop it (with the confirmation), see it recorded as stopped, quit, terminal restored.
//!
//! The screen is read with the `vt100` crate; no tmux or other system package is needed.
//!
//! The dashboard is the real binary (`repopt-tui dashboard`) and the run it starts is a real
//! training run of the shipped CPU demo profile `profiles/demo-hs.ron`, spawned detached by the
//! dashboard and stopped by it with SIGINT.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::pty::{Pty, dashboard_command, find};

/// The program runs are spawned with (the real binary), and a profiles folder holding the demo.
fn runner_and_profile(tmp: &Path) -> (PathBuf, PathBuf) {
    let profiles = tmp.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/demo-hs.ron");
    std::fs::copy(demo, profiles.join("demo-hs.ron")).unwrap();
    (PathBuf::from(env!("CARGO_BIN_EXE_repopt-tui")), profiles)
}

fn events_of(runs: &Path) -> Vec<String> {
    let Some(dir) = std::fs::read_dir(runs)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
    else {
        return Vec::new();
    };
    std::fs::read_to_string(dir.path().join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Kills, when dropped, every live run under `runs`: the dashboard starts runs detached (their
/// own session), so if the test fails before it stops the run, nothing else would end it.
struct KillRunsOnDrop(PathBuf);

impl Drop for KillRunsOnDrop {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(&self.0) else {
            return;
        };
        for dir in dirs.filter_map(|e| e.ok()).map(|e| e.path()) {
            if let Some(pid) = repopt_tui::rundir::live_owner(&dir) {
                // SAFETY: kill takes plain integers; the pid owns a test run directory.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                // Bounded wait until the lock is released (the process is gone).
                let start = Instant::now();
                while repopt_tui::rundir::live_owner(&dir).is_some()
                    && start.elapsed() < Duration::from_secs(10)
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

#[test]
fn dashboard_starts_watches_and_stops_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("checkpoints");
    // Declared after `tmp`, so dropped before it: the run is gone before its directory is.
    let _kill_runs = KillRunsOnDrop(runs.clone());
    let (runner, profiles) = runner_and_profile(tmp.path());
    let t = Duration::from_secs(20);
    let mut cmd = dashboard_command(&runs, &profiles, &runner);
    cmd.args(["--refresh-ms", "200"]);
    let mut pty = Pty::spawn(cmd);

    pty.wait_text("No runs in", t);
    pty.send("n");
    pty.wait_text("Start a run from a profile", t);
    pty.wait_text("demo-hs", t);
    pty.send("\r");
    let s = pty.wait_text("● running", t);
    assert!(s.contains("demo-hs-"), "{s}");

    // The charts: the loss curve grows as steps arrive.
    pty.send("2");
    pty.wait_text("train (EMA)", t);
    let before = pty.rows(3, 18);
    let n_before = events_of(&runs).len();
    let moved = pty.wait_for("the loss chart to change", t, |_| pty.rows(3, 18) != before);
    assert!(events_of(&runs).len() > n_before, "no new events");
    assert!(moved.contains("Loss"));

    // Stop, with the confirmation.
    pty.send("1");
    pty.wait_text("Runs (1)", t);
    pty.send("s");
    pty.wait_text("Stop run?", t);
    pty.send("y");
    let s = pty.wait_text("■ stopped", t);
    assert!(s.contains("stopped by SIGINT"), "{s}");
    let events = events_of(&runs);
    assert!(
        events.last().unwrap().contains("\"kind\":\"stopped\""),
        "{:?}",
        events.last()
    );
    assert!(events.iter().any(|e| e.contains("\"kind\":\"checkpoint\"")));

    // Quit: the process ends and leaves the alternate screen.
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
    // The reader thread may still be copying the last bytes: wait (bounded) for the cursor to
    // be shown again after leaving the alternate screen.
    let start = Instant::now();
    let restored = |raw: &[u8]| {
        find(raw, b"\x1b[?1049l").is_some_and(|leave| find(&raw[leave..], b"\x1b[?25h").is_some())
    };
    while !restored(&pty.raw.lock().unwrap()) && start.elapsed() < t {
        std::thread::sleep(Duration::from_millis(20));
    }
    let raw = pty.raw.lock().unwrap().clone();
    let enter = find(&raw, b"\x1b[?1049h").expect("entered the alternate screen");
    let leave = find(&raw, b"\x1b[?1049l").expect("left the alternate screen");
    assert!(leave > enter);
    assert!(
        find(&raw[leave..], b"\x1b[?25h").is_some(),
        "cursor shown again"
    );
}

//! The run lock, live owners, run status and the runs listing.

use std::path::Path;

use crate::common::*;
use repopt_tui::rundir::events::{EventBody, RunKindTag, Stopped};
use repopt_tui::rundir::{
    EventWriter, LockError, RunLock, RunStatus, list_runs, live_owner, summarize_run,
};

#[test]
fn lock_is_exclusive_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(live_owner(dir.path()), None, "no lock file: no owner");
    let lock = RunLock::acquire(dir.path()).unwrap();
    let me = std::process::id();
    assert_eq!(lock.pid(), me);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("run.lock"))
            .unwrap()
            .trim(),
        me.to_string()
    );
    assert_eq!(live_owner(dir.path()), Some(me));

    // flock locks belong to open file descriptions: a second acquire conflicts even in-process.
    let err = RunLock::acquire(dir.path()).unwrap_err();
    match &err {
        LockError::Held { pid, .. } => assert_eq!(*pid, Some(me)),
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&format!("pid {me}")), "{msg}");
    assert!(msg.contains("run.lock"), "{msg}");

    drop(lock);
    assert_eq!(live_owner(dir.path()), None);
    let again = RunLock::acquire(dir.path()).unwrap();
    drop(again);
}

#[test]
fn stale_pid_without_a_lock_is_not_an_owner() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("run.lock"), "1\n").unwrap();
    assert_eq!(live_owner(dir.path()), None);
}

#[test]
fn lock_held_by_another_process_is_seen() {
    // `flock` from util-linux holds the lock in a child process while `sleep` runs.
    if std::process::Command::new("flock")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("flock(1) not installed; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("run.lock");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 9>>'{0}'; flock -n 9 || exit 1; echo $$ > '{0}'; exec sleep 30",
            lock.display()
        ))
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while live_owner(dir.path()) != Some(pid) {
        assert!(std::time::Instant::now() < deadline, "lock never seen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(live_owner(dir.path()), Some(pid));
    let err = RunLock::acquire(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&format!("pid {pid}")), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(live_owner(dir.path()), None);
}

fn status_of(dir: &Path) -> RunStatus {
    summarize_run(dir).unwrap().status
}

#[test]
fn status_follows_events_and_owner() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("x-20260101-000000");
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(status_of(&dir), RunStatus::New);

    let lock = RunLock::acquire(&dir).unwrap();
    assert_eq!(status_of(&dir), RunStatus::Running);
    let mut w = EventWriter::open(&dir).unwrap();
    w.write(&ev(
        10.0,
        started("x-20260101-000000", "target", "B1", 2, 10),
    ))
    .unwrap();
    w.write(&ev(11.0, step(0, 3, 10, 2.0, 0.1, 10.0))).unwrap();
    assert_eq!(status_of(&dir), RunStatus::Running);
    drop(lock);
    assert_eq!(
        status_of(&dir),
        RunStatus::Interrupted,
        "died without a terminal event"
    );

    w.write(&ev(
        12.0,
        EventBody::Stopped(Stopped {
            epoch: 0,
            global_iter: 4,
            reason: "SIGINT".into(),
            checkpoint: None,
        }),
    ))
    .unwrap();
    let s = summarize_run(&dir).unwrap();
    assert_eq!(s.status, RunStatus::Stopped);
    assert_eq!(s.stop_reason.as_deref(), Some("SIGINT"));

    // Resumed: a new owner took the lock after the stop, before writing `started`.
    let lock = RunLock::acquire(&dir).unwrap();
    assert_eq!(status_of(&dir), RunStatus::Running);
    w.write(&ev(
        1e12,
        started("x-20260101-000000", "target", "B1", 2, 10),
    ))
    .unwrap();
    assert_eq!(status_of(&dir), RunStatus::Running);
    drop(lock);
    assert_eq!(status_of(&dir), RunStatus::Interrupted);
}

#[test]
fn fixture_runs_are_listed_with_kind_variant_status_epoch_best() {
    let runs = list_runs(&fixture_runs()).unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![HS_ID, PROBE_ID, ABLATION_ID, REPVGG_ID, TARGET_ID]
    );
    let by_id = |id: &str| runs.iter().find(|r| r.id == id).unwrap();

    let hs = by_id(HS_ID);
    assert_eq!(hs.kind, Some(RunKindTag::HyperSearch));
    assert_eq!(hs.variant, "A0");
    assert_eq!(hs.status, RunStatus::Interrupted, "nobody holds its lock");
    assert_eq!(hs.epoch, Some(2));
    assert_eq!(hs.best_top1, Some(21.5));

    let target = by_id(TARGET_ID);
    assert_eq!(target.status, RunStatus::Finished);
    assert_eq!(target.kind, Some(RunKindTag::Target));
    assert_eq!(target.epoch, Some(5));
    assert!(
        (target.best_top1.unwrap() - 69.24).abs() < 0.01,
        "{target:?}"
    );
    assert_eq!(target.progress(), Some(1.0));

    let failed = by_id(REPVGG_ID);
    assert_eq!(failed.status, RunStatus::Failed);
    assert!(failed.failure.as_deref().unwrap().contains("out of memory"));

    assert_eq!(by_id(ABLATION_ID).status, RunStatus::Stopped);
    let probe = by_id(PROBE_ID);
    assert_eq!(probe.kind, Some(RunKindTag::Probe));
    assert_eq!(probe.status, RunStatus::Finished);
    assert!(runs.iter().all(|r| r.last_update().is_some()));
}

#[test]
fn missing_runs_dir_is_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    assert!(list_runs(&dir.path().join("nope")).unwrap().is_empty());
}

/// The committed fixtures are exactly what the generator writes (so the generator is the
/// documentation of the fixture set). Regenerate with
/// `REPOPT_REGENERATE_FIXTURES=1 cargo test --test commands -- --ignored regenerate_fixtures`.
#[test]
fn fixtures_match_generator() {
    let tmp = tempfile::tempdir().unwrap();
    generate_fixture_runs(tmp.path());
    for id in [HS_ID, TARGET_ID, REPVGG_ID, ABLATION_ID, PROBE_ID] {
        let want = std::fs::read_to_string(tmp.path().join(id).join("events.jsonl")).unwrap();
        let have = std::fs::read_to_string(fixture_runs().join(id).join("events.jsonl"))
            .unwrap_or_default();
        assert!(
            want == have,
            "fixture {id} is stale: run regenerate_fixtures"
        );
    }
}

/// Rewrites the committed fixtures, only when asked by name *and* by the environment:
/// `cargo test -- --include-ignored` must not change files under version control.
#[test]
#[ignore = "rewrites tests/fixtures/runs (with REPOPT_REGENERATE_FIXTURES=1)"]
fn regenerate_fixtures() {
    if std::env::var_os("REPOPT_REGENERATE_FIXTURES").is_none_or(|v| v != "1") {
        eprintln!(
            "tests/fixtures/runs left as they are: set REPOPT_REGENERATE_FIXTURES=1 to rewrite them"
        );
        return;
    }
    generate_fixture_runs(&fixture_runs());
}

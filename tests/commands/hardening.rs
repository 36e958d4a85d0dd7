//! The real binary against a hostile environment: a dropped SSH connection (SIGHUP), closed
//! output (EPIPE, EIO), a full disk, kill -9 at random moments, SIGTERM during validation,
//! leftover temporary files, runs without checkpoints, bad run ids and bad values.

use crate::common::runs::{bin, events, run};

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use repopt_tui::rundir::events::EventBody;

fn stopped(dir: &Path) -> Option<repopt_tui::rundir::events::Stopped> {
    events(dir).into_iter().rev().find_map(|e| match e.body {
        EventBody::Stopped(s) => Some(s),
        _ => None,
    })
}

/// A tiny synthetic profile: T0, `epochs` epochs of 6 iterations of 16 images.
fn tiny_profile(dir: &Path, name: &str, epochs: u32, extra: &str, val: usize) -> PathBuf {
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(
        &path,
        format!(
            r#"(
    kind: Ablation,
    variant: "T0",
    data: (kind: Synthetic, classes: 4, image_size: 16, synthetic_train: 96, synthetic_val: {val}, synthetic_seed: 3),
    recipe: (
        epochs: {epochs}, batch_size: 16, lr: 0.05, lr_scaling: false, warmup_epochs: 0.5,
        optimizer: Sgd(momentum: 0.9, nesterov: true), weight_decay: 4e-5, label_smoothing: 0.1,
        augment: CifarStandard, workers: 1, eval_batch_size: 16,
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

fn step_events(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .map(|t| t.matches("\"kind\":\"step\"").count())
        .unwrap_or(0)
}

/// Waits (bounded) until `cond` holds; panics with `what` otherwise.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(120), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill takes plain integers; the pid is our own child's.
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for d in [dir.to_path_buf(), dir.join("ckpt")] {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().contains(".tmp") {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

#[test]
fn sighup_with_a_dead_terminal_checkpoints_and_stops_then_resume_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "hup", 40, "", 32);
    let mut child = bin()
        .args(["--profile", profile.to_str().unwrap(), "--runs-dir"])
        .arg(&runs)
        .args(["--run-id", "hup"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let dir = runs.join("hup");
    wait_for("the run steps", || step_events(&dir) >= 3);
    // What an SSH drop does: the terminal is gone (writes fail), then SIGHUP.
    drop(child.stdout.take());
    signal(&child, libc::SIGHUP);
    let status = wait_exit(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let s = stopped(&dir).expect("a stopped event");
    assert_eq!(s.reason, "SIGHUP");
    // Everything the run said, so that a failure here explains itself.
    let ckpt = s.checkpoint.unwrap_or_else(|| {
        let log = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
        panic!("no checkpoint on the way out; stderr:\n{stderr}\nevents:\n{log}")
    });
    repopt_tui::train::checkpoint::read(&dir.join(&ckpt)).expect("a valid checkpoint");
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "hup",
        "--resume",
        "--stop-after",
        "2",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("resumed from {ckpt}")));
}

#[test]
fn under_nohup_sighup_stays_ignored_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "nohup", 40, "", 32);
    let mut cmd = bin();
    cmd.args(["--profile", profile.to_str().unwrap(), "--runs-dir"])
        .arg(&runs)
        .args(["--run-id", "nohup"])
        .stdout(Stdio::null());
    // SAFETY: the hook only calls async-signal-safe functions between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let dir = runs.join("nohup");
    wait_for("the run steps", || step_events(&dir) >= 2);
    signal(&child, libc::SIGHUP);
    let after = step_events(&dir);
    wait_for("the run goes on after SIGHUP", || {
        step_events(&dir) >= after + 3
    });
    assert!(child.try_wait().unwrap().is_none());
    signal(&child, libc::SIGINT);
    assert!(wait_exit(&mut child).success());
    assert_eq!(stopped(&dir).unwrap().reason, "SIGINT");
}

#[test]
fn a_closed_stdout_never_kills_a_run() {
    // `repopt-tui --profile P | head -1`: the reader goes away after the first line.
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "pipe", 2, "", 32);
    let mut child = bin()
        .args(["--profile", profile.to_str().unwrap(), "--runs-dir"])
        .arg(&runs)
        .args(["--run-id", "pipe"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("[pipe]"), "{first}");
    // The reader is dropped here: every later line meets EPIPE.
    let status = wait_exit(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let ev = events(&runs.join("pipe"));
    assert!(matches!(ev.last().unwrap().body, EventBody::Finished(_)));
    assert!(runs.join("pipe/model.safetensors").exists());
}

/// A pseudo-terminal whose master side is closed: writes to it fail with EIO, as on a terminal
/// that went away.
fn dead_terminal() -> std::fs::File {
    // SAFETY: plain libc calls on descriptors this function opens and owns.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0);
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(master))
            .to_string_lossy()
            .into_owned();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(name)
            .unwrap();
        libc::close(master);
        slave
    }
}

use std::os::unix::fs::OpenOptionsExt;

#[test]
fn eval_verify_and_a_run_survive_a_dead_terminal_and_a_closed_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "tty", 1, "", 32);
    // A run on a terminal that is gone (EIO on every write) finishes.
    let status = bin()
        .args(["--profile", profile.to_str().unwrap(), "--runs-dir"])
        .arg(&runs)
        .args(["--run-id", "tty"])
        .stdout(Stdio::from(dead_terminal()))
        .stderr(Stdio::from(dead_terminal()))
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(matches!(
        events(&runs.join("tty")).last().unwrap().body,
        EventBody::Finished(_)
    ));
    // eval with a reader that is gone from the start: no panic (exit 101), the result stands.
    let weights = runs.join("tty/model.safetensors");
    let mut child = bin()
        .args(["eval", "--profile", profile.to_str().unwrap(), "--weights"])
        .arg(&weights)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // verify on a dead terminal.
    let status = bin()
        .args(["verify", "--steps", "2", "--resolution", "16"])
        .stdout(Stdio::from(dead_terminal()))
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_during_validation_stops_after_one_batch_and_resume_evaluates_first() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    // 6 iterations, then a validation pass of 600 batches: the signal lands in it.
    let profile = tiny_profile(tmp.path(), "val", 2, "", 9600);
    let mut child = bin()
        .args(["--profile", profile.to_str().unwrap(), "--runs-dir"])
        .arg(&runs)
        .args(["--run-id", "val"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let dir = runs.join("val");
    wait_for("the first epoch's last step", || step_events(&dir) >= 6);
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status:?}");
    let ev = events(&dir);
    assert!(
        !ev.iter().any(|e| matches!(e.body, EventBody::Eval(_))),
        "the validation pass was cut short, not finished"
    );
    let s = stopped(&dir).expect("stopped");
    assert_eq!(s.reason, "SIGTERM");
    // The checkpoint holds the whole first epoch's training (6 iterations), not yet evaluated.
    assert_eq!(s.global_iter, 6);
    let ckpt = s.checkpoint.expect("checkpoint");
    let c = repopt_tui::train::checkpoint::read(&dir.join(&ckpt)).unwrap();
    assert_eq!((c.state.epoch, c.state.iter), (0, 6));
    // Resumed: evaluates epoch 1 first, then trains on.
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "val",
        "--resume",
        "--stop-after",
        "1",
    ]);
    assert!(out.status.success());
    let ev = events(&dir);
    let evals: Vec<u32> = ev
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Eval(v) => Some(v.epoch),
            _ => None,
        })
        .collect();
    assert_eq!(evals, vec![0]);
}

#[test]
fn stop_after_a_whole_epoch_runs_exactly_that_many_iterations() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "six", 3, "", 32);
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "six",
        "--stop-after",
        "6",
    ]);
    assert!(out.status.success());
    let dir = runs.join("six");
    assert_eq!(step_events(&dir), 6);
    let s = stopped(&dir).unwrap();
    assert_eq!((s.reason.as_str(), s.global_iter), ("stop-after", 6));
    assert_eq!(s.checkpoint.as_deref(), Some("ckpt/e0001-i000000006.ckpt"));
}

/// RLIMIT_FSIZE makes every file of the child stop growing at `limit` bytes: the write that
/// crosses it is short, later ones fail (EFBIG) — what a full disk does to each file.
fn with_file_size_limit(cmd: &mut Command, limit: u64) {
    // SAFETY: the hook only calls setrlimit (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let r = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_full_disk_keeps_events_valid_and_records_failed_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "full", 2, "", 32);
    // Room for the first events, not for any checkpoint (~100 kB each), and events.jsonl fills
    // up during the run.
    let mut cmd = bin();
    cmd.args(["--profile", profile.to_str().unwrap(), "--runs-dir"])
        .arg(&runs)
        .args(["--run-id", "full"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    with_file_size_limit(&mut cmd, 5000);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let dir = runs.join("full");
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert!(text.len() <= 5000);
    assert!(text.is_empty() || text.ends_with('\n'), "no partial line");
    let ev = events(&dir);
    assert!(
        ev.iter()
            .any(|e| matches!(&e.body, EventBody::CheckpointFailed(c) if c.path == "ckpt/e0001-i000000006.ckpt")),
        "the failed checkpoint is an event: {text}"
    );
    assert!(stderr.contains("checkpoint failed"), "{stderr}");
    assert!(temporaries(&dir).is_empty(), "{:?}", temporaries(&dir));
    assert!(
        repopt_tui::train::checkpoint::list(&dir.join("ckpt")).is_empty(),
        "no checkpoint fits"
    );
}

#[test]
fn kill_9_at_random_moments_never_breaks_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    // A checkpoint every ~1 s too (every_minutes 0.01 = 0.6 s), so kills land in writes as well.
    // T1: checkpoints of ~4 MB, so a write takes long enough to be hit.
    let profile = tiny_profile(
        tmp.path(),
        "k9",
        1000,
        "checkpoint: (every_minutes: 0.01, keep_last: 2),",
        16,
    );
    let text = std::fs::read_to_string(&profile)
        .unwrap()
        .replace("variant: \"T0\"", "variant: \"T1\"");
    std::fs::write(&profile, text).unwrap();
    let dir = runs.join("k9");
    let notes = tmp.path().join("stderr.log");
    // Deterministic "random" delays (xorshift), 0.05–1.5 s after the process shows progress.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut resumed = 0;
    for round in 0..12 {
        let mut cmd = bin();
        cmd.args(["--profile", profile.to_str().unwrap(), "--runs-dir"])
            .arg(&runs)
            .args(["--run-id", "k9"])
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&notes)
                    .unwrap(),
            );
        if dir.join("events.jsonl").exists() {
            cmd.arg("--resume");
        }
        let before = std::fs::metadata(dir.join("events.jsonl")).map_or(0, |m| m.len());
        let mut child = cmd.spawn().unwrap();
        // Wait until this process has written something (started or later), then a random delay.
        wait_for("the process writes events", || {
            std::fs::metadata(dir.join("events.jsonl")).map_or(0, |m| m.len()) > before
                || child.try_wait().unwrap().is_some()
        });
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if round % 2 == 1 {
            // Kill inside a checkpoint write: as soon as its temporary file shows up.
            let start = Instant::now();
            while temporaries(&dir).is_empty()
                && start.elapsed() < Duration::from_secs(20)
                && child.try_wait().unwrap().is_none()
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        } else {
            std::thread::sleep(Duration::from_millis(50 + x % 1450));
        }
        signal(&child, libc::SIGKILL);
        let _ = wait_exit(&mut child);
        // events.jsonl may end in a torn line here; the next process cuts it off.
        if round > 0 {
            resumed += 1;
        }
    }
    assert!(resumed >= 10);
    // A last, clean resume: runs and stops normally, leaves no temporaries, every line valid.
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "k9",
        "--resume",
        "--stop-after",
        "2",
    ]);
    assert!(out.status.success());
    let ev = events(&dir);
    let starts: Vec<Option<String>> = ev
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Started(s) => Some(s.resumed_from.clone()),
            _ => None,
        })
        .collect();
    assert!(starts.len() >= 10, "{starts:?}");
    // Work survived the kills: later processes resumed from checkpoints.
    let resumed_from_ckpt = starts.iter().filter(|s| s.is_some()).count();
    assert!(resumed_from_ckpt >= 5, "{starts:?}");
    // Some kills landed inside checkpoint writes, and their temporaries were removed.
    assert!(
        std::fs::read_to_string(&notes)
            .unwrap_or_default()
            .contains("left by an interrupted write")
    );
    let cleaned = std::fs::read_to_string(&notes).unwrap_or_default();
    eprintln!(
        "kill -9 loop: {} starts, {resumed_from_ckpt} resumed from a checkpoint, {} temporaries of interrupted writes removed",
        starts.len(),
        cleaned.matches("left by an interrupted write").count()
    );
    assert!(matches!(ev.last().unwrap().body, EventBody::Stopped(_)));
    assert!(temporaries(&dir).is_empty(), "{:?}", temporaries(&dir));
    for p in repopt_tui::train::checkpoint::list(&dir.join("ckpt")) {
        repopt_tui::train::checkpoint::read(&p).expect("every checkpoint valid");
    }
}

#[test]
fn leftover_temporaries_are_removed_when_the_run_starts_again() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "tmpf", 2, "", 32);
    let args = [
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "tmpf",
        "--stop-after",
        "2",
    ];
    assert!(run(&args).status.success());
    let dir = runs.join("tmpf");
    // What kill -9 during a write leaves (pid 999999 is not this process).
    std::fs::write(
        dir.join("ckpt/.e0001-i000000006.ckpt.tmp-999999"),
        vec![0u8; 4096],
    )
    .unwrap();
    std::fs::write(dir.join(".model.safetensors.tmp-999999"), b"x").unwrap();
    std::fs::write(dir.join("ckpt/.best.ckpt.tmp"), b"x").unwrap();
    let mut resume = args.to_vec();
    resume.push("--resume");
    let out = run(&resume);
    assert!(out.status.success());
    assert!(temporaries(&dir).is_empty(), "{:?}", temporaries(&dir));
    assert!(String::from_utf8_lossy(&out.stderr).contains("left by an interrupted write"));
}

#[test]
fn a_run_without_a_checkpoint_can_be_resumed_and_best_is_a_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "nock", 1, "", 32);
    let args = [
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "nock",
    ];
    assert!(run(&args).status.success());
    let dir = runs.join("nock");
    // best.ckpt is its own file: damaging the numbered one leaves it intact.
    let numbered = dir.join("ckpt/e0001-i000000006.ckpt");
    let best = dir.join("ckpt/best.ckpt");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&best).unwrap().nlink(), 1);
    std::fs::write(&numbered, b"damaged").unwrap();
    repopt_tui::train::checkpoint::read(&best).expect("best.ckpt intact");
    // Every checkpoint gone (killed before the first one): restarting under the id is refused
    // with a pointer to --resume, and --resume starts the run over.
    std::fs::remove_dir_all(dir.join("ckpt")).unwrap();
    let out = run(&args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("continue it with --resume"));
    let mut resume = args.to_vec();
    resume.push("--resume");
    let out = run(&resume);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from the beginning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&dir);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e.body, EventBody::Finished(_)))
            .count(),
        2
    );
}

#[test]
fn bad_run_ids_and_flags_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "ids", 1, "", 32);
    for (id, why) in [
        ("", "it is empty"),
        ("../escape", "path separator"),
        ("/tmp/abs", "path separator"),
        ("a/b/c", "path separator"),
        (".hidden", "starts with '.'"),
        ("ckpt", "run directory's own folder"),
    ] {
        let out = run(&[
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--run-id",
            id,
        ]);
        assert!(!out.status.success(), "{id:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is not a valid run id") && stderr.contains(why),
            "{id:?}: {stderr}"
        );
    }
    assert!(!runs.exists() || std::fs::read_dir(&runs).unwrap().next().is_none());
    assert!(!tmp.path().join("escape").exists());

    for (args, expect) in [
        (
            &["verify", "--resolution", "0"][..],
            "--resolution must be between 1 and 1024",
        ),
        (
            &["verify", "--lr", "NaN"][..],
            "--lr must be a positive number",
        ),
        (
            &[
                "probe",
                "--profile",
                profile.to_str().unwrap(),
                "--steps",
                "0",
            ][..],
            "--steps must be at least 1",
        ),
        (
            &[
                "probe",
                "--profile",
                profile.to_str().unwrap(),
                "--memory-limit",
                "0",
            ][..],
            "--memory-limit 0 leaves no memory",
        ),
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn non_finite_weights_are_never_scored_and_verify_fails_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "nan", 1, "", 32);
    let args = [
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "nan",
    ];
    assert!(run(&args).status.success());
    // The trained weights with one NaN: eval names the problem and fails.
    let bytes = std::fs::read(runs.join("nan/model.safetensors")).unwrap();
    let (meta, mut tensors) = repopt_tui::interop::safetensors::from_bytes(&bytes).unwrap();
    let (name, data) = tensors
        .iter_mut()
        .find(|(n, _)| n.ends_with("conv.weight"))
        .unwrap();
    let name = name.clone();
    let mut v = data.to_vec::<f32>().unwrap();
    v[3] = f32::NAN;
    *data = burn::tensor::TensorData::new(v, data.shape.clone());
    let bad = tmp.path().join("bad.safetensors");
    std::fs::write(
        &bad,
        repopt_tui::interop::safetensors::to_bytes(&tensors, meta).unwrap(),
    )
    .unwrap();
    let out = run(&[
        "eval",
        "--profile",
        profile.to_str().unwrap(),
        "--weights",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 values are NaN or infinite") && stderr.contains(&name),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("top-1"));

    // verify with a learning rate that diverges: non-finite values are a failure, not a PASS.
    let out = run(&[
        "verify",
        "--lr",
        "1e6",
        "--steps",
        "5",
        "--resolution",
        "16",
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL") && !stdout.contains("PASS"),
        "{stdout}"
    );
}

#[test]
fn a_profile_with_a_byte_order_mark_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tiny_profile(tmp.path(), "bom", 1, "", 32);
    let mut text = "\u{feff}".to_string();
    text.push_str(&std::fs::read_to_string(&plain).unwrap());
    let bom = tmp.path().join("with-bom.ron");
    std::fs::write(&bom, text).unwrap();
    assert_eq!(
        repopt_tui::profile::RunProfile::load(&bom).unwrap(),
        repopt_tui::profile::RunProfile::load(&plain).unwrap()
    );
}

#[test]
fn a_diverged_model_with_a_finite_loss_is_failed_not_scored_or_checkpointed() {
    // lr 1e6 without clipping: the training loss stays finite for an epoch, the weights do not.
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let text = std::fs::read_to_string(tiny_profile(tmp.path(), "x", 3, "", 32))
        .unwrap()
        .replace("lr: 0.05,", "lr: 1e6,")
        .replace("warmup_epochs: 0.5,", "");
    let profile = tmp.path().join("diverge.ron");
    std::fs::write(&profile, text).unwrap();
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "big-lr",
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("val loss NaN"), "{stdout}");
    let ev = events(&runs.join("big-lr"));
    let failed = ev
        .iter()
        .find_map(|e| match &e.body {
            EventBody::Failed(f) => Some(f.message.clone()),
            _ => None,
        })
        .expect("failed event");
    assert!(
        failed.contains("the model is not finite")
            && failed.contains("weights are NaN or infinite"),
        "{failed}"
    );
    assert!(!ev.iter().any(|e| matches!(e.body, EventBody::Eval(_))));
    assert!(repopt_tui::train::checkpoint::list(&runs.join("big-lr/ckpt")).is_empty());
    assert!(!runs.join("big-lr/ckpt/best.ckpt").exists());
}

#[test]
fn export_of_a_checkpoint_copied_out_of_its_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "exp", 1, "", 32);
    assert!(
        run(&[
            "--profile",
            profile.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--run-id",
            "exp",
        ])
        .status
        .success()
    );
    let loose = tmp.path().join("loose.ckpt");
    std::fs::copy(runs.join("exp/ckpt/e0001-i000000006.ckpt"), &loose).unwrap();
    let out_file = tmp.path().join("w.safetensors");
    let out = run(&[
        "export",
        loose.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    // The same tensors as the run's own final weights (written from the same model).
    let read = |p: &Path| {
        let (_, t) =
            repopt_tui::interop::safetensors::from_bytes(&std::fs::read(p).unwrap()).unwrap();
        let mut t: Vec<(String, Vec<f32>)> = t
            .into_iter()
            .map(|(n, d)| (n, d.to_vec::<f32>().unwrap()))
            .collect();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    assert_eq!(read(&out_file), read(&runs.join("exp/model.safetensors")));
}

#[test]
fn resume_with_a_different_profile_says_the_frozen_one_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let profile = tiny_profile(tmp.path(), "frz", 2, "", 32);
    let args = [
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "frz",
        "--stop-after",
        "2",
    ];
    assert!(run(&args).status.success());
    let other = tmp.path().join("other.ron");
    std::fs::write(
        &other,
        std::fs::read_to_string(&profile)
            .unwrap()
            .replace("lr: 0.05,", "lr: 0.5,"),
    )
    .unwrap();
    let out = run(&[
        "--profile",
        other.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "frz",
        "--resume",
        "--stop-after",
        "1",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("continues with the run's frozen profile")
            && stderr.contains("differs from it in recipe"),
        "{stderr}"
    );
}

#[test]
fn an_image_folder_with_one_class_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("train/cat")).unwrap();
    std::fs::create_dir_all(tmp.path().join("val/cat")).unwrap();
    let e = repopt_tui::data::folder::open_image_folder(tmp.path(), false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("has one class folder (cat)") && e.contains("at least two"),
        "{e}"
    );
}

#[test]
fn an_unwritable_export_scales_path_fails_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let text = std::fs::read_to_string(tiny_profile(tmp.path(), "x", 1, "", 32))
        .unwrap()
        .replace("kind: Ablation", "kind: HyperSearch");
    let profile = tmp.path().join("hs.ron");
    std::fs::write(
        &profile,
        text.replace(
            "log_every: 1,",
            "log_every: 1, export_scales: \"/nonexistent-dir/sub/mine.ron\",",
        ),
    )
    .unwrap();
    let out = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--run-id",
        "hs",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("export_scales: cannot write into /nonexistent-dir/sub"),
        "{stderr}"
    );
    assert!(!runs.join("hs/events.jsonl").exists(), "nothing trained");
}

/// A small tmpfs, mounted for the test and unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: statvfs is plain old data, valid all zero.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C path and a pointer to a live statvfs.
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
        s.f_bavail as u64 * s.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_real_full_disk_on_a_tmpfs_keeps_events_valid_and_the_run_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(&tmp.path().join("disk"), "8m") {
        Ok(d) => d,
        Err(why) => {
            eprintln!(
                "skipped: cannot mount a tmpfs here ({why}); the RLIMIT_FSIZE test covers short writes"
            );
            return;
        }
    };
    let runs = disk.0.join("runs");
    let profile = tiny_profile(tmp.path(), "disk", 1000, "checkpoint: (keep_last: 1),", 16);
    let mut child = bin()
        .args(["--profile", profile.to_str().unwrap(), "--runs-dir"])
        .arg(&runs)
        .args(["--run-id", "disk"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr as it comes: a pipe nobody reads would block the run once full.
    let mut err_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err_pipe, &mut s);
        s
    });
    let dir = runs.join("disk");
    let checkpoints = |dir: &Path| {
        std::fs::read_to_string(dir.join("events.jsonl"))
            .map(|t| t.matches("\"kind\":\"checkpoint\"").count())
            .unwrap_or(0)
    };
    wait_for("a first checkpoint", || checkpoints(&dir) >= 1);
    // Fill the disk but for one page: events hit ENOSPC part-way through a line, checkpoints
    // cannot be written.
    let filler = disk.0.join("filler");
    let free = disk.free_bytes();
    std::fs::write(&filler, vec![1u8; (free - 4096) as usize]).unwrap();
    let failed_ckpts = |dir: &Path| {
        std::fs::read_to_string(dir.join("events.jsonl"))
            .map(|t| t.matches("\"kind\":\"checkpoint_failed\"").count())
            .unwrap_or(0)
    };
    let full_len = || std::fs::metadata(dir.join("events.jsonl")).unwrap().len();
    // Until the events file stops growing for a while (the page is full).
    let mut last = (full_len(), Instant::now());
    wait_for("events.jsonl fills the last page", || {
        // A checkpoint's temporary file removed after ENOSPC gives its space back: top up.
        let free = disk.free_bytes();
        if free > 8192 {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&filler)
                .unwrap();
            let _ = f.write_all(&vec![1u8; (free - 4096) as usize]);
        }
        let len = full_len();
        if len != last.0 {
            last = (len, Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(3)
    });
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert!(text.ends_with('\n'), "no partial line on a full disk");
    // Space again: the run writes checkpoints and events again.
    std::fs::remove_file(&filler).unwrap();
    let before = checkpoints(&dir);
    wait_for("a checkpoint after the disk has room again", || {
        checkpoints(&dir) > before
    });
    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child);
    let stderr = stderr_reader.join().unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("checkpoint failed"), "{stderr}");
    // The full events file is reported once per streak, not once per event.
    assert!(stderr.matches("cannot append to").count() <= 3, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let ev = events(&dir); // every line valid
    assert!(matches!(ev.last().unwrap().body, EventBody::Stopped(_)));
    assert!(
        failed_ckpts(&dir) >= 1 || stderr.contains("cannot append"),
        "a failed checkpoint is recorded (or, with the events file full too, reported)"
    );
    assert!(temporaries(&dir).is_empty(), "{:?}", temporaries(&dir));
    for p in repopt_tui::train::checkpoint::list(&dir.join("ckpt")) {
        repopt_tui::train::checkpoint::read(&p).expect("checkpoints valid");
    }
}

#[test]
fn ctrl_c_stops_eval_and_verify_even_when_sigint_was_ignored() {
    // A script's background job starts with SIGINT ignored; the commands install handlers.
    // SAFETY: the hook only calls signal (async-signal-safe) between fork and exec.
    let ignoring_sigint = |cmd: &mut Command| unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    };
    let mut cmd = bin();
    cmd.args(["verify", "--steps", "100000", "--resolution", "16"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    ignoring_sigint(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("verify:"), "{first}");
    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("verify: interrupted (SIGINT)"), "{stderr}");

    // eval over a large validation split, interrupted between batches.
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let small = tiny_profile(tmp.path(), "ev", 1, "", 32);
    assert!(
        run(&[
            "--profile",
            small.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--run-id",
            "ev",
        ])
        .status
        .success()
    );
    let big = tiny_profile(tmp.path(), "ev-big", 1, "", 200_000);
    let mut cmd = bin();
    cmd.args(["eval", "--profile", big.to_str().unwrap(), "--weights"])
        .arg(runs.join("ev/model.safetensors"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    ignoring_sigint(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("eval:"), "{first}");
    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("eval: interrupted (SIGINT)"), "{stderr}");
}

//! Figures for the README (ignored by default; run in release):
//!
//! ```text
//! cargo test --release --test tui_measure -- --ignored --nocapture measure
//! ```
//!
//! 1. CPU used by the dashboard (default refresh, charts view of a live run) over
//!    `REPOPT_MEASURE_SECS` seconds (default 20), from `/proc/<pid>/stat` (utime + stime).
//! 2. Throughput of a live run with and without the dashboard watching it.
//!
//! The run is a synthetic, CPU-bound stand-in for training (until the real loop exists): one
//! worker thread per core doing fixed floating-point work per iteration, a `step` event every
//! 5 iterations, an `eval` every 100, through the real `RunLock` and `EventWriter`. Set
//! `REPOPT_MEASURE_RUNNER` to a program taking the spawn contract's arguments (the real
//! `repopt-tui` with `REPOPT_MEASURE_PROFILE=profiles/demo-hs.ron`) to measure real training.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::pty::{self, Pty, dashboard_command};
use common::*;
use repopt_tui::rundir::events::*;
use repopt_tui::rundir::{EventWriter, RunLock, read_all};

#[test]
#[ignore = "the dashboard process of the measurement"]
fn dashboard_child() {
    pty::dashboard_child_main();
}

/// The synthetic run (a child process: this binary re-executed on this test).
#[test]
#[ignore = "the synthetic run of the measurement"]
fn synthetic_runner() {
    let Some(dir) = std::env::var_os("REPOPT_SYNTH_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _lock = RunLock::acquire(&dir).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone()).unwrap();
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone()).unwrap();
    let mut w = EventWriter::open(&dir).unwrap();
    let ipe = 100u64;
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();
    let mut s = started(&id, "hyper_search", "A0", 1000, ipe);
    if let EventBody::Started(st) = &mut s {
        st.pid = std::process::id();
    }
    w.emit(s).unwrap();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let batch = 64.0;
    let mut g = 0u64;
    let mut t_last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::scope(|sc| {
            for k in 0..threads {
                sc.spawn(move || std::hint::black_box(work(k as u64 + g)));
            }
        });
        g += 1;
        if g.is_multiple_of(5) {
            let dt = t_last.elapsed().as_secs_f64();
            t_last = Instant::now();
            let (epoch, iter) = ((g / ipe) as u32, g % ipe);
            w.emit(step(
                epoch,
                iter,
                ipe,
                2.0 + 1.0 / g as f64,
                0.1,
                5.0 * batch / dt,
            ))
            .unwrap();
        }
        if g.is_multiple_of(ipe) {
            w.emit(eval((g / ipe) as u32 - 1, 3.0, 10.0, 30.0)).unwrap();
        }
    }
    w.emit(EventBody::Stopped(Stopped {
        epoch: (g / ipe) as u32,
        global_iter: g,
        reason: "SIGINT".into(),
        checkpoint: None,
    }))
    .unwrap();
}

/// About 10 ms of floating-point work on one core.
fn work(seed: u64) -> f32 {
    let n = 96;
    let a: Vec<f32> = (0..n * n)
        .map(|i| ((i as u64 + seed) % 7) as f32 * 0.1)
        .collect();
    let mut c = vec![0f32; n * n];
    for _ in 0..6 {
        for i in 0..n {
            for k in 0..n {
                let aik = a[i * n + k];
                for j in 0..n {
                    c[i * n + j] += aik * a[k * n + j];
                }
            }
        }
    }
    c.iter().sum()
}

fn start_run(runs: &Path, id: &str) -> Child {
    let dir = runs.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(runner) = std::env::var_os("REPOPT_MEASURE_RUNNER") {
        let profile = std::env::var_os("REPOPT_MEASURE_PROFILE").expect("REPOPT_MEASURE_PROFILE");
        return Command::new(runner)
            .arg("--profile")
            .arg(profile)
            .args(["--run-id", id, "--runs-dir"])
            .arg(runs)
            .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
            .spawn()
            .unwrap();
    }
    Command::new(std::env::current_exe().unwrap())
        .args(["synthetic_runner", "--exact", "--ignored", "--nocapture"])
        .env("REPOPT_SYNTH_DIR", &dir)
        .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
        .spawn()
        .unwrap()
}

fn stop_run(mut child: Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    child.wait().unwrap();
}

/// Mean and standard deviation of the run's images/s over steps in [t0, t1].
fn throughput(runs: &Path, id: &str, t0: f64, t1: f64) -> (f64, f64, usize) {
    let (events, _) = read_all(&runs.join(id).join("events.jsonl")).unwrap();
    let v: Vec<f64> = events
        .iter()
        .filter(|e| e.t >= t0 && e.t <= t1)
        .filter_map(|e| match &e.body {
            EventBody::Step(s) => Some(s.images_per_s),
            _ => None,
        })
        .collect();
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    (mean, sd, v.len())
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn now() -> f64 {
    repopt_tui::rundir::unix_now()
}

#[test]
#[ignore = "measurement (~1 minute); run in release with --nocapture"]
fn measure_dashboard_cpu_and_run_throughput() {
    let secs: f64 = std::env::var("REPOPT_MEASURE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20.0);
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("checkpoints");
    let profiles = tmp.path().join("profiles");
    copy_tree(&fixture_profiles(), &profiles);
    // Finished runs in the list too, as on a real box.
    copy_tree(&fixture_runs(), &runs);
    let warm = Duration::from_secs(3);
    let window = Duration::from_secs_f64(secs);

    // 1. The run alone.
    let child = start_run(&runs, "alone-20260101-000000");
    std::thread::sleep(warm);
    let t0 = now();
    std::thread::sleep(window);
    let t1 = now();
    stop_run(child);
    let alone = throughput(&runs, "alone-20260101-000000", t0, t1);

    // 2. The run watched by the dashboard (charts view, default refresh).
    let child = start_run(&runs, "watched-20260101-000100");
    let mut dash = Pty::spawn(dashboard_command(&runs, &profiles, Path::new("/bin/false")));
    dash.wait_text("watched-20260101-000100", Duration::from_secs(30));
    dash.send("2");
    dash.wait_text("train (EMA)", Duration::from_secs(30));
    std::thread::sleep(warm);
    let pid = dash.child.id();
    let c0 = cpu_ticks(pid);
    let w0 = Instant::now();
    let t0 = now();
    std::thread::sleep(window);
    let c1 = cpu_ticks(pid);
    let wall = w0.elapsed().as_secs_f64();
    let t1 = now();
    let screen = dash.screen();
    dash.send("q");
    stop_run(child);
    let watched = throughput(&runs, "watched-20260101-000100", t0, t1);
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_s = (c1 - c0) as f64 / hz;
    assert!(screen.contains("running"), "{screen}");

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cores} cores; window {secs:.0} s; run: step event every 5 iterations");
    println!(
        "dashboard CPU (charts view of the live run, default refresh): {:.2} s in {:.1} s = {:.2}% of one core",
        cpu_s,
        wall,
        100.0 * cpu_s / wall
    );
    println!(
        "run throughput alone:   {:.1} images/s (sd {:.1}, {} steps)",
        alone.0, alone.1, alone.2
    );
    println!(
        "run throughput watched: {:.1} images/s (sd {:.1}, {} steps) → {:+.2}%",
        watched.0,
        watched.1,
        watched.2,
        100.0 * (watched.0 - alone.0) / alone.0
    );
}

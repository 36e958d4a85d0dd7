//! Figures for the README (ignored by default; run in release):
//!
//! ```text
//! cargo test --release --test dashboard -- --ignored --nocapture measure
//! ```
//!
//! 1. CPU used by the dashboard (default refresh, charts view of a live run) over
//!    `REPOPT_MEASURE_SECS` seconds (default 20), from `/proc/<pid>/stat` (utime + stime).
//! 2. Throughput of a live run with and without the dashboard watching it.
//!
//! The run: set `REPOPT_MEASURE_RUNNER` to the real binary (`target/release/repopt-tui`) and
//! `REPOPT_MEASURE_PROFILE` to a CPU profile long enough for the windows (the HS demo with more
//! epochs) to measure real training; without them a synthetic CPU-bound stand-in runs (one
//! worker thread per core, a `step` event every 5 iterations, an `eval` every 100, through the
//! real `RunLock` and `EventWriter`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::pty::{Pty, dashboard_command};
use crate::common::*;
use repopt_tui::rundir::events::*;
use repopt_tui::rundir::{EventWriter, RunLock, read_all};

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

/// Fixed floating-point work for one core (about 30 ms in a release build here).
fn work(seed: u64) -> f32 {
    let n = 96;
    let a: Vec<f32> = (0..n * n)
        .map(|i| ((i as u64 + seed) % 7) as f32 * 0.1)
        .collect();
    let mut c = vec![0f32; n * n];
    for _ in 0..100 {
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

/// The run's throughput over steps in [t0, t1]: images done / time taken, and the standard
/// deviation of the per-step figures.
fn throughput(runs: &Path, id: &str, t0: f64, t1: f64) -> (f64, f64, usize) {
    let (events, _) = read_all(&runs.join(id).join("events.jsonl")).unwrap();
    let steps: Vec<(f64, u64, f64)> = events
        .iter()
        .filter(|e| e.t >= t0 && e.t <= t1)
        .filter_map(|e| match &e.body {
            EventBody::Step(s) => Some((e.t, s.global_iter, s.images_per_s)),
            _ => None,
        })
        .collect();
    let (Some(a), Some(b)) = (steps.first(), steps.last()) else {
        return (0.0, 0.0, 0);
    };
    let batch = 64.0;
    let rate = (b.1 - a.1) as f64 * batch / (b.0 - a.0).max(1e-9);
    let n = steps.len() as f64;
    let mean = steps.iter().map(|s| s.2).sum::<f64>() / n;
    let sd = (steps.iter().map(|s| (s.2 - mean).powi(2)).sum::<f64>() / n).sqrt();
    (rate, sd, steps.len())
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
#[ignore = "measurement (~1.5 minutes); run in release with --nocapture"]
fn measure_dashboard_cpu_and_run_throughput() {
    let secs: f64 = std::env::var("REPOPT_MEASURE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20.0);
    let rounds: usize = std::env::var("REPOPT_MEASURE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("checkpoints");
    let profiles = tmp.path().join("profiles");
    copy_tree(&fixture_profiles(), &profiles);
    // Finished runs in the list too, as on a real box.
    copy_tree(&fixture_runs(), &runs);
    let window = Duration::from_secs_f64(secs);
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;

    // One run throughout; the dashboard is opened and closed around it, alternating windows
    // (alone, watched, alone, watched, …) so that drift and other load hit both alike.
    let id = "bench-20260101-000000";
    let child = start_run(&runs, id);
    std::thread::sleep(Duration::from_secs(3));
    let mut alone = Vec::new();
    let mut watched = Vec::new();
    let (mut cpu_s, mut cpu_wall, mut harness_s) = (0.0, 0.0, 0.0);
    let me = std::process::id();
    for _ in 0..rounds {
        let t0 = now();
        std::thread::sleep(window);
        alone.push(throughput(&runs, id, t0, now()));

        let mut dash = Pty::spawn(dashboard_command(&runs, &profiles, Path::new("/bin/false")));
        dash.wait_text(id, Duration::from_secs(30));
        dash.send("2");
        dash.wait_text("train (EMA)", Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(2));
        let pid = dash.child.id();
        let c0 = cpu_ticks(pid);
        let h0 = cpu_ticks(me);
        let w0 = Instant::now();
        let t0 = now();
        std::thread::sleep(window);
        let c1 = cpu_ticks(pid);
        harness_s += (cpu_ticks(me) - h0) as f64 / hz;
        cpu_wall += w0.elapsed().as_secs_f64();
        cpu_s += (c1 - c0) as f64 / hz;
        watched.push(throughput(&runs, id, t0, now()));
        let screen = dash.screen();
        assert!(screen.contains("running"), "{screen}");
        dash.send("q");
        let _ = dash.child.wait();
        std::thread::sleep(Duration::from_secs(1));
    }
    stop_run(child);

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut load = String::new();
    let _ = std::fs::read_to_string("/proc/loadavg").map(|l| load = l);
    println!("machine: {cores} cores, load average {}", load.trim());
    println!(
        "dashboard CPU (charts view of the live run, default refresh): {cpu_s:.2} s in {cpu_wall:.1} s = {:.2}% of one core",
        100.0 * cpu_s / cpu_wall
    );
    println!(
        "the test's terminal emulator (vt100 parsing the dashboard's output): {:.2}% of one core",
        100.0 * harness_s / cpu_wall
    );
    let mean = |v: &[(f64, f64, usize)]| v.iter().map(|x| x.0).sum::<f64>() / v.len() as f64;
    for (i, (a, w)) in alone.iter().zip(&watched).enumerate() {
        println!(
            "round {i}: alone {:.1} images/s (sd {:.1}, {} steps) · watched {:.1} images/s (sd {:.1}, {} steps)",
            a.0, a.1, a.2, w.0, w.1, w.2
        );
    }
    let (a, w) = (mean(&alone), mean(&watched));
    println!(
        "run throughput: alone {a:.1}, watched {w:.1} images/s → {:+.2}%",
        100.0 * (w - a) / a
    );
}

/// A run of a million step events: how long the collector takes to load it, and how long one
/// frame of its charts takes to draw (decimation keeps this independent of the event count).
#[test]
#[ignore = "measurement; run in release with --nocapture"]
fn measure_million_events() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use repopt_tui::tui::store::lock;
    use repopt_tui::tui::{App, AppConfig, Collector, GpuSource, Store, ui};
    use std::sync::Mutex;

    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let dir = runs.join("big-20260101-000000");
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = EventWriter::open(&dir).unwrap();
    let ipe = 5000u64;
    w.write(&ev(
        1e9,
        started("big-20260101-000000", "target", "B1", 200, ipe),
    ))
    .unwrap();
    for g in 0..1_000_000u64 {
        let (e, i) = ((g / ipe) as u32, g % ipe);
        let loss = 1.0 + 5.0 / (1.0 + g as f64 / 1e4) + 0.3 * rnd(g);
        w.write(&ev(
            1e9 + g as f64 * 0.1,
            step(e, i, ipe, loss, 0.1, 2000.0 + rnd(g + 1) * 100.0),
        ))
        .unwrap();
        if i == ipe - 1 {
            w.write(&ev(1e9 + g as f64 * 0.1, eval(e, 2.0, 50.0, 75.0)))
                .unwrap();
        }
    }
    drop(w);
    let size = std::fs::metadata(dir.join("events.jsonl")).unwrap().len();

    let store = Arc::new(Mutex::new(Store::new(&runs, tmp.path())));
    let mut c = Collector::new(&runs, tmp.path(), GpuSource::Off);
    let t = Instant::now();
    c.poll_until_loaded(&store);
    let load = t.elapsed();
    assert_eq!(lock(&store).runs[0].series.steps.len(), 1_000_000);

    let mut app = App::new(
        store,
        AppConfig {
            mouse: false,
            launcher: None,
        },
    );
    app.view = repopt_tui::tui::View::Charts;
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    term.draw(|f| ui::render(&mut app, f)).unwrap(); // first frame computes the EMA
    let t = Instant::now();
    let frames = 20;
    for _ in 0..frames {
        term.draw(|f| ui::render(&mut app, f)).unwrap();
    }
    let frame = t.elapsed() / frames;
    let t = Instant::now();
    for _ in 0..10 {
        c.poll(&app.store);
    }
    let t_poll = t.elapsed() / 10;
    println!(
        "1M events ({} MB): loaded in {load:?}; a 200x60 charts frame in {frame:?}; an idle poll in {t_poll:?}",
        size >> 20
    );
}

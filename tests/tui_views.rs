//! The dashboard on ratatui's `TestBackend`: snapshots of the main views over the fixture run
//! directories, every panel at tiny sizes, the event loop itself, styles of the chart lines.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use repopt_tui::gpu::{GpuDevice, GpuProcess, GpuStatus, NoGpuReason};
use repopt_tui::rundir::{RunLock, RunStatus};
use repopt_tui::tui::app::Popup;
use repopt_tui::tui::keymap::Action;
use repopt_tui::tui::store::lock;
use repopt_tui::tui::{App, AppConfig, AppEvent, Collector, GpuSource, Store, View, run_app, ui};

/// A copy of the fixture runs (with the HS run made live by holding its lock) and profiles.
struct Fixture {
    _tmp: tempfile::TempDir,
    runs: std::path::PathBuf,
    profiles: std::path::PathBuf,
    _lock: RunLock,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("checkpoints");
    let profiles = tmp.path().join("profiles");
    copy_tree(&fixture_runs(), &runs);
    copy_tree(&fixture_profiles(), &profiles);
    let lock = RunLock::acquire(&runs.join(HS_ID)).unwrap();
    Fixture {
        _tmp: tmp,
        runs,
        profiles,
        _lock: lock,
    }
}

fn no_gpu() -> GpuStatus {
    GpuStatus::Unavailable(NoGpuReason::LibraryNotFound {
        tried: vec!["libnvidia-ml.so".into(), "libnvidia-ml.so.1".into()],
        detail: "libnvidia-ml.so.1: cannot open shared object file: No such file or directory"
            .into(),
    })
}

/// A store loaded from `runs`/`profiles`, with a fixed GPU state and the live owner's pid pinned
/// (the lock is held by this test process, whose pid varies).
fn load(runs: &Path, profiles: &Path) -> Arc<Mutex<Store>> {
    let store = Arc::new(Mutex::new(Store::new(runs, profiles)));
    let mut c = Collector::new(runs, profiles, GpuSource::Off);
    c.poll_until_loaded(&store);
    {
        let mut s = lock(&store);
        s.set_gpu(no_gpu(), Vec::new(), 0.0);
        for r in &mut s.runs {
            if r.summary.owner_pid.is_some() {
                r.summary.owner_pid = Some(4242);
            }
        }
    }
    store
}

fn app_for(fx: &Fixture) -> App {
    let store = load(&fx.runs, &fx.profiles);
    let mut app = App::new(
        store,
        AppConfig {
            mouse: true,
            launcher: None,
        },
    );
    app.freeze_clock(hs_last_t() + 3.0);
    app
}

fn draw(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::render(app, f)).unwrap();
    t
}

/// The screen as text, one line per row, trailing spaces trimmed.
fn screen(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The screen with the temporary directory's path replaced by `<tmp>`.
fn text(app: &mut App, w: u16, h: u16) -> String {
    let root = lock(&app.store)
        .runs_dir
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let s = screen(&draw(app, w, h));
    if root.len() > 1 {
        s.replace(&root, "<tmp>")
    } else {
        s
    }
}

fn select(app: &mut App, id: &str) {
    app.selected = Some(id.to_string());
}

#[test]
fn fixture_statuses() {
    let fx = fixture();
    let store = load(&fx.runs, &fx.profiles);
    let s = lock(&store);
    let status = |id: &str| s.run(id).unwrap().summary.status;
    assert_eq!(status(HS_ID), RunStatus::Running);
    assert_eq!(status(TARGET_ID), RunStatus::Finished);
    assert_eq!(status(REPVGG_ID), RunStatus::Failed);
    assert_eq!(status(ABLATION_ID), RunStatus::Stopped);
    assert_eq!(s.profiles.len(), 3);
}

#[test]
fn snapshot_runs_view_live_hs() {
    let fx = fixture();
    let mut app = app_for(&fx);
    insta::assert_snapshot!("runs_live_hs", text(&mut app, 120, 30));
}

#[test]
fn snapshot_runs_view_failed_run() {
    let fx = fixture();
    let mut app = app_for(&fx);
    select(&mut app, REPVGG_ID);
    insta::assert_snapshot!("runs_failed", text(&mut app, 100, 28));
}

#[test]
fn snapshot_charts_live_hs() {
    let fx = fixture();
    let mut app = app_for(&fx);
    app.act(Action::ViewCharts);
    insta::assert_snapshot!("charts_live_hs", text(&mut app, 120, 36));
}

#[test]
fn snapshot_charts_finished_target_log_zoomed() {
    let fx = fixture();
    let mut app = app_for(&fx);
    select(&mut app, TARGET_ID);
    app.act(Action::ViewCharts);
    insta::assert_snapshot!("charts_finished_target", text(&mut app, 120, 36));
    app.act(Action::ToggleLog);
    app.act(Action::ZoomIn);
    app.act(Action::SmoothMore);
    insta::assert_snapshot!("charts_finished_target_log_zoom", text(&mut app, 120, 36));
}

#[test]
fn snapshot_compare_overlay() {
    let fx = fixture();
    let mut app = app_for(&fx);
    select(&mut app, TARGET_ID);
    app.act(Action::ToggleMark); // marks the target, moves to the next run
    select(&mut app, REPVGG_ID);
    app.act(Action::ToggleMark);
    assert_eq!(
        app.marked,
        vec![TARGET_ID.to_string(), REPVGG_ID.to_string()]
    );
    app.act(Action::ViewCharts);
    insta::assert_snapshot!("charts_compare", text(&mut app, 120, 36));
}

#[test]
fn snapshot_scales_live_hs() {
    let fx = fixture();
    let mut app = app_for(&fx);
    app.act(Action::ViewScales);
    for _ in 0..3 {
        app.act(Action::Down);
    }
    insta::assert_snapshot!("scales_live_hs", text(&mut app, 120, 40));
    app.act(Action::Left);
    let earlier = text(&mut app, 120, 40);
    assert!(earlier.contains("epoch 1 (1 of 2)"), "{earlier}");
}

#[test]
fn snapshot_scales_profile() {
    let fx = fixture();
    let mut app = app_for(&fx);
    app.act(Action::ViewScales);
    app.act(Action::Open); // p: pick a scales profile
    assert!(matches!(app.popup, Some(Popup::Picker { .. })));
    insta::assert_snapshot!("scales_profile_picker", text(&mut app, 100, 30));
    app.act(Action::Confirm);
    app.act(Action::Down);
    app.act(Action::Down);
    insta::assert_snapshot!("scales_profile", text(&mut app, 100, 30));
}

#[test]
fn snapshot_scales_of_a_target_run_says_why_empty() {
    let fx = fixture();
    let mut app = app_for(&fx);
    select(&mut app, TARGET_ID);
    app.act(Action::ViewScales);
    let s = text(&mut app, 80, 20);
    assert!(s.contains("Not a Hyper-Search run"), "{s}");
}

#[test]
fn snapshot_gpu_none() {
    let fx = fixture();
    let mut app = app_for(&fx);
    app.act(Action::ViewGpu);
    insta::assert_snapshot!("gpu_none", text(&mut app, 120, 24));
}

fn fake_gpu(i: u32, used: u64, util: u32) -> GpuDevice {
    GpuDevice {
        index: i,
        name: "NVIDIA H100 80GB HBM3".into(),
        memory_used_bytes: used,
        memory_total_bytes: 85_520_809_984,
        utilization: Some(util),
        temperature_c: Some(54 + i),
        power_w: Some(512.3),
        power_limit_w: Some(700.0),
        processes: vec![GpuProcess {
            pid: 4242,
            memory_bytes: Some(used - 500_000_000),
        }],
    }
}

#[test]
fn snapshot_gpu_two_devices_with_history() {
    let fx = fixture();
    let mut app = app_for(&fx);
    {
        let mut s = lock(&app.store);
        let status = GpuStatus::Available {
            library: "libnvidia-ml.so.1".into(),
            driver_version: Some("550.54.15".into()),
            devices: 2,
        };
        for k in 0..60u64 {
            let devs = vec![
                fake_gpu(0, 60_000_000_000 + k * 100_000_000, (k * 7 % 100) as u32),
                fake_gpu(1, 1_000_000_000, (k % 3) as u32),
            ];
            s.set_gpu(status.clone(), devs, k as f64);
        }
    }
    app.act(Action::ViewGpu);
    insta::assert_snapshot!("gpu_two_devices", text(&mut app, 100, 24));
}

#[test]
fn snapshot_maxbs() {
    let fx = fixture();
    let mut app = app_for(&fx);
    app.act(Action::ViewMaxBs);
    insta::assert_snapshot!("maxbs", text(&mut app, 120, 24));
}

#[test]
fn snapshot_help_and_stop_confirmation() {
    let fx = fixture();
    let mut app = app_for(&fx);
    app.act(Action::Help);
    insta::assert_snapshot!("help", text(&mut app, 100, 40));
    app.act(Action::Cancel);
    assert!(app.popup.is_none());
    app.act(Action::Stop);
    insta::assert_snapshot!("stop_confirm", text(&mut app, 100, 30));
    app.act(Action::Cancel);
    assert!(app.popup.is_none());
    // Stopping a finished run is refused with a message, no popup.
    select(&mut app, TARGET_ID);
    app.act(Action::Stop);
    assert!(app.popup.is_none());
    assert!(
        app.message
            .as_ref()
            .unwrap()
            .text
            .contains("nothing to stop")
    );
}

#[test]
fn snapshot_checkpoints_list() {
    let fx = fixture();
    let mut app = app_for(&fx);
    select(&mut app, TARGET_ID);
    app.act(Action::Checkpoints);
    let s = text(&mut app, 100, 30);
    assert!(s.contains("ckpt/e0006-i000000600.ckpt"), "{s}");
    insta::assert_snapshot!("checkpoints", s);
}

#[test]
fn snapshot_too_small() {
    let fx = fixture();
    let mut app = app_for(&fx);
    insta::assert_snapshot!("too_small", text(&mut app, 50, 12));
}

#[test]
fn hint_bar_and_help_come_from_the_keymap() {
    let fx = fixture();
    let mut app = app_for(&fx);
    let s = text(&mut app, 120, 30);
    let last = s.lines().last().unwrap();
    for (keys, word) in repopt_tui::tui::keymap::hints(repopt_tui::tui::keymap::Context::Runs)
        .into_iter()
        .take(5)
    {
        assert!(last.contains(&format!("{keys} {word}")), "{last}");
    }
}

#[test]
fn every_view_and_popup_renders_at_tiny_sizes() {
    let fx = fixture();
    let mut app = app_for(&fx);
    let sizes = [
        (0, 0),
        (1, 1),
        (20, 5),
        (59, 14),
        (60, 15),
        (61, 16),
        (80, 24),
        (200, 60),
        (300, 8),
        (8, 100),
    ];
    type Setup = Box<dyn Fn(&mut App)>;
    let states: Vec<Setup> = vec![
        Box::new(|_| {}),
        Box::new(|a| a.act(Action::Help)),
        Box::new(|a| a.act(Action::Stop)),
        Box::new(|a| a.act(Action::Checkpoints)),
        Box::new(|a| {
            a.act(Action::ViewScales);
            a.act(Action::Open);
        }),
    ];
    for view in View::ALL {
        for (si, state) in states.iter().enumerate() {
            for sel in [HS_ID, TARGET_ID, REPVGG_ID, PROBE_ID] {
                for &(w, h) in &sizes {
                    app.popup = None;
                    app.view = View::Runs;
                    select(&mut app, sel);
                    state(&mut app);
                    if app.popup.is_none() || si == 0 {
                        app.view = view;
                    }
                    draw(&mut app, w, h);
                }
            }
        }
    }
    // Compare mode and a scales profile too.
    app.popup = None;
    app.marked = vec![TARGET_ID.into(), HS_ID.into(), REPVGG_ID.into()];
    for &(w, h) in &sizes {
        app.view = View::Charts;
        draw(&mut app, w, h);
    }
}

#[test]
fn empty_runs_dir_and_missing_profiles() {
    let tmp = tempfile::tempdir().unwrap();
    let store = load(&tmp.path().join("none"), &tmp.path().join("nope"));
    let mut app = App::new(
        store,
        AppConfig {
            mouse: false,
            launcher: None,
        },
    );
    app.freeze_clock(0.0);
    for v in View::ALL {
        app.view = v;
        for (w, h) in [(0, 0), (20, 5), (80, 24)] {
            draw(&mut app, w, h);
        }
    }
    app.view = View::Runs;
    let s = text(&mut app, 80, 24);
    assert!(s.contains("No runs in"), "{s}");
}

#[test]
fn raw_line_is_dim_and_smoothed_line_bright() {
    let fx = fixture();
    let mut app = app_for(&fx);
    select(&mut app, TARGET_ID);
    app.act(Action::ViewCharts);
    let t = draw(&mut app, 120, 36);
    let buf = t.backend().buffer();
    // The loss panel: top-left quarter.
    let mut fg = std::collections::HashSet::new();
    for y in 4..18 {
        for x in 8..58 {
            let c = &buf[(x, y)];
            if c.symbol()
                .chars()
                .all(|ch| ('\u{2800}'..='\u{28FF}').contains(&ch))
            {
                fg.insert(c.fg);
            }
        }
    }
    assert!(fg.contains(&Color::DarkGray), "raw line missing: {fg:?}");
    assert!(fg.contains(&Color::Yellow), "smoothed line missing: {fg:?}");
}

fn key(c: char) -> AppEvent {
    AppEvent::Input(TermEvent::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::NONE,
    )))
}

/// The real event loop on `TestBackend`: keys in, frames out, quit.
#[test]
fn event_loop_runs_on_test_backend() {
    let fx = fixture();
    let mut app = app_for(&fx);
    let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for ev in [key('2'), key('l'), AppEvent::Data, key('?')] {
        tx.send(ev).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // Let the loop draw the last state, then quit.
    let quitter = tx.clone();
    rt.block_on(async {
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let _ = quitter.send(AppEvent::Input(TermEvent::Key(KeyEvent::new(
                KeyCode::Char('c'),
                KeyModifiers::CONTROL,
            ))));
        });
        run_app(&mut term, &mut app, &mut rx).await.unwrap();
    });
    assert!(app.quit);
    assert_eq!(app.view, View::Charts);
    assert!(app.chart.log);
    let s = screen(&term);
    assert!(s.contains("Help"), "{s}");
}

/// No busy loop: with nothing live and no input, the loop draws once and then sleeps.
#[test]
fn event_loop_does_not_redraw_when_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    copy_tree(&fixture_runs().join(TARGET_ID), &runs.join(TARGET_ID));
    let store = load(&runs, tmp.path());
    let mut app = App::new(
        store,
        AppConfig {
            mouse: false,
            launcher: None,
        },
    );
    let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let frames = rt.block_on(async {
        let quitter = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
            let _ = quitter.send(AppEvent::Quit);
        });
        run_app(&mut term, &mut app, &mut rx).await.unwrap();
        term.get_frame().count()
    });
    assert!(frames <= 2, "{frames} frames drawn while idle");
}

#[test]
fn mouse_clicks_tabs_and_rows_and_scrolls() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let fx = fixture();
    let mut app = app_for(&fx);
    draw(&mut app, 120, 30);
    let mouse = |kind, column, row| {
        AppEvent::Input(TermEvent::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        }))
    };
    // The fourth run row (header at y=2, first run at y=3).
    app.handle(mouse(MouseEventKind::Down(MouseButton::Left), 20, 6));
    assert_eq!(app.selected.as_deref(), Some(REPVGG_ID));
    app.handle(mouse(MouseEventKind::ScrollDown, 20, 6));
    assert_eq!(app.selected.as_deref(), Some(TARGET_ID));
    // The "3 Scales" tab.
    let (rect, _) = app.regions.tabs[2];
    app.handle(mouse(
        MouseEventKind::Down(MouseButton::Left),
        rect.x + 1,
        0,
    ));
    assert_eq!(app.view, View::Scales);
    // Mouse off: ignored.
    app.cfg.mouse = false;
    app.handle(mouse(MouseEventKind::Down(MouseButton::Left), 2, 0));
    assert_eq!(app.view, View::Scales);
}

/// The collector follows a run live: appears, partial last line, new events, lock released,
/// terminal event; the app announces the end.
#[test]
fn collector_follows_a_live_run() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let store = Arc::new(Mutex::new(Store::new(&runs, tmp.path())));
    let mut c = Collector::new(&runs, tmp.path(), GpuSource::Off);
    c.poll(&store);
    let mut app = App::new(
        store.clone(),
        AppConfig {
            mouse: false,
            launcher: None,
        },
    );
    assert!(lock(&store).runs.is_empty());

    let dir = runs.join("live-20260101-000000");
    std::fs::create_dir_all(&dir).unwrap();
    let lock_ = RunLock::acquire(&dir).unwrap();
    let mut w = repopt_tui::rundir::EventWriter::open(&dir).unwrap();
    w.write(&ev(
        1.0,
        started("live-20260101-000000", "target", "A0", 2, 10),
    ))
    .unwrap();
    let torn = serde_json::to_string(&ev(2.0, step(0, 1, 10, 2.0, 0.1, 9.0))).unwrap() + "\n";
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("events.jsonl"))
        .unwrap();
    f.write_all(&torn.as_bytes()[..20]).unwrap();
    assert!(c.poll(&store));
    app.on_data();
    {
        let s = lock(&store);
        let r = s.run("live-20260101-000000").unwrap();
        assert_eq!(r.summary.status, RunStatus::Running);
        assert_eq!(r.summary.events, 1);
        assert_eq!(r.summary.skipped_lines, 0);
    }
    assert_eq!(app.selected.as_deref(), Some("live-20260101-000000"));
    f.write_all(&torn.as_bytes()[20..]).unwrap();
    assert!(c.poll(&store));
    assert_eq!(lock(&store).runs[0].series.steps.len(), 1);
    assert!(!c.poll(&store), "nothing new, nothing changed");

    w.write(&ev(
        3.0,
        repopt_tui::rundir::events::EventBody::Stopped(repopt_tui::rundir::events::Stopped {
            epoch: 0,
            global_iter: 2,
            reason: "SIGINT".into(),
            checkpoint: None,
        }),
    ))
    .unwrap();
    drop(lock_);
    assert!(c.poll(&store));
    app.on_data();
    assert_eq!(lock(&store).runs[0].summary.status, RunStatus::Stopped);
    assert!(
        app.message.as_ref().unwrap().text.contains("stopped"),
        "{:?}",
        app.message
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(c.poll(&store));
    assert!(lock(&store).runs.is_empty());
}

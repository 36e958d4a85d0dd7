//! The dashboard on ratatui's `TestBackend`: snapshots of the main views over the fixture run
//! directories, every panel at tiny sizes, the event loop itself, styles of the chart lines.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::*;
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use repopt_tui::gpu::{GpuDevice, GpuProcess, GpuStatus, NoGpuReason};
use repopt_tui::rundir::{RunLock, RunStatus};
use repopt_tui::tui::app::{Popup, XAxis};
use repopt_tui::tui::keymap::Action;
use repopt_tui::tui::pages::Page;
use repopt_tui::tui::runs_table::Column;
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
    app.act(Action::Profile); // p: pick a scales profile
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
    // Narrower than the overlay: long sentences wrap, none is cut (the last words of the
    // longest ones are on screen once scrolled to them).
    let narrow = text(&mut app, 80, 200);
    for end in ["`lr=0.1`)", "bksp deletes)", "(like tail -f)"] {
        assert!(narrow.contains(end), "{end} cut off:\n{narrow}");
    }
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
        Box::new(|a| a.act(Action::Columns)),
        Box::new(|a| a.act(Action::Delete)),
        Box::new(|a| {
            a.page = Some(Page::Log {
                run_id: REPVGG_ID.into(),
                back: 0,
            })
        }),
        Box::new(|a| {
            a.page = Some(Page::Profile {
                run_id: TARGET_ID.into(),
                scroll: 0,
            })
        }),
        Box::new(|a| {
            a.page = Some(Page::Diff {
                run_ids: vec![TARGET_ID.into(), REPVGG_ID.into(), PROBE_ID.into()],
                scroll: 0,
            })
        }),
        Box::new(|a| {
            a.filter = "b1".into();
            a.filter_editing = true;
        }),
        Box::new(|a| {
            a.act(Action::ViewScales);
            a.act(Action::Profile);
        }),
    ];
    for view in View::ALL {
        for (si, state) in states.iter().enumerate() {
            for sel in [HS_ID, TARGET_ID, REPVGG_ID, PROBE_ID] {
                for &(w, h) in &sizes {
                    app.popup = None;
                    app.page = None;
                    app.filter.clear();
                    app.filter_editing = false;
                    app.view = View::Runs;
                    select(&mut app, sel);
                    state(&mut app);
                    if (app.popup.is_none() && app.page.is_none()) || si == 0 {
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

/// A `TestBackend` the test can watch while the event loop owns the terminal: the screen of
/// the last flush and the number of frames drawn.
#[derive(Clone)]
struct Watched(Arc<Mutex<(TestBackend, usize, String)>>);

impl Watched {
    fn new(w: u16, h: u16) -> Self {
        Watched(Arc::new(Mutex::new((
            TestBackend::new(w, h),
            0,
            String::new(),
        ))))
    }
    fn frames(&self) -> usize {
        self.0.lock().unwrap().1
    }
    fn screen(&self) -> String {
        self.0.lock().unwrap().2.clone()
    }
}

impl ratatui::backend::Backend for Watched {
    type Error = std::convert::Infallible;
    fn draw<'a, I>(&mut self, content: I) -> Result<(), Self::Error>
    where
        I: Iterator<Item = (u16, u16, &'a ratatui::buffer::Cell)>,
    {
        self.0.lock().unwrap().0.draw(content)
    }
    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.lock().unwrap().0.hide_cursor()
    }
    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.lock().unwrap().0.show_cursor()
    }
    fn get_cursor_position(&mut self) -> Result<ratatui::layout::Position, Self::Error> {
        self.0.lock().unwrap().0.get_cursor_position()
    }
    fn set_cursor_position<P: Into<ratatui::layout::Position>>(
        &mut self,
        p: P,
    ) -> Result<(), Self::Error> {
        self.0.lock().unwrap().0.set_cursor_position(p)
    }
    fn clear(&mut self) -> Result<(), Self::Error> {
        self.0.lock().unwrap().0.clear()
    }
    fn clear_region(&mut self, t: ratatui::backend::ClearType) -> Result<(), Self::Error> {
        self.0.lock().unwrap().0.clear_region(t)
    }
    fn size(&self) -> Result<ratatui::layout::Size, Self::Error> {
        self.0.lock().unwrap().0.size()
    }
    fn window_size(&mut self) -> Result<ratatui::backend::WindowSize, Self::Error> {
        self.0.lock().unwrap().0.window_size()
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        let mut g = self.0.lock().unwrap();
        g.1 += 1;
        let buf = g.0.buffer().clone();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        g.2 = out;
        Ok(())
    }
}

/// Waits (bounded) until `cond` holds, polling the tokio clock.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The real event loop on a test backend: keys in, frames out, quit once the last state is on
/// the screen.
#[test]
fn event_loop_runs_on_test_backend() {
    let fx = fixture();
    let mut app = app_for(&fx);
    let backend = Watched::new(100, 30);
    let watch = backend.clone();
    let mut term = Terminal::new(backend).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for ev in [key('2'), key('L'), AppEvent::Data, key('?')] {
        tx.send(ev).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let quitter = tx.clone();
    rt.block_on(async {
        tokio::spawn(async move {
            until("the help overlay", || {
                watch.screen().contains("Help · keys")
            })
            .await;
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
}

/// No busy loop: with nothing live the one-second clock does not redraw; new data redraws once,
/// and nothing else is drawn until quitting.
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
    let backend = Watched::new(100, 30);
    let watch = backend.clone();
    let mut term = Terminal::new(backend).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // The clock on an idle dashboard marks nothing to redraw.
    app.dirty = false;
    for _ in 0..5 {
        app.handle(AppEvent::Clock);
    }
    assert!(!app.dirty, "the clock asked to redraw an idle dashboard");
    app.dirty = true;
    let frames_after_data = rt.block_on(async {
        let feeder = tx.clone();
        let w = watch.clone();
        let task = tokio::spawn(async move {
            until("the first frame", || w.frames() >= 1).await;
            feeder.send(AppEvent::Clock).unwrap();
            feeder.send(AppEvent::Data).unwrap();
            until("the redraw after new data", || w.frames() >= 2).await;
            let after_data = w.frames();
            feeder.send(AppEvent::Quit).unwrap();
            after_data
        });
        run_app(&mut term, &mut app, &mut rx).await.unwrap();
        task.await.unwrap()
    });
    assert_eq!(frames_after_data, 2);
    assert_eq!(watch.frames(), 2, "frames drawn while idle");
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

/// Every new view state at the two sizes the issue names.
fn both_sizes(name: &str, app: &mut App) {
    for (w, h) in [(80, 24), (160, 45)] {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text(app, w, h));
    }
}

fn visible_ids(app: &App) -> Vec<String> {
    let st = lock(&app.store);
    app.visible_runs(&st)
        .iter()
        .map(|&i| st.runs[i].summary.id.clone())
        .collect()
}

fn press(app: &mut App, code: KeyCode) {
    app.handle(AppEvent::Input(TermEvent::Key(KeyEvent::new(
        code,
        KeyModifiers::NONE,
    ))));
}

#[test]
fn snapshot_runs_table_columns_from_profiles() {
    let fx = fixture();
    let mut app = app_for(&fx);
    both_sizes("runs_table", &mut app);
    let s = text(&mut app, 160, 45);
    // Configuration read from each run's frozen profile.ron: lr, total batch, weight decay.
    let row = s.lines().find(|l| l.contains(ABLATION_ID)).unwrap();
    assert!(row.contains("0.05"), "{row}");
    let row = s.lines().find(|l| l.contains(REPVGG_ID)).unwrap();
    assert!(row.contains("1e-4") && row.contains(" 64 "), "{row}");
    // The selected row carries a symbol (visible without colour, NO_COLOR).
    let row = s.lines().find(|l| l.contains(HS_ID)).unwrap();
    assert!(row.contains('▶'), "{row}");
}

#[test]
fn snapshot_runs_filtered_and_sorted() {
    let fx = fixture();
    let mut app = app_for(&fx);
    app.act(Action::Filter);
    assert!(app.filter_editing);
    for c in "b1".chars() {
        app.handle(key(c));
    }
    both_sizes("runs_filter_typing", &mut app);
    press(&mut app, KeyCode::Enter);
    assert!(!app.filter_editing);
    // Sort by best top-1 (sixth column), descending.
    for _ in 0..6 {
        app.act(Action::SortNext);
    }
    assert_eq!(app.sort.column, Some(Column::Top1));
    assert_eq!(visible_ids(&app), vec![TARGET_ID, REPVGG_ID, PROBE_ID]);
    both_sizes("runs_filter_sort", &mut app);
    // Ascending: 9.80 first; runs without a value stay last either way.
    app.act(Action::SortInvert);
    assert_eq!(visible_ids(&app), vec![REPVGG_ID, TARGET_ID, PROBE_ID]);
    // key=value terms match a column exactly.
    app.filter = "lr=0.05".into();
    assert_eq!(visible_ids(&app), vec![ABLATION_ID]);
    // Esc clears the filter.
    press(&mut app, KeyCode::Esc);
    assert_eq!(visible_ids(&app).len(), 5);
}

#[test]
fn snapshot_columns_picker_toggles_columns() {
    let fx = fixture();
    let mut app = app_for(&fx);
    app.act(Action::Columns);
    both_sizes("columns_picker", &mut app);
    // Show the data column (the 14th).
    for _ in 0..13 {
        app.act(Action::Down);
    }
    app.act(Action::Confirm);
    assert!(app.columns.contains(&Column::Data));
    app.act(Action::Cancel);
    let s = text(&mut app, 200, 45);
    assert!(
        s.contains("ImageFolder/1000") && s.contains("Cifar100/100"),
        "{s}"
    );
}

#[test]
fn snapshot_profile_and_diff_pages() {
    let fx = fixture();
    let mut app = app_for(&fx);
    select(&mut app, TARGET_ID);
    app.act(Action::Profile);
    both_sizes("profile_page", &mut app);
    app.act(Action::Back);
    assert!(app.page.is_none());
    // One mark: the diff asks for two.
    app.act(Action::ToggleMark);
    app.act(Action::Diff);
    assert!(app.page.is_none());
    assert!(app.message.as_ref().unwrap().text.contains("mark two"));
    select(&mut app, REPVGG_ID);
    app.act(Action::ToggleMark);
    app.act(Action::Diff);
    assert!(matches!(app.page, Some(Page::Diff { .. })));
    both_sizes("diff_page", &mut app);
    let s = text(&mut app, 160, 45);
    for field in ["kind", "recipe.weight_decay", "recipe.epochs", "scales"] {
        assert!(
            s.lines().any(|l| l.contains(&format!("≠ {field} "))),
            "{field} not marked as differing:\n{s}"
        );
    }
    // Identical fields are listed too, unmarked.
    assert!(s.lines().any(|l| l.contains("  recipe.lr ")), "{s}");
}

#[test]
fn snapshot_log_page_tails_stdout_and_events() {
    let fx = fixture();
    let mut app = app_for(&fx);
    select(&mut app, REPVGG_ID);
    app.act(Action::Log);
    both_sizes("log_page", &mut app);
    let s = text(&mut app, 160, 45);
    assert!(s.contains("Error: CUDA out of memory"), "{s}");
    assert!(s.contains("failed     CUDA out of memory"), "{s}");
    // Live: a line appended to stdout.log shows up on the next draw.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(fx.runs.join(REPVGG_ID).join("stdout.log"))
        .unwrap();
    writeln!(f, "a new line from the run").unwrap();
    let s = text(&mut app, 160, 45);
    assert!(s.contains("a new line from the run"), "{s}");
    // Esc goes back to the runs view.
    press(&mut app, KeyCode::Esc);
    assert!(app.page.is_none());
    assert_eq!(app.view, View::Runs);
}

#[test]
fn snapshot_charts_cursor_reads_exact_values_on_each_x_axis() {
    let fx = fixture();
    let mut app = app_for(&fx);
    select(&mut app, TARGET_ID);
    app.act(Action::ViewCharts);
    // No smoothing: the legend's value is the raw step value.
    for _ in 0..10 {
        app.act(Action::SmoothLess);
    }
    app.act(Action::XAxis);
    assert_eq!(app.chart.xaxis, XAxis::Step);
    // The cursor at the window's start: the first step (global iteration 0).
    app.act(Action::First);
    let s = text(&mut app, 160, 45);
    let first_loss = target_events()
        .iter()
        .find_map(|e| match &e.body {
            repopt_tui::rundir::events::EventBody::Step(st) => Some(st.loss),
            _ => None,
        })
        .unwrap();
    let want = format!("━ train {} @0", repopt_tui::tui::format::num(first_loss));
    assert!(s.contains(&want), "{want} not in\n{s}");
    both_sizes("charts_cursor_step", &mut app);
    // Wall time: labelled as durations.
    app.act(Action::XAxis);
    assert_eq!(app.chart.xaxis, XAxis::Wall);
    let s = text(&mut app, 160, 45);
    assert!(s.contains("x: wall time"), "{s}");
    // Back to the runs view with Backspace.
    press(&mut app, KeyCode::Backspace);
    assert_eq!(app.view, View::Runs);
}

#[test]
fn snapshot_charts_compare_many_runs_keeps_legend_at_80_columns() {
    let fx = fixture();
    let mut app = app_for(&fx);
    app.marked = vec![
        TARGET_ID.into(),
        REPVGG_ID.into(),
        ABLATION_ID.into(),
        HS_ID.into(),
    ];
    app.act(Action::ViewCharts);
    both_sizes("charts_compare_many", &mut app);
    let s = text(&mut app, 80, 24);
    // Every run is named in the header, and the legends are there.
    for n in 1..=4 {
        assert!(s.contains(&format!("{n}━━")), "run {n} missing:\n{s}");
    }
    assert!(s.contains("━ 1 ") && s.contains("━ 4 "), "{s}");
}

#[test]
fn archive_and_delete_ask_first_and_refuse_live_runs() {
    let fx = fixture();
    let mut app = app_for(&fx);
    // The live HS run is refused.
    select(&mut app, HS_ID);
    app.act(Action::Delete);
    assert!(app.popup.is_none());
    assert!(app.message.as_ref().unwrap().text.contains("running"));
    select(&mut app, ABLATION_ID);
    app.act(Action::Archive);
    both_sizes("archive_confirm", &mut app);
    app.act(Action::Confirm);
    assert!(fx.runs.join(".archive").join(ABLATION_ID).is_dir());
    assert!(!fx.runs.join(ABLATION_ID).exists());
    select(&mut app, REPVGG_ID);
    app.act(Action::Delete);
    assert!(matches!(app.popup, Some(Popup::Confirm { .. })));
    // (The archive message names the temporary directory: not in the snapshot.)
    app.message = None;
    both_sizes("delete_confirm", &mut app);
    app.act(Action::Cancel);
    assert!(fx.runs.join(REPVGG_ID).exists());
    app.act(Action::Delete);
    app.act(Action::Confirm);
    assert!(!fx.runs.join(REPVGG_ID).exists());
    // The collector forgets both, and does not list .archive as a run.
    let mut c = Collector::new(&fx.runs, &fx.profiles, GpuSource::Off);
    let store = Arc::new(Mutex::new(Store::new(&fx.runs, &fx.profiles)));
    c.poll_until_loaded(&store);
    let ids: Vec<String> = lock(&store)
        .runs
        .iter()
        .map(|r| r.summary.id.clone())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        !ids.iter()
            .any(|i| i.starts_with('.') || i == ABLATION_ID || i == REPVGG_ID)
    );
}

#[test]
fn copy_path_uses_the_clipboard_and_shows_the_path() {
    let fx = fixture();
    let mut app = app_for(&fx);
    let copied = Arc::new(Mutex::new(String::new()));
    let sink = copied.clone();
    app.clipboard = Some(Box::new(move |t: &str| {
        *sink.lock().unwrap() = t.to_string();
        Ok(())
    }));
    select(&mut app, TARGET_ID);
    app.act(Action::CopyPath);
    let want = std::fs::canonicalize(fx.runs.join(TARGET_ID)).unwrap();
    assert_eq!(*copied.lock().unwrap(), want.display().to_string());
    let m = &app.message.as_ref().unwrap().text;
    assert!(m.contains(&want.display().to_string()), "{m}");
}

#[test]
fn probe_stop_dialog_promises_no_checkpoint_and_resume_is_refused() {
    let fx = fixture();
    let lock_ = RunLock::acquire(&fx.runs.join(PROBE_ID)).unwrap();
    let mut app = app_for(&fx);
    select(&mut app, PROBE_ID);
    app.act(Action::Stop);
    let Some(Popup::Confirm { title, lines, .. }) = &app.popup else {
        panic!("no stop dialog: {:?}", app.message);
    };
    assert_eq!(title, "Stop probe?");
    let text = lines.join(" ");
    assert!(
        text.contains("no checkpoint") && !text.contains("writes a checkpoint"),
        "{text}"
    );
    app.act(Action::Cancel);
    drop(lock_);
    app.cfg.launcher = Some(repopt_tui::tui::control::Launcher::from_env(&fx.runs).unwrap());
    app.act(Action::Resume);
    let m = &app.message.as_ref().unwrap().text;
    assert!(m.contains("cannot be resumed"), "{m}");
}

#[test]
fn narrow_table_keeps_kind_and_tells_same_profile_runs_apart() {
    let fx = fixture();
    // Two runs of one profile, a second apart: the ids differ only at their end.
    copy_tree(
        &fx.runs.join(HS_ID),
        &fx.runs.join("demo-hs-20261128-101501"),
    );
    let mut app = app_for(&fx);
    let s = text(&mut app, 60, 20);
    assert!(s.contains("101500") && s.contains("101501"), "{s}");
    assert!(s.contains("kind"), "kind column dropped:\n{s}");
    // Help stays on the hint bar at 60 and 80 columns.
    for w in [60, 80] {
        let s = text(&mut app, w, 20);
        assert!(s.lines().last().unwrap().contains("? help"), "{s}");
    }
}

#[test]
fn every_fixture_profile_loads_with_the_strict_loader() {
    for entry in std::fs::read_dir(fixture_profiles()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|x| x == "ron") {
            repopt_tui::profile::RunProfile::load(&p).unwrap();
        }
    }
    for id in [HS_ID, TARGET_ID, REPVGG_ID, ABLATION_ID] {
        repopt_tui::profile::RunProfile::load(&fixture_runs().join(id).join("profile.ron"))
            .unwrap();
    }
}

#[test]
fn an_inconsistent_scales_profile_is_shown_as_an_error() {
    let fx = fixture();
    // One block of 8 channels named as B1 (B1 has 28 blocks of 64 to 2048 channels).
    let bad = "(variant: \"B1\", source: \"test\", blocks: [(name: \"stage0\", s: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], t: [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], u: None)])";
    std::fs::write(fx.profiles.join("scales").join("a-bad-b1.ron"), bad).unwrap();
    let mut app = app_for(&fx);
    app.act(Action::ViewScales);
    app.act(Action::Profile);
    app.act(Action::Confirm); // the first: a-bad-b1
    let s = text(&mut app, 120, 30);
    assert!(s.contains("not a valid B1 profile"), "{s}");
}

/// Nine marked runs at 80x24: the header names all nine, the legends list all nine.
#[test]
fn nine_marked_runs_are_all_named_at_80_columns() {
    let fx = fixture();
    let mut ids = vec![
        TARGET_ID.to_string(),
        REPVGG_ID.into(),
        ABLATION_ID.into(),
        HS_ID.into(),
    ];
    for k in 0..5 {
        let id = format!("b1-target-20261120-08000{k}");
        copy_tree(&fx.runs.join(TARGET_ID), &fx.runs.join(&id));
        ids.push(id);
    }
    let mut app = app_for(&fx);
    app.marked = ids;
    app.act(Action::ViewCharts);
    let s = text(&mut app, 80, 24);
    for n in 1..=9 {
        assert!(
            s.contains(&format!("{n}━━")),
            "run {n} not in the header:\n{s}"
        );
        assert!(
            s.contains(&format!("━ {n} ")),
            "run {n} not in a legend:\n{s}"
        );
    }
}

/// A live probe shows how far it got (models measured, its last trial) instead of an epoch
/// gauge, in the runs view and in the MaxBS view.
#[test]
fn a_live_probe_shows_its_trial_progress() {
    let fx = fixture();
    let _lock = RunLock::acquire(&fx.runs.join(PROBE_ID)).unwrap();
    std::fs::write(
        fx.runs.join(PROBE_ID).join("stdout.log"),
        "probe: B1 at 224x224\n  target  batch   512: does not fit (out of memory)\n",
    )
    .unwrap();
    let mut app = app_for(&fx);
    select(&mut app, PROBE_ID);
    let s = text(&mut app, 120, 30);
    assert!(
        s.contains("3 models measured · last trial: target  batch   512: does not fit"),
        "{s}"
    );
    assert!(
        !s.contains("epoch 0/0") && !s.contains("batch 0/device"),
        "{s}"
    );
    app.act(Action::ViewMaxBs);
    let s = text(&mut app, 160, 30);
    assert!(
        s.contains("● running · 3 models measured · target  batch   512"),
        "{s}"
    );
}

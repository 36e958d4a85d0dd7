//! The dashboard's state and what keys, mouse and data do to it. Drawing is in [`super::ui`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crossterm::event::{
    Event as TermEvent, KeyEvent, KeyEventKind, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};

use crate::rundir::events::RunKindTag;
use crate::rundir::{RunStatus, unix_now};

use super::control::{self, Launcher, list_checkpoints};
use super::format;
use super::keymap::{self, Action, Context};
use super::pages::Page;
use super::runs_table::{self, Column, Sort};
use super::scales::{ScalesProfileFile, ScalesProfileView};
use super::series::{Ema, Metric, MinMaxIndex};
use super::store::{Store, lock};

/// EMA weights the smoothing keys step through.
pub const SMOOTHING_STEPS: [f64; 7] = [0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99];
/// Below this the dashboard shows a message instead of a squashed layout.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;

/// What the event loop feeds the app.
#[derive(Debug)]
pub enum AppEvent {
    Input(TermEvent),
    /// The collector changed the store.
    Data,
    /// The one-second clock (ages, ETAs, message expiry).
    Clock,
    /// A process the dashboard spawned exited.
    ChildExited {
        run_id: String,
        what: String,
        code: Option<i32>,
    },
    /// The collector thread died (a bug): the data no longer updates.
    CollectorFailed(String),
    /// Terminate (signal).
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Runs,
    Charts,
    Scales,
    Gpu,
    MaxBs,
}

impl View {
    pub const ALL: [View; 5] = [
        View::Runs,
        View::Charts,
        View::Scales,
        View::Gpu,
        View::MaxBs,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Runs => "Runs",
            View::Charts => "Charts",
            View::Scales => "Scales",
            View::Gpu => "GPU",
            View::MaxBs => "MaxBS",
        }
    }

    fn context(self) -> Context {
        match self {
            View::Runs => Context::Runs,
            View::Charts => Context::Charts,
            View::Scales => Context::Scales,
            View::Gpu => Context::Gpu,
            View::MaxBs => Context::MaxBs,
        }
    }
}

/// What a confirmed popup does.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Stop {
        run_id: String,
        pid: u32,
    },
    /// Move the run directory into `<runs>/.archive/`.
    Archive {
        run_id: String,
    },
    /// Remove the run directory and everything in it.
    Delete {
        run_id: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum PickerKind {
    StartRun,
    ScalesProfile,
    Checkpoints {
        run_id: String,
    },
    /// The runs table's columns (enter or space shows/hides one).
    Columns,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PickerItem {
    pub label: String,
    pub detail: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    Help {
        scroll: u16,
    },
    Confirm {
        title: String,
        lines: Vec<String>,
        pending: Pending,
    },
    Picker {
        kind: PickerKind,
        title: String,
        items: Vec<PickerItem>,
        selected: usize,
        empty: String,
    },
}

/// Chart settings shared by all chart panels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartSettings {
    /// Index into [`SMOOTHING_STEPS`].
    pub smoothing: usize,
    pub log: bool,
    /// The window is the whole x range / 2^zoom.
    pub zoom: u32,
    /// Windows back from the newest data (0 = the window ends at the newest point).
    pub pan: f64,
    pub xaxis: XAxis,
    /// The reading cursor as a fraction of the visible window (None: no cursor; the legends then
    /// show the latest values).
    pub cursor: Option<f64>,
}

/// What the charts' x axis measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Fractional epochs (epoch + iteration / iterations per epoch).
    Epoch,
    /// Global training iteration.
    Step,
    /// Wall time since the run's first start.
    Wall,
}

impl XAxis {
    pub fn next(self) -> XAxis {
        match self {
            XAxis::Epoch => XAxis::Step,
            XAxis::Step => XAxis::Wall,
            XAxis::Wall => XAxis::Epoch,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            XAxis::Epoch => "epoch",
            XAxis::Step => "step",
            XAxis::Wall => "wall time",
        }
    }
}

/// Cursor moves per window width.
pub const CURSOR_STEPS: f64 = 40.0;

impl Default for ChartSettings {
    fn default() -> Self {
        ChartSettings {
            smoothing: 3,
            log: false,
            zoom: 0,
            pan: 0.0,
            xaxis: XAxis::Epoch,
            cursor: None,
        }
    }
}

impl ChartSettings {
    pub fn weight(&self) -> f64 {
        SMOOTHING_STEPS[self.smoothing.min(SMOOTHING_STEPS.len() - 1)]
    }

    /// The visible x window of a full range.
    pub fn window(&self, lo: f64, hi: f64) -> (f64, f64) {
        let span = (hi - lo).max(1e-9);
        let w = span / 2f64.powi(self.zoom as i32);
        let end = (hi - self.pan * w).max(lo + w);
        (end - w, end)
    }
}

/// Where the scales view takes its data.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalesSource {
    SelectedRun,
    Profile {
        name: String,
        loaded: Result<crate::rundir::events::ScalesEvent, String>,
        variant: String,
        source: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScalesState {
    pub source: ScalesSource,
    /// Index into the scales events; None = the newest.
    pub epoch: Option<usize>,
    pub layer: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub error: bool,
    pub until: f64,
}

/// Screen regions of the last frame, for the mouse.
#[derive(Debug, Clone, Default)]
pub struct Regions {
    pub tabs: Vec<(Rect, View)>,
    /// The runs table body and its first visible row index.
    pub runs_rows: Rect,
    pub runs_offset: usize,
}

/// Settings of an [`App`].
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub mouse: bool,
    /// Spawns runs; None disables control actions (read-only dashboard).
    pub launcher: Option<Launcher>,
}

/// Puts text on the terminal's clipboard.
pub type Clipboard = Box<dyn FnMut(&str) -> std::io::Result<()>>;

/// The dashboard.
pub struct App {
    pub store: Arc<Mutex<Store>>,
    pub cfg: AppConfig,
    pub view: View,
    pub popup: Option<Popup>,
    /// The run the cursor is on (by id: the list may reorder under it).
    pub selected: Option<String>,
    /// Runs marked for comparison, in marking order.
    pub marked: Vec<String>,
    pub chart: ChartSettings,
    pub scales: ScalesState,
    pub profile_sel: usize,
    pub gpu_sel: usize,
    pub message: Option<Message>,
    /// Unix time used for ages and ETAs (frozen in tests).
    pub now: f64,
    pub frozen_clock: bool,
    pub(crate) ema: HashMap<(String, Metric), Ema>,
    /// Block min/max indexes of step series (run, metric, smoothed) for fast decimation.
    pub(crate) minmax: HashMap<(String, Metric, bool), MinMaxIndex>,
    pub regions: Regions,
    pub quit: bool,
    /// Something changed since the last draw.
    pub dirty: bool,
    /// When the event loop last drew (the clock then skips a redraw that adds nothing).
    pub drawn_at: Option<std::time::Instant>,
    /// Wakes the collector (e.g. after starting a run).
    pub wake: Option<std::sync::mpsc::Sender<()>>,
    /// For reaper threads to report exits.
    pub events_tx: Option<tokio::sync::mpsc::UnboundedSender<AppEvent>>,
    last_status: HashMap<String, RunStatus>,
    /// The runs table's columns, in display order.
    pub columns: Vec<Column>,
    pub sort: Sort,
    /// The `/` filter of the runs table (space-separated terms, all must match).
    pub filter: String,
    /// Keys go to the filter line.
    pub filter_editing: bool,
    /// A page over the body (profile, diff, log); Esc/Backspace closes it.
    pub page: Option<Page>,
    /// Views visited before the current one (Esc/Backspace goes back).
    pub history: Vec<View>,
    /// Writes text to the terminal's clipboard (OSC 52); None in tests.
    pub clipboard: Option<Clipboard>,
}

impl App {
    pub fn new(store: Arc<Mutex<Store>>, cfg: AppConfig) -> Self {
        let mut app = App {
            store,
            cfg,
            view: View::Runs,
            popup: None,
            selected: None,
            marked: Vec::new(),
            chart: ChartSettings::default(),
            scales: ScalesState {
                source: ScalesSource::SelectedRun,
                epoch: None,
                layer: 0,
            },
            profile_sel: 0,
            gpu_sel: 0,
            message: None,
            now: unix_now(),
            frozen_clock: false,
            ema: HashMap::new(),
            minmax: HashMap::new(),
            regions: Regions::default(),
            quit: false,
            dirty: true,
            drawn_at: None,
            wake: None,
            events_tx: None,
            last_status: HashMap::new(),
            columns: Column::DEFAULT.to_vec(),
            sort: Sort::default(),
            filter: String::new(),
            filter_editing: false,
            page: None,
            history: Vec::new(),
            clipboard: None,
        };
        app.on_data();
        app
    }

    /// Freezes the clock at `t` (deterministic ages in snapshots).
    pub fn freeze_clock(&mut self, t: f64) {
        self.now = t;
        self.frozen_clock = true;
    }

    /// The key context: the popup's, else the view's.
    pub fn context(&self) -> Context {
        match &self.popup {
            Some(Popup::Help { .. }) => Context::Help,
            Some(Popup::Confirm { .. }) => Context::Confirm,
            Some(Popup::Picker { .. }) => Context::Picker,
            None if self.filter_editing => Context::Filter,
            None if self.page.is_some() => Context::Page,
            None => self.view.context(),
        }
    }

    /// The runs as the table shows them: filtered and sorted (indices into `store.runs`).
    pub fn visible_runs(&self, store: &Store) -> Vec<usize> {
        runs_table::visible(&store.runs, &self.filter, self.sort, self.now)
    }

    /// Goes to `view`, remembering where it came from for Esc/Backspace.
    pub fn set_view(&mut self, view: View) {
        if view != self.view {
            self.history.push(self.view);
            if self.history.len() > 32 {
                self.history.remove(0);
            }
            self.view = view;
        }
    }

    /// Esc/Backspace: close the page, clear the filter, or go to the previous view.
    fn back(&mut self) {
        if self.page.take().is_some() {
            return;
        }
        if self.view == View::Runs && !self.filter.is_empty() {
            self.filter.clear();
            return;
        }
        self.view = self.history.pop().unwrap_or(View::Runs);
    }

    /// Whether any run is live (the clock then redraws every second).
    pub fn anything_live(&self) -> bool {
        lock(&self.store)
            .runs
            .iter()
            .any(|r| r.summary.status.is_live())
    }

    pub fn handle(&mut self, ev: AppEvent) {
        match ev {
            AppEvent::Input(TermEvent::Key(k)) => self.on_key(k),
            AppEvent::Input(TermEvent::Mouse(m)) => self.on_mouse(m),
            AppEvent::Input(TermEvent::Resize(..)) => self.dirty = true,
            AppEvent::Input(_) => {}
            AppEvent::Data => self.on_data(),
            AppEvent::Clock => self.on_clock(),
            AppEvent::ChildExited { run_id, what, code } => {
                if code != Some(0) {
                    let how = code.map_or("was killed by a signal".into(), |c| {
                        format!("exited with code {c}")
                    });
                    self.error(format!("{what} {run_id} {how} (see its stdout.log)"));
                }
            }
            AppEvent::CollectorFailed(msg) => {
                self.error(format!("data collection stopped (bug): {msg}"))
            }
            AppEvent::Quit => self.quit = true,
        }
    }

    fn on_clock(&mut self) {
        if !self.frozen_clock {
            self.now = unix_now();
        }
        if self.message.as_ref().is_some_and(|m| m.until <= self.now) {
            self.message = None;
            self.dirty = true;
        }
        // Ages and ETAs move: redraw live dashboards once a second, unless new data just did.
        let drew_recently = self
            .drawn_at
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(900));
        if !drew_recently && self.anything_live() {
            self.dirty = true;
        }
    }

    /// New data: keep the selection valid, announce runs that ended.
    pub fn on_data(&mut self) {
        self.dirty = true;
        let mut ended = Vec::new();
        {
            let store = lock(&self.store);
            if self
                .selected
                .as_ref()
                .is_none_or(|id| store.run(id).is_none())
            {
                let first = self.visible_runs(&store).first().copied();
                self.selected = first.map(|i| store.runs[i].summary.id.clone());
            }
            self.marked.retain(|id| store.run(id).is_some());
            for r in &store.runs {
                let s = &r.summary;
                let prev = self.last_status.insert(s.id.clone(), s.status);
                if prev == Some(RunStatus::Running) && s.status != RunStatus::Running {
                    let detail = match s.status {
                        RunStatus::Finished => s
                            .best_top1
                            .map(|b| format!(": best top-1 {b:.2}%"))
                            .unwrap_or_default(),
                        RunStatus::Failed => s
                            .failure
                            .as_ref()
                            .map(|f| format!(": {f}"))
                            .unwrap_or_default(),
                        _ => String::new(),
                    };
                    ended.push((format!("{} {}{detail}", s.id, s.status), s.status));
                }
            }
        }
        for (text, status) in ended {
            if matches!(status, RunStatus::Failed | RunStatus::Interrupted) {
                self.error(text);
            } else {
                self.info(text);
            }
        }
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: false,
            until: self.now + 6.0,
        });
        self.dirty = true;
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: true,
            until: self.now + 15.0,
        });
        self.dirty = true;
    }

    fn on_key(&mut self, k: KeyEvent) {
        if k.kind == KeyEventKind::Release {
            return;
        }
        self.dirty = true;
        if self.filter_editing && self.popup.is_none() {
            use crossterm::event::{KeyCode, KeyModifiers};
            let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
            match k.code {
                KeyCode::Char(c) if !ctrl => {
                    self.filter.push(c);
                    self.select_first_visible_if_hidden();
                    return;
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                    return;
                }
                _ => {}
            }
        }
        let Some(action) = keymap::lookup(self.context(), &k) else {
            return;
        };
        self.act(action);
    }

    /// Typing the filter: keep the selection on a run the filter lets through.
    fn select_first_visible_if_hidden(&mut self) {
        let store = lock(&self.store);
        let visible = self.visible_runs(&store);
        let shown = self
            .selected
            .as_ref()
            .is_some_and(|id| visible.iter().any(|&i| &store.runs[i].summary.id == id));
        if !shown && let Some(&i) = visible.first() {
            self.selected = Some(store.runs[i].summary.id.clone());
        }
    }

    /// Performs an action (the keymap's result; tests may call it directly).
    pub fn act(&mut self, action: Action) {
        self.dirty = true;
        if action == Action::Quit && self.popup.is_none() && !self.filter_editing {
            self.quit = true;
            return;
        }
        match self.popup.take() {
            Some(popup) => self.act_popup(popup, action),
            None if self.filter_editing => self.act_filter(action),
            None if self.page.is_some() => self.act_page(action),
            None => self.act_view(action),
        }
    }

    fn act_filter(&mut self, action: Action) {
        match action {
            Action::Confirm => self.filter_editing = false,
            Action::Cancel => {
                self.filter_editing = false;
                self.filter.clear();
            }
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::Quit => self.quit = true,
            _ => {}
        }
        self.select_first_visible_if_hidden();
    }

    fn act_page(&mut self, action: Action) {
        let Some(page) = self.page.as_mut() else {
            return;
        };
        let (pos, up_is_more) = match page {
            Page::Profile { scroll, .. } | Page::Diff { scroll, .. } => (scroll, false),
            Page::Log { back, .. } => (back, true),
        };
        let delta: isize = match action {
            Action::Up => -1,
            Action::Down => 1,
            Action::PageUp => -20,
            Action::PageDown => 20,
            Action::First => isize::MIN / 4,
            Action::Last => isize::MAX / 4,
            Action::Back | Action::Cancel => {
                self.page = None;
                return;
            }
            Action::Help => {
                self.popup = Some(Popup::Help { scroll: 0 });
                return;
            }
            Action::ViewRuns
            | Action::ViewCharts
            | Action::ViewScales
            | Action::ViewGpu
            | Action::ViewMaxBs
            | Action::NextView
            | Action::PrevView => {
                self.page = None;
                self.act_view(action);
                return;
            }
            _ => return,
        };
        // The log counts lines up from the newest: up scrolls back.
        let delta = if up_is_more { -delta } else { delta };
        *pos = (*pos as isize).saturating_add(delta).max(0) as usize;
    }

    fn act_popup(&mut self, popup: Popup, action: Action) {
        match (popup, action) {
            (_, Action::Quit) => self.quit = true,
            (Popup::Help { scroll }, Action::Up) => {
                self.popup = Some(Popup::Help {
                    scroll: scroll.saturating_sub(1),
                })
            }
            (Popup::Help { scroll }, Action::Down) => {
                self.popup = Some(Popup::Help { scroll: scroll + 1 })
            }
            (Popup::Help { .. }, _) => {}
            (Popup::Confirm { pending, .. }, Action::Confirm) => self.run_pending(pending),
            (Popup::Confirm { .. }, Action::Cancel) => self.info("cancelled"),
            (p @ Popup::Confirm { .. }, _) => self.popup = Some(p),
            (
                Popup::Picker {
                    kind,
                    title,
                    items,
                    selected,
                    empty,
                },
                a,
            ) => {
                let n = items.len();
                if kind == PickerKind::Columns && matches!(a, Action::Confirm | Action::ToggleMark)
                {
                    if let Some(&col) = Column::ALL.get(selected) {
                        self.toggle_column(col);
                    }
                    self.popup = Some(Popup::Picker {
                        kind,
                        title,
                        items: self.column_items(),
                        selected,
                        empty,
                    });
                    return;
                }
                let selected = match a {
                    Action::Up => selected.saturating_sub(1),
                    Action::Down => (selected + 1).min(n.saturating_sub(1)),
                    Action::First => 0,
                    Action::Last => n.saturating_sub(1),
                    Action::PageUp => selected.saturating_sub(10),
                    Action::PageDown => (selected + 10).min(n.saturating_sub(1)),
                    Action::Confirm => {
                        if let Some(item) = items.get(selected).cloned() {
                            self.pick(kind, item);
                        }
                        return;
                    }
                    Action::Cancel => return,
                    _ => selected,
                };
                self.popup = Some(Popup::Picker {
                    kind,
                    title,
                    items,
                    selected,
                    empty,
                });
            }
        }
    }

    fn act_view(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.popup = Some(Popup::Help { scroll: 0 }),
            Action::Back => self.back(),
            Action::ViewRuns => self.set_view(View::Runs),
            Action::ViewCharts => self.set_view(View::Charts),
            Action::ViewScales => self.open_scales_of_selected(),
            Action::ViewGpu => self.set_view(View::Gpu),
            Action::ViewMaxBs => self.set_view(View::MaxBs),
            Action::NextView | Action::PrevView => {
                let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
                let n = View::ALL.len();
                let j = if action == Action::NextView {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.set_view(View::ALL[j]);
            }
            _ => match self.view {
                View::Runs => self.act_runs(action),
                View::Charts => self.act_charts(action),
                View::Scales => self.act_scales(action),
                View::Gpu => self.act_gpu(action),
                View::MaxBs => self.act_maxbs(action),
            },
        }
    }

    /// Moves the selection through the runs as the table shows them (filtered, sorted).
    fn move_selection(&mut self, delta: isize) {
        let store = lock(&self.store);
        let visible = self.visible_runs(&store);
        let n = visible.len();
        if n == 0 {
            return;
        }
        let i = self
            .selected
            .as_ref()
            .and_then(|id| {
                visible
                    .iter()
                    .position(|&k| &store.runs[k].summary.id == id)
            })
            .unwrap_or(0) as isize;
        let j = (i.saturating_add(delta)).clamp(0, n as isize - 1) as usize;
        self.selected = Some(store.runs[visible[j]].summary.id.clone());
    }

    fn toggle_column(&mut self, col: Column) {
        if matches!(col, Column::Status | Column::Run) {
            return self.error("the status and run columns are always shown");
        }
        if let Some(i) = self.columns.iter().position(|c| *c == col) {
            self.columns.remove(i);
        } else {
            // Keep the display order of Column::ALL.
            self.columns.push(col);
            self.columns
                .sort_by_key(|c| Column::ALL.iter().position(|a| a == c));
        }
    }

    fn column_items(&self) -> Vec<PickerItem> {
        Column::ALL
            .iter()
            .map(|c| PickerItem {
                label: format!(
                    "[{}] {}",
                    if self.columns.contains(c) { "x" } else { " " },
                    c.header()
                ),
                detail: c.describe().to_string(),
                path: PathBuf::new(),
            })
            .collect()
    }

    /// `<`/`>`: sort by the previous/next shown column (before the first: newest first).
    fn cycle_sort(&mut self, forward: bool) {
        let cols = &self.columns;
        let i = self
            .sort
            .column
            .and_then(|c| cols.iter().position(|x| *x == c));
        let n = cols.len() as isize;
        // Position -1 is "newest first".
        let cur = i.map_or(-1, |i| i as isize);
        let next = if forward { cur + 1 } else { cur - 1 };
        let next = if next >= n {
            -1
        } else if next < -1 {
            n - 1
        } else {
            next
        };
        self.sort.column = (next >= 0).then(|| cols[next as usize]);
        // Numbers read best largest first; text A to Z.
        self.sort.descending = self
            .sort
            .column
            .is_some_and(|c| c.numeric() && c != Column::Age && c != Column::Eta);
        let what = match self.sort.column {
            Some(c) => format!(
                "sorted by {} ({})",
                c.header(),
                if self.sort.descending {
                    "descending"
                } else {
                    "ascending"
                }
            ),
            None => "sorted newest first".to_string(),
        };
        self.info(what);
    }

    fn selected_dir(&self) -> Option<(String, PathBuf, RunStatus, Option<RunKindTag>)> {
        let id = self.selected.clone()?;
        let store = lock(&self.store);
        let r = store.run(&id)?;
        Some((
            id,
            r.summary.path.clone(),
            r.summary.status,
            r.summary.kind.clone(),
        ))
    }

    fn copy_path(&mut self) {
        let Some((_, path, ..)) = self.selected_dir() else {
            return;
        };
        let abs = std::fs::canonicalize(&path).unwrap_or(path);
        let text = abs.display().to_string();
        match self.clipboard.as_mut().map(|c| c(&text)) {
            Some(Ok(())) => self.info(format!("copied (OSC 52): {text}")),
            Some(Err(e)) => self.error(format!("{text} (could not copy: {e})")),
            None => self.info(text),
        }
    }

    fn ask_remove(&mut self, delete: bool) {
        let Some((id, _, status, _)) = self.selected_dir() else {
            return;
        };
        if status.is_live() {
            return self.error(format!("{id} is running: stop it first (s)"));
        }
        let (title, lines, pending) = if delete {
            (
                "Delete run?",
                vec![
                    format!("{id}  ({status})"),
                    "Removes the run's directory and everything in it:".into(),
                    "events, checkpoints, logs. This cannot be undone.".into(),
                ],
                Pending::Delete { run_id: id },
            )
        } else {
            (
                "Archive run?",
                vec![
                    format!("{id}  ({status})"),
                    "Moves it into .archive/ beside the other runs: it leaves".into(),
                    "the list; move it back by hand to see it again.".into(),
                ],
                Pending::Archive { run_id: id },
            )
        };
        self.popup = Some(Popup::Confirm {
            title: title.into(),
            lines,
            pending,
        });
    }

    fn open_page(&mut self, page: Page) {
        self.page = Some(page);
    }

    fn open_diff(&mut self) {
        let ids: Vec<String> = if self.marked.len() >= 2 {
            self.marked.clone()
        } else {
            return self.error(format!(
                "mark two or more runs with space to compare their profiles ({} marked)",
                self.marked.len()
            ));
        };
        self.open_page(Page::Diff {
            run_ids: ids,
            scroll: 0,
        });
    }

    fn toggle_mark(&mut self) {
        if let Some(id) = self.selected.clone() {
            if let Some(i) = self.marked.iter().position(|m| *m == id) {
                self.marked.remove(i);
            } else {
                self.marked.push(id);
            }
        }
    }

    fn act_runs(&mut self, action: Action) {
        match action {
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::PageUp => self.move_selection(-10),
            Action::PageDown => self.move_selection(10),
            Action::First => self.move_selection(isize::MIN / 2),
            Action::Last => self.move_selection(isize::MAX / 2),
            Action::Open => self.set_view(View::Charts),
            Action::ToggleMark => {
                self.toggle_mark();
                self.move_selection(1);
            }
            Action::ClearMarks => self.marked.clear(),
            Action::NewRun => self.open_profile_picker(),
            Action::Stop => self.ask_stop(),
            Action::Resume => self.resume(None),
            Action::Checkpoints => self.open_checkpoints(),
            Action::Filter => {
                self.filter_editing = true;
            }
            Action::SortNext => self.cycle_sort(true),
            Action::SortPrev => self.cycle_sort(false),
            Action::SortInvert if self.sort.column.is_some() => {
                self.sort.descending = !self.sort.descending;
            }
            Action::Columns => {
                self.popup = Some(Popup::Picker {
                    kind: PickerKind::Columns,
                    title: "Columns (enter/space: show or hide)".into(),
                    items: self.column_items(),
                    selected: 0,
                    empty: String::new(),
                })
            }
            Action::Profile => {
                if let Some(id) = self.selected.clone() {
                    self.open_page(Page::Profile {
                        run_id: id,
                        scroll: 0,
                    });
                }
            }
            Action::Diff => self.open_diff(),
            Action::Log => {
                if let Some(id) = self.selected.clone() {
                    self.open_page(Page::Log {
                        run_id: id,
                        back: 0,
                    });
                }
            }
            Action::CopyPath => self.copy_path(),
            Action::Archive => self.ask_remove(false),
            Action::Delete => self.ask_remove(true),
            _ => {}
        }
    }

    fn act_charts(&mut self, action: Action) {
        let c = &mut self.chart;
        match action {
            Action::ToggleLog => c.log = !c.log,
            Action::SmoothMore => c.smoothing = (c.smoothing + 1).min(SMOOTHING_STEPS.len() - 1),
            Action::SmoothLess => c.smoothing = c.smoothing.saturating_sub(1),
            Action::ZoomIn => c.zoom = (c.zoom + 1).min(16),
            Action::ZoomOut => {
                c.zoom = c.zoom.saturating_sub(1);
                if c.zoom == 0 {
                    c.pan = 0.0;
                }
            }
            Action::ZoomReset => {
                *c = ChartSettings {
                    zoom: 0,
                    pan: 0.0,
                    cursor: None,
                    ..*c
                }
            }
            Action::XAxis => {
                c.xaxis = c.xaxis.next();
                c.zoom = 0;
                c.pan = 0.0;
                c.cursor = None;
            }
            // The cursor moves through the window; past its edge a zoomed window pans.
            Action::Left | Action::Right => {
                let step = 1.0 / CURSOR_STEPS;
                let delta = if action == Action::Left { -step } else { step };
                let next = c.cursor.unwrap_or(1.0) + delta;
                if next < 0.0 {
                    if c.zoom > 0 {
                        c.pan += step;
                    }
                    c.cursor = Some(0.0);
                } else if next > 1.0 {
                    c.pan = (c.pan - step).max(0.0);
                    c.cursor = Some(1.0);
                } else {
                    c.cursor = Some(next);
                }
            }
            Action::First => c.cursor = Some(0.0),
            Action::Last => c.cursor = Some(1.0),
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::ToggleMark => self.toggle_mark(),
            _ => {}
        }
    }

    fn act_scales(&mut self, action: Action) {
        let epochs = self.scales_epoch_count();
        let layers = self.scales_layer_count();
        let s = &mut self.scales;
        let cur = s.epoch.unwrap_or(epochs.saturating_sub(1));
        match action {
            Action::Up => s.layer = s.layer.saturating_sub(1),
            Action::Down => s.layer = (s.layer + 1).min(layers.saturating_sub(1)),
            Action::Left => s.epoch = Some(cur.saturating_sub(1)),
            Action::Right => {
                s.epoch = if cur + 1 >= epochs {
                    None
                } else {
                    Some(cur + 1)
                }
            }
            Action::First => s.epoch = Some(0),
            Action::Last => s.epoch = None,
            Action::Profile => self.open_scales_picker(),
            _ => {}
        }
    }

    fn act_gpu(&mut self, action: Action) {
        let n = lock(&self.store).gpus.len();
        match action {
            Action::Up => self.gpu_sel = self.gpu_sel.saturating_sub(1),
            Action::Down => self.gpu_sel = (self.gpu_sel + 1).min(n.saturating_sub(1)),
            _ => {}
        }
    }

    fn act_maxbs(&mut self, action: Action) {
        let n = lock(&self.store).run_profiles().count();
        match action {
            Action::Up => self.profile_sel = self.profile_sel.saturating_sub(1),
            Action::Down => self.profile_sel = (self.profile_sel + 1).min(n.saturating_sub(1)),
            Action::NewRun | Action::Open => {
                let profile = lock(&self.store)
                    .run_profiles()
                    .nth(self.profile_sel)
                    .map(|p| p.path.clone());
                match profile {
                    Some(p) => self.start_probe(p),
                    None => self.error("no run profile to probe (profiles/*.ron)"),
                }
            }
            _ => {}
        }
    }

    /// Number of scales epochs of the current source.
    pub fn scales_epoch_count(&self) -> usize {
        match &self.scales.source {
            ScalesSource::Profile { loaded, .. } => usize::from(loaded.is_ok()),
            ScalesSource::SelectedRun => {
                let store = lock(&self.store);
                self.selected
                    .as_ref()
                    .and_then(|id| store.run(id))
                    .map_or(0, |r| r.series.scales.len())
            }
        }
    }

    fn scales_layer_count(&self) -> usize {
        match &self.scales.source {
            ScalesSource::Profile { loaded, .. } => loaded.as_ref().map_or(0, |e| e.layers.len()),
            ScalesSource::SelectedRun => {
                let store = lock(&self.store);
                self.selected
                    .as_ref()
                    .and_then(|id| store.run(id))
                    .and_then(|r| r.series.scales.last())
                    .map_or(0, |e| e.layers.len())
            }
        }
    }

    fn open_scales_of_selected(&mut self) {
        if self.view != View::Scales {
            self.scales.source = ScalesSource::SelectedRun;
            self.scales.epoch = None;
        }
        self.set_view(View::Scales);
    }

    fn open_profile_picker(&mut self) {
        if self.cfg.launcher.is_none() {
            return self.error("this dashboard cannot start runs (no launcher)");
        }
        let store = lock(&self.store);
        let items: Vec<PickerItem> = store
            .run_profiles()
            .map(|p| PickerItem {
                label: p.name.clone(),
                detail: first_comment(&p.preview),
                path: p.path.clone(),
            })
            .collect();
        let empty = format!("no profiles in {}", store.profiles_dir.display());
        drop(store);
        self.popup = Some(Popup::Picker {
            kind: PickerKind::StartRun,
            title: "Start a run from a profile".into(),
            items,
            selected: 0,
            empty,
        });
    }

    fn open_scales_picker(&mut self) {
        let store = lock(&self.store);
        let items: Vec<PickerItem> = store
            .scales_profiles()
            .map(|p| PickerItem {
                label: p.name.clone(),
                detail: first_comment(&p.preview),
                path: p.path.clone(),
            })
            .collect();
        let empty = format!(
            "no scales profiles in {}",
            store.profiles_dir.join("scales").display()
        );
        drop(store);
        self.popup = Some(Popup::Picker {
            kind: PickerKind::ScalesProfile,
            title: "Show a scales profile".into(),
            items,
            selected: 0,
            empty,
        });
    }

    fn open_checkpoints(&mut self) {
        let Some(id) = self.selected.clone() else {
            return;
        };
        let store = lock(&self.store);
        let Some(run) = store.run(&id) else { return };
        let ckpts = list_checkpoints(&run.summary.path, &run.series.checkpoints);
        let items = ckpts
            .iter()
            .map(|c| PickerItem {
                label: c.path.clone(),
                detail: format!(
                    "{}{}{}{}",
                    c.epoch
                        .map(|e| format!("{} done, ", format::plural(e as u64, "epoch")))
                        .unwrap_or_default(),
                    c.global_iter
                        .map(|g| format!("iter {g} "))
                        .unwrap_or_default(),
                    c.size
                        .map(format::bytes)
                        .unwrap_or_else(|| "missing".into()),
                    if c.best { "  best" } else { "" }
                ),
                path: run.summary.path.join(&c.path),
            })
            .collect();
        drop(store);
        self.popup = Some(Popup::Picker {
            kind: PickerKind::Checkpoints { run_id: id.clone() },
            title: format!("Checkpoints of {id} (enter: resume from it)"),
            items,
            selected: 0,
            empty: "no checkpoints yet".into(),
        });
    }

    fn pick(&mut self, kind: PickerKind, item: PickerItem) {
        match kind {
            // Handled in act_popup (the list stays open).
            PickerKind::Columns => {}
            PickerKind::StartRun => self.start_run(item.path),
            PickerKind::Checkpoints { run_id } => {
                if !item.path.exists() {
                    return self.error(format!("{} does not exist", item.path.display()));
                }
                self.selected = Some(run_id);
                self.resume(Some(item.path));
            }
            PickerKind::ScalesProfile => {
                let loaded = ScalesProfileFile::load_for_view(&item.path);
                let (variant, source) = loaded
                    .as_ref()
                    .map(|p| (p.variant.clone(), p.source.clone()))
                    .unwrap_or_default();
                self.scales = ScalesState {
                    source: ScalesSource::Profile {
                        name: item.label,
                        loaded: loaded.map(|p| p.to_event()),
                        variant,
                        source,
                    },
                    epoch: None,
                    layer: 0,
                };
                self.view = View::Scales;
            }
        }
    }

    fn ask_stop(&mut self) {
        let Some(id) = self.selected.clone() else {
            return;
        };
        let store = lock(&self.store);
        let Some(run) = store.run(&id) else { return };
        let s = &run.summary;
        let Some(pid) = s.owner_pid.filter(|_| s.status.is_live()) else {
            let status = s.status;
            drop(store);
            return self.error(format!("{id} is {status}: nothing to stop"));
        };
        let progress = match (s.epoch, s.epochs) {
            (_, Some(0)) | (_, None) => String::new(),
            (Some(e), Some(n)) => format!("epoch {}/{n}", e + 1),
            _ => String::new(),
        };
        let probe = s.kind == Some(RunKindTag::Probe);
        drop(store);
        let lines = if probe {
            vec![
                id.clone(),
                format!("Sends SIGINT to pid {pid}: the probe ends; the results it"),
                "has written stay. A probe has no checkpoint and cannot be".into(),
                "resumed: start a new one from 5 MaxBS.".into(),
            ]
        } else {
            vec![
                format!("{id}  {progress}"),
                format!("Sends SIGINT to pid {pid}: the run finishes its step,"),
                "writes a checkpoint and exits. Resume it later with r.".into(),
            ]
        };
        self.popup = Some(Popup::Confirm {
            title: if probe { "Stop probe?" } else { "Stop run?" }.into(),
            lines,
            pending: Pending::Stop { run_id: id, pid },
        });
    }

    fn run_pending(&mut self, pending: Pending) {
        match pending {
            Pending::Stop { run_id, .. } => {
                let dir = lock(&self.store).runs_dir.join(&run_id);
                match control::stop_run(&dir) {
                    Ok(pid) => self.info(format!(
                        "asked {run_id} (pid {pid}) to stop: waiting for its checkpoint"
                    )),
                    Err(e) => self.error(e.to_string()),
                }
                self.wake_collector();
            }
            Pending::Archive { run_id } => {
                let runs_dir = lock(&self.store).runs_dir.clone();
                match archive_run(&runs_dir, &run_id) {
                    Ok(to) => self.info(format!("archived {run_id} to {}", to.display())),
                    Err(e) => self.error(e),
                }
                self.marked.retain(|m| *m != run_id);
                self.wake_collector();
            }
            Pending::Delete { run_id } => {
                let dir = lock(&self.store).runs_dir.join(&run_id);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => self.info(format!("deleted {}", dir.display())),
                    Err(e) => self.error(format!("cannot delete {}: {e}", dir.display())),
                }
                self.marked.retain(|m| *m != run_id);
                self.wake_collector();
            }
        }
    }

    fn resume(&mut self, checkpoint: Option<PathBuf>) {
        let Some(id) = self.selected.clone() else {
            return;
        };
        let Some(launcher) = self.cfg.launcher.clone() else {
            return self.error("this dashboard cannot start runs (no launcher)");
        };
        let (status, kind) = {
            let store = lock(&self.store);
            let r = store.run(&id);
            (
                r.map(|r| r.summary.status),
                r.and_then(|r| r.summary.kind.clone()),
            )
        };
        if kind == Some(RunKindTag::Probe) {
            return self.error(format!(
                "{id} is a probe: probes cannot be resumed; start a new one from 5 MaxBS (n)"
            ));
        }
        if status == Some(RunStatus::Running) {
            return self.error(format!("{id} is running"));
        }
        if status == Some(RunStatus::Finished) && checkpoint.is_none() {
            return self.error(format!(
                "{id} finished; pick a checkpoint (c) to resume from"
            ));
        }
        match launcher.resume_run(&id, checkpoint.as_deref()) {
            Ok(sp) => {
                let from = checkpoint
                    .map(|c| format!(" from {}", c.display()))
                    .unwrap_or_default();
                self.info(format!("resuming {id}{from}"));
                self.track_child(sp, "run");
            }
            Err(e) => self.error(e.to_string()),
        }
    }

    fn start_run(&mut self, profile: PathBuf) {
        let Some(launcher) = self.cfg.launcher.clone() else {
            return;
        };
        match launcher.start_run(&profile, unix_now()) {
            Ok(sp) => {
                self.info(format!("started {} (output in stdout.log)", sp.run_id));
                self.selected = Some(sp.run_id.clone());
                self.track_child(sp, "run");
            }
            Err(e) => self.error(e.to_string()),
        }
    }

    fn start_probe(&mut self, profile: PathBuf) {
        let Some(launcher) = self.cfg.launcher.clone() else {
            return self.error("this dashboard cannot start runs (no launcher)");
        };
        match launcher.start_probe(&profile, unix_now()) {
            Ok(sp) => {
                self.info(format!("probe {} started", sp.run_id));
                self.track_child(sp, "probe");
            }
            Err(e) => self.error(e.to_string()),
        }
    }

    fn track_child(&mut self, sp: control::Spawned, what: &'static str) {
        let tx = self.events_tx.clone();
        let run_id = sp.run_id.clone();
        control::reap(sp.child, move |status| {
            if let Some(tx) = tx {
                let code = status.ok().and_then(|s| s.code());
                let _ = tx.send(AppEvent::ChildExited {
                    run_id,
                    what: what.into(),
                    code,
                });
            }
        });
        self.wake_collector();
    }

    fn wake_collector(&self) {
        if let Some(w) = &self.wake {
            let _ = w.send(());
        }
    }

    fn on_mouse(&mut self, m: MouseEvent) {
        if !self.cfg.mouse || self.popup.is_some() {
            return;
        }
        let pos = Position::new(m.column, m.row);
        match m.kind {
            MouseEventKind::ScrollUp => self.act(Action::Up),
            MouseEventKind::ScrollDown => self.act(Action::Down),
            MouseEventKind::Down(MouseButton::Left) => {
                if let Some((_, v)) = self.regions.tabs.iter().find(|(r, _)| r.contains(pos)) {
                    let v = *v;
                    self.page = None;
                    self.set_view(v);
                    self.dirty = true;
                } else if self.view == View::Runs && self.regions.runs_rows.contains(pos) {
                    let row =
                        (m.row - self.regions.runs_rows.y) as usize + self.regions.runs_offset;
                    let store = lock(&self.store);
                    let visible = self.visible_runs(&store);
                    if let Some(&i) = visible.get(row) {
                        self.selected = Some(store.runs[i].summary.id.clone());
                    }
                    self.dirty = true;
                }
            }
            _ => {}
        }
    }
}

/// Moves `<runs>/<id>` to `<runs>/.archive/<id>` (the collector skips hidden folders).
fn archive_run(runs_dir: &std::path::Path, id: &str) -> Result<PathBuf, String> {
    let from = runs_dir.join(id);
    let archive = runs_dir.join(".archive");
    std::fs::create_dir_all(&archive)
        .map_err(|e| format!("cannot create {}: {e}", archive.display()))?;
    let to = archive.join(id);
    if to.exists() {
        return Err(format!(
            "{} already exists: rename or remove it first",
            to.display()
        ));
    }
    std::fs::rename(&from, &to)
        .map_err(|e| format!("cannot move {} to {}: {e}", from.display(), to.display()))?;
    Ok(to)
}

/// The first `//` comment line of a profile, as its description.
fn first_comment(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("//"))
        .map(|l| l.trim_start_matches('/').trim().to_string())
        .unwrap_or_default()
}

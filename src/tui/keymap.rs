//! The one keymap: key handling, the hint bar and the help overlay are all generated from
//! [`KEYMAP`], so they cannot disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Every view (unless a popup is open).
    Global,
    Runs,
    Charts,
    Scales,
    Gpu,
    MaxBs,
    /// A confirmation popup.
    Confirm,
    /// A list popup (profile picker, checkpoints).
    Picker,
    /// The help overlay.
    Help,
    /// Typing the runs table's `/` filter.
    Filter,
    /// A page over the body: a profile, a diff of profiles, a log.
    Page,
}

impl Context {
    pub fn title(self) -> &'static str {
        match self {
            Context::Global => "Everywhere",
            Context::Runs => "Runs",
            Context::Charts => "Charts",
            Context::Scales => "Scales",
            Context::Gpu => "GPU",
            Context::MaxBs => "MaxBS",
            Context::Confirm => "Confirmation",
            Context::Picker => "Lists (profiles, checkpoints)",
            Context::Help => "Help",
            Context::Filter => "Filter line (after /)",
            Context::Page => "Profile, diff and log pages",
        }
    }
}

/// Something the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Help,
    ViewRuns,
    ViewCharts,
    ViewScales,
    ViewGpu,
    ViewMaxBs,
    NextView,
    PrevView,
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    Left,
    Right,
    Open,
    ToggleMark,
    ClearMarks,
    NewRun,
    Stop,
    Resume,
    Checkpoints,
    ToggleLog,
    SmoothMore,
    SmoothLess,
    ZoomIn,
    ZoomOut,
    ZoomReset,
    Confirm,
    Cancel,
    Back,
    Filter,
    SortNext,
    SortPrev,
    SortInvert,
    Columns,
    Profile,
    Diff,
    Log,
    CopyPath,
    Archive,
    Delete,
    XAxis,
}

/// A key as written in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Backspace,
    Tab,
    BackTab,
}

impl Key {
    pub fn matches(self, ev: &KeyEvent) -> bool {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        match (self, ev.code) {
            (Key::Char(c), KeyCode::Char(k)) => !ctrl && k == c,
            (Key::Ctrl(c), KeyCode::Char(k)) => ctrl && k.eq_ignore_ascii_case(&c),
            (Key::Up, KeyCode::Up)
            | (Key::Down, KeyCode::Down)
            | (Key::Left, KeyCode::Left)
            | (Key::Right, KeyCode::Right)
            | (Key::PageUp, KeyCode::PageUp)
            | (Key::PageDown, KeyCode::PageDown)
            | (Key::Home, KeyCode::Home)
            | (Key::End, KeyCode::End)
            | (Key::Enter, KeyCode::Enter)
            | (Key::Esc, KeyCode::Esc)
            | (Key::Backspace, KeyCode::Backspace)
            | (Key::Tab, KeyCode::Tab)
            | (Key::BackTab, KeyCode::BackTab) => true,
            _ => false,
        }
    }

    pub fn label(self) -> String {
        match self {
            Key::Char(' ') => "space".into(),
            Key::Char(c) => c.to_string(),
            Key::Ctrl(c) => format!("^{}", c.to_ascii_uppercase()),
            Key::Up => "↑".into(),
            Key::Down => "↓".into(),
            Key::Left => "←".into(),
            Key::Right => "→".into(),
            Key::PageUp => "PgUp".into(),
            Key::PageDown => "PgDn".into(),
            Key::Home => "Home".into(),
            Key::End => "End".into(),
            Key::Enter => "enter".into(),
            Key::Esc => "esc".into(),
            Key::Backspace => "bksp".into(),
            Key::Tab => "tab".into(),
            Key::BackTab => "S-tab".into(),
        }
    }
}

/// One row of the keymap.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub context: Context,
    pub keys: &'static [Key],
    pub action: Action,
    /// Short word for the hint bar; `None`: help overlay only.
    pub hint: Option<&'static str>,
    /// Sentence for the help overlay.
    pub help: &'static str,
}

impl Binding {
    /// `↑/k`-style label of the keys.
    pub fn keys_label(&self) -> String {
        self.keys
            .iter()
            .map(|k| k.label())
            .collect::<Vec<_>>()
            .join("/")
    }
}

const fn b(
    context: Context,
    keys: &'static [Key],
    action: Action,
    hint: Option<&'static str>,
    help: &'static str,
) -> Binding {
    Binding {
        context,
        keys,
        action,
        hint,
        help,
    }
}

use Action as A;
use Context as C;
use Key as K;

/// Every key binding of the dashboard. Order matters: the first match wins inside a context, and
/// the hint bar and help overlay list bindings in this order.
pub const KEYMAP: &[Binding] = &[
    // Popups first: they capture keys.
    b(
        C::Confirm,
        &[K::Char('y'), K::Enter],
        A::Confirm,
        Some("yes"),
        "confirm",
    ),
    b(
        C::Confirm,
        &[K::Char('n'), K::Esc, K::Backspace],
        A::Cancel,
        Some("no"),
        "cancel",
    ),
    b(
        C::Picker,
        &[K::Up, K::Char('k')],
        A::Up,
        Some("move"),
        "previous entry",
    ),
    b(
        C::Picker,
        &[K::Down, K::Char('j')],
        A::Down,
        None,
        "next entry",
    ),
    b(C::Picker, &[K::PageUp], A::PageUp, None, "ten entries up"),
    b(
        C::Picker,
        &[K::PageDown],
        A::PageDown,
        None,
        "ten entries down",
    ),
    b(
        C::Picker,
        &[K::Char('g'), K::Home],
        A::First,
        None,
        "first entry",
    ),
    b(
        C::Picker,
        &[K::Char('G'), K::End],
        A::Last,
        None,
        "last entry",
    ),
    b(
        C::Picker,
        &[K::Enter],
        A::Confirm,
        Some("choose"),
        "use the selected entry (columns: show/hide it)",
    ),
    b(
        C::Picker,
        &[K::Char(' ')],
        A::ToggleMark,
        None,
        "columns list: show/hide the column",
    ),
    b(
        C::Picker,
        &[K::Esc, K::Backspace, K::Char('q')],
        A::Cancel,
        Some("close"),
        "close the list",
    ),
    b(
        C::Help,
        &[K::Up, K::Char('k')],
        A::Up,
        Some("scroll"),
        "scroll up",
    ),
    b(
        C::Help,
        &[K::Down, K::Char('j')],
        A::Down,
        None,
        "scroll down",
    ),
    b(
        C::Help,
        &[K::Esc, K::Backspace, K::Char('?'), K::Char('q')],
        A::Cancel,
        Some("close"),
        "close help",
    ),
    b(
        C::Filter,
        &[K::Enter],
        A::Confirm,
        Some("keep filter"),
        "keep the filter and go back to the table (type to edit it, bksp deletes)",
    ),
    b(
        C::Filter,
        &[K::Esc],
        A::Cancel,
        Some("clear"),
        "clear the filter",
    ),
    b(C::Filter, &[K::Up], A::Up, Some("move"), "previous run"),
    b(C::Filter, &[K::Down], A::Down, None, "next run"),
    // Views.
    b(
        C::Runs,
        &[K::Up, K::Char('k')],
        A::Up,
        Some("move"),
        "previous run",
    ),
    b(C::Runs, &[K::Down, K::Char('j')], A::Down, None, "next run"),
    b(C::Runs, &[K::PageUp], A::PageUp, None, "ten runs up"),
    b(C::Runs, &[K::PageDown], A::PageDown, None, "ten runs down"),
    b(
        C::Runs,
        &[K::Char('g'), K::Home],
        A::First,
        None,
        "first run",
    ),
    b(C::Runs, &[K::Char('G'), K::End], A::Last, None, "last run"),
    b(
        C::Runs,
        &[K::Enter],
        A::Open,
        Some("charts"),
        "open the run's charts",
    ),
    b(
        C::Runs,
        &[K::Char('/')],
        A::Filter,
        Some("filter"),
        "filter: type words that must all appear in a row (any column, e.g. `failed B1` or `lr=0.1`)",
    ),
    b(
        C::Runs,
        &[K::Char('>')],
        A::SortNext,
        Some("sort"),
        "sort by the next column (none: newest first)",
    ),
    b(
        C::Runs,
        &[K::Char('<')],
        A::SortPrev,
        None,
        "sort by the previous column",
    ),
    b(
        C::Runs,
        &[K::Char('I')],
        A::SortInvert,
        None,
        "invert the sort order",
    ),
    b(
        C::Runs,
        &[K::Char(' ')],
        A::ToggleMark,
        Some("mark"),
        "mark/unmark the run for comparison, then move to the next run",
    ),
    b(
        C::Runs,
        &[K::Char('u')],
        A::ClearMarks,
        None,
        "clear all marks",
    ),
    b(
        C::Runs,
        &[K::Char('d')],
        A::Diff,
        Some("diff"),
        "diff of the marked runs' frozen profiles",
    ),
    b(
        C::Runs,
        &[K::Char('p')],
        A::Profile,
        Some("profile"),
        "the run's frozen profile.ron",
    ),
    b(
        C::Runs,
        &[K::Char('t')],
        A::Log,
        Some("log"),
        "the run's log: stdout.log and its events, live (like tail -f)",
    ),
    b(
        C::Runs,
        &[K::Char('n')],
        A::NewRun,
        Some("new"),
        "start a run from a profile (detached)",
    ),
    b(
        C::Runs,
        &[K::Char('s')],
        A::Stop,
        Some("stop"),
        "stop the run (SIGINT: checkpoint, then exit); asks first",
    ),
    b(
        C::Runs,
        &[K::Char('r')],
        A::Resume,
        Some("resume"),
        "resume the run from its newest checkpoint",
    ),
    b(
        C::Runs,
        &[K::Char('c')],
        A::Checkpoints,
        None,
        "the run's checkpoints; resume from one",
    ),
    b(
        C::Runs,
        &[K::Char('C')],
        A::Columns,
        None,
        "choose the table's columns (lr, batch, weight decay, data, ETA …)",
    ),
    b(
        C::Runs,
        &[K::Char('y')],
        A::CopyPath,
        None,
        "copy the run's path (OSC 52 clipboard; also shown below)",
    ),
    b(
        C::Runs,
        &[K::Char('a')],
        A::Archive,
        None,
        "archive the run (moved into .archive/); asks first",
    ),
    b(
        C::Runs,
        &[K::Char('D')],
        A::Delete,
        None,
        "delete the run's directory; asks first",
    ),
    b(
        C::Charts,
        &[K::Left, K::Char('h')],
        A::Left,
        Some("cursor"),
        "move the reading cursor left (a zoomed window pans at its edge)",
    ),
    b(
        C::Charts,
        &[K::Right, K::Char('l')],
        A::Right,
        None,
        "move the reading cursor right",
    ),
    b(
        C::Charts,
        &[K::Char('g'), K::Home],
        A::First,
        None,
        "cursor to the window's start",
    ),
    b(
        C::Charts,
        &[K::Char('G'), K::End],
        A::Last,
        None,
        "cursor to the window's end",
    ),
    b(
        C::Charts,
        &[K::Char('x')],
        A::XAxis,
        Some("axis"),
        "x axis: epoch, step, wall time",
    ),
    b(
        C::Charts,
        &[K::Char('L')],
        A::ToggleLog,
        Some("log y"),
        "log scale for loss and learning rate",
    ),
    b(
        C::Charts,
        &[K::Char(']')],
        A::SmoothMore,
        Some("smooth"),
        "more smoothing (EMA weight up)",
    ),
    b(
        C::Charts,
        &[K::Char('[')],
        A::SmoothLess,
        None,
        "less smoothing (EMA weight down)",
    ),
    b(
        C::Charts,
        &[K::Char('+'), K::Char('=')],
        A::ZoomIn,
        Some("zoom"),
        "zoom in: halve the x window",
    ),
    b(
        C::Charts,
        &[K::Char('-')],
        A::ZoomOut,
        None,
        "zoom out: double the x window",
    ),
    b(
        C::Charts,
        &[K::Char('0')],
        A::ZoomReset,
        None,
        "whole run, no cursor",
    ),
    b(
        C::Charts,
        &[K::Up, K::Char('k')],
        A::Up,
        None,
        "previous run",
    ),
    b(
        C::Charts,
        &[K::Down, K::Char('j')],
        A::Down,
        None,
        "next run",
    ),
    b(
        C::Charts,
        &[K::Char(' ')],
        A::ToggleMark,
        Some("mark"),
        "mark/unmark the run (marked runs are overlaid); stays on it",
    ),
    b(
        C::Scales,
        &[K::Up, K::Char('k')],
        A::Up,
        Some("layer"),
        "previous layer",
    ),
    b(
        C::Scales,
        &[K::Down, K::Char('j')],
        A::Down,
        None,
        "next layer",
    ),
    b(
        C::Scales,
        &[K::Left, K::Char('h')],
        A::Left,
        Some("epoch"),
        "previous epoch",
    ),
    b(
        C::Scales,
        &[K::Right, K::Char('l')],
        A::Right,
        None,
        "next epoch",
    ),
    b(
        C::Scales,
        &[K::Char('g'), K::Home],
        A::First,
        None,
        "first epoch",
    ),
    b(
        C::Scales,
        &[K::Char('G'), K::End],
        A::Last,
        None,
        "newest epoch",
    ),
    b(
        C::Scales,
        &[K::Char('p')],
        A::Profile,
        Some("profile"),
        "show a scales profile from profiles/scales",
    ),
    b(
        C::MaxBs,
        &[K::Up, K::Char('k')],
        A::Up,
        Some("move"),
        "previous profile",
    ),
    b(
        C::MaxBs,
        &[K::Down, K::Char('j')],
        A::Down,
        None,
        "next profile",
    ),
    b(
        C::MaxBs,
        &[K::Char('n')],
        A::NewRun,
        Some("new probe"),
        "start a max-batch-size probe for the profile",
    ),
    b(
        C::MaxBs,
        &[K::Enter],
        A::Open,
        None,
        "start a max-batch-size probe for the profile",
    ),
    b(C::Gpu, &[K::Up, K::Char('k')], A::Up, None, "previous GPU"),
    b(C::Gpu, &[K::Down, K::Char('j')], A::Down, None, "next GPU"),
    b(
        C::Page,
        &[K::Up, K::Char('k')],
        A::Up,
        Some("scroll"),
        "scroll up",
    ),
    b(
        C::Page,
        &[K::Down, K::Char('j')],
        A::Down,
        None,
        "scroll down",
    ),
    b(C::Page, &[K::PageUp], A::PageUp, None, "a page up"),
    b(C::Page, &[K::PageDown], A::PageDown, None, "a page down"),
    b(
        C::Page,
        &[K::Char('g'), K::Home],
        A::First,
        None,
        "top (log: oldest lines read)",
    ),
    b(
        C::Page,
        &[K::Char('G'), K::End],
        A::Last,
        None,
        "bottom (log: follow the newest lines)",
    ),
    // Everywhere.
    b(
        C::Global,
        &[K::Esc, K::Backspace],
        A::Back,
        Some("back"),
        "back: close the page, clear the filter, or the previous view",
    ),
    b(C::Global, &[K::Char('1')], A::ViewRuns, None, "runs"),
    b(
        C::Global,
        &[K::Char('2')],
        A::ViewCharts,
        None,
        "charts of the selected (or marked) runs",
    ),
    b(
        C::Global,
        &[K::Char('3')],
        A::ViewScales,
        None,
        "scale histograms (HS runs, scales profiles)",
    ),
    b(C::Global, &[K::Char('4')], A::ViewGpu, None, "GPUs"),
    b(
        C::Global,
        &[K::Char('5')],
        A::ViewMaxBs,
        None,
        "max batch size probes",
    ),
    b(C::Global, &[K::Tab], A::NextView, Some("view"), "next view"),
    b(C::Global, &[K::BackTab], A::PrevView, None, "previous view"),
    b(
        C::Global,
        &[K::Char('?')],
        A::Help,
        Some("help"),
        "this help",
    ),
    b(
        C::Global,
        &[K::Char('q'), K::Ctrl('c')],
        A::Quit,
        Some("quit"),
        "quit (runs keep running)",
    ),
];

/// The action bound to `ev` in `context` (popup contexts do not fall through to Global, except
/// for Ctrl-C).
pub fn lookup(context: Context, ev: &KeyEvent) -> Option<Action> {
    let popup = matches!(
        context,
        Context::Confirm | Context::Picker | Context::Help | Context::Filter
    );
    let find = |ctx: Context| {
        KEYMAP
            .iter()
            .find(|b| b.context == ctx && b.keys.iter().any(|k| k.matches(ev)))
            .map(|b| b.action)
    };
    if let Some(a) = find(context) {
        return Some(a);
    }
    if popup {
        return K::Ctrl('c').matches(ev).then_some(Action::Quit);
    }
    find(Context::Global)
}

/// The hint bar entries for a context: (keys, word), the context's first, then the global ones.
pub fn hints(context: Context) -> Vec<(String, &'static str)> {
    let popup = matches!(
        context,
        Context::Confirm | Context::Picker | Context::Help | Context::Filter
    );
    let mut out = Vec::new();
    let contexts: &[Context] = if popup {
        &[context]
    } else {
        &[context, Context::Global]
    };
    for ctx in contexts {
        for b in KEYMAP.iter().filter(|b| b.context == *ctx) {
            if let Some(h) = b.hint {
                // Show the keys of the bindings folded under this hint (e.g. ↑↓ for move).
                let label = match b.action {
                    A::Up => "↑↓".to_string(),
                    A::Left => "←→".to_string(),
                    A::ZoomIn => "+-".to_string(),
                    A::SmoothMore => "[]".to_string(),
                    A::NextView => "tab".to_string(),
                    A::SortNext => "<>".to_string(),
                    _ => b.keys[0].label(),
                };
                out.push((label, h));
            }
        }
    }
    out
}

/// Width of the help overlay, borders included.
pub const HELP_WIDTH: u16 = 110;
/// Columns of a help row's keys (`  keys` padded), before its sentence.
pub const HELP_KEYS_WIDTH: usize = 16;

/// The help overlay's rows: a header per context, then (keys, sentence).
pub fn help_rows() -> Vec<(Option<Context>, String, &'static str)> {
    let order = [
        Context::Global,
        Context::Runs,
        Context::Charts,
        Context::Scales,
        Context::Gpu,
        Context::MaxBs,
        Context::Page,
        Context::Filter,
        Context::Picker,
        Context::Confirm,
        Context::Help,
    ];
    let mut rows = Vec::new();
    for ctx in order {
        rows.push((Some(ctx), String::new(), ctx.title()));
        for b in KEYMAP.iter().filter(|b| b.context == ctx) {
            rows.push((None, b.keys_label(), b.help));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn lookups() {
        assert_eq!(
            lookup(Context::Runs, &key(KeyCode::Char('s'))),
            Some(Action::Stop)
        );
        assert_eq!(
            lookup(Context::Charts, &key(KeyCode::Char('q'))),
            Some(Action::Quit)
        );
        assert_eq!(lookup(Context::Confirm, &key(KeyCode::Char('q'))), None);
        assert_eq!(
            lookup(
                Context::Confirm,
                &KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
            ),
            Some(Action::Quit)
        );
        // One meaning per key: l is "right" everywhere, Esc and Backspace go back.
        assert_eq!(
            lookup(Context::Scales, &key(KeyCode::Char('l'))),
            Some(Action::Right)
        );
        assert_eq!(
            lookup(Context::Charts, &key(KeyCode::Char('l'))),
            Some(Action::Right)
        );
        for ctx in [
            Context::Runs,
            Context::Charts,
            Context::Scales,
            Context::Page,
        ] {
            assert_eq!(lookup(ctx, &key(KeyCode::Esc)), Some(Action::Back));
            assert_eq!(lookup(ctx, &key(KeyCode::Backspace)), Some(Action::Back));
        }
        assert_eq!(
            lookup(Context::Runs, &key(KeyCode::Char('G'))),
            Some(Action::Last)
        );
        assert_eq!(lookup(Context::Filter, &key(KeyCode::Char('q'))), None);
    }

    #[test]
    fn no_key_is_bound_twice_in_one_context() {
        for (i, a) in KEYMAP.iter().enumerate() {
            for b in KEYMAP[i + 1..].iter().filter(|b| b.context == a.context) {
                for k in a.keys {
                    assert!(!b.keys.contains(k), "{k:?} bound twice in {:?}", a.context);
                }
            }
        }
    }

    /// A key means the same thing in every view it is bound in (the popups and the filter line
    /// aside, which capture keys).
    #[test]
    fn one_meaning_per_key_across_views() {
        let views = [
            Context::Runs,
            Context::Charts,
            Context::Scales,
            Context::Gpu,
            Context::MaxBs,
            Context::Page,
            Context::Global,
        ];
        let mut seen: Vec<(Key, Action)> = Vec::new();
        for b in KEYMAP.iter().filter(|b| views.contains(&b.context)) {
            for k in b.keys {
                if let Some((_, a)) = seen.iter().find(|(sk, _)| sk == k) {
                    assert_eq!(*a, b.action, "{k:?} means {a:?} and {:?}", b.action);
                } else {
                    seen.push((*k, b.action));
                }
            }
        }
    }

    #[test]
    fn every_view_has_hints_and_help_lists_every_binding() {
        for ctx in [
            Context::Runs,
            Context::Charts,
            Context::Scales,
            Context::MaxBs,
        ] {
            assert!(!hints(ctx).is_empty());
        }
        let rows = help_rows();
        assert_eq!(rows.iter().filter(|r| r.0.is_none()).count(), KEYMAP.len());
    }

    #[test]
    fn every_help_row_fits_the_overlay() {
        // The overlay does not wrap (it scrolls by rows): a longer row is cut off.
        let inner = HELP_WIDTH as usize - 2;
        let long: Vec<String> = help_rows()
            .iter()
            .filter(|(ctx, keys, text)| {
                let keys = if ctx.is_some() {
                    0
                } else {
                    (keys.chars().count() + 2).max(HELP_KEYS_WIDTH)
                };
                keys + text.chars().count() > inner
            })
            .map(|(_, keys, text)| format!("{keys}: {text} ({})", text.chars().count()))
            .collect();
        assert!(long.is_empty(), "help rows wider than {inner}: {long:#?}");
    }
}

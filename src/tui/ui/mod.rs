//! Drawing: one function per view, all on a [`Frame`] so any ratatui backend (the terminal, or
//! `TestBackend` in tests) can show them. Every function copes with any area, down to 0x0.

mod charts;
mod gpu;
mod maxbs;
mod pages;
mod popup;
mod runs;
mod scales;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::gpu::GpuStatus;
use crate::rundir::RunStatus;

use super::app::{App, MIN_HEIGHT, MIN_WIDTH, View};
use super::format;
use super::keymap;
use super::store::{Store, lock};

/// Draws the whole dashboard.
pub fn render(app: &mut App, f: &mut Frame) {
    let area = f.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_too_small(f, area);
        return;
    }
    let store_arc = app.store.clone();
    let store = lock(&store_arc);
    let [tabs, body, status, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_tabs(app, &store, f, tabs);
    match app.view {
        View::Runs => runs::render(app, &store, f, body),
        View::Charts => charts::render(app, &store, f, body),
        View::Scales => scales::render(app, &store, f, body),
        View::Gpu => gpu::render(app, &store, f, body),
        View::MaxBs => maxbs::render(app, &store, f, body),
    }
    if app.page.is_some() {
        pages::render(app, &store, f, body);
    }
    render_status(app, &store, f, status);
    render_hints(app, f, hints);
    drop(store);
    if app.popup.is_some() {
        // Over the body only: the status and hint lines stay readable.
        popup::render(app, f, body);
    }
}

/// The message shown below the minimum size, instead of a squashed layout.
pub fn render_too_small(f: &mut Frame, area: Rect) {
    let text = vec![
        Line::from(Span::styled(
            "Terminal too small",
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Line::from(format!(
            "{}x{}: the dashboard needs at least {MIN_WIDTH}x{MIN_HEIGHT}.",
            area.width, area.height
        )),
        Line::from("Enlarge the window, or press q to quit."),
    ];
    let h = (text.len() as u16 + 2).min(area.height);
    let y = area.y + area.height.saturating_sub(h) / 2;
    let r = Rect::new(area.x, y, area.width, h);
    f.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        r,
    );
}

fn render_tabs(app: &mut App, store: &Store, f: &mut Frame, area: Rect) {
    let mut spans = vec![Span::styled(
        " repopt-tui ",
        Style::default().fg(Color::Black).bg(Color::Cyan),
    )];
    let mut x = area.x + 12;
    app.regions.tabs.clear();
    for (i, v) in View::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, v.title());
        let w = label.chars().count() as u16;
        let style = if *v == app.view {
            Style::default()
                .fg(Color::Black)
                .bg(Color::White)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::Gray)
        };
        app.regions
            .tabs
            .push((Rect::new(x, area.y, w, 1).intersection(area), *v));
        x = x.saturating_add(w + 1);
        spans.push(Span::raw(" "));
        spans.push(Span::styled(label, style));
    }
    let live = store
        .runs
        .iter()
        .filter(|r| r.summary.status == RunStatus::Running)
        .count();
    let gpu = match &store.gpu_status {
        GpuStatus::Available { devices, .. } => format!("{devices} GPU"),
        GpuStatus::Unavailable(_) => "no GPU".into(),
    };
    let right = format!(
        "{live} running · {} · {gpu} ",
        format::plural(store.runs.len() as u64, "run")
    );
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let room = (area.width as usize).saturating_sub(used);
    if room > right.chars().count() {
        spans.push(Span::raw(" ".repeat(room - right.chars().count())));
        spans.push(Span::styled(right, Style::default().fg(Color::DarkGray)));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_status(app: &App, store: &Store, f: &mut Frame, area: Rect) {
    let line = if app.filter_editing || (!app.filter.is_empty() && app.view == View::Runs) {
        let shown = app.visible_runs(store).len();
        let mut spans = vec![
            Span::styled(
                " /",
                Style::default()
                    .fg(Color::Cyan)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(app.filter.clone()),
        ];
        if app.filter_editing {
            spans.push(Span::styled(
                "▏",
                Style::default().add_modifier(Modifier::SLOW_BLINK),
            ));
        }
        spans.push(Span::styled(
            format!(
                "  {shown} of {} · {}",
                format::plural(store.runs.len() as u64, "run"),
                if app.filter_editing {
                    "enter keeps, esc clears"
                } else {
                    "/ edits, esc clears"
                }
            ),
            Style::default().fg(Color::DarkGray),
        ));
        Line::from(spans)
    } else if let Some(m) = &app.message {
        let style = if m.error {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::Green)
        };
        Line::from(Span::styled(format!(" {}", m.text), style))
    } else if let Some(e) = &store.runs_dir_error {
        Line::from(Span::styled(
            format!(" cannot read runs: {e}"),
            Style::default().fg(Color::Red),
        ))
    } else {
        let loading = store.runs.iter().filter(|r| !r.loaded).count();
        let mut text = format!(" runs in {}", store.runs_dir.display());
        if loading > 0 {
            let (done, total) = store.runs.iter().fold((0u64, 0u64), |(d, t), r| {
                (d + r.bytes_read, t + r.bytes_total)
            });
            text.push_str(&format!(
                " · loading {} {}%",
                format::plural(loading as u64, "run"),
                (done * 100).checked_div(total).unwrap_or(0)
            ));
        }
        Line::from(Span::styled(text, Style::default().fg(Color::DarkGray)))
    };
    f.render_widget(Paragraph::new(line), area);
}

fn render_hints(app: &App, f: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    let mut width = 0usize;
    let mut hints = keymap::hints(app.context());
    // "? help" always fits: it goes first when the bar is short.
    if let Some(i) = hints.iter().position(|(k, _)| k == "?") {
        let total: usize = hints
            .iter()
            .map(|(k, w)| k.chars().count() + w.chars().count() + 3)
            .sum();
        if total > area.width as usize {
            let h = hints.remove(i);
            hints.insert(0, h);
        }
    }
    for (keys, word) in hints {
        let w = keys.chars().count() + word.chars().count() + 3;
        if width + w > area.width as usize {
            continue;
        }
        width += w;
        spans.push(Span::styled(
            format!(" {keys}"),
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::styled(
            format!(" {word} "),
            Style::default().fg(Color::Gray),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Style of a run status word.
pub(crate) fn status_style(s: RunStatus) -> Style {
    let c = match s {
        RunStatus::Running => Color::Green,
        RunStatus::Finished => Color::Blue,
        RunStatus::Stopped => Color::Yellow,
        RunStatus::Failed => Color::Red,
        RunStatus::Interrupted => Color::Magenta,
        RunStatus::New => Color::Gray,
    };
    Style::default().fg(c)
}

/// Status with a one-cell symbol: `● running`.
pub(crate) fn status_label(s: RunStatus) -> String {
    let sym = match s {
        RunStatus::Running => "●",
        RunStatus::Finished => "✔",
        RunStatus::Stopped => "■",
        RunStatus::Failed => "✖",
        RunStatus::Interrupted => "!",
        RunStatus::New => "·",
    };
    format!("{sym} {s}")
}

/// Short name of a run kind (one name per kind in every view).
pub(crate) fn kind_label(kind: Option<&crate::rundir::events::RunKindTag>) -> &str {
    super::runs_table::kind_label(kind)
}

/// Colors of runs overlaid on one chart, in marking order.
pub(crate) const RUN_COLORS: [Color; 6] = [
    Color::Yellow,
    Color::Cyan,
    Color::Magenta,
    Color::Green,
    Color::LightRed,
    Color::LightBlue,
];

/// A block with a title, rounded borders.
pub(crate) fn panel(title: impl Into<Line<'static>>) -> ratatui::widgets::Block<'static> {
    ratatui::widgets::Block::bordered()
        .border_type(ratatui::widgets::BorderType::Rounded)
        .border_style(Style::default().fg(Color::DarkGray))
        .title(title)
}

/// A dim placeholder line for empty panels.
pub(crate) fn placeholder(f: &mut Frame, area: Rect, text: &str) {
    f.render_widget(
        Paragraph::new(Span::styled(
            text.to_string(),
            Style::default().fg(Color::DarkGray),
        ))
        .wrap(Wrap { trim: true }),
        area,
    );
}

/// A chart with grey-labelled axes over the given bounds. With `legend_pct`, ratatui's legend at
/// the top right, hidden when the chart is narrower than that percentage of its needs; the
/// charts view draws its legends itself, above the plot (never over a curve).
pub(crate) fn axes_chart<'a>(
    chart: ratatui::widgets::Chart<'a>,
    x: ([f64; 2], Vec<Span<'a>>),
    y: ([f64; 2], Vec<Span<'a>>),
    legend_pct: Option<u16>,
) -> ratatui::widgets::Chart<'a> {
    use ratatui::widgets::{Axis, LegendPosition};
    let label_style = Style::default().fg(Color::DarkGray);
    let chart = chart
        .x_axis(Axis::default().bounds(x.0).labels(x.1).style(label_style))
        .y_axis(Axis::default().bounds(y.0).labels(y.1).style(label_style));
    match legend_pct {
        Some(pct) => chart
            .legend_position(Some(LegendPosition::TopRight))
            .hidden_legend_constraints((Constraint::Percentage(pct), Constraint::Percentage(60))),
        None => chart.legend_position(None),
    }
}

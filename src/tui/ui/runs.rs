//! The runs list and the selected run's details.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Cell, HighlightSpacing, LineGauge, Paragraph, Row, Table, TableState, Wrap,
};

use crate::rundir::events::{QuantizeScheme, RunKindTag};
use crate::rundir::{QuantizeSummary, RunStatus, RunSummary, STDOUT_LOG};

use super::super::app::App;
use super::super::format;
use super::super::runs_table::{Column, elide_middle};
use super::super::store::{RunEntry, Store};
use super::{panel, placeholder, status_label, status_style};

pub fn render(app: &mut App, store: &Store, f: &mut Frame, area: Rect) {
    let rows_wanted = app.visible_runs(store).len().max(1) as u16 + 3;
    let list_h = rows_wanted
        .min(area.height.saturating_mul(3) / 5)
        .max(3.min(area.height));
    let [list, details] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(0)]).areas(area);
    render_list(app, store, f, list);
    let run = app.selected.as_ref().and_then(|id| store.run(id));
    render_details(app, run, f, details);
}

fn render_list(app: &mut App, store: &Store, f: &mut Frame, area: Rect) {
    let visible = app.visible_runs(store);
    let mut title = if visible.len() == store.runs.len() {
        format!(" Runs ({}) ", store.runs.len())
    } else {
        format!(" Runs ({} of {}) ", visible.len(), store.runs.len())
    };
    if let Some(c) = app.sort.column {
        title.push_str(&format!(
            "· sorted by {} {} ",
            c.header(),
            if app.sort.descending { "▼" } else { "▲" }
        ));
    }
    if !app.marked.is_empty() {
        title.push_str(&format!("· {} marked ", app.marked.len()));
    }
    let block = panel(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if store.runs.is_empty() {
        let msg = format!(
            "No runs in {} yet. Press n to start one from a profile, or run `repopt-tui --profile FILE.ron` elsewhere: it shows up here.",
            store.runs_dir.display()
        );
        placeholder(f, inner, &msg);
        app.regions.runs_rows = Rect::default();
        return;
    }
    if visible.is_empty() {
        placeholder(
            f,
            inner,
            &format!(
                "No run matches the filter \"{}\" (esc clears it).",
                app.filter
            ),
        );
        app.regions.runs_rows = Rect::default();
        return;
    }
    // The user's columns, dropping the least important ones until they fit (status and run stay).
    // Before them: the selection symbol (2 cells), the mark (1) and one space after each column.
    let fixed = 3u16;
    let run_min = 20u16;
    let mut cols = app.columns.clone();
    let others = |cols: &[Column]| -> u16 {
        fixed
            + cols
                .iter()
                .map(|c| if *c == Column::Run { 1 } else { c.width() + 1 })
                .sum::<u16>()
    };
    while others(&cols) + run_min > inner.width {
        let Some((i, _)) = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.priority() < 255)
            .min_by_key(|(_, c)| c.priority())
        else {
            break;
        };
        cols.remove(i);
    }
    let longest = visible
        .iter()
        .map(|&i| store.runs[i].summary.id.chars().count())
        .max()
        .unwrap_or(3) as u16;
    let run_w = inner
        .width
        .saturating_sub(others(&cols))
        .min(longest.max(3))
        .max(3);
    let mut header: Vec<Cell> = vec![Cell::from("")];
    let mut widths = vec![Constraint::Length(1)];
    for c in &cols {
        let mut h = c.header().to_string();
        if app.sort.column == Some(*c) {
            h.push(if app.sort.descending { '▼' } else { '▲' });
        }
        let w = if *c == Column::Run { run_w } else { c.width() };
        header.push(if c.numeric() {
            Cell::from(Line::from(h).alignment(Alignment::Right))
        } else {
            Cell::from(h)
        });
        widths.push(Constraint::Length(w));
    }
    let rows: Vec<Row> = visible
        .iter()
        .map(|&i| {
            let r = &store.runs[i];
            let s = &r.summary;
            let mark = if app.marked.contains(&s.id) { "*" } else { " " };
            let mut cells = vec![Cell::from(Span::styled(
                mark,
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            ))];
            for c in &cols {
                let text = c.cell(r, app.now);
                let cell = match c {
                    Column::Status => Cell::from(Span::styled(text, status_style(s.status))),
                    Column::Run => Cell::from(elide_middle(&text, run_w as usize)),
                    _ if c.numeric() => Cell::from(Line::from(text).alignment(Alignment::Right)),
                    _ => Cell::from(text),
                };
                cells.push(cell);
            }
            Row::new(cells)
        })
        .collect();
    let selected = app.selected.as_ref().and_then(|id| {
        visible
            .iter()
            .position(|&i| &store.runs[i].summary.id == id)
    });
    let mut state = TableState::default().with_selected(selected);
    // Keep the selection visible the way Table would, and remember the offset for the mouse.
    let body_h = inner.height.saturating_sub(1) as usize;
    if let Some(sel) = selected
        && body_h > 0
        && sel >= body_h
    {
        *state.offset_mut() = sel + 1 - body_h;
    }
    let table = Table::new(rows, widths)
        .header(
            Row::new(header).style(
                Style::default()
                    .fg(Color::Gray)
                    .add_modifier(Modifier::BOLD),
            ),
        )
        .column_spacing(1)
        // A symbol, not only a colour: the selection stays visible under NO_COLOR.
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    f.render_stateful_widget(table, inner, &mut state);
    app.regions.runs_rows = Rect::new(
        inner.x,
        inner.y.saturating_add(1),
        inner.width,
        inner.height.saturating_sub(1),
    );
    app.regions.runs_offset = state.offset();
}

fn render_details(app: &App, run: Option<&RunEntry>, f: &mut Frame, area: Rect) {
    let Some(run) = run else {
        let block = panel(" Run ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        placeholder(f, inner, "No run selected.");
        return;
    };
    let s = &run.summary;
    let block = panel(details_title(s));
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let mut lines = identity_lines(run);
    lines.extend(metrics_line(run));
    // Right after the run's own top-1 figures: the INT8 ones are what a quantized run is
    // looked at for.
    if let Some(q) = &s.quantize {
        lines.extend(int8_lines(q, inner.width as usize));
    }
    lines.extend(history_lines(app, s));
    lines.extend(status_lines(run));
    lines.extend(stdout_tail_lines(s));

    let gauge_h = u16::from(s.epochs.is_some_and(|e| e > 0) && inner.height >= 3);
    let [gauge_area, text_area] =
        Layout::vertical([Constraint::Length(gauge_h), Constraint::Min(0)]).areas(inner);
    if gauge_h > 0 {
        render_progress(run, f, gauge_area);
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text_area);
}

/// The style of secondary facts (times, checkpoints, the profile).
fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

/// The run id, its status and the live owner's pid.
fn details_title(s: &RunSummary) -> Line<'static> {
    let mut title = vec![
        Span::raw(format!(" {} ", s.id)),
        Span::styled(status_label(s.status), status_style(s.status)),
    ];
    if let Some(pid) = s.owner_pid.filter(|_| s.status.is_live()) {
        title.push(Span::raw(format!(" pid {pid} ")));
    } else {
        title.push(Span::raw(" "));
    }
    Line::from(title)
}

/// What the run is: kind, model, data, devices; its frozen profile; a probe's progress.
fn identity_lines(run: &RunEntry) -> Vec<Line<'static>> {
    let s = &run.summary;
    let mut lines = Vec::new();
    let kind = match &s.kind {
        None => "kind unknown yet".to_string(),
        Some(k) => k.label().to_string(),
    };
    let mut what = vec![kind];
    if !s.variant.is_empty() {
        what.push(format!("variant {}", s.variant));
    }
    if !s.dataset.is_empty() {
        what.push(s.dataset.clone());
    }
    if !s.devices.is_empty() {
        what.push(format!("on {}", s.devices.join(",")));
    }
    if let Some(b) = s.batch_size.filter(|b| *b > 0) {
        what.push(format!("batch {b}/device"));
    }
    lines.push(Line::from(what.join(" · ")));
    let c = &run.config;
    if let Some(e) = &c.error {
        lines.push(Line::styled(
            format!("profile.ron: {e}"),
            Style::default().fg(Color::Yellow),
        ));
    } else if c.lr.is_some() {
        let mut cfg = Vec::new();
        if let Some(lr) = c.lr {
            cfg.push(format!("lr {}", format::num(lr)));
        }
        if let Some(b) = c.total_batch {
            cfg.push(format!("total batch {b}"));
        }
        if let Some(w) = c.weight_decay {
            cfg.push(format!("weight decay {}", format::num(w)));
        }
        if let Some(e) = c.epochs {
            cfg.push(format::plural(e as u64, "epoch"));
        }
        if let Some(d) = &c.data {
            cfg.push(format!("data {d}"));
        }
        lines.push(Line::styled(
            format!(
                "profile: {}  (p shows it, d diffs marked runs)",
                cfg.join(" · ")
            ),
            dim(),
        ));
    }
    if s.kind == Some(RunKindTag::Probe) {
        let done = run.series.probes.len();
        let mut line = format!("{} measured", format::plural(done as u64, "model"));
        if s.status.is_live()
            && let Some(last) = log_tail(&s.path.join(STDOUT_LOG), 1)
        {
            line.push_str(&format!(" · last trial: {}", last.join("").trim()));
        }
        lines.push(Line::from(line));
    }
    lines
}

/// Losses, top-1/top-5, best top-1, learning rate, throughput.
fn metrics_line(run: &RunEntry) -> Option<Line<'static>> {
    let s = &run.summary;
    let mut metrics = Vec::new();
    if let Some(l) = s.last_loss {
        metrics.push(format!("train loss {}", format::num(l)));
    }
    if let Some((_, e)) = run.series.evals.last() {
        metrics.push(format!("val loss {}", format::num(e.loss)));
    }
    if let Some(t) = s.last_top1 {
        metrics.push(format!("top-1 {t:.2}"));
    }
    if let Some(t) = s.last_top5 {
        metrics.push(format!("top-5 {t:.2}"));
    }
    if let Some(b) = s.best_top1 {
        metrics.push(format!("best {b:.2}"));
    }
    if let Some(lr) = s.lr {
        metrics.push(format!("lr {}", format::num(lr)));
    }
    if let Some(i) = s.images_per_s {
        metrics.push(format!("{} img/s", format::si(i)));
    }
    (!metrics.is_empty()).then(|| Line::from(metrics.join(" · ")))
}

/// The newest `quantize` result: a header with the FP32 top-1, then one row per scheme
/// (weight scales · calibration · kept in float → INT8 top-1 and drop), the best one marked.
/// Rows are fitted to `width` here rather than wrapped, so each scheme stays on one line: the
/// scheme's name is cut first, the figures last.
fn int8_lines(q: &QuantizeSummary, width: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut header = format!("INT8 · FP32 top-1 {:.2}", q.fp32_top1);
    for extra in [
        format!(" · {}", q.weights),
        format!(" · {} calibration images", q.calibration_images),
    ] {
        if header.chars().count() + extra.chars().count() <= width {
            header.push_str(&extra);
        }
    }
    lines.push(Line::styled(
        cut(&header, width),
        Style::default().add_modifier(Modifier::BOLD),
    ));
    let col = |get: fn(&QuantizeScheme) -> &str| {
        q.schemes
            .iter()
            .map(|s| get(s).chars().count())
            .max()
            .unwrap_or(0)
    };
    let (ww, aw, kw) = (
        col(|s| &s.weights),
        col(|s| &s.activations),
        col(|s| &s.keep_float),
    );
    let top1s: Vec<String> = q.schemes.iter().map(|s| format!("{:.2}", s.top1)).collect();
    let drops: Vec<String> = q.schemes.iter().map(|s| format!("{:.2}", s.drop)).collect();
    let tw = top1s.iter().map(String::len).max().unwrap_or(0);
    let dw = drops.iter().map(String::len).max().unwrap_or(0);
    let best = q.best();
    let marker = |i: usize| if best == Some(i) { " ◀ best" } else { "" };
    let figures: Vec<String> = (0..q.schemes.len())
        .map(|i| format!("→ {:>tw$}  drop {:>dw$}{}", top1s[i], drops[i], marker(i)))
        .collect();
    // Two spaces of indent and one before the figures; what is left is the labels' (the same
    // for every row, so cut labels stay aligned).
    let figures_w = figures.iter().map(|f| f.chars().count()).max().unwrap_or(0);
    let room = width.saturating_sub(3 + figures_w);
    for (i, s) in q.schemes.iter().enumerate() {
        let label = format!(
            "{:<ww$} · {:<aw$} · {:<kw$}",
            s.weights, s.activations, s.keep_float
        );
        let row = if label.chars().count() <= room {
            format!("  {label} {}", figures[i])
        } else if room >= 4 {
            // Only a name longer than the room gets an ellipsis, not one padded past it.
            let name = label.trim_end();
            let name = if name.chars().count() <= room {
                format!("{name:<room$}")
            } else {
                cut(name, room)
            };
            format!("  {name} {}", figures[i])
        } else {
            cut(&format!("  {}", figures[i]), width)
        };
        let style = if best == Some(i) {
            Style::default()
                .fg(Color::Green)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        lines.push(Line::styled(row, style));
    }
    lines
}

/// `text` in at most `width` characters, its end replaced by `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// When it was created, updated, how long it took; checkpoints; what it resumed from.
fn history_lines(app: &App, s: &RunSummary) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut when = Vec::new();
    if let Some(t) = s.first_t {
        when.push(format!("created {} UTC", format::utc_datetime(t)));
    }
    if let Some(t) = s.last_update() {
        let age = format::age(app.now, t);
        when.push(if age == "now" {
            "updated just now".to_string()
        } else {
            format!("updated {age} ago")
        });
    }
    if let Some(w) = s.wall_s {
        when.push(format!("took {}", format::duration(w)));
    }
    if !when.is_empty() {
        lines.push(Line::styled(when.join(" · "), dim()));
    }
    if s.checkpoints > 0 || s.last_checkpoint.is_some() {
        lines.push(Line::styled(
            format!(
                "{}, last {}",
                format::plural(s.checkpoints as u64, "checkpoint"),
                s.last_checkpoint.as_deref().unwrap_or("–")
            ),
            dim(),
        ));
    }
    if let Some(r) = &s.resumed_from {
        lines.push(Line::styled(format!("resumed from {r}"), dim()));
    }
    lines
}

/// What the status means and what to do about it; unparsable event lines.
fn status_lines(run: &RunEntry) -> Vec<Line<'static>> {
    let s = &run.summary;
    let mut lines = Vec::new();
    let (note, style) = match s.status {
        RunStatus::Failed => (
            format!("failed: {}", s.failure.as_deref().unwrap_or("(no message)")),
            Style::default().fg(Color::Red),
        ),
        RunStatus::Stopped => (
            format!(
                "stopped by {}; r resumes from the newest checkpoint",
                s.stop_reason.as_deref().unwrap_or("request")
            ),
            Style::default().fg(Color::Yellow),
        ),
        RunStatus::Interrupted => (
            "no live process and no final event: it was killed or crashed. r resumes from the newest checkpoint.".into(),
            Style::default().fg(Color::Magenta),
        ),
        RunStatus::New => (
            "no events yet: the process may be starting (see its stdout.log)".into(),
            dim(),
        ),
        RunStatus::Running => (String::new(), dim()),
        RunStatus::Finished => (
            s.best_top1
                .map(|b| format!("finished: best top-1 {b:.2}%"))
                .unwrap_or_else(|| "finished".into()),
            Style::default().fg(Color::Blue),
        ),
    };
    if !note.is_empty() {
        lines.push(Line::styled(note, style));
    }
    if s.skipped_lines > 0 {
        let first = run
            .first_skip
            .as_ref()
            .map(|k| format!(" (first: line {}: {})", k.line, k.error))
            .unwrap_or_default();
        lines.push(Line::styled(
            format!(
                "{} unparsable line(s) in events.jsonl skipped{first}",
                s.skipped_lines
            ),
            Style::default().fg(Color::Yellow),
        ));
    }
    lines
}

/// The end of `stdout.log` of a run that failed, was interrupted or has not logged yet.
fn stdout_tail_lines(s: &RunSummary) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if matches!(
        s.status,
        RunStatus::Failed | RunStatus::Interrupted | RunStatus::New
    ) && let Some(tail) = log_tail(&s.path.join(STDOUT_LOG), 4)
    {
        lines.push(Line::styled(format!("{STDOUT_LOG}:"), dim()));
        for l in tail {
            lines.push(Line::styled(format!("  {l}"), dim()));
        }
    }
    lines
}

/// The progress gauge: percent, epoch, iteration, and the ETA of a live run.
fn render_progress(run: &RunEntry, f: &mut Frame, area: Rect) {
    let s = &run.summary;
    let ratio = s.progress().unwrap_or(0.0);
    let eta = if s.status.is_live() {
        s.eta_s
            .or_else(|| run.series.estimate_eta(s.epochs.unwrap_or(0)))
            .map(|e| format!(" · ETA {}", format::duration(e)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let epoch = match (s.epoch, s.epochs) {
        (Some(e), Some(n)) => format!("epoch {}/{n}", (e + 1).min(n)),
        (None, Some(n)) => format!("epoch 0/{n}"),
        _ => String::new(),
    };
    let iter = match (s.global_iter, s.iters_per_epoch, s.epochs) {
        (Some(g), Some(ipe), Some(n)) => {
            let total = ipe * n as u64;
            let done = if s.status == RunStatus::Finished {
                total
            } else {
                (g + 1).min(total)
            };
            format!(" · iter {done}/{total}")
        }
        _ => String::new(),
    };
    let gauge = LineGauge::default()
        .ratio(ratio)
        .label(format!("{:>3.0}% {epoch}{iter}{eta}", ratio * 100.0))
        .filled_style(status_style(s.status))
        .unfilled_style(Style::default().fg(Color::DarkGray));
    f.render_widget(gauge, area);
}

/// The last `n` non-empty lines of a log (reading only its last 4 KiB).
fn log_tail(path: &std::path::Path, n: usize) -> Option<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.chars().filter(|c| !c.is_control()).collect())
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(lines[lines.len().saturating_sub(n)..].to_vec())
}

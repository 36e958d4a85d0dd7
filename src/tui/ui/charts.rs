//! The run view: loss, accuracy, learning rate and throughput charts of one run, or of the marked
//! runs overlaid; raw lines dim under EMA-smoothed bright ones, log scale, time-window zoom, and
//! min/max decimation to the chart's width.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Chart, Dataset, GraphType, LineGauge, Paragraph};

use super::super::app::{App, XAxis};
use super::super::format::{self, AxisStyle};
use super::super::runs_table::elide_middle;
use super::super::series::{Metric, StepPoint, decimate, decimate_indexed, eval_x};
use super::super::store::{RunEntry, Store};
use super::{RUN_COLORS, panel, placeholder, status_label, status_style};
use crate::rundir::events::Eval;

/// One line on a chart.
struct Plot {
    /// In the legend (None: the dim raw line under a smoothed one).
    name: Option<String>,
    points: Vec<(f64, f64)>,
    style: Style,
    graph: GraphType,
    /// The value the legend shows: the latest, or the one under the cursor.
    value: Option<f64>,
    /// The x of that value.
    at: Option<f64>,
}

pub fn render(app: &mut App, store: &Store, f: &mut Frame, area: Rect) {
    let compare = !app.marked.is_empty();
    let ids: Vec<String> = if compare {
        app.marked.clone()
    } else {
        app.selected.iter().cloned().collect()
    };
    let runs: Vec<&RunEntry> = ids.iter().filter_map(|id| store.run(id)).collect();
    if runs.is_empty() {
        let block = panel(" Charts ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        placeholder(
            f,
            inner,
            "No run selected. Pick one in the runs view (1), or mark several with space to compare them.",
        );
        return;
    }
    let head_lines = if compare {
        header_layout(runs.len(), area.width).1
    } else {
        1
    };
    let [head, settings, grid] = Layout::vertical([
        Constraint::Length(head_lines),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    render_header(app, &runs, compare, f, head);

    let xaxis = app.chart.xaxis;
    let (lo, hi) = runs
        .iter()
        .filter_map(|r| x_range(r, xaxis))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (l, h)| {
            (a.min(l), b.max(h))
        });
    let full = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let (x0, x1) = app.chart.window(full.0, full.1.max(full.0 + 1e-9));
    let cursor_x = app.chart.cursor.map(|c| x0 + (x1 - x0) * c.clamp(0.0, 1.0));
    let weight = app.chart.weight();
    let window = if app.chart.zoom == 0 {
        "whole run".to_string()
    } else {
        format!(
            "{}–{} (1/{})",
            x_text(x0.max(0.0), xaxis),
            x_text(x1, xaxis),
            1u32 << app.chart.zoom.min(16)
        )
    };
    let mut set = vec![Span::styled(
        format!(
            " x: {} · {window} · {} · log y {} ",
            xaxis.label(),
            if weight == 0.0 {
                "raw".to_string()
            } else {
                format!("EMA {weight}")
            },
            if app.chart.log { "on" } else { "off" }
        ),
        Style::default().fg(Color::DarkGray),
    )];
    match cursor_x {
        Some(cx) => set.push(Span::styled(
            format!("· cursor {} {} ", xaxis.label(), x_text(cx, xaxis)),
            Style::default().add_modifier(Modifier::BOLD),
        )),
        None => set.push(Span::styled(
            "· latest values (←→ cursor) ",
            Style::default().fg(Color::DarkGray),
        )),
    }
    f.render_widget(Paragraph::new(Line::from(set)), settings);

    let two_rows = grid.height >= 16;
    let rows = if two_rows {
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).split(grid)
    } else {
        Layout::vertical([Constraint::Percentage(100)]).split(grid)
    };
    let top =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).split(rows[0]);
    let ctx = Ctx {
        x0,
        x1,
        weight,
        log: app.chart.log,
        compare,
        xaxis,
        cursor: cursor_x,
    };
    chart_panel(app, &runs, f, top[0], Panel::Loss, ctx);
    chart_panel(app, &runs, f, top[1], Panel::Accuracy, ctx);
    if two_rows {
        let bottom = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .split(rows[1]);
        chart_panel(app, &runs, f, bottom[0], Panel::Lr, ctx);
        chart_panel(app, &runs, f, bottom[1], Panel::Throughput, ctx);
    }
}

/// An x value as the axis writes it.
fn x_text(x: f64, xaxis: XAxis) -> String {
    match xaxis {
        XAxis::Epoch => format::sig(x, 3),
        XAxis::Step => format::si(x.round()),
        XAxis::Wall => format::duration(x),
    }
}

/// Where a run's time starts on the wall-time axis: its first start.
fn t0(run: &RunEntry) -> f64 {
    run.series
        .starts
        .first()
        .map(|(t, _)| *t)
        .or_else(|| run.series.steps.first().map(|p| p.t))
        .or_else(|| run.series.evals.first().map(|(t, _)| *t))
        .unwrap_or(0.0)
}

fn step_x(p: &StepPoint, xaxis: XAxis, t0: f64) -> f64 {
    match xaxis {
        XAxis::Epoch => p.x,
        XAxis::Step => p.global_iter as f64,
        XAxis::Wall => (p.t - t0).max(0.0),
    }
}

/// The x of an eval: the end of its epoch (epoch, step), or when it was written (wall time).
fn eval_xv(run: &RunEntry, t: f64, e: &Eval, xaxis: XAxis, t0: f64) -> f64 {
    match xaxis {
        XAxis::Epoch => eval_x(e),
        XAxis::Step => eval_x(e) * run.series.iters_per_epoch as f64,
        XAxis::Wall => (t - t0).max(0.0),
    }
}

fn x_range(run: &RunEntry, xaxis: XAxis) -> Option<(f64, f64)> {
    let t0 = t0(run);
    let s = &run.series;
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    if let (Some(a), Some(b)) = (s.steps.first(), s.steps.last()) {
        lo = lo.min(step_x(a, xaxis, t0));
        hi = hi.max(step_x(b, xaxis, t0));
    }
    for (t, e) in &s.evals {
        let x = eval_xv(run, *t, e, xaxis, t0);
        lo = lo.min(x);
        hi = hi.max(x);
    }
    (lo <= hi).then_some((lo, hi))
}

/// How the compare header lays out `n` runs in `width` columns: (entries per line, lines).
fn header_layout(n: usize, width: u16) -> (usize, u16) {
    let full = (width as usize / 64).max(1);
    if n.div_ceil(full) <= 4 {
        return (full, n.div_ceil(full) as u16);
    }
    let compact = (width as usize / 32).max(1);
    (compact, n.div_ceil(compact).min(6) as u16)
}

fn render_header(app: &App, runs: &[&RunEntry], compare: bool, f: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    if compare {
        // Every marked run, numbered: the legends name runs by these numbers.
        let (per_line, lines_n) = header_layout(runs.len(), area.width);
        let full = runs.len().div_ceil(per_line) <= 4;
        let cell_w = (area.width as usize / per_line).max(1);
        let mut lines: Vec<Line> = Vec::new();
        for (li, chunk) in runs.chunks(per_line).enumerate() {
            if li as u16 >= lines_n {
                break;
            }
            let mut spans = Vec::new();
            for (k, r) in chunk.iter().enumerate() {
                let i = li * per_line + k;
                let s = &r.summary;
                let color = RUN_COLORS[i % RUN_COLORS.len()];
                let mut text = format!(" {}━━ ", i + 1);
                let id_room = if full {
                    cell_w.saturating_sub(40)
                } else {
                    cell_w.saturating_sub(7)
                };
                text.push_str(&elide_middle(&s.id, id_room.max(8)));
                let mut used = text.chars().count();
                spans.push(Span::styled(text, Style::default().fg(color)));
                if full {
                    let rest = format!(
                        " {} {} {} best {}",
                        status_label(s.status),
                        super::kind_label(s.kind.as_ref()),
                        s.variant,
                        s.best_top1.map_or("–".into(), |b| format!("{b:.2}"))
                    );
                    used += rest.chars().count();
                    spans.push(Span::styled(rest, status_style(s.status)));
                }
                if k + 1 < chunk.len() {
                    spans.push(Span::raw(" ".repeat(cell_w.saturating_sub(used).max(1))));
                }
            }
            lines.push(Line::from(spans));
        }
        let shown = (lines_n as usize * per_line).min(runs.len());
        if shown < runs.len()
            && let Some(last) = lines.last_mut()
        {
            last.spans.push(Span::styled(
                format!("  +{} more", runs.len() - shown),
                Style::default().fg(Color::DarkGray),
            ));
        }
        f.render_widget(Paragraph::new(lines), area);
        return;
    }
    let r = runs[0];
    let s = &r.summary;
    let left = format!(
        " {} · {} {} · ",
        s.id,
        super::kind_label(s.kind.as_ref()),
        s.variant
    );
    let status = status_label(s.status);
    let used = (left.chars().count() + status.chars().count() + 1) as u16;
    let [text, gauge] =
        Layout::horizontal([Constraint::Length(used.min(area.width)), Constraint::Min(0)])
            .areas(area);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(left, Style::default().add_modifier(Modifier::BOLD)),
            Span::styled(status, status_style(s.status)),
        ])),
        text,
    );
    let eta = if s.status.is_live() {
        s.eta_s
            .or_else(|| r.series.estimate_eta(s.epochs.unwrap_or(0)))
            .map(|e| format!(" ETA {}", format::duration(e)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let epoch = match (s.epoch, s.epochs) {
        (Some(e), Some(n)) if n > 0 => format!(" epoch {}/{n}", (e + 1).min(n)),
        _ => String::new(),
    };
    let ips = s
        .images_per_s
        .filter(|_| s.status.is_live())
        .map(|i| format!(" {} img/s", format::si(i)))
        .unwrap_or_default();
    let ratio = s.progress().unwrap_or(0.0);
    f.render_widget(
        LineGauge::default()
            .ratio(ratio)
            .label(format!(" {:.0}%{epoch}{eta}{ips}", ratio * 100.0))
            .filled_style(status_style(s.status))
            .unfilled_style(Style::default().fg(Color::DarkGray)),
        gauge,
    );
    let _ = app;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Panel {
    Loss,
    Accuracy,
    Lr,
    Throughput,
}

#[derive(Debug, Clone, Copy)]
struct Ctx {
    x0: f64,
    x1: f64,
    weight: f64,
    log: bool,
    compare: bool,
    xaxis: XAxis,
    /// The reading cursor's x (None: legends show the latest values).
    cursor: Option<f64>,
}

fn chart_panel(app: &mut App, runs: &[&RunEntry], f: &mut Frame, area: Rect, which: Panel, c: Ctx) {
    let log = c.log && matches!(which, Panel::Loss | Panel::Lr);
    let title = match which {
        Panel::Loss => "Loss",
        Panel::Accuracy => "Accuracy (%)",
        Panel::Lr => "Learning rate",
        Panel::Throughput => "Images/s",
    };
    let block = panel(format!(" {title}{} ", if log { " (log)" } else { "" }));
    if area.width < 4 || area.height < 3 {
        f.render_widget(block, area);
        return;
    }
    // About two points per column of the plotting area.
    let buckets = area.width.saturating_sub(10).max(1) as usize;
    let tf = |v: f64| {
        if log {
            if v > 0.0 { v.log10() } else { f64::NAN }
        } else {
            v
        }
    };
    let mut plots: Vec<Plot> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let color = if c.compare {
            RUN_COLORS[i % RUN_COLORS.len()]
        } else {
            match which {
                Panel::Loss => Color::Yellow,
                Panel::Accuracy => Color::Green,
                Panel::Lr => Color::Magenta,
                Panel::Throughput => Color::LightBlue,
            }
        };
        let tag = (i + 1).to_string();
        let named = |label: &str| {
            if c.compare {
                if label.is_empty() {
                    tag.clone()
                } else {
                    format!("{tag} {label}")
                }
            } else {
                label.to_string()
            }
        };
        match which {
            Panel::Loss => {
                let label = if c.compare { named("") } else { "train".into() };
                step_plots(
                    app,
                    run,
                    Metric::Loss,
                    color,
                    c,
                    buckets,
                    &tf,
                    &label,
                    &mut plots,
                );
                let style = if c.compare {
                    Style::default().fg(color).add_modifier(Modifier::BOLD)
                } else {
                    Style::default().fg(Color::Cyan)
                };
                // Compared runs: the val loss is the bold line of the run's colour, the legend
                // names the train loss (one entry per run keeps it on screen at 80 columns).
                let name = if c.compare {
                    None
                } else {
                    Some("val".to_string())
                };
                eval_plot(run, |e| e.loss, name, style, c, buckets, &tf, &mut plots);
            }
            Panel::Accuracy => {
                if c.compare {
                    eval_plot(
                        run,
                        |e| e.top1,
                        Some(named("")),
                        Style::default().fg(color),
                        c,
                        buckets,
                        &tf,
                        &mut plots,
                    );
                } else {
                    eval_plot(
                        run,
                        |e| e.train_top1.unwrap_or(f64::NAN),
                        Some("train top-1".into()),
                        Style::default().fg(Color::Gray),
                        c,
                        buckets,
                        &tf,
                        &mut plots,
                    );
                    eval_plot(
                        run,
                        |e| e.top5,
                        Some("val top-5".into()),
                        Style::default().fg(Color::Cyan),
                        c,
                        buckets,
                        &tf,
                        &mut plots,
                    );
                    eval_plot(
                        run,
                        |e| e.top1,
                        Some("val top-1".into()),
                        Style::default().fg(Color::Green),
                        c,
                        buckets,
                        &tf,
                        &mut plots,
                    );
                }
            }
            Panel::Lr => {
                let points = raw_points(app, run, Metric::Lr, c, buckets, &tf);
                let (value, at) = step_value(run, c, |i| run.series.steps[i].get(Metric::Lr));
                plots.push(Plot {
                    name: Some(if c.compare { named("") } else { "lr".into() }),
                    points,
                    style: Style::default().fg(color),
                    graph: GraphType::Line,
                    value,
                    at,
                });
            }
            Panel::Throughput => {
                let label = if c.compare { named("") } else { "train".into() };
                step_plots(
                    app,
                    run,
                    Metric::ImagesPerS,
                    color,
                    c,
                    buckets,
                    &tf,
                    &label,
                    &mut plots,
                );
            }
        }
    }
    // y bounds from the points inside the window.
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in &plots {
        for &(x, y) in &p.points {
            if x >= c.x0 && x <= c.x1 && y.is_finite() {
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
    }
    let inner = block.inner(area);
    f.render_widget(block, area);
    if y0 > y1 {
        placeholder(f, inner, "no data in this window yet");
        return;
    }
    if y1 - y0 < 1e-12 {
        let pad = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.05 };
        y0 -= pad;
        y1 += pad;
    } else {
        let pad = (y1 - y0) * 0.05;
        y0 -= pad;
        y1 += pad;
    }
    if which == Panel::Accuracy {
        y1 = y1.min(100.0);
    }
    // Quantities that cannot be negative do not get a negative axis from the padding.
    if !log
        && y0 < 0.0
        && plots
            .iter()
            .all(|p| p.points.iter().all(|&(_, y)| y >= 0.0 || y.is_nan()))
    {
        y0 = 0.0;
    }
    // The legend: above the plot, never over a curve; each series with its latest value (or the
    // value under the cursor).
    let fmt = |v: f64| match which {
        Panel::Accuracy => format!("{v:.2}"),
        Panel::Throughput => format::si(v),
        _ => format::num(v),
    };
    let entries: Vec<(String, Style)> = plots
        .iter()
        .filter_map(|p| {
            let name = p.name.as_ref()?;
            let v = p.value.map_or("–".to_string(), fmt);
            let at = match (c.cursor, p.at) {
                (Some(_), Some(x)) => format!(" @{}", x_text(x, c.xaxis)),
                _ => String::new(),
            };
            Some((
                format!("━ {name} {v}{at}"),
                p.style.remove_modifier(Modifier::BOLD),
            ))
        })
        .collect();
    let max_legend = (inner.height / 3).max(1) as usize;
    let legend = legend_lines(&entries, inner.width as usize, max_legend);
    let [legend_area, plot_area] =
        Layout::vertical([Constraint::Length(legend.len() as u16), Constraint::Min(0)])
            .areas(inner);
    f.render_widget(Paragraph::new(legend), legend_area);
    if plot_area.height < 2 {
        return;
    }
    let y_style = if log {
        AxisStyle::Log10
    } else if which == Panel::Throughput {
        AxisStyle::Si
    } else {
        AxisStyle::Plain
    };
    let label_style = Style::default().fg(Color::DarkGray);
    let n_y = if plot_area.height >= 8 { 3 } else { 2 };
    let x_labels: Vec<Span> = [c.x0, (c.x0 + c.x1) / 2.0, c.x1]
        .iter()
        .map(|&x| Span::styled(x_text(x, c.xaxis), label_style))
        .collect();
    let y_labels: Vec<Span> = format::axis_labels(y0, y1, n_y, y_style)
        .into_iter()
        .map(|l| Span::styled(l, label_style))
        .collect();
    let cursor_line: Vec<(f64, f64)> = c.cursor.map(|x| vec![(x, y0), (x, y1)]).unwrap_or_default();
    let mut datasets: Vec<Dataset> = plots
        .iter()
        .map(|p| {
            Dataset::default()
                .data(&p.points)
                .marker(Marker::Braille)
                .graph_type(p.graph)
                .style(p.style)
        })
        .collect();
    if !cursor_line.is_empty() {
        datasets.push(
            Dataset::default()
                .data(&cursor_line)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(Color::White)),
        );
    }
    let chart = Chart::new(datasets);
    let chart = super::axes_chart(chart, ([c.x0, c.x1], x_labels), ([y0, y1], y_labels), None);
    f.render_widget(chart, plot_area);
}

/// Legend entries packed into at most `max_lines` lines of `width`; what does not fit is counted.
fn legend_lines(entries: &[(String, Style)], width: usize, max_lines: usize) -> Vec<Line<'static>> {
    let mut lines: Vec<Vec<Span<'static>>> = vec![Vec::new()];
    let mut used = 0usize;
    let mut shown = 0usize;
    for (text, style) in entries {
        let w = text.chars().count() + 2;
        if used > 0 && used + w > width {
            if lines.len() == max_lines {
                break;
            }
            lines.push(Vec::new());
            used = 0;
        }
        let text = if w > width {
            elide_middle(text, width.saturating_sub(2))
        } else {
            text.clone()
        };
        if let Some(line) = lines.last_mut() {
            line.push(Span::styled(format!("{text}  "), *style));
        }
        used += w;
        shown += 1;
    }
    if shown < entries.len()
        && let Some(last) = lines.last_mut()
    {
        last.push(Span::styled(
            format!("+{}", entries.len() - shown),
            Style::default().fg(Color::DarkGray),
        ));
    }
    lines
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(Line::from)
        .collect()
}

/// The index of the step nearest to `x` (steps are in x order).
fn nearest_step(run: &RunEntry, c: Ctx, x: f64) -> Option<usize> {
    let s = &run.series.steps;
    if s.is_empty() {
        return None;
    }
    let t0 = t0(run);
    let i = s.partition_point(|p| step_x(p, c.xaxis, t0) < x);
    let cands = [i.saturating_sub(1), i.min(s.len() - 1)];
    cands.into_iter().min_by(|&a, &b| {
        let da = (step_x(&s[a], c.xaxis, t0) - x).abs();
        let db = (step_x(&s[b], c.xaxis, t0) - x).abs();
        da.partial_cmp(&db).unwrap_or(std::cmp::Ordering::Equal)
    })
}

/// A step series' value for the legend: at the cursor (exact, the nearest step), else the last
/// finite one. Returns (value, its x).
fn step_value(run: &RunEntry, c: Ctx, y: impl Fn(usize) -> f64) -> (Option<f64>, Option<f64>) {
    let s = &run.series.steps;
    let t0 = t0(run);
    let i = match c.cursor {
        Some(x) => nearest_step(run, c, x),
        None => (0..s.len()).rev().find(|&i| y(i).is_finite()),
    };
    match i {
        Some(i) if y(i).is_finite() => (Some(y(i)), Some(step_x(&s[i], c.xaxis, t0))),
        _ => (None, None),
    }
}

/// Raw (dim) and smoothed (bright) lines of a step metric.
#[allow(clippy::too_many_arguments)]
fn step_plots(
    app: &mut App,
    run: &RunEntry,
    metric: Metric,
    color: Color,
    c: Ctx,
    buckets: usize,
    tf: &dyn Fn(f64) -> f64,
    label: &str,
    plots: &mut Vec<Plot>,
) {
    let s = &run.series.steps;
    let n = s.len();
    let id = &run.summary.id;
    let raw = raw_points(app, run, metric, c, buckets, tf);
    if c.weight <= 0.0 {
        let (value, at) = step_value(run, c, |i| s[i].get(metric));
        plots.push(Plot {
            name: Some(label.to_string()),
            points: raw,
            style: Style::default().fg(color),
            graph: GraphType::Line,
            value,
            at,
        });
        return;
    }
    plots.push(Plot {
        name: None,
        points: raw,
        style: Style::default().fg(Color::DarkGray),
        graph: GraphType::Line,
        value: None,
        at: None,
    });
    let ema = app.ema.entry((id.clone(), metric)).or_default();
    ema.update(
        c.weight,
        run.series.generation,
        s.iter().map(|p| p.get(metric)),
    );
    let v = &ema.values;
    let n = n.min(v.len());
    let (value, at) = step_value(run, c, |i| if i < n { v[i] as f64 } else { f64::NAN });
    let ix = app.minmax.entry((id.clone(), metric, true)).or_default();
    // The EMA restarts with its weight: give the index a generation that changes with both.
    let generation = run.series.generation ^ (c.weight.to_bits().rotate_left(17));
    ix.update(generation, n, |i| v[i] as f64);
    let t0 = t0(run);
    let smooth = decimate_indexed(
        n,
        |i| step_x(&s[i], c.xaxis, t0),
        |i| tf(v[i] as f64),
        c.x0,
        c.x1,
        buckets,
        Some(ix),
    );
    plots.push(Plot {
        name: Some(if c.compare {
            label.to_string()
        } else {
            format!("{label} (EMA)")
        }),
        points: smooth,
        style: Style::default().fg(color).add_modifier(Modifier::BOLD),
        graph: GraphType::Line,
        value,
        at,
    });
}

/// A step metric, unsmoothed, decimated through its block index.
fn raw_points(
    app: &mut App,
    run: &RunEntry,
    metric: Metric,
    c: Ctx,
    buckets: usize,
    tf: &dyn Fn(f64) -> f64,
) -> Vec<(f64, f64)> {
    let s = &run.series.steps;
    let ix = app
        .minmax
        .entry((run.summary.id.clone(), metric, false))
        .or_default();
    ix.update(run.series.generation, s.len(), |i| s[i].get(metric));
    let t0 = t0(run);
    decimate_indexed(
        s.len(),
        |i| step_x(&s[i], c.xaxis, t0),
        |i| tf(s[i].get(metric)),
        c.x0,
        c.x1,
        buckets,
        Some(ix),
    )
}

#[allow(clippy::too_many_arguments)]
fn eval_plot(
    run: &RunEntry,
    value: impl Fn(&Eval) -> f64,
    name: Option<String>,
    style: Style,
    c: Ctx,
    buckets: usize,
    tf: &dyn Fn(f64) -> f64,
    plots: &mut Vec<Plot>,
) {
    let e = &run.series.evals;
    if e.iter().all(|(_, v)| !value(v).is_finite()) {
        return;
    }
    let t0 = t0(run);
    let xs = |i: usize| eval_xv(run, e[i].0, &e[i].1, c.xaxis, t0);
    let points = decimate(e.len(), xs, |i| tf(value(&e[i].1)), c.x0, c.x1, buckets);
    let graph = if points.len() == 1 {
        GraphType::Scatter
    } else {
        GraphType::Line
    };
    let pick = match c.cursor {
        Some(x) => (0..e.len())
            .filter(|&i| value(&e[i].1).is_finite())
            .min_by(|&a, &b| {
                (xs(a) - x)
                    .abs()
                    .partial_cmp(&(xs(b) - x).abs())
                    .unwrap_or(std::cmp::Ordering::Equal)
            }),
        None => (0..e.len()).rev().find(|&i| value(&e[i].1).is_finite()),
    };
    plots.push(Plot {
        name,
        points,
        style,
        graph,
        value: pick.map(|i| value(&e[i].1)),
        at: pick.map(xs),
    });
}

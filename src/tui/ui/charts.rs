//! The run view: loss, accuracy, learning rate and throughput charts of one run, or of the marked
//! runs overlaid; raw lines dim under EMA-smoothed bright ones, log scale, time-window zoom, and
//! min/max decimation to the chart's width.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Chart, Dataset, GraphType, LineGauge, Paragraph};

use super::super::app::App;
use super::super::format::{self, AxisStyle};
use super::super::series::{Metric, decimate, decimate_indexed, eval_x};
use super::super::store::{RunEntry, Store};
use super::{RUN_COLORS, panel, placeholder, status_label, status_style};

/// One line on a chart.
struct Plot {
    name: Option<String>,
    points: Vec<(f64, f64)>,
    style: Style,
    graph: GraphType,
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
    let [head, settings, grid] = Layout::vertical([
        Constraint::Length(if compare { runs.len().min(4) as u16 } else { 1 }),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    render_header(app, &runs, compare, f, head);

    let (lo, hi) = runs
        .iter()
        .filter_map(|r| r.series.x_range())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (l, h)| {
            (a.min(l), b.max(h))
        });
    let full = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let (x0, x1) = app.chart.window(full.0, full.1.max(full.0 + 1e-9));
    let weight = app.chart.weight();
    let window = if app.chart.zoom == 0 {
        "whole run".to_string()
    } else {
        format!(
            "epochs {}–{} (1/{})",
            format::sig(x0.max(0.0), 3),
            format::sig(x1, 3),
            1u32 << app.chart.zoom.min(16)
        )
    };
    let set = Line::from(vec![Span::styled(
        format!(
            " x: epoch · window {window} · smoothing {} · log {} ",
            if weight == 0.0 {
                "off".to_string()
            } else {
                format!("EMA {weight}")
            },
            if app.chart.log { "on" } else { "off" }
        ),
        Style::default().fg(Color::DarkGray),
    )]);
    f.render_widget(Paragraph::new(set), settings);

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

fn render_header(app: &App, runs: &[&RunEntry], compare: bool, f: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    if compare {
        let lines: Vec<Line> = runs
            .iter()
            .enumerate()
            .take(area.height as usize)
            .map(|(i, r)| {
                let s = &r.summary;
                Line::from(vec![
                    Span::styled(
                        format!(" ━━ {} ", s.id),
                        Style::default().fg(RUN_COLORS[i % RUN_COLORS.len()]),
                    ),
                    Span::styled(status_label(s.status), status_style(s.status)),
                    Span::raw(format!(
                        "  {} {}  best top-1 {}",
                        super::kind_label(&s.kind),
                        s.variant,
                        s.best_top1.map_or("–".into(), |b| format!("{b:.2}"))
                    )),
                ])
            })
            .collect();
        f.render_widget(Paragraph::new(lines), area);
        return;
    }
    let r = runs[0];
    let s = &r.summary;
    let left = format!(
        " {} · {} {} · ",
        s.id,
        super::kind_label(&s.kind),
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
        (Some(e), Some(n)) => format!(" epoch {}/{n}", (e + 1).min(n)),
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
        let id = &run.summary.id;
        match which {
            Panel::Loss => {
                step_plots(
                    app,
                    run,
                    Metric::Loss,
                    color,
                    c,
                    buckets,
                    &tf,
                    "train",
                    &mut plots,
                );
                let name = if c.compare {
                    None
                } else {
                    Some("val".to_string())
                };
                let style = if c.compare {
                    Style::default().fg(color).add_modifier(Modifier::BOLD)
                } else {
                    Style::default().fg(Color::Cyan)
                };
                eval_plot(run, |e| e.loss, name, style, c, buckets, &tf, &mut plots);
            }
            Panel::Accuracy => {
                if c.compare {
                    eval_plot(
                        run,
                        |e| e.top1,
                        Some(short_id(id)),
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
                plots.push(Plot {
                    name: c.compare.then(|| short_id(id)),
                    points,
                    style: Style::default().fg(color),
                    graph: GraphType::Line,
                });
            }
            Panel::Throughput => {
                step_plots(
                    app,
                    run,
                    Metric::ImagesPerS,
                    color,
                    c,
                    buckets,
                    &tf,
                    "train",
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
    if y0 > y1 {
        f.render_widget(block, area);
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
    let y_style = if log {
        AxisStyle::Log10
    } else if which == Panel::Throughput {
        AxisStyle::Si
    } else {
        AxisStyle::Plain
    };
    let label_style = Style::default().fg(Color::DarkGray);
    let n_y = if inner.height >= 8 { 3 } else { 2 };
    let x_labels: Vec<Span> = format::axis_labels(c.x0, c.x1, 3, AxisStyle::Plain)
        .into_iter()
        .map(|l| Span::styled(l, label_style))
        .collect();
    let y_labels: Vec<Span> = format::axis_labels(y0, y1, n_y, y_style)
        .into_iter()
        .map(|l| Span::styled(l, label_style))
        .collect();
    let datasets: Vec<Dataset> = plots
        .iter()
        .map(|p| {
            let mut d = Dataset::default()
                .data(&p.points)
                .marker(Marker::Braille)
                .graph_type(p.graph)
                .style(p.style);
            if let Some(n) = &p.name {
                d = d.name(n.clone());
            }
            d
        })
        .collect();
    let chart = Chart::new(datasets).block(block);
    let chart = super::axes_chart(chart, ([c.x0, c.x1], x_labels), ([y0, y1], y_labels), 60);
    f.render_widget(chart, area);
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
    let name = if c.compare {
        short_id(id)
    } else {
        label.to_string()
    };
    let raw = raw_points(app, run, metric, c, buckets, tf);
    if c.weight <= 0.0 {
        plots.push(Plot {
            name: Some(name),
            points: raw,
            style: Style::default().fg(color),
            graph: GraphType::Line,
        });
        return;
    }
    plots.push(Plot {
        name: None,
        points: raw,
        style: Style::default().fg(Color::DarkGray),
        graph: GraphType::Line,
    });
    let ema = app.ema.entry((id.clone(), metric)).or_default();
    ema.update(
        c.weight,
        run.series.generation,
        s.iter().map(|p| p.get(metric)),
    );
    let v = &ema.values;
    let n = n.min(v.len());
    let ix = app.minmax.entry((id.clone(), metric, true)).or_default();
    // The EMA restarts with its weight: give the index a generation that changes with both.
    let generation = run.series.generation ^ (c.weight.to_bits().rotate_left(17));
    ix.update(generation, n, |i| v[i] as f64);
    let smooth = decimate_indexed(
        n,
        |i| s[i].x,
        |i| tf(v[i] as f64),
        c.x0,
        c.x1,
        buckets,
        Some(ix),
    );
    plots.push(Plot {
        name: Some(if c.compare {
            name
        } else {
            format!("{label} (EMA)")
        }),
        points: smooth,
        style: Style::default().fg(color).add_modifier(Modifier::BOLD),
        graph: GraphType::Line,
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
    decimate_indexed(
        s.len(),
        |i| s[i].x,
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
    value: impl Fn(&crate::rundir::events::Eval) -> f64,
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
    let points = decimate(
        e.len(),
        |i| eval_x(&e[i].1),
        |i| tf(value(&e[i].1)),
        c.x0,
        c.x1,
        buckets,
    );
    let graph = if points.len() == 1 {
        GraphType::Scatter
    } else {
        GraphType::Line
    };
    plots.push(Plot {
        name,
        points,
        style,
        graph,
    });
}

/// A run id without its timestamp when that is enough to tell runs apart in a legend.
fn short_id(id: &str) -> String {
    if id.chars().count() <= 24 {
        id.to_string()
    } else {
        let tail: String = id
            .chars()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let head: String = id.chars().take(8).collect();
        format!("{head}…{tail}")
    }
}

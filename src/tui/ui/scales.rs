//! Scale histograms of HS runs (and of scales profiles): the per-block means of s, t, u (the
//! paper's Fig. 7 view), the selected layer over the epochs, a layer table, and the histograms
//! of the selected layer at the chosen epoch.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Chart, Dataset, GraphType, Paragraph, Row, Sparkline, Table, TableState};

use crate::model::kernel_stats::{CentreSurround, KernelStatsReport};
use crate::rundir::events::{LayerScales, RunKindTag, ScaleStats, ScalesEvent};
use crate::rundir::network_means;

use super::super::app::{App, ScalesSource};
use super::super::format::{self, AxisStyle};
use super::super::store::{RunEntry, Store};
use super::{RUN_COLORS, panel, placeholder};

const S_COLOR: Color = Color::Yellow;
const T_COLOR: Color = Color::Cyan;
const U_COLOR: Color = Color::Magenta;

pub fn render(app: &mut App, store: &Store, f: &mut Frame, area: Rect) {
    // Two or more marked Hyper-Search runs: their scales side by side over the epochs (Fig. 6).
    if app.scales.source == ScalesSource::SelectedRun {
        let searched: Vec<(usize, &RunEntry)> = app
            .marked
            .iter()
            .enumerate()
            .filter_map(|(i, id)| store.run(id).map(|r| (i, r)))
            .filter(|(_, r)| !r.series.scales.is_empty())
            .collect();
        if searched.len() >= 2 {
            render_overlay(&searched, f, area);
            return;
        }
    }
    // The epochs to show and a title.
    let (title, epochs): (String, Vec<&ScalesEvent>) = match &app.scales.source {
        ScalesSource::Profile {
            name,
            loaded,
            variant,
            source,
        } => match loaded {
            Ok(e) => (
                format!(" Scales profile {name} · {variant} · from {source} "),
                vec![e],
            ),
            Err(err) => {
                let block = panel(format!(" Scales profile {name} "));
                let inner = block.inner(area);
                f.render_widget(block, area);
                placeholder(f, inner, &format!("cannot read it: {err}"));
                return;
            }
        },
        ScalesSource::SelectedRun => {
            let run = app.selected.as_ref().and_then(|id| store.run(id));
            match run {
                Some(r) if !r.series.scales.is_empty() => (
                    format!(
                        " Scales of {} · {} {} ",
                        r.summary.id,
                        super::kind_label(r.summary.kind.as_ref()),
                        r.summary.variant
                    ),
                    r.series.scales.iter().collect(),
                ),
                Some(r) => {
                    if let Some(stats) = &r.kernel_stats {
                        render_kernel_stats(&r.summary.id, stats, f, area);
                        return;
                    }
                    let block = panel(format!(" Scales of {} ", r.summary.id));
                    let inner = block.inner(area);
                    f.render_widget(block, area);
                    let why = if matches!(r.summary.kind, None | Some(RunKindTag::HyperSearch)) {
                        "No scales yet: a Hyper-Search run writes them after each epoch."
                    } else {
                        "Not a Hyper-Search run: it has no trainable scales."
                    };
                    placeholder(
                        f,
                        inner,
                        &format!("{why} Press p to show a scales profile from profiles/scales."),
                    );
                    return;
                }
                None => {
                    let block = panel(" Scales ");
                    let inner = block.inner(area);
                    f.render_widget(block, area);
                    placeholder(
                        f,
                        inner,
                        "No run selected. Select an HS run (1), or press p for a scales profile.",
                    );
                    return;
                }
            }
        }
    };
    let n_epochs = epochs.len();
    let ei = app.scales.epoch.unwrap_or(n_epochs - 1).min(n_epochs - 1);
    let current = epochs[ei];
    if current.layers.is_empty() {
        placeholder(f, area, "this scales event has no layers");
        return;
    }
    let layer_i = app.scales.layer.min(current.layers.len() - 1);
    app.scales.layer = layer_i;
    let layer = &current.layers[layer_i];

    let is_profile = matches!(app.scales.source, ScalesSource::Profile { .. });
    let epoch_text = if is_profile {
        String::new()
    } else {
        format!(
            "epoch {} ({} of {}{}) · ",
            current.epoch + 1,
            ei + 1,
            n_epochs,
            if app.scales.epoch.is_none() {
                ", newest"
            } else {
                ""
            }
        )
    };
    let [head, top, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(45),
        Constraint::Min(0),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(title, Style::default().add_modifier(Modifier::BOLD)),
            Span::styled(
                format!("{epoch_text}{} layers", current.layers.len()),
                Style::default().fg(Color::DarkGray),
            ),
        ])),
        head,
    );
    let [overview, history] = if is_profile {
        [top, Rect::default()]
    } else {
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(top)
    };
    render_overview(current, layer_i, f, overview);
    if !is_profile {
        render_history(&epochs, &layer.name, ei, f, history);
    }
    let [table, hists] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);
    render_table(current, layer_i, f, table);
    render_histograms(layer, f, hists);
}

fn mean_points(
    layers: &[LayerScales],
    pick: impl Fn(&LayerScales) -> Option<f64>,
) -> Vec<(f64, f64)> {
    layers
        .iter()
        .enumerate()
        .filter_map(|(i, l)| pick(l).map(|v| (i as f64, v)))
        .collect()
}

/// Per-block means of s, t, u across the network (Fig. 7 of the paper), selected layer marked.
fn render_overview(e: &ScalesEvent, sel: usize, f: &mut Frame, area: Rect) {
    let block = panel(" Block means ");
    if area.width < 12 || area.height < 5 {
        f.render_widget(block, area);
        return;
    }
    let s = mean_points(&e.layers, |l| Some(l.s.mean));
    let t = mean_points(&e.layers, |l| Some(l.t.mean));
    let u = mean_points(&e.layers, |l| l.u.as_ref().map(|u| u.mean));
    let all = s.iter().chain(&t).chain(&u).map(|p| p.1);
    let (mut y0, mut y1) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    pad(&mut y0, &mut y1);
    let marker = [(sel as f64, y0), (sel as f64, y1)];
    let n = e.layers.len();
    let x1 = (n.max(2) - 1) as f64;
    let label_style = Style::default().fg(Color::DarkGray);
    let x_labels = vec![
        Span::styled(e.layers[0].name.clone(), label_style),
        Span::styled(e.layers[n - 1].name.clone(), label_style),
    ];
    let y_labels: Vec<Span> = format::axis_labels(y0, y1, 3, AxisStyle::Plain)
        .into_iter()
        .map(|l| Span::styled(l, label_style))
        .collect();
    let mut datasets = vec![
        Dataset::default()
            .data(&marker)
            .graph_type(GraphType::Line)
            .marker(Marker::Braille)
            .style(Style::default().fg(Color::DarkGray)),
        Dataset::default()
            .name("s (3x3)")
            .data(&s)
            .graph_type(GraphType::Line)
            .marker(Marker::Braille)
            .style(Style::default().fg(S_COLOR)),
        Dataset::default()
            .name("t (1x1)")
            .data(&t)
            .graph_type(GraphType::Line)
            .marker(Marker::Braille)
            .style(Style::default().fg(T_COLOR)),
    ];
    if !u.is_empty() {
        datasets.push(
            Dataset::default()
                .name("u (id)")
                .data(&u)
                .graph_type(GraphType::Scatter)
                .marker(Marker::Dot)
                .style(Style::default().fg(U_COLOR)),
        );
    }
    let chart = Chart::new(datasets).block(block);
    let chart = super::axes_chart(chart, ([0.0, x1], x_labels), ([y0, y1], y_labels), Some(50));
    f.render_widget(chart, area);
}

/// How the selected layer's means moved over the search.
fn render_history(
    epochs: &[&ScalesEvent],
    name: &str,
    sel_epoch: usize,
    f: &mut Frame,
    area: Rect,
) {
    let block = panel(format!(" {name} over epochs "));
    if area.width < 12 || area.height < 5 {
        f.render_widget(block, area);
        return;
    }
    let find = |e: &ScalesEvent| e.layers.iter().find(|l| l.name == name).cloned();
    let pts = |pick: &dyn Fn(&LayerScales) -> Option<f64>| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .filter_map(|e| {
                find(e)
                    .and_then(|l| pick(&l))
                    .map(|v| (e.epoch as f64 + 1.0, v))
            })
            .collect()
    };
    let s = pts(&|l| Some(l.s.mean));
    let t = pts(&|l| Some(l.t.mean));
    let u = pts(&|l| l.u.as_ref().map(|u| u.mean));
    let (mut y0, mut y1) = s
        .iter()
        .chain(&t)
        .chain(&u)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    pad(&mut y0, &mut y1);
    let x0 = epochs.first().map_or(1.0, |e| e.epoch as f64 + 1.0);
    let mut x1 = epochs.last().map_or(1.0, |e| e.epoch as f64 + 1.0);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let sel_x = epochs[sel_epoch].epoch as f64 + 1.0;
    let marker = [(sel_x, y0), (sel_x, y1)];
    let graph = if s.len() <= 1 {
        GraphType::Scatter
    } else {
        GraphType::Line
    };
    let label_style = Style::default().fg(Color::DarkGray);
    let mut datasets = vec![
        Dataset::default()
            .data(&marker)
            .graph_type(GraphType::Line)
            .marker(Marker::Braille)
            .style(Style::default().fg(Color::DarkGray)),
        Dataset::default()
            .name("s")
            .data(&s)
            .graph_type(graph)
            .marker(Marker::Braille)
            .style(Style::default().fg(S_COLOR)),
        Dataset::default()
            .name("t")
            .data(&t)
            .graph_type(graph)
            .marker(Marker::Braille)
            .style(Style::default().fg(T_COLOR)),
    ];
    if !u.is_empty() {
        datasets.push(
            Dataset::default()
                .name("u")
                .data(&u)
                .graph_type(graph)
                .marker(Marker::Braille)
                .style(Style::default().fg(U_COLOR)),
        );
    }
    let (x_labels, y_labels) = epoch_axis_labels([x0, x1], [y0, y1], label_style);
    let chart = Chart::new(datasets).block(block);
    let chart = super::axes_chart(chart, ([x0, x1], x_labels), ([y0, y1], y_labels), Some(40));
    f.render_widget(chart, area);
}

fn pad(y0: &mut f64, y1: &mut f64) {
    if *y0 > *y1 {
        *y0 = 0.0;
        *y1 = 1.0;
    } else if *y1 - *y0 < 1e-9 {
        *y0 -= 0.5;
        *y1 += 0.5;
    } else {
        let p = (*y1 - *y0) * 0.08;
        *y0 -= p;
        *y1 += p;
    }
}

fn render_table(e: &ScalesEvent, sel: usize, f: &mut Frame, area: Rect) {
    let block = panel(" Layers (mean ± std) ");
    let inner = block.inner(area);
    let block = if inner.width >= 9 + 3 * 13 + 5 {
        block
    } else {
        panel(" Layers (means) ")
    };
    f.render_widget(block, area);
    // mean±std where there is room, else the means alone.
    let roomy = inner.width >= 9 + 3 * 13 + 5;
    let col = if roomy { 12 } else { 6 };
    let ms = |s: &ScaleStats| {
        if roomy {
            format!("{}±{}", format::num(s.mean), format::sig(s.std, 2))
        } else {
            format::num(s.mean)
        }
    };
    let rows: Vec<Row> = e
        .layers
        .iter()
        .map(|l| {
            let neg = l.s.negative + l.t.negative + l.u.as_ref().map_or(0, |u| u.negative);
            Row::new(vec![
                Span::raw(l.name.clone()),
                Span::styled(ms(&l.s), Style::default().fg(S_COLOR)),
                Span::styled(ms(&l.t), Style::default().fg(T_COLOR)),
                Span::styled(
                    l.u.as_ref().map_or("–".into(), ms),
                    Style::default().fg(U_COLOR),
                ),
                Span::styled(
                    if neg > 0 {
                        neg.to_string()
                    } else {
                        String::new()
                    },
                    Style::default().fg(Color::Red),
                ),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(9),
        Constraint::Length(col),
        Constraint::Length(col),
        Constraint::Length(col),
        Constraint::Length(4),
    ];
    let mut state = TableState::default().with_selected(Some(sel));
    let body_h = inner.height.saturating_sub(1) as usize;
    if body_h > 0 && sel >= body_h {
        *state.offset_mut() = sel + 1 - body_h;
    }
    let table = Table::new(rows, widths)
        .header(
            Row::new(vec!["layer", "s", "t", "u", "neg"]).style(
                Style::default()
                    .fg(Color::Gray)
                    .add_modifier(Modifier::BOLD),
            ),
        )
        .highlight_symbol("▶ ")
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    f.render_stateful_widget(table, inner, &mut state);
}

fn render_histograms(l: &LayerScales, f: &mut Frame, area: Rect) {
    let block = panel(format!(" {} histograms ", l.name));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let parts = Layout::vertical([
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
    ])
    .split(inner);
    histogram(f, parts[0], "s", Some(&l.s), S_COLOR);
    histogram(f, parts[1], "t", Some(&l.t), T_COLOR);
    histogram(f, parts[2], "u", l.u.as_ref(), U_COLOR);
}

fn histogram(f: &mut Frame, area: Rect, name: &str, stats: Option<&ScaleStats>, color: Color) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let Some(s) = stats else {
        f.render_widget(
            Paragraph::new(Span::styled(
                format!("{name}: no identity branch in this block"),
                Style::default().fg(Color::DarkGray),
            )),
            area,
        );
        return;
    };
    let head = Line::from(vec![
        Span::styled(
            format!("{name} "),
            Style::default().fg(color).add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "mean {} std {} [{} … {}]{}",
            format::num(s.mean),
            format::num(s.std),
            format::num(s.min),
            format::num(s.max),
            if s.negative > 0 {
                format!(" {} negative", s.negative)
            } else {
                String::new()
            }
        )),
    ]);
    let [h, bars, axis] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(u16::from(area.height >= 3)),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(head), h);
    if bars.height > 0 && !s.hist.counts.is_empty() {
        let w = bars.width as usize;
        let bins = s.hist.counts.len();
        let data: Vec<u64> = (0..w)
            .map(|c| s.hist.counts[c * bins / w.max(1)] as u64)
            .collect();
        f.render_widget(
            Sparkline::default()
                .data(&data)
                .style(Style::default().fg(color)),
            bars,
        );
    }
    if axis.height > 0 {
        let lo = format::num(s.hist.lo);
        let hi = format::num(s.hist.hi);
        let gap = (axis.width as usize).saturating_sub(lo.len() + hi.len());
        f.render_widget(
            Paragraph::new(Span::styled(
                format!("{lo}{}{hi}", " ".repeat(gap)),
                Style::default().fg(Color::DarkGray),
            )),
            axis,
        );
    }
}

/// A finished run without scales (target, RepVGG, plain SGD): its final weights' kernel
/// statistics (`kernel_stats.json`, the paper's Table 11) — per layer the standard deviation of
/// the 3x3 kernels' centre taps (c) and eight surrounding taps (s), as trained, with BN folded in
/// and merged into the inference kernel.
fn render_kernel_stats(id: &str, k: &KernelStatsReport, f: &mut Frame, area: Rect) {
    let block = panel(format!(
        " Kernel statistics of {id} · {} {} · std of centre (c) and surrounding (s) taps ",
        crate::model::ModelKind::parse(&k.kind).map_or(k.kind.as_str(), |m| m.label()),
        k.variant
    ));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let cells = |c: Option<&CentreSurround>| -> [String; 3] {
        match c {
            None => ["–".into(), "–".into(), "–".into()],
            Some(c) => [
                format::num(c.centre_std),
                format::num(c.surround_std),
                format!("{:.2}", c.ratio()),
            ],
        }
    };
    let form_style = [S_COLOR, T_COLOR, U_COLOR];
    let rows: Vec<Row> = k
        .layers
        .iter()
        .map(|l| {
            let mut row = vec![Span::raw(l.layer.clone())];
            for (i, form) in [l.train.as_ref(), l.bn_fused.as_ref(), Some(&l.merged)]
                .into_iter()
                .enumerate()
            {
                let [c, s, r] = cells(form);
                row.push(Span::raw(c));
                row.push(Span::raw(s));
                row.push(Span::styled(r, Style::default().fg(form_style[i])));
            }
            Row::new(row)
        })
        .collect();
    let mut widths = vec![Constraint::Length(9)];
    widths.extend(
        [
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(6),
        ]
        .repeat(3),
    );
    let header = Row::new(vec![
        "layer",
        "trained c",
        "s",
        "c/s",
        "fused c",
        "s",
        "c/s",
        "merged c",
        "s",
        "c/s",
    ])
    .style(
        Style::default()
            .fg(Color::Gray)
            .add_modifier(Modifier::BOLD),
    );
    f.render_widget(Table::new(rows, widths).header(header), inner);
}

/// Marked Hyper-Search runs overlaid (the paper's Fig. 6): per epoch the network's mean s, t
/// and u (`network_means`), one chart per scale, one line per run in its marking colour.
fn render_overlay(runs: &[(usize, &RunEntry)], f: &mut Frame, area: Rect) {
    let [head, charts] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let names: Vec<Span> = runs
        .iter()
        .flat_map(|(i, r)| {
            [
                Span::styled(
                    format!("{} {}", i + 1, r.summary.id),
                    Style::default().fg(RUN_COLORS[i % RUN_COLORS.len()]),
                ),
                Span::raw("  "),
            ]
        })
        .collect();
    let mut line = vec![Span::styled(
        format!(
            " Scales of {} Hyper-Search runs · network mean per epoch · ",
            runs.len()
        ),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    line.extend(names);
    f.render_widget(Paragraph::new(Line::from(line)), head);
    let parts = Layout::horizontal([
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
    ])
    .split(charts);
    for (k, (label, area)) in [
        ("s (3x3)", parts[0]),
        ("t (1x1)", parts[1]),
        ("u (identity)", parts[2]),
    ]
    .into_iter()
    .enumerate()
    {
        let series: Vec<(usize, Vec<(f64, f64)>)> = runs
            .iter()
            .map(|(i, r)| {
                let pts = r
                    .series
                    .scales
                    .iter()
                    .filter_map(|e| network_means(e)[k].map(|v| (e.epoch as f64 + 1.0, v)))
                    .collect();
                (*i, pts)
            })
            .collect();
        overlay_chart(label, &series, f, area);
    }
}

fn overlay_chart(label: &str, series: &[(usize, Vec<(f64, f64)>)], f: &mut Frame, area: Rect) {
    let block = panel(format!(" mean {label} "));
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    if area.width < 12 || area.height < 5 || all().next().is_none() {
        let inner = block.inner(area);
        f.render_widget(block, area);
        if all().next().is_none() {
            placeholder(f, inner, "no such branch in these runs");
        }
        return;
    }
    let (mut y0, mut y1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    pad(&mut y0, &mut y1);
    let (x0, mut x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let datasets: Vec<Dataset> = series
        .iter()
        .map(|(i, pts)| {
            Dataset::default()
                .data(pts)
                .graph_type(if pts.len() <= 1 {
                    GraphType::Scatter
                } else {
                    GraphType::Line
                })
                .marker(Marker::Braille)
                .style(Style::default().fg(RUN_COLORS[i % RUN_COLORS.len()]))
        })
        .collect();
    let label_style = Style::default().fg(Color::DarkGray);
    let (x_labels, y_labels) = epoch_axis_labels([x0, x1], [y0, y1], label_style);
    let chart = Chart::new(datasets).block(block);
    let chart = super::axes_chart(chart, ([x0, x1], x_labels), ([y0, y1], y_labels), None);
    f.render_widget(chart, area);
}

/// Axis labels of the scales charts: epochs (`ep 3`) along x, plain values along y.
fn epoch_axis_labels(
    [x0, x1]: [f64; 2],
    [y0, y1]: [f64; 2],
    style: Style,
) -> (Vec<Span<'static>>, Vec<Span<'static>>) {
    let x = format::axis_labels(x0, x1, 2, AxisStyle::Plain)
        .into_iter()
        .map(|l| Span::styled(format!("ep {l}"), style))
        .collect();
    let y = format::axis_labels(y0, y1, 3, AxisStyle::Plain)
        .into_iter()
        .map(|l| Span::styled(l, style))
        .collect();
    (x, y)
}

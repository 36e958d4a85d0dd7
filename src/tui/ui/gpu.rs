//! The GPU panel: per device name, memory, utilization, temperature, power and a short history;
//! memory per run where NVML gives per-process figures. Without NVML it says why, and lists the
//! GPU samples runs wrote themselves.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph, Row, Sparkline, Table, Wrap};

use crate::gpu::GpuStatus;

use super::super::app::App;
use super::super::format;
use super::super::store::Store;
use super::panel;

pub fn render(app: &mut App, store: &Store, f: &mut Frame, area: Rect) {
    match &store.gpu_status {
        GpuStatus::Unavailable(reason) => {
            let [why, runs] =
                Layout::vertical([Constraint::Length(7), Constraint::Min(0)]).areas(area);
            let block = panel(" GPU ");
            let inner = block.inner(why);
            f.render_widget(block, why);
            let text = vec![
                Line::from(Span::styled(
                    format!("No GPU: {}", reason.headline()),
                    Style::default()
                        .fg(Color::Yellow)
                        .add_modifier(Modifier::BOLD),
                )),
                Line::from(reason.hint()),
                Line::from(Span::styled(
                    "Everything else works without one: runs on the CPU, and runs on other machines' GPUs report their own samples below.",
                    Style::default().fg(Color::DarkGray),
                )),
            ];
            f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), inner);
            render_run_samples(store, f, runs);
        }
        GpuStatus::Available {
            driver_version,
            library,
            ..
        } => {
            let n = store.gpus.len();
            let per = 4u16;
            let want = (n as u16 * per).saturating_add(2);
            let [devs, procs] = Layout::vertical([
                Constraint::Length(want.min(area.height.saturating_sub(4).max(3))),
                Constraint::Min(0),
            ])
            .areas(area);
            let title = format!(
                " GPUs · driver {} · {library} ",
                driver_version.as_deref().unwrap_or("?")
            );
            let block = panel(title);
            let inner = block.inner(devs);
            f.render_widget(block, devs);
            let sel = app.gpu_sel.min(n.saturating_sub(1));
            // Scroll so the selected device is visible.
            let fit = (inner.height / per).max(1) as usize;
            let first = sel.saturating_sub(fit - 1);
            for (slot, i) in (first..n).take(fit).enumerate() {
                let r = Rect::new(inner.x, inner.y + slot as u16 * per, inner.width, per)
                    .intersection(inner);
                render_device(store, i, i == sel, f, r);
            }
            render_processes(store, f, procs);
        }
    }
}

fn render_device(store: &Store, i: usize, selected: bool, f: &mut Frame, area: Rect) {
    let d = &store.gpus[i];
    let mut spans = vec![Span::styled(
        format!(
            "{}{} {} ",
            if selected { "▶" } else { " " },
            d.index,
            d.name
        ),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    let mut facts = Vec::new();
    if let Some(u) = d.utilization {
        facts.push(format!("util {u}%"));
    }
    if let Some(t) = d.temperature_c {
        facts.push(format!("{t}°C"));
    }
    match (d.power_w, d.power_limit_w) {
        (Some(p), Some(l)) => facts.push(format!("{p:.0}/{l:.0} W")),
        (Some(p), None) => facts.push(format!("{p:.0} W")),
        _ => {}
    }
    spans.push(Span::styled(
        facts.join(" · "),
        Style::default().fg(Color::Gray),
    ));
    let [head, mem, hist] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(Line::from(spans)), head);
    let ratio = if d.memory_total_bytes > 0 {
        (d.memory_used_bytes as f64 / d.memory_total_bytes as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    f.render_widget(
        LineGauge::default()
            .ratio(ratio)
            .label(format!(
                "  mem {} / {} ",
                format::bytes(d.memory_used_bytes),
                format::bytes(d.memory_total_bytes)
            ))
            .filled_style(Style::default().fg(if ratio > 0.9 {
                Color::Red
            } else {
                Color::Green
            }))
            .unfilled_style(Style::default().fg(Color::DarkGray)),
        mem,
    );
    if hist.height > 0 {
        let [label, spark] =
            Layout::horizontal([Constraint::Length(9), Constraint::Min(0)]).areas(hist);
        f.render_widget(
            Paragraph::new(Span::styled(
                "  util ⟶",
                Style::default().fg(Color::DarkGray),
            )),
            label,
        );
        if let Some(h) = store.gpu_history.get(i) {
            let w = spark.width as usize;
            let data: Vec<Option<u64>> = h
                .iter()
                .skip(h.len().saturating_sub(w))
                .map(|p| p.utilization.map(u64::from))
                .collect();
            f.render_widget(
                Sparkline::default()
                    .data(&data)
                    .max(100)
                    .style(Style::default().fg(Color::Cyan)),
                spark,
            );
        }
    }
}

fn render_processes(store: &Store, f: &mut Frame, area: Rect) {
    let block = panel(" Processes on GPUs ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut rows = Vec::new();
    for d in &store.gpus {
        for p in &d.processes {
            let run = store
                .run_of_pid(p.pid)
                .map_or("(not a run here)".to_string(), |r| r.summary.id.clone());
            rows.push(Row::new(vec![
                d.index.to_string(),
                p.pid.to_string(),
                p.memory_bytes.map_or("n/a".to_string(), format::bytes),
                run,
            ]));
        }
    }
    if rows.is_empty() {
        super::placeholder(
            f,
            inner,
            "No compute processes reported (or NVML gives no per-process figures here).",
        );
        return;
    }
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec!["gpu", "pid", "memory", "run"]).style(
            Style::default()
                .fg(Color::Gray)
                .add_modifier(Modifier::BOLD),
        ),
    );
    f.render_widget(table, inner);
}

/// The `gpu` events runs wrote: per run and device the newest sample (memory, utilization,
/// temperature, power) and the history of its utilization and memory.
fn render_run_samples(store: &Store, f: &mut Frame, area: Rect) {
    let block = panel(" GPU samples written by runs (newest, and history: util% · memory) ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut rows = Vec::new();
    // Columns before the history, with their widths.
    let fixed: u16 = 16 + 24 + 21 + 5 + 5 + 6 + 8 + 7;
    // Nine columns, eight spaces between them.
    let hist_w = inner.width.saturating_sub(fixed + 8).clamp(0, 61) as usize;
    let run_w = inner
        .width
        .saturating_sub(fixed - 16 + 8 + hist_w as u16)
        .max(16) as usize;
    for r in &store.runs {
        let Some((t, g)) = r.series.gpu.back() else {
            continue;
        };
        for d in &g.devices {
            let of_device = |f: &dyn Fn(&crate::rundir::events::GpuDeviceSample) -> Option<f64>| {
                r.series
                    .gpu
                    .iter()
                    .filter_map(|(_, g)| g.devices.iter().find(|x| x.index == d.index))
                    .filter_map(f)
                    .collect::<Vec<f64>>()
            };
            let util = of_device(&|x| x.utilization.map(f64::from));
            let mem = of_device(&|x| {
                (x.memory_total_bytes > 0)
                    .then(|| x.memory_used_bytes as f64 / x.memory_total_bytes as f64 * 100.0)
            });
            let half = hist_w / 2;
            rows.push(Row::new(vec![
                super::super::runs_table::elide_middle(&r.summary.id, run_w),
                super::super::runs_table::elide_middle(&format!("{} {}", d.index, d.name), 24),
                format!(
                    "{} / {}",
                    format::bytes(d.memory_used_bytes),
                    format::bytes(d.memory_total_bytes)
                ),
                d.utilization.map_or("–".into(), |u| format!("{u}%")),
                d.temperature_c.map_or("–".into(), |c| format!("{c}°C")),
                d.power_w.map_or("–".into(), |w| format!("{w:.0} W")),
                format::utc_datetime(*t)
                    .rsplit(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                format!("{}", r.series.gpu.len()),
                format!("{} {}", bars(&util, half), bars(&mem, half)),
            ]));
        }
    }
    if rows.is_empty() {
        super::placeholder(f, inner, "No run has written GPU samples.");
        return;
    }
    let table = Table::new(
        rows,
        [
            Constraint::Min(16),
            Constraint::Length(24),
            Constraint::Length(21),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(hist_w as u16),
        ],
    )
    .header(
        Row::new(vec![
            "run", "device", "memory", "util", "temp", "power", "UTC", "samples", "history",
        ])
        .style(
            Style::default()
                .fg(Color::Gray)
                .add_modifier(Modifier::BOLD),
        ),
    );
    f.render_widget(table, inner);
}

/// The newest `width` percentages as block characters (▁ 0% … █ 100%).
fn bars(values: &[f64], width: usize) -> String {
    const B: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values[values.len().saturating_sub(width)..]
        .iter()
        .map(|v| B[((v.clamp(0.0, 100.0) / 100.0) * 7.0).round() as usize])
        .collect()
}

//! The max-batch-size panel: run profiles to probe, and the `probe` results of all runs with the
//! RepOpt-VGG / RepVGG ratios.

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Row, Table};

use crate::rundir::events::{ProbeResult, RunKindTag};

use super::super::app::App;
use super::super::format;
use super::super::store::Store;
use super::{panel, placeholder, status_label, status_style};

pub fn render(app: &mut App, store: &Store, f: &mut Frame, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(30), Constraint::Percentage(70)]).areas(area);
    let [list_area, preview_area] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Min(0)]).areas(left);
    let profiles: Vec<_> = store.run_profiles().collect();
    let block = panel(" Profiles (n: new probe) ");
    let inner = block.inner(list_area);
    f.render_widget(block, list_area);
    if profiles.is_empty() {
        placeholder(
            f,
            inner,
            &format!("No run profiles in {}.", store.profiles_dir.display()),
        );
    } else {
        let sel = app.profile_sel.min(profiles.len() - 1);
        let items: Vec<ListItem> = profiles
            .iter()
            .map(|p| ListItem::new(p.name.clone()))
            .collect();
        let mut state = ListState::default().with_selected(Some(sel));
        f.render_stateful_widget(
            List::new(items)
                .highlight_symbol("▶ ")
                .highlight_spacing(ratatui::widgets::HighlightSpacing::Always)
                .highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
            inner,
            &mut state,
        );
        let file = profiles[sel]
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let block = panel(format!(" {file} "));
        let inner = block.inner(preview_area);
        f.render_widget(block, preview_area);
        f.render_widget(
            Paragraph::new(profiles[sel].preview.clone()).style(Style::default().fg(Color::Gray)),
            inner,
        );
    }
    render_results(store, f, right);
}

fn render_results(store: &Store, f: &mut Frame, area: Rect) {
    let block = panel(" Max batch size probes ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut rows: Vec<Row> = Vec::new();
    // Probes in progress (or without results): one line each above the table.
    let mut live: Vec<Line> = Vec::new();
    // (variant, resolution, device) → model → newest result.
    let mut groups: BTreeMap<(String, usize, String), BTreeMap<String, ProbeResult>> =
        BTreeMap::new();
    let dim = Style::default().fg(Color::DarkGray);
    for r in &store.runs {
        let s = &r.summary;
        let is_probe = s.kind == Some(RunKindTag::Probe);
        let probing = is_probe && s.status.is_live();
        if probing || (r.series.probes.is_empty() && is_probe) {
            // A live probe: how far it got (its results so far follow, then its last trial).
            let last = crate::rundir::tail_lines(&s.path.join(crate::rundir::STDOUT_LOG), 2048)
                .ok()
                .and_then(|l| l.into_iter().rev().find(|l| !l.trim().is_empty()))
                .map(|l| l.trim().to_string())
                .unwrap_or_default();
            live.push(Line::from(vec![
                Span::raw(format!("{} ", s.id)),
                Span::styled(status_label(s.status), status_style(s.status)),
                Span::raw(format!(
                    " · {} measured{}",
                    format::plural(r.series.probes.len() as u64, "model"),
                    if last.is_empty() || !probing {
                        String::new()
                    } else {
                        format!(" · {last}")
                    }
                )),
            ]));
        }
        if r.series.probes.is_empty() {
            continue;
        }
        for (_, p) in &r.series.probes {
            groups
                .entry((p.variant.clone(), p.resolution, p.device.clone()))
                .or_default()
                .insert(p.model.clone(), p.clone());
            rows.push(Row::new(vec![
                Span::styled(s.id.clone(), dim),
                Span::raw(model_label(&p.model).to_string()),
                Span::raw(p.variant.clone()),
                Span::raw(p.resolution.to_string()),
                Span::raw(p.device.clone()),
                Span::styled(
                    p.max_batch_text(),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(p.peak_bytes.map_or("–".into(), format::bytes)),
                Span::raw(p.images_per_s_at_32.map_or("–".into(), format::si)),
                Span::raw(p.images_per_s_at_max.map_or("–".into(), format::si)),
            ]));
        }
    }
    let [live_area, inner] = Layout::vertical([
        Constraint::Length((live.len() as u16).min(inner.height / 3)),
        Constraint::Min(0),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(live), live_area);
    if rows.is_empty() {
        placeholder(
            f,
            inner,
            "No probe results yet. Pick a profile on the left and press n: the probe finds the largest batch whose training step fits, for RepOpt-VGG and RepVGG.",
        );
        return;
    }
    let ratio_lines: Vec<Line> = groups
        .iter()
        .filter_map(|((variant, res, device), models)| {
            let a = models.get("target")?;
            let b = models.get("repvgg")?;
            let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
                (Some(x), Some(y)) if y > 0.0 => format!("×{:.2}", x / y),
                _ => "–".into(),
            };
            // A MaxBS at the search's ceiling is a lower bound: so is a ratio over it.
            let mb_ratio = match (a.max_batch, b.max_batch) {
                (Some(x), Some(y)) if y > 0 => {
                    let r = x as f64 / y as f64;
                    match (a.at_ceiling(), b.at_ceiling()) {
                        (false, false) => format!("×{r:.2}"),
                        (true, false) => format!("≥ ×{r:.2}"),
                        (false, true) => format!("≤ ×{r:.2}"),
                        (true, true) => "? (both at the ceiling)".into(),
                    }
                }
                _ => "–".into(),
            };
            Some(Line::from(vec![
                Span::styled(
                    format!(" RepOpt/RepVGG {variant}@{res} {device}: "),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::styled(
                    format!(
                        "MaxBS {}  img/s@32 {}  img/s@max {}",
                        mb_ratio,
                        ratio(a.images_per_s_at_32, b.images_per_s_at_32),
                        ratio(a.images_per_s_at_max, b.images_per_s_at_max),
                    ),
                    Style::default().fg(Color::Green),
                ),
            ]))
        })
        .collect();
    let n_ratio = ratio_lines.len() as u16;
    let [table_area, ratio_area] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(n_ratio.min(inner.height / 2)),
    ])
    .areas(inner);
    let table = Table::new(
        rows,
        [
            Constraint::Min(12),
            Constraint::Length(7),
            Constraint::Length(4),
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new(vec![
            "run",
            "model",
            "var",
            "res",
            "device",
            "MaxBS",
            "peak",
            "img/s@32",
            "img/s@max",
        ])
        .style(
            Style::default()
                .fg(Color::Gray)
                .add_modifier(Modifier::BOLD),
        ),
    );
    f.render_widget(table, table_area);
    f.render_widget(Paragraph::new(ratio_lines), ratio_area);
}

fn model_label(m: &str) -> &str {
    match m {
        "target" => "RepOpt",
        "repvgg" => "RepVGG",
        "hs" => "HS",
        other => other,
    }
}

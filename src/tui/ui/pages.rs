//! The pages over the body: a run's frozen profile, the diff of marked runs' profiles, a run's
//! log. Their text comes from [`super::super::pages`].

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::super::app::App;
use super::super::pages::{self, Page};
use super::super::runs_table::elide_middle;
use super::super::store::Store;
use super::{RUN_COLORS, panel, placeholder};

pub fn render(app: &mut App, store: &Store, f: &mut Frame, area: Rect) {
    let Some(page) = app.page.clone() else {
        return;
    };
    f.render_widget(Clear, area);
    let block = panel(Line::from(Span::styled(
        page.title(),
        Style::default().add_modifier(Modifier::BOLD),
    )))
    .title_bottom(Line::from(" esc/bksp back · ↑↓ PgUp/PgDn g/G scroll ").right_aligned());
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let dir = |id: &str| store.runs_dir.join(id);
    match page {
        Page::Profile { run_id, scroll } => match pages::profile_text(&dir(&run_id)) {
            Ok(text) => {
                let lines: Vec<Line> = text
                    .lines()
                    .enumerate()
                    .map(|(i, l)| {
                        let style = if l.trim_start().starts_with("//") {
                            Style::default().fg(Color::DarkGray)
                        } else {
                            Style::default()
                        };
                        Line::from(vec![
                            Span::styled(
                                format!("{:>4} ", i + 1),
                                Style::default().fg(Color::DarkGray),
                            ),
                            Span::styled(l.to_string(), style),
                        ])
                    })
                    .collect();
                let max = lines.len().saturating_sub(inner.height as usize);
                let scroll = clamp_scroll(app, scroll.min(max));
                f.render_widget(Paragraph::new(lines).scroll((scroll as u16, 0)), inner);
            }
            Err(e) => placeholder(f, inner, &e),
        },
        Page::Diff { run_ids, scroll } => render_diff(app, store, f, inner, &run_ids, scroll),
        Page::Log { run_id, back } => render_log(f, inner, &dir(&run_id), back),
    }
}

/// Writes the clamped scroll back so keys do not run past the end.
fn clamp_scroll(app: &mut App, v: usize) -> usize {
    match app.page.as_mut() {
        Some(Page::Profile { scroll, .. }) | Some(Page::Diff { scroll, .. }) => *scroll = v,
        Some(Page::Log { back, .. }) => *back = v,
        None => {}
    }
    v
}

fn render_diff(
    app: &mut App,
    store: &Store,
    f: &mut Frame,
    area: Rect,
    ids: &[String],
    scroll: usize,
) {
    let texts: Vec<Result<String, String>> = ids
        .iter()
        .map(|id| pages::profile_text(&store.runs_dir.join(id)))
        .collect();
    let rows = pages::diff_profiles(&texts);
    let n = ids.len();
    let differing = rows.iter().filter(|r| r.differs).count();
    let field_w = rows
        .iter()
        .map(|r| r.field.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 28) as u16;
    let rest = area.width.saturating_sub(field_w + 2);
    let col_w = (rest / n.max(1) as u16).max(4);
    let cell = |text: &str, w: u16| {
        let t = elide_middle(text, w.saturating_sub(1) as usize);
        format!("{t:<width$} ", width = w.saturating_sub(1) as usize)
    };
    let head_style = Style::default().add_modifier(Modifier::BOLD);
    let mut lines: Vec<Line> = Vec::new();
    let mut head = vec![Span::styled(
        format!("  {:<w$}", "field", w = field_w as usize),
        head_style,
    )];
    for (i, id) in ids.iter().enumerate() {
        head.push(Span::styled(
            cell(id, col_w),
            head_style.fg(RUN_COLORS[i % RUN_COLORS.len()]),
        ));
    }
    lines.push(Line::from(head));
    let errors: Vec<String> = texts
        .iter()
        .zip(ids)
        .filter_map(|(t, id)| t.as_ref().err().map(|e| format!("{id}: {e}")))
        .collect();
    let mut body: Vec<Line> = Vec::new();
    for e in errors {
        body.push(Line::styled(e, Style::default().fg(Color::Yellow)));
    }
    body.push(Line::styled(
        format!(
            "{differing} of {} fields differ (≠), the identical ones follow",
            rows.len()
        ),
        Style::default().fg(Color::DarkGray),
    ));
    for r in &rows {
        let (sym, style) = if r.differs {
            ("≠ ", Style::default().add_modifier(Modifier::BOLD))
        } else {
            ("  ", Style::default().fg(Color::DarkGray))
        };
        let mut spans = vec![Span::styled(
            format!(
                "{sym}{:<w$}",
                elide_middle(&r.field, field_w as usize),
                w = field_w as usize
            ),
            style,
        )];
        for v in &r.values {
            spans.push(Span::styled(
                cell(v.as_deref().unwrap_or("(absent)"), col_w),
                style,
            ));
        }
        body.push(Line::from(spans));
    }
    let [h, b] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    f.render_widget(Paragraph::new(lines), h);
    let max = body.len().saturating_sub(b.height as usize);
    let scroll = clamp_scroll(app, scroll.min(max));
    f.render_widget(Paragraph::new(body).scroll((scroll as u16, 0)), b);
}

fn render_log(f: &mut Frame, area: Rect, dir: &std::path::Path, back: usize) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let dim = Style::default().fg(Color::DarkGray);
    let pane = |f: &mut Frame, area: Rect, title: &str, lines: Result<Vec<String>, String>| {
        if area.height == 0 {
            return;
        }
        let [t, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        match lines {
            Ok(lines) => {
                let h = body.height as usize;
                let back = back.min(lines.len().saturating_sub(h));
                let end = lines.len().saturating_sub(back);
                let start = end.saturating_sub(h);
                f.render_widget(
                    Paragraph::new(Line::from(vec![
                        Span::styled(
                            format!("{title} "),
                            Style::default().add_modifier(Modifier::BOLD),
                        ),
                        Span::styled(
                            format!("lines {}–{end} of the {} read", start + 1, lines.len()),
                            dim,
                        ),
                    ])),
                    t,
                );
                let text: Vec<Line> = lines[start..end]
                    .iter()
                    .map(|l| Line::from(l.clone()))
                    .collect();
                f.render_widget(Paragraph::new(text), body);
            }
            Err(e) => {
                f.render_widget(
                    Paragraph::new(Span::styled(
                        title.to_string(),
                        Style::default().add_modifier(Modifier::BOLD),
                    )),
                    t,
                );
                placeholder(f, body, &e);
            }
        }
    };
    pane(f, top, crate::rundir::STDOUT_LOG, pages::stdout_tail(dir));
    pane(f, bottom, "events", pages::events_tail(dir));
}

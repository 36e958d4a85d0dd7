//! Popups drawn over the view: help (generated from the keymap), confirmations, lists.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, List, ListItem, ListState, Paragraph, Wrap};

use super::super::app::{App, Popup};
use super::super::keymap;
use super::panel;

/// `text` in lines of at most `first` columns (the first line) and `rest` columns (the others),
/// broken at spaces; a word longer than a line is cut into pieces.
fn wrap_words(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let width = |n: usize| if n == 0 { first } else { rest };
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let n = lines.len() - 1;
            let line = &mut lines[n];
            let used = line.chars().count();
            let gap = usize::from(used > 0);
            if used + gap + word.len() <= width(n) {
                if gap == 1 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used == 0 {
                // Longer than a whole line: cut it.
                let cut = width(n).max(1);
                line.extend(word[..cut].iter());
                word.drain(..cut);
            }
            lines.push(String::new());
        }
    }
    lines
}

/// A rectangle of at most `w`x`h` centred in `area`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

pub fn render(app: &mut App, f: &mut Frame, area: Rect) {
    let Some(popup) = app.popup.as_mut() else {
        return;
    };
    match popup {
        Popup::Help { scroll } => {
            let rows = keymap::help_rows();
            let r = centered(area, keymap::HELP_WIDTH, area.height.saturating_sub(2));
            f.render_widget(Clear, r);
            let block = panel(" Help · keys (generated from the keymap) · esc closes ");
            let inner = block.inner(r);
            f.render_widget(block, r);
            // Narrower than the overlay's full width, long sentences wrap under themselves
            // (hanging indent) instead of being cut.
            let text_width = (inner.width as usize)
                .saturating_sub(keymap::HELP_KEYS_WIDTH)
                .max(10);
            let mut lines: Vec<Line> = Vec::new();
            for (ctx, keys, text) in &rows {
                if ctx.is_some() {
                    lines.push(Line::from(Span::styled(
                        text.to_string(),
                        Style::default()
                            .fg(Color::Yellow)
                            .add_modifier(Modifier::BOLD),
                    )));
                    continue;
                }
                let keys = format!("  {keys:<w$}", w = keymap::HELP_KEYS_WIDTH - 2);
                // Keys longer than their column push the sentence right: wrap it narrower.
                let first_width = text_width
                    .saturating_sub(keys.chars().count().saturating_sub(keymap::HELP_KEYS_WIDTH))
                    .max(10);
                for (i, part) in wrap_words(text, first_width, text_width)
                    .into_iter()
                    .enumerate()
                {
                    let lead = if i == 0 {
                        keys.clone()
                    } else {
                        " ".repeat(keymap::HELP_KEYS_WIDTH)
                    };
                    lines.push(Line::from(vec![
                        Span::styled(lead, Style::default().fg(Color::Cyan)),
                        Span::raw(part),
                    ]));
                }
            }
            let max_scroll = (lines.len() as u16).saturating_sub(inner.height);
            *scroll = (*scroll).min(max_scroll);
            f.render_widget(Paragraph::new(lines).scroll((*scroll, 0)), inner);
        }
        Popup::Confirm { title, lines, .. } => {
            let w = lines
                .iter()
                .map(|l| l.chars().count() as u16)
                .max()
                .unwrap_or(20)
                .max(30)
                + 4;
            let r = centered(area, w, lines.len() as u16 + 4);
            f.render_widget(Clear, r);
            let block = panel(Line::from(Span::styled(
                format!(" {title} "),
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            )));
            let inner = block.inner(r);
            f.render_widget(block, r);
            let mut text: Vec<Line> = lines.iter().map(|l| Line::from(l.clone())).collect();
            text.push(Line::from(vec![
                Span::styled(
                    " y",
                    Style::default()
                        .fg(Color::Cyan)
                        .add_modifier(Modifier::BOLD),
                ),
                Span::raw(" yes   "),
                Span::styled(
                    "n",
                    Style::default()
                        .fg(Color::Cyan)
                        .add_modifier(Modifier::BOLD),
                ),
                Span::raw(" no"),
            ]));
            f.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
        }
        Popup::Picker {
            title,
            items,
            selected,
            empty,
            ..
        } => {
            let w = items
                .iter()
                .map(|i| (i.label.chars().count() + i.detail.chars().count() + 4) as u16)
                .max()
                .unwrap_or(0)
                .max(title.chars().count() as u16 + 4)
                .max(40)
                + 2;
            let r = centered(area, w, items.len().max(1) as u16 + 2);
            f.render_widget(Clear, r);
            let block = panel(format!(" {title} "));
            let inner = block.inner(r);
            f.render_widget(block, r);
            if items.is_empty() {
                f.render_widget(
                    Paragraph::new(Span::styled(
                        empty.clone(),
                        Style::default().fg(Color::DarkGray),
                    )),
                    inner,
                );
                return;
            }
            let label_w = items
                .iter()
                .map(|i| i.label.chars().count())
                .max()
                .unwrap_or(0);
            let list: Vec<ListItem> = items
                .iter()
                .map(|i| {
                    ListItem::new(Line::from(vec![
                        Span::raw(format!("{:<label_w$}  ", i.label)),
                        Span::styled(i.detail.clone(), Style::default().fg(Color::Gray)),
                    ]))
                })
                .collect();
            let mut state = ListState::default().with_selected(Some(*selected));
            let [list_area] = Layout::vertical([Constraint::Min(0)]).areas(inner);
            f.render_stateful_widget(
                List::new(list)
                    .highlight_symbol("▶ ")
                    .highlight_spacing(ratatui::widgets::HighlightSpacing::Always)
                    .highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
                list_area,
                &mut state,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_wrap_with_a_narrower_first_line() {
        assert_eq!(
            super::wrap_words("one two three four", 7, 10),
            ["one two", "three four"]
        );
        assert_eq!(
            super::wrap_words("abcdefghij", 4, 4),
            ["abcd", "efgh", "ij"]
        );
        assert_eq!(super::wrap_words("short", 10, 10), ["short"]);
    }
}

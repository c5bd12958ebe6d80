//! The help overlay (`?`): every key and what it does, then notes on the
//! figures, in a popup that scrolls on a terminal too small to show it
//! whole. Kept apart from the dashboard's panels because it decides its
//! own layout (wrapping, scrolling, the smallest terminal it needs) and the
//! event loop asks it how far its keys may scroll ([`help_fit`]).

use ratatui::{
    Frame,
    layout::{Position, Rect, Size},
    style::{Color, Style, Stylize as _},
    text::{Line, Span},
    widgets::{Block, BorderType, Clear, Paragraph, Wrap},
};

use super::ACCENT;
use crate::tui::app::{App, HelpFit};

/// Every key, for the help overlay: the keys, then what they do. A test
/// presses every key and requires each one that does something here.
pub const KEYS: [(&str, &str); 14] = [
    ("?", "this help (? Esc Enter close, PgUp PgDn)"),
    ("q  Ctrl-C", "quit: end the trace, print the summary"),
    ("p", "pause the display; collection goes on"),
    ("c", "clear counters (the display's baseline)"),
    ("s", "sort targets: given, hits, rate, name"),
    ("/  Esc", "filter by comm / clear the filter"),
    ("Tab  S-Tab", "focus: targets, details, log"),
    ("↑ ↓  j k", "select a target / scroll the panel or help"),
    ("← →  h l", "details: caller comm pid cpu stacks values"),
    ("Home End  g G", "first / last"),
    ("o", "bottom panel: latest hits / -- CMD output"),
    ("e", "write this view to hwbp-dashboard-*.txt"),
    ("Ctrl-L", "repaint the screen"),
    ("a m x space", "add, move, remove, (un)pause a target"),
];

/// Below the keys in the help.
const HELP_NOTES: [&str; 5] = [
    "HITS/S: the last complete second",
    "HISTORY: 5 min, each cell the busiest second it covers",
    "DR n/4: debug registers taken per CPU (or thread)",
    "filter: every figure follows it but LOST (no comm)",
    // stats::RECENT_HITS
    "? ·: filtered, before the last 256 hits kept",
];

/// The smallest terminal the help scrolls on: its longest key and word
/// fit, and three lines between its borders.
pub const HELP_MIN_WIDTH: u16 = 32;
pub const HELP_MIN_HEIGHT: u16 = 5;

/// `text` in lines of at most `width` characters, broken between words
/// (inside a word only when it is longer than a line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        let used = line.chars().count();
        if used > 0 && used + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > width {
            lines.push(word.drain(..width).collect());
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.extend(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The help's lines for a popup `width` columns inside: a key and what it
/// does on one line where they fit, else what it does below the key,
/// indented; then the notes.
fn help_lines(width: usize) -> Vec<Line<'static>> {
    let key_w = KEYS
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let key_style = Style::new().fg(ACCENT).bold();
    let mut lines = Vec::new();
    for (k, what) in KEYS {
        if key_w + 2 + what.chars().count() <= width {
            lines.push(Line::from(vec![
                Span::styled(format!(" {k:<key_w$} "), key_style),
                Span::raw(what),
            ]));
        } else {
            lines.push(Line::from(Span::styled(format!(" {k}"), key_style)));
            lines.extend(
                wrap(what, width.saturating_sub(4))
                    .into_iter()
                    .map(|l| Line::from(format!("    {l}"))),
            );
        }
    }
    lines.push(Line::raw(""));
    for note in HELP_NOTES {
        lines.extend(
            wrap(note, width.saturating_sub(1))
                .into_iter()
                .map(|l| Line::from(format!(" {l}")).dark_gray()),
        );
    }
    lines
}

/// Where the help goes on `area`, and its lines; `None` when the terminal
/// is too small for it even scrolled.
fn help_layout(area: Rect) -> Option<(Rect, Vec<Line<'static>>)> {
    if area.width < HELP_MIN_WIDTH || area.height < HELP_MIN_HEIGHT {
        return None;
    }
    let width = 64.min(area.width);
    let lines = help_lines(width as usize - 2);
    let height = (lines.len() as u16).saturating_add(2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    Some((popup, lines))
}

/// How the help fits a terminal of `size`: the event loop tells the
/// [`App`] after each draw, so that its keys scroll no further than the end.
pub fn help_fit(size: Size) -> HelpFit {
    match help_layout(Rect::from((Position::ORIGIN, size))) {
        Some((popup, lines)) => {
            let page = popup.height.saturating_sub(2) as usize;
            HelpFit {
                page,
                max_scroll: lines.len().saturating_sub(page),
            }
        }
        None => HelpFit {
            page: 1,
            max_scroll: 0,
        },
    }
}

/// The help over the screen, scrolled by the keys (`↑ more`, `↓ more` on
/// its borders where there is more); on a terminal too small for it, the
/// size it needs.
pub(super) fn render_help(frame: &mut Frame, area: Rect, app: &App) {
    let Some((popup, lines)) = help_layout(area) else {
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(format!(
                    "help needs at least {HELP_MIN_WIDTH}×{HELP_MIN_HEIGHT}; \
                     this terminal is {}×{}",
                    area.width, area.height
                )),
                Line::from("Esc closes it".dark_gray()),
            ])
            .wrap(Wrap { trim: true }),
            area,
        );
        return;
    };
    let page = popup.height.saturating_sub(2) as usize;
    let max_scroll = lines.len().saturating_sub(page);
    let scroll = app.help_scroll.min(max_scroll);
    let more = Style::new().fg(Color::Yellow).bold();
    let mut block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::new().fg(ACCENT))
        .title(" hwbp-trace keys ".bold());
    if scroll > 0 {
        block = block.title(Line::from(Span::styled(" ↑ more ", more)).right_aligned());
    }
    if scroll < max_scroll {
        block = block.title_bottom(Line::from(Span::styled(" ↓ more ", more)).right_aligned());
    }
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines.into_iter().skip(scroll).collect::<Vec<_>>()).block(block),
        popup,
    );
}

//! The status line while a change is typed (`a`, `m`, `x`): what the
//! prompt asks, the text so far, and how to finish.

use ratatui::{
    style::Stylize as _,
    text::{Line, Span},
};

use super::app::{Prompt, PromptKind, TargetView};
use crate::printable::printable;

/// The prompt's line, after `key` (the key chip the status line uses).
pub fn line(prompt: &Prompt, targets: &[TargetView], key: Span<'static>) -> Line<'static> {
    let text = match prompt.kind {
        PromptKind::Remove(_) => String::new(),
        _ => format!("{}▏", printable(&prompt.text)),
    };
    let how = match prompt.kind {
        PromptKind::Remove(_) => "y remove · any other key cancels",
        _ => "Enter apply · Esc cancel",
    };
    Line::from(vec![
        key,
        Span::raw(format!(" {} {text} ", printable(&prompt.label(targets)))),
        Span::raw(how).dark_gray(),
    ])
}

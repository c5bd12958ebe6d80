//! Text that reaches a terminal or a text file, made harmless.
//!
//! A traced program chooses its own comm (`prctl(PR_SET_NAME)`), its
//! symbol names and its output. Written raw, `\e[2J` clears root's
//! terminal and a newline splits one hit line into two that a script would
//! read as two hits. Every text output passes such strings through
//! [`printable`], which escapes control characters the way the kernel
//! escapes a task's name in /proc/PID/status (`\n`, `\\`), with `\e` for
//! ESC and `\xNN` for the rest. JSON needs none of this: serde_json escapes
//! control characters itself.

use std::{borrow::Cow, fmt::Write as _};

/// `s` with every control character (C0, DEL, C1) and backslash escaped;
/// borrowed when there is nothing to escape, which is the common case.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            c if c.is_control() => {
                // Infallible: writing into a String.
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control()
}

/// `1 hit`, `2 hits`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(printable("fx_user"), Cow::Borrowed("fx_user")));
        assert!(matches!(printable("Grüße→"), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("\x1b[2J\x1b[41m"), "\\e[2J\\e[41m");
        assert_eq!(printable("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(printable("\x00\x07\x7f\u{9b}"), "\\x00\\x07\\x7f\\x9b");
        assert_eq!(printable("C:\\x"), "C:\\\\x");
    }

    #[test]
    fn the_result_holds_no_control_character() {
        let all: String = (0u32..0x200).filter_map(char::from_u32).collect();
        assert!(!printable(&all).chars().any(char::is_control));
    }
}

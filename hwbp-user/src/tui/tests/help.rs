//! The help overlay: it names every key the dashboard handles, and scrolls
//! on terminals smaller than it.

use super::*;

#[test]
fn help_overlay() {
    let mut app = busy_app();
    app.handle_key(key(KeyCode::Char('?')));
    let text = screen(&app, 80, 24);
    check("help_overlay", &text);
    // Every key, whole, down to the smallest terminal; the notes where
    // they fit.
    for (w, h) in [(80, 24), (60, 16), (61, 17), (200, 60)] {
        let text = screen(&app, w, h);
        for (k, what) in crate::tui::ui::KEYS {
            let line = text
                .lines()
                .find(|l| l.contains(&format!(" {k} ")))
                .unwrap_or_else(|| panic!("{k} missing from the help at {w}×{h}:\n{text}"));
            assert!(
                line.contains(&format!("{what} ")) || line.contains(&format!("{what}║")),
                "{k}: `{what}` cut at {w}×{h}:\n{text}"
            );
        }
    }
    assert!(screen(&app, 80, 24).contains("DR n/4"));
}

/// The dashboard drawn as the event loop draws it: the App then knows how
/// the help fits (its keys scroll no further than the end).
fn draw(app: &mut App, width: u16, height: u16) -> String {
    let text = screen(app, width, height);
    app.help_fit = crate::tui::ui::help_fit(Size::new(width, height));
    text
}

/// The help on terminals smaller than it: the first lines, then scrolled
/// to the last; on a tiny one, the size it needs.
#[test]
fn the_help_scrolls_on_a_small_terminal() {
    let first = " ?";
    // The end of the last note (wrapped on narrow terminals).
    let last = "hits kept";
    for (w, h) in [(40, 10), (80, 12), (60, 16), (32, 5)] {
        let mut app = busy_app();
        draw(&mut app, w, h);
        app.handle_key(key(KeyCode::Char('?')));
        let text = draw(&mut app, w, h);
        assert!(text.contains("hwbp-trace keys"), "{w}×{h}:\n{text}");
        assert!(
            text.contains(&format!("║{first} ")) && !text.contains(last),
            "the first line at {w}×{h}:\n{text}"
        );
        assert!(
            text.contains("↓ more") && !text.contains("↑ more"),
            "{w}×{h}:\n{text}"
        );
        // A page at a time to the end, which stays the end.
        let mut pages = 0;
        while !draw(&mut app, w, h).contains(last) {
            app.handle_key(key(KeyCode::PageDown));
            pages += 1;
            assert!(pages < 40, "no end at {w}×{h}:\n{}", screen(&app, w, h));
        }
        let end = app.help_scroll;
        for _ in 0..3 {
            app.handle_key(key(KeyCode::Char('j')));
            app.handle_key(key(KeyCode::PageDown));
        }
        assert_eq!(app.help_scroll, end, "{w}×{h}");
        let text = draw(&mut app, w, h);
        assert!(text.contains(last), "{w}×{h}:\n{text}");
        assert!(
            text.contains("↑ more") && !text.contains("↓ more"),
            "{w}×{h}:\n{text}"
        );
        // One line back up, then home.
        app.handle_key(key(KeyCode::Char('k')));
        assert_eq!(app.help_scroll, end - 1);
        app.handle_key(key(KeyCode::Home));
        let text = draw(&mut app, w, h);
        assert!(text.contains(&format!("║{first} ")), "{w}×{h}:\n{text}");
        app.handle_key(key(KeyCode::Esc));
        assert!(!app.help);
    }
    // Where it all fits, no scrolling.
    let mut app = busy_app();
    app.handle_key(key(KeyCode::Char('?')));
    let text = draw(&mut app, 100, 40);
    assert!(text.contains(last) && !text.contains("more "), "{text}");
    assert_eq!(app.help_fit.max_scroll, 0);
    // Too small even to scroll.
    for (w, h) in [(31, 10), (40, 4), (20, 3)] {
        let text = draw(&mut app, w, h);
        assert!(
            text.replace('\n', " ").contains(&format!(
                "help needs at least 32×5; this terminal is {w}×{h}"
            )) || h < 4,
            "{w}×{h}:\n{text}"
        );
    }
    let text = screen(&app, 40, 4);
    assert!(text.contains("help needs at least 32×5;"), "{text}");
    check("help_on_a_tiny_terminal", &text);
    check("help_scrolled_80x12", &{
        let mut app = busy_app();
        draw(&mut app, 80, 12);
        app.handle_key(key(KeyCode::Char('?')));
        app.handle_key(key(KeyCode::PageDown));
        draw(&mut app, 80, 12)
    });
}

/// Every key press that does something, in any of the dashboard's states,
/// is in the help (KEYS); keys that do nothing are not.
#[test]
fn the_help_names_every_key_handled() {
    use crossterm::event::{KeyEvent, KeyModifiers};

    use crate::tui::{
        app::{Action, Focus},
        ui::KEYS,
    };
    /// A key as the help writes it.
    fn name(key: &KeyEvent) -> Option<String> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        Some(match key.code {
            KeyCode::Char(c) if ctrl => format!("Ctrl-{}", c.to_ascii_uppercase()),
            KeyCode::Char(' ') => "space".into(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::F(n) => format!("F{n}"),
            code => format!("{code}"),
        })
    }
    let mut keys: Vec<KeyEvent> = Vec::new();
    for c in ' '..='~' {
        keys.push(key(KeyCode::Char(c)));
        if c.is_ascii_lowercase() {
            keys.push(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
        }
    }
    for code in [
        KeyCode::Enter,
        KeyCode::Esc,
        KeyCode::Tab,
        KeyCode::BackTab,
        KeyCode::Backspace,
        KeyCode::Delete,
        KeyCode::Insert,
        KeyCode::Up,
        KeyCode::Down,
        KeyCode::Left,
        KeyCode::Right,
        KeyCode::Home,
        KeyCode::End,
        KeyCode::PageUp,
        KeyCode::PageDown,
    ] {
        keys.push(key(code));
    }
    keys.extend((1..=12).map(|n| key(KeyCode::F(n))));

    // States where each key can act: every focus, scrolled to the middle,
    // the middle target selected, a filter set; the help open, scrolled.
    let mut states = Vec::new();
    for focus in [Focus::Targets, Focus::Details, Focus::Log] {
        let mut app = busy_app();
        app.selected = 1;
        app.focus = focus;
        app.breakdown = Breakdown::Comms;
        app.details_scroll = 1;
        app.log_scroll = 1;
        app.filter = Some("a".into());
        states.push(app);
    }
    let mut help = busy_app();
    help.help = true;
    help.help_scroll = 1;
    let in_help = states.len();
    states.push(help);

    let column: Vec<&str> = KEYS
        .iter()
        .flat_map(|(k, _)| k.split_whitespace())
        .collect();
    // In the help, its own line says which keys close it.
    let help_line: Vec<&str> = KEYS[0]
        .0
        .split_whitespace()
        .chain(
            KEYS[0]
                .1
                .split(|c: char| c.is_whitespace() || "()".contains(c)),
        )
        .collect();
    let mut handled = Vec::new();
    for (i, state) in states.iter().enumerate() {
        for k in &keys {
            let mut app = state.clone();
            let before = format!("{app:?}");
            let action = app.handle_key(*k);
            if action == Action::None && format!("{app:?}") == before {
                continue;
            }
            let name = name(k).unwrap_or_default();
            let listed = match i == in_help {
                true => help_line.contains(&name.as_str()) || column.contains(&name.as_str()),
                false => column.contains(&name.as_str()),
            };
            assert!(listed, "{name} ({k:?}) acts but the help does not name it");
            handled.push(name);
        }
    }
    // And the other way: every key the help names acts somewhere.
    for k in column {
        assert!(
            handled.iter().any(|h| h == k),
            "the help names {k}, which does nothing"
        );
    }
}

#[test]
fn tiny_terminal() {
    let app = busy_app();
    let text = screen(&app, 40, 10);
    assert!(text.contains("too small"), "{text}");
    check("tiny_terminal", &text);
    // Degenerate sizes draw without panicking.
    for (w, h) in [(1, 1), (0, 0), (59, 30), (200, 15), (60, 16)] {
        screen(&app, w, h);
    }
}

#[test]
fn filter_and_input_line() {
    let mut app = busy_app();
    app.handle_key(key(KeyCode::Char('/')));
    for c in "bas".chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    let text = screen(&app, 80, 24);
    assert!(text.contains("filter comm: bas"), "{text}");
    app.handle_key(key(KeyCode::Enter));
    let text = screen(&app, 80, 24);
    assert!(text.contains("comm ~ bas"), "{text}");
    // Only bash's hits: one every third second of 120.
    assert!(
        text.contains("filter: bas — 40 of 519 hits match"),
        "{text}"
    );
}

//! Render tests: the dashboard drawn on a `TestBackend`, compared with the
//! snapshots in `snapshots/` (`INSTA_UPDATE=always` rewrites them; review
//! the diff). Addresses, times and pids are filtered out.

use crossterm::event::KeyCode;
use ratatui::layout::Size;

use super::{
    app::{
        App, Breakdown, CommandOutputView, TargetView, Traced,
        tests::{T0, busy, hit, key, targets},
    },
    view_text,
};
use crate::{output::stats::Stats, probe::process::OutputTail, record::format::Summary};

const S: u64 = 1_000_000_000;

fn screen(app: &App, width: u16, height: u16) -> String {
    view_text(app, Size::new(width, height)).expect("rendering on a TestBackend")
}

fn check(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"0x[0-9a-f]{6,}", "[ADDR]");
    settings.add_filter(r"\b\d+\.\d{6}:", "[TIME]:");
    settings.add_filter(r"pid \d+", "pid [PID]");
    settings.add_filter(r"\b\d+:\d\d\b", "[ELAPSED]");
    settings.bind(|| insta::assert_snapshot!(name, text));
}

fn process(launched: bool) -> Traced {
    Traced::Process {
        pid: 4242,
        name: "fx_user".into(),
        threads: 1,
        launched,
    }
}

#[test]
fn armed_no_hits_yet() {
    let mut app = App::new(targets(), Traced::SystemWide { cpus: 4 }, 12, vec![]);
    let mut stats = Stats::new(3);
    stats.started_ns = T0;
    app.refresh(stats, T0 + 3 * S);
    let text = screen(&app, 80, 24);
    assert!(text.contains("waiting for hits"), "{text}");
    assert!(text.contains("no hits yet"), "{text}");
    check("armed_no_hits_yet", &text);
}

/// Three targets, two minutes of traffic, values on the data target.
fn busy_app() -> App {
    let mut hits = Vec::new();
    for s in 0..120u64 {
        for _ in 0..(s % 7 + 1) {
            hits.push((0, s, "cat"));
        }
        if s % 3 == 0 {
            hits.push((1, s, "bash"));
        }
    }
    let (mut app, mut stats) = busy(&hits);
    for (i, comm) in ["systemd", "kworker/0:1"].iter().enumerate() {
        let mut h = hit(
            "pid_max:w",
            T0 + (100 + i as u64) * S,
            comm,
            1 + i as u32,
            2,
            "proc_dointvec_minmax+0x5d",
        );
        h.mode = "w".into();
        h.value = Some(32768 + i as u64);
        h.old_value = Some(4194304 + i as u64);
        stats.record(2, h.into());
    }
    stats.counters[0].dropped = 3;
    app.outputs = vec!["trace.jsonl".into()];
    app.refresh(stats, T0 + 120 * S + S / 2);
    app
}

#[test]
fn busy_with_several_targets() {
    let mut app = busy_app();
    let text = screen(&app, 80, 24);
    assert!(text.contains("vfs_read"), "{text}");
    assert!(text.contains("lost 3"), "{text}");
    check("busy_with_several_targets", &text);

    // Sorted by hits, the comm breakdown of the selected target.
    app.handle_key(key(KeyCode::Char('s')));
    app.handle_key(key(KeyCode::Right));
    check(
        "busy_sorted_by_hits_comm_breakdown_120x32",
        &screen(&app, 120, 32),
    );
}

#[test]
fn busy_stacks_and_values() {
    let mut app = busy_app();
    app.breakdown = Breakdown::Stacks;
    check("busy_stacks", &screen(&app, 100, 30));
    app.selected = 2;
    app.breakdown = Breakdown::Values;
    let text = screen(&app, 100, 30);
    assert!(text.contains("4194305 → 32769"), "{text}");
    check("busy_values", &text);
}

#[test]
fn redacted_addresses() {
    let mut app = busy_app();
    app.redact = true;
    let text = screen(&app, 120, 32);
    assert!(!text.contains("0xffff"), "{text}");
    assert!(text.contains("0x…"), "{text}");
}

/// `-- fx_user writes 50` under `-o /tmp/t/trace.jsonl`, ended.
fn exited_app() -> App {
    let counter = TargetView {
        target: "HWBP_FX_COUNTER:w".into(),
        symbol: "HWBP_FX_COUNTER".into(),
        addr: 0x5555_5555_a008,
        mode: "w",
        data: true,
        len: 8,
        kernel: false,
    };
    let mut app = App::new(
        vec![counter],
        process(true),
        1,
        vec!["/tmp/t/trace.jsonl".into()],
    );
    let mut stats = Stats::new(1);
    stats.started_ns = T0;
    for i in 1..=50u64 {
        let mut h = hit(
            "HWBP_FX_COUNTER:w",
            T0 + S / 2 + i * 1000,
            "fx_user",
            4242,
            1,
            "hwbp_fx_writer+0x2a",
        );
        h.mode = "w".into();
        h.value = Some(i);
        h.old_value = Some(i - 1);
        stats.record(0, h.into());
    }
    app.refresh(stats, T0 + S);
    app.finish(&Summary {
        end_reason: "process-exit".into(),
        duration_s: 1.2,
        exit_status: Some(0),
        ..Default::default()
    });
    app
}

/// Every status item, as the status bar writes it.
const EXITED_STATUS: [&str; 7] = [
    "ended: process exited",
    "00:01",
    "50 hits",
    "lost 0",
    "pid 4242 fx_user exited, status 0",
    "DR 1/4",
    "writing trace.jsonl",
];

#[test]
fn traced_process_exited() {
    let app = exited_app();
    let text = screen(&app, 100, 30);
    for item in EXITED_STATUS {
        assert!(text.contains(item), "{item}:\n{text}");
    }
    check("traced_process_exited", &text);
    let text = screen(&app, 80, 24);
    check("traced_process_exited_80x24", &text);
}

/// No status item is cut, from the smallest width up: one line when all
/// fit, else two.
#[test]
fn status_bar_keeps_every_item_at_any_width() {
    let app = exited_app();
    for width in 60..=140 {
        let text = screen(&app, width, 24);
        let lines: Vec<&str> = text.lines().collect();
        let status = match lines.get(1).is_some_and(|l| l.starts_with('╭')) {
            true => lines[..1].join("\n"),
            false => lines[..2].join("\n"),
        };
        for item in EXITED_STATUS {
            assert!(status.contains(item), "{item} at {width} columns:\n{text}");
        }
    }
    // Wide enough, one line and the name.
    let text = screen(&app, 140, 30);
    assert!(text.starts_with(" hwbp-trace  ■ ended"), "{text}");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.starts_with('╭')),
        "{text}"
    );
}

#[test]
fn an_export_failure_shows_and_writing_stops() {
    let mut app = exited_app();
    let mut stats = Stats::new(1);
    stats.started_ns = T0;
    stats.export_failed(
        "/tmp/t/trace.jsonl",
        "No space left on device (os error 28)",
    );
    app.refresh(stats, T0 + S);
    let text = screen(&app, 100, 30);
    assert_eq!(
        text.matches("writing trace.jsonl").count(),
        1,
        "once, as stopped:\n{text}"
    );
    assert!(text.contains("stopped writing trace.jsonl"), "{text}");
    assert!(
        text.contains("trace.jsonl: No space left on device (os error 28)"),
        "{text}"
    );
}

#[test]
fn the_end_shows_the_summary_lost_and_error() {
    let mut app = exited_app();
    let mut stats = Stats::new(1);
    stats.started_ns = T0;
    stats.counters[0].dropped = 2;
    app.refresh(stats, T0 + S);
    app.ended = None;
    assert!(screen(&app, 100, 30).contains("lost 2"));
    app.finish(&Summary {
        end_reason: "error".into(),
        duration_s: 1.2,
        // 2 dropped by the ring buffer, 3 the kernel never handed to BPF.
        lost: 5,
        error: Some("internal error while recording hits: a bug".into()),
        ..Default::default()
    });
    let text = screen(&app, 100, 30);
    assert!(text.contains("lost 5"), "{text}");
    assert!(text.contains("ended: error"), "{text}");
    assert!(
        text.contains("error: internal error while recording hits: a bug"),
        "{text}"
    );
}

/// Hits 290 s ago are in the table's history, 310 s ago no longer.
#[test]
fn the_table_history_covers_five_minutes() {
    let (mut app, stats) = busy(&[(0, 89, "cat"), (0, 109, "cat"), (0, 399, "cat")]);
    app.refresh(stats, T0 + 400 * S + S / 2);
    // 80 columns: 26 cells of 12 s: 25 of them make 300 s.
    let (cells, per_cell) = app.history_cells(0, 26);
    assert_eq!(per_cell, 12);
    let mut expected = vec![Some(0); 25];
    expected[0] = Some(1);
    expected[24] = Some(1);
    assert_eq!(cells, expected);
    let text = screen(&app, 80, 24);
    assert!(text.contains("HISTORY 5m, max/12s"), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("›vfs_read"))
        .unwrap_or_else(|| panic!("the vfs_read row:\n{text}"));
    assert!(row.contains(&format!("█{}█", " ".repeat(23))), "{row}");
}

/// An execute target's arguments, in the hit log.
#[test]
fn execute_hits_show_their_arguments() {
    let (mut app, mut stats) = busy(&[]);
    for i in 0..3u64 {
        let mut h = hit("vfs_read", T0 + S + i * 1000, "cat", 300, 1, "vfs_read+0x0");
        h.args = Some(vec![
            crate::record::format::Arg {
                name: "file".into(),
                value: Some(format!("{:#x}", 0xffff_8880_03a4_c800u64 + i * 0x100)),
                ty: Some("struct file *".into()),
                location: None,
            },
            crate::record::format::Arg {
                name: "count".into(),
                value: Some("131072".into()),
                ty: Some("size_t".into()),
                location: None,
            },
        ]);
        stats.record(0, h.into());
    }
    app.refresh(stats, T0 + 2 * S);
    let text = screen(&app, 100, 30);
    assert!(
        text.contains("vfs_read x vfs_read(file=0xffff888003a4c900, count=131072)"),
        "{text}"
    );
    check("execute_hit_arguments", &text);
    // At 80 columns the call starts in view.
    assert!(screen(&app, 80, 24).contains("vfs_read x vfs_read(file=0xffff8880"));
}

/// A function hit at its first instruction from two callers: the callers
/// pane counts each caller (the frame under the target, where the symbolizer
/// puts the return address read at the stack pointer), not the target
/// itself, and names them as `report --by caller` does.
#[test]
fn the_callers_pane_counts_who_called_the_function() {
    let (mut app, mut stats) = busy(&[]);
    let (n, m) = (30u64, 10u64);
    let mut report_keys = std::collections::BTreeMap::new();
    for (i, caller) in std::iter::repeat_n("caller_a", n as usize)
        .chain(std::iter::repeat_n("caller_b", m as usize))
        .enumerate()
    {
        let mut h = hit("vfs_read", T0 + S + i as u64, "prog", 300, 1, "target+0x0");
        h.kstack = crate::record::format::Stack::default();
        h.ustack = crate::record::format::Stack::new(vec![
            "target+0x0 (prog.c:8)".into(),
            format!("{caller}+0x1d (prog.c:9)").into(),
            "main+0x60 (prog.c:14)".into(),
            "__libc_start_call_main+0x7a".into(),
        ]);
        let key = crate::output::report::By::Caller.key(&h).expect("a caller");
        *report_keys.entry(key).or_insert(0u64) += 1;
        stats.record(0, h.into());
    }
    app.refresh(stats, T0 + 2 * S);
    let text = screen(&app, 100, 30);
    assert!(text.contains("     30  75.0% caller_a "), "{text}");
    assert!(text.contains("     10  25.0% caller_b "), "{text}");
    assert!(!text.contains("% target"), "{text}");
    assert_eq!(
        report_keys,
        [("caller_a".to_owned(), n), ("caller_b".to_owned(), m)].into()
    );
}

/// `-- fx_user spin`: an execute target, and the command's output
/// captured: plain lines, a tab, colours, a progress bar, a long line.
fn launched_app(output: &[u8]) -> App {
    let target = TargetView {
        target: "hwbp_fx_target".into(),
        symbol: "hwbp_fx_target".into(),
        addr: 0x5555_5555_9580,
        mode: "x",
        data: false,
        len: 8,
        kernel: false,
    };
    let mut app = App::new(vec![target], process(true), 1, vec![]);
    let mut stats = Stats::new(1);
    stats.started_ns = T0;
    for i in 1..=20u64 {
        let h = hit(
            "hwbp_fx_target",
            T0 + S / 2 + i * 1000,
            "fx_user",
            4242,
            1,
            "hwbp_fx_target+0x0",
        );
        stats.record(0, h.into());
    }
    app.refresh(stats, T0 + 2 * S);
    app.output = Some(CommandOutputView::new("fx_user".into()));
    let mut tail = OutputTail::default();
    tail.push(output);
    app.refresh_output(tail);
    app
}

const OUTPUT: &[u8] = b"starting\nround 1\nround 2\nround 3\nround 4\n\
    name\tcalls\n\x1b[31mwarning:\x1b[0m slow CPU\nprogress 10%\rprogress 50%\rprogress 100%\n\
    a very long line that goes on and on, past the right edge of the panel, and is cut there\n\
    done 20";

#[test]
fn command_output() {
    let mut app = launched_app(OUTPUT);
    // The hits, and where the command's output went.
    let text = screen(&app, 80, 24);
    assert!(text.contains("fx_user output: 10 lines (o)"), "{text}");
    assert!(!text.contains("done 20"), "{text}");
    app.handle_key(key(KeyCode::Char('o')));
    let text = screen(&app, 80, 24);
    assert!(text.contains("output of fx_user · 10 lines"), "{text}");
    // Newest at the bottom, as on a terminal.
    let done = text.find("│done 20").expect("the last line shown");
    let progress = text
        .find("│progress 100%")
        .expect("the progress bar's state");
    assert!(progress < done, "{text}");
    assert!(text.contains("│warning: slow CPU"), "{text}");
    assert!(text.contains("│name    calls"), "{text}");
    check("command_output", &text);

    // Scrolled back; more lines than are kept.
    app.focus = super::app::Focus::Log;
    app.handle_key(key(KeyCode::Up));
    let text = screen(&app, 80, 24);
    assert!(text.contains("· 1 back"), "{text}");
    assert!(!text.contains("done 20"), "{text}");
    let many: Vec<u8> = (0..1500)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let mut app = launched_app(&many);
    app.handle_key(key(KeyCode::Char('o')));
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("output of fx_user · 1500 lines · last 1000 kept"),
        "{text}"
    );
    assert!(text.contains("│line 1499"), "{text}");

    // Nothing yet.
    let mut app = launched_app(b"");
    app.handle_key(key(KeyCode::Char('o')));
    let text = screen(&app, 80, 24);
    assert!(text.contains("fx_user has written nothing yet"), "{text}");
}

#[test]
fn output_lines_are_plain_text() {
    use super::ui::plain_line;
    assert_eq!(plain_line(b"\x1b[1;31mred\x1b[0m text"), "red text");
    assert_eq!(plain_line(b"a\tb\tc"), "a       b       c");
    assert_eq!(plain_line(b"12345678\tx"), "12345678        x");
    assert_eq!(plain_line(b"10%\r50%\r"), "50%");
    assert_eq!(
        plain_line(b"\x1b]0;title\x07x\x1b]8;;http://a\x1b\\link"),
        "xlink"
    );
    assert_eq!(plain_line(b"bell\x07 \xff"), "bell \u{fffd}");
    assert_eq!(plain_line(b"\x1b(Bplain\x1b="), "plain");
}

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
        for (k, what) in super::ui::KEYS {
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
    app.help_fit = super::ui::help_fit(Size::new(width, height));
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

    use super::{
        app::{Action, Focus},
        ui::KEYS,
    };
    /// A key as the help writes it.
    fn name(key: &KeyEvent) -> Option<String> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        Some(match key.code {
            KeyCode::Char(c) if ctrl => format!("Ctrl-{}", c.to_ascii_uppercase()),
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

/// Every cell of a rendered screen: none may hold a control character,
/// which the terminal would obey (`\e[2J` clears root's screen).
fn control_characters(app: &App, width: u16, height: u16) -> Vec<(u16, u16, String)> {
    use ratatui::{Terminal, backend::TestBackend};
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|f| super::ui::render(f, app))
        .expect("rendering on a TestBackend");
    let buffer = terminal.backend().buffer();
    let mut found = Vec::new();
    for y in 0..height {
        for x in 0..width {
            if let Some(cell) = buffer.cell((x, y))
                && cell.symbol().chars().any(char::is_control)
            {
                found.push((x, y, cell.symbol().to_owned()));
            }
        }
    }
    found
}

/// A traced program names itself (`prctl(PR_SET_NAME)`), its functions and
/// its values, and writes what it likes: all of it is drawn escaped.
fn hostile_app() -> App {
    const CLEAR: &str = "\x1b[2J\x1b[41m";
    let target = TargetView {
        target: format!("evil{CLEAR}:w"),
        symbol: format!("evil{CLEAR}"),
        addr: 0x5555_5555_a008,
        mode: "w",
        data: true,
        len: 8,
        kernel: false,
    };
    let mut app = App::new(
        vec![target.clone()],
        Traced::Process {
            pid: 4242,
            name: CLEAR.into(),
            threads: 1,
            launched: true,
        },
        1,
        vec![],
    );
    let mut stats = Stats::new(1);
    stats.started_ns = T0;
    for (i, comm) in [CLEAR, "a\nb"].into_iter().enumerate() {
        let mut h = hit(
            &target.target,
            T0 + S / 2 + i as u64,
            comm,
            4242,
            1,
            &format!("f{CLEAR}+0x1"),
        );
        h.mode = "w".into();
        h.value = Some(1);
        h.value_text = Some(format!("v{CLEAR}"));
        h.kstack = crate::record::format::Stack::new(vec![format!("k{CLEAR}+0x0").into()]);
        stats.record(0, h.into());
    }
    app.refresh(stats, T0 + 2 * S);
    app.output = Some(CommandOutputView::new(format!("cmd{CLEAR}")));
    let mut tail = OutputTail::default();
    tail.push(b"plain\n\x1b[2J\x1b[41mred\x1b[0m\nlone \x1b\n\xc2\x9b2J c1\n");
    app.refresh_output(tail);
    app
}

#[test]
fn control_characters_from_the_traced_world_are_escaped() {
    let mut app = hostile_app();
    let mut screens = Vec::new();
    for breakdown in Breakdown::ALL {
        app.breakdown = breakdown;
        screens.push((format!("{breakdown:?}"), app.clone()));
    }
    app.show_output = true;
    screens.push(("output".into(), app.clone()));
    app.show_output = false;
    app.filter = Some("\x1b".into());
    screens.push(("filter".into(), app.clone()));
    app.filter = None;
    app.input = Some("\x1b[2J".into());
    screens.push(("input".into(), app.clone()));
    for (what, app) in &screens {
        for (w, h) in [(120, 32), (80, 24)] {
            let found = control_characters(app, w, h);
            assert!(
                found.is_empty(),
                "{what} at {w}×{h}: {found:?}\n{}",
                screen(app, w, h)
            );
        }
    }
    let shown = |app: &App| screen(app, 160, 40);
    let [log, callers, comms, stacks, values, output, filter, input] = [
        &screens[0].1,
        &screens[0].1,
        &screens[1].1,
        &screens[4].1,
        &screens[5].1,
        &screens[6].1,
        &screens[7].1,
        &screens[8].1,
    ]
    .map(shown);
    // The comm, the target and the caller in the log; the process's name
    // in the status bar; the target and symbol in the table.
    for text in [
        r"\e[2J\e[41m-4242",
        r"a\nb-4242",
        r"pid [PID] \e[2J\e[41m running",
        r"evil\e[2J\e[41m:w",
        r"evil\e[2J\e[41m ",
        r"f\e[2J\e[41m+0x1",
        r"value=v\e[2J\e[41m",
        r"cmd\e[2J\e[41m output",
    ] {
        let log = log.replace("pid 4242", "pid [PID]");
        assert!(log.contains(text), "{text}:\n{log}");
    }
    assert!(callers.contains(r"f\e[2J\e[41m+0x1"), "{callers}");
    assert!(comms.contains(r"\e[2J\e[41m"), "{comms}");
    assert!(comms.contains(r"a\nb"), "{comms}");
    assert!(stacks.contains(r"k\e[2J\e[41m+0x0"), "{stacks}");
    assert!(values.contains(r"v\e[2J\e[41m"), "{values}");
    // The command's output: colours dropped (as on a terminal), other
    // control characters gone; no line lost.
    for line in ["│plain", "│red", "│lone", "│2J c1"] {
        assert!(output.contains(line), "{line}:\n{output}");
    }
    assert!(filter.contains(r"comm ~ \e"), "{filter}");
    assert!(input.contains(r"filter comm: \e[2J"), "{input}");
}

/// Applies a filter as the user does: `/`, the text, Enter.
fn type_filter(app: &mut App, filter: &str) {
    app.handle_key(key(KeyCode::Char('/')));
    for c in filter.chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    app.handle_key(key(KeyCode::Enter));
}

/// A row of the targets table, by target, split into its cells.
fn table_row(text: &str, target: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.contains(&format!(" {target} ")) || l.contains(&format!("›{target} ")))
        .unwrap_or_else(|| panic!("the {target} row:\n{text}"));
    line.trim_matches(|c| c == '│' || c == ' ')
        .trim_start_matches('›')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_filter_matching_nothing_empties_every_pane() {
    let mut app = busy_app();
    let text = screen(&app, 120, 32);
    assert!(text.contains("519 hits"), "{text}");
    assert!(text.contains("vfs_read · 1/s now · max 7/s"), "{text}");
    type_filter(&mut app, "zzz");
    let text = screen(&app, 120, 32);
    assert!(text.contains("filter: zzz — 0 of 519 hits match"), "{text}");
    assert!(text.contains("lost 3 (all comms)"), "{text}");
    assert!(text.contains("comm ~ zzz · LOST: all comms"), "{text}");
    // TARGET SYMBOL ADDRESS MODE HITS HITS/S (HISTORY, blank) LOST
    for (target, lost) in [("vfs_read", "3"), ("vfs_write", "0"), ("pid_max:w", "0")] {
        let row = table_row(&text, target);
        assert_eq!(row[4..], ["0", "0", lost], "{target}:\n{text}");
    }
    assert!(
        text.contains("vfs_read ~ zzz · 0/s now · max 0/s"),
        "{text}"
    );
    // The chart: a flat line at 0, and no other point.
    let plot: String = text.chars().filter(|c| ('⠁'..='⣿').contains(c)).collect();
    assert_eq!(plot, "⣀".repeat(55), "{text}");
    // The details and the log.
    assert_eq!(
        text.matches("no hits from matching comms").count(),
        2,
        "{text}"
    );
    check("busy_filtered_by_zzz", &text);
    for breakdown in Breakdown::ALL {
        app.breakdown = breakdown;
        for selected in 0..3 {
            app.selected = selected;
            let text = screen(&app, 100, 30);
            assert!(
                !text.contains("cat") && !text.contains("bash") && !text.contains("systemd"),
                "{breakdown:?} of {selected}:\n{text}"
            );
        }
    }
}

#[test]
fn a_filter_matching_one_comm_shows_its_counts() {
    let mut app = busy_app();
    type_filter(&mut app, "bash");
    // bash hit vfs_write once every third second of 120, the last at
    // second 117; the view is at 120.5 s.
    app.selected = 1;
    let text = screen(&app, 120, 32);
    assert!(
        text.contains("filter: bash — 40 of 519 hits match"),
        "{text}"
    );
    for (target, hits) in [("vfs_read", "0"), ("vfs_write", "40"), ("pid_max:w", "0")] {
        let row = table_row(&text, target);
        assert_eq!(row[4..6], [hits, "0"], "{target}:\n{text}");
    }
    assert!(
        text.contains("vfs_write ~ bash · 0/s now · max 1/s"),
        "{text}"
    );
    // The caller of vfs_write: the frame under it in the stack.
    assert!(text.contains("  40 100.0% ksys_read "), "{text}");
    check("busy_filtered_by_bash", &text);
    app.breakdown = Breakdown::Comms;
    let text = screen(&app, 120, 32);
    assert!(text.contains("  40 100.0% bash"), "{text}");
    assert!(!text.contains("cat"), "{text}");
}

/// More hits than are kept, two comms on one target: what the filter
/// cannot know is marked, not shown as a figure.
#[test]
fn a_filter_past_the_kept_hits_marks_what_it_cannot_count() {
    let mut hits = Vec::new();
    for i in 0..200 {
        hits.push((0, 1, if i % 2 == 0 { "cat" } else { "sh" }));
    }
    for i in 0..100 {
        hits.push((0, 5, if i % 2 == 0 { "cat" } else { "sh" }));
    }
    let (mut app, stats) = busy(&hits);
    app.refresh(stats, T0 + 6 * S + S / 2);
    type_filter(&mut app, "cat");
    let text = screen(&app, 120, 32);
    assert!(
        text.contains("filter: cat — 150 of 300 hits match"),
        "{text}"
    );
    let row = table_row(&text, "vfs_read");
    assert_eq!(row[4..6], ["150", "50"], "{text}");
    // 7 s a cell: the newest holds seconds before the kept hits too.
    assert_eq!(row[6], "·".repeat(43), "{text}");
    // The chart draws the 4 seconds it knows (1002 to 1005).
    assert!(text.contains("filtered: last 4s kept"), "{text}");
    assert!(
        text.contains("filtered: the last 128 of 150 hits (older ones not kept)"),
        "{text}"
    );
}

#[test]
fn sparkline_scales_to_the_max() {
    assert_eq!(
        super::ui::sparkline(&[Some(0), Some(1), Some(4), Some(8)]),
        " ▁▄█"
    );
    assert_eq!(super::ui::sparkline(&[Some(0), Some(0)]), "  ");
    // Unknown (filtered, older than the hits kept): a dot.
    assert_eq!(super::ui::sparkline(&[None, None, Some(2)]), "··█");
    assert_eq!(super::ui::elapsed(3725.0), "1:02:05");
    assert_eq!(super::ui::elapsed(65.9), "01:05");
}

/// The loop itself, on a TestBackend: messages and keys through the
/// channel, as the session and the input thread send them.
mod event_loop {
    use std::{
        os::unix::fs::PermissionsExt as _,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::tui::{
        Exit, create_private,
        event::{Event, Events},
        run,
        ui::buffer_text,
    };

    fn exited_run() -> (App, Arc<Mutex<Stats>>) {
        let app = App::new(targets(), process(true), 3, vec![]);
        let mut stats = Stats::new(3);
        for i in 0..7 {
            stats.record(0, hit("vfs_read", T0 + i, "fx_user", 4242, 0, "x").into());
        }
        (app, Arc::new(Mutex::new(stats)))
    }

    fn summary(reason: &str) -> Summary {
        Summary {
            end_reason: reason.into(),
            duration_s: 0.5,
            exit_status: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn draws_the_end_then_help_then_quits() {
        let (mut app, stats) = exited_run();
        let mut events = Events::new(Duration::from_millis(5));
        let tx = events.sender();
        for event in [
            Event::Finished(Ok(summary("process-exit"))),
            Event::Key(key(KeyCode::Char('?'))),
        ] {
            tx.send(event).expect("the channel is open");
        }
        // Keys after the help are handled after a few ticks.
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("a test terminal");
        let quit = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            // The SendError carries the (large) event back: only say whether it went.
            tx.send(Event::Key(key(KeyCode::Char('q')))).is_ok()
        });
        let exit = run(&mut terminal, &mut app, &mut events, &stats, None).expect("the loop runs");
        assert!(quit.join().expect("the sender thread"), "sent");
        assert_eq!(exit, Exit::Quit);
        assert!(app.process_exited());
        assert_eq!(app.hits(0), 7);
        let text = buffer_text(terminal.backend().buffer());
        assert!(text.contains("hwbp-trace keys"), "{text}");
        assert!(text.contains("exited, status 3"), "{text}");
    }

    #[test]
    fn reads_the_command_output_on_its_clock() {
        let (mut app, stats) = exited_run();
        app.output = Some(CommandOutputView::new("fx_user".into()));
        let output = crate::probe::process::CommandOutput::of(&["./fx_user".into()]);
        output.push(b"done 7\n");
        let mut events = Events::new(Duration::from_millis(5));
        let tx = events.sender();
        for event in [
            Event::Finished(Ok(summary("process-exit"))),
            Event::Key(key(KeyCode::Char('o'))),
            Event::Key(key(KeyCode::Char('q'))),
        ] {
            tx.send(event).expect("the channel is open");
        }
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("a test terminal");
        let exit = run(&mut terminal, &mut app, &mut events, &stats, Some(&output))
            .expect("the loop runs");
        assert_eq!(exit, Exit::Quit);
        let text = buffer_text(terminal.backend().buffer());
        assert!(text.contains("output of fx_user · 1 line"), "{text}");
        assert!(text.contains("│done 7"), "{text}");
    }

    #[test]
    fn a_signal_or_an_error_closes_it() {
        for event in [
            Event::Finished(Ok(summary("signal"))),
            Event::Finished(Err("ring buffer gone".into())),
            Event::Quit,
        ] {
            let (mut app, stats) = exited_run();
            let mut events = Events::new(Duration::from_millis(5));
            events.sender().send(event).expect("the channel is open");
            let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("a test terminal");
            let exit =
                run(&mut terminal, &mut app, &mut events, &stats, None).expect("the loop runs");
            assert_eq!(exit, Exit::Closed);
        }
    }

    /// The hook is process-wide, and any other test's panic (a failed
    /// assertion) restores the terminal too: the cases run alone, in a
    /// child test process.
    #[test]
    fn a_panic_restores_the_terminal_unless_it_is_caught() {
        const NAME: &str = "tui::tests::event_loop::panic_hook_cases";
        let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", NAME, "--ignored", "--test-threads=1"])
            .env("HWBP_PANIC_HOOK_CASES", "1")
            .output()
            .expect("running the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    #[ignore = "run by a_panic_restores_the_terminal_unless_it_is_caught, alone"]
    fn panic_hook_cases() {
        use std::sync::atomic::Ordering;

        if std::env::var_os("HWBP_PANIC_HOOK_CASES").is_none() {
            return;
        }

        use crate::tui::{HELD_PANICS, TERMINAL_TAKEN, catch_unwind, install_panic_hook};
        install_panic_hook();
        // As if the dashboard had the terminal (restoring a terminal that
        // is not one fails quietly).
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        // A panic the collector catches: the dashboard keeps the terminal,
        // the report waits.
        let caught = std::thread::spawn(|| catch_unwind(|| panic!("a caught bug")).is_err())
            .join()
            .expect("the panic was caught");
        assert!(caught);
        assert!(
            TERMINAL_TAKEN.load(Ordering::SeqCst),
            "a caught panic leaves the terminal to the dashboard"
        );
        let held = HELD_PANICS.lock().expect("the held reports").clone();
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].contains("a caught bug"), "{held:?}");
        // Outside catch_unwind (and after it, on the same thread): restored.
        let panicked = std::thread::spawn(|| {
            let _ = catch_unwind(|| ());
            panic!("a render bug")
        })
        .join();
        assert!(panicked.is_err());
        assert!(
            !TERMINAL_TAKEN.load(Ordering::SeqCst),
            "the hook restored the terminal"
        );
        assert!(
            HELD_PANICS.lock().expect("the held reports").is_empty(),
            "held reports print once the terminal is back"
        );
    }

    #[test]
    fn parent_pids_come_from_proc() {
        let me = std::process::id();
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep starts");
        assert_eq!(crate::tui::parent_of(child.id() as i32), Some(me));
        assert_ne!(crate::tui::parent_of(me as i32), Some(me));
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(crate::tui::parent_of(child.id() as i32), None);
    }

    #[test]
    fn snapshot_files_are_private_and_never_follow_symlinks() {
        let dir = std::env::temp_dir().join(format!("hwbp-tui-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let fresh = dir.join("fresh.txt");
        create_private(&fresh).expect("a new file");
        let mode = std::fs::metadata(&fresh)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Not over an existing file.
        assert_eq!(
            create_private(&fresh).map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::AlreadyExists)
        );
        // Not through a symlink, even a dangling one.
        let victim = dir.join("victim");
        let link = dir.join("link.txt");
        std::os::unix::fs::symlink(&victim, &link).expect("a symlink");
        assert!(create_private(&link).is_err());
        assert!(!victim.exists(), "the symlink was not followed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

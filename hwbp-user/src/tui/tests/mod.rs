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

mod condition;
mod event_loop;
mod filter;
mod help;

pub(super) const S: u64 = 1_000_000_000;

pub(super) fn screen(app: &App, width: u16, height: u16) -> String {
    view_text(app, Size::new(width, height)).expect("rendering on a TestBackend")
}

pub(super) fn check(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"0x[0-9a-f]{6,}", "[ADDR]");
    settings.add_filter(r"\b\d+\.\d{6}:", "[TIME]:");
    settings.add_filter(r"pid \d+", "pid [PID]");
    settings.add_filter(r"\b\d+:\d\d\b", "[ELAPSED]");
    settings.bind(|| insta::assert_snapshot!(name, text));
}

pub(super) fn process(launched: bool) -> Traced {
    Traced::Process {
        pid: 4242,
        name: "fx_user".into(),
        threads: 1,
        launched,
    }
}

#[test]
pub(super) fn armed_no_hits_yet() {
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
pub(super) fn busy_app() -> App {
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
pub(super) fn busy_with_several_targets() {
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
pub(super) fn busy_stacks_and_values() {
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
pub(super) fn redacted_addresses() {
    let mut app = busy_app();
    app.redact = true;
    let text = screen(&app, 120, 32);
    assert!(!text.contains("0xffff"), "{text}");
    assert!(text.contains("0x…"), "{text}");
}

/// `-- fx_user writes 50` under `-o /tmp/t/trace.jsonl`, ended.
pub(super) fn exited_app() -> App {
    let counter = TargetView {
        target: "HWBP_FX_COUNTER:w".into(),
        symbol: "HWBP_FX_COUNTER".into(),
        addr: 0x5555_5555_a008,
        mode: "w",
        data: true,
        len: 8,
        kernel: false,
        condition: None,
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
pub(super) const EXITED_STATUS: [&str; 7] = [
    "ended: process exited",
    "00:01",
    "50 hits",
    "lost 0",
    "pid 4242 fx_user exited, status 0",
    "DR 1/4",
    "writing trace.jsonl",
];

#[test]
pub(super) fn traced_process_exited() {
    let app = exited_app();
    let text = screen(&app, 100, 30);
    for item in EXITED_STATUS {
        assert!(text.contains(item), "{item}:\n{text}");
    }
    check("traced_process_exited", &text);
    let text = screen(&app, 80, 24);
    check("traced_process_exited_80x24", &text);
}

/// The status bar says when only some hits get a record (the log and the
/// values are then a sample; the counts are not).
#[test]
pub(super) fn status_bar_says_the_record_mode() {
    let mut app = exited_app();
    assert!(!screen(&app, 140, 30).contains("records:"));
    app.records = crate::probe::aggregates::Records::Sample(100);
    let text = screen(&app, 140, 30);
    assert!(text.contains("records: sample:100"), "{text}");
}

/// No status item is cut, from the smallest width up: one line when all
/// fit, else two.
#[test]
pub(super) fn status_bar_keeps_every_item_at_any_width() {
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
pub(super) fn an_export_failure_shows_and_writing_stops() {
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
pub(super) fn the_end_shows_the_summary_lost_and_error() {
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
pub(super) fn the_table_history_covers_five_minutes() {
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
pub(super) fn execute_hits_show_their_arguments() {
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
pub(super) fn the_callers_pane_counts_who_called_the_function() {
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
pub(super) fn launched_app(output: &[u8]) -> App {
    let target = TargetView {
        target: "hwbp_fx_target".into(),
        symbol: "hwbp_fx_target".into(),
        addr: 0x5555_5555_9580,
        mode: "x",
        data: false,
        len: 8,
        kernel: false,
        condition: None,
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

pub(super) const OUTPUT: &[u8] = b"starting\nround 1\nround 2\nround 3\nround 4\n\
    name\tcalls\n\x1b[31mwarning:\x1b[0m slow CPU\nprogress 10%\rprogress 50%\rprogress 100%\n\
    a very long line that goes on and on, past the right edge of the panel, and is cut there\n\
    done 20";

#[test]
pub(super) fn command_output() {
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
pub(super) fn output_lines_are_plain_text() {
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

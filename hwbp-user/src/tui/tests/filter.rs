//! What the traced world writes is drawn escaped, and the filter applies
//! to every pane.

use super::*;

/// Every cell of a rendered screen: none may hold a control character,
/// which the terminal would obey (`\e[2J` clears root's screen).
fn control_characters(app: &App, width: u16, height: u16) -> Vec<(u16, u16, String)> {
    use ratatui::{Terminal, backend::TestBackend};
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|f| crate::tui::ui::render(f, app))
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
        condition: None,
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
        crate::tui::ui::sparkline(&[Some(0), Some(1), Some(4), Some(8)]),
        " ▁▄█"
    );
    assert_eq!(crate::tui::ui::sparkline(&[Some(0), Some(0)]), "  ");
    // Unknown (filtered, older than the hits kept): a dot.
    assert_eq!(crate::tui::ui::sparkline(&[None, None, Some(2)]), "··█");
    assert_eq!(crate::tui::ui::elapsed(3725.0), "1:02:05");
    assert_eq!(crate::tui::ui::elapsed(65.9), "01:05");
}

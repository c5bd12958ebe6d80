//! The dashboard's state on its own, without drawing: keys, focus,
//! sorting, breakdowns, and the builders the render tests share.

use super::*;

pub(crate) const T0: u64 = 1_000 * NS_PER_S;

pub(crate) fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

pub(crate) fn hit(
    slot_target: &str,
    ts_ns: u64,
    comm: &str,
    pid: u32,
    cpu: u32,
    ip_sym: &str,
) -> HitRecord {
    serde_json::from_value(serde_json::json!({
        "ts_ns": ts_ns,
        "cpu": cpu,
        "pid": pid,
        "tid": pid,
        "comm": comm,
        "target": slot_target,
        "symbol": slot_target,
        "addr": "0xffffffff81234560",
        "mode": "x",
        "ip": "0xffffffff81234560",
        "ip_sym": ip_sym,
        "kstack": [format!("{slot_target}+0x0"), "ksys_read+0x6b", "do_syscall_64+0x82"],
    }))
    .expect("a valid hit")
}

pub(crate) fn targets() -> Vec<TargetView> {
    vec![
        TargetView {
            target: "vfs_read".into(),
            symbol: "vfs_read".into(),
            addr: 0xffff_ffff_8123_4560,
            mode: "x",
            data: false,
            len: 8,
            kernel: true,
            condition: None,
        },
        TargetView {
            target: "vfs_write".into(),
            symbol: "vfs_write".into(),
            addr: 0xffff_ffff_8123_7890,
            mode: "x",
            data: false,
            len: 8,
            kernel: true,
            condition: None,
        },
        TargetView {
            target: "pid_max:w".into(),
            symbol: "pid_max".into(),
            addr: 0xffff_ffff_8300_1000,
            mode: "w",
            data: true,
            len: 4,
            kernel: true,
            condition: None,
        },
    ]
}

/// A run armed at T0 on 4 CPUs, with `hits` of (slot, second, comm).
pub(crate) fn busy(hits: &[(usize, u64, &str)]) -> (App, Stats) {
    let app = App::new(targets(), Traced::SystemWide { cpus: 4 }, 12, vec![]);
    let mut stats = Stats::new(3);
    stats.started_ns = T0;
    for (i, (slot, s, comm)) in hits.iter().enumerate() {
        let target = app.targets[*slot].target.clone();
        let h = hit(
            &target,
            T0 + s * NS_PER_S + i as u64,
            comm,
            100 + i as u32 % 3,
            i as u32 % 4,
            "ksys_read+0x6b",
        );
        stats.record(*slot, h.clone().into());
    }
    (app, stats)
}

#[test]
fn refresh_shows_counts_and_rates() {
    let (mut app, stats) = busy(&[(0, 1, "cat"), (0, 1, "cat"), (1, 1, "sh"), (0, 2, "cat")]);
    app.refresh(stats, T0 + 2 * NS_PER_S + 500_000_000);
    assert_eq!(app.hits(0), 3);
    assert_eq!(app.hits(1), 1);
    assert_eq!(app.total_hits(), 4);
    // The last complete second is second 1 of the run.
    assert_eq!(app.rate(0), Some(2));
    assert_eq!(app.history(0, 3), vec![Some(0), Some(0), Some(2)]);
    assert_eq!(app.elapsed_s(), 2.5);
}

#[test]
fn pause_freezes_the_view_and_catches_up() {
    let (mut app, stats) = busy(&[(0, 1, "cat")]);
    app.refresh(stats.clone(), T0 + 2 * NS_PER_S);
    assert_eq!(app.handle_key(key(KeyCode::Char('p'))), Action::None);
    assert!(app.paused);
    let mut more = stats;
    more.record(
        0,
        hit("vfs_read", T0 + 3 * NS_PER_S, "cat", 1, 0, "x").into(),
    );
    app.refresh(more, T0 + 4 * NS_PER_S);
    assert_eq!(app.hits(0), 1);
    app.handle_key(key(KeyCode::Char('p')));
    assert_eq!(app.hits(0), 2);
}

#[test]
fn clear_sets_a_baseline() {
    let (mut app, mut stats) = busy(&[(0, 1, "cat"), (1, 1, "sh")]);
    app.refresh(stats.clone(), T0 + 2 * NS_PER_S);
    app.handle_key(key(KeyCode::Char('c')));
    assert_eq!(app.total_hits(), 0);
    assert!(app.log().is_empty());
    stats.record(
        0,
        hit("vfs_read", T0 + 3 * NS_PER_S, "cat", 1, 0, "x").into(),
    );
    app.refresh(stats, T0 + 4 * NS_PER_S);
    assert_eq!(app.hits(0), 1);
    assert_eq!(app.hits(1), 0);
    assert_eq!(app.log().len(), 1);
}

#[test]
fn sort_cycles_and_selection_follows_the_order() {
    let (mut app, stats) = busy(&[
        (0, 1, "a"),
        (1, 1, "a"),
        (1, 1, "a"),
        (2, 1, "a"),
        (2, 1, "a"),
        (2, 1, "a"),
    ]);
    app.refresh(stats, T0 + 2 * NS_PER_S);
    assert_eq!(
        app.rows().iter().map(|r| r.slot).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    app.handle_key(key(KeyCode::Char('s')));
    assert_eq!(app.sort, SortBy::Hits);
    assert_eq!(
        app.rows().iter().map(|r| r.slot).collect::<Vec<_>>(),
        vec![2, 1, 0]
    );
    // Selection moves in display order: from slot 0 (last row) up.
    app.handle_key(key(KeyCode::Char('k')));
    assert_eq!(app.selected, 1);
    app.handle_key(key(KeyCode::Up));
    app.handle_key(key(KeyCode::Up));
    assert_eq!(app.selected, 2);
    for expected in [SortBy::Rate, SortBy::Name, SortBy::Given] {
        app.handle_key(key(KeyCode::Char('s')));
        assert_eq!(app.sort, expected);
    }
}

#[test]
fn filter_by_comm() {
    let (mut app, stats) = busy(&[(0, 1, "cat"), (0, 1, "bash"), (0, 1, "Cat2")]);
    app.refresh(stats, T0 + 2 * NS_PER_S);
    app.handle_key(key(KeyCode::Char('/')));
    for c in "cat".chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    // Keys go to the input line, not to the commands.
    assert!(!app.help);
    assert_eq!(app.filter, None);
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.filter.as_deref(), Some("cat"));
    assert_eq!(app.hits(0), 2);
    assert_eq!(app.log().len(), 2);
    app.breakdown = Breakdown::Comms;
    assert_eq!(
        app.breakdown_rows(),
        vec![(1, "Cat2".to_owned()), (1, "cat".to_owned())]
    );
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.filter, None);
    assert_eq!(app.hits(0), 3);
}

fn filtered(app: &mut App, filter: &str) {
    app.filter = Some(filter.into());
}

/// A filter matching none of the hits: every figure is zero, exactly.
#[test]
fn a_filter_matching_nothing_zeroes_every_figure() {
    let (mut app, stats) = busy(&[(0, 1, "cat"), (0, 2, "sh"), (1, 2, "cat")]);
    app.refresh(stats, T0 + 3 * NS_PER_S + NS_PER_S / 2);
    assert_eq!(app.rate(0), Some(1));
    filtered(&mut app, "zzz");
    assert_eq!(app.total_hits(), 0);
    for slot in 0..3 {
        assert_eq!(app.hits(slot), 0);
        assert_eq!(app.rate(slot), Some(0));
        assert_eq!(app.history(slot, 4), vec![Some(0); 4]);
    }
    assert!(app.rows().iter().all(|r| r.hits == 0 && r.rate == Some(0)));
    for b in Breakdown::ALL {
        app.breakdown = b;
        assert_eq!(app.breakdown_rows(), vec![], "{b:?}");
        assert_eq!(app.breakdown_sample(), None);
    }
    assert!(app.log().is_empty());
}

/// A filter matching some of a target's hits: rates, history and the
/// breakdowns without a comm are counted from the kept hits, exactly
/// while all of them are kept.
#[test]
fn a_filter_counts_rates_and_breakdowns_of_its_comms() {
    let (mut app, stats) = busy(&[
        (0, 1, "cat"),
        (0, 1, "sh"),
        (0, 1, "cat"),
        (0, 2, "cat"),
        (0, 2, "sh"),
        (0, 2, "sh"),
        (1, 2, "sh"),
    ]);
    app.refresh(stats, T0 + 3 * NS_PER_S + NS_PER_S / 2);
    filtered(&mut app, "sh");
    assert_eq!(app.total_hits(), 4);
    assert_eq!(app.hits(0), 3);
    assert_eq!(app.rate(0), Some(2));
    assert_eq!(app.history(0, 3), vec![Some(0), Some(1), Some(2)]);
    // All of vfs_write's hits are sh's: its own figures.
    assert_eq!(app.rate(1), Some(1));
    // busy() gives hit i pid 100 + i % 3 and CPU i % 4: sh's are hits
    // 1, 4 and 5 of vfs_read.
    app.breakdown = Breakdown::Pids;
    assert_eq!(
        app.breakdown_rows(),
        vec![(2, "101".to_owned()), (1, "102".to_owned())]
    );
    app.breakdown = Breakdown::Cpus;
    assert_eq!(
        app.breakdown_rows(),
        vec![(2, "CPU 1".to_owned()), (1, "CPU 0".to_owned())]
    );
    app.breakdown = Breakdown::Callers;
    assert_eq!(app.breakdown_rows(), vec![(3, "ksys_read+0x6b".to_owned())]);
    app.breakdown = Breakdown::Stacks;
    assert_eq!(
        app.breakdown_rows(),
        vec![(
            3,
            "vfs_read+0x0 ← ksys_read+0x6b ← do_syscall_64+0x82".to_owned()
        )]
    );
    assert_eq!(app.breakdown_sample(), None);
    // Sorted by rate, the filter's rates.
    app.sort = SortBy::Rate;
    assert_eq!(
        app.rows()
            .iter()
            .map(|r| (r.slot, r.rate))
            .collect::<Vec<_>>(),
        vec![(0, Some(2)), (1, Some(1)), (2, Some(0))]
    );
}

/// More hits than are kept: seconds before the kept hits are unknown,
/// and the breakdowns say they are a sample.
#[test]
fn a_filter_past_the_kept_hits_says_what_it_does_not_know() {
    let mut hits = Vec::new();
    for i in 0..200 {
        hits.push((0, 1, if i % 2 == 0 { "cat" } else { "sh" }));
    }
    for i in 0..100 {
        hits.push((0, 5, if i % 2 == 0 { "cat" } else { "sh" }));
    }
    let (mut app, stats) = busy(&hits);
    app.refresh(stats, T0 + 6 * NS_PER_S + NS_PER_S / 2);
    filtered(&mut app, "cat");
    assert_eq!(app.hits(0), 150);
    // The last 256 hits: 156 of second 1, which may have lost some.
    assert_eq!(
        app.history(0, 6),
        vec![None, None, Some(0), Some(0), Some(0), Some(50)]
    );
    assert_eq!(app.rate(0), Some(50));
    // One second per cell, in the table's history.
    assert_eq!(
        app.history_cells(0, 300).0[294..],
        [None, None, Some(0), Some(0), Some(0), Some(50)]
    );
    app.breakdown = Breakdown::Callers;
    assert_eq!(
        app.breakdown_rows(),
        vec![(128, "ksys_read+0x6b".to_owned())]
    );
    assert_eq!(app.breakdown_sample(), Some((128, 150)));
    // The comm breakdown is exact.
    app.breakdown = Breakdown::Comms;
    assert_eq!(app.breakdown_rows(), vec![(150, "cat".to_owned())]);
    assert_eq!(app.breakdown_sample(), None);
}

/// After a clear the history goes on (as unfiltered), so the filtered
/// history still counts the hits from before it.
#[test]
fn a_filtered_history_survives_a_clear() {
    let (mut app, mut stats) = busy(&[(0, 1, "cat"), (0, 1, "sh")]);
    app.refresh(stats.clone(), T0 + 2 * NS_PER_S);
    app.clear();
    stats.record(
        0,
        hit("vfs_read", T0 + 2 * NS_PER_S, "sh", 1, 0, "x").into(),
    );
    app.refresh(stats, T0 + 3 * NS_PER_S);
    filtered(&mut app, "sh");
    assert_eq!(app.hits(0), 1);
    assert_eq!(app.history(0, 2), vec![Some(1), Some(1)]);
    filtered(&mut app, "cat");
    assert_eq!(app.hits(0), 0);
    assert_eq!(app.history(0, 2), vec![Some(1), Some(0)]);
}

#[test]
fn keys_navigate_help_and_quit() {
    let (mut app, stats) = busy(&[(0, 1, "cat")]);
    app.refresh(stats, T0 + 2 * NS_PER_S);
    app.handle_key(key(KeyCode::Char('?')));
    assert!(app.help);
    // In the help only ?, Esc, Enter and q do something.
    app.handle_key(key(KeyCode::Char('s')));
    assert_eq!(app.sort, SortBy::Given);
    app.handle_key(key(KeyCode::Esc));
    assert!(!app.help);
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.focus, Focus::Details);
    app.handle_key(key(KeyCode::BackTab));
    assert_eq!(app.focus, Focus::Targets);
    app.handle_key(key(KeyCode::Right));
    assert_eq!(app.breakdown, Breakdown::Comms);
    app.handle_key(key(KeyCode::Left));
    app.handle_key(key(KeyCode::Left));
    assert_eq!(app.breakdown, Breakdown::Values);
    assert_eq!(app.handle_key(key(KeyCode::Char('e'))), Action::Snapshot);
    assert_eq!(app.handle_key(key(KeyCode::Char('q'))), Action::Quit);
    assert_eq!(
        app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
}

#[test]
fn finish_freezes_the_clock_and_marks_the_process() {
    let mut app = App::new(
        targets(),
        Traced::Process {
            pid: 42,
            name: "fx_user".into(),
            threads: 1,
            launched: true,
        },
        3,
        vec![],
    );
    let mut stats = Stats::new(3);
    stats.started_ns = T0;
    stats.record(
        2,
        hit("pid_max:w", T0 + NS_PER_S, "fx_user", 42, 0, "x").into(),
    );
    app.refresh(stats, T0 + 2 * NS_PER_S);
    assert!(!app.process_exited());
    app.finish(&Summary {
        end_reason: "process-exit".into(),
        duration_s: 1.5,
        exit_status: Some(0),
        ..Default::default()
    });
    assert!(app.process_exited());
    assert_eq!(app.elapsed_s(), 1.5);
    assert_eq!(app.hits(2), 1);
    assert_eq!(app.now_ns, T0 + 2_500_000_000);
    assert_eq!(app.rate(2), Some(1));
    // Pausing a finished run does nothing.
    app.handle_key(key(KeyCode::Char('p')));
    assert!(!app.paused);
}

#[test]
fn o_shows_the_command_output_and_scrolls_it() {
    let (mut app, stats) = busy(&[(0, 1, "cat")]);
    app.refresh(stats, T0 + 2 * NS_PER_S);
    // Nothing captured (system-wide): a notice instead.
    app.handle_key(key(KeyCode::Char('o')));
    assert!(!app.show_output);
    assert!(app.message.as_deref().is_some_and(|m| m.contains("-- CMD")));

    app.output = Some(CommandOutputView::new("fx_user".into()));
    let mut tail = OutputTail::default();
    tail.push(b"one\ntwo\nthree\n");
    app.refresh_output(tail.clone());
    app.handle_key(key(KeyCode::Char('o')));
    assert!(app.show_output);
    let shown = |app: &App| app.output.as_ref().map(|o| o.tail.written());
    assert_eq!(shown(&app), Some(3));
    // With the log focused, the keys scroll the output, not the hits.
    app.focus = Focus::Log;
    app.handle_key(key(KeyCode::Char('k')));
    app.handle_key(key(KeyCode::Char('k')));
    app.handle_key(key(KeyCode::Char('k')));
    assert_eq!(app.output.as_ref().map(|o| o.scroll), Some(2));
    assert_eq!(app.log_scroll, 0);
    app.handle_key(key(KeyCode::Char('G')));
    assert_eq!(app.output.as_ref().map(|o| o.scroll), Some(0));
    app.handle_key(key(KeyCode::Char('g')));
    assert_eq!(app.output.as_ref().map(|o| o.scroll), Some(2));
    // Paused, the output is frozen too; resuming catches up.
    app.handle_key(key(KeyCode::Char('p')));
    tail.push(b"four\n");
    app.refresh_output(tail);
    assert_eq!(shown(&app), Some(3));
    app.handle_key(key(KeyCode::Char('p')));
    assert_eq!(shown(&app), Some(4));
    app.handle_key(key(KeyCode::Char('o')));
    assert!(!app.show_output);
}

#[test]
fn frames_are_shortened_to_file_names() {
    assert_eq!(
        short_frame("f+0x30 (/a/b/main.rs:49)"),
        "f+0x30 (main.rs:49)"
    );
    assert_eq!(
        short_frame("f+0x3 (/a/x.rs:1) inlined g (/b/y.rs:2)"),
        "f+0x3 (x.rs:1) inlined g (y.rs:2)"
    );
    assert_eq!(short_frame("vfs_read+0x0"), "vfs_read+0x0");
    assert_eq!(short_frame("odd (/unclosed"), "odd (unclosed");
}

#[test]
fn empty_data_is_fine() {
    let mut app = App::new(vec![], Traced::SystemWide { cpus: 1 }, 0, vec![]);
    app.refresh(Stats::default(), 0);
    for code in [
        KeyCode::Down,
        KeyCode::Up,
        KeyCode::End,
        KeyCode::Tab,
        KeyCode::Down,
        KeyCode::Char('G'),
    ] {
        app.handle_key(key(code));
    }
    assert!(app.rows().is_empty());
    assert!(app.breakdown_rows().is_empty());
    assert_eq!(app.rate(3), Some(0));
    assert_eq!(app.elapsed_s(), 0.0);
}

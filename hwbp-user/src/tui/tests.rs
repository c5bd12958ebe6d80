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
use crate::{process::OutputTail, stats::Stats, trace::Summary};

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

#[test]
fn traced_process_exited() {
    let counter = TargetView {
        target: "HWBP_FX_COUNTER:w".into(),
        symbol: "HWBP_FX_COUNTER".into(),
        addr: 0x5555_5555_a008,
        mode: "w",
        data: true,
        len: 8,
        kernel: false,
    };
    let mut app = App::new(vec![counter], process(true), 1, vec![]);
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
    let text = screen(&app, 100, 30);
    assert!(text.contains("exited, status 0"), "{text}");
    assert!(text.contains("ended: process exited"), "{text}");
    check("traced_process_exited", &text);
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
    for (k, _) in super::ui::KEYS {
        assert!(text.contains(k), "{k} missing from the help:\n{text}");
    }
    check("help_overlay", &text);
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
    assert!(text.contains("40 hits"), "{text}");
}

#[test]
fn sparkline_scales_to_the_max() {
    assert_eq!(super::ui::sparkline(&[0, 1, 4, 8]), " ▁▄█");
    assert_eq!(super::ui::sparkline(&[0, 0]), "  ");
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
        let output = crate::process::CommandOutput::of(&["./fx_user".into()]);
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

    /// One test for both cases: they share the process's terminal state.
    #[test]
    fn a_panic_restores_the_terminal_unless_it_is_caught() {
        use std::sync::atomic::Ordering;

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

//! The loop itself, on a TestBackend: messages and keys through the
//! channel, as the session and the input thread send them.

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
    let exit =
        run(&mut terminal, &mut app, &mut events, &stats, None, None).expect("the loop runs");
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
    let exit = run(
        &mut terminal,
        &mut app,
        &mut events,
        &stats,
        Some(&output),
        None,
    )
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
            run(&mut terminal, &mut app, &mut events, &stats, None, None).expect("the loop runs");
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

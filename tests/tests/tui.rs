//! Root end-to-end test of the dashboard: the real hwbp-trace in a tmux
//! pane of 100×30, driven with send-keys and read with capture-pane, against
//! the fx_user fixture's 50 writes (and its `done 50` on stdout, which the
//! dashboard captures).
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use hwbp_tests::{
    TempDir, fixture, harness::tmux::Tmux, hwbp_trace, root_or_skip, traces::read_trace,
};

/// `line` in a tmux pane of 100×30 (hwbp_tests::harness::tmux), its
/// files in `dir`.
fn pane(dir: &TempDir, line: &str) -> Tmux {
    ok(Tmux::shell(&dir.0, (100, 30), line))
}

/// Waits until the screen satisfies `until`; panics with the screen after
/// `timeout`.
fn wait_for(pane: &Tmux, what: &str, timeout: Duration, until: impl Fn(&str) -> bool) -> String {
    ok(pane.wait_for(what, timeout, until))
}

fn keys(pane: &Tmux, keys: &str) {
    ok(pane.send_keys(keys));
}

/// Whether the pane is on the alternate screen.
fn alternate_on(pane: &Tmux) -> bool {
    ok(pane.alternate_on())
}

/// The pid of the program the pane's shell runs (hwbp-trace).
fn tracer(pane: &Tmux) -> u32 {
    *children(ok(pane.pane_pid()))
        .first()
        .expect("hwbp-trace runs in the pane")
}

fn ok<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e:#}"))
}

/// The HITS cell of a target's row in the targets table.
fn hits_cell(screen: &str, target: &str) -> Option<String> {
    let row = screen
        .lines()
        .find(|l| l.contains(&format!("›{target} ")) || l.contains(&format!("│ {target} ")))?;
    let cells: Vec<&str> = row
        .trim_matches(|c| c == '│' || c == ' ')
        .split_whitespace()
        .collect();
    // TARGET SYMBOL [ADDRESS] MODE HITS ...: HITS follows the mode.
    let mode = cells.iter().position(|c| ["x", "w", "rw"].contains(c))?;
    cells.get(mode + 1).map(|s| (*s).to_owned())
}

#[test]
fn dashboard_shows_exact_hits_help_and_quits_cleanly() {
    if !root_or_skip("dashboard_shows_exact_hits_help_and_quits_cleanly") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!(
            "SKIPPED dashboard_shows_exact_hits_help_and_quits_cleanly: tmux is not installed (apt-get install tmux)"
        );
        return;
    }
    let dir = TempDir::new("tui");
    let trace = hwbp_trace().display().to_string();
    let fx = fixture("fx_user").display().to_string();
    // After hwbp-trace: its status, then the terminal's modes (raw mode
    // would show as -icanon -echo).
    let command = format!(
        "cd '{}' && '{trace}' HWBP_FX_COUNTER:w -- '{fx}' writes 50; echo EXIT=$?; stty -a; sleep 600",
        dir.0.display()
    );
    let pane = pane(&dir, &command);

    // The fixture finishes at once; the dashboard stays up with the final state.
    let screen = wait_for(
        &pane,
        "50 hits and the process exited",
        Duration::from_secs(30),
        |s| {
            hits_cell(s, "HWBP_FX_COUNTER:w").as_deref() == Some("50")
                && s.contains("exited, status 0")
        },
    );
    assert!(
        screen.contains("50 hits │"),
        "the status bar counts 50 hits:\n{screen}"
    );
    assert!(screen.contains("ended: process exited"), "{screen}");
    assert!(
        screen.contains("hwbp_fx_writer"),
        "the caller is named:\n{screen}"
    );
    assert!(
        alternate_on(&pane),
        "the dashboard is on the alternate screen"
    );

    // The fixture's `done 50` went into a pipe, not onto the dashboard's
    // screen; the hits panel says where it is.
    let screen = wait_for(
        &pane,
        "the command's output counted",
        Duration::from_secs(5),
        |s| s.contains("fx_user output: 1 line (o)"),
    );
    assert!(
        !screen.contains("done 50"),
        "the command's output is not on the screen:\n{screen}"
    );
    keys(&pane, "o");
    let output = wait_for(&pane, "the command's output", Duration::from_secs(5), |s| {
        s.contains("output of fx_user · 1 line")
    });
    assert!(
        output.lines().any(|l| l.starts_with("│done 50 ")),
        "o shows the command's output:\n{output}"
    );
    keys(&pane, "o");
    let hits = wait_for(&pane, "the hits again", Duration::from_secs(5), |s| {
        s.contains("latest hits")
    });
    assert!(!hits.contains("done 50"), "{hits}");

    keys(&pane, "?");
    let help = wait_for(&pane, "the help overlay", Duration::from_secs(5), |s| {
        s.contains("hwbp-trace keys")
    });
    for line in [
        "quit: end the trace",
        "pause the display",
        "clear counters",
        "filter by comm",
    ] {
        assert!(help.contains(line), "the help lists `{line}`:\n{help}");
    }
    keys(&pane, "Escape");
    wait_for(&pane, "the help closed", Duration::from_secs(5), |s| {
        !s.contains("hwbp-trace keys")
    });

    // e writes the view to a file of the current directory, mode 0600.
    keys(&pane, "e");
    wait_for(&pane, "the snapshot notice", Duration::from_secs(5), |s| {
        s.contains("view written to")
    });
    let snapshots: Vec<_> = fs::read_dir(&dir.0)
        .expect("reading the test directory")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("hwbp-dashboard-")
        })
        .collect();
    assert_eq!(snapshots.len(), 1, "one snapshot file");
    let snapshot = fs::read_to_string(snapshots[0].path()).expect("reading the snapshot");
    assert_eq!(
        hits_cell(&snapshot, "HWBP_FX_COUNTER:w").as_deref(),
        Some("50"),
        "{snapshot}"
    );
    let mode = snapshots[0]
        .metadata()
        .expect("snapshot metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the snapshot is private");

    keys(&pane, "q");
    // Until `stty -a` has printed too: EXIT= alone can be on the screen
    // before the modes are.
    let end = wait_for(&pane, "hwbp-trace to exit", Duration::from_secs(10), |s| {
        s.contains("EXIT=") && s.contains("icanon")
    });
    assert!(end.contains("EXIT=0"), "exit status 0:\n{end}");
    assert!(!alternate_on(&pane), "back on the normal screen");
    // The command's output printed on the normal screen, after a note and
    // before the summary.
    let lines: Vec<&str> = end.lines().map(str::trim_end).collect();
    let note = lines
        .iter()
        .position(|l| *l == "hwbp-trace: output of fx_user:")
        .unwrap_or_else(|| panic!("the note before the command's output:\n{end}"));
    assert_eq!(lines.get(note + 1), Some(&"done 50"), "{end}");
    let summary = lines
        .iter()
        .position(|l| l.starts_with("50 hits in"))
        .unwrap_or_else(|| panic!("the summary:\n{end}"));
    assert!(note < summary, "the output before the summary:\n{end}");
    // The summary table printed on the normal screen.
    assert!(end.contains("50 hits in"), "{end}");
    assert!(end.contains("command exited with status 0"), "{end}");
    // Cooked mode again: raw mode would show -icanon and -echo.
    let modes: Vec<&str> = end.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(
            modes.contains(&mode),
            "terminal mode {mode} restored:\n{end}"
        );
    }
}

/// Whether a process has ended (gone, or a zombie).
fn ended(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_terminal_hang_up_ends_the_dashboard() {
    if !root_or_skip("a_terminal_hang_up_ends_the_dashboard") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!(
            "SKIPPED a_terminal_hang_up_ends_the_dashboard: tmux is not installed (apt-get install tmux)"
        );
        return;
    }
    let trace = hwbp_trace().display().to_string();
    let fx = fixture("fx_user").display().to_string();
    let dir = TempDir::new("tui-hup");
    let pane = pane(
        &dir,
        &format!("'{trace}' hwbp_fx_target -- '{fx}' spin 30; sleep 600"),
    );
    wait_for(&pane, "tracing with hits", Duration::from_secs(30), |s| {
        s.contains("● tracing") && hits_cell(s, "hwbp_fx_target").is_some_and(|h| h != "0")
    });
    let tracer = tracer(&pane);
    // The terminal goes away under the dashboard (a closed window, a lost ssh).
    drop(pane);
    let start = Instant::now();
    while !ended(tracer) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "hwbp-trace {tracer} still runs 10 s after its terminal hung up"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Root and tmux, or a loud skip.
fn root_and_tmux_or_skip(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED {test}: tmux is not installed (apt-get install tmux)");
        return false;
    }
    true
}

/// After `...; echo EXIT=$?; stty -a`: hwbp-trace's exit status, and
/// the terminal in cooked mode again (raw mode shows -icanon -echo).
fn assert_exit_and_cooked(pane: &Tmux, status: i32) -> String {
    let end = wait_for(pane, "hwbp-trace to exit", Duration::from_secs(15), |s| {
        s.contains("EXIT=") && s.contains("icanon")
    });
    assert!(
        end.contains(&format!("EXIT={status}\n")),
        "exit status {status}:\n{end}"
    );
    assert!(!alternate_on(pane), "back on the normal screen:\n{end}");
    let modes: Vec<&str> = end.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(
            modes.contains(&mode),
            "terminal mode {mode} restored:\n{end}"
        );
    }
    end
}

/// `-o t.jsonl` is written while the dashboard runs: every hit and the
/// summary.
#[test]
fn the_dashboard_writes_o_files() {
    if !root_and_tmux_or_skip("the_dashboard_writes_o_files") {
        return;
    }
    let dir = TempDir::new("tui-o");
    let trace = hwbp_trace().display().to_string();
    let fx = fixture("fx_user").display().to_string();
    let command = format!(
        "cd '{}' && '{trace}' HWBP_FX_COUNTER:w -o t.jsonl -- '{fx}' writes 50; echo EXIT=$?; stty -a; sleep 600",
        dir.0.display()
    );
    let pane = pane(&dir, &command);
    let screen = wait_for(
        &pane,
        "50 hits and the process exited",
        Duration::from_secs(30),
        |s| {
            hits_cell(s, "HWBP_FX_COUNTER:w").as_deref() == Some("50")
                && s.contains("exited, status 0")
        },
    );
    assert!(screen.contains("writing t.jsonl"), "{screen}");
    keys(&pane, "q");
    assert_exit_and_cooked(&pane, 0);
    let text = fs::read_to_string(dir.path("t.jsonl")).expect("reading t.jsonl");
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("a JSON line ({e}): {l}"));
            v["type"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "hit").count(), 50, "{text}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "summary").count(),
        1,
        "{text}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("summary"), "{text}");
}

/// `-p PID`: the dashboard shows the process exited (without a status:
/// hwbp-trace is not its parent) and stays up until `q`.
#[test]
fn with_p_the_dashboard_outlives_the_process() {
    if !root_and_tmux_or_skip("with_p_the_dashboard_outlives_the_process") {
        return;
    }
    let dir = TempDir::new("tui-p");
    let trace = hwbp_trace().display().to_string();
    let fx = fixture("fx_user").display().to_string();
    let go = dir.path("go");
    // The shell starts the fixture (and reaps it); hwbp-trace attaches to it
    // once the forked shell has become fx_user (before its exec, /proc/PID
    // is still the shell, which has no HWBP_FX_COUNTER).
    let command = format!(
        "'{fx}' --wait '{go}' writes 50 >/dev/null & p=$!; \
         until readlink /proc/$p/exe | grep -q 'fx_user$'; do sleep 0.01; done; \
         '{trace}' -p $p HWBP_FX_COUNTER:w; echo EXIT=$?; stty -a; sleep 600"
    );
    let pane = pane(&dir, &command);
    wait_for(
        &pane,
        "the dashboard, armed",
        Duration::from_secs(30),
        |s| s.contains("● tracing") && s.contains("fx_user running"),
    );
    fs::write(&go, b"").expect("creating the go file");
    let screen = wait_for(
        &pane,
        "50 hits and the process exited",
        Duration::from_secs(30),
        |s| {
            hits_cell(s, "HWBP_FX_COUNTER:w").as_deref() == Some("50")
                && s.contains("fx_user exited")
        },
    );
    assert!(screen.contains("ended: process exited"), "{screen}");
    assert!(
        !screen.contains("exited, status"),
        "-p cannot know the exit status:\n{screen}"
    );
    // Still up, on the alternate screen, until q.
    assert!(alternate_on(&pane), "{screen}");
    keys(&pane, "?");
    wait_for(
        &pane,
        "the help after the exit",
        Duration::from_secs(5),
        |s| s.contains("hwbp-trace keys"),
    );
    keys(&pane, "Escape");
    keys(&pane, "q");
    let end = assert_exit_and_cooked(&pane, 0);
    assert!(end.contains("50 hits in"), "the summary:\n{end}");
}

/// SIGTERM to hwbp-trace under the dashboard: the terminal comes back and
/// the summary prints.
#[test]
fn sigterm_restores_the_terminal_and_prints_the_summary() {
    if !root_and_tmux_or_skip("sigterm_restores_the_terminal_and_prints_the_summary") {
        return;
    }
    let trace = hwbp_trace().display().to_string();
    let fx = fixture("fx_user").display().to_string();
    let dir = TempDir::new("tui-term");
    // One call per millisecond: little CPU for the other users.
    let command = format!(
        "'{trace}' hwbp_fx_target -- '{fx}' spin 30 1000; echo EXIT=$?; stty -a; sleep 600"
    );
    let pane = pane(&dir, &command);
    wait_for(&pane, "tracing with hits", Duration::from_secs(30), |s| {
        s.contains("● tracing") && hits_cell(s, "hwbp_fx_target").is_some_and(|h| h != "0")
    });
    let tracer = tracer(&pane);
    let traced = children(tracer);
    // SAFETY: kill(2) takes no pointers; `tracer` is the pane's child.
    assert_eq!(unsafe { libc::kill(tracer as i32, libc::SIGTERM) }, 0);
    let end = assert_exit_and_cooked(&pane, 0);
    let lines: Vec<&str> = end.lines().map(str::trim_end).collect();
    let summary = lines
        .iter()
        .find(|l| l.contains(" hits in "))
        .unwrap_or_else(|| panic!("the summary:\n{end}"));
    assert!(
        summary.contains("signal"),
        "ended by the signal: {summary}\n{end}"
    );
    // The command outlives the trace (as with perf): end it here.
    for pid in traced {
        // SAFETY: as above; the fixture was hwbp-trace's child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// A panic the collector catches (fault injection) leaves the dashboard
/// up, showing the error, until `q`; then the terminal is restored, the
/// panic's report and the summary print, and the exit status says so.
#[test]
fn a_caught_collector_panic_keeps_the_dashboard_until_q() {
    if !root_and_tmux_or_skip("a_caught_collector_panic_keeps_the_dashboard_until_q") {
        return;
    }
    let trace = hwbp_trace().display().to_string();
    let fx = fixture("fx_user").display().to_string();
    let command = format!(
        "HWBP_FAULT_PANIC_AFTER=10 '{trace}' HWBP_FX_COUNTER:w -- '{fx}' writes 50; echo EXIT=$?; stty -a; sleep 600"
    );
    let dir = TempDir::new("tui-panic");
    let jsonl = dir.path("t.jsonl");
    let command = command.replacen(
        "HWBP_FX_COUNTER:w",
        &format!("-o '{jsonl}' HWBP_FX_COUNTER:w"),
        1,
    );
    let pane = pane(&dir, &command);
    let screen = wait_for(
        &pane,
        "the error on the dashboard",
        Duration::from_secs(30),
        |s| s.contains("ended: error"),
    );
    assert!(
        screen.contains("error: internal error while recording hits: fault injection"),
        "{screen}"
    );
    assert!(alternate_on(&pane), "the dashboard is still up:\n{screen}");
    assert!(
        !screen.contains("panicked at"),
        "nothing written over it:\n{screen}"
    );
    // The trace's summary is written before the dashboard says the run
    // ended. The dashboard's count is the kernel's: every write until the
    // run ended, recorded or not (10 recorded, the rest lost and said).
    let (_, _, summary) = read_trace(&jsonl);
    let counted = summary["targets"][0]["counted"].as_u64().expect("counted");
    assert!(counted >= 10, "{summary}");
    wait_for(&pane, "the kernel's count", Duration::from_secs(5), |s| {
        hits_cell(s, "HWBP_FX_COUNTER:w") == Some(counted.to_string())
    });
    // Keys still work: the terminal is still in raw mode.
    keys(&pane, "?");
    wait_for(&pane, "the help", Duration::from_secs(5), |s| {
        s.contains("hwbp-trace keys")
    });
    keys(&pane, "q");
    let end = assert_exit_and_cooked(&pane, 1);
    assert!(
        end.contains("panicked at"),
        "the panic's report, after:\n{end}"
    );
    assert!(end.contains("tracing ended early"), "{end}");
    assert!(end.contains("10 hits in"), "the summary:\n{end}");
}

/// The dashboard's keys change the targets while tracing (`m` moves, `a`
/// adds, space pauses, `x` then `y` removes), each answer in the status
/// line, each change a `change` record in `-o t.jsonl`: the fixture writes
/// FX_LIVE_A 50 times, waits, then FX_LIVE_A and FX_LIVE_B 50 times each
/// (tests/tests/live.rs does the same through --control).
#[test]
fn dashboard_keys_change_the_targets() {
    if !root_and_tmux_or_skip("dashboard_keys_change_the_targets") {
        return;
    }
    let dir = TempDir::new("tui-live");
    let trace = hwbp_trace().display().to_string();
    let fx = fixture("fx_user").display().to_string();
    let (ready, go) = (dir.path("ready"), dir.path("go"));
    let command = format!(
        "cd '{}' && '{trace}' FX_LIVE_A:w -o t.jsonl -- '{fx}' phases 50 '{ready}' '{go}'; echo EXIT=$?; stty -a; sleep 600",
        dir.0.display()
    );
    let pane = ok(Tmux::shell(&dir.0, (120, 30), &command));
    wait_for(&pane, "the first phase", Duration::from_secs(30), |s| {
        hits_cell(s, "FX_LIVE_A:w").as_deref() == Some("50")
    });
    assert!(std::path::Path::new(&ready).exists());
    let wait = |what: &str, text: &str| {
        wait_for(&pane, what, Duration::from_secs(10), |s| s.contains(text))
    };
    // m: the prompt starts from the target as written.
    keys(&pane, "m");
    wait("the move prompt", "move `FX_LIVE_A:w` to: FX_LIVE_A:w");
    for _ in 0.."FX_LIVE_A:w".len() {
        keys(&pane, "BSpace");
    }
    keys(&pane, "FX_LIVE_B:w");
    keys(&pane, "Enter");
    wait("the move", "moved `FX_LIVE_A:w` to `FX_LIVE_B:w` (modify)");
    // An error changes nothing and says why.
    keys(&pane, "a");
    wait("the add prompt", "add target:");
    keys(&pane, "no_such_symbol_here:w");
    keys(&pane, "Enter");
    wait("the refusal", "error: unknown symbol `no_such_symbol_here`");
    keys(&pane, "a");
    keys(&pane, "FX_LIVE_A:w");
    keys(&pane, "Enter");
    wait("the add", "added `FX_LIVE_A:w`");
    keys(&pane, "j");
    keys(&pane, "Space");
    wait("the pause", "paused `FX_LIVE_A:w`");
    keys(&pane, "x");
    wait("the confirmation", "remove `FX_LIVE_A:w [paused]`? y/n");
    keys(&pane, "y");
    let screen = wait("the removal", "removed `FX_LIVE_A:w`");
    assert!(screen.contains("FX_LIVE_A:w [removed]"), "{screen}");
    fs::write(&go, "").expect("creating go");
    let screen = wait_for(
        &pane,
        "the second phase and the exit",
        Duration::from_secs(30),
        |s| hits_cell(s, "FX_LIVE_B:w").as_deref() == Some("100") && s.contains("exited, status 0"),
    );
    assert_eq!(
        hits_cell(&screen, "FX_LIVE_A:w [removed]").as_deref(),
        Some("0"),
        "{screen}"
    );
    keys(&pane, "q");
    assert_exit_and_cooked(&pane, 0);
    let text = fs::read_to_string(dir.path("t.jsonl")).expect("reading t.jsonl");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let changes: Vec<(String, u64)> = lines
        .iter()
        .filter(|l| l["type"] == "change")
        .map(|c| {
            (
                c["action"].as_str().unwrap_or("").to_owned(),
                c["id"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let expected = [("move", 0), ("add", 1), ("pause", 1), ("remove", 1)];
    assert_eq!(
        changes,
        expected.map(|(a, id)| (a.to_owned(), id)),
        "{text}"
    );
    let hits = |symbol: &str| {
        lines
            .iter()
            .filter(|l| l["type"] == "hit" && l["symbol"] == symbol)
            .count()
    };
    assert_eq!(hits("FX_LIVE_A"), 50, "{text}");
    assert_eq!(hits("FX_LIVE_B"), 50, "{text}");
    let summary = lines.last().expect("a summary");
    assert_eq!(summary["targets"][1]["removed"], true, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
}

//! Root integration tests: every way a trace ends (signals, `-d`, a
//! reader that cannot keep up, SIGKILL, an exec, the command's exit status,
//! a full disk, a panic) disarms, drains and writes a complete summary.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use hwbp_tests::traces::{
    fx, kill, read_trace, still_running, summary_hits, threads_fixture, trace_ok, traced_pid,
};
use hwbp_tests::{
    TempDir, first_stderr_line, fixture,
    host::{self},
    hwbp_trace, root_or_skip, run, stderr, stdout,
};
use serde_json::Value;

/// How a stop test ends the run: a signal, or `-d`.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Signal(i32),
    Duration(&'static str),
}

/// Traces the spin fixture (`fixture_args`) with `extra` options until
/// `stop`, with hit lines (when not -q) going to a reader that takes
/// `read_pause` between 16 KiB reads. Returns the tracer's exit status and
/// whether the fixture was still running when the tracer had exited (the
/// fixture is killed afterwards).
fn trace_until(
    stop: Stop,
    extra: &[&str],
    fixture_args: &[&str],
    read_pause: Duration,
) -> (std::process::ExitStatus, bool) {
    use std::io::Read as _;
    let mut args: Vec<&str> = vec!["--no-tui"];
    args.extend(extra);
    if let Stop::Duration(d) = stop {
        args.extend(["-d", d]);
    }
    let fx = fx();
    args.extend(["hwbp_fx_target", "--", &fx]);
    args.extend(fixture_args);
    let mut tracer = Command::new(hwbp_trace())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hwbp-trace");
    let mut out = tracer.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut buf = vec![0; 16 << 10];
        while matches!(out.read(&mut buf), Ok(n) if n > 0) {
            thread::sleep(read_pause);
        }
    });
    let line = first_stderr_line(&mut tracer);
    let pid = traced_pid(&line);
    if let Stop::Signal(sig) = stop {
        thread::sleep(Duration::from_millis(300));
        kill(tracer.id() as i32, sig);
    }
    let status = tracer.wait().expect("tracer");
    let running = still_running(pid);
    // The fixture holds the other end of the pipes: end it, then the reader.
    kill(pid, libc::SIGKILL);
    reader.join().expect("stdout reader");
    (status, running)
}

/// SIGINT, SIGTERM, SIGHUP and -d each end tracing the same way: disarm,
/// drain, a complete file whose summary counts exactly its lines. The
/// fixture sleeps 200 us between calls: a few thousand small hits, no drops.
#[test]
fn every_stop_writes_the_summary() {
    if !root_or_skip("every_stop_writes_the_summary") {
        return;
    }
    let dir = TempDir::new("stops");
    for (stop, reason) in [
        (Stop::Signal(libc::SIGINT), "signal"),
        (Stop::Signal(libc::SIGTERM), "signal"),
        (Stop::Signal(libc::SIGHUP), "signal"),
        (Stop::Duration("0.5"), "duration"),
    ] {
        let out_file = dir.path(&format!("{stop:?}.jsonl"));
        let (status, running) = trace_until(
            stop,
            &["-q", "-o", &out_file],
            &["spin", "20", "200"],
            Duration::ZERO,
        );
        assert!(status.success(), "{stop:?}: {status}");
        assert!(running, "{stop:?} ended the run, not the fixture's exit");
        let (_, hits, summary) = read_trace(&out_file);
        assert_eq!(summary["end_reason"], reason, "{stop:?}");
        assert!(!hits.is_empty(), "{stop:?}: the fixture was calling");
        assert_eq!(summary_hits(&summary, 0), hits.len() as u64, "{stop:?}");
        assert_eq!(summary["lost"], 0, "{stop:?}");
        assert_eq!(
            summary["targets"][0]["kernel_count"].as_u64(),
            Some(hits.len() as u64),
            "{stop:?}: every hit the kernel counted is recorded"
        );
    }
}

/// A reader that cannot keep up (hit lines piped into a slow consumer, an
/// unpaced fixture) must still stop at once on a signal or at the -d
/// deadline, not when the hits stop: the 1 MiB ring buffer then always holds
/// more than one batch, so it is always readable, and the loop must still
/// let signals and timers in. Every hit
/// the kernel counted is recorded or counted as dropped.
#[test]
fn a_saturated_reader_still_stops_when_asked() {
    if !root_or_skip("a_saturated_reader_still_stops_when_asked") {
        return;
    }
    let dir = TempDir::new("saturated");
    for (stop, reason) in [
        (Stop::Signal(libc::SIGINT), "signal"),
        (Stop::Duration("0.5"), "duration"),
    ] {
        let out_file = dir.path(&format!("{stop:?}.jsonl"));
        let (status, running) = trace_until(
            stop,
            &[
                "--buffer-size",
                "1048576",
                "--stack",
                "none",
                "-o",
                &out_file,
            ],
            &["spin", "20"],
            Duration::from_millis(2),
        );
        assert!(status.success(), "{stop:?}: {status}");
        assert!(
            running,
            "{stop:?} must end the run while the fixture still calls"
        );
        let (_, hits, summary) = read_trace(&out_file);
        assert_eq!(summary["end_reason"], reason, "{stop:?}");
        let target = &summary["targets"][0];
        let dropped = target["dropped"].as_u64().expect("dropped");
        assert_eq!(summary_hits(&summary, 0), hits.len() as u64, "{stop:?}");
        assert_eq!(
            target["kernel_count"].as_u64(),
            Some(hits.len() as u64 + dropped),
            "{stop:?}: recorded + dropped = what the kernel counted"
        );
        assert_eq!(summary["lost"].as_u64(), Some(dropped), "{stop:?}");
    }
}

/// A reader that fell behind takes the backlog at once, not one batch per
/// 20 ms poll. The program wakes it only when the waiting bytes cross a
/// threshold, and two CPUs can both miss the crossing; above it no record
/// wakes it again. Here wakeups are off (HWBP_WAKEUP_BYTES=4294967295) and
/// both CPUs hit as fast as they can: a reader that took one batch (1024)
/// per poll would read about 51,000 hits a second, far fewer than two CPUs
/// make, and its 4 MiB buffer (~30,000 records) would overflow.
#[test]
fn a_reader_behind_takes_the_backlog_without_wakeups() {
    if !root_or_skip("a_reader_behind_takes_the_backlog_without_wakeups") {
        return;
    }
    let dir = TempDir::new("backlog");
    let go = dir.path("go");
    let (mut child, pid) = threads_fixture(&go, &["2", "0", "100000"]);
    let mut tracer = Command::new(hwbp_trace())
        .args([
            "--no-tui",
            "-q",
            "--stack",
            "none",
            "--buffer-size",
            "4194304",
            "-p",
            &pid.to_string(),
            "hwbp_fx_target",
        ])
        .env("HWBP_WAKEUP_BYTES", "4294967295")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hwbp-trace");
    let line = first_stderr_line(&mut tracer);
    assert!(line.starts_with("Tracing 1 target"), "{line}");
    fs::write(&go, "").expect("touch go");
    assert!(child.wait().expect("fixture").success());
    let out = tracer.wait_with_output().expect("tracer");
    let err = format!("{line}{}", stderr(&out));
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("200000 hits in ") && l.ends_with("lost: 0")),
        "every one of the 200000 hits recorded, none lost:\n{err}"
    );
}

/// A run that fails before tracing (an unknown symbol, a bad option)
/// leaves an existing trace file exactly as it was.
#[test]
fn a_failed_run_leaves_an_existing_trace_untouched() {
    if !root_or_skip("a_failed_run_leaves_an_existing_trace_untouched") {
        return;
    }
    let dir = TempDir::new("keep");
    let out_file = dir.path("t.jsonl");
    let before = "{\"type\":\"header\"}\nprevious trace\n";
    fs::write(&out_file, before).expect("write the old trace");
    let fx = fx();
    for args in [
        vec!["-o", &out_file, "no_such_symbol"],
        vec!["-o", &out_file, "no_such_symbol", "--", &fx, "calls", "1"],
        vec![
            "-o",
            &out_file,
            "--buffer-size",
            "1000",
            "hwbp_fx_target",
            "--",
            &fx,
            "calls",
            "1",
        ],
        // Five targets: the fifth has no debug register (fails at opening).
        vec![
            "-o",
            &out_file,
            "HWBP_FX_COUNTER",
            "hwbp_fx_target",
            "hwbp_fx_caller",
            "hwbp_fx_writer",
            "hwbp_fx_reader",
            "--",
            &fx,
            "calls",
            "1",
        ],
    ] {
        let mut full = vec!["--no-tui", "-q"];
        full.extend(args.iter().copied());
        let out = run(&full);
        assert!(!out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(
            fs::read_to_string(&out_file).expect("the old trace"),
            before,
            "{args:?}: the file is unchanged"
        );
    }
}

/// After SIGKILL the kernel closes the descriptors: every debug register
/// hwbp-trace held is free again, as the host's own probe shows.
#[test]
fn sigkill_leaves_nothing_armed() {
    if !root_or_skip("sigkill_leaves_nothing_armed") {
        return;
    }
    let free_before = host::free_debug_registers();
    let free = free_before.iter().copied().min().unwrap_or(0);
    assert!(
        free > 0,
        "no debug register free on some CPU: {free_before:?}"
    );
    let targets = [
        "hwbp_fx_target",
        "HWBP_FX_COUNTER",
        "hwbp_fx_caller",
        "hwbp_fx_writer",
    ];
    let mut tracer = Command::new(hwbp_trace())
        .args(["--no-tui", "-q"])
        .args(&targets[..free])
        .arg("--")
        .arg(fixture("fx_user"))
        .args(["spin", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hwbp-trace");
    let line = first_stderr_line(&mut tracer);
    assert!(line.starts_with("Tracing "), "{line}");
    // While it runs, the registers it holds are taken (the fixture's
    // threads are per-task, and x86 reserves their slots on every CPU).
    let held = host::free_debug_registers();
    assert!(
        held.iter()
            .zip(&free_before)
            .all(|(now, before)| now < before),
        "armed: {held:?}, before: {free_before:?}"
    );
    tracer.kill().expect("SIGKILL");
    let _ = tracer.wait();
    let _ = Command::new("pkill")
        .args(["-f", "fx_user spin 30"])
        .status();
    // Wait for the fixture to be gone: its events die with it.
    for _ in 0..100 {
        if host::free_debug_registers() == free_before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(host::free_debug_registers(), free_before);
    // And as many targets as before can be armed and count exactly:
    // 10 calls of hwbp_fx_target.
    let fx = fx();
    let out = run(&["--no-tui", "-q", "hwbp_fx_target", "--", &fx, "calls", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("10 hits"), "{}", stderr(&out));
}

/// An exec replaces the image a user target points into: the kernel drops
/// the breakpoints (remove_on_exec) and tracing ends cleanly with a summary.
/// Also when the command execs at once, before any call: the image is taken
/// before it runs, so even that exec is noticed.
#[test]
fn exec_mid_trace_ends_cleanly() {
    if !root_or_skip("exec_mid_trace_ends_cleanly") {
        return;
    }
    let dir = TempDir::new("exec-mid");
    let fx = fx();
    for calls_before in ["40", "0"] {
        let out_file = dir.path(&format!("exec-{calls_before}.jsonl"));
        let (_, hits, summary) = trace_ok(
            &out_file,
            &[
                "hwbp_fx_target",
                "--",
                &fx,
                "exec",
                calls_before,
                &fx,
                "--delay-ms",
                "2000",
                "calls",
                "30",
            ],
        );
        let expected: usize = calls_before.parse().expect("a number");
        assert_eq!(hits.len(), expected, "only the calls before exec");
        assert_eq!(summary["end_reason"], "process-exec", "{calls_before}");
        assert_eq!(
            summary["targets"][0]["kernel_count"], expected,
            "nothing fired after exec"
        );
    }
}

/// hwbp-trace exits as the command it started did, as timeout(1) does: N
/// for `exit N`, 128 + S for death by signal S; the summary says which.
#[test]
fn the_exit_status_is_the_commands() {
    if !root_or_skip("the_exit_status_is_the_commands") {
        return;
    }
    let dir = TempDir::new("exit-status");
    for (how, code, signal, said) in [
        ("exit", 7, None, "; command exited with status 7\n"),
        (
            "signal",
            137,
            Some("SIGKILL"),
            "; command killed by SIGKILL\n",
        ),
    ] {
        let jsonl = dir.path("t.jsonl");
        let arg = if how == "exit" { "7" } else { "9" };
        let out = run(&[
            "--no-tui",
            "-q",
            "-o",
            &jsonl,
            "hwbp_fx_target",
            "--",
            &fx(),
            how,
            "3",
            arg,
        ]);
        assert_eq!(out.status.code(), Some(code), "{how}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{how}: {}", stderr(&out));
        assert_eq!(stdout(&out), "done 3\n");
        let (_, hits, summary) = read_trace(&jsonl);
        assert_eq!(hits.len(), 3, "{how}");
        assert_eq!(summary["end_reason"], "process-exit", "{how}");
        assert_eq!(summary["exit_status"], code, "{how}");
        assert_eq!(
            summary.get("signal"),
            signal.map(Value::from).as_ref(),
            "{how}: {summary}"
        );
    }
}

/// Ctrl-C in a shell sends SIGINT to the whole foreground process group,
/// hwbp-trace and its command alike: that is how a user ends a trace, and
/// it is a success (exit 0), not the command's 130.
#[test]
fn ctrl_c_ends_the_trace_with_success() {
    if !root_or_skip("ctrl_c_ends_the_trace_with_success") {
        return;
    }
    use std::os::unix::process::CommandExt as _;
    let dir = TempDir::new("ctrl-c");
    let jsonl = dir.path("t.jsonl");
    let mut tracer = Command::new(hwbp_trace())
        .args([
            "--no-tui",
            "-q",
            "-o",
            &jsonl,
            "hwbp_fx_target",
            "--",
            &fx(),
        ])
        .args(["spin", "20", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start hwbp-trace");
    let pid = traced_pid(&first_stderr_line(&mut tracer));
    thread::sleep(Duration::from_millis(300));
    // The group is hwbp-trace's: its pid is the group's id.
    kill(-(tracer.id() as i32), libc::SIGINT);
    let status = tracer.wait().expect("hwbp-trace");
    kill(pid, libc::SIGKILL);
    assert_eq!(status.code(), Some(0), "{status}");
    let (_, hits, summary) = read_trace(&jsonl);
    assert_eq!(summary["end_reason"], "signal", "{summary}");
    assert!(!hits.is_empty(), "the fixture was calling");
    assert_eq!(summary.get("exit_status"), None, "{summary}");
}

/// A full disk: writing stops, the file keeps whole records (header first)
/// and ends with a summary marked `trace_truncated`, the summary is still
/// printed, and the run fails (exit 1) so that scripts notice.
#[test]
fn disk_full_leaves_a_valid_file() {
    if !root_or_skip("disk_full_leaves_a_valid_file") {
        return;
    }
    let dir = TempDir::new("diskfull");
    let full = FullDisk::new(&dir);
    let mnt = full.0.clone();
    let out_file = mnt.join("t.jsonl").display().to_string();
    let out = run(&[
        "--no-tui",
        "-q",
        "-o",
        &out_file,
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "3000",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains("3000 hits"),
        "the summary is still printed: {err}"
    );
    let (header, hits, summary) = read_trace(&out_file);
    assert_eq!(header["type"], "header");
    assert_eq!(summary["trace_truncated"], true);
    assert_eq!(
        summary_hits(&summary, 0),
        3000,
        "the summary counts every hit"
    );
    assert!(hits.len() < 3000, "the file holds fewer: {}", hits.len());
    // The lines that are there are the first ones, in order.
    for (i, hit) in hits.iter().enumerate() {
        assert_eq!(hit["args"][0]["value"], format!("{i:#x}"));
    }
}

/// A 64 KiB tmpfs under `dir`, unmounted when dropped: a disk that fills.
struct FullDisk(std::path::PathBuf);

impl FullDisk {
    fn new(dir: &TempDir) -> Self {
        let mnt = dir.0.join("mnt");
        fs::create_dir(&mnt).expect("mkdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&mnt)
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a 64 KiB tmpfs");
        Self(mnt)
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Two files on a full disk: each one's failure is said while tracing goes
/// on (a `stopped writing` line each), not only the first one's.
#[test]
fn every_file_that_stops_is_said() {
    if !root_or_skip("every_file_that_stops_is_said") {
        return;
    }
    let dir = TempDir::new("diskfull2");
    let full = FullDisk::new(&dir);
    let mnt = full.0.clone();
    let jsonl = mnt.join("t.jsonl").display().to_string();
    let txt = mnt.join("t.txt").display().to_string();
    // Paced calls for 1.5 s: both files fill early (the JSONL within tens of
    // hits, the text within a few hundred), and hits go on coming after.
    let out = run(&[
        "--no-tui",
        "-q",
        "-o",
        &jsonl,
        "-o",
        &txt,
        "hwbp_fx_target",
        "--",
        &fx(),
        "spin",
        "1.5",
        "200",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for file in [&jsonl, &txt] {
        assert!(
            err.lines().any(
                |l| l.starts_with(&format!("hwbp-trace: stopped writing {file}: "))
                    && l.contains("No space left on device")
            ),
            "{file}: {err}"
        );
    }
}

/// A bug that panics while recording (injected here with
/// HWBP_FAULT_PANIC_AFTER) does not lose the run: tracing ends, everything
/// recorded until then is in the file, which ends with its summary, and the
/// run fails with exit 1 after printing the summary.
#[test]
fn a_panic_while_recording_still_ends_with_a_summary() {
    if !root_or_skip("a_panic_while_recording_still_ends_with_a_summary") {
        return;
    }
    let dir = TempDir::new("panic");
    let out_file = dir.path("t.jsonl");
    let out = Command::new(hwbp_trace())
        .args([
            "--no-tui",
            "-q",
            "-o",
            &out_file,
            "hwbp_fx_target",
            "--",
            &fx(),
            "calls",
            "20",
        ])
        .env("HWBP_FAULT_PANIC_AFTER", "5")
        .output()
        .expect("run hwbp-trace");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tracing ended early: internal error while recording hits"),
        "{err}"
    );
    assert!(
        err.contains("TARGET"),
        "the summary table is printed: {err}"
    );
    let (_, hits, summary) = read_trace(&out_file);
    assert_eq!(hits.len(), 5, "the hits before the fault");
    assert_eq!(summary["end_reason"], "error");
    assert_eq!(summary_hits(&summary, 0), 5);
    // The hits the program recorded after the fault are in no line: each
    // is counted as unrecorded and lost, and said (read_trace checked
    // that kernel_count adds up).
    let target = &summary["targets"][0];
    let unrecorded = target["unrecorded"].as_u64().expect("unrecorded");
    assert_eq!(
        unrecorded + 5,
        target["kernel_count"].as_u64().expect("kernel_count"),
        "{summary}"
    );
    assert_eq!(summary["lost"].as_u64(), Some(unrecorded), "{summary}");
    assert!(
        err.contains(&format!(
            "{unrecorded} hits were recorded by the kernel but never written"
        )),
        "{err}"
    );
    assert!(
        summary["error"]
            .as_str()
            .is_some_and(|e| e.contains("fault injection")),
        "{summary}"
    );
}

//! Root integration tests of the core tracer on user-space targets, against
//! the fx_user fixture whose calls and writes are counted.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use hwbp_tests::{
    TempDir, compile_c, first_stderr_line, fixture,
    host::{self, errno_name},
    hwbp_trace, root_or_skip, run, stderr, stdout,
};
use serde_json::Value;

/// Parses a JSONL trace into (header, hits, summary), checking its shape.
fn read_trace(path: &str) -> (Value, Vec<Value>, Value) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let lines: Vec<Value> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}:{}: {e}: {l}", i + 1))
        })
        .collect();
    assert!(
        lines.len() >= 2,
        "{path}: header and summary at least, got {} lines",
        lines.len()
    );
    let header = lines[0].clone();
    let summary = lines[lines.len() - 1].clone();
    assert_eq!(header["type"], "header", "first line is the header");
    assert_eq!(summary["type"], "summary", "last line is the summary");
    let hits: Vec<Value> = lines[1..lines.len() - 1].to_vec();
    assert!(
        hits.iter().all(|h| h["type"] == "hit"),
        "only hits between header and summary"
    );
    (header, hits, summary)
}

/// Runs hwbp-trace headless with `-o out_file` and `args`, asserts that it
/// succeeded, and reads the trace.
fn trace_ok(out_file: &str, args: &[&str]) -> (Value, Vec<Value>, Value) {
    let mut all = vec!["--no-tui", "-q", "-o", out_file];
    all.extend(args);
    let out = run(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    read_trace(out_file)
}

fn summary_hits(summary: &Value, target: usize) -> u64 {
    summary["targets"][target]["hits"]
        .as_u64()
        .expect("hits is a number")
}

fn fx() -> String {
    fixture("fx_user").display().to_string()
}

/// A hit's user frames, innermost first.
fn ustack(hit: &Value) -> Vec<&str> {
    hit["ustack"]
        .as_array()
        .expect("ustack")
        .iter()
        .map(|frame| frame.as_str().expect("a frame is a string"))
        .collect()
}

/// A hit's user frames by function name alone (`hwbp_fx_target`, not
/// `hwbp_fx_target+0x4`), innermost first.
fn ustack_names(hit: &Value) -> Vec<&str> {
    ustack(hit)
        .into_iter()
        .map(|frame| frame.split('+').next().unwrap_or(""))
        .collect()
}

/// A command is armed before its first instruction: its very first call,
/// at once, is a hit. The only test whose fixture does not sleep
/// `$HWBP_FX_START_DELAY_MS` first (tests/src/bin/fx_user.rs): one call,
/// so a host that silences breakpoints after a hit right after arming
/// (docs/limitations.md) cannot change its count.
#[test]
fn a_command_is_armed_before_its_first_instruction() {
    if !root_or_skip("a_command_is_armed_before_its_first_instruction") {
        return;
    }
    let dir = TempDir::new("first-instruction");
    let out_file = dir.path("t.jsonl");
    let out = Command::new(hwbp_trace())
        .args(["--no-tui", "-q", "-o", &out_file, "hwbp_fx_target", "--"])
        .args([&fx(), "calls", "1"])
        .env_remove("HWBP_FX_START_DELAY_MS")
        .output()
        .expect("running hwbp-trace");
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, hits, summary) = read_trace(&out_file);
    assert_eq!(hits.len(), 1, "{summary}");
    assert_eq!(summary["targets"][0]["kernel_count"], 1, "{summary}");
    assert_eq!(
        hits[0]["args"][0]["value"], "0x0",
        "the first call, argument 0"
    );
}

#[test]
fn execute_target_counts_every_call() {
    if !root_or_skip("execute_target_counts_every_call") {
        return;
    }
    let dir = TempDir::new("exec");
    let out_file = dir.path("t.jsonl");
    let out = run(&[
        "--no-tui",
        "-q",
        "-o",
        &out_file,
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "300",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (header, hits, summary) = read_trace(&out_file);
    assert_eq!(hits.len(), 300, "one hit per call");
    assert_eq!(summary_hits(&summary, 0), 300);
    assert_eq!(summary["lost"], 0);
    assert_eq!(summary["end_reason"], "process-exit");
    assert_eq!(summary["exit_status"], 0);
    assert_eq!(header["targets"][0]["mode"], "x");
    for (i, hit) in hits.iter().enumerate() {
        assert_eq!(hit["comm"], "fx_user");
        assert!(
            hit["ip_sym"]
                .as_str()
                .is_some_and(|s| s.starts_with("hwbp_fx_target+0x0")),
            "{}",
            hit["ip_sym"]
        );
        assert_eq!(
            hit["ip"], hit["addr"],
            "an execute breakpoint traps at its own address"
        );
        // The argument is the loop index: hits arrive in call order.
        assert_eq!(hit["args"][0]["name"], "rdi");
        assert_eq!(hit["args"][0]["value"], format!("{i:#x}"));
        let ustack = ustack(hit);
        assert!(
            ustack
                .first()
                .is_some_and(|f| f.starts_with("hwbp_fx_target+0x0")),
            "{ustack:?}"
        );
        assert!(
            ustack
                .get(1)
                .is_some_and(|f| f.starts_with("hwbp_fx_caller+")),
            "caller named: {ustack:?}"
        );
        assert!(
            ustack.iter().any(|f| f.starts_with("fx_user::main")),
            "main in the stack: {ustack:?}"
        );
        assert_eq!(
            hit["kstack"],
            serde_json::json!([]),
            "a user target records no kernel stack by default"
        );
    }
    // The summary table on stderr agrees.
    let err = stderr(&out);
    assert!(
        err.contains("Tracing 1 target (1 breakpoint on 1 thread of process"),
        "{err}"
    );
    assert!(err.contains("300 hits"), "{err}");
}

#[test]
fn write_target_counts_every_write_with_values() {
    if !root_or_skip("write_target_counts_every_write_with_values") {
        return;
    }
    let dir = TempDir::new("write");
    let out_file = dir.path("t.jsonl");
    let (header, hits, summary) = trace_ok(
        &out_file,
        &["HWBP_FX_COUNTER", "--", &fx(), "writes", "250"],
    );
    assert_eq!(
        header["targets"][0]["mode"], "w",
        "objects default to write"
    );
    assert_eq!(header["targets"][0]["len"], 8, "an 8-byte AtomicU64");
    assert_eq!(hits.len(), 250);
    assert_eq!(summary_hits(&summary, 0), 250);
    let values: Vec<u64> = hits
        .iter()
        .map(|h| h["value"].as_u64().expect("value"))
        .collect();
    assert_eq!(
        values,
        (1..=250).collect::<Vec<u64>>(),
        "each hit carries the value written"
    );
    assert!(hits.iter().all(|h| {
        h["ip_sym"]
            .as_str()
            .is_some_and(|s| s.starts_with("hwbp_fx_writer+"))
    }));
    // main's frame holds several hundred bytes of locals between the
    // writer's frame and the rest: the walk reads around them (a watchpoint
    // is armed) and must still find every frame up to main.
    for (i, hit) in hits.iter().enumerate() {
        let names = ustack_names(hit);
        assert!(
            names.len() > 2 && names[..2] == ["hwbp_fx_writer", "fx_user::main"],
            "hit {i}: {names:?}"
        );
        assert!(
            names.contains(&"main"),
            "hit {i}: C main in the stack: {names:?}"
        );
    }
}

#[test]
fn read_write_mode_counts_reads() {
    if !root_or_skip("read_write_mode_counts_reads") {
        return;
    }
    let dir = TempDir::new("rw");
    let out_file = dir.path("t.jsonl");
    let (_, hits, summary) = trace_ok(
        &out_file,
        &["HWBP_FX_COUNTER:rw-", "--", &fx(), "reads", "120"],
    );
    assert_eq!(hits.len(), 120);
    assert_eq!(summary_hits(&summary, 0), 120);
    assert_eq!(summary["targets"][0]["mode"], "rw");
    // The kernel counts exactly the fixture's reads: the program must not
    // read the watched bytes itself, which would trap once per byte (the
    // debug registers stay armed while a user-mode hit is handled) and be
    // counted as hits no program saw.
    assert_eq!(summary["targets"][0]["kernel_count"], 120);
    assert_eq!(summary["targets"][0]["missed"], 0);
    assert_eq!(summary["lost"], 0);
    assert!(
        hits.iter().all(|h| h.get("value").is_none()),
        "a user-mode read hit carries no value"
    );
}

#[test]
fn pid_covers_threads_started_before_and_after_attaching() {
    if !root_or_skip("pid_covers_threads_started_before_and_after_attaching") {
        return;
    }
    let dir = TempDir::new("threads");
    let go = dir.path("go");
    let out_file = dir.path("t.jsonl");
    // 2 threads exist before attaching, 2 more start after; 40 calls each.
    let mut child = Command::new(fixture("fx_user"))
        .args(["threads", "2", "2", "40"])
        .env("HWBP_FX_GO", &go)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start fx_user");
    let mut ready = String::new();
    {
        use std::io::BufRead as _;
        let stdout = child.stdout.as_mut().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut ready)
            .expect("read ready");
    }
    assert_eq!(ready.trim(), "ready");
    let pid = child.id().to_string();
    let mut tracer = Command::new(hwbp_trace())
        .args([
            "--no-tui",
            "-q",
            "-o",
            &out_file,
            "-p",
            &pid,
            "hwbp_fx_target",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hwbp-trace");
    // Wait until armed (the `Tracing` line), then let the fixture go.
    let line = first_stderr_line(&mut tracer);
    assert!(
        line.starts_with("Tracing 1 target (3 breakpoints on 3 threads"),
        "{line}"
    );
    fs::write(&go, "").expect("touch go");
    assert!(child.wait().expect("fixture").success());
    let status = tracer.wait().expect("tracer");
    assert!(
        status.success(),
        "tracing ends with exit 0 when the process exits"
    );
    let (_, hits, summary) = read_trace(&out_file);
    assert_eq!(hits.len(), 160, "4 threads x 40 calls");
    assert_eq!(summary_hits(&summary, 0), 160);
    assert_eq!(summary["end_reason"], "process-exit");
    let mut tids: Vec<u64> = hits
        .iter()
        .map(|h| h["tid"].as_u64().expect("tid"))
        .collect();
    tids.sort_unstable();
    tids.dedup();
    assert_eq!(tids.len(), 4, "hits from all 4 worker threads");
    for tid in &tids {
        assert_eq!(
            hits.iter()
                .filter(|h| h["tid"].as_u64() == Some(*tid))
                .count(),
            40
        );
    }
}

/// The pid of the process `-- CMD` started, from the Tracing line
/// ("... of process PID)...").
fn traced_pid(tracing_line: &str) -> i32 {
    tracing_line
        .split("of process ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no traced pid in {tracing_line:?}"))
}

/// Whether `pid` is still running (a zombie or a reaped process is not).
fn still_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes plain integers.
    unsafe { libc::kill(pid, signal) };
}

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

#[test]
fn max_hits_records_exactly_n() {
    if !root_or_skip("max_hits_records_exactly_n") {
        return;
    }
    let dir = TempDir::new("maxhits");
    let out_file = dir.path("t.jsonl");
    let (_, hits, summary) = trace_ok(
        &out_file,
        &["-n", "25", "hwbp_fx_target", "--", &fx(), "calls", "100"],
    );
    assert_eq!(hits.len(), 25);
    assert_eq!(summary_hits(&summary, 0), 25);
}

#[test]
fn comm_filter_is_applied_in_the_kernel() {
    if !root_or_skip("comm_filter_is_applied_in_the_kernel") {
        return;
    }
    let dir = TempDir::new("comm");
    let out_file = dir.path("t.jsonl");
    let (_, hits, summary) = trace_ok(
        &out_file,
        &[
            "--comm",
            "someone_else",
            "hwbp_fx_target",
            "--",
            &fx(),
            "calls",
            "60",
        ],
    );
    assert_eq!(hits.len(), 0);
    assert_eq!(
        summary["targets"][0]["filtered"], 60,
        "every call counted as filtered"
    );
    let (_, hits, _) = trace_ok(
        &out_file,
        &[
            "--comm",
            "fx_user",
            "hwbp_fx_target",
            "--",
            &fx(),
            "calls",
            "60",
        ],
    );
    assert_eq!(hits.len(), 60);
}

#[test]
fn headless_lines_on_stdout() {
    if !root_or_skip("headless_lines_on_stdout") {
        return;
    }
    let out = run(&["--no-tui", "HWBP_FX_COUNTER:w", "--", &fx(), "writes", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("HWBP_FX_COUNTER:w w hwbp_fx_writer+"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[2].trim_start().starts_with("fx_user-"),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].contains(" value=") && lines[2].ends_with("0x3)"),
        "{}",
        lines[2]
    );
}

/// One target more than the host has free debug registers (4 on an idle
/// x86 host; fewer when a debugger or another tracer holds some): the run
/// fails naming the count, and leaves every register as free as it found it.
#[test]
fn one_breakpoint_too_many_fails_cleanly_and_leaves_nothing_armed() {
    if !root_or_skip("one_breakpoint_too_many_fails_cleanly_and_leaves_nothing_armed") {
        return;
    }
    let free_before = host::free_debug_registers();
    let free = free_before.iter().copied().min().unwrap_or(0);
    let targets = [
        "HWBP_FX_COUNTER",
        "hwbp_fx_target",
        "hwbp_fx_caller",
        "hwbp_fx_writer",
        "hwbp_fx_reader",
    ];
    assert!(
        free < targets.len(),
        "x86 has 4 debug registers, probe says {free}"
    );
    let too_many = &targets[..free + 1];
    let mut args = vec!["--no-tui", "-q"];
    args.extend(too_many);
    let fx = fx();
    args.extend(["--", &fx, "calls", "10"]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("4 debug registers"), "{err}");
    let were = if free == 1 { "was" } else { "were" };
    assert!(
        err.contains(&format!("{free} of them fit, so {free} {were} free")),
        "the probe found {free} free: {err}"
    );
    // Names the target that failed and where: a thread of the command.
    let last = too_many[free];
    let place = err
        .split(&format!("cannot arm `{last}` on thread "))
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("names the target and its thread: {err}"));
    assert!(
        place.parse::<u32>().is_ok_and(|tid| tid > 0),
        "a thread id: {place:?} in {err}"
    );
    assert!(!err.contains("Tracing"), "nothing was armed: {err}");
    // Nothing stayed armed: the host has as many free as before, and that
    // many targets fit right after.
    assert_eq!(host::free_debug_registers(), free_before);
    if free == 0 {
        return;
    }
    let mut args = vec!["--no-tui", "-q"];
    args.extend(&targets[..free]);
    args.extend(["--", &fx, "calls", "10"]);
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let tracing = if free == 1 {
        "Tracing 1 target".to_owned()
    } else {
        format!("Tracing {free} targets")
    };
    assert!(stderr(&out).contains(&tracing), "{}", stderr(&out));
}

#[test]
fn bad_input_gets_one_clear_message() {
    if !root_or_skip("bad_input_gets_one_clear_message") {
        return;
    }
    let fx = fx();
    let dir = TempDir::new("bad");
    let link = dir.path("link.jsonl");
    std::os::unix::fs::symlink("/tmp/elsewhere.jsonl", &link).expect("symlink");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["hwbp_fx_targt", "--", &fx, "calls", "1"],
            2,
            "did you mean: hwbp_fx_target",
        ),
        (vec!["pid_max:q"], 2, "unknown mode `q`"),
        (vec!["pid_max/3"], 2, "1, 2, 4 or 8 bytes"),
        (
            vec!["HWBP_FX_COUNTER:r", "--", &fx, "reads", "1"],
            2,
            "use `:rw`",
        ),
        (
            vec!["HWBP_FX_COUNTER+1/4", "--", &fx, "reads", "1"],
            2,
            "not aligned to 4 bytes",
        ),
        (
            vec!["hwbp_fx_target", "--", "/nonexistent/cmd"],
            2,
            "command not found",
        ),
        (
            vec![
                "-o",
                "/nonexistent/dir/t.jsonl",
                "hwbp_fx_target",
                "--",
                &fx,
                "calls",
                "1",
            ],
            2,
            "does its directory exist",
        ),
        (
            vec!["-o", &link, "hwbp_fx_target", "--", &fx, "calls", "1"],
            2,
            "symbolic link",
        ),
        (
            vec!["-p", "999999999", "hwbp_fx_target"],
            2,
            "no process 999999999",
        ),
        (
            vec![
                "--buffer-size",
                "1000",
                "hwbp_fx_target",
                "--",
                &fx,
                "calls",
                "1",
            ],
            2,
            "power of two",
        ),
        (
            vec!["0x401000"],
            2,
            "`0x401000` is a user-space address (below 0x800000000000)",
        ),
        (vec!["fx_user:hwbp_fx_target"], 2, "add -p PID or -- CMD"),
        (
            vec!["-d", "0", "hwbp_fx_target"],
            2,
            "positive number of seconds",
        ),
        (
            vec!["-d", "-1", "hwbp_fx_target"],
            2,
            "positive number of seconds",
        ),
        (vec!["-d", "1e12", "hwbp_fx_target"], 2, "at most one year"),
        (
            vec!["-d", "soon", "hwbp_fx_target"],
            2,
            "not a number of seconds",
        ),
        (vec!["-n", "0", "hwbp_fx_target"], 2, "-n"),
        (vec!["-n", "-5", "hwbp_fx_target"], 2, "-n"),
        (
            vec!["-n", "99999999999999999999999", "hwbp_fx_target"],
            2,
            "-n",
        ),
        (vec![""], 2, "empty target"),
        (vec![], 2, "name at least one TARGET"),
    ];
    for (args, code, needle) in cases {
        let mut full = vec!["--no-tui"];
        full.extend(args.iter().copied());
        let out = run(&full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected `{needle}` in: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Tracing"), "{args:?}: nothing armed: {err}");
        assert!(
            !stdout(&out).contains("done"),
            "{args:?}: the command never ran its code: {}",
            stdout(&out)
        );
    }
}

/// Kernel targets on this host: hwbp-trace arms what the host's own probe
/// accepts, and what it refuses gets the reason the probe found and the way
/// out (the VM), never "run as root" while running as root.
#[test]
fn kernel_targets_agree_with_what_the_host_allows() {
    if !root_or_skip("kernel_targets_agree_with_what_the_host_allows") {
        return;
    }
    let data_probe = host::kernel_data_watchpoints();
    let functions_probe = host::kernel_execute_breakpoints();
    let check = |args: &[&str], probe: Result<(), i32>, refused: &[&str]| {
        let mut full = vec!["--no-tui", "-d", "0.2"];
        full.extend_from_slice(args);
        let out = run(&full);
        let err = stderr(&out);
        match probe {
            Ok(()) => {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{args:?}: the host accepts it: {err}"
                );
                assert!(err.contains("Tracing"), "{args:?}: {err}");
            }
            Err(errno) => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{args:?}: the host refuses it ({}): {err}",
                    errno_name(errno)
                );
                for needle in refused {
                    assert!(
                        err.contains(needle),
                        "{args:?}: expected `{needle}` in: {err}"
                    );
                }
                assert!(!err.contains("run as root"), "{args:?}: we are root: {err}");
                assert!(!err.contains("Tracing"), "{args:?}: nothing armed: {err}");
                assert!(!err.contains("panicked"), "{args:?}: {err}");
            }
        }
    };

    let data = format!("{:#x}:w", host::kernel_data_address());
    let data_refused: &[&str] = match data_probe {
        Err(libc::EPERM | libc::EACCES) => {
            &["refuses breakpoints on kernel addresses", "cargo xtask vm"]
        }
        _ => &["refused"],
    };
    check(&[&data], data_probe, data_refused);

    let mut refused = vec!["refused an execute breakpoint", "cargo xtask vm"];
    refused.push(match data_probe {
        Ok(()) => "Data watchpoints (`:w`, `:rw`) on kernel variables work on this host",
        Err(_) => "This host refuses kernel data watchpoints too",
    });
    check(&["vfs_read"], functions_probe, &refused);
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

#[test]
fn list_names_fixture_symbols() {
    if !root_or_skip("list_names_fixture_symbols") {
        return;
    }
    let fx = fx();
    let out = run(&["list", "--binary", &fx, "hwbp_fx_*"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    names.sort_unstable();
    // The pattern is case-sensitive: HWBP_FX_COUNTER does not match.
    assert_eq!(
        names,
        [
            "hwbp_fx_caller",
            "hwbp_fx_reader",
            "hwbp_fx_target",
            "hwbp_fx_writer"
        ],
        "{text}"
    );
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(kinds.iter().all(|k| *k == "function"), "{text}");
}

/// Sets a sysctl for the duration of a test and restores it on drop.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Self {
        let old = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        fs::write(path, value).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        Self { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(self.path, self.old.trim());
    }
}

/// The kernel throttles sampling events that overflow faster than
/// kernel.perf_event_max_sample_rate. A breakpoint with sample_period 1 goes
/// through perf_swevent_overflow, whose first overflow is never throttled:
/// even at 100 samples/s every hit reaches the program. This test pins that
/// down, and the kernel's own event count proves nothing was missed.
#[test]
fn low_max_sample_rate_does_not_throttle_breakpoints() {
    if !root_or_skip("low_max_sample_rate_does_not_throttle_breakpoints") {
        return;
    }
    let dir = TempDir::new("throttle");
    let out_file = dir.path("t.jsonl");
    let _rate = Sysctl::set("/proc/sys/kernel/perf_event_max_sample_rate", "100");
    let (_, hits, summary) = trace_ok(
        &out_file,
        &["hwbp_fx_target", "--", &fx(), "calls", "20000"],
    );
    assert_eq!(hits.len(), 20000);
    assert_eq!(summary["targets"][0]["kernel_count"], 20000);
    assert_eq!(summary["targets"][0]["missed"], 0);
    assert_eq!(summary["lost"], 0);
}

/// Two threads hit one target into a one-page ring buffer while the tracer
/// is stopped (SIGSTOP), so the buffer must overflow: whatever it could not
/// hold is counted, recorded + dropped is exactly the number of calls, and
/// equals the kernel's own count.
#[test]
fn tiny_ring_buffer_counts_every_drop() {
    if !root_or_skip("tiny_ring_buffer_counts_every_drop") {
        return;
    }
    let dir = TempDir::new("stress");
    let out_file = dir.path("t.jsonl");
    let go = dir.path("go");
    // One thread before attaching, one after, 200 calls each: 400 records
    // of at least 136 bytes, over 50 KiB, into 4 KiB.
    let (mut child, pid) = threads_fixture(&go, &["1", "1", "200"]);
    let mut tracer = Command::new(hwbp_trace())
        .args([
            "--no-tui",
            "-q",
            "--buffer-size",
            "4096",
            "--stack",
            "both",
            "-o",
            &out_file,
            "-p",
            &pid.to_string(),
            "hwbp_fx_target",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hwbp-trace");
    let line = first_stderr_line(&mut tracer);
    assert!(line.starts_with("Tracing 1 target"), "{line}");
    kill(tracer.id() as i32, libc::SIGSTOP);
    fs::write(&go, "").expect("touch go");
    let fixture_ok = child.wait().expect("fixture").success();
    kill(tracer.id() as i32, libc::SIGCONT);
    let out = tracer.wait_with_output().expect("tracer");
    assert!(fixture_ok);
    let err = format!("{line}{}", stderr(&out));
    assert!(out.status.success(), "{err}");
    let (_, hits, summary) = read_trace(&out_file);
    let target = &summary["targets"][0];
    let dropped = target["dropped"].as_u64().expect("dropped");
    assert!(
        dropped > 0,
        "a 4 KiB buffer cannot hold 400 hits: {summary}"
    );
    assert_eq!(
        hits.len() as u64 + dropped,
        400,
        "recorded + dropped = calls"
    );
    assert_eq!(target["hits"].as_u64(), Some(hits.len() as u64));
    assert_eq!(target["kernel_count"], 400);
    assert_eq!(summary["lost"].as_u64(), Some(dropped));
    assert!(err.contains("ring buffer was full"), "{err}");
}

/// Starts `fx_user threads BEFORE AFTER N` gated on `go`, and waits until its
/// first threads exist ("ready").
fn threads_fixture(go: &str, args: &[&str]) -> (std::process::Child, u32) {
    let mut child = Command::new(fixture("fx_user"))
        .arg("threads")
        .args(args)
        .env("HWBP_FX_GO", go)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start fx_user");
    let mut ready = String::new();
    {
        use std::io::BufRead as _;
        let stdout = child.stdout.as_mut().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut ready)
            .expect("read ready");
    }
    assert_eq!(ready.trim(), "ready");
    let pid = child.id();
    (child, pid)
}

/// The threads of a process, from /proc.
fn threads_of(pid: u32) -> Vec<u32> {
    let mut tids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// `--tid` keeps one thread's hits, in the kernel: the others' are counted
/// as filtered, and the kernel saw them all.
#[test]
fn tid_filter_keeps_one_thread() {
    if !root_or_skip("tid_filter_keeps_one_thread") {
        return;
    }
    let dir = TempDir::new("tid");
    let go = dir.path("go");
    let out_file = dir.path("t.jsonl");
    // 2 workers before attaching, 1 after; 30 calls each.
    let (mut child, pid) = threads_fixture(&go, &["2", "1", "30"]);
    let workers: Vec<u32> = threads_of(pid).into_iter().filter(|&t| t != pid).collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let tid = workers[1].to_string();
    let mut tracer = Command::new(hwbp_trace())
        .args([
            "--no-tui",
            "-q",
            "-o",
            &out_file,
            "-p",
            &pid.to_string(),
            "--tid",
            &tid,
            "hwbp_fx_target",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hwbp-trace");
    let line = first_stderr_line(&mut tracer);
    assert!(line.starts_with("Tracing 1 target"), "{line}");
    fs::write(&go, "").expect("touch go");
    assert!(child.wait().expect("fixture").success());
    assert!(tracer.wait().expect("tracer").success());
    let (_, hits, summary) = read_trace(&out_file);
    assert_eq!(hits.len(), 30, "that thread's calls only");
    assert!(
        hits.iter().all(|h| h["tid"].as_u64() == tid.parse().ok()),
        "all from thread {tid}"
    );
    let target = &summary["targets"][0];
    assert_eq!(target["hits"], 30);
    assert_eq!(target["filtered"], 60, "the other two threads' calls");
    assert_eq!(target["kernel_count"], 90, "the kernel saw every call");
    assert_eq!(summary["lost"], 0);
}

/// A demangled Rust name with `::`, as `list` prints it, is one target.
#[test]
fn a_rust_path_name_is_a_target() {
    if !root_or_skip("a_rust_path_name_is_a_target") {
        return;
    }
    let dir = TempDir::new("path-name");
    let fx = fx();
    // `stacks 10 1`: every call goes down call path 0, 17 levels of
    // fx_left: 170 calls.
    for target in ["fx_user::fx_left", "fx_user:fx_user::fx_left:x"] {
        let out_file = dir.path("t.jsonl");
        let (header, hits, summary) =
            trace_ok(&out_file, &[target, "--", &fx, "stacks", "10", "1"]);
        assert_eq!(
            header["targets"][0]["symbol"], "fx_user::fx_left",
            "{target}"
        );
        assert_eq!(header["targets"][0]["mode"], "x", "{target}");
        assert_eq!(hits.len(), 170, "{target}");
        assert_eq!(summary_hits(&summary, 0), 170, "{target}");
        assert_eq!(summary["targets"][0]["kernel_count"], 170, "{target}");
    }
}

/// Traces `fx_user ARGS` twice, `target` alone and then with a watchpoint
/// armed too (on HWBP_FX_COUNTER, which the stack fixtures never write),
/// under which the walk reads the frames on either side of a large frame
/// separately rather than all the bytes between. Returns each run's hits,
/// after checking that there are `n` and no stack was lost.
fn stack_runs(name: &str, target: &str, args: &[&str], n: usize) -> Vec<Vec<Value>> {
    let dir = TempDir::new(name);
    let out_file = dir.path("t.jsonl");
    let fx = fx();
    [vec![target], vec![target, "HWBP_FX_COUNTER:w"]]
        .into_iter()
        .map(|targets| {
            let mut all = targets.clone();
            all.extend(["--", &fx]);
            all.extend(args);
            let (_, hits, summary) = trace_ok(&out_file, &all);
            assert_eq!(hits.len(), n, "{targets:?}");
            assert_eq!(summary["targets"][0]["ustack_errors"], 0, "{targets:?}");
            hits
        })
        .collect()
}

/// A user stack names every frame, in order, however deep and across
/// pages: `stacks 256 256` sends call i down call path i, 17 levels of
/// fx_left/fx_right where bit k of i picks level k's function (level 0 is
/// the target's caller), below fx_stacks, whose frame holds more than a
/// page. The walk reads the stack a window at a time and must stitch the
/// windows together.
#[test]
fn user_stacks_follow_every_call_path() {
    if !root_or_skip("user_stacks_follow_every_call_path") {
        return;
    }
    for hits in stack_runs(
        "call-paths",
        "hwbp_fx_target",
        &["stacks", "256", "256"],
        256,
    ) {
        for (i, hit) in hits.iter().enumerate() {
            expect_call_path(i, hit, 17, i, "fx_user::fx_stacks");
        }
    }
}

/// Hit `i`'s user stack: the target, then `levels` frames of fx_left or
/// fx_right where bit k of `path` picks level k's (level 0 is the target's
/// caller), then `below`, with main further up.
fn expect_call_path(i: usize, hit: &Value, levels: usize, path: usize, below: &str) {
    let names = ustack_names(hit);
    let want = call_path(&["hwbp_fx_target"], levels, path, below);
    assert!(
        names.len() > want.len() && names[..want.len()] == want[..],
        "hit {i}: {names:?}"
    );
    assert!(
        names[want.len()..]
            .iter()
            .any(|n| n.starts_with("fx_user::main")),
        "hit {i}: main in the stack: {names:?}"
    );
}

/// `inner`, then `levels` frames of fx_left or fx_right where bit k of
/// `path` picks level k's, then `below`.
fn call_path<'a>(inner: &[&'a str], levels: usize, path: usize, below: &'a str) -> Vec<&'a str> {
    let mut want = inner.to_vec();
    want.extend((0..levels).map(|level| {
        if path >> level & 1 == 0 {
            "fx_user::fx_left"
        } else {
            "fx_user::fx_right"
        }
    }));
    want.push(below);
    want
}

/// The walk's first read takes what the last walk on the CPU needed: each
/// stack here is 7 frames deeper or 11 shallower than the one before, with
/// other frames, so a walk must read past a first read sized for the last
/// stack and never take what its buffer held before.
#[test]
fn user_stacks_of_changing_depth() {
    if !root_or_skip("user_stacks_of_changing_depth") {
        return;
    }
    for hits in stack_runs("depths", "hwbp_fx_target", &["depths", "360"], 360) {
        for (i, hit) in hits.iter().enumerate() {
            expect_call_path(i, hit, i * 7 % 18, i, "fx_user::fx_depths");
        }
    }
}

/// A record of more than 48 frames does not fit the program's direct copies
/// and goes through bpf_ringbuf_output: 60 levels, then fx_levels and main,
/// complete.
#[test]
fn user_stacks_longer_than_a_direct_record() {
    if !root_or_skip("user_stacks_longer_than_a_direct_record") {
        return;
    }
    for hits in stack_runs("levels", "hwbp_fx_target", &["levels", "20", "60"], 20) {
        for (i, hit) in hits.iter().enumerate() {
            expect_call_path(i, hit, 60, i, "fx_user::fx_levels");
        }
    }
}

/// With a watchpoint armed, the walk reads the frames past a large frame
/// (fx_big's) in reads sized by the last walk's: here those frames are 7
/// levels more or 11 fewer than the last call's, so a walk must read past
/// such a read and never take what its buffer held before. Without one,
/// the same stacks as `depths` with a jump.
#[test]
fn user_stacks_of_changing_depth_past_a_large_frame() {
    if !root_or_skip("user_stacks_of_changing_depth_past_a_large_frame") {
        return;
    }
    let runs = stack_runs("gapdepths", "hwbp_fx_target", &["gapdepths", "360"], 360);
    for hits in &runs {
        // On the fixture's own thread: the frames past fx_gapdepths (the
        // thread's start) are every hit's, so the first's.
        let outer = |names: &[&str]| -> Vec<String> {
            let at = names.iter().position(|n| *n == "fx_user::fx_gapdepths");
            at.map(|at| names[at..].iter().map(|n| n.to_string()).collect())
                .unwrap_or_default()
        };
        let first_outer = outer(&ustack_names(&hits[0]));
        assert!(
            first_outer.len() > 1,
            "frames past fx_gapdepths: {first_outer:?}"
        );
        for (i, hit) in hits.iter().enumerate() {
            let names = ustack_names(hit);
            let want = call_path(
                &["hwbp_fx_target", "fx_user::fx_big"],
                i * 7 % 18,
                i,
                "fx_user::fx_gapdepths",
            );
            assert!(
                names.len() >= want.len() && names[..want.len()] == want[..],
                "hit {i}: {names:?}"
            );
            assert_eq!(outer(&names), first_outer, "hit {i}: {names:?}");
        }
    }
}

/// The walk's first read may run past the last frame it was sized for;
/// where the stack ends there (fx_user's own stack, which ends 64 bytes
/// above the call), the read fails and the walk reads again within the
/// page: the caller (from the word at rsp) and the frames after it, on the
/// thread's usual stack, are all there.
#[test]
fn user_stack_at_the_end_of_its_mapping() {
    if !root_or_skip("user_stack_at_the_end_of_its_mapping") {
        return;
    }
    for hits in stack_runs("topstack", "hwbp_fx_target", &["topstack", "5"], 5) {
        for (i, hit) in hits.iter().enumerate() {
            let names = ustack_names(hit);
            assert!(
                names.len() > 3
                    && names[..3] == ["hwbp_fx_target", "fx_user::fx_topstack", "fx_user::main"],
                "hit {i}: {names:?}"
            );
        }
    }
}

/// `--stack` decides what each hit carries: by default a user target has
/// its user stack only; `none` neither; `both` both (the kernel stack of a
/// hit in user mode is empty: there are no kernel frames).
#[test]
fn stack_option_decides_the_stacks() {
    if !root_or_skip("stack_option_decides_the_stacks") {
        return;
    }
    let dir = TempDir::new("stacks");
    let fx = fx();
    for (stack, want_user) in [(None, true), (Some("none"), false), (Some("both"), true)] {
        let out_file = dir.path("t.jsonl");
        let mut args = Vec::new();
        if let Some(stack) = stack {
            args.extend(["--stack", stack]);
        }
        args.extend(["hwbp_fx_target", "--", &fx, "calls", "5"]);
        let (_, hits, summary) = trace_ok(&out_file, &args);
        assert_eq!(hits.len(), 5, "{stack:?}: {summary}");
        for hit in &hits {
            assert_eq!(hit["kstack"], serde_json::json!([]), "{stack:?}: {hit}");
            let ustack = ustack(hit);
            if want_user {
                assert!(
                    ustack
                        .get(1)
                        .is_some_and(|f| f.starts_with("hwbp_fx_caller+")),
                    "{stack:?}: the caller is named: {ustack:?}"
                );
            } else {
                assert!(ustack.is_empty(), "{stack:?}: {ustack:?}");
            }
        }
        let target = &summary["targets"][0];
        assert_eq!(
            (&target["kstack_errors"], &target["ustack_errors"]),
            (&serde_json::json!(0), &serde_json::json!(0)),
            "{stack:?}"
        );
    }
}

/// `list PATTERN | head`: the reader goes away, listing ends quietly with
/// exit 0 (no "Broken pipe" error).
#[test]
fn list_into_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // Closed before hwbp-trace writes anything: every write gets EPIPE.
    drop(reader);
    let out = Command::new(hwbp_trace())
        .args(["list", "--binary", &fx(), "*"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run hwbp-trace list");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "nothing on stderr");
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

#[test]
fn redacted_traces_keep_symbols_but_no_addresses() {
    if !root_or_skip("redacted_traces_keep_symbols_but_no_addresses") {
        return;
    }
    let dir = TempDir::new("redact");
    let out_file = dir.path("t.jsonl");
    let out = run(&[
        "--no-tui",
        "-q",
        "--redact-addresses",
        "-o",
        &out_file,
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "20",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(&out_file).expect("trace");
    let (header, hits, summary) = read_trace(&out_file);
    assert_eq!(hits.len(), 20);
    assert_eq!(header["targets"][0]["addr"], "0x…");
    assert_eq!(summary["targets"][0]["addr"], "0x…");
    for hit in &hits {
        assert_eq!(hit["addr"], "0x…");
        assert_eq!(hit["ip"], "0x…");
        assert!(
            hit["ustack"][1]
                .as_str()
                .is_some_and(|f| f.starts_with("hwbp_fx_caller+")),
            "{hit}"
        );
    }
    // No 0x number of 9 or more digits anywhere.
    let long_hex = text
        .split("0x")
        .skip(1)
        .any(|rest| rest.chars().take_while(char::is_ascii_hexdigit).count() >= 9);
    assert!(!long_hex, "an address survived redaction");
}

/// A program built without PIE lives at 0x400000: its addresses have 6 or
/// 7 hex digits, as short as any small number, and must go all the same.
/// No address in the binary's range is left in stdout, stderr or the trace;
/// offsets and small numbers stay.
#[test]
fn redaction_covers_a_non_pie_program() {
    if !root_or_skip("redaction_covers_a_non_pie_program") {
        return;
    }
    let dir = TempDir::new("redact-nopie");
    let Some((program, _)) = compile_c(
        "redaction_covers_a_non_pie_program",
        &dir,
        "nopie",
        "#include <stdio.h>\n\
         int hwbp_np_counter;\n\
         __attribute__((noinline)) void hwbp_np_target(int *p, const char *s) { *p += s[0]; }\n\
         int main(void) { for (int i = 0; i < 3; i++) hwbp_np_target(&hwbp_np_counter, \"x\");\n\
           printf(\"%d\\n\", hwbp_np_counter); return 0; }\n",
        &["-no-pie", "-fno-omit-frame-pointer", "-g", "-O1"],
    ) else {
        return;
    };
    // The binary's range, from its symbols: e.g. 0x401000 to 0x404030.
    let nm = Command::new("nm").arg(&program).output().expect("nm");
    let addresses: Vec<u64> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .filter(|&a| a >= 0x400000)
        .collect();
    let (low, high) = (
        addresses.iter().copied().min().expect("symbols"),
        addresses.iter().copied().max().expect("symbols"),
    );
    assert!(high < 1 << 32, "not PIE: {low:#x}..{high:#x}");

    let jsonl = dir.path("t.jsonl");
    let out = run(&[
        "--no-tui",
        "--redact-addresses",
        "-o",
        &jsonl,
        "hwbp_np_target",
        "--",
        &program,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trace = fs::read_to_string(&jsonl).expect("trace");
    for (name, text) in [
        ("stdout", stdout(&out)),
        ("stderr", stderr(&out)),
        ("trace", trace),
    ] {
        for rest in text.split("0x").skip(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            let value = u64::from_str_radix(&digits, 16).unwrap_or(0);
            assert!(
                !(low..=high + 0x1000).contains(&value),
                "{name}: the address 0x{digits} survived redaction:\n{text}"
            );
        }
    }
    let (header, hits, summary) = read_trace(&jsonl);
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(header["targets"][0]["addr"], "0x…");
    assert_eq!(summary["targets"][0]["addr"], "0x…");
    assert_eq!(summary["targets"][0]["hits"], 3);
    for hit in &hits {
        assert_eq!((&hit["addr"], &hit["ip"]), (&"0x…".into(), &"0x…".into()));
    }
    let call = &hits[0];
    let args: Vec<(&str, &str)> = call["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or(""),
                a["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        args,
        [("p", "0x…"), ("s", "0x…")],
        "pointers into the binary"
    );
    assert!(
        ustack(call)[0].starts_with("hwbp_np_target+0x0") && ustack(call)[1].starts_with("main+0x"),
        "symbols and offsets stay: {call}"
    );
}

/// A comm that is not UTF-8 (the kernel takes any bytes) is matched by
/// --comm as bytes and shown with replacement characters.
#[test]
fn non_utf8_comm() {
    if !root_or_skip("non_utf8_comm") {
        return;
    }
    use std::os::unix::ffi::OsStrExt as _;
    let dir = TempDir::new("comm8");
    let name = std::ffi::OsStr::from_bytes(b"fx\xff\xfeuser");
    let link = dir.0.join(name);
    std::os::unix::fs::symlink(fixture("fx_user"), &link).expect("symlink");
    let out_file = dir.path("t.jsonl");
    let out = Command::new(hwbp_trace())
        .args(["--no-tui", "-q", "-o", &out_file, "--comm"])
        .arg(name)
        .args(["hwbp_fx_target", "--"])
        .arg(&link)
        .args(["calls", "7"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, hits, _) = read_trace(&out_file);
    assert_eq!(hits.len(), 7, "--comm matched the raw bytes");
    assert_eq!(hits[0]["comm"], "fx\u{fffd}\u{fffd}user");
}

/// A traced program chooses its comm: one that would clear root's terminal
/// and paint it red, or split a hit line in two, shows escaped in every text
/// output (one line per hit, no ESC byte anywhere) and raw in JSON.
#[test]
fn a_comm_of_control_characters_is_escaped_in_text() {
    if !root_or_skip("a_comm_of_control_characters_is_escaped_in_text") {
        return;
    }
    let dir = TempDir::new("comm-escape");
    for (comm, shown) in [("\x1b[2J\x1b[41m", "\\e[2J\\e[41m"), ("a\nb", "a\\nb")] {
        let (txt, jsonl) = (dir.path("t.txt"), dir.path("t.jsonl"));
        let out = Command::new(hwbp_trace())
            .args(["--no-tui", "-o", &txt, "-o", &jsonl, "hwbp_fx_target", "--"])
            .args([&fx(), "calls", "3"])
            .env("HWBP_FX_COMM", comm)
            .output()
            .expect("run hwbp-trace");
        assert!(out.status.success(), "{}", stderr(&out));
        let file = fs::read(&txt).expect("t.txt");
        for (name, bytes) in [
            ("stdout", &out.stdout),
            ("stderr", &out.stderr),
            ("t.txt", &file),
        ] {
            assert!(!bytes.contains(&0x1b), "an ESC byte in {name}: {bytes:?}");
        }
        // The hit lines, and the fixture's own `done 3` among them (two
        // processes write into the one stdout).
        let text = stdout(&out);
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{comm:?}: {text}");
        lines.retain(|l| *l != "done 3");
        assert_eq!(lines.len(), 3, "{comm:?}: {text}");
        for line in &lines {
            assert!(
                line.trim_start().starts_with(&format!("{shown}-"))
                    && line.contains(": hwbp_fx_target x "),
                "{comm:?}: {line}"
            );
        }
        let file = String::from_utf8(file).expect("t.txt is UTF-8");
        assert_eq!(file.lines().collect::<Vec<_>>(), lines, "{file}");
        let (_, hits, _) = read_trace(&jsonl);
        assert_eq!(hits.len(), 3);
        for hit in &hits {
            assert_eq!(hit["comm"], comm, "JSON keeps the comm as it is");
        }
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

/// The grammar's other forms on a user program: BINARY:SYMBOL, SYMBOL+OFFSET
/// and 0xADDRESS all arm the right instruction, with exact counts.
#[test]
fn binary_offset_and_address_forms() {
    if !root_or_skip("binary_offset_and_address_forms") {
        return;
    }
    let dir = TempDir::new("forms");
    let fx = fx();
    // BINARY:SYMBOL, the binary named by its file name.
    let out_file = dir.path("binary.jsonl");
    let (header, hits, _) = trace_ok(
        &out_file,
        &["fx_user:hwbp_fx_target:x", "--", &fx, "calls", "12"],
    );
    assert_eq!(hits.len(), 12);
    assert!(header["targets"][0]["space"] == "user", "{header}");
    // SYMBOL+OFFSET: hwbp_fx_caller's second instruction (frame pointers:
    // `push %rbp` is one byte) runs once per run.
    let out_file = dir.path("offset.jsonl");
    let (header, hits, _) = trace_ok(&out_file, &["hwbp_fx_caller+1", "--", &fx, "calls", "12"]);
    assert_eq!(header["targets"][0]["symbol"], "hwbp_fx_caller+0x1");
    assert_eq!(
        header["targets"][0]["mode"], "x",
        "an offset into a function executes"
    );
    assert_eq!(hits.len(), 1, "the caller runs once");
    // 0xADDRESS in a traced process: the fixture is a PIE, so take the
    // runtime address from `list -p` against a waiting fixture.
    let go = dir.path("go");
    let mut child = Command::new(fixture("fx_user"))
        .args(["--wait", &go, "calls", "9"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start fx_user");
    let pid = child.id().to_string();
    let list = run(&["list", "-p", &pid, "hwbp_fx_target"]);
    let text = stdout(&list);
    let addr = text
        .lines()
        .find(|l| l.contains(" hwbp_fx_target "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("list -p: {text}{}", stderr(&list)))
        .to_owned();
    let out_file = dir.path("address.jsonl");
    let mut tracer = Command::new(hwbp_trace())
        .args([
            "--no-tui",
            "-q",
            "-o",
            &out_file,
            "-p",
            &pid,
            &format!("{addr}:x"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hwbp-trace");
    let line = first_stderr_line(&mut tracer);
    assert!(line.starts_with("Tracing 1 target"), "{line}");
    fs::write(&go, "").expect("touch go");
    assert!(child.wait().expect("fixture").success());
    assert!(tracer.wait().expect("tracer").success());
    let (header, hits, _) = read_trace(&out_file);
    assert_eq!(
        header["targets"][0]["symbol"], "hwbp_fx_target",
        "the address is named"
    );
    assert_eq!(hits.len(), 9);
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
    assert!(
        summary["error"]
            .as_str()
            .is_some_and(|e| e.contains("fault injection")),
        "{summary}"
    );
}

/// Makes every bpf(BPF_MAP_CREATE) of this process and its children fail
/// with EINVAL, as a kernel before 5.8 answers for a ring buffer map (the
/// map type is behind a pointer, out of a seccomp filter's reach, so every
/// map is refused). Runs between fork and exec.
fn refuse_bpf_map_create() -> std::io::Result<()> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, sock_filter, sock_fprog,
    };
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const BPF_MAP_CREATE: u32 = 0;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (low half on
    // little-endian x86-64).
    let filter = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 4),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        jeq(libc::SYS_bpf as u32, 0, 3),
        stmt(BPF_LD | BPF_W | BPF_ABS, 16),
        jeq(BPF_MAP_CREATE, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EINVAL as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let program = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with a filter program that outlives the call.
    let rc = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const program,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// On a kernel without BPF ring buffers (before 5.8) hwbp-trace says so in
/// one line and exits 1, before the traced command runs any of its code.
#[test]
fn a_kernel_without_ring_buffers_is_named() {
    use std::os::unix::process::CommandExt as _;
    if !root_or_skip("a_kernel_without_ring_buffers_is_named") {
        return;
    }
    let mut command = Command::new(hwbp_trace());
    command.args([
        "--no-tui",
        "-q",
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "3",
    ]);
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe { command.pre_exec(refuse_bpf_map_create) };
    let out = command.output().expect("run hwbp-trace");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one message: {err}");
    assert!(
        err.contains("no BPF ring buffers") && err.contains("Linux 5.8"),
        "{err}"
    );
    assert!(
        !stdout(&out).contains("done"),
        "the command never ran: {}",
        stdout(&out)
    );
}

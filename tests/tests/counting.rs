//! Root integration tests: exact counts of calls, writes and reads of the
//! fx_user fixture, whatever the scope (`-- CMD`, `-p` with threads before
//! and after attaching) and the filters (`-n`, `--comm`, `--tid`), and every
//! drop of a ring buffer too small counted.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{
    fs,
    process::{Command, Stdio},
};

use hwbp_tests::traces::{
    fx, kill, read_trace, summary_hits, threads_fixture, threads_of, trace_ok, ustack, ustack_names,
};
use hwbp_tests::{
    TempDir, first_stderr_line, fixture, hwbp_trace, root_or_skip, run, stderr, trace_attached,
};

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
    let pid = pid.to_string();
    let args = [
        "--no-tui",
        "-q",
        "-o",
        &out_file,
        "-p",
        &pid,
        "--tid",
        &tid,
        "hwbp_fx_target",
    ];
    trace_attached(&args, &go, &mut child);
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

//! Reading hwbp-trace's JSONL traces and the processes it traced, for the
//! root integration tests.

use std::{
    fs,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{
    fixture,
    harness::trace::{Trace, hex_field, number, parse_framing},
    run, stderr,
};

/// Parses a JSONL trace into (header, hits, summary), checking its framing
/// and accounting as the kernel tests and the benchmark do
/// ([`parse_framing`]).
pub fn read_trace(path: &str) -> (Value, Vec<Value>, Value) {
    let trace = read_full_trace(path);
    (trace.header, trace.hits, trace.summary)
}

/// [`read_trace`], with the kernel's aggregates.
pub fn read_full_trace(path: &str) -> Trace {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    parse_framing(&text).unwrap_or_else(|e| panic!("{path}: {e:#}"))
}

/// Runs hwbp-trace headless with `-o out_file` and `args`, asserts that it
/// succeeded, and reads the trace.
pub fn trace_ok(out_file: &str, args: &[&str]) -> (Value, Vec<Value>, Value) {
    let mut all = vec!["--no-tui", "-q", "-o", out_file];
    all.extend(args);
    let out = run(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    read_trace(out_file)
}

pub fn summary_hits(summary: &Value, target: usize) -> u64 {
    summary["targets"][target]["hits"]
        .as_u64()
        .expect("hits is a number")
}

pub fn fx() -> String {
    fixture("fx_user").display().to_string()
}

/// A hit's user frames, innermost first.
pub fn ustack(hit: &Value) -> Vec<&str> {
    hit["ustack"]
        .as_array()
        .expect("ustack")
        .iter()
        .map(|frame| frame.as_str().expect("a frame is a string"))
        .collect()
}

/// A hit's user frames by function name alone (`hwbp_fx_target`, not
/// `hwbp_fx_target+0x4`), innermost first.
pub fn ustack_names(hit: &Value) -> Vec<&str> {
    ustack(hit)
        .into_iter()
        .map(|frame| frame.split('+').next().unwrap_or(""))
        .collect()
}

/// The pid of the process `-- CMD` started, from the Tracing line
/// ("... of process PID)...").
pub fn traced_pid(tracing_line: &str) -> i32 {
    tracing_line
        .split("of process ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no traced pid in {tracing_line:?}"))
}

/// Whether `pid` is still running (a zombie or a reaped process is not).
pub fn still_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

pub fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes plain integers.
    unsafe { libc::kill(pid, signal) };
}

/// Starts `fx_user threads BEFORE AFTER N` gated on `go`, and waits until its
/// first threads exist ("ready").
pub fn threads_fixture(go: &str, args: &[&str]) -> (std::process::Child, u32) {
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
pub fn threads_of(pid: u32) -> Vec<u32> {
    let mut tids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// The header's target addresses, in target order.
pub fn target_addrs(header: &Value) -> Vec<u64> {
    per_target(header, |t| hex_field(t, "addr"))
}

/// The summary's hits per target, in target order.
pub fn target_hits(summary: &Value) -> Vec<u64> {
    per_target(summary, |t| number(t, "hits"))
}

fn per_target(record: &Value, field: impl Fn(&Value) -> anyhow::Result<u64>) -> Vec<u64> {
    record["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets in {record}"))
        .iter()
        .map(|t| field(t).unwrap_or_else(|e| panic!("{e:#}")))
        .collect()
}

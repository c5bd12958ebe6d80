//! Reading hwbp-trace's JSONL traces and the processes it traced, for the
//! root integration tests.

use std::{
    fs,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{fixture, run, stderr};

/// Parses a JSONL trace into (header, hits, summary), checking its shape.
pub fn read_trace(path: &str) -> (Value, Vec<Value>, Value) {
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
    let targets = header["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets in the header: {header}"));
    targets
        .iter()
        .map(|t| {
            let addr = t["addr"]
                .as_str()
                .unwrap_or_else(|| panic!("no addr in the header: {header}"));
            u64::from_str_radix(addr.trim_start_matches("0x"), 16)
                .unwrap_or_else(|e| panic!("header addr `{addr}`: {e}"))
        })
        .collect()
}

/// The summary's hits per target, in target order.
pub fn target_hits(summary: &Value) -> Vec<u64> {
    let targets = summary["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets in the summary: {summary}"));
    targets
        .iter()
        .map(|t| {
            t["hits"]
                .as_u64()
                .unwrap_or_else(|| panic!("no hits in the summary: {summary}"))
        })
        .collect()
}

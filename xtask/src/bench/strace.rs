//! Where start-up goes: one run of hwbp-trace under strace, split at the
//! first system call of each phase, per thread.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, anyhow};

/// Start-up split at the first system call of each phase, per thread (one
/// run under strace, which slows system calls: shares, not absolute
/// times). hwbp-trace loads the BPF program and parses BTF on threads of
/// their own while the main thread resolves the targets, so phases overlap.
pub(super) struct Phases {
    pub(super) command: String,
    /// In order of start: what, on which thread (1 = main), from and to
    /// (seconds after execve; `to` clipped at the Tracing line).
    pub(super) segments: Vec<Segment>,
    /// execve to the Tracing line.
    pub(super) total: f64,
}

pub(super) struct Segment {
    pub(super) what: &'static str,
    pub(super) thread: usize,
    pub(super) from: f64,
    pub(super) to: f64,
    /// The thread was still at it when the Tracing line was written.
    pub(super) after_tracing: bool,
}

pub(super) const AYA_BTF: &str = "vmlinux BTF: aya's loader reads and parses it (CO-RE)";
pub(super) const HWBP_BTF: &str = "vmlinux BTF: hwbp's types for arguments and values";

impl Phases {
    pub(super) fn parse(log: &Path, command: String) -> Result<Self> {
        let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
        // Per thread, in order of appearance: its id, its marks, and when it
        // exited.
        type Marks = Vec<(&'static str, f64)>;
        let mut threads: Vec<(String, Marks, Option<f64>)> = Vec::new();
        let mut end = None;
        for line in text.lines() {
            // `PID TIMESTAMP CALL`; strace pads the pid to 5 columns, so
            // a pid below 10000 is followed by more than one space.
            let Some((tid, rest)) = line.trim_start().split_once(' ') else {
                continue;
            };
            let Some((ts, call)) = rest.trim_start().split_once(' ') else {
                continue;
            };
            let Ok(ts) = ts.parse::<f64>() else { continue };
            let call = call.trim_start();
            let index = match threads.iter().position(|(t, ..)| t == tid) {
                Some(i) => i,
                None => {
                    threads.push((tid.to_owned(), Vec::new(), None));
                    threads.len() - 1
                }
            };
            if call.starts_with("write(2, \"Tracing") {
                end = Some(ts);
                break;
            }
            if call.starts_with("exit(") || call.starts_with("+++ exited") {
                threads[index].2 = Some(ts);
                continue;
            }
            let mark = if call.starts_with("execve(") {
                Some("process start: exec, loader, arguments, runtime")
            } else if call.starts_with("openat(") && call.contains("\"/proc/kallsyms\"") {
                Some("kallsyms: read and index /proc/kallsyms")
            } else if call.starts_with("openat(") && is_proc_maps(call) {
                Some("user symbols: /proc/PID/maps and the ELF symbol table")
            } else if call.starts_with("openat(") && call.contains("\"/sys/kernel/btf/vmlinux\"") {
                // Named below, by whether the thread goes on to load BPF.
                Some(HWBP_BTF)
            } else if call.starts_with("bpf(") {
                Some("BPF: feature probes, maps, program load and verification")
            } else if call.starts_with("perf_event_open(") {
                Some("arming: perf_event_open, SET_BPF, ENABLE")
            } else {
                None
            };
            let marks = &mut threads[index].1;
            if let Some(mark) = mark
                && !marks.iter().any(|(m, _)| *m == mark)
            {
                marks.push((mark, ts));
            }
        }
        let end = end.ok_or_else(|| anyhow!("no Tracing line in {}", log.display()))?;
        let first = threads
            .first()
            .and_then(|(_, marks, _)| marks.first())
            .map(|(_, t)| *t)
            .ok_or_else(|| anyhow!("no execve in {}", log.display()))?;
        let mut segments = Vec::new();
        for (thread, (_, marks, exited)) in threads.iter().enumerate() {
            let loads_bpf = marks.iter().any(|(m, _)| m.starts_with("BPF"));
            let stop = exited.unwrap_or(f64::INFINITY);
            for (i, (mark, start)) in marks.iter().enumerate() {
                let what = if *mark == HWBP_BTF && loads_bpf {
                    AYA_BTF
                } else {
                    mark
                };
                let to = marks.get(i + 1).map_or(stop, |(_, t)| *t);
                segments.push(Segment {
                    what,
                    thread: thread + 1,
                    from: start - first,
                    to: to.min(end) - first,
                    after_tracing: to > end,
                });
            }
        }
        segments.sort_by(|a, b| a.from.total_cmp(&b.from));
        Ok(Phases {
            command,
            segments,
            total: end - first,
        })
    }
}

/// `openat(..., "/proc/1234/maps", ...)` (not /proc/self/maps, which the
/// Rust runtime reads for its stack guard).
pub(super) fn is_proc_maps(call: &str) -> bool {
    call.split('"').nth(1).is_some_and(|path| {
        path.strip_prefix("/proc/")
            .and_then(|rest| rest.strip_suffix("/maps"))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    })
}

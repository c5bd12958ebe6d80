//! The replay benchmark (issue 24): what hwbp-trace's reader costs per hit
//! alone, without the kernel. A live run on fx_user keeps its raw hits
//! (the hidden `--capture-records`); kernel frames from /proc/kallsyms are
//! added to them, as a user watchpoint hit in the kernel's copy to user
//! memory would have (this host arms no kernel breakpoint); then
//! `hwbp-trace replay` feeds them through the live session's collector,
//! over and over, with kernel and user stacks symbolized and a JSONL file
//! written, and reports its CPU time (every thread) and wall time.
//!
//! The JSONL file goes to tmpfs (/dev/shm) when there is one: a million
//! hits are gigabytes, and on a disk the kernel's writeback of them would
//! compete with the run on these 2 vCPUs.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};
use hwbp_common::{HIT_HEADER_SIZE, Hit};
use hwbp_tests::harness::process::remove;

use crate::exec::display;

use super::{
    process::finish_with_fixture,
    results::{extremes, median, verdict},
    workload::Bench,
};

/// Hits captured live, then replayed as often as the records asked for need.
const CAPTURED: u64 = 100_000;

/// The first bytes of a records file (hwbp-user/src/probe/records.rs).
const MAGIC: &[u8; 8] = b"HWBPRAW1";

/// Kernel stacks given to the captured hits in turn, innermost first, as
/// kallsyms names with an offset into each; a name this kernel lacks is
/// left out.
const KERNEL_STACKS: [&[(&str, u64)]; 4] = [
    &[
        ("rep_movs_alternative", 0x1b),
        ("_copy_to_user", 0x2c),
        ("proc_sys_call_handler", 0x1d3),
        ("vfs_read", 0x12e),
        ("ksys_read", 0x73),
        ("do_syscall_64", 0x82),
        ("entry_SYSCALL_64_after_hwframe", 0x76),
    ],
    &[
        ("rep_movs_alternative", 0x1b),
        ("_copy_to_iter", 0x9e),
        ("copy_page_to_iter", 0x95),
        ("filemap_read", 0x2a1),
        ("vfs_read", 0x1c0),
        ("ksys_read", 0x73),
        ("do_syscall_64", 0x82),
        ("entry_SYSCALL_64_after_hwframe", 0x76),
    ],
    &[
        ("_copy_to_user", 0x2c),
        ("cp_new_stat", 0x150),
        ("__do_sys_newfstatat", 0x3b),
        ("do_syscall_64", 0x82),
        ("entry_SYSCALL_64_after_hwframe", 0x76),
    ],
    &[
        ("rep_movs_alternative", 0x1b),
        ("_copy_to_user", 0x2c),
        ("simple_read_from_buffer", 0x4a),
        ("vfs_read", 0x12e),
        ("__x64_sys_read", 0x19),
        ("do_syscall_64", 0x82),
        ("entry_SYSCALL_64_after_hwframe", 0x76),
    ],
];

/// One replay run, as `hwbp-trace replay` reports it.
pub(super) struct ReplayRun {
    pub(super) records: u64,
    pub(super) user_s: f64,
    pub(super) sys_s: f64,
    /// The collecting thread's own CPU time (all but the file's writer).
    pub(super) collector_s: f64,
    pub(super) wall_s: f64,
}

impl ReplayRun {
    fn per_cpu_second(&self) -> f64 {
        self.records as f64 / (self.user_s + self.sys_s)
    }
}

pub(super) struct Replay {
    pub(super) runs: Vec<ReplayRun>,
    /// Kernel frames added to each hit (0: kallsyms hides addresses).
    pub(super) kernel_frames: Vec<usize>,
    /// Bytes of the JSONL file of one run.
    pub(super) jsonl_bytes: u64,
    /// The replay's command line, paths as on this machine.
    pub(super) command: String,
    pub(super) capture_command: String,
}

impl Bench {
    /// Captures [`CAPTURED`] hits of `fx_user calls` with kernel and user
    /// stacks, adds kernel frames, and replays `records` of them `runs`
    /// times.
    pub(super) fn replay(&self, runs: u64, records: u64) -> Result<Replay> {
        let raw = self.scratch.join("captured.raw");
        let replayed = self.scratch.join("replayed.raw");
        let capture_command = self.capture(&raw)?;
        let kernel_frames = add_kernel_frames(&raw, &replayed, &kernel_stacks()?)?;
        remove(&raw);
        let out_dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            self.scratch.clone()
        };
        let jsonl = out_dir.join("hwbp-replay.jsonl");
        let repeat = records.div_ceil(CAPTURED).max(1);
        let mut done = Vec::new();
        let mut jsonl_bytes = 0;
        let mut command = String::new();
        for _ in 0..runs {
            let go = self.scratch.join("go-replay");
            remove(&go);
            // Waits for good: it only lends its maps and its DWARF.
            let mut fixture = self.fixture_waiting(&go, &["calls", "0"])?;
            let pid = fixture.id().to_string();
            let mut cmd = Command::new(&self.hwbp_trace);
            cmd.args(["replay", "--records"])
                .arg(&replayed)
                .args(["--repeat", &repeat.to_string(), "-o"])
                .arg(&jsonl)
                .args(["-p", &pid, "hwbp_fx_target"]);
            command = display(&cmd).replace(&format!("-p {pid}"), "-p PID");
            let output = cmd.stderr(Stdio::inherit()).output();
            let _ = fixture.kill();
            let _ = fixture.wait();
            let output = output.with_context(|| format!("running `{command}`"))?;
            ensure!(
                output.status.success(),
                "`{command}` failed ({})",
                output.status
            );
            jsonl_bytes = fs::metadata(&jsonl).map(|m| m.len()).unwrap_or(0);
            remove(&jsonl);
            done.push(parse_run(&String::from_utf8_lossy(&output.stdout))?);
        }
        remove(&replayed);
        Ok(Replay {
            runs: done,
            kernel_frames,
            jsonl_bytes,
            command,
            capture_command,
        })
    }

    /// Keeps the raw hits of a live run on `fx_user calls` in `raw`; the
    /// command line.
    fn capture(&self, raw: &Path) -> Result<String> {
        let go = self.scratch.join("go-capture");
        remove(&go);
        remove(raw);
        let fixture = self.fixture_waiting(&go, &["calls", &CAPTURED.to_string()])?;
        let pid = fixture.id().to_string();
        let mut cmd = Command::new(&self.hwbp_trace);
        cmd.args(["--no-tui", "-q", "--stack", "both", "--capture-records"])
            .arg(raw)
            .args(["-p", &pid, "hwbp_fx_target"]);
        let command = display(&cmd).replace(&format!("-p {pid}"), "-p PID");
        let run = finish_with_fixture(&mut cmd, &go, fixture, false)?;
        run.check(&cmd)?;
        remove(&go);
        Ok(command)
    }
}

/// `hwbp-trace replay`'s line: `{"records":…,"user_s":…,"sys_s":…,"wall_s":…}`.
fn parse_run(stdout: &str) -> Result<ReplayRun> {
    let line = stdout.lines().last().unwrap_or_default();
    let value: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("parsing `{line}`"))?;
    let number = |key: &str| {
        value[key]
            .as_f64()
            .with_context(|| format!("no `{key}` in `{line}`"))
    };
    Ok(ReplayRun {
        records: value["records"]
            .as_u64()
            .with_context(|| format!("no `records` in `{line}`"))?,
        user_s: number("user_s")?,
        sys_s: number("sys_s")?,
        collector_s: number("collector_user_s")? + number("collector_sys_s")?,
        wall_s: number("wall_s")?,
    })
}

/// The addresses of [`KERNEL_STACKS`] in this kernel (/proc/kallsyms).
fn kernel_stacks() -> Result<Vec<Vec<u64>>> {
    let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    let wanted: Vec<&str> = KERNEL_STACKS
        .iter()
        .flat_map(|s| s.iter().map(|f| f.0))
        .collect();
    let mut found = std::collections::HashMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if matches!(kind, "T" | "t")
            && wanted.contains(&name)
            && let Ok(addr) = u64::from_str_radix(addr, 16)
            && addr != 0
        {
            found.entry(name).or_insert(addr);
        }
    }
    Ok(KERNEL_STACKS
        .iter()
        .map(|stack| {
            stack
                .iter()
                .filter_map(|(name, offset)| found.get(name).map(|addr| addr + offset))
                .collect()
        })
        .collect())
}

/// Copies the records of `from` to `to`, each given the next of `stacks`
/// as its kernel stack; the frames each stack has.
fn add_kernel_frames(from: &Path, to: &Path, stacks: &[Vec<u64>]) -> Result<Vec<usize>> {
    ensure!(!stacks.is_empty(), "no kernel stack to add");
    let bytes = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        bail!("{} is not a records file", from.display());
    };
    let kstack_len = std::mem::offset_of!(Hit, kstack_len);
    let mut out = Vec::with_capacity(bytes.len() * 2);
    out.extend_from_slice(MAGIC);
    let mut i = 0;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let Some((record, tail)) = tail.split_at_checked(len) else {
            bail!("{} is cut short", from.display());
        };
        ensure!(
            record.len() >= HIT_HEADER_SIZE,
            "a record of {} bytes in {}",
            record.len(),
            from.display()
        );
        let frames = &stacks[i % stacks.len()];
        let mut header = record[..HIT_HEADER_SIZE].to_vec();
        let own = u32::from_ne_bytes(
            header[kstack_len..kstack_len + 4]
                .try_into()
                .context("kstack_len")?,
        );
        ensure!(own == 0, "the captured hits have kernel frames already");
        header[kstack_len..kstack_len + 4].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        let size = u32::try_from(len + 8 * frames.len()).context("record size")?;
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&header);
        for frame in frames {
            out.extend_from_slice(&frame.to_ne_bytes());
        }
        out.extend_from_slice(&record[HIT_HEADER_SIZE..]);
        rest = tail;
        i += 1;
    }
    fs::write(to, out).with_context(|| format!("writing {}", to.display()))?;
    Ok(stacks.iter().map(Vec::len).collect())
}

/// The replay's table and how it was made (BENCHMARKS.md, section 6).
/// Issue 24's goal for the reader: records per second of CPU time, both
/// stacks named and JSONL written (the median run).
const REPLAY_GOAL: f64 = 1_500_000.0;

/// The reader's goal against the replay's median run.
pub(super) fn write_replay_goal(out: &mut String, replay: &Replay) {
    let rates: Vec<f64> = replay.runs.iter().map(ReplayRun::per_cpu_second).collect();
    if rates.is_empty() {
        return;
    }
    let rate = median(&rates);
    let _ = writeln!(
        out,
        "| the reader, replayed: {:.1} million records per second of CPU or more, k+u stacks \
         named, JSONL written (section 6) | {:.0}k/s | {} |",
        REPLAY_GOAL / 1e6,
        rate / 1e3,
        verdict(rate >= REPLAY_GOAL)
    );
}

pub(super) fn write_replay(out: &mut String, replay: &Replay) {
    let _ = writeln!(out, "## 6. Replay: the reader alone\n");
    let frames = replay
        .kernel_frames
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let records = replay.runs.first().map_or(0, |r| r.records);
    let _ = writeln!(
        out,
        "`cargo xtask bench --only-replay`. A live run keeps the raw ring-buffer records of \
         {CAPTURED} hits on `hwbp_fx_target` (fx_user `calls`, user stacks of 8 frames with \
         DWARF lines and inlined calls); each is given a kernel stack of real kallsyms \
         addresses, four different ones in turn ({frames} frames), as a user watchpoint hit in \
         the kernel's copy to user memory has. `hwbp-trace replay` then feeds {records} records \
         (the {CAPTURED} over and over) through the live session's collector: decoded as the \
         ring buffer's are, both stacks symbolized, a JSONL file of {} written on tmpfs. \
         *Per core* is records per second of CPU time (user + system, every thread of the \
         process, the file's writer included), from the first record to the file closed; \
         start-up is outside it. *Collector thread* counts the CPU time of the thread that \
         decodes, names and formats the hits alone: the rest is the writer thread, nearly all \
         of it the kernel storing the file's bytes in write(2). Medians of {} runs, with the \
         lowest and highest.\n",
        super::results::mib(replay.jsonl_bytes / 1024),
        replay.runs.len()
    );
    let _ = writeln!(
        out,
        "| records | per core | collector thread, per core | wall | records/s (wall) | user CPU | system CPU |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    let stat = |f: &dyn Fn(&ReplayRun) -> f64| {
        let values: Vec<f64> = replay.runs.iter().map(f).collect();
        let (low, high) = extremes(&values);
        (median(&values), low, high)
    };
    let (rate, rate_low, rate_high) = stat(&ReplayRun::per_cpu_second);
    let (alone, alone_low, alone_high) = stat(&|r| r.records as f64 / r.collector_s);
    let (wall, wall_low, wall_high) = stat(&|r| r.wall_s);
    let (wall_rate, ..) = stat(&|r| r.records as f64 / r.wall_s);
    let (user, ..) = stat(&|r| r.user_s);
    let (sys, ..) = stat(&|r| r.sys_s);
    let _ = writeln!(
        out,
        "| {records} | {:.0}k/s ({:.0}k to {:.0}k) | {:.0}k/s ({:.0}k to {:.0}k) | {wall:.2} s ({wall_low:.2} to {wall_high:.2}) | {:.0}k/s | {user:.2} s | {sys:.2} s |\n",
        rate / 1e3,
        rate_low / 1e3,
        rate_high / 1e3,
        alone / 1e3,
        alone_low / 1e3,
        alone_high / 1e3,
        wall_rate / 1e3,
    );
    let _ = writeln!(
        out,
        "```sh\n{}\n{}   # PID: fx_user --wait GO calls 0 (it never goes)\n```\n",
        replay.capture_command, replay.command
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_line_parsed() {
        let run = parse_run(
            "{\"records\":1000,\"user_s\":0.5,\"sys_s\":0.25,\"collector_user_s\":0.4,\
             \"collector_sys_s\":0.1,\"wall_s\":1.0}\n",
        )
        .expect("parsed");
        assert_eq!(run.records, 1000);
        assert!((run.per_cpu_second() - 1000.0 / 0.75).abs() < 1e-9);
        assert!((run.collector_s - 0.5).abs() < 1e-9);
        assert!(parse_run("{\"records\":1}").is_err());
    }

    /// Kernel frames go in front of the user frames, and the header says
    /// how many; the rest of each record is as it was.
    #[test]
    fn kernel_frames_added_in_turn() {
        let dir = std::env::temp_dir();
        let (from, to) = (
            dir.join(format!("xtask-replay-{}-from", std::process::id())),
            dir.join(format!("xtask-replay-{}-to", std::process::id())),
        );
        let ustack_len = std::mem::offset_of!(Hit, ustack_len);
        let mut bytes = MAGIC.to_vec();
        for user in [0x1000u64, 0x2000, 0x3000] {
            let mut record = vec![0u8; HIT_HEADER_SIZE];
            record[ustack_len..ustack_len + 4].copy_from_slice(&1u32.to_ne_bytes());
            record.extend_from_slice(&user.to_ne_bytes());
            bytes.extend_from_slice(&(record.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&record);
        }
        fs::write(&from, &bytes).expect("write");
        let stacks = vec![vec![0xffff_0001, 0xffff_0002], vec![0xffff_0003]];
        let counts = add_kernel_frames(&from, &to, &stacks).expect("added");
        assert_eq!(counts, [2, 1]);
        let out = fs::read(&to).expect("read");
        remove(&from);
        remove(&to);
        let kstack_len = std::mem::offset_of!(Hit, kstack_len);
        let mut rest = &out[MAGIC.len()..];
        let mut seen = Vec::new();
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let (record, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
            let k = u32::from_ne_bytes(record[kstack_len..kstack_len + 4].try_into().expect("4"));
            let frames: Vec<u64> = record[HIT_HEADER_SIZE..]
                .chunks(8)
                .map(|f| u64::from_ne_bytes(f.try_into().expect("8")))
                .collect();
            seen.push((k, frames));
            rest = tail;
        }
        assert_eq!(
            seen,
            [
                (2, vec![0xffff_0001, 0xffff_0002, 0x1000]),
                (1, vec![0xffff_0003, 0x2000]),
                (2, vec![0xffff_0001, 0xffff_0002, 0x3000]),
            ]
        );
    }
}

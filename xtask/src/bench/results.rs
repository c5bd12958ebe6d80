//! What the measurements return, the machine they ran on, and the
//! statistics the report draws from them (medians, slopes, paired ratios).

use std::{
    fs,
    process::{Child, Command},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use hwbp_tests::harness::trace::JsonlSummary;

use crate::{exec::display, workspace_root};

use super::{strace::Phases, workload::Variant};

pub(super) struct PerHit {
    pub(super) workload: &'static str,
    pub(super) variant: Variant,
    /// Seconds from go to the fixture's exit, at the small and large size.
    pub(super) program: [Vec<f64>; 2],
    /// Seconds from go to the tool's exit (the fixture's for the workload alone).
    pub(super) done: [Vec<f64>; 2],
    pub(super) counted_large: Vec<Option<u64>>,
    pub(super) command: String,
}

/// A tool attached to a fixture and armed.
pub(super) struct Attached {
    pub(super) cmd: Command,
    pub(super) child: Child,
    /// Its stderr, read to the end on a thread.
    pub(super) stderr: thread::JoinHandle<String>,
}

impl Attached {
    /// Waits (at most 60 s) for the tool to end, as it does once its
    /// process exits; its stderr, or an error if it failed.
    pub(super) fn finish(mut self) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().context("waiting for the tool")? {
                break exit;
            }
            if Instant::now() > deadline {
                let cmd = display(&self.cmd);
                self.kill();
                bail!("`{cmd}` did not end within 60 s of its process");
            }
            thread::sleep(Duration::from_millis(1));
        };
        let stderr = self
            .stderr
            .join()
            .map_err(|_| anyhow!("the stderr reader panicked"))?;
        ensure!(
            exit.success(),
            "`{}` failed ({exit}):\n{}",
            display(&self.cmd),
            stderr.trim()
        );
        Ok(stderr)
    }

    pub(super) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One round of a paired run: nanoseconds of one batch of hits on the
/// target (under the tool measured), on its twin (under perf stat) and on
/// the unwatched one.
#[derive(Clone, Copy)]
pub(super) struct Round {
    pub(super) tool: f64,
    pub(super) floor: f64,
    pub(super) plain: f64,
}

impl Round {
    /// The tool's cost per hit over the floor's, each beyond the
    /// workload's own.
    pub(super) fn ratio(self) -> f64 {
        (self.tool - self.plain) / (self.floor - self.plain)
    }
}

/// The paired runs of one tool on one workload.
pub(super) struct Paired {
    pub(super) workload: &'static str,
    pub(super) variant: Variant,
    /// Each run's rounds.
    pub(super) runs: Vec<Vec<Round>>,
    /// The runs where a tool counted more hits than were made.
    pub(super) miscounts: Vec<String>,
}

impl Paired {
    /// The median of each run's round ratios.
    pub(super) fn run_ratios(&self) -> Vec<f64> {
        self.runs
            .iter()
            .map(|rounds| median(&rounds.iter().map(|r| r.ratio()).collect::<Vec<_>>()))
            .collect()
    }

    /// The tool's cost per hit over the floor's: the median of
    /// [`Paired::run_ratios`].
    pub(super) fn ratio(&self) -> f64 {
        median(&self.run_ratios())
    }

    /// Every round's ratio.
    pub(super) fn round_ratios(&self) -> Vec<f64> {
        self.runs.iter().flatten().map(|r| r.ratio()).collect()
    }
}

pub(super) struct AttachedRun {
    pub(super) program: f64,
    pub(super) done: f64,
    pub(super) counted: Option<u64>,
    /// The BPF program's (run_time_ns, run_cnt), when asked for.
    pub(super) bpf: Option<(u64, u64)>,
}

/// BPF time per hit of one hwbp-trace variant on one workload.
pub(super) struct BpfTime {
    pub(super) workload: &'static str,
    pub(super) variant: Variant,
    /// Nanoseconds per program run, one per run of the measurement.
    pub(super) ns_per_run: Vec<f64>,
    /// Program runs counted in each run (the hits the program saw).
    pub(super) runs_counted: Vec<u64>,
}

/// BPF time per hit with `threads` threads hitting at once (section 3).
pub(super) struct Contention {
    pub(super) variant: Variant,
    pub(super) threads: u64,
    /// Nanoseconds per program run, one per run of the measurement.
    pub(super) ns_per_run: Vec<f64>,
    /// Program runs counted in each run.
    pub(super) runs_counted: Vec<u64>,
}

pub(super) struct Startup {
    pub(super) name: &'static str,
    pub(super) command: String,
    pub(super) times: Vec<f64>,
    pub(super) phases: Option<Phases>,
    /// Not measured: the host refuses the target's breakpoints (why).
    pub(super) refused: Option<String>,
}

pub(super) struct Idle {
    pub(super) name: &'static str,
    pub(super) command: String,
    pub(super) rss_kib: Option<u64>,
}

/// hwbp-trace's `--records` in a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Records {
    All,
    /// One record in 100.
    Sample,
    None,
}

impl Records {
    pub(super) fn arg(self) -> &'static str {
        match self {
            Records::All => "all",
            Records::Sample => "sample:100",
            Records::None => "none",
        }
    }
}

pub(super) struct Measured {
    pub(super) command: String,
    pub(super) expected: u64,
    pub(super) summary: JsonlSummary,
    pub(super) wall: Duration,
    pub(super) cpu: Duration,
    pub(super) max_rss_kib: u64,
    pub(super) jsonl_bytes: u64,
    /// Different user stacks in the JSONL file, when counted.
    pub(super) ustacks: Option<u64>,
}

/// One run of the stack-growth measurement.
pub(super) struct StackRun {
    /// fx_user's arguments.
    pub(super) fixture: String,
    /// Distinct stacks the fixture makes.
    pub(super) distinct: u64,
    pub(super) records: Records,
    pub(super) measured: Measured,
}

pub(super) struct Results {
    pub(super) runs: u64,
    pub(super) small: u64,
    pub(super) large: u64,
    pub(super) paired: Vec<Paired>,
    /// Hits per batch of the paired runs.
    pub(super) batch: u64,
    pub(super) per_hit: Vec<PerHit>,
    pub(super) bpf_time: Vec<BpfTime>,
    pub(super) startup: Vec<Startup>,
    pub(super) sustained: Vec<Measured>,
    /// The sustained rate with the dashboard (empty without tmux).
    pub(super) dashboard: Vec<Measured>,
    /// Headless, the JSONL file on tmpfs (/dev/shm): a diagnostic.
    pub(super) sustained_tmpfs: Vec<Measured>,
    /// The BPF program's time per hit, one thread and every CPU hitting.
    pub(super) contention: Vec<Contention>,
    pub(super) growth: Vec<Measured>,
    pub(super) stacks: Vec<StackRun>,
    pub(super) stack_hits: u64,
    pub(super) idle: Vec<Idle>,
    /// The kernel-target section and its command (None with --no-vm).
    pub(super) vm: Option<(String, String)>,
    /// Section 6: recorded hits through the reader, no kernel.
    pub(super) replay: super::replay::Replay,
    pub(super) elapsed: Duration,
    /// Debug exceptions the host lost in all the runs (fx_user's SIGTRAPs).
    pub(super) lost_exceptions: u64,
}

pub(super) struct Machine {
    pub(super) cpus: usize,
    pub(super) kernel: String,
    pub(super) cpu_model: String,
    pub(super) memory: String,
    pub(super) load: String,
    pub(super) commit: String,
    pub(super) date: String,
}

impl Machine {
    pub(super) fn probe() -> Self {
        let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let commit = Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(workspace_root())
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Machine {
            cpus: thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            cpu_model: field(&cpuinfo, "model name"),
            memory: field(&read("/proc/meminfo"), "MemTotal"),
            load: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            commit,
            date: utc_date(now),
        }
    }

    pub(super) fn one_line(&self) -> String {
        format!(
            "{} CPUs ({}), kernel {}, {} RAM, load {}",
            self.cpus, self.cpu_model, self.kernel, self.memory, self.load
        )
    }
}

/// YYYY-MM-DD HH:MM UTC from Unix seconds (civil-from-days, H. Hinnant).
pub(super) fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The lowest and highest of `values`.
pub(super) fn extremes(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| {
            (low.min(v), high.max(v))
        })
}

pub(super) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Seconds per hit: the slope between the medians at the two sizes.
pub(super) fn slope(times: &[Vec<f64>; 2], span: u64) -> f64 {
    (median(&times[1]) - median(&times[0])) / span as f64
}

/// What one hit costs the traced program beyond the workload's own work,
/// in seconds, under one tool.
pub(super) fn beyond_workload(results: &Results, workload: &str, variant: Variant) -> f64 {
    let span = results.large - results.small;
    let program = |v: Variant| {
        results
            .per_hit
            .iter()
            .find(|r| r.workload == workload && r.variant == v)
            .map_or(f64::NAN, |r| slope(&r.program, span))
    };
    program(variant) - program(Variant::Alone)
}

/// Round by round, what one hit costs the program beyond the workload under
/// `variant`, less the same under `minus` (None: nothing), over the same
/// under `over`, less the same under `minus`: how far the ratio the goals
/// judge (on medians) moves between rounds. Each round ran every variant at
/// both sizes, one right after another.
pub(super) fn round_ratios(
    results: &Results,
    workload: &str,
    variant: Variant,
    over: Variant,
    minus: Option<Variant>,
) -> Vec<f64> {
    let span = (results.large - results.small) as f64;
    ratios_by_round(&results.per_hit, span, workload, [variant, over], minus)
}

/// [`round_ratios`] on the rows themselves; `span` is the hits between the
/// two sizes.
pub(super) fn ratios_by_round(
    rows: &[PerHit],
    span: f64,
    workload: &str,
    [variant, over]: [Variant; 2],
    minus: Option<Variant>,
) -> Vec<f64> {
    let row = |v: Variant| {
        rows.iter()
            .find(|r| r.workload == workload && r.variant == v)
    };
    let (Some(top), Some(bottom), Some(alone)) = (row(variant), row(over), row(Variant::Alone))
    else {
        return Vec::new();
    };
    let offset = minus.and_then(row);
    let rounds = [top, bottom, alone]
        .iter()
        .chain(offset.as_ref())
        .map(|r| r.program[0].len().min(r.program[1].len()))
        .min()
        .unwrap_or(0);
    let per_hit = |r: &PerHit, i: usize| (r.program[1][i] - r.program[0][i]) / span;
    (0..rounds)
        .map(|i| {
            let base = per_hit(alone, i);
            let offset = offset.map_or(0.0, |r| per_hit(r, i) - base);
            (per_hit(top, i) - base - offset) / (per_hit(bottom, i) - base - offset)
        })
        .collect()
}

/// "rounds 1.08x to 1.22x": the lowest and highest of [`round_ratios`].
pub(super) fn round_range(ratios: &[f64]) -> String {
    let (low, high) = extremes(ratios);
    if ratios.is_empty() {
        String::new()
    } else {
        format!("; rounds {low:.2}x to {high:.2}x")
    }
}

/// "Clearly cheaper than perf record -g": hwbp-trace adds to the floor (the
/// debug exception, which both tools pay) at most this fraction of what
/// perf adds. The tools' own costs are what differ; on a VM guest the floor
/// is mostly the VM exit, several times either tool's own cost (see
/// BENCHMARKS.md), so a ratio of whole per-hit costs would hide the
/// difference.
pub(super) const CHEAPER: f64 = 0.75;

pub(super) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

//! `cargo xtask bench`: what tracing costs on this machine, side by side with
//! perf, written to BENCHMARKS.md at the workspace root.
//!
//! Four measurements (issue 7), then two more:
//! 1. per-hit cost, for an execute and a write target of the fx_user fixture:
//!    the workload alone, `perf stat -e mem:ADDR` (the floor: the debug
//!    exception itself), hwbp-trace with kernel and user stacks and a JSONL
//!    file, and `perf record -e mem:ADDR -c 1` with and without -g (without:
//!    the kernel's own smallest sample, a bound for any tracer that records
//!    each hit). The fixture waits for a file, the tool attaches with -p,
//!    and the file appears once the tool is armed (hwbp-trace: its Tracing
//!    line; perf: started with events disabled, enabled through its control
//!    FIFO, which it acknowledges).
//!    Timed from then to the fixture's exit (what the traced program pays)
//!    and to the tool's exit. Two run sizes, alternating runs, medians; the
//!    slope between the sizes is the per-hit cost. The goals are judged on
//!    paired runs, less noisy: perf stat on the target's twin and the tool
//!    on the target in one process, whose batches of hits on each alternate
//!    (fx_user `paired`). Then the BPF program's
//!    own time per hit, with and without stacks, from the kernel's
//!    accounting (kernel.bpf_stats_enabled, on only for those runs).
//! 2. start-up, from exec to the `Tracing` line, for a kernel and a user
//!    target, and where the time goes (one run under strace, split at the
//!    first kallsyms/ELF, BTF, bpf() and perf_event_open calls).
//! 3. sustained rate: one fixture thread per CPU calling the target, traced
//!    with -p and a JSONL file, headless and with the dashboard (in a
//!    detached tmux session): hits lost at the default ring-buffer size,
//!    hwbp-trace's own CPU time per 100k hits, its peak RSS.
//! 4. growth: hwbp-trace's peak RSS for longer and longer traces (streaming
//!    exports must keep it flat), and for more and more distinct user
//!    stacks (`fx_user stacks N DISTINCT`).
//!
//! 5. the kernel-target part, in a VM (bench_vm.rs).
//! 6. replay: raw hits of a live run fed through the reader's collector
//!    again and again, with no kernel (`replay`): records per second per
//!    core with kernel and user stacks symbolized and JSONL written.
//!
//! It reports; it never gates. This is a shared 2-vCPU VM where every
//! breakpoint hit is a VM exit, so single timings are noisy: medians of
//! alternating runs and slopes are what the report shows. No test asserts a
//! timing.
//!
//! perf takes raw addresses only and fx_user is a PIE, so every run here
//! (the workload alone and hwbp-trace too, for fairness) goes through
//! `setarch -R`: without address-space randomisation the fixture loads at
//! the same base every time, and the run-time address is computed once.

mod measures;
mod process;
mod replay;
mod report;
mod results;
mod runs;
mod strace;
#[cfg(test)]
mod tests;
mod workload;
use std::{fs, path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Args;

use crate::{build, setup, workspace_root};

use self::{
    report::write_report,
    results::{Machine, Results},
    runs::BPF_TIME_RUNS,
    workload::{Bench, Variant},
};

#[derive(Args)]
pub struct Options {
    /// Runs per measurement; the report shows medians.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Hits in the small run of the per-hit measurement.
    #[arg(long, default_value_t = 20_000)]
    small: u64,
    /// Hits in the large run of the per-hit measurement.
    #[arg(long, default_value_t = 100_000)]
    large: u64,
    /// Paired runs per tool and target (see BENCHMARKS.md, section 1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    paired_runs: u64,
    /// Hits on each target in a paired run.
    #[arg(long, default_value_t = 100_000)]
    paired_hits: u64,
    /// Hits per batch in a paired run (a round is one batch per target).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Calls per fixture thread (one thread per CPU) for the sustained rate.
    #[arg(long, default_value_t = 100_000)]
    sustained: u64,
    /// Trace lengths (hits) for the memory-growth measurement.
    #[arg(long, value_delimiter = ',', default_values_t = [20_000u64, 200_000, 1_000_000])]
    lengths: Vec<u64>,
    /// Distinct user stacks for the stack-growth measurement (1 to 131072).
    #[arg(long, value_delimiter = ',', default_values_t = [1u64, 100, 10_000, 100_000])]
    stacks: Vec<u64>,
    /// Hits per run of the stack-growth measurement.
    #[arg(long, default_value_t = 100_000)]
    stack_hits: u64,
    /// Measure the binaries already in target/release instead of building.
    #[arg(long)]
    no_build: bool,
    /// Skip the kernel-target part, which boots Debian's kernel under QEMU.
    #[arg(long)]
    no_vm: bool,
    /// Debian kernel for the kernel-target part (default: what
    /// linux-image-amd64 depends on).
    #[arg(long, value_name = "VERSION")]
    kernel: Option<String>,
    /// Where to write the report [default: BENCHMARKS.md in the workspace root].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only the paired runs of conditions (`TARGET if COND`: a kept and a
    /// rejected hit against the floor), their table printed, no report
    /// written.
    #[arg(long)]
    only_conditions: bool,
    /// Only the replay of recorded hits through the reader (section 6),
    /// its table printed, no report written.
    #[arg(long)]
    only_replay: bool,
    /// Runs of the replay.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    replay_runs: u64,
    /// Records fed through the reader per replay run.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    replay_records: u64,
    /// Only the paired runs of the record modes (`--records all`,
    /// `sample:100`, `none`, k+u stacks, against the floor), their table
    /// printed, no report written.
    #[arg(long)]
    only_records: bool,
    /// Only the BPF program's time per hit with one and with every CPU
    /// hitting, every hit recorded or none (section 3's last table), its
    /// table printed, no report written.
    #[arg(long)]
    only_ring: bool,
}

pub fn run(options: Options) -> Result<()> {
    let Options {
        runs,
        small,
        large,
        paired_runs,
        paired_hits,
        batch,
        sustained,
        lengths,
        stacks,
        stack_hits,
        no_build,
        no_vm,
        kernel,
        out,
        only_conditions,
        only_replay,
        replay_runs,
        replay_records,
        only_records,
        only_ring,
    } = options;
    ensure!(
        small < large,
        "--small ({small}) must be less than --large ({large})"
    );
    ensure!(
        paired_hits % batch == 0 && paired_hits / batch >= 10,
        "--batch ({batch}) must divide --paired-hits ({paired_hits}) into at least 10 rounds"
    );
    if let Some(bad) = stacks
        .iter()
        .find(|&&d| d == 0 || d > FX_STACK_PATHS || d > stack_hits)
    {
        bail!(
            "--stacks {bad}: each must be 1 to {FX_STACK_PATHS} (fx_user's call paths) and at \
             most --stack-hits ({stack_hits})"
        );
    }
    if !no_build {
        setup::run()?;
        build::run()?;
    }
    let started = Instant::now();
    let bench = Bench::new()?;
    // Every fx_user of the bench notes its SIGTRAPs there, whoever starts
    // it (the tools with `--`, tmux).
    // SAFETY: no other thread runs yet: the commands so far were waited for.
    unsafe { std::env::set_var("HWBP_FX_FAULTS", bench.faults()) };
    let machine = Machine::probe();
    println!("bench: {}", machine.one_line());

    if only_conditions || only_records {
        let variants: &[Variant] = match only_conditions {
            true => &Variant::CONDITIONS,
            false => &Variant::RECORDS,
        };
        let paired = bench.paired(variants, paired_runs, paired_hits, batch)?;
        let mut table = String::new();
        report::write_paired(&mut table, &bench, &paired, batch);
        println!("{table}");
        return Ok(());
    }
    if only_ring {
        let contention = bench.ring_contention(BPF_TIME_RUNS, large)?;
        let mut table = String::new();
        report::write_contention(&mut table, &contention);
        println!("{table}");
        return Ok(());
    }
    if only_replay {
        let replay = bench.replay(replay_runs, replay_records)?;
        let mut table = String::new();
        replay::write_replay(&mut table, &replay);
        println!("{table}");
        return Ok(());
    }
    let mut report = String::new();
    let paired = bench.paired(&Variant::PAIRED, paired_runs, paired_hits, batch)?;
    let per_hit = bench.per_hit(runs, small, large)?;
    let bpf_time = bench.bpf_time(BPF_TIME_RUNS, large)?;
    let startup = bench.startup(runs)?;
    let (sustained, dashboard, sustained_tmpfs) = bench.sustained(sustained)?;
    let contention = bench.ring_contention(BPF_TIME_RUNS, large)?;
    let growth = bench.growth(&lengths)?;
    let stacks = bench.stacks(&stacks, stack_hits)?;
    let idle = bench.idle_memory()?;
    // A failure in the VM is reported in its section, not fatal: the host's
    // numbers stand on their own.
    let vm = (!no_vm).then(|| {
        crate::bench_vm::run(kernel.as_deref()).unwrap_or_else(|e| {
            (
                format!("## 5. Kernel target in the VM\n\nNot measured: {e:#}\n\n"),
                String::new(),
            )
        })
    });
    let replay = bench.replay(replay_runs, replay_records)?;
    let elapsed = started.elapsed();

    write_report(
        &mut report,
        &machine,
        &bench,
        &Results {
            runs,
            small,
            large,
            paired,
            batch,
            per_hit,
            bpf_time,
            startup,
            sustained,
            dashboard,
            sustained_tmpfs,
            contention,
            growth,
            stacks,
            stack_hits,
            idle,
            vm,
            replay,
            elapsed,
            lost_exceptions: bench.lost_exceptions()?,
        },
    );
    let out = out.unwrap_or_else(|| workspace_root().join("BENCHMARKS.md"));
    let report = with_kept_part(report, fs::read_to_string(&out).ok().as_deref());
    fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "bench: wrote {} ({:.0} s of measuring)",
        out.display(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// Call paths of `fx_user stacks` (17 levels of two functions): the most
/// distinct stacks it can make.
const FX_STACK_PATHS: u64 = 1 << 17;

/// The line after which BENCHMARKS.md is kept by hand: measurements made
/// while tuning the code, which no run of this benchmark repeats.
pub(crate) const KEPT_BY_HAND: &str = "<!-- Kept by hand: `cargo xtask bench` rewrites everything above this line and keeps what follows. -->";

/// `report`, then the hand-kept part of the `old` report, if it has one.
fn with_kept_part(mut report: String, old: Option<&str>) -> String {
    if let Some(kept) = old.and_then(|old| old.find(KEPT_BY_HAND).map(|at| &old[at..])) {
        if !report.ends_with("\n\n") {
            report.push('\n');
        }
        report.push_str(kept);
    }
    report
}

//! `hwbp-trace replay` (hidden, for `cargo xtask bench --only-replay`):
//! raw hits kept by `--capture-records` fed through the live session's
//! [`Collector`], with no BPF program, no breakpoint and no ring buffer,
//! so that what the reader costs per hit can be timed alone and
//! profiled.
//!
//! Everything a hit goes through is the live path's: the records become a
//! [`Batch`] by [`Batch::push_record`], as the ring buffer's do, and the
//! collector names, decodes and writes them ([`Collector::record_batch`]).
//! Only what comes before the first hit is done here instead of by
//! [`super::prepare`]: the targets are resolved in `-p PID`, a live
//! process of the program the records came from, loaded at the same
//! addresses (`setarch -R`), whose maps name the recorded processes'
//! addresses ([`Symbolizer::snapshot_as`]); kallsyms is read before the
//! timing starts (a live run reads it at start-up or at the first kernel
//! frame).
//!
//! It reports the records, the process's CPU time (user and system, every
//! thread, the trace file's writer included), the collecting thread's own
//! (naming, decoding, formatting: all but the write(2) of the trace file,
//! which its writer thread makes) and the wall time, from the first record
//! to the trace file closed.

use std::{
    collections::BTreeSet,
    fs,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use hwbp_common::Counters;

use super::{BATCH, Options, collector::Collector, target_summary};
use crate::{
    output::{
        export::{Export, Format},
        stats::{SharedStats, Stats, monotonic_ns},
    },
    probe::{load::Batch, records},
    record::{format::Summary, symbolize::Symbolizer, values::Values},
    target::{
        TargetSpec,
        btf::Btf,
        resolve::{ProcessImage, Resolver, Space},
    },
};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The targets of the run that captured the records, in its order.
    #[arg(value_name = "TARGET", required = true, value_parser = parse_target)]
    pub targets: Vec<TargetSpec>,
    /// Records written by `--capture-records FILE`.
    #[arg(long, value_name = "FILE")]
    pub records: PathBuf,
    /// A live process of the recorded program, at the same addresses.
    #[arg(short, long, value_name = "PID")]
    pub pid: i32,
    /// Write the trace to FILE, as a live run does; repeatable.
    #[arg(short, long = "output", value_name = "FILE")]
    pub outputs: Vec<PathBuf>,
    /// Format of every -o file, instead of guessing from the extension.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Feed the records this many times over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeat: u64,
}

fn parse_target(s: &str) -> Result<TargetSpec, String> {
    s.parse::<TargetSpec>().map_err(|e| e.to_string())
}

/// What a replay took.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Replayed {
    pub records: u64,
    /// CPU time of the whole process.
    pub user_s: f64,
    pub sys_s: f64,
    /// CPU time of the collecting thread alone.
    pub collector_user_s: f64,
    pub collector_sys_s: f64,
    pub wall_s: f64,
}

/// Replays `args.records` through the collector; what it took.
pub fn run(args: &ReplayArgs) -> Result<Replayed> {
    let path = args.records.display().to_string();
    let bytes = fs::read(&args.records).with_context(|| format!("reading {path}"))?;
    let records = records::parse(&bytes, &path)?;

    let process = ProcessImage::open(args.pid)?;
    let mut resolver = Resolver::new(Some(process));
    let breakpoints = resolver.resolve_all(&args.targets)?;

    // The recorded processes, and whether any hit has kernel frames.
    let mut pids = BTreeSet::new();
    let mut kernel_frames = false;
    let mut batch = Batch::default();
    for record in &records {
        batch.clear();
        if batch.push_record(record)
            && let Some(hit) = batch.hits().first()
        {
            pids.insert(hit.pid);
            kernel_frames |= !hit.kstack().is_empty();
        }
    }
    batch.clear();
    let kernel_targets = breakpoints.iter().any(|bp| bp.space == Space::Kernel);
    let kallsyms = if kernel_frames || kernel_targets {
        Some(resolver.kallsyms()?)
    } else {
        None
    };
    let mut symbolizer = Symbolizer::new(kallsyms);
    for pid in pids {
        symbolizer.snapshot_as(pid, args.pid as u32);
    }
    let initial = Values::initial(&breakpoints, Some(args.pid));
    let btf = kernel_targets.then(Btf::vmlinux);
    let values = Values::new(&breakpoints, Some(args.pid), btf, initial);

    let mut exports = args
        .outputs
        .iter()
        .map(|path| Export::create(path, args.format))
        .collect::<Result<Vec<_>, _>>()?;
    let command_line: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let header = super::prepare::header(&breakpoints, &command_line, monotonic_ns());
    for export in exports.iter_mut() {
        export.header(&header);
    }
    let stats: SharedStats = Arc::new(Mutex::new(Stats::new(breakpoints.len())));
    let options = Options::default();
    let mut collector = Collector::new(
        &breakpoints,
        &mut exports,
        symbolizer,
        values,
        None,
        stats,
        &options,
    );

    let (started, cpu_before) = (Instant::now(), cpu_times(libc::RUSAGE_SELF));
    let thread_before = cpu_times(libc::RUSAGE_THREAD);
    for _ in 0..args.repeat {
        for record in &records {
            batch.push_record(record);
            if batch.len() == BATCH {
                collector.record_batch(&mut batch);
            }
        }
    }
    collector.record_batch(&mut batch);
    collector.release_held();
    if let Some(failure) = &collector.failure {
        bail!("{failure}");
    }
    let summary = Summary {
        targets: breakpoints
            .iter()
            .enumerate()
            .map(|(slot, bp)| {
                target_summary(bp, &Counters::default(), collector.recorded_for(slot), 0)
            })
            .collect(),
        end_reason: "replay".to_owned(),
        ..Summary::default()
    };
    for export in collector.exports.iter_mut() {
        export
            .finish(&summary)
            .with_context(|| format!("writing {}", export.path.display()))?;
    }
    let thread_after = cpu_times(libc::RUSAGE_THREAD);
    let (wall, cpu_after) = (started.elapsed(), cpu_times(libc::RUSAGE_SELF));
    let records = (0..breakpoints.len())
        .map(|slot| collector.recorded_for(slot))
        .sum();
    Ok(Replayed {
        records,
        user_s: (cpu_after.0.saturating_sub(cpu_before.0)).as_secs_f64(),
        sys_s: (cpu_after.1.saturating_sub(cpu_before.1)).as_secs_f64(),
        collector_user_s: (thread_after.0.saturating_sub(thread_before.0)).as_secs_f64(),
        collector_sys_s: (thread_after.1.saturating_sub(thread_before.1)).as_secs_f64(),
        wall_s: wall.as_secs_f64(),
    })
}

/// User and system CPU time so far: of the process (RUSAGE_SELF, all
/// threads) or of the calling thread (RUSAGE_THREAD).
fn cpu_times(who: libc::c_int) -> (Duration, Duration) {
    // SAFETY: rusage is plain old data (all zeroes is valid), and
    // getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a local rusage, which outlives the call.
    unsafe { libc::getrusage(who, &mut usage) };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (time(usage.ru_utime), time(usage.ru_stime))
}

//! After the end condition: disarm, take what is left in the ring buffer
//! (nothing recorded before the stop is lost), read the counters and the
//! perf events' own counts, account for every hit that fired, and write
//! the summary to every output.

use std::time::Instant;

use hwbp_common::Counters;

use super::{BATCH, collector::Collector, run::EndReason, target_summary};
use crate::{
    output::stats::SharedStats,
    probe::{
        arm::Armed,
        load::{Batch, Events, Probe},
        process::Launched,
    },
    record::format::Summary,
};

/// Every hit that fired but was not recorded, per target and in all:
/// `missed[slot]` is the perf event's own count less what the program saw
/// (recorded or filtered), never handed to BPF by the kernel; `lost` adds
/// the ring buffer's drops and the malformed records to every target's
/// missed hits.
pub(super) fn losses(
    counters: &[Counters],
    kernel_counts: &[u64],
    malformed: u64,
) -> (Vec<u64>, u64) {
    let missed: Vec<u64> = counters
        .iter()
        .enumerate()
        .map(|(slot, c)| {
            kernel_counts
                .get(slot)
                .copied()
                .unwrap_or(0)
                .saturating_sub(c.hits + c.filtered)
        })
        .collect();
    let dropped: u64 = counters.iter().map(|c| c.dropped).sum();
    (
        missed.clone(),
        malformed + dropped + missed.iter().sum::<u64>(),
    )
}

/// What finishing a run needs.
pub(super) struct Ending<'a> {
    pub armed: Armed,
    pub probe: &'a mut Probe,
    pub events: &'a mut Events,
    pub batch: &'a mut Batch,
    pub launched: &'a mut Option<Launched>,
    pub stats: &'a SharedStats,
    pub started: Instant,
}

/// Disarms, drains and summarizes; the summary is written to every output.
pub(super) fn finish(
    end_reason: EndReason,
    collector: &mut Collector<'_>,
    ending: Ending<'_>,
) -> Summary {
    let Ending {
        mut armed,
        probe,
        events,
        batch,
        launched,
        stats,
        started,
    } = ending;
    let breakpoints = collector.breakpoints.clone();
    // Stop: disarm first, then take what is left; nothing recorded is lost.
    armed.disarm();
    loop {
        let empty = events.drain(batch, BATCH);
        collector.process(batch);
        if empty || collector.failure.is_some() {
            break;
        }
    }
    // A failure while draining the rest ends the run as an error too.
    let end_reason = if collector.failure.is_some() {
        EndReason::Error
    } else {
        end_reason
    };
    let counters = probe.counters();
    let kernel_counts = armed.kernel_counts(breakpoints.len());
    drop(armed);

    // How the command ended, when the trace ended with it: its exit code,
    // or 128 + the signal's number as a shell's `$?` says, and the signal.
    let (exit_status, signal) = match launched.as_mut() {
        Some(child) if end_reason == EndReason::ProcessExit => match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt as _;
                match (status.code(), status.signal()) {
                    (Some(code), _) => (Some(code), None),
                    (None, Some(signal)) => (
                        Some(128 + signal),
                        Some(crate::probe::process::signal_name(signal)),
                    ),
                    (None, None) => (None, None),
                }
            }
            _ => (None, None),
        },
        _ => (None, None),
    };
    let (missed, lost) = losses(&counters, &kernel_counts, batch.malformed());
    let summary = Summary {
        targets: breakpoints
            .iter()
            .zip(&counters)
            .enumerate()
            .map(|(slot, (bp, c))| {
                let mut t = target_summary(
                    bp,
                    c,
                    collector.recorded_for(slot),
                    collector.after_limit[slot],
                );
                t.kernel_count = kernel_counts.get(slot).copied().unwrap_or(0);
                t.missed = missed[slot];
                t.watches = collector.watch_summaries(slot);
                t.removed = collector.removed.get(slot).copied().unwrap_or(false);
                t
            })
            .collect(),
        // Everything that fired but was not recorded: ring buffer full,
        // never handed to BPF by the kernel, or a malformed record.
        lost,
        duration_s: started.elapsed().as_secs_f64(),
        end_reason: end_reason.as_str().to_owned(),
        exit_status,
        signal,
        trace_truncated: false,
        output_errors: Vec::new(),
        error: collector.failure.clone(),
    };
    let mut summary = summary;
    if let Some(redactor) = &collector.redactor {
        redactor.summary(&mut summary);
    }
    if let Ok(mut s) = stats.lock() {
        s.counters = counters;
    }
    let mut failures = Vec::new();
    for export in collector.exports.iter_mut() {
        if let Err(e) = export.finish(&summary) {
            failures.push(format!("{}: {e}", export.path.display()));
        }
    }
    if let Some(child) = launched.as_mut()
        && end_reason != EndReason::ProcessExit
    {
        // The traced command outlives the trace, as with perf.
        let _ = child.try_wait();
    }
    summary.output_errors = failures;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(hits: u64, filtered: u64, dropped: u64) -> Counters {
        Counters {
            hits,
            filtered,
            dropped,
            ..Counters::default()
        }
    }

    /// Every hit the perf events counted is recorded, filtered, dropped or
    /// missed: what is not recorded or filtered is lost, and said.
    #[test]
    fn every_hit_is_accounted_for() {
        let c = [counters(10, 2, 3), counters(5, 0, 0)];
        // Target 0: the kernel counted 16, the program saw 12: 4 missed.
        // Target 1: all 5 seen.
        let (missed, lost) = losses(&c, &[16, 5], 1);
        assert_eq!(missed, [4, 0]);
        assert_eq!(lost, 1 + 3 + 4, "malformed + dropped + missed");
        // A perf event that counted less than the program saw (its count
        // read first) is no negative loss.
        assert_eq!(losses(&c, &[11, 5], 0), (vec![0, 0], 3));
        // No kernel count (the event is gone): nothing missed is claimed.
        assert_eq!(losses(&c, &[], 0), (vec![0, 0], 3));
    }
}

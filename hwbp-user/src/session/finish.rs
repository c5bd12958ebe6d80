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

/// Every hit that fired but was not recorded, per target and in all.
pub(super) struct Losses {
    /// Per target, the perf event's own count less what the program saw
    /// (recorded, filtered or rejected by a condition): never handed to BPF
    /// by the kernel.
    pub missed: Vec<u64>,
    /// Per target, what the program put in the ring buffer (its hits less
    /// its drops and those it gave no record by choice) less what hwbp-trace took from there (recorded, or past
    /// `-n`): records left unread, or read but not recorded, when tracing
    /// ended on an error (and malformed records, which name no target).
    pub unrecorded: Vec<u64>,
    /// The ring buffer's drops, missed and unrecorded hits, all targets.
    pub lost: u64,
}

/// The [`Losses`] of a run, from the program's counters, the perf events'
/// own counts and what the collector took per target (`consumed`).
pub(super) fn losses(counters: &[Counters], kernel_counts: &[u64], consumed: &[u64]) -> Losses {
    let missed: Vec<u64> = counters
        .iter()
        .enumerate()
        .map(|(slot, c)| {
            kernel_counts
                .get(slot)
                .copied()
                .unwrap_or(0)
                .saturating_sub(c.hits + c.filtered + c.cond_rejected + c.retraps)
        })
        .collect();
    let unrecorded: Vec<u64> = counters
        .iter()
        .enumerate()
        .map(|(slot, c)| {
            (c.hits.saturating_sub(c.dropped + c.unsampled))
                .saturating_sub(consumed.get(slot).copied().unwrap_or(0))
        })
        .collect();
    let dropped: u64 = counters.iter().map(|c| c.dropped).sum();
    let lost = dropped + missed.iter().sum::<u64>() + unrecorded.iter().sum::<u64>();
    Losses {
        missed,
        unrecorded,
        lost,
    }
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
    collector.release_held();
    collector.finish_capture();
    // A failure while draining the rest ends the run as an error too.
    let end_reason = if collector.failure.is_some() {
        EndReason::Error
    } else {
        end_reason
    };
    let counters = probe.counters();
    let kernel_counts = armed.kernel_counts(breakpoints.len());
    drop(armed);
    // Read once every hit is in (disarmed, drained): the exact counts.
    let aggregates = match probe.aggregates() {
        Ok(aggregates) => Some(collector.aggregate_records(&aggregates)),
        Err(e) => {
            log::warn!(
                "reading the kernel's aggregates: {e}; the counts by stack come from the records"
            );
            None
        }
    };

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
    let consumed: Vec<u64> = (0..breakpoints.len())
        .map(|slot| collector.recorded_for(slot) + collector.after_limit[slot])
        .collect();
    let Losses {
        missed,
        unrecorded,
        lost,
    } = losses(&counters, &kernel_counts, &consumed);
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
                t.unrecorded = unrecorded[slot];
                t.watches = collector.watch_summaries(slot);
                t.removed = collector.removed.get(slot).copied().unwrap_or(false);
                t
            })
            .collect(),
        // Everything that fired but was not recorded: ring buffer full,
        // never handed to BPF by the kernel, or left unrecorded by an error.
        lost,
        duration_s: started.elapsed().as_secs_f64(),
        end_reason: end_reason.as_str().to_owned(),
        exit_status,
        signal,
        trace_truncated: false,
        output_errors: Vec::new(),
        error: collector.failure.clone(),
        records: collector.records.to_string(),
    };
    for t in summary
        .targets
        .iter()
        .filter(|t| t.retried + t.dropped_busy > 0)
    {
        log::debug!(
            "{}: the ring buffer's lock was taken by another CPU: {} records written on a \
             retry, {} dropped with room left",
            t.target,
            t.retried,
            t.dropped_busy
        );
    }
    let mut summary = summary;
    if let Some(redactor) = &collector.redactor {
        redactor.summary(&mut summary);
    }
    if let Ok(mut s) = stats.lock() {
        match &aggregates {
            Some(aggregates) => s.set_aggregates(aggregates, &counters),
            None => s.counters = counters,
        }
    }
    let mut failures = Vec::new();
    for export in collector.exports.iter_mut() {
        for (_, agg) in aggregates.iter().flatten() {
            export.aggregate(agg);
        }
        if let Err(e) = export.finish(&summary) {
            failures.push(format!("{}: {e}", export.path.display()));
        }
    }
    if let Some(child) = launched.as_mut()
        && end_reason != EndReason::ProcessExit
    {
        // The traced command outlives the trace (perf record would SIGTERM
        // it): it is only reaped here if it has exited.
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

    /// Every hit the perf events counted is recorded, filtered, dropped,
    /// missed or unrecorded: what is not recorded or filtered is lost, and
    /// said.
    #[test]
    fn every_hit_is_accounted_for() {
        let c = [counters(10, 2, 3), counters(5, 0, 0)];
        // Target 0: the kernel counted 16, the program saw 12: 4 missed;
        // 7 of its 10 hits reached the ring buffer, all 7 taken.
        // Target 1: all 5 seen and taken.
        let all = losses(&c, &[16, 5], &[7, 5]);
        assert_eq!(all.missed, [4, 0]);
        assert_eq!(all.unrecorded, [0, 0]);
        assert_eq!(all.lost, 3 + 4, "dropped + missed");
        // A perf event that counted less than the program saw (its count
        // read first) is no negative loss.
        let early = losses(&c, &[11, 5], &[7, 5]);
        assert_eq!((early.missed, early.lost), (vec![0, 0], 3));
        // No kernel count (the event is gone): nothing missed is claimed.
        assert_eq!(losses(&c, &[], &[7, 5]).lost, 3);
    }

    /// arm64's re-traps are in the kernel's count but are no hits: neither
    /// hits nor lost.
    #[test]
    fn retraps_are_not_missed() {
        let c = [Counters {
            retraps: 2,
            ..counters(100, 0, 0)
        }];
        let all = losses(&c, &[102], &[100]);
        assert_eq!((all.missed, all.lost), (vec![0], 0));
    }

    /// Tracing that ends on an error leaves records in the ring buffer (or
    /// in a batch taken from it) that no line holds: each is counted.
    #[test]
    fn records_an_error_left_behind_are_lost_and_said() {
        // 20 hits, 5 recorded before the error (the fault-injection test).
        let c = [counters(20, 0, 0)];
        let early = losses(&c, &[20], &[5]);
        assert_eq!(early.unrecorded, [15]);
        assert_eq!(early.missed, [0]);
        assert_eq!(early.lost, 15);
        // Records taken past -n are consumed, not lost.
        assert_eq!(losses(&c, &[20], &[20]).lost, 0);
    }

    /// Hits left without a record by `--records sample:N|none` are counted
    /// in the aggregates, not lost.
    #[test]
    fn hits_sampled_out_are_not_lost() {
        let c = [Counters {
            unsampled: 18,
            ..counters(20, 0, 0)
        }];
        let sampled = losses(&c, &[20], &[2]);
        assert_eq!((sampled.unrecorded, sampled.lost), (vec![0], 0));
        // One of the two records never read: that one is lost.
        assert_eq!(losses(&c, &[20], &[1]).unrecorded, [1]);
    }
}

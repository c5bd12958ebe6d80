//! Collecting: hits from the ring buffer into records until the end
//! condition (a signal, `-d`, `-n`, the traced process's exit or exec, an
//! error), with the live counters refreshed for the dashboard.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    time::sleep,
};

use super::{
    BATCH, Options,
    collector::Collector,
    control::Control,
    live::{self, Live},
};
use crate::{
    output::stats::SharedStats,
    probe::{
        arm::Armed,
        load::{Batch, Events, Probe},
        process::{ExitWatch, Image},
    },
    record::format::ChangeRecord,
    target::resolve::Space,
};

/// Why a trace ended, as the summary's `end_reason` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// SIGINT, SIGTERM, SIGHUP or the dashboard's `q`.
    Signal,
    /// `-d SECONDS` passed.
    Duration,
    /// `-n HITS` recorded.
    MaxHits,
    /// The traced process exited.
    ProcessExit,
    /// The traced process ran exec: the kernel dropped its breakpoints.
    ProcessExec,
    /// Recording failed (a ring buffer error, a caught panic).
    Error,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "signal",
            Self::Duration => "duration",
            Self::MaxHits => "max-hits",
            Self::ProcessExit => "process-exit",
            Self::ProcessExec => "process-exec",
            Self::Error => "error",
        }
    }
}

/// What the collecting loop reads from and writes to.
pub(super) struct Sources<'a> {
    pub events: &'a mut Events,
    pub probe: &'a mut Probe,
    pub batch: &'a mut Batch,
    pub stats: &'a SharedStats,
    pub exit_watch: Option<&'a ExitWatch>,
    pub traced_pid: Option<i32>,
    pub image_at_start: Option<Image>,
    pub armed: &'a mut Armed,
    /// `--control`: commands that change the targets.
    pub control: Option<&'a mut Control>,
    pub live: &'a mut Live,
}

/// Records hits until the trace ends; says why it ended.
pub(super) async fn collect(
    options: &Options,
    collector: &mut Collector<'_>,
    sources: Sources<'_>,
) -> Result<EndReason> {
    let Options {
        duration,
        ref stop,
        ref changes,
        ..
    } = *options;
    let mut requests = changes.as_deref().and_then(live::Requests::take);
    let Sources {
        events,
        probe,
        batch,
        stats,
        exit_watch,
        traced_pid,
        image_at_start,
        armed,
        mut control,
        live,
    } = sources;
    let watch_exec = collector
        .breakpoints
        .iter()
        .any(|bp| bp.space == Space::User);
    let mut signals = StopSignals::install()?;
    let deadline =
        sleep(duration.unwrap_or(Duration::MAX.saturating_sub(Duration::from_secs(1 << 40))));
    tokio::pin!(deadline);
    let mut counters_tick = tokio::time::interval(Duration::from_millis(250));
    // The aggregates are read at most once a second, and less often when a
    // read takes long (see AGGREGATES_SHARE).
    let mut next_aggregates = Instant::now();
    let mut drain_tick = tokio::time::interval(Duration::from_millis(20));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // Hits are waiting that no wakeup will announce: take them now.
    let mut backlog = false;
    let end_reason = loop {
        tokio::select! {
            // Ordered: a stop request wins, then hits before a process exit
            // (the exit path drains the ring buffer anyway).
            biased;
            () = signals.recv() => break EndReason::Signal,
            () = async { if let Some(stop) = stop { stop.notified().await } }, if stop.is_some() => break EndReason::Signal,
            () = &mut deadline, if duration.is_some() => break EndReason::Duration,
            r = events.next_batch(batch, BATCH) => {
                if let Err(e) = r {
                    collector.failure = Some(format!("reading the ring buffer: {e}"));
                    break EndReason::Error;
                }
                if let Some(end) = collector.record_batch(batch) {
                    break end;
                }
                // AsyncFd readiness takes no cooperative budget: while hits
                // keep coming this branch is always ready, and without a
                // yield the runtime would never poll its driver, so signals,
                // the deadline and the exit watch would go unseen until the
                // hits stop. yield_now defers us until after a driver poll.
                tokio::task::yield_now().await;
            }
            // The program wakes us only when the waiting bytes cross a
            // threshold (fewer interrupts per hit), so: take whatever is
            // waiting on a timer too, and once a drain leaves hits behind,
            // go on until none is left. A crossing can go unannounced (two
            // CPUs each see the buffer below it, then both add), and above
            // the threshold no record wakes us: waiting for a wakeup there
            // took one batch per tick, less than the CPUs make.
            () = async { if !backlog { drain_tick.tick().await; } } => {
                backlog = !events.drain(batch, BATCH);
                if let Some(end) = collector.record_batch(batch) {
                    break end;
                }
                // As above: let the runtime see signals and timers.
                tokio::task::yield_now().await;
            }
            () = async { if let Some(w) = exit_watch { w.exited().await } }, if exit_watch.is_some() => break EndReason::ProcessExit,
            line = async {
                match control.as_mut() {
                    Some(c) => c.next().await,
                    None => std::future::pending().await,
                }
            }, if control.is_some() => {
                let Some(line) = line else {
                    control = None;
                    continue;
                };
                if line.trim().is_empty() {
                    continue;
                }
                let result = apply_change(&line, live, events, batch, live::Parts {
                    armed: &mut *armed,
                    probe: &mut *probe,
                    collector: &mut *collector,
                    stats,
                });
                if let Some(c) = control.as_mut() {
                    c.answer(result.map(drop));
                }
                if let Some(end) = collector.record_batch(batch) {
                    break end;
                }
            }
            line = async {
                match requests.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            }, if requests.is_some() => {
                let Some(line) = line else {
                    requests = None;
                    continue;
                };
                let result = apply_change(&line, live, events, batch, live::Parts {
                    armed: &mut *armed,
                    probe: &mut *probe,
                    collector: &mut *collector,
                    stats,
                });
                if let Some(changes) = changes {
                    changes.answer(result);
                }
                if let Some(end) = collector.record_batch(batch) {
                    break end;
                }
            }
            _ = counters_tick.tick() => {
                // An exec replaces the image user targets point into: the
                // kernel dropped those breakpoints (remove_on_exec); end.
                if watch_exec && traced_pid.and_then(Image::of).is_some_and(|now| Some(now) != image_at_start) {
                    break EndReason::ProcessExec;
                }
                let now = Instant::now();
                let aggregates = now >= next_aggregates;
                refresh(probe, collector, stats, aggregates);
                if aggregates {
                    next_aggregates = now + AGGREGATES_EVERY.max(now.elapsed() * AGGREGATES_SHARE);
                }
            }
        }
    };

    Ok(signals.after_exit(end_reason).await)
}

/// The signals that end a trace: SIGINT, SIGTERM and SIGHUP.
struct StopSignals {
    sigint: Signal,
    sigterm: Signal,
    sighup: Signal,
}

impl StopSignals {
    /// Installs the three handlers (from then on these signals no longer
    /// kill the process).
    fn install() -> Result<Self> {
        Ok(Self {
            sigint: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            sigterm: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            sighup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    /// Waits for any of the three.
    async fn recv(&mut self) {
        tokio::select! {
            biased;
            _ = self.sigint.recv() => {}
            _ = self.sigterm.recv() => {}
            _ = self.sighup.recv() => {}
        }
    }

    /// The end reason as the user sees it: a process exit with one of the
    /// signals pending right behind it was the user's stop.
    ///
    /// Ctrl-C reaches the whole process group: the command can die of it
    /// before the runtime hands us our own SIGINT, which is pending by then
    /// (the kernel signals every member of the group before any runs on).
    /// The user ended the trace all the same.
    async fn after_exit(&mut self, end_reason: EndReason) -> EndReason {
        if end_reason != EndReason::ProcessExit {
            return end_reason;
        }
        let stopped = tokio::time::timeout(Duration::from_millis(20), self.recv())
            .await
            .is_ok();
        if stopped {
            EndReason::Signal
        } else {
            end_reason
        }
    }
}

/// How often the aggregates are read while tracing, at most.
const AGGREGATES_EVERY: Duration = Duration::from_secs(1);

/// A read walks the whole map (two system calls a key) and names every
/// key's stacks: 100,000 distinct stacks took about a second of CPU a read
/// (BENCHMARKS.md, distinct stacks). So the next read waits this many
/// times as long as the last one took: the reads take at most a quarter
/// of the reader's time, and the rest goes to the records.
const AGGREGATES_SHARE: u32 = 3;

/// Copies the probe's kernel-side counters and aggregates into the shared
/// stats the dashboard and the metrics read. Naming the aggregates' stacks
/// while the processes that made them still run is what lets their user
/// frames be named at the end too (the symbolizer keeps what it learned).
fn refresh(
    probe: &mut Probe,
    collector: &mut Collector<'_>,
    stats: &SharedStats,
    aggregates: bool,
) {
    let counters = probe.counters();
    if !aggregates {
        if let Ok(mut s) = stats.lock() {
            s.counters = counters;
        }
        return;
    }
    match probe.aggregates() {
        Ok(aggregates) => {
            let named = collector.aggregate_records(&aggregates);
            if let Ok(mut s) = stats.lock() {
                s.set_aggregates(&named, &counters);
            }
        }
        Err(e) => {
            log::warn!("reading the kernel's aggregates: {e}");
            if let Ok(mut s) = stats.lock() {
                s.counters = counters;
            }
        }
    }
}

/// Records the hits waiting (made before the change, so written before
/// it), then applies one change line.
fn apply_change(
    line: &str,
    live: &mut Live,
    events: &mut Events,
    batch: &mut Batch,
    parts: live::Parts<'_, '_>,
) -> Result<ChangeRecord, String> {
    loop {
        let empty = events.drain(batch, BATCH);
        parts.collector.process(batch);
        if empty {
            break;
        }
    }
    live::run_line(live, line, parts)
}

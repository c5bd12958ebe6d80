//! Making records of raw hits: each hit of a batch named, decoded and
//! written to stdout, the `-o` files and the live statistics, with `-n`
//! counted and a panic while recording caught so that the run still ends
//! with its summary.

use std::{
    collections::HashMap,
    io::{self},
    panic,
    sync::Arc,
};

use hwbp_common::{COMM_LEN, HIT_NO_VALUE, Hit};

use super::{Options, run::EndReason};
use crate::{
    output::{export::Export, stats::SharedStats},
    probe::{
        aggregates::{Aggregate, Records},
        load::Batch,
        records::RecordWriter,
    },
    record::{
        format::{
            AggregateRecord, CpuHits, HitRecord, Stack, WatchSummary, frame_caller, stack_caller,
        },
        redact::Redactor,
        symbolize::Symbolizer,
        values::Values,
    },
    target::{
        Mode,
        resolve::{Breakpoint, Space},
    },
};

pub(super) struct Collector<'a> {
    /// What each target watches now (by target id; a removed target keeps
    /// its last watch).
    pub breakpoints: Vec<Breakpoint>,
    symbolizer: Symbolizer,
    stats: SharedStats,
    pub exports: &'a mut [Export],
    print_hits: bool,
    max_hits: Option<u64>,
    recorded: u64,
    per_slot: Vec<u64>,
    pub after_limit: Vec<u64>,
    /// Per `-o` file, whether its write error was reported already.
    write_errors_reported: Vec<bool>,
    /// `--redact-addresses`.
    pub redactor: Option<Redactor>,
    /// Why recording stopped early (a caught panic, a ring buffer error).
    pub failure: Option<String>,
    /// Test hook: panic before recording hit N (HWBP_FAULT_PANIC_AFTER), so
    /// that the tests can prove a bug does not lose the trace's summary.
    fault_after: Option<u64>,
    /// Argument names and types, decoded values, old values.
    pub values: Values,
    /// Per target, whether it was removed while tracing.
    pub removed: Vec<bool>,
    /// Per target, what it watched in turn (one entry unless it was moved
    /// while tracing): a hit is named after the watch at its address.
    pub watches: Vec<Vec<Watch>>,
    /// Which hits get a record (`--records`), for the summary.
    pub records: Records,
    /// comm → its shared text (cleared when it grows past COMMS_KEPT).
    comms: HashMap<[u8; COMM_LEN], Arc<str>, foldhash::fast::RandomState>,
    /// `--capture-records`: where every raw hit goes too.
    capture: Option<RecordWriter>,
    /// The batch's records, for the statistics.
    for_stats: Vec<(usize, Arc<HitRecord>)>,
    /// Per target whose hits come before the access (arm64 write and rw
    /// watchpoints), its last hit, written once the next says the value
    /// the access left, or when tracing ends.
    held: Vec<Option<Held>>,
}

/// A hit of a target whose watchpoint traps before the access, kept until
/// the target's next hit.
struct Held {
    record: HitRecord,
    tid: u32,
    addr: u64,
    trap: u32,
}

impl Held {
    /// Whether `next`, the target's next recorded hit, read the value this
    /// hit's access left: it is the same thread's, so that access is done,
    /// at the same address, and the target's very next trap (numbered one
    /// more: no other thread's access, and no hit filtered, unsampled or
    /// dropped, between them). Else the value after stays unknown.
    fn completed_by(&self, next: &Hit) -> bool {
        self.trap != 0
            && next.tid == self.tid
            && next.addr == self.addr
            && next.trap == self.trap.wrapping_add(1)
    }
}

/// One thing a target watched: what its hits say about the target, shared
/// rather than copied per hit, and how many it recorded.
pub(super) struct Watch {
    pub bp: Breakpoint,
    target: Arc<str>,
    symbol: Arc<str>,
    mode: Arc<str>,
    pub hits: u64,
}

impl Watch {
    pub fn new(bp: &Breakpoint) -> Self {
        Self {
            bp: bp.clone(),
            target: bp.spec.text.as_str().into(),
            symbol: bp.symbol.as_str().into(),
            mode: bp.mode.as_str().into(),
            hits: 0,
        }
    }
}

/// A hit's raw stacks, from its record or from the kernel's aggregates.
struct StackParts<'a> {
    kernel: &'a [u64],
    user: &'a [u64],
    /// [`Hit::ret`].
    ret: u64,
}

/// Distinct comms kept shared before the table starts again.
const COMMS_KEPT: usize = 4096;

impl<'a> Collector<'a> {
    /// A collector of the hits of `breakpoints`, writing to `exports`.
    pub fn new(
        breakpoints: &[Breakpoint],
        exports: &'a mut [Export],
        symbolizer: Symbolizer,
        values: Values,
        redactor: Option<Redactor>,
        stats: SharedStats,
        options: &Options,
    ) -> Self {
        let Options {
            print_hits,
            max_hits,
            ref capture_records,
            ..
        } = *options;
        let capture =
            capture_records
                .as_deref()
                .and_then(|path| match RecordWriter::create(path) {
                    Ok(writer) => Some(writer),
                    Err(e) => {
                        log::warn!("not capturing records to {}: {e}", path.display());
                        None
                    }
                });
        let outputs = exports.len();
        Self {
            breakpoints: breakpoints.to_vec(),
            symbolizer,
            stats,
            exports,
            print_hits,
            max_hits,
            recorded: 0,
            per_slot: vec![0; breakpoints.len()],
            after_limit: vec![0; breakpoints.len()],
            write_errors_reported: vec![false; outputs],
            redactor,
            failure: None,
            fault_after: std::env::var("HWBP_FAULT_PANIC_AFTER")
                .ok()
                .and_then(|n| n.parse().ok()),
            values,
            watches: breakpoints.iter().map(|bp| vec![Watch::new(bp)]).collect(),
            removed: vec![false; breakpoints.len()],
            records: options.filters.records,
            comms: HashMap::default(),
            capture,
            for_stats: Vec::new(),
            held: breakpoints.iter().map(|_| None).collect(),
        }
    }
}

impl Collector<'_> {
    fn limit_reached(&self) -> bool {
        self.max_hits.is_some_and(|n| self.recorded >= n)
    }

    /// Records `batch`; the end reason when recording must stop there.
    pub fn record_batch(&mut self, batch: &mut Batch) -> Option<EndReason> {
        self.process(batch);
        if self.failure.is_some() {
            Some(EndReason::Error)
        } else if self.limit_reached() {
            Some(EndReason::MaxHits)
        } else {
            None
        }
    }

    pub fn recorded_for(&self, slot: usize) -> u64 {
        self.per_slot.get(slot).copied().unwrap_or(0)
    }

    /// Target `slot` watches `bp` from now on (moved), or a new target.
    pub fn watch(&mut self, slot: usize, bp: &Breakpoint) {
        if slot < self.breakpoints.len() {
            self.breakpoints[slot] = bp.clone();
            self.watches[slot].push(Watch::new(bp));
        } else {
            self.breakpoints.push(bp.clone());
            self.watches.push(vec![Watch::new(bp)]);
            self.per_slot.push(0);
            self.after_limit.push(0);
            self.removed.push(false);
            self.held.push(None);
        }
    }

    /// What target `slot` watched in turn with its hits, when it was moved.
    pub fn watch_summaries(&self, slot: usize) -> Vec<WatchSummary> {
        match self.watches.get(slot) {
            Some(watches) if watches.len() > 1 => watches
                .iter()
                .map(|w| WatchSummary {
                    target: w.bp.spec.text.clone(),
                    symbol: w.bp.symbol.clone(),
                    addr: format!("{:#x}", w.bp.addr),
                    mode: w.bp.mode.as_str().to_owned(),
                    hits: w.hits,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The watch of target `slot` that made a hit at `addr`: the latest
    /// at that address (a hit of the old address that was still in the
    /// ring buffer at a move keeps the old name), else the current one.
    fn watch_of(&self, slot: usize, addr: u64) -> Option<usize> {
        let watches = self.watches.get(slot)?;
        watches
            .iter()
            .rposition(|w| w.bp.addr == addr)
            .or(watches.len().checked_sub(1))
    }

    /// Records a batch. A panic while doing so (a bug) does not lose the
    /// run: it is caught, tracing ends with `end_reason: "error"`, and the
    /// usual teardown still disarms, flushes and writes every summary.
    pub fn process(&mut self, batch: &mut Batch) {
        if self.failure.is_some() {
            batch.clear();
            return;
        }
        // tui's catch_unwind: the panic hook then leaves the terminal to a
        // dashboard, which shows the error.
        let result =
            crate::tui::catch_unwind(panic::AssertUnwindSafe(|| self.process_batch(batch)));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            self.failure = Some(format!("internal error while recording hits: {message}"));
            batch.clear();
            // The hits recorded before the panic are in the files: the
            // statistics count them too.
            self.flush_stats();
        }
    }

    /// The batch's records so far into the statistics: once a batch, as
    /// the dashboard and the metrics take the same lock to read them.
    fn flush_stats(&mut self) {
        if let Ok(mut stats) = self.stats.lock() {
            for (slot, record) in self.for_stats.drain(..) {
                stats.record(slot, record);
            }
        }
        self.for_stats.clear();
    }

    fn process_batch(&mut self, batch: &mut Batch) {
        self.capture(batch);
        let mut stdout = io::stdout().lock();
        for hit in batch.hits() {
            let slot = hit.slot as usize;
            let Some(watch) = self.watch_of(slot, hit.addr) else {
                continue;
            };
            if self.limit_reached() {
                self.after_limit[slot] += 1;
                continue;
            }
            if self.fault_after == Some(self.recorded) {
                panic!("fault injection (HWBP_FAULT_PANIC_AFTER={})", self.recorded);
            }
            let mut record = self.record(slot, watch, hit);
            self.watches[slot][watch].hits += 1;
            if let Some(redactor) = &self.redactor {
                redactor.hit(&mut record);
            }
            self.recorded += 1;
            self.per_slot[slot] += 1;
            if !self.values.before_access(slot) {
                self.write(slot, record, &mut stdout);
                continue;
            }
            // The value this hit read is the one the last hit's access left.
            if let Some(mut last) = self.held[slot].take() {
                if last.completed_by(hit) {
                    last.record.value = record.old_value;
                    last.record.value_text = record.old_value_text.clone();
                }
                self.write(slot, last.record, &mut stdout);
            }
            self.held[slot] = Some(Held {
                record,
                tid: hit.tid,
                addr: hit.addr,
                trap: hit.trap,
            });
        }
        batch.clear();
        self.flush_stats();
        for (export, reported) in self.exports.iter().zip(&mut self.write_errors_reported) {
            if *reported {
                continue;
            }
            if let Some(e) = export.error() {
                let path = export.path.display().to_string();
                if let Ok(mut stats) = self.stats.lock() {
                    stats.export_failed(&path, &e.to_string());
                }
                // Not over a dashboard: it shows the failure, and the
                // summary's output errors print after it.
                if !crate::tui::terminal_taken() {
                    eprintln!(
                        "hwbp-trace: stopped writing {path}: {e}; tracing goes on, the summary will still be printed"
                    );
                }
                *reported = true;
            }
        }
    }

    /// A hit's record to stdout (unless `-q`), the exports and the
    /// statistics.
    fn write(&mut self, slot: usize, record: HitRecord, stdout: &mut io::StdoutLock) {
        if self.print_hits {
            use std::io::Write as _;
            let _ = writeln!(stdout, "{}", record.line());
        }
        for export in self.exports.iter_mut() {
            export.hit(&record);
        }
        self.for_stats.push((slot, Arc::new(record)));
    }

    /// Tracing ended: the hits still waiting for the next one are written
    /// as they are, the value after their access unknown.
    pub fn release_held(&mut self) {
        let mut stdout = io::stdout().lock();
        for slot in 0..self.held.len() {
            if let Some(last) = self.held[slot].take() {
                self.write(slot, last.record, &mut stdout);
            }
        }
        self.flush_stats();
    }

    /// `--capture-records`: the batch's raw hits to the file; on an error,
    /// said once, and no more capture.
    fn capture(&mut self, batch: &Batch) {
        let Some(writer) = self.capture.as_mut() else {
            return;
        };
        if let Err(e) = batch.hits().iter().try_for_each(|hit| writer.write(hit)) {
            log::warn!("capturing records stopped: {e}");
            self.capture = None;
        }
    }

    /// Ends `--capture-records`: what is buffered goes to the file.
    pub fn finish_capture(&mut self) {
        if let Some(writer) = self.capture.take()
            && let Err(e) = writer.finish()
        {
            log::warn!("capturing records stopped: {e}");
        }
    }

    /// The shared text of a comm.
    fn comm(&mut self, raw: &[u8; COMM_LEN]) -> Arc<str> {
        if let Some(comm) = self.comms.get(raw) {
            return comm.clone();
        }
        if self.comms.len() >= COMMS_KEPT {
            self.comms.clear();
        }
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let comm: Arc<str> = String::from_utf8_lossy(&raw[..len]).into();
        self.comms.insert(*raw, comm.clone());
        comm
    }

    /// Symbolized stacks of target `slot`'s watch `watch`: the kernel one and
    /// the user one of process `pid`, with the return address `ret` of a
    /// user function hit at its entry (see [`Hit::ret`]).
    fn stacks(
        &mut self,
        slot: usize,
        watch: usize,
        pid: u32,
        entry: &StackParts,
    ) -> (Stack, Stack) {
        let bp = &self.watches[slot][watch].bp;
        let (data, at_entry, space) = (bp.mode.is_data(), bp.at_entry, bp.space);
        // At a kernel function's entry on arm64, the caller is in x30 only
        // (0 elsewhere: x86-64's unwinder finds it).
        let kret = if at_entry && space == Space::Kernel {
            entry.ret
        } else {
            0
        };
        let kstack = self.symbolizer.kernel_stack(entry.kernel, data, kret);
        // At a user function's entry the frame-pointer walk skips the
        // immediate caller: its return address is still at the stack pointer.
        let ret = if at_entry && space == Space::User {
            entry.ret
        } else {
            0
        };
        let ustack = self.symbolizer.user_stack(pid, entry.user, data, ret);
        (kstack, ustack)
    }

    /// The kernel's aggregates, named: each with its target, comm, stacks
    /// and caller. A target moved while tracing is counted in the kernel
    /// by its number alone: its aggregates carry its current name.
    pub fn aggregate_records(&mut self, aggregates: &[Aggregate]) -> Vec<(usize, AggregateRecord)> {
        let mut out = Vec::with_capacity(aggregates.len());
        for agg in aggregates {
            let slot = agg.slot;
            let Some(watch) = self.watches.get(slot).and_then(|w| w.len().checked_sub(1)) else {
                continue;
            };
            let parts = match agg.stack.as_deref() {
                Some(stack) => StackParts {
                    kernel: stack.kstack(),
                    user: stack.ustack(),
                    ret: stack.ret,
                },
                None => StackParts {
                    kernel: &[],
                    user: &[],
                    ret: 0,
                },
            };
            let (kstack, ustack) = self.stacks(slot, watch, agg.pid, &parts);
            let names = &self.watches[slot][watch];
            let data = names.bp.mode.is_data();
            let target = names.target.clone();
            // A watchpoint traps after the access: name the accessing
            // instruction, as a record's ip_sym does.
            let ip_sym = self.symbolizer.frame(agg.pid, agg.ip, data);
            let caller: Arc<str> = if data {
                frame_caller(Some(&ip_sym)).into()
            } else {
                frame_caller(stack_caller(&kstack, &ustack)).into()
            };
            let mut record = AggregateRecord {
                target,
                ip_sym,
                pid: agg.pid,
                comm: self.comm(&agg.comm),
                count: agg.count(),
                cpus: agg
                    .per_cpu
                    .iter()
                    .map(|&(cpu, hits)| CpuHits { cpu, hits })
                    .collect(),
                caller,
                stack_stored: agg.stack_id == 0 || agg.stack.is_some(),
                kstack,
                ustack,
            };
            if let Some(redactor) = &self.redactor {
                redactor.aggregate(&mut record);
            }
            out.push((slot, record));
        }
        out
    }

    fn record(&mut self, slot: usize, watch: usize, hit: &Hit) -> HitRecord {
        let comm = self.comm(&hit.comm);
        let names = &self.watches[slot][watch];
        let (target, symbol, mode_text) = (
            names.target.clone(),
            names.symbol.clone(),
            names.mode.clone(),
        );
        let mode = names.bp.mode;
        let parts = StackParts {
            kernel: hit.kstack(),
            user: hit.ustack(),
            ret: hit.ret,
        };
        let (kstack, ustack) = self.stacks(slot, watch, hit.pid, &parts);
        let crate::record::values::ValueFields {
            value,
            old_value,
            value_type,
            value_text,
            old_value_text,
        } = self.values.value(
            hit.slot as usize,
            (mode != Mode::Execute && hit.flags & HIT_NO_VALUE == 0).then_some(hit.value),
        );
        HitRecord {
            ts_ns: hit.ts_ns,
            cpu: hit.cpu,
            pid: hit.pid,
            tid: hit.tid,
            comm,
            target,
            symbol,
            addr: crate::record::format::hex(hit.addr),
            mode: mode_text,
            ip: crate::record::format::hex(hit.ip),
            // A watchpoint traps after the access: name the accessing instruction.
            ip_sym: self.symbolizer.frame(hit.pid, hit.ip, mode.is_data()),
            value,
            old_value,
            value_type,
            value_text,
            old_value_text,
            args: (mode == Mode::Execute).then(|| self.values.args(hit.slot as usize, &hit.args)),
            kstack,
            ustack,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(tid: u32, addr: u64, trap: u32) -> Hit {
        // SAFETY: Hit is plain old data; all zeroes is a valid one.
        let mut hit: Hit = unsafe { std::mem::zeroed() };
        (hit.tid, hit.addr, hit.trap) = (tid, addr, trap);
        hit
    }

    /// The next hit gives the value after a held one's access only when
    /// that access is surely done and nothing else trapped between.
    #[test]
    fn a_hit_is_completed_only_by_its_threads_very_next_trap() {
        let held = Held {
            record: HitRecord::default(),
            tid: 7,
            addr: 0x1000,
            trap: 41,
        };
        assert!(held.completed_by(&hit(7, 0x1000, 42)));
        // Another thread's access may still be before this one's store.
        assert!(!held.completed_by(&hit(8, 0x1000, 42)));
        // A trap between (another thread's, or a filtered, unsampled or
        // dropped hit) may have changed the value.
        assert!(!held.completed_by(&hit(7, 0x1000, 43)));
        // Two CPUs that took the same number.
        assert!(!held.completed_by(&hit(7, 0x1000, 41)));
        // The target moved to another address.
        assert!(!held.completed_by(&hit(7, 0x2000, 42)));
        // Numbers wrap.
        let last = Held {
            trap: u32::MAX,
            ..held
        };
        assert!(last.completed_by(&hit(7, 0x1000, 0)));
        // No numbers (x86-64, where hits come after the access).
        let none = Held { trap: 0, ..last };
        assert!(!none.completed_by(&hit(7, 0x1000, 1)));
    }
}

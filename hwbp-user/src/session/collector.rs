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
    probe::load::Batch,
    record::{
        format::{HitRecord, WatchSummary},
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
    /// comm → its shared text (cleared when it grows past COMMS_KEPT).
    comms: HashMap<[u8; COMM_LEN], Arc<str>, foldhash::fast::RandomState>,
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
            ..
        } = *options;
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
            comms: HashMap::default(),
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
        }
    }

    fn process_batch(&mut self, batch: &mut Batch) {
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
            if self.print_hits {
                use std::io::Write as _;
                let _ = writeln!(stdout, "{}", record.line());
            }
            for export in self.exports.iter_mut() {
                export.hit(&record);
            }
            if let Ok(mut stats) = self.stats.lock() {
                stats.record(slot, Arc::new(record));
            }
        }
        batch.clear();
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

    fn record(&mut self, slot: usize, watch: usize, hit: &Hit) -> HitRecord {
        let comm = match self.comms.get(&hit.comm) {
            Some(comm) => comm.clone(),
            None => {
                if self.comms.len() >= COMMS_KEPT {
                    self.comms.clear();
                }
                let len = hit
                    .comm
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(hit.comm.len());
                let comm: Arc<str> = String::from_utf8_lossy(&hit.comm[..len]).into();
                self.comms.insert(hit.comm, comm.clone());
                comm
            }
        };
        let names = &self.watches[slot][watch];
        let (target, symbol, mode_text) = (
            names.target.clone(),
            names.symbol.clone(),
            names.mode.clone(),
        );
        let (mode, at_entry, space) = (names.bp.mode, names.bp.at_entry, names.bp.space);
        // At a kernel function's entry on arm64, the caller is in x30 only
        // (0 elsewhere: x86-64's unwinder finds it).
        let kret = if at_entry && space == Space::Kernel {
            hit.ret
        } else {
            0
        };
        let kstack = self
            .symbolizer
            .kernel_stack(hit.kstack(), mode.is_data(), kret);
        // At a user function's entry the frame-pointer walk skips the
        // immediate caller: its return address is still at the stack pointer.
        let ret = if at_entry && space == Space::User {
            hit.ret
        } else {
            0
        };
        let ustack = self
            .symbolizer
            .user_stack(hit.pid, hit.ustack(), mode.is_data(), ret);
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
            addr: format!("{:#x}", hit.addr),
            mode: mode_text,
            ip: format!("{:#x}", hit.ip),
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

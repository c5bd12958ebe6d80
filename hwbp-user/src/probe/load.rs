//! The BPF side seen from userspace: loading the program, filling its maps,
//! reading hits from the ring buffer (tokio `AsyncFd`, never busy-polling)
//! and the per-target counters.

use std::{
    io,
    os::fd::{AsFd as _, BorrowedFd},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, MapType, PerCpuArray, RingBuf},
    programs::PerfEvent,
};
use hwbp_common::{
    COMM_LEN, CondProgram, Config, Counters, FILTER_COMM, FILTER_OWN, FILTER_TID,
    GLOBAL_CONDITIONS, HIT_HEADER_SIZE, Hit, MAP_AGGS, MAP_CONDS, MAP_CONFIG, MAP_COUNTERS,
    MAP_EVENTS, MAP_OLD, MAP_STACKS, MAX_SLOTS, MAX_STACK_DEPTH, PROGRAM, RECORDS_ALL,
    RECORDS_NONE, RECORDS_SAMPLE, SLOT_COND, SLOT_EXECUTE, SLOT_KERNEL, SLOT_KSTACK, SLOT_READS,
    SLOT_USTACK, STACK_GAP_WATCHED, SlotConfig,
};
use thiserror::Error;
use tokio::io::unix::AsyncFd;

use super::aggregates::{Aggregate, AggregateMaps, MapSizes, Records};
use crate::{
    target::Mode,
    target::resolve::{Breakpoint, Space},
};

/// The BPF object built by hwbp-user/build.rs from hwbp-ebpf.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hwbp"));

/// Default ring buffer: 8 MiB, about 27,000 hits with 20-frame stacks
/// (each record is 136 bytes plus 8 per frame, plus an 8-byte header):
/// over 100 ms of every CPU hitting here, while the reader takes what waits
/// every 20 ms. It is mapped twice (records may wrap), so it counts 16 MiB
/// towards hwbp-trace's RSS.
pub const DEFAULT_BUFFER_SIZE: u32 = 8 << 20;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "--buffer-size {0}: the ring buffer must be a power of two of at least 4096 bytes (a page) \
         and at most 1 GiB, e.g. 8388608 (8 MiB)"
    )]
    BufferSize(u64),
    #[error("too many targets ({0}): hwbp handles at most {MAX_SLOTS} in one run")]
    TooManyTargets(usize),
    #[error("cannot load the BPF program: {0}. {hint}", hint = load_hint(.0))]
    Load(String),
    #[error(
        "this kernel has no BPF ring buffers (BPF_MAP_TYPE_RINGBUF, Linux 5.8 or later, or a \
         distribution kernel that backports it), which hwbp-trace hands its hits through: run it on \
         a newer kernel; `hwbp-trace doctor` checks this host"
    )]
    NoRingBuffer,
    #[error("BPF map `{0}` is missing from the object (a build problem: rebuild hwbp-trace)")]
    MissingMap(&'static str),
    #[error("BPF map `{name}`: {reason}")]
    Map { name: &'static str, reason: String },
    #[error(
        "a condition for target {0}, but this run's program was loaded without conditions (no \
         target had one when it started, and it takes no changes): start it again with the \
         condition"
    )]
    ConditionsOff(usize),
}

/// Smallest ring buffer: one page (the kernel wants a page-aligned power
/// of two).
pub const MIN_BUFFER_SIZE: u64 = 4096;
/// Largest ring buffer accepted: 1 GiB.
pub const MAX_BUFFER_SIZE: u64 = 1 << 30;

/// A ring buffer size the kernel takes: a power of two, a page to 1 GiB.
/// Checked by the command line too, before anything starts.
pub fn check_buffer_size(bytes: u64) -> Result<u64, LoadError> {
    if bytes.is_power_of_two() && (MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(LoadError::BufferSize(bytes))
    }
}

fn load_hint(reason: &str) -> &'static str {
    if reason.contains("Operation not permitted") || reason.contains("EPERM") {
        "Run as root, or grant CAP_BPF and CAP_PERFMON"
    } else {
        "`hwbp-trace doctor` checks this host"
    }
}

/// Why loading the object failed: if the kernel cannot create a ring
/// buffer map at all (kernels before 5.8), say that, not the loader's
/// first error.
fn object_load_error(reason: String) -> LoadError {
    match aya::sys::is_map_supported(MapType::RingBuf) {
        Ok(false) => LoadError::NoRingBuffer,
        Ok(true) | Err(_) => LoadError::Load(reason),
    }
}

/// What the program should record for each hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackChoice {
    pub kernel: bool,
    pub user: bool,
}

/// Kernel-side filters (`--comm`, `--tid`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    pub comm: Option<Vec<u8>>,
    pub tid: Option<u32>,
    /// Drop this process's hits: the tracer's own (a system-wide `vfs_read`
    /// would otherwise trace hwbp-trace reading its own files). None for the
    /// doctor's self-test, which traces itself on purpose.
    pub exclude_pid: Option<u32>,
    /// Which hits get a record (`--records`).
    pub records: Records,
}

/// The loaded BPF program and its maps.
pub struct Probe {
    ebpf: Ebpf,
    /// Rare diagnostics from the program (aya-log), flushed by [`Probe::counters`].
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    counters: PerCpuArray<MapData, Counters>,
    aggregates: AggregateMaps,
    pub(super) slots: usize,
    /// What the `CONFIG` map holds (changed while tracing by [`super::live`]).
    pub(super) config: Config,
    /// Each target's condition program, by target id (what `CONDS` holds
    /// for it): every entry of a target with one carries `SLOT_COND`.
    conditions: [Option<CondProgram>; MAX_SLOTS],
    /// The program was loaded with its condition interpreter
    /// ([`Loaded::conditions`]).
    conditions_on: bool,
}

/// The program, loaded and verified but not yet told its targets: loading
/// needs no target, so it can run while the targets are being resolved.
pub struct Loaded {
    ebpf: Ebpf,
    buffer_size: u64,
    /// Loaded with the condition interpreter. Without it (no target can
    /// have a condition) the verifier skips it, about half of the
    /// program's verification (docs/benchmarks.md).
    conditions: bool,
}

impl Probe {
    /// Loads the program, with one slot per breakpoint.
    pub fn load(
        breakpoints: &[Breakpoint],
        stacks: &[StackChoice],
        filters: &Filters,
        buffer_size: u64,
    ) -> Result<Self, LoadError> {
        let sizes = MapSizes {
            buffer: buffer_size,
            ..MapSizes::default()
        };
        Self::load_program(sizes, true)?.configure(breakpoints, stacks, filters)
    }

    /// Loads and verifies the program with its maps sized by `sizes`, and
    /// its condition interpreter when `conditions` (a target of the run
    /// may have a condition).
    pub fn load_program(sizes: MapSizes, conditions: bool) -> Result<Loaded, LoadError> {
        let buffer_size = check_buffer_size(sizes.buffer)?;
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_CONDITIONS, &u8::from(conditions), true)
            .map_max_entries(MAP_EVENTS, buffer_size as u32)
            .map_max_entries(MAP_AGGS, sizes.keys)
            .map_max_entries(MAP_STACKS, sizes.stacks)
            .load(BPF_OBJECT)
            .map_err(|e| object_load_error(error_chain(&e)))?;
        {
            let program: &mut PerfEvent = ebpf
                .program_mut(PROGRAM)
                .ok_or_else(|| {
                    LoadError::Load(format!("program `{PROGRAM}` missing from the object"))
                })?
                .try_into()
                .map_err(|e| LoadError::Load(error_chain(&e)))?;
            program
                .load()
                .map_err(|e| LoadError::Load(error_chain(&e)))?;
        }
        if cfg!(target_arch = "aarch64") {
            watch_retraps(&mut ebpf);
        }
        Ok(Loaded {
            ebpf,
            buffer_size,
            conditions,
        })
    }
}

/// The arm64 program that tells a re-trap from a hit (hwbp-ebpf's arch.rs):
/// a kprobe on the kernel's interrupt entry, attached for as long as the
/// program is loaded. Without it (a kernel without kprobes), a re-trap
/// counts as a hit, as it did before: said once, not fatal.
const RETRAP_PROGRAM: &str = "hwbp_irq";
const RETRAP_HOOK: &str = "irq_enter_rcu";

fn watch_retraps(ebpf: &mut Ebpf) {
    let attached = ebpf
        .program_mut(RETRAP_PROGRAM)
        .ok_or_else(|| format!("no program `{RETRAP_PROGRAM}` in the object"))
        .and_then(|program| {
            let program: &mut aya::programs::KProbe =
                program.try_into().map_err(|e| error_chain(&e))?;
            program.load().map_err(|e| error_chain(&e))?;
            program
                .attach(RETRAP_HOOK, 0)
                .map(drop)
                .map_err(|e| error_chain(&e))
        });
    if let Err(reason) = attached {
        log::warn!(
            "cannot attach the re-trap check to {RETRAP_HOOK} ({reason}): a kernel-mode hit whose \
             single step an interrupt ends early may be recorded twice (docs/arm64.md)"
        );
    }
}

impl Loaded {
    /// Instructions the verifier walked in the main program (Linux 5.16 or
    /// later): what start-up waits for.
    pub fn verified_instructions(&self) -> Option<u32> {
        let program: &PerfEvent = self.ebpf.program(PROGRAM)?.try_into().ok()?;
        program.info().ok()?.verified_instruction_count()
    }

    /// Gives the loaded program its targets (one slot per breakpoint) and
    /// filters.
    pub fn configure(
        self,
        breakpoints: &[Breakpoint],
        stacks: &[StackChoice],
        filters: &Filters,
    ) -> Result<Probe, LoadError> {
        let Self {
            mut ebpf,
            buffer_size,
            conditions: conditions_on,
        } = self;
        if breakpoints.len() > MAX_SLOTS {
            return Err(LoadError::TooManyTargets(breakpoints.len()));
        }
        let mut config = Config::default();
        for (i, (bp, stack)) in breakpoints.iter().zip(stacks).enumerate() {
            config.addrs[i] = bp.addr;
            config.slots[i] = slot_config(bp, *stack, i);
        }
        let filter = &mut config.filter;
        // A quarter of the buffer, at most 256 KiB: few wakeups, and the
        // reader, which also polls every 20 ms, never far behind. Test hook:
        // HWBP_WAKEUP_BYTES sets it (4294967295: never), so that a test can
        // prove the reader keeps up without them.
        // On arm64 the program never wakes the reader (see
        // host::arch::WAKEUP_RETRAPS): the 20 ms poll alone reads.
        let default_wakeup = if crate::host::arch::WAKEUP_RETRAPS {
            u32::MAX
        } else {
            (buffer_size / 4).min(256 << 10) as u32
        };
        filter.wakeup_bytes = std::env::var("HWBP_WAKEUP_BYTES")
            .ok()
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(default_wakeup);
        // With a watchpoint armed, user stacks are read around the large
        // frames rather than across them (see STACK_GAP_WATCHED).
        filter.stack_gap = if breakpoints.iter().any(|bp| bp.mode != Mode::Execute) {
            STACK_GAP_WATCHED
        } else {
            u32::MAX
        };
        if let Some(pid) = filters.exclude_pid {
            filter.flags |= FILTER_OWN;
            filter.own_pid = pid;
        }
        if let Some(comm) = &filters.comm {
            filter.flags |= FILTER_COMM;
            // The kernel's comm is at most 15 bytes and NUL-padded.
            let n = comm.len().min(COMM_LEN - 1);
            filter.comm[..n].copy_from_slice(&comm[..n]);
        }
        if let Some(tid) = filters.tid {
            filter.flags |= FILTER_TID;
            filter.tid = tid;
        }
        (filter.records, filter.sample_every) = match filters.records {
            Records::All => (RECORDS_ALL, 1),
            Records::Sample(n) => (RECORDS_SAMPLE, n.max(1)),
            Records::None => (RECORDS_NONE, 1),
        };
        let map = ebpf
            .map_mut(MAP_CONFIG)
            .ok_or(LoadError::MissingMap(MAP_CONFIG))?;
        let mut array: Array<_, Config> =
            Array::try_from(map).map_err(|e| map_err(MAP_CONFIG, e))?;
        array
            .set(0, config, 0)
            .map_err(|e| map_err(MAP_CONFIG, e))?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                log::debug!("no aya-log diagnostics from the BPF program: {e}");
                None
            }
        };
        let counters = ebpf
            .take_map(MAP_COUNTERS)
            .ok_or(LoadError::MissingMap(MAP_COUNTERS))?;
        let counters = PerCpuArray::try_from(counters).map_err(|e| map_err(MAP_COUNTERS, e))?;
        let aggs = ebpf
            .take_map(MAP_AGGS)
            .ok_or(LoadError::MissingMap(MAP_AGGS))?;
        let stacks = ebpf
            .take_map(MAP_STACKS)
            .ok_or(LoadError::MissingMap(MAP_STACKS))?;
        let aggregates = AggregateMaps::new(aggs, stacks)?;
        Ok(Probe {
            ebpf,
            logger,
            counters,
            aggregates,
            slots: breakpoints.len(),
            config,
            conditions: [None; MAX_SLOTS],
            conditions_on,
        })
    }
}

/// How the program handles the hits of `bp`, target `slot`.
pub fn slot_config(bp: &Breakpoint, stack: StackChoice, slot: usize) -> SlotConfig {
    let mut flags = 0;
    if bp.space == Space::Kernel {
        flags |= SLOT_KERNEL;
    }
    match bp.mode {
        Mode::Execute => flags |= SLOT_EXECUTE,
        Mode::ReadWrite | Mode::Read => flags |= SLOT_READS,
        Mode::Write => {}
    }
    if stack.kernel {
        flags |= SLOT_KSTACK;
    }
    if stack.user {
        flags |= SLOT_USTACK;
    }
    SlotConfig {
        slot: slot as u32,
        flags,
        len: u32::from(bp.len),
        _pad: 0,
    }
}

impl Probe {
    /// Gives targets their conditions, before anything is armed: per slot,
    /// the compiled program and the value `old` starts from (None for a
    /// target without a condition, which never looks at either map).
    pub fn set_conditions(
        &mut self,
        conditions: &[Option<(CondProgram, u64)>],
    ) -> Result<(), LoadError> {
        for (slot, condition) in conditions.iter().enumerate() {
            if let Some((program, old)) = condition {
                self.set_condition(slot, Some(*program), Some(*old))?;
            }
        }
        Ok(())
    }

    /// Gives target `slot` the condition `program` (None: none), and `old`
    /// its value unless None; every entry of the target follows (see
    /// [`super::live`]). The program is in place before the entries say
    /// it is there, and they stop saying so before it goes.
    pub fn set_condition(
        &mut self,
        slot: usize,
        program: Option<CondProgram>,
        old: Option<u64>,
    ) -> Result<(), LoadError> {
        if slot >= MAX_SLOTS {
            return Err(LoadError::TooManyTargets(slot + 1));
        }
        if program.is_some() && !self.conditions_on {
            return Err(LoadError::ConditionsOff(slot + 1));
        }
        let index = slot as u32;
        if let Some(old) = old {
            let map = self
                .ebpf
                .map_mut(MAP_OLD)
                .ok_or(LoadError::MissingMap(MAP_OLD))?;
            let mut array: Array<_, u64> = Array::try_from(map).map_err(|e| map_err(MAP_OLD, e))?;
            array.set(index, old, 0).map_err(|e| map_err(MAP_OLD, e))?;
        }
        if let Some(program) = program {
            let map = self
                .ebpf
                .map_mut(MAP_CONDS)
                .ok_or(LoadError::MissingMap(MAP_CONDS))?;
            let mut array: Array<_, CondProgram> =
                Array::try_from(map).map_err(|e| map_err(MAP_CONDS, e))?;
            array
                .set(index, program, 0)
                .map_err(|e| map_err(MAP_CONDS, e))?;
        }
        self.conditions[slot] = program;
        let Config { addrs, slots, .. } = &mut self.config;
        for (addr, entry) in addrs.iter().zip(slots.iter_mut()) {
            if *addr != 0 && entry.slot == index {
                entry.flags &= !SLOT_COND;
                if program.is_some() {
                    entry.flags |= SLOT_COND;
                }
            }
        }
        self.write_config()
    }

    /// Target `slot`'s condition program, if it has one.
    pub fn condition(&self, slot: usize) -> Option<CondProgram> {
        self.conditions.get(slot).copied().flatten()
    }

    pub fn program_fd(&self) -> Result<BorrowedFd<'_>, LoadError> {
        let program: &PerfEvent = self
            .ebpf
            .program(PROGRAM)
            .ok_or_else(|| LoadError::Load(format!("program `{PROGRAM}` missing")))?
            .try_into()
            .map_err(|e| LoadError::Load(error_chain(&e)))?;
        let fd = program.fd().map_err(|e| LoadError::Load(error_chain(&e)))?;
        Ok(fd.as_fd())
    }

    /// Writes [`Probe::config`] to the `CONFIG` map.
    pub(super) fn write_config(&mut self) -> Result<(), LoadError> {
        let map = self
            .ebpf
            .map_mut(MAP_CONFIG)
            .ok_or(LoadError::MissingMap(MAP_CONFIG))?;
        let mut array: Array<_, Config> =
            Array::try_from(map).map_err(|e| map_err(MAP_CONFIG, e))?;
        array
            .set(0, self.config, 0)
            .map_err(|e| map_err(MAP_CONFIG, e))
    }

    /// The ring buffer, registered with tokio. Call once.
    pub fn events(&mut self) -> Result<Events, LoadError> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or(LoadError::MissingMap(MAP_EVENTS))?;
        let ring = RingBuf::try_from(map).map_err(|e| map_err(MAP_EVENTS, e))?;
        // SAFETY: the RingBuf owns its map descriptor and always returns the
        // same one from as_raw_fd; the AsyncFd owns the RingBuf.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| LoadError::Map {
            name: MAP_EVENTS,
            reason: e.to_string(),
        })?;
        Ok(Events { ring })
    }

    /// The aggregates counted so far (see [`AggregateMaps::read`]).
    pub fn aggregates(&mut self) -> Result<Vec<Aggregate>, LoadError> {
        self.aggregates.read()
    }

    /// Counters per slot, summed over CPUs. Also passes on whatever the
    /// program logged since the last call.
    pub fn counters(&mut self) -> Vec<Counters> {
        if let Some(logger) = self.logger.as_mut() {
            logger.flush();
        }
        (0..self.slots as u32)
            .map(|slot| {
                self.counters
                    .get(&slot, 0)
                    .map(|per_cpu| {
                        per_cpu.iter().fold(Counters::default(), |acc, c| Counters {
                            hits: acc.hits + c.hits,
                            dropped: acc.dropped + c.dropped,
                            dropped_busy: acc.dropped_busy + c.dropped_busy,
                            retried: acc.retried + c.retried,
                            kstack_errors: acc.kstack_errors + c.kstack_errors,
                            ustack_errors: acc.ustack_errors + c.ustack_errors,
                            filtered: acc.filtered + c.filtered,
                            value_errors: acc.value_errors + c.value_errors,
                            cond_rejected: acc.cond_rejected + c.cond_rejected,
                            unsampled: acc.unsampled + c.unsampled,
                            agg_full: acc.agg_full + c.agg_full,
                            stack_full: acc.stack_full + c.stack_full,
                            retraps: acc.retraps + c.retraps,
                        })
                    })
                    .unwrap_or_default()
            })
            .collect()
    }
}

pub(super) fn map_err(name: &'static str, e: impl std::error::Error) -> LoadError {
    LoadError::Map {
        name,
        reason: error_chain(&e),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The ring buffer of hits.
pub struct Events {
    ring: AsyncFd<RingBuf<MapData>>,
}

/// Hits taken from the ring buffer, in slots that are kept from batch to
/// batch: a record copies only its own bytes (the header and the frames it
/// has) into a slot, instead of a whole 2 KiB [`Hit`] being zeroed, filled
/// and moved for every hit.
#[derive(Default)]
pub struct Batch {
    slots: Vec<Hit>,
    len: usize,
    /// Records refused as malformed since the batch was made (not reset by
    /// [`Batch::clear`]): hits that fired but cannot be shown, so lost.
    malformed: u64,
}

impl Batch {
    pub fn hits(&self) -> &[Hit] {
        &self.slots[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Records taken from the ring buffer but refused as malformed (shorter
    /// than their header says), over the batch's whole life.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Appends the record `bytes`; false (nothing appended, and the record
    /// counted in [`Batch::malformed`]) when it is shorter than its header
    /// says.
    pub fn push_record(&mut self, bytes: &[u8]) -> bool {
        if self.len == self.slots.len() {
            // SAFETY: Hit is repr(C) plain-old-data (integers and integer
            // arrays): all zeroes is a valid value.
            self.slots.push(unsafe { std::mem::zeroed() });
        }
        let slot = &mut self.slots[self.len];
        if !decode_into(bytes, slot) {
            self.malformed += 1;
            return false;
        }
        self.len += 1;
        true
    }
}

impl Events {
    /// Waits until hits are available, then moves up to `max` of them into
    /// `out` (bounded: a backlog is taken in pieces, not all into memory).
    pub async fn next_batch(&mut self, out: &mut Batch, max: usize) -> io::Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        if drain_into(ring, out, max) {
            guard.clear_ready();
        } else {
            // More is waiting: stay ready, the next call takes it.
            guard.retain_ready();
        }
        Ok(())
    }

    /// Takes up to `max` hits without waiting; true when the buffer is empty.
    /// The program wakes the reader only every so many bytes, so this is
    /// also called on a timer.
    pub fn drain(&mut self, out: &mut Batch, max: usize) -> bool {
        drain_into(self.ring.get_mut(), out, max)
    }
}

/// Moves up to `max` records into `out`; true when none is left. A
/// malformed record is consumed and counted by [`Batch::push_record`].
fn drain_into(ring: &mut RingBuf<MapData>, out: &mut Batch, max: usize) -> bool {
    for _ in 0..max {
        let Some(item) = ring.next() else {
            return true;
        };
        out.push_record(&item);
    }
    false
}

/// Copies the record `bytes` over the start of `hit`; false if it is shorter
/// than its header says. Frames past the record's own are left as they
/// were: [`Hit::kstack`] and [`Hit::ustack`] never reach them.
fn decode_into(bytes: &[u8], hit: &mut Hit) -> bool {
    if bytes.len() < HIT_HEADER_SIZE {
        return false;
    }
    let n = bytes.len().min(size_of::<Hit>());
    // SAFETY: copies n <= size_of::<Hit>() bytes into `hit`; every bit
    // pattern is a valid Hit.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut *hit).cast::<u8>(), n) };
    let frames = hit.kstack_len as usize + hit.ustack_len as usize;
    hit.kstack_len as usize <= MAX_STACK_DEPTH
        && hit.ustack_len as usize <= MAX_STACK_DEPTH
        && HIT_HEADER_SIZE + frames * 8 <= n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with these frames (kernel, then user).
    fn record(kernel: &[u64], user: &[u64], slot: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; HIT_HEADER_SIZE];
        let mut set = |offset: usize, value: u32| {
            bytes[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        };
        set(std::mem::offset_of!(Hit, kstack_len), kernel.len() as u32);
        set(std::mem::offset_of!(Hit, ustack_len), user.len() as u32);
        set(std::mem::offset_of!(Hit, slot), slot);
        for frame in kernel.iter().chain(user) {
            bytes.extend_from_slice(&frame.to_ne_bytes());
        }
        bytes
    }

    #[test]
    fn decodes_variable_length_records() {
        let bytes = record(
            &[0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020],
            &[0x5555_0000_1000],
            0,
        );
        let mut batch = Batch::default();
        assert!(batch.push_record(&bytes), "decodes");
        let hit = &batch.hits()[0];
        assert_eq!(
            hit.kstack(),
            &[0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020]
        );
        assert_eq!(hit.ustack(), &[0x5555_0000_1000]);
        // A record shorter than its frame counts is refused.
        assert!(!batch.push_record(&bytes[..bytes.len() - 8]));
        assert!(!batch.push_record(&bytes[..HIT_HEADER_SIZE - 1]));
        assert_eq!(batch.len(), 1, "refused records take no slot");
    }

    #[test]
    fn buffer_sizes() {
        for ok in [4096, 8 << 20, 1 << 30] {
            assert_eq!(check_buffer_size(ok).ok(), Some(ok));
        }
        for bad in [0, 1, 1000, 2048, 4097, 3 << 20, 1 << 31] {
            assert!(
                matches!(check_buffer_size(bad), Err(LoadError::BufferSize(b)) if b == bad),
                "{bad}"
            );
        }
    }

    /// A malformed record is counted, never silently skipped: the session
    /// reports it as lost.
    #[test]
    fn malformed_records_are_counted() {
        let good = record(&[1], &[2], 0);
        let mut batch = Batch::default();
        assert!(batch.push_record(&good));
        assert!(!batch.push_record(&good[..good.len() - 8]));
        assert!(!batch.push_record(&[0; 3]));
        assert_eq!((batch.len(), batch.malformed()), (1, 2));
        batch.clear();
        assert!(batch.push_record(&good));
        assert_eq!(
            (batch.len(), batch.malformed()),
            (1, 2),
            "clear keeps the count"
        );
    }

    /// Slots are reused: a short record after a long one shows only its own
    /// frames, and a bad record takes no slot.
    #[test]
    fn batches_reuse_their_slots() {
        let mut batch = Batch::default();
        assert!(batch.push_record(&record(&[1, 2, 3], &[4, 5, 6], 0)));
        assert!(batch.push_record(&record(&[7], &[], 1)));
        assert_eq!(batch.len(), 2);
        batch.clear();
        assert!(batch.is_empty());
        assert!(batch.push_record(&record(&[], &[9], 2)));
        assert!(!batch.push_record(&[0; 3]), "shorter than a header");
        let hits = batch.hits();
        assert_eq!(hits.len(), 1);
        assert_eq!(
            (hits[0].slot, hits[0].kstack(), hits[0].ustack()),
            (2, &[][..], &[9][..])
        );
    }
}

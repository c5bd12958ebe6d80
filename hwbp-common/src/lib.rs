//! Record layouts and constants that the BPF program (hwbp-ebpf) and
//! userspace (hwbp-user) agree on.
//!
//! Every type that crosses the kernel/user boundary is `#[repr(C)]`, `Copy`,
//! padded explicitly and size-checked at compile time, so that a field added
//! on one side without the other fails the build instead of corrupting data.
#![no_std]

use core::mem::size_of;

/// Most targets one session can hold. x86 has 4 debug registers per CPU; the
/// margin lets other architectures (arm64 has up to 16) use more.
pub const MAX_SLOTS: usize = 16;

/// Frames kept per stack, kernel and user alike (perf's default is 127).
pub const MAX_STACK_DEPTH: usize = 127;

/// Length of `task_struct::comm`, NUL included.
pub const COMM_LEN: usize = 16;

/// Names of the maps and the program in the BPF object.
pub const MAP_EVENTS: &str = "EVENTS";
pub const MAP_CONFIG: &str = "CONFIG";
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_SCRATCH: &str = "SCRATCH";
pub const MAP_CONDS: &str = "CONDS";
pub const MAP_OLD: &str = "OLD";
pub const MAP_AGGS: &str = "AGGS";
pub const MAP_STACKS: &str = "STACKS";
/// The program's switch for conditions (a `u8` in its read-only data, set
/// at load time): 0 when no target of the run can have one.
pub const GLOBAL_CONDITIONS: &str = "HWBP_CONDITIONS";
pub const PROGRAM: &str = "hwbp";

/// [`SlotConfig::flags`]: the target address is in the kernel (read its value
/// with the kernel probe-read helper rather than the user one).
pub const SLOT_KERNEL: u32 = 1 << 0;
/// [`SlotConfig::flags`]: an execute breakpoint (record argument registers).
pub const SLOT_EXECUTE: u32 = 1 << 1;
/// [`SlotConfig::flags`]: capture the kernel stack.
pub const SLOT_KSTACK: u32 = 1 << 2;
/// [`SlotConfig::flags`]: capture the user stack.
pub const SLOT_USTACK: u32 = 1 << 3;
/// [`SlotConfig::flags`]: a watchpoint that traps on reads too (`rw`). The
/// kernel leaves the debug registers armed while it handles a hit in user
/// mode (exc_debug_user in arch/x86/kernel/traps.c), so there the program
/// must not read the watched bytes: every byte read would trap again.
pub const SLOT_READS: u32 = 1 << 4;
/// [`SlotConfig::flags`]: the target has a condition, its program in
/// `CONDS[slot]` (see [`CondProgram`]); targets without one never look there.
pub const SLOT_COND: u32 = 1 << 5;

/// Per-target configuration, found by breakpoint address in [`Config`]: a
/// hit's `bpf_perf_event_data::addr` is the address the breakpoint was
/// armed at (`bp->attr.bp_addr`), so the program finds its target without
/// one program per target.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotConfig {
    /// Index of the target in userspace's list, recorded in every hit.
    pub slot: u32,
    /// `SLOT_*` flags.
    pub flags: u32,
    /// Bytes watched (1, 2, 4 or 8); the value read is this wide.
    pub len: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<SlotConfig>() == 16);

/// [`Filter::flags`]: keep only hits whose comm equals [`Filter::comm`].
pub const FILTER_COMM: u32 = 1 << 0;
/// [`Filter::flags`]: keep only hits from thread [`Filter::tid`].
pub const FILTER_TID: u32 = 1 << 1;
/// [`Filter::flags`]: drop hits of process [`Filter::own_pid`] (the tracer).
pub const FILTER_OWN: u32 = 1 << 2;

/// In-kernel filters, applied before anything is recorded, and how hits are
/// recorded ([`Config::filter`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub flags: u32,
    pub tid: u32,
    pub comm: [u8; COMM_LEN],
    /// With [`FILTER_OWN`], hwbp-trace's own process (tgid): its hits are
    /// not recorded, or a
    /// system-wide `vfs_read` would trace the tracer reading its own files
    /// and a `vfs_write` would feed on its own output. Counted as filtered.
    pub own_pid: u32,
    /// Wake the reader when this many bytes are waiting (it also polls):
    /// one wakeup per hit costs an interrupt per hit (an irq_work, a VM
    /// exit in a guest). 0 wakes it for every record.
    pub wakeup_bytes: u32,
    /// How many bytes apart two frames of a user stack may be and still be
    /// read together: [`STACK_GAP_WATCHED`] when a watchpoint is armed,
    /// `u32::MAX` (never apart) when none is.
    pub stack_gap: u32,
    /// Which hits get a record in `EVENTS`: [`RECORDS_ALL`],
    /// [`RECORDS_SAMPLE`] (every `sample_every`th hit of a target on a
    /// CPU) or [`RECORDS_NONE`]. Every hit is counted in `AGGS` whatever
    /// this says.
    pub records: u32,
    /// With [`RECORDS_SAMPLE`], at least 1.
    pub sample_every: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Filter>() == 48);

/// [`Filter::records`]: a record for every hit (the default).
pub const RECORDS_ALL: u32 = 0;
/// [`Filter::records`]: a record for every [`Filter::sample_every`]th hit.
pub const RECORDS_SAMPLE: u32 = 1;
/// [`Filter::records`]: no records, only the aggregates.
pub const RECORDS_NONE: u32 = 2;

/// [`Filter::stack_gap`] when a data watchpoint is armed. In a user-mode hit
/// the debug registers stay armed while the BPF program runs, and with a
/// data watchpoint among them the kernel's copy of user memory takes about
/// 0.27 ns a byte after a fixed 100 ns (0.01 ns a byte without one). A gap
/// of more than 100 / 0.27 bytes between two frames costs more to read than
/// a read of its own does.
pub const STACK_GAP_WATCHED: u32 = 384;

/// Everything the program reads that userspace sets, index 0 of the `CONFIG`
/// array: one value, so a hit reads a cache line or two of it (every hit is
/// a VM exit on a KVM guest and finds the caches cold). Slot i is armed at
/// `addrs[i]` and configured by `slots[i]`; an unused slot's address is 0,
/// where no breakpoint can be armed. The program scans the addresses: with
/// the few targets debug registers allow, that costs less than a hash map
/// lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub filter: Filter,
    pub addrs: [u64; MAX_SLOTS],
    pub slots: [SlotConfig; MAX_SLOTS],
}
const _: () = assert!(size_of::<Config>() == size_of::<Filter>() + 24 * MAX_SLOTS);

/// Per-target, per-CPU counters (the `COUNTERS` per-CPU array, indexed by
/// slot). `hits` counts every hit that passed the filters and the target's
/// condition, so `hits == records delivered + dropped + unsampled` always
/// holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Hits that passed the filters.
    pub hits: u64,
    /// Hits lost because their record found no place in the ring buffer:
    /// it was full, or (`dropped_busy` of them) its lock stayed taken.
    pub dropped: u64,
    /// Of `dropped`, records lost with room left in the ring buffer: a hit
    /// in kernel code only tries the buffer's lock, and another CPU held it
    /// through every try of the program (a writer descheduled while holding
    /// it: a virtual CPU its host stopped).
    pub dropped_busy: u64,
    /// Records written only after a try found the ring buffer's lock taken
    /// by another CPU: kept by trying again, not lost.
    pub retried: u64,
    /// Kernel stacks that could not be captured (the hit is still recorded).
    pub kstack_errors: u64,
    /// User stacks that could not be captured (the hit is still recorded).
    pub ustack_errors: u64,
    /// Hits rejected by the comm/tid filters, and hits of hwbp-trace itself.
    pub filtered: u64,
    /// Value reads that failed (the hit is recorded with `HIT_NO_VALUE`).
    pub value_errors: u64,
    /// Hits the target's condition (`TARGET if COND`) rejected: not in
    /// `hits`, nothing reserved for them.
    pub cond_rejected: u64,
    /// Hits counted in the aggregates but given no record, by choice
    /// (`--records sample:N` or `none`): in `hits`, not lost.
    pub unsampled: u64,
    /// Hits missing from the aggregates because `AGGS` was full (their
    /// record, if any, is still made).
    pub agg_full: u64,
    /// Hits counted in the aggregates under a stack whose frames `STACKS`
    /// had no room for.
    pub stack_full: u64,
    /// arm64: traps that repeated the one before (the same execution of the
    /// instruction, trapping again because an interrupt ended the kernel's
    /// single step over it early; docs/arm64.md): not a hit, not in `hits`,
    /// but in the perf event's own count. Always 0 on x86-64.
    pub retraps: u64,
}
const _: () = assert!(size_of::<Counters>() == 104);

/// A key of the `AGGS` per-CPU hash: hits of one target by one process
/// (and comm) at one instruction with one stack. The value is a count per
/// CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AggKey {
    pub slot: u32,
    pub pid: u32,
    /// The stack's id in `STACKS` ([`stack_id`]), 0 for a hit without one.
    pub stack: u64,
    /// [`Hit::ip`]: the accessing instruction of a data target (who wrote
    /// it, even without stacks); the target itself for an execute one.
    pub ip: u64,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(size_of::<AggKey>() == 40);

/// A value of the `STACKS` hash, by [`stack_id`]: the frames of a hit as
/// its record has them (kernel frames, then user frames) and the return
/// address of [`Hit::ret`], which names the caller of a user function hit
/// at its entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StackEntry {
    pub kstack_len: u32,
    pub ustack_len: u32,
    pub ret: u64,
    pub frames: [u64; 2 * MAX_STACK_DEPTH],
}
const _: () = assert!(size_of::<StackEntry>() == 2048);

/// The kernel and the user stack in `frames` (kernel frames then user
/// frames, as a [`Hit`] and a [`StackEntry`] hold them), each length capped
/// at [`MAX_STACK_DEPTH`].
fn split_stacks(frames: &[u64], kstack_len: u32, ustack_len: u32) -> (&[u64], &[u64]) {
    let k = (kstack_len as usize).min(MAX_STACK_DEPTH);
    let u = (ustack_len as usize).min(MAX_STACK_DEPTH);
    (&frames[..k], &frames[k..k + u])
}

impl StackEntry {
    /// The kernel stack, innermost first.
    pub fn kstack(&self) -> &[u64] {
        split_stacks(&self.frames, self.kstack_len, self.ustack_len).0
    }

    /// The user stack, innermost first.
    pub fn ustack(&self) -> &[u64] {
        split_stacks(&self.frames, self.kstack_len, self.ustack_len).1
    }
}

/// The start of a stack's id: its lengths and return address mixed. The BPF
/// program and userspace compute ids with these three functions alike, so
/// that a record's stack can be matched with its aggregate.
#[inline(always)]
pub fn stack_hash_start(kstack_len: u32, ustack_len: u32, ret: u64) -> u64 {
    stack_hash_step(
        stack_hash_step(
            0x243f_6a88_85a3_08d3,
            (u64::from(kstack_len) << 32) | u64::from(ustack_len),
        ),
        ret,
    )
}

/// One frame mixed into a stack's id (a multiply and a rotate per word, as
/// FxHash: cheap in BPF, where every instruction of the loop is verified).
#[inline(always)]
pub fn stack_hash_step(h: u64, word: u64) -> u64 {
    (h ^ word)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
}

/// The id: never 0, which means "no stack".
#[inline(always)]
pub fn stack_hash_finish(h: u64) -> u64 {
    let h = h ^ (h >> 32);
    if h == 0 { 1 } else { h }
}

/// The id of a stack (kernel frames then user frames, and `ret`).
pub fn stack_id(kstack: &[u64], ustack: &[u64], ret: u64) -> u64 {
    let mut h = stack_hash_start(kstack.len() as u32, ustack.len() as u32, ret);
    for &frame in kstack.iter().chain(ustack) {
        h = stack_hash_step(h, frame);
    }
    stack_hash_finish(h)
}

/// [`Hit::flags`]: the value could not be read.
pub const HIT_NO_VALUE: u32 = 1 << 0;
/// [`Hit::flags`]: the breakpoint fired in user mode (`ip` is a user address).
pub const HIT_USER_MODE: u32 = 1 << 1;

/// One breakpoint hit. The program builds it in a per-CPU scratch map and
/// writes to the `EVENTS` ring buffer only the header and the frames
/// captured: [`HIT_HEADER_SIZE`] bytes, then `kstack_len` kernel frames,
/// then `ustack_len` user frames. A typical hit takes a few hundred bytes of
/// the ring buffer instead of the 2 KiB two full stacks would.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Instruction pointer at the hit. For an execute breakpoint, the target
    /// itself; for a data watchpoint (a trap), the instruction after the access.
    pub ip: u64,
    /// The address the breakpoint is armed at.
    pub addr: u64,
    /// `len` bytes read at `addr` after the access (data targets), zero-extended.
    pub value: u64,
    /// For execute targets hit in user mode with the user stack captured,
    /// the word at the stack pointer (else 0): the return address when the
    /// breakpoint is at a function's first instruction.
    /// A frame-pointer walk from there misses the immediate caller (the
    /// callee has not pushed its frame yet), so userspace inserts it.
    pub ret: u64,
    /// x86-64 argument registers rdi, rsi, rdx, rcx, r8, r9 (execute targets).
    pub args: [u64; 6],
    /// `bpf_get_current_pid_tgid() >> 32`.
    pub pid: u32,
    /// `bpf_get_current_pid_tgid() as u32`.
    pub tid: u32,
    pub cpu: u32,
    pub slot: u32,
    /// `HIT_*` flags.
    pub flags: u32,
    /// Kernel frames at the start of `frames` (0 when not captured).
    pub kstack_len: u32,
    /// User frames right after the kernel ones (0 when not captured).
    pub ustack_len: u32,
    /// Data targets on arm64, whose watchpoints trap before the access:
    /// this trap's number among the target's traps, counted from 1 over
    /// every CPU and thread before any filter (0 elsewhere). A hit and the
    /// same thread's next hit numbered one more have no trap between them:
    /// the value the second reads is the one the first access left.
    pub trap: u32,
    pub comm: [u8; COMM_LEN],
    /// Kernel frames then user frames, innermost first in each.
    pub frames: [u64; 2 * MAX_STACK_DEPTH],
}

/// Bytes of [`Hit`] before `frames`: every record has at least these.
pub const HIT_HEADER_SIZE: usize = 136;
const _: () = assert!(size_of::<Hit>() == HIT_HEADER_SIZE + 2 * 8 * MAX_STACK_DEPTH);
const _: () = assert!(core::mem::offset_of!(Hit, frames) == HIT_HEADER_SIZE);

impl Hit {
    /// The kernel stack, innermost first.
    pub fn kstack(&self) -> &[u64] {
        split_stacks(&self.frames, self.kstack_len, self.ustack_len).0
    }

    /// The user stack, innermost first.
    pub fn ustack(&self) -> &[u64] {
        split_stacks(&self.frames, self.kstack_len, self.ustack_len).1
    }
}

/// Instructions in one [`CondProgram`]: one per comparison of a condition.
pub const MAX_COND_INSNS: usize = 16;

/// [`CondInsn::jt`]/[`CondInsn::jf`]: keep the hit.
pub const COND_ACCEPT: u8 = 0xff;
/// [`CondInsn::jt`]/[`CondInsn::jf`]: reject the hit.
pub const COND_REJECT: u8 = 0xfe;

/// [`CondInsn::lhs`]/[`CondInsn::rhs`]: the operands the program gathers
/// per hit, by index. `COND_VALUE` is the watched bytes after the access,
/// `COND_OLD` the value the program read at this target's previous hit (or
/// userspace at arming), `COND_ARG0 + i` argument register i.
pub const COND_VALUE: u8 = 0;
pub const COND_OLD: u8 = 1;
pub const COND_ARG0: u8 = 2;
pub const COND_PID: u8 = 8;
pub const COND_TID: u8 = 9;
pub const COND_CPU: u8 = 10;
/// An integer literal: [`CondInsn::imm`]`[0]` (rhs only).
pub const COND_IMM: u8 = 11;
/// Operands the program gathers: the first eleven above, then the comm's
/// two words (compared only by [`COND_OP_COMM`]).
pub const COND_OPERANDS: usize = 16;
pub const COND_COMM_LO: usize = 12;
pub const COND_COMM_HI: usize = 13;

/// [`CondInsn::op`]: how lhs compares with rhs; true jumps to `jt`.
pub const COND_OP_EQ: u8 = 0;
pub const COND_OP_LT: u8 = 1;
pub const COND_OP_LE: u8 = 2;
/// `lhs & rhs != 0`.
pub const COND_OP_MASK: u8 = 3;
/// The comm equals `imm` (16 bytes, NUL-padded); lhs and rhs unused.
pub const COND_OP_COMM: u8 = 4;

/// [`CondInsn::flags`]: compare as signed (both operands sign-extended
/// from their widths by [`CondInsn::lshift`]/[`CondInsn::rshift`]; a
/// literal is stored sign-extended to 64 bits). Never with
/// [`COND_OP_MASK`], which tests bits.
pub const COND_SIGNED: u8 = 1 << 0;

/// One comparison of a condition program: take operand `lhs`, shift it left
/// by `lshift` then right by as much (arithmetic when signed: that narrows it
/// to its type's width, an argument's register has garbage above), the same
/// for `rhs` (a literal is stored already normalized), compare, and go on
/// at instruction `jt` when true, `jf` when false, or stop at
/// [`COND_ACCEPT`]/[`COND_REJECT`]. Jumps go forward only, so a program
/// ends within [`MAX_COND_INSNS`] steps. `!=`, `>` and `>=` are `==`, `<=`
/// and `<` with their targets swapped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CondInsn {
    pub op: u8,
    pub flags: u8,
    pub lhs: u8,
    pub rhs: u8,
    pub lshift: u8,
    pub rshift: u8,
    pub jt: u8,
    pub jf: u8,
    /// The literal (`imm[0]`), or the comm (both words).
    pub imm: [u64; 2],
}
const _: () = assert!(size_of::<CondInsn>() == 24);

/// A target's condition, compiled by userspace (`CONDS[slot]`): it starts
/// at instruction 0. An unused instruction rejects.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CondProgram {
    pub insns: [CondInsn; MAX_COND_INSNS],
}
const _: () = assert!(size_of::<CondProgram>() == 24 * MAX_COND_INSNS);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: as below.
    unsafe impl aya::Pod for super::CondProgram {}
    // SAFETY: each type is repr(C), Copy, made only of integers and integer
    // arrays, and explicitly padded, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AggKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StackEntry {}
}

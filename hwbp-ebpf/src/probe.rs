//! The breakpoint handler.

use core::ffi::c_void;

use crate::arch;
use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        BPF_RB_RING_SIZE, bpf_perf_event_data,
    },
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        bpf_probe_read_kernel_buf, bpf_probe_read_user_buf,
        generated::{bpf_get_current_comm, bpf_get_stack, bpf_probe_read_user},
    },
    macros::{map, perf_event},
    maps::{Array, PerCpuArray, RingBuf},
    programs::PerfEventContext,
};
use hwbp_common::{
    COMM_LEN, Config, Counters, FILTER_COMM, FILTER_OWN, FILTER_TID, Filter, HIT_HEADER_SIZE,
    HIT_NO_VALUE, HIT_USER_MODE, Hit, MAX_SLOTS, MAX_STACK_DEPTH, RECORDS_ALL, RECORDS_NONE,
    SLOT_COND, SLOT_EXECUTE, SLOT_KERNEL, SLOT_KSTACK, SLOT_READS, SLOT_USTACK, SlotConfig,
    StackEntry,
};

use crate::{
    aggregate::aggregate,
    condition::{self, COND_SCRATCH, condition},
};

/// Hits, in order per CPU. Sized by userspace (`--buffer-size`) at load time.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Targets and filters, index 0.
#[map(name = "CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Per-target, per-CPU counters: nothing is lost without being counted.
#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_SLOTS as u32, 0);

/// This CPU's working memory (neither fits on the 512-byte BPF stack).
#[repr(C)]
pub(crate) struct Scratch {
    /// Where a hit is assembled before its used part goes to `EVENTS`.
    hit: Hit,
    /// How many bytes from rsp the last user stack walk on this CPU read
    /// its first frames from, less one: the size of the next walk's first
    /// read (see [`walk_user_stack`]).
    extent: u64,
    /// How many bytes the frames past the last walk's jump took: the size
    /// of the next walk's later reads; 0 for WINDOW_BYTES.
    tail: u64,
    /// The last frame the walk read (a store per frame, where a variable
    /// live across the walk's loop doubled the verifier's work).
    last_frame: u64,
    /// Where this walk's frames first jumped more than the configured gap
    /// (the end of the frame before; 0 while none did), and the frame
    /// after the jump.
    jump_from: u64,
    jump_to: u64,
    /// Where the walk's last window starts (see [`walk_user_stack`]).
    window_base: u64,
    /// A piece of the user stack that [`walk_user_stack`] reads frames
    /// from; a word longer than the longest read, for the verifier (see
    /// there).
    window: [u64; BUFFER_WORDS as usize + 1],
    /// A condition's operands, gathered per hit (see [`condition`]).
    operands: [u64; COND_SCRATCH],
    /// Where a new stack is assembled for `STACKS` (see
    /// [`crate::aggregate`]).
    stack: StackEntry,
}

impl Scratch {
    /// Where [`condition`] gathers its operands.
    ///
    /// # Safety
    /// `scratch` is this CPU's scratch entry.
    #[inline(always)]
    pub(crate) unsafe fn operands(scratch: *mut Self) -> *mut u64 {
        // SAFETY: see the function's safety section.
        unsafe { (&raw mut (*scratch).operands).cast() }
    }

    /// Where [`crate::aggregate`] assembles a new stack.
    ///
    /// # Safety
    /// `scratch` is this CPU's scratch entry.
    #[inline(always)]
    pub(crate) unsafe fn stack_entry(scratch: *mut Self) -> *mut StackEntry {
        // SAFETY: see the function's safety section.
        unsafe { &raw mut (*scratch).stack }
    }
}

/// One map for both parts of [`Scratch`]: each map a hit looks up is a
/// cache line of its own to fetch.
#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Size in bytes of one stack array of [`Hit`].
const STACK_BYTES: u32 = (MAX_STACK_DEPTH * 8) as u32;

#[perf_event]
pub fn hwbp(ctx: PerfEventContext) -> u32 {
    try_hwbp(&ctx).unwrap_or(0)
}

/// The program's return value is ignored for breakpoint events that have no
/// perf buffer; 0 also tells the kernel not to emit a perf sample.
fn try_hwbp(ctx: &PerfEventContext) -> Result<u32, i64> {
    // SAFETY: the kernel passes a valid bpf_perf_event_data to perf_event
    // programs; the verifier rewrites these context reads.
    let (addr, regs) = unsafe {
        let data = ctx.ctx as *const bpf_perf_event_data;
        ((*data).addr, (*data).regs)
    };
    let Some(all) = CONFIG.get(0) else {
        return Ok(0);
    };
    let Some(config) = find_slot(all, addr) else {
        // Never expected: CONFIG is filled before any event is enabled and
        // every event is armed at an address in it. A rare diagnostic, so
        // aya-log rather than a counter nobody reads.
        aya_log_ebpf::warn!(ctx, "hit at {:x}, which no target armed", addr);
        return Ok(0);
    };
    let Some(counters) = COUNTERS.get_ptr_mut(config.slot) else {
        return Ok(0);
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        // A per-CPU array of one entry always has index 0: never expected.
        aya_log_ebpf::error!(ctx, "no scratch entry on this CPU; hit dropped");
        // SAFETY: per-CPU slot of this CPU, see below.
        unsafe {
            (*counters).hits += 1;
            (*counters).dropped += 1;
        }
        return Ok(0);
    };
    // SAFETY: a pointer into this CPU's scratch entry, which no other
    // program uses while this one runs (see below).
    let hit = unsafe { &raw mut (*scratch).hit };
    let pid_tgid = bpf_get_current_pid_tgid();
    // Before the filters: a filtered hit is stepped (and re-trapped) too.
    if arch::retrap(&regs, pid_tgid) {
        // SAFETY: per-CPU slot of this CPU, as below.
        unsafe { (*counters).retraps += 1 };
        return Ok(0);
    }
    // Every trap of a data target numbered, filtered or not (0 on x86-64).
    let trap = if config.flags & SLOT_EXECUTE == 0 {
        arch::trap_number(config.slot)
    } else {
        0
    };
    // SAFETY: `hit` points to this CPU's scratch Hit (see below), whose
    // comm is 8-byte aligned (offset 120 of a repr(C) struct of u64s and
    // u32s). The comm goes straight there and is compared as two words,
    // where aya's bpf_get_current_comm() copies and compares it a byte at a
    // time (a few instructions saved; the helper's own cost, about 100 ns a
    // hit on a KVM guest, is the task's cold cache line).
    let comm = unsafe {
        let words = (*hit).comm.as_mut_ptr().cast::<[u64; 2]>();
        // Zeroed first: Linux 5.18 to 6.3 (and so Debian 12's 6.1) copy the
        // comm with strscpy, which stops at its NUL and leaves the bytes
        // after it as they were: the previous hit's on this CPU. Behind a
        // shorter comm they would differ from --comm's zeros, and the hit
        // would be filtered out; 6.4 pads them (kernel commit
        // f3f213497797). The helper zero-fills the buffer if it fails.
        words.write([0, 0]);
        bpf_get_current_comm(words.cast(), COMM_LEN as u32);
        words.read()
    };

    let filter = &all.filter;
    if filtered_out(filter, pid_tgid, comm) {
        // SAFETY: per-CPU slot of this CPU; programs on one CPU do not nest
        // for the same perf event.
        unsafe { (*counters).filtered += 1 };
        return Ok(0);
    }
    let mut flags = 0u32;
    if arch::user_mode(&regs) {
        flags |= HIT_USER_MODE;
    }
    // Before the condition, which may compare it.
    // SAFETY: `hit` and `counters` are this CPU's (see below).
    flags = unsafe { read_value(&config, addr, flags, hit, counters) };
    // A data target whose value could not be read is recorded (without its
    // value, counted in value_errors), its condition not evaluated; one
    // whose value is never read (execute, or reads trapping in user mode)
    // has a condition without `value` (userspace refuses it there).
    let unread = config.flags & SLOT_EXECUTE != 0
        || (config.flags & SLOT_READS != 0 && flags & HIT_USER_MODE != 0);
    if condition::enabled()
        && config.flags & SLOT_COND != 0
        && (unread || flags & HIT_NO_VALUE == 0)
        // SAFETY: `scratch` and `hit` are this CPU's (see below).
        && !unsafe { condition(config.slot, &regs, scratch, hit, pid_tgid, comm) }
    {
        // SAFETY: per-CPU slot of this CPU, as above.
        unsafe { (*counters).cond_rejected += 1 };
        return Ok(0);
    }
    // SAFETY: as above.
    unsafe { (*counters).hits += 1 };

    // SAFETY: `hit` points to this CPU's scratch Hit, which no other program
    // uses while this one runs (perf_event programs do not nest on a CPU);
    // every header field is written before the record is copied out.
    unsafe {
        fill_header(hit, &regs, addr, pid_tgid, &config, flags);
        (*hit).trap = trap;

        let frames = (*hit).frames.as_mut_ptr();
        // A hit in user mode has no kernel frames (the kernel's unwinder
        // starts only from kernel-mode registers): skip the helper call.
        let klen = if config.flags & SLOT_KSTACK != 0 && flags & HIT_USER_MODE == 0 {
            capture_stack(ctx, frames, 0, &mut (*counters).kstack_errors)
        } else {
            0
        };
        let ulen = if config.flags & SLOT_USTACK == 0 {
            0
        } else if flags & HIT_USER_MODE != 0 {
            // No kernel frames (see above), so the user ones start at 0.
            // The word at sp completes the user stack of a hit at a user
            // function's first instruction, where it is the return address
            // (see Hit::ret); nothing else uses it.
            let ret = if config.flags & SLOT_EXECUTE != 0 {
                &raw mut (*hit).ret
            } else {
                core::ptr::null_mut()
            };
            walk_user_stack(&regs, scratch, u64::from(filter.stack_gap), frames, ret)
        } else {
            // A hit in the kernel: the user registers are in the task's
            // pt_regs, which the helper finds (bpf_task_pt_regs, which would
            // let this program walk them itself, needs Linux 5.15). User
            // frames go right after the kernel ones.
            capture_stack(
                ctx,
                frames.add(klen as usize),
                BPF_F_USER_STACK as u64,
                &mut (*counters).ustack_errors,
            )
        };
        (*hit).kstack_len = klen;
        (*hit).ustack_len = ulen;
        (*hit).flags = flags;
        // Read back from the map: a value the verifier does not know. The
        // walk's frame count is a constant on each of its paths, and with it
        // the verifier would check the rest of the program once per count.
        let ulen =
            core::ptr::read_volatile(&raw const (*hit).ustack_len).min(MAX_STACK_DEPTH as u32);

        aggregate(config.slot, scratch, hit, counters);
        if !recorded(filter, (*counters).hits) {
            (*counters).unsampled += 1;
            return Ok(0);
        }

        let frames = klen as usize + ulen as usize;
        let size = HIT_HEADER_SIZE + frames * 8;
        match emit(hit, frames, wakeup(filter, size as u64)) {
            Output::Written => {}
            Output::Retried => (*counters).retried += 1,
            Output::Full => (*counters).dropped += 1,
            Output::Busy => {
                (*counters).dropped += 1;
                (*counters).dropped_busy += 1;
            }
        }
    }
    Ok(0)
}

/// The header of a hit, but for the stack lengths, flags and trap number.
///
/// # Safety
/// `hit` points to this CPU's scratch Hit, which no other program uses
/// while this one runs.
#[inline(always)]
unsafe fn fill_header(
    hit: *mut Hit,
    regs: &arch::Regs,
    addr: u64,
    pid_tgid: u64,
    config: &SlotConfig,
    flags: u32,
) {
    // SAFETY: see the function's safety section.
    unsafe {
        (*hit).ts_ns = bpf_ktime_get_ns();
        (*hit).ip = arch::ip(regs);
        (*hit).addr = addr;
        (*hit).pid = (pid_tgid >> 32) as u32;
        (*hit).tid = pid_tgid as u32;
        (*hit).cpu = bpf_get_smp_processor_id();
        (*hit).slot = config.slot;

        (*hit).args = [0; 6];
        (*hit).ret = 0;
        if config.flags & SLOT_EXECUTE != 0 {
            (*hit).args = arch::args(regs);
            // At a kernel function's first instruction on arm64 the caller's
            // return address is still in x30, where the kernel's unwinder
            // (frame records from x29) does not look: userspace inserts it.
            if flags & HIT_USER_MODE == 0 {
                (*hit).ret = arch::link_register(regs).unwrap_or(0);
            }
        }
    }
}

/// Whether a target's hit, its `hits`th on this CPU, gets a record
/// (`--records`): all, the first and then every `sample_every`th, or none.
#[inline(always)]
fn recorded(filter: &Filter, hits: u64) -> bool {
    match filter.records {
        RECORDS_ALL => true,
        RECORDS_NONE => false,
        _ => {
            let every = u64::from(filter.sample_every.max(1));
            hits % every == 1 % every
        }
    }
}

/// Whether the in-kernel filters reject a hit of `pid_tgid` with `comm`:
/// hwbp-trace's own, another thread than `--tid`'s, another comm than
/// `--comm`'s.
#[inline(always)]
fn filtered_out(filter: &Filter, pid_tgid: u64, comm: [u64; 2]) -> bool {
    (filter.flags & FILTER_OWN != 0 && (pid_tgid >> 32) as u32 == filter.own_pid)
        || (filter.flags & FILTER_TID != 0 && filter.tid != pid_tgid as u32)
        || (filter.flags & FILTER_COMM != 0
            // SAFETY: Filter::comm is 8-byte aligned (offset 8 of a
            // repr(C) struct of u32s).
            && unsafe { filter.comm.as_ptr().cast::<[u64; 2]>().read() } != comm)
}

/// The ring buffer flag for a record of `size` bytes: wake the reader only
/// when this record makes the waiting data cross the threshold (not on
/// every record past it: a reader that fell behind would then get an
/// interrupt per record again).
#[inline(always)]
fn wakeup(filter: &Filter, size: u64) -> u64 {
    let threshold = u64::from(filter.wakeup_bytes);
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let flag = if threshold == 0 || (waiting < threshold && waiting + size >= threshold) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    flag as u64
}

/// Reads the watched bytes of a data hit into `(*hit).value`; returns
/// `flags` with HIT_NO_VALUE when they are not read.
///
/// # Safety
/// `hit` and `counters` point to this CPU's scratch Hit and counters, which
/// no other program uses while this one runs.
#[inline(always)]
unsafe fn read_value(
    config: &SlotConfig,
    addr: u64,
    mut flags: u32,
    hit: *mut Hit,
    counters: *mut Counters,
) -> u32 {
    // SAFETY: see the function's safety section.
    unsafe {
        (*hit).value = 0;
        // In a user-mode hit the debug registers stay armed while this
        // runs, so reading the bytes of a watchpoint that traps on reads
        // would trap once per byte: 8 nested debug exceptions, about 70 us,
        // each counted by the kernel as a hit no program saw.
        let value_traps = config.flags & SLOT_READS != 0 && flags & HIT_USER_MODE != 0;
        if config.flags & SLOT_EXECUTE == 0 && !value_traps {
            let mut buf = [0u8; 8];
            // A constant size per watch length: a size the compiler only
            // clamps can reach older verifiers (6.1) unbounded.
            let dst: &mut [u8] = match config.len {
                1 => &mut buf[..1],
                2 => &mut buf[..2],
                4 => &mut buf[..4],
                _ => &mut buf[..8],
            };
            let read = if config.flags & SLOT_KERNEL != 0 {
                bpf_probe_read_kernel_buf(addr as *const u8, dst)
            } else {
                bpf_probe_read_user_buf(addr as *const u8, dst)
            };
            match read {
                Ok(()) => (*hit).value = u64::from_le_bytes(buf),
                Err(_) => {
                    flags |= HIT_NO_VALUE;
                    (*counters).value_errors += 1;
                }
            }
        } else {
            flags |= HIT_NO_VALUE;
        }
    }
    flags
}

/// The configuration of the target armed at `addr`.
#[inline(always)]
fn find_slot(config: &Config, addr: u64) -> Option<SlotConfig> {
    // An unused slot's address is 0, never a hit's.
    for i in 0..MAX_SLOTS {
        if config.addrs[i] == addr {
            return Some(config.slots[i]);
        }
    }
    None
}

/// What became of a record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Written at the first try.
    Written,
    /// Written after a try found the ring buffer's lock taken.
    Retried,
    /// Dropped: the ring buffer had no room for it.
    Full,
    /// Dropped with room left: the lock stayed taken through every try.
    Busy,
}

/// Writes the first `frames` frames of `hit` to `EVENTS`, with `flags`.
///
/// bpf_ringbuf_output copies a record with the kernel's memcpy, a string
/// instruction, and in a user-mode hit with a data watchpoint armed those
/// copy about a byte a cycle after a slow start (see [`WINDOW_BYTES`]): a
/// write hit's 192-byte record took 60 to 120 ns. So a record of up to 48
/// frames (most hits': a user stack, or both stacks of a shallow call) is
/// reserved at its exact size and copied by this program's own loads and
/// stores. bpf_ringbuf_reserve takes only a constant size, so there is a
/// call per frame count, each with its copy (about 4,000 instructions in
/// all). Larger records, and any the one reservation fails for (a full
/// buffer, or its lock taken on another CPU), go through [`output`].
///
/// The fallback reads the frame count back from the map, so the verifier
/// checks it once, not once per arm. What it saved: BENCHMARKS.md,
/// "Tuning the BPF hit path".
#[inline(always)]
unsafe fn emit(hit: *const Hit, frames: usize, flags: u64) -> Output {
    // The one reservation below failed with room left: its lock was taken.
    let mut reserve_failed = false;
    macro_rules! direct {
        ($($n:literal)*) => {
            match frames {
                $($n => {
                    const WORDS: usize = HIT_HEADER_SIZE / 8 + $n;
                    if let Some(mut entry) = EVENTS.reserve::<[u64; WORDS]>(0) {
                        // SAFETY: the reservation holds WORDS words, `hit`
                        // more (a Hit holds every frame); both 8-aligned.
                        unsafe {
                            core::ptr::copy_nonoverlapping(
                                hit.cast::<[u64; WORDS]>(),
                                entry.as_mut_ptr(),
                                1,
                            )
                        };
                        entry.submit(flags);
                        return Output::Written;
                    }
                    reserve_failed = has_room(HIT_HEADER_SIZE as u64 + $n * 8);
                })*
                _ => {}
            }
        };
    }
    direct!(
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32
        33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48
    );
    // Read back from the map, as in try_hwbp: with the count each arm above
    // knows, the verifier would check the output loop once per arm.
    // SAFETY: `hit` points to this CPU's scratch Hit.
    let frames = unsafe {
        core::ptr::read_volatile(&raw const (*hit).kstack_len).min(MAX_STACK_DEPTH as u32)
            + core::ptr::read_volatile(&raw const (*hit).ustack_len).min(MAX_STACK_DEPTH as u32)
    };
    // SAFETY: the header and `frames` frames are within `hit`.
    let record = unsafe {
        core::slice::from_raw_parts(hit.cast::<u8>(), HIT_HEADER_SIZE + frames as usize * 8)
    };
    match output(record, flags) {
        Output::Written if reserve_failed => Output::Retried,
        output => output,
    }
}

/// Attempts at writing one record while the ring buffer's lock is taken:
/// far longer than a lock holder on a running CPU keeps it. The verifier
/// walks every iteration, so more cost start-up (1024: +100 ms).
const OUTPUT_TRIES: u32 = 128;

/// Writes `record` to `EVENTS`. A breakpoint in
/// kernel code traps in the debug exception, which the kernel runs as an
/// NMI, and there the ring buffer only *tries* its lock
/// (__bpf_ringbuf_reserve in kernel/bpf/ringbuf.c): a hit on one CPU while
/// another CPU writes its own record would be dropped with room to spare.
/// So a failure with room left is tried again, a bounded number of times;
/// a full buffer is not. Both outcomes are counted apart, and so are the
/// records a retry saved: they say how contended the lock is.
#[inline(always)]
fn output(record: &[u8], flags: u64) -> Output {
    let mut written = Output::Written;
    for _ in 0..OUTPUT_TRIES {
        if EVENTS.output::<[u8]>(record, flags).is_ok() {
            return written;
        }
        if !has_room(record.len() as u64) {
            return Output::Full;
        }
        written = Output::Retried;
    }
    Output::Busy
}

/// Whether `EVENTS` has room for a record of `len` bytes: what it takes,
/// its 8-byte header and the record rounded up to 8 bytes, beside what
/// waits to be read.
#[inline(always)]
fn has_room(len: u64) -> bool {
    let needed = ((len + 8) + 7) & !7;
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    waiting + needed < EVENTS.query(BPF_RB_RING_SIZE as u64)
}

/// Below this no user frame can be: nothing is mapped under
/// vm.mmap_min_addr, 64 KiB by default.
const MIN_USER_FRAME: u64 = 0x1_0000;

/// How much user stack a read takes into [`Scratch::window`]. A read costs a
/// fixed part (about 100 ns here, the first of a hit about 180) and a part
/// per byte, which depends on the debug registers: in a user-mode hit the
/// kernel leaves them armed while the program runs (exc_debug_user), and
/// with a data watchpoint among them the CPU copies about a byte a cycle
/// (string instructions check every iteration; 1 KiB took 380 ns rather
/// than 100); with execute breakpoints only, at full speed. So the fewest
/// reads of the fewest bytes, learned from the last walk on this CPU: a
/// program hit again and again from the same place, as a breakpoint's is,
/// takes the reads it needs and no more.
/// - The first read, at rsp, takes the bytes up to the end of the frames
///   the last walk found there ([`Scratch::extent`]), rounded up to
///   FIRST_MIN, at most BUFFER_BYTES.
/// - With a watchpoint armed, "there" ends where the frames jump further
///   than [`Filter::stack_gap`] bytes (a frame with large locals, such as a
///   buffer); the frames past the jump are read where they are, in reads
///   of what they took the last time ([`Scratch::tail`], rounded up to
///   FIRST_MIN), at most WINDOW_BYTES. Without one, a read of all the bytes
///   between costs less than a read more.
/// - Frames past what was read (a deeper stack than the last) are read
///   the same way, a tail at a time (WINDOW_BYTES when the last walk had no
///   jump).
///
/// The first read crosses a page end when its frames do (they are on the
/// stack, so mapped): read only up to the page end, as the later windows
/// are, a walk across it would take two reads. A stack deeper than
/// BUFFER_BYTES starts with at most WINDOW_BYTES. How each of these
/// choices was measured, against fixed sizes: BENCHMARKS.md, "Tuning the
/// BPF hit path".
const WINDOW_BYTES: u64 = 512;
/// The longest first read (see [`walk_user_stack`]), a power of two.
const BUFFER_BYTES: u64 = 2048;
const BUFFER_WORDS: u64 = BUFFER_BYTES / 8;
/// The shortest read, and the step of the learned sizes.
const FIRST_MIN: u64 = 64;
const PAGE_SIZE: u64 = 4096;

/// Reads `size` bytes of user stack into `window`, from `at`, or ending at
/// the end of `at`'s page when they would cross it (the next page may not
/// be mapped). `size` is at most BUFFER_BYTES. Returns where the window
/// starts, None when reading failed.
#[inline(always)]
unsafe fn read_window(window: *mut u64, at: u64, size: u64) -> Option<u64> {
    let page_end = (at & !(PAGE_SIZE - 1)) + PAGE_SIZE;
    let base = if at + size > page_end {
        page_end - size
    } else {
        at
    };
    // SAFETY: the window has room for BUFFER_BYTES; the helper checks `base`.
    let read = unsafe { bpf_probe_read_user(window.cast(), size as u32, base as *const c_void) };
    (read == 0).then_some(base)
}

/// The user stack of a hit in user mode, by frame pointers from the hit's
/// own registers, into `dst`: rip, then each frame's return address, as
/// the kernel's walker (perf_callchain_user) gives them. Stores the word at
/// rsp in `ret` unless it is null. Frames further apart than `gap` bytes
/// are read separately (see [`WINDOW_BYTES`]). Returns the number of
/// frames, at most MAX_STACK_DEPTH.
///
/// Two things make it cheaper than the kernel's walker behind
/// bpf_get_stack, which cost about 1.4 us a hit in a KVM guest:
/// - The kernel's walker stops only where reading a frame fails, so it
///   reads the frame pointer that ends the chain (0, or whatever code built
///   without frame pointers left in rbp, such as 0x5) and takes a page
///   fault to learn that nothing is there, about 0.7 us. A null, low or
///   misaligned (rbp is a pushed stack slot, so 8-byte aligned) frame
///   pointer ends this walk without a read.
/// - The stack is read in windows sized by the last walk (see
///   [`WINDOW_BYTES`]), rather than 16 bytes a frame.
///
/// A frame that straddles two pages (a frame pointer 8 bytes before a page
/// end, which the ABI's 16-byte alignment rules out) ends the walk.
#[inline(always)]
unsafe fn walk_user_stack(
    regs: &arch::Regs,
    scratch: *mut Scratch,
    gap: u64,
    dst: *mut u64,
    ret: *mut u64,
) -> u32 {
    // SAFETY: `scratch` is this CPU's scratch entry, which no other program
    // uses while this one runs; every pointer below points into it.
    let (window, extent, tail, last_frame, jump_from, jump_to, window_base) = unsafe {
        (
            (&raw mut (*scratch).window).cast::<u64>(),
            &raw mut (*scratch).extent,
            &raw mut (*scratch).tail,
            &raw mut (*scratch).last_frame,
            &raw mut (*scratch).jump_from,
            &raw mut (*scratch).jump_to,
            &raw mut (*scratch).window_base,
        )
    };
    // SAFETY: `dst` has room for MAX_STACK_DEPTH frames.
    unsafe { *dst = arch::ip(regs) };
    // The sizes, rounded up to FIRST_MIN bytes. The masks keep them within
    // FIRST_MIN..=BUFFER_BYTES and FIRST_MIN..=WINDOW_BYTES, plain to the
    // verifier: an extent of 0 (no walk yet on this CPU) reads FIRST_MIN,
    // so that the walk learns where the frames jump; one past BUFFER_BYTES
    // (see below) reads what it exceeds that by; a tail of 0, WINDOW_BYTES.
    // SAFETY: as above.
    let (first, later) = unsafe {
        (
            (core::ptr::read_volatile(extent) & (BUFFER_BYTES - FIRST_MIN)) + FIRST_MIN,
            (core::ptr::read_volatile(tail).wrapping_sub(1) & (WINDOW_BYTES - FIRST_MIN))
                + FIRST_MIN,
        )
    };
    // The window holds the user stack's bytes [base, end). The first read
    // may cross a page end: the frames it was sized for were there, above
    // rsp, on the stack. Should it fail (a different stack, which ends in
    // those bytes), it is read again up to the page end. The page at rsp is
    // mapped (the thread uses it); a read there fails only where no user
    // memory can be read (nmi_uaccess_okay), and then no frame could be.
    let sp = arch::sp(regs);
    // SAFETY: the window has room for BUFFER_BYTES; the helper checks rsp.
    let read = unsafe { bpf_probe_read_user(window.cast(), first as u32, sp as *const c_void) };
    let mut base = sp;
    if read != 0 {
        // SAFETY: as read_window asks.
        match unsafe { read_window(window, sp, first) } {
            Some(start) => base = start,
            None => return 1,
        }
    }
    // Through memory, so that the verifier sees one state after both reads
    // (one path's base is rsp itself, and it would follow the walk twice).
    // SAFETY: as above; `last_frame` is set for the walk below.
    let mut base = unsafe {
        *last_frame = base;
        core::ptr::read_volatile(last_frame)
    };
    let mut end = base + first;
    if !ret.is_null() {
        // SAFETY: `ret` points into this CPU's scratch Hit; the window
        // holds rsp's word, and the mask keeps that plain to the verifier.
        unsafe {
            *ret = match arch::link_register(regs) {
                Some(lr) => lr,
                None => *window.add((((sp - base) / 8) & (BUFFER_WORDS - 1)) as usize),
            }
        };
    }
    let mut fp = arch::fp(regs);
    // SAFETY: as above.
    unsafe {
        *last_frame = sp;
        // jump_to is read only once jump_from is set, and set with it.
        *jump_from = 0;
    }
    let mut n = 1usize;
    while n < MAX_STACK_DEPTH {
        if fp < MIN_USER_FRAME || fp & 7 != 0 {
            break;
        }
        // A frame is the caller's frame pointer, then the return address.
        if fp < base || fp + 16 > end {
            // Past what was read: note the first jump of more than `gap`
            // bytes from the last frame (only here, not for every frame:
            // a check per frame cost the verifier 4,000 instructions more,
            // and placed after the read below, 40,000).
            // SAFETY: as above.
            unsafe {
                let from = core::ptr::read_volatile(last_frame) + 16;
                if fp > from + gap && core::ptr::read_volatile(jump_from) == 0 {
                    *jump_from = from;
                    *jump_to = fp;
                }
            }
            // SAFETY: as read_window asks.
            match unsafe { read_window(window, fp, later) } {
                // SAFETY: as above.
                Some(start) => unsafe { *window_base = start },
                None => break,
            }
            // Through memory, as the first read's base: one state after
            // either path of read_window (8,000 verified instructions).
            // SAFETY: as above.
            base = unsafe { core::ptr::read_volatile(window_base) };
            end = base + later;
            // Still past the window: a frame across a page end.
            if fp + 16 > end {
                break;
            }
        }
        // The mask is a no-op the verifier needs: the bound above is on
        // values it does not know; at + 1 can reach the map's spare word.
        let at = ((fp - base) / 8) & (BUFFER_WORDS - 1);
        // SAFETY: at + 1 <= BUFFER_WORDS, within the map value; n < MAX_STACK_DEPTH.
        unsafe {
            *last_frame = fp;
            *dst.add(n) = *window.add(at as usize + 1);
            fp = *window.add(at as usize);
        }
        n += 1;
    }
    // SAFETY: `scratch` is this CPU's scratch entry (see above).
    unsafe { remember_extent(scratch, sp) };
    n as u32
}

/// Notes in `scratch` what the walk that just ended read frames from
/// (from `sp`), for the next walk on this CPU: the frames up to the first
/// jump, or all of them, and those after the jump (see [`WINDOW_BYTES`]).
///
/// # Safety
/// `scratch` is this CPU's scratch entry, which no other program uses while
/// this one runs.
#[inline(always)]
unsafe fn remember_extent(scratch: *mut Scratch, sp: u64) {
    // SAFETY: see the function's safety section.
    let (extent, tail, last_frame, jump_from, jump_to) = unsafe {
        (
            &raw mut (*scratch).extent,
            &raw mut (*scratch).tail,
            &raw mut (*scratch).last_frame,
            &raw mut (*scratch).jump_from,
            &raw mut (*scratch).jump_to,
        )
    };
    // A stack deeper than BUFFER_BYTES (or a chain that strays below rsp,
    // which wraps) is kept to at most BUFFER_BYTES + WINDOW_BYTES, so that its
    // next first read is at most WINDOW_BYTES: far frames are read where
    // they are, not all the bytes between. (clamp() bounds the sizes: min()
    // or an if there doubled the verifier's work, as LLVM lays the branches
    // out otherwise; the if choosing them below did not.)
    // SAFETY: see the function's safety section.
    let (last_end, from, to) = unsafe {
        (
            core::ptr::read_volatile(last_frame) + 16,
            core::ptr::read_volatile(jump_from),
            core::ptr::read_volatile(jump_to),
        )
    };
    let (first_end, rest) = if from != 0 {
        (from, last_end.wrapping_sub(to))
    } else {
        (last_end, 0)
    };
    // SAFETY: see the function's safety section.
    unsafe {
        *extent = first_end
            .wrapping_sub(sp)
            .clamp(1, BUFFER_BYTES + WINDOW_BYTES)
            - 1;
        *tail = rest.clamp(0, WINDOW_BYTES);
    }
}

/// Captures the kernel stack, or the user stack with `BPF_F_USER_STACK`,
/// into `dst`: returns the number of frames, at most MAX_STACK_DEPTH (a bound
/// the verifier can follow), and counts a failure in `errors`.
#[inline(always)]
unsafe fn capture_stack(
    ctx: &PerfEventContext,
    dst: *mut u64,
    flags: u64,
    errors: &mut u64,
) -> u32 {
    // SAFETY: `dst` has room for MAX_STACK_DEPTH frames (STACK_BYTES).
    let n = unsafe { bpf_get_stack(ctx.as_ptr(), dst.cast(), STACK_BYTES, flags) };
    let frames = if n >= 0 {
        (n as u32) / 8
    } else {
        *errors += 1;
        0
    };
    if frames > MAX_STACK_DEPTH as u32 {
        MAX_STACK_DEPTH as u32
    } else {
        frames
    }
}

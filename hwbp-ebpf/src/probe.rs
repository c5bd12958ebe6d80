//! The breakpoint handler.

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        BPF_RB_RING_SIZE, bpf_perf_event_data, pt_regs,
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
    COMM_LEN, Config, Counters, FILTER_COMM, FILTER_OWN, FILTER_TID, HIT_HEADER_SIZE, HIT_NO_VALUE,
    HIT_USER_MODE, Hit, MAX_SLOTS, MAX_STACK_DEPTH, SLOT_EXECUTE, SLOT_KERNEL, SLOT_KSTACK,
    SLOT_READS, SLOT_USTACK, SlotConfig,
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
struct Scratch {
    /// Where a hit is assembled before its used part goes to `EVENTS`.
    hit: Hit,
    /// How many bytes from rsp the last user stack walk on this CPU read
    /// frames from: the size of the next walk's first read.
    extent: u64,
    /// The last frame the walk read (a store per frame, where a variable
    /// live across the walk's loop doubled the verifier's work).
    last_frame: u64,
    /// A piece of the user stack that [`walk_user_stack`] reads frames
    /// from; a word longer than the longest read, for the verifier (see
    /// there).
    window: [u64; BUFFER_WORDS as usize + 1],
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
    let (hit, window, extent, last_frame) = unsafe {
        (
            &raw mut (*scratch).hit,
            &raw mut (*scratch).window,
            &raw mut (*scratch).extent,
            &raw mut (*scratch).last_frame,
        )
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // SAFETY: `hit` points to this CPU's scratch Hit (see below). The comm
    // goes straight there and is compared as two words, where aya's
    // bpf_get_current_comm() zeroes, copies and compares it a byte at a
    // time (a few instructions saved; the helper's own cost, about 100 ns a
    // hit on a KVM guest, is the task's cold cache line).
    let comm = unsafe {
        // The helper zero-fills the buffer if it fails.
        bpf_get_current_comm((*hit).comm.as_mut_ptr().cast(), COMM_LEN as u32);
        (*hit).comm.as_ptr().cast::<[u64; 2]>().read()
    };

    let filter = &all.filter;
    let rejected = (filter.flags & FILTER_OWN != 0 && (pid_tgid >> 32) as u32 == filter.own_pid)
        || (filter.flags & FILTER_TID != 0 && filter.tid != tid)
        || (filter.flags & FILTER_COMM != 0
            // SAFETY: Filter::comm is 8-byte aligned (offset 8 of a
            // repr(C) struct of u32s).
            && unsafe { filter.comm.as_ptr().cast::<[u64; 2]>().read() } != comm);
    if rejected {
        // SAFETY: per-CPU slot of this CPU; programs on one CPU do not nest
        // for the same perf event.
        unsafe { (*counters).filtered += 1 };
        return Ok(0);
    }
    // SAFETY: as above.
    unsafe { (*counters).hits += 1 };

    let mut flags = 0u32;
    // The user-mode bit of the code segment selector (CPL 3).
    if regs.cs & 3 == 3 {
        flags |= HIT_USER_MODE;
    }

    // SAFETY: `hit` points to this CPU's scratch Hit, which no other program
    // uses while this one runs (perf_event programs do not nest on a CPU);
    // every header field is written before the record is copied out.
    unsafe {
        (*hit).ts_ns = bpf_ktime_get_ns();
        (*hit).ip = regs.rip;
        (*hit).addr = addr;
        (*hit).pid = (pid_tgid >> 32) as u32;
        (*hit).tid = tid;
        (*hit).cpu = bpf_get_smp_processor_id();
        (*hit).slot = config.slot;
        (*hit)._pad = 0;

        (*hit).args = [0; 6];
        (*hit).ret = 0;
        if config.flags & SLOT_EXECUTE != 0 {
            (*hit).args = [regs.rdi, regs.rsi, regs.rdx, regs.rcx, regs.r8, regs.r9];
        }
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
            walk_user_stack(&regs, window.cast(), extent, last_frame, frames, ret)
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

        let size = HIT_HEADER_SIZE + (klen as usize + ulen as usize) * 8;
        let record = core::slice::from_raw_parts(hit as *const u8, size);
        // Wake the reader only when this record makes the waiting data cross
        // the threshold (not on every record past it: a reader that fell
        // behind would then get an interrupt per record again).
        let threshold = u64::from(filter.wakeup_bytes);
        let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
        let wakeup =
            if threshold == 0 || (waiting < threshold && waiting + size as u64 >= threshold) {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
        if !output(record, wakeup as u64) {
            (*counters).dropped += 1;
        }
    }
    Ok(0)
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

/// Attempts at writing one record while the ring buffer's lock is taken:
/// far longer than a lock holder on a running CPU keeps it. The verifier
/// walks every iteration, so more cost start-up (1024: +100 ms).
const OUTPUT_TRIES: u32 = 128;

/// Writes `record` to `EVENTS`; false when it was dropped. A breakpoint in
/// kernel code traps in the debug exception, which the kernel runs as an
/// NMI, and there the ring buffer only *tries* its lock
/// (__bpf_ringbuf_reserve in kernel/bpf/ringbuf.c): a hit on one CPU while
/// another CPU writes its own record would be dropped with room to spare.
/// So a failure with room left is tried again, a bounded number of times;
/// a full buffer is not.
#[inline(always)]
fn output(record: &[u8], flags: u64) -> bool {
    // What the record takes: its 8-byte header, rounded up to 8 bytes.
    let needed = ((record.len() as u64 + 8) + 7) & !7;
    for _ in 0..OUTPUT_TRIES {
        if EVENTS.output::<[u8]>(record, flags).is_ok() {
            return true;
        }
        let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
        if waiting + needed >= EVENTS.query(BPF_RB_RING_SIZE as u64) {
            return false;
        }
    }
    false
}

/// Below this no user frame can be: nothing is mapped under
/// vm.mmap_min_addr, 64 KiB by default.
const MIN_USER_FRAME: u64 = 0x1_0000;

/// How much user stack a read takes into [`Scratch::window`]. A read costs a
/// fixed part (about 120 ns here) and a part per byte, which depends on the
/// debug registers: in a user-mode hit the kernel leaves them armed while
/// the program runs (exc_debug_user), and with a data watchpoint among them
/// the CPU copies about a byte a cycle (string instructions check every
/// iteration); with execute breakpoints only, at full speed. So the fewest
/// reads of the fewest bytes: the first read, at rsp, takes what the last
/// walk on this CPU read frames from ([`Scratch::extent`], rounded up to
/// FIRST_MIN bytes, at most BUFFER_BYTES), and the frames past it are read
/// WINDOW_BYTES at a time. A program hit again and again from the same
/// place, as a breakpoint's is, takes one read of just what it needs.
///
/// BPF time per hit with a user stack (kernel.bpf_stats_enabled; medians
/// of 5 to 7 alternating runs; fx_user `calls` and `writes`, 7 frames
/// within 1,200 bytes of rsp, read in two 512-byte windows before, and the
/// same with the stack 800 bytes lower (an environment variable), so that
/// the frames cross a page end; `stacks`, 24 frames across a 5,000-byte
/// frame, with a data watchpoint armed too):
///
/// | reads | execute | write | across a page end | deep, data watchpoint |
/// |---|---:|---:|---:|---:|
/// | 512 bytes each | 680-695 ns | 1070-1098 ns | 688, 1073 ns | 1626-1658 ns |
/// | sized by the last walk, then 512 | 587-602 ns | 1000-1020 ns | 598, 1004 ns | 1638-1641 ns |
///
/// The first read crosses a page end when its frames do (they are on the
/// stack, so mapped); read only up to the page end, as the later windows
/// are, a walk across it took two reads (1255 ns a write hit). Fixed sizes
/// measured before: 64-byte windows cost execute 865 ns, write 965 ns and
/// the deep stack 2150 ns; 2048-byte windows, 670 and 1310 ns. A stack
/// deeper than BUFFER_BYTES starts with at most WINDOW_BYTES, as before.
/// The verifier checks 39,834 instructions rather than 31,910, about 3 ms
/// more start-up; a size per session (a slot flag choosing between two
/// constant sizes) had the verifier follow the walk twice (45,596).
const WINDOW_BYTES: u64 = 512;
/// The longest first read (see [`walk_user_stack`]), a power of two.
const BUFFER_BYTES: u64 = 2048;
const BUFFER_WORDS: u64 = BUFFER_BYTES / 8;
/// The shortest first read, and the step of its sizes.
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
/// rsp in `ret` unless it is null. Returns the number of frames, at most
/// MAX_STACK_DEPTH.
///
/// Two things make it cheaper than the kernel's walker behind
/// bpf_get_stack, which cost about 1.4 us a hit in a KVM guest:
/// - The kernel's walker stops only where reading a frame fails, so it
///   reads the frame pointer that ends the chain (0, or whatever code built
///   without frame pointers left in rbp, such as 0x5) and takes a page
///   fault to learn that nothing is there, about 0.7 us. A null, low or
///   misaligned (rbp is a pushed stack slot, so 8-byte aligned) frame
///   pointer ends this walk without a read.
/// - The stack is read in windows, the first at rsp sized by the last walk
///   (see [`WINDOW_BYTES`]), rather than 16 bytes a frame.
///
/// A frame that straddles two pages (a frame pointer 8 bytes before a page
/// end, which the ABI's 16-byte alignment rules out) ends the walk.
#[inline(always)]
unsafe fn walk_user_stack(
    regs: &pt_regs,
    window: *mut u64,
    extent: *mut u64,
    last_frame: *mut u64,
    dst: *mut u64,
    ret: *mut u64,
) -> u32 {
    // SAFETY: `dst` has room for MAX_STACK_DEPTH frames.
    unsafe { *dst = regs.rip };
    // The first read covers what the last walk on this CPU needed, rounded
    // up to FIRST_MIN bytes: a stack like the last one takes one read. The
    // mask keeps it within FIRST_MIN..=BUFFER_BYTES, plain to the verifier:
    // an extent of 0 (no walk yet on this CPU) reads BUFFER_BYTES, and one
    // past BUFFER_BYTES (see below) what it exceeds that by.
    // SAFETY: `extent` points into this CPU's scratch entry.
    let first = ((unsafe { core::ptr::read_volatile(extent) }.wrapping_sub(1))
        & (BUFFER_BYTES - FIRST_MIN))
        + FIRST_MIN;
    // The window holds the user stack's bytes [base, end). The first read
    // may cross a page end: the frames it was sized for were there, above
    // rsp, on the stack. Should it fail (a different stack, which ends in
    // those bytes), it is read again up to the page end. The page at rsp is
    // mapped (the thread uses it); a read there fails only where no user
    // memory can be read (nmi_uaccess_okay), and then no frame could be.
    // SAFETY: the window has room for BUFFER_BYTES; the helper checks rsp.
    let read =
        unsafe { bpf_probe_read_user(window.cast(), first as u32, regs.rsp as *const c_void) };
    let mut base = regs.rsp;
    if read != 0 {
        // SAFETY: as read_window asks.
        match unsafe { read_window(window, regs.rsp, first) } {
            Some(start) => base = start,
            None => return 1,
        }
    }
    // Through memory, so that the verifier sees one state after both reads
    // (one path's base is rsp itself, and it would follow the walk twice).
    // SAFETY: `last_frame` points into this CPU's scratch entry; it is set
    // for the walk below.
    let mut base = unsafe {
        *last_frame = base;
        core::ptr::read_volatile(last_frame)
    };
    let mut end = base + first;
    if !ret.is_null() {
        // SAFETY: `ret` points into this CPU's scratch Hit; the window
        // holds rsp's word, and the mask keeps that plain to the verifier.
        unsafe { *ret = *window.add((((regs.rsp - base) / 8) & (BUFFER_WORDS - 1)) as usize) };
    }
    let mut fp = regs.rbp;
    // SAFETY: `last_frame` points into this CPU's scratch entry.
    unsafe { *last_frame = regs.rsp };
    let mut n = 1usize;
    while n < MAX_STACK_DEPTH {
        if fp < MIN_USER_FRAME || fp & 7 != 0 {
            break;
        }
        // A frame is the caller's frame pointer, then the return address.
        if fp < base || fp + 16 > end {
            // SAFETY: as read_window asks.
            match unsafe { read_window(window, fp, WINDOW_BYTES) } {
                Some(start) => base = start,
                None => break,
            }
            end = base + WINDOW_BYTES;
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
    // What this walk read frames from, for the next one. A stack deeper
    // than BUFFER_BYTES (or a chain that strays below rsp, which wraps) is
    // kept to at most BUFFER_BYTES + WINDOW_BYTES, so that its next first
    // read is at most WINDOW_BYTES: far frames are read where they are,
    // not all the bytes between. (min() or an if here, rather than clamp(),
    // doubled the verifier's work: LLVM lays the branches out otherwise.)
    // SAFETY: as above.
    let needed = unsafe { core::ptr::read_volatile(last_frame) + 16 }.wrapping_sub(regs.rsp);
    // SAFETY: as above.
    unsafe { *extent = needed.clamp(1, BUFFER_BYTES + WINDOW_BYTES) };
    n as u32
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

//! The breakpoint handler.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        BPF_RB_RING_SIZE, bpf_perf_event_data,
    },
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        bpf_probe_read_kernel_buf, bpf_probe_read_user_buf, generated::bpf_get_stack,
    },
    macros::{map, perf_event},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::PerfEventContext,
};
use hwbp_common::{
    Counters, FILTER_COMM, FILTER_OWN, FILTER_TID, Filter, HIT_HEADER_SIZE, HIT_NO_VALUE,
    HIT_USER_MODE, Hit, MAX_SLOTS, MAX_STACK_DEPTH, SLOT_EXECUTE, SLOT_KERNEL, SLOT_KSTACK,
    SLOT_USTACK, SlotConfig,
};

/// Hits, in order per CPU. Sized by userspace (`--buffer-size`) at load time.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Breakpoint address → target configuration.
#[map(name = "SLOTS")]
static SLOTS: HashMap<u64, SlotConfig> = HashMap::with_max_entries(MAX_SLOTS as u32, 0);

/// Per-target, per-CPU counters: nothing is lost without being counted.
#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_SLOTS as u32, 0);

/// Where a hit is assembled before its used part goes to `EVENTS` (a
/// [`Hit`] does not fit on the 512-byte BPF stack).
#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Hit> = PerCpuArray::with_max_entries(1, 0);

/// comm/tid filters, index 0.
#[map(name = "FILTER")]
static FILTER: Array<Filter> = Array::with_max_entries(1, 0);

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
    // SAFETY: a read-only lookup of a plain-old-data value.
    let Some(config) = (unsafe { SLOTS.get(addr) }) else {
        // Never expected: SLOTS is filled before any event is enabled and
        // every event is armed at an address in it. A rare diagnostic, so
        // aya-log rather than a counter nobody reads.
        aya_log_ebpf::warn!(ctx, "hit at {:x}, which no target armed", addr);
        return Ok(0);
    };
    let config = *config;
    let Some(counters) = COUNTERS.get_ptr_mut(config.slot) else {
        return Ok(0);
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);

    if let Some(filter) = FILTER.get(0) {
        let rejected = (filter.flags & FILTER_OWN != 0
            && (pid_tgid >> 32) as u32 == filter.own_pid)
            || (filter.flags & FILTER_TID != 0 && filter.tid != tid)
            || (filter.flags & FILTER_COMM != 0 && filter.comm != comm);
        if rejected {
            // SAFETY: per-CPU slot of this CPU; programs on one CPU do not nest
            // for the same perf event.
            unsafe { (*counters).filtered += 1 };
            return Ok(0);
        }
    }
    // SAFETY: as above.
    unsafe { (*counters).hits += 1 };

    let Some(hit) = SCRATCH.get_ptr_mut(0) else {
        // A per-CPU array of one entry always has index 0: never expected.
        aya_log_ebpf::error!(ctx, "no scratch entry on this CPU; hit dropped");
        // SAFETY: per-CPU slot of this CPU, see below.
        unsafe { (*counters).dropped += 1 };
        return Ok(0);
    };
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
        (*hit).comm = comm;
        (*hit)._pad = 0;

        (*hit).args = [0; 6];
        (*hit).ret = 0;
        if config.flags & SLOT_EXECUTE != 0 {
            (*hit).args = [regs.rdi, regs.rsi, regs.rdx, regs.rcx, regs.r8, regs.r9];
        }
        // The return address completes the user stack of a hit at a user
        // function's first instruction (see Hit::ret); nothing else uses it,
        // so it is read only then.
        if config.flags & (SLOT_EXECUTE | SLOT_USTACK) == SLOT_EXECUTE | SLOT_USTACK
            && flags & HIT_USER_MODE != 0
        {
            let mut ret = [0u8; 8];
            if bpf_probe_read_user_buf(regs.rsp as *const u8, &mut ret).is_ok() {
                (*hit).ret = u64::from_le_bytes(ret);
            }
        }

        (*hit).value = 0;
        if config.flags & SLOT_EXECUTE == 0 {
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
        let ulen = if config.flags & SLOT_USTACK != 0 {
            // User frames go right after the kernel ones.
            capture_stack(
                ctx,
                frames.add(klen as usize),
                BPF_F_USER_STACK as u64,
                &mut (*counters).ustack_errors,
            )
        } else {
            0
        };
        (*hit).kstack_len = klen;
        (*hit).ustack_len = ulen;
        (*hit).flags = flags;

        let size = HIT_HEADER_SIZE + (klen as usize + ulen as usize) * 8;
        let record = core::slice::from_raw_parts(hit as *const u8, size);
        // Wake the reader only when this record makes the waiting data cross
        // the threshold (not on every record past it: a reader that fell
        // behind would then get an interrupt per record again).
        let threshold = FILTER.get(0).map_or(0, |f| u64::from(f.wakeup_bytes));
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

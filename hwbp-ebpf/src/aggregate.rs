//! Exact aggregates, kept in the kernel for every hit: a count per target,
//! process, comm and stack (`AGGS`), and each stack's frames once
//! (`STACKS`). Records in `EVENTS` can be dropped when the reader falls
//! behind, or left out by choice (`--records sample:N|none`); these counts
//! cannot, so "who, from where, how often" stays exact at any hit rate. A
//! full map is counted per target (`agg_full`, `stack_full`), never silent.
//!
//! `AGGS` is a per-CPU hash: a hot target hit on every CPU at once adds to
//! each CPU's own count, with no shared cache line or atomic operation.
//! Both maps are preallocated (the kernel allows nothing else in a program
//! that runs in NMI context) and sized by userspace at load time.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_probe_read_kernel_buf,
    macros::map,
    maps::{HashMap, PerCpuHashMap},
};
use hwbp_common::{
    AggKey, Counters, Hit, MAX_STACK_DEPTH, StackEntry, stack_hash_finish, stack_hash_start,
    stack_hash_step,
};

use crate::probe::Scratch;

/// Hits by target, process, comm and stack: a count per CPU.
#[map(name = "AGGS")]
static AGGS: PerCpuHashMap<AggKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// The frames of each stack counted in `AGGS`, by id.
#[map(name = "STACKS")]
static STACKS: HashMap<u64, StackEntry> = HashMap::with_max_entries(4096, 0);

/// Counts the hit assembled in `hit` (its stacks, pid and comm filled in)
/// under target `slot`.
///
/// # Safety
/// `scratch`, `hit` and `counters` are this CPU's scratch entry, its Hit
/// and this CPU's counters of `slot`, which no other program uses while
/// this one runs.
#[inline(always)]
pub unsafe fn aggregate(
    slot: u32,
    scratch: *mut Scratch,
    hit: *const Hit,
    counters: *mut Counters,
) {
    // SAFETY: see the function's safety section.
    let stack = unsafe { store_stack(scratch, hit, counters) };
    // SAFETY: as above.
    let key = unsafe {
        AggKey {
            slot,
            pid: (*hit).pid,
            stack,
            ip: (*hit).ip,
            comm: (*hit).comm,
        }
    };
    if let Some(count) = AGGS.get_ptr_mut(&key) {
        // SAFETY: this CPU's value of a per-CPU map entry.
        unsafe { *count += 1 };
        return;
    }
    // A new key; another CPU inserting the same one at once makes this
    // insert fail with EEXIST, and then the lookup finds it.
    if AGGS.insert(&key, &1, BPF_NOEXIST as u64).is_ok() {
        return;
    }
    match AGGS.get_ptr_mut(&key) {
        // SAFETY: as above.
        Some(count) => unsafe { *count += 1 },
        // SAFETY: see the function's safety section.
        None => unsafe { (*counters).agg_full += 1 },
    }
}

/// The id of the hit's stack (0 when it has none), its frames stored in
/// `STACKS` when they are not yet.
///
/// # Safety
/// As [`aggregate`].
#[inline(always)]
unsafe fn store_stack(scratch: *mut Scratch, hit: *const Hit, counters: *mut Counters) -> u64 {
    // SAFETY: see the function's safety section. Read back through memory,
    // as in try_hwbp: lengths the verifier knows per path would make it
    // check the loop below once per length.
    let (klen, ulen, ret) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*hit).kstack_len).min(MAX_STACK_DEPTH as u32),
            core::ptr::read_volatile(&raw const (*hit).ustack_len).min(MAX_STACK_DEPTH as u32),
            (*hit).ret,
        )
    };
    let n = (klen + ulen) as usize;
    if n == 0 {
        return 0;
    }
    let mut h = stack_hash_start(klen, ulen, ret);
    for i in 0..2 * MAX_STACK_DEPTH {
        if i >= n {
            break;
        }
        // SAFETY: i < 2 * MAX_STACK_DEPTH, within the frames.
        h = stack_hash_step(h, unsafe { (*hit).frames[i] });
    }
    let id = stack_hash_finish(h);
    if STACKS.get_ptr(&id).is_some() {
        return id;
    }
    // SAFETY: this CPU's scratch entry (see the safety section).
    let entry = unsafe { Scratch::stack_entry(scratch) };
    // SAFETY: as above; both are plain memory of this program's maps.
    let copied = unsafe {
        (*entry).kstack_len = klen;
        (*entry).ustack_len = ulen;
        (*entry).ret = ret;
        let frames = core::slice::from_raw_parts_mut(
            (&raw mut (*entry).frames).cast::<u8>(),
            2 * MAX_STACK_DEPTH * 8,
        );
        bpf_probe_read_kernel_buf((&raw const (*hit).frames).cast::<u8>(), frames).is_ok()
    };
    // SAFETY: as above.
    if !copied
        || STACKS
            .insert(&id, unsafe { &*entry }, BPF_NOEXIST as u64)
            .is_err()
    {
        // Another CPU storing the same stack at once is no loss.
        if STACKS.get_ptr(&id).is_none() {
            // SAFETY: see the function's safety section.
            unsafe { (*counters).stack_full += 1 };
        }
    }
    id
}

//! The registers of a hit, per architecture: one BPF program is built per
//! architecture (aya-build passes the target's as `bpf_target_arch`), and
//! this is all that differs between them. The record layout is shared
//! (hwbp-common): six argument words, the ip, and the user-mode flag.
//!
//! - x86-64: rip, rsp, rbp as the frame pointer, rdi rsi rdx rcx r8 r9 (the
//!   psABI's integer arguments), user mode when the code segment's CPL is 3;
//!   at a function's first instruction the return address is the word at rsp.
//! - arm64: pc, sp, x29 as the frame pointer, x0..x5 (AAPCS64 passes eight
//!   in x0..x7: the record keeps the first six), user mode when pstate's
//!   mode field is EL0t; at a function's first instruction the return
//!   address is in the link register x30, not yet on the stack.
//!
//! Only arm64 has re-traps ([`retrap`]): the kernel single-steps the
//! instruction of a kernel-mode hit with the breakpoint off, and an
//! interrupt taken before that instruction ends the step early (Linux's
//! interrupt entry unmasks debug exceptions), so the instruction traps again
//! once the interrupt returns: one execution, two traps. The second looks
//! like any hit; what tells it is the interrupt's saved pstate (SS set: not
//! stepped yet), which the `hwbp_irq` kprobe reads in every interrupt of a
//! task whose last trap was in the kernel. docs/arm64.md has the proof.

#[cfg(bpf_target_arch = "x86_64")]
pub use aya_ebpf::bindings::pt_regs as Regs;
#[cfg(bpf_target_arch = "aarch64")]
pub use aya_ebpf::bindings::user_pt_regs as Regs;

#[cfg(bpf_target_arch = "x86_64")]
mod imp {
    use super::Regs;

    #[inline(always)]
    pub fn ip(regs: &Regs) -> u64 {
        regs.rip
    }
    #[inline(always)]
    pub fn sp(regs: &Regs) -> u64 {
        regs.rsp
    }
    #[inline(always)]
    pub fn fp(regs: &Regs) -> u64 {
        regs.rbp
    }
    #[inline(always)]
    pub fn user_mode(regs: &Regs) -> bool {
        regs.cs & 3 == 3
    }
    #[inline(always)]
    pub fn args(regs: &Regs) -> [u64; 6] {
        [regs.rdi, regs.rsi, regs.rdx, regs.rcx, regs.r8, regs.r9]
    }
    /// The return address at a function's first instruction, when a
    /// register holds it (None: it is the word at sp).
    #[inline(always)]
    pub fn link_register(_regs: &Regs) -> Option<u64> {
        None
    }
    /// x86-64 has no re-traps: a breakpoint sets RF, a watchpoint traps
    /// after the access; nothing is stepped.
    #[inline(always)]
    pub fn retrap(_regs: &Regs, _pid_tgid: u64) -> bool {
        false
    }
    /// A watchpoint traps after the access, and its hit reads the value
    /// the access left: no trap numbers needed.
    #[inline(always)]
    pub fn trap_number(_slot: u32) -> u32 {
        0
    }
}

#[cfg(bpf_target_arch = "aarch64")]
mod imp {
    use super::Regs;

    /// PSR_MODE_MASK and PSR_MODE_EL0t (arch/arm64/include/uapi/asm/ptrace.h).
    const PSR_MODE_MASK: u64 = 0xf;
    const PSR_MODE_EL0T: u64 = 0;

    #[inline(always)]
    pub fn ip(regs: &Regs) -> u64 {
        regs.pc
    }
    #[inline(always)]
    pub fn sp(regs: &Regs) -> u64 {
        regs.sp
    }
    #[inline(always)]
    pub fn fp(regs: &Regs) -> u64 {
        regs.regs[29]
    }
    #[inline(always)]
    pub fn user_mode(regs: &Regs) -> bool {
        regs.pstate & PSR_MODE_MASK == PSR_MODE_EL0T
    }
    #[inline(always)]
    pub fn args(regs: &Regs) -> [u64; 6] {
        [
            regs.regs[0],
            regs.regs[1],
            regs.regs[2],
            regs.regs[3],
            regs.regs[4],
            regs.regs[5],
        ]
    }
    #[inline(always)]
    pub fn link_register(regs: &Regs) -> Option<u64> {
        Some(regs.regs[30])
    }

    /// Per data target, its traps so far, every CPU's and thread's.
    #[aya_ebpf::macros::map(name = "TRAPS")]
    static TRAPS: aya_ebpf::maps::Array<u64> =
        aya_ebpf::maps::Array::with_max_entries(hwbp_common::MAX_SLOTS as u32, 0);

    /// This trap's number among the traps of target `slot`, from 1
    /// ([`hwbp_common::Hit::trap`]). A watchpoint traps before the access,
    /// so a hit reads the value before it; the value after it is what the
    /// target's next trap reads, when that trap is the same thread's (its
    /// access is done) and numbered one more (nothing trapped between,
    /// filtered, unsampled or dropped): userspace pairs them. Not atomic:
    /// two CPUs trapping at the same moment can take the same number, and
    /// then the later thread's hit may read a value another thread's
    /// racing store left too, which is after the access all the same.
    #[inline(always)]
    pub fn trap_number(slot: u32) -> u32 {
        match TRAPS.get_ptr_mut(slot) {
            // SAFETY: an entry of an array map, valid while the program
            // runs; a racing update is the documented miscount above.
            Some(traps) => unsafe {
                let n = *traps + 1;
                *traps = n;
                n as u32
            },
            None => 0,
        }
    }

    /// A task's last kernel-mode trap (`pc` 0 once an interrupt looked at
    /// it), and the trap it makes again (`again`, 0 for none).
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Step {
        pc: u64,
        sp: u64,
        again: u64,
    }

    /// By pid_tgid: a re-trap is the same task's next trap, on whichever CPU
    /// it runs after the interrupt. An LRU map: a task it forgets is one
    /// whose re-trap would count as a hit, never the reverse.
    #[aya_ebpf::macros::map(name = "STEPS")]
    static STEPS: aya_ebpf::maps::LruHashMap<u64, Step> =
        aya_ebpf::maps::LruHashMap::with_max_entries(4096, 0);

    /// DBG_SPSR_SS: in a saved pstate, a step pending, its instruction not
    /// run yet.
    const SPSR_SS: u64 = 1 << 21;
    /// Offsets of sp, pc and pstate in struct pt_regs: its user_pt_regs
    /// part, the same in every kernel.
    const PT_REGS_SP: u64 = 248;
    /// sizeof(struct pt_regs), which kernels change (336 in 6.1 and 6.12):
    /// an exception from EL1 stores its pt_regs right below the sp it
    /// interrupted. Each is checked against the sp and pc stored in it.
    const PT_REGS_SIZES: [u64; 3] = [336, 352, 320];
    /// Frame records from irq_enter_rcu's caller to the interrupt's
    /// exception frame: two or three in the kernels seen.
    const FRAMES: usize = 6;

    /// Whether this kernel-mode trap repeats the task's last one, whose
    /// step an interrupt ended before the instruction ran; it becomes the
    /// task's last trap either way (the kernel steps it again).
    #[inline(always)]
    pub fn retrap(regs: &Regs, pid_tgid: u64) -> bool {
        if user_mode(regs) {
            return false;
        }
        let (pc, sp) = (regs.pc, regs.sp);
        // SAFETY: the value is this map's; the kernel keeps it alive while
        // the program runs, and `get` copies it.
        let again = unsafe { STEPS.get(&pid_tgid) }.is_some_and(|s| s.again == pc && s.sp == sp);
        // Failure to store (never expected: an LRU map makes room) leaves
        // the next re-trap counted as a hit.
        let _ = STEPS.insert(&pid_tgid, &Step { pc, sp, again: 0 }, 0);
        again
    }

    /// Runs in every interrupt (a kprobe on irq_enter_rcu, attached on
    /// arm64 while the program is loaded). When the interrupted task's last
    /// trap is still unlooked-at, walks the frame records to the
    /// interrupt's exception frame and, if the interrupt came at that
    /// trap's instruction and sp with its step pending (SS), marks the
    /// task's next trap there as a re-trap.
    #[aya_ebpf::macros::kprobe]
    pub fn hwbp_irq(ctx: aya_ebpf::programs::ProbeContext) -> u32 {
        let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
        let Some(step) = STEPS.get_ptr_mut(&pid_tgid) else {
            return 0;
        };
        // SAFETY: `step` points into the map's value, which the kernel
        // keeps alive while the program runs; `ctx.regs` is the kprobe's
        // pt_regs (the kernel's, user_pt_regs first); every other read goes
        // through bpf_probe_read_kernel, which checks it.
        unsafe {
            let pc = (*step).pc;
            if pc == 0 {
                return 0;
            }
            // The first interrupt of the task after its trap is the only
            // one that can have come before the instruction ran.
            (*step).pc = 0;
            let sp = (*step).sp;
            let regs = ctx.regs as *const Regs;
            let Ok(mut fp) = aya_ebpf::helpers::bpf_probe_read_kernel(&raw const (*regs).regs[29])
            else {
                return 0;
            };
            for _ in 0..FRAMES {
                let Ok(record) = aya_ebpf::helpers::bpf_probe_read_kernel(fp as *const [u64; 2])
                else {
                    return 0;
                };
                if record[1] == pc && fp < sp {
                    if pstate_pending(pc, sp, fp) {
                        (*step).again = pc;
                    }
                    return 0;
                }
                fp = record[0];
            }
        }
        0
    }

    /// Whether the pt_regs stored right below `sp` holds `sp`, `pc`, a
    /// pending step, and the frame record at `fp` (the one the exception
    /// entry stored in it, whose return address is `pc`).
    #[inline(always)]
    fn pstate_pending(pc: u64, sp: u64, fp: u64) -> bool {
        for size in PT_REGS_SIZES {
            let base = sp - size;
            if fp <= base + PT_REGS_SP {
                continue;
            }
            // SAFETY: a kernel read through the helper, which checks it.
            let Ok([at_sp, at_pc, pstate]) = (unsafe {
                aya_ebpf::helpers::bpf_probe_read_kernel((base + PT_REGS_SP) as *const [u64; 3])
            }) else {
                continue;
            };
            if at_sp == sp && at_pc == pc {
                return pstate & SPSR_SS != 0;
            }
        }
        false
    }
}

pub use imp::*;

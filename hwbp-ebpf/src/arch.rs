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
}

pub use imp::*;

//! Conditions (`TARGET if COND`), evaluated per hit before anything is
//! recorded: userspace compiles each into a [`CondProgram`] (hwbp-user
//! target/condition.rs), a few comparisons with forward jumps, and this
//! interprets it. One interpreter for every condition keeps the program
//! one program, verified once at start-up, whatever the conditions; a
//! rejected hit costs the value read, the operands and a few steps.

use aya_ebpf::{helpers::bpf_get_smp_processor_id, macros::map, maps::Array};
use hwbp_common::{
    COND_ACCEPT, COND_COMM_HI, COND_COMM_LO, COND_CPU, COND_IMM, COND_OP_COMM, COND_OP_EQ,
    COND_OP_LE, COND_OP_LT, COND_OP_MASK, COND_OPERANDS, COND_REJECT, COND_SIGNED, CondProgram,
    Hit, MAX_COND_INSNS, MAX_SLOTS,
};

use crate::{arch, probe::Scratch};

/// 1 when a target of the run may have a condition, 0 when none can
/// (`GLOBAL_CONDITIONS`): set at load time in the program's read-only data,
/// which the kernel freezes before verifying, so that with 0 the verifier
/// knows [`condition`] is never called and does not walk it. It is more
/// than half of what the verifier walks, and so of start-up
/// (docs/benchmarks.md).
#[unsafe(no_mangle)]
static HWBP_CONDITIONS: u8 = 1;

/// Whether conditions are on in this run (see [`HWBP_CONDITIONS`]).
#[inline(always)]
pub fn enabled() -> bool {
    // SAFETY: a read of a static; volatile, so that the compiler keeps the
    // load, whose value the verifier reads from the frozen map.
    unsafe { core::ptr::read_volatile(&raw const HWBP_CONDITIONS) != 0 }
}

/// Words of [`Scratch`] the operands take.
pub const COND_SCRATCH: usize = COND_OPERANDS;

/// Each target's condition, by slot; read only for targets with
/// `SLOT_COND`, so targets without one pay nothing for it.
#[map(name = "CONDS")]
static CONDS: Array<CondProgram> = Array::with_max_entries(MAX_SLOTS as u32, 0);

/// Each target's last value read (the `old` of its next hit), by slot;
/// userspace sets the first before arming. Shared by every CPU: two CPUs
/// writing the same target at once may both see the same `old`.
#[map(name = "OLD")]
static OLD: Array<u64> = Array::with_max_entries(MAX_SLOTS as u32, 0);

/// Whether the hit passes the condition of `slot`; also stores the hit's
/// value as that target's next `old`. A missing program keeps the hit.
///
/// # Safety
/// `scratch` and `hit` are this CPU's scratch entry and its Hit, which no
/// other program uses while this one runs; `(*hit).value` is read.
#[inline(always)]
pub unsafe fn condition(
    slot: u32,
    regs: &arch::Regs,
    scratch: *mut Scratch,
    hit: *const Hit,
    pid_tgid: u64,
    comm: [u64; 2],
) -> bool {
    let Some(program) = CONDS.get(slot) else {
        return true;
    };
    // SAFETY: see the function's safety section; the operand array has
    // COND_OPERANDS words, every index below is masked into it.
    unsafe {
        let ops = Scratch::operands(scratch);
        let value = (*hit).value;
        let old = match OLD.get_ptr_mut(slot) {
            Some(last) => {
                let old = *last;
                *last = value;
                old
            }
            None => 0,
        };
        *ops = value;
        *ops.add(1) = old;
        let args = arch::args(regs);
        *ops.add(2) = args[0];
        *ops.add(3) = args[1];
        *ops.add(4) = args[2];
        *ops.add(5) = args[3];
        *ops.add(6) = args[4];
        *ops.add(7) = args[5];
        *ops.add(8) = pid_tgid >> 32;
        *ops.add(9) = pid_tgid & 0xffff_ffff;
        *ops.add(COND_CPU as usize) = u64::from(bpf_get_smp_processor_id());
        *ops.add(COND_COMM_LO) = comm[0];
        *ops.add(COND_COMM_HI) = comm[1];
        let mask = COND_OPERANDS - 1;
        let mut pc = 0usize;
        // Without a branch on signedness (each one doubled the paths the
        // verifier walks per step): zero-extend, then sign-extend by
        // (x ^ m) - m with m the sign bit, 0 when unsigned; a signed
        // comparison is an unsigned one with both sign bits flipped.
        for _ in 0..MAX_COND_INSNS {
            let insn = &program.insns[pc & (MAX_COND_INSNS - 1)];
            let signed = u64::from(insn.flags & COND_SIGNED);
            let ls = u64::from(insn.lshift & 63);
            let rs = u64::from(insn.rshift & 63);
            // The literal is an operand too (rshift 0): one load for both.
            *ops.add(COND_IMM as usize) = insn.imm[0];
            let a = (*ops.add(usize::from(insn.lhs) & mask) << ls) >> ls;
            let b = (*ops.add(usize::from(insn.rhs) & mask) << rs) >> rs;
            let (ma, mb) = (signed << (63 - ls), signed << (63 - rs));
            let flip = signed << 63;
            let a = ((a ^ ma).wrapping_sub(ma)) ^ flip;
            let b = ((b ^ mb).wrapping_sub(mb)) ^ flip;
            let taken = match insn.op {
                COND_OP_EQ => a == b,
                COND_OP_LT => a < b,
                COND_OP_LE => a <= b,
                COND_OP_MASK => a & b != 0,
                COND_OP_COMM => {
                    *ops.add(COND_COMM_LO) == insn.imm[0] && *ops.add(COND_COMM_HI) == insn.imm[1]
                }
                _ => false,
            };
            let next = if taken { insn.jt } else { insn.jf };
            if next == COND_ACCEPT {
                return true;
            }
            if next == COND_REJECT {
                return false;
            }
            pc = usize::from(next);
        }
        false
    }
}

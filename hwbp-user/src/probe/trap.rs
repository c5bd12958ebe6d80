//! The software breakpoint that stops a launched command before its first
//! instruction (see process.rs), per architecture: which instruction traps,
//! where the program counter is after it did, and reading and setting the
//! program counter of a stopped tracee (PTRACE_GETREGSET with NT_PRSTATUS,
//! which both architectures have; x86's PTRACE_GETREGS does not exist on
//! arm64).
//!
//! - x86-64: int3 (0xcc, one byte); the trap leaves rip after it.
//! - arm64: `brk #0` (0xd4200000, one 4-byte instruction, what gdb uses);
//!   the trap leaves pc at it.

use std::io;

/// `original` (the word at the stop address) with its first instruction
/// replaced by the trap.
#[cfg(target_arch = "x86_64")]
pub fn with_trap(original: libc::c_long) -> libc::c_long {
    (original & !0xff) | 0xcc
}
#[cfg(target_arch = "aarch64")]
pub fn with_trap(original: libc::c_long) -> libc::c_long {
    (original & !0xffff_ffff) | 0xd420_0000
}

/// How far past the trap's address the program counter is after it trapped.
#[cfg(target_arch = "x86_64")]
pub const PC_AFTER_TRAP: u64 = 1;
#[cfg(target_arch = "aarch64")]
pub const PC_AFTER_TRAP: u64 = 0;

/// Reads the registers of our stopped tracee `pid` (NT_PRSTATUS).
fn get_regs(pid: i32) -> Result<libc::user_regs_struct, String> {
    // SAFETY: user_regs_struct is plain data, for which zeroes are valid.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    regset(pid, libc::PTRACE_GETREGSET, &mut regs, "PTRACE_GETREGSET")?;
    Ok(regs)
}

fn set_regs(pid: i32, regs: &mut libc::user_regs_struct) -> Result<(), String> {
    regset(pid, libc::PTRACE_SETREGSET, regs, "PTRACE_SETREGSET")
}

/// PTRACE_GETREGSET or PTRACE_SETREGSET (`request`, named `name` in its
/// error) of the NT_PRSTATUS set of our stopped tracee `pid`, into or from
/// `regs`.
fn regset(
    pid: i32,
    request: libc::c_uint,
    regs: &mut libc::user_regs_struct,
    name: &str,
) -> Result<(), String> {
    let mut iov = libc::iovec {
        iov_base: std::ptr::from_mut(regs).cast(),
        iov_len: size_of::<libc::user_regs_struct>(),
    };
    // SAFETY: both requests access at most iov_len bytes at iov_base,
    // which points to `regs`, live for the whole call.
    let rc = unsafe {
        libc::ptrace(
            request,
            pid,
            libc::NT_PRSTATUS as libc::c_long,
            &raw mut iov,
        )
    };
    if rc < 0 {
        return Err(format!("{name}: {}", io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
fn pc_of(regs: &mut libc::user_regs_struct) -> &mut u64 {
    &mut regs.rip
}
#[cfg(target_arch = "aarch64")]
fn pc_of(regs: &mut libc::user_regs_struct) -> &mut u64 {
    &mut regs.pc
}

/// Checks that our tracee stopped at the trap at `addr` and sets its
/// program counter back to `addr`, to run the original instruction there.
pub fn rewind_to(pid: i32, addr: u64) -> Result<(), String> {
    let mut regs = get_regs(pid)?;
    let pc = pc_of(&mut regs);
    if *pc != addr + PC_AFTER_TRAP {
        return Err(format!(
            "stopped at {:#x}, expected {:#x}",
            *pc,
            addr + PC_AFTER_TRAP
        ));
    }
    if PC_AFTER_TRAP == 0 {
        return Ok(());
    }
    *pc = addr;
    set_regs(pid, &mut regs)
}

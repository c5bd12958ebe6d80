//! What differs between the CPU architectures hwbp runs on, as the rest of
//! hwbp asks it: how many breakpoints and watchpoints the hardware can
//! have at most, whether read-only watchpoints exist, and whether the
//! running kernel steps over a breakpoint that has a BPF program attached.
//!
//! The last is arm64's (and 32-bit arm's) alone. There a breakpoint or
//! watchpoint traps *before* its instruction completes, and the kernel
//! must single-step that instruction with the breakpoint disabled before
//! the thread may go on. Until commit d11a69873d9a ("hw_breakpoint: fix
//! single-stepping when using bpf_overflow_handler", Linux 6.6) arm64 did
//! that step only for events with perf's default overflow handler, and an
//! event with a BPF program has another: the instruction trapped again,
//! forever (in the kernel, a hung CPU). The fix went to the stable series
//! 6.5.5, 6.1.55, 5.15.133 and 5.10.197 (5.15.133's release notes list it;
//! Debian's kernel changelogs, which list each stable update's commits,
//! place it in 6.1.55 and 5.10.197); Linux 6.10
//! then dropped the BPF overflow handler altogether (the program is called
//! directly, and the default handler steps). x86 traps after a data
//! access and resumes over an execute breakpoint with RF: no step needed.

use std::fs;

/// The most breakpoints and watchpoints the architecture allows per CPU,
/// each: what `doctor` probes up to. x86: DR0-DR3, shared by both kinds.
/// arm64: up to 16 breakpoint and 16 watchpoint registers (ID_AA64DFR0's
/// BRPs and WRPs), two separate pools.
#[cfg(target_arch = "x86_64")]
pub const MAX_DEBUG_REGISTERS: usize = 4;
#[cfg(not(target_arch = "x86_64"))]
pub const MAX_DEBUG_REGISTERS: usize = 16;

/// Whether the kernel takes a kernel breakpoint scoped to a task. arm64's
/// refuses it (EINVAL: "Disallow per-task kernel breakpoints since these
/// would complicate the stepping code", hw_breakpoint_arch_parse): kernel
/// targets are armed system-wide only.
pub const PER_TASK_KERNEL_BREAKPOINTS: bool = cfg!(target_arch = "x86_64");

/// What the hardware has, for the message when none is left.
#[cfg(target_arch = "x86_64")]
pub const REGISTERS: &str = "x86 CPUs have 4 debug registers for breakpoints";
#[cfg(not(target_arch = "x86_64"))]
pub const REGISTERS: &str = "arm64 CPUs have 2 to 16 breakpoint registers and 2 to 16 watchpoint registers \
                             (`hwbp-trace doctor` counts this machine's)";

/// The bp_len of an execute breakpoint: x86 wants sizeof(long); arm64 one
/// A64 instruction, 4 bytes (arm64 kernels take 8 too, as a byte mask
/// wider than the 4 bits a breakpoint has: 4 is what the hardware means).
#[cfg(target_arch = "x86_64")]
pub const EXECUTE_LEN: u8 = 8;
#[cfg(not(target_arch = "x86_64"))]
pub const EXECUTE_LEN: u8 = 4;

/// Whether breakpoints and watchpoints take separate registers (arm64) or
/// share one set (x86).
pub const SEPARATE_POOLS: bool = cfg!(not(target_arch = "x86_64"));

/// The architecture's name as users know it.
pub const NAME: &str = if cfg!(target_arch = "x86_64") {
    "x86-64"
} else if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    std::env::consts::ARCH
};

/// Whether a data watchpoint's hit comes before the access (arm64: the
/// BPF program reads the value the variable had before a write) or after
/// it (x86: the value written).
pub const TRAPS_BEFORE_ACCESS: bool = cfg!(not(target_arch = "x86_64"));

/// Whether a wakeup of the ring buffer's reader from the BPF program makes
/// the hit trap again (arm64). The wakeup is an irq_work, raised on arm64
/// by an IPI to the CPU itself: that interrupt is pending when the kernel
/// returns to the trapping instruction to single-step it, is taken first,
/// and the step ends in the interrupt handler, which re-arms the
/// breakpoint; back from it, the same instruction traps again and the hit
/// is recorded twice (seen in the arm64 demo: the first hit of a run, the
/// one that woke the reader, twice, with the same registers and value).
/// There the program never wakes the reader, which polls instead.
pub const WAKEUP_RETRAPS: bool = cfg!(not(target_arch = "x86_64"));

/// Whether the running kernel steps over a BPF-attached breakpoint, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SingleStep {
    /// Not needed (x86) or done by this kernel: the reason.
    Safe(String),
    /// The kernel would trap on the same instruction forever: the reason.
    Loops(String),
}

/// Upstream versions that have the fix, per stable series (see the module
/// comment): (major, minor, first fixed patch level).
const FIXED_IN: &[(u32, u32, u32)] = &[(6, 5, 5), (6, 1, 55), (5, 15, 133), (5, 10, 197)];
/// The first mainline release with the fix.
const FIXED_MAINLINE: (u32, u32) = (6, 6);

/// The verdict for this kernel: its upstream version from /proc/version.
pub fn single_step() -> SingleStep {
    if !cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        return SingleStep::Safe(format!(
            "{NAME} resumes over a breakpoint without a single step"
        ));
    }
    let proc_version = fs::read_to_string("/proc/version").unwrap_or_default();
    single_step_for(&proc_version)
}

/// The upstream version a kernel is built from: Debian's and Ubuntu's
/// releases name their ABI (6.1.0-57-arm64), and /proc/version then says
/// the upstream version after "Debian " (…#1 SMP Debian 6.1.192-3 …);
/// otherwise the release (Linux version 6.12.5 …).
pub fn upstream_version(proc_version: &str) -> Option<(u32, u32, u32)> {
    let words: Vec<&str> = proc_version.split_whitespace().collect();
    let debian = words
        .windows(2)
        .find(|pair| pair[0] == "Debian")
        .and_then(|pair| super::kernel::parse_release(pair[1]));
    let release = words
        .windows(2)
        .find(|pair| pair[0] == "version")
        .and_then(|pair| super::kernel::parse_release(pair[1]));
    debian.or(release)
}

/// [`single_step`] for an arm kernel whose /proc/version is `proc_version`.
pub fn single_step_for(proc_version: &str) -> SingleStep {
    let Some((major, minor, patch)) = upstream_version(proc_version) else {
        return SingleStep::Loops(
            "cannot tell this kernel's version from /proc/version, and arm kernels before 6.6 \
             re-trap forever on a breakpoint with a BPF program (fixed by d11a69873d9a)"
                .to_owned(),
        );
    };
    let version = format!("{major}.{minor}.{patch}");
    if (major, minor) >= FIXED_MAINLINE {
        return SingleStep::Safe(format!(
            "Linux {version} steps over a breakpoint with a BPF program (fixed in 6.6 by d11a69873d9a)"
        ));
    }
    if let Some(&(_, _, first)) = FIXED_IN
        .iter()
        .find(|&&(ma, mi, _)| (ma, mi) == (major, minor))
    {
        if patch >= first {
            return SingleStep::Safe(format!(
                "Linux {version} steps over a breakpoint with a BPF program (d11a69873d9a is in \
                 {major}.{minor}.{first})"
            ));
        }
        return SingleStep::Loops(format!(
            "Linux {version} lacks d11a69873d9a (\"hw_breakpoint: fix single-stepping when using \
             bpf_overflow_handler\", in {major}.{minor}.{first}): a breakpoint with a BPF program \
             would trap on the same instruction forever; upgrade the kernel to {major}.{minor}.{first} \
             or later"
        ));
    }
    SingleStep::Loops(format!(
        "Linux {version} is not known to have d11a69873d9a (\"hw_breakpoint: fix single-stepping \
         when using bpf_overflow_handler\": 6.6, 6.5.5, 6.1.55, 5.15.133, 5.10.197): without it a breakpoint \
         with a BPF program traps on the same instruction forever; use one of those kernels or later"
    ))
}

/// A kernel on which an armed breakpoint would trap forever: hwbp-trace
/// refuses before it opens any.
#[derive(Debug, thiserror::Error)]
#[error("refusing to arm any breakpoint: {0}")]
pub struct LoopingKernel(pub String);

/// Fails on a kernel whose [`single_step`] verdict is that it loops.
pub fn refuse_looping_kernel() -> Result<(), LoopingKernel> {
    match single_step() {
        SingleStep::Safe(_) => Ok(()),
        SingleStep::Loops(reason) => Err(LoopingKernel(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_kernels_name_their_upstream_version() {
        let debian = "Linux version 6.1.0-57-arm64 (debian-kernel@lists.debian.org) (gcc-12 (Debian \
                      12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP Debian \
                      6.1.192-3 (2025-11-20)";
        assert_eq!(upstream_version(debian), Some((6, 1, 192)));
        let plain = "Linux version 6.12.5 (root@host) (gcc 13) #1 SMP PREEMPT";
        assert_eq!(upstream_version(plain), Some((6, 12, 5)));
    }

    #[test]
    fn versions_with_and_without_the_fix() {
        let verdict =
            |version: &str| single_step_for(&format!("Linux version {version} (x) #1 SMP"));
        for safe in [
            "6.6.0", "6.12.118", "6.1.55", "6.1.192", "6.5.5", "5.15.133", "5.10.197",
        ] {
            assert!(matches!(verdict(safe), SingleStep::Safe(_)), "{safe}");
        }
        for loops in [
            "6.1.54", "6.1.38", "5.15.132", "6.5.4", "6.4.16", "5.10.196", "5.4.280",
        ] {
            assert!(matches!(verdict(loops), SingleStep::Loops(_)), "{loops}");
        }
        let SingleStep::Loops(reason) = verdict("6.1.38") else {
            unreachable!("checked above")
        };
        assert!(
            reason.contains("d11a69873d9a") && reason.contains("6.1.55"),
            "{reason}"
        );
        assert!(matches!(single_step_for(""), SingleStep::Loops(_)));
    }
}

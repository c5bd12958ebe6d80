//! The checks of `hwbp-trace doctor`, each made by trying where trying is
//! possible: privileges, the kernel, BPF and BTF, kernel targets, sysctls
//! and the debug registers.

use std::{fs, sync::atomic::AtomicU64};

use perf_event_open_sys as sys;

use super::Check;
use crate::{
    host::{
        arch::{self as host_arch, MAX_DEBUG_REGISTERS},
        caps::{CAP_BPF, CAP_PERFMON, has_cap, missing_capabilities, parse_cap_eff},
        cpus,
        kernel::{ConfigOption, KernelConfig, parse_release, release},
    },
    probe::arm,
    probe::load::{DEFAULT_BUFFER_SIZE, Filters, Probe},
    target::resolve::{Kallsyms, SymbolKind},
};

/// The BPF ring buffer map type appeared in Linux 5.8.
pub(super) const RINGBUF_VERSION: (u32, u32, u32) = (5, 8, 0);

/// Kernel functions tried for the execute-breakpoint probe: harmless system
/// call entries that kprobes can normally probe.
pub(super) const KERNEL_FUNCTIONS: &[&str] = &[
    "__x64_sys_getpgid",
    "__arm64_sys_getpgid",
    "__se_sys_getpgid",
    "vfs_read",
];

/// Well-known kernel variables: listed in /proc/kallsyms only with
/// CONFIG_KALLSYMS_ALL.
pub(super) const KERNEL_VARIABLES: &[&str] = &["pid_max", "jiffies_64", "jiffies"];

/// Addresses for counting free debug registers: one watchpoint each, never
/// written while watched.
pub(super) static REGISTER_PROBES: [AtomicU64; MAX_DEBUG_REGISTERS] =
    [const { AtomicU64::new(0) }; MAX_DEBUG_REGISTERS];

pub(super) fn privileges() -> Check {
    const NAME: &str = "privileges";
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let who = if euid == 0 {
        "root (euid 0)".to_owned()
    } else {
        format!("euid {euid}")
    };
    let caps = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s));
    let Some(caps) = caps else {
        return if euid == 0 {
            Check::ok(
                NAME,
                format!("{who}; /proc/self/status shows no capabilities, assuming full root"),
            )
        } else {
            Check::fail(
                NAME,
                format!("{who} and capabilities unknown"),
                "run as root (sudo hwbp-trace ...)",
            )
        };
    };
    let missing = missing_capabilities(caps);
    if missing.is_empty() {
        let how = if has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON) {
            "CAP_BPF, CAP_PERFMON and CAP_SYSLOG effective"
        } else {
            "CAP_SYS_ADMIN (covering CAP_BPF and CAP_PERFMON) and CAP_SYSLOG effective"
        };
        Check::ok(NAME, format!("{who}; {how}"))
    } else {
        Check::fail(
            NAME,
            format!("{who}; missing {}", missing.join(", ")),
            "run as root (sudo hwbp-trace ...), or grant them: \
             sudo setcap cap_bpf,cap_perfmon,cap_syslog+ep $(command -v hwbp-trace)",
        )
    }
}

pub(super) fn kernel_version() -> Check {
    const NAME: &str = "kernel version";
    let release = release();
    match parse_release(&release) {
        Some(version) if version >= RINGBUF_VERSION => Check::ok(
            NAME,
            format!(
                "Linux {release} ({}.{} or later has BPF ring buffers)",
                RINGBUF_VERSION.0, RINGBUF_VERSION.1
            ),
        ),
        Some(_) => Check::fail(
            NAME,
            format!(
                "Linux {release} is older than {}.{}, which brought BPF ring buffers",
                RINGBUF_VERSION.0, RINGBUF_VERSION.1
            ),
            "upgrade the kernel to 5.8 or later",
        ),
        None => Check::warn(
            NAME,
            format!("cannot read the kernel version from /proc/sys/kernel/osrelease (`{release}`)"),
            "the BPF ring buffer check below tells whether the kernel is recent enough",
        ),
    }
}

// ---------------------------------------------------------------- BPF, BTF

pub(super) fn ring_buffer(privileged: bool) -> Check {
    const NAME: &str = "BPF ring buffer";
    match Probe::load(
        &[],
        &[],
        &Filters::default(),
        u64::from(DEFAULT_BUFFER_SIZE),
    ) {
        Ok(_) => Check::ok(
            NAME,
            format!(
                "the hwbp BPF program loaded, with a ring buffer of {} MiB",
                DEFAULT_BUFFER_SIZE >> 20
            ),
        ),
        Err(e) if !privileged => Check::fail(NAME, format!("{e}"), "see privileges above"),
        Err(e) => Check::fail(
            NAME,
            format!("{e}"),
            "hwbp needs the bpf() system call (CONFIG_BPF_SYSCALL) and ring buffers (Linux 5.8)",
        ),
    }
}

pub(super) fn btf() -> Check {
    const NAME: &str = "BTF";
    if fs::metadata(crate::target::btf::VMLINUX).is_ok() {
        Check::ok(
            NAME,
            format!(
                "{}: kernel function arguments get names and types; watched kernel variables their C type only where BTF lists them (usually per-CPU variables only)",
                crate::target::btf::VMLINUX
            ),
        )
    } else {
        Check::warn(
            NAME,
            format!(
                "no {}: kernel arguments show as raw registers, values as numbers",
                crate::target::btf::VMLINUX
            ),
            "optional; a kernel built with CONFIG_DEBUG_INFO_BTF=y names them",
        )
    }
}

// ------------------------------------------------------ raw breakpoint probes
// (opened with arm::open_disabled)

/// `EINVAL`, `EPERM`, …: the errno's name as the kernel's headers spell it.
pub(super) fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ENODEV => "ENODEV",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return std::io::Error::from_raw_os_error(errno).to_string(),
    };
    format!("{name}: {}", std::io::Error::from_raw_os_error(errno))
}

// ---------------------------------------------------------- kernel functions

pub(super) fn kernel_functions(
    config: &KernelConfig,
    kallsyms: Option<&Kallsyms>,
    cpu: u32,
) -> (Check, Option<bool>) {
    const NAME: &str = "kernel functions";
    let described = config.describe("CONFIG_KPROBES");
    let target = kallsyms.and_then(|k| {
        KERNEL_FUNCTIONS.iter().find_map(|name| {
            k.lookup(name)
                .into_iter()
                .find(|s| s.kind == SymbolKind::Function && s.module.is_none())
                .map(|s| (*name, s.addr))
        })
    });
    let Some((name, addr)) = target else {
        return (
            Check::warn(
                NAME,
                format!("{described}; no test function found in /proc/kallsyms to try"),
                "run as root so /proc/kallsyms shows addresses",
            ),
            None,
        );
    };
    let vm = match arm::kernel_data_watchpoint_probe(addr) {
        Ok(()) => {
            "trace kernel variables (`:w`, `:rw`) and user-space code here; for kernel functions use a kernel \
             with CONFIG_KPROBES=y (`cargo xtask vm` boots one)"
        }
        Err(_) => {
            "this host refuses kernel data watchpoints too (below): trace user-space code here, and kernel \
             targets in a VM (`cargo xtask vm`)"
        }
    };
    match arm::open_disabled(addr, sys::bindings::HW_BREAKPOINT_X, 8, -1, cpu as i32) {
        Ok(fd) => {
            drop(fd);
            (
                Check::ok(
                    NAME,
                    format!("{described}; a test execute breakpoint on {name} was accepted"),
                ),
                Some(true),
            )
        }
        Err(libc::EINVAL) => {
            let cause = match config.option("CONFIG_KPROBES") {
                ConfigOption::NotSet => {
                    "without kprobes x86 refuses execute breakpoints on all kernel text"
                }
                _ => {
                    "x86 refuses execute breakpoints on code kprobes may not probe (the kprobe blacklist)"
                }
            };
            (
                Check::warn(
                    NAME,
                    format!(
                        "{described}; the kernel refused a test execute breakpoint on {name} (EINVAL): {cause}"
                    ),
                    vm,
                ),
                Some(false),
            )
        }
        Err(errno) => (
            Check::warn(
                NAME,
                format!(
                    "{described}; a test execute breakpoint on {name} failed ({})",
                    errno_name(errno)
                ),
                "see the privileges and debug registers checks",
            ),
            None,
        ),
    }
}

// ---------------------------------------------------------- kernel variables

pub(super) fn kernel_variables(
    config: &KernelConfig,
    kallsyms: Option<&Kallsyms>,
) -> (Check, Option<bool>) {
    const NAME: &str = "kernel variables by name";
    let described = config.describe("CONFIG_KALLSYMS_ALL");
    let Some(kallsyms) = kallsyms else {
        return (
            Check::warn(
                NAME,
                format!("{described}; /proc/kallsyms unreadable or restricted"),
                "run as root",
            ),
            None,
        );
    };
    let found = KERNEL_VARIABLES.iter().find_map(|name| {
        kallsyms
            .lookup(name)
            .into_iter()
            .find(|s| s.module.is_none())
            .map(|s| (*name, s.addr))
    });
    let objects = kallsyms
        .symbols()
        .filter(|s| s.kind == SymbolKind::Object && s.module.is_none())
        .count();
    match found {
        Some((name, addr)) => (
            Check::ok(
                NAME,
                format!(
                    "{described}; /proc/kallsyms lists {name} at {addr:#x} ({objects} data symbols)"
                ),
            ),
            Some(true),
        ),
        None => (
            Check::warn(
                NAME,
                format!(
                    "{described}; /proc/kallsyms lists no variables ({} missing; {objects} data symbols, \
                     section markers only)",
                    KERNEL_VARIABLES.join(", ")
                ),
                "name kernel variables by address (`0xADDRESS:w`, from System.map plus the KASLR offset), or use \
                 a kernel with CONFIG_KALLSYMS_ALL=y (`cargo xtask vm` boots one)",
            ),
            Some(false),
        ),
    }
}

pub(super) fn kernel_data_watchpoints(
    kallsyms: Option<&Kallsyms>,
    cpu: u32,
) -> (Check, Option<bool>) {
    const NAME: &str = "kernel data watchpoints";
    // A data symbol if kallsyms has one (a section marker will do: the
    // watchpoint is opened disabled and never fires), else any kernel symbol.
    let symbol = kallsyms.and_then(|k| {
        let kernel = || k.symbols().filter(|s| s.module.is_none() && s.addr != 0);
        kernel()
            .find(|s| KERNEL_VARIABLES.contains(&s.name))
            .or_else(|| kernel().find(|s| s.kind == SymbolKind::Object))
            .or_else(|| kernel().next())
            .map(|s| (s.name.to_owned(), s.addr & !7))
    });
    let Some((name, addr)) = symbol else {
        return (
            Check::warn(
                NAME,
                "not tried: /proc/kallsyms gives no kernel address",
                "run as root",
            ),
            None,
        );
    };
    match arm::open_disabled(addr, sys::bindings::HW_BREAKPOINT_W, 8, -1, cpu as i32) {
        Ok(fd) => {
            drop(fd);
            (
                Check::ok(
                    NAME,
                    format!("a test write watchpoint at {addr:#x} ({name}) was accepted"),
                ),
                Some(true),
            )
        }
        Err(errno) => (
            Check::warn(
                NAME,
                format!(
                    "a test write watchpoint at {addr:#x} ({name}) was refused ({})",
                    errno_name(errno)
                ),
                match errno {
                    libc::EPERM | libc::EACCES => {
                        "this host's kernel refuses kernel watchpoints even as root: trace user-space targets \
                         here, and kernel variables in a VM (`cargo xtask vm`)"
                    }
                    _ => {
                        "kernel variables cannot be watched on this host: trace them in a VM (`cargo xtask vm`)"
                    }
                },
            ),
            Some(false),
        ),
    }
}

// ------------------------------------------------------------------- sysctls

pub(super) fn read_sysctl(name: &str) -> Option<i64> {
    fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn paranoid(privileged: bool) -> Check {
    const NAME: &str = "perf_event_paranoid";
    let Some(level) = read_sysctl("perf_event_paranoid") else {
        return Check::warn(
            NAME,
            "unreadable (/proc/sys/kernel/perf_event_paranoid)",
            "run as root",
        );
    };
    let meaning = match level {
        i64::MIN..=-1 => "no restrictions for anyone",
        0 => "unprivileged users may not trace system-wide raw events",
        1 => "unprivileged users may trace user and kernel code of their own processes",
        2 => "unprivileged users may trace only the user space of their own processes",
        _ => "unprivileged users may not open perf events at all",
    };
    if privileged {
        Check::ok(
            NAME,
            format!("{level}: {meaning}; root and CAP_PERFMON are not limited by it"),
        )
    } else {
        Check::warn(
            NAME,
            format!("{level}: {meaning}"),
            "hwbp also needs CAP_BPF for its program: run as root rather than lowering this",
        )
    }
}

pub(super) fn sample_rate(config: &KernelConfig) -> Check {
    const NAME: &str = "perf_event_max_sample_rate";
    let Some(rate) = read_sysctl("perf_event_max_sample_rate") else {
        return Check::warn(
            NAME,
            "unreadable (/proc/sys/kernel/perf_event_max_sample_rate)",
            "run as root",
        );
    };
    let hz = match config.option("CONFIG_HZ") {
        ConfigOption::Set(value) => value.parse::<i64>().ok(),
        _ => None,
    };
    let per_tick = match hz {
        // max_samples_per_tick = DIV_ROUND_UP(rate, HZ) (kernel/events/core.c).
        Some(hz) if hz > 0 => format!(
            " ({} per tick at HZ={hz})",
            (rate.max(0) as u64).div_ceil(hz as u64)
        ),
        _ => String::new(),
    };
    // Breakpoints are not throttled: a sample period of 1 makes every hit a
    // first overflow, which perf_swevent_overflow never throttles (tested:
    // tests/tests/counting.rs, low_max_sample_rate_does_not_throttle_breakpoints).
    // The limit still governs other perf users, and hwbp would show any
    // throttled hit as `missed` (the events' own counts against BPF's).
    Check::ok(
        NAME,
        format!(
            "{rate} samples per second{per_tick}: does not limit breakpoints (period 1 is never throttled); \
             any hit the kernel counts but BPF does not see is reported as `missed`"
        ),
    )
}

// ------------------------------------------------------------ debug registers

/// Takes free debug registers on one CPU (disabled write watchpoints, bound
/// to the CPU like a system-wide trace) until the kernel says none is left.
pub(super) fn free_registers_on(cpu: u32) -> Result<usize, i32> {
    free_of_kind_on(cpu, false)
}

/// [`free_registers_on`] for watchpoints, or for execute breakpoints (at
/// the self-test's function) where they have registers of their own.
fn free_of_kind_on(cpu: u32, execute: bool) -> Result<usize, i32> {
    let mut held = Vec::with_capacity(MAX_DEBUG_REGISTERS);
    for slot in &REGISTER_PROBES {
        let (addr, kind, len) = if execute {
            let function = super::self_test::hwbp_doctor_target as *const () as u64;
            (function, sys::bindings::HW_BREAKPOINT_X, 4)
        } else {
            (slot.as_ptr() as u64, sys::bindings::HW_BREAKPOINT_W, 8)
        };
        match arm::open_disabled(addr, kind, len, -1, cpu as i32) {
            Ok(fd) => held.push(fd),
            Err(libc::ENOSPC) => break,
            Err(errno) => return Err(errno),
        }
    }
    Ok(held.len())
}

pub(super) fn debug_registers() -> Check {
    const NAME: &str = "debug registers";
    let cpus = match cpus::online() {
        Ok(cpus) if !cpus.is_empty() => cpus,
        Ok(_) | Err(_) => {
            return Check::fail(
                NAME,
                "cannot read the online CPUs (/sys/devices/system/cpu/online)",
                "is /sys mounted?",
            );
        }
    };
    let mut free = Vec::with_capacity(cpus.len());
    let mut execute = Vec::new();
    for &cpu in &cpus {
        let counted = free_registers_on(cpu).and_then(|n| {
            if host_arch::SEPARATE_POOLS {
                execute.push(free_of_kind_on(cpu, true)?);
            }
            Ok(n)
        });
        match counted {
            Ok(n) => free.push((cpu, n)),
            Err(errno) => {
                let hint = match errno {
                    libc::EACCES | libc::EPERM => "run as root or grant CAP_PERFMON",
                    libc::ENOENT | libc::ENODEV | libc::EOPNOTSUPP => {
                        "this CPU or kernel has no hardware breakpoints (CONFIG_HAVE_HW_BREAKPOINT)"
                    }
                    _ => "see the privileges check",
                };
                return Check::fail(
                    NAME,
                    format!(
                        "cannot open a test watchpoint on CPU {cpu} ({})",
                        errno_name(errno)
                    ),
                    hint,
                );
            }
        }
    }
    let min = free.iter().map(|&(_, n)| n).min().unwrap_or(0);
    if host_arch::SEPARATE_POOLS {
        return separate_pools(min, execute.iter().copied().min().unwrap_or(0), cpus.len());
    }
    let summary = if free.iter().all(|&(_, n)| n == min) {
        format!(
            "{min} of {MAX_DEBUG_REGISTERS} free on each of {} CPUs",
            cpus.len()
        )
    } else {
        let per_cpu: Vec<String> = free
            .iter()
            .map(|(cpu, n)| format!("CPU {cpu}: {n}"))
            .collect();
        format!(
            "free of {MAX_DEBUG_REGISTERS} per CPU: {}",
            per_cpu.join(", ")
        )
    };
    let held = "debuggers (gdb watch/hbreak), perf or another tracer hold the others: stop them to trace more \
                targets at once";
    match min {
        0 => Check::fail(NAME, format!("{summary}; none free"), held),
        n if n < MAX_DEBUG_REGISTERS => {
            Check::warn(NAME, format!("{summary}; up to {n} targets at once"), held)
        }
        n => Check::ok(NAME, format!("{summary}: up to {n} targets at once")),
    }
}

/// The debug registers check where breakpoints and watchpoints have
/// registers of their own (arm64): how many of each the hardware has free
/// (ID_AA64DFR0 says how many it has; the kernel refuses one more with
/// ENOSPC), the fewest on any CPU.
fn separate_pools(watchpoints: usize, breakpoints: usize, cpus: usize) -> Check {
    const NAME: &str = "debug registers";
    let summary = format!(
        "{breakpoints} breakpoints and {watchpoints} watchpoints free on each of {cpus} CPUs \
         ({} has separate registers for each, at most {MAX_DEBUG_REGISTERS})",
        host_arch::NAME
    );
    if watchpoints == 0 || breakpoints == 0 {
        return Check::fail(
            NAME,
            format!("{summary}; none free of a kind"),
            "debuggers (gdb watch/hbreak), perf or another tracer hold them: stop them",
        );
    }
    Check::ok(
        NAME,
        format!("{summary}: up to {breakpoints} execute and {watchpoints} data targets at once"),
    )
}

/// Whether this kernel steps over a breakpoint that has a BPF program
/// (see host::arch): where it would not, every armed breakpoint would trap
/// forever, so hwbp-trace refuses to arm and the self-test is not run.
pub(super) fn single_step() -> Check {
    const NAME: &str = "single step";
    match host_arch::single_step() {
        host_arch::SingleStep::Safe(reason) => Check::ok(NAME, reason),
        host_arch::SingleStep::Loops(reason) => Check::fail(
            NAME,
            reason,
            "hwbp-trace refuses to arm on this kernel: boot a kernel with the fix",
        ),
    }
}

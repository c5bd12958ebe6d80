//! What this host allows, asked of the kernel directly, without hwbp.
//!
//! Hosts of the same kind differ (docs/platform.md): one accepts kernel
//! data watchpoints, another refuses them with EPERM even as root; a
//! debugger or another tracer may hold debug registers. A test whose answer
//! depends on such a fact asks here first, with its own perf_event_open,
//! and then checks that hwbp-trace says the same, for either answer.

use std::{
    fs,
    os::fd::{FromRawFd as _, OwnedFd},
};

use perf_event_open_sys::bindings::{
    HW_BREAKPOINT_W, HW_BREAKPOINT_X, PERF_TYPE_BREAKPOINT, perf_event_attr,
};

/// x86 debug registers per CPU (DR0-DR3).
pub const DEBUG_REGISTERS: usize = 4;

/// A kernel function every x86_64 kernel has, for the execute probe.
pub const KERNEL_FUNCTION: &str = "__x64_sys_getpgid";

/// The kernel's symbols as /proc/kallsyms lists them (name, address),
/// core kernel only.
fn kallsyms() -> Vec<(String, u64, char)> {
    let text = fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
    text.lines()
        .filter(|l| !l.contains('['))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?.chars().next()?;
            Some((f.next()?.to_owned(), addr, kind))
        })
        .collect()
}

/// The address of a core-kernel symbol, if /proc/kallsyms lists it.
pub fn kernel_symbol(name: &str) -> Option<u64> {
    kallsyms()
        .into_iter()
        .find(|(n, addr, _)| n == name && *addr != 0)
        .map(|(_, addr, _)| addr)
}

/// Whether /proc/kallsyms names kernel variables (CONFIG_KALLSYMS_ALL):
/// `pid_max` is in every kernel.
pub fn kallsyms_lists_variables() -> bool {
    kernel_symbol("pid_max").is_some()
}

/// A kernel data address to watch: a variable where kallsyms lists them,
/// else the start of read-only data, a section marker every kernel has.
pub fn kernel_data_address() -> u64 {
    ["pid_max", "__start_rodata", "_sdata", "_stext"]
        .iter()
        .find_map(|name| kernel_symbol(name))
        .expect("/proc/kallsyms gives no kernel address: run as root")
        & !7
}

/// Opens a disabled breakpoint event and closes it: Ok when the kernel
/// accepts it, else the errno.
pub fn try_breakpoint(addr: u64, bp_type: u32, pid: i32, cpu: i32) -> Result<(), i32> {
    open(addr, bp_type, pid, cpu).map(drop)
}

fn open(addr: u64, bp_type: u32, pid: i32, cpu: i32) -> Result<OwnedFd, i32> {
    let mut attr = perf_event_attr {
        type_: PERF_TYPE_BREAKPOINT,
        size: size_of::<perf_event_attr>() as u32,
        bp_type,
        ..perf_event_attr::default()
    };
    attr.__bindgen_anon_1.sample_period = 1;
    attr.__bindgen_anon_3.bp_addr = addr;
    attr.__bindgen_anon_4.bp_len = 8;
    attr.set_disabled(1);
    // SAFETY: perf_event_open reads `attr`, which outlives the call.
    let fd = unsafe { perf_event_open_sys::perf_event_open(&mut attr, pid, cpu, -1, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether this kernel takes an execute breakpoint on kernel text (CPU 0).
pub fn kernel_execute_breakpoints() -> Result<(), i32> {
    let addr = kernel_symbol(KERNEL_FUNCTION)
        .unwrap_or_else(|| panic!("/proc/kallsyms has no {KERNEL_FUNCTION}"));
    try_breakpoint(addr, HW_BREAKPOINT_X, -1, 0)
}

/// Whether this kernel takes a write watchpoint on kernel data (CPU 0).
pub fn kernel_data_watchpoints() -> Result<(), i32> {
    try_breakpoint(kernel_data_address(), HW_BREAKPOINT_W, -1, 0)
}

/// Free debug registers on each online CPU, found by taking them (disabled
/// watchpoints bound to the CPU) until the kernel says none is left.
pub fn free_debug_registers() -> Vec<usize> {
    static SLOTS: [u64; DEBUG_REGISTERS] = [0; DEBUG_REGISTERS];
    online_cpus()
        .into_iter()
        .map(|cpu| {
            let mut held = Vec::new();
            for slot in &SLOTS {
                match open(slot as *const u64 as u64, HW_BREAKPOINT_W, -1, cpu) {
                    Ok(fd) => held.push(fd),
                    Err(libc::ENOSPC) => break,
                    Err(errno) => panic!("a test watchpoint on CPU {cpu}: errno {errno}"),
                }
            }
            held.len()
        })
        .collect()
}

fn online_cpus() -> Vec<i32> {
    let text = fs::read_to_string("/sys/devices/system/cpu/online")
        .expect("reading /sys/devices/system/cpu/online");
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(
                a.parse::<i32>().expect("a CPU number")..=b.parse::<i32>().expect("a CPU number"),
            ),
            None => cpus.push(part.parse().expect("a CPU number")),
        }
    }
    cpus
}

/// `perror`-style name of an errno, as hwbp-trace's messages give it.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOENT => "ENOENT",
        libc::ENODEV => "ENODEV",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => "another error",
    }
}

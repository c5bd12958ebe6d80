//! Kernel workload fixture for the VM tests (`cargo xtask test`): makes a
//! known number of kernel-side events, so that a trace can be checked
//! against ground truth.
//!
//! - `getpgid N`: N getpgid(0) system calls (each enters __x64_sys_getpgid
//!   once). Prints `getpgid called N times in T ns` (the calls alone).
//! - `count-getpgid ADDR N`: the same under a counting execute breakpoint on
//!   the kernel address ADDR (hex) on every CPU, without BPF or sampling:
//!   what the debug exceptions alone cost (the benchmark's floor). Prints
//!   `getpgid called N times in T ns, counted C`, C summed over the CPUs.
//!   System-wide rather than for this thread: a per-task perf event makes
//!   the kernel patch a static key in and out, which a guest with a host
//!   thread per vCPU may not survive (xtask/src/vm/).
//! - `pidmax N`: N writes to /proc/sys/kernel/pid_max, each a single store to
//!   the kernel variable pid_max; the first N-1 write distinct new values, the
//!   last restores the original. Prints `wrote VALUE` for each, in order.
//! - `read-pidmax N`: N reads of /proc/sys/kernel/pid_max, each a single load
//!   of pid_max (one read(2) per open: the kernel does not touch the variable
//!   for a read at a non-zero offset). Prints `read VALUE` for each.
//! - `read-as COMM PATH N`: renames this task to COMM (prctl PR_SET_NAME,
//!   after the dynamic loader's and the runtime's own reads), then N times
//!   opens PATH and makes one read(2) of up to 4000 bytes into one buffer:
//!   exactly N calls of vfs_read by a task named COMM. Prints `buf ADDR
//!   count 4000` first, then `read BYTES` for each.
//! - `read-after FIRST COMM PATH N`: `read-as COMM PATH N`, but first, on
//!   the CPU it then stays on, one read(2) of PATH (1 byte) as FIRST: a
//!   vfs_read by a task of another name right before the N, on their CPU.
//!   Prints what read-as prints (not the read as FIRST).
//!
//! std only (plus libc for the raw system calls and perf-event-open-sys for
//! the breakpoint's attributes): nothing else runs in the fixture that could
//! touch these kernel objects.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::ExitCode,
    time::{Duration, Instant},
};

const PID_MAX: &str = "/proc/sys/kernel/pid_max";

/// N getpgid(0) calls; how long they took.
fn call_getpgid(count: u64) -> Result<Duration, String> {
    let start = Instant::now();
    for _ in 0..count {
        // SAFETY: getpgid(0) takes no pointers and only reads the caller's
        // process group; the raw syscall bypasses any libc caching.
        let rc = unsafe { libc::syscall(libc::SYS_getpgid, 0) };
        if rc < 0 {
            return Err(format!("getpgid: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(start.elapsed())
}

fn getpgid(count: u64) -> Result<(), String> {
    let took = call_getpgid(count)?;
    println!("getpgid called {count} times in {} ns", took.as_nanos());
    Ok(())
}

/// getpgid under a counting execute breakpoint on `addr` (this thread, any
/// CPU): no BPF program, no samples, only the debug exceptions.
fn count_getpgid(addr: u64, count: u64) -> Result<(), String> {
    use perf_event_open_sys::bindings::{HW_BREAKPOINT_X, PERF_TYPE_BREAKPOINT, perf_event_attr};
    let mut attr = perf_event_attr {
        type_: PERF_TYPE_BREAKPOINT,
        size: size_of::<perf_event_attr>() as u32,
        bp_type: HW_BREAKPOINT_X,
        ..perf_event_attr::default()
    };
    attr.__bindgen_anon_3.bp_addr = addr;
    attr.__bindgen_anon_4.bp_len = size_of::<libc::c_long>() as u64;
    attr.set_disabled(1);
    attr.set_exclude_hv(1);
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as i32;
    let mut events = Vec::new();
    for cpu in 0..cpus {
        // SAFETY: perf_event_open reads `attr`, which outlives the call.
        let fd = unsafe { perf_event_open_sys::perf_event_open(&mut attr, -1, cpu, -1, 0) };
        if fd < 0 {
            return Err(format!(
                "perf_event_open (an execute breakpoint at {addr:#x} on CPU {cpu}): {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `fd` was just opened and is owned here alone.
        events.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    for fd in &events {
        // SAFETY: ioctls on our own perf event descriptors.
        unsafe { perf_event_open_sys::ioctls::ENABLE(fd.as_raw_fd(), 0) };
    }
    let took = call_getpgid(count)?;
    let mut total = 0;
    for fd in events {
        // SAFETY: as above.
        unsafe { perf_event_open_sys::ioctls::DISABLE(fd.as_raw_fd(), 0) };
        let mut counted = [0u8; 8];
        File::from(fd)
            .read_exact(&mut counted)
            .map_err(|e| format!("reading the breakpoint's count: {e}"))?;
        total += u64::from_ne_bytes(counted);
    }
    println!(
        "getpgid called {count} times in {} ns, counted {total}",
        took.as_nanos()
    );
    Ok(())
}

/// One open and one read(2): exactly one load of pid_max in the kernel.
fn read_pid_max() -> Result<u64, String> {
    let mut file = File::open(PID_MAX).map_err(|e| format!("opening {PID_MAX}: {e}"))?;
    let mut buffer = [0u8; 32];
    let n = file
        .read(&mut buffer)
        .map_err(|e| format!("reading {PID_MAX}: {e}"))?;
    let text = std::str::from_utf8(&buffer[..n]).map_err(|e| format!("{PID_MAX}: {e}"))?;
    text.trim()
        .parse()
        .map_err(|e| format!("{PID_MAX} holds {text:?}: {e}"))
}

/// One open and one write(2): exactly one store to pid_max in the kernel.
fn write_pid_max(value: u64) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(PID_MAX)
        .map_err(|e| format!("opening {PID_MAX} for writing (root?): {e}"))?;
    file.write_all(format!("{value}\n").as_bytes())
        .map_err(|e| format!("writing {value} to {PID_MAX}: {e}"))
}

fn pidmax(count: u64) -> Result<(), String> {
    if count == 0 {
        return Ok(());
    }
    let original = read_pid_max()?;
    // Distinct values in pid_max's range (301..=4194304), none the original.
    let mut values: Vec<u64> = (0..count - 1)
        .map(|i| 100_000 + 7 * i)
        .map(|v| if v == original { v + 3 } else { v })
        .collect();
    values.push(original);
    for value in values {
        write_pid_max(value)?;
        println!("wrote {value}");
    }
    Ok(())
}

fn read_pidmax(count: u64) -> Result<(), String> {
    for _ in 0..count {
        let value = read_pid_max()?;
        println!("read {value}");
    }
    Ok(())
}

/// The buffer size of `read-as`: not a power of two, so that a vfs_read
/// hit with this `count` is recognisably the fixture's.
const READ_AS_COUNT: usize = 4000;

fn read_as(comm: &str, path: &str, count: u64) -> Result<(), String> {
    rename(comm)?;
    let mut buffer = vec![0u8; READ_AS_COUNT];
    println!("buf {:#x} count {READ_AS_COUNT}", buffer.as_ptr() as usize);
    for _ in 0..count {
        let mut file = File::open(path).map_err(|e| format!("opening {path}: {e}"))?;
        // One read(2), whatever it returns: one vfs_read call.
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("reading {path}: {e}"))?;
        println!("read {n}");
    }
    Ok(())
}

/// Renames this task (prctl PR_SET_NAME).
fn rename(comm: &str) -> Result<(), String> {
    let name = std::ffi::CString::new(comm).map_err(|e| format!("COMM {comm:?}: {e}"))?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes
    // (the kernel truncates longer ones) through the pointer, which `name`
    // keeps alive for the call.
    if unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) } != 0 {
        return Err(format!(
            "prctl(PR_SET_NAME, {comm:?}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// One read as `first`, then read-as `comm`, all on one CPU: a BPF program
/// that keeps per-CPU state (hwbp's comm buffer) sees the read as `first`
/// right before the others.
fn read_after(first: &str, comm: &str, path: &str, count: u64) -> Result<(), String> {
    // SAFETY: sched_getcpu has no preconditions; a negative result is an
    // error, checked below.
    let cpu = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(cpu)
        .map_err(|_| format!("sched_getcpu: {}", std::io::Error::last_os_error()))?;
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it
    // (cpu is below CPU_SETSIZE on any machine the tests boot), and
    // sched_setaffinity reads it for the call only.
    let pinned = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if pinned != 0 {
        return Err(format!(
            "sched_setaffinity (CPU {cpu}): {}",
            std::io::Error::last_os_error()
        ));
    }
    rename(first)?;
    let mut byte = [0u8; 1];
    File::open(path)
        .and_then(|mut file| file.read(&mut byte))
        .map_err(|e| format!("reading {path} as {first}: {e}"))?;
    read_as(comm, path, count)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: fx_kernel getpgid N | count-getpgid ADDR N | pidmax N | read-pidmax N \
                 | read-as COMM PATH N | read-after FIRST COMM PATH N";
    if let [command, comm, path, count] = args.as_slice()
        && command == "read-as"
    {
        let result = match count.parse::<u64>() {
            Ok(count) => read_as(comm, path, count),
            Err(e) => Err(format!("N {count:?}: {e}\n{usage}")),
        };
        return exit_code(result);
    }
    if let [command, first, comm, path, count] = args.as_slice()
        && command == "read-after"
    {
        let result = match count.parse::<u64>() {
            Ok(count) => read_after(first, comm, path, count),
            Err(e) => Err(format!("N {count:?}: {e}\n{usage}")),
        };
        return exit_code(result);
    }
    if let [command, addr, count] = args.as_slice()
        && command == "count-getpgid"
    {
        let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16);
        let result = match (addr, count.parse::<u64>()) {
            (Ok(addr), Ok(count)) => count_getpgid(addr, count),
            _ => Err(format!("ADDR (hex) and N expected\n{usage}")),
        };
        return exit_code(result);
    }
    let (command, count) = match args.as_slice() {
        [command, count] => match count.parse::<u64>() {
            Ok(count) => (command.as_str(), count),
            Err(e) => {
                eprintln!("fx_kernel: N {count:?}: {e}\n{usage}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        "getpgid" => getpgid(count),
        "pidmax" => pidmax(count),
        "read-pidmax" => read_pidmax(count),
        _ => {
            eprintln!("fx_kernel: unknown command {command:?}\n{usage}");
            return ExitCode::from(2);
        }
    };
    exit_code(result)
}

/// A command's exit: 0, or 1 after its message on stderr.
fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fx_kernel: {message}");
            ExitCode::FAILURE
        }
    }
}

//! The doctor's self-test: hwbp-trace traces a function and a variable of
//! its own, called and written an exact number of times, and judges what
//! it saw, telling a spoiled run on a host that loses debug exceptions from
//! a failure of its own.

use std::{
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use super::Check;
use crate::{
    probe::arm::{Armed, Scope},
    probe::load::{DEFAULT_BUFFER_SIZE, Filters, Probe, StackChoice},
    target::resolve::{Breakpoint, ProcessImage, Resolver, SymbolKind},
    target::{Mode, TargetSpec},
};

/// Calls (and writes) the self-test expects to see, exactly.
pub const SELF_TEST_CALLS: u64 = 1000;

/// The self-test's execute target: called [`SELF_TEST_CALLS`] times with
/// its index, which the BPF program records from rdi.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn hwbp_doctor_target(i: u64) -> u64 {
    black_box(i).wrapping_mul(3)
}

/// The self-test's write target.
#[unsafe(no_mangle)]
pub static HWBP_DOCTOR_COUNTER: AtomicU64 = AtomicU64::new(0);

// ------------------------------------------------------------------ self-test

pub(super) fn gettid() -> i32 {
    // SAFETY: the gettid system call takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// How a self-test target was found by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// `hwbp::target::resolve` found it at the address the compiler knows.
    Exact,
    /// Not found (a stripped executable): armed by address.
    NotFound(String),
    /// Found at another address: a resolution bug. Armed at the true address
    /// so that the host is still tested.
    Wrong { resolved: u64 },
}

/// A user target on a symbol of hwbp-trace itself, resolved through the
/// library as any user target is, but always armed at the address the
/// compiler knows: the self-test checks the host, the resolution is
/// reported on its own line.
pub(super) fn resolve_self(
    resolver: &mut Resolver,
    name: &str,
    addr: u64,
    mode: Mode,
) -> Result<(Breakpoint, Resolution), String> {
    let spec: TargetSpec = format!("{name}:{mode}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let fallback = |spec: TargetSpec| Breakpoint {
        spec,
        symbol: name.to_owned(),
        object: None,
        kind: if mode == Mode::Execute {
            SymbolKind::Function
        } else {
            SymbolKind::Object
        },
        addr,
        mode,
        len: 8,
        space: crate::target::resolve::Space::User,
        at_entry: mode == Mode::Execute,
        field: None,
    };
    Ok(match resolver.resolve(&spec) {
        Ok(bp) if bp.addr == addr => (bp, Resolution::Exact),
        Ok(bp) => (
            Breakpoint { addr, ..bp },
            Resolution::Wrong { resolved: bp.addr },
        ),
        Err(e) => (fallback(spec), Resolution::NotFound(e.to_string())),
    })
}

/// Result of [`run_self_test`]: hits per target as recorded and counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfTest {
    pub calls: u64,
    /// Ring-buffer records of the execute target, its counter, and whether
    /// the records carried the call index in order.
    pub execute_records: u64,
    pub execute_counted: u64,
    pub execute_in_order: bool,
    /// The same for the write target (value after each write in order).
    pub write_records: u64,
    pub write_counted: u64,
    pub write_in_order: bool,
    pub dropped: u64,
    /// How each target (execute, write) was found by name, with its name
    /// and true address.
    pub resolution: Vec<(&'static str, u64, Resolution)>,
    pub elapsed: Duration,
    /// SIGTRAPs the calling thread got while armed (see [`SigtrapCounter`]).
    pub sigtraps: u64,
}

/// SIGTRAPs counted by [`SigtrapCounter`].
pub(super) static SIGTRAPS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_sigtrap(_: libc::c_int) {
    SIGTRAPS.fetch_add(1, Ordering::Relaxed);
}

/// While it lives, a SIGTRAP is counted instead of ending hwbp-trace.
///
/// The kernel sends one to a thread that takes a debug exception whose cause
/// it cannot find: DR6 shows no breakpoint (exc_debug_user takes it for an
/// `int1` instruction). Some KVM hosts deliver breakpoint hits that way now
/// and then; no perf event counts them. Returning from the handler goes on:
/// an execute breakpoint traps again (it is a fault), a write's hit is lost.
pub(super) struct SigtrapCounter {
    old: libc::sigaction,
}

impl SigtrapCounter {
    fn install() -> Result<Self, String> {
        SIGTRAPS.store(0, Ordering::Relaxed);
        // SAFETY: zeroed sigactions are valid; the handler has the plain
        // signature (no SA_SIGINFO) and only does an atomic add.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = count_sigtrap as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGTRAP, &action, &mut old) != 0 {
                return Err(format!(
                    "cannot install a SIGTRAP handler: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(Self { old })
        }
    }

    fn count(&self) -> u64 {
        SIGTRAPS.load(Ordering::Relaxed)
    }
}

impl Drop for SigtrapCounter {
    fn drop(&mut self) {
        // SAFETY: restores the disposition sigaction returned.
        unsafe { libc::sigaction(libc::SIGTRAP, &self.old, std::ptr::null_mut()) };
    }
}

/// Arms an execute breakpoint on [`hwbp_doctor_target`] and a write
/// watchpoint on [`HWBP_DOCTOR_COUNTER`] for this thread, calls and writes
/// `calls` times, and counts what arrives.
pub fn run_self_test(calls: u64) -> Result<SelfTest, String> {
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() };
    let tid = gettid();
    let image = ProcessImage::open(pid).map_err(|e| format!("{e}"))?;
    let mut resolver = Resolver::new(Some(image));
    let function = hwbp_doctor_target as extern "C" fn(u64) -> u64 as usize as u64;
    let counter = HWBP_DOCTOR_COUNTER.as_ptr() as u64;
    let (execute, execute_found) =
        resolve_self(&mut resolver, "hwbp_doctor_target", function, Mode::Execute)?;
    let (write, write_found) =
        resolve_self(&mut resolver, "HWBP_DOCTOR_COUNTER", counter, Mode::Write)?;
    let breakpoints = [execute, write];
    let no_stacks = StackChoice {
        kernel: false,
        user: false,
    };
    let mut probe = Probe::load(
        &breakpoints,
        &[no_stacks; 2],
        &Filters::default(),
        u64::from(DEFAULT_BUFFER_SIZE),
    )
    .map_err(|e| format!("{e}"))?;
    // The ring buffer is registered with tokio; nothing here awaits, the
    // reactor only has to exist.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let _enter = runtime.enter();
    let mut events = probe.events().map_err(|e| format!("{e}"))?;
    let scope = Scope::Process {
        pid,
        tids: vec![tid],
    };
    let program = probe.program_fd().map_err(|e| format!("{e}"))?;
    let sigtraps = SigtrapCounter::install()?;
    let mut armed = Armed::arm(&breakpoints, &scope, program).map_err(|e| format!("{e}"))?;
    let start = Instant::now();
    for i in 0..calls {
        black_box(hwbp_doctor_target(black_box(i)));
        HWBP_DOCTOR_COUNTER.store(i + 1, Ordering::Relaxed);
    }
    let elapsed = start.elapsed();
    armed.disarm();
    drop(armed);
    let sigtrap_count = sigtraps.count();
    drop(sigtraps);
    let mut batch = crate::probe::load::Batch::default();
    while !events.drain(&mut batch, usize::MAX) {}
    let counters = probe.counters();
    let ours = |slot: u32| {
        batch
            .hits()
            .iter()
            .filter(move |h| h.slot == slot && h.tid as i32 == tid)
    };
    let execute_in_order =
        ours(0).map(|h| h.args[0]).eq(0..calls) && ours(0).all(|h| h.ip == function);
    // A watchpoint that traps before the access (arm64) sees each write's
    // old value: 0..calls rather than 1..=calls.
    let first = u64::from(!crate::host::arch::TRAPS_BEFORE_ACCESS);
    let write_in_order = ours(1).map(|h| h.value).eq(first..first + calls);
    Ok(SelfTest {
        calls,
        execute_records: ours(0).count() as u64,
        execute_counted: counters.first().map_or(0, |c| c.hits),
        execute_in_order,
        write_records: ours(1).count() as u64,
        write_counted: counters.get(1).map_or(0, |c| c.hits),
        write_in_order,
        dropped: counters.iter().map(|c| c.dropped).sum(),
        resolution: vec![
            ("hwbp_doctor_target", function, execute_found),
            ("HWBP_DOCTOR_COUNTER", counter, write_found),
        ],
        elapsed,
        sigtraps: sigtrap_count,
    })
}

/// Runs the self-test and judges it (see [`judge_self_test`]).
pub(super) fn self_test() -> Vec<Check> {
    const NAME: &str = "self-test";
    let mut faults = Vec::new();
    loop {
        let test = match run_self_test(SELF_TEST_CALLS) {
            Ok(test) => test,
            Err(e) => {
                return vec![Check::fail(
                    NAME,
                    format!("could not arm a user-space breakpoint on hwbp-trace itself: {e}"),
                    "fix the checks marked `fail` above",
                )];
            }
        };
        match host_fault(&test) {
            Some(fault) if faults.len() + 1 < SELF_TEST_ATTEMPTS => faults.push(fault),
            _ => return judge_self_test(test, &faults),
        }
    }
}

/// Runs of the self-test, at most: the last is judged. A run the host
/// spoiled (see [`host_fault`]) is run again, so that on such a host the
/// self-test still shows whether hwbp itself records every hit, and a
/// `warn` line says what the host lost. How often a host that loses debug
/// exceptions spoils one run is measured in docs/limitations.md.
pub(super) const SELF_TEST_ATTEMPTS: usize = 5;

/// What the host lost in a self-test run, if that is why it fell short:
/// debug exceptions without a cause (SIGTRAPs), or breakpoints the kernel
/// itself stopped counting (its counts short, but every hit it counted
/// recorded, none dropped). None for a clean run, and for a failure of
/// hwbp's own (records and counts differ, wrong values in a full run),
/// which is judged at once.
pub(super) fn host_fault(test: &SelfTest) -> Option<String> {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if test.sigtraps > 0 {
        return Some(format!(
            "{} debug exception{} without a cause (DR6 empty; SIGTRAP)",
            test.sigtraps,
            plural(test.sigtraps)
        ));
    }
    // (Whether the values came in order cannot be told from a short run:
    // the run judged in the end must be exact and in order.)
    let recorded_as_counted = test.execute_records == test.execute_counted
        && test.write_records == test.write_counted
        && test.dropped == 0;
    let short = test.execute_counted < test.calls || test.write_counted < test.calls;
    (recorded_as_counted && short).then(|| {
        format!(
            "breakpoints the kernel stopped counting ({} of {} calls and {} of {} writes counted)",
            test.execute_counted, test.calls, test.write_counted, test.calls
        )
    })
}

/// The self-test's line from its counts, then the line on the host's
/// faults in the runs before (`faults`, one per run; none on a healthy
/// host), then the line on resolving its targets by name.
pub(super) fn judge_self_test(test: SelfTest, faults: &[String]) -> Vec<Check> {
    const NAME: &str = "self-test";
    let SelfTest {
        calls,
        execute_records,
        execute_counted,
        execute_in_order,
        write_records,
        write_counted,
        write_in_order,
        dropped,
        resolution,
        elapsed,
        sigtraps,
    } = test;
    let per_hit = elapsed.as_secs_f64() * 1e6 / (2 * calls).max(1) as f64;
    let found = format!(
        "execute: {execute_records} of {calls} hits recorded ({execute_counted} counted), write: {write_records} \
         of {calls} ({write_counted} counted), {dropped} dropped, {per_hit:.0} µs per hit"
    );
    let exact = execute_records == calls
        && execute_counted == calls
        && write_records == calls
        && write_counted == calls;
    let test = if sigtraps > 0 {
        Check::fail(
            NAME,
            format!(
                "{found}; {sigtraps} debug exception{} came without a cause (DR6 empty): the kernel sent \
                 SIGTRAP for each, caught here",
                if sigtraps == 1 { "" } else { "s" }
            ),
            "this machine loses breakpoint hits (seen on KVM guests; `perf stat -e mem:ADDR:x` loses them too): \
             counts here fall short, and a traced program that does not handle SIGTRAP dies of it; trace on \
             another host",
        )
    } else if exact && execute_in_order && write_in_order {
        Check::ok(
            NAME,
            format!("{found}; in order, with arguments and values"),
        )
    } else if exact {
        Check::fail(
            NAME,
            format!("{found}; but the recorded arguments or values are wrong"),
            "report this as a bug of hwbp",
        )
    } else {
        Check::fail(
            NAME,
            format!("{found}; hits were missed"),
            "another debugger or a virtual machine may take the debug registers away (seen on KVM guests: \
             every breakpoint silent after its first hit): run again; if it recurs, hwbp's counts cannot be \
             trusted on this host",
        )
    };
    let mut checks = vec![test];
    if !faults.is_empty() {
        checks.push(Check::warn(
            "lost debug exceptions",
            format!(
                "{} of {} self-test runs spoiled by the host before the one above: {}",
                faults.len(),
                faults.len() + 1,
                faults.join("; ")
            ),
            "this host loses breakpoint hits (seen on KVM guests, where `perf stat -e mem:ADDR:x` \
             loses them too; docs/limitations.md): a trace here may count fewer hits than were made, \
             and a traced program that does not handle SIGTRAP may die of one; trace on another host \
             for exact counts",
        ));
    }
    checks.push(resolution_check(&resolution));
    checks
}

/// Whether `hwbp::target::resolve` found the self-test's targets where they are.
pub(super) fn resolution_check(resolution: &[(&'static str, u64, Resolution)]) -> Check {
    const NAME: &str = "symbols of executables";
    let mut wrong = Vec::new();
    let mut missing = Vec::new();
    for (name, addr, found) in resolution {
        match found {
            Resolution::Exact => {}
            Resolution::Wrong { resolved } => {
                wrong.push(format!("{name} resolved to {resolved:#x}, is at {addr:#x}"))
            }
            Resolution::NotFound(e) => missing.push(format!("{name}: {e}")),
        }
    }
    let names: Vec<&str> = resolution.iter().map(|(name, ..)| *name).collect();
    if !wrong.is_empty() {
        Check::warn(
            NAME,
            format!(
                "wrong addresses by name in hwbp-trace itself: {}",
                wrong.join("; ")
            ),
            "a bug of hwbp's ELF resolution (the self-test above was armed at the true addresses): \
             name such targets by address (0xADDRESS:w) until it is fixed",
        )
    } else if !missing.is_empty() {
        Check::warn(
            NAME,
            format!(
                "not found by name in hwbp-trace itself (stripped?): {}",
                missing.join("; ")
            ),
            "nothing to do for tracing other programs; the self-test above was armed by address",
        )
    } else {
        Check::ok(
            NAME,
            format!(
                "{} found by name in hwbp-trace itself at their addresses",
                names.join(" and ")
            ),
        )
    }
}

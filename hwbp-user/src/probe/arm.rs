//! Arming breakpoints: one perf event (PERF_TYPE_BREAKPOINT) per target and
//! per CPU (system-wide) or per thread (one process), the BPF program
//! attached to each, all or nothing.
//!
//! aya's `PerfEvent::attach` cannot be used: it sets `precise_ip = 2` and
//! `sample_type = PERF_SAMPLE_RAW`, and the kernel then refuses with EPROTO a
//! program that calls `bpf_get_stack` (perf_event_set_bpf_handler in
//! kernel/events/core.c). So the events are opened here, with precise_ip 0,
//! disabled, and the program attached with PERF_EVENT_IOC_SET_BPF.
//!
//! Every event is opened disabled and attached first; only when all of them
//! succeeded are they enabled. On any failure everything already opened is
//! closed, so a half-armed system-wide breakpoint never produces stray hits
//! (the concern raised on LKML against ksym_tracer's rewrite).

use std::{
    fmt, fs, io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

use perf_event_open_sys::{self as sys, bindings::perf_event_attr};
use thiserror::Error;

use crate::{
    target::Mode,
    target::resolve::{Breakpoint, Space},
};

/// Debug registers an x86 CPU has for breakpoints (DR0-DR3).
pub const X86_DEBUG_REGISTERS: usize = 4;

/// Where the breakpoints are armed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every online CPU, every task (kernel targets only).
    SystemWide { cpus: Vec<u32> },
    /// The threads of one process, and (inherit) every thread or child they
    /// create later.
    Process { pid: i32, tids: Vec<i32> },
}

impl Scope {
    pub fn system_wide() -> io::Result<Self> {
        Ok(Self::SystemWide {
            cpus: crate::host::cpus::online()?,
        })
    }

    pub fn process(pid: i32) -> io::Result<Self> {
        let mut tids: Vec<i32> = fs::read_dir(format!("/proc/{pid}/task"))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        Ok(Self::Process { pid, tids })
    }
}

/// Where one event is armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Cpu(u32),
    Thread(i32),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu(cpu) => write!(f, "CPU {cpu}"),
            Self::Thread(tid) => write!(f, "thread {tid}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum ArmError {
    #[error("cannot arm `{target}` on {place}: {reason}")]
    Open {
        target: String,
        place: Place,
        errno: i32,
        reason: String,
    },
    #[error("cannot attach the BPF program to `{target}` on {place}: {source}")]
    Attach {
        target: String,
        place: Place,
        source: io::Error,
    },
    #[error("cannot enable `{target}` on {place}: {source}; nothing was left armed")]
    Enable {
        target: String,
        place: Place,
        source: io::Error,
    },
}

impl ArmError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Open { errno, .. } => Some(*errno),
            Self::Attach { source, .. } | Self::Enable { source, .. } => source.raw_os_error(),
        }
    }
}

pub(super) struct Event {
    pub(super) fd: OwnedFd,
    /// The target's id (its index in the session's list).
    pub(super) slot: usize,
    pub(super) place: Place,
}

/// Every breakpoint opened at every place and the program attached, none
/// enabled yet: nothing fires. [`Opened::enable`] arms them all; dropping
/// closes them all. Whatever can fail for a reason of the user's (a full
/// debug register, a refused address) fails before this exists, so a caller
/// can create its output files in between and touch none on such a failure.
pub struct Opened {
    pub(super) events: Vec<(Event, Place)>,
    /// The targets as written, per slot, for messages.
    targets: Vec<String>,
    scope: Scope,
}

/// Armed breakpoints. Dropping disarms them (the kernel frees the debug
/// registers when the last descriptor closes, even after SIGKILL).
pub struct Armed {
    pub(super) events: Vec<Event>,
    pub(super) scope: Scope,
    /// Per target id, the counts of its events closed while tracing (a
    /// target removed, or moved by reopening: see [`super::live`]).
    pub(super) retired: Vec<u64>,
}

impl Armed {
    /// Opens, attaches and enables every breakpoint at every place, or none.
    pub fn arm(
        breakpoints: &[Breakpoint],
        scope: &Scope,
        program: BorrowedFd<'_>,
    ) -> Result<Self, ArmError> {
        Self::open(breakpoints, scope, program)?.enable()
    }

    /// Opens every breakpoint at every place, disabled, with the program
    /// attached; on any failure closes what was opened and says where.
    ///
    /// A thread of a `-p` process can exit between the listing of
    /// /proc/PID/task and its turn here (ESRCH): while the process lives on,
    /// that thread is skipped (it runs nothing any more), and
    /// [`Armed::scope`] lists only the threads armed. Any other failure
    /// still fails the whole run.
    pub fn open(
        breakpoints: &[Breakpoint],
        scope: &Scope,
        program: BorrowedFd<'_>,
    ) -> Result<Opened, ArmError> {
        let places: Vec<Place> = match scope {
            Scope::SystemWide { cpus } => cpus.iter().copied().map(Place::Cpu).collect(),
            Scope::Process { tids, .. } => tids.iter().copied().map(Place::Thread).collect(),
        };
        let pid = match scope {
            Scope::Process { pid, .. } => Some(*pid),
            Scope::SystemWide { .. } => None,
        };
        let (events, armed) = open_places(
            breakpoints.len(),
            &places,
            |slot, place| {
                let bp = &breakpoints[slot];
                // Targets before this one are open at this place already.
                let fd = open(bp, place).map_err(|errno| ArmError::Open {
                    target: bp.spec.text.clone(),
                    place,
                    errno,
                    reason: explain(bp, errno, breakpoints.len(), slot),
                })?;
                // SAFETY: both descriptors are open and owned for the duration
                // of the call; SET_BPF only takes a reference on the program.
                let rc =
                    unsafe { sys::ioctls::SET_BPF(fd.as_raw_fd(), program.as_raw_fd() as u32) };
                if rc < 0 {
                    return Err(ArmError::Attach {
                        target: bp.spec.text.clone(),
                        place,
                        source: io::Error::last_os_error(),
                    });
                }
                Ok(Event { fd, slot, place })
            },
            |err, place| match (pid, place) {
                (Some(pid), Place::Thread(tid)) => {
                    err.errno() == Some(libc::ESRCH) && thread_gone_from_live_process(pid, tid)
                }
                _ => false,
            },
        )?;
        let scope = match scope {
            Scope::Process { pid, .. } => Scope::Process {
                pid: *pid,
                tids: armed
                    .iter()
                    .filter_map(|place| match place {
                        Place::Thread(tid) => Some(*tid),
                        Place::Cpu(_) => None,
                    })
                    .collect(),
            },
            Scope::SystemWide { .. } => scope.clone(),
        };
        Ok(Opened {
            events,
            targets: breakpoints.iter().map(|bp| bp.spec.text.clone()).collect(),
            scope,
        })
    }

    /// Where the breakpoints are armed: the scope asked for, less the
    /// threads that exited before their turn.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
    /// Number of perf events (breakpoints × places).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// CPUs or threads armed.
    pub fn places(&self) -> usize {
        match &self.scope {
            Scope::SystemWide { cpus } => cpus.len(),
            Scope::Process { tids, .. } => tids.len(),
        }
    }

    /// How many times the kernel saw each breakpoint fire, per slot: the
    /// events' own counts (read(2) on a counting perf event, which includes
    /// inherited children). The BPF program should have seen every one; a
    /// difference means hits the kernel never handed to BPF (for example
    /// while another BPF program ran on that CPU, see bpf_overflow_handler in
    /// kernel/events/core.c), and is reported, never hidden.
    pub fn kernel_counts(&self, slots: usize) -> Vec<u64> {
        let mut counts = vec![0u64; slots];
        for event in &self.events {
            let mut value = 0u64;
            // SAFETY: reads 8 bytes into a local u64 from an open perf event
            // descriptor whose read_format is 0 (a single u64 count).
            let n = unsafe {
                libc::read(
                    event.fd.as_raw_fd(),
                    (&raw mut value).cast(),
                    size_of::<u64>(),
                )
            };
            if n == size_of::<u64>() as isize
                && let Some(c) = counts.get_mut(event.slot)
            {
                *c += value;
            }
        }
        for (c, retired) in counts.iter_mut().zip(&self.retired) {
            *c += retired;
        }
        counts
    }

    /// Stops every breakpoint; hits already in the ring buffer stay there.
    pub fn disarm(&mut self) {
        for event in &self.events {
            disable(event);
        }
    }
}

impl Opened {
    /// Enables every breakpoint, or (on a failure) none.
    pub fn enable(self) -> Result<Armed, ArmError> {
        let Self {
            events,
            targets,
            scope,
        } = self;
        for (event, place) in &events {
            // SAFETY: an open perf event descriptor; ENABLE takes no pointer.
            let rc = unsafe { sys::ioctls::ENABLE(event.fd.as_raw_fd(), 0) };
            if rc < 0 {
                let source = io::Error::last_os_error();
                for (event, _) in &events {
                    disable(event);
                }
                return Err(ArmError::Enable {
                    target: targets.get(event.slot).cloned().unwrap_or_default(),
                    place: *place,
                    source,
                });
            }
        }
        Ok(Armed {
            events: events.into_iter().map(|(event, _)| event).collect(),
            scope,
            retired: Vec::new(),
        })
    }
}

/// Events with their places, and the places kept.
type OpenedPlaces<T> = (Vec<(T, Place)>, Vec<Place>);

/// Opens `targets` events at each place in turn with `open(slot, place)`.
/// A failure that `skippable` accepts (a thread that exited) drops that
/// place's events and goes on without it; any other fails everything, as
/// does skipping every place. Returns the events and the places kept.
fn open_places<T>(
    targets: usize,
    places: &[Place],
    mut open: impl FnMut(usize, Place) -> Result<T, ArmError>,
    skippable: impl Fn(&ArmError, Place) -> bool,
) -> Result<OpenedPlaces<T>, ArmError> {
    let mut events = Vec::with_capacity(targets * places.len());
    let mut kept = Vec::with_capacity(places.len());
    let mut last_skipped = None;
    'places: for &place in places {
        let first = events.len();
        for slot in 0..targets {
            match open(slot, place) {
                Ok(event) => events.push((event, place)),
                Err(err) if skippable(&err, place) => {
                    log::debug!("skipping {place}: {err}");
                    events.truncate(first);
                    last_skipped = Some(err);
                    continue 'places;
                }
                Err(err) => return Err(err),
            }
        }
        kept.push(place);
    }
    match last_skipped {
        Some(err) if kept.is_empty() => Err(err),
        _ => Ok((events, kept)),
    }
}

/// Whether thread `tid` has exited while its process `pid` runs on.
fn thread_gone_from_live_process(pid: i32, tid: i32) -> bool {
    let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(") ")?.1.chars().next()? != 'Z'))
        .unwrap_or(false);
    alive && fs::metadata(format!("/proc/{pid}/task/{tid}")).is_err()
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.disarm();
    }
}

pub(super) fn disable(event: &Event) {
    // SAFETY: an open perf event descriptor; DISABLE takes no pointer.
    let _ = unsafe { sys::ioctls::DISABLE(event.fd.as_raw_fd(), 0) };
}

pub(super) fn attr(bp: &Breakpoint, place: Place) -> perf_event_attr {
    let mut attr = perf_event_attr {
        type_: sys::bindings::PERF_TYPE_BREAKPOINT,
        size: size_of::<perf_event_attr>() as u32,
        ..Default::default()
    };
    attr.bp_type = match bp.mode {
        Mode::Execute => sys::bindings::HW_BREAKPOINT_X,
        Mode::Write => sys::bindings::HW_BREAKPOINT_W,
        Mode::ReadWrite => sys::bindings::HW_BREAKPOINT_RW,
        Mode::Read => sys::bindings::HW_BREAKPOINT_R,
    };
    attr.__bindgen_anon_3.bp_addr = bp.addr;
    attr.__bindgen_anon_4.bp_len = u64::from(bp.len);
    // Every hit runs the program: a sample period of 1, no perf buffer.
    attr.__bindgen_anon_1.sample_period = 1;
    attr.set_disabled(1);
    if let Place::Thread(_) = place {
        // Threads and children created later get the breakpoint too.
        attr.set_inherit(1);
        if bp.space == Space::User {
            // A user address means nothing in the image a later exec loads:
            // the kernel drops the event at exec (Linux 5.13), so no stray
            // hits land on whatever code or data the new program has there.
            attr.set_remove_on_exec(1);
        }
    }
    if bp.space == Space::User && bp.mode == Mode::Execute {
        // User code never runs in kernel mode.
        attr.set_exclude_kernel(1);
    }
    attr
}

/// perf_event_open; Err(errno).
pub(super) fn open(bp: &Breakpoint, place: Place) -> Result<OwnedFd, i32> {
    let mut attr = attr(bp, place);
    let (pid, cpu) = match place {
        Place::Cpu(cpu) => (-1, cpu as i32),
        Place::Thread(tid) => (tid, -1),
    };
    perf_event_open(&mut attr, pid, cpu)
}

/// perf_event_open(2) with close-on-exec; Err(errno). Shared with the
/// doctor's probes.
pub(crate) fn perf_event_open(
    attr: &mut perf_event_attr,
    pid: i32,
    cpu: i32,
) -> Result<OwnedFd, i32> {
    // SAFETY: `attr` is a valid, initialised perf_event_attr whose size field
    // matches the struct; the kernel only reads it (and may write back `size`).
    let fd = unsafe {
        sys::perf_event_open(
            attr,
            pid,
            cpu,
            -1,
            sys::bindings::PERF_FLAG_FD_CLOEXEC as u64,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: perf_event_open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Turns the kernel's errno into what happened and what to do.
pub(super) fn explain(bp: &Breakpoint, errno: i32, requested: usize, armed_here: usize) -> String {
    let err = io::Error::from_raw_os_error(errno);
    match errno {
        libc::ENOSPC => format!(
            "no free debug register ({err}). {}; \
             this run asked for {requested} and {armed_here} of them fit, so {armed_here} {} free. Debuggers \
             (gdb watch/hbreak), perf or other tracers may hold the others: stop them or trace fewer targets at once",
            crate::host::arch::REGISTERS,
            if armed_here == 1 { "was" } else { "were" }
        ),
        libc::EINVAL if bp.space == Space::Kernel && bp.mode == Mode::Execute => {
            let cause = match crate::host::kernel::option("CONFIG_KPROBES") {
                Some(false) => "this kernel is built without CONFIG_KPROBES, and then x86 refuses execute \
                                breakpoints on all kernel text"
                    .to_owned(),
                _ if kprobe_blacklisted(bp.addr) => format!(
                    "`{}` is on the kprobe blacklist (/sys/kernel/debug/kprobes/blacklist): code that handles \
                     debug exceptions must not trap itself",
                    bp.symbol
                ),
                _ => "x86 refuses execute breakpoints on kernel text that kprobes may not probe (the kprobe \
                      blacklist; all of it when the kernel lacks CONFIG_KPROBES)"
                    .to_owned(),
            };
            let instead = match kernel_data_watchpoint_probe(bp.addr) {
                Ok(()) => "Data watchpoints (`:w`, `:rw`) on kernel variables work on this host; for kernel \
                           functions boot a kernel with CONFIG_KPROBES=y (`cargo xtask vm` runs one in QEMU)"
                    .to_owned(),
                Err(errno) => format!(
                    "This host refuses kernel data watchpoints too ({}), so no kernel target works here: \
                     trace user-space targets here, and kernel targets in a VM (`cargo xtask vm`)",
                    io::Error::from_raw_os_error(errno)
                ),
            };
            format!(
                "the kernel refused an execute breakpoint ({err}): {cause}. {instead}; `hwbp-trace doctor` \
                 checks this host"
            )
        }
        libc::EINVAL => format!(
            "the kernel refused the breakpoint ({err}): address {:#x}, length {}, mode {}. Check that the \
             address is mapped and aligned to the length",
            bp.addr, bp.len, bp.mode
        ),
        libc::EACCES | libc::EPERM if bp.space == Space::Kernel && has_perfmon() => format!(
            "this host's kernel refuses breakpoints on kernel addresses ({err}) although hwbp-trace has \
             CAP_PERFMON: a policy of this kernel or its hypervisor, not a missing privilege. User-space \
             targets work here; trace kernel targets in a VM (`cargo xtask vm`). `hwbp-trace doctor` \
             checks this host"
        ),
        libc::EACCES | libc::EPERM => format!(
            "permission denied ({err}): run as root, or grant CAP_PERFMON and CAP_BPF \
             (kernel.perf_event_paranoid also applies)"
        ),
        libc::ESRCH => format!("the process or thread is gone ({err})"),
        libc::ENOENT | libc::ENODEV | libc::EOPNOTSUPP => {
            format!(
                "this CPU or kernel has no hardware breakpoints ({err}; CONFIG_HAVE_HW_BREAKPOINT)"
            )
        }
        _ => err.to_string(),
    }
}

/// Opens a disabled breakpoint event, to probe what the kernel accepts or
/// to hold a debug register; Err(errno). Shared with the doctor's probes.
pub(crate) fn open_disabled(
    addr: u64,
    bp_type: u32,
    len: u64,
    pid: i32,
    cpu: i32,
) -> Result<OwnedFd, i32> {
    let mut attr = perf_event_attr {
        type_: sys::bindings::PERF_TYPE_BREAKPOINT,
        size: size_of::<perf_event_attr>() as u32,
        bp_type,
        ..Default::default()
    };
    attr.__bindgen_anon_3.bp_addr = addr;
    attr.__bindgen_anon_4.bp_len = len;
    attr.__bindgen_anon_1.sample_period = 1;
    attr.set_disabled(1);
    perf_event_open(&mut attr, pid, cpu)
}

/// Whether this kernel takes a write watchpoint on kernel data: opened
/// disabled on CPU 0 at `addr` (any kernel address serves: the kernel checks
/// alignment and privilege, not what lives there) and closed at once.
pub(crate) fn kernel_data_watchpoint_probe(addr: u64) -> Result<(), i32> {
    open_disabled(addr & !7, sys::bindings::HW_BREAKPOINT_W, 8, -1, 0).map(drop)
}

/// Whether this process holds CAP_PERFMON (or CAP_SYS_ADMIN, which covers
/// it): an EPERM on a kernel address is then the host's policy.
fn has_perfmon() -> bool {
    crate::host::caps::own_missing_capabilities()
        .is_some_and(|missing| !missing.contains(&"CAP_PERFMON"))
}

fn kprobe_blacklisted(addr: u64) -> bool {
    let Ok(list) = fs::read_to_string("/sys/kernel/debug/kprobes/blacklist") else {
        return false;
    };
    list.lines().any(|line| {
        let mut range = line.split_whitespace().next().unwrap_or("").split('-');
        let parse = |s: Option<&str>| s.and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
        matches!((parse(range.next()), parse(range.next())), (Some(start), Some(end)) if addr >= start && addr < end)
    })
}

/// What the run armed, for frontends.
#[derive(Clone, Debug)]
pub struct Armament {
    pub breakpoints: Vec<Breakpoint>,
    pub events: usize,
    pub places: usize,
    pub scope: Scope,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_error(place: Place, errno: i32) -> ArmError {
        ArmError::Open {
            target: "t".into(),
            place,
            errno,
            reason: String::new(),
        }
    }

    /// Opens with these (place, slot) failures, skipping ESRCH on threads.
    fn open_with(
        places: &[Place],
        failures: &[(Place, usize, i32)],
    ) -> Result<OpenedPlaces<usize>, i32> {
        open_places(
            2,
            places,
            |slot, place| match failures.iter().find(|f| (f.0, f.1) == (place, slot)) {
                Some(&(_, _, errno)) => Err(open_error(place, errno)),
                None => Ok(slot),
            },
            |err, place| matches!(place, Place::Thread(_)) && err.errno() == Some(libc::ESRCH),
        )
        .map_err(|e| e.errno().unwrap_or(0))
    }

    /// A thread that exited before its turn is skipped with the events
    /// already opened on it; the other threads get every target.
    #[test]
    fn a_thread_gone_is_skipped() {
        let threads = [Place::Thread(10), Place::Thread(11), Place::Thread(12)];
        let (events, kept) =
            open_with(&threads, &[(Place::Thread(11), 1, libc::ESRCH)]).expect("opens");
        assert_eq!(kept, [Place::Thread(10), Place::Thread(12)]);
        assert_eq!(
            events,
            [
                (0, Place::Thread(10)),
                (1, Place::Thread(10)),
                (0, Place::Thread(12)),
                (1, Place::Thread(12))
            ]
        );
    }

    /// Real failures stay all or nothing; and all threads gone is a failure.
    #[test]
    fn other_failures_fail_everything() {
        let threads = [Place::Thread(10), Place::Thread(11)];
        assert_eq!(
            open_with(&threads, &[(Place::Thread(11), 1, libc::ENOSPC)]),
            Err(libc::ENOSPC)
        );
        assert_eq!(
            open_with(
                &threads,
                &[
                    (Place::Thread(10), 0, libc::ESRCH),
                    (Place::Thread(11), 0, libc::ESRCH)
                ]
            ),
            Err(libc::ESRCH)
        );
        // ESRCH is not skippable for a CPU.
        assert_eq!(
            open_with(&[Place::Cpu(0)], &[(Place::Cpu(0), 0, libc::ESRCH)]),
            Err(libc::ESRCH)
        );
    }

    #[test]
    fn thread_of_this_process() {
        let pid = std::process::id() as i32;
        assert!(!thread_gone_from_live_process(pid, pid), "we run");
        assert!(
            thread_gone_from_live_process(pid, i32::MAX),
            "no such thread"
        );
    }
}

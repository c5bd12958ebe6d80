//! One tracing run, from command line to summary: start or find the
//! process, resolve, load, open the breakpoints, create the output files
//! (only now: a run that fails earlier leaves existing files untouched), arm
//! (all or nothing), collect until the end condition, then disarm, drain and
//! summarize. Nothing recorded before
//! the stop is lost.

use std::{
    collections::HashMap,
    ffi::OsString,
    fs,
    io::{self, Write as _},
    panic,
    path::PathBuf,
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use hwbp_common::{COMM_LEN, Counters, HIT_NO_VALUE, Hit};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::sleep,
};

use crate::{
    output::export::{Export, Format},
    output::stats::{SharedStats, Stats},
    probe::arm::{Armament, Armed, Scope},
    probe::load::{Batch, Filters, Probe, StackChoice},
    probe::process::{CommandOutput, ExitWatch, Launched, ProcessError},
    record::format::{FORMAT_VERSION, Header, HitRecord, Summary, TargetInfo, TargetSummary},
    record::symbolize::Symbolizer,
    target::resolve::{Breakpoint, ProcessImage, Resolver, Space},
    target::{Mode, TargetSpec},
};

/// Hits taken from the ring buffer at a time: memory stays bounded however
/// large the backlog.
const BATCH: usize = 1024;

/// Which stacks to capture (`--stack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StackMode {
    None,
    Kernel,
    User,
    Both,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub targets: Vec<TargetSpec>,
    pub pid: Option<i32>,
    /// `-- CMD ARGS`.
    pub command: Vec<OsString>,
    pub outputs: Vec<(PathBuf, Option<Format>)>,
    /// Print a line per hit on stdout.
    pub print_hits: bool,
    pub duration: Option<Duration>,
    pub max_hits: Option<u64>,
    pub stack: Option<StackMode>,
    pub filters: Filters,
    pub buffer_size: u64,
    /// For the trace header.
    pub command_line: Vec<String>,
    /// Ends the run when notified, like SIGINT: the dashboard's `q` (in raw
    /// mode Ctrl-C is a key, not a signal).
    pub stop: Option<Arc<tokio::sync::Notify>>,
    /// `--redact-addresses`.
    pub redact_addresses: bool,
    /// Where `-- CMD`'s stdout and stderr go while the dashboard has the
    /// terminal (its stdin is then /dev/null); `None`: hwbp-trace's own
    /// stdin, stdout and stderr.
    pub command_output: Option<Arc<CommandOutput>>,
}

const SYSCTL_RELEASE: &str = "/proc/sys/kernel/osrelease";
const SYSCTL_HOSTNAME: &str = "/proc/sys/kernel/hostname";

/// Runs a session; `on_armed` is called once everything is armed (the
/// `Tracing` line or the dashboard's start).
pub async fn run(
    options: Options,
    stats: SharedStats,
    on_armed: impl FnOnce(&Armament),
) -> Result<Summary> {
    let Options {
        ref targets,
        pid,
        ref command,
        ref outputs,
        max_hits,
        ref command_output,
        ..
    } = options;
    if targets.is_empty() {
        bail!(crate::target::TargetError::Empty);
    }
    if pid.is_some() && !command.is_empty() {
        bail!(UsageError(
            "-p and -- CMD exclude each other: trace a running process or start one".into()
        ));
    }
    if let Some(pid) = pid {
        crate::probe::process::check_traceable(pid)?;
    }
    if let Some(0) = max_hits {
        bail!(UsageError(
            "-n 0 would record nothing: give a positive number of hits".into()
        ));
    }

    missing_privileges()?;

    // Output formats now, before a command starts; the files themselves only
    // once the targets are resolved and the breakpoints opened, so that a
    // run that fails before tracing leaves an existing file as it was.
    for (path, format) in outputs {
        if format.or_else(|| Format::from_path(path)).is_none() {
            bail!(crate::output::export::ExportError::UnknownFormat(
                path.clone()
            ));
        }
    }

    // The process: started stopped at its entry point, or found.
    let mut launched = match command.is_empty() {
        true => None,
        false => Some(Launched::start(command, command_output.as_ref())?),
    };
    let traced_pid = launched.as_ref().map(|l| l.pid).or(pid);
    let exit_watch = match traced_pid {
        Some(pid) => Some(ExitWatch::new(pid)?),
        None => None,
    };

    let result = arm_and_trace(
        &options,
        traced_pid,
        &mut launched,
        exit_watch.as_ref(),
        stats,
        on_armed,
    )
    .await;
    if result.is_err()
        && let Some(child) = launched.as_mut()
    {
        child.kill();
    }
    // A `-p` process that is gone now took the attaching down with it:
    // say that, rather than the ENOENT of whichever /proc file went first.
    match (result, pid) {
        (Err(err), Some(pid)) if crate::probe::process::check_traceable(pid).is_err() => {
            Err(ProcessError::ExitedWhileAttaching {
                pid,
                cause: format!("{err:#}"),
            }
            .into())
        }
        (result, _) => result,
    }
}

/// hwbp-trace needs to load BPF, open breakpoint perf events and read
/// kernel addresses: refuse clearly, naming what is missing, rather than
/// half-work.
#[derive(Debug, thiserror::Error)]
#[error(
    "hwbp-trace needs root, or the capabilities {}: {} missing; run it with sudo",
    "CAP_BPF, CAP_PERFMON and CAP_SYSLOG",
    .missing.join(", ")
)]
pub struct PrivilegeError {
    pub missing: Vec<&'static str>,
}

fn missing_privileges() -> Result<(), PrivilegeError> {
    // The same rule as doctor's privileges check: CAP_SYS_ADMIN stands in
    // for CAP_BPF and CAP_PERFMON (kernels before 5.8 have neither), not
    // for CAP_SYSLOG.
    let Some(missing) = crate::host::caps::own_missing_capabilities() else {
        return Ok(());
    };
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PrivilegeError { missing })
    }
}

/// A usage error (exit status 2) that is not a typed parse error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

async fn arm_and_trace(
    options: &Options,
    traced_pid: Option<i32>,
    launched: &mut Option<Launched>,
    exit_watch: Option<&ExitWatch>,
    stats: SharedStats,
    on_armed: impl FnOnce(&Armament),
) -> Result<Summary> {
    let Options {
        ref targets,
        print_hits,
        duration,
        max_hits,
        stack,
        ref filters,
        buffer_size,
        ref command_line,
        ref stop,
        redact_addresses,
        ref outputs,
        // Used by `run`.
        pid: _,
        command: _,
        command_output: _,
    } = *options;

    // Loading the program and parsing the kernel's BTF need no target: they
    // run beside the resolution of the targets (kallsyms is the slow part).
    let loading = thread::spawn(move || Probe::load_program(buffer_size));
    // System-wide every target is a kernel target, whose values want BTF.
    let mut vmlinux_btf = traced_pid
        .is_none()
        .then(|| thread::spawn(crate::target::btf::Btf::vmlinux));

    let process = match traced_pid {
        Some(pid) => Some(ProcessImage::open(pid)?),
        None => None,
    };
    let mut resolver = Resolver::new(process);
    let phase = Instant::now();
    let mut breakpoints = resolver.resolve_all(targets)?;
    // A kernel variable's default LEN from its BTF type, when BTF has it:
    // before arming, so this waits for the parse (kallsyms only gives the
    // distance to the next symbol, 8 for pid_max where int is 4).
    let early_btf = breakpoints
        .iter()
        .any(crate::record::values::wants_btf_len)
        .then(|| {
            let btf = match vmlinux_btf.take() {
                Some(parsing) => parsing
                    .join()
                    .unwrap_or_else(|panic| panic::resume_unwind(panic)),
                None => crate::target::btf::Btf::vmlinux(),
            };
            if let Ok(btf) = &btf {
                crate::record::values::lens_from_btf(&mut breakpoints, btf);
            }
            btf
        });
    log::debug!(
        "resolved {} targets in {:?}",
        breakpoints.len(),
        phase.elapsed()
    );
    for bp in &breakpoints {
        log::debug!("  {} → {bp}", bp.spec.text);
    }
    // Accepted by the kernel, but likely to see nothing: said before the
    // run, not discovered after it as 0 hits.
    let advice = breakpoints
        .iter()
        .filter_map(|bp| crate::target::resolve::advice::advice(bp, traced_pid))
        .chain(
            filters
                .comm
                .as_deref()
                .and_then(crate::target::resolve::advice::comm_advice),
        );
    for advice in advice {
        // Not eprintln!: a closed stderr must not panic the run.
        let _ = writeln!(io::stderr(), "hwbp-trace: warning: {advice}");
    }

    let stacks: Vec<StackChoice> = breakpoints
        .iter()
        .map(|bp| {
            let (kernel, user) = match stack {
                Some(StackMode::None) => (false, false),
                Some(StackMode::Kernel) => (true, false),
                Some(StackMode::User) => (false, true),
                Some(StackMode::Both) => (true, true),
                // The target's own side by default.
                None => (bp.space == Space::Kernel, bp.space == Space::User),
            };
            StackChoice { kernel, user }
        })
        .collect();
    // Kernel targets were resolved with kallsyms: its table names their
    // frames too. Otherwise the symbolizer reads it at the first kernel
    // frame (user targets with kernel stacks may never have one).
    let kallsyms = if breakpoints.iter().any(|bp| bp.space == Space::Kernel) {
        Some(resolver.kallsyms()?)
    } else {
        None
    };

    let phase = Instant::now();
    let loaded = loading
        .join()
        .unwrap_or_else(|panic| panic::resume_unwind(panic))?;
    let mut probe = loaded.configure(&breakpoints, &stacks, filters)?;
    log::debug!(
        "BPF program loaded, verified and configured (waited {:?})",
        phase.elapsed()
    );
    let mut events = probe.events()?;
    let scope = match traced_pid {
        Some(pid) => {
            Scope::process(pid).with_context(|| format!("listing the threads of process {pid}"))?
        }
        None => Scope::system_wide().context("listing online CPUs")?,
    };
    let phase = Instant::now();
    let opened = Armed::open(&breakpoints, &scope, probe.program_fd()?)?;
    // Everything that can fail for the user's reasons has been checked: now
    // the output files may be created (truncated).
    let mut exports = outputs
        .iter()
        .map(|(path, format)| Export::create(path, *format))
        .collect::<Result<Vec<_>, _>>()?;
    let mut armed = opened.enable()?;
    let scope = armed.scope().clone();
    log::debug!("armed {} perf events in {:?}", armed.len(), phase.elapsed());

    let start_monotonic_ns = crate::output::stats::monotonic_ns();
    let started = Instant::now();
    let header = Header {
        format_version: FORMAT_VERSION,
        tool: format!("hwbp-trace {}", env!("CARGO_PKG_VERSION")),
        kernel_release: fs::read_to_string(SYSCTL_RELEASE)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        hostname: fs::read_to_string(SYSCTL_HOSTNAME)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        start_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        start_monotonic_ns,
        command_line: command_line.clone(),
        targets: breakpoints.iter().map(target_info).collect(),
    };
    // Taken now, before the command runs its own code: its executable and
    // libraries are mapped, and where they are tells its addresses.
    let redactor =
        redact_addresses.then(|| crate::record::redact::Redactor::for_process(traced_pid));
    let header = match &redactor {
        Some(redactor) => redactor.header(header),
        None => header,
    };
    for export in exports.iter_mut() {
        export.header(&header);
    }

    if let Ok(mut s) = stats.lock() {
        *s = Stats::new(breakpoints.len());
    }
    // Before the command runs: the initial values of data targets.
    let initial = crate::record::values::Values::initial(&breakpoints, traced_pid);
    let mut symbolizer = Symbolizer::new(kallsyms);
    if let Some(pid) = traced_pid {
        symbolizer.snapshot(pid as u32);
    }
    on_armed(&Armament {
        breakpoints: breakpoints.clone(),
        events: armed.len(),
        places: armed.places(),
        scope: scope.clone(),
    });
    // Types for arguments and values: the BTF parse may still be running
    // (hits wait in the ring buffer meanwhile, and the command has not run).
    let btf = breakpoints
        .iter()
        .any(|bp| bp.space == Space::Kernel)
        .then(|| match (early_btf, vmlinux_btf) {
            (Some(btf), _) => btf,
            (None, Some(parsing)) => parsing
                .join()
                .unwrap_or_else(|panic| panic::resume_unwind(panic)),
            (None, None) => crate::target::btf::Btf::vmlinux(),
        });
    let values = crate::record::values::Values::new(&breakpoints, traced_pid, btf, initial);
    // The image the user targets point into, taken before the command runs
    // any of its code: taken later, an early exec could already have
    // replaced it and go unnoticed.
    let image_at_start = traced_pid.and_then(crate::probe::process::Image::of);
    if let Some(child) = launched.as_mut() {
        child.resume()?;
    }

    let outputs = exports.len();
    let mut collector = Collector {
        breakpoints: &breakpoints,
        symbolizer,
        stats: stats.clone(),
        exports: &mut exports,
        print_hits,
        max_hits,
        recorded: 0,
        per_slot: vec![0; breakpoints.len()],
        after_limit: vec![0; breakpoints.len()],
        write_errors_reported: vec![false; outputs],
        redactor,
        failure: None,
        fault_after: std::env::var("HWBP_FAULT_PANIC_AFTER")
            .ok()
            .and_then(|n| n.parse().ok()),
        values,
        names: breakpoints
            .iter()
            .map(|bp| SlotNames {
                target: bp.spec.text.as_str().into(),
                symbol: bp.symbol.as_str().into(),
                mode: bp.mode.as_str().into(),
            })
            .collect(),
        comms: HashMap::default(),
    };

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let deadline =
        sleep(duration.unwrap_or(Duration::MAX.saturating_sub(Duration::from_secs(1 << 40))));
    tokio::pin!(deadline);
    let mut counters_tick = tokio::time::interval(Duration::from_millis(250));
    let mut drain_tick = tokio::time::interval(Duration::from_millis(20));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch_exec = breakpoints.iter().any(|bp| bp.space == Space::User);

    let mut batch = Batch::default();
    // Hits are waiting that no wakeup will announce: take them now.
    let mut backlog = false;
    let end_reason = loop {
        tokio::select! {
            // Ordered: a stop request wins, then hits before a process exit
            // (the exit path drains the ring buffer anyway).
            biased;
            _ = sigint.recv() => break "signal",
            _ = sigterm.recv() => break "signal",
            _ = sighup.recv() => break "signal",
            () = async { if let Some(stop) = stop { stop.notified().await } }, if stop.is_some() => break "signal",
            () = &mut deadline, if duration.is_some() => break "duration",
            r = events.next_batch(&mut batch, BATCH) => {
                if let Err(e) = r {
                    collector.failure = Some(format!("reading the ring buffer: {e}"));
                    break "error";
                }
                if let Some(end) = collector.record_batch(&mut batch) {
                    break end;
                }
                // AsyncFd readiness takes no cooperative budget: while hits
                // keep coming this branch is always ready, and without a
                // yield the runtime would never poll its driver, so signals,
                // the deadline and the exit watch would go unseen until the
                // hits stop. yield_now defers us until after a driver poll.
                tokio::task::yield_now().await;
            }
            // The program wakes us only when the waiting bytes cross a
            // threshold (fewer interrupts per hit), so: take whatever is
            // waiting on a timer too, and once a drain leaves hits behind,
            // go on until none is left. A crossing can go unannounced (two
            // CPUs each see the buffer below it, then both add), and above
            // the threshold no record wakes us: waiting for a wakeup there
            // took one batch per tick, less than the CPUs make.
            () = async { if !backlog { drain_tick.tick().await; } } => {
                backlog = !events.drain(&mut batch, BATCH);
                if let Some(end) = collector.record_batch(&mut batch) {
                    break end;
                }
                // As above: let the runtime see signals and timers.
                tokio::task::yield_now().await;
            }
            () = async { if let Some(w) = exit_watch { w.exited().await } }, if exit_watch.is_some() => break "process-exit",
            _ = counters_tick.tick() => {
                // An exec replaces the image user targets point into: the
                // kernel dropped those breakpoints (remove_on_exec); end.
                if watch_exec && traced_pid.and_then(crate::probe::process::Image::of).is_some_and(|now| Some(now) != image_at_start) {
                    break "process-exec";
                }
                let counters = probe.counters();
                if let Ok(mut s) = stats.lock() {
                    s.counters = counters;
                }
            }
        }
    };

    // Ctrl-C reaches the whole process group: the command can die of it
    // before the runtime hands us our own SIGINT, which is pending by then
    // (the kernel signals every member of the group before any runs on).
    // The user ended the trace all the same.
    let end_reason = match end_reason {
        "process-exit" => {
            let stopped = tokio::time::timeout(Duration::from_millis(20), async {
                tokio::select! {
                    _ = sigint.recv() => {}
                    _ = sigterm.recv() => {}
                    _ = sighup.recv() => {}
                }
            })
            .await
            .is_ok();
            if stopped { "signal" } else { end_reason }
        }
        other => other,
    };

    // Stop: disarm first, then take what is left; nothing recorded is lost.
    armed.disarm();
    loop {
        let empty = events.drain(&mut batch, BATCH);
        collector.process(&mut batch);
        if empty || collector.failure.is_some() {
            break;
        }
    }
    // A failure while draining the rest ends the run as an error too.
    let end_reason = if collector.failure.is_some() {
        "error"
    } else {
        end_reason
    };
    let counters = probe.counters();
    let kernel_counts = armed.kernel_counts(breakpoints.len());
    drop(armed);

    // How the command ended, when the trace ended with it: its exit code,
    // or 128 + the signal's number as a shell's `$?` says, and the signal.
    let (exit_status, signal) = match launched.as_mut() {
        Some(child) if end_reason == "process-exit" => match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt as _;
                match (status.code(), status.signal()) {
                    (Some(code), _) => (Some(code), None),
                    (None, Some(signal)) => (
                        Some(128 + signal),
                        Some(crate::probe::process::signal_name(signal)),
                    ),
                    (None, None) => (None, None),
                }
            }
            _ => (None, None),
        },
        _ => (None, None),
    };
    let summary = Summary {
        targets: breakpoints
            .iter()
            .zip(&counters)
            .enumerate()
            .map(|(slot, (bp, c))| {
                let mut t = target_summary(
                    bp,
                    c,
                    collector.recorded_for(slot),
                    collector.after_limit[slot],
                );
                t.kernel_count = kernel_counts.get(slot).copied().unwrap_or(0);
                t.missed = t.kernel_count.saturating_sub(c.hits + c.filtered);
                t
            })
            .collect(),
        // Everything that fired but was not recorded: ring buffer full,
        // never handed to BPF by the kernel, or a malformed record.
        lost: batch.malformed()
            + counters.iter().map(|c| c.dropped).sum::<u64>()
            + counters
                .iter()
                .zip(&kernel_counts)
                .map(|(c, k)| k.saturating_sub(c.hits + c.filtered))
                .sum::<u64>(),
        duration_s: started.elapsed().as_secs_f64(),
        end_reason: end_reason.to_owned(),
        exit_status,
        signal,
        trace_truncated: false,
        output_errors: Vec::new(),
        error: collector.failure.clone(),
    };
    let mut summary = summary;
    if let Some(redactor) = &redactor {
        redactor.summary(&mut summary);
    }
    if let Ok(mut s) = stats.lock() {
        s.counters = counters;
    }
    let mut failures = Vec::new();
    for export in collector.exports.iter_mut() {
        if let Err(e) = export.finish(&summary) {
            failures.push(format!("{}: {e}", export.path.display()));
        }
    }
    if let Some(child) = launched.as_mut()
        && end_reason != "process-exit"
    {
        // The traced command outlives the trace, as with perf.
        let _ = child.try_wait();
    }
    summary.output_errors = failures;
    Ok(summary)
}

fn target_info(bp: &Breakpoint) -> TargetInfo {
    TargetInfo {
        target: bp.spec.text.clone(),
        symbol: bp.symbol.clone(),
        addr: format!("{:#x}", bp.addr),
        mode: bp.mode.as_str().to_owned(),
        len: bp.len,
        space: match bp.space {
            Space::Kernel => "kernel".into(),
            Space::User => "user".into(),
        },
    }
}

fn target_summary(bp: &Breakpoint, c: &Counters, hits: u64, after_limit: u64) -> TargetSummary {
    TargetSummary {
        target: bp.spec.text.clone(),
        symbol: bp.symbol.clone(),
        addr: format!("{:#x}", bp.addr),
        mode: bp.mode.as_str().to_owned(),
        hits,
        dropped: c.dropped,
        filtered: c.filtered,
        kstack_errors: c.kstack_errors,
        ustack_errors: c.ustack_errors,
        after_limit,
        kernel_count: 0,
        missed: 0,
    }
}

struct Collector<'a> {
    breakpoints: &'a [Breakpoint],
    symbolizer: Symbolizer,
    stats: SharedStats,
    exports: &'a mut [Export],
    print_hits: bool,
    max_hits: Option<u64>,
    recorded: u64,
    per_slot: Vec<u64>,
    after_limit: Vec<u64>,
    /// Per `-o` file, whether its write error was reported already.
    write_errors_reported: Vec<bool>,
    /// `--redact-addresses`.
    redactor: Option<crate::record::redact::Redactor>,
    /// Why recording stopped early (a caught panic, a ring buffer error).
    failure: Option<String>,
    /// Test hook: panic before recording hit N (HWBP_FAULT_PANIC_AFTER), so
    /// that the tests can prove a bug does not lose the trace's summary.
    fault_after: Option<u64>,
    /// Argument names and types, decoded values, old values.
    values: crate::record::values::Values,
    /// Per slot, the names every hit of it carries, shared rather than
    /// copied per hit.
    names: Vec<SlotNames>,
    /// comm → its shared text (cleared when it grows past COMMS_KEPT).
    comms: HashMap<[u8; COMM_LEN], Arc<str>, foldhash::fast::RandomState>,
}

/// What every hit of one target says about the target.
struct SlotNames {
    target: Arc<str>,
    symbol: Arc<str>,
    mode: Arc<str>,
}

/// Distinct comms kept shared before the table starts again.
const COMMS_KEPT: usize = 4096;

impl Collector<'_> {
    fn limit_reached(&self) -> bool {
        self.max_hits.is_some_and(|n| self.recorded >= n)
    }

    /// Records `batch`; the end reason when recording must stop there.
    fn record_batch(&mut self, batch: &mut Batch) -> Option<&'static str> {
        self.process(batch);
        if self.failure.is_some() {
            Some("error")
        } else if self.limit_reached() {
            Some("max-hits")
        } else {
            None
        }
    }

    fn recorded_for(&self, slot: usize) -> u64 {
        self.per_slot.get(slot).copied().unwrap_or(0)
    }

    /// Records a batch. A panic while doing so (a bug) does not lose the
    /// run: it is caught, tracing ends with `end_reason: "error"`, and the
    /// usual teardown still disarms, flushes and writes every summary.
    fn process(&mut self, batch: &mut Batch) {
        if self.failure.is_some() {
            batch.clear();
            return;
        }
        // tui's catch_unwind: the panic hook then leaves the terminal to a
        // dashboard, which shows the error.
        let result =
            crate::tui::catch_unwind(panic::AssertUnwindSafe(|| self.process_batch(batch)));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            self.failure = Some(format!("internal error while recording hits: {message}"));
            batch.clear();
        }
    }

    fn process_batch(&mut self, batch: &mut Batch) {
        let mut stdout = io::stdout().lock();
        for hit in batch.hits() {
            let slot = hit.slot as usize;
            let Some(bp) = self.breakpoints.get(slot) else {
                continue;
            };
            if self.limit_reached() {
                self.after_limit[slot] += 1;
                continue;
            }
            if self.fault_after == Some(self.recorded) {
                panic!("fault injection (HWBP_FAULT_PANIC_AFTER={})", self.recorded);
            }
            let mut record = self.record(bp, hit);
            if let Some(redactor) = &self.redactor {
                redactor.hit(&mut record);
            }
            self.recorded += 1;
            self.per_slot[slot] += 1;
            if self.print_hits {
                use std::io::Write as _;
                let _ = writeln!(stdout, "{}", record.line());
            }
            for export in self.exports.iter_mut() {
                export.hit(&record);
            }
            if let Ok(mut stats) = self.stats.lock() {
                stats.record(slot, Arc::new(record));
            }
        }
        batch.clear();
        for (export, reported) in self.exports.iter().zip(&mut self.write_errors_reported) {
            if *reported {
                continue;
            }
            if let Some(e) = export.error() {
                let path = export.path.display().to_string();
                if let Ok(mut stats) = self.stats.lock() {
                    stats.export_failed(&path, &e.to_string());
                }
                // Not over a dashboard: it shows the failure, and the
                // summary's output errors print after it.
                if !crate::tui::terminal_taken() {
                    eprintln!(
                        "hwbp-trace: stopped writing {path}: {e}; tracing goes on, the summary will still be printed"
                    );
                }
                *reported = true;
            }
        }
    }

    fn record(&mut self, bp: &Breakpoint, hit: &Hit) -> HitRecord {
        let comm = match self.comms.get(&hit.comm) {
            Some(comm) => comm.clone(),
            None => {
                if self.comms.len() >= COMMS_KEPT {
                    self.comms.clear();
                }
                let len = hit
                    .comm
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(hit.comm.len());
                let comm: Arc<str> = String::from_utf8_lossy(&hit.comm[..len]).into();
                self.comms.insert(hit.comm, comm.clone());
                comm
            }
        };
        let names = &self.names[hit.slot as usize];
        let kstack = self
            .symbolizer
            .kernel_stack(hit.kstack(), bp.mode.is_data());
        // At a user function's entry the frame-pointer walk skips the
        // immediate caller: its return address is still at the stack pointer.
        let ret = if bp.at_entry && bp.space == Space::User {
            hit.ret
        } else {
            0
        };
        let ustack = self
            .symbolizer
            .user_stack(hit.pid, hit.ustack(), bp.mode.is_data(), ret);
        let crate::record::values::ValueFields {
            value,
            old_value,
            value_type,
            value_text,
            old_value_text,
        } = self.values.value(
            hit.slot as usize,
            (bp.mode != Mode::Execute && hit.flags & HIT_NO_VALUE == 0).then_some(hit.value),
        );
        HitRecord {
            ts_ns: hit.ts_ns,
            cpu: hit.cpu,
            pid: hit.pid,
            tid: hit.tid,
            comm,
            target: names.target.clone(),
            symbol: names.symbol.clone(),
            addr: format!("{:#x}", hit.addr),
            mode: names.mode.clone(),
            ip: format!("{:#x}", hit.ip),
            // A watchpoint traps after the access: name the accessing instruction.
            ip_sym: self.symbolizer.frame(hit.pid, hit.ip, bp.mode.is_data()),
            value,
            old_value,
            value_type,
            value_text,
            old_value_text,
            args: (bp.mode == Mode::Execute)
                .then(|| self.values.args(hit.slot as usize, &hit.args)),
            kstack,
            ustack,
        }
    }
}

/// Whether an error is the user's to fix on the command line (exit 2).
pub fn is_usage_error(err: &anyhow::Error) -> bool {
    use crate::{output::export::ExportError, target::TargetError, target::resolve::ResolveError};
    err.chain().any(|e| {
        e.is::<TargetError>()
            || e.is::<UsageError>()
            || e.is::<ExportError>()
            || e.downcast_ref::<ResolveError>().is_some_and(|r| {
                !matches!(
                    r,
                    ResolveError::Kallsyms(_)
                        | ResolveError::KallsymsRestricted
                        | ResolveError::Elf { .. }
                )
            })
            || e.downcast_ref::<ProcessError>().is_some_and(|p| {
                matches!(
                    p,
                    ProcessError::NotFound(_)
                        | ProcessError::NotExecutable(_)
                        | ProcessError::NoSuchProcess(_)
                        | ProcessError::NotAPid(_)
                        | ProcessError::Itself(_)
                        | ProcessError::KernelThread { .. }
                        | ProcessError::Zombie { .. }
                )
            })
            || e.downcast_ref::<crate::probe::load::LoadError>()
                .is_some_and(|l| {
                    matches!(
                        l,
                        crate::probe::load::LoadError::BufferSize(_)
                            | crate::probe::load::LoadError::TooManyTargets(_)
                    )
                })
    })
}

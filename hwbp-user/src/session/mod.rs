//! One tracing run, from command line to summary: start or find the
//! process, resolve, load, open the breakpoints, create the output files
//! (only now: a run that fails earlier leaves existing files untouched), arm
//! (all or nothing), collect until the end condition, then disarm, drain and
//! summarize. Nothing recorded before
//! the stop is lost.

use std::{ffi::OsString, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Result, bail};
use hwbp_common::Counters;

use crate::{
    output::export::Format,
    output::stats::SharedStats,
    probe::aggregates::MapSizes,
    probe::arm::Armament,
    probe::load::{Batch, Filters},
    probe::process::{CommandOutput, ExitWatch, Launched, ProcessError},
    record::format::{Summary, TargetInfo, TargetSummary},
    target::TargetSpec,
    target::resolve::{Breakpoint, Space},
};

mod collector;
mod conditions;
mod control;
mod finish;
pub mod live;
mod prepare;
pub mod replay;
mod run;

pub use run::EndReason;

use collector::Collector;
use prepare::Prepared;

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

#[derive(Clone, Debug, Default)]
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
    /// Room in the ring buffer and the aggregate maps.
    pub sizes: MapSizes,
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
    /// `--control PATH` and `--ack PATH`: change the targets while tracing.
    pub control: Option<PathBuf>,
    pub ack: Option<PathBuf>,
    /// The dashboard's changes (`a`, `m`, `x`, space): command lines as
    /// `--control` takes them, each answered through the callback.
    pub changes: Option<Arc<live::Requests>>,
    /// The hidden `--capture-records FILE`: every raw hit, as the ring
    /// buffer gave it, also goes to FILE (the replay benchmark's input,
    /// [`crate::probe::records`]).
    pub capture_records: Option<PathBuf>,
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
    crate::host::arch::refuse_looping_kernel()?;

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

    // The control FIFOs before anything starts: a bad path is a usage error.
    let mut control = match &options.control {
        Some(path) => Some(control::Control::open(path, options.ack.as_deref())?),
        None => None,
    };

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
        control.as_mut(),
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
    control: Option<&mut control::Control>,
    stats: SharedStats,
    on_armed: impl FnOnce(&Armament),
) -> Result<Summary> {
    let Prepared {
        breakpoints,
        mut probe,
        mut events,
        mut armed,
        mut exports,
        redactor,
        symbolizer,
        values,
        image_at_start,
        started,
    } = prepare::prepare(options, traced_pid, launched, &stats, on_armed)?;
    let mut collector = Collector::new(
        &breakpoints,
        &mut exports,
        symbolizer,
        values,
        redactor,
        stats.clone(),
        options,
    );
    let mut batch = Batch::default();
    let mut live = live::Live::new(traced_pid, options.stack, breakpoints.len());
    let end_reason = run::collect(
        options,
        &mut collector,
        run::Sources {
            events: &mut events,
            probe: &mut probe,
            batch: &mut batch,
            stats: &stats,
            exit_watch,
            traced_pid,
            image_at_start,
            armed: &mut armed,
            control,
            live: &mut live,
        },
    )
    .await?;
    Ok(finish::finish(
        end_reason,
        &mut collector,
        finish::Ending {
            armed,
            probe: &mut probe,
            events: &mut events,
            batch: &mut batch,
            launched,
            stats: &stats,
            started,
        },
    ))
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
        counted: c.hits,
        unsampled: c.unsampled,
        agg_full: c.agg_full,
        stack_full: c.stack_full,
        dropped: c.dropped,
        dropped_busy: c.dropped_busy,
        retried: c.retried,
        filtered: c.filtered,
        rejected: c.cond_rejected,
        retraps: c.retraps,
        kstack_errors: c.kstack_errors,
        ustack_errors: c.ustack_errors,
        after_limit,
        kernel_count: 0,
        missed: 0,
        unrecorded: 0,
        watches: Vec::new(),
        removed: false,
    }
}

/// Whether an error is the user's to fix on the command line (exit 2).
pub fn is_usage_error(err: &anyhow::Error) -> bool {
    use crate::{output::export::ExportError, target::TargetError, target::resolve::ResolveError};
    err.chain().any(|e| {
        e.is::<TargetError>()
            || e.is::<conditions::CompileError>()
            || e.is::<UsageError>()
            || e.is::<ExportError>()
            || e.is::<control::ControlError>()
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
                        | ProcessError::Thread { .. }
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

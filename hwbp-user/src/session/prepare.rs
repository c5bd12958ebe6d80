//! Before the first hit: resolve the targets (while the BPF program loads
//! and the kernel's BTF parses on threads of their own), open every
//! breakpoint, create the output files (only now: a run that fails earlier
//! leaves existing files untouched), arm all or nothing, write the headers
//! and let the command run.

use std::{
    fs,
    io::{self, Write as _},
    panic,
    path::PathBuf,
    thread,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};

use super::{Options, SYSCTL_HOSTNAME, SYSCTL_RELEASE, StackMode, target_info};
use crate::{
    output::{
        export::{Export, Format},
        stats::{SharedStats, Stats},
    },
    probe::{
        arm::{Armament, Armed, Scope},
        load::{Events, Filters, Probe, StackChoice},
        process::{Image, Launched},
    },
    record::{
        format::{FORMAT_VERSION, Header},
        redact::Redactor,
        symbolize::Symbolizer,
        values::Values,
    },
    target::{
        btf::{Btf, BtfError},
        resolve::{Breakpoint, ProcessImage, Resolver, Space},
    },
};

/// A run armed and its command resumed: what collecting and finishing need.
pub(super) struct Prepared {
    pub breakpoints: Vec<Breakpoint>,
    pub probe: Probe,
    pub events: Events,
    pub armed: Armed,
    pub exports: Vec<Export>,
    pub redactor: Option<Redactor>,
    pub symbolizer: Symbolizer,
    pub values: Values,
    /// The image user targets point into when the command started (an
    /// exec replaces it).
    pub image_at_start: Option<Image>,
    pub started: Instant,
}

/// Resolves, loads, arms and starts the run; `on_armed` is told what was
/// armed before the command runs.
pub(super) fn prepare(
    options: &Options,
    traced_pid: Option<i32>,
    launched: &mut Option<Launched>,
    stats: &SharedStats,
    on_armed: impl FnOnce(&Armament),
) -> Result<Prepared> {
    let Options {
        ref targets,
        stack,
        ref filters,
        sizes,
        ref command_line,
        redact_addresses,
        ref outputs,
        ..
    } = *options;

    // Loading the program and parsing the kernel's BTF need no target: they
    // run beside the resolution of the targets (kallsyms is the slow part).
    // The condition interpreter is loaded only where a target can have a
    // condition: one given now, or one a change while tracing may give.
    let conditions = targets.iter().any(|t| t.condition.is_some())
        || options.control.is_some()
        || options.changes.is_some();
    let loading = thread::spawn(move || Probe::load_program(sizes, conditions));
    // System-wide every target is a kernel target, whose values want BTF.
    let mut vmlinux_btf = traced_pid.is_none().then(|| thread::spawn(Btf::vmlinux));

    let process = match traced_pid {
        Some(pid) => Some(ProcessImage::open(pid)?),
        None => None,
    };
    let mut resolver = Resolver::new(process);
    let phase = Instant::now();
    let mut breakpoints = resolver.resolve_all(targets)?;
    let early_btf = early_btf(&mut breakpoints, &mut vmlinux_btf);
    log::debug!(
        "resolved {} targets in {:?}",
        breakpoints.len(),
        phase.elapsed()
    );
    for bp in &breakpoints {
        log::debug!("  {} → {bp}", bp.spec.text);
    }
    refuse_task_scoped_kernel_targets(&breakpoints, traced_pid)?;
    warn_of_silent_targets(&breakpoints, traced_pid, filters);

    let stacks = stack_choices(&breakpoints, stack);
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
    log::debug!(
        "BPF program verified: {} instructions walked, conditions {}",
        loaded
            .verified_instructions()
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        if conditions { "on" } else { "off" }
    );
    let mut probe = loaded.configure(&breakpoints, &stacks, filters)?;
    let compiled = super::conditions::compile(
        &breakpoints,
        traced_pid,
        early_btf.as_ref().and_then(|btf| btf.as_ref().ok()),
    )?;
    probe.set_conditions(&compiled)?;
    log::debug!(
        "BPF program loaded, verified and configured (waited {:?})",
        phase.elapsed()
    );
    let events = probe.events()?;
    let scope = scope_of(traced_pid)?;
    let (armed, mut exports) = arm(&breakpoints, &scope, &probe, outputs)?;
    let scope = armed.scope().clone();

    let start_monotonic_ns = crate::output::stats::monotonic_ns();
    let started = Instant::now();
    let header = header(&breakpoints, command_line, start_monotonic_ns);
    // Taken now, before the command runs its own code: its executable and
    // libraries are mapped, and where they are tells its addresses.
    let redactor = redact_addresses.then(|| Redactor::for_process(traced_pid));
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
    let initial = Values::initial(&breakpoints, traced_pid);
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
    let btf = kernel_btf(&breakpoints, early_btf, vmlinux_btf);
    let values = Values::new(&breakpoints, traced_pid, btf, initial);
    // The image the user targets point into, taken before the command runs
    // any of its code: taken later, an early exec could already have
    // replaced it and go unnoticed.
    let image_at_start = traced_pid.and_then(Image::of);
    if let Some(child) = launched.as_mut() {
        child.resume()?;
    }

    Ok(Prepared {
        breakpoints,
        probe,
        events,
        armed,
        exports,
        redactor,
        symbolizer,
        values,
        image_at_start,
        started,
    })
}

/// The kernel's BTF, parsed now (waiting for the parse started beside the
/// resolution, taken from `parsing`) when a target needs it before arming,
/// with the default LEN of kernel variables set from their BTF types; `None`
/// when no target needs it yet.
///
/// A kernel variable's default LEN comes from its BTF type, when BTF has
/// it: before arming, so this waits for the parse (kallsyms only gives the
/// distance to the next symbol, 8 for pid_max where int is 4).
fn early_btf(
    breakpoints: &mut [Breakpoint],
    parsing: &mut Option<thread::JoinHandle<Result<Btf, BtfError>>>,
) -> Option<Result<Btf, BtfError>> {
    breakpoints
        .iter()
        .any(|bp| {
            crate::record::values::wants_btf_len(bp)
                || (bp.space == Space::Kernel && bp.spec.condition.is_some())
        })
        .then(|| {
            let btf = match parsing.take() {
                Some(parsing) => parsing
                    .join()
                    .unwrap_or_else(|panic| panic::resume_unwind(panic)),
                None => Btf::vmlinux(),
            };
            if let Ok(btf) = &btf {
                crate::record::values::lens_from_btf(breakpoints, btf);
            }
            btf
        })
}

/// Refuses a kernel target traced in one process (`-p`, `-- CMD`) on an
/// architecture whose kernels take kernel breakpoints only system-wide,
/// saying how to trace it instead.
fn refuse_task_scoped_kernel_targets(
    breakpoints: &[Breakpoint],
    traced_pid: Option<i32>,
) -> Result<()> {
    if let (Some(_), Some(kernel)) = (
        traced_pid,
        breakpoints.iter().find(|bp| bp.space == Space::Kernel),
    ) && !crate::host::arch::PER_TASK_KERNEL_BREAKPOINTS
    {
        anyhow::bail!(super::UsageError(format!(
            "`{}` is a kernel target, and {} kernels refuse kernel breakpoints scoped to a task \
             (only system-wide ones): trace it system-wide, without -p or -- CMD, and keep one \
             program's hits with --comm NAME",
            kernel.spec.text,
            crate::host::arch::NAME
        )));
    }
    Ok(())
}

/// Where the breakpoints go: every thread of the traced process, or every
/// online CPU.
fn scope_of(traced_pid: Option<i32>) -> Result<Scope> {
    Ok(match traced_pid {
        Some(pid) => {
            Scope::process(pid).with_context(|| format!("listing the threads of process {pid}"))?
        }
        None => Scope::system_wide().context("listing online CPUs")?,
    })
}

/// Targets the kernel accepts but that will likely see nothing, said
/// before the run rather than discovered after it as 0 hits.
fn warn_of_silent_targets(breakpoints: &[Breakpoint], traced_pid: Option<i32>, filters: &Filters) {
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
}

/// The stacks each target takes (`--stack`; by default its own side's).
pub(super) fn stack_choices(
    breakpoints: &[Breakpoint],
    stack: Option<StackMode>,
) -> Vec<StackChoice> {
    breakpoints
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
        .collect()
}

/// The trace's header line: tool, kernel, host, start time, targets.
pub(super) fn header(
    breakpoints: &[Breakpoint],
    command_line: &[String],
    start_monotonic_ns: u64,
) -> Header {
    Header {
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
        command_line: command_line.to_vec(),
        targets: breakpoints.iter().map(target_info).collect(),
    }
}

/// Opens every breakpoint, creates the output files, then arms them all:
/// the files are created (truncated) only once everything that can fail
/// for the user's reasons has been checked.
fn arm(
    breakpoints: &[Breakpoint],
    scope: &Scope,
    probe: &Probe,
    outputs: &[(PathBuf, Option<Format>)],
) -> Result<(Armed, Vec<Export>)> {
    let phase = Instant::now();
    let opened = Armed::open(breakpoints, scope, probe.program_fd()?)?;
    let exports = outputs
        .iter()
        .map(|(path, format)| Export::create(path, *format))
        .collect::<Result<Vec<_>, _>>()?;
    let armed = opened.enable()?;
    log::debug!("armed {} perf events in {:?}", armed.len(), phase.elapsed());
    Ok((armed, exports))
}

/// The kernel's BTF when a kernel target wants it for types: parsed early
/// for LEN, or being parsed, or parsed now.
fn kernel_btf(
    breakpoints: &[Breakpoint],
    early: Option<Result<Btf, BtfError>>,
    parsing: Option<thread::JoinHandle<Result<Btf, BtfError>>>,
) -> Option<Result<Btf, BtfError>> {
    breakpoints
        .iter()
        .any(|bp| bp.space == Space::Kernel)
        .then(|| match (early, parsing) {
            (Some(btf), _) => btf,
            (None, Some(parsing)) => parsing
                .join()
                .unwrap_or_else(|panic| panic::resume_unwind(panic)),
            (None, None) => Btf::vmlinux(),
        })
}

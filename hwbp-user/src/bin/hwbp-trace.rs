//! `hwbp-trace`: the thin binary over the `hwbp` library.

use std::{
    io::{IsTerminal as _, Write as _},
    os::unix::ffi::OsStrExt as _,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::Parser as _;
use hwbp::{
    cli::{Cli, Command, TraceArgs},
    output::stats::Stats,
    output::summary::summary_table,
    printable::plural,
    probe::aggregates::{MapSizes, Records},
    probe::arm::Armament,
    probe::arm::Scope,
    probe::load::Filters,
    probe::process::CommandOutput,
    record::format::Summary,
    session::{self, Options},
    tui,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.trace.verbose;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(if verbose {
        "warn,hwbp=debug"
    } else {
        "warn"
    }))
    .format_timestamp(None)
    .init();
    let result = match cli.command {
        Some(Command::List(args)) => hwbp::target::list::run(
            &args.pattern,
            args.pid,
            args.binary.as_deref(),
            args.verbose,
        )
        .and_then(|n| {
            if n == 0 {
                anyhow::bail!(session::UsageError(format!(
                    "no symbol matches `{}`",
                    args.pattern
                )));
            }
            Ok(ExitCode::SUCCESS)
        }),
        Some(Command::Report(args)) => {
            hwbp::output::report::main(&args).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Replay(args)) => session::replay::run(&args).and_then(|replayed| {
            println!("{}", serde_json::to_string(&replayed)?);
            Ok(ExitCode::SUCCESS)
        }),
        Some(Command::Doctor) => hwbp::doctor::run()
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        None => trace(cli.trace),
    };
    match result {
        Ok(status) => status,
        Err(err) => {
            eprintln!("hwbp-trace: error: {err:#}");
            if session::is_usage_error(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Traces; the exit status is the command's when the trace ended with it
/// (see [`exit_status`]), else success.
fn trace(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let TraceArgs {
        targets,
        pid,
        outputs,
        format,
        quiet,
        no_tui,
        duration,
        max_hits,
        stack,
        comm,
        tid,
        buffer_size,
        records,
        max_keys,
        max_stacks,
        metrics_addr,
        redact_addresses,
        control,
        ack,
        capture_records,
        verbose: _,
        command,
    } = args;
    if targets.is_empty() {
        anyhow::bail!(session::UsageError(
            "name at least one TARGET, e.g. `hwbp-trace vfs_read` or `hwbp-trace counter -- ./app`; see --help".into()
        ));
    }
    if max_hits.is_some() && records == Records::None {
        anyhow::bail!(session::UsageError(
            "-n counts recorded hits, and --records none records none: bound the run with -d SECONDS, or record some hits with --records sample:N".into()
        ));
    }
    // A terminal gets the dashboard; a pipe or --no-tui the headless lines.
    // The dashboard's `a`, `m`, `x` and space, to the session.
    let (change_tx, change_rx) = tokio::sync::mpsc::unbounded_channel();
    let dashboard = (!no_tui && std::io::stdout().is_terminal()).then(|| tui::Config {
        changes: Some(change_tx),
        outputs: outputs.iter().map(|p| p.display().to_string()).collect(),
        launched: !command.is_empty(),
        redact_addresses,
        records,
        // The dashboard has the terminal: a command we start writes into
        // a pipe instead, shown by `o` and printed after the dashboard.
        output: (!command.is_empty()).then(|| CommandOutput::of(&command)),
    });
    let command_output = dashboard.as_ref().and_then(|d| d.output.clone());
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut options = Options {
        targets,
        pid,
        command,
        outputs: outputs.into_iter().map(|p| (p, format)).collect(),
        print_hits: !quiet && dashboard.is_none(),
        duration,
        max_hits,
        stack,
        filters: Filters {
            comm: comm.map(|c| c.as_bytes().to_vec()),
            tid,
            // A tracer never records itself.
            exclude_pid: Some(std::process::id()),
            records,
        },
        sizes: MapSizes {
            buffer: buffer_size,
            keys: max_keys,
            stacks: max_stacks,
        },
        // args_os: an argument need not be UTF-8 (std::env::args panics then).
        command_line: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        stop: dashboard.is_some().then(|| stop.clone()),
        redact_addresses,
        command_output: command_output.clone(),
        control,
        ack,
        changes: None,
        capture_records,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let stats = Arc::new(Mutex::new(Stats::default()));
    // Bound before arming: a busy port fails the run before it starts.
    let metrics = metrics_addr
        .as_deref()
        .map(|addr| hwbp::output::metrics::MetricsServer::start(addr, stats.clone()))
        .transpose()?;
    let on_armed = |armed: &Armament| {
        if let Some(metrics) = &metrics {
            metrics.armed(armed);
        }
    };
    let Some(config) = dashboard else {
        let summary = runtime.block_on(session::run(options, stats.clone(), |armed| {
            eprintln!("{}", tracing_line(armed));
            on_armed(armed);
        }))?;
        let _ = write!(std::io::stderr(), "{}", summary_table(&summary));
        outputs_complete(&summary)?;
        return Ok(exit_status(&summary));
    };
    // The dashboard takes the terminal once armed and keeps it, showing the
    // final state, until the user quits; the summary then prints on the
    // normal screen.
    let mut dashboard = tui::Dashboard::spawn(stats.clone(), stop, config)
        .map_err(|e| anyhow::anyhow!("cannot start the dashboard: {e}; try --no-tui"))?;
    options.changes = Some(Arc::new(session::live::Requests::new(
        change_rx,
        dashboard.change_answers(),
    )));
    let result = runtime.block_on(session::run(options, stats.clone(), |armed| {
        on_armed(armed);
        dashboard.armed(armed);
    }));
    dashboard.finished(result.as_ref().map_err(|e| format!("{e:#}")));
    if result.is_ok() {
        runtime.block_on(dashboard.until_closed());
    }
    let closed = dashboard.join();
    if let Some(output) = &command_output {
        print_command_output(output);
    }
    // Not eprint!: after a hang-up stderr fails, and eprint! would panic.
    let summary = result?;
    let _ = write!(std::io::stderr(), "{}", summary_table(&summary));
    closed?;
    outputs_complete(&summary)?;
    Ok(exit_status(&summary))
}

/// hwbp-trace's exit status after a complete trace, as timeout(1) passes
/// its command's on: when the trace ended because the `-- CMD` it started
/// ended, that command's status (N for `exit N`, 128 + S when signal S
/// killed it); otherwise 0. A trace ended on purpose (Ctrl-C, the
/// dashboard's `q`, `-d`, `-n`) is a success even when that interrupted
/// the command: the SIGINT that Ctrl-C sends the whole process group, or
/// `q` sends the command, is the user's way to end the trace, not a failure
/// of it. `-p` gives 0: only a parent learns a process's status.
fn exit_status(summary: &Summary) -> ExitCode {
    match summary.exit_status.map(u8::try_from) {
        Some(Ok(status)) => ExitCode::from(status),
        // Not from wait(2), which gives 0..=255 or a signal; were it ever
        // out of range, still a failure.
        Some(Err(_)) => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    }
}

/// What a `-- CMD` wrote while the dashboard had the terminal, on stdout
/// once the terminal is restored, so that nothing is lost: its last lines,
/// after a note on stderr.
fn print_command_output(output: &CommandOutput) {
    // The command has exited or was just interrupted: its last lines are on
    // their way. One that ignores the interrupt, or a child of it that holds
    // the pipe, is not waited for long (it gets EPIPE once we are gone).
    let tail = output.wait_closed(Duration::from_millis(500));
    if tail.written() == 0 {
        return;
    }
    let name = &output.name;
    let note = match tail.written() - tail.kept() as u64 {
        0 => format!("hwbp-trace: output of {name}:"),
        _ => format!(
            "hwbp-trace: output of {name} (last {} of {} lines):",
            tail.kept(),
            tail.written()
        ),
    };
    // Not println!: after a hang-up stdout fails, and println! would panic.
    let _ = writeln!(std::io::stderr(), "{note}");
    let mut stdout = std::io::stdout().lock();
    for line in tail.lines() {
        let _ = stdout.write_all(line);
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

/// A trace file that could not be written completely (disk full) fails the
/// run, after the summary: the file is valid but short, and scripts must see it.
fn outputs_complete(summary: &Summary) -> anyhow::Result<()> {
    if let Some(error) = &summary.error {
        anyhow::bail!(
            "tracing ended early: {error}. Everything recorded until then is in the trace files, \
             which end with their summary; please report this"
        );
    }
    if summary.output_errors.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "writing trace files failed: {}. Each file holds whole records up to the failure and ends with a \
         summary marked \"trace_truncated\" where the file took it; free space (or keep the FIFO's reader \
         reading) and trace again",
        summary.output_errors.join("; ")
    )
}

fn tracing_line(armed: &Armament) -> String {
    let targets = plural(armed.breakpoints.len(), "target", "targets");
    let events = plural(armed.events, "breakpoint", "breakpoints");
    let place = match &armed.scope {
        Scope::SystemWide { cpus } => plural(cpus.len(), "CPU", "CPUs"),
        Scope::Process { pid, tids } => format!(
            "{} of process {pid}",
            plural(tids.len(), "thread", "threads")
        ),
    };
    format!("Tracing {targets} ({events} on {place})... Hit Ctrl-C to end.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_how_the_command_ended() {
        let ended = |status, signal: Option<&str>| {
            let table = summary_table(&Summary {
                end_reason: "process-exit".into(),
                exit_status: status,
                signal: signal.map(str::to_owned),
                ..Summary::default()
            });
            let last = table.lines().last().unwrap_or_default().to_owned();
            let code = exit_status(&Summary {
                exit_status: status,
                ..Summary::default()
            });
            (last, code)
        };
        assert_eq!(
            ended(Some(7), None),
            (
                "0 hits in 0.0 s (process-exit); lost: 0; command exited with status 7".into(),
                ExitCode::from(7)
            )
        );
        assert_eq!(
            ended(Some(137), Some("SIGKILL")),
            (
                "0 hits in 0.0 s (process-exit); lost: 0; command killed by SIGKILL".into(),
                ExitCode::from(137)
            )
        );
        assert_eq!(
            ended(None, None),
            (
                "0 hits in 0.0 s (process-exit); lost: 0".into(),
                ExitCode::SUCCESS
            )
        );
    }
}

//! The command line (clap). Kept in the library so that man pages and
//! completions can be generated from the same definitions.

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::{
    output::export::Format,
    probe::aggregates::{DEFAULT_MAX_KEYS, DEFAULT_MAX_STACKS, Records},
    probe::load::{DEFAULT_BUFFER_SIZE, check_buffer_size},
    session::StackMode,
    target::TargetSpec,
};

const AFTER_HELP: &str = "\
TARGET grammar:  [BINARY:]SYMBOL[+OFFSET] | 0xADDRESS, then optional :MODE and /LEN
  BINARY:0xADDRESS is an address of that file as nm/objdump print it (moved
        to where the process loaded the file); a bare 0xADDRESS is a runtime one.
  MODE  x (execute), w (write), rw (read or write), r (read; not on x86);
        ksym_tracer's --x, -w-, rw-, r-- work too
  LEN   1, 2, 4 or 8 bytes (data targets)
  Defaults: functions x, variables w; LEN = the variable's size if 1/2/4/8, else 8.
  A `::` belongs to the name (app::bump, app:app::bump:x), as `list` prints it.
  SYMBOL.MEMBER[INDEX]...: a struct member or array element by name, from DWARF
        or BTF: cfg.limits[2].max; `list 'cfg.*'` shows the members.

Examples:
  sudo hwbp-trace vfs_read                      who calls vfs_read, from where
  sudo hwbp-trace pid_max:w -d 10               who writes pid_max, for 10 s
  sudo hwbp-trace init_net.core.sysctl_somaxconn  who writes a struct member
  sudo hwbp-trace -o t.jsonl counter:rw -- ./app   watch a variable of a program
  sudo hwbp-trace -p 1234 libc.so.6:malloc -n 100  the first 100 malloc calls

Exit status: a `-- CMD` that ends the trace passes its own on (128+N for
signal N), as timeout(1) does; otherwise 0 traced (Ctrl-C included);
1 runtime failure, 2 bad usage.";

#[derive(Debug, Parser)]
#[command(
    name = "hwbp-trace",
    version,
    about = "Trace every execution of, or access to, a symbol with hardware breakpoints",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List symbols matching a pattern (substring; `*` and `?` wildcards).
    List(ListArgs),
    /// Check what this host can trace (privileges, kernel, debug registers) with a self-test.
    Doctor,
    /// Summarize a trace written with `-o FILE.jsonl`; convert it to other formats.
    Report(crate::output::report::ReportArgs),
    /// Feed raw hits kept by `--capture-records` through the collector, timed
    /// (the replay benchmark; no BPF, no breakpoint).
    #[command(hide = true)]
    Replay(crate::session::replay::ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Substring or wildcard pattern, e.g. `pid_max` or `vfs_*`.
    pub pattern: String,
    /// Symbols of this process's executable and libraries instead of the kernel.
    #[arg(short, long, conflicts_with = "binary")]
    pub pid: Option<i32>,
    /// Symbols of this ELF file instead of the kernel.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Also print each symbol's mangled name.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// What to trace: see TARGET grammar below.
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub targets: Vec<TargetSpec>,

    /// Trace this process (and threads it creates); ends when it exits.
    #[arg(short, long, value_name = "PID", conflicts_with = "command")]
    pub pid: Option<i32>,

    /// Write the trace to FILE (.jsonl, .txt, .folded, .perfetto.json); repeatable.
    #[arg(short, long = "output", value_name = "FILE")]
    pub outputs: Vec<PathBuf>,

    /// Format of every -o file, instead of guessing from the extension.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// No per-hit lines, only the summary.
    #[arg(short, long)]
    pub quiet: bool,

    /// Print headless lines even on a terminal (no dashboard).
    #[arg(long)]
    pub no_tui: bool,

    /// Stop after SECONDS (fractions allowed).
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<std::time::Duration>,

    /// Stop after N hits.
    #[arg(short = 'n', long, value_name = "N", value_parser = parse_max_hits, allow_negative_numbers = true)]
    pub max_hits: Option<u64>,

    /// Stacks to record [default: kernel for kernel targets, user for user targets].
    #[arg(long, value_enum)]
    pub stack: Option<StackMode>,

    /// Keep only hits from tasks with this comm (filtered in the kernel).
    #[arg(long, value_name = "NAME")]
    pub comm: Option<OsString>,

    /// Keep only hits from this thread (filtered in the kernel).
    #[arg(long, value_name = "TID")]
    pub tid: Option<u32>,

    /// Ring buffer size in bytes: a power of two, 4096 (a page) to 1 GiB.
    #[arg(long, value_name = "BYTES", default_value_t = u64::from(DEFAULT_BUFFER_SIZE), value_parser = parse_buffer_size)]
    pub buffer_size: u64,

    /// Which hits get a record in the trace: `all`, `sample:N` (every Nth
    /// hit of a target on each CPU) or `none`. Counts, stacks and callers
    /// stay exact in every mode: the kernel counts every hit.
    #[arg(long, value_name = "MODE", default_value = "all")]
    pub records: Records,

    /// Room for distinct (target, process, stack) counts in the kernel;
    /// hits past it are counted as `agg_full`.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_KEYS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_keys: u32,

    /// Room for distinct stacks in the kernel (2 KiB each); hits with a
    /// stack past it are counted under `[stack not stored]`.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_STACKS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_stacks: u32,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics while tracing.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,

    /// Replace addresses in the output (ip, addr, raw frames, pointer
    /// arguments) with `0x…`: kernel addresses defeat KASLR; use this for
    /// traces meant to be shared. Symbols with offsets stay.
    #[arg(long)]
    pub redact_addresses: bool,

    /// Take commands from the FIFO PATH (created if missing), one a line:
    /// `add TARGET`, `move NAME TARGET`, `remove NAME`, `pause NAME`,
    /// `resume NAME` (NAME: the target as written, or its number).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,

    /// Answer each --control command on the FIFO PATH (created if missing)
    /// with `ok` or `error: WHY` [default: on stderr].
    #[arg(long, value_name = "PATH", requires = "control")]
    pub ack: Option<PathBuf>,

    /// Also write every raw hit to FILE, as the ring buffer gave it: the
    /// input of the replay benchmark (`cargo xtask bench --only-replay`).
    #[arg(long, value_name = "FILE", hide = true)]
    pub capture_records: Option<PathBuf>,

    /// More diagnostics on stderr.
    #[arg(short, long)]
    pub verbose: bool,

    /// Command to start and trace: armed before its first instruction.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

fn parse_target(s: &str) -> Result<TargetSpec, String> {
    s.parse::<TargetSpec>().map_err(|e| e.to_string())
}

/// Checked here, before a `-- CMD` starts or an output file is touched.
fn parse_buffer_size(s: &str) -> Result<u64, String> {
    let bytes = s
        .parse::<u64>()
        .map_err(|_| format!("`{s}` is not a number of bytes (e.g. 8388608 for 8 MiB)"))?;
    check_buffer_size(bytes).map_err(|e| e.to_string())
}

fn parse_max_hits(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("-n 0 would record nothing: give a positive number of hits".into()),
        Ok(n) => Ok(n),
        Err(_) if s.starts_with('-') => Err(format!("-n {s}: give a positive number of hits")),
        Err(_) => Err(format!(
            "-n {s}: not a number of hits below 2^64 (e.g. -n 100)"
        )),
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds (e.g. 10 or 0.5)"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!(
            "`{s}`: the duration must be a positive number of seconds"
        ));
    }
    if secs > 365.0 * 86400.0 {
        return Err(format!(
            "`{s}`: at most one year (31536000 s); leave -d out to trace until Ctrl-C"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn buffer_size(value: &str) -> Result<u64, String> {
        Cli::try_parse_from(["hwbp-trace", "--buffer-size", value, "vfs_read"])
            .map(|cli| cli.trace.buffer_size)
            .map_err(|e| e.to_string())
    }

    /// A bad --buffer-size is a usage error at parse time, before anything runs.
    #[test]
    fn buffer_size_is_checked_when_parsed() {
        assert_eq!(buffer_size("4096"), Ok(4096));
        assert_eq!(
            Cli::try_parse_from(["hwbp-trace", "vfs_read"])
                .map(|cli| cli.trace.buffer_size)
                .ok(),
            Some(u64::from(DEFAULT_BUFFER_SIZE))
        );
        for bad in ["1000", "2048", "2147483648", "lots"] {
            let err = buffer_size(bad).expect_err(bad);
            assert!(
                err.contains("power of two") || err.contains("not a number of bytes"),
                "{bad}: {err}"
            );
        }
    }
}

//! `hwbp-trace report FILE.jsonl`: a recorded trace, summarized offline.
//!
//! The trace is streamed line by line: memory grows with the number of
//! distinct keys of the breakdowns asked for, never with the number of hits.
//! The same pass can write collapsed stacks, Perfetto JSON and a flame graph
//! (inferno). A last line cut short (the tracer was killed while writing)
//! is a warning; any other unreadable line is an error naming its number.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::File,
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use clap::Args;
use thiserror::Error;

use crate::{
    output::export::{self, Export, ExportError, Folded, Format},
    output::summary::table,
    printable::printable,
    record::format::{Header, HitRecord, Summary, TraceLine},
};

/// Distinct keys kept per breakdown; further ones count as `[other]`.
const KEYS_LIMIT: usize = 100_000;

/// What `--by` breaks hits down by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum By {
    /// The task's command name.
    Comm,
    /// The process id.
    Pid,
    /// The CPU the hit happened on.
    Cpu,
    /// Who: the calling function of an execute target, the accessing
    /// function of a data target.
    Caller,
    /// The whole stack, root first (as in the .folded export).
    Stack,
    /// The value after the access (data targets).
    Value,
}

impl By {
    fn title(self) -> &'static str {
        match self {
            Self::Comm => "comm",
            Self::Pid => "pid",
            Self::Cpu => "cpu",
            Self::Caller => "caller",
            Self::Stack => "stack",
            Self::Value => "value",
        }
    }

    /// The key of `hit` as the report prints it, control characters
    /// escaped, or None when it has none (a value for an execute hit).
    pub fn key(self, hit: &HitRecord) -> Option<String> {
        match self {
            Self::Comm => Some(printable(&hit.comm).into_owned()),
            Self::Pid => Some(hit.pid.to_string()),
            Self::Cpu => Some(hit.cpu.to_string()),
            Self::Caller => Some(printable(hit.caller()).into_owned()),
            // Escaped already, as in the .folded export.
            Self::Stack => Some(export::folded_stack(hit)),
            Self::Value => hit.value.map(|v| match &hit.value_text {
                Some(text) => printable(text).into_owned(),
                None => format!("{v:#x}"),
            }),
        }
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A trace written with `-o FILE.jsonl`.
    #[arg(value_name = "FILE.jsonl")]
    pub input: PathBuf,
    /// Break hits down by this (repeatable) [default: comm and caller].
    #[arg(long, value_enum, value_name = "KEY")]
    pub by: Vec<By>,
    /// Rows per breakdown.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = parse_top)]
    pub top: usize,
    /// Write collapsed stacks (flamegraph.pl, inferno, speedscope).
    #[arg(long, value_name = "OUT")]
    pub folded: Option<PathBuf>,
    /// Write Chrome trace-event JSON (ui.perfetto.dev, chrome://tracing).
    #[arg(long, value_name = "OUT")]
    pub perfetto: Option<PathBuf>,
    /// Write a flame graph SVG (inferno).
    #[arg(long, value_name = "OUT.svg")]
    pub flamegraph: Option<PathBuf>,
}

/// `--top N`: at least one row (`--top 0` would print every breakdown as
/// one `[others]` row).
fn parse_top(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("--top 0 would show no row: give the number of rows per breakdown, 1 or more (default 10)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("--top {s}: give the number of rows per breakdown, 1 or more (default 10)")),
    }
}

#[derive(Debug, Error)]
pub enum ReportError {
    // `error`, not `source`: the cause is in the message, not repeated by
    // anyhow's chain.
    #[error("cannot read {}: {error}", .path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error(
        "{}:{line}: not a trace line ({reason}); is this a file written with `-o FILE.jsonl`?",
        .path.display()
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error(
        "{} is empty: it holds no trace line; give a file written with `hwbp-trace -o FILE.jsonl`",
        .path.display()
    )]
    Empty { path: PathBuf },
    #[error(
        "{}: no header line, which every trace starts with: not a whole trace written with \
         `-o FILE.jsonl`; give the file as hwbp-trace wrote it",
        .path.display()
    )]
    NoHeader { path: PathBuf },
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("writing {}: {error}", .path.display())]
    Write { path: PathBuf, error: io::Error },
}

/// Per-target totals and breakdowns, filled as the trace streams by.
#[derive(Debug, Default)]
struct TargetReport {
    hits: u64,
    first_ns: Option<u64>,
    last_ns: u64,
    breakdowns: Vec<HashMap<String, u64>>,
    other: Vec<u64>,
}

/// What a report found, for callers that want more than the text.
#[derive(Debug, Default)]
pub struct Outcome {
    pub hits: u64,
    /// Lines that were not read: a truncated last line.
    pub warnings: Vec<String>,
}

/// Reads `args.input`, writes the text report to `out` and the files asked for.
pub fn run(args: &ReportArgs, out: &mut dyn Write) -> Result<Outcome, ReportError> {
    let ReportArgs {
        input,
        by,
        top,
        folded,
        perfetto,
        flamegraph,
    } = args;
    let by: Vec<By> = if by.is_empty() {
        vec![By::Comm, By::Caller]
    } else {
        by.clone()
    };
    let file = File::open(input).map_err(|error| ReportError::Read {
        path: input.clone(),
        error,
    })?;
    let mut exports = Vec::new();
    if let Some(path) = folded {
        exports.push(Export::create(path, Some(Format::Folded))?);
    }
    if let Some(path) = perfetto {
        exports.push(Export::create(path, Some(Format::Perfetto))?);
    }
    let mut flame = flamegraph.as_ref().map(|path| (path, Folded::default()));
    // Created now so that a bad path fails before the (long) read.
    let flame_file = match &flame {
        Some((path, _)) => Some(export::create_file(path)?),
        None => None,
    };

    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut header: Option<Header> = None;
    let mut summary: Option<Summary> = None;
    let mut targets: Vec<(String, TargetReport)> = Vec::new();
    let mut outcome = Outcome::default();
    // Bytes, not a String: a line cut inside a multi-byte character is not
    // UTF-8, and that must be the cut-line warning, not a read error.
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|error| ReportError::Read {
                path: input.clone(),
                error,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let complete = buf.ends_with(b"\n");
        let line = match parse_line(&buf) {
            Ok(Some(line)) => line,
            Ok(None) => continue,
            Err(e) if !complete => {
                outcome.warnings.push(format!(
                    "{}:{line_no}: the last line is cut short ({e}); was the tracer killed? The report covers the lines before it",
                    input.display()
                ));
                break;
            }
            Err(reason) => {
                return Err(ReportError::Corrupt {
                    path: input.clone(),
                    line: line_no,
                    reason,
                });
            }
        };
        match line {
            TraceLine::Header(h) => {
                for export in exports.iter_mut() {
                    export.header(&h);
                }
                for t in &h.targets {
                    target_entry(&mut targets, &t.target, by.len());
                }
                header = Some(h);
            }
            TraceLine::Hit(hit) => {
                outcome.hits += 1;
                target_entry(&mut targets, &hit.target, by.len()).tally(&hit, &by);
                for export in exports.iter_mut() {
                    export.hit(&hit);
                }
                if let Some((_, f)) = flame.as_mut() {
                    f.add(&hit);
                }
            }
            TraceLine::Summary(s) => summary = Some(s),
            // The breakdowns come from the hit lines; the exports take the
            // kernel's counts.
            TraceLine::Aggregate(agg) => {
                for export in exports.iter_mut() {
                    export.aggregate(&agg);
                }
            }
            // Its hits carry the target's new name already.
            TraceLine::Change(_) => {}
        }
    }

    // Nothing to report is an error, not an empty report that a script
    // would take for a trace without hits.
    if header.is_none() {
        // No line at all, or blank ones only.
        let empty = outcome.hits == 0 && summary.is_none() && outcome.warnings.is_empty();
        return Err(if empty {
            ReportError::Empty {
                path: input.clone(),
            }
        } else {
            ReportError::NoHeader {
                path: input.clone(),
            }
        });
    }
    let finished = summary.clone().unwrap_or_default();
    for export in exports.iter_mut() {
        export
            .finish(&finished)
            .map_err(|error| ReportError::Write {
                path: export.path.clone(),
                error,
            })?;
    }
    if let (Some((path, folded)), Some(file)) = (flame.take(), flame_file) {
        write_flamegraph(&folded, header.as_ref(), file).map_err(|error| ReportError::Write {
            path: path.clone(),
            error,
        })?;
    }
    if summary.is_none() && outcome.warnings.is_empty() {
        outcome.warnings.push(format!(
            "{}: no summary line: the trace may be incomplete",
            input.display()
        ));
    }
    let text = render(header.as_ref(), summary.as_ref(), &targets, &by, *top);
    out.write_all(text.as_bytes())
        .map_err(|error| ReportError::Write {
            path: PathBuf::from("<stdout>"),
            error,
        })?;
    Ok(outcome)
}

/// One line of a JSONL trace: None for a blank line.
fn parse_line(bytes: &[u8]) -> Result<Option<TraceLine>, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| e.to_string())?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<TraceLine>(text)
        .map(Some)
        .map_err(|e| e.to_string())
}

impl TargetReport {
    /// Counts `hit` and its key in each breakdown of `by` (at most
    /// KEYS_LIMIT keys each; the rest counted as others).
    fn tally(&mut self, hit: &HitRecord, by: &[By]) {
        self.hits += 1;
        self.first_ns.get_or_insert(hit.ts_ns);
        self.last_ns = hit.ts_ns;
        for (i, b) in by.iter().enumerate() {
            if let Some(key) = b.key(hit) {
                let map = &mut self.breakdowns[i];
                if let Some(n) = map.get_mut(&key) {
                    *n += 1;
                } else if map.len() < KEYS_LIMIT {
                    map.insert(key, 1);
                } else {
                    self.other[i] += 1;
                }
            }
        }
    }
}

fn target_entry<'a>(
    targets: &'a mut Vec<(String, TargetReport)>,
    name: &str,
    keys: usize,
) -> &'a mut TargetReport {
    let index = match targets.iter().position(|(t, _)| t == name) {
        Some(i) => i,
        None => {
            targets.push((
                name.to_owned(),
                TargetReport {
                    breakdowns: vec![HashMap::new(); keys],
                    other: vec![0; keys],
                    ..Default::default()
                },
            ));
            targets.len() - 1
        }
    };
    &mut targets[index].1
}

/// The flame graph of `folded` as SVG, with stable colours (by name) so the
/// same trace always gives the same picture.
pub fn write_flamegraph(
    folded: &Folded,
    header: Option<&Header>,
    out: impl Write,
) -> io::Result<()> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = "hwbp-trace".to_owned();
    if let Some(h) = header {
        let targets: Vec<&str> = h.targets.iter().map(|t| t.target.as_str()).collect();
        options.subtitle = Some(format!(
            "{} on {} ({})",
            targets.join(", "),
            h.hostname,
            h.kernel_release
        ));
    }
    options.count_name = "hits".to_owned();
    options.hash = true;
    options.deterministic = true;
    let lines = folded.lines();
    if lines.is_empty() {
        // inferno refuses empty input; an empty trace still gets a picture.
        let mut out = out;
        return out.write_all(
            b"<?xml version=\"1.0\" standalone=\"no\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\"><text x=\"10\" y=\"25\">hwbp-trace: no hits</text></svg>\n",
        );
    }
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
}

fn render(
    header: Option<&Header>,
    summary: Option<&Summary>,
    targets: &[(String, TargetReport)],
    by: &[By],
    top: usize,
) -> String {
    let mut out = String::new();
    // Every string from the file is escaped: a trace may come from anyone,
    // and its comms and symbols from the traced program.
    if let Some(h) = header {
        let _ = writeln!(
            out,
            "trace of {} on {} ({}): {}",
            printable(&h.tool),
            printable(&h.hostname),
            printable(&h.kernel_release),
            printable(&h.command_line.join(" "))
        );
    }
    if let Some(s) = summary {
        // A file's numbers are input: saturate rather than overflow.
        let hits = s
            .targets
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.hits));
        let _ = writeln!(
            out,
            "{hits} hits in {:.1} s ({}); lost: {}",
            s.duration_s,
            printable(&s.end_reason),
            s.lost
        );
    }
    let summaries: HashMap<&str, &crate::record::format::TargetSummary> = summary
        .map(|s| s.targets.iter().map(|t| (t.target.as_str(), t)).collect())
        .unwrap_or_default();
    let symbols: HashMap<&str, (&str, &str)> = header
        .map(|h| {
            h.targets
                .iter()
                .map(|t| (t.target.as_str(), (t.symbol.as_str(), t.mode.as_str())))
                .collect()
        })
        .unwrap_or_default();

    let mut rows =
        vec![["TARGET", "SYMBOL", "MODE", "HITS", "DROPPED", "RATE/s"].map(str::to_owned)];
    for (name, t) in targets {
        let (symbol, mode) = symbols.get(name.as_str()).copied().unwrap_or(("", ""));
        let dropped = summaries
            .get(name.as_str())
            .map(|s| s.dropped.to_string())
            .unwrap_or_else(|| "-".into());
        let span_s = t
            .first_ns
            .map(|f| t.last_ns.saturating_sub(f) as f64 / 1e9)
            .unwrap_or(0.0);
        let rate = match summary.map(|s| s.duration_s).filter(|d| *d > 0.0) {
            Some(d) => format!("{:.1}", t.hits as f64 / d),
            None if span_s > 0.0 => format!("{:.1}", t.hits as f64 / span_s),
            None => "-".into(),
        };
        rows.push([
            printable(name).into_owned(),
            printable(symbol).into_owned(),
            printable(mode).into_owned(),
            t.hits.to_string(),
            dropped,
            rate,
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows, |i| i >= 3));

    for (i, b) in by.iter().enumerate() {
        for (name, t) in targets {
            let map = &t.breakdowns[i];
            if map.is_empty() {
                continue;
            }
            let mut entries: Vec<(&String, &u64)> = map.iter().collect();
            entries.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let _ = writeln!(
                out,
                "\n{} by {} ({} distinct):",
                printable(name),
                b.title(),
                map.len()
            );
            let mut rows = vec![["HITS", "SHARE", b.title()].map(str::to_owned)];
            let total = t.hits.max(1) as f64;
            for (key, n) in entries.iter().take(top) {
                rows.push([
                    n.to_string(),
                    format!("{:.1}%", **n as f64 * 100.0 / total),
                    (*key).clone(),
                ]);
            }
            let rest = entries
                .iter()
                .skip(top)
                .fold(0u64, |acc, (_, n)| acc.saturating_add(**n))
                .saturating_add(t.other[i]);
            if rest > 0 {
                rows.push([
                    rest.to_string(),
                    format!("{:.1}%", rest as f64 * 100.0 / total),
                    "[others]".to_owned(),
                ]);
            }
            out.push_str(&table(&rows, |i| i < 2));
        }
    }
    out
}

/// A report of `path` with the default breakdowns, as a string (tests).
pub fn report_string(path: &Path, by: &[By]) -> Result<(String, Outcome), ReportError> {
    let args = ReportArgs {
        input: path.to_owned(),
        by: by.to_vec(),
        top: 10,
        folded: None,
        perfetto: None,
        flamegraph: None,
    };
    let mut out = Vec::new();
    let outcome = run(&args, &mut out)?;
    Ok((String::from_utf8_lossy(&out).into_owned(), outcome))
}

/// The `report` subcommand: the text on stdout, warnings on stderr.
pub fn main(args: &ReportArgs) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let outcome = run(args, &mut out)?;
    out.flush()?;
    for warning in &outcome.warnings {
        eprintln!("hwbp-trace: warning: {warning}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace in a temporary file, removed on drop.
    struct TraceFile(PathBuf);

    impl TraceFile {
        fn new(name: &str, text: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("hwbp-report-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join("t.jsonl");
            std::fs::write(&path, text).expect("write trace");
            Self(path)
        }
    }

    impl Drop for TraceFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// A file with nothing to report is an error naming the file, whether
    /// empty, blank, or without the header every trace starts with.
    #[test]
    fn no_trace_is_an_error() {
        let hit = serde_json::to_string(&TraceLine::Hit(HitRecord::default())).expect("hit");
        for (name, text, empty) in [
            ("empty", String::new(), true),
            ("blank", "\n \n".to_owned(), true),
            ("headless", format!("{hit}\n{hit}\n"), false),
        ] {
            let file = TraceFile::new(name, &text);
            let error = report_string(&file.0, &[]).expect_err(name);
            let path = file.0.display();
            assert_eq!(
                error.to_string(),
                if empty {
                    format!(
                        "{path} is empty: it holds no trace line; give a file written with `hwbp-trace -o FILE.jsonl`"
                    )
                } else {
                    format!(
                        "{path}: no header line, which every trace starts with: not a whole trace written with `-o FILE.jsonl`; give the file as hwbp-trace wrote it"
                    )
                },
                "{name}"
            );
        }
    }

    /// `--top 0` is refused on the command line (exit status 2), saying
    /// what to give instead.
    #[test]
    fn top_zero_is_a_usage_error() {
        use clap::Parser as _;
        let parse = |top: &str| {
            crate::cli::Cli::try_parse_from(["hwbp-trace", "report", "t.jsonl", "--top", top])
        };
        let error = parse("0").expect_err("--top 0");
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().contains(
                "--top 0 would show no row: give the number of rows per breakdown, 1 or more (default 10)"
            ),
            "{error}"
        );
        assert!(parse("x").is_err());
        match parse("1").map(|cli| cli.command) {
            Ok(Some(crate::cli::Command::Report(args))) => assert_eq!(args.top, 1),
            other => panic!("{other:?}"),
        }
    }

    /// Comms and symbols from the traced program, and the header's strings,
    /// reach the report escaped: one line each, no escape sequence.
    #[test]
    fn the_report_escapes_control_characters() {
        let hit = |comm: &str| {
            serde_json::to_string(&TraceLine::Hit(HitRecord {
                ts_ns: 1_000_000_000,
                comm: comm.into(),
                target: "f\nx".into(),
                symbol: "f\nx".into(),
                mode: "x".into(),
                ip_sym: "f\nx+0x0".into(),
                ustack: vec!["f\nx+0x0".into(), "ma\x1bin+0x4".into()].into(),
                ..Default::default()
            }))
            .expect("serialize")
        };
        let header = serde_json::to_string(&TraceLine::Header(Header {
            format_version: crate::record::format::FORMAT_VERSION,
            tool: "hwbp-trace".into(),
            kernel_release: "6.1".into(),
            hostname: "h\x07".into(),
            start_unix_s: 0.0,
            start_monotonic_ns: 0,
            command_line: vec!["hwbp-trace".into(), "f\nx".into()],
            targets: vec![crate::record::format::TargetInfo {
                target: "f\nx".into(),
                symbol: "f\nx".into(),
                addr: "0x1000".into(),
                mode: "x".into(),
                len: 1,
                space: "user".into(),
            }],
        }))
        .expect("serialize");
        let summary = serde_json::to_string(&TraceLine::Summary(Summary {
            end_reason: "process-exit".into(),
            ..Default::default()
        }))
        .expect("serialize");
        let file = TraceFile::new(
            "escape",
            &[
                header,
                hit("\x1b[2J\x1b[41m"),
                hit("\x1b[2J\x1b[41m"),
                hit("a\nb"),
                summary,
            ]
            .join("\n"),
        );
        let (text, outcome) =
            report_string(&file.0, &[By::Comm, By::Caller, By::Stack]).expect("report");
        assert_eq!(outcome.hits, 3);
        assert_eq!(
            text,
            "trace of hwbp-trace on h\\x07 (6.1): hwbp-trace f\\nx\n\
             0 hits in 0.0 s (process-exit); lost: 0\n\
             \n\
             TARGET  SYMBOL  MODE  HITS  DROPPED  RATE/s\n\
             f\\nx    f\\nx    x        3        -       -\n\
             \n\
             f\\nx by comm (2 distinct):\n\
             HITS  SHARE  comm\n   \
             2  66.7%  \\e[2J\\e[41m\n   \
             1  33.3%  a\\nb\n\
             \n\
             f\\nx by caller (1 distinct):\n\
             HITS   SHARE  caller\n   \
             3  100.0%  ma\\ein\n\
             \n\
             f\\nx by stack (1 distinct):\n\
             HITS   SHARE  stack\n   \
             3  100.0%  f\\nx;ma\\ein;f\\nx\n"
        );
    }
}

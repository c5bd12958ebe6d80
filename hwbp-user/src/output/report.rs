//! `hwbp-trace report FILE.jsonl`: a recorded trace, summarized offline.
//!
//! The trace is streamed line by line: memory grows with the number of
//! distinct keys of the breakdowns asked for, never with the number of hits.
//! The same pass can write collapsed stacks, Perfetto JSON and a flame graph
//! (inferno). The hits and their breakdowns come from the kernel's
//! aggregate lines when the trace has them: every hit, recorded or not
//! (`--records sample:N|none`, drops). Values exist only in records, so
//! they come from the hit lines, called a sample when some hits have none;
//! an older trace without aggregate lines is read from its hit lines alone.
//! A last line cut short (the tracer was killed while writing)
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
    record::format::{AggregateRecord, Header, HitRecord, Summary, TargetSummary, TraceLine},
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
            Self::Comm => Some(comm_key(&hit.comm)),
            Self::Pid => Some(pid_key(hit.pid)),
            Self::Cpu => Some(cpu_key(hit.cpu)),
            Self::Caller => Some(caller_key(hit.caller())),
            // Escaped already, as in the .folded export.
            Self::Stack => Some(export::folded_stack(hit)),
            Self::Value => hit.value.map(|v| match &hit.value_text {
                Some(text) => printable(text).into_owned(),
                None => format!("{v:#x}"),
            }),
        }
    }

    /// The keys of an aggregate's hits, each with its number of hits: the
    /// key [`By::key`] gives each of those hits. Nothing for `value`, which
    /// only records carry.
    pub fn aggregate_keys(self, agg: &AggregateRecord, mut each: impl FnMut(String, u64)) {
        match self {
            Self::Comm => each(comm_key(&agg.comm), agg.count),
            Self::Pid => each(pid_key(agg.pid), agg.count),
            Self::Cpu => {
                let mut on_cpus = 0u64;
                for c in &agg.cpus {
                    on_cpus = on_cpus.saturating_add(c.hits);
                    each(cpu_key(c.cpu), c.hits);
                }
                // A line without its per-CPU hits (edited by hand): still
                // every hit, under no CPU.
                if on_cpus < agg.count {
                    each("[unknown]".to_owned(), agg.count - on_cpus);
                }
            }
            // The line's caller is the hits' (the rule of HitRecord::caller,
            // applied when the trace was written).
            Self::Caller => each(caller_key(&agg.caller), agg.count),
            Self::Stack => each(export::folded_aggregate(agg), agg.count),
            Self::Value => {}
        }
    }
}

fn comm_key(comm: &str) -> String {
    printable(comm).into_owned()
}

fn pid_key(pid: u32) -> String {
    pid.to_string()
}

fn cpu_key(cpu: u32) -> String {
    cpu.to_string()
}

fn caller_key(caller: &str) -> String {
    printable(caller).into_owned()
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

/// Hits and their breakdowns (one map per `--by` key), from one source.
#[derive(Debug, Default)]
struct Tally {
    hits: u64,
    breakdowns: Vec<HashMap<String, u64>>,
    other: Vec<u64>,
}

/// Per-target totals and breakdowns, filled as the trace streams by: from
/// the hit lines, and from the kernel's aggregates (every hit, recorded or
/// not). The aggregates come last, so both are kept until the end decides.
#[derive(Debug, Default)]
struct TargetReport {
    first_ns: Option<u64>,
    last_ns: u64,
    records: Tally,
    kernel: Tally,
}

/// What a report found, for callers that want more than the text.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Hit lines read.
    pub hits: u64,
    /// Every hit the trace's aggregate lines count, when it has any.
    pub counted: Option<u64>,
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
    let mut read = Lines::default();
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
                read.outcome.warnings.push(format!(
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
        read.take(line, &by, &mut exports, flame.as_mut().map(|(_, f)| f));
    }

    // Nothing to report is an error, not an empty report that a script
    // would take for a trace without hits.
    if read.header.is_none() {
        // No line at all, or blank ones only.
        let empty = read.outcome.hits == 0
            && read.outcome.counted.is_none()
            && read.summary.is_none()
            && read.outcome.warnings.is_empty();
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
    let exact = read.settle(input, &mut exports, flame.as_mut().map(|(_, f)| f));
    let finished = read.summary.clone().unwrap_or_default();
    for export in exports.iter_mut() {
        export
            .finish(&finished)
            .map_err(|error| ReportError::Write {
                path: export.path.clone(),
                error,
            })?;
    }
    if let (Some((path, folded)), Some(file)) = (flame.take(), flame_file) {
        write_flamegraph(&folded, read.header.as_ref(), file).map_err(|error| {
            ReportError::Write {
                path: path.clone(),
                error,
            }
        })?;
    }
    if read.summary.is_none() && read.outcome.warnings.is_empty() {
        read.outcome.warnings.push(format!(
            "{}: no summary line: the trace may be incomplete",
            input.display()
        ));
    }
    let text = render(
        read.header.as_ref(),
        read.summary.as_ref(),
        &read.targets,
        &by,
        *top,
        exact,
    );
    out.write_all(text.as_bytes())
        .map_err(|error| ReportError::Write {
            path: PathBuf::from("<stdout>"),
            error,
        })?;
    Ok(read.outcome)
}

/// What the lines read so far add up to.
#[derive(Debug, Default)]
struct Lines {
    header: Option<Header>,
    summary: Option<Summary>,
    targets: Vec<(String, TargetReport)>,
    outcome: Outcome,
}

impl Lines {
    /// Takes one line into the tallies, the exports and the flame graph.
    fn take(
        &mut self,
        line: TraceLine,
        by: &[By],
        exports: &mut [Export],
        flame: Option<&mut Folded>,
    ) {
        match line {
            TraceLine::Header(h) => {
                for export in exports.iter_mut() {
                    export.header(&h);
                }
                for t in &h.targets {
                    target_entry(&mut self.targets, &t.target, by.len());
                }
                self.header = Some(h);
            }
            TraceLine::Hit(hit) => {
                self.outcome.hits += 1;
                target_entry(&mut self.targets, &hit.target, by.len()).tally(&hit, by);
                for export in exports.iter_mut() {
                    export.hit(&hit);
                }
                if let Some(f) = flame {
                    f.add(&hit);
                }
            }
            TraceLine::Summary(s) => self.summary = Some(s),
            // Every hit, recorded or not: the breakdowns, the exports and
            // the flame graph take these counts over the hit lines'.
            TraceLine::Aggregate(agg) => {
                let counted = self.outcome.counted.get_or_insert(0);
                *counted = counted.saturating_add(agg.count);
                target_entry(&mut self.targets, &agg.target, by.len()).tally_aggregate(&agg, by);
                for export in exports.iter_mut() {
                    export.aggregate(&agg);
                }
                if let Some(f) = flame {
                    f.add_aggregate(&agg);
                }
            }
            // Its hits carry the target's new name already.
            TraceLine::Change(_) => {}
        }
    }

    /// Whether the hits and breakdowns are the aggregates' (`exact`). They
    /// are complete when the summary follows them; cut short, they could
    /// count fewer hits than the hit lines, which are then the report's
    /// and the files' (unless there are none), with a warning.
    fn settle(&mut self, input: &Path, exports: &mut [Export], flame: Option<&mut Folded>) -> bool {
        let partial = self.outcome.counted.is_some() && self.summary.is_none();
        let exact = self.outcome.counted.is_some() && !(partial && self.outcome.hits > 0);
        if partial {
            self.outcome.warnings.push(format!(
                "{}: the aggregate lines end without the summary line: they may be incomplete; the report counts {}",
                input.display(),
                if exact {
                    "them, as the trace has no hit line"
                } else {
                    "the hit lines instead"
                }
            ));
        }
        if partial && !exact {
            exports.iter_mut().for_each(Export::forget_aggregates);
            if let Some(f) = flame {
                f.forget_aggregates();
            }
        }
        exact
    }
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

impl Tally {
    fn new(keys: usize) -> Self {
        Self {
            hits: 0,
            breakdowns: vec![HashMap::new(); keys],
            other: vec![0; keys],
        }
    }

    /// Counts `n` hits under `key` in breakdown `i` (at most KEYS_LIMIT
    /// keys each; the rest counted as others). A file's counts are input:
    /// they saturate rather than overflow.
    fn count(&mut self, i: usize, key: String, n: u64) {
        let map = &mut self.breakdowns[i];
        if let Some(count) = map.get_mut(&key) {
            *count = count.saturating_add(n);
        } else if map.len() < KEYS_LIMIT {
            map.insert(key, n);
        } else {
            self.other[i] = self.other[i].saturating_add(n);
        }
    }
}

impl TargetReport {
    fn new(keys: usize) -> Self {
        Self {
            first_ns: None,
            last_ns: 0,
            records: Tally::new(keys),
            kernel: Tally::new(keys),
        }
    }

    /// Counts `hit` and its key in each breakdown of `by`.
    fn tally(&mut self, hit: &HitRecord, by: &[By]) {
        self.records.hits += 1;
        self.first_ns.get_or_insert(hit.ts_ns);
        self.last_ns = hit.ts_ns;
        for (i, b) in by.iter().enumerate() {
            if let Some(key) = b.key(hit) {
                self.records.count(i, key, 1);
            }
        }
    }

    /// Counts an aggregate's hits and their keys in each breakdown of `by`.
    fn tally_aggregate(&mut self, agg: &AggregateRecord, by: &[By]) {
        let kernel = &mut self.kernel;
        kernel.hits = kernel.hits.saturating_add(agg.count);
        for (i, b) in by.iter().enumerate() {
            b.aggregate_keys(agg, |key, n| kernel.count(i, key, n));
        }
    }

    /// The hits of the target: every one the aggregates counted when the
    /// trace has them (`exact`), else its hit lines.
    fn hits(&self, exact: bool) -> u64 {
        if exact {
            self.kernel.hits
        } else {
            self.records.hits
        }
    }

    /// Where breakdown `by` comes from: the aggregates when the trace has
    /// them, but values only ever from the records.
    fn tally_for(&self, by: By, exact: bool) -> &Tally {
        if exact && by != By::Value {
            &self.kernel
        } else {
            &self.records
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
            targets.push((name.to_owned(), TargetReport::new(keys)));
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

/// The text report. `exact`: the trace has aggregate lines, and the hits
/// and breakdowns (values aside) are theirs.
fn render(
    header: Option<&Header>,
    summary: Option<&Summary>,
    targets: &[(String, TargetReport)],
    by: &[By],
    top: usize,
    exact: bool,
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
        let sum = |f: fn(&TargetSummary) -> u64| {
            s.targets
                .iter()
                .fold(0u64, |acc, t| acc.saturating_add(f(t)))
        };
        let recorded = sum(|t| t.hits);
        let counted = sum(|t| t.counted);
        let hits = if exact && counted != recorded {
            format!(
                "{counted} hits ({recorded} recorded, --records {})",
                printable(&s.records)
            )
        } else {
            format!("{recorded} hits")
        };
        let _ = writeln!(
            out,
            "{hits} in {:.1} s ({}); lost: {}",
            s.duration_s,
            printable(&s.end_reason),
            s.lost
        );
    }
    let summaries: HashMap<&str, &TargetSummary> = summary
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
    out.push('\n');
    out.push_str(&targets_table(
        targets,
        &symbols,
        &summaries,
        summary.map(|s| s.duration_s),
        exact,
    ));
    out.push_str(&kernel_notes(targets, &summaries, exact));
    for (i, b) in by.iter().enumerate() {
        for (name, t) in targets {
            let mode = symbols.get(name.as_str()).map_or("", |(_, mode)| mode);
            out.push_str(&breakdown(name, mode, t, i, *b, top, exact));
        }
    }
    out
}

/// The table of targets: hits (every one counted, when `exact`), the
/// records among them when some hits have none, drops and rate.
fn targets_table(
    targets: &[(String, TargetReport)],
    symbols: &HashMap<&str, (&str, &str)>,
    summaries: &HashMap<&str, &TargetSummary>,
    duration_s: Option<f64>,
    exact: bool,
) -> String {
    // RECORDED only where it says something: a trace of every hit's
    // records reads as it always did.
    let recorded_column = exact && targets.iter().any(|(_, t)| t.records.hits != t.kernel.hits);
    let mut title = vec!["TARGET", "SYMBOL", "MODE", "HITS"];
    if recorded_column {
        title.push("RECORDED");
    }
    title.extend(["DROPPED", "RATE/s"]);
    let mut rows = vec![title.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for (name, t) in targets {
        let (symbol, mode) = symbols.get(name.as_str()).copied().unwrap_or(("", ""));
        let dropped = summaries
            .get(name.as_str())
            .map(|s| s.dropped.to_string())
            .unwrap_or_else(|| "-".into());
        let hits = t.hits(exact);
        let span_s = t
            .first_ns
            .map(|f| t.last_ns.saturating_sub(f) as f64 / 1e9)
            .unwrap_or(0.0);
        let rate = match duration_s.filter(|d| *d > 0.0) {
            Some(d) => format!("{:.1}", hits as f64 / d),
            None if span_s > 0.0 => format!("{:.1}", hits as f64 / span_s),
            None => "-".into(),
        };
        let mut row = vec![
            printable(name).into_owned(),
            printable(symbol).into_owned(),
            printable(mode).into_owned(),
            hits.to_string(),
        ];
        if recorded_column {
            row.push(t.records.hits.to_string());
        }
        row.extend([dropped, rate]);
        rows.push(row);
    }
    table(&rows, |i| i >= 3)
}

/// What the kernel's aggregates left out, per target, as the summary says
/// it: hits in no breakdown (`--max-keys`), hits without their stack
/// (`--max-stacks`).
fn kernel_notes(
    targets: &[(String, TargetReport)],
    summaries: &HashMap<&str, &TargetSummary>,
    exact: bool,
) -> String {
    let mut out = String::new();
    if !exact {
        return out;
    }
    for (name, _) in targets {
        let Some(s) = summaries.get(name.as_str()) else {
            continue;
        };
        let name = printable(name);
        if s.agg_full > 0 {
            let _ = writeln!(
                out,
                "{name}: {} hits are in no breakdown: the kernel's table of them was full; raise --max-keys",
                s.agg_full
            );
        }
        if s.stack_full > 0 {
            let _ = writeln!(
                out,
                "{name}: {} hits are counted without their stack (caller [unknown]): the kernel had no room left for more stacks; raise --max-stacks",
                s.stack_full
            );
        }
    }
    out
}

/// Breakdown `i` (by `by`) of target `name`: its `top` keys and the rest.
fn breakdown(
    name: &str,
    mode: &str,
    t: &TargetReport,
    i: usize,
    by: By,
    top: usize,
    exact: bool,
) -> String {
    let mut out = String::new();
    let tally = t.tally_for(by, exact);
    let map = &tally.breakdowns[i];
    // Values are per record: of a trace whose hits were not all recorded,
    // they are a sample, and say so.
    let sampled = by == By::Value && exact && t.records.hits < t.kernel.hits;
    if map.is_empty() {
        if sampled && mode != "x" {
            let _ = writeln!(
                out,
                "\n{} by value: none of its {} hits was recorded; values come from records only (see --records)",
                printable(name),
                t.kernel.hits
            );
        }
        return out;
    }
    let mut entries: Vec<(&String, &u64)> = map.iter().collect();
    entries.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let sample = if sampled {
        format!(
            "; a sample: the {} recorded of {} hits",
            t.records.hits, t.kernel.hits
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "\n{} by {} ({} distinct{sample}):",
        printable(name),
        by.title(),
        map.len()
    );
    let mut rows = vec![["HITS", "SHARE", by.title()].map(str::to_owned)];
    let total = tally.hits.max(1) as f64;
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
        .saturating_add(tally.other[i]);
    if rest > 0 {
        rows.push([
            rest.to_string(),
            format!("{:.1}%", rest as f64 * 100.0 / total),
            "[others]".to_owned(),
        ]);
    }
    out.push_str(&table(&rows, |i| i < 2));
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

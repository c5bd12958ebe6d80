//! Golden files for every output format, from one fixed JSONL trace
//! (tests/data/trace.jsonl: a kernel execute target with BTF-typed
//! arguments and a user write target with old → new values), and the
//! report of variants of it: without hit lines (`--records none`), with
//! records dropped, without aggregate lines, cut among them.
//!
//! `UPDATE_GOLDEN=1 cargo test -p hwbp-user --test golden` rewrites the
//! golden files; review the diff before committing it.

use std::{
    collections::BTreeMap,
    fs,
    io::BufRead as _,
    path::{Path, PathBuf},
};

use hwbp::{
    output::export::{Export, Folded, Format},
    output::report::{self, By, ReportError},
    record::format::{AggregateRecord, Header, HitRecord, Summary, TraceLine},
};
use serde_json::Value;

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

/// A directory of its own per test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hwbp-golden-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Compares `actual` with the golden file, or rewrites it under UPDATE_GOLDEN.
fn assert_golden(golden: &str, actual: &str) {
    let path = data(golden);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let expected = read(&path);
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .map_or_else(
                || "(lengths differ)".to_owned(),
                |i| format!("line {}", i + 1),
            );
        panic!(
            "{golden} differs at {first}; rerun with UPDATE_GOLDEN=1 to accept.\n--- expected\n{expected}\n--- actual\n{actual}"
        );
    }
}

/// The fixed trace: header, hits, the kernel's aggregates, summary.
struct Fixed {
    header: Header,
    hits: Vec<HitRecord>,
    aggregates: Vec<AggregateRecord>,
    summary: Summary,
}

fn parse_trace() -> Fixed {
    let file = fs::File::open(data("trace.jsonl")).expect("trace.jsonl");
    let (mut header, mut hits, mut aggregates, mut summary) = (None, Vec::new(), Vec::new(), None);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.expect("read");
        match serde_json::from_str::<TraceLine>(&line)
            .unwrap_or_else(|e| panic!("trace.jsonl:{}: {e}", i + 1))
        {
            TraceLine::Header(h) => header = Some(h),
            TraceLine::Hit(h) => hits.push(h),
            TraceLine::Aggregate(a) => aggregates.push(a),
            TraceLine::Summary(s) => summary = Some(s),
            TraceLine::Change(c) => panic!("trace.jsonl:{}: no change expected: {c:?}", i + 1),
        }
    }
    Fixed {
        header: header.expect("header"),
        hits,
        aggregates,
        summary: summary.expect("summary"),
    }
}

/// Writes the fixed trace in `format` and returns the file's text.
fn export(format: Format, file: &str) -> String {
    let scratch = Scratch::new(file);
    let path = scratch.path(file);
    let Fixed {
        header,
        hits,
        aggregates,
        summary,
    } = parse_trace();
    let mut export = Export::create(&path, Some(format)).expect("create");
    export.header(&header);
    for hit in &hits {
        export.hit(hit);
    }
    for agg in &aggregates {
        export.aggregate(agg);
    }
    export.finish(&summary).expect("finish");
    read(&path)
}

#[test]
fn jsonl_round_trips_byte_for_byte() {
    assert_eq!(export(Format::Jsonl, "t.jsonl"), read(&data("trace.jsonl")));
}

#[test]
fn txt_golden() {
    assert_golden("trace.txt", &export(Format::Txt, "t.txt"));
}

#[test]
fn folded_golden() {
    assert_golden("trace.folded", &export(Format::Folded, "t.folded"));
}

#[test]
fn perfetto_golden() {
    assert_golden(
        "trace.perfetto.json",
        &export(Format::Perfetto, "t.perfetto.json"),
    );
}

#[test]
fn report_golden() {
    let all = [By::Comm, By::Pid, By::Cpu, By::Caller, By::Stack, By::Value];
    let (text, outcome) = report::report_string(&data("trace.jsonl"), &all).expect("report");
    assert_eq!(outcome.hits, 7);
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_golden("report.txt", &text);
}

#[test]
fn perfetto_is_chrome_trace_events() {
    let text = export(Format::Perfetto, "s.perfetto.json");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    let events = json["traceEvents"].as_array().expect("traceEvents array");
    let Fixed { hits, .. } = parse_trace();

    // An instant event per hit, on its thread, with target, value and ip_sym.
    let instants: Vec<&Value> = events.iter().filter(|e| e["ph"] == "i").collect();
    assert_eq!(instants.len(), hits.len());
    for (event, hit) in instants.iter().zip(&hits) {
        assert_eq!(event["name"], &*hit.target);
        assert_eq!(event["s"], "t", "thread-scoped instant");
        assert_eq!(event["pid"], hit.pid);
        assert_eq!(event["tid"], hit.tid);
        assert_eq!(event["args"]["target"], &*hit.target);
        assert_eq!(event["args"]["ip_sym"], &*hit.ip_sym);
        let ts = event["ts"].as_f64().expect("ts in microseconds");
        assert_eq!(
            ts,
            (hit.ts_ns - 1_000_000_000) as f64 / 1000.0,
            "relative to the trace's start"
        );
        match hit.value {
            Some(v) => assert_eq!(event["args"]["value"], format!("{v:#x}")),
            None => assert!(
                event["args"]["args"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("file=0x")),
                "{event}"
            ),
        }
    }
    // Every thread that has events is named.
    for hit in &hits {
        assert!(
            events.iter().any(|e| e["ph"] == "M"
                && e["name"] == "thread_name"
                && e["tid"] == hit.tid
                && e["pid"] == hit.pid),
            "thread {} named",
            hit.tid
        );
    }
    // A counter track per target, counting up to the target's hits.
    for (target, total) in [("vfs_read", 4), ("counter:w", 3)] {
        let counts: Vec<u64> = events
            .iter()
            .filter(|e| e["ph"] == "C" && e["name"] == format!("hits {target}").as_str())
            .map(|e| e["args"]["hits"].as_u64().expect("hits"))
            .collect();
        assert_eq!(counts, (0..=total).collect::<Vec<u64>>(), "{target}");
    }
    // The written values of the data target, plotted.
    let values: Vec<u64> = events
        .iter()
        .filter(|e| e["ph"] == "C" && e["name"] == "value counter:w")
        .map(|e| e["args"]["value"].as_u64().expect("value"))
        .collect();
    assert_eq!(values, [1, 2, 4_294_967_295]);
    // Every event has the fields the Chrome format requires.
    for e in events {
        assert!(
            e["ph"].is_string() && e["name"].is_string() && e["pid"].is_u64(),
            "{e}"
        );
    }
}

#[test]
fn folded_feeds_inferno() {
    let Fixed { header, hits, .. } = parse_trace();
    let mut folded = Folded::default();
    for hit in &hits {
        folded.add(hit);
    }
    let mut svg = Vec::new();
    report::write_flamegraph(&folded, Some(&header), &mut svg).expect("flamegraph");
    let svg = String::from_utf8(svg).expect("utf-8");
    assert!(svg.starts_with("<?xml"), "{}", &svg[..100.min(svg.len())]);
    assert!(svg.contains("<svg"), "an SVG document");
    assert!(svg.trim_end().ends_with("</svg>"));
    // Each target is a root frame, with its hits.
    assert!(
        svg.contains("<title>vfs_read (4 hits, 57.14%)</title>"),
        "{svg}"
    );
    assert!(
        svg.contains("<title>counter:w (3 hits, 42.86%)</title>"),
        "{svg}"
    );
    // Kernel and user frames in one stack, inlined calls as frames.
    for frame in ["ksys_read", "app::fill", "app::load", "app::bump", "read"] {
        assert!(
            svg.contains(&format!("<title>{frame} (")),
            "frame {frame} in the flame graph"
        );
    }
    // Same input, same picture.
    let mut again = Vec::new();
    report::write_flamegraph(&folded, Some(&header), &mut again).expect("flamegraph");
    assert_eq!(svg.as_bytes(), again.as_slice());
}

#[test]
fn report_writes_every_format() {
    let scratch = Scratch::new("report-files");
    let args = report::ReportArgs {
        input: data("trace.jsonl"),
        by: vec![],
        top: 10,
        folded: Some(scratch.path("r.folded")),
        perfetto: Some(scratch.path("r.perfetto.json")),
        flamegraph: Some(scratch.path("r.svg")),
    };
    let mut out = Vec::new();
    report::run(&args, &mut out).expect("report");
    assert_eq!(read(&scratch.path("r.folded")), read(&data("trace.folded")));
    assert_eq!(
        read(&scratch.path("r.perfetto.json")),
        read(&data("trace.perfetto.json"))
    );
    assert!(read(&scratch.path("r.svg")).contains("<title>vfs_read (4 hits"));
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("vfs_read by comm (2 distinct):"), "{text}");
    assert!(text.contains("vfs_read by caller (1 distinct):"), "{text}");
}

#[test]
fn truncated_last_line_is_a_warning() {
    let scratch = Scratch::new("truncated");
    let full = read(&data("trace.jsonl"));
    // The lines before the last hit, and half of it, no newline (a
    // tracer killed while writing hits).
    let lines: Vec<&str> = full.lines().collect();
    let last = lines
        .iter()
        .rposition(|l| l.starts_with(r#"{"type":"hit""#))
        .expect("a hit line");
    let last_hit = lines[last];
    let cut = format!(
        "{}\n{}",
        lines[..last].join("\n"),
        &last_hit[..last_hit.len() / 2]
    );
    let path = scratch.path("cut.jsonl");
    fs::write(&path, cut).expect("write");
    let (text, outcome) =
        report::report_string(&path, &[By::Comm]).expect("a cut last line is not an error");
    assert_eq!(outcome.hits, 6, "the hits before the cut line");
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    assert!(
        outcome.warnings[0].contains("cut.jsonl:8: the last line is cut short"),
        "{:?}",
        outcome.warnings
    );
    // Without a summary, drops are unknown.
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("vfs_read "))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(row[..5], ["vfs_read", "vfs_read", "x", "3", "-"], "{text}");
}

#[test]
fn corrupt_line_is_an_error_with_its_number() {
    let scratch = Scratch::new("corrupt");
    let full = read(&data("trace.jsonl"));
    let mut lines: Vec<&str> = full.lines().collect();
    lines[3] = "{\"type\":\"hit\",\"ts_ns\":";
    let path = scratch.path("bad.jsonl");
    fs::write(&path, lines.join("\n") + "\n").expect("write");
    match report::report_string(&path, &[]) {
        Err(ReportError::Corrupt { line, .. }) => assert_eq!(line, 4),
        other => panic!("expected a corrupt-line error, got {other:?}"),
    }
    let message = report::report_string(&path, &[])
        .map(|_| ())
        .expect_err("corrupt")
        .to_string();
    assert!(
        message.contains("bad.jsonl:4: not a trace line"),
        "{message}"
    );
}

/// Writes `lines` as a JSONL trace at `path`.
fn write_trace(path: &Path, lines: impl IntoIterator<Item = TraceLine>) {
    let text: String = lines
        .into_iter()
        .map(|line| serde_json::to_string(&line).expect("serialize") + "\n")
        .collect();
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The fixed trace with the hit lines `keep` says to keep, its aggregates
/// if `aggregates`, and its summary as `edit` leaves it.
fn variant(
    path: &Path,
    keep: impl Fn(&HitRecord) -> bool,
    aggregates: bool,
    edit: impl FnOnce(&mut Summary),
) {
    let Fixed {
        header,
        hits,
        aggregates: aggs,
        mut summary,
    } = parse_trace();
    edit(&mut summary);
    let aggs = if aggregates { aggs } else { Vec::new() };
    write_trace(
        path,
        std::iter::once(TraceLine::Header(header))
            .chain(hits.into_iter().filter(|h| keep(h)).map(TraceLine::Hit))
            .chain(aggs.into_iter().map(TraceLine::Aggregate))
            .chain(std::iter::once(TraceLine::Summary(summary))),
    );
}

/// The sections of a report from its first breakdown on (`X by KEY`),
/// by title, the `(N distinct…)` left out.
fn sections(report: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for section in report.split("\n\n").skip(2) {
        let (title, rows) = section.split_once('\n').unwrap_or((section, ""));
        let title = title.split(" (").next().unwrap_or(title).to_owned();
        out.insert(title, rows.to_owned());
    }
    out
}

/// The words of the table row of `target` in a report.
fn target_row<'a>(report: &'a str, target: &str) -> Vec<&'a str> {
    report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(target))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default()
}

const ALL: [By; 6] = [By::Comm, By::Pid, By::Cpu, By::Caller, By::Stack, By::Value];

/// A `--records none` trace (header, aggregates, summary; no hit line)
/// reports every hit: the same counts and breakdowns as the trace of
/// every record, values aside, which it has none of and says so; its
/// folded file and flame graph count every hit too.
#[test]
fn report_of_a_records_none_trace_counts_every_hit() {
    let scratch = Scratch::new("records-none");
    let path = scratch.path("none.jsonl");
    variant(
        &path,
        |_| false,
        true,
        |s| {
            s.records = "none".into();
            for t in &mut s.targets {
                t.unsampled = t.counted;
                t.hits = 0;
            }
        },
    );
    let args = report::ReportArgs {
        input: path,
        by: ALL.to_vec(),
        top: 10,
        folded: Some(scratch.path("none.folded")),
        perfetto: None,
        flamegraph: Some(scratch.path("none.svg")),
    };
    let mut out = Vec::new();
    let outcome = report::run(&args, &mut out).expect("report");
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(outcome.hits, 0, "no hit line");
    assert_eq!(outcome.counted, Some(7), "every hit in the aggregates");
    assert_golden("report-none.txt", &text);
    assert!(
        text.contains("\n7 hits (0 recorded, --records none) in 4.0 s"),
        "{text}"
    );
    assert_eq!(
        target_row(&text, "vfs_read"),
        ["vfs_read", "vfs_read", "x", "4", "0", "0", "1.0"],
        "HITS, RECORDED, DROPPED, RATE/s: {text}"
    );
    assert_eq!(
        target_row(&text, "counter:w"),
        ["counter:w", "counter", "w", "3", "0", "0", "0.8"],
        "{text}"
    );
    // Every breakdown but the values is the full trace's.
    let (full, _) = report::report_string(&data("trace.jsonl"), &ALL).expect("full report");
    let (mut expected, mut actual) = (sections(&full), sections(&text));
    assert_eq!(expected.remove("counter:w by value").map(|_| ()), Some(()));
    assert_eq!(
        actual.remove(
            "counter:w by value: none of its 3 hits was recorded; values come from records only"
        ),
        Some(String::new()),
        "{text}"
    );
    assert_eq!(actual, expected);
    assert_eq!(actual.len(), 10, "five breakdowns of two targets");
    assert!(
        text.contains("   4  100.0%  ksys_read\n")
            && text.contains("   2  66.7%  app::bump\n")
            && text.contains("   1  33.3%  app::reset\n"),
        "{text}"
    );
    // The files it writes count the same hits.
    assert_eq!(
        read(&scratch.path("none.folded")),
        read(&data("trace.folded"))
    );
    let svg = read(&scratch.path("none.svg"));
    assert!(
        svg.contains("<title>vfs_read (4 hits, 57.14%)</title>"),
        "{svg}"
    );
    assert!(
        svg.contains("<title>counter:w (3 hits, 42.86%)</title>"),
        "{svg}"
    );
}

/// Records dropped (the last vfs_read hit, the second write): the report
/// still counts and breaks down every hit from the aggregates, shows the
/// records beside them, and calls the values what they are, a sample.
#[test]
fn report_counts_hits_whose_records_were_dropped() {
    let scratch = Scratch::new("dropped");
    let path = scratch.path("dropped.jsonl");
    let dropped = |h: &HitRecord| h.ts_ns == 1_004_000_000 || h.value == Some(2);
    variant(
        &path,
        |h| !dropped(h),
        true,
        |s| {
            for t in &mut s.targets {
                t.hits -= 1;
                t.dropped = 1;
            }
            s.lost = 2;
        },
    );
    let (text, outcome) = report::report_string(&path, &ALL).expect("report");
    assert_eq!(outcome.hits, 5);
    assert_eq!(outcome.counted, Some(7));
    assert!(
        text.contains("\n7 hits (5 recorded, --records all) in 4.0 s (process-exit); lost: 2\n"),
        "{text}"
    );
    assert_eq!(
        target_row(&text, "vfs_read"),
        ["vfs_read", "vfs_read", "x", "4", "3", "1", "1.0"],
        "{text}"
    );
    assert_eq!(
        target_row(&text, "counter:w"),
        ["counter:w", "counter", "w", "3", "2", "1", "0.8"],
        "{text}"
    );
    let (full, _) = report::report_string(&data("trace.jsonl"), &ALL).expect("full report");
    let (mut expected, mut actual) = (sections(&full), sections(&text));
    expected.remove("counter:w by value");
    let values = actual.remove("counter:w by value").expect("values");
    assert_eq!(actual, expected, "every breakdown but the values is exact");
    assert!(
        text.contains("\ncounter:w by value (2 distinct; a sample: the 2 recorded of 3 hits):\n"),
        "{text}"
    );
    assert_eq!(
        values,
        "HITS  SHARE  value\n   1  50.0%  0x1\n   1  50.0%  0xffffffff\n"
    );

    // The same trace without its aggregate lines (an older trace): the
    // hit lines, as before aggregates existed.
    let old = scratch.path("old.jsonl");
    variant(
        &old,
        |h| !dropped(h),
        false,
        |s| {
            for t in &mut s.targets {
                t.hits -= 1;
                t.dropped = 1;
                t.counted = 0;
            }
            s.lost = 2;
        },
    );
    let (text, outcome) = report::report_string(&old, &ALL).expect("report");
    assert_eq!((outcome.hits, outcome.counted), (5, None));
    assert!(text.contains("\n5 hits in 4.0 s"), "{text}");
    assert_eq!(
        target_row(&text, "vfs_read"),
        ["vfs_read", "vfs_read", "x", "3", "1", "0.8"],
        "{text}"
    );
    assert!(
        text.contains(
            "\nvfs_read by caller (1 distinct):\nHITS   SHARE  caller\n   3  100.0%  ksys_read\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\ncounter:w by value (2 distinct):\n"),
        "{text}"
    );
}

/// The fixed trace without its aggregate lines reports as it always did.
#[test]
fn report_without_aggregates_reads_the_hit_lines() {
    let scratch = Scratch::new("no-aggregates");
    let path = scratch.path("old.jsonl");
    variant(&path, |_| true, false, |_| {});
    let (text, outcome) = report::report_string(&path, &ALL).expect("report");
    assert_eq!((outcome.hits, outcome.counted), (7, None));
    assert_eq!(text, read(&data("report.txt")));
}

/// A trace cut among its aggregate lines (no summary after them): those
/// may be incomplete, so the report counts the hit lines, and says so; a
/// trace with no hit line counts the aggregates it has.
#[test]
fn aggregates_without_the_summary_may_be_incomplete() {
    let scratch = Scratch::new("partial-aggregates");
    let full = read(&data("trace.jsonl"));
    let lines: Vec<&str> = full.lines().collect();
    // Header, 7 hits, the first 2 of 4 aggregates (3 vfs_read, 2 writes).
    let cut = scratch.path("cut.jsonl");
    fs::write(&cut, lines[..10].join("\n") + "\n").expect("write");
    let args = report::ReportArgs {
        input: cut.clone(),
        by: ALL.to_vec(),
        top: 10,
        folded: Some(scratch.path("cut.folded")),
        perfetto: None,
        flamegraph: Some(scratch.path("cut.svg")),
    };
    let mut out = Vec::new();
    let outcome = report::run(&args, &mut out).expect("report");
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!((outcome.hits, outcome.counted), (7, Some(5)));
    // The files count the hit lines too, not the 5 hits of the aggregates.
    assert_eq!(
        read(&scratch.path("cut.folded")),
        read(&data("trace.folded"))
    );
    assert!(
        read(&scratch.path("cut.svg")).contains("<title>vfs_read (4 hits, 57.14%)</title>"),
        "the flame graph of the hit lines"
    );
    assert_eq!(
        outcome.warnings,
        [format!(
            "{}: the aggregate lines end without the summary line: they may be incomplete; the report counts the hit lines instead",
            cut.display()
        )]
    );
    let old = scratch.path("old.jsonl");
    variant(&old, |_| true, false, |_| {});
    let (expected, _) = report::report_string(&old, &ALL).expect("report");
    assert_eq!(sections(&text), sections(&expected));
    assert_eq!(target_row(&text, "vfs_read")[3], "4", "{text}");

    let none = scratch.path("none.jsonl");
    let no_hits: Vec<&str> = lines[..10]
        .iter()
        .copied()
        .filter(|l| !l.starts_with(r#"{"type":"hit""#))
        .collect();
    fs::write(&none, no_hits.join("\n") + "\n").expect("write");
    let (text, outcome) = report::report_string(&none, &[By::Comm]).expect("report");
    assert_eq!((outcome.hits, outcome.counted), (0, Some(5)));
    assert!(
        outcome.warnings[0].ends_with("the report counts them, as the trace has no hit line"),
        "{:?}",
        outcome.warnings
    );
    assert_eq!(
        target_row(&text, "vfs_read"),
        ["vfs_read", "vfs_read", "x", "3", "0", "-", "-"],
        "{text}"
    );
    assert_eq!(
        target_row(&text, "counter:w"),
        ["counter:w", "counter", "w", "2", "0", "-", "-"],
        "{text}"
    );
}

/// An aggregate's keys are its hits' keys, each with its count; its
/// hits on no listed CPU still count, under `[unknown]`.
#[test]
fn aggregate_keys_count_every_hit() {
    let agg = AggregateRecord {
        target: "t".into(),
        ip_sym: "f+0x0".into(),
        pid: 7,
        comm: "a\nb".into(),
        count: 5,
        cpus: vec![hwbp::record::format::CpuHits { cpu: 2, hits: 3 }],
        caller: "g".into(),
        stack_stored: true,
        ..Default::default()
    };
    let keys = |by: By| {
        let mut out = Vec::new();
        by.aggregate_keys(&agg, |key, n| out.push((key, n)));
        out
    };
    let one = |key: &str| vec![(key.to_owned(), 5)];
    assert_eq!(keys(By::Comm), one("a\\nb"));
    assert_eq!(keys(By::Pid), one("7"));
    assert_eq!(keys(By::Caller), one("g"));
    assert_eq!(keys(By::Stack), one("t;f"));
    assert_eq!(
        keys(By::Cpu),
        [("2".to_owned(), 3), ("[unknown]".to_owned(), 2)]
    );
    assert_eq!(keys(By::Value), []);
}

/// Hits the kernel could not place in its tables (`--max-keys`,
/// `--max-stacks`) are said under the table, per target.
#[test]
fn report_says_what_full_kernel_tables_left_out() {
    let scratch = Scratch::new("full-tables");
    let path = scratch.path("full.jsonl");
    variant(
        &path,
        |_| true,
        true,
        |s| {
            s.targets[0].agg_full = 2;
            s.targets[1].stack_full = 1;
        },
    );
    let (text, _) = report::report_string(&path, &[By::Comm]).expect("report");
    assert!(
        text.contains(
            "counter:w  counter   w        3        0     0.8\n\
             vfs_read: 2 hits are in no breakdown: the kernel's table of them was full; raise --max-keys\n\
             counter:w: 1 hits are counted without their stack (caller [unknown]): the kernel had no room left for more stacks; raise --max-stacks\n\n"
        ),
        "{text}"
    );
}

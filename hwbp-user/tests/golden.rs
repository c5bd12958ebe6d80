//! Golden files for every output format, from one fixed JSONL trace
//! (tests/data/trace.jsonl: a kernel execute target with BTF-typed
//! arguments and a user write target with old → new values).
//!
//! `UPDATE_GOLDEN=1 cargo test -p hwbp-user --test golden` rewrites the
//! golden files; review the diff before committing it.

use std::{
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

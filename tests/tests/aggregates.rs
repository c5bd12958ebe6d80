//! Root integration tests: the kernel's exact aggregates (`--records
//! all|sample:N|none`). The fixture calls (or writes) its target from three
//! call sites a known number of times each (`fx_user sites A B C`); every
//! record mode must count each site exactly, with a ring buffer too small
//! to hold the records too, and say what full maps left out.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{collections::BTreeMap, fs};

use hwbp_tests::traces::{fx, read_full_trace};
use hwbp_tests::{TempDir, harness::trace::Trace, root_or_skip, run, stderr};
use serde_json::Value;

/// The fixture's three call sites and how often each calls or writes.
const SITES: [(&str, u64); 3] = [("fx_site_a", 50), ("fx_site_b", 120), ("fx_site_c", 7)];
const TOTAL: u64 = 50 + 120 + 7;

/// Traces `fx_user MODE 50 120 7` with `args`, into `t.jsonl` and
/// `t.folded` in `dir`.
fn trace_sites(dir: &TempDir, target: &str, mode: &str, args: &[&str]) -> (Trace, String) {
    let (jsonl, folded, fx) = (dir.path("t.jsonl"), dir.path("t.folded"), fx());
    let counts = SITES.map(|(_, n)| n.to_string());
    let mut all = vec!["--no-tui", "-q", "-o", &jsonl, "-o", &folded];
    all.extend(args);
    all.extend([target, "--", &fx, mode]);
    all.extend(counts.iter().map(String::as_str));
    let out = run(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    let folded = fs::read_to_string(&folded).expect("reading the folded file");
    (read_full_trace(&jsonl), folded)
}

/// The call site a stack goes through: the function of its `fx_site_*`
/// frame (a write's own frame, or an execute hit's caller).
fn site<'a>(frames: impl IntoIterator<Item = &'a str>) -> String {
    frames
        .into_iter()
        .find(|f| f.starts_with("fx_site_"))
        .map(|f| f.split('+').next().unwrap_or(f).to_owned())
        .unwrap_or_else(|| "[no site]".to_owned())
}

/// Hits per call site in the aggregates.
fn by_site(trace: &Trace) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for agg in &trace.aggregates {
        let frames = agg["ustack"].as_array().expect("ustack");
        let site = site(frames.iter().filter_map(Value::as_str));
        *out.entry(site).or_default() += agg["count"].as_u64().expect("count");
    }
    out
}

/// Hits per caller in the aggregates.
fn by_caller(trace: &Trace) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for agg in &trace.aggregates {
        let caller = agg["caller"].as_str().expect("caller").to_owned();
        *out.entry(caller).or_default() += agg["count"].as_u64().expect("count");
    }
    out
}

/// Hits per call site in the folded file.
fn folded_by_site(folded: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').expect("stack count");
        *out.entry(site(stack.split(';'))).or_default() += n.parse::<u64>().expect("count");
    }
    out
}

/// Hits per call site in `hwbp-trace report t.jsonl --by caller --by
/// stack`: its caller table (an execute hit's caller, a write's own
/// function) and its stack table, each read by site.
fn report_by_site(dir: &TempDir) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let jsonl = dir.path("t.jsonl");
    let out = run(&[
        "report", &jsonl, "--by", "caller", "--by", "stack", "--top", "1000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (mut callers, mut stacks) = (BTreeMap::new(), BTreeMap::new());
    for section in text.split("\n\n") {
        let mut lines = section.lines();
        let title = lines.next().unwrap_or_default();
        let table = if title.contains(" by caller (") {
            &mut callers
        } else if title.contains(" by stack (") {
            &mut stacks
        } else {
            continue;
        };
        // Under the column titles: `HITS  SHARE  KEY`, a key with spaces
        // maybe (`<F as FnOnce>::call_once`).
        for row in lines.skip(1) {
            let cell = |s: &str| {
                let s = s.trim_start();
                s.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned()))
            };
            let (hits, rest) = cell(row).unwrap_or_else(|| panic!("{row}\n{text}"));
            let (_share, key) = cell(&rest).unwrap_or_else(|| panic!("{row}\n{text}"));
            let hits: u64 = hits
                .parse()
                .unwrap_or_else(|e| panic!("{row}: {e}\n{text}"));
            *table.entry(key.trim_start().to_owned()).or_default() += hits;
        }
    }
    let stacks = stacks
        .into_iter()
        .fold(BTreeMap::new(), |mut acc, (stack, n)| {
            *acc.entry(site(stack.split(';'))).or_default() += n;
            acc
        });
    (callers, stacks)
}

fn expected() -> BTreeMap<String, u64> {
    SITES.iter().map(|&(s, n)| (s.to_owned(), n)).collect()
}

fn target(trace: &Trace) -> &Value {
    &trace.summary["targets"][0]
}

/// Records the program made of each CPU's hits under `--records sample:N`:
/// the first and every Nth after it, per CPU.
fn sampled(trace: &Trace, every: u64) -> u64 {
    let mut per_cpu: BTreeMap<String, u64> = BTreeMap::new();
    for agg in &trace.aggregates {
        for c in agg["cpus"].as_array().expect("cpus") {
            *per_cpu.entry(c["cpu"].to_string()).or_default() += c["hits"].as_u64().expect("hits");
        }
    }
    per_cpu.values().map(|n| n.div_ceil(every)).sum()
}

#[test]
fn every_record_mode_counts_each_call_site_exactly() {
    if !root_or_skip("every_record_mode_counts_each_call_site_exactly") {
        return;
    }
    for (target_name, mode) in [
        ("hwbp_fx_target", "sites"),
        ("HWBP_FX_COUNTER:w", "sitewrites"),
    ] {
        for records in ["all", "sample:10", "none"] {
            let dir = TempDir::new("aggregates");
            let (trace, folded) = trace_sites(&dir, target_name, mode, &["--records", records]);
            let t = target(&trace);
            let what = format!("{target_name} --records {records}: {t}");
            assert_eq!(t["kernel_count"], TOTAL, "{what}");
            assert_eq!(t["counted"], TOTAL, "{what}");
            assert_eq!(trace.summary["records"], records, "{what}");
            assert_eq!(by_site(&trace), expected(), "{what}");
            assert_eq!(folded_by_site(&folded), expected(), "{what}");
            // The report counts every call from the aggregates, in every
            // mode: by stack, per site.
            let (callers, stacks) = report_by_site(&dir);
            assert_eq!(stacks, expected(), "report --by stack: {what}");
            if mode == "sites" {
                assert_eq!(callers, expected(), "report --by caller: {what}");
            } else {
                // A write's caller is the function at the store: the inlined
                // atomic store, the same in all three sites.
                assert_eq!(callers, by_caller(&trace), "report --by caller: {what}");
                assert_eq!(callers.values().sum::<u64>(), TOTAL, "{what}");
            }
            let recorded = match records {
                "all" => TOTAL,
                "none" => 0,
                _ => sampled(&trace, 10),
            };
            assert_eq!(trace.hits.len() as u64, recorded, "{what}");
            assert_eq!(t["hits"], recorded, "{what}");
            assert_eq!(
                t["unsampled"].as_u64().unwrap_or(0),
                TOTAL - recorded,
                "{what}"
            );
            assert_eq!(trace.summary["lost"], 0, "{what}");
        }
    }
}

/// A ring buffer of one page holds a dozen records: most are dropped, and
/// counted as dropped, while the aggregates still count every call.
#[test]
fn aggregates_stay_exact_when_records_are_dropped() {
    if !root_or_skip("aggregates_stay_exact_when_records_are_dropped") {
        return;
    }
    let dir = TempDir::new("aggregates-drops");
    let (trace, folded) = trace_sites(&dir, "hwbp_fx_target", "sites", &["--buffer-size", "4096"]);
    let t = target(&trace);
    let dropped = t["dropped"].as_u64().expect("dropped");
    assert!(
        dropped > 0,
        "no record dropped: the test proves nothing: {t}"
    );
    assert_eq!(t["hits"].as_u64().expect("hits") + dropped, TOTAL, "{t}");
    assert_eq!(t["counted"], TOTAL, "{t}");
    assert_eq!(by_site(&trace), expected(), "{t}");
    assert_eq!(folded_by_site(&folded), expected(), "{t}");
}

/// Maps too small for the distinct stacks and keys: the first site's fit,
/// the others' hits are counted and said, never silently left out.
#[test]
fn full_aggregate_maps_are_counted_and_said() {
    if !root_or_skip("full_aggregate_maps_are_counted_and_said") {
        return;
    }
    let later: u64 = SITES[1].1 + SITES[2].1;
    let dir = TempDir::new("aggregates-full");
    let (trace, _) = trace_sites(&dir, "hwbp_fx_target", "sites", &["--max-stacks", "1"]);
    let t = target(&trace);
    assert_eq!(t["stack_full"], later, "{t}");
    assert_eq!(t["counted"], TOTAL, "{t}");
    let unstored: u64 = trace
        .aggregates
        .iter()
        .filter(|a| a["stack_stored"] == false)
        .map(|a| a["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(unstored, later, "{:#?}", trace.aggregates);

    let dir = TempDir::new("aggregates-keys");
    let (trace, _) = trace_sites(&dir, "hwbp_fx_target", "sites", &["--max-keys", "1"]);
    let t = target(&trace);
    assert_eq!(t["agg_full"], later, "{t}");
    assert_eq!(t["counted"], TOTAL, "{t}");
    let first: BTreeMap<String, u64> = [(SITES[0].0.to_owned(), SITES[0].1)].into();
    assert_eq!(by_site(&trace), first, "{t}");
    let out = run(&[
        "--no-tui",
        "-q",
        "--max-keys",
        "1",
        "hwbp_fx_target",
        "--",
        &fx(),
        "sites",
        "50",
        "120",
        "7",
    ]);
    assert!(
        stderr(&out).contains("hits are in no breakdown by process or stack")
            || String::from_utf8_lossy(&out.stdout).contains("raise --max-keys"),
        "{}",
        stderr(&out)
    );
}

/// Each bad value is one message and exit 2, before anything is armed.
#[test]
fn bad_record_options_are_refused_with_one_message() {
    for (args, says) in [
        (&["--records", "sample:0"][..], "whole number from 1"),
        (&["--records", "some"][..], "is not a record mode"),
        (&["--max-keys", "0"][..], "--max-keys"),
        (&["--max-stacks", "x"][..], "--max-stacks"),
        (
            &["--records", "none", "-n", "5"][..],
            "-n counts recorded hits",
        ),
    ] {
        let mut all = args.to_vec();
        all.extend(["hwbp_fx_target", "--", "true"]);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

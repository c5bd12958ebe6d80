//! The summary table printed when a trace ends, and the column layout it
//! shares with `hwbp-trace report`.

use crate::{
    printable::{plural, printable},
    record::format::Summary,
};

/// Columns padded to their widest cell; `numeric` ones aligned right.
/// Rows are arrays, or vectors where the columns depend on the data.
pub fn table<R: AsRef<[String]>>(rows: &[R], numeric: fn(usize) -> bool) -> String {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if numeric(i) {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn summary_table(summary: &Summary) -> String {
    // With records of only some hits (`--records sample:N|none`), HITS is
    // every hit the kernel counted and RECORDED the lines in the trace;
    // with all of them, the two differ only by the drops, and HITS is the
    // lines, as it always was.
    let sampled = summary.records != "all" && !summary.records.is_empty();
    let mut header: Vec<String> = ["TARGET", "SYMBOL", "ADDRESS", "MODE", "HITS"]
        .map(str::to_owned)
        .into();
    if sampled {
        header.push("RECORDED".to_owned());
    }
    header.push("DROPPED".to_owned());
    let mut rows = vec![header];
    // A target's name may come from the traced program (a symbol): one
    // row, whatever it holds.
    let cell = |s: &str| printable(s).into_owned();
    for t in &summary.targets {
        let removed = if t.removed { " (removed)" } else { "" };
        let mut row = vec![
            cell(&t.target) + removed,
            cell(&t.symbol),
            cell(&t.addr),
            cell(&t.mode),
        ];
        if sampled {
            row.push(t.counted.to_string());
        }
        row.extend([t.hits.to_string(), t.dropped.to_string()]);
        rows.push(row);
        // A target moved while tracing: what it watched in turn, its hits
        // there (lines in the trace: shown only when they are every hit).
        if sampled {
            continue;
        }
        for (i, w) in t.watches.iter().enumerate() {
            rows.push(vec![
                format!("  {}. {}", i + 1, cell(&w.target)),
                cell(&w.symbol),
                cell(&w.addr),
                cell(&w.mode),
                w.hits.to_string(),
                String::new(),
            ]);
        }
    }
    let mut out = String::from("\n");
    out.push_str(&table(&rows, |i| i >= 4));
    let hits = summary
        .targets
        .iter()
        .map(|t| if sampled { t.counted } else { t.hits })
        .sum();
    out.push_str(&totals(summary, hits));
    if sampled {
        out.push_str(&format!(
            "hwbp-trace: records: {} (counts, stacks and callers are exact: the kernel counted every hit)\n",
            summary.records
        ));
    }
    out
}

/// The line of totals under the table, `hits` hits in all, and the notes
/// on hits not recorded.
fn totals(summary: &Summary, hits: u64) -> String {
    let mut out = format!(
        "{} in {:.1} s ({}); lost: {}",
        plural(hits as usize, "hit", "hits"),
        summary.duration_s,
        summary.end_reason,
        summary.lost
    );
    let filtered: u64 = summary.targets.iter().map(|t| t.filtered).sum();
    let stack_errors: u64 = summary
        .targets
        .iter()
        .map(|t| t.kstack_errors + t.ustack_errors)
        .sum();
    let after: u64 = summary.targets.iter().map(|t| t.after_limit).sum();
    if filtered > 0 {
        out.push_str(&format!("; filtered out: {filtered}"));
    }
    let rejected: u64 = summary.targets.iter().map(|t| t.rejected).sum();
    if rejected > 0 {
        out.push_str(&format!("; rejected by conditions: {rejected}"));
    }
    let retraps: u64 = summary.targets.iter().map(|t| t.retraps).sum();
    if retraps > 0 {
        out.push_str(&format!(
            "; traps repeated after an interrupt (arm64, not hits): {retraps}"
        ));
    }
    if stack_errors > 0 {
        out.push_str(&format!("; stacks not captured: {stack_errors}"));
    }
    if after > 0 {
        out.push_str(&format!("; not recorded after -n: {after}"));
    }
    match (&summary.signal, summary.exit_status) {
        (Some(signal), _) => out.push_str(&format!("; command killed by {signal}")),
        (None, Some(status)) => out.push_str(&format!("; command exited with status {status}")),
        (None, None) => {}
    }
    out.push('\n');
    let dropped: u64 = summary.targets.iter().map(|t| t.dropped).sum();
    let missed: u64 = summary.targets.iter().map(|t| t.missed).sum();
    let busy: u64 = summary.targets.iter().map(|t| t.dropped_busy).sum();
    let full = dropped.saturating_sub(busy);
    if full > 0 {
        out.push_str(&format!(
            "hwbp-trace: {} lost because the ring buffer was full: raise --buffer-size\n",
            plural(full as usize, "hit was", "hits were")
        ));
    }
    if busy > 0 {
        out.push_str(&format!(
            "hwbp-trace: {} lost with room left in the ring buffer: another CPU held its lock \
             through every try (a virtual CPU stopped by its host while writing a record?); \
             --records sample:N or none keep the counts exact (docs/lost-events.md)\n",
            plural(busy as usize, "hit was", "hits were")
        ));
    }
    if missed > 0 {
        out.push_str(&format!(
            "hwbp-trace: the kernel counted {missed} hits that never reached the BPF program \
             (another BPF program was running on that CPU); the HITS column misses them\n"
        ));
    }
    let unrecorded: u64 = summary.targets.iter().map(|t| t.unrecorded).sum();
    if unrecorded > 0 {
        out.push_str(&format!(
            "hwbp-trace: {unrecorded} hits were recorded by the kernel but never written: \
             tracing ended on an error before they were read\n"
        ));
    }
    let agg_full: u64 = summary.targets.iter().map(|t| t.agg_full).sum();
    if agg_full > 0 {
        out.push_str(&format!(
            "hwbp-trace: {agg_full} hits are in no breakdown by process or stack: the kernel's \
             table of them was full; raise --max-keys\n"
        ));
    }
    let stack_full: u64 = summary.targets.iter().map(|t| t.stack_full).sum();
    if stack_full > 0 {
        out.push_str(&format!(
            "hwbp-trace: {stack_full} hits are counted without their stack: the kernel had no \
             room left for more stacks; raise --max-stacks\n"
        ));
    }
    if summary.signal.as_deref() == Some("SIGTRAP") {
        out.push_str(
            "hwbp-trace: the command died of SIGTRAP (status 133). Unless it traps itself, a \
             breakpoint hit reached the kernel without its cause (DR6 empty), which some virtual \
             machines do: that hit is in no count. `hwbp-trace doctor` checks this host\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {

    /// With records of only some hits, HITS is what the kernel counted and
    /// RECORDED the lines; full maps are said with what to raise.
    #[test]
    fn a_sampled_run_shows_counted_and_recorded_hits() {
        let text = summary_table(&Summary {
            records: "sample:10".into(),
            end_reason: "signal".into(),
            targets: vec![crate::record::format::TargetSummary {
                target: "t".into(),
                hits: 10,
                counted: 95,
                unsampled: 85,
                agg_full: 4,
                stack_full: 6,
                ..Default::default()
            }],
            ..Summary::default()
        });
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[1],
            [
                "TARGET", "SYMBOL", "ADDRESS", "MODE", "HITS", "RECORDED", "DROPPED"
            ]
        );
        assert_eq!(rows[2], ["t", "95", "10", "0"]);
        assert!(text.contains("95 hits in"), "{text}");
        assert!(text.contains("records: sample:10"), "{text}");
        assert!(
            text.contains("4 hits are in no breakdown") && text.contains("--max-keys"),
            "{text}"
        );
        assert!(
            text.contains("6 hits are counted without their stack")
                && text.contains("--max-stacks"),
            "{text}"
        );
    }

    use super::*;

    /// Drops with room left are not a full buffer: raising --buffer-size
    /// would not help them, so each cause has its own advice.
    #[test]
    fn drops_are_said_by_their_cause() {
        let said = |dropped, dropped_busy| {
            summary_table(&Summary {
                end_reason: "signal".into(),
                lost: dropped,
                targets: vec![crate::record::format::TargetSummary {
                    target: "t".into(),
                    hits: 100 - dropped,
                    dropped,
                    dropped_busy,
                    retried: 40,
                    ..Default::default()
                }],
                ..Summary::default()
            })
        };
        let both = said(7, 3);
        assert!(
            both.contains("lost: 7\n")
                && both.contains(
                    "4 hits were lost because the ring buffer was full: raise --buffer-size"
                )
                && both.contains("3 hits were lost with room left in the ring buffer"),
            "{both}"
        );
        let busy = said(3, 3);
        assert!(
            !busy.contains("buffer was full") && busy.contains("3 hits were lost with room left"),
            "{busy}"
        );
        let full = said(3, 0);
        assert!(
            full.contains("3 hits were lost because the ring buffer was full")
                && !full.contains("room left"),
            "{full}"
        );
    }

    #[test]
    fn a_command_dead_of_sigtrap_is_explained() {
        let said = |status, signal: Option<&str>| {
            summary_table(&Summary {
                end_reason: "process-exit".into(),
                exit_status: status,
                signal: signal.map(str::to_owned),
                ..Summary::default()
            })
        };
        let trapped = said(Some(133), Some("SIGTRAP"));
        assert!(
            trapped.contains("; command killed by SIGTRAP\n")
                && trapped.contains("hwbp-trace: the command died of SIGTRAP (status 133)"),
            "{trapped}"
        );
        // `exit 133` is no SIGTRAP.
        for (status, signal) in [
            (Some(0), None),
            (Some(1), None),
            (None, None),
            (Some(133), None),
        ] {
            let said = said(status, signal);
            assert!(!said.contains("SIGTRAP"), "{said}");
        }
    }

    /// A target moved while tracing lists what it watched in turn, each
    /// with its hits; a removed one says so.
    #[test]
    fn the_summary_table_lists_a_moved_targets_watches() {
        use crate::record::format::{TargetSummary, WatchSummary};
        let watch = |target: &str, addr: &str, hits| WatchSummary {
            target: target.into(),
            symbol: target.trim_end_matches(":w").into(),
            addr: addr.into(),
            mode: "w".into(),
            hits,
        };
        let table = summary_table(&Summary {
            targets: vec![
                TargetSummary {
                    target: "b:w".into(),
                    symbol: "b".into(),
                    addr: "0x2000".into(),
                    mode: "w".into(),
                    hits: 5,
                    watches: vec![watch("a:w", "0x1000", 2), watch("b:w", "0x2000", 3)],
                    ..Default::default()
                },
                TargetSummary {
                    target: "c:w".into(),
                    symbol: "c".into(),
                    addr: "0x3000".into(),
                    mode: "w".into(),
                    hits: 1,
                    removed: true,
                    ..Default::default()
                },
            ],
            end_reason: "process-exit".into(),
            ..Summary::default()
        });
        assert_eq!(
            table,
            "\nTARGET         SYMBOL  ADDRESS  MODE  HITS  DROPPED\n\
             b:w            b       0x2000   w        5        0\n\
             \x20 1. a:w       a       0x1000   w        2\n\
             \x20 2. b:w       b       0x2000   w        3\n\
             c:w (removed)  c       0x3000   w        1        0\n\
             6 hits in 0.0 s (process-exit); lost: 0\n"
        );
    }

    /// A symbol name holding control characters stays on its row, escaped.
    #[test]
    fn the_summary_table_escapes_control_characters() {
        let table = summary_table(&Summary {
            targets: vec![crate::record::format::TargetSummary {
                target: "f\x1b[2J".into(),
                symbol: "a\nb".into(),
                addr: "0x1000".into(),
                mode: "x".into(),
                hits: 3,
                ..Default::default()
            }],
            end_reason: "process-exit".into(),
            ..Summary::default()
        });
        assert_eq!(
            table,
            "\nTARGET  SYMBOL  ADDRESS  MODE  HITS  DROPPED\n\
             f\\e[2J  a\\nb    0x1000   x        3        0\n\
             3 hits in 0.0 s (process-exit); lost: 0\n"
        );
    }
}

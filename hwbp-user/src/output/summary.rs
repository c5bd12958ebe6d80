//! The summary table printed when a trace ends, and the column layout it
//! shares with `hwbp-trace report`.

use crate::{
    printable::{plural, printable},
    record::format::Summary,
};

/// Columns padded to their widest cell; `numeric` ones aligned right.
pub fn table<const N: usize>(rows: &[[String; N]], numeric: fn(usize) -> bool) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
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
    let mut rows = vec![[
        "TARGET".to_owned(),
        "SYMBOL".to_owned(),
        "ADDRESS".to_owned(),
        "MODE".to_owned(),
        "HITS".to_owned(),
        "DROPPED".to_owned(),
    ]];
    // A target's name may come from the traced program (a symbol): one
    // row, whatever it holds.
    let cell = |s: &str| printable(s).into_owned();
    for t in &summary.targets {
        let removed = if t.removed { " (removed)" } else { "" };
        rows.push([
            cell(&t.target) + removed,
            cell(&t.symbol),
            cell(&t.addr),
            cell(&t.mode),
            t.hits.to_string(),
            t.dropped.to_string(),
        ]);
        // A target moved while tracing: what it watched in turn, its hits there.
        for (i, w) in t.watches.iter().enumerate() {
            rows.push([
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
    out.push_str(&format!(
        "{} in {:.1} s ({}); lost: {}",
        plural(
            summary.targets.iter().map(|t| t.hits as usize).sum(),
            "hit",
            "hits"
        ),
        summary.duration_s,
        summary.end_reason,
        summary.lost
    ));
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
    if dropped > 0 {
        out.push_str(&format!(
            "hwbp-trace: {dropped} hits were lost because the ring buffer was full: raise --buffer-size\n"
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
    use super::*;

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

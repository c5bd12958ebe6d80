//! The kernel-target part of `cargo xtask bench`: boots Debian's kernel
//! (vm/) and runs tests/vm/bench.sh there, which times fx_kernel's loop of
//! getpgid calls alone, under a counting breakpoint (the floor) and under
//! hwbp-trace; this side takes medians and slopes and writes the section.
//! Under TCG the times are the emulator's: the section reports ratios.

use std::{collections::BTreeMap, fmt::Write as _, fs, time::Duration};

use anyhow::{Context as _, Result, anyhow, ensure};

use crate::{vm, workspace_root};

/// Rounds, and the two run sizes (calls) of each round.
pub const RUNS: usize = 5;
pub const SMALL: u64 = 2_000;
pub const LARGE: u64 = 10_000;

/// The variants bench.sh runs, in its order, with what they are.
const VARIANTS: [(&str, &str); 4] = [
    ("alone", "the calls alone"),
    ("floor", "counting breakpoint (the floor)"),
    ("hwbp-trace-no-stacks", "hwbp-trace, `--stack none`, JSONL"),
    (
        "hwbp-trace-kernel-stacks",
        "hwbp-trace, kernel stacks, JSONL (its default)",
    ),
];

/// One line of bench.txt.
#[derive(Debug, PartialEq)]
struct Run {
    variant: String,
    calls: u64,
    ns: f64,
    counted: Option<u64>,
}

fn parse(text: &str) -> Result<Vec<Run>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [variant, calls, ns, counted] = fields[..] else {
                return Err(anyhow!(
                    "bench.txt: not `VARIANT CALLS NS COUNTED`: {line:?}"
                ));
            };
            Ok(Run {
                variant: variant.to_owned(),
                calls: calls
                    .parse()
                    .with_context(|| format!("calls in {line:?}"))?,
                ns: ns
                    .parse()
                    .with_context(|| format!("no time in {line:?} (the fixture failed?)"))?,
                counted: counted.parse().ok(),
            })
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Per variant: the median time of each size, the per-call slope in µs,
/// and the counts the runs reported.
struct Row {
    small_ms: f64,
    large_ms: f64,
    per_call_us: f64,
    counted: Vec<Option<u64>>,
}

fn rows(runs: &[Run]) -> BTreeMap<&str, Row> {
    let mut rows = BTreeMap::new();
    for (variant, _) in VARIANTS {
        let times = |calls: u64| {
            runs.iter()
                .filter(|r| r.variant == variant && r.calls == calls)
                .map(|r| r.ns)
                .collect::<Vec<_>>()
        };
        let small = median(times(SMALL));
        let large = median(times(LARGE));
        rows.insert(
            variant,
            Row {
                small_ms: small / 1e6,
                large_ms: large / 1e6,
                per_call_us: (large - small) / (LARGE - SMALL) as f64 / 1e3,
                counted: runs
                    .iter()
                    .filter(|r| r.variant == variant && r.calls == LARGE)
                    .map(|r| r.counted)
                    .collect(),
            },
        );
    }
    rows
}

/// Boots the VM, runs the benchmark, and returns its section of
/// BENCHMARKS.md (and the command it ran, for the commands list).
pub fn run(kernel_version: Option<&str>) -> Result<(String, String)> {
    let kernel = vm::fetch_kernel(kernel_version)?;
    let out_dir = workspace_root().join("target/vm-bench");
    let command = [
        "/vm/bench.sh".to_owned(),
        RUNS.to_string(),
        SMALL.to_string(),
        LARGE.to_string(),
    ];
    let outcome = vm::boot(&vm::Boot {
        kernel: &kernel,
        command: &command,
        kvm: false,
        timeout: Some(Duration::from_secs(1200)),
        boot_timeout: vm::BOOT_TIMEOUT,
        // A host thread per vCPU: with one for both, the reader's work on
        // one vCPU is time the fixture's vCPU does not run, and counts in
        // its loop (the ratios doubled). bench.sh opens no per-task event.
        mttcg: true,
        cpus: vm::CPUS,
        interactive: false,
        out_dir: &out_dir,
    })?;
    ensure!(
        outcome.exit == 0,
        "bench.sh in the guest exited {}",
        outcome.exit
    );
    let text = fs::read_to_string(out_dir.join("bench.txt")).context("reading bench.txt")?;
    let runs = parse(&text)?;
    let section = section(&kernel.package, &rows(&runs));
    Ok((section, format!("cargo xtask vm -- {}", command.join(" "))))
}

fn section(package: &str, rows: &BTreeMap<&str, Row>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## 5. Kernel target in the VM (TCG: ratios only)\n");
    let _ = writeln!(
        out,
        "{package} under QEMU's TCG emulation, 2 vCPUs with a host thread each (`cargo xtask vm \
         --mttcg`): an execute breakpoint on `__x64_sys_getpgid` on every CPU, fx_kernel making \
         getpgid(0) calls and timing its own loop (start-up is outside it); hwbp-trace runs \
         system-wide with `--comm fx_kernel`. Medians of {RUNS} alternating rounds of {SMALL} and \
         {LARGE} calls; per call is the slope between the two sizes. Every time here is the \
         emulator's, far from a real CPU's: read the last columns, the ratios. The floor is a \
         counting breakpoint on every CPU that the fixture opens itself (what `perf stat -a -e \
         mem:ADDR:x` does; perf is not in the guest).\n"
    );
    let _ = writeln!(
        out,
        "| run | {SMALL} calls | {LARGE} calls | per call | beyond the calls alone | vs the floor | counted ({LARGE}) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    let alone = rows.get("alone").map_or(f64::NAN, |r| r.per_call_us);
    let floor = rows.get("floor").map_or(f64::NAN, |r| r.per_call_us) - alone;
    for (variant, what) in VARIANTS {
        let Some(row) = rows.get(variant) else {
            continue;
        };
        let beyond = row.per_call_us - alone;
        let ratio = if variant == "alone" {
            "-".to_owned()
        } else {
            format!("{:.2}x", beyond / floor)
        };
        let counted = if row.counted.iter().all(Option::is_none) {
            "-".to_owned()
        } else {
            row.counted
                .iter()
                .map(|c| c.map_or("?".to_owned(), |c| c.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| {what} | {:.1} ms | {:.1} ms | {:.2} us | {:.2} us | {ratio} | {counted} |",
            row.small_ms, row.large_ms, row.per_call_us, beyond
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reduces() {
        let mut text = String::new();
        for (variant, per_call_ns, counted) in [
            ("alone", 100.0, "-"),
            ("floor", 1100.0, "C"),
            ("hwbp-trace-no-stacks", 1200.0, "C"),
            ("hwbp-trace-kernel-stacks", 1600.0, "C"),
        ] {
            for calls in [SMALL, LARGE] {
                let ns = 5_000.0 + per_call_ns * calls as f64;
                let counted = counted.replace('C', &calls.to_string());
                text.push_str(&format!("{variant} {calls} {ns} {counted}\n"));
            }
        }
        let runs = parse(&text).expect("parses");
        assert_eq!(runs.len(), 8);
        assert_eq!(runs[1].counted, None);
        let rows = rows(&runs);
        assert!((rows["floor"].per_call_us - 1.1).abs() < 1e-9);
        let section = section("linux-image-test", &rows);
        // Beyond the calls alone: floor 1.0 us, no stacks 1.1, stacks 1.5.
        assert!(section.contains("| 1.10x |"), "{section}");
        assert!(section.contains("| 1.50x | 10000 |"), "{section}");
        assert!(
            parse("floor 2000 none -\n").is_err(),
            "a failed run is an error"
        );
    }
}

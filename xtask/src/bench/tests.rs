//! Unit tests of the benchmark's parsers and statistics.

use std::{fs, path::PathBuf, process::Command};

use super::{
    process::{cpu_time, parse_bpf_prog_stats, status_kib},
    results::{Paired, PerHit, Round, ratios_by_round, round_range},
    strace::Phases,
    workload::Variant,
};
use hwbp_tests::harness::{
    process::{remove, shell_words},
    trace::distinct_ustacks,
};

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("xtask-bench-{}-{name}", std::process::id()));
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        remove(&self.0);
    }
}

#[test]
fn phases_with_short_and_long_pids() {
    // strace pads pids to 5 columns: one space after 12345, two after 9990.
    for pid in ["9990 ", "12345"] {
        let log = TempFile::new(
            "strace.txt",
            &[
                format!("{pid} 100.000 execve(\"hwbp-trace\", ...) = 0"),
                format!("{pid} 100.010 openat(AT_FDCWD, \"/proc/kallsyms\", O_RDONLY) = 3"),
                format!("{pid} 100.040 bpf(BPF_PROG_LOAD, ...) = 4"),
                format!("{pid} 100.050 write(2, \"Tracing 1 target\"..., 64) = 64"),
            ]
            .join("\n"),
        );
        let phases =
            Phases::parse(&log.0, String::new()).unwrap_or_else(|e| panic!("pid `{pid}`: {e:#}"));
        let names: Vec<&str> = phases.segments.iter().map(|seg| seg.what).collect();
        assert_eq!(names.len(), 3, "pid `{pid}`: {names:?}");
        assert!(names[1].starts_with("kallsyms"), "{names:?}");
        assert!((phases.total - 0.05).abs() < 1e-9, "{}", phases.total);
    }
}

#[test]
fn phases_overlap_across_threads() {
    let log = TempFile::new(
        "strace-threads.txt",
        &[
            "100 10.000 execve(\"hwbp-trace\", ...) = 0",
            "101 10.002 openat(AT_FDCWD, \"/sys/kernel/btf/vmlinux\", O_RDONLY) = 3",
            "102 10.003 openat(AT_FDCWD, \"/sys/kernel/btf/vmlinux\", O_RDONLY) = 4",
            "100 10.004 openat(AT_FDCWD, \"/proc/kallsyms\", O_RDONLY) = 5",
            "101 10.020 bpf(BPF_PROG_LOAD, ...) = 6",
            "101 10.030 exit(0) = ?",
            "100 10.060 perf_event_open(...) = 7",
            "100 10.070 write(2, \"Tracing 1 target\"..., 64) = 64",
        ]
        .join("\n"),
    );
    let phases = Phases::parse(&log.0, String::new()).expect("parses");
    let row = |what: &str| {
        phases
            .segments
            .iter()
            .find(|s| s.what.starts_with(what))
            .unwrap_or_else(|| panic!("no {what}"))
    };
    let aya = row("vmlinux BTF: aya");
    assert_eq!(aya.thread, 2);
    assert!((aya.to - 0.020).abs() < 1e-9);
    let bpf = row("BPF");
    assert!((bpf.to - 0.030).abs() < 1e-9, "ends at its thread's exit");
    let hwbp = row("vmlinux BTF: hwbp");
    assert_eq!(hwbp.thread, 3);
    assert!(hwbp.after_tracing, "never exited before the Tracing line");
    assert!((row("kallsyms").to - 0.060).abs() < 1e-9);
    assert!((phases.total - 0.070).abs() < 1e-9);
}

#[test]
fn distinct_ustacks_compares_whole_arrays() {
    let jsonl = TempFile::new(
        "trace.jsonl",
        &[
            r#"{"type":"header","targets":[]}"#,
            r#"{"type":"hit","kstack":[],"ustack":["a+0x0 (x.rs:1)","<[T]>::b+0x4"]}"#,
            r#"{"type":"hit","kstack":[],"ustack":["a+0x0 (x.rs:1)","<[T]>::b+0x4"]}"#,
            r#"{"type":"hit","kstack":[],"ustack":["a+0x0 (x.rs:1)","<[T]>::b+0x8"],"x":1}"#,
            r#"{"type":"summary","targets":[{"ustack_errors":0}],"lost":0}"#,
        ]
        .join("\n"),
    );
    let found = distinct_ustacks(&jsonl.0).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(found, 2);
}

#[test]
fn bpf_prog_stats_from_fdinfo() {
    let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2057\nprog_type:\t7\n\
                prog_jited:\t1\nprog_tag:\tb8c5a1e0b4d6a0a1\nmemlock:\t4096\nprog_id:\t81\n\
                run_time_ns:\t36500000\nrun_cnt:\t50000\nrecursion_misses:\t0\n\
                verified_insns:\t32131\n";
    assert_eq!(parse_bpf_prog_stats(prog), Some((36_500_000, 50_000)));
    // A map or a perf event is not a program.
    let map = "pos:\t0\nflags:\t02000002\nmap_type:\t27\nkey_size:\t0\n";
    assert_eq!(parse_bpf_prog_stats(map), None);
    // Kernels before 5.1 print no run time.
    assert_eq!(parse_bpf_prog_stats("prog_type:\t7\nprog_id:\t81\n"), None);
}

#[test]
fn paired_ratio_is_the_median_of_each_runs_median() {
    // plain 100 ns a batch; the floor's batch 1100, so 1000 beyond it.
    let round = |tool: f64| Round {
        tool: 100.0 + tool,
        floor: 1100.0,
        plain: 100.0,
    };
    assert!((round(1200.0).ratio() - 1.2).abs() < 1e-12);
    let paired = Paired {
        workload: "w",
        variant: Variant::HwbpTrace,
        runs: vec![
            // An outlier round moves no run's median.
            vec![round(1000.0), round(1200.0), round(5000.0)],
            vec![round(1100.0), round(1100.0), round(0.0)],
            vec![round(1300.0)],
        ],
        miscounts: Vec::new(),
    };
    let runs = paired.run_ratios();
    assert_eq!(runs.len(), 3);
    for (got, want) in runs.iter().zip([1.2, 1.1, 1.3]) {
        assert!((got - want).abs() < 1e-12, "{runs:?}");
    }
    assert!((paired.ratio() - 1.2).abs() < 1e-12);
    assert_eq!(paired.round_ratios().len(), 7);
}

#[test]
fn ratios_are_paired_by_round() {
    let row = |variant, small: [f64; 2], large: [f64; 2]| PerHit {
        workload: "w",
        variant,
        program: [small.to_vec(), large.to_vec()],
        done: [Vec::new(), Vec::new()],
        counted_large: Vec::new(),
        command: String::new(),
    };
    // Per hit over a span of 10: alone 0 and 1, floor 10 and 20,
    // hwbp 11 and 24, perf -g 13 and 26.
    let rows = [
        row(Variant::Alone, [1.0, 1.0], [1.0, 11.0]),
        row(Variant::PerfStat, [2.0, 2.0], [102.0, 202.0]),
        row(Variant::HwbpTrace, [3.0, 3.0], [113.0, 243.0]),
        row(Variant::PerfRecord, [4.0, 4.0], [134.0, 264.0]),
    ];
    let ratios = ratios_by_round(
        &rows,
        10.0,
        "w",
        [Variant::HwbpTrace, Variant::PerfStat],
        None,
    );
    assert_eq!(ratios, [1.1, 23.0 / 19.0]);
    // (hwbp - floor) / (perf -g - floor), round by round.
    let added = ratios_by_round(
        &rows,
        10.0,
        "w",
        [Variant::HwbpTrace, Variant::PerfRecord],
        Some(Variant::PerfStat),
    );
    assert_eq!(added, [1.0 / 3.0, 4.0 / 6.0]);
    assert_eq!(round_range(&ratios), "; rounds 1.10x to 1.21x");
    assert_eq!(round_range(&[]), "");
    assert!(
        ratios_by_round(
            &rows,
            10.0,
            "other",
            [Variant::HwbpTrace, Variant::PerfStat],
            None
        )
        .is_empty()
    );
}

#[test]
fn shell_words_survive_quotes() {
    let mut cmd = Command::new("/bin/it's");
    cmd.args(["a b", ""]);
    assert_eq!(shell_words(&cmd), r"'/bin/it'\''s' 'a b' ''");
}

#[test]
fn cpu_time_of_this_process() {
    let pid = std::process::id();
    cpu_time(pid).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status_kib(pid, "VmHWM:").is_some_and(|kib| kib > 0));
}

#[test]
fn the_hand_kept_part_of_the_report_survives_a_rewrite() {
    let kept = format!("{}\n## Tuning\n\nmeasured by hand\n", super::KEPT_BY_HAND);
    let old = format!("# Benchmarks\n\nold numbers\n\n{kept}");
    let new = super::with_kept_part("# Benchmarks\n\nnew numbers\n".to_owned(), Some(&old));
    assert_eq!(new, format!("# Benchmarks\n\nnew numbers\n\n{kept}"));
    // Nothing kept by hand: the report alone.
    let plain = super::with_kept_part("# B\n".to_owned(), Some("# old\n"));
    assert_eq!(plain, "# B\n");
    assert_eq!(super::with_kept_part("# B\n".to_owned(), None), "# B\n");
}

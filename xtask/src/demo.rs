//! `cargo xtask demo`: the main job, shown on a kernel that allows it.
//!
//! Boots Debian's kernel in QEMU (see vm/) and runs tests/vm/demo.sh there:
//! `hwbp-trace vfs_read pid_max` system-wide while a workload reads files
//! and writes /proc/sys/kernel/pid_max. Then checks the trace against what
//! the workload's fixtures say they did (`check`, which the kernel tests of
//! `cargo xtask test` run on the same script's output), prints what it holds
//! and leaves it in target/demo/trace.jsonl.

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use anyhow::{Context as _, Result, ensure};
use clap::Args;
use serde_json::Value;

use hwbp_tests::harness::{
    fixture::{FixtureReads, printed},
    trace::{Trace, expect_hit_frame, number, parse_framing, text_field, values},
};

use crate::{arch::Arch, build, setup, vm, workspace_root};

#[derive(Args)]
pub struct Options {
    /// The guest's architecture: x86-64, or arm64 (see `cargo xtask vm`).
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
    /// Boot the VM with KVM instead of TCG.
    #[arg(long)]
    kvm: bool,
    /// Debian kernel to boot (default: what linux-image-amd64 depends on;
    /// for arm64 the newest 6.12, as Debian's arm64 6.1 lists no variables
    /// in /proc/kallsyms and the demo names pid_max).
    #[arg(long, value_name = "VERSION")]
    kernel: Option<String>,
    /// Hits to show per target.
    #[arg(long, default_value_t = 2)]
    show: usize,
}

/// What tests/vm/demo.sh asks of its fixtures: `fx_kernel read-as fx_reads
/// /proc/version 5` and `fx_kernel pidmax 3`.
const FIXTURE_READS: usize = 5;
const FIXTURE_WRITES: usize = 3;
/// The name the reading fixture gives itself once loaded.
const READER: &str = "fx_reads";

/// The demo's trace, checked against the workload's ground truth.
pub struct Demo {
    pub trace: Trace,
    /// hwbp-trace's `Tracing …` line.
    pub tracing: String,
    pub fixture: FixtureReads,
    /// The values `fx_kernel pidmax` wrote, in order.
    pub written: Vec<u64>,
    /// The hits to show, per target, each with a symbolized kernel stack.
    pub shown: BTreeMap<String, Vec<Value>>,
}

impl Demo {
    fn hits(&self, target: &str) -> impl Iterator<Item = &Value> {
        self.trace
            .hits
            .iter()
            .filter(move |hit| hit["target"] == target)
    }

    /// Hits on `target` the BPF program could not record. System-wide, two
    /// CPUs may hit vfs_read at once: the program runs in the debug
    /// exception, which counts as NMI, and there bpf_ringbuf_reserve only
    /// tries the ring buffer's lock (kernel/bpf/ringbuf.c), so a hit whose
    /// CPU finds it held by the other is dropped, and counted as such. The
    /// fixtures run alone (their hits are checked exactly); other tasks'
    /// hits may meet that.
    fn dropped(&self, target: &str) -> u64 {
        self.count(target, "dropped")
    }

    /// A number of `target`'s summary.
    fn count(&self, target: &str, key: &str) -> u64 {
        self.trace.summary["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["target"] == target)
            .filter_map(|t| t[key].as_u64())
            .sum()
    }

    /// Hits on `target` per comm.
    fn by_task(&self, target: &str) -> BTreeMap<String, usize> {
        let mut comms = BTreeMap::new();
        for hit in self.hits(target) {
            *comms
                .entry(hit["comm"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        comms
    }
}

/// Checks what demo.sh left in `dir`: the trace's framing and accounting,
/// nothing missed, nothing dropped but other tasks' vfs_read hits (see
/// `Demo::dropped`), exactly the reading fixture's reads on vfs_read with their BTF
/// arguments, reads by wc too (how many depends on busybox: only > 0),
/// exactly the writing fixture's stores on pid_max with the values written,
/// and symbolized kernel stacks on every fixture hit and every hit shown.
pub fn check(dir: &Path, show: usize) -> Result<Demo> {
    check_for(Arch::X86_64, dir, show)
}

/// [`check`] of a guest of `arch`. On arm64 a watchpoint traps before the
/// store: each pid_max hit holds the value before it (`old_value`), and
/// the value after it (`value`) only from the next hit, none for the last.
pub fn check_for(arch: Arch, dir: &Path, show: usize) -> Result<Demo> {
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    // Not parse_trace: system-wide, another task's vfs_read hit may be
    // dropped (see `dropped` below); the fixtures' hits may not.
    let trace = parse_framing(&read("trace.jsonl")?).context("the demo's trace.jsonl")?;
    check_summary(&trace)?;
    let stderr = read("hwbp-trace.stderr")?;
    let tracing = stderr
        .lines()
        .find(|line| line.starts_with("Tracing 2 targets ("))
        .map(str::to_owned)
        .with_context(|| format!("hwbp-trace printed no `Tracing 2 targets` line:\n{stderr}"))?;

    let fixture = FixtureReads::parse(&read("reads.out")?)?;
    ensure!(
        fixture.reads == FIXTURE_READS,
        "fx_kernel read-as reports {} reads, demo.sh asks for {FIXTURE_READS}",
        fixture.reads
    );
    let written = printed(&read("pidmax.out")?, "wrote ").context("pidmax.out")?;
    ensure!(
        written.len() == FIXTURE_WRITES,
        "fx_kernel pidmax reports {} writes, demo.sh asks for {FIXTURE_WRITES}",
        written.len()
    );

    let demo = Demo {
        shown: BTreeMap::new(),
        trace,
        tracing,
        fixture,
        written,
    };
    let reads: Vec<&Value> = demo
        .hits("vfs_read")
        .filter(|h| h["comm"] == READER)
        .collect();
    ensure!(
        reads.len() == demo.fixture.reads,
        "vfs_read: {} hits by {READER}, which made exactly {} read(2) calls",
        reads.len(),
        demo.fixture.reads
    );
    for hit in reads {
        demo.fixture.expect_vfs_read(hit)?;
        // arm64's kernel inlines ksys_read into its system call.
        expect_hit_frame(
            hit,
            match arch {
                Arch::X86_64 => "ksys_read",
                Arch::Arm64 => "__arm64_sys_read",
            },
        )?;
    }
    let by_wc = demo.hits("vfs_read").filter(|h| h["comm"] == "wc").count();
    ensure!(by_wc > 0, "vfs_read: no hit by wc, which read two files");

    check_pid_max_writes(&demo, arch)?;
    // Where system calls enter the kernel's C code.
    let entry = match arch {
        Arch::X86_64 => "do_syscall_64",
        Arch::Arm64 => "invoke_syscall",
    };

    let shown = ["vfs_read", "pid_max"]
        .into_iter()
        .map(|target| {
            let hits = pick(demo.hits(target), show);
            for hit in &hits {
                expect_hit_frame(hit, entry)
                    .with_context(|| format!("a {target} hit the demo shows"))?;
            }
            Ok((target.to_owned(), hits))
        })
        .collect::<Result<_>>()?;
    Ok(Demo { shown, ..demo })
}

/// The summary's accounting: no target missed a hit, stopped at a limit or
/// left one unrecorded, none but vfs_read dropped one (see
/// `Demo::dropped`), demo.sh's SIGTERM ended the trace, and the targets are
/// vfs_read (x) and pid_max (w).
fn check_summary(trace: &Trace) -> Result<()> {
    for target in trace.summary["targets"].as_array().into_iter().flatten() {
        let name = text_field(target, "target")?;
        ensure!(
            number(target, "missed")? == 0
                && number(target, "after_limit")? == 0
                && number(target, "unrecorded")? == 0,
            "{name}: hits missed, after a limit or unrecorded: {target}"
        );
        ensure!(
            name == "vfs_read" || number(target, "dropped")? == 0,
            "{name}: hits dropped: {target}"
        );
    }
    let reason = trace.summary["end_reason"].as_str().unwrap_or("");
    ensure!(
        reason == "signal",
        "the demo's trace ended by {reason:?}, not by demo.sh's SIGTERM after the workload"
    );
    let targets: Vec<(&str, &str)> = trace.summary["targets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap_or(""),
                t["mode"].as_str().unwrap_or(""),
            )
        })
        .collect();
    ensure!(
        targets == [("vfs_read", "x"), ("pid_max", "w")],
        "expected the targets vfs_read (x) and pid_max (w), the summary has {targets:?}"
    );
    Ok(())
}

/// pid_max's hits: exactly the writing fixture's stores, each from
/// fx_kernel through proc_sys_call_handler, with the values it wrote (on
/// arm64, each hit the value before its store, the one the store before it
/// wrote, and the value it wrote but for the last).
fn check_pid_max_writes(demo: &Demo, arch: Arch) -> Result<()> {
    let writes = Trace {
        header: demo.trace.header.clone(),
        hits: demo.hits("pid_max").cloned().collect(),
        aggregates: Vec::new(),
        summary: Value::Null,
    };
    ensure!(
        writes.hits.len() == demo.written.len(),
        "pid_max: {} hits, the fixture wrote it {} times",
        writes.hits.len(),
        demo.written.len()
    );
    for hit in &writes.hits {
        ensure!(
            text_field(hit, "comm")? == "fx_kernel",
            "pid_max written by another task: {hit}"
        );
        expect_hit_frame(hit, "proc_sys_call_handler")?;
    }
    if arch == Arch::Arm64 {
        let old: Vec<u64> = writes
            .hits
            .iter()
            .map(|hit| number(hit, "old_value"))
            .collect::<Result<_>>()?;
        let after: Vec<Option<u64>> = writes
            .hits
            .iter()
            .map(|hit| hit.get("value").and_then(Value::as_u64))
            .collect();
        let stored = &demo.written[..demo.written.len() - 1];
        let expected_after: Vec<Option<u64>> =
            stored.iter().copied().map(Some).chain([None]).collect();
        ensure!(
            old[1..] == *stored && after == expected_after,
            "pid_max: values before and after each store {old:?} and {after:?}, the fixture \
             wrote {:?}",
            demo.written
        );
    } else {
        let seen = values(&writes)?;
        ensure!(
            seen == demo.written,
            "pid_max: values seen {seen:?}, the fixture wrote {:?}",
            demo.written
        );
    }
    Ok(())
}

/// Up to `show` hits, one per task first, the workload's tasks before the
/// rest: the counted reader first, then wc or the writer (fx_kernel's
/// vfs_read hits are its dynamic loader's, before it renames itself);
/// hwbp-trace's own reads are the least interesting.
fn pick<'a>(hits: impl Iterator<Item = &'a Value>, show: usize) -> Vec<Value> {
    let rank = |hit: &Value| match hit["comm"].as_str() {
        Some(READER) => 0,
        Some("wc" | "fx_kernel") => 1,
        Some("hwbp-trace") => 3,
        _ => 2,
    };
    let mut hits: Vec<&Value> = hits.collect();
    hits.sort_by_key(|hit| rank(hit));
    let mut picked: Vec<&Value> = Vec::new();
    for hit in &hits {
        if picked.len() < show && !picked.iter().any(|p| p["comm"] == hit["comm"]) {
            picked.push(hit);
        }
    }
    for hit in &hits {
        if picked.len() < show && !picked.iter().any(|p| std::ptr::eq(*p, *hit)) {
            picked.push(hit);
        }
    }
    picked.into_iter().cloned().collect()
}

pub fn run(options: Options) -> Result<()> {
    let Options {
        arch,
        kvm,
        kernel,
        show,
    } = options;
    setup::run()?;
    setup::cross(arch)?;
    build::run_for(arch)?;
    let kernel = kernel.or((arch == Arch::Arm64).then(|| "6.12".to_owned()));
    let kernel = vm::fetch_kernel_for(arch, kernel.as_deref())?;
    let demo_dir = workspace_root().join("target/demo");
    let out_dir = demo_dir.join("out");
    let command = ["/vm/demo.sh".to_owned()];
    let outcome = vm::boot(&vm::Boot {
        kernel: &kernel,
        command: &command,
        kvm,
        timeout: Some(Duration::from_secs(600)),
        boot_timeout: vm::BOOT_TIMEOUT,
        mttcg: false,
        cpus: vm::CPUS,
        interactive: false,
        out_dir: &out_dir,
    })?;
    ensure!(
        outcome.exit == 0,
        "hwbp-trace in the guest exited {} (its messages are above)",
        outcome.exit
    );
    let source = out_dir.join("trace.jsonl");
    let trace_path = demo_dir.join("trace.jsonl");
    fs::copy(&source, &trace_path)
        .with_context(|| format!("copying {} to {}", source.display(), trace_path.display()))?;
    let demo = check_for(arch, &out_dir, show).with_context(|| {
        format!(
            "the demo's trace does not match its workload (the guest's files: {})",
            out_dir.display()
        )
    })?;

    let str_of = |value: &Value, key: &str| value[key].as_str().unwrap_or("?").to_owned();
    let release = str_of(&demo.trace.header, "kernel_release");
    println!("\n===== hwbp demo: what the trace holds =====");
    println!(
        "kernel {release} in QEMU, {} hit(s) recorded; the trace: {}",
        demo.trace.hits.len(),
        trace_path.display()
    );
    println!(
        "\n{:<10} {:<20} {:<5} {:>6}",
        "TARGET", "ADDRESS", "MODE", "HITS"
    );
    let targets = demo.trace.summary["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for target in &targets {
        println!(
            "{:<10} {:<20} {:<5} {:>6}",
            str_of(target, "target"),
            str_of(target, "addr"),
            str_of(target, "mode"),
            number(target, "hits").unwrap_or(0)
        );
    }
    for (name, hits) in &demo.shown {
        println!(
            "\n{name}: {} hit(s), by task: {:?}",
            demo.hits(name).count(),
            demo.by_task(name)
        );
        for hit in hits {
            print_hit(hit);
        }
    }
    print_what_it_showed(&demo, arch, &release, &trace_path);
    Ok(())
}

/// One hit the demo shows: task, CPU, instruction, arguments and value,
/// then its kernel stack.
fn print_hit(hit: &Value) {
    let str_of = |value: &Value, key: &str| value[key].as_str().unwrap_or("?").to_owned();
    let value = match (hit["value"].as_u64(), hit["old_value"].as_u64()) {
        (Some(value), _) => format!(" value={value}"),
        // arm64: the value before the store, the last one's after unknown.
        (None, Some(old)) => format!(" value before the store={old}"),
        (None, None) => String::new(),
    };
    let args = hit["args"]
        .as_array()
        .map(|args| {
            let args: Vec<String> = args
                .iter()
                .map(|arg| format!("{}={}", str_of(arg, "name"), str_of(arg, "value")))
                .collect();
            format!(" ({})", args.join(", "))
        })
        .unwrap_or_default();
    println!(
        "  {}-{} [cpu {}] at {}{args}{value}",
        str_of(hit, "comm"),
        hit["tid"].as_u64().unwrap_or(0),
        hit["cpu"].as_u64().unwrap_or(0),
        str_of(hit, "ip_sym"),
    );
    for frame in hit["kstack"].as_array().into_iter().flatten() {
        println!("      {}", frame.as_str().unwrap_or("?"));
    }
}

/// The closing paragraph: what the run showed, with its figures.
fn print_what_it_showed(demo: &Demo, arch: Arch, release: &str, trace_path: &Path) {
    let tasks = |name: &str| {
        demo.by_task(name)
            .iter()
            .map(|(comm, n)| format!("{n} by {comm}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let written: Vec<String> = demo.written.iter().map(u64::to_string).collect();
    println!(
        "\nWhat this showed: hwbp-trace ran as root inside a QEMU guest on Debian's kernel \
         {release}, system-wide (`{tracing}`): one hardware breakpoint per CPU for each \
         target, armed through perf events. The CPU's debug registers trapped {trapped} calls of \
         the kernel function vfs_read: {reads} are in the trace ({read_tasks}), {filtered} were \
         hwbp-trace's own (a tracer never records itself). Exactly {fixture_reads} are by \
         {READER}, the fixture that made {fixture_reads} read(2) calls and counted them \
         itself; each of its hits carries vfs_read's arguments, named and typed from the \
         kernel's BTF, with buf and count ({count}) as the fixture passed them. They trapped \
         {writes} stores to the kernel variable pid_max, the fixture's {writes} writes to \
         /proc/sys/kernel/pid_max, {values_note}. For each \
         hit a BPF program attached to the breakpoint's perf event recorded the task, the \
         CPU, the instruction and the kernel stack into a ring buffer, and hwbp-trace named \
         the addresses from /proc/kallsyms (the stacks above); {dropped} Nothing in the \
         kernel was patched or recompiled. The whole trace is in {path}, one JSON object per \
         line.",
        dropped = match demo.dropped("vfs_read") {
            0 => "no hit was lost or dropped.".to_owned(),
            n => format!(
                "{n} other vfs_read hit(s) were counted but dropped, not recorded (the \
                 summary's DROPPED): two CPUs hit at once, and in the debug exception the BPF \
                 program only tries the ring buffer's lock."
            ),
        },
        tracing = demo.tracing.trim_end_matches("... Hit Ctrl-C to end."),
        trapped = demo.count("vfs_read", "kernel_count"),
        filtered = demo.count("vfs_read", "filtered"),
        reads = demo.hits("vfs_read").count(),
        read_tasks = tasks("vfs_read"),
        fixture_reads = demo.fixture.reads,
        count = demo.fixture.count,
        writes = demo.written.len(),
        values_note = match arch {
            Arch::X86_64 => format!(
                "with the values it wrote, in order ({})",
                written.join(", ")
            ),
            Arch::Arm64 => format!(
                "each with the value pid_max held before the store (an arm64 watchpoint traps \
                 before the access completes) and, but for the last, the value it left, which \
                 the next hit read; the fixture wrote {}",
                written.join(", ")
            ),
        },
        path = trace_path.display(),
    );
}

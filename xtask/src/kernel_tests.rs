//! Kernel tests: tests/vm/kernel-tests.sh runs hwbp-trace scenarios in the
//! VM and leaves their traces, exit statuses and output in /out; this module
//! boots it and checks every scenario against the ground truth its fixture
//! made (N calls → N hits, values written → values seen).

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::Value;

use crate::{
    vm::{self, Kernel},
    workspace_root,
};

/// Boots the VM once, runs every scenario, checks them all; fails if any fails.
pub fn run(kernel: &Kernel, kvm: bool) -> Result<()> {
    let exec_offset = exec_offset(kernel)?;
    let out_dir = workspace_root().join("target/vm-tests");
    let command = [
        "/vm/kernel-tests.sh".to_owned(),
        format!("{exec_offset:#x}"),
    ];
    let outcome = vm::boot(&vm::Boot {
        kernel,
        command: &command,
        kvm,
        timeout: Some(Duration::from_secs(900)),
        interactive: false,
        out_dir: &out_dir,
    })?;
    ensure!(
        outcome.exit == 0,
        "the guest test script exited {} (see the console above)",
        outcome.exit
    );
    let results = Results::load(&out_dir, exec_offset)?;
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        match check(&results) {
            Ok(()) => println!("kernel test {name} ... ok"),
            Err(error) => {
                println!("kernel test {name} ... FAILED\n    {error:#}");
                if let Ok(cmd) = fs::read_to_string(out_dir.join(format!("{name}.cmd"))) {
                    println!("    command: {}", cmd.trim());
                }
                failed.push(*name);
            }
        }
    }
    println!(
        "kernel-tests: the guest's files are in {}",
        out_dir.display()
    );
    // Alone on its line: CI reads it as the test count.
    println!(
        "kernel-tests: {} passed, {} failed",
        CHECKS.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        bail!("kernel tests failed: {}", failed.join(", "));
    }
    Ok(())
}

/// An instruction boundary inside a system call function: the first
/// instruction is `call __fentry__` (5 bytes, a NOP until ftrace uses it),
/// preceded by endbr64 (4 bytes) when the kernel has IBT.
fn exec_offset(kernel: &Kernel) -> Result<u64> {
    let config = fs::read_to_string(&kernel.config)
        .with_context(|| format!("reading {}", kernel.config.display()))?;
    let enabled = |option: &str| config.lines().any(|line| line == format!("{option}=y"));
    ensure!(
        enabled("CONFIG_FUNCTION_TRACER") && enabled("CONFIG_HAVE_FENTRY"),
        "{} lacks fentry call sites: the SYMBOL+OFFSET test does not know an instruction boundary",
        kernel.package
    );
    Ok(if enabled("CONFIG_X86_KERNEL_IBT") {
        4
    } else {
        5
    })
}

/// A check of one scenario's results.
type Check = fn(&Results) -> Result<()>;

const CHECKS: &[(&str, Check)] = &[
    ("getpgid", getpgid),
    ("throttle", throttle),
    ("pidmax", pidmax),
    ("rw_reads", rw_reads),
    ("rw_mixed", rw_mixed),
    ("ksym_rw", ksym_rw),
    ("ksym_w", ksym_w),
    ("ksym_x", ksym_x),
    ("offset", offset),
    ("addr_w", addr_w),
    ("addr_x", addr_x),
    ("syswide", syswide),
    ("syscomm", syscomm),
    ("five", five),
    ("four", four),
    ("blacklisted", blacklisted),
    ("misaligned", misaligned),
    ("readonly", readonly),
];

/// What the guest left.
struct Results {
    dir: PathBuf,
    facts: HashMap<String, String>,
    exec_offset: u64,
}

/// One hwbp-trace run.
struct Run {
    rc: i32,
    stdout: String,
    stderr: String,
}

/// A JSONL trace, its framing already checked.
struct Trace {
    hits: Vec<Value>,
    summary: Value,
}

impl Results {
    fn load(dir: &Path, exec_offset: u64) -> Result<Self> {
        let path = dir.join("facts.env");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let facts = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        Ok(Self {
            dir: dir.to_owned(),
            facts,
            exec_offset,
        })
    }

    fn fact(&self, key: &str) -> Result<&str> {
        self.facts
            .get(key)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| anyhow!("the guest did not record {key} in facts.env"))
    }

    /// A kernel address from facts.env, as hwbp-trace prints addresses.
    fn addr(&self, key: &str) -> Result<u64> {
        let text = self.fact(key)?;
        u64::from_str_radix(text.trim_start_matches("0x"), 16)
            .with_context(|| format!("{key}={text} is not an address"))
    }

    fn read(&self, file: &str) -> Result<String> {
        let path = self.dir.join(file);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    fn run(&self, name: &str) -> Result<Run> {
        let rc = self.read(&format!("{name}.rc"))?;
        Ok(Run {
            rc: rc
                .trim()
                .parse()
                .with_context(|| format!("{name}.rc holds {rc:?}"))?,
            stdout: self.read(&format!("{name}.stdout"))?,
            stderr: self.read(&format!("{name}.stderr"))?,
        })
    }

    /// The run, which must have exited 0, and its trace.
    fn traced(&self, name: &str) -> Result<(Run, Trace)> {
        let run = self.run(name)?;
        ensure!(
            run.rc == 0,
            "hwbp-trace exited {}; stderr:\n{}",
            run.rc,
            run.stderr.trim()
        );
        let trace = parse_trace(&self.read(&format!("{name}.jsonl"))?)
            .with_context(|| format!("{name}.jsonl"))?;
        Ok((run, trace))
    }
}

/// Checks the framing (a header first, a summary last, hits between, the
/// summary's counts equal to the hit lines, nothing lost or dropped).
fn parse_trace(text: &str) -> Result<Trace> {
    let lines: Vec<Value> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("line {} is not JSON: {line}", i + 1))
        })
        .collect::<Result<_>>()?;
    let kind = |value: &Value| value["type"].as_str().unwrap_or("").to_owned();
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        bail!("the trace is empty");
    };
    ensure!(
        kind(first) == "header",
        "the first line is not a header: {first}"
    );
    ensure!(
        kind(last) == "summary",
        "the last line is not a summary (cut short?): {last}"
    );
    let hits: Vec<Value> = lines[1..lines.len() - 1].to_vec();
    if let Some(odd) = hits.iter().find(|hit| kind(hit) != "hit") {
        bail!("a line between header and summary is not a hit: {odd}");
    }
    let summary = last.clone();
    let targets = summary["targets"]
        .as_array()
        .ok_or_else(|| anyhow!("the summary has no targets: {summary}"))?;
    let mut per_target: BTreeMap<String, u64> = BTreeMap::new();
    for hit in &hits {
        *per_target
            .entry(text_field(hit, "target")?.to_owned())
            .or_default() += 1;
    }
    for target in targets {
        let name = text_field(target, "target")?;
        let hits = number(target, "hits")?;
        let lines = per_target.get(name).copied().unwrap_or(0);
        ensure!(
            hits == lines,
            "the summary says {hits} hits for {name} but the trace has {lines} hit lines"
        );
        ensure!(
            number(target, "dropped")? == 0,
            "hits dropped for {name}: {target}"
        );
    }
    ensure!(number(&summary, "lost")? == 0, "hits lost: {summary}");
    Ok(Trace { hits, summary })
}

fn text_field<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value[key]
        .as_str()
        .ok_or_else(|| anyhow!("no string field {key:?} in {value}"))
}

fn number(value: &Value, key: &str) -> Result<u64> {
    value[key]
        .as_u64()
        .ok_or_else(|| anyhow!("no number field {key:?} in {value}"))
}

fn hex_field(value: &Value, key: &str) -> Result<u64> {
    let text = text_field(value, key)?;
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .with_context(|| format!("{key} is not hex in {value}"))
}

/// The numbers the fixture printed after `prefix` (`wrote 100000`).
fn printed(run: &Run, prefix: &str) -> Result<Vec<u64>> {
    run.stdout
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .map(|n| {
            n.trim()
                .parse()
                .with_context(|| format!("fixture printed {n:?}"))
        })
        .collect()
}

/// Exactly `expected` hits, all at `addr` with `mode`, all from the fixture.
fn expect_hits(trace: &Trace, expected: usize, addr: u64, mode: &str) -> Result<()> {
    ensure!(
        trace.hits.len() == expected,
        "expected exactly {expected} hits, the trace has {}",
        trace.hits.len()
    );
    for hit in &trace.hits {
        ensure!(
            hex_field(hit, "addr")? == addr,
            "hit at another address: {hit}"
        );
        ensure!(
            text_field(hit, "mode")? == mode,
            "hit with mode other than {mode}: {hit}"
        );
        ensure!(
            text_field(hit, "comm")? == "fx_kernel",
            "hit from another task: {hit}"
        );
    }
    Ok(())
}

/// The `value` of every hit, in order.
fn values(trace: &Trace) -> Result<Vec<u64>> {
    trace.hits.iter().map(|hit| number(hit, "value")).collect()
}

/// Every hit's kernel stack has a frame in `function`.
fn expect_frame(trace: &Trace, function: &str) -> Result<()> {
    let prefix = format!("{function}+");
    for hit in &trace.hits {
        let kstack = hit["kstack"]
            .as_array()
            .ok_or_else(|| anyhow!("hit without kstack: {hit}"))?;
        ensure!(
            kstack
                .iter()
                .filter_map(Value::as_str)
                .any(|frame| frame.starts_with(&prefix)),
            "a kernel stack without {function}: {hit}"
        );
    }
    Ok(())
}

fn getpgid(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("getpgid")?;
    expect_hits(&trace, 100, results.addr("getpgid_addr")?, "x")?;
    expect_frame(&trace, "do_syscall_64")?;
    for hit in &trace.hits {
        ensure!(
            text_field(hit, "ip_sym")? == "__x64_sys_getpgid+0x0",
            "ip_sym is not the function's first byte: {hit}"
        );
        // Named and typed from the guest kernel's BTF: the syscall wrapper
        // takes one parameter, `const struct pt_regs *regs`.
        let args = hit["args"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        ensure!(
            args.len() == 1
                && args[0]["name"] == "regs"
                && args[0]["type"]
                    .as_str()
                    .is_some_and(|t| t.contains("struct pt_regs")),
            "expected the BTF argument `regs` (struct pt_regs *): {hit}"
        );
    }
    Ok(())
}

/// At perf_event_max_sample_rate 100, 2000 calls still give 2000 hits: the
/// kernel counted all of them (kernel_count) and none was missed.
fn throttle(results: &Results) -> Result<()> {
    ensure!(
        results.fact("max_sample_rate")? == "100",
        "the guest did not lower perf_event_max_sample_rate to 100"
    );
    let (_, trace) = results.traced("throttle")?;
    expect_hits(&trace, 2000, results.addr("getpgid_addr")?, "x")?;
    let target = &trace.summary["targets"][0];
    ensure!(
        target["kernel_count"] == 2000 && target["missed"] == 0,
        "expected kernel_count 2000 and missed 0: {target}"
    );
    Ok(())
}

/// Writes: each hit's value is what the fixture wrote, in order.
fn expect_written(results: &Results, name: &str, count: usize, mode: &str) -> Result<()> {
    let (run, trace) = results.traced(name)?;
    let written = printed(&run, "wrote ")?;
    ensure!(
        written.len() == count,
        "the fixture reports {} writes, not {count}",
        written.len()
    );
    expect_hits(&trace, count, results.addr("pid_max_addr")?, mode)?;
    let seen = values(&trace)?;
    ensure!(
        seen == written,
        "values seen {seen:?} differ from values written {written:?}"
    );
    expect_frame(&trace, "proc_sys_call_handler")
}

fn pidmax(results: &Results) -> Result<()> {
    expect_written(results, "pidmax", 50, "w")
}

/// Reads: each hit's value is what the fixture read.
fn expect_read(results: &Results, name: &str, count: usize) -> Result<()> {
    let (run, trace) = results.traced(name)?;
    let read = printed(&run, "read ")?;
    ensure!(
        read.len() == count,
        "the fixture reports {} reads, not {count}",
        read.len()
    );
    expect_hits(&trace, count, results.addr("pid_max_addr")?, "rw")?;
    let seen = values(&trace)?;
    ensure!(
        seen == read,
        "values seen {seen:?} differ from values read {read:?}"
    );
    Ok(())
}

fn rw_reads(results: &Results) -> Result<()> {
    expect_read(results, "rw_reads", 20)
}

/// `pidmax 10` reads the original value once, then writes 10 times: rw sees 11.
fn rw_mixed(results: &Results) -> Result<()> {
    let (run, trace) = results.traced("rw_mixed")?;
    let written = printed(&run, "wrote ")?;
    ensure!(
        written.len() == 10,
        "the fixture reports {} writes, not 10",
        written.len()
    );
    expect_hits(&trace, 11, results.addr("pid_max_addr")?, "rw")?;
    // The read sees the original, which the last write restores.
    let mut expected = vec![written[9]];
    expected.extend(&written);
    let seen = values(&trace)?;
    ensure!(
        seen == expected,
        "values seen {seen:?}, expected the read then the writes {expected:?}"
    );
    Ok(())
}

fn ksym_rw(results: &Results) -> Result<()> {
    expect_read(results, "ksym_rw", 15)
}

fn ksym_w(results: &Results) -> Result<()> {
    expect_written(results, "ksym_w", 12, "w")
}

fn ksym_x(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("ksym_x")?;
    expect_hits(&trace, 40, results.addr("getpgid_addr")?, "x")?;
    expect_frame(&trace, "do_syscall_64")
}

fn offset(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("offset")?;
    let offset = results.exec_offset;
    expect_hits(&trace, 30, results.addr("getpgid_addr")? + offset, "x")?;
    let expected = format!("__x64_sys_getpgid+{offset:#x}");
    for hit in &trace.hits {
        ensure!(
            text_field(hit, "ip_sym")? == expected,
            "ip_sym is not {expected}: {hit}"
        );
    }
    expect_frame(&trace, "do_syscall_64")
}

fn addr_w(results: &Results) -> Result<()> {
    expect_written(results, "addr_w", 10, "w")
}

fn addr_x(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("addr_x")?;
    expect_hits(&trace, 30, results.addr("getpgid_addr")?, "x")?;
    expect_frame(&trace, "do_syscall_64")
}

/// Hits per (comm, cpu).
fn by_comm_and_cpu(trace: &Trace) -> Result<BTreeMap<(String, u64), usize>> {
    let mut counts = BTreeMap::new();
    for hit in &trace.hits {
        let key = (text_field(hit, "comm")?.to_owned(), number(hit, "cpu")?);
        *counts.entry(key).or_default() += 1;
    }
    Ok(counts)
}

fn count(counts: &BTreeMap<(String, u64), usize>, comm: &str, cpu: Option<u64>) -> usize {
    counts
        .iter()
        .filter(|((c, k), _)| c == comm && cpu.is_none_or(|cpu| cpu == *k))
        .map(|(_, n)| n)
        .sum()
}

/// The fixture pinned to CPU 0 (60 calls) and CPU 1 (40 calls): hits on both.
fn expect_both_cpus(counts: &BTreeMap<(String, u64), usize>) -> Result<()> {
    ensure!(
        count(counts, "fx_kernel", Some(0)) == 60 && count(counts, "fx_kernel", Some(1)) == 40,
        "expected fx_kernel hits 60 on CPU 0 and 40 on CPU 1; got {counts:?}"
    );
    Ok(())
}

/// The script ends system-wide runs with SIGTERM once the fixtures are done.
fn expect_signal_end(trace: &Trace) -> Result<()> {
    let reason = trace.summary["end_reason"].as_str().unwrap_or("");
    ensure!(
        reason == "signal",
        "the run ended by {reason:?}, not by the script's SIGTERM (did -d run out first?)"
    );
    Ok(())
}

fn syswide(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("syswide")?;
    expect_signal_end(&trace)?;
    let counts = by_comm_and_cpu(&trace)?;
    expect_both_cpus(&counts)?;
    ensure!(
        count(&counts, "fx_other", None) == 25,
        "expected 25 hits from fx_other; got {counts:?}"
    );
    Ok(())
}

fn syscomm(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("syscomm")?;
    expect_signal_end(&trace)?;
    let counts = by_comm_and_cpu(&trace)?;
    expect_both_cpus(&counts)?;
    ensure!(
        trace.hits.len() == 100,
        "--comm fx_kernel kept {} hits, expected exactly fx_kernel's 100: {counts:?}",
        trace.hits.len()
    );
    // The kernel-side filter saw fx_other's 25 calls and dropped them.
    if let Some(filtered) = trace.summary["targets"][0]["filtered"].as_u64() {
        ensure!(
            filtered == 25,
            "the summary counts {filtered} filtered hits, expected fx_other's 25"
        );
    }
    Ok(())
}

fn expect_failure(results: &Results, name: &str, rc: i32, needles: &[&str]) -> Result<()> {
    let run = results.run(name)?;
    ensure!(
        run.rc == rc,
        "expected exit {rc}, got {}; stderr:\n{}",
        run.rc,
        run.stderr.trim()
    );
    ensure!(
        !run.stderr.lines().any(|line| line.starts_with("Tracing")),
        "it reported armed breakpoints before failing:\n{}",
        run.stderr.trim()
    );
    for needle in needles {
        ensure!(
            run.stderr.contains(needle),
            "the error does not mention {needle:?}:\n{}",
            run.stderr.trim()
        );
    }
    Ok(())
}

fn five(results: &Results) -> Result<()> {
    expect_failure(results, "five", 1, &["4 debug registers"])
}

/// Right after the failed five, four on every CPU (all debug registers):
/// nothing of the failed run may still hold one.
fn four(results: &Results) -> Result<()> {
    let (run, trace) = results.traced("four")?;
    ensure!(
        run.stderr.contains("Tracing 4 targets"),
        "no `Tracing 4 targets` line:\n{}",
        run.stderr.trim()
    );
    let targets = trace.summary["targets"].as_array().map_or(0, Vec::len);
    ensure!(targets == 4, "the summary lists {targets} targets, not 4");
    Ok(())
}

fn blacklisted(results: &Results) -> Result<()> {
    let function = results.fact("blacklisted")?.to_owned();
    expect_failure(results, "blacklisted", 1, &[&function, "kprobe blacklist"])
}

fn misaligned(results: &Results) -> Result<()> {
    expect_failure(results, "misaligned", 2, &["not aligned"])
}

fn readonly(results: &Results) -> Result<()> {
    expect_failure(results, "readonly", 2, &["read-only"])
}

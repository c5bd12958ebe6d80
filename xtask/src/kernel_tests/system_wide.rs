//! Kernel tests without a command: system-wide breakpoints on both CPUs,
//! `--comm`, both CPUs in the handler at once, and the demo.

use std::collections::BTreeMap;

use anyhow::{Result, bail, ensure};

use super::results::{KernelTest, Results};
use hwbp_tests::harness::trace::{Trace, number, text_field};

use crate::demo;

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

/// The scenario of [`SYSWIDE`] and its variants: hwbp-trace started as
/// `start NAME OPTIONS`, then the fixture 60 times on CPU 0, 40 times on
/// CPU 1 and 25 times as fx_other (what [`expect_both_cpus`] and the
/// checks' 25 expect), then SIGTERM.
macro_rules! three_fixtures {
    ($name:literal, $options:literal) => {
        concat!(
            "ln -sf /usr/bin/fx_kernel /tmp/fx_other\n",
            "start ",
            $name,
            " ",
            $options,
            "\n",
            "taskset -c 0 fx_kernel getpgid 60 > ",
            $name,
            ".fx0 &\n",
            "fx0=$!\n",
            "taskset -c 1 fx_kernel getpgid 40 > ",
            $name,
            ".fx1 &\n",
            "fx1=$!\n",
            "/tmp/fx_other getpgid 25 > ",
            $name,
            ".other &\n",
            "fx2=$!\n",
            "wait $fx0 $fx1 $fx2\n",
            "kill -TERM \"$bg_pid\"\n",
            "finish\n",
        )
    };
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

/// System-wide (no -p, no --): one breakpoint per CPU. The fixture runs
/// pinned to each vCPU (60 calls on CPU 0, 40 on CPU 1), and as fx_other
/// (25 calls: the symlink gives the same fixture a second comm, which comes
/// from the name execve is given). Once they are done, SIGTERM ends the
/// trace (everything recorded must still be in the file); -d is only a
/// safety net.
pub(super) const SYSWIDE: KernelTest = KernelTest {
    name: "syswide",
    scenario: three_fixtures!(
        "syswide",
        "-q --no-tui -d 60 -o syswide.jsonl __x64_sys_getpgid"
    ),
    check: syswide,
};

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

/// Both CPUs in the breakpoint's handler at once, in kernel code: there
/// the debug exception runs as an NMI and the ring buffer only tries its
/// lock, so a hit while the other CPU writes its record must be tried
/// again, not dropped. Every one of 2 x 20000 calls must be accounted for,
/// and the retries seen to keep records. No trace file: 40 MB of JSONL
/// would take longer to check in the guest than to make; the summary
/// table and `-v`'s count of retries say what is needed.
/// The second boot's (`--mttcg`: see [`super::PARALLEL`]).
pub(super) const CONTENDED: KernelTest = KernelTest {
    name: "contended",
    scenario: r#"
        start contended -q -v --no-tui -d 300 --comm fx_kernel -o contended.folded __x64_sys_getpgid
        taskset -c 0 fx_kernel getpgid 20000 > contended.fx0 &
        fx0=$!
        taskset -c 1 fx_kernel getpgid 20000 > contended.fx1 &
        fx1=$!
        wait $fx0 $fx1
        kill -TERM "$bg_pid"
        finish
    "#,
    check: contended,
};

/// 20000 calls on each CPU at once (fx_kernel pinned to each): every one
/// accounted for (hits + dropped = 40000, nothing else lost), by the
/// summary table on stderr; records written on a retry of the ring
/// buffer's lock, as `-v` counts them (without the retries, each would
/// have been dropped: 89 to 4502 in 20 boots, docs/vm.md); and all 40000
/// in the collapsed stacks, which come from the kernel's aggregates,
/// dropped records or not. How many are dropped is not bounded: that
/// depends on how often the host stops a vCPU thread holding the lock.
fn contended(results: &Results) -> Result<()> {
    let run = results.succeeded("contended")?;
    for fx in ["contended.fx0", "contended.fx1"] {
        let said = results.read(fx)?;
        ensure!(
            said.starts_with("getpgid called 20000 times"),
            "{fx}: {said}"
        );
    }
    let row: Vec<&str> = run
        .stderr
        .lines()
        .find(|line| line.starts_with("__x64_sys_getpgid "))
        .map(|line| line.split_whitespace().collect())
        .unwrap_or_default();
    // TARGET SYMBOL ADDRESS MODE HITS DROPPED
    let column = |i: usize| row.get(i).and_then(|n| n.parse::<u64>().ok());
    let (Some(hits), Some(dropped)) = (column(4), column(5)) else {
        bail!(
            "no summary row for __x64_sys_getpgid; stderr:\n{}",
            run.stderr.trim()
        );
    };
    ensure!(
        hits + dropped == 40000,
        "expected hits + dropped = 40000; got {hits} hits, {dropped} dropped"
    );
    let (retried, busy) = lock_contention(&run.stderr, "__x64_sys_getpgid")?;
    ensure!(
        retried > 0 && busy <= dropped,
        "expected records written on a retry of the ring buffer's lock, and at most the \
         {dropped} dropped lost with room left; got {retried} retried, {busy} dropped busy"
    );
    ensure!(
        run.stderr.lines().any(|line| {
            line.starts_with(&format!("{hits} hits in "))
                && line.ends_with(&format!("(signal); lost: {dropped}"))
        }),
        "expected `{hits} hits in … (signal); lost: {dropped}`; stderr:\n{}",
        run.stderr.trim()
    );
    ensure!(
        busy == 0
            || run.stderr.lines().any(|line| {
                line.starts_with(&format!("hwbp-trace: {busy} hit"))
                    && line.contains(" lost with room left in the ring buffer")
            }),
        "{busy} records dropped with the lock taken, not said on stderr:\n{}",
        run.stderr.trim()
    );
    let folded = results.read("contended.folded")?;
    let mut in_stacks = 0u64;
    for line in folded.lines() {
        let n = line
            .rsplit_once(' ')
            .and_then(|(_, n)| n.parse::<u64>().ok());
        let Some(n) = n else {
            bail!("contended.folded: not `STACK COUNT`: {line}");
        };
        ensure!(
            line.starts_with("__x64_sys_getpgid;") && line.contains("do_syscall_64"),
            "contended.folded: a stack not through the syscall: {line}"
        );
        in_stacks += n;
    }
    ensure!(
        in_stacks == 40000,
        "the collapsed stacks count {in_stacks} hits ({dropped} records dropped), expected all \
         40000"
    );
    Ok(())
}

/// `TARGET`'s counts of records written on a retry of the ring buffer's
/// lock and of records dropped with its lock taken, from `-v`'s line.
fn lock_contention(stderr: &str, target: &str) -> Result<(u64, u64)> {
    let said = format!("{target}: the ring buffer's lock was taken by another CPU: ");
    let Some(rest) = stderr.lines().find_map(|line| line.split_once(&said)) else {
        bail!("no record was written on a retry of the ring buffer's lock; stderr:\n{stderr}");
    };
    let numbers: Vec<u64> = rest
        .1
        .split_whitespace()
        .filter_map(|word| word.trim_end_matches(',').parse().ok())
        .collect();
    match numbers[..] {
        [retried, busy] => Ok((retried, busy)),
        _ => bail!(
            "not `N records written on a retry, M dropped with room left`: {}",
            rest.1
        ),
    }
}

/// Calls on each CPU of [`EIGHT`]'s guest.
const EIGHT_CALLS: u64 = 2000;

/// Eight CPUs hitting one kernel function at once (the third boot has
/// eight vCPUs, a host thread each), one fixture pinned to each, a record
/// for one hit in 50 and a ring buffer small enough to drop some: every
/// hit accounted for, none missed or unrecorded (only drops, each
/// counted), and the aggregates count exactly each CPU's calls.
pub(super) const EIGHT: KernelTest = KernelTest {
    name: "eight",
    scenario: r#"
        start eight -q --no-tui -d 300 --comm fx_kernel --records sample:50 --buffer-size 16384 -o eight.jsonl __x64_sys_getpgid
        pids=""
        for cpu in 0 1 2 3 4 5 6 7; do
            taskset -c $cpu fx_kernel getpgid 2000 > eight.fx$cpu &
            pids="$pids $!"
        done
        wait $pids
        kill -TERM "$bg_pid"
        finish
    "#,
    check: eight,
};

fn eight(results: &Results) -> Result<()> {
    let (_, trace) = results.traced_with_drops("eight")?;
    expect_signal_end(&trace)?;
    let mut per_cpu: BTreeMap<u64, u64> = BTreeMap::new();
    for agg in &trace.aggregates {
        for cpu in agg["cpus"].as_array().into_iter().flatten() {
            *per_cpu.entry(number(cpu, "cpu")?).or_default() += number(cpu, "hits")?;
        }
    }
    let expected: BTreeMap<u64, u64> = (0..8).map(|cpu| (cpu, EIGHT_CALLS)).collect();
    ensure!(
        per_cpu == expected,
        "expected {EIGHT_CALLS} hits counted on each of 8 CPUs; got {per_cpu:?}"
    );
    let target = &trace.summary["targets"][0];
    ensure!(
        number(target, "missed")? == 0
            && number(target, "unrecorded")? == 0
            && number(&trace.summary, "lost")? == number(target, "dropped")?,
        "hits missed or unrecorded with 8 CPUs at once: {target}"
    );
    ensure!(
        number(target, "counted")? == 8 * EIGHT_CALLS,
        "expected {} hits counted: {target}",
        8 * EIGHT_CALLS
    );
    Ok(())
}

/// [`SYSWIDE`] with no records at all (`--records none`): the kernel's
/// aggregates alone count every call, by comm, CPU and both stacks.
pub(super) const SYSAGG: KernelTest = KernelTest {
    name: "sysagg",
    scenario: three_fixtures!(
        "sysagg",
        "-q --no-tui -d 60 --records none --stack both -o sysagg.jsonl __x64_sys_getpgid"
    ),
    check: sysagg,
};

fn sysagg(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("sysagg")?;
    expect_signal_end(&trace)?;
    ensure!(
        trace.hits.is_empty(),
        "--records none wrote {} hit lines",
        trace.hits.len()
    );
    let mut counts: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for agg in &trace.aggregates {
        let comm = text_field(agg, "comm")?.to_owned();
        let first = agg["kstack"][0].as_str().unwrap_or("");
        if comm.starts_with("fx_") {
            ensure!(
                first.starts_with("__x64_sys_getpgid+0x0"),
                "an aggregate of {comm} whose kernel stack starts at {first:?}: {agg}"
            );
        }
        for cpu in agg["cpus"].as_array().into_iter().flatten() {
            let key = (comm.clone(), number(cpu, "cpu")?);
            *counts.entry(key).or_default() += number(cpu, "hits")? as usize;
        }
    }
    expect_both_cpus(&counts)?;
    ensure!(
        count(&counts, "fx_other", None) == 25,
        "expected 25 hits from fx_other; got {counts:?}"
    );
    let target = &trace.summary["targets"][0];
    ensure!(
        number(target, "unsampled")? == number(target, "counted")?,
        "every counted hit is unsampled with --records none: {target}"
    );
    Ok(())
}

/// [`SYSWIDE`] with `--comm fx_kernel`, which must leave fx_other out.
pub(super) const SYSCOMM: KernelTest = KernelTest {
    name: "syscomm",
    scenario: three_fixtures!(
        "syscomm",
        "-q --no-tui -d 60 --comm fx_kernel -o syscomm.jsonl __x64_sys_getpgid"
    ),
    check: syscomm,
};

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

/// The demo (`cargo xtask demo`), checked like the rest: its trace and the
/// workload's own account of what it did stay in /out/demo.
pub(super) const DEMO: KernelTest = KernelTest {
    name: "demo",
    scenario: r#"
        mkdir -p /out/demo
        echo "/vm/demo.sh /out/demo" > demo.cmd
        /vm/demo.sh /out/demo > demo.stdout 2> demo.stderr
        echo $? > demo.rc
        echo "kernel-tests: demo: exit $(cat demo.rc): /vm/demo.sh /out/demo"
    "#,
    check: demo,
};

/// The demo (tests/vm/demo.sh, as `cargo xtask demo` runs it): every check
/// of demo::check on its trace and the workload's own account.
fn demo(results: &Results) -> Result<()> {
    let run = results.run("demo")?;
    ensure!(
        run.rc == 0,
        "demo.sh exited {}; its output:\n{}\n{}",
        run.rc,
        run.stdout.trim(),
        run.stderr.trim()
    );
    demo::check(&results.dir.join("demo"), 2).map(|_| ())
}

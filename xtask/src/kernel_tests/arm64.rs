//! Kernel tests in the arm64 guest (`cargo xtask test --arch arm64`), on
//! Debian's arm64 6.1 and newest 6.12: each a [`KernelTest`] as for
//! x86-64, run by the same tests/vm/kernel-tests.sh, checked against the
//! same kind of ground truth (fx_kernel's and fx_user's own counts).
//!
//! What differs from the x86-64 tests: arm64 refuses kernel breakpoints
//! scoped to a task, so every kernel target is traced system-wide, with
//! `--comm` keeping the fixture's hits (ended by SIGTERM after it); the
//! system call wrapper is
//! `__arm64_sys_getpgid`, stacks go through `invoke_syscall`, a write
//! watchpoint's hit holds the value before the store (`old_value`) and the
//! value after it only from the next hit (`value`, none for the last),
//! `:r` works, the watchpoint registers are counted by `doctor`
//! (QEMU's `max` CPU has 4), and user-space targets run in the guest with
//! the cross-built fx_user. Debian's arm64 6.1 lists no variables in
//! /proc/kallsyms and ships no System.map, so the kernel-variable tests
//! need 6.12 (CONFIG_KALLSYMS_ALL); on 6.1 they check that the variable is
//! indeed absent and say so, rather than pass silently.

use std::time::Duration;

use anyhow::{Result, ensure};

use super::{
    by_command,
    results::{KernelTest, Results, expect_frame, expect_hits},
};
use crate::{
    arch::Arch,
    vm::{self, Kernel},
    workspace_root,
};
use hwbp_tests::harness::{
    fixture::{FixtureReads, printed},
    trace::{Trace, number, text_field},
};

/// Execute breakpoint on the arm64 system call wrapper, with its BTF
/// argument and a kernel stack.
const GETPGID: KernelTest = KernelTest {
    name: "a64_getpgid",
    scenario: r#"
        fact a64_getpgid_addr "$(addr_of __arm64_sys_getpgid)"
        start a64_getpgid -q --no-tui --comm fx_kernel -o a64_getpgid.jsonl __arm64_sys_getpgid
        fx_kernel getpgid 100 > a64_getpgid.fx
        kill -TERM "$bg_pid"
        finish
    "#,
    check: getpgid,
};

fn getpgid(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("a64_getpgid")?;
    by_command::expect_getpgid(
        &trace,
        results.addr("a64_getpgid_addr")?,
        "__arm64_sys_getpgid",
        "invoke_syscall",
    )
}

/// vfs_read's four arguments from BTF, read from x0..x3, exactly for the
/// fixture's reads.
const VFS_ARGS: KernelTest = KernelTest {
    name: "a64_vfs",
    scenario: r#"
        start a64_vfs -q --no-tui --comm fx_reads -o a64_vfs.jsonl vfs_read
        fx_kernel read-as fx_reads /proc/version 5 > a64_vfs.fx
        kill -TERM "$bg_pid"
        finish
    "#,
    check: vfs_args,
};

fn vfs_args(results: &Results) -> Result<()> {
    expect_fx_reads(results, "a64_vfs")
}

/// `--comm fx_reads` right after a hit of a longer comm on the same CPU:
/// the fixture reads once as `fx_reads_before`, pinned to its CPU, then
/// makes its 5 reads as fx_reads. Kernels 5.18 to 6.3 (Debian's 6.1
/// among them) copy a comm without zeroing the bytes after its NUL, so a
/// program that reuses its buffer keeps the longer name's tail ("before")
/// there; hwbp once compared it too and filtered out all 5 reads.
const COMM_AFTER: KernelTest = KernelTest {
    name: "a64_comm",
    scenario: r#"
        start a64_comm -q --no-tui --comm fx_reads -o a64_comm.jsonl vfs_read
        fx_kernel read-after fx_reads_before fx_reads /proc/version 5 > a64_comm.fx
        kill -TERM "$bg_pid"
        finish
    "#,
    check: comm_after,
};

fn comm_after(results: &Results) -> Result<()> {
    expect_fx_reads(results, "a64_comm")
}

/// Test `name`'s trace holds exactly the 5 vfs_read calls fx_reads made
/// (its fixture's output in NAME.fx), with their arguments.
fn expect_fx_reads(results: &Results, name: &str) -> Result<()> {
    let (_, trace) = results.traced(name)?;
    let fixture = FixtureReads::parse(&results.read(&format!("{name}.fx"))?)?;
    let reads: Vec<_> = trace
        .hits
        .iter()
        .filter(|hit| hit["comm"] == "fx_reads")
        .collect();
    ensure!(
        reads.len() == fixture.reads && fixture.reads == 5,
        "{name}: {} vfs_read hits by fx_reads, which made {} reads (5 asked); the \
         summary's counts: {}",
        reads.len(),
        fixture.reads,
        trace.summary["targets"]
    );
    for hit in reads {
        fixture.expect_vfs_read(hit)?;
    }
    Ok(())
}

/// Where /proc/kallsyms has no pid_max (Debian's arm64 6.1): the variable
/// tests cannot name it, and say why.
fn no_variables(results: &Results, name: &str) -> Result<bool> {
    if results
        .fact("pid_max_addr")
        .is_ok_and(|addr| !addr.is_empty())
    {
        return Ok(false);
    }
    let release = results.fact("release")?;
    ensure!(
        release.starts_with("6.1.0-"),
        "{name}: pid_max is missing from /proc/kallsyms on {release}, which should list it"
    );
    println!(
        "kernel test {name}: {release} lists no variables in /proc/kallsyms (no \
         CONFIG_KALLSYMS_ALL, no System.map in its package): checked on 6.12"
    );
    Ok(true)
}

/// A write watchpoint: three stores, each hit holding the value before it.
const PIDMAX_W: KernelTest = KernelTest {
    name: "a64_pidmax_w",
    scenario: r#"
        if [ -n "$(addr_of pid_max)" ]; then
            start a64_pidmax_w -q --no-tui --comm fx_kernel -o a64_pidmax_w.jsonl pid_max:w
            fx_kernel pidmax 3 > a64_pidmax_w.fx
            kill -TERM "$bg_pid"
            finish
        fi
    "#,
    check: pidmax_w,
};

fn pidmax_w(results: &Results) -> Result<()> {
    if no_variables(results, "a64_pidmax_w")? {
        return Ok(());
    }
    let (_, trace) = results.traced("a64_pidmax_w")?;
    let written = printed(&results.read("a64_pidmax_w.fx")?, "wrote ")?;
    ensure!(written.len() == 3, "fx_kernel pidmax reported {written:?}");
    expect_hits(&trace, 3, results.addr("pid_max_addr")?, "w")?;
    expect_frame(&trace, "proc_sys_call_handler")?;
    let (old, after) = values(&trace)?;
    // The last store restores the value pid_max had before the first. The
    // value each store left is the next hit's: none for the last.
    let expected = [written[2], written[0], written[1]];
    let expected_after = [Some(written[0]), Some(written[1]), None];
    ensure!(
        old == expected && after == expected_after,
        "values before and after each store {old:?} and {after:?}, expected {expected:?} and \
         {expected_after:?} (the fixture wrote {written:?})"
    );
    Ok(())
}

/// A read/write watchpoint: the fixture's one load of the value it then
/// overwrites, and its three stores, each hit holding the value before
/// the access (a load's is the value it read).
const PIDMAX_RW: KernelTest = KernelTest {
    name: "a64_pidmax_rw",
    scenario: r#"
        if [ -n "$(addr_of pid_max)" ]; then
            start a64_pidmax_rw -q --no-tui --comm fx_kernel -o a64_pidmax_rw.jsonl pid_max:rw
            fx_kernel pidmax 3 > a64_pidmax_rw.fx
            kill -TERM "$bg_pid"
            finish
        fi
    "#,
    check: pidmax_rw,
};

fn pidmax_rw(results: &Results) -> Result<()> {
    if no_variables(results, "a64_pidmax_rw")? {
        return Ok(());
    }
    let (_, trace) = results.traced("a64_pidmax_rw")?;
    let written = printed(&results.read("a64_pidmax_rw.fx")?, "wrote ")?;
    ensure!(written.len() == 3, "fx_kernel pidmax reported {written:?}");
    expect_hits(&trace, 4, results.addr("pid_max_addr")?, "rw")?;
    let (old, after) = values(&trace)?;
    // The load reads the value the last store restores, and leaves it.
    let expected = [written[2], written[2], written[0], written[1]];
    let expected_after = [Some(written[2]), Some(written[0]), Some(written[1]), None];
    ensure!(
        old == expected && after == expected_after,
        "values before and after each access {old:?} and {after:?}, expected {expected:?} and \
         {expected_after:?} (the fixture wrote {written:?})"
    );
    Ok(())
}

/// Each hit's `old_value`, the value before its access, and `value`, the
/// value after it (none when not known).
fn values(trace: &Trace) -> Result<(Vec<u64>, Vec<Option<u64>>)> {
    let old = trace
        .hits
        .iter()
        .map(|hit| number(hit, "old_value"))
        .collect::<Result<_>>()?;
    let after = trace
        .hits
        .iter()
        .map(|hit| hit.get("value").and_then(|v| v.as_u64()))
        .collect();
    Ok((old, after))
}

/// A read-only watchpoint (`:r`, which x86 lacks): exactly the fixture's
/// loads, with the value each read.
const PIDMAX_R: KernelTest = KernelTest {
    name: "a64_pidmax_r",
    scenario: r#"
        if [ -n "$(addr_of pid_max)" ]; then
            start a64_pidmax_r -q --no-tui --comm fx_kernel -o a64_pidmax_r.jsonl pid_max:r
            fx_kernel read-pidmax 5 > a64_pidmax_r.fx
            kill -TERM "$bg_pid"
            finish
        fi
    "#,
    check: pidmax_r,
};

fn pidmax_r(results: &Results) -> Result<()> {
    if no_variables(results, "a64_pidmax_r")? {
        return Ok(());
    }
    let (_, trace) = results.traced("a64_pidmax_r")?;
    let read = printed(&results.read("a64_pidmax_r.fx")?, "read ")?;
    ensure!(read.len() == 5, "fx_kernel read-pidmax reported {read:?}");
    expect_hits(&trace, 5, results.addr("pid_max_addr")?, "r")?;
    let seen: Vec<u64> = trace
        .hits
        .iter()
        .map(|hit| number(hit, "value"))
        .collect::<Result<_>>()?;
    ensure!(seen == read, "values {seen:?}, the fixture read {read:?}");
    Ok(())
}

/// All or nothing with more watchpoints than the hardware has (doctor
/// counts them): refused with the reason, nothing armed, and the same
/// number less one then works at once.
const SLOTS: KernelTest = KernelTest {
    name: "a64_slots",
    scenario: r#"
        if [ -n "$(addr_of pid_max)" ]; then
            wps=$(hwbp-trace doctor 2> /dev/null | sed -n 's/.* and \([0-9]*\) watchpoints free.*/\1/p')
            fact a64_watchpoints "$wps"
            set -- pid_max:w max_threads:w panic_timeout:w nr_threads:w overflowuid:w overflowgid:w \
                   panic_on_oops:w randomize_va_space:w
            more="" i=0
            for t in "$@"; do [ "$i" -le "$wps" ] && more="$more $t"; i=$((i + 1)); done
            fewer="" i=0
            for t in "$@"; do [ "$i" -lt "$wps" ] && fewer="$fewer $t"; i=$((i + 1)); done
            # Refused before anything is armed; the time-out only bounds a
            # run that would wrongly arm and then wait.
            echo "hwbp-trace$more" > a64_slots.cmd
            timeout 60 hwbp-trace -q --no-tui -o a64_slots.jsonl $more > a64_slots.stdout 2> a64_slots.stderr
            echo $? > a64_slots.rc
            start a64_slots_fit -q --no-tui --comm fx_kernel -o a64_slots_fit.jsonl $fewer
            fx_kernel pidmax 3 > a64_slots_fit.fx
            kill -TERM "$bg_pid"
            finish
        fi
    "#,
    check: slots,
};

fn slots(results: &Results) -> Result<()> {
    if no_variables(results, "a64_slots")? {
        return Ok(());
    }
    let wps: usize = results.fact("a64_watchpoints")?.parse().unwrap_or(0);
    ensure!(
        (2..=16).contains(&wps),
        "doctor counted {wps} watchpoints; arm64 has 2 to 16"
    );
    let refused = results.run("a64_slots")?;
    ensure!(
        refused.rc != 0 && refused.stderr.contains("no free debug register"),
        "{} watchpoints with {wps} registers: expected a refusal, got exit {}: {}",
        wps + 1,
        refused.rc,
        refused.stderr
    );
    let (_, trace) = results.traced("a64_slots_fit")?;
    let on_pid_max = Trace {
        header: trace.header.clone(),
        hits: trace
            .hits
            .iter()
            .filter(|hit| hit["symbol"] == "pid_max")
            .cloned()
            .collect(),
        aggregates: Vec::new(),
        summary: serde_json::Value::Null,
    };
    expect_hits(&on_pid_max, 3, results.addr("pid_max_addr")?, "w")?;
    Ok(())
}

/// User-space targets in the guest: the cross-built fx_user's calls
/// (execute, with the argument in x0 and a user stack by frame pointers)
/// and writes (each hit with the value before the store: 0..N).
const USER: KernelTest = KernelTest {
    name: "a64_user",
    scenario: r#"
        run a64_user -q --no-tui -o a64_user.jsonl hwbp_fx_target -- fx_user calls 100
        run a64_user_w -q --no-tui -o a64_user_w.jsonl HWBP_FX_COUNTER:w -- fx_user writes 50
    "#,
    check: user,
};

fn user(results: &Results) -> Result<()> {
    let (_, calls) = results.traced("a64_user")?;
    ensure!(
        calls.hits.len() == 100,
        "hwbp_fx_target: {} hits for 100 calls",
        calls.hits.len()
    );
    for hit in &calls.hits {
        ensure!(
            text_field(hit, "ip_sym")?.starts_with("hwbp_fx_target+0x0"),
            "not at hwbp_fx_target's first instruction: {hit}"
        );
        let ustack: Vec<&str> = hit["ustack"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|frame| frame.as_str())
            .collect();
        ensure!(
            ustack
                .iter()
                .any(|frame| frame.starts_with("hwbp_fx_caller"))
                && ustack.iter().any(|frame| frame.contains("main")),
            "the user stack does not go through hwbp_fx_caller to main: {hit}"
        );
    }
    let (_, writes) = results.traced("a64_user_w")?;
    let (old, after) = values(&writes)?;
    let expected: Vec<u64> = (0..50).collect();
    let expected_after: Vec<Option<u64>> = (1..50).map(Some).chain([None]).collect();
    ensure!(
        old == expected && after == expected_after,
        "HWBP_FX_COUNTER: values before and after each store {old:?} and {after:?}, expected \
         0..50 and 1..50 (none after the last)"
    );
    Ok(())
}

/// A user variable the kernel writes: the cross-built fx_user's ten
/// read(2)s of /dev/zero into FX_KERNEL_FILLED, then its own store of 7.
/// The kernel's stores to user memory are unprivileged ones (STTR) made at
/// EL1; whether a watchpoint armed for EL0 sees them is the CPU's answer
/// (QEMU's `max` CPU: it does not), which the perf event's own count gives.
const KERNEL_FILLS: KernelTest = KernelTest {
    name: "a64_kfills",
    scenario: r#"
        run a64_kfills -q --no-tui --stack both -o a64_kfills.jsonl FX_KERNEL_FILLED:w -- fx_user kfills 10
    "#,
    check: kernel_fills,
};

/// hwbp-trace agrees with the perf event's own count (`kernel_count`):
/// every trap recorded; the kernel's, if any, each through `ksys_read` or
/// `vfs_read` and at most one per read (arm64's clear_user stores 8 bytes
/// at once); and the program's own store last, in user mode, over the
/// zeros the reads left, seen or not.
fn kernel_fills(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("a64_kfills")?;
    let target = &trace.summary["targets"][0];
    let counted = target["kernel_count"].as_u64().unwrap_or(0) as usize;
    let in_kernel: Vec<&serde_json::Value> = trace
        .hits
        .iter()
        .filter(|hit| hit["kstack"].as_array().is_some_and(|k| !k.is_empty()))
        .collect();
    ensure!(
        trace.hits.len() == counted && in_kernel.len() + 1 == counted && counted <= 11,
        "the perf event counted {counted} traps: expected as many hits, all but the program's \
         own store in the kernel, at most one per read; got {} hits, {} in the kernel",
        trace.hits.len(),
        in_kernel.len()
    );
    for hit in &in_kernel {
        let kstack = hit["kstack"].to_string();
        ensure!(
            kstack.contains("ksys_read") || kstack.contains("vfs_read"),
            "a kernel-mode hit not in the read system call: {hit}"
        );
    }
    let last = trace.hits.last().map(|hit| {
        (
            hit["old_value"].as_u64(),
            hit["kstack"].as_array().is_some_and(|k| k.is_empty()),
        )
    });
    ensure!(
        last == Some((Some(0), true)),
        "the program's own store comes last, in user mode, over the zeros the reads left: \
         {last:?}"
    );
    println!(
        "kernel test a64_kfills: {} of the kernel's 10 stores to the user variable trapped",
        in_kernel.len()
    );
    Ok(())
}

/// The arm64 tests, in the order they run.
pub(super) const TESTS: &[KernelTest] = &[
    GETPGID,
    VFS_ARGS,
    COMM_AFTER,
    PIDMAX_W,
    PIDMAX_RW,
    PIDMAX_R,
    SLOTS,
    USER,
    KERNEL_FILLS,
];

/// Debian's arm64 kernels: what linux-image-arm64 depends on (6.1) and the
/// newest 6.12.
const MATRIX: &[Option<&str>] = &[None, Some("6.12")];

/// The arm64 kernel tests on both kernels (or only `requested`).
pub fn run_matrix(requested: Option<&str>) -> Result<()> {
    let kernels: Vec<Option<&str>> = match requested {
        Some(_) => vec![requested],
        None => MATRIX.to_vec(),
    };
    let mut failed = Vec::new();
    for request in kernels {
        let kernel = vm::fetch_kernel_for(Arch::Arm64, request)?;
        if let Err(error) = run(&kernel) {
            println!("kernel-tests: {}: FAILED: {error:#}", kernel.package);
            failed.push(kernel.package);
        }
    }
    ensure!(
        failed.is_empty(),
        "arm64 kernel tests failed on {}",
        failed.join(", ")
    );
    Ok(())
}

fn run(kernel: &Kernel) -> Result<usize> {
    let out_dir = workspace_root()
        .join("target/vm-tests")
        .join(&kernel.package);
    let command = [
        "/vm/kernel-tests.sh".to_owned(),
        // No SYMBOL+OFFSET test here: the offset is not used.
        "0x0".to_owned(),
        super::scenarios(TESTS),
    ];
    let outcome = vm::boot(&vm::Boot {
        kernel,
        command: &command,
        kvm: false,
        timeout: Some(Duration::from_secs(900)),
        boot_timeout: vm::BOOT_TIMEOUT,
        mttcg: false,
        cpus: vm::CPUS,
        interactive: false,
        out_dir: &out_dir,
    })?;
    ensure!(
        outcome.exit == 0,
        "the guest test script exited {} (see the console above)",
        outcome.exit
    );
    let results = Results::load(&out_dir, 0)?;
    let mut failed = Vec::new();
    for KernelTest { name, check, .. } in TESTS {
        match check(&results) {
            Ok(()) => println!("kernel test {name} ... ok"),
            Err(error) => {
                println!("kernel test {name} ... FAILED\n    {error:#}");
                failed.push(*name);
            }
        }
    }
    // Alone on its line: CI reads it as the test count.
    println!(
        "kernel-tests: {}: {} passed, {} failed",
        kernel.package,
        TESTS.len() - failed.len(),
        failed.len()
    );
    ensure!(
        failed.is_empty(),
        "kernel tests failed: {}",
        failed.join(", ")
    );
    Ok(TESTS.len())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn scenarios_are_named_and_parse_as_sh() {
        let mut names = HashSet::new();
        for test in TESTS {
            assert!(names.insert(test.name), "{} twice", test.name);
            assert!(test.scenario.contains(test.name), "{}", test.name);
        }
        super::super::assert_scenarios_parse(TESTS);
    }
}

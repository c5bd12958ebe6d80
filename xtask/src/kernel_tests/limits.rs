//! Kernel tests of what hwbp-trace refuses: more targets than debug
//! registers (and the four after), a kprobe-blacklisted function, a
//! misaligned or read-only watchpoint, a per-CPU variable by name. Each
//! fails before arming anything.

use anyhow::{Context as _, Result, ensure};

use super::results::{KernelTest, Results};

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

/// Five targets system-wide need five debug registers per CPU: x86 has
/// four, so this fails as a whole.
pub(super) const FIVE: KernelTest = KernelTest {
    name: "five",
    scenario: "run five -q --no-tui -d 1 \\
               __x64_sys_getpgid __x64_sys_getpid __x64_sys_getppid __x64_sys_getuid __x64_sys_getgid",
    check: five,
};

fn five(results: &Results) -> Result<()> {
    expect_failure(results, "five", 1, &["4 debug registers"])
}

/// Four right after [`FIVE`] (it must run next): they must then succeed.
pub(super) const FOUR: KernelTest = KernelTest {
    name: "four",
    scenario: "run four -q --no-tui -d 1 -o four.jsonl \\
               __x64_sys_getpgid __x64_sys_getpid __x64_sys_getppid __x64_sys_getuid",
    check: four,
};

/// Right after the failed five, four on every CPU (all debug registers):
/// nothing of the failed run may still hold one.
fn four(results: &Results) -> Result<()> {
    let (run, trace) = results.traced("four")?;
    let cpus: u64 = results.fact("cpus")?.parse().context("cpus in facts.env")?;
    let tracing = format!(
        "Tracing 4 targets ({} breakpoints on {cpus} CPUs)",
        4 * cpus
    );
    ensure!(
        run.stderr.lines().any(|line| line.starts_with(&tracing)),
        "no `{tracing}` line:\n{}",
        run.stderr.trim()
    );
    let targets = trace.summary["targets"].as_array().map_or(0, Vec::len);
    ensure!(targets == 4, "the summary lists {targets} targets, not 4");
    Ok(())
}

/// A kprobe-blacklisted function (the script's `$blacklisted`: exc_debug,
/// the #DB handler itself, if listed).
pub(super) const BLACKLISTED: KernelTest = KernelTest {
    name: "blacklisted",
    scenario: r#"run blacklisted -q --no-tui -d 1 "$blacklisted:x""#,
    check: blacklisted,
};

fn blacklisted(results: &Results) -> Result<()> {
    let function = results.fact("blacklisted")?.to_owned();
    expect_failure(
        results,
        "blacklisted",
        1,
        &[&format!("`{function}` is on the kprobe blacklist")],
    )
}

/// A 4-byte watchpoint on an address not 4-byte aligned.
pub(super) const MISALIGNED: KernelTest = KernelTest {
    name: "misaligned",
    scenario: r#"run misaligned -q --no-tui -d 1 pid_max+1/4"#,
    check: misaligned,
};

fn misaligned(results: &Results) -> Result<()> {
    expect_failure(results, "misaligned", 2, &["not aligned"])
}

/// x86 has no read-only watchpoints.
pub(super) const READONLY: KernelTest = KernelTest {
    name: "readonly",
    scenario: r#"run readonly -q --no-tui -d 1 pid_max:r"#,
    check: readonly,
};

fn readonly(results: &Results) -> Result<()> {
    expect_failure(results, "readonly", 2, &["read-only"])
}

/// A per-CPU variable by name (`runqueues`, on Debian's 6.1 and 6.12):
/// kallsyms lists its offset in the per-CPU area, no CPU's copy. Then
/// `list` shows its kind as `percpu`.
pub(super) const PERCPU: KernelTest = KernelTest {
    name: "percpu",
    scenario: r#"fact runqueues_addr "$(addr_of runqueues)"
run percpu -q --no-tui -d 1 -o percpu.jsonl runqueues
run percpu_list list runqueues"#,
    check: percpu,
};

fn percpu(results: &Results) -> Result<()> {
    let addr = results.addr("runqueues_addr")?;
    expect_failure(
        results,
        "percpu",
        2,
        &[
            "`runqueues` is a per-CPU variable of the kernel: every CPU has its own copy",
            &format!("`__per_cpu_offset[CPU]` + {addr:#x}"),
            "does not arm it by name",
            "drgn: `per_cpu_ptr(prog['runqueues'].address_of_(), CPU)`",
        ],
    )?;
    // The trace file is created only once the breakpoints are open.
    ensure!(
        !results.dir.join("percpu.jsonl").exists(),
        "the refused run wrote percpu.jsonl: it opened breakpoints"
    );
    let list = results.run("percpu_list")?;
    let row = format!("{addr:#018x} percpu ");
    ensure!(
        list.rc == 0
            && list
                .stdout
                .lines()
                .any(|line| line.starts_with(&row) && line.ends_with(" runqueues [kernel]")),
        "`list runqueues` (exit {}) has no `{row}… runqueues [kernel]` row:\n{}",
        list.rc,
        list.stdout.trim()
    );
    Ok(())
}

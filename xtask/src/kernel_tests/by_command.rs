//! Kernel tests scoped to a command (`hwbp-trace TARGET -- fx_kernel ...`):
//! each kind of target and mode, arguments from BTF, throttling, and
//! arming again and again.

use anyhow::{Context as _, Result, ensure};

use super::results::{KernelTest, Results, expect_frame, expect_hits};
use hwbp_tests::harness::{
    fixture::{FixtureReads, printed},
    trace::{Trace, expect_hit_frame, hex_field, text_field, values},
};

/// Execute breakpoint on a system call, scoped to the command.
pub(super) const GETPGID: KernelTest = KernelTest {
    name: "getpgid",
    scenario: "run getpgid -q --no-tui -o getpgid.jsonl __x64_sys_getpgid \\
               -- fx_kernel getpgid 100",
    check: getpgid,
};

fn getpgid(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("getpgid")?;
    expect_getpgid(
        &trace,
        results.addr("getpgid_addr")?,
        "__x64_sys_getpgid",
        "do_syscall_64",
    )
}

/// Exactly the fixture's 100 getpgid(2) calls at `function` (the
/// architecture's syscall wrapper, armed at `addr`), each at its first
/// instruction, with `frame` in its kernel stack and the wrapper's one
/// parameter, `const struct pt_regs *regs`, named and typed from the guest
/// kernel's BTF.
pub(super) fn expect_getpgid(trace: &Trace, addr: u64, function: &str, frame: &str) -> Result<()> {
    expect_hits(trace, 100, addr, "x")?;
    expect_frame(trace, frame)?;
    for hit in &trace.hits {
        ensure!(
            text_field(hit, "ip_sym")? == format!("{function}+0x0"),
            "ip_sym is not the function's first instruction: {hit}"
        );
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

/// Throttling: the kernel throttles sampling events that overflow faster
/// than kernel.perf_event_max_sample_rate allows. A breakpoint (sample
/// period 1) is never throttled: at a limit of 100 per second, 2000 calls
/// still give 2000 hits, every one counted by the kernel and recorded.
pub(super) const THROTTLE: KernelTest = KernelTest {
    name: "throttle",
    scenario: r#"
        max_rate=/proc/sys/kernel/perf_event_max_sample_rate
        saved_rate=$(cat "$max_rate")
        echo 100 > "$max_rate"
        fact max_sample_rate "$(cat "$max_rate")"
        run throttle -q --no-tui -o throttle.jsonl __x64_sys_getpgid -- fx_kernel getpgid 2000
        echo "$saved_rate" > "$max_rate"
    "#,
    check: throttle,
};

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

/// Arming and disarming, again and again, while both CPUs schedule: each
/// run takes all four debug registers for its command, so one that a run
/// before left behind would fail the next; each must count its command's 7
/// calls. Between runs the kernel patches a static key (perf_sched_events)
/// in and out of __schedule, as every run with a command does, and goes
/// off a second after the last per-task event closes. A longer loop of this
/// kind crashed the guest under a host thread per vCPU (see vm/); this
/// boot runs one thread for both.
pub(super) const REARM: KernelTest = KernelTest {
    name: "rearm",
    scenario: r#"
        yes | cat > /dev/null &
        load=$!
        for i in 1 2 3 4 5 6; do
            run "rearm$i" -q --no-tui -o "rearm$i.jsonl" \
                __x64_sys_getpgid __x64_sys_getpid __x64_sys_getppid __x64_sys_getuid \
                -- fx_kernel getpgid 7
            sleep 1.1
        done
        kill "$load"
    "#,
    check: rearm,
};

/// Runs of the loop in [`REARM`]'s scenario.
const REARM_RUNS: usize = 6;

/// Six runs in a row under load, each arming all four debug registers for
/// its command: each counts the command's 7 getpgid calls exactly, and none
/// is refused a register the run before still held.
fn rearm(results: &Results) -> Result<()> {
    let getpgid = results.addr("getpgid_addr")?;
    for i in 1..=REARM_RUNS {
        let name = format!("rearm{i}");
        let (_, trace) = results
            .traced(&name)
            .with_context(|| format!("run {i} of {REARM_RUNS}"))?;
        let targets = trace.summary["targets"].as_array().map_or(0, Vec::len);
        ensure!(
            targets == 4,
            "{name}: the summary lists {targets} targets, not 4"
        );
        let calls = trace
            .hits
            .iter()
            .filter(|hit| hex_field(hit, "addr").is_ok_and(|addr| addr == getpgid))
            .count();
        ensure!(
            calls == 7,
            "{name}: expected exactly 7 hits on __x64_sys_getpgid, got {calls}"
        );
    }
    Ok(())
}

/// Writes: each hit's value is what the fixture wrote, in order.
fn expect_written(results: &Results, name: &str, count: usize, mode: &str) -> Result<()> {
    let (run, trace) = results.traced(name)?;
    let written = printed(&run.stdout, "wrote ")?;
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

/// Write watchpoint on a kernel variable: 50 stores, values checked.
pub(super) const PIDMAX: KernelTest = KernelTest {
    name: "pidmax",
    scenario: "run pidmax -q --no-tui -o pidmax.jsonl pid_max:w -- fx_kernel pidmax 50",
    check: pidmax,
};

fn pidmax(results: &Results) -> Result<()> {
    expect_written(results, "pidmax", 50, "w")
}

/// Reads: each hit's value is what the fixture read.
fn expect_read(results: &Results, name: &str, count: usize) -> Result<()> {
    let (run, trace) = results.traced(name)?;
    let read = printed(&run.stdout, "read ")?;
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

/// rw counts loads too: 20 reads.
pub(super) const RW_READS: KernelTest = KernelTest {
    name: "rw_reads",
    scenario: "run rw_reads -q --no-tui -o rw_reads.jsonl pid_max:rw -- fx_kernel read-pidmax 20",
    check: rw_reads,
};

fn rw_reads(results: &Results) -> Result<()> {
    expect_read(results, "rw_reads", 20)
}

/// rw on 1 read + 10 writes.
pub(super) const RW_MIXED: KernelTest = KernelTest {
    name: "rw_mixed",
    scenario: "run rw_mixed -q --no-tui -o rw_mixed.jsonl pid_max:rw -- fx_kernel pidmax 10",
    check: rw_mixed,
};

/// `pidmax 10` reads the original value once, then writes 10 times: rw sees 11.
fn rw_mixed(results: &Results) -> Result<()> {
    let (run, trace) = results.traced("rw_mixed")?;
    let written = printed(&run.stdout, "wrote ")?;
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

/// ksym_tracer's three-letter modes: `rw-`.
pub(super) const KSYM_RW: KernelTest = KernelTest {
    name: "ksym_rw",
    scenario: "run ksym_rw -q --no-tui -o ksym_rw.jsonl pid_max:rw- -- fx_kernel read-pidmax 15",
    check: ksym_rw,
};

fn ksym_rw(results: &Results) -> Result<()> {
    expect_read(results, "ksym_rw", 15)
}

/// ksym_tracer's `-w-`.
pub(super) const KSYM_W: KernelTest = KernelTest {
    name: "ksym_w",
    scenario: "run ksym_w -q --no-tui -o ksym_w.jsonl pid_max:-w- -- fx_kernel pidmax 12",
    check: ksym_w,
};

fn ksym_w(results: &Results) -> Result<()> {
    expect_written(results, "ksym_w", 12, "w")
}

/// ksym_tracer's `--x`.
pub(super) const KSYM_X: KernelTest = KernelTest {
    name: "ksym_x",
    scenario: "run ksym_x -q --no-tui -o ksym_x.jsonl __x64_sys_getpgid:--x \\
               -- fx_kernel getpgid 40",
    check: ksym_x,
};

fn ksym_x(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("ksym_x")?;
    expect_hits(&trace, 40, results.addr("getpgid_addr")?, "x")?;
    expect_frame(&trace, "do_syscall_64")
}

/// SYMBOL+OFFSET: an instruction inside the function (`$exec_offset`, which
/// the host reads from the kernel's config: see `exec_offset`).
pub(super) const OFFSET: KernelTest = KernelTest {
    name: "offset",
    scenario: r#"run offset -q --no-tui -o offset.jsonl "__x64_sys_getpgid+$exec_offset:x" \
        -- fx_kernel getpgid 30"#,
    check: offset,
};

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

/// A raw address from the guest's kallsyms, write watchpoint.
pub(super) const ADDR_W: KernelTest = KernelTest {
    name: "addr_w",
    scenario: r#"run addr_w -q --no-tui -o addr_w.jsonl "0x$(addr_of pid_max):w" \
        -- fx_kernel pidmax 10"#,
    check: addr_w,
};

fn addr_w(results: &Results) -> Result<()> {
    expect_written(results, "addr_w", 10, "w")
}

/// A raw address from the guest's kallsyms, execute breakpoint.
pub(super) const ADDR_X: KernelTest = KernelTest {
    name: "addr_x",
    scenario: r#"run addr_x -q --no-tui -o addr_x.jsonl "0x$(addr_of __x64_sys_getpgid):x" \
        -- fx_kernel getpgid 30"#,
    check: addr_x,
};

fn addr_x(results: &Results) -> Result<()> {
    let (_, trace) = results.traced("addr_x")?;
    expect_hits(&trace, 30, results.addr("getpgid_addr")?, "x")?;
    expect_frame(&trace, "do_syscall_64")
}

/// A kernel function's arguments from BTF: vfs_read(file, buf, count,
/// pos). The fixture renames itself fx_reads once loaded (the dynamic
/// loader's own reads stay under its first name), so --comm keeps exactly
/// its 25 reads.
pub(super) const VFS_ARGS: KernelTest = KernelTest {
    name: "vfs_args",
    scenario: "run vfs_args -q --no-tui -o vfs_args.jsonl --comm fx_reads vfs_read \\
               -- fx_kernel read-as fx_reads /proc/version 25",
    check: vfs_args,
};

/// [`VFS_ARGS`] with the fixture reading once as `fx_reads_before` first,
/// on the CPU it stays on: the longer comm's bytes after the NUL, which
/// Linux 5.18 to 6.3 leave in a reused buffer, must not make the 25 fail
/// `--comm` (docs/arm64.md, where a64_comm tests the same system-wide).
pub(super) const VFS_COMM: KernelTest = KernelTest {
    name: "vfs_comm",
    scenario: "run vfs_comm -q --no-tui -o vfs_comm.jsonl --comm fx_reads vfs_read \\
               -- fx_kernel read-after fx_reads_before fx_reads /proc/version 25",
    check: vfs_comm,
};

fn vfs_args(results: &Results) -> Result<()> {
    expect_vfs_args(results, "vfs_args")
}

fn vfs_comm(results: &Results) -> Result<()> {
    expect_vfs_args(results, "vfs_comm")
}

/// vfs_read's BTF arguments on exactly the fixture's 25 reads (`--comm`
/// keeps the ones it makes after renaming itself) in test `name`.
fn expect_vfs_args(results: &Results, name: &str) -> Result<()> {
    let (fixture, trace) = fixture_reads(results, name)?;
    for hit in &trace.hits {
        ensure!(
            text_field(hit, "comm")? == "fx_reads",
            "hit from another task: {hit}"
        );
        fixture.expect_vfs_read(hit)?;
        expect_hit_frame(hit, "ksys_read")?;
    }
    Ok(())
}

/// The trace of kernel test `name`, whose fixture (`fx_kernel read-as
/// fx_reads ... 25`) made 25 reads, and what it printed: exactly one hit
/// per read.
pub(super) fn fixture_reads(results: &Results, name: &str) -> Result<(FixtureReads, Trace)> {
    let (run, trace) = results.traced(name)?;
    let fixture = FixtureReads::parse(&run.stdout)?;
    ensure!(
        fixture.reads == 25,
        "the fixture reports {} reads, not 25",
        fixture.reads
    );
    ensure!(
        trace.hits.len() == 25,
        "expected exactly the fixture's 25 vfs_read calls, the trace has {} hits",
        trace.hits.len()
    );
    Ok((fixture, trace))
}

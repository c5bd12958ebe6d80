//! BENCHMARKS.md from the results: the goals, then one section per
//! measurement, then the commands that made the numbers.

use std::fmt::Write as _;

use hwbp_tests::harness::tmux::Tmux;

use crate::exec::display;

use super::{
    results::{
        BpfTime, CHEAPER, Contention, Machine, Paired, PerHit, Results, Round, beyond_workload,
        extremes, median, mib, round_range, round_ratios, slope, verdict,
    },
    runs::BPF_TIME_RUNS,
    workload::{Bench, Variant},
};

/// The goals of the record modes of hot targets (docs/hot-targets.md):
/// counts and stacks exact, fewer records or none, within 3% of the floor;
/// `within` gives a variant's cell and verdict against a bound.
fn write_record_mode_goals(
    out: &mut String,
    workload: &str,
    within: impl Fn(Variant, f64) -> (String, &'static str),
) {
    for (variant, what) in [
        (
            Variant::HwbpSampled,
            "a record for 1 hit in 100 (`--records sample:100`)",
        ),
        (
            Variant::HwbpAggregates,
            "aggregates only (`--records none`)",
        ),
    ] {
        let (cell, met) = within(variant, 1.03);
        let _ = writeln!(
            out,
            "| {what}, k+u stacks, within 3% of perf stat, {workload} | {cell} | {met} |"
        );
    }
}

/// The goals of issues 7 (per hit, start-up, memory) and 24 (hot targets)
/// against this run's numbers.
fn write_goals(out: &mut String, bench: &Bench, results: &Results) {
    let _ = writeln!(out, "## Against the goals (issues 7 and 24)\n");
    let _ = writeln!(out, "| goal | this run | |");
    let _ = writeln!(out, "|---|---|---|");
    for workload in [&bench.execute, &bench.write] {
        let row = |variant| {
            results
                .paired
                .iter()
                .find(|p| p.workload == workload.name && p.variant == variant)
        };
        let paired = |variant| row(variant).map_or(f64::NAN, Paired::ratio);
        let runs = |variant| {
            row(variant).map_or_else(String::new, |p| {
                let (low, high) = extremes(&p.run_ratios());
                format!(" (runs {low:.2}x to {high:.2}x)")
            })
        };
        let floor = beyond_workload(results, workload.name, Variant::PerfStat);
        // The separate runs' figures, for comparison: what the goals were
        // judged on before the paired runs, and far noisier.
        let separate = |variant| {
            let tool = beyond_workload(results, workload.name, variant);
            format!(
                "separate runs {:.1} us vs {:.1} us ({:.2}x{})",
                tool * 1e6,
                floor * 1e6,
                tool / floor,
                round_range(&round_ratios(
                    results,
                    workload.name,
                    variant,
                    Variant::PerfStat,
                    None
                ))
            )
        };
        let within_of = |variant, bound: f64| {
            let ratio = paired(variant);
            (
                format!("{ratio:.3}x paired{}; {}", runs(variant), separate(variant)),
                verdict(ratio <= bound),
            )
        };
        let within = |variant| within_of(variant, 1.1);
        let (cell, met) = within(Variant::HwbpTrace);
        let _ = writeln!(
            out,
            "| per hit within 10% of perf stat, {} | {cell} | {met} |",
            workload.name
        );
        write_record_mode_goals(out, workload.name, within_of);
        // Not goals of the issue: where that goal sits against what any
        // recording costs, and where the stacks' cost sits.
        let (cell, met) = within(Variant::PerfRecordNoStacks);
        let _ = writeln!(
            out,
            "| (for reference) perf record -c 1 without stacks, the kernel's own smallest sample, within 10% of perf stat, {} | {cell} | {met} |",
            workload.name
        );
        let (cell, met) = within(Variant::HwbpNoStacks);
        let _ = writeln!(
            out,
            "| (for reference) hwbp-trace without stacks, within 10% of perf stat, {} | {cell} | {met} |",
            workload.name
        );
        let (hwbp, record) = (paired(Variant::HwbpTrace), paired(Variant::PerfRecord));
        let (added, record_added) = (hwbp - 1.0, record - 1.0);
        let (separate_hwbp, separate_record) = (
            beyond_workload(results, workload.name, Variant::HwbpTrace),
            beyond_workload(results, workload.name, Variant::PerfRecord),
        );
        let _ = writeln!(
            out,
            "| clearly cheaper than perf record -g, {}: cheaper per hit, and adding to the floor at most {CHEAPER:.2}x what perf adds | paired: hwbp-trace adds {:.1}% to the floor, perf {:.1}% ({:.2}x); separate runs {:.1} us vs {:.1} us, added {:.2} us vs {:.2} us ({:.2}x{}) | {} |",
            workload.name,
            added * 100.0,
            record_added * 100.0,
            added / record_added,
            separate_hwbp * 1e6,
            separate_record * 1e6,
            (separate_hwbp - floor) * 1e6,
            (separate_record - floor) * 1e6,
            (separate_hwbp - floor) / (separate_record - floor),
            round_range(&round_ratios(
                results,
                workload.name,
                Variant::HwbpTrace,
                Variant::PerfRecord,
                Some(Variant::PerfStat),
            )),
            verdict(hwbp < record && added <= record_added * CHEAPER)
        );
    }
    for s in &results.startup {
        if let Some(why) = &s.refused {
            let _ = writeln!(
                out,
                "| start-up 100 ms or less, {} | not measured: {why} | - |",
                s.name
            );
            continue;
        }
        let t = median(&s.times);
        let _ = writeln!(
            out,
            "| start-up 100 ms or less, {} | {:.0} ms | {} |",
            s.name,
            t * 1e3,
            verdict(t <= 0.1)
        );
    }
    for (how, runs) in [
        ("", &results.sustained),
        (", with the dashboard", &results.dashboard),
    ] {
        if runs.is_empty() {
            continue;
        }
        let lost = runs.iter().map(|m| m.summary.lost).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "| no hits lost at the default ring buffer, every CPU hitting{how} | at most {lost} lost per run | {} |",
            verdict(lost == 0)
        );
    }
    for (how, runs) in [
        ("", &results.sustained),
        (", with the dashboard", &results.dashboard),
    ] {
        if runs.is_empty() {
            continue;
        }
        let rss = runs.iter().map(|m| m.max_rss_kib).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "| peak RSS 64 MiB or less, sustained{how} | {} | {} |",
            mib(rss),
            verdict(rss <= 64 * 1024)
        );
    }
    if let (Some(first), Some(last)) = (results.growth.first(), results.growth.last()) {
        // Flat: within 10% (and 4 MiB) of the shortest trace's peak.
        let flat = last.max_rss_kib as f64 <= first.max_rss_kib as f64 * 1.1 + 4096.0;
        let _ = writeln!(
            out,
            "| memory flat with trace length (JSONL) | {} at {} hits, {} at {} | {} |",
            mib(first.max_rss_kib),
            first.expected,
            mib(last.max_rss_kib),
            last.expected,
            verdict(flat)
        );
    }
    super::replay::write_replay_goal(out, &results.replay);
    let _ = writeln!(out);
}

/// The paired runs' table.
pub(super) fn write_paired(out: &mut String, bench: &Bench, paired: &[Paired], batch: u64) {
    let (Some(first), Some(rounds)) = (
        paired.first(),
        paired.first().and_then(|p| p.runs.first()).map(Vec::len),
    ) else {
        return;
    };
    let hits = rounds as u64 * batch;
    let _ = writeln!(out, "### Paired with the floor in one process\n");
    let _ = writeln!(
        out,
        "fx_user (frame pointers, under `setarch -R`) waits; perf stat attaches with `-p` to \
         `fx_bench_floor` (`FX_BENCH_FLOOR`), the tool measured to `hwbp_fx_target` \
         (`HWBP_FX_COUNTER`), and once both are armed fx_user runs `paired calls|writes {hits} \
         {batch}`: {rounds} rounds, each a batch of {batch} hits on the target, on its twin and \
         on an unwatched twin (`fx_bench_plain`, `FX_BENCH_PLAIN`), in an order that rotates \
         every round, each batch timed by the fixture. A round's ratio is (target - unwatched) \
         / (twin - unwatched): the tool's cost per hit over the floor's, both beyond the \
         workload's own, measured milliseconds apart, so that the machine's drift between runs \
         cancels. Each run's figure is the median of its rounds; the goal is judged on the \
         median of {} runs per tool, every one checked to count {hits} hits on each target \
         (fewer only by as many as the host lost; more are listed below the table). perf stat \
         against perf stat checks the method itself: it should read 1.00x.\n",
        first.runs.len()
    );
    for workload in [&bench.execute, &bench.write] {
        let _ = writeln!(
            out,
            "#### {} (`{}`, the twin `{}`)\n",
            workload.name, workload.perf_event, workload.floor_event
        );
        let _ = writeln!(
            out,
            "| tool on the target | vs the floor | runs | rounds: lowest, quartiles, highest | target per hit | floor per hit |"
        );
        let _ = writeln!(out, "|---|---:|---|---|---:|---:|");
        for row in paired.iter().filter(|p| p.workload == workload.name) {
            let mut rounds = row.round_ratios();
            rounds.sort_by(f64::total_cmp);
            let quartile = |q: usize| rounds[(rounds.len() - 1) * q / 4];
            let per_hit = |f: fn(&Round) -> f64| {
                let ns: Vec<f64> = row
                    .runs
                    .iter()
                    .flatten()
                    .map(|r| (f(r) - r.plain) / batch as f64)
                    .collect();
                median(&ns) / 1e3
            };
            let runs: Vec<String> = row
                .run_ratios()
                .iter()
                .map(|r| format!("{r:.3}x"))
                .collect();
            let name = match row.variant {
                Variant::PerfStat => "perf stat (the method's check)",
                other => other.name(),
            };
            let _ = writeln!(
                out,
                "| {name} | {:.3}x | {} | {:.2}x, {:.2}x, {:.2}x, {:.2}x, {:.2}x | {:.2} us | {:.2} us |",
                row.ratio(),
                runs.join(", "),
                quartile(0),
                quartile(1),
                quartile(2),
                quartile(3),
                quartile(4),
                per_hit(|r| r.tool),
                per_hit(|r| r.floor),
            );
        }
        let miscounts: Vec<&String> = paired
            .iter()
            .filter(|p| p.workload == workload.name)
            .flat_map(|p| &p.miscounts)
            .collect();
        if !miscounts.is_empty() {
            let _ = writeln!(out, "\nMore hits counted than made:\n");
            for line in miscounts {
                let _ = writeln!(out, "- {line}");
            }
        }
        let fixture = format!(
            "setarch -R {} --wait GO paired {} {hits} {batch} TIMES",
            bench.fx_user.display(),
            workload.mode
        );
        let floor = display(&bench.floor_command(workload, "PID"));
        let tool = bench
            .attach_command(Variant::HwbpTrace, workload, "PID")
            .map(|cmd| display(&cmd))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\nhwbp-trace's run: `{fixture} &  {floor} &  {tool}`\n"
        );
    }
}

/// The BPF program's own time per hit, from the kernel's accounting.
fn write_bpf_time(out: &mut String, results: &Results) {
    let _ = writeln!(out, "### The BPF program's own time per hit\n");
    let _ = writeln!(
        out,
        "The same hwbp-trace runs at N = {} with `kernel.bpf_stats_enabled` on (only while this \
         part runs: it adds two clock reads to every program run): the kernel's run_time_ns / \
         run_cnt of the program, read from hwbp-trace's fdinfo once the fixture is done. Medians \
         of {BPF_TIME_RUNS} runs, with the lowest and highest. This is the program alone: the \
         debug exception, perf's overflow path and the reader are outside it. A write hit also \
         reads the written value, and with a data watchpoint armed the CPU copies user memory \
         about a byte a cycle (hwbp-ebpf/src/probe.rs), which makes its stack cost more.\n",
        results.large
    );
    let _ = writeln!(
        out,
        "| target | hwbp-trace, k+u stacks | hwbp-trace, no stacks | the stacks | runs counted |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    let mut workloads: Vec<&str> = results.bpf_time.iter().map(|r| r.workload).collect();
    workloads.dedup();
    for workload in workloads {
        let row = |variant| {
            results
                .bpf_time
                .iter()
                .find(|r| r.workload == workload && r.variant == variant)
        };
        let cell = |r: Option<&BpfTime>| {
            r.map_or_else(
                || "-".to_owned(),
                |r| {
                    let (low, high) = extremes(&r.ns_per_run);
                    format!("{:.0} ns ({low:.0} to {high:.0})", median(&r.ns_per_run))
                },
            )
        };
        let (stacks, none) = (row(Variant::HwbpTrace), row(Variant::HwbpNoStacks));
        let share = match (stacks, none) {
            (Some(a), Some(b)) => {
                format!("{:.0} ns", median(&a.ns_per_run) - median(&b.ns_per_run))
            }
            _ => "-".to_owned(),
        };
        let mut counted: Vec<String> = [stacks, none]
            .into_iter()
            .flatten()
            .flat_map(|r| r.runs_counted.iter().map(u64::to_string))
            .collect();
        counted.dedup();
        let _ = writeln!(
            out,
            "| {workload} | {} | {} | {share} | {} |",
            cell(stacks),
            cell(none),
            counted.join(", ")
        );
    }
    let _ = writeln!(out);
}

/// BENCHMARKS.md, section by section.
pub(super) fn write_report(out: &mut String, machine: &Machine, bench: &Bench, results: &Results) {
    write_header(out, machine, results);
    write_goals(out, bench, results);
    write_per_hit(out, bench, results);
    write_startup(out, results);
    write_sustained(out, results);
    write_contention(out, &results.contention);
    write_growth(out, results);
    if let Some((section, _)) = &results.vm {
        out.push_str(section);
    }
    super::replay::write_replay(out, &results.replay);
    write_commands(out, bench, results);
}

/// The title, the machine and how to read the numbers.
fn write_header(out: &mut String, machine: &Machine, results: &Results) {
    let Results {
        runs,
        elapsed,
        lost_exceptions,
        ..
    } = results;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `cargo xtask bench` (xtask/src/bench/) on {}, commit {}; {:.0} s of measuring. \
         It reports and never gates: rerun it to refresh this file.\n",
        machine.date,
        machine.commit,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "- {} vCPUs, {}", machine.cpus, machine.cpu_model);
    let _ = writeln!(out, "- kernel {}, {} RAM", machine.kernel, machine.memory);
    let _ = writeln!(out, "- load average when the run started: {}", machine.load);
    let _ = writeln!(
        out,
        "- debug exceptions the host lost during the runs: {} (fx_user's SIGTRAPs, DR6 empty; see \
         docs/limitations.md: a lost write hit is in no count, an execute breakpoint traps \
         again)",
        lost_exceptions
    );
    let _ = writeln!(
        out,
        "- A shared KVM guest: every breakpoint hit is a VM exit, and other work (builds, tests) \
         runs on the same 2 vCPUs. Single timings are noisy: the exception's own cost moves by a \
         tenth or more from one second to the next. So the per-hit goals are judged on paired \
         runs, where the floor is measured in the same process, milliseconds apart (section 1); \
         the other tables show medians of {runs} alternating runs, and per-hit costs there are \
         slopes between two run sizes, so that start-up (perf's too) cancels.\n"
    );
}

/// Section 1: per-hit cost, paired runs, separate runs and the BPF program's own time.
fn write_per_hit(out: &mut String, bench: &Bench, results: &Results) {
    let Results {
        small,
        large,
        paired,
        batch,
        per_hit,
        ..
    } = results;
    // 1. Per hit.
    let span = large - small;
    let _ = writeln!(out, "## 1. Per-hit cost\n");
    write_paired(out, bench, paired, *batch);
    let _ = writeln!(out, "### Separate runs\n");
    let _ = writeln!(
        out,
        "fx_user (frame pointers, under `setarch -R`) waits; the tool attaches with `-p` and, once \
         it is armed, fx_user calls `hwbp_fx_target` or writes `HWBP_FX_COUNTER` N times, \
         N = {small} and {large}. *Program* is the time from then to fx_user's exit: what the \
         traced program pays. *Done* runs to the tool's exit: until the trace is complete (perf \
         stat -p notices the exit on a 1 s poll, so its done time is not meaningful). Per hit = \
         (median at {large} - median at {small}) / {span}; start-up is outside both. \
         \"vs the floor\" divides the program's per-hit cost beyond the workload's own by perf \
         stat's. The *reader stopped* row is a diagnostic: hwbp-trace is SIGSTOPped while the \
         program runs (32 MiB ring buffer, so nothing is dropped), which leaves what the kernel \
         side costs (exception, BPF program, ring buffer); the difference to the row above is \
         what hwbp-trace's own CPU use costs the program on this 2-vCPU machine. *perf record \
         -c 1 (no stacks)* is the kernel's own smallest sample of each hit (ip, tid, time into \
         perf's buffer): what any tool that records every hit pays at least, and so where a \
         goal relative to the floor can be met at all.\n"
    );
    for workload in [&bench.execute, &bench.write] {
        let rows: Vec<&PerHit> = per_hit
            .iter()
            .filter(|r| r.workload == workload.name)
            .collect();
        let alone = rows
            .iter()
            .find(|r| r.variant == Variant::Alone)
            .map_or(0.0, |r| slope(&r.program, span));
        let floor = beyond_workload(results, workload.name, Variant::PerfStat);
        let _ = writeln!(out, "#### {} (`{}`)\n", workload.name, workload.perf_event);
        let _ = writeln!(
            out,
            "| tool | program, {small} | program, {large} | program per hit | beyond the workload | vs the floor | done per hit | counted ({large}) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
        for row in &rows {
            let per_hit = slope(&row.program, span);
            let beyond = per_hit - alone;
            let ratio = if row.variant == Variant::Alone {
                "-".to_owned()
            } else {
                format!("{:.2}x", beyond / floor)
            };
            let done = if row.variant == Variant::PerfStat {
                "-".to_owned()
            } else {
                format!("{:.2} us", slope(&row.done, span) * 1e6)
            };
            let counted: Vec<String> = row
                .counted_large
                .iter()
                .map(|c| c.map_or_else(|| "-".to_owned(), |c| c.to_string()))
                .collect();
            let counted = if counted.iter().all(|c| c == "-") {
                "-".to_owned()
            } else if counted.iter().all(|c| *c == counted[0]) {
                counted[0].clone()
            } else {
                counted.join(", ")
            };
            let _ = writeln!(
                out,
                "| {} | {:.3} s | {:.3} s | {:.2} us | {:.2} us | {ratio} | {done} | {counted} |",
                row.variant.name(),
                median(&row.program[0]),
                median(&row.program[1]),
                per_hit * 1e6,
                beyond * 1e6,
            );
        }
        let _ = writeln!(out);
    }
    write_bpf_time(out, results);
    if bench.bpftrace {
        let _ = writeln!(
            out,
            "bpftrace is installed but not measured: bpftrace 0.17's `watchpoint:ADDR:8:x` counted \
             0 of 20,000 calls on this kernel (docs/platform.md).\n"
        );
    } else {
        let _ = writeln!(
            out,
            "bpftrace is not installed here, so it is not in the table (Debian's 0.17 is available; \
             on this kernel its watchpoints counted 0 of 20,000 calls and 1 of 20,000 writes, \
             docs/platform.md).\n"
        );
    }
}

/// Section 2: start-up, and where its time goes.
fn write_startup(out: &mut String, results: &Results) {
    let Results { startup, .. } = results;
    // 2. Start-up.
    let _ = writeln!(out, "## 2. Start-up: exec to the `Tracing` line\n");
    let _ = writeln!(out, "| target | median | min | max |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for s in startup {
        if let Some(why) = &s.refused {
            let _ = writeln!(out, "| {} | not measured: {why} | | |", s.name);
            continue;
        }
        let (min, max) = extremes(&s.times);
        let _ = writeln!(
            out,
            "| {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            s.name,
            median(&s.times) * 1e3,
            min * 1e3,
            max * 1e3
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Where the time goes: one run under `strace -f -ttt --seccomp-bpf`, cut at the first system \
         call of each phase, per thread (a phase runs until the thread's next phase starts or it \
         exits, so the CPU work between the calls counts for the phase before). Thread 1 is the \
         main thread; the BPF program is loaded, and system-wide the kernel's BTF parsed, on \
         threads of their own while it resolves the targets, so phases overlap. Times in ms after \
         execve; strace slows system calls: read the shape.\n"
    );
    for s in startup.iter().filter(|s| s.refused.is_none()) {
        let Some(phases) = &s.phases else {
            let _ = writeln!(out, "{}: strace is not installed, no breakdown.\n", s.name);
            continue;
        };
        let _ = writeln!(out, "{} (`{}`):\n", s.name, phases.command);
        let _ = writeln!(out, "| phase | thread | from | to | time |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for seg in &phases.segments {
            let to = if seg.after_tracing {
                "after the Tracing line".to_owned()
            } else {
                format!("{:.1}", seg.to * 1e3)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {to} | {:.1} ms |",
                seg.what,
                seg.thread,
                seg.from * 1e3,
                (seg.to - seg.from) * 1e3,
            );
        }
        let _ = writeln!(
            out,
            "| Tracing line (total under strace) | 1 | | {:.1} | |\n",
            phases.total * 1e3
        );
    }
}

/// Section 3: the sustained rate, headless and with the dashboard.
fn write_sustained(out: &mut String, results: &Results) {
    let Results {
        sustained,
        dashboard,
        sustained_tmpfs,
        ..
    } = results;
    // 3. Sustained.
    let _ = writeln!(out, "## 3. Sustained rate: every CPU hitting the target\n");
    let _ = writeln!(
        out,
        "One fixture thread per CPU calls `hwbp_fx_target` as fast as it can; hwbp-trace attaches \
         with -p, kernel and user stacks, JSONL file, default ring buffer; runs headless and with \
         the dashboard alternate. *Headless* (`--no-tui -q`): hwbp-trace is our child and has none \
         of its own, so wait4's rusage is its own (CPU time and peak RSS); wall is its whole run. \
         *Dashboard*: hwbp-trace runs in a detached {}x{} tmux session (the dashboard needs a \
         terminal) and is not our child: its CPU time (utime + stime) and peak RSS (VmHWM) are \
         read from /proc once the dashboard shows the run ended, just before `q` quits it; wall \
         runs from starting tmux to then (polled every 10 ms). tmux, drawing the dashboard, runs \
         on the same CPUs as a terminal would. *Headless, JSONL on tmpfs* is a diagnostic: the same \
         file in /dev/shm, where write(2) never waits for the kernel to write dirty pages back to \
         disk (each run writes over 500 MiB of JSONL; on 2 vCPUs that writeback competes with the \
         reader, and a reader stalled in write(2) is what fills the ring buffer).\n",
        Tmux::WIDTH,
        Tmux::HEIGHT
    );
    if dashboard.is_empty() {
        let _ = writeln!(
            out,
            "tmux is not installed here, so the dashboard runs are missing (`cargo xtask setup` \
             installs it).\n"
        );
    }
    let _ = writeln!(
        out,
        "| run | hits recorded / made | seen by the BPF program | lost (ring buffer full) | stack errors | wall | hit rate | hwbp-trace CPU per 100k hits | peak RSS |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let runs = (sustained
        .iter()
        .enumerate()
        .map(|(i, m)| ("headless", i, m)))
    .chain(
        dashboard
            .iter()
            .enumerate()
            .map(|(i, m)| ("dashboard", i, m)),
    )
    .chain(
        sustained_tmpfs
            .iter()
            .enumerate()
            .map(|(i, m)| ("headless, JSONL on tmpfs,", i, m)),
    );
    for (how, i, m) in runs {
        let secs = m.wall.as_secs_f64();
        let _ = writeln!(
            out,
            "| {how} {} | {} / {} | {} | {} | {} | {:.2} s | {:.0}/s | {:.2} s | {} |",
            i + 1,
            m.summary.hits,
            m.expected,
            m.summary.kernel_count,
            m.summary.lost,
            m.summary.stack_errors,
            secs,
            m.summary.hits as f64 / secs,
            m.cpu.as_secs_f64() / (m.summary.hits.max(1) as f64) * 100_000.0,
            mib(m.max_rss_kib),
        );
    }
    let _ = writeln!(out);
}

/// Section 3's last table: the BPF program's time per hit with one thread
/// hitting and with every CPU at once, every hit recorded or none.
pub(super) fn write_contention(out: &mut String, contention: &[Contention]) {
    let Some(most) = contention.iter().map(|c| c.threads).max() else {
        return;
    };
    let _ = writeln!(
        out,
        "### One ring buffer, every CPU hitting
"
    );
    let _ = writeln!(
        out,
        "`cargo xtask bench --only-ring`. One ring buffer takes every CPU's records, and \
         reserving a record takes its lock. hwbp-trace with k+u stacks attaches with -p to \
         `fx_user threads T 0 N/T`: T threads call `hwbp_fx_target`, one thread, then one per \
         CPU at once. `kernel.bpf_stats_enabled` gives the program's own time per hit \
         (run_time_ns / run_cnt, which includes any wait for the lock), medians of {} runs with \
         the lowest and highest. With `--records none` no record is made: the hit updates this \
         CPU's slot of the aggregate map and no shared lock is taken. The ring buffer's cost \
         of CPUs hitting together is how much more the {most}-thread row costs than the \
         1-thread row with every hit recorded, beyond what it costs without records.\n",
        contention.first().map_or(0, |c| c.ns_per_run.len()),
    );
    let _ = writeln!(
        out,
        "| hwbp-trace | threads hitting | BPF time per hit | runs counted |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|");
    for c in contention {
        let (low, high) = extremes(&c.ns_per_run);
        let mut counted: Vec<String> = c.runs_counted.iter().map(u64::to_string).collect();
        counted.dedup();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} ns ({low:.0} to {high:.0}) | {} |",
            c.variant.name(),
            c.threads,
            median(&c.ns_per_run),
            counted.join(", ")
        );
    }
    let _ = writeln!(out);
}

/// Section 4: memory against trace length and distinct stacks.
fn write_growth(out: &mut String, results: &Results) {
    let Results {
        growth,
        stacks,
        stack_hits,
        idle,
        ..
    } = results;
    // 4. Growth.
    let _ = writeln!(out, "## 4. Growth: memory against trace length\n");
    let _ = writeln!(
        out,
        "One thread, one stack, JSONL export; peak RSS of hwbp-trace (wait4's ru_maxrss). \
         A streaming export keeps it flat.\n"
    );
    let _ = writeln!(
        out,
        "| hits made | recorded | lost | JSONL size | hwbp-trace CPU | peak RSS |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    for m in growth {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} MiB | {:.2} s | {} |",
            m.expected,
            m.summary.hits,
            m.summary.lost,
            m.jsonl_bytes as f64 / (1 << 20) as f64,
            m.cpu.as_secs_f64(),
            mib(m.max_rss_kib)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Memory once armed, before any hit (VmRSS 300 ms after the Tracing line):\n"
    );
    let _ = writeln!(out, "| what is loaded | VmRSS |");
    let _ = writeln!(out, "|---|---:|");
    for i in idle {
        let rss = i.rss_kib.map_or_else(|| "-".to_owned(), mib);
        let _ = writeln!(out, "| {} | {rss} |", i.name);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "### Distinct stacks\n");
    let _ = writeln!(
        out,
        "`fx_user stacks {stack_hits} DISTINCT` calls `hwbp_fx_target` {stack_hits} times, call i \
         through call path i % DISTINCT: 17 levels of `fx_left` or `fx_right`, picked \
         by the bits of the path, so DISTINCT different user stacks of the same depth. The first \
         row is `fx_user calls {stack_hits}` for reference: one stack, 17 frames shorter. \
         hwbp-trace attaches with -p, user stacks only, JSONL file; *in the trace* counts the \
         different `ustack` arrays in that file (its hit and aggregate lines); CPU and peak RSS from wait4. The last rows \
         take the most stacks again with a record for one hit in 100, then none \
         (`--records`), the kernel's maps sized for every stack (`--max-keys` and \
         `--max-stacks`): every count comes from the aggregates, which hwbp-trace reads at \
         most once a second (less often when a read takes long) and once more at the end.\n"
    );
    let _ = writeln!(
        out,
        "| fixture | records | distinct stacks | in the trace | records written | hits counted / made | lost | stack errors | JSONL size | hwbp-trace CPU | peak RSS |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for run in stacks {
        let m = &run.measured;
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} / {} | {} | {} | {:.0} MiB | {:.2} s | {} |",
            run.fixture,
            run.records.arg(),
            run.distinct,
            m.ustacks.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            m.summary.hits,
            m.summary.counted,
            m.expected,
            m.summary.lost,
            m.summary.stack_errors,
            m.jsonl_bytes as f64 / (1 << 20) as f64,
            m.cpu.as_secs_f64(),
            mib(m.max_rss_kib)
        );
    }
    let _ = writeln!(out);
}

/// The commands that made the numbers.
fn write_commands(out: &mut String, bench: &Bench, results: &Results) {
    let Results {
        small,
        large,
        per_hit,
        startup,
        sustained,
        dashboard,
        growth,
        stacks,
        idle,
        vm,
        ..
    } = results;
    // Commands.
    let _ = writeln!(out, "## Commands\n");
    let _ = writeln!(
        out,
        "Paths as on this machine; N = {small} and {large}; ADDR is the run-time address under \
         `setarch -R` (no ASLR; fx_user is a PIE), computed from `hwbp-trace list --binary` and \
         /proc/PID/maps.\n"
    );
    let _ = writeln!(out, "```sh");
    for row in per_hit.iter() {
        let _ = writeln!(out, "{}", row.command);
    }
    for s in startup {
        let _ = writeln!(out, "{}", s.command);
        if let Some(phases) = &s.phases {
            let _ = writeln!(
                out,
                "{}",
                phases
                    .command
                    .replace(&format!("{}", bench.scratch.display()), "DIR")
            );
        }
    }
    if let Some(m) = sustained.first() {
        let _ = writeln!(
            out,
            "{}   # PID: fx_user --wait GO threads CPUS 0 N",
            m.command
        );
    }
    if let Some(m) = dashboard.first() {
        let _ = writeln!(
            out,
            "{}   # PID: fx_user --wait GO threads CPUS 0 N",
            m.command
        );
    }
    if let Some(m) = growth.first() {
        let _ = writeln!(out, "{}   # PID: fx_user --wait GO calls N", m.command);
    }
    if let Some(run) = stacks.last() {
        let _ = writeln!(
            out,
            "{}   # PID: fx_user --wait GO stacks N DISTINCT",
            run.measured.command
        );
    }
    for i in idle {
        let _ = writeln!(out, "{}", i.command);
    }
    if let Some((_, command)) = vm.as_ref().filter(|(_, command)| !command.is_empty()) {
        let _ = writeln!(out, "{command}");
    }
    let _ = writeln!(out, "```");
}

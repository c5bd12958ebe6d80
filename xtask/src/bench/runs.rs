//! Measurement 1, per-hit cost: a tool attached to a waiting fixture, in
//! paired runs (the goals), in separate runs of two sizes, and the BPF
//! program's own time, with one CPU hitting and with all.

use std::{
    fs,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use hwbp_tests::harness::process::{remove, signal};

use crate::exec::display;

use super::{
    process::{BpfSampler, BpfStatsOn, bpf_prog_stats, perf_enable, read_stderr, touch},
    results::{Attached, AttachedRun, BpfTime, Contention, Paired, PerHit, Round},
    workload::{Bench, Perf, Variant, Workload},
};

/// Runs of each BPF-time measurement (kernel.bpf_stats_enabled): the
/// kernel's own clock around each program run, far less noisy than the
/// program's wall time.
pub(super) const BPF_TIME_RUNS: u64 = 3;

impl Bench {
    /// Starts `cmd`, a tool attaching to a waiting fixture, and waits until
    /// it is armed: hwbp-trace's Tracing line; for perf (-D -1), its
    /// acknowledgement of `enable` through `who`'s FIFOs, made fresh here.
    /// Kills it on failure; the caller kills the fixture.
    pub(super) fn arm(&self, mut cmd: Command, hwbp: bool, who: Perf) -> Result<Attached> {
        if !hwbp {
            self.make_perf_fifos(who)?;
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting `{}`", display(&cmd)))?;
        let ready = read_stderr(&mut child).map(|(stderr, armed)| {
            let ready = if hwbp {
                armed.recv_timeout(Duration::from_secs(30)).is_ok()
            } else {
                let (ctl, ack) = self.perf_fifos(who);
                perf_enable(&ctl, &ack, Duration::from_secs(30)).is_ok()
            };
            (stderr, ready)
        });
        match ready {
            Ok((stderr, true)) => Ok(Attached { cmd, child, stderr }),
            Ok((stderr, false)) => {
                let _ = child.kill();
                let status = child.wait();
                // What it said is the reason, should it have given up.
                let said = stderr.join().unwrap_or_default();
                bail!(
                    "`{}` did not attach within the time limit ({}); it said:\n{}",
                    display(&cmd),
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    said.trim_end()
                )
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// One per-hit run: fx_user waits for a file; the tool attaches with
    /// -p; once it is armed the file appears. Timed from then to the
    /// fixture's exit (what the traced program pays) and to the tool's
    /// exit (until the trace is complete). Start-up is outside both. With
    /// `bpf_stats`, the tool's BPF program's run time and count are read
    /// from its fdinfo once the fixture is done (kernel.bpf_stats_enabled
    /// must be on).
    pub(super) fn attached_run(
        &self,
        variant: Variant,
        workload: &Workload,
        n: u64,
        bpf_stats: bool,
    ) -> Result<AttachedRun> {
        self.attached_run_of(
            variant,
            workload,
            &[workload.mode, &n.to_string()],
            bpf_stats,
        )
    }

    /// [`Bench::attached_run`] of fx_user with `fixture_args`.
    fn attached_run_of(
        &self,
        variant: Variant,
        workload: &Workload,
        fixture_args: &[&str],
        bpf_stats: bool,
    ) -> Result<AttachedRun> {
        let go = self.scratch.join("go-hit");
        remove(&go);
        let mut fixture = self.fixture_waiting(&go, fixture_args)?;
        let pid = fixture.id().to_string();
        let tool = match self.attach_command(variant, workload, &pid) {
            None => None,
            Some(cmd) => match self.arm(cmd, variant.is_hwbp(), Perf::Tool) {
                Ok(tool) => Some(tool),
                Err(e) => {
                    let _ = fixture.kill();
                    let _ = fixture.wait();
                    return Err(e);
                }
            },
        };
        let paused = match (&tool, variant) {
            (Some(tool), Variant::HwbpKernelSide) => Some(tool.child.id()),
            _ => None,
        };
        if let Some(pid) = paused {
            signal(pid, libc::SIGSTOP)?;
        }
        let start = Instant::now();
        touch(&go)?;
        let sampled = match &tool {
            Some(tool) if bpf_stats => Some(tool.child.id()),
            _ => None,
        };
        // Read once the fixture is done: the tool notices its exit a little
        // later, so its program is normally still loaded then. A reading
        // every 50 ms stands in should the tool be gone already.
        let sampler = sampled.map(BpfSampler::start);
        let status = fixture.wait().context("waiting for the fixture")?;
        let bpf = sampled
            .and_then(bpf_prog_stats)
            .or_else(|| sampler.and_then(BpfSampler::stop));
        let program = start.elapsed().as_secs_f64();
        if let Some(pid) = paused {
            signal(pid, libc::SIGCONT)?;
        }
        ensure!(status.success(), "the fixture failed ({status})");
        let mut done = program;
        let mut stderr = String::new();
        if let Some(tool) = tool {
            stderr = tool.finish()?;
            done = start.elapsed().as_secs_f64();
        }
        let counted = self.counted(variant, &stderr)?;
        remove(&self.jsonl());
        remove(&self.perf_data());
        remove(&go);
        Ok(AttachedRun {
            program,
            done,
            counted,
            bpf,
        })
    }

    /// One paired run (see [`Bench::paired`]): fx_user `paired`, perf stat
    /// counting the twin and `variant` attached to the target, both armed
    /// before the fixture starts. Checks that each counted every hit, but
    /// for those the host lost; a count above the hits made is returned as
    /// a line for the report (perf record has counted more hits than were
    /// made on a host that lost exceptions).
    pub(super) fn paired_run(
        &self,
        variant: Variant,
        workload: &Workload,
        n: u64,
        batch: u64,
    ) -> Result<(Vec<Round>, Option<String>)> {
        let go = self.scratch.join("go-paired");
        let times = self.scratch.join("paired-times.txt");
        remove(&go);
        remove(&times);
        let args = [
            "paired",
            workload.mode,
            &n.to_string(),
            &batch.to_string(),
            &times.to_string_lossy(),
        ];
        let mut fixture = self.fixture_waiting(&go, &args)?;
        let pid = fixture.id().to_string();
        let armed = self
            .arm(self.floor_command(workload, &pid), false, Perf::Floor)
            .and_then(|floor| {
                let cmd = self
                    .attach_command(variant, workload, &pid)
                    .ok_or_else(|| anyhow!("a paired run needs a tool"))?;
                match self.arm(cmd, variant.is_hwbp(), Perf::Tool) {
                    Ok(tool) => Ok((floor, tool)),
                    Err(e) => {
                        floor.kill();
                        Err(e)
                    }
                }
            });
        let (floor, tool) = match armed {
            Ok(pair) => pair,
            Err(e) => {
                let _ = fixture.kill();
                let _ = fixture.wait();
                return Err(e);
            }
        };
        touch(&go)?;
        let status = fixture.wait().context("waiting for the fixture")?;
        let floor_cmd = display(&floor.cmd);
        let floor_stderr = floor.finish();
        let tool_stderr = tool.finish();
        ensure!(status.success(), "the fixture failed ({status})");
        let (floor_stderr, tool_stderr) = (floor_stderr?, tool_stderr?);
        let floor_counted = self.counted(Variant::PerfStat, &floor_stderr)?;
        let counted = self.counted(variant, &tool_stderr)?;
        // Every hit counted, but for those the host lost (a write's; each
        // noted by the fixture).
        let lost = self.faults_noted()?;
        let short = |c: Option<u64>| c.map(|c| n.saturating_sub(c));
        match (short(floor_counted), short(counted)) {
            (Some(floor_short), Some(short)) if floor_short + short <= lost => {}
            _ => bail!(
                "`{floor_cmd}` counted {floor_counted:?} of {n} hits on the twin, {} {counted:?} \
                 of {n} on the target, in a paired run where the host lost {lost} debug exceptions",
                variant.name()
            ),
        }
        if lost > 0 {
            println!(
                "bench: the host lost {lost} debug exceptions in this run (fx_user got SIGTRAP); \
                 {floor_counted:?} and {counted:?} of {n} counted"
            );
        }
        let over = |c: Option<u64>| c.filter(|&c| c > n);
        let miscount = (over(floor_counted).is_some() || over(counted).is_some()).then(|| {
            format!(
                "{} counted {} of {n} on the target and perf stat {} on the twin, in a run \
                 where the host lost {lost} debug exceptions",
                variant.name(),
                counted.unwrap_or_default(),
                floor_counted.unwrap_or_default(),
            )
        });
        if let Some(line) = &miscount {
            println!("bench: more hits counted than made: {line}");
        }
        let text =
            fs::read_to_string(&times).with_context(|| format!("reading {}", times.display()))?;
        let rounds = text
            .lines()
            .map(|line| {
                let ns: Vec<f64> = line
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("parsing `{line}` of {}", times.display()))?;
                match ns[..] {
                    [tool, floor, plain] => Ok(Round { tool, floor, plain }),
                    _ => bail!("`{line}` of {} is not three times", times.display()),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(
            rounds.len() as u64 == n / batch,
            "{} holds {} rounds, not {}",
            times.display(),
            rounds.len(),
            n / batch
        );
        remove(&self.jsonl());
        remove(&self.perf_data());
        remove(&go);
        remove(&times);
        Ok((rounds, miscount))
    }

    /// Per-hit cost with the floor in the same process: fx_user `paired`
    /// hits the target and its twin in turn, a batch at a time, with the
    /// tool measured on the target and perf stat on the twin, and times
    /// each batch. The two batches of a round are milliseconds apart, so
    /// the machine's drift between runs (the exception's own cost moves by
    /// a tenth from one second to the next here) cancels in their ratio.
    /// perf stat against perf stat is the method's own check (1.00x).
    pub(super) fn paired(
        &self,
        variants: &[Variant],
        runs: u64,
        n: u64,
        batch: u64,
    ) -> Result<Vec<Paired>> {
        let mut results = Vec::new();
        for workload in [&self.execute, &self.write] {
            println!("bench: per-hit cost, paired, {}", workload.name);
            let mut rows: Vec<Paired> = variants
                .iter()
                .map(|&variant| Paired {
                    workload: workload.name,
                    variant,
                    runs: Vec::new(),
                    miscounts: Vec::new(),
                })
                .collect();
            for run in 0..runs {
                let count = rows.len();
                for i in 0..count {
                    let row = &mut rows[(i + run as usize) % count];
                    let (rounds, miscount) = self.paired_run(row.variant, workload, n, batch)?;
                    row.runs.push(rounds);
                    row.miscounts.extend(miscount);
                }
                println!("bench:   run {}/{runs} done", run + 1);
            }
            results.extend(rows);
        }
        Ok(results)
    }

    pub(super) fn per_hit(&self, runs: u64, small: u64, large: u64) -> Result<Vec<PerHit>> {
        let mut results = Vec::new();
        for workload in [&self.execute, &self.write] {
            println!("bench: per-hit cost, {}", workload.name);
            let mut rows: Vec<PerHit> = Variant::ALL
                .iter()
                .map(|&variant| PerHit {
                    workload: workload.name,
                    variant,
                    program: [Vec::new(), Vec::new()],
                    done: [Vec::new(), Vec::new()],
                    counted_large: Vec::new(),
                    command: self.attach_display(variant, workload, large),
                })
                .collect();
            for round in 0..runs {
                for (size_index, n) in [small, large].into_iter().enumerate() {
                    // Rotate the order every round: no variant always runs
                    // right after the same other one.
                    let count = rows.len();
                    for i in 0..count {
                        let row = &mut rows[(i + round as usize) % count];
                        let run = self.attached_run(row.variant, workload, n, false)?;
                        row.program[size_index].push(run.program);
                        row.done[size_index].push(run.done);
                        if size_index == 1 {
                            row.counted_large.push(run.counted);
                        }
                    }
                }
                println!("bench:   round {}/{runs} done", round + 1);
            }
            results.extend(rows);
        }
        Ok(results)
    }

    /// What the BPF program itself takes per hit, from the kernel's own
    /// accounting (kernel.bpf_stats_enabled, on only while this runs: it
    /// adds two clock reads to every run), with and without stacks.
    pub(super) fn bpf_time(&self, runs: u64, n: u64) -> Result<Vec<BpfTime>> {
        println!("bench: BPF time per hit (kernel.bpf_stats_enabled)");
        let _stats = BpfStatsOn::enable()?;
        let mut results = Vec::new();
        for workload in [&self.execute, &self.write] {
            for variant in [Variant::HwbpTrace, Variant::HwbpNoStacks] {
                let args = [workload.mode, &n.to_string()];
                let (ns_per_run, runs_counted) = self.bpf_runs(variant, workload, &args, runs)?;
                results.push(BpfTime {
                    workload: workload.name,
                    variant,
                    ns_per_run,
                    runs_counted,
                });
            }
        }
        Ok(results)
    }

    /// The BPF program's time per hit with one thread hitting the execute
    /// target, then one on every CPU at once (`fx_user threads`, `n` hits
    /// in all), recording every hit (one ring buffer for all CPUs, whose
    /// lock every record takes) and none (the per-CPU aggregates alone).
    /// What the shared ring buffer costs when CPUs hit together shows as
    /// the difference between the two.
    pub(super) fn ring_contention(&self, runs: u64, n: u64) -> Result<Vec<Contention>> {
        let cpus = thread::available_parallelism().map_or(1, |c| c.get()) as u64;
        println!("bench: BPF time per hit, 1 and {cpus} threads hitting at once");
        let _stats = BpfStatsOn::enable()?;
        let mut results = Vec::new();
        for variant in [Variant::HwbpTrace, Variant::HwbpAggregates] {
            for threads in [1, cpus] {
                let (each, threads_arg) = ((n / threads).to_string(), threads.to_string());
                let args = ["threads", &threads_arg, "0", &each];
                let (ns_per_run, runs_counted) =
                    self.bpf_runs(variant, &self.execute, &args, runs)?;
                results.push(Contention {
                    variant,
                    threads,
                    ns_per_run,
                    runs_counted,
                });
            }
        }
        Ok(results)
    }

    /// `runs` runs of `variant` on fx_user with `fixture_args`, with
    /// kernel.bpf_stats_enabled on: the program's nanoseconds per run and
    /// its runs counted, one of each per run.
    fn bpf_runs(
        &self,
        variant: Variant,
        workload: &Workload,
        fixture_args: &[&str],
        runs: u64,
    ) -> Result<(Vec<f64>, Vec<u64>)> {
        let (mut ns_per_run, mut runs_counted) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let run = self.attached_run_of(variant, workload, fixture_args, true)?;
            let (ns, count) = run
                .bpf
                .ok_or_else(|| anyhow!("no run_time_ns/run_cnt in hwbp-trace's fdinfo"))?;
            ensure!(count > 0, "hwbp-trace's BPF program never ran");
            ns_per_run.push(ns as f64 / count as f64);
            runs_counted.push(count);
        }
        Ok((ns_per_run, runs_counted))
    }
}

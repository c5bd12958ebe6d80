//! What is measured: the fixture's two targets (a function and a
//! variable of fx_user), the tools and their variants, and the command
//! line of each, with perf's run-time addresses computed once.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use hwbp_tests::harness::{process::remove, trace::jsonl_summary};

use crate::{build, exec::display};

use super::process::{no_aslr, on_path, touch};

pub(super) struct Workload {
    pub(super) name: &'static str,
    /// fx_user's command: `calls` or `writes`.
    pub(super) mode: &'static str,
    /// hwbp-trace's TARGET.
    pub(super) target: &'static str,
    /// perf's event, with the run-time address.
    pub(super) perf_event: String,
    /// perf's event on the target's twin (fx_bench_floor, FX_BENCH_FLOOR),
    /// which perf stat counts alongside the tool measured in a paired run.
    pub(super) floor_event: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Variant {
    Alone,
    PerfStat,
    HwbpTrace,
    /// hwbp-trace recording no stacks: the BPF program's own cost.
    HwbpNoStacks,
    /// hwbp-trace with its reader stopped (SIGSTOP) while the program runs,
    /// and a ring buffer large enough for every hit: the kernel side alone
    /// (exception, BPF program, ring buffer), a diagnostic.
    HwbpKernelSide,
    PerfRecord,
    /// `perf record` without -g: the kernel's own smallest sample (ip, tid,
    /// time), what any tracer that records each hit pays at least.
    PerfRecordNoStacks,
    /// hwbp-trace without stacks, the target with a condition that keeps
    /// every hit (`if pid != 0`): a kept hit's cost with a condition.
    HwbpCondKept,
    /// The same with a condition that rejects every hit (`if pid == 0`):
    /// what a rejected hit costs (nothing is recorded).
    HwbpCondRejected,
    /// hwbp-trace with k+u stacks, a record for one hit in 100
    /// (`--records sample:100`): counts still exact.
    HwbpSampled,
    /// hwbp-trace with k+u stacks and no records (`--records none`): the
    /// in-kernel aggregates alone.
    HwbpAggregates,
}

impl Variant {
    pub(super) fn is_hwbp(self) -> bool {
        matches!(
            self,
            Variant::HwbpTrace
                | Variant::HwbpNoStacks
                | Variant::HwbpKernelSide
                | Variant::HwbpCondKept
                | Variant::HwbpCondRejected
                | Variant::HwbpSampled
                | Variant::HwbpAggregates
        )
    }

    pub(super) const ALL: [Variant; 9] = [
        Variant::Alone,
        Variant::PerfStat,
        Variant::HwbpTrace,
        Variant::HwbpSampled,
        Variant::HwbpAggregates,
        Variant::HwbpNoStacks,
        Variant::HwbpKernelSide,
        Variant::PerfRecord,
        Variant::PerfRecordNoStacks,
    ];

    /// The tools of a paired run (perf stat: the method's check).
    pub(super) const PAIRED: [Variant; 9] = [
        Variant::PerfStat,
        Variant::HwbpTrace,
        Variant::HwbpSampled,
        Variant::HwbpAggregates,
        Variant::HwbpNoStacks,
        Variant::HwbpCondKept,
        Variant::HwbpCondRejected,
        Variant::PerfRecord,
        Variant::PerfRecordNoStacks,
    ];

    /// The paired runs of `cargo xtask bench --only-conditions`: what a
    /// condition costs a kept and a rejected hit, beside the same tool
    /// without one and the method's check.
    pub(super) const CONDITIONS: [Variant; 4] = [
        Variant::PerfStat,
        Variant::HwbpNoStacks,
        Variant::HwbpCondKept,
        Variant::HwbpCondRejected,
    ];

    /// The paired runs of `cargo xtask bench --only-records`: each record
    /// mode with k+u stacks against the floor.
    pub(super) const RECORDS: [Variant; 4] = [
        Variant::PerfStat,
        Variant::HwbpTrace,
        Variant::HwbpSampled,
        Variant::HwbpAggregates,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Variant::Alone => "workload alone",
            Variant::PerfStat => "perf stat (floor)",
            Variant::HwbpTrace => "hwbp-trace, k+u stacks, JSONL",
            Variant::HwbpNoStacks => "hwbp-trace, no stacks, JSONL",
            Variant::HwbpKernelSide => "hwbp-trace, reader stopped (kernel side only)",
            Variant::PerfRecord => "perf record -c 1 -g",
            Variant::PerfRecordNoStacks => "perf record -c 1 (no stacks)",
            Variant::HwbpCondKept => "hwbp-trace, no stacks, condition keeps every hit",
            Variant::HwbpCondRejected => "hwbp-trace, condition rejects every hit",
            Variant::HwbpSampled => "hwbp-trace, k+u stacks, --records sample:100",
            Variant::HwbpAggregates => "hwbp-trace, k+u stacks, --records none",
        }
    }
}

/// Which of a run's perf processes (each has its own control FIFOs).
#[derive(Clone, Copy)]
pub(super) enum Perf {
    /// The tool measured.
    Tool,
    /// perf stat on the target's twin, in a paired run.
    Floor,
}

pub(super) struct Bench {
    pub(super) hwbp_trace: PathBuf,
    pub(super) fx_user: PathBuf,
    pub(super) scratch: PathBuf,
    pub(super) execute: Workload,
    pub(super) write: Workload,
    pub(super) strace: bool,
    pub(super) bpftrace: bool,
    pub(super) tmux: bool,
    /// Debug exceptions the fixtures had noted when the current run's
    /// started (see [`Bench::faults`]).
    pub(super) noted_before: std::cell::Cell<u64>,
    /// Why this host arms no breakpoint on a kernel address (hwbp-trace's
    /// own error), when it refuses them: some hypervisors do. The kernel
    /// target's start-up and memory are then not measured here.
    pub(super) kernel_refused: Option<String>,
}

impl Bench {
    pub(super) fn new() -> Result<Self> {
        let scratch = build::release_dir().join("bench");
        // Measure copies: other builds may replace target/release/* while
        // this runs, and perf's raw addresses must stay right.
        let bin = scratch.join("bin");
        fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
        let mut copies = Vec::new();
        for built in [build::hwbp_trace(), build::release_dir().join("fx_user")] {
            ensure!(
                built.is_file(),
                "{} is missing: run `cargo xtask build` (or drop --no-build)",
                built.display()
            );
            let copy = bin.join(built.file_name().unwrap_or_default());
            remove(&copy);
            fs::copy(&built, &copy)
                .with_context(|| format!("copying {} to {}", built.display(), copy.display()))?;
            copies.push(copy);
        }
        let (hwbp_trace, fx_user) = (copies[0].clone(), copies[1].clone());
        ensure!(
            on_path("perf"),
            "perf is missing: `apt-get install linux-perf` (Debian) gives the peer this compares with"
        );
        ensure!(
            on_path("setarch"),
            "setarch is missing: it comes with util-linux"
        );
        let mut bench = Bench {
            hwbp_trace,
            fx_user,
            scratch,
            execute: Workload {
                name: "execute: hwbp_fx_target",
                mode: "calls",
                target: "hwbp_fx_target:x",
                perf_event: String::new(),
                floor_event: String::new(),
            },
            write: Workload {
                name: "write: HWBP_FX_COUNTER",
                mode: "writes",
                target: "HWBP_FX_COUNTER:w",
                perf_event: String::new(),
                floor_event: String::new(),
            },
            strace: on_path("strace"),
            bpftrace: on_path("bpftrace"),
            tmux: on_path("tmux"),
            noted_before: std::cell::Cell::new(0),
            kernel_refused: None,
        };
        // Counted from here: a line is never taken out, so that a SIGTRAP
        // noted while no run is watching (a fixture outliving its run) is
        // still in the total.
        remove(&bench.faults());
        let base = bench.load_base()?;
        let function = bench.link_address("hwbp_fx_target")?;
        let variable = bench.link_address("HWBP_FX_COUNTER")?;
        // perf 6.1 reads `mem:ADDR/8:w` as rw (the event loses its `:w`):
        // the default length (4 on x86) catches every 8-byte store anyway.
        bench.execute.perf_event = format!("mem:{:#x}:x", base + function);
        bench.write.perf_event = format!("mem:{:#x}:w", base + variable);
        let function = bench.link_address("fx_bench_floor")?;
        let variable = bench.link_address("FX_BENCH_FLOOR")?;
        bench.execute.floor_event = format!("mem:{:#x}:x", base + function);
        bench.write.floor_event = format!("mem:{:#x}:w", base + variable);
        bench.kernel_refused = bench.kernel_breakpoints_refused()?;
        Ok(bench)
    }

    /// hwbp-trace's start-up benchmark command on a kernel target.
    pub(super) fn kernel_target(&self) -> Command {
        let mut cmd = Command::new(&self.hwbp_trace);
        cmd.args(["--no-tui", "-q", "-d", "0.05", "vfs_read:w"]);
        cmd
    }

    /// Asks the host, by arming the kernel target once: None when it
    /// arms, hwbp-trace's error when the host refuses kernel breakpoints
    /// (any other failure is the bench's to report).
    fn kernel_breakpoints_refused(&self) -> Result<Option<String>> {
        let mut cmd = self.kernel_target();
        let out = cmd
            .output()
            .with_context(|| format!("running `{}`", display(&cmd)))?;
        if out.status.success() {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        match stderr
            .lines()
            .find(|line| line.contains("refuses breakpoints on kernel addresses"))
        {
            Some(line) => Ok(Some(
                line.trim_start_matches("hwbp-trace: error: ").to_owned(),
            )),
            None => bail!(
                "`{}` failed ({}): {}",
                display(&cmd),
                out.status,
                stderr.trim()
            ),
        }
    }

    /// The fixture's load address without ASLR: started under setarch -R,
    /// held by --wait, its first mapping read from /proc/PID/maps.
    pub(super) fn load_base(&self) -> Result<u64> {
        let go = self.scratch.join("go-base");
        remove(&go);
        let mut child = no_aslr(&self.fx_user)
            .arg("--wait")
            .arg(&go)
            .args(["calls", "0"])
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.fx_user.display()))?;
        let maps_path = format!("/proc/{}/maps", child.id());
        let exe = fs::canonicalize(&self.fx_user)
            .with_context(|| format!("resolving {}", self.fx_user.display()))?;
        let exe = exe.to_string_lossy().into_owned();
        // setarch execs the fixture: wait until the mapping is there.
        let deadline = Instant::now() + Duration::from_secs(5);
        let base = loop {
            let maps = fs::read_to_string(&maps_path).unwrap_or_default();
            let first = maps.lines().find(|line| line.ends_with(exe.as_str()));
            if let Some(line) = first {
                let start = line.split('-').next().unwrap_or_default();
                break u64::from_str_radix(start, 16)
                    .with_context(|| format!("parsing `{line}` of {maps_path}"))?;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{exe} did not appear in {maps_path} within 5 s");
            }
            thread::sleep(Duration::from_millis(2));
        };
        touch(&go)?;
        child.wait().context("waiting for the fixture")?;
        remove(&go);
        Ok(base)
    }

    /// A symbol's link-time address in fx_user, from `hwbp-trace list`.
    pub(super) fn link_address(&self, symbol: &str) -> Result<u64> {
        let mut cmd = Command::new(&self.hwbp_trace);
        cmd.args(["list", "--binary"])
            .arg(&self.fx_user)
            .arg(symbol);
        let listing = crate::exec::output(&mut cmd)?;
        let line = listing
            .lines()
            .find(|line| line.split_whitespace().nth(3) == Some(symbol))
            .ok_or_else(|| anyhow!("`{}` did not list {symbol}:\n{listing}", display(&cmd)))?;
        let addr = line.split_whitespace().next().unwrap_or_default();
        u64::from_str_radix(addr.trim_start_matches("0x"), 16)
            .with_context(|| format!("parsing the address in `{line}`"))
    }

    pub(super) fn jsonl(&self) -> PathBuf {
        self.scratch.join("trace.jsonl")
    }

    pub(super) fn perf_data(&self) -> PathBuf {
        self.scratch.join("perf.data")
    }

    /// FIFOs through which perf (started with -D -1, events disabled) is
    /// told to enable its events and acknowledges: the only way to know
    /// that perf record -p is armed (it says nothing, and fails if its
    /// process exits during its set-up). `who` tells apart two perfs of
    /// one run.
    pub(super) fn perf_fifos(&self, who: Perf) -> (PathBuf, PathBuf) {
        let who = match who {
            Perf::Tool => "",
            Perf::Floor => "-floor",
        };
        (
            self.scratch.join(format!("perf-ctl{who}.fifo")),
            self.scratch.join(format!("perf-ack{who}.fifo")),
        )
    }

    pub(super) fn perf_control(&self, who: Perf) -> String {
        let (ctl, ack) = self.perf_fifos(who);
        format!("fifo:{},{}", ctl.display(), ack.display())
    }

    /// Fresh FIFOs for `who`.
    pub(super) fn make_perf_fifos(&self, who: Perf) -> Result<()> {
        let (ctl, ack) = self.perf_fifos(who);
        for fifo in [&ctl, &ack] {
            remove(fifo);
            crate::exec::exec(Command::new("mkfifo").arg(fifo))?;
        }
        Ok(())
    }

    /// `perf stat` counting `event` in process `pid`, armed through `who`'s
    /// FIFOs, its stderr (the count) piped.
    pub(super) fn perf_stat(&self, event: &str, who: Perf, pid: &str) -> Command {
        let mut cmd = Command::new("perf");
        cmd.args(["stat", "-x,", "-D", "-1", "--control"])
            .arg(self.perf_control(who))
            .args(["-e", event, "-p", pid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// perf stat counting the target's twin, the floor of a paired run.
    pub(super) fn floor_command(&self, workload: &Workload, pid: &str) -> Command {
        self.perf_stat(&workload.floor_event, Perf::Floor, pid)
    }

    /// The tool attached to a waiting fixture (`-p PID`); None for the
    /// workload alone.
    pub(super) fn attach_command(
        &self,
        variant: Variant,
        workload: &Workload,
        pid: &str,
    ) -> Option<Command> {
        let mut cmd = match variant {
            Variant::Alone => return None,
            Variant::PerfStat => self.perf_stat(&workload.perf_event, Perf::Tool, pid),
            Variant::HwbpTrace
            | Variant::HwbpNoStacks
            | Variant::HwbpKernelSide
            | Variant::HwbpCondKept
            | Variant::HwbpCondRejected
            | Variant::HwbpSampled
            | Variant::HwbpAggregates => {
                let mut cmd = Command::new(&self.hwbp_trace);
                if variant == Variant::HwbpKernelSide {
                    // 32 MiB: room for every hit of the large run (about
                    // 200 bytes each), so that none takes the drop path.
                    cmd.args(["--buffer-size", "33554432"]);
                }
                let stack = match variant {
                    Variant::HwbpTrace
                    | Variant::HwbpKernelSide
                    | Variant::HwbpSampled
                    | Variant::HwbpAggregates => "both",
                    _ => "none",
                };
                match variant {
                    Variant::HwbpSampled => {
                        cmd.args(["--records", "sample:100"]);
                    }
                    Variant::HwbpAggregates => {
                        cmd.args(["--records", "none"]);
                    }
                    _ => {}
                }
                let target = match variant {
                    Variant::HwbpCondKept => format!("{} if pid != 0", workload.target),
                    Variant::HwbpCondRejected => format!("{} if pid == 0", workload.target),
                    _ => workload.target.to_owned(),
                };
                cmd.args(["--no-tui", "-q", "--stack", stack, "-o"])
                    .arg(self.jsonl())
                    .args(["-p", pid, &target]);
                cmd
            }
            Variant::PerfRecord | Variant::PerfRecordNoStacks => {
                let mut cmd = Command::new("perf");
                cmd.args([
                    "record",
                    "-D",
                    "-1",
                    "--control",
                    &self.perf_control(Perf::Tool),
                    "-o",
                ])
                .arg(self.perf_data())
                .args(["-e", &workload.perf_event, "-c", "1", "-p", pid]);
                if variant == Variant::PerfRecord {
                    cmd.arg("-g");
                }
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Some(cmd)
    }

    /// The command lines of one per-hit measurement, for the report.
    pub(super) fn attach_display(&self, variant: Variant, workload: &Workload, n: u64) -> String {
        let fixture = format!(
            "setarch -R {} --wait GO {} {n}",
            self.fx_user.display(),
            workload.mode
        );
        match self.attach_command(variant, workload, "PID") {
            None => fixture,
            Some(cmd) => format!("{fixture} &  {}", display(&cmd)),
        }
    }

    /// What the tool counted, where it says: perf stat's CSV line, perf
    /// record's "(N samples)", hwbp-trace's JSONL summary.
    pub(super) fn counted(&self, variant: Variant, stderr: &str) -> Result<Option<u64>> {
        Ok(match variant {
            Variant::Alone => None,
            Variant::PerfStat => stderr
                .lines()
                .find(|line| line.contains(",mem:"))
                .and_then(|line| line.split(',').next())
                .and_then(|count| count.parse().ok()),
            Variant::PerfRecord | Variant::PerfRecordNoStacks => {
                stderr.split('(').find_map(|part| {
                    part.split_once(" samples)")
                        .and_then(|(count, _)| count.trim().parse().ok())
                })
            }
            Variant::HwbpTrace
            | Variant::HwbpNoStacks
            | Variant::HwbpKernelSide
            | Variant::HwbpCondKept => Some(jsonl_summary(&self.jsonl())?.hits),
            // Few or no records: every hit is in the program's count.
            Variant::HwbpSampled | Variant::HwbpAggregates => {
                Some(jsonl_summary(&self.jsonl())?.counted)
            }
            // Every hit rejected: seen by the program, none recorded.
            Variant::HwbpCondRejected => {
                let summary = jsonl_summary(&self.jsonl())?;
                Some(summary.hits + summary.rejected)
            }
        })
    }
}

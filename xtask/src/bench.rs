//! `cargo xtask bench`: what tracing costs on this machine, side by side with
//! perf, written to BENCHMARKS.md at the workspace root.
//!
//! Four measurements (issue 7):
//! 1. per-hit cost, for an execute and a write target of the fx_user fixture:
//!    the workload alone, `perf stat -e mem:ADDR` (the floor: the debug
//!    exception itself), hwbp-trace with kernel and user stacks and a JSONL
//!    file, and `perf record -e mem:ADDR -c 1` with and without -g (without:
//!    the kernel's own smallest sample, a bound for any tracer that records
//!    each hit). The fixture waits for a file, the tool attaches with -p,
//!    and the file appears once the tool is armed (hwbp-trace: its Tracing
//!    line; perf: started with events disabled, enabled through its control
//!    FIFO, which it acknowledges).
//!    Timed from then to the fixture's exit (what the traced program pays)
//!    and to the tool's exit. Two run sizes, alternating runs, medians; the
//!    slope between the sizes is the per-hit cost. The goals are judged on
//!    paired runs, less noisy: perf stat on the target's twin and the tool
//!    on the target in one process, whose batches of hits on each alternate
//!    (fx_user `paired`). Then the BPF program's
//!    own time per hit, with and without stacks, from the kernel's
//!    accounting (kernel.bpf_stats_enabled, on only for those runs).
//! 2. start-up, from exec to the `Tracing` line, for a kernel and a user
//!    target, and where the time goes (one run under strace, split at the
//!    first kallsyms/ELF, BTF, bpf() and perf_event_open calls).
//! 3. sustained rate: one fixture thread per CPU calling the target, traced
//!    with -p and a JSONL file, headless and with the dashboard (in a
//!    detached tmux session): hits lost at the default ring-buffer size,
//!    hwbp-trace's own CPU time per 100k hits, its peak RSS.
//! 4. growth: hwbp-trace's peak RSS for longer and longer traces (streaming
//!    exports must keep it flat), and for more and more distinct user
//!    stacks (`fx_user stacks N DISTINCT`).
//!
//! It reports; it never gates. This is a shared 2-vCPU VM where every
//! breakpoint hit is a VM exit, so single timings are noisy: medians of
//! alternating runs and slopes are what the report shows. No test asserts a
//! timing.
//!
//! perf takes raw addresses only and fx_user is a PIE, so every run here
//! (the workload alone and hwbp-trace too, for fairness) goes through
//! `setarch -R`: without address-space randomisation the fixture loads at
//! the same base every time, and the run-time address is computed once.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use clap::Args;

use crate::{build, exec::display, integration::count_lines, setup, workspace_root};

#[derive(Args)]
pub struct Options {
    /// Runs per measurement; the report shows medians.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Hits in the small run of the per-hit measurement.
    #[arg(long, default_value_t = 20_000)]
    small: u64,
    /// Hits in the large run of the per-hit measurement.
    #[arg(long, default_value_t = 100_000)]
    large: u64,
    /// Paired runs per tool and target (see BENCHMARKS.md, section 1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    paired_runs: u64,
    /// Hits on each target in a paired run.
    #[arg(long, default_value_t = 100_000)]
    paired_hits: u64,
    /// Hits per batch in a paired run (a round is one batch per target).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Calls per fixture thread (one thread per CPU) for the sustained rate.
    #[arg(long, default_value_t = 100_000)]
    sustained: u64,
    /// Trace lengths (hits) for the memory-growth measurement.
    #[arg(long, value_delimiter = ',', default_values_t = [20_000u64, 200_000, 1_000_000])]
    lengths: Vec<u64>,
    /// Distinct user stacks for the stack-growth measurement (1 to 131072).
    #[arg(long, value_delimiter = ',', default_values_t = [1u64, 100, 10_000, 100_000])]
    stacks: Vec<u64>,
    /// Hits per run of the stack-growth measurement.
    #[arg(long, default_value_t = 100_000)]
    stack_hits: u64,
    /// Measure the binaries already in target/release instead of building.
    #[arg(long)]
    no_build: bool,
    /// Skip the kernel-target part, which boots Debian's kernel under QEMU.
    #[arg(long)]
    no_vm: bool,
    /// Debian kernel for the kernel-target part (default: what
    /// linux-image-amd64 depends on).
    #[arg(long, value_name = "VERSION")]
    kernel: Option<String>,
    /// Where to write the report [default: BENCHMARKS.md in the workspace root].
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(options: Options) -> Result<()> {
    let Options {
        runs,
        small,
        large,
        paired_runs,
        paired_hits,
        batch,
        sustained,
        lengths,
        stacks,
        stack_hits,
        no_build,
        no_vm,
        kernel,
        out,
    } = options;
    ensure!(
        small < large,
        "--small ({small}) must be less than --large ({large})"
    );
    ensure!(
        paired_hits % batch == 0 && paired_hits / batch >= 10,
        "--batch ({batch}) must divide --paired-hits ({paired_hits}) into at least 10 rounds"
    );
    if let Some(bad) = stacks
        .iter()
        .find(|&&d| d == 0 || d > FX_STACK_PATHS || d > stack_hits)
    {
        bail!(
            "--stacks {bad}: each must be 1 to {FX_STACK_PATHS} (fx_user's call paths) and at \
             most --stack-hits ({stack_hits})"
        );
    }
    if !no_build {
        setup::run()?;
        build::run()?;
    }
    let started = Instant::now();
    let bench = Bench::new()?;
    // Every fx_user of the bench notes its SIGTRAPs there, whoever starts
    // it (the tools with `--`, tmux).
    // SAFETY: no other thread runs yet: the commands so far were waited for.
    unsafe { std::env::set_var("HWBP_FX_FAULTS", bench.faults()) };
    let machine = Machine::probe();
    println!("bench: {}", machine.one_line());

    let mut report = String::new();
    let paired = bench.paired(paired_runs, paired_hits, batch)?;
    let per_hit = bench.per_hit(runs, small, large)?;
    let bpf_time = bench.bpf_time(BPF_TIME_RUNS, large)?;
    let startup = bench.startup(runs)?;
    let (sustained, dashboard, sustained_tmpfs) = bench.sustained(sustained)?;
    let growth = bench.growth(&lengths)?;
    let stacks = bench.stacks(&stacks, stack_hits)?;
    let idle = bench.idle_memory()?;
    // A failure in the VM is reported in its section, not fatal: the host's
    // numbers stand on their own.
    let vm = (!no_vm).then(|| {
        crate::bench_vm::run(kernel.as_deref()).unwrap_or_else(|e| {
            (
                format!("## 5. Kernel target in the VM\n\nNot measured: {e:#}\n\n"),
                String::new(),
            )
        })
    });
    let elapsed = started.elapsed();

    write_report(
        &mut report,
        &machine,
        &bench,
        &Results {
            runs,
            small,
            large,
            paired,
            batch,
            per_hit,
            bpf_time,
            startup,
            sustained,
            dashboard,
            sustained_tmpfs,
            growth,
            stacks,
            stack_hits,
            idle,
            vm,
            elapsed,
            lost_exceptions: bench.lost_exceptions()?,
        },
    );
    let out = out.unwrap_or_else(|| workspace_root().join("BENCHMARKS.md"));
    fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "bench: wrote {} ({:.0} s of measuring)",
        out.display(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The things measured.

/// Runs of each BPF-time measurement (kernel.bpf_stats_enabled): the
/// kernel's own clock around each program run, far less noisy than the
/// program's wall time.
const BPF_TIME_RUNS: u64 = 3;

/// Call paths of `fx_user stacks` (17 levels of two functions): the most
/// distinct stacks it can make.
const FX_STACK_PATHS: u64 = 1 << 17;

/// A fixture mode that hits one target, and how each tool names that target.
struct Workload {
    name: &'static str,
    /// fx_user's command: `calls` or `writes`.
    mode: &'static str,
    /// hwbp-trace's TARGET.
    target: &'static str,
    /// perf's event, with the run-time address.
    perf_event: String,
    /// perf's event on the target's twin (fx_bench_floor, FX_BENCH_FLOOR),
    /// which perf stat counts alongside the tool measured in a paired run.
    floor_event: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
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
}

impl Variant {
    fn is_hwbp(self) -> bool {
        matches!(
            self,
            Variant::HwbpTrace | Variant::HwbpNoStacks | Variant::HwbpKernelSide
        )
    }

    const ALL: [Variant; 7] = [
        Variant::Alone,
        Variant::PerfStat,
        Variant::HwbpTrace,
        Variant::HwbpNoStacks,
        Variant::HwbpKernelSide,
        Variant::PerfRecord,
        Variant::PerfRecordNoStacks,
    ];

    /// The tools of a paired run (perf stat: the method's check).
    const PAIRED: [Variant; 5] = [
        Variant::PerfStat,
        Variant::HwbpTrace,
        Variant::HwbpNoStacks,
        Variant::PerfRecord,
        Variant::PerfRecordNoStacks,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Alone => "workload alone",
            Variant::PerfStat => "perf stat (floor)",
            Variant::HwbpTrace => "hwbp-trace, k+u stacks, JSONL",
            Variant::HwbpNoStacks => "hwbp-trace, no stacks, JSONL",
            Variant::HwbpKernelSide => "hwbp-trace, reader stopped (kernel side only)",
            Variant::PerfRecord => "perf record -c 1 -g",
            Variant::PerfRecordNoStacks => "perf record -c 1 (no stacks)",
        }
    }
}

/// Which of a run's perf processes (each has its own control FIFOs).
#[derive(Clone, Copy)]
enum Perf {
    /// The tool measured.
    Tool,
    /// perf stat on the target's twin, in a paired run.
    Floor,
}

struct Bench {
    hwbp_trace: PathBuf,
    fx_user: PathBuf,
    scratch: PathBuf,
    execute: Workload,
    write: Workload,
    strace: bool,
    bpftrace: bool,
    tmux: bool,
    /// Debug exceptions the fixtures had noted when the current run's
    /// started (see [`Bench::faults`]).
    noted_before: std::cell::Cell<u64>,
}

impl Bench {
    fn new() -> Result<Self> {
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
        Ok(bench)
    }

    /// The fixture's load address without ASLR: started under setarch -R,
    /// held by --wait, its first mapping read from /proc/PID/maps.
    fn load_base(&self) -> Result<u64> {
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
    fn link_address(&self, symbol: &str) -> Result<u64> {
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

    fn jsonl(&self) -> PathBuf {
        self.scratch.join("trace.jsonl")
    }

    fn perf_data(&self) -> PathBuf {
        self.scratch.join("perf.data")
    }

    /// FIFOs through which perf (started with -D -1, events disabled) is
    /// told to enable its events and acknowledges: the only way to know
    /// that perf record -p is armed (it says nothing, and fails if its
    /// process exits during its set-up). `who` tells apart two perfs of
    /// one run.
    fn perf_fifos(&self, who: Perf) -> (PathBuf, PathBuf) {
        let who = match who {
            Perf::Tool => "",
            Perf::Floor => "-floor",
        };
        (
            self.scratch.join(format!("perf-ctl{who}.fifo")),
            self.scratch.join(format!("perf-ack{who}.fifo")),
        )
    }

    fn perf_control(&self, who: Perf) -> String {
        let (ctl, ack) = self.perf_fifos(who);
        format!("fifo:{},{}", ctl.display(), ack.display())
    }

    /// Fresh FIFOs for `who`.
    fn make_perf_fifos(&self, who: Perf) -> Result<()> {
        let (ctl, ack) = self.perf_fifos(who);
        for fifo in [&ctl, &ack] {
            remove(fifo);
            crate::exec::exec(Command::new("mkfifo").arg(fifo))?;
        }
        Ok(())
    }

    /// `perf stat` counting `event` in process `pid`, armed through `who`'s
    /// FIFOs, its stderr (the count) piped.
    fn perf_stat(&self, event: &str, who: Perf, pid: &str) -> Command {
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
    fn floor_command(&self, workload: &Workload, pid: &str) -> Command {
        self.perf_stat(&workload.floor_event, Perf::Floor, pid)
    }

    /// The tool attached to a waiting fixture (`-p PID`); None for the
    /// workload alone.
    fn attach_command(&self, variant: Variant, workload: &Workload, pid: &str) -> Option<Command> {
        let mut cmd = match variant {
            Variant::Alone => return None,
            Variant::PerfStat => self.perf_stat(&workload.perf_event, Perf::Tool, pid),
            Variant::HwbpTrace | Variant::HwbpNoStacks | Variant::HwbpKernelSide => {
                let mut cmd = Command::new(&self.hwbp_trace);
                if variant == Variant::HwbpKernelSide {
                    // 32 MiB: room for every hit of the large run (about
                    // 200 bytes each), so that none takes the drop path.
                    cmd.args(["--buffer-size", "33554432"]);
                }
                let stack = if variant == Variant::HwbpNoStacks {
                    "none"
                } else {
                    "both"
                };
                cmd.args(["--no-tui", "-q", "--stack", stack, "-o"])
                    .arg(self.jsonl())
                    .args(["-p", pid, workload.target]);
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
    fn attach_display(&self, variant: Variant, workload: &Workload, n: u64) -> String {
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
    fn counted(&self, variant: Variant, stderr: &str) -> Result<Option<u64>> {
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
            Variant::HwbpTrace | Variant::HwbpNoStacks | Variant::HwbpKernelSide => {
                Some(jsonl_summary(&self.jsonl())?.hits)
            }
        })
    }

    /// Starts `cmd`, a tool attaching to a waiting fixture, and waits until
    /// it is armed: hwbp-trace's Tracing line; for perf (-D -1), its
    /// acknowledgement of `enable` through `who`'s FIFOs, made fresh here.
    /// Kills it on failure; the caller kills the fixture.
    fn arm(&self, mut cmd: Command, hwbp: bool, who: Perf) -> Result<Attached> {
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
    fn attached_run(
        &self,
        variant: Variant,
        workload: &Workload,
        n: u64,
        bpf_stats: bool,
    ) -> Result<AttachedRun> {
        let go = self.scratch.join("go-hit");
        remove(&go);
        let mut fixture = self.fixture_waiting(&go, &[workload.mode, &n.to_string()])?;
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
    /// a line for the report (perf record counted 100,002 of 100,000 once,
    /// on a host that lost 4 exceptions in that run).
    fn paired_run(
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
    fn paired(&self, runs: u64, n: u64, batch: u64) -> Result<Vec<Paired>> {
        let mut results = Vec::new();
        for workload in [&self.execute, &self.write] {
            println!("bench: per-hit cost, paired, {}", workload.name);
            let mut rows: Vec<Paired> = Variant::PAIRED
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

    fn per_hit(&self, runs: u64, small: u64, large: u64) -> Result<Vec<PerHit>> {
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
    fn bpf_time(&self, runs: u64, n: u64) -> Result<Vec<BpfTime>> {
        println!("bench: BPF time per hit (kernel.bpf_stats_enabled)");
        let _stats = BpfStatsOn::enable()?;
        let mut results = Vec::new();
        for workload in [&self.execute, &self.write] {
            for variant in [Variant::HwbpTrace, Variant::HwbpNoStacks] {
                let mut row = BpfTime {
                    workload: workload.name,
                    variant,
                    ns_per_run: Vec::new(),
                    runs_counted: Vec::new(),
                };
                for _ in 0..runs {
                    let run = self.attached_run(variant, workload, n, true)?;
                    let (ns, count) = run
                        .bpf
                        .ok_or_else(|| anyhow!("no run_time_ns/run_cnt in hwbp-trace's fdinfo"))?;
                    ensure!(count > 0, "hwbp-trace's BPF program never ran");
                    row.ns_per_run.push(ns as f64 / count as f64);
                    row.runs_counted.push(count);
                }
                results.push(row);
            }
        }
        Ok(results)
    }

    fn startup(&self, runs: u64) -> Result<Vec<Startup>> {
        println!("bench: start-up");
        let kernel = {
            let mut cmd = Command::new(&self.hwbp_trace);
            cmd.args(["--no-tui", "-q", "-d", "0.05", "vfs_read:w"]);
            cmd
        };
        let user = {
            let mut cmd = Command::new(&self.hwbp_trace);
            cmd.args(["--no-tui", "-q", "hwbp_fx_target", "--"])
                .arg(&self.fx_user)
                .args(["calls", "1"]);
            cmd
        };
        let mut results = vec![
            Startup {
                name: "kernel target (vfs_read:w, kallsyms, 2 CPUs)",
                command: display(&kernel),
                times: Vec::new(),
                phases: None,
            },
            Startup {
                name: "user target (hwbp_fx_target -- fx_user)",
                command: display(&user),
                times: Vec::new(),
                phases: None,
            },
        ];
        for _ in 0..runs {
            for (i, cmd) in [&kernel, &user].into_iter().enumerate() {
                let mut cmd = clone_command(cmd);
                let run = finish(&mut cmd, None)?;
                run.check(&cmd)?;
                let to_tracing = run
                    .tracing_after
                    .ok_or_else(|| anyhow!("`{}` never printed its Tracing line", display(&cmd)))?;
                results[i].times.push(to_tracing.as_secs_f64());
            }
        }
        if self.strace {
            results[0].phases = Some(
                self.phases_kernel()
                    .context("start-up phases, kernel target")?,
            );
            results[1].phases = Some(self.phases_user().context("start-up phases, user target")?);
        }
        Ok(results)
    }

    fn strace(&self, log: &Path) -> Command {
        let mut cmd = Command::new("strace");
        cmd.args([
            "-f",
            "-ttt",
            "--seccomp-bpf",
            "-e",
            "trace=execve,openat,bpf,perf_event_open,write,exit",
            "-o",
        ])
        .arg(log)
        .arg(&self.hwbp_trace);
        cmd
    }

    fn phases_kernel(&self) -> Result<Phases> {
        let log = self.scratch.join("strace-kernel.txt");
        let mut cmd = self.strace(&log);
        cmd.args(["--no-tui", "-q", "-d", "0.05", "vfs_read:w"]);
        finish(&mut cmd, None)?.check(&cmd)?;
        let phases = Phases::parse(&log, display(&cmd))?;
        remove(&log);
        Ok(phases)
    }

    /// hwbp-trace starts its command under ptrace, which strace holds:
    /// here the fixture waits and hwbp-trace attaches with -p.
    fn phases_user(&self) -> Result<Phases> {
        let log = self.scratch.join("strace-user.txt");
        let go = self.scratch.join("go-phases");
        remove(&go);
        let fixture = self.fixture_waiting(&go, &["calls", "1"])?;
        let mut cmd = self.strace(&log);
        let pid = fixture.id().to_string();
        cmd.args(["--no-tui", "-q", "-p", &pid, "hwbp_fx_target"]);
        let run = finish_with_fixture(&mut cmd, &go, fixture, false)?;
        run.check(&cmd)?;
        let command = display(&cmd).replace(&format!("-p {pid}"), "-p PID");
        let phases = Phases::parse(&log, command)?;
        remove(&log);
        remove(&go);
        Ok(phases)
    }

    /// Where fx_user notes each SIGTRAP it gets (`$HWBP_FX_FAULTS`, set for
    /// the whole bench): a debug exception this host lost (DR6 empty;
    /// docs/limitations.md). A lost write hit is counted by no tool; an
    /// execute breakpoint traps again. Emptied once, as the bench starts;
    /// each run of [`Bench::fixture_waiting`] notes how many lines it holds
    /// then, and its own are those after.
    fn faults(&self) -> PathBuf {
        self.scratch.join("fx-faults")
    }

    /// The debug exceptions lost since the current run's fixture started.
    fn faults_noted(&self) -> Result<u64> {
        Ok(self
            .lost_exceptions()?
            .saturating_sub(self.noted_before.get()))
    }

    /// The debug exceptions lost in every run so far.
    fn lost_exceptions(&self) -> Result<u64> {
        Ok(count_lines(&self.faults())? as u64)
    }

    /// fx_user under setarch -R, waiting for `go`; returned once setarch
    /// has exec'd it (before that, -p would find setarch's symbols).
    fn fixture_waiting(&self, go: &Path, args: &[&str]) -> Result<Child> {
        self.noted_before.set(self.lost_exceptions()?);
        let mut child = no_aslr(&self.fx_user)
            .arg("--wait")
            .arg(go)
            .args(args)
            .env("HWBP_FX_GO", go)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.fx_user.display()))?;
        let exe = fs::canonicalize(&self.fx_user)
            .with_context(|| format!("resolving {}", self.fx_user.display()))?;
        let link = format!("/proc/{}/exe", child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read_link(&link).ok().as_deref() != Some(exe.as_path()) {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("setarch did not start {} within 5 s", exe.display());
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(child)
    }

    /// hwbp-trace -p on a fixture that starts once the Tracing line is out:
    /// hwbp-trace has no child then, so wait4's rusage is its own. `stack`
    /// is hwbp-trace's --stack; with `count_ustacks`, the different user
    /// stacks in the JSONL file are counted.
    fn traced_by_pid(
        &self,
        name: &str,
        args: &[&str],
        expected: u64,
        stack: &str,
        count_ustacks: bool,
    ) -> Result<Measured> {
        self.traced_by_pid_into(&self.jsonl(), name, args, expected, stack, count_ustacks)
    }

    /// [`Bench::traced_by_pid`], with the JSONL file at `jsonl`.
    fn traced_by_pid_into(
        &self,
        jsonl: &Path,
        name: &str,
        args: &[&str],
        expected: u64,
        stack: &str,
        count_ustacks: bool,
    ) -> Result<Measured> {
        let go = self.scratch.join(format!("go-{name}"));
        remove(&go);
        let fixture = self.fixture_waiting(&go, args)?;
        let pid = fixture.id().to_string();
        let mut cmd = Command::new(&self.hwbp_trace);
        cmd.args(["--no-tui", "-q", "--stack", stack, "-o"])
            .arg(jsonl)
            .args(["-p", &pid, "hwbp_fx_target"]);
        let command = display(&cmd).replace(&format!("-p {pid}"), "-p PID");
        let run = finish_with_fixture(&mut cmd, &go, fixture, false)?;
        run.check(&cmd)?;
        let jsonl_bytes = fs::metadata(jsonl).map(|m| m.len()).unwrap_or(0);
        let summary = jsonl_summary(jsonl)?;
        let ustacks = if count_ustacks {
            Some(distinct_ustacks(jsonl)?)
        } else {
            None
        };
        remove(jsonl);
        remove(&go);
        Ok(Measured {
            command,
            expected,
            summary,
            wall: run.wall,
            cpu: run.cpu,
            max_rss_kib: run.max_rss_kib,
            jsonl_bytes,
            ustacks,
        })
    }

    /// The sustained-rate fixture traced by hwbp-trace with its dashboard,
    /// which needs a terminal: hwbp-trace runs in a detached tmux session
    /// on a private server. It is not our child, so its CPU time and peak
    /// RSS come from /proc (utime + stime, VmHWM), read once the dashboard
    /// says the run ended (the JSONL file is complete then) and before `q`
    /// quits it. `wall` runs from starting tmux to that moment.
    fn traced_with_dashboard(&self, args: &[&str], expected: u64) -> Result<Measured> {
        let go = self.scratch.join("go-dashboard");
        let stderr = self.scratch.join("dashboard-stderr.txt");
        remove(&go);
        remove(&stderr);
        let mut fixture = self.fixture_waiting(&go, args)?;
        let measured = self.dashboard_session(&go, &stderr, &mut fixture, expected);
        if measured.is_err() {
            let _ = fixture.kill();
            let _ = fixture.wait();
        }
        remove(&self.jsonl());
        remove(&go);
        remove(&stderr);
        measured
    }

    fn dashboard_session(
        &self,
        go: &Path,
        stderr: &Path,
        fixture: &mut Child,
        expected: u64,
    ) -> Result<Measured> {
        let pid = fixture.id().to_string();
        let mut cmd = Command::new(&self.hwbp_trace);
        cmd.args(["--stack", "both", "-o"])
            .arg(self.jsonl())
            .args(["-p", &pid, "hwbp_fx_target"]);
        let start = Instant::now();
        let tmux = Tmux::start(&self.scratch, &cmd, stderr)?;
        let errors = || fs::read_to_string(stderr).unwrap_or_default();
        let hwbp_pid = tmux
            .pid(Duration::from_secs(10))
            .with_context(|| format!("`{}` in tmux: {}", display(&cmd), errors().trim()))?;
        // The status bar says `● tracing` from the first frame, which is
        // drawn once every breakpoint is armed.
        tmux.wait_for_screen(" tracing ", Duration::from_secs(30))
            .with_context(|| format!("`{}` in tmux: {}", display(&cmd), errors().trim()))?;
        touch(go)?;
        let status = fixture.wait().context("waiting for the fixture")?;
        ensure!(status.success(), "the fixture failed ({status})");
        // `■ ended: process exited`: the session has drained the ring
        // buffer and closed the JSONL file.
        tmux.wait_for_screen(" ended: ", Duration::from_secs(60))
            .with_context(|| format!("`{}` in tmux: {}", display(&cmd), errors().trim()))?;
        let wall = start.elapsed();
        let exe = fs::read_link(format!("/proc/{hwbp_pid}/exe")).unwrap_or_default();
        ensure!(
            fs::canonicalize(&self.hwbp_trace).is_ok_and(|ours| ours == exe),
            "process {hwbp_pid} in tmux is {}, not {}",
            exe.display(),
            self.hwbp_trace.display()
        );
        let cpu = cpu_time(hwbp_pid)?;
        let max_rss_kib = status_kib(hwbp_pid, "VmHWM:")
            .ok_or_else(|| anyhow!("no VmHWM in /proc/{hwbp_pid}/status"))?;
        tmux.send_keys("q")?;
        let exit = tmux.wait_for_exit(hwbp_pid, Duration::from_secs(30))?;
        ensure!(
            exit == 0,
            "`{}` in tmux failed (exit {exit}):\n{}",
            display(&cmd),
            errors().trim()
        );
        drop(tmux);
        let jsonl_bytes = fs::metadata(self.jsonl()).map(|m| m.len()).unwrap_or(0);
        let summary = jsonl_summary(&self.jsonl())?;
        Ok(Measured {
            command: format!(
                "tmux new-session -d -x {} -y {} '{} 2>ERR'",
                Tmux::WIDTH,
                Tmux::HEIGHT,
                display(&cmd).replace(&format!("-p {pid}"), "-p PID")
            ),
            expected,
            summary,
            wall,
            cpu,
            max_rss_kib,
            jsonl_bytes,
            ustacks: None,
        })
    }

    /// VmRSS of hwbp-trace once armed, before any hit: what start-up
    /// costs in memory, by what it loads.
    fn idle_memory(&self) -> Result<Vec<Idle>> {
        println!("bench: memory once armed");
        let mut results = Vec::new();
        for (name, stack) in [
            ("user target, user stacks (no kallsyms)", "user"),
            ("user target, kernel + user stacks (kallsyms)", "both"),
        ] {
            let go = self.scratch.join("go-idle");
            remove(&go);
            let fixture = self.fixture_waiting(&go, &["calls", "1"])?;
            let pid = fixture.id().to_string();
            let mut cmd = Command::new(&self.hwbp_trace);
            cmd.args([
                "--no-tui",
                "-q",
                "--stack",
                stack,
                "-p",
                &pid,
                "hwbp_fx_target",
            ]);
            let command = display(&cmd).replace(&format!("-p {pid}"), "-p PID");
            let run = finish_with_fixture(&mut cmd, &go, fixture, true)?;
            run.check(&cmd)?;
            remove(&go);
            results.push(Idle {
                name,
                command,
                rss_kib: run.idle_rss_kib,
            });
        }
        let mut cmd = Command::new(&self.hwbp_trace);
        cmd.args(["--no-tui", "-q", "-d", "1", "vfs_read:w"]);
        let run = finish_sampling(&mut cmd, None, true)?;
        run.check(&cmd)?;
        results.push(Idle {
            name: "kernel target, kernel stacks (kallsyms, BTF for values)",
            command: display(&cmd),
            rss_kib: run.idle_rss_kib,
        });
        Ok(results)
    }

    /// Three runs headless and three with the dashboard (none without
    /// tmux), alternating.
    fn sustained(&self, calls: u64) -> Result<(Vec<Measured>, Vec<Measured>, Vec<Measured>)> {
        let cpus = thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as u64;
        println!("bench: sustained rate, {cpus} threads x {calls} calls");
        let (before, after, n) = (cpus.to_string(), "0".to_owned(), calls.to_string());
        let args = ["threads", &before, &after, &n];
        let (mut headless, mut dashboard, mut tmpfs) = (Vec::new(), Vec::new(), Vec::new());
        // A diagnostic: the same file in memory, where writing never waits
        // for the kernel's writeback of the disk's dirty pages.
        let in_memory =
            Path::new("/dev/shm").join(format!("hwbp-bench-{}.jsonl", std::process::id()));
        for _ in 0..3 {
            headless.push(self.traced_by_pid("sustained", &args, cpus * calls, "both", false)?);
            if Path::new("/dev/shm").is_dir() {
                tmpfs.push(self.traced_by_pid_into(
                    &in_memory,
                    "sustained-tmpfs",
                    &args,
                    cpus * calls,
                    "both",
                    false,
                )?);
            }
            if self.tmux {
                dashboard.push(
                    self.traced_with_dashboard(&args, cpus * calls)
                        .context("sustained rate with the dashboard")?,
                );
            }
        }
        Ok((headless, dashboard, tmpfs))
    }

    fn growth(&self, lengths: &[u64]) -> Result<Vec<Measured>> {
        let mut results = Vec::new();
        for &n in lengths {
            println!("bench: growth, {n} hits");
            results.push(self.traced_by_pid(
                "growth",
                &["calls", &n.to_string()],
                n,
                "both",
                false,
            )?);
        }
        Ok(results)
    }

    /// `hits` calls through 1, 100, ... distinct call paths, user stacks
    /// only; first `fx_user calls` (one stack, shallower) for reference.
    fn stacks(&self, distinct: &[u64], hits: u64) -> Result<Vec<StackRun>> {
        let n = hits.to_string();
        let mut runs = vec![(1, vec!["calls".to_owned(), n.clone()])];
        runs.extend(
            distinct
                .iter()
                .map(|d| (*d, vec!["stacks".to_owned(), n.clone(), d.to_string()])),
        );
        let mut results = Vec::new();
        for (distinct, args) in runs {
            let fixture = format!("fx_user {}", args.join(" "));
            println!("bench: growth, {fixture}");
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let measured = self.traced_by_pid("stacks", &args, hits, "user", true)?;
            results.push(StackRun {
                fixture,
                distinct,
                measured,
            });
        }
        Ok(results)
    }
}

// ---------------------------------------------------------------------------
// Running programs.

/// Reads a child's stderr on a thread: all of it at the end, and a signal
/// when the `Tracing` line comes.
fn read_stderr(child: &mut Child) -> Result<(thread::JoinHandle<String>, mpsc::Receiver<()>)> {
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no stderr pipe"))?;
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut all = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.starts_with("Tracing") {
                let _ = tx.send(());
            }
            all.push_str(&line);
        }
        all
    });
    Ok((handle, rx))
}

/// Tells perf (-D -1 --control fifo:CTL,ACK) to enable its events and
/// waits for its `ack`. Non-blocking opens: a perf that died before opening
/// the FIFOs must not hang the benchmark.
fn perf_enable(ctl: &Path, ack: &Path, limit: Duration) -> Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let deadline = Instant::now() + limit;
    let mut ack_file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(ack)
        .with_context(|| format!("opening {}", ack.display()))?;
    // Opening a FIFO for writing without blocking fails (ENXIO) until the
    // reader, perf, has opened it.
    let mut ctl_file = loop {
        match fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(ctl)
        {
            Ok(file) => break file,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                return Err(e).with_context(|| format!("perf never opened {}", ctl.display()));
            }
        }
    };
    ctl_file
        .write_all(b"enable\n")
        .with_context(|| format!("writing to {}", ctl.display()))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        match ack_file.read(&mut buf) {
            Ok(n) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(3).any(|w| w == b"ack") {
                    return Ok(());
                }
            }
            _ => thread::sleep(Duration::from_millis(2)),
        }
    }
    bail!(
        "perf did not acknowledge `enable` within {} s",
        limit.as_secs()
    )
}

/// Sends `sig` to a child of ours.
fn signal(pid: u32, sig: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) takes plain integers; `pid` is a child this process
    // started and has not reaped, so the number names that child.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signalling process {pid}"));
    }
    Ok(())
}

/// `setarch -R PROGRAM`: the program (and what it starts) without ASLR.
fn no_aslr(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setarch");
    cmd.arg("-R").arg(program);
    cmd
}

fn clone_command(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    copy
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn touch(path: &Path) -> Result<()> {
    fs::write(path, b"").with_context(|| format!("creating {}", path.display()))
}

fn remove(path: &Path) {
    let _ = fs::remove_file(path);
}

/// A finished run: wall time, stderr, and its rusage from wait4.
struct Finished {
    wall: Duration,
    /// From spawn to the `Tracing` line on stderr, if one came.
    tracing_after: Option<Duration>,
    /// VmRSS once armed, before any hit (when asked for).
    idle_rss_kib: Option<u64>,
    exit_code: Option<i32>,
    stderr: String,
    /// User + system CPU time of the process itself (and of children it
    /// reaped, none for hwbp-trace -p).
    cpu: Duration,
    max_rss_kib: u64,
}

impl Finished {
    fn check(&self, cmd: &Command) -> Result<()> {
        if self.exit_code != Some(0) {
            bail!(
                "`{}` failed (exit {:?}):\n{}",
                display(cmd),
                self.exit_code,
                self.stderr.trim()
            );
        }
        Ok(())
    }
}

/// Runs `cmd` to its end, stdout discarded, stderr kept; when the Tracing
/// line appears, creates `go` (so that a waiting fixture starts).
fn finish(cmd: &mut Command, go: Option<&Path>) -> Result<Finished> {
    finish_sampling(cmd, go, false)
}

/// [`finish`]; with `sample_idle`, VmRSS is read 300 ms after the Tracing
/// line, before `go` is created (armed, nothing hit yet).
fn finish_sampling(cmd: &mut Command, go: Option<&Path>, sample_idle: bool) -> Result<Finished> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{}` (is it installed?)", display(cmd)))?;
    let pid = child.id();
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no stderr pipe"))?;
    let go = go.map(Path::to_path_buf);
    let (seen_tx, seen_rx) = mpsc::channel();
    let (idle_tx, idle_rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut all = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.starts_with("Tracing") {
                let _ = seen_tx.send(start.elapsed());
                if sample_idle {
                    thread::sleep(Duration::from_millis(300));
                    let _ = idle_tx.send(vm_rss_kib(pid));
                }
                if let Some(go) = &go {
                    let _ = fs::write(go, b"");
                }
            }
            all.push_str(&line);
        }
        all
    });
    let (status, usage) = wait4(pid)?;
    let wall = start.elapsed();
    drop(child);
    let stderr = reader
        .join()
        .map_err(|_| anyhow!("the stderr reader panicked"))?;
    Ok(Finished {
        wall,
        tracing_after: seen_rx.try_recv().ok(),
        idle_rss_kib: idle_rx.try_recv().ok().flatten(),
        exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stderr,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// [`finish`] for a tracer of a waiting fixture; the fixture is ended
/// whatever happens to the tracer.
fn finish_with_fixture(
    cmd: &mut Command,
    go: &Path,
    mut fixture: Child,
    sample_idle: bool,
) -> Result<Finished> {
    let run = finish_sampling(cmd, Some(go), sample_idle);
    if run.is_err() || !go.exists() {
        let _ = fixture.kill();
    }
    let status = fixture.wait().context("waiting for the fixture")?;
    let run = run?;
    if run.exit_code == Some(0) && !status.success() {
        bail!("the fixture failed ({status}) under `{}`", display(cmd));
    }
    Ok(run)
}

/// kernel.bpf_stats_enabled on for as long as this lives, then as it was.
struct BpfStatsOn {
    before: String,
}

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStatsOn {
    fn enable() -> Result<Self> {
        let before = fs::read_to_string(BPF_STATS_SYSCTL)
            .with_context(|| format!("reading {BPF_STATS_SYSCTL}"))?;
        fs::write(BPF_STATS_SYSCTL, "1").with_context(|| format!("writing {BPF_STATS_SYSCTL}"))?;
        Ok(Self { before })
    }
}

impl Drop for BpfStatsOn {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS_SYSCTL, self.before.trim());
    }
}

/// Reads [`bpf_prog_stats`] of a process every 50 ms on a thread of its
/// own, keeping the last reading.
struct BpfSampler {
    stop: mpsc::Sender<()>,
    thread: thread::JoinHandle<Option<(u64, u64)>>,
}

impl BpfSampler {
    fn start(pid: u32) -> Self {
        let (stop, stopped) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut last = None;
            loop {
                last = bpf_prog_stats(pid).or(last);
                match stopped.recv_timeout(Duration::from_millis(50)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return last,
                }
            }
        });
        Self { stop, thread }
    }

    /// The last reading, if any.
    fn stop(self) -> Option<(u64, u64)> {
        let _ = self.stop.send(());
        self.thread.join().ok().flatten()
    }
}

/// (run_time_ns, run_cnt) of the BPF program that `pid` holds open, from
/// /proc/PID/fdinfo (the one that ran most, should there be several).
fn bpf_prog_stats(pid: u32) -> Option<(u64, u64)> {
    fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .ok()?
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|text| parse_bpf_prog_stats(&text))
        .max_by_key(|&(_, count)| count)
}

/// run_time_ns and run_cnt of one fdinfo file, if it is a BPF program's.
fn parse_bpf_prog_stats(fdinfo: &str) -> Option<(u64, u64)> {
    let field = |key: &str| {
        fdinfo
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    fdinfo.contains("prog_type:").then_some(())?;
    Some((field("run_time_ns:")?, field("run_cnt:")?))
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A kB field of /proc/PID/status (`VmRSS:`, `VmHWM:`).
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of a live process, all its threads, from
/// /proc/PID/stat (`pid (comm) state ...`: utime and stime are fields 14
/// and 15; the comm may hold spaces and parentheses, so count after the
/// last `)`).
fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        bail!("no utime and stime in {path}: {stat}");
    };
    // SAFETY: sysconf takes and returns plain integers.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Ok(Duration::from_secs_f64(
        (utime + stime) as f64 / per_second as f64,
    ))
}

/// A program that needs a terminal, in a detached tmux session on a
/// private server. The server is our child (`tmux -D`), on its own socket
/// and without the user's configuration; dropping this kills it, and with
/// it whatever still runs in the session, and reaps it.
///
/// The pane runs a shell that runs the program and writes its exit status
/// to a file: tmux, the program's parent otherwise, has been seen here not
/// to reap it now and then (a zombie for good, its pane dead without a
/// status).
struct Tmux {
    socket: PathBuf,
    conf: PathBuf,
    /// The program's pid, written before it starts.
    pid_file: PathBuf,
    /// Its exit status, written by the shell once it has reaped it.
    status_file: PathBuf,
    server: Child,
}

impl Tmux {
    const SESSION: &str = "bench";
    const WIDTH: u16 = 120;
    const HEIGHT: u16 = 40;

    /// `program` in a new WIDTH x HEIGHT session, its stderr to `stderr`.
    fn start(scratch: &Path, program: &Command, stderr: &Path) -> Result<Self> {
        let socket = std::env::temp_dir().join(format!("hwbp-bench-tmux-{}", std::process::id()));
        let conf = scratch.join("tmux.conf");
        let pid_file = scratch.join("tmux-program.pid");
        let status_file = scratch.join("tmux-program.status");
        for file in [&socket, &pid_file, &status_file] {
            remove(file);
        }
        // remain-on-exit: the screen stays readable for error messages; no
        // status line: the program gets all HEIGHT rows.
        fs::write(
            &conf,
            "set-option -g remain-on-exit on\n\
             set-option -g status off\n\
             set-option -g default-shell /bin/sh\n",
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let server = Command::new("tmux")
            .env_remove("TMUX")
            .arg("-S")
            .arg(&socket)
            .arg("-f")
            .arg(&conf)
            .arg("-D")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a tmux server (is tmux installed?)")?;
        let tmux = Tmux {
            socket,
            conf,
            pid_file,
            status_file,
            server,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !tmux.socket.exists() {
            ensure!(
                Instant::now() < deadline,
                "the tmux server did not create {} within 5 s",
                tmux.socket.display()
            );
            thread::sleep(Duration::from_millis(2));
        }
        // The inner sh writes its pid and execs the program, so the program
        // has that pid and the outer sh, which waits for it, for parent.
        let inner = format!(
            "echo $$ >{}; exec {} 2>{}",
            shell_word(&tmux.pid_file.to_string_lossy()),
            shell_words(program),
            shell_word(&stderr.to_string_lossy())
        );
        let line = format!(
            "sh -c {}; echo $? >{}",
            shell_word(&inner),
            shell_word(&tmux.status_file.to_string_lossy())
        );
        let mut cmd = tmux.command();
        cmd.args(["new-session", "-d", "-s", Self::SESSION])
            .args(["-x", &Self::WIDTH.to_string()])
            .args(["-y", &Self::HEIGHT.to_string(), &line]);
        crate::exec::output(&mut cmd)?;
        Ok(tmux)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        // $TMUX (a bench run inside tmux) must not redirect the commands.
        cmd.arg("-S").arg(&self.socket).env_remove("TMUX");
        cmd
    }

    /// A number the shell wrote to `file` (a whole line).
    fn read_number(file: &Path) -> Option<i64> {
        let text = fs::read_to_string(file).ok()?;
        text.strip_suffix('\n')?.trim().parse().ok()
    }

    /// The program's exit status, once it has exited.
    fn exit_status(&self) -> Option<i64> {
        Self::read_number(&self.status_file)
    }

    /// The program's pid, once the shell has written it.
    fn pid(&self, limit: Duration) -> Result<u32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(pid) = Self::read_number(&self.pid_file) {
                return u32::try_from(pid)
                    .with_context(|| format!("{} holds {pid}", self.pid_file.display()));
            }
            if let Some(status) = self.exit_status() {
                bail!("the shell in tmux exited ({status}) before starting the program");
            }
            ensure!(
                Instant::now() < deadline,
                "the shell in tmux did not start the program within {} s",
                limit.as_secs()
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until the screen shows `text`; fails if the program exits first.
    fn wait_for_screen(&self, text: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut cmd = self.command();
            cmd.args(["capture-pane", "-p", "-t", Self::SESSION]);
            let screen = crate::exec::output(&mut cmd)?;
            if screen.contains(text) {
                return Ok(());
            }
            if let Some(status) = self.exit_status() {
                bail!("it exited ({status}) before its screen showed `{text}`:\n{screen}");
            }
            if Instant::now() > deadline {
                bail!(
                    "its screen did not show `{text}` within {} s:\n{screen}",
                    limit.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn send_keys(&self, keys: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.args(["send-keys", "-t", Self::SESSION, keys]);
        crate::exec::output(&mut cmd).map(drop)
    }

    /// Waits for the program (`pid`) to exit; its exit status.
    fn wait_for_exit(&self, pid: u32, limit: Duration) -> Result<i64> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "the program in tmux did not exit within {} s: {}",
                    limit.as_secs(),
                    process_state(pid)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.server.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        for file in [&self.socket, &self.conf, &self.pid_file, &self.status_file] {
            remove(file);
        }
    }
}

/// What a process is doing, thread by thread, for an error message.
fn process_state(pid: u32) -> String {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("process {pid} is gone");
    };
    let mut out = format!("process {pid}:");
    for task in tasks.flatten() {
        let path = task.path();
        let read = |name: &str| fs::read_to_string(path.join(name)).unwrap_or_default();
        let state = read("status")
            .lines()
            .find(|line| line.starts_with("State:"))
            .unwrap_or_default()
            .to_owned();
        let _ = write!(
            out,
            "\n  thread {} ({}): {state}, in {}",
            task.file_name().to_string_lossy(),
            read("comm").trim(),
            read("wchan").trim()
        );
    }
    out
}

/// `word` quoted for sh.
fn shell_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A command line quoted for sh.
fn shell_words(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| shell_word(&word.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
}

/// waitpid with the child's resource usage (its CPU time and peak RSS).
fn wait4(pid: u32) -> Result<(i32, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    let mut status = 0;
    // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 writes only into the two locals it is given; `pid`
        // is our own child, which nothing else waits for (its std::process::Child
        // is dropped without wait()).
        let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if got == pid {
            return Ok((status, usage));
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).with_context(|| format!("waiting for process {pid}"));
        }
    }
}

// ---------------------------------------------------------------------------
// What the tools wrote.

struct JsonlSummary {
    hits: u64,
    lost: u64,
    kernel_count: u64,
    stack_errors: u64,
}

/// How many different `ustack` arrays the hit records of a JSONL file hold
/// (compared as written: the same frames give the same text).
fn distinct_ustacks(path: &Path) -> Result<u64> {
    use std::hash::{BuildHasher as _, RandomState};
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let hasher = RandomState::new();
    let mut seen = std::collections::HashSet::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader
            .read_line(&mut line)
            .with_context(|| format!("reading {}", path.display()))?
            == 0
        {
            break;
        }
        let key = "\"ustack\":";
        let Some(at) = line.find(key) else { continue };
        let rest = &line[at + key.len()..];
        // Parse the array alone, up to its end, to find where it ends.
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        match values.next() {
            Some(Ok(serde_json::Value::Array(_))) => {}
            _ => bail!(
                "a ustack in {} is not an array: {line:.200}",
                path.display()
            ),
        }
        seen.insert(hasher.hash_one(&rest[..values.byte_offset()]));
    }
    Ok(seen.len() as u64)
}

/// The `summary` record, the last line of hwbp-trace's JSONL file.
fn jsonl_summary(path: &Path) -> Result<JsonlSummary> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.seek(SeekFrom::Start(len.saturating_sub(1 << 20)))
        .with_context(|| format!("seeking in {}", path.display()))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)
        .with_context(|| format!("reading {}", path.display()))?;
    let tail = String::from_utf8_lossy(&tail);
    let last = tail
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .ok_or_else(|| anyhow!("{} is empty", path.display()))?;
    let summary: serde_json::Value = serde_json::from_str(last)
        .with_context(|| format!("parsing the last line of {}", path.display()))?;
    ensure!(
        summary["type"] == "summary",
        "the last line of {} is not the summary record: {last:.200}",
        path.display()
    );
    let targets = summary["targets"].as_array().cloned().unwrap_or_default();
    let sum = |field: &str| {
        targets
            .iter()
            .map(|t| t[field].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    Ok(JsonlSummary {
        hits: sum("hits"),
        lost: summary["lost"].as_u64().unwrap_or(0),
        kernel_count: sum("kernel_count"),
        stack_errors: sum("kstack_errors") + sum("ustack_errors"),
    })
}

/// Start-up split at the first system call of each phase, per thread (one
/// run under strace, which slows system calls: shares, not absolute
/// times). hwbp-trace loads the BPF program and parses BTF on threads of
/// their own while the main thread resolves the targets, so phases overlap.
struct Phases {
    command: String,
    /// In order of start: what, on which thread (1 = main), from and to
    /// (seconds after execve; `to` clipped at the Tracing line).
    segments: Vec<Segment>,
    /// execve to the Tracing line.
    total: f64,
}

struct Segment {
    what: &'static str,
    thread: usize,
    from: f64,
    to: f64,
    /// The thread was still at it when the Tracing line was written.
    after_tracing: bool,
}

const AYA_BTF: &str = "vmlinux BTF: aya's loader reads and parses it (CO-RE)";
const HWBP_BTF: &str = "vmlinux BTF: hwbp's types for arguments and values";

impl Phases {
    fn parse(log: &Path, command: String) -> Result<Self> {
        let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
        // Per thread, in order of appearance: its id, its marks, and when it
        // exited.
        type Marks = Vec<(&'static str, f64)>;
        let mut threads: Vec<(String, Marks, Option<f64>)> = Vec::new();
        let mut end = None;
        for line in text.lines() {
            // `PID TIMESTAMP CALL`; strace pads the pid to 5 columns, so
            // a pid below 10000 is followed by more than one space.
            let Some((tid, rest)) = line.trim_start().split_once(' ') else {
                continue;
            };
            let Some((ts, call)) = rest.trim_start().split_once(' ') else {
                continue;
            };
            let Ok(ts) = ts.parse::<f64>() else { continue };
            let call = call.trim_start();
            let index = match threads.iter().position(|(t, ..)| t == tid) {
                Some(i) => i,
                None => {
                    threads.push((tid.to_owned(), Vec::new(), None));
                    threads.len() - 1
                }
            };
            if call.starts_with("write(2, \"Tracing") {
                end = Some(ts);
                break;
            }
            if call.starts_with("exit(") || call.starts_with("+++ exited") {
                threads[index].2 = Some(ts);
                continue;
            }
            let mark = if call.starts_with("execve(") {
                Some("process start: exec, loader, arguments, runtime")
            } else if call.starts_with("openat(") && call.contains("\"/proc/kallsyms\"") {
                Some("kallsyms: read and index /proc/kallsyms")
            } else if call.starts_with("openat(") && is_proc_maps(call) {
                Some("user symbols: /proc/PID/maps and the ELF symbol table")
            } else if call.starts_with("openat(") && call.contains("\"/sys/kernel/btf/vmlinux\"") {
                // Named below, by whether the thread goes on to load BPF.
                Some(HWBP_BTF)
            } else if call.starts_with("bpf(") {
                Some("BPF: feature probes, maps, program load and verification")
            } else if call.starts_with("perf_event_open(") {
                Some("arming: perf_event_open, SET_BPF, ENABLE")
            } else {
                None
            };
            let marks = &mut threads[index].1;
            if let Some(mark) = mark
                && !marks.iter().any(|(m, _)| *m == mark)
            {
                marks.push((mark, ts));
            }
        }
        let end = end.ok_or_else(|| anyhow!("no Tracing line in {}", log.display()))?;
        let first = threads
            .first()
            .and_then(|(_, marks, _)| marks.first())
            .map(|(_, t)| *t)
            .ok_or_else(|| anyhow!("no execve in {}", log.display()))?;
        let mut segments = Vec::new();
        for (thread, (_, marks, exited)) in threads.iter().enumerate() {
            let loads_bpf = marks.iter().any(|(m, _)| m.starts_with("BPF"));
            let stop = exited.unwrap_or(f64::INFINITY);
            for (i, (mark, start)) in marks.iter().enumerate() {
                let what = if *mark == HWBP_BTF && loads_bpf {
                    AYA_BTF
                } else {
                    mark
                };
                let to = marks.get(i + 1).map_or(stop, |(_, t)| *t);
                segments.push(Segment {
                    what,
                    thread: thread + 1,
                    from: start - first,
                    to: to.min(end) - first,
                    after_tracing: to > end,
                });
            }
        }
        segments.sort_by(|a, b| a.from.total_cmp(&b.from));
        Ok(Phases {
            command,
            segments,
            total: end - first,
        })
    }
}

/// `openat(..., "/proc/1234/maps", ...)` (not /proc/self/maps, which the
/// Rust runtime reads for its stack guard).
fn is_proc_maps(call: &str) -> bool {
    call.split('"').nth(1).is_some_and(|path| {
        path.strip_prefix("/proc/")
            .and_then(|rest| rest.strip_suffix("/maps"))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    })
}

// ---------------------------------------------------------------------------
// Results and the report.

struct PerHit {
    workload: &'static str,
    variant: Variant,
    /// Seconds from go to the fixture's exit, at the small and large size.
    program: [Vec<f64>; 2],
    /// Seconds from go to the tool's exit (the fixture's for the workload alone).
    done: [Vec<f64>; 2],
    counted_large: Vec<Option<u64>>,
    command: String,
}

/// A tool attached to a fixture and armed.
struct Attached {
    cmd: Command,
    child: Child,
    /// Its stderr, read to the end on a thread.
    stderr: thread::JoinHandle<String>,
}

impl Attached {
    /// Waits (at most 60 s) for the tool to end, as it does once its
    /// process exits; its stderr, or an error if it failed.
    fn finish(mut self) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().context("waiting for the tool")? {
                break exit;
            }
            if Instant::now() > deadline {
                let cmd = display(&self.cmd);
                self.kill();
                bail!("`{cmd}` did not end within 60 s of its process");
            }
            thread::sleep(Duration::from_millis(1));
        };
        let stderr = self
            .stderr
            .join()
            .map_err(|_| anyhow!("the stderr reader panicked"))?;
        ensure!(
            exit.success(),
            "`{}` failed ({exit}):\n{}",
            display(&self.cmd),
            stderr.trim()
        );
        Ok(stderr)
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One round of a paired run: nanoseconds of one batch of hits on the
/// target (under the tool measured), on its twin (under perf stat) and on
/// the unwatched one.
#[derive(Clone, Copy)]
struct Round {
    tool: f64,
    floor: f64,
    plain: f64,
}

impl Round {
    /// The tool's cost per hit over the floor's, each beyond the
    /// workload's own.
    fn ratio(self) -> f64 {
        (self.tool - self.plain) / (self.floor - self.plain)
    }
}

/// The paired runs of one tool on one workload.
struct Paired {
    workload: &'static str,
    variant: Variant,
    /// Each run's rounds.
    runs: Vec<Vec<Round>>,
    /// The runs where a tool counted more hits than were made.
    miscounts: Vec<String>,
}

impl Paired {
    /// The median of each run's round ratios.
    fn run_ratios(&self) -> Vec<f64> {
        self.runs
            .iter()
            .map(|rounds| median(&rounds.iter().map(|r| r.ratio()).collect::<Vec<_>>()))
            .collect()
    }

    /// The tool's cost per hit over the floor's: the median of
    /// [`Paired::run_ratios`].
    fn ratio(&self) -> f64 {
        median(&self.run_ratios())
    }

    /// Every round's ratio.
    fn round_ratios(&self) -> Vec<f64> {
        self.runs.iter().flatten().map(|r| r.ratio()).collect()
    }
}

struct AttachedRun {
    program: f64,
    done: f64,
    counted: Option<u64>,
    /// The BPF program's (run_time_ns, run_cnt), when asked for.
    bpf: Option<(u64, u64)>,
}

/// BPF time per hit of one hwbp-trace variant on one workload.
struct BpfTime {
    workload: &'static str,
    variant: Variant,
    /// Nanoseconds per program run, one per run of the measurement.
    ns_per_run: Vec<f64>,
    /// Program runs counted in each run (the hits the program saw).
    runs_counted: Vec<u64>,
}

struct Startup {
    name: &'static str,
    command: String,
    times: Vec<f64>,
    phases: Option<Phases>,
}

struct Idle {
    name: &'static str,
    command: String,
    rss_kib: Option<u64>,
}

struct Measured {
    command: String,
    expected: u64,
    summary: JsonlSummary,
    wall: Duration,
    cpu: Duration,
    max_rss_kib: u64,
    jsonl_bytes: u64,
    /// Different user stacks in the JSONL file, when counted.
    ustacks: Option<u64>,
}

/// One run of the stack-growth measurement.
struct StackRun {
    /// fx_user's arguments.
    fixture: String,
    /// Distinct stacks the fixture makes.
    distinct: u64,
    measured: Measured,
}

struct Results {
    runs: u64,
    small: u64,
    large: u64,
    paired: Vec<Paired>,
    /// Hits per batch of the paired runs.
    batch: u64,
    per_hit: Vec<PerHit>,
    bpf_time: Vec<BpfTime>,
    startup: Vec<Startup>,
    sustained: Vec<Measured>,
    /// The sustained rate with the dashboard (empty without tmux).
    dashboard: Vec<Measured>,
    /// Headless, the JSONL file on tmpfs (/dev/shm): a diagnostic.
    sustained_tmpfs: Vec<Measured>,
    growth: Vec<Measured>,
    stacks: Vec<StackRun>,
    stack_hits: u64,
    idle: Vec<Idle>,
    /// The kernel-target section and its command (None with --no-vm).
    vm: Option<(String, String)>,
    elapsed: Duration,
    /// Debug exceptions the host lost in all the runs (fx_user's SIGTRAPs).
    lost_exceptions: u64,
}

struct Machine {
    cpus: usize,
    kernel: String,
    cpu_model: String,
    memory: String,
    load: String,
    commit: String,
    date: String,
}

impl Machine {
    fn probe() -> Self {
        let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let commit = Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(workspace_root())
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Machine {
            cpus: thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            cpu_model: field(&cpuinfo, "model name"),
            memory: field(&read("/proc/meminfo"), "MemTotal"),
            load: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            commit,
            date: utc_date(now),
        }
    }

    fn one_line(&self) -> String {
        format!(
            "{} CPUs ({}), kernel {}, {} RAM, load {}",
            self.cpus, self.cpu_model, self.kernel, self.memory, self.load
        )
    }
}

/// YYYY-MM-DD HH:MM UTC from Unix seconds (civil-from-days, H. Hinnant).
fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The lowest and highest of `values`.
fn extremes(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| {
            (low.min(v), high.max(v))
        })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Seconds per hit: the slope between the medians at the two sizes.
fn slope(times: &[Vec<f64>; 2], span: u64) -> f64 {
    (median(&times[1]) - median(&times[0])) / span as f64
}

/// What one hit costs the traced program beyond the workload's own work,
/// in seconds, under one tool.
fn beyond_workload(results: &Results, workload: &str, variant: Variant) -> f64 {
    let span = results.large - results.small;
    let program = |v: Variant| {
        results
            .per_hit
            .iter()
            .find(|r| r.workload == workload && r.variant == v)
            .map_or(f64::NAN, |r| slope(&r.program, span))
    };
    program(variant) - program(Variant::Alone)
}

/// Round by round, what one hit costs the program beyond the workload under
/// `variant`, less the same under `minus` (None: nothing), over the same
/// under `over`, less the same under `minus`: how far the ratio the goals
/// judge (on medians) moves between rounds. Each round ran every variant at
/// both sizes, one right after another.
fn round_ratios(
    results: &Results,
    workload: &str,
    variant: Variant,
    over: Variant,
    minus: Option<Variant>,
) -> Vec<f64> {
    let span = (results.large - results.small) as f64;
    ratios_by_round(&results.per_hit, span, workload, [variant, over], minus)
}

/// [`round_ratios`] on the rows themselves; `span` is the hits between the
/// two sizes.
fn ratios_by_round(
    rows: &[PerHit],
    span: f64,
    workload: &str,
    [variant, over]: [Variant; 2],
    minus: Option<Variant>,
) -> Vec<f64> {
    let row = |v: Variant| {
        rows.iter()
            .find(|r| r.workload == workload && r.variant == v)
    };
    let (Some(top), Some(bottom), Some(alone)) = (row(variant), row(over), row(Variant::Alone))
    else {
        return Vec::new();
    };
    let offset = minus.and_then(row);
    let rounds = [top, bottom, alone]
        .iter()
        .chain(offset.as_ref())
        .map(|r| r.program[0].len().min(r.program[1].len()))
        .min()
        .unwrap_or(0);
    let per_hit = |r: &PerHit, i: usize| (r.program[1][i] - r.program[0][i]) / span;
    (0..rounds)
        .map(|i| {
            let base = per_hit(alone, i);
            let offset = offset.map_or(0.0, |r| per_hit(r, i) - base);
            (per_hit(top, i) - base - offset) / (per_hit(bottom, i) - base - offset)
        })
        .collect()
}

/// "rounds 1.08x to 1.22x": the lowest and highest of [`round_ratios`].
fn round_range(ratios: &[f64]) -> String {
    let (low, high) = extremes(ratios);
    if ratios.is_empty() {
        String::new()
    } else {
        format!("; rounds {low:.2}x to {high:.2}x")
    }
}

/// "Clearly cheaper than perf record -g": hwbp-trace adds to the floor (the
/// debug exception, which both tools pay) at most this fraction of what
/// perf adds. The tools' own costs are what differ; on this guest the
/// floor is mostly the VM exit and is 4 to 8 times either tool's own cost,
/// so a ratio of whole per-hit costs would hide the difference.
const CHEAPER: f64 = 0.75;

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

/// The goals of issue 7 against this run's numbers.
fn write_goals(out: &mut String, bench: &Bench, results: &Results) {
    let _ = writeln!(out, "## Against the goals (issue 7)\n");
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
        let within = |variant| {
            let ratio = paired(variant);
            (
                format!("{ratio:.3}x paired{}; {}", runs(variant), separate(variant)),
                verdict(ratio <= 1.1),
            )
        };
        let (cell, met) = within(Variant::HwbpTrace);
        let _ = writeln!(
            out,
            "| per hit within 10% of perf stat, {} | {cell} | {met} |",
            workload.name
        );
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
    let _ = writeln!(out);
}

/// The paired runs' table.
fn write_paired(out: &mut String, bench: &Bench, paired: &[Paired], batch: u64) {
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

fn write_report(out: &mut String, machine: &Machine, bench: &Bench, results: &Results) {
    let Results {
        runs,
        small,
        large,
        paired,
        batch,
        per_hit,
        bpf_time: _,
        startup,
        sustained,
        dashboard,
        sustained_tmpfs,
        growth,
        stacks,
        stack_hits,
        idle,
        vm,
        elapsed,
        lost_exceptions,
    } = results;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `cargo xtask bench` (xtask/src/bench.rs) on {}, commit {}; {:.0} s of measuring. \
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

    write_goals(out, bench, results);

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

    // 2. Start-up.
    let _ = writeln!(out, "## 2. Start-up: exec to the `Tracing` line\n");
    let _ = writeln!(out, "| target | median | min | max |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for s in startup {
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
    for s in startup {
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
         different `ustack` arrays in that file; CPU and peak RSS from wait4.\n"
    );
    let _ = writeln!(
        out,
        "| fixture | distinct stacks | in the trace | hits recorded / made | lost | stack errors | JSONL size | hwbp-trace CPU | peak RSS |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in stacks {
        let m = &run.measured;
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} / {} | {} | {} | {:.0} MiB | {:.2} s | {} |",
            run.fixture,
            run.distinct,
            m.ustacks.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            m.summary.hits,
            m.expected,
            m.summary.lost,
            m.summary.stack_errors,
            m.jsonl_bytes as f64 / (1 << 20) as f64,
            m.cpu.as_secs_f64(),
            mib(m.max_rss_kib)
        );
    }
    let _ = writeln!(out);

    if let Some((section, _)) = vm {
        out.push_str(section);
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("xtask-bench-{}-{name}", std::process::id()));
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
            let phases = Phases::parse(&log.0, String::new())
                .unwrap_or_else(|e| panic!("pid `{pid}`: {e:#}"));
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
}

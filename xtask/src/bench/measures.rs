//! Measurements 2 to 4 and the memory at rest: start-up and where its
//! time goes, the sustained rate headless and with the dashboard, memory
//! against trace length and distinct stacks.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, ensure};

use hwbp_tests::harness::{
    process::{remove, wait_for_exec},
    tmux::Tmux,
    trace::{distinct_ustacks, jsonl_summary},
};

use crate::{exec::display, integration::count_lines};

use super::{
    process::{
        clone_command, cpu_time, finish, finish_sampling, finish_with_fixture, no_aslr, status_kib,
        touch,
    },
    results::{Idle, Measured, Records, StackRun, Startup},
    strace::Phases,
    workload::Bench,
};

/// hwbp-trace's options for kernel and user stacks.
const BOTH: &[&str] = &["--stack", "both"];

/// The least room the distinct-stack runs give the aggregate maps: the
/// defaults of `--max-keys` and `--max-stacks` would do for fewer stacks.
const MAP_ROOM: u64 = 16_384;

impl Bench {
    pub(super) fn startup(&self, runs: u64) -> Result<Vec<Startup>> {
        println!("bench: start-up");
        let kernel = self.kernel_target();
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
                refused: self.kernel_refused.clone(),
            },
            Startup {
                name: "user target (hwbp_fx_target -- fx_user)",
                command: display(&user),
                times: Vec::new(),
                phases: None,
                refused: None,
            },
        ];
        for _ in 0..runs {
            for (i, cmd) in [&kernel, &user].into_iter().enumerate() {
                if results[i].refused.is_some() {
                    continue;
                }
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
            if self.kernel_refused.is_none() {
                results[0].phases = Some(
                    self.phases_kernel()
                        .context("start-up phases, kernel target")?,
                );
            }
            results[1].phases = Some(self.phases_user().context("start-up phases, user target")?);
        }
        Ok(results)
    }

    pub(super) fn strace(&self, log: &Path) -> Command {
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

    pub(super) fn phases_kernel(&self) -> Result<Phases> {
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
    pub(super) fn phases_user(&self) -> Result<Phases> {
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
    pub(super) fn faults(&self) -> PathBuf {
        self.scratch.join("fx-faults")
    }

    /// The debug exceptions lost since the current run's fixture started.
    pub(super) fn faults_noted(&self) -> Result<u64> {
        Ok(self
            .lost_exceptions()?
            .saturating_sub(self.noted_before.get()))
    }

    /// The debug exceptions lost in every run so far.
    pub(super) fn lost_exceptions(&self) -> Result<u64> {
        Ok(count_lines(&self.faults())? as u64)
    }

    /// fx_user under setarch -R, waiting for `go`; returned once setarch
    /// has exec'd it (before that, -p would find setarch's symbols).
    pub(super) fn fixture_waiting(&self, go: &Path, args: &[&str]) -> Result<Child> {
        self.noted_before.set(self.lost_exceptions()?);
        let mut child = no_aslr(&self.fx_user)
            .arg("--wait")
            .arg(go)
            .args(args)
            .env("HWBP_FX_GO", go)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.fx_user.display()))?;
        wait_for_exec(&mut child, &self.fx_user, Duration::from_secs(5))
            .context("setarch -R fx_user")?;
        Ok(child)
    }

    /// hwbp-trace -p on a fixture that starts once the Tracing line is out:
    /// hwbp-trace has no child then, so wait4's rusage is its own.
    /// `options` are hwbp-trace's (`--stack both`, `--records none`); with
    /// `count_ustacks`, the different user stacks in the JSONL file are
    /// counted (its hit or aggregate lines').
    pub(super) fn traced_by_pid(
        &self,
        name: &str,
        args: &[&str],
        expected: u64,
        options: &[&str],
        count_ustacks: bool,
    ) -> Result<Measured> {
        self.traced_by_pid_into(&self.jsonl(), name, args, expected, options, count_ustacks)
    }

    /// [`Bench::traced_by_pid`], with the JSONL file at `jsonl`.
    pub(super) fn traced_by_pid_into(
        &self,
        jsonl: &Path,
        name: &str,
        args: &[&str],
        expected: u64,
        options: &[&str],
        count_ustacks: bool,
    ) -> Result<Measured> {
        let go = self.scratch.join(format!("go-{name}"));
        remove(&go);
        let fixture = self.fixture_waiting(&go, args)?;
        let pid = fixture.id().to_string();
        let mut cmd = Command::new(&self.hwbp_trace);
        cmd.args(["--no-tui", "-q"])
            .args(options)
            .arg("-o")
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
    pub(super) fn traced_with_dashboard(&self, args: &[&str], expected: u64) -> Result<Measured> {
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

    pub(super) fn dashboard_session(
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
    pub(super) fn idle_memory(&self) -> Result<Vec<Idle>> {
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
        let rss_kib = match self.kernel_refused {
            // Shown as "-", the reason with the start-up's.
            Some(_) => None,
            None => {
                let run = finish_sampling(&mut cmd, None, true)?;
                run.check(&cmd)?;
                run.idle_rss_kib
            }
        };
        results.push(Idle {
            name: "kernel target, kernel stacks (kallsyms, BTF for values)",
            command: display(&cmd),
            rss_kib,
        });
        Ok(results)
    }

    /// Three runs headless and three with the dashboard (none without
    /// tmux), alternating.
    pub(super) fn sustained(
        &self,
        calls: u64,
    ) -> Result<(Vec<Measured>, Vec<Measured>, Vec<Measured>)> {
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
            headless.push(self.traced_by_pid("sustained", &args, cpus * calls, BOTH, false)?);
            if Path::new("/dev/shm").is_dir() {
                tmpfs.push(self.traced_by_pid_into(
                    &in_memory,
                    "sustained-tmpfs",
                    &args,
                    cpus * calls,
                    BOTH,
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

    pub(super) fn growth(&self, lengths: &[u64]) -> Result<Vec<Measured>> {
        let mut results = Vec::new();
        for &n in lengths {
            println!("bench: growth, {n} hits");
            results.push(self.traced_by_pid(
                "growth",
                &["calls", &n.to_string()],
                n,
                BOTH,
                false,
            )?);
        }
        Ok(results)
    }

    /// `hits` calls through 1, 100, ... distinct call paths, user stacks
    /// only; first `fx_user calls` (one stack, shallower) for reference.
    /// Then the most distinct stacks again in the other record modes, with
    /// the kernel's aggregate maps sized to hold every stack: what reading
    /// that many aggregates costs.
    pub(super) fn stacks(&self, distinct: &[u64], hits: u64) -> Result<Vec<StackRun>> {
        let n = hits.to_string();
        let mut runs = vec![(1, vec!["calls".to_owned(), n.clone()], Records::All)];
        runs.extend(distinct.iter().map(|d| {
            (
                *d,
                vec!["stacks".to_owned(), n.clone(), d.to_string()],
                Records::All,
            )
        }));
        if let Some(&most) = distinct.iter().max() {
            for records in [Records::Sample, Records::None] {
                let args = vec!["stacks".to_owned(), n.clone(), most.to_string()];
                runs.push((most, args, records));
            }
        }
        let mut results = Vec::new();
        for (distinct, args, records) in runs {
            let fixture = format!("fx_user {}", args.join(" "));
            println!("bench: growth, {fixture}, --records {}", records.arg());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // Room for every stack, and a key per stack (one pid, one ip).
            let room = (distinct + 1).next_power_of_two().max(MAP_ROOM).to_string();
            let mut options = vec!["--stack", "user", "--records", records.arg()];
            if records != Records::All {
                options.extend(["--max-keys", &room, "--max-stacks", &room]);
            }
            let measured = self.traced_by_pid("stacks", &args, hits, &options, true)?;
            results.push(StackRun {
                fixture,
                distinct,
                records,
                measured,
            });
        }
        Ok(results)
    }
}

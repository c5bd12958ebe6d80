//! Running the tools and fixtures for a measurement: waiting for a
//! tracer's `Tracing` line or perf's acknowledgement, then timing it to its
//! end; the kernel's accounting of the BPF program; a process's memory and
//! CPU time from /proc.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use hwbp_tests::harness::process::{timeval, wait4};

use crate::exec::display;

/// Reads a child's stderr on a thread: all of it at the end, and a signal
/// when the `Tracing` line comes.
pub(super) fn read_stderr(
    child: &mut Child,
) -> Result<(thread::JoinHandle<String>, mpsc::Receiver<()>)> {
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
pub(super) fn perf_enable(ctl: &Path, ack: &Path, limit: Duration) -> Result<()> {
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
/// `setarch -R PROGRAM`: the program (and what it starts) without ASLR.
pub(super) fn no_aslr(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setarch");
    cmd.arg("-R").arg(program);
    cmd
}

pub(super) fn clone_command(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    copy
}

pub(super) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

pub(super) fn touch(path: &Path) -> Result<()> {
    fs::write(path, b"").with_context(|| format!("creating {}", path.display()))
}

/// A finished run: wall time, stderr, and its rusage from wait4.
pub(super) struct Finished {
    pub(super) wall: Duration,
    /// From spawn to the `Tracing` line on stderr, if one came.
    pub(super) tracing_after: Option<Duration>,
    /// VmRSS once armed, before any hit (when asked for).
    pub(super) idle_rss_kib: Option<u64>,
    pub(super) exit_code: Option<i32>,
    pub(super) stderr: String,
    /// User + system CPU time of the process itself (and of children it
    /// reaped, none for hwbp-trace -p).
    pub(super) cpu: Duration,
    pub(super) max_rss_kib: u64,
}

impl Finished {
    pub(super) fn check(&self, cmd: &Command) -> Result<()> {
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
pub(super) fn finish(cmd: &mut Command, go: Option<&Path>) -> Result<Finished> {
    finish_sampling(cmd, go, false)
}

/// [`finish`]; with `sample_idle`, VmRSS is read 300 ms after the Tracing
/// line, before `go` is created (armed, nothing hit yet).
pub(super) fn finish_sampling(
    cmd: &mut Command,
    go: Option<&Path>,
    sample_idle: bool,
) -> Result<Finished> {
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
pub(super) fn finish_with_fixture(
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
pub(super) struct BpfStatsOn {
    pub(super) before: String,
}

pub(super) const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStatsOn {
    pub(super) fn enable() -> Result<Self> {
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
pub(super) struct BpfSampler {
    pub(super) stop: mpsc::Sender<()>,
    pub(super) thread: thread::JoinHandle<Option<(u64, u64)>>,
}

impl BpfSampler {
    pub(super) fn start(pid: u32) -> Self {
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
    pub(super) fn stop(self) -> Option<(u64, u64)> {
        let _ = self.stop.send(());
        self.thread.join().ok().flatten()
    }
}

/// (run_time_ns, run_cnt) of the BPF program that `pid` holds open, from
/// /proc/PID/fdinfo (the one that ran most, should there be several).
pub(super) fn bpf_prog_stats(pid: u32) -> Option<(u64, u64)> {
    fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .ok()?
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|text| parse_bpf_prog_stats(&text))
        .max_by_key(|&(_, count)| count)
}

/// run_time_ns and run_cnt of one fdinfo file, if it is a BPF program's.
pub(super) fn parse_bpf_prog_stats(fdinfo: &str) -> Option<(u64, u64)> {
    let field = |key: &str| {
        fdinfo
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    fdinfo.contains("prog_type:").then_some(())?;
    Some((field("run_time_ns:")?, field("run_cnt:")?))
}

pub(super) fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A kB field of /proc/PID/status (`VmRSS:`, `VmHWM:`).
pub(super) fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of a live process, all its threads, from
/// /proc/PID/stat (`pid (comm) state ...`: utime and stime are fields 14
/// and 15; the comm may hold spaces and parentheses, so count after the
/// last `)`).
pub(super) fn cpu_time(pid: u32) -> Result<Duration> {
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

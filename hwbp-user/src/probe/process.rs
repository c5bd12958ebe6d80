//! The traced process: starting `-- CMD` stopped before any of its code or
//! its libraries' constructors ran (its output captured while the dashboard
//! has the terminal), and watching a process (ours or `-p`) until it exits.

use std::{
    collections::VecDeque,
    env,
    ffi::OsString,
    fs,
    io::{self, Read as _},
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::{fs::PermissionsExt as _, process::CommandExt as _},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::io::unix::AsyncFd;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("command not found: `{0}` (not a file, and not in PATH)")]
    NotFound(String),
    #[error("`{}` is not executable: check its permissions (chmod +x)", .0.display())]
    NotExecutable(PathBuf),
    #[error("cannot start `{cmd}`: {source}")]
    Spawn { cmd: String, source: io::Error },
    #[error("while starting `{cmd}` stopped before its first instruction: {reason}")]
    Trace { cmd: String, reason: String },
    #[error("no process {0}: check the PID (ps -e)")]
    NoSuchProcess(i32),
    #[error(
        "`-p {0}` is not a process ID: give the PID of a running process (pgrep NAME finds it)"
    )]
    NotAPid(i32),
    #[error(
        "process {0} is hwbp-trace itself: a tracer does not trace itself (its own hits are always left \
         out); give the PID of another process"
    )]
    Itself(i32),
    #[error(
        "process {pid} ({comm}) is a kernel thread: it has no user space to trace. Kernel targets are \
         traced on every CPU: drop -p, and add --comm {comm} to keep only this thread's hits"
    )]
    KernelThread { pid: i32, comm: String },
    #[error(
        "process {pid} ({comm}) is a zombie: it has exited and only waits for its parent to collect its \
         status, so nothing of it is left to trace"
    )]
    Zombie { pid: i32, comm: String },
    #[error(
        "process {pid} exited while hwbp-trace was attaching to it ({cause}); nothing was armed: \
         start it again, or trace it from its start with `-- CMD`"
    )]
    ExitedWhileAttaching { pid: i32, cause: String },
    #[error(
        "{tid} is a thread of process {pid}, not a process: trace the process and keep that \
         thread's hits with `-p {pid} --tid {tid}`"
    )]
    Thread { tid: i32, pid: i32 },
    #[error("cannot watch process {pid}: {source}")]
    Watch { pid: i32, source: io::Error },
}

/// Finds `cmd` the way execvp would (any bytes: a path need not be UTF-8).
pub fn find_command(cmd: &std::ffi::OsStr) -> Result<PathBuf, ProcessError> {
    use std::os::unix::ffi::OsStrExt as _;
    let check = |path: &Path| -> Option<Result<PathBuf, ProcessError>> {
        let meta = fs::metadata(path).ok()?;
        if !meta.is_file() {
            return None;
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Some(Err(ProcessError::NotExecutable(path.to_owned())));
        }
        Some(Ok(path.to_owned()))
    };
    let not_found = || ProcessError::NotFound(cmd.to_string_lossy().into_owned());
    if cmd.as_bytes().contains(&b'/') {
        return check(Path::new(cmd)).unwrap_or_else(|| Err(not_found()));
    }
    let path =
        env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    env::split_paths(&path)
        .find_map(|dir| check(&dir.join(cmd)))
        .unwrap_or_else(|| Err(not_found()))
}

/// A child started by hwbp, stopped (ptrace) before the first instruction
/// of its own code or of its libraries' constructors (see
/// [`Launched::run_to_entry`]), until [`Launched::resume`].
pub struct Launched {
    pub pid: i32,
    child: Child,
    cmd: String,
    stopped: bool,
}

impl Launched {
    /// Starts `argv`. With `output` (the dashboard has the terminal) its
    /// stdin is /dev/null and its stdout and stderr go into one pipe, read
    /// into `output`; without, it shares hwbp-trace's stdin, stdout and
    /// stderr.
    pub fn start(
        argv: &[OsString],
        output: Option<&Arc<CommandOutput>>,
    ) -> Result<Self, ProcessError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(ProcessError::NotFound(String::new()));
        };
        let cmd = program.to_string_lossy().into_owned();
        let path = find_command(program)?;
        let mut command = Command::new(&path);
        command.arg0(program).args(args);
        if let Some(output) = output {
            let spawn_error = |source| ProcessError::Spawn {
                cmd: cmd.clone(),
                source,
            };
            // One pipe for both: the lines keep the order they were written
            // in. The parent's write ends live in `command` and close with
            // it, at the end of this function, so that the reader sees the
            // end of file once the command (and whatever inherited its
            // output) is gone.
            let (reader, writer) = io::pipe().map_err(spawn_error)?;
            let for_stderr = writer.try_clone().map_err(spawn_error)?;
            command
                .stdin(Stdio::null())
                .stdout(writer)
                .stderr(for_stderr);
            output.clone().read(reader).map_err(spawn_error)?;
        }
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls ptrace(2), which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| ProcessError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
        let pid = child.id() as i32;
        let mut launched = Self {
            pid,
            child,
            cmd,
            stopped: true,
        };
        if let Err(reason) = launched.run_to_entry() {
            let _ = launched.child.kill();
            let _ = launched.child.wait();
            return Err(ProcessError::Trace {
                cmd: launched.cmd.clone(),
                reason,
            });
        }
        Ok(launched)
    }

    /// After exec the child stops with SIGTRAP; the dynamic loader has not
    /// run yet. Run it to the point where every shared library is mapped and
    /// relocated but no code of the program or its libraries has run: for
    /// a dynamically linked program, where the loader tells debuggers that
    /// its link map is complete (below), before it runs the libraries'
    /// constructors; for a static one, its ELF entry point.
    fn run_to_entry(&mut self) -> Result<(), String> {
        let pid = self.pid;
        wait_stop(pid, libc::SIGTRAP)?;
        let auxv = Auxv::read(pid).map_err(|e| format!("reading /proc/{pid}/auxv: {e}"))?;
        if let Some(loader) = auxv
            .base
            .filter(|&b| b != 0)
            .and_then(|b| DebugState::find(pid, b))
        {
            match self.run_to_link_map_complete(&loader) {
                Ok(()) => return Ok(()),
                // The loader is not glibc's, or not as expected: the entry
                // point is always right, only later (after constructors).
                Err(e) => log::info!(
                    "stopping {pid} in its dynamic loader: {e}; stopping at its entry point"
                ),
            }
        }
        let entry = auxv
            .entry
            .ok_or_else(|| format!("/proc/{pid}/auxv has no AT_ENTRY"))?;
        self.run_to(entry)
    }

    /// glibc's loader calls `_dl_debug_state` (the `r_brk` of the r_debug
    /// protocol that gdb follows) with `_r_debug.r_state` RT_ADD before it
    /// maps the needed libraries and RT_CONSISTENT once they are mapped and
    /// relocated, before `_dl_init` runs their constructors. Stop at the
    /// first call that says RT_CONSISTENT.
    fn run_to_link_map_complete(&mut self, loader: &DebugState) -> Result<(), String> {
        const RT_CONSISTENT: i64 = 0;
        // Two calls at start-up (RT_ADD, RT_CONSISTENT); more with audit
        // modules or LD_PRELOAD are still few.
        for _ in 0..16 {
            self.run_to(loader.brk)?;
            let state = peek(self.pid, loader.r_debug + R_STATE_OFFSET)?;
            if i64::from(state as i32) == RT_CONSISTENT {
                return Ok(());
            }
            // SAFETY: step our stopped tracee over the original instruction.
            if unsafe { libc::ptrace(libc::PTRACE_SINGLESTEP, self.pid, 0, 0) } < 0 {
                return Err(format!("PTRACE_SINGLESTEP: {}", io::Error::last_os_error()));
            }
            wait_stop(self.pid, libc::SIGTRAP)?;
        }
        Err("the loader never reported a complete link map".into())
    }

    /// Continues our stopped tracee until it executes `addr` (an int3
    /// there, removed again; see trap.rs), and leaves it stopped with its
    /// program counter at `addr`.
    fn run_to(&mut self, addr: u64) -> Result<(), String> {
        let pid = self.pid;
        let original = peek(pid, addr)?;
        poke_text(pid, addr, super::trap::with_trap(original))?;
        // SAFETY: resume the stopped tracee without a signal.
        if unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, 0) } < 0 {
            return Err(format!("PTRACE_CONT: {}", io::Error::last_os_error()));
        }
        wait_stop(pid, libc::SIGTRAP)?;
        // The original word back.
        poke_text(pid, addr, original)?;
        super::trap::rewind_to(pid, addr)
    }

    /// Lets the child run (detaches ptrace).
    pub fn resume(&mut self) -> Result<(), ProcessError> {
        if !self.stopped {
            return Ok(());
        }
        // SAFETY: detach from our stopped tracee without a signal.
        if unsafe { libc::ptrace(libc::PTRACE_DETACH, self.pid, 0, 0) } < 0 {
            return Err(ProcessError::Trace {
                cmd: self.cmd.clone(),
                reason: format!("PTRACE_DETACH: {}", io::Error::last_os_error()),
            });
        }
        self.stopped = false;
        Ok(())
    }

    /// Reaps the child once it has exited; `None` if it still runs.
    pub fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    /// Ends the child (used when arming failed: it never ran its own code).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes one word of our stopped tracee's text (PTRACE_POKETEXT).
fn poke_text(pid: i32, addr: u64, word: libc::c_long) -> Result<(), String> {
    // SAFETY: ptrace on our own stopped tracee; POKETEXT takes the address
    // and the word by value.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_POKETEXT,
            pid,
            addr as *mut libc::c_void,
            word as *mut libc::c_void,
        )
    };
    if rc < 0 {
        return Err(format!("PTRACE_POKETEXT: {}", io::Error::last_os_error()));
    }
    Ok(())
}

fn wait_stop(pid: i32, want: i32) -> Result<(), String> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child, writing into a local.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc < 0 {
            return Err(format!("waitpid: {}", io::Error::last_os_error()));
        }
        if libc::WIFEXITED(status) {
            return Err(format!(
                "exited with status {} before it ran its own code",
                libc::WEXITSTATUS(status)
            ));
        }
        if libc::WIFSIGNALED(status) {
            return Err(format!(
                "killed by signal {} before it ran its own code",
                libc::WTERMSIG(status)
            ));
        }
        if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            if sig == want {
                return Ok(());
            }
            // Another signal: deliver it and keep waiting.
            // SAFETY: resume our stopped tracee with its signal.
            unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, sig as libc::c_long) };
        }
    }
}

/// One word of our stopped tracee's memory (PTRACE_PEEKTEXT).
fn peek(pid: i32, addr: u64) -> Result<libc::c_long, String> {
    // SAFETY: ptrace on our own stopped tracee; PEEKTEXT returns the word,
    // and errno tells a word of -1 from an error.
    let word = unsafe {
        *libc::__errno_location() = 0;
        libc::ptrace(libc::PTRACE_PEEKTEXT, pid, addr as *mut libc::c_void, 0)
    };
    // SAFETY: reading errno of this thread.
    if word == -1 && unsafe { *libc::__errno_location() } != 0 {
        return Err(format!(
            "PTRACE_PEEKTEXT {addr:#x}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(word)
}

/// The entries of a process's auxiliary vector that starting it needs.
struct Auxv {
    /// AT_ENTRY: the executable's entry point.
    entry: Option<u64>,
    /// AT_BASE: where the dynamic loader is mapped (0 for a static program).
    base: Option<u64>,
}

impl Auxv {
    fn read(pid: i32) -> io::Result<Self> {
        let auxv = fs::read(format!("/proc/{pid}/auxv"))?;
        let pairs = auxv.chunks_exact(16).map(|pair| {
            let key = u64::from_ne_bytes(pair[..8].try_into().unwrap_or_default());
            let value = u64::from_ne_bytes(pair[8..].try_into().unwrap_or_default());
            (key, value)
        });
        let mut out = Self {
            entry: None,
            base: None,
        };
        for (key, value) in pairs {
            match key {
                libc::AT_ENTRY => out.entry = Some(value),
                libc::AT_BASE => out.base = Some(value),
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Offset of `r_state` in glibc's `struct r_debug` on 64-bit targets:
/// `int r_version; struct link_map *r_map; ElfW(Addr) r_brk; enum r_state`.
const R_STATE_OFFSET: u64 = 24;

/// The r_debug protocol of the dynamic loader mapped at `base`: the
/// function it calls at each change of its link map, and the structure
/// that says which change.
struct DebugState {
    brk: u64,
    r_debug: u64,
}

impl DebugState {
    fn find(pid: i32, base: u64) -> Option<Self> {
        let maps = crate::target::resolve::maps::read_maps(pid).ok()?;
        let path = maps.iter().find(|m| m.start == base)?.path.clone()?;
        let mut process = crate::target::resolve::ProcessImage::open(pid).ok()?;
        let image = process.image(&path).ok()?;
        let address = |name: &str| {
            let [sym] = image.lookup(name)[..] else {
                return None;
            };
            process.runtime_address(&path, &image, sym.addr)
        };
        Some(Self {
            brk: address("_dl_debug_state")?,
            r_debug: address("_r_debug")?,
        })
    }
}

/// Becomes readable when a process exits (pidfd_open, Linux 5.3).
pub struct ExitWatch {
    fd: AsyncFd<OwnedFd>,
}

impl ExitWatch {
    pub fn new(pid: i32) -> Result<Self, ProcessError> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::ESRCH) {
                ProcessError::NoSuchProcess(pid)
            } else {
                ProcessError::Watch { pid, source: err }
            });
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the AsyncFd owns the OwnedFd, which keeps the descriptor open.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| ProcessError::Watch {
            pid,
            source: io::Error::other(e.to_string()),
        })?;
        Ok(Self { fd })
    }

    pub async fn exited(&self) {
        // A pidfd polls readable once the process has exited.
        if let Ok(mut guard) = self.fd.readable().await {
            guard.retain_ready();
        }
    }
}

/// What a process is running: the executable's inode and where the
/// executable's first mapping starts. An exec changes it (a new image, and
/// a new ASLR base even when the same file is executed again). The lowest
/// mapping of the process would not do: a static PIE is mapped at the mmap
/// base, so its own first mmap lands below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    inode: u64,
    base: u64,
}

impl Image {
    pub fn of(pid: i32) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let inode = fs::metadata(format!("/proc/{pid}/exe")).ok()?.ino();
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let base = crate::target::resolve::maps::parse_maps(&maps)
            .iter()
            .find(|m| m.path.as_deref() == Some(exe.as_path()))?
            .start;
        Some(Self { inode, base })
    }
}

/// Lines of a command's output kept (older ones are dropped, and counted).
pub const OUTPUT_LINES: usize = 1000;
/// Bytes of a line kept; the rest of a longer line is cut, marked `…`.
pub const OUTPUT_LINE_BYTES: usize = 2048;

/// The end of a command's output, in lines: the last [`OUTPUT_LINES`],
/// each of at most [`OUTPUT_LINE_BYTES`] bytes (and the `…` of a cut), with
/// counts of everything written. Bytes as written: they need not be UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputTail {
    /// Complete lines, oldest first, without their newline (nor a `\r`
    /// before it).
    lines: VecDeque<Arc<[u8]>>,
    /// The line being written, no newline yet.
    partial: Vec<u8>,
    /// `partial` was cut: the rest of its line is skipped.
    cut: bool,
    /// Complete lines written, kept or not.
    complete: u64,
    bytes: u64,
    /// Every writer is gone (the end of file).
    closed: bool,
}

impl OutputTail {
    /// Takes what the command wrote next.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.extend_line(&bytes[..newline]);
            self.end_line();
            bytes = &bytes[newline + 1..];
        }
        self.extend_line(bytes);
    }

    /// The end of file: a last line without its newline is a line too.
    pub fn close(&mut self) {
        if !self.partial.is_empty() {
            self.end_line();
        }
        self.closed = true;
    }

    fn extend_line(&mut self, bytes: &[u8]) {
        if self.cut {
            return;
        }
        let room = OUTPUT_LINE_BYTES - self.partial.len();
        if bytes.len() <= room {
            self.partial.extend_from_slice(bytes);
            return;
        }
        self.partial.extend_from_slice(&bytes[..room]);
        // Not inside a character, where the line is UTF-8.
        if let Err(e) = std::str::from_utf8(&self.partial)
            && e.error_len().is_none()
        {
            self.partial.truncate(e.valid_up_to());
        }
        self.partial.extend_from_slice("…".as_bytes());
        self.cut = true;
    }

    fn end_line(&mut self) {
        if !self.cut && self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        if self.lines.len() == OUTPUT_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(Arc::from(&self.partial[..]));
        self.partial.clear();
        self.cut = false;
        self.complete += 1;
    }

    /// The lines kept, oldest first; the line being written, if any, last.
    pub fn lines(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        self.lines
            .iter()
            .map(|l| &**l)
            .chain((!self.partial.is_empty()).then_some(&self.partial[..]))
    }

    /// How many lines [`OutputTail::lines`] gives.
    pub fn kept(&self) -> usize {
        self.lines.len() + usize::from(!self.partial.is_empty())
    }

    /// Lines written, the one being written included.
    pub fn written(&self) -> u64 {
        self.complete + u64::from(!self.partial.is_empty())
    }

    /// Bytes written.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether every writer is gone: nothing more will come.
    pub fn closed(&self) -> bool {
        self.closed
    }
}

/// A `-- CMD`'s output while the dashboard has the terminal: read from a
/// pipe on a thread of its own into an [`OutputTail`], which the dashboard
/// copies on its clock and hwbp-trace prints after the dashboard closes.
#[derive(Debug, Default)]
pub struct CommandOutput {
    /// The command's name (its file name), for titles.
    pub name: String,
    tail: Mutex<OutputTail>,
    /// Notified at the end of file.
    closed: Condvar,
}

impl CommandOutput {
    /// For the command `argv` (`-- CMD ARGS`).
    pub fn of(argv: &[OsString]) -> Arc<Self> {
        let name = argv
            .first()
            .map(|program| {
                let path = Path::new(program);
                path.file_name()
                    .unwrap_or(path.as_os_str())
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        Arc::new(Self {
            name,
            ..Self::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, OutputTail> {
        self.tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes what the command wrote next.
    pub fn push(&self, bytes: &[u8]) {
        self.lock().push(bytes);
    }

    /// A copy of the tail (lines are shared, not copied).
    pub fn tail(&self) -> OutputTail {
        self.lock().clone()
    }

    /// The tail once every writer is gone, or after `timeout` (a command
    /// that is still running, or left a child holding the pipe).
    pub fn wait_closed(&self, timeout: Duration) -> OutputTail {
        let deadline = Instant::now() + timeout;
        let mut tail = self.lock();
        while !tail.closed() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tail = match self.closed.wait_timeout(tail, left) {
                Ok((tail, _)) => tail,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        tail.clone()
    }

    /// Reads `pipe` until its end, on a thread that is never joined: it
    /// keeps reading for as long as hwbp-trace runs, so that the command
    /// never writes into a closed pipe (SIGPIPE) before hwbp-trace exits,
    /// and it never holds up that exit.
    fn read(self: Arc<Self>, mut pipe: io::PipeReader) -> io::Result<()> {
        thread::Builder::new()
            .name("cmd-output".into())
            .spawn(move || {
                let mut buffer = vec![0; 64 * 1024];
                loop {
                    match pipe.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => self.push(&buffer[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                self.lock().close();
                self.closed.notify_all();
            })
            .map(drop)
    }
}

/// A signal's name as kill(1) and the shells write it (`SIGKILL`): the
/// numbers are the same on every Linux architecture hwbp runs on (x86),
/// not on every one (SIGBUS is 10 on some), hence libc's constants.
pub fn signal_name(signal: i32) -> String {
    const NAMES: [(i32, &str); 31] = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
        (libc::SIGCHLD, "SIGCHLD"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    if let Some((_, name)) = NAMES.iter().find(|(n, _)| *n == signal) {
        return (*name).to_owned();
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if (min..=max).contains(&signal) {
        return format!("SIGRTMIN+{}", signal - min);
    }
    format!("signal {signal}")
}

/// Whether a process exists.
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The kernel's `PF_KTHREAD` task flag (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// What /proc/PID/stat says of a process: its comm, state letter and flags.
#[derive(Debug, PartialEq, Eq)]
struct TaskStat {
    comm: String,
    state: char,
    flags: u64,
}

/// Parses /proc/PID/stat: `pid (comm) state ppid … flags …`. The comm may
/// hold spaces and parentheses: it ends at the last `)`.
fn parse_stat(stat: &str) -> Option<TaskStat> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state: ppid pgrp session tty_nr tpgid, then flags.
    let flags = fields.nth(5)?.parse().ok()?;
    Some(TaskStat { comm, state, flags })
}

/// Refuses, with the reason, a `-p PID` that cannot be traced: not a PID,
/// hwbp-trace itself, a kernel thread, a zombie, or no such process.
pub fn check_traceable(pid: i32) -> Result<(), ProcessError> {
    if pid <= 0 {
        return Err(ProcessError::NotAPid(pid));
    }
    if pid as u32 == std::process::id() {
        return Err(ProcessError::Itself(pid));
    }
    let Some(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
    else {
        return Err(ProcessError::NoSuchProcess(pid));
    };
    let comm = crate::printable::printable(&stat.comm).into_owned();
    if stat.flags & PF_KTHREAD != 0 {
        return Err(ProcessError::KernelThread { pid, comm });
    }
    if matches!(stat.state, 'Z' | 'X' | 'x') {
        return Err(ProcessError::Zombie { pid, comm });
    }
    // /proc/TID answers for any thread too, though it lists only leaders.
    let tgid = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Tgid:"))
                .and_then(|tgid| tgid.trim().parse::<i32>().ok())
        });
    if let Some(tgid) = tgid.filter(|&tgid| tgid != pid) {
        return Err(ProcessError::Thread {
            tid: pid,
            pid: tgid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let kthreadd = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0";
        assert_eq!(
            parse_stat(kthreadd),
            Some(TaskStat {
                comm: "kthreadd".into(),
                state: 'S',
                flags: 2129984
            })
        );
        let odd = "77 (a) b (c)) Z 1 77 77 0 -1 4194572 0";
        assert_eq!(
            parse_stat(odd),
            Some(TaskStat {
                comm: "a) b (c)".into(),
                state: 'Z',
                flags: 4194572
            })
        );
        assert_eq!(parse_stat("1 (init"), None);
    }

    #[test]
    fn pids_that_cannot_be_traced() {
        assert!(matches!(check_traceable(0), Err(ProcessError::NotAPid(0))));
        assert!(matches!(
            check_traceable(-3),
            Err(ProcessError::NotAPid(-3))
        ));
        let me = std::process::id() as i32;
        assert!(matches!(check_traceable(me), Err(ProcessError::Itself(_))));
        // PID 2 is kthreadd on every Linux since 2.6.22, unless in a PID namespace.
        if fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            assert!(matches!(
                check_traceable(2),
                Err(ProcessError::KernelThread { pid: 2, .. })
            ));
        }
        assert!(check_traceable(std::os::unix::process::parent_id() as i32).is_ok());
        // A thread of this process (the test harness runs each test on one).
        // SAFETY: gettid has no preconditions and cannot fail.
        let (tid, me) = (unsafe { libc::gettid() }, std::process::id() as i32);
        if tid != me {
            let err = check_traceable(tid).expect_err("a thread");
            assert!(matches!(err, ProcessError::Thread { pid, .. } if pid == me));
            assert!(
                err.to_string().contains(&format!("-p {me} --tid {tid}")),
                "{err}"
            );
        }
    }

    fn tail_of(chunks: &[&[u8]]) -> OutputTail {
        let mut tail = OutputTail::default();
        for chunk in chunks {
            tail.push(chunk);
        }
        tail
    }

    fn lines(tail: &OutputTail) -> Vec<String> {
        tail.lines()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    #[test]
    fn signals_by_name() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(libc::SIGTRAP), "SIGTRAP");
        assert_eq!(signal_name(libc::SIGSYS), "SIGSYS");
        assert_eq!(signal_name(libc::SIGRTMIN() + 2), "SIGRTMIN+2");
        assert_eq!(signal_name(99), "signal 99");
    }

    #[test]
    fn lines_across_reads() {
        let tail = tail_of(&[b"one\ntw", b"o\n\nthree\r\n", b"fo"]);
        assert_eq!(lines(&tail), ["one", "two", "", "three", "fo"]);
        // The line being written is shown and counted, once.
        assert_eq!(tail.written(), 5);
        assert_eq!(tail.kept(), 5);
        assert_eq!(tail.bytes(), 18);
        assert!(!tail.closed());
    }

    #[test]
    fn a_last_line_without_newline_is_a_line() {
        let mut tail = tail_of(&[b"a\nb"]);
        tail.push(b"c");
        tail.close();
        assert_eq!(lines(&tail), ["a", "bc"]);
        assert_eq!(tail.written(), 2);
        assert!(tail.closed());
        // Closing after a newline adds nothing.
        let mut tail = tail_of(&[b"a\n"]);
        tail.close();
        assert_eq!(lines(&tail), ["a"]);
        assert_eq!(tail.written(), 1);
        let mut empty = OutputTail::default();
        empty.close();
        assert_eq!((empty.written(), empty.kept(), empty.bytes()), (0, 0, 0));
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let long = vec![b'x'; OUTPUT_LINE_BYTES * 3];
        // Written in pieces, then the next line.
        let tail = tail_of(&[&long[..100], &long[100..], b"yyy\nnext\n"]);
        let kept: Vec<&[u8]> = tail.lines().collect();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].len(), OUTPUT_LINE_BYTES + "…".len());
        assert!(kept[0].ends_with("x…".as_bytes()));
        assert_eq!(kept[1], b"next");
        assert_eq!(tail.written(), 2);
        assert_eq!(tail.bytes(), long.len() as u64 + 9);
        // A line of exactly the limit is whole.
        let exact = [vec![b'z'; OUTPUT_LINE_BYTES], b"\n".to_vec()].concat();
        let tail = tail_of(&[&exact]);
        assert_eq!(tail.lines().next(), Some(&exact[..OUTPUT_LINE_BYTES]));
        // A cut never splits a character.
        let wide = "é".repeat(OUTPUT_LINE_BYTES);
        let tail = tail_of(&[b"a", wide.as_bytes(), b"\n"]);
        let line = tail.lines().next().expect("one line");
        let text = std::str::from_utf8(line).expect("still UTF-8");
        assert!(text.starts_with("aé") && text.ends_with("é…"), "{text}");
        assert_eq!(text.len(), OUTPUT_LINE_BYTES - 1 + "…".len());
        // The line being written is cut the same way.
        let tail = tail_of(&[&long]);
        assert_eq!(tail.kept(), 1);
        assert_eq!(tail.written(), 1);
        assert!(
            tail.lines()
                .next()
                .is_some_and(|l| l.ends_with("…".as_bytes()))
        );
    }

    #[test]
    fn only_the_last_lines_are_kept() {
        let mut tail = OutputTail::default();
        for i in 0..OUTPUT_LINES + 500 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        tail.push(b"partial");
        assert_eq!(tail.written(), OUTPUT_LINES as u64 + 501);
        // The lines kept and the one being written.
        assert_eq!(tail.kept(), OUTPUT_LINES + 1);
        let kept = lines(&tail);
        assert_eq!(kept[0], "line 500");
        assert_eq!(
            kept[OUTPUT_LINES - 1],
            format!("line {}", OUTPUT_LINES + 499)
        );
        assert_eq!(kept[OUTPUT_LINES], "partial");
        // Bytes as written (not UTF-8 either).
        let tail = tail_of(&[b"\xff\xfe\n"]);
        assert_eq!(tail.lines().next(), Some(&b"\xff\xfe"[..]));
    }

    #[test]
    fn a_launched_command_writes_into_one_pipe_in_order() {
        let output = CommandOutput::of(&["sh".into()]);
        assert_eq!(output.name, "sh");
        let argv: Vec<OsString> = [
            "/bin/sh",
            "-c",
            "echo one; echo two >&2; echo three; read x || echo 'stdin: end'; printf last",
        ]
        .map(OsString::from)
        .into();
        let mut child = Launched::start(&argv, Some(&output)).expect("sh starts");
        child.resume().expect("sh runs");
        let tail = output.wait_closed(Duration::from_secs(30));
        child.kill();
        assert!(tail.closed(), "the pipe ended with the command");
        assert_eq!(lines(&tail), ["one", "two", "three", "stdin: end", "last"]);
        assert_eq!(tail.bytes(), 29);
        assert_eq!(CommandOutput::of(&["/usr/bin/env".into()]).name, "env");
    }
}

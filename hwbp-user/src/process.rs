//! The traced process: starting `-- CMD` stopped at its entry point, and
//! watching a process (ours or `-p`) until it exits.

use std::{
    env,
    ffi::OsString,
    fs, io,
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::{fs::PermissionsExt as _, process::CommandExt as _},
    },
    path::{Path, PathBuf},
    process::{Child, Command},
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
    #[error("while stopping `{cmd}` at its entry point: {reason}")]
    Trace { cmd: String, reason: String },
    #[error("no process {0}: check the PID (ps -e)")]
    NoSuchProcess(i32),
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

/// A child started by hwbp, stopped (ptrace) at the first instruction of
/// its own code, the ELF entry point, until [`Launched::resume`].
pub struct Launched {
    pub pid: i32,
    child: Child,
    cmd: String,
    stopped: bool,
}

impl Launched {
    pub fn start(argv: &[OsString]) -> Result<Self, ProcessError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(ProcessError::NotFound(String::new()));
        };
        let cmd = program.to_string_lossy().into_owned();
        let path = find_command(program)?;
        let mut command = Command::new(&path);
        command.arg0(program).args(args);
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
    /// run yet. Put an int3 at AT_ENTRY, continue, and stop there: now the
    /// executable and its shared libraries are mapped, and none of the
    /// program's own code has run.
    fn run_to_entry(&mut self) -> Result<(), String> {
        let pid = self.pid;
        wait_stop(pid, libc::SIGTRAP)?;
        let entry = auxv_entry(pid).map_err(|e| format!("reading /proc/{pid}/auxv: {e}"))?;
        // SAFETY: ptrace on our own stopped tracee; PEEKTEXT returns the word.
        let original = unsafe {
            *libc::__errno_location() = 0;
            libc::ptrace(libc::PTRACE_PEEKTEXT, pid, entry as *mut libc::c_void, 0)
        };
        // SAFETY: reading errno of this thread.
        if original == -1 && unsafe { *libc::__errno_location() } != 0 {
            return Err(format!("PTRACE_PEEKTEXT: {}", io::Error::last_os_error()));
        }
        let patched = (original & !0xff) | 0xcc;
        // SAFETY: as above; POKETEXT writes one word of the tracee's text.
        if unsafe {
            libc::ptrace(
                libc::PTRACE_POKETEXT,
                pid,
                entry as *mut libc::c_void,
                patched as *mut libc::c_void,
            )
        } < 0
        {
            return Err(format!("PTRACE_POKETEXT: {}", io::Error::last_os_error()));
        }
        // SAFETY: resume the stopped tracee without a signal.
        if unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, 0) } < 0 {
            return Err(format!("PTRACE_CONT: {}", io::Error::last_os_error()));
        }
        wait_stop(pid, libc::SIGTRAP)?;
        // SAFETY: restore the original word at the entry point.
        if unsafe {
            libc::ptrace(
                libc::PTRACE_POKETEXT,
                pid,
                entry as *mut libc::c_void,
                original as *mut libc::c_void,
            )
        } < 0
        {
            return Err(format!("PTRACE_POKETEXT: {}", io::Error::last_os_error()));
        }
        // SAFETY: user_regs_struct is plain data; GETREGS/SETREGS fill/read it.
        unsafe {
            let mut regs: libc::user_regs_struct = std::mem::zeroed();
            if libc::ptrace(
                libc::PTRACE_GETREGS,
                pid,
                0,
                &mut regs as *mut _ as *mut libc::c_void,
            ) < 0
            {
                return Err(format!("PTRACE_GETREGS: {}", io::Error::last_os_error()));
            }
            if regs.rip != entry + 1 {
                return Err(format!(
                    "stopped at {:#x}, expected the entry point {:#x}",
                    regs.rip,
                    entry + 1
                ));
            }
            regs.rip = entry;
            if libc::ptrace(
                libc::PTRACE_SETREGS,
                pid,
                0,
                &regs as *const _ as *mut libc::c_void,
            ) < 0
            {
                return Err(format!("PTRACE_SETREGS: {}", io::Error::last_os_error()));
            }
        }
        Ok(())
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
                "exited with status {} before its entry point",
                libc::WEXITSTATUS(status)
            ));
        }
        if libc::WIFSIGNALED(status) {
            return Err(format!(
                "killed by signal {} before its entry point",
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

fn auxv_entry(pid: i32) -> io::Result<u64> {
    let auxv = fs::read(format!("/proc/{pid}/auxv"))?;
    auxv.chunks_exact(16)
        .map(|pair| {
            let key = u64::from_ne_bytes(pair[..8].try_into().unwrap_or_default());
            let value = u64::from_ne_bytes(pair[8..].try_into().unwrap_or_default());
            (key, value)
        })
        .find(|&(key, _)| key == libc::AT_ENTRY)
        .map(|(_, value)| value)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no AT_ENTRY"))
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

/// What a process is running: the executable's inode and where its first
/// mapping starts. An exec changes it (a new image, and a new ASLR base
/// even when the same file is executed again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    inode: u64,
    base: u64,
}

impl Image {
    pub fn of(pid: i32) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let inode = fs::metadata(format!("/proc/{pid}/exe")).ok()?.ino();
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let base = maps.lines().next()?.split('-').next()?;
        Some(Self {
            inode,
            base: u64::from_str_radix(base, 16).ok()?,
        })
    }
}

/// Whether a process exists.
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

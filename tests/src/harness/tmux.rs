//! A program that needs a terminal (the dashboard), run in tmux and read
//! from its screen: the root tests of the dashboard (tests/tests/tui.rs),
//! the benchmark's dashboard runs and the kernel tests' dashboard over the
//! VM's serial console.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use super::process::{output, process_state, remove, shell_word, shell_words};

/// A program that needs a terminal, in a detached tmux session on a
/// private server. The server is our child (`tmux -D`), on its own socket
/// and without the user's configuration; dropping this kills it, and with
/// it whatever still runs in the session, and reaps it.
///
/// The pane runs a shell that runs the program and writes its exit status
/// to a file: tmux, the program's parent otherwise, has been seen here not
/// to reap it now and then (a zombie for good, its pane dead without a
/// status).
pub struct Tmux {
    socket: PathBuf,
    conf: PathBuf,
    /// The program's pid, written before it starts.
    pid_file: PathBuf,
    /// Its exit status, written by the shell once it has reaped it.
    status_file: PathBuf,
    server: Child,
}

impl Tmux {
    const SESSION: &str = "hwbp";
    pub const WIDTH: u16 = 120;
    pub const HEIGHT: u16 = 40;

    /// `program` in a new WIDTH x HEIGHT session, its stderr to `stderr`;
    /// [`Tmux::pid`] and [`Tmux::exit_status`] follow it.
    pub fn start(scratch: &Path, program: &Command, stderr: &Path) -> Result<Self> {
        let files = Files::new(scratch);
        // The inner sh writes its pid and execs the program, so the program
        // has that pid and the outer sh, which waits for it, for parent.
        let inner = format!(
            "echo $$ >{}; exec {} 2>{}",
            shell_word(&files.pid.to_string_lossy()),
            shell_words(program),
            shell_word(&stderr.to_string_lossy())
        );
        let line = format!(
            "sh -c {}; echo $? >{}",
            shell_word(&inner),
            shell_word(&files.status.to_string_lossy())
        );
        Self::open(files, (Self::WIDTH, Self::HEIGHT), &line)
    }

    /// A shell command `line` in a new session of `size` (columns, rows),
    /// as a user would type it: whatever it writes goes to the screen. Its
    /// pid and status are not followed ([`Tmux::pane_pid`] is the shell's).
    pub fn shell(scratch: &Path, size: (u16, u16), line: &str) -> Result<Self> {
        Self::open(Files::new(scratch), size, line)
    }

    fn open(files: Files, (width, height): (u16, u16), line: &str) -> Result<Self> {
        // One server per session, even for several at once in a process.
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let socket = std::env::temp_dir().join(format!(
            "hwbp-tmux-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::Relaxed)
        ));
        remove(&socket);
        // remain-on-exit: the screen stays readable for error messages; no
        // status line: the program gets all the rows.
        fs::write(
            &files.conf,
            "set-option -g remain-on-exit on\n\
             set-option -g status off\n\
             set-option -g default-shell /bin/sh\n",
        )
        .with_context(|| format!("writing {}", files.conf.display()))?;
        let server = Command::new("tmux")
            .env_remove("TMUX")
            .arg("-S")
            .arg(&socket)
            .arg("-f")
            .arg(&files.conf)
            .arg("-D")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a tmux server (is tmux installed?)")?;
        let tmux = Tmux {
            socket,
            conf: files.conf,
            pid_file: files.pid,
            status_file: files.status,
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
        let mut cmd = tmux.command();
        cmd.args(["new-session", "-d", "-s", Self::SESSION])
            .args(["-x", &width.to_string()])
            .args(["-y", &height.to_string(), line]);
        output(&mut cmd)?;
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
    pub fn exit_status(&self) -> Option<i64> {
        Self::read_number(&self.status_file)
    }

    /// The program's pid, once the shell has written it.
    pub fn pid(&self, limit: Duration) -> Result<u32> {
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

    /// The pid of the pane's own process (the shell of [`Tmux::shell`]).
    pub fn pane_pid(&self) -> Result<u32> {
        let text = self.format("#{pane_pid}")?;
        text.parse()
            .with_context(|| format!("tmux gave {text:?} for the pane's pid"))
    }

    /// Whether the pane shows the alternate screen (a full-screen program's).
    pub fn alternate_on(&self) -> Result<bool> {
        Ok(self.format("#{alternate_on}")? == "1")
    }

    /// One of tmux's formats, for the pane.
    fn format(&self, format: &str) -> Result<String> {
        let mut cmd = self.command();
        cmd.args(["display-message", "-p", "-t", Self::SESSION, format]);
        Ok(output(&mut cmd)?.trim().to_owned())
    }

    /// What the pane shows now.
    pub fn screen(&self) -> Result<String> {
        let mut cmd = self.command();
        cmd.args(["capture-pane", "-p", "-t", Self::SESSION]);
        output(&mut cmd)
    }

    /// Waits until the screen shows `text`; fails if the program exits first.
    pub fn wait_for_screen(&self, text: &str, limit: Duration) -> Result<()> {
        self.wait_for(&format!("`{text}`"), limit, |screen| screen.contains(text))
            .map(drop)
    }

    /// Waits until the screen satisfies `ok` (`what` names it in errors);
    /// fails if the program exits first, or after `limit` (a safety net,
    /// not a measurement). The screen that satisfied it.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen()?;
            if ok(&screen) {
                return Ok(screen);
            }
            if let Some(status) = self.exit_status() {
                bail!("it exited ({status}) before its screen showed {what}:\n{screen}");
            }
            if Instant::now() > deadline {
                bail!(
                    "its screen did not show {what} within {} s:\n{screen}",
                    limit.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn send_keys(&self, keys: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.args(["send-keys", "-t", Self::SESSION, keys]);
        output(&mut cmd).map(drop)
    }

    /// Waits for the program (`pid`) to exit; its exit status.
    pub fn wait_for_exit(&self, pid: u32, limit: Duration) -> Result<i64> {
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

/// The files of a session, in the caller's scratch directory.
struct Files {
    conf: PathBuf,
    /// The program's pid, written before it starts.
    pid: PathBuf,
    /// Its exit status, written by the shell once it has reaped it.
    status: PathBuf,
}

impl Files {
    fn new(scratch: &Path) -> Self {
        let files = Files {
            conf: scratch.join("tmux.conf"),
            pid: scratch.join("tmux-program.pid"),
            status: scratch.join("tmux-program.status"),
        };
        remove(&files.pid);
        remove(&files.status);
        files
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

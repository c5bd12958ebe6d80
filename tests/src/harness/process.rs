//! Running, waiting for, signalling and describing processes the harness
//! started, and quoting their command lines for sh.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Waits until `child` runs `exe` (a launcher such as `setarch` has exec'd
/// it: before that, `-p` would find the launcher's symbols); kills and
/// reaps it if that takes longer than `within`.
pub fn wait_for_exec(child: &mut Child, exe: &Path, within: Duration) -> Result<()> {
    let exe = fs::canonicalize(exe).with_context(|| format!("resolving {}", exe.display()))?;
    let link = format!("/proc/{}/exe", child.id());
    let deadline = Instant::now() + within;
    while fs::read_link(&link).ok().as_deref() != Some(exe.as_path()) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not start {} within {within:?}",
                child.id(),
                exe.display()
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Sends `sig` to a child of ours.
pub fn signal(pid: u32, sig: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) takes plain integers; `pid` is a child this process
    // started and has not reaped, so the number names that child.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signalling process {pid}"));
    }
    Ok(())
}

/// Removes a file if it is there.
pub fn remove(path: &Path) {
    let _ = fs::remove_file(path);
}

/// What a process is doing, thread by thread, for an error message.
pub fn process_state(pid: u32) -> String {
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
pub fn shell_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A command line quoted for sh.
pub fn shell_words(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| shell_word(&word.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
}

/// waitpid with the child's resource usage (its CPU time and peak RSS).
pub fn wait4(pid: u32) -> Result<(i32, libc::rusage)> {
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

/// A command line as a person would type it (for messages).
pub fn display(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `cmd` and returns its stdout; fails (with its stderr) unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to start `{line}` (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed non-UTF-8 output"))
}

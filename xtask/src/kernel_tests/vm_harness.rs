//! Checks of the VM harness itself, each running the xtask binary as a
//! user would (`xtask vm --no-build ...`): the time-out, the boot retry, a
//! guest kernel panic, and the dashboard over the serial console.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use hwbp_tests::harness::tmux::Tmux;

use crate::workspace_root;

/// A check of the harness: `xtask vm` run as a user would, with these
/// arguments before its own (`vm [--kvm] [--kernel V]`).
type HarnessCheck = fn(&[String]) -> Result<()>;

const HARNESS: &[(&str, HarnessCheck)] = &[
    ("timeout", timeout),
    ("no_sign_of_life", no_sign_of_life),
    ("panic", panic),
    ("dashboard", dashboard),
];

/// The harness checks, each through the xtask binary itself (the one
/// running now: `cargo xtask` built it); how many passed.
pub(super) fn run(requested: Option<&str>, kvm: bool) -> Result<usize> {
    // `cargo xtask test` has just built everything: no second build, which
    // would also pick up edits made since.
    let mut base = vec!["vm".to_owned(), "--no-build".to_owned()];
    if kvm {
        base.push("--kvm".to_owned());
    }
    if let Some(kernel) = requested {
        base.extend(["--kernel".to_owned(), kernel.to_owned()]);
    }
    let mut failed = Vec::new();
    for (name, check) in HARNESS {
        match check(&base) {
            Ok(()) => println!("harness check {name} ... ok"),
            Err(error) => {
                println!("harness check {name} ... FAILED\n    {error:#}");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("harness checks failed: {}", failed.join(", "));
    }
    Ok(HARNESS.len())
}

fn xtask_binary() -> Result<PathBuf> {
    std::env::current_exe().context("finding the xtask binary that runs")
}

/// Runs `xtask vm ARGS` with no terminal; its output, and the QEMU
/// processes of its run still alive after it ended (there must be none).
fn xtask_vm(base: &[String], args: &[&str]) -> Result<(Output, Vec<u32>)> {
    let mut command = Command::new(xtask_binary()?);
    command
        .args(base)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().context("starting xtask vm")?;
    let pid = child.id();
    let output = child.wait_with_output().context("waiting for xtask vm")?;
    Ok((output, qemu_of_run(pid)))
}

/// QEMU processes whose command line names the run directory of the xtask
/// process `pid` (vm/: target/vm/run-PID/).
fn qemu_of_run(pid: u32) -> Vec<u32> {
    let needle = format!("/run-{pid}/");
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|process| {
            fs::read(format!("/proc/{process}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
        })
        .collect()
}

/// The failing run's error: its last line of stderr starts with `xtask:
/// error: {reason}; its last lines:`, followed by the guest's console lines
/// (`    | LINE`), which must include `guest_line`. QEMU must be gone.
fn expect_vm_failure(
    (output, qemu): &(Output, Vec<u32>),
    reason: &str,
    guest_line: &[&str],
) -> Result<()> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = || format!("its stderr:\n{stderr}\nits stdout (the console):\n{stdout}");
    ensure!(!output.status.success(), "xtask vm exited 0; {}", context());
    let (_, error) = stderr
        .split_once("xtask: error: ")
        .ok_or_else(|| anyhow!("xtask vm failed without an error message; {}", context()))?;
    let (head, tail) = error
        .split_once("; its last lines:\n")
        .ok_or_else(|| anyhow!("the error shows no `its last lines:`; {}", context()))?;
    ensure!(
        head.contains(reason),
        "the error does not say {reason:?}; {}",
        context()
    );
    let guest: Vec<&str> = tail
        .lines()
        .filter_map(|line| line.strip_prefix("    | "))
        .collect();
    ensure!(
        guest
            .iter()
            .any(|line| guest_line.iter().any(|want| line.contains(want))),
        "the guest's last lines in the error include none of {guest_line:?}; {}",
        context()
    );
    ensure!(
        qemu.is_empty(),
        "QEMU is still running after xtask vm failed: pid(s) {qemu:?}"
    );
    Ok(())
}

/// `--timeout 5 -- sleep 60`: QEMU killed, the time-out named, the guest's
/// last lines shown (firmware's or the kernel's: 5 s may end the boot).
fn timeout(base: &[String]) -> Result<()> {
    let run = xtask_vm(base, &["--timeout", "5", "--", "sleep", "60"])?;
    expect_vm_failure(
        &run,
        "the guest did not finish within 5 s",
        &["SeaBIOS", "Booting from ROM", "init: "],
    )
}

/// `--boot-timeout 1`: no guest reaches /init in 1 s, so xtask vm kills
/// the boot, says so, boots once more, and fails when that one does not
/// either; QEMU gone.
fn no_sign_of_life(base: &[String]) -> Result<()> {
    let (output, qemu) = xtask_vm(base, &["--boot-timeout", "1", "--", "true"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "xtask vm exited 0; its stderr:\n{stderr}"
    );
    let warned = stderr
        .matches("the guest did not reach /init within 1 s")
        .count();
    ensure!(
        warned == 2
            && stderr.contains("vm: booting once more")
            && stderr.contains("the second boot failed too"),
        "want the first boot's warning, a second boot and its failure; its stderr:\n{stderr}"
    );
    ensure!(
        qemu.is_empty(),
        "QEMU is still running after xtask vm failed: pid(s) {qemu:?}"
    );
    Ok(())
}

/// A guest kernel panic (sysrq c): QEMU stopped at once, the panic named,
/// the guest's last lines shown (the panic's own: its backtrace is ~45
/// lines, so init's line before it may be out of the window).
fn panic(base: &[String]) -> Result<()> {
    let run = xtask_vm(base, &["--", "sh", "-c", "echo c > /proc/sysrq-trigger"])?;
    expect_vm_failure(
        &run,
        "the guest kernel failed (",
        &["Kernel panic", "sysrq_handle_crash", "Kernel Offset"],
    )?;
    let stderr = String::from_utf8_lossy(&run.0.stderr);
    ensure!(
        stderr.contains("Kernel panic - not syncing"),
        "the error does not name the kernel panic:\n{stderr}"
    );
    Ok(())
}

/// The HITS cell of a target's row in the dashboard's targets table.
fn hits_cell(screen: &str, target: &str) -> Option<String> {
    let row = screen
        .lines()
        .find(|l| l.contains(&format!("›{target} ")) || l.contains(&format!("│ {target} ")))?;
    let cells: Vec<&str> = row
        .trim_matches(|c| c == '│' || c == ' ')
        .split_whitespace()
        .collect();
    // TARGET SYMBOL [ADDRESS] MODE HITS ...: HITS follows the mode.
    let mode = cells.iter().position(|c| ["x", "w", "rw"].contains(c))?;
    cells.get(mode + 1).map(|s| (*s).to_owned())
}

/// `xtask vm -- hwbp-trace pid_max -- fx_kernel pidmax 5` in a tmux pane (a
/// terminal): the dashboard over the serial console shows pid_max with
/// exactly 5 hits once the fixture has exited, `q` quits it, and xtask
/// exits 0 (the guest command's status).
fn dashboard(base: &[String]) -> Result<()> {
    let dir = workspace_root().join("target/vm-harness");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut xtask = Command::new(xtask_binary()?);
    // No -d: with a `-- CMD` the dashboard stays up after the command exits,
    // so the screen can be read at leisure; --timeout only bounds a hang.
    xtask.args(base).args([
        "--timeout",
        "300",
        "--",
        "hwbp-trace",
        "pid_max",
        "--",
        "fx_kernel",
        "pidmax",
        "5",
    ]);
    let stderr = dir.join("dashboard.stderr");
    let stderr_text = || fs::read_to_string(&stderr).unwrap_or_default();
    let tmux = Tmux::start(&dir, &xtask, &stderr)?;
    let pid = tmux.pid(Duration::from_secs(10))?;
    tmux.wait_for(
        "the dashboard with pid_max at 5 hits and the fixture exited",
        Duration::from_secs(300),
        |screen| {
            hits_cell(screen, "pid_max").as_deref() == Some("5")
                && screen.contains("ended: process exited")
        },
    )
    .with_context(|| format!("xtask vm; its stderr:\n{}", stderr_text()))?;
    tmux.send_keys("q")?;
    let code = tmux
        .wait_for_exit(pid, Duration::from_secs(120))
        .with_context(|| format!("xtask vm, after `q`; its stderr:\n{}", stderr_text()))?;
    ensure!(
        code == 0,
        "xtask vm exited {code} after `q`, not 0; the screen:\n{}",
        tmux.screen().unwrap_or_default()
    );
    Ok(())
}

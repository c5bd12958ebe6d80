//! Running other programs with errors that say what was run.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
// Shared with the tests' harness, which runs tmux with them.
pub use hwbp_tests::harness::process::{display, output};

/// Runs `cmd` with inherited stdio; fails unless it exits 0.
pub fn exec(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("failed to start `{line}` (is it installed?)"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Whether `cmd` runs and exits 0, its output discarded: for probes.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

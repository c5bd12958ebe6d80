//! `cargo xtask build`: release builds of hwbp-trace and the test fixtures.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::{exec::exec, workspace_root};

/// `cargo ARGS` in the workspace root.
///
/// Frame pointers (so that user stacks of the fixtures unwind) come from
/// .cargo/config.toml, for every build of the workspace alike: flags set
/// here instead would differ from a plain `cargo build` and make each
/// rebuild the other's dependencies.
pub fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).current_dir(workspace_root());
    cmd
}

pub fn run() -> Result<()> {
    exec(&mut cargo(&[
        "build",
        "--release",
        "-p",
        "hwbp-user",
        "-p",
        "hwbp-tests",
        "--bins",
    ]))
    .context("building hwbp-trace and the fixtures")?;
    println!("build: {}", hwbp_trace().display());
    Ok(())
}

/// target/release (honours CARGO_TARGET_DIR).
pub fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("release")
}

pub fn hwbp_trace() -> PathBuf {
    release_dir().join("hwbp-trace")
}

/// The fixture programs (`fx_*`) of the hwbp-tests package, as built.
pub fn fixtures() -> Result<Vec<PathBuf>> {
    let dir = release_dir();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("fx_") && !name.contains('.') && entry.path().is_file() {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

//! `cargo xtask build`: release builds of hwbp-trace and the test fixtures,
//! for this host or, with `--arch arm64`, cross-built for arm64 (the BPF
//! object with them: aya-build builds it for the target's architecture).

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{arch::Arch, exec::exec, setup, workspace_root};

#[derive(Args)]
pub struct Options {
    /// Build for this architecture: x86-64 (this host) or arm64
    /// (cross-built with Debian's gcc-aarch64-linux-gnu, linked statically).
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    pub arch: Arch,
}

/// `cargo xtask build [--arch A]`: set-up for A, then the build.
pub fn command(options: Options) -> Result<()> {
    setup::run()?;
    if options.arch == Arch::X86_64 {
        return run();
    }
    setup::cross(options.arch)?;
    run_for(options.arch)
}

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

/// The release build for `arch` (cross-compiled unless it is the host's).
pub fn run_for(arch: Arch) -> Result<()> {
    let Some(triple) = arch.cross_target() else {
        return run();
    };
    exec(&mut cargo(&[
        "build",
        "--release",
        "--target",
        triple,
        "-p",
        "hwbp-user",
        "-p",
        "hwbp-tests",
        "--bins",
    ]))
    .with_context(|| format!("building hwbp-trace and the fixtures for {arch} ({triple})"))?;
    println!("build: {}", arch.release_dir().join("hwbp-trace").display());
    Ok(())
}

/// target/release (honours CARGO_TARGET_DIR).
pub fn release_dir() -> PathBuf {
    Arch::X86_64.release_dir()
}

pub fn hwbp_trace() -> PathBuf {
    release_dir().join("hwbp-trace")
}

/// The fixture programs (`fx_*`) of the hwbp-tests package, as built for
/// `arch`.
pub fn fixtures_for(arch: Arch) -> Result<Vec<PathBuf>> {
    let dir = arch.release_dir();
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

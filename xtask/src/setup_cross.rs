//! `cargo xtask setup` for a foreign architecture (`--arch arm64` of build,
//! vm, demo and test): what cross-building and booting it needs, each
//! checked before anything is installed.
//! - the Rust standard library for the target (rustup);
//! - Debian's cross gcc and C library (the linker, .cargo/config.toml);
//! - QEMU for the architecture;
//! - dpkg's foreign architecture, so that apt can fetch the guest's
//!   kernel and static busybox (arm64 packages, unpacked, never installed).

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{
    arch::Arch,
    exec::{exec, output},
    setup::{is_installed, is_root},
};

/// The Debian packages a cross build and boot for `arch` need on this host.
pub fn host_packages(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &[],
        Arch::Arm64 => &[
            "gcc-aarch64-linux-gnu",
            "libc6-dev-arm64-cross",
            "qemu-system-arm",
        ],
    }
}

pub fn run(arch: Arch) -> Result<()> {
    let Some(triple) = arch.cross_target() else {
        return Ok(());
    };
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup lists the installed targets (is rustup installed?)")?;
    if installed.lines().any(|line| line.trim() == triple) {
        println!("setup: Rust target {triple}: present");
    } else {
        println!("setup: adding the Rust target {triple}");
        exec(Command::new("rustup").args(["target", "add", triple]))?;
    }
    let foreign = output(Command::new("dpkg").arg("--print-foreign-architectures"))
        .context("asking dpkg for its foreign architectures")?;
    let missing: Vec<&str> = host_packages(arch)
        .iter()
        .copied()
        .filter(|package| !is_installed(package))
        .collect();
    let add_arch = !foreign.lines().any(|line| line.trim() == arch.debian());
    if missing.is_empty() && !add_arch {
        println!(
            "setup: {arch} packages: present ({}; dpkg knows {arch})",
            host_packages(arch).join(", ")
        );
        return Ok(());
    }
    if !is_root() {
        bail!(
            "setup for {arch} needs root: run `sudo dpkg --add-architecture {arch} && sudo \
             apt-get update && sudo apt-get install -y {}`",
            missing.join(" ")
        );
    }
    if add_arch {
        println!("setup: dpkg --add-architecture {arch} (for the guest's kernel and busybox)");
        exec(Command::new("dpkg").args(["--add-architecture", arch.debian()]))?;
    }
    exec(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if !missing.is_empty() {
        println!("setup: installing {}", missing.join(", "));
        exec(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    Ok(())
}

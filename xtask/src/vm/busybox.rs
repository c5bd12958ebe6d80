//! The guest's busybox: static, of the guest's architecture. For x86-64
//! this host's own (/bin/busybox, from busybox-static); for arm64 the same
//! Debian package built for arm64, downloaded with apt (dpkg knows arm64
//! once `cargo xtask setup` ran for it) and unpacked under target/vm/,
//! never installed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::kernel::{apt_name, apt_update, vm_dir};
use crate::{
    arch::Arch,
    exec::{display, exec},
};

/// The static busybox binary for `arch`.
pub fn busybox(arch: Arch) -> Result<PathBuf> {
    if arch == Arch::X86_64 {
        return Ok(PathBuf::from("/bin/busybox"));
    }
    let dir = vm_dir().join(format!("busybox-{arch}"));
    let binary = dir.join("bin/busybox");
    if binary.is_file() {
        return Ok(binary);
    }
    let download = vm_dir().join(format!("busybox-{arch}.download"));
    if download.exists() {
        fs::remove_dir_all(&download)
            .with_context(|| format!("removing {}", download.display()))?;
    }
    fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    let package = apt_name(arch, "busybox-static");
    println!("vm: downloading {package}");
    let mut apt = Command::new("apt-get");
    apt.args(["download", &package]).current_dir(&download);
    if exec(&mut apt).is_err() {
        apt_update()?;
        exec(&mut apt).with_context(|| {
            format!("downloading {package}: run `cargo xtask setup` for {arch} (dpkg --add-architecture)")
        })?;
    }
    let deb = fs::read_dir(&download)
        .with_context(|| format!("reading {}", download.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or_else(|| anyhow!("apt-get download {package} left no .deb"))?;
    unpack(&deb, &download.join("unpacked"))?;
    let unpacked = download.join("unpacked");
    if !unpacked.join("bin/busybox").is_file() {
        bail!("{} has no bin/busybox", deb.display());
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::rename(&unpacked, &dir).with_context(|| format!("moving busybox to {}", dir.display()))?;
    fs::remove_dir_all(&download).with_context(|| format!("removing {}", download.display()))?;
    Ok(binary)
}

/// `dpkg-deb -x`: the package's files into `dir`.
fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("-x").arg(deb).arg(dir).stdin(Stdio::null());
    exec(&mut dpkg).with_context(|| format!("unpacking with `{}`", display(&dpkg)))
}

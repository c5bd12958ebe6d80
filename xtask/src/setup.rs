//! `cargo xtask setup`: make a fresh machine ready, quickly when it already is.
//!
//! Three things, each checked before anything is installed:
//! - rust-src for the nightly toolchain (the eBPF crate builds `core` itself);
//! - bpf-linker 0.13, built against the nightly toolchain's own libLLVM (the
//!   recipe in docs/platform.md: a plain `cargo install bpf-linker` wants a
//!   system LLVM that Debian 12 does not have, and linking against rustc's
//!   LLVM guarantees the bitcode versions match);
//! - the Debian packages the VM and the tests use.

use std::{
    env, fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    arch::Arch,
    exec::{exec, output, succeeds},
};

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages: QEMU and the initramfs pieces for the VM, perf and tmux
/// for comparisons and the dashboard tests, gcc, g++, clang, lld and gdb for
/// the corpus tests (they compile C and C++ programs with each compiler,
/// link them with each linker, and ask gdb and perf where their symbols
/// are and how often they are hit), binutils and xz-utils for the
/// debug-file test (objcopy, strip and xz make its separate debug files and
/// MiniDebugInfo; xz also unpacks the guest's `.ko.xz` modules), bpftool
/// for the VM (its reading of a module's BTF is a kernel test's oracle).
pub const DEBIAN_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "linux-perf",
    "tmux",
    "gcc",
    "g++",
    "clang",
    "lld",
    "gdb",
    "binutils",
    "xz-utils",
    "bpftool",
];

pub fn run() -> Result<()> {
    let start = Instant::now();
    rust_src().context("setup: rust-src for nightly")?;
    bpf_linker().context("setup: bpf-linker")?;
    debian_packages().context("setup: Debian packages")?;
    println!("setup: ready ({:.1} s)", start.elapsed().as_secs_f64());
    Ok(())
}

/// What a build, boot or test for `arch` needs besides the host's set-up.
pub fn cross(arch: Arch) -> Result<()> {
    crate::setup_cross::run(arch).with_context(|| format!("setup: {arch}"))
}

fn nightly_sysroot() -> Result<PathBuf> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("the nightly toolchain is needed to build the eBPF crate")?;
    Ok(PathBuf::from(sysroot.trim()))
}

fn rust_src() -> Result<()> {
    if !succeeds(Command::new("rustc").args(["+nightly", "--version"])) {
        println!("setup: installing the nightly toolchain (with rust-src)");
        exec(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        return Ok(());
    }
    let library = nightly_sysroot()?.join("lib/rustlib/src/rust/library");
    if library.is_dir() {
        println!("setup: rust-src for nightly: present");
        return Ok(());
    }
    println!("setup: installing rust-src for nightly");
    exec(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// A directory that outlives this build: bpf-linker keeps a run path to its
/// lib/ (docs/platform.md), so it must not be under target/ or /tmp.
fn llvm_prefix() -> Result<PathBuf> {
    let home = env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?;
    Ok(PathBuf::from(home).join(".local/share/hwbp/llvm"))
}

/// The nightly toolchain's libLLVM (`libLLVM.so.22.1-rust-1.97.0-nightly`),
/// found by pattern so that a toolchain update needs no change here.
fn nightly_libllvm() -> Result<PathBuf> {
    let lib = nightly_sysroot()?.join("lib");
    let mut found = Vec::new();
    for entry in fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let entry = entry.with_context(|| format!("reading {}", lib.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("libLLVM.so.") && name.contains("-rust-") {
            found.push(entry.path());
        }
    }
    found.sort();
    found.pop().ok_or_else(|| {
        anyhow!(
            "no libLLVM.so.*-rust-* in {}: is the nightly toolchain complete? \
             (try `rustup toolchain install nightly`)",
            lib.display()
        )
    })
}

/// The LLVM major version of a `libLLVM.so.22.1-rust-…` file name.
fn llvm_major(libllvm: &Path) -> Result<u32> {
    let name = libllvm.file_name().unwrap_or_default().to_string_lossy();
    name.strip_prefix("libLLVM.so.")
        .and_then(|rest| rest.split(['.', '-']).next())
        .and_then(|major| major.parse().ok())
        .ok_or_else(|| anyhow!("cannot read the LLVM version from {name}"))
}

/// Points `link` at `target`, replacing whatever was there.
fn ensure_symlink(target: &Path, link: &Path) -> Result<()> {
    if fs::read_link(link).is_ok_and(|current| current == target) {
        return Ok(());
    }
    if link.symlink_metadata().is_ok() {
        fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

fn bpf_linker() -> Result<()> {
    let libllvm = nightly_libllvm()?;
    let prefix = llvm_prefix()?;
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    // lib/libLLVM.so is what bpf-linker's build script links against; the
    // versioned name is the soname the linked binary asks for at run time
    // (through its run path to this directory).
    ensure_symlink(&libllvm, &lib.join("libLLVM.so"))?;
    let soname = libllvm
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", libllvm.display()))?;
    ensure_symlink(&libllvm, &lib.join(soname))?;

    let found = output(Command::new("bpf-linker").arg("--version")).ok();
    match found.as_deref().map(str::trim) {
        Some(version) if is_wanted_linker(version) => {
            println!("setup: bpf-linker: present ({version})");
            return Ok(());
        }
        Some(version) => println!(
            "setup: bpf-linker on PATH is `{version}`, not {BPF_LINKER_VERSION}: rebuilding it"
        ),
        None => {}
    }
    let feature = format!("llvm-{}", llvm_major(&libllvm)?);
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute)",
        libllvm.display()
    );
    exec(
        Command::new("cargo")
            .args([
                "install",
                "--force",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--no-default-features",
                "--features",
                &feature,
            ])
            .env("LLVM_PREFIX", &prefix),
    )?;
    match output(Command::new("bpf-linker").arg("--version")) {
        Ok(version) if is_wanted_linker(version.trim()) => Ok(()),
        Ok(version) => bail!(
            "bpf-linker {BPF_LINKER_VERSION} was installed into ~/.cargo/bin, but the bpf-linker \
             first on PATH is still `{}`: remove that one (`which bpf-linker`) or put ~/.cargo/bin \
             first on PATH",
            version.trim()
        ),
        Err(_) => bail!(
            "bpf-linker was installed but does not run: is ~/.cargo/bin on PATH, \
             and does {} resolve?",
            lib.join(soname).display()
        ),
    }
}

/// Whether `bpf-linker --version` (`bpf-linker 0.13.0`) names the release
/// series this project builds with (the same major and minor version as
/// [`BPF_LINKER_VERSION`]): other releases want another LLVM or other flags.
fn is_wanted_linker(version_output: &str) -> bool {
    let series = |version: &str| {
        let mut parts = version.split('.');
        Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
    };
    version_output
        .split_whitespace()
        .nth(1)
        .and_then(series)
        .is_some_and(|found| series(BPF_LINKER_VERSION) == Some(found))
}

pub fn is_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", package]))
        .is_ok_and(|status| status.starts_with("ii"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn debian_packages() -> Result<()> {
    if !Path::new("/usr/bin/dpkg-query").exists() {
        eprintln!(
            "setup: WARNING: not a Debian system; install by hand: {}",
            DEBIAN_PACKAGES.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| !is_installed(package))
        .collect();
    if missing.is_empty() {
        println!(
            "setup: Debian packages: present ({})",
            DEBIAN_PACKAGES.join(", ")
        );
        return Ok(());
    }
    if !is_root() {
        eprintln!(
            "setup: WARNING: missing Debian packages and not root, so not installing them: \
             {}\nsetup: WARNING: run `sudo apt-get install -y {}` (the VM needs them)",
            missing.join(", "),
            missing.join(" ")
        );
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(", "));
    exec(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_linker_versions() {
        assert!(is_wanted_linker("bpf-linker 0.13.0"));
        assert!(is_wanted_linker("bpf-linker 0.13.2\n"));
        assert!(!is_wanted_linker("bpf-linker 0.9.13"));
        assert!(!is_wanted_linker("bpf-linker 0.14.0"));
        assert!(!is_wanted_linker("bpf-linker 1.13.0"));
        assert!(!is_wanted_linker("bpf-linker"));
        assert!(!is_wanted_linker(""));
    }
}

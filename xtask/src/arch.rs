//! The architectures hwbp is built and tested for: this host's (x86-64)
//! and arm64, cross-built here and run in an emulated arm64 guest.
//!
//! Everything that differs per architecture outside the code itself is
//! here, in one place: the Rust target, Debian's name, the QEMU binary and
//! machine, the kernel metapackage and the guest's console. The BPF
//! program follows the Rust target (aya-build passes it as
//! `bpf_target_arch`), so one `--arch` chooses all of it.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::workspace_root;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    /// x86-64: this host's architecture.
    #[default]
    #[value(name = "x86-64", alias = "amd64", alias = "x86_64")]
    X86_64,
    /// arm64 (aarch64): cross-built, run under qemu-system-aarch64.
    #[value(name = "arm64", alias = "aarch64")]
    Arm64,
}

impl Arch {
    /// Debian's name (dpkg --print-architecture, package suffixes).
    pub fn debian(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// The Rust target to cross-build for, None for the host's own.
    pub fn cross_target(self) -> Option<&'static str> {
        match self {
            Self::X86_64 => None,
            Self::Arm64 => Some("aarch64-unknown-linux-gnu"),
        }
    }

    /// target/release, or target/TRIPLE/release for a cross build
    /// (honours CARGO_TARGET_DIR).
    pub fn release_dir(self) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        match self.cross_target() {
            None => target.join("release"),
            Some(triple) => target.join(triple).join("release"),
        }
    }

    /// The QEMU system emulator and the Debian package that has it.
    pub fn qemu(self) -> (&'static str, &'static str) {
        match self {
            Self::X86_64 => ("qemu-system-x86_64", "qemu-system-x86"),
            Self::Arm64 => ("qemu-system-aarch64", "qemu-system-arm"),
        }
    }

    /// The guest's serial console device.
    pub fn console(self) -> &'static str {
        match self {
            Self::X86_64 => "ttyS0",
            Self::Arm64 => "ttyAMA0",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.debian())
    }
}

//! `cargo xtask test`: every test, in the order that fails fastest.
//!
//! 1. set-up;
//! 2. release build of hwbp-trace and the fixtures;
//! 3. unit tests (host crates);
//! 4. root integration tests on this host (tests/tests/*.rs, one thread:
//!    they share the debug registers);
//! 5. kernel tests in the VM, on each kernel of the matrix (Debian's
//!    default and the newest 6.12), then checks of the VM harness itself;
//! 6. arm64: set-up and cross build, then the arm64 kernel and user tests
//!    in the arm64 guest, on Debian's arm64 6.1 and newest 6.12.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};

use crate::{arch::Arch, build, exec::exec, integration, kernel_tests, setup};

#[derive(Args)]
pub struct Options {
    /// Run only this step (after set-up and build).
    #[arg(long, value_enum)]
    only: Option<Step>,
    /// Boot the VM with KVM instead of TCG.
    #[arg(long)]
    kvm: bool,
    /// Debian kernel for the VM tests, alone (default: the matrix, what
    /// linux-image-amd64 and linux-image-6.12-amd64 depend on).
    #[arg(long, value_name = "VERSION")]
    kernel: Option<String>,
    /// arm64 alone: step 6 (set-up and cross build for arm64, then the
    /// arm64 kernel and user tests in the arm64 guest, docs/arm64.md),
    /// with `--kernel` choosing its kernel. The same as `--only arm64`.
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Step {
    Unit,
    Integration,
    Vm,
    /// Step 6, the arm64 guest (which needs no root on the host).
    Arm64,
}

pub fn run(options: Options) -> Result<()> {
    let Options {
        only,
        kvm,
        kernel,
        arch,
    } = options;
    let start = Instant::now();
    let only = if arch == Arch::Arm64 {
        Some(Step::Arm64)
    } else {
        only
    };
    if only == Some(Step::Arm64) {
        arm64(kernel.as_deref())?;
        println!(
            "test: arm64 passed in {:.0} s",
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let wanted = |step: Step| only.is_none_or(|only| only == step);
    // SAFETY: geteuid has no preconditions and cannot fail.
    needs_root(only, unsafe { libc::geteuid() })?;
    banner("1/6 set-up");
    setup::run().context("test step 1/6 (set-up) failed")?;
    banner("2/6 release build");
    build::run().context("test step 2/6 (release build of hwbp-trace and the fixtures) failed")?;
    if wanted(Step::Unit) {
        banner("3/6 unit tests");
        exec(&mut build::cargo(&[
            "test",
            "--workspace",
            "--exclude",
            "hwbp-ebpf",
            "--exclude",
            "hwbp-tests",
        ]))
        .context("test step 3/6 (unit tests) failed")?;
    }
    if wanted(Step::Integration) {
        banner("4/6 root integration tests on this host");
        integration::run()
            .context("test step 4/6 (root integration tests, tests/tests/*.rs) failed")?;
    }
    if wanted(Step::Vm) {
        banner("5/6 kernel tests in the VM");
        kernel_tests::run_matrix(kernel.as_deref(), kvm)
            .context("test step 5/6 (kernel tests in the VM) failed")?;
    }
    if wanted(Step::Arm64) {
        // arm64 has its own kernels: `--kernel` names an x86-64 one here.
        let step = Instant::now();
        arm64(None).context("test step 6/6 (arm64 kernel and user tests) failed")?;
        println!(
            "test: step 6/6 (arm64) passed in {:.0} s",
            step.elapsed().as_secs_f64()
        );
    }
    println!(
        "test: all steps passed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Step 6: the arm64 set-up, cross build and tests in the arm64 guest,
/// on `kernel` or on arm64's matrix.
fn arm64(kernel: Option<&str>) -> Result<()> {
    banner("6/6 arm64: set-up and cross build");
    setup::run().and_then(|()| setup::cross(Arch::Arm64))?;
    build::run_for(Arch::Arm64)?;
    banner("6/6 arm64: kernel and user tests in the arm64 guest");
    kernel_tests::arm64::run_matrix(kernel).context("the arm64 kernel tests failed")
}

/// The root integration tests need root (hardware breakpoints, BPF): refuse
/// up front, in one message, rather than let them be skipped, which would
/// pass without testing. Only `--only unit` and `--only vm` run without it.
fn needs_root(only: Option<Step>, euid: u32) -> Result<()> {
    let integration = only.is_none_or(|only| only == Step::Integration);
    if integration && euid != 0 {
        bail!(
            "cargo xtask test must run as root: the integration tests arm hardware breakpoints \
             and load BPF. Run `sudo -E cargo xtask test` (or `--only unit` for the unit tests alone)"
        );
    }
    Ok(())
}

fn banner(step: &str) {
    println!("\n===== xtask test: {step} =====");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_required_for_the_integration_tests() {
        for only in [None, Some(Step::Integration)] {
            let err = needs_root(only, 1000).expect_err("not root");
            assert!(err.to_string().contains("must run as root"), "{err}");
            assert!(needs_root(only, 0).is_ok());
        }
        assert!(needs_root(Some(Step::Unit), 1000).is_ok());
        assert!(needs_root(Some(Step::Vm), 1000).is_ok());
        assert!(needs_root(Some(Step::Arm64), 1000).is_ok());
    }
}

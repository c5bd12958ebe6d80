//! Kernel tests: each one, in the modules below, is a [`KernelTest`]: the
//! shell commands it runs in the VM (its scenario) beside the check of what
//! they left. This module boots the guest with the scenarios, in the order
//! of the tables, as the script tests/vm/kernel-tests.sh runs (it provides
//! their helpers and the facts about the kernel), then checks every
//! scenario against the ground truth its fixture made (N calls → N hits,
//! values written → values seen). It runs them on each kernel of the
//! matrix, and once, checks of the VM harness itself ([`vm_harness`]).
//!
//! To add a kernel test: a `KernelTest` const beside its check function in
//! the module of its kind ([`by_command`], [`system_wide`], [`limits`],
//! [`conditions`]),
//! and its name in [`SERIAL`] (or [`PARALLEL`], for the boot whose vCPUs
//! run in parallel).

pub mod arm64;
mod by_command;
mod conditions;
mod fields;
mod limits;
mod live;
mod results;
mod system_wide;
mod vm_harness;

use std::{
    fs,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use self::results::{KernelTest, Results};
use crate::{
    vm::{self, Kernel},
    workspace_root,
};

/// The tests of the first boot, whose vCPUs take turns on one host
/// thread, in the order they run.
const SERIAL: &[KernelTest] = &[
    by_command::GETPGID,
    by_command::PIDMAX,
    by_command::RW_READS,
    by_command::RW_MIXED,
    by_command::KSYM_RW,
    by_command::KSYM_W,
    by_command::KSYM_X,
    by_command::OFFSET,
    by_command::ADDR_W,
    by_command::ADDR_X,
    by_command::VFS_ARGS,
    by_command::VFS_COMM,
    by_command::THROTTLE,
    by_command::REARM,
    conditions::VFS_COND,
    conditions::PIDMAX_COND,
    fields::SOMAXCONN,
    fields::CDROM,
    system_wide::SYSWIDE,
    system_wide::SYSAGG,
    system_wide::SYSCOMM,
    live::LIVE_MOVE,
    limits::FIVE,
    limits::FOUR,
    limits::BLACKLISTED,
    limits::MISALIGNED,
    limits::READONLY,
    limits::PERCPU,
    system_wide::DEMO,
];

/// The tests of the second boot: each vCPU has a host thread of its own
/// (`--mttcg`), and nothing there may flip a static key (no per-task perf
/// event), which could crash that guest (see vm/).
const PARALLEL: &[KernelTest] = &[system_wide::CONTENDED];

/// The tests of the third boot: [`WIDE_CPUS`] vCPUs, a host thread each,
/// the same rule as [`PARALLEL`]'s.
const WIDE: &[KernelTest] = &[system_wide::EIGHT];

/// The third boot's vCPUs: many CPUs hitting one target at once.
const WIDE_CPUS: u32 = 8;

/// The scenarios of `tests`, in order, as one script for kernel-tests.sh.
fn scenarios(tests: &[KernelTest]) -> String {
    tests
        .iter()
        .map(|test| format!("# {}\n{}\n", test.name, test.scenario.trim()))
        .collect()
}

/// The kernels `cargo xtask test` checks unless given `--kernel`: what
/// linux-image-amd64 depends on (Debian 12: 6.1), and the newest 6.12 apt
/// offers (Debian 12's bookworm-security has linux-image-6.12-amd64).
const MATRIX: &[(&str, Option<&str>)] = &[
    ("default kernel (linux-image-amd64)", None),
    ("newest 6.12 (linux-image-6.12-amd64)", Some("6.12")),
];

/// The kernel tests on every kernel of the matrix (or only `requested`),
/// then the harness checks once; a summary line per kernel with its time.
pub fn run_matrix(requested: Option<&str>, kvm: bool) -> Result<()> {
    let kernels: Vec<(String, Option<&str>)> = match requested {
        Some(version) => vec![(format!("--kernel {version}"), requested)],
        None => MATRIX
            .iter()
            .map(|(label, version)| ((*label).to_owned(), *version))
            .collect(),
    };
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for (i, (label, request)) in kernels.iter().enumerate() {
        println!("\n----- kernel {}/{}: {label} -----", i + 1, kernels.len());
        let start = Instant::now();
        let outcome = vm::fetch_kernel(*request).map(|kernel| {
            let counts = run(&kernel, kvm);
            (kernel.package, counts)
        });
        let took = start.elapsed().as_secs_f64();
        match outcome {
            Ok((package, Ok(passed))) => {
                lines.push(format!(
                    "{label}: {package}: {passed} passed, 0 failed in {took:.0} s"
                ));
            }
            Ok((package, Err(error))) => {
                lines.push(format!(
                    "{label}: {package}: FAILED in {took:.0} s: {error:#}"
                ));
                failed.push(package);
            }
            Err(error) => {
                lines.push(format!("{label}: FAILED: {error:#}"));
                failed.push(label.clone());
            }
        }
    }
    println!("\n----- harness checks (time-out, boot retry, panic, dashboard) -----");
    let start = Instant::now();
    let harness = vm_harness::run(requested, kvm);
    let took = start.elapsed().as_secs_f64();
    match &harness {
        Ok(passed) => lines.push(format!("harness: {passed} passed, 0 failed in {took:.0} s")),
        Err(error) => lines.push(format!("harness: FAILED in {took:.0} s: {error:#}")),
    }
    println!();
    for line in &lines {
        println!("kernel-tests: {line}");
    }
    if !failed.is_empty() {
        bail!("kernel tests failed on {}", failed.join(", "));
    }
    harness.map(|_| ())
}

/// Boots the VM twice, runs every scenario, checks them all; fails if any
/// fails; returns how many passed. The first boot runs one host thread for
/// both vCPUs, as every boot does by default (see vm/); the second gives
/// each vCPU a thread of its own for the scenarios that need both CPUs in
/// the handler at the same instant, and none of them flips a static key.
pub fn run(kernel: &Kernel, kvm: bool) -> Result<usize> {
    let exec_offset = exec_offset(kernel)?;
    let out_dir = workspace_root()
        .join("target/vm-tests")
        .join(&kernel.package);
    let parallel_dir = out_dir.join("parallel");
    let wide_dir = out_dir.join("wide");
    let mut failed = Vec::new();
    for (dir, mttcg, cpus, tests) in [
        (&out_dir, false, vm::CPUS, SERIAL),
        (&parallel_dir, true, vm::CPUS, PARALLEL),
        (&wide_dir, true, WIDE_CPUS, WIDE),
    ] {
        let command = [
            "/vm/kernel-tests.sh".to_owned(),
            format!("{exec_offset:#x}"),
            scenarios(tests),
        ];
        let outcome = vm::boot(&vm::Boot {
            kernel,
            command: &command,
            kvm,
            timeout: Some(Duration::from_secs(900)),
            boot_timeout: vm::BOOT_TIMEOUT,
            mttcg,
            cpus,
            interactive: false,
            out_dir: dir,
        })?;
        ensure!(
            outcome.exit == 0,
            "the guest test script exited {} (see the console above)",
            outcome.exit
        );
        let results = Results::load(dir, exec_offset)?;
        for KernelTest { name, check, .. } in tests {
            match check(&results) {
                Ok(()) => println!("kernel test {name} ... ok"),
                Err(error) => {
                    println!("kernel test {name} ... FAILED\n    {error:#}");
                    if let Ok(cmd) = fs::read_to_string(dir.join(format!("{name}.cmd"))) {
                        println!("    command: {}", cmd.trim());
                    }
                    failed.push(*name);
                }
            }
        }
    }
    println!(
        "kernel-tests: the guest's files are in {}",
        out_dir.display()
    );
    let total = SERIAL.len() + PARALLEL.len() + WIDE.len();
    // Alone on its line: CI reads it as the test count.
    println!(
        "kernel-tests: {}: {} passed, {} failed",
        kernel.package,
        total - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        bail!("kernel tests failed: {}", failed.join(", "));
    }
    Ok(total)
}

/// An instruction boundary inside a system call function: the first
/// instruction is `call __fentry__` (5 bytes, a NOP until ftrace uses it),
/// preceded by endbr64 (4 bytes) when the kernel has IBT.
fn exec_offset(kernel: &Kernel) -> Result<u64> {
    let config = fs::read_to_string(&kernel.config)
        .with_context(|| format!("reading {}", kernel.config.display()))?;
    let enabled = |option: &str| config.lines().any(|line| line == format!("{option}=y"));
    ensure!(
        enabled("CONFIG_FUNCTION_TRACER") && enabled("CONFIG_HAVE_FENTRY"),
        "{} lacks fentry call sites: the SYMBOL+OFFSET test does not know an instruction boundary",
        kernel.package
    );
    Ok(if enabled("CONFIG_X86_KERNEL_IBT") {
        4
    } else {
        5
    })
}

/// The scenarios of `tests`, as one script, are valid sh (`sh -n`).
#[cfg(test)]
fn assert_scenarios_parse(tests: &[KernelTest]) {
    let script = scenarios(tests);
    let out = std::process::Command::new("sh")
        .args(["-n", "-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("running sh -n: {e}"));
    assert!(
        out.status.success(),
        "sh -n: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Each test's name is its own and names the files its scenario
    /// leaves (`run NAME`, `start NAME`, `rearm$i`, `demo.rc`).
    #[test]
    fn every_scenario_leaves_files_under_its_own_name() {
        let mut names = HashSet::new();
        for test in SERIAL.iter().chain(PARALLEL).chain(WIDE) {
            assert!(names.insert(test.name), "{} twice", test.name);
            assert!(
                test.scenario.contains(test.name),
                "the scenario of {} does not name its files after it",
                test.name
            );
        }
    }

    /// The scenarios of each boot are valid sh (`sh -n`).
    #[test]
    fn the_scenarios_parse_as_sh() {
        for tests in [SERIAL, PARALLEL, WIDE] {
            assert_scenarios_parse(tests);
        }
    }
}

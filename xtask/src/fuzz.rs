//! `cargo xtask fuzz`: the property tests of hwbp-user/tests/fuzz_*.rs (the
//! target grammar, the JSONL reader and `report`, the ELF, kallsyms and maps
//! readers) with many more cases than the test suite's 256.
//!
//! proptest rather than cargo-fuzz: it runs on stable, shrinks a failure to
//! a small input, and the same properties run in every `cargo test`. A debug
//! build on purpose: integer overflow panics there, and a panic is a finding.
//! Failures are saved in hwbp-user/tests/*.proptest-regressions and replayed
//! first by every later run: commit them with the fix.

use std::{process::Command, time::Instant};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{exec::exec, setup, workspace_root};

/// The test targets holding the properties.
const TARGETS: &[&str] = &["fuzz_target", "fuzz_trace", "fuzz_readers"];

#[derive(Args)]
pub struct Options {
    /// Cases per property (whole-file `report` properties run a tenth).
    /// 20000 take 5 to 15 minutes on 2 cores, depending on load.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    cases: u32,
    /// Only properties whose name contains this (e.g. `round_trip`).
    filter: Option<String>,
    /// Also run properties the test suite ignores: known findings awaiting a fix.
    #[arg(long)]
    include_ignored: bool,
    /// Seed proptest's random number generator, for a run that can be repeated.
    #[arg(long, value_name = "SEED")]
    seed: Option<u64>,
}

pub fn run(options: Options) -> Result<()> {
    let Options {
        cases,
        filter,
        include_ignored,
        seed,
    } = options;
    // hwbp-user's build script builds the BPF object: it needs the
    // toolchain pieces that set-up installs.
    setup::run().context("fuzz: set-up failed")?;
    // The same debug build as the unit tests of `cargo xtask test` (frame
    // pointers come from .cargo/config.toml for every build).
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root())
        // Every target runs even when one fails: one report of all findings.
        .args(["test", "--no-fail-fast", "-p", "hwbp-user"])
        .env("PROPTEST_CASES", cases.to_string());
    for target in TARGETS {
        cmd.args(["--test", target]);
    }
    cmd.arg("--");
    if let Some(filter) = &filter {
        cmd.arg(filter);
    }
    if include_ignored {
        cmd.arg("--include-ignored");
    }
    if let Some(seed) = seed {
        // proptest's RNG seed for every property (PROPTEST_RNG_SEED).
        cmd.env("PROPTEST_RNG_SEED", seed.to_string());
    }
    println!(
        "fuzz: {cases} cases per property ({} for whole files){}",
        (cases / 10).max(256).min(cases),
        if include_ignored {
            ", known findings included"
        } else {
            ""
        }
    );
    let start = Instant::now();
    exec(&mut cmd).context(
        "fuzz: a property failed; the minimal input is printed above and saved in \
         hwbp-user/tests/*.proptest-regressions (commit it with the fix)",
    )?;
    println!(
        "fuzz: all properties held ({:.0} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

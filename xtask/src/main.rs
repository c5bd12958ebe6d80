//! `cargo xtask`: everything around the code that is not the code.
//!
//! One module per command; each command first runs `setup` so that a fresh
//! machine needs nothing but `cargo xtask test` (which is what CI runs).

mod arch;
mod bench;
mod bench_vm;
mod build;
mod cpio;
mod demo;
mod exec;
mod fuzz;
mod install;
mod integration;
mod kernel_tests;
mod man;
mod setup;
mod setup_cross;
mod test;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "hwbp automation", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make this machine ready: rust-src for nightly, bpf-linker, QEMU and
    /// friends. Idempotent and quick when already done.
    Setup,
    /// Release build of hwbp-trace and the test fixtures (frame pointers on).
    Build(build::Options),
    /// Build, then copy hwbp-trace to /usr/local/bin.
    Install(install::Options),
    /// Boot Debian's kernel in QEMU and run a command there (default: a shell).
    Vm(vm::Options),
    /// Every test: unit, root integration tests on this host, kernel tests in the VM.
    Test(test::Options),
    /// The main job, shown: trace a kernel function and a kernel variable in the VM.
    Demo(demo::Options),
    /// Man pages of hwbp-trace from its clap definitions (target/docs/man).
    Man(man::Options),
    /// Shell completions of hwbp-trace: bash, zsh, fish, elvish, PowerShell.
    Completions(man::Options),
    /// Property tests of the target grammar and the JSONL reader, with many cases.
    Fuzz(fuzz::Options),
    /// Measure per-hit cost, start-up, sustained rate and memory, side by
    /// side with perf; rewrites BENCHMARKS.md. Reports, never gates.
    Bench(bench::Options),
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let result = match command {
        Command::Setup => setup::run().map(|()| 0),
        Command::Build(options) => build::command(options).map(|()| 0),
        Command::Install(options) => install::run(options).map(|()| 0),
        Command::Vm(options) => vm::run(options),
        Command::Test(options) => test::run(options).map(|()| 0),
        Command::Demo(options) => demo::run(options).map(|()| 0),
        Command::Man(options) => man::run(man::Kind::Man, options).map(|()| 0),
        Command::Completions(options) => man::run(man::Kind::Completions, options).map(|()| 0),
        Command::Fuzz(options) => fuzz::run(options).map(|()| 0),
        Command::Bench(options) => bench::run(options).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

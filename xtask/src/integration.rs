//! Step 4 of `cargo xtask test`: the root integration tests, and reruns of
//! the tests that failed, only on a host that lost debug exceptions.
//!
//! Some KVM hosts lose a debug exception's cause now and then: the guest
//! takes the #DB with DR6 empty, the kernel cannot attribute it to a
//! breakpoint, so no perf event counts the hit, and it sends the task a
//! SIGTRAP as if it had run `int1` (exc_debug_user in
//! arch/x86/kernel/traps.c; si_code TRAP_BRKPT). `perf stat -e mem:ADDR:x`
//! alone shows it (how often, on such a host: docs/limitations.md). A test
//! of exact counts cannot pass then, and no tracer can do better: the hit
//! never reached one.
//!
//! The same host also silences breakpoints after their first hit when it
//! comes within a millisecond or two of arming, with no SIGTRAP
//! (docs/limitations.md). Against that one, every fixture sleeps
//! START_DELAY_MS before its first hit, but for one test of a single call,
//! which that fault cannot touch.
//!
//! So the fixture notes every SIGTRAP it gets in `$HWBP_FX_FAULTS` and goes
//! on (tests/src/bin/fx_user.rs): at an execute breakpoint the instruction
//! traps again and the hit is counted then, so most tests still pass. If
//! tests failed in a run where the fixture noted none, the step fails. If
//! it noted some, each failed test is run again, alone, up to RERUNS times,
//! and must pass once. On a healthy host nothing is rerun.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{build, exec::display, workspace_root};

/// Attempts at a failed test after the run it failed in.
const RERUNS: usize = 5;

/// How long each fixture sleeps before its first hit
/// (`$HWBP_FX_START_DELAY_MS`): past the window of the second fault above,
/// ten times what sufficed there (docs/limitations.md).
const START_DELAY_MS: &str = "20";

/// A failed test: its test binary and its name.
#[derive(Debug, PartialEq, Eq)]
struct Failed {
    binary: PathBuf,
    name: String,
}

pub fn run() -> Result<()> {
    let faults = workspace_root().join("target/hwbp-fx-faults");
    remove(&faults)?;
    let mut cargo = build::cargo(&[
        "test",
        "--release",
        "-p",
        "hwbp-tests",
        "--no-fail-fast",
        "--",
        "--test-threads=1",
    ]);
    cargo.env("HWBP_FX_FAULTS", &faults);
    cargo.env("HWBP_FX_START_DELAY_MS", START_DELAY_MS);
    let (ok, failed) = run_and_parse(&mut cargo, None)?;
    if ok {
        return Ok(());
    }
    let lost = count_lines(&faults)?;
    if failed.is_empty() {
        bail!("`{}` failed before any test failed", display(&cargo));
    }
    let names = failed
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if lost == 0 {
        bail!(
            "{} tests failed ({names}), and no debug exception was lost",
            failed.len()
        );
    }
    println!(
        "\nxtask test: {} tests failed ({names}) in a run where this host lost {lost} debug \
         exceptions (the fixture got SIGTRAPs: DR6 empty; see xtask/src/integration.rs). \
         Rerunning each alone, up to {RERUNS} times.",
        failed.len()
    );
    for test in &failed {
        rerun(test, &faults)?;
    }
    Ok(())
}

/// Runs `test` alone until it passes, at most RERUNS times.
fn rerun(test: &Failed, faults: &Path) -> Result<()> {
    for attempt in 1..=RERUNS {
        remove(faults)?;
        let mut cmd = Command::new(&test.binary);
        cmd.args(["--exact", &test.name, "--test-threads=1"])
            .current_dir(workspace_root().join("tests"))
            .env("HWBP_FX_FAULTS", faults)
            .env("HWBP_FX_START_DELAY_MS", START_DELAY_MS);
        let (ok, _) = run_and_parse(&mut cmd, Some(&test.binary))?;
        if ok {
            println!("xtask test: {} passed on rerun {attempt}", test.name);
            return Ok(());
        }
        println!(
            "xtask test: {} failed on rerun {attempt}; {} debug exceptions lost",
            test.name,
            count_lines(faults)?
        );
    }
    bail!("{} failed all {RERUNS} reruns", test.name)
}

/// Runs `cmd` with its stdout and stderr shown as they come, and returns
/// whether it succeeded and the tests it reported failed: `cargo test`'s
/// output names the binaries, a test binary's is from `binary`.
fn run_and_parse(cmd: &mut Command, binary: Option<&Path>) -> Result<(bool, Vec<Failed>)> {
    let line = display(cmd);
    // One pipe for both: cargo says which binary runs next ("Running …") on
    // stderr, the binary says which tests failed on stdout, in that order.
    let (reader, writer) = std::io::pipe().context("pipe")?;
    cmd.stdout(writer.try_clone().context("pipe")?)
        .stderr(writer);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start `{line}`"))?;
    // Close this process's ends of the pipe (`cmd` holds them), or reading
    // it would never end.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut parser = Parser {
        binary: binary.map(Path::to_path_buf),
        ..Parser::default()
    };
    let mut stdout = std::io::stdout().lock();
    for text in BufReader::new(reader).lines() {
        let text = text.with_context(|| format!("reading the output of `{line}`"))?;
        writeln!(stdout, "{text}").context("stdout")?;
        parser.line(&text);
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{line}`"))?;
    let Some(failed) = parser.failed() else {
        bail!("`{line}` failed, and which tests failed could not be read from its output");
    };
    Ok((status.success(), failed))
}

/// Reads `cargo test`'s output, or a test binary's, for the tests that failed.
///
/// The names come from the list libtest ends a binary's output with (the
/// last "failures:" block before "test result:"), not from the "test NAME
/// ... FAILED" lines, which a fixture's stderr can split; the counts on the
/// "test result:" lines check them.
#[derive(Default)]
struct Parser {
    /// The binary the lines are from: cargo's last "Running" line.
    binary: Option<PathBuf>,
    /// Names in the current "failures:" block.
    block: Vec<String>,
    failed: Vec<Failed>,
    /// The sum of the "N failed" counts of the "test result:" lines.
    count: usize,
}

impl Parser {
    fn line(&mut self, text: &str) {
        // "Running tests/core.rs (target/release/deps/core-0123abcd)"
        if let Some(rest) = text.trim().strip_prefix("Running ")
            && let Some((_, path)) = rest.rsplit_once('(')
            && let Some(path) = path.strip_suffix(')')
        {
            self.binary = Some(workspace_root().join(path));
        } else if text == "failures:" {
            self.block.clear();
        } else if let Some(name) = text.strip_prefix("    ")
            && !name.is_empty()
            && !name.contains(char::is_whitespace)
        {
            self.block.push(name.to_string());
        } else if let Some(result) = text.strip_prefix("test result: ") {
            let failed = result
                .split(';')
                .find_map(|part| part.trim().strip_suffix(" failed"))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            self.count += failed;
            if failed > 0
                && let Some(binary) = &self.binary
            {
                self.failed.extend(self.block.drain(..).map(|name| Failed {
                    binary: binary.clone(),
                    name,
                }));
            }
            self.block.clear();
        }
    }

    /// The failed tests, if their names account for every failure counted.
    fn failed(self) -> Option<Vec<Failed>> {
        (self.failed.len() == self.count).then_some(self.failed)
    }
}

/// Lines in `path`; 0 when it does not exist.
pub fn count_lines(path: &Path) -> Result<usize> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Option<Vec<Failed>> {
        let mut parser = Parser::default();
        for text in lines {
            parser.line(text);
        }
        parser.failed()
    }

    #[test]
    fn failed_tests_are_named_with_their_binary() {
        let failed = parse(&[
            "     Running unittests src/lib.rs (target/release/deps/hwbp_tests-11)",
            "test tests::ok_one ... ok",
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
            "     Running tests/core.rs (target/release/deps/core-22)",
            // A fixture's stderr can split libtest's line.
            "test a_reader_behind ... fx_user: SIGTRAP, going on; si_code 1",
            "FAILED",
            "test execute_target_counts_every_call ... FAILED",
            "failures:",
            "",
            "---- a_reader_behind stdout ----",
            "    left: 1",
            "             at ./tests/core.rs:505:5",
            "",
            "failures:",
            "    a_reader_behind",
            "    execute_target_counts_every_call",
            "",
            "test result: FAILED. 31 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
            "     Running tests/tui.rs (target/release/deps/tui-33)",
            "failures:",
            "    dashboard_counts",
            "test result: FAILED. 5 passed; 1 failed; 0 ignored",
        ])
        .expect("every failure named");
        let root = workspace_root();
        let failed: Vec<_> = failed
            .iter()
            .map(|f| {
                (
                    f.binary.strip_prefix(&root).expect("joined to it"),
                    f.name.as_str(),
                )
            })
            .collect();
        assert_eq!(
            failed,
            [
                (Path::new("target/release/deps/core-22"), "a_reader_behind"),
                (
                    Path::new("target/release/deps/core-22"),
                    "execute_target_counts_every_call"
                ),
                (Path::new("target/release/deps/tui-33"), "dashboard_counts"),
            ]
        );
    }

    #[test]
    fn failures_without_names_are_not_taken_for_none() {
        // A result line counting failures the list did not name.
        assert!(
            parse(&[
                "     Running tests/core.rs (target/release/deps/core-22)",
                "test result: FAILED. 31 passed; 2 failed; 0 ignored",
            ])
            .is_none()
        );
        // Names without a binary.
        assert!(
            parse(&[
                "failures:",
                "    orphan",
                "test result: FAILED. 0 passed; 1 failed",
            ])
            .is_none()
        );
        assert_eq!(
            parse(&["test result: ok. 3 passed; 0 failed"]),
            Some(vec![])
        );
    }
}

//! `hwbp-trace doctor`: what this host can trace, checked for real and
//! explained in plain words, one line per check with what to do about it.
//!
//! Configuration files can lie (a config file of another kernel, a missing
//! /boot), so every check that can be made by trying is made by trying:
//! the BPF program and its ring buffer are loaded, a kernel execute
//! breakpoint is opened (disabled) and closed again, the debug registers are
//! counted by taking them, and a self-test traces a function and a variable
//! of hwbp-trace itself and expects an exact number of hits.
//!
//! Nothing is left armed: every perf event is opened disabled (or armed on
//! this thread only) and closed before the next check.

use std::fmt;

use thiserror::Error;

mod checks;
mod self_test;

use checks::*;
use self_test::self_test;
pub use self_test::{HWBP_DOCTOR_COUNTER, SELF_TEST_CALLS, hwbp_doctor_target};

use crate::{
    host::{
        cpus,
        kernel::{ConfigOption, KernelConfig},
    },
    target::resolve::Kallsyms,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        })
    }
}

/// One check: what was found and, unless all is well, what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub found: String,
    pub todo: Option<String>,
}

impl Check {
    fn ok(name: &'static str, found: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            found: found.into(),
            todo: None,
        }
    }

    fn warn(name: &'static str, found: impl Into<String>, todo: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Warn,
            found: found.into(),
            todo: Some(todo.into()),
        }
    }

    fn fail(name: &'static str, found: impl Into<String>, todo: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            found: found.into(),
            todo: Some(todo.into()),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            name,
            status,
            found,
            todo,
        } = self;
        write!(f, "{:<5} {name:<26} {found}", status.to_string())?;
        if let Some(todo) = todo {
            write!(f, " → {todo}")?;
        }
        Ok(())
    }
}

/// Whether a kind of target works on this host; `None` when it could not
/// be told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub user_targets: bool,
    pub kernel_functions: Option<bool>,
    pub kernel_variables_by_name: Option<bool>,
    pub kernel_data_watchpoints: Option<bool>,
    /// Why kernel functions do not work, for the verdict line.
    pub kernel_functions_why: String,
    pub kernel_variables_why: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            user_targets,
            kernel_functions,
            kernel_variables_by_name,
            kernel_data_watchpoints,
            kernel_functions_why,
            kernel_variables_why,
        } = self;
        let mut works = Vec::new();
        let mut fails = Vec::new();
        let mut unknown = Vec::new();
        let mut sort = |what: String, state: Option<bool>| match state {
            Some(true) => works.push(what),
            Some(false) => fails.push(what),
            None => unknown.push(what),
        };
        let modes = if cfg!(target_arch = "x86_64") {
            "x, w, rw"
        } else {
            "x, w, rw, r"
        };
        sort(format!("user-space targets ({modes})"), Some(*user_targets));
        match kernel_functions {
            Some(false) => sort(
                format!("kernel functions ({kernel_functions_why})"),
                Some(false),
            ),
            state => sort("kernel functions (x)".into(), *state),
        }
        match (kernel_variables_by_name, kernel_data_watchpoints) {
            (Some(true), Some(true)) => sort("kernel variables by name (w, rw)".into(), Some(true)),
            (by_name, Some(true)) => {
                sort(
                    "kernel variables by address (0xADDRESS:w, :rw)".into(),
                    Some(true),
                );
                match by_name {
                    Some(false) => sort(
                        format!("kernel variables by name ({kernel_variables_why})"),
                        Some(false),
                    ),
                    _ => sort("kernel variables by name".into(), None),
                }
            }
            (_, state) => sort("kernel variables (w, rw)".into(), *state),
        }
        let list = |v: &[String]| {
            if v.is_empty() {
                "nothing".to_owned()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "verdict: works here: {}; does not work: {}",
            list(&works),
            list(&fails)
        )?;
        if !unknown.is_empty() {
            write!(f, "; not known: {}", unknown.join(", "))?;
        }
        Ok(())
    }
}

/// Every check, in order, and the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
    pub verdict: Verdict,
}

impl Report {
    /// Checks that failed; any of them means hwbp cannot do its main job.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DoctorError {
    #[error("{} essential check(s) failed ({}): see the lines marked `fail` above", .0.len(), .0.join(", "))]
    Failed(Vec<&'static str>),
}

/// `hwbp-trace doctor`: prints each check as it completes, then the verdict.
/// Fails when something the main features need does not work.
pub fn run() -> Result<(), DoctorError> {
    let report = examine(|check| println!("{check}"));
    println!("{}", report.verdict);
    let failed = report.failed();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(DoctorError::Failed(failed))
    }
}

/// Runs every check, handing each to `progress` as soon as it is known.
pub fn examine(mut progress: impl FnMut(&Check)) -> Report {
    let mut checks = Vec::new();
    let mut push = |check: Check| {
        progress(&check);
        checks.push(check);
    };
    let mut verdict = Verdict::default();

    let privileged = privileges();
    let privileges_ok = privileged.status == Status::Ok;
    push(privileged);
    push(kernel_version());
    let ring = ring_buffer(privileges_ok);
    let ring_ok = ring.status == Status::Ok;
    push(ring);
    push(btf());
    let config = KernelConfig::read();
    let kallsyms = Kallsyms::load()
        .ok()
        .filter(|k| !k.is_empty() && !k.is_restricted());
    let cpu = cpus::online()
        .ok()
        .and_then(|cpus| cpus.first().copied())
        .unwrap_or(0);

    let (check, functions) = kernel_functions(&config, kallsyms.as_ref(), cpu);
    verdict.kernel_functions = functions;
    verdict.kernel_functions_why = match config.option("CONFIG_KPROBES") {
        ConfigOption::NotSet => "no CONFIG_KPROBES".into(),
        _ => "refused by the kernel".into(),
    };
    push(check);
    let (check, by_name) = kernel_variables(&config, kallsyms.as_ref());
    verdict.kernel_variables_by_name = by_name;
    verdict.kernel_variables_why = match config.option("CONFIG_KALLSYMS_ALL") {
        ConfigOption::NotSet => "no CONFIG_KALLSYMS_ALL".into(),
        _ => "not in /proc/kallsyms".into(),
    };
    push(check);
    let (check, data) = kernel_data_watchpoints(kallsyms.as_ref(), cpu);
    verdict.kernel_data_watchpoints = data;
    push(check);
    push(paranoid(privileges_ok));
    push(sample_rate(&config));
    let registers = debug_registers();
    let registers_ok = registers.status != Status::Fail;
    push(registers);
    // Only where it matters (arm): x86 needs no step, and its report stays
    // as it was.
    let step = single_step();
    let step_ok = step.status != Status::Fail;
    if !cfg!(target_arch = "x86_64") {
        push(step);
    }
    let tests = if !step_ok {
        vec![Check::fail(
            "self-test",
            "not run: this kernel would trap forever on a breakpoint with a BPF program",
            "see the single step check",
        )]
    } else if ring_ok && registers_ok {
        self_test()
    } else {
        vec![Check::fail(
            "self-test",
            "not run: the BPF ring buffer or the debug registers are unavailable",
            "fix the checks marked `fail` first",
        )]
    };
    verdict.user_targets = tests.first().is_some_and(|test| test.status == Status::Ok);
    for test in tests {
        push(test);
    }
    Report { checks, verdict }
}

#[cfg(test)]
mod tests;

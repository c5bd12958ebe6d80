//! Targets' conditions (`TARGET if COND`), compiled once the targets are
//! resolved and their types known, and handed to the BPF program with the
//! value each target's `old` starts from, before anything is armed: a
//! condition naming what the target does not have is a usage error that
//! arms nothing.

use hwbp_common::CondProgram;
use thiserror::Error;

use crate::{
    record::values::{Values, condition_operands},
    target::{btf::Btf, condition::ConditionError, resolve::Breakpoint},
};

/// A condition that does not fit its target (exit 2).
#[derive(Debug, Error)]
#[error("bad condition in `{target} if {}`: {error}", .error.text)]
pub struct CompileError {
    pub target: String,
    pub error: ConditionError,
}

/// Per slot, the compiled condition and the initial `old` (None without a
/// condition). `pid` is the traced process; `btf` the kernel's, for
/// kernel targets.
pub(super) fn compile(
    breakpoints: &[Breakpoint],
    pid: Option<i32>,
    btf: Option<&Btf>,
) -> Result<Vec<Option<(CondProgram, u64)>>, CompileError> {
    if breakpoints.iter().all(|bp| bp.spec.condition.is_none()) {
        return Ok(vec![None; breakpoints.len()]);
    }
    let operands = condition_operands(breakpoints, pid, btf);
    // What the memory holds now: the first hit's `old`.
    let initial = Values::initial(breakpoints, pid);
    breakpoints
        .iter()
        .zip(operands)
        .zip(initial)
        .map(|((bp, operands), initial)| {
            let Some(condition) = &bp.spec.condition else {
                return Ok(None);
            };
            let program = condition.compile(&operands).map_err(|error| CompileError {
                target: bp.spec.text.clone(),
                error,
            })?;
            log::debug!("{} if {condition}: {program:?}", bp.spec.text);
            Ok(Some((program, initial.unwrap_or(0))))
        })
        .collect()
}

//! Changing the targets while tracing: the commands (`add`, `move`,
//! `remove`, `pause`, `resume`) that `--control` and the dashboard's keys
//! give, applied to the perf events ([`crate::probe::live`]), the BPF
//! program's configuration, the records' names and the statistics, each
//! all or nothing: a command that fails changes nothing and says why.
//!
//! The order of a move keeps every hit on its target (docs/design.md):
//! the new address's entry, with the same target id, goes into the
//! program's configuration before any breakpoint moves; the old one is
//! removed only once every breakpoint has moved. A hit at either address
//! in between finds an entry with the target's id.

use std::{str::FromStr, sync::Arc};

use hwbp_common::{CondProgram, MAX_SLOTS};
use thiserror::Error;

use super::{StackMode, collector::Collector, target_info};
use crate::{
    output::stats::{SharedStats, TargetStats, monotonic_ns},
    probe::{
        arm::Armed,
        live::{LiveError, MoveMethod},
        load::{LoadError, Probe, StackChoice},
    },
    record::format::ChangeRecord,
    target::{
        TargetError, TargetSpec,
        resolve::{Breakpoint, ProcessImage, ResolveError, Resolver, Space, kallsyms::Kallsyms},
    },
};

/// One change, as `--control` reads it and the dashboard makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Add(String),
    Move { name: String, target: String },
    Remove(String),
    Pause(String),
    Resume(String),
}

impl FromStr for Command {
    type Err = ChangeError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let line = line.trim();
        let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let needs = |what: &str| ChangeError::Usage(format!("`{verb}` needs {what}"));
        match verb {
            "add" if rest.is_empty() => Err(needs("a TARGET: add TARGET")),
            "add" => Ok(Self::Add(rest.to_owned())),
            "move" => match rest.split_once(char::is_whitespace) {
                Some((name, target)) if !target.trim().is_empty() => Ok(Self::Move {
                    name: name.to_owned(),
                    target: target.trim().to_owned(),
                }),
                _ => Err(needs("a NAME and a TARGET: move NAME TARGET")),
            },
            "remove" | "pause" | "resume" if rest.is_empty() => {
                Err(needs(&format!("a NAME: {verb} NAME")))
            }
            "remove" => Ok(Self::Remove(rest.to_owned())),
            "pause" => Ok(Self::Pause(rest.to_owned())),
            "resume" => Ok(Self::Resume(rest.to_owned())),
            _ => Err(ChangeError::Usage(format!(
                "unknown command `{verb}`: use add TARGET, move NAME TARGET, remove NAME, pause NAME \
                 or resume NAME"
            ))),
        }
    }
}

#[derive(Debug, Error)]
pub enum ChangeError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Commands from the dashboard: lines as `--control` takes them, each
/// answered with the change made or the error.
pub struct Requests {
    lines: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>,
    answer: Box<dyn Fn(Result<ChangeRecord, String>) + Send + Sync>,
}

impl Requests {
    pub fn new(
        lines: tokio::sync::mpsc::UnboundedReceiver<String>,
        answer: impl Fn(Result<ChangeRecord, String>) + Send + Sync + 'static,
    ) -> Self {
        Self {
            lines: tokio::sync::Mutex::new(lines),
            answer: Box::new(answer),
        }
    }

    /// The receiving end, taken for the run (None when it is taken).
    pub(super) fn take(
        &self,
    ) -> Option<tokio::sync::MutexGuard<'_, tokio::sync::mpsc::UnboundedReceiver<String>>> {
        self.lines.try_lock().ok()
    }

    pub(super) fn answer(&self, result: Result<ChangeRecord, String>) {
        (self.answer)(result);
    }
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Requests")
    }
}

/// What changing targets needs to know about the run, and which targets
/// are paused.
pub(super) struct Live {
    traced_pid: Option<i32>,
    stack: Option<StackMode>,
    paused: Vec<bool>,
    kallsyms: Option<Arc<Kallsyms>>,
}

/// What a change acts on.
pub(super) struct Parts<'a, 'c> {
    pub armed: &'a mut Armed,
    pub probe: &'a mut Probe,
    pub collector: &'a mut Collector<'c>,
    pub stats: &'a SharedStats,
}

impl Live {
    pub fn new(traced_pid: Option<i32>, stack: Option<StackMode>, targets: usize) -> Self {
        Self {
            traced_pid,
            stack,
            paused: vec![false; targets],
            kallsyms: None,
        }
    }

    /// Applies `command`; the record of the change, or why nothing changed.
    pub fn apply(
        &mut self,
        command: &Command,
        parts: Parts<'_, '_>,
    ) -> Result<ChangeRecord, ChangeError> {
        match command {
            Command::Add(target) => self.add(target, parts),
            Command::Move { name, target } => self.move_to(name, target, parts),
            Command::Remove(name) => self.remove(name, parts),
            Command::Pause(name) => self.pause(name, true, parts),
            Command::Resume(name) => self.pause(name, false, parts),
        }
    }

    /// The live target called `name`: as written (or resolved to, for a
    /// symbol), or its number.
    fn find(&self, name: &str, collector: &Collector<'_>) -> Result<usize, ChangeError> {
        let live = |slot: &usize| !collector.removed.get(*slot).copied().unwrap_or(true);
        let by_name: Vec<usize> = (0..collector.breakpoints.len())
            .filter(live)
            .filter(|&slot| {
                let bp = &collector.breakpoints[slot];
                bp.spec.text == name || bp.symbol == name
            })
            .collect();
        match by_name.as_slice() {
            [slot] => return Ok(*slot),
            [] => {}
            _ => {
                return Err(ChangeError::Usage(format!(
                    "`{name}` names {} targets: give its number ({})",
                    by_name.len(),
                    by_name
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if let Some(slot) = name
            .trim_start_matches('#')
            .parse::<usize>()
            .ok()
            .filter(live)
        {
            return Ok(slot);
        }
        let names: Vec<String> = (0..collector.breakpoints.len())
            .filter(live)
            .map(|slot| format!("{slot}: {}", collector.breakpoints[slot].spec.text))
            .collect();
        Err(ChangeError::Usage(format!(
            "no target `{name}`: the targets are {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )))
    }

    /// Resolves a target as at start-up (a kernel variable's default LEN
    /// from `btf`, when the run parsed it).
    fn resolve(
        &mut self,
        text: &str,
        btf: Option<&crate::target::btf::Btf>,
    ) -> Result<Breakpoint, ChangeError> {
        let spec: TargetSpec = text.parse()?;
        let process = match self.traced_pid {
            Some(pid) => Some(ProcessImage::open(pid)?),
            None => None,
        };
        let mut resolver = Resolver::new(process);
        if let Some(kallsyms) = &self.kallsyms {
            resolver = resolver.with_kallsyms(kallsyms.clone());
        }
        let mut bp = resolver.resolve(&spec)?;
        if let Some(btf) = btf {
            crate::record::values::lens_from_btf(std::slice::from_mut(&mut bp), btf);
        }
        if bp.space == Space::User && self.traced_pid.is_none() {
            return Err(ChangeError::Usage(format!(
                "`{text}` is a user-space target, and this run traces the whole system: user \
                 targets need -p PID or -- CMD"
            )));
        }
        if bp.space == Space::Kernel && self.kallsyms.is_none() {
            self.kallsyms = resolver.kallsyms().ok();
        }
        Ok(bp)
    }

    /// Refuses an address another live target watches already.
    fn check_free(
        &self,
        bp: &Breakpoint,
        except: Option<usize>,
        collector: &Collector<'_>,
    ) -> Result<(), ChangeError> {
        let taken = (0..collector.breakpoints.len()).find(|&slot| {
            Some(slot) != except
                && !collector.removed[slot]
                && collector.breakpoints[slot].addr == bp.addr
        });
        match taken {
            Some(slot) => Err(ChangeError::Usage(format!(
                "{:#x} is watched by target {slot} (`{}`) already",
                bp.addr, collector.breakpoints[slot].spec.text
            ))),
            None => Ok(()),
        }
    }

    fn stack_choice(&self, bp: &Breakpoint) -> StackChoice {
        super::prepare::stack_choices(std::slice::from_ref(bp), self.stack)
            .pop()
            .unwrap_or(StackChoice {
                kernel: false,
                user: false,
            })
    }

    /// The compiled condition of `bp` (` if COND`) and the value its `old`
    /// starts from; (None, None) without one.
    fn condition(
        &self,
        bp: &Breakpoint,
        collector: &Collector<'_>,
    ) -> Result<(Option<CondProgram>, Option<u64>), ChangeError> {
        let compiled = super::conditions::compile(
            std::slice::from_ref(bp),
            self.traced_pid,
            collector.values.btf(),
        )
        .map_err(|e| ChangeError::Usage(e.to_string()))?;
        Ok(match compiled.into_iter().next().flatten() {
            Some((program, old)) => (Some(program), Some(old)),
            None => (None, None),
        })
    }

    fn add(&mut self, text: &str, parts: Parts<'_, '_>) -> Result<ChangeRecord, ChangeError> {
        let Parts {
            armed,
            probe,
            collector,
            stats,
        } = parts;
        let slot = collector.breakpoints.len();
        if slot >= MAX_SLOTS {
            return Err(ChangeError::Usage(format!(
                "this run has had {MAX_SLOTS} targets, the most one run holds (a removed target \
                 keeps its number): start a new run to add more"
            )));
        }
        let bp = self.resolve(text, collector.values.btf())?;
        self.check_free(&bp, None, collector)?;
        let (condition, old) = self.condition(&bp, collector)?;
        probe.set_condition(slot, condition, old)?;
        let entry = probe.add_entry(&bp, self.stack_choice(&bp), slot)?;
        let program = probe.program_fd()?;
        if let Err(e) = armed.add_target(slot, &bp, program) {
            probe.remove_entry(entry)?;
            probe.set_condition(slot, None, None)?;
            return Err(e.into());
        }
        collector.watch(slot, &bp);
        collector.values.set_target(slot, &bp, self.traced_pid);
        self.paused.push(false);
        if let Ok(mut s) = stats.lock() {
            s.targets.resize_with(slot + 1, TargetStats::default);
            s.counters.resize(slot + 1, Default::default());
        }
        Ok(ChangeRecord {
            ts_ns: monotonic_ns(),
            action: "add".into(),
            id: slot,
            to: Some(target_info(&bp)),
            event_ids: armed.event_ids(slot),
            ..Default::default()
        })
    }

    fn move_to(
        &mut self,
        name: &str,
        text: &str,
        parts: Parts<'_, '_>,
    ) -> Result<ChangeRecord, ChangeError> {
        let Parts {
            armed,
            probe,
            collector,
            ..
        } = parts;
        let slot = self.find(name, collector)?;
        let from = collector.breakpoints[slot].clone();
        let to = self.resolve(text, collector.values.btf())?;
        self.check_free(&to, Some(slot), collector)?;
        let before = armed.event_ids(slot);
        let old_entry = probe.entry_of(slot, from.addr);
        // The new target's condition (none unless it has ` if COND`), then
        // the new address's entry: a hit there, on a CPU or thread already
        // moved, finds this target's id and condition.
        let (condition, old) = self.condition(&to, collector)?;
        let previous = probe.condition(slot);
        probe.set_condition(slot, condition, old)?;
        let new_entry = probe.add_entry(&to, self.stack_choice(&to), slot)?;
        let enabled = !self.paused[slot];
        let moved = {
            let program = probe.program_fd()?;
            armed.move_target(slot, &from, &to, enabled, program)
        };
        let method = match moved {
            Ok(method) => method,
            Err(e) => {
                probe.remove_entry(new_entry)?;
                probe.set_condition(slot, previous, None)?;
                return Err(e.into());
            }
        };
        // No breakpoint is at the old address any more: its entry goes.
        if let Some(old) = old_entry {
            probe.remove_entry(old)?;
        }
        collector.watch(slot, &to);
        collector.values.set_target(slot, &to, self.traced_pid);
        Ok(ChangeRecord {
            ts_ns: monotonic_ns(),
            action: "move".into(),
            id: slot,
            from: Some(target_info(&from)),
            to: Some(target_info(&to)),
            method: Some(method.as_str().into()),
            fallback: match method {
                MoveMethod::Reopened { reason } => Some(reason),
                MoveMethod::Modified => None,
            },
            event_ids_before: before,
            event_ids: armed.event_ids(slot),
        })
    }

    fn remove(&mut self, name: &str, parts: Parts<'_, '_>) -> Result<ChangeRecord, ChangeError> {
        let Parts {
            armed,
            probe,
            collector,
            ..
        } = parts;
        let slot = self.find(name, collector)?;
        let bp = collector.breakpoints[slot].clone();
        let before = armed.event_ids(slot);
        armed.remove_target(slot);
        if let Some(entry) = probe.entry_of(slot, bp.addr) {
            probe.remove_entry(entry)?;
        }
        collector.removed[slot] = true;
        Ok(ChangeRecord {
            ts_ns: monotonic_ns(),
            action: "remove".into(),
            id: slot,
            from: Some(target_info(&bp)),
            event_ids_before: before,
            ..Default::default()
        })
    }

    fn pause(
        &mut self,
        name: &str,
        pause: bool,
        parts: Parts<'_, '_>,
    ) -> Result<ChangeRecord, ChangeError> {
        let Parts {
            armed, collector, ..
        } = parts;
        let slot = self.find(name, collector)?;
        let bp = &collector.breakpoints[slot];
        if self.paused[slot] == pause {
            return Err(ChangeError::Usage(format!(
                "`{}` is {} already",
                bp.spec.text,
                if pause { "paused" } else { "armed" }
            )));
        }
        armed.set_enabled(slot, !pause).map_err(|e| match e {
            LiveError::Toggle {
                action,
                place,
                source,
                ..
            } => LiveError::Toggle {
                action,
                target: bp.spec.text.clone(),
                place,
                source,
            },
            other => other,
        })?;
        self.paused[slot] = pause;
        Ok(ChangeRecord {
            ts_ns: monotonic_ns(),
            action: if pause { "pause" } else { "resume" }.into(),
            id: slot,
            from: Some(target_info(bp)),
            to: Some(target_info(bp)),
            event_ids: armed.event_ids(slot),
            ..Default::default()
        })
    }
}

/// Runs one command line: applied, then written to every `-o` file as a
/// `change` record; or the error as the user should read it.
pub(super) fn run_line(
    live: &mut Live,
    line: &str,
    parts: Parts<'_, '_>,
) -> Result<ChangeRecord, String> {
    let command: Command = line.parse().map_err(|e: ChangeError| e.to_string())?;
    let Parts {
        armed,
        probe,
        collector,
        stats,
    } = parts;
    let record = live
        .apply(
            &command,
            Parts {
                armed,
                probe,
                collector: &mut *collector,
                stats,
            },
        )
        .map_err(|e| e.to_string())?;
    let mut written = record.clone();
    if let Some(redactor) = &collector.redactor {
        redactor.change(&mut written);
    }
    for export in collector.exports.iter_mut() {
        export.change(&written);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            "add counter:w".parse::<Command>().ok(),
            Some(Command::Add("counter:w".into()))
        );
        assert_eq!(
            " move a  b:w/4 ".parse::<Command>().ok(),
            Some(Command::Move {
                name: "a".into(),
                target: "b:w/4".into()
            })
        );
        assert_eq!(
            "pause 1".parse::<Command>().ok(),
            Some(Command::Pause("1".into()))
        );
        assert_eq!(
            "resume a".parse::<Command>().ok(),
            Some(Command::Resume("a".into()))
        );
        assert_eq!(
            "remove a".parse::<Command>().ok(),
            Some(Command::Remove("a".into()))
        );
        for bad in ["", "add", "move a", "remove", "frobnicate a"] {
            let err = bad.parse::<Command>().expect_err(bad).to_string();
            assert!(
                err.contains("add TARGET") || err.contains("needs"),
                "{bad}: {err}"
            );
        }
    }
}

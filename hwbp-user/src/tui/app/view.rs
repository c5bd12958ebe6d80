//! What the dashboard shows, as plain data: each target as it is named,
//! the traced process and how it ended, the focused pane, sort orders,
//! breakdowns, the command's output, the help's fit, the table's rows, and
//! frames shortened for narrow panes.

use crate::{
    probe::process::OutputTail,
    target::resolve::{Breakpoint, Space},
};

/// One armed target, as the dashboard names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetView {
    /// As the user wrote it.
    pub target: String,
    pub symbol: String,
    pub addr: u64,
    /// `x`, `w`, `rw`, `r`.
    pub mode: &'static str,
    pub data: bool,
    pub len: u8,
    pub kernel: bool,
    /// ` if COND`, as parsed (shown with the hits it rejected).
    pub condition: Option<String>,
}

impl From<&Breakpoint> for TargetView {
    fn from(bp: &Breakpoint) -> Self {
        Self {
            target: bp.spec.text.clone(),
            symbol: bp.symbol.clone(),
            addr: bp.addr,
            mode: bp.mode.as_str(),
            data: bp.mode.is_data(),
            len: bp.len,
            kernel: bp.space == Space::Kernel,
            condition: bp.spec.condition.as_ref().map(|c| c.text.clone()),
        }
    }
}

/// What is traced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Traced {
    /// Every task on these CPUs.
    SystemWide { cpus: usize },
    /// One process (`-p`, or `-- CMD` when `launched`).
    Process {
        pid: i32,
        name: String,
        threads: usize,
        launched: bool,
    },
}

/// How the run ended, from its [`Summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub reason: String,
    pub duration_s: f64,
    pub exit_status: Option<i32>,
    /// Every hit that fired but was not recorded, the summary's count: the
    /// ring buffer's drops and the hits the kernel never handed to BPF.
    pub lost: u64,
    /// Why recording stopped early (a caught panic, a ring buffer error).
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Targets,
    Details,
    Log,
}

impl Focus {
    pub(super) fn next(self) -> Self {
        match self {
            Self::Targets => Self::Details,
            Self::Details => Self::Log,
            Self::Log => Self::Targets,
        }
    }

    pub(super) fn prev(self) -> Self {
        self.next().next()
    }
}

/// Order of the targets table (`s` cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// As given on the command line.
    Given,
    Hits,
    Rate,
    Name,
}

impl SortBy {
    pub(super) fn next(self) -> Self {
        match self {
            Self::Given => Self::Hits,
            Self::Hits => Self::Rate,
            Self::Rate => Self::Name,
            Self::Name => Self::Given,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Given => "given",
            Self::Hits => "hits",
            Self::Rate => "rate",
            Self::Name => "name",
        }
    }
}

/// The breakdowns of the selected target (left/right cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breakdown {
    Callers,
    Comms,
    Pids,
    Cpus,
    Stacks,
    Values,
}

impl Breakdown {
    pub const ALL: [Self; 6] = [
        Self::Callers,
        Self::Comms,
        Self::Pids,
        Self::Cpus,
        Self::Stacks,
        Self::Values,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Callers => "caller",
            Self::Comms => "comm",
            Self::Pids => "pid",
            Self::Cpus => "cpu",
            Self::Stacks => "stacks",
            Self::Values => "values",
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|b| *b == self).unwrap_or(0)
    }

    pub(super) fn step(self, forward: bool) -> Self {
        let n = Self::ALL.len();
        let i = if forward {
            self.index() + 1
        } else {
            self.index() + n - 1
        };
        Self::ALL[i % n]
    }
}

/// What the event loop must do after a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// End the session and leave.
    Quit,
    /// Write the current view to a file.
    Snapshot,
    /// Repaint the whole screen (Ctrl-L: something else wrote on it).
    Redraw,
    /// Change the targets: a line as `--control` takes it.
    Change(String),
    /// Tab in a prompt: the names starting with this text are wanted
    /// ([`App::completed`] takes them).
    Complete(String),
}

/// The output of a `-- CMD` started under the dashboard, which reads it
/// from a pipe instead of letting it write on the screen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutputView {
    /// The command's name.
    pub name: String,
    /// What is shown: the latest copy, frozen while paused.
    pub tail: OutputTail,
    pub(super) latest: OutputTail,
    /// Lines scrolled back from the newest.
    pub scroll: usize,
}

impl CommandOutputView {
    pub fn new(name: String) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }
}

/// How the help fits the terminal as last drawn, which the event loop
/// tells after each draw (the App knows no terminal): lines a page, and
/// the most it scrolls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelpFit {
    pub page: usize,
    pub max_scroll: usize,
}

impl Default for HelpFit {
    /// Before a draw: no limit (the view shows no more than the end).
    fn default() -> Self {
        Self {
            page: 1,
            max_scroll: usize::MAX,
        }
    }
}

/// A row of the targets table, in display order.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRow<'a> {
    pub slot: usize,
    pub view: &'a TargetView,
    /// Hits since the baseline, from matching comms when filtered.
    pub hits: u64,
    /// Hits in the last complete second; `None` when filtered and that
    /// second is older than the hits kept.
    pub rate: Option<u64>,
    /// Lost in the kernel, all comms.
    pub dropped: u64,
}

/// A line of the values breakdown: `old → new  by caller`.
pub(super) fn value_row(old: Option<&str>, new: &str, by: &str) -> String {
    match old {
        Some(old) => format!("{old} → {new}  by {}", short_frame(by)),
        None => format!("{new}  by {}", short_frame(by)),
    }
}

/// A symbolized frame with file names for paths, for narrow panels:
/// `f+0x30 (/src/app/main.rs:49)` → `f+0x30 (main.rs:49)`.
pub fn short_frame(frame: &str) -> String {
    let mut out = String::with_capacity(frame.len());
    let mut rest = frame;
    while let Some(open) = rest.find("(/") {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let end = rest.find(')').unwrap_or(rest.len());
        let path = &rest[..end];
        out.push_str(path.rsplit('/').next().unwrap_or(path));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

//! The dashboard's state: what is shown and how the keys change it. Pure:
//! no terminal, no clock, no I/O; the event loop feeds it copies of the
//! session's [`Stats`] and the time, so tests drive it directly.
//!
//! The comm filter (`/`) applies to every figure shown, so that no pane
//! shows unfiltered numbers beside filtered ones. Hit counts and the comm
//! breakdown are exact: [`Stats`] counts hits by comm. The other figures
//! (rates, history, callers, pids, CPUs, stacks, values) are not kept per
//! comm; they are exact when the filter matches all of a target's hits or
//! none, or when the hits kept for the log (the last
//! [`RECENT_HITS`](crate::output::stats::RECENT_HITS)) hold all the matching ones,
//! and are otherwise counted from those: a second older than them is
//! unknown (`None`), a breakdown says it is a sample. Lost hits have no
//! comm (the kernel drops them before they are read); the view says they
//! count all comms.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::{
    output::stats::{RECENT_VALUES, STACK_DEPTH, Stats, TargetStats},
    probe::aggregates::Records,
    probe::arm::Armament,
    probe::arm::Scope,
    probe::process::OutputTail,
    record::format::{HitRecord, Summary},
};

mod change;
mod view;

pub use change::{PAUSED, Prompt, PromptKind, REMOVED};
use view::value_row;
pub use view::*;

const NS_PER_S: u64 = 1_000_000_000;

/// Debug address registers per CPU (x86-64: DR0-DR3): the most breakpoints
/// a CPU or thread can hold at once.
pub const DEBUG_REGISTERS: usize = 4;

/// Seconds of rate history in the chart, and in the targets table's
/// HISTORY column (downsampled into its width).
pub const CHART_SECONDS: usize = 300;

/// Hits counted and hits matching, when a breakdown counts the kept hits
/// only.
type Sample = Option<(u64, u64)>;

/// How the hits of a target split under the comm filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Matched {
    /// Every hit matches (or there is no filter): a figure of all the
    /// target's hits is the filtered figure.
    All,
    /// No hit matches: every filtered figure is zero.
    None,
    /// Some do: figures without a comm are counted from the kept hits.
    Part,
}

#[derive(Clone, Debug)]
pub struct App {
    pub targets: Vec<TargetView>,
    pub traced: Traced,
    /// perf events armed (targets × CPUs or threads).
    pub events: usize,
    /// `-o` files being written.
    pub outputs: Vec<String>,
    /// `--redact-addresses`: no addresses on screen (nor in `e` files).
    pub redact: bool,
    /// `--records`: the status bar says when only some hits get a record.
    pub records: Records,
    /// What is shown: the latest copy (less the baseline), frozen while
    /// paused.
    pub view: Stats,
    /// The latest copy, paused or not.
    latest: Stats,
    baseline: Option<Stats>,
    /// While a baseline is set: the copy `view` was made from. The rate
    /// history and the values are never cleared, so their filtered figures
    /// need the hits and comms from before the clear too.
    unbased: Option<Stats>,
    /// Monotonic time of `view`.
    pub now_ns: u64,
    pub paused: bool,
    pub sort: SortBy,
    /// Slot of the selected target.
    pub selected: usize,
    pub focus: Focus,
    pub breakdown: Breakdown,
    /// Lines scrolled in the details panel.
    pub details_scroll: usize,
    /// Hits scrolled back from the newest in the log.
    pub log_scroll: usize,
    /// Comm filter, applied to counts, breakdowns and the log.
    pub filter: Option<String>,
    /// The filter being typed after `/`.
    pub input: Option<String>,
    pub help: bool,
    /// Lines of the help scrolled off its top.
    pub help_scroll: usize,
    pub help_fit: HelpFit,
    pub ended: Option<Ended>,
    /// A one-line notice (snapshot written, ...).
    pub message: Option<String>,
    /// `-- CMD`'s captured output, when hwbp-trace started the command.
    pub output: Option<CommandOutputView>,
    /// The log panel shows the command's output instead of the hits (`o`).
    pub show_output: bool,
    /// A change being typed (`a`, `m`, `x`).
    pub prompt: Option<Prompt>,
    /// Per target, paused (space) or removed (`x`) while tracing.
    pub paused_targets: Vec<bool>,
    pub removed_targets: Vec<bool>,
}

impl App {
    pub fn new(
        targets: Vec<TargetView>,
        traced: Traced,
        events: usize,
        outputs: Vec<String>,
    ) -> Self {
        let targets_len = targets.len();
        let stats = Stats {
            targets: vec![TargetStats::default(); targets.len()],
            counters: vec![Default::default(); targets.len()],
            ..Default::default()
        };
        Self {
            targets,
            traced,
            events,
            outputs,
            redact: false,
            records: Records::All,
            view: stats.clone(),
            latest: stats,
            baseline: None,
            unbased: None,
            now_ns: 0,
            paused: false,
            sort: SortBy::Given,
            selected: 0,
            focus: Focus::Targets,
            breakdown: Breakdown::Callers,
            details_scroll: 0,
            log_scroll: 0,
            filter: None,
            input: None,
            help: false,
            help_scroll: 0,
            help_fit: HelpFit::default(),
            ended: None,
            message: None,
            output: None,
            show_output: false,
            prompt: None,
            paused_targets: vec![false; targets_len],
            removed_targets: vec![false; targets_len],
        }
    }

    /// The dashboard of a run that has just been armed.
    pub fn armed(
        armament: &Armament,
        process_name: String,
        launched: bool,
        outputs: Vec<String>,
    ) -> Self {
        let traced = match &armament.scope {
            Scope::SystemWide { cpus } => Traced::SystemWide { cpus: cpus.len() },
            Scope::Process { pid, tids } => Traced::Process {
                pid: *pid,
                name: process_name,
                threads: tids.len(),
                launched,
            },
        };
        Self::new(
            armament.breakpoints.iter().map(TargetView::from).collect(),
            traced,
            armament.events,
            outputs,
        )
    }

    /// Takes a fresh copy of the session's stats, read at `now_ns`.
    pub fn refresh(&mut self, stats: Stats, now_ns: u64) {
        self.latest = stats;
        if self.paused {
            return;
        }
        // After the end the clock stops with the run: rates and history show
        // its last seconds.
        if self.ended.is_none() {
            self.now_ns = now_ns;
        }
        self.show_latest();
    }

    /// Shows the latest copy, less the baseline.
    fn show_latest(&mut self) {
        match &self.baseline {
            Some(base) => {
                self.view = self.latest.since(base);
                self.unbased = Some(self.latest.clone());
            }
            None => {
                self.view = self.latest.clone();
                self.unbased = None;
            }
        }
    }

    /// What `view` was made from, before the baseline.
    fn unbased(&self) -> &Stats {
        self.unbased.as_ref().unwrap_or(&self.view)
    }

    /// Takes a fresh copy of the command's output.
    pub fn refresh_output(&mut self, tail: OutputTail) {
        if let Some(output) = &mut self.output {
            output.latest = tail;
            if !self.paused {
                output.tail = output.latest.clone();
            }
        }
    }

    /// The run is over; the dashboard keeps the final state until `q`.
    pub fn finish(&mut self, summary: &Summary) {
        self.ended = Some(Ended {
            reason: summary.end_reason.clone(),
            duration_s: summary.duration_s,
            exit_status: summary.exit_status,
            lost: summary.lost,
            error: summary.error.clone(),
        });
        self.paused = false;
        if let Some(output) = &mut self.output {
            output.tail = output.latest.clone();
        }
        // The final counts, and the clock at the run's end.
        self.show_latest();
        // The clock stops a second after the run's end, so that its last
        // (partial) second counts as complete in rates and history.
        if self.view.started_ns > 0 {
            self.now_ns =
                self.view.started_ns + (summary.duration_s * NS_PER_S as f64) as u64 + NS_PER_S;
        }
    }

    /// Whether the traced process is gone.
    pub fn process_exited(&self) -> bool {
        matches!(self.traced, Traced::Process { .. })
            && self
                .ended
                .as_ref()
                .is_some_and(|e| e.reason == "process-exit")
    }

    /// Hits lost: the ring buffer's drops while the run goes on; at the end
    /// the summary's count, which adds the hits the kernel never handed to
    /// BPF (less those before a clear).
    pub fn lost(&self) -> u64 {
        let dropped = self.view.dropped();
        match &self.ended {
            Some(e) => {
                let before_clear = self.baseline.as_ref().map_or(0, Stats::dropped);
                dropped.max(e.lost.saturating_sub(before_clear))
            }
            None => dropped,
        }
    }

    /// The `-o` files as shown: the name, and the error when writing it
    /// stopped.
    pub fn outputs(&self) -> Vec<(&str, Option<&str>)> {
        self.outputs
            .iter()
            .map(|o| {
                let failed = self
                    .latest
                    .export_failures
                    .iter()
                    .find(|f| f.path == *o)
                    .map(|f| f.error.as_str());
                (o.rsplit('/').next().unwrap_or(o), failed)
            })
            .collect()
    }

    pub fn elapsed_s(&self) -> f64 {
        match &self.ended {
            Some(e) => e.duration_s,
            None if self.view.started_ns > 0 => {
                self.now_ns.saturating_sub(self.view.started_ns) as f64 / 1e9
            }
            None => 0.0,
        }
    }

    pub fn now_s(&self) -> u64 {
        self.now_ns / NS_PER_S
    }

    fn comm_matches(&self, comm: &str) -> bool {
        match &self.filter {
            Some(f) => comm.to_lowercase().contains(&f.to_lowercase()),
            None => true,
        }
    }

    /// How `t`'s hits split under the filter. Comms past the tally's
    /// limit are unknown, so they make it a part.
    fn matched(&self, t: &TargetStats) -> Matched {
        if self.filter.is_none() {
            return Matched::All;
        }
        match self.matching_hits(t) {
            None => Matched::Part,
            Some(0) => Matched::None,
            Some(m) if m == t.hits => Matched::All,
            Some(_) => Matched::Part,
        }
    }

    /// Hits of `t` from matching comms; `None` when some comms were past
    /// the tally's limit.
    fn matching_hits(&self, t: &TargetStats) -> Option<u64> {
        (t.by_comm.overflow == 0).then(|| {
            t.by_comm
                .counts
                .iter()
                .filter(|(c, _)| self.comm_matches(c))
                .map(|(_, n)| n)
                .sum()
        })
    }

    /// Whether `hits`, the kept hits of `t` from matching comms, are all of
    /// them: then what is counted from them is exact.
    fn kept_all_matching(&self, stats: &Stats, t: &TargetStats, hits: usize) -> bool {
        Self::keeps_all(stats) || self.matching_hits(t) == Some(hits as u64)
    }

    /// The kept hits of target `slot` from matching comms, oldest first.
    fn kept_hits<'a>(
        &'a self,
        stats: &'a Stats,
        slot: usize,
    ) -> impl Iterator<Item = &'a HitRecord> + 'a {
        let target = self.targets.get(slot).map(|t| t.target.as_str());
        stats
            .recent
            .iter()
            .map(|h| &**h)
            .filter(move |h| Some(&*h.target) == target && self.comm_matches(&h.comm))
    }

    /// Whether `stats` still keeps every hit it counted.
    fn keeps_all(stats: &Stats) -> bool {
        stats.recent.len() as u64 >= stats.total
    }

    /// Hits of a target, from matching comms when filtered.
    pub fn hits(&self, slot: usize) -> u64 {
        let Some(t) = self.view.targets.get(slot) else {
            return 0;
        };
        match &self.filter {
            None => t.hits,
            Some(_) => t
                .by_comm
                .counts
                .iter()
                .filter(|(c, _)| self.comm_matches(c))
                .map(|(_, n)| n)
                .sum(),
        }
    }

    /// Hits in the last complete second, from matching comms when
    /// filtered; `None` when that is not known (see [`App::history`]).
    pub fn rate(&self, slot: usize) -> Option<u64> {
        self.history(slot, 1).pop().flatten()
    }

    /// Hits per second over the last `n` complete seconds, oldest first.
    /// Filtered, a second is `None` when the filter matches some of the
    /// target's hits but not all, and the hits kept do not reach back to it.
    pub fn history(&self, slot: usize, n: usize) -> Vec<Option<u64>> {
        let now = self.now_s().saturating_sub(1);
        // The history is never cleared: what it counts is in the copy
        // before the baseline.
        let stats = self.unbased();
        let Some(t) = stats.targets.get(slot) else {
            return vec![Some(0); n];
        };
        match self.matched(t) {
            Matched::All => t.history.last(now, n).into_iter().map(Some).collect(),
            Matched::None => vec![Some(0); n],
            Matched::Part => {
                let mut counts = vec![0; n];
                let mut kept = 0;
                for h in self.kept_hits(stats, slot) {
                    kept += 1;
                    let back = now.checked_sub(h.ts_ns / NS_PER_S);
                    if let Some(back) = back.filter(|b| *b < n as u64) {
                        counts[n - 1 - back as usize] += 1;
                    }
                }
                // Else every hit from this second on is kept (the second of
                // the oldest kept hit may have lost some).
                let first_known = match self.kept_all_matching(stats, t, kept) {
                    true => 0,
                    false => stats
                        .recent
                        .front()
                        .map_or(u64::MAX, |h| h.ts_ns / NS_PER_S + 1),
                };
                counts
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| match now.checked_sub((n - 1 - i) as u64) {
                        Some(s) if s < first_known => None,
                        _ => Some(c),
                    })
                    .collect()
            }
        }
    }

    /// The last [`CHART_SECONDS`] complete seconds (or a little more) in at
    /// most `cells` cells, oldest first: each cell the busiest second of
    /// the seconds it covers (hits per second, as HITS/S); `None` where one
    /// of them is unknown. Also returns the seconds per cell.
    pub fn history_cells(&self, slot: usize, cells: usize) -> (Vec<Option<u64>>, usize) {
        let per_cell = CHART_SECONDS.div_ceil(cells.max(1));
        let n = CHART_SECONDS.div_ceil(per_cell);
        let seconds = self.history(slot, n * per_cell);
        (
            seconds
                .chunks(per_cell)
                .map(|c| c.iter().try_fold(0, |max, s| s.map(|s| s.max(max))))
                .collect(),
            per_cell,
        )
    }

    /// Hits of every target (of the filter's comms): the kernel's counts
    /// once its aggregates are read, as the targets' rows show them, else
    /// the records'.
    pub fn total_hits(&self) -> u64 {
        match &self.filter {
            None if !self.view.from_kernel => self.view.total,
            _ => (0..self.targets.len()).map(|s| self.hits(s)).sum(),
        }
    }

    /// The targets table, sorted.
    pub fn rows(&self) -> Vec<TargetRow<'_>> {
        let mut rows: Vec<TargetRow<'_>> = self
            .targets
            .iter()
            .enumerate()
            .map(|(slot, view)| TargetRow {
                slot,
                view,
                hits: self.hits(slot),
                rate: self.rate(slot),
                dropped: self.view.counters.get(slot).map_or(0, |c| c.dropped),
            })
            .collect();
        match self.sort {
            SortBy::Given => {}
            SortBy::Hits => rows.sort_by(|a, b| b.hits.cmp(&a.hits).then(a.slot.cmp(&b.slot))),
            // Unknown rates (None) last.
            SortBy::Rate => rows.sort_by(|a, b| b.rate.cmp(&a.rate).then(a.slot.cmp(&b.slot))),
            SortBy::Name => {
                rows.sort_by(|a, b| a.view.target.cmp(&b.view.target).then(a.slot.cmp(&b.slot)))
            }
        }
        rows
    }

    pub fn selected_target(&self) -> Option<(&TargetView, &TargetStats)> {
        Some((
            self.targets.get(self.selected)?,
            self.view.targets.get(self.selected)?,
        ))
    }

    /// Lines of a breakdown of the selected target: (count, label), highest
    /// first.
    pub fn breakdown_rows(&self) -> Vec<(u64, String)> {
        self.breakdown_view().0
    }

    /// When the selected breakdown is counted from the kept hits only (a
    /// filter matches some of the target's hits, and older hits are no
    /// longer kept): the hits it counts, and the matching hits of the
    /// target.
    pub fn breakdown_sample(&self) -> Option<(u64, u64)> {
        self.breakdown_view().1
    }

    /// The rows of the selected breakdown, and the sample they come from
    /// (as [`App::breakdown_sample`]).
    fn breakdown_view(&self) -> (Vec<(u64, String)>, Sample) {
        let Some((_, t)) = self.selected_target() else {
            return (Vec::new(), None);
        };
        if self.breakdown == Breakdown::Comms {
            let rows = t
                .by_comm
                .sorted()
                .into_iter()
                .filter(|(k, _)| self.comm_matches(k))
                .map(|(k, n)| (n, k.to_string()))
                .collect();
            return (rows, None);
        }
        // Values are never cleared (as the history): they are matched
        // against the copy before the baseline.
        let values = self.breakdown == Breakdown::Values;
        let stats = if values { self.unbased() } else { &self.view };
        let t = match stats.targets.get(self.selected) {
            Some(t) => t,
            None => return (Vec::new(), None),
        };
        match self.matched(t) {
            Matched::All => (self.tallied_rows(t), None),
            Matched::None => (Vec::new(), None),
            Matched::Part => {
                let hits: Vec<&HitRecord> = self.kept_hits(stats, self.selected).collect();
                let sample = (!values && !self.kept_all_matching(stats, t, hits.len()))
                    .then(|| (hits.len() as u64, self.hits(self.selected)));
                (self.counted_rows(&hits), sample)
            }
        }
    }

    /// A breakdown (not by comm) from the target's tallies: all its hits.
    fn tallied_rows(&self, t: &TargetStats) -> Vec<(u64, String)> {
        match self.breakdown {
            Breakdown::Callers => t
                .by_caller
                .sorted()
                .into_iter()
                .map(|(k, n)| (n, short_frame(k)))
                .collect(),
            Breakdown::Comms => Vec::new(),
            Breakdown::Pids => t
                .by_pid
                .sorted()
                .into_iter()
                .map(|(k, n)| (n, k.to_string()))
                .collect(),
            Breakdown::Cpus => t
                .by_cpu
                .sorted()
                .into_iter()
                .map(|(k, n)| (n, format!("CPU {k}")))
                .collect(),
            Breakdown::Stacks => t
                .top_stacks()
                .into_iter()
                .map(|(n, frames)| {
                    (
                        n,
                        frames
                            .iter()
                            .map(|f| short_frame(f))
                            .collect::<Vec<_>>()
                            .join(" ← "),
                    )
                })
                .collect(),
            Breakdown::Values => t
                .values
                .iter()
                .rev()
                .map(|v| (0, value_row(v.old.as_deref(), &v.new, &v.by)))
                .collect(),
        }
    }

    /// A breakdown (not by comm) counted from `hits`, oldest first: ordered
    /// as [`App::tallied_rows`] orders the tallies.
    fn counted_rows(&self, hits: &[&HitRecord]) -> Vec<(u64, String)> {
        fn count<K: Ord>(keys: impl Iterator<Item = K>) -> Vec<(K, u64)> {
            let mut counts: BTreeMap<K, u64> = BTreeMap::new();
            for k in keys {
                *counts.entry(k).or_default() += 1;
            }
            let mut rows: Vec<(K, u64)> = counts.into_iter().collect();
            // Stable: ties stay in key order.
            rows.sort_by_key(|r| std::cmp::Reverse(r.1));
            rows
        }
        match self.breakdown {
            Breakdown::Callers => count(hits.iter().map(|h| &*h.ip_sym))
                .into_iter()
                .map(|(k, n)| (n, short_frame(k)))
                .collect(),
            Breakdown::Comms => Vec::new(),
            Breakdown::Pids => count(hits.iter().map(|h| h.pid))
                .into_iter()
                .map(|(k, n)| (n, k.to_string()))
                .collect(),
            Breakdown::Cpus => count(hits.iter().map(|h| h.cpu))
                .into_iter()
                .map(|(k, n)| (n, format!("CPU {k}")))
                .collect(),
            Breakdown::Stacks => count(
                hits.iter()
                    .filter(|h| !h.kstack.is_empty() || !h.ustack.is_empty())
                    .map(|h| {
                        h.kstack
                            .iter()
                            .chain(h.ustack.iter())
                            .take(STACK_DEPTH)
                            .map(|f| short_frame(f))
                            .collect::<Vec<_>>()
                    }),
            )
            .into_iter()
            .map(|(frames, n)| (n, frames.join(" ← ")))
            .collect(),
            Breakdown::Values => hits
                .iter()
                .rev()
                .filter_map(|h| {
                    // As the stats make a value change of a hit.
                    let value = h.value?;
                    let new = h.value_text.clone().unwrap_or_else(|| value.to_string());
                    let old = h
                        .old_value_text
                        .clone()
                        .or_else(|| h.old_value.map(|v| v.to_string()));
                    Some((0, value_row(old.as_deref(), &new, &h.ip_sym)))
                })
                .take(RECENT_VALUES)
                .collect(),
        }
    }

    /// The log, oldest first: hits of matching comms.
    pub fn log(&self) -> Vec<&HitRecord> {
        self.view
            .recent
            .iter()
            .map(|h| &**h)
            .filter(|h| self.comm_matches(&h.comm))
            .collect()
    }

    fn move_selection(&mut self, down: bool) {
        let order: Vec<usize> = self.rows().iter().map(|r| r.slot).collect();
        let Some(i) = order.iter().position(|s| *s == self.selected) else {
            self.selected = order.first().copied().unwrap_or(0);
            return;
        };
        let j = if down {
            (i + 1).min(order.len() - 1)
        } else {
            i.saturating_sub(1)
        };
        if order[j] != self.selected {
            self.selected = order[j];
            self.details_scroll = 0;
        }
    }

    fn scroll(&mut self, down: bool) {
        match self.focus {
            Focus::Targets => self.move_selection(down),
            Focus::Details => {
                self.details_scroll = if down {
                    (self.details_scroll + 1).min(self.breakdown_rows().len().saturating_sub(1))
                } else {
                    self.details_scroll.saturating_sub(1)
                }
            }
            // Down goes towards the newest line.
            Focus::Log => self.scroll_log(|back, len| match down {
                true => back.saturating_sub(1),
                false => (back + 1).min(len.saturating_sub(1)),
            }),
        }
    }

    /// Scrolls what the log panel shows, the hits or the command's output:
    /// `to(lines back from the newest, lines)` gives the new position.
    fn scroll_log(&mut self, to: impl FnOnce(usize, usize) -> usize) {
        if self.show_output
            && let Some(output) = &mut self.output
        {
            output.scroll = to(output.scroll, output.tail.kept());
        } else {
            self.log_scroll = to(self.log_scroll, self.log().len());
        }
    }

    /// Sets counters back to zero: the display's baseline becomes the
    /// latest copy (collection and exports are untouched).
    pub fn clear(&mut self) {
        self.baseline = Some(self.latest.clone());
        self.show_latest();
        self.details_scroll = 0;
        self.log_scroll = 0;
        self.message = Some("counters cleared".into());
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            return Action::Quit;
        }
        if ctrl && matches!(key.code, KeyCode::Char('l')) {
            return Action::Redraw;
        }
        // Other Ctrl-letters are not commands: Ctrl-S is not `s`.
        if ctrl && matches!(key.code, KeyCode::Char(_)) {
            return Action::None;
        }
        if let Some(input) = &mut self.input {
            match key.code {
                KeyCode::Enter => {
                    let text = input.trim().to_owned();
                    self.filter = (!text.is_empty()).then_some(text);
                    self.input = None;
                    self.details_scroll = 0;
                    self.log_scroll = 0;
                }
                KeyCode::Esc => self.input = None,
                KeyCode::Backspace => {
                    input.pop();
                }
                KeyCode::Char(c) if !ctrl && input.len() < 64 => input.push(c),
                _ => {}
            }
            return Action::None;
        }
        if self.prompt.is_some() {
            return self.prompt_key(key);
        }
        self.message = None;
        if self.help {
            let HelpFit { page, max_scroll } = self.help_fit;
            let scroll = self.help_scroll.min(max_scroll);
            match key.code {
                KeyCode::Char('q') => return Action::Quit,
                KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter => self.help = false,
                KeyCode::Down | KeyCode::Char('j') => {
                    self.help_scroll = scroll.saturating_add(1).min(max_scroll)
                }
                KeyCode::Up | KeyCode::Char('k') => self.help_scroll = scroll.saturating_sub(1),
                KeyCode::PageDown => self.help_scroll = scroll.saturating_add(page).min(max_scroll),
                KeyCode::PageUp => self.help_scroll = scroll.saturating_sub(page),
                KeyCode::Home | KeyCode::Char('g') => self.help_scroll = 0,
                KeyCode::End | KeyCode::Char('G') => self.help_scroll = max_scroll,
                _ => {}
            }
            return Action::None;
        }
        if let Some(action) = self.change_key(key) {
            return action;
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => {
                self.help = true;
                self.help_scroll = 0;
            }
            KeyCode::Char('p') => {
                self.paused = !self.paused && self.ended.is_none();
                if !self.paused {
                    // Catch up at once with what was collected meanwhile.
                    let latest = self.latest.clone();
                    let now = self.now_ns;
                    self.refresh(latest, now);
                    if let Some(output) = &mut self.output {
                        output.tail = output.latest.clone();
                    }
                }
            }
            KeyCode::Char('c') => self.clear(),
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('/') => self.input = Some(self.filter.clone().unwrap_or_default()),
            KeyCode::Char('e') => return Action::Snapshot,
            KeyCode::Char('o') => match self.output {
                Some(_) => self.show_output = !self.show_output,
                None => self.message = Some(
                    "no command output here: only a `-- CMD` started by hwbp-trace has it captured"
                        .into(),
                ),
            },
            KeyCode::Esc => self.filter = None,
            KeyCode::Tab => self.focus = self.focus.next(),
            KeyCode::BackTab => self.focus = self.focus.prev(),
            KeyCode::Down | KeyCode::Char('j') => self.scroll(true),
            KeyCode::Up | KeyCode::Char('k') => self.scroll(false),
            KeyCode::Right | KeyCode::Char('l') => {
                self.breakdown = self.breakdown.step(true);
                self.details_scroll = 0;
            }
            KeyCode::Left | KeyCode::Char('h') => {
                self.breakdown = self.breakdown.step(false);
                self.details_scroll = 0;
            }
            KeyCode::Home | KeyCode::Char('g') => match self.focus {
                Focus::Targets => self.selected = self.rows().first().map_or(0, |r| r.slot),
                Focus::Details => self.details_scroll = 0,
                Focus::Log => self.scroll_log(|_, len| len.saturating_sub(1)),
            },
            KeyCode::End | KeyCode::Char('G') => match self.focus {
                Focus::Targets => self.selected = self.rows().last().map_or(0, |r| r.slot),
                Focus::Details => {
                    self.details_scroll = self.breakdown_rows().len().saturating_sub(1)
                }
                Focus::Log => self.scroll_log(|_, _| 0),
            },
            _ => {}
        }
        Action::None
    }
}

#[cfg(test)]
pub(crate) mod tests;

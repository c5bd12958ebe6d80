//! Running aggregates of a session: what the summary, the dashboard and the
//! metrics show. Updated by the collector for every hit; read by frontends.
//! The counts by comm, pid, CPU, caller and stack come from the kernel's
//! exact aggregates once the session has read them
//! ([`Stats::set_aggregates`]), and from the records until then.
//!
//! Every collection is bounded, so that a run of hours keeps a constant
//! footprint: breakdowns keep at most [`MAX_KEYS`] distinct keys (later ones
//! count as `overflow`), stacks at most [`MAX_STACKS`] distinct stacks of
//! [`STACK_DEPTH`] frames, the rate history [`HISTORY_SECONDS`] seconds.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    sync::{Arc, Mutex},
};

use hwbp_common::Counters;

use crate::record::format::{AggregateRecord, HitRecord, Stack};

/// Hits kept for the live log.
pub const RECENT_HITS: usize = 256;
/// Latest values of a data target kept.
pub const RECENT_VALUES: usize = 16;
/// Distinct keys kept per breakdown (comm, pid, CPU, caller).
pub const MAX_KEYS: usize = 4096;
/// Distinct stacks kept per target.
pub const MAX_STACKS: usize = 256;
/// Frames of a stack kept (innermost first): enough to tell call paths apart.
pub const STACK_DEPTH: usize = 16;
/// Seconds of per-second hit counts kept per target (10 minutes).
pub const HISTORY_SECONDS: usize = 600;

const NS_PER_S: u64 = 1_000_000_000;

/// CLOCK_MONOTONIC now, in the clock of [`HitRecord::ts_ns`]
/// (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the local timespec, which
    // outlives the call; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// Hits per second over the last [`HISTORY_SECONDS`] seconds, bucketed by
/// the hit's own timestamp, so that the history does not depend on when a
/// frontend looks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateHistory {
    /// Second (of the monotonic clock) of `counts[0]`.
    first_s: u64,
    counts: VecDeque<u64>,
}

impl RateHistory {
    pub fn record(&mut self, ts_ns: u64) {
        let s = ts_ns / NS_PER_S;
        if self.counts.is_empty() {
            self.first_s = s;
            self.counts.push_back(0);
        }
        if s < self.first_s {
            // Older than the window (or a CPU's clock a hair behind the
            // first hit's): count it in the oldest bucket.
            if let Some(c) = self.counts.front_mut() {
                *c += 1;
            }
            return;
        }
        let last_s = self.first_s + self.counts.len() as u64 - 1;
        if s > last_s {
            let gap = s - last_s;
            if gap >= HISTORY_SECONDS as u64 {
                self.counts.clear();
                self.first_s = s;
                self.counts.push_back(0);
            } else {
                self.counts.extend(std::iter::repeat_n(0, gap as usize));
            }
            while self.counts.len() > HISTORY_SECONDS {
                self.counts.pop_front();
                self.first_s += 1;
            }
        }
        if let Some(c) = self.counts.get_mut((s - self.first_s) as usize) {
            *c += 1;
        }
    }

    /// Hits in second `s` of the monotonic clock.
    pub fn at(&self, s: u64) -> u64 {
        s.checked_sub(self.first_s)
            .and_then(|i| self.counts.get(i as usize))
            .copied()
            .unwrap_or(0)
    }

    /// The `n` seconds ending with `now_s` (inclusive), oldest first, with
    /// zeros where nothing was hit.
    pub fn last(&self, now_s: u64, n: usize) -> Vec<u64> {
        (0..n as u64)
            .rev()
            .map(|back| now_s.checked_sub(back).map_or(0, |s| self.at(s)))
            .collect()
    }
}

/// Hits by key, with at most [`MAX_KEYS`] keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally<K: Eq + Hash> {
    pub counts: HashMap<K, u64, foldhash::fast::RandomState>,
    /// Hits whose key came after the table was full.
    pub overflow: u64,
    limit: usize,
}

impl<K: Eq + Hash> Default for Tally<K> {
    fn default() -> Self {
        Self::with_limit(MAX_KEYS)
    }
}

impl<K: Eq + Hash> Tally<K> {
    pub fn with_limit(limit: usize) -> Self {
        Self {
            counts: HashMap::default(),
            overflow: 0,
            limit,
        }
    }
}

impl<K: Eq + Hash + Clone> Tally<K> {
    pub fn add(&mut self, key: &K) {
        self.add_n(key, 1);
    }

    /// `n` hits of `key`.
    pub fn add_n(&mut self, key: &K, n: u64) {
        if let Some(count) = self.counts.get_mut(key) {
            *count += n;
        } else if self.counts.len() < self.limit {
            self.counts.insert(key.clone(), n);
        } else {
            self.overflow += n;
        }
    }

    pub fn get(&self, key: &K) -> u64 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// Entries by count, highest first, ties by key order where keys sort.
    pub fn top(&self) -> Vec<(&K, u64)> {
        let mut v: Vec<(&K, u64)> = self.counts.iter().map(|(k, n)| (k, *n)).collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        v
    }

    /// `self - base`, entry by entry; entries that end at zero are left out.
    pub fn since(&self, base: &Self) -> Self {
        Self {
            counts: self
                .counts
                .iter()
                .filter_map(|(k, n)| {
                    let d = n.saturating_sub(base.get(k));
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
            overflow: self.overflow.saturating_sub(base.overflow),
            limit: self.limit,
        }
    }
}

impl Tally<Arc<str>> {
    /// [`Tally::add`] by the key's text: a key is allocated only when new.
    pub fn add_text(&mut self, key: &str) {
        if let Some(n) = self.counts.get_mut(key) {
            *n += 1;
        } else if self.counts.len() < self.limit {
            self.counts.insert(key.into(), 1);
        } else {
            self.overflow += 1;
        }
    }
}

impl<K: Eq + Hash + Ord + Clone> Tally<K> {
    /// Entries by count, highest first, ties broken by key: a stable order
    /// for display.
    pub fn sorted(&self) -> Vec<(&K, u64)> {
        let mut v = self.top();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v
    }
}

/// One access to a data target, as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueChange {
    pub ts_ns: u64,
    /// The value before the access, where the engine knows it.
    pub old: Option<String>,
    pub new: String,
    /// The accessing code.
    pub by: Arc<str>,
}

impl ValueChange {
    fn of(hit: &HitRecord) -> Option<Self> {
        let value = hit.value?;
        Some(Self {
            ts_ns: hit.ts_ns,
            old: hit
                .old_value_text
                .clone()
                .or_else(|| hit.old_value.map(|v| v.to_string())),
            new: hit.value_text.clone().unwrap_or_else(|| value.to_string()),
            by: hit.ip_sym.clone(),
        })
    }
}

/// A hit's stacks as the tally's key: the symbolizer's shared stacks, so
/// that a hit costs two reference counts and two cached hashes, not a
/// vector of frames and hashing their text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub kernel: Stack,
    pub user: Stack,
}

impl StackKey {
    /// The frames shown: kernel frames, then user frames, innermost first,
    /// at most [`STACK_DEPTH`] of them.
    pub fn frames(&self) -> impl Iterator<Item = &Arc<str>> {
        self.kernel.iter().chain(self.user.iter()).take(STACK_DEPTH)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetStats {
    /// Hits recorded.
    pub hits: u64,
    pub by_comm: Tally<Arc<str>>,
    pub by_pid: Tally<u32>,
    pub by_cpu: Tally<u32>,
    /// By [`HitRecord::caller`]: the calling function of an execute hit,
    /// the accessing one of a data hit.
    pub by_caller: Tally<Arc<str>>,
    /// Hits by stack, for hits that carried one.
    pub stacks: Tally<StackKey>,
    /// Latest changes of a data target's value, oldest first.
    pub values: VecDeque<ValueChange>,
    /// Hits per second.
    pub history: RateHistory,
    /// Monotonic time of the latest hit.
    pub last_ns: u64,
}

impl Default for TargetStats {
    fn default() -> Self {
        Self {
            hits: 0,
            by_comm: Tally::default(),
            by_pid: Tally::default(),
            by_cpu: Tally::default(),
            by_caller: Tally::default(),
            stacks: Tally::with_limit(MAX_STACKS),
            values: VecDeque::new(),
            history: RateHistory::default(),
            last_ns: 0,
        }
    }
}

impl TargetStats {
    /// Takes one record: its value and time always, its counts only while
    /// they come from the records (`tally`).
    fn record(&mut self, hit: &HitRecord, tally: bool) {
        if tally {
            self.hits += 1;
            self.by_comm.add(&hit.comm);
            self.by_pid.add(&hit.pid);
            self.by_cpu.add(&hit.cpu);
            self.by_caller.add_text(hit.caller());
            if !hit.kstack.is_empty() || !hit.ustack.is_empty() {
                self.stacks.add(&StackKey {
                    kernel: hit.kstack.clone(),
                    user: hit.ustack.clone(),
                });
            }
        }
        if let Some(change) = ValueChange::of(hit) {
            if self.values.len() == RECENT_VALUES {
                self.values.pop_front();
            }
            self.values.push_back(change);
        }
        self.history.record(hit.ts_ns);
        self.last_ns = self.last_ns.max(hit.ts_ns);
    }

    /// Counts everything from the kernel's aggregates of this target:
    /// `hits` are theirs, plus `uncounted` hits the kernel had no room to
    /// aggregate (which are in no breakdown).
    fn set_aggregates<'a>(
        &mut self,
        aggregates: impl Iterator<Item = &'a AggregateRecord>,
        uncounted: u64,
    ) {
        let mut hits = uncounted;
        let mut by_comm = Tally::default();
        let mut by_pid = Tally::default();
        let mut by_cpu = Tally::default();
        let mut by_caller = Tally::default();
        let mut stacks = Tally::with_limit(MAX_STACKS);
        for agg in aggregates {
            hits += agg.count;
            by_comm.add_n(&agg.comm, agg.count);
            by_pid.add_n(&agg.pid, agg.count);
            for c in &agg.cpus {
                by_cpu.add_n(&c.cpu, c.hits);
            }
            by_caller.add_n(&agg.caller, agg.count);
            if !agg.kstack.is_empty() || !agg.ustack.is_empty() {
                let key = StackKey {
                    kernel: agg.kstack.clone(),
                    user: agg.ustack.clone(),
                };
                stacks.add_n(&key, agg.count);
            }
        }
        self.hits = hits;
        self.by_comm = by_comm;
        self.by_pid = by_pid;
        self.by_cpu = by_cpu;
        self.by_caller = by_caller;
        self.stacks = stacks;
    }

    /// The stacks as shown, most hits first: hits by [`StackKey::frames`]
    /// (stacks that differ only below [`STACK_DEPTH`] frames count as one).
    pub fn top_stacks(&self) -> Vec<(u64, Vec<Arc<str>>)> {
        let mut shown: HashMap<Vec<Arc<str>>, u64, foldhash::fast::RandomState> =
            HashMap::default();
        for (key, n) in &self.stacks.counts {
            *shown.entry(key.frames().cloned().collect()).or_default() += n;
        }
        let mut top: Vec<_> = shown.into_iter().map(|(frames, n)| (n, frames)).collect();
        top.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        top
    }

    /// Counts since `base` (an earlier copy of the same target): what the
    /// dashboard shows after "clear". Values and history are kept whole.
    pub fn since(&self, base: &Self) -> Self {
        let Self {
            hits,
            by_comm,
            by_pid,
            by_cpu,
            by_caller,
            stacks,
            values,
            history,
            last_ns,
        } = self;
        Self {
            hits: hits.saturating_sub(base.hits),
            by_comm: by_comm.since(&base.by_comm),
            by_pid: by_pid.since(&base.by_pid),
            by_cpu: by_cpu.since(&base.by_cpu),
            by_caller: by_caller.since(&base.by_caller),
            stacks: stacks.since(&base.stacks),
            values: values.clone(),
            history: history.clone(),
            last_ns: *last_ns,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub targets: Vec<TargetStats>,
    /// Kernel-side counters as last read, per target.
    pub counters: Vec<Counters>,
    /// Shared with nothing else, but moved in without copying its strings.
    pub recent: VecDeque<Arc<HitRecord>>,
    pub total: u64,
    /// Monotonic time at which the run was armed (0 before).
    pub started_ns: u64,
    /// `-o` files that stopped being written, in the order they failed: the
    /// dashboard shows them (a message on stderr would land on its screen).
    pub export_failures: Vec<ExportFailure>,
    /// The counts by key come from the kernel's aggregates (set once they
    /// were read), no longer from the records.
    pub from_kernel: bool,
}

/// An `-o` file whose writing stopped (disk full, ...); tracing goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportFailure {
    /// As given on the command line.
    pub path: String,
    pub error: String,
}

impl Stats {
    pub fn new(targets: usize) -> Self {
        Self {
            targets: vec![TargetStats::default(); targets],
            counters: vec![Counters::default(); targets],
            started_ns: monotonic_ns(),
            ..Default::default()
        }
    }

    pub fn record(&mut self, slot: usize, hit: Arc<HitRecord>) {
        self.total += 1;
        let tally = !self.from_kernel;
        if let Some(t) = self.targets.get_mut(slot) {
            t.record(&hit, tally);
        }
        if self.recent.len() == RECENT_HITS {
            self.recent.pop_front();
        }
        self.recent.push_back(hit);
    }

    /// Takes the kernel's aggregates (all of them, by target) as the counts
    /// by key from now on: exact, whatever records were dropped or left
    /// out. `counters` are the kernel's counters read with them.
    pub fn set_aggregates(
        &mut self,
        aggregates: &[(usize, AggregateRecord)],
        counters: &[Counters],
    ) {
        self.from_kernel = true;
        for (slot, t) in self.targets.iter_mut().enumerate() {
            let uncounted = counters.get(slot).map_or(0, |c| c.agg_full);
            t.set_aggregates(
                aggregates
                    .iter()
                    .filter(|(s, _)| *s == slot)
                    .map(|(_, a)| a),
                uncounted,
            );
        }
        self.counters = counters.to_vec();
    }

    /// Records that writing `path` stopped, once per file.
    pub fn export_failed(&mut self, path: &str, error: &str) {
        if !self.export_failures.iter().any(|f| f.path == path) {
            self.export_failures.push(ExportFailure {
                path: path.to_owned(),
                error: error.to_owned(),
            });
        }
    }

    /// Hits lost in the kernel (ring buffer full), all targets.
    pub fn dropped(&self) -> u64 {
        self.counters.iter().map(|c| c.dropped).sum()
    }

    /// Counts since `base`, an earlier copy of the same run ("clear
    /// counters"): hits, breakdowns, stacks, lost hits and the log start
    /// again from zero; values, history, the start time and export failures
    /// are kept.
    pub fn since(&self, base: &Self) -> Self {
        let Self {
            targets,
            counters,
            recent,
            total,
            started_ns,
            export_failures,
            from_kernel,
        } = self;
        let empty = TargetStats::default();
        Self {
            targets: targets
                .iter()
                .enumerate()
                .map(|(i, t)| t.since(base.targets.get(i).unwrap_or(&empty)))
                .collect(),
            counters: counters
                .iter()
                .enumerate()
                .map(|(i, c)| counters_since(c, &base.counters.get(i).copied().unwrap_or_default()))
                .collect(),
            // Hits are in arrival order: the newest `total - base.total`
            // came after the baseline.
            recent: {
                let new = total.saturating_sub(base.total).min(recent.len() as u64) as usize;
                recent.iter().skip(recent.len() - new).cloned().collect()
            },
            total: total.saturating_sub(base.total),
            started_ns: *started_ns,
            export_failures: export_failures.clone(),
            from_kernel: *from_kernel,
        }
    }
}

fn counters_since(c: &Counters, base: &Counters) -> Counters {
    let Counters {
        hits,
        dropped,
        dropped_busy,
        retried,
        kstack_errors,
        ustack_errors,
        filtered,
        value_errors,
        cond_rejected,
        unsampled,
        agg_full,
        stack_full,
        retraps,
    } = *c;
    Counters {
        hits: hits.saturating_sub(base.hits),
        dropped: dropped.saturating_sub(base.dropped),
        dropped_busy: dropped_busy.saturating_sub(base.dropped_busy),
        retried: retried.saturating_sub(base.retried),
        kstack_errors: kstack_errors.saturating_sub(base.kstack_errors),
        ustack_errors: ustack_errors.saturating_sub(base.ustack_errors),
        filtered: filtered.saturating_sub(base.filtered),
        value_errors: value_errors.saturating_sub(base.value_errors),
        cond_rejected: cond_rejected.saturating_sub(base.cond_rejected),
        unsampled: unsampled.saturating_sub(base.unsampled),
        agg_full: agg_full.saturating_sub(base.agg_full),
        stack_full: stack_full.saturating_sub(base.stack_full),
        retraps: retraps.saturating_sub(base.retraps),
    }
}

/// Shared with a frontend (the dashboard) that reads it on its own clock.
pub type SharedStats = Arc<Mutex<Stats>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A hit as the engine records it; built from JSON so that fields the
    /// engine adds later take their defaults here.
    pub(crate) fn hit(ts_s: f64, comm: &str, cpu: u32) -> HitRecord {
        serde_json::from_value(serde_json::json!({
            "ts_ns": (ts_s * NS_PER_S as f64) as u64,
            "cpu": cpu,
            "pid": 100,
            "tid": 101,
            "comm": comm,
            "target": "counter",
            "symbol": "counter",
            "addr": "0x5000",
            "mode": "w",
            "ip": "0x1234",
            "ip_sym": "bump+0x1f",
            "value": 7,
            "old_value": 6,
            "ustack": ["bump+0x1f", "main+0x10"],
        }))
        .expect("a valid hit")
    }

    #[test]
    fn history_buckets_by_second_and_fills_gaps() {
        let mut h = RateHistory::default();
        for ts in [10.1, 10.5, 10.9, 13.2] {
            h.record((ts * 1e9) as u64);
        }
        assert_eq!(h.last(14, 6), vec![0, 3, 0, 0, 1, 0]);
        assert_eq!(h.at(9), 0);
    }

    #[test]
    fn history_is_bounded() {
        let mut h = RateHistory::default();
        for s in 0..(HISTORY_SECONDS as u64 * 2) {
            h.record(s * NS_PER_S);
        }
        assert_eq!(h.counts.len(), HISTORY_SECONDS);
        assert_eq!(h.at(HISTORY_SECONDS as u64 * 2 - 1), 1);
        assert_eq!(h.at(0), 0);
        // A jump longer than the window starts afresh.
        h.record(10_000 * NS_PER_S);
        assert_eq!(h.counts.len(), 1);
        assert_eq!(h.last(10_000, 2), vec![0, 1]);
    }

    /// An execute hit at a function's first instruction counts under the
    /// function that called it (the frame under the target), not under
    /// the target itself.
    #[test]
    fn an_execute_hit_counts_under_its_caller() {
        let mut s = Stats::new(1);
        for (caller, n) in [("a", 3), ("b", 2)] {
            for _ in 0..n {
                let mut h = hit(1.0, "prog", 0);
                h.mode = "x".into();
                h.ip_sym = "target+0x0".into();
                h.value = None;
                h.ustack = Stack::new(vec![
                    "target+0x0".into(),
                    format!("{caller}+0x12 (prog.c:7)").into(),
                    "main+0x20".into(),
                ]);
                s.record(0, h.into());
            }
        }
        let callers = s.targets[0].by_caller.sorted();
        assert_eq!(callers, vec![(&Arc::from("a"), 3), (&Arc::from("b"), 2)]);
    }

    #[test]
    fn tallies_are_bounded() {
        let mut t = Tally::with_limit(2);
        for k in [1u32, 2, 3, 1, 4] {
            t.add(&k);
        }
        assert_eq!(t.get(&1), 2);
        assert_eq!(t.get(&2), 1);
        assert_eq!(t.get(&3), 0);
        assert_eq!(t.overflow, 2);
        assert_eq!(t.sorted(), vec![(&1, 2), (&2, 1)]);
    }

    #[test]
    fn record_counts_every_breakdown() {
        let mut s = Stats::new(2);
        s.record(0, hit(1.0, "a", 0).into());
        s.record(0, hit(1.5, "b", 1).into());
        s.record(1, hit(2.0, "a", 1).into());
        s.record(7, hit(2.1, "a", 1).into()); // no such slot: counted in the total only
        assert_eq!(s.total, 4);
        let t = &s.targets[0];
        assert_eq!(t.hits, 2);
        assert_eq!(t.by_comm.get(&Arc::from("a")), 1);
        assert_eq!(t.by_cpu.get(&1), 1);
        // A data hit's caller is the accessing function.
        assert_eq!(t.by_caller.sorted(), vec![(&Arc::from("bump"), 2)]);
        assert_eq!(
            t.top_stacks(),
            vec![(2, vec!["bump+0x1f".into(), "main+0x10".into()])]
        );
        assert_eq!(t.values.len(), 2);
        assert_eq!(
            (t.values[0].old.as_deref(), t.values[0].new.as_str()),
            (Some("6"), "7")
        );
        assert_eq!(t.history.at(1), 2);
        assert_eq!(s.recent.len(), 4);
    }

    #[test]
    fn stacks_count_by_frames() {
        let frames = |n: usize, last: &str| -> Vec<Arc<str>> {
            (0..n)
                .map(|i| Arc::from(format!("f{i}+0x1")))
                .chain([Arc::from(last)])
                .collect()
        };
        let mut t = TargetStats::default();
        let mut record = |ustack: Vec<Arc<str>>| {
            let mut h = hit(1.0, "a", 0);
            h.ustack = Stack::new(ustack);
            t.record(&h, true);
        };
        // The same frames in stacks that are not shared: one entry.
        record(frames(2, "main+0x1"));
        record(frames(2, "main+0x1"));
        // Deeper than shown, differing only below STACK_DEPTH: one line.
        record(frames(STACK_DEPTH, "a+0x1"));
        record(frames(STACK_DEPTH, "b+0x1"));
        record(frames(STACK_DEPTH, "b+0x1"));
        assert_eq!(t.stacks.counts.len(), 3);
        let top = t.top_stacks();
        assert_eq!(
            top.iter().map(|(n, f)| (*n, f.len())).collect::<Vec<_>>(),
            [(3, STACK_DEPTH), (2, 3)]
        );
        assert_eq!(top[1].1, frames(2, "main+0x1"));
    }

    /// Once the kernel's aggregates are read they are the counts: records
    /// that arrive later (made before the read, or after it) add nothing to
    /// them, and hits the kernel had no room for count in `hits` alone.
    #[test]
    fn aggregates_replace_the_counts_of_records() {
        let mut stats = Stats::new(2);
        stats.record(0, hit(1.0, "early", 0).into());
        let agg = |comm: &str, pid, cpus: &[(u32, u64)], ustack: &[&str]| AggregateRecord {
            comm: comm.into(),
            pid,
            count: cpus.iter().map(|c| c.1).sum(),
            cpus: cpus
                .iter()
                .map(|&(cpu, hits)| crate::record::format::CpuHits { cpu, hits })
                .collect(),
            caller: "main".into(),
            ustack: ustack.iter().map(|&f| Arc::from(f)).collect(),
            ..AggregateRecord::default()
        };
        let counters = [
            Counters {
                hits: 12,
                agg_full: 2,
                ..Counters::default()
            },
            Counters::default(),
        ];
        stats.set_aggregates(
            &[
                (0, agg("a", 7, &[(0, 3), (1, 4)], &["t+0x0", "main+0x4"])),
                (0, agg("b", 8, &[(1, 3)], &[])),
            ],
            &counters,
        );
        stats.record(0, hit(2.0, "late", 1).into());
        let t = &stats.targets[0];
        assert_eq!(t.hits, 12, "10 aggregated + 2 the kernel had no room for");
        assert_eq!(t.by_comm.get(&Arc::from("a")), 7);
        assert_eq!(t.by_comm.get(&Arc::from("late")), 0);
        assert_eq!((t.by_cpu.get(&0), t.by_cpu.get(&1)), (3, 7));
        assert_eq!(t.by_pid.get(&8), 3);
        assert_eq!(t.by_caller.get(&Arc::from("main")), 10);
        assert_eq!(
            t.stacks.counts.len(),
            1,
            "the aggregate without a stack has none"
        );
        assert_eq!(stats.targets[1].hits, 0);
        // The record's value and time still count.
        assert_eq!(t.last_ns, 2 * NS_PER_S);
        assert_eq!(stats.counters[0].agg_full, 2);
    }

    #[test]
    fn since_subtracts_a_baseline() {
        let mut s = Stats::new(1);
        s.record(0, hit(1.0, "a", 0).into());
        s.record(0, hit(1.1, "b", 0).into());
        s.counters[0].dropped = 3;
        let base = s.clone();
        s.record(0, hit(2.0, "a", 1).into());
        s.counters[0].dropped = 5;
        let d = s.since(&base);
        assert_eq!(d.total, 1);
        assert_eq!(d.targets[0].hits, 1);
        assert_eq!(d.targets[0].by_comm.sorted(), vec![(&Arc::from("a"), 1)]);
        assert_eq!(d.targets[0].by_cpu.sorted(), vec![(&1, 1)]);
        assert_eq!(d.dropped(), 2);
        assert_eq!(d.recent.len(), 1);
        // History is a rate: clearing keeps it.
        assert_eq!(d.targets[0].history.at(1), 2);
    }

    #[test]
    fn export_failures_are_kept_once_per_file_and_survive_a_clear() {
        let mut s = Stats::new(1);
        s.export_failed("/tmp/t.jsonl", "No space left on device");
        s.export_failed("/tmp/t.jsonl", "again");
        s.export_failed("t.txt", "EIO");
        let base = s.clone();
        let d = s.since(&base);
        assert_eq!(
            d.export_failures,
            vec![
                ExportFailure {
                    path: "/tmp/t.jsonl".into(),
                    error: "No space left on device".into()
                },
                ExportFailure {
                    path: "t.txt".into(),
                    error: "EIO".into()
                },
            ]
        );
    }
}

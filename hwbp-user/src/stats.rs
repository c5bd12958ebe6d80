//! Running aggregates of a session: what the summary, the dashboard and the
//! metrics show. Updated by the collector for every hit; read by frontends.

use std::collections::{HashMap, VecDeque};

use hwbp_common::Counters;

use crate::trace::HitRecord;

/// Hits kept for the live log.
pub const RECENT_HITS: usize = 256;

#[derive(Clone, Debug, Default)]
pub struct TargetStats {
    /// Hits recorded.
    pub hits: u64,
    pub by_comm: HashMap<String, u64>,
    pub by_pid: HashMap<u32, u64>,
    pub by_cpu: HashMap<u32, u64>,
    /// By instruction pointer symbol (the accessing code for data targets).
    pub by_caller: HashMap<String, u64>,
    /// Latest values of a data target, oldest first.
    pub values: VecDeque<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub targets: Vec<TargetStats>,
    /// Kernel-side counters as last read, per target.
    pub counters: Vec<Counters>,
    pub recent: VecDeque<HitRecord>,
    pub total: u64,
}

impl Stats {
    pub fn new(targets: usize) -> Self {
        Self {
            targets: vec![TargetStats::default(); targets],
            counters: vec![Counters::default(); targets],
            ..Default::default()
        }
    }

    pub fn record(&mut self, slot: usize, hit: &HitRecord) {
        self.total += 1;
        if let Some(t) = self.targets.get_mut(slot) {
            t.hits += 1;
            *t.by_comm.entry(hit.comm.clone()).or_default() += 1;
            *t.by_pid.entry(hit.pid).or_default() += 1;
            *t.by_cpu.entry(hit.cpu).or_default() += 1;
            *t.by_caller.entry(hit.ip_sym.clone()).or_default() += 1;
            if let Some(v) = hit.value {
                if t.values.len() == 16 {
                    t.values.pop_front();
                }
                t.values.push_back(v);
            }
        }
        if self.recent.len() == RECENT_HITS {
            self.recent.pop_front();
        }
        self.recent.push_back(hit.clone());
    }

    /// Hits lost in the kernel (ring buffer full), all targets.
    pub fn dropped(&self) -> u64 {
        self.counters.iter().map(|c| c.dropped).sum()
    }
}

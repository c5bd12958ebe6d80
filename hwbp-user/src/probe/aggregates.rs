//! The program's exact aggregates seen from userspace: hits per target,
//! process, comm and stack (`AGGS`, a count per CPU) and the stacks' frames
//! (`STACKS`). The BPF program counts every hit there before it decides
//! whether the hit gets a record, so what is read here is exact whatever
//! the ring buffer dropped and whatever `--records` left out.

use std::{collections::HashMap, fmt, str::FromStr, sync::Arc};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuHashMap};
use hwbp_common::{AggKey, COMM_LEN, MAP_AGGS, MAP_STACKS, StackEntry};

use super::load::{LoadError, map_err};

/// Which hits get a record (`--records`); every hit is counted in the
/// aggregates whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Records {
    /// A record for every hit.
    #[default]
    All,
    /// A record for the first hit of a target on each CPU and then every
    /// Nth (N ≥ 2).
    Sample(u32),
    /// No records: the aggregates only, the least work per hit.
    None,
}

impl FromStr for Records {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "use `all`, `sample:N` (N from 1, e.g. sample:100) or `none`";
        match s {
            "all" => Ok(Self::All),
            "none" => Ok(Self::None),
            _ => {
                let Some(n) = s.strip_prefix("sample:") else {
                    return Err(format!("`{s}` is not a record mode: {usage}"));
                };
                match n.parse::<u32>() {
                    Ok(0) | Err(_) => Err(format!(
                        "`{s}`: the sampling period must be a whole number from 1: {usage}"
                    )),
                    Ok(1) => Ok(Self::All),
                    Ok(n) => Ok(Self::Sample(n)),
                }
            }
        }
    }
}

impl fmt::Display for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Sample(n) => write!(f, "sample:{n}"),
            Self::None => f.write_str("none"),
        }
    }
}

/// Room in the program's maps, set when it is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// The ring buffer, in bytes (`--buffer-size`).
    pub buffer: u64,
    /// Distinct (target, process, comm, stack) keys (`--max-keys`).
    pub keys: u32,
    /// Distinct stacks (`--max-stacks`), 2 KiB of kernel memory each.
    pub stacks: u32,
}

/// Default `--max-keys`: 16,384 keys, 40 bytes of key and 8 per CPU each.
pub const DEFAULT_MAX_KEYS: u32 = 16 << 10;
/// Default `--max-stacks`: 4,096 stacks, 8 MiB of kernel memory.
pub const DEFAULT_MAX_STACKS: u32 = 4 << 10;

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            buffer: u64::from(super::load::DEFAULT_BUFFER_SIZE),
            keys: DEFAULT_MAX_KEYS,
            stacks: DEFAULT_MAX_STACKS,
        }
    }
}

/// The hits of one target by one process (and comm) with one stack.
#[derive(Clone, Debug)]
pub struct Aggregate {
    pub slot: usize,
    pub pid: u32,
    pub comm: [u8; COMM_LEN],
    /// The stack's id; 0 for hits without a stack.
    pub stack_id: u64,
    /// The instruction at the hit (see [`AggKey::ip`]).
    pub ip: u64,
    /// Its frames, `None` when it has none or `STACKS` had no room for them.
    pub stack: Option<Arc<StoredStack>>,
    /// Hits per CPU, by CPU number.
    pub per_cpu: Vec<(u32, u64)>,
}

impl Aggregate {
    /// Hits on every CPU.
    pub fn count(&self) -> u64 {
        self.per_cpu.iter().map(|&(_, n)| n).sum()
    }
}

/// A stack as `STACKS` holds it, cut to the frames it has: an entry of the
/// map is 2 KiB whatever its depth, and 100,000 of them kept whole took
/// 200 MiB.
#[derive(Debug, PartialEq, Eq)]
pub struct StoredStack {
    /// The kernel frames, then the user frames, innermost first each.
    frames: Box<[u64]>,
    kstack_len: usize,
    /// The return address at a function's entry (see [`StackEntry::ret`]).
    pub ret: u64,
}

impl StoredStack {
    pub fn kstack(&self) -> &[u64] {
        &self.frames[..self.kstack_len]
    }

    pub fn ustack(&self) -> &[u64] {
        &self.frames[self.kstack_len..]
    }
}

impl From<&StackEntry> for StoredStack {
    fn from(entry: &StackEntry) -> Self {
        let (kernel, user) = (entry.kstack(), entry.ustack());
        Self {
            frames: kernel.iter().chain(user).copied().collect(),
            kstack_len: kernel.len(),
            ret: entry.ret,
        }
    }
}

/// The two maps, and the stacks read from them so far (a stack, once
/// stored, never changes: each is read once).
pub struct AggregateMaps {
    keys: PerCpuHashMap<MapData, AggKey, u64>,
    stacks: BpfHashMap<MapData, u64, StackEntry>,
    known: HashMap<u64, Arc<StoredStack>>,
}

impl AggregateMaps {
    pub(super) fn new(keys: Map, stacks: Map) -> Result<Self, LoadError> {
        Ok(Self {
            keys: PerCpuHashMap::try_from(keys).map_err(|e| map_err(MAP_AGGS, e))?,
            stacks: BpfHashMap::try_from(stacks).map_err(|e| map_err(MAP_STACKS, e))?,
            known: HashMap::new(),
        })
    }

    /// Everything counted so far, in no order. A key the program adds while
    /// this reads may be missed this time (it is there the next).
    pub fn read(&mut self) -> Result<Vec<Aggregate>, LoadError> {
        let mut out = Vec::new();
        for entry in self.keys.iter() {
            let (key, values) = entry.map_err(|e| map_err(MAP_AGGS, e))?;
            let per_cpu = values
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n > 0)
                .map(|(cpu, &n)| (cpu as u32, n))
                .collect();
            let stack = match key.stack {
                0 => None,
                id => stack(&self.stacks, &mut self.known, id),
            };
            out.push(Aggregate {
                slot: key.slot as usize,
                pid: key.pid,
                comm: key.comm,
                stack_id: key.stack,
                ip: key.ip,
                stack,
                per_cpu,
            });
        }
        Ok(out)
    }
}

/// The frames of stack `id`, read once into `known`; `None` when `STACKS`
/// has none.
fn stack(
    stacks: &BpfHashMap<MapData, u64, StackEntry>,
    known: &mut HashMap<u64, Arc<StoredStack>>,
    id: u64,
) -> Option<Arc<StoredStack>> {
    if let Some(stack) = known.get(&id) {
        return Some(stack.clone());
    }
    let stack = Arc::new(StoredStack::from(&stacks.get(&id, 0).ok()?));
    known.insert(id, stack.clone());
    Some(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_modes_parse_with_one_message_for_each_mistake() {
        assert_eq!("all".parse(), Ok(Records::All));
        assert_eq!("none".parse(), Ok(Records::None));
        assert_eq!("sample:100".parse(), Ok(Records::Sample(100)));
        // Every hit: the same as all.
        assert_eq!("sample:1".parse(), Ok(Records::All));
        for bad in ["sample:0", "sample:", "sample:x", "sample:-3"] {
            let e = bad.parse::<Records>().expect_err(bad);
            assert!(e.contains("whole number from 1"), "{bad}: {e}");
        }
        let e = "some".parse::<Records>().expect_err("some");
        assert!(e.contains("is not a record mode"), "{e}");
        assert_eq!(Records::Sample(7).to_string(), "sample:7");
    }
}

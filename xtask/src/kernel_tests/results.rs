//! What a kernel test is, and what its scenario left in the guest's /out,
//! with the assertions several tests share.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, ensure};

use hwbp_tests::harness::trace::{
    Trace, expect_hit_frame, hex_field, parse_framing, parse_trace, text_field,
};

/// One kernel test: what it runs in the guest and what it asserts.
pub(super) struct KernelTest {
    /// Names the files its scenario leaves in /out (NAME.cmd, NAME.rc,
    /// NAME.stdout, NAME.stderr and, for most, NAME.jsonl).
    pub(super) name: &'static str,
    /// Shell commands, run in /out by tests/vm/kernel-tests.sh with its
    /// helpers (`run NAME ARGS`, `start NAME ARGS` and `finish`, `fact KEY
    /// VALUE`, `addr_of SYMBOL`) and its variables (`$exec_offset`,
    /// `$blacklisted`). They only run things and do not stop at a failure.
    pub(super) scenario: &'static str,
    /// Checks what the scenario left.
    pub(super) check: fn(&Results) -> Result<()>,
}

/// What the guest left.
pub(super) struct Results {
    pub(super) dir: PathBuf,
    pub(super) facts: HashMap<String, String>,
    pub(super) exec_offset: u64,
}

/// One hwbp-trace run.
pub(super) struct Run {
    pub(super) rc: i32,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Results {
    pub(super) fn load(dir: &Path, exec_offset: u64) -> Result<Self> {
        let path = dir.join("facts.env");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let facts = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        Ok(Self {
            dir: dir.to_owned(),
            facts,
            exec_offset,
        })
    }

    pub(super) fn fact(&self, key: &str) -> Result<&str> {
        self.facts
            .get(key)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| anyhow!("the guest did not record {key} in facts.env"))
    }

    /// A kernel address from facts.env, as hwbp-trace prints addresses.
    pub(super) fn addr(&self, key: &str) -> Result<u64> {
        let text = self.fact(key)?;
        u64::from_str_radix(text.trim_start_matches("0x"), 16)
            .with_context(|| format!("{key}={text} is not an address"))
    }

    pub(super) fn read(&self, file: &str) -> Result<String> {
        let path = self.dir.join(file);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    pub(super) fn run(&self, name: &str) -> Result<Run> {
        let rc = self.read(&format!("{name}.rc"))?;
        Ok(Run {
            rc: rc
                .trim()
                .parse()
                .with_context(|| format!("{name}.rc holds {rc:?}"))?,
            stdout: self.read(&format!("{name}.stdout"))?,
            stderr: self.read(&format!("{name}.stderr"))?,
        })
    }

    /// A run that must have exited 0.
    pub(super) fn succeeded(&self, name: &str) -> Result<Run> {
        let run = self.run(name)?;
        ensure!(
            run.rc == 0,
            "hwbp-trace exited {}; stderr:\n{}",
            run.rc,
            run.stderr.trim()
        );
        Ok(run)
    }

    /// The run, which must have exited 0, and its trace.
    pub(super) fn traced(&self, name: &str) -> Result<(Run, Trace)> {
        let run = self.succeeded(name)?;
        let trace = parse_trace(&self.read(&format!("{name}.jsonl"))?)
            .with_context(|| format!("{name}.jsonl"))?;
        Ok((run, trace))
    }

    /// [`Results::traced`] for a run whose ring buffer may drop records:
    /// the framing and the accounting checked, drops allowed (each one
    /// counted, `lost` then equal to `dropped`).
    pub(super) fn traced_with_drops(&self, name: &str) -> Result<(Run, Trace)> {
        let run = self.succeeded(name)?;
        let trace = parse_framing(&self.read(&format!("{name}.jsonl"))?)
            .with_context(|| format!("{name}.jsonl"))?;
        Ok((run, trace))
    }
}

/// Exactly `expected` hits, all at `addr` with `mode`, all from the fixture.
pub(super) fn expect_hits(trace: &Trace, expected: usize, addr: u64, mode: &str) -> Result<()> {
    ensure!(
        trace.hits.len() == expected,
        "expected exactly {expected} hits, the trace has {}",
        trace.hits.len()
    );
    for hit in &trace.hits {
        ensure!(
            hex_field(hit, "addr")? == addr,
            "hit at another address: {hit}"
        );
        ensure!(
            text_field(hit, "mode")? == mode,
            "hit with mode other than {mode}: {hit}"
        );
        ensure!(
            text_field(hit, "comm")? == "fx_kernel",
            "hit from another task: {hit}"
        );
    }
    Ok(())
}

/// Every hit's kernel stack has a frame in `function`.
pub(super) fn expect_frame(trace: &Trace, function: &str) -> Result<()> {
    trace
        .hits
        .iter()
        .try_for_each(|hit| expect_hit_frame(hit, function))
}

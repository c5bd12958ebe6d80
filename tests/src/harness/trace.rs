//! hwbp-trace's JSONL traces as the harness reads them: the framing and
//! accounting every trace must keep, the fields of its records, and the
//! summaries and stacks the benchmark counts in large files.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    hash::{BuildHasher as _, RandomState},
    io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom},
    path::Path,
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::Value;

/// A JSONL trace, its framing already checked.
pub struct Trace {
    pub header: Value,
    pub hits: Vec<Value>,
    /// The kernel's exact counts, written after the hits.
    pub aggregates: Vec<Value>,
    pub summary: Value,
}

/// Checks the framing (a header first, a summary last, hits between, the
/// summary's counts equal to the hit lines, nothing lost or dropped).
pub fn parse_trace(text: &str) -> Result<Trace> {
    let trace = parse_framing(text)?;
    for target in trace.summary["targets"].as_array().into_iter().flatten() {
        ensure!(
            number(target, "dropped")? == 0,
            "hits dropped for {}: {target}",
            text_field(target, "target")?
        );
    }
    ensure!(
        number(&trace.summary, "lost")? == 0,
        "hits lost: {}",
        trace.summary
    );
    Ok(trace)
}

/// The framing alone (a header first, a summary last, hits between, then
/// the kernel's aggregates; the summary's hits equal to the hit lines, or at
/// least them in a file marked `trace_truncated`), and the accounting: per
/// target, `kernel_count = hits + unsampled + dropped + filtered + rejected
/// + retraps + missed + after_limit + unrecorded` (`rejected`, `unsampled`
/// and `retraps`, arm64's repeated traps, are there only when not 0),
/// `counted` is what the program counted of them, and the aggregates add
/// up to it (less `agg_full`).
///
/// Where every hit of a target was recorded, its records and its
/// aggregates, made by two paths (the record's frames, and the frames the
/// program stored once per stack), must count the same hits per process,
/// caller and stack.
pub fn parse_framing(text: &str) -> Result<Trace> {
    let lines: Vec<Value> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("line {} is not JSON: {line}", i + 1))
        })
        .collect::<Result<_>>()?;
    let kind = |value: &Value| value["type"].as_str().unwrap_or("").to_owned();
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        bail!("the trace is empty");
    };
    ensure!(
        kind(first) == "header",
        "the first line is not a header: {first}"
    );
    ensure!(
        kind(last) == "summary",
        "the last line is not a summary (cut short?): {last}"
    );
    let body = &lines[1..lines.len() - 1];
    let first_aggregate = body
        .iter()
        .position(|line| kind(line) == "aggregate")
        .unwrap_or(body.len());
    let hits: Vec<Value> = body[..first_aggregate].to_vec();
    let aggregates: Vec<Value> = body[first_aggregate..].to_vec();
    if let Some(odd) = hits.iter().find(|hit| kind(hit) != "hit") {
        bail!("a line between header and the aggregates is not a hit: {odd}");
    }
    if let Some(odd) = aggregates.iter().find(|a| kind(a) != "aggregate") {
        bail!("a line between the aggregates and the summary is not one: {odd}");
    }
    let summary = last.clone();
    let targets = summary["targets"]
        .as_array()
        .ok_or_else(|| anyhow!("the summary has no targets: {summary}"))?;
    let mut per_target: BTreeMap<String, u64> = BTreeMap::new();
    for hit in &hits {
        *per_target
            .entry(text_field(hit, "target")?.to_owned())
            .or_default() += 1;
    }
    for target in targets {
        let name = text_field(target, "target")?;
        let recorded = number(target, "hits")?;
        let lines = per_target.get(name).copied().unwrap_or(0);
        // A file that could not take every line (a full disk) says so.
        let truncated = summary["trace_truncated"] == true;
        ensure!(
            recorded == lines || (truncated && lines < recorded),
            "the summary says {recorded} hits for {name} but the trace has {lines} hit lines"
        );
        let optional = |key: &str| target[key].as_u64().unwrap_or(0);
        let counted = ["hits", "dropped", "after_limit", "unrecorded"]
            .into_iter()
            .map(|key| number(target, key))
            .sum::<Result<u64>>()?
            + optional("unsampled");
        ensure!(
            number(target, "counted")? == counted,
            "counted is not hits + unsampled + dropped + after_limit + unrecorded for {name}: \
             {target}"
        );
        let accounted = ["filtered", "missed"]
            .into_iter()
            .map(|key| number(target, key))
            .sum::<Result<u64>>()?
            + counted
            + optional("rejected")
            + optional("retraps");
        ensure!(
            number(target, "kernel_count")? == accounted,
            "kernel_count is not hits + unsampled + dropped + filtered + rejected + retraps + missed + \
             after_limit + unrecorded for {name}: {target}"
        );
        check_aggregates(name, target, &hits, &aggregates, truncated)?;
    }
    Ok(Trace {
        header: first.clone(),
        hits,
        aggregates,
        summary,
    })
}

/// The aggregates of target `name` add up to what the program counted, and
/// where every hit was recorded, count the records' own stacks exactly.
fn check_aggregates(
    name: &str,
    target: &Value,
    hits: &[Value],
    aggregates: &[Value],
    truncated: bool,
) -> Result<()> {
    let optional = |key: &str| target[key].as_u64().unwrap_or(0);
    let of_target = |line: &&Value| line["target"].as_str() == Some(name);
    let mut by_kernel: BTreeMap<String, u64> = BTreeMap::new();
    for agg in aggregates.iter().filter(of_target) {
        *by_kernel.entry(stack_key(agg)).or_default() += number(agg, "count")?;
    }
    let aggregated: u64 = by_kernel.values().sum();
    // A file that stopped taking lines (a full disk) holds its summary,
    // attempted last, and maybe not all of its aggregates.
    let counted = number(target, "counted")?;
    ensure!(
        aggregated + optional("agg_full") == counted
            || (truncated && aggregated + optional("agg_full") < counted),
        "the aggregates of {name} count {aggregated} hits (+ {} past --max-keys), the program \
         counted {counted}",
        optional("agg_full"),
    );
    // A moved target's aggregates carry its last name; a removed one keeps
    // its own: compare only where every hit has a record under this name.
    let every_hit_recorded = ["dropped", "after_limit", "unrecorded"]
        .into_iter()
        .map(|key| number(target, key))
        .sum::<Result<u64>>()?
        + optional("unsampled")
        + optional("agg_full")
        + optional("stack_full")
        == 0;
    if every_hit_recorded && !truncated && target["watches"].is_null() {
        let mut by_records: BTreeMap<String, u64> = BTreeMap::new();
        for hit in hits.iter().filter(of_target) {
            *by_records.entry(stack_key(hit)).or_default() += 1;
        }
        ensure!(
            by_records == by_kernel,
            "the records of {name} and the kernel's aggregates differ by stack:\n records: \
             {by_records:#?}\n kernel: {by_kernel:#?}"
        );
    }
    Ok(())
}

/// What a hit and an aggregate share: process, comm and both stacks.
fn stack_key(line: &Value) -> String {
    format!(
        "{} {} {} {}",
        line["pid"], line["comm"], line["kstack"], line["ustack"]
    )
}

pub fn text_field<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value[key]
        .as_str()
        .ok_or_else(|| anyhow!("no string field {key:?} in {value}"))
}

pub fn number(value: &Value, key: &str) -> Result<u64> {
    value[key]
        .as_u64()
        .ok_or_else(|| anyhow!("no number field {key:?} in {value}"))
}

pub fn hex_field(value: &Value, key: &str) -> Result<u64> {
    let text = text_field(value, key)?;
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .with_context(|| format!("{key} is not hex in {value}"))
}

/// The `value` of every hit, in order.
pub fn values(trace: &Trace) -> Result<Vec<u64>> {
    trace.hits.iter().map(|hit| number(hit, "value")).collect()
}

/// The hit's kernel stack is symbolized (every frame `name+0xOFFSET`, the
/// first one the hit's own instruction) and has a frame in `function`.
pub fn expect_hit_frame(hit: &Value, function: &str) -> Result<()> {
    let kstack: Vec<&str> = hit["kstack"]
        .as_array()
        .ok_or_else(|| anyhow!("hit without kstack: {hit}"))?
        .iter()
        .map(|frame| frame.as_str().unwrap_or(""))
        .collect();
    ensure!(
        kstack.first() == Some(&text_field(hit, "ip_sym")?),
        "the kernel stack does not start at the hit's instruction: {hit}"
    );
    ensure!(
        kstack.iter().all(|frame| frame
            .split_once("+0x")
            .is_some_and(|(name, _)| !name.is_empty() && !name.starts_with("0x"))),
        "a kernel frame without a symbol: {hit}"
    );
    let prefix = format!("{function}+");
    ensure!(
        kstack.iter().any(|frame| frame.starts_with(&prefix)),
        "a kernel stack without {function}: {hit}"
    );
    Ok(())
}

// What the tools wrote.

/// The totals of a trace's summary record, over its targets.
pub struct JsonlSummary {
    pub hits: u64,
    pub lost: u64,
    pub kernel_count: u64,
    pub stack_errors: u64,
    /// Hits conditions rejected (`TARGET if COND`).
    pub rejected: u64,
    /// Every hit the program counted, recorded or not (`--records`).
    pub counted: u64,
}

/// How many different `ustack` arrays the hit records of a JSONL file hold
/// (compared as written: the same frames give the same text).
pub fn distinct_ustacks(path: &Path) -> Result<u64> {
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let hasher = RandomState::new();
    let mut seen = HashSet::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader
            .read_line(&mut line)
            .with_context(|| format!("reading {}", path.display()))?
            == 0
        {
            break;
        }
        let key = "\"ustack\":";
        let Some(at) = line.find(key) else { continue };
        let rest = &line[at + key.len()..];
        // Parse the array alone, up to its end, to find where it ends.
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match values.next() {
            Some(Ok(Value::Array(_))) => {}
            _ => bail!(
                "a ustack in {} is not an array: {line:.200}",
                path.display()
            ),
        }
        seen.insert(hasher.hash_one(&rest[..values.byte_offset()]));
    }
    Ok(seen.len() as u64)
}

/// The `summary` record, the last line of hwbp-trace's JSONL file.
pub fn jsonl_summary(path: &Path) -> Result<JsonlSummary> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.seek(SeekFrom::Start(len.saturating_sub(1 << 20)))
        .with_context(|| format!("seeking in {}", path.display()))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)
        .with_context(|| format!("reading {}", path.display()))?;
    let tail = String::from_utf8_lossy(&tail);
    let last = tail
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .ok_or_else(|| anyhow!("{} is empty", path.display()))?;
    let summary: Value = serde_json::from_str(last)
        .with_context(|| format!("parsing the last line of {}", path.display()))?;
    ensure!(
        summary["type"] == "summary",
        "the last line of {} is not the summary record: {last:.200}",
        path.display()
    );
    let targets = summary["targets"].as_array().cloned().unwrap_or_default();
    let sum = |field: &str| {
        targets
            .iter()
            .map(|t| t[field].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    Ok(JsonlSummary {
        hits: sum("hits"),
        lost: summary["lost"].as_u64().unwrap_or(0),
        kernel_count: sum("kernel_count"),
        stack_errors: sum("kstack_errors") + sum("ustack_errors"),
        rejected: sum("rejected"),
        counted: sum("counted"),
    })
}

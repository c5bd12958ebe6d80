//! Kernel tests of changes while tracing (`--control`), system-wide.

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::results::{KernelTest, Results};
use hwbp_tests::harness::trace::{hex_field, number, text_field};

/// A system-wide watch of pid_max moved to __x64_sys_getpgid between two
/// phases: 50 writes to pid_max, then 30 getpgid calls on CPU 0, 20 on
/// CPU 1 and 10 more writes to pid_max. The move keeps the events (one per
/// CPU, the same PERF_EVENT_IOC_IDs): exactly 50 hits at pid_max before
/// the `change` record, exactly 50 at __x64_sys_getpgid after, none at
/// pid_max after.
pub(super) const LIVE_MOVE: KernelTest = KernelTest {
    name: "livemove",
    scenario: r#"
        mkfifo /tmp/live.ctl /tmp/live.ack
        exec 7<>/tmp/live.ack
        start livemove -q --no-tui -d 120 -o livemove.jsonl --control /tmp/live.ctl --ack /tmp/live.ack pid_max:w
        fx_kernel pidmax 50 > livemove.fx0
        echo 'move pid_max __x64_sys_getpgid' > /tmp/live.ctl
        read -r answer <&7
        echo "$answer" > livemove.ack
        taskset -c 0 fx_kernel getpgid 30 > livemove.fx1
        taskset -c 1 fx_kernel getpgid 20 > livemove.fx2
        fx_kernel pidmax 10 > livemove.fx3
        kill -TERM "$bg_pid"
        finish
        exec 7<&-
    "#,
    check: live_move,
};

fn live_move(results: &Results) -> Result<()> {
    results.succeeded("livemove")?;
    let ack = results.read("livemove.ack")?;
    ensure!(ack.trim() == "ok", "the move was answered {ack:?}");
    let text = results.read("livemove.jsonl")?;
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect::<Result<_>>()?;
    let at = lines
        .iter()
        .position(|l| l["type"] == "change")
        .context("no change record")?;
    let change = &lines[at];
    ensure!(
        change["action"] == "move" && change["method"] == "modify",
        "not a move by modification: {change}"
    );
    let cpus: usize = results.fact("cpus")?.parse()?;
    let ids = change["event_ids"].as_array().map_or(0, Vec::len);
    ensure!(
        ids == cpus && change["event_ids_before"] == change["event_ids"],
        "expected the same {cpus} event ids before and after: {change}"
    );
    let pid_max = results.addr("pid_max_addr")?;
    let getpgid = results.addr("getpgid_addr")?;
    let count = |range: &[Value], addr: u64| -> Result<usize> {
        let mut n = 0;
        for hit in range.iter().filter(|l| l["type"] == "hit") {
            if hex_field(hit, "addr")? == addr && text_field(hit, "comm")? == "fx_kernel" {
                n += 1;
            }
        }
        Ok(n)
    };
    let (before, after) = lines.split_at(at);
    ensure!(
        count(before, pid_max)? == 50 && count(before, getpgid)? == 0,
        "expected 50 pid_max hits before the move and nothing else; got {} and {}",
        count(before, pid_max)?,
        count(before, getpgid)?
    );
    ensure!(
        count(after, getpgid)? == 50 && count(after, pid_max)? == 0,
        "expected 50 getpgid hits after the move and no pid_max hit; got {} and {}",
        count(after, getpgid)?,
        count(after, pid_max)?
    );
    let summary = lines.last().context("no summary")?;
    let target = &summary["targets"][0];
    ensure!(
        number(summary, "lost")? == 0 && number(target, "missed")? == 0,
        "hits lost: {summary}"
    );
    let watches = target["watches"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let hits_after = after.iter().filter(|l| l["type"] == "hit").count() as u64;
    ensure!(
        watches.len() == 2
            && number(&watches[0], "hits")? == 50
            && number(&watches[1], "hits")? == hits_after,
        "expected two watches, pid_max's 50 hits then the rest: {summary}"
    );
    Ok(())
}

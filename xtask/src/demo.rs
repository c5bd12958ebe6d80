//! `cargo xtask demo`: the main job, shown on a kernel that allows it.
//!
//! Boots Debian's kernel in QEMU (see vm.rs) and runs tests/vm/demo.sh there:
//! `hwbp-trace vfs_read pid_max` system-wide while a workload reads files
//! and writes /proc/sys/kernel/pid_max. Then prints what the trace holds and
//! leaves it in target/demo/trace.jsonl.

use std::{collections::BTreeMap, fs, time::Duration};

use anyhow::{Context as _, Result, anyhow, ensure};
use clap::Args;
use serde_json::Value;

use crate::{build, setup, vm, workspace_root};

#[derive(Args)]
pub struct Options {
    /// Boot the VM with KVM instead of TCG.
    #[arg(long)]
    kvm: bool,
    /// Debian kernel to boot (default: what linux-image-amd64 depends on).
    #[arg(long, value_name = "VERSION")]
    kernel: Option<String>,
    /// Seconds to trace in the guest.
    #[arg(long, default_value_t = 6)]
    duration: u32,
    /// Hits to show per target.
    #[arg(long, default_value_t = 2)]
    show: usize,
}

pub fn run(options: Options) -> Result<()> {
    let Options {
        kvm,
        kernel,
        duration,
        show,
    } = options;
    setup::run()?;
    build::run()?;
    let kernel = vm::fetch_kernel(kernel.as_deref())?;
    let demo_dir = workspace_root().join("target/demo");
    let out_dir = demo_dir.join("out");
    let command = ["/vm/demo.sh".to_owned(), duration.to_string()];
    let outcome = vm::boot(&vm::Boot {
        kernel: &kernel,
        command: &command,
        kvm,
        timeout: Some(Duration::from_secs(600)),
        interactive: false,
        out_dir: &out_dir,
    })?;
    ensure!(
        outcome.exit == 0,
        "hwbp-trace in the guest exited {} (its messages are above)",
        outcome.exit
    );
    let source = out_dir.join("trace.jsonl");
    let trace_path = demo_dir.join("trace.jsonl");
    fs::copy(&source, &trace_path)
        .with_context(|| format!("copying {} to {}", source.display(), trace_path.display()))?;
    let text = fs::read_to_string(&trace_path)
        .with_context(|| format!("reading {}", trace_path.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not JSON Lines", trace_path.display()))?;
    let header = lines
        .first()
        .filter(|line| line["type"] == "header")
        .ok_or_else(|| anyhow!("the trace has no header line"))?;
    let summary = lines
        .last()
        .filter(|line| line["type"] == "summary")
        .ok_or_else(|| anyhow!("the trace has no summary line (cut short?)"))?;
    let hits: Vec<&Value> = lines.iter().filter(|line| line["type"] == "hit").collect();

    let str_of = |value: &Value, key: &str| value[key].as_str().unwrap_or("?").to_owned();
    println!("\n===== hwbp demo: what the trace holds =====");
    println!(
        "kernel {} in QEMU, {} hit(s) recorded; the trace: {}",
        str_of(header, "kernel_release"),
        hits.len(),
        trace_path.display()
    );
    println!(
        "\n{:<10} {:<20} {:<5} {:>6}",
        "TARGET", "ADDRESS", "MODE", "HITS"
    );
    let targets = summary["targets"].as_array().cloned().unwrap_or_default();
    for target in &targets {
        println!(
            "{:<10} {:<20} {:<5} {:>6}",
            str_of(target, "target"),
            str_of(target, "addr"),
            str_of(target, "mode"),
            target["hits"].as_u64().unwrap_or(0)
        );
    }
    for target in &targets {
        let name = str_of(target, "target");
        let mine: Vec<&&Value> = hits
            .iter()
            .filter(|hit| hit["target"] == name.as_str())
            .collect();
        let mut comms: BTreeMap<String, usize> = BTreeMap::new();
        for hit in &mine {
            *comms.entry(str_of(hit, "comm")).or_default() += 1;
        }
        println!("\n{name}: {} hit(s), by task: {comms:?}", mine.len());
        // The workload's hits first (the fixture, then wc); hwbp-trace's
        // own reads are the least interesting ones.
        let rank = |hit: &Value| match hit["comm"].as_str() {
            Some("fx_kernel") => 0,
            Some("wc") => 1,
            Some("hwbp-trace") => 3,
            _ => 2,
        };
        let mut shown = mine.clone();
        shown.sort_by_key(|hit| rank(hit));
        shown.truncate(show);
        for hit in shown {
            let value = hit["value"]
                .as_u64()
                .map(|value| format!(" value={value}"))
                .unwrap_or_default();
            println!(
                "  {}-{} [cpu {}] at {}{value}",
                str_of(hit, "comm"),
                hit["tid"].as_u64().unwrap_or(0),
                hit["cpu"].as_u64().unwrap_or(0),
                str_of(hit, "ip_sym"),
            );
            for frame in hit["kstack"].as_array().into_iter().flatten() {
                println!("      {}", frame.as_str().unwrap_or("?"));
            }
        }
    }
    let count = |name: &str| {
        targets
            .iter()
            .find(|target| target["target"] == name)
            .and_then(|target| target["hits"].as_u64())
            .unwrap_or(0)
    };
    let tasks = |name: &str| {
        let mut comms: BTreeMap<String, usize> = BTreeMap::new();
        for hit in hits.iter().filter(|hit| hit["target"] == name) {
            *comms.entry(str_of(hit, "comm")).or_default() += 1;
        }
        comms
            .iter()
            .map(|(comm, n)| format!("{n} by {comm}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "\nWhat this showed: hwbp-trace ran as root inside a QEMU guest on Debian's kernel \
         {release}, system-wide: one hardware breakpoint per CPU for each target, armed \
         through perf events. The CPU's debug registers trapped every call of the kernel \
         function vfs_read ({reads} hits: {read_tasks}) and every store to the kernel variable \
         pid_max ({writes} hits: {write_tasks}, the fixture writing /proc/sys/kernel/pid_max; \
         `value` is the value stored). For each hit a BPF \
         program attached to the breakpoint's perf event recorded the task, the CPU, the \
         instruction and the kernel stack into a ring buffer, and hwbp-trace named the \
         addresses from /proc/kallsyms. Nothing in the kernel was patched or recompiled. \
         The whole trace is in {path}, one JSON object per line.",
        release = str_of(header, "kernel_release"),
        reads = count("vfs_read"),
        read_tasks = tasks("vfs_read"),
        writes = count("pid_max"),
        write_tasks = tasks("pid_max"),
        path = trace_path.display(),
    );
    Ok(())
}

//! Root integration tests: changing the targets while tracing through
//! `--control` (docs/usage.md). The fx_user fixture writes FX_LIVE_A N
//! times, waits, then writes FX_LIVE_A and FX_LIVE_B N times each
//! (`phases`): a change made between the phases has exact counts on both
//! sides. Run by `cargo xtask test` with --test-threads=1 (they share
//! debug registers).

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use hwbp_tests::traces::fx;
use hwbp_tests::{TempDir, hwbp_trace, root_or_skip};
use serde_json::Value;

/// Writes in each phase.
const N: u64 = 1000;

/// A trace of `fx_user phases N` with `--control` and `--ack` FIFOs.
struct LiveRun {
    dir: TempDir,
    child: Child,
    control: File,
    ack: BufReader<File>,
}

fn mkfifo(path: &str) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo");
    assert!(status.success(), "mkfifo {path}");
}

impl LiveRun {
    /// Starts tracing `targets` (extra options first) and waits until the
    /// fixture's first phase is done.
    fn start(name: &str, args: &[&str]) -> Self {
        let dir = TempDir::new(name);
        let (ctl, ack) = (dir.path("ctl"), dir.path("ack"));
        // Made here, so that the test holds them open first: read-write, as
        // neither open then waits for the other side.
        mkfifo(&ctl);
        mkfifo(&ack);
        let open = |path: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .expect("opening a FIFO")
        };
        let control = open(&ctl);
        let ack_file = open(&ack);
        let child = Command::new(hwbp_trace())
            .args(["--no-tui", "-q", "-o", &dir.path("t.jsonl")])
            .args(["--control", &ctl, "--ack", &ack])
            .args(args)
            .args(["--", &fx(), "phases", &N.to_string()])
            .args([&dir.path("ready"), &dir.path("go")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting hwbp-trace");
        let mut run = Self {
            dir,
            child,
            control,
            ack: BufReader::new(ack_file),
        };
        run.wait_for("ready");
        run
    }

    fn wait_for(&mut self, file: &str) {
        let started = Instant::now();
        while !Path::new(&self.dir.path(file)).exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "hwbp-trace ended ({status}) before `{file}`: {}",
                    self.stderr()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no `{file}` after 60 s"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
        }
        text
    }

    /// Sends one command; its answer (`ok` or `error: ...`).
    fn command(&mut self, line: &str) -> String {
        writeln!(self.control, "{line}").expect("writing the command");
        let mut answer = String::new();
        self.ack.read_line(&mut answer).expect("reading the answer");
        answer.trim_end().to_owned()
    }

    fn ok(&mut self, line: &str) {
        assert_eq!(self.command(line), "ok", "`{line}`");
    }

    /// Lets the second phase run, waits for the end; every line of the trace.
    fn finish(mut self) -> Vec<Value> {
        File::create(self.dir.path("go")).expect("creating go");
        let status = self.child.wait().expect("waiting for hwbp-trace");
        let stderr = self.stderr();
        assert!(status.success(), "{stderr}");
        let text = fs::read_to_string(self.dir.path("t.jsonl")).expect("reading the trace");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

fn of_type<'a>(lines: &'a [Value], ty: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == ty).collect()
}

/// Hits whose `symbol` is `symbol`.
fn hits_on(lines: &[Value], symbol: &str) -> usize {
    of_type(lines, "hit")
        .iter()
        .filter(|h| h["symbol"] == symbol)
        .count()
}

fn summary(lines: &[Value]) -> &Value {
    let last = lines.last().expect("a summary");
    assert_eq!(last["type"], "summary");
    last
}

/// A watch moved between the phases: exactly N hits on the old variable,
/// N on the new, each named after the variable it hit, the move made by
/// PERF_EVENT_IOC_MODIFY_ATTRIBUTES on the same events (ids kept), and
/// the summary splitting the target's hits at the move.
#[test]
fn a_move_between_phases_counts_exactly() {
    if !root_or_skip("a_move_between_phases_counts_exactly") {
        return;
    }
    let mut run = LiveRun::start("live-move", &["FX_LIVE_A:w"]);
    run.ok("move FX_LIVE_A FX_LIVE_B:w");
    let lines = run.finish();
    assert_eq!(hits_on(&lines, "FX_LIVE_A"), N as usize);
    assert_eq!(hits_on(&lines, "FX_LIVE_B"), N as usize);
    // Hits before the change are written before it, the others after.
    let change_at = lines
        .iter()
        .position(|l| l["type"] == "change")
        .expect("a change record");
    assert!(
        lines[..change_at]
            .iter()
            .filter(|l| l["type"] == "hit")
            .all(|h| h["symbol"] == "FX_LIVE_A" && h["target"] == "FX_LIVE_A:w")
    );
    let b_addr = lines[change_at]["to"]["addr"].clone();
    for hit in lines[change_at..].iter().filter(|l| l["type"] == "hit") {
        assert_eq!(hit["symbol"], "FX_LIVE_B", "{hit}");
        assert_eq!(hit["target"], "FX_LIVE_B:w", "{hit}");
        assert_eq!(hit["addr"], b_addr, "{hit}");
    }
    let change = &lines[change_at];
    assert_eq!(change["action"], "move");
    assert_eq!(change["id"], 0);
    assert_eq!(change["from"]["symbol"], "FX_LIVE_A");
    assert_eq!(change["to"]["symbol"], "FX_LIVE_B");
    assert_eq!(change["method"], "modify", "{change}");
    let ids = change["event_ids"].as_array().expect("event ids");
    assert_eq!(ids.len(), 1, "one thread, one event: {change}");
    assert_eq!(
        change["event_ids_before"], change["event_ids"],
        "same events"
    );
    let summary = summary(&lines);
    let target = &summary["targets"][0];
    assert_eq!(target["hits"], 2 * N, "{summary}");
    assert_eq!(target["kernel_count"], 2 * N, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    let watches = target["watches"].as_array().expect("watches");
    assert_eq!(watches.len(), 2, "{summary}");
    assert_eq!(watches[0]["symbol"], "FX_LIVE_A");
    assert_eq!(watches[0]["hits"], N);
    assert_eq!(watches[1]["symbol"], "FX_LIVE_B");
    assert_eq!(watches[1]["hits"], N);
}

/// Holds `count` debug registers on every CPU with `perf stat -e mem:…`
/// (write watchpoints on a local of its own, system-wide): another
/// tracer holding them, as the move must survive.
struct PerfHolding(Child);

impl PerfHolding {
    fn start(count: usize) -> Self {
        // The addresses of three words of this test's data: any user
        // address serves, the watch never fires.
        static WORDS: [u64; 4] = [0; 4];
        let mut perf = Command::new("perf");
        perf.args(["stat", "-a"]);
        for word in WORDS.iter().take(count) {
            perf.args([
                "-e",
                &format!("mem:{:#x}:w", std::ptr::from_ref(word) as u64),
            ]);
        }
        let child = perf
            .args(["--", "sleep", "600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running perf");
        // perf opens its events before it starts the command.
        let started = Instant::now();
        while hwbp_tests::host::free_debug_registers()
            .iter()
            .any(|&free| free > hwbp_tests::host::DEBUG_REGISTERS - count)
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "perf took no debug registers"
            );
            thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for PerfHolding {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// With every other debug register held by perf, a move still succeeds
/// (modified in place, no second register needed) with exact counts,
/// while adding a target fails naming how many registers the run holds.
#[test]
fn a_move_needs_no_free_debug_register() {
    if !root_or_skip("a_move_needs_no_free_debug_register") {
        return;
    }
    let free = hwbp_tests::host::free_debug_registers();
    if free.iter().any(|&f| f < hwbp_tests::host::DEBUG_REGISTERS) {
        eprintln!("skipping: debug registers are held already ({free:?})");
        return;
    }
    let perf = PerfHolding::start(hwbp_tests::host::DEBUG_REGISTERS - 1);
    let mut run = LiveRun::start("live-full", &["FX_LIVE_A:w"]);
    let refused = run.command("add FX_LIVE_B:w");
    assert!(
        refused.starts_with("error: ") && refused.contains("no free debug register"),
        "{refused}"
    );
    assert!(refused.contains("this run holds 1"), "{refused}");
    run.ok("move FX_LIVE_A FX_LIVE_B:w");
    let lines = run.finish();
    drop(perf);
    assert_eq!(hits_on(&lines, "FX_LIVE_A"), N as usize);
    assert_eq!(hits_on(&lines, "FX_LIVE_B"), N as usize);
    let changes = of_type(&lines, "change");
    assert_eq!(changes.len(), 1, "the failed add left no record");
    assert_eq!(changes[0]["method"], "modify");
    assert_eq!(changes[0]["event_ids_before"], changes[0]["event_ids"]);
    assert_eq!(summary(&lines)["targets"].as_array().map(Vec::len), Some(1));
}

/// A move the kernel refuses changes nothing: the old watch keeps
/// counting every write. A user target moved to a kernel address is
/// refused where the host refuses kernel data watchpoints (asked first,
/// without hwbp); where it takes them the move succeeds, and the old
/// address counts its first phase only. Moves refused before the kernel
/// (unaligned, unknown) and wrong commands change nothing either.
#[test]
fn a_refused_move_keeps_the_old_watch() {
    if !root_or_skip("a_refused_move_keeps_the_old_watch") {
        return;
    }
    let host = hwbp_tests::host::kernel_data_watchpoints();
    let mut run = LiveRun::start("live-refused", &["FX_LIVE_A:w"]);
    let unaligned = run.command("move FX_LIVE_A FX_LIVE_B+1:w/8");
    assert!(unaligned.contains("not aligned to 8 bytes"), "{unaligned}");
    let unknown = run.command("move FX_LIVE_A no_such_symbol_here:w");
    assert!(unknown.contains("no_such_symbol_here"), "{unknown}");
    let no_target = run.command("move nothing FX_LIVE_B:w");
    assert!(no_target.contains("no target `nothing`"), "{no_target}");
    let bad = run.command("frobnicate FX_LIVE_A");
    assert!(bad.contains("unknown command `frobnicate`"), "{bad}");
    let kernel = format!(
        "move FX_LIVE_A {:#x}:w",
        hwbp_tests::host::kernel_data_address()
    );
    let answer = run.command(&kernel);
    let lines = run.finish();
    let summary = summary(&lines);
    match host {
        Err(errno) => {
            assert!(
                answer.starts_with("error: the kernel refused to move `FX_LIVE_A:w`")
                    && answer.contains("still watches what it watched")
                    && answer.contains(&std::io::Error::from_raw_os_error(errno).to_string()),
                "{answer}"
            );
            assert_eq!(hits_on(&lines, "FX_LIVE_A"), 2 * N as usize);
            assert!(of_type(&lines, "change").is_empty(), "nothing changed");
            assert_eq!(summary["targets"][0]["kernel_count"], 2 * N, "{summary}");
        }
        Ok(()) => {
            assert_eq!(answer, "ok");
            assert_eq!(hits_on(&lines, "FX_LIVE_A"), N as usize);
            assert_eq!(of_type(&lines, "change").len(), 1);
        }
    }
    assert_eq!(hits_on(&lines, "FX_LIVE_B"), 0);
    assert_eq!(summary["lost"], 0, "{summary}");
}

/// A move PERF_EVENT_IOC_MODIFY_ATTRIBUTES cannot make (a write watchpoint
/// to an execute breakpoint of a user process also changes
/// exclude_kernel: EINVAL) is made by opening new events before closing
/// the old ones, and says so: new event ids, the kernel's reason. The old
/// address counts its first phase only.
#[test]
fn a_move_the_kernel_cannot_modify_reopens() {
    if !root_or_skip("a_move_the_kernel_cannot_modify_reopens") {
        return;
    }
    let mut run = LiveRun::start("live-reopen", &["FX_LIVE_A:w"]);
    run.ok("move FX_LIVE_A hwbp_fx_target");
    let lines = run.finish();
    let changes = of_type(&lines, "change");
    assert_eq!(changes.len(), 1);
    let change = changes[0];
    assert_eq!(change["method"], "reopen", "{change}");
    assert_eq!(
        change["fallback"],
        std::io::Error::from_raw_os_error(libc::EINVAL).to_string()
    );
    assert_eq!(change["to"]["mode"], "x");
    assert_ne!(change["event_ids_before"], change["event_ids"], "{change}");
    assert_eq!(hits_on(&lines, "FX_LIVE_A"), N as usize);
    let summary = summary(&lines);
    assert_eq!(summary["targets"][0]["hits"], N, "{summary}");
    assert_eq!(summary["targets"][0]["kernel_count"], N, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
}

/// Adding FX_LIVE_B and pausing FX_LIVE_A between the phases: A keeps
/// its N first-phase hits only, B gets N; a second pause is refused.
#[test]
fn add_and_pause_through_control() {
    if !root_or_skip("add_and_pause_through_control") {
        return;
    }
    let mut run = LiveRun::start("live-add", &["FX_LIVE_A:w"]);
    run.ok("add FX_LIVE_B:w");
    run.ok("pause FX_LIVE_A");
    let again = run.command("pause 0");
    assert!(again.contains("paused already"), "{again}");
    let lines = run.finish();
    assert_eq!(hits_on(&lines, "FX_LIVE_A"), N as usize);
    assert_eq!(hits_on(&lines, "FX_LIVE_B"), N as usize);
    let changes = of_type(&lines, "change");
    let actions: Vec<(&str, u64)> = changes
        .iter()
        .map(|c| {
            (
                c["action"].as_str().expect("action"),
                c["id"].as_u64().expect("id"),
            )
        })
        .collect();
    assert_eq!(actions, [("add", 1), ("pause", 0)]);
    assert_eq!(changes[0]["to"]["symbol"], "FX_LIVE_B");
    let summary = summary(&lines);
    let targets = summary["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 2, "{summary}");
    assert_eq!(targets[0]["hits"], N);
    assert_eq!(targets[0]["kernel_count"], N, "paused: not counted");
    assert_eq!(targets[1]["target"], "FX_LIVE_B:w");
    assert_eq!(targets[1]["hits"], N);
    assert_eq!(targets[1]["kernel_count"], N);
    assert_eq!(summary["lost"], 0, "{summary}");
}

/// Removing FX_LIVE_A (after adding FX_LIVE_B) frees its debug register:
/// it keeps its first-phase hits and is marked removed; a paused and
/// resumed target loses nothing.
#[test]
fn remove_and_resume_through_control() {
    if !root_or_skip("remove_and_resume_through_control") {
        return;
    }
    let mut run = LiveRun::start("live-remove", &["FX_LIVE_A:w"]);
    run.ok("add FX_LIVE_B:w");
    run.ok("pause FX_LIVE_B");
    run.ok("resume FX_LIVE_B");
    run.ok("remove FX_LIVE_A");
    let gone = run.command("pause FX_LIVE_A");
    assert!(gone.contains("no target `FX_LIVE_A`"), "{gone}");
    let lines = run.finish();
    assert_eq!(hits_on(&lines, "FX_LIVE_A"), N as usize);
    assert_eq!(hits_on(&lines, "FX_LIVE_B"), N as usize);
    let actions: Vec<&str> = of_type(&lines, "change")
        .iter()
        .map(|c| c["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["add", "pause", "resume", "remove"]);
    let summary = summary(&lines);
    assert_eq!(summary["targets"][0]["removed"], true, "{summary}");
    assert_eq!(summary["targets"][0]["kernel_count"], N, "{summary}");
    assert_eq!(summary["targets"][1]["hits"], N, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
}

/// A --control path that is a regular file is a usage error (exit 2),
/// before anything is armed or started.
#[test]
fn a_control_path_that_is_no_fifo_is_refused() {
    if !root_or_skip("a_control_path_that_is_no_fifo_is_refused") {
        return;
    }
    let dir = TempDir::new("live-nofifo");
    let path = dir.path("file");
    fs::write(&path, "").expect("writing a file");
    let out = Command::new(hwbp_trace())
        .args(["--no-tui", "-q", "--control", &path, "FX_LIVE_A:w", "--"])
        .args([&fx(), "writes", "1"])
        .output()
        .expect("running hwbp-trace");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a FIFO"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Conditions follow live changes: a target's condition stays in force
/// while another target is removed (every change rewrites the program's
/// configuration), and a move installs the new expression's condition in
/// place of the old one. Phase 1 writes FX_LIVE_A 1..=N: `value <= 10`
/// keeps 10. The move to `FX_LIVE_B:w if value > N - 10` keeps the last 10
/// of phase 2's writes of FX_LIVE_B, and nothing of FX_LIVE_A's.
#[test]
fn conditions_follow_live_changes() {
    if !root_or_skip("conditions_follow_live_changes") {
        return;
    }
    let mut run = LiveRun::start(
        "live-cond",
        &["FX_LIVE_A:w if value <= 10", "HWBP_FX_COUNTER:w"],
    );
    run.ok("remove HWBP_FX_COUNTER");
    let bad = run.command("add HWBP_FX_COUNTER:w if nosuchthing > 1");
    assert!(bad.starts_with("error: "), "{bad}");
    run.ok(&format!("move FX_LIVE_A FX_LIVE_B:w if value > {}", N - 10));
    let lines = run.finish();
    assert_eq!(hits_on(&lines, "FX_LIVE_A"), 10);
    assert_eq!(hits_on(&lines, "FX_LIVE_B"), 10);
    let values: Vec<u64> = of_type(&lines, "hit")
        .iter()
        .map(|h| h["value"].as_u64().expect("a value"))
        .collect();
    let expected: Vec<u64> = (1..=10).chain(N - 9..=N).collect();
    assert_eq!(values, expected);
    let summary = summary(&lines);
    let target = &summary["targets"][0];
    assert_eq!(target["hits"], 20, "{summary}");
    // Phase 1: 990 of A's writes rejected; phase 2: 990 of B's.
    assert_eq!(target["rejected"], 2 * (N - 10), "{summary}");
    assert_eq!(target["kernel_count"], 2 * N, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
}

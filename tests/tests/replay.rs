//! The replay benchmark measures the real reader: the raw hits a live run
//! kept (`--capture-records`), fed through `hwbp-trace replay`, give the
//! same hit lines, byte for byte, as the live run wrote. The fixture runs
//! under `setarch -R` both times, so that the process the replay names
//! addresses by is loaded where the recorded one was.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{
    fs,
    process::{Child, Command, Stdio},
    time::Duration,
};

use hwbp_tests::{
    TempDir, fixture, harness::process::wait_for_exec, root_or_skip, run, stderr, trace_attached,
};

/// fx_user under setarch -R, waiting for `go`, once it is fx_user.
fn waiting_fixture(go: &str, args: &[&str]) -> Child {
    let fx = fixture("fx_user");
    let mut child = Command::new("setarch")
        .args(["-R"])
        .arg(&fx)
        .args(["--wait", go])
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("start setarch -R fx_user");
    if let Err(e) = wait_for_exec(&mut child, &fx, Duration::from_secs(5)) {
        panic!("setarch -R fx_user: {e:#}");
    }
    child
}

/// The hit lines of a JSONL trace, as written.
fn hit_lines(path: &str) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .lines()
        .filter(|l| l.starts_with(r#"{"type":"hit","#))
        .map(str::to_owned)
        .collect()
}

/// A live trace of `target` on `fx_user MODE N` with both stacks and its
/// raw hits kept, then the replay of those hits: the same hit lines.
fn live_and_replayed(dir: &TempDir, target: &str, mode: &str, hits: usize) {
    let (live, raw, replayed) = (
        dir.path(&format!("{mode}-live.jsonl")),
        dir.path(&format!("{mode}.raw")),
        dir.path(&format!("{mode}-replayed.jsonl")),
    );
    let go = dir.path(&format!("{mode}-go"));
    let mut fx = waiting_fixture(&go, &[mode, &hits.to_string()]);
    let pid = fx.id().to_string();
    let args = [
        "--no-tui",
        "-q",
        "--stack",
        "both",
        "-o",
        &live,
        "--capture-records",
        &raw,
        "-p",
        &pid,
        target,
    ];
    trace_attached(&args, &go, &mut fx);
    let live_hits = hit_lines(&live);
    assert_eq!(live_hits.len(), hits, "every hit traced live");

    // The recorded process is gone: a new one of the same program lends
    // its maps and DWARF (it never starts its work).
    let idle_go = dir.path(&format!("{mode}-never"));
    let mut idle = waiting_fixture(&idle_go, &[mode, "0"]);
    let idle_pid = idle.id().to_string();
    let out = run(&[
        "replay",
        "--records",
        &raw,
        "-o",
        &replayed,
        "-p",
        &idle_pid,
        target,
    ]);
    let _ = idle.kill();
    let _ = idle.wait();
    assert!(out.status.success(), "replay: {}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("replay's report is JSON");
    assert_eq!(report["records"], hits, "{report}");
    let replayed_hits = hit_lines(&replayed);
    assert_eq!(replayed_hits.len(), hits);
    for (i, (a, b)) in live_hits.iter().zip(&replayed_hits).enumerate() {
        assert_eq!(a, b, "hit {i} differs");
    }
    assert!(
        live_hits[0].contains(r#""ustack":["#) && live_hits[0].contains("fx_user.rs:"),
        "user frames named with their lines: {}",
        live_hits[0]
    );
}

#[test]
fn replayed_hits_are_the_live_ones() {
    if !root_or_skip("replayed_hits_are_the_live_ones") {
        return;
    }
    let dir = TempDir::new("replay");
    // An execute target (arguments, the return address inserted at the
    // entry) and a data target (values, old values).
    live_and_replayed(&dir, "hwbp_fx_target", "calls", 300);
    live_and_replayed(&dir, "HWBP_FX_COUNTER:w", "writes", 300);
}

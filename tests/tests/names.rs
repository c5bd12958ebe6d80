//! Root integration tests: the names a target can take in the fx_user
//! fixture (`list`, Rust paths, `BINARY:OFFSET` and addresses).
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::process::{Command, Stdio};

use hwbp_tests::traces::{fx, read_trace, summary_hits, trace_ok};
use hwbp_tests::{TempDir, fixture, hwbp_trace, root_or_skip, run, stderr, stdout, trace_attached};

#[test]
fn list_names_fixture_symbols() {
    if !root_or_skip("list_names_fixture_symbols") {
        return;
    }
    let fx = fx();
    let out = run(&["list", "--binary", &fx, "hwbp_fx_*"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    names.sort_unstable();
    // The pattern is case-sensitive: HWBP_FX_COUNTER does not match.
    assert_eq!(
        names,
        [
            "hwbp_fx_caller",
            "hwbp_fx_reader",
            "hwbp_fx_target",
            "hwbp_fx_writer"
        ],
        "{text}"
    );
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(kinds.iter().all(|k| *k == "function"), "{text}");
}

/// A demangled Rust name with `::`, as `list` prints it, is one target.
#[test]
fn a_rust_path_name_is_a_target() {
    if !root_or_skip("a_rust_path_name_is_a_target") {
        return;
    }
    let dir = TempDir::new("path-name");
    let fx = fx();
    // `stacks 10 1`: every call goes down call path 0, 17 levels of
    // fx_left: 170 calls.
    for target in ["fx_user::fx_left", "fx_user:fx_user::fx_left:x"] {
        let out_file = dir.path("t.jsonl");
        let (header, hits, summary) =
            trace_ok(&out_file, &[target, "--", &fx, "stacks", "10", "1"]);
        assert_eq!(
            header["targets"][0]["symbol"], "fx_user::fx_left",
            "{target}"
        );
        assert_eq!(header["targets"][0]["mode"], "x", "{target}");
        assert_eq!(hits.len(), 170, "{target}");
        assert_eq!(summary_hits(&summary, 0), 170, "{target}");
        assert_eq!(summary["targets"][0]["kernel_count"], 170, "{target}");
    }
}

/// `list PATTERN | head`: the reader goes away, listing ends quietly with
/// exit 0 (no "Broken pipe" error).
#[test]
fn list_into_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // Closed before hwbp-trace writes anything: every write gets EPIPE.
    drop(reader);
    let out = Command::new(hwbp_trace())
        .args(["list", "--binary", &fx(), "*"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run hwbp-trace list");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "nothing on stderr");
}

/// The grammar's other forms on a user program: BINARY:SYMBOL, SYMBOL+OFFSET
/// and 0xADDRESS all arm the right instruction, with exact counts.
#[test]
fn binary_offset_and_address_forms() {
    if !root_or_skip("binary_offset_and_address_forms") {
        return;
    }
    let dir = TempDir::new("forms");
    let fx = fx();
    // BINARY:SYMBOL, the binary named by its file name.
    let out_file = dir.path("binary.jsonl");
    let (header, hits, _) = trace_ok(
        &out_file,
        &["fx_user:hwbp_fx_target:x", "--", &fx, "calls", "12"],
    );
    assert_eq!(hits.len(), 12);
    assert!(header["targets"][0]["space"] == "user", "{header}");
    // SYMBOL+OFFSET: hwbp_fx_caller's second instruction (frame pointers:
    // `push %rbp` is one byte) runs once per run.
    let out_file = dir.path("offset.jsonl");
    let (header, hits, _) = trace_ok(&out_file, &["hwbp_fx_caller+1", "--", &fx, "calls", "12"]);
    assert_eq!(header["targets"][0]["symbol"], "hwbp_fx_caller+0x1");
    assert_eq!(
        header["targets"][0]["mode"], "x",
        "an offset into a function executes"
    );
    assert_eq!(hits.len(), 1, "the caller runs once");
    // 0xADDRESS in a traced process: the fixture is a PIE, so take the
    // runtime address from `list -p` against a waiting fixture.
    let go = dir.path("go");
    let mut child = Command::new(fixture("fx_user"))
        .args(["--wait", &go, "calls", "9"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start fx_user");
    let pid = child.id().to_string();
    let list = run(&["list", "-p", &pid, "hwbp_fx_target"]);
    let text = stdout(&list);
    let addr = text
        .lines()
        .find(|l| l.contains(" hwbp_fx_target "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("list -p: {text}{}", stderr(&list)))
        .to_owned();
    let out_file = dir.path("address.jsonl");
    let target = format!("{addr}:x");
    let args = ["--no-tui", "-q", "-o", &out_file, "-p", &pid, &target];
    trace_attached(&args, &go, &mut child);
    let (header, hits, _) = read_trace(&out_file);
    assert_eq!(
        header["targets"][0]["symbol"], "hwbp_fx_target",
        "the address is named"
    );
    assert_eq!(hits.len(), 9);
}

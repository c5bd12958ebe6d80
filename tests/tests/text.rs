//! Root integration tests: the text a trace prints (headless lines, comms
//! that are not UTF-8 or hold control characters) and what
//! `--redact-addresses` leaves out.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{fs, process::Command};

use hwbp_tests::traces::{fx, read_trace, ustack};
use hwbp_tests::{TempDir, compile_c, fixture, hwbp_trace, root_or_skip, run, stderr, stdout};

#[test]
fn headless_lines_on_stdout() {
    if !root_or_skip("headless_lines_on_stdout") {
        return;
    }
    let out = run(&["--no-tui", "HWBP_FX_COUNTER:w", "--", &fx(), "writes", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("HWBP_FX_COUNTER:w w hwbp_fx_writer+"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[2].trim_start().starts_with("fx_user-"),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].contains(" value=") && lines[2].ends_with("0x3)"),
        "{}",
        lines[2]
    );
}

#[test]
fn redacted_traces_keep_symbols_but_no_addresses() {
    if !root_or_skip("redacted_traces_keep_symbols_but_no_addresses") {
        return;
    }
    let dir = TempDir::new("redact");
    let out_file = dir.path("t.jsonl");
    let out = run(&[
        "--no-tui",
        "-q",
        "--redact-addresses",
        "-o",
        &out_file,
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "20",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(&out_file).expect("trace");
    let (header, hits, summary) = read_trace(&out_file);
    assert_eq!(hits.len(), 20);
    assert_eq!(header["targets"][0]["addr"], "0x…");
    assert_eq!(summary["targets"][0]["addr"], "0x…");
    for hit in &hits {
        assert_eq!(hit["addr"], "0x…");
        assert_eq!(hit["ip"], "0x…");
        assert!(
            hit["ustack"][1]
                .as_str()
                .is_some_and(|f| f.starts_with("hwbp_fx_caller+")),
            "{hit}"
        );
    }
    // No 0x number of 9 or more digits anywhere.
    let long_hex = text
        .split("0x")
        .skip(1)
        .any(|rest| rest.chars().take_while(char::is_ascii_hexdigit).count() >= 9);
    assert!(!long_hex, "an address survived redaction");
}

/// A program built without PIE lives at 0x400000: its addresses have 6 or
/// 7 hex digits, as short as any small number, and must go all the same.
/// No address in the binary's range is left in stdout, stderr or the trace;
/// offsets and small numbers stay.
#[test]
fn redaction_covers_a_non_pie_program() {
    if !root_or_skip("redaction_covers_a_non_pie_program") {
        return;
    }
    let dir = TempDir::new("redact-nopie");
    let Some((program, _)) = compile_c(
        "redaction_covers_a_non_pie_program",
        &dir,
        "nopie",
        "#include <stdio.h>\n\
         int hwbp_np_counter;\n\
         __attribute__((noinline)) void hwbp_np_target(int *p, const char *s) { *p += s[0]; }\n\
         int main(void) { for (int i = 0; i < 3; i++) hwbp_np_target(&hwbp_np_counter, \"x\");\n\
           printf(\"%d\\n\", hwbp_np_counter); return 0; }\n",
        &["-no-pie", "-fno-omit-frame-pointer", "-g", "-O1"],
    ) else {
        return;
    };
    // The binary's range, from its symbols: e.g. 0x401000 to 0x404030.
    let nm = Command::new("nm").arg(&program).output().expect("nm");
    let addresses: Vec<u64> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .filter(|&a| a >= 0x400000)
        .collect();
    let (low, high) = (
        addresses.iter().copied().min().expect("symbols"),
        addresses.iter().copied().max().expect("symbols"),
    );
    assert!(high < 1 << 32, "not PIE: {low:#x}..{high:#x}");

    let jsonl = dir.path("t.jsonl");
    let out = run(&[
        "--no-tui",
        "--redact-addresses",
        "-o",
        &jsonl,
        "hwbp_np_target",
        "--",
        &program,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trace = fs::read_to_string(&jsonl).expect("trace");
    for (name, text) in [
        ("stdout", stdout(&out)),
        ("stderr", stderr(&out)),
        ("trace", trace),
    ] {
        for rest in text.split("0x").skip(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            let value = u64::from_str_radix(&digits, 16).unwrap_or(0);
            assert!(
                !(low..=high + 0x1000).contains(&value),
                "{name}: the address 0x{digits} survived redaction:\n{text}"
            );
        }
    }
    expect_redacted_fields(&jsonl);
}

/// The fields of [`redaction_covers_a_non_pie_program`]'s trace: addresses
/// redacted, pointer arguments too, symbols and offsets kept.
fn expect_redacted_fields(jsonl: &str) {
    let (header, hits, summary) = read_trace(jsonl);
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(header["targets"][0]["addr"], "0x…");
    assert_eq!(summary["targets"][0]["addr"], "0x…");
    assert_eq!(summary["targets"][0]["hits"], 3);
    for hit in &hits {
        assert_eq!((&hit["addr"], &hit["ip"]), (&"0x…".into(), &"0x…".into()));
    }
    let call = &hits[0];
    let args: Vec<(&str, &str)> = call["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or(""),
                a["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        args,
        [("p", "0x…"), ("s", "0x…")],
        "pointers into the binary"
    );
    assert!(
        ustack(call)[0].starts_with("hwbp_np_target+0x0") && ustack(call)[1].starts_with("main+0x"),
        "symbols and offsets stay: {call}"
    );
}

/// A comm that is not UTF-8 (the kernel takes any bytes) is matched by
/// --comm as bytes and shown with replacement characters.
#[test]
fn non_utf8_comm() {
    if !root_or_skip("non_utf8_comm") {
        return;
    }
    use std::os::unix::ffi::OsStrExt as _;
    let dir = TempDir::new("comm8");
    let name = std::ffi::OsStr::from_bytes(b"fx\xff\xfeuser");
    let link = dir.0.join(name);
    std::os::unix::fs::symlink(fixture("fx_user"), &link).expect("symlink");
    let out_file = dir.path("t.jsonl");
    let out = Command::new(hwbp_trace())
        .args(["--no-tui", "-q", "-o", &out_file, "--comm"])
        .arg(name)
        .args(["hwbp_fx_target", "--"])
        .arg(&link)
        .args(["calls", "7"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, hits, _) = read_trace(&out_file);
    assert_eq!(hits.len(), 7, "--comm matched the raw bytes");
    assert_eq!(hits[0]["comm"], "fx\u{fffd}\u{fffd}user");
}

/// A traced program chooses its comm: one that would clear root's terminal
/// and paint it red, or split a hit line in two, shows escaped in every text
/// output (one line per hit, no ESC byte anywhere) and raw in JSON.
#[test]
fn a_comm_of_control_characters_is_escaped_in_text() {
    if !root_or_skip("a_comm_of_control_characters_is_escaped_in_text") {
        return;
    }
    let dir = TempDir::new("comm-escape");
    for (comm, shown) in [("\x1b[2J\x1b[41m", "\\e[2J\\e[41m"), ("a\nb", "a\\nb")] {
        let (txt, jsonl) = (dir.path("t.txt"), dir.path("t.jsonl"));
        let out = Command::new(hwbp_trace())
            .args(["--no-tui", "-o", &txt, "-o", &jsonl, "hwbp_fx_target", "--"])
            .args([&fx(), "calls", "3"])
            .env("HWBP_FX_COMM", comm)
            .output()
            .expect("run hwbp-trace");
        assert!(out.status.success(), "{}", stderr(&out));
        let file = fs::read(&txt).expect("t.txt");
        for (name, bytes) in [
            ("stdout", &out.stdout),
            ("stderr", &out.stderr),
            ("t.txt", &file),
        ] {
            assert!(!bytes.contains(&0x1b), "an ESC byte in {name}: {bytes:?}");
        }
        // The hit lines, and the fixture's own `done 3` among them (two
        // processes write into the one stdout).
        let text = stdout(&out);
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{comm:?}: {text}");
        lines.retain(|l| *l != "done 3");
        assert_eq!(lines.len(), 3, "{comm:?}: {text}");
        for line in &lines {
            assert!(
                line.trim_start().starts_with(&format!("{shown}-"))
                    && line.contains(": hwbp_fx_target x "),
                "{comm:?}: {line}"
            );
        }
        let file = String::from_utf8(file).expect("t.txt is UTF-8");
        assert_eq!(file.lines().collect::<Vec<_>>(), lines, "{file}");
        let (_, hits, _) = read_trace(&jsonl);
        assert_eq!(hits.len(), 3);
        for hit in &hits {
            assert_eq!(hit["comm"], comm, "JSON keeps the comm as it is");
        }
    }
}

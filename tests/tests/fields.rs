//! Root integration tests of struct members by name (`cfg.limits[2].max`):
//! a C program built here (gcc, and clang for DWARF 5's indexed
//! addresses) prints where each member is (`&cfg.member`, its offsetof and
//! sizeof, as its compiler laid it out) and how many times it writes it;
//! hwbp-trace must arm exactly that address and count exactly those
//! writes, with the values decoded by the member's type. Bad expressions
//! get one message each, and `list 'cfg.*'` shows the members where the
//! compiler put them.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use hwbp_tests::{
    TempDir, root_or_skip, run, stderr, stdout,
    traces::{read_trace, target_addrs, target_hits},
};
use serde_json::Value;

const PROGRAM: &str = r#"#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
enum state { IDLE, RUNNING, STOPPED = -1 };
struct limit { int min; int max; };
struct config {
  long count;
  struct limit limits[4];
  unsigned flags : 3;
  union { short a; short b; };
  char name[16];
  enum state state;
  signed char delta;
  struct { int x; struct { unsigned short port; } inner; } nested;
  long grid[2][3];
};
struct config cfg;
static void put_name(const char *s) {
  union { char c[8]; unsigned long u; } v = { .u = 0 };
  strncpy(v.c, s, 8);
  *(volatile unsigned long *)cfg.name = v.u;
}
#define SHOW(expr) printf("show %s %p %zu %zu\n", #expr, (void *)&cfg.expr, \
  (size_t)((char *)&cfg.expr - (char *)&cfg), sizeof(cfg.expr))
int main(int argc, char **argv) {
  SHOW(count); SHOW(limits); SHOW(limits[2].max); SHOW(name); SHOW(state);
  SHOW(delta); SHOW(nested); SHOW(nested.inner.port); SHOW(grid); SHOW(grid[1][2]);
  printf("writes limits[2].max 7 state 3 delta 2 name 2 nested.inner.port 1 grid[1][2] 2\n");
  fflush(stdout);
  if (argc > 1 && !strcmp(argv[1], "wait")) { pause(); return 0; }
  const char *ms = getenv("HWBP_FX_START_DELAY_MS");
  if (ms) usleep(atoi(ms) * 1000);
  for (int i = 0; i < 7; i++) cfg.limits[2].max = i;
  cfg.state = RUNNING; cfg.state = STOPPED; cfg.state = IDLE;
  cfg.delta = -5; cfg.delta = 3;
  put_name("idle"); put_name("busy");
  cfg.nested.inner.port = 8080;
  cfg.grid[1][2] = -7; cfg.grid[1][2] = 9;
  return 0;
}
"#;

/// What the program says of one member: address, offset, size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shown {
    addr: u64,
    offset: u64,
    size: u64,
}

/// The program's `show` lines and its write counts, from its stdout.
fn ground_truth(out: &str) -> (BTreeMap<String, Shown>, BTreeMap<String, u64>) {
    let mut shown = BTreeMap::new();
    let mut writes = BTreeMap::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["show", expr, addr, offset, size] => {
                let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16)
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
                let number = |s: &str| s.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
                shown.insert(
                    (*expr).to_owned(),
                    Shown {
                        addr,
                        offset: number(offset),
                        size: number(size),
                    },
                );
            }
            ["writes", rest @ ..] => {
                for pair in rest.chunks(2) {
                    writes.insert(pair[0].to_owned(), pair[1].parse().expect("count"));
                }
            }
            _ => {}
        }
    }
    assert!(
        !shown.is_empty() && !writes.is_empty(),
        "no ground truth in: {out}"
    );
    (shown, writes)
}

/// Builds the program with `compiler` and `flags`; None (said on stderr)
/// when that compiler is missing.
fn build(test: &str, dir: &TempDir, compiler: &str, name: &str, flags: &[&str]) -> Option<String> {
    let (program, source) = (dir.path(name), dir.path(&format!("{name}.c")));
    std::fs::write(&source, PROGRAM).expect("writing the source");
    match Command::new(compiler)
        .args(flags)
        .args(["-o", &program, &source])
        .status()
    {
        Ok(status) if status.success() => Some(program),
        other => {
            eprintln!("SKIPPED {test} with {compiler}: it does not build the program: {other:?}");
            None
        }
    }
}

/// The decoded values (`value_text`) of each target's hits, in order.
fn values_of(hits: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for hit in hits {
        out.entry(hit["target"].as_str().expect("target").to_owned())
            .or_default()
            .push(hit["value_text"].as_str().unwrap_or("<none>").to_owned());
    }
    out
}

/// Traces `targets` in `program`: the trace and the program's stdout.
fn trace(dir: &TempDir, program: &str, targets: &[&str]) -> ((Value, Vec<Value>, Value), String) {
    let jsonl = dir.path("t.jsonl");
    let mut args = vec!["--no-tui", "-q", "-o", &jsonl];
    args.extend(targets);
    args.extend(["--", program]);
    let out = run(&args);
    assert!(
        out.status.success(),
        "hwbp-trace {args:?}: {}",
        stderr(&out)
    );
    (read_trace(&jsonl), stdout(&out))
}

/// Members, elements, nested members and a 2-D array element, each armed
/// at the address the program prints for it, each hit exactly as often as
/// the program writes it, each value decoded by its type: numbers signed
/// or not, enum names, a char array's watched bytes as text.
fn members_by_name(compiler: &str) {
    let test = format!("members_by_name ({compiler})");
    if !root_or_skip(&test) {
        return;
    }
    let dir = TempDir::new(&format!("fields-{compiler}"));
    let Some(program) = build(&test, &dir, compiler, "cfg", &["-O0", "-g"]) else {
        return;
    };
    let targets = ["cfg.limits[2].max", "cfg.state", "cfg.delta", "cfg.name/4"];
    let ((header, hits, summary), out) = trace(&dir, &program, &targets);
    let (shown, writes) = ground_truth(&out);
    let expected: Vec<u64> = ["limits[2].max", "state", "delta", "name"]
        .iter()
        .map(|m| shown[*m].addr)
        .collect();
    assert_eq!(
        target_addrs(&header),
        expected,
        "&cfg.member as the program prints it"
    );
    let counts: Vec<u64> = ["limits[2].max", "state", "delta", "name"]
        .iter()
        .map(|m| writes[*m])
        .collect();
    assert_eq!(target_hits(&summary), counts, "{summary}");
    let lens: Vec<u64> = header["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t["len"].as_u64().expect("len"))
        .collect();
    assert_eq!(
        lens,
        [
            shown["limits[2].max"].size,
            shown["state"].size,
            shown["delta"].size,
            4
        ]
    );
    let texts = values_of(&hits);
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        texts["cfg.limits[2].max"],
        strings(&["0", "1", "2", "3", "4", "5", "6"])
    );
    assert_eq!(texts["cfg.state"], strings(&["RUNNING", "STOPPED", "IDLE"]));
    assert_eq!(texts["cfg.delta"], strings(&["-5", "3"]));
    assert_eq!(texts["cfg.name/4"], strings(&["\"idle\"", "\"busy\""]));
    let types: BTreeMap<&str, &str> = hits
        .iter()
        .map(|h| {
            (
                h["target"].as_str().expect("target"),
                h["value_type"].as_str().expect("type"),
            )
        })
        .collect();
    assert_eq!(types["cfg.limits[2].max"], "int");
    assert_eq!(types["cfg.state"], "enum state");
    assert_eq!(types["cfg.delta"], "signed char");
    assert_eq!(types["cfg.name/4"], "char[16]");
    assert!(
        hits.iter()
            .all(|h| h["symbol"] == h["target"].as_str().expect("t").trim_end_matches("/4"))
    );

    let targets = ["cfg.nested.inner.port", "cfg.grid[1][2]"];
    let ((header, hits, summary), out) = trace(&dir, &program, &targets);
    let (shown, writes) = ground_truth(&out);
    assert_eq!(
        target_addrs(&header),
        [shown["nested.inner.port"].addr, shown["grid[1][2]"].addr]
    );
    assert_eq!(
        target_hits(&summary),
        [writes["nested.inner.port"], writes["grid[1][2]"]]
    );
    let texts = values_of(&hits);
    assert_eq!(texts["cfg.nested.inner.port"], strings(&["8080"]));
    assert_eq!(texts["cfg.grid[1][2]"], strings(&["-7", "9"]));
}

#[test]
fn members_by_name_gcc() {
    members_by_name("gcc");
}

/// clang writes DWARF 5 with indexed addresses (DW_OP_addrx).
#[test]
fn members_by_name_clang() {
    members_by_name("clang");
}

const RUST_PROGRAM: &str = r#"mod app {
    pub struct State {
        pub count: u64,
        pub ticks: [u32; 4],
    }
    pub static mut STATE: State = State { count: 0, ticks: [0; 4] };
}
fn main() {
    // SAFETY: one thread; the pointers are to a static.
    unsafe {
        let count = &raw mut app::STATE.count;
        let tick = &raw mut app::STATE.ticks[2];
        println!("show count {count:p} 0 8");
        println!("show ticks[2] {tick:p} 0 4");
        println!("writes count 5 ticks[2] 3");
        if let Some(ms) = std::env::var("HWBP_FX_START_DELAY_MS").ok().and_then(|m| m.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        for i in 1..=5u64 {
            std::ptr::write_volatile(count, i * 10);
        }
        for i in 0..3u32 {
            std::ptr::write_volatile(tick, i);
        }
    }
}
"#;

/// A Rust static inside a module, by its path (`prog::app::STATE`:
/// `::` belongs to the name) and member: rustc reorders the struct's
/// fields, and the address is still the one the program prints.
#[test]
fn rust_path_and_member() {
    const TEST: &str = "rust_path_and_member";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("fields-rust");
    let (program, source) = (dir.path("prog"), dir.path("prog.rs"));
    std::fs::write(&source, RUST_PROGRAM).expect("writing the source");
    match Command::new("rustc")
        .args(["-g", "-C", "opt-level=0", "-o", &program, &source])
        .status()
    {
        Ok(status) if status.success() => {}
        other => {
            eprintln!("SKIPPED {TEST}: rustc does not build the program: {other:?}");
            return;
        }
    }
    let targets = ["prog::app::STATE.count", "prog::app::STATE.ticks[2]"];
    let ((header, hits, summary), out) = trace(&dir, &program, &targets);
    let (shown, writes) = ground_truth(&out);
    assert_eq!(
        target_addrs(&header),
        [shown["count"].addr, shown["ticks[2]"].addr]
    );
    assert_eq!(target_hits(&summary), [writes["count"], writes["ticks[2]"]]);
    let texts = values_of(&hits);
    assert_eq!(
        texts["prog::app::STATE.count"],
        ["10", "20", "30", "40", "50"]
    );
    assert_eq!(texts["prog::app::STATE.ticks[2]"], ["0", "1", "2"]);
}

/// Each bad expression: exit 2, one message naming what is wrong and what
/// to write instead, nothing traced.
#[test]
fn bad_expressions_say_what_is_wrong() {
    const TEST: &str = "bad_expressions_say_what_is_wrong";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("fields-bad");
    let Some(program) = build(TEST, &dir, "cc", "cfg", &["-O0", "-g"]) else {
        return;
    };
    let Some(stripped) = build(TEST, &dir, "cc", "nodebug", &["-O0"]) else {
        return;
    };
    let cases: &[(&str, &str, &[&str])] = &[
        (
            &program,
            "cfg.limts",
            &[
                "no member `limts`",
                "did you mean `limits`",
                "count, limits, flags, a, b, name, state, delta, nested, grid",
            ],
        ),
        (
            &program,
            "cfg.name",
            &[
                "`cfg.name` is `char[16]`, 16 bytes",
                "cfg.name[0] (char)",
                "/8",
            ],
        ),
        (
            &program,
            "cfg.limits",
            &["32 bytes", "cfg.limits[3] (struct limit)"],
        ),
        (
            &program,
            "cfg.flags",
            &["bit-field (3 bits at bit 0 of byte 0x28)", "`cfg+0x28/1`"],
        ),
        (
            &program,
            "cfg.limits[4].max",
            &[
                "index out of bounds",
                "`struct limit[4]`, 4 elements (0 to 3)",
            ],
        ),
        (
            &program,
            "cfg.count.x",
            &["`cfg.count` is `long int`, not a struct or union"],
        ),
        (&program, "cfg.count[1]", &["not an array"]),
        (&program, "main.x", &["`main` is a function"]),
        (
            &program,
            "cfg.limits[x]",
            &["bad field expression", "`[x]`"],
        ),
        (
            &stripped,
            "cfg.count",
            &["has no DWARF debug info", "-g", "dbgsym"],
        ),
    ];
    for (prog, target, wanted) in cases {
        let out = run(&["--no-tui", "-q", target, "--", prog]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{target}: {err}");
        // The parser's errors come through clap, which adds its `--help` hint.
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
            .collect();
        assert_eq!(lines.len(), 1, "{target}: one message: {err}");
        for w in *wanted {
            assert!(err.contains(w), "{target}: `{w}` missing in: {err}");
        }
        assert!(!err.contains("Tracing"), "{target}: nothing armed: {err}");
    }
}

/// `list --binary FILE 'cfg.*'` shows each member at the offset and with
/// the size the program prints; `list -p PID 'cfg.limits[*]'` each
/// element at its runtime address.
#[test]
fn list_shows_members_where_the_compiler_put_them() {
    const TEST: &str = "list_shows_members_where_the_compiler_put_them";
    let dir = TempDir::new("fields-list");
    let Some(program) = build(TEST, &dir, "cc", "cfg", &["-O0", "-g"]) else {
        return;
    };
    let out = run(&["list", "--binary", &program, "cfg.*"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    let mut child = Command::new(&program)
        .arg("wait")
        .stdout(Stdio::piped())
        .spawn()
        .expect("running the program");
    let mut text = String::new();
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    while !text.contains("writes") {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("reading") == 0 {
            break;
        }
        text.push_str(&line);
    }
    let (shown, _) = ground_truth(&text);
    // `0x…4080 +0x8       32 cfg.limits (struct limit[4])`
    let rows: BTreeMap<String, (u64, u64)> = listed
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let offset = u64::from_str_radix(w.get(1)?.trim_start_matches("+0x"), 16).ok()?;
            Some((
                w.get(3)?.trim_start_matches("cfg.").to_owned(),
                (offset, w.get(2)?.parse().unwrap_or(0)),
            ))
        })
        .collect();
    for member in [
        "count", "limits", "name", "state", "delta", "nested", "grid",
    ] {
        assert_eq!(
            rows.get(member),
            Some(&(shown[member].offset, shown[member].size)),
            "{member} in:\n{listed}"
        );
    }
    assert!(listed.contains("3b@0 cfg.flags (unsigned int)"), "{listed}");
    assert!(
        listed.contains("cfg.b (short int)"),
        "anonymous union looked through: {listed}"
    );
    if root_or_skip(TEST) {
        let out = run(&["list", "-p", &child.id().to_string(), "cfg.limits[*]"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let addrs: Vec<u64> = stdout(&out)
            .lines()
            .map(|l| u64::from_str_radix(&l[2..18], 16).expect("address"))
            .collect();
        let first = shown["limits"].addr;
        assert_eq!(
            addrs,
            [first, first + 8, first + 16, first + 24],
            "{}",
            stdout(&out)
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

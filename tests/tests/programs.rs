//! Root integration tests: hwbp-trace's answers on programs in their own
//! terms, each against an independent oracle: a user variable the kernel
//! writes, counted as `perf stat` counts it; C functions named like the
//! types an Itanium name encodes, named as the symbol table names them;
//! a C program's variables typed from its DWARF; a stripped program's
//! link addresses armed by what is mapped there.

use std::process::{Command, Stdio};

use hwbp_tests::{
    TempDir, hwbp_trace,
    programs::{gcc, have, perf_stat_count, ready, sh, skip},
    root_or_skip, stderr, stdout,
    traces::{read_trace, target_addrs},
};

/// A user variable the kernel writes (`fx_user kfills 10`: ten read(2)s of
/// /dev/zero into it, then one store of the program's own): every hit
/// counted as `perf stat -e mem:ADDR/8:w` counts it at the same address
/// (ASLR off), those in the kernel (`:k`) and those in user mode (`:u`)
/// apart. How many traps a read makes is the kernel's and the CPU's
/// business (a string instruction traps once per byte: eight a read on
/// the Intel hosts here), so perf says it, not the test. The kernel-mode
/// hits carry a kernel stack through the read system call and the user
/// stack of the program's read (`--stack both`): libc's wrapper, then the
/// fixture (not the function that called the wrapper: see "User stacks of
/// hits in the kernel" in docs/limitations.md); the last hit, the
/// program's store, has the value 7 and no kernel stack.
#[test]
fn a_user_variable_the_kernel_writes_counts_as_perf_stat() {
    if !root_or_skip("a_user_variable_the_kernel_writes_counts_as_perf_stat") {
        return;
    }
    if !have("perf", &["--version"]) {
        skip(
            "a user variable the kernel writes: no perf (`cargo xtask setup` installs linux-perf)",
        );
        return;
    }
    let dir = TempDir::new("corpus-kfills");
    let out_file = dir.path("t.jsonl");
    let fx = hwbp_tests::traces::fx();
    let o = sh(Command::new("setarch")
        .arg("-R")
        .arg(hwbp_trace())
        .args(["--no-tui", "-q", "--stack", "both", "-o", &out_file])
        .args(["FX_KERNEL_FILLED:w", "--", &fx, "kfills", "10"])
        .stdin(Stdio::null()));
    assert!(o.status.success(), "hwbp-trace: {}", stderr(&o));
    let (header, hits, summary) = read_trace(&out_file);
    assert_eq!(summary["lost"], 0, "{summary}");
    let addr = format!("{:#x}", target_addrs(&header)[0]);
    // `mode`: w, w:k or w:u.
    let perf = |mode: &str| {
        perf_stat_count(
            &dir,
            &format!("mem:{addr}/8:{mode}"),
            &[&fx, "kfills", "10"],
        ) as usize
    };
    let in_kernel = |hit: &&serde_json::Value| {
        hit["kstack"]
            .as_array()
            .is_some_and(|frames| !frames.is_empty())
    };
    let kernel: Vec<&serde_json::Value> = hits.iter().filter(in_kernel).collect();
    assert_eq!(
        (hits.len(), kernel.len(), hits.len() - kernel.len()),
        (perf("w"), perf("w:k"), perf("w:u")),
        "hits in all, in the kernel and in user mode: hwbp-trace vs perf stat"
    );
    assert!(
        kernel.len() >= 10,
        "ten reads, {} kernel-mode hits",
        kernel.len()
    );
    for hit in &kernel {
        let frames = |key: &str| -> Vec<&str> {
            hit[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
                .collect()
        };
        assert!(
            frames("kstack")
                .iter()
                .any(|f| f.starts_with("ksys_read+") || f.starts_with("vfs_read+")),
            "a kernel-mode hit's stack is not the read's: {hit}"
        );
        let ustack = frames("ustack");
        assert!(
            ustack.first().is_some_and(|f| f.contains("read"))
                && ustack.iter().any(|f| f.contains("fx_user::")),
            "a kernel-mode hit's user stack is not the fixture's read: {hit}"
        );
    }
    let last = hits.last().expect("hits");
    assert!(
        !in_kernel(&last) && last["value"] == 7,
        "the program's own store is last, in user mode: {last}"
    );
}

/// hwbp-trace on `targets` in `prog`, a program built here, started by
/// it (its start delay keeps the first hit away from the arming): the
/// trace's header and hit lines, once it exited 0.
fn trace(
    prog: &str,
    out_file: &str,
    targets: &[&str],
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let o = sh(Command::new(hwbp_trace())
        .args(["--no-tui", "-q", "-o", out_file])
        .args(targets)
        .args(["--", prog])
        .env("HWBP_FX_START_DELAY_MS", "20"));
    assert!(o.status.success(), "hwbp-trace {targets:?}: {}", stderr(&o));
    let (header, hits, _) = read_trace(out_file);
    (header, hits)
}

/// C functions named like the types an Itanium (C++) name encodes (`i`
/// int, `d` double, `f` float, `Ss` std::string): named as the symbol
/// table names them in every frame and in `ip_sym`, never demangled into
/// types, which a C++ demangler tried on every name did. Three calls
/// each, `main → Ss → d → i` and a write of `v_` in `i`.
#[test]
fn short_c_names_stay_names_in_stacks() {
    if !ready("short_c_names_stay_names_in_stacks") {
        return;
    }
    const SOURCE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int v_;
__attribute__((noinline)) void i(int x) { v_ += x; }
__attribute__((noinline)) void d(int x) { i(x); __asm__ volatile(""); }
__attribute__((noinline)) void f(int x) { d(x); __asm__ volatile(""); }
__attribute__((noinline)) void Ss(int x) { f(x); __asm__ volatile(""); }
int main(void) {
    const char *delay = getenv("HWBP_FX_START_DELAY_MS");
    if (delay) usleep(atoi(delay) * 1000);
    for (int k = 0; k < 3; k++) Ss(k);
    printf("v_=%d\n", v_);
    return 0;
}
"#;
    let dir = TempDir::new("corpus-short-names");
    gcc(&dir, SOURCE, "short", &["-fno-omit-frame-pointer", "-O0"]);
    let prog = dir.path("short");
    let out_file = dir.path("t.jsonl");
    let (_, hits) = trace(&prog, &out_file, &["i", "v_"]);
    assert_eq!(hits.len(), 6, "3 calls of i, 3 writes of v_");
    for hit in &hits {
        let ip_sym = hit["ip_sym"].as_str().unwrap_or_default();
        assert!(ip_sym.starts_with("i+0x"), "ip_sym: {hit}");
        let names: Vec<&str> = hit["ustack"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .map(|f| f.split('+').next().unwrap_or(f))
            .collect();
        assert!(
            names.windows(4).any(|w| w == ["i", "d", "f", "Ss"]) && names.contains(&"main"),
            "the user stack names the C functions: {names:?}"
        );
    }
}

/// A C program's variables named whole are typed from its DWARF, as
/// members are: signed integers of every width decoded with their sign,
/// an enum by its names, an unsigned one as unsigned; and a condition
/// compares the value as its type says (`value < -6` is true of an `int`
/// at -9, which, read unsigned, it never was: every hit was rejected).
#[test]
fn whole_variables_are_typed_from_dwarf() {
    if !ready("whole_variables_are_typed_from_dwarf") {
        return;
    }
    const SOURCE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int counter; short sh; signed char sc; long lg; unsigned int uc;
enum color { RED, GREEN, BLUE } col;
int main(void) {
    const char *delay = getenv("HWBP_FX_START_DELAY_MS");
    if (delay) usleep(atoi(delay) * 1000);
    for (int i = 0; i < 4; i++) {
        counter -= 3; sh -= 2; sc -= 1; lg -= 5; uc -= 1; col = (col + 1) % 3;
    }
    printf("counter=%d\n", counter);
    return 0;
}
"#;
    let dir = TempDir::new("corpus-typed");
    gcc(&dir, SOURCE, "typed", &["-O0"]);
    let prog = dir.path("typed");
    let out_file = dir.path("t.jsonl");
    let run = |targets: &[&str]| trace(&prog, &out_file, targets).1;
    let texts = |hits: &[serde_json::Value], symbol: &str| -> Vec<String> {
        hits.iter()
            .filter(|hit| hit["symbol"] == symbol)
            .map(|hit| hit["value_text"].as_str().unwrap_or("untyped").to_owned())
            .collect()
    };
    let hits = run(&["counter", "sh", "sc", "lg"]);
    for (symbol, step) in [("counter", 3), ("sh", 2), ("sc", 1), ("lg", 5)] {
        let expected: Vec<String> = (1..=4).map(|i| (-i * step).to_string()).collect();
        assert_eq!(texts(&hits, symbol), expected, "{symbol}");
    }
    let hits = run(&["uc", "col"]);
    let expected: Vec<String> = (1..=4).map(|i| (u32::MAX - i + 1).to_string()).collect();
    assert_eq!(texts(&hits, "uc"), expected, "uc");
    assert_eq!(
        texts(&hits, "col"),
        ["GREEN", "BLUE", "RED", "GREEN"],
        "col"
    );
    assert!(
        hits.iter()
            .filter(|hit| hit["symbol"] == "col")
            .all(|hit| hit["value_type"] == "enum color"),
        "col is an enum color"
    );
    let hits = run(&["counter if value < -6"]);
    assert_eq!(
        texts(&hits, "counter"),
        ["-9", "-12"],
        "counter if value < -6"
    );
}

/// A stripped program named by link addresses (`FILE:0xADDR`, as `nm`
/// printed them before the strip): with no symbol to say what is there,
/// an address in an executable segment is code, watched for execution
/// (`x`), and one in data is watched for writes (`w`); both count the
/// program's 3 calls and 3 writes.
#[test]
fn a_stripped_programs_addresses_default_by_segment() {
    if !ready("a_stripped_programs_addresses_default_by_segment") {
        return;
    }
    const SOURCE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int counter;
__attribute__((noinline)) void bump(void) { counter++; }
int main(void) {
    const char *delay = getenv("HWBP_FX_START_DELAY_MS");
    if (delay) usleep(atoi(delay) * 1000);
    for (int i = 0; i < 3; i++) bump();
    printf("%d\n", counter);
    return 0;
}
"#;
    let dir = TempDir::new("corpus-stripped-addr");
    gcc(&dir, SOURCE, "prog", &["-O0"]);
    let prog = dir.path("prog");
    let nm = sh(Command::new("nm").arg(&prog));
    let link = |name: &str| {
        stdout(&nm)
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.last() == Some(&name)).then(|| u64::from_str_radix(fields[0], 16).ok())?
            })
            .unwrap_or_else(|| panic!("nm has no {name}"))
    };
    let (bump, counter) = (link("bump"), link("counter"));
    let o = sh(Command::new("strip").arg(&prog));
    assert!(o.status.success(), "strip: {}", stderr(&o));
    let out_file = dir.path("t.jsonl");
    for (target, mode) in [
        (format!("{prog}:{bump:#x}"), "x"),
        (format!("{prog}:{counter:#x}/4"), "w"),
    ] {
        let (header, hits) = trace(&prog, &out_file, &[&target]);
        assert_eq!(header["targets"][0]["mode"], mode, "{target}");
        assert_eq!(hits.len(), 3, "{target}");
    }
}

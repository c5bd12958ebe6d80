//! Root integration tests of what a hit says about its call: arguments read
//! from the registers the System V x86-64 calling convention puts them in,
//! the caller of a function hit at its first instruction, and user stacks
//! that end where the program starts. The C programs are built here with
//! gcc -O1 -g; their functions are `noipa`, so gcc neither inlines them nor
//! changes how they take their arguments.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{collections::BTreeMap, fs};

use hwbp_tests::{
    TempDir, compile_c, root_or_skip, run, stderr, stdout,
    traces::{read_trace, target_hits},
};
use serde_json::{Value, json};

/// Calls of each function in the programs below.
const CALLS: u64 = 400;

/// Sleeps `HWBP_FX_START_DELAY_MS` before the first hit, as the fixtures do
/// (see docs/development.md: some hosts silence a breakpoint hit within a
/// millisecond or two of arming).
const START_DELAY: &str = "#include <stdlib.h>\n\
     #include <unistd.h>\n\
     static void start_delay(void) {\n\
       const char *ms = getenv(\"HWBP_FX_START_DELAY_MS\");\n\
       if (ms) usleep(atoi(ms) * 1000);\n\
     }\n";

const ARGUMENTS: &str = "struct pair { long a, b; };\n\
     struct big { long a[4]; };\n\
     volatile long sink;\n\
     __attribute__((noipa)) int scale(double f, int k, float g) { return (int)(f * k * g); }\n\
     __attribute__((noipa)) long mixed(struct pair p, int k) { return p.a + p.b + k; }\n\
     __attribute__((noipa)) long big(struct big s, int k) { return s.a[0] + s.a[3] + k; }\n\
     __attribute__((noipa)) struct big make_big(int k, long m) {\n\
       struct big s = {{k, m, k, m}}; return s;\n\
     }\n\
     int main(void) {\n\
       start_delay();\n\
       for (int i = 0; i < 400; i++) {\n\
         sink += scale(2.5, 7, 0.25f);\n\
         sink += mixed((struct pair){3, 4}, 9);\n\
         sink += big((struct big){{1, 2, 3, 4}}, 11);\n\
         sink += make_big(5, -6).a[1];\n\
       }\n\
       return 0;\n\
     }\n";

/// `main` calls `caller_a`, which calls `target` N times, and `caller_b`,
/// which calls it M times (N and M from the command line). Not `a` and `b`:
/// gcc writes names of up to 3 bytes inline in DWARF (DW_FORM_string), and
/// blazesym names such functions after another entry (`signed char`).
const CALLERS: &str = "volatile long sink;\n\
     __attribute__((noipa)) void target(int n) { sink += n; }\n\
     __attribute__((noipa)) void caller_a(int n) { for (int i = 0; i < n; i++) target(1); }\n\
     __attribute__((noipa)) void caller_b(int n) { for (int i = 0; i < n; i++) target(2); }\n\
     int main(int argc, char **argv) {\n\
       start_delay();\n\
       if (argc < 3) return 2;\n\
       caller_a(atoi(argv[1]));\n\
       caller_b(atoi(argv[2]));\n\
       return 0;\n\
     }\n";

/// The hit lines of a JSONL trace, with the summary's hits per target.
fn read_hits(path: &str) -> (Vec<Value>, Vec<u64>) {
    let (_, hits, summary) = read_trace(path);
    (hits, target_hits(&summary))
}

/// The function of a frame: `a+0x12 (prog.c:4)` → `a`.
fn function(frame: &Value) -> &str {
    let frame = frame.as_str().expect("a frame is a string");
    let name = frame.split(' ').next().unwrap_or(frame);
    name.rsplit_once("+0x").map_or(name, |(f, _)| f)
}

fn traced(dir: &TempDir, program: &str, targets: &[&str], args: &[&str]) -> (Vec<Value>, Vec<u64>) {
    let jsonl = dir.path("t.jsonl");
    let mut all = vec!["--no-tui", "-q", "-o", &jsonl];
    all.extend(targets);
    all.extend(["--", program]);
    all.extend(args);
    let out = run(&all);
    assert!(out.status.success(), "hwbp-trace {all:?}: {}", stderr(&out));
    read_hits(&jsonl)
}

/// Each argument is read from the register the ABI gives it, or shown as
/// not captured with its type and where it is: a double first does not
/// shift the int after it, a struct of two longs takes two registers, a
/// struct of 32 bytes takes none, and a function returning one gets its
/// address in rdi.
#[test]
fn arguments_are_read_where_the_abi_puts_them() {
    const TEST: &str = "arguments_are_read_where_the_abi_puts_them";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("abi-args");
    let source = format!("{START_DELAY}{ARGUMENTS}");
    let Some((program, _)) = compile_c(TEST, &dir, "args", &source, &["-O1", "-g"]) else {
        return;
    };
    let targets = ["scale", "mixed", "big", "make_big"];
    let (hits, per_target) = traced(&dir, &program, &targets, &[]);
    assert_eq!(per_target, [CALLS; 4], "hits per target");
    let not_captured = |name: &str, ty: &str, location: &str| json!({"name": name, "value": null, "type": ty, "location": location});
    let value =
        |name: &str, ty: &str, value: &str| json!({"name": name, "value": value, "type": ty});
    let expected = BTreeMap::from([
        (
            "scale",
            json!([
                not_captured("f", "double", "xmm0"),
                value("k", "int", "7"),
                not_captured("g", "float", "xmm1"),
            ]),
        ),
        (
            "mixed",
            json!([
                not_captured("p", "pair", "rdi, rsi"),
                value("k", "int", "9"),
            ]),
        ),
        (
            "big",
            json!([not_captured("s", "big", "stack"), value("k", "int", "11")]),
        ),
        (
            "make_big",
            json!([value("k", "int", "5"), value("m", "long int", "-6")]),
        ),
    ]);
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    for hit in &hits {
        let target = hit["target"].as_str().expect("target");
        assert_eq!(&hit["args"], &expected[target], "{target}: {hit}");
        *seen.entry(target).or_default() += 1;
    }
    assert_eq!(
        seen,
        BTreeMap::from(targets.map(|t| (t, CALLS))),
        "hit lines per target"
    );

    // The headless line says the same.
    let out = run(&["--no-tui", "scale", "--", &program]);
    assert!(out.status.success(), "{}", stderr(&out));
    let calls = stdout(&out)
        .lines()
        .filter(|l| {
            l.ends_with(
                " scale(f=<not captured: double in xmm0>, k=7, g=<not captured: float in xmm1>)",
            )
        })
        .count();
    assert_eq!(calls as u64, CALLS, "{}", stdout(&out));
}

/// C++: `this` is the first parameter (rdi); a class with a non-trivial
/// destructor (a `std::string` member) is passed as a pointer to a copy,
/// which takes rdi, so the int after it is in rsi; a trivially copyable
/// struct of two longs is passed by value, in two registers.
#[test]
fn cplusplus_this_and_classes_passed_by_reference() {
    const TEST: &str = "cplusplus_this_and_classes_passed_by_reference";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("abi-cxx");
    let (program, source) = (dir.path("cxx"), dir.path("cxx.cc"));
    let code = format!(
        "#include <string>\n{START_DELAY}\
         struct Counter {{ long total = 0;\n\
           __attribute__((noipa)) long add(int k, long m) {{ return total += k + m; }} }};\n\
         struct Owned {{ std::string s; long n; }};\n\
         struct Plain {{ long a, b; }};\n\
         extern \"C\" __attribute__((noipa)) long take(Owned o, int k) {{ return o.n + k; }}\n\
         extern \"C\" __attribute__((noipa)) long plain(Plain p, int k) {{ return p.a + k; }}\n\
         volatile long sink;\n\
         int main() {{\n\
           start_delay();\n\
           Counter c; Owned o{{\"hello\", 3}};\n\
           for (int i = 0; i < 400; i++) {{\n\
             sink += c.add(7, -8); sink += take(o, 9); sink += plain(Plain{{1, 2}}, 11);\n\
           }}\n\
           return 0;\n\
         }}\n"
    );
    fs::write(&source, code).unwrap_or_else(|e| panic!("writing {source}: {e}"));
    match std::process::Command::new("g++")
        .args(["-O1", "-g", "-o", &program, &source])
        .status()
    {
        Ok(status) if status.success() => {}
        other => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {TEST}: no working g++: {other:?}"
            );
            return;
        }
    }
    let targets = ["_ZN7Counter3addEil", "take", "plain"];
    let (hits, per_target) = traced(&dir, &program, &targets, &[]);
    assert_eq!(per_target, [CALLS; 3], "hits per target");
    let shown = |hit: &Value| -> Vec<(String, Option<String>)> {
        hit["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| {
                let value = a["value"].as_str().map(|v| {
                    // Addresses vary from run to run.
                    if v.starts_with("0x7f") {
                        "0x7f…".to_owned()
                    } else {
                        v.to_owned()
                    }
                });
                (a["name"].as_str().expect("name").to_owned(), value)
            })
            .collect()
    };
    let arg = |name: &str, value: Option<&str>| (name.to_owned(), value.map(str::to_owned));
    for hit in &hits {
        let expected = match hit["target"].as_str().expect("target") {
            "_ZN7Counter3addEil" => vec![
                arg("this", Some("0x7f…")),
                arg("k", Some("7")),
                arg("m", Some("-8")),
            ],
            "take" => vec![arg("o", Some("0x7f…")), arg("k", Some("9"))],
            _ => vec![arg("p", None), arg("k", Some("11"))],
        };
        assert_eq!(shown(hit), expected, "{hit}");
    }
    let take = hits
        .iter()
        .find(|h| h["target"] == "take")
        .expect("a take hit");
    assert_eq!(take["args"][0]["type"], "Owned (by reference)");
    let plain = hits
        .iter()
        .find(|h| h["target"] == "plain")
        .expect("a plain hit");
    assert_eq!(plain["args"][0]["location"], "rdi, rsi");
}

/// A function hit at its first instruction is called by a function that
/// has not yet a frame of its own: the trace's stack, `report --by caller`
/// and hit counts agree that `caller_a` called it N times and `caller_b` M
/// times.
#[test]
fn the_caller_of_a_function_is_who_called_it() {
    const TEST: &str = "the_caller_of_a_function_is_who_called_it";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("abi-callers");
    let source = format!("{START_DELAY}{CALLERS}");
    let flags = ["-O1", "-g", "-fno-omit-frame-pointer"];
    let Some((program, _)) = compile_c(TEST, &dir, "callers", &source, &flags) else {
        return;
    };
    let (n, m) = (300u64, 100u64);
    let (hits, per_target) = traced(
        &dir,
        &program,
        &["target"],
        &[&n.to_string(), &m.to_string()],
    );
    assert_eq!(per_target, [n + m]);
    let mut callers: BTreeMap<&str, u64> = BTreeMap::new();
    for hit in &hits {
        let ustack = hit["ustack"].as_array().expect("ustack");
        assert_eq!(function(&ustack[0]), "target", "{hit}");
        *callers.entry(function(&ustack[1])).or_default() += 1;
    }
    assert_eq!(
        callers,
        BTreeMap::from([("caller_a", n), ("caller_b", m)]),
        "callers in the JSONL"
    );

    let out = run(&["report", "--by", "caller", &dir.path("t.jsonl")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: BTreeMap<String, u64> = text
        .lines()
        .skip_while(|l| !l.contains("by caller"))
        .skip(2)
        .map_while(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            match fields[..] {
                [hits, _share, caller] => Some((caller.to_owned(), hits.parse().ok()?)),
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        rows,
        BTreeMap::from([("caller_a".to_owned(), n), ("caller_b".to_owned(), m)]),
        "report --by caller:\n{text}"
    );
}

/// A user stack ends at the program's start code (or at the last frame
/// with a mapped return address), never in the junk a frame-pointer walk
/// finds past it: in a dynamic PIE, a static binary and a static PIE.
#[test]
fn user_stacks_end_where_the_program_starts() {
    const TEST: &str = "user_stacks_end_where_the_program_starts";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("abi-roots");
    let source = format!("{START_DELAY}{CALLERS}");
    let start = [
        "_start",
        "__libc_start_main",
        "__libc_start_main_impl",
        "__libc_start_call_main",
    ];
    for (name, link) in [
        ("pie", "-pie"),
        ("static", "-static"),
        ("static-pie", "-static-pie"),
    ] {
        let flags = ["-O1", "-g", "-fno-omit-frame-pointer", "-fPIE", link];
        let Some((program, _)) = compile_c(TEST, &dir, name, &source, &flags) else {
            return;
        };
        let (hits, per_target) = traced(&dir, &program, &["target"], &["3", "2"]);
        assert_eq!(per_target, [5], "{name}");
        for hit in &hits {
            let ustack = hit["ustack"].as_array().expect("ustack");
            let functions: Vec<&str> = ustack.iter().map(function).collect();
            let main = functions.iter().position(|f| *f == "main");
            let Some(main) = main else {
                panic!("{name}: no main in {functions:?}");
            };
            assert!(
                matches!(functions[..main], ["target", "caller_a" | "caller_b"]),
                "{name}: {functions:?}"
            );
            // glibc's __libc_start_call_main calls main: the root, named
            // from libc's symbols (or its file and offset where libc has none).
            let root = &functions[main + 1..];
            assert!(
                matches!(root, [f] if start.contains(f) || f.starts_with("[libc.so")),
                "{name}: the stack does not end at the program's start: {functions:?}"
            );
        }
    }
}

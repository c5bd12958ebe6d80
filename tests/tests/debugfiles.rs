//! Root integration tests: a stripped program's symbols are found where
//! they really are, in a separate debug file (by `.gnu_debuglink`, by build
//! ID) or in its MiniDebugInfo, and armed at the address gdb gives (gdb
//! reads the same debug file), counting exactly; a hit's stack names the
//! function, its parameters come from the debug file's DWARF, and `list`
//! prints the names.
//!
//! The debug root is a directory of the test's own ($HWBP_DEBUG_ROOT for
//! hwbp-trace, `debug-file-directory` for gdb), so nothing is installed
//! under /usr/lib/debug. Needs gcc, gdb, objcopy, strip, nm and xz
//! (binutils, xz-utils).

use std::{
    fs,
    process::{Command, Output, Stdio},
    thread,
    time::Duration,
};

use hwbp_tests::{
    TempDir, hwbp_trace, root_or_skip, stderr, stdout,
    traces::{read_trace, target_addrs, target_hits},
};
use serde_json::Value;

/// Calls of `bump`, each writing `counter` once.
const N: u64 = 400;

const PROGRAM: &str = r#"
#include <stdlib.h>
#include <unistd.h>
volatile int counter;
__attribute__((noinline)) void bump(int step) { counter += step + 1; }
int main(int argc, char **argv) {
    const char *delay = getenv("HWBP_FX_START_DELAY_MS");
    if (delay) usleep(atoi(delay) * 1000);
    int n = argc > 1 ? atoi(argv[1]) : 0;
    for (int i = 0; i < n; i++) bump(i);
    return 0;
}
"#;

fn sh(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs a shell-free command and asserts that it succeeded.
fn ok(cmd: &mut Command) -> Output {
    let o = sh(cmd);
    assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
    o
}

/// Where the program's debug information is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `.debug/prog.debug`, named by `.gnu_debuglink`; a stale
    /// `prog.debug` of another build beside `prog`.
    DebugLink,
    /// `<root>/.build-id/xx/rest.debug`, no debuglink.
    BuildId,
    /// `.gnu_debugdata`: the function symbols, xz-compressed (gdb's
    /// MiniDebugInfo recipe); no variables, no DWARF.
    MiniDebugInfo,
}

/// A stripped program of `layout` in `dir`: `dir/prog`, debug root
/// `dir/root`; returns the debug file's path (None for MiniDebugInfo).
fn build(dir: &TempDir, layout: Layout) -> Option<String> {
    let src = dir.path("prog.c");
    fs::write(&src, PROGRAM).unwrap_or_else(|e| panic!("writing {src}: {e}"));
    let prog = dir.path("prog");
    ok(Command::new("gcc").args(["-O1", "-g", &src, "-o", &prog]));
    fs::create_dir_all(dir.path("root")).unwrap_or_else(|e| panic!("mkdir root: {e}"));
    match layout {
        Layout::DebugLink => {
            // The right one in .debug/, and beside the program, searched
            // first, a stale one of another build (-O0: other addresses),
            // which its checksum rules out.
            let other = dir.path("other");
            ok(Command::new("gcc").args(["-O0", "-g", &src, "-o", &other]));
            ok(Command::new("objcopy").args([
                "--only-keep-debug",
                &other,
                &dir.path("prog.debug"),
            ]));
            fs::create_dir_all(dir.path(".debug")).unwrap_or_else(|e| panic!("mkdir: {e}"));
            let debug = dir.path(".debug/prog.debug");
            ok(Command::new("objcopy").args(["--only-keep-debug", &prog, &debug]));
            ok(Command::new("strip").args(["--strip-all", &prog]));
            ok(Command::new("objcopy")
                .arg("--add-gnu-debuglink=.debug/prog.debug")
                .arg("prog")
                .current_dir(&dir.0));
            Some(debug)
        }
        Layout::BuildId => {
            let readelf = ok(Command::new("readelf").args(["-n", &prog]));
            let id = stdout(&readelf)
                .lines()
                .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned))
                .unwrap_or_else(|| panic!("gcc wrote no build ID: {}", stdout(&readelf)));
            let sub = dir.path(&format!("root/.build-id/{}", &id[..2]));
            fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("mkdir {sub}: {e}"));
            let debug = format!("{sub}/{}.debug", &id[2..]);
            ok(Command::new("objcopy").args(["--only-keep-debug", &prog, &debug]));
            ok(Command::new("strip").args(["--strip-all", &prog]));
            Some(debug)
        }
        Layout::MiniDebugInfo => {
            // gdb's manual, "MiniDebugInfo": the function symbols that
            // .dynsym lacks, in a symbol table of their own, xz-compressed.
            let names = |dynamic: bool| -> Vec<String> {
                let mut nm = Command::new("nm");
                if dynamic {
                    nm.arg("-D");
                }
                let o = ok(nm.args(["--format=posix", "--defined-only", &prog]));
                stdout(&o)
                    .lines()
                    .filter_map(|l| {
                        let mut fields = l.split_whitespace();
                        let (name, kind) = (fields.next()?, fields.next()?);
                        (dynamic || matches!(kind, "T" | "t")).then(|| name.to_owned())
                    })
                    .collect()
            };
            let dynamic = names(true);
            let keep: Vec<String> = names(false)
                .into_iter()
                .filter(|n| !dynamic.contains(n))
                .collect();
            assert!(keep.iter().any(|n| n == "bump"), "{keep:?}");
            let keep_file = dir.path("keep");
            fs::write(&keep_file, keep.join("\n") + "\n")
                .unwrap_or_else(|e| panic!("{keep_file}: {e}"));
            let mini = dir.path("mini");
            ok(Command::new("objcopy").args(["--only-keep-debug", &prog, &mini]));
            ok(Command::new("objcopy").args([
                "-S",
                "--remove-section",
                ".gdb_index",
                "--remove-section",
                ".comment",
                &format!("--keep-symbols={keep_file}"),
                &mini,
            ]));
            ok(Command::new("xz").args(["-f", &mini]));
            ok(Command::new("strip").args(["--strip-all", "-R", ".comment", &prog]));
            ok(Command::new("objcopy")
                .arg(format!("--add-section=.gnu_debugdata={mini}.xz"))
                .arg(&prog));
            None
        }
    }
}

/// gdb's `&name` for each name, the program stopped at main, ASLR off,
/// debug files looked for under the test's root.
fn gdb_addresses(dir: &TempDir, names: &[&str]) -> Vec<u64> {
    let mut cmd = Command::new("setarch");
    cmd.args(["-R", "gdb", "-nx", "-batch", "-iex"])
        .arg(format!("set debug-file-directory {}", dir.path("root")))
        .args(["-ex", "break main", "-ex", "run"]);
    for name in names {
        cmd.arg("-ex")
            .arg(format!("printf \"ADDR {name} %lx\\n\", (long)&{name}"));
    }
    cmd.args(["--args", &dir.path("prog"), "1"]);
    let o = sh(&mut cmd);
    let text = stdout(&o);
    names
        .iter()
        .map(|name| {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("ADDR {name} ")))
                .unwrap_or_else(|| {
                    panic!("gdb printed no address of {name}:\n{text}\n{}", stderr(&o))
                });
            u64::from_str_radix(line.trim(), 16)
                .unwrap_or_else(|e| panic!("gdb's address of {name} `{line}`: {e}"))
        })
        .collect()
}

/// hwbp-trace with the test's debug root.
fn hwbp(dir: &TempDir) -> Command {
    let mut cmd = Command::new("setarch");
    cmd.arg("-R")
        .arg(hwbp_trace())
        .env("HWBP_DEBUG_ROOT", dir.path("root"));
    cmd
}

/// What one traced run of `prog N` gave.
struct Run {
    /// The header's target addresses, in target order.
    addrs: Vec<u64>,
    /// The summary's hits, in target order.
    hits: Vec<u64>,
    /// Every hit line.
    records: Vec<Value>,
    /// hwbp-trace's stderr (under -v).
    stderr: String,
}

fn trace(dir: &TempDir, targets: &[&str]) -> Run {
    let out_file = dir.path("t.jsonl");
    let mut cmd = hwbp(dir);
    cmd.args(["--no-tui", "-q", "-v", "-o", &out_file])
        .args(targets)
        .arg("--")
        .arg(dir.path("prog"))
        .arg(N.to_string());
    if std::env::var_os("HWBP_FX_START_DELAY_MS").is_none() {
        cmd.env("HWBP_FX_START_DELAY_MS", "20");
    }
    let o = sh(&mut cmd);
    assert!(o.status.success(), "hwbp-trace {targets:?}: {}", stderr(&o));
    let (header, records, summary) = read_trace(&out_file);
    assert_eq!(summary["exit_status"], 0, "the program ran to its end");
    assert_eq!(summary["lost"], 0, "no hit lost");
    let (addrs, hits) = (target_addrs(&header), target_hits(&summary));
    assert_eq!((addrs.len(), hits.len()), (targets.len(), targets.len()));
    Run {
        addrs,
        hits,
        records,
        stderr: stderr(&o),
    }
}

/// The first hit of target `target`.
fn first_hit<'a>(run: &'a Run, target: &str) -> &'a Value {
    run.records
        .iter()
        .find(|h| h["target"] == target)
        .unwrap_or_else(|| panic!("no hit of {target}"))
}

/// `hwbp-trace list -p PID bump` on the program while it sleeps before its
/// loop, and `list --binary prog`: the rows naming `name`.
fn listed(dir: &TempDir, name: &str) -> (Vec<String>, Vec<String>) {
    // setarch execs the program: same pid, and no ASLR, as gdb's run.
    let mut child = Command::new("setarch")
        .arg("-R")
        .arg(dir.path("prog"))
        .env("HWBP_FX_START_DELAY_MS", "5000")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting prog: {e}"));
    // Mapped once the dynamic loader is done: wait for libc.
    let maps = format!("/proc/{}/maps", child.id());
    for _ in 0..200 {
        if fs::read_to_string(&maps).is_ok_and(|m| m.contains("libc")) {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let by_pid = sh(hwbp(dir).args(["list", "-p", &child.id().to_string(), name]));
    let _ = child.kill();
    let _ = child.wait();
    let by_file = sh(hwbp(dir).args(["list", "--binary", &dir.path("prog"), name]));
    let rows = |o: &Output| -> Vec<String> {
        assert!(o.status.success(), "list {name}: {}", stderr(o));
        stdout(o)
            .lines()
            .filter(|l| l.split_whitespace().nth(3) == Some(name))
            .map(str::to_owned)
            .collect()
    };
    (rows(&by_pid), rows(&by_file))
}

fn ready(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    for tool in [
        "gcc", "gdb", "setarch", "objcopy", "strip", "nm", "xz", "readelf",
    ] {
        assert!(
            Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "{tool} is missing: `cargo xtask setup` installs it"
        );
    }
    true
}

/// Both targets armed where gdb says, 400 hits each, the execute hit's
/// stack and parameters from the debug file, `list` naming both.
fn check_separate(layout: Layout) {
    let dir = TempDir::new(&format!("debugfiles-{layout:?}"));
    let debug = build(&dir, layout).unwrap_or_else(|| panic!("{layout:?} has a debug file"));
    let prog = dir.path("prog");
    let symtab = stdout(&sh(Command::new("nm").arg(&prog)));
    assert!(
        !symtab.contains(" bump"),
        "{layout:?}: prog is stripped: {symtab}"
    );
    let want = gdb_addresses(&dir, &["bump", "counter"]);
    let run = trace(&dir, &["bump", "counter"]);
    assert_eq!(run.addrs, want, "{layout:?}: addresses against gdb's");
    assert_eq!(run.hits, [N, N], "{layout:?}: hits of bump and counter");
    let how = match layout {
        Layout::DebugLink => "(.gnu_debuglink)",
        _ => "(build ID)",
    };
    for name in ["bump", "counter"] {
        let said = format!("`{name}` from {debug} {how}");
        assert!(
            run.stderr.contains(&said),
            "{layout:?}: `{said}` in:\n{}",
            run.stderr
        );
    }
    // The execute hit: named, its line from the debug file's DWARF, its
    // parameter's name too.
    let hit = first_hit(&run, "bump");
    let frame = hit["ustack"][0].as_str().unwrap_or_default();
    assert!(
        frame.starts_with("bump+0x0 (") && frame.contains("prog.c:5)"),
        "{layout:?}: the first frame: {hit}"
    );
    let caller = hit["ustack"][1].as_str().unwrap_or_default();
    assert!(
        caller.starts_with("main+0x") && caller.contains("prog.c:"),
        "{layout:?}: the caller: {hit}"
    );
    assert_eq!(hit["args"][0]["name"], "step", "{layout:?}: {hit}");
    assert_eq!(hit["args"][0]["value"], "0", "{layout:?}: {hit}");
    // The write: trapped in bump.
    let hit = first_hit(&run, "counter");
    assert!(
        hit["ip_sym"]
            .as_str()
            .is_some_and(|s| s.starts_with("bump+0x")),
        "{layout:?}: {hit}"
    );
    for name in ["bump", "counter"] {
        let (by_pid, by_file) = listed(&dir, name);
        assert_eq!(
            (by_pid.len(), by_file.len()),
            (1, 1),
            "{layout:?}: `list {name}`: {by_pid:?} {by_file:?}"
        );
        let addr = by_pid[0].split_whitespace().next().unwrap_or_default();
        let want = if name == "bump" { want[0] } else { want[1] };
        assert_eq!(addr, format!("{want:#018x}"), "{layout:?}: {by_pid:?}");
    }
}

#[test]
fn a_debuglinked_debug_file_names_function_and_variable() {
    if ready("a_debuglinked_debug_file_names_function_and_variable") {
        check_separate(Layout::DebugLink);
    }
}

#[test]
fn a_build_id_debug_file_names_function_and_variable() {
    if ready("a_build_id_debug_file_names_function_and_variable") {
        check_separate(Layout::BuildId);
    }
}

/// MiniDebugInfo names functions only: `bump` is armed and counted, named
/// in stacks (without a line: there is no DWARF), its parameter a
/// register; `counter` is an unknown symbol, said so.
#[test]
fn minidebuginfo_names_functions_only() {
    if !ready("minidebuginfo_names_functions_only") {
        return;
    }
    let dir = TempDir::new("debugfiles-mini");
    assert_eq!(build(&dir, Layout::MiniDebugInfo), None);
    let prog = dir.path("prog");
    let want = gdb_addresses(&dir, &["bump"]);
    let run = trace(&dir, &["bump"]);
    assert_eq!(run.addrs, want, "bump against gdb's");
    assert_eq!(run.hits, [N], "hits of bump");
    let said = format!("`bump` from the MiniDebugInfo (.gnu_debugdata) of {prog}");
    assert!(run.stderr.contains(&said), "`{said}` in:\n{}", run.stderr);
    let hit = first_hit(&run, "bump");
    assert_eq!(hit["ustack"][0], "bump+0x0", "{hit}");
    assert!(
        hit["ustack"][1]
            .as_str()
            .is_some_and(|f| f.starts_with("main+0x")),
        "{hit}"
    );
    assert_eq!(hit["args"][0]["name"], "rdi", "no DWARF: {hit}");
    let (by_pid, by_file) = listed(&dir, "bump");
    assert_eq!(
        (by_pid.len(), by_file.len()),
        (1, 1),
        "{by_pid:?} {by_file:?}"
    );
    assert_eq!(
        by_pid[0].split_whitespace().next(),
        Some(format!("{:#018x}", want[0]).as_str())
    );

    let o = sh(hwbp(&dir)
        .args(["--no-tui", "-q", "counter", "--"])
        .arg(&prog));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("unknown symbol `counter`"), "{err}");
    assert!(
        err.contains(&format!(
            "{prog} is stripped and named only by its MiniDebugInfo, which holds functions, not \
             variables: install its debug file"
        )),
        "{err}"
    );
}

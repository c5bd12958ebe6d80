//! Building and running programs nobody wrote for hwbp, for the root tests
//! that trace them (tests/tests/corpus.rs, tests/tests/programs.rs).

use std::{
    fs,
    process::{Command, Output, Stdio},
};

use crate::{TempDir, root_or_skip, stderr};

/// Runs `cmd` to its end; a command that cannot start is a test failure.
pub fn sh(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Whether `tool` runs and succeeds with `args` (`--version`).
pub fn have(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Says loudly, past libtest's capture, what was not tested and why.
pub fn skip(what: &str) {
    use std::io::Write as _;
    // Straight to fd 2: libtest hides the print macros of a passing test.
    let _ = std::io::stderr().write_all(format!("\nSKIPPED {what}; NOT tested\n").as_bytes());
}

/// Compiles `source` with gcc and `flags` into `dir/out`.
pub fn gcc(dir: &TempDir, source: &str, out: &str, flags: &[&str]) {
    compile("gcc", dir, source, out, flags);
}

/// Compiles `source` with `compiler` (gcc, g++, clang, clang++: the source
/// file's extension follows the language) and `flags` into `dir/out`.
pub fn compile(compiler: &str, dir: &TempDir, source: &str, out: &str, flags: &[&str]) {
    let ext = if compiler.ends_with("++") { "cc" } else { "c" };
    let src = dir.path(&format!("{out}.{ext}"));
    fs::write(&src, source).unwrap_or_else(|e| panic!("writing {src}: {e}"));
    // Flags after the source: `-lNAME` must follow what uses it.
    let o = sh(Command::new(compiler)
        .args(["-O1", "-g"])
        .arg(&src)
        .args(flags)
        .arg("-o")
        .arg(dir.path(out)));
    assert!(
        o.status.success(),
        "{compiler} {flags:?} {src}: {}",
        stderr(&o)
    );
}

/// Root, and gcc, gdb and setarch present (`cargo xtask setup` installs
/// them): false, said, when not root.
pub fn ready(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    for tool in ["gcc", "gdb", "setarch"] {
        assert!(
            have(tool, &["--version"]),
            "{tool} is missing: `cargo xtask setup` installs it"
        );
    }
    true
}

/// What `perf stat -e EVENT -- CMD` counts, ASLR off (`setarch -R`, so
/// that an address hwbp-trace armed in the same command is the same) and
/// every stdio closed (a program may allocate differently when its stderr
/// is a pipe). perf names the event without a `/LEN` or `:w` it was given
/// (`mem:0x1000/8:w` is `mem:0x1000`): the count is on the line whose
/// event name starts `event`.
pub fn perf_stat_count(dir: &TempDir, event: &str, cmd: &[&str]) -> u64 {
    let out = dir.path("perf.txt");
    let o = sh(Command::new("setarch")
        .args(["-R", "perf", "stat", "-x,", "-o", &out, "-e", event, "--"])
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null()));
    assert!(
        o.status.success(),
        "perf stat -e {event} -- {cmd:?}: {:?}",
        o.status
    );
    let said = fs::read_to_string(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
    said.lines()
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|fields| {
            fields
                .get(2)
                .is_some_and(|name| !name.is_empty() && event.starts_with(name))
        })
        .and_then(|fields| fields[0].parse().ok())
        .unwrap_or_else(|| panic!("no count of {event} in perf stat's output:\n{said}"))
}

//! Shared helpers for hwbp's root integration tests: where the binaries
//! are, running hwbp-trace, reading JSONL traces.
//!
//! The binaries are built by `cargo xtask build` (and `cargo xtask test`),
//! all in target/release with frame pointers (.cargo/config.toml).

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build` (or `cargo xtask test`) first",
        path.display()
    );
    path
}

pub fn hwbp_trace() -> PathBuf {
    built(workspace().join("target/release/hwbp-trace"))
}

pub fn fixture(name: &str) -> PathBuf {
    built(workspace().join("target/release").join(name))
}

/// Root tests share kernel state (debug registers) and need root. Returns
/// false, loudly, when they cannot run here.
///
/// The message goes to the real stderr (`std::io::stderr()`, fd 2), not
/// through `eprintln!`: libtest captures the print macros of a passing test
/// and would hide the skip. `cargo xtask test` refuses to start at all when
/// not root.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(skip_message(test).as_bytes());
    false
}

fn skip_message(test: &str) -> String {
    format!(
        "\nSKIPPED {test}: needs root (hardware breakpoints and BPF); NOT tested. \
         Run `sudo cargo xtask test`\n"
    )
}

/// Runs hwbp-trace with arguments; never through a shell.
pub fn run(args: &[&str]) -> Output {
    Command::new(hwbp_trace())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running hwbp-trace {args:?}: {e}"))
}

/// The first line a running hwbp-trace writes to stderr (the `Tracing`
/// line, once everything is armed); its stderr must be piped.
pub fn first_stderr_line(tracer: &mut std::process::Child) -> String {
    use std::io::BufRead as _;
    let stderr = tracer
        .stderr
        .as_mut()
        .expect("hwbp-trace's stderr is piped");
    let mut line = String::new();
    std::io::BufReader::new(stderr)
        .read_line(&mut line)
        .expect("reading the Tracing line");
    line
}

/// hwbp-trace with `args`, attached to `fixture` (a program that waits for
/// the file `go`): once hwbp-trace says it traces one target, `go` is made;
/// then the fixture and hwbp-trace must both succeed.
pub fn trace_attached(args: &[&str], go: &str, fixture: &mut Child) {
    let mut tracer = Command::new(hwbp_trace())
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hwbp-trace");
    let line = first_stderr_line(&mut tracer);
    assert!(line.starts_with("Tracing 1 target"), "{line}");
    fs::write(go, "").expect("touch go");
    assert!(fixture.wait().expect("fixture").success());
    assert!(tracer.wait().expect("tracer").success());
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compiles the C `source` into `dir/NAME` with `cc` and `flags` (`NAME.c`
/// beside it); returns the program's and the source's paths, or None, after
/// saying on stderr that `test` is skipped, when there is no working C
/// compiler.
pub fn compile_c(
    test: &str,
    dir: &TempDir,
    name: &str,
    source: &str,
    flags: &[&str],
) -> Option<(String, String)> {
    let (program, source_path) = (dir.path(name), dir.path(&format!("{name}.c")));
    std::fs::write(&source_path, source).unwrap_or_else(|e| panic!("writing {source_path}: {e}"));
    match Command::new("cc")
        .args(flags)
        .args(["-o", &program, &source_path])
        .status()
    {
        Ok(status) if status.success() => Some((program, source_path)),
        other => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no working C compiler (`cc`): {other:?}"
            );
            None
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hwbp-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self(dir)
    }

    pub fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
pub mod harness;
pub mod host;
pub mod programs;
pub mod traces;

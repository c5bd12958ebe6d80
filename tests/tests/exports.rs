//! Root integration tests of what a hit tells and where it goes: user
//! file:line from the fixture's DWARF, old → new values, the .txt, .folded
//! and .perfetto.json exports of a live trace, `hwbp-trace report` on it,
//! `--format` overriding the extension, and Prometheus metrics scraped
//! over HTTP (ureq) while tracing.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{
    fs,
    io::Read as _,
    net::TcpListener,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hwbp_tests::{TempDir, compile_c, fixture, hwbp_trace, root_or_skip, run, stderr, workspace};
use serde_json::Value;

fn fx() -> String {
    fixture("fx_user").display().to_string()
}

/// The 1-based line of fx_user.rs that contains `needle` (once).
fn fx_line(needle: &str) -> usize {
    let path = workspace().join("tests/src/bin/fx_user.rs");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "`{needle}` once in fx_user.rs: {found:?}");
    found[0]
}

fn hits_of(path: &str) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{path}: {e}: {l}")))
        .filter(|v| v["type"] == "hit")
        .collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn live_trace_in_every_format() {
    if !root_or_skip("live_trace_in_every_format") {
        return;
    }
    let dir = TempDir::new("exports");
    let (jsonl, txt, folded, perfetto) = (
        dir.path("t.jsonl"),
        dir.path("t.txt"),
        dir.path("t.folded"),
        dir.path("t.perfetto.json"),
    );
    let out = run(&[
        "--no-tui",
        "-q",
        "-o",
        &jsonl,
        "-o",
        &txt,
        "-o",
        &folded,
        "-o",
        &perfetto,
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // JSONL: user frames with file:line from the fixture's line tables.
    let target_line = fx_line("pub extern \"C\" fn hwbp_fx_target(");
    let call_line = fx_line("acc.wrapping_add(hwbp_fx_target(");
    let hits = hits_of(&jsonl);
    assert_eq!(hits.len(), 5);
    for hit in &hits {
        let ustack = strs(&hit["ustack"]);
        assert!(
            ustack[0].starts_with("hwbp_fx_target+0x0 (")
                && ustack[0].ends_with(&format!("fx_user.rs:{target_line})")),
            "{ustack:?}"
        );
        // The caller's return address names the line of the call.
        assert!(
            ustack[1].starts_with("hwbp_fx_caller+")
                && ustack[1].contains(&format!("fx_user.rs:{call_line})")),
            "{ustack:?}"
        );
    }

    // Text: the headless lines, the call with its argument registers.
    let text = fs::read_to_string(&txt).expect("t.txt");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.contains(&format!(
                ": hwbp_fx_target x hwbp_fx_target(rdi={i:#x}, rsi="
            )),
            "{line}"
        );
    }

    // Folded: one stack, root first, the target as the first frame.
    let folded_text = fs::read_to_string(&folded).expect("t.folded");
    let stacks: Vec<&str> = folded_text.lines().collect();
    assert_eq!(stacks.len(), 1, "{folded_text}");
    assert!(stacks[0].starts_with("hwbp_fx_target;"), "{}", stacks[0]);
    assert!(
        stacks[0].ends_with(";fx_user::main;fx_user::run;hwbp_fx_caller;hwbp_fx_target 5"),
        "{}",
        stacks[0]
    );

    // Perfetto: an instant per hit on the fixture's thread, counting to 5.
    let json: Value = serde_json::from_str(&fs::read_to_string(&perfetto).expect("perfetto"))
        .expect("valid JSON");
    let events = json["traceEvents"].as_array().expect("traceEvents");
    let instants: Vec<&Value> = events.iter().filter(|e| e["ph"] == "i").collect();
    assert_eq!(instants.len(), 5);
    assert!(
        instants
            .iter()
            .all(|e| e["tid"] == hits[0]["tid"] && e["name"] == "hwbp_fx_target")
    );
    let last_count = events
        .iter()
        .rev()
        .find(|e| e["ph"] == "C")
        .map(|e| e["args"]["hits"].clone());
    assert_eq!(last_count, Some(Value::from(5)));

    // report: the caller, and a flame graph.
    let svg = dir.path("t.svg");
    let out = run(&["report", &jsonl, "--by", "caller", "--flamegraph", &svg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("hwbp_fx_target by caller (1 distinct):"),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["5", "100.0%", "hwbp_fx_caller"]),
        "{report}"
    );
    let svg = fs::read_to_string(&svg).expect("svg");
    assert!(
        svg.contains("<title>hwbp_fx_target (5 hits, 100.00%)</title>"),
        "{svg}"
    );
}

/// `--format` overrides the extension of every `-o`: text into `.log` and
/// `.jsonl` files, Perfetto JSON into a `.data` file. Without it, an
/// extension that names no format is refused before anything is armed.
#[test]
fn format_flag_from_the_command_line() {
    if !root_or_skip("format_flag_from_the_command_line") {
        return;
    }
    let dir = TempDir::new("format-flag");
    let (log, jsonl) = (dir.path("t.log"), dir.path("t.jsonl"));
    let out = run(&[
        "--no-tui",
        "-q",
        "--format",
        "txt",
        "-o",
        &log,
        "-o",
        &jsonl,
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for path in [&log, &jsonl] {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{path}: {text}");
        for (i, line) in lines.iter().enumerate() {
            assert!(
                line.contains(&format!(
                    ": hwbp_fx_target x hwbp_fx_target(rdi={i:#x}, rsi="
                )),
                "{path}: {line}"
            );
        }
    }

    let data = dir.path("t.data");
    let out = run(&[
        "--no-tui",
        "-q",
        "--format",
        "perfetto",
        "-o",
        &data,
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value =
        serde_json::from_str(&fs::read_to_string(&data).expect("t.data")).expect("Perfetto JSON");
    let instants = json["traceEvents"]
        .as_array()
        .expect("traceEvents")
        .iter()
        .filter(|e| e["ph"] == "i" && e["name"] == "hwbp_fx_target")
        .count();
    assert_eq!(instants, 3);

    // The same file without --format: refused, nothing traced.
    let unknown = dir.path("u.data");
    let out = run(&[
        "--no-tui",
        "-q",
        "-o",
        &unknown,
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a usage error: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("u.data` from its extension") && stderr(&out).contains("--format"),
        "{}",
        stderr(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("done 3"));
}

#[test]
fn write_target_old_to_new() {
    if !root_or_skip("write_target_old_to_new") {
        return;
    }
    let dir = TempDir::new("values");
    let jsonl = dir.path("w.jsonl");
    let out = run(&[
        "--no-tui",
        "-o",
        &jsonl,
        "HWBP_FX_COUNTER:w",
        "--",
        &fx(),
        "writes",
        "7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let store_line = fx_line("HWBP_FX_COUNTER.store(i");
    let hits = hits_of(&jsonl);
    assert_eq!(hits.len(), 7);
    for (i, hit) in hits.iter().enumerate() {
        // The first old value was read from /proc/PID/mem when arming.
        assert_eq!(hit["old_value"], i as u64, "{hit}");
        assert_eq!(hit["value"], i as u64 + 1, "{hit}");
        let ip_sym = hit["ip_sym"].as_str().expect("ip_sym");
        assert!(
            ip_sym.starts_with("hwbp_fx_writer+")
                && ip_sym.contains(&format!("fx_user.rs:{store_line})")),
            "{ip_sym}"
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("HWBP_FX_COUNTER:w w"))
        .collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert!(
        lines[6].ends_with(&format!(" (fx_user.rs:{store_line}) value=6→7 (0x6→0x7)")),
        "{}",
        lines[6]
    );
}

/// A pipe whose buffer is already full: a process writing to it blocks
/// until the test reads. Returns (read end, write end).
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    // SAFETY: both descriptors are fresh and owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own; no memory involved.
    unsafe {
        libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
        libc::fcntl(write.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
    }
    let chunk = [b'.'; 512];
    // SAFETY: writes from a live buffer of the stated length.
    while unsafe { libc::write(write.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) } > 0 {}
    // SAFETY: as above; the writer must block from now on.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, 0) };
    (read, write)
}

/// GET /metrics with a real HTTP client; None while nothing listens yet.
fn scrape(port: u16) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = match agent.get(format!("http://127.0.0.1:{port}/metrics")).call() {
        Ok(response) => response,
        Err(ureq::Error::Io(_) | ureq::Error::ConnectionFailed) => return None,
        Err(e) => panic!("scraping /metrics: {e}"),
    };
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(
        content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    Some(
        response
            .body_mut()
            .read_to_string()
            .expect("the /metrics body"),
    )
}

fn metric(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_while_tracing() {
    if !root_or_skip("metrics_while_tracing") {
        return;
    }
    const CALLS: u64 = 40;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The fixture prints `done N` after its calls: on a full pipe it blocks
    // there, with every hit made and the tracer still running.
    let (pipe_read, pipe_write) = full_pipe();
    let tracer = Command::new(hwbp_trace())
        .args([
            "--no-tui",
            "-q",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "hwbp_fx_target",
            "--",
            &fx(),
            "calls",
        ])
        .arg(CALLS.to_string())
        .stdout(Stdio::from(pipe_write))
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting hwbp-trace");

    let hits_series =
        "hwbp_hits_total{target=\"hwbp_fx_target\",symbol=\"hwbp_fx_target\",mode=\"x\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        assert!(
            Instant::now() < deadline,
            "no scrape showed {CALLS} hits in 20 s"
        );
        if let Some(body) = scrape(port) {
            match metric(&body, hits_series) {
                Some(n) if n == CALLS => break body,
                Some(n) => assert!(n < CALLS, "more hits than calls: {n}\n{body}"),
                None => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        metric(
            &body,
            "hwbp_hits_by_comm_total{target=\"hwbp_fx_target\",comm=\"fx_user\"}"
        ),
        Some(CALLS),
        "{body}"
    );
    assert_eq!(metric(&body, "hwbp_dropped_total"), Some(0), "{body}");
    assert_eq!(metric(&body, "hwbp_armed_breakpoints"), Some(1), "{body}");
    // The ring buffer was found and is read: the fixture is blocked and the
    // collector has taken every hit, so it is empty.
    let fill = body
        .lines()
        .find_map(|l| l.strip_prefix("hwbp_ringbuf_fill_ratio "))
        .map(str::to_owned);
    assert_eq!(fill.as_deref(), Some("0.0"), "{body}");
    assert!(body.contains("# TYPE hwbp_hits_total counter"), "{body}");

    // Let the fixture finish: the tracer ends with the process.
    let mut drain = fs::File::from(pipe_read);
    let mut rest = Vec::new();
    let _ = drain.read_to_end(&mut rest);
    let out = tracer.wait_with_output().expect("hwbp-trace");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("{CALLS} hits")), "{err}");
    assert!(String::from_utf8_lossy(&rest).ends_with(&format!("done {CALLS}\n")));
}

/// The report subcommand on damaged traces, through the binary (no root
/// needed): a cut last line is a warning and exit 0, a corrupt line an
/// error naming its line and exit 1.
#[test]
fn report_of_damaged_traces() {
    let dir = TempDir::new("damaged");
    let golden = workspace().join("hwbp-user/tests/data/trace.jsonl");
    let full =
        fs::read_to_string(&golden).unwrap_or_else(|e| panic!("reading {}: {e}", golden.display()));
    let lines: Vec<&str> = full.lines().collect();

    // Cut in its last hit line (the 8th: the aggregates come after).
    let cut = dir.path("cut.jsonl");
    let last = lines
        .iter()
        .rposition(|l| l.starts_with(r#"{"type":"hit""#))
        .expect("a hit line");
    fs::write(
        &cut,
        format!(
            "{}\n{}",
            lines[..last].join("\n"),
            &lines[last][..lines[last].len() / 2]
        ),
    )
    .expect("write");
    let out = run(&["report", &cut]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: ")
            && stderr(&out).contains("cut.jsonl:8: the last line is cut short"),
        "{}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("vfs_read by comm (2 distinct):"));

    let bad = dir.path("bad.jsonl");
    let mut broken = lines.clone();
    broken[3] = "not json";
    fs::write(&bad, broken.join("\n") + "\n").expect("write");
    let out = run(&["report", &bad]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bad.jsonl:4: not a trace line"),
        "{}",
        stderr(&out)
    );
}

/// A C program built with `-g`: its function's parameters named and typed
/// from DWARF, in the headless line and in JSONL.
#[test]
fn user_arguments_from_dwarf() {
    if !root_or_skip("user_arguments_from_dwarf") {
        return;
    }
    let dir = TempDir::new("dwarf-args");
    let Some((program, source)) = compile_c(
        "user_arguments_from_dwarf",
        &dir,
        "args",
        "#include <stdio.h>\n\
         __attribute__((noinline)) long hwbp_c_target(int delta, unsigned long count, const char *name)\n\
         { return delta + (long)count + name[0]; }\n\
         int main(void) { long acc = 0;\n\
           for (int i = 0; i < 3; i++) acc += hwbp_c_target(-i, 10 + i, \"x\");\n\
           printf(\"%ld\\n\", acc); return 0; }\n",
        &["-g", "-O1", "-fno-omit-frame-pointer"],
    ) else {
        return;
    };
    let jsonl = dir.path("a.jsonl");
    let out = run(&["--no-tui", "-o", &jsonl, "hwbp_c_target", "--", &program]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let calls: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once(": hwbp_c_target x ").map(|(_, call)| call))
        .collect();
    assert_eq!(calls.len(), 3, "{stdout}");
    for (i, call) in calls.iter().enumerate() {
        let prefix = format!("hwbp_c_target(delta=-{i}, count={}, name=0x", 10 + i)
            .replace("delta=-0", "delta=0");
        assert!(call.starts_with(&prefix), "{call}");
    }
    let hits = hits_of(&jsonl);
    let args: Vec<(&str, &str)> = hits[0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or(""),
                a["type"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        args,
        [
            ("delta", "int"),
            ("count", "long unsigned int"),
            ("name", "const char *")
        ]
    );
    // And file:line of the C source.
    assert_eq!(
        strs(&hits[0]["ustack"])[0],
        format!("hwbp_c_target+0x0 ({source}:3)")
    );
}

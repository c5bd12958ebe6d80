//! Root integration tests of odd and hostile input, tried as a new user
//! would: PIDs that cannot be traced, a FIFO as the trace file, targets the
//! kernel accepts but that will never fire. Each gets one clear message,
//! and nothing is left armed or stopped.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::{
    fs,
    io::{BufRead as _, BufReader},
    os::unix::fs::OpenOptionsExt as _,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use hwbp_tests::{TempDir, fixture, hwbp_trace, root_or_skip, run, stderr, stdout};

fn fx() -> String {
    fixture("fx_user").display().to_string()
}

/// The state letter of a process in /proc/PID/stat, if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Asserts a run ended with `code` and one message holding `needle`,
/// nothing armed and no panic.
fn refused(args: &[&str], code: i32, needle: &str) {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected `{needle}` in: {err}"
    );
    assert_eq!(
        err.matches("error:").count(),
        1,
        "{args:?}: one message: {err}"
    );
    assert!(!err.contains("Tracing"), "{args:?}: nothing armed: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn pids_that_cannot_be_traced_say_why() {
    if !root_or_skip("pids_that_cannot_be_traced_say_why") {
        return;
    }
    refused(
        &["--no-tui", "-p", "0", "malloc"],
        2,
        "`-p 0` is not a process ID",
    );
    refused(
        &["--no-tui", "--pid=-7", "malloc"],
        2,
        "`-p -7` is not a process ID",
    );

    // PID 2 is kthreadd, a kernel thread, outside PID namespaces.
    if fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
        refused(
            &["--no-tui", "-p", "2", "malloc"],
            2,
            "process 2 (kthreadd) is a kernel thread",
        );
    }

    // hwbp-trace itself: the shell's PID becomes hwbp-trace's by exec.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec {} --no-tui -p $$ malloc",
            hwbp_trace().display()
        ))
        .output()
        .expect("sh");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is hwbp-trace itself"), "{err}");

    // A zombie: a forked child that exits, whose parent never waits.
    let mut parent = Command::new("python3")
        .args([
            "-c",
            "import os, sys, time\n\
             pid = os.fork()\n\
             if pid == 0: os._exit(0)\n\
             print(pid, flush=True)\n\
             time.sleep(10)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(parent.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the zombie's PID");
    let zombie: u32 = line.trim().parse().expect("a PID");
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(zombie) != Some('Z') {
        assert!(Instant::now() < deadline, "{zombie} never became a zombie");
        thread::sleep(Duration::from_millis(5));
    }
    let pid = zombie.to_string();
    let comm = fs::read_to_string(format!("/proc/{zombie}/comm")).expect("a zombie keeps its comm");
    refused(
        &["--no-tui", "-p", &pid, "malloc"],
        2,
        &format!("process {zombie} ({}) is a zombie", comm.trim()),
    );
    let _ = parent.kill();
    let _ = parent.wait();

    // A thread that is not its process's leader: /proc answers for it,
    // but it is no process; the message names the process and --tid.
    let mut threaded = Command::new("python3")
        .args([
            "-c",
            "import threading, time\n\
             t = threading.Thread(target=time.sleep, args=(10,), daemon=True)\n\
             t.start()\n\
             print(t.native_id, flush=True)\n\
             time.sleep(10)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(threaded.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the thread's ID");
    let (tid, pid) = (line.trim().to_owned(), threaded.id());
    refused(
        &["--no-tui", "-p", &tid, "malloc"],
        2,
        &format!(
            "{tid} is a thread of process {pid}, not a process: trace the process and keep that thread's hits with `-p {pid} --tid {tid}`"
        ),
    );
    let _ = threaded.kill();
    let _ = threaded.wait();

    // Gone before anything: no such process.
    refused(
        &["--no-tui", "-p", "2147483647", "malloc"],
        2,
        "no process 2147483647",
    );
}

/// A process that exits while hwbp-trace attaches ends either armed (then
/// the trace ends with the process) or with the one message that says it
/// exited; never with the ENOENT of whichever /proc file went first.
#[test]
fn a_process_exiting_while_attached_to_is_named_as_such() {
    if !root_or_skip("a_process_exiting_while_attached_to_is_named_as_such") {
        return;
    }
    // Delays from well inside to well past the attaching (a few hundred
    // milliseconds here: the BPF program is loaded and verified).
    let delays = [0, 1, 2, 5, 10, 20, 50, 100, 200, 400, 1500];
    let (mut exited, mut armed) = (0, 0);
    for delay_ms in delays {
        let mut child = Command::new(fx())
            .args(["--delay-ms", &delay_ms.to_string(), "calls", "1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("fx_user");
        let pid = child.id().to_string();
        let out = run(&["--no-tui", "-q", "-p", &pid, "hwbp_fx_target"]);
        let _ = child.wait();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{err}");
        match out.status.code() {
            // Armed in time: the one call is counted, and the process's
            // exit ends the trace.
            Some(0) => {
                assert!(
                    err.contains("1 hit in") && err.contains("(process-exit)"),
                    "{err}"
                );
                armed += 1;
            }
            Some(_) => {
                assert!(
                    err.contains(&format!(
                        "process {pid} exited while hwbp-trace was attaching to it"
                    )) || err.contains(&format!("no process {pid}")),
                    "after {delay_ms} ms: {err}"
                );
                assert_eq!(err.matches("error:").count(), 1, "{err}");
                exited += 1;
            }
            None => panic!("killed by a signal: {err}"),
        }
    }
    eprintln!(
        "of {} runs, {exited} saw the process exit first, {armed} were armed",
        delays.len()
    );
    assert!(exited > 0 && armed > 0, "{exited} exited, {armed} armed");
}

/// `-o FIFO` with no reader fails at once (it would block open() for good,
/// with the command stopped at its entry point); with a reader, the trace
/// flows through it.
#[test]
fn a_fifo_as_the_trace_file_never_blocks_the_run() {
    if !root_or_skip("a_fifo_as_the_trace_file_never_blocks_the_run") {
        return;
    }
    let dir = TempDir::new("fifo");
    let fifo = dir.path("t.jsonl");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let fx = fx();
    let args = [
        "--no-tui",
        "-q",
        "-o",
        &fifo,
        "hwbp_fx_target",
        "--",
        &fx,
        "calls",
        "3",
    ];

    let tracer = Command::new(hwbp_trace())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hwbp-trace");
    let (code, out, err) = exit_within(tracer, Duration::from_secs(20), || {});
    assert_eq!(code, Some(2), "a usage error, as every unusable -o: {err}");
    assert!(err.contains("is a FIFO with no reader"), "{err}");
    assert!(!out.contains("done"), "the command never ran: {out}");

    // With a reader: the header, 3 hits and the summary come through.
    let reader = {
        let fifo = fifo.clone();
        thread::spawn(move || fs::read_to_string(&fifo).expect("read the FIFO"))
    };
    // Let the reader open its end first.
    let deadline = Instant::now() + Duration::from_secs(5);
    let out = loop {
        let out = run(&args);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(out.status.success(), "{}", stderr(&out));
    let text = reader.join().expect("reader");
    let hits = text
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"hit\""))
        .count();
    assert_eq!(hits, 3, "{text}");
}

/// A FIFO whose reader stops reading: the writes wait at most the stall
/// (5 s), then the file is given up, and Ctrl-C still ends the run and
/// the command with it.
#[test]
fn ctrl_c_ends_a_run_whose_fifo_reader_stopped_reading() {
    if !root_or_skip("ctrl_c_ends_a_run_whose_fifo_reader_stopped_reading") {
        return;
    }
    let dir = TempDir::new("stalled");
    let fifo = dir.path("t.jsonl");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    // A reader that opens the FIFO and never reads.
    let stalled = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO for reading");
    let mut tracer = Command::new(hwbp_trace())
        .args([
            "--no-tui",
            "-q",
            "-o",
            &fifo,
            "hwbp_fx_target",
            "--",
            &fx(),
            "spin",
            "45",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hwbp-trace");
    let line = hwbp_tests::first_stderr_line(&mut tracer);
    assert!(line.starts_with("Tracing"), "{line}");
    // Enough hits to fill the pipe (64 KiB) and the writer's queue (1 MiB).
    thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) with a PID we started and a valid signal number.
    assert_eq!(unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) }, 0);
    // The command outlives the trace, as with perf (a terminal's Ctrl-C
    // reaches it too); it holds the stderr pipe open.
    let (code, _, err) = exit_within(tracer, Duration::from_secs(30), || {
        let _ = Command::new("pkill")
            .args(["-f", "fx_user spin 45"])
            .status();
    });
    assert_eq!(code, Some(1), "the trace file is incomplete: {err}");
    assert!(err.contains("its reader took nothing for 5 s"), "{err}");
    assert!(err.contains("(signal)"), "ended by the signal: {err}");
    drop(stalled);
}

/// Waits for `child` to exit, failing the test past `limit` (it blocked),
/// runs `then` (ending what still holds its pipes), and reads its piped
/// stdout and stderr: (exit code, stdout, stderr).
fn exit_within(
    mut child: std::process::Child,
    limit: Duration,
    then: impl FnOnce(),
) -> (Option<i32>, String, String) {
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("hwbp-trace did not end within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    then();
    let read = |pipe: Option<&mut dyn std::io::Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            pipe.read_to_string(&mut text).expect("reading a pipe");
        }
        text
    };
    let out = read(child.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
    let err = read(child.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
    (code, out, err)
}

/// Targets the kernel accepts but that will likely never fire get a warning
/// that says why; the run goes on.
#[test]
fn targets_that_will_never_fire_are_warned_about() {
    if !root_or_skip("targets_that_will_never_fire_are_warned_about") {
        return;
    }
    let fx = fx();
    let warned = |args: &[&str], needle: Option<&str>| {
        let mut full = vec!["--no-tui", "-q"];
        full.extend_from_slice(args);
        full.extend(["--", &fx, "calls", "1"]);
        let out = run(&full);
        let err = stderr(&out);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(stdout(&out).contains("done 1"), "{args:?}: the command ran");
        match needle {
            Some(needle) => {
                assert!(err.contains("hwbp-trace: warning:"), "{args:?}: {err}");
                assert!(
                    err.contains(needle),
                    "{args:?}: expected `{needle}` in: {err}"
                );
            }
            None => assert!(!err.contains("warning"), "{args:?}: {err}"),
        }
    };
    warned(
        &["hwbp_fx_target:w"],
        Some("code is executed, not read or written"),
    );
    warned(
        &["hwbp_fx_target:rw"],
        Some("code is executed, not read or written"),
    );
    warned(&["HWBP_FX_COUNTER:x"], Some("the CPU never executes data"));
    warned(
        &["--comm", "fx_user_is_long_", "hwbp_fx_target"],
        Some("write `--comm fx_user_is_long`"),
    );
    warned(&["--comm", "fx_user", "hwbp_fx_target"], None);

    // Inside an instruction, by objdump's reading of the same code.
    let (boundary, inside) = instruction_offsets(&fixture("fx_user"), "hwbp_fx_target");
    warned(&[&format!("hwbp_fx_target+{boundary:#x}")], None);
    warned(
        &[&format!("hwbp_fx_target+{inside:#x}")],
        Some(&format!(
            "`hwbp_fx_target+{inside:#x}` is inside an instruction"
        )),
    );
}

/// From objdump's disassembly of `function`: the offset of its second
/// instruction, and an offset inside its first instruction longer than one
/// byte.
fn instruction_offsets(binary: &std::path::Path, function: &str) -> (u64, u64) {
    let out = Command::new("objdump")
        .args([
            "-d",
            "--no-show-raw-insn",
            &format!("--disassemble={function}"),
        ])
        .arg(binary)
        .output()
        .expect("objdump (binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let addrs: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let (addr, rest) = l.trim().split_once(':')?;
            (!rest.trim().is_empty()).then_some(())?;
            u64::from_str_radix(addr, 16).ok()
        })
        .collect();
    assert!(addrs.len() > 2, "objdump found {function}:\n{text}");
    let start = addrs[0];
    let second = addrs[1] - start;
    let long = addrs
        .windows(2)
        .find(|w| w[1] - w[0] > 1)
        .unwrap_or_else(|| panic!("an instruction longer than a byte in {function}:\n{text}"));
    (second, long[0] - start + 1)
}

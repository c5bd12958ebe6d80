//! Root integration tests: what this host cannot do is refused with one
//! clear message that agrees with a direct probe of the host (debug
//! registers, kernel targets, ring buffers), and bad input the same way;
//! nothing stays armed.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use std::process::Command;

use hwbp_tests::traces::fx;
use hwbp_tests::{
    TempDir,
    host::{self, errno_name},
    hwbp_trace, root_or_skip, run, stderr, stdout,
};

/// One target more than the host has free debug registers (4 on an idle
/// x86 host; fewer when a debugger or another tracer holds some): the run
/// fails naming the count, and leaves every register as free as it found it.
#[test]
fn one_breakpoint_too_many_fails_cleanly_and_leaves_nothing_armed() {
    if !root_or_skip("one_breakpoint_too_many_fails_cleanly_and_leaves_nothing_armed") {
        return;
    }
    let free_before = host::free_debug_registers();
    let free = free_before.iter().copied().min().unwrap_or(0);
    let targets = [
        "HWBP_FX_COUNTER",
        "hwbp_fx_target",
        "hwbp_fx_caller",
        "hwbp_fx_writer",
        "hwbp_fx_reader",
    ];
    assert!(
        free < targets.len(),
        "x86 has 4 debug registers, probe says {free}"
    );
    let too_many = &targets[..free + 1];
    let mut args = vec!["--no-tui", "-q"];
    args.extend(too_many);
    let fx = fx();
    args.extend(["--", &fx, "calls", "10"]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("4 debug registers"), "{err}");
    let were = if free == 1 { "was" } else { "were" };
    assert!(
        err.contains(&format!("{free} of them fit, so {free} {were} free")),
        "the probe found {free} free: {err}"
    );
    // Names the target that failed and where: a thread of the command.
    let last = too_many[free];
    let place = err
        .split(&format!("cannot arm `{last}` on thread "))
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("names the target and its thread: {err}"));
    assert!(
        place.parse::<u32>().is_ok_and(|tid| tid > 0),
        "a thread id: {place:?} in {err}"
    );
    assert!(!err.contains("Tracing"), "nothing was armed: {err}");
    // Nothing stayed armed: the host has as many free as before, and that
    // many targets fit right after.
    assert_eq!(host::free_debug_registers(), free_before);
    if free == 0 {
        return;
    }
    let mut args = vec!["--no-tui", "-q"];
    args.extend(&targets[..free]);
    args.extend(["--", &fx, "calls", "10"]);
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let tracing = if free == 1 {
        "Tracing 1 target".to_owned()
    } else {
        format!("Tracing {free} targets")
    };
    assert!(stderr(&out).contains(&tracing), "{}", stderr(&out));
}

#[test]
fn bad_input_gets_one_clear_message() {
    if !root_or_skip("bad_input_gets_one_clear_message") {
        return;
    }
    let fx = fx();
    let dir = TempDir::new("bad");
    let link = dir.path("link.jsonl");
    std::os::unix::fs::symlink("/tmp/elsewhere.jsonl", &link).expect("symlink");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["hwbp_fx_targt", "--", &fx, "calls", "1"],
            2,
            "did you mean: hwbp_fx_target",
        ),
        (vec!["pid_max:q"], 2, "unknown mode `q`"),
        (vec!["pid_max/3"], 2, "1, 2, 4 or 8 bytes"),
        (
            vec!["HWBP_FX_COUNTER:r", "--", &fx, "reads", "1"],
            2,
            "use `:rw`",
        ),
        (
            vec!["HWBP_FX_COUNTER+1/4", "--", &fx, "reads", "1"],
            2,
            "not aligned to 4 bytes",
        ),
        (
            vec!["hwbp_fx_target", "--", "/nonexistent/cmd"],
            2,
            "command not found",
        ),
        (
            vec![
                "-o",
                "/nonexistent/dir/t.jsonl",
                "hwbp_fx_target",
                "--",
                &fx,
                "calls",
                "1",
            ],
            2,
            "does its directory exist",
        ),
        (
            vec!["-o", &link, "hwbp_fx_target", "--", &fx, "calls", "1"],
            2,
            "symbolic link",
        ),
        (
            vec!["-p", "999999999", "hwbp_fx_target"],
            2,
            "no process 999999999",
        ),
        (
            vec![
                "--buffer-size",
                "1000",
                "hwbp_fx_target",
                "--",
                &fx,
                "calls",
                "1",
            ],
            2,
            "power of two",
        ),
        (
            vec!["0x401000"],
            2,
            "`0x401000` is a user-space address (below 0x800000000000)",
        ),
        (vec!["fx_user:hwbp_fx_target"], 2, "add -p PID or -- CMD"),
        (
            vec!["-d", "0", "hwbp_fx_target"],
            2,
            "positive number of seconds",
        ),
        (
            vec!["-d", "-1", "hwbp_fx_target"],
            2,
            "positive number of seconds",
        ),
        (vec!["-d", "1e12", "hwbp_fx_target"], 2, "at most one year"),
        (
            vec!["-d", "soon", "hwbp_fx_target"],
            2,
            "not a number of seconds",
        ),
        (vec!["-n", "0", "hwbp_fx_target"], 2, "-n"),
        (vec!["-n", "-5", "hwbp_fx_target"], 2, "-n"),
        (
            vec!["-n", "99999999999999999999999", "hwbp_fx_target"],
            2,
            "-n",
        ),
        (vec![""], 2, "empty target"),
        (vec![], 2, "name at least one TARGET"),
    ];
    for (args, code, needle) in cases {
        let mut full = vec!["--no-tui"];
        full.extend(args.iter().copied());
        let out = run(&full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected `{needle}` in: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Tracing"), "{args:?}: nothing armed: {err}");
        assert!(
            !stdout(&out).contains("done"),
            "{args:?}: the command never ran its code: {}",
            stdout(&out)
        );
    }
}

/// Kernel targets on this host: hwbp-trace arms what the host's own probe
/// accepts, and what it refuses gets the reason the probe found and the way
/// out (the VM), never "run as root" while running as root.
#[test]
fn kernel_targets_agree_with_what_the_host_allows() {
    if !root_or_skip("kernel_targets_agree_with_what_the_host_allows") {
        return;
    }
    let data_probe = host::kernel_data_watchpoints();
    let functions_probe = host::kernel_execute_breakpoints();
    let check = |args: &[&str], probe: Result<(), i32>, refused: &[&str]| {
        let mut full = vec!["--no-tui", "-d", "0.2"];
        full.extend_from_slice(args);
        let out = run(&full);
        let err = stderr(&out);
        match probe {
            Ok(()) => {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{args:?}: the host accepts it: {err}"
                );
                assert!(err.contains("Tracing"), "{args:?}: {err}");
            }
            Err(errno) => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{args:?}: the host refuses it ({}): {err}",
                    errno_name(errno)
                );
                for needle in refused {
                    assert!(
                        err.contains(needle),
                        "{args:?}: expected `{needle}` in: {err}"
                    );
                }
                assert!(!err.contains("run as root"), "{args:?}: we are root: {err}");
                assert!(!err.contains("Tracing"), "{args:?}: nothing armed: {err}");
                assert!(!err.contains("panicked"), "{args:?}: {err}");
            }
        }
    };

    let data = format!("{:#x}:w", host::kernel_data_address());
    let data_refused: &[&str] = match data_probe {
        Err(libc::EPERM | libc::EACCES) => {
            &["refuses breakpoints on kernel addresses", "cargo xtask vm"]
        }
        _ => &["refused"],
    };
    check(&[&data], data_probe, data_refused);

    let mut refused = vec!["refused an execute breakpoint", "cargo xtask vm"];
    refused.push(match data_probe {
        Ok(()) => "Data watchpoints (`:w`, `:rw`) on kernel variables work on this host",
        Err(_) => "This host refuses kernel data watchpoints too",
    });
    check(&["vfs_read"], functions_probe, &refused);
}

/// Makes every bpf(BPF_MAP_CREATE) of this process and its children fail
/// with EINVAL, as a kernel before 5.8 answers for a ring buffer map (the
/// map type is behind a pointer, out of a seccomp filter's reach, so every
/// map is refused). Runs between fork and exec.
fn refuse_bpf_map_create() -> std::io::Result<()> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, sock_filter, sock_fprog,
    };
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const BPF_MAP_CREATE: u32 = 0;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (low half on
    // little-endian x86-64).
    let filter = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 4),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        jeq(libc::SYS_bpf as u32, 0, 3),
        stmt(BPF_LD | BPF_W | BPF_ABS, 16),
        jeq(BPF_MAP_CREATE, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EINVAL as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let program = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with a filter program that outlives the call.
    let rc = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const program,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// On a kernel without BPF ring buffers (before 5.8) hwbp-trace says so in
/// one line and exits 1, before the traced command runs any of its code.
#[test]
fn a_kernel_without_ring_buffers_is_named() {
    use std::os::unix::process::CommandExt as _;
    if !root_or_skip("a_kernel_without_ring_buffers_is_named") {
        return;
    }
    let mut command = Command::new(hwbp_trace());
    command.args([
        "--no-tui",
        "-q",
        "hwbp_fx_target",
        "--",
        &fx(),
        "calls",
        "3",
    ]);
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe { command.pre_exec(refuse_bpf_map_create) };
    let out = command.output().expect("run hwbp-trace");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one message: {err}");
    assert!(
        err.contains("no BPF ring buffers") && err.contains("Linux 5.8"),
        "{err}"
    );
    assert!(
        !stdout(&out).contains("done"),
        "the command never ran: {}",
        stdout(&out)
    );
}

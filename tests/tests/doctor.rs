//! Root integration test of `hwbp-trace doctor`: every check whose answer
//! depends on the host is compared with the host's own answer, asked with a
//! direct perf_event_open (hwbp_tests::host), so the test holds on a host
//! that refuses kernel watchpoints and on one that accepts them.
//! Run by `cargo xtask test` with --test-threads=1 (it takes every debug register).

use hwbp_tests::{
    host::{self, DEBUG_REGISTERS, errno_name},
    root_or_skip, run, stderr, stdout,
};

/// The line of one check, e.g. `ok    self-test  …`.
fn line<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
                .starts_with(check)
        })
        .unwrap_or_else(|| panic!("no `{check}` line in:\n{out}"))
}

fn status<'a>(out: &'a str, check: &str) -> &'a str {
    line(out, check).split_whitespace().next().unwrap_or("")
}

#[test]
fn doctor_reports_this_host() {
    if !root_or_skip("doctor_reports_this_host") {
        return;
    }
    // The host's answers, asked before doctor runs.
    let free = host::free_debug_registers();
    let functions_probe = host::kernel_execute_breakpoints();
    let data_probe = host::kernel_data_watchpoints();
    let variables_listed = host::kallsyms_lists_variables();
    eprintln!(
        "host: free debug registers {free:?}, kernel execute {functions_probe:?}, kernel data \
         {data_probe:?}, kallsyms variables {variables_listed}"
    );

    let start = std::time::Instant::now();
    let out = run(&["doctor"]);
    let elapsed = start.elapsed();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "doctor exits 0 here:\n{text}\n{}",
        stderr(&out)
    );
    // kallsyms read twice, the BPF object loaded twice, 2000 hits at ~20 µs.
    assert!(
        elapsed < std::time::Duration::from_secs(10),
        "doctor took {elapsed:?}"
    );

    for check in [
        "privileges",
        "kernel version",
        "BPF ring buffer",
        "BTF",
        "perf_event_paranoid",
    ] {
        assert_eq!(status(&text, check), "ok", "{}", line(&text, check));
    }

    // The self-test: 1000 calls and 1000 writes, every one recorded and counted.
    let self_test = line(&text, "self-test");
    assert_eq!(status(&text, "self-test"), "ok", "{self_test}");
    assert!(
        self_test.contains(
            "execute: 1000 of 1000 hits recorded (1000 counted), write: 1000 of 1000 (1000 counted), 0 dropped"
        ),
        "{self_test}"
    );
    assert!(
        self_test.contains("in order, with arguments and values"),
        "{self_test}"
    );

    // hwbp::target::resolve finds a function and a .bss variable of hwbp-trace itself
    // where they are (the RELRO page shared by two segments once misled it).
    let symbols = line(&text, "symbols of executables");
    assert_eq!(status(&text, "symbols of executables"), "ok", "{symbols}");

    // The debug registers doctor finds free are the ones the probe found.
    let registers = line(&text, "debug registers");
    let min = free.iter().copied().min().unwrap_or(0);
    if free.iter().all(|&n| n == DEBUG_REGISTERS) {
        assert_eq!(status(&text, "debug registers"), "ok", "{registers}");
        assert!(
            registers.contains(&format!(
                "{DEBUG_REGISTERS} of {DEBUG_REGISTERS} free on each of {} CPUs",
                free.len()
            )),
            "{registers}"
        );
    } else {
        let expected = if min == 0 { "fail" } else { "warn" };
        assert_eq!(
            status(&text, "debug registers"),
            expected,
            "{registers} (probe: {free:?})"
        );
    }

    // Kernel functions: accepted or refused as the host's own probe was.
    let functions = line(&text, "kernel functions");
    match functions_probe {
        Ok(()) => {
            assert_eq!(status(&text, "kernel functions"), "ok", "{functions}");
            assert!(functions.contains("was accepted"), "{functions}");
        }
        Err(errno) => {
            assert_eq!(status(&text, "kernel functions"), "warn", "{functions}");
            assert!(
                functions.contains(&format!("({})", errno_name(errno))),
                "{functions} (probe: {})",
                errno_name(errno)
            );
        }
    }

    // Kernel variables by name: listed in kallsyms or not.
    let variables = line(&text, "kernel variables by name");
    if variables_listed {
        assert_eq!(
            status(&text, "kernel variables by name"),
            "ok",
            "{variables}"
        );
        assert!(variables.contains("lists pid_max"), "{variables}");
    } else {
        assert_eq!(
            status(&text, "kernel variables by name"),
            "warn",
            "{variables}"
        );
        assert!(
            variables.contains("/proc/kallsyms lists no variables"),
            "{variables}"
        );
    }

    // Kernel data watchpoints: accepted or refused as the probe was, and a
    // refusal points to the VM.
    let data = line(&text, "kernel data watchpoints");
    match data_probe {
        Ok(()) => {
            assert_eq!(status(&text, "kernel data watchpoints"), "ok", "{data}");
            assert!(data.contains("was accepted"), "{data}");
        }
        Err(errno) => {
            assert_eq!(status(&text, "kernel data watchpoints"), "warn", "{data}");
            assert!(data.contains(&format!("({}", errno_name(errno))), "{data}");
            assert!(data.contains("cargo xtask vm"), "{data}");
        }
    }

    // The verdict, built from the probes.
    let verdict = text.lines().last().unwrap_or("");
    assert_eq!(
        verdict,
        expected_verdict(functions_probe, variables_listed, data_probe)
    );
}

/// The verdict line doctor must print, from the host's own probes.
fn expected_verdict(
    functions_probe: Result<(), i32>,
    variables_listed: bool,
    data_probe: Result<(), i32>,
) -> String {
    let mut works = vec!["user-space targets (x, w, rw)".to_owned()];
    let mut fails = Vec::new();
    let mut unknown = Vec::new();
    match functions_probe {
        Ok(()) => works.push("kernel functions (x)".into()),
        // EINVAL is a refusal of the address; anything else (ENOSPC, say)
        // leaves the question open.
        Err(errno) if errno != libc::EINVAL => unknown.push("kernel functions (x)".to_owned()),
        Err(_) => fails.push(format!(
            "kernel functions ({})",
            if kprobes_configured() == Some(false) {
                "no CONFIG_KPROBES"
            } else {
                "refused by the kernel"
            }
        )),
    }
    match (variables_listed, data_probe) {
        (true, Ok(())) => works.push("kernel variables by name (w, rw)".into()),
        (false, Ok(())) => {
            works.push("kernel variables by address (0xADDRESS:w, :rw)".into());
            fails.push(format!(
                "kernel variables by name ({})",
                if kallsyms_all_configured() == Some(false) {
                    "no CONFIG_KALLSYMS_ALL"
                } else {
                    "not in /proc/kallsyms"
                }
            ));
        }
        (_, Err(_)) => fails.push("kernel variables (w, rw)".into()),
    }
    let fails = if fails.is_empty() {
        "nothing".to_owned()
    } else {
        fails.join(", ")
    };
    let mut expected = format!(
        "verdict: works here: {}; does not work: {fails}",
        works.join(", ")
    );
    if !unknown.is_empty() {
        expected.push_str(&format!("; not known: {}", unknown.join(", ")));
    }
    expected
}

/// A config option of the running kernel from /proc/config.gz or
/// /boot/config-RELEASE: Some(true) when set, Some(false) when not set,
/// None when neither file is there.
fn config_option(name: &str) -> Option<bool> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let text = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .or_else(|| std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok())?;
    Some(
        text.lines()
            .any(|l| l == format!("{name}=y") || l == format!("{name}=m")),
    )
}

fn kprobes_configured() -> Option<bool> {
    config_option("CONFIG_KPROBES")
}

fn kallsyms_all_configured() -> Option<bool> {
    config_option("CONFIG_KALLSYMS_ALL")
}

//! Root integration test of `hwbp-trace doctor` on this host, whose facts
//! are known (shared/PLATFORM.md): no CONFIG_KPROBES, no CONFIG_KALLSYMS_ALL,
//! 4 debug registers per CPU, user-space breakpoints exact.
//! Run by `cargo xtask test` with --test-threads=1 (it takes every debug register).

use hwbp_tests::{root_or_skip, run, stderr, stdout};

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

    // hwbp::resolve finds a function and a .bss variable of hwbp-trace itself
    // where they are (the RELRO page shared by two segments once misled it).
    let symbols = line(&text, "symbols of executables");
    assert_eq!(status(&text, "symbols of executables"), "ok", "{symbols}");

    // All four debug registers are free on every CPU (nothing else traces here).
    let registers = line(&text, "debug registers");
    assert_eq!(
        status(&text, "debug registers"),
        "ok",
        "{registers}\n(another tracer, debugger or test running at the same time holds some: run this test alone)"
    );
    assert!(registers.contains("4 of 4 free on each of"), "{registers}");

    // No CONFIG_KPROBES: the kprobe PMU is absent and the kernel refuses
    // execute breakpoints on kernel text.
    let kprobe_pmu = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let functions = line(&text, "kernel functions");
    if kprobe_pmu {
        eprintln!(
            "this kernel has kprobes: not the host of shared/PLATFORM.md; kernel-function facts not checked"
        );
    } else {
        assert_eq!(status(&text, "kernel functions"), "warn", "{functions}");
        assert!(
            functions.contains("CONFIG_KPROBES is not set"),
            "{functions}"
        );
        assert!(
            functions.contains("refused a test execute breakpoint on __x64_sys_getpgid (EINVAL)"),
            "{functions}"
        );
    }

    // No CONFIG_KALLSYMS_ALL: /proc/kallsyms has no pid_max.
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
    let has_pid_max = kallsyms
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("pid_max"));
    let variables = line(&text, "kernel variables by name");
    assert!(
        !has_pid_max,
        "this host's kallsyms lists pid_max: not the host of shared/PLATFORM.md"
    );
    assert_eq!(
        status(&text, "kernel variables by name"),
        "warn",
        "{variables}"
    );
    assert!(
        variables.contains("CONFIG_KALLSYMS_ALL is not set"),
        "{variables}"
    );
    assert!(
        variables.contains("/proc/kallsyms lists no variables"),
        "{variables}"
    );

    // Kernel data watchpoints are accepted by address.
    assert_eq!(
        status(&text, "kernel data watchpoints"),
        "ok",
        "{}",
        line(&text, "kernel data watchpoints")
    );

    let verdict = text.lines().last().unwrap_or("");
    let mut expected =
        "verdict: works here: user-space targets (x, w, rw), kernel variables by address \
                        (0xADDRESS:w, :rw); does not work: "
            .to_owned();
    if !kprobe_pmu {
        expected.push_str("kernel functions (no CONFIG_KPROBES), ");
    }
    expected.push_str("kernel variables by name (no CONFIG_KALLSYMS_ALL)");
    assert_eq!(verdict, expected);
}

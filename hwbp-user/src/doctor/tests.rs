use std::time::Duration;

use super::{checks::*, self_test::*, *};
use crate::host::kernel::parse_release;

#[test]
fn versions() {
    assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18, 44)));
    assert_eq!(parse_release("6.1.0-31-amd64\n"), Some((6, 1, 0)));
    assert_eq!(parse_release("5.8"), Some((5, 8, 0)));
    assert_eq!(parse_release("4.19.0+"), Some((4, 19, 0)));
    assert_eq!(parse_release("5.10.0_rc1"), Some((5, 10, 0)));
    assert_eq!(parse_release(""), None);
    assert_eq!(parse_release("linux"), None);
    assert!(parse_release("5.8.0").is_some_and(|v| v >= RINGBUF_VERSION));
    assert!(parse_release("5.7.19").is_some_and(|v| v < RINGBUF_VERSION));
    assert!(parse_release("6.0").is_some_and(|v| v >= RINGBUF_VERSION));
    assert!(
        parse_release("5.10.0").is_some_and(|v| v >= RINGBUF_VERSION),
        "10 > 8 numerically"
    );
}

/// A self-test run that recorded and counted every hit, in order.
fn exact_run() -> SelfTest {
    SelfTest {
        calls: 1000,
        execute_records: 1000,
        execute_counted: 1000,
        execute_in_order: true,
        write_records: 1000,
        write_counted: 1000,
        write_in_order: true,
        resolution: vec![("hwbp_doctor_target", 0x1000, Resolution::Exact)],
        elapsed: Duration::from_millis(20),
        ..SelfTest::default()
    }
}

#[test]
fn self_test_judged_by_counts_order_and_sigtraps() {
    let exact = exact_run();
    let judged = |test: &SelfTest| judge_self_test(test.clone(), &[]).remove(0);
    assert_eq!(judged(&exact).status, Status::Ok, "{}", judged(&exact));
    // The counts exact (the execute breakpoint trapped again), yet a
    // SIGTRAP came: the host loses hits.
    let trapped = SelfTest {
        sigtraps: 1,
        ..exact.clone()
    };
    let check = judged(&trapped);
    assert_eq!(check.status, Status::Fail);
    assert!(
        check
            .found
            .contains("1 debug exception came without a cause (DR6 empty)"),
        "{check}"
    );
    assert!(
        check
            .todo
            .as_deref()
            .is_some_and(|t| t.contains("loses breakpoint hits")),
        "{check}"
    );
    // Silent after the first hit, as seen on a KVM host.
    let silent = SelfTest {
        execute_records: 1,
        execute_counted: 1,
        write_records: 0,
        write_counted: 0,
        ..exact
    };
    let check = judged(&silent);
    assert_eq!(check.status, Status::Fail);
    assert!(check.found.contains("hits were missed"), "{check}");
}

/// A run the host spoiled is run again; one that hwbp spoiled is not,
/// and a clean run after spoiled ones passes with a warning naming them.
#[test]
fn self_test_runs_again_only_after_the_hosts_faults() {
    let exact = exact_run();
    assert_eq!(host_fault(&exact), None);
    let trapped = SelfTest {
        sigtraps: 2,
        write_records: 998,
        write_counted: 998,
        ..exact.clone()
    };
    assert_eq!(
        host_fault(&trapped).as_deref(),
        Some("2 debug exceptions without a cause (DR6 empty; SIGTRAP)")
    );
    let silent = SelfTest {
        execute_records: 1,
        execute_counted: 1,
        write_records: 0,
        write_counted: 0,
        ..exact.clone()
    };
    assert_eq!(
        host_fault(&silent).as_deref(),
        Some(
            "breakpoints the kernel stopped counting (1 of 1000 calls and 0 of 1000 writes counted)"
        )
    );
    // hwbp's own failures: hits the kernel counted but hwbp did not
    // record, dropped ones, wrong values.
    for own in [
        SelfTest {
            execute_records: 999,
            ..exact.clone()
        },
        SelfTest {
            dropped: 1,
            write_records: 999,
            write_counted: 999,
            ..exact.clone()
        },
        SelfTest {
            write_in_order: false,
            ..exact.clone()
        },
    ] {
        assert_eq!(host_fault(&own), None, "{own:?}");
    }

    let checks = judge_self_test(exact, &["one".into(), "two".into()]);
    assert_eq!(checks[0].status, Status::Ok, "{}", checks[0]);
    assert_eq!(checks[1].status, Status::Warn, "{}", checks[1]);
    assert_eq!(
        checks[1].found,
        "2 of 3 self-test runs spoiled by the host before the one above: one; two"
    );
    assert_eq!(checks[2].name, "symbols of executables");
}

#[test]
fn check_lines() {
    let check = Check::warn(
        "kernel functions",
        "CONFIG_KPROBES is not set",
        "use the VM",
    );
    assert_eq!(
        check.to_string(),
        "warn  kernel functions           CONFIG_KPROBES is not set → use the VM"
    );
    let check = Check::ok("BTF", "present");
    assert_eq!(
        check.to_string(),
        "ok    BTF                        present"
    );
}

#[test]
fn verdict_line() {
    let this_host = Verdict {
        user_targets: true,
        kernel_functions: Some(false),
        kernel_variables_by_name: Some(false),
        kernel_data_watchpoints: Some(true),
        kernel_functions_why: "no CONFIG_KPROBES".into(),
        kernel_variables_why: "no CONFIG_KALLSYMS_ALL".into(),
    };
    assert_eq!(
        this_host.to_string(),
        "verdict: works here: user-space targets (x, w, rw), kernel variables by address (0xADDRESS:w, :rw); \
         does not work: kernel functions (no CONFIG_KPROBES), kernel variables by name (no CONFIG_KALLSYMS_ALL)"
    );
    let full = Verdict {
        user_targets: true,
        kernel_functions: Some(true),
        kernel_variables_by_name: Some(true),
        kernel_data_watchpoints: Some(true),
        ..Default::default()
    };
    assert_eq!(
        full.to_string(),
        "verdict: works here: user-space targets (x, w, rw), kernel functions (x), kernel variables by name \
         (w, rw); does not work: nothing"
    );
    let unknown = Verdict::default();
    assert_eq!(
        unknown.to_string(),
        "verdict: works here: nothing; does not work: user-space targets (x, w, rw); not known: kernel \
         functions (x), kernel variables (w, rw)"
    );
}

#[test]
fn failed_checks_are_listed() {
    let report = Report {
        checks: vec![
            Check::ok("a", "fine"),
            Check::fail("b", "broken", "fix"),
            Check::warn("c", "meh", "hm"),
        ],
        verdict: Verdict::default(),
    };
    assert_eq!(report.failed(), vec!["b"]);
    assert_eq!(
        DoctorError::Failed(report.failed()).to_string(),
        "1 essential check(s) failed (b): see the lines marked `fail` above"
    );
}

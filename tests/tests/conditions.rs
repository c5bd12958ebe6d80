//! Root integration tests of conditions (`TARGET if COND`), evaluated by
//! the BPF program before anything is recorded: each keeps exactly the
//! hits the C program below makes true (it counts them itself, in its
//! loops), the others are counted as rejected, and kernel_count adds up.
//! Bad conditions get one message with a caret at the column, exit 2 and
//! arm nothing.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use hwbp_tests::{
    TempDir, compile_c, root_or_skip, run, stderr,
    traces::{read_trace, trace_ok},
};
use serde_json::Value;

/// Writes and calls, each loop's count in its comment.
const PROGRAM: &str = "#include <stdlib.h>\n\
     #include <unistd.h>\n\
     volatile long sink;\n\
     volatile unsigned int level;\n\
     volatile unsigned int state;\n\
     __attribute__((noipa)) void adjust(int delta, unsigned long count) { sink += delta + count; }\n\
     __attribute__((noipa)) void ratio(double r, int k) { sink += (long)(r * k); }\n\
     int main(void) {\n\
       const char *ms = getenv(\"HWBP_FX_START_DELAY_MS\");\n\
       if (ms) usleep(atoi(ms) * 1000);\n\
       for (int i = 0; i < 100; i++) level = i;      /* 100 writes, 40 of them >= 60 */\n\
       for (int i = 0; i < 120; i++) state = i / 4;  /* 120 writes of 0..29, 29 changes */\n\
       for (int i = 0; i < 60; i++) adjust(i % 7 - 3, i); /* delta -3..3 */\n\
       ratio(1.5, 2);\n\
       return 0;\n\
     }\n";

const ADJUST_CALLS: u64 = 60;

/// Traces `targets` over the program; the summary's targets.
fn traced(dir: &TempDir, program: &str, targets: &[&str]) -> (Vec<Value>, Vec<Value>) {
    let mut args = targets.to_vec();
    args.extend(["--", program]);
    let (_, hits, summary) = trace_ok(&dir.path("t.jsonl"), &args);
    let targets = summary["targets"].as_array().expect("targets").clone();
    (hits, targets)
}

/// Hits, rejected, and the accounting: every hit the kernel counted is
/// recorded or rejected (or otherwise counted).
fn counts(target: &Value) -> (u64, u64) {
    let n = |key: &str| {
        target[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {target}"))
    };
    // `rejected` is left out when 0.
    let rejected = target["rejected"].as_u64().unwrap_or(0);
    assert_eq!(
        n("kernel_count"),
        n("hits") + rejected + n("dropped") + n("filtered") + n("missed") + n("after_limit"),
        "every hit accounted for: {target}"
    );
    assert_eq!(n("missed") + n("dropped"), 0, "{target}");
    (n("hits"), rejected)
}

fn build(test: &str, dir: &TempDir) -> Option<String> {
    compile_c(test, dir, "cond", PROGRAM, &["-O1", "-g"]).map(|(program, _)| program)
}

/// Conditions on the value: `value >= 60` keeps 40 of 100 writes, and
/// `value != old` keeps the 29 writes that change `state` (its first
/// `old` is the 0 read at arming), each with the value that passed.
#[test]
fn conditions_on_values_keep_exactly_the_true_hits() {
    const TEST: &str = "conditions_on_values_keep_exactly_the_true_hits";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("cond-values");
    let Some(program) = build(TEST, &dir) else {
        return;
    };
    let (hits, targets) = traced(
        &dir,
        &program,
        &["level:w if value >= 60", "state:w if value != old"],
    );
    assert_eq!(counts(&targets[0]), (40, 60), "level");
    assert_eq!(counts(&targets[1]), (29, 91), "state");
    // A user `rw` watchpoint has no value, but the task's operands work.
    let (_, rw) = traced(
        &dir,
        &program,
        &[
            "level:rw if comm == \"cond\"",
            "state:rw if comm != \"cond\"",
        ],
    );
    assert_eq!(counts(&rw[0]), (100, 0), "level, every write kept");
    assert_eq!(counts(&rw[1]), (0, 120), "state, every write rejected");
    let values = |target: &str| -> Vec<u64> {
        hits.iter()
            .filter(|h| h["target"] == target)
            .map(|h| h["value"].as_u64().expect("a value"))
            .collect()
    };
    assert_eq!(values("level:w"), (60..100).collect::<Vec<_>>());
    assert_eq!(values("state:w"), (1..30).collect::<Vec<_>>());
}

/// Conditions on arguments: by DWARF name with a negative literal compared
/// signed, by register, with `&`, `&&`, `||`, `!` and the comm.
#[test]
fn conditions_on_arguments_and_the_task() {
    const TEST: &str = "conditions_on_arguments_and_the_task";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("cond-args");
    let Some(program) = build(TEST, &dir) else {
        return;
    };
    // delta = i % 7 - 3 and count = i for i in 0..60:
    let delta = |i: u64| i as i64 % 7 - 3;
    let expect = |keep: &dyn Fn(u64) -> bool| {
        let kept = (0..ADJUST_CALLS).filter(|&i| keep(i)).count() as u64;
        (kept, ADJUST_CALLS - kept)
    };
    let cases: [(&str, (u64, u64)); 4] = [
        ("adjust if delta < -1", expect(&|i| delta(i) < -1)),
        ("adjust if arg1 >= 50", expect(&|i| i >= 50)),
        (
            "adjust if count & 1 && !(delta == 0) || comm == \"nomatch\"",
            expect(&|i| i & 1 != 0 && delta(i) != 0),
        ),
        (
            "adjust if comm == \"cond\" && (delta > 2 || delta == -3)",
            expect(&|i| delta(i).abs() == 3),
        ),
    ];
    assert_eq!(cases[0].1, (18, 42), "the fixture's own count");
    for (target, expected) in cases {
        let (_, targets) = traced(&dir, &program, &[target]);
        assert_eq!(counts(&targets[0]), expected, "{target}");
    }
    // A comm that never matches: every call rejected.
    let (_, targets) = traced(&dir, &program, &["adjust if comm != \"cond\""]);
    assert_eq!(counts(&targets[0]), (0, ADJUST_CALLS));
}

/// Each bad condition: one message pointing at the column, exit 2, and
/// nothing armed (no `Tracing` line; the program never ran).
#[test]
fn bad_conditions_get_one_message_with_a_caret() {
    const TEST: &str = "bad_conditions_get_one_message_with_a_caret";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("cond-bad");
    let Some(program) = build(TEST, &dir) else {
        return;
    };
    for (target, says, caret_line) in [
        ("level:w if value >> 3", "unexpected `>`", "           ^"),
        ("level:w if (value > 3", "expected `)`", "              ^"),
        ("adjust if nope > 1", "unknown operand `nope`", "    ^"),
        (
            "adjust if value > 1",
            "execute breakpoint, which has no value",
            "    ^",
        ),
        ("level:rw if value > 1", "traps on reads", "    ^"),
        ("ratio if r > 1", "in xmm0", "    ^"),
        ("adjust if count < -1", "out of range", "            ^"),
        ("adjust if comm == 5", "string only", "            ^"),
    ] {
        let args = ["--no-tui", "-q", target, "--", &program];
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{target}: {err}");
        assert!(err.contains(says), "{target}: {err}");
        assert!(
            err.lines().any(|l| l == caret_line),
            "{target}: a caret at {caret_line:?}: {err}"
        );
        assert_eq!(
            err.matches("error").count(),
            1,
            "{target}: one message: {err}"
        );
        assert!(!err.contains("Tracing"), "{target}: nothing armed: {err}");
        if target.starts_with("adjust if nope") {
            assert!(err.contains("delta, count"), "names the arguments: {err}");
        }
    }
}

/// The instructions the verifier walked and whether conditions were on, as
/// `-v` logs them; None for the count on a kernel before 5.16.
fn verified(err: &str) -> (Option<u64>, bool) {
    let line = err
        .lines()
        .find_map(|l| l.split_once("BPF program verified: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no verifier line in: {err}"));
    let count = line.split(' ').next().and_then(|n| n.parse().ok());
    (count, line.ends_with("conditions on"))
}

/// A run where no target can have a condition loads the program without
/// its interpreter, which the verifier then skips: fewer instructions
/// walked, the same exact counts. A condition, or `--control` (which may
/// add one while tracing), loads it.
#[test]
fn a_run_without_conditions_is_verified_without_the_interpreter() {
    const TEST: &str = "a_run_without_conditions_is_verified_without_the_interpreter";
    if !root_or_skip(TEST) {
        return;
    }
    let dir = TempDir::new("cond-off");
    let Some(program) = build(TEST, &dir) else {
        return;
    };
    let trace = dir.path("t.jsonl");
    let control = dir.path("control");
    let traced = |extra: &[&str], target: &str| {
        let mut args = vec!["-v", "--no-tui", "-q", "-o", &trace];
        args.extend(extra);
        args.extend([target, "--", &program]);
        let out = run(&args);
        let err = stderr(&out);
        assert!(out.status.success(), "{args:?}: {err}");
        let (_, _, summary) = read_trace(&trace);
        let (hits, _) = counts(&summary["targets"][0]);
        (verified(&err), hits)
    };
    let ((off, off_on), plain) = traced(&[], "level:w");
    let ((on, on_on), kept) = traced(&[], "level:w if value >= 60");
    let ((live, live_on), live_hits) = traced(&["--control", &control], "level:w");
    assert_eq!((off_on, on_on, live_on), (false, true, true));
    assert_eq!((plain, kept, live_hits), (100, 40, 100));
    // The count needs Linux 5.16 (verified_insns); the switch is checked
    // above either way.
    if let (Some(off), Some(on), Some(live)) = (off, on, live) {
        assert!(off < on, "without the interpreter {off}, with it {on}");
        assert_eq!(on, live, "the same program with a condition and --control");
    }
}

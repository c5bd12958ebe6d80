//! Root integration tests: user stacks of the fx_user fixture follow every
//! call path, at every depth, across large frames and at the end of the
//! stack's mapping; `--stack` decides which stacks are taken.
//! Run by `cargo xtask test` with --test-threads=1 (they share debug registers).

use hwbp_tests::traces::{fx, trace_ok, ustack, ustack_names};
use hwbp_tests::{TempDir, root_or_skip};
use serde_json::Value;

/// Traces `fx_user ARGS` twice, `target` alone and then with a watchpoint
/// armed too (on HWBP_FX_COUNTER, which the stack fixtures never write),
/// under which the walk reads the frames on either side of a large frame
/// separately rather than all the bytes between. Returns each run's hits,
/// after checking that there are `n` and no stack was lost.
fn stack_runs(name: &str, target: &str, args: &[&str], n: usize) -> Vec<Vec<Value>> {
    let dir = TempDir::new(name);
    let out_file = dir.path("t.jsonl");
    let fx = fx();
    [vec![target], vec![target, "HWBP_FX_COUNTER:w"]]
        .into_iter()
        .map(|targets| {
            let mut all = targets.clone();
            all.extend(["--", &fx]);
            all.extend(args);
            let (_, hits, summary) = trace_ok(&out_file, &all);
            assert_eq!(hits.len(), n, "{targets:?}");
            assert_eq!(summary["targets"][0]["ustack_errors"], 0, "{targets:?}");
            hits
        })
        .collect()
}

/// A user stack names every frame, in order, however deep and across
/// pages: `stacks 256 256` sends call i down call path i, 17 levels of
/// fx_left/fx_right where bit k of i picks level k's function (level 0 is
/// the target's caller), below fx_stacks, whose frame holds more than a
/// page. The walk reads the stack a window at a time and must stitch the
/// windows together.
#[test]
fn user_stacks_follow_every_call_path() {
    if !root_or_skip("user_stacks_follow_every_call_path") {
        return;
    }
    for hits in stack_runs(
        "call-paths",
        "hwbp_fx_target",
        &["stacks", "256", "256"],
        256,
    ) {
        for (i, hit) in hits.iter().enumerate() {
            expect_call_path(i, hit, 17, i, "fx_user::fx_stacks");
        }
    }
}

/// Hit `i`'s user stack: the target, then `levels` frames of fx_left or
/// fx_right where bit k of `path` picks level k's (level 0 is the target's
/// caller), then `below`, with main further up.
fn expect_call_path(i: usize, hit: &Value, levels: usize, path: usize, below: &str) {
    let names = ustack_names(hit);
    let want = call_path(&["hwbp_fx_target"], levels, path, below);
    assert!(
        names.len() > want.len() && names[..want.len()] == want[..],
        "hit {i}: {names:?}"
    );
    assert!(
        names[want.len()..]
            .iter()
            .any(|n| n.starts_with("fx_user::main")),
        "hit {i}: main in the stack: {names:?}"
    );
}

/// `inner`, then `levels` frames of fx_left or fx_right where bit k of
/// `path` picks level k's, then `below`.
fn call_path<'a>(inner: &[&'a str], levels: usize, path: usize, below: &'a str) -> Vec<&'a str> {
    let mut want = inner.to_vec();
    want.extend((0..levels).map(|level| {
        if path >> level & 1 == 0 {
            "fx_user::fx_left"
        } else {
            "fx_user::fx_right"
        }
    }));
    want.push(below);
    want
}

/// The walk's first read takes what the last walk on the CPU needed: each
/// stack here is 7 frames deeper or 11 shallower than the one before, with
/// other frames, so a walk must read past a first read sized for the last
/// stack and never take what its buffer held before.
#[test]
fn user_stacks_of_changing_depth() {
    if !root_or_skip("user_stacks_of_changing_depth") {
        return;
    }
    for hits in stack_runs("depths", "hwbp_fx_target", &["depths", "360"], 360) {
        for (i, hit) in hits.iter().enumerate() {
            expect_call_path(i, hit, i * 7 % 18, i, "fx_user::fx_depths");
        }
    }
}

/// A record of more than 48 frames does not fit the program's direct copies
/// and goes through bpf_ringbuf_output: 60 levels, then fx_levels and main,
/// complete.
#[test]
fn user_stacks_longer_than_a_direct_record() {
    if !root_or_skip("user_stacks_longer_than_a_direct_record") {
        return;
    }
    for hits in stack_runs("levels", "hwbp_fx_target", &["levels", "20", "60"], 20) {
        for (i, hit) in hits.iter().enumerate() {
            expect_call_path(i, hit, 60, i, "fx_user::fx_levels");
        }
    }
}

/// With a watchpoint armed, the walk reads the frames past a large frame
/// (fx_big's) in reads sized by the last walk's: here those frames are 7
/// levels more or 11 fewer than the last call's, so a walk must read past
/// such a read and never take what its buffer held before. Without one,
/// the same stacks as `depths` with a jump.
#[test]
fn user_stacks_of_changing_depth_past_a_large_frame() {
    if !root_or_skip("user_stacks_of_changing_depth_past_a_large_frame") {
        return;
    }
    let runs = stack_runs("gapdepths", "hwbp_fx_target", &["gapdepths", "360"], 360);
    for hits in &runs {
        // On the fixture's own thread: the frames past fx_gapdepths (the
        // thread's start) are every hit's, so the first's.
        let outer = |names: &[&str]| -> Vec<String> {
            let at = names.iter().position(|n| *n == "fx_user::fx_gapdepths");
            at.map(|at| names[at..].iter().map(|n| n.to_string()).collect())
                .unwrap_or_default()
        };
        let first_outer = outer(&ustack_names(&hits[0]));
        assert!(
            first_outer.len() > 1,
            "frames past fx_gapdepths: {first_outer:?}"
        );
        for (i, hit) in hits.iter().enumerate() {
            let names = ustack_names(hit);
            let want = call_path(
                &["hwbp_fx_target", "fx_user::fx_big"],
                i * 7 % 18,
                i,
                "fx_user::fx_gapdepths",
            );
            assert!(
                names.len() >= want.len() && names[..want.len()] == want[..],
                "hit {i}: {names:?}"
            );
            assert_eq!(outer(&names), first_outer, "hit {i}: {names:?}");
        }
    }
}

/// The walk's first read may run past the last frame it was sized for;
/// where the stack ends there (fx_user's own stack, which ends 64 bytes
/// above the call), the read fails and the walk reads again within the
/// page: the caller (from the word at rsp) and the frames after it, on the
/// thread's usual stack, are all there.
#[test]
fn user_stack_at_the_end_of_its_mapping() {
    if !root_or_skip("user_stack_at_the_end_of_its_mapping") {
        return;
    }
    for hits in stack_runs("topstack", "hwbp_fx_target", &["topstack", "5"], 5) {
        for (i, hit) in hits.iter().enumerate() {
            let names = ustack_names(hit);
            assert!(
                names.len() > 3
                    && names[..3] == ["hwbp_fx_target", "fx_user::fx_topstack", "fx_user::main"],
                "hit {i}: {names:?}"
            );
        }
    }
}

/// `--stack` decides what each hit carries: by default a user target has
/// its user stack only; `none` neither; `both` both (the kernel stack of a
/// hit in user mode is empty: there are no kernel frames).
#[test]
fn stack_option_decides_the_stacks() {
    if !root_or_skip("stack_option_decides_the_stacks") {
        return;
    }
    let dir = TempDir::new("stacks");
    let fx = fx();
    for (stack, want_user) in [(None, true), (Some("none"), false), (Some("both"), true)] {
        let out_file = dir.path("t.jsonl");
        let mut args = Vec::new();
        if let Some(stack) = stack {
            args.extend(["--stack", stack]);
        }
        args.extend(["hwbp_fx_target", "--", &fx, "calls", "5"]);
        let (_, hits, summary) = trace_ok(&out_file, &args);
        assert_eq!(hits.len(), 5, "{stack:?}: {summary}");
        for hit in &hits {
            assert_eq!(hit["kstack"], serde_json::json!([]), "{stack:?}: {hit}");
            let ustack = ustack(hit);
            if want_user {
                assert!(
                    ustack
                        .get(1)
                        .is_some_and(|f| f.starts_with("hwbp_fx_caller+")),
                    "{stack:?}: the caller is named: {ustack:?}"
                );
            } else {
                assert!(ustack.is_empty(), "{stack:?}: {ustack:?}");
            }
        }
        let target = &summary["targets"][0];
        assert_eq!(
            (&target["kstack_errors"], &target["ustack_errors"]),
            (&serde_json::json!(0), &serde_json::json!(0)),
            "{stack:?}"
        );
    }
}

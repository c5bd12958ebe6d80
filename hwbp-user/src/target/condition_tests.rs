use hwbp_common::{
    COND_ACCEPT, COND_ARG0, COND_IMM, COND_OLD, COND_OP_COMM, COND_OP_EQ, COND_OP_LE, COND_OP_LT,
    COND_REJECT, COND_SIGNED, COND_VALUE,
};

use super::*;

fn data(bytes: u8, signed: bool) -> Operands {
    Operands {
        value: Ok(IntType {
            bytes,
            signed,
            name: if signed { "int".into() } else { "u32".into() },
        }),
        args: Err("not an execute breakpoint".into()),
    }
}

fn function() -> Operands {
    Operands {
        value: Err("an execute breakpoint has no value".into()),
        args: Ok(Arguments {
            function: "f".into(),
            named: vec![
                (
                    "delta".into(),
                    Ok((
                        0,
                        IntType {
                            bytes: 4,
                            signed: true,
                            name: "int".into(),
                        },
                    )),
                ),
                ("ratio".into(), Err("xmm0".into())),
                ("count".into(), Ok((1, IntType::unsigned(8)))),
            ],
        }),
    }
}

fn compile(cond: &str, operands: &Operands) -> Result<CondProgram, ConditionError> {
    Condition::parse(cond)?.compile(operands)
}

#[test]
fn one_comparison_is_one_instruction() {
    let p = compile("value > 5", &data(4, false)).expect("compiles");
    let i = p.insns[0];
    // `>` is `<=` with its targets swapped.
    assert_eq!(
        (i.op, i.lhs, i.rhs, i.imm[0]),
        (COND_OP_LE, COND_VALUE, COND_IMM, 5)
    );
    assert_eq!((i.jt, i.jf), (COND_REJECT, COND_ACCEPT));
    assert_eq!((i.lshift, i.flags), (32, 0));
}

#[test]
fn value_changed_compares_two_operands() {
    let p = compile("value != old", &data(8, false)).expect("compiles");
    let i = p.insns[0];
    assert_eq!((i.op, i.lhs, i.rhs), (COND_OP_EQ, COND_VALUE, COND_OLD));
    assert_eq!((i.jt, i.jf), (COND_REJECT, COND_ACCEPT));
}

#[test]
fn and_or_not_jump_forward() {
    // (a && b) || !c: a false goes to c, b true accepts, c true rejects.
    let p = compile("(value > 1 && value < 9) || !(value == 20)", &data(4, true)).expect("ok");
    let [a, b, c] = [p.insns[0], p.insns[1], p.insns[2]];
    assert_eq!((a.op, a.jt, a.jf), (COND_OP_LE, 2, 1));
    assert_eq!((b.op, b.jt, b.jf), (COND_OP_LT, COND_ACCEPT, 2));
    assert_eq!((c.op, c.jt, c.jf), (COND_OP_EQ, COND_REJECT, COND_ACCEPT));
    assert_eq!(a.flags & COND_SIGNED, COND_SIGNED);
}

#[test]
fn negative_literals_follow_the_type() {
    let p = compile("delta < -1", &function()).expect("signed int");
    let i = p.insns[0];
    assert_eq!(
        (i.lhs, i.imm[0], i.flags),
        (COND_ARG0, (-1i64) as u64, COND_SIGNED)
    );
    assert_eq!(i.lshift, 32);
    let e = compile("count < -1", &function()).expect_err("unsigned");
    assert!(e.message.contains("out of range"), "{e}");
    assert_eq!(e.pos, 8);
}

#[test]
fn literal_on_the_left_is_mirrored() {
    let a = compile("5 < value", &data(4, false)).expect("ok");
    let b = compile("value > 5", &data(4, false)).expect("ok");
    assert_eq!(a, b);
}

#[test]
fn comm_compares_both_words() {
    let p = compile("comm != \"cat\"", &function()).expect("ok");
    let i = p.insns[0];
    assert_eq!((i.op, i.jt, i.jf), (COND_OP_COMM, COND_REJECT, COND_ACCEPT));
    assert_eq!(i.imm, [u64::from_le_bytes(*b"cat\0\0\0\0\0"), 0]);
}

#[test]
fn errors_point_at_their_column() {
    for (cond, pos, says) in [
        ("value >> 3", 7, "unexpected `>`"),
        ("value > ", 7, "ends early"),
        ("value = 3", 6, "compare with `==`"),
        ("(value > 3", 10, "expected `)`"),
        ("value > 3 value", 10, "unexpected `value`"),
        ("value > 0xzz", 8, "bad number"),
        ("comm == \"cat", 8, "unterminated"),
        ("3 > 4", 2, "two constants"),
        ("value $ 3", 6, "unexpected `$`"),
    ] {
        let e = Condition::parse(cond).expect_err(cond);
        assert_eq!(e.pos, pos, "{cond}: {e}");
        assert!(e.message.contains(says), "{cond}: {e}");
    }
    let e = Condition::parse("value >> 3").expect_err("bad");
    assert_eq!(
        e.to_string(),
        "unexpected `>`: expected an operand or a number\n    value >> 3\n           ^"
    );
}

#[test]
fn operands_that_cannot_work_are_refused() {
    for (cond, operands, pos, says) in [
        ("value > 1", function(), 0, "no value"),
        ("arg0 > 1", data(4, false), 0, "not an execute"),
        ("delta && ratio > 1", function(), 9, "in xmm0"),
        ("value > 1 || nope", data(4, false), 13, "not an execute"),
        ("nope > 1", function(), 0, "unknown operand `nope`"),
        ("comm == 3", function(), 8, "string only"),
        ("pid == \"a\"", function(), 7, "`comm` only"),
        (
            "comm == \"a-name-too-long-for-comm\"",
            function(),
            8,
            "at most 15",
        ),
        ("value > 300", data(1, false), 8, "out of range"),
    ] {
        let e = compile(cond, &operands).expect_err(cond);
        assert_eq!(e.pos, pos, "{cond}: {e}");
        assert!(e.message.contains(says), "{cond}: {e}");
    }
}

#[test]
fn too_many_comparisons() {
    let cond = vec!["value == 1"; MAX_COND_INSNS + 1].join(" || ");
    let e = compile(&cond, &data(4, false)).expect_err("17");
    assert!(e.message.contains("at most 16"), "{e}");
    let cond = vec!["value == 1"; MAX_COND_INSNS].join(" || ");
    compile(&cond, &data(4, false)).expect("16 fit");
}

#[test]
fn split_at_the_first_if_outside_parentheses() {
    assert_eq!(
        split_condition("f(int, char*) if arg0 > 1"),
        Some(("f(int, char*)", " arg0 > 1"))
    );
    assert_eq!(
        split_condition("counter:w if value != old"),
        Some(("counter:w", " value != old"))
    );
    assert_eq!(split_condition("notify_if"), None);
    assert_eq!(split_condition("f(int if)"), None);
    assert_eq!(split_condition("iffy"), None);
}

#[test]
fn printing_parses_back() {
    for cond in [
        "value != old",
        "!(comm == \"a\\\"b\") && (pid > 3 || tid & 0x4)",
        "delta < -5 || count >= 18446744073709551615",
        "arg3",
    ] {
        let parsed = Condition::parse(cond).expect(cond);
        let again = Condition::parse(&parsed.to_string()).expect("printed");
        assert_eq!(parsed.to_string(), again.to_string());
    }
}

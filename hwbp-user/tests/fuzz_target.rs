//! Property tests (fuzzing) of the target grammar, [`TargetSpec::from_str`],
//! and of conditions (`TARGET if COND`, [`Condition::parse`]).
//!
//! 256 cases per property in the normal test suite; `cargo xtask fuzz` runs
//! the same properties with many more (PROPTEST_CASES). A failure is shrunk
//! to a minimal input and saved under proptest-regressions/ (commit it: it
//! is replayed first from then on).

use std::path::PathBuf;

use hwbp::target::{
    Access, Location, Mode, TargetError, TargetSpec,
    condition::{Arguments, Condition, IntType, Operands},
};
use proptest::prelude::*;

/// Every way the grammar spells each mode.
const MODES: &[(&str, Mode)] = &[
    ("x", Mode::Execute),
    ("--x", Mode::Execute),
    ("w", Mode::Write),
    ("-w-", Mode::Write),
    ("rw", Mode::ReadWrite),
    ("wr", Mode::ReadWrite),
    ("rw-", Mode::ReadWrite),
    ("r", Mode::Read),
    ("r--", Mode::Read),
];

/// A symbol name as C, Rust (demangled paths excluded: they hold `::`) and
/// assemblers write them. At least 4 characters: a trailing `:x`, `:w`, `:rw`
/// after a BINARY is a mode by definition (see `binary_and_mode_like_symbol`).
fn symbol() -> impl Strategy<Value = String> {
    // Never a leading digit: `0x…` is an address, not a symbol.
    "[A-Za-z_.$][A-Za-z0-9_.$]{3,40}"
}

/// A binary path: no `:` (the separator) and not ending in `/DIGITS`-like
/// ambiguity with a length is impossible since a SYMBOL follows it.
fn binary() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_./-]{1,30}"
}

/// An offset written in decimal, 0x hex or 0X hex (upper or lower digits).
fn offset() -> impl Strategy<Value = (u64, String)> {
    (any::<u64>(), 0..4u8).prop_map(|(n, style)| {
        let text = match style {
            0 => n.to_string(),
            1 => format!("0x{n:x}"),
            2 => format!("0x{n:X}"),
            _ => format!("0X{n:x}"),
        };
        (n, text)
    })
}

fn mode() -> impl Strategy<Value = (&'static str, Mode)> {
    prop::sample::select(MODES)
}

fn len() -> impl Strategy<Value = u8> {
    prop::sample::select(&[1u8, 2, 4, 8][..])
}

/// Whitespace the command line might leave around a target (trimmed).
fn padding() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

proptest! {
    /// Whatever the input, parsing returns Ok or Err: it never panics, and
    /// an accepted target keeps its text (trimmed) for output.
    #[test]
    fn never_panics(input in any::<String>()) {
        if let Ok(spec) = input.parse::<TargetSpec>() {
            text_kept(&spec, &input)?;
        }
    }

    /// The same with inputs made of the grammar's own characters, which
    /// reach deeper than random Unicode.
    #[test]
    fn never_panics_on_grammar_characters(input in "[a-z0-9xXrw_:+/. \\-]{0,24}") {
        if let Ok(spec) = input.parse::<TargetSpec>() {
            text_kept(&spec, &input)?;
            if let Location::Symbol { name, .. } = &spec.location {
                prop_assert!(!name.is_empty());
            }
            if let Some(len) = spec.len {
                prop_assert!([1, 2, 4, 8].contains(&len));
            }
        }
    }

    /// BINARY:SYMBOL+OFFSET:MODE/LEN, with each part optional and the two
    /// suffixes in either order, parses back to the same fields.
    #[test]
    fn symbol_round_trip(
        binary in prop::option::of(binary()),
        name in symbol(),
        offset in prop::option::of(offset()),
        mode in prop::option::of(mode()),
        len in prop::option::of(len()),
        len_first in any::<bool>(),
        pad in (padding(), padding()),
    ) {
        let mut text = String::new();
        if let Some(binary) = &binary {
            text.push_str(binary);
            text.push(':');
        }
        text.push_str(&name);
        if let Some((_, off)) = &offset {
            text.push('+');
            text.push_str(off);
        }
        let mode_text = mode.map(|(m, _)| format!(":{m}")).unwrap_or_default();
        let len_text = len.map(|l| format!("/{l}")).unwrap_or_default();
        if len_first {
            text.push_str(&len_text);
            text.push_str(&mode_text);
        } else {
            text.push_str(&mode_text);
            text.push_str(&len_text);
        }
        let input = format!("{}{text}{}", pad.0, pad.1);
        let spec = input.parse::<TargetSpec>().map_err(|e| TestCaseError::fail(format!("{input:?}: {e}")))?;
        let TargetSpec { text: parsed_text, binary: parsed_binary, location, mode: parsed_mode, len: parsed_len, condition, .. } = spec;
        prop_assert_eq!(condition, None);
        prop_assert_eq!(parsed_text, text);
        prop_assert_eq!(parsed_binary, binary.map(PathBuf::from));
        prop_assert_eq!(location, Location::Symbol { name, offset: offset.map_or(0, |(n, _)| n) });
        prop_assert_eq!(parsed_mode, mode.map(|(_, m)| m));
        prop_assert_eq!(parsed_len, len);
    }

    /// 0xADDRESS:MODE/LEN parses back to the same address.
    #[test]
    fn address_round_trip(addr in any::<u64>(), upper in any::<bool>(), mode in prop::option::of(mode()), len in prop::option::of(len())) {
        let mut text = if upper { format!("0x{addr:X}") } else { format!("0x{addr:x}") };
        if let Some((m, _)) = mode {
            text.push(':');
            text.push_str(m);
        }
        if let Some(l) = len {
            text.push_str(&format!("/{l}"));
        }
        let spec = text.parse::<TargetSpec>().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(spec.location, Location::Address(addr));
        prop_assert_eq!(spec.binary, None);
        prop_assert_eq!(spec.mode, mode.map(|(_, m)| m));
        prop_assert_eq!(spec.len, len);
    }

    /// A length other than 1, 2, 4 or 8 is refused as a length, whatever
    /// digits it has (leading zeros included).
    #[test]
    fn bad_lengths_are_refused(name in symbol(), len in "[035679]|[0-9]{2,6}") {
        let text = format!("{name}/{len}");
        prop_assert_eq!(text.parse::<TargetSpec>(), Err(TargetError::Len(len)));
    }

    /// A one-letter mode that is not x, w or r (upper case included) is
    /// refused as a mode (not taken for a binary name). Generated, not
    /// filtered: long runs would hit proptest's limit on rejected cases.
    #[test]
    fn bad_mode_letters_are_refused(name in symbol(), letter in "[a-qs-vyzA-Z]") {
        let text = format!("{name}:{letter}");
        prop_assert_eq!(text.parse::<TargetSpec>(), Err(TargetError::Mode(letter)));
    }

    /// SYMBOL(.MEMBER|[INDEX])* with the usual prefix and suffixes: the
    /// accesses come back in order, the name stays the whole text, and the
    /// base is the symbol (C names and `::` paths).
    #[test]
    fn field_round_trip(
        binary in prop::option::of(binary()),
        base in "[A-Za-z_][A-Za-z0-9_]{0,12}(::[A-Za-z_][A-Za-z0-9_]{0,8}){0,2}",
        accesses in prop::collection::vec(prop_oneof![
            "[A-Za-z_][A-Za-z0-9_]{0,12}".prop_map(Access::Member),
            any::<u32>().prop_map(|i| Access::Index(u64::from(i))),
        ], 1..5),
        hex in any::<bool>(),
        mode in prop::option::of(mode()),
        len in prop::option::of(len()),
    ) {
        let mut expr = base.clone();
        for access in &accesses {
            match access {
                Access::Index(i) if hex => expr.push_str(&format!("[{i:#x}]")),
                other => expr.push_str(&other.to_string()),
            }
        }
        let mut text = binary.as_ref().map(|b| format!("{b}:")).unwrap_or_default();
        text.push_str(&expr);
        if let Some((m, _)) = mode {
            text.push_str(&format!(":{m}"));
        }
        if let Some(l) = len {
            text.push_str(&format!("/{l}"));
        }
        let spec = text.parse::<TargetSpec>().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(spec.field_base(), Some(base.as_str()));
        prop_assert_eq!(&spec.fields, &accesses);
        prop_assert_eq!(&spec.location, &Location::Symbol { name: expr, offset: 0 });
        prop_assert_eq!(spec.binary, binary.map(PathBuf::from));
        prop_assert_eq!(spec.mode, mode.map(|(_, m)| m));
        prop_assert_eq!(spec.len, len);
    }

    /// A bracket after a member that is not `[NUMBER]` is refused as a
    /// field expression, never read as a name.
    #[test]
    fn bad_indexes_are_refused(base in "[a-z_]{1,8}", member in "[a-z_]{1,8}", index in "[g-z_]{1,6}") {
        let text = format!("{base}.{member}[{index}]");
        let refused = matches!(text.parse::<TargetSpec>(), Err(TargetError::Field { .. }));
        prop_assert!(refused, "{}", text);
    }

    /// An offset that is not a number is refused as an offset.
    #[test]
    fn bad_offsets_are_refused(name in symbol(), offset in "[g-z_]{1,8}") {
        let text = format!("{name}+{offset}");
        prop_assert_eq!(text.parse::<TargetSpec>(), Err(TargetError::Offset(offset)));
    }
}

/// The text a target keeps: all of it, or what comes before ` if `.
fn text_kept(spec: &TargetSpec, input: &str) -> Result<(), TestCaseError> {
    match &spec.condition {
        None => prop_assert_eq!(&spec.text, input.trim()),
        Some(_) => prop_assert!(input.trim().starts_with(&spec.text), "{input:?}"),
    }
    Ok(())
}

/// An operand of a condition, as written.
fn cond_operand() -> impl Strategy<Value = String> {
    prop::sample::select(
        &[
            "value", "old", "arg0", "arg5", "pid", "tid", "cpu", "delta", "count",
        ][..],
    )
    .prop_map(str::to_owned)
}

/// One comparison: an operand, an operator and a literal or operand, or a
/// comm test, or a bare operand.
fn comparison() -> impl Strategy<Value = String> {
    let op = prop::sample::select(&["==", "!=", "<", "<=", ">", ">=", "&"][..]);
    let literal = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("{n:#x}")),
        cond_operand(),
    ];
    prop_oneof![
        (cond_operand(), op, literal, any::<bool>()).prop_map(|(a, op, b, flip)| {
            if flip {
                format!("{b} {op} {a}")
            } else {
                format!("{a} {op} {b}")
            }
        }),
        "[a-z\\\"]{0,8}".prop_map(|s| {
            let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
            format!("comm != \"{escaped}\"")
        }),
        cond_operand(),
    ]
}

/// A condition of comparisons joined by &&, ||, ! and parentheses.
fn condition() -> impl Strategy<Value = String> {
    comparison().prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} && {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || {b}")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

/// What the compiler is given in the properties: a signed 4-byte value and
/// two named arguments.
fn operands(data: bool) -> Operands {
    let int = IntType {
        bytes: 4,
        signed: true,
        name: "int".into(),
    };
    if data {
        Operands {
            value: Ok(int),
            args: Err("a data watchpoint".into()),
        }
    } else {
        Operands {
            value: Err("an execute breakpoint".into()),
            args: Ok(Arguments {
                function: "f".into(),
                named: vec![
                    ("delta".into(), Ok((0, int))),
                    ("count".into(), Err("xmm0".into())),
                ],
            }),
        }
    }
}

proptest! {
    /// Whatever the text after `if`, parsing and compiling return Ok or
    /// Err, and an error points inside the text (or at its end).
    #[test]
    fn conditions_never_panic(input in "[a-z0-9 ()!&|<>=\"x_-]{0,40}", data in any::<bool>()) {
        match Condition::parse(&input) {
            Ok(cond) => {
                if let Err(e) = cond.compile(&operands(data)) {
                    prop_assert!(e.pos <= e.text.len(), "{e}");
                }
            }
            Err(e) => prop_assert!(e.pos <= e.text.len(), "{e}"),
        }
    }

    /// A generated condition parses; printed, it parses back to the same
    /// condition (the printed form is a fixed point), and compiling either
    /// gives the same program.
    #[test]
    fn conditions_print_and_parse_back(cond in condition(), data in any::<bool>()) {
        let parsed = Condition::parse(&cond).map_err(|e| TestCaseError::fail(format!("{cond:?}: {e}")))?;
        let printed = parsed.to_string();
        let again = Condition::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
        prop_assert_eq!(&again.to_string(), &printed);
        let operands = operands(data);
        prop_assert_eq!(parsed.compile(&operands).ok(), again.compile(&operands).ok());
        // In a target too, after a C++ signature with spaces.
        let target = format!("f(int, char*) if {cond}");
        let spec = target.parse::<TargetSpec>().map_err(|e| TestCaseError::fail(format!("{target:?}: {e}")))?;
        prop_assert_eq!(spec.text, "f(int, char*)");
        prop_assert_eq!(spec.condition.map(|c| c.to_string()), Some(printed));
    }
}

/// What the round trip leaves out on purpose: after a BINARY, a symbol
/// spelt like a mode is read as the mode (`app:x` is `app` executed, not the
/// symbol `x` of `app`). Naming the mode too makes it a symbol again.
#[test]
fn binary_and_mode_like_symbol() {
    let spec: TargetSpec = "app:x".parse().expect("parses");
    assert_eq!(spec.binary, None);
    assert_eq!(spec.mode, Some(Mode::Execute));
    assert_eq!(
        spec.location,
        Location::Symbol {
            name: "app".into(),
            offset: 0
        }
    );
    let spec: TargetSpec = "app:x:w".parse().expect("parses");
    assert_eq!(spec.binary, Some(PathBuf::from("app")));
    assert_eq!(spec.mode, Some(Mode::Write));
    assert_eq!(
        spec.location,
        Location::Symbol {
            name: "x".into(),
            offset: 0
        }
    );
}

//! Property tests (fuzzing) of the target grammar, [`TargetSpec::from_str`].
//!
//! 256 cases per property in the normal test suite; `cargo xtask fuzz` runs
//! the same properties with many more (PROPTEST_CASES). A failure is shrunk
//! to a minimal input and saved under proptest-regressions/ (commit it: it
//! is replayed first from then on).

use std::path::PathBuf;

use hwbp::target::{Access, Location, Mode, TargetError, TargetSpec};
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
            prop_assert_eq!(spec.text, input.trim());
        }
    }

    /// The same with inputs made of the grammar's own characters, which
    /// reach deeper than random Unicode.
    #[test]
    fn never_panics_on_grammar_characters(input in "[a-z0-9xXrw_:+/. \\-]{0,24}") {
        if let Ok(spec) = input.parse::<TargetSpec>() {
            prop_assert_eq!(spec.text, input.trim());
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
        let TargetSpec { text: parsed_text, binary: parsed_binary, location, mode: parsed_mode, len: parsed_len, .. } = spec;
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

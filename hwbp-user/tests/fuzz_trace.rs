//! Property tests (fuzzing) of the JSONL trace reader: one line
//! (`serde_json::from_str::<TraceLine>`) and a whole file (`hwbp-trace
//! report`, which must name the line of a corrupt file and survive a
//! truncated one).
//!
//! 256 cases per property in the normal test suite; `cargo xtask fuzz` runs
//! many more (PROPTEST_CASES). A failure is shrunk and saved under
//! proptest-regressions/ (commit it: it is replayed first from then on).

use std::{fs, path::PathBuf};

use hwbp::{
    output::report::{self, ReportError},
    record::format::{Arg, Header, HitRecord, Summary, TargetInfo, TargetSummary, TraceLine},
};
use proptest::prelude::*;

/// Short strings with the characters that stress JSON: quotes, backslashes,
/// control characters, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(16).collect()),
        1 => "[\"\\\\\u{0}-\u{1f}é→😀]{0,6}",
    ]
}

fn frames() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..4)
}

fn arg() -> impl Strategy<Value = Arg> {
    (
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(name, value, ty, location)| Arg {
            name: name.into(),
            value,
            ty: ty.map(Into::into),
            location: location.map(Into::into),
        })
}

/// Strategies are built from tuples of at most 12: a hit in two halves.
fn hit() -> impl Strategy<Value = HitRecord> {
    let ids = (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        text(),
        text(),
        text(),
        text(),
        text(),
    );
    let rest = (
        text(),
        text(),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(prop::collection::vec(arg(), 0..6)),
        frames(),
        frames(),
    );
    (ids, rest).prop_map(
        |(
            (ts_ns, cpu, pid, tid, comm, target, symbol, addr, mode),
            (
                ip,
                ip_sym,
                value,
                old_value,
                value_type,
                value_text,
                old_value_text,
                args,
                kstack,
                ustack,
            ),
        )| HitRecord {
            ts_ns,
            cpu,
            pid,
            tid,
            comm: comm.into(),
            target: target.into(),
            symbol: symbol.into(),
            addr,
            mode: mode.into(),
            ip,
            ip_sym: ip_sym.into(),
            value,
            old_value,
            value_type,
            value_text,
            old_value_text,
            args,
            kstack: kstack.into_iter().map(Into::into).collect(),
            ustack: ustack.into_iter().map(Into::into).collect(),
        },
    )
}

fn target_info() -> impl Strategy<Value = TargetInfo> {
    (text(), text(), text(), text(), any::<u8>(), text()).prop_map(
        |(target, symbol, addr, mode, len, space)| TargetInfo {
            target,
            symbol,
            addr,
            mode,
            len,
            space,
        },
    )
}

/// Finite floats of any magnitude (JSON has no NaN or infinity).
fn finite() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL
        | prop::num::f64::ZERO
        | prop::num::f64::SUBNORMAL
        | prop::num::f64::NEGATIVE
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u32>(),
        text(),
        text(),
        text(),
        finite(),
        any::<u64>(),
        prop::collection::vec(text(), 0..4),
        prop::collection::vec(target_info(), 0..4),
    )
        .prop_map(
            |(
                format_version,
                tool,
                kernel_release,
                hostname,
                start_unix_s,
                start_monotonic_ns,
                command_line,
                targets,
            )| {
                Header {
                    format_version,
                    tool,
                    kernel_release,
                    hostname,
                    start_unix_s,
                    start_monotonic_ns,
                    command_line,
                    targets,
                }
            },
        )
}

/// Counts a real trace can hold: below 2^53, the integers every JSON
/// reader keeps exact (a CPU would need years to count that far).
fn count() -> impl Strategy<Value = u64> {
    0..=1u64 << 53
}

/// Any u64 at all, as a crafted or corrupted file may hold.
fn hostile_count() -> impl Strategy<Value = u64> {
    any::<u64>()
}

fn target_summary(count: fn() -> BoxedStrategy<u64>) -> impl Strategy<Value = TargetSummary> {
    (
        (text(), text(), text(), text()),
        (count(), count(), count(), count(), count(), count()),
        (count(), count(), count(), count()),
    )
        .prop_map(
            |(
                (target, symbol, addr, mode),
                (hits, dropped, filtered, kstack_errors, ustack_errors, after_limit),
                (rejected, kernel_count, missed, unrecorded),
            )| {
                TargetSummary {
                    target,
                    symbol,
                    addr,
                    mode,
                    hits,
                    dropped,
                    filtered,
                    kstack_errors,
                    ustack_errors,
                    after_limit,
                    rejected,
                    kernel_count,
                    missed,
                    unrecorded,
                    ..Default::default()
                }
            },
        )
}

fn summary(count: fn() -> BoxedStrategy<u64>) -> impl Strategy<Value = Summary> {
    (
        prop::collection::vec(target_summary(count), 0..4),
        count(),
        finite(),
        text(),
        prop::option::of(any::<i32>()),
    )
        .prop_map(
            |(targets, lost, duration_s, end_reason, exit_status)| Summary {
                targets,
                lost,
                duration_s,
                end_reason,
                exit_status,
                ..Default::default()
            },
        )
}

fn realistic() -> BoxedStrategy<u64> {
    count().boxed()
}

fn hostile() -> BoxedStrategy<u64> {
    hostile_count().boxed()
}

/// A line of a trace, counts as a real trace holds them.
fn trace_line() -> impl Strategy<Value = TraceLine> {
    trace_line_with(realistic)
}

fn trace_line_with(count: fn() -> BoxedStrategy<u64>) -> impl Strategy<Value = TraceLine> {
    prop_oneof![
        1 => header().prop_map(TraceLine::Header),
        6 => hit().prop_map(TraceLine::Hit),
        1 => summary(count).prop_map(TraceLine::Summary),
    ]
}

/// One edit of a line: a cut, an insertion, a replacement or a deletion,
/// at a position given as a fraction of the length (so it shrinks well).
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(f64),
    Insert(f64, String),
    Replace(f64, char),
    Delete(f64, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    let noise = "[\\[\\]{}\":,0-9a-z\\\\ -]{1,4}|.{1,3}";
    prop_oneof![
        at.clone().prop_map(Mutation::Truncate),
        (at.clone(), noise).prop_map(|(f, s)| Mutation::Insert(f, s)),
        (at.clone(), any::<char>()).prop_map(|(f, c)| Mutation::Replace(f, c)),
        (at, 1..8usize).prop_map(|(f, n)| Mutation::Delete(f, n)),
    ]
}

/// The char boundary nearest below `fraction` of the line.
fn boundary(line: &str, fraction: f64) -> usize {
    let mut i = ((line.len() as f64) * fraction) as usize;
    i = i.min(line.len());
    while !line.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(line: &str, mutations: &[Mutation]) -> String {
    let mut line = line.to_owned();
    for m in mutations {
        match m {
            Mutation::Truncate(f) => line.truncate(boundary(&line, *f)),
            Mutation::Insert(f, s) => line.insert_str(boundary(&line, *f), s),
            Mutation::Replace(f, c) => {
                let i = boundary(&line, *f);
                if let Some(old) = line[i..].chars().next() {
                    line.replace_range(i..i + old.len_utf8(), c.encode_utf8(&mut [0; 4]));
                }
            }
            Mutation::Delete(f, n) => {
                let i = boundary(&line, *f);
                let end = line[i..]
                    .char_indices()
                    .nth(*n)
                    .map_or(line.len(), |(j, _)| i + j);
                line.replace_range(i..end, "");
            }
        }
    }
    // Newlines would make two lines of one: that is a different file.
    line.replace(['\n', '\r'], " ")
}

/// The header line a trace starts with.
fn header_line() -> String {
    let header = TraceLine::Header(Header {
        format_version: hwbp::record::format::FORMAT_VERSION,
        tool: "hwbp-trace".into(),
        kernel_release: "6.1".into(),
        hostname: "fuzz".into(),
        start_unix_s: 0.0,
        start_monotonic_ns: 0,
        command_line: Vec::new(),
        targets: Vec::new(),
    });
    serde_json::to_string(&header).unwrap_or_else(|e| panic!("a header serializes: {e}"))
}

/// A file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> Self {
        Self::with_bytes(contents.as_bytes())
    }

    fn with_bytes(contents: &[u8]) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "hwbp-fuzz-{}-{}.jsonl",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

proptest! {
    /// Any text at all: parsing a line never panics.
    #[test]
    fn any_line_never_panics(line in any::<String>()) {
        let _ = serde_json::from_str::<TraceLine>(&line);
    }

    /// JSON-looking noise: parsing never panics.
    #[test]
    fn json_noise_never_panics(line in "[\\[\\]{}\":,0-9a-z_. -]{0,80}") {
        let _ = serde_json::from_str::<TraceLine>(&line);
    }

    /// Every line hwbp writes reads back as itself.
    #[test]
    fn lines_round_trip(line in trace_line()) {
        let text = serde_json::to_string(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!text.contains('\n'), "one record, one line: {}", text);
        let back: TraceLine = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(back, line);
    }

    /// Valid lines with a few bytes cut, inserted, replaced or deleted:
    /// parsing never panics.
    #[test]
    fn mutated_lines_never_panic(line in trace_line(), mutations in prop::collection::vec(mutation(), 1..4)) {
        let text = serde_json::to_string(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let _ = serde_json::from_str::<TraceLine>(&mutate(&text, &mutations));
    }
}

/// A whole file costs some forty lines' worth: the normal suite's cases,
/// but a tenth of a long run's (`cargo xtask fuzz`), at least 256.
fn file_config() -> ProptestConfig {
    let default = ProptestConfig::default();
    let cases = if default.cases <= 256 {
        default.cases
    } else {
        (default.cases / 10).max(256)
    };
    ProptestConfig { cases, ..default }
}

proptest! {
    #![proptest_config(file_config())]

    /// A whole trace with one mutated line: `report` either reads it, or
    /// names exactly that line as corrupt; a cut last line is a warning.
    /// Never a panic, whatever the records hold (times out of order, huge
    /// counts, odd strings).
    #[test]
    fn report_names_the_corrupt_line(
        lines in prop::collection::vec(trace_line(), 1..12),
        victim in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..3),
        final_newline in any::<bool>(),
    ) {
        check_report(lines, victim, mutations, final_newline)?;
    }

    /// The same with counts anywhere in u64, as a crafted file may hold.
    #[test]
    fn report_survives_hostile_counts(
        lines in prop::collection::vec(trace_line_with(hostile), 1..12),
        victim in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..3),
        final_newline in any::<bool>(),
    ) {
        check_report(lines, victim, mutations, final_newline)?;
    }
}

proptest! {
    #![proptest_config(file_config())]

    /// A trace whose last line is cut at any byte, inside a multi-byte
    /// character too (a killed tracer stops anywhere): the lines before it
    /// are reported, the cut line is a warning.
    #[test]
    fn report_survives_a_cut_at_any_byte(
        lines in prop::collection::vec(trace_line(), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut texts = Vec::with_capacity(lines.len());
        for line in &lines {
            texts.push(serde_json::to_string(line).map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
        let last = texts.pop().unwrap_or_default();
        let cut = cut.index(last.len() + 1);
        // The header every trace starts with, then the lines.
        texts.insert(0, header_line());
        let mut contents: Vec<u8> = texts.iter().flat_map(|t| [t.as_bytes(), b"\n"].concat()).collect();
        contents.extend_from_slice(&last.as_bytes()[..cut]);
        let file = TempFile::with_bytes(&contents);
        let hits_before = lines[..lines.len() - 1].iter().filter(|l| matches!(l, TraceLine::Hit(_))).count() as u64;
        let (_, outcome) = report::report_string(&file.0, &[])
            .map_err(|e| TestCaseError::fail(format!("a cut last line is not an error: {e}")))?;
        if cut == last.len() {
            let last_is_hit = matches!(lines.last(), Some(TraceLine::Hit(_)));
            prop_assert_eq!(outcome.hits, hits_before + u64::from(last_is_hit));
            prop_assert!(!outcome.warnings.iter().any(|w| w.contains("cut short")), "{:?}", outcome.warnings);
        } else if last.as_bytes()[..cut].trim_ascii().is_empty() {
            prop_assert_eq!(outcome.hits, hits_before);
            prop_assert!(!outcome.warnings.iter().any(|w| w.contains("cut short")), "{:?}", outcome.warnings);
        } else {
            prop_assert_eq!(outcome.hits, hits_before);
            prop_assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
            prop_assert!(outcome.warnings[0].contains(&format!(":{}: the last line is cut short", lines.len() + 1)), "{:?}", outcome.warnings);
        }
    }
}

/// A hit whose strings are full of multi-byte characters (2, 3 and 4 bytes
/// in UTF-8), cut after every one of its bytes as the last line of a trace:
/// always the hits before it plus a warning, never an error (a cut inside
/// a character is not UTF-8, which a String reader refuses).
#[test]
fn report_cut_at_every_byte_of_a_multibyte_line() {
    let hit = |comm: &str| {
        TraceLine::Hit(HitRecord {
            comm: comm.into(),
            target: "cible→é".into(),
            ip_sym: "fonction_é+0x1 (src/😀.rs:3)".into(),
            ustack: vec!["fonction_é+0x1 (src/😀.rs:3)".into(), "main→😀+0x2".into()].into(),
            ..Default::default()
        })
    };
    let first = serde_json::to_string(&hit("é→😀")).expect("serialize");
    let last = serde_json::to_string(&hit("😀é→")).expect("serialize");
    assert!(
        last.len() > last.chars().count() + 20,
        "many multi-byte characters"
    );
    let mut inside_a_char = 0;
    for cut in 1..last.len() {
        if !last.is_char_boundary(cut) {
            inside_a_char += 1;
        }
        let mut contents = format!("{}\n{first}\n", header_line()).into_bytes();
        contents.extend_from_slice(&last.as_bytes()[..cut]);
        let file = TempFile::with_bytes(&contents);
        let (_, outcome) = report::report_string(&file.0, &[])
            .unwrap_or_else(|e| panic!("cut after byte {cut}: {e}"));
        assert_eq!(outcome.hits, 1, "cut after byte {cut}");
        assert_eq!(
            outcome.warnings.len(),
            1,
            "cut after byte {cut}: {:?}",
            outcome.warnings
        );
        assert!(
            outcome.warnings[0].contains(":3: the last line is cut short"),
            "cut after byte {cut}: {:?}",
            outcome.warnings
        );
    }
    assert!(
        inside_a_char >= 20,
        "{inside_a_char} cuts inside a character"
    );
    // Not cut: both hits.
    let file = TempFile::new(&format!("{}\n{first}\n{last}", header_line()));
    let (_, outcome) = report::report_string(&file.0, &[]).expect("whole");
    assert_eq!(outcome.hits, 2);
    assert!(
        outcome.warnings.len() == 1
            && outcome.warnings[0].ends_with("no summary line: the trace may be incomplete"),
        "{:?}",
        outcome.warnings
    );
}

/// Writes `lines` as a trace with line `victim` mutated, and checks what
/// `report` makes of it.
fn check_report(
    lines: Vec<TraceLine>,
    victim: prop::sample::Index,
    mutations: Vec<Mutation>,
    final_newline: bool,
) -> Result<(), TestCaseError> {
    // The header every trace starts with (which may be the victim), then
    // the lines.
    let mut texts = vec![header_line()];
    for line in &lines {
        texts.push(serde_json::to_string(line).map_err(|e| TestCaseError::fail(e.to_string()))?);
    }
    let lines = texts.len();
    let victim = victim.index(lines);
    texts[victim] = mutate(&texts[victim], &mutations);
    // Whether a header survived the mutation: without one, `report` has
    // nothing to report and says so.
    let has_header = texts.iter().any(|t| {
        matches!(
            serde_json::from_str::<TraceLine>(t.trim()),
            Ok(TraceLine::Header(_))
        )
    });
    let mut contents = texts.join("\n");
    if final_newline {
        contents.push('\n');
    }
    let file = TempFile::new(&contents);
    let last = victim == lines - 1 && !final_newline;
    match report::report_string(&file.0, &[]) {
        Ok((_, outcome)) => {
            prop_assert!(has_header, "a report without a header line");
            // `report` trims each line of any Unicode whitespace (a vertical
            // tab too, which JSON itself does not allow around a value).
            let trimmed = texts[victim].trim();
            let valid = trimmed.is_empty() || serde_json::from_str::<TraceLine>(trimmed).is_ok();
            prop_assert!(
                valid || last,
                "a corrupt line {} was accepted: {:?}",
                victim + 1,
                texts[victim]
            );
            if !valid {
                prop_assert!(
                    outcome.warnings.iter().any(|w| w.contains("cut short")),
                    "a cut last line gives a warning: {:?}",
                    outcome.warnings
                );
            }
        }
        Err(ReportError::Corrupt { line, .. }) => {
            prop_assert_eq!(line, victim as u64 + 1, "the corrupt line is named");
            prop_assert!(!last, "a cut last line is a warning, not an error");
        }
        Err(ReportError::NoHeader { .. } | ReportError::Empty { .. }) => {
            prop_assert!(!has_header, "the header was there");
        }
        Err(e) => return Err(TestCaseError::fail(format!("unexpected error: {e}"))),
    }
    Ok(())
}

//! A hit's JSONL line, written by hand into the trace file's buffer: the
//! bytes serde_json writes for [`TraceLine::Hit`], in the same order and
//! with the same escapes, without serde's machinery per field. The hit
//! line is the one record every hit writes, and serializing it through
//! the derived `Serialize` (the `type` tag flattened in, every key
//! escaped again for every hit) took a quarter of the reader's time in
//! the replay benchmark (BENCHMARKS.md, hand-kept part).
//!
//! The derived `Serialize` stays the definition: the tests here check
//! that both write the same bytes, and every other line (header, change,
//! summary) and every reader still go through serde.
//!
//! [`TraceLine::Hit`]: crate::record::format::TraceLine::Hit

use crate::record::format::{Arg, HitRecord, Stack};

/// Appends `hit` as its JSONL line, without the newline.
pub fn write_hit(out: &mut Vec<u8>, hit: &HitRecord) {
    let HitRecord {
        ts_ns,
        cpu,
        pid,
        tid,
        comm,
        target,
        symbol,
        addr,
        mode,
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
    } = hit;
    out.extend_from_slice(br#"{"type":"hit","ts_ns":"#);
    number(out, *ts_ns);
    out.extend_from_slice(br#","cpu":"#);
    number(out, u64::from(*cpu));
    out.extend_from_slice(br#","pid":"#);
    number(out, u64::from(*pid));
    out.extend_from_slice(br#","tid":"#);
    number(out, u64::from(*tid));
    for (key, text) in [
        (&br#","comm":"#[..], &**comm),
        (br#","target":"#, target),
        (br#","symbol":"#, symbol),
        (br#","addr":"#, addr),
        (br#","mode":"#, mode),
        (br#","ip":"#, ip),
        (br#","ip_sym":"#, ip_sym),
    ] {
        out.extend_from_slice(key);
        string(out, text);
    }
    for (key, n) in [
        (&br#","value":"#[..], value),
        (br#","old_value":"#, old_value),
    ] {
        if let Some(n) = n {
            out.extend_from_slice(key);
            number(out, *n);
        }
    }
    for (key, text) in [
        (&br#","value_type":"#[..], value_type),
        (br#","value_text":"#, value_text),
        (br#","old_value_text":"#, old_value_text),
    ] {
        if let Some(text) = text {
            out.extend_from_slice(key);
            string(out, text);
        }
    }
    if let Some(args) = args {
        out.extend_from_slice(br#","args":["#);
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_arg(out, arg);
        }
        out.push(b']');
    }
    out.extend_from_slice(br#","kstack":"#);
    stack(out, kstack);
    out.extend_from_slice(br#","ustack":"#);
    stack(out, ustack);
    out.push(b'}');
}

fn write_arg(out: &mut Vec<u8>, arg: &Arg) {
    let Arg {
        name,
        value,
        ty,
        location,
    } = arg;
    out.extend_from_slice(br#"{"name":"#);
    string(out, name);
    out.extend_from_slice(br#","value":"#);
    match value {
        Some(value) => string(out, value),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(ty) = ty {
        out.extend_from_slice(br#","type":"#);
        string(out, ty);
    }
    if let Some(location) = location {
        out.extend_from_slice(br#","location":"#);
        string(out, location);
    }
    out.push(b'}');
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string: copied as it is when nothing in it needs an escape
/// (almost always), else escaped by serde_json itself.
fn string(out: &mut Vec<u8>, text: &str) {
    if !needs_escape(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Whether `bytes` hold a byte serde_json escapes: a control character,
/// `"` or `\`. Eight bytes at a time (a hit's strings are looked at for
/// every hit): a word has a byte below 0x20 when `(x - 0x20…) & !x &
/// 0x80…` is not zero, and a byte equal to `c` when `x ^ c…` has a zero
/// byte, which the same test with 0x01 finds. Neither misses a byte; a
/// false alarm would only take serde_json's path, which escapes exactly.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS != 0;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            return true;
        };
        let x = u64::from_le_bytes(word);
        if below(x, 0x20)
            || below(x ^ (ONES * u64::from(b'"')), 1)
            || below(x ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// A stack's JSON array, rendered once per shared stack.
fn stack(out: &mut Vec<u8>, stack: &Stack) {
    match stack.json() {
        Some(json) => out.extend_from_slice(json.get().as_bytes()),
        None => {
            // Frames are strings: rendering them cannot fail.
            let _ = serde_json::to_writer(&mut *out, &**stack);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::record::format::TraceLine;

    fn by_serde(hit: &HitRecord) -> String {
        serde_json::to_string(&TraceLine::Hit(hit.clone())).expect("serialize")
    }

    fn by_hand(hit: &HitRecord) -> String {
        let mut out = Vec::new();
        write_hit(&mut out, hit);
        String::from_utf8(out).expect("UTF-8")
    }

    fn arg(name: &str, value: Option<&str>, ty: Option<&str>, location: Option<&str>) -> Arg {
        Arg {
            name: name.into(),
            value: value.map(str::to_owned),
            ty: ty.map(Arc::from),
            location: location.map(Arc::from),
        }
    }

    #[test]
    fn every_field_as_serde_writes_it() {
        let mut hit = HitRecord {
            ts_ns: u64::MAX,
            cpu: 3,
            pid: 100,
            tid: 0,
            comm: "fx_user".into(),
            target: "counter:w".into(),
            symbol: "counter".into(),
            addr: "0x5000".into(),
            mode: "w".into(),
            ip: "0x1234".into(),
            ip_sym: "bump+0x1f (/src/main.rs:4) inlined f (/src/a.rs:9)".into(),
            value: Some(42),
            old_value: Some(0),
            value_type: Some("int".into()),
            value_text: Some("42".into()),
            old_value_text: Some("-1".into()),
            args: None,
            kstack: vec!["vfs_read+0x10".into(), "xfs_read+0x4 [xfs]".into()].into(),
            ustack: vec!["main+0x10".into()].into(),
        };
        assert_eq!(by_hand(&hit), by_serde(&hit));
        hit.value = None;
        hit.value_text = None;
        hit.args = Some(vec![
            arg("file", Some("0xffff1"), Some("struct file *"), None),
            arg("f", None, Some("double"), Some("xmm0")),
            arg("rdi", Some("0x0"), None, None),
        ]);
        assert_eq!(by_hand(&hit), by_serde(&hit));
        hit.args = Some(Vec::new());
        hit.kstack = Stack::default();
        assert_eq!(by_hand(&hit), by_serde(&hit));
        // Escapes: quotes, backslashes, every control character, DEL and
        // non-ASCII (neither escaped).
        let nasty: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\/\u{7f}é→\u{2028}".chars())
            .collect();
        hit.comm = nasty.as_str().into();
        hit.ip_sym = nasty.as_str().into();
        hit.args = Some(vec![arg(&nasty, Some(&nasty), Some(&nasty), Some(&nasty))]);
        hit.ustack = vec![Arc::from(nasty.as_str())].into();
        assert_eq!(by_hand(&hit), by_serde(&hit));
    }

    /// Every byte value, at every place of words and their remainder, is
    /// found when JSON escapes it and only then.
    #[test]
    fn escapes_found_in_words() {
        let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
        for len in [1, 7, 8, 9, 16, 23] {
            for at in 0..len {
                for b in 0..=255u8 {
                    for fill in [b'a', 0xc3, 0x7f, 0xff] {
                        let mut bytes = vec![fill; len];
                        bytes[at] = b;
                        assert_eq!(
                            needs_escape(&bytes),
                            !bytes.iter().all(|&b| plain(b)),
                            "{bytes:x?}"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_as_serde_writes_it(comm in ".*", sym in "\\PC*", value in any::<Option<u64>>(), text in proptest::option::of(".*")) {
            let hit = HitRecord {
                comm: comm.as_str().into(),
                ip_sym: sym.as_str().into(),
                value,
                value_text: text.clone(),
                args: text.map(|t| vec![arg(&t, Some(&comm), None, Some(&sym))]),
                ustack: vec![Arc::from(sym.as_str()), Arc::from(comm.as_str())].into(),
                ..HitRecord::default()
            };
            prop_assert_eq!(by_hand(&hit), by_serde(&hit));
        }
    }
}

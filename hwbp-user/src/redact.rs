//! `--redact-addresses`: traces meant to be shared keep symbols, offsets
//! and small numbers but lose every address (kernel addresses defeat KASLR,
//! user ones ASLR).

use crate::trace::{Header, HitRecord, Summary};

/// What replaces an address.
pub const REDACTED: &str = "0x…";

/// Replaces every `0x` number of 9 or more hex digits (beyond 32 bits: an
/// address, not an offset, a length or a small value) with [`REDACTED`].
pub fn text(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'0' && bytes.get(i + 1).is_some_and(|&b| b == b'x' || b == b'X') {
            let digits = bytes[i + 2..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if digits >= 9 {
                out.push_str(REDACTED);
                i += 2 + digits;
                continue;
            }
        }
        // Copy one whole character.
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn is_address(v: u64) -> bool {
    v > u64::from(u32::MAX)
}

pub fn hit(record: &mut HitRecord) {
    let HitRecord {
        ts_ns: _,
        cpu: _,
        pid: _,
        tid: _,
        comm: _,
        target,
        symbol,
        addr,
        mode: _,
        ip,
        ip_sym,
        value,
        old_value,
        value_type: _,
        value_text,
        old_value_text,
        args,
        kstack,
        ustack,
    } = record;
    for s in [target, symbol, ip_sym] {
        *s = text(s).into();
    }
    for s in [addr, ip] {
        *s = text(s);
    }
    for v in [value, old_value] {
        if v.is_some_and(is_address) {
            *v = None;
        }
    }
    for t in [value_text, old_value_text].into_iter().flatten() {
        *t = text(t);
    }
    for arg in args.iter_mut().flatten() {
        arg.value = text(&arg.value);
    }
    for stack in [kstack, ustack] {
        *stack = stack.iter().map(|frame| text(frame).into()).collect();
    }
}

pub fn header(mut header: Header) -> Header {
    for t in &mut header.targets {
        t.addr = text(&t.addr);
        t.target = text(&t.target);
        t.symbol = text(&t.symbol);
    }
    header.command_line = header.command_line.iter().map(|a| text(a)).collect();
    header
}

pub fn summary(summary: &mut Summary) {
    for t in &mut summary.targets {
        t.addr = text(&t.addr);
        t.target = text(&t.target);
        t.symbol = text(&t.symbol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_go_offsets_stay() {
        assert_eq!(text("vfs_read+0x1f"), "vfs_read+0x1f");
        assert_eq!(text("0xffffffff81234560"), "0x…");
        assert_eq!(
            text("file=0xffff888003a1b200, count=0x20000"),
            "file=0x…, count=0x20000"
        );
        assert_eq!(text("[libc.so.6+0x2724a]"), "[libc.so.6+0x2724a]");
        assert_eq!(text("0x55f6746d15d0 → é"), "0x… → é");
        assert_eq!(text("0x"), "0x");
    }
}

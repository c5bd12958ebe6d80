//! `--redact-addresses`: traces meant to be shared keep symbols, offsets
//! and small numbers but lose every address (kernel addresses defeat KASLR,
//! user ones ASLR).
//!
//! What is an address is not in the number's length alone: a program built
//! without PIE (`gcc -no-pie`) is loaded at 0x400000, its data and heap
//! just above, all in 6 or 7 hex digits, as short as a length or a flag. So
//! the [`Redactor`] knows the lowest address the traced process maps: a
//! number at or above it may point into the process, and goes. Fields that
//! are addresses by definition (a hit's `addr` and `ip`, a target's `addr`)
//! go whatever they hold, and an offset after `+` (`main+0x1f`,
//! `[libc.so.6+0x2724a]`) stays, as it says nothing of where things are.

use std::fs;

use crate::record::format::{AggregateRecord, ChangeRecord, Header, HitRecord, Summary};

/// What replaces an address.
pub const REDACTED: &str = "0x…";

/// Above 32 bits every number is taken for an address: kernel addresses
/// and those of PIE programs and shared libraries all are.
const WIDE: u64 = 1 << 32;

/// Tells addresses from other numbers, and replaces them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redactor {
    /// Numbers at or above this are addresses.
    floor: u64,
}

impl Default for Redactor {
    /// Numbers beyond 32 bits: all a system-wide (kernel) trace needs.
    fn default() -> Self {
        Self { floor: WIDE }
    }
}

impl Redactor {
    /// For a trace of `pid` (`-p`, or the `-- CMD` stopped at its entry,
    /// its executable and libraries mapped): numbers from the lowest address
    /// it maps up are addresses too. Without a process, or when its maps
    /// cannot be read, [`Redactor::default`].
    pub fn for_process(pid: Option<i32>) -> Self {
        let lowest = pid
            .and_then(|pid| fs::read_to_string(format!("/proc/{pid}/maps")).ok())
            .and_then(|maps| lowest_mapping(&maps));
        Self::with_floor(lowest.unwrap_or(WIDE))
    }

    /// Numbers from `floor` up (and every one beyond 32 bits) are addresses.
    pub fn with_floor(floor: u64) -> Self {
        Self {
            floor: floor.clamp(1, WIDE),
        }
    }

    fn is_address(&self, v: u64) -> bool {
        v >= self.floor
    }

    /// `s` with every `0x` number that is an address replaced by
    /// [`REDACTED`]. An offset (after `+`) is kept unless it is wider than
    /// 32 bits, which no offset is.
    pub fn text(&self, s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'0' && bytes.get(i + 1).is_some_and(|&b| b == b'x' || b == b'X') {
                let digits = bytes[i + 2..]
                    .iter()
                    .take_while(|b| b.is_ascii_hexdigit())
                    .count();
                let hex = &s[i + 2..i + 2 + digits];
                // Wider than u64: no number of ours, but surely no offset.
                let value = u64::from_str_radix(hex, 16).unwrap_or(u64::MAX);
                let offset = i > 0 && bytes[i - 1] == b'+';
                let address = digits >= 9 || (!offset && digits > 0 && self.is_address(value));
                if address {
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

    pub fn hit(&self, record: &mut HitRecord) {
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
            *s = self.text(s).into();
        }
        for s in [addr, ip] {
            address(s);
        }
        for v in [value, old_value] {
            if v.is_some_and(|v| self.is_address(v)) {
                *v = None;
            }
        }
        for t in [value_text, old_value_text].into_iter().flatten() {
            *t = self.text(t);
        }
        for value in args
            .iter_mut()
            .flatten()
            .filter_map(|arg| arg.value.as_mut())
        {
            *value = self.text(value);
        }
        for stack in [kstack, ustack] {
            *stack = stack.iter().map(|frame| self.text(frame).into()).collect();
        }
    }

    pub fn aggregate(&self, record: &mut AggregateRecord) {
        let AggregateRecord {
            target,
            ip_sym,
            pid: _,
            comm: _,
            count: _,
            cpus: _,
            caller,
            stack_stored: _,
            kstack,
            ustack,
        } = record;
        for s in [target, ip_sym, caller] {
            *s = self.text(s).into();
        }
        for stack in [kstack, ustack] {
            *stack = stack.iter().map(|frame| self.text(frame).into()).collect();
        }
    }

    pub fn header(&self, mut header: Header) -> Header {
        for t in &mut header.targets {
            address(&mut t.addr);
            t.target = self.text(&t.target);
            t.symbol = self.text(&t.symbol);
        }
        header.command_line = header.command_line.iter().map(|a| self.text(a)).collect();
        header
    }

    pub fn summary(&self, summary: &mut Summary) {
        for t in &mut summary.targets {
            address(&mut t.addr);
            t.target = self.text(&t.target);
            t.symbol = self.text(&t.symbol);
            for w in &mut t.watches {
                address(&mut w.addr);
                w.target = self.text(&w.target);
                w.symbol = self.text(&w.symbol);
            }
        }
    }

    /// A change while tracing: what was and is watched, as in the header.
    pub fn change(&self, change: &mut ChangeRecord) {
        for t in [&mut change.from, &mut change.to].into_iter().flatten() {
            address(&mut t.addr);
            t.target = self.text(&t.target);
            t.symbol = self.text(&t.symbol);
        }
    }
}

/// A field that holds an address and nothing else.
fn address(s: &mut String) {
    if !s.is_empty() {
        *s = REDACTED.to_owned();
    }
}

/// The start of the lowest mapping in a /proc/PID/maps.
fn lowest_mapping(maps: &str) -> Option<u64> {
    maps.lines()
        .filter_map(|line| u64::from_str_radix(line.split('-').next()?, 16).ok())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_go_offsets_stay() {
        let r = Redactor::default();
        assert_eq!(r.text("vfs_read+0x1f"), "vfs_read+0x1f");
        assert_eq!(r.text("0xffffffff81234560"), "0x…");
        assert_eq!(
            r.text("file=0xffff888003a1b200, count=0x20000"),
            "file=0x…, count=0x20000"
        );
        assert_eq!(r.text("[libc.so.6+0x2724a]"), "[libc.so.6+0x2724a]");
        assert_eq!(r.text("0x55f6746d15d0 → é"), "0x… → é");
        assert_eq!(r.text("0x"), "0x");
        // Small numbers stay when nothing is mapped that low.
        assert_eq!(r.text("0x401126"), "0x401126");
    }

    /// A program without PIE lives at 0x400000: its addresses are short.
    #[test]
    fn short_addresses_of_a_non_pie_program_go() {
        let r = Redactor::with_floor(0x400000);
        assert_eq!(r.text("0x401126"), "0x…");
        assert_eq!(
            r.text("p=0x4052a0, n=0x20, len=0x3fffff"),
            "p=0x…, n=0x20, len=0x3fffff"
        );
        assert_eq!(r.text("main+0x401126"), "main+0x401126");
        assert_eq!(r.text("[prog+0x1126]"), "[prog+0x1126]");
        assert_eq!(r.text("0x7ffc1d2e3000 0xffffffffffffffffff"), "0x… 0x…");
        let mut hit = HitRecord {
            addr: "0x404028".into(),
            ip: "0x401126".into(),
            ip_sym: "0x401126".into(),
            value: Some(0x404028),
            old_value: Some(7),
            ustack: vec!["f+0x6".into(), "0x401200".into()].into(),
            ..Default::default()
        };
        r.hit(&mut hit);
        assert_eq!((&*hit.addr, &*hit.ip, &*hit.ip_sym), ("0x…", "0x…", "0x…"));
        assert_eq!((hit.value, hit.old_value), (None, Some(7)));
        assert_eq!(&hit.ustack[..], ["f+0x6".into(), "0x…".into()]);
    }

    /// A change record's addresses go, in what was and what is watched.
    #[test]
    fn change_addresses_go() {
        let info = |addr: &str| crate::record::format::TargetInfo {
            target: "t:w".into(),
            symbol: "t".into(),
            addr: addr.into(),
            mode: "w".into(),
            len: 8,
            space: "user".into(),
        };
        let mut change = ChangeRecord {
            action: "move".into(),
            from: Some(info("0x55aa00001000")),
            to: Some(info("0x55aa00002000")),
            ..Default::default()
        };
        Redactor::default().change(&mut change);
        assert_eq!(change.from.map(|t| t.addr).as_deref(), Some("0x…"));
        assert_eq!(change.to.map(|t| t.addr).as_deref(), Some("0x…"));
    }

    /// Fields that are addresses go whatever they hold, even below the floor.
    #[test]
    fn address_fields_always_go() {
        let mut summary = Summary {
            targets: vec![crate::record::format::TargetSummary {
                addr: "0x1000".into(),
                target: "0x1000:w".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        Redactor::default().summary(&mut summary);
        assert_eq!(summary.targets[0].addr, "0x…");
        // The target as written is text: a small number there is no address.
        assert_eq!(summary.targets[0].target, "0x1000:w");
    }

    #[test]
    fn the_lowest_mapping_is_the_floor() {
        let maps = "\
00400000-00401000 r--p 00000000 08:01 123 /tmp/prog
00401000-00402000 r-xp 00001000 08:01 123 /tmp/prog
7ffc1d2c4000-7ffc1d2e5000 rw-p 00000000 00:00 0 [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
";
        assert_eq!(lowest_mapping(maps), Some(0x400000));
        assert_eq!(lowest_mapping(""), None);
        // This process is mapped somewhere: its floor is at most 32 bits.
        let own = Redactor::for_process(Some(std::process::id() as i32));
        assert!(own.floor <= WIDE && own.floor > 0, "{own:?}");
        assert_eq!(Redactor::for_process(None), Redactor::default());
    }
}

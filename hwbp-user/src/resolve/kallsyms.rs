//! Kernel symbols from /proc/kallsyms (modules included).
//!
//! kallsyms gives no sizes: a symbol's size is taken as the distance to the
//! next symbol, an upper bound that is exact for tightly packed variables
//! and functions. CONFIG_KALLSYMS_ALL kernels also list variables.

use std::{fs, io};

use super::SymbolKind;

/// One kernel symbol, borrowed from [`Kallsyms`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSymbol<'a> {
    pub addr: u64,
    pub name: &'a str,
    /// The type letter from kallsyms (`T`, `t`, `D`, `b`, …).
    pub letter: char,
    pub kind: SymbolKind,
    /// Distance to the next symbol (0 for the last one).
    pub size: u64,
    pub module: Option<&'a str>,
}

/// One line of kallsyms, packed: the names stay in the text as read
/// (120k symbols take about 24 bytes each beside the text, instead of
/// several small allocations).
#[derive(Clone, Copy, Debug)]
struct Entry {
    addr: u64,
    /// Byte offset of the name in `text`.
    name: u32,
    name_len: u16,
    letter: u8,
    /// 0: the kernel itself; else an index + 1 into `modules`.
    module: u16,
    /// Distance to the next symbol, capped (0 for the last one).
    size: u32,
}

/// Every kernel symbol, sorted by address, with a name index.
#[derive(Debug, Default)]
pub struct Kallsyms {
    text: String,
    /// Sorted by address. There is no name index: a run looks up a few
    /// names, and a scan is far cheaper than sorting 120k of them.
    entries: Vec<Entry>,
    modules: Vec<Box<str>>,
}

/// Past this distance from the nearest symbol an address is shown raw.
const MAX_SYMBOL_SPAN: u64 = 16 << 20;

impl Kallsyms {
    pub fn load() -> io::Result<Self> {
        fs::read_to_string("/proc/kallsyms").map(Self::parse)
    }

    pub fn parse(text: impl Into<String>) -> Self {
        let text = text.into();
        let mut modules: Vec<Box<str>> = Vec::new();
        let mut entries: Vec<Entry> = Vec::with_capacity(text.len() / 40);
        let mut offset = 0usize;
        for line in text.split_inclusive('\n') {
            let line_start = offset;
            offset += line.len();
            if let Some(entry) = parse_line(line, line_start, &mut modules) {
                entries.push(entry);
            }
        }
        // Stable: symbols sharing an address keep their kallsyms order.
        entries.sort_by_key(|e| e.addr);
        // Size: distance to the next symbol at a higher address.
        let mut next_addr = 0u64;
        for e in entries.iter_mut().rev() {
            if next_addr > e.addr {
                e.size = u32::try_from(next_addr - e.addr).unwrap_or(u32::MAX);
            }
            if next_addr == 0 || e.addr < next_addr {
                next_addr = e.addr;
            }
        }
        Self {
            text,
            entries,
            modules,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name(&self, e: &Entry) -> &str {
        &self.text[e.name as usize..e.name as usize + usize::from(e.name_len)]
    }

    fn symbol(&self, e: &Entry) -> KernelSymbol<'_> {
        KernelSymbol {
            addr: e.addr,
            name: self.name(e),
            letter: char::from(e.letter),
            kind: kind_of(char::from(e.letter)),
            size: u64::from(e.size),
            module: e
                .module
                .checked_sub(1)
                .map(|i| &*self.modules[usize::from(i)]),
        }
    }

    /// kallsyms shows every address as 0 to readers without CAP_SYSLOG
    /// (kernel.kptr_restrict).
    pub fn is_restricted(&self) -> bool {
        !self.entries.is_empty() && self.entries.iter().all(|e| e.addr == 0)
    }

    /// Every symbol with this name, one per distinct address.
    pub fn lookup(&self, name: &str) -> Vec<KernelSymbol<'_>> {
        let mut found: Vec<KernelSymbol<'_>> = self
            .entries
            .iter()
            .filter(|e| usize::from(e.name_len) == name.len() && self.name(e) == name)
            .map(|e| self.symbol(e))
            .collect();
        found.dedup_by_key(|s| s.addr);
        found
    }

    /// The symbol containing `addr`, and the offset into it.
    pub fn symbolize(&self, addr: u64) -> Option<(KernelSymbol<'_>, u64)> {
        let i = self
            .entries
            .partition_point(|e| e.addr <= addr)
            .checked_sub(1)?;
        // Prefer a function among symbols sharing the address.
        let start = self.entries[i].addr;
        let entry = self.entries[..=i]
            .iter()
            .rev()
            .take_while(|e| e.addr == start)
            .find(|e| kind_of(char::from(e.letter)) == SymbolKind::Function)
            .unwrap_or(&self.entries[i]);
        let sym = self.symbol(entry);
        let offset = addr - sym.addr;
        let span = if sym.size == 0 {
            MAX_SYMBOL_SPAN
        } else {
            sym.size
        };
        (offset < span.min(MAX_SYMBOL_SPAN)).then_some((sym, offset))
    }

    /// Names close to `name`, best first (for "did you mean").
    pub fn suggest(&self, name: &str, max: usize) -> Vec<String> {
        let mut names: Vec<&str> = self.entries.iter().map(|e| self.name(e)).collect();
        names.sort_unstable();
        names.dedup();
        super::suggest(names.into_iter(), name, max)
    }

    /// Every symbol, by address.
    pub fn symbols(&self) -> impl Iterator<Item = KernelSymbol<'_>> {
        self.entries.iter().map(|e| self.symbol(e))
    }
}

/// `ADDRESS LETTER NAME[\t[MODULE]]`; None for anything else.
fn parse_line(line: &str, line_start: usize, modules: &mut Vec<Box<str>>) -> Option<Entry> {
    let line = line.trim_end_matches(['\n', '\r']);
    let (addr, rest) = line.split_once(' ')?;
    let addr = u64::from_str_radix(addr, 16).ok()?;
    let (letter, rest) = rest.split_once(' ')?;
    let &[letter] = letter.as_bytes() else {
        return None;
    };
    let (name, module) = match rest.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((name, module)) => (name, Some(module.trim())),
        None => (rest, None),
    };
    if name.is_empty() {
        return None;
    }
    let name_offset = line_start + (name.as_ptr() as usize - line.as_ptr() as usize);
    let module = match module
        .map(|m| m.trim_start_matches('[').trim_end_matches(']'))
        .filter(|m| !m.is_empty())
    {
        None => 0,
        Some(m) => {
            // Module symbols come grouped: the last one is almost always it.
            let i = match modules.iter().rposition(|known| &**known == m) {
                Some(i) => i,
                None => {
                    modules.push(m.into());
                    modules.len() - 1
                }
            };
            u16::try_from(i + 1).ok()?
        }
    };
    Some(Entry {
        addr,
        name: u32::try_from(name_offset).ok()?,
        name_len: u16::try_from(name.len()).ok()?,
        letter,
        module,
        size: 0,
    })
}

fn kind_of(letter: char) -> SymbolKind {
    match letter {
        't' | 'T' | 'w' | 'W' => SymbolKind::Function,
        'd' | 'D' | 'b' | 'B' | 'r' | 'R' | 'g' | 'G' | 's' | 'S' | 'v' | 'V' => SymbolKind::Object,
        _ => SymbolKind::Unknown,
    }
}

/// Whether an address is in the kernel half of the x86-64 address space.
pub fn is_kernel_address(addr: u64) -> bool {
    addr >= 0xffff_8000_0000_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _stext
ffffffff81234560 T vfs_read
ffffffff81234700 t helper
ffffffff81234700 t helper_alias
ffffffff81234800 T vfs_write
ffffffff82a00000 D pid_max
ffffffff82a00004 D pid_max_min
ffffffff82a00008 d dup
ffffffff82a00010 d dup
ffffffffc0001000 t dup\t[mymod]
ffffffffc0001040 T mod_fn\t[mymod]
";

    #[test]
    fn parses_kinds_sizes_modules() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(k.len(), 11);
        let vfs_read = k.lookup("vfs_read");
        assert_eq!(vfs_read.len(), 1);
        assert_eq!(vfs_read[0].addr, 0xffffffff81234560);
        assert_eq!(vfs_read[0].size, 0x1a0);
        assert_eq!(vfs_read[0].kind, SymbolKind::Function);
        let pid_max = k.lookup("pid_max")[0];
        assert_eq!((pid_max.kind, pid_max.size), (SymbolKind::Object, 4));
        let dups = k.lookup("dup");
        assert_eq!(dups.len(), 3);
        assert_eq!(dups[2].module, Some("mymod"));
        assert!(k.lookup("nope").is_empty());
    }

    #[test]
    fn symbolizes_addresses() {
        let k = Kallsyms::parse(SAMPLE);
        let (s, off) = k.symbolize(0xffffffff81234570).expect("symbol");
        assert_eq!((s.name, off), ("vfs_read", 0x10));
        let (s, off) = k.symbolize(0xffffffffc0001044).expect("symbol");
        assert_eq!((s.name, off, s.module), ("mod_fn", 4, Some("mymod")));
        assert!(k.symbolize(0x1000).is_none());
    }

    #[test]
    fn restricted_kallsyms_is_detected() {
        let k = Kallsyms::parse("0000000000000000 T a\n0000000000000000 T b\n");
        assert!(k.is_restricted());
    }
}

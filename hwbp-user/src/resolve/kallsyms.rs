//! Kernel symbols from /proc/kallsyms (modules included).
//!
//! kallsyms gives no sizes: a symbol's size is taken as the distance to the
//! next symbol, an upper bound that is exact for tightly packed variables
//! and functions. CONFIG_KALLSYMS_ALL kernels also list variables.

use std::{collections::HashMap, fs, io};

use super::SymbolKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSymbol {
    pub addr: u64,
    pub name: String,
    /// The type letter from kallsyms (`T`, `t`, `D`, `b`, …).
    pub letter: char,
    pub kind: SymbolKind,
    /// Distance to the next symbol (0 for the last one).
    pub size: u64,
    pub module: Option<String>,
}

/// Every kernel symbol, sorted by address, with a name index.
#[derive(Debug, Default)]
pub struct Kallsyms {
    symbols: Vec<KernelSymbol>,
    by_name: HashMap<String, Vec<usize>>,
}

/// Past this distance from the nearest symbol an address is shown raw.
const MAX_SYMBOL_SPAN: u64 = 16 << 20;

impl Kallsyms {
    pub fn load() -> io::Result<Self> {
        fs::read_to_string("/proc/kallsyms").map(|text| Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut symbols: Vec<KernelSymbol> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_ascii_whitespace();
                let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
                let letter = fields.next()?.chars().next()?;
                let name = fields.next()?.to_owned();
                let module = fields
                    .next()
                    .map(|m| m.trim_start_matches('[').trim_end_matches(']').to_owned());
                Some(KernelSymbol {
                    addr,
                    name,
                    letter,
                    kind: kind_of(letter),
                    size: 0,
                    module,
                })
            })
            .collect();
        symbols.sort_by_key(|s| s.addr);
        // Size: distance to the next symbol at a higher address.
        let mut next_addr = 0u64;
        for sym in symbols.iter_mut().rev() {
            if next_addr > sym.addr {
                sym.size = next_addr - sym.addr;
            }
            if next_addr == 0 || sym.addr < next_addr {
                next_addr = sym.addr;
            }
        }
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::with_capacity(symbols.len());
        for (i, sym) in symbols.iter().enumerate() {
            by_name.entry(sym.name.clone()).or_default().push(i);
        }
        Self { symbols, by_name }
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// kallsyms shows every address as 0 to readers without CAP_SYSLOG
    /// (kernel.kptr_restrict).
    pub fn is_restricted(&self) -> bool {
        !self.symbols.is_empty() && self.symbols.iter().all(|s| s.addr == 0)
    }

    /// Every symbol with this name, one per distinct address.
    pub fn lookup(&self, name: &str) -> Vec<&KernelSymbol> {
        let mut found: Vec<&KernelSymbol> = self
            .by_name
            .get(name)
            .map(|idx| idx.iter().map(|&i| &self.symbols[i]).collect())
            .unwrap_or_default();
        found.dedup_by_key(|s| s.addr);
        found
    }

    /// The symbol containing `addr`, and the offset into it.
    pub fn symbolize(&self, addr: u64) -> Option<(&KernelSymbol, u64)> {
        let i = self
            .symbols
            .partition_point(|s| s.addr <= addr)
            .checked_sub(1)?;
        // Prefer a function among symbols sharing the address.
        let start = self.symbols[i].addr;
        let sym = self.symbols[..=i]
            .iter()
            .rev()
            .take_while(|s| s.addr == start)
            .find(|s| s.kind == SymbolKind::Function)
            .unwrap_or(&self.symbols[i]);
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
        super::suggest(self.by_name.keys().map(String::as_str), name, max)
    }

    pub fn symbols(&self) -> &[KernelSymbol] {
        &self.symbols
    }
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
        assert_eq!(dups[2].module.as_deref(), Some("mymod"));
        assert!(k.lookup("nope").is_empty());
    }

    #[test]
    fn symbolizes_addresses() {
        let k = Kallsyms::parse(SAMPLE);
        let (s, off) = k.symbolize(0xffffffff81234570).expect("symbol");
        assert_eq!((s.name.as_str(), off), ("vfs_read", 0x10));
        let (s, off) = k.symbolize(0xffffffffc0001044).expect("symbol");
        assert_eq!(
            (s.name.as_str(), off, s.module.as_deref()),
            ("mod_fn", 4, Some("mymod"))
        );
        assert!(k.symbolize(0x1000).is_none());
    }

    #[test]
    fn restricted_kallsyms_is_detected() {
        let k = Kallsyms::parse("0000000000000000 T a\n0000000000000000 T b\n");
        assert!(k.is_restricted());
    }
}

//! Kernel symbols from /proc/kallsyms (modules included).
//!
//! kallsyms gives no sizes: a symbol's size is taken as the distance to the
//! next symbol, an upper bound that is exact for tightly packed variables
//! and functions. CONFIG_KALLSYMS_ALL kernels also list variables.
//!
//! It also decides which symbols are per-CPU variables, whose listed
//! address is no CPU's copy of them: the kernel's lie in
//! `[__per_cpu_start, __per_cpu_end)` as kallsyms lists those markers
//! (from 0 where x86-64 links the section at 0, as Debian's 6.1 and 6.12
//! do, listing its symbols as `A`; inside the kernel image where a kernel
//! links it there), and a module's are its `a`/`A` symbols: the kernel
//! lists a module's per-CPU symbols with that letter, at the module's
//! per-CPU offset, and no other absolute module symbol
//! (kernel/module/kallsyms.c).

use std::{
    fs::File,
    io::{self, Read as _},
};

use super::{ResolveError, SymbolKind};

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
    /// A per-CPU variable: every CPU has its own copy, at
    /// `__per_cpu_offset[cpu] + addr`, and `addr` itself is none of them.
    pub per_cpu: bool,
}

impl KernelSymbol<'_> {
    /// A per-CPU variable cannot be armed where kallsyms lists it: that
    /// address is no CPU's copy (see the module's doc).
    pub fn refuse_per_cpu(&self) -> Result<(), ResolveError> {
        if !self.per_cpu {
            return Ok(());
        }
        Err(ResolveError::PerCpu {
            name: self.name.to_owned(),
            owner: self
                .module
                .map_or_else(|| "the kernel".to_owned(), |m| format!("module `{m}`")),
            addr: self.addr,
        })
    }
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
    /// The kernel's per-CPU section, `[__per_cpu_start, __per_cpu_end)`,
    /// when kallsyms lists both markers (CONFIG_KALLSYMS_ALL, SMP).
    per_cpu: Option<(u64, u64)>,
}

/// Past this distance from the nearest symbol an address is shown raw.
const MAX_SYMBOL_SPAN: u64 = 16 << 20;

impl Kallsyms {
    /// Reads and indexes /proc/kallsyms. The kernel writes it a page per
    /// read, formatting every line as it goes (about 50 ms for 120k lines
    /// here, most of a kernel target's start-up), so each piece is parsed
    /// as it arrives, while it is still in the cache, into a buffer sized
    /// for the whole text.
    pub fn load() -> io::Result<Self> {
        let mut file = File::open("/proc/kallsyms")?;
        let mut text = Vec::with_capacity(LOAD_CAPACITY);
        let mut builder = Builder::with_capacity(LOAD_CAPACITY);
        while (&mut file).take(LOAD_CHUNK).read_to_end(&mut text)? > 0 {
            builder.parse_lines(&text, false);
        }
        builder.parse_lines(&text, true);
        let text =
            String::from_utf8(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(builder.finish(text))
    }

    pub fn parse(text: impl Into<String>) -> Self {
        let text = text.into();
        let mut builder = Builder::with_capacity(text.len());
        builder.parse_lines(text.as_bytes(), true);
        builder.finish(text)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name(&self, e: &Entry) -> &str {
        entry_name(&self.text, e)
    }

    fn symbol(&self, e: &Entry) -> KernelSymbol<'_> {
        let letter = char::from(e.letter);
        let per_cpu = if e.module == 0 {
            self.per_cpu
                .is_some_and(|(start, end)| (start..end).contains(&e.addr))
        } else {
            matches!(letter, 'a' | 'A')
        };
        KernelSymbol {
            addr: e.addr,
            name: self.name(e),
            letter,
            // Listed as `A` while the section was linked at 0.
            kind: if per_cpu {
                SymbolKind::Object
            } else {
                kind_of(letter)
            },
            size: u64::from(e.size),
            per_cpu,
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

/// What /proc/kallsyms takes on a distribution kernel (5.4 MB for 122k
/// lines on 6.18), rounded up: the buffer is rarely grown and copied.
const LOAD_CAPACITY: usize = 8 << 20;
/// Bytes read before the lines read so far are parsed.
const LOAD_CHUNK: u64 = 64 << 10;

/// A [`Kallsyms`] being parsed, line by line, as its text comes in.
struct Builder {
    /// Where the first line not parsed yet starts in the text.
    parsed: usize,
    entries: Vec<Entry>,
    modules: Vec<Box<str>>,
}

impl Builder {
    /// For a text of about `bytes` bytes.
    fn with_capacity(bytes: usize) -> Self {
        Self {
            parsed: 0,
            entries: Vec::with_capacity(bytes / 40),
            modules: Vec::new(),
        }
    }

    /// Parses the complete lines of `text` not parsed yet; with `last`,
    /// also a last line without its newline. `text` only grows between
    /// calls.
    fn parse_lines(&mut self, text: &[u8], last: bool) {
        let mut start = self.parsed;
        for newline in memchr::memchr_iter(b'\n', &text[start..]) {
            let end = self.parsed + newline;
            if let Some(entry) = parse_line(&text[start..end], start, &mut self.modules) {
                self.entries.push(entry);
            }
            start = end + 1;
        }
        if last && start < text.len() {
            if let Some(entry) = parse_line(&text[start..], start, &mut self.modules) {
                self.entries.push(entry);
            }
            start = text.len();
        }
        self.parsed = start;
    }

    /// The table, over the whole `text` parsed.
    fn finish(self, text: String) -> Kallsyms {
        let Self {
            mut entries,
            modules,
            ..
        } = self;
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
        let marker = |name: &str| {
            entries
                .iter()
                .find(|e| e.module == 0 && entry_name(&text, e) == name)
                .map(|e| e.addr)
        };
        let per_cpu = marker("__per_cpu_start")
            .zip(marker("__per_cpu_end"))
            .filter(|(start, end)| start < end);
        Kallsyms {
            text,
            entries,
            modules,
            per_cpu,
        }
    }
}

/// An entry's name in the text it was parsed from.
fn entry_name<'t>(text: &'t str, e: &Entry) -> &'t str {
    text.get(e.name as usize..e.name as usize + usize::from(e.name_len))
        .unwrap_or_default()
}

/// `ADDRESS LETTER NAME[\t[MODULE]]`, without its newline, starting at
/// `line_start` of the text; None for anything else.
fn parse_line(line: &[u8], line_start: usize, modules: &mut Vec<Box<str>>) -> Option<Entry> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // 16 digits on 64-bit kernels: the scan only for anything else.
    let space = if line.get(16) == Some(&b' ') {
        16
    } else {
        memchr::memchr(b' ', line)?
    };
    let addr = parse_hex(&line[..space])?;
    let (&letter, rest) = line[space + 1..].split_first()?;
    let name_start = space + 3;
    if !letter.is_ascii_graphic() || rest.first() != Some(&b' ') {
        return None;
    }
    let rest = &line[name_start..];
    // A module's name follows a tab.
    let name_len = memchr::memchr2(b'\t', b' ', rest).unwrap_or(rest.len());
    if name_len == 0 {
        return None;
    }
    let module = rest[name_len..].trim_ascii();
    let module = module.strip_prefix(b"[").unwrap_or(module);
    let module = module.strip_suffix(b"]").unwrap_or(module);
    let module = if module.is_empty() {
        0
    } else {
        // Module symbols come grouped: the last one is almost always it.
        let i = match modules.iter().rposition(|known| known.as_bytes() == module) {
            Some(i) => i,
            None => {
                modules.push(std::str::from_utf8(module).ok()?.into());
                modules.len() - 1
            }
        };
        u16::try_from(i + 1).ok()?
    };
    Some(Entry {
        addr,
        name: u32::try_from(line_start + name_start).ok()?,
        name_len: u16::try_from(name_len).ok()?,
        letter,
        module,
        size: 0,
    })
}

/// A kallsyms address: 1 to 16 hex digits.
fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some(value << 4 | u64::from(digit))
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

    /// `load` parses the text as it is read: any cut between two reads
    /// must give the table `parse` gives for the whole text.
    #[test]
    fn parsing_piece_by_piece_is_parsing_the_whole() {
        // Also: a short address, a CRLF line, junk, no final newline.
        let text = format!("{SAMPLE}c0001000 T short\r\nnot a line\nffffffff82a00020 B last");
        let whole = Kallsyms::parse(text.clone());
        let table = |k: &Kallsyms| k.symbols().map(|s| format!("{s:?}")).collect::<Vec<_>>();
        assert_eq!(whole.len(), 13);
        assert_eq!(whole.lookup("short")[0].addr, 0xc0001000);
        assert_eq!(whole.lookup("last")[0].kind, SymbolKind::Object);
        for piece in 1..=text.len() {
            let mut builder = Builder::with_capacity(text.len());
            let mut read = 0;
            while read < text.len() {
                read = (read + piece).min(text.len());
                builder.parse_lines(&text.as_bytes()[..read], false);
            }
            builder.parse_lines(text.as_bytes(), true);
            let pieces = builder.finish(text.clone());
            assert_eq!(table(&pieces), table(&whole), "pieces of {piece} bytes");
        }
    }

    /// Debian's 6.12 as its /proc/kallsyms lists it (x86-64, the per-CPU
    /// section linked at 0, its symbols shown as `A`), with a module's
    /// per-CPU variable (`a`, at the module's per-CPU offset).
    const PER_CPU_AT_0: &str = "\
0000000000000000 A fixed_percpu_data
0000000000000000 A __per_cpu_start
0000000000001000 A cpu_debug_store
0000000000036040 A runqueues
0000000000037340 A softnet_data
0000000000039000 A __per_cpu_end
ffffffff9c400000 T _text
ffffffff9c500000 T vfs_read
ffffffff9d9e9e20 D __per_cpu_offset
ffffffff9e702000 D __per_cpu_load
ffffffffc0001000 t mod_fn\t[mymod]
000000000003a040 a mod_counter\t[mymod]
ffffffffc0003000 d mod_data\t[mymod]
";

    fn per_cpu_names(k: &Kallsyms) -> Vec<&str> {
        k.symbols().filter(|s| s.per_cpu).map(|s| s.name).collect()
    }

    #[test]
    fn per_cpu_variables_are_told_apart() {
        let k = Kallsyms::parse(PER_CPU_AT_0);
        assert_eq!(
            per_cpu_names(&k),
            [
                "fixed_percpu_data",
                "__per_cpu_start",
                "cpu_debug_store",
                "runqueues",
                "softnet_data",
                "mod_counter"
            ]
        );
        let runqueues = k.lookup("runqueues")[0];
        assert_eq!(
            (runqueues.kind, runqueues.size),
            (SymbolKind::Object, 0x1300)
        );
        let err = runqueues.refuse_per_cpu().expect_err("per-CPU");
        assert!(
            matches!(&err, ResolveError::PerCpu { addr: 0x36040, owner, .. } if owner == "the kernel")
        );
        let module = k.lookup("mod_counter")[0];
        assert!(matches!(
            module.refuse_per_cpu(),
            Err(ResolveError::PerCpu { owner, .. }) if owner == "module `mymod`"
        ));
        for name in [
            "vfs_read",
            "__per_cpu_offset",
            "__per_cpu_load",
            "mod_data",
            "mod_fn",
        ] {
            assert_eq!(k.lookup(name)[0].refuse_per_cpu(), Ok(()), "{name}");
        }
        // A kernel that links the section inside its image lists its
        // symbols as plain data there.
        let k = Kallsyms::parse(
            "ffffffff81000000 T _text\n\
             ffffffff83a00000 D __per_cpu_start\n\
             ffffffff83a1c000 D cpu_number\n\
             ffffffff83a39000 D __per_cpu_end\n\
             ffffffff83a39000 D after_it\n",
        );
        assert_eq!(per_cpu_names(&k), ["__per_cpu_start", "cpu_number"]);
        // Without the markers (no CONFIG_KALLSYMS_ALL, or restricted), no
        // kernel symbol is taken for one.
        let k = Kallsyms::parse("0000000000000000 T a\n0000000000000000 T b\n");
        assert!(per_cpu_names(&k).is_empty());
    }

    #[test]
    fn restricted_kallsyms_is_detected() {
        let k = Kallsyms::parse("0000000000000000 T a\n0000000000000000 T b\n");
        assert!(k.is_restricted());
    }
}

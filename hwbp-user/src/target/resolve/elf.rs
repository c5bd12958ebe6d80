//! ELF symbols and segments (the `object` crate), and the one translation
//! between an ELF file's link-time addresses and a process's runtime
//! addresses (the load bias), used both to arm symbols and to name
//! addresses, so that the two directions cannot disagree.
//!
//! A stripped file's names come from its debug file or MiniDebugInfo
//! ([`super::debugfile`]), added by [`ElfImage::load`] after the file's own
//! tables; the addresses and segments are always the file's own.

use std::{fs, path::Path};

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _, SymbolKind as ObjKind};

use super::{
    ResolveError, SymbolKind,
    debugfile::{self, Found},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfSymbol {
    /// The name as in the symbol table (mangled), without any `@VERSION`.
    pub name: String,
    /// Demangled for display, with a C++ function's parameter list and
    /// without its return type (`acc::ns::bump(int)`, `twice<int>(int)`);
    /// Rust paths without their hash; equal to `name` for C symbols.
    pub display: String,
    /// Demangled without the parameter list (`acc::ns::bump`, `twice<int>`):
    /// the name that matches every overload, as in gdb and bpftrace.
    pub short: String,
    /// The symbol version (`GLIBC_2.3.2`), from .gnu.version for .dynsym or
    /// from a `name@@VERSION` entry of .symtab.
    pub version: Option<SymbolVersion>,
    /// Link-time virtual address; for a thread-local variable, its offset
    /// in the TLS block instead (see `thread_local`).
    pub addr: u64,
    pub size: u64,
    pub kind: SymbolKind,
    /// A `__thread` / `thread_local` variable: one copy per thread, none of
    /// them at `addr`.
    pub thread_local: bool,
    /// Which table the name came from.
    pub origin: Origin,
}

/// Where a symbol's name came from, in the order they are looked in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Symtab,
    Dynsym,
    /// The debug file or MiniDebugInfo of [`ElfImage::debug`].
    Debug,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolVersion {
    pub name: String,
    /// The default version (`@@`): what a program linked today binds to.
    /// An old one (`@`, hidden) is kept for programs linked long ago.
    pub default: bool,
}

impl ElfSymbol {
    fn new(
        raw: &str,
        addr: u64,
        size: u64,
        kind: SymbolKind,
        thread_local: bool,
        origin: Origin,
    ) -> Self {
        // .symtab spells versions in the name: `realpath@@GLIBC_2.3`,
        // `realpath@GLIBC_2.2.5`.
        let (name, version) = match raw.split_once('@') {
            Some((name, version)) => (
                name,
                Some(match version.strip_prefix('@') {
                    Some(v) => SymbolVersion {
                        name: v.to_owned(),
                        default: true,
                    },
                    None => SymbolVersion {
                        name: version.to_owned(),
                        default: false,
                    },
                }),
            ),
            None => (raw, None),
        };
        let (display, short) = demangle(name);
        Self {
            name: name.to_owned(),
            display,
            short,
            version,
            addr,
            size,
            kind,
            thread_local,
            origin,
        }
    }

    /// Whether `query` (a [`NameQuery`]'s name) names this symbol: the
    /// mangled name, the demangled one with or without parameters; spaces
    /// do not count (`f(int,char)` is `f(int, char)`).
    fn is_named(&self, query: &str) -> bool {
        if self.name == query || self.display == query || self.short == query {
            return true;
        }
        if !query.contains(['(', '<', ' ', ',']) {
            return false;
        }
        let squeezed = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let query = squeezed(query);
        squeezed(&self.display) == query || squeezed(&self.short) == query
    }

    /// The name with its version, as `list` and messages print it.
    pub fn versioned_display(&self) -> String {
        match &self.version {
            Some(v) => format!(
                "{}{}{}",
                self.display,
                if v.default { "@@" } else { "@" },
                v.name
            ),
            None => self.display.clone(),
        }
    }
}

/// A demangled name with and without its parameters: C++ (Itanium ABI,
/// `_Z…`) by cpp_demangle, Rust (legacy `_ZN…17h…E` and v0 `_R…`) by
/// rustc-demangle, anything else as is.
fn demangle(name: &str) -> (String, String) {
    if let Ok(rust) = rustc_demangle::try_demangle(name) {
        let display = format!("{rust:#}");
        return (display.clone(), display);
    }
    if name.starts_with("_Z")
        && let Ok(cpp) = cpp_demangle::Symbol::new(name)
    {
        let options = cpp_demangle::DemangleOptions::new().no_return_type();
        if let Ok(display) = cpp.demangle_with_options(&options) {
            let short = cpp
                .demangle_with_options(&options.no_params())
                .unwrap_or_else(|_| display.clone());
            return (display, short);
        }
    }
    (name.to_owned(), name.to_owned())
}

/// A symbol name as the user wrote it: `name`, `name@VERSION` (that
/// version) or `name@@VERSION` (that version, and it must be the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NameQuery<'a> {
    name: &'a str,
    version: Option<&'a str>,
    default: bool,
}

impl<'a> NameQuery<'a> {
    fn parse(text: &'a str) -> Self {
        match text.split_once('@') {
            Some((name, version)) => match version.strip_prefix('@') {
                Some(version) => Self {
                    name,
                    version: Some(version),
                    default: true,
                },
                None => Self {
                    name,
                    version: Some(version),
                    default: false,
                },
            },
            None => Self {
                name: text,
                version: None,
                default: false,
            },
        }
    }

    fn matches(&self, sym: &ElfSymbol) -> bool {
        if !sym.is_named(self.name) {
            return false;
        }
        match (self.version, &sym.version) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have.name && (!self.default || have.default),
            (Some(_), None) => false,
        }
    }
}

/// x86-64's page size: the granule in which the kernel and ld.so map
/// segments (`ELF_PAGESTART`).
const PAGE: u64 = 4096;

fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
}

/// The symbols of one ELF file, sorted by address.
#[derive(Debug)]
pub struct ElfImage {
    symbols: Vec<ElfSymbol>,
    segments: Vec<Segment>,
    /// Where the names of [`Origin::Debug`] came from.
    debug: Option<Found>,
    /// The file has no .symtab.
    stripped: bool,
}

impl ElfImage {
    /// The file's symbols and, when it has no .symtab (stripped), those of
    /// its debug file or MiniDebugInfo under [`debugfile::debug_root`].
    pub fn load(path: &Path) -> Result<Self, ResolveError> {
        Self::load_with_debug_root(path, &debugfile::debug_root())
    }

    pub fn load_with_debug_root(path: &Path, root: &Path) -> Result<Self, ResolveError> {
        let error = |reason: String| ResolveError::Elf {
            path: path.to_owned(),
            reason,
        };
        let data = fs::read(path).map_err(|source| error(source.to_string()))?;
        let file =
            object::File::parse(&*data).map_err(|e| error(format!("not an ELF file ({e})")))?;
        let mut image = Self::from_file(&file, &data);
        if image.stripped
            && let Some(debug) = debugfile::find(path, &file, root)
        {
            match object::File::parse(&*debug.data) {
                Ok(names) => image.add_debug_symbols(&names, debug.found),
                Err(e) => log::debug!("ignoring {} of {}: {e}", debug.found, path.display()),
            }
        }
        Ok(image)
    }

    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let file = object::File::parse(data).map_err(|e| format!("not an ELF file ({e})"))?;
        Ok(Self::from_file(&file, data))
    }

    fn from_file(file: &object::File<'_>, data: &[u8]) -> Self {
        let versions = dynamic_versions(data);
        let mut symbols: Vec<ElfSymbol> = symbols_of(file.symbols(), Origin::Symtab, &[])
            .chain(symbols_of(
                file.dynamic_symbols(),
                Origin::Dynsym,
                &versions,
            ))
            .collect();
        sort_symbols(&mut symbols);
        let segments = file
            .segments()
            .map(|seg| {
                let (offset, filesz) = seg.file_range();
                Segment {
                    vaddr: seg.address(),
                    memsz: seg.size(),
                    offset,
                    filesz,
                }
            })
            .collect();
        Self {
            symbols,
            segments,
            debug: None,
            stripped: file.section_by_name(".symtab").is_none(),
        }
    }

    /// Adds the .symtab of a stripped file's debug file (or MiniDebugInfo)
    /// `names`, found as `found`.
    fn add_debug_symbols(&mut self, names: &object::File<'_>, found: Found) {
        self.symbols
            .extend(symbols_of(names.symbols(), Origin::Debug, &[]));
        sort_symbols(&mut self.symbols);
        self.debug = Some(found);
    }

    /// Where the names of [`Origin::Debug`] came from, if any were added.
    pub fn debug(&self) -> Option<&Found> {
        self.debug.as_ref()
    }

    /// For an unknown symbol: why this file may lack it, when it is
    /// stripped and its debug file was not found, or only its
    /// MiniDebugInfo (functions only) was.
    pub fn stripped_note(&self, path: &Path) -> Option<String> {
        if !self.stripped {
            return None;
        }
        match &self.debug {
            Some(Found::MiniDebugInfo) => Some(format!(
                "{} is stripped and named only by its MiniDebugInfo, which holds functions, not \
                 variables: install its debug file (docs/usage.md, \"Stripped programs\")",
                path.display()
            )),
            Some(_) => None,
            None => Some(format!(
                "{} is stripped and no debug file of it was found (by build ID under {}, or by \
                 .gnu_debuglink): install its debug file, e.g. the -dbgsym package \
                 (docs/usage.md, \"Stripped programs\")",
                path.display(),
                debugfile::debug_root().display()
            )),
        }
    }

    /// Where `sym`'s name came from, for messages: `the .symtab of PATH`,
    /// `/usr/lib/debug/.build-id/ab/cdef.debug (build ID)`.
    pub fn origin_text(&self, sym: &ElfSymbol, path: &Path) -> String {
        match (sym.origin, &self.debug) {
            (Origin::Symtab, _) => format!("the .symtab of {}", path.display()),
            (Origin::Dynsym, _) => format!("the .dynsym of {}", path.display()),
            (Origin::Debug, Some(Found::MiniDebugInfo)) => {
                format!("the MiniDebugInfo (.gnu_debugdata) of {}", path.display())
            }
            (Origin::Debug, Some(found)) => found.to_string(),
            (Origin::Debug, None) => format!("a debug file of {}", path.display()),
        }
    }
}

/// The named definitions among `symbols`, from the table `origin`, with
/// the versions of .dynsym (`versions`, by symbol index; empty for the
/// others, whose versioned names spell their version).
fn symbols_of<'data, 'file>(
    symbols: impl Iterator<Item = object::Symbol<'data, 'file>> + 'file,
    origin: Origin,
    versions: &'file [Option<SymbolVersion>],
) -> impl Iterator<Item = ElfSymbol> + 'file
where
    'data: 'file,
{
    symbols.filter_map(move |s| {
        // object's is_definition() leaves out STT_TLS; a TLS symbol's
        // value is an offset in the TLS block, often 0.
        let thread_local = s.kind() == ObjKind::Tls;
        let defined = if thread_local {
            !s.is_undefined()
        } else {
            s.is_definition() && s.address() != 0
        };
        if !defined {
            return None;
        }
        let raw = s.name().ok().filter(|n| !n.is_empty())?;
        let kind = match s.kind() {
            ObjKind::Text => SymbolKind::Function,
            ObjKind::Data | ObjKind::Tls => SymbolKind::Object,
            _ => SymbolKind::Unknown,
        };
        let mut sym = ElfSymbol::new(raw, s.address(), s.size(), kind, thread_local, origin);
        if let Some(Some(version)) = versions.get(s.index().0) {
            sym.version = Some(version.clone());
        }
        Some(sym)
    })
}

/// By address, larger first, then by name; a name at an address once,
/// from the first table in [`Origin`]'s order that has it.
fn sort_symbols(symbols: &mut Vec<ElfSymbol>) {
    symbols.sort_by(|a, b| {
        a.addr
            .cmp(&b.addr)
            .then(b.size.cmp(&a.size))
            .then(a.name.cmp(&b.name))
            .then(a.origin.cmp(&b.origin))
    });
    // The same symbol in .symtab and .dynsym: keep one, with the version
    // when either table gives it.
    symbols.dedup_by(|later, kept| {
        let same = later.addr == kept.addr && later.name == kept.name;
        if same && kept.version.is_none() {
            kept.version = later.version.take();
        }
        same
    });
}

impl ElfImage {
    /// Symbols named `query`, one per address: by mangled or demangled name
    /// (a C++ name without parameters matches every overload), optionally
    /// with `@VERSION` or `@@VERSION`. Without a version, a name that has a
    /// default version (`@@`) means that one, as the linker would bind it
    /// today, not the old versions kept for old programs.
    pub fn lookup(&self, query: &str) -> Vec<&ElfSymbol> {
        let query = NameQuery::parse(query);
        let mut found: Vec<&ElfSymbol> = self.symbols.iter().filter(|s| query.matches(s)).collect();
        if query.version.is_none()
            && found
                .iter()
                .any(|s| s.version.as_ref().is_some_and(|v| v.default))
        {
            found.retain(|s| s.version.as_ref().is_none_or(|v| v.default));
        }
        // The first table in [`Origin`]'s order that has the name.
        if let Some(first) = found.iter().map(|s| s.origin).min() {
            found.retain(|s| s.origin == first);
        }
        found.dedup_by_key(|s| s.addr);
        found
    }

    /// The symbol containing a link-time address, and the offset into it.
    pub fn symbolize(&self, vaddr: u64) -> Option<(&ElfSymbol, u64)> {
        let end = self.symbols.partition_point(|s| s.addr <= vaddr);
        // Sized symbols first: the innermost that contains the address.
        self.symbols[..end]
            .iter()
            .rev()
            .take(64)
            .find(|s| {
                s.kind == SymbolKind::Function && vaddr < s.addr.saturating_add(s.size.max(1))
            })
            .or_else(|| {
                // A thread-local variable's value is an offset in the TLS
                // block, not an address: it names nothing here.
                self.symbols[..end]
                    .iter()
                    .rev()
                    .take(64)
                    .find(|s| !s.thread_local && vaddr < s.addr.saturating_add(s.size.max(1)))
            })
            .map(|s| (s, vaddr - s.addr))
    }

    /// The load bias of this file in a process: what to add to a link-time
    /// address to get the runtime one, given the process's mappings of this
    /// file (`maps`, any order).
    ///
    /// All PT_LOAD segments of an ELF object are mapped at one bias: the
    /// kernel (`load_elf_binary`, fs/binfmt_elf.c) and ld.so
    /// (`_dl_map_segments`) map the first PT_LOAD at `bias +
    /// page_down(p_vaddr)` and every later one at the same bias. So the
    /// bias is read off the mapping of the first PT_LOAD, which is the
    /// lowest mapping of the file at that segment's page-aligned file
    /// offset. Matching a later segment by its file offset alone is wrong:
    /// with GNU ld's default layout the RELRO/data segment's first page has
    /// the same file offset as the read-only data before it, and lld starts
    /// every segment in file page 0 (hwbp's issue: variables 0x1000 too low,
    /// functions of lld-linked programs never hit).
    pub fn load_bias(&self, maps: &[&super::Mapping]) -> Option<u64> {
        let first = self.segments.iter().min_by_key(|s| s.vaddr)?;
        let offset = page_down(first.offset);
        let map = maps
            .iter()
            .filter(|m| m.offset == offset)
            .min_by_key(|m| m.start)?;
        Some(map.start.wrapping_sub(page_down(first.vaddr)))
    }

    /// The PT_LOAD segment holding a link-time address.
    fn segment(&self, vaddr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr < s.vaddr.saturating_add(s.memsz.max(s.filesz)))
    }

    /// Runtime address of the link-time address `vaddr` given where the
    /// process mapped this file (see [`Self::load_bias`]); None when no
    /// PT_LOAD segment holds `vaddr` or the file's first segment is not
    /// mapped.
    pub fn runtime_address(&self, maps: &[&super::Mapping], vaddr: u64) -> Option<u64> {
        self.segment(vaddr)?;
        Some(vaddr.wrapping_add(self.load_bias(maps)?))
    }

    /// Link-time address of the runtime address `addr`, the inverse of
    /// [`Self::runtime_address`]; also right for .bss past the file's last
    /// mapped page, which no file offset describes.
    pub fn link_address(&self, maps: &[&super::Mapping], addr: u64) -> Option<u64> {
        let vaddr = addr.wrapping_sub(self.load_bias(maps)?);
        self.segment(vaddr).map(|_| vaddr)
    }

    /// The range of link-time addresses the PT_LOAD segments span, for
    /// messages.
    pub fn link_range(&self) -> Option<(u64, u64)> {
        let start = self.segments.iter().map(|s| s.vaddr).min()?;
        let end = self
            .segments
            .iter()
            .map(|s| s.vaddr.saturating_add(s.memsz.max(s.filesz)))
            .max()?;
        Some((start, end))
    }

    pub fn vaddr_to_file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segment(vaddr)
            .and_then(|s| (vaddr - s.vaddr).checked_add(s.offset))
    }

    pub fn file_offset_to_vaddr(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| {
                s.filesz > 0 && offset >= s.offset && offset < s.offset.saturating_add(s.filesz)
            })
            .and_then(|s| (offset - s.offset).checked_add(s.vaddr))
    }

    pub fn symbols(&self) -> &[ElfSymbol] {
        &self.symbols
    }

    pub fn suggest(&self, name: &str, max: usize) -> Vec<String> {
        super::suggest(self.symbols.iter().map(|s| s.display.as_str()), name, max)
    }
}

/// The version of each .dynsym entry, by symbol index (None when
/// unversioned or when the file has no .gnu.version).
fn dynamic_versions(data: &[u8]) -> Vec<Option<SymbolVersion>> {
    use object::read::elf::ElfFile64;
    let Ok(elf) = ElfFile64::<object::Endianness>::parse(data) else {
        return Vec::new();
    };
    let endian = elf.endian();
    let Ok(Some(table)) = elf.elf_section_table().versions(endian, data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in elf.dynamic_symbols() {
        let index = table.version_index(endian, s.index());
        let Ok(Some(version)) = table.version(index) else {
            continue;
        };
        let i = s.index().0;
        if out.len() <= i {
            out.resize(i + 1, None);
        }
        out[i] = Some(SymbolVersion {
            name: String::from_utf8_lossy(version.name()).into_owned(),
            default: !index.is_hidden(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_test_binary() {
        let exe = std::env::current_exe().expect("current_exe");
        let image = ElfImage::load(&exe).expect("load self");
        // This very function is a symbol of the test binary.
        let main = image.lookup("main");
        assert_eq!(main.len(), 1, "exactly one `main`");
        assert_eq!(main[0].kind, SymbolKind::Function);
        let (sym, off) = image.symbolize(main[0].addr + 1).expect("symbolize");
        assert_eq!((sym.name.as_str(), off), ("main", 1));
        let file_off = image
            .vaddr_to_file_offset(main[0].addr)
            .expect("in a segment");
        assert_eq!(image.file_offset_to_vaddr(file_off), Some(main[0].addr));
    }

    fn named(symbols: &[(&str, u64)]) -> ElfImage {
        ElfImage {
            symbols: symbols
                .iter()
                .map(|&(raw, addr)| {
                    ElfSymbol::new(raw, addr, 8, SymbolKind::Function, false, Origin::Symtab)
                })
                .collect(),
            segments: Vec::new(),
            debug: None,
            stripped: false,
        }
    }

    fn addrs(found: Vec<&ElfSymbol>) -> Vec<u64> {
        found.iter().map(|s| s.addr).collect()
    }

    /// C++ names as gdb and bpftrace take them: with or without the
    /// parameter list (which then matches every overload), templates
    /// without their return type; spaces in a signature do not count.
    #[test]
    fn cxx_names_demangled_with_and_without_parameters() {
        let image = named(&[
            ("_ZN3acc2ns4bumpEi", 0x10),
            ("_ZN3acc2ns4bumpEd", 0x20),
            ("_Z5twiceIiET_S0_", 0x30),
            ("_ZN3app6Widget4pokeEi", 0x40),
            ("_ZN3app6Widget5countE", 0x50),
            ("_ZN7fx_user4main17h0123456789abcdefE", 0x60),
        ]);
        let s = &image.symbols[0];
        assert_eq!(
            (s.display.as_str(), s.short.as_str()),
            ("acc::ns::bump(int)", "acc::ns::bump")
        );
        assert_eq!(addrs(image.lookup("acc::ns::bump")), [0x10, 0x20]);
        assert_eq!(addrs(image.lookup("acc::ns::bump(double)")), [0x20]);
        assert_eq!(addrs(image.lookup("_ZN3acc2ns4bumpEd")), [0x20]);
        assert_eq!(image.symbols[2].display, "twice<int>(int)");
        assert_eq!(addrs(image.lookup("twice<int>")), [0x30]);
        assert_eq!(addrs(image.lookup("twice<int>( int )")), [0x30]);
        assert_eq!(addrs(image.lookup("app::Widget::poke(int)")), [0x40]);
        assert_eq!(addrs(image.lookup("app::Widget::count")), [0x50]);
        assert_eq!(addrs(image.lookup("fx_user::main")), [0x60]);
        assert!(
            image.lookup("bump").is_empty(),
            "a name is whole, not a suffix"
        );
    }

    /// A versioned name means its default version (`@@`), as a program
    /// linked today binds it; `@VERSION` and `@@VERSION` select one.
    #[test]
    fn versioned_names_mean_the_default_version() {
        let image = named(&[
            ("realpath@GLIBC_2.2.5", 0x100),
            ("realpath@@GLIBC_2.3", 0x200),
            ("old_only@GLIBC_2.2.5", 0x300),
        ]);
        assert_eq!(image.symbols[0].name, "realpath");
        assert_eq!(image.symbols[1].versioned_display(), "realpath@@GLIBC_2.3");
        assert_eq!(addrs(image.lookup("realpath")), [0x200]);
        assert_eq!(addrs(image.lookup("realpath@GLIBC_2.2.5")), [0x100]);
        assert_eq!(addrs(image.lookup("realpath@GLIBC_2.3")), [0x200]);
        assert_eq!(addrs(image.lookup("realpath@@GLIBC_2.3")), [0x200]);
        assert!(
            image.lookup("realpath@@GLIBC_2.2.5").is_empty(),
            "not the default"
        );
        assert_eq!(
            addrs(image.lookup("old_only")),
            [0x300],
            "no default: the one there is"
        );
    }

    /// The system's libc: its .dynsym versions come from .gnu.version, and
    /// `realpath` is the default one (gdb and the linker agree).
    #[test]
    fn libc_dynamic_symbols_carry_their_versions() {
        let Some(libc) = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists()) else {
            return;
        };
        let image = ElfImage::load(libc).expect("libc");
        let all: Vec<&ElfSymbol> = image
            .symbols()
            .iter()
            .filter(|s| s.name == "realpath")
            .collect();
        assert!(
            all.len() >= 2,
            "realpath has an old and a default version: {all:?}"
        );
        let found = image.lookup("realpath");
        assert_eq!(found.len(), 1, "{all:?}");
        assert!(
            found[0].version.as_ref().is_some_and(|v| v.default),
            "{found:?}"
        );
    }

    fn image(segments: &[(u64, u64, u64, u64)]) -> ElfImage {
        ElfImage {
            symbols: Vec::new(),
            debug: None,
            stripped: false,
            segments: segments
                .iter()
                .map(|&(offset, vaddr, filesz, memsz)| Segment {
                    vaddr,
                    memsz,
                    offset,
                    filesz,
                })
                .collect(),
        }
    }

    fn maps(text: &str) -> Vec<super::super::Mapping> {
        super::super::maps::parse_maps(text)
    }

    /// gcc 12 + GNU ld 2.40, `gcc -O1 app.c` (PIE, separate code, RELRO):
    /// `readelf -lW` and /proc/PID/maps under `setarch -R`, where gdb
    /// prints `&counter` = 0x55555555801c (nm: 0x401c).
    #[test]
    fn gnu_ld_pie_data_is_not_taken_from_the_rodata_mapping() {
        let elf = image(&[
            (0x0, 0x0, 0x618, 0x618),
            (0x1000, 0x1000, 0x181, 0x181),
            (0x2000, 0x2000, 0xd4, 0xd4),
            (0x2dd0, 0x3dd0, 0x248, 0x250),
        ]);
        let maps = maps(
            "\
555555554000-555555555000 r--p 00000000 fe:01 7 /tmp/app
555555555000-555555556000 r-xp 00001000 fe:01 7 /tmp/app
555555556000-555555557000 r--p 00002000 fe:01 7 /tmp/app
555555557000-555555558000 r--p 00002000 fe:01 7 /tmp/app
555555558000-555555559000 rw-p 00003000 fe:01 7 /tmp/app
",
        );
        let maps: Vec<&_> = maps.iter().collect();
        assert_eq!(elf.load_bias(&maps), Some(0x555555554000));
        assert_eq!(elf.runtime_address(&maps, 0x401c), Some(0x55555555801c));
        assert_eq!(elf.runtime_address(&maps, 0x1139), Some(0x555555555139));
        assert_eq!(elf.link_address(&maps, 0x55555555801c), Some(0x401c));
        assert_eq!(elf.link_address(&maps, 0x555555555139), Some(0x1139));
        // Past every segment: no address, rather than a wrong one.
        assert_eq!(elf.runtime_address(&maps, 0x4020), None);
        assert_eq!(elf.link_address(&maps, 0x555555558020), None);
    }

    /// The same program linked by lld 14: every segment starts in file
    /// page 0, so every mapping has offset 0.
    #[test]
    fn lld_segments_all_at_file_page_zero() {
        let elf = image(&[
            (0x0, 0x0, 0x60c, 0x60c),
            (0x610, 0x1610, 0x180, 0x180),
            (0x790, 0x2790, 0x1d8, 0x1d8),
            (0x968, 0x3968, 0x38, 0x40),
        ]);
        // Listed out of order on purpose: the lowest mapping decides.
        let maps = maps(
            "\
555555557000-555555558000 rw-p 00000000 fe:01 7 /tmp/app
555555555000-555555556000 r-xp 00000000 fe:01 7 /tmp/app
555555554000-555555555000 r--p 00000000 fe:01 7 /tmp/app
555555556000-555555557000 r--p 00000000 fe:01 7 /tmp/app
",
        );
        let maps: Vec<&_> = maps.iter().collect();
        assert_eq!(elf.runtime_address(&maps, 0x1610), Some(0x555555555610));
        assert_eq!(elf.runtime_address(&maps, 0x39a0), Some(0x5555555579a0));
        assert_eq!(elf.link_address(&maps, 0x555555555610), Some(0x1610));
    }

    /// A non-PIE executable (ET_EXEC) runs at its link addresses: bias 0.
    #[test]
    fn non_pie_has_no_bias() {
        let elf = image(&[
            (0x0, 0x400000, 0x4d8, 0x4d8),
            (0x1000, 0x401000, 0x161, 0x161),
            (0x2e10, 0x403e10, 0x218, 0x228),
        ]);
        let maps = maps(
            "\
00400000-00401000 r--p 00000000 fe:01 7 /tmp/app
00401000-00402000 r-xp 00001000 fe:01 7 /tmp/app
00403000-00404000 r--p 00002000 fe:01 7 /tmp/app
00404000-00405000 rw-p 00003000 fe:01 7 /tmp/app
",
        );
        let maps: Vec<&_> = maps.iter().collect();
        assert_eq!(elf.load_bias(&maps), Some(0));
        assert_eq!(elf.runtime_address(&maps, 0x404030), Some(0x404030));
        // The first segment unmapped: no bias can be known.
        assert_eq!(elf.runtime_address(&maps[1..], 0x404030), None);
    }

    #[test]
    fn rejects_non_elf() {
        assert!(ElfImage::parse(b"#!/bin/sh\n").is_err());
    }
}

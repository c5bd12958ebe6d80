//! ELF symbols and segments (the `object` crate).

use std::{fs, path::Path};

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _, SymbolKind as ObjKind};

use super::{ResolveError, SymbolKind};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfSymbol {
    /// The name as in the symbol table (mangled).
    pub name: String,
    /// Demangled for display (equal to `name` for C symbols).
    pub display: String,
    /// Link-time virtual address.
    pub addr: u64,
    pub size: u64,
    pub kind: SymbolKind,
}

const PAGE: u64 = 4096;

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
}

impl ElfImage {
    pub fn load(path: &Path) -> Result<Self, ResolveError> {
        let data = fs::read(path).map_err(|source| ResolveError::Elf {
            path: path.to_owned(),
            reason: source.to_string(),
        })?;
        Self::parse(&data).map_err(|reason| ResolveError::Elf {
            path: path.to_owned(),
            reason,
        })
    }

    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let file = object::File::parse(data).map_err(|e| format!("not an ELF file ({e})"))?;
        let mut symbols: Vec<ElfSymbol> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.is_definition() && s.address() != 0)
            .filter_map(|s| {
                let name = s.name().ok()?.to_owned();
                if name.is_empty() {
                    return None;
                }
                let kind = match s.kind() {
                    ObjKind::Text => SymbolKind::Function,
                    ObjKind::Data | ObjKind::Tls => SymbolKind::Object,
                    _ => SymbolKind::Unknown,
                };
                let display = format!("{:#}", rustc_demangle::demangle(&name));
                Some(ElfSymbol {
                    display,
                    name,
                    addr: s.address(),
                    size: s.size(),
                    kind,
                })
            })
            .collect();
        symbols.sort_by(|a, b| {
            a.addr
                .cmp(&b.addr)
                .then(b.size.cmp(&a.size))
                .then(a.name.cmp(&b.name))
        });
        symbols.dedup_by(|a, b| a.addr == b.addr && a.name == b.name);
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
        Ok(Self { symbols, segments })
    }

    /// Symbols with this name (mangled, or demangled without the hash), one per address.
    pub fn lookup(&self, name: &str) -> Vec<&ElfSymbol> {
        let mut found: Vec<&ElfSymbol> = self
            .symbols
            .iter()
            .filter(|s| s.name == name || s.display == name)
            .collect();
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
                self.symbols[..end]
                    .iter()
                    .rev()
                    .take(64)
                    .find(|s| vaddr < s.addr.saturating_add(s.size.max(1)))
            })
            .map(|s| (s, vaddr - s.addr))
    }

    /// Runtime address of `vaddr` given where the process mapped this file.
    ///
    /// A file page can be mapped twice (the tail of the RELRO segment and the
    /// head of the next RW segment share a page), so a file offset alone is
    /// ambiguous: find the segment holding `vaddr`, then the mapping that
    /// starts at that segment's page-aligned file offset.
    pub fn runtime_address(&self, maps: &[&super::Mapping], vaddr: u64) -> Option<u64> {
        let seg = self
            .segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr < s.vaddr.saturating_add(s.memsz.max(s.filesz)))?;
        let page_offset = seg.offset & !(PAGE - 1);
        let page_vaddr = seg.vaddr & !(PAGE - 1);
        let map = maps.iter().find(|m| m.offset == page_offset)?;
        let runtime = map.start.checked_add(vaddr - page_vaddr)?;
        // The address may lie past this mapping (.bss in anonymous memory
        // right after it): still inside the process's image.
        Some(runtime)
    }

    /// Link-time address of a runtime address inside mapping `map` of this file.
    pub fn link_address(&self, map: &super::Mapping, addr: u64) -> Option<u64> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.filesz > 0 && s.offset & !(PAGE - 1) == map.offset);
        match seg {
            Some(seg) => addr
                .checked_sub(map.start)?
                .checked_add(seg.vaddr & !(PAGE - 1)),
            None => {
                self.file_offset_to_vaddr(addr.checked_sub(map.start)?.checked_add(map.offset)?)
            }
        }
    }

    pub fn vaddr_to_file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr < s.vaddr.saturating_add(s.memsz.max(s.filesz)))
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

    #[test]
    fn rejects_non_elf() {
        assert!(ElfImage::parse(b"#!/bin/sh\n").is_err());
    }
}

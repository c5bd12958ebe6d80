//! From what the user wrote ([`TargetSpec`]) to what the CPU is armed with
//! ([`Breakpoint`]): symbol lookup in the kernel (kallsyms) and in the traced
//! process (its ELF files as mapped, their names from debug files where
//! the files are stripped: [`debugfile`]), defaults, and the architecture's
//! rules.

pub mod advice;
pub mod debugfile;
pub mod elf;
mod error;
mod fields;
pub mod kallsyms;
pub mod maps;

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::target::{Location, Mode, TargetSpec};
pub use elf::{ElfImage, ElfSymbol};
pub use error::ResolveError;
pub use kallsyms::{Kallsyms, is_kernel_address};
pub use maps::Mapping;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolKind {
    Function,
    Object,
    Unknown,
}

/// Which address space a breakpoint lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    Kernel,
    User,
}

/// A resolved target, ready to arm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breakpoint {
    pub spec: TargetSpec,
    /// Where it points, as shown to the user: `pid_max`, `vfs_read+0x10`,
    /// or the address when no symbol covers it.
    pub symbol: String,
    /// Kernel module or ELF file holding the symbol.
    pub object: Option<String>,
    pub kind: SymbolKind,
    pub addr: u64,
    pub mode: Mode,
    /// Bytes covered (8 for execute breakpoints: x86 wants sizeof(long)).
    pub len: u8,
    pub space: Space,
    /// At the first instruction of a function (the caller's return address
    /// is then at the stack pointer).
    pub at_entry: bool,
    /// The watched bytes' type from debug info: a member's, for a field
    /// expression (`cfg.limits[2].max`), or a program's variable's, named
    /// whole (kernel variables are typed from BTF where values are read).
    pub field: Option<Arc<crate::target::fields::FieldType>>,
}

/// Up to `max` names close to `name`: first the copies a compiler made of
/// it under a suffixed name (gcc's `sbump.constprop.0.isra.0`,
/// `run.part.0`, `f.cold`, a function's static `calls.0`), which no
/// distance finds for a short name; then by Jaro-Winkler, then edit
/// distance.
pub(crate) fn suggest<'a>(
    names: impl Iterator<Item = &'a str>,
    name: &str,
    max: usize,
) -> Vec<String> {
    let names: Vec<&str> = names.collect();
    let mut copies: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.split_once('.').is_some_and(|(base, _)| base == name))
        .collect();
    copies.sort_unstable();
    let mut scored: Vec<(f64, &str)> = names
        .into_iter()
        .filter(|n| n.len().abs_diff(name.len()) <= 4)
        .map(|n| (strsim::jaro_winkler(n, name), n))
        .filter(|(score, _)| *score > 0.85)
        .collect();
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| strsim::levenshtein(a.1, name).cmp(&strsim::levenshtein(b.1, name)))
            .then_with(|| a.1.cmp(b.1))
    });
    let mut out: Vec<String> = Vec::new();
    for n in copies.into_iter().chain(scored.into_iter().map(|(_, n)| n)) {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_owned());
        }
        if out.len() == max {
            break;
        }
    }
    out
}

/// A process's ELF files as mapped, loaded on demand.
pub struct ProcessImage {
    pub pid: i32,
    pub maps: Vec<Mapping>,
    /// The main executable (resolved /proc/PID/exe).
    pub exe: Option<PathBuf>,
    images: HashMap<PathBuf, Arc<ElfImage>>,
}

impl ProcessImage {
    pub fn open(pid: i32) -> Result<Self, ResolveError> {
        let maps = maps::read_maps(pid).map_err(|e| ResolveError::Process {
            pid,
            reason: e.to_string(),
        })?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        Ok(Self {
            pid,
            maps,
            exe,
            images: HashMap::new(),
        })
    }

    /// Mapped files, main executable first.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = maps::mapped_files(&self.maps);
        if let Some(exe) = &self.exe
            && let Some(i) = files.iter().position(|f| f == exe)
        {
            let exe = files.remove(i);
            files.insert(0, exe);
        }
        files
    }

    pub fn image(&mut self, path: &Path) -> Result<Arc<ElfImage>, ResolveError> {
        if let Some(image) = self.images.get(path) {
            return Ok(image.clone());
        }
        // Open through the process's root so that containers work.
        let in_root = PathBuf::from(format!("/proc/{}/root{}", self.pid, path.display()));
        let image = Arc::new(ElfImage::load(&in_root).or_else(|_| ElfImage::load(path))?);
        self.images.insert(path.to_owned(), image.clone());
        Ok(image)
    }

    /// The mappings of one file.
    fn maps_of(&self, path: &Path) -> Vec<&Mapping> {
        self.maps
            .iter()
            .filter(|m| m.path.as_deref() == Some(path))
            .collect()
    }

    /// Runtime address of a link-time address of `path` in this process.
    pub fn runtime_address(&self, path: &Path, image: &ElfImage, vaddr: u64) -> Option<u64> {
        image.runtime_address(&self.maps_of(path), vaddr)
    }

    /// Link-time address in `path` of a runtime address of this process.
    pub fn link_address(&self, path: &Path, image: &ElfImage, addr: u64) -> Option<u64> {
        image.link_address(&self.maps_of(path), addr)
    }

    /// Checks that a user breakpoint computed from link address `link` of
    /// `path` lands where such a target lives: code in an executable
    /// mapping of the file, data in a mapping of the file or in the
    /// anonymous .bss right after one. A wrong load bias would otherwise
    /// arm a valid-looking address that never fires (or fires on
    /// something else).
    ///
    /// What lives there follows the symbol's kind, not the mode: a data
    /// symbol armed with `:x` is still data (and gets a warning that it
    /// cannot fire, see [`advice`]), not a misplaced function.
    fn check_placement(&self, bp: &Breakpoint, path: &Path, link: u64) -> Result<(), ResolveError> {
        let code = match bp.kind {
            SymbolKind::Function => true,
            SymbolKind::Object => false,
            SymbolKind::Unknown => bp.mode == Mode::Execute,
        };
        let mapping = self.mapping(bp.addr);
        let ok = match mapping {
            None => false,
            Some(m) if code => m.executable && m.path.as_deref() == Some(path),
            Some(m) => match &m.path {
                Some(p) => p == path,
                None => self
                    .maps
                    .iter()
                    .any(|f| f.end == m.start && f.path.as_deref() == Some(path)),
            },
        };
        if ok {
            return Ok(());
        }
        let found = match mapping {
            None => "in no mapping".to_owned(),
            Some(m) => format!(
                "in the {}{} mapping {:#x}-{:#x} at offset {:#x}",
                if m.executable { "executable " } else { "" },
                m.path
                    .as_deref()
                    .map_or("anonymous".to_owned(), |p| format!("`{}`", p.display())),
                m.start,
                m.end,
                m.offset
            ),
        };
        Err(ResolveError::Misplaced {
            target: bp.spec.text.clone(),
            what: if code { "code" } else { "data" },
            file: path.display().to_string(),
            link,
            addr: bp.addr,
            found,
            pid: self.pid,
        })
    }

    /// The mapping holding a runtime address.
    pub fn mapping(&self, addr: u64) -> Option<&Mapping> {
        self.maps.iter().find(|m| addr >= m.start && addr < m.end)
    }

    /// The file whose image holds a runtime address: the file mapped there,
    /// or, for anonymous memory right after a mapping of a file, that file
    /// (the .bss pages past the file's end).
    fn file_of(&self, addr: u64) -> Option<PathBuf> {
        let m = self.mapping(addr)?;
        match &m.path {
            Some(path) => Some(path.clone()),
            None => self
                .maps
                .iter()
                .find(|f| f.end == m.start)
                .and_then(|f| f.path.clone()),
        }
    }

    fn match_binary(&self, binary: &Path) -> Option<PathBuf> {
        let files = self.files();
        if let Some(f) = files.iter().find(|f| f.as_path() == binary) {
            return Some(f.clone());
        }
        if let Ok(canon) = std::fs::canonicalize(binary)
            && let Some(f) = files.iter().find(|f| **f == canon)
        {
            return Some(f.clone());
        }
        let want = binary.file_name()?.to_str()?;
        files
            .iter()
            .find(|f| f.file_name().and_then(|n| n.to_str()) == Some(want))
            .or_else(|| {
                files.iter().find(|f| {
                    f.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&format!("{want}.so")) || n.starts_with(&format!("{want}-"))
                    })
                })
            })
            .cloned()
    }
}

/// Resolves targets against the kernel and, when given, one process.
pub struct Resolver {
    kallsyms: Option<Arc<Kallsyms>>,
    process: Option<ProcessImage>,
}

impl Resolver {
    pub fn new(process: Option<ProcessImage>) -> Self {
        Self {
            kallsyms: None,
            process,
        }
    }

    pub fn with_kallsyms(mut self, kallsyms: Arc<Kallsyms>) -> Self {
        self.kallsyms = Some(kallsyms);
        self
    }

    pub fn kallsyms(&mut self) -> Result<Arc<Kallsyms>, ResolveError> {
        if let Some(k) = &self.kallsyms {
            return Ok(k.clone());
        }
        let k = Kallsyms::load().map_err(|e| ResolveError::Kallsyms(e.to_string()))?;
        if k.is_restricted() {
            return Err(ResolveError::KallsymsRestricted);
        }
        let k = Arc::new(k);
        self.kallsyms = Some(k.clone());
        Ok(k)
    }

    pub fn process(&self) -> Option<&ProcessImage> {
        self.process.as_ref()
    }

    pub fn into_process(self) -> Option<ProcessImage> {
        self.process
    }

    /// Resolves every target; fails on the first bad one, or on two
    /// targets arming the same address.
    pub fn resolve_all(&mut self, specs: &[TargetSpec]) -> Result<Vec<Breakpoint>, ResolveError> {
        let mut out: Vec<Breakpoint> = Vec::with_capacity(specs.len());
        for spec in specs {
            let bp = self.resolve(spec)?;
            if let Some(other) = out
                .iter()
                .find(|o| o.addr == bp.addr && o.space == bp.space)
            {
                return Err(ResolveError::Duplicate {
                    target: bp.spec.text,
                    other: other.spec.text.clone(),
                    addr: bp.addr,
                });
            }
            out.push(bp);
        }
        Ok(out)
    }

    pub fn resolve(&mut self, spec: &TargetSpec) -> Result<Breakpoint, ResolveError> {
        let (found, field) = self.locate_fields(spec)?;
        let placed = found
            .file
            .clone()
            .map(|(path, link)| (path, link.wrapping_add(found.offset)));
        // An address no symbol names (a stripped file's `FILE:0xADDR`, a
        // bare user address) is code or data by where it is mapped.
        let in_code = found.kind == SymbolKind::Unknown
            && found.space == Space::User
            && self.process.as_ref().is_some_and(|process| {
                process
                    .mapping(found.base.wrapping_add(found.offset))
                    .is_some_and(|m| m.executable)
            });
        let bp = Breakpoint {
            field,
            ..finish(spec, found, in_code)?
        };
        if let (Some((path, link)), Some(process)) = (placed, &self.process) {
            process.check_placement(&bp, &path, link)?;
        }
        Ok(bp)
    }

    /// The file of the traced process that `BINARY:` names.
    fn mapped_binary(&mut self, spec: &TargetSpec, binary: &Path) -> Result<PathBuf, ResolveError> {
        let Some(process) = self.process.as_mut() else {
            return Err(ResolveError::NeedsProcess(spec.text.clone()));
        };
        process
            .match_binary(binary)
            .ok_or_else(|| ResolveError::NotMapped {
                binary: binary.display().to_string(),
                pid: process.pid,
                mapped: process
                    .files()
                    .iter()
                    .map(|f| format!("  {}", f.display()))
                    .collect(),
            })
    }

    fn locate(&mut self, spec: &TargetSpec) -> Result<Found, ResolveError> {
        match (&spec.location, &spec.binary) {
            (Location::Address(addr), Some(binary)) => {
                let path = self.mapped_binary(spec, binary)?;
                self.locate_file_address(spec, &path, *addr)
            }
            (Location::Address(addr), None) => self.locate_address(spec, *addr),
            (Location::Symbol { name, offset }, Some(binary)) => {
                let path = self.mapped_binary(spec, binary)?;
                self.locate_in_file(&path, name, *offset)?.ok_or_else(|| {
                    let image = self.process.as_mut().and_then(|p| p.image(&path).ok());
                    ResolveError::UnknownSymbol {
                        name: name.clone(),
                        place: path.display().to_string(),
                        suggestions: image
                            .as_ref()
                            .map(|image| image.suggest(name, 5))
                            .unwrap_or_default(),
                        stripped: image.and_then(|image| image.stripped_note(&path)),
                    }
                })
            }
            (Location::Symbol { name, offset }, None) => {
                if let Some(process) = &self.process {
                    for path in process.files() {
                        if let Some(found) = self.locate_in_file(&path, name, *offset)? {
                            return Ok(found);
                        }
                    }
                }
                self.locate_kernel(name, *offset)
            }
        }
    }

    fn locate_in_file(
        &mut self,
        path: &Path,
        name: &str,
        offset: u64,
    ) -> Result<Option<Found>, ResolveError> {
        let Some(process) = self.process.as_mut() else {
            return Ok(None);
        };
        let Ok(image) = process.image(path) else {
            // Files that are not ELF (fonts, locale archives) hold no symbols.
            return Ok(None);
        };
        let candidates = image.lookup(name);
        let sym = match candidates.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            many => {
                let candidates: Vec<(u64, String)> = many
                    .iter()
                    .map(|s| {
                        let addr = process
                            .runtime_address(path, &image, s.addr)
                            .unwrap_or(s.addr);
                        (
                            addr,
                            format!("{} [{}]", s.versioned_display(), path.display()),
                        )
                    })
                    .collect();
                let example = user_example(many, name, candidates[0].0);
                return Err(ResolveError::Ambiguous {
                    name: name.to_owned(),
                    candidates,
                    example,
                });
            }
        };
        if sym.thread_local {
            return Err(ResolveError::ThreadLocal {
                name: name.to_owned(),
                file: path.display().to_string(),
            });
        }
        let Some(addr) = process.runtime_address(path, &image, sym.addr) else {
            return Ok(None);
        };
        log::debug!("`{}` from {}", sym.display, image.origin_text(sym, path));
        Ok(Some(Found {
            name: sym.display.clone(),
            object: Some(path.display().to_string()),
            kind: sym.kind,
            base: addr,
            size: sym.size,
            offset,
            space: Space::User,
            file: Some((path.to_owned(), sym.addr)),
        }))
    }

    /// `BINARY:0xADDRESS`: a link-time address of that file (as `nm` and
    /// `objdump -d` print it), moved by the file's load bias.
    fn locate_file_address(
        &mut self,
        spec: &TargetSpec,
        path: &Path,
        vaddr: u64,
    ) -> Result<Found, ResolveError> {
        let Some(process) = self.process.as_mut() else {
            return Err(ResolveError::NeedsProcess(spec.text.clone()));
        };
        let image = process.image(path)?;
        let Some(addr) = process.runtime_address(path, &image, vaddr) else {
            let (start, end) = image.link_range().unwrap_or((0, 0));
            return Err(ResolveError::OutsideFile {
                target: spec.text.clone(),
                file: path.display().to_string(),
                addr: vaddr,
                start,
                end,
            });
        };
        let object = Some(path.display().to_string());
        Ok(match image.symbolize(vaddr) {
            Some((sym, off)) => Found {
                name: sym.display.clone(),
                object,
                kind: sym.kind,
                base: addr - off,
                size: size_at_start(sym.size, off),
                offset: off,
                space: Space::User,
                file: Some((path.to_owned(), sym.addr)),
            },
            None => Found {
                object,
                file: Some((path.to_owned(), vaddr)),
                ..Found::raw(addr, Space::User)
            },
        })
    }

    fn locate_kernel(&mut self, name: &str, offset: u64) -> Result<Found, ResolveError> {
        let kallsyms = self.kallsyms()?;
        let candidates = kallsyms.lookup(name);
        let sym = match candidates.as_slice() {
            [] => {
                let place = match &self.process {
                    Some(p) => format!("process {} or the kernel", p.pid),
                    None => "the kernel (/proc/kallsyms)".to_owned(),
                };
                let mut suggestions = kallsyms.suggest(name, 5);
                let mut stripped = None;
                if let Some(process) = self.process.as_mut()
                    && let Some(exe) = process.files().first().cloned()
                    && let Ok(image) = process.image(&exe)
                {
                    let mut user = image.suggest(name, 5);
                    user.append(&mut suggestions);
                    user.truncate(5);
                    suggestions = user;
                    stripped = image.stripped_note(&exe);
                }
                return Err(ResolveError::UnknownSymbol {
                    name: name.to_owned(),
                    place,
                    suggestions,
                    stripped,
                });
            }
            [one] => {
                one.refuse_per_cpu()?;
                *one
            }
            many => {
                return Err(ResolveError::Ambiguous {
                    name: name.to_owned(),
                    candidates: many
                        .iter()
                        .map(|s| {
                            (
                                s.addr,
                                s.module
                                    .map(|m| format!("[{m}]"))
                                    .unwrap_or_else(|| "[kernel]".into()),
                            )
                        })
                        .collect(),
                    example: by_address(many.first().map(|s| s.addr)),
                });
            }
        };
        Ok(Found {
            name: sym.name.to_owned(),
            object: sym.module.map(str::to_owned),
            kind: sym.kind,
            base: sym.addr,
            size: sym.size,
            offset,
            space: Space::Kernel,
            file: None,
        })
    }

    fn locate_address(&mut self, spec: &TargetSpec, addr: u64) -> Result<Found, ResolveError> {
        if is_kernel_address(addr) {
            let kallsyms = self.kallsyms()?;
            let symbol = kallsyms.symbolize(addr);
            if let Some((sym, _)) = symbol {
                sym.refuse_per_cpu()?;
            }
            return Ok(match symbol {
                Some((sym, off)) => Found {
                    name: sym.name.to_owned(),
                    object: sym.module.map(str::to_owned),
                    kind: sym.kind,
                    base: sym.addr,
                    size: size_at_start(sym.size, off),
                    offset: off,
                    space: Space::Kernel,
                    file: None,
                },
                None => Found::raw(addr, Space::Kernel),
            });
        }
        let Some(process) = self.process.as_mut() else {
            return Err(ResolveError::UserAddressWithoutProcess {
                target: spec.text.clone(),
            });
        };
        let Some(path) = process.file_of(addr) else {
            return Ok(Found::raw(addr, Space::User));
        };
        let Ok(image) = process.image(&path) else {
            return Ok(Found::raw(addr, Space::User));
        };
        let vaddr = process.link_address(&path, &image, addr);
        Ok(match vaddr.and_then(|v| image.symbolize(v)) {
            Some((sym, off)) => Found {
                name: sym.display.clone(),
                object: Some(path.display().to_string()),
                kind: sym.kind,
                base: addr - off,
                size: size_at_start(sym.size, off),
                offset: off,
                space: Space::User,
                // The user named the runtime address: arm it as named.
                file: None,
            },
            None => Found::raw(addr, Space::User),
        })
    }
}

fn by_address(addr: Option<u64>) -> String {
    format!("by address (e.g. `{:#x}`)", addr.unwrap_or_default())
}

/// How to name one of several user symbols that `query` matched (the
/// first at runtime address `addr`): by its full name when the names differ
/// (C++ overloads, versions), else by address (two static functions of the
/// same name).
fn user_example(candidates: &[&ElfSymbol], query: &str, addr: u64) -> String {
    let names: Vec<String> = candidates.iter().map(|c| c.versioned_display()).collect();
    let distinct = names
        .iter()
        .enumerate()
        .all(|(i, n)| !names[..i].contains(n));
    match names.first() {
        Some(full) if distinct && full != query => {
            format!("by its full name (e.g. `{full}`) or by address (e.g. `{addr:#x}`)")
        }
        _ => by_address(Some(addr)),
    }
}

/// The size to default LEN from for an address `off` bytes into a symbol of
/// `size` bytes: the symbol's own at its start, as when it is named (so
/// `0xADDRESS` of a 4-byte variable watches 4 bytes); inside it, none (the
/// address then names a spot, not the variable, and LEN defaults to 8).
fn size_at_start(size: u64, off: u64) -> u64 {
    if off == 0 { size } else { 0 }
}

/// A located symbol before defaults and checks.
struct Found {
    name: String,
    object: Option<String>,
    kind: SymbolKind,
    /// Start of the symbol.
    base: u64,
    /// Size of the symbol; 0 when unknown or not to be checked.
    size: u64,
    offset: u64,
    space: Space,
    /// For a symbol of a process's file: the file and the link-time
    /// address of `base`, for the placement check before arming.
    file: Option<(PathBuf, u64)>,
}

impl Found {
    fn raw(addr: u64, space: Space) -> Self {
        Self {
            name: format!("{addr:#x}"),
            object: None,
            kind: SymbolKind::Unknown,
            base: addr,
            size: 0,
            offset: 0,
            space,
            file: None,
        }
    }
}

/// Applies defaults (functions → x, objects → w, an address no symbol
/// names by whether it is `in_code`; LEN = the symbol's size when it is 1,
/// 2, 4 or 8, else 8) and the x86 rules.
fn finish(spec: &TargetSpec, found: Found, in_code: bool) -> Result<Breakpoint, ResolveError> {
    let Found {
        name,
        object,
        kind,
        base,
        size,
        offset,
        space,
        file: _,
    } = found;
    if size > 0 && offset >= size {
        return Err(ResolveError::OffsetBeyond {
            target: spec.text.clone(),
            symbol: name,
            offset,
            size,
        });
    }
    let addr = base.wrapping_add(offset);
    let mode = spec.mode.unwrap_or(match kind {
        SymbolKind::Function => Mode::Execute,
        SymbolKind::Unknown if in_code => Mode::Execute,
        SymbolKind::Object | SymbolKind::Unknown => Mode::Write,
    });
    if mode == Mode::Read && cfg!(target_arch = "x86_64") {
        return Err(ResolveError::ReadOnly(spec.text.clone()));
    }
    let len = if mode == Mode::Execute {
        if spec.len.is_some() {
            return Err(ResolveError::LenForExecute {
                target: spec.text.clone(),
            });
        }
        // x86 execute breakpoints must have bp_len == sizeof(long)
        // (arch/x86/kernel/hw_breakpoint.c, arch_build_bp_info); arm64's
        // one instruction, 4 (see host::arch).
        crate::host::arch::EXECUTE_LEN
    } else {
        spec.len.unwrap_or({
            let remaining = size.saturating_sub(offset);
            match remaining {
                1 | 2 | 4 | 8 => remaining as u8,
                _ => 8,
            }
        })
    };
    if mode.is_data() && addr % u64::from(len) != 0 {
        return Err(ResolveError::Misaligned {
            target: spec.text.clone(),
            addr,
            len,
        });
    }
    let symbol = match (offset, kind) {
        (_, SymbolKind::Unknown) if name.starts_with("0x") => name,
        (0, _) => name,
        (off, _) => format!("{name}+{off:#x}"),
    };
    Ok(Breakpoint {
        spec: spec.clone(),
        symbol,
        object,
        at_entry: kind == SymbolKind::Function && offset == 0,
        kind,
        addr,
        mode,
        len,
        space,
        field: None,
    })
}

impl fmt::Display for Breakpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x}, {}", self.symbol, self.addr, self.mode)?;
        if self.mode.is_data() {
            write!(f, "/{}", self.len)?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81234560 T vfs_read
ffffffff81234800 T vfs_write
ffffffff81234900 t dup_fn
ffffffff81234a00 t dup_fn
ffffffff82a00000 D pid_max
ffffffff82a00004 D pid_max_min
ffffffff82a00008 D big_table
ffffffff82a00108 b flag
ffffffff82a00109 b flag2
";

    fn resolver() -> Resolver {
        Resolver::new(None).with_kallsyms(Arc::new(Kallsyms::parse(KALLSYMS)))
    }

    fn resolve(s: &str) -> Result<Breakpoint, ResolveError> {
        resolver().resolve(&s.parse().expect("parse"))
    }

    #[test]
    fn defaults_by_kind() {
        let bp = resolve("vfs_read").expect("vfs_read");
        assert_eq!(
            (bp.addr, bp.mode, bp.len, bp.space),
            (0xffffffff81234560, Mode::Execute, 8, Space::Kernel)
        );
        let bp = resolve("pid_max").expect("pid_max");
        assert_eq!((bp.mode, bp.len), (Mode::Write, 4));
        let bp = resolve("flag").expect("flag");
        assert_eq!((bp.mode, bp.len), (Mode::Write, 1));
        // Sizes other than 1/2/4/8 default to 8.
        let bp = resolve("big_table").expect("big_table");
        assert_eq!(bp.len, 8);
        let bp = resolve("pid_max:rw-").expect("rw-");
        assert_eq!(bp.mode, Mode::ReadWrite);
    }

    #[test]
    fn offsets_and_addresses() {
        let bp = resolve("vfs_read+0x10").expect("offset");
        assert_eq!(
            (bp.addr, bp.symbol.as_str()),
            (0xffffffff81234570, "vfs_read+0x10")
        );
        // At a variable's start, its size gives LEN, as when it is named.
        let bp = resolve("0xffffffff82a00000").expect("address");
        assert_eq!(
            (bp.symbol.as_str(), bp.mode, bp.len),
            ("pid_max", Mode::Write, 4)
        );
        let bp = resolve("0xffffffff82a00108").expect("address of a byte");
        assert_eq!((bp.symbol.as_str(), bp.len), ("flag", 1));
        // Inside a variable the address names a spot: LEN defaults to 8.
        let bp = resolve("0xffffffff82a00010").expect("address inside");
        assert_eq!((bp.symbol.as_str(), bp.len), ("big_table+0x8", 8));
        // An explicit /LEN still wins.
        let bp = resolve("0xffffffff82a00000/2").expect("address with LEN");
        assert_eq!(bp.len, 2);
        let bp = resolve("0xffffffff81234561:x").expect("address in function");
        assert_eq!(bp.symbol, "vfs_read+0x1");
    }

    /// A name the compiler only kept under a suffix is suggested first,
    /// whatever its length; the close names follow.
    #[test]
    fn suggestions_lead_with_the_compilers_copies() {
        let names = [
            "bump",
            "skb_dump",
            "sbump.constprop.0.isra.0",
            "sbump.cold",
            "sbumper",
            "calls.0",
            "calls.1",
        ];
        assert_eq!(
            suggest(names.iter().copied(), "sbump", 5),
            [
                "sbump.cold",
                "sbump.constprop.0.isra.0",
                "sbumper",
                "bump",
                "skb_dump"
            ]
        );
        assert_eq!(
            suggest(names.iter().copied(), "calls", 2),
            ["calls.0", "calls.1"]
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            resolve("vfs_raed"),
            Err(ResolveError::UnknownSymbol { suggestions, .. }) if suggestions.first().map(String::as_str) == Some("vfs_read")
        ));
        assert!(
            matches!(resolve("dup_fn"), Err(ResolveError::Ambiguous { candidates, .. }) if candidates.len() == 2)
        );
        assert!(matches!(
            resolve("pid_max:r"),
            Err(ResolveError::ReadOnly(_))
        ));
        assert!(matches!(
            resolve("pid_max+1/4"),
            Err(ResolveError::Misaligned { .. })
        ));
        assert!(matches!(
            resolve("pid_max+4"),
            Err(ResolveError::OffsetBeyond { .. })
        ));
        assert!(matches!(
            resolve("vfs_read/4"),
            Err(ResolveError::LenForExecute { .. })
        ));
        assert!(matches!(
            resolve("app:main"),
            Err(ResolveError::NeedsProcess(_))
        ));
        let err = resolve("0x401000").expect_err("user address without a process");
        assert!(
            matches!(err, ResolveError::UserAddressWithoutProcess { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "`0x401000` is a user-space address (below 0x800000000000), which means nothing without \
             a process: add -p PID or -- CMD to name the process; with neither, only kernel targets \
             can be armed"
        );
        let specs: Vec<TargetSpec> = ["pid_max", "0xffffffff82a00000"]
            .iter()
            .map(|s| s.parse().expect("parse"))
            .collect();
        assert!(matches!(
            resolver().resolve_all(&specs),
            Err(ResolveError::Duplicate { .. })
        ));
    }

    /// A per-CPU variable is refused by name and, where its listed
    /// address is a kernel one (a kernel linking the section in its image),
    /// by that address too.
    #[test]
    fn per_cpu_variables_are_refused() {
        let mut at_0 = Resolver::new(None).with_kallsyms(Arc::new(Kallsyms::parse(
            "0000000000000000 A __per_cpu_start\n\
             00000000000199e0 A cpu_number\n\
             0000000000035000 A __per_cpu_end\n\
             ffffffff82a00000 D pid_max\n",
        )));
        let err = at_0
            .resolve(&"cpu_number".parse().expect("parse"))
            .expect_err("per-CPU");
        assert_eq!(
            err.to_string(),
            "`cpu_number` is a per-CPU variable of the kernel: every CPU has its own copy, at \
             `__per_cpu_offset[CPU]` + 0x199e0, and 0x199e0, the address /proc/kallsyms lists, is \
             none of them, so hwbp-trace does not arm it by name. To watch one CPU's copy, take \
             its address (drgn: `per_cpu_ptr(prog['cpu_number'].address_of_(), CPU)`) and trace \
             `0xADDRESS:w`; a write by another CPU to that copy is a hit too"
        );
        assert!(at_0.resolve(&"pid_max".parse().expect("parse")).is_ok());
        // A member of one is no copy's member either.
        assert!(matches!(
            at_0.resolve(&"cpu_number.x".parse().expect("parse")),
            Err(ResolveError::PerCpu { .. })
        ));
        let mut linked = Resolver::new(None).with_kallsyms(Arc::new(Kallsyms::parse(
            "ffffffff83a00000 D __per_cpu_start\n\
             ffffffff83a1c000 D cpu_number\n\
             ffffffff83a39000 D __per_cpu_end\n",
        )));
        for target in ["cpu_number", "0xffffffff83a1c004"] {
            assert!(
                matches!(
                    linked.resolve(&target.parse().expect("parse")),
                    Err(ResolveError::PerCpu {
                        addr: 0xffffffff83a1c000,
                        ..
                    })
                ),
                "{target}"
            );
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let msg = resolve("pid_max:r").expect_err("read-only").to_string();
        assert!(msg.contains(":rw"), "{msg}");
        let msg = resolve("dup_fn").expect_err("ambiguous").to_string();
        assert!(
            msg.contains("0xffffffff81234900") && msg.contains("0xffffffff81234a00"),
            "{msg}"
        );
    }
}

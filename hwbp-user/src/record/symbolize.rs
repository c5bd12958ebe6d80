//! Addresses to names: kernel addresses through kallsyms, user addresses
//! through the process's memory map and blazesym (ELF symbols, DWARF line
//! tables and inlined functions). Every distinct address is symbolized once
//! (per process for user ones), so the cost does not grow with the number of
//! hits.
//!
//! Kernel addresses use the project's own kallsyms table, not blazesym's
//! kernel source: blazesym 0.2's kallsyms resolver drops the module column
//! (every symbol comes back with `module: None`, so `xfs_read+0x10 [xfs]`
//! would lose its `[xfs]`; its module support needs a vmlinux file and the
//! modules' .ko files on disk). The table is the one the targets were
//! resolved with; when no target needed it (user targets with kernel
//! stacks), it is read at the first kernel frame, so that start-up does not
//! pay for it.
//!
//! A user frame reads `func+0x1f (src/main.rs:42)`, and when the address is
//! in code inlined into `func`, each inlined call follows, outermost first:
//! `func+0x1f (src/main.rs:42) inlined helper (src/lib.rs:7)`. The string
//! always starts with `func+0xOFF`, so consumers that only want the function
//! cut at the first space ([`frame_functions`] does so, inlined ones included).
//!
//! Most addresses in a stack are return addresses, and the ip of a data
//! watchpoint hit is the instruction after the access (a trap): both point
//! just past the instruction of interest, which may belong to another line
//! or inlined call. [`Symbolizer::frame`] with `after = true` looks such an
//! address up one byte earlier (as perf and gdb do) and still reports the
//! offset of the address itself.
//!
//! The maps of the traced process are kept from [`Symbolizer::snapshot`] on,
//! and files are opened by path, so hits are named after the process exited.
//!
//! A stripped file's names are in its debug file or MiniDebugInfo, found by
//! resolve/debugfile.rs (its doc says why there and not by blazesym): when
//! that found a separate debug file, blazesym reads it (its .symtab and
//! DWARF, the address given as the link address both files share) for
//! `func+0x1f (file:line)`; MiniDebugInfo has no DWARF, so its names come
//! from [`ElfImage`] as `func+0x1f`. blazesym's own `.gnu_debuglink`
//! following stays on for the files where nothing was found, pointed at
//! the same debug root.

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use blazesym::symbolize::{
    self as bz,
    source::{Elf, Source},
};

use crate::{
    record::format::{INLINED, Stack, frame_functions},
    target::resolve::{ElfImage, Kallsyms, Mapping, debugfile, is_kernel_address, maps},
};

/// Entries kept per cache before it is emptied (bounds memory on long runs).
const CACHE_LIMIT: usize = 1 << 20;
/// Bytes of interned stacks (their frames' text, counted twice for the JSON
/// rendered from it, and their addresses) kept before that cache is
/// emptied: with many distinct stacks it would otherwise hold hundreds of
/// MiB (100,000 distinct 20-frame stacks of a Rust program: 425 MiB).
const STACK_CACHE_BYTES: usize = 8 << 20;
/// Processes whose maps are kept.
const PROCESS_LIMIT: usize = 4096;
/// Functions a process's code starts in: a user stack goes no further.
/// glibc's `_start` calls `__libc_start_main` (`__libc_start_main_impl`
/// since glibc 2.34), which calls `__libc_start_call_main`, which calls
/// `main`; musl's `_start_c` calls `__libc_start_main`.
pub const PROGRAM_START: [&str; 5] = [
    "_start",
    "_start_c",
    "__libc_start_main",
    "__libc_start_main_impl",
    "__libc_start_call_main",
];

/// Whether `frame` is in one of the [`PROGRAM_START`] functions.
fn is_program_start(frame: &str) -> bool {
    frame_functions(frame)
        .first()
        .is_some_and(|f| PROGRAM_START.contains(f))
}

#[derive(Default)]
struct ProcessMaps {
    maps: Vec<Mapping>,
    /// The process is gone: do not read /proc again.
    gone: bool,
}

/// A raw stack as a cache key: the pid (0 for kernel stacks) with bit 32
/// set when the first frame points past its instruction, the return
/// address inserted at a function's entry (or 0), then the addresses. A
/// slice, so that a lookup borrows a reused buffer instead of allocating.
type RawStack = Box<[u64]>;

/// Where kernel names come from.
enum KernelNames {
    /// This table (or none: kernel addresses stay raw).
    Table(Option<Arc<Kallsyms>>),
    /// /proc/kallsyms, read at the first kernel frame.
    Lazy,
}

/// Caching symbolizer for one tracing session.
pub struct Symbolizer {
    kernel_names: KernelNames,
    kernel_cache: HashMap<(u64, bool), Arc<str>, foldhash::fast::RandomState>,
    user_cache: HashMap<(u32, u64, bool), Arc<str>, foldhash::fast::RandomState>,
    /// Symbolized stacks by their raw addresses: hits with the same stack
    /// share one [`Stack`], and so its rendered JSON.
    stacks: HashMap<RawStack, Stack, foldhash::fast::RandomState>,
    /// Where the key of a lookup is assembled.
    raw_stack: Vec<u64>,
    /// What `stacks` holds, as [`STACK_CACHE_BYTES`] counts it.
    stack_bytes: usize,
    processes: HashMap<u32, ProcessMaps>,
    /// ELF files as found on disk (the traced process's root first).
    files: HashMap<PathBuf, Option<PathBuf>>,
    /// Symbol tables, for files blazesym cannot read.
    images: HashMap<PathBuf, Option<Arc<ElfImage>>>,
    /// blazesym keeps its parsed files (and their DWARF) between calls.
    blaze: bz::Symbolizer,
}

impl Symbolizer {
    /// Kernel addresses named from `kallsyms`, or, when None, from
    /// /proc/kallsyms read at the first kernel frame.
    pub fn new(kallsyms: Option<Arc<Kallsyms>>) -> Self {
        Self::with_kernel_names(match kallsyms {
            Some(table) => KernelNames::Table(Some(table)),
            None => KernelNames::Lazy,
        })
    }

    /// Kernel addresses stay raw (tests, offline tools).
    pub fn without_kernel_names() -> Self {
        Self::with_kernel_names(KernelNames::Table(None))
    }

    fn with_kernel_names(kernel_names: KernelNames) -> Self {
        Self {
            kernel_names,
            kernel_cache: HashMap::default(),
            user_cache: HashMap::default(),
            stacks: HashMap::default(),
            stack_bytes: 0,
            raw_stack: Vec::new(),
            processes: HashMap::new(),
            files: HashMap::new(),
            images: HashMap::new(),
            blaze: bz::Symbolizer::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                // Names are demangled here (`demangled`): blazesym tries C++
                // on every name, and reads short C names as types.
                .enable_demangling(false)
                .set_debug_dirs(Some([debugfile::debug_root()]))
                .build(),
        }
    }

    /// Remembers a process's maps now (for example right after arming), so
    /// its addresses can be named even after it exits.
    pub fn snapshot(&mut self, pid: u32) {
        if let Ok(maps) = maps::read_maps(pid as i32) {
            self.processes
                .insert(pid, ProcessMaps { maps, gone: false });
        }
    }

    /// Names the addresses of `pid` by the maps of `from`, read now: a
    /// replay names the hits of a process that is gone by a live one of
    /// the same program, loaded at the same addresses (`setarch -R`).
    pub fn snapshot_as(&mut self, pid: u32, from: u32) {
        if let Ok(maps) = maps::read_maps(from as i32) {
            self.processes
                .insert(pid, ProcessMaps { maps, gone: false });
        }
    }

    /// `func+0x1f`, `func+0x1f [module]`, `func+0x1f (file:line)`, or the raw address.
    pub fn symbolize(&mut self, pid: u32, addr: u64) -> Arc<str> {
        self.frame(pid, addr, false)
    }

    /// A kernel or user address; `after`: it points just past the
    /// instruction of interest (a return address, a watchpoint's trap ip).
    pub fn frame(&mut self, pid: u32, addr: u64, after: bool) -> Arc<str> {
        if is_kernel_address(addr) {
            self.kernel_frame(addr, after)
        } else {
            self.user_frame(pid, addr, after)
        }
    }

    /// A kernel stack, innermost first; `after`: its first address points
    /// past the instruction of interest (the others are return addresses).
    ///
    /// `ret`, when not 0, is the caller's return address at a function's
    /// entry where the kernel's unwinder misses it (arm64: still in x30): it
    /// goes in second place, as in [`Self::user_stack`].
    pub fn kernel_stack(&mut self, addrs: &[u64], after: bool, ret: u64) -> Stack {
        self.interned(0, after, ret, addrs, |this| {
            let mut addrs = addrs.to_vec();
            if ret != 0 && !addrs.is_empty() {
                addrs.insert(1, ret);
            }
            addrs
                .iter()
                .enumerate()
                .map(|(i, &addr)| this.kernel_frame(addr, i > 0 || after))
                .collect()
        })
    }

    /// A user stack of `pid`, innermost first. `ret`, when not 0, is the
    /// caller's return address at a function's entry, which the frame-pointer
    /// walk misses: it goes in second place.
    ///
    /// The stack ends where the program starts: at the first frame in
    /// [`PROGRAM_START`], or before the first return address that is zero or
    /// in no mapping. glibc's start code keeps no frame pointer, so a walk
    /// goes on past it into whatever its registers held (in a static
    /// binary, `register_tm_clones` and stray numbers), which would give
    /// every flame graph a root of junk.
    pub fn user_stack(&mut self, pid: u32, addrs: &[u64], after: bool, ret: u64) -> Stack {
        self.interned(pid, after, ret, addrs, |this| {
            let mut returns = addrs.get(1..).unwrap_or_default().to_vec();
            if ret != 0 && !addrs.is_empty() {
                returns.insert(0, ret);
            }
            let mut frames: Vec<Arc<str>> = Vec::with_capacity(addrs.len() + 1);
            if let Some(&first) = addrs.first() {
                frames.push(this.user_frame(pid, first, after));
            }
            for addr in returns {
                if frames.last().is_some_and(|f| is_program_start(f))
                    || addr == 0
                    || this.mapping(pid, addr).is_none()
                {
                    break;
                }
                frames.push(this.user_frame(pid, addr, true));
            }
            frames
        })
    }

    fn interned(
        &mut self,
        pid: u32,
        after: bool,
        ret: u64,
        addrs: &[u64],
        build: impl FnOnce(&mut Self) -> Vec<Arc<str>>,
    ) -> Stack {
        self.raw_stack.clear();
        self.raw_stack
            .extend([u64::from(pid) | u64::from(after) << 32, ret]);
        self.raw_stack.extend_from_slice(addrs);
        if let Some(stack) = self.stacks.get(self.raw_stack.as_slice()) {
            return stack.clone();
        }
        let key: RawStack = self.raw_stack.as_slice().into();
        let stack = Stack::new(build(self));
        let bytes = 2 * stack.iter().map(|frame| frame.len()).sum::<usize>() + 8 * key.len() + 128;
        if self.stack_bytes + bytes > STACK_CACHE_BYTES {
            self.stacks.clear();
            self.stack_bytes = 0;
        }
        self.stack_bytes += bytes;
        self.stacks.insert(key, stack.clone());
        stack
    }

    pub fn kernel(&mut self, addr: u64) -> Arc<str> {
        self.kernel_frame(addr, false)
    }

    pub fn kernel_frame(&mut self, addr: u64, after: bool) -> Arc<str> {
        if let Some(name) = self.kernel_cache.get(&(addr, after)) {
            return name.clone();
        }
        let lookup = addr.wrapping_sub(u64::from(after));
        let name: Arc<str> = match self.kallsyms().and_then(|k| k.symbolize(lookup)) {
            Some((sym, off)) => {
                let off = off + u64::from(after);
                match &sym.module {
                    Some(module) => format!("{}+{off:#x} [{module}]", demangled(sym.name)),
                    None => format!("{}+{off:#x}", demangled(sym.name)),
                }
            }
            None => format!("{addr:#x}"),
        }
        .into();
        if self.kernel_cache.len() >= CACHE_LIMIT {
            self.kernel_cache.clear();
        }
        self.kernel_cache.insert((addr, after), name.clone());
        name
    }

    /// The kernel's symbol table, read now if it is the first time.
    fn kallsyms(&mut self) -> Option<&Kallsyms> {
        if let KernelNames::Lazy = self.kernel_names {
            let table = match Kallsyms::load() {
                Ok(table) if !table.is_restricted() => Some(Arc::new(table)),
                Ok(_) => {
                    log::info!("/proc/kallsyms hides addresses: kernel frames stay raw");
                    None
                }
                Err(e) => {
                    log::info!("reading /proc/kallsyms: {e}; kernel frames stay raw");
                    None
                }
            };
            self.kernel_names = KernelNames::Table(table);
        }
        match &self.kernel_names {
            KernelNames::Table(table) => table.as_deref(),
            KernelNames::Lazy => None,
        }
    }

    /// Whether the kernel's symbol table has been read (lazily or given).
    pub fn has_kallsyms(&self) -> bool {
        matches!(self.kernel_names, KernelNames::Table(Some(_)))
    }

    pub fn user(&mut self, pid: u32, addr: u64) -> Arc<str> {
        self.user_frame(pid, addr, false)
    }

    pub fn user_frame(&mut self, pid: u32, addr: u64, after: bool) -> Arc<str> {
        if let Some(name) = self.user_cache.get(&(pid, addr, after)) {
            return name.clone();
        }
        let name: Arc<str> = self.user_uncached(pid, addr, after).into();
        if self.user_cache.len() >= CACHE_LIMIT {
            self.user_cache.clear();
        }
        self.user_cache.insert((pid, addr, after), name.clone());
        name
    }

    fn user_uncached(&mut self, pid: u32, addr: u64, after: bool) -> String {
        let Some(mapping) = self.mapping(pid, addr) else {
            return format!("{addr:#x}");
        };
        let Some(path) = mapping.path.clone() else {
            return format!("{addr:#x}");
        };
        let file_offset = addr - mapping.start + mapping.offset;
        let lookup = file_offset.saturating_sub(u64::from(after));
        let short = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(file) = self.file(pid, &path) else {
            return format!("[{short}+{file_offset:#x}]");
        };
        let image = self.image(&file);
        // A separate debug file: blazesym reads it at the link address
        // (the debug file's own segments map no file offsets).
        let separate = image.as_ref().and_then(|image| {
            let debug = image.debug()?.path()?.to_owned();
            Some((debug, image.file_offset_to_vaddr(lookup)?))
        });
        let symbolized = match separate {
            Some((debug, vaddr)) => self
                .blaze
                .symbolize_single(&Source::Elf(Elf::new(debug)), bz::Input::VirtOffset(vaddr)),
            None => self.blaze.symbolize_single(
                &Source::Elf(Elf::new(file.clone())),
                bz::Input::FileOffset(lookup),
            ),
        };
        if let Ok(bz::Symbolized::Sym(sym)) = symbolized {
            return format_sym(&sym, u64::from(after));
        }
        // blazesym found nothing (or could not parse the file): the plain
        // symbol tables still may.
        let named = image.and_then(|image| {
            let vaddr = image.file_offset_to_vaddr(lookup)?;
            image
                .symbolize(vaddr)
                .map(|(s, o)| format!("{}+{:#x}", s.display, o + u64::from(after)))
        });
        match named {
            Some(name) => name,
            None => format!("[{short}+{file_offset:#x}]"),
        }
    }

    fn mapping(&mut self, pid: u32, addr: u64) -> Option<Mapping> {
        if self.processes.len() >= PROCESS_LIMIT && !self.processes.contains_key(&pid) {
            self.processes.clear();
        }
        let entry = self.processes.entry(pid).or_default();
        let find = |maps: &[Mapping]| {
            maps.iter()
                .find(|m| addr >= m.start && addr < m.end)
                .cloned()
        };
        if let Some(m) = find(&entry.maps) {
            return Some(m);
        }
        if entry.gone {
            return None;
        }
        // A miss: the process may have mapped something new since.
        match maps::read_maps(pid as i32) {
            Ok(maps) if !maps.is_empty() => entry.maps = maps,
            _ => entry.gone = true,
        }
        find(&entry.maps)
    }

    /// The file to open for a mapped path: through the process's root (it
    /// may live in a container) while the process exists, else the path.
    fn file(&mut self, pid: u32, path: &Path) -> Option<PathBuf> {
        if let Some(file) = self.files.get(path) {
            return file.clone();
        }
        let in_root = PathBuf::from(format!("/proc/{pid}/root{}", path.display()));
        let file = openable([in_root, path.to_owned()]);
        self.files.insert(path.to_owned(), file.clone());
        file
    }

    fn image(&mut self, file: &Path) -> Option<Arc<ElfImage>> {
        if let Some(image) = self.images.get(file) {
            return image.clone();
        }
        let image = ElfImage::load(file).ok().map(Arc::new);
        self.images.insert(file.to_owned(), image.clone());
        image
    }
}

/// The first of `candidates` that is a file, canonical where it can be. A
/// `/proc/PID/root/…` path dies with its process, which can exit between the
/// checks: one that cannot be canonicalized is kept only if it is still a
/// file, else the next is tried. (Kept as it was, a process gone by then
/// left its frames unnamed for the rest of the run, the path cached.)
fn openable(candidates: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    candidates
        .into_iter()
        .filter(|p| p.is_file())
        .find_map(|p| match p.canonicalize() {
            Ok(real) => Some(real),
            Err(_) => p.is_file().then_some(p),
        })
}

fn code_location(info: &bz::CodeInfo<'_>) -> Option<String> {
    let line = info.line?;
    Some(format!("{}:{line}", info.to_path().display()))
}

/// `name+0xoff (file:line)[ inlined name (file:line)]…`; `skew` is added
/// to the offset (the byte an `after` address was looked up before).
/// A symbol's name demangled: Rust's (legacy `_ZN…17h…E` and v0 `_R…`),
/// and C++'s (Itanium ABI) only when it starts with `_Z`, as the ELF
/// resolver does (target/resolve/elf.rs). Not blazesym's: it tries C++ on
/// any name, and a short C name is a valid encoded type there: `i`, `d`,
/// `f`, `Ss` came out as `int`, `double`, `float`, `std::string`.
fn demangled(name: &str) -> Cow<'_, str> {
    if let Ok(rust) = rustc_demangle::try_demangle(name) {
        return Cow::Owned(format!("{rust:#}"));
    }
    if name.starts_with("_Z")
        && let Ok(cpp) = cpp_demangle::Symbol::new(name)
        && let Ok(display) = cpp.demangle()
    {
        return Cow::Owned(display);
    }
    Cow::Borrowed(name)
}

fn format_sym(sym: &bz::Sym<'_>, skew: u64) -> String {
    let mut out = format!("{}+{:#x}", demangled(&sym.name), sym.offset as u64 + skew);
    if let Some(loc) = sym.code_info.as_deref().and_then(code_location) {
        let _ = write!(out, " ({loc})");
    }
    for inlined in sym.inlined.iter() {
        let _ = write!(out, "{INLINED}{}", demangled(&inlined.name));
        if let Some(loc) = inlined.code_info.as_ref().and_then(code_location) {
            let _ = write!(out, " ({loc})");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker() -> u64 {
        std::hint::black_box(42)
    }

    /// Only `_Z` names are C++ ones: `i`, `d`, `f`, `Ss` are C functions,
    /// not the types they would encode.
    #[test]
    fn short_c_names_are_not_demangled_as_types() {
        for name in ["i", "d", "f", "g", "Ss", "v_", "main"] {
            assert_eq!(demangled(name), name);
        }
        assert_eq!(demangled("_ZN2ns4bumpEi"), "ns::bump(int)");
        assert_eq!(
            demangled("_ZN7fx_user12kernel_fills17h0123456789abcdefE"),
            "fx_user::kernel_fills"
        );
    }

    #[test]
    fn names_own_function_with_line() {
        let mut s = Symbolizer::without_kernel_names();
        let addr = marker as fn() -> u64 as usize as u64;
        let name = s.user(std::process::id(), addr);
        assert!(
            name.starts_with("hwbp::record::symbolize::tests::marker+0x0 ("),
            "{name}"
        );
        assert!(
            name.contains("src/record/symbolize.rs:"),
            "test binaries have line tables: {name}"
        );
        // Cached: the same Arc comes back.
        assert!(Arc::ptr_eq(&name, &s.user(std::process::id(), addr)));
    }

    #[test]
    fn kernel_without_kallsyms_is_raw() {
        let mut s = Symbolizer::without_kernel_names();
        assert_eq!(&*s.kernel(0xffffffff81000000), "0xffffffff81000000");
        let k = Kallsyms::parse("ffffffff81000000 T start\nffffffff81000100 T next\n");
        let mut s = Symbolizer::new(Some(Arc::new(k)));
        assert_eq!(&*s.kernel(0xffffffff81000010), "start+0x10");
    }

    #[test]
    fn kallsyms_read_at_the_first_kernel_frame() {
        let mut s = Symbolizer::new(None);
        assert!(!s.has_kallsyms(), "not read at start");
        s.user(std::process::id(), marker as fn() -> u64 as usize as u64);
        assert!(!s.has_kallsyms(), "not read for user frames");
        let Ok(table) = Kallsyms::load() else {
            eprintln!("SKIPPED: /proc/kallsyms unreadable");
            return;
        };
        let Some(sym) = table
            .lookup("vfs_read")
            .first()
            .copied()
            .filter(|s| s.addr != 0)
        else {
            eprintln!("SKIPPED: /proc/kallsyms hides addresses (not root?)");
            return;
        };
        assert_eq!(&*s.kernel(sym.addr + 4), "vfs_read+0x4");
        assert!(s.has_kallsyms());
    }

    #[test]
    fn stacks_are_interned() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T start\nffffffff81000100 T next\nffffffff81000200 T last\n\
             ffffffffc0279010 T xfs_read\t[xfs]\nffffffffc0279100 T xfs_write\t[xfs]\n",
        );
        let mut s = Symbolizer::new(Some(Arc::new(k)));
        let raw = [0xffffffffc0279020, 0xffffffff81000110, 0xffffffff81000200];
        let first = s.kernel_stack(&raw, false, 0);
        // Frames after the first are return addresses: looked up a byte
        // back (0x…200 is still in `next`), offsets of the address itself.
        let frames: Vec<&str> = first.iter().map(|f| &**f).collect();
        assert_eq!(frames, ["xfs_read+0x10 [xfs]", "next+0x10", "next+0x100"]);
        let again = s.kernel_stack(&raw, false, 0);
        assert!(Stack::ptr_eq(&first, &again), "the same stack is shared");
        // Another stack, or the same addresses looked up differently, is not.
        let other = s.kernel_stack(&raw[..2], false, 0);
        assert!(!Stack::ptr_eq(&first, &other));
        assert_eq!(other.len(), 2);
        let after = s.kernel_stack(&raw, true, 0);
        assert!(!Stack::ptr_eq(&first, &after));
        assert_eq!(&*after[0], "xfs_read+0x10 [xfs]");
        assert!(Stack::ptr_eq(&after, &s.kernel_stack(&raw, true, 0)));
        // The caller's return address at a function's entry (arm64's x30)
        // goes second, and is part of the key.
        let entry = s.kernel_stack(
            &[0xffffffff81000100, 0xffffffff81000200],
            false,
            0xffffffff81000010,
        );
        let frames: Vec<&str> = entry.iter().map(|f| &**f).collect();
        assert_eq!(frames, ["next+0x0", "start+0x10", "next+0x100"]);
        assert!(!Stack::ptr_eq(
            &entry,
            &s.kernel_stack(&[0xffffffff81000100, 0xffffffff81000200], false, 0)
        ));

        // User stacks: keyed by pid and by the inserted return address too.
        let pid = std::process::id();
        let addr = marker as fn() -> u64 as usize as u64;
        let user = s.user_stack(pid, &[addr, addr + 1], false, 0);
        assert!(Stack::ptr_eq(
            &user,
            &s.user_stack(pid, &[addr, addr + 1], false, 0)
        ));
        let with_ret = s.user_stack(pid, &[addr, addr + 1], false, addr + 2);
        assert!(!Stack::ptr_eq(&user, &with_ret));
        assert_eq!((user.len(), with_ret.len()), (2, 3));
        let other_pid = s.user_stack(pid + 1, &[addr, addr + 1], false, 0);
        assert!(!Stack::ptr_eq(&user, &other_pid));
    }

    /// A user stack stops at a zero or unmapped return address, and after
    /// a frame of the program's start code.
    #[test]
    fn user_stacks_end_where_the_program_starts() {
        let mut s = Symbolizer::new(None);
        let pid = std::process::id();
        let addr = marker as fn() -> u64 as usize as u64;
        assert_eq!(
            s.user_stack(pid, &[addr, addr + 1, 0, addr], false, 0)
                .len(),
            2
        );
        // Page 0 is mapped in no process.
        assert_eq!(s.user_stack(pid, &[addr, 0x10, addr], false, 0).len(), 1);
        assert_eq!(s.user_stack(pid, &[addr, 0x10], false, addr + 1).len(), 2);
        for start in PROGRAM_START {
            assert!(is_program_start(&format!("{start}+0x80 (libc-start.c:58)")));
        }
        assert!(!is_program_start("main+0x10"));
        assert!(!is_program_start("_start_here+0x1"));
    }

    #[test]
    fn a_file_of_a_gone_process_is_the_path_itself() {
        let exe = std::env::current_exe().expect("current_exe");
        let gone = PathBuf::from(format!("/proc/{}/root{}", u32::MAX, exe.display()));
        assert_eq!(
            openable([gone.clone(), exe.clone()]),
            Some(exe.canonicalize().expect("canonical"))
        );
        assert_eq!(openable([gone]), None);
        let own = PathBuf::from(format!("/proc/self/root{}", exe.display()));
        assert_eq!(
            openable([own]),
            Some(exe.canonicalize().expect("canonical"))
        );
    }
}

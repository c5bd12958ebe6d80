//! Addresses to names: kernel addresses through kallsyms, user addresses
//! through the process's memory map and the symbol tables of its ELF files.
//! Every distinct address is symbolized once (per process for user ones), so
//! the cost does not grow with the number of hits.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::resolve::{ElfImage, Kallsyms, Mapping, is_kernel_address, maps};

/// Entries kept per cache before it is emptied (bounds memory on long runs).
const CACHE_LIMIT: usize = 1 << 20;
/// Processes whose maps are kept.
const PROCESS_LIMIT: usize = 4096;

#[derive(Default)]
struct ProcessMaps {
    maps: Vec<Mapping>,
    /// The process is gone: do not read /proc again.
    gone: bool,
}

/// Caching symbolizer for one tracing session.
pub struct Symbolizer {
    kallsyms: Option<Arc<Kallsyms>>,
    kernel_cache: HashMap<u64, Arc<str>>,
    user_cache: HashMap<(u32, u64), Arc<str>>,
    processes: HashMap<u32, ProcessMaps>,
    images: HashMap<PathBuf, Option<Arc<ElfImage>>>,
}

impl Symbolizer {
    pub fn new(kallsyms: Option<Arc<Kallsyms>>) -> Self {
        Self {
            kallsyms,
            kernel_cache: HashMap::new(),
            user_cache: HashMap::new(),
            processes: HashMap::new(),
            images: HashMap::new(),
        }
    }

    /// Remembers a process's maps now (for example right after arming), so
    /// its addresses can be named even after it exits.
    pub fn snapshot(&mut self, pid: u32) {
        if let Ok(maps) = maps::read_maps(pid as i32) {
            self.processes.insert(pid, ProcessMaps { maps, gone: false });
        }
    }

    /// `func+0x1f`, `func+0x1f [module]`, or the raw address.
    pub fn symbolize(&mut self, pid: u32, addr: u64) -> Arc<str> {
        if is_kernel_address(addr) {
            self.kernel(addr)
        } else {
            self.user(pid, addr)
        }
    }

    pub fn kernel(&mut self, addr: u64) -> Arc<str> {
        if let Some(name) = self.kernel_cache.get(&addr) {
            return name.clone();
        }
        let name: Arc<str> = match self.kallsyms.as_ref().and_then(|k| k.symbolize(addr)) {
            Some((sym, off)) => match &sym.module {
                Some(module) => format!("{}+{off:#x} [{module}]", sym.name),
                None => format!("{}+{off:#x}", sym.name),
            },
            None => format!("{addr:#x}"),
        }
        .into();
        if self.kernel_cache.len() >= CACHE_LIMIT {
            self.kernel_cache.clear();
        }
        self.kernel_cache.insert(addr, name.clone());
        name
    }

    pub fn user(&mut self, pid: u32, addr: u64) -> Arc<str> {
        if let Some(name) = self.user_cache.get(&(pid, addr)) {
            return name.clone();
        }
        let name: Arc<str> = self.user_uncached(pid, addr).into();
        if self.user_cache.len() >= CACHE_LIMIT {
            self.user_cache.clear();
        }
        self.user_cache.insert((pid, addr), name.clone());
        name
    }

    fn user_uncached(&mut self, pid: u32, addr: u64) -> String {
        let Some(mapping) = self.mapping(pid, addr) else {
            return format!("{addr:#x}");
        };
        let Some(path) = mapping.path.clone() else {
            return format!("{addr:#x}");
        };
        let file_offset = addr - mapping.start + mapping.offset;
        let short = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(image) = self.image(pid, &path) else {
            return format!("[{short}+{file_offset:#x}]");
        };
        match image.file_offset_to_vaddr(file_offset).and_then(|v| image.symbolize(v)) {
            Some((sym, off)) => format!("{}+{off:#x}", sym.display),
            None => format!("[{short}+{file_offset:#x}]"),
        }
    }

    fn mapping(&mut self, pid: u32, addr: u64) -> Option<Mapping> {
        if self.processes.len() >= PROCESS_LIMIT && !self.processes.contains_key(&pid) {
            self.processes.clear();
        }
        let entry = self.processes.entry(pid).or_default();
        let find = |maps: &[Mapping]| maps.iter().find(|m| addr >= m.start && addr < m.end).cloned();
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

    fn image(&mut self, pid: u32, path: &Path) -> Option<Arc<ElfImage>> {
        if let Some(image) = self.images.get(path) {
            return image.clone();
        }
        let in_root = PathBuf::from(format!("/proc/{pid}/root{}", path.display()));
        let image = ElfImage::load(&in_root).or_else(|_| ElfImage::load(path)).ok().map(Arc::new);
        self.images.insert(path.to_owned(), image.clone());
        image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn names_own_function() {
        let mut s = Symbolizer::new(None);
        let addr = marker as usize as u64;
        let name = s.user(std::process::id(), addr + 1);
        assert!(name.ends_with("symbolize::tests::marker+0x1"), "{name}");
        // Cached: the same Arc comes back.
        assert!(Arc::ptr_eq(&name, &s.user(std::process::id(), addr + 1)));
    }

    #[test]
    fn kernel_without_kallsyms_is_raw() {
        let mut s = Symbolizer::new(None);
        assert_eq!(&*s.kernel(0xffffffff81000000), "0xffffffff81000000");
        let k = Kallsyms::parse("ffffffff81000000 T start\nffffffff81000100 T next\n");
        let mut s = Symbolizer::new(Some(Arc::new(k)));
        assert_eq!(&*s.kernel(0xffffffff81000010), "start+0x10");
    }
}

//! Property tests (fuzzing) of the readers of what hwbp-trace, running as
//! root, takes from outside: ELF files (any binary a user names), and the
//! text of /proc/kallsyms and /proc/PID/maps.
//!
//! 256 cases per property in the normal test suite; `cargo xtask fuzz` runs
//! many more (PROPTEST_CASES).

use std::sync::OnceLock;

use hwbp::target::resolve::{
    ElfImage, Kallsyms, Mapping,
    maps::{mapped_files, parse_maps},
};
use proptest::prelude::*;

/// A small real ELF file to mutate: /usr/bin/true (dynamically linked,
/// with program headers, sections and dynamic symbols), or this test's
/// own executable when that is missing.
fn seed_elf() -> &'static [u8] {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        std::fs::read("/usr/bin/true")
            .or_else(|_| std::fs::read("/proc/self/exe"))
            .unwrap_or_else(|e| panic!("reading a seed ELF file: {e}"))
    })
}

/// Byte edits of the seed: overwrites, mostly in the first 4 KiB where the
/// ELF and program headers are, and cuts.
#[derive(Clone, Debug)]
enum Edit {
    /// (position as a fraction, bytes) written over the file.
    Overwrite(f64, Vec<u8>),
    /// The same within the first 4 KiB.
    Header(u16, Vec<u8>),
    /// A 64-bit value written over the headers (addresses, sizes, offsets).
    Word(u16, u64),
    Truncate(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let bytes = prop::collection::vec(any::<u8>(), 1..8);
    let extreme = prop_oneof![
        Just(u64::MAX),
        Just(u64::MAX - 7),
        Just(1u64 << 63),
        Just(0u64),
        any::<u64>()
    ];
    prop_oneof![
        (0.0..1.0f64, bytes.clone()).prop_map(|(f, b)| Edit::Overwrite(f, b)),
        (0..4096u16, bytes).prop_map(|(at, b)| Edit::Header(at, b)),
        (0..4096u16, extreme).prop_map(|(at, w)| Edit::Word(at, w)),
        (0.0..1.0f64).prop_map(Edit::Truncate),
    ]
}

fn apply(data: &mut Vec<u8>, edit: &Edit) {
    let overwrite = |data: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        for (i, b) in bytes.iter().enumerate() {
            if let Some(slot) = data.get_mut(at + i) {
                *slot = *b;
            }
        }
    };
    match edit {
        Edit::Overwrite(f, bytes) => {
            let at = (data.len() as f64 * f) as usize;
            overwrite(data, at, bytes);
        }
        Edit::Header(at, bytes) => overwrite(data, usize::from(*at), bytes),
        Edit::Word(at, word) => overwrite(data, usize::from(*at), &word.to_le_bytes()),
        Edit::Truncate(f) => data.truncate((data.len() as f64 * f) as usize),
    }
}

/// Addresses worth asking about: around the edges of u64 and anywhere.
fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0..0x10_0000u64,
        (u64::MAX - 0x1000)..=u64::MAX
    ]
}

/// Text made of the characters of /proc/kallsyms and /proc/PID/maps lines.
fn proc_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[0-9a-f]{1,16}",
            "[ \t\n\\-:\\[\\]/]",
            "[tTdDbBrRwWuU?]",
            "[a-z_.]{1,10}",
            ".{1,3}"
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// A kallsyms line, possibly with a module, addresses anywhere.
fn kallsyms_line() -> impl Strategy<Value = String> {
    (
        address(),
        "[tTdDbBrRwWu]",
        "[a-z_]{1,12}",
        prop::option::of("[a-z_]{1,8}"),
    )
        .prop_map(|(addr, letter, name, module)| match module {
            Some(m) => format!("{addr:016x} {letter} {name}\t[{m}]"),
            None => format!("{addr:016x} {letter} {name}"),
        })
}

/// A user-space address, as /proc/PID/maps shows them (below 2^47), often
/// page-aligned.
fn user_address() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..0x8000_0000_0000u64,
        (0..0x8_0000_0000u64).prop_map(|page| page << 12),
    ]
}

/// A mapping line as the kernel writes them: user-space addresses (start
/// above end included), a page-aligned file offset below 1 TiB.
fn maps_line() -> impl Strategy<Value = String> {
    (
        user_address(),
        user_address(),
        "[r-][w-][x-][ps]",
        (0..1u64 << 28).prop_map(|page| page << 12),
        prop::option::of("/[a-z/]{1,12}"),
    )
        .prop_map(|(start, end, perms, offset, path)| {
            format!(
                "{start:x}-{end:x} {perms} {offset:08x} fe:01 123 {}",
                path.unwrap_or_default()
            )
        })
}

proptest! {
    /// A damaged ELF file is refused or read; either way nothing panics,
    /// and every question about the result gets an answer.
    #[test]
    fn damaged_elf_never_panics(
        edits in prop::collection::vec(edit(), 1..6),
        maps in prop::collection::vec(maps_line(), 0..6),
        addrs in prop::collection::vec(address(), 1..6),
    ) {
        let mut data = seed_elf().to_vec();
        for e in &edits {
            apply(&mut data, e);
        }
        if let Ok(image) = ElfImage::parse(&data) {
            for &addr in &addrs {
                let _ = image.symbolize(addr);
                let _ = image.vaddr_to_file_offset(addr);
                let _ = image.file_offset_to_vaddr(addr);
            }
            if let Some(sym) = image.symbols().first() {
                let _ = image.lookup(&sym.name.clone());
            }
            let _ = image.suggest("main", 5);
            map_through(&image, &maps, &addrs);
        }
    }

    /// Addresses of a real ELF file mapped through any mappings the kernel
    /// could show: no panic.
    #[test]
    fn elf_addresses_through_any_mappings(
        maps in prop::collection::vec(maps_line(), 0..6),
        addrs in prop::collection::vec(prop_oneof![address(), user_address()], 1..6),
    ) {
        let image = ElfImage::parse(seed_elf()).map_err(TestCaseError::fail)?;
        map_through(&image, &maps, &addrs);
    }

    /// Any text as /proc/kallsyms: parsed or skipped line by line, and
    /// lookups and symbolization of any address never panic.
    #[test]
    fn kallsyms_text_never_panics(text in proc_text(), addrs in prop::collection::vec(address(), 1..4)) {
        let k = Kallsyms::parse(&text);
        for &addr in &addrs {
            let _ = k.symbolize(addr);
        }
        let _ = k.is_restricted();
        let _ = k.suggest("vfs_read", 5);
    }

    /// Well-formed kallsyms lines with addresses anywhere (the last symbol
    /// near u64::MAX included): every symbol is found by name and its own
    /// address symbolizes to a symbol at that address.
    #[test]
    fn kallsyms_lines(lines in prop::collection::vec(kallsyms_line(), 1..20), addrs in prop::collection::vec(address(), 1..4)) {
        let k = Kallsyms::parse(lines.join("\n"));
        prop_assert_eq!(k.len(), lines.len());
        for sym in k.symbols() {
            prop_assert!(k.lookup(sym.name).iter().any(|s| s.addr == sym.addr));
            if let Some((found, offset)) = k.symbolize(sym.addr) {
                prop_assert_eq!(found.addr, sym.addr);
                prop_assert_eq!(offset, 0);
            }
        }
        for &addr in &addrs {
            if let Some((found, offset)) = k.symbolize(addr) {
                prop_assert_eq!(found.addr.checked_add(offset), Some(addr));
            }
        }
    }

    /// Any text as /proc/PID/maps: no panic; well-formed lines all parse.
    #[test]
    fn maps_text_never_panics(text in proc_text(), lines in prop::collection::vec(maps_line(), 0..8)) {
        let _ = mapped_files(&parse_maps(&text));
        prop_assert_eq!(parse_maps(&lines.join("\n")).len(), lines.len());
    }
}

/// Runtime and link-time addresses of `addrs` and of the image's first
/// symbols through the mappings of `maps` (lines of /proc/PID/maps).
fn map_through(image: &ElfImage, maps: &[String], addrs: &[u64]) {
    let maps = parse_maps(&maps.join("\n"));
    let refs: Vec<&Mapping> = maps.iter().collect();
    let symbols: Vec<u64> = image.symbols().iter().map(|s| s.addr).take(8).collect();
    for &addr in addrs.iter().chain(&symbols) {
        let _ = image.runtime_address(&refs, addr);
        let _ = image.link_address(&refs, addr);
    }
}

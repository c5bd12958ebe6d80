//! Where the names of a stripped ELF file are: a separate debug file, found
//! by the file's build ID or its `.gnu_debuglink`, or the MiniDebugInfo the
//! file carries itself (`.gnu_debugdata`).
//!
//! Distributions strip their executables and libraries and ship the
//! symbols apart: Debian's `-dbgsym` packages install
//! `/usr/lib/debug/.build-id/xx/rest.debug`, a developer's `objcopy
//! --only-keep-debug` + `--add-gnu-debuglink` leaves `prog.debug` beside
//! `prog`, and Fedora keeps a small xz-compressed symbol table of the
//! functions in the file itself. Without this module such a program's own
//! functions and variables are "unknown symbol". The lookup order is gdb's
//! ("Separate Debug Files" in its manual): the file's own `.symtab`, then
//! its `.dynsym` (both read by [`super::ElfImage`]), then the debug file
//! named by the build ID, then the one named by `.gnu_debuglink` (in the
//! file's directory, its `.debug/` subdirectory, then the debug root plus
//! the file's directory), its CRC32 checked so that a stale copy left
//! after a rebuild is skipped rather than trusted, then MiniDebugInfo.
//! A debug file holds the same link addresses as the stripped file, so the
//! load-bias arithmetic of elf.rs applies unchanged: only the names come
//! from elsewhere.
//!
//! The debug root is /usr/lib/debug, or `$HWBP_DEBUG_ROOT` (tests and
//! unusual installs: docs/usage.md).
//!
//! blazesym (symbolize.rs) follows `.gnu_debuglink` on its own, but only
//! that: not a build ID alone, not the `.debug/` subdirectory, not
//! MiniDebugInfo, and a checksum mismatch fails the whole lookup instead
//! of moving on to the next candidate. So the finding is done here, once,
//! for targets, `list`, stack frames and parameters alike, and blazesym is
//! handed the debug file found here to read its DWARF (file:line, inlined
//! calls).

use std::{
    ffi::OsStr,
    fmt, fs,
    io::{self, Write},
    os::unix::ffi::OsStrExt as _,
    path::{Component, Path, PathBuf},
};

use object::Object as _;

/// Where distributions install debug files.
pub const DEFAULT_DEBUG_ROOT: &str = "/usr/lib/debug";
/// Overrides [`DEFAULT_DEBUG_ROOT`].
pub const DEBUG_ROOT_ENV: &str = "HWBP_DEBUG_ROOT";
/// The most a MiniDebugInfo section may decompress to: a symbol table of
/// functions is a few MiB even for the largest programs; a crafted section
/// must not fill the memory.
const MINI_LIMIT: usize = 256 << 20;

/// The debug root: `$HWBP_DEBUG_ROOT`, else /usr/lib/debug.
pub fn debug_root() -> PathBuf {
    std::env::var_os(DEBUG_ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_DEBUG_ROOT), PathBuf::from)
}

/// How the names of a stripped file were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// `<root>/.build-id/xx/rest.debug`.
    BuildId(PathBuf),
    /// A file named by `.gnu_debuglink`, its checksum matching.
    DebugLink(PathBuf),
    /// The file's own `.gnu_debugdata`.
    MiniDebugInfo,
}

impl Found {
    /// The separate file, if the names are in one (it may hold DWARF too).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::BuildId(path) | Self::DebugLink(path) => Some(path),
            Self::MiniDebugInfo => None,
        }
    }
}

/// The path as the traced process sees it (a file read through its
/// `/proc/PID/root` is named as it is mapped).
impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |path: &Path| Path::new("/").join(within_process_root(path));
        match self {
            Self::BuildId(path) => write!(f, "{} (build ID)", shown(path).display()),
            Self::DebugLink(path) => write!(f, "{} (.gnu_debuglink)", shown(path).display()),
            Self::MiniDebugInfo => f.write_str("its MiniDebugInfo (.gnu_debugdata)"),
        }
    }
}

/// The debug symbols of a stripped file: how they were found, and the ELF
/// file that holds them (read into memory, or decompressed).
#[derive(Debug)]
pub struct DebugSymbols {
    pub found: Found,
    pub data: Vec<u8>,
}

/// The separate debug file of `file` (read from `path`), by build ID and
/// then by `.gnu_debuglink`, under `root`; MiniDebugInfo is not looked at
/// (see [`find`]).
pub fn find_separate(path: &Path, file: &object::File<'_>, root: &Path) -> Option<DebugSymbols> {
    let build_id = file.build_id().ok().flatten();
    if let Some(id) = build_id
        && let Some(found) = by_build_id(root, id)
    {
        return Some(found);
    }
    let (name, crc) = file.gnu_debuglink().ok().flatten()?;
    by_debuglink(path, OsStr::from_bytes(name), crc, root)
}

/// Every place for the names of `file` after its own tables, in order:
/// [`find_separate`], then MiniDebugInfo.
pub fn find(path: &Path, file: &object::File<'_>, root: &Path) -> Option<DebugSymbols> {
    find_separate(path, file, root).or_else(|| {
        mini_debuginfo(file).map(|data| DebugSymbols {
            found: Found::MiniDebugInfo,
            data,
        })
    })
}

/// `<root>/.build-id/xx/rest.debug` of a build ID (None for IDs too short
/// to split, which no linker writes).
pub fn build_id_path(root: &Path, id: &[u8]) -> Option<PathBuf> {
    let (first, rest) = id.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let rest: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    Some(
        root.join(".build-id")
            .join(format!("{first:02x}"))
            .join(format!("{rest}.debug")),
    )
}

/// The debug file of build ID `id` under `root`, if it is there and is the
/// ELF file of the same build.
fn by_build_id(root: &Path, id: &[u8]) -> Option<DebugSymbols> {
    let path = build_id_path(root, id)?;
    let data = fs::read(&path).ok()?;
    let same = object::File::parse(&*data)
        .ok()
        .and_then(|f| f.build_id().ok().flatten())
        == Some(id);
    if !same {
        log::debug!(
            "ignoring {}: not an ELF file of build ID {}",
            path.display(),
            hex(id)
        );
        return None;
    }
    Some(DebugSymbols {
        found: Found::BuildId(path),
        data,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where `.gnu_debuglink` = `name` of the file at `path` may be, in gdb's
/// order: beside the file, in its `.debug/` subdirectory, and under the
/// debug root at the file's own directory. A path under
/// `/proc/PID/root` (a process's file, read through its root) counts from
/// that root for the last place.
pub fn debuglink_candidates(path: &Path, name: &OsStr, root: &Path) -> Vec<PathBuf> {
    // A debuglink is a file name: one with directories in it (or `..`)
    // could point anywhere.
    let mut parts = Path::new(name).components();
    if !matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) {
        return Vec::new();
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut out = vec![dir.join(name), dir.join(".debug").join(name)];
    let inside: PathBuf = within_process_root(dir)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    out.push(root.join(inside).join(name));
    // The file itself is never its own debug file.
    out.retain(|c| c != path);
    out
}

/// `dir` as the process sees it: without a leading `/proc/PID/root` (then
/// relative).
fn within_process_root(dir: &Path) -> &Path {
    let mut parts = dir.components();
    let prefix = [parts.next(), parts.next(), parts.next(), parts.next()];
    match prefix {
        [
            Some(Component::RootDir),
            Some(Component::Normal(proc)),
            Some(Component::Normal(pid)),
            Some(Component::Normal(root)),
        ] if proc == "proc" && root == "root" && pid.as_bytes().iter().all(u8::is_ascii_digit) => {
            parts.as_path()
        }
        _ => dir,
    }
}

/// The first candidate of [`debuglink_candidates`] whose CRC32 is `crc`.
fn by_debuglink(path: &Path, name: &OsStr, crc: u32, root: &Path) -> Option<DebugSymbols> {
    for candidate in debuglink_candidates(path, name, root) {
        let Ok(data) = fs::read(&candidate) else {
            continue;
        };
        let actual = crc32fast::hash(&data);
        if actual != crc {
            log::debug!(
                "ignoring {}: its CRC32 is {actual:#010x}, {}'s .gnu_debuglink wants {crc:#010x} \
                 (a debug file of another build)",
                candidate.display(),
                path.display()
            );
            continue;
        }
        return Some(DebugSymbols {
            found: Found::DebugLink(candidate),
            data,
        });
    }
    None
}

/// The ELF file inside `.gnu_debugdata`, decompressed.
pub fn mini_debuginfo(file: &object::File<'_>) -> Option<Vec<u8>> {
    use object::ObjectSection as _;
    let section = file.section_by_name(".gnu_debugdata")?;
    let xz = section.data().ok()?;
    match decompress_xz(xz) {
        Ok(data) => Some(data),
        Err(e) => {
            log::debug!("ignoring .gnu_debugdata: {e}");
            None
        }
    }
}

/// Decompresses an xz stream of at most [`MINI_LIMIT`] bytes.
pub fn decompress_xz(mut xz: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Capped {
        data: Vec::new(),
        limit: MINI_LIMIT,
    };
    lzma_rs::xz_decompress(&mut xz, &mut out).map_err(|e| format!("not an xz stream ({e})"))?;
    Ok(out.data)
}

/// A `Vec` that refuses to grow past `limit` bytes.
struct Capped {
    data: Vec<u8>,
    limit: usize,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.data.len().saturating_add(buf.len()) > self.limit {
            return Err(io::Error::other(format!(
                "decompresses to more than {} MiB",
                self.limit >> 20
            )));
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("hwbp-debugfile-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("temp dir");
            Self(dir)
        }

        fn write(&self, rel: &str, data: &[u8]) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, data).expect("write");
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn build_id_paths_split_the_first_byte() {
        assert_eq!(
            build_id_path(Path::new("/usr/lib/debug"), &[0xab, 0xcd, 0xef, 0x01]),
            Some(PathBuf::from("/usr/lib/debug/.build-id/ab/cdef01.debug"))
        );
        assert_eq!(build_id_path(Path::new("/r"), &[0xab]), None);
        assert_eq!(build_id_path(Path::new("/r"), &[]), None);
    }

    #[test]
    fn debuglink_candidates_in_gdbs_order() {
        let got = debuglink_candidates(
            Path::new("/opt/app/bin/prog"),
            OsStr::new("prog.debug"),
            Path::new("/usr/lib/debug"),
        );
        assert_eq!(
            got,
            [
                "/opt/app/bin/prog.debug",
                "/opt/app/bin/.debug/prog.debug",
                "/usr/lib/debug/opt/app/bin/prog.debug",
            ]
            .map(PathBuf::from)
        );
        // Read through a process's root: the debug root's part counts
        // from that root.
        let got = debuglink_candidates(
            Path::new("/proc/4242/root/usr/bin/prog"),
            OsStr::new("prog.debug"),
            Path::new("/usr/lib/debug"),
        );
        assert_eq!(got[2], PathBuf::from("/usr/lib/debug/usr/bin/prog.debug"));
        // A name that is a path, or the file itself, is no candidate.
        for name in ["../x", "..", ".", "a/b", "/abs", ""] {
            assert!(
                debuglink_candidates(Path::new("/a/p"), OsStr::new(name), Path::new("/r"))
                    .is_empty(),
                "{name}"
            );
        }
        let got = debuglink_candidates(Path::new("/a/p"), OsStr::new("p"), Path::new("/r"));
        assert_eq!(got, ["/a/.debug/p", "/r/a/p"].map(PathBuf::from));
    }

    /// The first candidate whose checksum matches wins: one of another
    /// build (a stale copy beside the file) is skipped for the next.
    #[test]
    fn debuglink_search_skips_a_checksum_mismatch() {
        let dir = Dir::new("crc");
        let root = dir.0.join("root");
        let prog = dir.write("bin/prog", b"stripped");
        let good = b"the right debug file";
        let crc = crc32fast::hash(good);
        let stale = dir.write("bin/prog.debug", b"an old build's debug file");
        let sub = dir.write("bin/.debug/prog.debug", good);
        let found = by_debuglink(&prog, OsStr::new("prog.debug"), crc, &root).expect("found");
        assert_eq!(found.found, Found::DebugLink(sub.clone()));
        assert_eq!(found.data, good);
        // With the right one beside the file too, beside wins.
        fs::write(&stale, good).expect("write");
        let found = by_debuglink(&prog, OsStr::new("prog.debug"), crc, &root).expect("found");
        assert_eq!(found.found, Found::DebugLink(stale.clone()));
        // Only under the debug root.
        fs::remove_file(&stale).expect("rm");
        fs::remove_file(&sub).expect("rm");
        let rel: PathBuf = dir
            .0
            .join("bin")
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let under_root = root.join(rel).join("prog.debug");
        fs::create_dir_all(under_root.parent().expect("parent")).expect("mkdir");
        fs::write(&under_root, good).expect("write");
        let found = by_debuglink(&prog, OsStr::new("prog.debug"), crc, &root).expect("found");
        assert_eq!(found.found, Found::DebugLink(under_root.clone()));
        // Nothing matches: nothing found.
        assert!(by_debuglink(&prog, OsStr::new("prog.debug"), crc ^ 1, &root).is_none());
    }

    /// The build-ID path is taken only for an ELF file of that build ID:
    /// this test binary's own, linked there.
    #[test]
    fn build_id_file_must_carry_the_same_id() {
        let exe = std::env::current_exe().expect("current_exe");
        let data = fs::read(&exe).expect("read self");
        let file = object::File::parse(&*data).expect("ELF");
        let Some(id) = file.build_id().expect("notes") else {
            panic!(
                "{} has no build ID: the linker should write one",
                exe.display()
            );
        };
        let dir = Dir::new("buildid");
        let path = build_id_path(&dir.0, id).expect("path");
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(&exe, &path).expect("symlink");
        let found = by_build_id(&dir.0, id).expect("found");
        assert_eq!(found.found, Found::BuildId(path.clone()));
        assert_eq!(found.data.len(), data.len());
        // Another ID's file at that path is refused.
        let mut other = id.to_vec();
        other[0] ^= 1;
        let wrong = build_id_path(&dir.0, &other).expect("path");
        fs::create_dir_all(wrong.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(&exe, &wrong).expect("symlink");
        assert!(by_build_id(&dir.0, &other).is_none());
        // find_separate looks there first.
        let found = find_separate(Path::new("/nonexistent/prog"), &file, &dir.0).expect("found");
        assert_eq!(found.found, Found::BuildId(path));
    }

    #[test]
    fn xz_is_decoded_and_bounded() {
        let plain = b"\x7fELF and what follows".repeat(100);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &plain[..], &mut xz).expect("compress");
        assert_eq!(decompress_xz(&xz).as_deref(), Ok(&plain[..]));
        assert!(decompress_xz(b"not xz").is_err());
        let mut small = Capped {
            data: Vec::new(),
            limit: 100,
        };
        assert!(lzma_rs::xz_decompress(&mut &xz[..], &mut small).is_err());
    }

    /// Runs a tool; false (after saying so on stderr) when it is missing.
    fn tool(args: &[&str], dir: &Path) -> bool {
        match std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(dir)
            .output()
        {
            Ok(o) if o.status.success() => true,
            Ok(o) => panic!("{args:?}: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => {
                // Straight to fd 2: libtest hides the print macros.
                let _ = io::stderr()
                    .write_all(format!("\nSKIPPED: {} ({e}); NOT tested\n", args[0]).as_bytes());
                false
            }
        }
    }

    const PROGRAM: &str = "volatile int counter;\n\
        __attribute__((noinline)) void bump(void) { counter++; }\n\
        int main(void) { bump(); return 0; }\n";

    /// A stripped program whose names are in a build-ID debug file, then in
    /// its MiniDebugInfo only (made as gdb's manual says, xz by lzma-rs):
    /// [`super::super::ElfImage::load`] finds each, in that order, and
    /// says where each name came from.
    #[test]
    fn a_stripped_programs_names_from_build_id_then_minidebuginfo() {
        use super::super::{ElfImage, elf::Origin};
        let dir = Dir::new("program");
        fs::write(dir.0.join("prog.c"), PROGRAM).expect("write");
        if !tool(&["gcc", "-O1", "-g", "prog.c", "-o", "prog"], &dir.0) {
            return;
        }
        let prog = dir.0.join("prog");
        let data = fs::read(&prog).expect("read");
        let id = object::File::parse(&*data)
            .expect("ELF")
            .build_id()
            .expect("notes")
            .expect("gcc writes a build ID")
            .to_vec();
        let root = dir.0.join("root");
        let debug = build_id_path(&root, &id).expect("path");
        fs::create_dir_all(debug.parent().expect("parent")).expect("mkdir");
        let debug_arg = debug.display().to_string();
        assert!(tool(
            &["objcopy", "--only-keep-debug", "prog", &debug_arg],
            &dir.0
        ));
        assert!(tool(
            &["objcopy", "--only-keep-debug", "prog", "mini"],
            &dir.0
        ));
        fs::write(dir.0.join("keep"), "bump\nmain\n").expect("write");
        assert!(tool(
            &["objcopy", "-S", "--keep-symbols=keep", "mini"],
            &dir.0
        ));
        assert!(tool(&["strip", "--strip-all", "prog"], &dir.0));
        let mini = fs::read(dir.0.join("mini")).expect("read");
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &mini[..], &mut xz).expect("compress");
        fs::write(dir.0.join("mini.xz"), xz).expect("write");
        assert!(tool(
            &["objcopy", "--add-section", ".gnu_debugdata=mini.xz", "prog"],
            &dir.0
        ));

        let image = ElfImage::load_with_debug_root(&prog, &root).expect("load");
        assert_eq!(image.debug(), Some(&Found::BuildId(debug.clone())));
        for name in ["bump", "counter"] {
            let found = image.lookup(name);
            assert_eq!(found.len(), 1, "{name}");
            assert_eq!(found[0].origin, Origin::Debug, "{name}");
            assert_eq!(
                image.origin_text(found[0], &prog),
                format!("{} (build ID)", debug.display())
            );
        }
        assert_eq!(image.stripped_note(&prog), None);

        // Without the debug file: the MiniDebugInfo, functions only.
        fs::remove_file(&debug).expect("rm");
        let image = ElfImage::load_with_debug_root(&prog, &root).expect("load");
        assert_eq!(image.debug(), Some(&Found::MiniDebugInfo));
        let bump = image.lookup("bump");
        assert_eq!(bump.len(), 1);
        assert_eq!(
            image.origin_text(bump[0], &prog),
            format!("the MiniDebugInfo (.gnu_debugdata) of {}", prog.display())
        );
        assert_eq!(
            image
                .symbolize(bump[0].addr + 1)
                .map(|(s, o)| (s.name.as_str(), o)),
            Some(("bump", 1))
        );
        assert!(image.lookup("counter").is_empty());
        let note = image.stripped_note(&prog).expect("a note");
        assert!(
            note.contains("MiniDebugInfo, which holds functions"),
            "{note}"
        );

        // Neither: only .dynsym, and the note says what to install.
        assert!(tool(
            &["objcopy", "--remove-section", ".gnu_debugdata", "prog"],
            &dir.0
        ));
        let image = ElfImage::load_with_debug_root(&prog, &root).expect("load");
        assert_eq!(image.debug(), None);
        assert!(image.lookup("bump").is_empty());
        let note = image.stripped_note(&prog).expect("a note");
        assert!(note.contains("no debug file of it was found"), "{note}");
    }
}

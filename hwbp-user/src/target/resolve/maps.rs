//! /proc/PID/maps: where each ELF file of a process is mapped.

use std::{fs, io, path::PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    pub executable: bool,
    /// The mapped file; None for anonymous memory, `[stack]`, `[vdso]`, …
    pub path: Option<PathBuf>,
}

pub fn read_maps(pid: i32) -> io::Result<Vec<Mapping>> {
    fs::read_to_string(format!("/proc/{pid}/maps")).map(|text| parse_maps(&text))
}

pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, ' ');
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?;
            let offset = fields.next()?;
            let _dev = fields.next()?;
            let _inode = fields.next()?;
            let path = fields.next().map(str::trim_start).unwrap_or("");
            let path = (path.starts_with('/') && !path.ends_with(" (deleted)"))
                .then(|| PathBuf::from(path));
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                executable: perms.as_bytes().get(2) == Some(&b'x'),
                path,
            })
        })
        .collect()
}

/// The distinct files mapped, in address order (main executable first for a
/// normal process).
pub fn mapped_files(maps: &[Mapping]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for path in maps.iter().filter_map(|m| m.path.as_ref()) {
        if !files.contains(path) {
            files.push(path.clone());
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 123 /usr/bin/app
55d0c0a01000-55d0c0a05000 r-xp 00001000 fe:01 123 /usr/bin/app
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7f1000000000-7f1000100000 r-xp 00028000 fe:01 456                        /usr/lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[1].start, 0x55d0c0a01000);
        assert_eq!(maps[1].offset, 0x1000);
        assert!(maps[1].executable && !maps[0].executable);
        assert_eq!(maps[2].path, None);
        assert_eq!(
            maps[3].path.as_deref(),
            Some(std::path::Path::new("/usr/lib/libc.so.6"))
        );
        assert_eq!(maps[4].path, None);
        assert_eq!(
            mapped_files(&maps),
            vec![
                PathBuf::from("/usr/bin/app"),
                PathBuf::from("/usr/lib/libc.so.6")
            ]
        );
    }
}

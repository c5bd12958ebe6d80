//! A newc ("070701") cpio writer: the format the kernel unpacks as an
//! initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Entries are collected first, then written parents-first, so callers may
//! add files in any order; missing parent directories are created.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
    CharDevice { major: u32, minor: u32, mode: u32 },
}

#[derive(Default)]
pub struct Archive {
    /// Paths without the leading slash.
    entries: BTreeMap<String, Entry>,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

fn normalize(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_owned()
}

impl Archive {
    /// Adds `path` and its missing parent directories; a later entry for the
    /// same path replaces an earlier one.
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = normalize(path);
        let mut parent = String::new();
        let components: Vec<&str> = path.split('/').collect();
        for component in &components[..components.len().saturating_sub(1)] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            self.entries.entry(parent.clone()).or_insert(Entry::Dir);
        }
        if !path.is_empty() {
            self.entries.insert(path, entry);
        }
    }

    pub fn dir(&mut self, path: &str) {
        self.add(path, Entry::Dir);
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.add(path, Entry::File { data, mode });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.add(
            path,
            Entry::Symlink {
                target: target.to_owned(),
            },
        );
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(&normalize(path))
    }

    /// Writes the archive: directories first (sorted, so parents precede
    /// children), then everything else, then the trailer.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut writer = Writer { out, ino: 1 };
        let dirs = self.entries.iter().filter(|(_, e)| **e == Entry::Dir);
        let others = self.entries.iter().filter(|(_, e)| **e != Entry::Dir);
        for (path, entry) in dirs.chain(others) {
            writer.entry(path, entry)?;
        }
        writer.header("TRAILER!!!", 0, 0, 0, 0)?;
        Ok(())
    }
}

struct Writer<'a, W: Write> {
    out: &'a mut W,
    ino: u32,
}

impl<W: Write> Writer<'_, W> {
    fn entry(&mut self, path: &str, entry: &Entry) -> io::Result<()> {
        match entry {
            Entry::Dir => self.header(path, S_IFDIR | 0o755, 0, 2, 0),
            Entry::File { data, mode } => {
                self.header(path, S_IFREG | (mode & 0o7777), data.len(), 1, 0)?;
                self.out.write_all(data)?;
                self.pad(data.len())
            }
            Entry::Symlink { target } => {
                self.header(path, S_IFLNK | 0o777, target.len(), 1, 0)?;
                self.out.write_all(target.as_bytes())?;
                self.pad(target.len())
            }
            Entry::CharDevice { major, minor, mode } => {
                let rdev = (u64::from(*major) << 32) | u64::from(*minor);
                self.header(path, S_IFCHR | (mode & 0o7777), 0, 1, rdev)
            }
        }
    }

    /// One newc header and the name; `rdev` packs major (high) and minor (low).
    fn header(
        &mut self,
        name: &str,
        mode: u32,
        size: usize,
        nlink: u32,
        rdev: u64,
    ) -> io::Result<()> {
        let size = u32::try_from(size)
            .map_err(|_| io::Error::other(format!("{name}: larger than 4 GiB")))?;
        let ino = self.ino;
        self.ino += 1;
        let rdev_major = (rdev >> 32) as u32;
        let rdev_minor = (rdev & 0xffff_ffff) as u32;
        let name_size = name.len() + 1;
        write!(
            self.out,
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {dev_major:08x}{dev_minor:08x}{rdev_major:08x}{rdev_minor:08x}{name_size:08x}{check:08x}",
            uid = 0,
            gid = 0,
            mtime = 0,
            dev_major = 0,
            dev_minor = 0,
            check = 0,
        )?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        // The header (110 bytes) plus the name is padded to a multiple of 4.
        self.pad(110 + name_size)
    }

    fn pad(&mut self, len: usize) -> io::Result<()> {
        let padding = (4 - len % 4) % 4;
        self.out.write_all(&[0; 3][..padding])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_newc() {
        let mut archive = Archive::default();
        archive.file("/bin/x", b"abcde".to_vec(), 0o755);
        let mut bytes = Vec::new();
        archive
            .write(&mut bytes)
            .expect("writing to a Vec cannot fail");
        // "bin" directory first, then the file, then the trailer.
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        let bin = text.find("bin\0").expect("directory entry");
        let file = text.find("bin/x\0").expect("file entry");
        let trailer = text.find("TRAILER!!!\0").expect("trailer");
        assert!(bin < file && file < trailer);
        // The file's header: mode 0100755, size 5.
        let header = &text[file - 110..file];
        assert_eq!(&header[14..22], "000081ed");
        assert_eq!(&header[54..62], "00000005");
        // Data starts on a 4-byte boundary right after the padded name.
        let data = text.find("abcde").expect("file data");
        assert_eq!(data % 4, 0);
    }

    #[test]
    fn round_trips_through_cpio() {
        // The real tool, when present, must list what we wrote.
        let mut archive = Archive::default();
        archive.file("etc/a", b"1".to_vec(), 0o644);
        archive.symlink("bin/sh", "busybox");
        archive.add(
            "dev/console",
            Entry::CharDevice {
                major: 5,
                minor: 1,
                mode: 0o600,
            },
        );
        let mut bytes = Vec::new();
        archive
            .write(&mut bytes)
            .expect("writing to a Vec cannot fail");
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("cpio not installed: skipping the round trip");
            return;
        };
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(&bytes)
            .expect("feeding cpio");
        let out = child.wait_with_output().expect("cpio ran");
        assert!(out.status.success());
        let listing = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = listing.lines().collect();
        assert_eq!(
            names,
            ["bin", "dev", "etc", "bin/sh", "dev/console", "etc/a"]
        );
    }
}

//! What the fixtures print about what they did (tests/src/bin/fx_*.rs),
//! read back as the ground truth a trace is checked against.

use anyhow::{Context as _, Result, anyhow, ensure};
use serde_json::Value;

use super::trace::text_field;

/// The numbers a fixture printed (`stdout`) after `prefix` (`wrote 100000`).
pub fn printed(stdout: &str, prefix: &str) -> Result<Vec<u64>> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .map(|n| {
            n.trim()
                .parse()
                .with_context(|| format!("fixture printed {n:?}"))
        })
        .collect()
}

/// What `fx_kernel read-as COMM PATH N` printed: its buffer, the byte count
/// it asked for, and one line per read.
pub struct FixtureReads {
    pub buf: u64,
    pub count: u64,
    pub reads: usize,
}

impl FixtureReads {
    pub fn parse(stdout: &str) -> Result<Self> {
        let (buf, count) = stdout
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix("buf 0x")?;
                let (buf, count) = rest.split_once(" count ")?;
                Some((u64::from_str_radix(buf, 16).ok()?, count.parse().ok()?))
            })
            .ok_or_else(|| anyhow!("the fixture printed no `buf ADDR count N` line:\n{stdout}"))?;
        let reads = stdout
            .lines()
            .filter(|line| line.starts_with("read "))
            .count();
        Ok(Self { buf, count, reads })
    }

    /// The hit is one of the fixture's vfs_read calls: vfs_read's first
    /// byte, the arguments named and typed from the kernel's BTF, `buf` and
    /// `count` what the fixture passed to read(2).
    pub fn expect_vfs_read(&self, hit: &Value) -> Result<()> {
        ensure!(
            text_field(hit, "ip_sym")? == "vfs_read+0x0",
            "ip_sym is not vfs_read's first byte: {hit}"
        );
        let args = hit["args"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let named: Vec<(&str, &str)> = args
            .iter()
            .map(|arg| {
                (
                    arg["name"].as_str().unwrap_or(""),
                    arg["type"].as_str().unwrap_or(""),
                )
            })
            .collect();
        ensure!(
            named
                == [
                    ("file", "struct file *"),
                    ("buf", "char *"),
                    ("count", "size_t"),
                    ("pos", "loff_t *"),
                ],
            "expected vfs_read(struct file *file, char *buf, size_t count, loff_t *pos) from \
             BTF, got {named:?}: {hit}"
        );
        let value = |i: usize| text_field(&args[i], "value");
        let pointer = |i: usize| -> Result<u64> {
            let text = value(i)?;
            u64::from_str_radix(text.trim_start_matches("0x"), 16)
                .with_context(|| format!("argument {i} is not a hex pointer: {hit}"))
        };
        // Kernel pointers (the upper half of the address space).
        ensure!(
            pointer(0)? >= KERNEL_HALF && pointer(3)? >= KERNEL_HALF,
            "file and pos are not kernel pointers: {hit}"
        );
        ensure!(
            pointer(1)? == self.buf,
            "buf is not the fixture's buffer {:#x}: {hit}",
            self.buf
        );
        ensure!(
            value(2)? == self.count.to_string(),
            "count is not the fixture's {}: {hit}",
            self.count
        );
        Ok(())
    }
}

/// Where x86-64 kernel addresses start with 5-level paging (canonical upper
/// half of 57 bits: QEMU's `-cpu max` has LA57, so the guest's direct map
/// sits at 0xff…); with 4 levels they start higher, at 0xffff_8000_0000_0000.
pub const KERNEL_HALF: u64 = 0xff00_0000_0000_0000;

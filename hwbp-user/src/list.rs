//! `hwbp-trace list PATTERN`: symbols a target can name.

use std::io::{self, Write};

use anyhow::{Context as _, Result};

use crate::resolve::{ElfImage, Kallsyms, ProcessImage, SymbolKind};

fn matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return name.contains(pattern);
    }
    // Simple wildcard match.
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], n) || (!n.is_empty() && rec(p, &n[1..])),
            (Some(b'?'), Some(_)) => rec(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &n[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
}

/// One line: address, kind, size, name and where the symbol lives.
fn row(
    out: &mut impl Write,
    addr: u64,
    kind: SymbolKind,
    size: u64,
    name: &str,
    object: impl std::fmt::Display,
) -> io::Result<()> {
    let kind = match kind {
        SymbolKind::Function => "function",
        SymbolKind::Object => "object",
        SymbolKind::Unknown => "other",
    };
    writeln!(out, "{addr:#018x} {kind:<8} {size:>8} {name} [{object}]")
}

pub fn run(pattern: &str, pid: Option<i32>, binary: Option<&std::path::Path>) -> Result<usize> {
    let mut out = io::stdout().lock();
    let mut count = 0;
    if let Some(path) = binary {
        let image = ElfImage::load(path)?;
        for s in image
            .symbols()
            .iter()
            .filter(|s| matches(pattern, &s.display))
        {
            row(&mut out, s.addr, s.kind, s.size, &s.display, path.display())?;
            count += 1;
        }
    } else if let Some(pid) = pid {
        let mut process = ProcessImage::open(pid)?;
        for path in process.files() {
            let Ok(image) = process.image(&path) else {
                continue;
            };
            for s in image
                .symbols()
                .iter()
                .filter(|s| matches(pattern, &s.display))
            {
                let addr = process
                    .runtime_address(&path, &image, s.addr)
                    .unwrap_or(s.addr);
                row(&mut out, addr, s.kind, s.size, &s.display, path.display())?;
                count += 1;
            }
        }
    } else {
        let kallsyms = Kallsyms::load().context("reading /proc/kallsyms")?;
        for s in kallsyms.symbols().filter(|s| matches(pattern, s.name)) {
            let module = s.module.unwrap_or("kernel");
            row(&mut out, s.addr, s.kind, s.size, s.name, module)?;
            count += 1;
        }
    }
    Ok(count)
}
#[cfg(test)]
mod tests {
    #[test]
    fn wildcard() {
        assert!(super::matches("vfs_", "vfs_read"));
        assert!(super::matches("vfs_*d", "vfs_read"));
        assert!(!super::matches("vfs_?", "vfs_read"));
        assert!(super::matches("pid_ma?", "pid_max"));
    }
}

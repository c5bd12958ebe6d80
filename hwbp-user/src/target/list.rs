//! `hwbp-trace list PATTERN`: symbols a target can name, as a target names
//! them: demangled (C++ with its parameters, Rust without its hash), with
//! their ELF version (`realpath@@GLIBC_2.3`); `-v` adds the mangled name.

use std::io::{self, Write};

use anyhow::{Context as _, Result};

use crate::{
    printable::printable,
    target::{
        TargetSpec, fields,
        resolve::{ElfImage, ElfSymbol, Kallsyms, ProcessImage, Resolver, SymbolKind},
    },
};

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
    kind: &str,
    size: u64,
    name: &str,
    object: impl std::fmt::Display,
) -> io::Result<()> {
    // Names and paths come from the file listed: one line each, whatever
    // they hold.
    let name = printable(name);
    let object = object.to_string();
    let object = printable(&object);
    writeln!(out, "{addr:#018x} {kind:<8} {size:>8} {name} [{object}]")
}

fn kind_name(kind: SymbolKind) -> &'static str {
    match kind {
        SymbolKind::Function => "function",
        SymbolKind::Object => "object",
        SymbolKind::Unknown => "other",
    }
}

/// A user symbol's row: `tls` for thread-local variables (their address is
/// an offset in each thread's TLS block); the mangled name too with `-v`.
fn elf_row(
    out: &mut impl Write,
    addr: u64,
    s: &ElfSymbol,
    verbose: bool,
    object: impl std::fmt::Display,
) -> io::Result<()> {
    let kind = if s.thread_local {
        "tls"
    } else {
        kind_name(s.kind)
    };
    let mut name = s.versioned_display();
    if verbose && s.name != s.display {
        name = format!("{name} (mangled: {})", s.name);
    }
    row(out, addr, kind, s.size, &name, object)
}

/// Whether `pattern` matches a user symbol: its demangled name, with or
/// without parameters and version, or its mangled name.
fn matches_symbol(pattern: &str, s: &ElfSymbol) -> bool {
    matches(pattern, &s.display)
        || matches(pattern, &s.short)
        || matches(pattern, &s.name)
        || (s.version.is_some() && matches(pattern, &s.versioned_display()))
}

/// Prints the symbols matching `pattern`; returns how many matched (at
/// least those printed). A reader that went away (`list … | head`: EPIPE)
/// ends the listing quietly and successfully, as in ripgrep: the reader
/// has what it wanted.
pub fn run(
    pattern: &str,
    pid: Option<i32>,
    binary: Option<&std::path::Path>,
    verbose: bool,
) -> Result<usize> {
    let mut out = io::stdout().lock();
    match list(&mut out, pattern, pid, binary, verbose) {
        Err(Listing::ReaderGone(count)) => Ok(count),
        Err(Listing::Failed(e)) => Err(e),
        Ok(count) => Ok(count),
    }
}

/// Why a listing stopped early.
enum Listing {
    /// stdout's reader closed the pipe after this many lines.
    ReaderGone(usize),
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Listing {
    fn from(e: E) -> Self {
        Self::Failed(e.into())
    }
}

/// A write error: a closed pipe ends the listing after `count` lines.
fn written(result: io::Result<()>, count: usize) -> Result<(), Listing> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Listing::ReaderGone(count)),
        other => Ok(other?),
    }
}

fn list(
    out: &mut impl Write,
    pattern: &str,
    pid: Option<i32>,
    binary: Option<&std::path::Path>,
    verbose: bool,
) -> Result<usize, Listing> {
    if let Some((expr, members)) = fields::list_pattern(pattern) {
        return list_members(out, expr, members, pid, binary);
    }
    let mut count = 0;
    if let Some(path) = binary {
        let image = ElfImage::load(path)?;
        for s in image
            .symbols()
            .iter()
            .filter(|s| matches_symbol(pattern, s))
        {
            count += 1;
            written(elf_row(out, s.addr, s, verbose, path.display()), count)?;
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
                .filter(|s| matches_symbol(pattern, s))
            {
                let addr = if s.thread_local {
                    s.addr
                } else {
                    process
                        .runtime_address(&path, &image, s.addr)
                        .unwrap_or(s.addr)
                };
                count += 1;
                written(elf_row(out, addr, s, verbose, path.display()), count)?;
            }
        }
    } else {
        let kallsyms = Kallsyms::load().context("reading /proc/kallsyms")?;
        for s in kallsyms.symbols().filter(|s| matches(pattern, s.name)) {
            let module = s.module.unwrap_or("kernel");
            count += 1;
            // Like `tls`: the address is no copy of the variable.
            let kind = if s.per_cpu {
                "percpu"
            } else {
                kind_name(s.kind)
            };
            written(row(out, s.addr, kind, s.size, s.name, module), count)?;
        }
    }
    Ok(count)
}

/// `list 'cfg.*'`: the members of a variable (or of a member, or the
/// elements of an array) whose names match, with their address, offset,
/// size and type. Bit-fields show their bits instead of a size.
fn list_members(
    out: &mut impl Write,
    expr: &str,
    members: &str,
    pid: Option<i32>,
    binary: Option<&std::path::Path>,
) -> Result<usize, Listing> {
    let spec: TargetSpec = expr.parse()?;
    let (base_addr, rows) = match (binary, pid) {
        (Some(path), None) => {
            let base = spec.field_base().unwrap_or(expr);
            let image = ElfImage::load(path)?;
            let Some(sym) = image
                .lookup(base)
                .into_iter()
                .find(|s| s.kind != SymbolKind::Function)
            else {
                return Err(anyhow::anyhow!("no variable `{base}` in {}", path.display()).into());
            };
            let rows =
                crate::target::dwarf::fields::with_variable(path, sym.addr, base, |t, root| {
                    fields::member_rows(t, root, base, &spec.fields)
                })
                .with_context(|| format!("`{expr}`"))?;
            (sym.addr, rows)
        }
        _ => {
            let spec = match binary {
                Some(path) => format!("{}:{expr}", path.display()).parse()?,
                None => spec,
            };
            let process = pid.map(ProcessImage::open).transpose()?;
            Resolver::new(process).members(&spec)?
        }
    };
    let mut count = 0;
    for row in rows {
        let name = row.path.rsplit(['.', '[']).next().unwrap_or(&row.path);
        let wanted = members == "[*]" || matches(members, name);
        if !wanted {
            continue;
        }
        let size = match row.bits {
            Some((bit, bits)) => format!("{bits}b@{bit}"),
            None => row.size.to_string(),
        };
        count += 1;
        let line = writeln!(
            out,
            "{:#018x} +{:<#8x} {size:>8} {} ({})",
            base_addr.wrapping_add(row.offset),
            row.offset,
            printable(&row.path),
            printable(&row.ty)
        );
        written(line, count)?;
    }
    Ok(count)
}

/// The names a target may start with `prefix`, as `list` gives them (the
/// demangled short name for user symbols), sorted, each once: what the
/// dashboard's prompts complete from. Process `pid`'s files, or the
/// kernel's symbols without one.
pub fn names(prefix: &str, pid: Option<i32>) -> Result<Vec<String>> {
    let mut names = Vec::new();
    if let Some(pid) = pid {
        let mut process = ProcessImage::open(pid)?;
        for path in process.files() {
            let Ok(image) = process.image(&path) else {
                continue;
            };
            names.extend(
                image
                    .symbols()
                    .iter()
                    .filter(|s| s.short.starts_with(prefix))
                    .map(|s| s.short.clone()),
            );
        }
    }
    if pid.is_none() || names.is_empty() {
        let kallsyms = Kallsyms::load().context("reading /proc/kallsyms")?;
        names.extend(
            kallsyms
                .symbols()
                .filter(|s| s.name.starts_with(prefix))
                .map(|s| s.name.to_owned()),
        );
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::io;

    /// A symbol name from an untrusted file stays on its line, escaped.
    #[test]
    fn a_row_escapes_control_characters() {
        let mut out = Vec::new();
        super::row(
            &mut out,
            0x401126,
            "function",
            16,
            "evil\n\x1b[2J",
            "/tmp/a\tb",
        )
        .expect("row");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "0x0000000000401126 function       16 evil\\n\\e[2J [/tmp/a\\tb]\n"
        );
    }

    #[test]
    fn wildcard() {
        assert!(super::matches("vfs_", "vfs_read"));
        assert!(super::matches("vfs_*d", "vfs_read"));
        assert!(!super::matches("vfs_?", "vfs_read"));
        assert!(super::matches("pid_ma?", "pid_max"));
    }

    /// Accepts `lines` lines, then answers like a pipe whose reader is gone.
    struct ClosedAfter {
        lines: usize,
        error: io::ErrorKind,
    }

    impl io::Write for ClosedAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.lines == 0 {
                return Err(self.error.into());
            }
            self.lines -= buf.iter().filter(|&&b| b == b'\n').count().min(self.lines);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// EPIPE ends the listing quietly; other write errors are errors.
    #[test]
    fn a_closed_pipe_ends_the_listing() {
        let exe = std::env::current_exe().expect("test binary");
        let mut out = ClosedAfter {
            lines: 2,
            error: io::ErrorKind::BrokenPipe,
        };
        match super::list(&mut out, "", None, Some(&exe), false) {
            Err(super::Listing::ReaderGone(n)) => assert_eq!(n, 3, "2 written, the 3rd refused"),
            Err(super::Listing::Failed(e)) => panic!("{e:#}"),
            Ok(n) => panic!("listed all {n}"),
        }
        let mut out = ClosedAfter {
            lines: 0,
            error: io::ErrorKind::StorageFull,
        };
        assert!(matches!(
            super::list(&mut out, "", None, Some(&exe), false),
            Err(super::Listing::Failed(_))
        ));
    }
}

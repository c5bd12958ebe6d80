//! Why a target cannot be resolved: one variant per case, each message
//! saying what is wrong and what to do instead (CONTRIBUTING.md: one clear
//! message per bad input).

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error(
        "unknown symbol `{name}` in {place}{}{}",
        did_you_mean(.suggestions),
        .stripped.as_deref().map(|s| format!("; {s}")).unwrap_or_default()
    )]
    UnknownSymbol {
        name: String,
        place: String,
        suggestions: Vec<String>,
        /// Why the program may not have the name: it is stripped
        /// ([`ElfImage::stripped_note`]).
        stripped: Option<String>,
    },
    #[error(
        "ambiguous symbol `{name}`: {} candidates:\n{}\nname one {example}",
        .candidates.len(),
        .candidates.iter().map(|(a, m)| format!("  {a:#x} {m}")).collect::<Vec<_>>().join("\n"),
    )]
    Ambiguous {
        name: String,
        /// Address and what is there (name, signature, version, file).
        candidates: Vec<(u64, String)>,
        /// How to name one: "by address (e.g. `0x…`)" or by its full name.
        example: String,
    },
    #[error(
        "`{name}` in {file} is a thread-local variable: every thread has its own copy, at an \
         address that differs per thread, and hwbp-trace cannot follow it from thread to thread. \
         To watch one thread's copy, take its address (gdb: `thread N`, then `p &{name}`) and \
         trace `0xADDRESS:w` with -p PID"
    )]
    ThreadLocal { name: String, file: String },
    #[error(
        "`{name}` is a per-CPU variable of {owner}: every CPU has its own copy, at \
         `__per_cpu_offset[CPU]` + {addr:#x}, and {addr:#x}, the address /proc/kallsyms lists, is \
         none of them, so hwbp-trace does not arm it by name. To watch one CPU's copy, take its \
         address (drgn: `per_cpu_ptr(prog['{name}'].address_of_(), CPU)`) and trace \
         `0xADDRESS:w`; a write by another CPU to that copy is a hit too"
    )]
    PerCpu {
        name: String,
        /// "the kernel" or "module `NAME`".
        owner: String,
        addr: u64,
    },
    #[error("`{0}` names a file of a process: add -p PID or -- CMD so hwbp knows which process")]
    NeedsProcess(String),
    #[error("`{binary}` is not mapped in process {pid}; mapped files are:\n{}", .mapped.join("\n"))]
    NotMapped {
        binary: String,
        pid: i32,
        mapped: Vec<String>,
    },
    #[error(
        "`{target}`: link address {link:#x} of {file} translates to {addr:#x} in process {pid}, \
         which is {found}, not where that file's {what} lives; refusing to arm a breakpoint that \
         cannot fire. Compare `readelf -lW {file}` with /proc/{pid}/maps and report it, or \
         name the runtime address yourself as 0xADDRESS"
    )]
    Misplaced {
        target: String,
        /// "code" or "data".
        what: &'static str,
        file: String,
        link: u64,
        addr: u64,
        found: String,
        pid: i32,
    },
    #[error(
        "`{target}`: {addr:#x} is outside every loadable segment of {file} (link addresses \
         {start:#x}..{end:#x}); BINARY:0xADDRESS takes the address as `nm` or `objdump -d` \
         print it for that file; for a runtime address drop the BINARY: prefix"
    )]
    OutsideFile {
        target: String,
        file: String,
        addr: u64,
        start: u64,
        end: u64,
    },
    #[error("cannot read ELF file {}: {reason}", .path.display())]
    Elf { path: PathBuf, reason: String },
    #[error(
        "cannot read /proc/kallsyms: {0}; run as root (hwbp needs CAP_SYSLOG to see kernel addresses)"
    )]
    Kallsyms(String),
    #[error("/proc/kallsyms shows every address as 0: run as root, or lower kernel.kptr_restrict")]
    KallsymsRestricted,
    #[error(
        "cannot read the memory map of process {pid}: {reason}; does it exist and are you root?"
    )]
    Process { pid: i32, reason: String },
    #[error(
        "`{0}`: x86 debug registers have no read-only watchpoints; use `:rw` (read or write) instead"
    )]
    ReadOnly(String),
    #[error(
        "`{target}`: a length is for data watchpoints only; execute breakpoints cover one instruction"
    )]
    LenForExecute { target: String },
    #[error(
        "`{target}`: address {addr:#x} is not aligned to {len} bytes, which x86 debug registers require; \
         use a smaller /LEN or an aligned offset"
    )]
    Misaligned { target: String, addr: u64, len: u8 },
    #[error("`{target}`: offset {offset:#x} is beyond the end of `{symbol}` ({size} bytes)")]
    OffsetBeyond {
        target: String,
        symbol: String,
        offset: u64,
        size: u64,
    },
    #[error("`{target}` and `{other}` both arm {addr:#x}: name each address once")]
    Duplicate {
        target: String,
        other: String,
        addr: u64,
    },
    #[error(
        "`{target}` is a user-space address (below 0x800000000000), which means nothing without a process: \
         add -p PID or -- CMD to name the process; with neither, only kernel targets can be armed"
    )]
    UserAddressWithoutProcess { target: String },
    #[error("`{target}`: {error}")]
    Field {
        target: String,
        error: Box<crate::target::fields::FieldError>,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        "; `hwbp-trace list PATTERN` lists symbols".to_owned()
    } else {
        format!("; did you mean: {}?", suggestions.join(", "))
    }
}

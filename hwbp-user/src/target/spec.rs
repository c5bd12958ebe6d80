//! The target grammar: what the user writes on the command line.
//!
//! ```text
//! TARGET   := [BINARY ':'] LOCATION [':' MODE] ['/' LEN]
//! LOCATION := SYMBOL ACCESS* ['+' OFFSET] | 0xADDRESS
//! ACCESS   := '.' MEMBER | '[' INDEX ']'   (struct members by name: fields.rs)
//! MODE     := x | w | rw | r            (also ksym_tracer's --x -w- rw- r--)
//! LEN      := 1 | 2 | 4 | 8             (data targets only)
//! ```
//!
//! Any target may end with ` if COND` ([`crate::target::condition`]).
//!
//! `BINARY:0xADDRESS` is a link-time address of that file (what `nm` and
//! `objdump -d` print), a bare `0xADDRESS` a runtime one.
//!
//! A `::` is part of a name (`fx_user::main`, as `list` prints demangled
//! Rust and C++ names), never a separator. A SYMBOL may be a C++ name with
//! its parameters (`app::Widget::poke(int)`: spaces allowed inside), a
//! template (`twice<int>`), an operator (`operator+`), or carry an ELF
//! symbol version (`realpath@GLIBC_2.2.5`, `pthread_cond_wait@@GLIBC_2.3.2`).
//!
//! Parsing is purely syntactic: whether a symbol exists, what it is (function
//! or object) and what the defaults become is decided by [`crate::target::resolve`].
//! A [`TargetSpec`] is the stable, extensible interface the LKML review of
//! ksym_tracer asked for: new suffixes add fields, never positions.

use std::{fmt, path::PathBuf, str::FromStr};

use thiserror::Error;

use crate::target::condition::{Condition, ConditionError, split_condition};

/// What the CPU must do at the address for the breakpoint to fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Instruction fetch (HW_BREAKPOINT_X).
    Execute,
    /// Data write (HW_BREAKPOINT_W).
    Write,
    /// Data read or write (HW_BREAKPOINT_RW).
    ReadWrite,
    /// Data read only (HW_BREAKPOINT_R): x86 has none.
    Read,
}

impl Mode {
    /// The short form used in output: `x`, `w`, `rw`, `r`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Execute => "x",
            Self::Write => "w",
            Self::ReadWrite => "rw",
            Self::Read => "r",
        }
    }

    pub fn is_data(self) -> bool {
        !matches!(self, Self::Execute)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "x" | "--x" => Self::Execute,
            "w" | "-w-" => Self::Write,
            "rw" | "wr" | "rw-" => Self::ReadWrite,
            "r" | "r--" => Self::Read,
            _ => return Err(TargetError::Mode(s.to_owned())),
        })
    }
}

/// Where the breakpoint goes, before resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A symbol name and a byte offset into it.
    Symbol { name: String, offset: u64 },
    /// A raw virtual address (kernel or user, told apart by its value).
    Address(u64),
}

/// One parsed target, as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// The text as written, kept for output.
    pub text: String,
    /// `BINARY:` prefix: an ELF file as mapped in the traced process.
    pub binary: Option<PathBuf>,
    pub location: Location,
    /// `:MODE`, when given.
    pub mode: Option<Mode>,
    /// `/LEN`, when given.
    pub len: Option<u8>,
    /// ` if COND`, when given (not part of `text`).
    pub condition: Option<Condition>,
    /// Member and index accesses after the symbol (`cfg.limits[2].max`):
    /// one reading of a SYMBOL that has them. The name in [`Location`]
    /// stays the whole text, which is tried first as a symbol
    /// (`foo.cold`, `counter.0` are ELF names); see [`crate::target::fields`].
    pub fields: Vec<Access>,
}

/// One step of a field expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `.name`
    Member(String),
    /// `[N]`
    Index(u64),
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Member(name) => write!(f, ".{name}"),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

impl TargetSpec {
    /// The variable that [`TargetSpec::fields`] start from (`cfg` in
    /// `cfg.limits[2]`), when there are fields.
    pub fn field_base(&self) -> Option<&str> {
        match &self.location {
            Location::Symbol { name, .. } if !self.fields.is_empty() => {
                split_fields(name).ok().flatten().map(|(base, _)| base)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error(
        "empty target: name a symbol (e.g. `vfs_read`, `pid_max:w`) or an address (`0xffffffff81234560`)"
    )]
    Empty,
    #[error(
        "unknown mode `{0}`: use x (execute), w (write), rw (read or write) or r (read, where the CPU has it); \
         ksym_tracer's forms --x, -w-, rw-, r-- work too"
    )]
    Mode(String),
    #[error("bad length `{0}`: a breakpoint covers 1, 2, 4 or 8 bytes (e.g. `pid_max/4`)")]
    Len(String),
    #[error("bad offset `{0}`: write a decimal or 0x-prefixed hex number (e.g. `vfs_read+0x10`)")]
    Offset(String),
    #[error("bad address `{0}`: write it in hex with a 0x prefix (e.g. `0xffffffff81234560`)")]
    Address(String),
    #[error(
        "bad symbol name `{0}`: a symbol has no control characters, and spaces only inside a C++ \
         parameter list or template (`f(int, char*)`)"
    )]
    Symbol(String),
    #[error("empty binary path in `{0}`: write BINARY:SYMBOL (e.g. `/usr/bin/app:counter`)")]
    Binary(String),
    #[error("bad condition in `{target} if {}`: {error}", .error.text)]
    Condition {
        target: String,
        error: ConditionError,
    },
    #[error(
        "bad field expression `{text}` at `{at}`: write members as `.name` and indexes as `[N]` \
         (e.g. `cfg.limits[2].max`)"
    )]
    Field { text: String, at: String },
}

impl FromStr for TargetSpec {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (text, condition) = match split_condition(text) {
            Some((target, cond)) => {
                let condition = Condition::parse(cond).map_err(|error| TargetError::Condition {
                    target: target.to_owned(),
                    error,
                })?;
                (target, Some(condition))
            }
            None => (text, None),
        };
        if text.is_empty() {
            return Err(TargetError::Empty);
        }
        let mut rest = text;
        let mut len = None;
        let mut mode = None;
        // Suffixes from the right: `/LEN` and `:MODE` in either order.
        for _ in 0..2 {
            if len.is_none()
                && let Some((head, tail)) = rest.rsplit_once('/')
                && !tail.is_empty()
                && tail.bytes().all(|b| b.is_ascii_digit())
            {
                len = Some(parse_len(tail)?);
                rest = head;
                continue;
            }
            if mode.is_none()
                && let Some((head, tail)) = split_at_last_colon(rest)
                && looks_like_mode(tail)
            {
                mode = Some(tail.parse()?);
                rest = head;
                continue;
            }
        }
        let (binary, location) = match split_at_last_colon(rest) {
            Some(("", _)) => return Err(TargetError::Binary(text.into())),
            Some((binary, location)) => (Some(PathBuf::from(binary)), location),
            None => (None, rest),
        };
        let location = parse_location(location)?;
        let fields = match &location {
            Location::Symbol { name, .. } => {
                split_fields(name)?.map(|(_, f)| f).unwrap_or_default()
            }
            Location::Address(_) => Vec::new(),
        };
        Ok(Self {
            text: text.to_owned(),
            binary,
            location,
            mode,
            len,
            condition,
            fields,
        })
    }
}

/// Splits at the last `:` that is a separator, never inside the `::` of a
/// path such as Rust's or C++'s `fx_user::main` (what `list` prints): so
/// `fx_user::main` is one symbol, `app:ns::f` is `ns::f` of `app`, and in
/// `ns::f:x` only the last colon is a separator.
fn split_at_last_colon(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut end = bytes.len();
    while let Some(i) = s[..end].rfind(':') {
        let doubled_before = i > 0 && bytes[i - 1] == b':';
        let doubled_after = bytes.get(i + 1) == Some(&b':');
        if !doubled_before && !doubled_after {
            return Some((&s[..i], &s[i + 1..]));
        }
        // Skip the whole run of colons.
        end = s[..i].trim_end_matches(':').len();
    }
    None
}

/// A trailing `:xyz` is a mode if it is made only of mode letters; anything
/// else is left for the `BINARY:SYMBOL` split (and a bad mode such as `:q`
/// is reported as such rather than as an unknown binary `pid_max`).
fn looks_like_mode(s: &str) -> bool {
    let letters = !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b"rwx-".contains(&b));
    let single = s.len() == 1 && s.bytes().all(|b| b.is_ascii_alphabetic());
    letters || single
}

/// Splits `cfg.limits[2].max` into `cfg` and its accesses: Ok(None) when
/// the name has none. The accesses start at the first `.` followed by a
/// letter or `_`, or `[` followed by a digit, outside a C++ parameter list
/// or template; from there the rest must be accesses. A rest made of
/// other characters after a `.` leaves the name whole (an assembler's
/// `a.b$c`); a bad `[…]` is an error.
pub(crate) fn split_fields(name: &str) -> Result<Option<(&str, Vec<Access>)>, TargetError> {
    let bytes = name.as_bytes();
    let mut depth = 0i32;
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'<' => depth += 1,
            b')' | b'>' => depth -= 1,
            b'.' if depth == 0
                && i > 0
                && bytes
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
            {
                start = Some(i);
                break;
            }
            b'[' if depth == 0 && i > 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                start = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(start) = start else {
        return Ok(None);
    };
    let mut rest = &name[start..];
    // With an index in it, the text is a field expression for certain.
    let strict = rest.contains('[');
    let mut accesses = Vec::new();
    let bad = |at: &str| TargetError::Field {
        text: name.to_owned(),
        at: at.to_owned(),
    };
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end == 0 {
                return if strict { Err(bad(rest)) } else { Ok(None) };
            }
            accesses.push(Access::Member(after[..end].to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let index = after
                .split_once(']')
                .and_then(|(n, tail)| Some((parse_number(n.trim())?, tail)));
            let Some((index, tail)) = index else {
                return Err(bad(rest));
            };
            accesses.push(Access::Index(index));
            rest = tail;
        } else if strict {
            return Err(bad(rest));
        } else {
            // `a.b$c`: not a field expression, a name with dots.
            return Ok(None);
        }
    }
    Ok(Some((&name[..start], accesses)))
}

fn parse_len(s: &str) -> Result<u8, TargetError> {
    match s {
        "1" | "2" | "4" | "8" => Ok(s.parse().map_err(|_| TargetError::Len(s.into()))?),
        _ => Err(TargetError::Len(s.into())),
    }
}

fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

fn parse_location(s: &str) -> Result<Location, TargetError> {
    if s.is_empty() {
        return Err(TargetError::Empty);
    }
    if s.starts_with("0x") || s.starts_with("0X") {
        return parse_number(s)
            .map(Location::Address)
            .ok_or_else(|| TargetError::Address(s.into()));
    }
    // The offset follows the last `+`, unless that `+` is part of a C++
    // operator's name (`operator+`, `operator++`, `operator+=`).
    let split = s.rfind('+').filter(|&i| {
        let head = &s[..i];
        !head.ends_with("operator") && !head.ends_with("operator+")
    });
    let (name, offset) = match split {
        Some(i) => {
            let offset = &s[i + 1..];
            (
                &s[..i],
                parse_number(offset).ok_or_else(|| TargetError::Offset(offset.into()))?,
            )
        }
        None => (s, 0),
    };
    if name.is_empty() {
        return Err(TargetError::Empty);
    }
    // Spaces only inside a C++ signature or template: `f(int, char*)`,
    // `std::max<unsigned long>`.
    let signature = name.contains(['(', '<']);
    if name
        .chars()
        .any(|c| c.is_control() || (c.is_whitespace() && !signature))
    {
        return Err(TargetError::Symbol(name.into()));
    }
    Ok(Location::Symbol {
        name: name.to_owned(),
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> TargetSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn sym(name: &str, offset: u64) -> Location {
        Location::Symbol {
            name: name.into(),
            offset,
        }
    }

    #[test]
    fn plain_symbol() {
        let t = spec("vfs_read");
        assert_eq!(t.location, sym("vfs_read", 0));
        assert_eq!((t.mode, t.len, t.binary), (None, None, None));
    }

    /// Members and indexes after a symbol, as gdb writes them; the name
    /// stays whole (it may be an ELF name with dots, tried first).
    #[test]
    fn field_expressions() {
        let t = spec("init_net.core.sysctl_somaxconn:w");
        assert_eq!(t.location, sym("init_net.core.sysctl_somaxconn", 0));
        assert_eq!(
            t.fields,
            [
                Access::Member("core".into()),
                Access::Member("sysctl_somaxconn".into())
            ]
        );
        assert_eq!(t.field_base(), Some("init_net"));
        assert_eq!(t.mode, Some(Mode::Write));
        let t = spec("app:cfg.limits[2].max/4");
        assert_eq!(t.binary.as_deref(), Some(std::path::Path::new("app")));
        assert_eq!(
            t.fields,
            [
                Access::Member("limits".into()),
                Access::Index(2),
                Access::Member("max".into())
            ]
        );
        assert_eq!((t.field_base(), t.len), (Some("cfg"), Some(4)));
        let t = spec("app::STATE.count");
        assert_eq!(t.field_base(), Some("app::STATE"));
        assert_eq!(t.fields, [Access::Member("count".into())]);
        let t = spec("table[0x3]");
        assert_eq!(
            (t.field_base(), &t.fields[..]),
            (Some("table"), &[Access::Index(3)][..])
        );
        let t = spec("cfg.name+8/8");
        assert_eq!(t.location, sym("cfg.name", 8));
        assert_eq!(t.fields, [Access::Member("name".into())]);
        // Names that are not field expressions keep no fields.
        for name in [
            "counter.0",
            "operator[]",
            "V::operator[](int)",
            "a.b$c",
            ".hidden",
            "f(a.b)",
        ] {
            let t = spec(name);
            assert_eq!((t.fields.len(), t.field_base()), (0, None), "{name}");
            assert_eq!(t.location, sym(name, 0));
        }
        assert_eq!(spec("foo.part.0").fields.len(), 2);
        assert!(matches!(
            "cfg.limits[x]".parse::<TargetSpec>(),
            Err(TargetError::Field { at, .. }) if at == "[x]"
        ));
        assert!(matches!(
            "cfg[1].".parse::<TargetSpec>(),
            Err(TargetError::Field { at, .. }) if at == "."
        ));
        assert!(matches!(
            "cfg[1]x".parse::<TargetSpec>(),
            Err(TargetError::Field { at, .. }) if at == "x"
        ));
    }

    #[test]
    fn modes_and_lengths() {
        assert_eq!(spec("pid_max:w").mode, Some(Mode::Write));
        assert_eq!(spec("pid_max:rw").mode, Some(Mode::ReadWrite));
        assert_eq!(spec("pid_max:r").mode, Some(Mode::Read));
        assert_eq!(spec("vfs_read:x").mode, Some(Mode::Execute));
        let t = spec("pid_max:rw/4");
        assert_eq!((t.mode, t.len), (Some(Mode::ReadWrite), Some(4)));
        let t = spec("pid_max/2:w");
        assert_eq!((t.mode, t.len), (Some(Mode::Write), Some(2)));
        assert_eq!(t.location, sym("pid_max", 0));
    }

    #[test]
    fn ksym_tracer_forms() {
        assert_eq!(spec("pid_max:rw-").mode, Some(Mode::ReadWrite));
        assert_eq!(spec("pid_max:-w-").mode, Some(Mode::Write));
        assert_eq!(spec("__x64_sys_getpgid:--x").mode, Some(Mode::Execute));
        assert_eq!(spec("jiffies:r--").mode, Some(Mode::Read));
    }

    #[test]
    fn offsets_and_addresses() {
        assert_eq!(spec("vfs_read+0x10").location, sym("vfs_read", 16));
        assert_eq!(spec("vfs_read+16").location, sym("vfs_read", 16));
        assert_eq!(
            spec("0xffffffff81000000:x").location,
            Location::Address(0xffff_ffff_8100_0000)
        );
    }

    #[test]
    fn binary_prefix() {
        let t = spec("/usr/bin/app:counter:w/4");
        assert_eq!(
            t.binary.as_deref(),
            Some(std::path::Path::new("/usr/bin/app"))
        );
        assert_eq!(t.location, sym("counter", 0));
        assert_eq!((t.mode, t.len), (Some(Mode::Write), Some(4)));
        let t = spec("libc.so.6:malloc");
        assert_eq!(t.binary.as_deref(), Some(std::path::Path::new("libc.so.6")));
        assert_eq!(t.location, sym("malloc", 0));
        assert_eq!(t.mode, None);
        // A directory with digits is not a length.
        let t = spec("./build/1/app:main");
        assert_eq!(
            t.binary.as_deref(),
            Some(std::path::Path::new("./build/1/app"))
        );
    }

    /// `::` belongs to a name (Rust, C++): never a BINARY or MODE separator.
    #[test]
    fn double_colons_stay_in_the_name() {
        let t = spec("fx_user::main");
        assert_eq!((t.binary, t.mode), (None, None));
        assert_eq!(t.location, sym("fx_user::main", 0));
        let t = spec("app:ns::f");
        assert_eq!(t.binary.as_deref(), Some(std::path::Path::new("app")));
        assert_eq!((t.location, t.mode), (sym("ns::f", 0), None));
        let t = spec("ns::f:x");
        assert_eq!(t.binary, None);
        assert_eq!((t.location, t.mode), (sym("ns::f", 0), Some(Mode::Execute)));
        // A name ending in a mode letter is still a name.
        let t = spec("ns::x");
        assert_eq!((t.binary, t.mode), (None, None));
        assert_eq!(t.location, sym("ns::x", 0));
        let t = spec("libc.so.6:malloc:x");
        assert_eq!(t.binary.as_deref(), Some(std::path::Path::new("libc.so.6")));
        assert_eq!(
            (t.location, t.mode),
            (sym("malloc", 0), Some(Mode::Execute))
        );
        let t = spec("/bin/app:a::b::c+0x4:rw/2");
        assert_eq!(t.binary.as_deref(), Some(std::path::Path::new("/bin/app")));
        assert_eq!(t.location, sym("a::b::c", 4));
        assert_eq!((t.mode, t.len), (Some(Mode::ReadWrite), Some(2)));
        assert_eq!(
            split_at_last_colon("a:::b"),
            None,
            "a run of colons is never a separator"
        );
    }

    /// C++ signatures, templates and operators, and ELF symbol versions,
    /// are names: their spaces, commas, `+` and `@` are not separators.
    #[test]
    fn cxx_names_and_versions() {
        let t = spec("app::Widget::poke(int, char const*):x");
        assert_eq!(t.location, sym("app::Widget::poke(int, char const*)", 0));
        assert_eq!((t.binary, t.mode), (None, Some(Mode::Execute)));
        assert_eq!(
            spec("twice<unsigned long>").location,
            sym("twice<unsigned long>", 0)
        );
        assert_eq!(spec("V::operator+").location, sym("V::operator+", 0));
        assert_eq!(spec("V::operator++").location, sym("V::operator++", 0));
        assert_eq!(spec("V::operator+=").location, sym("V::operator+=", 0));
        assert_eq!(
            spec("V::operator+(V const&)+0x4").location,
            sym("V::operator+(V const&)", 4)
        );
        let t = spec("libc.so.6:pthread_cond_wait@@GLIBC_2.3.2:x");
        assert_eq!(t.binary.as_deref(), Some(std::path::Path::new("libc.so.6")));
        assert_eq!(t.location, sym("pthread_cond_wait@@GLIBC_2.3.2", 0));
        assert_eq!(
            "a b".parse::<TargetSpec>(),
            Err(TargetError::Symbol("a b".into())),
            "spaces only inside a signature"
        );
        assert_eq!(
            "f(int\n)".parse::<TargetSpec>(),
            Err(TargetError::Symbol("f(int\n)".into()))
        );
    }

    #[test]
    fn errors() {
        assert_eq!("".parse::<TargetSpec>(), Err(TargetError::Empty));
        assert_eq!("   ".parse::<TargetSpec>(), Err(TargetError::Empty));
        assert_eq!(
            "pid_max:q".parse::<TargetSpec>(),
            Err(TargetError::Mode("q".into()))
        );
        assert_eq!(
            "pid_max:wx".parse::<TargetSpec>(),
            Err(TargetError::Mode("wx".into()))
        );
        assert_eq!(
            "pid_max/3".parse::<TargetSpec>(),
            Err(TargetError::Len("3".into()))
        );
        assert_eq!(
            "pid_max/16".parse::<TargetSpec>(),
            Err(TargetError::Len("16".into()))
        );
        assert_eq!(
            "f+zz".parse::<TargetSpec>(),
            Err(TargetError::Offset("zz".into()))
        );
        assert_eq!(
            "0xzz".parse::<TargetSpec>(),
            Err(TargetError::Address("0xzz".into()))
        );
        assert_eq!(":w".parse::<TargetSpec>(), Err(TargetError::Empty));
        assert!(matches!(
            ":main".parse::<TargetSpec>(),
            Err(TargetError::Binary(_))
        ));
    }
}

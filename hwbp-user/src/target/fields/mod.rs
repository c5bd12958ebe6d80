//! Struct members by name (`cfg.limits[2].max`, `init_net.core.somaxconn`):
//! from a variable's type to the offset, size and type of one member or
//! element, and the members `list 'cfg.*'` shows.
//!
//! The walk is written once, over [`Types`], which the kernel's BTF
//! ([`crate::target::btf`]) and a program's DWARF ([`crate::target::dwarf`])
//! each implement: the expression means the same whichever describes it.
//! Anonymous struct and union members are looked through, as C does
//! (`sk.sk_rcvbuf` where the kernel nests it in an unnamed union).

use thiserror::Error;

use crate::target::{Access, btf::Decode};

/// What one step of a walk finds at a type (through typedefs and
/// qualifiers).
pub enum Node<Id> {
    /// A struct, union or class: its data members in order.
    Struct(Vec<Member<Id>>),
    /// An array: its element type and element count (None: no bound).
    Array { elem: Id, count: Option<u64> },
    /// Anything else: no members.
    Leaf,
}

/// A data member as the debug info describes it.
pub struct Member<Id> {
    /// Empty for an anonymous struct or union (or a C++ base class).
    pub name: String,
    pub ty: Id,
    /// From the start of the enclosing struct.
    pub bit_offset: u64,
    /// Non-zero for a bit-field.
    pub bit_size: u32,
}

/// A type source: BTF or DWARF.
pub trait Types {
    type Id: Copy;
    fn node(&self, id: Self::Id) -> Node<Self::Id>;
    fn info(&self, id: Self::Id) -> FieldType;
}

/// The type of a member as a hit's value is decoded with it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldType {
    /// As C writes it: `int`, `enum state`, `char[16]`, `struct limit`.
    pub name: String,
    /// Bytes.
    pub size: u64,
    pub decode: Decode,
    /// An enum's names and values.
    pub enumerators: Vec<(i64, String)>,
    /// An array of chars: shown as text.
    pub chars: bool,
}

impl FieldType {
    /// The `len` watched bytes of `value`, decoded: an enumerator's name,
    /// a signed or unsigned number, text for chars (up to the first NUL).
    /// A watch that covers only part of a number shows it in hex.
    pub fn format(&self, value: u64, len: u8) -> String {
        if self.chars {
            let bytes = value.to_le_bytes();
            let bytes = &bytes[..usize::from(len.clamp(1, 8))];
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let text = String::from_utf8_lossy(&bytes[..end]);
            return format!("\"{}\"", crate::printable::printable(&text));
        }
        if u64::from(len) != self.size {
            return Decode::Hex.format(value, len);
        }
        if !self.enumerators.is_empty() {
            let bits = u32::from(len.clamp(1, 8)) * 8;
            let shift = 64 - bits;
            let wanted = if self.decode == Decode::Signed {
                ((value << shift) as i64) >> shift
            } else {
                ((value << shift) >> shift) as i64
            };
            if let Some((_, name)) = self.enumerators.iter().find(|(v, _)| *v == wanted) {
                return name.clone();
            }
        }
        self.decode.format(value, len)
    }
}

/// Where a field expression leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// `cfg.limits[2].max`.
    pub path: String,
    /// Bytes from the variable's start.
    pub offset: u64,
    pub ty: FieldType,
}

/// One member as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    /// The whole expression: `cfg.limits`.
    pub path: String,
    /// Bytes from the variable's start.
    pub offset: u64,
    pub size: u64,
    pub ty: String,
    /// A bit-field's first bit (in its byte) and width.
    pub bits: Option<(u32, u32)>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FieldError {
    #[error(
        "`{path}` is `{ty}`, which has no member `{member}`{}; its members: {}",
        did_you_mean(.suggestions),
        .members.join(", ")
    )]
    UnknownMember {
        path: String,
        ty: String,
        member: String,
        members: Vec<String>,
        suggestions: Vec<String>,
    },
    #[error("`{path}{access}`: `{path}` is `{ty}`, not a struct or union: only those have members")]
    NotStruct {
        path: String,
        access: String,
        ty: String,
    },
    #[error("`{path}[{index}]`: `{path}` is `{ty}`, not an array: only arrays are indexed")]
    NotArray {
        path: String,
        index: u64,
        ty: String,
    },
    #[error(
        "`{path}[{index}]`: index out of bounds: `{path}` is `{ty}`, {count} elements (0 to {})",
        .count.saturating_sub(1)
    )]
    OutOfBounds {
        path: String,
        index: u64,
        ty: String,
        count: u64,
    },
    #[error(
        "`{path}` is a bit-field ({bits} bits at bit {bit} of byte {byte:#x}): a debug register \
         watches whole bytes; watch the byte holding it as `{base}+{byte:#x}/1` (any write to \
         that byte fires)"
    )]
    BitField {
        path: String,
        base: String,
        bits: u32,
        bit: u32,
        byte: u64,
    },
    #[error(
        "`{path}` is `{ty}`, {size} bytes: a debug register watches 1, 2, 4 or 8 bytes{}; \
         or give /LEN (and +OFFSET) to watch part of it, e.g. `{path}/8`",
        members_hint(.members)
    )]
    TooBig {
        path: String,
        ty: String,
        size: u64,
        /// What to name instead: its members or elements.
        members: Vec<String>,
    },
    #[error(
        "`{0}` is a function: members and indexes apply to variables (a function's arguments are \
         shown at its hits)"
    )]
    NotVariable(String),
    #[error(
        "{file} has no DWARF debug info{}, and member names come from it: build it with -g \
         (Rust: debug = 2), or install its separate debug file (Debian: the -dbgsym package), \
         or name the bytes as `{symbol}+OFFSET/LEN`",
        if *.stripped { " (it is stripped, and no separate debug file was found)" } else { "" }
    )]
    NoDwarf {
        file: String,
        symbol: String,
        stripped: bool,
    },
    #[error(
        "the DWARF of {file} does not describe the variable `{symbol}`: build the unit that \
         defines it with -g, or name the bytes as `{symbol}+OFFSET/LEN`"
    )]
    NoVariable { file: String, symbol: String },
    #[error(
        "the kernel's BTF does not say what type `{symbol}` is ({reason}): vmlinux BTF describes \
         per-CPU variables only unless built with pahole's global_var; name the bytes as \
         `{symbol}+OFFSET/LEN` (offsets: `pahole -C TYPE` or gdb on the kernel's debug vmlinux)"
    )]
    NoBtf { symbol: String, reason: String },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(" (did you mean `{}`?)", suggestions.join("`, `"))
    }
}

/// Up to 3 member names close to a misspelt one.
fn suggest(names: &[String], name: &str) -> Vec<String> {
    let mut scored: Vec<(f64, &String)> = names
        .iter()
        .map(|n| (strsim::jaro_winkler(n, name), n))
        .filter(|(score, _)| *score > 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(3).map(|(_, n)| n.clone()).collect()
}

fn members_hint(members: &[String]) -> String {
    if members.is_empty() {
        String::new()
    } else {
        format!("; name a member or element instead: {}", members.join(", "))
    }
}

/// Follows `accesses` from a variable `base` of type `root`.
pub fn walk<T: Types>(
    types: &T,
    root: T::Id,
    base: &str,
    accesses: &[Access],
) -> Result<(Resolved, T::Id), FieldError> {
    let mut id = root;
    let mut offset = 0u64;
    let mut path = base.to_owned();
    for access in accesses {
        match (access, types.node(id)) {
            (Access::Member(name), Node::Struct(members)) => {
                let Some((member, at)) = find_member(types, &members, name, 0) else {
                    let names = member_names(types, &members, 0);
                    return Err(FieldError::UnknownMember {
                        path,
                        ty: types.info(id).name,
                        member: name.clone(),
                        suggestions: suggest(&names, name),
                        members: names,
                    });
                };
                let bit_offset = at + member.bit_offset;
                path.push_str(&access.to_string());
                if member.bit_size > 0 || !bit_offset.is_multiple_of(8) {
                    return Err(FieldError::BitField {
                        path,
                        base: base.to_owned(),
                        bits: member.bit_size,
                        bit: (bit_offset % 8) as u32,
                        byte: offset + bit_offset / 8,
                    });
                }
                offset += bit_offset / 8;
                id = member.ty;
            }
            (Access::Member(_), _) => {
                return Err(FieldError::NotStruct {
                    path,
                    access: access.to_string(),
                    ty: types.info(id).name,
                });
            }
            (Access::Index(index), Node::Array { elem, count }) => {
                if let Some(count) = count
                    && *index >= count
                {
                    return Err(FieldError::OutOfBounds {
                        path,
                        index: *index,
                        ty: types.info(id).name,
                        count,
                    });
                }
                let size = types.info(elem).size;
                offset = index
                    .checked_mul(size)
                    .and_then(|o| o.checked_add(offset))
                    .ok_or_else(|| FieldError::OutOfBounds {
                        path: path.clone(),
                        index: *index,
                        ty: types.info(id).name,
                        count: 0,
                    })?;
                path.push_str(&access.to_string());
                id = elem;
            }
            (Access::Index(index), _) => {
                return Err(FieldError::NotArray {
                    path,
                    index: *index,
                    ty: types.info(id).name,
                });
            }
        }
    }
    let ty = types.info(id);
    Ok((Resolved { path, offset, ty }, id))
}

/// The member named `name`, looking through anonymous members, with the
/// bit offset of the struct that holds it.
fn find_member<T: Types>(
    types: &T,
    members: &[Member<T::Id>],
    name: &str,
    depth: u32,
) -> Option<(Member<T::Id>, u64)> {
    if depth > 8 {
        return None;
    }
    for m in members {
        if m.name == name {
            return Some((
                Member {
                    name: m.name.clone(),
                    ty: m.ty,
                    bit_offset: m.bit_offset,
                    bit_size: m.bit_size,
                },
                0,
            ));
        }
        if m.name.is_empty()
            && let Node::Struct(inner) = types.node(m.ty)
            && let Some((found, at)) = find_member(types, &inner, name, depth + 1)
        {
            return Some((found, at + m.bit_offset));
        }
    }
    None
}

/// The names a member access can take, anonymous members looked through.
fn member_names<T: Types>(types: &T, members: &[Member<T::Id>], depth: u32) -> Vec<String> {
    let mut out = Vec::new();
    for m in members {
        if !m.name.is_empty() {
            out.push(m.name.clone());
        } else if depth < 8
            && let Node::Struct(inner) = types.node(m.ty)
        {
            out.extend(member_names(types, &inner, depth + 1));
        }
    }
    out
}

/// Checks that what `resolved` names can be watched as written: a member
/// of 1, 2, 4 or 8 bytes, or any member with an explicit /LEN.
pub fn check_size<T: Types>(
    types: &T,
    id: T::Id,
    resolved: &Resolved,
    offset: u64,
    len: Option<u8>,
) -> Result<(), FieldError> {
    let remaining = resolved.ty.size.saturating_sub(offset);
    if len.is_some() || matches!(remaining, 1 | 2 | 4 | 8) {
        return Ok(());
    }
    let members = rows(types, id, &resolved.path, 0)
        .into_iter()
        .filter(|r| r.bits.is_none())
        .map(|r| format!("{} ({})", r.path, r.ty))
        .take(24)
        .collect();
    Err(FieldError::TooBig {
        path: resolved.path.clone(),
        ty: resolved.ty.name.clone(),
        size: resolved.ty.size,
        members,
    })
}

/// The members (or, for an array, the elements) of the type at `id`, named
/// from `path`, with offsets from `base_offset`: what `list 'cfg.*'` shows.
pub fn rows<T: Types>(types: &T, id: T::Id, path: &str, base_offset: u64) -> Vec<MemberRow> {
    let mut out = Vec::new();
    match types.node(id) {
        Node::Struct(members) => struct_rows(types, &members, path, base_offset * 8, &mut out, 0),
        Node::Array { elem, count } => {
            let info = types.info(elem);
            for i in 0..count.unwrap_or(0).min(256) {
                out.push(MemberRow {
                    path: format!("{path}[{i}]"),
                    offset: base_offset + i * info.size,
                    size: info.size,
                    ty: info.name.clone(),
                    bits: None,
                });
            }
        }
        Node::Leaf => {}
    }
    out
}

/// The rows of what `accesses` lead to from variable `base`: an error
/// when that has no members or elements.
pub fn member_rows<T: Types>(
    types: &T,
    root: T::Id,
    base: &str,
    accesses: &[Access],
) -> Result<Vec<MemberRow>, FieldError> {
    let (resolved, id) = walk(types, root, base, accesses)?;
    let rows = rows(types, id, &resolved.path, resolved.offset);
    if rows.is_empty() {
        return Err(FieldError::NotStruct {
            path: resolved.path,
            access: ".*".into(),
            ty: resolved.ty.name,
        });
    }
    Ok(rows)
}

fn struct_rows<T: Types>(
    types: &T,
    members: &[Member<T::Id>],
    path: &str,
    bit_base: u64,
    out: &mut Vec<MemberRow>,
    depth: u32,
) {
    for m in members {
        let bit = bit_base + m.bit_offset;
        if m.name.is_empty() {
            if depth < 8
                && let Node::Struct(inner) = types.node(m.ty)
            {
                struct_rows(types, &inner, path, bit, out, depth + 1);
            }
            continue;
        }
        let info = types.info(m.ty);
        let bitfield = m.bit_size > 0 || !bit.is_multiple_of(8);
        out.push(MemberRow {
            path: format!("{path}.{}", m.name),
            offset: bit / 8,
            size: if bitfield { 0 } else { info.size },
            ty: info.name,
            bits: bitfield.then_some(((bit % 8) as u32, m.bit_size)),
        });
    }
}

/// Splits a `list` pattern into the expression whose members are listed
/// and the pattern their names must match: `cfg.*` → (`cfg`, `*`),
/// `init_net.core.s*` → (`init_net.core`, `s*`), `cfg.limits[*]` → all
/// elements. None when the pattern is not about members.
pub fn list_pattern(pattern: &str) -> Option<(&str, &str)> {
    if let Some(head) = pattern.strip_suffix("[*]") {
        return (!head.is_empty()).then_some((head, "[*]"));
    }
    let dot = pattern.rfind('.')?;
    let (head, tail) = (&pattern[..dot], &pattern[dot + 1..]);
    let wild = tail.contains(['*', '?']);
    let plain = tail
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'*' || b == b'?');
    (wild && plain && !head.is_empty() && !head.contains(['*', '?'])).then_some((head, tail))
}

#[cfg(test)]
mod tests;

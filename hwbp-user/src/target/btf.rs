//! Kernel types from BTF (/sys/kernel/btf/vmlinux): the parameter names and
//! types of a function (FUNC → FUNC_PROTO) and the type of a variable (VAR),
//! enough to name a hit's arguments and decode a watched value, and each
//! type's [`Shape`], from which [`crate::target::abi`] tells where an argument is.
//!
//! A small reader of the format in the kernel's Documentation/bpf/btf.rst:
//! a header, then the type section (one record per type, ids from 1, each
//! followed by kind-specific data), then the string section.

use std::{fs, io, path::Path};

use thiserror::Error;

use crate::target::abi::{Field, Shape};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

mod members;
mod split;
pub use members::variable_root;

const MAGIC: u16 = 0xeb9f;

// Kinds (include/uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

const INT_SIGNED: u32 = 1 << 0;
const INT_BOOL: u32 = 1 << 2;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}; is the kernel built with CONFIG_DEBUG_INFO_BTF?")]
    Read { path: String, source: io::Error },
    #[error(
        "cannot read {path}: {source}; the kernel shows module {module}'s BTF there when built \
         with CONFIG_DEBUG_INFO_BTF_MODULES and the module has a .BTF section (kbuild leaves it \
         out of a module built without the kernel's vmlinux at hand, as out-of-tree modules \
         often are)"
    )]
    ModuleRead {
        module: String,
        path: String,
        source: io::Error,
    },
    #[error("{path} is not valid BTF: {reason}")]
    Invalid { path: String, reason: String },
}

/// How a value of some type reads best.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decode {
    Signed,
    Unsigned,
    Bool,
    /// Pointers, structs, arrays, unknown: hexadecimal.
    Hex,
}

impl Decode {
    /// `value` as `size` bytes of this kind: `-1`, `42`, `true`, `0xffff…`.
    pub fn format(self, value: u64, size: u8) -> String {
        let bits = u32::from(size.clamp(1, 8)) * 8;
        let masked = if bits == 64 {
            value
        } else {
            value & ((1u64 << bits) - 1)
        };
        match self {
            Self::Signed => {
                let shift = 64 - bits;
                (((masked << shift) as i64) >> shift).to_string()
            }
            Self::Unsigned => masked.to_string(),
            Self::Bool => (masked != 0).to_string(),
            Self::Hex => format!("{masked:#x}"),
        }
    }
}

/// A C type as far as hwbp shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TypeInfo {
    /// `struct file *`, `size_t`, `int`.
    pub name: String,
    pub decode: Decode,
    /// Bytes, when known (0 for void and functions).
    pub size: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub ty: TypeInfo,
    /// How the calling convention passes it.
    pub shape: Shape,
}

/// A function's parameters and the shape of what it returns (which decides
/// whether rdi holds a hidden pointer to the returned value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub params: Vec<Param>,
    pub returns: Shape,
}

#[derive(Clone, Copy, Debug)]
struct RawType {
    name_off: u32,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    /// `size` or `type`, by kind.
    size_type: u32,
    /// Offset of the kind-specific data in the type section.
    data: usize,
}

/// A parsed BTF blob (vmlinux or a standalone one).
pub struct Btf {
    types: Vec<RawType>,
    type_section: Vec<u8>,
    strings: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The type and string sections of a BTF blob.
fn sections(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let magic = data.get(0..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    if magic != Some(MAGIC) {
        return Err("bad magic (only little-endian BTF is read)".into());
    }
    let field = |off| u32_at(data, off).ok_or_else(|| "truncated header".to_owned());
    let hdr_len = field(4)? as usize;
    let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
    let section = |off: u32, len: u32| {
        let start = hdr_len + off as usize;
        data.get(start..start + len as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "section beyond the end of the data".to_owned())
    };
    Ok((section(type_off, type_len)?, section(str_off, str_len)?))
}

/// The type records of a type section, their data offsets counted from
/// `base` (where the section starts in a split BTF's combined section).
fn parse_types(type_section: &[u8], base: usize) -> Result<Vec<RawType>, String> {
    let mut types = Vec::new();
    let mut pos = 0;
    while pos < type_section.len() {
        let (Some(name_off), Some(info), Some(size_type)) = (
            u32_at(type_section, pos),
            u32_at(type_section, pos + 4),
            u32_at(type_section, pos + 8),
        ) else {
            return Err(format!("truncated type record at offset {pos}"));
        };
        let vlen = info & 0xffff;
        let kind = (info >> 24) & 0x1f;
        let data = pos + 12;
        let extra = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen as usize,
            KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen as usize,
            KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
            | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
            other => return Err(format!("unknown kind {other} at offset {pos}")),
        };
        types.push(RawType {
            name_off,
            kind,
            vlen,
            kind_flag: info >> 31 == 1,
            size_type,
            data: base + data,
        });
        pos = data + extra;
    }
    Ok(types)
}

impl Btf {
    pub fn load(path: &Path) -> Result<Self, BtfError> {
        let data = fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data).map_err(|reason| BtfError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn vmlinux() -> Result<Self, BtfError> {
        Self::load(Path::new(VMLINUX))
    }

    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let (type_section, strings) = sections(data)?;
        let types = parse_types(&type_section, 0)?;
        Ok(Self {
            types,
            type_section,
            strings,
        })
    }

    /// The first type of `kind` named `name`. A scan, not an index: a run
    /// looks up a few names, and indexing vmlinux's ~60,000 functions and
    /// variables took longer than all the scans of a run.
    fn named(&self, kind: u32, name: &str) -> Option<&RawType> {
        self.types
            .iter()
            .find(|t| t.kind == kind && self.str_at(t.name_off) == name)
    }

    fn str_at(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Option<&RawType> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize))
    }

    fn data_u32(&self, t: &RawType, index: usize) -> u32 {
        u32_at(&self.type_section, t.data + 4 * index).unwrap_or(0)
    }

    /// The parameters and return type of kernel function `name`, or None
    /// when BTF has no such function.
    pub fn function(&self, name: &str) -> Option<Signature> {
        let func = self.named(KIND_FUNC, name)?;
        let proto = self
            .ty(func.size_type)
            .filter(|t| t.kind == KIND_FUNC_PROTO)?;
        let params = (0..proto.vlen as usize)
            .map(|i| {
                let name_off = self.data_u32(proto, 2 * i);
                let ty = self.data_u32(proto, 2 * i + 1);
                Param {
                    name: self.str_at(name_off).to_owned(),
                    ty: self.type_info(ty),
                    shape: self.shape(ty, 0),
                }
            })
            // A variadic function ends with a nameless parameter of type 0.
            .filter(|p| !(p.name.is_empty() && p.ty.name == "void"))
            .collect();
        Some(Signature {
            params,
            returns: self.shape(proto.size_type, 0),
        })
    }

    /// How the calling convention sees type `id` (see [`crate::target::abi`]).
    fn shape(&self, id: u32, depth: u32) -> Shape {
        if id == 0 {
            return Shape::Void;
        }
        let Some(t) = self.ty(id).copied() else {
            return Shape::Unknown;
        };
        if depth > 32 {
            return Shape::Unknown;
        }
        match t.kind {
            KIND_INT | KIND_ENUM | KIND_ENUM64 => Shape::Int(t.size_type),
            KIND_PTR => Shape::Int(8),
            KIND_TYPEDEF | KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG => {
                self.shape(t.size_type, depth + 1)
            }
            KIND_FLOAT => match (t.size_type, self.str_at(t.name_off)) {
                (4 | 8, _) => Shape::Float(t.size_type),
                (16, "long double") => Shape::X87,
                _ => Shape::Unknown,
            },
            KIND_STRUCT | KIND_UNION if t.size_type > 16 => Shape::Aggregate {
                size: t.size_type,
                fields: Vec::new(),
            },
            KIND_STRUCT | KIND_UNION => {
                self.members(&t, depth)
                    .map_or(Shape::Unknown, |fields| Shape::Aggregate {
                        size: t.size_type,
                        fields,
                    })
            }
            KIND_ARRAY => {
                let (elem, count) = (self.data_u32(&t, 0), self.data_u32(&t, 2));
                let (_, _, elem_size) = self.describe(elem, depth + 1);
                let Some(size) = elem_size.checked_mul(count) else {
                    return Shape::Unknown;
                };
                let fields = if size > 16 {
                    Vec::new()
                } else {
                    let shape = self.shape(elem, depth + 1);
                    (0..count)
                        .map(|i| Field {
                            offset: i * elem_size,
                            shape: shape.clone(),
                        })
                        .collect()
                };
                Shape::Aggregate { size, fields }
            }
            _ => Shape::Unknown,
        }
    }

    /// The fields of a struct or union of 16 bytes or less (BTF member
    /// records: name, type, offset in bits), or None when one cannot be
    /// placed.
    fn members(&self, t: &RawType, depth: u32) -> Option<Vec<Field>> {
        let mut fields = Vec::new();
        for i in 0..t.vlen as usize {
            let ty = self.data_u32(t, 3 * i + 1);
            let offset = self.data_u32(t, 3 * i + 2);
            // With kind_flag, the top 8 bits are a bit-field's size.
            let (bit_offset, bits) = if t.kind_flag {
                (offset & 0x00ff_ffff, offset >> 24)
            } else {
                (offset, 0)
            };
            if bits > 0 {
                // A bit-field: only its integer storage matters.
                for bit in [bit_offset, bit_offset + bits - 1] {
                    fields.push(Field {
                        offset: bit / 8,
                        shape: Shape::Int(1),
                    });
                }
                continue;
            }
            // An INT narrower than its size is an old-style bit-field.
            let narrow_int = self.ty(ty).is_some_and(|m| {
                m.kind == KIND_INT && self.data_u32(m, 0) & 0xff != m.size_type * 8
            });
            if bit_offset % 8 != 0 || narrow_int {
                return None;
            }
            fields.push(Field {
                offset: bit_offset / 8,
                shape: self.shape(ty, depth + 1),
            });
        }
        Some(fields)
    }

    /// The type of kernel variable `name`, when BTF describes it.
    pub fn variable_type(&self, name: &str) -> Option<TypeInfo> {
        let var = self.named(KIND_VAR, name)?;
        Some(self.type_info(var.size_type))
    }

    pub fn type_info(&self, id: u32) -> TypeInfo {
        let (name, decode, size) = self.describe(id, 0);
        TypeInfo { name, decode, size }
    }

    fn describe(&self, id: u32, depth: u32) -> (String, Decode, u32) {
        if id == 0 {
            return ("void".into(), Decode::Hex, 0);
        }
        let Some(t) = self.ty(id).copied() else {
            return (format!("type#{id}"), Decode::Hex, 0);
        };
        if depth > 32 {
            return ("…".into(), Decode::Hex, 0);
        }
        let name = self.str_at(t.name_off).to_owned();
        let anon = |what: &str| {
            if name.is_empty() {
                format!("{what} (anon)")
            } else {
                format!("{what} {name}")
            }
        };
        match t.kind {
            KIND_INT => {
                let bits = self.data_u32(&t, 0);
                let encoding = (bits >> 24) & 0xf;
                let decode = if encoding & INT_BOOL != 0 {
                    Decode::Bool
                } else if encoding & INT_SIGNED != 0 {
                    Decode::Signed
                } else {
                    Decode::Unsigned
                };
                (name, decode, t.size_type)
            }
            KIND_PTR => {
                let (target, _, _) = self.describe(t.size_type, depth + 1);
                let sep = if target.ends_with('*') { "" } else { " " };
                (format!("{target}{sep}*"), Decode::Hex, 8)
            }
            KIND_TYPEDEF => {
                let (_, decode, size) = self.describe(t.size_type, depth + 1);
                (name, decode, size)
            }
            KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG => {
                let (inner, decode, size) = self.describe(t.size_type, depth + 1);
                let qualifier = match t.kind {
                    KIND_CONST => "const ",
                    KIND_VOLATILE => "volatile ",
                    _ => "",
                };
                (format!("{qualifier}{inner}"), decode, size)
            }
            KIND_STRUCT => (anon("struct"), Decode::Hex, t.size_type),
            KIND_UNION => (anon("union"), Decode::Hex, t.size_type),
            KIND_FWD => (
                if t.kind_flag {
                    anon("union")
                } else {
                    anon("struct")
                },
                Decode::Hex,
                0,
            ),
            KIND_ENUM | KIND_ENUM64 => {
                let decode = if t.kind_flag {
                    Decode::Signed
                } else {
                    Decode::Unsigned
                };
                (anon("enum"), decode, t.size_type)
            }
            KIND_ARRAY => {
                let elem = self.data_u32(&t, 0);
                let count = self.data_u32(&t, 2);
                let (inner, _, size) = self.describe(elem, depth + 1);
                (
                    format!("{inner}[{count}]"),
                    Decode::Hex,
                    size.saturating_mul(count),
                )
            }
            KIND_FUNC_PROTO => ("function".into(), Decode::Hex, 0),
            KIND_FLOAT => (name, Decode::Hex, t.size_type),
            _ => (name, Decode::Hex, 0),
        }
    }
}

/// BTF blobs made by hand, for the tests of this module and of values.rs.
#[cfg(test)]
pub(crate) mod test_blobs {
    use super::*;

    /// A hand-made blob: int, unsigned long, typedef size_t, struct file,
    /// pointer to it, FUNC_PROTO(f: struct file *, n: size_t, s: int),
    /// FUNC vfs_x, _Bool, VAR flag (_Bool), VAR limit (int), VAR ticks
    /// (unsigned long), VAR table (struct file, 200 bytes).
    pub fn blob() -> Vec<u8> {
        let strings = b"\0int\0unsigned long\0size_t\0file\0f\0n\0s\0vfs_x\0_Bool\0flag\0limit\0ticks\0table\0";
        let off = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .map(|p| p as u32 + 1)
                .unwrap_or(0)
        };
        let mut t: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        // 1: int
        t.extend([off("int"), info(KIND_INT, 0), 4, (INT_SIGNED << 24) | 32]);
        // 2: unsigned long
        t.extend([off("unsigned long"), info(KIND_INT, 0), 8, 64]);
        // 3: typedef size_t = 2
        t.extend([off("size_t"), info(KIND_TYPEDEF, 0), 2]);
        // 4: struct file (no members)
        t.extend([off("file"), info(KIND_STRUCT, 0), 200]);
        // 5: ptr -> 4
        t.extend([0, info(KIND_PTR, 0), 4]);
        // 6: proto
        t.extend([
            0,
            info(KIND_FUNC_PROTO, 3),
            1,
            off("f"),
            5,
            off("n"),
            3,
            off("s"),
            1,
        ]);
        // 7: func vfs_x -> 6
        t.extend([off("vfs_x"), info(KIND_FUNC, 0), 6]);
        // 8: _Bool
        t.extend([off("_Bool"), info(KIND_INT, 0), 1, (INT_BOOL << 24) | 8]);
        // 9: var flag: 8
        t.extend([off("flag"), info(KIND_VAR, 0), 8, 1]);
        // 10: var limit: 1; 11: var ticks: 2; 12: var table: 4 (global linkage)
        t.extend([off("limit"), info(KIND_VAR, 0), 1, 1]);
        t.extend([off("ticks"), info(KIND_VAR, 0), 2, 1]);
        t.extend([off("table"), info(KIND_VAR, 0), 4, 1]);
        assemble(&t, strings)
    }

    /// A BTF file of the type words `t` and the string section `strings`.
    pub fn assemble(t: &[u32], strings: &[u8]) -> Vec<u8> {
        let types: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{test_blobs::blob, *};

    #[test]
    fn params_and_types() {
        let btf = Btf::parse(&blob()).expect("parse");
        let signature = btf.function("vfs_x").expect("vfs_x");
        let shown: Vec<(String, String, Decode, Shape)> = signature
            .params
            .into_iter()
            .map(|p| (p.name, p.ty.name, p.ty.decode, p.shape))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "f".to_owned(),
                    "struct file *".to_owned(),
                    Decode::Hex,
                    Shape::Int(8)
                ),
                (
                    "n".to_owned(),
                    "size_t".to_owned(),
                    Decode::Unsigned,
                    Shape::Int(8)
                ),
                (
                    "s".to_owned(),
                    "int".to_owned(),
                    Decode::Signed,
                    Shape::Int(4)
                ),
            ]
        );
        // FUNC_PROTO's return type: int.
        assert_eq!(signature.returns, Shape::Int(4));
        let flag = btf.variable_type("flag").expect("flag");
        assert_eq!(
            (flag.name.as_str(), flag.decode, flag.size),
            ("_Bool", Decode::Bool, 1)
        );
        assert!(btf.function("nope").is_none());
    }

    #[test]
    fn decoding() {
        assert_eq!(Decode::Signed.format(0xffff_ffff, 4), "-1");
        assert_eq!(Decode::Signed.format(5, 4), "5");
        assert_eq!(Decode::Unsigned.format(0x1_0000_0001, 4), "1");
        assert_eq!(Decode::Bool.format(1, 1), "true");
        assert_eq!(Decode::Hex.format(255, 8), "0xff");
    }

    #[test]
    fn vfs_read_on_this_kernel() {
        let btf = match Btf::vmlinux() {
            Ok(btf) => btf,
            Err(e) => {
                eprintln!("SKIPPED: no vmlinux BTF here ({e})");
                return;
            }
        };
        let params = btf
            .function("vfs_read")
            .expect("vfs_read is in vmlinux BTF")
            .params;
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["file", "buf", "count", "pos"]);
        let types: Vec<&str> = params.iter().map(|p| p.ty.name.as_str()).collect();
        assert_eq!(types, ["struct file *", "char *", "size_t", "loff_t *"]);
    }
}

//! Struct members of kernel variables from BTF ([`crate::target::fields`]),
//! and which type a variable has: its VAR record when BTF has one, else
//! (vmlinux BTF usually types per-CPU variables only) the struct named
//! after the variable, as the kernel names its static instances
//! (`init_net` is a `struct net`, `init_task` a `struct task_struct`),
//! accepted only when its size fills the symbol's room in kallsyms.

use super::{
    Btf, Decode, KIND_ARRAY, KIND_CONST, KIND_ENUM, KIND_ENUM64, KIND_INT, KIND_RESTRICT,
    KIND_STRUCT, KIND_TYPE_TAG, KIND_TYPEDEF, KIND_UNION, KIND_VAR, KIND_VOLATILE, RawType,
};
use crate::target::fields::{FieldError, FieldType, Member, Node, Types};

/// Below this many bytes of slack between a guessed struct's size and the
/// distance to the next kallsyms symbol, the guess is taken: alignment
/// pads a variable to at most a cache line, 64 bytes, in practice.
const GUESS_SLACK: u64 = 64;

/// The BTF type id of kernel variable `name`; `room` is its distance to the
/// next symbol in kallsyms (0 when unknown).
pub fn variable_root(btf: &Btf, name: &str, room: u64) -> Result<u32, FieldError> {
    if let Some(var) = btf.named(KIND_VAR, name) {
        return Ok(var.size_type);
    }
    let bare = name.strip_prefix("init_").unwrap_or(name);
    let candidates = [
        name.to_owned(),
        bare.to_owned(),
        format!("{bare}_struct"),
        format!("{name}_struct"),
    ];
    let mut tried = Vec::new();
    for candidate in &candidates {
        if tried.contains(candidate) {
            continue;
        }
        tried.push(candidate.clone());
        let Some(index) = btf
            .types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && btf.str_at(t.name_off) == candidate)
        else {
            continue;
        };
        let size = u64::from(btf.types[index].size_type);
        if room == 0 || (size <= room && room - size < GUESS_SLACK) {
            log::debug!(
                "`{name}`: no VAR in BTF; its type is taken to be `struct {candidate}` \
                 ({size} bytes, {room} to the next symbol)"
            );
            return Ok(index as u32 + 1);
        }
    }
    Err(FieldError::NoBtf {
        symbol: name.to_owned(),
        reason: format!(
            "no VAR record, and no struct {} that fills its {room} bytes",
            tried.join(", struct ")
        ),
    })
}

impl Btf {
    /// Through typedefs and qualifiers.
    fn strip(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.ty(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_type;
                }
                _ => break,
            }
        }
        id
    }

    fn struct_members(&self, t: &RawType) -> Vec<Member<u32>> {
        (0..t.vlen as usize)
            .map(|i| {
                let name_off = self.data_u32(t, 3 * i);
                let ty = self.data_u32(t, 3 * i + 1);
                let offset = self.data_u32(t, 3 * i + 2);
                let (bit_offset, mut bit_size) = if t.kind_flag {
                    (offset & 0x00ff_ffff, offset >> 24)
                } else {
                    (offset, 0)
                };
                // An INT narrower than its size is an old-style bit-field.
                if bit_size == 0
                    && let Some(m) = self.ty(self.strip(ty))
                    && m.kind == KIND_INT
                    && self.data_u32(m, 0) & 0xff != m.size_type * 8
                {
                    bit_size = self.data_u32(m, 0) & 0xff;
                }
                Member {
                    name: self.str_at(name_off).to_owned(),
                    ty,
                    bit_offset: u64::from(bit_offset),
                    bit_size,
                }
            })
            .collect()
    }

    fn enumerators(&self, t: &RawType) -> Vec<(i64, String)> {
        (0..t.vlen as usize)
            .map(|i| match t.kind {
                KIND_ENUM => (
                    i64::from(self.data_u32(t, 2 * i + 1) as i32),
                    self.str_at(self.data_u32(t, 2 * i)).to_owned(),
                ),
                _ => (
                    (u64::from(self.data_u32(t, 3 * i + 1))
                        | (u64::from(self.data_u32(t, 3 * i + 2)) << 32))
                        as i64,
                    self.str_at(self.data_u32(t, 3 * i)).to_owned(),
                ),
            })
            .collect()
    }

    fn is_char(&self, id: u32) -> bool {
        self.ty(self.strip(id)).is_some_and(|t| {
            t.kind == KIND_INT && t.size_type == 1 && self.str_at(t.name_off).contains("char")
        })
    }
}

impl Types for Btf {
    type Id = u32;

    fn node(&self, id: u32) -> Node<u32> {
        let Some(t) = self.ty(self.strip(id)).copied() else {
            return Node::Leaf;
        };
        match t.kind {
            KIND_STRUCT | KIND_UNION => Node::Struct(self.struct_members(&t)),
            KIND_ARRAY => Node::Array {
                elem: self.data_u32(&t, 0),
                count: Some(u64::from(self.data_u32(&t, 2))),
            },
            _ => Node::Leaf,
        }
    }

    fn info(&self, id: u32) -> FieldType {
        let info = self.type_info(id);
        let stripped = self.ty(self.strip(id)).copied();
        let enumerators = match stripped {
            Some(t) if matches!(t.kind, KIND_ENUM | KIND_ENUM64) => self.enumerators(&t),
            _ => Vec::new(),
        };
        let chars = match stripped {
            Some(t) if t.kind == KIND_ARRAY => self.is_char(self.data_u32(&t, 0)),
            // A lone char is a number; an array of them is text.
            _ => false,
        };
        FieldType {
            name: info.name,
            size: u64::from(info.size),
            decode: if matches!(
                info.decode,
                Decode::Bool | Decode::Signed | Decode::Unsigned
            ) {
                info.decode
            } else {
                Decode::Hex
            },
            enumerators,
            chars,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kernel's own `init_net.core.sysctl_somaxconn`, when it has BTF:
    /// `struct net`'s `core` is a `struct netns_core` holding an int.
    #[test]
    fn init_net_on_this_kernel() {
        let Ok(btf) = Btf::vmlinux() else {
            eprintln!("SKIPPED: no vmlinux BTF here");
            return;
        };
        let root = variable_root(&btf, "init_net", 0).expect("struct net");
        let accesses = [
            crate::target::Access::Member("core".into()),
            crate::target::Access::Member("sysctl_somaxconn".into()),
        ];
        let (r, _) =
            crate::target::fields::walk(&btf, root, "init_net", &accesses).expect("member");
        assert_eq!((r.ty.name.as_str(), r.ty.size), ("int", 4));
        assert_eq!(r.ty.decode, Decode::Signed);
    }
}

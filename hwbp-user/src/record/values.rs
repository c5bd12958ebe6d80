//! What a hit's numbers mean: function arguments named and typed (kernel
//! functions from BTF, user functions from DWARF) and read from the
//! register the calling convention puts each in ([`crate::target::abi`]; those in
//! xmm registers or on the stack are shown as not captured), and data
//! values decoded by type, with the previous value of the target
//! (old → new).
//!
//! The previous value is tracked here, in hit order, per target; the value
//! before the first hit is read when the target is armed: from
//! /proc/PID/mem for user targets and from /proc/kcore for kernel ones
//! (where the kernel has it; otherwise the first hit has no old value).

use std::{fs::File, io::Read as _, os::unix::fs::FileExt as _, sync::Arc};

use crate::{
    record::format::Arg,
    target::Mode,
    target::abi::ARG_REGISTERS,
    target::abi::{Location, Shape},
    target::btf::{Btf, BtfError, Decode, Param, Signature, TypeInfo},
    target::condition::{Arguments, IntType, Operands},
    target::resolve::{Breakpoint, Space, SymbolKind},
};

/// What is known of one target's type.
#[derive(Clone, Debug, Default)]
enum SlotType {
    /// Nothing: registers and hex.
    #[default]
    Unknown,
    /// A function whose parameters BTF or DWARF names, each with where it
    /// is at the function's first instruction.
    Function(Vec<(Param, Location)>),
    /// A variable whose type BTF names.
    Variable(TypeInfo),
    /// A member named by a field expression, with its type.
    Field(Arc<crate::target::fields::FieldType>),
}

/// The value fields of a hit record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValueFields {
    pub value: Option<u64>,
    pub old_value: Option<u64>,
    pub value_type: Option<String>,
    pub value_text: Option<String>,
    pub old_value_text: Option<String>,
}

/// An argument's name and C type, as its hits carry them.
type ArgName = (Arc<str>, Option<Arc<str>>);

/// Per-session state: types per target and the last value seen.
pub struct Values {
    types: Vec<SlotType>,
    /// Per slot, the names and types its hits' arguments carry (shared,
    /// not copied per hit): a function's parameters, else the registers.
    arg_names: Vec<Vec<ArgName>>,
    lens: Vec<u8>,
    last: Vec<Option<u64>>,
    /// The kernel's BTF, kept for targets added or moved while tracing.
    btf: Option<Btf>,
    /// Per slot, whether the value a hit reads is the one before an access
    /// that may change it (a write or rw watchpoint on arm64, which traps
    /// before the access; see host::arch).
    before: Vec<bool>,
}

impl Values {
    /// The current value of every data target (None for the others): read
    /// as soon as they are armed, before the command runs.
    pub fn initial(breakpoints: &[Breakpoint], pid: Option<i32>) -> Vec<Option<u64>> {
        breakpoints
            .iter()
            .map(|bp| {
                if !bp.mode.is_data() {
                    return None;
                }
                match bp.space {
                    Space::User => pid.and_then(|pid| read_user(pid, bp.addr, bp.len)),
                    Space::Kernel => read_kernel(bp.addr, bp.len),
                }
            })
            .collect()
    }

    /// Types from the kernel's BTF for kernel targets (`btf`, when the
    /// kernel has it) and from DWARF for user targets; `initial` from
    /// [`Values::initial`].
    pub fn new(
        breakpoints: &[Breakpoint],
        pid: Option<i32>,
        btf: Option<Result<Btf, BtfError>>,
        initial: Vec<Option<u64>>,
    ) -> Self {
        let btf = btf.and_then(|btf| {
            btf.inspect_err(|e| log::info!("arguments and values stay untyped: {e}"))
                .ok()
        });
        let types = breakpoints
            .iter()
            .map(|bp| match (&bp.field, bp.space) {
                (Some(field), _) if bp.mode.is_data() => SlotType::Field(field.clone()),
                (_, Space::Kernel) => slot_type(btf.as_ref(), bp),
                (_, Space::User) => pid.map_or(SlotType::Unknown, |pid| user_slot_type(pid, bp)),
            })
            .collect();
        let mut values = Self::with_types(
            types,
            breakpoints.iter().map(|bp| bp.len).collect(),
            initial,
        );
        values.btf = btf;
        values.before = breakpoints
            .iter()
            .map(|bp| {
                crate::host::arch::TRAPS_BEFORE_ACCESS
                    && matches!(bp.mode, Mode::Write | Mode::ReadWrite)
            })
            .collect();
        values
    }

    /// The kernel's BTF, when it was parsed (kernel targets).
    pub fn btf(&self) -> Option<&Btf> {
        self.btf.as_ref()
    }

    /// Target `slot` watches `bp` from now on (moved while tracing), or is
    /// a new target: its type, length and current value. Hits of the old
    /// watch still waiting in the ring buffer are decoded as the new one.
    pub fn set_target(&mut self, slot: usize, bp: &Breakpoint, pid: Option<i32>) {
        let ty = match (&bp.field, bp.space) {
            (Some(field), _) if bp.mode.is_data() => SlotType::Field(field.clone()),
            (_, Space::Kernel) => slot_type(self.btf.as_ref(), bp),
            (_, Space::User) => pid.map_or(SlotType::Unknown, |pid| user_slot_type(pid, bp)),
        };
        let initial = Self::initial(std::slice::from_ref(bp), pid);
        let one = Self::with_types(vec![ty], vec![bp.len], initial);
        let len = self.types.len().max(slot + 1);
        self.types.resize_with(len, || SlotType::Unknown);
        self.arg_names.resize_with(len, Vec::new);
        self.lens.resize(len, 8);
        self.last.resize(len, None);
        self.before.resize(len, false);
        self.before[slot] = crate::host::arch::TRAPS_BEFORE_ACCESS
            && matches!(bp.mode, Mode::Write | Mode::ReadWrite);
        let Self {
            types,
            arg_names,
            lens,
            last,
            ..
        } = one;
        (
            self.types[slot],
            self.arg_names[slot],
            self.lens[slot],
            self.last[slot],
        ) = (
            types.into_iter().next().unwrap_or(SlotType::Unknown),
            arg_names.into_iter().next().unwrap_or_default(),
            lens.first().copied().unwrap_or(8),
            last.first().copied().flatten(),
        );
    }

    fn with_types(types: Vec<SlotType>, lens: Vec<u8>, last: Vec<Option<u64>>) -> Self {
        let registers: Vec<ArgName> = ARG_REGISTERS
            .iter()
            .map(|name| (Arc::from(*name), None))
            .collect();
        let arg_names = types
            .iter()
            .map(|t| match t {
                SlotType::Function(params) => params
                    .iter()
                    .map(|(p, location)| {
                        let name = if p.name.is_empty() { "?" } else { &p.name };
                        let ty = match location {
                            Location::Reference(_) => format!("{} (by reference)", p.ty.name),
                            _ => p.ty.name.clone(),
                        };
                        (Arc::from(name), Some(Arc::from(ty)))
                    })
                    .collect(),
                _ => registers.clone(),
            })
            .collect();
        Self {
            types,
            arg_names,
            lens,
            last,
            btf: None,
            before: Vec::new(),
        }
    }

    /// The arguments of an execute hit: named and typed when BTF or DWARF
    /// knows the function (each read from its own register, or not
    /// captured), else the register names and hex.
    pub fn args(&self, slot: usize, regs: &[u64; 6]) -> Vec<Arg> {
        match self.types.get(slot) {
            Some(SlotType::Function(params)) => params
                .iter()
                .zip(&self.arg_names[slot])
                .map(|((p, location), (name, ty))| {
                    let register = |i: &u8| regs.get(usize::from(*i)).copied();
                    let value = match location {
                        Location::Int(i) => {
                            register(i).map(|v| p.ty.decode.format(v, size_of_arg(&p.ty)))
                        }
                        Location::Reference(i) => register(i).map(crate::record::format::hex),
                        _ => None,
                    };
                    Arg {
                        name: name.clone(),
                        location: value.is_none().then(|| Arc::from(location.describe())),
                        value,
                        ty: ty.clone(),
                    }
                })
                .collect(),
            _ => self
                .arg_names
                .get(slot)
                .into_iter()
                .flatten()
                .zip(regs)
                .map(|((name, _), v)| Arg {
                    name: name.clone(),
                    value: Some(crate::record::format::hex(*v)),
                    ty: None,
                    location: None,
                })
                .collect(),
        }
    }

    /// Whether target `slot`'s hits read the value before the access (a
    /// write or rw watchpoint on arm64): the value after comes with the
    /// next hit, which the collector pairs with it.
    pub fn before_access(&self, slot: usize) -> bool {
        self.before.get(slot).copied().unwrap_or(false)
    }

    /// The value fields of a data hit (`value` as read by the BPF program,
    /// None when it could not be read); remembers it as the target's last.
    ///
    /// Where the hit comes before the access (see [`Values::before`]) the
    /// value read is the old one: it is given as `old_value` alone, the new
    /// one being unknown at this hit (the next hit's `old_value` is it).
    pub fn value(&mut self, slot: usize, value: Option<u64>) -> ValueFields {
        let Some(value) = value else {
            return ValueFields::default();
        };
        if self.before_access(slot) {
            if let Some(last) = self.last.get_mut(slot) {
                *last = Some(value);
            }
            return ValueFields {
                old_value: Some(value),
                value_type: self.type_name(slot),
                old_value_text: self.text(slot, value),
                ..Default::default()
            };
        }
        let old = self.last.get_mut(slot).and_then(|last| last.replace(value));
        ValueFields {
            value: Some(value),
            old_value: old,
            value_type: self.type_name(slot),
            value_text: self.text(slot, value),
            old_value_text: old.and_then(|o| self.text(slot, o)),
        }
    }

    /// The C name of target `slot`'s value type, when it is typed.
    fn type_name(&self, slot: usize) -> Option<String> {
        match self.types.get(slot)? {
            SlotType::Variable(ty) => Some(ty.name.clone()),
            SlotType::Field(ty) => Some(ty.name.clone()),
            _ => None,
        }
    }

    /// `value` of target `slot` as its type shows it, when it is typed.
    fn text(&self, slot: usize, value: u64) -> Option<String> {
        let len = self.lens.get(slot).copied().unwrap_or(8);
        match self.types.get(slot)? {
            SlotType::Variable(ty) => Some(ty.decode.format(value, len)),
            SlotType::Field(ty) => Some(ty.format(value, len)),
            _ => None,
        }
    }
}

/// A kernel variable watched whole, with no `/LEN` given: its default LEN
/// came from kallsyms (the distance to the next symbol, often 8 for a
/// 4-byte int), and BTF may know better.
pub fn wants_btf_len(bp: &Breakpoint) -> bool {
    bp.space == Space::Kernel
        && bp.mode.is_data()
        && bp.kind == SymbolKind::Object
        && bp.spec.len.is_none()
        && !bp.symbol.contains('+')
}

/// Sets the LEN of kernel variables that [`wants_btf_len`] to their BTF
/// type's size, when BTF has the variable (a VAR entry) and the size is
/// one a debug register can watch (1, 2, 4 or 8, aligned). Must run before
/// arming. Most vmlinux BTF types only per-CPU variables (pahole adds the
/// others with its global_var feature), so this often changes nothing.
pub fn lens_from_btf(breakpoints: &mut [Breakpoint], btf: &Btf) {
    for bp in breakpoints.iter_mut().filter(|bp| wants_btf_len(bp)) {
        let Some(ty) = btf.variable_type(&bp.symbol) else {
            continue;
        };
        if let Ok(len @ (1 | 2 | 4 | 8)) = u8::try_from(ty.size)
            && bp.addr % u64::from(len) == 0
            && len != bp.len
        {
            log::debug!(
                "{}: LEN {len}, the size of its BTF type `{}` (kallsyms gave {})",
                bp.spec.text,
                ty.name,
                bp.len
            );
            bp.len = len;
        }
    }
}

/// What each target's condition may compare (see
/// [`crate::target::condition`]): the value's type, from BTF where the
/// kernel has it and from DWARF for a program's variable or member (else
/// unsigned, as wide as the watch), and a function's arguments by name
/// from BTF or DWARF.
pub fn condition_operands(
    breakpoints: &[Breakpoint],
    pid: Option<i32>,
    btf: Option<&Btf>,
) -> Vec<Operands> {
    breakpoints
        .iter()
        .map(|bp| {
            if bp.spec.condition.is_none() {
                return Operands {
                    value: Err(String::new()),
                    args: Err(String::new()),
                };
            }
            let ty = match (&bp.field, bp.space) {
                (Some(field), _) if bp.mode.is_data() => SlotType::Field(field.clone()),
                (_, Space::Kernel) => slot_type(btf, bp),
                (_, Space::User) => pid.map_or(SlotType::Unknown, |pid| user_slot_type(pid, bp)),
            };
            operands(bp, ty)
        })
        .collect()
}

fn operands(bp: &Breakpoint, ty: SlotType) -> Operands {
    if !bp.mode.is_data() {
        let named = match ty {
            SlotType::Function(params) => params
                .into_iter()
                .filter(|(p, _)| !p.name.is_empty())
                .map(|(p, location)| {
                    let place = match location {
                        Location::Int(i) => Ok((
                            i,
                            IntType {
                                bytes: size_of_arg(&p.ty),
                                signed: p.ty.decode == Decode::Signed,
                                name: p.ty.name.clone(),
                            },
                        )),
                        Location::Reference(i) => Err(format!(
                            "memory the caller passes a pointer to in {} (by reference)",
                            crate::target::abi::Register::Int(i)
                        )),
                        Location::Stack => Err("memory (on the stack)".into()),
                        Location::Unknown => Err(
                            "a place hwbp cannot tell (its type, or an earlier argument's, is \
                             not known)"
                                .into(),
                        ),
                        other => Err(other.describe()),
                    };
                    (p.name, place)
                })
                .collect(),
            _ => Vec::new(),
        };
        return Operands {
            value: Err(format!(
                "`{}` is an execute breakpoint, which has no value: compare its arguments \
                 (arg0..arg5, or by name)",
                bp.spec.text
            )),
            args: Ok(Arguments {
                function: format!("`{}`", bp.symbol),
                named,
            }),
        };
    }
    let args = Err(format!(
        "`{}` is a data watchpoint: arguments are a function's, at an execute breakpoint",
        bp.spec.text
    ));
    if bp.space == Space::User && bp.mode != Mode::Write {
        return Operands {
            value: Err(format!(
                "`{}` traps on reads: in user space the BPF program cannot read the bytes it \
                 watches (each read would trap again), so it has no value; watch writes (`:w`)",
                bp.spec.text
            )),
            args,
        };
    }
    if crate::host::arch::TRAPS_BEFORE_ACCESS {
        return Operands {
            value: Err(format!(
                "on this architecture a watchpoint traps before the access, so a hit of `{}` \
                 holds the value before it: conditions on `value` and `old` need one that \
                 traps after it (x86-64); compare comm, pid, tid or cpu here",
                bp.spec.text
            )),
            args,
        };
    }
    let value = match ty {
        SlotType::Variable(ty) => IntType {
            bytes: bp.len,
            signed: ty.decode == Decode::Signed,
            name: ty.name,
        },
        // A member narrower than its type's number is compared as the
        // watched bytes, unsigned (as it is shown, in hex).
        SlotType::Field(field) if u64::from(bp.len) == field.size => IntType {
            bytes: bp.len,
            signed: field.decode == Decode::Signed,
            name: field.name.clone(),
        },
        _ => IntType::unsigned(bp.len),
    };
    Operands {
        value: Ok(value),
        args,
    }
}

/// Registers are 8 bytes; a narrower parameter uses the low bytes.
fn size_of_arg(ty: &TypeInfo) -> u8 {
    match ty.size {
        1 | 2 | 4 => ty.size as u8,
        _ => 8,
    }
}

fn slot_type(btf: Option<&Btf>, bp: &Breakpoint) -> SlotType {
    let Some(btf) = btf.filter(|_| bp.space == Space::Kernel) else {
        return SlotType::Unknown;
    };
    // `vfs_read` or `vfs_read+0x0`: arguments are in their registers only at
    // the function's first instruction.
    let name = bp.symbol.split('+').next().unwrap_or(&bp.symbol);
    if bp.mode.is_data() {
        // Only when the watched bytes are the whole variable, from its start.
        match btf.variable_type(name) {
            Some(ty) if !bp.symbol.contains('+') && ty.size == u32::from(bp.len) => {
                SlotType::Variable(ty)
            }
            _ => SlotType::Unknown,
        }
    } else if bp.at_entry {
        btf.function(name).map_or(SlotType::Unknown, located)
    } else {
        SlotType::Unknown
    }
}

/// A user function's parameters from the DWARF of the file it is in.
fn user_slot_type(pid: i32, bp: &Breakpoint) -> SlotType {
    if bp.mode.is_data() || !bp.at_entry {
        return SlotType::Unknown;
    }
    let Ok(maps) = crate::target::resolve::maps::read_maps(pid) else {
        return SlotType::Unknown;
    };
    let Some((mapping, path)) = maps
        .iter()
        .find(|m| bp.addr >= m.start && bp.addr < m.end)
        .and_then(|m| Some((m, m.path.clone()?)))
    else {
        return SlotType::Unknown;
    };
    let in_root = std::path::PathBuf::from(format!("/proc/{pid}/root{}", path.display()));
    let file = if in_root.is_file() { in_root } else { path };
    let params = crate::target::resolve::ElfImage::load(&file)
        .ok()
        .and_then(|image| image.file_offset_to_vaddr(bp.addr - mapping.start + mapping.offset))
        .and_then(|vaddr| crate::target::dwarf::function(&file, vaddr));
    match params {
        // Line tables alone (debug = 1) list functions without their
        // parameters: that says nothing, keep the registers.
        Some(signature) if !signature.params.is_empty() => located(signature),
        _ => SlotType::Unknown,
    }
}

/// A function's parameters with where each is at its first instruction.
fn located(signature: Signature) -> SlotType {
    let Signature { params, returns } = signature;
    let shapes: Vec<Shape> = params.iter().map(|p| p.shape.clone()).collect();
    let locations = crate::target::abi::locate(&returns, &shapes);
    SlotType::Function(params.into_iter().zip(locations).collect())
}

fn from_le(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(buf)
}

/// `len` bytes at `addr` in process `pid`.
fn read_user(pid: i32, addr: u64, len: u8) -> Option<u64> {
    let file = File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = vec![0u8; usize::from(len.clamp(1, 8))];
    file.read_exact_at(&mut buf, addr).ok()?;
    Some(from_le(&buf))
}

/// `len` bytes at kernel address `addr`, through /proc/kcore (an ELF core
/// file of the kernel's memory: find the PT_LOAD segment holding `addr`).
fn read_kernel(addr: u64, len: u8) -> Option<u64> {
    let mut file = File::open("/proc/kcore").ok()?;
    let mut head = vec![0u8; 64 * 1024];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(_) => return None,
        }
    }
    head.truncate(filled);
    let offset = kcore_offset(&head, addr, u64::from(len))?;
    let mut buf = vec![0u8; usize::from(len.clamp(1, 8))];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(from_le(&buf))
}

/// The file offset of `addr` in an ELF64 little-endian core file whose
/// first bytes are `head`.
fn kcore_offset(head: &[u8], addr: u64, len: u64) -> Option<u64> {
    const PT_LOAD: u32 = 1;
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        head.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        head.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // ELFCLASS64, little-endian.
    if head.get(0..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    (0..phnum).find_map(|i| {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? != PT_LOAD {
            return None;
        }
        let (offset, vaddr, filesz) = (u64_at(ph + 8)?, u64_at(ph + 16)?, u64_at(ph + 32)?);
        (addr >= vaddr && addr.checked_add(len)? <= vaddr.checked_add(filesz)?)
            .then(|| offset + (addr - vaddr))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::btf::{Decode, TypeInfo};

    #[test]
    fn old_and_new_values() {
        let int = TypeInfo {
            name: "int".into(),
            decode: Decode::Signed,
            size: 4,
        };
        let mut v = Values::with_types(
            vec![SlotType::Variable(int), SlotType::Unknown],
            vec![4, 8],
            vec![Some(7), None],
        );
        assert_eq!(
            v.value(0, Some(0xffff_ffff)),
            ValueFields {
                value: Some(0xffff_ffff),
                old_value: Some(7),
                value_type: Some("int".into()),
                value_text: Some("-1".into()),
                old_value_text: Some("7".into()),
            }
        );
        assert_eq!(v.value(0, Some(3)).old_value_text.as_deref(), Some("-1"));
        assert_eq!(v.value(1, Some(1)).old_value, None);
        assert_eq!(v.value(1, Some(2)).old_value, Some(1));
        assert_eq!(v.value(1, None), ValueFields::default());
    }

    #[test]
    fn untyped_args_are_registers() {
        let v = Values::with_types(vec![SlotType::Unknown], vec![8], vec![None]);
        let args = v.args(0, &[1, 2, 3, 4, 5, 0x10]);
        let shown: Vec<String> = args
            .iter()
            .map(|a| format!("{}={}", a.name, a.shown()))
            .collect();
        assert_eq!(
            shown,
            [
                "rdi=0x1", "rsi=0x2", "rdx=0x3", "rcx=0x4", "r8=0x5", "r9=0x10"
            ]
        );
    }

    /// `scale(double f, int k, float g)` called as `scale(2.5, 7, 0.25f)`:
    /// k is in rdi (7), f and g in xmm registers; a struct returned by
    /// value takes rdi and moves the int to rsi.
    #[test]
    fn typed_args_are_read_from_their_own_registers() {
        let param = |name: &str, ty: &str, decode: Decode, size: u32, shape: Shape| Param {
            name: name.into(),
            ty: TypeInfo {
                name: ty.into(),
                decode,
                size,
            },
            shape,
        };
        let scale = || {
            vec![
                param("f", "double", Decode::Hex, 8, Shape::Float(8)),
                param("k", "int", Decode::Signed, 4, Shape::Int(4)),
                param("g", "float", Decode::Hex, 4, Shape::Float(4)),
            ]
        };
        let big = Shape::Aggregate {
            size: 32,
            fields: Vec::new(),
        };
        let v = Values::with_types(
            vec![
                located(Signature {
                    params: scale(),
                    returns: Shape::Int(4),
                }),
                located(Signature {
                    params: scale(),
                    returns: big,
                }),
            ],
            vec![1, 1],
            vec![None, None],
        );
        let regs = [7, 0xffff_fff9, 3, 4, 5, 6];
        let shown = |slot| -> Vec<String> {
            v.args(slot, &regs)
                .iter()
                .map(|a| format!("{}={}", a.name, a.shown()))
                .collect()
        };
        assert_eq!(
            shown(0),
            [
                "f=<not captured: double in xmm0>",
                "k=7",
                "g=<not captured: float in xmm1>"
            ]
        );
        assert_eq!(
            shown(1),
            [
                "f=<not captured: double in xmm0>",
                "k=-7",
                "g=<not captured: float in xmm1>"
            ]
        );
        let f = &v.args(0, &regs)[0];
        assert_eq!(
            (f.value.as_deref(), f.location.as_deref()),
            (None, Some("xmm0"))
        );
    }

    /// Kernel variables typed from a hand-made BTF blob: the default LEN
    /// from the type's size (kallsyms said 8 for each), then the values
    /// decoded by type; a `/LEN` given by hand stays.
    #[test]
    fn kernel_variables_typed_from_btf() {
        use std::sync::Arc;

        use crate::{
            target::btf::test_blobs::blob,
            target::resolve::{Kallsyms, Resolver},
        };

        let btf = Btf::parse(&blob()).expect("blob");
        let kallsyms = Kallsyms::parse(
            "ffffffff82a00000 D limit\nffffffff82a00010 D ticks\nffffffff82a00020 b flag\n\
             ffffffff82a00028 D table\nffffffff82a00100 D other\nffffffff82a00108 D end\n",
        );
        let mut resolver = Resolver::new(None).with_kallsyms(Arc::new(kallsyms));
        let specs: Vec<crate::target::TargetSpec> = [
            "limit:w",
            "ticks:w",
            "flag:rw",
            "table:w",
            "other:w",
            "limit/8:rw",
        ]
        .iter()
        .map(|t| t.parse().unwrap_or_else(|e| panic!("{t}: {e}")))
        .collect();
        // `limit/8:rw` and `limit:w` share an address: resolve apart.
        let mut bps = resolver.resolve_all(&specs[..5]).expect("resolve");
        bps.push(resolver.resolve(&specs[5]).expect("resolve"));
        let lens = |bps: &[Breakpoint]| bps.iter().map(|bp| bp.len).collect::<Vec<u8>>();
        assert_eq!(lens(&bps), [8, 8, 8, 8, 8, 8], "kallsyms distances");
        assert_eq!(
            bps.iter().map(wants_btf_len).collect::<Vec<bool>>(),
            [true, true, true, true, true, false]
        );
        lens_from_btf(&mut bps, &btf);
        // int, unsigned long, _Bool; a 200-byte struct and a variable BTF
        // does not know keep 8; the hand-given LEN stays.
        assert_eq!(lens(&bps), [4, 8, 1, 8, 8, 8]);

        let mut values = Values::new(
            &bps,
            None,
            Some(Ok(btf)),
            vec![Some(7), None, None, None, None, None],
        );
        let typed = |f: &ValueFields| {
            (
                f.value_type.clone(),
                f.value_text.clone(),
                f.old_value_text.clone(),
            )
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            typed(&values.value(0, Some(0xffff_ffff))),
            (some("int"), some("-1"), some("7"))
        );
        assert_eq!(
            typed(&values.value(1, Some(u64::MAX))),
            (some("unsigned long"), some("18446744073709551615"), None)
        );
        assert_eq!(
            typed(&values.value(2, Some(1))),
            (some("_Bool"), some("true"), None)
        );
        // Not typed: a struct, a variable without a VAR, a LEN that is not
        // the type's size.
        for slot in 3..6 {
            let fields = values.value(slot, Some(5));
            assert_eq!(
                (fields.value, typed(&fields)),
                (Some(5), (None, None, None)),
                "slot {slot}"
            );
        }
    }

    #[test]
    fn own_memory() {
        static WORD: u64 = 0x1122_3344_5566_7788;
        let pid = std::process::id() as i32;
        let addr = &WORD as *const u64 as u64;
        assert_eq!(read_user(pid, addr, 8), Some(0x1122_3344_5566_7788));
        assert_eq!(read_user(pid, addr, 2), Some(0x7788));
    }

    #[test]
    fn a_value_read_before_the_access_is_only_the_old_one() {
        // arm64's write watchpoints: the program reads the value before the
        // store; it must not be given as the value after it.
        let mut values = Values::with_types(vec![SlotType::Unknown], vec![4], vec![Some(7)]);
        values.before = vec![true];
        let fields = values.value(0, Some(9));
        assert_eq!((fields.value, fields.old_value), (None, Some(9)));
        // Where the hit comes after the access (x86), as before.
        values.before = vec![false];
        let fields = values.value(0, Some(10));
        assert_eq!((fields.value, fields.old_value), (Some(10), Some(9)));
    }
}

//! Where a function's arguments are at its first instruction, by the System V
//! x86-64 calling convention (psABI §3.2.3, "Parameter Passing"): which
//! integer register holds each parameter, and which parameters are where the
//! BPF program cannot read them.
//!
//! The BPF program captures the six integer argument registers (rdi, rsi,
//! rdx, rcx, r8, r9); pt_regs has no xmm registers and the stack is not
//! copied. Zipping a function's parameters with those registers in order puts
//! wrong values under right names as soon as a `double` or a struct comes
//! first, so every parameter is classified here: integers, pointers, enums
//! and bools take the next integer register; floating point goes to xmm
//! registers (`long double` to the stack); aggregates of more than 16 bytes
//! go to the stack; smaller ones are classified per eightbyte and take an
//! integer register per INTEGER eightbyte. Right or refuse: a parameter
//! whose class is not known for sure (a type hwbp cannot lay out) makes it
//! and every later parameter "not captured", since the registers they take
//! are then unknown.

use std::fmt;

/// Names of the x86-64 argument registers, in calling-convention order.
#[cfg(not(target_arch = "aarch64"))]
pub const ARG_REGISTERS: &[&str] = &["rdi", "rsi", "rdx", "rcx", "r8", "r9"];
/// Names of the arm64 argument registers (AAPCS64), in order: the BPF
/// program captures the first six (see abi_aapcs64.rs).
#[cfg(target_arch = "aarch64")]
pub const ARG_REGISTERS: &[&str] = &["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"];

/// The floating-point argument registers' name: xmmN, or vN on arm64.
const FLOAT_REGISTER: &str = if cfg!(target_arch = "aarch64") {
    "v"
} else {
    "xmm"
};

/// What the calling convention needs to know of a type, read from DWARF or
/// BTF.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// No value: a `void` return.
    Void,
    /// An integer, pointer, enum, bool or character of this many bytes.
    Int(u32),
    /// `float` (4), `double` (8), `__float128` (16).
    Float(u32),
    /// `long double`, x87 80-bit: passed on the stack.
    X87,
    /// A struct, union, class or array (C++ passes trivially copyable
    /// classes this way): its size and its fields at their byte offsets.
    /// Readers fill the fields only for aggregates of 16 bytes or less.
    Aggregate { size: u32, fields: Vec<Field> },
    /// A C++ class that is non-trivial for the purposes of calls (Itanium
    /// C++ ABI §3.1.2.3): the caller passes a pointer to a copy.
    ByReference,
    /// Anything else (vectors, types hwbp cannot lay out).
    Unknown,
}

/// A field of an aggregate: where it starts and what it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    pub offset: u32,
    pub shape: Shape,
}

/// The class of an eightbyte (psABI §3.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Eightbyte {
    Integer,
    Sse,
}

/// How a value is passed, before registers are handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Class {
    /// One register per eightbyte, if enough are left.
    Registers(Vec<Eightbyte>),
    Memory,
    Unknown,
}

/// A register an argument is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// Integer argument register N: rdi, rsi, rdx, rcx, r8, r9.
    Int(u8),
    /// xmmN.
    Xmm(u8),
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Int(i) => f.write_str(ARG_REGISTERS.get(usize::from(i)).copied().unwrap_or("?")),
            Self::Xmm(i) => write!(f, "{FLOAT_REGISTER}{i}"),
        }
    }
}

/// Where a parameter is at the function's first instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A scalar whole in integer register N: its value is captured.
    Int(u8),
    /// A pointer to the caller's copy of a class passed by reference, in
    /// integer register N: captured (the address).
    Reference(u8),
    /// In registers whose contents are not shown: xmm registers, which the
    /// BPF program cannot read, or an aggregate's eightbytes.
    Registers(Vec<Register>),
    /// On the stack.
    Stack,
    /// Not known: this parameter's class, or an earlier one's, is not.
    Unknown,
}

impl Location {
    /// Where it is, for a reader: `xmm0`, `rdi, rsi`, `stack`, `unknown`.
    pub fn describe(&self) -> String {
        match self {
            Self::Int(i) | Self::Reference(i) => Register::Int(*i).to_string(),
            Self::Registers(regs) => regs
                .iter()
                .map(Register::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Self::Stack => "stack".into(),
            Self::Unknown => "unknown".into(),
        }
    }
}

const INT_REGISTERS: u8 = 6;
const XMM_REGISTERS: u8 = 8;

/// Where each of `params` is when a function returning `returns` is entered
/// (on arm64 by AAPCS64, see abi_aapcs64.rs).
pub fn locate(returns: &Shape, params: &[Shape]) -> Vec<Location> {
    if cfg!(target_arch = "aarch64") {
        return super::abi_aapcs64::locate(returns, params);
    }
    // A return value of class MEMORY is written where the caller says: the
    // address comes in rdi, as a hidden first argument.
    let mut next_int = match returns {
        Shape::Void | Shape::Int(_) | Shape::Float(_) | Shape::X87 => Some(0),
        Shape::ByReference => Some(1),
        Shape::Aggregate { .. } => match classify(returns) {
            Class::Registers(_) => Some(0),
            Class::Memory => Some(1),
            Class::Unknown => None,
        },
        Shape::Unknown => None,
    };
    let mut next_xmm = 0u8;
    params
        .iter()
        .map(|shape| {
            let Some(int) = next_int else {
                return Location::Unknown;
            };
            match classify(shape) {
                Class::Unknown => {
                    next_int = None;
                    Location::Unknown
                }
                Class::Memory => Location::Stack,
                Class::Registers(eightbytes) => {
                    let ints = eightbytes
                        .iter()
                        .filter(|e| **e == Eightbyte::Integer)
                        .count() as u8;
                    let xmms = eightbytes.len() as u8 - ints;
                    // An argument goes whole in registers or whole on the stack.
                    if int + ints > INT_REGISTERS || next_xmm + xmms > XMM_REGISTERS {
                        return Location::Stack;
                    }
                    next_int = Some(int + ints);
                    match shape {
                        Shape::Int(size) if *size <= 8 => return Location::Int(int),
                        Shape::ByReference => return Location::Reference(int),
                        _ => {}
                    }
                    let (mut i, mut x) = (int, next_xmm);
                    next_xmm += xmms;
                    let regs = eightbytes
                        .iter()
                        .map(|e| match e {
                            Eightbyte::Integer => {
                                i += 1;
                                Register::Int(i - 1)
                            }
                            Eightbyte::Sse => {
                                x += 1;
                                Register::Xmm(x - 1)
                            }
                        })
                        .collect();
                    Location::Registers(regs)
                }
            }
        })
        .collect()
}

/// The class of a value of `shape` (the psABI's algorithm, for the types C
/// and C++ pass).
fn classify(shape: &Shape) -> Class {
    match shape {
        Shape::Int(1 | 2 | 4 | 8) | Shape::ByReference => {
            Class::Registers(vec![Eightbyte::Integer])
        }
        Shape::Int(16) => Class::Registers(vec![Eightbyte::Integer; 2]),
        // __float128 is SSE + SSEUP: one xmm register.
        Shape::Float(4 | 8 | 16) => Class::Registers(vec![Eightbyte::Sse]),
        Shape::X87 => Class::Memory,
        Shape::Aggregate { size, .. } if *size > 16 => Class::Memory,
        Shape::Aggregate { size: 0, .. } => Class::Unknown,
        Shape::Aggregate { size, fields } => {
            let mut eightbytes: Vec<Option<Eightbyte>> = vec![None; size.div_ceil(8) as usize];
            let mut leaves = Vec::new();
            if !flatten(fields, 0, 0, &mut leaves) {
                return Class::Unknown;
            }
            for (offset, leaf) in leaves {
                let (len, class, align) = match leaf {
                    Shape::Int(len @ (1 | 2 | 4 | 8)) => (len, Eightbyte::Integer, len),
                    Shape::Float(len @ (4 | 8)) => (len, Eightbyte::Sse, len),
                    Shape::X87 => return Class::Memory,
                    _ => return Class::Unknown,
                };
                if offset + len > *size {
                    return Class::Unknown;
                }
                // An unaligned field (a packed struct) makes it MEMORY.
                if offset % align != 0 {
                    return Class::Memory;
                }
                for eightbyte in offset / 8..=(offset + len - 1) / 8 {
                    let slot = &mut eightbytes[eightbyte as usize];
                    if *slot != Some(Eightbyte::Integer) {
                        *slot = Some(class);
                    }
                }
            }
            // An eightbyte of padding only (NO_CLASS) is left unsure.
            eightbytes
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map_or(Class::Unknown, Class::Registers)
        }
        _ => Class::Unknown,
    }
}

/// The scalar fields of an aggregate, nested ones at their offset from the
/// outer start; false when it holds something not laid out.
fn flatten<'a>(
    fields: &'a [Field],
    base: u32,
    depth: u32,
    out: &mut Vec<(u32, &'a Shape)>,
) -> bool {
    if depth > 16 {
        return false;
    }
    fields.iter().all(|field| {
        let Some(offset) = base.checked_add(field.offset) else {
            return false;
        };
        match &field.shape {
            Shape::Aggregate { size: 0, fields } if fields.is_empty() => true,
            Shape::Aggregate { fields, .. } => flatten(fields, offset, depth + 1, out),
            leaf => {
                out.push((offset, leaf));
                true
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{Location as L, Register as R, Shape as S, *};

    fn aggregate(size: u32, fields: &[(u32, S)]) -> S {
        S::Aggregate {
            size,
            fields: fields
                .iter()
                .map(|(offset, shape)| Field {
                    offset: *offset,
                    shape: shape.clone(),
                })
                .collect(),
        }
    }

    fn pair() -> S {
        aggregate(16, &[(0, S::Int(8)), (8, S::Int(8))])
    }

    fn big() -> S {
        aggregate(32, &[])
    }

    fn xmm(i: u8) -> L {
        L::Registers(vec![R::Xmm(i)])
    }

    #[test]
    fn integers_take_the_integer_registers_in_order() {
        let params = [1, 8, 1, 2, 8, 8, 4, 8].map(S::Int);
        assert_eq!(
            locate(&S::Void, &params),
            [
                L::Int(0),
                L::Int(1),
                L::Int(2),
                L::Int(3),
                L::Int(4),
                L::Int(5),
                L::Stack,
                L::Stack
            ]
        );
    }

    #[test]
    fn floats_take_xmm_and_leave_the_integer_registers() {
        // scale(double f, int k, float g)
        assert_eq!(
            locate(&S::Int(4), &[S::Float(8), S::Int(4), S::Float(4)]),
            [xmm(0), L::Int(0), xmm(1)]
        );
        // Nine doubles: the ninth is on the stack; the int after is in rdi.
        let mut params = vec![S::Float(8); 9];
        params.push(S::Int(4));
        let located = locate(&S::Void, &params);
        assert_eq!(located[7..], [xmm(7), L::Stack, L::Int(0)]);
    }

    #[test]
    fn long_double_is_on_the_stack() {
        assert_eq!(locate(&S::X87, &[S::X87, S::Int(4)]), [L::Stack, L::Int(0)]);
    }

    #[test]
    fn small_integer_aggregates_take_one_register_per_eightbyte() {
        // mixed(struct pair {long a, b} p, int k)
        assert_eq!(
            locate(&S::Void, &[pair(), S::Int(4)]),
            [L::Registers(vec![R::Int(0), R::Int(1)]), L::Int(2)]
        );
        // struct {int a; char b;}: 8 bytes, one register.
        let small = aggregate(8, &[(0, S::Int(4)), (4, S::Int(1))]);
        assert_eq!(
            locate(&S::Void, &[small, S::Int(8)]),
            [L::Registers(vec![R::Int(0)]), L::Int(1)]
        );
        // A nested struct and an array of chars.
        let chars = aggregate(3, &[(0, S::Int(1)), (1, S::Int(1)), (2, S::Int(1))]);
        let nested = aggregate(12, &[(0, S::Int(8)), (8, chars)]);
        assert_eq!(
            locate(&S::Void, &[nested, S::Int(4)]),
            [L::Registers(vec![R::Int(0), R::Int(1)]), L::Int(2)]
        );
        // __int128: two registers.
        assert_eq!(
            locate(&S::Void, &[S::Int(16), S::Int(4)]),
            [L::Registers(vec![R::Int(0), R::Int(1)]), L::Int(2)]
        );
    }

    #[test]
    fn an_aggregate_that_does_not_fit_goes_whole_to_the_stack() {
        // Five integers, then a pair needing two: it goes to the stack and
        // the int after it takes the sixth register.
        let mut params = vec![S::Int(8); 5];
        params.extend([pair(), S::Int(4)]);
        let located = locate(&S::Void, &params);
        assert_eq!(located[4..], [L::Int(4), L::Stack, L::Int(5)]);
    }

    #[test]
    fn float_aggregates_and_mixed_ones() {
        // struct {float x, y;}: one SSE eightbyte.
        let xy = aggregate(8, &[(0, S::Float(4)), (4, S::Float(4))]);
        // struct {long n; double d;}: INTEGER then SSE.
        let nd = aggregate(16, &[(0, S::Int(8)), (8, S::Float(8))]);
        // struct {float f; int i;}: one eightbyte, INTEGER wins.
        let fi = aggregate(8, &[(0, S::Float(4)), (4, S::Int(4))]);
        assert_eq!(
            locate(&S::Void, &[xy, nd, fi, S::Int(4)]),
            [
                xmm(0),
                L::Registers(vec![R::Int(0), R::Xmm(1)]),
                L::Registers(vec![R::Int(1)]),
                L::Int(2)
            ]
        );
    }

    #[test]
    fn big_and_packed_aggregates_are_on_the_stack() {
        // big(struct {long a[4];} s, int k)
        assert_eq!(locate(&S::Void, &[big(), S::Int(4)]), [L::Stack, L::Int(0)]);
        // __attribute__((packed)) struct {char c; int i;}: unaligned.
        let packed = aggregate(5, &[(0, S::Int(1)), (1, S::Int(4))]);
        assert_eq!(
            locate(&S::Void, &[packed, S::Int(4)]),
            [L::Stack, L::Int(0)]
        );
        // struct {long double x;}
        let x87 = aggregate(16, &[(0, S::X87)]);
        assert_eq!(locate(&S::Void, &[x87, S::Int(4)]), [L::Stack, L::Int(0)]);
    }

    #[test]
    fn a_big_returned_aggregate_takes_rdi() {
        assert_eq!(
            locate(&big(), &[S::Int(4), S::Int(8)]),
            [L::Int(1), L::Int(2)]
        );
        assert_eq!(locate(&S::ByReference, &[S::Int(4)]), [L::Int(1)]);
        // A pair comes back in rax:rdx, a double in xmm0, a long double in
        // st0: nothing hidden.
        for returns in [pair(), S::Float(8), S::X87] {
            assert_eq!(locate(&returns, &[S::Int(4)]), [L::Int(0)], "{returns:?}");
        }
    }

    #[test]
    fn this_and_references_take_integer_registers() {
        // A C++ member function: `this` (a pointer) first, then a class
        // passed by reference, then an int.
        assert_eq!(
            locate(&S::Void, &[S::Int(8), S::ByReference, S::Int(4)]),
            [L::Int(0), L::Reference(1), L::Int(2)]
        );
    }

    #[test]
    fn what_is_not_known_refuses_it_and_every_later_parameter() {
        assert_eq!(
            locate(&S::Void, &[S::Int(4), S::Unknown, S::Int(4), S::Float(8)]),
            [L::Int(0), L::Unknown, L::Unknown, L::Unknown]
        );
        // An unknown field, a padding-only eightbyte, an empty aggregate, a
        // __float128 field, a field beyond the end, an odd scalar size.
        for odd in [
            aggregate(8, &[(0, S::Int(4)), (4, S::Unknown)]),
            aggregate(16, &[(0, S::Int(8))]),
            aggregate(0, &[]),
            aggregate(16, &[(0, S::Float(16))]),
            aggregate(4, &[(2, S::Int(4))]),
            S::Int(3),
        ] {
            assert_eq!(
                locate(&S::Void, &[odd.clone(), S::Int(4)]),
                [L::Unknown, L::Unknown],
                "{odd:?}"
            );
        }
        // A return type not known: rdi may be the hidden pointer.
        assert_eq!(locate(&S::Unknown, &[S::Int(4)]), [L::Unknown]);
        let unsure = aggregate(16, &[(0, S::Unknown)]);
        assert_eq!(locate(&unsure, &[S::Int(4)]), [L::Unknown]);
    }

    #[test]
    fn locations_read_as_registers() {
        assert_eq!(
            L::Registers(vec![R::Int(0), R::Xmm(1)]).describe(),
            "rdi, xmm1"
        );
        assert_eq!(L::Int(5).describe(), "r9");
        assert_eq!(L::Stack.describe(), "stack");
    }
}

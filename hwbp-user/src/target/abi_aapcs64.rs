//! Where a function's arguments are at its first instruction on arm64, by
//! the Procedure Call Standard for the Arm 64-bit Architecture (AAPCS64,
//! §6.8.2 "Parameter passing rules"), in the terms of [`super::abi`].
//!
//! The BPF program captures x0..x5 of the eight integer argument registers
//! x0..x7 (the record has six argument words on every architecture); a
//! parameter in x6 or x7 is named with its register, not captured.
//! - Integers, pointers, enums and bools take the next x register; a
//!   16-byte integer takes an even-numbered pair.
//! - Floating point takes the next v register (not captured); so does each
//!   member of a homogeneous floating-point aggregate of at most 4.
//! - Other aggregates of at most 16 bytes take one or two x registers;
//!   larger ones are copied by the caller and passed by reference: the
//!   address, in the next x register, is captured.
//! - A large return value's address goes in x8, not in x0 as on x86-64:
//!   the parameters start at x0 whatever the function returns.
//! - An argument that no longer fits in registers goes on the stack, and
//!   so do all later ones of its kind.
//!
//! Right or refuse, as on x86-64: an aggregate whose layout is not known
//! makes it and every later parameter unknown.

use super::abi::{Field, Location, Register, Shape};

const X_REGISTERS: u8 = 8;
const V_REGISTERS: u8 = 8;

/// Where each of `params` is when a function is entered.
pub fn locate(_returns: &Shape, params: &[Shape]) -> Vec<Location> {
    let mut next_x = Some(0u8);
    let mut next_v = 0u8;
    params
        .iter()
        .map(|shape| {
            let Some(x) = next_x else {
                return Location::Unknown;
            };
            match shape {
                Shape::Int(1 | 2 | 4 | 8) | Shape::ByReference | Shape::Aggregate { .. }
                    if shape_by_reference(shape) =>
                {
                    if x >= X_REGISTERS {
                        return Location::Stack;
                    }
                    next_x = Some(x + 1);
                    match shape {
                        Shape::Int(_) => Location::Int(x),
                        _ => Location::Reference(x),
                    }
                }
                Shape::Int(16) => {
                    let x = x.next_multiple_of(2);
                    if x + 2 > X_REGISTERS {
                        next_x = Some(X_REGISTERS);
                        return Location::Stack;
                    }
                    next_x = Some(x + 2);
                    Location::Registers(vec![Register::Int(x), Register::Int(x + 1)])
                }
                Shape::Float(4 | 8 | 16) | Shape::X87 => v_registers(&mut next_v, 1),
                Shape::Aggregate { size, fields } if *size > 0 => match homogeneous(fields) {
                    Some(members) => v_registers(&mut next_v, members),
                    None if flat(fields).is_none() => {
                        next_x = None;
                        Location::Unknown
                    }
                    None => {
                        let words = size.div_ceil(8) as u8;
                        if x + words > X_REGISTERS {
                            next_x = Some(X_REGISTERS);
                            return Location::Stack;
                        }
                        next_x = Some(x + words);
                        Location::Registers((x..x + words).map(Register::Int).collect())
                    }
                },
                _ => {
                    next_x = None;
                    Location::Unknown
                }
            }
        })
        .collect()
}

/// Scalars of at most 8 bytes, C++ classes passed by reference, and
/// aggregates over 16 bytes: one x register, a value or an address.
fn shape_by_reference(shape: &Shape) -> bool {
    match shape {
        Shape::Int(_) | Shape::ByReference => true,
        Shape::Aggregate { size, .. } => *size > 16,
        _ => false,
    }
}

/// `count` v registers, or the stack when they are not left (and then
/// every later floating-point argument is on the stack too).
fn v_registers(next_v: &mut u8, count: u8) -> Location {
    if *next_v + count > V_REGISTERS {
        *next_v = V_REGISTERS;
        return Location::Stack;
    }
    let first = *next_v;
    *next_v += count;
    Location::Registers((first..first + count).map(Register::Xmm).collect())
}

/// The scalar leaves of an aggregate, None when one is not laid out.
fn flat(fields: &[Field]) -> Option<Vec<&Shape>> {
    let mut leaves = Vec::new();
    let mut stack: Vec<(&[Field], u32)> = vec![(fields, 0)];
    while let Some((fields, depth)) = stack.pop() {
        if depth > 16 {
            return None;
        }
        for field in fields {
            match &field.shape {
                Shape::Aggregate { fields, .. } => stack.push((fields, depth + 1)),
                leaf @ (Shape::Int(_) | Shape::Float(_)) => leaves.push(leaf),
                _ => return None,
            }
        }
    }
    Some(leaves)
}

/// A homogeneous floating-point aggregate: 1 to 4 members of one floating
/// type; how many.
fn homogeneous(fields: &[Field]) -> Option<u8> {
    let leaves = flat(fields)?;
    let first = leaves.first()?;
    let same = leaves
        .iter()
        .all(|leaf| matches!(leaf, Shape::Float(_)) && leaf == first);
    (same && leaves.len() <= 4).then_some(leaves.len() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(offset: u32, shape: Shape) -> Field {
        Field { offset, shape }
    }

    #[test]
    fn integers_take_x_registers_and_floats_v_registers() {
        let located = locate(
            &Shape::Aggregate {
                size: 64,
                fields: Vec::new(),
            },
            &[
                Shape::Int(8),
                Shape::Float(8),
                Shape::Int(4),
                Shape::Float(4),
            ],
        );
        assert_eq!(
            located,
            [
                Location::Int(0),
                Location::Registers(vec![Register::Xmm(0)]),
                Location::Int(1),
                Location::Registers(vec![Register::Xmm(1)]),
            ]
        );
    }

    #[test]
    fn large_aggregates_go_by_reference_and_small_ones_in_registers() {
        let big = Shape::Aggregate {
            size: 24,
            fields: vec![field(0, Shape::Int(8)); 3],
        };
        let pair = Shape::Aggregate {
            size: 16,
            fields: vec![field(0, Shape::Int(8)), field(8, Shape::Int(8))],
        };
        let hfa = Shape::Aggregate {
            size: 8,
            fields: vec![field(0, Shape::Float(4)), field(4, Shape::Float(4))],
        };
        let located = locate(&Shape::Void, &[big, pair, hfa, Shape::Int(8)]);
        assert_eq!(
            located,
            [
                Location::Reference(0),
                Location::Registers(vec![Register::Int(1), Register::Int(2)]),
                Location::Registers(vec![Register::Xmm(0), Register::Xmm(1)]),
                Location::Int(3),
            ]
        );
    }

    #[test]
    fn past_eight_integer_registers_is_the_stack() {
        let located = locate(&Shape::Void, &vec![Shape::Int(8); 9]);
        assert_eq!(located[7], Location::Int(7));
        assert_eq!(located[8], Location::Stack);
        let unknown = locate(&Shape::Void, &[Shape::Unknown, Shape::Int(8)]);
        assert_eq!(unknown, [Location::Unknown, Location::Unknown]);
    }
}

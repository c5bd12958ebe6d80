//! Parameters of user functions from DWARF (gimli): the names and types of
//! a function's formal parameters, for programs built with full debug info
//! (`-g`, Rust's `debug = 2`). Line tables alone (`debug = 1`) have none;
//! the arguments then stay register names. With each type comes its
//! [`Shape`], from which [`crate::target::abi`] tells where the argument is. A
//! stripped file's DWARF is in its separate debug file, found as its names
//! are (resolve/debugfile.rs).

use std::{borrow::Cow, fs, path::Path};

use gimli::{AttributeValue, EndianSlice, LittleEndian, Unit, UnitOffset, constants as dw};
use object::{Object as _, ObjectSection as _};

use crate::{
    target::abi::{Field, Shape},
    target::btf::{Decode, Param, Signature, TypeInfo},
    target::resolve::debugfile,
};

type Reader<'a> = EndianSlice<'a, LittleEndian>;

pub mod fields;

/// The parameters and return type of the function whose code starts at
/// link-time address `vaddr` in ELF file `path` (or in its separate debug
/// file), or None when its DWARF does not say.
pub fn function(path: &Path, vaddr: u64) -> Option<Signature> {
    // Declared first: the debug file's data outlives what borrows it.
    let debug_data;
    let data = fs::read(path).ok()?;
    let own = object::File::parse(&*data).ok()?;
    let file = if own.section_by_name(".debug_info").is_some() {
        own
    } else {
        let debug = debugfile::find_separate(path, &own, &debugfile::debug_root())?;
        debug_data = debug.data;
        object::File::parse(&*debug_data).ok()?
    };
    if !file.is_little_endian() {
        return None;
    }
    let sections: gimli::DwarfSections<Cow<'_, [u8]>> = gimli::DwarfSections::load(|id| {
        Ok::<_, gimli::Error>(
            file.section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .unwrap_or(Cow::Borrowed(&[])),
        )
    })
    .ok()?;
    let dwarf = sections.borrow(|section| EndianSlice::new(section, LittleEndian));
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        // Reading a unit's entries is the expensive part: only the unit
        // whose address ranges hold the function.
        let covers = dwarf.unit_ranges(&unit).is_ok_and(|mut ranges| {
            std::iter::from_fn(|| ranges.next().ok().flatten())
                .any(|r| r.begin <= vaddr && vaddr < r.end)
        });
        if !covers {
            continue;
        }
        if let Some(signature) = function_in_unit(&dwarf, &unit, vaddr) {
            return Some(signature);
        }
    }
    None
}

fn function_in_unit(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<Reader<'_>>,
    vaddr: u64,
) -> Option<Signature> {
    let mut cursor = unit.entries();
    let mut inside: Option<isize> = None;
    let mut returns = Shape::Unknown;
    let mut params = Vec::new();
    while let Ok(Some(entry)) = cursor.next_dfs() {
        let depth = entry.depth();
        match inside {
            None => {
                if entry.tag() == dw::DW_TAG_subprogram
                    && let Some(low) = entry.attr_value(dw::DW_AT_low_pc)
                    && dwarf.attr_address(unit, low).ok().flatten() == Some(vaddr)
                {
                    inside = Some(depth);
                    returns = return_shape(dwarf, unit, entry.offset());
                }
            }
            Some(fn_depth) => {
                if depth <= fn_depth {
                    break;
                }
                if depth == fn_depth + 1 && entry.tag() == dw::DW_TAG_formal_parameter {
                    params.push(param(dwarf, unit, entry.offset()));
                }
            }
        }
    }
    // Rust's own calling convention passes and returns aggregates as it
    // likes (small ones cast to integers, big ones by pointer), not as the
    // psABI says: only its scalars are placed with certainty.
    if is_rust(unit) {
        let rust = |shape: Shape| match shape {
            Shape::Aggregate { .. } | Shape::ByReference => Shape::Unknown,
            other => other,
        };
        returns = rust(returns);
        for param in &mut params {
            param.shape = rust(std::mem::replace(&mut param.shape, Shape::Unknown));
        }
    }
    inside.map(|_| Signature { params, returns })
}

fn is_rust(unit: &Unit<Reader<'_>>) -> bool {
    let mut entries = unit.entries();
    matches!(
        entries.next_dfs(),
        Ok(Some(root)) if root.attr_value(dw::DW_AT_language)
            == Some(AttributeValue::Language(dw::DW_LANG_Rust))
    )
}

/// The shape of a subprogram's return type, through DW_AT_specification
/// (a C++ method defined out of its class) and DW_AT_abstract_origin.
fn return_shape(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<Reader<'_>>,
    offset: UnitOffset,
) -> Shape {
    let mut at = Some(offset);
    for _ in 0..4 {
        let Some(offset) = at.take() else { break };
        let Ok(entry) = unit.entry(offset) else { break };
        if let Some(AttributeValue::UnitRef(t)) = entry.attr_value(dw::DW_AT_type) {
            return shape(dwarf, unit, t, 0);
        }
        for link in [dw::DW_AT_specification, dw::DW_AT_abstract_origin] {
            match entry.attr_value(link) {
                None => {}
                Some(AttributeValue::UnitRef(origin)) => at = Some(origin),
                // In another unit, not followed: the type is not known.
                Some(_) => return Shape::Unknown,
            }
        }
    }
    // No DW_AT_type on the function or what it refers to: it returns void.
    Shape::Void
}

fn param(dwarf: &gimli::Dwarf<Reader<'_>>, unit: &Unit<Reader<'_>>, offset: UnitOffset) -> Param {
    let mut name = None;
    let mut ty = None;
    let mut at = Some(offset);
    for _ in 0..4 {
        let Some(offset) = at.take() else { break };
        let Ok(entry) = unit.entry(offset) else { break };
        if name.is_none()
            && let Some(v) = entry.attr_value(dw::DW_AT_name)
        {
            name = dwarf
                .attr_string(unit, v)
                .ok()
                .map(|s| s.to_string_lossy().into_owned());
        }
        if ty.is_none()
            && let Some(AttributeValue::UnitRef(t)) = entry.attr_value(dw::DW_AT_type)
        {
            ty = Some(t);
        }
        if let Some(AttributeValue::UnitRef(origin)) = entry.attr_value(dw::DW_AT_abstract_origin) {
            at = Some(origin);
        }
    }
    Param {
        name: name.unwrap_or_default(),
        shape: ty.map_or(Shape::Unknown, |t| shape(dwarf, unit, t, 0)),
        ty: ty.map_or_else(
            || TypeInfo {
                name: "?".into(),
                decode: Decode::Hex,
                size: 8,
            },
            |t| type_info(dwarf, unit, t, 0),
        ),
    }
}

fn type_info(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<Reader<'_>>,
    offset: UnitOffset,
    depth: u32,
) -> TypeInfo {
    let unknown = TypeInfo {
        name: "?".into(),
        decode: Decode::Hex,
        size: 8,
    };
    if depth > 16 {
        return unknown;
    }
    let Ok(entry) = unit.entry(offset) else {
        return unknown;
    };
    let name = entry
        .attr_value(dw::DW_AT_name)
        .and_then(|v| dwarf.attr_string(unit, v).ok())
        .map(|s| s.to_string_lossy().into_owned());
    let size = entry
        .attr_value(dw::DW_AT_byte_size)
        .and_then(|v| v.udata_value())
        .unwrap_or(0) as u32;
    let inner = || match entry.attr_value(dw::DW_AT_type) {
        Some(AttributeValue::UnitRef(t)) => Some(type_info(dwarf, unit, t, depth + 1)),
        _ => None,
    };
    match entry.tag() {
        dw::DW_TAG_base_type => {
            let decode = match entry.attr_value(dw::DW_AT_encoding) {
                Some(AttributeValue::Encoding(dw::DW_ATE_boolean)) => Decode::Bool,
                Some(AttributeValue::Encoding(dw::DW_ATE_signed | dw::DW_ATE_signed_char)) => {
                    Decode::Signed
                }
                Some(AttributeValue::Encoding(dw::DW_ATE_unsigned | dw::DW_ATE_unsigned_char)) => {
                    Decode::Unsigned
                }
                _ => Decode::Hex,
            };
            TypeInfo {
                name: name.unwrap_or_else(|| "?".into()),
                decode,
                size,
            }
        }
        dw::DW_TAG_pointer_type | dw::DW_TAG_reference_type | dw::DW_TAG_rvalue_reference_type => {
            TypeInfo {
                // Rust names its pointer types (`&str`, `*const u8`); C does not.
                name: name.unwrap_or_else(|| match inner() {
                    Some(t) if t.name.ends_with('*') => format!("{}*", t.name),
                    Some(t) => format!("{} *", t.name),
                    None => "void *".into(),
                }),
                decode: Decode::Hex,
                size: 8,
            }
        }
        dw::DW_TAG_typedef => {
            let target = inner().unwrap_or(unknown);
            TypeInfo {
                name: name.unwrap_or(target.name),
                decode: target.decode,
                size: target.size,
            }
        }
        dw::DW_TAG_const_type | dw::DW_TAG_volatile_type => {
            let target = inner().unwrap_or(TypeInfo {
                name: "void".into(),
                decode: Decode::Hex,
                size: 0,
            });
            let qualifier = if entry.tag() == dw::DW_TAG_const_type {
                "const"
            } else {
                "volatile"
            };
            TypeInfo {
                name: format!("{qualifier} {}", target.name),
                ..target
            }
        }
        dw::DW_TAG_enumeration_type => TypeInfo {
            name: format!("enum {}", name.unwrap_or_default()),
            decode: Decode::Unsigned,
            size,
        },
        dw::DW_TAG_structure_type | dw::DW_TAG_union_type | dw::DW_TAG_class_type => TypeInfo {
            name: name.unwrap_or_else(|| "(anon)".into()),
            decode: Decode::Hex,
            size,
        },
        _ => TypeInfo {
            name: name.unwrap_or_else(|| "?".into()),
            decode: Decode::Hex,
            size,
        },
    }
}

/// How the calling convention sees the type at `offset` (see [`crate::target::abi`]).
fn shape(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<Reader<'_>>,
    offset: UnitOffset,
    depth: u32,
) -> Shape {
    if depth > 16 {
        return Shape::Unknown;
    }
    let Ok(entry) = unit.entry(offset) else {
        return Shape::Unknown;
    };
    let size = entry
        .attr_value(dw::DW_AT_byte_size)
        .and_then(|v| v.udata_value())
        .and_then(|v| u32::try_from(v).ok());
    let inner = || match entry.attr_value(dw::DW_AT_type) {
        Some(AttributeValue::UnitRef(t)) => Some(t),
        _ => None,
    };
    match entry.tag() {
        dw::DW_TAG_base_type => {
            let Some(size) = size else {
                return Shape::Unknown;
            };
            let name = entry
                .attr_value(dw::DW_AT_name)
                .and_then(|v| dwarf.attr_string(unit, v).ok())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match entry.attr_value(dw::DW_AT_encoding) {
                Some(AttributeValue::Encoding(
                    dw::DW_ATE_boolean
                    | dw::DW_ATE_signed
                    | dw::DW_ATE_signed_char
                    | dw::DW_ATE_unsigned
                    | dw::DW_ATE_unsigned_char
                    | dw::DW_ATE_UTF,
                )) => Shape::Int(size),
                Some(AttributeValue::Encoding(dw::DW_ATE_float)) => match (size, name.as_str()) {
                    (4 | 8, _) => Shape::Float(size),
                    (16, "long double" | "_Float64x") => Shape::X87,
                    (16, "__float128" | "_Float128" | "f128") => Shape::Float(16),
                    _ => Shape::Unknown,
                },
                // _Complex float and double: two floats; _Complex long
                // double is COMPLEX_X87, in memory like any 32 bytes.
                Some(AttributeValue::Encoding(dw::DW_ATE_complex_float)) => match size {
                    8 | 16 => Shape::Aggregate {
                        size,
                        fields: [0, size / 2]
                            .map(|offset| Field {
                                offset,
                                shape: Shape::Float(size / 2),
                            })
                            .to_vec(),
                    },
                    32 => Shape::Aggregate {
                        size,
                        fields: Vec::new(),
                    },
                    _ => Shape::Unknown,
                },
                _ => Shape::Unknown,
            }
        }
        dw::DW_TAG_pointer_type | dw::DW_TAG_reference_type | dw::DW_TAG_rvalue_reference_type => {
            Shape::Int(8)
        }
        dw::DW_TAG_enumeration_type => size.map_or(Shape::Unknown, Shape::Int),
        dw::DW_TAG_typedef
        | dw::DW_TAG_const_type
        | dw::DW_TAG_volatile_type
        | dw::DW_TAG_restrict_type
        | dw::DW_TAG_atomic_type => {
            inner().map_or(Shape::Unknown, |t| shape(dwarf, unit, t, depth + 1))
        }
        dw::DW_TAG_structure_type | dw::DW_TAG_union_type | dw::DW_TAG_class_type => {
            match entry.attr_value(dw::DW_AT_calling_convention) {
                Some(AttributeValue::CallingConvention(dw::DW_CC_pass_by_reference)) => {
                    return Shape::ByReference;
                }
                Some(AttributeValue::CallingConvention(dw::DW_CC_pass_by_value)) => {}
                // gcc does not say (clang does): C++ classes are worked out.
                _ if is_cplusplus(unit) => match non_trivial_for_calls(dwarf, unit, offset, 0) {
                    Some(true) => return Shape::ByReference,
                    Some(false) => {}
                    None => return Shape::Unknown,
                },
                _ => {}
            }
            match size {
                Some(size) if size > 16 => Shape::Aggregate {
                    size,
                    fields: Vec::new(),
                },
                Some(size) if entry.attr_value(dw::DW_AT_declaration).is_none() => {
                    members(dwarf, unit, offset, depth)
                        .map_or(Shape::Unknown, |fields| Shape::Aggregate { size, fields })
                }
                _ => Shape::Unknown,
            }
        }
        dw::DW_TAG_array_type => array(dwarf, unit, offset, depth, size),
        _ => Shape::Unknown,
    }
}

fn is_cplusplus(unit: &Unit<Reader<'_>>) -> bool {
    let mut entries = unit.entries();
    matches!(
        entries.next_dfs(),
        Ok(Some(root)) if matches!(
            root.attr_value(dw::DW_AT_language),
            Some(AttributeValue::Language(
                dw::DW_LANG_C_plus_plus
                    | dw::DW_LANG_C_plus_plus_03
                    | dw::DW_LANG_C_plus_plus_11
                    | dw::DW_LANG_C_plus_plus_14
            ))
        )
    )
}

/// Whether a C++ class is non-trivial for the purposes of calls (Itanium
/// C++ ABI §3.1.2.3: a non-trivial copy or move constructor or destructor),
/// in which case the caller passes a pointer to a copy: Some(true) when a
/// destructor or copy/move constructor is user-provided or the class is
/// polymorphic (its own or a base's or member's), Some(false) when DWARF
/// declares none, None when it cannot tell (one is deleted, say).
fn non_trivial_for_calls(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<Reader<'_>>,
    offset: UnitOffset,
    depth: u32,
) -> Option<bool> {
    if depth > 16 {
        return None;
    }
    let class = unit.entry(offset).ok()?;
    // Declared here, defined elsewhere: its members are not known.
    if class.attr_value(dw::DW_AT_declaration).is_some() {
        return None;
    }
    let name = class
        .attr_value(dw::DW_AT_name)
        .and_then(|v| dwarf.attr_string(unit, v).ok())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `Pair<int>`'s constructors are named `Pair`.
    let bare = name.split('<').next().unwrap_or(&name).to_owned();
    let mut tree = unit.entries_tree(Some(offset)).ok()?;
    let root = tree.root().ok()?;
    let mut children = root.children();
    let mut unsure = false;
    while let Some(child) = children.next().ok()? {
        let entry = child.entry();
        let child_name = entry
            .attr_value(dw::DW_AT_name)
            .and_then(|v| dwarf.attr_string(unit, v).ok())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match entry.tag() {
            dw::DW_TAG_subprogram => {
                let special = child_name.starts_with('~')
                    || (child_name == bare && copies_or_moves(unit, entry.offset(), offset));
                // Implicit members (artificial) are non-trivial only
                // through a base or member, which are looked at below; one
                // defaulted in the class is trivial on the same terms.
                if !special || entry.attr_value(dw::DW_AT_artificial).is_some() {
                    continue;
                }
                if entry.attr_value(dw::DW_AT_deleted).is_some() {
                    unsure = true;
                } else if entry
                    .attr_value(dw::DW_AT_defaulted)
                    .and_then(|v| v.udata_value())
                    != Some(1)
                {
                    return Some(true);
                }
            }
            dw::DW_TAG_member | dw::DW_TAG_inheritance => {
                if child_name.starts_with("_vptr")
                    || entry.attr_value(dw::DW_AT_virtuality).is_some()
                {
                    return Some(true);
                }
                if entry.attr_value(dw::DW_AT_declaration).is_some()
                    || entry.attr_value(dw::DW_AT_external).is_some()
                {
                    continue;
                }
                let Some(AttributeValue::UnitRef(ty)) = entry.attr_value(dw::DW_AT_type) else {
                    return None;
                };
                match class_of(unit, ty, 0)
                    .map(|c| non_trivial_for_calls(dwarf, unit, c, depth + 1))
                {
                    Some(Some(true)) => return Some(true),
                    Some(None) => unsure = true,
                    Some(Some(false)) | None => {}
                }
            }
            _ => {}
        }
    }
    if unsure { None } else { Some(false) }
}

/// Whether the constructor at `ctor` takes a reference to the class at
/// `class` first (after `this`): a copy or move constructor.
fn copies_or_moves(unit: &Unit<Reader<'_>>, ctor: UnitOffset, class: UnitOffset) -> bool {
    let Ok(mut tree) = unit.entries_tree(Some(ctor)) else {
        return false;
    };
    let Ok(root) = tree.root() else {
        return false;
    };
    let mut children = root.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        if entry.tag() != dw::DW_TAG_formal_parameter
            || entry.attr_value(dw::DW_AT_artificial).is_some()
        {
            continue;
        }
        let Some(AttributeValue::UnitRef(ty)) = entry.attr_value(dw::DW_AT_type) else {
            return false;
        };
        return unit.entry(ty).is_ok_and(|r| {
            matches!(
                r.tag(),
                dw::DW_TAG_reference_type | dw::DW_TAG_rvalue_reference_type
            ) && matches!(r.attr_value(dw::DW_AT_type),
                Some(AttributeValue::UnitRef(t)) if class_of(unit, t, 0) == Some(class))
        });
    }
    false
}

/// The class, struct or union a type is, through typedefs, qualifiers and
/// arrays.
fn class_of(unit: &Unit<Reader<'_>>, offset: UnitOffset, depth: u32) -> Option<UnitOffset> {
    if depth > 16 {
        return None;
    }
    let entry = unit.entry(offset).ok()?;
    match entry.tag() {
        dw::DW_TAG_structure_type | dw::DW_TAG_union_type | dw::DW_TAG_class_type => Some(offset),
        dw::DW_TAG_typedef
        | dw::DW_TAG_const_type
        | dw::DW_TAG_volatile_type
        | dw::DW_TAG_atomic_type
        | dw::DW_TAG_array_type => match entry.attr_value(dw::DW_AT_type) {
            Some(AttributeValue::UnitRef(t)) => class_of(unit, t, depth + 1),
            _ => None,
        },
        _ => None,
    }
}

/// The fields of a struct, union or class (its data members and base
/// classes), or None when one cannot be placed.
fn members(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<Reader<'_>>,
    offset: UnitOffset,
    depth: u32,
) -> Option<Vec<Field>> {
    let mut tree = unit.entries_tree(Some(offset)).ok()?;
    let root = tree.root().ok()?;
    let in_union = root.entry().tag() == dw::DW_TAG_union_type;
    let mut children = root.children();
    let mut fields = Vec::new();
    while let Some(child) = children.next().ok()? {
        let entry = child.entry();
        match entry.tag() {
            dw::DW_TAG_member | dw::DW_TAG_inheritance => {}
            // Rust enums: which variant is there is in the value.
            dw::DW_TAG_variant_part => return None,
            _ => continue,
        }
        // Static data members take no room in the object.
        if entry.attr_value(dw::DW_AT_declaration).is_some()
            || entry.attr_value(dw::DW_AT_external).is_some()
        {
            continue;
        }
        let Some(AttributeValue::UnitRef(ty)) = entry.attr_value(dw::DW_AT_type) else {
            return None;
        };
        let location = match entry.attr_value(dw::DW_AT_data_member_location) {
            None => None,
            Some(v) => Some(u32::try_from(v.udata_value()?).ok()?),
        };
        if entry.attr_value(dw::DW_AT_bit_size).is_some() {
            // A bit-field: only its integer storage matters, which lies in
            // one eightbyte (ABI: bit-fields do not cross their unit's
            // alignment). Mark its first and last bytes INTEGER.
            let bits = entry.attr_value(dw::DW_AT_bit_size)?.udata_value()?;
            let (first, last) = match entry.attr_value(dw::DW_AT_data_bit_offset) {
                Some(v) => {
                    let start = v.udata_value()?;
                    (start / 8, (start + bits.max(1) - 1) / 8)
                }
                None => {
                    // DWARF 2 to 4: the storage unit at the member location.
                    let unit_size = type_info(dwarf, unit, ty, depth + 1).size;
                    let start = u64::from(location?);
                    (start, start + u64::from(unit_size.max(1)) - 1)
                }
            };
            for byte in [first, last] {
                fields.push(Field {
                    offset: u32::try_from(byte).ok()?,
                    shape: Shape::Int(1),
                });
            }
            continue;
        }
        // Union members have no location: they all start at 0.
        let offset = match (location, entry.tag()) {
            (Some(offset), _) => offset,
            (None, dw::DW_TAG_member) if in_union => 0,
            (None, _) => return None,
        };
        fields.push(Field {
            offset,
            shape: shape(dwarf, unit, ty, depth + 1),
        });
    }
    Some(fields)
}

/// An array inside an aggregate: its elements as fields (vectors, whose
/// registers are not worked out here, are Unknown).
fn array(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<Reader<'_>>,
    offset: UnitOffset,
    depth: u32,
    size: Option<u32>,
) -> Shape {
    let count = || -> Option<(u32, Shape, u32)> {
        let entry = unit.entry(offset).ok()?;
        if entry.attr_value(dw::DW_AT_GNU_vector).is_some() {
            return None;
        }
        let Some(AttributeValue::UnitRef(elem)) = entry.attr_value(dw::DW_AT_type) else {
            return None;
        };
        let mut tree = unit.entries_tree(Some(offset)).ok()?;
        let root = tree.root().ok()?;
        let mut children = root.children();
        let mut count: u64 = 1;
        while let Some(child) = children.next().ok()? {
            let sub = child.entry();
            if sub.tag() != dw::DW_TAG_subrange_type {
                continue;
            }
            let n = match (
                sub.attr_value(dw::DW_AT_count),
                sub.attr_value(dw::DW_AT_upper_bound),
            ) {
                (Some(c), _) => c.udata_value()?,
                (None, Some(AttributeValue::Sdata(-1))) => 0,
                (None, Some(u)) => u.udata_value()?.checked_add(1)?,
                // A flexible array member: no room.
                (None, None) => 0,
            };
            count = count.checked_mul(n)?;
        }
        let elem_size = type_info(dwarf, unit, elem, depth + 1).size;
        Some((
            u32::try_from(count).ok()?,
            shape(dwarf, unit, elem, depth + 1),
            elem_size,
        ))
    };
    let Some((count, elem, elem_size)) = count() else {
        return Shape::Unknown;
    };
    let Some(total) = size.or_else(|| count.checked_mul(elem_size)) else {
        return Shape::Unknown;
    };
    if total > 16 {
        return Shape::Aggregate {
            size: total,
            fields: Vec::new(),
        };
    }
    Shape::Aggregate {
        size: total,
        fields: (0..count)
            .map(|i| Field {
                offset: i * elem_size,
                shape: elem.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::resolve::{ElfImage, maps};

    #[inline(never)]
    #[unsafe(no_mangle)]
    extern "C" fn hwbp_dwarf_probe(count: u64, delta: i32, verbose: bool, name: *const u8) -> u64 {
        std::hint::black_box(count + delta as u64 + u64::from(verbose) + name as u64)
    }

    #[test]
    fn own_function_parameters() {
        // Test binaries are built with full debug info (the dev profile).
        let addr =
            hwbp_dwarf_probe as extern "C" fn(u64, i32, bool, *const u8) -> u64 as usize as u64;
        let maps = maps::read_maps(std::process::id() as i32).expect("maps");
        let m = maps
            .iter()
            .find(|m| addr >= m.start && addr < m.end)
            .expect("mapped");
        let path = m.path.clone().expect("a file");
        let image = ElfImage::load(&path).expect("elf");
        let vaddr = image
            .file_offset_to_vaddr(addr - m.start + m.offset)
            .expect("vaddr");
        let signature = function(&path, vaddr).expect("DWARF describes the function");
        let shown: Vec<(&str, &str, Decode, &Shape)> = signature
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.ty.name.as_str(), p.ty.decode, &p.shape))
            .collect();
        assert_eq!(
            shown,
            [
                ("count", "u64", Decode::Unsigned, &Shape::Int(8)),
                ("delta", "i32", Decode::Signed, &Shape::Int(4)),
                ("verbose", "bool", Decode::Bool, &Shape::Int(1)),
                ("name", "*const u8", Decode::Hex, &Shape::Int(8)),
            ]
        );
        assert_eq!(signature.returns, Shape::Int(8));
        assert_eq!(function(&path, 1), None, "no function at address 1");
    }
}

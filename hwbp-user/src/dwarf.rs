//! Parameters of user functions from DWARF (gimli): the names and types of
//! a function's formal parameters, for programs built with full debug info
//! (`-g`, Rust's `debug = 2`). Line tables alone (`debug = 1`) have none;
//! the arguments then stay register names. A stripped file's DWARF is in
//! its separate debug file, found as its names are (resolve/debugfile.rs).

use std::{borrow::Cow, fs, path::Path};

use gimli::{AttributeValue, EndianSlice, LittleEndian, Unit, UnitOffset, constants as dw};
use object::{Object as _, ObjectSection as _};

use crate::{
    btf::{Decode, Param, TypeInfo},
    resolve::debugfile,
};

type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// The parameters of the function whose code starts at link-time address
/// `vaddr` in ELF file `path` (or in its separate debug file), or None
/// when its DWARF does not say.
pub fn function_params(path: &Path, vaddr: u64) -> Option<Vec<Param>> {
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
        if let Some(params) = params_in_unit(&dwarf, &unit, vaddr) {
            return Some(params);
        }
    }
    None
}

fn params_in_unit(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<Reader<'_>>,
    vaddr: u64,
) -> Option<Vec<Param>> {
    let mut cursor = unit.entries();
    let mut inside: Option<isize> = None;
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
    inside.map(|_| params)
}

/// A parameter's name and type, through DW_AT_abstract_origin when the
/// concrete instance leaves them to its abstract one.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::{ElfImage, maps};

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
        let params = function_params(&path, vaddr).expect("DWARF describes the function");
        let shown: Vec<(&str, &str, Decode)> = params
            .iter()
            .map(|p| (p.name.as_str(), p.ty.name.as_str(), p.ty.decode))
            .collect();
        assert_eq!(
            shown,
            [
                ("count", "u64", Decode::Unsigned),
                ("delta", "i32", Decode::Signed),
                ("verbose", "bool", Decode::Bool),
                ("name", "*const u8", Decode::Hex),
            ]
        );
        assert_eq!(function_params(&path, 1), None, "no function at address 1");
    }
}

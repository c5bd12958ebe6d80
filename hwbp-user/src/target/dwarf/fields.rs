//! Struct members of a program's variables from DWARF ([`crate::target::fields`]):
//! the variable is found by its address (DW_OP_addr or DW_OP_addrx in its
//! DW_AT_location equal to the symbol's link address), which names C, C++
//! and Rust variables alike (`app::STATE` is `STATE` in namespace `app` in
//! DWARF) and tells two static variables of the same name apart.

use std::{borrow::Cow, fs, path::Path};

use gimli::{AttributeValue, EndianSlice, LittleEndian, Unit, UnitOffset, constants as dw};
use object::{Object as _, ObjectSection as _};

use super::{Reader, type_info};
use crate::target::{
    btf::Decode,
    fields::{FieldError, FieldType, Member, Node, Types},
    resolve::debugfile,
};

/// A type in one unit: the entry, and for a multi-dimensional array how
/// many of its dimensions are already indexed.
pub type Id = (UnitOffset, u8);

/// One unit's types.
pub struct DwarfTypes<'a, 'd> {
    dwarf: &'a gimli::Dwarf<Reader<'d>>,
    unit: &'a Unit<Reader<'d>>,
}

/// Runs `f` on the type of the variable at link address `vaddr` of ELF file
/// `path` (named `symbol` in messages), from the file's DWARF or its
/// separate debug file's.
pub fn with_variable<R>(
    path: &Path,
    vaddr: u64,
    symbol: &str,
    f: impl FnOnce(&DwarfTypes<'_, '_>, Id) -> Result<R, FieldError>,
) -> Result<R, FieldError> {
    let no_dwarf = |stripped: bool| FieldError::NoDwarf {
        file: path.display().to_string(),
        symbol: symbol.to_owned(),
        stripped,
    };
    let debug_data;
    let data = fs::read(path).map_err(|_| no_dwarf(false))?;
    let own = object::File::parse(&*data).map_err(|_| no_dwarf(false))?;
    let file = if own.section_by_name(".debug_info").is_some() {
        own
    } else {
        let stripped = own.section_by_name(".symtab").is_none();
        let debug = debugfile::find_separate(path, &own, &debugfile::debug_root())
            .ok_or_else(|| no_dwarf(stripped))?;
        debug_data = debug.data;
        object::File::parse(&*debug_data).map_err(|_| no_dwarf(stripped))?
    };
    if !file.is_little_endian() || file.section_by_name(".debug_info").is_none() {
        return Err(no_dwarf(false));
    }
    let sections: gimli::DwarfSections<Cow<'_, [u8]>> = gimli::DwarfSections::load(|id| {
        Ok::<_, gimli::Error>(
            file.section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .unwrap_or(Cow::Borrowed(&[])),
        )
    })
    .map_err(|_| no_dwarf(false))?;
    let dwarf = sections.borrow(|section| EndianSlice::new(section, LittleEndian));
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        if let Some(ty) = variable_type(&dwarf, &unit, vaddr) {
            return f(
                &DwarfTypes {
                    dwarf: &dwarf,
                    unit: &unit,
                },
                (ty, 0),
            );
        }
    }
    Err(FieldError::NoVariable {
        file: path.display().to_string(),
        symbol: symbol.to_owned(),
    })
}

/// The type of the variable defined at `vaddr` in this unit.
fn variable_type(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<Reader<'_>>,
    vaddr: u64,
) -> Option<UnitOffset> {
    let mut cursor = unit.entries();
    while let Ok(Some(entry)) = cursor.next_dfs() {
        if entry.tag() != dw::DW_TAG_variable {
            continue;
        }
        let Some(AttributeValue::Exprloc(expr)) = entry.attr_value(dw::DW_AT_location) else {
            continue;
        };
        let mut ops = expr.operations(unit.encoding());
        let addr = match ops.next() {
            Ok(Some(gimli::Operation::Address { address })) => Some(address),
            Ok(Some(gimli::Operation::AddressIndex { index })) => dwarf.address(unit, index).ok(),
            _ => None,
        };
        if addr != Some(vaddr) || !matches!(ops.next(), Ok(None)) {
            continue;
        }
        // A definition of a declaration (C's `extern`, a C++ static member)
        // has its type on the declaration.
        let mut at = entry.offset();
        for _ in 0..4 {
            let e = unit.entry(at).ok()?;
            if let Some(AttributeValue::UnitRef(t)) = e.attr_value(dw::DW_AT_type) {
                return Some(t);
            }
            match e
                .attr_value(dw::DW_AT_specification)
                .or_else(|| e.attr_value(dw::DW_AT_abstract_origin))
            {
                Some(AttributeValue::UnitRef(spec)) => at = spec,
                _ => return None,
            }
        }
    }
    None
}

impl DwarfTypes<'_, '_> {
    /// Through typedefs and qualifiers, to what the type is.
    fn strip(&self, mut offset: UnitOffset) -> UnitOffset {
        for _ in 0..16 {
            let Ok(entry) = self.unit.entry(offset) else {
                break;
            };
            match entry.tag() {
                dw::DW_TAG_typedef
                | dw::DW_TAG_const_type
                | dw::DW_TAG_volatile_type
                | dw::DW_TAG_restrict_type
                | dw::DW_TAG_atomic_type => match entry.attr_value(dw::DW_AT_type) {
                    Some(AttributeValue::UnitRef(t)) => offset = t,
                    _ => break,
                },
                _ => break,
            }
        }
        offset
    }

    fn name_of(&self, offset: UnitOffset) -> Option<String> {
        let entry = self.unit.entry(offset).ok()?;
        let v = entry.attr_value(dw::DW_AT_name)?;
        self.dwarf
            .attr_string(self.unit, v)
            .ok()
            .map(|s| s.to_string_lossy().into_owned())
    }

    /// An array's element type and the counts of its dimensions.
    fn dimensions(&self, offset: UnitOffset) -> Option<(UnitOffset, Vec<Option<u64>>)> {
        let entry = self.unit.entry(offset).ok()?;
        let Some(AttributeValue::UnitRef(elem)) = entry.attr_value(dw::DW_AT_type) else {
            return None;
        };
        let mut tree = self.unit.entries_tree(Some(offset)).ok()?;
        let root = tree.root().ok()?;
        let mut children = root.children();
        let mut dims = Vec::new();
        while let Ok(Some(child)) = children.next() {
            let sub = child.entry();
            if sub.tag() != dw::DW_TAG_subrange_type {
                continue;
            }
            dims.push(
                match (
                    sub.attr_value(dw::DW_AT_count),
                    sub.attr_value(dw::DW_AT_upper_bound),
                ) {
                    (Some(c), _) => c.udata_value(),
                    (None, Some(AttributeValue::Sdata(-1))) => Some(0),
                    (None, Some(u)) => u.udata_value().and_then(|u| u.checked_add(1)),
                    (None, None) => None,
                },
            );
        }
        Some((elem, dims))
    }

    /// An enum's enumerators, and whether its values are signed.
    fn enumerators(&self, offset: UnitOffset) -> (Vec<(i64, String)>, bool) {
        let mut out = Vec::new();
        let mut signed = false;
        let Ok(mut tree) = self.unit.entries_tree(Some(offset)) else {
            return (out, signed);
        };
        let Ok(root) = tree.root() else {
            return (out, signed);
        };
        let mut children = root.children();
        while let Ok(Some(child)) = children.next() {
            let e = child.entry();
            if e.tag() != dw::DW_TAG_enumerator {
                continue;
            }
            let value = match e.attr_value(dw::DW_AT_const_value) {
                Some(AttributeValue::Sdata(v)) => {
                    signed |= v < 0;
                    v
                }
                Some(v) => v.udata_value().map_or(0, |u| u as i64),
                None => continue,
            };
            if let Some(name) = self.name_of(e.offset()) {
                out.push((value, name));
            }
        }
        (out, signed)
    }

    fn is_char(&self, offset: UnitOffset) -> bool {
        let offset = self.strip(offset);
        self.unit.entry(offset).is_ok_and(|e| {
            e.tag() == dw::DW_TAG_base_type
                && matches!(
                    e.attr_value(dw::DW_AT_encoding),
                    Some(AttributeValue::Encoding(
                        dw::DW_ATE_signed_char | dw::DW_ATE_unsigned_char
                    ))
                )
                && e.attr_value(dw::DW_AT_byte_size)
                    .and_then(|v| v.udata_value())
                    == Some(1)
        })
    }

    fn members(&self, offset: UnitOffset) -> Vec<Member<Id>> {
        let mut out = Vec::new();
        let Ok(mut tree) = self.unit.entries_tree(Some(offset)) else {
            return out;
        };
        let Ok(root) = tree.root() else {
            return out;
        };
        let mut children = root.children();
        while let Ok(Some(child)) = children.next() {
            let e = child.entry();
            if !matches!(e.tag(), dw::DW_TAG_member | dw::DW_TAG_inheritance)
                || e.attr_value(dw::DW_AT_declaration).is_some()
                || e.attr_value(dw::DW_AT_external).is_some()
            {
                continue;
            }
            let Some(AttributeValue::UnitRef(ty)) = e.attr_value(dw::DW_AT_type) else {
                continue;
            };
            let byte = e
                .attr_value(dw::DW_AT_data_member_location)
                .and_then(|v| v.udata_value())
                .unwrap_or(0);
            let bit_size = e
                .attr_value(dw::DW_AT_bit_size)
                .and_then(|v| v.udata_value())
                .map_or(0, |b| b as u32);
            let bit_offset = match e.attr_value(dw::DW_AT_data_bit_offset) {
                Some(v) => v.udata_value().unwrap_or(0),
                None => byte * 8,
            };
            let name = if e.tag() == dw::DW_TAG_inheritance {
                String::new()
            } else {
                self.name_of(e.offset()).unwrap_or_default()
            };
            out.push(Member {
                name,
                ty: (ty, 0),
                bit_offset,
                bit_size,
            });
        }
        out
    }
}

impl Types for DwarfTypes<'_, '_> {
    type Id = Id;

    fn node(&self, (offset, dim): Id) -> Node<Id> {
        let offset = self.strip(offset);
        let Ok(entry) = self.unit.entry(offset) else {
            return Node::Leaf;
        };
        match entry.tag() {
            dw::DW_TAG_structure_type | dw::DW_TAG_union_type | dw::DW_TAG_class_type
                if entry.attr_value(dw::DW_AT_declaration).is_none() =>
            {
                Node::Struct(self.members(offset))
            }
            dw::DW_TAG_array_type => match self.dimensions(offset) {
                Some((elem, dims)) if usize::from(dim) < dims.len() => Node::Array {
                    elem: if usize::from(dim) + 1 < dims.len() {
                        (offset, dim + 1)
                    } else {
                        (elem, 0)
                    },
                    count: dims[usize::from(dim)],
                },
                _ => Node::Leaf,
            },
            _ => Node::Leaf,
        }
    }

    fn info(&self, (offset, dim): Id) -> FieldType {
        let stripped = self.strip(offset);
        let tag = self.unit.entry(stripped).map(|e| e.tag()).ok();
        if tag == Some(dw::DW_TAG_array_type)
            && let Some((elem, dims)) = self.dimensions(stripped)
        {
            let elem_info = self.info((elem, 0));
            let rest = dims.get(usize::from(dim)..).unwrap_or_default();
            let count: u64 = rest.iter().map(|c| c.unwrap_or(0)).product();
            let dims_text: String = rest
                .iter()
                .map(|c| c.map_or("[]".to_owned(), |c| format!("[{c}]")))
                .collect();
            return FieldType {
                name: format!("{}{dims_text}", elem_info.name),
                size: count * elem_info.size,
                decode: Decode::Hex,
                enumerators: Vec::new(),
                chars: self.is_char(elem),
            };
        }
        let info = type_info(self.dwarf, self.unit, offset, 0);
        let (enumerators, signed) = if tag == Some(dw::DW_TAG_enumeration_type) {
            self.enumerators(stripped)
        } else {
            (Vec::new(), false)
        };
        let decode = if signed { Decode::Signed } else { info.decode };
        // C says `struct limit`; C++ and Rust name the type alone, as a
        // typedef does.
        let raw_tag = self.unit.entry(offset).map(|e| e.tag()).ok();
        let c = !super::is_rust(self.unit) && !super::is_cplusplus(self.unit);
        let name = match raw_tag {
            Some(dw::DW_TAG_structure_type) if c => format!("struct {}", info.name),
            Some(dw::DW_TAG_union_type) if c => format!("union {}", info.name),
            _ => info.name,
        };
        FieldType {
            name,
            size: u64::from(info.size),
            decode,
            enumerators,
            // A lone char is a number; an array of them is text.
            chars: false,
        }
    }
}

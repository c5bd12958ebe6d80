//! Split BTF: a kernel module's types (/sys/kernel/btf/MODULE) are stored
//! on top of vmlinux's. Their ids go on from vmlinux's last one and their
//! string offsets from the end of vmlinux's strings, so vmlinux's records
//! followed by the module's, and vmlinux's strings followed by the
//! module's, read as one blob (libbpf's btf__parse_split does the same).

use std::{fs, path::Path};

use super::{Btf, BtfError, parse_types, sections};

/// Where the kernel shows each module's BTF.
pub const MODULES: &str = "/sys/kernel/btf";

impl Btf {
    /// The BTF of a loaded kernel module, on top of vmlinux's (`base`).
    pub fn module(name: &str, base: &Btf) -> Result<Self, BtfError> {
        let path = Path::new(MODULES).join(name);
        let data = fs::read(&path).map_err(|source| BtfError::ModuleRead {
            module: name.to_owned(),
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_split(&data, base).map_err(|reason| BtfError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// A split BTF blob read on top of `base`.
    pub fn parse_split(data: &[u8], base: &Btf) -> Result<Self, String> {
        let (own_types, own_strings) = sections(data)?;
        let mut type_section = base.type_section.clone();
        let start = type_section.len();
        type_section.extend_from_slice(&own_types);
        let mut types = base.types.clone();
        types.extend(parse_types(&own_types, start)?);
        let mut strings = base.strings.clone();
        strings.extend_from_slice(&own_strings);
        Ok(Self {
            types,
            type_section,
            strings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        KIND_STRUCT, KIND_VAR,
        test_blobs::{assemble, blob},
    };
    use super::*;
    use crate::target::{Access, fields};

    /// A module's blob: struct xfs_stats { int reads; int writes; } and
    /// VAR xfs_stat_g of it; `int` is vmlinux's type 1.
    fn module_blob(base: &Btf) -> Vec<u8> {
        let strings = b"\0xfs_stats\0reads\0writes\0xfs_stat_g\0";
        let base_len = base.strings.len() as u32;
        let off = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .map_or(0, |p| base_len + p as u32 + 1)
        };
        let first = base.types.len() as u32 + 1;
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        let t: Vec<u32> = vec![
            off("xfs_stats"),
            info(KIND_STRUCT, 2),
            8,
            off("reads"),
            1,
            0,
            off("writes"),
            1,
            32,
            off("xfs_stat_g"),
            info(KIND_VAR, 0),
            first,
            1,
        ];
        assemble(&t, strings)
    }

    #[test]
    fn module_types_build_on_vmlinux() {
        let base = Btf::parse(&blob()).expect("base");
        let module = Btf::parse_split(&module_blob(&base), &base).expect("split");
        let root = super::super::variable_root(&module, "xfs_stat_g", 0).expect("VAR");
        let (r, _) = fields::walk(
            &module,
            root,
            "xfs_stat_g",
            &[Access::Member("writes".into())],
        )
        .expect("walk");
        assert_eq!(
            (r.offset, r.ty.name.as_str(), r.ty.size),
            (4, "int", 4),
            "`int` is vmlinux's"
        );
        // vmlinux's own types are still there.
        assert!(module.function("vfs_x").is_some());
    }

    /// A module without BTF is named, with what gives a module BTF.
    #[test]
    fn a_module_without_btf_says_why() {
        let base = Btf::parse(&blob()).expect("base");
        let error = Btf::module("hwbp_no_such_module", &base)
            .err()
            .expect("no such module")
            .to_string();
        assert!(
            error.starts_with("cannot read /sys/kernel/btf/hwbp_no_such_module: ")
                && error.contains("module hwbp_no_such_module's BTF")
                && error.contains("CONFIG_DEBUG_INFO_BTF_MODULES"),
            "{error}"
        );
    }

    /// On this host, when it has module BTF: every module's blob reads on
    /// top of vmlinux's.
    #[test]
    fn this_kernels_modules() {
        let Ok(base) = Btf::vmlinux() else {
            eprintln!("SKIPPED: no vmlinux BTF here");
            return;
        };
        let Ok(dir) = fs::read_dir(MODULES) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "vmlinux" {
                Btf::module(&name, &base).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}

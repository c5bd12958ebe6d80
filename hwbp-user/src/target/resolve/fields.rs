//! Field expressions at resolution (`cfg.limits[2].max`): the whole text
//! is tried first as a symbol (`foo.cold`, `counter.0` are ELF names);
//! when nothing has that name, the variable before the accesses is located
//! as any symbol is, and the member found in its type (DWARF for a
//! program's variable, BTF for the kernel's or a module's), which moves
//! the address and sets the size LEN defaults from.

use std::{path::PathBuf, sync::Arc};

use super::{Found, ResolveError, Resolver, Space, SymbolKind};
use crate::target::{
    Access, Location, TargetSpec,
    btf::{self, Btf},
    dwarf,
    fields::{self, FieldError, FieldType, MemberRow, Resolved, Types},
};

impl Resolver {
    /// Locates `spec`, following its field expression when it has one and
    /// no symbol is named by its whole text.
    pub(super) fn locate_fields(
        &mut self,
        spec: &TargetSpec,
    ) -> Result<(Found, Option<Arc<FieldType>>), ResolveError> {
        let (Some(base), Location::Symbol { offset, .. }) = (spec.field_base(), &spec.location)
        else {
            let found = self.locate(spec)?;
            let ty = self.whole_variable_type(spec, &found);
            return Ok((found, ty));
        };
        match self.locate(spec) {
            Err(ResolveError::UnknownSymbol { .. }) => {}
            other => return Ok((other?, None)),
        }
        let found = self.locate(&variable_of(spec, base))?;
        let field_error = |error| ResolveError::Field {
            target: spec.text.clone(),
            error: Box::new(error),
        };
        let resolved = self
            .with_type(
                &found,
                base,
                &Member {
                    spec,
                    offset: *offset,
                },
            )
            .map_err(field_error)?;
        log::debug!(
            "`{}`: {} bytes of `{}` at offset {:#x} of `{base}`",
            spec.text,
            resolved.ty.size,
            resolved.ty.name,
            resolved.offset
        );
        let found = Found {
            name: resolved.path,
            base: found.base.wrapping_add(resolved.offset),
            size: resolved.ty.size,
            offset: *offset,
            file: found
                .file
                .map(|(path, link)| (path, link.wrapping_add(resolved.offset))),
            ..found
        };
        Ok((found, Some(Arc::new(resolved.ty))))
    }

    /// A program's variable named whole (`counter`, not `counter+4`) and
    /// watched as data: its type from DWARF, as a member's is, so that its
    /// value is decoded (an `int` at -3 is -3, not 4294967293; an enum by
    /// name) and conditions compare it signed where it is. None without
    /// DWARF: hex, and unsigned.
    fn whole_variable_type(&self, spec: &TargetSpec, found: &Found) -> Option<Arc<FieldType>> {
        let Location::Symbol { name, offset: 0 } = &spec.location else {
            return None;
        };
        if found.space != Space::User
            || found.kind != SymbolKind::Object
            || spec.mode.is_some_and(|mode| !mode.is_data())
        {
            return None;
        }
        self.with_type(found, name, &Whole)
            .inspect_err(|e| log::debug!("`{}`: untyped: {e}", spec.text))
            .ok()
            .map(Arc::new)
    }

    /// The members `list` shows for `expr` (`cfg`, `cfg.limits`): the
    /// runtime address of the variable, and a row per member or element.
    pub fn members(&mut self, spec: &TargetSpec) -> Result<(u64, Vec<MemberRow>), ResolveError> {
        let expr = &spec.text;
        let base = spec.field_base().unwrap_or(match &spec.location {
            Location::Symbol { name, .. } => name,
            Location::Address(_) => expr,
        });
        let found = self.locate(&variable_of(spec, base))?;
        let rows = self
            .with_type(&found, base, &Rows(&spec.fields))
            .map_err(|error| ResolveError::Field {
                target: expr.to_owned(),
                error: Box::new(error),
            })?;
        Ok((found.base, rows))
    }

    /// Runs `op` on the type of the variable `found` (named `base`).
    fn with_type<O: FieldOp>(
        &self,
        found: &Found,
        base: &str,
        op: &O,
    ) -> Result<O::Out, FieldError> {
        if found.kind == SymbolKind::Function {
            return Err(FieldError::NotVariable(base.to_owned()));
        }
        match (found.space, &found.file) {
            (Space::User, Some((path, link))) => {
                let path = self.in_root(path);
                dwarf::fields::with_variable(&path, *link, base, |types, root| {
                    op.run(types, root, base)
                })
            }
            (Space::Kernel, _) => {
                let btf = self.kernel_btf(found.object.as_deref(), base)?;
                let root = btf::variable_root(&btf, base, found.size)?;
                op.run(&btf, root, base)
            }
            // A raw address has no type.
            _ => Err(FieldError::NoVariable {
                file: found.object.clone().unwrap_or_default(),
                symbol: base.to_owned(),
            }),
        }
    }

    /// A file of the traced process as seen from its root (containers).
    fn in_root(&self, path: &std::path::Path) -> PathBuf {
        match &self.process {
            Some(p) => {
                let in_root = PathBuf::from(format!("/proc/{}/root{}", p.pid, path.display()));
                if in_root.is_file() {
                    in_root
                } else {
                    path.to_owned()
                }
            }
            None => path.to_owned(),
        }
    }

    /// vmlinux's BTF, with a module's on top for a module's variable.
    fn kernel_btf(&self, module: Option<&str>, symbol: &str) -> Result<Btf, FieldError> {
        let no_btf = |e: btf::BtfError| FieldError::NoBtf {
            symbol: symbol.to_owned(),
            reason: e.to_string(),
        };
        let vmlinux = Btf::vmlinux().map_err(no_btf)?;
        match module {
            Some(module) => Btf::module(module, &vmlinux).map_err(no_btf),
            None => Ok(vmlinux),
        }
    }
}

/// What to do with a variable's type, whichever source describes it.
pub(super) trait FieldOp {
    type Out;
    fn run<T: Types>(&self, types: &T, root: T::Id, base: &str) -> Result<Self::Out, FieldError>;
}

/// The member `spec` names, checked to be watchable as written.
struct Member<'a> {
    spec: &'a TargetSpec,
    offset: u64,
}

impl FieldOp for Member<'_> {
    type Out = Resolved;

    fn run<T: Types>(&self, types: &T, root: T::Id, base: &str) -> Result<Resolved, FieldError> {
        let (resolved, id) = fields::walk(types, root, base, &self.spec.fields)?;
        if self.spec.mode.is_none_or(|m| m.is_data()) {
            fields::check_size(types, id, &resolved, self.offset, self.spec.len)?;
        }
        Ok(resolved)
    }
}

/// A variable's own type.
struct Whole;

impl FieldOp for Whole {
    type Out = FieldType;

    fn run<T: Types>(&self, types: &T, root: T::Id, _: &str) -> Result<FieldType, FieldError> {
        Ok(types.info(root))
    }
}

/// The members of what the accesses lead to.
pub(super) struct Rows<'a>(pub &'a [Access]);

impl FieldOp for Rows<'_> {
    type Out = Vec<MemberRow>;

    fn run<T: Types>(&self, types: &T, root: T::Id, base: &str) -> Result<Self::Out, FieldError> {
        fields::member_rows(types, root, base, self.0)
    }
}

/// `spec` without its member accesses: the variable `base` they start from.
fn variable_of(spec: &TargetSpec, base: &str) -> TargetSpec {
    TargetSpec {
        location: Location::Symbol {
            name: base.to_owned(),
            offset: 0,
        },
        fields: Vec::new(),
        ..spec.clone()
    }
}

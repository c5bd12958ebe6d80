//! What to watch: the target grammar ([`spec`]), and everything that turns
//! a target into addresses and types: symbol lookup in the kernel and in the
//! traced process's ELF files ([`resolve`]), kernel types from BTF
//! ([`btf`]), user types from DWARF ([`dwarf`]), where the calling
//! convention puts each argument ([`abi`]), conditions (`TARGET if COND`,
//! [`condition`]), and `hwbp-trace list` ([`list`]). Depends on nothing
//! downstream: no perf events, no records.

pub mod abi;
pub mod abi_aapcs64;
pub mod btf;
pub mod condition;
pub mod dwarf;
pub mod fields;
pub mod list;
pub mod resolve;
pub mod spec;

pub use spec::{Access, Location, Mode, TargetError, TargetSpec};

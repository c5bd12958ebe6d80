//! hwbp: a hardware-breakpoint tracer. Name a kernel or user-space symbol;
//! every time a CPU executes or touches it, a hardware breakpoint fires and
//! a BPF program records who, where and what.
//!
//! The pipeline: [`target`] (grammar) → [`resolve`] (symbols, defaults,
//! architecture rules) → [`collect`] (BPF program and maps) → [`arm`] (perf
//! events, all or nothing) → ring buffer → [`symbolize`] → [`trace`]
//! records → [`export`] files, [`stats`] and the frontends.

pub mod abi;
pub mod arm;
pub mod btf;
pub mod cli;
pub mod collect;
pub mod doctor;
pub mod dwarf;
pub mod export;
pub mod host;
pub mod list;
pub mod metrics;
pub mod printable;
pub mod process;
pub mod redact;
pub mod report;
pub mod resolve;
pub mod session;
pub mod stats;
pub mod symbolize;
pub mod target;
pub mod trace;
pub mod tui;
pub mod values;
pub mod writer;

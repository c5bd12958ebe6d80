//! hwbp: a hardware-breakpoint tracer. Name a kernel or user-space symbol;
//! every time a CPU executes or touches it, a hardware breakpoint fires and
//! a BPF program records who, where and what.
//!
//! The pipeline, one folder per stage, each depending only on the stages
//! before it:
//!
//! [`host`] (privileges, kernel, CPUs) → [`target`] (grammar, symbols,
//! types) → [`probe`] (BPF program, perf events, the traced process) →
//! [`record`] (symbols, values, the record format) → [`output`] (stats,
//! files, metrics, report) → [`tui`] (the dashboard). [`session`] runs the
//! pipeline for one trace; [`doctor`] checks what the host allows; [`cli`]
//! is the command line.

pub mod cli;
pub mod doctor;
pub mod host;
pub mod output;
pub mod printable;
pub mod probe;
pub mod record;
pub mod session;
pub mod target;
pub mod tui;

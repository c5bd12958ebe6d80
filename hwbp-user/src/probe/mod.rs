//! Arming: the BPF program and its maps loaded ([`load`]), the breakpoint
//! perf events opened on every CPU or thread, all or none ([`arm`]), and
//! the traced process started stopped or watched until it exits
//! ([`process`]); and changing them while tracing ([`live`]). Raw hits
//! can be kept in a file and read back ([`records`]) for the replay
//! benchmark. Takes resolved targets from [`crate::target`]; hands raw
//! hits, read from the ring buffer, to [`crate::record`].

pub mod aggregates;
pub mod arm;
pub mod live;
pub mod load;
pub mod process;
pub mod records;
mod trap;

//! What the machine offers, read once and shared by arming, the session and
//! `doctor`: this process's privileges, the running kernel (release and
//! build configuration) and its online CPUs. Nothing here depends on any
//! other stage of hwbp.

pub mod arch;
pub mod caps;
pub mod cpus;
pub mod kernel;

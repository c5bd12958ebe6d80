//! What the root tests, the demo, the benchmark and the kernel tests share
//! in driving and reading hwbp-trace: its JSONL traces ([`trace`]), what
//! the fixtures say they did ([`fixture`]), the processes they start
//! ([`process`]) and the dashboard in a terminal ([`tmux`]). xtask uses it
//! through its dependency on this crate; it depends on neither's code.

pub mod fixture;
pub mod process;
pub mod tmux;
pub mod trace;

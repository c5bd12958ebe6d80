//! A raw hit made into a record a person can read: instruction pointers
//! and stacks named ([`symbolize`]), arguments and values decoded by type
//! ([`values`]), addresses hidden on request ([`redact`]), and the record
//! format itself, the hit, the header and the summary of a trace
//! ([`format`]), and a hit's JSONL line, written by hand ([`jsonl`]).

pub mod format;
pub mod jsonl;
pub mod redact;
pub mod symbolize;
pub mod values;

//! Where records go: live statistics for the dashboard and the summary
//! ([`stats`]), trace files in each format ([`export`]) written off the
//! collector's thread ([`writer`]), Prometheus metrics ([`metrics`]), and
//! `hwbp-trace report` over a written trace ([`report`]), and the summary
//! table that ends every run ([`summary`]).

pub mod export;
pub mod metrics;
pub mod report;
pub mod stats;
pub mod summary;
pub mod writer;

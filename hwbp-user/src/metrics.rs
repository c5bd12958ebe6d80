//! Prometheus metrics (`--metrics-addr`).

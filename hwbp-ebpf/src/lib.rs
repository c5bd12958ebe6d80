#![no_std]
// This file exists to enable the library target, so that hwbp-user can
// depend on hwbp-ebpf and be rebuilt when it changes (see aya-build).

//! The BPF side of hwbp: one `perf_event` program, attached by userspace to
//! every breakpoint perf event (PERF_TYPE_BREAKPOINT). Each hit becomes one
//! [`Hit`] record in the `EVENTS` ring buffer; nothing is logged per hit.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod aggregate;
#[cfg(target_arch = "bpf")]
mod arch;
#[cfg(target_arch = "bpf")]
mod condition;
#[cfg(target_arch = "bpf")]
mod probe;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

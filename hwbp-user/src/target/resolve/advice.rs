//! Targets the kernel accepts but that will likely never fire: said on
//! stderr before tracing, with what to write instead, so that a run with 0
//! hits is not mistaken for "nobody touched it".
//!
//! The kernel arms all of these without complaint: a write watchpoint on
//! code (code is executed, never written), an execute breakpoint on data
//! (the CPU never jumps there), and an execute breakpoint inside an
//! instruction (the CPU only matches DR0-3 against the address of an
//! instruction's first byte).

use std::{fs::File, os::unix::fs::FileExt as _};

use iced_x86::{Decoder, DecoderOptions};

use super::{Breakpoint, Space, SymbolKind};
use crate::target::{Location, Mode};

/// The longest x86 instruction.
const MAX_INSTRUCTION: u64 = 15;

/// Offsets into a function past which no instruction boundary is sought
/// (a decode from the function's start).
const MAX_DECODED: u64 = 1 << 16;

/// Why `bp` will likely see no hit, if it will not; `pid` is the traced
/// process, whose memory holds the code of user targets.
pub fn advice(bp: &Breakpoint, pid: Option<i32>) -> Option<String> {
    let target = &bp.spec.text;
    match (bp.kind, bp.mode) {
        (SymbolKind::Function, Mode::Write | Mode::ReadWrite | Mode::Read) => Some(format!(
            "`{target}` watches the code of function `{}` for data accesses; code is executed, not read or \
             written, so this will likely see nothing: to see its calls, trace `{}` (execute)",
            bp.symbol,
            without_mode(bp)
        )),
        (SymbolKind::Object, Mode::Execute) => Some(format!(
            "`{target}` is an execute breakpoint on variable `{}`; the CPU never executes data, so this will \
             likely see nothing: to see who writes it, trace `{}:w` (or `:rw` for reads too)",
            bp.symbol,
            without_mode(bp)
        )),
        (SymbolKind::Function, Mode::Execute) => inside_instruction(bp, pid?),
        _ => None,
    }
}

/// For an execute breakpoint at `FUNC+OFF` in a process: whether OFF falls
/// inside an instruction, decoding the function's code from its start.
fn inside_instruction(bp: &Breakpoint, pid: i32) -> Option<String> {
    let Location::Symbol { offset, .. } = bp.spec.location else {
        return None;
    };
    if cfg!(target_arch = "aarch64") {
        return inside_fixed_width(bp, offset);
    }
    if offset == 0 || offset > MAX_DECODED || bp.space != Space::User {
        return None;
    }
    let start = bp.addr.checked_sub(offset)?;
    let mut code = vec![0; (offset + MAX_INSTRUCTION) as usize];
    let mem = File::open(format!("/proc/{pid}/mem")).ok()?;
    let read = mem.read_at(&mut code, start).ok()?;
    code.truncate(read);
    let mut decoder = Decoder::with_ip(64, &code, start, DecoderOptions::NONE);
    while decoder.can_decode() {
        let instruction = decoder.decode();
        let (ip, next_ip) = (instruction.ip(), instruction.next_ip());
        if ip >= bp.addr {
            return None;
        }
        if bp.addr < next_ip {
            let func = bp.symbol.split('+').next().unwrap_or(&bp.symbol);
            let (at, end) = (ip - start, next_ip - start);
            return Some(format!(
                "`{}` is inside an instruction (the one at {func}+{at:#x} ends before {func}+{end:#x}); \
                 the CPU matches execute breakpoints only at an instruction's first byte, so this will \
                 likely see nothing: use `{func}+{at:#x}` or `{func}+{end:#x}`",
                bp.spec.text
            ));
        }
    }
    None
}

/// [`inside_instruction`] on arm64, whose instructions are 4 bytes each,
/// aligned: no decoding needed.
fn inside_fixed_width(bp: &Breakpoint, offset: u64) -> Option<String> {
    if bp.addr.is_multiple_of(4) {
        return None;
    }
    let func = bp.symbol.split('+').next().unwrap_or(&bp.symbol);
    let at = offset - bp.addr % 4;
    Some(format!(
        "`{}` is inside an instruction (arm64 instructions are 4 bytes, aligned: the one at \
         {func}+{at:#x}); the CPU matches execute breakpoints only at an instruction's start, so this \
         will likely see nothing: use `{func}+{at:#x}` or `{func}+{:#x}`",
        bp.spec.text,
        at + 4
    ))
}

/// The target as written, without its `:MODE` (and `/LEN`).
fn without_mode(bp: &Breakpoint) -> &str {
    let text = bp.spec.text.as_str();
    match bp.spec.mode {
        Some(_) => text.rsplit_once(':').map_or(text, |(rest, _)| rest),
        None => text,
    }
}

/// Why a `--comm` filter will match nothing, if it will not.
pub fn comm_advice(comm: &[u8]) -> Option<String> {
    // TASK_COMM_LEN is 16 with the NUL: a task's name holds 15 bytes.
    const COMM_MAX: usize = 15;
    (comm.len() > COMM_MAX).then(|| {
        let shown = String::from_utf8_lossy(comm);
        let kept = String::from_utf8_lossy(&comm[..COMM_MAX]);
        format!(
            "--comm `{}` is {} bytes long, but the kernel keeps only the first {COMM_MAX} of a task's name, \
             so it will match nothing: write `--comm {}`",
            crate::printable::printable(&shown),
            comm.len(),
            crate::printable::printable(&kept)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_comm_is_named_with_what_the_kernel_keeps() {
        assert_eq!(comm_advice(b"fx_user"), None);
        assert_eq!(comm_advice(b"exactly15_bytes"), None);
        let advice = comm_advice(b"sixteen_bytes_ok").expect("16 bytes");
        assert!(
            advice.contains("write `--comm sixteen_bytes_o`"),
            "{advice}"
        );
    }
}

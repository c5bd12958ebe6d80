//! User-space fixture for hwbp's integration tests: does an exact, known
//! number of calls and writes, so that tests can compare hit counts with the
//! ground truth.
//!
//! ```text
//! fx_user calls N                 call hwbp_fx_target N times
//! fx_user writes N                write HWBP_FX_COUNTER N times (values 1..=N)
//! fx_user reads N                 read HWBP_FX_COUNTER N times
//! fx_user kfills N                read(2) 8 bytes of /dev/zero into
//!                                 FX_KERNEL_FILLED N times (the kernel
//!                                 writes it), then store 7 in it once
//! fx_user threads BEFORE AFTER N  BEFORE threads start, then wait for the
//!                                 file $HWBP_FX_GO, then AFTER more threads;
//!                                 every thread calls hwbp_fx_target N times
//! fx_user spin SECONDS [PAUSE_US] call hwbp_fx_target in a loop, then report;
//!                                 with PAUSE_US, sleep that long between calls
//! fx_user exec N CMD ARGS...      call hwbp_fx_target N times, then exec CMD
//! fx_user stacks N [DISTINCT]     call hwbp_fx_target N times, call i through
//!                                 call path i % DISTINCT (default N): 17
//!                                 levels of fx_left/fx_right, so DISTINCT
//!                                 different user stacks (at most 2^17),
//!                                 below a frame of more than a page
//! fx_user depths N                call hwbp_fx_target N times, call i through
//!                                 7i % 18 levels of fx_left/fx_right picked by
//!                                 the bits of i: each stack 7 frames deeper
//!                                 or 11 shallower than the last
//! fx_user levels N L             call hwbp_fx_target N times, call i through
//!                                 L levels (fewer than 62) picked by the bits
//!                                 of i
//! fx_user gapdepths N             as depths, on a thread of its own, with
//!                                 fx_big (1 KiB of locals) between the
//!                                 levels and the target
//! fx_user topstack N              call hwbp_fx_target N times on a stack of
//!                                 its own whose mapping ends 64 bytes above
//!                                 the call: a read past that fails
//! fx_user exit N STATUS           call hwbp_fx_target N times, print `done N`,
//!                                 then exit with STATUS
//! fx_user signal N SIGNAL         call hwbp_fx_target N times, print `done N`,
//!                                 then die of SIGNAL (a number)
//! fx_user phases N READY GO      write FX_LIVE_A N times, create the file
//!                                 READY, wait for the file GO, then write
//!                                 FX_LIVE_A N times and FX_LIVE_B N times
//!                                 (tests/tests/live.rs moves a watch
//!                                 between the phases)
//! fx_user paired calls|writes N BATCH OUT
//!                                 N calls of (writes to) hwbp_fx_target
//!                                 (HWBP_FX_COUNTER), of fx_bench_floor
//!                                 (FX_BENCH_FLOOR) and of fx_bench_plain
//!                                 (FX_BENCH_PLAIN), BATCH at a time in turn;
//!                                 OUT gets each round's three batch times
//! ```
//! Options before the command: `--wait PATH` waits until PATH exists before
//! doing anything (so that -p can attach first); `--delay-ms MS` sleeps first.
//! The environment's `HWBP_FX_START_DELAY_MS` sleeps before both (see
//! `start_delay`), and `HWBP_FX_COMM` renames the process first (its comm,
//! as `prctl(PR_SET_NAME)` sets it: any bytes, cut to 15). On stdout it
//! prints `done CALLS` with the count it did.
//!
//! A SIGTRAP does not kill it: it says so on stderr, appends the line to
//! the file `$HWBP_FX_FAULTS` when that is set, and goes on. The kernel
//! sends one (si_code 1, TRAP_BRKPT) for a debug exception it cannot
//! attribute to a breakpoint because DR6 is empty, which is how some
//! virtual machines lose a hit. At an execute breakpoint the instruction
//! then traps again and the hit is counted; a data hit is lost. `cargo
//! xtask test` reruns the tests that failed in a run with such a note (see
//! xtask/src/integration.rs).

use std::{
    env,
    ffi::{CString, c_char, c_int, c_void},
    hint,
    os::unix::ffi::OsStrExt as _,
    path::Path,
    process::ExitCode,
    ptr,
    sync::atomic::{AtomicPtr, AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

/// The watched variable. `no_mangle` keeps a stable symbol name.
#[unsafe(no_mangle)]
pub static HWBP_FX_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The variable the kernel writes (`kfills`): read(2) fills it. Not zero
/// at first, so it is in .data, which exec leaves alone: exec zeroes the
/// .bss bytes on the last page of .data, which perf (counting from the
/// exec) would see and hwbp-trace (armed after the dynamic loader) not.
#[unsafe(no_mangle)]
pub static FX_KERNEL_FILLED: AtomicU64 = AtomicU64::new(u64::MAX);

/// The two variables tests/tests/live.rs moves a watch between (not
/// `hwbp_fx_*`: the tests list those).
#[unsafe(no_mangle)]
pub static FX_LIVE_A: AtomicU64 = AtomicU64::new(0);
#[unsafe(no_mangle)]
pub static FX_LIVE_B: AtomicU64 = AtomicU64::new(0);

/// The traced function.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn hwbp_fx_target(x: u64) -> u64 {
    hint::black_box(x.wrapping_mul(3) + 1)
}

/// The caller the user stacks must name.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn hwbp_fx_caller(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(hwbp_fx_target(hint::black_box(i)));
    }
    hint::black_box(acc)
}

/// Three call sites of the target, each its own function (`sites`): the
/// per-caller counts of the aggregates are checked against their `n`s.
/// Each does different work after the call, so that no two are merged.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn fx_site_a(n: u64, write: bool) -> u64 {
    // Not spelled as hwbp_fx_writer's store (tests find that line by its text).
    let counter = &HWBP_FX_COUNTER;
    let mut acc = 0u64;
    for i in 0..n {
        if write {
            counter.store(i, Ordering::SeqCst);
        } else {
            let r = hwbp_fx_target(hint::black_box(i));
            acc = acc.wrapping_add(r);
        }
    }
    hint::black_box(acc)
}

/// See [`fx_site_a`].
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn fx_site_b(n: u64, write: bool) -> u64 {
    // Not spelled as hwbp_fx_writer's store (tests find that line by its text).
    let counter = &HWBP_FX_COUNTER;
    let mut acc = 1u64;
    for i in 0..n {
        if write {
            counter.store(i + 7, Ordering::SeqCst);
        } else {
            acc = acc.wrapping_mul(hwbp_fx_target(hint::black_box(i)) | 1);
        }
    }
    hint::black_box(acc)
}

/// See [`fx_site_a`].
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn fx_site_c(n: u64, write: bool) -> u64 {
    // Not spelled as hwbp_fx_writer's store (tests find that line by its text).
    let counter = &HWBP_FX_COUNTER;
    let mut acc = 0u64;
    for i in 0..n {
        if write {
            counter.store(i ^ 0x55, Ordering::SeqCst);
        } else {
            acc ^= hwbp_fx_target(hint::black_box(i)).rotate_left(3);
        }
    }
    hint::black_box(acc)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn hwbp_fx_writer(n: u64) {
    for i in 1..=n {
        HWBP_FX_COUNTER.store(i, Ordering::SeqCst);
    }
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn hwbp_fx_reader(n: u64) -> u64 {
    let mut acc = 0;
    for _ in 0..n {
        acc += HWBP_FX_COUNTER.load(Ordering::SeqCst);
    }
    hint::black_box(acc)
}

/// The benchmark's twins of hwbp_fx_target and HWBP_FX_COUNTER (`paired`):
/// one is watched by the floor's tool while the tool measured watches the
/// `hwbp_fx_*` one, the other by nothing. Not `hwbp_fx_*` (the tests list
/// those); the constants keep the functions apart.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn fx_bench_floor(x: u64) -> u64 {
    hint::black_box(x.wrapping_mul(5) + 2)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn fx_bench_plain(x: u64) -> u64 {
    hint::black_box(x.wrapping_mul(7) + 3)
}

#[unsafe(no_mangle)]
pub static FX_BENCH_FLOOR: AtomicU64 = AtomicU64::new(0);

#[unsafe(no_mangle)]
pub static FX_BENCH_PLAIN: AtomicU64 = AtomicU64::new(0);

/// `n` calls of `f`, as [`hwbp_fx_caller`] makes of the target.
#[inline(never)]
fn call_batch(f: extern "C" fn(u64) -> u64, n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(f(hint::black_box(i)));
    }
    hint::black_box(acc)
}

/// `n` writes to `counter`, as [`hwbp_fx_writer`] makes to the variable.
#[inline(never)]
fn write_batch(counter: &AtomicU64, n: u64) {
    for i in 1..=n {
        counter.store(i, Ordering::SeqCst);
    }
}

/// `paired`: `n` hits on each of the three targets, `batch` at a time, in
/// an order that rotates every round; each round's three batch times (ns,
/// the measured target's, the floor's, the unwatched one's) to `out`, a line
/// each. Batches a few milliseconds apart see the same machine, where runs
/// a second apart do not (a shared host: the exception's own cost moves by
/// a tenth between them).
fn fx_paired(writes: bool, n: u64, batch: u64, out: &str) -> Result<(), String> {
    if batch == 0 || !n.is_multiple_of(batch) {
        return Err(format!("paired: BATCH ({batch}) must divide N ({n})"));
    }
    let hit = |which: usize, count: u64| match (writes, which) {
        (false, 0) => {
            hwbp_fx_caller(count);
        }
        (false, 1) => {
            call_batch(fx_bench_floor, count);
        }
        (false, _) => {
            call_batch(fx_bench_plain, count);
        }
        (true, 0) => hwbp_fx_writer(count),
        (true, 1) => write_batch(&FX_BENCH_FLOOR, count),
        (true, _) => write_batch(&FX_BENCH_PLAIN, count),
    };
    let mut lines = String::new();
    for round in 0..n / batch {
        let mut ns = [0u128; 3];
        for k in 0..3 {
            let which = (k + round as usize) % 3;
            let start = Instant::now();
            hit(which, batch);
            ns[which] = start.elapsed().as_nanos();
        }
        lines.push_str(&format!("{} {} {}\n", ns[0], ns[1], ns[2]));
    }
    std::fs::write(out, lines).map_err(|e| format!("paired: writing {out}: {e}"))
}

/// Levels of the call paths of `stacks`: 2^17 = 131072 distinct stacks.
const PATH_LEVELS: u32 = 17;

/// A bit of a call path past its levels: at level 0, call the target
/// through [`fx_big`].
const THROUGH_BIG: u64 = 1 << 62;

/// The next level of call path `path`: bit `level - 1` picks
/// fx_left (0) or fx_right (1); at level 0, the target (through fx_big
/// with [`THROUGH_BIG`]).
#[inline(always)]
fn descend(level: u32, path: u64) -> u64 {
    match level.checked_sub(1) {
        None if path & THROUGH_BIG != 0 => fx_big(path),
        None => hwbp_fx_target(path),
        Some(next) if path >> next & 1 == 0 => fx_left(next, path),
        Some(next) => fx_right(next, path),
    }
}

/// One level of a call path. Its own frame and return address: never
/// inlined, and the work after the call (different from fx_right's, so
/// that the two are not merged into one function) rules out a tail call.
/// Not `hwbp_fx_*` (the call paths are a benchmark's, not a test's: the
/// tests list the `hwbp_fx_*` symbols).
#[inline(never)]
fn fx_left(level: u32, path: u64) -> u64 {
    hint::black_box(descend(level, hint::black_box(path))).wrapping_add(1)
}

/// The other choice at each level; see [`fx_left`].
#[inline(never)]
fn fx_right(level: u32, path: u64) -> u64 {
    hint::black_box(descend(level, hint::black_box(path))).wrapping_mul(3)
}

/// `n` calls of hwbp_fx_target, call i through call path i % `distinct`.
/// Its frame holds more than a page, so a stack walk from the target up to
/// main crosses pages.
#[inline(never)]
fn fx_stacks(n: u64, distinct: u64) -> u64 {
    let pad = hint::black_box([0u8; 5000]);
    let mut acc = u64::from(pad[0]);
    for i in 0..n {
        acc = acc.wrapping_add(descend(PATH_LEVELS, hint::black_box(i % distinct)));
    }
    hint::black_box(acc)
}

/// `n` calls of hwbp_fx_target, call i through `7i % 18` levels picked by
/// the bits of i: each stack 7 frames deeper or 11 shallower than the one
/// before, with other frames, every depth from 0 to 17 in 18 calls.
#[inline(never)]
fn fx_depths(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        let levels = (i * 7 % u64::from(PATH_LEVELS + 1)) as u32;
        acc = acc.wrapping_add(descend(levels, hint::black_box(i)));
    }
    hint::black_box(acc)
}

/// `n` calls of hwbp_fx_target, call i through `levels` levels picked by
/// the bits of i.
#[inline(never)]
fn fx_levels(n: u64, levels: u32) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(descend(levels, hint::black_box(i)));
    }
    hint::black_box(acc)
}

/// Calls the target from a frame with 1 KiB of locals: a jump in the
/// frame pointers that a stack walk with a watchpoint armed reads around.
#[inline(never)]
fn fx_big(path: u64) -> u64 {
    let pad = hint::black_box([0u8; 1024]);
    hwbp_fx_target(path).wrapping_add(u64::from(pad[0]))
}

/// `n` calls of hwbp_fx_target through [`fx_big`], call i below `7i % 18`
/// levels picked by the bits of i (as [`fx_depths`]), on a thread of its
/// own: the frames past fx_big's locals, which a walk with a watchpoint
/// armed reads in reads sized by the last walk's, are 7 levels more or 11
/// fewer than the last call's, and few (on the main thread, main's locals
/// would make them more than the largest such read).
#[inline(never)]
fn fx_gapdepths(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        let levels = (i * 7 % u64::from(PATH_LEVELS + 1)) as u32;
        acc = acc.wrapping_add(descend(levels, hint::black_box(i | THROUGH_BIG)));
    }
    hint::black_box(acc)
}

/// `n` calls of hwbp_fx_target on a stack of its own: one page, mapped to
/// end 64 bytes above the call, with a page that cannot be read above it.
/// A stack walk that reads past the caller's bytes there fails and must
/// read again within the page. The target's caller is this function (the
/// return address its call pushed), then main by the frame pointers.
#[inline(never)]
fn fx_topstack(n: u64) -> Result<u64, String> {
    const PAGE: usize = 4096;
    // SAFETY: a new private anonymous mapping of two pages; nothing else
    // uses it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the upper page of the mapping made above.
    if unsafe { libc::mprotect(base.cast::<u8>().add(PAGE).cast(), PAGE, libc::PROT_NONE) } != 0 {
        return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
    }
    // 16-byte aligned, as a call needs.
    let top = base as usize + PAGE - 64;
    let mut acc = 0u64;
    for i in 0..n {
        let result: u64;
        // SAFETY: the call runs on the new stack, which has 4 KiB below
        // `top` for hwbp_fx_target's frame; rsp is restored from r12
        // (callee-saved) after it, and every register the C ABI lets a
        // call change is declared clobbered.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            core::arch::asm!(
                "mov r12, rsp",
                "mov rsp, {top}",
                "call {target}",
                "mov rsp, r12",
                top = in(reg) top,
                target = sym hwbp_fx_target,
                inout("rdi") i => _,
                out("rax") result,
                out("r12") _,
                clobber_abi("C"),
            );
        }
        // SAFETY: as above, on arm64: sp is restored from x20
        // (callee-saved; x19 is LLVM's), bl sets the link register, which
        // clobber_abi("C") declares clobbered with the rest.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            core::arch::asm!(
                "mov x20, sp",
                "mov sp, {top}",
                "bl {target}",
                "mov sp, x20",
                top = in(reg) top,
                target = sym hwbp_fx_target,
                inout("x0") i => result,
                out("x20") _,
                clobber_abi("C"),
            );
        }
        acc = acc.wrapping_add(result);
    }
    Ok(hint::black_box(acc))
}

fn wait_for(path: &str) {
    while !Path::new(path).exists() {
        thread::sleep(Duration::from_millis(5));
    }
}

fn num(arg: Option<&String>) -> Result<u64, String> {
    arg.ok_or("missing number")?
        .parse()
        .map_err(|e| format!("bad number: {e}"))
}

fn run(args: &[String]) -> Result<u64, String> {
    let mut args = args;
    loop {
        match args {
            [flag, path, rest @ ..] if flag == "--wait" => {
                wait_for(path);
                args = rest;
            }
            [flag, ms, rest @ ..] if flag == "--delay-ms" => {
                thread::sleep(Duration::from_millis(
                    ms.parse().map_err(|e| format!("bad delay: {e}"))?,
                ));
                args = rest;
            }
            _ => break,
        }
    }
    let (cmd, rest) = args.split_first().ok_or(
        "usage: fx_user calls|writes|reads|kfills|threads|spin|phases|exec|stacks|depths|levels|gapdepths|topstack|paired|sites|sitewrites ...",
    )?;
    match cmd.as_str() {
        // `sites A B C`: A calls of the target from fx_site_a, then B from
        // fx_site_b, then C from fx_site_c; `sitewrites` the same with
        // writes of HWBP_FX_COUNTER.
        "sites" | "sitewrites" => sites(cmd == "sitewrites", rest),
        "calls" => {
            let n = num(rest.first())?;
            hwbp_fx_caller(n);
            Ok(n)
        }
        "kfills" => {
            let n = num(rest.first())?;
            kernel_fills(n)?;
            Ok(n)
        }
        "exit" => {
            let n = num(rest.first())?;
            let status = num(rest.get(1))?;
            hwbp_fx_caller(n);
            println!("done {n}");
            std::process::exit(i32::try_from(status).map_err(|e| format!("bad status: {e}"))?)
        }
        "signal" => {
            let n = num(rest.first())?;
            let signal =
                c_int::try_from(num(rest.get(1))?).map_err(|e| format!("bad signal: {e}"))?;
            hwbp_fx_caller(n);
            println!("done {n}");
            // (Rust's stdout is line-buffered: `done N` is out already.)
            // SAFETY: raise(3) takes a signal number and no pointers.
            unsafe { libc::raise(signal) };
            Err(format!("signal {signal} did not end the process"))
        }
        "writes" => {
            let n = num(rest.first())?;
            hwbp_fx_writer(n);
            Ok(n)
        }
        "reads" => {
            let n = num(rest.first())?;
            hwbp_fx_reader(n);
            Ok(n)
        }
        "threads" => threads(rest),
        "spin" => spin(rest),
        "phases" => {
            let n = num(rest.first())?;
            let (ready, go) = match rest {
                [_, ready, go, ..] => (ready, go),
                _ => return Err("phases needs N READY GO".into()),
            };
            for i in 1..=n {
                FX_LIVE_A.store(i, Ordering::SeqCst);
            }
            std::fs::write(ready, "").map_err(|e| format!("creating {ready}: {e}"))?;
            wait_for(go);
            for i in 1..=n {
                FX_LIVE_A.store(i, Ordering::SeqCst);
            }
            for i in 1..=n {
                FX_LIVE_B.store(i, Ordering::SeqCst);
            }
            Ok(n)
        }
        "exec" => {
            let n = num(rest.first())?;
            hwbp_fx_caller(n);
            let (cmd, args) = rest[1..].split_first().ok_or("exec needs a command")?;
            use std::os::unix::process::CommandExt as _;
            let err = std::process::Command::new(cmd).args(args).exec();
            Err(format!("exec {cmd}: {err}"))
        }
        "topstack" => {
            let n = num(rest.first())?;
            fx_topstack(n)?;
            Ok(n)
        }
        "depths" => {
            let n = num(rest.first())?;
            fx_depths(n);
            Ok(n)
        }
        "levels" => {
            let n = num(rest.first())?;
            let levels = num(rest.get(1))?;
            // Bit `levels - 1` of the path picks the outermost level's
            // function; THROUGH_BIG's bit must not be one.
            if levels >= 62 {
                return Err(format!("levels: L must be less than 62 (got {levels})"));
            }
            fx_levels(n, levels as u32);
            Ok(n)
        }
        "gapdepths" => {
            let n = num(rest.first())?;
            thread::spawn(move || fx_gapdepths(n))
                .join()
                .map_err(|_| "gapdepths: the thread panicked")?;
            Ok(n)
        }
        "stacks" => {
            let n = num(rest.first())?;
            let distinct = match rest.get(1) {
                Some(_) => num(rest.get(1))?,
                None => n.max(1),
            };
            if !(1..=1 << PATH_LEVELS).contains(&distinct) {
                return Err(format!(
                    "stacks: DISTINCT must be 1 to {} (got {distinct})",
                    1u64 << PATH_LEVELS
                ));
            }
            fx_stacks(n, distinct);
            Ok(n)
        }
        "paired" => {
            let writes = match rest.first().map(String::as_str) {
                Some("calls") => false,
                Some("writes") => true,
                _ => return Err("paired: the first argument must be calls or writes".into()),
            };
            let n = num(rest.get(1))?;
            let batch = num(rest.get(2))?;
            let out = rest.get(3).ok_or("paired: missing the output file")?;
            fx_paired(writes, n, batch, out)?;
            Ok(n)
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

/// `$HWBP_FX_FAULTS` as a C string, for [`on_sigtrap`]; null when unset.
static FAULTS: AtomicPtr<c_char> = AtomicPtr::new(ptr::null_mut());

/// Says that a SIGTRAP came, with its `si_code`, and returns. Only
/// async-signal-safe calls: no allocation, no locks.
extern "C" fn on_sigtrap(_: c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    const PREFIX: &[u8] = b"fx_user: SIGTRAP, going on; si_code ";
    let mut buf = [0u8; PREFIX.len() + 12];
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut len = PREFIX.len();
    if code < 0 {
        buf[len] = b'-';
        len += 1;
    }
    // The digits, most significant first.
    let mut digits = [0u8; 10];
    let mut count = 0;
    let mut rest = code.unsigned_abs();
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in digits[..count].iter().rev() {
        buf[len] = digit;
        len += 1;
    }
    buf[len] = b'\n';
    let line = &buf[..=len];
    // SAFETY: write, open and close are async-signal-safe;
    // `line` is a live buffer and FAULTS a leaked C string or null.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        let path = FAULTS.load(Ordering::Relaxed);
        if !path.is_null() {
            let fd = libc::open(
                path,
                libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                libc::write(fd, line.as_ptr().cast(), line.len());
                libc::close(fd);
            }
        }
    }
}

/// Sleeps `$HWBP_FX_START_DELAY_MS` milliseconds, when that is set, before
/// any of its work: `cargo xtask test` sets it for the root tests.
///
/// Some KVM hosts silence every breakpoint of a thread after its first
/// hit when that hit comes within a millisecond or two of the thread's
/// first run with them armed (perf's own count misses those hits too; the
/// measurements are in docs/limitations.md); a short sleep first keeps
/// every hit clear of that window. One test runs without it, with a
/// single call, which that fault cannot touch (`a_command_is_armed_before_
/// its_first_instruction` in tests/tests/counting.rs).
fn start_delay() {
    let ms = env::var("HWBP_FX_START_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    if ms > 0 {
        thread::sleep(Duration::from_millis(ms));
    }
}

/// Installs [`on_sigtrap`].
fn note_sigtraps() {
    if let Some(path) = env::var_os("HWBP_FX_FAULTS")
        && let Ok(path) = CString::new(path.as_bytes())
    {
        FAULTS.store(path.into_raw(), Ordering::Relaxed);
    }
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO
    // signature.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigtrap as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTRAP, &action, ptr::null_mut());
    }
}

/// Renames the process to `$HWBP_FX_COMM`, when that is set: a traced
/// program chooses its comm, control characters included.
fn set_comm() {
    if let Some(comm) = env::var_os("HWBP_FX_COMM")
        && let Ok(comm) = CString::new(comm.as_bytes())
    {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string (the kernel
        // copies at most 16 bytes), which `comm` is and outlives the call.
        unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
    }
}

fn main() -> ExitCode {
    set_comm();
    note_sigtraps();
    start_delay();
    // argv[0] may not be UTF-8 (tests run the fixture through such a link).
    let args: Vec<String> = env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match run(&args) {
        Ok(n) => {
            println!("done {n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fx_user: {e}");
            ExitCode::from(2)
        }
    }
}

/// `kfills N`: the kernel writes FX_KERNEL_FILLED N times, each a read(2)
/// of 8 bytes from /dev/zero into it, then the program stores 7 in it.
fn kernel_fills(n: u64) -> Result<(), String> {
    let zero = std::fs::File::open("/dev/zero").map_err(|e| format!("/dev/zero: {e}"))?;
    for _ in 0..n {
        // SAFETY: 8 writable bytes, an AtomicU64's (an UnsafeCell), which
        // nothing else touches while the kernel fills them.
        let got = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&zero),
                FX_KERNEL_FILLED.as_ptr().cast(),
                8,
            )
        };
        if got != 8 {
            return Err(format!("read of /dev/zero: {got}"));
        }
    }
    FX_KERNEL_FILLED.store(7, Ordering::SeqCst);
    Ok(())
}

/// `threads BEFORE AFTER N`: BEFORE threads started and waiting, then
/// AFTER more once `$HWBP_FX_GO` exists, each calling the target N times.
/// `sites A B C` (`write`: `sitewrites`): the three call sites in turn.
fn sites(write: bool, rest: &[String]) -> Result<u64, String> {
    let (a, b, c) = (num(rest.first())?, num(rest.get(1))?, num(rest.get(2))?);
    fx_site_a(a, write);
    fx_site_b(b, write);
    fx_site_c(c, write);
    Ok(a + b + c)
}

fn threads(rest: &[String]) -> Result<u64, String> {
    let before = num(rest.first())?;
    let after = num(rest.get(1))?;
    let n = num(rest.get(2))?;
    let go = env::var("HWBP_FX_GO").map_err(|_| "threads needs $HWBP_FX_GO")?;
    let gate = std::sync::Arc::new(std::sync::Barrier::new(before as usize + 1));
    let mut handles = Vec::new();
    for _ in 0..before {
        let gate = gate.clone();
        let go = go.clone();
        handles.push(thread::spawn(move || {
            gate.wait();
            wait_for(&go);
            hwbp_fx_caller(n);
        }));
    }
    gate.wait();
    println!("ready");
    wait_for(&go);
    for _ in 0..after {
        handles.push(thread::spawn(move || {
            hwbp_fx_caller(n);
        }));
    }
    for h in handles {
        h.join().map_err(|_| "thread panicked")?;
    }
    Ok((before + after) * n)
}

/// `spin SECONDS [PAUSE_US]`: calls the target for SECONDS, in bursts of
/// 100, or one call per PAUSE_US.
fn spin(rest: &[String]) -> Result<u64, String> {
    let secs: f64 = rest
        .first()
        .ok_or("missing seconds")?
        .parse()
        .map_err(|e| format!("bad seconds: {e}"))?;
    let pause = match rest.get(1) {
        Some(us) => Some(Duration::from_micros(
            us.parse().map_err(|e| format!("bad pause: {e}"))?,
        )),
        None => None,
    };
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut calls = 0;
    while Instant::now() < end {
        match pause {
            Some(pause) => {
                hwbp_fx_caller(1);
                calls += 1;
                thread::sleep(pause);
            }
            None => {
                hwbp_fx_caller(100);
                calls += 100;
            }
        }
    }
    Ok(calls)
}

//! Root integration tests: symbols of C programs in every ELF layout the
//! toolchains here produce resolve to the address gdb gives, and count
//! exactly.
//!
//! hwbp once took a segment's runtime address from the first mapping at the
//! segment's file page, which with GNU ld's default layout is the read-only
//! data before the RELRO segment (variables 0x1000 too low, 0 hits) and with
//! lld the file's first page (functions never hit). The unit tests in
//! hwbp-user/src/target/resolve/elf.rs pin the arithmetic on recorded layouts; this
//! file checks it end to end on programs linked here and now, against two
//! independent ground truths: the loop count of the program, and the
//! address gdb prints for `&variable`. Both hwbp-trace and gdb run under
//! `setarch -R` (no ASLR), so the same program lands at the same addresses.
//!
//! Needs gcc and gdb; lld and gold when present (`cargo xtask setup`
//! installs lld and gdb), each missing one skipped with a loud message.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
};

use hwbp_tests::{
    TempDir, hwbp_trace,
    programs::{compile, gcc, have, perf_stat_count, ready, sh, skip},
    stderr, stdout,
    traces::{read_full_trace, read_trace, target_addrs, target_hits},
};

/// Loop count of every program: each call of `bump` writes each variable
/// once.
const N: u64 = 400;

/// The program: globals of four sizes in .bss and .data, a function called
/// N times, and optionally a shared library with its own variable and
/// function. The start delay keeps the first hit away from the arming (see
/// the Limitations in README.md: some hosts lose a hit that comes within a
/// millisecond or two).
const PROGRAM: &str = r#"
#include <stdlib.h>
#include <unistd.h>
#ifdef LOW_MAPPINGS
#define _GNU_SOURCE
#include <sys/mman.h>
#endif
volatile int g_bss;
volatile long g_data = 5;
volatile char g_char;
volatile short g_short = 1;
/* Array elements and struct members, named as SYMBOL+OFFSET. */
volatile int g_array[4];
struct pair { volatile int a; volatile long b; };
struct pair g_pair;
#ifdef WITH_LIB
void lib_bump(void);
/* Defined by the library, written by both: a -no-pie program holds the
   one copy (a copy relocation), and the library's code writes that copy. */
extern volatile int lib_copied;
#endif
/* A static function: in .symtab only. */
static __attribute__((noinline)) void s_touch(int i) {
    g_array[2] = i;
    g_pair.b += i;
}
__attribute__((noinline, used)) void bump(int i) {
    g_bss++;
    g_data += i;
    g_char++;
    g_short++;
    s_touch(i);
#ifdef WITH_LIB
    lib_bump();
    lib_copied++;
#endif
}
int main(int argc, char **argv) {
    const char *delay = getenv("HWBP_FX_START_DELAY_MS");
    if (delay) usleep(atoi(delay) * 1000);
    int n = argc > 1 ? atoi(argv[1]) : 0;
#ifdef LOW_MAPPINGS
    /* Mappings below the executable, as JITs make them: they must not look
       like an exec to the tracer. */
    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    mmap((void *)0x10000, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
#endif
    for (int i = 0; i < n; i++) bump(i);
    return 0;
}
"#;

/// The library: its variable is written only by its own code, so the
/// program has no copy relocation of it and the library's copy is the one
/// written.
const LIBRARY: &str = r#"
volatile int lib_counter;
volatile int lib_copied;
__attribute__((noinline)) void lib_bump(void) { lib_counter++; lib_copied++; }
"#;

/// gdb's `&name` for each name, with the program stopped at main (shared
/// objects loaded) and ASLR off.
fn gdb_addresses(prog: &str, names: &[&str]) -> Vec<u64> {
    let mut cmd = Command::new("setarch");
    cmd.args([
        "-R",
        "gdb",
        "-nx",
        "-batch",
        "-ex",
        "break main",
        "-ex",
        "run",
    ]);
    // In C's terms, with each name quoted: a C++ signature or a Rust path
    // is then one linkage name (`&'ns::f(int)'`), whatever the language of
    // the frame gdb stopped in.
    cmd.args(["-ex", "set language c"]);
    for name in names {
        cmd.arg("-ex")
            .arg(format!("printf \"ADDR {name} %lx\\n\", (long)&'{name}'"));
    }
    cmd.args(["--args", prog, "1"]);
    let o = sh(&mut cmd);
    let text = stdout(&o);
    names
        .iter()
        .map(|name| {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("ADDR {name} ")))
                .unwrap_or_else(|| {
                    panic!("gdb printed no address of {name}:\n{text}\n{}", stderr(&o))
                });
            u64::from_str_radix(line.trim(), 16)
                .unwrap_or_else(|e| panic!("gdb's address of {name} `{line}`: {e}"))
        })
        .collect()
}

/// A trace of `targets` on `prog N` under `setarch -R`: the header's target
/// addresses and the summary's hit counts, in target order.
fn trace(dir: &TempDir, prog: &str, args: &[&str], targets: &[&str]) -> (Vec<u64>, Vec<u64>) {
    let out_file = dir.path("t.jsonl");
    let mut cmd = Command::new("setarch");
    cmd.args(["-R"])
        .arg(hwbp_trace())
        .args(["--no-tui", "-q", "-o", &out_file])
        .args(targets)
        .arg("--")
        .arg(prog)
        .args(args);
    if std::env::var_os("HWBP_FX_START_DELAY_MS").is_none() {
        cmd.env("HWBP_FX_START_DELAY_MS", "20");
    }
    let o = sh(&mut cmd);
    assert!(
        o.status.success(),
        "hwbp-trace {targets:?} -- {prog}: {}",
        stderr(&o)
    );
    let (header, _, summary) = read_trace(&out_file);
    assert_eq!(summary["exit_status"], 0, "{prog} ran to its end");
    assert_eq!(
        summary["end_reason"], "process-exit",
        "{prog} ran to its end"
    );
    assert_eq!(summary["lost"], 0, "no hit lost");
    let (addrs, hits) = (target_addrs(&header), target_hits(&summary));
    assert_eq!((addrs.len(), hits.len()), (targets.len(), targets.len()));
    (addrs, hits)
}

/// Builds the program with gcc and `flags` and checks every global and
/// `bump`.
fn check_layout(layout: &str, flags: &[&str]) {
    check_layout_with("gcc", layout, flags);
}

fn check_layout_with(compiler: &str, layout: &str, flags: &[&str]) {
    let dir = TempDir::new(&format!("corpus-{layout}"));
    compile(compiler, &dir, PROGRAM, "prog", flags);
    let prog = dir.path("prog");
    let names = ["g_bss", "g_data", "g_char", "g_short", "bump"];
    let want = gdb_addresses(&prog, &names);
    let n = N.to_string();
    // Two runs: at most three debug registers at once leaves one for the
    // other users of this machine.
    let (a1, h1) = trace(&dir, &prog, &[&n], &["g_bss", "g_data", "bump"]);
    let (a2, h2) = trace(&dir, &prog, &[&n], &["g_char", "g_short"]);
    // An array element, a struct member (SYMBOL+OFFSET) and a static
    // function, against gdb's `&g_array[2]`, `&g_pair.b` and `&s_touch`
    // (a stripped program keeps no static function: .dynsym has none).
    let stripped = flags.contains(&"-s");
    let names: &[&str] = if stripped {
        &["g_array", "g_pair"]
    } else {
        &["g_array", "g_pair", "s_touch"]
    };
    let targets: &[&str] = if stripped {
        &["g_array+8/4", "g_pair+8"]
    } else {
        &["g_array+8/4", "g_pair+8", "s_touch"]
    };
    let mut parts = gdb_addresses(&prog, names);
    parts[0] += 8;
    parts[1] += 8;
    let (a3, h3) = trace(&dir, &prog, &[&n], targets);
    assert_eq!(a3, parts, "{layout}: {targets:?} against gdb");
    assert_eq!(h3, vec![N; targets.len()], "{layout}: hits of {targets:?}");
    let got: Vec<u64> = [a1[0], a1[1], a2[0], a2[1], a1[2]].into();
    let shown = |v: &[u64]| v.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>();
    assert_eq!(
        shown(&got),
        shown(&want),
        "{layout}: hwbp's addresses of {names:?} against gdb's"
    );
    assert_eq!(
        [h1[0], h1[1], h2[0], h2[1], h1[2]],
        [N; 5],
        "{layout}: hits of {names:?}"
    );
}

#[test]
fn gnu_ld_layouts_resolve_as_gdb_and_count_exactly() {
    if !ready("gnu_ld_layouts_resolve_as_gdb_and_count_exactly") {
        return;
    }
    check_layout("pie", &[]);
    check_layout("no-pie", &["-no-pie"]);
    check_layout("norelro", &["-Wl,-z,norelro"]);
    check_layout("noseparate-code", &["-Wl,-z,noseparate-code"]);
    check_layout("static-pie", &["-static-pie"]);
    check_layout("static", &["-static"]);
    check_layout("separate-code", &["-Wl,-z,separate-code"]);
    check_layout("max-page-size-2m", &["-Wl,-z,max-page-size=0x200000"]);
    // Without debug info: names from .symtab alone.
    check_layout("no-debug-info", &["-g0"]);
    check_layout("stripped-dynsym", &["-rdynamic", "-s"]);
    check_layout("low-mappings", &["-DLOW_MAPPINGS"]);
    check_layout(
        "static-pie-low-mappings",
        &["-static-pie", "-DLOW_MAPPINGS"],
    );
}

/// clang (its own code generation, linked by GNU ld, and by lld).
#[test]
fn clang_layouts_resolve_as_gdb_and_count_exactly() {
    if !ready("clang_layouts_resolve_as_gdb_and_count_exactly") {
        return;
    }
    if !have("clang", &["--version"]) {
        skip("the clang layouts: no clang (`cargo xtask setup` installs it)");
        return;
    }
    check_layout_with("clang", "clang-pie", &[]);
    check_layout_with("clang", "clang-no-pie", &["-no-pie"]);
    if have("ld.lld", &["--version"]) {
        check_layout_with("clang", "clang-lld", &["-fuse-ld=lld"]);
    }
}

#[test]
fn gold_and_lld_layouts_resolve_as_gdb_and_count_exactly() {
    if !ready("gold_and_lld_layouts_resolve_as_gdb_and_count_exactly") {
        return;
    }
    for linker in ["gold", "lld"] {
        if have("gcc", &[&format!("-fuse-ld={linker}"), "-Wl,--version"]) {
            check_layout(linker, &[&format!("-fuse-ld={linker}")]);
        } else {
            skip(&format!(
                "the {linker} layout: gcc -fuse-ld={linker} does not work here \
                 (`apt-get install {}`)",
                if linker == "gold" { "binutils" } else { "lld" }
            ));
        }
    }
}

/// A shared library's variable and function, by name, by `BINARY:SYMBOL` and
/// by `BINARY:0xADDRESS` (the link address `nm` prints).
#[test]
fn shared_library_symbols_and_file_addresses() {
    if !ready("shared_library_symbols_and_file_addresses") {
        return;
    }
    let dir = TempDir::new("corpus-shared");
    gcc(&dir, LIBRARY, "libcorpus.so", &["-shared", "-fPIC"]);
    gcc(
        &dir,
        PROGRAM,
        "prog",
        &[
            "-DWITH_LIB",
            &format!("-L{}", dir.0.display()),
            "-Wl,-rpath,$ORIGIN",
            "-lcorpus",
        ],
    );
    let prog = dir.path("prog");
    let want = gdb_addresses(&prog, &["lib_counter", "lib_bump"]);
    // lib_copied is written once by the program and once by the library
    // per call: both writes go to the one copy gdb names.
    let copied = gdb_addresses(&prog, &["lib_copied"]);
    let (addrs, hits) = trace(&dir, &prog, &[&N.to_string()], &["lib_copied"]);
    assert_eq!((addrs, hits), (copied, vec![2 * N]), "lib_copied (PIE)");
    let nopie = dir.path("prog-no-pie");
    gcc(
        &dir,
        PROGRAM,
        "prog-no-pie",
        &[
            "-no-pie",
            "-DWITH_LIB",
            &format!("-L{}", dir.0.display()),
            "-Wl,-rpath,$ORIGIN",
            "-lcorpus",
        ],
    );
    let relocs = sh(Command::new("readelf").args(["-rW"]).arg(&nopie));
    assert!(
        stdout(&relocs).contains("R_X86_64_COPY") && stdout(&relocs).contains("lib_copied"),
        "a -no-pie program holds lib_copied by copy relocation: {}",
        stdout(&relocs)
    );
    let copied = gdb_addresses(&nopie, &["lib_copied"]);
    let (addrs, hits) = trace(&dir, &nopie, &[&N.to_string()], &["lib_copied"]);
    assert_eq!(
        (addrs, hits),
        (copied, vec![2 * N]),
        "lib_copied (copy-relocated)"
    );
    let nm = sh(Command::new("nm").arg(dir.path("libcorpus.so")));
    let link = stdout(&nm)
        .lines()
        .find_map(|l| l.strip_suffix(" B lib_counter"))
        .and_then(|a| u64::from_str_radix(a, 16).ok())
        .unwrap_or_else(|| panic!("nm names no lib_counter: {}", stdout(&nm)));
    let n = N.to_string();
    let (addrs, hits) = trace(&dir, &prog, &[&n], &["lib_counter", "lib_bump"]);
    assert_eq!((addrs, hits), (want.clone(), vec![N, N]), "by name");
    let (addrs, hits) = trace(&dir, &prog, &[&n], &["libcorpus.so:lib_counter"]);
    assert_eq!((addrs, hits), (vec![want[0]], vec![N]), "BINARY:SYMBOL");
    let by_file = format!("libcorpus.so:{link:#x}");
    let (addrs, hits) = trace(&dir, &prog, &[&n], &[&by_file]);
    assert_eq!((addrs, hits), (vec![want[0]], vec![N]), "{by_file}");
    // An address outside the file is refused, never armed as absolute.
    let o = sh(Command::new(hwbp_trace())
        .args(["--no-tui", "-q", "libcorpus.so:0x7fff0000", "--"])
        .arg(&prog));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("0x7fff0000 is outside every loadable segment of"),
        "{}",
        stderr(&o)
    );
}

/// A system program not built here: `optind`, which /usr/bin/rev holds by
/// copy relocation and getopt in libc writes. Its address must be gdb's.
#[test]
fn a_system_programs_variable_is_where_gdb_says() {
    if !ready("a_system_programs_variable_is_where_gdb_says") {
        return;
    }
    let rev = "/usr/bin/rev";
    if !Path::new(rev).exists() {
        skip("optind of /usr/bin/rev: no /usr/bin/rev (util-linux)");
        return;
    }
    let dir = TempDir::new("corpus-rev");
    let input = dir.path("in.txt");
    fs::write(&input, "abc\n").unwrap_or_else(|e| panic!("{input}: {e}"));
    let want = gdb_addresses(rev, &["optind"]);
    let (addrs, hits) = trace(&dir, rev, &[&input], &["optind"]);
    assert_eq!(addrs, want, "optind against gdb");
    // The count is not asserted: no independent oracle gives it for writes
    // after the entry point only (`perf stat -e mem:ADDR/4:w` counts from
    // the exec, and ld.so's copy relocation writes before the entry).
    assert_eq!(hits.len(), 1);
}

/// C++ names as people write them, from g++ and clang++ (linked by GNU ld
/// and by lld): namespaces, overloads, a member function, a static member,
/// templates. Each loop iteration calls and writes known counts.
const CXX_PROGRAM: &str = r#"
#include <cstdlib>
#include <unistd.h>
namespace acc { namespace ns {
volatile long total;
__attribute__((noinline)) void bump(int i) { total += i; }
__attribute__((noinline)) void bump(double d) { total += static_cast<long>(d); }
} }
namespace app {
struct Widget {
    volatile int pokes = 0;
    __attribute__((noinline)) void poke(int k);
    static volatile int made;
};
void Widget::poke(int k) { pokes += k; }
volatile int Widget::made;
}
template <typename T> __attribute__((noinline)) T twice(T x) { return x * 2; }
struct V {
    long x;
    __attribute__((noinline)) V operator+(const V &o) const { return V{x + o.x}; }
};
volatile long sink;
int main(int argc, char **argv) {
    const char *delay = getenv("HWBP_FX_START_DELAY_MS");
    if (delay) usleep(atoi(delay) * 1000);
    int n = argc > 1 ? atoi(argv[1]) : 0;
    app::Widget w;
    for (int i = 0; i < n; i++) {
        acc::ns::bump(i);
        if (i % 2 == 0) acc::ns::bump(0.5);
        w.poke(1);
        app::Widget::made = app::Widget::made + 1;
        sink = twice<int>(i);
        if (i % 4 == 0) sink = twice<long>(i);
        sink = (V{i} + V{1}).x;
    }
    return 0;
}
"#;

fn check_cxx(compiler: &str, layout: &str, flags: &[&str]) {
    let dir = TempDir::new(&format!("corpus-{layout}"));
    compile(compiler, &dir, CXX_PROGRAM, "prog", flags);
    let prog = dir.path("prog");
    let n = N.to_string();
    // (target as the user writes it, gdb's linkage name, hits per run of N)
    let runs: [&[(&str, &str, u64)]; 3] = [
        &[
            ("acc::ns::bump(int)", "acc::ns::bump(int)", N),
            ("acc::ns::total", "acc::ns::total", N + N / 2),
            ("twice<int>", "twice<int>(int)", N),
        ],
        &[
            ("app::Widget::poke(int)", "app::Widget::poke(int)", N),
            ("app::Widget::made", "app::Widget::made", N),
            ("acc::ns::bump(double)", "acc::ns::bump(double)", N / 2),
        ],
        &[("V::operator+", "V::operator+(V const&) const", N)],
    ];
    for run in runs {
        let targets: Vec<&str> = run.iter().map(|t| t.0).collect();
        let gdb_names: Vec<&str> = run.iter().map(|t| t.1).collect();
        let want = gdb_addresses(&prog, &gdb_names);
        let (addrs, hits) = trace(&dir, &prog, &[&n], &targets);
        let shown = |v: &[u64]| v.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>();
        assert_eq!(
            shown(&addrs),
            shown(&want),
            "{layout}: {targets:?} against gdb"
        );
        let counts: Vec<u64> = run.iter().map(|t| t.2).collect();
        assert_eq!(hits, counts, "{layout}: hits of {targets:?}");
    }
    // A name without parameters matches every overload: refused, with each
    // signature listed, and nothing armed.
    let o = sh(Command::new(hwbp_trace())
        .args(["--no-tui", "-q", "acc::ns::bump", "--"])
        .arg(&prog)
        .arg("1"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{layout}: {err}");
    for needle in [
        "ambiguous symbol `acc::ns::bump`: 2 candidates",
        "acc::ns::bump(int) [",
        "acc::ns::bump(double) [",
        "name one by its full name (e.g. `acc::ns::bump(int)`)",
    ] {
        assert!(err.contains(needle), "{layout}: `{needle}` in {err}");
    }
}

#[test]
fn cxx_names_resolve_as_gdb_and_count_exactly() {
    if !ready("cxx_names_resolve_as_gdb_and_count_exactly") {
        return;
    }
    let mut built = 0;
    for compiler in ["g++", "clang++"] {
        if !have(compiler, &["--version"]) {
            skip(&format!(
                "C++ built by {compiler}: not installed (`cargo xtask setup`)"
            ));
            continue;
        }
        check_cxx(compiler, &format!("{compiler}-gnu-ld"), &[]);
        if have("ld.lld", &["--version"]) {
            check_cxx(compiler, &format!("{compiler}-lld"), &["-fuse-ld=lld"]);
        }
        built += 1;
    }
    assert!(
        built > 0,
        "no C++ compiler: `cargo xtask setup` installs g++ and clang"
    );
}

/// A Rust program linked by rustc's default linker on x86_64 Linux
/// (rust-lld): a `#[no_mangle]` static and a function by its Rust path.
#[test]
fn rust_program_linked_by_rust_lld_resolves_as_gdb_and_counts_exactly() {
    if !ready("rust_program_linked_by_rust_lld_resolves_as_gdb_and_counts_exactly") {
        return;
    }
    let dir = TempDir::new("corpus-rust");
    let src = dir.path("prog.rs");
    fs::write(
        &src,
        r#"
use std::hint::black_box;
#[unsafe(no_mangle)]
static mut G_COUNT: u64 = 0;
#[inline(never)]
fn bump(i: u64) {
    // SAFETY: one thread.
    unsafe {
        let p = &raw mut G_COUNT;
        std::ptr::write_volatile(p, std::ptr::read_volatile(p) + i);
    }
}
fn main() {
    if let Some(ms) = std::env::var("HWBP_FX_START_DELAY_MS").ok().and_then(|d| d.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    for i in 0..n {
        bump(black_box(i));
    }
}
"#,
    )
    .unwrap_or_else(|e| panic!("{src}: {e}"));
    let o = sh(Command::new("rustc")
        .args([
            "-C",
            "opt-level=1",
            "-g",
            "-C",
            "force-frame-pointers=yes",
            "-o",
        ])
        .arg(dir.path("prog"))
        .arg(&src));
    assert!(o.status.success(), "rustc: {}", stderr(&o));
    let prog = dir.path("prog");
    let want = gdb_addresses(&prog, &["G_COUNT", "prog::bump"]);
    let (addrs, hits) = trace(&dir, &prog, &[&N.to_string()], &["G_COUNT", "prog::bump"]);
    assert_eq!(addrs, want, "against gdb");
    assert_eq!(hits, [N, N]);
}

/// `realpath` has two versions in glibc: the default (@@GLIBC_2.3), which
/// programs linked today call, and an old one (@GLIBC_2.2.5). The plain
/// name is the default, as the linker binds it; `@VERSION` selects one.
/// (gdb's `&realpath` names the old one, so the oracle here is the
/// program's own count.)
#[test]
fn versioned_names_mean_the_default_version() {
    if !ready("versioned_names_mean_the_default_version") {
        return;
    }
    let dir = TempDir::new("corpus-versions");
    gcc(
        &dir,
        r#"
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    const char *delay = getenv("HWBP_FX_START_DELAY_MS");
    if (delay) usleep(atoi(delay) * 1000);
    int n = argc > 1 ? atoi(argv[1]) : 0;
    for (int i = 0; i < n; i++) free(realpath("/", NULL));
    return 0;
}
"#,
        "prog",
        &[],
    );
    let prog = dir.path("prog");
    let targets = [
        "realpath",
        "realpath@GLIBC_2.2.5",
        "libc.so.6:realpath@@GLIBC_2.3",
    ];
    let o = sh(Command::new(hwbp_trace())
        .args(["--no-tui", "-q"])
        .args(targets)
        .arg("--")
        .arg(&prog)
        .arg("1"));
    assert_eq!(
        o.status.code(),
        Some(2),
        "`realpath` and `realpath@@GLIBC_2.3` are one address: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("both arm"), "{}", stderr(&o));
    let (addrs, hits) = trace(&dir, &prog, &[&N.to_string()], &targets[..2]);
    assert_ne!(addrs[0], addrs[1]);
    assert_eq!(hits, [N, 0], "the default version is the one called");
    let (by_version, hits) = trace(&dir, &prog, &[&N.to_string()], &targets[2..]);
    assert_eq!((by_version[0], hits[0]), (addrs[0], N));
}

/// A `__thread` variable has one copy per thread: refused by name with
/// what to do instead, never "unknown symbol" and never armed; `list`
/// shows it as `tls`.
#[test]
fn thread_local_variables_are_refused_by_name() {
    if !ready("thread_local_variables_are_refused_by_name") {
        return;
    }
    let dir = TempDir::new("corpus-tls");
    gcc(
        &dir,
        r#"
__thread volatile int tls_counter;
int main(int argc, char **argv) { for (int i = 0; i < argc; i++) tls_counter++; return 0; }
"#,
        "prog",
        &[],
    );
    let prog = dir.path("prog");
    let o = sh(Command::new(hwbp_trace())
        .args(["--no-tui", "-q", "tls_counter:w", "--"])
        .arg(&prog));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`tls_counter` in") && err.contains("is a thread-local variable"),
        "{err}"
    );
    assert!(
        err.contains("p &tls_counter"),
        "says what to do instead: {err}"
    );
    let o = sh(Command::new(hwbp_trace())
        .args(["list", "--binary"])
        .arg(&prog)
        .arg("tls_counter"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).split_whitespace().nth(1) == Some("tls"),
        "{}",
        stdout(&o)
    );
}

/// Programs nobody wrote for this project, with libc's malloc and free as
/// targets: hwbp-trace's count equals `perf stat -e mem:ADDR:x` at the same
/// address (ASLR off, identical stdio: Python allocates differently when
/// its stderr is a pipe). perf counts from the exec, so this also proves
/// that `-- CMD` arms before the libraries' constructors run. Then again
/// with `--records none`: the kernel's aggregates alone count the same.
#[test]
fn system_programs_count_as_perf_stat() {
    if !ready("system_programs_count_as_perf_stat") {
        return;
    }
    if !have("perf", &["--version"]) {
        skip(
            "system programs against perf stat: no perf (`cargo xtask setup` installs linux-perf)",
        );
        return;
    }
    let dir = TempDir::new("corpus-system");
    let cases: &[(&[&str], &str)] = &[
        (&["ls", "/"], "malloc"),
        (&["ls", "/"], "free"),
        (&["git", "--version"], "malloc"),
        (&["/usr/bin/python3", "-c", "pass"], "malloc"),
    ];
    let mut done = 0;
    for (cmd, sym) in cases {
        if !have(cmd[0], &["--version"]) {
            skip(&format!("{sym} under {cmd:?}: no {}", cmd[0]));
            continue;
        }
        let target = format!("libc.so.6:{sym}");
        let out_file = dir.path("t.jsonl");
        // hwbp-trace with `options` on `cmd`, ASLR off, stdio closed.
        let traced = |options: &[&str]| {
            let o = sh(Command::new("setarch")
                .arg("-R")
                .arg(hwbp_trace())
                .args(["--no-tui", "-q", "-o", &out_file])
                .args(options)
                .args([target.as_str(), "--"])
                .args(*cmd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()));
            assert!(
                o.status.success(),
                "hwbp-trace {options:?} {target} -- {cmd:?}: {:?}",
                o.status
            );
        };
        traced(&[]);
        let (header, _, summary) = read_trace(&out_file);
        let addr = format!("{:#x}", target_addrs(&header)[0]);
        let hits = target_hits(&summary).first().copied();
        assert_eq!(summary["lost"], 0, "{cmd:?}");
        let counted = perf_stat_count(&dir, &format!("mem:{addr}:x"), cmd);
        assert_eq!(
            hits,
            Some(counted),
            "{sym} at {addr} under {cmd:?}: hwbp-trace vs perf stat"
        );
        // No records at all: the kernel's aggregates count the same.
        traced(&["--records", "none"]);
        let trace = read_full_trace(&out_file);
        let aggregated: u64 = trace
            .aggregates
            .iter()
            .map(|a| a["count"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(
            (
                trace.hits.len(),
                trace.summary["targets"][0]["counted"].as_u64(),
                aggregated
            ),
            (0, Some(counted), counted),
            "{sym} under {cmd:?} with --records none: no hit line, counted and aggregated as perf stat"
        );
        done += 1;
    }
    assert!(done > 0, "no system program to trace");
}

//! `cargo xtask vm`: Debian's kernel in QEMU, for the kernel targets this
//! host's kernel cannot take (docs/platform.md: no CONFIG_KPROBES, no
//! CONFIG_KALLSYMS_ALL here; the Debian kernel has both, and TCG emulates the
//! debug registers exactly).
//!
//! The guest is an initramfs built here: busybox, hwbp-trace, the fixtures,
//! bpftool, the few kernel modules the tests load (kernel.rs), the scripts
//! of tests/vm and the shared libraries they need. /init (init.sh)
//! runs one command, sends back the files it wrote under /out on the second
//! serial port and prints `init: exit=N` on the console.

use std::{
    collections::VecDeque,
    fs,
    io::{IsTerminal as _, Read as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;

mod busybox;
mod in_band;
mod kernel;

pub use self::kernel::{Kernel, fetch_kernel, fetch_kernel_for};
use self::{in_band::InBand, kernel::vm_dir};
use crate::{
    arch::Arch,
    build,
    cpio::{Archive, Entry},
    exec::{display, output},
    setup, workspace_root,
};

/// Debian's bpftool (package bpftool), which the x86 guest gets.
const BPFTOOL: &str = "/usr/sbin/bpftool";

#[derive(Args)]
pub struct Options {
    /// The guest's architecture: x86-64, or arm64 (Debian's arm64 kernel
    /// under qemu-system-aarch64 -M virt -cpu max, binaries cross-built).
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    pub arch: Arch,
    /// Use KVM instead of TCG if /dev/kvm works, else warn and use TCG
    /// (nested KVM hangs on some hosts: TCG is the default).
    #[arg(long)]
    pub kvm: bool,
    /// Debian kernel to boot: a version such as 6.1.0-56, a series such as
    /// 6.12 (its newest), or a package name; default: the one
    /// linux-image-amd64 depends on.
    #[arg(long, value_name = "VERSION")]
    pub kernel: Option<String>,
    /// Kill QEMU after this many seconds (default 600; none when interactive).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Seconds the guest may take to reach /init; a boot that shows no sign
    /// of life by then is killed and booted once more (default 180).
    #[arg(long, value_name = "SECONDS", default_value_t = BOOT_TIMEOUT.as_secs())]
    pub boot_timeout: u64,
    /// Give each vCPU a host thread of its own (QEMU's multi-threaded TCG)
    /// instead of one thread for both: truly parallel vCPUs, but a guest
    /// that flips a static key can crash (see docs/vm.md).
    #[arg(long)]
    pub mttcg: bool,
    /// vCPUs of the guest (more than the host's are emulated, slower: a
    /// functional check of many CPUs, as the kernel test `eight` is).
    #[arg(long, default_value_t = CPUS, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: u32,
    /// Skip set-up and build: boot what target/release holds (the harness
    /// checks of `cargo xtask test` use this, after its own build).
    #[arg(long)]
    pub no_build: bool,
    /// The command to run in the guest (default: a shell, when interactive).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(options: Options) -> Result<i32> {
    let Options {
        arch,
        kvm,
        kernel,
        timeout,
        boot_timeout,
        mttcg,
        cpus,
        no_build,
        command,
    } = options;
    if !no_build {
        setup::run()?;
        setup::cross(arch)?;
        build::run_for(arch)?;
    }
    let kernel = fetch_kernel_for(arch, kernel.as_deref())?;
    let interactive = std::io::stdin().is_terminal();
    let command = if command.is_empty() {
        if !interactive {
            bail!(
                "no command given and stdin is not a terminal: use `cargo xtask vm -- CMD ARGS...`"
            );
        }
        vec!["sh".to_owned()]
    } else {
        command
    };
    let out_dir = workspace_root().join("target/vm-out");
    let outcome = boot(&Boot {
        kernel: &kernel,
        command: &command,
        kvm,
        timeout: timeout
            .map(Duration::from_secs)
            .or((!interactive).then_some(DEFAULT_TIMEOUT)),
        boot_timeout: Duration::from_secs(boot_timeout),
        mttcg,
        cpus,
        interactive,
        out_dir: &out_dir,
    })?;
    if !outcome.files.is_empty() {
        eprintln!(
            "vm: {} file(s) from /out in {}",
            outcome.files.len(),
            out_dir.display()
        );
    }
    Ok(outcome.exit)
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A guest's vCPUs: two, as the hosts have, unless a test asks for more.
pub const CPUS: u32 = 2;

/// One guest run.
pub struct Boot<'a> {
    pub kernel: &'a Kernel,
    /// argv of the command /init runs.
    pub command: &'a [String],
    pub kvm: bool,
    pub timeout: Option<Duration>,
    /// How long the guest may take to reach /init (see [`boot`]).
    pub boot_timeout: Duration,
    /// Under TCG, a host thread per vCPU rather than one for all (see
    /// [`boot_once`]): only for guests that flip no static key.
    pub mttcg: bool,
    /// vCPUs ([`CPUS`] but for the kernel test of many CPUs at once).
    pub cpus: u32,
    /// Pass the host terminal through (stdin is a terminal).
    pub interactive: bool,
    /// Where the guest's /out lands (emptied first).
    pub out_dir: &'a Path,
}

pub struct Outcome {
    /// The command's exit status in the guest.
    pub exit: i32,
    /// Files received from the guest's /out.
    pub files: Vec<PathBuf>,
}

/// Quotes one word for sh.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Whether QEMU can use KVM: `device` (/dev/kvm) opens read-write and
/// answers KVM_GET_API_VERSION with 12, the one stable KVM API (see
/// Documentation/virt/kvm/api.rst). Otherwise why not.
fn kvm_usable(device: &Path) -> Result<(), String> {
    /// _IO(KVMIO, 0x00), KVMIO = 0xAE (include/uapi/linux/kvm.h).
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    const KVM_API_VERSION: libc::c_int = 12;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| format!("cannot open {} read-write ({e})", device.display()))?;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns a
    // number; the descriptor is open for the whole call (`file` owns it).
    let version = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    match version {
        KVM_API_VERSION => Ok(()),
        -1 => Err(format!(
            "{} does not answer KVM_GET_API_VERSION ({})",
            device.display(),
            std::io::Error::last_os_error()
        )),
        other => Err(format!(
            "{} speaks KVM API version {other}, not {KVM_API_VERSION}",
            device.display()
        )),
    }
}

/// The host terminal's size (rows, columns), if stdin is a terminal.
fn terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize through the pointer, which
    // points to a live, properly aligned winsize for the whole call.
    let rc = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// The dynamic loader and shared libraries `ldd` names for `binary` (none for
/// a static binary).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .context("running ldd (package libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    let mut libraries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            bail!("{}: ldd cannot find {line}", binary.display());
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"; linux-vdso has no path.
        let path = line.split_once("=> ").map_or(line, |(_, path)| path);
        if let Some(path) = path
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

fn add_host_file(archive: &mut Archive, host: &Path, guest: &str, mode: u32) -> Result<()> {
    let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
    archive.file(guest, data, mode);
    Ok(())
}

/// The guest's whole file system, for `kernel`'s architecture and modules.
fn build_initramfs(kernel: &Kernel, command: &[String], interactive: bool) -> Result<Archive> {
    let arch = kernel.arch;
    let mut archive = Archive::default();
    for dir in [
        "proc", "sys", "dev", "tmp", "run", "out", "root", "etc/hwbp",
    ] {
        archive.dir(dir);
    }
    // The kernel opens /dev/console for /init before anything is mounted.
    archive.add(
        "dev/console",
        Entry::CharDevice {
            major: 5,
            minor: 1,
            mode: 0o600,
        },
    );
    archive.file("init", include_bytes!("init.sh").to_vec(), 0o755);

    let busybox = busybox::busybox(arch)?;
    if !shared_libraries(&busybox)?.is_empty() {
        bail!("/bin/busybox is not static: install busybox-static (`cargo xtask setup` does)");
    }
    add_host_file(&mut archive, &busybox, "bin/busybox", 0o755)?;
    // The applets' names from this host's busybox: a foreign one cannot run
    // here, and both come from the same Debian source package (bookworm's).
    let applets = output(Command::new("/bin/busybox").arg("--list-full"))?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet != "bin/busybox" {
            archive.symlink(applet, "/bin/busybox");
        }
    }

    for module in &kernel.modules {
        if let Some(name) = module.file_name() {
            let guest = format!("lib/modules/{}", name.to_string_lossy());
            add_host_file(&mut archive, module, &guest, 0o644)?;
        }
    }

    let mut binaries = vec![arch.release_dir().join("hwbp-trace")];
    binaries.extend(build::fixtures_for(arch)?);
    // bpftool (libbpf's reading of BTF) is the kernel tests' oracle for a
    // member's offset: on x86, whose guest runs this host's binaries.
    if arch == Arch::X86_64 {
        binaries.push(PathBuf::from(BPFTOOL));
    }
    for binary in &binaries {
        let name = binary
            .file_name()
            .ok_or_else(|| anyhow!("{} has no file name", binary.display()))?
            .to_string_lossy();
        add_host_file(&mut archive, binary, &format!("usr/bin/{name}"), 0o755).with_context(
            || {
                if binary == Path::new(BPFTOOL) {
                    "install bpftool (`cargo xtask setup` does)".to_owned()
                } else {
                    format!("run `cargo xtask build --arch {arch}` first")
                }
            },
        )?;
        // Cross-built binaries are static (.cargo/config.toml): this host's
        // ldd cannot read them anyway.
        if arch.cross_target().is_some() {
            continue;
        }
        for library in shared_libraries(binary)? {
            let guest = library.to_string_lossy().into_owned();
            if !archive.contains(&guest) {
                add_host_file(&mut archive, &library, &guest, 0o755)?;
            }
        }
    }

    let scripts = workspace_root().join("tests/vm");
    if scripts.is_dir() {
        for entry in
            fs::read_dir(&scripts).with_context(|| format!("reading {}", scripts.display()))?
        {
            let path = entry
                .with_context(|| format!("reading {}", scripts.display()))?
                .path();
            if let Some(name) = path.file_name().filter(|_| path.is_file()) {
                let guest = format!("vm/{}", name.to_string_lossy());
                add_host_file(&mut archive, &path, &guest, 0o755)?;
            }
        }
    }

    // Where init.sh sends /out: the second serial port, or on arm64 (whose
    // virt machine has one UART, and whose Debian 6.1 kernel has virtio
    // consoles only as modules) the console itself, which the host's
    // reader takes the files from (see [`read_console`]).
    let transfer = match arch {
        Arch::X86_64 => "/dev/ttyS1\n",
        Arch::Arm64 => "/dev/console\n",
    };
    archive.file("etc/hwbp/transfer", transfer.as_bytes().to_vec(), 0o644);

    let mut script = String::from("# written by cargo xtask vm\n");
    if interactive {
        archive.file("etc/hwbp/interactive", Vec::new(), 0o644);
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".to_owned());
        script.push_str(&format!("export TERM={}\n", sh_quote(&term)));
        if let Some((rows, cols)) = terminal_size() {
            script.push_str(&format!("stty rows {rows} cols {cols}\n"));
        }
    } else {
        script.push_str("export TERM=dumb\n");
    }
    let words: Vec<String> = command.iter().map(|word| sh_quote(word)).collect();
    script.push_str(&words.join(" "));
    script.push('\n');
    archive.file("etc/hwbp/command", script.into_bytes(), 0o755);
    Ok(archive)
}

/// Uncompressed: the kernel unpacks a plain newc archive as well as a
/// gzip'd one (init/initramfs.c), and compressing ~60 MB (hwbp-trace keeps
/// its debug info) in the unoptimized xtask, then inflating it in the
/// emulated guest, costs seconds per boot (docs/vm.md).
fn write_initramfs(archive: &Archive, path: &Path) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    archive
        .write(&mut writer)
        .and_then(|()| writer.flush())
        .with_context(|| format!("writing {}", path.display()))
}

/// What the console reader saw.
enum Console {
    Line(String),
    Closed,
}

/// init.sh's first line ("init: RELEASE up, running the command"): the
/// kernel booted. It shares its console line with the firmware's last
/// output, terminal escapes included (the kernel boots `quiet`), so it is
/// looked for anywhere in the line.
fn shows_init(line: &str) -> bool {
    line.contains("init: ") && line.contains(" up, running the command")
}

/// Lines that mean the guest kernel is in trouble: stop at once.
fn is_fatal(line: &str) -> bool {
    line.contains("Kernel panic")
        || line.contains("Initramfs unpacking failed")
        || line.contains("soft lockup")
        || line.contains("hard LOCKUP")
        || line.starts_with("BUG: ")
        || line.contains("] BUG: ")
}

fn stop(child: &mut Child) {
    // SIGTERM first: QEMU then restores the host terminal it set to raw.
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill only sends a signal; `pid` is our own child, not yet
        // reaped (we hold the Child), so it cannot name another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn last_lines(lines: &VecDeque<String>) -> String {
    lines
        .iter()
        .map(|line| format!("    | {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A run's scratch directory, removed when the run ends, however it ends.
struct RunDir(PathBuf);

impl RunDir {
    fn create(path: PathBuf) -> Result<Self> {
        if path.exists() {
            fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// How long a guest may take to reach /init: under TCG it takes about 10 s.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// A boot that never reached /init (see [`boot`]).
#[derive(Debug)]
struct NoSignOfLife(String);

impl std::fmt::Display for NoSignOfLife {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoSignOfLife {}

/// Builds the initramfs, boots, streams the console, collects /out. A boot
/// that does not reach /init (within `boot_timeout`, or whose kernel dies
/// first) is killed and booted once more: a guest under TCG can stay silent
/// after the firmware, or trap on its own code patching, and its next boot
/// run normally (docs/vm.md).
pub fn boot(boot: &Boot<'_>) -> Result<Outcome> {
    match boot_once(boot) {
        Err(e) if e.downcast_ref::<NoSignOfLife>().is_some() => {
            eprintln!("vm: warning: {e:#}\nvm: booting once more");
            boot_once(boot).map_err(|again| again.context("the second boot failed too"))
        }
        outcome => outcome,
    }
}

fn boot_once(boot: &Boot<'_>) -> Result<Outcome> {
    let Boot {
        kernel,
        command,
        kvm,
        timeout,
        boot_timeout,
        mttcg,
        cpus,
        interactive,
        out_dir,
    } = boot;
    // One directory per run: several VMs may boot at once from one work tree.
    let run_dir = RunDir::create(vm_dir().join(format!("run-{}", std::process::id())))?;
    let run_dir = &run_dir.0;
    let initrd = run_dir.join("initramfs.cpio");
    let start = Instant::now();
    let kvm = *kvm
        && match kvm_usable(Path::new("/dev/kvm")) {
            Ok(()) => true,
            Err(reason) => {
                eprintln!("vm: warning: --kvm: {reason}; booting with TCG instead");
                false
            }
        };
    let archive = build_initramfs(kernel, command, *interactive)?;
    write_initramfs(&archive, &initrd)?;
    let transfer = run_dir.join("out.b64");
    // A long word (a script) is shown by its size alone.
    let shown: Vec<String> = command
        .iter()
        .map(|word| match word.lines().count() {
            0 | 1 => word.clone(),
            n => format!("<{n} lines>"),
        })
        .collect();
    println!(
        "vm: booting {} ({}) with `{}`",
        kernel.package,
        match (kvm, mttcg) {
            (true, _) => "KVM",
            (false, true) => "TCG, a thread per vCPU",
            (false, false) => "TCG",
        },
        shown.join(" ")
    );
    let mut qemu = qemu_command(
        kernel,
        &initrd,
        &transfer,
        kvm,
        (*mttcg, *cpus),
        *interactive,
    );
    let mut child = qemu.spawn().with_context(|| {
        format!(
            "starting `{}` (install {})",
            display(&qemu),
            kernel.arch.qemu().1
        )
    })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("QEMU has no stdout"))?;
    let in_band = (kernel.arch == Arch::Arm64).then(|| transfer.clone());
    let receiver = read_console(stdout, in_band);
    let Watched {
        exit,
        fatal,
        alive,
        recent,
    } = watch_console(&mut child, &receiver, start, *timeout, *boot_timeout)?;
    // QEMU closed its stdout: it is exiting (poweroff -f, or -no-reboot after
    // a panic). Reap it, but do not hang on a wedged process.
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().ok().flatten().is_none() {
        stop(&mut child);
    }
    if let Some((line, _)) = fatal {
        return Err(kernel_failed(&line, alive, &recent));
    }
    let exit = exit.ok_or_else(|| {
        anyhow!(
            "QEMU stopped before the guest reported an exit status (quit with Ctrl-A x?); \
             its last lines:\n{}",
            last_lines(&recent)
        )
    })?;
    let files = receive_files(&transfer, out_dir)?;
    println!(
        "vm: guest command exited {exit} after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(Outcome { exit, files })
}

/// QEMU's command line: the kernel and initramfs, two vCPUs, the console
/// on stdio, serial 1 into `transfer` (x86-64; arm64 sends /out on the
/// console, see [`build_initramfs`]).
///
/// arm64 boots on QEMU's `virt` board with `-cpu max` (every feature TCG
/// emulates, the debug architecture's 16 breakpoints and 16 watchpoints
/// included), with QEMU's own pointer-authentication algorithm
/// (pauth-impdef), which TCG runs many times faster than the architected
/// one. There is no KVM for it on an x86 host.
fn qemu_command(
    kernel: &Kernel,
    initrd: &Path,
    transfer: &Path,
    kvm: bool,
    (mttcg, cpus): (bool, u32),
    interactive: bool,
) -> Command {
    let arch = kernel.arch;
    let mut qemu = Command::new(arch.qemu().0);
    if arch == Arch::Arm64 {
        if kvm {
            eprintln!("vm: warning: --kvm: no KVM for an arm64 guest on this host; using TCG");
        }
        let accel = if mttcg {
            "tcg,thread=multi"
        } else {
            "tcg,thread=single"
        };
        qemu.args(["-M", "virt", "-accel", accel, "-cpu", "max,pauth-impdef=on"]);
    } else if kvm {
        qemu.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        // By default one host thread runs both vCPUs in turn. With a
        // thread per vCPU (QEMU 7.2's default, `--mttcg`) the guest's own
        // live patching breaks: the kernel flips a static key with int3
        // first and the new bytes after (text_poke_bp), and a vCPU still
        // executes the int3 after the kernel stopped expecting one (a stale
        // translation, as we read it): `Oops: int3` at a jump label in
        // __schedule, when a per-task perf event opens and closes
        // (perf_sched_events) while both vCPUs schedule; one thread runs
        // that clean. The runs that showed it: docs/vm.md, "Why one TCG
        // thread".
        let accel = if mttcg {
            "tcg,thread=multi"
        } else {
            "tcg,thread=single"
        };
        qemu.args(["-accel", accel, "-cpu", "max"]);
    }
    qemu.arg("-smp")
        .arg(cpus.to_string())
        .args(["-m", "1024", "-nodefaults", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            "console={} quiet panic=-1 oops=panic",
            arch.console()
        ))
        // The console: serial 0 on stdio, muxed with the monitor (Ctrl-A x
        // quits); signal=off passes Ctrl-C to the guest.
        .args(["-chardev", "stdio,id=console,mux=on,signal=off"])
        .args([
            "-serial",
            "chardev:console",
            "-mon",
            "chardev=console,mode=readline",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if arch == Arch::X86_64 {
        // Serial 1 carries /out back (see init.sh).
        qemu.arg("-serial")
            .arg(format!("file:{}", transfer.display()));
    }
    if !interactive {
        qemu.stdin(Stdio::null());
    }
    qemu
}

/// Passes QEMU's stdout to ours byte for byte, and sends its lines. With
/// `in_band` (arm64), the lines of init.sh's transfer of /out (from
/// `hwbp-out-file` to `hwbp-out-done`) go to that file instead of the
/// terminal, except kernel messages (`[`, which base64 never has).
fn read_console(
    mut stdout: std::process::ChildStdout,
    in_band: Option<PathBuf>,
) -> mpsc::Receiver<Console> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        let mut line = Vec::new();
        let mut host = std::io::stdout();
        let mut filter = in_band.map(InBand::new);
        loop {
            match stdout.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for &byte in &buffer[..n] {
                        // Byte for byte: the guest may be drawing a dashboard.
                        let shown = match filter.as_mut() {
                            Some(filter) => filter.byte(byte),
                            None => vec![byte],
                        };
                        let _ = host.write_all(&shown);
                        if byte == b'\n' {
                            let text = String::from_utf8_lossy(&line)
                                .trim_end_matches('\r')
                                .to_owned();
                            line.clear();
                            if sender.send(Console::Line(text)).is_err() {
                                return;
                            }
                        } else {
                            line.push(byte);
                        }
                    }
                    let _ = host.flush();
                }
            }
        }
        let _ = sender.send(Console::Closed);
    });

    receiver
}

/// What the console showed: the guest command's exit status, the first
/// line that showed the guest kernel in trouble, and the last lines.
struct Watched {
    exit: Option<i32>,
    fatal: Option<(String, Instant)>,
    /// init.sh had spoken (see [`shows_init`]).
    alive: bool,
    recent: VecDeque<String>,
}

/// The guest kernel showed trouble (`line`). Before init.sh spoke nothing of
/// ours had run, so that is a boot that never reached /init, which
/// [`boot`] boots once more: under `--mttcg` a kernel patching its own code
/// at boot (static keys, with int3) can trap on it and die, the next boot
/// running normally (docs/vm.md).
fn kernel_failed(line: &str, alive: bool, recent: &VecDeque<String>) -> anyhow::Error {
    let what = format!(
        "the guest kernel failed ({line}); its last lines:\n{}",
        last_lines(recent)
    );
    if alive {
        anyhow!(what)
    } else {
        NoSignOfLife(format!("before /init: {what}")).into()
    }
}

/// Reads the console until QEMU closes it; kills QEMU and fails on a
/// time-out (the boot's, with [`NoSignOfLife`], or the command's) or a few
/// seconds after the guest kernel showed trouble.
fn watch_console(
    child: &mut Child,
    receiver: &mpsc::Receiver<Console>,
    start: Instant,
    timeout: Option<Duration>,
    boot_timeout: Duration,
) -> Result<Watched> {
    let mut recent: VecDeque<String> = VecDeque::new();
    let mut exit = None;
    // The first line that showed the guest kernel in trouble, and when to
    // stop reading after it (a few seconds more, for the backtrace).
    let mut fatal: Option<(String, Instant)> = None;
    let time_limit = timeout.map(|timeout| start + timeout);
    // Whether init.sh has spoken (see [`shows_init`]).
    let mut alive = false;
    let boot_limit = start + boot_timeout;
    loop {
        let deadline = fatal.as_ref().map(|(_, until)| *until).or(time_limit);
        // Until init speaks (or the kernel dies), the boot limit applies too.
        let booting = !alive && fatal.is_none();
        let deadline = if booting {
            Some(deadline.map_or(boot_limit, |d| d.min(boot_limit)))
        } else {
            deadline
        };
        let message = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() && booting && Instant::now() >= boot_limit {
                    stop(child);
                    return Err(NoSignOfLife(format!(
                        "the guest did not reach /init within {} s; its last lines:\n{}",
                        boot_timeout.as_secs(),
                        last_lines(&recent)
                    ))
                    .into());
                }
                if left.is_zero() {
                    stop(child);
                    if let Some((line, _)) = &fatal {
                        return Err(kernel_failed(line, alive, &recent));
                    }
                    bail!(
                        "the guest did not finish within {} s; its last lines:\n{}",
                        timeout.unwrap_or_default().as_secs(),
                        last_lines(&recent)
                    );
                }
                match receiver.recv_timeout(left) {
                    Ok(message) => message,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => Console::Closed,
                }
            }
            None => receiver.recv().unwrap_or(Console::Closed),
        };
        let Console::Line(line) = message else { break };
        alive |= shows_init(&line);
        if fatal.is_none() && is_fatal(&line) {
            fatal = Some((line.clone(), Instant::now() + Duration::from_secs(3)));
        }
        if let (None, Some(code)) = (exit, line.strip_prefix("init: exit=")) {
            exit = code.trim().parse::<i32>().ok();
        }
        recent.push_back(line);
        if recent.len() > 60 {
            recent.pop_front();
        }
    }
    Ok(Watched {
        exit,
        fatal,
        alive,
        recent,
    })
}

/// Decodes the files the guest sent on serial 1 (see init.sh) into `out_dir`.
fn receive_files(transfer: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    if out_dir.exists() {
        fs::remove_dir_all(out_dir).with_context(|| format!("emptying {}", out_dir.display()))?;
    }
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let text = fs::read_to_string(transfer).with_context(|| {
        format!(
            "reading {} (the guest's second serial port)",
            transfer.display()
        )
    })?;
    let mut files = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut done = false;
    for line in text.lines().map(|line| line.trim_end_matches('\r')) {
        if let Some((name, encoded)) = current.as_mut() {
            if line == "hwbp-out-end" {
                let data = base64_decode(encoded)
                    .with_context(|| format!("decoding /out/{name} from the guest"))?;
                if name.split('/').any(|part| part == ".." || part.is_empty()) {
                    bail!("the guest sent a file with a bad name: {name:?}");
                }
                let path = out_dir.join(&*name);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
                files.push(path);
                current = None;
            } else {
                encoded.push_str(line.trim());
            }
        } else if let Some(name) = line.strip_prefix("hwbp-out-file ") {
            current = Some((name.to_owned(), String::new()));
        } else if line == "hwbp-out-done" {
            done = true;
        }
    }
    if !done {
        bail!(
            "the transfer of /out from the guest is incomplete ({} file(s) received)",
            files.len()
        );
    }
    Ok(files)
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    fn value(byte: u8) -> Option<u32> {
        Some(u32::from(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !bytes.len().is_multiple_of(4) {
        bail!(
            "base64 text of length {} is not a multiple of 4",
            bytes.len()
        );
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let padding = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        let mut group = 0u32;
        for &byte in &chunk[..4 - padding] {
            group =
                (group << 6) | value(byte).ok_or_else(|| anyhow!("bad base64 byte {byte:#x}"))?;
        }
        group <<= 6 * padding as u32;
        let decoded = [(group >> 16) as u8, (group >> 8) as u8, group as u8];
        out.extend_from_slice(&decoded[..3 - padding.min(2)]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64_decode("").expect("empty"), b"");
        assert_eq!(base64_decode("YQ==").expect("1 byte"), b"a");
        assert_eq!(base64_decode("YWI=").expect("2 bytes"), b"ab");
        assert_eq!(base64_decode("YWJj\nZA==\n").expect("4 bytes"), b"abcd");
        assert!(base64_decode("YWJ").is_err());
    }

    #[test]
    fn kvm_needs_a_kvm_device() {
        let missing = kvm_usable(Path::new("/nonexistent/kvm")).expect_err("no device");
        assert!(
            missing.contains("cannot open /nonexistent/kvm read-write"),
            "{missing}"
        );
        // /dev/null opens read-write but is no KVM device.
        let null = kvm_usable(Path::new("/dev/null")).expect_err("not KVM");
        assert!(
            null.contains("does not answer KVM_GET_API_VERSION"),
            "{null}"
        );
    }

    #[test]
    fn in_band_transfer_leaves_the_screen() {
        let path = std::env::temp_dir().join(format!("hwbp-in-band-{}", std::process::id()));
        let mut filter = InBand::new(path.clone());
        let console = "hello\r\n\r\nhwbp-out-file a.txt\r\nYWJj\r\n[  1.0] a kernel line\r\n\
                       hwbp-out-end\r\nhwbp-out-done\r\ninit: exit=0\r\n";
        let shown: Vec<u8> = console.bytes().flat_map(|b| filter.byte(b)).collect();
        assert_eq!(
            String::from_utf8_lossy(&shown),
            "hello\r\n\r\n[  1.0] a kernel line\r\ninit: exit=0\r\n"
        );
        drop(filter);
        let sent = fs::read_to_string(&path).expect("the transfer file");
        let _ = fs::remove_file(&path);
        assert_eq!(
            sent,
            "hwbp-out-file a.txt\r\nYWJj\r\nhwbp-out-end\r\nhwbp-out-done\r\n"
        );
        let out = std::env::temp_dir().join(format!("hwbp-in-band-out-{}", std::process::id()));
        fs::write(&path, &sent).expect("writing the transfer");
        let files = receive_files(&path, &out).expect("decoding");
        assert_eq!(fs::read(&files[0]).expect("a.txt"), b"abc");
        let _ = fs::remove_file(&path);
        let _ = fs::remove_dir_all(&out);
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_kernel_dead_before_init_is_booted_again_and_after_it_fails() {
        let recent = VecDeque::from(["Booting from ROM...".to_owned()]);
        let line = "[    3.2] Kernel panic - not syncing: Fatal exception in interrupt";
        let before = kernel_failed(line, false, &recent);
        assert!(
            before.downcast_ref::<NoSignOfLife>().is_some(),
            "{before:#}"
        );
        let after = kernel_failed(line, true, &recent);
        assert!(after.downcast_ref::<NoSignOfLife>().is_none(), "{after:#}");
        assert!(format!("{after:#}").contains(line), "{after:#}");
    }

    #[test]
    fn fatal_lines() {
        assert!(is_fatal(
            "[    3.1] Kernel panic - not syncing: Attempted to kill init!"
        ));
        assert!(is_fatal(
            "[   22.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!"
        ));
        assert!(is_fatal(
            "[    1.0] BUG: kernel NULL pointer dereference, address: 0"
        ));
        assert!(is_fatal(
            "[    4.6] Initramfs unpacking failed: uncompression error"
        ));
        assert!(!is_fatal("init: exit=0"));
    }

    #[test]
    fn init_line_after_firmware_escapes() {
        // As the console shows it: SeaBIOS's escapes, then init.sh.
        assert!(shows_init(
            "\x1bc\x1b[?7l\x1b[2Jinit: 6.12.117+deb12-amd64 up, running the command"
        ));
        assert!(shows_init("init: 6.1.0-56-amd64 up, running the command"));
        assert!(!shows_init("Booting from ROM..."));
        assert!(!shows_init("[    1.0] Run /init as init process"));
    }
}

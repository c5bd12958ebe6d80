//! The guest's kernel: Debian's kernel image packages, which `--kernel`
//! names (an ABI version, a series or a package), fetched with apt and
//! unpacked under target/vm/kernels/: boot/ and the few modules the
//! guest loads ([`GUEST_MODULES`]), not the ~400 MB of the others.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    arch::Arch,
    exec::{display, exec, output},
    workspace_root,
};

/// A Debian kernel, unpacked.
pub struct Kernel {
    /// The package, e.g. linux-image-6.1.0-56-amd64.
    pub package: String,
    /// Its architecture: the guest's (QEMU's machine, the binaries).
    pub arch: Arch,
    pub vmlinuz: PathBuf,
    /// boot/config-*: what the kernel was built with.
    pub config: PathBuf,
    /// [`GUEST_MODULES`] for this kernel, uncompressed, in that order (none
    /// for arm64): the initramfs has them as /lib/modules/NAME.ko.
    pub modules: Vec<PathBuf>,
}

/// The modules the x86 guest can insmod, by their path under
/// lib/modules/VERSION/kernel/ without `.ko`: cdrom, which needs no other
/// module, registers /proc/sys/dev/cdrom/ when loaded and keeps those
/// settings in a variable of a struct named after it (the kernel test
/// `cdrom` traces one of its members by name, typed from the module's BTF).
/// Debian 6.12's modules are xz-compressed (`.ko.xz`): they are unpacked
/// here, as busybox's insmod reads plain ones.
const GUEST_MODULES: &[&str] = &["drivers/cdrom/cdrom"];

/// Where the uncompressed modules of an unpacked kernel are.
fn modules_dir(dir: &Path) -> PathBuf {
    dir.join("modules")
}

/// The module files of `arch`'s guest in an unpacked package directory.
fn guest_modules(arch: Arch, dir: &Path) -> Vec<PathBuf> {
    if arch != Arch::X86_64 {
        return Vec::new();
    }
    GUEST_MODULES
        .iter()
        .map(|module| modules_dir(dir).join(format!("{}.ko", module_name(module))))
        .collect()
}

/// `cdrom` for drivers/cdrom/cdrom.
fn module_name(module: &str) -> &str {
    module.rsplit('/').next().unwrap_or(module)
}

pub(super) fn vm_dir() -> PathBuf {
    workspace_root().join("target/vm")
}

/// The kernel image package for `--kernel` (an ABI version such as
/// 6.1.0-56 or 6.12.117+deb12, a series such as 6.12, or a package name),
/// by default for linux-image-amd64 (linux-image-arm64 for arm64). A
/// metapackage (linux-image-amd64, linux-image-6.12-amd64) is followed to
/// the image it depends on: the newest that apt offers.
pub fn kernel_package(arch: Arch, requested: Option<&str>) -> Result<String> {
    let suffix = format!("-{}", arch.debian());
    let package = match requested {
        None => format!("linux-image{suffix}"),
        Some(requested) if requested.starts_with("linux-image-") => requested.to_owned(),
        Some(requested) if requested.ends_with(&suffix) => format!("linux-image-{requested}"),
        Some(requested) => format!("linux-image-{requested}{suffix}"),
    };
    // Only images are cached: no need to ask apt about one.
    if unpacked_kernel(arch, &package, &vm_dir().join("kernels").join(&package)).is_some() {
        return Ok(package);
    }
    let info = match apt_show(arch, &package) {
        Some(info) => info,
        None => {
            // A fresh machine may have no package lists yet.
            apt_update()?;
            match apt_show(arch, &package) {
                Some(info) => info,
                None if requested.is_some() => {
                    bail!(
                        "apt knows no package {package}: see `apt-cache search linux-image` \
                         for the kernels in apt's sources"
                    )
                }
                None => bail!("apt knows no {package}: is this Debian (or a derivative)?"),
            }
        }
    };
    Ok(image_dependency(&info).unwrap_or(package))
}

/// `apt-cache show` of the candidate version, if apt knows the package.
fn apt_show(arch: Arch, package: &str) -> Option<String> {
    output(Command::new("apt-cache").args(["show", "--no-all-versions", &apt_name(arch, package)]))
        .ok()
        .filter(|info| !info.trim().is_empty())
}

/// The linux-image-* package a metapackage's Depends line names (an image
/// package depends on no other image: None).
fn image_dependency(info: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix("Depends:"))?
        .split([',', ' ', '|'])
        .find(|word| word.starts_with("linux-image-"))
        .map(str::to_owned)
}

/// `package:arch` for a foreign architecture (dpkg's multiarch name).
pub(super) fn apt_name(arch: Arch, package: &str) -> String {
    if arch == Arch::X86_64 {
        package.to_owned()
    } else {
        format!("{package}:{arch}")
    }
}

pub(super) fn apt_update() -> Result<()> {
    eprintln!("vm: running apt-get update (no package lists)");
    exec(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// boot/PREFIX* in an unpacked package directory.
fn find_boot_file(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let entries = fs::read_dir(dir.join("boot")).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(prefix))
        })
}

/// The kernel in an unpacked package directory, if complete (a directory
/// unpacked before the guest loaded modules lacks them: it is fetched anew).
fn unpacked_kernel(arch: Arch, package: &str, dir: &Path) -> Option<Kernel> {
    let modules = guest_modules(arch, dir);
    if !modules.iter().all(|module| module.is_file()) {
        return None;
    }
    Some(Kernel {
        package: package.to_owned(),
        arch,
        vmlinuz: find_boot_file(dir, "vmlinuz-")?,
        config: find_boot_file(dir, "config-")?,
        modules,
    })
}

/// Downloads and unpacks the kernel package unless target/vm/ has it already.
pub fn fetch_kernel(requested: Option<&str>) -> Result<Kernel> {
    fetch_kernel_for(Arch::X86_64, requested)
}

/// [`fetch_kernel`] for `arch`'s kernels.
pub fn fetch_kernel_for(arch: Arch, requested: Option<&str>) -> Result<Kernel> {
    let package = kernel_package(arch, requested)?;
    let kernels = vm_dir().join("kernels");
    let dir = kernels.join(&package);
    if let Some(kernel) = unpacked_kernel(arch, &package, &dir) {
        println!("vm: kernel {package} (cached in {})", dir.display());
        return Ok(kernel);
    }
    println!("vm: downloading {package}");
    let download = kernels.join("download");
    if download.exists() {
        fs::remove_dir_all(&download)
            .with_context(|| format!("removing {}", download.display()))?;
    }
    fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    let mut apt = Command::new("apt-get");
    apt.args(["download", &apt_name(arch, &package)])
        .current_dir(&download);
    if exec(&mut apt).is_err() {
        apt_update()?;
        exec(&mut apt).with_context(|| {
            format!(
                "downloading {package}: is it in apt's sources? (`apt-cache search linux-image`)"
            )
        })?;
    }
    let deb = fs::read_dir(&download)
        .with_context(|| format!("reading {}", download.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or_else(|| anyhow!("apt-get download {package} left no .deb"))?;
    let unpacked = download.join("unpacked");
    fs::create_dir_all(&unpacked).with_context(|| format!("creating {}", unpacked.display()))?;
    unpack(arch, &deb, &unpacked)?;
    if unpacked_kernel(arch, &package, &unpacked).is_none() {
        bail!(
            "{} has no boot/vmlinuz-* or boot/config-*, or lacks a module of {GUEST_MODULES:?}",
            deb.display()
        );
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::rename(&unpacked, &dir)
        .with_context(|| format!("moving the kernel to {}", dir.display()))?;
    fs::remove_dir_all(&download).with_context(|| format!("removing {}", download.display()))?;
    unpacked_kernel(arch, &package, &dir).ok_or_else(|| anyhow!("{} vanished", dir.display()))
}

/// Unpacks boot/ (vmlinuz, System.map, config) and the guest's modules
/// from `deb` into `dir`: unpacking every module would take ~400 MB.
fn unpack(arch: Arch, deb: &Path, dir: &Path) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb).stdout(Stdio::piped());
    let mut dpkg_child = dpkg
        .spawn()
        .with_context(|| format!("starting `{}`", display(&dpkg)))?;
    let tar_input = dpkg_child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("dpkg-deb has no stdout"))?;
    let mut tar = Command::new("tar");
    tar.args(["-x", "--wildcards", "-C"]).arg(dir).arg("./boot");
    if arch == Arch::X86_64 {
        // `.ko` (6.1) or `.ko.xz` (6.12), whatever the version directory.
        tar.args(
            GUEST_MODULES
                .iter()
                .map(|module| format!("./lib/modules/*/kernel/{module}.ko*")),
        );
    }
    exec(tar.stdin(tar_input))?;
    let status = dpkg_child.wait().context("waiting for dpkg-deb")?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(&dpkg));
    }
    if arch != Arch::X86_64 {
        return Ok(());
    }
    let modules = modules_dir(dir);
    fs::create_dir_all(&modules).with_context(|| format!("creating {}", modules.display()))?;
    for module in GUEST_MODULES {
        let found = find_module(dir, module)
            .ok_or_else(|| anyhow!("{} has no {module}.ko or {module}.ko.xz", deb.display()))?;
        let plain = modules.join(format!("{}.ko", module_name(module)));
        if found.extension().is_some_and(|ext| ext == "xz") {
            let out = fs::File::create(&plain)
                .with_context(|| format!("creating {}", plain.display()))?;
            exec(Command::new("xz").arg("-dc").arg(&found).stdout(out))?;
        } else {
            fs::rename(&found, &plain)
                .with_context(|| format!("moving {} to {}", found.display(), plain.display()))?;
        }
    }
    let lib = dir.join("lib");
    fs::remove_dir_all(&lib).with_context(|| format!("removing {}", lib.display()))
}

/// lib/modules/VERSION/kernel/MODULE.ko or .ko.xz, as tar left it.
fn find_module(dir: &Path, module: &str) -> Option<PathBuf> {
    let versions = fs::read_dir(dir.join("lib/modules")).ok()?;
    versions
        .filter_map(Result::ok)
        .flat_map(|version| {
            ["ko", "ko.xz"].map(|ext| version.path().join(format!("kernel/{module}.{ext}")))
        })
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metapackages_name_their_image() {
        let meta = "Package: linux-image-6.12-amd64\nDepends: linux-image-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1)\n";
        assert_eq!(
            image_dependency(meta).as_deref(),
            Some("linux-image-6.12.117+deb12-amd64")
        );
        let image = "Package: linux-image-6.1.0-56-amd64\nDepends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\n";
        assert_eq!(image_dependency(image), None);
    }
}

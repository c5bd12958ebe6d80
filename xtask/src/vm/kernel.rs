//! The guest's kernel: Debian's kernel image packages, which `--kernel`
//! names (an ABI version, a series or a package), fetched with apt and
//! unpacked under target/vm/kernels/.

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

/// The kernel in an unpacked package directory, if complete.
fn unpacked_kernel(arch: Arch, package: &str, dir: &Path) -> Option<Kernel> {
    Some(Kernel {
        package: package.to_owned(),
        arch,
        vmlinuz: find_boot_file(dir, "vmlinuz-")?,
        config: find_boot_file(dir, "config-")?,
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
    // Only boot/ (vmlinuz, System.map, config) is needed: unpacking the
    // modules as well would take ~400 MB.
    let unpacked = download.join("unpacked");
    fs::create_dir_all(&unpacked).with_context(|| format!("creating {}", unpacked.display()))?;
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(&deb).stdout(Stdio::piped());
    let mut dpkg_child = dpkg
        .spawn()
        .with_context(|| format!("starting `{}`", display(&dpkg)))?;
    let tar_input = dpkg_child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("dpkg-deb has no stdout"))?;
    exec(
        Command::new("tar")
            .args(["-x", "-C"])
            .arg(&unpacked)
            .arg("./boot")
            .stdin(tar_input),
    )?;
    let status = dpkg_child.wait().context("waiting for dpkg-deb")?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(&dpkg));
    }
    if unpacked_kernel(arch, &package, &unpacked).is_none() {
        bail!("{} has no boot/vmlinuz-* or boot/config-*", deb.display());
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::rename(&unpacked, &dir)
        .with_context(|| format!("moving the kernel to {}", dir.display()))?;
    fs::remove_dir_all(&download).with_context(|| format!("removing {}", download.display()))?;
    unpacked_kernel(arch, &package, &dir).ok_or_else(|| anyhow!("{} vanished", dir.display()))
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

//! Builds hwbp-ebpf for bpfel-unknown-none with the nightly toolchain and
//! bpf-linker (`cargo xtask setup` installs both), leaving the object in
//! OUT_DIR where `include_bytes_aligned!` embeds it. AYA_BUILD_SKIP=1 skips
//! the BPF build (for `cargo check`/clippy on machines without bpf-linker).
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    // With AYA_BUILD_SKIP, leave an empty object so that the crate still
    // type-checks; loading it fails at run time with a clear error.
    if std::env::var_os("AYA_BUILD_SKIP")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
        std::fs::write(out.join("hwbp"), []).context("writing the placeholder BPF object")?;
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "hwbp-ebpf")
        .ok_or_else(|| anyhow!("hwbp-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = &ebpf_package;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?;
    let package = aya_build::Package {
        name: name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}

//! `cargo xtask install`: hwbp-trace into /usr/local/bin, so that
//! `sudo hwbp-trace SYMBOL` works.

use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{build, setup};

#[derive(Args)]
pub struct Options {
    /// Where to put hwbp-trace.
    #[arg(long, default_value = "/usr/local/bin")]
    prefix: PathBuf,
}

pub fn run(options: Options) -> Result<()> {
    let Options { prefix } = options;
    setup::run()?;
    build::run()?;
    let source = build::hwbp_trace();
    let dest = prefix.join("hwbp-trace");
    // Copy next to the destination, then rename: a running hwbp-trace keeps
    // its old file and no one ever sees a half-written binary.
    let partial = prefix.join(".hwbp-trace.partial");
    fs::copy(&source, &partial).with_context(|| {
        format!(
            "copying {} to {} (needs write access there: try `sudo -E cargo xtask install`)",
            source.display(),
            partial.display()
        )
    })?;
    fs::rename(&partial, &dest)
        .with_context(|| format!("renaming {} to {}", partial.display(), dest.display()))?;
    println!("install: {}", dest.display());
    crate::man::install(&prefix)?;
    Ok(())
}

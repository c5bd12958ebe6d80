//! `cargo xtask man` and `cargo xtask completions`: generated from the
//! clap definitions of hwbp-trace by hwbp-user's `gen-docs` example (it
//! links the `hwbp` library, which xtask does not: xtask must build on a
//! machine that has no BPF toolchain yet, before `setup`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{build, exec::exec, setup, workspace_root};

#[derive(Args)]
pub struct Options {
    /// Where to write [default: target/docs/man or target/docs/completions].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Which of the two.
#[derive(Clone, Copy)]
pub enum Kind {
    Man,
    Completions,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Self::Man => "man",
            Self::Completions => "completions",
        }
    }
}

pub fn default_dir(kind: Kind) -> PathBuf {
    workspace_root().join("target/docs").join(kind.word())
}

/// Generates into `out`.
pub fn generate(kind: Kind, out: &Path) -> Result<()> {
    let out = out.display().to_string();
    exec(&mut build::cargo(&[
        "run",
        "--quiet",
        "--release",
        "-p",
        "hwbp-user",
        "--example",
        "gen-docs",
        "--",
        kind.word(),
        &out,
    ]))
    .with_context(|| format!("generating {} into {out}", kind.word()))
}

pub fn run(kind: Kind, options: Options) -> Result<()> {
    let Options { out } = options;
    setup::run()?;
    generate(kind, &out.unwrap_or_else(|| default_dir(kind)))
}

/// For `cargo xtask install`: man pages under PREFIX/share/man/man1 and
/// completions where bash, zsh and fish look, PREFIX being the parent of
/// the binary's directory (/usr/local for /usr/local/bin).
pub fn install(bin_dir: &Path) -> Result<()> {
    let prefix = bin_dir.parent().unwrap_or(bin_dir);
    let man_dir = prefix.join("share/man/man1");
    generate(Kind::Man, &man_dir)?;
    let staging = default_dir(Kind::Completions);
    generate(Kind::Completions, &staging)?;
    for (file, dir) in [
        ("hwbp-trace.bash", "share/bash-completion/completions"),
        ("_hwbp-trace", "share/zsh/site-functions"),
        ("hwbp-trace.fish", "share/fish/vendor_completions.d"),
    ] {
        let dir = prefix.join(dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // bash-completion finds a command's completions by its bare name.
        let name = if file.ends_with(".bash") {
            "hwbp-trace"
        } else {
            file
        };
        std::fs::copy(staging.join(file), dir.join(name))
            .with_context(|| format!("copying {file} to {}", dir.display()))?;
    }
    println!(
        "install: man pages in {}, completions for bash, zsh and fish under {}",
        man_dir.display(),
        prefix.display()
    );
    Ok(())
}

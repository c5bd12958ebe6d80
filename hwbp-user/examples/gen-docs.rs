//! Man pages and shell completions from the clap definitions of
//! `hwbp-trace` (`hwbp::cli::Cli`), so they never drift from `--help`.
//! Run by `cargo xtask man` and `cargo xtask completions`:
//!
//! ```text
//! gen-docs man OUT_DIR            hwbp-trace.1, hwbp-trace-list.1, hwbp-trace-report.1, …
//! gen-docs completions OUT_DIR    hwbp-trace.bash, _hwbp-trace (zsh), hwbp-trace.fish, …
//! ```

use std::{fs, path::Path, process::ExitCode};

use anyhow::{Context as _, Result, bail};
use clap::CommandFactory as _;
use clap_complete::Shell;
use hwbp::cli::Cli;

const NAME: &str = "hwbp-trace";

fn man(out: &Path) -> Result<Vec<String>> {
    let cmd = Cli::command();
    let mut written = Vec::new();
    let mut page = |cmd: clap::Command, file: String| -> Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut buf)
            .context("rendering a man page")?;
        let path = out.join(&file);
        fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        written.push(file);
        Ok(())
    };
    for sub in cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
    {
        // `hwbp-trace-report(1)` as man and git name subcommand pages.
        let name = format!("{NAME}-{}", sub.get_name());
        let file = format!("{name}.1");
        // clap names are &'static str (without its `string` feature); this
        // program runs once, so leaking two short strings per page is fine.
        let bin_name: &'static str =
            Box::leak(format!("{NAME} {}", sub.get_name()).into_boxed_str());
        let name: &'static str = Box::leak(name.into_boxed_str());
        page(sub.clone().name(name).bin_name(bin_name), file)?;
    }
    page(cmd, format!("{NAME}.1"))?;
    Ok(written)
}

fn completions(out: &Path) -> Result<Vec<String>> {
    let mut cmd = Cli::command();
    let mut written = Vec::new();
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let path = clap_complete::generate_to(shell, &mut cmd, NAME, out)
            .with_context(|| format!("writing {shell} completions into {}", out.display()))?;
        written.push(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    Ok(written)
}

fn run(args: &[String]) -> Result<()> {
    let [what, out] = args else {
        bail!("usage: gen-docs man|completions OUT_DIR");
    };
    let out = Path::new(out);
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let written = match what.as_str() {
        "man" => man(out)?,
        "completions" => completions(out)?,
        other => bail!("unknown `{other}`: man or completions"),
    };
    for file in written {
        println!("{}", out.join(file).display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-docs: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A directory of its own, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("hwbp-gen-docs-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            Self(dir)
        }

        fn read(&self, file: &str) -> String {
            let path = self.0.join(file);
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn man_pages() {
        let dir = Scratch::new("man");
        let mut written = man(&dir.0).expect("man");
        written.sort();
        assert_eq!(
            written,
            [
                "hwbp-trace-doctor.1",
                "hwbp-trace-list.1",
                "hwbp-trace-report.1",
                "hwbp-trace.1"
            ]
        );
        let page = dir.read("hwbp-trace.1");
        assert!(page.starts_with(".ie \\n(.g .ds Aq \\(aq"), "roff: {page}");
        assert!(page.contains(".TH hwbp-trace 1"), "{page}");
        // roff escapes the dashes of options.
        assert!(page.contains("\\-\\-metrics\\-addr"), "{page}");
        assert!(page.contains("hwbp\\-trace\\-report(1)"), "{page}");
        let report = dir.read("hwbp-trace-report.1");
        assert!(report.contains(".TH hwbp-trace-report 1"), "{report}");
        assert!(report.contains("\\-\\-flamegraph"), "{report}");
    }

    #[test]
    fn completions_of_every_shell() {
        let dir = Scratch::new("completions");
        let mut written = completions(&dir.0).expect("completions");
        written.sort();
        assert_eq!(
            written,
            [
                "_hwbp-trace",
                "_hwbp-trace.ps1",
                "hwbp-trace.bash",
                "hwbp-trace.elv",
                "hwbp-trace.fish"
            ]
        );
        let bash = dir.read("hwbp-trace.bash");
        assert!(bash.contains("--metrics-addr"), "{bash}");
        // The subcommands, and the options of `report` after it.
        assert!(bash.contains("hwbp__trace,report)"), "{bash}");
        assert!(bash.contains("--flamegraph"), "{bash}");
        let zsh = dir.read("_hwbp-trace");
        assert!(zsh.contains("'--metrics-addr=["), "{zsh}");
        assert!(zsh.contains("'report:"), "{zsh}");
    }
}

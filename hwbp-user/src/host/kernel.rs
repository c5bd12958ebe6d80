//! The running kernel: its release and its build configuration.

use std::{fs, io::Read as _};

/// `6.18.44-fc-v669` → (6, 18, 44); missing parts are 0.
pub fn parse_release(release: &str) -> Option<(u32, u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+', '_']).map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next().flatten()?;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

pub fn release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// An option in a kernel config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigOption<'a> {
    /// `CONFIG_X=y` (or `=m`, or a value).
    Set(&'a str),
    /// `# CONFIG_X is not set`.
    NotSet,
    /// The file does not mention it, or there is no file.
    Unknown,
}

/// Looks an option up in the text of a kernel config.
pub fn config_option<'a>(config: &'a str, name: &str) -> ConfigOption<'a> {
    for line in config.lines() {
        let line = line.trim();
        if let Some(value) = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
        {
            return ConfigOption::Set(value);
        }
        if line
            .strip_prefix("# ")
            .and_then(|rest| rest.strip_prefix(name))
            == Some(" is not set")
        {
            return ConfigOption::NotSet;
        }
    }
    ConfigOption::Unknown
}

/// The running kernel's config, from /boot/config-RELEASE or /proc/config.gz.
pub(crate) struct KernelConfig {
    source: Option<String>,
    text: String,
}

impl KernelConfig {
    pub(crate) fn read() -> Self {
        let boot = format!("/boot/config-{}", release());
        if let Ok(text) = fs::read_to_string(&boot) {
            return Self {
                source: Some(boot),
                text,
            };
        }
        // CONFIG_IKCONFIG_PROC: the config built into the kernel, gzipped.
        let mut text = String::new();
        if let Ok(file) = fs::File::open("/proc/config.gz")
            && flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .is_ok()
        {
            return Self {
                source: Some("/proc/config.gz".into()),
                text,
            };
        }
        Self {
            source: None,
            text: String::new(),
        }
    }

    pub(crate) fn option(&self, name: &str) -> ConfigOption<'_> {
        config_option(&self.text, name)
    }

    /// `CONFIG_KPROBES is not set (/proc/config.gz)`, for messages.
    pub(crate) fn describe(&self, name: &str) -> String {
        let source = self.source.as_deref().unwrap_or("no kernel config found");
        match self.option(name) {
            ConfigOption::Set(value) => format!("{name}={value} ({source})"),
            ConfigOption::NotSet => format!("{name} is not set ({source})"),
            ConfigOption::Unknown => format!("{name} unknown ({source})"),
        }
    }
}

/// Whether the running kernel has a config option (`=y` or `=m`), from
/// /boot/config-RELEASE or /proc/config.gz; None when neither says.
pub fn option(name: &str) -> Option<bool> {
    match KernelConfig::read().option(name) {
        ConfigOption::Set(value) => Some(value == "y" || value == "m"),
        ConfigOption::NotSet => Some(false),
        ConfigOption::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines() {
        let config = "#\n# Automatically generated file\nCONFIG_KALLSYMS=y\n# CONFIG_KALLSYMS_ALL is not set\n\
                      CONFIG_HZ=250\n# CONFIG_KPROBES is not set\nCONFIG_KPROBES_ON_FTRACE=y\nCONFIG_BTRFS_FS=m\n";
        assert_eq!(
            config_option(config, "CONFIG_KALLSYMS"),
            ConfigOption::Set("y")
        );
        assert_eq!(
            config_option(config, "CONFIG_KALLSYMS_ALL"),
            ConfigOption::NotSet
        );
        assert_eq!(
            config_option(config, "CONFIG_KPROBES"),
            ConfigOption::NotSet,
            "not fooled by a longer name"
        );
        assert_eq!(
            config_option(config, "CONFIG_KPROBES_ON_FTRACE"),
            ConfigOption::Set("y")
        );
        assert_eq!(config_option(config, "CONFIG_HZ"), ConfigOption::Set("250"));
        assert_eq!(
            config_option(config, "CONFIG_BTRFS_FS"),
            ConfigOption::Set("m")
        );
        assert_eq!(
            config_option(config, "CONFIG_KALL"),
            ConfigOption::Unknown,
            "prefixes are not options"
        );
        assert_eq!(config_option("", "CONFIG_KPROBES"), ConfigOption::Unknown);
    }
}

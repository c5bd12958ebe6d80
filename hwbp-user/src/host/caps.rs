//! The privileges hwbp-trace needs, read from this process's effective
//! capabilities: one reading for `doctor`, for arming and for the session.

use std::fs;

/// Capability bits (include/uapi/linux/capability.h).
pub(crate) const CAP_SYS_ADMIN: u32 = 21;
pub(crate) const CAP_SYSLOG: u32 = 34;
pub(crate) const CAP_PERFMON: u32 = 38;
pub(crate) const CAP_BPF: u32 = 39;

/// Effective capabilities from /proc/self/status (`CapEff:\t000001ffffffffff`).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

pub(crate) fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// What hwbp-trace needs and this process lacks, from its effective
/// capabilities in /proc/self/status; None when they cannot be read.
pub fn own_missing_capabilities() -> Option<Vec<&'static str>> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status).map(missing_capabilities)
}

/// What hwbp-trace needs and `caps` lacks: CAP_BPF (load the program),
/// CAP_PERFMON (breakpoint events, system-wide), both covered by
/// CAP_SYS_ADMIN, and CAP_SYSLOG (kernel addresses in /proc/kallsyms).
pub fn missing_capabilities(caps: u64) -> Vec<&'static str> {
    let admin = has_cap(caps, CAP_SYS_ADMIN);
    [
        (CAP_BPF, "CAP_BPF", admin),
        (CAP_PERFMON, "CAP_PERFMON", admin),
        (CAP_SYSLOG, "CAP_SYSLOG", false),
    ]
    .into_iter()
    .filter(|&(cap, _, covered)| !has_cap(caps, cap) && !covered)
    .map(|(_, name, _)| name)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff() {
        let status = "Name:\thwbp-trace\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                      CapEff:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\n";
        let caps = parse_cap_eff(status).expect("CapEff");
        assert_eq!(caps, 0x1fffeffffff);
        assert!(has_cap(caps, CAP_BPF));
        assert!(has_cap(caps, CAP_PERFMON));
        assert!(has_cap(caps, CAP_SYS_ADMIN));
        assert!(
            !has_cap(caps, 24),
            "CAP_SYS_RESOURCE is the one bit cleared"
        );
        let user = parse_cap_eff("CapEff:\t0000000000000000\n").expect("CapEff");
        assert!(!has_cap(user, CAP_BPF) && !has_cap(user, CAP_PERFMON));
        assert_eq!(missing_capabilities(caps), Vec::<&str>::new());
        assert_eq!(
            missing_capabilities(user),
            ["CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG"]
        );
        let bpf_perfmon = (1 << CAP_BPF) | (1 << CAP_PERFMON);
        assert_eq!(missing_capabilities(bpf_perfmon), ["CAP_SYSLOG"]);
        assert_eq!(
            missing_capabilities(bpf_perfmon | 1 << CAP_SYSLOG),
            Vec::<&str>::new()
        );
        let admin = (1 << CAP_SYS_ADMIN) | (1 << CAP_SYSLOG);
        assert_eq!(
            missing_capabilities(admin),
            Vec::<&str>::new(),
            "CAP_SYS_ADMIN covers BPF and PERFMON"
        );
        assert_eq!(
            missing_capabilities(1 << CAP_SYS_ADMIN),
            ["CAP_SYSLOG"],
            "but not SYSLOG"
        );
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }
}

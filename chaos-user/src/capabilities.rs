//! The capabilities of the calling process, read from /proc/self/status.

/// Capability numbers from linux/capability.h, with their names.
const KNOWN: &[(u32, &str)] = &[
    (12, "CAP_NET_ADMIN"),
    (21, "CAP_SYS_ADMIN"),
    (24, "CAP_SYS_RESOURCE"),
    (33, "CAP_MAC_ADMIN"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

/// What loading and attaching every program of the tool needs.
pub const REQUIRED: &[&str] = &["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"];

/// The effective capability mask of this process (0 if it cannot be read).
pub fn effective_mask() -> u64 {
    crate::sys::read_proc("/proc/self/status")
        .ok()
        .and_then(|status| parse_cap_eff(&status))
        .unwrap_or(0)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Names of the capabilities in `mask` that the tool cares about.
pub fn names(mask: u64) -> Vec<&'static str> {
    KNOWN
        .iter()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|&(_, name)| name)
        .collect()
}

/// The required capabilities this process lacks.
pub fn missing() -> Vec<&'static str> {
    missing_from(effective_mask())
}

fn missing_from(mask: u64) -> Vec<&'static str> {
    let have = names(mask);
    REQUIRED
        .iter()
        .copied()
        .filter(|name| !have.contains(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capeff() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert!(missing_from(0x1ff_ffff_ffff).is_empty());
    }

    #[test]
    fn names_what_is_missing() {
        let net_admin_only = 1 << 12;
        assert_eq!(
            missing_from(net_admin_only),
            ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"]
        );
    }
}

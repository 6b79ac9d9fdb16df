//! Every map and program name both sides use. Userspace never spells one as a string literal.

/// Process targets: tgid (`u32`) → [`crate::errno::Target`].
pub const MAP_TARGET_PIDS: &str = "TARGET_PIDS";
/// Errno faults: slot (`u32`) → [`crate::errno::ErrnoFault`].
pub const MAP_ERRNO_FAULTS: &str = "ERRNO_FAULTS";
/// Per-CPU counters: [`crate::counters::counter_index`] → [`crate::counters::Counters`].
pub const MAP_COUNTERS: &str = "COUNTERS";

/// `cgroup/connect4`: fails IPv4 `connect()`.
pub const PROG_CGROUP_CONNECT4: &str = "cgroup_connect4";
/// `cgroup/connect6`: fails IPv6 `connect()`.
pub const PROG_CGROUP_CONNECT6: &str = "cgroup_connect6";
/// `lsm/file_open`: fails `open()` and friends.
pub const PROG_LSM_FILE_OPEN: &str = "lsm_file_open";
/// The LSM hook [`PROG_LSM_FILE_OPEN`] attaches to.
pub const LSM_HOOK_FILE_OPEN: &str = "file_open";

/// Probe-only programs (object `probe`): loaded by `chaos probe` to learn what the kernel allows.
pub const PROG_PROBE_KPROBE_OVERRIDE: &str = "kprobe_override_probe";
pub const PROG_PROBE_TRACEPOINT_SIGNAL: &str = "tracepoint_signal_probe";
pub const PROG_PROBE_TC: &str = "tc_probe";
pub const PROG_PROBE_XDP: &str = "xdp_probe";
pub const PROG_PROBE_CGROUP_SKB: &str = "cgroup_skb_probe";
pub const PROG_PROBE_LSM_CGROUP: &str = "lsm_cgroup_probe";
/// The hook the lsm_cgroup probe program is written for.
pub const LSM_HOOK_SOCKET_BIND: &str = "socket_bind";

//! The kernel features `chaos probe` reports, by the names it prints, tests look up and the VM
//! matrix expects.

pub const BTF: &str = "btf";
pub const BPF_LSM: &str = "bpf-lsm";
pub const TRAMPOLINE: &str = "trampoline";
/// An LSM program loads as fmod_ret on its `security_*` function (trampolines, no BPF LSM).
pub const FMOD_RET: &str = "fmod-ret";
pub const LSM_CGROUP: &str = "lsm-cgroup";
pub const KPROBES: &str = "kprobes";
pub const KPROBE_OVERRIDE: &str = "kprobe-override";
/// The kernel's error-injection list holds its own fault points (`should_failslab`,
/// `should_fail_bio`, …): `chaos fail --kernel-fn`, `chaos disk error`.
pub const ERROR_INJECTION: &str = "error-injection";
/// Programs may use BPF atomic instructions (5.12): the fault rules and the PID bitmap.
pub const BPF_ATOMICS: &str = "bpf-atomics";
/// Trampoline programs take struct arguments by value (6.1): `chown`'s hooks take `kuid_t`.
pub const STRUCT_ARGS: &str = "struct-args";
pub const CGROUP_SOCK_ADDR: &str = "cgroup-sock-addr";
pub const TRACEPOINT_SIGNAL: &str = "tracepoint-signal";
/// Programs on tracepoints and kprobes attach through BPF links (5.15), which a detached run
/// pins: signal faults, `--syscall` and `--pid-tree` run detached.
pub const PERF_LINK: &str = "perf-link";
pub const TCX: &str = "tcx";
pub const XDP: &str = "xdp";
pub const SCH_FQ: &str = "sch-fq";
/// A bridge device can be made: container networks (podman's default) need one.
pub const BRIDGE: &str = "bridge";
/// Interfaces of chaos's network namespace whose driver runs XDP natively (`--hook xdp` then
/// attaches in driver mode), as the kernel's netdev netlink family reports them (6.3).
pub const XDP_NATIVE: &str = "xdp-native";
pub const CGROUP_SKB: &str = "cgroup-skb";
pub const CGROUP_V2: &str = "cgroup-v2";
pub const BPFFS: &str = "bpffs";
pub const LOCKDOWN: &str = "lockdown";
/// Programs may call `bpf_probe_write_user` (not under lockdown=integrity or confidentiality).
pub const PROBE_WRITE_USER: &str = "probe-write-user";
/// The kernel has the `bpf_sock_destroy` kfunc (6.5+): a program can kill a socket.
pub const SOCK_DESTROY: &str = "sock-destroy";
pub const CAPABILITIES: &str = "capabilities";

/// Every feature, in the order `chaos probe` reports them.
pub const ALL: [&str; 25] = [
    BTF,
    BPF_LSM,
    TRAMPOLINE,
    FMOD_RET,
    LSM_CGROUP,
    KPROBES,
    KPROBE_OVERRIDE,
    ERROR_INJECTION,
    BPF_ATOMICS,
    STRUCT_ARGS,
    CGROUP_SOCK_ADDR,
    TRACEPOINT_SIGNAL,
    PERF_LINK,
    TCX,
    XDP,
    SCH_FQ,
    BRIDGE,
    XDP_NATIVE,
    CGROUP_SKB,
    CGROUP_V2,
    BPFFS,
    LOCKDOWN,
    PROBE_WRITE_USER,
    SOCK_DESTROY,
    CAPABILITIES,
];

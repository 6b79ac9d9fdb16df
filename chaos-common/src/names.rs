//! Every map and global both sides use, by object. Userspace never spells one as a string
//! literal; a test of chaos-user finds each in the built objects. Programs are named by their
//! hooks ([`crate::hook`], [`crate::ops`]).

/// Process targets: tgid (`u32`) → [`crate::target::Target`].
pub const MAP_TARGET_PIDS: &str = "TARGET_PIDS";
/// A bit per PID (`u64` words, see [`crate::target::pid_word`]), set for the keys of
/// `TARGET_PIDS`: the one lookup an untargeted process pays. Mappable.
pub const MAP_TARGET_PID_BITS: &str = "TARGET_PID_BITS";
/// Faults on calls: slot (`u32`) → [`crate::fault::CallFault`].
pub const MAP_FAULTS: &str = "FAULTS";
/// Fault run-time state: slot (`u32`) → [`crate::fault::FaultState`].
pub const MAP_FAULT_STATE: &str = "FAULT_STATE";
/// Per-CPU counters: [`crate::counters::counter_index`] → [`crate::counters::Counters`].
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Per-CPU counters by target: [`crate::target::Target::index`] → [`crate::counters::Counters`].
pub const MAP_TARGET_COUNTERS: &str = "TARGET_COUNTERS";
/// `chaos delay`: the processes stopped and not resumed yet, by tgid, and the ring buffer that
/// tells chaos of each stop.
pub const MAP_DELAYED: &str = "DELAYED";
pub const MAP_DELAY_EVENTS: &str = "DELAY_EVENTS";

/// Globals of the errno object, set at load: with a non-zero `TARGET_CGROUP_ID`, the targets are
/// the processes under that cgroup v2 (at depth `TARGET_CGROUP_LEVEL`) instead of `TARGET_PIDS`.
pub const GLOBAL_TARGET_CGROUP_ID: &str = "TARGET_CGROUP_ID";
pub const GLOBAL_TARGET_CGROUP_LEVEL: &str = "TARGET_CGROUP_LEVEL";
/// The legacy errno object's cgroup array: that cgroup's directory at index 0.
pub const MAP_TARGET_CGROUP: &str = "TARGET_CGROUP";
/// Offset of `child_pid` in the `sched:sched_process_fork` record, read from its format file.
pub const GLOBAL_FORK_CHILD_PID_OFFSET: &str = "FORK_CHILD_PID_OFFSET";
/// [`crate::fault::PathOffsets`] of the running kernel, for `--path`.
pub const GLOBAL_PATH_OFFSETS: &str = "PATH_OFFSETS";
/// [`crate::fault::KernelFnFilter`]: `--caller`'s function, an allocation's gfp flags.
pub const GLOBAL_KERNEL_FN: &str = "KERNEL_FN";
/// [`crate::fault::DiskFilter`]: the bios a disk fault matches.
pub const GLOBAL_DISK: &str = "DISK";
/// [`crate::fault::StatfsFilter`]: the filesystem a disk-full fault reports full.
pub const GLOBAL_STATFS: &str = "STATFS";
/// [`crate::fault::CorruptFilter`]: what corrupt-io flips, and where it reads.
pub const GLOBAL_CORRUPT: &str = "CORRUPT";
/// [`crate::fault::ClockFilter`]: what `chaos clock` shifts, and where its exec program reads.
pub const GLOBAL_CLOCK: &str = "CLOCK";
/// Non-zero where the kernel has `bpf_set_retval` (5.18): cgroup programs then choose the errno;
/// without it they fail calls with EPERM.
pub const GLOBAL_KERNEL_SET_RETVAL: &str = "KERNEL_SET_RETVAL";

/// Network faults (object `net`): slot 0 → [`crate::net::NetFault`]; per-CPU counters by
/// direction → [`crate::net::NetCounters`].
pub const MAP_NET_FAULTS: &str = "NET_FAULTS";
pub const MAP_NET_COUNTERS: &str = "NET_COUNTERS";
/// The delay distribution table (i16 entries, iproute2's `.dist` files) of a delay fault.
pub const MAP_NET_DELAY_DIST: &str = "NET_DELAY_DIST";
/// A rate limit's state: slot 0 → the departure time (ns) from which the next packet may leave.
pub const MAP_NET_RATE_STATE: &str = "NET_RATE_STATE";
/// A DNS fault's name: slot 0 → [`crate::net::DnsName`].
pub const MAP_NET_DNS_NAME: &str = "NET_DNS_NAME";
/// The Gilbert-Elliott loss model's state: slot 0 → 0 good, 1 bad.
pub const MAP_NET_GE_STATE: &str = "NET_GE_STATE";

/// One eBPF object of chaos-ebpf (a `[[bin]]`) and the maps and globals the loader uses in it.
pub struct Object {
    pub name: &'static str,
    pub maps: &'static [&'static str],
    pub globals: &'static [&'static str],
}

/// Faults on calls: errnos, signals, syscall overrides, and the target bookkeeping.
pub const ERRNO: Object = Object {
    name: "errno",
    maps: &[
        MAP_TARGET_PIDS,
        MAP_TARGET_PID_BITS,
        MAP_FAULTS,
        MAP_FAULT_STATE,
        MAP_COUNTERS,
        MAP_TARGET_COUNTERS,
        MAP_DELAYED,
        MAP_DELAY_EVENTS,
    ],
    globals: &[
        GLOBAL_TARGET_CGROUP_ID,
        GLOBAL_TARGET_CGROUP_LEVEL,
        GLOBAL_FORK_CHILD_PID_OFFSET,
        GLOBAL_PATH_OFFSETS,
        GLOBAL_KERNEL_SET_RETVAL,
        GLOBAL_DISK,
        GLOBAL_KERNEL_FN,
        GLOBAL_STATFS,
        GLOBAL_CORRUPT,
        GLOBAL_CLOCK,
    ],
};

/// The errno object built without BPF atomics (`--cfg chaos_legacy`), for kernels before 5.12:
/// the same programs, maps and globals, and a cgroup array for a cgroup target.
pub const ERRNO_LEGACY: Object = Object {
    name: "errno-legacy",
    maps: &[
        MAP_TARGET_PIDS,
        MAP_TARGET_PID_BITS,
        MAP_FAULTS,
        MAP_FAULT_STATE,
        MAP_COUNTERS,
        MAP_TARGET_COUNTERS,
        MAP_DELAYED,
        MAP_DELAY_EVENTS,
        MAP_TARGET_CGROUP,
    ],
    ..ERRNO
};

/// Faults on packets.
pub const NET: Object = Object {
    name: "net",
    maps: &[
        MAP_NET_FAULTS,
        MAP_NET_COUNTERS,
        MAP_NET_DELAY_DIST,
        MAP_NET_RATE_STATE,
        MAP_NET_DNS_NAME,
        MAP_NET_GE_STATE,
    ],
    globals: &[],
};

/// The probe's programs.
pub const PROBE: Object = Object {
    name: "probe",
    maps: &[],
    globals: &[],
};

/// Set for a chaos process (by `chaos run` for its faults, by the tests): its status goes to
/// stderr as one [`STATUS_LINE_PREFIX`] line of JSON per tick, on a pipe too, the first once
/// every program of the run is attached.
pub const STATUS_LINES_ENV: &str = "CHAOS_STATUS_LINES";
pub const STATUS_LINE_PREFIX: &str = "chaos-status ";

/// The image `cargo xtask dist` builds and the injector pods of `chaos k8s` run by default.
pub const DIST_IMAGE: &str = "localhost/chaos:dist";

/// The serial (/sys/block/vdX/serial) of the spare virtio disk the test guests get (xtask's
/// runner), which the disk tests partition; no other disk is ever written.
pub const SPARE_DISK_SERIAL: &str = "chaos-spare";

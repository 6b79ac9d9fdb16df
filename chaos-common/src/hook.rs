//! Where each program of chaos attaches. A hook names its program and says how the loader loads,
//! attaches, pins and detaches it; the section the program must be in follows from it, which a
//! test of chaos-user checks against the built objects.

use crate::net::{DIRECTION_EGRESS, DIRECTION_INGRESS};

/// A program and the kind of place it attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// A BPF LSM program on LSM hook `hook` (section `lsm/HOOK`): global, it filters by target.
    Lsm {
        program: &'static str,
        hook: &'static str,
    },
    /// The BPF LSM program of `hook` (section `lsm/HOOK`) run instead on the kernel function
    /// `function` (`security_file_open`) as an fmod_ret program: global, it filters by target,
    /// and needs trampolines but not `bpf` in the active LSM list.
    FmodRet {
        program: &'static str,
        hook: &'static str,
        function: &'static str,
    },
    /// A cgroup sock_addr program (section `cgroup/ATTACH`: connect4, bind6, sendmsg4…) on each
    /// target cgroup.
    CgroupSockAddr {
        program: &'static str,
        attach: &'static str,
    },
    /// A cgroup sock program (section `cgroup/ATTACH`: sock_create) on each target cgroup.
    CgroupSock {
        program: &'static str,
        attach: &'static str,
    },
    /// A cgroup_skb program (section `cgroup_skb/ATTACH`: ingress, egress) on the target cgroup.
    CgroupSkb {
        program: &'static str,
        attach: &'static str,
    },
    /// A tracepoint program (section `tracepoint`) on `category:event`.
    Tracepoint {
        program: &'static str,
        category: &'static str,
        event: &'static str,
    },
    /// A tracepoint program (section `tracepoint`) on the entry of the syscall the fault names,
    /// `syscalls:sys_enter_NAME`.
    SyscallEntry { program: &'static str },
    /// A tracepoint program (section `tracepoint`) on the exit of each syscall the fault names,
    /// `syscalls:sys_exit_NAME`.
    SyscallExit { program: &'static str },
    /// A kprobe (section `kprobe`) on the entry function of the syscall the fault names, whose
    /// return it overrides with `bpf_override_return`.
    SyscallOverride { program: &'static str },
    /// A kprobe (section `kprobe`) on the entry function of each of an operation's syscalls,
    /// `syscalls` (`openat`, `stat`…: the functions the error-injection list names for them),
    /// whose return it overrides with `bpf_override_return`: the operation's rung where neither
    /// BPF LSM nor trampolines serve.
    OpOverride {
        program: &'static str,
        syscalls: &'static [&'static str],
    },
    /// A kprobe (section `kprobe`) on the kernel function the fault names (`should_failslab`,
    /// `should_fail_bio`), whose return it overrides with `bpf_override_return` (a function of
    /// the kernel's error-injection list).
    FunctionOverride { program: &'static str },
    /// A TC program (section `classifier`) on each target interface, in one direction (a
    /// [`crate::net`] `DIRECTION_*` bit): a tcx link, or a cls_bpf filter of a clsact qdisc.
    Tc {
        program: &'static str,
        direction: u32,
    },
    /// An XDP program (section `xdp`) on an interface.
    Xdp { program: &'static str },
    /// An fexit program (section `fexit/FUNCTION`) on the kernel function `function`: it runs
    /// when the function returns, with its arguments and return value.
    Fexit {
        program: &'static str,
        function: &'static str,
    },
    /// An fentry program (section `fentry/FUNCTION`) on the kernel function `function`: it runs
    /// as the function is entered, with its arguments.
    Fentry {
        program: &'static str,
        function: &'static str,
    },
    /// An fexit program (section `fexit/FUNCTION`) loaded once more per syscall the fault names,
    /// on that syscall's entry function (`__x64_sys_fsync`), by chaos's own bpf(2) calls (aya
    /// loads a program once): only those syscalls pay. `function` is where `chaos probe` and
    /// the load check try it.
    SyscallFexit {
        program: &'static str,
        function: &'static str,
    },
    /// An fentry program (section `fentry/FUNCTION`) loaded once more, on the entry function of
    /// the syscall the fault names, as [`Hook::SyscallFexit`] is: only that syscall pays.
    SyscallFentry {
        program: &'static str,
        function: &'static str,
    },
    /// A program in section `fexit/FUNCTION` that chaos loads by its own bpf(2) calls as an
    /// fmod_ret program on `function` (aya parses no fmod_ret section): its return value, when
    /// not 0, replaces the function's, which does not run. Only for functions of the kernel's
    /// error-injection list (CONFIG_FUNCTION_ERROR_INJECTION).
    FmodRetFunction {
        program: &'static str,
        function: &'static str,
    },
    /// A program in section `fexit/FUNCTION` that chaos loads by its own bpf(2) calls as an
    /// fmod_ret program on the kernel function the fault names (`--kernel-fn`'s, or the entry
    /// function of `--syscall`'s syscall), in place of [`Hook::FunctionOverride`]'s kprobe
    /// where trampolines load. `function` is where `chaos probe` tries it.
    FmodRetOverride {
        program: &'static str,
        function: &'static str,
    },
    /// An LSM program attached per cgroup (section `lsm_cgroup/HOOK`).
    LsmCgroup {
        program: &'static str,
        hook: &'static str,
    },
    /// A BTF-typed tracepoint program (section `tp_btf/EVENT`): a raw tracepoint whose
    /// arguments are the kernel's own typed pointers (no trampoline).
    BtfTracepoint {
        program: &'static str,
        event: &'static str,
    },
}

impl Hook {
    pub const fn program(self) -> &'static str {
        match self {
            Hook::Lsm { program, .. }
            | Hook::FmodRet { program, .. }
            | Hook::CgroupSockAddr { program, .. }
            | Hook::CgroupSock { program, .. }
            | Hook::CgroupSkb { program, .. }
            | Hook::Tracepoint { program, .. }
            | Hook::SyscallEntry { program }
            | Hook::SyscallExit { program }
            | Hook::SyscallOverride { program }
            | Hook::OpOverride { program, .. }
            | Hook::FunctionOverride { program }
            | Hook::Tc { program, .. }
            | Hook::Xdp { program }
            | Hook::Fexit { program, .. }
            | Hook::Fentry { program, .. }
            | Hook::FmodRetFunction { program, .. }
            | Hook::FmodRetOverride { program, .. }
            | Hook::SyscallFexit { program, .. }
            | Hook::SyscallFentry { program, .. }
            | Hook::LsmCgroup { program, .. }
            | Hook::BtfTracepoint { program, .. } => program,
        }
    }

    /// The ELF section the program must be in, as two parts to concatenate (`lsm/` and
    /// `file_open`): aya reads the program type and attach type from it.
    pub const fn section(self) -> (&'static str, &'static str) {
        match self {
            Hook::Lsm { hook, .. } | Hook::FmodRet { hook, .. } => ("lsm/", hook),
            Hook::CgroupSockAddr { attach, .. } | Hook::CgroupSock { attach, .. } => {
                ("cgroup/", attach)
            }
            Hook::CgroupSkb { attach, .. } => ("cgroup_skb/", attach),
            Hook::Tracepoint { .. } | Hook::SyscallEntry { .. } | Hook::SyscallExit { .. } => {
                ("tracepoint", "")
            }
            Hook::SyscallOverride { .. }
            | Hook::OpOverride { .. }
            | Hook::FunctionOverride { .. } => ("kprobe", ""),
            Hook::Tc { .. } => ("classifier", ""),
            Hook::Xdp { .. } => ("xdp", ""),
            Hook::Fexit { function, .. }
            | Hook::SyscallFexit { function, .. }
            | Hook::FmodRetFunction { function, .. }
            | Hook::FmodRetOverride { function, .. } => ("fexit/", function),
            Hook::SyscallFentry { function, .. } | Hook::Fentry { function, .. } => {
                ("fentry/", function)
            }
            Hook::LsmCgroup { hook, .. } => ("lsm_cgroup/", hook),
            Hook::BtfTracepoint { event, .. } => ("tp_btf/", event),
        }
    }
}

/// `--pid-tree`: a fork by a tree target makes the child a target too.
pub const FORK: Hook = Hook::Tracepoint {
    program: "tracepoint_sched_process_fork",
    category: "sched",
    event: "sched_process_fork",
};
/// `--pid-tree`: an exiting task leaves the targets.
pub const EXIT: Hook = Hook::Tracepoint {
    program: "tracepoint_sched_process_exit",
    category: "sched",
    event: "sched_process_exit",
};
/// `chaos signal`: a target entering the syscall gets the signal.
pub const SIGNAL: Hook = Hook::SyscallEntry {
    program: "tracepoint_syscall_signal",
};
/// `chaos signal` where trampolines load: the same, from an fentry program on the syscall's
/// function.
pub const SIGNAL_FENTRY: Hook = Hook::SyscallFentry {
    program: "fentry_syscall_signal",
    function: "__x64_sys_fsync",
};
/// `chaos delay`: a target leaving one of the syscalls is stopped, for chaos to resume it.
pub const DELAY: Hook = Hook::SyscallExit {
    program: "tracepoint_syscall_delay",
};
/// `chaos delay` where trampolines load: the same, from fexit programs on the syscalls'
/// functions.
pub const DELAY_FEXIT: Hook = Hook::SyscallFexit {
    program: "fexit_syscall_delay",
    function: "__x64_sys_fsync",
};
/// `chaos fail --syscall`: a target's call of the syscall returns the errno without running.
pub const SYSCALL_OVERRIDE: Hook = Hook::SyscallOverride {
    program: "kprobe_override",
};
/// `chaos fail --kernel-fn`: the same program on a function of the error-injection list.
pub const KERNEL_FN_OVERRIDE: Hook = Hook::FunctionOverride {
    program: "kprobe_override",
};
/// `chaos fail --kernel-fn` and `--syscall` where trampolines load: [`KERNEL_FN_OVERRIDE`]'s
/// program as fmod_ret on the function.
pub const FMOD_RET_OVERRIDE: Hook = Hook::FmodRetOverride {
    program: "fmod_ret_override",
    function: "__x64_sys_fsync",
};
/// `chaos disk error`: bios to the device complete with EIO (on the block layer's
/// [`BIO_FUNCTION`], which turns any error into BLK_STS_IOERR).
pub const BIO_ERROR: Hook = Hook::FunctionOverride {
    program: "kprobe_bio_error",
};
pub const BIO_FUNCTION: &str = "should_fail_bio";
/// [`BIO_ERROR`] where trampolines load: the same bios fail through fmod_ret.
pub const BIO_ERROR_FMOD_RET: Hook = Hook::FmodRetFunction {
    program: "fmod_ret_bio_error",
    function: BIO_FUNCTION,
};

/// A tracepoint of the syscalls category.
const fn syscall_event(program: &'static str, event: &'static str) -> Hook {
    Hook::Tracepoint {
        program,
        category: "syscalls",
        event,
    }
}

/// `chaos disk full`: a target's statfs() and fstatfs() buffers, noted at entry and rewritten at
/// exit.
pub const STATFS: [Hook; 4] = [
    syscall_event("tracepoint_statfs_enter", "sys_enter_statfs"),
    syscall_event("tracepoint_fstatfs_enter", "sys_enter_fstatfs"),
    syscall_event("tracepoint_statfs_exit", "sys_exit_statfs"),
    syscall_event("tracepoint_fstatfs_exit", "sys_exit_fstatfs"),
];

/// `chaos disk full` where trampolines load: fexit programs on the statfs syscalls' functions
/// (x86_64 names) rewrite a target's buffer as they return.
pub const STATFS_FEXIT: [Hook; 2] = [
    Hook::Fexit {
        program: "fexit_statfs",
        function: "__x64_sys_statfs",
    },
    Hook::Fexit {
        program: "fexit_fstatfs",
        function: "__x64_sys_fstatfs",
    },
];

/// `chaos corrupt-io --op read`: fexit programs on the syscalls' functions (x86_64 names), where
/// trampolines load: read() and pread64(), then the calls with iovecs.
pub const CORRUPT_READ_FEXIT: [Hook; 5] = [
    Hook::Fexit {
        program: "fexit_read",
        function: "__x64_sys_read",
    },
    Hook::Fexit {
        program: "fexit_pread64",
        function: "__x64_sys_pread64",
    },
    READV_FEXIT[0],
    READV_FEXIT[1],
    READV_FEXIT[2],
];

/// The fexit programs of readv(), preadv() and preadv2(): bits flipped in what they return, or
/// (`--short`) the iovecs the entry programs shortened restored.
const READV_FEXIT: [Hook; 3] = [
    Hook::Fexit {
        program: "fexit_readv",
        function: "__x64_sys_readv",
    },
    Hook::Fexit {
        program: "fexit_preadv",
        function: "__x64_sys_preadv",
    },
    Hook::Fexit {
        program: "fexit_preadv2",
        function: "__x64_sys_preadv2",
    },
];

/// `chaos corrupt-io --short`: fentry programs shorten a target's iovecs of readv(), preadv()
/// and preadv2() before the kernel reads them, and an fentry program on `rw_verify_area` (which
/// the kernel runs once it has its copy, before reading) puts them back (the syscalls' fexit
/// programs, if it never gets there).
pub const CORRUPT_SHORT: [Hook; 7] = [
    // What puts the lengths back first: a run attaches in this order and detaches in the
    // reverse, so that no call is cut while nothing would put it back.
    Hook::Fentry {
        program: "fentry_rw_verify_area",
        function: "rw_verify_area",
    },
    READV_FEXIT[0],
    READV_FEXIT[1],
    READV_FEXIT[2],
    Hook::Fentry {
        program: "fentry_readv",
        function: "__x64_sys_readv",
    },
    Hook::Fentry {
        program: "fentry_preadv",
        function: "__x64_sys_preadv",
    },
    Hook::Fentry {
        program: "fentry_preadv2",
        function: "__x64_sys_preadv2",
    },
];

/// `chaos corrupt-io --op read` elsewhere: a target's read() and pread64() buffers, noted at
/// entry (the file judged by `--path` there) and corrupted at exit.
pub const CORRUPT_READ: [Hook; 4] = [
    syscall_event("tracepoint_read_enter", "sys_enter_read"),
    syscall_event("tracepoint_pread64_enter", "sys_enter_pread64"),
    syscall_event("tracepoint_read_exit", "sys_exit_read"),
    syscall_event("tracepoint_pread64_exit", "sys_exit_pread64"),
];

/// `chaos clock`: fexit programs on the clock syscalls' functions (x86_64 names) shift what
/// they return to a target, and a program on every exec withholds the vDSO from a target's new
/// image, so that its clock reads become those syscalls.
pub const CLOCK_FEXIT: [Hook; 3] = [
    Hook::Fexit {
        program: "fexit_clock_gettime",
        function: "__x64_sys_clock_gettime",
    },
    Hook::Fexit {
        program: "fexit_gettimeofday",
        function: "__x64_sys_gettimeofday",
    },
    Hook::Fexit {
        program: "fexit_time",
        function: "__x64_sys_time",
    },
];
/// `chaos clock`: a target's clock_nanosleep() to an absolute deadline on a shifted clock gets
/// the deadline taken back to the true clock as it enters, put back once the kernel holds its
/// copy. What puts it back first: a run attaches in this order and detaches in the reverse.
pub const CLOCK_SLEEP: [Hook; 3] = [
    Hook::Fentry {
        program: "fentry_do_nanosleep",
        function: "do_nanosleep",
    },
    Hook::Fexit {
        program: "fexit_clock_nanosleep",
        function: "__x64_sys_clock_nanosleep",
    },
    Hook::Fentry {
        program: "fentry_clock_nanosleep",
        function: "__x64_sys_clock_nanosleep",
    },
];

/// `chaos clock` where the kernel lets fmod_ret replace time(2) (its error-injection list):
/// the shifted second returned instead of the syscall's, in place of `CLOCK_FEXIT[2]`.
pub const CLOCK_TIME_FMOD_RET: Hook = Hook::FmodRetFunction {
    program: "fmod_ret_time",
    function: "__x64_sys_time",
};
pub const CLOCK_EXEC: Hook = Hook::BtfTracepoint {
    program: "tp_btf_clock_exec",
    event: "sched_process_exec",
};

/// The hooks of the errno object besides the operations' ([`crate::ops::OPS`]).
pub const ERRNO_EXTRA: [Hook; 38] = [
    FORK,
    EXIT,
    SIGNAL,
    SIGNAL_FENTRY,
    DELAY,
    DELAY_FEXIT,
    SYSCALL_OVERRIDE,
    KERNEL_FN_OVERRIDE,
    FMOD_RET_OVERRIDE,
    BIO_ERROR,
    BIO_ERROR_FMOD_RET,
    STATFS[0],
    STATFS[1],
    STATFS[2],
    STATFS[3],
    STATFS_FEXIT[0],
    STATFS_FEXIT[1],
    CORRUPT_READ[0],
    CORRUPT_READ[1],
    CORRUPT_READ[2],
    CORRUPT_READ[3],
    CORRUPT_READ_FEXIT[0],
    CORRUPT_READ_FEXIT[1],
    CORRUPT_READ_FEXIT[2],
    CORRUPT_READ_FEXIT[3],
    CORRUPT_READ_FEXIT[4],
    CORRUPT_SHORT[0],
    CORRUPT_SHORT[4],
    CORRUPT_SHORT[5],
    CORRUPT_SHORT[6],
    CLOCK_FEXIT[0],
    CLOCK_FEXIT[1],
    CLOCK_FEXIT[2],
    CLOCK_TIME_FMOD_RET,
    CLOCK_SLEEP[0],
    CLOCK_SLEEP[1],
    CLOCK_SLEEP[2],
    CLOCK_EXEC,
];

/// Network faults (object `net`): packets arriving on and leaving the target interfaces (TC),
/// arriving at them before the stack (`--hook xdp`), and those arriving for a cgroup's sockets
/// (`chaos net --cgroup`).
pub const TC_INGRESS: Hook = Hook::Tc {
    program: "tc_ingress",
    direction: DIRECTION_INGRESS,
};
pub const TC_EGRESS: Hook = Hook::Tc {
    program: "tc_egress",
    direction: DIRECTION_EGRESS,
};
pub const CGROUP_SKB_INGRESS: Hook = Hook::CgroupSkb {
    program: "cgroup_skb_ingress",
    attach: "ingress",
};

pub const XDP_INGRESS: Hook = Hook::Xdp {
    program: "xdp_ingress",
};

/// Every hook of the net object.
pub const NET: [Hook; 4] = [TC_INGRESS, TC_EGRESS, CGROUP_SKB_INGRESS, XDP_INGRESS];

/// Probe programs (object `probe`): tiny harmless programs `chaos probe` loads to learn what the
/// kernel allows.
pub const PROBE_KPROBE_OVERRIDE: Hook = Hook::SyscallOverride {
    program: "kprobe_override_probe",
};
pub const PROBE_TRACEPOINT_SIGNAL: Hook = Hook::SyscallEntry {
    program: "tracepoint_signal_probe",
};
pub const PROBE_WRITE_USER: Hook = Hook::SyscallEntry {
    program: "tracepoint_write_user_probe",
};
pub const PROBE_TC: Hook = Hook::Tc {
    program: "tc_probe",
    direction: DIRECTION_INGRESS,
};
pub const PROBE_XDP: Hook = Hook::Xdp {
    program: "xdp_probe",
};
pub const PROBE_CGROUP_SKB: Hook = Hook::CgroupSkb {
    program: "cgroup_skb_probe",
    attach: "ingress",
};
pub const PROBE_LSM_CGROUP: Hook = Hook::LsmCgroup {
    program: "lsm_cgroup_probe",
    hook: "socket_bind",
};

/// Every hook of the probe object.
pub const PROBE: [Hook; 7] = [
    PROBE_KPROBE_OVERRIDE,
    PROBE_TRACEPOINT_SIGNAL,
    PROBE_WRITE_USER,
    PROBE_TC,
    PROBE_XDP,
    PROBE_CGROUP_SKB,
    PROBE_LSM_CGROUP,
];

/// Every program of chaos, in every object: the operations' ([`crate::ops::OPS`]) and the
/// others; a program shared by several operations comes once per operation.
pub fn all() -> impl Iterator<Item = Hook> {
    crate::ops::OPS
        .iter()
        .flat_map(|op| op.rungs)
        .flat_map(|rung| rung.hooks)
        .chain(ERRNO_EXTRA.iter())
        .chain(NET.iter())
        .chain(PROBE.iter())
        .copied()
}

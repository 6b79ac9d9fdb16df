//! Every map and program name both sides use. Userspace never spells one as a string literal.

/// Process targets: tgid (`u32`) → [`crate::errno::Target`].
pub const MAP_TARGET_PIDS: &str = "TARGET_PIDS";
/// A bit per PID (`u64` words, see [`crate::errno::pid_word`]), set for the keys of
/// `TARGET_PIDS`: the one lookup an untargeted process pays. Mappable.
pub const MAP_TARGET_PID_BITS: &str = "TARGET_PID_BITS";
/// Errno faults: slot (`u32`) → [`crate::errno::ErrnoFault`].
pub const MAP_ERRNO_FAULTS: &str = "ERRNO_FAULTS";
/// Fault run-time state: slot (`u32`) → [`crate::errno::FaultState`].
pub const MAP_FAULT_STATE: &str = "FAULT_STATE";
/// Per-CPU counters: [`crate::counters::counter_index`] → [`crate::counters::Counters`].
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_TARGET_COUNTERS: &str = "TARGET_COUNTERS";

/// Globals of the errno object, set at load: with a non-zero `TARGET_CGROUP_ID`, the targets are
/// the processes under that cgroup v2 (at depth `TARGET_CGROUP_LEVEL`) instead of `TARGET_PIDS`.
pub const GLOBAL_TARGET_CGROUP_ID: &str = "TARGET_CGROUP_ID";
pub const GLOBAL_TARGET_CGROUP_LEVEL: &str = "TARGET_CGROUP_LEVEL";
/// Offset of `child_pid` in the `sched:sched_process_fork` record, read from its format file.
pub const GLOBAL_FORK_CHILD_PID_OFFSET: &str = "FORK_CHILD_PID_OFFSET";
/// [`crate::errno::PathOffsets`] of the running kernel, for `--path`.
pub const GLOBAL_PATH_OFFSETS: &str = "PATH_OFFSETS";

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
/// TC programs of the net object, on an interface's ingress and egress.
pub const PROG_TC_INGRESS: &str = "tc_ingress";
pub const PROG_TC_EGRESS: &str = "tc_egress";
/// cgroup_skb program of the net object, on a cgroup's ingress (`chaos net --cgroup`).
pub const PROG_CGROUP_SKB_INGRESS: &str = "cgroup_skb_ingress";

/// Tracepoints that keep a process tree's entries: a fork adds the child, an exit removes it.
pub const PROG_TRACEPOINT_FORK: &str = "tracepoint_sched_process_fork";
pub const PROG_TRACEPOINT_EXIT: &str = "tracepoint_sched_process_exit";

/// `chaos signal`: attached to `syscalls:sys_enter_NAME`, signals a target entering NAME.
pub const PROG_TRACEPOINT_SYSCALL_SIGNAL: &str = "tracepoint_syscall_signal";

/// `chaos fail --syscall`: a kprobe on the syscall's entry function that overrides its return.
pub const PROG_KPROBE_SYSCALL_OVERRIDE: &str = "kprobe_syscall_override";

/// Errno programs (object `errno`). cgroup programs fail calls of the processes in the cgroup
/// they are attached to; LSM programs are global and filter by target.
pub const PROG_CGROUP_CONNECT4: &str = "cgroup_connect4";
pub const PROG_CGROUP_CONNECT6: &str = "cgroup_connect6";
pub const PROG_CGROUP_BIND4: &str = "cgroup_bind4";
pub const PROG_CGROUP_BIND6: &str = "cgroup_bind6";
pub const PROG_CGROUP_SENDMSG4: &str = "cgroup_sendmsg4";
pub const PROG_CGROUP_SENDMSG6: &str = "cgroup_sendmsg6";
pub const PROG_CGROUP_SOCK_CREATE: &str = "cgroup_sock_create";

/// LSM errno programs: (program name, LSM hook).
pub const LSM_FILE_OPEN: (&str, &str) = ("lsm_file_open", "file_open");
pub const LSM_FILE_PERMISSION: (&str, &str) = ("lsm_file_permission", "file_permission");
pub const LSM_BPRM_CHECK: (&str, &str) = ("lsm_bprm_check", "bprm_check_security");
pub const LSM_TASK_ALLOC: (&str, &str) = ("lsm_task_alloc", "task_alloc");
pub const LSM_MMAP_FILE: (&str, &str) = ("lsm_mmap_file", "mmap_file");
pub const LSM_INODE_UNLINK: (&str, &str) = ("lsm_inode_unlink", "inode_unlink");
pub const LSM_INODE_RMDIR: (&str, &str) = ("lsm_inode_rmdir", "inode_rmdir");
pub const LSM_INODE_MKDIR: (&str, &str) = ("lsm_inode_mkdir", "inode_mkdir");
pub const LSM_INODE_RENAME: (&str, &str) = ("lsm_inode_rename", "inode_rename");
pub const LSM_INODE_LINK: (&str, &str) = ("lsm_inode_link", "inode_link");
pub const LSM_INODE_SYMLINK: (&str, &str) = ("lsm_inode_symlink", "inode_symlink");
pub const LSM_PATH_TRUNCATE: (&str, &str) = ("lsm_path_truncate", "path_truncate");
pub const LSM_PATH_CHMOD: (&str, &str) = ("lsm_path_chmod", "path_chmod");
pub const LSM_PATH_CHOWN: (&str, &str) = ("lsm_path_chown", "path_chown");
pub const LSM_FILE_IOCTL: (&str, &str) = ("lsm_file_ioctl", "file_ioctl");
pub const LSM_FILE_LOCK: (&str, &str) = ("lsm_file_lock", "file_lock");
pub const LSM_INODE_GETATTR: (&str, &str) = ("lsm_inode_getattr", "inode_getattr");
pub const LSM_SOCKET_CONNECT: (&str, &str) = ("lsm_socket_connect", "socket_connect");
pub const LSM_SOCKET_BIND: (&str, &str) = ("lsm_socket_bind", "socket_bind");
pub const LSM_SOCKET_LISTEN: (&str, &str) = ("lsm_socket_listen", "socket_listen");
pub const LSM_SOCKET_ACCEPT: (&str, &str) = ("lsm_socket_accept", "socket_accept");
pub const LSM_SOCKET_SENDMSG: (&str, &str) = ("lsm_socket_sendmsg", "socket_sendmsg");
pub const LSM_SOCKET_RECVMSG: (&str, &str) = ("lsm_socket_recvmsg", "socket_recvmsg");
pub const LSM_SOCKET_CREATE: (&str, &str) = ("lsm_socket_create", "socket_create");

/// Every program of the `errno` object, for checks that none is left in the kernel.
pub const ERRNO_PROGRAMS: &[&str] = &[
    PROG_KPROBE_SYSCALL_OVERRIDE,
    PROG_TRACEPOINT_SYSCALL_SIGNAL,
    PROG_TRACEPOINT_FORK,
    PROG_TRACEPOINT_EXIT,
    PROG_CGROUP_CONNECT4,
    PROG_CGROUP_CONNECT6,
    PROG_CGROUP_BIND4,
    PROG_CGROUP_BIND6,
    PROG_CGROUP_SENDMSG4,
    PROG_CGROUP_SENDMSG6,
    PROG_CGROUP_SOCK_CREATE,
    LSM_FILE_OPEN.0,
    LSM_FILE_PERMISSION.0,
    LSM_BPRM_CHECK.0,
    LSM_TASK_ALLOC.0,
    LSM_MMAP_FILE.0,
    LSM_INODE_UNLINK.0,
    LSM_INODE_RMDIR.0,
    LSM_INODE_MKDIR.0,
    LSM_INODE_RENAME.0,
    LSM_INODE_LINK.0,
    LSM_INODE_SYMLINK.0,
    LSM_PATH_TRUNCATE.0,
    LSM_PATH_CHMOD.0,
    LSM_PATH_CHOWN.0,
    LSM_FILE_IOCTL.0,
    LSM_FILE_LOCK.0,
    LSM_INODE_GETATTR.0,
    LSM_SOCKET_CONNECT.0,
    LSM_SOCKET_BIND.0,
    LSM_SOCKET_LISTEN.0,
    LSM_SOCKET_ACCEPT.0,
    LSM_SOCKET_SENDMSG.0,
    LSM_SOCKET_RECVMSG.0,
    LSM_SOCKET_CREATE.0,
];

/// Probe-only programs (object `probe`): loaded by `chaos probe` to learn what the kernel allows.
pub const PROG_PROBE_KPROBE_OVERRIDE: &str = "kprobe_override_probe";
pub const PROG_PROBE_TRACEPOINT_SIGNAL: &str = "tracepoint_signal_probe";
pub const PROG_PROBE_TC: &str = "tc_probe";
pub const PROG_PROBE_XDP: &str = "xdp_probe";
pub const PROG_PROBE_CGROUP_SKB: &str = "cgroup_skb_probe";
pub const PROG_PROBE_LSM_CGROUP: &str = "lsm_cgroup_probe";
/// The hook the lsm_cgroup probe program is written for.
pub const LSM_HOOK_SOCKET_BIND: &str = "socket_bind";

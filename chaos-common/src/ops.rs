//! The operation catalogue: every operation `chaos fail --op` can fail, one row each. A row says
//! which calls the operation covers, the mechanisms that can fail them in order of preference
//! (each with its programs and the filters it honours) and how it is numbered for the programs.
//! The planner, `--help`, README's table and the tests all read it; a new operation is one row
//! here, one eBPF function and one test.

use crate::hook::Hook;

/// Operation numbers: the bit of an operation in [`crate::fault::CallFault::ops`] and its column
/// in the counters ([`crate::counters::counter_index`]).
pub const OP_OPEN: u32 = 0;
pub const OP_READ: u32 = 1;
pub const OP_WRITE: u32 = 2;
pub const OP_EXEC: u32 = 3;
pub const OP_FORK: u32 = 4;
pub const OP_MMAP: u32 = 5;
pub const OP_UNLINK: u32 = 6;
pub const OP_RMDIR: u32 = 7;
pub const OP_MKDIR: u32 = 8;
pub const OP_RENAME: u32 = 9;
pub const OP_LINK: u32 = 10;
pub const OP_SYMLINK: u32 = 11;
pub const OP_TRUNCATE: u32 = 12;
pub const OP_CHMOD: u32 = 13;
pub const OP_CHOWN: u32 = 14;
pub const OP_IOCTL: u32 = 15;
pub const OP_LOCK: u32 = 16;
pub const OP_STAT: u32 = 17;
pub const OP_CONNECT: u32 = 18;
pub const OP_BIND: u32 = 19;
pub const OP_LISTEN: u32 = 20;
pub const OP_ACCEPT: u32 = 21;
pub const OP_SEND: u32 = 22;
pub const OP_RECV: u32 = 23;
pub const OP_SOCKET: u32 = 24;
/// Not an `--op`: a signal sent when a target enters one syscall (`chaos signal`).
pub const OP_SIGNAL: u32 = 25;
/// Not an `--op` either: one syscall failed at its entry (`chaos fail --syscall`).
pub const OP_SYSCALL: u32 = 26;
/// Not `--op`s of `chaos fail`: bios to a block device that complete with EIO (`chaos disk
/// error --op`), by what they do.
pub const OP_DISK_READ: u32 = 27;
pub const OP_DISK_WRITE: u32 = 28;
pub const OP_DISK_FLUSH: u32 = 29;
pub const OP_DISK_DISCARD: u32 = 30;
/// Not an `--op`: a target's statfs()/fstatfs() of one filesystem reports no free blocks
/// (`chaos disk full`).
pub const OP_STATFS: u32 = 31;
/// Not an `--op` of `chaos fail`: a target's read() results with bits flipped (`chaos
/// corrupt-io --op read`).
pub const OP_CORRUPT_READ: u32 = 32;
/// Not a call: the bytes corrupt-io altered, counted in the `injected` of its counters.
pub const OP_CORRUPT_BYTES: u32 = 33;
/// Not an `--op` of `chaos fail`: a target's return from chosen syscalls, delayed (`chaos
/// delay`).
pub const OP_DELAY: u32 = 34;
/// Not an `--op` of `chaos fail`: a target's clock reads (clock_gettime, gettimeofday, time)
/// returned shifted (`chaos clock`).
pub const OP_CLOCK: u32 = 35;
/// Not a call: a target's exec whose new image had the vDSO withheld (`chaos clock`).
pub const OP_CLOCK_EXEC: u32 = 36;
/// Number of operation numbers; sizes the counter map.
pub const OP_COUNT: u32 = 37;

/// Filters a mechanism can honour, as bits of [`Rung::filters`].
pub const FILTER_PATH: u32 = 1;
pub const FILTER_PORT: u32 = 2;
pub const FILTER_ADDR: u32 = 4;
pub const FILTER_FAMILY: u32 = 8;
/// `--family unix`: only hooks that run for UNIX sockets can honour it.
pub const FILTER_UNIX: u32 = 16;

/// The socket address filters of the hooks that see a destination or a local address.
const SOCKET_ADDRESS: u32 = FILTER_PORT | FILTER_ADDR | FILTER_FAMILY;

/// How the kernel is made to fail a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// BPF LSM programs return the errno: global hooks, filtered by target (needs trampoline
    /// programs and `bpf` in `lsm=`).
    Lsm,
    /// The same programs as fmod_ret programs on the hooks' `security_*` functions: where `bpf`
    /// is not in the active LSM list (needs trampoline programs only).
    FmodRet,
    /// cgroup programs on the target's cgroup v2 deny the call and set the errno with
    /// `bpf_set_retval`: only processes in that cgroup run them.
    Cgroup,
    /// A kprobe on the function overrides its return (`bpf_override_return`): only functions
    /// of the kernel's error-injection list (`--syscall`, `--kernel-fn`, an operation's
    /// syscalls), where the kernel has CONFIG_BPF_KPROBE_OVERRIDE.
    KprobeOverride,
}

impl Mechanism {
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Lsm,
        Mechanism::FmodRet,
        Mechanism::Cgroup,
        Mechanism::KprobeOverride,
    ];

    /// The name `--backend` takes and the report gives.
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Lsm => "lsm",
            Mechanism::FmodRet => "fmod_ret",
            Mechanism::Cgroup => "cgroup",
            Mechanism::KprobeOverride => "kprobe-override",
        }
    }
}

/// One way to fail an operation.
#[derive(Debug, PartialEq, Eq)]
pub struct Rung {
    pub mechanism: Mechanism,
    /// The programs, all attached (connect4 and connect6 together).
    pub hooks: &'static [Hook],
    /// What it fails when that is not every call of the operation, in words:
    /// "bind() on IPv4 and IPv6 sockets".
    pub only: &'static str,
    /// The `FILTER_*` bits it honours.
    pub filters: u32,
    /// A kernel option it needs beyond its mechanism's.
    pub needs: &'static str,
}

/// One operation `--op` takes.
#[derive(Debug, PartialEq, Eq)]
pub struct Op {
    pub code: u32,
    pub name: &'static str,
    /// The syscalls it covers (also what `--syscall` suggests it for).
    pub syscalls: &'static [&'static str],
    /// What else it covers, in words: "sendfile/splice reads".
    pub also: &'static str,
    /// The mechanisms that can fail it, the most complete first.
    pub rungs: &'static [Rung],
}

impl Op {
    /// The union of the filters its rungs honour.
    pub fn filters(&self) -> u32 {
        let mut filters = 0;
        let mut i = 0;
        while i < self.rungs.len() {
            filters |= self.rungs[i].filters;
            i += 1;
        }
        filters
    }
}

/// A BPF LSM program, and the `security_*` function its fmod_ret rung runs it on.
struct LsmProgram {
    program: &'static str,
    hook: &'static str,
    function: &'static str,
}

/// The LSM program of `hook`, named `lsm_` + its short name, on `security_` + the hook.
macro_rules! lsm {
    ($program:literal, $hook:literal) => {
        lsm!($program, $hook, concat!("security_", $hook))
    };
    ($program:literal, $hook:literal, $function:expr) => {
        LsmProgram {
            program: $program,
            hook: $hook,
            function: $function,
        }
    };
}

const fn sock_addr(program: &'static str, attach: &'static str) -> Hook {
    Hook::CgroupSockAddr { program, attach }
}

impl LsmProgram {
    /// The program's hook for `mechanism`, one of the two an LSM program has.
    const fn hook(&self, mechanism: Mechanism) -> Hook {
        match mechanism {
            Mechanism::Lsm => Hook::Lsm {
                program: self.program,
                hook: self.hook,
            },
            Mechanism::FmodRet => Hook::FmodRet {
                program: self.program,
                hook: self.hook,
                function: self.function,
            },
            Mechanism::Cgroup | Mechanism::KprobeOverride => {
                panic!("an LSM program has only an LSM and an fmod_ret hook")
            }
        }
    }
}

/// One rung of an LSM program: `Lsm` or `FmodRet`, honouring `filters`, with `only` and
/// `needs` as in [`Rung`].
macro_rules! rung {
    ($mechanism:ident, $program:expr, $filters:expr, $only:expr, $needs:expr) => {
        Rung {
            mechanism: Mechanism::$mechanism,
            hooks: &[$program.hook(Mechanism::$mechanism)],
            only: $only,
            filters: $filters,
            needs: $needs,
        }
    };
}

/// The two rungs of an LSM program: BPF LSM, else the same program as fmod_ret.
macro_rules! lsm_rungs {
    ($program:expr, $filters:expr, $only:expr, $needs:expr) => {
        [
            rung!(Lsm, $program, $filters, $only, $needs),
            rung!(FmodRet, $program, $filters, $only, $needs),
        ]
    };
}

/// `read` and `write` share one program: `file_permission`'s mask tells them apart.
const FILE_PERMISSION: LsmProgram = lsm!("lsm_file_permission", "file_permission");

/// The kprobe-override rung of operation `$name`: program `kprobe_NAME` on the entry function
/// of each of `$syscalls`, which sees no path nor address and nothing the kernel does for other
/// callers (sendfile, io_uring). `only` follows the syscalls' list in the report.
macro_rules! syscall_rung {
    ($name:literal, $syscalls:expr, $only:literal) => {
        Rung {
            mechanism: Mechanism::KprobeOverride,
            hooks: &[Hook::OpOverride {
                program: concat!("kprobe_", $name),
                syscalls: $syscalls,
            }],
            only: concat!("at their entry, nothing else", $only),
            filters: 0,
            needs: "",
        }
    };
}

/// An operation of one LSM program honouring `filters`, else a kprobe at each of its syscalls'
/// entry (`only` as in [`syscall_rung`]).
macro_rules! lsm_op {
    ($code:expr, $name:literal, $syscalls:expr, $also:literal, $program:expr, $filters:expr, $needs:literal, $only:literal) => {
        Op {
            code: $code,
            name: $name,
            syscalls: $syscalls,
            also: $also,
            rungs: &{
                let [lsm, fmod_ret] = lsm_rungs!($program, $filters, "", $needs);
                [lsm, fmod_ret, syscall_rung!($name, $syscalls, $only)]
            },
        }
    };
}

/// An operation on files: [`lsm_op`] with the `--path` filter.
macro_rules! file_op {
    ($code:expr, $name:literal, $syscalls:expr, $also:literal, $program:expr) => {
        file_op!($code, $name, $syscalls, $also, $program, "")
    };
    ($code:expr, $name:literal, $syscalls:expr, $also:literal, $program:expr, $needs:literal) => {
        lsm_op!(
            $code,
            $name,
            $syscalls,
            $also,
            $program,
            FILTER_PATH,
            $needs,
            ""
        )
    };
}

/// The syscalls of the socket operations with more than their LSM rungs.
const CONNECT: &[&str] = &["connect"];
const BIND: &[&str] = &["bind"];
const SEND: &[&str] = &["sendto", "sendmsg", "sendmmsg"];
const SOCKET: &[&str] = &["socket"];

/// The socket programs with more than their LSM rungs.
const SOCKET_CONNECT: LsmProgram = lsm!("lsm_socket_connect", "socket_connect");
const SOCKET_BIND: LsmProgram = lsm!("lsm_socket_bind", "socket_bind");
const SOCKET_SENDMSG: LsmProgram = lsm!("lsm_socket_sendmsg", "socket_sendmsg");
const SOCKET_CREATE: LsmProgram = lsm!("lsm_socket_create", "socket_create");
const SOCKET_CREATE_ONLY: &str = "socket() of every family, but not the kernel's own sockets";

/// Every operation, in the order `--help` and README list them.
pub const OPS: &[Op] = &[
    file_op!(
        OP_OPEN,
        "open",
        &["open", "openat", "openat2", "creat"],
        "",
        lsm!("lsm_file_open", "file_open")
    ),
    file_op!(
        OP_READ,
        "read",
        &["read", "readv", "pread64", "preadv", "preadv2"],
        "sendfile/splice reads",
        FILE_PERMISSION
    ),
    file_op!(
        OP_WRITE,
        "write",
        &["write", "writev", "pwrite64", "pwritev", "pwritev2"],
        "sendfile/splice writes; also writes to pipes and sockets",
        FILE_PERMISSION
    ),
    file_op!(
        OP_EXEC,
        "exec",
        &["execve", "execveat"],
        "",
        lsm!(
            "lsm_bprm_check",
            "bprm_check_security",
            "security_bprm_check"
        )
    ),
    lsm_op!(
        OP_FORK,
        "fork",
        &["fork", "vfork", "clone", "clone3"],
        "including new threads",
        lsm!("lsm_task_alloc", "task_alloc"),
        0,
        "",
        "; new threads too"
    ),
    file_op!(
        OP_MMAP,
        "mmap",
        &["mmap"],
        "file-backed and anonymous (the allocator's too)",
        lsm!("lsm_mmap_file", "mmap_file")
    ),
    file_op!(
        OP_UNLINK,
        "unlink",
        &["unlink", "unlinkat"],
        "",
        lsm!("lsm_inode_unlink", "inode_unlink")
    ),
    file_op!(
        OP_RMDIR,
        "rmdir",
        &["rmdir"],
        "unlinkat(AT_REMOVEDIR)",
        lsm!("lsm_inode_rmdir", "inode_rmdir")
    ),
    file_op!(
        OP_MKDIR,
        "mkdir",
        &["mkdir", "mkdirat"],
        "",
        lsm!("lsm_inode_mkdir", "inode_mkdir")
    ),
    file_op!(
        OP_RENAME,
        "rename",
        &["rename", "renameat", "renameat2"],
        "",
        lsm!("lsm_inode_rename", "inode_rename")
    ),
    file_op!(
        OP_LINK,
        "link",
        &["link", "linkat"],
        "",
        lsm!("lsm_inode_link", "inode_link")
    ),
    file_op!(
        OP_SYMLINK,
        "symlink",
        &["symlink", "symlinkat"],
        "",
        lsm!("lsm_inode_symlink", "inode_symlink")
    ),
    file_op!(
        OP_TRUNCATE,
        "truncate",
        &["truncate"],
        "by path; not ftruncate()",
        lsm!("lsm_path_truncate", "path_truncate"),
        "CONFIG_SECURITY_PATH"
    ),
    file_op!(
        OP_CHMOD,
        "chmod",
        &["chmod", "fchmod", "fchmodat", "fchmodat2"],
        "",
        lsm!("lsm_path_chmod", "path_chmod"),
        "CONFIG_SECURITY_PATH"
    ),
    file_op!(
        OP_CHOWN,
        "chown",
        &["chown", "fchown", "lchown", "fchownat"],
        "",
        lsm!("lsm_path_chown", "path_chown"),
        "CONFIG_SECURITY_PATH"
    ),
    file_op!(
        OP_IOCTL,
        "ioctl",
        &["ioctl"],
        "",
        lsm!("lsm_file_ioctl", "file_ioctl")
    ),
    file_op!(
        OP_LOCK,
        "lock",
        &["flock"],
        "fcntl() locks (unlocks too)",
        lsm!("lsm_file_lock", "file_lock")
    ),
    file_op!(
        OP_STAT,
        "stat",
        // The kernel's names for stat(), lstat() and fstat() of 64-bit callers.
        &["newstat", "newlstat", "newfstat", "newfstatat", "statx"],
        "",
        lsm!("lsm_inode_getattr", "inode_getattr")
    ),
    Op {
        code: OP_CONNECT,
        name: "connect",
        syscalls: CONNECT,
        also: "",
        rungs: &[
            Rung {
                mechanism: Mechanism::Cgroup,
                hooks: &[
                    sock_addr("cgroup_connect4", "connect4"),
                    sock_addr("cgroup_connect6", "connect6"),
                ],
                only: "connect() on IPv4 and IPv6 sockets, TCP and UDP (no packet leaves)",
                filters: SOCKET_ADDRESS,
                needs: "",
            },
            rung!(
                Lsm,
                SOCKET_CONNECT,
                SOCKET_ADDRESS | FILTER_UNIX,
                "connect() on sockets of every family, UNIX too",
                ""
            ),
            rung!(
                FmodRet,
                SOCKET_CONNECT,
                SOCKET_ADDRESS | FILTER_UNIX,
                "connect() on sockets of every family, UNIX too",
                ""
            ),
            syscall_rung!("connect", CONNECT, ""),
        ],
    },
    Op {
        code: OP_BIND,
        name: "bind",
        syscalls: BIND,
        also: "",
        rungs: &[
            Rung {
                mechanism: Mechanism::Cgroup,
                hooks: &[
                    sock_addr("cgroup_bind4", "bind4"),
                    sock_addr("cgroup_bind6", "bind6"),
                ],
                only: "bind() on IPv4 and IPv6 sockets",
                filters: SOCKET_ADDRESS,
                needs: "",
            },
            rung!(
                Lsm,
                SOCKET_BIND,
                SOCKET_ADDRESS | FILTER_UNIX,
                "bind() on sockets of every family, UNIX too",
                ""
            ),
            rung!(
                FmodRet,
                SOCKET_BIND,
                SOCKET_ADDRESS | FILTER_UNIX,
                "bind() on sockets of every family, UNIX too",
                ""
            ),
            syscall_rung!("bind", BIND, ""),
        ],
    },
    lsm_op!(
        OP_LISTEN,
        "listen",
        &["listen"],
        "",
        lsm!("lsm_socket_listen", "socket_listen"),
        0,
        "",
        ""
    ),
    lsm_op!(
        OP_ACCEPT,
        "accept",
        &["accept", "accept4"],
        "(a refused connection stays queued)",
        lsm!("lsm_socket_accept", "socket_accept"),
        0,
        "",
        ""
    ),
    Op {
        code: OP_SEND,
        name: "send",
        syscalls: SEND,
        also: "send() and write() on sockets, every protocol",
        rungs: &[
            rung!(Lsm, SOCKET_SENDMSG, SOCKET_ADDRESS | FILTER_UNIX, "", ""),
            rung!(
                FmodRet,
                SOCKET_SENDMSG,
                SOCKET_ADDRESS | FILTER_UNIX,
                "",
                ""
            ),
            syscall_rung!(
                "send",
                SEND,
                "; glibc's send() is sendto(), write() on a socket is not failed"
            ),
            Rung {
                mechanism: Mechanism::Cgroup,
                hooks: &[
                    sock_addr("cgroup_sendmsg4", "sendmsg4"),
                    sock_addr("cgroup_sendmsg6", "sendmsg6"),
                ],
                only: "UDP sendto()/sendmsg() that name a destination",
                filters: SOCKET_ADDRESS,
                needs: "",
            },
        ],
    },
    lsm_op!(
        OP_RECV,
        "recv",
        &["recvfrom", "recvmsg", "recvmmsg"],
        "recv() and read() on sockets",
        lsm!("lsm_socket_recvmsg", "socket_recvmsg"),
        0,
        "",
        "; glibc's recv() is recvfrom(), read() on a socket is not failed"
    ),
    Op {
        code: OP_SOCKET,
        name: "socket",
        syscalls: SOCKET,
        also: "",
        rungs: &[
            rung!(
                Lsm,
                SOCKET_CREATE,
                FILTER_FAMILY | FILTER_UNIX,
                SOCKET_CREATE_ONLY,
                ""
            ),
            rung!(
                FmodRet,
                SOCKET_CREATE,
                FILTER_FAMILY | FILTER_UNIX,
                SOCKET_CREATE_ONLY,
                ""
            ),
            syscall_rung!("socket", SOCKET, ""),
            Rung {
                mechanism: Mechanism::Cgroup,
                hooks: &[Hook::CgroupSock {
                    program: "cgroup_sock_create",
                    attach: "sock_create",
                }],
                only: "socket() of AF_INET and AF_INET6 only",
                filters: FILTER_FAMILY,
                needs: "",
            },
        ],
    },
];

/// The operation numbered `code`.
pub fn by_code(code: u32) -> Option<&'static Op> {
    OPS.iter().find(|op| op.code == code)
}

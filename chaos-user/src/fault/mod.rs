//! The typed fault model and its parsing: what to fail, and how.

use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

use chaos_common::{errno, names};
use thiserror::Error;

use crate::errno_names;

pub mod net;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("unknown operation '{0}': expected one of {ops}", ops = Op::names().join(", "))]
    UnknownOp(String),
    #[error(
        "unknown errno '{0}': expected a name such as EIO or ECONNREFUSED, or a number from 1 to 4095"
    )]
    UnknownErrno(String),
    #[error(
        "errno {0} is internal to the kernel (ERESTARTSYS and the codes after it, 512-531), which restarts the call or hides it; expected a number from 1 to 4095 outside 512-531, or a name such as EIO"
    )]
    KernelInternalErrno(i64),
    #[error("errno {0} is out of range: expected a number from 1 to 4095, or a name such as EIO")]
    ErrnoOutOfRange(i64),
    #[error(
        "invalid duration '{0}': expected a positive duration of at most 365 days, such as 30s, 1m30s or 250ms"
    )]
    InvalidDuration(String),
    #[error("invalid PID '{0}': expected a process ID greater than 0")]
    InvalidPid(String),
    #[error("unknown backend '{0}': expected auto, lsm or cgroup")]
    UnknownBackend(String),
    #[error(
        "invalid probability '{0}': expected a number greater than 0 and at most 1, such as 0.1"
    )]
    InvalidProbability(String),
    #[error("invalid count '{0}': expected a whole number of at least 1")]
    InvalidCount(String),
    #[error(
        "unknown signal '{0}': expected a name such as KILL, SIGSTOP, SEGV, ABRT, or a number from 1 to 31"
    )]
    UnknownSignal(String),
    #[error("invalid syscall name '{0}': expected a name such as fsync, write or openat")]
    InvalidSyscall(String),
    #[error("invalid port '{0}': expected a number from 1 to 65535")]
    InvalidPort(String),
    #[error("unknown family '{0}': expected inet, inet6 or unix")]
    UnknownFamily(String),
    #[error(
        "invalid address '{0}': expected an IPv4 or IPv6 address or network, such as 10.0.0.5, 10.0.0.0/8 or 2001:db8::/32"
    )]
    InvalidAddr(String),
    #[error(
        "--{filter} filters socket addresses, which only the hooks of {accepted} see; --op {op} cannot take it"
    )]
    FilterNotApplicable {
        filter: &'static str,
        op: Op,
        accepted: &'static str,
    },
    #[error(
        "--{filter} cannot be combined with --family unix: UNIX sockets have no ports or IP addresses"
    )]
    NotForUnix { filter: &'static str },
    #[error("--family unix needs the lsm backend: cgroup socket hooks never run for UNIX sockets")]
    NotForCgroup,
    #[error(
        "--cgroup takes only `chaos net drop --direction ingress`: a cgroup_skb program can drop what arrives for a cgroup's sockets, while its egress drops are reported to the sender and it can neither copy nor rewrite packets; use --iface, --netns or --container for those"
    )]
    CgroupNetIngressDropOnly,
    #[error(
        "--delay {delay} with --jitter {jitter} reaches past {horizon:?}, the fq qdisc's horizon (fq drops packets timed later): expected a delay plus 4 x jitter of at most that"
    )]
    DelayPastHorizon {
        delay: String,
        jitter: String,
        horizon: std::time::Duration,
    },
    #[error(
        "invalid rate '{0}': expected a number with a unit, bit, kbit, mbit or gbit (bits per second) or bps, kbps, mbps, gbps (bytes per second), between 8kbit and 100gbit, such as 10mbit"
    )]
    InvalidRate(String),
    #[error(
        "invalid loss model '{0}': expected gemodel:P,R[,1-H[,1-K]] with percentages (netem's Gilbert-Elliott parameters), such as gemodel:1,10 or gemodel:5,20,100,0"
    )]
    InvalidLossModel(String),
    #[error("--loss-model is for `chaos net drop`: a {0} picks its packets by --probability")]
    LossModelOnlyForDrop(&'static str),
    #[error(
        "--proto icmp: `chaos net corrupt` flips bits in TCP and UDP payloads: expected --proto tcp or udp, or no --proto (both)"
    )]
    CorruptNeedsTcpOrUdp,
    #[error("unknown DNS response code '{0}': expected SERVFAIL, NXDOMAIN or REFUSED")]
    UnknownRcode(String),
    #[error(
        "invalid DNS name '{0}': expected a domain such as example.com (labels of letters, digits, - and _, 1 to 63 bytes each, 253 characters in all)"
    )]
    InvalidDnsName(String),
    #[error("unknown distribution '{0}': expected uniform, normal, pareto or paretonormal")]
    UnknownDistribution(String),
    #[error("--distribution {0} needs --jitter: the distribution shapes the jitter")]
    DistributionWithoutJitter(String),
    #[error(
        "cannot read the {name} distribution table (iproute2's {name}.dist, searched in {searched}): {reason}; install iproute2 or use --distribution uniform"
    )]
    DistributionTable {
        name: &'static str,
        searched: String,
        reason: String,
    },
    #[error("unknown direction '{0}': expected ingress, egress or both")]
    UnknownDirection(String),
    #[error("unknown protocol '{0}': expected tcp, udp or icmp")]
    UnknownProto(String),
    #[error("--sport and --dport need --proto tcp or udp (or no --proto): ICMP has no ports")]
    PortWithoutPorts,
    #[error("--path {path}: {reason}: expected an existing file or directory")]
    InvalidPath { path: String, reason: String },
    #[error(
        "--path filters the files calls act on; --op {0} acts on none (it accepts open, read, write, exec, mmap, unlink, rmdir, mkdir, rename, link, symlink, truncate, chmod, chown, ioctl, lock, stat)"
    )]
    PathNotApplicable(Op),
}

/// An operation an errno fault can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// open(), openat(), openat2(), creat()
    Open,
    /// read(), readv(), pread(), preadv(), sendfile/splice reads
    Read,
    /// write(), writev(), pwrite(), pwritev(), sendfile/splice writes
    Write,
    /// execve(), execveat()
    Exec,
    /// fork(), vfork(), clone(), clone3(), including new threads
    Fork,
    /// mmap(), file-backed and anonymous
    Mmap,
    /// unlink(), unlinkat()
    Unlink,
    /// rmdir(), unlinkat(AT_REMOVEDIR)
    Rmdir,
    /// mkdir(), mkdirat()
    Mkdir,
    /// rename(), renameat(), renameat2()
    Rename,
    /// link(), linkat()
    Link,
    /// symlink(), symlinkat()
    Symlink,
    /// truncate() by path (not ftruncate())
    Truncate,
    /// chmod(), fchmod(), fchmodat()
    Chmod,
    /// chown(), fchown(), lchown(), fchownat()
    Chown,
    /// ioctl()
    Ioctl,
    /// flock(), fcntl() locks
    Lock,
    /// stat(), lstat(), fstat(), newfstatat(), statx()
    Stat,
    /// connect() on IPv4 and IPv6 sockets
    Connect,
    /// bind() on IPv4 and IPv6 sockets
    Bind,
    /// listen()
    Listen,
    /// accept(), accept4()
    Accept,
    /// send(), sendto(), sendmsg(), write() on sockets
    Send,
    /// recv(), recvfrom(), recvmsg(), read() on sockets
    Recv,
    /// socket() of every family
    Socket,
}

impl Op {
    pub const ALL: [Op; 25] = [
        Op::Open,
        Op::Read,
        Op::Write,
        Op::Exec,
        Op::Fork,
        Op::Mmap,
        Op::Unlink,
        Op::Rmdir,
        Op::Mkdir,
        Op::Rename,
        Op::Link,
        Op::Symlink,
        Op::Truncate,
        Op::Chmod,
        Op::Chown,
        Op::Ioctl,
        Op::Lock,
        Op::Stat,
        Op::Connect,
        Op::Bind,
        Op::Listen,
        Op::Accept,
        Op::Send,
        Op::Recv,
        Op::Socket,
    ];

    /// Whether the op acts on sockets (and so on no file a `--path` filter could name).
    pub const fn is_socket_op(self) -> bool {
        matches!(
            self,
            Op::Connect | Op::Bind | Op::Listen | Op::Accept | Op::Send | Op::Recv | Op::Socket
        )
    }

    pub const fn name(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Exec => "exec",
            Op::Fork => "fork",
            Op::Mmap => "mmap",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Mkdir => "mkdir",
            Op::Rename => "rename",
            Op::Link => "link",
            Op::Symlink => "symlink",
            Op::Truncate => "truncate",
            Op::Chmod => "chmod",
            Op::Chown => "chown",
            Op::Ioctl => "ioctl",
            Op::Lock => "lock",
            Op::Stat => "stat",
            Op::Connect => "connect",
            Op::Bind => "bind",
            Op::Listen => "listen",
            Op::Accept => "accept",
            Op::Send => "send",
            Op::Recv => "recv",
            Op::Socket => "socket",
        }
    }

    /// The operation number the eBPF side uses (`chaos_common::errno::OP_*`).
    pub const fn code(self) -> u32 {
        match self {
            Op::Open => errno::OP_OPEN,
            Op::Read => errno::OP_READ,
            Op::Write => errno::OP_WRITE,
            Op::Exec => errno::OP_EXEC,
            Op::Fork => errno::OP_FORK,
            Op::Mmap => errno::OP_MMAP,
            Op::Unlink => errno::OP_UNLINK,
            Op::Rmdir => errno::OP_RMDIR,
            Op::Mkdir => errno::OP_MKDIR,
            Op::Rename => errno::OP_RENAME,
            Op::Link => errno::OP_LINK,
            Op::Symlink => errno::OP_SYMLINK,
            Op::Truncate => errno::OP_TRUNCATE,
            Op::Chmod => errno::OP_CHMOD,
            Op::Chown => errno::OP_CHOWN,
            Op::Ioctl => errno::OP_IOCTL,
            Op::Lock => errno::OP_LOCK,
            Op::Stat => errno::OP_STAT,
            Op::Connect => errno::OP_CONNECT,
            Op::Bind => errno::OP_BIND,
            Op::Listen => errno::OP_LISTEN,
            Op::Accept => errno::OP_ACCEPT,
            Op::Send => errno::OP_SEND,
            Op::Recv => errno::OP_RECV,
            Op::Socket => errno::OP_SOCKET,
        }
    }

    /// The ways the kernel can fail this operation, the most complete first.
    pub fn backends(self) -> &'static [Backend] {
        match self {
            Op::Open => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "open(), openat(), openat2(), creat()",
                hooks: &[Hook::Lsm(names::LSM_FILE_OPEN)],
            }],
            Op::Read => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "read(), readv(), pread(), preadv(), sendfile/splice reads",
                hooks: &[Hook::Lsm(names::LSM_FILE_PERMISSION)],
            }],
            Op::Write => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "write(), writev(), pwrite(), pwritev(), sendfile/splice writes",
                hooks: &[Hook::Lsm(names::LSM_FILE_PERMISSION)],
            }],
            Op::Exec => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "execve(), execveat()",
                hooks: &[Hook::Lsm(names::LSM_BPRM_CHECK)],
            }],
            Op::Fork => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "fork(), vfork(), clone(), clone3(), including new threads",
                hooks: &[Hook::Lsm(names::LSM_TASK_ALLOC)],
            }],
            Op::Mmap => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "mmap(), file-backed and anonymous",
                hooks: &[Hook::Lsm(names::LSM_MMAP_FILE)],
            }],
            Op::Unlink => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "unlink(), unlinkat()",
                hooks: &[Hook::Lsm(names::LSM_INODE_UNLINK)],
            }],
            Op::Rmdir => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "rmdir(), unlinkat(AT_REMOVEDIR)",
                hooks: &[Hook::Lsm(names::LSM_INODE_RMDIR)],
            }],
            Op::Mkdir => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "mkdir(), mkdirat()",
                hooks: &[Hook::Lsm(names::LSM_INODE_MKDIR)],
            }],
            Op::Rename => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "rename(), renameat(), renameat2()",
                hooks: &[Hook::Lsm(names::LSM_INODE_RENAME)],
            }],
            Op::Link => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "link(), linkat()",
                hooks: &[Hook::Lsm(names::LSM_INODE_LINK)],
            }],
            Op::Symlink => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "symlink(), symlinkat()",
                hooks: &[Hook::Lsm(names::LSM_INODE_SYMLINK)],
            }],
            Op::Truncate => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "truncate() by path (not ftruncate())",
                hooks: &[Hook::Lsm(names::LSM_PATH_TRUNCATE)],
            }],
            Op::Chmod => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "chmod(), fchmod(), fchmodat()",
                hooks: &[Hook::Lsm(names::LSM_PATH_CHMOD)],
            }],
            Op::Chown => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "chown(), fchown(), lchown(), fchownat()",
                hooks: &[Hook::Lsm(names::LSM_PATH_CHOWN)],
            }],
            Op::Ioctl => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "ioctl()",
                hooks: &[Hook::Lsm(names::LSM_FILE_IOCTL)],
            }],
            Op::Lock => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "flock(), fcntl() locks",
                hooks: &[Hook::Lsm(names::LSM_FILE_LOCK)],
            }],
            Op::Stat => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "stat(), lstat(), fstat(), newfstatat(), statx()",
                hooks: &[Hook::Lsm(names::LSM_INODE_GETATTR)],
            }],
            Op::Connect => &[
                Backend {
                    mechanism: Mechanism::Cgroup,
                    covers: "connect() on IPv4 and IPv6 sockets",
                    hooks: &[
                        Hook::SockAddr(names::PROG_CGROUP_CONNECT4),
                        Hook::SockAddr(names::PROG_CGROUP_CONNECT6),
                    ],
                },
                Backend {
                    mechanism: Mechanism::Lsm,
                    covers: "connect() on sockets of every family, UNIX included",
                    hooks: &[Hook::Lsm(names::LSM_SOCKET_CONNECT)],
                },
            ],
            Op::Bind => &[
                Backend {
                    mechanism: Mechanism::Cgroup,
                    covers: "bind() on IPv4 and IPv6 sockets",
                    hooks: &[
                        Hook::SockAddr(names::PROG_CGROUP_BIND4),
                        Hook::SockAddr(names::PROG_CGROUP_BIND6),
                    ],
                },
                Backend {
                    mechanism: Mechanism::Lsm,
                    covers: "bind() on sockets of every family, UNIX included",
                    hooks: &[Hook::Lsm(names::LSM_SOCKET_BIND)],
                },
            ],
            Op::Listen => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "listen()",
                hooks: &[Hook::Lsm(names::LSM_SOCKET_LISTEN)],
            }],
            Op::Accept => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "accept(), accept4()",
                hooks: &[Hook::Lsm(names::LSM_SOCKET_ACCEPT)],
            }],
            Op::Send => &[
                Backend {
                    mechanism: Mechanism::Lsm,
                    covers: "send(), sendto(), sendmsg(), write() on sockets",
                    hooks: &[Hook::Lsm(names::LSM_SOCKET_SENDMSG)],
                },
                Backend {
                    mechanism: Mechanism::Cgroup,
                    covers: "UDP sendto()/sendmsg() that name a destination",
                    hooks: &[
                        Hook::SockAddr(names::PROG_CGROUP_SENDMSG4),
                        Hook::SockAddr(names::PROG_CGROUP_SENDMSG6),
                    ],
                },
            ],
            Op::Recv => &[Backend {
                mechanism: Mechanism::Lsm,
                covers: "recv(), recvfrom(), recvmsg(), read() on sockets",
                hooks: &[Hook::Lsm(names::LSM_SOCKET_RECVMSG)],
            }],
            Op::Socket => &[
                Backend {
                    mechanism: Mechanism::Lsm,
                    covers: "socket() of every family",
                    hooks: &[Hook::Lsm(names::LSM_SOCKET_CREATE)],
                },
                Backend {
                    mechanism: Mechanism::Cgroup,
                    covers: "socket() of AF_INET and AF_INET6 only",
                    hooks: &[Hook::Sock(names::PROG_CGROUP_SOCK_CREATE)],
                },
            ],
        }
    }

    fn names() -> Vec<&'static str> {
        Op::ALL.iter().map(|op| op.name()).collect()
    }

    /// The operation that covers `syscall`, for suggesting it when `--syscall` cannot work.
    pub fn covering(syscall: &str) -> Option<Op> {
        let op = match syscall {
            "open" | "openat" | "openat2" | "creat" => Op::Open,
            "read" | "readv" | "pread64" | "preadv" | "preadv2" => Op::Read,
            "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2" => Op::Write,
            "execve" | "execveat" => Op::Exec,
            "fork" | "vfork" | "clone" | "clone3" => Op::Fork,
            "mmap" => Op::Mmap,
            "unlink" | "unlinkat" => Op::Unlink,
            "rmdir" => Op::Rmdir,
            "mkdir" | "mkdirat" => Op::Mkdir,
            "rename" | "renameat" | "renameat2" => Op::Rename,
            "link" | "linkat" => Op::Link,
            "symlink" | "symlinkat" => Op::Symlink,
            "truncate" => Op::Truncate,
            "chmod" | "fchmod" | "fchmodat" => Op::Chmod,
            "chown" | "fchown" | "lchown" | "fchownat" => Op::Chown,
            "ioctl" => Op::Ioctl,
            "flock" => Op::Lock,
            "stat" | "lstat" | "fstat" | "newfstatat" | "statx" => Op::Stat,
            "connect" => Op::Connect,
            "bind" => Op::Bind,
            "listen" => Op::Listen,
            "accept" | "accept4" => Op::Accept,
            "sendto" | "sendmsg" | "sendmmsg" => Op::Send,
            "recvfrom" | "recvmsg" | "recvmmsg" => Op::Recv,
            "socket" => Op::Socket,
            _ => return None,
        };
        Some(op)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Op::ALL
            .into_iter()
            .find(|op| op.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseError::UnknownOp(s.to_owned()))
    }
}

/// How the kernel is made to fail a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// BPF LSM programs return the errno: global hooks, filtered by target (needs trampoline
    /// programs and `bpf` in `lsm=`).
    Lsm,
    /// cgroup programs on the target's cgroup v2 deny the call and set the errno with
    /// `bpf_set_retval`: only processes in that cgroup run them.
    Cgroup,
}

impl Mechanism {
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Lsm => "lsm",
            Mechanism::Cgroup => "cgroup",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which mechanism `--backend` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The most complete mechanism the running kernel offers.
    #[default]
    Auto,
    Only(Mechanism),
}

impl FromStr for BackendChoice {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "lsm" => Ok(BackendChoice::Only(Mechanism::Lsm)),
            "cgroup" => Ok(BackendChoice::Only(Mechanism::Cgroup)),
            other => Err(ParseError::UnknownBackend(other.to_owned())),
        }
    }
}

/// A program and the hook it attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// An LSM program: (program name, LSM hook).
    Lsm((&'static str, &'static str)),
    /// A cgroup sock_addr program (connect, bind, sendmsg).
    SockAddr(&'static str),
    /// A cgroup sock program (sock_create).
    Sock(&'static str),
}

impl Hook {
    pub const fn program(self) -> &'static str {
        match self {
            Hook::Lsm((program, _)) | Hook::SockAddr(program) | Hook::Sock(program) => program,
        }
    }
}

/// One way to fail an operation: a mechanism, its programs, and what it covers.
#[derive(Debug, PartialEq, Eq)]
pub struct Backend {
    pub mechanism: Mechanism,
    /// The calls this backend fails, as the report and `--help` say.
    pub covers: &'static str,
    pub hooks: &'static [Hook],
}

/// A positive errno value, parsed from a name (`EIO`) or a number (`5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(i32);

impl Errno {
    /// Linux reserves the top 4095 values of a return for errors.
    const MAX: i64 = 4095;
    /// ERESTARTSYS (512) to ENOGRACE (531), linux/errno.h: codes the kernel keeps to itself. A
    /// restart code makes the kernel redo the call or turn it into EINTR; the rest would reach a
    /// program as numbers no libc knows.
    const KERNEL_INTERNAL: std::ops::RangeInclusive<i64> = 512..=531;

    pub const fn get(self) -> i32 {
        self.0
    }

    /// An errno the kernel returned; trusted to be in range.
    pub const fn from_raw(errno: i32) -> Self {
        Errno(errno)
    }
}

impl FromStr for Errno {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(number) = s.parse::<i64>() {
            return if Errno::KERNEL_INTERNAL.contains(&number) {
                Err(ParseError::KernelInternalErrno(number))
            } else if (1..=Errno::MAX).contains(&number) {
                Ok(Errno(number as i32))
            } else {
                Err(ParseError::ErrnoOutOfRange(number))
            };
        }
        errno_names::number(s)
            .map(Errno)
            .ok_or_else(|| ParseError::UnknownErrno(s.to_owned()))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match errno_names::name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A signal, by name (`KILL`, `SIGKILL`, case-insensitive) or number (1-31).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    const NAMES: &[(&str, i32)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("SYS", libc::SIGSYS),
    ];

    pub const fn get(self) -> i32 {
        self.0
    }
}

impl FromStr for Signal {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(number) = s.parse::<i32>() {
            return if (1..=31).contains(&number) {
                Ok(Signal(number))
            } else {
                Err(ParseError::UnknownSignal(s.to_owned()))
            };
        }
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Signal::NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|&(_, number)| Signal(number))
            .ok_or_else(|| ParseError::UnknownSignal(s.to_owned()))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Signal::NAMES.iter().find(|&&(_, number)| number == self.0) {
            Some((name, _)) => write!(f, "SIG{name}"),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// Parses a syscall name: what follows `sys_enter_` in the tracepoint's name.
pub fn parse_syscall(s: &str) -> Result<String, ParseError> {
    let valid = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(s.to_owned())
    } else {
        Err(ParseError::InvalidSyscall(s.to_owned()))
    }
}

/// A signal fault: the target gets `signal` when it enters `syscall`.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalFault {
    pub syscall: String,
    pub signal: Signal,
    pub dry_run: bool,
    pub when: When,
}

impl SignalFault {
    /// The fault as the kernel side reads it (the deadline is set when attaching).
    pub fn kernel(&self) -> errno::ErrnoFault {
        self.when
            .kernel(1 << errno::OP_SIGNAL, self.signal.get(), self.dry_run)
    }
}

/// Parses a port: 1-65535.
pub fn parse_port(s: &str) -> Result<u16, ParseError> {
    match s.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ParseError::InvalidPort(s.to_owned())),
    }
}

/// Parses an address family: `inet`, `inet6` or `unix`; returns AF_INET, AF_INET6 or AF_UNIX.
pub fn parse_family(s: &str) -> Result<u32, ParseError> {
    match s {
        "inet" | "ipv4" => Ok(errno::AF_INET),
        "inet6" | "ipv6" => Ok(errno::AF_INET6),
        "unix" | "local" => Ok(errno::AF_UNIX),
        other => Err(ParseError::UnknownFamily(other.to_owned())),
    }
}

/// An IP network from `--addr`: an address with an optional prefix length (`10.0.0.0/8`); a bare
/// address is the host alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The network as the kernel side compares it: IPv6 words, IPv4 as `::ffff:a.b.c.d/96+len`,
    /// in network byte order; the address already masked.
    pub fn kernel_words(&self) -> ([u32; 4], [u32; 4]) {
        let (bytes, prefix) = match self.addr {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 96 + u32::from(self.prefix)),
            IpAddr::V6(v6) => (v6.octets(), u32::from(self.prefix)),
        };
        let mask = u128::MAX
            .checked_shl(128 - prefix)
            .unwrap_or(0)
            .to_be_bytes();
        let words = |bytes: [u8; 16]| {
            std::array::from_fn(|i| {
                u32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"))
            })
        };
        let masked = std::array::from_fn(|i| bytes[i] & mask[i]);
        (words(masked), words(mask))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses `--addr`: `ADDRESS[/PREFIX]`, IPv4 or IPv6.
pub fn parse_cidr(s: &str) -> Result<Cidr, ParseError> {
    let invalid = || ParseError::InvalidAddr(s.to_owned());
    let (addr, prefix) = match s.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= max)
            .ok_or_else(invalid)?,
        None => max,
    };
    Ok(Cidr { addr, prefix })
}

/// Address filters of a socket fault: `--port`, `--addr`, `--family`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketFilter {
    pub port: Option<u16>,
    pub addr: Option<Cidr>,
    pub family: Option<u32>,
}

impl SocketFilter {
    /// Checks that every op can see what the filter asks about: ports and addresses the hooks of
    /// connect, bind and send; families those and socket's.
    pub fn check(&self, ops: &[Op]) -> Result<(), ParseError> {
        for &op in ops {
            let sees_address = matches!(op, Op::Connect | Op::Bind | Op::Send);
            let refuse = |filter| {
                Err(ParseError::FilterNotApplicable {
                    filter,
                    op,
                    accepted: "connect, bind and send",
                })
            };
            if self.port.is_some() && !sees_address {
                return refuse("port");
            }
            if self.addr.is_some() && !sees_address {
                return refuse("addr");
            }
            if self.family.is_some() && !(sees_address || op == Op::Socket) {
                return Err(ParseError::FilterNotApplicable {
                    filter: "family",
                    op,
                    accepted: "connect, bind, send and socket",
                });
            }
        }
        if self.family == Some(errno::AF_UNIX) {
            if self.port.is_some() {
                return Err(ParseError::NotForUnix { filter: "port" });
            }
            if self.addr.is_some() {
                return Err(ParseError::NotForUnix { filter: "addr" });
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.port.is_none() && self.addr.is_none() && self.family.is_none()
    }

    /// Whether only the LSM hooks see the calls this filter picks (cgroup socket hooks never run
    /// for UNIX sockets).
    pub fn needs_lsm(&self) -> bool {
        self.family == Some(errno::AF_UNIX)
    }
}

/// `--path`: only calls on the files at or below a directory (or on one file), identified as the
/// kernel's hooks see it: the inode number and the filesystem (`s_dev`) of its inode.
///
/// Held open (`O_PATH`) while the run lasts, so the inode stays in the kernel's cache: overlayfs
/// numbers directories on mixed filesystems as it loads them, and that number must not change.
#[derive(Clone, Debug)]
pub struct PathFilter {
    pub path: std::path::PathBuf,
    pub ino: u64,
    /// The filesystem as the kernel numbers it (`s_dev`: `MAJOR << 20 | MINOR`).
    pub dev: u32,
    _held: std::sync::Arc<std::fs::File>,
}

impl PartialEq for PathFilter {
    fn eq(&self, other: &Self) -> bool {
        (&self.path, self.ino, self.dev) == (&other.path, other.ino, other.dev)
    }
}

impl PathFilter {
    /// Checks that every op acts on a file the hooks can see.
    pub fn check(ops: &[Op]) -> Result<(), ParseError> {
        match ops
            .iter()
            .find(|op| matches!(op, Op::Fork) || op.is_socket_op())
        {
            Some(&op) => Err(ParseError::PathNotApplicable(op)),
            None => Ok(()),
        }
    }
}

/// Parses `--path`: an existing file or directory, resolved now (symlinks followed, and the
/// `/proc/PID/root` of a container's process into that container's files).
///
/// The inode number is `stat`'s, which is the inode's own on every filesystem (on overlayfs too,
/// whose `st_ino` is the overlay inode's number). The device is not `stat`'s: overlayfs reports
/// a file's `st_dev` as the layer's, while the hooks see the overlay's inode, on the overlay's
/// superblock. The superblock's number is the mount's, from mountinfo.
pub fn parse_path_filter(s: &str) -> Result<PathFilter, ParseError> {
    use std::os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _};
    let invalid = |reason: String| ParseError::InvalidPath {
        path: s.to_owned(),
        reason,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(s)
        .map_err(|err| invalid(err.to_string()))?;
    let metadata = file.metadata().map_err(|err| invalid(err.to_string()))?;
    let dev = superblock_dev(file.as_raw_fd()).map_err(invalid)?;
    let path = std::path::absolute(s).map_err(|err| invalid(err.to_string()))?;
    Ok(PathFilter {
        path,
        ino: std::os::unix::fs::MetadataExt::ino(&metadata),
        dev,
        _held: std::sync::Arc::new(file),
    })
}

/// The `s_dev` of the superblock the open file `fd` is on: its mount's ID from
/// /proc/self/fdinfo, and that mount's `MAJOR:MINOR` from a mountinfo that lists it (ours, or,
/// for a file in another mount namespace, a process's there: mount IDs are unique machine-wide).
fn superblock_dev(fd: i32) -> Result<u32, String> {
    let fdinfo = format!("/proc/self/fdinfo/{fd}");
    let info = std::fs::read_to_string(&fdinfo).map_err(|err| format!("{fdinfo}: {err}"))?;
    let mount_id = info
        .lines()
        .find_map(|line| line.strip_prefix("mnt_id:"))
        .map(str::trim)
        .ok_or_else(|| format!("{fdinfo} has no mnt_id"))?
        .to_owned();
    let in_mountinfo = |path: &std::path::Path| -> Option<u32> {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next()? == mount_id).then_some(())?;
            let (major, minor) = fields.nth(1)?.split_once(':')?;
            Some((major.parse::<u32>().ok()? << 20) | minor.parse::<u32>().ok()?)
        })
    };
    let others = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|entry| entry.path().join("mountinfo"));
    std::iter::once(std::path::PathBuf::from("/proc/self/mountinfo"))
        .chain(others)
        .find_map(|path| in_mountinfo(&path))
        .ok_or_else(|| format!("mount {mount_id} is in no /proc/*/mountinfo"))
}

/// Parses a run duration: positive, humantime syntax (`30s`, `1m30s`, `250ms`).
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    match humantime::parse_duration(s) {
        Ok(duration) if !duration.is_zero() && duration <= MAX_DURATION => Ok(duration),
        _ => Err(ParseError::InvalidDuration(s.to_owned())),
    }
}

/// The longest duration any option takes: longer ones are typos (and would overflow clocks).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a PID: a positive integer.
pub fn parse_pid(s: &str) -> Result<u32, ParseError> {
    match s.parse::<u32>() {
        Ok(pid) if pid > 0 && pid <= i32::MAX as u32 => Ok(pid),
        _ => Err(ParseError::InvalidPid(s.to_owned())),
    }
}

/// An errno fault: the listed operations of the targets fail with `errno`.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrnoFault {
    pub ops: Vec<Op>,
    pub errno: Errno,
    /// Count matching calls but fail none.
    pub dry_run: bool,
    pub backend: BackendChoice,
    pub when: When,
    /// One syscall failed through a kprobe override (`--syscall`), besides the ops.
    pub syscall: Option<String>,
    pub filter: SocketFilter,
    pub path: Option<PathFilter>,
}

/// Which of the covered calls fail, like strace's `inject=…:when=`: the first `after` pass; of
/// the rest, every `every`-th is a candidate; a candidate fails with `probability`; at most
/// `count` fail.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct When {
    pub after: u64,
    pub every: u64,
    pub count: Option<u64>,
    pub probability: f64,
}

impl Default for When {
    fn default() -> Self {
        When {
            after: 0,
            every: 1,
            count: None,
            probability: 1.0,
        }
    }
}

impl When {
    /// A kernel fault for `ops` with these rules (the deadline is set when attaching).
    pub fn kernel(&self, ops: u64, value: i32, dry_run: bool) -> errno::ErrnoFault {
        errno::ErrnoFault {
            ops,
            deadline_ns: 0,
            after: self.after,
            every: self.every,
            count: self.count.unwrap_or(0),
            probability: self.probability_threshold(),
            errno: value,
            dry_run: u32::from(dry_run),
            port: 0,
            family: 0,
            addr: [0; 4],
            addr_mask: [0; 4],
            dir_ino: 0,
            dir_dev: 0,
            _pad: 0,
        }
    }

    /// The probability as the kernel compares it: a 32-bit draw below this injects.
    pub fn probability_threshold(&self) -> u64 {
        probability_threshold(self.probability)
    }
}

/// A probability in (0, 1] as the programs compare it: a 32-bit random draw below the result
/// acts; [`errno::PROBABILITY_ONE`] is above every draw.
pub fn probability_threshold(probability: f64) -> u64 {
    ((probability * (1u64 << 32) as f64).round() as u64).clamp(1, errno::PROBABILITY_ONE)
}

/// Parses a probability in (0, 1].
pub fn parse_probability(s: &str) -> Result<f64, ParseError> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(ParseError::InvalidProbability(s.to_owned())),
    }
}

/// Parses a count of at least 1 (for `--count` and `--every`).
pub fn parse_count(s: &str) -> Result<u64, ParseError> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ParseError::InvalidCount(s.to_owned())),
    }
}

impl ErrnoFault {
    /// The fault as the kernel side reads it (the deadline is set when attaching).
    pub fn kernel(&self) -> errno::ErrnoFault {
        let (addr, addr_mask) = self
            .filter
            .addr
            .map_or(([0; 4], [0; 4]), |cidr| cidr.kernel_words());
        errno::ErrnoFault {
            port: self.filter.port.map_or(0, u32::from),
            family: self.filter.family.unwrap_or(0),
            addr,
            addr_mask,
            dir_ino: self.path.as_ref().map_or(0, |p| p.ino),
            dir_dev: self.path.as_ref().map_or(0, |p| p.dev),
            ..self
                .when
                .kernel(self.op_mask(), self.errno.get(), self.dry_run)
        }
    }

    /// The filters as the command line gave them, for the report.
    pub fn describe_filters(&self) -> Vec<String> {
        let mut filters = Vec::new();
        if let Some(port) = self.filter.port {
            filters.push(format!("--port {port}"));
        }
        if let Some(addr) = self.filter.addr {
            filters.push(format!("--addr {addr}"));
        }
        if let Some(family) = self.filter.family {
            let name = match family {
                errno::AF_INET => "inet",
                errno::AF_INET6 => "inet6",
                _ => "unix",
            };
            filters.push(format!("--family {name}"));
        }
        if let Some(path) = &self.path {
            filters.push(format!("--path {}", path.path.display()));
        }
        filters
    }

    /// The `ops` bit mask the eBPF side reads.
    pub fn op_mask(&self) -> u64 {
        let syscall = if self.syscall.is_some() {
            1 << errno::OP_SYSCALL
        } else {
            0
        };
        self.ops
            .iter()
            .fold(syscall, |mask, op| mask | 1 << op.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_by_name_and_number() {
        assert_eq!("EIO".parse(), Ok(Errno(libc::EIO)));
        assert_eq!("econnrefused".parse(), Ok(Errno(libc::ECONNREFUSED)));
        assert_eq!("5".parse(), Ok(Errno(5)));
        assert_eq!("4095".parse(), Ok(Errno(4095)));
    }

    #[test]
    fn bad_errnos_are_named() {
        assert_eq!(
            "EFOO".parse::<Errno>(),
            Err(ParseError::UnknownErrno("EFOO".into()))
        );
        assert_eq!("0".parse::<Errno>(), Err(ParseError::ErrnoOutOfRange(0)));
        assert_eq!("-5".parse::<Errno>(), Err(ParseError::ErrnoOutOfRange(-5)));
        assert_eq!(
            "4096".parse::<Errno>(),
            Err(ParseError::ErrnoOutOfRange(4096))
        );
        for internal in ["512", "516", "531"] {
            let err = internal.parse::<Errno>().unwrap_err();
            assert!(
                matches!(err, ParseError::KernelInternalErrno(_))
                    && err.to_string().contains("ERESTARTSYS"),
                "{internal}: {err}"
            );
        }
        assert_eq!("511".parse::<Errno>().map(Errno::get), Ok(511));
        assert_eq!("532".parse::<Errno>().map(Errno::get), Ok(532));
        let message = ParseError::UnknownErrno("EFOO".into()).to_string();
        assert!(
            message.contains("EFOO") && message.contains("EIO"),
            "{message}"
        );
    }

    #[test]
    fn errno_displays_its_name() {
        assert_eq!(Errno(libc::EIO).to_string(), "EIO");
        assert_eq!(Errno(4000).to_string(), "4000");
    }

    #[test]
    fn ops_parse_and_reject_unknown() {
        assert_eq!("open".parse(), Ok(Op::Open));
        assert_eq!("CONNECT".parse(), Ok(Op::Connect));
        let err = "frobnicate".parse::<Op>().unwrap_err().to_string();
        assert!(
            err.contains("frobnicate") && err.contains("open, read, write"),
            "{err}"
        );
    }

    #[test]
    fn every_op_has_a_distinct_code_and_a_backend() {
        let mut codes: Vec<u32> = Op::ALL.iter().map(|op| op.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Op::ALL.len());
        assert_eq!(
            Op::ALL.len() as u32 + 2,
            errno::OP_COUNT,
            "every op, OP_SIGNAL and OP_SYSCALL"
        );
        for op in Op::ALL {
            assert!(!op.backends().is_empty(), "{op}");
            assert_eq!(op.name().parse::<Op>(), Ok(op));
        }
    }

    #[test]
    fn readme_documents_every_op_and_its_mechanisms() {
        let readme = include_str!("../../../README.md");
        for op in Op::ALL {
            let row = readme
                .lines()
                .find(|line| line.starts_with(&format!("| `{}` |", op.name())))
                .unwrap_or_else(|| panic!("README's operations table lacks {op}"));
            for backend in op.backends() {
                assert!(
                    row.contains(backend.mechanism.name()),
                    "README row for {op} lacks {}",
                    backend.mechanism
                );
            }
        }
    }

    #[test]
    fn probabilities_and_counts() {
        assert_eq!(parse_probability("0.25"), Ok(0.25));
        assert_eq!(parse_probability("1"), Ok(1.0));
        for bad in ["0", "-0.1", "1.5", "half", "NaN"] {
            assert_eq!(
                parse_probability(bad),
                Err(ParseError::InvalidProbability(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(parse_count("3"), Ok(3));
        assert_eq!(parse_count("0"), Err(ParseError::InvalidCount("0".into())));
        let half = When {
            probability: 0.5,
            ..When::default()
        };
        assert_eq!(half.probability_threshold(), 1 << 31);
        assert_eq!(
            When::default().probability_threshold(),
            errno::PROBABILITY_ONE
        );
        let tiny = When {
            probability: 1e-12,
            ..When::default()
        };
        assert_eq!(
            tiny.probability_threshold(),
            1,
            "never rounds down to 'never'"
        );
    }

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!("KILL".parse(), Ok(Signal(libc::SIGKILL)));
        assert_eq!("sigstop".parse(), Ok(Signal(libc::SIGSTOP)));
        assert_eq!("11".parse(), Ok(Signal(libc::SIGSEGV)));
        assert_eq!(Signal(libc::SIGABRT).to_string(), "SIGABRT");
        for bad in ["FOO", "0", "32", "SIG"] {
            assert_eq!(
                bad.parse::<Signal>(),
                Err(ParseError::UnknownSignal(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(parse_syscall("fsync"), Ok("fsync".into()));
        assert!(parse_syscall("../x").is_err() && parse_syscall("").is_err());
    }

    #[test]
    fn socket_filters_apply_to_socket_ops_only() {
        let port = SocketFilter {
            port: Some(5432),
            ..SocketFilter::default()
        };
        assert!(port.check(&[Op::Connect, Op::Bind, Op::Send]).is_ok());
        let err = port
            .check(&[Op::Connect, Op::Open])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--port") && err.contains("--op open"), "{err}");
        let family = SocketFilter {
            family: Some(libc::AF_INET6 as u32),
            ..SocketFilter::default()
        };
        assert!(family.check(&[Op::Socket]).is_ok());
        assert!(port.check(&[Op::Socket]).is_err());
        assert_eq!(parse_port("0"), Err(ParseError::InvalidPort("0".into())));
        let fault = ErrnoFault {
            ops: vec![Op::Connect],
            errno: Errno(5),
            dry_run: false,
            backend: BackendChoice::Auto,
            when: When::default(),
            syscall: None,
            filter: SocketFilter {
                port: Some(5432),
                family: Some(libc::AF_INET as u32),
                addr: None,
            },
            path: None,
        };
        assert_eq!(
            (fault.kernel().port, fault.kernel().family),
            (5432, libc::AF_INET as u32)
        );
        assert_eq!(parse_family("inet6"), Ok(libc::AF_INET6 as u32));
        assert_eq!(parse_family("unix"), Ok(libc::AF_UNIX as u32));
        assert!(parse_family("netlink").is_err());
        let unix_port = SocketFilter {
            port: Some(80),
            family: Some(libc::AF_UNIX as u32),
            addr: None,
        };
        assert!(unix_port.check(&[Op::Connect]).is_err());
        assert!(unix_port.needs_lsm());
    }

    #[test]
    fn path_filters_resolve_now_and_apply_to_file_ops_only() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = std::env::temp_dir();
        let filter = parse_path_filter(dir.to_str().unwrap()).unwrap();
        let metadata = std::fs::metadata(&filter.path).unwrap();
        assert_eq!(filter.ino, metadata.ino());
        let dev = metadata.dev();
        assert_eq!(
            filter.dev,
            (libc::major(dev) << 20) | libc::minor(dev),
            "the kernel's s_dev encoding (the temporary directory is on no overlay here)"
        );
        let err = parse_path_filter("/no/such/dir").unwrap_err().to_string();
        assert!(err.contains("/no/such/dir"), "{err}");
        assert!(PathFilter::check(&[Op::Open, Op::Read, Op::Mkdir, Op::Stat]).is_ok());
        for op in [Op::Fork, Op::Connect, Op::Socket] {
            assert_eq!(
                PathFilter::check(&[Op::Open, op]),
                Err(ParseError::PathNotApplicable(op))
            );
        }
    }

    #[test]
    fn cidrs_become_mapped_ipv6_words() {
        let net = parse_cidr("10.1.2.3/8").unwrap();
        assert_eq!(net.to_string(), "10.1.2.3/8");
        let (addr, mask) = net.kernel_words();
        let bytes =
            |words: [u32; 4]| -> Vec<u8> { words.iter().flat_map(|w| w.to_ne_bytes()).collect() };
        assert_eq!(
            bytes(addr),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 0, 0, 0]
        );
        assert_eq!(
            bytes(mask),
            [255; 13].iter().copied().chain([0; 3]).collect::<Vec<_>>()
        );
        assert_eq!(addr[2], errno::IPV4_MAPPED_WORD);
        let host = parse_cidr("2001:db8::1").unwrap();
        assert_eq!(host.prefix, 128);
        assert_eq!(host.kernel_words().1, [u32::MAX; 4]);
        let any_v6 = parse_cidr("::/0").unwrap();
        assert_eq!(any_v6.kernel_words().1, [0; 4], "::/0 is no filter");
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "example.com",
            "10.0.0/8",
            "10.0.0.0/-1",
            "",
        ] {
            assert_eq!(
                parse_cidr(bad),
                Err(ParseError::InvalidAddr(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["0", "0s", "-1s", "soon", ""] {
            assert_eq!(
                parse_duration(bad),
                Err(ParseError::InvalidDuration(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn pids() {
        assert_eq!(parse_pid("42"), Ok(42));
        for bad in ["0", "-3", "x", "4294967295"] {
            assert_eq!(
                parse_pid(bad),
                Err(ParseError::InvalidPid(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn op_mask_sets_one_bit_per_op() {
        let fault = ErrnoFault {
            ops: vec![Op::Open, Op::Connect],
            errno: Errno(5),
            dry_run: false,
            backend: BackendChoice::Auto,
            when: When::default(),
            syscall: None,
            filter: SocketFilter::default(),
            path: None,
        };
        assert_eq!(
            fault.op_mask(),
            1 << errno::OP_OPEN | 1 << errno::OP_CONNECT
        );
    }
}

//! Errno faults (`chaos fail`): the operations to fail, the errno, and the filters that narrow
//! the calls.

use std::{fmt, str::FromStr};

use chaos_common::{
    fault::{AF_INET, AF_INET6, AF_UNIX, CallFault, KernelFnFilter},
    ops::{
        FILTER_ADDR, FILTER_FAMILY, FILTER_PATH, FILTER_PORT, FILTER_UNIX, Mechanism, OP_SYSCALL,
    },
};

use super::{Cidr, ParseError, When, ops, ops::Op};

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
        crate::errno_names::number(s)
            .map(Errno)
            .ok_or_else(|| ParseError::UnknownErrno(s.to_owned()))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::errno_names::name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// An errno fault: the listed operations of the targets fail with `errno`.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrnoFault {
    pub ops: Vec<Op>,
    /// Every fault has one but one on a `--kernel-fn` of type NULL or TRUE.
    pub errno: Option<Errno>,
    /// Count matching calls but fail none.
    pub dry_run: bool,
    pub when: When,
    /// One syscall failed at its entry function (`--syscall`), besides the ops.
    pub syscall: Option<String>,
    /// One function of the kernel failed (`--kernel-fn`), besides the ops.
    pub kernel_fn: Option<KernelFn>,
    /// How the syscall's entry function or the kernel function is failed: fmod_ret or
    /// kprobe-override, as the planner chose (`None` before, or without either).
    pub override_with: Option<Mechanism>,
    pub filter: SocketFilter,
    pub path: Option<PathFilter>,
}

/// A function of the kernel's error-injection list (`--kernel-fn`), and what is known of it once
/// the list was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFn {
    pub name: String,
    /// How the list says the function fails; `None` until the fault starts.
    pub kind: Option<InjectionKind>,
    /// `--caller`: only calls with this function on the kernel stack.
    pub caller: Option<String>,
    /// Where the caller's code lies and which allocations may fail, for the program; all zero
    /// until the fault starts.
    pub filter: KernelFnFilter,
}

/// How a function of the error-injection list fails (its type there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectionKind {
    /// Returns `-errno`.
    Errno,
    /// Returns `-errno` or NULL: failed with `-errno`.
    ErrnoNull,
    /// Returns NULL.
    Null,
    /// Returns true.
    True,
}

impl InjectionKind {
    /// The type as the list writes it.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "ERRNO" => Some(InjectionKind::Errno),
            "ERRNO_NULL" => Some(InjectionKind::ErrnoNull),
            "NULL" => Some(InjectionKind::Null),
            "TRUE" => Some(InjectionKind::True),
            _ => None,
        }
    }

    /// Whether failing it takes an errno.
    pub fn takes_errno(self) -> bool {
        matches!(self, InjectionKind::Errno | InjectionKind::ErrnoNull)
    }
}

/// Parses a kernel function's name: letters, digits, `_` and `.` (`should_failslab`,
/// `foo.constprop.0`).
pub fn parse_kernel_fn(s: &str) -> Result<String, ParseError> {
    let valid = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if valid {
        Ok(s.to_owned())
    } else {
        Err(ParseError::InvalidKernelFn(s.to_owned()))
    }
}

impl ErrnoFault {
    /// The filters given, as the catalogue's `FILTER_*` bits.
    pub fn filter_bits(&self) -> u32 {
        self.filter.bits() | if self.path.is_some() { FILTER_PATH } else { 0 }
    }

    /// Checks the fault as far as that is possible without the kernel and the targets: every
    /// operation has a mechanism that honours its filters, and the filters can match.
    pub fn check(&self) -> Result<(), ParseError> {
        if self.errno.is_none() && (!self.ops.is_empty() || self.syscall.is_some()) {
            return Err(ParseError::NoErrno);
        }
        // A kprobe on a function sees no socket address and no file: the filters would make
        // its calls never match.
        let overriding = match (&self.syscall, &self.kernel_fn) {
            (Some(_), _) => Some("--syscall"),
            (None, Some(_)) => Some("--kernel-fn"),
            (None, None) => None,
        };
        if let Some(flag) = overriding
            && let Some(filter) = self.describe_filters().into_iter().next()
        {
            return Err(ParseError::FilterWithOverride {
                flag,
                filter: filter
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        self.filter.check()?;
        ops::check_filters(&self.ops, self.filter_bits())
    }

    /// The fault as the kernel side reads it (the deadline is set when the run starts).
    pub fn kernel(&self) -> CallFault {
        let (addr, addr_mask) = self
            .filter
            .addr
            .map_or(([0; 4], [0; 4]), |cidr| cidr.kernel_words());
        let errno = self.errno.map_or(0, Errno::get);
        CallFault {
            errno,
            retval: match self.kernel_fn.as_ref().and_then(|f| f.kind) {
                Some(InjectionKind::True) => 1,
                Some(InjectionKind::Null) => 0,
                _ => -i64::from(errno),
            },
            port: self.filter.port.map_or(0, u32::from),
            family: self.filter.family.unwrap_or(0),
            addr,
            addr_mask,
            dir_ino: self.path.as_ref().map_or(0, |p| p.ino),
            dir_dev: self.path.as_ref().map_or(0, |p| p.dev),
            ..self.when.kernel(self.op_mask(), self.dry_run)
        }
    }

    /// How the calls fail, in words: the errno, or what a `--kernel-fn` of type NULL or TRUE
    /// returns.
    pub fn failure(&self) -> String {
        match (self.errno, self.kernel_fn.as_ref().and_then(|f| f.kind)) {
            (Some(errno), _) => errno.to_string(),
            (None, Some(InjectionKind::True)) => "true".to_owned(),
            (None, _) => "NULL".to_owned(),
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
                AF_INET => "inet",
                AF_INET6 => "inet6",
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
        let syscall = if self.syscall.is_some() || self.kernel_fn.is_some() {
            1 << OP_SYSCALL
        } else {
            0
        };
        self.ops
            .iter()
            .fold(syscall, |mask, op| mask | 1 << op.code)
    }
}

/// Parses an address family: `inet`, `inet6` or `unix`; returns AF_INET, AF_INET6 or AF_UNIX.
pub fn parse_family(s: &str) -> Result<u32, ParseError> {
    match s {
        "inet" | "ipv4" => Ok(AF_INET),
        "inet6" | "ipv6" => Ok(AF_INET6),
        "unix" | "local" => Ok(AF_UNIX),
        other => Err(ParseError::UnknownFamily(other.to_owned())),
    }
}

/// Address filters of a socket fault: `--port`, `--addr`, `--family`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketFilter {
    pub port: Option<u16>,
    pub addr: Option<Cidr>,
    pub family: Option<u32>,
}

impl SocketFilter {
    /// The filters given, as the catalogue's `FILTER_*` bits.
    pub fn bits(&self) -> u32 {
        let mut bits = 0;
        if self.port.is_some() {
            bits |= FILTER_PORT;
        }
        if self.addr.is_some() {
            bits |= FILTER_ADDR;
        }
        match self.family {
            Some(AF_UNIX) => bits |= FILTER_FAMILY | FILTER_UNIX,
            Some(_) => bits |= FILTER_FAMILY,
            None => {}
        }
        bits
    }

    /// Refuses what no call can pass: a UNIX socket has no port and no IP address.
    pub fn check(&self) -> Result<(), ParseError> {
        if self.family == Some(AF_UNIX) {
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
    held: std::sync::Arc<std::fs::File>,
}

impl PathFilter {
    /// The file or directory, open (`O_PATH`).
    pub fn file(&self) -> &std::fs::File {
        &self.held
    }
}

impl PartialEq for PathFilter {
    fn eq(&self, other: &Self) -> bool {
        (&self.path, self.ino, self.dev) == (&other.path, other.ino, other.dev)
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
        held: std::sync::Arc::new(file),
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

    fn fault(ops: &[&str], filter: SocketFilter) -> ErrnoFault {
        ErrnoFault {
            ops: ops
                .iter()
                .map(|name| ops::parse_op(name).unwrap())
                .collect(),
            errno: Some(Errno(5)),
            dry_run: false,
            when: When::default(),
            syscall: None,
            kernel_fn: None,
            override_with: None,
            filter,
            path: None,
        }
    }

    #[test]
    fn socket_filters_apply_to_socket_ops_only() {
        let port = SocketFilter {
            port: Some(5432),
            ..SocketFilter::default()
        };
        assert!(fault(&["connect", "bind", "send"], port).check().is_ok());
        let err = fault(&["connect", "open"], port)
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--port") && err.contains("--op open"), "{err}");
        let family = SocketFilter {
            family: Some(AF_INET6),
            ..SocketFilter::default()
        };
        assert!(fault(&["socket"], family).check().is_ok());
        assert!(fault(&["socket"], port).check().is_err());
        let both = SocketFilter {
            port: Some(5432),
            family: Some(AF_INET),
            addr: None,
        };
        let kernel = fault(&["connect"], both).kernel();
        assert_eq!(
            (kernel.port, kernel.family, kernel.errno),
            (5432, AF_INET, 5)
        );
        assert_eq!(parse_family("inet6"), Ok(AF_INET6));
        assert_eq!(parse_family("unix"), Ok(AF_UNIX));
        assert!(parse_family("netlink").is_err());
        let unix_port = SocketFilter {
            port: Some(80),
            family: Some(AF_UNIX),
            addr: None,
        };
        assert!(fault(&["connect"], unix_port).check().is_err());
        let unix = SocketFilter {
            family: Some(AF_UNIX),
            ..SocketFilter::default()
        };
        assert_eq!(unix.bits(), FILTER_FAMILY | FILTER_UNIX);
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
        let with_path = |ops: &[&str]| ErrnoFault {
            path: Some(filter.clone()),
            ..fault(ops, SocketFilter::default())
        };
        assert!(
            with_path(&["open", "read", "mkdir", "stat"])
                .check()
                .is_ok()
        );
        for op in ["fork", "connect", "socket"] {
            let err = with_path(&["open", op]).check().unwrap_err().to_string();
            assert!(err.contains(&format!("--op {op}")), "{err}");
        }
    }

    #[test]
    fn op_mask_sets_one_bit_per_op() {
        let fault = fault(&["open", "connect"], SocketFilter::default());
        assert_eq!(
            fault.op_mask(),
            1 << chaos_common::ops::OP_OPEN | 1 << chaos_common::ops::OP_CONNECT
        );
    }
}

//! `chaos disk error`: bios to one block device complete with EIO. The device (a path or
//! MAJ:MIN), the operations, the sectors, and which of the matching bios fail ([`When`]).

use std::{
    fmt, fs,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
    str::FromStr,
};

use chaos_common::{
    fault::{CallFault, DiskFilter, MINOR_BITS},
    ops::{OP_DISK_DISCARD, OP_DISK_FLUSH, OP_DISK_READ, OP_DISK_WRITE},
};

use super::{ParseError, When};
use crate::kernel::Uncharged;

/// A block device as the kernel numbers it, and what the user called it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// As given: `/dev/loop0` or `7:0`.
    pub name: String,
    pub major: u32,
    pub minor: u32,
    /// A whole disk (not a partition): its partitions' bios match too.
    pub whole: bool,
    /// A whole disk's minor numbers, its own first (/sys's `range`): the partitions numbered
    /// after it; 1 for a partition.
    pub minors: u32,
}

impl Device {
    /// The kernel's own `dev_t`.
    pub fn kernel_dev(&self) -> u32 {
        self.major << MINOR_BITS | self.minor
    }
}

impl Device {
    /// Whether this device carries this machine's root filesystem: itself, a partition of it,
    /// or a device stacked on either (device-mapper, md), as /sys says. Failing it would fail
    /// every process's writes: refused unless forced.
    pub fn carries_root(&self) -> bool {
        let Some(root) = root_device() else {
            return false;
        };
        let mut pending = vec![PathBuf::from(format!(
            "/sys/dev/block/{}:{}",
            self.major, self.minor
        ))];
        let mut seen = Vec::new();
        while let Some(dir) = pending.pop() {
            let Ok(dir) = dir.canonicalize() else {
                continue;
            };
            if seen.contains(&dir) {
                continue;
            }
            if fs::read_to_string(dir.join("dev")).is_ok_and(|dev| dev.trim() == root) {
                return true;
            }
            // Its partitions (directories with a `partition` file) and its holders.
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.path().join("partition").exists() {
                    pending.push(entry.path());
                }
            }
            for holder in fs::read_dir(dir.join("holders"))
                .into_iter()
                .flatten()
                .flatten()
            {
                pending.push(holder.path());
            }
            seen.push(dir);
        }
        false
    }
}

/// `MAJOR:MINOR` of the filesystem mounted on `/` in this mount namespace.
fn root_device() -> Option<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(4) == Some(&"/")).then(|| fields.get(2).map(|dev| (*dev).to_owned()))?
    })
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.name, self.major, self.minor)
    }
}

/// `--device` as given: a path, or `MAJ:MIN`. Checked for form when parsed, resolved (the
/// device must exist) when the fault starts, so that an experiment may name a device its
/// workload makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceArg {
    Path(String),
    Number(u32, u32),
}

impl FromStr for DeviceArg {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let invalid = |reason: &str| ParseError::InvalidDevice(s.to_owned(), reason.to_owned());
        if s.starts_with('/') {
            return Ok(DeviceArg::Path(s.to_owned()));
        }
        let (major, minor) = s
            .split_once(':')
            .ok_or_else(|| invalid("neither a path nor a MAJOR:MINOR pair"))?;
        match (major.parse::<u32>(), minor.parse::<u32>()) {
            (Ok(major), Ok(minor)) if major < 1 << 12 && minor < 1 << 20 => {
                Ok(DeviceArg::Number(major, minor))
            }
            _ => Err(invalid("not a MAJOR:MINOR pair")),
        }
    }
}

impl DeviceArg {
    /// The block device it names, which must exist (in /sys/dev/block).
    pub fn resolve(&self) -> Result<Device, ParseError> {
        let (name, major, minor) = match self {
            DeviceArg::Path(path) => {
                let invalid = |reason: String| ParseError::InvalidDevice(path.clone(), reason);
                let meta = std::fs::metadata(path).map_err(|err| invalid(err.to_string()))?;
                if !meta.file_type().is_block_device() {
                    return Err(invalid("not a block device".into()));
                }
                let rdev = std::os::unix::fs::MetadataExt::rdev(&meta);
                (path.clone(), libc::major(rdev), libc::minor(rdev))
            }
            &DeviceArg::Number(major, minor) => (format!("{major}:{minor}"), major, minor),
        };
        let sys = format!("/sys/dev/block/{major}:{minor}");
        if !Path::new(&sys).exists() {
            return Err(ParseError::InvalidDevice(
                name,
                format!("no block device {major}:{minor} ({sys})"),
            ));
        }
        let whole = !Path::new(&sys).join("partition").exists();
        let minors = fs::read_to_string(Path::new(&sys).join("range"))
            .ok()
            .and_then(|range| range.trim().parse().ok())
            .filter(|_| whole)
            .unwrap_or(1);
        Ok(Device {
            name,
            major,
            minor,
            whole,
            minors,
        })
    }
}

/// What a bio does, as `--op` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskOp {
    Read,
    Write,
    Flush,
    Discard,
}

impl DiskOp {
    pub const ALL: [DiskOp; 4] = [DiskOp::Read, DiskOp::Write, DiskOp::Flush, DiskOp::Discard];

    pub fn name(self) -> &'static str {
        match self {
            DiskOp::Read => "read",
            DiskOp::Write => "write",
            DiskOp::Flush => "flush",
            DiskOp::Discard => "discard",
        }
    }

    /// Its operation number (`OP_DISK_*`).
    pub fn code(self) -> u32 {
        match self {
            DiskOp::Read => OP_DISK_READ,
            DiskOp::Write => OP_DISK_WRITE,
            DiskOp::Flush => OP_DISK_FLUSH,
            DiskOp::Discard => OP_DISK_DISCARD,
        }
    }

    /// The bios it covers, in words.
    pub fn covers(self) -> &'static str {
        match self {
            DiskOp::Read => "read bios (readahead too)",
            DiskOp::Write => "write bios, a journal's commit blocks included",
            DiskOp::Flush => "cache flushes: bios carrying REQ_PREFLUSH (fsync's, a journal's)",
            DiskOp::Discard => "discard bios (TRIM)",
        }
    }
}

impl FromStr for DiskOp {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        DiskOp::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| ParseError::UnknownDiskOp(s.to_owned()))
    }
}

/// Sectors `first` to `last` (512 bytes each, inclusive), counted from the start of the device
/// named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sectors {
    pub first: u64,
    pub last: u64,
}

impl FromStr for Sectors {
    type Err = ParseError;

    /// `A-B` (inclusive) or one sector `A`.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (first, last) = s.split_once('-').unwrap_or((s, s));
        match (first.trim().parse::<u64>(), last.trim().parse::<u64>()) {
            (Ok(first), Ok(last)) if first <= last && last < u64::MAX / 2 => {
                Ok(Sectors { first, last })
            }
            _ => Err(ParseError::InvalidSectors(s.to_owned())),
        }
    }
}

/// A checked disk fault.
#[derive(Debug, Clone)]
pub struct DiskFault {
    pub device: Device,
    /// Sorted, without repeats.
    pub ops: Vec<DiskOp>,
    pub sectors: Option<Sectors>,
    pub when: When,
    pub dry_run: bool,
    pub whose: Whose,
}

/// Whose bios to the device fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    /// Every bio, whoever submits it.
    Any,
    /// Those the target processes submit themselves.
    Processes,
    /// Those a target cgroup's processes submit, and where the kernel charges the writeback of
    /// the pages they dirtied to the cgroup (`Err`: why it does not here), those too.
    Cgroup(Result<(), Uncharged>),
}

impl Whose {
    /// Of a target cgroup whose directory is `dir`.
    pub fn cgroup(dir: &Path) -> Whose {
        Whose::Cgroup(crate::kernel::cgroup_writeback(dir))
    }
}

impl DiskFault {
    /// The kernel's fault: the operations and rules (bios fail with EIO whatever the errno).
    pub fn kernel(&self) -> CallFault {
        let ops = self.ops.iter().fold(0, |bits, op| bits | 1 << op.code());
        CallFault {
            errno: libc::EIO,
            retval: -i64::from(libc::EIO),
            ..self.when.kernel(ops, self.dry_run)
        }
    }

    /// The bios it matches, for the programs (the struct offsets are the kernel's, added at
    /// load).
    pub fn filter(&self) -> DiskFilter {
        DiskFilter {
            dev: self.device.kernel_dev(),
            whole: u32::from(self.device.whole),
            minors: self.device.minors,
            sector_first: self.sectors.map_or(0, |s| s.first),
            sector_end: self.sectors.map_or(0, |s| s.last + 1),
            targeted: u32::from(self.whose != Whose::Any),
            // Only where the bio's cgroup is on the target's hierarchy: a v1 blkio cgroup's id
            // may equal any v2 cgroup's.
            attributed: u32::from(self.whose == Whose::Cgroup(Ok(()))),
            ..DiskFilter::default()
        }
    }

    /// What one operation's row covers: `write bios … to /dev/loop0 (7:0), sectors 8-15`.
    pub fn covers(&self, op: DiskOp) -> String {
        let partitions = if self.device.whole {
            " and its partitions"
        } else {
            ""
        };
        let sectors = self
            .sectors
            .map(|s| format!(", sectors {}-{}", s.first, s.last))
            .unwrap_or_default();
        let whose = match &self.whose {
            Whose::Any => "",
            Whose::Processes | Whose::Cgroup(Err(_)) => ", submitted by the targets",
            Whose::Cgroup(Ok(())) => {
                ", submitted by the targets or written back for their cgroup (cgroup writeback)"
            }
        };
        format!(
            "{} to {}{partitions}{sectors}{whose}",
            op.covers(),
            self.device
        )
    }

    /// The filters as given, for the warning when nothing matched.
    pub fn describe_filters(&self) -> Vec<String> {
        self.sectors
            .map(|s| format!("--sector {}-{}", s.first, s.last))
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_parse_as_inclusive_ranges() {
        assert_eq!("8-15".parse(), Ok(Sectors { first: 8, last: 15 }));
        assert_eq!("7".parse(), Ok(Sectors { first: 7, last: 7 }));
        for bad in ["15-8", "a-b", "", "-1", "1-"] {
            assert_eq!(
                bad.parse::<Sectors>(),
                Err(ParseError::InvalidSectors(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn devices_are_paths_or_numbers_that_exist() {
        let resolve = |s: &str| s.parse::<DeviceArg>().and_then(|arg| arg.resolve());
        // 1:3 is /dev/null, a character device: no block device has that number.
        assert!(matches!(
            resolve("1:3"),
            Err(ParseError::InvalidDevice(name, reason)) if name == "1:3" && reason.contains("no block device")
        ));
        assert!(matches!(
            resolve("/dev/null"),
            Err(ParseError::InvalidDevice(_, reason)) if reason == "not a block device"
        ));
        for bad in ["7", "sda", "x:1", "7:-1"] {
            assert!(
                matches!(bad.parse::<DeviceArg>(), Err(ParseError::InvalidDevice(name, _)) if name == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_kernel_fault_fails_with_eio() {
        let fault = DiskFault {
            device: Device {
                name: "7:0".into(),
                major: 7,
                minor: 0,
                whole: true,
                minors: 1,
            },
            ops: vec![DiskOp::Write, DiskOp::Flush],
            sectors: Some(Sectors { first: 8, last: 15 }),
            when: When::default(),
            dry_run: false,
            whose: Whose::Any,
        };
        let kernel = fault.kernel();
        assert_eq!(kernel.errno, libc::EIO);
        assert_eq!(kernel.ops, 1 << OP_DISK_WRITE | 1 << OP_DISK_FLUSH);
        let filter = fault.filter();
        assert_eq!(filter.dev, 7 << 20);
        assert_eq!((filter.sector_first, filter.sector_end), (8, 16));
    }
}

//! The machine's pseudo file systems: where cgroup v2 is mounted, and mounting what a command
//! needs when a fresh boot did not.

use std::{
    ffi::CString,
    fs::{self, File},
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

/// A file of /proc or /sys, whole, 4 KiB per read. These report no size, so
/// `fs::read_to_string` reads them 32 bytes, then 32, 64, 128…: six reads for a stat line, and
/// a start reads a dozen such files.
pub fn read_proc(path: impl AsRef<Path>) -> io::Result<String> {
    use std::io::Read as _;
    let mut file = File::open(path)?;
    let mut bytes = Vec::new();
    loop {
        let start = bytes.len();
        bytes.resize(start + 4096, 0);
        let n = file.read(&mut bytes[start..])?;
        bytes.truncate(start + n);
        if n == 0 {
            break;
        }
    }
    String::from_utf8(bytes).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

/// Field `n` (from 3, numbered as proc(5) does) of a /proc/PID/stat line, read past the command
/// name (field 2), which may hold spaces and parentheses.
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n.checked_sub(3)?)
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with its PID,
/// what tells it from a process that took the PID after it ended.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = read_proc(format!("/proc/{pid}/stat")).ok()?;
    stat_field(&stat, 22)?.parse().ok()
}

/// Whether a process of process group `group` still runs. A zombie does not count: where
/// nothing reaps orphans (PID 1 of a container or a test guest) it stays one.
pub fn group_runs(group: u32) -> bool {
    // SAFETY: signal 0 only checks that the group has a member; no memory is involved.
    if unsafe { libc::kill(-(group as libc::pid_t), 0) } != 0 {
        return false;
    }
    let group = group.to_string();
    let Ok(processes) = fs::read_dir("/proc") else {
        return true;
    };
    processes
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.parse::<u32>().is_ok())
        })
        .any(|entry| {
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            stat_field(&stat, 5) == Some(group.as_str()) && stat_field(&stat, 3) != Some("Z")
        })
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` when unified,
/// `/sys/fs/cgroup/unified` on hybrid systems, or elsewhere); `None` without one.
pub fn cgroup2_mount() -> Option<PathBuf> {
    cgroup2_mount_in(&read_proc("/proc/self/mounts").ok()?)
}

fn cgroup2_mount_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(unescape_mount_path(dir)))
    })
}

/// Whether a file system of type `fstype` is mounted anywhere.
pub fn mounted(fstype: &str) -> Option<PathBuf> {
    let mounts = read_proc("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == fstype).then(|| PathBuf::from(unescape_mount_path(dir)))
    })
}

/// /proc/self/mounts escapes spaces and a few other bytes as octal (`\040`).
fn unescape_mount_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|octal| u8::from_str_radix(octal, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Mounts a pseudo file system at `dir` when nothing is mounted there; the returned note says
/// what happened (empty when it was there already).
pub fn ensure_mounted(fstype: &str, dir: &str) -> String {
    let mounts = read_proc("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(dir))
    {
        return String::new();
    }
    let (Ok(source), Ok(target)) = (CString::new(fstype), CString::new(dir)) else {
        return String::new();
    };
    // SAFETY: plain C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        format!(" (mounted {fstype} at {dir})")
    } else {
        format!(
            " ({fstype} not mounted at {dir}: {})",
            io::Error::last_os_error()
        )
    }
}

/// A network namespace, held open; threads enter it for a while.
#[derive(Debug)]
pub struct Netns {
    /// Where it was opened (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub path: PathBuf,
    file: File,
}

impl Netns {
    /// Opens the namespace file at `path`, checking that it is a network namespace.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        // setns with CLONE_NEWNET accepts nothing but a network namespace: try it on a
        // throwaway thread so this one stays where it is.
        let fd = file.as_raw_fd();
        let entered = std::thread::scope(|scope| {
            scope
                // SAFETY: setns on this short-lived thread only.
                .spawn(|| unsafe { libc::setns(fd, libc::CLONE_NEWNET) } == 0)
                .join()
                .unwrap_or(false)
        });
        if !entered {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a network namespace", path.display()),
            ));
        }
        Ok(Netns {
            path: path.to_owned(),
            file,
        })
    }

    /// Whether this is chaos's own network namespace (a host-network container's or pod's).
    pub fn is_own(&self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let id = |meta: std::fs::Metadata| (meta.dev(), meta.ino());
        match (self.file.metadata(), std::fs::metadata("/proc/self/ns/net")) {
            (Ok(target), Ok(own)) => id(target) == id(own),
            _ => false,
        }
    }

    /// Runs `work` on this thread inside the namespace, then returns to the thread's own.
    pub fn enter<T>(&self, work: impl FnOnce() -> T) -> io::Result<T> {
        let own = File::open("/proc/thread-self/ns/net")?;
        // SAFETY: setns switches this thread's network namespace; it is switched back below.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let result = work();
        // SAFETY: as above, back to where the thread was.
        if unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // Staying in the target namespace would be worse than stopping here.
            panic!(
                "cannot return to chaos's own network namespace: {}",
                io::Error::last_os_error()
            );
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_fields_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1";
        assert_eq!(stat_field(stat, 3), Some("S"));
        assert_eq!(stat_field(stat, 5), Some("4242"));
        assert_eq!(stat_field(stat, 2), None);
    }

    /// A group runs while a member does, and not once its last member is a zombie nobody has
    /// reaped yet.
    #[test]
    fn a_process_group_runs_until_its_last_member_exits() {
        use std::os::unix::process::CommandExt as _;
        let mut leader = std::process::Command::new("sleep")
            .arg("0.3")
            .process_group(0)
            .spawn()
            .unwrap();
        let group = leader.id();
        assert!(group_runs(group));
        std::thread::sleep(std::time::Duration::from_millis(800));
        assert!(!group_runs(group), "a zombie leader counts as gone");
        assert!(leader.wait().unwrap().success());
        assert!(!group_runs(group));
    }

    #[test]
    fn finds_the_cgroup2_mount_in_hybrid_and_unified_layouts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            cgroup2_mount_in(hybrid),
            Some("/sys/fs/cgroup/unified".into())
        );
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        assert_eq!(cgroup2_mount_in(unified), Some("/sys/fs/cgroup".into()));
        assert_eq!(cgroup2_mount_in("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn unescapes_octal_in_mount_paths() {
        assert_eq!(unescape_mount_path(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_path(r"/plain"), "/plain");
    }
}

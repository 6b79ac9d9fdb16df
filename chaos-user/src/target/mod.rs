//! Target resolution: from what the user names (a PID) to what the kernel needs (a tgid, the
//! cgroup v2 directory to attach to, a pidfd that tells when the process is gone).

use std::{
    fs, io,
    os::fd::{FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::sys::stat_field;

pub mod container;
pub mod net;
pub mod pod;
pub mod runtime;

pub use container::Container;
pub use pod::Pod;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("no process with PID {0}: expected the PID of a running process")]
    NoSuchProcess(u32),
    #[error("cannot read {path}")]
    Proc {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup v2 hierarchy is mounted (looked for a cgroup2 line in /proc/self/mounts)")]
    NoCgroup2,
    #[error("process {0} has no cgroup v2 entry (a '0::' line) in /proc/{0}/cgroup")]
    NoCgroup2Entry(u32),
    #[error(
        "process {pid} is in cgroup v2 directory {path}, which is not visible here (another cgroup namespace?)"
    )]
    CgroupNotVisible { pid: u32, path: PathBuf },
    #[error("refusing to target PID {pid}: {reason}; pass --force to do it anyway")]
    Guarded { pid: u32, reason: &'static str },
    #[error(
        "cgroup {path} is not a directory under the cgroup v2 mount {mount}: expected a cgroup v2 directory (a path below {mount}, or one relative to it such as /system.slice/nginx.service)"
    )]
    NotCgroup2 { path: PathBuf, mount: PathBuf },
    #[error(
        "refusing to target the root cgroup {0}: every process on the machine is in it; pass --force to do it anyway"
    )]
    RootCgroup(PathBuf),
    #[error("no process is named '{0}' (the comm in /proc/PID/comm, at most 15 characters)")]
    NoSuchComm(String),
    #[error(
        "no running container is named '{query}' ({running} running containers found under the cgroup v2 mount): expected a container ID, a unique prefix of one, or a container name (podman, docker, lxc)"
    )]
    NoSuchContainer { query: String, running: usize },
    #[error(
        "cannot use network namespace '{spec}': {reason}; expected a path such as /run/netns/NAME or /proc/PID/ns/net, a PID, or a name under /run/netns"
    )]
    NoSuchNetns { spec: String, reason: String },
    #[error("no interface '{iface}' in {netns}: expected one of {known}")]
    NoSuchIface {
        iface: String,
        netns: String,
        known: String,
    },
    #[error("no interface other than lo in {0}")]
    NoIfaces(String),
    #[error(
        "refusing to fault {0}: it carries this machine's default route (faulting it can cut you off); pass --force to do it anyway"
    )]
    DefaultRouteIface(String),
    #[error(
        "unknown container runtime '{runtime}' in '{query}': expected containerd://ID, cri-o://ID or docker://ID (a Pod's status.containerStatuses[].containerID)"
    )]
    UnknownRuntime { query: String, runtime: String },
    #[error(
        "no pod with UID '{uid}' runs on this node ({running} pods found in the kubepods cgroups under the cgroup v2 mount): expected a pod's metadata.uid, as `kubectl get pod NAME -o jsonpath='{{.metadata.uid}}'` prints it"
    )]
    NoSuchPod { uid: String, running: usize },
    #[error(
        "no pod {name} runs on this node ({known} Kubernetes pods found through the containerd shims and cri-o conmons here): expected NAMESPACE/NAME of a pod on this node (`kubectl get pod -o wide` shows its node)"
    )]
    NoSuchPodName { name: String, known: usize },
    #[error(
        "--container-name {0} names a container of a pod: give the pod too (--pod or --pod-uid)"
    )]
    ContainerNameWithoutPod(String),
    #[error("pod {pod} has no running container named '{name}': its containers are {names}")]
    NoSuchPodContainer {
        pod: String,
        name: String,
        names: String,
    },
    #[error(
        "container '{query}' is ambiguous: it is a prefix of the IDs {candidates}; give more of the ID"
    )]
    AmbiguousContainer { query: String, candidates: String },
}

/// Everything one run faults.
#[derive(Debug, Default)]
pub struct Targets {
    /// Processes (all their threads): from --pid, --pid-tree and --comm.
    pub processes: Vec<ProcessTarget>,
    /// Every process under this cgroup v2 directory, now and later (--cgroup, --container).
    pub cgroup: Option<CgroupTarget>,
    /// The container whose cgroup that is (--container): the run ends when it stops.
    pub container: Option<Container>,
    /// The pod whose cgroup that is (--pod-uid): the run ends when it is deleted.
    pub pod: Option<Pod>,
    /// A block device (`chaos disk error`): its bios, whoever submits them.
    pub device: Option<crate::fault::disk::Device>,
}

/// What to fault, as the user named it.
#[derive(Debug, Default)]
pub struct TargetSpec<'a> {
    /// `--pid`: processes, with all of their threads.
    pub pids: &'a [u32],
    /// `--pid-tree`: processes and every process they fork while the run lasts.
    pub trees: &'a [u32],
    /// `--cgroup`: every process in this cgroup v2 directory or below.
    pub cgroup: Option<&'a Path>,
    /// `--container`: every process of this container (ID, prefix or name).
    pub container: Option<&'a str>,
    /// `--pod-uid` or `--pod`: every process of every container of this pod, its sandbox
    /// included; with `container_name`, of that container only.
    pub pod: Option<pod::PodRef<'a>>,
    pub container_name: Option<&'a str>,
    /// `--comm`: every process of this command name when the run starts.
    pub comm: Option<&'a str>,
    /// Lift the guards (PID 1, chaos and its parents, kernel threads, the root cgroup).
    pub force: bool,
}

impl Targets {
    /// Whether a process's descendants are targets too (--pid-tree): the run follows forks
    /// and exits through tracepoints.
    pub fn has_tree(&self) -> bool {
        self.processes.iter().any(|process| process.tree)
    }

    /// Resolves what `spec` names.
    pub fn resolve(spec: &TargetSpec<'_>) -> Result<Targets, TargetError> {
        let force = spec.force;
        if let (Some(name), None) = (spec.container_name, spec.pod) {
            return Err(TargetError::ContainerNameWithoutPod(name.to_owned()));
        }
        if let Some(path) = spec.cgroup {
            return Ok(Targets {
                processes: Vec::new(),
                cgroup: Some(CgroupTarget::resolve(path, force)?),
                container: None,
                pod: None,
                device: None,
            });
        }
        if let Some(query) = spec.container {
            let container = container::resolve(query)?;
            return Ok(Targets {
                processes: Vec::new(),
                cgroup: Some(CgroupTarget::resolve(&container.cgroup, force)?),
                container: Some(container),
                pod: None,
                device: None,
            });
        }
        if let Some(pod) = spec.pod {
            return Ok(match pod::select(pod, spec.container_name)? {
                pod::Selected::Pod(pod) => Targets {
                    processes: Vec::new(),
                    cgroup: Some(CgroupTarget::resolve(&pod.cgroup, force)?),
                    container: None,
                    pod: Some(pod),
                    device: None,
                },
                pod::Selected::Container(container) => Targets {
                    processes: Vec::new(),
                    cgroup: Some(CgroupTarget::resolve(&container.cgroup, force)?),
                    container: Some(container),
                    pod: None,
                    device: None,
                },
            });
        }
        let mut processes: Vec<ProcessTarget> = Vec::new();
        let add =
            |pid: u32, tree: bool, processes: &mut Vec<ProcessTarget>| -> Result<(), TargetError> {
                match processes.iter_mut().find(|p| p.pid == pid) {
                    Some(existing) => existing.tree |= tree,
                    None => processes.push(ProcessTarget::resolve(pid, tree, force)?),
                }
                Ok(())
            };
        for &pid in spec.pids {
            add(pid, false, &mut processes)?;
        }
        for &pid in spec.trees {
            add(pid, true, &mut processes)?;
        }
        if let Some(name) = spec.comm {
            let before = processes.len();
            for pid in pids_by_comm(name)? {
                // Guarded processes that merely share the name are skipped, not refused.
                match add(pid, false, &mut processes) {
                    Ok(()) | Err(TargetError::Guarded { .. } | TargetError::NoSuchProcess(_)) => {}
                    Err(err) => return Err(err),
                }
            }
            if processes.len() == before {
                return Err(TargetError::NoSuchComm(name.to_owned()));
            }
        }
        Ok(Targets {
            processes,
            cgroup: None,
            container: None,
            pod: None,
            device: None,
        })
    }

    /// A short description for the start line and `chaos list`.
    pub fn describe(&self) -> String {
        let Some(device) = &self.device else {
            return self.describe_processes();
        };
        if self.processes.is_empty() && self.cgroup.is_none() {
            format!("block device {device}")
        } else {
            format!(
                "block device {device}, the bios of {}",
                self.describe_processes()
            )
        }
    }

    /// The processes: by pod, container, cgroup or PIDs.
    fn describe_processes(&self) -> String {
        if let Some(pod) = &self.pod {
            return format!("every container of pod {} ({})", pod.uid, pod.qos.as_str());
        }
        match (&self.container, &self.cgroup) {
            (Some(container), _) => format!(
                "every process of {} container {}",
                container.runtime,
                &container.id[..container.id.len().min(12)]
            ),
            (None, Some(cgroup)) => format!("every process under {}", cgroup.path.display()),
            (None, None) => self
                .processes
                .iter()
                .map(|p| {
                    if p.tree {
                        format!("pid {} and its children", p.pid)
                    } else {
                        format!("pid {}", p.pid)
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The cgroup v2 directories cgroup programs attach to: the target cgroup, or the cgroup of
    /// each target process.
    pub fn attach_cgroups(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = match &self.cgroup {
            Some(cgroup) => vec![cgroup.path.clone()],
            None => self.processes.iter().map(|p| p.cgroup.clone()).collect(),
        };
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Whether the run lasts only as long as its processes (not for a cgroup target).
    pub fn ends_with_processes(&self) -> bool {
        self.cgroup.is_none()
    }

    /// Whether the target container has stopped or the target pod is gone (its cgroup
    /// directory was removed).
    pub fn container_stopped(&self) -> bool {
        let container = self.container.as_ref().map(|c| &c.cgroup);
        let pod = self.pod.as_ref().map(|p| &p.cgroup);
        container.or(pod).is_some_and(|dir| !dir.exists())
    }
}

/// A cgroup v2 directory as the kernel names it.
#[derive(Debug, Clone)]
pub struct CgroupTarget {
    pub path: PathBuf,
    /// The cgroup ID: the inode number of the directory (`bpf_get_current_cgroup_id`).
    pub id: u64,
    /// The depth below the root of the hierarchy (the root is 0).
    pub level: u32,
}

impl CgroupTarget {
    /// Resolves PATH: absolute under the v2 mount, or relative to it.
    pub fn resolve(path: &Path, force: bool) -> Result<Self, TargetError> {
        use std::os::unix::fs::MetadataExt as _;
        let mount = cgroup2_mount()?;
        let full = if path.starts_with(&mount) {
            path.to_path_buf()
        } else {
            mount.join(path.strip_prefix("/").unwrap_or(path))
        };
        let not_v2 = || TargetError::NotCgroup2 {
            path: path.to_path_buf(),
            mount: mount.clone(),
        };
        let full = full.canonicalize().map_err(|_| not_v2())?;
        if !full.starts_with(&mount)
            || !full.join("cgroup.procs").exists()
            || !full.join("cgroup.controllers").exists()
        {
            return Err(not_v2());
        }
        let relative = full.strip_prefix(&mount).map_err(|_| not_v2())?;
        let level = relative.components().count() as u32;
        if level == 0 && !force {
            return Err(TargetError::RootCgroup(full));
        }
        let id = fs::metadata(&full)
            .map_err(|source| TargetError::Proc {
                path: full.clone(),
                source,
            })?
            .ino();
        Ok(CgroupTarget {
            path: full,
            id,
            level,
        })
    }
}

/// The PIDs of the processes whose comm is `name`.
pub fn pids_by_comm(name: &str) -> Result<Vec<u32>, TargetError> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map_err(|source| TargetError::Proc {
            path: "/proc".into(),
            source,
        })?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect();
    pids.sort();
    if pids.is_empty() {
        return Err(TargetError::NoSuchComm(name.to_owned()));
    }
    Ok(pids)
}

/// A process to fault, with all of its threads.
#[derive(Debug)]
pub struct ProcessTarget {
    pub pid: u32,
    /// Processes it forks become targets too (--pid-tree).
    pub tree: bool,
    /// The cgroup v2 directory the process is in: cgroup programs attach here.
    pub cgroup: PathBuf,
    /// Readable when the process has exited; held from resolution on, so a recycled PID can
    /// never be mistaken for the target.
    pub pidfd: OwnedFd,
}

impl ProcessTarget {
    /// Resolves `pid`, refusing the processes whose failure would take the machine or this run
    /// down unless `force` is set.
    pub fn resolve(pid: u32, tree: bool, force: bool) -> Result<Self, TargetError> {
        let pidfd = pidfd_open(pid)?;
        if let Some(reason) = guard(pid)?.filter(|_| !force) {
            return Err(TargetError::Guarded { pid, reason });
        }
        let mount = cgroup2_mount()?;
        let relative = cgroup2_path_of(pid)?;
        let cgroup = mount.join(relative.trim_start_matches('/'));
        if !cgroup.is_dir() {
            return Err(TargetError::CgroupNotVisible { pid, path: cgroup });
        }
        Ok(ProcessTarget {
            pid,
            tree,
            cgroup,
            pidfd,
        })
    }
}

/// Why `pid` must not be a target without --force, if it must not.
pub(crate) fn guard(pid: u32) -> Result<Option<&'static str>, TargetError> {
    if pid == 1 {
        return Ok(Some(
            "it is init, which every process on the machine depends on",
        ));
    }
    if pid == std::process::id() {
        return Ok(Some("it is chaos itself"));
    }
    if is_kernel_thread(pid)? {
        return Ok(Some("it is a kernel thread"));
    }
    let mut ancestor = parent_of(std::process::id());
    while let Some(parent) = ancestor.filter(|&p| p > 1) {
        if parent == pid {
            return Ok(Some(
                "it is a parent of chaos (the shell or runner that started it)",
            ));
        }
        ancestor = parent_of(parent);
    }
    Ok(None)
}

/// Field 9 of /proc/PID/stat holds the task flags; PF_KTHREAD marks kernel threads.
fn is_kernel_thread(pid: u32) -> Result<bool, TargetError> {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let stat = read(format!("/proc/{pid}/stat"))?;
    let flags = stat_field(&stat, 9)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(flags & PF_KTHREAD != 0)
}

/// Every process in the cgroup v2 directory `dir` or below it, right now.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        found.extend(
            procs
                .lines()
                .filter_map(|line| line.trim().parse::<u32>().ok()),
        );
        if let Ok(entries) = fs::read_dir(&dir) {
            pending.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    found
}

/// The processes below `pid` in the process tree right now, children before grandchildren.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(parent) = parent_of(child) {
                parents.push((child, parent));
            }
        }
    }
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|&&(_, p)| p == parent)
                .map(|&(c, _)| c),
        );
        next += 1;
    }
    found.split_off(1)
}

/// Field 4 of /proc/PID/stat: stat costs the kernel less to make than status, and
/// `--pid-tree` reads it for every process.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = crate::sys::read_proc(format!("/proc/{pid}/stat")).ok()?;
    stat_field(&stat, 4)?.parse().ok()
}

fn pidfd_open(pid: u32) -> Result<OwnedFd, TargetError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ESRCH) => TargetError::NoSuchProcess(pid),
            _ => TargetError::Proc {
                path: format!("pidfd of {pid}").into(),
                source: err,
            },
        });
    }
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Where the cgroup v2 hierarchy is mounted.
pub fn cgroup2_mount() -> Result<PathBuf, TargetError> {
    crate::sys::cgroup2_mount().ok_or(TargetError::NoCgroup2)
}

/// The cgroup directories below `root` that `classify` recognises (from the name of the
/// directory holding it and its own name), each with its path; a recognised directory's own
/// subdirectories are not searched: they belong to it (a container's, a pod's).
fn find_cgroups<T>(root: &Path, classify: impl Fn(&str, &str) -> Option<T>) -> Vec<(T, PathBuf)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let parent = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match classify(parent, name) {
                Some(what) => found.push((what, entry.path())),
                None => pending.push(entry.path()),
            }
        }
    }
    found
}

/// The cgroup v2 path of `pid`, relative to the v2 mount (`/` for the root).
fn cgroup2_path_of(pid: u32) -> Result<String, TargetError> {
    let content = read(format!("/proc/{pid}/cgroup")).map_err(|err| match err {
        TargetError::Proc { ref source, .. } if source.kind() == io::ErrorKind::NotFound => {
            TargetError::NoSuchProcess(pid)
        }
        other => other,
    })?;
    content
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim_end_matches(" (deleted)").to_owned())
        .ok_or(TargetError::NoCgroup2Entry(pid))
}

fn read(path: impl AsRef<Path>) -> Result<String, TargetError> {
    let path = path.as_ref();
    crate::sys::read_proc(path).map_err(|source| TargetError::Proc {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_this_process() {
        let me = ProcessTarget::resolve(std::process::id(), false, true).expect("resolve self");
        assert!(me.cgroup.is_dir(), "{}", me.cgroup.display());
    }

    #[test]
    fn guards_init_self_parents_and_kernel_threads() {
        let refused = |pid| {
            matches!(
                ProcessTarget::resolve(pid, false, false),
                Err(TargetError::Guarded { .. })
            )
        };
        assert!(refused(1));
        assert!(refused(std::process::id()));
        // SAFETY: getppid has no arguments and cannot fail.
        let parent = unsafe { libc::getppid() } as u32;
        assert_eq!(parent_of(std::process::id()), Some(parent));
        assert!(refused(parent));
        assert!(refused(2), "kthreadd is a kernel thread");
        assert!(
            ProcessTarget::resolve(1, false, true).is_ok(),
            "--force lifts the guard"
        );
    }

    #[test]
    fn cgroups_resolve_under_the_v2_mount_only() {
        let mount = cgroup2_mount().unwrap();
        let root = CgroupTarget::resolve(&mount, true).unwrap();
        assert_eq!(root.level, 0);
        assert!(matches!(
            CgroupTarget::resolve(&mount, false),
            Err(TargetError::RootCgroup(_))
        ));
        assert!(matches!(
            CgroupTarget::resolve(Path::new("/no/such/cgroup"), false),
            Err(TargetError::NotCgroup2 { .. })
        ));
        assert!(matches!(
            CgroupTarget::resolve(Path::new("/proc"), false),
            Err(TargetError::NotCgroup2 { .. })
        ));
    }

    #[test]
    fn a_missing_process_is_named() {
        // PIDs above pid_max never exist; 2^22 is the largest pid_max Linux allows.
        let err = ProcessTarget::resolve(4_194_305, false, false).unwrap_err();
        assert!(
            matches!(err, TargetError::NoSuchProcess(4_194_305)),
            "{err}"
        );
    }
}

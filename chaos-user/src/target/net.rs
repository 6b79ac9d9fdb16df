//! Network targets: the interfaces a network fault attaches to, on this machine or inside a
//! network namespace.

use std::{
    ffi::{CStr, CString},
    path::{Path, PathBuf},
};

use super::TargetError;
use crate::sys::Netns;

/// The interfaces to fault, and the namespace they live in (`None`: chaos's own).
#[derive(Debug)]
pub struct NetTarget {
    pub netns: Option<Netns>,
    /// The interfaces to attach TC programs to; empty for a cgroup target.
    pub ifaces: Vec<String>,
    /// `--cgroup`: the packets of this cgroup's sockets instead of interfaces (cgroup_skb).
    pub cgroup: Option<super::CgroupTarget>,
    /// The container whose namespace it is (--container): its full ID.
    pub container: Option<String>,
    /// The pod whose namespace it is (--pod-uid): its UID.
    pub pod: Option<String>,
}

/// Opens `spec`: a path, a PID (the namespace of that process) or a name under /run/netns (as
/// `ip netns add` makes them).
pub fn open_netns(spec: &str) -> Result<Netns, TargetError> {
    let path = if spec.parse::<u32>().is_ok() {
        PathBuf::from(format!("/proc/{spec}/ns/net"))
    } else if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new("/run/netns").join(spec)
    };
    Netns::open(&path).map_err(|err| TargetError::NoSuchNetns {
        spec: spec.to_owned(),
        reason: format!("{}: {err}", path.display()),
    })
}

impl NetTarget {
    /// The network namespace of the processes in `dir`: a container's, or a pod's (its
    /// sandbox's). A Kubernetes container with no process now (crash-looping, not started yet)
    /// shares its pod's, so a container directory inside a pod falls back to the pod's.
    fn group_netns(name: &str, dir: &Path) -> Result<Netns, TargetError> {
        let pod_dir = dir.parent().filter(|parent| super::pod::is_pod_dir(parent));
        let first = |dir: &Path| super::processes_under(dir).first().copied();
        let pid = first(dir)
            .or_else(|| pod_dir.and_then(first))
            .ok_or_else(|| TargetError::NoSuchNetns {
                spec: name.to_owned(),
                reason: format!("no process is in {} or below it", dir.display()),
            })?;
        open_netns(&format!("/proc/{pid}/ns/net"))
    }
}

/// Where a network fault acts, as the user named it.
#[derive(Debug, Default)]
pub struct NetTargetSpec<'a> {
    pub cgroup: Option<&'a Path>,
    pub netns: Option<&'a str>,
    pub container: Option<&'a str>,
    pub pod: Option<super::pod::PodRef<'a>>,
    pub container_name: Option<&'a str>,
    pub iface: Option<&'a str>,
}

impl NetTarget {
    /// The target in a few words: `eth0 in /run/netns/app`, or the cgroup's path.
    pub fn describe(&self) -> String {
        match &self.cgroup {
            Some(cgroup) => format!("the sockets of {}", cgroup.path.display()),
            None => format!(
                "{}{}",
                self.ifaces.join(","),
                self.netns
                    .as_ref()
                    .map(|ns| format!(" in {}", ns.path.display()))
                    .unwrap_or_default()
            ),
        }
    }

    /// Resolves `--netns` or `--container` (its network namespace) and `--iface`: the one
    /// interface named, or every interface of the namespace but loopback. On this machine's own
    /// namespace an interface that carries the default route is refused unless `force`.
    pub fn resolve(spec: NetTargetSpec<'_>, force: bool) -> Result<Self, TargetError> {
        if let Some(path) = spec.cgroup {
            return Ok(NetTarget {
                netns: None,
                ifaces: Vec::new(),
                cgroup: Some(super::CgroupTarget::resolve(path, force)?),
                container: None,
                pod: None,
            });
        }
        let iface = spec.iface;
        if let (Some(name), None) = (spec.container_name, spec.pod) {
            return Err(TargetError::ContainerNameWithoutPod(name.to_owned()));
        }
        let mut container = spec
            .container
            .filter(|_| spec.netns.is_none())
            .map(super::container::resolve)
            .transpose()?;
        let mut pod = None;
        if let Some(named) = spec
            .pod
            .filter(|_| spec.netns.is_none() && container.is_none())
        {
            match super::pod::select(named, spec.container_name)? {
                super::pod::Selected::Pod(selected) => pod = Some(selected),
                super::pod::Selected::Container(selected) => container = Some(selected),
            }
        }
        let netns = match (spec.netns, &container, &pod) {
            (Some(netns), _, _) => Some(open_netns(netns)?),
            (None, Some(container), _) => {
                Some(Self::group_netns(&container.id, &container.cgroup)?)
            }
            (None, None, Some(pod)) => Some(Self::group_netns(&pod.uid, &pod.cgroup)?),
            (None, None, None) => None,
        };
        let in_netns = |work: &dyn Fn() -> Result<Vec<String>, TargetError>| match &netns {
            Some(ns) => ns.enter(work).map_err(|source| TargetError::Proc {
                path: ns.path.clone(),
                source,
            })?,
            None => work(),
        };
        let where_ = || {
            netns
                .as_ref()
                .map_or("this machine's network namespace".to_owned(), |ns| {
                    format!("network namespace {}", ns.path.display())
                })
        };
        let ifaces = in_netns(&|| {
            let all = interfaces();
            match iface {
                Some(name) if all.iter().any(|i| i == name) => Ok(vec![name.to_owned()]),
                Some(name) => Err(TargetError::NoSuchIface {
                    iface: name.to_owned(),
                    netns: where_(),
                    known: all.join(", "),
                }),
                None => Ok(all.into_iter().filter(|i| i != "lo").collect()),
            }
        })?;
        if ifaces.is_empty() {
            return Err(TargetError::NoIfaces(where_()));
        }
        // Guarded in chaos's own namespace, however it was named (a host-network pod's).
        if netns.as_ref().is_none_or(Netns::is_own) && !force {
            let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
            let routes6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
            if let Some(default) = ifaces
                .iter()
                .find(|i| carries_default_route(i, &routes, &routes6))
            {
                return Err(TargetError::DefaultRouteIface(default.clone()));
            }
        }
        Ok(NetTarget {
            netns,
            ifaces,
            cgroup: None,
            container: container.map(|c| c.id),
            pod: pod.map(|p| p.uid),
        })
    }
}

/// The interface names of the calling thread's network namespace.
fn interfaces() -> Vec<String> {
    // SAFETY: if_nameindex returns an array ended by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Vec::new();
        }
        let mut names = Vec::new();
        let mut entry = list;
        while (*entry).if_index != 0 {
            names.push(
                CStr::from_ptr((*entry).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
        names
    }
}

/// Whether `iface` is the device of a default route in /proc/net/route (IPv4: destination and
/// mask 0) or /proc/net/ipv6_route (destination ::/0).
fn carries_default_route(iface: &str, routes: &str, routes6: &str) -> bool {
    let v4 = routes.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 7 && f[0] == iface && f[1] == "00000000" && f[7] == "00000000"
    });
    // The kernel's own "unreachable" ::/0 entry on lo carries RTF_REJECT: not a route out.
    const RTF_REJECT: u32 = 0x0200;
    let v6 = routes6.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() == 10
            && f[9] == iface
            && f[0].bytes().all(|b| b == b'0')
            && f[1] == "00"
            && u32::from_str_radix(f[8], 16).is_ok_and(|flags| flags & RTF_REJECT == 0)
    });
    v4 || v6
}

/// Whether `name` is an interface of the calling thread's namespace (for tests and checks).
pub fn iface_exists(name: &str) -> bool {
    CString::new(name).is_ok_and(|c| {
        // SAFETY: a NUL-terminated name.
        unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_default_route_devices() {
        let routes = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                      eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n\
                      eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        let routes6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n\
                       00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        assert!(carries_default_route("eth0", routes, ""));
        assert!(!carries_default_route("eth1", routes, ""));
        assert!(carries_default_route("wlan0", "", routes6));
        assert!(!carries_default_route("lo", routes, routes6));
    }

    #[test]
    fn loopback_exists_here() {
        assert!(iface_exists("lo"));
        assert!(!iface_exists("no-such-if0"));
    }
}

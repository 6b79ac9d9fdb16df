//! Kubernetes pods on this node, found through the cgroup v2 directories kubelet makes for them:
//! `kubepods/[burstable/|besteffort/]pod<UID>` with the cgroupfs driver,
//! `kubepods[-burstable|-besteffort]-pod<UID, '-' as '_'>.slice` with the systemd driver (under
//! whatever root kubelet was given: `kubelet.slice/kubelet-kubepods.slice` in kind). Every
//! container of the pod, its sandbox included, has its cgroup below the pod's.

use std::path::{Path, PathBuf};

use super::TargetError;

/// A pod on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Its UID, as `metadata.uid` spells it.
    pub uid: String,
    pub qos: Qos,
    pub cgroup: PathBuf,
}

/// The pod's QoS class, which kubelet encodes in the cgroup path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

/// The pod whose UID is `uid` (as `kubectl get pod -o jsonpath='{.metadata.uid}'` prints it).
pub fn resolve(uid: &str) -> Result<Pod, TargetError> {
    let mount = super::cgroup2_mount()?;
    let pods = running_pods(&mount);
    let wanted = uid.trim().to_ascii_lowercase();
    pods.iter()
        .find(|pod| pod.uid == wanted)
        .cloned()
        .ok_or_else(|| TargetError::NoSuchPod {
            uid: uid.to_owned(),
            running: pods.len(),
        })
}

/// A pod as the user names it: by UID (`--pod-uid`) or by `NAMESPACE/NAME` (`--pod`).
#[derive(Clone, Copy, Debug)]
pub enum PodRef<'a> {
    Uid(&'a str),
    Name(&'a str),
}

/// What a pod reference selects: the whole pod, or one of its containers (`--container-name`).
#[derive(Debug)]
pub enum Selected {
    Pod(Pod),
    Container(super::Container),
}

/// The pod `pod` names, or its container named `container_name`. Names come from the
/// runtimes' bundles (runtime.rs), the cgroups from kubelet's layout.
pub fn select(pod: PodRef<'_>, container_name: Option<&str>) -> Result<Selected, TargetError> {
    let mount = super::cgroup2_mount()?;
    let pod = match pod {
        PodRef::Uid(uid) => resolve(uid)?,
        PodRef::Name(name) => by_name(name, &mount)?,
    };
    let Some(wanted) = container_name else {
        return Ok(Selected::Pod(pod));
    };
    let in_pod = super::container::running_containers(&pod.cgroup);
    let named: Vec<(String, &super::Container)> = super::runtime::known_containers()
        .into_iter()
        .filter_map(|known| {
            let running = in_pod.iter().find(|c| c.id == known.id)?;
            Some((known.container_name?, running))
        })
        .collect();
    match named.iter().find(|(name, _)| name == wanted) {
        Some((_, container)) => Ok(Selected::Container((*container).clone())),
        None => Err(TargetError::NoSuchPodContainer {
            pod: pod.uid,
            name: wanted.to_owned(),
            names: named
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The pod `NAMESPACE/NAME` on this node: its containers' bundles name it, and the cgroup
/// directory holding theirs is the pod's.
fn by_name(name: &str, mount: &Path) -> Result<Pod, TargetError> {
    let (namespace, pod_name) = name.split_once('/').unwrap_or(("default", name));
    let known = super::runtime::known_containers();
    let ids: Vec<&str> = known
        .iter()
        .filter(|k| k.pod_namespace == namespace && k.pod_name == pod_name)
        .map(|k| k.id.as_str())
        .collect();
    let pods = running_pods(mount);
    super::container::running_containers(mount)
        .iter()
        .filter(|c| ids.contains(&c.id.as_str()))
        .find_map(|c| {
            let dir = c.cgroup.parent()?;
            pods.iter().find(|pod| pod.cgroup == dir).cloned()
        })
        .ok_or_else(|| TargetError::NoSuchPodName {
            name: format!("{namespace}/{pod_name}"),
            known: known
                .iter()
                .map(|k| (k.pod_namespace.as_str(), k.pod_name.as_str()))
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
        })
}

/// Every pod cgroup under the v2 mount; a pod's own subdirectories are not searched.
pub fn running_pods(mount: &Path) -> Vec<Pod> {
    let mut found: Vec<Pod> = super::find_cgroups(mount, pod_of_dir)
        .into_iter()
        .map(|((qos, uid), cgroup)| Pod { uid, qos, cgroup })
        .collect();
    found.sort_by(|a, b| a.uid.cmp(&b.uid));
    found
}

/// The QoS class and UID of the pod whose cgroup directory is `name` inside `parent`, if it is
/// a pod's.
fn pod_of_dir(parent: &str, name: &str) -> Option<(Qos, String)> {
    if let Some(stem) = name.strip_suffix(".slice") {
        // systemd: kubepods-burstable-pod0c7b…_…_….slice; '-' separates slice levels, so the
        // UID's dashes are underscores.
        let (slice, uid) = stem.rsplit_once("-pod")?;
        let uid = uid.replace('_', "-");
        let qos = if slice.ends_with("kubepods-burstable") {
            Qos::Burstable
        } else if slice.ends_with("kubepods-besteffort") {
            Qos::BestEffort
        } else if slice.ends_with("kubepods") {
            Qos::Guaranteed
        } else {
            return None;
        };
        return is_pod_uid(&uid).then_some((qos, uid));
    }
    let uid = name.strip_prefix("pod").filter(|uid| is_pod_uid(uid))?;
    let qos = match parent {
        "burstable" => Qos::Burstable,
        "besteffort" => Qos::BestEffort,
        "kubepods" => Qos::Guaranteed,
        _ => return None,
    };
    Some((qos, uid.to_owned()))
}

/// Pod UIDs are UUIDs (8-4-4-4-12 lowercase hex), or 32 hex digits for static pods (a hash of
/// their manifest).
fn is_pod_uid(s: &str) -> bool {
    let hex = |part: &str| part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [whole] => whole.len() == 32 && hex(whole),
        parts => parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && parts.iter().all(|p| hex(p)),
    }
}

/// Whether `dir` is a pod's cgroup directory.
pub fn is_pod_dir(dir: &Path) -> bool {
    let name = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned()
    };
    let parent = dir.parent().map(name).unwrap_or_default();
    pod_of_dir(&parent, &name(dir)).is_some()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const UID: &str = "0c7b3b4e-5f1a-4c2d-9e8f-1a2b3c4d5e6f";
    const UNDERSCORED: &str = "0c7b3b4e_5f1a_4c2d_9e8f_1a2b3c4d5e6f";
    const STATIC: &str = "6b4b1c9e3f0a7d2e8c5b4a3f2e1d0c9b";

    #[test]
    fn finds_pods_in_every_driver_and_qos_layout() {
        let cases = [
            // cgroupfs driver: kubepods/pod<UID>, kubepods/<qos>/pod<UID>.
            ("kubepods", format!("pod{UID}"), Qos::Guaranteed, UID),
            ("burstable", format!("pod{UID}"), Qos::Burstable, UID),
            ("besteffort", format!("pod{UID}"), Qos::BestEffort, UID),
            ("kubepods", format!("pod{STATIC}"), Qos::Guaranteed, STATIC),
            // systemd driver.
            (
                "kubepods.slice",
                format!("kubepods-pod{UNDERSCORED}.slice"),
                Qos::Guaranteed,
                UID,
            ),
            (
                "kubepods-burstable.slice",
                format!("kubepods-burstable-pod{UNDERSCORED}.slice"),
                Qos::Burstable,
                UID,
            ),
            (
                "kubepods-besteffort.slice",
                format!("kubepods-besteffort-pod{UNDERSCORED}.slice"),
                Qos::BestEffort,
                UID,
            ),
            // kind and other nested kubelets: the same names under another root.
            (
                "kubelet-kubepods-burstable.slice",
                format!("kubelet-kubepods-burstable-pod{UNDERSCORED}.slice"),
                Qos::Burstable,
                UID,
            ),
        ];
        for (parent, name, qos, uid) in cases {
            assert_eq!(
                pod_of_dir(parent, &name),
                Some((qos, uid.to_owned())),
                "{parent}/{name}"
            );
        }
    }

    #[test]
    fn other_directories_are_not_pods() {
        let not_pods = [
            ("kubepods", "burstable".to_owned()),
            ("kubepods.slice", "kubepods-burstable.slice".to_owned()),
            ("system.slice", format!("app-pod{UNDERSCORED}.slice")),
            ("system.slice", "podman.service".to_owned()),
            ("machine.slice", format!("libpod-pod-{STATIC}.slice")),
            ("user.slice", format!("pod{UID}")),
            ("kubepods", "pod0c7b3b4e".to_owned()),
            ("burstable", format!("pod{}", UID.to_uppercase())),
        ];
        for (parent, name) in not_pods {
            assert_eq!(pod_of_dir(parent, &name), None, "{parent}/{name}");
        }
    }

    #[test]
    fn walks_a_cgroup_tree_to_its_pods_and_their_first_process() {
        let root = std::env::temp_dir().join(format!("chaos-pods-{}", std::process::id()));
        let pod = root.join(format!("kubepods/burstable/pod{UID}"));
        let sandbox = pod.join("a".repeat(64));
        fs::create_dir_all(&sandbox).unwrap();
        fs::create_dir_all(root.join(format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            STATIC
        )))
        .unwrap();
        fs::write(pod.join("cgroup.procs"), "").unwrap();
        fs::write(sandbox.join("cgroup.procs"), "4242\n4243\n").unwrap();
        let pods = running_pods(&root);
        assert_eq!(
            pods.iter()
                .map(|p| (p.uid.as_str(), p.qos))
                .collect::<Vec<_>>(),
            [(UID, Qos::Burstable), (STATIC, Qos::BestEffort)]
        );
        assert!(is_pod_dir(&pods[0].cgroup));
        assert!(!is_pod_dir(&sandbox));
        assert_eq!(crate::target::processes_under(&pod).first(), Some(&4242));
        assert_eq!(
            crate::target::processes_under(&pods[1].cgroup).first(),
            None
        );
        fs::remove_dir_all(&root).unwrap();
    }
}

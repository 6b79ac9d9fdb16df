//! What the container runtimes of this node know of their containers that the cgroup tree does
//! not: Kubernetes pod and container names, from the annotations of the OCI bundles (config.json)
//! the runtimes run them from. The bundles are found through the runtimes' own processes, so that
//! any state directory serves, seen from the host or from a pod with the host's PID namespace:
//! a containerd shim's working directory is a bundle, beside the other bundles of its namespace
//! (`…/io.containerd.runtime.v2.task/k8s.io/<id>`); cri-o's conmon names its bundle (`-b`).

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;

/// A container as its runtime's bundle describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// Where the runtime records it (containerd 1.6 and later, cri-o).
    pub pod_uid: Option<String>,
    /// `None` for the pod's sandbox.
    pub container_name: Option<String>,
}

/// The annotations each runtime writes into a Kubernetes container's bundle.
struct Keys {
    pod_namespace: &'static str,
    pod_name: &'static str,
    pod_uid: &'static str,
    container_name: &'static str,
    /// The annotation that tells a sandbox from a container, and its value for a sandbox.
    kind: (&'static str, &'static str),
}

const CONTAINERD: Keys = Keys {
    pod_namespace: "io.kubernetes.cri.sandbox-namespace",
    pod_name: "io.kubernetes.cri.sandbox-name",
    pod_uid: "io.kubernetes.cri.sandbox-uid",
    container_name: "io.kubernetes.cri.container-name",
    kind: ("io.kubernetes.cri.container-type", "sandbox"),
};

const CRI_O: Keys = Keys {
    pod_namespace: "io.kubernetes.pod.namespace",
    pod_name: "io.kubernetes.pod.name",
    pod_uid: "io.kubernetes.pod.uid",
    container_name: "io.kubernetes.container.name",
    kind: ("io.kubernetes.cri-o.ContainerType", "sandbox"),
};

/// Every Kubernetes container whose bundle the runtimes of this node show.
pub fn known_containers() -> Vec<Known> {
    let mut known: Vec<Known> = bundles()
        .iter()
        .filter_map(|bundle| {
            let id = bundle_id(bundle)?;
            let config = fs::read(bundle.join("config.json")).ok()?;
            let config: Value = serde_json::from_slice(&config).ok()?;
            from_annotations(&id, &config["annotations"])
        })
        .collect();
    known.sort_by(|a, b| a.id.cmp(&b.id));
    known.dedup_by(|a, b| a.id == b.id);
    known
}

/// The container ID of a bundle directory: containerd names it after the ID, cri-o's is
/// `<id>/userdata`.
fn bundle_id(bundle: &Path) -> Option<String> {
    let name = |p: &Path| p.file_name()?.to_str().map(str::to_owned);
    match name(bundle)?.as_str() {
        "userdata" => name(bundle.parent()?),
        id => Some(id.to_owned()),
    }
}

/// A Kubernetes container from its bundle's annotations, whichever runtime wrote them.
fn from_annotations(id: &str, annotations: &Value) -> Option<Known> {
    [CONTAINERD, CRI_O].iter().find_map(|keys| {
        let get = |key: &str| annotations[key].as_str().map(str::to_owned);
        let sandbox = annotations[keys.kind.0] == keys.kind.1;
        Some(Known {
            id: id.to_owned(),
            pod_namespace: get(keys.pod_namespace)?,
            pod_name: get(keys.pod_name)?,
            pod_uid: get(keys.pod_uid),
            container_name: if sandbox {
                None
            } else {
                get(keys.container_name)
            },
        })
    })
}

/// The bundle directories of the running containers: every bundle beside a containerd shim's
/// working directory, and each conmon's.
fn bundles() -> Vec<PathBuf> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for pid in procs.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let comm = fs::read_to_string(proc.join("comm")).unwrap_or_default();
        match comm.trim_end() {
            // containerd-shim-runc-v2, cut to the 15 bytes of a comm. Read through the magic
            // link, the shim's directory resolves in its own mount namespace.
            "containerd-shim" => {
                let namespace = proc.join("cwd/..");
                if let Ok(entries) = fs::read_dir(&namespace) {
                    found.extend(
                        entries
                            .flatten()
                            .map(|entry| proc.join("cwd/..").join(entry.file_name())),
                    );
                }
            }
            "conmon" => {
                let cmdline = fs::read(proc.join("cmdline")).unwrap_or_default();
                if let Some(bundle) = conmon_bundle(&cmdline) {
                    // Its path in conmon's mount namespace, read through conmon's root.
                    found.push(proc.join("root").join(bundle.trim_start_matches('/')));
                }
            }
            _ => {}
        }
    }
    found
}

/// The bundle conmon was started with (`-b DIR` or `--bundle DIR`, or `--bundle=DIR`).
fn conmon_bundle(cmdline: &[u8]) -> Option<String> {
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    args.iter()
        .enumerate()
        .find_map(|(i, arg)| match arg.as_str() {
            "-b" | "--bundle" => args.get(i + 1).cloned(),
            other => other.strip_prefix("--bundle=").map(str::to_owned),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_containerd_and_cri_o_annotations() {
        let containerd = json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "web",
            "io.kubernetes.cri.sandbox-name": "web-0",
            "io.kubernetes.cri.sandbox-namespace": "shop",
            "io.kubernetes.cri.sandbox-uid": "0c7b3b4e-5f1a-4c2d-9e8f-1a2b3c4d5e6f",
            "io.kubernetes.cri.sandbox-id": "ff",
        });
        assert_eq!(
            from_annotations("aa", &containerd),
            Some(Known {
                id: "aa".into(),
                pod_namespace: "shop".into(),
                pod_name: "web-0".into(),
                pod_uid: Some("0c7b3b4e-5f1a-4c2d-9e8f-1a2b3c4d5e6f".into()),
                container_name: Some("web".into()),
            })
        );
        let sandbox = json!({
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-name": "web-0",
            "io.kubernetes.cri.sandbox-namespace": "shop",
        });
        let known = from_annotations("ff", &sandbox).unwrap();
        assert_eq!((known.container_name, known.pod_uid), (None, None));
        let cri_o = json!({
            "io.kubernetes.cri-o.ContainerType": "container",
            "io.kubernetes.container.name": "db",
            "io.kubernetes.pod.name": "db-1",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.uid": "1d2e",
        });
        let known = from_annotations("bb", &cri_o).unwrap();
        assert_eq!(
            (known.pod_name.as_str(), known.container_name.as_deref()),
            ("db-1", Some("db"))
        );
        // A container not started by Kubernetes (podman's) names no pod.
        assert_eq!(
            from_annotations("cc", &json!({"org.opencontainers.image.stopSignal": "15"})),
            None
        );
        assert_eq!(from_annotations("cc", &Value::Null), None);
    }

    #[test]
    fn finds_each_bundles_id_and_conmons_bundle() {
        assert_eq!(
            bundle_id(Path::new(
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc"
            )),
            Some("abc".into())
        );
        assert_eq!(
            bundle_id(Path::new(
                "/run/containers/storage/overlay-containers/def/userdata"
            )),
            Some("def".into())
        );
        let cmdline = b"/usr/bin/conmon\0-c\0def\0-b\0/run/containers/storage/overlay-containers/def/userdata\0-r\0/usr/bin/runc\0";
        assert_eq!(
            conmon_bundle(cmdline).as_deref(),
            Some("/run/containers/storage/overlay-containers/def/userdata")
        );
        assert_eq!(
            conmon_bundle(b"conmon\0--bundle=/x/userdata\0").as_deref(),
            Some("/x/userdata")
        );
        assert_eq!(conmon_bundle(b"conmon\0-c\0def\0"), None);
    }
}

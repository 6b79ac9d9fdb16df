//! Containers, found through their cgroup v2 directories: every runtime names the directory of a
//! container after its ID (podman, docker, containerd, cri-o) or its name (lxc).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use super::TargetError;

/// A running container: its ID (or lxc name) and the cgroup v2 directory its processes are in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// Who made it, as its cgroup directory tells: podman, docker, containerd, cri-o, lxc, or
    /// "container" for a bare 64-hex directory (cgroupfs layouts of docker and kubelet).
    pub runtime: &'static str,
    pub cgroup: PathBuf,
}

/// The runtimes of the IDs Kubernetes reports, `containerd://ID` (a Pod's
/// status.containerStatuses[].containerID); each is also the runtime its cgroup names.
const CRI_RUNTIMES: [&str; 3] = ["containerd", "cri-o", "docker"];

/// The container that `query` names: its full ID, a unique prefix of its ID, its name (lxc
/// names are in the cgroup tree; podman and docker names are asked of their CLI when installed),
/// or `RUNTIME://ID` as Kubernetes reports it.
pub fn resolve(query: &str) -> Result<Container, TargetError> {
    let mount = super::cgroup2_mount()?;
    let running = running_containers(&mount);
    if let Some((runtime, id)) = query.split_once("://") {
        return by_runtime_id(query, runtime, id, &running);
    }
    if let Some(found) = pick(query, &running)? {
        return Ok(found);
    }
    // Not an ID or an lxc name: maybe a podman or docker container name.
    if let Some(id) = id_from_runtime_cli(query)
        && let Some(found) = running.iter().find(|c| c.id == id)
    {
        return Ok(found.clone());
    }
    Err(TargetError::NoSuchContainer {
        query: query.to_owned(),
        running: running.len(),
    })
}

/// The container of `runtime` (containerd, cri-o, docker) whose full ID is `id`: a cgroup named
/// for that runtime, or a bare ID (kubelet's cgroupfs layout names no runtime).
fn by_runtime_id(
    query: &str,
    runtime: &str,
    id: &str,
    running: &[Container],
) -> Result<Container, TargetError> {
    if !CRI_RUNTIMES.contains(&runtime) {
        return Err(TargetError::UnknownRuntime {
            query: query.to_owned(),
            runtime: runtime.to_owned(),
        });
    }
    running
        .iter()
        .find(|c| c.id == id && (c.runtime == runtime || c.runtime == "container"))
        .cloned()
        .ok_or_else(|| TargetError::NoSuchContainer {
            query: query.to_owned(),
            running: running.len(),
        })
}

/// The container among `running` that `query` names by full ID, lxc name or unique ID prefix;
/// `None` when nothing matches, an error listing the candidates when several do.
fn pick(query: &str, running: &[Container]) -> Result<Option<Container>, TargetError> {
    if query.is_empty() {
        return Err(TargetError::NoSuchContainer {
            query: String::new(),
            running: running.len(),
        });
    }
    if let Some(exact) = running.iter().find(|c| c.id == query) {
        return Ok(Some(exact.clone()));
    }
    let by_prefix: Vec<&Container> = running
        .iter()
        .filter(|c| c.runtime != "lxc" && c.id.starts_with(query))
        .collect();
    match by_prefix.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        several => Err(TargetError::AmbiguousContainer {
            query: query.to_owned(),
            candidates: several
                .iter()
                .map(|c| format!("{} ({})", c.id, c.runtime))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Every container cgroup under the v2 mount. A container's own subdirectories are not
/// searched: they belong to it.
pub fn running_containers(mount: &Path) -> Vec<Container> {
    let mut found: Vec<Container> = super::find_cgroups(mount, container_of_dir)
        .into_iter()
        .map(|((runtime, id), cgroup)| Container {
            id,
            runtime,
            cgroup,
        })
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

/// The runtime and ID (or lxc name) of a container whose cgroup directory is `name` inside a
/// directory named `parent`, if it is one.
fn container_of_dir(parent: &str, name: &str) -> Option<(&'static str, String)> {
    const PREFIXES: [(&str, &str); 4] = [
        ("libpod-", "podman"),
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
    ];
    if let Some(lxc) = name.strip_prefix("lxc.payload.") {
        return Some(("lxc", lxc.to_owned()));
    }
    if parent == "lxc" || parent == "lxc.payload" {
        return Some(("lxc", name.to_owned()));
    }
    let bare = name.strip_suffix(".scope").unwrap_or(name);
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = bare.strip_prefix(prefix).filter(|id| is_container_id(id)) {
            return Some((runtime, id.to_owned()));
        }
    }
    is_container_id(bare).then(|| {
        let runtime = if parent == "docker" {
            "docker"
        } else {
            "container"
        };
        (runtime, bare.to_owned())
    })
}

/// Container IDs of every runtime here are 64 lowercase hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The full ID podman or docker gives for the container named `name`, if either is installed and
/// knows it.
fn id_from_runtime_cli(name: &str) -> Option<String> {
    ["podman", "docker"].into_iter().find_map(|cli| {
        let output = Command::new(cli)
            .args([
                "inspect",
                "--type",
                "container",
                "--format",
                "{{.Id}}",
                name,
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let id = String::from_utf8(output.stdout).ok()?.trim().to_owned();
        (output.status.success() && is_container_id(&id)).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    const B: &str = "a1ffc3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    #[test]
    fn recognises_the_runtimes_cgroup_names() {
        let cases = [
            ("libpod_parent", format!("libpod-{A}"), Some("podman")),
            ("machine.slice", format!("libpod-{A}.scope"), Some("podman")),
            ("system.slice", format!("docker-{A}.scope"), Some("docker")),
            ("docker", A.to_owned(), Some("docker")),
            (
                "kubepods-pod1.slice",
                format!("cri-containerd-{A}.scope"),
                Some("containerd"),
            ),
            (
                "kubepods-pod1.slice",
                format!("crio-{A}.scope"),
                Some("cri-o"),
            ),
            ("pod1", A.to_owned(), Some("container")),
            ("machine.slice", format!("libpod-conmon-{A}.scope"), None),
            ("libpod_parent", "conmon".to_owned(), None),
            ("system.slice", "nginx.service".to_owned(), None),
        ];
        for (parent, name, runtime) in cases {
            let found = container_of_dir(parent, &name);
            assert_eq!(found.as_ref().map(|f| f.0), runtime, "{parent}/{name}");
            if let Some((_, id)) = found {
                assert_eq!(id, A);
            }
        }
        assert_eq!(
            container_of_dir("/", "lxc.payload.web1"),
            Some(("lxc", "web1".to_owned()))
        );
    }

    fn container(id: &str, runtime: &'static str) -> Container {
        Container {
            id: id.to_owned(),
            runtime,
            cgroup: PathBuf::from("/x").join(id),
        }
    }

    #[test]
    fn picks_by_id_prefix_or_lxc_name_and_lists_an_ambiguous_prefix() {
        let running = [
            container(A, "podman"),
            container(B, "podman"),
            container("web1", "lxc"),
        ];
        assert_eq!(pick(A, &running).unwrap().unwrap().id, A);
        assert_eq!(pick("a1b2", &running).unwrap().unwrap().id, A);
        assert_eq!(pick("web1", &running).unwrap().unwrap().runtime, "lxc");
        assert_eq!(
            pick("web", &running).unwrap(),
            None,
            "lxc names match whole"
        );
        assert_eq!(pick("ff", &running).unwrap(), None);
        let err = pick("a1", &running).unwrap_err().to_string();
        assert!(err.contains(A) && err.contains(B), "{err}");
        assert!(pick("", &running).is_err());
    }

    #[test]
    fn kubernetes_ids_name_their_runtime() {
        let running = [
            container(A, "containerd"),
            container(B, "container"),
            container(&"c".repeat(64), "cri-o"),
            container(&"d".repeat(64), "podman"),
        ];
        let found = |query: &str| {
            let (runtime, id) = query.split_once("://").unwrap();
            by_runtime_id(query, runtime, id, &running)
        };
        assert_eq!(found(&format!("containerd://{A}")).unwrap().id, A);
        // A bare ID (cgroupfs driver) serves any of the three runtimes.
        assert_eq!(found(&format!("containerd://{B}")).unwrap().id, B);
        assert_eq!(found(&format!("cri-o://{B}")).unwrap().id, B);
        assert_eq!(found(&format!("docker://{B}")).unwrap().id, B);
        assert_eq!(
            found(&format!("cri-o://{}", "c".repeat(64)))
                .unwrap()
                .runtime,
            "cri-o"
        );
        // The runtime must match, and Kubernetes gives whole IDs: no prefixes.
        assert!(found(&format!("cri-o://{A}")).is_err());
        assert!(found(&format!("docker://{}", "d".repeat(64))).is_err());
        assert!(found("containerd://a1b2").is_err());
        let err = found(&format!("rkt://{A}")).unwrap_err().to_string();
        assert!(
            err.contains("'rkt'") && err.contains("containerd://ID"),
            "{err}"
        );
    }
}

//! The monkey's pool of targets: containers by name pattern and label, cgroups by path pattern,
//! processes by name — each without the opt-out mark, listed in a stable order so that the same
//! pool gives the same plan.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

use crate::{cli::experiment::PlannedFault, target};

/// The container label, cgroup extended attribute and process environment variable that keep a
/// target out of the monkey's pool, when set to `true`.
pub const OPT_OUT_LABEL: &str = "chaos.monkey/opt-out";
pub const OPT_OUT_XATTR: &str = "user.chaos.monkey.opt-out";
pub const OPT_OUT_ENV: &str = "CHAOS_MONKEY_OPT_OUT";

/// A kind of target, as the fault commands take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Container,
    Cgroup,
    Process,
    /// A Kubernetes pod, faulted through `chaos k8s run`.
    Pod,
    /// A pod in its node's network namespace (hostNetwork): it takes what a pod takes but
    /// network faults, which would be the node's.
    HostNetworkPod,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Container,
        Kind::Cgroup,
        Kind::Process,
        Kind::Pod,
        Kind::HostNetworkPod,
    ];
    /// The kinds a fault's options are checked against (a hostNetwork pod's follow a pod's).
    pub const CHECKED: [Kind; 4] = [Kind::Container, Kind::Cgroup, Kind::Process, Kind::Pod];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Cgroup => "cgroup",
            Kind::Process => "process",
            Kind::Pod | Kind::HostNetworkPod => "pod",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Container => "containers",
            Kind::Cgroup => "cgroups",
            Kind::Process => "processes",
            Kind::Pod | Kind::HostNetworkPod => "pods",
        }
    }

    /// The option that names a target of this kind, and a value any parser accepts (to check a
    /// fault's options before a real target is known).
    pub fn option(self) -> (&'static str, &'static str) {
        match self {
            Kind::Container => ("--container", "monkey"),
            Kind::Cgroup => ("--cgroup", "/"),
            Kind::Process => ("--pid", "1"),
            Kind::Pod | Kind::HostNetworkPod => ("--pod", "monkey/monkey"),
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One `[[target]]` table of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Podman and docker containers whose name matches `name` (a pattern) and that carry
    /// `label` (`KEY` or `KEY=VALUE`).
    Containers {
        name: Option<String>,
        label: Option<String>,
    },
    /// The cgroup v2 directories a path names; `*` and `?` in its last component.
    Cgroups(String),
    /// Each process of this name (its comm).
    Processes(String),
    /// The running pods of a namespace that a label selector matches, through the Kubernetes
    /// API; `options` go to each pick's `chaos k8s run` (`--image`, `--chaos-namespace`).
    Pods {
        namespace: String,
        selector: String,
        options: Vec<String>,
    },
}

impl Entry {
    pub fn kind(&self) -> Kind {
        match self {
            Entry::Containers { .. } => Kind::Container,
            Entry::Cgroups(_) => Kind::Cgroup,
            Entry::Processes(_) => Kind::Process,
            Entry::Pods { .. } => Kind::Pod,
        }
    }
}

/// A target the monkey may pick.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    pub kind: Kind,
    /// What a person calls it: a container's name, a cgroup's path, `comm (PID n)`.
    pub name: String,
    /// The value of the kind's option: a container ID, a cgroup path, a PID, `NAMESPACE/NAME`.
    pub value: String,
    /// More options of the command that faults it (a pod's `chaos k8s run`).
    pub options: Vec<String>,
}

impl Candidate {
    /// The chaos command line that runs `fault` on this target: the fault command with its
    /// target option, or for a pod `chaos k8s run` on that one pod.
    pub fn argv(&self, fault: &PlannedFault) -> Vec<String> {
        let mut argv = match self.kind {
            Kind::Pod | Kind::HostNetworkPod => {
                let (namespace, name) = self.value.split_once('/').unwrap_or_default();
                let mut argv: Vec<String> = ["k8s", "run", "-n", namespace, "--pod", name]
                    .map(str::to_owned)
                    .into();
                argv.extend(self.options.iter().cloned());
                argv.extend(fault.lifetime_args());
                argv.extend(["--json".to_owned(), "--".to_owned()]);
                argv.extend(fault.words(&[]));
                return argv;
            }
            _ => fault.argv(&[]),
        };
        argv.extend([self.kind.option().0.to_owned(), self.value.clone()]);
        argv.push("--json".into());
        argv
    }

    pub fn json(&self) -> Value {
        let mut json = json!({"kind": self.kind.as_str(), "name": self.name, self.kind.option().0.trim_start_matches('-'): self.value});
        if self.kind == Kind::HostNetworkPod {
            json["host_network"] = true.into();
        }
        json
    }
}

/// Every target the entries name now, without those that opted out, sorted and without
/// duplicates.
pub fn candidates(entries: &[Entry]) -> Vec<Candidate> {
    let containers = entries
        .iter()
        .any(|e| matches!(e, Entry::Containers { .. }))
        .then(listed_containers)
        .unwrap_or_default();
    let mut cluster = Cluster::None;
    let mut found = Vec::new();
    for entry in entries {
        match entry {
            Entry::Pods {
                namespace,
                selector,
                options,
            } => found.extend(
                cluster
                    .pods(namespace, selector)
                    .into_iter()
                    .map(|pod| Candidate {
                        options: options.clone(),
                        ..pod
                    }),
            ),
            Entry::Containers { name, label } => {
                found.extend(
                    containers
                        .iter()
                        .filter(|c| name.as_ref().is_none_or(|n| glob(n, &c.name)))
                        .filter(|c| label.as_ref().is_none_or(|l| has_label(&c.labels, l)))
                        .filter(|c| !opted_out(c.labels.get(OPT_OUT_LABEL).map(String::as_str)))
                        .map(|c| Candidate {
                            kind: Kind::Container,
                            name: c.name.clone(),
                            value: c.id.clone(),
                            options: Vec::new(),
                        }),
                );
            }
            Entry::Cgroups(pattern) => {
                found.extend(cgroups(pattern).into_iter().map(|path| Candidate {
                    kind: Kind::Cgroup,
                    name: path.display().to_string(),
                    value: path.display().to_string(),
                    options: Vec::new(),
                }));
            }
            Entry::Processes(comm) => {
                let pids = target::pids_by_comm(comm).unwrap_or_default();
                // Not init, chaos, its parents or kernel threads: they are refused as targets.
                let pickable = |pid: &u32| matches!(target::guard(*pid), Ok(None));
                found.extend(
                    pids.into_iter()
                        .filter(pickable)
                        .filter(|&pid| !process_opted_out(pid))
                        .map(|pid| Candidate {
                            kind: Kind::Process,
                            name: format!("{comm} (PID {pid})"),
                            value: pid.to_string(),
                            options: Vec::new(),
                        }),
                );
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The cluster the pool's pods are listed from: connected to at the first pod entry.
enum Cluster {
    None,
    #[cfg(feature = "k8s")]
    Connected(crate::k8s::Cluster),
    Unreachable,
}

impl Cluster {
    /// The running pods of `namespace` that `selector` matches and that did not opt out; none
    /// (said on stderr) when the cluster cannot be reached or the namespace did not opt in.
    fn pods(&mut self, namespace: &str, selector: &str) -> Vec<Candidate> {
        #[cfg(feature = "k8s")]
        {
            if let Cluster::None = self {
                *self = match crate::k8s::Cluster::connect(crate::cli::k8s::HOME_NAMESPACE) {
                    Ok(cluster) => Cluster::Connected(cluster),
                    Err(err) => {
                        eprintln!(
                            "chaos monkey: no pods in the pool: {}",
                            crate::error_line(&err)
                        );
                        Cluster::Unreachable
                    }
                };
            }
            let Cluster::Connected(cluster) = self else {
                return Vec::new();
            };
            let listed = cluster
                .check_opted_in(namespace)
                .and_then(|()| cluster.running_pods(namespace, selector));
            match listed {
                Ok(pods) => pods
                    .into_iter()
                    .filter(|pod| !opted_out(pod.labels.get(OPT_OUT_LABEL).map(String::as_str)))
                    .map(|pod| {
                        let name = format!("{}/{}", pod.namespace, pod.name);
                        Candidate {
                            kind: if pod.host_network {
                                Kind::HostNetworkPod
                            } else {
                                Kind::Pod
                            },
                            value: name.clone(),
                            name,
                            options: Vec::new(),
                        }
                    })
                    .collect(),
                Err(err) => {
                    eprintln!(
                        "chaos monkey: no pods of {namespace} matching '{selector}' in the pool: {}",
                        crate::error_line(&err)
                    );
                    Vec::new()
                }
            }
        }
        #[cfg(not(feature = "k8s"))]
        {
            // The file was refused at parsing: this build has no API client.
            let _ = (namespace, selector);
            *self = Cluster::Unreachable;
            Vec::new()
        }
    }
}

fn opted_out(mark: Option<&str>) -> bool {
    mark.is_some_and(|value| value.trim() == "true")
}

/// A container as podman or docker lists it.
struct Listed {
    id: String,
    name: String,
    labels: std::collections::BTreeMap<String, String>,
}

/// The running containers podman and docker know, where installed.
fn listed_containers() -> Vec<Listed> {
    let run = |cli: &str, args: &[&str]| -> Option<String> {
        let output = Command::new(cli)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let mut listed = Vec::new();
    // podman: one JSON array; Names a list, Labels an object (or null).
    if let Some(text) = run("podman", &["ps", "--format", "json"])
        && let Ok(Value::Array(items)) = serde_json::from_str(&text)
    {
        for item in items {
            let name = item["Names"][0].as_str().unwrap_or_default().to_owned();
            let labels = item["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(id) = item["Id"].as_str() {
                listed.push(Listed {
                    id: id.to_owned(),
                    name,
                    labels,
                });
            }
        }
    }
    // docker: a JSON object per line; Names and Labels comma-separated strings.
    if let Some(text) = run("docker", &["ps", "--no-trunc", "--format", "{{json .}}"]) {
        for item in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            let field = |key: &str| item[key].as_str().unwrap_or_default().to_owned();
            let labels = field("Labels")
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (key.to_owned(), value.to_owned())
                })
                .collect();
            listed.push(Listed {
                id: field("ID"),
                name: field("Names")
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                labels,
            });
        }
    }
    listed
}

fn has_label(labels: &std::collections::BTreeMap<String, String>, wanted: &str) -> bool {
    match wanted.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
        None => labels.contains_key(wanted),
    }
}

/// The cgroup v2 directories `pattern` names that exist and did not opt out.
fn cgroups(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let matches: Vec<PathBuf> = match (path.parent(), path.file_name()) {
        (Some(parent), Some(last)) if pattern.contains(['*', '?']) => {
            let last = last.to_string_lossy();
            fs::read_dir(parent)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.path().is_dir())
                        .filter(|e| glob(&last, &e.file_name().to_string_lossy()))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => vec![path.to_path_buf()]
            .into_iter()
            .filter(|p| p.is_dir())
            .collect(),
    };
    // Only cgroup v2 directories, and not its root.
    let mount = target::cgroup2_mount().ok();
    matches
        .into_iter()
        .filter(|dir| {
            mount
                .as_ref()
                .is_some_and(|m| dir.starts_with(m) && dir != m)
        })
        .filter(|dir| {
            let mark = xattr(dir, OPT_OUT_XATTR);
            !opted_out(mark.as_deref())
        })
        .collect()
}

fn xattr(path: &Path, name: &str) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut value = [0u8; 64];
    // SAFETY: both strings are NUL-terminated; the kernel writes at most value.len() bytes.
    let length = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    let length = usize::try_from(length).ok()?;
    Some(String::from_utf8_lossy(&value[..length]).into_owned())
}

/// Whether the process's environment sets the opt-out variable to `true`.
fn process_opted_out(pid: u32) -> bool {
    let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{OPT_OUT_ENV}=true");
    environ
        .split(|&b| b == 0)
        .any(|variable| variable == wanted.as_bytes())
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters and `?` for one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // The classic two-pointer match, backtracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_a_shell_would() {
        for (pattern, text, matches) in [
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("web-*", "db-1", false),
            ("*-1", "web-1", true),
            ("w?b-*", "wab-x", true),
            ("web", "web-1", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxxc", false),
            ("*", "", true),
        ] {
            assert_eq!(glob(pattern, text), matches, "{pattern} {text}");
        }
    }

    #[test]
    fn labels_match_by_key_or_pair() {
        let labels = [("tier".to_owned(), "web".to_owned())]
            .into_iter()
            .collect();
        assert!(has_label(&labels, "tier"));
        assert!(has_label(&labels, "tier=web"));
        assert!(!has_label(&labels, "tier=db"));
        assert!(!has_label(&labels, "app"));
        assert!(opted_out(Some("true")));
        assert!(!opted_out(Some("false")));
        assert!(!opted_out(None));
    }
}

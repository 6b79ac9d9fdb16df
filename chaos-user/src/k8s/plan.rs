//! What `chaos k8s run` creates, decided before the API server is asked to create anything:
//! which of the selected pods it faults (at most `--max-targets`, more than half only when the
//! user says so, drawn from a seed), the run's record and one injector pod per target.

use std::time::Duration;

use serde_json::{Value, json};

use crate::rng::Rng;

/// The namespace annotation that opts a namespace in: `chaos k8s run` refuses any other.
pub const OPT_IN_ANNOTATION: &str = "chaos/allow-faults";
/// The label on the run's record and its injector pods that names the run.
pub const RUN_LABEL: &str = "chaos/run";
/// The annotation on the run's record naming who started it (the API server's view of the
/// caller).
pub const REQUESTED_BY_ANNOTATION: &str = "chaos/requested-by";
/// The label on an injector naming the UID of the pod it faults.
pub const TARGET_UID_LABEL: &str = "chaos/target-uid";
/// The annotation on an injector naming `NAMESPACE/NAME` of the pod it faults.
pub const TARGET_ANNOTATION: &str = "chaos/target";
/// The key of the run's spec (JSON) in its record.
pub const SPEC_KEY: &str = "spec.json";
/// `app.kubernetes.io/component` of every object `chaos k8s` creates.
pub const COMPONENT: &str = "injector";
/// The label selector of every object `chaos k8s` creates, its runs' and their injectors'.
pub const MANAGED_SELECTOR: &str =
    "app.kubernetes.io/name=chaos,app.kubernetes.io/component=injector";
/// How long an injector may take past its fault's duration to start (image, scheduling) and
/// to report before kubelet kills it (`activeDeadlineSeconds`).
pub const GRACE: Duration = Duration::from_secs(60);

/// A pod the selector matched.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    /// In the node's network namespace: a network fault there would be the node's.
    #[serde(default)]
    pub host_network: bool,
    /// Its labels, as the API server listed them (not kept in the run's record).
    #[serde(skip)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The field selector of the pod named `name` (`chaos k8s run --pod`).
pub fn name_selector(name: &str) -> String {
    format!("metadata.name={name}")
}

/// Whether a fault command acts on a pod's network (and so never on a hostNetwork pod's, which
/// is its node's).
pub fn is_network_fault(command: &str) -> bool {
    command.split(' ').next() == Some("net")
}

/// How many of the selected pods a run may fault (`--max-targets N` or `P%`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxTargets {
    Count(usize),
    Percent(f64),
}

impl MaxTargets {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid --max-targets '{text}': expected a count of pods (3) or a percentage of the selected pods (25%)"
            )
        };
        if let Some(percent) = text.strip_suffix('%') {
            let percent: f64 = percent.trim().parse().map_err(|_| bad())?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(bad());
            }
            return Ok(MaxTargets::Percent(percent));
        }
        match text.trim().parse::<usize>() {
            Ok(count) if count > 0 => Ok(MaxTargets::Count(count)),
            _ => Err(bad()),
        }
    }

    /// The most pods of `selected` this allows (at least one of a non-empty set).
    fn of(self, selected: usize) -> usize {
        let cap = match self {
            MaxTargets::Count(count) => count,
            MaxTargets::Percent(percent) => (selected as f64 * percent / 100.0).floor() as usize,
        };
        cap.clamp(1, selected.max(1))
    }
}

/// Why the pods a run would fault were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PickError {
    #[error("no running pod in namespace {namespace} matches '{selector}'")]
    NoPods { namespace: String, selector: String },
    #[error(
        "every running pod matching '{selector}' is being faulted by another run: `chaos k8s list` shows them"
    )]
    AllBusy { selector: String },
    #[error(
        "{faulted} of the {selected} running pods matching '{selector}' is more than half of them{busy}: pass --allow-majority to fault them anyway, or lower --max-targets"
    )]
    Majority {
        faulted: usize,
        selected: usize,
        selector: String,
        /// How many of them other runs fault now, when any.
        busy: String,
    },
}

/// What a run's targets are drawn with.
#[derive(Clone, Debug)]
pub struct Draw<'a> {
    pub namespace: &'a str,
    pub selector: &'a str,
    pub max: MaxTargets,
    pub allow_majority: bool,
    pub seed: u64,
    /// The UIDs of the pods other runs' unfinished injectors fault: never drawn again, and
    /// counted against the majority.
    pub busy: &'a [String],
}

/// The targets of a run: at most `draw.max` of `selected` (running pods) that no other run
/// faults, drawn with `draw.seed`, the same for the same seed and pods; together with the pods
/// other runs fault, more than half of `selected` only with `allow_majority`.
pub fn pick(selected: Vec<TargetPod>, draw: &Draw<'_>) -> Result<Vec<TargetPod>, PickError> {
    let selector = draw.selector.to_owned();
    if selected.is_empty() {
        return Err(PickError::NoPods {
            namespace: draw.namespace.to_owned(),
            selector,
        });
    }
    let count = selected.len();
    let (busy, mut free): (Vec<TargetPod>, Vec<TargetPod>) = selected
        .into_iter()
        .partition(|pod| draw.busy.contains(&pod.uid));
    if free.is_empty() {
        return Err(PickError::AllBusy { selector });
    }
    free.sort_by(|a, b| a.name.cmp(&b.name));
    let picked = draw.max.of(count).min(free.len());
    if (picked + busy.len()) * 2 > count && !draw.allow_majority {
        return Err(PickError::Majority {
            faulted: picked + busy.len(),
            selected: count,
            selector,
            busy: if busy.is_empty() {
                String::new()
            } else {
                format!(" ({} of them faulted by other runs now)", busy.len())
            },
        });
    }
    let mut rng = Rng::new(draw.seed);
    // A partial Fisher-Yates shuffle: the first `picked` places are the draw.
    for i in 0..picked {
        let j = i + (rng.next_u64() % (free.len() - i) as u64) as usize;
        free.swap(i, j);
    }
    free.truncate(picked);
    Ok(free)
}

/// What a run is asked to do, as its record keeps it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSpec {
    pub id: String,
    pub namespace: String,
    /// The label selector, or for a pod named the field selector of its name.
    pub selector: String,
    /// The pod named (`--pod`), when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The fault's command line after `chaos`, without target and duration (`fail --op
    /// connect`).
    pub fault: Vec<String>,
    #[serde(with = "seconds")]
    pub duration: Duration,
    pub seed: u64,
    pub image: String,
    pub targets: Vec<TargetPod>,
}

impl RunSpec {
    /// The pods the run was asked for, as a person reads it.
    pub fn which_pods(&self) -> String {
        match &self.pod {
            Some(name) => format!("pod {name}"),
            None => format!("pods matching '{}'", self.selector),
        }
    }
}

/// Durations in the record as whole or fractional seconds.
mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs: f64 = serde::Deserialize::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// The name of run `id`'s record (a ConfigMap in chaos's namespace).
pub fn record_name(id: &str) -> String {
    format!("chaos-run-{id}")
}

/// The name of run `id`'s injector for its target number `index`.
pub fn injector_name(id: &str, index: usize) -> String {
    format!("chaos-{id}-{index}")
}

impl RunSpec {
    pub fn record_name(&self) -> String {
        record_name(&self.id)
    }

    fn labels(&self) -> Value {
        json!({
            "app.kubernetes.io/name": "chaos",
            "app.kubernetes.io/component": COMPONENT,
            RUN_LABEL: self.id,
        })
    }

    /// The run's record: its spec and who asked for it. The injector pods are owned by it, so
    /// deleting it deletes them.
    pub fn record(&self, tool_namespace: &str, requested_by: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.record_name(),
                "namespace": tool_namespace,
                "labels": self.labels(),
                "annotations": { REQUESTED_BY_ANNOTATION: requested_by },
            },
            "data": { SPEC_KEY: serde_json::to_string(self).expect("a run spec serializes") },
        })
    }

    /// The injector pod for `target`: on its node, in the host's PID namespace, privileged,
    /// with the host's bpffs, cgroup tree and tracefs, running `chaos FAULT --pod-uid UID --for
    /// D --json`; owned by the record (`record_uid`) and killed by kubelet `GRACE` after the
    /// fault should have ended.
    pub fn injector(
        &self,
        target: &TargetPod,
        index: usize,
        tool_namespace: &str,
        record_uid: &str,
    ) -> Value {
        let mut args = self.fault.clone();
        args.extend([
            "--pod-uid".to_owned(),
            target.uid.clone(),
            "--for".to_owned(),
            format!("{}ms", self.duration.as_millis()),
            "--json".to_owned(),
        ]);
        let deadline = (self.duration + GRACE).as_secs_f64().ceil() as u64;
        let host_dir = |name: &str, path: &str| json!({ "name": name, "hostPath": { "path": path, "type": "Directory" } });
        let mount = |name: &str, path: &str| json!({ "name": name, "mountPath": path });
        let mut labels = self.labels();
        labels[TARGET_UID_LABEL] = json!(target.uid);
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": injector_name(&self.id, index),
                "namespace": tool_namespace,
                "labels": labels,
                "annotations": { TARGET_ANNOTATION: format!("{}/{}", target.namespace, target.name) },
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": self.record_name(),
                    "uid": record_uid,
                    "controller": true,
                }],
            },
            "spec": {
                "nodeName": target.node,
                "hostPID": true,
                "restartPolicy": "Never",
                "activeDeadlineSeconds": deadline,
                "terminationGracePeriodSeconds": 30,
                "automountServiceAccountToken": false,
                "tolerations": [{ "operator": "Exists" }],
                "containers": [{
                    "name": "chaos",
                    "image": self.image,
                    "imagePullPolicy": "IfNotPresent",
                    "args": args,
                    "securityContext": { "privileged": true },
                    "volumeMounts": [
                        mount("bpffs", "/sys/fs/bpf"),
                        mount("cgroup", "/sys/fs/cgroup"),
                        mount("tracefs", "/sys/kernel/tracing"),
                    ],
                }],
                "volumes": [
                    host_dir("bpffs", "/sys/fs/bpf"),
                    host_dir("cgroup", "/sys/fs/cgroup"),
                    host_dir("tracefs", "/sys/kernel/tracing"),
                ],
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(n: usize) -> Vec<TargetPod> {
        (0..n)
            .map(|i| TargetPod {
                namespace: "shop".into(),
                name: format!("web-{i}"),
                uid: format!("uid-{i}"),
                node: format!("node-{}", i % 2),
                host_network: false,
                labels: Default::default(),
            })
            .collect()
    }

    #[test]
    fn max_targets_parses_counts_and_percentages() {
        assert_eq!(MaxTargets::parse("3"), Ok(MaxTargets::Count(3)));
        assert_eq!(MaxTargets::parse("25%"), Ok(MaxTargets::Percent(25.0)));
        for bad in ["0", "-1", "0%", "101%", "many", ""] {
            assert!(MaxTargets::parse(bad).unwrap_err().contains(bad), "{bad}");
        }
        assert_eq!(MaxTargets::Percent(25.0).of(10), 2);
        assert_eq!(MaxTargets::Percent(1.0).of(10), 1, "at least one");
        assert_eq!(MaxTargets::Count(5).of(3), 3);
    }

    fn draw(max: usize, allow_majority: bool, seed: u64, busy: &[String]) -> Draw<'_> {
        Draw {
            namespace: "shop",
            selector: "app=web",
            max: MaxTargets::Count(max),
            allow_majority,
            seed,
            busy,
        }
    }

    #[test]
    fn picks_at_most_the_cap_the_same_for_a_seed() {
        let picked = pick(pods(6), &draw(2, false, 7, &[])).unwrap();
        assert_eq!(picked.len(), 2);
        assert_ne!(picked[0], picked[1]);
        let mut shuffled = pods(6);
        shuffled.reverse();
        let again = pick(shuffled, &draw(2, false, 7, &[])).unwrap();
        assert_eq!(picked, again, "the same seed and pods give the same pick");
        let drawn: std::collections::HashSet<String> = (0..20)
            .map(|seed| {
                pick(pods(6), &draw(1, false, seed, &[])).unwrap()[0]
                    .name
                    .clone()
            })
            .collect();
        assert!(drawn.len() > 1, "seeds draw different pods");
    }

    #[test]
    fn more_than_half_needs_the_flag() {
        let err = pick(pods(3), &draw(2, false, 1, &[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 of the 3 running pods matching 'app=web' is more than half of them: pass --allow-majority to fault them anyway, or lower --max-targets"
        );
        assert!(pick(pods(1), &draw(1, false, 1, &[])).is_err());
        assert_eq!(pick(pods(1), &draw(1, true, 1, &[])).unwrap().len(), 1);
        assert_eq!(pick(pods(4), &draw(2, false, 1, &[])).unwrap().len(), 2);
        assert_eq!(
            pick(vec![], &draw(1, true, 1, &[])).unwrap_err(),
            PickError::NoPods {
                namespace: "shop".into(),
                selector: "app=web".into()
            }
        );
    }

    #[test]
    fn pods_other_runs_fault_are_not_drawn_and_count_against_the_majority() {
        let busy = vec!["uid-0".to_owned()];
        for seed in 0..10 {
            let picked = pick(pods(4), &draw(1, false, seed, &busy)).unwrap();
            assert_ne!(picked[0].uid, "uid-0");
        }
        let err = pick(pods(4), &draw(2, false, 1, &busy)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "3 of the 4 running pods matching 'app=web' is more than half of them (1 of them faulted by other runs now): pass --allow-majority to fault them anyway, or lower --max-targets"
        );
        let all = vec!["uid-0".to_owned()];
        assert_eq!(
            pick(pods(1), &draw(1, true, 1, &all)).unwrap_err(),
            PickError::AllBusy {
                selector: "app=web".into()
            }
        );
    }

    #[test]
    fn the_injector_runs_the_fault_on_its_target_and_is_owned_by_the_record() {
        let spec = RunSpec {
            id: "abc123".into(),
            namespace: "shop".into(),
            selector: "app=web".into(),
            pod: None,
            fault: vec!["fail".into(), "--op".into(), "connect".into()],
            duration: Duration::from_secs(30),
            seed: 1,
            image: "localhost/chaos:dist".into(),
            targets: pods(1),
        };
        let pod = spec.injector(&spec.targets[0], 0, "chaos", "rec-uid");
        assert_eq!(pod["spec"]["nodeName"], "node-0");
        assert_eq!(pod["spec"]["activeDeadlineSeconds"], 90);
        assert_eq!(
            pod["spec"]["containers"][0]["args"],
            json!([
                "fail",
                "--op",
                "connect",
                "--pod-uid",
                "uid-0",
                "--for",
                "30000ms",
                "--json"
            ])
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "rec-uid");
        assert_eq!(
            pod["metadata"]["ownerReferences"][0]["name"],
            "chaos-run-abc123"
        );
        assert_eq!(pod["metadata"]["labels"][RUN_LABEL], "abc123");
        let record = spec.record("chaos", "alice");
        let kept: RunSpec =
            serde_json::from_str(record["data"][SPEC_KEY].as_str().unwrap()).unwrap();
        assert_eq!(kept, spec);
        assert_eq!(
            record["metadata"]["annotations"][REQUESTED_BY_ANNOTATION],
            "alice"
        );
    }
}

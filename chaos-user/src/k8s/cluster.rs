//! The calls `chaos k8s` makes to the API server, through kube-rs.

use k8s_openapi::api::{
    authentication::v1::SelfSubjectReview,
    core::v1::{ConfigMap, Namespace, Pod},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, PropagationPolicy},
};
use serde_json::{Value, json};

use super::{RunSpec, TargetPod, plan};

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error(
        "no Kubernetes cluster to talk to (set KUBECONFIG or ~/.kube/config, or run in a pod with a service account)"
    )]
    Config(#[source] kube::config::InferConfigError),
    #[error("cannot reach the Kubernetes API server")]
    Client(#[source] kube::Error),
    #[error("cannot {action}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("no namespace '{0}' in the cluster")]
    NoNamespace(String),
    #[error(
        "namespace {namespace} has not opted in to faults: `kubectl annotate namespace {namespace} {annotation}=true` lets chaos fault its pods"
    )]
    NotOptedIn {
        namespace: String,
        annotation: &'static str,
    },
    #[error(
        "no run '{id}' in namespace {namespace}: expected one of those `chaos k8s list` shows ({known})"
    )]
    NoSuchRun {
        id: String,
        namespace: String,
        known: String,
    },
    /// A run that could not be created in full, nor deleted: its injectors may run.
    #[error(
        "cannot {action}, nor delete what run {id} created ({undo}): `chaos k8s stop {id} --delete` ends it"
    )]
    Undone {
        id: String,
        action: String,
        #[source]
        source: Box<kube::Error>,
        undo: String,
    },
    #[error("could not end {failed} of the injectors: {errors}")]
    NotStopped { failed: usize, errors: String },
}

impl K8sError {
    /// Whether it was the user's input that was refused (exit 2), not the cluster that failed.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            K8sError::NoNamespace(_) | K8sError::NotOptedIn { .. } | K8sError::NoSuchRun { .. }
        )
    }
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> K8sError {
    let action = action.into();
    move |source| K8sError::Api { action, source }
}

/// A pod as a target, when it runs on a node and is not being deleted.
fn running(pod: Pod, namespace: &str) -> Option<TargetPod> {
    if pod.metadata.deletion_timestamp.is_some()
        || pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some(RUNNING)
    {
        return None;
    }
    let spec = pod.spec?;
    Some(TargetPod {
        namespace: namespace.to_owned(),
        name: pod.metadata.name?,
        uid: pod.metadata.uid?,
        node: spec.node_name?,
        host_network: spec.host_network.unwrap_or(false),
        labels: pod.metadata.labels.unwrap_or_default(),
    })
}

/// Pod phases, as the API server spells them.
pub const PENDING: &str = "Pending";
pub const RUNNING: &str = "Running";
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";
/// The reason of a pod kubelet ended at its `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// A connection to the cluster, with its own single-threaded runtime: chaos's commands are
/// synchronous, and the API calls are few.
pub struct Cluster {
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// The namespace of the run records and injector pods (`--chaos-namespace`).
    pub home: String,
}

/// An injector pod as the API server last saw it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Injector {
    pub name: String,
    /// The run it belongs to.
    pub run: String,
    /// `NAMESPACE/NAME` of the pod it faults.
    pub target: String,
    pub target_uid: String,
    pub node: String,
    /// Pending, Running, Succeeded, Failed (Unknown when the server says nothing).
    pub phase: String,
    /// Why it failed, when it did (DeadlineExceeded: stopped or overdue).
    pub reason: Option<String>,
}

impl Injector {
    pub fn finished(&self) -> bool {
        [SUCCEEDED, FAILED].contains(&self.phase.as_str())
    }
}

/// A run as its record keeps it.
#[derive(Clone, Debug)]
pub struct Run {
    pub spec: RunSpec,
    pub requested_by: String,
    pub created: String,
}

impl Cluster {
    /// Connects as kubectl would: `KUBECONFIG` or `~/.kube/config`, else the pod's service
    /// account.
    pub fn connect(home: &str) -> Result<Self, K8sError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a single-threaded tokio runtime builds");
        let mut config = runtime
            .block_on(kube::Config::infer())
            .map_err(K8sError::Config)?;
        // chaos makes short calls only: none may hang a run (or its Ctrl-C) for long.
        config.connect_timeout = Some(std::time::Duration::from_secs(10));
        config.read_timeout = Some(std::time::Duration::from_secs(30));
        let client = {
            let _entered = runtime.enter();
            Client::try_from(config).map_err(K8sError::Client)?
        };
        Ok(Cluster {
            runtime,
            client,
            home: home.to_owned(),
        })
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn records(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    /// Refuses a namespace that does not exist or lacks the opt-in annotation.
    pub fn check_opted_in(&self, namespace: &str) -> Result<(), K8sError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let found = self
            .runtime
            .block_on(api.get_opt(namespace))
            .map_err(api_error(format!("read namespace {namespace}")))?
            .ok_or_else(|| K8sError::NoNamespace(namespace.to_owned()))?;
        let allowed = found
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(plan::OPT_IN_ANNOTATION))
            .is_some_and(|value| value == "true");
        if allowed {
            Ok(())
        } else {
            Err(K8sError::NotOptedIn {
                namespace: namespace.to_owned(),
                annotation: plan::OPT_IN_ANNOTATION,
            })
        }
    }

    /// The running pods of `namespace` that `selector` matches, with their nodes.
    pub fn running_pods(
        &self,
        namespace: &str,
        selector: &str,
    ) -> Result<Vec<TargetPod>, K8sError> {
        let list = self
            .runtime
            .block_on(
                self.pods(namespace)
                    .list(&ListParams::default().labels(selector)),
            )
            .map_err(api_error(format!(
                "list the pods of {namespace} matching '{selector}'"
            )))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|pod| running(pod, namespace))
            .collect())
    }

    /// The pod `namespace/name`, when it runs (no pod, or one not running, gives none). Listed
    /// by a field selector on its name: `list` is the one verb on pods rbac.yaml grants.
    pub fn running_pod(&self, namespace: &str, name: &str) -> Result<Vec<TargetPod>, K8sError> {
        let list = self
            .runtime
            .block_on(
                self.pods(namespace)
                    .list(&ListParams::default().fields(&plan::name_selector(name))),
            )
            .map_err(api_error(format!("list pod {namespace}/{name}")))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|pod| running(pod, namespace))
            .collect())
    }

    /// Who the API server says the caller is (a SelfSubjectReview, Kubernetes 1.28 and later);
    /// else the kubeconfig context's user, marked as such.
    pub fn whoami(&self) -> String {
        let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
        let review = SelfSubjectReview::default();
        match self
            .runtime
            .block_on(api.create(&PostParams::default(), &review))
        {
            Ok(review) => review
                .status
                .and_then(|s| s.user_info)
                .and_then(|u| u.username)
                .unwrap_or_else(|| "unknown (the API server named no user)".to_owned()),
            Err(err) => {
                tracing::debug!(%err, "SelfSubjectReview");
                let user = kube::config::Kubeconfig::read().ok().and_then(|config| {
                    let current = config.current_context?;
                    let context = config.contexts.into_iter().find(|c| c.name == current)?;
                    context.context?.user
                });
                match user {
                    Some(user) => format!("{user} (kubeconfig user; no SelfSubjectReview)"),
                    None => "unknown (no SelfSubjectReview, no kubeconfig user)".to_owned(),
                }
            }
        }
    }

    /// Creates the run: its record, then one injector per target, owned by the record. If an
    /// injector cannot be created, the record (and with it what was created) is deleted.
    pub fn create(&self, spec: &RunSpec, requested_by: &str) -> Result<(), K8sError> {
        let record: ConfigMap = serde_json::from_value(spec.record(&self.home, requested_by))
            .expect("a run record is a ConfigMap");
        let created = self
            .runtime
            .block_on(self.records().create(&PostParams::default(), &record))
            .map_err(api_error(format!(
                "create the run's record {} in namespace {}",
                spec.record_name(),
                self.home
            )))?;
        let owner = created.metadata.uid.unwrap_or_default();
        for (index, target) in spec.targets.iter().enumerate() {
            let pod: Pod = serde_json::from_value(spec.injector(target, index, &self.home, &owner))
                .expect("an injector is a Pod");
            let made = self
                .runtime
                .block_on(self.pods(&self.home).create(&PostParams::default(), &pod));
            if let Err(source) = made {
                let action = format!(
                    "create the injector for {}/{} in namespace {}",
                    target.namespace, target.name, self.home
                );
                return Err(match self.delete(&spec.id) {
                    Ok(()) => K8sError::Api { action, source },
                    Err(undo) => K8sError::Undone {
                        id: spec.id.clone(),
                        action,
                        source: Box::new(source),
                        undo: undo.to_string(),
                    },
                });
            }
        }
        Ok(())
    }

    /// Every run whose record is in the tool's namespace, oldest first.
    pub fn runs(&self) -> Result<Vec<Run>, K8sError> {
        let list = self
            .runtime
            .block_on(
                self.records()
                    .list(&ListParams::default().labels(plan::MANAGED_SELECTOR)),
            )
            .map_err(api_error(format!(
                "list the runs in namespace {}",
                self.home
            )))?;
        let mut runs: Vec<Run> = list
            .items
            .into_iter()
            .filter_map(|record| {
                let spec = record.data.as_ref()?.get(plan::SPEC_KEY)?;
                let spec: RunSpec = serde_json::from_str(spec).ok()?;
                let annotations = record.metadata.annotations.unwrap_or_default();
                Some(Run {
                    spec,
                    requested_by: annotations
                        .get(plan::REQUESTED_BY_ANNOTATION)
                        .cloned()
                        .unwrap_or_default(),
                    created: record
                        .metadata
                        .creation_timestamp
                        .map(|t| t.0.to_string())
                        .unwrap_or_default(),
                })
            })
            .collect();
        runs.sort_by(|a, b| a.created.cmp(&b.created).then(a.spec.id.cmp(&b.spec.id)));
        Ok(runs)
    }

    /// The run `id`, or an error listing the known ones.
    pub fn run(&self, id: &str) -> Result<Run, K8sError> {
        let runs = self.runs()?;
        let known = runs
            .iter()
            .map(|run| run.spec.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        runs.iter()
            .find(|run| run.spec.id == id)
            .cloned()
            .ok_or_else(|| K8sError::NoSuchRun {
                id: id.to_owned(),
                namespace: self.home.clone(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known
                },
            })
    }

    /// The injectors of run `id` (every run's with `None`), by name.
    pub fn injectors(&self, id: Option<&str>) -> Result<Vec<Injector>, K8sError> {
        let selector = match id {
            Some(id) => format!("{},{}={id}", plan::MANAGED_SELECTOR, plan::RUN_LABEL),
            None => plan::MANAGED_SELECTOR.to_owned(),
        };
        let list = self
            .runtime
            .block_on(
                self.pods(&self.home)
                    .list(&ListParams::default().labels(&selector)),
            )
            .map_err(api_error(format!(
                "list the injectors in namespace {}",
                self.home
            )))?;
        let mut injectors: Vec<Injector> = list
            .items
            .into_iter()
            .map(|pod| {
                let annotations = pod.metadata.annotations.clone().unwrap_or_default();
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                let status = pod.status.unwrap_or_default();
                Injector {
                    name: pod.metadata.name.unwrap_or_default(),
                    run: labels.get(plan::RUN_LABEL).cloned().unwrap_or_default(),
                    target: annotations
                        .get(plan::TARGET_ANNOTATION)
                        .cloned()
                        .unwrap_or_default(),
                    target_uid: labels
                        .get(plan::TARGET_UID_LABEL)
                        .cloned()
                        .unwrap_or_default(),
                    node: pod.spec.and_then(|s| s.node_name).unwrap_or_default(),
                    phase: status.phase.unwrap_or_else(|| "Unknown".into()),
                    reason: status.reason,
                }
            })
            .collect();
        injectors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(injectors)
    }

    /// What injector `name` wrote to stdout: its report, once it ended.
    pub fn log(&self, name: &str) -> Result<String, K8sError> {
        self.runtime
            .block_on(self.pods(&self.home).logs(name, &LogParams::default()))
            .map_err(api_error(format!("read the log of {name}")))
    }

    /// Ends each unfinished injector of `injectors` now: its deadline
    /// (`activeDeadlineSeconds`) becomes one second, so kubelet stops it as `kubectl delete`
    /// would (SIGTERM, on which chaos takes its programs out and reports) but keeps the pod and
    /// its log for the report. Every one is tried (one gone meanwhile is done); returns the
    /// names of those it ended, or what it could not end.
    pub fn stop(&self, injectors: &[Injector]) -> Result<Vec<String>, K8sError> {
        let patch = json!({ "spec": { "activeDeadlineSeconds": 1 } });
        let (mut stopped, mut errors) = (Vec::new(), Vec::new());
        for injector in injectors.iter().filter(|i| !i.finished()) {
            let patched = self.runtime.block_on(self.pods(&self.home).patch(
                &injector.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ));
            match patched {
                Ok(_) => stopped.push(injector.name.clone()),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => errors.push(format!("{}: {err}", injector.name)),
            }
        }
        if errors.is_empty() {
            Ok(stopped)
        } else {
            Err(K8sError::NotStopped {
                failed: errors.len(),
                errors: errors.join("; "),
            })
        }
    }

    /// Deletes run `id`'s record; the garbage collector deletes its injectors with it (each
    /// stopped as `kubectl delete pod` stops it).
    pub fn delete(&self, id: &str) -> Result<(), K8sError> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        let name = plan::record_name(id);
        self.runtime
            .block_on(self.records().delete(&name, &params))
            .map(drop)
            .map_err(api_error(format!("delete the run's record {name}")))
    }
}

/// The JSON report an injector printed last, if its log holds one.
pub fn report_in(log: &str) -> Option<Value> {
    log.lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter(Value::is_object)
}

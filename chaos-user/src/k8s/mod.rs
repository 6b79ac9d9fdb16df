//! The Kubernetes API side of `chaos k8s`: a client from the kubeconfig or the pod's service
//! account (kube-rs), and the few calls a run makes: the namespace's opt-in, the pods a
//! selector matches, the caller's name, the run's record and injector pods, their states, logs
//! and end. The node side is the `chaos` each injector pod runs.

pub mod plan;
pub mod selector;

#[cfg(feature = "k8s")]
mod cluster;

#[cfg(feature = "k8s")]
pub use cluster::{
    Cluster, DEADLINE_EXCEEDED, FAILED, Injector, K8sError, PENDING, RUNNING, Run, SUCCEEDED,
    report_in,
};
pub use plan::{RunSpec, TargetPod};

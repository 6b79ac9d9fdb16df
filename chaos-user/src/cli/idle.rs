//! `chaos idle`: the main process of a pod that keeps chaos on a node for `kubectl exec`.

use clap::Args;

use super::{Error, exit};

/// Wait, doing nothing, until SIGTERM, SIGINT or SIGHUP; exit 0.
///
/// The main process of a DaemonSet pod (deploy/kubernetes/daemonset.yaml) that keeps chaos on
/// each node, so that `kubectl exec` can run a fault there; the image has no shell and no sleep.
/// Like every chaos command, it first puts back what killed runs left on the node.
///
/// Example: kubectl -n chaos exec ds/chaos -- /chaos fail --pod-uid UID --op connect --errno ECONNREFUSED
#[derive(Debug, Args)]
pub struct IdleArgs {}

pub fn execute(_args: IdleArgs) -> Result<u8, Error> {
    let set = crate::run::interrupt_set();
    // SAFETY: the signals are blocked on this thread (chaos has no other thread here) so that
    // sigwait takes them, which works for PID 1 too, for which the kernel drops signals that
    // have no handler.
    let signal = unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut signal = 0;
        libc::sigwait(&set, &mut signal);
        signal
    };
    tracing::debug!(signal, "idle: ending");
    Ok(exit::OK)
}

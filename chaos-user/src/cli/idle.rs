//! `chaos idle`: the main process of a pod that keeps chaos on a node for `kubectl exec`.

use clap::Args;

use super::{Error, exit};

/// Wait until SIGTERM, SIGINT or SIGHUP, keeping spare programs verified for the next runs; exit 0.
///
/// The main process of a DaemonSet pod (deploy/kubernetes/daemonset.yaml) that keeps chaos on
/// each node, so that `kubectl exec` can run a fault there; the image has no shell and no sleep.
/// Like every chaos command, it first puts back what killed runs left on the node.
///
/// While it runs, each fault that ends leaves its programs loaded and verified again,
/// unattached and empty, pinned under /sys/fs/bpf/chaos/spare-PID-START, and the next run of
/// the same fault on as many targets takes them instead of verifying its own: its first
/// failure comes in about two thirds of the time. It removes them as it ends; if it is killed,
/// the next chaos command does.
///
/// Example: kubectl -n chaos exec ds/chaos -- /chaos fail --pod-uid UID --op connect --errno ECONNREFUSED
#[derive(Debug, Args)]
pub struct IdleArgs {}

pub fn execute(_args: IdleArgs) -> Result<u8, Error> {
    let spares = crate::attach::spare::keep();
    if let Err(err) = &spares {
        eprintln!("chaos: idle keeps no spare programs: {err}");
    }
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
    if let Ok(dir) = spares {
        crate::attach::spare::release(&dir);
    }
    Ok(exit::OK)
}

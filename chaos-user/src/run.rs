//! Holding a run until it ends: the deadline, signals, and the target's exit.

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    time::Duration,
};

use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use tracing::debug;

use crate::{
    attach::{ErrnoAttachment, Plan},
    error::Error,
    fault::ErrnoFault,
    report::{EndedBy, FaultReport, Report, StatusLine, TargetReport},
    target::ProcessTarget,
};

/// How often the live status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// Waits until the run must end: `lifetime` elapsed, a signal, or the target exited (its pidfd
/// becomes readable). `tick` runs every [`STATUS_EVERY`] with the elapsed and remaining time.
pub async fn hold(
    lifetime: Duration,
    pidfd: &OwnedFd,
    mut tick: impl FnMut(Duration, Duration),
) -> std::io::Result<EndedBy> {
    let start = Instant::now();
    let deadline = start + lifetime;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // SAFETY: `pidfd` is borrowed for the whole call and `target_exit` is dropped before it returns.
    let target_exit =
        unsafe { AsyncFd::register_with_interest(pidfd.as_raw_fd(), Interest::READABLE) }
            .map_err(std::io::Error::from)?;
    let mut ticks = interval(STATUS_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = sleep_until(deadline) => return Ok(EndedBy::Deadline),
            _ = sigint.recv() => return Ok(EndedBy::Sigint),
            _ = sigterm.recv() => return Ok(EndedBy::Sigterm),
            _ = sighup.recv() => return Ok(EndedBy::Sighup),
            _ = target_exit.readable() => return Ok(EndedBy::TargetExited),
            _ = ticks.tick() => {
                let now = Instant::now();
                tick(now - start, deadline.saturating_duration_since(now));
            }
        }
    }
}

/// A whole errno run: attach, hold until the run ends, read the counters, detach.
/// `on_attached` runs once every program is live.
pub fn errno_run(
    target: &ProcessTarget,
    fault: &ErrnoFault,
    plan: Plan,
    lifetime: Duration,
    on_attached: impl FnOnce(),
) -> Result<Report, Error> {
    let mut attachment = ErrnoAttachment::attach(target, fault, plan, lifetime)?;
    on_attached();
    let started = std::time::Instant::now();
    let fault_reports = |attachment: &ErrnoAttachment| -> Vec<FaultReport> {
        attachment
            .plan()
            .iter()
            .map(|&(op, backend)| {
                let counters = attachment.counters(op);
                FaultReport {
                    kind: "errno",
                    op: op.name(),
                    errno: fault.errno.to_string(),
                    mechanism: backend.mechanism.name(),
                    covers: backend.covers,
                    dry_run: fault.dry_run,
                    matched: counters.matched,
                    injected: counters.injected,
                }
            })
            .collect()
    };
    let mut status = StatusLine::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ended_by = runtime.block_on(hold(lifetime, &target.pidfd, |elapsed, remaining| {
        status.draw(elapsed, remaining, &fault_reports(&attachment));
    }))?;
    status.clear();
    attachment.detach();
    debug!(?ended_by, "detached");
    let faults = fault_reports(&attachment);
    Ok(Report {
        faults,
        ended_by,
        targets: vec![TargetReport {
            pid: target.pid,
            cgroup: target.cgroup.display().to_string(),
        }],
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

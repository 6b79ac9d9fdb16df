//! Holding a run until it ends: the deadline, signals, and the target's exit.

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    time::Duration,
};

use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use chaos_common::{
    errno::{OP_SIGNAL, OP_SYSCALL},
    net,
};
use tracing::debug;

use crate::{
    attach::{ErrnoAttachment, Plan, SyscallHook, net::NetAttachment},
    detached::{self, DetachedRun},
    error::Error,
    fault::{
        ErrnoFault, SignalFault,
        net::{PacketAction, PacketFault},
    },
    report::{EndedBy, FaultReport, Report, StatusLine, TargetReport},
    target::{Targets, net::NetTarget},
};

/// How often the live status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// The runtime a run is held in and the signals that end it early, set up before anything is
/// attached: a Ctrl-C, SIGTERM or SIGHUP that arrives while chaos attaches ends the run as soon
/// as it is held, with its report, instead of killing chaos before it could print one.
pub struct Holder {
    runtime: tokio::runtime::Runtime,
    interrupts: Interrupts,
}

/// Ctrl-C, SIGTERM and SIGHUP, as they arrive.
pub struct Interrupts {
    sigint: Signal,
    sigterm: Signal,
    sighup: Signal,
}

impl Interrupts {
    /// Completes with the next interrupt.
    pub async fn next(&mut self) -> EndedBy {
        tokio::select! {
            _ = self.sigint.recv() => EndedBy::Sigint,
            _ = self.sigterm.recv() => EndedBy::Sigterm,
            _ = self.sighup.recv() => EndedBy::Sighup,
        }
    }
}

/// The signals that end a run early.
const INTERRUPTS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Holds back Ctrl-C, SIGTERM and SIGHUP until [`Holder::new`] can take them: fault commands
/// call this first, so an interrupt while they probe, resolve and attach ends the run with its
/// report rather than killing chaos on the spot.
pub fn defer_interrupts() {
    set_interrupts_blocked(true);
}

fn set_interrupts_blocked(blocked: bool) {
    // SAFETY: a signal set built here and applied to this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in INTERRUPTS {
            libc::sigaddset(&mut set, signal);
        }
        let how = if blocked {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

impl Holder {
    /// Listens for the interrupts, then lets through any that [`defer_interrupts`] held back.
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let interrupts = {
            let _inside = runtime.enter();
            Interrupts {
                sigint: signal(SignalKind::interrupt())?,
                sigterm: signal(SignalKind::terminate())?,
                sighup: signal(SignalKind::hangup())?,
            }
        };
        set_interrupts_blocked(false);
        Ok(Holder {
            runtime,
            interrupts,
        })
    }

    /// Runs `task` on the holder's runtime, with the interrupts for it to watch.
    pub fn block_on<T>(&mut self, task: impl AsyncFnOnce(&mut Interrupts) -> T) -> T {
        let Holder {
            runtime,
            interrupts,
        } = self;
        runtime.block_on(task(interrupts))
    }

    /// Waits until the run must end: `lifetime` elapsed, a signal, every target process exited
    /// (their pidfds became readable; with no pidfds, never), or `gone` says the target went
    /// away (checked every [`STATUS_EVERY`]). `tick` runs as often with the elapsed and
    /// remaining time.
    pub fn hold(
        &mut self,
        lifetime: Duration,
        pidfds: &[&OwnedFd],
        gone: impl Fn() -> bool,
        tick: impl FnMut(Duration, Duration),
    ) -> std::io::Result<EndedBy> {
        self.block_on(async |interrupts| hold(lifetime, pidfds, gone, tick, interrupts).await)
    }
}

async fn hold(
    lifetime: Duration,
    pidfds: &[&OwnedFd],
    gone: impl Fn() -> bool,
    mut tick: impl FnMut(Duration, Duration),
    interrupts: &mut Interrupts,
) -> std::io::Result<EndedBy> {
    let start = Instant::now();
    let deadline = start + lifetime;
    let targets_exited = all_exited(pidfds);
    tokio::pin!(targets_exited);
    let mut ticks = interval(STATUS_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = sleep_until(deadline) => return Ok(EndedBy::Deadline),
            ended_by = interrupts.next() => return Ok(ended_by),
            result = &mut targets_exited => return result.map(|()| EndedBy::TargetExited),
            _ = ticks.tick() => {
                if gone() {
                    return Ok(EndedBy::TargetExited);
                }
                let now = Instant::now();
                tick(now - start, deadline.saturating_duration_since(now));
            }
        }
    }
}

/// Completes when every pidfd is readable (its process exited); never for an empty list.
async fn all_exited(pidfds: &[&OwnedFd]) -> std::io::Result<()> {
    if pidfds.is_empty() {
        std::future::pending::<()>().await;
    }
    for pidfd in pidfds {
        // SAFETY: the pidfd is borrowed for the whole call and the AsyncFd dropped before it ends.
        let exit =
            unsafe { AsyncFd::register_with_interest(pidfd.as_raw_fd(), Interest::READABLE) }
                .map_err(std::io::Error::from)?;
        let _ready = exit.readable().await?;
    }
    Ok(())
}

/// A whole errno run: attach, hold until the run ends, read the counters, detach.
/// `on_attached` runs once every program is live.
pub fn errno_run(
    targets: &Targets,
    fault: &ErrnoFault,
    plan: Plan,
    lifetime: Duration,
    on_attached: impl FnOnce(),
) -> Result<Report, Error> {
    let syscall = fault.syscall.as_deref().map(SyscallHook::Override);
    let holder = Holder::new()?;
    let attachment =
        ErrnoAttachment::attach(targets, fault.kernel(), plan, syscall, lifetime, None)?;
    on_attached();
    hold_and_report(
        targets,
        attachment,
        holder,
        lifetime,
        &fault.describe_filters(),
        |attachment| {
            attachment
                .plan()
                .iter()
                .map(|&(op, backend)| {
                    let counters = attachment.counters(op.code());
                    FaultReport {
                        kind: "errno",
                        op: op.name().to_owned(),
                        errno: Some(fault.errno.to_string()),
                        signal: None,
                        mechanism: backend.mechanism.name(),
                        covers: backend.covers.to_owned(),
                        direction: None,
                        dry_run: fault.dry_run,
                        matched: counters.matched,
                        injected: counters.injected,
                    }
                })
                .chain(fault.syscall.iter().map(|syscall| {
                    let counters = attachment.counters(OP_SYSCALL);
                    FaultReport {
                        kind: "errno",
                        op: syscall.clone(),
                        errno: Some(fault.errno.to_string()),
                        signal: None,
                        mechanism: "kprobe-override",
                        covers: format!("{syscall}() (a kprobe on its entry function)"),
                        direction: None,
                        dry_run: fault.dry_run,
                        matched: counters.matched,
                        injected: counters.injected,
                    }
                }))
                .collect()
        },
    )
}

/// Starts a detached run of the errno object (an errno or a signal fault): the links and
/// counters pinned under the run's directory, its description saved; returns once every program
/// is live. The in-kernel deadline ends it.
pub fn errno_detached(
    targets: &Targets,
    kernel_fault: chaos_common::errno::ErrnoFault,
    plan: Plan,
    syscall: Option<SyscallHook<'_>>,
    lifetime: Duration,
    describe: (String, String),
) -> Result<DetachedRun, Error> {
    let id = detached::new_id();
    let dir = detached::prepare(&id)?;
    let attached =
        ErrnoAttachment::attach(targets, kernel_fault, plan, syscall, lifetime, Some(&dir));
    if let Err(err) = attached {
        let _ = detached::stop(&id);
        return Err(err.into());
    }
    let (targets, fault) = describe;
    let run = DetachedRun {
        id,
        targets,
        fault,
        deadline_ns: crate::attach::monotonic_now_ns().saturating_add(lifetime.as_nanos() as u64),
    };
    detached::save(&run)?;
    Ok(run)
}

/// Starts a detached network run: the tcx links and counters pinned, the description saved.
pub fn net_detached(
    target: &NetTarget,
    fault: &PacketFault,
    lifetime: Duration,
    describe: String,
) -> Result<DetachedRun, Error> {
    let tables = fault.tables()?;
    let id = detached::new_id();
    let dir = detached::prepare(&id)?;
    if let Err(err) = NetAttachment::attach(target, fault.kernel(), &tables, lifetime, Some(&dir)) {
        let _ = detached::stop(&id);
        return Err(err.into());
    }
    let direction = match fault.direction {
        crate::fault::net::Direction::Ingress => "ingress",
        crate::fault::net::Direction::Egress => "egress",
        crate::fault::net::Direction::Both => "ingress+egress",
    };
    let run = DetachedRun {
        id,
        targets: describe,
        fault: match fault.action {
            PacketAction::Delay(d) => format!(
                "delay {} ± {} {direction}",
                humantime::format_duration(d.delay),
                humantime::format_duration(d.jitter)
            ),
            PacketAction::Limit(rate) => format!("limit {} bit/s {direction}", rate * 8),
            action => match fault.loss_model {
                Some(m) => format!(
                    "drop gemodel:{},{},{},{} {direction}",
                    m.p, m.r, m.loss_bad, m.loss_good
                ),
                None => format!(
                    "{} {}% {direction}",
                    action.name(),
                    fault.probability * 100.0
                ),
            },
        },
        deadline_ns: crate::attach::monotonic_now_ns().saturating_add(lifetime.as_nanos() as u64),
    };
    detached::save(&run)?;
    Ok(run)
}

/// A whole signal run: the targets get the signal when they enter the syscall.
pub fn signal_run(
    targets: &Targets,
    fault: &SignalFault,
    lifetime: Duration,
) -> Result<Report, Error> {
    let holder = Holder::new()?;
    let attachment = ErrnoAttachment::attach(
        targets,
        fault.kernel(),
        Vec::new(),
        Some(SyscallHook::Signal(&fault.syscall)),
        lifetime,
        None,
    )?;
    hold_and_report(targets, attachment, holder, lifetime, &[], |attachment| {
        let counters = attachment.counters(OP_SIGNAL);
        vec![FaultReport {
            kind: "signal",
            op: fault.syscall.clone(),
            errno: None,
            signal: Some(fault.signal.to_string()),
            mechanism: "tracepoint",
            covers: format!(
                "entries to {}() (syscalls:sys_enter_{})",
                fault.syscall, fault.syscall
            ),
            direction: None,
            dry_run: fault.dry_run,
            matched: counters.matched,
            injected: counters.injected,
        }]
    })
}

/// A whole network run: attach the TC programs, hold until the run ends, detach, report per
/// direction.
pub fn net_run(
    target: &NetTarget,
    fault: &PacketFault,
    lifetime: Duration,
) -> Result<Report, Error> {
    let mut holder = Holder::new()?;
    let tables = fault.tables()?;
    let mut attachment = NetAttachment::attach(target, fault.kernel(), &tables, lifetime, None)?;
    let started = std::time::Instant::now();
    let rows = |attachment: &NetAttachment| -> Vec<FaultReport> {
        [
            (net::DIRECTION_INGRESS, "ingress", "arriving on"),
            (net::DIRECTION_EGRESS, "egress", "leaving through"),
        ]
        .into_iter()
        .filter(|&(bit, _, _)| fault.direction.bits() & bit != 0)
        .map(|(bit, direction, verb)| {
            let counters = attachment.counters(bit);
            FaultReport {
                kind: "net",
                op: fault.action.name().into(),
                errno: None,
                signal: None,
                mechanism: attachment.mechanism(target.cgroup.is_some(), fault.action.needs_fq()),
                covers: match &target.cgroup {
                    Some(cgroup) => format!(
                        "IPv4 and IPv6 packets arriving for the sockets of {}",
                        cgroup.path.display()
                    ),
                    None => format!("IPv4 and IPv6 packets {verb} {}", target.ifaces.join(", ")),
                },
                direction: Some(direction),
                dry_run: false,
                matched: counters.matched,
                injected: counters.acted,
            }
        })
        .collect()
    };
    let mut status = StatusLine::new();
    let ended_by = holder.hold(
        lifetime,
        &[],
        || false,
        |elapsed, remaining| status.draw(elapsed, remaining, || rows(&attachment)),
    )?;
    status.clear();
    attachment.detach();
    let faults = rows(&attachment);
    // One target: the interfaces (all of a namespace's, with --netns alone) count together.
    let targets = vec![TargetReport {
        pid: None,
        tree: false,
        container: target.container.clone(),
        cgroup: target.cgroup.as_ref().map(|c| c.path.display().to_string()),
        iface: (!target.ifaces.is_empty()).then(|| target.ifaces.join(",")),
        netns: target
            .netns
            .as_ref()
            .map(|ns| ns.path.display().to_string()),
        matched: faults.iter().map(|f| f.matched).sum(),
        injected: faults.iter().map(|f| f.injected).sum(),
    }];
    Ok(Report::new(
        faults,
        ended_by,
        targets,
        started.elapsed().as_millis() as u64,
        &fault.filter.describe(),
    ))
}

/// Holds a live attachment until the run ends (redrawing the status line), detaches, and
/// reports the counters `rows` reads.
fn hold_and_report(
    targets: &Targets,
    mut attachment: ErrnoAttachment,
    mut holder: Holder,
    lifetime: Duration,
    filters: &[String],
    rows: impl Fn(&ErrnoAttachment) -> Vec<FaultReport>,
) -> Result<Report, Error> {
    let started = std::time::Instant::now();
    let mut status = StatusLine::new();
    let pidfds: Vec<&OwnedFd> = if targets.ends_with_processes() {
        targets.processes.iter().map(|p| &p.pidfd).collect()
    } else {
        Vec::new()
    };
    let ended_by = holder.hold(
        lifetime,
        &pidfds,
        || targets.container_stopped(),
        |elapsed, remaining| status.draw(elapsed, remaining, || rows(&attachment)),
    )?;
    status.clear();
    attachment.detach();
    debug!(?ended_by, "detached");
    Ok(Report::new(
        rows(&attachment),
        ended_by,
        target_reports(targets, &attachment),
        started.elapsed().as_millis() as u64,
        filters,
    ))
}

/// One report per target, with its counters: process targets by their place in the list, a
/// cgroup target at index 0.
fn target_reports(targets: &Targets, attachment: &ErrnoAttachment) -> Vec<TargetReport> {
    let processes = targets.processes.iter().enumerate().map(|(index, p)| {
        let counters = attachment.target_counters(index);
        TargetReport {
            pid: Some(p.pid),
            tree: p.tree,
            container: None,
            cgroup: Some(p.cgroup.display().to_string()),
            iface: None,
            netns: None,
            matched: counters.matched,
            injected: counters.injected,
        }
    });
    let cgroup = targets.cgroup.iter().map(|c| {
        let counters = attachment.target_counters(0);
        TargetReport {
            pid: None,
            tree: false,
            container: targets.container.as_ref().map(|c| c.id.clone()),
            cgroup: Some(c.path.display().to_string()),
            iface: None,
            netns: None,
            matched: counters.matched,
            injected: counters.injected,
        }
    });
    processes.chain(cgroup).collect()
}

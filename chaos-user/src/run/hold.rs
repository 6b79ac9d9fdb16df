//! Holding a run until it ends: its deadline, Ctrl-C, SIGTERM and SIGHUP, and its targets'
//! exit.

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    time::Duration,
};

use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use crate::{clock::Deadline, report::EndedBy};

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

/// The set of the signals that end a run early.
pub fn interrupt_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before signals are added.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in INTERRUPTS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

fn set_interrupts_blocked(blocked: bool) {
    let how = if blocked {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: a signal set built here and applied to this thread's mask.
    unsafe { libc::pthread_sigmask(how, &interrupt_set(), std::ptr::null_mut()) };
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

    /// Waits until the run must end: its deadline passed, a signal, every target process
    /// exited (their pidfds became readable; with no pidfds, never), or `gone` says the target
    /// went away (checked every [`STATUS_EVERY`]). `tick` runs as often with the elapsed and
    /// remaining time.
    pub fn hold(
        &mut self,
        deadline: Deadline,
        pidfds: &[&OwnedFd],
        gone: impl Fn() -> bool,
        tick: impl FnMut(Duration, Duration),
    ) -> std::io::Result<EndedBy> {
        self.block_on(async |interrupts| hold(deadline, pidfds, gone, tick, interrupts).await)
    }
}

async fn hold(
    deadline: Deadline,
    pidfds: &[&OwnedFd],
    gone: impl Fn() -> bool,
    mut tick: impl FnMut(Duration, Duration),
    interrupts: &mut Interrupts,
) -> std::io::Result<EndedBy> {
    let start = Instant::now();
    let deadline = start + deadline.remaining();
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

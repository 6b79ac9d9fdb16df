//! `chaos pause`: a target hangs — frozen, then thawed — and its peers see timeouts, not errors.

use std::time::Duration;

use clap::Args;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use crate::{
    cli::{
        HeldArgs, TargetArgs,
        error::{Error, exit},
        how_it_ends, require_privileges,
    },
    fault,
    pause::{self, Pausable},
    report::{self, EndedBy, FaultKind, FaultReport, Report, StatusLine},
    run::{self, hold::Interrupts},
};

/// Hang a target: freeze a container, pod or cgroup, or stop processes, then let them run again.
///
/// A cgroup target (--cgroup, --container, --pod-uid, --pod) is frozen by the cgroup v2 freezer
/// (cgroup.freeze): every process in it stops at once, including ones that join meanwhile, and
/// nothing it can observe tells it so. Processes (--pid, --pid-tree, --comm) get SIGSTOP, and
/// SIGCONT at the end (a parent waiting on them with WUNTRACED would see the stop). Its peers see
/// timeouts, not errors: connections are accepted by the kernel and never answered.
///
/// With --every and --duty it hangs periodically: frozen for DUTY percent of every PERIOD.
/// The target is thawed at the end, on Ctrl-C, SIGTERM and SIGHUP, and when chaos is killed,
/// even by SIGKILL: a guard process in a session of its own (`chaos pause-guard`) thaws it
/// as soon as chaos is gone.
///
/// Examples:
///   chaos pause --container web --for 30s
///   chaos pause --pod-uid 0c7b3b4e-5f1a-4c2d-9e8f-1a2b3c4d5e6f --for 2m --every 10s --duty 30
///   chaos pause --pid 4242 --for 5s --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PauseArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    #[command(flatten)]
    pub held: HeldArgs,

    /// Hang periodically: a period of this length (with --duty).
    #[arg(long, value_name = "PERIOD", value_parser = fault::parse_duration, requires = "duty")]
    pub every: Option<Duration>,

    /// The percentage of each --every period the target is frozen (1-99).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=99), requires = "every")]
    pub duty: Option<u8>,
}

impl PauseArgs {
    /// How long each freeze lasts, and how often one starts.
    fn schedule(&self) -> (Duration, Duration) {
        match (self.every, self.duty) {
            (Some(every), Some(duty)) => (every.mul_f64(f64::from(duty) / 100.0), every),
            _ => (self.held.duration, self.held.duration),
        }
    }

    fn setting(&self) -> String {
        match (self.every, self.duty) {
            (Some(every), Some(duty)) => {
                format!("{duty}% of every {}", humantime::format_duration(every))
            }
            _ => "throughout".into(),
        }
    }
}

/// `chaos pause-guard`: what chaos pause leaves behind to thaw its target if it dies.
#[derive(Debug, Args)]
pub struct PauseGuardArgs {
    #[arg(long, conflicts_with_all = ["pid", "pid_tree"])]
    cgroup: Option<std::path::PathBuf>,
    /// `chaos delay`: resume the processes in the map at this descriptor.
    #[arg(long, conflicts_with_all = ["cgroup", "pid", "pid_tree"])]
    delayed_fd: Option<i32>,
    #[arg(long)]
    pid: Vec<u32>,
    #[arg(long)]
    pid_tree: Vec<u32>,
}

pub fn guard(args: PauseGuardArgs) -> Result<u8, Error> {
    if let Some(fd) = args.delayed_fd {
        pause::guard(|| crate::run::delay::resume_left(fd));
        return Ok(exit::OK);
    }
    let target = match args.cgroup {
        Some(path) => Pausable::Cgroup(path),
        None => Pausable::Processes(
            args.pid
                .iter()
                .map(|&pid| (pid, false))
                .chain(args.pid_tree.iter().map(|&pid| (pid, true)))
                .collect(),
        ),
    };
    pause::guard(|| {
        if let Err(err) = target.thaw() {
            tracing::debug!(%err, "pause guard: thaw");
        }
    });
    Ok(exit::OK)
}

pub fn execute(args: PauseArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    require_privileges()?;
    let targets = args.targets.resolve(args.held.force)?;
    let pausable = Pausable::of(&targets);
    eprintln!(
        "chaos: freezing {} ({}, {}) for {}{}",
        targets.describe(),
        pausable.mechanism(),
        args.setting(),
        humantime::format_duration(args.held.duration),
        how_it_ends(false),
    );
    let mut holder =
        run::Holder::new().map_err(Error::io("listen for Ctrl-C, SIGTERM and SIGHUP"))?;
    let guard = pausable.spawn_guard().map_err(Error::io(
        "start the guard that thaws the target if chaos dies",
    ))?;
    let started = Instant::now();
    let (on, period) = args.schedule();
    let row = |freezes: u64| FaultReport {
        fault: FaultKind::Pause {
            op: "pause".into(),
            setting: args.setting(),
        },
        mechanism: pausable.mechanism().into(),
        covers: match &pausable {
            Pausable::Cgroup(_) => "every process of the cgroup, joiners included".into(),
            Pausable::Processes(_) => "the processes, with their threads".into(),
        },
        dry_run: false,
        matched: freezes,
        injected: freezes,
        altered_bytes: None,
        stopped: None,
        vdso_withheld: None,
    };
    let outcome = holder.block_on(async |interrupts| {
        hang(
            &pausable,
            args.held.duration,
            (on, period),
            interrupts,
            &row,
        )
        .await
    });
    // Whatever happened, the target runs again before chaos reports.
    let thawed = pausable.thaw();
    drop(guard);
    let Hung {
        ended_by,
        freezes,
        frozen,
    } = outcome;
    if let Err(err) = thawed
        && ended_by != EndedBy::TargetExited
    {
        eprintln!("chaos: could not thaw the target: {err}");
    }
    let mut report = Report::new(
        vec![row(freezes)],
        ended_by,
        report::target_reports(&targets, |_| (freezes, freezes)),
        started.elapsed().as_millis() as u64,
        &[],
    );
    report.frozen_ms = Some(frozen.as_millis() as u64);
    crate::report::print_final(&report.human(), || report.json(), args.held.json);
    Ok(exit::OK)
}

/// How a pause went.
struct Hung {
    ended_by: EndedBy,
    freezes: u64,
    frozen: Duration,
}

/// Freezes for `on` out of every `period` until `duration` has passed or an interrupt comes;
/// the target is thawed when it returns, except when it is gone.
async fn hang(
    target: &Pausable,
    duration: Duration,
    (on, period): (Duration, Duration),
    interrupts: &mut Interrupts,
    row: &impl Fn(u64) -> FaultReport,
) -> Hung {
    let start = Instant::now();
    let deadline = start + duration;
    let mut status = StatusLine::new();
    let mut ticks = interval(Duration::from_millis(250));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut hung = Hung {
        ended_by: EndedBy::Deadline,
        freezes: 0,
        frozen: Duration::ZERO,
    };
    let mut cycle = start;
    'run: while cycle < deadline {
        if target.freeze().is_err() {
            hung.ended_by = EndedBy::TargetExited;
            break;
        }
        hung.freezes += 1;
        let frozen_at = Instant::now();
        // Frozen until the thaw is due, then running until the next freeze is.
        for (until, frozen) in [
            ((cycle + on).min(deadline), true),
            ((cycle + period).min(deadline), false),
        ] {
            loop {
                tokio::select! {
                    _ = sleep_until(until) => break,
                    ended_by = interrupts.next() => {
                        hung.ended_by = ended_by;
                        if frozen {
                            hung.frozen += frozen_at.elapsed();
                        }
                        break 'run;
                    }
                    _ = ticks.tick() => {
                        let now = Instant::now();
                        status.draw(now - start, deadline.saturating_duration_since(now), || vec![row(hung.freezes)]);
                    }
                }
            }
            if frozen {
                hung.frozen += frozen_at.elapsed();
                if target.thaw().is_err() {
                    hung.ended_by = EndedBy::TargetExited;
                    break 'run;
                }
            }
        }
        cycle += period;
    }
    status.clear();
    hung
}

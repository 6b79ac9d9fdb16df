//! A run: from a checked fault and its targets to programs live in the kernel, held until the run
//! ends (or handed to a detached run), then detached and reported. Every kind of fault runs
//! through [`hold_and_report`]; what differs is how it attaches ([`errno`], [`net`]) and the rows
//! its report has.

use std::{io, os::fd::OwnedFd, path::PathBuf, time::Duration};

use chaos_common::{
    fault::{CallFault, ClockFilter, CorruptFilter, StatfsFilter},
    hook,
    net::{DIRECTION_EGRESS, DIRECTION_INGRESS},
    ops::{
        Mechanism, OP_CLOCK, OP_CLOCK_EXEC, OP_CORRUPT_BYTES, OP_CORRUPT_READ, OP_DELAY, OP_SIGNAL,
        OP_STATFS, OP_SYSCALL,
    },
};
use thiserror::Error;
use tracing::debug;

pub mod delay;
pub mod errno;
pub mod hold;
pub mod net;

pub use hold::{Holder, defer_interrupts, interrupt_set};

use self::{
    delay::{DelaySetting, Resumer},
    errno::{CallsAttachment, CallsError, CallsLoaded, ExtraHook},
    net::{NetAttachment, NetLoaded},
};
use crate::{
    attach::AttachError,
    clock::Deadline,
    detached::{self, DetachedError, DetachedRun},
    fault::{
        ErrnoFault, ParseError, SignalFault,
        clock::ClockFault,
        delay::DelayFault,
        disk::DiskFault,
        net::{Direction, PacketFault},
        ops,
    },
    plan::Plan,
    report::{self, EndedBy, FaultKind, FaultReport, Report, StatusLine, Stopped, TargetReport},
    target::{Targets, net::NetTarget},
};

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Calls(#[from] CallsError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Detached(#[from] DetachedError),
    #[error("cannot listen for Ctrl-C, SIGTERM and SIGHUP")]
    Interrupts(#[source] io::Error),
    #[error("cannot wait for the targets to exit")]
    Hold(#[source] io::Error),
    #[error("cannot {what} the target")]
    Target {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl RunError {
    /// Whether the kernel or the machine cannot do what was asked, as opposed to something
    /// failing on the way.
    pub fn is_unsupported(&self) -> bool {
        match self {
            RunError::Attach(err) | RunError::Calls(CallsError::Attach(err)) => {
                err.is_unsupported()
            }
            RunError::Calls(
                CallsError::PathOffsets(_)
                | CallsError::DiskOffsets(_)
                | CallsError::ForkTracepoint(_),
            ) => true,
            RunError::Parse(_) => true,
            _ => false,
        }
    }
}

/// One row of a fault on calls: the counters of operation `code`, reported as `fault`.
struct CallsRow {
    code: u32,
    fault: FaultKind,
    mechanism: String,
    covers: String,
}

/// A fault on calls as a run starts it: the kernel's fault, its programs, and its report's rows.
pub struct CallsFault<'a> {
    kernel: CallFault,
    plan: Plan,
    extra: Option<ExtraHook<'a>>,
    rows: Vec<CallsRow>,
    dry_run: bool,
    /// The filters as given, for the warning when nothing matched.
    filters: Vec<String>,
    /// `chaos delay`: how long the stopped targets wait to be resumed.
    delay: Option<DelaySetting>,
}

impl<'a> CallsFault<'a> {
    /// `chaos fail`: each operation through its planned rung, and the `--syscall` override. On a
    /// kernel without `bpf_set_retval` the cgroup rungs fail calls with EPERM, and say so.
    pub fn errno(fault: &'a ErrnoFault, plan: Plan) -> Self {
        let errno = fault.failure();
        let set_retval = crate::kernel::set_retval();
        let ops = plan.iter().map(|&(op, rung)| CallsRow {
            code: op.code,
            fault: FaultKind::Errno {
                op: op.name.to_owned(),
                errno: if rung.mechanism == Mechanism::Cgroup && !set_retval {
                    "EPERM".to_owned()
                } else {
                    errno.clone()
                },
            },
            mechanism: rung.mechanism.name().to_owned(),
            covers: ops::covers(op, rung, |syscall| {
                crate::kernel::injectable_syscall_function(syscall).is_some()
            }),
        });
        // --syscall and --kernel-fn: fmod_ret or a kprobe on the function, as planned.
        let mechanism = fault.override_with.unwrap_or(Mechanism::KprobeOverride);
        let fmod_ret = mechanism == Mechanism::FmodRet;
        let on = if fmod_ret {
            "fmod_ret on"
        } else {
            "a kprobe on"
        };
        let override_hook = |kprobe| {
            if fmod_ret {
                hook::FMOD_RET_OVERRIDE
            } else {
                kprobe
            }
        };
        let syscall = fault.syscall.iter().map(|syscall| CallsRow {
            code: OP_SYSCALL,
            fault: FaultKind::Errno {
                op: syscall.clone(),
                errno: errno.clone(),
            },
            mechanism: mechanism.name().to_owned(),
            covers: format!("{syscall}() ({on} its entry function)"),
        });
        let kernel_fn = fault.kernel_fn.iter().map(|function| CallsRow {
            code: OP_SYSCALL,
            fault: FaultKind::Errno {
                op: format!("{}()", function.name),
                errno: errno.clone(),
            },
            mechanism: mechanism.name().to_owned(),
            covers: match &function.caller {
                Some(caller) => format!(
                    "{}() in the kernel, for the targets' calls from {caller}() ({on} it)",
                    function.name
                ),
                None => format!(
                    "{}() in the kernel, for the targets' calls ({on} it)",
                    function.name
                ),
            },
        });
        let rows = ops.chain(syscall).chain(kernel_fn).collect();
        let extra = match (&fault.syscall, &fault.kernel_fn) {
            (Some(syscall), _) => Some(ExtraHook::Override(
                syscall,
                override_hook(hook::SYSCALL_OVERRIDE),
            )),
            (None, Some(function)) => Some(ExtraHook::KernelFn(
                &function.name,
                function.filter,
                override_hook(hook::KERNEL_FN_OVERRIDE),
            )),
            (None, None) => None,
        };
        CallsFault {
            kernel: fault.kernel(),
            plan,
            extra,
            rows,
            dry_run: fault.dry_run,
            filters: fault.describe_filters(),
            delay: None,
        }
    }

    /// `chaos disk error`: a row per operation, all through `mechanism` on `should_fail_bio`
    /// (fmod_ret, or the kprobe).
    pub fn disk(fault: &'a DiskFault, mechanism: Mechanism) -> Self {
        let rows = fault
            .ops
            .iter()
            .map(|&op| CallsRow {
                code: op.code(),
                fault: FaultKind::Errno {
                    op: format!("disk-{}", op.name()),
                    errno: "EIO".to_owned(),
                },
                mechanism: mechanism.name().to_owned(),
                covers: fault.covers(op),
            })
            .collect();
        let bio_hook = if mechanism == Mechanism::FmodRet {
            hook::BIO_ERROR_FMOD_RET
        } else {
            hook::BIO_ERROR
        };
        CallsFault {
            kernel: fault.kernel(),
            plan: Vec::new(),
            extra: Some(ExtraHook::Bio(fault.filter(), bio_hook)),
            rows,
            dry_run: fault.dry_run,
            filters: fault.describe_filters(),
            delay: None,
        }
    }

    /// `chaos disk full`: the fault's operations through their planned rungs, and the statfs
    /// programs (fexit, else tracepoints) reporting the filesystem `statfs` names full.
    pub fn disk_full(fault: &'a ErrnoFault, plan: Plan, statfs: StatfsFilter, fexit: bool) -> Self {
        let mut calls = CallsFault::errno(fault, plan);
        calls.kernel.ops |= 1 << OP_STATFS;
        let (hooks, mechanism, via): (&'static [_], _, _) = if fexit {
            (
                &chaos_common::hook::STATFS_FEXIT,
                "fexit",
                "fexit on __x64_sys_statfs, __x64_sys_fstatfs",
            )
        } else {
            (
                &chaos_common::hook::STATFS,
                "tracepoint",
                "syscalls:sys_exit_statfs, sys_exit_fstatfs",
            )
        };
        calls.extra = Some(ExtraHook::Statfs(statfs, hooks));
        calls.rows.push(CallsRow {
            code: OP_STATFS,
            fault: FaultKind::Rewrite {
                op: "statfs".to_owned(),
                setting: "no free blocks".to_owned(),
            },
            mechanism: mechanism.to_owned(),
            covers: format!(
                "statfs() and fstatfs() of the filesystem ({via}; f_bfree and f_bavail set to 0)"
            ),
        });
        calls
    }

    /// `chaos corrupt-io --op read`: the read programs (fexit, else tracepoints) flip
    /// `filter.bits` bits in what a target's reads of the files `fault`'s path covers return
    /// (`fault` has no operations of its own: its path and rules).
    pub fn corrupt_read(fault: &'a ErrnoFault, filter: CorruptFilter, fexit: bool) -> Self {
        let mut kernel = fault.kernel();
        kernel.ops = 1 << OP_CORRUPT_READ;
        let bits_spread = "one bit per byte in distinct bytes";
        let bits = match (filter.short, filter.bits) {
            (0, 1) => "1 bit flipped".to_owned(),
            (0, n) => format!("{n} bits flipped"),
            _ => "short reads".to_owned(),
        };
        let (hooks, mechanism, covers): (&'static [_], _, _) = if filter.short != 0 {
            (
                &chaos_common::hook::CORRUPT_SHORT[..],
                "fentry",
                "what readv(), preadv() and preadv2() ask for (fentry on their __x64_sys_ functions cuts the iovecs' lengths, put back once the kernel has copied them): 1 to N-1 of the N bytes asked".to_owned(),
            )
        } else if fexit {
            (
                &chaos_common::hook::CORRUPT_READ_FEXIT[..],
                "fexit",
                format!(
                    "the data read(), pread64(), readv(), preadv() and preadv2() return (fexit on their __x64_sys_ functions), {bits_spread}"
                ),
            )
        } else {
            (
                &chaos_common::hook::CORRUPT_READ[..],
                "tracepoint",
                format!(
                    "the data read() and pread64() return (syscalls:sys_exit_read, sys_exit_pread64), {bits_spread}"
                ),
            )
        };
        CallsFault {
            kernel,
            plan: Vec::new(),
            extra: Some(ExtraHook::CorruptRead(filter, hooks)),
            rows: vec![CallsRow {
                code: OP_CORRUPT_READ,
                fault: FaultKind::Rewrite {
                    op: "read".to_owned(),
                    setting: bits,
                },
                mechanism: mechanism.to_owned(),
                covers,
            }],
            dry_run: fault.dry_run,
            filters: fault.describe_filters(),
            delay: None,
        }
    }

    /// `chaos signal`: an fentry program on the syscall's function, or its entry tracepoint.
    pub fn signal(fault: &'a SignalFault, fentry: bool) -> Self {
        let syscall = &fault.syscall;
        let (hook, mechanism, via) = if fentry {
            (
                chaos_common::hook::SIGNAL_FENTRY,
                "fentry",
                format!(
                    "fentry on {}",
                    crate::kernel::syscall_entry_function(syscall)
                ),
            )
        } else {
            (
                chaos_common::hook::SIGNAL,
                "tracepoint",
                format!("syscalls:sys_enter_{syscall}"),
            )
        };
        CallsFault {
            kernel: fault.kernel(),
            plan: Vec::new(),
            extra: Some(ExtraHook::Signal(syscall, hook)),
            rows: vec![CallsRow {
                code: OP_SIGNAL,
                fault: FaultKind::Signal {
                    op: syscall.clone(),
                    signal: fault.signal.to_string(),
                },
                mechanism: mechanism.to_owned(),
                covers: format!("entries to {syscall}() ({via})"),
            }],
            dry_run: fault.dry_run,
            filters: Vec::new(),
            delay: None,
        }
    }

    /// `chaos delay`: fexit programs on `syscalls` (those of the fault this kernel has), or
    /// their exit tracepoints.
    pub fn delay(fault: &'a DelayFault, syscalls: &'a [String], fexit: bool) -> Self {
        let (hook, mechanism, via) = if fexit {
            (
                chaos_common::hook::DELAY_FEXIT,
                "fexit",
                "fexit on each syscall's function",
            )
        } else {
            (
                chaos_common::hook::DELAY,
                "tracepoint",
                "syscalls:sys_exit_*",
            )
        };
        CallsFault {
            kernel: fault.kernel(),
            plan: Vec::new(),
            extra: Some(ExtraHook::Delay(syscalls, hook)),
            rows: vec![CallsRow {
                code: OP_DELAY,
                fault: FaultKind::Delay {
                    op: fault.delayed.name(),
                    delay: fault.setting(),
                },
                mechanism: mechanism.to_owned(),
                covers: format!(
                    "returns from {} ({via}): the process is stopped (SIGSTOP) and resumed (SIGCONT) when the delay is up",
                    syscalls
                        .iter()
                        .map(|s| format!("{s}()"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }],
            dry_run: fault.dry_run,
            filters: Vec::new(),
            delay: Some(DelaySetting {
                delay: fault.delay,
                jitter: fault.jitter,
            }),
        }
    }

    /// `chaos clock`: fexit programs on the clock syscalls' functions shift what they return to
    /// a target, and a tp_btf program withholds the vDSO from the images targets exec.
    pub fn clock(
        fault: &'a ClockFault,
        filter: ClockFilter,
        time_fmod_ret: bool,
        sleeps: bool,
    ) -> Self {
        let sleep = if sleeps {
            "; clock_nanosleep() to an absolute deadline on a shifted clock sleeps as long as meant (fentry on __x64_sys_clock_nanosleep takes the deadline back to the true clock, fentry on do_nanosleep puts it back)"
        } else {
            ""
        };
        let time = if time_fmod_ret {
            "time() answered by fmod_ret on __x64_sys_time"
        } else {
            "time()'s *tloc (fexit on __x64_sys_time; its return value stays true)"
        };
        CallsFault {
            kernel: fault.kernel(),
            plan: Vec::new(),
            extra: Some(ExtraHook::Clock(filter, time_fmod_ret, sleeps)),
            rows: vec![CallsRow {
                code: OP_CLOCK,
                fault: FaultKind::Rewrite {
                    op: "clock".to_owned(),
                    setting: fault.setting(),
                },
                mechanism: "fexit".to_owned(),
                covers: format!(
                    "what clock_gettime() and gettimeofday() return (fexit on __x64_sys_clock_gettime, __x64_sys_gettimeofday), {time}, and the vDSO withheld from images targets exec (tp_btf/sched_process_exec), so that their reads are those syscalls{sleep}"
                ),
            }],
            dry_run: fault.dry_run,
            filters: Vec::new(),
            delay: None,
        }
    }

    /// The report's rows; `stopped` is the delay's stops, known at the end.
    fn report_rows(
        &self,
        attachment: &CallsAttachment,
        stopped: Option<Stopped>,
    ) -> Vec<FaultReport> {
        self.rows
            .iter()
            .map(|row| {
                let counters = attachment.counters(row.code);
                FaultReport {
                    fault: row.fault.clone(),
                    mechanism: row.mechanism.clone(),
                    covers: row.covers.clone(),
                    dry_run: self.dry_run,
                    matched: counters.matched,
                    injected: counters.injected,
                    altered_bytes: (row.code == OP_CORRUPT_READ)
                        .then(|| attachment.counters(OP_CORRUPT_BYTES).injected),
                    stopped: stopped.filter(|_| row.code == OP_DELAY),
                    vdso_withheld: (row.code == OP_CLOCK)
                        .then(|| attachment.counters(OP_CLOCK_EXEC).injected),
                }
            })
            .collect()
    }

    fn kinds(&self) -> Vec<FaultKind> {
        self.rows.iter().map(|row| row.fault.clone()).collect()
    }
}

/// A whole run of a fault on calls: attach, hold until the run ends, read the counters, detach.
/// `on_attached` runs once every program is live.
pub fn calls_run(
    targets: &Targets,
    fault: &CallsFault<'_>,
    lifetime: Duration,
    on_attached: impl FnOnce(),
) -> Result<Report, RunError> {
    let on_attached = || {
        on_attached();
        Ok(())
    };
    calls_run_between(targets, fault, lifetime, || Ok(()), on_attached)
}

/// [`calls_run`], with `before` run once every program is loaded and the last thing before
/// they attach, and `after` once they are live; an error of either ends the run.
pub fn calls_run_between(
    targets: &Targets,
    fault: &CallsFault<'_>,
    lifetime: Duration,
    before: impl FnOnce() -> Result<(), RunError>,
    after: impl FnOnce() -> Result<(), RunError>,
) -> Result<Report, RunError> {
    let holder = Holder::new().map_err(RunError::Interrupts)?;
    let mut loaded = CallsLoaded::load(targets, fault.kernel, &fault.plan, fault.extra)?;
    let resumer = match fault.delay {
        Some(setting) => Some(Resumer::start(&mut loaded, setting)?),
        None => None,
    };
    before()?;
    let mut attachment = loaded.start(lifetime, None)?;
    let deadline = attachment.deadline();
    after()?;
    let pidfds: Vec<&OwnedFd> = if targets.ends_with_processes() {
        targets.processes.iter().map(|p| &p.pidfd).collect()
    } else {
        Vec::new()
    };
    let ends = Ends {
        deadline,
        pidfds,
        gone: &|| targets.container_stopped(),
    };
    let (ended_by, elapsed) = hold(holder, ends, || fault.report_rows(&attachment, None))?;
    attachment.detach();
    let stopped = resumer.map(Resumer::finish);
    debug!(?ended_by, "detached");
    let mut report = Report::new(
        fault.report_rows(&attachment, stopped),
        ended_by,
        report::target_reports(targets, |index| {
            let counters = attachment.target_counters(index);
            (counters.matched, counters.injected)
        }),
        elapsed,
        &fault.filters,
    );
    report.spare_programs = attachment.loaded().from_spare();
    attachment.loaded().leave_spare();
    Ok(report)
}

/// Starts a detached run of a fault on calls: the links and counters pinned under the run's
/// directory, its record saved with the deadline the kernel enforces; returns once every
/// program is live.
pub fn calls_detached(
    targets: &Targets,
    fault: &CallsFault<'_>,
    lifetime: Duration,
) -> Result<DetachedRun, RunError> {
    let loaded = CallsLoaded::load(targets, fault.kernel, &fault.plan, fault.extra)?;
    start_detached(targets.describe(), fault.kinds(), |dir| {
        loaded
            .start(lifetime, Some(dir))
            .map(|attachment| attachment.deadline())
            .map_err(RunError::from)
    })
}

/// A network fault as a run starts it, and its report's rows.
pub struct NetFaultRun<'a> {
    pub target: &'a NetTarget,
    pub fault: &'a PacketFault,
}

impl NetFaultRun<'_> {
    /// The rows of each direction the fault acts in.
    fn rows(&self, attachment: Option<&NetAttachment>) -> Vec<FaultReport> {
        let directions = [
            (DIRECTION_INGRESS, Direction::Ingress, "arriving on"),
            (DIRECTION_EGRESS, Direction::Egress, "leaving through"),
        ];
        directions
            .into_iter()
            .filter(|&(bit, ..)| self.fault.direction.bits() & bit != 0)
            .map(|(bit, direction, verb)| {
                let counters = attachment.map(|a| a.counters(bit)).unwrap_or_default();
                FaultReport {
                    fault: FaultKind::Net {
                        op: self.fault.action.name().to_owned(),
                        direction: direction.name().to_owned(),
                        setting: self.fault.setting(),
                    },
                    mechanism: attachment.map_or("", |a| a.mechanism()).to_owned(),
                    covers: match &self.target.cgroup {
                        Some(cgroup) => format!(
                            "IPv4 and IPv6 packets arriving for the sockets of {}",
                            cgroup.path.display()
                        ),
                        None => format!(
                            "IPv4 and IPv6 packets {verb} {}",
                            self.target.ifaces.join(", ")
                        ),
                    },
                    dry_run: false,
                    matched: counters.matched,
                    injected: counters.injected,
                    altered_bytes: None,
                    stopped: None,
                    vdso_withheld: None,
                }
            })
            .collect()
    }
}

/// A whole network run: attach, hold until the run ends, detach, report per direction.
pub fn net_run(run: &NetFaultRun<'_>, lifetime: Duration) -> Result<Report, RunError> {
    let holder = Holder::new().map_err(RunError::Interrupts)?;
    let tables = run.fault.tables()?;
    let loaded = NetLoaded::load(run.target, run.fault.kernel(), &tables, run.fault.hook)?;
    let mut attachment = loaded.start(lifetime, None)?;
    let deadline = attachment.deadline();
    let ends = Ends {
        deadline,
        pidfds: Vec::new(),
        gone: &|| false,
    };
    let (ended_by, elapsed) = hold(holder, ends, || run.rows(Some(&attachment)))?;
    attachment.detach();
    let faults = run.rows(Some(&attachment));
    // One target: the interfaces (all of a namespace's, with --netns alone) count together.
    let target = run.target;
    let targets = vec![TargetReport {
        pid: None,
        tree: false,
        container: target.container.clone(),
        pod: target.pod.clone(),
        cgroup: target.cgroup.as_ref().map(|c| c.path.display().to_string()),
        iface: (!target.ifaces.is_empty()).then(|| target.ifaces.join(",")),
        netns: target
            .netns
            .as_ref()
            .map(|ns| ns.path.display().to_string()),
        device: None,
        matched: faults.iter().map(|f| f.matched).sum(),
        injected: faults.iter().map(|f| f.injected).sum(),
    }];
    let mut report = Report::new(
        faults,
        ended_by,
        targets,
        elapsed,
        &run.fault.filter.describe(),
    );
    report.spare_programs = attachment.loaded().from_spare();
    attachment.loaded().leave_spare();
    Ok(report)
}

/// Starts a detached network run: the links and counters pinned, what it changed on the
/// interfaces handed to the run, its record saved.
pub fn net_detached(run: &NetFaultRun<'_>, lifetime: Duration) -> Result<DetachedRun, RunError> {
    let tables = run.fault.tables()?;
    let loaded = NetLoaded::load(run.target, run.fault.kernel(), &tables, run.fault.hook)?;
    let kinds = run.rows(None).into_iter().map(|row| row.fault).collect();
    start_detached(run.target.describe(), kinds, |dir| {
        loaded
            .start(lifetime, Some(dir))
            .map(|attachment| attachment.deadline())
            .map_err(RunError::from)
    })
}

/// A detached run: its pin directory made, `attach` given it and returning the deadline it
/// armed the fault with, the record saved with that same deadline; a failed attach leaves
/// nothing behind.
fn start_detached(
    targets: String,
    faults: Vec<FaultKind>,
    attach: impl FnOnce(&std::path::Path) -> Result<Deadline, RunError>,
) -> Result<DetachedRun, RunError> {
    let id = detached::new_id();
    let dir: PathBuf = detached::prepare(&id)?;
    let deadline = match attach(&dir) {
        Ok(deadline) => deadline,
        Err(err) => {
            let _ = detached::stop(&id);
            return Err(err);
        }
    };
    let run = DetachedRun {
        id,
        targets,
        faults,
        deadline_ns: deadline.ns,
    };
    detached::save(&run)?;
    Ok(run)
}

/// How a held run ends besides Ctrl-C, SIGTERM and SIGHUP.
struct Ends<'a> {
    deadline: Deadline,
    /// Every one of these processes exited (none: never).
    pidfds: Vec<&'a OwnedFd>,
    /// The target went away (a container stopped).
    gone: &'a dyn Fn() -> bool,
}

/// Holds a live run until it ends, redrawing the status line from `rows`; returns why it ended
/// and how long it was held, in ms.
fn hold(
    mut holder: Holder,
    ends: Ends<'_>,
    rows: impl Fn() -> Vec<FaultReport>,
) -> Result<(EndedBy, u64), RunError> {
    let started = std::time::Instant::now();
    let mut status = StatusLine::new();
    let ended_by = holder
        .hold(
            ends.deadline,
            &ends.pidfds,
            ends.gone,
            |elapsed, remaining| status.draw(elapsed, remaining, &rows),
        )
        .map_err(RunError::Hold)?;
    status.clear();
    Ok((ended_by, started.elapsed().as_millis() as u64))
}

//! `chaos delay`: a target's syscalls return later, as if the kernel were slow.

use std::time::Duration;

use clap::Args;

use crate::{
    cli::{RunArgs, SyscallBackend, TargetArgs, error::Error, require_privileges},
    fault::{
        self, Op, ParseError,
        delay::{self, DelayFault, Delayed},
    },
    plan,
    run::{self, CallsFault},
};

/// Delay a target's syscalls: each covered call returns DELAY later, as if the disk, the network
/// or the kernel were slow.
///
/// The call runs as it would; as the target's thread leaves it, a program stops the process
/// with SIGSTOP, and chaos resumes it with SIGCONT once DELAY (± JITTER) has passed since the
/// call returned in the kernel. The program is fexit on the syscall's function where
/// trampolines load (only those calls pay), else its exit tracepoint syscalls:sys_exit_NAME
/// (every syscall of the machine then takes the kernel's slower tracing path). The whole
/// process waits, not only the calling thread: its other threads stop too, and one of them
/// blocked in a call that cannot be restarted (epoll_wait, poll, select, nanosleep…) may see
/// EINTR when resumed, as after any SIGSTOP and SIGCONT (signal(7)); a parent waiting with
/// WUNTRACED sees the stops. chaos measures each stop; the report gives their p50, p99 and
/// maximum.
///
/// Every stopped process is resumed when the run ends, on Ctrl-C, SIGTERM and SIGHUP, and when
/// chaos is killed, even by SIGKILL: a guard process (`chaos pause-guard`) resumes what the
/// kernel's map of stopped processes still holds. --detach is refused (resuming needs chaos).
/// Needs kernel >= 5.8, and trampolines or CONFIG_FTRACE_SYSCALLS.
///
/// Examples:
///   chaos delay --pid 4242 --syscall fsync,fdatasync --delay 200ms --for 1m
///   chaos delay --container db --op write --delay 50ms --jitter 20ms --probability 0.1
///   chaos delay --cgroup /system.slice/api.service --syscall connect --delay 1s --count 5
///
/// --after, --every, --count and --probability pick the calls as for `chaos fail`.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DelayArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    /// The syscalls whose returns are delayed: fsync, read, connect… (the names under
    /// /sys/kernel/tracing/events/syscalls, without sys_exit_; repeatable or comma-separated).
    #[arg(long, value_parser = fault::parse_syscall, value_delimiter = ',', required_unless_present = "op", conflicts_with = "op")]
    pub syscall: Vec<String>,

    /// The syscalls of an operation instead, as `chaos fail --op` names them: read covers read,
    /// readv, pread64, preadv and preadv2; connect, accept, send, recv, open, write…
    #[arg(long, value_parser = fault::parse_op)]
    pub op: Option<Op>,

    /// How much later each delayed call returns: from 1ms to 1h, such as 50ms or 2s.
    #[arg(long, value_parser = delay::parse_delay)]
    pub delay: Duration,

    /// Each call waits DELAY ± up to this, uniformly; at most DELAY.
    #[arg(long, default_value = "0s", value_parser = delay::parse_jitter)]
    pub jitter: Duration,

    /// How the returns are caught: fexit programs on the syscalls' functions (only those calls
    /// pay), or syscall tracepoints (every syscall of the machine then takes the kernel's slow
    /// path); auto: fexit where trampolines load.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: SyscallBackend,

    #[command(flatten)]
    pub run: RunArgs,
}

impl DelayArgs {
    /// The fault as asked, checked as far as that needs no kernel.
    pub fn fault(&self) -> Result<DelayFault, ParseError> {
        if self.run.detach {
            return Err(ParseError::DelayNotDetachable);
        }
        let delayed = match self.op {
            Some(op) => Delayed::Op(op),
            None => Delayed::Syscalls(self.syscall.clone()),
        };
        let fault = DelayFault {
            delayed,
            delay: self.delay,
            jitter: self.jitter,
            dry_run: self.run.dry_run,
            when: self.run.when(),
        };
        fault.check()?;
        Ok(fault)
    }
}

pub fn execute(args: DelayArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    let fault = args.fault()?;
    require_privileges()?;
    let targets = args.targets.resolve(args.run.force)?;
    plan::check_rules(&fault.when)?;
    let trampolines = args
        .backend
        .fexit(&[chaos_common::hook::DELAY_FEXIT])
        .map_err(|reason| plan::PlanError::Delay { reason })?;
    // auto: the tracepoints where they cover syscalls that have no function in the BTF to put
    // fexit on (one without arguments, such as getpid or vfork, has none).
    let fexit = trampolines
        && (args.backend != SyscallBackend::Auto
            || match (
                plan::delay_syscalls(&fault.delayed, true),
                plan::delay_syscalls(&fault.delayed, false),
            ) {
                (Ok(functions), Ok(tracepoints)) => functions.len() >= tracepoints.len(),
                (_, tracepoints) => tracepoints.is_err(),
            });
    let syscalls = plan::delay_syscalls(&fault.delayed, fexit)?;
    eprintln!(
        "chaos: delaying the returns of {} from {} by {} for {}{}{}",
        targets.describe(),
        syscalls.join(", "),
        fault.setting(),
        humantime::format_duration(args.run.duration),
        if fault.dry_run { ", dry run" } else { "" },
        args.run.how_it_ends(),
    );
    let calls_fault = CallsFault::delay(&fault, &syscalls, fexit);
    args.run.run_or_detach(&targets, &calls_fault)
}

//! `chaos signal`: a target gets a signal at the moment it makes a syscall.

use clap::Args;

use crate::{
    cli::{RunArgs, TargetArgs, error::Error, require_privileges},
    fault::{self, Signal, SignalFault},
    plan,
    run::{self, CallsFault},
};

/// Send a signal to a process when it enters a syscall: SIGKILL at its 3rd fsync, the crash test
/// at the worst moment.
///
/// The signal is sent from the syscall's entry tracepoint (syscalls:sys_enter_NAME) with
/// bpf_send_signal, to the whole process, before the syscall runs; only entries to that one
/// syscall pay for the program. Needs CONFIG_FTRACE_SYSCALLS and kernel >= 5.3.
///
/// Examples:
///   chaos signal --pid 4242 --syscall fsync --signal KILL --after 2 --count 1
///   chaos signal --pid-tree 4242 --syscall write --signal SEGV --probability 0.01 --for 10m
///   chaos signal --cgroup /system.slice/db.service --syscall fdatasync --signal ABRT --count 1
///
/// --after, --every, --count and --probability pick the entries as for `chaos fail`.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SignalArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    /// The syscall whose entry triggers the signal: fsync, write, openat… (the names under
    /// /sys/kernel/tracing/events/syscalls, without sys_enter_).
    #[arg(long, value_parser = fault::parse_syscall)]
    pub syscall: String,

    /// The signal: a name (KILL, SIGSTOP, SEGV, ABRT…) or a number (1-31).
    #[arg(long)]
    pub signal: Signal,

    #[command(flatten)]
    pub run: RunArgs,
}

pub fn execute(args: SignalArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    let fault = SignalFault {
        syscall: args.syscall.clone(),
        signal: args.signal,
        dry_run: args.run.dry_run,
        when: args.run.when(),
    };
    require_privileges()?;
    let targets = args.targets.resolve(args.run.force)?;
    plan::check_syscall_tracepoint(&fault.syscall)?;
    plan::check_rules(&fault.when)?;
    if args.run.detach {
        plan::check_detachable(Some("a signal fault's syscall tracepoint"))?;
    }
    eprintln!(
        "chaos: sending {} to {} on {}() for {}{}{}",
        fault.signal,
        targets.describe(),
        fault.syscall,
        humantime::format_duration(args.run.duration),
        if fault.dry_run { ", dry run" } else { "" },
        args.run.how_it_ends(),
    );
    let calls_fault = CallsFault::signal(&fault);
    args.run.run_or_detach(&targets, &calls_fault)
}

//! `chaos signal`: a target gets a signal at the moment it makes a syscall.

use clap::Args;

use crate::{
    cli::{EntryBackend, RunArgs, TargetArgs, error::Error, require_privileges},
    fault::{self, Signal, SignalFault},
    plan,
    run::{self, CallsFault},
};

/// Send a signal to a process when it enters a syscall: SIGKILL at its 3rd fsync, the crash test
/// at the worst moment.
///
/// The signal is sent with bpf_send_signal, to the whole process, before the syscall runs,
/// from an fentry program on the syscall's function where trampolines load (only that
/// syscall's calls pay), else from its entry tracepoint syscalls:sys_enter_NAME (every syscall
/// of the machine then takes the kernel's slower tracing path). Needs kernel >= 5.3, and
/// trampolines or CONFIG_FTRACE_SYSCALLS.
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

    /// How the entries are caught: an fentry program on the syscall's function (only its calls
    /// pay), or its entry tracepoint (every syscall of the machine then takes the kernel's
    /// slow path); auto: fentry where trampolines load.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: EntryBackend,

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
    plan::check_rules(&fault.when)?;
    let trampolines = args
        .backend
        .fentry(chaos_common::hook::SIGNAL_FENTRY)
        .map_err(|reason| plan::PlanError::SignalFentry { reason })?;
    // auto: the tracepoint where the syscall has no function in the BTF to put fentry on (one
    // without arguments, such as getpid, has none).
    let fentry = trampolines
        && (args.backend != EntryBackend::Auto
            || plan::check_syscall_function(&fault.syscall).is_ok()
            || plan::check_syscall_tracepoint(&fault.syscall).is_err());
    if fentry {
        plan::check_syscall_function(&fault.syscall)?;
    } else {
        plan::check_syscall_tracepoint(&fault.syscall)?;
        if args.run.detach {
            plan::check_detachable(Some("a signal fault's syscall tracepoint"))?;
        }
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
    let calls_fault = CallsFault::signal(&fault, fentry);
    args.run.run_or_detach(&targets, &calls_fault)
}

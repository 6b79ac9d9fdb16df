//! `chaos signal`: a target gets a signal at the moment it makes a syscall.

use std::time::Duration;

use clap::Args;

use crate::{
    capabilities,
    cli::TargetArgs,
    error::{Error, exit},
    fault::{self, Signal, SignalFault, When},
    run,
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

    /// How long the fault lasts: 30s, 1m30s, 250ms.
    #[arg(long = "for", value_name = "DURATION", default_value = "60s",
          value_parser = fault::parse_duration, allow_hyphen_values = true)]
    pub duration: Duration,

    /// Signal each candidate entry with this probability (0 < P <= 1).
    #[arg(long, value_name = "P", value_parser = fault::parse_probability)]
    pub probability: Option<f64>,

    /// Let the first N entries pass.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub after: u64,

    /// Of the entries past --after, signal every N-th one.
    #[arg(long, value_name = "N", value_parser = fault::parse_count)]
    pub every: Option<u64>,

    /// Send at most N signals.
    #[arg(long, value_name = "N", value_parser = fault::parse_count)]
    pub count: Option<u64>,

    /// Count the entries that would be signalled, signal none.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Allow targets that are refused by default: PID 1, chaos itself and its parents, kernel
    /// threads, the root cgroup.
    #[arg(long)]
    pub force: bool,
}

pub fn execute(args: SignalArgs) -> Result<u8, Error> {
    let fault = SignalFault {
        syscall: args.syscall.clone(),
        signal: args.signal,
        dry_run: args.dry_run,
        when: When {
            after: args.after,
            every: args.every.unwrap_or(1),
            count: args.count,
            probability: args.probability.unwrap_or(1.0),
        },
    };
    let missing = capabilities::missing();
    if !missing.is_empty() {
        return Err(Error::Privileges(missing));
    }
    let targets = args.targets.resolve(args.force)?;
    eprintln!(
        "chaos: sending {} to {} on {}() for {}{} (Ctrl-C ends it early)",
        fault.signal,
        TargetArgs::describe(&targets),
        fault.syscall,
        humantime::format_duration(args.duration),
        if fault.dry_run { ", dry run" } else { "" },
    );
    let report = run::signal_run(&targets, &fault, args.duration)?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    Ok(exit::OK)
}

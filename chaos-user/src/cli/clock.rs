//! `chaos clock`: a target reads its clocks shifted.

use clap::Args;

use crate::{
    cli::{RunArgs, TargetArgs, error::Error, require_privileges},
    fault::{
        ParseError, When,
        clock::{self, Clock, ClockFault, Offset},
    },
    plan,
    run::{self, CallsFault},
};

/// Shift the clocks a target reads: its clock_gettime(), gettimeofday() and time() return the
/// time OFFSET away, as on a machine whose clock is wrong; every other process keeps the true
/// time, and the system clock is not touched.
///
/// fexit programs on the clock syscalls' functions rewrite what they return to a target
/// (bpf_probe_write_user). Most programs read the clock without a syscall, through the vDSO:
/// a program on every exec (tp_btf/sched_process_exec) withholds the vDSO from each image a
/// target execs while the fault lasts (its auxiliary vector's AT_SYSINFO_EHDR entry becomes
/// AT_IGNORE), so that glibc, musl and Go read the clock through the syscalls, shifted.
/// Processes already running when the fault starts keep their vDSO: what they read through it
/// is the true time (their syscalls are shifted): restart them under the fault, target a shell
/// or a container that starts them (--pid-tree, --container, --cgroup), or start them with
/// `chaos run`. An image started under the fault keeps reading the clock through syscalls
/// after it ends (true time, each read a syscall). time()'s return value is not changed (only
/// *tloc; glibc's time() without the vDSO returns the syscall's, unless the kernel's
/// error-injection list lets fmod_ret answer it). clock_nanosleep() to an absolute deadline on
/// a shifted clock sleeps as long as meant (the deadline is taken back to the true clock as the
/// call enters); other timers with an absolute deadline (timerfd, POSIX timers, futex waits)
/// run on the true clock: a program that computes such a deadline from a shifted reading waits
/// longer (forward) or not at all (back). x86_64 64-bit processes only. Needs
/// bpf_probe_write_user (refused under lockdown=integrity and confidentiality), trampolines
/// (fexit) and the kernel's BTF.
///
/// Examples:
///   chaos clock --pid-tree 4242 --offset +1d --for 5m
///   chaos clock --container api --offset -90s --for 1m --json
///   chaos clock --cgroup /system.slice/cron.service --offset +1h --clock realtime,boottime
///
/// --after, --every, --count and --probability pick the reads as for `chaos fail`'s calls.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ClockArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    /// How far the target's clocks are shifted: +1h, -90s, 2d (forward without a sign), from
    /// 1ns to 100 years either way.
    #[arg(long, value_parser = clock::parse_offset, allow_hyphen_values = true)]
    pub offset: Offset,

    /// The clocks shifted: realtime (the wall clock: CLOCK_REALTIME, its coarse, alarm and TAI
    /// forms, gettimeofday, time), monotonic (CLOCK_MONOTONIC, raw, coarse), boottime;
    /// repeatable or comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "realtime")]
    pub clock: Vec<Clock>,

    #[command(flatten)]
    pub run: RunArgs,
}

impl ClockArgs {
    /// The fault as asked (clap has checked every option).
    pub fn fault(&self) -> Result<ClockFault, ParseError> {
        let mut clocks: Vec<Clock> = Vec::new();
        for &clock in &self.clock {
            if !clocks.contains(&clock) {
                clocks.push(clock);
            }
        }
        Ok(ClockFault {
            offset: self.offset,
            clocks,
            dry_run: self.run.dry_run,
            when: self.run.when(),
        })
    }
}

pub fn execute(args: ClockArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    let fault = args.fault()?;
    require_privileges()?;
    let targets = args.targets.resolve(args.run.force)?;
    plan::check_rules(&fault.when)?;
    plan::check_clock()?;
    let filter = crate::kernel::clock_filter(fault.filter())
        .map_err(|reason| plan::PlanError::Clock { reason })?;
    // time(2)'s return value: only an fmod_ret program can replace it, where the kernel's
    // error-injection list has the syscall.
    let time_refused = fault
        .clocks
        .contains(&Clock::Realtime)
        .then(|| crate::kernel::load_refused(chaos_common::hook::CLOCK_TIME_FMOD_RET));
    if let Some(Some(reason)) = &time_refused {
        eprintln!(
            "chaos: time() returns the true second on this kernel (only *tloc is shifted): fmod_ret cannot replace __x64_sys_time ({}; it needs CONFIG_FUNCTION_ERROR_INJECTION)",
            reason.lines().next().unwrap_or_default()
        );
    }
    // Which reads the rules shift is chance: a sleep's deadline cannot be told apart.
    let sleeps = fault.when == When::default();
    if !sleeps {
        eprintln!(
            "chaos: with --after, --every, --count or --probability, sleeps to an absolute deadline are left on the true clock"
        );
    }
    eprintln!(
        "chaos: shifting the clocks of {} by {} for {}{}{}",
        targets.describe(),
        fault.setting(),
        humantime::format_duration(args.run.duration),
        if fault.dry_run { ", dry run" } else { "" },
        args.run.how_it_ends(),
    );
    let calls_fault = CallsFault::clock(&fault, filter, matches!(time_refused, Some(None)), sleeps);
    args.run.run_or_detach(&targets, &calls_fault)
}

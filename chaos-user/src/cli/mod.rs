//! The command line: clap definitions, one file per subcommand.

pub mod demo;
pub mod detached;
pub mod experiment;
pub mod fail;
pub mod net;
pub mod probe;
pub mod signal;

use std::{path::PathBuf, time::Duration};

use clap::{Args, CommandFactory as _, Parser, Subcommand};

use crate::{
    error::Error,
    fault::{self, When},
    target::{CgroupTarget, ProcessTarget, TargetError, Targets, pids_by_comm},
};

/// How long a fault lasts and which of the calls it covers it acts on; shared by every fault
/// command.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How long the fault lasts: 30s, 1m30s, 250ms.
    #[arg(long = "for", value_name = "DURATION", default_value = "60s",
          value_parser = fault::parse_duration, allow_hyphen_values = true)]
    pub duration: Duration,

    /// Act on each candidate call with this probability (0 < P <= 1).
    #[arg(long, value_name = "P", value_parser = fault::parse_probability)]
    pub probability: Option<f64>,

    /// Let the first N covered calls pass (strace's when=N+1).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub after: u64,

    /// Of the calls past --after, act on every N-th one (strace's when=FIRST+N).
    #[arg(long, value_name = "N", value_parser = fault::parse_count)]
    pub every: Option<u64>,

    /// Act on at most N calls, then let every call pass.
    #[arg(long, value_name = "N", value_parser = fault::parse_count)]
    pub count: Option<u64>,

    /// Count the calls the fault would act on, but act on none.
    #[arg(long)]
    pub dry_run: bool,

    /// Start the run and return at once, printing its ID: its programs stay pinned under
    /// /sys/fs/bpf/chaos/ID and the in-kernel deadline (--for) ends it even if no chaos process
    /// ever runs again. See `chaos list` and `chaos stop`.
    #[arg(long)]
    pub detach: bool,

    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Allow targets that are refused by default: PID 1, chaos itself and its parents, kernel
    /// threads, the root cgroup.
    #[arg(long)]
    pub force: bool,
}

impl RunArgs {
    pub fn when(&self) -> When {
        When {
            after: self.after,
            every: self.every.unwrap_or(1),
            count: self.count,
            probability: self.probability.unwrap_or(1.0),
        }
    }

    /// Prints the end of the run: the human summary on stderr, the JSON report on stdout with
    /// --json.
    pub fn print(&self, report: &crate::report::Report) {
        crate::report::print_final(&report.human(), || report.json(), self.json);
    }
}

/// What to fault; shared by every fault command.
#[derive(Debug, Args)]
#[group(id = "target", required = true, multiple = true)]
pub struct TargetArgs {
    /// A process to fault, with all of its threads (repeatable, or comma-separated).
    #[arg(long, value_parser = fault::parse_pid, value_delimiter = ',', group = "target")]
    pub pid: Vec<u32>,

    /// A process and every process it forks while the run lasts (repeatable).
    #[arg(long, value_name = "PID", value_parser = fault::parse_pid, value_delimiter = ',', group = "target")]
    pub pid_tree: Vec<u32>,

    /// Every process in this cgroup v2 directory or below it, including ones that join later:
    /// a path under the cgroup v2 mount, or relative to it (/system.slice/nginx.service).
    #[arg(long, value_name = "PATH", group = "target", conflicts_with_all = ["pid", "pid_tree", "comm", "container"])]
    pub cgroup: Option<PathBuf>,

    /// Every process of this container, including ones started later (`podman exec`): its full
    /// ID, a unique prefix of it, or its name (podman, docker, containerd, cri-o, lxc).
    #[arg(long, value_name = "ID", group = "target", conflicts_with_all = ["pid", "pid_tree", "comm"])]
    pub container: Option<String>,

    /// Every process whose command name (/proc/PID/comm) is NAME when the run starts.
    #[arg(long, value_name = "NAME", group = "target")]
    pub comm: Option<String>,
}

impl TargetArgs {
    /// Resolves the targets; `force` lifts the guards (PID 1, chaos and its parents, kernel
    /// threads, the root cgroup).
    pub fn resolve(&self, force: bool) -> Result<Targets, TargetError> {
        if let Some(path) = &self.cgroup {
            return Ok(Targets {
                processes: Vec::new(),
                cgroup: Some(CgroupTarget::resolve(path, force)?),
                container: None,
            });
        }
        if let Some(query) = &self.container {
            let container = crate::target::container::resolve(query)?;
            return Ok(Targets {
                processes: Vec::new(),
                cgroup: Some(CgroupTarget::resolve(&container.cgroup, force)?),
                container: Some(container),
            });
        }
        let mut processes: Vec<ProcessTarget> = Vec::new();
        let add =
            |pid: u32, tree: bool, processes: &mut Vec<ProcessTarget>| -> Result<(), TargetError> {
                match processes.iter_mut().find(|p| p.pid == pid) {
                    Some(existing) => existing.tree |= tree,
                    None => processes.push(ProcessTarget::resolve(pid, tree, force)?),
                }
                Ok(())
            };
        for &pid in &self.pid {
            add(pid, false, &mut processes)?;
        }
        for &pid in &self.pid_tree {
            add(pid, true, &mut processes)?;
        }
        if let Some(name) = &self.comm {
            let before = processes.len();
            for pid in pids_by_comm(name)? {
                // Guarded processes that merely share the name are skipped, not refused.
                match add(pid, false, &mut processes) {
                    Ok(()) | Err(TargetError::Guarded { .. } | TargetError::NoSuchProcess(_)) => {}
                    Err(err) => return Err(err),
                }
            }
            if processes.len() == before {
                return Err(TargetError::NoSuchComm(name.clone()));
            }
        }
        Ok(Targets {
            processes,
            cgroup: None,
            container: None,
        })
    }

    /// A short description for the start line.
    pub fn describe(targets: &Targets) -> String {
        match (&targets.container, &targets.cgroup) {
            (Some(container), _) => format!(
                "every process of {} container {}",
                container.runtime,
                &container.id[..container.id.len().min(12)]
            ),
            (None, Some(cgroup)) => format!("every process under {}", cgroup.path.display()),
            (None, None) => targets
                .processes
                .iter()
                .map(|p| {
                    if p.tree {
                        format!("pid {} and its children", p.pid)
                    } else {
                        format!("pid {}", p.pid)
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

const EXIT_CODES: &str = "\
Exit codes:
  0  the run went as asked (also when Ctrl-C, SIGTERM or SIGHUP ended it early)
  1  something failed while running
  2  bad input, a target that does not exist, missing privileges, or a fault the running kernel
     cannot inject (the message names the kernel option); nothing was attached";

/// Kernel-level fault injection for one process, container or network path.
///
/// chaos makes the calls of one target fail, or its packets get lost or duplicated, on purpose,
/// through eBPF programs that only its targets pay for, and takes every program out of the
/// kernel when the run ends (a detached run: at its in-kernel deadline).
#[derive(Debug, Parser)]
#[command(name = "chaos", version, after_long_help = EXIT_CODES)]
pub struct Cli {
    /// More log output on stderr: -v for debug, -vv for trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Fail(fail::FailArgs),
    Signal(signal::SignalArgs),
    Net(net::NetArgs),
    Run(experiment::RunFileArgs),
    List(detached::ListArgs),
    Stop(detached::StopArgs),
    Cleanup(detached::CleanupArgs),
    Probe(probe::ProbeArgs),
    Demo(demo::DemoArgs),
    /// Print a shell completion script.
    ///
    /// Example: chaos completions bash > /etc/bash_completion.d/chaos
    Completions {
        /// The shell to write completions for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) generated from these definitions.
    ///
    /// Example: chaos man > chaos.1 && man ./chaos.1
    Man,
    /// The demo's workload: connects to ADDR again and again, one line per attempt.
    #[command(hide = true)]
    DemoWorkload(demo::WorkloadArgs),
}

/// Runs a parsed command line; returns the exit code. What killed runs left behind (expired
/// detached runs, replaced qdiscs) is put back first, whatever the command.
pub fn execute(cli: Cli) -> Result<u8, Error> {
    let cleaned = detached::clean_up();
    for id in &cleaned.expired_runs {
        tracing::debug!(%id, "unpinned an expired detached run");
    }
    for iface in &cleaned.qdiscs {
        tracing::info!(%iface, "put back the default root qdisc a killed delay run replaced");
    }
    match cli.command {
        Command::Cleanup(args) => detached::cleanup(args, cleaned),
        Command::Fail(args) => fail::execute(args),
        Command::Signal(args) => signal::execute(args),
        Command::Net(args) => net::execute(args),
        Command::Run(args) => experiment::execute(args),
        Command::List(args) => detached::list(args),
        Command::Stop(args) => detached::stop(args),
        Command::Probe(args) => probe::execute(args),
        Command::Demo(args) => demo::execute(args),
        Command::DemoWorkload(args) => demo::workload(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "chaos", &mut std::io::stdout());
            Ok(crate::error::exit::OK)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(crate::error::exit::OK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}

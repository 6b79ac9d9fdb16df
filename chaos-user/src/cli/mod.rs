//! The command line: clap definitions, one file per subcommand, and the error of a command.

pub mod clock;
pub mod corrupt;
pub mod delay;
pub mod demo;
pub mod detached;
pub mod disk;
pub mod error;
pub mod experiment;
pub mod fail;
pub mod idle;
pub mod k8s;
pub mod net;
pub mod pause;
pub mod probe;
pub mod reset;
pub mod run_file;
pub mod signal;

use std::{path::PathBuf, time::Duration};

use clap::{Args, CommandFactory as _, Parser, Subcommand};

use self::error::{Error, exit};
use crate::{
    fault::{self, ParseError, When},
    target::{TargetError, TargetSpec, Targets},
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

    /// How the start line ends: how the run can be ended.
    pub fn how_it_ends(&self) -> &'static str {
        how_it_ends(self.detach)
    }

    /// Prints the end of the run: the human summary on stderr, the JSON report on stdout with
    /// --json.
    pub fn print(&self, report: &crate::report::Report) {
        crate::report::print_final(&report.human(), || report.json(), self.json);
    }

    /// Runs `fault` on `targets` to its end and reports it, or with --detach leaves it to the
    /// kernel and says how to find it.
    pub fn run_or_detach(
        &self,
        targets: &crate::target::Targets,
        fault: &crate::run::CallsFault,
    ) -> Result<u8, error::Error> {
        if self.detach {
            // --pid-tree's fork and exit tracepoints, whichever programs the command has (each
            // checked its own before it said what it does).
            crate::plan::check_detachable(
                targets
                    .has_tree()
                    .then_some("the fork and exit tracepoints of --pid-tree"),
            )?;
            let run = crate::run::calls_detached(targets, fault, self.duration)?;
            detached::announce(&run, self.json, self.duration);
        } else {
            let report = crate::run::calls_run(targets, fault, self.duration, || {})?;
            self.print(&report);
        }
        Ok(error::exit::OK)
    }
}

/// How a fault at syscalls' returns catches them (`chaos corrupt-io`, `chaos delay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyscallBackend {
    /// fexit where trampolines load, else syscall tracepoints.
    Auto,
    /// fexit programs on the syscalls' functions: only those calls pay.
    Fexit,
    /// Syscall tracepoints: while they are on, every syscall of the machine takes the kernel's
    /// slower tracing path.
    Tracepoint,
}

impl SyscallBackend {
    /// Whether the fault's programs are the fexit ones `hooks`: an error, the reason, when
    /// fexit is asked for and this kernel refuses them.
    pub fn fexit(self, hooks: &[chaos_common::hook::Hook]) -> Result<bool, String> {
        let want = match self {
            SyscallBackend::Auto => None,
            SyscallBackend::Fexit => Some(true),
            SyscallBackend::Tracepoint => Some(false),
        };
        trampolines_chosen(want, hooks)
    }
}

/// How a fault at a syscall's entry catches it (`chaos signal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EntryBackend {
    /// fentry where trampolines load, else the syscall's entry tracepoint.
    Auto,
    /// An fentry program on the syscall's function: only its calls pay.
    Fentry,
    /// The syscall's entry tracepoint: while it is on, every syscall of the machine takes the
    /// kernel's slower tracing path.
    Tracepoint,
}

impl EntryBackend {
    /// Whether the fault's program is the fentry one `hook`: an error, the reason, when fentry
    /// is asked for and this kernel refuses it.
    pub fn fentry(self, hook: chaos_common::hook::Hook) -> Result<bool, String> {
        let want = match self {
            EntryBackend::Auto => None,
            EntryBackend::Fentry => Some(true),
            EntryBackend::Tracepoint => Some(false),
        };
        trampolines_chosen(want, &[hook])
    }
}

/// Whether a fault takes its trampoline programs `hooks` rather than tracepoints: `want` says
/// which was asked for (`None`: whichever this kernel loads, trampolines first); an error, the
/// reason, when trampolines are asked for and refused.
fn trampolines_chosen(
    want: Option<bool>,
    hooks: &[chaos_common::hook::Hook],
) -> Result<bool, String> {
    let refused = || crate::kernel::trampolines_refused(hooks);
    match want {
        Some(false) => Ok(false),
        None => Ok(refused().is_none()),
        Some(true) => refused().map_or(Ok(true), Err),
    }
}

/// How long a run that chaos holds without programs lasts, and how it reports: shared by
/// `chaos pause` and `chaos net reset`.
#[derive(Debug, Args)]
pub struct HeldArgs {
    /// How long the run lasts: 30s, 1m30s, 250ms.
    #[arg(long = "for", value_name = "DURATION", default_value = "60s",
          value_parser = fault::parse_duration, allow_hyphen_values = true)]
    pub duration: Duration,

    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Allow targets that are refused by default: PID 1, chaos itself and its parents, kernel
    /// threads, the root cgroup.
    #[arg(long)]
    pub force: bool,
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
    #[arg(long, value_name = "PATH", group = "target", conflicts_with_all = ["pid", "pid_tree", "comm", "container", "pod_uid", "pod"])]
    pub cgroup: Option<PathBuf>,

    /// Every process of this container, including ones started later (`podman exec`): its full
    /// ID, a unique prefix of it, its name (podman, docker, containerd, cri-o, lxc), or
    /// RUNTIME://ID as a Pod's status reports it (containerd://, cri-o://, docker://).
    #[arg(long, value_name = "ID", group = "target", conflicts_with_all = ["pid", "pid_tree", "comm", "pod_uid", "pod"])]
    pub container: Option<String>,

    /// Every process of every container of the pod with this UID on this node (its sandbox
    /// included), found in kubelet's cgroups (`kubectl get pod NAME -o
    /// jsonpath='{.metadata.uid}'`).
    #[arg(long, value_name = "UID", group = "target", conflicts_with_all = ["pid", "pid_tree", "comm", "pod"])]
    pub pod_uid: Option<String>,

    /// As --pod-uid, for the pod NAMESPACE/NAME on this node (NAME alone: in `default`), named
    /// by its containers' runtime (containerd or cri-o).
    #[arg(long, value_name = "NAMESPACE/NAME", group = "target", conflicts_with_all = ["pid", "pid_tree", "comm"])]
    pub pod: Option<String>,

    /// With --pod or --pod-uid: only the pod's container of this name (`spec.containers[].name`).
    #[arg(long, value_name = "NAME")]
    pub container_name: Option<String>,

    /// Every process whose command name (/proc/PID/comm) is NAME when the run starts.
    #[arg(long, value_name = "NAME", group = "target")]
    pub comm: Option<String>,
}

impl TargetArgs {
    /// Resolves the targets; `force` lifts the guards (PID 1, chaos and its parents, kernel
    /// threads, the root cgroup).
    pub fn resolve(&self, force: bool) -> Result<Targets, TargetError> {
        Targets::resolve(&TargetSpec {
            pids: &self.pid,
            trees: &self.pid_tree,
            cgroup: self.cgroup.as_deref(),
            container: self.container.as_deref(),
            pod: pod_ref(self.pod_uid.as_deref(), self.pod.as_deref()),
            container_name: self.container_name.as_deref(),
            comm: self.comm.as_deref(),
            force,
        })
    }
}

/// The pod `--pod-uid` or `--pod` names, if either.
pub fn pod_ref<'a>(
    uid: Option<&'a str>,
    name: Option<&'a str>,
) -> Option<crate::target::pod::PodRef<'a>> {
    use crate::target::pod::PodRef;
    uid.map(PodRef::Uid).or(name.map(PodRef::Name))
}

/// How a start line ends: a detached run is ended by `chaos stop`, another by Ctrl-C.
pub fn how_it_ends(detach: bool) -> &'static str {
    if detach {
        ", detached (`chaos stop ID` ends it early)"
    } else {
        " (Ctrl-C ends it early)"
    }
}

/// Refuses to go on without the capabilities chaos needs to load and attach programs.
pub fn require_privileges() -> Result<(), Error> {
    let missing = crate::capabilities::missing();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Privileges(missing))
    }
}

/// `chaos --version`: the version and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CHAOS_COMMIT"),
    ")"
);

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
#[command(name = "chaos", version = VERSION, after_long_help = EXIT_CODES)]
pub struct Cli {
    /// More log output on stderr: -v for debug, -vv for trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Each command's options are made only once the command is chosen (clap's `defer`): making all
/// of them was a tenth of a short fault's start. [`Cli::command_tree`] makes every one.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    Fail(fail::FailArgs),
    Signal(signal::SignalArgs),
    Delay(delay::DelayArgs),
    Net(net::NetArgs),
    Pause(pause::PauseArgs),
    Disk(disk::DiskArgs),
    CorruptIo(corrupt::CorruptIoArgs),
    Clock(clock::ClockArgs),
    Run(run_file::RunFileArgs),
    Monkey(experiment::monkey::MonkeyArgs),
    K8s(k8s::K8sArgs),
    List(detached::ListArgs),
    Stop(detached::StopArgs),
    Cleanup(detached::CleanupArgs),
    Probe(probe::ProbeArgs),
    Demo(demo::DemoArgs),
    Idle(idle::IdleArgs),
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
    /// What `chaos pause` leaves to thaw its target if it dies.
    #[command(hide = true)]
    PauseGuard(pause::PauseGuardArgs),
}

impl Cli {
    /// Parses this process's command line. Where no command is named yet (`chaos`, `chaos
    /// --help`, `chaos -v fail …`, `chaos help fail`), the whole tree is made first: the help
    /// lists every command with its description, which a deferred command has only once made.
    pub fn from_env() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let named = args
            .get(1)
            .and_then(|arg| arg.to_str())
            .is_some_and(|arg| !arg.starts_with('-') && arg != "help");
        let command = if named {
            Cli::command()
        } else {
            Cli::command_tree()
        };
        let matches = command.get_matches_from(args);
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
    }

    /// The command line's definitions with every command made, for introspection (completions,
    /// the man page, the fault commands).
    /// (clap makes its own `help` command before the deferred ones: the completions of
    /// `chaos help` offer the commands, not their subcommands; `chaos help disk cut` works.)
    pub fn command_tree() -> clap::Command {
        let mut command = Cli::command();
        command.build();
        command
    }
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
        Command::Delay(args) => delay::execute(args),
        Command::Net(args) => net::execute(args),
        Command::Pause(args) => pause::execute(args),
        Command::Disk(args) => disk::execute(args),
        Command::CorruptIo(args) => corrupt::execute(args),
        Command::Clock(args) => clock::execute(args),
        Command::PauseGuard(args) => pause::guard(args),
        Command::Run(args) => run_file::execute(args),
        Command::Monkey(args) => experiment::monkey::execute(args),
        Command::K8s(args) => k8s::execute(args),
        Command::List(args) => detached::list(args),
        Command::Stop(args) => detached::stop(args),
        Command::Probe(args) => probe::execute(args),
        Command::Demo(args) => demo::execute(args),
        Command::Idle(args) => idle::execute(args),
        Command::DemoWorkload(args) => demo::workload(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command_tree(),
                "chaos",
                &mut std::io::stdout(),
            );
            Ok(exit::OK)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command_tree())
                .render(&mut std::io::stdout())
                .map_err(Error::io("write the man page to stdout"))?;
            Ok(exit::OK)
        }
    }
}

impl Command {
    /// For a command that injects a fault, the fault checked as far as that is possible without
    /// the kernel and the targets (what `chaos run` checks of a file's faults); `None` for the
    /// other commands. Every command is named: a new one must say which it is.
    pub fn check_fault(&self) -> Option<Result<(), ParseError>> {
        match self {
            Command::Fail(args) => Some(args.fault().map(drop)),
            Command::Signal(_) => Some(Ok(())),
            Command::Delay(args) => Some(args.fault().map(drop)),
            Command::Net(args) => Some(args.action.check()),
            // Their options are all checked by clap.
            Command::Pause(_) | Command::Disk(_) => Some(Ok(())),
            Command::CorruptIo(args) => Some(args.fault().map(drop)),
            Command::Clock(args) => Some(args.fault().map(drop)),
            Command::Run(_)
            | Command::Monkey(_)
            | Command::K8s(_)
            | Command::List(_)
            | Command::Stop(_)
            | Command::Cleanup(_)
            | Command::Probe(_)
            | Command::Demo(_)
            | Command::Idle(_)
            | Command::Completions { .. }
            | Command::Man
            | Command::DemoWorkload(_)
            | Command::PauseGuard(_) => None,
        }
    }
}

/// The commands that inject a fault, as `chaos run`'s `command` key spells them (`net drop`):
/// those that last `--for` a while and report as JSON (`--json`), and take options only (the
/// monkey, which reads a FILE of faults, is not one).
pub fn fault_commands() -> Vec<String> {
    fn leaves(command: &clap::Command, path: String, found: &mut Vec<String>) {
        let has = |long: &str| {
            command
                .get_arguments()
                .any(|arg| arg.get_long() == Some(long))
        };
        if command.has_subcommands() {
            for sub in command.get_subcommands() {
                leaves(sub, format!("{path} {}", sub.get_name()), found);
            }
        } else if has("for") && has("json") && command.get_positionals().next().is_none() {
            found.push(path);
        }
    }
    let mut found = Vec::new();
    for sub in Cli::command_tree().get_subcommands() {
        leaves(sub, sub.get_name().to_owned(), &mut found);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_fault_commands_are_those_that_last_and_report() {
        assert_eq!(
            fault_commands(),
            [
                "fail",
                "signal",
                "delay",
                "net drop",
                "net duplicate",
                "net corrupt",
                "net dns",
                "net delay",
                "net limit",
                "net reset",
                "pause",
                "disk error",
                "disk cut",
                "disk full",
                "corrupt-io",
                "clock"
            ]
        );
    }
}

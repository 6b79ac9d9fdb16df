//! The command line: clap definitions, one file per subcommand.

pub mod demo;
pub mod fail;
pub mod probe;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::error::Error;

const EXIT_CODES: &str = "\
Exit codes:
  0  the run went as asked (also when Ctrl-C, SIGTERM or SIGHUP ended it early)
  1  something failed while running
  2  bad input, a target that does not exist, missing privileges, or a fault the running kernel
     cannot inject (the message names the kernel option); nothing was attached";

/// Kernel-level fault injection for one process, container or network path.
///
/// chaos makes the calls of one target fail on purpose, through eBPF programs that only its
/// targets pay for, and takes every program out of the kernel when the run ends.
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

/// Runs a parsed command line; returns the exit code.
pub fn execute(cli: Cli) -> Result<u8, Error> {
    match cli.command {
        Command::Fail(args) => fail::execute(args),
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

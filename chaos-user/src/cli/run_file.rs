//! `chaos run FILE`: a scripted experiment.

use std::path::PathBuf;

use clap::Args;

use crate::{
    cli::{
        error::{Error, exit},
        experiment::{Experiment, supervise},
        require_privileges,
    },
    run,
};

/// Run a scripted experiment: several faults on a timeline, a steady-state check before, during
/// and after them, and workloads (load, clients, fuzzers) that run beside them.
///
/// The file is TOML (README.md documents it; examples/ has examples). Each [[fault]] table is a
/// `chaos fail`, `chaos signal` or `chaos net` command whose long options are its keys, with a
/// start offset and a duration; each runs as that command, in a child process that dies with
/// this one. Commands run with `sh -c` in the file's directory; the check sees the first
/// workload's PID in $CHAOS_WORKLOAD_PID and each one's in $CHAOS_WORKLOAD_PID_<NAME>; a fault
/// reaches a workload with pid = "workload" (the first) or "workload:NAME" (or pid_tree). A
/// workload with metrics = "json-lines" (or a regex) has the numbers it prints reported per
/// phase. Ctrl-C, SIGTERM and SIGHUP end every fault early.
///
/// Examples:
///   chaos run examples/connect-timeouts.toml
///   chaos run --check experiment.toml
///   chaos run experiment.toml --during './load-test --duration 60s' --json
///
/// Exit status: 0 when the checks held, every workload met its expectation (or ran until chaos
/// stopped it) and every fault ran; 1 otherwise; 2 when the file is invalid (the message names
/// file, line and field).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RunFileArgs {
    /// The experiment file.
    pub file: PathBuf,

    /// A shell command run while the faults are active; takes the place of the file's single
    /// [workload]. Its exit status is part of the result.
    #[arg(long, value_name = "CMD")]
    pub during: Option<String>,

    /// Only check the file: exit 0 when it is valid, 2 with the reason otherwise.
    #[arg(long)]
    pub check: bool,

    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: RunFileArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    let text = std::fs::read_to_string(&args.file).map_err(|source| Error::ExperimentFile {
        path: args.file.clone(),
        source,
    })?;
    let experiment = Experiment::parse(&args.file, &text, args.during.as_deref())?;
    if args.check {
        eprintln!(
            "chaos: {} is a valid experiment: {} fault(s) over {}",
            args.file.display(),
            experiment.faults.len(),
            humantime::format_duration(experiment.duration)
        );
        return Ok(exit::OK);
    }
    require_privileges()?;
    eprintln!(
        "chaos: running {} ({} fault(s) over {}; Ctrl-C ends it early)",
        args.file.display(),
        experiment.faults.len(),
        humantime::format_duration(experiment.duration)
    );
    let mut holder =
        run::Holder::new().map_err(Error::io("listen for Ctrl-C, SIGTERM and SIGHUP"))?;
    let report = holder
        .block_on(async |interrupts| supervise::run(&experiment, &args.file, interrupts).await);
    crate::report::print_final(&report.human(), || report.json(), args.json);
    Ok(if report.passed {
        exit::OK
    } else {
        exit::FAILURE
    })
}

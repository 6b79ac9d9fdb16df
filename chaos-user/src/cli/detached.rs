//! `chaos list` and `chaos stop`: the detached runs (`--detach`).

use clap::Args;

use crate::{
    cli::error::{Error, exit},
    detached::{self, DetachedRun},
};

/// Show the detached runs: targets, faults, time left and counters.
///
/// Example: chaos list --json
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the runs as a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

/// End detached runs now: their pins are removed, which detaches the programs.
///
/// Examples:
///   chaos stop 1a2b3c4d
///   chaos stop --all
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StopArgs {
    /// The run to end (from `chaos fail --detach` or `chaos list`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,

    /// End every detached run.
    #[arg(long)]
    pub all: bool,
}

/// Put back what runs that were killed left behind: the root qdiscs that delay faults replaced,
/// the pins of detached runs past their deadline, and the spare programs of a `chaos idle` that
/// was killed. Every chaos command does this first;
/// this one only does that, and says what it did.
///
/// Example: chaos cleanup --json
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Print what was put back as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What `chaos cleanup` (or any chaos command, first) put back.
#[derive(Debug, Default, serde::Serialize)]
pub struct CleanedUp {
    /// Detached runs past their deadline, unpinned.
    pub expired_runs: Vec<String>,
    /// Interfaces whose default root qdisc was put back (`iface (netns)`).
    pub qdiscs: Vec<String>,
    /// Spare programs of a `chaos idle` that was killed, or of a run killed while it took or
    /// made one, unpinned (their directories).
    pub spares: Vec<String>,
}

/// Puts back what killed runs left behind.
pub fn clean_up() -> CleanedUp {
    CleanedUp {
        expired_runs: detached::clean_up_expired(),
        qdiscs: crate::attach::qdisc::restore_orphans(),
        spares: crate::attach::spare::clean_up(),
    }
}

pub fn cleanup(args: CleanupArgs, cleaned: CleanedUp) -> Result<u8, Error> {
    if args.json {
        println!("{}", serde_json::to_string(&cleaned).expect("serializes"));
    } else {
        println!(
            "unpinned {} expired detached run(s){}; put back the root qdisc of {} interface(s){}; unpinned {} orphaned spare(s){}",
            cleaned.expired_runs.len(),
            in_parens(&cleaned.expired_runs),
            cleaned.qdiscs.len(),
            in_parens(&cleaned.qdiscs),
            cleaned.spares.len(),
            in_parens(&cleaned.spares),
        );
    }
    Ok(exit::OK)
}

fn in_parens(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" ({})", items.join(", "))
    }
}

#[derive(serde::Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    run: &'a DetachedRun,
    remaining_s: f64,
    matched: u64,
    injected: u64,
}

/// Prints a just-started detached run: its ID on stdout (the whole description with `json`),
/// and on stderr how it ends.
pub fn announce(run: &DetachedRun, json: bool, lifetime: std::time::Duration) {
    if json {
        println!("{}", serde_json::to_string(run).expect("a run serializes"));
    } else {
        println!("{}", run.id);
    }
    eprintln!(
        "chaos: detached run {} ends by itself in {}; `chaos stop {}` ends it now",
        run.id,
        humantime::format_duration(lifetime),
        run.id
    );
}

pub fn list(args: ListArgs) -> Result<u8, Error> {
    let runs = detached::all();
    let listed: Vec<Listed> = runs
        .iter()
        .map(|run| {
            let counters = run.counters();
            Listed {
                run,
                remaining_s: run.remaining_s(),
                matched: counters.matched,
                injected: counters.injected,
            }
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&listed).expect("runs always serialize")
        );
    } else if listed.is_empty() {
        println!("no detached runs");
    } else {
        println!(
            "{:<10} {:>8} {:>9} {:>9}  fault / targets",
            "ID", "LEFT", "MATCHED", "INJECTED"
        );
        for l in &listed {
            println!(
                "{:<10} {:>7.1}s {:>9} {:>9}  {}: {}",
                l.run.id,
                l.remaining_s,
                l.matched,
                l.injected,
                l.run.describe_faults(),
                l.run.targets
            );
        }
    }
    Ok(exit::OK)
}

pub fn stop(args: StopArgs) -> Result<u8, Error> {
    let runs = detached::all();
    let chosen: Vec<&DetachedRun> = match &args.id {
        Some(id) => {
            let run = runs
                .iter()
                .find(|run| &run.id == id)
                .ok_or_else(|| Error::NoSuchRun {
                    id: id.clone(),
                    known: runs
                        .iter()
                        .map(|r| r.id.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            vec![run]
        }
        None => runs.iter().collect(),
    };
    for run in chosen {
        detached::stop(&run.id)?;
        eprintln!("chaos: stopped {}", run.id);
    }
    Ok(exit::OK)
}

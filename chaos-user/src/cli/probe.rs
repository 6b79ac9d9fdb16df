//! `chaos probe`: what the running kernel can do.

use clap::Args;
use serde_json::json;

use crate::{
    cli::error::{Error, exit},
    kernel, plan,
};

/// Report every kernel capability chaos relies on, and how to get the missing ones; then, for
/// each operation of `chaos fail --op`, the mechanism this kernel will use and what the ones it
/// prefers would need.
///
/// Each line is found by trying: loading a tiny program, reading /sys, or attaching inside a
/// throwaway network namespace. Mounts securityfs, tracefs or debugfs when they are missing, and
/// says so.
///
/// Example: chaos probe --json | jq '.findings[] | select(.supported | not)'
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Print the findings as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: ProbeArgs) -> Result<u8, Error> {
    let findings = kernel::probe();
    let release = kernel_release();
    let ladders = plan::ladders(&mut plan::Running { eperm_ok: false });
    if args.json {
        let operations: Vec<serde_json::Value> = ladders
            .iter()
            .map(|plan::Step { op, rung, refused }| {
                let better: Vec<serde_json::Value> = refused
                    .iter()
                    .map(|(mechanism, why)| json!({ "mechanism": mechanism.name(), "why": why }))
                    .collect();
                json!({
                    "op": op.name,
                    "mechanism": rung.map(|rung| rung.mechanism.name()),
                    "better": better,
                })
            })
            .collect();
        let report = json!({ "kernel": release, "findings": findings, "operations": operations });
        println!("{report}");
        return Ok(exit::OK);
    }
    println!("kernel {release}");
    for finding in &findings {
        let verdict = if finding.supported { "yes" } else { "no" };
        println!("{:<18} {:<4} {}", finding.feature, verdict, finding.detail);
        if let Some(enable) = &finding.enable {
            println!("{:<18} {:<4} to enable: {enable}", "", "");
        }
    }
    // Operations that take the same mechanism for the same reasons share a line.
    let mut groups: Vec<(&str, &[plan::Refusal], Vec<&str>)> = Vec::new();
    for plan::Step { op, rung, refused } in &ladders {
        let mechanism = rung.map_or("none", |rung| rung.mechanism.name());
        match groups
            .iter_mut()
            .find(|(m, r, _)| *m == mechanism && *r == refused.as_slice())
        {
            Some((_, _, ops)) => ops.push(op.name),
            None => groups.push((mechanism, refused, vec![op.name])),
        }
    }
    println!();
    println!("operations by the mechanism this kernel uses (and why the ones preferred cannot):");
    for (mechanism, passed, ops) in groups {
        println!("{mechanism:<18} {}", ops.join(", "));
        for (better, why) in passed {
            println!("{:<18}   {}: {why}", "", better.name());
        }
    }
    Ok(exit::OK)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

//! `chaos probe`: what the running kernel can do.

use clap::Args;
use serde_json::json;

use crate::{
    cli::error::{Error, exit},
    kernel,
};

/// Report every kernel capability chaos relies on, and how to get the missing ones.
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
    if args.json {
        println!("{}", json!({ "kernel": release, "findings": findings }));
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
    Ok(exit::OK)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

//! The fault family × kernel support table in README.md, written from the results of the last
//! runs, never by hand: each kernel's `chaos probe --json` and the outcome of each integration
//! test binary there, under target/matrix/KERNEL (`host` for this machine).

use chaos_common::features;
use std::{collections::BTreeMap, fs, path::PathBuf};

use anyhow::{Context as _, bail};

use crate::workspace_root;

/// The kernels of the table, in column order, as their results directories name them.
const COLUMNS: [(&str, &str); 4] = [
    ("host", "host 6.18 (dev/CI VM)"),
    ("faultinj-6.12", "faultinj-6.12 (qemu)"),
    ("debian-6.1", "debian-6.1 (qemu)"),
    ("debian-6.12", "debian-6.12 (qemu)"),
];

const START: &str = "<!-- support-table:start -->";
const END: &str = "<!-- support-table:end -->";

/// A row: what a family needs from `chaos probe`, and the test binary that proves it.
struct Family {
    name: &'static str,
    needs: &'static [&'static str],
    tests: &'static str,
}

const FAMILIES: [Family; 12] = [
    Family {
        name: "`fail` connect/bind/send/socket (cgroup hooks)",
        needs: &[features::CGROUP_SOCK_ADDR],
        tests: "errno_connect",
    },
    Family {
        name: "`fail` file, exec, fork, socket ops (BPF LSM)",
        needs: &[features::BPF_LSM, features::TRAMPOLINE],
        tests: "errno_ops",
    },
    Family {
        name: "`fail --path` on tmpfs, ext4, overlayfs, a container's root (BPF LSM)",
        needs: &[features::BPF_LSM, features::TRAMPOLINE],
        tests: "errno_path",
    },
    Family {
        name: "`fail --syscall` (kprobe override)",
        needs: &[features::KPROBE_OVERRIDE],
        tests: "errno_syscall",
    },
    Family {
        name: "`signal` (syscall tracepoints)",
        needs: &[features::TRACEPOINT_SIGNAL],
        tests: "signal",
    },
    Family {
        name: "`net drop`, `net duplicate` (tcx, else clsact)",
        needs: &[],
        tests: "net_faults",
    },
    Family {
        name: "`net corrupt` (tcx, else clsact)",
        needs: &[],
        tests: "net_corrupt",
    },
    Family {
        name: "`net dns` (tcx, else clsact)",
        needs: &[],
        tests: "net_dns",
    },
    Family {
        name: "`net drop --cgroup` (cgroup_skb)",
        needs: &[features::CGROUP_SKB],
        tests: "net_faults",
    },
    Family {
        name: "`net delay`, `net limit` (fq)",
        needs: &[features::SCH_FQ],
        tests: "net_delay",
    },
    Family {
        name: "runs that end: deadlines, SIGKILL, detached runs",
        needs: &[],
        tests: "run_lifetime",
    },
    Family {
        name: "`run` experiments",
        needs: &[],
        tests: "experiments",
    },
];

/// Where the results of a run on `kernel` go.
pub fn results_dir(kernel: &str) -> PathBuf {
    workspace_root().join("target/matrix").join(kernel)
}

/// One kernel's results: its probe findings by feature, and each test binary's outcome.
struct Results {
    findings: BTreeMap<String, (bool, String)>,
    passed: BTreeMap<String, bool>,
}

fn load(kernel: &str) -> anyhow::Result<Option<Results>> {
    let dir = results_dir(kernel);
    let Ok(probe) = fs::read(dir.join("probe.json")) else {
        return Ok(None);
    };
    let probe: serde_json::Value =
        serde_json::from_slice(&probe).with_context(|| format!("{}/probe.json", dir.display()))?;
    let findings = probe["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let enable = f["enable"].as_str().unwrap_or_default();
            let feature = f["feature"].as_str().unwrap_or_default().to_owned();
            (feature, (f["supported"] == true, enable.to_owned()))
        })
        .collect();
    let passed = fs::read_to_string(dir.join("results"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(binary, outcome)| (binary.to_owned(), outcome == "passed"))
        .collect();
    Ok(Some(Results { findings, passed }))
}

fn cell(family: &Family, results: &Results) -> String {
    let tested = match results.passed.get(family.tests) {
        Some(true) => "",
        Some(false) => " — tests FAILED",
        None => " — not tested",
    };
    let missing: Vec<&str> = family
        .needs
        .iter()
        .filter(|need| !results.findings.get(**need).is_some_and(|(yes, _)| *yes))
        .copied()
        .collect();
    if let Some(first) = missing.first() {
        let enable = results
            .findings
            .get(*first)
            .map(|(_, enable)| enable.as_str())
            .filter(|enable| !enable.is_empty())
            .unwrap_or(first);
        let enable: String = enable.split(" (").next().unwrap_or(enable).to_owned();
        return format!("no: {enable} (refusal tested){tested}");
    }
    let how = if family.tests.starts_with("net_") && family.needs.is_empty() {
        match results.findings.get(features::TCX) {
            Some((true, _)) => " (tcx)",
            _ => " (clsact)",
        }
    } else {
        ""
    };
    format!("yes{how}{tested}")
}

/// Renders the table from target/matrix and puts it between the markers in README.md.
pub fn write_support_table() -> anyhow::Result<()> {
    let mut columns = Vec::new();
    for (kernel, title) in COLUMNS {
        if let Some(results) = load(kernel)? {
            columns.push((title, results));
        }
    }
    if columns.is_empty() {
        bail!("no results under target/matrix: run `cargo xtask test` first");
    }
    let mut table = String::from("| fault family |");
    for (title, _) in &columns {
        table.push_str(&format!(" {title} |"));
    }
    table.push_str("\n|---|");
    table.push_str(&"---|".repeat(columns.len()));
    table.push('\n');
    for family in &FAMILIES {
        table.push_str(&format!("| {} |", family.name));
        for (_, results) in &columns {
            table.push_str(&format!(" {} |", cell(family, results)));
        }
        table.push('\n');
    }
    let readme_path = workspace_root().join("README.md");
    let readme = fs::read_to_string(&readme_path)?;
    let (Some(start), Some(end)) = (readme.find(START), readme.find(END)) else {
        bail!("README.md lacks the {START} … {END} markers");
    };
    let updated = format!("{}{START}\n{table}{}", &readme[..start], &readme[end..]);
    fs::write(&readme_path, updated)?;
    eprintln!("support table written to README.md:\n{table}");
    Ok(())
}

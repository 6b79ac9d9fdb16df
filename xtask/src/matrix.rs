//! The fault family × kernel support table in README.md, written from the results of the last
//! runs, never by hand: each kernel's `chaos probe --json` and the outcome of each integration
//! test binary there, under target/matrix/KERNEL (`host` for this machine).

use chaos_common::features;
use std::{collections::BTreeMap, fs, path::PathBuf};

use anyhow::{Context as _, bail};

use crate::workspace_root;

/// The kernels of the table, in column order, as their results directories name them, and the
/// kernel a column shares its suites with when it runs only some (see vm::Kernel::only).
const COLUMNS: [(&str, &str, Option<&str>); 7] = [
    ("host", "host 6.18 (dev/CI VM)", None),
    ("faultinj-6.12", "faultinj-6.12 (qemu)", Some("debian-6.12")),
    ("debian-5.10", "debian-5.10 (qemu)", None),
    ("debian-6.1", "debian-6.1 (qemu)", None),
    (
        "debian-6.1-nolsm",
        "debian-6.1, bpf not in lsm= (qemu)",
        Some("debian-6.1"),
    ),
    ("debian-6.12", "debian-6.12 (qemu)", None),
    (
        "debian-6.12-nolsm",
        "debian-6.12, bpf not in lsm= (qemu)",
        Some("debian-6.12"),
    ),
];

const START: &str = "<!-- support-table:start -->";
const END: &str = "<!-- support-table:end -->";

/// A row: the ways a family can run, the preferred first, and the test binary that proves it.
struct Family {
    name: &'static str,
    ways: &'static [Way],
    tests: &'static str,
}

/// One way a family runs: the mechanism the cell names, and the `chaos probe` features it needs.
struct Way {
    label: &'static str,
    needs: &'static [&'static str],
}

/// One way, needing nothing the probe reports (what the tests assert is enough).
const ANYWHERE: &[Way] = &[Way {
    label: "",
    needs: &[],
}];
/// The BPF LSM operations: lsm, else the same programs as fmod_ret.
const LSM_OR_FMOD_RET: &[Way] = &[
    Way {
        label: "lsm",
        needs: &[features::BPF_LSM, features::TRAMPOLINE],
    },
    Way {
        label: "fmod_ret",
        needs: &[features::FMOD_RET],
    },
];
/// Functions of the error-injection list: fmod_ret, else kprobe override.
const ERROR_INJECTION_OVERRIDE: &[Way] = &[
    Way {
        label: "fmod_ret",
        needs: &[features::ERROR_INJECTION, features::FMOD_RET],
    },
    Way {
        label: "kprobe-override",
        needs: &[features::ERROR_INJECTION, features::KPROBE_OVERRIDE],
    },
];
/// TC programs: tcx links, else a clsact qdisc's filters.
const TCX_OR_CLSACT: &[Way] = &[
    Way {
        label: "tcx",
        needs: &[features::TCX],
    },
    Way {
        label: "clsact",
        needs: &[],
    },
];

const FAMILIES: [Family; 21] = [
    Family {
        name: "`fail` connect/bind/send/socket (cgroup hooks)",
        ways: &[Way {
            label: "",
            needs: &[features::CGROUP_SOCK_ADDR],
        }],
        tests: "errno_connect",
    },
    Family {
        name: "`fail` file, exec, fork, socket ops (BPF LSM, else fmod_ret)",
        ways: LSM_OR_FMOD_RET,
        tests: "errno_ops",
    },
    Family {
        name: "`fail` every op at its syscalls' entry (`--backend kprobe-override`; the error-injection list)",
        ways: &[Way {
            label: "",
            needs: &[features::ERROR_INJECTION, features::KPROBE_OVERRIDE],
        }],
        tests: "errno_kprobe",
    },
    Family {
        name: "`fail --op chown` (its hooks take structs by value)",
        ways: &[
            Way {
                label: "lsm",
                needs: &[
                    features::BPF_LSM,
                    features::TRAMPOLINE,
                    features::STRUCT_ARGS,
                ],
            },
            Way {
                label: "fmod_ret",
                needs: &[features::FMOD_RET, features::STRUCT_ARGS],
            },
        ],
        tests: "errno_ops",
    },
    Family {
        name: "`fail`, `signal` rules `--after`, `--every`, `--count` (BPF atomics)",
        ways: &[Way {
            label: "",
            needs: &[features::BPF_ATOMICS],
        }],
        tests: "errno_when",
    },
    Family {
        name: "`fail --path` on tmpfs, ext4, overlayfs, a container's root (BPF LSM, else fmod_ret)",
        ways: LSM_OR_FMOD_RET,
        tests: "errno_path",
    },
    Family {
        name: "`fail --syscall`, `--kernel-fn` (fmod_ret, else kprobe override; the error-injection list)",
        ways: ERROR_INJECTION_OVERRIDE,
        tests: "errno_syscall",
    },
    Family {
        name: "`signal` (fentry, else syscall tracepoints)",
        ways: &[
            Way {
                label: "fentry",
                needs: &[features::TRAMPOLINE],
            },
            Way {
                label: "tracepoint",
                needs: &[features::TRACEPOINT_SIGNAL],
            },
        ],
        tests: "signal",
    },
    Family {
        name: "`delay` (fexit, else syscall tracepoints; SIGSTOP and SIGCONT)",
        ways: &[
            Way {
                label: "fexit",
                needs: &[features::TRAMPOLINE],
            },
            Way {
                label: "tracepoint",
                needs: &[features::TRACEPOINT_SIGNAL],
            },
        ],
        tests: "delay",
    },
    Family {
        name: "`net drop`, `net duplicate` (tcx, else clsact)",
        ways: TCX_OR_CLSACT,
        tests: "net_faults",
    },
    Family {
        name: "`net corrupt` (tcx, else clsact)",
        ways: TCX_OR_CLSACT,
        tests: "net_corrupt",
    },
    Family {
        name: "`net dns` (tcx, else clsact)",
        ways: TCX_OR_CLSACT,
        tests: "net_dns",
    },
    Family {
        name: "`net drop --cgroup` (cgroup_skb)",
        ways: &[Way {
            label: "",
            needs: &[features::CGROUP_SKB],
        }],
        tests: "net_faults",
    },
    Family {
        name: "`net drop`, `net corrupt` with `--hook xdp` (XDP)",
        ways: &[Way {
            label: "",
            needs: &[features::XDP],
        }],
        tests: "net_xdp",
    },
    Family {
        name: "`disk error`, `disk cut` (fmod_ret, else kprobe override, on should_fail_bio)",
        ways: ERROR_INJECTION_OVERRIDE,
        tests: "disk",
    },
    Family {
        // The write part needs trampolines, so the statfs part always has its fexit rung.
        name: "`disk full` (LSM or fmod_ret; statfs rewritten by fexit)",
        ways: &[
            Way {
                label: "lsm",
                needs: &[
                    features::BPF_LSM,
                    features::TRAMPOLINE,
                    features::PROBE_WRITE_USER,
                ],
            },
            Way {
                label: "fmod_ret",
                needs: &[features::FMOD_RET, features::PROBE_WRITE_USER],
            },
        ],
        tests: "disk_full",
    },
    Family {
        name: "`corrupt-io` (fexit, else syscall tracepoints; bpf_probe_write_user)",
        ways: &[
            Way {
                label: "fexit",
                needs: &[features::TRAMPOLINE, features::PROBE_WRITE_USER],
            },
            Way {
                label: "tracepoint",
                needs: &[features::TRACEPOINT_SIGNAL, features::PROBE_WRITE_USER],
            },
        ],
        tests: "corrupt_io",
    },
    Family {
        name: "`clock` (fexit and tp_btf; bpf_probe_write_user)",
        ways: &[Way {
            label: "fexit",
            needs: &[features::TRAMPOLINE, features::PROBE_WRITE_USER],
        }],
        tests: "clock",
    },
    Family {
        name: "`net delay`, `net limit` (fq)",
        ways: &[Way {
            label: "",
            needs: &[features::SCH_FQ],
        }],
        tests: "net_delay",
    },
    Family {
        name: "runs that end: deadlines, SIGKILL, detached runs",
        ways: ANYWHERE,
        tests: "run_lifetime",
    },
    Family {
        name: "`run` experiments",
        ways: ANYWHERE,
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

fn cell(family: &Family, results: &Results, shares: Option<&str>) -> String {
    let tested = match (results.passed.get(family.tests), shares) {
        (Some(true), _) => String::new(),
        (Some(false), _) => " — tests FAILED".to_owned(),
        (None, Some(kernel)) => format!(" (tests: as on {kernel})"),
        (None, None) => " — not tested".to_owned(),
    };
    let has = |need: &&str| results.findings.get(*need).is_some_and(|(yes, _)| *yes);
    if let Some(way) = family.ways.iter().find(|way| way.needs.iter().all(has)) {
        return match way.label {
            "" => format!("yes{tested}"),
            label => format!("yes ({label}){tested}"),
        };
    }
    // None works: what would enable the preferred way.
    let first = family
        .ways
        .first()
        .and_then(|way| way.needs.iter().find(|need| !has(need)))
        .copied()
        .unwrap_or_default();
    let enable = results
        .findings
        .get(first)
        .map(|(_, enable)| enable.as_str())
        .filter(|enable| !enable.is_empty())
        .unwrap_or(first);
    let enable: String = enable.split(" (").next().unwrap_or(enable).to_owned();
    format!("no: {enable} (refusal tested){tested}")
}

/// Renders the table from target/matrix and puts it between the markers in README.md.
pub fn write_support_table() -> anyhow::Result<()> {
    let mut columns = Vec::new();
    for (kernel, title, shares) in COLUMNS {
        if let Some(results) = load(kernel)? {
            columns.push((title, results, shares));
        }
    }
    if columns.is_empty() {
        bail!("no results under target/matrix: run `cargo xtask test` first");
    }
    let mut table = String::from("| fault family |");
    for (title, ..) in &columns {
        table.push_str(&format!(" {title} |"));
    }
    table.push_str("\n|---|");
    table.push_str(&"---|".repeat(columns.len()));
    table.push('\n');
    for family in &FAMILIES {
        table.push_str(&format!("| {} |", family.name));
        for (_, results, shares) in &columns {
            table.push_str(&format!(" {} |", cell(family, results, *shares)));
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

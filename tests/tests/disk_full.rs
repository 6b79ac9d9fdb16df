//! `chaos disk full`: a target's writes below a path fail with ENOSPC and its statfs() of that
//! filesystem reports no free blocks, while an untargeted process on the same files sees the
//! filesystem as it is, and the target itself sees other filesystems and other directories as
//! they are. On ext4 (a loop image). The statfs part through fexit programs where trampolines
//! load, and through the syscall tracepoints (`--statfs-backend tracepoint`) where the kernel has
//! them. Where the kernel cannot (no BPF LSM or fmod_ret, neither trampolines nor syscall
//! tracepoints, bpf_probe_write_user refused), the refusal is asserted with its reason.

use std::process::Output;

use chaos_common::features;
use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

/// The operations a full filesystem fails, each proved by a victim of its own, and the statfs
/// calls that report it full.
const FAILED_OPS: [&str; 3] = ["write", "mkdir", "symlink"];
const STATFS_OPS: [&str; 2] = ["statfs", "fstatfs"];

/// Whether `output` is chaos refusing the fault for what this kernel lacks, as the probe says
/// (asserted, with the reason in the message); `tracepoints`: the run asked for the statfs
/// tracepoints.
fn refused(output: &Output, tracepoints: bool) -> bool {
    if output.status.code() != Some(2) {
        return false;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.contains("cannot be shown to statfs()") {
        return refused_for_lack_of_lsm(output, "chaos disk full");
    }
    let probe = Probe::run();
    let (has_tracepoints, _) = probe.feature(features::TRACEPOINT_SIGNAL);
    let (write_user, write_user_detail) = probe.feature(features::PROBE_WRITE_USER);
    // auto takes fexit where trampolines load.
    let through_tracepoints = tracepoints || !probe.feature(features::TRAMPOLINE).0;
    let reason = if through_tracepoints && !has_tracepoints {
        assert!(
            tracepoints || !expected(features::TRACEPOINT_SIGNAL),
            "{stderr}"
        );
        "CONFIG_FTRACE_SYSCALLS".to_owned()
    } else {
        assert!(!write_user, "refused although it works here: {stderr}");
        assert!(!expected(features::PROBE_WRITE_USER), "{stderr}");
        write_user_detail
    };
    assert!(
        stderr.contains(&reason),
        "the refusal must name '{reason}': {stderr}"
    );
    eprintln!("chaos disk full NOT INJECTED on this kernel, as the probe predicts: {reason}");
    assert_no_chaos_programs();
    true
}

/// Runs `chaos disk full ARGS --for 4s --json`: the report and the run's window, or `None` where
/// the kernel cannot (asserted). 4 s: attaching the LSM and fexit programs takes a second or more
/// of it in a slow guest (5.10 under emulation), and each target must fail more than once.
fn full(args: &[&str]) -> Option<(serde_json::Value, (u64, u64))> {
    let mut all = vec!["disk", "full"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--for", "4s", "--json"]);
    let start_ns = monotonic_ns();
    let output = chaos(&all);
    let end_ns = monotonic_ns();
    if refused(&output, args.contains(&"tracepoint")) {
        return None;
    }
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_report(&output);
    eprintln!("disk full {args:?}: {}", report["faults"]);
    Some((report, (start_ns, end_ns)))
}

/// The report's row for `op`.
fn row<'a>(report: &'a serde_json::Value, op: &str) -> &'a serde_json::Value {
    report["faults"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["op"] == op))
        .unwrap_or_else(|| panic!("no row for {op}: {report}"))
}

fn assert_never_failed(victims: &[&Victim], what: &str) {
    for victim in victims {
        let hit: Vec<Call> = victim
            .calls()
            .into_iter()
            .filter(|call| call.errno.is_some())
            .collect();
        assert!(hit.is_empty(), "{what} {} was hit: {hit:?}", victim.pid());
    }
}

/// The targets' writes, mkdirs and symlinks below the path fail with ENOSPC and their statfs()
/// and fstatfs() of the filesystem report no free blocks; the same calls of the same targets
/// beside the path (same filesystem) and on another filesystem, and an untargeted process
/// writing and calling statfs() below the path, never fail.
#[test]
fn full_for_the_target_alone() {
    let disk = TestMount::ext4("full");
    let other_fs = TestMount::tmpfs("full-other");
    let cgroup = TestCgroup::new("disk-full");
    let at = |mount: &TestMount, sub: &str| mount.path.join(sub).to_str().unwrap().to_owned();
    let start = |op: &str, dir: String| Victim::start(VICTIM, op, &dir, &cgroup);
    let failing: Vec<(&str, Victim)> = FAILED_OPS
        .iter()
        .map(|&op| (op, start(op, at(&disk, &format!("data/{op}")))))
        .collect();
    let statfs: Vec<Victim> = STATFS_OPS
        .iter()
        .map(|&op| start(op, at(&disk, &format!("data/{op}"))))
        .collect();
    let beside: Vec<Victim> = FAILED_OPS
        .iter()
        .map(|&op| start(op, at(&disk, &format!("other/{op}"))))
        .chain(
            FAILED_OPS
                .iter()
                .chain(&STATFS_OPS)
                .map(|&op| start(op, at(&other_fs, op))),
        )
        .collect();
    let bystander_write = start("write", at(&disk, "data/bystander-write"));
    let bystander_statfs = start("statfs", at(&disk, "data/bystander-statfs"));
    let pids = pid_list(
        failing
            .iter()
            .map(|(_, victim)| victim)
            .chain(&statfs)
            .chain(&beside),
    );
    let path = at(&disk, "data");
    let Some((report, window)) = full(&["--pid", &pids, "--path", &path]) else {
        return;
    };
    let end_ns = window.1;
    for (op, victim) in &failing {
        victim.wait_for_call_after(end_ns);
        let row = row(&report, op);
        assert_eq!(row["errno"], "ENOSPC", "{row}");
        assert_scoped_fault(&[victim], &bystander_write, libc::ENOSPC, window, row);
    }
    for victim in &statfs {
        victim.wait_for_call_after(end_ns);
    }
    let statfs_row = row(&report, "statfs");
    assert_eq!(statfs_row["kind"], "rewrite", "{statfs_row}");
    let auto = if Probe::run().feature(features::TRAMPOLINE).0 {
        "fexit"
    } else {
        "tracepoint"
    };
    assert_eq!(statfs_row["mechanism"], auto, "{statfs_row}");
    assert_scoped_fault(
        &statfs.iter().collect::<Vec<_>>(),
        &bystander_statfs,
        libc::ENOSPC,
        window,
        statfs_row,
    );
    assert_never_failed(
        &beside.iter().collect::<Vec<_>>(),
        "a target's call beside the full path",
    );
    assert_never_failed(&[&bystander_write], "the untargeted writer");
    assert_no_chaos_programs();
}

/// `--statfs-backend tracepoint`: the statfs part through the syscalls' exit tracepoints, where
/// the kernel has them (refused naming CONFIG_FTRACE_SYSCALLS where it does not).
#[test]
fn full_through_the_statfs_tracepoints() {
    let disk = TestMount::ext4("full-tp");
    let cgroup = TestCgroup::new("disk-full-tp");
    let at = |sub: &str| disk.path.join(sub).to_str().unwrap().to_owned();
    let statfs: Vec<Victim> = STATFS_OPS
        .iter()
        .map(|&op| Victim::start(VICTIM, op, &at(&format!("data/{op}")), &cgroup))
        .collect();
    let bystander = Victim::start(VICTIM, "statfs", &at("data/bystander"), &cgroup);
    let pids = pid_list(&statfs);
    let path = at("data");
    let args = [
        "--pid",
        &pids,
        "--path",
        &path,
        "--statfs-backend",
        "tracepoint",
    ];
    let Some((report, (start_ns, end_ns))) = full(&args) else {
        return;
    };
    for victim in &statfs {
        victim.wait_for_call_after(end_ns);
    }
    let statfs_row = row(&report, "statfs");
    assert_eq!(statfs_row["mechanism"], "tracepoint", "{statfs_row}");
    assert_scoped_fault(
        &statfs.iter().collect::<Vec<_>>(),
        &bystander,
        libc::ENOSPC,
        (start_ns, end_ns),
        statfs_row,
    );
    assert_no_chaos_programs();
}

/// Bad input exits 2 naming the value, with nothing attached.
#[test]
fn full_bad_input_is_refused() {
    let me = std::process::id().to_string();
    assert_refused(
        &["disk", "full", "--pid", &me, "--path", "/no/such/dir"],
        &["/no/such/dir"],
    );
    assert_refused(&["disk", "full", "--path", "/tmp"], &["--pid"]);
    assert_refused(
        &[
            "disk",
            "full",
            "--pid",
            &me,
            "--path",
            "/tmp",
            "--probability",
            "2",
        ],
        &["2"],
    );
}

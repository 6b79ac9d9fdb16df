//! `chaos corrupt-io --op read`: the data a target's read() and pread64() return has bits
//! flipped, while the file and every other process's reads of it stay intact. Victims read a
//! file they wrote and compare; a difference is reported as EBADMSG. Both mechanisms: fexit
//! programs (chosen where trampolines load) and syscall tracepoints (`--backend tracepoint`).
//! Where the kernel cannot (no trampolines and no syscall tracepoints, bpf_probe_write_user
//! refused), the refusal is asserted with its reason.

use std::process::Output;

use chaos_common::features;
use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

/// Whether `output` is chaos refusing the fault for what this kernel lacks, as the probe says
/// (asserted, with the reason in the message).
fn refused(output: &Output) -> bool {
    if output.status.code() != Some(2) {
        return false;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("reads cannot be corrupted on this kernel"),
        "{stderr}"
    );
    let probe = Probe::run();
    let (tracepoints, _) = probe.feature(features::TRACEPOINT_SIGNAL);
    let (write_user, write_user_detail) = probe.feature(features::PROBE_WRITE_USER);
    let reason = if !tracepoints {
        assert!(!expected(features::TRACEPOINT_SIGNAL), "{stderr}");
        "CONFIG_FTRACE_SYSCALLS".to_owned()
    } else {
        assert!(!write_user, "refused although both work here: {stderr}");
        assert!(!expected(features::PROBE_WRITE_USER), "{stderr}");
        write_user_detail
    };
    assert!(
        stderr.contains(&reason),
        "the refusal must name '{reason}': {stderr}"
    );
    eprintln!("chaos corrupt-io NOT INJECTED on this kernel, as the probe predicts: {reason}");
    assert_no_chaos_programs();
    true
}

/// Runs `chaos corrupt-io ARGS --for 2s --json`: the report and the run's window, or `None`
/// where the kernel cannot (asserted).
fn corrupt(args: &[&str]) -> Option<(serde_json::Value, (u64, u64))> {
    let mut full = vec!["corrupt-io"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--for", "2s", "--json"]);
    let start = monotonic_ns();
    let output = chaos(&full);
    let end = monotonic_ns();
    if refused(&output) {
        return None;
    }
    assert!(
        output.status.success(),
        "{full:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_report(&output);
    eprintln!("corrupt-io {args:?}: {}", report["faults"]);
    Some((report, (start, end)))
}

/// With `--path`, a target's read() and pread64() of a file below it come back with 3 bits
/// flipped while the run lasts (the report counts 3 bytes altered per read); the same target's
/// reads beside the path and an untargeted process reading the same file get the true data.
#[test]
fn reads_below_the_path_come_back_corrupted_for_the_target_alone() {
    let mount = TestMount::tmpfs("corrupt");
    let cgroup = TestCgroup::new("corrupt-io");
    let at = |sub: &str| mount.path.join(sub).to_str().unwrap().to_owned();
    let targets: Vec<Victim> = ["pread-data", "read-data", "readv-data", "preadv-data"]
        .iter()
        .map(|op| Victim::start(VICTIM, op, &at(&format!("data/{op}")), &cgroup))
        .collect();
    let beside = Victim::start(VICTIM, "pread-data", &at("other"), &cgroup);
    let bystander = Victim::start(VICTIM, "pread-data", &at("data/pread-data"), &cgroup);
    let pids = pid_list(targets.iter().chain([&beside]));
    let path = at("data");
    let Some((report, window)) = corrupt(&["--pid", &pids, "--path", &path, "--bits", "3"]) else {
        return;
    };
    let fexit = Probe::run().feature(features::TRAMPOLINE).0;
    let auto = if fexit { "fexit" } else { "tracepoint" };
    assert_eq!(report["faults"][0]["mechanism"], auto, "{report}");
    for victim in &targets {
        victim.wait_for_call_after(window.1);
    }
    // The tracepoints cover read() and pread64() only.
    let (targets, uncovered) = targets.split_at(if fexit { 4 } else { 2 });
    assert!(
        uncovered
            .iter()
            .all(|victim| victim.calls().iter().all(|call| call.errno.is_none())),
        "a readv() was corrupted through the tracepoints"
    );
    let row = &report["faults"][0];
    assert_eq!(row["kind"], "rewrite", "{row}");
    assert_eq!(row["op"], "read", "{row}");
    assert_eq!(row["setting"], "3 bits flipped", "{row}");
    assert_scoped_fault(
        &targets.iter().collect::<Vec<_>>(),
        &bystander,
        libc::EBADMSG,
        window,
        row,
    );
    assert_eq!(
        row["altered_bytes"].as_u64(),
        row["injected"].as_u64().map(|reads| reads * 3),
        "{row}"
    );
    assert!(
        beside.calls().iter().all(|call| call.errno.is_none()),
        "a read beside the path was corrupted"
    );
    assert_no_chaos_programs();
}

/// Through the syscall tracepoints, without `--path`, with `--probability 0.5`: some of the
/// target's reads are corrupted and some are not, and the report counts exactly those the
/// target saw corrupted.
#[test]
fn a_probability_corrupts_some_reads() {
    let mount = TestMount::tmpfs("corrupt-some");
    let cgroup = TestCgroup::new("corrupt-some");
    let dir = mount.path.join("data").to_str().unwrap().to_owned();
    let target = Victim::start(VICTIM, "read-data", &dir, &cgroup);
    let bystander = Victim::start(VICTIM, "read-data", &dir, &cgroup);
    let pid = target.pid().to_string();
    let args = [
        "--pid",
        &pid,
        "--probability",
        "0.5",
        "--backend",
        "tracepoint",
    ];
    let Some((report, window)) = corrupt(&args) else {
        return;
    };
    target.wait_for_call_after(window.1);
    let row = &report["faults"][0];
    assert_eq!(row["mechanism"], "tracepoint", "{row}");
    let (matched, injected) = (
        row["matched"].as_u64().unwrap(),
        row["injected"].as_u64().unwrap(),
    );
    let corrupted = target
        .calls()
        .iter()
        .filter(|call| call.errno == Some(libc::EBADMSG))
        .count() as u64;
    assert!(
        injected > 0 && injected < matched && corrupted == injected,
        "{corrupted} reads seen corrupted: {row}"
    );
    assert_eq!(row["altered_bytes"].as_u64(), Some(injected), "{row}");
    assert!(
        bystander.calls().iter().all(|call| call.errno.is_none()),
        "the bystander's reads were corrupted"
    );
    assert_no_chaos_programs();
}

/// `--short`: the target's readv() and preadv() return fewer bytes than asked while the run
/// lasts (the report counts the bytes cut), their iovecs come back as the target set them, the
/// data they return is true, and an untargeted process reading a file of its own by readv()
/// gets it whole. Refused where trampolines do not load, naming why.
#[test]
fn short_reads_for_the_target_alone() {
    let mount = TestMount::tmpfs("corrupt-short");
    let cgroup = TestCgroup::new("corrupt-short");
    // A file each: a victim writes its file as it starts, which a reader of the same file could
    // catch half written (a short read before the run).
    let at = |sub: &str| mount.path.join(sub).to_str().unwrap().to_owned();
    let targets: Vec<Victim> = ["readv-data", "preadv-data"]
        .iter()
        .map(|op| Victim::start(VICTIM, op, &at(op), &cgroup))
        .collect();
    let bystander = Victim::start(VICTIM, "readv-data", &at("bystander"), &cgroup);
    let pids = pid_list(&targets);
    let args = [
        "corrupt-io",
        "--pid",
        &pids,
        "--short",
        "--for",
        "2s",
        "--json",
    ];
    let start = monotonic_ns();
    let output = chaos(&args);
    let end = monotonic_ns();
    if output.status.code() == Some(2) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let probe = Probe::run();
        let (trampolines, trampoline_detail) = probe.feature(features::TRAMPOLINE);
        let (write_user, write_user_detail) = probe.feature(features::PROBE_WRITE_USER);
        assert!(!(trampolines && write_user), "refused: {stderr}");
        let reason = if trampolines {
            assert!(!expected(features::PROBE_WRITE_USER), "{stderr}");
            write_user_detail
        } else {
            assert!(!expected(features::TRAMPOLINE), "{stderr}");
            trampoline_detail
        };
        assert!(stderr.contains(&reason), "must name '{reason}': {stderr}");
        eprintln!("chaos corrupt-io --short NOT INJECTED here, as the probe predicts: {reason}");
        assert_no_chaos_programs();
        return;
    }
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_report(&output);
    let row = &report["faults"][0];
    eprintln!("corrupt-io --short: {row}");
    assert_eq!(row["setting"], "short reads", "{row}");
    assert_eq!(row["mechanism"], "fentry", "{row}");
    for victim in &targets {
        victim.wait_for_call_after(end);
    }
    // ENODATA: fewer bytes than asked; EFAULT (iovecs not restored) or EBADMSG (wrong data)
    // fail this as a wrong errno.
    assert_scoped_fault(
        &targets.iter().collect::<Vec<_>>(),
        &bystander,
        libc::ENODATA,
        (start, end),
        row,
    );
    let (injected, cut) = (
        row["injected"].as_u64().unwrap(),
        row["altered_bytes"].as_u64().unwrap(),
    );
    // Each call keeps 1 to 10 of its 11 bytes.
    assert!(
        injected > 0 && (injected..=10 * injected).contains(&cut),
        "{row}"
    );
    assert_no_chaos_programs();
}

/// Bad input exits 2 naming the value, with nothing attached.
#[test]
fn corrupt_io_bad_input_is_refused() {
    let me = std::process::id().to_string();
    for (bad, named) in [
        (["--bits", "0"], "0"),
        (["--bits", "65"], "65"),
        (["--op", "write"], "write"),
        (["--path", "/no/such/file"], "/no/such/file"),
        (["--backend", "frob"], "frob"),
        (["--short", "--bits=2"], "--bits"),
    ] {
        let mut args = vec!["corrupt-io", "--pid", &me];
        args.extend(bad);
        assert_refused(&args, &[named]);
    }
    assert_refused(&["corrupt-io", "--bits", "2"], &["--pid"]);
    assert_refused(
        &[
            "corrupt-io",
            "--pid",
            &me,
            "--short",
            "--backend",
            "tracepoint",
        ],
        &["--short", "trampolines"],
    );
}

//! Who is a target: several PIDs, a process tree (children forked after the run started), a
//! cgroup (processes that join later too), a command name. Every test keeps a bystander.

use std::{process::Command, thread, time::Duration};

use chaos_common::features;
use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

fn failures(victim: &Victim) -> usize {
    victim
        .calls()
        .iter()
        .filter(|call| call.errno.is_some())
        .count()
}

/// Runs `chaos fail ARGS --op connect --errno ECONNRESET --for 2s --json`; returns the report and
/// the run's window.
fn fail_connect(target_args: &[&str]) -> (serde_json::Value, (u64, u64)) {
    let mut args = vec!["fail"];
    args.extend_from_slice(target_args);
    args.extend_from_slice(&[
        "--op",
        "connect",
        "--errno",
        "ECONNRESET",
        "--for",
        "2s",
        "--json",
    ]);
    let ran = run_chaos(&args);
    (ran.report, ran.window)
}

#[test]
fn several_pids_are_all_targets() {
    let bed = ConnectBed::new(VICTIM, "pids");
    let (a, b) = (bed.victim(), bed.victim());
    let bystander = bed.victim();
    let (pid_a, pid_b) = (a.pid().to_string(), b.pid().to_string());
    let (report, (_, end)) = fail_connect(&["--pid", &pid_a, "--pid", &pid_b]);
    a.wait_for_call_after(end);
    b.wait_for_call_after(end);
    assert!(
        failures(&a) > 0 && failures(&b) > 0,
        "both PIDs must fail: {report}"
    );
    assert_eq!(
        report["faults"][0]["injected"].as_u64().unwrap() as usize,
        failures(&a) + failures(&b)
    );
    assert_eq!(failures(&bystander), 0, "the bystander was hit");
    // Per-target counters: each process's own failures.
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for (target, victim) in targets.iter().zip([&a, &b]) {
        assert_eq!(target["pid"], victim.pid());
        assert_eq!(
            target["injected"].as_u64().unwrap() as usize,
            failures(victim),
            "{target}"
        );
        assert_eq!(target["matched"], target["injected"]);
    }
    assert_no_chaos_programs();
}

#[test]
fn a_pid_tree_covers_children_forked_after_the_run_started() {
    let bed = ConnectBed::new(VICTIM, "tree");
    let bystander = bed.victim();
    // A shell that forks a victim (a child, not an exec) once the flag file exists, which the
    // test creates only after chaos has attached.
    let flag = std::env::temp_dir().join(format!("chaos-tree-flag-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let mut shell = Command::new("sh");
    shell.args([
        "-c",
        "while [ ! -e \"$2\" ]; do sleep 0.05; done; \"$0\" connect \"$1\"; true",
    ]);
    shell.args([VICTIM, &bed.address, flag.to_str().unwrap()]);
    let family = Victim::spawn(shell, false, Some(&bed.cgroup));
    let root = family.pid().to_string();
    let chaos = Chaos::spawn_live(&mut chaos_command(&[
        "fail",
        "--pid-tree",
        &root,
        "--op",
        "connect",
        "--errno",
        "ECONNRESET",
        "--for",
        "10m",
        "--json",
    ]));
    std::fs::write(&flag, b"").expect("create the flag");
    family.wait_for_failure();
    thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(chaos.id() as i32, libc::SIGINT) };
    let output = chaos.wait_with_output().expect("chaos");
    let end = monotonic_ns();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    family.wait_for_call_after(end);
    let report = json_report(&output);
    assert_eq!(
        report["faults"][0]["injected"].as_u64().unwrap() as usize,
        failures(&family),
        "{report}"
    );
    assert!(
        family
            .calls()
            .iter()
            .any(|c| c.at_ns > end && c.errno.is_none()),
        "the child did not recover"
    );
    assert_eq!(failures(&bystander), 0, "the bystander was hit");
    assert_eq!(report["targets"][0]["tree"], true);
    assert_eq!(
        report["targets"][0]["injected"].as_u64().unwrap() as usize,
        failures(&family),
        "a tree's descendants count under its root"
    );
    let _ = std::fs::remove_file(&flag);
    assert_no_chaos_programs();
}

/// A tree's descendants that exist before the run are targets too: a shell whose victim child
/// (a fork, not an exec) already runs when chaos starts.
#[test]
fn a_pid_tree_covers_children_that_already_run() {
    let bed = ConnectBed::new(VICTIM, "tree-existing");
    let bystander = bed.victim();
    let mut shell = Command::new("sh");
    shell.args(["-c", "\"$0\" connect \"$1\"; true", VICTIM, &bed.address]);
    let family = Victim::spawn(shell, false, Some(&bed.cgroup));
    family.wait_for_calls(1);
    let root = family.pid().to_string();
    let (report, (_, end)) = fail_connect(&["--pid-tree", &root]);
    family.wait_for_call_after(end);
    assert!(
        failures(&family) > 0,
        "the running child was not a target: {report}"
    );
    assert_eq!(
        report["faults"][0]["injected"].as_u64().unwrap() as usize,
        failures(&family),
        "{report}"
    );
    assert_eq!(failures(&bystander), 0, "the bystander was hit");
    assert_no_chaos_programs();
}

#[test]
fn a_cgroup_target_covers_its_processes_and_no_sibling() {
    let address = tcp_server("127.0.0.1:0");
    let targeted = TestCgroup::new("cg-target");
    let sibling = TestCgroup::new("cg-sibling");
    let early = Victim::start(VICTIM, "connect", &address, &targeted);
    let bystander = Victim::start(VICTIM, "connect", &address, &sibling);
    let path = targeted.path.to_str().unwrap().to_owned();
    let chaos = spawn_chaos(&[
        "fail",
        "--cgroup",
        &path,
        "--op",
        "connect",
        "--errno",
        "ECONNRESET",
        "--for",
        "10m",
        "--json",
    ]);
    // A process that joins the cgroup while the run lasts is a target too.
    early.wait_for_failure();
    let late = Victim::start(VICTIM, "connect", &address, &targeted);
    late.wait_for_failure();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(chaos.id() as i32, libc::SIGINT) };
    let output = chaos.wait_with_output().expect("chaos");
    let end = monotonic_ns();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    early.wait_for_call_after(end);
    late.wait_for_call_after(end);
    let report = json_report(&output);
    assert!(
        failures(&late) > 0,
        "a process that joined later was not a target: {report}"
    );
    assert_eq!(
        report["faults"][0]["injected"].as_u64().unwrap() as usize,
        failures(&early) + failures(&late)
    );
    assert_eq!(failures(&bystander), 0, "the sibling cgroup was hit");
    assert_no_chaos_programs();
}

#[test]
fn a_comm_target_takes_the_processes_of_that_name() {
    let bed = ConnectBed::new(VICTIM, "comm");
    let link = std::env::temp_dir().join(format!("vcomm{}", std::process::id() % 100_000));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(VICTIM, &link).expect("symlink");
    let named = Victim::start(link.to_str().unwrap(), "connect", &bed.address, &bed.cgroup);
    let bystander = bed.victim();
    let name = link.file_name().unwrap().to_str().unwrap().to_owned();
    let (report, (_, end)) = fail_connect(&["--comm", &name]);
    named.wait_for_call_after(end);
    assert!(failures(&named) > 0, "{report}");
    assert_eq!(failures(&bystander), 0, "the bystander was hit");
    let _ = std::fs::remove_file(&link);
    assert_no_chaos_programs();
}

#[test]
fn bad_targets_exit_2_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["--cgroup", "/sys/fs/cgroup/memory/nope"], "nope"),
        (&["--cgroup", "/proc"], "/proc"),
        (&["--cgroup", "/"], "root cgroup"),
        (&["--comm", "no-such-process-name"], "no-such-process-name"),
        (&["--pid", "1"], "refusing"),
    ];
    for (target, named) in cases {
        let mut args = vec!["fail"];
        args.extend_from_slice(target);
        args.extend_from_slice(&["--op", "connect", "--errno", "EIO", "--for", "1s"]);
        assert_refused(&args, &[named]);
    }
}

/// A container by ID prefix: its processes fail, also one started with `podman exec` while the
/// run is live; a second container from the same root does not. The run ends when the container
/// stops.
#[test]
fn a_container_and_its_later_processes_are_targets() {
    let target = TestContainer::start("target", VICTIM);
    let neighbour = TestContainer::start("neighbour", VICTIM);
    let early = target.exec_victim("socket", "-");
    let bystander = neighbour.exec_victim("socket", "-");
    let start = monotonic_ns();
    let chaos = spawn_chaos(&[
        "fail",
        "--container",
        &target.id[..12],
        "--op",
        "socket",
        "--errno",
        "EACCES",
        "--for",
        "10m",
        "--json",
    ]);
    // Ended by SIGINT once both victims failed: `podman exec` under TCG can take longer than
    // any fixed --for would allow.
    early.wait_for_failure();
    let later = target.exec_victim("socket", "-");
    later.wait_for_failure();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(chaos.id() as i32, libc::SIGINT) };
    let output = chaos.wait_with_output().expect("chaos");
    let end = monotonic_ns();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_report(&output);
    assert_eq!(report["targets"][0]["container"], target.id.as_str());
    assert_eq!(
        report["targets"][0]["injected"],
        report["faults"][0]["injected"]
    );
    early.wait_for_call_after(end);
    later.wait_for_call_after(end);
    bystander.wait_for_call_after(end);
    assert_scoped_fault(
        &[&early, &later],
        &bystander,
        libc::EACCES,
        (start, end),
        &report["faults"][0],
    );
    assert_no_chaos_programs();

    // The run ends when its container stops, long before --for.
    let chaos = spawn_chaos(&[
        "fail",
        "--container",
        &target.name,
        "--op",
        "socket",
        "--errno",
        "EACCES",
        "--for",
        "10m",
        "--json",
    ]);
    let later_failed = target.exec_victim("socket", "-");
    later_failed.wait_for_failure();
    target.remove();
    let output = chaos.wait_with_output().expect("chaos");
    assert!(output.status.success());
    assert_eq!(json_report(&output)["ended_by"], "target-exited");
    assert_no_chaos_programs();
}

#[test]
fn an_unknown_container_is_refused() {
    assert_refused(
        &[
            "fail",
            "--container",
            "no-such-container",
            "--op",
            "socket",
            "--errno",
            "EIO",
        ],
        &["no-such-container", "container ID"],
    );
}

/// Two runs at once on two targets in one cgroup do not interfere: each target fails with its
/// own run's errno only.
#[test]
fn runs_at_once_keep_to_their_own_targets() {
    let bed = ConnectBed::new(VICTIM, "concurrent");
    let (a, b) = (bed.victim(), bed.victim());
    let bystander = bed.victim();
    let run_a = connect_fault(a.pid(), "ECONNRESET", "auto");
    let run_b = connect_fault(b.pid(), "ETIMEDOUT", "auto");
    let both_live = monotonic_ns();
    a.wait_for_call_after(both_live + 200_000_000);
    b.wait_for_call_after(both_live + 200_000_000);
    assert_eq!(
        errnos(&a, 0),
        [libc::ECONNRESET],
        "target A got another run's errno"
    );
    assert_eq!(
        errnos(&b, 0),
        [libc::ETIMEDOUT],
        "target B got another run's errno"
    );
    assert!(stop(run_a)["faults"][0]["injected"].as_u64().unwrap() > 0);
    assert!(stop(run_b)["faults"][0]["injected"].as_u64().unwrap() > 0);
    assert!(
        bystander.calls().iter().all(|c| c.errno.is_none()),
        "the bystander was hit"
    );
    assert_no_chaos_programs();
}

/// Runs on one target that cover the same call stack up: the run attached last sets the errno
/// while it lasts, and the one under it takes over again when it ends (README documents it).
/// Checked for each mechanism that can fail connect() here, since each orders its programs in
/// its own way: cgroup programs run oldest first (each sets the errno, the last one stands),
/// LSM and fmod_ret trampolines newest first (the first denial ends the call).
#[test]
fn the_run_attached_last_sets_the_errno() {
    let probe = Probe::run();
    let trampolines = probe.feature(features::TRAMPOLINE).0;
    let mechanisms = [
        ("cgroup", probe.feature(features::CGROUP_SOCK_ADDR)),
        (
            "lsm",
            (
                trampolines && probe.feature(features::BPF_LSM).0,
                String::new(),
            ),
        ),
        (
            "fmod_ret",
            (
                trampolines && probe.feature(features::FMOD_RET).0,
                String::new(),
            ),
        ),
    ];
    for (mechanism, (supported, detail)) in mechanisms {
        if !supported {
            eprintln!(
                "--backend {mechanism}: NOT TESTED here, the probe says it cannot run {detail}"
            );
            continue;
        }
        let bed = ConnectBed::new(VICTIM, &format!("stacked-{mechanism}"));
        let (target, bystander) = (bed.victim(), bed.victim());
        let under = connect_fault(target.pid(), "ECONNRESET", mechanism);
        let over = connect_fault(target.pid(), "EHOSTUNREACH", mechanism);
        let over_live = monotonic_ns();
        target.wait_for_call_after(over_live + 200_000_000);
        // The later run detaches before stop() returns: the stacked window ends at the request.
        let over_stopping = monotonic_ns();
        let over_report = stop(over);
        let over_gone = monotonic_ns();
        target.wait_for_call_after(over_gone + 200_000_000);
        let under_report = stop(under);
        let seen_while_stacked: Vec<i32> = target
            .calls()
            .iter()
            .filter(|c| (over_live..over_stopping).contains(&c.at_ns))
            .filter_map(|c| c.errno)
            .collect();
        assert!(
            !seen_while_stacked.is_empty()
                && seen_while_stacked.iter().all(|&e| e == libc::EHOSTUNREACH),
            "--backend {mechanism}: the later run's errno must stand while it lasts: {seen_while_stacked:?}"
        );
        assert_eq!(
            errnos(&target, over_gone + 50_000_000),
            [libc::ECONNRESET],
            "--backend {mechanism}: the earlier run takes over when the later one ends"
        );
        assert!(over_report["faults"][0]["injected"].as_u64().unwrap() > 0);
        assert!(under_report["faults"][0]["injected"].as_u64().unwrap() > 0);
        assert!(
            bystander.calls().iter().all(|c| c.errno.is_none()),
            "--backend {mechanism}: the bystander was hit"
        );
        assert_no_chaos_programs();
    }
}

/// A connect fault on `pid` with `errno` through `backend`, returned once it is attached.
fn connect_fault(pid: u32, errno: &str, backend: &str) -> Chaos {
    let pid = pid.to_string();
    Chaos::spawn_live(&mut chaos_command(&[
        "fail",
        "--pid",
        &pid,
        "--op",
        "connect",
        "--errno",
        errno,
        "--backend",
        backend,
        "--for",
        "10m",
        "--json",
    ]))
}

/// Ends a run as Ctrl-C would and returns its report.
fn stop(chaos: Chaos) -> serde_json::Value {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(chaos.id() as i32, libc::SIGINT) };
    let output = chaos.wait_with_output().expect("chaos");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_report(&output)
}

/// The distinct errnos of `victim`'s calls made after `after_ns`.
fn errnos(victim: &Victim, after_ns: u64) -> Vec<i32> {
    let mut seen: Vec<i32> = victim
        .calls()
        .iter()
        .filter(|c| c.at_ns >= after_ns)
        .filter_map(|c| c.errno)
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

//! `chaos fail --op connect`: cgroup sock_addr programs where they can set the errno (5.18),
//! else the LSM hook, which the planner picks.

use std::{thread, time::Duration};

use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

fn fault_for_a_while(listen: &str, name: &str) {
    let address = tcp_server(listen);
    let cgroup = TestCgroup::new(name);
    let target = Victim::start(VICTIM, "connect", &address, &cgroup);
    let bystander = Victim::start(VICTIM, "connect", &address, &cgroup);

    let pid = target.pid().to_string();
    let Ran { report, window, .. } = run_chaos(&[
        "fail",
        "--pid",
        &pid,
        "--op",
        "connect",
        "--errno",
        "ECONNREFUSED",
        "--for",
        "2s",
        "--json",
    ]);
    target.wait_for_call_after(window.1);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(report["ended_by"], "deadline");
    let fault = &report["faults"][0];
    assert_eq!(fault["kind"], "errno");
    assert_eq!(fault["op"], "connect");
    assert_scoped_fault(&[&target], &bystander, libc::ECONNREFUSED, window, fault);
    assert_no_chaos_programs();
}

#[test]
fn connect_ipv4_fails_only_for_the_target_and_only_during_the_run() {
    fault_for_a_while("127.0.0.1:0", "connect4");
}

#[test]
fn connect_ipv6_fails_only_for_the_target_and_only_during_the_run() {
    fault_for_a_while("[::1]:0", "connect6");
}

#[test]
fn ctrl_c_ends_the_run_early_with_the_same_report() {
    let bed = ConnectBed::new(VICTIM, "sigint");
    let target = bed.victim();
    let bystander = bed.victim();

    let pid = target.pid().to_string();
    let Ran { report, window, .. } = run_chaos_until_failed(&timeout_args(&pid), &[&target]);
    target.wait_for_call_after(window.1);
    assert_scoped_fault(
        &[&target],
        &bystander,
        libc::ETIMEDOUT,
        window,
        &report["faults"][0],
    );
    assert_no_chaos_programs();
}

#[test]
fn the_run_ends_when_the_target_exits() {
    let bed = ConnectBed::new(VICTIM, "exit");
    let mut target = bed.victim();
    let pid = target.pid().to_string();
    let chaos = spawn_chaos(&[
        "fail", "--pid", &pid, "--op", "connect", "--errno", "EIO", "--for", "10m", "--json",
    ]);
    target.wait_for_failure();
    drop(std::mem::replace(&mut target, bed.victim()));
    let output = chaos.wait_with_output().expect("wait for chaos");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json_report(&output)["ended_by"], "target-exited");
    assert!(
        target.calls().iter().all(|call| call.errno.is_none()),
        "a new process was hit"
    );
    assert_no_chaos_programs();
}

#[test]
fn dry_run_counts_but_fails_nothing() {
    let bed = ConnectBed::new(VICTIM, "dry");
    let target = bed.victim();
    let pid = target.pid().to_string();
    let before = target.calls().len();
    let output = chaos(&[
        "fail",
        "--pid",
        &pid,
        "--op",
        "connect",
        "--errno",
        "EIO",
        "--for",
        "1s",
        "--dry-run",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fault = &json_report(&output)["faults"][0];
    assert!(
        fault["matched"].as_u64().unwrap() > 0,
        "nothing matched: {fault}"
    );
    assert_eq!(fault["injected"], 0);
    assert!(target.calls().len() > before);
    assert!(
        target.calls().iter().all(|call| call.errno.is_none()),
        "a dry run failed a call"
    );
}

/// Two targets connect, to `matching` and to `other`; a bystander connects to `matching`. A fault
/// with `filter` (plus `extra` flags) must fail only the first target's connects. `false` when
/// chaos refused for lack of BPF LSM (asserted with the probe's reason).
fn filtered_connect(filter: &[&str], matching: &str, other: &str, extra: &[&str]) -> bool {
    let cgroup = TestCgroup::new("filter");
    let to_matching = Victim::start(VICTIM, "connect", matching, &cgroup);
    let to_other = Victim::start(VICTIM, "connect", other, &cgroup);
    let bystander = Victim::start(VICTIM, "connect", matching, &cgroup);
    let (a, b) = (to_matching.pid().to_string(), to_other.pid().to_string());
    let mut args = vec!["fail", "--pid", &a, "--pid", &b, "--op", "connect"];
    args.extend_from_slice(filter);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--errno", "ECONNREFUSED", "--for", "2s", "--json"]);
    let start_ns = monotonic_ns();
    let output = chaos(&args);
    let end_ns = monotonic_ns();
    if refused_for_lack_of_lsm(&output, &format!("{args:?}")) {
        return false;
    }
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    to_matching.wait_for_call_after(end_ns);
    let report = json_report(&output);
    assert_scoped_fault(
        &[&to_matching],
        &bystander,
        libc::ECONNREFUSED,
        (start_ns, end_ns),
        &report["faults"][0],
    );
    assert!(
        to_other.calls().iter().all(|call| call.errno.is_none()),
        "{args:?}: a connect the filter excludes failed"
    );
    assert_no_chaos_programs();
    true
}

#[test]
fn a_port_filter_fails_only_connects_to_that_port() {
    let (database, other) = (tcp_server("127.0.0.1:0"), tcp_server("127.0.0.1:0"));
    let port = database.rsplit(':').next().unwrap();
    assert!(filtered_connect(&["--port", port], &database, &other, &[]));
    // The LSM program reads the port from the caller's sockaddr (where LSM works).
    filtered_connect(&["--port", port], &database, &other, &["--backend", "lsm"]);
}

#[test]
fn an_address_filter_fails_only_connects_into_that_network() {
    // The whole of 127.0.0.0/8 is local: two servers, two addresses.
    let (database, other) = (tcp_server("127.0.0.2:0"), tcp_server("127.0.0.1:0"));
    assert!(filtered_connect(
        &["--addr", "127.0.0.2/32"],
        &database,
        &other,
        &[]
    ));
    assert!(filtered_connect(
        &["--addr", "127.0.0.0/31"],
        &other,
        &database,
        &[]
    ));
    filtered_connect(
        &["--addr", "127.0.0.2"],
        &database,
        &other,
        &["--backend", "lsm"],
    );
}

#[test]
fn a_unix_family_filter_fails_only_unix_connects() {
    let (unix, tcp) = (unix_server(), tcp_server("127.0.0.1:0"));
    let injected = filtered_connect(&["--family", "unix"], &unix, &tcp, &[]);
    eprintln!("--family unix injected: {injected}");
    let _ = std::fs::remove_file(&unix);
}

#[test]
fn an_address_filter_on_a_file_op_is_refused() {
    let args = [
        "fail", "--pid", "2", "--op", "open", "--port", "80", "--errno", "EIO",
    ];
    assert_refused(&args, &["--port", "--op open"]);
    let args = [
        "fail",
        "--pid",
        "2",
        "--op",
        "connect",
        "--addr",
        "10.0.0.0/33",
        "--errno",
        "EIO",
    ];
    assert_refused(&args, &["10.0.0.0/33"]);
    let args = [
        "fail",
        "--pid",
        "2",
        "--op",
        "connect",
        "--family",
        "unix",
        "--backend",
        "cgroup",
        "--errno",
        "EIO",
    ];
    assert_refused(&args, &["--family unix", "lsm"]);
}

/// Where cgroup programs cannot set the errno (kernels before 5.18, without `bpf_set_retval`),
/// a cgroup fault that asks for another errno is refused, naming what would do; with
/// `--accept-eperm` it fails the target's calls with EPERM and the report says EPERM. Where
/// they can, `--accept-eperm` changes nothing.
#[test]
fn cgroup_hooks_fail_with_eperm_where_they_cannot_set_the_errno() {
    let (set_retval, detail) = Probe::run().feature(chaos_common::features::CGROUP_SOCK_ADDR);
    let bed = ConnectBed::new(VICTIM, "eperm");
    let (target, bystander) = (bed.victim(), bed.victim());
    let pid = target.pid().to_string();
    let args = [
        "fail",
        "--pid",
        &pid,
        "--op",
        "connect",
        "--backend",
        "cgroup",
        "--errno",
        "ECONNREFUSED",
    ];
    if !set_retval {
        assert!(
            !expected(chaos_common::features::CGROUP_SOCK_ADDR),
            "cgroup programs must set the errno on this kernel: {detail}"
        );
        let mut refused = args.to_vec();
        refused.extend_from_slice(&["--for", "1s"]);
        assert_refused(&refused, &["only with EPERM", "--accept-eperm", "5.18"]);
        eprintln!(
            "--errno ECONNREFUSED through cgroup hooks refused, as the probe predicts: {detail}"
        );
    }
    let mut accepted = args.to_vec();
    accepted.push("--accept-eperm");
    let Ran { report, window, .. } = run_chaos_until_failed(&accepted, &[&target]);
    let (errno, name) = if set_retval {
        (libc::ECONNREFUSED, "ECONNREFUSED")
    } else {
        (libc::EPERM, "EPERM")
    };
    target.wait_for_call_after(window.1);
    let fault = &report["faults"][0];
    assert_eq!(fault["mechanism"], "cgroup", "{fault}");
    assert_eq!(fault["errno"], name, "{fault}");
    assert_scoped_fault(&[&target], &bystander, errno, window, fault);
    assert_no_chaos_programs();
}

/// A connect fault on `pid`.
fn timeout_args(pid: &str) -> [&str; 7] {
    [
        "fail",
        "--pid",
        pid,
        "--op",
        "connect",
        "--errno",
        "ETIMEDOUT",
    ]
}

#[test]
fn with_chaos_idle_the_next_run_takes_the_programs_verified_ahead() {
    let bed = ConnectBed::new(VICTIM, "spare");
    let (first_target, target, bystander) = (bed.victim(), bed.victim(), bed.victim());
    let (idle, keeper) = start_idle();

    let first_pid = first_target.pid().to_string();
    let first = run_chaos_until_failed(&timeout_args(&first_pid), &[&first_target]);
    assert!(
        first.report.get("spare_programs").is_none(),
        "{}",
        first.report
    );
    if !spareable("connect") {
        assert_eq!(spares_in(&keeper), 0, "a spare of fmod_ret programs");
        println!(
            "NOT RUN here: connect loads as fmod_ret, which no spare holds; host and the cgroup guests run it"
        );
        return;
    }
    // Its spare: the same programs, loaded once more and attached nowhere.
    assert_eq!(spares_in(&keeper), 1, "the first run left no spare");
    for &hook in hooks_in_use("connect") {
        assert_eq!(loaded_count(hook), 1, "{} as a spare", hook.program());
    }

    // A run of the same fault on another process takes it.
    let pid = target.pid().to_string();
    let Ran { report, window, .. } = run_chaos_until_failed(&timeout_args(&pid), &[&target]);
    assert_eq!(report["spare_programs"], true, "{report}");
    target.wait_for_call_after(window.1);
    assert_scoped_fault(
        &[&target],
        &bystander,
        libc::ETIMEDOUT,
        window,
        &report["faults"][0],
    );
    // The second run left one in its place, which idle takes with it as it ends.
    assert_eq!(spares_in(&keeper), 1);
    stop_idle(idle, &keeper);
    assert_no_chaos_programs();
}

#[test]
fn the_spares_of_a_killed_chaos_idle_go_with_the_next_chaos_command() {
    let bed = ConnectBed::new(VICTIM, "spare-kill");
    let target = bed.victim();
    let (mut idle, keeper) = start_idle();
    let pid = target.pid().to_string();
    run_chaos_until_failed(
        &["fail", "--pid", &pid, "--op", "connect", "--errno", "EIO"],
        &[&target],
    );
    let spares = spares_in(&keeper);
    assert_eq!(spares, usize::from(spareable("connect")));
    idle.kill().expect("SIGKILL chaos idle");
    idle.wait().expect("wait for chaos idle");
    assert!(keeper.exists(), "nothing to clean up");

    let output = chaos(&["cleanup", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let cleaned = json_report(&output);
    assert_eq!(
        cleaned["spares"],
        serde_json::json!([keeper.display().to_string()]),
        "{cleaned}"
    );
    assert!(!keeper.exists());
    assert_no_chaos_programs();
}

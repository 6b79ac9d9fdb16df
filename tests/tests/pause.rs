//! `chaos pause`: a process, a cgroup (with the processes that join it meanwhile) and a
//! container hang while the run lasts and run again after it, periodically with --every/--duty;
//! their peers see timeouts, not errors; a bystander never stops; SIGKILL of chaos still thaws
//! (its guard); bad input changes nothing.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use chaos_tests::*;
use serde_json::Value;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

/// The longest time between two consecutive calls of `victim` inside `window`, and when it began;
/// once the victim has reported a call after the window (a container's lines come late through
/// podman), so that a stop that lasted to the window's end counts.
fn longest_gap(victim: &Victim, (from, to): (u64, u64)) -> (u64, u64) {
    victim.wait_for_call_after(to);
    let calls = victim.calls();
    calls
        .windows(2)
        .filter(|pair| pair[1].at_ns >= from && pair[0].at_ns <= to)
        .map(|pair| (pair[1].at_ns - pair[0].at_ns, pair[0].at_ns))
        .max()
        .unwrap_or_default()
}

/// Runs `chaos pause ARGS --json` to its end: its report and the window around it.
fn pause(args: &[&str]) -> Ran {
    let mut all = vec!["pause"];
    all.extend_from_slice(args);
    all.push("--json");
    run_chaos(&all)
}

/// Starts `chaos pause --cgroup CGROUP --for DURATION --json`; returns once the cgroup is frozen.
fn frozen(cgroup: &TestCgroup, duration: &str) -> Chaos {
    let path = cgroup.path.to_str().unwrap();
    Chaos::spawn_live(&mut chaos_command(&[
        "pause", "--cgroup", path, "--for", duration, "--json",
    ]))
}

/// The time `victim` stood still inside `window`: the sum of its gaps between calls longer than
/// 100 ms (it calls every 20 ms while it runs).
fn stopped_ns(victim: &Victim, (from, to): (u64, u64)) -> u64 {
    victim.wait_for_call_after(to);
    victim
        .calls()
        .windows(2)
        .filter(|pair| pair[1].at_ns >= from && pair[0].at_ns <= to)
        .map(|pair| pair[1].at_ns - pair[0].at_ns)
        .filter(|gap| *gap > 100_000_000)
        .sum()
}

/// The bystander ran on while the target was frozen: it stood still for less than half as long
/// (an emulated guest under load stalls every process for a moment, both alike, so no absolute
/// bound holds there), it failed nothing and nor did the target.
fn assert_thawed_and_untouched(target: &Victim, bystander: &Victim, window: (u64, u64)) {
    let frozen = stopped_ns(target, window);
    let stopped = stopped_ns(bystander, window);
    assert!(
        stopped * 2 < frozen,
        "the bystander stood still for {} ms while the target was frozen for {} ms",
        stopped / 1_000_000,
        frozen / 1_000_000
    );
    assert!(bystander.calls().iter().all(|c| c.errno.is_none()));
    assert!(
        target.calls().iter().all(|c| c.errno.is_none()),
        "a pause fails nothing"
    );
}

#[test]
fn a_process_hangs_then_runs_again() {
    let target = Victim::connecting(VICTIM, None);
    let bystander = Victim::connecting(VICTIM, None);
    let pid = target.pid().to_string();
    let ran = pause(&["--pid", &pid, "--for", "1500ms"]);
    let report = &ran.report;
    assert_eq!(report["faults"][0]["mechanism"], "sigstop", "{report}");
    assert_eq!(report["faults"][0]["kind"], "pause");
    assert_eq!(report["ended_by"], "deadline");
    assert!(report["frozen_ms"].as_u64().unwrap() >= 1400, "{report}");
    let (gap, _) = longest_gap(&target, ran.window);
    assert!(
        gap >= 1_400_000_000,
        "the target was not stopped for the run: its longest pause {} ms",
        gap / 1_000_000
    );
    assert_thawed_and_untouched(&target, &bystander, ran.window);
}

/// The cgroup v2 freezer: every process in the cgroup stops, a process that joins it meanwhile
/// too, and cgroup.events says so; at the end the cgroup is thawed.
#[test]
fn a_cgroup_freezes_with_its_joiners() {
    let cgroup = TestCgroup::new("pause");
    let target = Victim::connecting(VICTIM, Some(&cgroup));
    let bystander = Victim::connecting(VICTIM, None);
    let events = cgroup.path.join("cgroup.events");
    let chaos = frozen(&cgroup, "2s");
    let start = monotonic_ns();
    assert!(
        std::fs::read_to_string(&events)
            .unwrap()
            .contains("frozen 1"),
        "the cgroup is not frozen while the run is live"
    );
    // A process that joins the frozen cgroup freezes as it joins: its first call comes after.
    let joiner = {
        let address = tcp_server("127.0.0.1:0");
        let mut command = Command::new(VICTIM);
        command.args(["connect", &address]);
        Victim::spawn(command, false, Some(&cgroup))
    };
    let output = chaos.wait_with_output().expect("chaos");
    let end = monotonic_ns();
    let report = json_report(&output);
    assert_eq!(
        report["faults"][0]["mechanism"], "cgroup-freezer",
        "{report}"
    );
    assert!(
        std::fs::read_to_string(&events)
            .unwrap()
            .contains("frozen 0")
    );
    joiner.wait_for_calls(1);
    let first = joiner.calls()[0].at_ns;
    assert!(
        first > start + 500_000_000,
        "the joiner ran while its cgroup was frozen"
    );
    assert_thawed_and_untouched(&target, &bystander, (start, end));
}

/// --every/--duty: frozen for the duty's share of each period, as many times as periods fit.
#[test]
fn a_periodic_pause() {
    let target = Victim::connecting(VICTIM, None);
    let bystander = Victim::connecting(VICTIM, None);
    let pid = target.pid().to_string();
    let ran = pause(&[
        "--pid", &pid, "--for", "3s", "--every", "600ms", "--duty", "50",
    ]);
    let report = &ran.report;
    assert_eq!(report["faults"][0]["injected"], 5, "{report}");
    assert_eq!(report["faults"][0]["setting"], "50% of every 600ms");
    let frozen = report["frozen_ms"].as_u64().unwrap();
    assert!(
        (1400..=2000).contains(&frozen),
        "{frozen} ms frozen of 3 s at 50%"
    );
    // Between the freezes it ran: no stop lasted a whole period.
    let (gap, _) = longest_gap(&target, ran.window);
    assert!(
        (250_000_000..800_000_000).contains(&gap),
        "longest stop {} ms for 300 ms freezes",
        gap / 1_000_000
    );
    assert_thawed_and_untouched(&target, &bystander, ran.window);
}

/// SIGKILL of chaos mid-freeze: its guard, in a session of its own, thaws the cgroup.
#[test]
fn sigkill_of_chaos_still_thaws() {
    let cgroup = TestCgroup::new("pause-kill");
    let target = Victim::connecting(VICTIM, Some(&cgroup));
    let chaos = frozen(&cgroup, "10m");
    let freeze = cgroup.path.join("cgroup.freeze");
    assert_eq!(std::fs::read_to_string(&freeze).unwrap().trim(), "1");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(chaos.id() as i32, libc::SIGKILL) };
    let killed = monotonic_ns();
    drop(chaos);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&freeze).unwrap().trim() != "0" {
        assert!(
            Instant::now() < deadline,
            "still frozen 10 s after chaos was killed"
        );
        thread::sleep(Duration::from_millis(10));
    }
    target.wait_for_call_after(killed);
    let guards = Command::new("pgrep")
        .args(["-f", "pause-guard"])
        .output()
        .unwrap();
    assert!(guards.stdout.is_empty(), "a guard is left");
}

/// A frozen server's peers time out: the kernel accepts their connections, nobody answers.
#[test]
fn a_frozen_servers_peers_time_out() {
    let cgroup = TestCgroup::new("pause-server");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    let mut server = Command::new("python3");
    server.args(["-m", "http.server", "--bind", "127.0.0.1", &port]);
    join_before_exec(&mut server, &cgroup);
    let mut server = server
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    let url = format!("http://127.0.0.1:{port}/");
    let get = || {
        Command::new("curl")
            .args(["--silent", "--output", "/dev/null", "--max-time", "1", &url])
            .status()
            .unwrap()
            .code()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while get() != Some(0) {
        assert!(Instant::now() < deadline, "the server never answered");
        thread::sleep(Duration::from_millis(100));
    }
    let chaos = frozen(&cgroup, "10m");
    assert_eq!(get(), Some(28), "curl should time out (28), not fail");
    stop_chaos(chaos);
    assert_eq!(get(), Some(0), "the server answers again");
    let _ = server.kill();
    let _ = server.wait();
}

/// A container: its processes stop, a second container's do not.
#[test]
fn a_container_hangs_and_its_neighbour_does_not() {
    let target = TestContainer::start("pause-target", VICTIM);
    let neighbour = TestContainer::start("pause-neighbour", VICTIM);
    let victim = target.exec_victim("connect", "-");
    let sibling = neighbour.exec_victim("connect", "-");
    let ran = pause(&["--container", &target.name, "--for", "1500ms"]);
    assert_eq!(ran.report["faults"][0]["mechanism"], "cgroup-freezer");
    assert!(
        ran.report["targets"][0]["container"].is_string(),
        "{}",
        ran.report
    );
    let (gap, _) = longest_gap(&victim, ran.window);
    assert!(
        gap >= 1_400_000_000,
        "the container ran on (longest stop {} ms): {}",
        gap / 1_000_000,
        ran.report
    );
    assert_thawed_and_untouched(&victim, &sibling, ran.window);
}

/// Bad input: exit 2, a message naming the value, nothing frozen.
#[test]
fn bad_input_is_refused() {
    let target = Victim::connecting(VICTIM, None);
    let pid = target.pid().to_string();
    for (args, named) in [
        (vec!["--duty", "50"], "--every"),
        (vec!["--every", "1s"], "--duty"),
        (vec!["--every", "1s", "--duty", "100"], "100"),
        (vec!["--for", "soon"], "soon"),
    ] {
        let mut all = vec!["pause", "--pid", &pid];
        all.extend_from_slice(&args);
        let output = chaos(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state: Value = stat.rsplit_once(") ").unwrap().1[..1].into();
    assert_ne!(state, "T", "the target was stopped");
}

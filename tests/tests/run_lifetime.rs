//! Faults end: when the loader is killed with SIGKILL (the kernel drops its links), and at the
//! deadline even when the loader is stopped (the programs check the deadline themselves).

use std::{thread, time::Duration};

use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a child of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0, "kill {pid}");
}

#[test]
fn sigkill_of_the_loader_ends_the_fault() {
    let address = tcp_server("127.0.0.1:0");
    let cgroup = TestCgroup::new("sigkill");
    let target = Victim::start(VICTIM, "connect", &address, &cgroup);
    let pid = target.pid().to_string();
    let mut chaos = spawn_chaos(&[
        "fail",
        "--pid",
        &pid,
        "--op",
        "connect",
        "--errno",
        "ECONNRESET",
        "--for",
        "10m",
    ]);
    target.wait_for_failure();

    signal(chaos.id(), libc::SIGKILL);
    let _ = chaos.wait();
    let killed_ns = monotonic_ns();
    target.wait_for_call_after(killed_ns + 50_000_000);
    let calls = target.calls();
    let first_ok = calls
        .iter()
        .find(|call| call.at_ns > killed_ns && call.errno.is_none());
    let last_failure = calls
        .iter()
        .filter(|call| call.errno.is_some())
        .map(|call| call.at_ns)
        .max()
        .unwrap();
    eprintln!(
        "last failure {} ms after SIGKILL",
        (last_failure.saturating_sub(killed_ns)) / 1_000_000
    );
    assert!(
        first_ok.is_some(),
        "the target did not recover after the loader was killed"
    );
    assert!(
        calls
            .iter()
            .filter(|call| call.at_ns > killed_ns + 50_000_000)
            .all(|call| call.errno.is_none()),
        "the fault outlived its loader"
    );
    assert_no_chaos_programs();
}

#[test]
fn the_in_kernel_deadline_holds_while_the_loader_is_stopped() {
    let address = tcp_server("127.0.0.1:0");
    let cgroup = TestCgroup::new("sigstop");
    let target = Victim::start(VICTIM, "connect", &address, &cgroup);
    let bystander = Victim::start(VICTIM, "connect", &address, &cgroup);
    let pid = target.pid().to_string();
    let start_ns = monotonic_ns();
    let chaos = spawn_chaos(&[
        "fail",
        "--pid",
        &pid,
        "--op",
        "connect",
        "--errno",
        "EHOSTUNREACH",
        "--for",
        "2s",
        "--json",
    ]);
    target.wait_for_failure();
    signal(chaos.id(), libc::SIGSTOP);
    let stopped_ns = monotonic_ns();

    // The deadline is at most 2 s after the loader attached, which was after start_ns.
    let past_deadline_ns = start_ns.max(stopped_ns) + 2_000_000_000;
    while monotonic_ns() < past_deadline_ns + 200_000_000 {
        thread::sleep(Duration::from_millis(50));
    }
    target.wait_for_call_after(past_deadline_ns + 200_000_000);
    let late = target
        .calls()
        .into_iter()
        .filter(|call| call.at_ns > past_deadline_ns)
        .collect::<Vec<_>>();
    assert!(
        !late.is_empty() && late.iter().all(|call| call.errno.is_none()),
        "the fault outlived its deadline while the loader was stopped: {late:?}"
    );
    // The links are still there: the loader is stopped, not gone. The programs just stopped injecting.
    assert!(!loaded_program_names().is_empty());

    signal(chaos.id(), libc::SIGCONT);
    let output = chaos.wait_with_output().expect("wait for chaos");
    let end_ns = monotonic_ns();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target.wait_for_call_after(end_ns);
    let report = json_report(&output);
    assert_scoped_fault(
        &[&target],
        &bystander,
        libc::EHOSTUNREACH,
        (start_ns, end_ns),
        &report["faults"][0],
    );
    assert_no_chaos_programs();
}

#[test]
fn init_itself_and_parents_are_refused_without_force() {
    let me = std::process::id().to_string();
    for pid in ["1", me.as_str()] {
        let args = [
            "fail", "--pid", pid, "--op", "connect", "--errno", "EIO", "--for", "1s",
        ];
        assert_refused(&args, &["refusing", "--force"]);
    }
}

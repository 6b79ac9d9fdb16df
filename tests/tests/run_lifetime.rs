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
    let bed = ConnectBed::new(VICTIM, "sigkill");
    let target = bed.victim();
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
    let bed = ConnectBed::new(VICTIM, "sigstop");
    let target = bed.victim();
    let bystander = bed.victim();
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
    let late = target.calls_begun_after(past_deadline_ns);
    assert!(
        !late.is_empty() && late.iter().all(|call| call.errno.is_none()),
        "the fault outlived its deadline while the loader was stopped: {late:?}"
    );
    // The links are still there: the loader is stopped, not gone. The programs just stopped
    // injecting.
    assert!(
        hooks_in_use("connect").iter().all(|&hook| loaded(hook)),
        "the stopped run's programs must still be loaded: {:?}",
        loaded_chaos_programs()
    );

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

/// Starts `chaos fail --pid PID --op connect --errno ECONNRESET --for DURATION --detach`.
fn detach(pid: &str, duration: &str) -> Detached {
    start_detached(&[
        "fail",
        "--pid",
        pid,
        "--op",
        "connect",
        "--errno",
        "ECONNRESET",
        "--for",
        duration,
    ])
}

fn listed() -> serde_json::Value {
    json_report(&chaos(&["list", "--json"]))
}

/// A detached run ends at its in-kernel deadline with no chaos process alive, and the next
/// invocation unpins it.
#[test]
fn a_detached_run_expires_with_no_userspace_left() {
    let bed = ConnectBed::new(VICTIM, "detached");
    let target = bed.victim();
    let bystander = bed.victim();
    let run = detach(&target.pid().to_string(), "2s");
    target.wait_for_failure();
    let pins = std::path::Path::new("/sys/fs/bpf/chaos").join(&run.id);
    assert!(pins.is_dir(), "the run's links are not pinned");
    // Past the deadline, with no chaos process at all: the programs are still pinned, and the
    // target is no longer failed. (The run's deadline is the loader's clock right after
    // attaching; the kernel's was set just before, so it has passed by then.)
    target.wait_for_call_after(run.deadline_ns + 200_000_000);
    assert!(
        pins.is_dir(),
        "something unpinned the run before the next invocation"
    );
    let after = target.calls_begun_after(run.deadline_ns);
    assert!(
        !after.is_empty() && after.iter().all(|c| c.errno.is_none()),
        "the target still failed after the in-kernel deadline: {after:?}"
    );
    assert!(
        bystander.calls().iter().all(|c| c.errno.is_none()),
        "the bystander was hit"
    );
    // The next invocation unpins the expired run.
    assert_eq!(listed(), serde_json::json!([]));
    assert!(!pins.exists(), "the expired run is still pinned");
    assert_no_chaos_programs();
}

/// `chaos list` shows a live detached run with its counters; `chaos stop ID` ends it at once.
#[test]
fn chaos_stop_ends_a_detached_run_now() {
    let bed = ConnectBed::new(VICTIM, "stop");
    let target = bed.victim();
    let run = detach(&target.pid().to_string(), "10m");
    let id = run.id.clone();
    target.wait_for_failure();
    let runs = listed();
    assert_eq!(runs[0]["id"], id.as_str(), "{runs}");
    assert!(runs[0]["injected"].as_u64().unwrap() > 0, "{runs}");
    assert!(runs[0]["remaining_s"].as_f64().unwrap() > 500.0, "{runs}");
    // (Not assert_refused: this run's programs are meant to be in the kernel now.)
    let unknown = chaos(&["stop", "nosuchrun"]);
    let message = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{message}");
    assert!(
        message.contains("nosuchrun") && message.contains(&id),
        "{message}"
    );
    let output = chaos(&["stop", &id]);
    assert!(output.status.success());
    let stopped = monotonic_ns();
    target.wait_for_call_after(stopped + 20_000_000);
    let after = target.calls_begun_after(stopped);
    assert!(
        after.iter().all(|c| c.errno.is_none()),
        "the target still failed after chaos stop"
    );
    assert_eq!(listed(), serde_json::json!([]));
    assert_no_chaos_programs();
}

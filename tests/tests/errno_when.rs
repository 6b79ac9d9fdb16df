//! Which calls fail: `--after`, `--every`, `--count` (exact, checked call by call from what the
//! target saw) and `--probability` (within 4 σ of the configured rate).

use std::{thread, time::Duration};

use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

/// Runs a connect fault with `rules` against a fresh target; returns the target's calls made
/// inside the run, the report, and the bystander.
fn run(name: &str, rules: &[&str]) -> (Vec<Call>, serde_json::Value, Victim, Victim) {
    let bed = ConnectBed::new(VICTIM, name);
    let target = bed.victim();
    let bystander = bed.victim();
    let pid = target.pid().to_string();
    let mut args = connect_fault(&pid, "3s");
    args.push("--json");
    args.extend_from_slice(rules);
    let Ran {
        report,
        window: (start_ns, end_ns),
        ..
    } = run_chaos(&args);
    target.wait_for_call_after(end_ns);
    thread::sleep(Duration::from_millis(50));
    let inside: Vec<Call> = target
        .calls()
        .into_iter()
        .filter(|c| (start_ns..=end_ns).contains(&c.at_ns))
        .collect();
    let outside_failures = target
        .calls()
        .iter()
        .filter(|c| !(start_ns..=end_ns).contains(&c.at_ns) && c.errno.is_some())
        .count();
    assert_eq!(outside_failures, 0, "failures outside the run");
    assert!(
        bystander.calls().iter().all(|c| c.errno.is_none()),
        "the bystander was hit"
    );
    (inside, report, target, bystander)
}

/// `chaos fail` failing `pid`'s connect() with ECONNABORTED for `duration`.
fn connect_fault<'a>(pid: &'a str, duration: &'a str) -> Vec<&'a str> {
    vec![
        "fail",
        "--pid",
        pid,
        "--op",
        "connect",
        "--errno",
        "ECONNABORTED",
        "--for",
        duration,
    ]
}

/// Whether this kernel counts calls for `rules`: where it cannot, checks that a fault with them
/// on a live process is refused (see [`counting_supported_or_refused`]).
fn counting(rules: &[&str]) -> bool {
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let pid = sleeper.id().to_string();
    let mut args = connect_fault(&pid, "2s");
    args.extend_from_slice(rules);
    let supported = counting_supported_or_refused(&args);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    supported
}

fn failure_positions(calls: &[Call]) -> Vec<usize> {
    calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.errno.is_some())
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn after_and_count_fail_one_window_of_consecutive_calls() {
    let rules = ["--after", "5", "--count", "3"];
    if !counting(&rules) {
        return;
    }
    let (calls, report, _target, _bystander) = run("after", &rules);
    let fault = &report["faults"][0];
    let failures = failure_positions(&calls);
    assert_eq!(failures.len(), 3, "--count 3: {fault}");
    assert_eq!(
        failures[2] - failures[0],
        2,
        "the three failures are consecutive calls"
    );
    assert!(
        failures[0] >= 5,
        "--after 5: at least five calls passed first"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.errno.is_none() || c.errno == Some(libc::ECONNABORTED))
    );
    assert_eq!(fault["injected"], 3);
    assert!(fault["matched"].as_u64().unwrap() >= 8, "{fault}");
}

#[test]
fn every_fails_one_call_in_n() {
    let rules = ["--every", "3", "--count", "4"];
    if !counting(&rules) {
        return;
    }
    let (calls, report, _target, _bystander) = run("every", &rules);
    let failures = failure_positions(&calls);
    assert_eq!(failures.len(), 4, "--count 4: {}", report["faults"][0]);
    for pair in failures.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            3,
            "--every 3: two calls pass between failures: {failures:?}"
        );
    }
    assert_eq!(report["faults"][0]["injected"], 4);
}

#[test]
fn probability_fails_within_four_sigma() {
    let p = 0.3;
    let (calls, report, _target, _bystander) = run("probability", &["--probability", "0.3"]);
    let fault = &report["faults"][0];
    let (n, k) = (
        fault["matched"].as_u64().unwrap() as f64,
        fault["injected"].as_u64().unwrap() as f64,
    );
    let sigma = (n * p * (1.0 - p)).sqrt();
    eprintln!(
        "--probability {p}: {k} of {n} failed (expected {:.1} ± {:.1})",
        n * p,
        sigma
    );
    assert!(n >= 20.0, "too few calls to judge: {fault}");
    assert!(
        (k - n * p).abs() <= 4.0 * sigma,
        "{k} of {n} is more than 4 σ from {p}"
    );
    assert_eq!(
        failure_positions(&calls).len() as f64,
        k,
        "failures seen != injected"
    );
}

//! `chaos net delay` and `chaos net limit` on a real veth path between two namespaces: the round trip over the faulted
//! path grows by the delay (side by side with netem configured the same way on the same kernel),
//! the jitter has the spread asked for, the path beside it keeps its round trip, and the
//! interface's default qdisc is back afterwards — also after a SIGKILL, at the next chaos
//! invocation. On a kernel without sch_fq each test asserts the refusal instead.

use std::{process::Command, thread, time::Duration};

use chaos_common::features;
use chaos_tests::*;

const NETPEER: &str = env!("CARGO_BIN_EXE_netpeer");
const ECHO_PORT: u16 = 7007;

/// Whether this kernel has fq; when it has not (and need not, per CHAOS_EXPECT), asserts that
/// chaos refuses a delay naming the option, with nothing attached, and says so.
fn delay_supported(net: &TestNet) -> bool {
    let (supported, detail) = Probe::run().feature(features::SCH_FQ);
    if supported {
        return true;
    }
    assert!(!expected(features::SCH_FQ), "{detail}");
    let netns = TestNet::netns_path(&net.a);
    let output = chaos(&[
        "net", "delay", "--netns", &netns, "--iface", "a0", "--delay", "50ms", "--for", "2s",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CONFIG_NET_SCH_FQ"), "{stderr}");
    assert_eq!(root_qdisc(&net.a, "a0"), "noqueue");
    assert_no_chaos_programs();
    eprintln!("NOT INJECTED on this kernel, which has no fq qdisc (refusal asserted): {detail}");
    false
}

/// The kind of the root qdisc of `dev` in namespace `ns`.
fn root_qdisc(ns: &str, dev: &str) -> String {
    let output = Command::new("tc")
        .args(["-n", ns, "-j", "qdisc", "show", "dev", dev, "root"])
        .output()
        .expect("run tc");
    let qdiscs: serde_json::Value = serde_json::from_slice(&output.stdout).expect("tc -j");
    qdiscs[0]["kind"].as_str().unwrap_or_default().to_owned()
}

fn tc(args: &[&str]) {
    let status = Command::new("tc").args(args).status().expect("run tc");
    assert!(status.success(), "tc {}", args.join(" "));
}

/// Echo servers in B on both paths.
fn echo_servers(net: &TestNet) -> Vec<Peer> {
    (0..2)
        .map(|path| {
            let addr = format!("{}:{ECHO_PORT}", net.v4(path, 2));
            let mut echo = net.spawn(&net.b, NETPEER, &["udp-echo", &addr]);
            assert_eq!(echo.line(), "ready");
            echo
        })
        .collect()
}

/// Round trips in ms from A to the echo server on `path`: `n` probes `gap_ms` apart.
fn round_trips(net: &TestNet, path: u32, n: u32, gap_ms: u32) -> Vec<f64> {
    let addr = format!("{}:{ECHO_PORT}", net.v4(path, 2));
    let mut probe = net.spawn(
        &net.a,
        NETPEER,
        &["udp-rtt", &addr, &n.to_string(), &gap_ms.to_string()],
    );
    let line = probe.line();
    let rtts: Vec<f64> = line
        .split_whitespace()
        .map(|us| us.parse::<f64>().expect("a round trip") / 1000.0)
        .collect();
    assert!(
        rtts.iter().all(|&rtt| rtt > 0.0),
        "probes were lost: {line}"
    );
    rtts
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn mean_and_sd(values: &[f64]) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    (mean, var.sqrt())
}

/// Starts `chaos net delay ARGS --for 10m --json` on a0 in A and waits until it is attached.
fn start_delay(net: &TestNet, args: &[&str]) -> Chaos {
    start_on_a0(net, "delay", args)
}

/// Starts `chaos net ACTION ARGS --for 10m --json` on a0 in A and waits until it is attached.
fn start_on_a0(net: &TestNet, action: &str, args: &[&str]) -> Chaos {
    let netns = TestNet::netns_path(&net.a);
    let mut full = vec!["--netns", &netns, "--iface", "a0"];
    full.extend_from_slice(args);
    start_net_fault(action, &full)
}

#[test]
fn a_delay_adds_to_the_round_trip_as_netem_does() {
    let net = TestNet::new("delay");
    if !delay_supported(&net) {
        return;
    }
    let _echo = echo_servers(&net);
    let base = [
        median(&round_trips(&net, 0, 20, 20)),
        median(&round_trips(&net, 1, 20, 20)),
    ];

    let chaos = start_delay(&net, &["--delay", "50ms"]);
    assert_eq!(root_qdisc(&net.a, "a0"), "fq", "chaos did not install fq");
    let delayed = median(&round_trips(&net, 0, 20, 20)) - base[0];
    let beside = median(&round_trips(&net, 1, 20, 20)) - base[1];
    let report = stop_chaos(chaos);
    assert_eq!(
        root_qdisc(&net.a, "a0"),
        "noqueue",
        "the default qdisc was not put back"
    );
    assert_no_chaos_programs();

    tc(&[
        "-n", &net.a, "qdisc", "replace", "dev", "a0", "root", "netem", "delay", "50ms",
    ]);
    let netem = median(&round_trips(&net, 0, 20, 20)) - base[0];
    tc(&["-n", &net.a, "qdisc", "del", "dev", "a0", "root"]);

    eprintln!(
        "added round trip, median of 20 probes: configured 50 ms; chaos {delayed:.1} ms; netem {netem:.1} ms; untargeted path {beside:+.1} ms"
    );
    let fault = &report["faults"][0];
    assert_eq!(fault["mechanism"], format!("{}+fq", tc_hook()));
    assert!(fault["injected"].as_u64().unwrap() >= 20, "{report}");
    assert!(
        (45.0..65.0).contains(&delayed),
        "chaos added {delayed:.1} ms for 50 ms"
    );
    assert!(
        (delayed - netem).abs() < 10.0,
        "chaos {delayed:.1} ms, netem {netem:.1} ms"
    );
    assert!(
        beside.abs() < 10.0,
        "the untargeted path changed by {beside:.1} ms"
    );
}

#[test]
fn jitter_follows_the_distribution_as_netem_does() {
    let net = TestNet::new("jitter");
    if !delay_supported(&net) {
        return;
    }
    let _echo = echo_servers(&net);
    let base = median(&round_trips(&net, 0, 20, 20));
    // Probes 150 ms apart, more than the delay's spread, so none waits behind another in fq's
    // per-flow queue.
    let chaos = start_delay(
        &net,
        &[
            "--delay",
            "40ms",
            "--jitter",
            "20ms",
            "--distribution",
            "normal",
        ],
    );
    let ours: Vec<f64> = round_trips(&net, 0, 60, 150)
        .iter()
        .map(|rtt| rtt - base)
        .collect();
    stop_chaos(chaos);
    assert_eq!(root_qdisc(&net.a, "a0"), "noqueue");
    tc(&[
        "-n",
        &net.a,
        "qdisc",
        "replace",
        "dev",
        "a0",
        "root",
        "netem",
        "delay",
        "40ms",
        "20ms",
        "distribution",
        "normal",
    ]);
    let theirs: Vec<f64> = round_trips(&net, 0, 60, 150)
        .iter()
        .map(|rtt| rtt - base)
        .collect();
    tc(&["-n", &net.a, "qdisc", "del", "dev", "a0", "root"]);

    let ((mean, sd), (netem_mean, netem_sd)) = (mean_and_sd(&ours), mean_and_sd(&theirs));
    eprintln!(
        "added round trip, 60 probes, normal 40 ms ± 20 ms: chaos mean {mean:.1} sd {sd:.1}; netem mean {netem_mean:.1} sd {netem_sd:.1}"
    );
    // Within 4 sigma of the configured distribution: the standard error of a mean of n samples
    // is sd/sqrt(n), of their standard deviation sd/sqrt(2(n-1)).
    let n = ours.len() as f64;
    let (mean_sigma, sd_sigma) = (20.0 / n.sqrt(), 20.0 / (2.0 * (n - 1.0)).sqrt());
    assert!(
        (mean - 40.0).abs() < 4.0 * mean_sigma,
        "mean {mean:.1} ms for 40 ms (4 sigma: {:.1} ms)",
        4.0 * mean_sigma
    );
    assert!(
        (sd - 20.0).abs() < 4.0 * sd_sigma,
        "standard deviation {sd:.1} ms for 20 ms (4 sigma: {:.1} ms)",
        4.0 * sd_sigma
    );
    assert_no_chaos_programs();
}

/// SIGKILL: the delay ends with the process (its tcx link goes), the fq it installed stays
/// recorded, and the next chaos invocation puts the default back.
#[test]
fn a_killed_delay_run_is_undone() {
    let net = TestNet::new("delaykill");
    if !delay_supported(&net) {
        return;
    }
    let _echo = echo_servers(&net);
    let base = median(&round_trips(&net, 0, 10, 20));
    let mut run = start_delay(&net, &["--delay", "200ms"]);
    assert!(
        median(&round_trips(&net, 0, 5, 20)) - base > 150.0,
        "the delay never took effect"
    );
    // Read before the kill: every chaos invocation (the probe too) undoes a killed run's changes.
    let (tcx, detail) = Probe::run().feature(features::TCX);
    run.kill().expect("SIGKILL chaos");
    let _ = run.wait();
    if tcx {
        // The tcx link went with the process: the delay ends at once; fq stays recorded.
        assert_no_chaos_programs();
        let after = median(&round_trips(&net, 0, 10, 20)) - base;
        assert!(
            after < 20.0,
            "the delay outlived the killed run: +{after:.1} ms"
        );
    } else {
        // A clsact filter outlives the process: the delay goes on until the next invocation.
        assert!(!expected(features::TCX), "{detail}");
        let still = median(&round_trips(&net, 0, 5, 20)) - base;
        assert!(
            still > 150.0,
            "the clsact filter should still delay: +{still:.1} ms"
        );
        eprintln!("no tcx here ({detail}): the killed run's filter delays until chaos cleanup");
    }
    assert_eq!(
        root_qdisc(&net.a, "a0"),
        "fq",
        "the killed run's fq should still be recorded"
    );

    let output = chaos(&["cleanup", "--json"]);
    assert!(output.status.success());
    let cleaned: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("chaos cleanup: {cleaned}");
    assert_eq!(
        root_qdisc(&net.a, "a0"),
        "noqueue",
        "chaos cleanup did not put the default back"
    );
    assert_no_chaos_programs();
    let after = median(&round_trips(&net, 0, 10, 20)) - base;
    assert!(
        after < 20.0,
        "the delay outlived chaos cleanup: +{after:.1} ms"
    );
    assert!(
        cleaned["qdiscs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q.as_str().unwrap().starts_with("a0 ")),
        "{cleaned}"
    );
}

/// A detached delay: chaos returns at once, the delay holds with no chaos process alive, ends
/// at the in-kernel deadline, and the next chaos invocation puts the default qdisc back.
#[test]
fn a_detached_delay_ends_at_its_deadline_and_is_undone() {
    let net = TestNet::new("delaydetach");
    if !delay_supported(&net) {
        return;
    }
    let _echo = echo_servers(&net);
    let base = median(&round_trips(&net, 0, 10, 20));
    let netns = TestNet::netns_path(&net.a);
    let run = start_detached(&[
        "net", "delay", "--netns", &netns, "--iface", "a0", "--delay", "100ms", "--for", "4s",
    ]);
    let during = median(&round_trips(&net, 0, 5, 20)) - base;
    assert!(
        during > 80.0,
        "the detached delay is not in effect: +{during:.1} ms"
    );
    while monotonic_ns() < run.deadline_ns + 300_000_000 {
        thread::sleep(Duration::from_millis(50));
    }
    let after = median(&round_trips(&net, 0, 10, 20)) - base;
    assert!(
        after < 20.0,
        "the delay outlived its deadline: +{after:.1} ms"
    );
    assert_eq!(
        root_qdisc(&net.a, "a0"),
        "fq",
        "fq belongs to the run until it is unpinned"
    );
    let output = chaos(&["list", "--json"]);
    assert!(output.status.success());
    assert_eq!(
        root_qdisc(&net.a, "a0"),
        "noqueue",
        "the next invocation did not put the default back"
    );
    assert_no_chaos_programs();
    eprintln!("detached delay: +{during:.1} ms during, +{after:.1} ms after the deadline");
}

/// Seconds to move `bytes` over TCP from A to B on `path`.
fn transfer_seconds(net: &TestNet, path: u32, port: u16, bytes: u64) -> f64 {
    let addr = format!("{}:{port}", net.v4(path, 2));
    let mut sink = net.spawn(&net.b, NETPEER, &["tcp-sink", &addr]);
    assert_eq!(sink.line(), "ready");
    let started = std::time::Instant::now();
    let sender = net.spawn(&net.a, NETPEER, &["tcp-send", &addr, &bytes.to_string()]);
    let _retransmits = sender.result();
    assert_eq!(sink.result(), bytes, "the transfer did not arrive whole");
    started.elapsed().as_secs_f64()
}

/// `chaos net limit --rate 10mbit`: a TCP transfer over the path takes as long as at 10 Mbit/s,
/// as under netem's rate; the path beside it stays fast.
#[test]
fn a_rate_limit_paces_tcp_as_netem_does() {
    let net = TestNet::new("limit");
    if !delay_supported(&net) {
        return;
    }
    const BYTES: u64 = 2_500_000; // 2 s at 10 Mbit/s
    let mbit = |seconds: f64| BYTES as f64 * 8.0 / seconds / 1e6;
    let chaos = start_on_a0(&net, "limit", &["--rate", "10mbit"]);
    let limited = mbit(transfer_seconds(&net, 0, 7201, BYTES));
    let beside = mbit(transfer_seconds(&net, 1, 7202, BYTES));
    let report = stop_chaos(chaos);
    assert_eq!(
        root_qdisc(&net.a, "a0"),
        "noqueue",
        "the default qdisc was not put back"
    );
    assert_no_chaos_programs();
    tc(&[
        "-n", &net.a, "qdisc", "replace", "dev", "a0", "root", "netem", "rate", "10mbit",
    ]);
    let netem = mbit(transfer_seconds(&net, 0, 7203, BYTES));
    tc(&["-n", &net.a, "qdisc", "del", "dev", "a0", "root"]);
    eprintln!(
        "TCP goodput of 2.5 MB: configured 10 Mbit/s; chaos {limited:.2} Mbit/s; netem {netem:.2} Mbit/s; untargeted path {beside:.1} Mbit/s"
    );
    assert_eq!(
        report["faults"][0]["mechanism"],
        format!("{}+fq", tc_hook())
    );
    // Never more than the rate; how much less depends on the machine, as for netem beside it
    // (a TCG guest that shares its cores drops to 8).
    assert!(
        limited < 10.5,
        "chaos let {limited:.2} Mbit/s through for 10"
    );
    assert!(
        (limited - netem).abs() < 1.5,
        "chaos {limited:.2}, netem {netem:.2} Mbit/s"
    );
    // A path held to 10 Mbit/s moves at most 10.5; the untargeted one moves as fast as the
    // machine can copy (about 20 Mbit/s in a TCG guest that shares its cores, 10 Gbit/s on
    // hardware).
    assert!(
        beside > 13.0,
        "the untargeted path was slowed to {beside:.1} Mbit/s"
    );
}

/// A root qdisc someone configured is left alone: exit 2, named, nothing attached or changed.
/// So are delays past fq's horizon and delays with a direction or a cgroup.
#[test]
fn bad_delays_exit_2_and_change_nothing() {
    let net = TestNet::new("delaybad");
    let netns = TestNet::netns_path(&net.a);
    let refused = |args: &[&str], named: &str| {
        let mut full = vec![
            "net", "delay", "--netns", &netns, "--iface", "a0", "--for", "2s",
        ];
        full.extend_from_slice(args);
        let output = chaos(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{full:?}: {stderr}");
        assert!(stderr.contains(named), "{full:?}: {stderr}");
    };
    refused(&["--delay", "9s", "--jitter", "1s"], "horizon");
    refused(&["--delay", "-5ms"], "-5ms");
    refused(
        &["--delay", "10ms", "--distribution", "normal"],
        "needs --jitter",
    );
    refused(
        &["--delay", "10ms", "--direction", "ingress"],
        "--direction",
    );
    refused(&["--delay", "10ms", "--rate", "1mbit"], "--rate");
    if delay_supported(&net) {
        tc(&[
            "-n", &net.a, "qdisc", "add", "dev", "a0", "root", "handle", "1:", "pfifo",
        ]);
        refused(&["--delay", "10ms"], "configured pfifo root qdisc");
        assert_eq!(
            root_qdisc(&net.a, "a0"),
            "pfifo",
            "a configured qdisc was changed"
        );
    }
    assert_no_chaos_programs();
}

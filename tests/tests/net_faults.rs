//! `chaos net drop` and `chaos net duplicate` on a real veth path between two namespaces: the
//! arrivals over the faulted path follow the probability (within 4 sigma of 10,000 datagrams),
//! TCP over a lossy path retransmits, the path beside it is untouched, and no program of the tool
//! is left afterwards.

use std::{thread, time::Duration};

use chaos_common::features;
use chaos_tests::*;

const NETPEER: &str = env!("CARGO_BIN_EXE_netpeer");
const DATAGRAMS: u64 = 10_000;

/// Starts `chaos net drop ARGS --for 10m --json` and waits until its programs are attached.
fn start_drop(args: &[&str]) -> Chaos {
    start_net_fault("drop", args)
}

/// Sends DATAGRAMS from A to `to` (an address of B, IPv4 or IPv6) and returns how many arrived.
fn udp_arrivals(net: &TestNet, to: &str, port: u16) -> u64 {
    let line = net.udp_a_to_b(NETPEER, "udp-sink", to, port, DATAGRAMS);
    line.parse()
        .unwrap_or_else(|_| panic!("udp-sink printed '{line}'"))
}

/// Asserts `arrived` is within 4 sigma of DATAGRAMS * (1 - p).
fn assert_loss_rate(arrived: u64, p: f64, what: &str) {
    assert_rate(arrived, DATAGRAMS as f64 * (1.0 - p), p, what);
}

/// Asserts `arrived` is within 4 sigma (for an action taken with probability `p` on each of
/// DATAGRAMS packets) of `expected`.
fn assert_rate(arrived: u64, expected: f64, p: f64, what: &str) {
    assert_within_4_sigma(arrived, expected, DATAGRAMS, p, &format!("{what} arrived"));
}

fn drop_at(direction: &str, netns: &str, iface: &str) {
    let net = TestNet::new(&format!("drop-{direction}"));
    let p = 0.3;
    let chaos = start_drop(&[
        "--netns",
        netns_of(&net, netns),
        "--iface",
        iface,
        "--direction",
        direction,
        "--probability",
        "0.3",
    ]);
    let v4 = udp_arrivals(&net, &net.v4(0, 2), 7001);
    let v6 = udp_arrivals(&net, &net.v6(0, 2), 7002);
    let beside = udp_arrivals(&net, &net.v4(1, 2), 7003);
    let report = stop_chaos(chaos);
    assert_loss_rate(v4, p, &format!("{direction} IPv4"));
    assert_loss_rate(v6, p, &format!("{direction} IPv6"));
    assert_eq!(beside, DATAGRAMS, "the untargeted path lost packets");
    let fault = &report["faults"][0];
    assert_eq!(fault["direction"], direction);
    assert_eq!(fault["mechanism"], tc_hook(), "{report}");
    let lost = 2 * DATAGRAMS - v4 - v6;
    let injected = fault["injected"].as_u64().unwrap();
    // The report may also count a few neighbour-discovery packets it dropped.
    assert!(
        injected >= lost && injected <= lost + 20,
        "injected {injected}, lost {lost}: {report}"
    );
    assert_no_chaos_programs();
}

fn netns_of<'a>(net: &'a TestNet, which: &str) -> &'a str {
    if which == "a" { &net.a } else { &net.b }
}

#[test]
fn ingress_drop_follows_the_probability_on_the_faulted_path_only() {
    drop_at("ingress", "b", "b0");
}

#[test]
fn egress_drop_follows_the_probability_on_the_faulted_path_only() {
    drop_at("egress", "a", "a0");
}

fn duplicate_at(direction: &str, netns: &str, iface: &str) {
    let net = TestNet::new(&format!("dup-{direction}"));
    let p = 0.3;
    let chaos = start_net_fault(
        "duplicate",
        &[
            "--netns",
            netns_of(&net, netns),
            "--iface",
            iface,
            "--direction",
            direction,
            "--proto",
            "udp",
            "--probability",
            "0.3",
        ],
    );
    let v4 = udp_arrivals(&net, &net.v4(0, 2), 7301);
    let v6 = udp_arrivals(&net, &net.v6(0, 2), 7302);
    let beside = udp_arrivals(&net, &net.v4(1, 2), 7303);
    let report = stop_chaos(chaos);
    let expected = DATAGRAMS as f64 * (1.0 + p);
    assert_rate(v4, expected, p, &format!("duplicate {direction} IPv4"));
    assert_rate(v6, expected, p, &format!("duplicate {direction} IPv6"));
    assert_eq!(beside, DATAGRAMS, "the untargeted path got copies");
    let fault = &report["faults"][0];
    assert_eq!(fault["op"], "duplicate");
    assert_eq!(
        fault["injected"].as_u64().unwrap(),
        v4 + v6 - 2 * DATAGRAMS,
        "every copy made arrived, and only those: {report}"
    );
    assert_no_chaos_programs();
}

#[test]
fn ingress_duplicates_follow_the_probability_on_the_faulted_path_only() {
    duplicate_at("ingress", "b", "b0");
}

#[test]
fn egress_duplicates_follow_the_probability_on_the_faulted_path_only() {
    duplicate_at("egress", "a", "a0");
}

#[test]
fn tcp_over_a_lossy_path_retransmits() {
    let net = TestNet::new("drop-tcp");
    // 10 % of an 8 MB transfer: with segmentation offload that is some 150 packets, so a run
    // without a single drop (and so without a retransmission) has odds below 1e-6.
    let chaos = start_drop(&["--netns", &net.b, "--iface", "b0", "--probability", "0.1"]);
    let transfer = |path: u32, port: u16| {
        let addr = format!("{}:{port}", net.v4(path, 2));
        let mut sink = net.spawn(&net.b, NETPEER, &["tcp-sink", &addr]);
        assert_eq!(sink.line(), "ready");
        let sender = net.spawn(&net.a, NETPEER, &["tcp-send", &addr, "8000000"]);
        let retransmits = sender.result();
        assert_eq!(
            sink.result(),
            8_000_000,
            "the transfer did not arrive whole"
        );
        retransmits
    };
    let lossy = transfer(0, 7101);
    let clean = transfer(1, 7102);
    let report = stop_chaos(chaos);
    eprintln!("TCP retransmissions: {lossy} over the lossy path, {clean} beside it");
    assert!(lossy > 0, "10 % loss caused no retransmission: {report}");
    // The path beside it is not faulted, but TCP on a loaded two-core VM can still retransmit
    // now and then (tail-loss probes, a late ACK: 45 in one CI run against 576 on the lossy
    // path), so the check is that it retransmits far less, not never; its UDP twin in the
    // drop tests asserts exact arrivals.
    assert!(
        clean * 5 < lossy,
        "the untargeted path retransmitted like the lossy one: {clean} vs {lossy}"
    );
    assert_no_chaos_programs();
}

#[test]
fn bad_network_input_exits_2_and_attaches_nothing() {
    let net = TestNet::new("drop-bad");
    let b = net.b.as_str();
    for (args, named) in [
        (
            vec!["--netns", b, "--iface", "nope0", "--probability", "0.1"],
            "nope0",
        ),
        (
            vec!["--netns", "no-such-netns", "--probability", "0.1"],
            "no-such-netns",
        ),
        (vec!["--netns", b, "--probability", "0"], "'0'"),
        (vec!["--netns", b, "--probability", "1.5"], "1.5"),
        (
            vec!["--netns", b, "--probability", "0.1", "--direction", "up"],
            "up",
        ),
        (
            vec!["--netns", b, "--probability", "0.1", "--src", "10.0.0.0/40"],
            "10.0.0.0/40",
        ),
        (
            vec![
                "--netns",
                b,
                "--probability",
                "0.1",
                "--proto",
                "icmp",
                "--dport",
                "1",
            ],
            "ICMP",
        ),
        (
            vec!["--netns", b, "--probability", "0.1", "--for", "-1s"],
            "-1s",
        ),
        (vec!["--probability", "0.1"], "--iface"),
    ] {
        let mut full = vec!["net", "drop"];
        full.extend_from_slice(&args);
        assert_refused(&full, &[named]);
    }
}

/// A loader killed with SIGKILL takes its tcx links with it: the path recovers at once and
/// nothing of the tool is left (issue: runs that always end).
#[test]
fn a_killed_loader_leaves_no_loss_behind() {
    let net = TestNet::new("drop-kill");
    // Read before the kill: every chaos invocation (the probe too) undoes a killed run's changes.
    let (tcx, detail) = Probe::run().feature(features::TCX);
    let mut chaos = start_drop(&["--netns", &net.b, "--iface", "b0", "--probability", "1"]);
    let addr = format!("{}:7201", net.v4(0, 2));
    let mut sink = net.spawn(&net.b, NETPEER, &["udp-sink", &addr, "300"]);
    assert_eq!(sink.line(), "ready");
    // Everything is lost while the fault runs: the sink sees nothing of a first burst.
    let mut sender = net.spawn(&net.a, NETPEER, &["udp-send", &addr, "200"]);
    assert_eq!(sender.line(), "sent 200");
    chaos.kill().expect("SIGKILL chaos");
    chaos.wait().expect("wait chaos");
    if !tcx {
        // Without tcx the programs hang from clsact filters, which outlive the process until
        // the next chaos invocation undoes them (the clsact test shows the loss going on).
        assert!(!expected(features::TCX), "{detail}");
        eprintln!("no tcx here ({detail}): the killed run's filter is removed by chaos cleanup");
        assert!(chaos_tests::chaos(&["cleanup"]).status.success());
    }
    // The links went with chaos's file descriptors: the next burst arrives whole.
    let mut sender = net.spawn(&net.a, NETPEER, &["udp-send", &addr, "200"]);
    assert_eq!(sender.line(), "sent 200");
    assert_eq!(
        sink.result(),
        200,
        "packets were lost after the loader died"
    );
    assert_no_chaos_programs();
}

/// The kinds of the qdiscs of `dev` in namespace `ns`.
fn qdisc_kinds(ns: &str, dev: &str) -> Vec<String> {
    let output = std::process::Command::new("tc")
        .args(["-n", ns, "-j", "qdisc", "show", "dev", dev])
        .output()
        .expect("run tc");
    let all: serde_json::Value = serde_json::from_slice(&output.stdout).expect("tc -j");
    all.as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["kind"].as_str().map(str::to_owned))
        .collect()
}

/// `chaos net drop` of every packet arriving on b0 for 10 minutes, with the clsact fallback
/// forced (CHAOS_TC_ATTACH=clsact, as on kernels before 6.6).
fn clsact_drop(net: &TestNet) -> std::process::Command {
    let netns = TestNet::netns_path(&net.b);
    let mut command = chaos_command(&["net", "drop", "--netns", &netns, "--iface", "b0"]);
    command
        .args(["--probability", "1", "--for", "10m"])
        .env("CHAOS_TC_ATTACH", "clsact");
    command
}

/// Starts `chaos net drop` on b0 with the clsact fallback forced (CHAOS_TC_ATTACH=clsact, as on
/// kernels before 6.6) and waits until it is attached.
fn start_clsact_drop(net: &TestNet) -> Chaos {
    Chaos::spawn_live(clsact_drop(net).arg("--json"))
}

/// Kernels before 6.6 have no tcx links: the programs hang from a clsact qdisc as cls_bpf
/// filters, which outlive a killed process. Forced here: the drops happen, the clsact chaos
/// added is gone after the run; after a SIGKILL the loss goes on until the next chaos
/// invocation removes the recorded clsact; and on a clsact that was there before, only chaos's
/// filter is removed.
#[test]
fn the_clsact_fallback_drops_and_is_undone_even_after_sigkill() {
    let net = TestNet::new("clsact");
    let chaos = start_clsact_drop(&net);
    let lost_path = udp_arrivals(&net, &net.v4(0, 2), 7301);
    let other_path = udp_arrivals(&net, &net.v4(1, 2), 7302);
    let report = stop_chaos(chaos);
    assert_eq!(lost_path, 0, "the clsact filter did not drop: {report}");
    assert_eq!(report["faults"][0]["mechanism"], "clsact", "{report}");
    assert_eq!(other_path, DATAGRAMS, "the untargeted path lost packets");
    // Every datagram, and the odd IPv6 neighbour or multicast-listener packet besides.
    let injected = report["faults"][0]["injected"].as_u64().unwrap();
    assert!((DATAGRAMS..DATAGRAMS + 50).contains(&injected), "{report}");
    assert!(
        !qdisc_kinds(&net.b, "b0").contains(&"clsact".to_owned()),
        "the clsact chaos added is left"
    );
    assert_no_chaos_programs();

    // SIGKILL: the filter stays and keeps dropping until the next invocation undoes it.
    let mut chaos = start_clsact_drop(&net);
    chaos.kill().expect("SIGKILL chaos");
    chaos.wait().expect("wait chaos");
    assert_eq!(
        udp_arrivals(&net, &net.v4(0, 2), 7303),
        0,
        "the orphaned filter should still drop"
    );
    let output = chaos_stdout(&["cleanup", "--json"]);
    eprintln!("chaos cleanup after SIGKILL: {output}");
    assert!(
        !qdisc_kinds(&net.b, "b0").contains(&"clsact".to_owned()),
        "cleanup left the clsact"
    );
    assert_no_chaos_programs();
    assert_eq!(udp_arrivals(&net, &net.v4(0, 2), 7304), DATAGRAMS);

    // A clsact that was there before stays; only chaos's filter goes.
    let status = std::process::Command::new("tc")
        .args(["-n", &net.b, "qdisc", "add", "dev", "b0", "clsact"])
        .status()
        .expect("tc");
    assert!(status.success());
    let mut chaos = start_clsact_drop(&net);
    chaos.kill().expect("SIGKILL chaos");
    chaos.wait().expect("wait chaos");
    let output = chaos_stdout(&["cleanup", "--json"]);
    eprintln!("chaos cleanup with a clsact of its own: {output}");
    assert!(
        qdisc_kinds(&net.b, "b0").contains(&"clsact".to_owned()),
        "cleanup removed a clsact it had not added"
    );
    assert_no_chaos_programs();
    assert_eq!(udp_arrivals(&net, &net.v4(0, 2), 7305), DATAGRAMS);
}

/// An ingress qdisc someone added leaves no room for clsact (both take the ingress handle): on
/// the clsact fallback (forced) the fault is refused with exit 2 naming the interface and the
/// qdisc, which stays; nothing is attached and the traffic flows.
#[test]
fn an_ingress_qdisc_on_the_interface_is_left_alone() {
    let net = TestNet::new("ingress");
    let status = std::process::Command::new("tc")
        .args(["-n", &net.b, "qdisc", "add", "dev", "b0", "ingress"])
        .status()
        .expect("tc");
    assert!(status.success());
    let output = clsact_drop(&net).output().expect("run chaos");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("b0 has an ingress qdisc"), "{stderr}");
    assert!(!stderr.contains("this kernel"), "{stderr}");
    assert!(qdisc_kinds(&net.b, "b0").contains(&"ingress".to_owned()));
    assert_no_chaos_programs();
    assert_eq!(udp_arrivals(&net, &net.v4(0, 2), 7306), DATAGRAMS);
}

/// A detached run on the clsact fallback (forced): its filter stays with no chaos process
/// alive (there is no link to pin) and goes, with the clsact chaos added, on `chaos stop`.
#[test]
fn a_detached_clsact_drop_is_removed_when_stopped() {
    let net = TestNet::new("clsact-detach");
    let output = clsact_drop(&net)
        .args(["--detach", "--json"])
        .output()
        .expect("run chaos");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = json_report(&output)["id"].as_str().unwrap().to_owned();
    assert_eq!(
        udp_arrivals(&net, &net.v4(0, 2), 7311),
        0,
        "the detached filter does not drop"
    );
    assert!(qdisc_kinds(&net.b, "b0").contains(&"clsact".to_owned()));
    assert!(chaos_tests::chaos(&["stop", &id]).status.success());
    assert!(
        !qdisc_kinds(&net.b, "b0").contains(&"clsact".to_owned()),
        "chaos stop left the clsact"
    );
    assert_no_chaos_programs();
    assert_eq!(udp_arrivals(&net, &net.v4(0, 2), 7312), DATAGRAMS);
}

/// `--loss-model gemodel:5,20`: netem's Gilbert-Elliott model loses 20 % of the datagrams in
/// bursts of 5 on average (independent loss at 20 % would make bursts of 1.25). The loss of a
/// correlated chain varies more than independent loss: its 4 sigma are widened by the chain's
/// (1 + rho) / (1 - rho), rho = 1 - p - r.
#[test]
fn gemodel_loss_comes_in_bursts() {
    let net = TestNet::new("gemodel");
    let chaos = start_drop(&[
        "--netns",
        &net.b,
        "--iface",
        "b0",
        "--loss-model",
        "gemodel:5,20",
    ]);
    let line = net.udp_a_to_b(NETPEER, "udp-bursts", &net.v4(0, 2), 7321, DATAGRAMS);
    let report = stop_chaos(chaos);
    let mut fields = line.split_whitespace();
    let arrived: u64 = fields.next().unwrap().parse().unwrap();
    let mean_burst: f64 = fields.next().unwrap().parse().unwrap();
    let loss = 1.0 - arrived as f64 / DATAGRAMS as f64;
    let rho: f64 = 1.0 - 0.05 - 0.20;
    let sigma = (0.2 * 0.8 / DATAGRAMS as f64 * (1.0 + rho) / (1.0 - rho)).sqrt();
    eprintln!(
        "gemodel:5,20: lost {:.1} % (expected 20 +- {:.1}), mean burst {mean_burst:.2} datagrams (expected 5)",
        loss * 100.0,
        400.0 * sigma
    );
    assert!(
        (loss - 0.2).abs() <= 4.0 * sigma,
        "loss {loss:.3}: {report}"
    );
    assert!(
        (3.5..7.0).contains(&mean_burst),
        "mean burst {mean_burst:.2}: not the model's 5"
    );
    // The report counts the drops (give or take a stray neighbour-discovery packet).
    let injected = report["faults"][0]["injected"].as_u64().unwrap();
    let lost = DATAGRAMS - arrived;
    assert!(
        injected.abs_diff(lost) <= 5,
        "{injected} injected, {lost} lost"
    );
    assert_no_chaos_programs();
}

/// `chaos ARGS` to the end; its stdout.
fn chaos_stdout(args: &[&str]) -> String {
    let output = chaos(args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A container's network namespace by container name: datagrams from the host to it are lost
/// at the configured rate; a second container on the same bridge loses nothing.
#[test]
fn a_container_loses_packets_and_its_neighbour_does_not() {
    let target = match TestContainer::start_networked("net-target", NETPEER) {
        Ok(container) => container,
        Err(err) => {
            // The trimmed guest kernels have no bridge driver; the host must. Whatever podman's
            // network backend says, the probe must agree that no bridge can be made here.
            let (bridge, detail) = Probe::run().feature(features::BRIDGE);
            assert!(
                !bridge && !expected(features::BRIDGE),
                "podman could not make a bridge network although this kernel can: {err}"
            );
            eprintln!(
                "SKIPPED: no bridge network for containers on this kernel (asserted: {detail}): {err}"
            );
            return;
        }
    };
    let neighbour = TestContainer::start_networked("net-neighbour", NETPEER)
        .unwrap_or_else(|err| panic!("{err}"));
    let chaos = start_drop(&["--container", &target.name, "--probability", "0.3"]);
    let arrivals = |container: &TestContainer, port: u16| {
        let addr = format!("0.0.0.0:{port}");
        let mut sink = container.exec("netpeer", &["udp-sink", &addr, "1000"]);
        assert_eq!(sink.line(), "ready");
        let to = format!("{}:{port}", container.ip());
        let mut sender = Peer::spawn({
            let mut command = std::process::Command::new(NETPEER);
            command.args(["udp-send", &to, &DATAGRAMS.to_string()]);
            command
        });
        assert_eq!(sender.line(), format!("sent {DATAGRAMS}"));
        sink.result()
    };
    let lossy = arrivals(&target, 7401);
    let clean = arrivals(&neighbour, 7402);
    let report = stop_chaos(chaos);
    assert_loss_rate(lossy, 0.3, "container");
    assert_eq!(clean, DATAGRAMS, "the neighbour container lost packets");
    assert_eq!(report["targets"][0]["container"], target.id.as_str());
    assert_no_chaos_programs();
}

/// A detached drop: chaos returns at once, the loss holds with no chaos process alive, and ends
/// at the in-kernel deadline while the links are still pinned; the next invocation unpins them.
#[test]
fn a_detached_drop_ends_at_its_deadline() {
    let net = TestNet::new("drop-detached");
    let run = start_detached(&[
        "net",
        "drop",
        "--netns",
        &net.b,
        "--iface",
        "b0",
        "--probability",
        "1",
        "--for",
        "2s",
    ]);
    let (id, deadline_ns) = (run.id.clone(), run.deadline_ns);
    let burst = |port: u16| {
        let addr = format!("{}:{port}", net.v4(0, 2));
        let mut sink = net.spawn(&net.b, NETPEER, &["udp-sink", &addr, "300"]);
        assert_eq!(sink.line(), "ready");
        let mut sender = net.spawn(&net.a, NETPEER, &["udp-send", &addr, "100"]);
        assert_eq!(sender.line(), "sent 100");
        // A final datagram after the burst, so the sink ends even when the burst was lost.
        (sink, sender)
    };
    // While it runs: the burst is lost. The sink waits for a first datagram that never comes,
    // so only check that nothing arrived in time by sending one more after the deadline.
    let (sink, _sender) = burst(7501);
    let pins = std::path::Path::new("/sys/fs/bpf/chaos").join(&id);
    assert!(pins.is_dir(), "the run's links are not pinned");
    while monotonic_ns() < deadline_ns + 200_000_000 {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(pins.is_dir(), "unpinned before the next invocation");
    let mut late = net.spawn(
        &net.a,
        NETPEER,
        &["udp-send", &format!("{}:7501", net.v4(0, 2)), "1"],
    );
    assert_eq!(late.line(), "sent 1");
    assert_eq!(
        sink.result(),
        1,
        "only the datagram after the deadline may arrive"
    );
    let (after, _sender) = burst(7502);
    assert_eq!(after.result(), 100, "packets were lost after the deadline");
    let listed = json_report(&chaos(&["list", "--json"]));
    assert_eq!(listed, serde_json::json!([]));
    assert!(!pins.exists(), "the expired run is still pinned");
    assert_no_chaos_programs();
}

/// `--cgroup`: the sockets of one cgroup lose their arriving packets; a socket of another cgroup
/// in the same namespace, on the same interface, loses none.
#[test]
fn a_cgroup_loses_its_packets_and_its_neighbour_in_the_namespace_does_not() {
    let net = TestNet::new("drop-cgroup");
    let (lossy, clean) = (TestCgroup::new("net-lossy"), TestCgroup::new("net-clean"));
    let chaos = start_drop(&[
        "--cgroup",
        lossy.path.to_str().unwrap(),
        "--probability",
        "0.3",
    ]);
    let arrivals = |cgroup: &TestCgroup, port: u16| {
        let addr = format!("{}:{port}", net.v4(0, 2));
        let mut sink = net.spawn_in(&net.b, cgroup, NETPEER, &["udp-sink", &addr, "1000"]);
        assert_eq!(sink.line(), "ready");
        let mut sender = net.spawn(
            &net.a,
            NETPEER,
            &["udp-send", &addr, &DATAGRAMS.to_string()],
        );
        assert_eq!(sender.line(), format!("sent {DATAGRAMS}"));
        sink.result()
    };
    let lossy_arrivals = arrivals(&lossy, 7601);
    let clean_arrivals = arrivals(&clean, 7602);
    let report = stop_chaos(chaos);
    assert_loss_rate(lossy_arrivals, 0.3, "cgroup");
    assert_eq!(
        clean_arrivals, DATAGRAMS,
        "the other cgroup's socket lost packets"
    );
    assert_eq!(report["faults"][0]["mechanism"], "cgroup_skb");
    assert_eq!(
        report["faults"][0]["injected"].as_u64().unwrap(),
        DATAGRAMS - lossy_arrivals,
        "{report}"
    );
    assert_refused(
        &[
            "net",
            "duplicate",
            "--cgroup",
            lossy.path.to_str().unwrap(),
            "--probability",
            "0.1",
        ],
        &["--cgroup", "ingress"],
    );
    assert_no_chaos_programs();
}

/// With `chaos idle` running, a drop that ends leaves its programs verified as a spare, and the
/// next drop of the same shape takes it: it drops every packet of its path from the start (the
/// path beside it untouched), says so in its report and leaves a spare in its place; SIGTERM to
/// idle takes the spares with it. Before 6.6 the program hangs from a clsact filter, which
/// the pinned program names by its kernel name: found and removed by its preference all the same.
#[test]
fn with_chaos_idle_the_next_drop_takes_the_programs_verified_ahead() {
    let net = TestNet::new("spare");
    let (idle, keeper) = start_idle();
    let netns = TestNet::netns_path(&net.b);
    let drop = [
        "--netns",
        netns.as_str(),
        "--iface",
        "b0",
        "--probability",
        "1",
    ];

    let first = chaos_stdout(&[&["net", "drop", "--for", "1s", "--json"][..], &drop].concat());
    let first: serde_json::Value = serde_json::from_str(&first).expect("a JSON report");
    assert!(first.get("spare_programs").is_none(), "{first}");
    assert_eq!(spares_in(&keeper), 1, "the first drop left no spare");
    assert_eq!(
        loaded_count(chaos_common::hook::TC_INGRESS),
        1,
        "the spare's program"
    );

    let chaos = start_drop(&drop);
    let lost_path = udp_arrivals(&net, &net.v4(0, 2), 7401);
    let other_path = udp_arrivals(&net, &net.v4(1, 2), 7402);
    let report = stop_chaos(chaos);
    assert_eq!(report["spare_programs"], true, "{report}");
    assert_eq!(report["faults"][0]["mechanism"], tc_hook(), "{report}");
    assert_eq!(
        lost_path, 0,
        "the drop from a spare let packets through: {report}"
    );
    assert_eq!(other_path, DATAGRAMS, "the untargeted path lost packets");
    assert_eq!(spares_in(&keeper), 1, "the second drop left no spare");
    assert!(
        !qdisc_kinds(&net.b, "b0").contains(&"clsact".to_owned()),
        "a clsact chaos added is left"
    );
    stop_idle(idle, &keeper);
    assert_no_chaos_programs();
}

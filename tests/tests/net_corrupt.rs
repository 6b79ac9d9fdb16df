//! `chaos net corrupt` on a real veth path between two namespaces, IPv4 and IPv6: by default the
//! receiving kernel's checksum check drops what the fault corrupts (its InCsumErrors counter
//! says so) or, for packets whose checksum was still to be computed, chaos drops them in its
//! place; with --silent every datagram arrives and the altered ones are exactly those the fault
//! reports. Over TCP the default mode is loss (retransmissions, every byte intact), --silent
//! hands the application altered bytes. The path beside the faulted one is untouched; no program
//! is left afterwards.

use std::process::Command;

use chaos_tests::*;

const NETPEER: &str = env!("CARGO_BIN_EXE_netpeer");
const DATAGRAMS: u64 = 10_000;
const P: f64 = 0.3;

/// What a receiver in B saw of DATAGRAMS sent from A.
struct Received {
    arrived: u64,
    altered: u64,
    /// The growth of B's UDP (or UDP6) InCsumErrors counter meanwhile.
    checksum_errors: u64,
}

/// Sends DATAGRAMS from A to `to` (an address of B) and checks each one that arrives.
fn send_and_check(net: &TestNet, to: &str, port: u16) -> Received {
    let ipv6 = to.contains(':');
    let errors_before = udp_checksum_errors(&net.b, ipv6);
    let line = net.udp_a_to_b(NETPEER, "udp-intact", to, port, DATAGRAMS);
    let (arrived, altered) = line
        .split_once(' ')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or_else(|| panic!("udp-intact printed '{line}'"));
    Received {
        arrived,
        altered,
        checksum_errors: udp_checksum_errors(&net.b, ipv6) - errors_before,
    }
}

/// UDP's InCsumErrors in namespace `ns` (/proc/net/snmp, or Udp6InCsumErrors in snmp6).
fn udp_checksum_errors(ns: &str, ipv6: bool) -> u64 {
    checksum_errors(
        ns,
        if ipv6 {
            "Udp6InCsumErrors"
        } else {
            "UdpInCsumErrors"
        },
    )
}

/// A checksum error counter in namespace `ns`, by nstat's name (UdpInCsumErrors,
/// Udp6InCsumErrors, TcpInCsumErrors).
fn checksum_errors(ns: &str, counter: &str) -> u64 {
    let output = Command::new("nsenter")
        .arg(format!("--net={}", TestNet::netns_path(ns)))
        .args(["nstat", "-az", counter])
        .output()
        .expect("run nstat (iproute2)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.starts_with(counter))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no {counter} from nstat"))
}

/// Asserts `count` of DATAGRAMS is within 4 sigma of DATAGRAMS * `share` (each datagram picked
/// with probability P).
fn assert_share(count: u64, share: f64, what: &str) {
    assert_within_4_sigma(count, DATAGRAMS as f64 * share, DATAGRAMS, P, what);
}

/// Runs a corrupt fault on the A-B path (A's a0 for egress, B's b0 for ingress), sends IPv4 and
/// IPv6 datagrams over it and over the path beside it, and returns what arrived and the report.
fn corrupt(
    net: &TestNet,
    direction: &str,
    silent: bool,
) -> (Received, Received, serde_json::Value) {
    let (ns, dev) = if direction == "egress" {
        (TestNet::netns_path(&net.a), "a0")
    } else {
        (TestNet::netns_path(&net.b), "b0")
    };
    let mut args = vec![
        "--netns",
        &ns,
        "--iface",
        dev,
        "--direction",
        direction,
        "--probability",
        "0.3",
    ];
    if silent {
        args.push("--silent");
    }
    let chaos = start_net_fault("corrupt", &args);
    let v4 = send_and_check(net, &net.v4(0, 2), 7101);
    let v6 = send_and_check(net, &net.v6(0, 2), 7102);
    let beside = send_and_check(net, &net.v4(1, 2), 7103);
    let report = stop_chaos(chaos);
    assert_eq!(
        (beside.arrived, beside.altered, beside.checksum_errors),
        (DATAGRAMS, 0, 0),
        "the untargeted path was touched"
    );
    assert_eq!(report["faults"][0]["direction"], direction);
    assert_no_chaos_programs();
    (v4, v6, report)
}

fn injected(report: &serde_json::Value) -> u64 {
    report["faults"][0]["injected"].as_u64().unwrap()
}

#[test]
fn the_receivers_checksum_check_drops_corrupted_packets() {
    let net = TestNet::new("corrupt-caught");
    // The sender computes its checksums: the packets carry them as from a wire.
    net.checksum_offload(&net.a, "a0", false);
    let (v4, v6, report) = corrupt(&net, "egress", false);
    for (family, got) in [("IPv4", &v4), ("IPv6", &v6)] {
        let lost = DATAGRAMS - got.arrived;
        assert_share(got.arrived, 1.0 - P, &format!("{family} arrived"));
        assert_eq!(
            got.altered, 0,
            "{family}: corrupted data reached the application"
        );
        assert_eq!(
            got.checksum_errors, lost,
            "{family}: every lost datagram failed B's checksum check"
        );
    }
    let lost = 2 * DATAGRAMS - v4.arrived - v6.arrived;
    assert_eq!(injected(&report), lost, "{report}");
}

#[test]
fn offloaded_packets_are_lost_in_place_of_the_check() {
    let net = TestNet::new("corrupt-offload");
    // veth's default: checksum offload on, so the packets have no checksum yet, which the kernel
    // never checks between two namespaces of one host; chaos drops them instead.
    let (v4, v6, report) = corrupt(&net, "ingress", false);
    for (family, got) in [("IPv4", &v4), ("IPv6", &v6)] {
        assert_share(got.arrived, 1.0 - P, &format!("{family} arrived"));
        assert_eq!(
            got.altered, 0,
            "{family}: corrupted data reached the application"
        );
        assert_eq!(
            got.checksum_errors, 0,
            "{family}: chaos, not the check, drops these"
        );
    }
    let lost = 2 * DATAGRAMS - v4.arrived - v6.arrived;
    assert_eq!(injected(&report), lost, "{report}");
}

#[test]
fn silent_corruption_delivers_the_altered_payloads() {
    for (direction, offload) in [("egress", false), ("ingress", true)] {
        let net = TestNet::new(&format!("corrupt-silent-{direction}"));
        // Without offload the program fixes a finished checksum; with it, the checksum is still
        // to be computed and covers the flipped bit.
        net.checksum_offload(&net.a, "a0", offload);
        let (v4, v6, report) = corrupt(&net, direction, true);
        for (family, got) in [("IPv4", &v4), ("IPv6", &v6)] {
            let what = format!("{direction} (offload {offload}) {family}");
            assert_eq!(got.arrived, DATAGRAMS, "{what}: datagrams were lost");
            assert_eq!(got.checksum_errors, 0, "{what}: a checksum was left wrong");
            assert_share(got.altered, P, &format!("{what} altered"));
        }
        assert_eq!(injected(&report), v4.altered + v6.altered, "{report}");
    }
}

#[test]
fn corrupt_refuses_what_it_cannot_do() {
    let net = TestNet::new("corrupt-bad");
    let netns = TestNet::netns_path(&net.a);
    let on_a0 = ["net", "corrupt", "--netns", &netns, "--iface", "a0"];
    let with = |extra: &[&'static str]| [&on_a0[..], extra].concat();
    assert_refused(
        &with(&["--probability", "0.1", "--proto", "icmp"]),
        &["--proto icmp", "tcp or udp"],
    );
    assert_refused(
        &with(&["--loss-model", "gemodel:5,20"]),
        &["--loss-model", "corrupt"],
    );
    assert_refused(
        &[
            "net",
            "corrupt",
            "--cgroup",
            "/sys/fs/cgroup",
            "--probability",
            "0.1",
        ],
        &["--cgroup", "rewrite"],
    );
    assert_no_chaos_programs();
}

#[test]
fn tcp_retransmits_what_the_check_drops_and_silent_mode_reaches_the_application() {
    const BYTES: u64 = 2_000_000;
    let net = TestNet::new("corrupt-tcp");
    // Segments cut and checksummed by the sender (TCP hands TC egress 64 KB GSO packets, cut
    // after it): 1,400 of 1,448 bytes arrive at B, and a 2 % fault there picks some 28.
    net.checksum_offload(&net.a, "a0", false);
    let netns = TestNet::netns_path(&net.b);
    let transfer = |silent: bool, port: u16| {
        let mut args = vec![
            "--netns",
            &netns,
            "--iface",
            "b0",
            "--direction",
            "ingress",
            "--proto",
            "tcp",
            "--probability",
            "0.02",
        ];
        if silent {
            args.push("--silent");
        }
        let errors_before = checksum_errors(&net.b, "TcpInCsumErrors");
        let chaos = start_net_fault("corrupt", &args);
        let addr = format!("{}:{port}", net.v4(0, 2));
        let mut sink = net.spawn(&net.b, NETPEER, &["tcp-intact", &addr]);
        assert_eq!(sink.line(), "ready");
        let sender = net.spawn(&net.a, NETPEER, &["tcp-send", &addr, &BYTES.to_string()]);
        let retransmits = sender.result();
        let line = sink.line();
        let report = stop_chaos(chaos);
        let (total, altered): (u64, u64) = line
            .split_once(' ')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .unwrap_or_else(|| panic!("tcp-intact printed '{line}'"));
        let errors = checksum_errors(&net.b, "TcpInCsumErrors") - errors_before;
        eprintln!(
            "TCP, silent {silent}: {total} bytes, {altered} altered, {retransmits} retransmissions, {errors} checksum errors at the receiver, {} corrupted",
            injected(&report)
        );
        assert_eq!(total, BYTES, "the transfer did not arrive whole");
        (altered, retransmits, errors, injected(&report))
    };
    let (altered, retransmits, errors, corrupted) = transfer(false, 7111);
    assert!(corrupted > 0, "nothing corrupted");
    assert_eq!(
        altered, 0,
        "TCP delivered corrupted bytes in the default mode"
    );
    assert_eq!(
        errors, corrupted,
        "every corrupted segment failed the receiver's check"
    );
    assert!(
        retransmits >= corrupted,
        "TCP resent fewer segments than it lost"
    );
    let (altered, _, errors, corrupted) = transfer(true, 7112);
    assert!(
        altered > 0 && altered <= corrupted,
        "{altered} bytes altered by {corrupted} corrupted segments"
    );
    assert_eq!(errors, 0, "a silently corrupted segment failed its check");
    assert_no_chaos_programs();
}

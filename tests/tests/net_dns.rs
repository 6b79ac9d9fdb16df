//! `chaos net dns` between a real resolver and a real DNS server: dnsmasq serves a zone in
//! namespace B, and dig and glibc's resolver (getent) ask it from namespace A, over IPv4 and
//! IPv6. Answers for names under the fault's domain come back as the error asked (or the
//! queries vanish); every other name still resolves; the same server over the path beside the
//! faulted one answers normally; nothing is left afterwards.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use chaos_tests::*;

/// dnsmasq in B, listening on B's addresses of both paths, its zone: svc.test (and below) and
/// other.test, each with an IPv4 and an IPv6 address.
struct DnsServer {
    child: Child,
}

impl DnsServer {
    fn start(net: &TestNet) -> DnsServer {
        let listen = [net.v4(0, 2), net.v6(0, 2), net.v4(1, 2), net.v6(1, 2)].join(",");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", TestNet::netns_path(&net.b)))
            .args([
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--pid-file=",
                "--address=/svc.test/10.9.9.9",
                "--address=/svc.test/fd00:9::9",
                "--address=/other.test/10.9.9.8",
                "--address=/other.test/fd00:9::8",
            ])
            .arg(format!("--listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (cargo xtask setup installs dnsmasq-base)");
        let server = DnsServer { child };
        // Up once it answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while dig(net, &net.v4(1, 2), "other.test", "A").status != "NOERROR" {
            assert!(Instant::now() < deadline, "dnsmasq never answered");
            thread::sleep(Duration::from_millis(200));
        }
        server
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What dig got: the response code (or "timeout") and the answer records' data.
struct Answer {
    status: String,
    records: Vec<String>,
}

/// `dig NAME TYPE` from A to `server`, one try of two seconds.
fn dig(net: &TestNet, server: &str, name: &str, kind: &str) -> Answer {
    let output = Command::new("nsenter")
        .arg(format!("--net={}", TestNet::netns_path(&net.a)))
        .args([
            "dig",
            "+tries=1",
            "+time=2",
            &format!("@{server}"),
            name,
            kind,
        ])
        .output()
        .expect("run dig (cargo xtask setup installs bind9-dnsutils)");
    let text = String::from_utf8_lossy(&output.stdout);
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("timeout")
        .to_owned();
    let records = text
        .lines()
        .filter(|line| !line.starts_with(';') && line.contains("\tIN\t"))
        .filter_map(|line| line.split_whitespace().last().map(str::to_owned))
        .collect();
    Answer { status, records }
}

/// glibc's resolver in A (getent ahosts, through /etc/netns/A/resolv.conf): the addresses it
/// found, or None when the lookup failed.
fn getent(net: &TestNet, name: &str) -> Option<String> {
    let output = Command::new("ip")
        .args(["netns", "exec", &net.a, "getent", "ahostsv4", name])
        .output()
        .expect("run ip netns exec getent");
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}

/// /etc/netns/A/resolv.conf naming B's faulted-path address: what `ip netns exec` gives A's
/// resolver. Removed on drop.
struct ResolvConf {
    dir: PathBuf,
}

impl ResolvConf {
    fn new(net: &TestNet) -> ResolvConf {
        let dir = PathBuf::from("/etc/netns").join(&net.a);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/A");
        std::fs::write(
            dir.join("resolv.conf"),
            format!(
                "nameserver {}\noptions timeout:2 attempts:1\n",
                net.v4(0, 2)
            ),
        )
        .expect("write resolv.conf");
        ResolvConf { dir }
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `chaos net dns --netns A --iface a0 ARGS` (the resolver's side).
fn start_dns_fault(net: &TestNet, args: &[&str]) -> Chaos {
    let netns = TestNet::netns_path(&net.a);
    let mut full = vec!["--netns", &netns, "--iface", "a0"];
    full.extend_from_slice(args);
    start_net_fault("dns", &full)
}

/// The report's counters of one direction.
fn counted(report: &serde_json::Value, direction: &str) -> (u64, u64) {
    let row = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["direction"] == direction)
        .unwrap_or_else(|| panic!("no {direction} row: {report}"));
    (
        row["matched"].as_u64().unwrap(),
        row["injected"].as_u64().unwrap(),
    )
}

/// UDP's checksum errors in namespace `ns`, IPv4 and IPv6 together.
fn udp_checksum_errors(ns: &str) -> u64 {
    let output = Command::new("nsenter")
        .arg(format!("--net={}", TestNet::netns_path(ns)))
        .args(["nstat", "-az", "UdpInCsumErrors", "Udp6InCsumErrors"])
        .output()
        .expect("run nstat (iproute2)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn resolvers_get_the_error_for_the_domain_and_answers_for_the_rest() {
    let net = TestNet::new("dns-rcode");
    let _server = DnsServer::start(&net);
    let _resolv = ResolvConf::new(&net);
    assert_eq!(getent(&net, "a.svc.test").as_deref(), Some("10.9.9.9"));
    let chaos = start_dns_fault(&net, &["--rcode", "NXDOMAIN", "--name", "svc.test"]);
    let (v4, v6) = (net.v4(0, 2), net.v6(0, 2));
    // Names under the domain, the domain itself, any case, over IPv4 and IPv6.
    for (server, name, kind) in [
        (&v4, "a.svc.test", "A"),
        (&v6, "B.Svc.Test", "AAAA"),
        (&v4, "svc.test", "A"),
    ] {
        let answer = dig(&net, server, name, kind);
        assert_eq!(answer.status, "NXDOMAIN", "{name} {kind} via {server}");
        assert!(answer.records.is_empty(), "{name}: {:?}", answer.records);
    }
    assert_eq!(
        getent(&net, "c.svc.test"),
        None,
        "glibc resolved c.svc.test"
    );
    // Everything else resolves, and the same server over the path beside answers normally.
    let other = dig(&net, &v6, "x.other.test", "AAAA");
    assert_eq!(
        (other.status.as_str(), other.records),
        ("NOERROR", vec!["fd00:9::8".to_owned()])
    );
    assert_eq!(getent(&net, "x.other.test").as_deref(), Some("10.9.9.8"));
    assert_eq!(
        dig(&net, &v4, "notsvc.test", "A").status,
        "REFUSED",
        "a name that only ends like the domain"
    );
    let beside = dig(&net, &net.v4(1, 2), "a.svc.test", "A");
    assert_eq!(
        (beside.status.as_str(), beside.records),
        ("NOERROR", vec!["10.9.9.9".to_owned()])
    );
    let report = stop_chaos(chaos);
    let (matched, injected) = counted(&report, "ingress");
    assert_eq!(matched, injected, "{report}");
    assert!(
        injected >= 4,
        "four lookups under svc.test were answered: {report}"
    );
    assert_eq!(
        counted(&report, "egress"),
        (0, 0),
        "queries are not responses: {report}"
    );
    assert_eq!(
        getent(&net, "a.svc.test").as_deref(),
        Some("10.9.9.9"),
        "after the run"
    );
    assert_no_chaos_programs();
}

#[test]
fn rewritten_answers_carry_checksums_the_resolver_side_verifies() {
    let net = TestNet::new("dns-csum");
    // The server computes its checksums (no offload), so A's kernel checks each one, and the
    // program must write a correct checksum for the shortened answer.
    let status = Command::new("nsenter")
        .arg(format!("--net={}", TestNet::netns_path(&net.b)))
        .args(["ethtool", "-K", "b0", "tx", "off"])
        .stdout(Stdio::null())
        .status()
        .expect("run ethtool (cargo xtask setup installs it)");
    assert!(status.success());
    let _server = DnsServer::start(&net);
    let errors_before = udp_checksum_errors(&net.a);
    let chaos = start_dns_fault(&net, &["--rcode", "SERVFAIL", "--name", "svc.test"]);
    for server in [net.v4(0, 2), net.v6(0, 2)] {
        let answer = dig(&net, &server, "a.svc.test", "A");
        assert_eq!(answer.status, "SERVFAIL", "via {server}");
        assert!(answer.records.is_empty());
    }
    let report = stop_chaos(chaos);
    assert_eq!(counted(&report, "ingress"), (2, 2), "{report}");
    assert_eq!(
        udp_checksum_errors(&net.a),
        errors_before,
        "a rewritten answer failed its checksum"
    );
    assert_no_chaos_programs();
}

const NETPEER: &str = env!("CARGO_BIN_EXE_netpeer");

/// UDP over IPv4 may go without a checksum (field 0): a rewritten answer must keep none, as a
/// computed one would be a checksum the server never sent. Seen by a raw socket on the resolver's
/// side, before UDP looks at the packet.
#[test]
fn an_ipv4_answer_without_a_checksum_keeps_none() {
    let net = TestNet::new("dns-nocsum");
    let server = net.v4(0, 2);
    let mut responder = net.spawn(&net.b, NETPEER, &["dns-nocsum", &format!("{server}:53")]);
    assert_eq!(responder.line(), "ready");
    let mut capture = net.spawn(&net.a, NETPEER, &["udp-checksums", "0.0.0.0:53"]);
    assert_eq!(capture.line(), "ready");
    let answer = dig(&net, &server, "a.svc.test", "A");
    assert_eq!(
        (answer.status.as_str(), answer.records),
        ("NOERROR", vec!["10.9.9.9".to_owned()])
    );
    assert_eq!(capture.line(), "0000", "the server sends no checksum");
    let chaos = start_dns_fault(&net, &["--rcode", "SERVFAIL"]);
    let answer = dig(&net, &server, "a.svc.test", "A");
    assert_eq!(answer.status, "SERVFAIL");
    assert_eq!(
        capture.line(),
        "0000",
        "the rewritten answer got a checksum the server never sent"
    );
    let report = stop_chaos(chaos);
    assert_eq!(counted(&report, "ingress"), (1, 1), "{report}");
    assert_no_chaos_programs();
}

#[test]
fn dropped_queries_time_out_for_the_domain_only() {
    let net = TestNet::new("dns-drop");
    let _server = DnsServer::start(&net);
    let chaos = start_dns_fault(&net, &["--drop", "--name", "svc.test"]);
    assert_eq!(
        dig(&net, &net.v4(0, 2), "a.svc.test", "A").status,
        "timeout"
    );
    assert_eq!(
        dig(&net, &net.v6(0, 2), "a.svc.test", "AAAA").status,
        "timeout"
    );
    assert_eq!(
        dig(&net, &net.v4(0, 2), "a.other.test", "A").status,
        "NOERROR"
    );
    assert_eq!(
        dig(&net, &net.v4(1, 2), "a.svc.test", "A").status,
        "NOERROR",
        "the path beside"
    );
    let report = stop_chaos(chaos);
    assert_eq!(counted(&report, "egress"), (2, 2), "{report}");
    assert_eq!(counted(&report, "ingress"), (0, 0), "{report}");
    assert_no_chaos_programs();
}

#[test]
fn dns_refuses_what_it_cannot_do() {
    let net = TestNet::new("dns-bad");
    let netns = TestNet::netns_path(&net.a);
    let on_a0 = ["net", "dns", "--netns", &netns, "--iface", "a0"];
    let with = |extra: &[&'static str]| [&on_a0[..], extra].concat();
    assert_refused(
        &with(&["--rcode", "NOERROR"]),
        &["NOERROR", "SERVFAIL, NXDOMAIN or REFUSED"],
    );
    assert_refused(
        &with(&["--drop", "--name", "bad..name"]),
        &["bad..name", "example.com"],
    );
    assert_refused(
        &with(&["--drop", "--rcode", "REFUSED"]),
        &["--drop", "--rcode"],
    );
    assert_refused(&with(&[]), &["--rcode", "--drop"]);
    assert_refused(
        &["net", "dns", "--cgroup", "/sys/fs/cgroup", "--drop"],
        &["--cgroup"],
    );
    assert_no_chaos_programs();
}

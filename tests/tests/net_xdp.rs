//! `chaos net drop|corrupt --hook xdp` on a real veth path between two namespaces, in native
//! (driver) and generic mode: arrivals over the faulted path follow the probability (within 4
//! sigma of 10,000 datagrams, IPv4 and IPv6), corruption is caught by the receiver's check or
//! reaches the application with --silent, the path beside it is untouched, what XDP cannot do is
//! refused with exit 2, an interface that already carries an XDP program is refused naming it,
//! and a SIGKILLed loader leaves nothing behind.

use std::process::Command;

use chaos_tests::*;

const NETPEER: &str = env!("CARGO_BIN_EXE_netpeer");
const DATAGRAMS: u64 = 10_000;
const P: f64 = 0.3;

/// What a receiver in B saw of DATAGRAMS sent from A (netpeer udp-intact).
struct Received {
    arrived: u64,
    altered: u64,
}

fn send(net: &TestNet, to: &str, port: u16) -> Received {
    let line = net.udp_a_to_b(NETPEER, "udp-intact", to, port, DATAGRAMS);
    let (arrived, altered) = line
        .split_once(' ')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or_else(|| panic!("udp-intact printed '{line}'"));
    Received { arrived, altered }
}

fn assert_share(count: u64, share: f64, what: &str) {
    assert_within_4_sigma(count, DATAGRAMS as f64 * share, DATAGRAMS, P, what);
}

/// Starts `chaos net ACTION` at XDP in `mode` on B's b0, 30 % of the arriving packets.
fn start_at_b0(net: &TestNet, action: &str, mode: &str, extra: &[&str]) -> Chaos {
    let netns = TestNet::netns_path(&net.b);
    let hook = format!("xdp-{mode}");
    let mut args = vec![
        "--netns",
        &netns,
        "--iface",
        "b0",
        "--hook",
        &hook,
        "--probability",
        "0.3",
    ];
    args.extend_from_slice(extra);
    start_net_fault(action, &args)
}

/// Sends IPv4 and IPv6 datagrams over the faulted path and the path beside it; checks the one
/// beside was untouched and the report's mechanism; returns the faulted path's and the report.
fn over_both_families(
    net: &TestNet,
    chaos: Chaos,
    mode: &str,
) -> (Received, Received, serde_json::Value) {
    let v4 = send(net, &net.v4(0, 2), 7401);
    let v6 = send(net, &net.v6(0, 2), 7402);
    let beside = send(net, &net.v4(1, 2), 7403);
    let report = stop_chaos(chaos);
    assert_eq!(
        (beside.arrived, beside.altered),
        (DATAGRAMS, 0),
        "the untargeted path was touched"
    );
    let fault = &report["faults"][0];
    assert_eq!(fault["mechanism"], format!("xdp-{mode}"), "{report}");
    assert_eq!(fault["direction"], "ingress");
    assert_no_chaos_programs();
    (v4, v6, report)
}

fn injected(report: &serde_json::Value) -> u64 {
    report["faults"][0]["injected"].as_u64().unwrap()
}

/// Asserts the report counts every datagram lost, and at most a few packets more: a drop also
/// takes the odd IPv6 router solicitation or MLD report the sender's kernel makes.
fn assert_drops_counted(report: &serde_json::Value, lost: u64) {
    let injected = injected(report);
    assert!(
        injected >= lost && injected <= lost + 20,
        "injected {injected}, lost {lost}: {report}"
    );
}

fn xdp_drop(mode: &str) {
    let net = TestNet::new(&format!("xdp-drop-{mode}"));
    let chaos = start_at_b0(&net, "drop", mode, &[]);
    let (v4, v6, report) = over_both_families(&net, chaos, mode);
    for (family, got) in [("IPv4", &v4), ("IPv6", &v6)] {
        assert_share(got.arrived, 1.0 - P, &format!("{mode} {family} arrived"));
        assert_eq!(got.altered, 0);
    }
    assert_drops_counted(&report, 2 * DATAGRAMS - v4.arrived - v6.arrived);
}

#[test]
fn native_xdp_drops_follow_the_probability_on_the_faulted_path_only() {
    xdp_drop("native");
}

#[test]
fn generic_xdp_drops_follow_the_probability_on_the_faulted_path_only() {
    xdp_drop("generic");
}

/// Corruption at XDP, with the sender computing its checksums (as from a wire) or leaving them
/// to offload (veth's default): by default what the fault picks is lost (the receiver's check
/// catches a finished checksum, chaos drops one still to be computed) and no altered byte
/// reaches the application; with --silent every datagram arrives and the altered ones are
/// exactly those the fault reports. Four runs cover every pair of mode, checksum state and
/// action (all eight would cost each emulated guest about a minute more).
#[test]
fn xdp_corruption_is_lost_or_reaches_the_application_with_silent() {
    for (mode, offload, silent) in [
        ("native", false, false),
        ("native", true, true),
        ("generic", true, false),
        ("generic", false, true),
    ] {
        let what = format!("{mode} offload {offload} silent {silent}");
        let net = TestNet::new(&format!("xdp-corrupt-{mode}"));
        net.checksum_offload(&net.a, "a0", offload);
        let extra: &[&str] = if silent { &["--silent"] } else { &[] };
        let chaos = start_at_b0(&net, "corrupt", mode, extra);
        let (v4, v6, report) = over_both_families(&net, chaos, mode);
        for (family, got) in [("IPv4", &v4), ("IPv6", &v6)] {
            let what = format!("{what} {family}");
            if silent {
                assert_eq!(got.arrived, DATAGRAMS, "{what}: datagrams were lost");
                assert_share(got.altered, P, &format!("{what} altered"));
            } else {
                assert_share(got.arrived, 1.0 - P, &format!("{what} arrived"));
                assert_eq!(got.altered, 0, "{what}: corrupted data arrived");
            }
        }
        let acted = if silent {
            v4.altered + v6.altered
        } else {
            2 * DATAGRAMS - v4.arrived - v6.arrived
        };
        assert_eq!(injected(&report), acted, "{what}: {report}");
    }
}

#[test]
fn what_xdp_cannot_do_is_refused() {
    let net = TestNet::new("xdp-bad");
    let netns = TestNet::netns_path(&net.b);
    let at = ["--netns", &netns, "--iface", "b0", "--hook", "xdp"];
    let with = |head: &[&'static str], extra: &[&'static str]| [head, &at[..], extra].concat();
    for (action, extra, named) in [
        (
            &["net", "duplicate"][..],
            &["--probability", "0.1"][..],
            "clone",
        ),
        (
            &["net", "delay"],
            &["--delay", "10ms"],
            "hold a packet back",
        ),
        (
            &["net", "limit"],
            &["--rate", "1mbit"],
            "hold a packet back",
        ),
        (&["net", "dns"], &["--rcode", "SERVFAIL"], "skb helpers"),
        (
            &["net", "drop"],
            &["--probability", "0.1", "--direction", "egress"],
            "arriving",
        ),
    ] {
        assert_refused(&with(action, extra), &["--hook xdp", named]);
    }
    assert_refused(
        &[
            "net",
            "drop",
            "--cgroup",
            "/sys/fs/cgroup",
            "--hook",
            "xdp",
            "--probability",
            "0.1",
        ],
        &["--hook xdp", "cgroup"],
    );
    assert_refused(
        &[
            "net",
            "drop",
            "--netns",
            &netns,
            "--hook",
            "bpf",
            "--probability",
            "0.1",
        ],
        &["'bpf'", "xdp-generic"],
    );
    // Loopback has no native XDP of its own: insisting on it is refused, naming the fallback.
    assert_refused(
        &[
            "net",
            "drop",
            "--netns",
            &netns,
            "--iface",
            "lo",
            "--hook",
            "xdp-native",
            "--probability",
            "0.1",
        ],
        &["lo", "native XDP", "xdp-generic"],
    );
}

/// XDP holds one program per interface and mode: a second run on an interface that carries one
/// is refused with exit 2, naming it, and the first run goes on untouched.
#[test]
fn an_interface_that_carries_an_xdp_program_is_refused_naming_it() {
    let net = TestNet::new("xdp-busy");
    let netns = TestNet::netns_path(&net.b);
    let first = start_at_b0(&net, "drop", "generic", &[]);
    let second = chaos(&[
        "net",
        "drop",
        "--netns",
        &netns,
        "--iface",
        "b0",
        "--hook",
        "xdp",
        "--probability",
        "1",
        "--for",
        "5s",
    ]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    for named in ["b0", "xdp_ingress", "generic", "--hook tc"] {
        assert!(stderr.contains(named), "should name {named}: {stderr}");
    }
    let v4 = send(&net, &net.v4(0, 2), 7411);
    let report = stop_chaos(first);
    assert_share(v4.arrived, 1.0 - P, "the first run's drops");
    assert_drops_counted(&report, DATAGRAMS - v4.arrived);
    assert_no_chaos_programs();
}

/// The XDP link dies with the loader's file descriptors: after SIGKILL the path is whole again
/// and no program of chaos is left.
#[test]
fn a_killed_xdp_loader_leaves_no_loss_behind() {
    let net = TestNet::new("xdp-kill");
    let netns = TestNet::netns_path(&net.b);
    let mut chaos = start_net_fault(
        "drop",
        &[
            "--netns",
            &netns,
            "--iface",
            "b0",
            "--hook",
            "xdp",
            "--probability",
            "1",
        ],
    );
    let addr = format!("{}:7421", net.v4(0, 2));
    let mut sink = net.spawn(&net.b, NETPEER, &["udp-sink", &addr, "300"]);
    assert_eq!(sink.line(), "ready");
    let mut sender = net.spawn(&net.a, NETPEER, &["udp-send", &addr, "200"]);
    assert_eq!(sender.line(), "sent 200");
    chaos.kill().expect("SIGKILL chaos");
    chaos.wait().expect("wait chaos");
    let mut sender = net.spawn(&net.a, NETPEER, &["udp-send", &addr, "200"]);
    assert_eq!(sender.line(), "sent 200");
    assert_eq!(
        sink.result(),
        200,
        "packets were lost after the loader died"
    );
    assert_no_chaos_programs();
}

/// A real NIC driver's native XDP: two virtio-net NICs on one wire (a qemu hub), one in each
/// namespace of the bed. Drops at p = 0.3 in native and generic mode follow the probability over
/// IPv4 and IPv6 while the veth pair beside them and the other direction of the wire are
/// untouched.
#[test]
fn native_xdp_drops_on_virtio_net_nics() {
    let nics = idle_virtio_nics();
    if nics.len() < 2 {
        assert!(
            std::env::var_os("CHAOS_VM").is_none(),
            "every guest has two virtio-net NICs on a qemu hub: found {nics:?}"
        );
        eprintln!(
            "NOT RUN here: no two idle virtio-net NICs on one wire (found {nics:?}); the guests have them"
        );
        return;
    }
    let net = TestNet::over_nics("xdp-virtio", [&nics[0], &nics[1]]);
    // The wire itself loses nothing: the counts below are the fault's.
    assert_eq!(send(&net, &net.v4(0, 2), 7430).arrived, DATAGRAMS);
    for mode in ["native", "generic"] {
        let chaos = start_at_b0(&net, "drop", mode, &[]);
        let (v4, v6, report) = over_both_families(&net, chaos, mode);
        for (family, got) in [("IPv4", &v4), ("IPv6", &v6)] {
            assert_share(
                got.arrived,
                1.0 - P,
                &format!("virtio {mode} {family} arrived"),
            );
        }
        assert_drops_counted(&report, 2 * DATAGRAMS - v4.arrived - v6.arrived);
    }
}

/// `chaos probe` in a namespace holding a veth pair and loopback says which interfaces run XDP
/// in their driver (veth does, loopback does not), as the kernel reports it from 6.3 on; before,
/// it says that the kernel does not tell.
#[test]
fn probe_names_the_interfaces_that_run_xdp_natively() {
    let net = TestNet::new("xdpprobe");
    let output = Command::new("ip")
        .args(["netns", "exec", &net.b])
        .arg(chaos_bin())
        .args(["probe", "--json"])
        .output()
        .expect("ip netns exec chaos probe");
    let probe = json_report(&output);
    let finding = probe["findings"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["feature"] == "xdp-native"))
        .unwrap_or_else(|| panic!("no xdp-native finding: {probe}"));
    let detail = finding["detail"].as_str().unwrap_or_default();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut version = release
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    if (major, minor) < (6, 3) {
        assert_eq!(finding["supported"], false, "{finding}");
        assert!(detail.contains("6.3"), "{finding}");
        return eprintln!("kernel {major}.{minor} does not report XDP features: {detail}");
    }
    assert_eq!(finding["supported"], true, "{finding}");
    // The kernel may add devices of its own to a namespace (sit0 where sit is built in).
    let (native, generic) = detail
        .strip_prefix("native: ")
        .and_then(|rest| rest.split_once("; generic only: "))
        .unwrap_or_else(|| panic!("{finding}"));
    assert_eq!(native, "b0, b1", "veth runs XDP natively: {finding}");
    assert!(
        generic.split(", ").any(|name| name == "lo"),
        "loopback does not: {finding}"
    );
    eprintln!("{detail}");
}

//! A network test bed: two network namespaces joined by two veth pairs, addresses only inside
//! them, removed on drop with everything in them.
//!
//! ```text
//!   namespace A                namespace B
//!   a0 10.R.1.1 fd00:R:1::1 -- b0 10.R.1.2 fd00:R:1::2   (the path the tests fault)
//!   a1 10.R.2.1 fd00:R:2::1 -- b1 10.R.2.2 fd00:R:2::2   (an untargeted path beside it)
//! ```

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
};

pub struct TestNet {
    /// Namespace names under /run/netns.
    pub a: String,
    pub b: String,
    /// R in the addresses above: distinct per test process.
    subnet: u32,
    /// [`TestNet::over_nics`]: the NICs' own names, put back when the bed goes.
    nics: Option<[String; 2]>,
}

impl TestNet {
    pub fn new(tag: &str) -> Self {
        Self::build(tag, None)
    }

    /// The same bed with two NICs of this machine, joined on their wire, as the faulted path:
    /// they move into A and B as a0 and b0 (and back, under their own names, when the bed
    /// goes), so a fault meets their own driver.
    pub fn over_nics(tag: &str, nics: [&str; 2]) -> Self {
        Self::build(tag, Some(nics))
    }

    fn build(tag: &str, nics: Option<[&str; 2]>) -> Self {
        let pid = std::process::id();
        let net = TestNet {
            a: format!("chaos-{tag}-{pid}-a"),
            b: format!("chaos-{tag}-{pid}-b"),
            subnet: 20 + pid % 200,
            nics: nics.map(|nics| nics.map(str::to_owned)),
        };
        let r = net.subnet;
        let mut steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), net.a.clone()],
            vec!["netns".into(), "add".into(), net.b.clone()],
        ];
        let words = |line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
        for pair in 0..2 {
            let (a, b) = (format!("a{pair}"), format!("b{pair}"));
            match nics {
                Some([nic_a, nic_b]) if pair == 0 => {
                    for (nic, ns, name) in [(nic_a, &net.a, &a), (nic_b, &net.b, &b)] {
                        steps.push(words(format!("link set dev {nic} netns {ns}")));
                        steps.push(words(format!("-n {ns} link set dev {nic} name {name}")));
                    }
                }
                _ => steps.push(words(format!(
                    "link add {a} netns {} type veth peer name {b} netns {}",
                    net.a, net.b
                ))),
            }
            for (ns, dev, host) in [(&net.a, &a, 1), (&net.b, &b, 2)] {
                let subnet = pair + 1;
                for command in [
                    format!("-n {ns} addr add 10.{r}.{subnet}.{host}/24 dev {dev}"),
                    format!("-n {ns} addr add fd00:{r}:{subnet}::{host}/64 dev {dev} nodad"),
                    format!("-n {ns} link set {dev} up"),
                    format!("-n {ns} link set lo up"),
                ] {
                    steps.push(command.split(' ').map(str::to_owned).collect());
                }
            }
        }
        for step in steps {
            ip(&step);
        }
        // Permanent neighbour entries: no ARP or neighbour discovery during a test, whose
        // packets a fault could drop and so lose more than it was asked to.
        for pair in 0..2 {
            for (ns, dev, peer_ns, peer_dev, peer) in [
                (&net.a, format!("a{pair}"), &net.b, format!("b{pair}"), 2),
                (&net.b, format!("b{pair}"), &net.a, format!("a{pair}"), 1),
            ] {
                let mac = mac_of(peer_ns, &peer_dev);
                for addr in [net.v4(pair, peer), net.v6(pair, peer)] {
                    ip(&[
                        "-n",
                        ns,
                        "neigh",
                        "replace",
                        &addr,
                        "lladdr",
                        &mac,
                        "dev",
                        &dev,
                        "nud",
                        "permanent",
                    ]
                    .map(str::to_owned));
                }
            }
        }
        net
    }

    /// The address of `host` (1: in A, 2: in B) on `path` (0: faulted, 1: untargeted).
    pub fn v4(&self, path: u32, host: u32) -> String {
        format!("10.{}.{}.{host}", self.subnet, path + 1)
    }

    pub fn v6(&self, path: u32, host: u32) -> String {
        format!("fd00:{}:{}::{host}", self.subnet, path + 1)
    }

    pub fn netns_path(ns: &str) -> String {
        format!("/run/netns/{ns}")
    }

    /// Sends `n` numbered datagrams (netpeer udp-send) from A to `to` (an address of B, IPv4 or
    /// IPv6) on `port`, where netpeer `sink` (udp-sink, udp-intact, udp-bursts) receives them
    /// until they stop for a second; returns the sink's report line.
    pub fn udp_a_to_b(&self, netpeer: &str, sink: &str, to: &str, port: u16, n: u64) -> String {
        let addr = if to.contains(':') {
            format!("[{to}]:{port}")
        } else {
            format!("{to}:{port}")
        };
        let mut receiver = self.spawn(&self.b, netpeer, &[sink, &addr, "1000"]);
        assert_eq!(receiver.line(), "ready");
        let mut sender = self.spawn(&self.a, netpeer, &["udp-send", &addr, &n.to_string()]);
        assert_eq!(sender.line(), format!("sent {n}"));
        receiver.line()
    }

    /// Turns checksum and segmentation offload of `dev` in `ns` on or off: off, the sender's
    /// stack cuts segments and computes each checksum itself, as packets from a wire carry them.
    pub fn checksum_offload(&self, ns: &str, dev: &str, on: bool) {
        let state = if on { "on" } else { "off" };
        let status = Command::new("nsenter")
            .arg(format!("--net={}", Self::netns_path(ns)))
            .args([
                "ethtool", "-K", dev, "tx", state, "tso", state, "gso", state,
            ])
            .stdout(Stdio::null())
            .status()
            .expect("run ethtool (cargo xtask setup installs it)");
        assert!(status.success(), "ethtool -K {dev} tx failed");
    }

    /// Starts `netpeer ARGS` inside namespace `ns` with piped stdout.
    pub fn spawn(&self, ns: &str, netpeer: &str, args: &[&str]) -> Peer {
        Peer::spawn(self.command(ns, netpeer, args))
    }

    /// As [`TestNet::spawn`], the process inside `cgroup` from its start.
    pub fn spawn_in(
        &self,
        ns: &str,
        cgroup: &crate::TestCgroup,
        netpeer: &str,
        args: &[&str],
    ) -> Peer {
        let mut command = self.command(ns, netpeer, args);
        crate::join_before_exec(&mut command, cgroup);
        Peer::spawn(command)
    }

    fn command(&self, ns: &str, netpeer: &str, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", Self::netns_path(ns)))
            .arg(netpeer)
            .args(args);
        command
    }
}

/// The NICs of this machine that the virtio_net driver drives and nothing uses yet (down, no
/// address): the guests have two, joined by a qemu hub; the host's own NIC is never taken.
pub fn idle_virtio_nics() -> Vec<String> {
    // Debian's kernels build the driver as a module, and nothing loads it at boot in the guests.
    let _ = Command::new("modprobe")
        .arg("virtio_net")
        .stderr(std::process::Stdio::null())
        .status();
    let mut nics: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let driver = std::fs::read_link(path.join("device/driver")).ok()?;
            let flags = std::fs::read_to_string(path.join("flags")).ok()?;
            let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()? & 1 != 0;
            (driver.file_name()? == "virtio_net" && !up)
                .then(|| path.file_name()?.to_str().map(str::to_owned))?
        })
        .collect();
    nics.sort();
    nics
}

fn ip(args: &[String]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("run ip (iproute2)");
    assert!(status.success(), "ip {}", args.join(" "));
}

/// The MAC address of `dev` in namespace `ns` (`ip -br link`: name, state, address).
fn mac_of(ns: &str, dev: &str) -> String {
    let output = Command::new("ip")
        .args(["-n", ns, "-br", "link", "show", "dev", dev])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}"))
        .to_owned()
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting a namespace would send a NIC back as a0 or b0, which the next bed's veth
        // pair is named: each goes back under its own name first.
        let here = std::process::id().to_string();
        for (ns, dev, name) in self
            .nics
            .iter()
            .flat_map(|[a, b]| [(&self.a, "a0", a), (&self.b, "b0", b)])
        {
            let _ = Command::new("ip")
                .args(["-n", ns, "link", "set", "dev", dev, "netns", &here])
                .status();
            let _ = Command::new("ip")
                .args(["link", "set", "dev", dev, "name", name])
                .status();
        }
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A running netpeer.
pub struct Peer {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl Peer {
    /// Starts `command` (a netpeer, directly or through nsenter or podman) with piped stdout.
    pub fn spawn(mut command: Command) -> Peer {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start netpeer");
        let lines = BufReader::new(child.stdout.take().expect("piped"));
        Peer { child, lines }
    }

    /// The next line it prints.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.lines.read_line(&mut line).expect("read netpeer");
        assert!(!line.is_empty(), "netpeer ended without a line");
        line.trim().to_owned()
    }

    /// Its last line, as a number, once it exits.
    pub fn result(mut self) -> u64 {
        let line = self.line();
        let status = self.child.wait().expect("wait netpeer");
        assert!(status.success(), "netpeer failed: {status}");
        line.parse()
            .unwrap_or_else(|_| panic!("netpeer printed '{line}'"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

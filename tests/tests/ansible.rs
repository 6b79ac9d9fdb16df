//! The Ansible role (integrations/ansible) run by the real ansible-playbook (ansible-core from
//! PyPI, the venv `cargo xtask setup` makes) over a local connection, with the example playbook
//! as shipped: it installs the binary, starts a detached `chaos fail --cgroup … --op connect`
//! on a victim's cgroup, holds it while a real HTTP server is checked, and stops it in its
//! `always:` block, also when a task of the block fails. A bystander outside the cgroup is never
//! refused.

use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use chaos_tests::*;
use serde_json::{Value, json};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");
const ECONNREFUSED: i32 = 111;

/// A real HTTP service on loopback (Python's http.server), stopped on drop.
struct HttpService {
    child: Child,
    url: String,
}

impl HttpService {
    fn start(dir: &std::path::Path) -> Self {
        let port = free_port();
        let child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server never listened");
            thread::sleep(Duration::from_millis(50));
        }
        HttpService {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        }
    }
}

impl Drop for HttpService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-ansible-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the example playbook on localhost (local connection, no become: the tests run as root)
/// with `vars`; the binary goes to `dir`, not to the system.
fn playbook(dir: &std::path::Path, vars: Value) -> Output {
    playbook_on(dir, "localhost,", vars)
}

/// As [`playbook`], with the inventory `inventory` (a file, or `host,` lists).
fn playbook_on(dir: &std::path::Path, inventory: &str, vars: Value) -> Output {
    let playbook =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../integrations/ansible/fault.yml");
    let mut all = json!({
        "chaos_hosts": "all",
        "chaos_become": false,
        "chaos_binary_src": chaos_bin(),
        "chaos_bin": dir.join("chaos"),
    });
    all.as_object_mut()
        .unwrap()
        .extend(vars.as_object().unwrap().clone());
    let output = Command::new(python_tool("ansible-playbook"))
        .args(["-i", inventory, "-c", "local", "-e", &all.to_string()])
        .arg(playbook)
        .current_dir(dir)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_PYTHON_INTERPRETER", python_tool("python"))
        .output()
        .expect("run ansible-playbook");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn detached_runs() -> Vec<Value> {
    let output = chaos(&["list", "--json"]);
    assert!(output.status.success());
    serde_json::from_slice::<Value>(&output.stdout)
        .expect("chaos list --json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Asserts the victim was refused during the play and connects again after it.
fn assert_refused_then_recovered(victim: &Victim, played: u64) {
    assert!(
        victim
            .calls()
            .iter()
            .any(|call| call.errno == Some(ECONNREFUSED)),
        "the victim's connects never failed"
    );
    victim.wait_for_call_after(played);
    let after: Vec<_> = victim
        .calls()
        .into_iter()
        .filter(|c| c.at_ns > played)
        .collect();
    assert!(
        after.iter().all(|call| call.errno.is_none()),
        "connects still failed after the play: {after:?}"
    );
}

#[test]
fn the_playbook_starts_holds_and_stops_a_fault() {
    let dir = workdir("play");
    let service = HttpService::start(&dir);
    let bed = ConnectBed::new(VICTIM, "ansible-play");
    let victim = bed.victim();
    let bystander = Victim::connecting(VICTIM, None);
    let output = playbook(
        &dir,
        json!({
            "target_cgroup": bed.cgroup.path,
            "service_url": service.url,
            "fault_for": "10m",
            "hold_s": 3,
        }),
    );
    let played = monotonic_ns();
    assert!(output.status.success(), "ansible-playbook failed");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("failed=0"), "{log}");
    assert!(dir.join("chaos").exists(), "the role did not install chaos");
    assert_refused_then_recovered(&victim, played);
    assert!(detached_runs().is_empty(), "the run outlived the play");
    assert_bystander_untouched(&bystander);
    assert_no_chaos_programs();
}

/// A task of the block fails (the service does not answer): the play fails, and its `always:`
/// still stops the fault at once, long before its deadline.
#[test]
fn a_failed_play_still_stops_its_fault() {
    let dir = workdir("failed");
    let bed = ConnectBed::new(VICTIM, "ansible-failed");
    let victim = bed.victim();
    let output = playbook(
        &dir,
        json!({
            "target_cgroup": bed.cgroup.path,
            "service_url": format!("http://127.0.0.1:{}/", free_port()),
            "fault_for": "10m",
            "hold_s": 1,
        }),
    );
    let played = monotonic_ns();
    assert!(!output.status.success(), "the play should fail");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("Stop the fault"), "{log}");
    assert!(detached_runs().is_empty(), "the failed play left its fault");
    assert_refused_then_recovered(&victim, played);
    assert_no_chaos_programs();
}

/// The blast radius: four nodes (aliases of this machine), a quarter at a time, no failure
/// allowed. The first node's check fails: its fault is stopped and the rollout ends there, so
/// the other three never get one.
#[test]
fn a_failing_node_ends_the_rollout_before_the_next_batch() {
    let dir = workdir("serial");
    let inventory = dir.join("inventory.ini");
    std::fs::write(&inventory, "node1\nnode2\nnode3\nnode4\n").unwrap();
    let bed = ConnectBed::new(VICTIM, "ansible-serial");
    let victim = bed.victim();
    let output = playbook_on(
        &dir,
        inventory.to_str().unwrap(),
        json!({
            "target_cgroup": bed.cgroup.path,
            "service_url": format!("http://127.0.0.1:{}/", free_port()),
            "fault_for": "10m",
            "hold_s": 1,
        }),
    );
    let played = monotonic_ns();
    assert!(!output.status.success(), "the play should fail");
    let log = String::from_utf8_lossy(&output.stdout);
    let started = |node: &str| {
        log.lines()
            .skip_while(|line| !line.contains("Start the fault as a detached run"))
            .nth(1)
            .is_some_and(|line| line.contains(node))
    };
    assert!(started("node1"), "{log}");
    for node in ["node2", "node3", "node4"] {
        assert!(
            !log.contains(&format!("[{node}]")),
            "{node} was touched: {log}"
        );
    }
    assert!(
        detached_runs().is_empty(),
        "the failed node's fault was left"
    );
    assert_refused_then_recovered(&victim, played);
    assert_no_chaos_programs();
}

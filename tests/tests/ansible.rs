//! The Ansible role (integrations/ansible) run by the real ansible-playbook (ansible-core from
//! PyPI, the venv `cargo xtask setup` makes) over a local connection, with the example playbook
//! as shipped: it installs the binary, starts a detached `chaos fail --cgroup … --op connect`
//! on a victim's cgroup, holds it while a real HTTP server is checked, and stops it in its
//! `always:` block, also when a task of the block fails. A bystander outside the cgroup is never
//! refused.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use chaos_tests::*;
use serde_json::{Value, json};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

fn workdir(name: &str) -> PathBuf {
    scratch_dir("ansible", name)
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

/// Runs the playbook on `inventory` against a service that does not answer: the play fails,
/// and its `always:` still stops the fault at once, long before its deadline. Returns the log.
fn play_with_the_service_down(name: &str, inventory: Option<&str>) -> String {
    let dir = workdir(name);
    let bed = ConnectBed::new(VICTIM, &format!("ansible-{name}"));
    let victim = bed.victim();
    let inventory = match inventory {
        Some(hosts) => {
            let file = dir.join("inventory.ini");
            std::fs::write(&file, hosts).unwrap();
            file.display().to_string()
        }
        None => "localhost,".to_owned(),
    };
    let output = playbook_on(
        &dir,
        &inventory,
        json!({
            "target_cgroup": bed.cgroup.path,
            "service_url": format!("http://127.0.0.1:{}/", free_port()),
            "fault_for": "10m",
            "hold_s": 1,
        }),
    );
    let played = monotonic_ns();
    assert!(!output.status.success(), "the play should fail");
    assert!(detached_runs().is_empty(), "the failed play left its fault");
    assert_refused_then_recovered(&victim, played);
    assert_no_chaos_programs();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A task of the block fails (the service does not answer): the play fails, and its `always:`
/// still stops the fault at once.
#[test]
fn a_failed_play_still_stops_its_fault() {
    let log = play_with_the_service_down("failed", None);
    assert!(log.contains("Stop the fault"), "{log}");
}

/// The blast radius: four nodes (aliases of this machine), a quarter at a time, no failure
/// allowed. The first node's check fails: its fault is stopped and the rollout ends there, so
/// the other three never get one.
#[test]
fn a_failing_node_ends_the_rollout_before_the_next_batch() {
    let log = play_with_the_service_down("serial", Some("node1\nnode2\nnode3\nnode4\n"));
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
}

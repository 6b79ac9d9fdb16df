//! The Chaos Toolkit extension (integrations/chaostoolkit) driven by the real toolkit (chaostoolkit
//! 1.19, chaostoolkit-lib 1.44, from the venv `cargo xtask setup` makes), with the example
//! experiment as shipped: a real HTTP server (Python's http.server) must answer before and
//! after; the extension starts a detached `chaos fail --cgroup … --op connect` on a victim's
//! cgroup, its probes see the run live and counting, its rollback stops it. A bystander outside
//! the cgroup is never hit. Killing the toolkit mid-run leaves the fault to its in-kernel
//! deadline, which ends it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use chaos_tests::*;
use serde_json::Value;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");
const ECONNREFUSED: i32 = 111;

fn integration_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../integrations/chaostoolkit")
}

/// Starts the toolkit's `chaos run` on the example experiment in `dir` (its journal there), the
/// extension importable, the configuration in its environment.
fn start_toolkit(dir: &Path, env: &[(&str, &str)]) -> Child {
    start_experiment(&example("connect-refused.json"), dir, env)
}

/// The extension's example experiment `name`.
fn example(name: &str) -> PathBuf {
    integration_dir().join("examples").join(name)
}

/// As [`start_toolkit`], for the experiment file `experiment`.
fn start_experiment(experiment: &Path, dir: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(python_tool("chaos"))
        .args(["--no-log-file", "run", "--journal-path", "journal.json"])
        .arg(experiment)
        .current_dir(dir)
        .env("PYTHONPATH", integration_dir())
        .env("CHAOS_BIN", chaos_bin())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Chaos Toolkit")
}

fn workdir(name: &str) -> PathBuf {
    scratch_dir("ctk", name)
}

/// The journal the toolkit wrote in `dir`.
fn journal(dir: &Path) -> Value {
    let text = std::fs::read(dir.join("journal.json")).expect("journal.json");
    serde_json::from_slice(&text).expect("a JSON journal")
}

/// The run entry of the journal for the activity `name`.
fn activity<'a>(journal: &'a Value, section: &str, name: &str) -> &'a Value {
    journal[section]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["activity"]["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in the journal's {section}: {journal:#}"))
}

#[test]
fn the_toolkit_starts_watches_and_rolls_back_a_fault() {
    let dir = workdir("run");
    let service = HttpService::start(&dir);
    let bed = ConnectBed::new(VICTIM, "ctk-run");
    let victim = bed.victim();
    let bystander = Victim::connecting(VICTIM, None);
    let cgroup = bed.cgroup.path.display().to_string();
    let toolkit = start_toolkit(
        &dir,
        &[
            ("TARGET_CGROUP", &cgroup),
            ("SERVICE_URL", &service.url),
            ("FAULT_FOR", "10m"),
            ("HOLD_S", "3"),
        ],
    );
    let output = toolkit.wait_with_output().expect("the toolkit");
    let log = String::from_utf8_lossy(&output.stderr);
    eprintln!("{log}");
    assert!(output.status.success(), "chaos run (the toolkit) failed");
    let ended = monotonic_ns();
    let journal = journal(&dir);
    assert_eq!(journal["status"], "completed", "{journal:#}");
    assert_eq!(journal["deviated"], false);
    for phase in ["before", "after"] {
        assert_eq!(
            journal["steady_states"][phase]["steady_state_met"], true,
            "{phase}: {journal:#}"
        );
    }
    let started = activity(&journal, "run", "refuse-connections");
    assert_eq!(started["status"], "succeeded", "{started:#}");
    let run_id = started["output"]["id"].as_str().expect("the run's id");
    assert_eq!(activity(&journal, "run", "fault-is-live")["output"], true);
    let counters = &activity(&journal, "run", "fault-counters")["output"];
    assert!(
        counters["injected"].as_u64().unwrap_or(0) > 0,
        "the probe saw no refused connect: {counters}"
    );
    let rollback = activity(&journal, "rollbacks", "stop-the-fault");
    assert_eq!(rollback["output"][0]["id"], run_id);
    assert_eq!(rollback["output"][0]["stopped"], true, "{rollback:#}");

    // The fault was real while it ran, and gone after the rollback.
    assert_refused_then_recovered(&victim, ended);
    assert_bystander_untouched(&bystander);
    assert!(detached_runs().is_empty(), "a run was left behind");
    assert_no_chaos_programs();
}

/// The toolkit SIGKILLed in the middle of the method runs no rollback and no control: the
/// detached run goes on, and its in-kernel deadline ends it.
#[test]
fn a_killed_toolkit_leaves_the_fault_to_its_deadline() {
    let dir = workdir("kill");
    let service = HttpService::start(&dir);
    let bed = ConnectBed::new(VICTIM, "ctk-kill");
    let victim = bed.victim();
    let cgroup = bed.cgroup.path.display().to_string();
    let mut toolkit = start_toolkit(
        &dir,
        &[
            ("TARGET_CGROUP", &cgroup),
            ("SERVICE_URL", &service.url),
            ("FAULT_FOR", "6s"),
            ("HOLD_S", "120"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        if let Some(run) = detached_runs().into_iter().next() {
            break run;
        }
        assert!(Instant::now() < deadline, "the toolkit started no run");
        thread::sleep(Duration::from_millis(100));
    };
    victim.wait_for_failure();
    toolkit.kill().expect("SIGKILL the toolkit");
    toolkit.wait().expect("wait for the toolkit");
    let killed = monotonic_ns();
    assert!(
        detached_runs().iter().any(|r| r["id"] == run["id"]),
        "the run ended with the toolkit"
    );
    // Ended by its deadline (6 s after it started), not by anything the toolkit did.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !detached_runs().is_empty() {
        assert!(Instant::now() < deadline, "the run outlived its deadline");
        thread::sleep(Duration::from_millis(200));
    }
    let gone = monotonic_ns();
    victim.wait_for_call_after(gone);
    let calls = victim.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.at_ns > killed && c.errno == Some(ECONNREFUSED)),
        "the fault did not outlive the toolkit"
    );
    assert!(
        victim
            .calls_begun_after(gone)
            .iter()
            .all(|c| c.errno.is_none()),
        "connects still failed after the deadline"
    );
    assert_no_chaos_programs();
}

/// SIGTERM or SIGINT to the toolkit mid-run (a CI job cancelled, Ctrl-C): the run ends
/// "interrupted" and the fault is stopped at once, by the rollback (the experiments ask for the
/// "always" strategy) and the extension's safeguard control, not left to its deadline. Two
/// moments: as soon as the fault is live (the example experiment: the signal lands in the
/// extension's action, in chaoslib between activities, or in the next probe), and while a probe
/// of the toolkit's own process provider runs, whose 120 s "after" pause chaoslib sleeps even
/// when the probe was interrupted.
#[test]
fn an_interrupted_toolkit_stops_the_fault_at_once() {
    let in_a_process_probe = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("experiments/chaostoolkit/interrupted-in-a-process-probe.json");
    for (moment, experiment) in [
        ("live", example("connect-refused.json")),
        ("probe", in_a_process_probe),
    ] {
        for signal in [libc::SIGTERM, libc::SIGINT] {
            let dir = workdir(&format!("signal-{moment}-{signal}"));
            let service = HttpService::start(&dir);
            let bed = ConnectBed::new(VICTIM, "ctk-signal");
            let victim = bed.victim();
            let cgroup = bed.cgroup.path.display().to_string();
            let toolkit = start_experiment(
                &experiment,
                &dir,
                &[
                    ("TARGET_CGROUP", &cgroup),
                    ("SERVICE_URL", &service.url),
                    ("FAULT_FOR", "10m"),
                    ("HOLD_S", "120"),
                ],
            );
            victim.wait_for_failure();
            if moment == "probe" {
                wait_for_path(&dir.join("probing"));
            }
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(toolkit.id() as i32, signal) };
            let started = Instant::now();
            let output = toolkit.wait_with_output().expect("the toolkit");
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{moment}, signal {signal}: the toolkit took {:?} to end",
                started.elapsed()
            );
            let journal = journal(&dir);
            assert_eq!(
                journal["status"], "interrupted",
                "{moment}, signal {signal}"
            );
            assert!(
                detached_runs().is_empty(),
                "{moment}, signal {signal}: the fault outlived the toolkit"
            );
            let stopped = monotonic_ns();
            victim.wait_for_call_after(stopped);
            assert!(
                victim
                    .calls()
                    .iter()
                    .filter(|c| c.at_ns > stopped)
                    .all(|c| c.errno.is_none()),
                "{moment}, signal {signal}: connects still failed"
            );
            assert_no_chaos_programs();
        }
    }
}

/// Waits (up to a minute) for `path` to exist.
fn wait_for_path(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "no {}", path.display());
        thread::sleep(Duration::from_millis(20));
    }
}

/// The k8s example experiment (examples/k8s-connect-refused.json) against a fake API server
/// (tests/src/fake_kube.rs; the node side of `chaos k8s` is tested in containerd.rs): the
/// extension's action starts a `chaos k8s` run on one pod the selector picks, its probe reads
/// the run's report while the test, as kubelet, has the injector running, and the rollback ends
/// the injector (its deadline cut to one second), the run forgotten by the safeguard.
#[test]
fn the_toolkit_drives_a_k8s_run_through_the_api() {
    use chaos_tests::fake_kube::{FakeApi, USER};
    use serde_json::json;

    let dir = workdir("k8s");
    let service = HttpService::start(&dir);
    let api = FakeApi::start(&dir.join("api"));
    api.add_namespace("shop", json!({ "chaos/allow-faults": "true" }));
    for (i, uid) in [
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
    ]
    .iter()
    .enumerate()
    {
        api.add_pod(
            "shop",
            &format!("web-{i}"),
            uid,
            "node-0",
            json!({ "app": "web" }),
            "Running",
        );
    }
    let kubeconfig = api.kubeconfig.display().to_string();
    let mut toolkit = start_experiment(
        &example("k8s-connect-refused.json"),
        &dir,
        &[
            ("KUBECONFIG", &kubeconfig),
            ("TARGET_NAMESPACE", "shop"),
            ("TARGET_SELECTOR", "app=web"),
            ("SERVICE_URL", &service.url),
            ("FAULT_FOR", "5m"),
            ("HOLD_S", "4"),
        ],
    );
    // Kubelet's part, as far as the probe can see it: the injector starts running.
    let deadline = Instant::now() + Duration::from_secs(60);
    let injector = loop {
        if let Some(pod) = api.pods("chaos").first() {
            break pod["metadata"]["name"].as_str().unwrap().to_owned();
        }
        if Instant::now() > deadline || toolkit.try_wait().unwrap().is_some() {
            let _ = toolkit.kill();
            let output = toolkit.wait_with_output().unwrap();
            panic!(
                "the toolkit created no injector: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    api.set_status("chaos", &injector, "Running", None, "");
    let output = toolkit.wait_with_output().expect("the toolkit");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "chaos run (the toolkit) failed");
    let journal = journal(&dir);
    assert_eq!(journal["status"], "completed", "{journal:#}");
    let started = activity(&journal, "run", "refuse-one-pods-connections");
    assert_eq!(started["status"], "succeeded", "{started:#}");
    let run_id = started["output"]["run"].as_str().expect("the run's id");
    let report = &activity(&journal, "run", "injectors")["output"];
    assert_eq!(report["run"], run_id, "{report}");
    assert_eq!(report["requested_by"], USER, "{report}");
    assert_eq!(
        report["targets"].as_array().unwrap().len(),
        1,
        "one pod: {report}"
    );
    assert_eq!(report["targets"][0]["phase"], "Running", "{report}");
    let rollback = activity(&journal, "rollbacks", "stop-the-fault");
    assert_eq!(rollback["output"][0]["run"], run_id, "{rollback:#}");
    assert_eq!(rollback["output"][0]["stopped"], true, "{rollback:#}");
    let pods = api.pods("chaos");
    assert_eq!(pods.len(), 1);
    assert_eq!(
        pods[0]["spec"]["activeDeadlineSeconds"], 1,
        "the rollback ended the injector"
    );
    let patches = api
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH"))
        .count();
    assert_eq!(
        patches,
        1,
        "the safeguard stopped nothing twice: {:?}",
        api.requests()
    );
}

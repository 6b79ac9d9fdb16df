//! chaos against the pods of a real containerd (Debian's 1.6 and runc, started by the test with
//! its own root, state and socket; pods and containers made through its CRI API as kubelet makes
//! them, cgroup parent `/kubepods/burstable/pod<UID>`). Pod "web" runs two containers, "app"
//! and "sidecar"; pod "other" runs one. Each container is a victim connecting to a server on the
//! host in a loop. A fault on one container leaves its sibling in the same pod untouched (the
//! leak users report in other tools), a fault on a pod leaves the other pod untouched, and every
//! run leaves nothing behind.

use std::path::{Path, PathBuf};

use chaos_tests::{
    containerd::{BRIDGE_ADDRESS, Container, Containerd, Pod, Spec},
    *,
};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");
const WEB_UID: &str = "5f0c3a52-7d1e-4b7a-9a43-0c1d2e3f4a51";
const OTHER_UID: &str = "9b8e7d6c-5a4b-4c3d-8e2f-1a0b9c8d7e62";
const INJECTOR_UID: &str = "0c7b3b4e-5f1a-4c2d-9e8f-1a2b3c4d5e6f";
const EHOSTUNREACH: i32 = 113;

/// The two pods, their three containers and the victims in them.
struct Pods {
    containerd: Containerd,
    web: Pod,
    app: (Container, Victim),
    sidecar: (Container, Victim),
    other: (Container, Victim),
    reports: PathBuf,
}

impl Pods {
    fn start() -> Self {
        let server = tcp_server("0.0.0.0:0");
        let port = server.rsplit(':').next().unwrap();
        let target = format!("{BRIDGE_ADDRESS}:{port}");
        let reports =
            std::env::temp_dir().join(format!("chaos-cri-reports-{}", std::process::id()));
        std::fs::create_dir_all(&reports).unwrap();
        let mut containerd = Containerd::start();
        let web = containerd.run_pod("web", WEB_UID, false);
        let other = containerd.run_pod("other", OTHER_UID, false);
        let bin_dir = Path::new(VICTIM).parent().unwrap().to_path_buf();
        let mut start = |pod: &Pod, name: &str| {
            let (mut victim, socket) = Victim::reporting_in(&reports);
            let socket = socket.to_str().unwrap().to_owned();
            let container = containerd.start_busybox(
                pod,
                name,
                &["/chaos/victim", "connect", &target],
                &[("VICTIM_REPORT_SOCKET", &socket)],
                &bin_dir,
                &reports,
            );
            victim.set_pid(container.pid);
            victim.wait_for_calls(1);
            (container, victim)
        };
        let app = start(&web, "app");
        let sidecar = start(&web, "sidecar");
        let other = start(&other, "app");
        for (_, victim) in [&app, &sidecar, &other] {
            let calls = victim.calls();
            assert!(
                calls.iter().all(|call| call.errno.is_none()),
                "a container cannot reach the server: {calls:?}"
            );
        }
        Pods {
            containerd,
            web,
            app,
            sidecar,
            other,
            reports,
        }
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.reports);
    }
}

/// Runs the errno fault `target` names until each of `hit` failed, then checks that exactly they
/// failed, with EHOSTUNREACH, as often as chaos says, and that `spared` did not.
fn assert_errno_fault(target: &[&str], hit: &[&Victim], spared: &[&Victim]) {
    let mut args = vec!["fail"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["--op", "connect", "--errno", "EHOSTUNREACH"]);
    let ran = run_chaos_until_failed(&args, hit);
    for victim in hit {
        victim.wait_for_call_after(ran.window.1);
    }
    for bystander in spared {
        assert_scoped_fault(
            hit,
            bystander,
            EHOSTUNREACH,
            ran.window,
            &ran.report["faults"][0],
        );
    }
    assert_no_chaos_programs();
}

/// `--container containerd://ID`, the form of a pod's status.containerStatuses[].containerID:
/// the one container fails, its sibling in the pod and the other pod do not.
#[test]
fn one_container_of_a_pod_by_its_cri_id() {
    let pods = Pods::start();
    let id = format!("containerd://{}", pods.app.0.id);
    assert_errno_fault(
        &["--container", &id],
        &[&pods.app.1],
        &[&pods.sidecar.1, &pods.other.1],
    );
}

/// `--pod-uid`: every container of the pod, none of the other pod's.
#[test]
fn every_container_of_a_pod_by_its_uid() {
    let pods = Pods::start();
    assert_errno_fault(
        &["--pod-uid", WEB_UID],
        &[&pods.app.1, &pods.sidecar.1],
        &[&pods.other.1],
    );
}

/// `--pod NAMESPACE/NAME --container-name C`, read from the runtime's annotations.
#[test]
fn one_container_by_pod_and_container_name() {
    let pods = Pods::start();
    let pod = format!("{}/{}", pods.web.namespace, pods.web.name);
    assert_errno_fault(
        &["--pod", &pod, "--container-name", "sidecar"],
        &[&pods.sidecar.1],
        &[&pods.app.1, &pods.other.1],
    );
}

/// A signal at the container's next connect(): it dies, and containerd reports it killed; its
/// sibling and the other pod go on.
#[test]
fn a_signal_kills_one_container() {
    let mut pods = Pods::start();
    let id = format!("containerd://{}", pods.app.0.id);
    let ran = run_chaos(&[
        "signal",
        "--container",
        &id,
        "--syscall",
        "connect",
        "--signal",
        "KILL",
        "--count",
        "1",
        "--for",
        "3s",
        "--json",
    ]);
    assert_eq!(ran.report["faults"][0]["injected"], 1, "{}", ran.report);
    let app = pods.app.0.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let code = loop {
        if let Some(code) = pods.containerd.exit_code(&app) {
            break code;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the app container still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(code, 128 + libc::SIGKILL, "the container's exit code");
    for (container, victim) in [&pods.sidecar, &pods.other] {
        assert_eq!(
            pods.containerd.exit_code(container),
            None,
            "{} died",
            container.name
        );
        victim.wait_for_call_after(ran.window.1);
        assert!(victim.calls().iter().all(|call| call.errno.is_none()));
    }
    assert_no_chaos_programs();
}

/// A network fault on a pod acts in its sandbox's network namespace, which its containers
/// share: every connect() of the pod hangs while its packets are dropped, the other pod's go on.
#[test]
fn packet_loss_for_one_pod() {
    let pods = Pods::start();
    let chaos = start_net_fault(
        "drop",
        &[
            "--pod-uid",
            WEB_UID,
            "--probability",
            "1",
            "--direction",
            "both",
        ],
    );
    // Calls in flight when the programs attached may still complete: count from a moment later.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let from = monotonic_ns();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let to = monotonic_ns();
    let report = stop_chaos(chaos);
    let inside = |victim: &Victim| {
        victim
            .calls()
            .iter()
            .filter(|call| (from..to).contains(&call.at_ns))
            .count()
    };
    assert_eq!(inside(&pods.app.1), 0, "the app's connect() went through");
    assert_eq!(
        inside(&pods.sidecar.1),
        0,
        "the sidecar's connect() went through"
    );
    assert!(
        inside(&pods.other.1) >= 10,
        "the other pod was held up: {} calls",
        inside(&pods.other.1)
    );
    assert!(pods.other.1.calls().iter().all(|call| call.errno.is_none()));
    assert!(
        report["faults"][0]["injected"].as_u64().unwrap() > 0,
        "{report}"
    );
    for victim in [&pods.app.1, &pods.sidecar.1] {
        victim.wait_for_call_after(to);
    }
    assert_no_chaos_programs();
}

/// The image `cargo xtask dist` makes, imported into containerd as a node without a registry
/// would, runs as deploy/kubernetes/injector-pod.yaml's pod runs it (privileged, host PID
/// namespace, the host's bpffs, cgroup tree and tracefs mounted): the pod `web` fails, `other`
/// does not; deleting the pod (SIGTERM, as kubelet stops its container) ends the fault, the
/// report is in the container's log as `kubectl logs` shows it, and nothing is left.
#[test]
fn the_image_as_an_injector_pod() {
    let mut pods = Pods::start();
    pods.containerd.import(&dist_dir().join("chaos-image.tar"));
    let injector_pod = pods
        .containerd
        .run_pod("chaos-connect-refused", INJECTOR_UID, true);
    let host = |path: &'static str| Path::new(path);
    let start = monotonic_ns();
    let injector = pods.containerd.start_container(
        &injector_pod,
        "chaos",
        &Spec {
            image: chaos_common::names::DIST_IMAGE,
            command: &[],
            args: &[
                "fail",
                "--pod-uid",
                WEB_UID,
                "--op",
                "connect",
                "--errno",
                "EHOSTUNREACH",
                "--for",
                "10m",
                "--json",
            ],
            env: &[],
            mounts: &[
                (host("/sys/fs/bpf"), host("/sys/fs/bpf"), false),
                (host("/sys/fs/cgroup"), host("/sys/fs/cgroup"), false),
                (
                    host("/sys/kernel/tracing"),
                    host("/sys/kernel/tracing"),
                    false,
                ),
            ],
        },
    );
    pods.app.1.wait_for_failure();
    pods.sidecar.1.wait_for_failure();
    pods.app.1.wait_for_call_after(monotonic_ns() + 200_000_000);
    // kubectl delete pod: kubelet stops the container with SIGTERM and a grace period.
    pods.containerd.stop_container(&injector, 30);
    let stopped = monotonic_ns();
    assert_eq!(
        pods.containerd.exit_code(&injector),
        Some(0),
        "{}",
        injector.stdout()
    );
    assert_no_chaos_programs();
    let log = injector.stdout();
    let report: serde_json::Value = serde_json::from_str(log.trim())
        .unwrap_or_else(|err| panic!("no JSON report in the pod's log ({err}): {log}"));
    assert_eq!(report["ended_by"], "sigterm", "{report}");
    let mut seen = 0;
    for victim in [&pods.app.1, &pods.sidecar.1] {
        victim.wait_for_call_after(stopped);
        let calls = victim.calls();
        let failed: Vec<&Call> = calls.iter().filter(|c| c.errno.is_some()).collect();
        assert!(
            failed
                .iter()
                .all(|c| c.errno == Some(EHOSTUNREACH) && (start..stopped).contains(&c.at_ns)),
            "failures outside the run or with another errno: {failed:?}"
        );
        seen += failed.len() as u64;
    }
    assert_eq!(report["faults"][0]["injected"], seen, "{report}");
    assert!(
        pods.other.1.calls().iter().all(|c| c.errno.is_none()),
        "the other pod was hit"
    );
}

/// `chaos k8s KUBECONFIG=fake`: `chaos k8s run` on a fake API server (tests/src/fake_kube.rs)
/// whose pods `web` and `other` are this containerd's; the test plays kubelet, running each
/// injector pod the API server receives in containerd from the dist image as its spec says.
/// The run faults the pod it drew and only it, waits for its injector and prints its report;
/// a detached run is ended by `chaos k8s stop --all` (the deadline cut, kubelet's SIGTERM),
/// leaving the injector's report and nothing in the kernel.
#[test]
fn k8s_run_through_the_api_faults_the_pod_it_drew() {
    use chaos_tests::fake_kube::{FakeApi, Kubelet};
    use serde_json::{Value, json};

    let mut pods = Pods::start();
    pods.containerd.import(&dist_dir().join("chaos-image.tar"));
    let api = FakeApi::start(&pods.reports.join("api"));
    api.add_namespace("default", json!({ "chaos/allow-faults": "true" }));
    api.add_namespace("chaos", json!({}));
    for (name, uid) in [("web", WEB_UID), ("other", OTHER_UID)] {
        api.add_pod(
            "default",
            name,
            uid,
            "node-1",
            json!({ "tier": "front" }),
            "Running",
        );
    }
    let mut kubelet = Kubelet::default();
    let k8s = |args: &[&str]| {
        let mut command = std::process::Command::new(chaos_bin());
        command
            .arg("k8s")
            .args(args)
            .env("KUBECONFIG", &api.kubeconfig);
        command
    };
    let fault = ["--", "fail", "--op", "connect", "--errno", "EHOSTUNREACH"];

    let start = monotonic_ns();
    let mut args = vec![
        "run",
        "-l",
        "tier=front",
        "-n",
        "default",
        "--seed",
        "5",
        "--for",
        "4s",
        "--json",
    ];
    args.extend_from_slice(&fault);
    let mut chaos = Chaos::spawn(&mut k8s(&args));
    while chaos.try_wait().expect("chaos k8s run").is_none() {
        kubelet.sync(&api, &mut pods.containerd, "chaos");
        assert!(
            monotonic_ns() - start < 180_000_000_000,
            "chaos k8s run did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let output = chaos.wait_with_output().expect("chaos k8s run");
    let ended = monotonic_ns();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("no JSON report ({err}): {stderr}"));
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "one of the two pods: {report}");
    assert_eq!(targets[0]["phase"], "Succeeded", "{report}");
    let (hit, spared) = match targets[0]["pod"].as_str().unwrap() {
        "default/web" => (vec![&pods.app.1, &pods.sidecar.1], vec![&pods.other.1]),
        "default/other" => (vec![&pods.other.1], vec![&pods.app.1, &pods.sidecar.1]),
        pod => panic!("drew {pod}"),
    };
    let mut seen = 0;
    for victim in &hit {
        victim.wait_for_call_after(ended);
        let calls = victim.calls();
        let failed: Vec<&Call> = calls.iter().filter(|c| c.errno.is_some()).collect();
        assert!(!failed.is_empty(), "the drawn pod was not hit: {report}");
        assert!(
            failed
                .iter()
                .all(|c| c.errno == Some(EHOSTUNREACH) && (start..ended).contains(&c.at_ns)),
            "failures outside the run or with another errno: {failed:?}"
        );
        seen += failed.len() as u64;
    }
    assert_eq!(
        targets[0]["report"]["faults"][0]["injected"], seen,
        "{report}"
    );
    for victim in spared {
        assert!(
            victim.calls().iter().all(|c| c.errno.is_none()),
            "the pod not drawn was hit"
        );
    }
    assert_no_chaos_programs();

    // The kill switch: a detached run, ended by `stop --all` long before its 10 minutes.
    let mut args = vec![
        "run",
        "-l",
        "tier=front",
        "-n",
        "default",
        "--seed",
        "5",
        "--for",
        "10m",
        "--detach",
    ];
    args.extend_from_slice(&fault);
    let output = k8s(&args).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    while hit[0]
        .calls_begun_after(ended)
        .iter()
        .all(|c| c.errno.is_none())
    {
        kubelet.sync(&api, &mut pods.containerd, "chaos");
        assert!(
            monotonic_ns() - ended < 120_000_000_000,
            "the detached run never failed a call"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let output = k8s(&["stop", "--all"]).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    kubelet.sync(&api, &mut pods.containerd, "chaos");
    let stopped = monotonic_ns();
    assert_no_chaos_programs();
    let output = k8s(&["report", &id, "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["targets"][0]["reason"], "DeadlineExceeded",
        "{report}"
    );
    assert_eq!(
        report["targets"][0]["report"]["ended_by"], "sigterm",
        "{report}"
    );
    hit[0].wait_for_call_after(stopped);
    assert!(
        hit[0]
            .calls_begun_after(stopped)
            .iter()
            .all(|c| c.errno.is_none()),
        "calls failed after the stop"
    );
    let output = k8s(&["stop", "--all", "--delete"]).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        api.config_maps("chaos").is_empty() && api.pods("chaos").is_empty(),
        "records or injectors left"
    );
    api.assert_granted_by_rbac();
}

/// The monkey with a pool of pods by selector: each pick runs `chaos k8s run --pod` through the
/// (fake) API server, whose injector pods run in this containerd. A sped-up hour: the journal
/// holds the plan's picks on the one pod that did not opt out, one at a time, each ended with
/// its injector's report; the pod's two containers fail exactly as often as the reports say,
/// the opted-out pod never; nothing is left.
#[test]
fn the_monkey_faults_pods_it_draws_through_the_api() {
    use chaos_tests::fake_kube::{FakeApi, Kubelet};
    use serde_json::{Value, json};

    let mut pods = Pods::start();
    pods.containerd.import(&dist_dir().join("chaos-image.tar"));
    let api = FakeApi::start(&pods.reports.join("api"));
    api.add_namespace("default", json!({ "chaos/allow-faults": "true" }));
    api.add_namespace("chaos", json!({}));
    api.add_pod(
        "default",
        "web",
        WEB_UID,
        "node-1",
        json!({ "tier": "front" }),
        "Running",
    );
    api.add_pod(
        "default",
        "other",
        OTHER_UID,
        "node-1",
        json!({ "tier": "front", "chaos.monkey/opt-out": "true" }),
        "Running",
    );
    let file = pods.reports.join("monkey.toml");
    std::fs::write(
        &file,
        r#"
[schedule]
mean_interval = "8m"
max_at_once = 1
[[target]]
namespace = "default"
selector = "tier=front"
[[fault]]
name = "unreachable"
command = "fail"
op = "connect"
errno = "EHOSTUNREACH"
for = "2m"
"#,
    )
    .unwrap();
    let journal = pods.reports.join("journal.jsonl");
    let monkey = |extra: &[&str]| {
        let mut command = std::process::Command::new(chaos_bin());
        command
            .args(["monkey", file.to_str().unwrap(), "--seed", "3"])
            .args(["--start", "2026-12-07 09:00", "--for", "40m", "--json"])
            .args(extra)
            .env("KUBECONFIG", &api.kubeconfig)
            .env("TZ", "UTC");
        command
    };
    let output = monkey(&["--plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    let planned = plan["picks"].as_array().unwrap().clone();
    assert!(planned.len() >= 2, "{plan}");
    assert!(
        planned.iter().all(|p| p["target"]["name"] == "default/web"),
        "{plan}"
    );

    let mut kubelet = Kubelet::default();
    let start = monotonic_ns();
    let mut chaos = Chaos::spawn(&mut monkey(&[
        "--time-scale",
        "60",
        "--journal",
        journal.to_str().unwrap(),
    ]));
    while chaos.try_wait().expect("chaos monkey").is_none() {
        kubelet.sync(&api, &mut pods.containerd, "chaos");
        assert!(
            monotonic_ns() - start < 240_000_000_000,
            "the monkey's hour did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let output = chaos.wait_with_output().expect("chaos monkey");
    let ended = monotonic_ns();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");

    let lines: Vec<Value> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let picks: Vec<&Value> = lines
        .iter()
        .filter(|l| ["start", "skip"].contains(&l["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        picks.iter().map(|l| &l["pick"]).collect::<Vec<_>>(),
        planned.iter().map(|p| &p["pick"]).collect::<Vec<_>>(),
        "the journal's picks are not the plan's: {lines:?}"
    );
    // One at a time: each start is ended before the next.
    let sequence: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["event"].as_str())
        .filter(|e| ["start", "end"].contains(e))
        .collect();
    assert!(
        sequence.chunks(2).all(|pair| pair == ["start", "end"]),
        "{sequence:?}"
    );
    let mut injected = 0;
    for line in lines.iter().filter(|l| l["event"] == "end") {
        assert_eq!(line["exit_code"], 0, "{line}");
        assert_eq!(line["target"]["name"], "default/web", "{line}");
        let target = &line["report"]["targets"][0];
        assert_eq!(target["pod"], "default/web", "{line}");
        assert_eq!(target["phase"], "Succeeded", "{line}");
        injected += target["report"]["faults"][0]["injected"].as_u64().unwrap();
    }
    for line in lines.iter().filter(|l| l["event"] == "start") {
        assert_eq!(
            line["argv"].as_array().unwrap()[..6],
            json!(["k8s", "run", "-n", "default", "--pod", "web"])
                .as_array()
                .unwrap()[..],
            "{line}"
        );
    }
    assert!(injected > 0, "no pick injected: {lines:?}");
    println!(
        "the monkey's hour: {} picks, {} run, {injected} failures injected",
        picks.len(),
        sequence.len() / 2
    );
    let mut seen = 0;
    for victim in [&pods.app.1, &pods.sidecar.1] {
        victim.wait_for_call_after(ended);
        let calls = victim.calls();
        let failed: Vec<&Call> = calls.iter().filter(|c| c.errno.is_some()).collect();
        assert!(
            failed
                .iter()
                .all(|c| c.errno == Some(EHOSTUNREACH) && (start..ended).contains(&c.at_ns)),
            "failures outside the day or with another errno: {failed:?}"
        );
        seen += failed.len() as u64;
    }
    assert_eq!(
        seen, injected,
        "the containers' failures are not the reports'"
    );
    pods.other.1.wait_for_call_after(ended);
    assert!(
        pods.other.1.calls().iter().all(|c| c.errno.is_none()),
        "the opted-out pod was hit"
    );
    assert!(
        api.pods("chaos")
            .iter()
            .all(|p| ["Succeeded", "Failed"].contains(&p["status"]["phase"].as_str().unwrap_or(""))),
        "an injector is still running"
    );
    assert_no_chaos_programs();

    // SIGTERM while a pick's injector runs: the pick is stopped through the API, reports, and
    // the day ends well (exit 0).
    let journal = pods.reports.join("stopped.jsonl");
    let file = pods.reports.join("long.toml");
    std::fs::write(
        &file,
        r#"
[schedule]
mean_interval = "2m"
[[target]]
namespace = "default"
selector = "tier=front"
[[fault]]
command = "fail"
op = "connect"
errno = "EHOSTUNREACH"
for = "1h"
"#,
    )
    .unwrap();
    let mut chaos = Chaos::spawn(
        std::process::Command::new(chaos_bin())
            .args([
                "monkey",
                file.to_str().unwrap(),
                "--seed",
                "3",
                "--for",
                "8h",
            ])
            .args(["--time-scale", "60", "--json", "--journal"])
            .arg(&journal)
            .env("KUBECONFIG", &api.kubeconfig),
    );
    let begun = monotonic_ns();
    while pods
        .app
        .1
        .calls_begun_after(begun)
        .iter()
        .all(|c| c.errno.is_none())
    {
        kubelet.sync(&api, &mut pods.containerd, "chaos");
        assert!(
            monotonic_ns() - begun < 120_000_000_000,
            "no pick failed a call"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(chaos.id() as i32, libc::SIGTERM) };
    while chaos.try_wait().expect("chaos monkey").is_none() {
        kubelet.sync(&api, &mut pods.containerd, "chaos");
        assert!(
            monotonic_ns() - begun < 240_000_000_000,
            "the monkey did not end on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let output = chaos.wait_with_output().expect("chaos monkey");
    let stopped = monotonic_ns();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let lines: Vec<Value> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ends: Vec<&Value> = lines.iter().filter(|l| l["event"] == "end").collect();
    assert_eq!(ends.len(), 1, "{lines:?}");
    assert_eq!(ends[0]["exit_code"], 0, "{}", ends[0]);
    let target = &ends[0]["report"]["targets"][0];
    assert_eq!(target["reason"], "DeadlineExceeded", "{}", ends[0]);
    assert_eq!(target["report"]["ended_by"], "sigterm", "{}", ends[0]);
    assert_eq!(lines.last().unwrap()["ended_by"], "sigterm", "{lines:?}");
    pods.app.1.wait_for_call_after(stopped);
    assert!(
        pods.app
            .1
            .calls_begun_after(stopped)
            .iter()
            .all(|c| c.errno.is_none()),
        "calls failed after the monkey ended"
    );
    assert_no_chaos_programs();
    api.assert_granted_by_rbac();
}

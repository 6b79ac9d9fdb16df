//! `chaos k8s` against a fake API server (tests/src/fake_kube.rs): no API server can run here.
//! These tests cover the API side: what is refused before anything is created, the draw of the
//! targets, the run's record and injector pods as the server receives them, and list, report
//! and stop. The node side (the injector faulting a real pod, the kill switch ending it) runs
//! against containerd in tests/tests/containerd.rs.

use std::process::{Command, Output};

use chaos_tests::{fake_kube::FakeApi, *};
use serde_json::{Value, json};

const SOME_UID: [&str; 4] = [
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
    "44444444-4444-4444-8444-444444444444",
];

/// A cluster with namespace `shop` (opted in: web-0..2 running on two nodes, web-3 pending,
/// db-0 running), `closed` (not opted in, web-0 running) and `chaos`.
fn cluster(name: &str) -> FakeApi {
    let api = FakeApi::start(&scratch_dir("k8s", name));
    api.add_namespace("shop", json!({ "chaos/allow-faults": "true" }));
    api.add_namespace("closed", json!({}));
    api.add_namespace("chaos", json!({}));
    for (i, uid) in SOME_UID.iter().enumerate() {
        let phase = if i < 3 { "Running" } else { "Pending" };
        api.add_pod(
            "shop",
            &format!("web-{i}"),
            uid,
            &format!("node-{}", i % 2),
            json!({ "app": "web" }),
            phase,
        );
    }
    api.add_pod(
        "shop",
        "db-0",
        "55555555-5555-4555-8555-555555555555",
        "node-0",
        json!({ "app": "db" }),
        "Running",
    );
    api.add_pod(
        "closed",
        "web-0",
        "66666666-6666-4666-8666-666666666666",
        "node-0",
        json!({ "app": "web" }),
        "Running",
    );
    api
}

fn k8s(api: &FakeApi, args: &[&str]) -> Output {
    Command::new(chaos_bin())
        .arg("k8s")
        .args(args)
        .env("KUBECONFIG", &api.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run chaos k8s")
}

/// Asserts that `chaos k8s` exited 0, showing its stderr if not.
fn succeeded(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "no JSON on stdout ({err}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn created(api: &FakeApi) -> Vec<String> {
    api.requests()
        .into_iter()
        .filter(|r| r.starts_with("POST") && !r.contains("selfsubjectreviews"))
        .collect()
}

const FAULT: [&str; 6] = ["--", "fail", "--op", "connect", "--errno", "ECONNREFUSED"];

fn run_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&FAULT);
    args
}

/// Bad input, a namespace that did not opt in and too many targets exit 2 naming the reason,
/// and create nothing.
#[test]
fn refusals_create_nothing() {
    let api = cluster("refusals");
    let cases: [(Vec<&str>, &str); 8] = [
        (
            run_args(&["-n", "closed", "-l", "app=web"]),
            "namespace closed has not opted in to faults: `kubectl annotate namespace closed chaos/allow-faults=true`",
        ),
        (
            run_args(&["-n", "nowhere", "-l", "app=web"]),
            "no namespace 'nowhere'",
        ),
        (
            run_args(&["-n", "shop", "-l", ""]),
            "an empty label selector would pick every pod",
        ),
        (
            run_args(&["-n", "shop", "-l", "app=web!"]),
            "invalid label value 'web!'",
        ),
        (
            run_args(&["-n", "shop", "-l", "app=web", "--max-targets", "2"]),
            "2 of the 3 running pods matching 'app=web' is more than half of them: pass --allow-majority",
        ),
        (
            run_args(&["-n", "shop", "-l", "app=cache"]),
            "no running pod in namespace shop matches 'app=cache'",
        ),
        (
            vec![
                "run", "-n", "shop", "-l", "app=web", "--", "fail", "--op", "connect", "--errno",
                "EIO", "--pid", "1",
            ],
            "the fault names --pid: each injector adds its pod",
        ),
        (
            vec!["run", "-n", "shop", "-l", "app=web", "--", "list"],
            "'list' is not a fault command: expected one of fail, signal",
        ),
    ];
    for (args, says) in cases {
        let output = k8s(&api, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let output = k8s(
        &api,
        &run_args(&["-n", "shop", "-l", "app=web", "--max-targets", "0"]),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid --max-targets '0'"));
    assert_eq!(
        created(&api),
        Vec::<String>::new(),
        "a refused run created something"
    );
    api.assert_granted_by_rbac();
}

/// --dry-run draws the targets among the running pods the selector matches, the same for the
/// same seed, and prints the injectors it would create without creating them.
#[test]
fn a_dry_run_draws_the_targets_and_creates_nothing() {
    let api = cluster("dry-run");
    let plan = |seed: &str| {
        let output = k8s(
            &api,
            &run_args(&[
                "-n",
                "shop",
                "-l",
                "app=web",
                "--max-targets",
                "50%",
                "--allow-majority",
                "--seed",
                seed,
                "--dry-run",
                "--json",
            ]),
        );
        succeeded(&output);
        json_of(&output)
    };
    let first = plan("3");
    assert_eq!(first["matched"], 3, "{first}");
    let targets = first["run"]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "50% of 3 running pods: {first}");
    assert!(
        ["web-0", "web-1", "web-2"].contains(&targets[0]["name"].as_str().unwrap()),
        "{first}"
    );
    assert_eq!(
        plan("3")["run"]["targets"],
        first["run"]["targets"],
        "the same seed draws the same pods"
    );
    let drawn: std::collections::BTreeSet<String> = (0..12)
        .map(|seed| {
            plan(&seed.to_string())["run"]["targets"][0]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(drawn.len() > 1, "every seed drew {drawn:?}");
    assert!(
        drawn
            .iter()
            .all(|name| ["web-0", "web-1", "web-2"].contains(&name.as_str())),
        "a pod that is not running was drawn: {drawn:?}"
    );
    let injector = &first["injectors"][0];
    assert_eq!(injector["spec"]["nodeName"], targets[0]["node"]);
    assert_eq!(injector["spec"]["hostPID"], true);
    let args = injector["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let uid = targets[0]["uid"].as_str().unwrap();
    assert_eq!(
        args.iter().map(|a| a.as_str().unwrap()).collect::<Vec<_>>(),
        [
            "fail",
            "--op",
            "connect",
            "--errno",
            "ECONNREFUSED",
            "--pod-uid",
            uid,
            "--for",
            "60000ms",
            "--json"
        ]
    );
    assert_eq!(
        created(&api),
        Vec::<String>::new(),
        "a dry run created something"
    );
    // The fault from a file (-f): its options and its `for`.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/k8s/connect-refused.toml");
    let output = k8s(
        &api,
        &[
            "run",
            "-n",
            "shop",
            "-l",
            "app=web",
            "-f",
            file.to_str().unwrap(),
            "--dry-run",
            "--json",
        ],
    );
    succeeded(&output);
    let plan = json_of(&output);
    let args = &plan["injectors"][0]["spec"]["containers"][0]["args"];
    let uid = plan["run"]["targets"][0]["uid"].as_str().unwrap();
    assert_eq!(
        args,
        &json!([
            "fail",
            "--errno",
            "ECONNREFUSED",
            "--op",
            "connect",
            "--pod-uid",
            uid,
            "--for",
            "120000ms",
            "--json"
        ])
    );
    assert!(created(&api).is_empty(), "a dry run created something");
    api.assert_granted_by_rbac();
}

/// A detached run creates its record (who asked, what, on which pods) and one injector per
/// target on the target's node, owned by the record; list and report show the injectors'
/// states and reports; stop sets their deadline to one second (kubelet then ends them as
/// `kubectl delete` does, keeping their logs); --delete removes the record and, through the
/// garbage collector, its injectors.
#[test]
fn a_run_its_record_injectors_report_and_stop() {
    let api = cluster("run");
    let output = k8s(
        &api,
        &run_args(&[
            "-n",
            "shop",
            "-l",
            "app=web",
            "--max-targets",
            "1",
            "--for",
            "30s",
            "--seed",
            "1",
            "--detach",
            "--json",
        ]),
    );
    succeeded(&output);
    let id = json_of(&output)["run"].as_str().unwrap().to_owned();
    let records = api.config_maps("chaos");
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["metadata"]["name"], format!("chaos-run-{id}"));
    assert_eq!(
        record["metadata"]["annotations"]["chaos/requested-by"],
        fake_kube::USER
    );
    let spec: Value = serde_json::from_str(record["data"]["spec.json"].as_str().unwrap()).unwrap();
    assert_eq!(spec["selector"], "app=web");
    let target = &spec["targets"][0];
    let injectors = api.pods("chaos");
    assert_eq!(injectors.len(), 1, "{injectors:?}");
    let injector = &injectors[0];
    let name = injector["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(injector["spec"]["nodeName"], target["node"]);
    assert_eq!(
        injector["spec"]["activeDeadlineSeconds"], 90,
        "30 s and a minute's grace"
    );
    assert_eq!(
        injector["metadata"]["ownerReferences"][0]["uid"],
        record["metadata"]["uid"]
    );
    assert_eq!(injector["metadata"]["labels"]["chaos/run"], id.as_str());

    // Kubelet's part: the injector ran and printed its report.
    let report_line =
        r#"{"faults":[{"kind":"errno","matched":40,"injected":37}],"ended_by":"deadline"}"#;
    api.set_status(
        "chaos",
        &name,
        "Succeeded",
        None,
        &format!("chaos: started\n{report_line}\n"),
    );
    let output = k8s(&api, &["report", &id, "--json"]);
    succeeded(&output);
    let report = json_of(&output);
    assert_eq!(report["requested_by"], fake_kube::USER);
    assert_eq!(report["targets"][0]["phase"], "Succeeded");
    assert_eq!(
        report["targets"][0]["pod"],
        format!("shop/{}", target["name"].as_str().unwrap())
    );
    assert_eq!(
        report["targets"][0]["report"]["faults"][0]["injected"], 37,
        "{report}"
    );
    let human = String::from_utf8_lossy(&k8s(&api, &["report", &id]).stderr).into_owned();
    assert!(
        human.contains("Succeeded, injected 37 of 40 calls"),
        "{human}"
    );

    // A second run, still running: the kill switch ends it.
    let output = k8s(
        &api,
        &run_args(&[
            "-n", "shop", "-l", "app=web", "--seed", "2", "--detach", "--json",
        ]),
    );
    let second = json_of(&output)["run"].as_str().unwrap().to_owned();
    let listed = json_of(&k8s(&api, &["list", "--json"]));
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&second.as_str()),
        "{listed}"
    );
    let output = k8s(&api, &["stop", "--all"]);
    succeeded(&output);
    let patched: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH"))
        .collect();
    assert_eq!(
        patched.len(),
        1,
        "only the unfinished injector is ended: {patched:?}"
    );
    assert!(
        patched[0].contains(&format!("chaos-{second}-0")),
        "{patched:?}"
    );
    let ended = api
        .pods("chaos")
        .into_iter()
        .find(|p| p["metadata"]["name"] == format!("chaos-{second}-0"))
        .unwrap();
    assert_eq!(ended["spec"]["activeDeadlineSeconds"], 1);

    let output = k8s(&api, &["stop", &id, "--delete"]);
    succeeded(&output);
    assert_eq!(api.config_maps("chaos").len(), 1, "one record deleted");
    assert!(
        api.pods("chaos")
            .iter()
            .all(|p| p["metadata"]["labels"]["chaos/run"] == second.as_str()),
        "its injector went with it"
    );
    let output = k8s(&api, &["report", "nosuchrun"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("no run 'nosuchrun' in namespace chaos: expected one of those `chaos k8s list` shows ({second})")));
    api.assert_granted_by_rbac();
}

/// A network fault leaves out pods in the node's network namespace (hostNetwork), which an errno
/// fault may take; a pod another run faults now is never drawn again, and counts against the
/// majority.
#[test]
fn host_network_pods_and_pods_other_runs_fault_are_left_out() {
    let api = cluster("left-out");
    for (i, uid) in [
        "77777777-7777-4777-8777-777777777777",
        "88888888-8888-4888-8888-888888888888",
    ]
    .iter()
    .enumerate()
    {
        api.add_pod(
            "shop",
            &format!("edge-{i}"),
            uid,
            "node-0",
            json!({ "app": "edge" }),
            "Running",
        );
    }
    api.merge_pod("shop", "edge-0", json!({ "spec": { "hostNetwork": true } }));
    let drawn = |fault: &[&str], seed: u64| {
        let seed = seed.to_string();
        let mut args = vec![
            "run",
            "-n",
            "shop",
            "-l",
            "app=edge",
            "--allow-majority",
            "--seed",
            &seed,
            "--dry-run",
            "--json",
            "--",
        ];
        args.extend_from_slice(fault);
        let output = k8s(&api, &args);
        succeeded(&output);
        let name = json_of(&output)["run"]["targets"][0]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        (name, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let net: Vec<(String, String)> = (0..8)
        .map(|seed| drawn(&["net", "drop", "--probability", "0.5"], seed))
        .collect();
    assert!(net.iter().all(|(name, _)| name == "edge-1"), "{net:?}");
    assert!(
        net[0]
            .1
            .contains("left out edge-0 (hostNetwork: a network fault there would be the node's)"),
        "{}",
        net[0].1
    );
    let errno: std::collections::BTreeSet<String> = (0..8)
        .map(|seed| drawn(&["fail", "--op", "connect", "--errno", "EIO"], seed).0)
        .collect();
    assert!(
        errno.contains("edge-0"),
        "an errno fault may take a hostNetwork pod: {errno:?}"
    );

    let output = k8s(
        &api,
        &run_args(&[
            "-n", "shop", "-l", "app=web", "--seed", "1", "--detach", "--json",
        ]),
    );
    succeeded(&output);
    let faulted = api.pods("chaos")[0]["metadata"]["labels"]["chaos/target-uid"]
        .as_str()
        .unwrap()
        .to_owned();
    for seed in 0..8 {
        let seed = seed.to_string();
        let plan = json_of(&k8s(
            &api,
            &run_args(&[
                "-n",
                "shop",
                "-l",
                "app=web",
                "--allow-majority",
                "--seed",
                &seed,
                "--dry-run",
                "--json",
            ]),
        ));
        assert_ne!(
            plan["run"]["targets"][0]["uid"],
            faulted.as_str(),
            "a pod another run faults was drawn again"
        );
    }
    let output = k8s(
        &api,
        &run_args(&["-n", "shop", "-l", "app=web", "--max-targets", "1"]),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 of the 3 running pods matching 'app=web' is more than half of them (1 of them faulted by other runs now)"), "{stderr}");
    api.assert_granted_by_rbac();
}

/// `--pod NAME` faults that one running pod (the monkey's picks use it): no draw and no
/// majority rule, but a pod not running, a bad name, a hostNetwork pod for a network fault and
/// the options of a draw are refused, creating nothing.
#[test]
fn a_pod_named_is_the_one_faulted() {
    let api = cluster("named");
    api.add_pod(
        "shop",
        "edge-0",
        "77777777-7777-4777-8777-777777777777",
        "node-1",
        json!({ "app": "edge" }),
        "Running",
    );
    api.merge_pod("shop", "edge-0", json!({ "spec": { "hostNetwork": true } }));
    let cases: [(Vec<&str>, &str); 7] = [
        (
            run_args(&["-n", "shop", "--pod", "web-3"]),
            "no running pod in namespace shop matches 'metadata.name=web-3'",
        ),
        (
            run_args(&["-n", "shop", "--pod", "Web_0"]),
            "invalid pod name 'Web_0'",
        ),
        (
            run_args(&["-n", "shop", "--pod", "web-0", "-l", "app=web"]),
            "cannot be used with",
        ),
        (
            run_args(&["-n", "shop", "--pod", "web-0", "--max-targets", "2"]),
            "cannot be used with",
        ),
        (
            run_args(&["-n", "shop", "--pod", "web-0", "--seed", "2"]),
            "cannot be used with",
        ),
        (
            run_args(&["-n", "shop", "--pod", "web-0", "--allow-majority"]),
            "cannot be used with",
        ),
        (
            vec![
                "run",
                "-n",
                "shop",
                "--pod",
                "edge-0",
                "--",
                "net",
                "drop",
                "--probability",
                "0.5",
            ],
            "pod shop/edge-0 uses its node's network (hostNetwork): a network fault there would be the node's",
        ),
    ];
    for (args, says) in cases {
        let output = k8s(&api, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(created(&api).is_empty(), "a refused run created something");
    // db-0 is all the pods of app=db, and it is the pod named: no majority rule.
    for (pod, fault) in [
        ("db-0", &FAULT[..]),
        ("edge-0", &FAULT[..]),
        ("web-1", &["--", "net", "drop", "--probability", "0.5"][..]),
    ] {
        let mut args = vec!["run", "-n", "shop", "--pod", pod, "--dry-run", "--json"];
        args.extend_from_slice(fault);
        let output = k8s(&api, &args);
        succeeded(&output);
        let plan = json_of(&output);
        let targets = plan["run"]["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "{plan}");
        assert_eq!(targets[0]["name"], pod, "{plan}");
        assert_eq!(plan["run"]["selector"], format!("metadata.name={pod}"));
        assert_eq!(plan["run"]["pod"], pod);
    }
    // Listed by a field selector on its name, not read by name (rbac.yaml grants list only).
    assert!(
        api.requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/shop/pods?")
                && r.contains("fieldSelector=metadata.name%3Ddb-0")),
        "{:?}",
        api.requests()
    );
    assert!(created(&api).is_empty(), "a dry run created something");
    api.assert_granted_by_rbac();
}

/// The monkey's pool takes pods by namespace and selector through the API: running ones of an
/// opted-in namespace, not those labelled chaos.monkey/opt-out=true; network faults never
/// draw a hostNetwork pod; a namespace that did not opt in gives none, said on stderr. The plan
/// (--plan) lists them and creates nothing.
#[test]
fn the_monkeys_pool_takes_pods_by_selector() {
    let api = cluster("monkey");
    for (i, uid) in [
        "77777777-7777-4777-8777-777777777777",
        "88888888-8888-4888-8888-888888888888",
        "99999999-9999-4999-8999-999999999999",
    ]
    .iter()
    .enumerate()
    {
        api.add_pod(
            "shop",
            &format!("edge-{i}"),
            uid,
            "node-0",
            json!({ "app": "edge" }),
            "Running",
        );
    }
    api.merge_pod("shop", "edge-0", json!({ "spec": { "hostNetwork": true } }));
    api.merge_pod(
        "shop",
        "edge-2",
        json!({ "metadata": { "labels": { "chaos.monkey/opt-out": "true" } } }),
    );
    let dir = scratch_dir("k8s", "monkey-file");
    let file = dir.join("monkey.toml");
    std::fs::write(
        &file,
        r#"
[schedule]
mean_interval = "10m"
max_at_once = 3
[[target]]
namespace = "shop"
selector = "app=edge"
[[target]]
namespace = "closed"
selector = "app=web"
[[fault]]
name = "lossy"
command = "net drop"
probability = 0.5
for = "1m"
[[fault]]
name = "refused"
command = "fail"
op = "connect"
errno = "ECONNREFUSED"
for = "1m"
"#,
    )
    .unwrap();
    let output = Command::new(chaos_bin())
        .args(["monkey", file.to_str().unwrap(), "--seed", "11"])
        .args([
            "--start",
            "2026-12-07 09:00",
            "--for",
            "8h",
            "--plan",
            "--json",
        ])
        .env("KUBECONFIG", &api.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no pods of closed matching 'app=web' in the pool: namespace closed has not opted in to faults"),
        "{stderr}"
    );
    let plan = json_of(&output);
    assert_eq!(
        plan["candidates"],
        json!([
            { "kind": "pod", "name": "shop/edge-1", "pod": "shop/edge-1" },
            { "kind": "pod", "name": "shop/edge-0", "pod": "shop/edge-0", "host_network": true },
        ]),
        "{plan}"
    );
    let picks = plan["picks"].as_array().unwrap();
    assert!(picks.len() > 20, "{plan}");
    let on = |fault: &str| -> std::collections::BTreeSet<String> {
        picks
            .iter()
            .filter(|p| p["fault"] == fault)
            .map(|p| p["target"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(on("lossy"), ["shop/edge-1".to_owned()].into(), "{plan}");
    assert_eq!(
        on("refused"),
        ["shop/edge-0".to_owned(), "shop/edge-1".to_owned()].into(),
        "{plan}"
    );
    assert!(created(&api).is_empty(), "a plan created something");

    // The example file: the running web pods of shop.
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/k8s/monkey.toml");
    let output = Command::new(chaos_bin())
        .args(["monkey", example.to_str().unwrap(), "--seed", "7"])
        .args([
            "--start",
            "2026-12-07 09:00",
            "--for",
            "8h",
            "--plan",
            "--json",
        ])
        .env("KUBECONFIG", &api.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    succeeded(&output);
    let plan = json_of(&output);
    let names: Vec<&str> = plan["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop/web-0", "shop/web-1", "shop/web-2"], "{plan}");
    assert!(!plan["picks"].as_array().unwrap().is_empty(), "{plan}");
    api.assert_granted_by_rbac();
}

//! deploy/kubernetes: valid against Kubernetes' own schemas in strict mode for the supported
//! versions (kubernetes-validate from PyPI), and running chaos as the tested image is run (the
//! DaemonSet test in dist.rs) with arguments the real CLI accepts. No API server runs here: what
//! a cluster would do with them is not tested.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use chaos_tests::{chaos, chaos_command, python_tool};
use serde_json::Value;

/// The Kubernetes versions the manifests must validate against.
const VERSIONS: [&str; 8] = [
    "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0",
];
/// The image `cargo xtask dist` builds.
const IMAGE: &str = chaos_common::names::DIST_IMAGE;

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "manifests: {files:?}");
    files
}

fn validate(files: &[PathBuf], version: &str) -> Output {
    Command::new(python_tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .expect("run kubernetes-validate")
}

#[test]
fn the_manifests_validate_strictly_against_every_supported_version() {
    let files = manifests();
    for version in VERSIONS {
        let output = validate(&files, version);
        assert!(
            output.status.success(),
            "Kubernetes {version}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Strict mode is on: a misspelt field is refused.
    let misspelt = std::env::temp_dir().join(format!("chaos-misspelt-{}.yaml", std::process::id()));
    let daemonset = std::fs::read_to_string(
        files
            .iter()
            .find(|f| f.ends_with("daemonset.yaml"))
            .unwrap(),
    )
    .unwrap();
    std::fs::write(&misspelt, daemonset.replace("hostPID:", "hostPid:")).unwrap();
    let refused = validate(
        std::slice::from_ref(&misspelt),
        VERSIONS[VERSIONS.len() - 1],
    );
    std::fs::remove_file(&misspelt).unwrap();
    assert!(
        !refused.status.success(),
        "strict validation let hostPid through"
    );
}

/// Every document of every manifest, as JSON.
fn documents() -> Vec<Value> {
    manifests()
        .iter()
        .flat_map(|file| {
            let output = Command::new(python_tool("python"))
                .args([
                    "-c",
                    "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
                ])
                .arg(file)
                .output()
                .expect("run the venv's python");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
        })
        .collect()
}

#[test]
fn the_pods_run_chaos_as_the_tested_image_is_run() {
    let documents = documents();
    let namespace = documents.iter().find(|d| d["kind"] == "Namespace").unwrap();
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    let pod_specs: Vec<&Value> = documents
        .iter()
        .filter_map(|d| match d["kind"].as_str() {
            Some("Pod") => Some(&d["spec"]),
            Some("DaemonSet") => Some(&d["spec"]["template"]["spec"]),
            _ => None,
        })
        .collect();
    assert_eq!(pod_specs.len(), 2, "a DaemonSet and an injector Pod");
    for spec in pod_specs {
        // What dist.rs gave the image under podman: the host's PID namespace, privileges, the
        // host's bpffs and cgroup tree.
        assert_eq!(spec["hostPID"], true);
        let container = &spec["containers"][0];
        assert_eq!(container["image"], IMAGE);
        assert_eq!(container["securityContext"]["privileged"], true);
        for path in ["/sys/fs/bpf", "/sys/fs/cgroup"] {
            let mount = container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == path)
                .unwrap_or_else(|| panic!("no mount at {path}"));
            let volume = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            assert_eq!(volume["hostPath"]["path"], path);
        }
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_runs(&args);
    }
}

/// The real chaos accepts `args`: `idle` waits and ends 0 on SIGTERM; a fault gets past its
/// flags to the target, which does not exist here (exit 2 naming the pod).
fn assert_runs(args: &[&str]) {
    if args == ["idle"] {
        let mut idle = chaos_command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            idle.try_wait().unwrap().is_none(),
            "chaos idle did not wait"
        );
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(idle.id() as i32, libc::SIGTERM) };
        let status = idle.wait().unwrap();
        assert!(status.success(), "chaos idle on SIGTERM: {status:?}");
        return;
    }
    let output = chaos(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "chaos {args:?}: {stderr}");
    assert!(
        stderr.contains("no pod with UID"),
        "chaos {args:?}: {stderr}"
    );
}

/// What `chaos k8s run` creates (its record and injector pods, printed by --dry-run against the
/// fake API server) validates strictly too.
#[test]
fn what_chaos_k8s_creates_validates_strictly() {
    use chaos_tests::fake_kube::FakeApi;
    use serde_json::json;

    let api = FakeApi::start(&chaos_tests::scratch_dir("k8s", "validate"));
    api.add_namespace("shop", json!({ "chaos/allow-faults": "true" }));
    api.add_pod(
        "shop",
        "web-0",
        "11111111-1111-4111-8111-111111111111",
        "node-0",
        json!({ "app": "web" }),
        "Running",
    );
    let output = Command::new(chaos_tests::chaos_bin())
        .args([
            "k8s",
            "run",
            "-n",
            "shop",
            "-l",
            "app=web",
            "--allow-majority",
            "--dry-run",
            "--json",
        ])
        .args(["--", "net", "drop", "--probability", "0.5"])
        .env("KUBECONFIG", &api.kubeconfig)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut documents = vec![plan["record"].clone()];
    documents.extend(plan["injectors"].as_array().unwrap().iter().cloned());
    let mut injector = documents[1].clone();
    // The dry run names the record's UID, which only the API server gives, in words.
    injector["metadata"]["ownerReferences"][0]["uid"] =
        json!("00000000-0000-4000-8000-000000000001");
    documents[1] = injector;
    let file = std::env::temp_dir().join(format!("chaos-k8s-created-{}.yaml", std::process::id()));
    let text: Vec<String> = documents.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n---\n")).unwrap();
    for version in VERSIONS {
        let output = validate(std::slice::from_ref(&file), version);
        assert!(
            output.status.success(),
            "Kubernetes {version}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_file(file);
}

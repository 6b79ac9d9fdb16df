//! What `cargo xtask dist` ships (target/dist, or $CHAOS_DIST): a static `chaos` that runs where
//! there is no Rust and no glibc, and its FROM-scratch image, which run as a Kubernetes
//! DaemonSet pod runs it (host PID namespace, privileged, the host's bpffs and cgroup tree
//! mounted) fails one sibling container's connect() and nothing else, and leaves nothing behind
//! when its process is SIGKILLed.

use std::process::{Command, Output, Stdio};

use chaos_common::names::STATUS_LINES_ENV;
use chaos_tests::{
    Chaos, TestContainer, assert_no_chaos_programs, chaos, dist_dir, monotonic_ns, podman_env,
    tempdir,
};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");
/// The most the static binary may weigh.
const MAX_BYTES: u64 = 10 * 1024 * 1024;

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .envs(podman_env())
        .stdin(Stdio::null())
        .output()
        .expect("run podman")
}

/// Loads the image into the tests' podman storage, as a node would import it; its name.
fn load_image() -> &'static str {
    let archive = dist_dir().join("chaos-image.tar");
    let loaded = podman(&["load", "--quiet", "--input", archive.to_str().unwrap()]);
    assert!(
        loaded.status.success(),
        "podman load: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    chaos_common::names::DIST_IMAGE
}

fn text(output: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_static_binary_runs_in_an_image_with_nothing_else() {
    let binary = dist_dir().join("chaos");
    let size = std::fs::metadata(&binary).unwrap().len();
    assert!(size <= MAX_BYTES, "{} is {size} bytes", binary.display());
    let image = load_image();

    // The same version and commit as the binary the other tests run.
    let own = chaos(&["--version"]);
    // No network for these (the trimmed guest kernels have no bridge for podman's default).
    let version = podman(&["run", "--rm", "--network=none", image, "--version"]);
    assert!(version.status.success(), "{}", text(&version));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        String::from_utf8_lossy(&own.stdout)
    );
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("(commit "),
        "{}",
        text(&version)
    );

    // Nothing but chaos in it: no shell, no libc, no loader.
    let shell = podman(&[
        "run",
        "--rm",
        "--network=none",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "true",
    ]);
    let why = String::from_utf8_lossy(&shell.stderr);
    assert!(
        !shell.status.success() && why.contains("/bin/sh") && why.contains("no such file"),
        "the image must have no shell: {}",
        text(&shell)
    );

    // It loads programs from inside the container: its probe finds what the host's finds.
    let probe = |output: Output| -> Vec<(String, bool)> {
        assert!(output.status.success(), "{}", text(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            // These two run iproute2's `ip` and `tc`, which the image does not hold (README);
            // xdp-native is about the interfaces of the namespace chaos runs in (here none but
            // loopback).
            .filter(|f| {
                !["bridge", "sch-fq", "xdp-native"]
                    .contains(&f["feature"].as_str().unwrap_or_default())
            })
            .map(|f| {
                (
                    f["feature"].as_str().unwrap().to_owned(),
                    f["supported"] == true,
                )
            })
            .collect()
    };
    let in_image = probe(podman(&[
        "run",
        "--rm",
        "--network=none",
        "--privileged",
        "--volume=/sys/fs/bpf:/sys/fs/bpf",
        "--volume=/sys/fs/cgroup:/sys/fs/cgroup",
        image,
        "probe",
        "--json",
    ]));
    let on_host = probe(chaos(&["probe", "--json"]));
    assert_eq!(in_image, on_host);
}

/// The Debian package: the static binary as /usr/bin/chaos, its man page and its bash, zsh and
/// fish completions, no dependencies; unpacked, it runs and names the same version and commit.
#[test]
fn the_debian_package_holds_the_binary_its_man_page_and_completions() {
    // `chaos 0.1.0 (commit …)`: the package of this build's version.
    let own = String::from_utf8_lossy(&chaos(&["--version"]).stdout).into_owned();
    let version = own.split_whitespace().nth(1).expect("a version");
    let deb = dist_dir().join(format!("chaos_{version}_amd64.deb"));
    let dpkg_deb = |args: &[&str]| {
        let output = Command::new("dpkg-deb")
            .args(args)
            .output()
            .expect("run dpkg-deb");
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let deb_path = deb.to_str().unwrap();
    let fields = dpkg_deb(&["--field", deb_path]);
    for field in ["Package: chaos", "Architecture: amd64", "Version: "] {
        assert!(fields.contains(field), "{fields}");
    }
    assert!(
        !fields.contains("Depends"),
        "a static binary depends on nothing: {fields}"
    );
    let root = tempdir("deb");
    dpkg_deb(&["--extract", deb_path, root.to_str().unwrap()]);
    let unpacked = Command::new(root.join("usr/bin/chaos"))
        .arg("--version")
        .output()
        .expect("run the unpacked chaos");
    assert_eq!(String::from_utf8_lossy(&unpacked.stdout), own);
    // The package's chaos has `chaos k8s` (it asks for a cluster); the image's node binary
    // leaves it out and says so.
    let k8s = |binary: &std::path::Path| {
        let output = Command::new(binary)
            .args(["k8s", "list"])
            .env("KUBECONFIG", root.join("no-such-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("run chaos k8s");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let full = k8s(&root.join("usr/bin/chaos"));
    assert!(full.contains("no Kubernetes cluster to talk to"), "{full}");
    let node = k8s(&dist_dir().join("chaos"));
    assert!(
        node.contains("chaos k8s is not in this build of chaos"),
        "{node}"
    );
    // So is the monkey's pool of pods: refused (exit 2) before anything runs.
    let monkey = Command::new(dist_dir().join("chaos"))
        .args(["monkey", "--plan"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/k8s/monkey.toml"))
        .output()
        .expect("run chaos monkey");
    let stderr = String::from_utf8_lossy(&monkey.stderr);
    assert_eq!(monkey.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pods are faulted through `chaos k8s`, which this build leaves out"),
        "{stderr}"
    );
    let man = Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/chaos.1.gz"))
        .output()
        .expect("gzip");
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH chaos"));
    for completions in [
        "usr/share/bash-completion/completions/chaos",
        "usr/share/zsh/vendor-completions/_chaos",
        "usr/share/fish/vendor_completions.d/chaos.fish",
    ] {
        let script = std::fs::read_to_string(root.join(completions)).expect(completions);
        assert!(script.contains("corrupt-io"), "{completions}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_image_as_a_daemonset_pod_fails_one_sibling_container_only() {
    let image = load_image();
    let target = TestContainer::start("dist-target", VICTIM);
    let neighbour = TestContainer::start("dist-neighbour", VICTIM);
    let victim = target.exec_victim("connect", "-");
    let sibling = neighbour.exec_victim("connect", "-");
    let injector = format!("chaos-test-injector-{}", std::process::id());
    let status_lines = format!("{STATUS_LINES_ENV}=1");
    let start = monotonic_ns();
    // What a DaemonSet pod gets: the host's PID namespace, privileges, the host's bpffs and
    // cgroup tree (hostPath volumes); its own mount, network and cgroup namespaces.
    let mut run = Command::new("podman");
    run.envs(podman_env())
        .args(["run", "--rm", "--name", &injector])
        .args(["--pid=host", "--privileged", "--network=none"])
        .args(["--volume=/sys/fs/bpf:/sys/fs/bpf"])
        .args(["--volume=/sys/fs/cgroup:/sys/fs/cgroup"])
        .args(["--env", &status_lines, image])
        .args(["fail", "--container", &target.id, "--op", "connect"])
        .args(["--errno", "EHOSTUNREACH", "--for", "10m"]);
    let chaos = Chaos::spawn_live(&mut run);
    victim.wait_for_failure();
    let live = monotonic_ns();
    victim.wait_for_call_after(live + 200_000_000);

    // SIGKILL, as a deleted pod's container gets once its grace period is over.
    let killed = podman(&["kill", "--signal", "KILL", &injector]);
    assert!(killed.status.success(), "{}", text(&killed));
    let killed_at = monotonic_ns();
    let output = chaos.wait_with_output().expect("podman run");
    assert!(!output.status.success(), "the injector was not killed");
    assert_no_chaos_programs();
    victim.wait_for_call_after(monotonic_ns() + 200_000_000);

    let calls = victim.calls();
    let failed: Vec<i32> = calls.iter().filter_map(|c| c.errno).collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|&e| e == libc::EHOSTUNREACH),
        "the target's connect() must fail with EHOSTUNREACH only: {failed:?}"
    );
    assert!(
        calls
            .iter()
            .filter(|c| c.at_ns < start || c.at_ns > killed_at + 100_000_000)
            .all(|c| c.errno.is_none()),
        "the target failed outside the run"
    );
    assert!(
        sibling.calls().iter().all(|c| c.errno.is_none()),
        "the sibling container was hit"
    );
    // A run that is not detached pins nothing; nothing may be left under chaos's pin root.
    let pinned: Vec<_> = std::fs::read_dir("/sys/fs/bpf/chaos")
        .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(pinned.is_empty(), "left pinned: {pinned:?}");
}

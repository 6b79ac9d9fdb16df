//! A real containerd (Debian's 1.6 with runc), started by the test with its own root, state,
//! socket and CNI network, and pods made through its CRI API as kubelet makes them: a sandbox
//! per pod with cgroup parent `/kubepods/burstable/pod<UID>` (the cgroupfs driver's layout), app
//! containers joining its network namespace. The one image (busybox with the host's /usr and the
//! test binaries mounted read-only, as for the podman tests) is made locally and imported: no
//! registry. Dropping the [`Containerd`] removes the pods, stops containerd and takes back what
//! they made (mounts, cgroups, the bridge), so the machine is left as it was.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, KeyValue, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// The image every sandbox and container runs.
const IMAGE: &str = "localhost/chaos-cri-busybox:test";
/// The CNI network the pods join: the bridge's address is the host's, seen from a pod.
const NETWORK: &str = "chaos-tests-cri";
const BRIDGE: &str = "chaoscri0";
pub const BRIDGE_ADDRESS: &str = "10.99.0.1";
/// Where kubelet's cgroupfs driver puts burstable pods.
const CGROUP_PARENT: &str = "/kubepods/burstable";

/// A containerd of the test's own.
pub struct Containerd {
    dir: PathBuf,
    daemon: Child,
    runtime: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    pods: Vec<Pod>,
}

#[derive(Clone, Debug)]
pub struct Pod {
    pub id: String,
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// A DaemonSet-like pod: privileged, in the host's PID namespace.
    privileged: bool,
    config: PodSandboxConfig,
}

/// What a container runs, and with what.
pub struct Spec<'a> {
    pub image: &'a str,
    /// Empty: the image's entrypoint.
    pub command: &'a [&'a str],
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// Host path, path in the container, read-only.
    pub mounts: &'a [(&'a Path, &'a Path, bool)],
}

#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub pid: u32,
    /// Its CRI log file.
    log: PathBuf,
}

impl Container {
    /// What it wrote to stdout, from its CRI log (`TIME STREAM P|F TEXT` lines; P is part of a
    /// line the next one continues), as `kubectl logs` shows it.
    pub fn stdout(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::new();
        for line in log.lines() {
            let mut fields = line.splitn(4, ' ');
            let (_, stream, tag, text) =
                (fields.next(), fields.next(), fields.next(), fields.next());
            if stream == Some("stdout") {
                out.push_str(text.unwrap_or_default());
                if tag == Some("F") {
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Containerd {
    /// Starts containerd and imports the image; panics with containerd's log if it cannot.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("chaos-containerd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("cni")).expect("make containerd's directory");
        let socket = dir.join("containerd.sock");
        fs::write(dir.join("config.toml"), config(&dir)).expect("write containerd's config");
        fs::write(dir.join("cni/10-chaos-tests.conflist"), cni_config(&dir))
            .expect("write the CNI config");
        let log = fs::File::create(dir.join("containerd.log")).expect("containerd's log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd (Debian's containerd; `cargo xtask setup` installs it)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ctr(&dir, &["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer in 30 s: {}",
                fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let client = runtime.block_on(async {
            let path = socket.clone();
            let channel = Endpoint::try_from("http://[::]:50051")
                .expect("an endpoint")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .expect("connect to containerd's CRI socket");
            RuntimeServiceClient::new(channel)
        });
        let containerd = Containerd {
            dir,
            daemon,
            runtime,
            client,
            pods: Vec::new(),
        };
        containerd.import_image();
        containerd
    }

    /// Imports an image archive (docker or OCI) into the namespace the CRI plugin uses, as a
    /// node without a registry would.
    pub fn import(&self, archive: &Path) {
        let archive = archive.to_str().expect("a UTF-8 path");
        let output = ctr(
            &self.dir,
            &["--namespace", "k8s.io", "images", "import", archive],
        );
        assert!(
            output.status.success(),
            "ctr images import: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The busybox image, made from a root directory with podman and imported with ctr.
    fn import_image(&self) {
        let rootfs = self.dir.join("image-root");
        crate::container::busybox_root(&rootfs);
        let layer = self.dir.join("image-root.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer)
            .arg("."));
        run(crate::podman()
            .args([
                "import",
                "--change",
                r#"ENTRYPOINT ["/bin/busybox", "sleep", "2147483647"]"#,
            ])
            .arg(&layer)
            .arg(IMAGE));
        let archive = self.dir.join("image.tar");
        run(crate::podman()
            .args(["save", "--format", "docker-archive", "--output"])
            .arg(&archive)
            .arg(IMAGE));
        let _ = crate::podman().args(["rmi", IMAGE]).output();
        self.import(&archive);
    }

    /// Runs a pod sandbox, as kubelet does for a burstable pod of namespace `default`;
    /// `privileged`: as for a DaemonSet pod with `hostPID` and a privileged container.
    pub fn run_pod(&mut self, name: &str, uid: &str, privileged: bool) -> Pod {
        let namespace = "default".to_owned();
        let log_directory = self.dir.join(format!("logs/{namespace}_{name}_{uid}"));
        fs::create_dir_all(&log_directory).expect("make the pod's log directory");
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.clone(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_directory.display().to_string(),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".into(), name.into()),
                ("io.kubernetes.pod.namespace".into(), namespace.clone()),
                ("io.kubernetes.pod.uid".into(), uid.into()),
            ]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("{CGROUP_PARENT}/pod{uid}"),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(kubelet_namespaces(privileged)),
                    privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let id = self
            .runtime
            .block_on(self.client.run_pod_sandbox(request))
            .unwrap_or_else(|err| panic!("RunPodSandbox {name}: {err}\n{}", self.log()))
            .into_inner()
            .pod_sandbox_id;
        let pod = Pod {
            id,
            uid: uid.into(),
            name: name.into(),
            namespace,
            privileged,
            config,
        };
        self.pods.push(pod.clone());
        pod
    }

    /// Creates and starts container `name` of the busybox image in `pod`, running `command`
    /// with `env`, with /usr and the directory of the test binaries (at /chaos) mounted
    /// read-only and `shared` (at the same path) writable.
    pub fn start_busybox(
        &mut self,
        pod: &Pod,
        name: &str,
        command: &[&str],
        env: &[(&str, &str)],
        bin_dir: &Path,
        shared: &Path,
    ) -> Container {
        let spec = Spec {
            image: IMAGE,
            command,
            args: &[],
            env,
            mounts: &[
                (Path::new("/usr"), Path::new("/usr"), true),
                (bin_dir, Path::new("/chaos"), true),
                (shared, shared, false),
            ],
        };
        self.start_container(pod, name, &spec)
    }

    /// Creates and starts container `name` in `pod` as `spec` says; privileged in a privileged
    /// pod.
    pub fn start_container(&mut self, pod: &Pod, name: &str, spec: &Spec<'_>) -> Container {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: spec.image.into(),
                ..Default::default()
            }),
            command: spec.command.iter().map(|word| word.to_string()).collect(),
            args: spec.args.iter().map(|word| word.to_string()).collect(),
            envs: spec
                .env
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            log_path: format!("{name}/0.log"),
            mounts: spec
                .mounts
                .iter()
                .map(|&(host, container, readonly)| mount(host, container, readonly))
                .collect(),
            labels: HashMap::from([
                ("io.kubernetes.container.name".into(), name.into()),
                ("io.kubernetes.pod.name".into(), pod.name.clone()),
                ("io.kubernetes.pod.namespace".into(), pod.namespace.clone()),
                ("io.kubernetes.pod.uid".into(), pod.uid.clone()),
            ]),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(kubelet_namespaces(pod.privileged)),
                    privileged: pod.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let id = self
            .runtime
            .block_on(self.client.create_container(request))
            .unwrap_or_else(|err| panic!("CreateContainer {name}: {err}\n{}", self.log()))
            .into_inner()
            .container_id;
        self.runtime
            .block_on(self.client.start_container(StartContainerRequest {
                container_id: id.clone(),
            }))
            .unwrap_or_else(|err| panic!("StartContainer {name}: {err}\n{}", self.log()));
        let pid = self.status(&id).1.expect("a started container's PID");
        Container {
            id,
            name: name.into(),
            pid,
            log: Path::new(&pod.config.log_directory).join(format!("{name}/0.log")),
        }
    }

    /// Stops a container as kubelet does when its pod is deleted: SIGTERM, SIGKILL after
    /// `grace` seconds.
    pub fn stop_container(&mut self, container: &Container, grace: i64) {
        self.runtime
            .block_on(self.client.stop_container(StopContainerRequest {
                container_id: container.id.clone(),
                timeout: grace,
            }))
            .unwrap_or_else(|err| panic!("StopContainer {}: {err}", container.name));
    }

    /// A container's state and, while it has one, its PID; with its exit code once it exited.
    fn status(&mut self, id: &str) -> (ContainerState, Option<u32>, i32) {
        let response = self
            .runtime
            .block_on(self.client.container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            }))
            .unwrap_or_else(|err| panic!("ContainerStatus {id}: {err}"))
            .into_inner();
        let status = response.status.expect("a container status");
        let info: serde_json::Value = response
            .info
            .get("info")
            .and_then(|info| serde_json::from_str(info).ok())
            .unwrap_or_default();
        let pid = info["pid"]
            .as_u64()
            .filter(|pid| *pid > 0)
            .map(|pid| pid as u32);
        (status.state(), pid, status.exit_code)
    }

    /// The exit code of a container that exited, or `None` while it runs.
    pub fn exit_code(&mut self, container: &Container) -> Option<i32> {
        let (state, _, code) = self.status(&container.id);
        (state == ContainerState::ContainerExited).then_some(code)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for pod in std::mem::take(&mut self.pods) {
            let _ = self
                .runtime
                .block_on(self.client.stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: pod.id.clone(),
                }));
            let _ =
                self.runtime
                    .block_on(self.client.remove_pod_sandbox(RemovePodSandboxRequest {
                        pod_sandbox_id: pod.id.clone(),
                    }));
        }
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.daemon.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        take_back(&self.dir);
    }
}

/// Takes back what containerd, its shims and runc made and do not remove themselves: shims and
/// containers a failed test left running, mounts under `dir`, the pods' cgroups, the bridge, the
/// shims' sockets, then `dir`.
fn take_back(dir: &Path) {
    let socket = dir.join("containerd.sock");
    let shim_sockets: Vec<PathBuf> =
        fs::read_dir(dir.join("state/io.containerd.runtime.v2.task/k8s.io"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| fs::read_to_string(task.path().join("address")).ok())
            .map(|address| PathBuf::from(address.trim().trim_start_matches("unix://")))
            .collect();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("/usr/bin/containerd-shim-runc-v2")
            && cmdline.contains(&format!("-address {} ", socket.display()))
            && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
        {
            // SAFETY: kill(2) on a shim of this test's containerd.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    let mut cgroups = Vec::new();
    for hierarchy in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let kubepods = hierarchy.path().join(CGROUP_PARENT.trim_start_matches('/'));
        collect_dirs(&kubepods, &mut cgroups);
    }
    for cgroup in &cgroups {
        for pid in fs::read_to_string(cgroup.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
        {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) on a process left in the test's pods' cgroups.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut ours: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    ours.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in ours {
        let path = std::ffi::CString::new(point).expect("a mount point");
        // SAFETY: umount2 of a mount under the test's own directory.
        unsafe {
            libc::umount2(path.as_ptr(), libc::MNT_DETACH);
        }
    }
    // Deepest first, then kubepods/burstable and kubepods themselves where nothing else is left.
    for cgroup in cgroups.iter().rev() {
        let _ = fs::remove_dir(cgroup);
    }
    for hierarchy in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = fs::remove_dir(hierarchy.path().join("kubepods/burstable"));
        let _ = fs::remove_dir(hierarchy.path().join("kubepods"));
    }
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    for socket in shim_sockets {
        let _ = fs::remove_file(socket);
    }
    let _ = fs::remove_dir("/run/containerd/s");
    let _ = fs::remove_dir("/run/containerd");
    for entry in fs::read_dir("/var/lib/cni/results")
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(NETWORK) {
            let _ = fs::remove_file(entry.path());
        }
    }
    let _ = fs::remove_dir_all(dir);
}

/// `dir` and every directory under it, parents before children.
fn collect_dirs(dir: &Path, into: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    into.push(dir.to_path_buf());
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            collect_dirs(&entry.path(), into);
        }
    }
}

/// kubelet's namespaces for a pod: the pod's network and IPC, a PID namespace per container (or
/// the host's, for `hostPID`).
fn kubelet_namespaces(host_pid: bool) -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: if host_pid {
            NamespaceMode::Node
        } else {
            NamespaceMode::Container
        } as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn mount(host: &Path, container: &Path, readonly: bool) -> Mount {
    Mount {
        container_path: container.display().to_string(),
        host_path: host.display().to_string(),
        readonly,
        ..Default::default()
    }
}

fn ctr(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("ctr")
        .arg("--address")
        .arg(dir.join("containerd.sock"))
        .args(args)
        .output()
        .expect("run ctr (Debian's containerd)")
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// containerd's configuration: everything under `dir`, runc with the cgroupfs driver, the CRI
/// plugin with our image as the sandbox's, our CNI network, no registry.
fn config(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[debug]
  address = "{dir}/debug.sock"
  level = "info"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{dir}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{IMAGE}"
    # The network namespaces' files go under the state directory, not /var/run/netns.
    netns_mounts_under_state_dir = true
    disable_tcp_service = true
    # runc cannot set the sandbox's oom_score_adj of -998 without CAP_SYS_RESOURCE.
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "{snapshotter}"
      default_runtime_name = "runc"
      disable_snapshot_annotations = true
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "/usr/sbin/runc"
          Root = "{dir}/state/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{dir}/cni"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""
"#,
        snapshotter = snapshotter(),
    )
}

/// overlayfs where the temporary directory allows it (not over an overlay root, as in the
/// guests), native otherwise.
fn snapshotter() -> &'static str {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let temp = std::env::temp_dir();
    let fs_type = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let point = fields.nth(1)?;
            let kind = fields.next()?;
            temp.starts_with(point).then_some((point.len(), kind))
        })
        .max()
        .map(|(_, kind)| kind)
        .unwrap_or_default();
    if fs_type == "overlay" {
        "native"
    } else {
        "overlayfs"
    }
}

/// A bridge network on 10.99.0.0/24 whose gateway is the host: pods reach servers the test runs.
fn cni_config(dir: &Path) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "{NETWORK}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "dataDir": "{}/cni-ipam",
        "ranges": [[{{ "subnet": "10.99.0.0/24", "gateway": "{BRIDGE_ADDRESS}" }}]]
      }}
    }}
  ]
}}
"#,
        dir.display()
    )
}

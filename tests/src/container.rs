//! Real podman containers for the tests: a busybox root with the host's /usr and the test binaries
//! mounted read-only, run by runc with the cgroupfs manager (../shared/KERNEL.md: crun refuses
//! hybrid cgroups). No image registry is involved.
//!
//! The tests' podman has a configuration of its own that names everything the machine's defaults
//! would otherwise choose: the vfs storage driver in a storage directory of its own (overlay
//! storage cannot work over the guests' overlay root without fuse-overlayfs, and a machine's
//! existing storage may use another driver) and the CNI network backend (netavark, when
//! installed, would be picked instead). The chaos processes the tests start get the same
//! configuration ([`podman_env`]), so that chaos finds the tests' containers by name.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::Victim;

/// The podman configuration the tests' containers use.
const CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
[network]
network_backend = "cni"
"#;

/// The storage the tests' containers use, under [`PODMAN_DIR`] (`{dir}`).
const STORAGE_CONF: &str = r#"[storage]
driver = "vfs"
graphroot = "{dir}/storage"
runroot = "{dir}/run"
"#;

/// Where the tests' podman keeps its configuration and storage: on a tmpfs, reused by every run.
const PODMAN_DIR: &str = "/run/chaos-tests/podman";

/// The environment that gives podman the tests' configuration, written on first use.
pub fn podman_env() -> [(&'static str, PathBuf); 2] {
    static WRITTEN: std::sync::Once = std::sync::Once::new();
    let dir = Path::new(PODMAN_DIR);
    WRITTEN.call_once(|| {
        fs::create_dir_all(dir).expect("make the tests' podman directory");
        fs::write(dir.join("containers.conf"), CONTAINERS_CONF).expect("write containers.conf");
        let storage = STORAGE_CONF.replace("{dir}", PODMAN_DIR);
        fs::write(dir.join("storage.conf"), storage).expect("write storage.conf");
    });
    [
        ("CONTAINERS_CONF", dir.join("containers.conf")),
        ("CONTAINERS_STORAGE_CONF", dir.join("storage.conf")),
    ]
}

/// A running container, removed on drop with everything it runs.
pub struct TestContainer {
    pub name: String,
    pub id: String,
    dir: PathBuf,
}

impl TestContainer {
    /// Starts a container that idles, without a network; the directory holding `victim_bin` is
    /// mounted at /chaos.
    pub fn start(name: &str, victim_bin: &str) -> Self {
        // Their own network namespace without a bridge: the faults there are not network ones,
        // and the trimmed guest kernels have no bridge driver.
        Self::start_on(name, victim_bin, "none", &[])
    }

    /// As [`TestContainer::start`], with these labels (`KEY=VALUE`).
    pub fn start_labelled(name: &str, victim_bin: &str, labels: &[&str]) -> Self {
        Self::start_on(name, victim_bin, "none", labels)
    }

    /// As [`TestContainer::start`], on podman's default bridge network; podman's error when it
    /// cannot make one (a kernel without the bridge driver).
    pub fn start_networked(name: &str, bin: &str) -> Result<Self, String> {
        Self::try_start_on(name, bin, "bridge", &[])
    }

    fn start_on(name: &str, victim_bin: &str, network: &str, labels: &[&str]) -> Self {
        Self::try_start_on(name, victim_bin, network, labels).unwrap_or_else(|err| panic!("{err}"))
    }

    fn try_start_on(
        name: &str,
        victim_bin: &str,
        network: &str,
        labels: &[&str],
    ) -> Result<Self, String> {
        let name = format!("chaos-test-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let rootfs = dir.join("rootfs");
        busybox_root(&rootfs);
        let bin_dir = Path::new(victim_bin)
            .parent()
            .expect("the victim's directory");
        let mut container = TestContainer {
            name,
            id: String::new(),
            dir,
        };
        let output = container
            .podman()
            .args(["run", "--detach", "--name", &container.name])
            .args(["--network", network])
            .args(labels.iter().flat_map(|label| ["--label", label]))
            .args(["--volume", "/usr:/usr:ro"])
            .arg(format!("--volume={}:/chaos:ro", bin_dir.display()))
            .arg("--rootfs")
            .arg(&rootfs)
            .args(["/bin/sh", "-c", "while true; do sleep 1; done"])
            .stdin(Stdio::null())
            .output()
            .expect("run podman (Debian's podman and runc; `cargo xtask setup` installs them)");
        if !output.status.success() {
            return Err(format!(
                "podman run: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        container.id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(container)
    }

    /// Starts `/chaos/victim OP ARG` inside the container with `podman exec` and waits for its
    /// first call; its lines come back through podman.
    pub fn exec_victim(&self, op: &str, arg: &str) -> Victim {
        let mut command = self.podman();
        command.args(["exec", &self.name, "/chaos/victim", op, arg]);
        let victim = Victim::spawn(command, false, None);
        victim.wait_for_calls(1);
        victim
    }

    /// Starts `/chaos/BIN ARGS` inside the container with `podman exec`, its stdout piped.
    pub fn exec(&self, bin: &str, args: &[&str]) -> crate::netbed::Peer {
        let mut command = self.podman();
        command
            .args(["exec", &self.name])
            .arg(format!("/chaos/{bin}"))
            .args(args);
        crate::netbed::Peer::spawn(command)
    }

    /// The PID of the container's first process, as this machine sees it.
    pub fn pid(&self) -> u32 {
        let output = self
            .podman()
            .args(["inspect", "--format", "{{.State.Pid}}", &self.name])
            .output()
            .expect("podman inspect");
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("podman inspect gave no PID: {text}"))
    }

    /// The container's IPv4 address on its network.
    pub fn ip(&self) -> String {
        let output = self
            .podman()
            .args([
                "inspect",
                "--format",
                "{{.NetworkSettings.IPAddress}}",
                &self.name,
            ])
            .output()
            .expect("podman inspect");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Stops and removes the container at once.
    pub fn remove(&self) {
        let _ = self
            .podman()
            .args(["rm", "--force", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn podman(&self) -> Command {
        podman()
    }
}

/// Makes a container root at `rootfs`: busybox (sh, sleep) and empty /usr and /chaos, where the
/// host's /usr and the test binaries are mounted, with /lib and /lib64 leading into /usr.
pub(crate) fn busybox_root(rootfs: &Path) {
    for sub in ["bin", "usr", "chaos", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(sub)).expect("make the container root");
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("copy /bin/busybox (Debian's busybox-static)");
    for (link, to) in [
        ("bin/sh", "busybox"),
        ("bin/sleep", "busybox"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(to, rootfs.join(link)).expect("link in the container root");
    }
}

/// `podman` with the tests' configuration.
pub fn podman() -> Command {
    let mut command = Command::new("podman");
    command.envs(podman_env());
    command
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        self.remove();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

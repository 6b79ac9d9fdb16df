//! `cargo xtask vm-run`: one command in a throwaway qemu guest. The guest's root is the host's /
//! shared read-only over virtio-9p under a tmpfs overlay, so host-built binaries run unchanged and
//! nothing the guest writes reaches the host, except in the scratch directory shared at /scratch.
//!
//! The command travels as a shell script through a third 9p share (`chaosctl`), and the guest
//! writes its exit status back there before powering off: qemu's own exit code says nothing.

use chaos_common::features;
use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{kernels, run_command, workspace_root};

pub const DEFAULT_KERNEL: &str = "faultinj-6.12";
/// Every kernel `vm-run` and `vm-test` can boot.
pub const KERNELS: [&str; 6] = [
    "faultinj-6.12",
    "debian-5.10",
    "debian-6.1",
    "debian-6.12",
    "debian-6.1-nolsm",
    "debian-6.12-nolsm",
];
/// The kernels `cargo xtask test` runs the integration tests on, after the host: the longest
/// suites first, as the guests run side by side (CI of 2026-12-05 on two cores: debian-6.12
/// 1304 s, debian-6.1 1257 s, debian-5.10 872 s, the others under 500 s).
pub const MATRIX: [&str; 8] = [
    "debian-6.12",
    "debian-6.1",
    "debian-5.10",
    "faultinj-6.12",
    "debian-6.1-arm64",
    "debian-6.12-arm64",
    "debian-6.1-nolsm",
    "debian-6.12-nolsm",
];

/// The active LSM list the guests boot with: Debian's and Ubuntu's, with bpf (apparmor left out:
/// the shared guest root cannot load its policy).
pub const LSM_WITH_BPF: &str = "lockdown,capability,landlock,yama,bpf";
/// A production list without bpf, as Ubuntu, RHEL and Amazon Linux boot.
const LSM_WITHOUT_BPF: &str = "landlock,lockdown,yama";
/// The suites whose rungs the LSM list changes: all a nolsm guest runs.
const NOLSM_SUITES: [&str; 5] = [
    "cli",
    "disk_full",
    "errno_ops",
    "errno_path",
    "run_lifetime",
];

/// All faultinj-6.12 runs: the suites its differences from debian-6.12, the same release,
/// change (the error-injection list, kprobe override and loop devices it has; the syscall
/// tracepoints and TCP socket diagnostics it lacks). The rest runs on debian-6.12; the whole
/// suite here took 21 of CI's minutes.
const FAULTINJ_SUITES: [&str; 11] = [
    "cli",
    "clock",
    "corrupt_io",
    "delay",
    "disk",
    "disk_full",
    "drills",
    "errno_kprobe",
    "errno_syscall",
    "net_reset",
    "signal",
];

/// Guest stage 1 (in the initramfs): mounts the 9p root under an overlay and switches to it.
const INIT: &str = include_str!("vm/init.sh");
/// Guest stage 2 (PID 1 in the overlay root): mounts the pseudo file systems the tool uses,
/// runs the command, reports its status.
const STAGE2: &str = include_str!("vm/stage2.sh");

/// A 64 MiB sparse image in `dir` for the guest's spare disk.
fn spare_disk(dir: &Path) -> anyhow::Result<PathBuf> {
    let image = dir.join("spare.img");
    fs::File::create(&image)?.set_len(64 << 20)?;
    Ok(image)
}

/// Status reported when the guest gave none (crash, timeout).
const NO_STATUS: i32 = 125;
/// A guest that runs longer than this is killed.
const TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// A kernel the tests can boot, and the `chaos probe` features that must work on it.
pub struct Kernel {
    pub name: &'static str,
    pub image: PathBuf,
    pub expect: &'static [&'static str],
    /// The `lsm=` it boots with.
    pub lsm: &'static str,
    /// Only these integration test binaries run on it (the families its difference from a
    /// kernel of the matrix changes); `None`: all.
    pub only: Option<&'static [&'static str]>,
    /// A stock kernel's modules: loaded at boot as far as the runner needs them, the rest on
    /// demand from the tree mounted at /lib/modules/RELEASE in the guest.
    pub modules: Option<Modules>,
}

/// The module tree of a distribution kernel, extracted on the host.
pub struct Modules {
    /// `lib/modules/RELEASE` of the extracted package.
    pub tree: PathBuf,
    /// What the initramfs loads, in order, before it mounts the 9p root (paths in `tree`).
    pub boot: &'static [&'static str],
}

/// The modules Debian's 6.1 kernel needs to mount the runner's 9p shares and overlay root.
const DEBIAN_6_1_BOOT_MODULES: &[&str] = &[
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/net/9p/9pnet.ko",
    "kernel/net/9p/9pnet_virtio.ko",
    "kernel/fs/netfs/netfs.ko",
    "kernel/fs/fscache/fscache.ko",
    "kernel/fs/9p/9p.ko",
    "kernel/fs/overlayfs/overlay.ko",
];

/// The same for Debian's 5.10 (no netfs yet).
const DEBIAN_5_10_BOOT_MODULES: &[&str] = &[
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/net/9p/9pnet.ko",
    "kernel/net/9p/9pnet_virtio.ko",
    "kernel/fs/fscache/fscache.ko",
    "kernel/fs/9p/9p.ko",
    "kernel/fs/overlayfs/overlay.ko",
];

/// The same for Debian's 6.12 (virtio built in, fscache part of netfs, modules xz-compressed:
/// the initramfs gets them unpacked, as busybox insmod cannot read xz).
const DEBIAN_6_12_BOOT_MODULES: &[&str] = &[
    "kernel/fs/netfs/netfs.ko.xz",
    "kernel/net/9p/9pnet.ko.xz",
    "kernel/net/9p/9pnet_virtio.ko.xz",
    "kernel/fs/9p/9p.ko.xz",
    "kernel/fs/overlayfs/overlay.ko.xz",
];

impl Kernel {
    pub fn named(name: &str) -> anyhow::Result<Self> {
        match name {
            "faultinj-6.12" => {
                let image = kernels::faultinj_image()?;
                Ok(Kernel {
                    name: "faultinj-6.12",
                    image,
                    lsm: LSM_WITH_BPF,
                    only: Some(&FAULTINJ_SUITES),
                    expect: &[
                        features::BTF,
                        features::BPF_LSM,
                        features::TRAMPOLINE,
                        features::FMOD_RET,
                        features::KPROBES,
                        features::BPF_ATOMICS,
                        features::STRUCT_ARGS,
                        features::KPROBE_OVERRIDE,
                        features::ERROR_INJECTION,
                        features::PERF_LINK,
                        features::CGROUP_SOCK_ADDR,
                        features::TCX,
                        features::XDP,
                        features::CGROUP_SKB,
                        features::SCH_FQ,
                    ],
                    modules: None,
                })
            }
            // No tcx (6.6) and no kprobe override (CONFIG_BPF_KPROBE_OVERRIDE unset).
            "debian-6.1" => Self::debian(
                "debian-6.1",
                &kernels::DEBIAN_6_1,
                DEBIAN_6_1_BOOT_MODULES,
                &[
                    features::BTF,
                    features::BPF_LSM,
                    features::TRAMPOLINE,
                    features::FMOD_RET,
                    features::KPROBES,
                    features::BPF_ATOMICS,
                    features::STRUCT_ARGS,
                    features::CGROUP_SOCK_ADDR,
                    features::TRACEPOINT_SIGNAL,
                    features::PROBE_WRITE_USER,
                    features::PERF_LINK,
                    features::XDP,
                    features::CGROUP_SKB,
                    features::SCH_FQ,
                    features::BRIDGE,
                ],
            ),
            // No kprobe override (CONFIG_BPF_KPROBE_OVERRIDE unset).
            "debian-6.12" => Self::debian(
                "debian-6.12",
                &kernels::DEBIAN_6_12,
                DEBIAN_6_12_BOOT_MODULES,
                &[
                    features::BTF,
                    features::BPF_LSM,
                    features::TRAMPOLINE,
                    features::FMOD_RET,
                    features::KPROBES,
                    features::BPF_ATOMICS,
                    features::STRUCT_ARGS,
                    features::CGROUP_SOCK_ADDR,
                    features::TRACEPOINT_SIGNAL,
                    features::PROBE_WRITE_USER,
                    features::PERF_LINK,
                    features::TCX,
                    features::XDP,
                    features::CGROUP_SKB,
                    features::SCH_FQ,
                    features::BRIDGE,
                ],
            ),
            // Debian 11's and Amazon Linux 2's kernel line: no BPF atomics (5.12), no
            // bpf_set_retval (5.18), no struct arguments in trampolines (6.1), no tcx (6.6).
            // The suites of faults on calls run here, which the build without atomics serves;
            // the network faults' programs are the ones debian-6.1 runs through clsact.
            "debian-5.10" => Ok(Kernel {
                only: Some(&[
                    "cli",
                    "clock",
                    "corrupt_io",
                    "delay",
                    "disk_full",
                    "errno_connect",
                    "errno_ops",
                    "errno_path",
                    "errno_when",
                    "experiments",
                    "net_reset",
                    "pause",
                    "run_lifetime",
                    "signal",
                    "targets",
                ]),
                ..Self::debian(
                    "debian-5.10",
                    &kernels::DEBIAN_5_10,
                    DEBIAN_5_10_BOOT_MODULES,
                    &[
                        features::BTF,
                        features::BPF_LSM,
                        features::TRAMPOLINE,
                        features::FMOD_RET,
                        features::KPROBES,
                        features::TRACEPOINT_SIGNAL,
                        features::PROBE_WRITE_USER,
                        features::XDP,
                        features::CGROUP_SKB,
                        features::SCH_FQ,
                        features::BRIDGE,
                    ],
                )?
            }),
            // The same kernels booted as production distributions boot theirs: bpf not in the
            // active LSM list, so file, exec and fork faults take the fmod_ret rung. Only the
            // suites that list changes run here; the rest is the kernel's own guest's.
            "debian-6.1-nolsm" => Ok(Kernel {
                lsm: LSM_WITHOUT_BPF,
                only: Some(&NOLSM_SUITES),
                ..Self::debian(
                    "debian-6.1-nolsm",
                    &kernels::DEBIAN_6_1,
                    DEBIAN_6_1_BOOT_MODULES,
                    &[
                        features::BTF,
                        features::TRAMPOLINE,
                        features::FMOD_RET,
                        features::KPROBES,
                        features::BPF_ATOMICS,
                        features::STRUCT_ARGS,
                        features::CGROUP_SOCK_ADDR,
                        features::TRACEPOINT_SIGNAL,
                        features::PROBE_WRITE_USER,
                        features::PERF_LINK,
                        features::CGROUP_SKB,
                    ],
                )?
            }),
            "debian-6.12-nolsm" => Ok(Kernel {
                lsm: LSM_WITHOUT_BPF,
                only: Some(&NOLSM_SUITES),
                ..Self::debian(
                    "debian-6.12-nolsm",
                    &kernels::DEBIAN_6_12,
                    DEBIAN_6_12_BOOT_MODULES,
                    &[
                        features::BTF,
                        features::TRAMPOLINE,
                        features::FMOD_RET,
                        features::KPROBES,
                        features::BPF_ATOMICS,
                        features::STRUCT_ARGS,
                        features::CGROUP_SOCK_ADDR,
                        features::TRACEPOINT_SIGNAL,
                        features::PROBE_WRITE_USER,
                        features::PERF_LINK,
                        features::TCX,
                        features::CGROUP_SKB,
                    ],
                )?
            }),
            other => bail!(
                "unknown kernel '{other}': expected one of: {}",
                KERNELS.join(", ")
            ),
        }
    }

    /// A stock Debian kernel, fetched unless cached, with its module tree shared in.
    fn debian(
        name: &'static str,
        package: &kernels::DebianKernel,
        boot: &'static [&'static str],
        expect: &'static [&'static str],
    ) -> anyhow::Result<Self> {
        let (image, tree) = package.fetch()?;
        Ok(Kernel {
            name,
            image,
            expect,
            lsm: LSM_WITH_BPF,
            only: None,
            modules: Some(Modules { tree, boot }),
        })
    }
}

/// What the guest's clock measures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Real time, as on any machine.
    Real,
    /// Instructions: one nanosecond of guest time per instruction the guest's CPUs execute (qemu
    /// `-icount shift=0`; real time while they all idle). A loop timed this way costs the
    /// same from run to run (to 0.3 %), where real time under TCG moves by 35 % with the host.
    Instructions,
}

/// Boots `kernel`, runs `command` (with `env`, NAME=VALUE) in the host's current directory, and
/// returns its exit status. The console streams to stdout, each line after `prefix` (which
/// tells guests running side by side apart). With `keep`, what the guest wrote to /scratch is
/// copied there.
pub fn run(
    kernel: &Kernel,
    env: &[String],
    command: &[String],
    keep: Option<&Path>,
    prefix: &str,
    clock: Clock,
) -> anyhow::Result<i32> {
    let initramfs = initramfs(kernel.modules.as_ref())?;
    let control = TempDir::new("ctl")?;
    let scratch = TempDir::new("scratch")?;
    fs::write(control.path.join("cmd.sh"), command_script(env, command)?)?;

    let mut append = format!("console=ttyS0 panic=-1 loglevel=3 lsm={}", kernel.lsm);
    if let Some(modules) = &kernel.modules {
        // Stage 2 mounts the host's extracted tree at /lib/modules/RELEASE for modprobe.
        append.push_str(&format!(" chaosvm.modules={}", modules.tree.display()));
    }
    let share = |id: &str, path: &Path, extra: &str| {
        [
            "-fsdev".to_owned(),
            format!(
                "local,id={id},path={},security_model=none{extra}",
                path.display()
            ),
            "-device".to_owned(),
            format!("virtio-9p-pci,fsdev={id},mount_tag={id}"),
        ]
    };
    let mut qemu = Command::new("qemu-system-x86_64");
    // Multi-threaded TCG oopses in about 3 % of boots while the kernel patches its own text
    // (int3 in sched_clock_cpu); a single TCG thread never did in 80 boots, at the same speed.
    qemu.args([
        "-accel",
        "tcg,thread=single",
        "-cpu",
        "max",
        "-m",
        "1024",
        "-smp",
        "2",
    ])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-serial",
        "stdio",
        "-no-reboot",
    ])
    .args(["-bios", "/usr/share/qemu/qboot.rom"])
    .args(match clock {
        Clock::Real => &[][..],
        Clock::Instructions => &["-icount", "shift=0"][..],
    })
    .arg("-kernel")
    .arg(&kernel.image)
    .arg("-initrd")
    .arg(&initramfs)
    .args(["-append", &append])
    .args(share(
        "hostroot",
        Path::new("/"),
        ",readonly=on,multidevs=remap",
    ))
    .args(share("scratch", &scratch.path, ",multidevs=remap"))
    .args(share("chaosctl", &control.path, ""))
    // Two virtio-net NICs on one wire (a qemu hub, nothing else on it): the XDP tests' real
    // driver, one NIC in each of their namespaces.
    .args((0..2).flat_map(|n| {
        [
            "-netdev".to_owned(),
            format!("hubport,id=wire{n},hubid=0"),
            "-device".to_owned(),
            format!("virtio-net-pci,netdev=wire{n},mac=52:54:00:c4:a0:0{n}"),
        ]
    }))
    // A spare virtio disk, found by its serial: partitions numbered after their disk, as a
    // SCSI or virtio disk's are (a loop device's get extended numbers), for the disk tests.
    .args([
        "-drive".to_owned(),
        format!(
            "file={},if=none,id=spare,format=raw",
            spare_disk(&control.path)?.display()
        ),
        "-device".to_owned(),
        format!(
            "virtio-blk-pci,drive=spare,serial={}",
            chaos_common::names::SPARE_DISK_SERIAL
        ),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut child = qemu
        .spawn()
        .context("start qemu-system-x86_64 (cargo xtask setup installs it)")?;
    let console = child.stdout.take().expect("piped stdout");
    let started = Instant::now();
    let qemu_pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(TIMEOUT);
        let _ = Command::new("kill").args(["-KILL", &qemu_pid]).status();
    });
    let mut marker = None;
    for line in BufReader::new(console).split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        if let Some(status) = line.strip_prefix("CHAOS-VM-EXIT=") {
            marker = status.trim().parse().ok();
            continue;
        }
        if line.ends_with("reboot: Power down") {
            continue;
        }
        let _ = writeln!(std::io::stdout().lock(), "{prefix}{line}");
    }
    let _ = child.wait();
    if let Some(keep) = keep {
        fs::create_dir_all(keep)?;
        for entry in fs::read_dir(&scratch.path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::copy(entry.path(), keep.join(entry.file_name()))?;
            }
        }
    }
    let status = fs::read_to_string(control.path.join("status"))
        .ok()
        .and_then(|status| status.trim().parse().ok())
        .or(marker);
    match status {
        Some(status) => Ok(status),
        None => {
            eprintln!(
                "vm-run: the guest gave no exit status after {:.0?} (kernel crash or timeout)",
                started.elapsed()
            );
            Ok(NO_STATUS)
        }
    }
}

/// The command as a POSIX shell script: every word single-quoted, the environment exported, run
/// in the host's current directory when the guest has it.
fn command_script(env: &[String], command: &[String]) -> anyhow::Result<String> {
    let mut script = String::from("export CHAOS_VM=1 CHAOS_VM_SCRATCH=/scratch\n");
    for name in ["RUST_LOG", "RUST_BACKTRACE"] {
        if let Ok(value) = std::env::var(name) {
            script.push_str(&format!("export {name}={}\n", quote(&value)));
        }
    }
    for pair in env {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--env {pair}: expected NAME=VALUE")
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--env {pair}: '{name}' is not a variable name");
        }
        script.push_str(&format!("export {name}={}\n", quote(value)));
    }
    let cwd = std::env::current_dir()?;
    script.push_str(&format!(
        "cd {} 2>/dev/null || cd /\nexec",
        quote(&cwd.to_string_lossy())
    ));
    for word in command {
        script.push(' ');
        script.push_str(&quote(word));
    }
    script.push('\n');
    Ok(script)
}

fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The initramfs (static busybox, the two stage scripts, a stock kernel's boot modules),
/// rebuilt when they change.
fn initramfs(modules: Option<&Modules>) -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("target/vm");
    fs::create_dir_all(&dir)?;
    let boot: Vec<PathBuf> = modules
        .map(|m| m.boot.iter().map(|path| m.tree.join(path)).collect())
        .unwrap_or_default();
    let listed: String = boot.iter().map(|p| p.display().to_string()).collect();
    let stamp = format!(
        "{:016x}",
        fnv1a(format!("{INIT}{STAGE2}{listed}").as_bytes())
    );
    let image = dir.join(format!("initramfs-{stamp}.cpio.gz"));
    if image.exists() {
        return Ok(image);
    }
    let busybox = Path::new("/bin/busybox");
    let file = Command::new("file").arg("-L").arg(busybox).output();
    if !file.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("statically linked")) {
        bail!(
            "{} is not a static busybox: apt-get install busybox-static",
            busybox.display()
        );
    }
    let root = TempDir::new("initramfs")?;
    for sub in ["bin", "dev", "proc", "sys", "lower", "rw", "newroot"] {
        fs::create_dir_all(root.path.join(sub))?;
    }
    fs::copy(busybox, root.path.join("bin/busybox"))?;
    let applets = Command::new(busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&applets.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        std::os::unix::fs::symlink("busybox", root.path.join("bin").join(applet))?;
    }
    // Stage 1 loads these in the order of modules/order.
    fs::create_dir_all(root.path.join("modules"))?;
    let mut order = String::new();
    for module in &boot {
        let name = module.file_name().context("a module file name")?;
        let name = name.to_string_lossy();
        if let Some(plain) = name.strip_suffix(".xz") {
            let unpacked = Command::new("xz")
                .args(["--decompress", "--stdout"])
                .arg(module)
                .output()
                .context("run xz (cargo xtask setup installs xz-utils)")?;
            if !unpacked.status.success() {
                bail!("xz cannot unpack {}", module.display());
            }
            fs::write(root.path.join("modules").join(plain), unpacked.stdout)?;
            order.push_str(&format!("{plain}\n"));
        } else {
            fs::copy(module, root.path.join("modules").join(&*name))
                .with_context(|| format!("copy {}", module.display()))?;
            order.push_str(&format!("{name}\n"));
        }
    }
    fs::write(root.path.join("modules/order"), order)?;
    write_executable(&root.path.join("init"), INIT)?;
    write_executable(&root.path.join("stage2"), STAGE2)?;
    run_command(
        Command::new("mknod")
            .args(["-m", "600"])
            .arg(root.path.join("dev/console"))
            .args(["c", "5", "1"]),
    )?;
    run_command(
        Command::new("mknod")
            .args(["-m", "666"])
            .arg(root.path.join("dev/null"))
            .args(["c", "1", "3"]),
    )?;
    let partial = image.with_extension("partial");
    run_command(
        Command::new("sh")
            .arg("-c")
            .arg("find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -9 > \"$0\"")
            .arg(&partial)
            .current_dir(&root.path),
    )?;
    fs::rename(&partial, &image)?;
    Ok(image)
}

fn write_executable(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, content)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// A content hash for cache names (FNV-1a; no cryptographic need).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A directory under /tmp removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(purpose: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("chaos-vm-{purpose}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

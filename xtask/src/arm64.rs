//! `cargo xtask arm64`: the static aarch64 `chaos` on a real arm64 kernel. Debian's cloud arm64
//! kernel boots under qemu-system-aarch64 (TCG) with an initramfs of Debian's arm64 busybox, the
//! aarch64 `chaos` and tests/arm64/run.sh as /init, which prints a line per check. The x86_64
//! guests' way, the host's root shared in, cannot serve here: its programs are x86_64.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use std::os::unix::fs::PermissionsExt as _;

use anyhow::{Context as _, bail};

use crate::{dist, kernels, run_command, workspace_root};

/// The arm64 guests of the matrix (`cargo xtask vm-test --kernel debian-6.12-arm64`): 6.1,
/// where trampolines load but do not attach (arm64 before 6.4), and 6.12, where they do.
const GUESTS: [(&str, &kernels::DebianKernel); 2] = [
    ("debian-6.1-arm64", &kernels::DEBIAN_6_1_ARM64),
    ("debian-6.12-arm64", &kernels::DEBIAN_6_12_ARM64),
];

/// How long a guest may take (under a minute under TCG on two busy cores).
const TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Whether `name` is one of the arm64 guests.
pub fn is_guest(name: &str) -> bool {
    kernel_of(name).is_some()
}

/// The kernel of the arm64 guest `name`.
fn kernel_of(name: &str) -> Option<&'static kernels::DebianKernel> {
    GUESTS
        .iter()
        .find(|&&(guest, _)| guest == name)
        .map(|&(_, kernel)| kernel)
}

/// Every arm64 guest, one after the other (after the x86_64 dist, which the image name for both
/// architectures needs).
pub fn run_all() -> anyhow::Result<()> {
    dist::run()?;
    let failed: Vec<&str> = GUESTS
        .iter()
        .filter(|&&(name, _)| run(name).inspect_err(|err| eprintln!("{err:#}")).is_err())
        .map(|&(name, _)| name)
        .collect();
    if !failed.is_empty() {
        bail!("the arm64 checks failed on {}", failed.join(", "));
    }
    Ok(())
}

/// Builds the aarch64 binary, boots the guest `name` and fails unless every check of the
/// script passed.
pub fn run(name: &str) -> anyhow::Result<()> {
    // Two guests side by side build once: the second finds the binary built.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let started = Instant::now();
    let kernel = kernel_of(name).with_context(|| format!("no arm64 guest {name}"))?;
    let archive = {
        let _built = BUILD.lock().expect("the build's lock");
        dist::aarch64()?
    };
    // The guest runs the chaos of the node's image, as the DaemonSet would pull it on arm64.
    let chaos = dist::binary_in_image(&archive, "arm64")?;
    let image = kernel.fetch_image()?;
    let initramfs = initramfs(name, &image, &kernels::busybox_arm64()?, &chaos)?;
    let (passed, failed) = boot(name, &image, &initramfs)?;
    eprintln!(
        "{name}: {passed} checks passed, {} failed, in {} s",
        failed.len(),
        started.elapsed().as_secs()
    );
    if !failed.is_empty() {
        bail!("{name}: checks failed: {}", failed.join("; "));
    }
    Ok(())
}

/// The initramfs: busybox, chaos and the script as /init.
fn initramfs(name: &str, image: &Path, busybox: &Path, chaos: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("target/arm64").join(name);
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    for sub in [
        "bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run",
    ] {
        fs::create_dir_all(root.join(sub))?;
    }
    // The kernel's qdisc and classifier modules (clsact and cls_bpf before tcx, fq), which
    // tests/arm64/run.sh loads as a distribution's boot or kmod would.
    let release = image
        .file_name()
        .and_then(|file| file.to_str()?.strip_prefix("vmlinuz-"))
        .context("a kernel image named vmlinuz-RELEASE")?;
    let package = image
        .parent()
        .and_then(Path::parent)
        .context("the package's root")?;
    let modules = package.join("lib/modules").join(release);
    let into = root.join("lib/modules").join(release);
    fs::create_dir_all(into.join("kernel/net"))?;
    run_command(
        Command::new("cp")
            .arg("-a")
            .arg(modules.join("kernel/net/sched"))
            .arg(into.join("kernel/net")),
    )?;
    fs::copy(busybox, root.join("bin/busybox")).context("copy busybox")?;
    fs::write(root.join("chaos"), chaos).context("write chaos")?;
    fs::set_permissions(root.join("chaos"), fs::Permissions::from_mode(0o755))?;
    fs::copy(
        workspace_root().join("tests/arm64/run.sh"),
        root.join("init"),
    )
    .context("copy tests/arm64/run.sh")?;
    let image = dir.join("initramfs.cpio.gz");
    run_command(
        Command::new("sh")
            .arg("-c")
            .arg("find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -1 > \"$0\"")
            .arg(&image)
            .current_dir(&root),
    )?;
    Ok(image)
}

/// Boots the guest, echoing its console; the checks that passed, and those that failed (or
/// why the script did not finish).
fn boot(name: &str, kernel: &Path, initramfs: &Path) -> anyhow::Result<(usize, Vec<String>)> {
    // Neoverse N1, the core of AWS Graviton2 (and Ampere Altra): emulated faster than `max`,
    // whose pointer authentication TCG computes in full.
    let mut qemu = Command::new("qemu-system-aarch64")
        .args([
            "-M",
            "virt",
            "-cpu",
            "neoverse-n1",
            "-m",
            "1024",
            "-smp",
            "1",
        ])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(format!(
            "console=ttyAMA0 rdinit=/init panic=-1 quiet lsm={}",
            crate::vm::LSM_WITH_BPF
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("start qemu-system-aarch64 (cargo xtask setup installs qemu-system-arm)")?;
    let deadline = Instant::now() + TIMEOUT;
    let (mut passed, mut failed, mut done) = (0, Vec::new(), false);
    for line in BufReader::new(qemu.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("[{name}] {line}");
        if let Some(check) = line.strip_prefix("ARM64-CHECK ") {
            if check.ends_with(" ok") {
                passed += 1;
            } else {
                failed.push(check.to_owned());
            }
        }
        done |= line.trim() == "ARM64-DONE";
        if Instant::now() > deadline {
            let _ = qemu.kill();
            failed.push(format!("the guest ran over {} s", TIMEOUT.as_secs()));
            break;
        }
    }
    qemu.wait()?;
    if !done {
        failed.push("the script did not finish (see the console above)".into());
    }
    if passed == 0 {
        failed.push("no check ran".into());
    }
    Ok((passed, failed))
}

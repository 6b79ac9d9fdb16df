//! `cargo xtask setup`: everything a fresh Debian machine lacks, installed idempotently.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run_command;

/// Debian packages the build, the tests and the VM runner use.
const DEBIAN_PACKAGES: &[&str] = &[
    "bind9-dnsutils",              // dig: the DNS fault tests' resolver
    "bpftool",                     // tests check that no program is left behind
    "busybox-static",              // the VM runner's initramfs, the test containers' root
    "containerd",                  // a real containerd for the CRI pod tests
    "containernetworking-plugins", // their pods' bridge network
    "cpio",                        // packs the initramfs
    "curl",                        // the drills' readiness and budget checks
    "dnsmasq-base",                // the DNS server of the DNS fault tests
    "docker-registry",             // a real registry for the multi-architecture image's push
    "e2fsprogs",                   // mkfs.ext4: the --path tests' ext4 image
    "ethtool",                     // the corruption tests turn a veth's checksum offload off
    "faketime",                    // libfaketime: the clock benchmark's comparison point
    "fdisk",                       // sfdisk: the disk tests' partition tables
    "gcc-aarch64-linux-gnu",       // links the aarch64 chaos and compiles its mimalloc
    "libc6-dev-arm64-cross",       // its C headers (only recommended by gcc, so not installed)
    "golang-go",                   // the clock tests' Go program (time.Now through the vDSO)
    "iproute2",                    // tc, ip: probe and network tests
    "kmod",                        // depmod for the Debian kernels' module trees
    "musl-tools",                  // musl-gcc: the clock tests' C program, ring (kube-rs) for musl
    "nginx-light",                 // the HTTP drills' server
    "perl",                        // the examples' workloads (Time::HiRes, IO::Handle)
    "iperf3",                      // the network benchmark
    "postgresql",                  // the PostgreSQL drills' servers
    "podman",                      // real containers for the --container tests
    "protobuf-compiler", // protoc: the CRI client of the containerd tests (k8s-cri) builds with it
    "python3-venv",      // the tests' Python tools (python_tools)
    "qemu-system-arm",   // the arm64 guest (qemu-system-aarch64)
    "qemu-system-x86",
    "redis-server", // the crash drill's server (redis-tools, its redis-cli, comes with it)
    "runc",         // podman's runtime here (crun refuses hybrid cgroups)
    "strace",       // the benchmark's comparison point
    "tzdata",       // Europe/Berlin for the monkey's daylight-saving test
    "unbound",      // the DNS drill's resolver
    "util-linux",   // setpriv, unshare, nsenter
    "wrk",          // the HTTP drills' load
    "xz-utils",     // a stock kernel's .ko.xz boot modules, unpacked for busybox insmod
];

/// The bpf-linker release built here, and the nightly toolchain that builds the eBPF side.
const BPF_LINKER_VERSION: &str = "0.13.0";
pub const NIGHTLY: &str = "nightly";
/// Python tools from PyPI the tests run, pinned, in a venv of their own (python_tools).
const PYPI_PACKAGES: &[&str] = &[
    "kubernetes-validate==1.37.0", // deploy/kubernetes against Kubernetes' own schemas
    "chaostoolkit==1.19.0",        // integrations/chaostoolkit, driven by the real toolkit
    "chaostoolkit-lib==1.44.0",
    "ansible-core==2.18.19", // integrations/ansible, run by ansible-playbook (Python >= 3.11)
];
/// The cargo-fuzz release `cargo xtask fuzz` installs.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn run() -> anyhow::Result<()> {
    debian_packages()?;
    rust_src()?;
    nightly_clippy()?;
    bpf_linker()?;
    python_tools()?;
    fuzz_crates()?;
    Ok(())
}

/// The fuzz build's crates (fuzz/ is a workspace of its own, with its own lock), fetched here so
/// that `cargo xtask fuzz` builds offline: CI's fuzz build, long after setup, once failed in
/// 26 s, the kind of failure a download gives.
fn fuzz_crates() -> anyhow::Result<()> {
    run_command(
        Command::new("cargo")
            .args(["fetch", "--locked", "--quiet", "--manifest-path"])
            .arg(crate::workspace_root().join("fuzz/Cargo.toml")),
    )
}

/// The venv holding [`PYPI_PACKAGES`]; the tests find its `bin` in CHAOS_PYTHON_BIN.
pub fn python_venv() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".local/share/chaos/python"))
}

/// Creates the venv with Debian's python3 and installs what is missing from PyPI.
fn python_tools() -> anyhow::Result<()> {
    let venv = python_venv()?;
    let pip = venv.join("bin/pip");
    if !pip.exists() {
        eprintln!("setup: making a Python venv at {}", venv.display());
        run_command(
            Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .arg(&venv),
        )?;
    }
    let frozen = Command::new(&pip).args(["freeze"]).output()?;
    let have = String::from_utf8_lossy(&frozen.stdout).to_lowercase();
    let missing: Vec<&str> = PYPI_PACKAGES
        .iter()
        .copied()
        .filter(|package| !have.lines().any(|line| line == package.to_lowercase()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing from PyPI {}", missing.join(" "));
    run_command(
        Command::new(&pip)
            .args(["install", "--quiet"])
            .args(&missing),
    )
}

/// Rust's musl target, for the static binary (`cargo xtask dist`).
pub fn musl_target() -> anyhow::Result<()> {
    rust_target(crate::dist::MUSL)
}

/// Adds Rust's standard library for `target` unless rustup has it.
pub fn rust_target(target: &str) -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup target list")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|installed| installed == target)
    {
        return Ok(());
    }
    eprintln!("setup: adding the {target} target");
    run_command(Command::new("rustup").args(["target", "add", target]))
}

/// Clippy for the nightly toolchain: CI lints the eBPF crate with it.
fn nightly_clippy() -> anyhow::Result<()> {
    let present = Command::new("rustup")
        .args(["run", NIGHTLY, "cargo", "clippy", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if present {
        return Ok(());
    }
    eprintln!("setup: adding clippy to {NIGHTLY}");
    run_command(Command::new("rustup").args(["component", "add", "clippy", "--toolchain", NIGHTLY]))
}

fn debian_packages() -> anyhow::Result<()> {
    install_debian_packages(DEBIAN_PACKAGES)
}

/// Installs those of `packages` that are missing.
pub fn install_debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Debian packages {}", missing.join(" "));
    run_command(Command::new("apt-get").args(["update", "-qq"]))?;
    let _no_services = NoServiceStarts::new()?;
    run_command(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Keeps the servers the tests install (nginx, PostgreSQL…) from being started as services by
/// their packages: a policy-rc.d that denies every start while it lives, unless the machine
/// has its own.
struct NoServiceStarts(Option<&'static Path>);

impl NoServiceStarts {
    const POLICY: &'static str = "/usr/sbin/policy-rc.d";

    fn new() -> anyhow::Result<Self> {
        let path = Path::new(Self::POLICY);
        if path.exists() {
            return Ok(NoServiceStarts(None));
        }
        std::fs::write(
            path,
            "#!/bin/sh\n# cargo xtask setup: no service starts while it installs\nexit 101\n",
        )
        .with_context(|| format!("write {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        Ok(NoServiceStarts(Some(path)))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|output| {
            String::from_utf8_lossy(&output.stdout).contains("install ok installed")
        })
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let output = Command::new("rustc")
        .args([&format!("+{NIGHTLY}"), "--print", "sysroot"])
        .output()
        .context("run rustc +nightly")?;
    if !output.status.success() {
        bail!(
            "the {NIGHTLY} toolchain is missing ({}); the eBPF side needs it: rustup toolchain install {NIGHTLY}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

fn rust_src() -> anyhow::Result<()> {
    if nightly_sysroot()?
        .join("lib/rustlib/src/rust/library/core")
        .is_dir()
    {
        return Ok(());
    }
    eprintln!("setup: adding rust-src to {NIGHTLY}");
    run_command(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        NIGHTLY,
    ]))
}

/// bpf-linker links against the nightly's own libLLVM (same major version as its rustc), through
/// a prefix that holds symlinks to it under the names the link and the runtime loader look for.
fn bpf_linker() -> anyhow::Result<()> {
    let sysroot = nightly_sysroot()?;
    let major = llvm_major()?;
    if bpf_linker_works() {
        return Ok(());
    }
    let libllvm = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name().is_some_and(|name| {
                name.to_string_lossy()
                    .starts_with(&format!("libLLVM.so.{major}"))
            })
        })
        .with_context(|| format!("no libLLVM.so.{major}* in {}/lib", sysroot.display()))?;
    let prefix = llvm_prefix(major)?;
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    let soname = libllvm.file_name().expect("a file name").to_owned();
    for name in [Path::new("libLLVM.so"), Path::new(&soname)] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("symlink {}", link.display()))?;
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute)",
        libllvm.display()
    );
    run_command(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{major}")])
            .env("LLVM_PREFIX", &prefix),
    )
}

fn bpf_linker_works() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout).contains(BPF_LINKER_VERSION)
        })
}

fn llvm_major() -> anyhow::Result<u32> {
    let output = Command::new("rustc")
        .args([&format!("+{NIGHTLY}"), "-vV"])
        .output()?;
    let text = String::from_utf8(output.stdout)?;
    let version = text
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .context("rustc +nightly -vV names no LLVM version")?;
    Ok(version.split('.').next().unwrap_or_default().parse()?)
}

/// A lasting home for the LLVM prefix: the installed bpf-linker's runpath points into it.
fn llvm_prefix(major: u32) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(format!(".local/share/chaos/llvm-{major}")))
}

/// cargo-fuzz, for `cargo xtask fuzz` (only that task installs it).
pub fn cargo_fuzz() -> anyhow::Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains(CARGO_FUZZ_VERSION));
    if installed {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    run_command(Command::new("cargo").args([
        "install",
        "--locked",
        "--quiet",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

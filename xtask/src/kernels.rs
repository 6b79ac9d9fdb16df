//! The guest kernels' images: Debian's stock packages, fetched from Debian's package service, and
//! the faultinj-6.12 test kernel, taken from the shared cache or built here from Debian's
//! linux-source-6.12 when that cache is absent or differs. All of it is kept outside the
//! repository, under ~/.cache/chaos/kernels.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{run_command, setup, workspace_root};

/// A Debian package: where it comes from and what it must hash to.
struct DebianPackage {
    /// A suite this machine's apt sources may lack, and the archive that serves it
    /// (`debian`: bookworm-backports; `debian-security`: bullseye-security), or None for the
    /// configured ones.
    suite: Option<(&'static str, &'static str)>,
    /// Its architecture, when not the machine's (`arm64`).
    arch: Option<&'static str>,
    name: &'static str,
    version: &'static str,
    sha256: &'static str,
}

/// A stock Debian kernel: its package, and the release its files are named by.
pub struct DebianKernel {
    package: DebianPackage,
    release: &'static str,
}

/// Bookworm's 6.1 LTS kernel, as of 2026-11 (bookworm-security).
pub const DEBIAN_6_1: DebianKernel = DebianKernel {
    package: DebianPackage {
        suite: None,
        arch: None,
        name: "linux-image-6.1.0-56-amd64",
        version: "6.1.192-2",
        sha256: "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1",
    },
    release: "6.1.0-56-amd64",
};

/// Bullseye's 5.10 LTS kernel, as of 2026-12 (bullseye-security: Debian 11, and the kernel line
/// of Amazon Linux 2): before BPF atomics (5.12) and `bpf_set_retval` (5.18).
pub const DEBIAN_5_10: DebianKernel = DebianKernel {
    package: DebianPackage {
        suite: Some(("debian-security", "bullseye-security")),
        arch: None,
        name: "linux-image-5.10.0-46-amd64",
        version: "5.10.262-1",
        sha256: "6d89bdf9a7c4458c64de7221edfb8e7b2c3279012636e4bb9d6bba4e6b7a67eb",
    },
    release: "5.10.0-46-amd64",
};

/// Bookworm-backports' 6.12 kernel, as of 2026-11.
pub const DEBIAN_6_12: DebianKernel = DebianKernel {
    package: DebianPackage {
        suite: Some(("debian", "bookworm-backports")),
        arch: None,
        name: "linux-image-6.12.95+deb12-amd64",
        version: "6.12.95-1~bpo12+1",
        sha256: "5e524b782be67cb0d6a2e7b51816a2ac519e573ef7324b9a63a4124365653ecc",
    },
    release: "6.12.95+deb12-amd64",
};

/// Bookworm's 6.1 kernel for arm64 clouds, as of 2026-12 (bookworm-security): an uncompressed
/// `Image` with what the arm64 guest needs built in (cgroup v2, BPF, BTF, the PL011 console).
pub const DEBIAN_6_1_ARM64: DebianKernel = DebianKernel {
    package: DebianPackage {
        suite: Some(("debian-security", "bookworm-security")),
        arch: Some("arm64"),
        name: "linux-image-6.1.0-57-cloud-arm64",
        version: "6.1.192-3",
        sha256: "51952bf54e96b0bc6263fb51a47b79e206dca0213cd5421162bc55cddbd6e51e",
    },
    release: "6.1.0-57-cloud-arm64",
};

/// Bookworm-backports' 6.12 kernel for arm64 clouds (the x86_64 guest's version): arm64 has
/// attached BPF trampolines since 6.4 (ftrace direct calls).
pub const DEBIAN_6_12_ARM64: DebianKernel = DebianKernel {
    package: DebianPackage {
        suite: Some(("debian", "bookworm-backports")),
        arch: Some("arm64"),
        name: "linux-image-6.12.95+deb12-cloud-arm64",
        version: "6.12.95-1~bpo12+1",
        sha256: "3d1283d15afe078c9fa7a4de66d989fc7d84103912dc2792d5a85bfdb3eb88b5",
    },
    release: "6.12.95+deb12-cloud-arm64",
};

/// Bookworm's static busybox for arm64: the arm64 guest's whole userland besides chaos.
const BUSYBOX_ARM64: DebianPackage = DebianPackage {
    suite: Some(("debian", "bookworm")),
    arch: Some("arm64"),
    name: "busybox-static",
    version: "1:1.35.0-4+deb12u1+b1",
    sha256: "732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5",
};

/// The arm64 static busybox, extracted into the kernel cache.
pub fn busybox_arm64() -> anyhow::Result<PathBuf> {
    let cache = kernel_cache().join("busybox-static-arm64");
    let busybox = cache.join("root/bin/busybox");
    if !busybox.exists() {
        let deb = BUSYBOX_ARM64.download(&cache)?;
        run_command(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(cache.join("root")),
        )?;
    }
    Ok(busybox)
}

impl DebianKernel {
    /// The kernel image alone, for a guest that loads no module: downloaded and extracted
    /// unless the cache has it.
    pub fn fetch_image(&self) -> anyhow::Result<PathBuf> {
        let root = kernel_cache().join(self.package.name).join("root");
        let image = root.join(format!("boot/vmlinuz-{}", self.release));
        if !image.exists() {
            let deb = self
                .package
                .download(&kernel_cache().join(self.package.name))?;
            let _ = fs::remove_dir_all(&root);
            run_command(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        }
        Ok(image)
    }

    /// Downloads and extracts the package unless the cache has it; returns the image and the
    /// module tree.
    pub fn fetch(&self) -> anyhow::Result<(PathBuf, PathBuf)> {
        let cache = kernel_cache().join(self.package.name);
        let root = cache.join("root");
        let image = root.join(format!("boot/vmlinuz-{}", self.release));
        let tree = root.join(format!("lib/modules/{}", self.release));
        if image.exists() && tree.join("modules.dep").exists() {
            return Ok((image, tree));
        }
        let deb = self.package.download(&cache)?;
        let _ = fs::remove_dir_all(&root);
        run_command(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        // Debian generates modules.dep at install time; the package has none.
        run_command(
            Command::new("depmod")
                .arg("-b")
                .arg(&root)
                .arg(self.release),
        )?;
        Ok((image, tree))
    }
}

impl DebianPackage {
    /// The package's .deb in `dir`, downloaded unless it is there, checked either way.
    fn download(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        fs::create_dir_all(dir)?;
        if self.deb_in(dir)?.is_none() {
            eprintln!("kernels: downloading {} {}", self.name, self.version);
            let options = self.apt_options()?;
            let download = || {
                run_command(
                    Command::new("apt-get")
                        .args(&options)
                        .args([
                            "download",
                            &format!("{}={}", self.qualified_name(), self.version),
                        ])
                        .current_dir(dir),
                )
            };
            // Package lists older than the version (or none yet for the suite): refresh once.
            download()
                .or_else(|_| {
                    run_command(Command::new("apt-get").args(&options).args(["update", "-qq"]))?;
                    download()
                })
                .with_context(|| format!("apt-get download {} {} (Debian may have moved on: update the version in xtask/src/kernels.rs)", self.name, self.version))?;
        }
        let deb = self
            .deb_in(dir)?
            .with_context(|| format!("apt-get download left no {} package", self.name))?;
        verify_sha256(&deb, self.sha256)?;
        Ok(deb)
    }

    /// The package's .deb in `dir`, if apt-get has put it there.
    fn deb_in(&self, dir: &Path) -> anyhow::Result<Option<PathBuf>> {
        let prefix = format!("{}_", self.name);
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".deb") {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    /// The name apt-get downloads it by: `NAME:ARCH` for another architecture's.
    fn qualified_name(&self) -> String {
        match self.arch {
            Some(arch) => format!("{}:{arch}", self.name),
            None => self.name.to_owned(),
        }
    }

    /// apt-get options that make it read the suite from a sources list and package lists of its
    /// own in the cache (another architecture's too), leaving the machine's apt configuration
    /// alone.
    fn apt_options(&self) -> anyhow::Result<Vec<String>> {
        let Some((archive, suite)) = self.suite else {
            return Ok(Vec::new());
        };
        let lists = match self.arch {
            Some(arch) => format!("apt-{suite}-{arch}"),
            None => format!("apt-{suite}"),
        };
        let dir = kernel_cache().join(lists);
        fs::create_dir_all(dir.join("lists/partial"))?;
        let sources = dir.join("sources.list");
        fs::write(
            &sources,
            format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/{archive} {suite} main\n"
            ),
        )?;
        let mut options = vec![
            "-o".into(),
            format!("Dir::Etc::SourceList={}", sources.display()),
            "-o".into(),
            "Dir::Etc::SourceParts=/dev/null".into(),
            "-o".into(),
            format!("Dir::State::Lists={}", dir.join("lists").display()),
        ];
        if let Some(arch) = self.arch {
            options.extend(["-o".into(), format!("APT::Architectures={arch}")]);
        }
        Ok(options)
    }
}

/// The shared cache's faultinj-6.12 image and its checksum (see ../shared/kernels/README.md):
/// the second build, which adds the kernel's own fault-injection points, loop, ext4 and XFS.
const FAULTINJ_SHARED: &str = "../shared/kernels/bzImage-6.12.95-faultinj-2";
const FAULTINJ_SHA256: &str = "cb2ffa046a9b40e2a7241996a6e428bdbd979c8e9836f4bcd26756ed79c02c78";
/// What it was built from, and how: defconfig + kvm_guest.config + this fragment.
const FAULTINJ_SOURCE: DebianPackage = DebianPackage {
    suite: Some(("debian", "bookworm-backports")),
    arch: None,
    name: "linux-source-6.12",
    version: "6.12.95-1~bpo12+1",
    sha256: "a7fe4673af74236c99dad9766eca714a198e50a07e5d659e63ec312ae6afccfe",
};
const FAULTINJ_CONFIG: &str = include_str!("vm/faultinj-2.config");
/// Where the image built here is cached, named after the fragment it was built with.
const FAULTINJ_BUILD_DIR: &str = "faultinj-6.12-2";
/// What building a kernel needs beyond the setup's packages.
const KERNEL_BUILD_PACKAGES: &[&str] = &[
    "bc",
    "bison",
    "dwarves",
    "flex",
    "gcc",
    "libelf-dev",
    "libssl-dev",
    "make",
];

/// The faultinj-6.12 image: the shared cache's when its checksum matches, else one built here
/// earlier, else one built now (about 17 minutes on two idle cores).
pub fn faultinj_image() -> anyhow::Result<PathBuf> {
    let shared = workspace_root().join(FAULTINJ_SHARED);
    match verify_sha256(&shared, FAULTINJ_SHA256) {
        Ok(()) => return Ok(shared),
        Err(why) => eprintln!("kernels: not using the shared faultinj-6.12 image: {why:#}"),
    }
    let built = faultinj_built_image();
    if built.exists() {
        return Ok(built);
    }
    build_faultinj()?;
    Ok(built)
}

fn faultinj_built_image() -> PathBuf {
    kernel_cache().join(FAULTINJ_BUILD_DIR).join("bzImage")
}

/// `cargo xtask build-kernel`: builds faultinj-6.12 from Debian's linux-source-6.12 into the
/// cache, whether or not the shared image is there.
pub fn build_faultinj() -> anyhow::Result<()> {
    setup::install_debian_packages(KERNEL_BUILD_PACKAGES)?;
    let dir = kernel_cache().join(FAULTINJ_BUILD_DIR);
    let deb = FAULTINJ_SOURCE.download(&dir)?;
    let work = dir.join("build");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    eprintln!("kernels: unpacking {}", deb.display());
    run_command(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&work))?;
    let tarball = work.join("usr/src/linux-source-6.12.tar.xz");
    run_command(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&work),
    )?;
    let source = work.join("linux-source-6.12");
    fs::write(source.join("faultinj-2.config"), FAULTINJ_CONFIG)?;
    let make = |args: &[&str]| run_command(Command::new("make").args(args).current_dir(&source));
    make(&["x86_64_defconfig"])?;
    run_command(
        Command::new("scripts/kconfig/merge_config.sh")
            .args([
                "-m",
                ".config",
                "kernel/configs/kvm_guest.config",
                "faultinj-2.config",
            ])
            .current_dir(&source),
    )?;
    make(&["olddefconfig"])?;
    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    eprintln!("kernels: building faultinj-6.12 with {jobs} jobs");
    make(&[&format!("-j{jobs}"), "bzImage"])?;
    let image = faultinj_built_image();
    let partial = image.with_extension("partial");
    fs::copy(source.join("arch/x86/boot/bzImage"), &partial)?;
    fs::rename(&partial, &image)?;
    fs::remove_dir_all(&work)?;
    eprintln!("kernels: faultinj-6.12 built: {}", image.display());
    Ok(())
}

/// Where downloaded and built kernels live: outside the repository, kept across clones.
fn kernel_cache() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/chaos/kernels")
}

fn verify_sha256(path: &Path, expected: &str) -> anyhow::Result<()> {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("run sha256sum")?;
    if !output.status.success() {
        bail!(
            "cannot read {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let actual = String::from_utf8_lossy(&output.stdout);
    if !actual.starts_with(expected) {
        bail!(
            "{} has sha256 {}, expected {expected} (delete a downloaded package to fetch it again)",
            path.display(),
            actual.split_whitespace().next().unwrap_or_default()
        );
    }
    Ok(())
}

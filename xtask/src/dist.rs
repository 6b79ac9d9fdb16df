//! `cargo xtask dist`: the static `chaos` (musl, eBPF objects inside, stripped) and its image
//! built FROM scratch, in target/dist. Nothing is pulled from a registry.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{cargo_with, run_command, workspace_root};

/// The target of the static binary: Rust's own musl, no C toolchain beyond the linker.
pub const MUSL: &str = "x86_64-unknown-linux-musl";
/// The arm64 nodes' target, linked (and mimalloc compiled) by Debian's cross gcc.
pub const AARCH64: &str = "aarch64-unknown-linux-musl";
const AARCH64_GCC: &str = "aarch64-linux-gnu-gcc";
/// The most the static binary may weigh (issue 15: it goes to every node).
const MAX_BYTES: u64 = 10 * 1024 * 1024;
/// The image's name in the archive (`podman load` and `ctr images import` keep it).
pub const IMAGE: &str = chaos_common::names::DIST_IMAGE;

/// Where `dist` leaves the binary (`chaos`) and the image (`chaos-image.tar`, an OCI archive).
pub fn dir() -> PathBuf {
    workspace_root().join("target/dist")
}

/// Builds the static binary and its image into [`dir`], and says what they weigh.
pub fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    crate::setup::musl_target()?;
    let out = dir();
    fs::create_dir_all(&out)?;
    // The Debian package's binary has everything, `chaos k8s` included; the node's, in the
    // image, leaves out the Kubernetes API client (the `k8s` feature: 8 MB), which injectors
    // do not use, to stay within MAX_BYTES.
    let full = build_static(MUSL, &[], &out.join("deb-chaos"))?;
    let binary = build_static(MUSL, &["--no-default-features"], &out.join("chaos"))?;
    let size = within_bound(&binary)?;
    let image = out.join("chaos-image.tar");
    build_image(&out, &image, "amd64")?;
    let deb = build_deb(&full, &full, &out, "amd64")?;
    eprintln!(
        "dist: {} ({:.1} MiB, static), {} ({:.1} MiB, FROM scratch, {IMAGE})",
        binary.display(),
        size as f64 / (1024.0 * 1024.0),
        image.display(),
        fs::metadata(&image)?.len() as f64 / (1024.0 * 1024.0)
    );
    eprintln!(
        "dist: {} ({:.1} MiB, with chaos k8s)",
        deb.display(),
        fs::metadata(&full)?.len() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// The node's static `chaos` for arm64 (without `chaos k8s`, as the x86_64 node's), its image,
/// its Debian package, and one image name for both architectures, in [`dir`] as
/// `chaos-aarch64`, `chaos-image-arm64.tar`, `chaos_VERSION_arm64.deb` and
/// `chaos-image-multiarch.tar`; returns the last. Needs [`run`]'s x86_64 node binary and image.
pub fn aarch64() -> anyhow::Result<PathBuf> {
    crate::setup::run()?;
    crate::setup::rust_target(AARCH64)?;
    let out = dir();
    let (node, amd64_image) = (out.join("chaos"), out.join("chaos-image.tar"));
    if !node.exists() || !amd64_image.exists() {
        bail!(
            "no x86_64 node binary and image in {}: run `cargo xtask dist` first",
            out.display()
        );
    }
    let context = out.join("arm64");
    fs::create_dir_all(&context)?;
    let binary = build_static(
        AARCH64,
        &["--no-default-features"],
        &out.join("chaos-aarch64"),
    )?;
    let size = within_bound(&binary)?;
    fs::copy(&binary, context.join("chaos"))?;
    // FROM scratch and COPY run nothing of the image: no arm64 emulation is needed to build it.
    let image = out.join("chaos-image-arm64.tar");
    build_image(&context, &image, "arm64")?;
    // The x86_64 node binary has the same features: it writes the man page and completions.
    let deb = build_deb(&binary, &node, &out, "arm64")?;
    check_deb(&deb, "arm64", &binary)?;
    let multiarch = out.join("chaos-image-multiarch.tar");
    let images = [(amd64_image.as_path(), "amd64"), (image.as_path(), "arm64")];
    build_multiarch(&images, &multiarch)?;
    push_to_registry(&multiarch, &images)?;
    eprintln!(
        "dist: {} ({:.1} MiB, static, aarch64), {} ({:.1} MiB, FROM scratch, arm64), {}, {} ({IMAGE} for amd64 and arm64)",
        binary.display(),
        size as f64 / (1024.0 * 1024.0),
        image.display(),
        fs::metadata(&image)?.len() as f64 / (1024.0 * 1024.0),
        deb.display(),
        multiarch.display(),
    );
    Ok(multiarch)
}

/// Pushes the single-architecture `images` as one manifest list named [`IMAGE`] into the OCI
/// archive `archive` (what `skopeo copy --all` takes to a registry), then checks that pulling
/// it for each architecture gives that architecture's image, as a node's runtime would.
fn build_multiarch(images: &[(&Path, &str)], archive: &Path) -> anyhow::Result<()> {
    let _ = fs::remove_file(archive);
    {
        let podman = ScratchPodman::new(&dir().join("multiarch"))?;
        // Both print the list's ID, which says nothing here.
        run_command(
            podman
                .command()
                .args(["manifest", "create", IMAGE])
                .stdout(Stdio::null()),
        )?;
        for (image, _) in images {
            run_command(
                podman
                    .command()
                    .args(["manifest", "add", IMAGE])
                    .arg(format!("oci-archive:{}", image.display()))
                    .stdout(Stdio::null()),
            )?;
        }
        run_command(
            podman
                .command()
                .args(["manifest", "push", "--quiet", "--all", IMAGE])
                .arg(format!("oci-archive:{}:{IMAGE}", archive.display())),
        )?;
    }
    for &(image, arch) in images {
        let podman = ScratchPodman::new(&dir().join("multiarch"))?;
        let pulled = podman
            .command()
            .args(["pull", "--quiet", "--arch", arch])
            .arg(format!("oci-archive:{}", archive.display()))
            .output()
            .context("podman pull")?;
        let pulled = String::from_utf8_lossy(&pulled.stdout).trim().to_owned();
        let expected = image_id(image, arch)?;
        if pulled != expected {
            bail!(
                "pulling {} for {arch} gave image {pulled:?}, not {}'s {expected}",
                archive.display(),
                image.display()
            );
        }
    }
    Ok(())
}

/// Pushes the manifest list of `archive` to a real registry, as `skopeo copy --all` would to a
/// cluster's: Debian's docker-registry (the CNCF distribution registry) on loopback, storing in
/// a directory of its own; then pulls each architecture's image back from it and checks that it
/// is the one in `images`.
fn push_to_registry(archive: &Path, images: &[(&Path, &str)]) -> anyhow::Result<()> {
    let root = dir().join("registry");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = root.join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            root.join("data").display()
        ),
    )?;
    let log = fs::File::create(root.join("registry.log"))?;
    let registry = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start docker-registry (apt-get install docker-registry)")?;
    let _registry = KillOnDrop(registry);
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            bail!(
                "docker-registry never listened on 127.0.0.1:{port}: see {}",
                root.join("registry.log").display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let reference = format!("docker://127.0.0.1:{port}/chaos:multiarch");
    run_command(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(&reference),
    )?;
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&reference)
        .output()
        .context("skopeo inspect")?;
    let list: serde_json::Value =
        serde_json::from_slice(&raw.stdout).context("the registry's manifest list")?;
    for &(image, arch) in images {
        if !list["manifests"].as_array().is_some_and(|entries| {
            entries
                .iter()
                .any(|e| e["platform"]["architecture"] == arch)
        }) {
            bail!("the registry's manifest list has no {arch} image: {list}");
        }
        let pulled = root.join(format!("pulled-{arch}.tar"));
        run_command(
            Command::new("skopeo")
                .args([
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    "--override-arch",
                    arch,
                ])
                .arg(&reference)
                .arg(format!("oci-archive:{}", pulled.display())),
        )?;
        let (got, expected) = (image_id(&pulled, arch)?, image_id(image, arch)?);
        if got != expected {
            bail!(
                "the registry gave image {got} for {arch}, not {}'s {expected}",
                image.display()
            );
        }
    }
    eprintln!("dist: pushed to {reference} (docker-registry), pulled back for each architecture");
    Ok(())
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A member of the tar archive `archive`.
fn tar_member(archive: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(name)
        .output()
        .context("tar")?;
    if !output.status.success() {
        bail!("{} holds no {name}", archive.display());
    }
    Ok(output.stdout)
}

/// Where an OCI archive keeps the blob a descriptor names.
fn blob_path(descriptor: &serde_json::Value) -> anyhow::Result<String> {
    let digest = descriptor["digest"]
        .as_str()
        .context("an OCI descriptor without a digest")?;
    Ok(format!("blobs/{}", digest.replacen(':', "/", 1)))
}

/// An OCI archive's image manifest for `arch`, and the image's ID (its config's digest): the
/// one image of a single-architecture archive, or that architecture's entry of an image index;
/// refused unless the image's config says `arch`.
fn manifest_for(archive: &Path, arch: &str) -> anyhow::Result<(serde_json::Value, String)> {
    let json = |descriptor: &serde_json::Value| -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&tar_member(archive, &blob_path(descriptor)?)?)
            .context("an OCI document")
    };
    let index: serde_json::Value = serde_json::from_slice(&tar_member(archive, "index.json")?)
        .context("the archive's index.json")?;
    let mut manifest = json(&index["manifests"][0])?;
    if manifest["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        let entries = manifest["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let entry = entries
            .iter()
            .find(|entry| entry["platform"]["architecture"] == arch)
            .with_context(|| format!("{}'s image index has no {arch} image", archive.display()))?;
        manifest = json(entry)?;
    }
    let config = json(&manifest["config"])?;
    if config["architecture"] != arch {
        bail!(
            "{} is an image for {}, not {arch}",
            archive.display(),
            config["architecture"]
        );
    }
    let id = manifest["config"]["digest"]
        .as_str()
        .and_then(|digest| digest.strip_prefix("sha256:"))
        .context("a config digest that is not sha256")?
        .to_owned();
    Ok((manifest, id))
}

/// The ID the image for `arch` in `archive` gets in a container storage.
fn image_id(archive: &Path, arch: &str) -> anyhow::Result<String> {
    manifest_for(archive, arch).map(|(_, id)| id)
}

/// The `/chaos` of the image for `arch` in an archive [`build_image`] or [`build_multiarch`]
/// made.
pub fn binary_in_image(archive: &Path, arch: &str) -> anyhow::Result<Vec<u8>> {
    let (manifest, _) = manifest_for(archive, arch)?;
    let [layer] = manifest["layers"].as_array().map_or(&[][..], Vec::as_slice) else {
        bail!(
            "{}: not the one layer of a FROM scratch image",
            archive.display()
        );
    };
    // The layer is a gzipped tar of its own, inside the archive's.
    let output = Command::new("sh")
        .args(["-c", "tar -xOf \"$0\" \"$1\" | tar -xzO chaos"])
        .arg(archive)
        .arg(blob_path(layer)?)
        .output()
        .context("tar")?;
    if !output.status.success() || output.stdout.is_empty() {
        bail!("{}: its layer holds no /chaos", archive.display());
    }
    Ok(output.stdout)
}

/// `binary`'s size, refused over [`MAX_BYTES`].
fn within_bound(binary: &Path) -> anyhow::Result<u64> {
    let size = fs::metadata(binary)?.len();
    if size > MAX_BYTES {
        bail!(
            "{} is {size} bytes, over the {MAX_BYTES} allowed",
            binary.display()
        );
    }
    Ok(size)
}

/// Builds the static `chaos` for `target` with the cargo options `features` and copies it to
/// `to`; refuses one that asks for a program interpreter.
fn build_static(target: &str, features: &[&str], to: &Path) -> anyhow::Result<PathBuf> {
    let mut args = vec![
        "build",
        "--profile",
        "dist",
        "--target",
        target,
        "--package",
        "chaos-user",
        "--bin",
        "chaos",
    ];
    args.extend_from_slice(features);
    let cross: &[(&str, &str)] = if target == AARCH64 {
        &[
            (
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER",
                AARCH64_GCC,
            ),
            ("CC_aarch64_unknown_linux_musl", AARCH64_GCC),
        ]
    } else {
        &[]
    };
    cargo_with(&args, cross)?;
    let built = workspace_root()
        .join("target")
        .join(target)
        .join("dist/chaos");
    fs::copy(&built, to).with_context(|| format!("copy {}", built.display()))?;
    if let Some(interpreter) = elf_interpreter(&fs::read(to)?)? {
        bail!("{} is not static: it asks for {interpreter}", to.display());
    }
    Ok(to.to_owned())
}

/// Packs the static `binary` as a Debian package for `arch` in `out`, with its man page and
/// shell completions, which `docs` (the binary itself, or one with the same features that runs
/// here) generates from the clap definitions: nothing to depend on.
fn build_deb(binary: &Path, docs: &Path, out: &Path, arch: &str) -> anyhow::Result<PathBuf> {
    let root = out.join(format!("deb-root-{arch}"));
    let _ = fs::remove_dir_all(&root);
    let place = |path: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let path = root.join(path);
        fs::create_dir_all(path.parent().expect("a directory"))?;
        fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))
    };
    let generated = |args: &[&str]| -> anyhow::Result<Vec<u8>> {
        let output = Command::new(docs).args(args).output()?;
        if !output.status.success() {
            bail!("chaos {args:?}: {:?}", output.status);
        }
        Ok(output.stdout)
    };
    place("usr/bin/chaos", &fs::read(binary)?)?;
    // `chaos 0.1.0 (commit …)`: the package takes the binary's own version.
    let version_line = String::from_utf8(generated(&["--version"])?)?;
    let version = version_line
        .split_whitespace()
        .nth(1)
        .context("chaos --version names no version")?
        .to_owned();
    let man = root.join("usr/share/man/man1/chaos.1");
    place("usr/share/man/man1/chaos.1", &generated(&["man"])?)?;
    run_command(Command::new("gzip").args(["-9n"]).arg(&man))?;
    place(
        "usr/share/bash-completion/completions/chaos",
        &generated(&["completions", "bash"])?,
    )?;
    place(
        "usr/share/zsh/vendor-completions/_chaos",
        &generated(&["completions", "zsh"])?,
    )?;
    place(
        "usr/share/fish/vendor_completions.d/chaos.fish",
        &generated(&["completions", "fish"])?,
    )?;
    let installed_kib = fs::metadata(binary)?.len().div_ceil(1024);
    place(
        "DEBIAN/control",
        format!(
            "Package: chaos\nVersion: {version}\nArchitecture: {arch}\nMaintainer: chaos developers <chaos@localhost>\nInstalled-Size: {installed_kib}\nSection: admin\nPriority: optional\nDescription: kernel-level fault injection for one process, container or network path\n chaos makes the calls of one target fail, delays them, shifts its clock or loses its\n packets, through eBPF programs only its targets pay for, and takes them out of the\n kernel when the run ends. A static binary: no dependencies.\n",
        )
        .as_bytes(),
    )?;
    // Modes of their own, whatever the umask: dpkg-deb refuses a DEBIAN/ it cannot read.
    set_modes(&root)?;
    let deb = out.join(format!("chaos_{version}_{arch}.deb"));
    run_command(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb),
    )?;
    fs::remove_dir_all(&root)?;
    Ok(deb)
}

/// Checks a package as dpkg reads it: for `arch`, its `/usr/bin/chaos` the bytes of `binary`
/// (tests/tests/dist.rs checks the amd64 package's files by running them, which an arm64 one
/// cannot be here).
fn check_deb(deb: &Path, arch: &str, binary: &Path) -> anyhow::Result<()> {
    let field = Command::new("dpkg-deb")
        .args(["--field"])
        .arg(deb)
        .arg("Architecture")
        .output()
        .context("dpkg-deb --field")?;
    let field = String::from_utf8_lossy(&field.stdout).trim().to_owned();
    if field != arch {
        bail!("{} says Architecture {field:?}, not {arch}", deb.display());
    }
    let packed = Command::new("sh")
        .args([
            "-c",
            "dpkg-deb --fsys-tarfile \"$0\" | tar -xO ./usr/bin/chaos",
        ])
        .arg(deb)
        .output()
        .context("dpkg-deb --fsys-tarfile")?;
    if packed.stdout != fs::read(binary)? {
        bail!(
            "{}'s /usr/bin/chaos is not {}",
            deb.display(),
            binary.display()
        );
    }
    Ok(())
}

/// Directories 0755 and files 0644 below `dir`, executables (`usr/bin/`) 0755.
fn set_modes(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            set_modes(&path)?;
        } else {
            let executable = path
                .parent()
                .is_some_and(|parent| parent.ends_with("usr/bin"));
            let mode = if executable { 0o755 } else { 0o644 };
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// podman with a container storage of its own in `dir` (vfs: it works over any root, overlay
/// included), removed when dropped: nothing of the host's storage is used or left.
struct ScratchPodman {
    storage: PathBuf,
    conf: PathBuf,
}

impl ScratchPodman {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        let storage = dir.join("podman-storage");
        let _ = fs::remove_dir_all(&storage);
        fs::create_dir_all(&storage)?;
        let conf = storage.join("storage.conf");
        fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
                storage.display()
            ),
        )?;
        Ok(Self { storage, conf })
    }

    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command.env("CONTAINERS_STORAGE_CONF", &self.conf);
        command
    }
}

impl Drop for ScratchPodman {
    fn drop(&mut self) {
        let _ = self.command().args(["rmi", "--all", "--force"]).output();
        let _ = fs::remove_dir_all(&self.storage);
    }
}

/// Builds deploy/Containerfile around the binary in `context` and saves it as an OCI archive.
fn build_image(context: &Path, archive: &Path, arch: &str) -> anyhow::Result<()> {
    let podman = ScratchPodman::new(context)?;
    let _ = fs::remove_file(archive);
    run_command(
        podman
            .command()
            .args(["build", "--quiet", "--arch", arch, "--file"])
            .arg(workspace_root().join("deploy/Containerfile"))
            .args(["--tag", IMAGE])
            .arg(context),
    )?;
    run_command(
        podman
            .command()
            .args(["save", "--quiet", "--format", "oci-archive", "--output"])
            .arg(archive)
            .arg(IMAGE),
    )
}

/// The program interpreter an ELF executable asks for (PT_INTERP), `None` for a static one.
fn elf_interpreter(elf: &[u8]) -> anyhow::Result<Option<String>> {
    const PT_INTERP: u32 = 3;
    let read = |at: usize, len: usize| -> anyhow::Result<u64> {
        let bytes = elf.get(at..at + len).context("truncated ELF")?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |value, &byte| (value << 8) | u64::from(byte)))
    };
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        bail!("not a 64-bit ELF file");
    }
    let (phoff, phentsize, phnum) = (read(0x20, 8)?, read(0x36, 2)?, read(0x38, 2)?);
    for index in 0..phnum {
        let header = (phoff + index * phentsize) as usize;
        if read(header, 4)? == u64::from(PT_INTERP) {
            let (offset, size) = (
                read(header + 8, 8)? as usize,
                read(header + 32, 8)? as usize,
            );
            let path = elf.get(offset..offset + size).context("truncated ELF")?;
            return Ok(Some(
                String::from_utf8_lossy(path)
                    .trim_end_matches('\0')
                    .to_owned(),
            ));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_dynamic_executable_from_a_static_one() {
        // Debian's dash links glibc; busybox-static (setup installs it) does not.
        let sh = elf_interpreter(&fs::read("/bin/dash").unwrap()).unwrap();
        assert!(sh.is_some_and(|i| i.contains("ld-linux")));
        assert_eq!(
            elf_interpreter(&fs::read("/bin/busybox").unwrap()).unwrap(),
            None
        );
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
    }
}

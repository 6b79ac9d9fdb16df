//! `cargo xtask dist`: the static `chaos` (musl, eBPF objects inside, stripped) and its image
//! built FROM scratch, in target/dist. Nothing is pulled from a registry.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{cargo, run_command, workspace_root};

/// The target of the static binary: Rust's own musl, no C toolchain beyond the linker.
pub const MUSL: &str = "x86_64-unknown-linux-musl";
/// The most the static binary may weigh (issue 15: it goes to every node).
const MAX_BYTES: u64 = 10 * 1024 * 1024;
/// The image's name in the archive (`podman load` and `ctr images import` keep it).
pub const IMAGE: &str = "localhost/chaos:dist";

/// Where `dist` leaves the binary (`chaos`) and the image (`chaos-image.tar`, an OCI archive).
pub fn dir() -> PathBuf {
    workspace_root().join("target/dist")
}

/// Builds the static binary and its image into [`dir`], and says what they weigh.
pub fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    crate::setup::musl_target()?;
    cargo(&[
        "build",
        "--profile",
        "dist",
        "--target",
        MUSL,
        "--package",
        "chaos-user",
        "--bin",
        "chaos",
    ])?;
    let out = dir();
    fs::create_dir_all(&out)?;
    let binary = out.join("chaos");
    let built = workspace_root()
        .join("target")
        .join(MUSL)
        .join("dist/chaos");
    fs::copy(&built, &binary).with_context(|| format!("copy {}", built.display()))?;
    let size = fs::metadata(&binary)?.len();
    if size > MAX_BYTES {
        bail!(
            "{} is {size} bytes, over the {MAX_BYTES} allowed",
            binary.display()
        );
    }
    if let Some(interpreter) = elf_interpreter(&fs::read(&binary)?)? {
        bail!(
            "{} is not static: it asks for {interpreter}",
            binary.display()
        );
    }
    let image = out.join("chaos-image.tar");
    build_image(&out, &image)?;
    eprintln!(
        "dist: {} ({:.1} MiB, static), {} ({:.1} MiB, FROM scratch, {IMAGE})",
        binary.display(),
        size as f64 / (1024.0 * 1024.0),
        image.display(),
        fs::metadata(&image)?.len() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// Builds deploy/Containerfile around the binary in `context` and saves it as an OCI archive,
/// with a podman storage of its own (vfs: it works over any root, overlay included) that is
/// removed afterwards.
fn build_image(context: &Path, archive: &Path) -> anyhow::Result<()> {
    let storage = context.join("podman-storage");
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
    let podman = || {
        let mut command = Command::new("podman");
        command.env("CONTAINERS_STORAGE_CONF", &conf);
        command
    };
    let _ = fs::remove_file(archive);
    let built = run_command(
        podman()
            .args(["build", "--quiet", "--file"])
            .arg(workspace_root().join("deploy/Containerfile"))
            .args(["--tag", IMAGE])
            .arg(context),
    )
    .and_then(|()| {
        run_command(
            podman()
                .args(["save", "--quiet", "--format", "oci-archive", "--output"])
                .arg(archive)
                .arg(IMAGE),
        )
    });
    let _ = podman().args(["rmi", "--all", "--force"]).output();
    let _ = fs::remove_dir_all(&storage);
    built
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

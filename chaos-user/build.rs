//! Builds the eBPF objects of `chaos-ebpf` (one per `[[bin]]`) with the nightly toolchain into
//! OUT_DIR, where `src/object.rs` embeds them; and the `errno` object a second time with
//! `--cfg chaos_legacy`, as `errno-legacy`, for kernels without BPF atomics (before 5.12).
//!
//! This is what `aya_build::build_ebpf` does, plus `-C target-cpu=v3`: the programs use BPF atomic
//! fetch-add (kernel >= 5.12), which LLVM emits only for BPF v3, and aya-build 0.2.0 replaces
//! CARGO_ENCODED_RUSTFLAGS wholesale, leaving no way to ask for it.
use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, anyhow, bail};

const EBPF_PACKAGE: &str = "chaos-ebpf";
const TARGET: &str = "bpfel-unknown-none";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("package {EBPF_PACKAGE} not found in the workspace"))?;
    let ebpf_dir = ebpf
        .manifest_path
        .parent()
        .context("manifest without a directory")?;
    emit_commit(metadata.workspace_root.as_std_path());
    println!("cargo:rerun-if-changed={ebpf_dir}");
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("../chaos-common")
    );

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    // Fuzz builds (cargo fuzz sets --cfg fuzzing) exercise parsers and never load a program:
    // empty objects spare them the eBPF build.
    if env::var_os("CARGO_CFG_FUZZING").is_some() {
        let bins = ebpf.targets.iter().filter(|target| target.is_bin());
        for name in bins.map(|bin| bin.name.as_str()).chain(["errno-legacy"]) {
            fs::write(out_dir.join(name), b"")?;
            fs::write(out_dir.join(format!("{name}.hash-maps.rs")), "&[]")?;
        }
        return Ok(());
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let build = |extra_flags: &[&str],
                 bins: &[&str],
                 target_dir: PathBuf|
     -> anyhow::Result<PathBuf> {
        let mut flags = vec![
            format!("--cfg=bpf_target_arch=\"{arch}\""),
            "-Cdebuginfo=2".into(),
            "-Clink-arg=--btf".into(),
            "-Ctarget-cpu=v3".into(),
        ];
        flags.extend(extra_flags.iter().map(|flag| (*flag).to_owned()));
        let rustflags: OsString = flags.join("\x1f").into();
        let mut command = Command::new("rustup");
        command
            .args([
                "run",
                "nightly",
                "cargo",
                "build",
                "--package",
                EBPF_PACKAGE,
                "--release",
            ])
            .args(["--target", TARGET, "-Z", "build-std=core", "--target-dir"])
            .arg(&target_dir);
        if bins.is_empty() {
            command.arg("--bins");
        }
        for bin in bins {
            command.args(["--bin", bin]);
        }
        let status = command
            .current_dir(&metadata.workspace_root)
            .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
            // The outer build's compiler and wrappers are for the host toolchain.
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("RUSTC_WRAPPER")
            .status()
            .context("run `rustup run nightly cargo build` for the eBPF programs (cargo xtask setup installs what it needs)")?;
        if !status.success() {
            bail!(
                "building the eBPF programs failed ({status}); run `cargo xtask setup` if bpf-linker or rust-src is missing"
            );
        }
        Ok(target_dir.join(TARGET).join("release"))
    };
    // One eBPF build per target directory, shared by the debug, release, musl and clippy builds
    // of chaos-user (its own cargo lock keeps concurrent builds apart).
    let ebpf_target = metadata.target_directory.as_std_path().join("ebpf");
    let built = build(&[], &[], ebpf_target.join("default"))?;
    for bin in ebpf.targets.iter().filter(|target| target.is_bin()) {
        strip(&built.join(&bin.name), &out_dir.join(&bin.name))?;
        write_hash_map_users(&out_dir, &bin.name)?;
    }
    let legacy = build(
        &["--cfg=chaos_legacy"],
        &["errno"],
        ebpf_target.join("legacy"),
    )?;
    strip(&legacy.join("errno"), &out_dir.join("errno-legacy"))?;
    write_hash_map_users(&out_dir, "errno-legacy")?;
    Ok(())
}

/// Writes `NAME.hash-maps.rs` beside object `name`: each of its preallocated hash maps with the
/// programs that use it, as a Rust slice `src/object.rs` includes. The kernel allocates every
/// entry of such a map when it is made, most of a short run's start; the loader makes those no
/// program of the run uses one entry long.
fn write_hash_map_users(out_dir: &Path, name: &str) -> anyhow::Result<()> {
    let bytes = fs::read(out_dir.join(name)).with_context(|| format!("read object {name}"))?;
    let users =
        hash_map_users(&bytes).with_context(|| format!("read the maps of object {name}"))?;
    let mut text = String::from("&[\n");
    for (map, programs) in users {
        text.push_str(&format!("    ({map:?}, &{programs:?}),\n"));
    }
    text.push(']');
    fs::write(out_dir.join(format!("{name}.hash-maps.rs")), text)?;
    Ok(())
}

/// The preallocated hash maps of an eBPF object (legacy `maps` section, whose definitions begin
/// with the map type), each with the programs whose relocations name it; a program that calls
/// into `.text` counts as using every map `.text` names.
fn hash_map_users(bytes: &[u8]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    use std::collections::{BTreeMap, BTreeSet};

    use object::{
        Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SymbolKind,
    };

    const BPF_MAP_TYPE_HASH: u32 = 1;
    /// `map_flags` after type, key size, value size and max entries.
    const FLAGS_AT: usize = 16;
    const BPF_F_NO_PREALLOC: u32 = 1;

    let file = object::File::parse(bytes)?;
    if !file.is_little_endian() {
        bail!("a big-endian object: the map definitions are read as little-endian");
    }
    let Some(maps) = file.section_by_name("maps") else {
        return Ok(Vec::new());
    };
    let maps_data = maps.data()?;
    let word = |at: usize| {
        maps_data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")))
    };
    let mut hash_maps = BTreeMap::new();
    for symbol in file.symbols() {
        if symbol.section_index() != Some(maps.index()) || symbol.kind() == SymbolKind::Section {
            continue;
        }
        let at = symbol.address() as usize;
        if word(at) == Some(BPF_MAP_TYPE_HASH)
            && word(at + FLAGS_AT).is_some_and(|flags| flags & BPF_F_NO_PREALLOC == 0)
        {
            hash_maps.insert(symbol.index().0, symbol.name()?.to_owned());
        }
    }
    let text = file.section_by_name(".text").map(|section| section.index());
    // What the relocations in `range` of `section` name: hash maps, and whether `.text`. A
    // reference this reading cannot follow fails the build: a map it missed would be shrunk.
    let named = |section: &object::Section<'_, '_>,
                 range: std::ops::Range<u64>|
     -> anyhow::Result<(BTreeSet<String>, bool)> {
        let mut found = BTreeSet::new();
        let mut calls_text = false;
        for (offset, relocation) in section.relocations() {
            let RelocationTarget::Symbol(index) = relocation.target() else {
                continue;
            };
            if !range.contains(&offset) {
                continue;
            }
            if let Some(map) = hash_maps.get(&index.0) {
                found.insert(map.clone());
                continue;
            }
            let symbol = file.symbol_by_index(index)?;
            let Some(target) = symbol.section_index() else {
                continue;
            };
            if Some(target) == text {
                calls_text = true;
            } else if target == maps.index() && symbol.kind() == SymbolKind::Section {
                bail!("a relocation names the maps section, not a map");
            } else if target != section.index()
                && file.section_by_index(target)?.kind() == object::SectionKind::Text
            {
                bail!("a relocation names code outside .text and its own section");
            }
        }
        Ok((found, calls_text))
    };
    let text_maps = match text {
        Some(index) => named(&file.section_by_index(index)?, 0..u64::MAX)?.0,
        None => BTreeSet::new(),
    };
    let mut users: BTreeMap<String, Vec<String>> = hash_maps
        .values()
        .map(|map| (map.clone(), Vec::new()))
        .collect();
    for symbol in file.symbols() {
        let Some(index) = symbol.section_index() else {
            continue;
        };
        if symbol.kind() != SymbolKind::Text || Some(index) == text || symbol.size() == 0 {
            continue;
        }
        let section = file.section_by_index(index)?;
        let start = symbol.address() - section.address();
        let (mut found, calls_text) = named(&section, start..start + symbol.size())?;
        if calls_text {
            found.extend(text_maps.iter().cloned());
        }
        for map in found {
            users
                .entry(map)
                .or_default()
                .push(symbol.name()?.to_owned());
        }
    }
    Ok(users.into_iter().collect())
}

/// Copies the eBPF object `from` to `to` without what loading it does not use, which every
/// start would parse: the DWARF sections (the linker makes BTF from them and aya reads only the
/// BTF: three quarters of the object), the BTF line info (source lines for verifier logs, a
/// record per line of every program, which aya parses, copies into each program and hands to
/// the kernel to check), and the relocations of .BTF.ext (a linker's business; aya reads none
/// of them, but parsing the object reads each).
fn strip(from: &Path, to: &Path) -> anyhow::Result<()> {
    use object::build::elf::{Builder, SectionData};

    let data = fs::read(from).with_context(|| format!("read {}", from.display()))?;
    let mut builder = Builder::read(&*data).with_context(|| format!("parse {}", from.display()))?;
    for section in builder.sections.iter_mut() {
        let name = section.name.as_slice();
        section.delete = name.starts_with(b".debug")
            || name.starts_with(b".rel.debug")
            || name == b".rel.BTF.ext";
        if name == b".BTF.ext"
            && let SectionData::Data(bytes) = &mut section.data
        {
            let mut ext = bytes.to_vec();
            without_line_info(&mut ext)
                .with_context(|| format!("{}'s .BTF.ext", from.display()))?;
            *bytes = ext.into();
        }
    }
    // The linker names sections from .strtab; the writer wants a section-name table of its own.
    if !builder
        .sections
        .iter()
        .any(|section| matches!(section.data, SectionData::SectionString))
    {
        let names = builder.sections.add();
        names.name = b".shstrtab"[..].into();
        names.sh_type = object::elf::SHT_STRTAB;
        names.sh_addralign = 1;
        names.data = SectionData::SectionString;
    }
    builder.delete_orphans();
    let mut stripped = Vec::new();
    builder
        .write(&mut stripped)
        .with_context(|| format!("write {} stripped", from.display()))?;
    fs::write(to, stripped).with_context(|| format!("write {}", to.display()))
}

/// Empties the line info of a .BTF.ext section (little-endian, as the BPF target's): its length
/// in the header becomes 0 (struct btf_ext_header: magic, version, flags, hdr_len, then the
/// offset and length of func_info, line_info, …).
fn without_line_info(ext: &mut [u8]) -> anyhow::Result<()> {
    const LINE_INFO_LEN: usize = 20;
    anyhow::ensure!(
        ext.len() >= LINE_INFO_LEN + 4
            && ext[..2] == 0xeb9f_u16.to_le_bytes()
            && u32::from_le_bytes(ext[4..8].try_into()?) as usize >= LINE_INFO_LEN + 4,
        "not a little-endian .BTF.ext with line info in its header"
    );
    ext[LINE_INFO_LEN..LINE_INFO_LEN + 4].copy_from_slice(&0u32.to_le_bytes());
    Ok(())
}

/// Sets CHAOS_COMMIT, the commit `chaos --version` names: git's HEAD, or "unknown" outside a
/// checkout (a source tarball). Built again when HEAD moves.
fn emit_commit(root: &Path) {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // HEAD names the branch; the branch's ref file (or packed-refs) moves with each commit.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name])
            && root.join(&path).exists()
        {
            println!("cargo:rerun-if-changed={}", root.join(path).display());
        }
    }
    println!("cargo:rustc-env=CHAOS_COMMIT={commit}");
}

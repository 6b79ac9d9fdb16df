//! Builds the eBPF objects of `chaos-ebpf` with the nightly toolchain into OUT_DIR, where
//! `src/object.rs` embeds them.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "chaos-ebpf")
        .ok_or_else(|| anyhow!("package chaos-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("chaos-ebpf manifest has no parent directory"))?;
    // The objects also depend on the shared types, which aya-build does not watch.
    let common_dir = root_dir.join("../chaos-common");
    println!("cargo:rerun-if-changed={common_dir}");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "chaos-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

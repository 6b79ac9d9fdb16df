//! Everything that is not `cargo build`: toolchain setup, tests on this host and in qemu guests,
//! the demo. Reached with `cargo xtask`.

mod arm64;
mod dist;
mod kernels;
mod matrix;
mod setup;
mod test;
mod vm;

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need: Debian packages, nightly rust-src, bpf-linker.
    /// Idempotent; a second run takes seconds.
    Setup,
    /// Set up, build, and run the built-in demo on this host.
    Demo,
    /// Set up, build, and run every test: unit and integration tests on this host, then the
    /// integration tests inside a qemu guest.
    Test {
        /// Only the host tests.
        #[arg(long)]
        host_only: bool,
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// Fuzz the experiment parser (cargo fuzz, nightly) for a while, seeded with examples/ and
    /// the invalid corpus; fails on any crash.
    Fuzz {
        /// How long to fuzz.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Benchmark the errno faults: connect() on this host, open() in the qemu guest; prints
    /// ns per call per case and the required ratios.
    Bench,
    /// Build the static `chaos` (musl, stripped, eBPF objects inside) and an OCI image FROM
    /// scratch holding it: target/dist/chaos and target/dist/chaos-image.tar.
    Dist,
    /// Build the static aarch64 `chaos` and run its checks on Debian's arm64 6.1 and 6.12 kernels in
    /// qemu-system-aarch64 (tests/arm64/run.sh).
    Arm64,
    /// Build the faultinj-6.12 test kernel from Debian's linux-source-6.12 into
    /// ~/.cache/chaos/kernels (the guests use it when ../shared/kernels lacks the image or its
    /// checksum differs; without either, the first guest run builds it).
    BuildKernel,
    /// Write the fault family x kernel support table into README.md from the last results of
    /// `cargo xtask test` / `vm-test` (target/matrix).
    SupportTable,
    /// Run the integration tests inside qemu guests, one per kernel, side by side.
    VmTest {
        /// A kernel to test on (repeatable; `all`: every kernel of the matrix).
        #[arg(long, default_value = vm::DEFAULT_KERNEL)]
        kernel: Vec<String>,
        /// Only tests whose name contains one of these.
        #[arg(last = true)]
        filter: Vec<String>,
    },
    /// Run a command inside a qemu guest: the host root read-only, a writable overlay, a scratch
    /// directory shared back; exits with the command's status.
    VmRun {
        #[arg(long, default_value = vm::DEFAULT_KERNEL)]
        kernel: String,
        /// Environment for the command: NAME=VALUE (repeatable).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// The guest's clock counts instructions (qemu -icount shift=0), as `cargo xtask bench`
        /// runs its guest part: timings are the work done, whatever else the host runs.
        #[arg(long)]
        icount: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::run(),
        Task::Demo => {
            setup::run()?;
            cargo(&["build", "--release", "--package", "chaos-user"])?;
            run_command(Command::new(workspace_root().join("target/release/chaos")).arg("demo"))
        }
        Task::Test { host_only, filter } => test::all(host_only, filter.as_deref()),
        Task::Bench => test::bench(),
        Task::Fuzz { seconds } => test::fuzz(seconds),
        Task::SupportTable => matrix::write_support_table(),
        Task::BuildKernel => kernels::build_faultinj(),
        Task::Dist => dist::run(),
        Task::Arm64 => arm64::run_all(),
        Task::VmTest { kernel, filter } => {
            let kernels: Vec<&str> = if kernel.iter().any(|k| k == "all") {
                vm::MATRIX.to_vec()
            } else {
                kernel.iter().map(String::as_str).collect()
            };
            // Test names have no spaces: the filters travel as one string.
            let filter = filter.join(" ");
            test::in_vms(&kernels, (!filter.is_empty()).then_some(filter.as_str()))
        }
        Task::VmRun {
            kernel,
            env,
            icount,
            command,
        } => {
            let clock = if icount {
                vm::Clock::Instructions
            } else {
                vm::Clock::Real
            };
            let status = vm::run(
                &vm::Kernel::named(&kernel)?,
                &env,
                &command,
                None,
                "",
                clock,
            )?;
            std::process::exit(status);
        }
    }
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs `cargo ARGS` in the workspace root.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with(args, &[])
}

/// `cargo ARGS` with the environment variables `env` set.
pub fn cargo_with(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).envs(env.iter().copied());
    run_command(command.current_dir(workspace_root()))
}

/// Runs a command, failing with its status.
pub fn run_command(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

//! `cargo xtask test` and `cargo xtask vm-test`.

use std::process::Command;

use anyhow::{Context as _, bail};
use chaos_common::features;

use crate::{cargo, setup, vm, workspace_root};

/// Features the host tests must find working (the development and CI host has them; the qemu
/// kernels cover the rest): set as CHAOS_EXPECT unless the caller set one.
const HOST_EXPECT: [&str; 8] = [
    features::BTF,
    features::BPF_ATOMICS,
    features::CGROUP_SOCK_ADDR,
    features::TRACEPOINT_SIGNAL,
    features::PERF_LINK,
    features::CGROUP_V2,
    features::BRIDGE,
    features::TCX,
];

/// Test binaries that run on the host only: the manifests' schema checks, `chaos k8s` against
/// the fake API server, the Chaos Toolkit extension, the Ansible role and the monkey, which ask
/// nothing of the kernel that other tests do not ask on every kernel (the monkey's day also
/// needs its sped-up clock to stay near real time, which an emulated guest's slow fault starts
/// break), and the real containerd's pods, whose faults the podman tests run on every kernel.
const HOST_ONLY: [&str; 6] = [
    "deploy",
    "k8s",
    "containerd",
    "chaostoolkit",
    "ansible",
    "monkey",
];

/// Test binaries that run on the host and, in the guests named here only, those of their tests
/// named here (none named: all). The drills test servers under faults the other binaries test on
/// every kernel: a guest runs those that need what the host lacks (fq and BPF LSM on
/// debian-6.12, the error-injection list on faultinj-6.12).
const SOME_GUESTS: [(&str, &str, &[&str]); 3] = [
    // XDP is the same program on 6.1 and 6.12 (TC differs: clsact against tcx): its virtio-net
    // and veth tests run on one stock kernel.
    ("net_xdp", "debian-6.12", &[]),
    (
        "drills",
        "debian-6.12",
        &["http_under_load", "http_chaos_plus", "postgres_disk_errors"],
    ),
    ("drills", "faultinj-6.12", &["postgres_power_cut"]),
];

/// The whole suite: host tests, then the integration tests in the guest.
pub fn all(host_only: bool, filter: Option<&str>) -> anyhow::Result<()> {
    timed("setup", setup::run)?;
    timed("build", || cargo(&["build"]))?;
    // The static binary and its image: tests/tests/dist.rs runs them, each guest probes with it.
    timed("static binary and image", crate::dist::run)?;
    let mut args = vec!["test", "--"];
    args.extend(filter);
    // Integration tests change cgroups and the kernel: one at a time. Passing tests' output is
    // shown too: it carries the measured rates and every "NOT INJECTED / SKIPPED on this
    // kernel" line with its reason.
    args.extend(["--test-threads=1", "--show-output"]);
    let expect = std::env::var("CHAOS_EXPECT").unwrap_or_else(|_| HOST_EXPECT.join(","));
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    timed("host tests (build and run)", || {
        crate::run_command(
            Command::new(&cargo_bin)
                .args(&args)
                .env("CHAOS_EXPECT", &expect)
                .env("CHAOS_PYTHON_BIN", setup::python_venv()?.join("bin"))
                .current_dir(workspace_root()),
        )
    })?;
    if filter.is_none() {
        record_host_results()?;
        timed("fuzz (build and run)", || fuzz(TEST_FUZZ_SECONDS))?;
    }
    if !host_only {
        timed("guests", || in_vms(&vm::MATRIX, filter))?;
        if filter.is_none() {
            crate::matrix::write_support_table()?;
        }
    }
    Ok(())
}

/// Runs one part of the suite and says how long it took (CI has a time limit).
fn timed<T>(part: &str, run: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let started = std::time::Instant::now();
    let result = run();
    eprintln!("test: {part} took {} s", started.elapsed().as_secs());
    result
}

/// The host's probe and (the whole run having passed) every integration binary as passed, for
/// the support table.
fn record_host_results() -> anyhow::Result<()> {
    let dir = crate::matrix::results_dir("host");
    std::fs::create_dir_all(&dir)?;
    let probe = Command::new(workspace_root().join("target/debug/chaos"))
        .args(["probe", "--json"])
        .output()
        .context("chaos probe")?;
    std::fs::write(dir.join("probe.json"), probe.stdout)?;
    let results: String = integration_test_binaries()?
        .iter()
        .map(|binary| {
            let name = binary.rsplit('/').next().unwrap_or(binary);
            let short = name.rsplit_once('-').map_or(name, |(stem, _hash)| stem);
            format!("{short} passed\n")
        })
        .collect();
    std::fs::write(dir.join("results"), results)?;
    Ok(())
}

/// Builds the integration tests on the host and runs them in a guest of each kernel (every test
/// binary in one boot), several guests at a time: a guest is one TCG thread (see vm::run), so
/// each core of the host runs one.
pub fn in_vms(kernels: &[&str], filter: Option<&str>) -> anyhow::Result<()> {
    setup::run()?;
    // The arm64 guests are jobs of the queue like the others, but their own: an initramfs of
    // the static aarch64 binary and a script (see arm64.rs), not the host's root.
    let kernels = kernels
        .iter()
        .map(|&name| {
            let kernel = if crate::arm64::is_guest(name) {
                None
            } else {
                Some(vm::Kernel::named(name)?)
            };
            Ok((name, kernel))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The workspace, as `all` builds it: `--package chaos-user` alone resolves features apart
    // and rebuilt every dependency after `all` (2 min 20 s of CI).
    cargo(&["build"])?;
    crate::dist::run()?;
    let binaries = integration_test_binaries()?;
    let at_once = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(kernels.len());
    let queue = std::sync::Mutex::new(kernels.iter());
    let outcomes = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..at_once {
            scope.spawn(|| {
                loop {
                    // Its own statement: the lock is released before the guest runs.
                    let next = queue.lock().expect("queue").next();
                    let Some(&(name, ref kernel)) = next else {
                        break;
                    };
                    let started = std::time::Instant::now();
                    let outcome = match kernel {
                        None => crate::arm64::run(name).map(|()| 0).or_else(|error| {
                            eprintln!("[{name}] {error:#}");
                            Ok(1)
                        }),
                        Some(kernel) => {
                            let prefix = if kernels.len() > 1 {
                                format!("[{name}] ")
                            } else {
                                String::new()
                            };
                            guest_suite(kernel, &binaries, filter, &prefix)
                        }
                    };
                    outcomes
                        .lock()
                        .expect("outcomes")
                        .push((name, outcome, started.elapsed()));
                }
            });
        }
    });
    let mut failed = Vec::new();
    for (name, outcome, took) in outcomes.into_inner().expect("outcomes") {
        match outcome {
            Ok(0) => eprintln!("vm-test: {name}: passed in {} s", took.as_secs()),
            Ok(status) => {
                // The binaries that failed, from the guest's results, so that the last lines
                // of a long log say where to look.
                let results = crate::matrix::results_dir(name).join("results");
                let failed_binaries: Vec<String> = std::fs::read_to_string(results)
                    .ok()
                    .filter(|_| filter.is_none())
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|line| line.strip_suffix(" FAILED").map(str::to_owned))
                    .collect();
                for binary in &failed_binaries {
                    let log = crate::matrix::results_dir(name).join(format!("{binary}.log"));
                    if let Ok(log) = std::fs::read_to_string(log) {
                        eprintln!("vm-test: {name}: {binary}: {}", failures_of(&log));
                    }
                }
                eprintln!(
                    "vm-test: {name}: FAILED (status {status}) after {} s: {}",
                    took.as_secs(),
                    failed_binaries.join(", ")
                );
                failed.push(name);
            }
            Err(error) => {
                eprintln!("vm-test: {name}: could not run: {error:#}");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "integration tests failed in the {} guest(s)",
            failed.join(", ")
        );
    }
    Ok(())
}

/// The end of a test binary's failure report (libtest's "failures:" section on, without the
/// backtraces' frames), which a long log's record would otherwise leave out.
fn failures_of(log: &str) -> String {
    const LINES: usize = 40;
    let frame = |line: &str| {
        let line = line.trim_start();
        line.starts_with("at ")
            || line
                .split_once(": ")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let lines: Vec<&str> = log.lines().filter(|line| !frame(line)).collect();
    let start = lines
        .iter()
        .position(|line| line.trim_end() == "failures:")
        .unwrap_or(0)
        .max(lines.len().saturating_sub(LINES));
    lines[start..].join("\n")
}

/// Each test's time in the guest's log, so that CI's minutes can be traced to the tests that
/// spend them (an unstable libtest option; RUSTC_BOOTSTRAP in the guest's environment allows it).
const REPORT_TIME: &str = "-Z unstable-options --report-time";

/// One guest boot running every test binary, one at a time; returns the guest's status.
fn guest_suite(
    kernel: &vm::Kernel,
    binaries: &[String],
    filter: Option<&str>,
    prefix: &str,
) -> anyhow::Result<i32> {
    // The guests test the static binary the nodes get (the host tests the debug build, with
    // its overflow checks): optimised, it starts in two thirds of the debug build's time under
    // TCG, which was a seventh of the guests' minutes.
    let chaos = crate::dist::dir().join("chaos");
    // The probe's findings and each binary's outcome go to /scratch for the support table.
    let mut script = format!(
        "status=0\n{} probe --json > /scratch/probe.json || status=1\n: > /scratch/results\n",
        shell_quote(&chaos.display().to_string())
    );
    for binary in binaries {
        let name = binary.rsplit('/').next().unwrap_or(binary);
        let short = name.rsplit_once('-').map_or(name, |(stem, _hash)| stem);
        let listed = SOME_GUESTS.iter().any(|&(binary, ..)| binary == short);
        let only_tests = SOME_GUESTS
            .iter()
            .find(|&&(binary, guest, _)| binary == short && guest == kernel.name)
            .map(|&(_, _, tests)| tests.join(" "));
        let elsewhere = listed && only_tests.is_none();
        if HOST_ONLY.contains(&short)
            || elsewhere
            || kernel.only.is_some_and(|only| !only.contains(&short))
        {
            continue;
        }
        // A failed binary's output stays in /scratch/BINARY.log, for the summary's last lines.
        script.push_str(&format!(
            "echo '== {name} on {kernel}'\nstarted=$(date +%s)\n\
             {{ {binary} --test-threads=1 --show-output {REPORT_TIME} {filter} 2>&1; echo $? > /scratch/exit; }} | tee /scratch/{short}.log\n\
             if [ \"$(cat /scratch/exit)\" = 0 ]; then outcome=passed; rm /scratch/{short}.log; else outcome=FAILED; status=1; fi\n\
             rm /scratch/exit\n\
             echo \"{short} $outcome\" >> /scratch/results\n\
             echo \"== {short} on {kernel}: $outcome in $(( $(date +%s) - started )) s\"\n",
            kernel = kernel.name,
            // A filter given on the command line wins over the binary's own list.
            filter = filter
                .map(|f| f.split(' ').map(shell_quote).collect::<Vec<_>>().join(" "))
                .or(only_tests)
                .unwrap_or_default(),
        ));
    }
    script.push_str("exit $status\n");
    let env = [
        format!("CHAOS_BIN={}", chaos.display()),
        format!("CHAOS_EXPECT={}", kernel.expect.join(",")),
        // The emulated guest's receivers (behind podman's bridge most of all) fall behind the
        // host's pace: a quarter of it keeps every loss the tests count the fault's.
        "NETPEER_UDP_PER_MS=5".to_owned(),
        // Unlocks libtest's --report-time (see REPORT_TIME) in test binaries a stable rustc built.
        "RUSTC_BOOTSTRAP=1".to_owned(),
    ];
    let results = crate::matrix::results_dir(kernel.name);
    vm::run(
        kernel,
        &env,
        &["sh".into(), "-c".into(), script],
        filter.is_none().then_some(results.as_path()),
        prefix,
        vm::Clock::Real,
    )
}

/// Paths of the integration test executables of `chaos-tests`, built for the host.
fn integration_test_binaries() -> anyhow::Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "test",
            "--package",
            "chaos-tests",
            "--tests",
            "--no-run",
            "--message-format=json",
        ])
        .current_dir(workspace_root())
        .output()
        .context("cargo test --no-run")?;
    if !output.status.success() {
        bail!(
            "building the integration tests failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8(output.stdout)?.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "test"));
        if let (true, Some(executable)) = (is_test, message["executable"].as_str()) {
            binaries.push(executable.to_owned());
        }
    }
    if binaries.is_empty() {
        bail!("no integration test binaries were built");
    }
    binaries.sort();
    Ok(binaries)
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `cargo xtask bench`: release builds, connect() on this host, open() in the guest.
pub fn bench() -> anyhow::Result<()> {
    setup::run()?;
    cargo(&[
        "build",
        "--release",
        "--package",
        "chaos-user",
        "--package",
        "chaos-tests",
        "--bins",
    ])?;
    let release = workspace_root().join("target/release");
    let bench = release.join("chaos-bench");
    crate::run_command(Command::new(&bench).args(["connect", "20000", "5", "5"]))?;
    crate::run_command(Command::new(&bench).args(["deadline", "7"]))?;
    // Start and memory as a node runs it: the static binary `dist` ships.
    crate::dist::run()?;
    let dist = crate::dist::dir();
    crate::run_command(
        Command::new(&bench)
            .args(["start", "7"])
            .env("CHAOS_BIN", dist.join("chaos")),
    )?;
    for file in ["chaos", "chaos-image.tar"] {
        let bytes = std::fs::metadata(dist.join(file))?.len();
        println!(
            "size: target/dist/{file} {:.1} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
    crate::run_command(Command::new(&bench).args(["net", "7"]))?;
    // Where to drop, on this host's veth (its kernel has no netem); the guest below adds netem
    // and virtio-net.
    crate::run_command(Command::new(&bench).args(["hooks", "5", "1000000"]))?;
    // Delay precision needs a real clock: on the host, whose syscall tracepoints serve it.
    crate::run_command(Command::new(&bench).args(["delay", "300"]))?;
    let kernel = vm::Kernel::named(vm::DEFAULT_KERNEL)?;
    let env = [format!("CHAOS_BIN={}", release.join("chaos").display())];
    // The loop's file on a tmpfs: the guest's root is an overlay, which runs the file_open hook
    // twice per open() (for itself and for the file below it), so the overhead measured there is
    // that of two hooked calls per iteration. The guest's clock counts instructions: its figures
    // are the work each case does, which real time under TCG blurs by a third.
    let command = [
        "sh".into(),
        "-c".into(),
        format!(
            "mkdir -p /run/chaos-bench && mount -t tmpfs tmpfs /run/chaos-bench && \
             TMPDIR=/run/chaos-bench {bench} open 4000 5 3 && \
             TMPDIR=/run/chaos-bench exec {bench} disk 5",
            bench = shell_quote(&bench.display().to_string())
        ),
    ];
    println!(
        "in the {} guest, whose clock counts instructions (qemu -icount shift=0): a ns below is one \
         instruction of either guest CPU",
        kernel.name
    );
    let status = vm::run(&kernel, &env, &command, None, "", vm::Clock::Instructions)?;
    if status != 0 {
        bail!(
            "the benchmark in the {} guest failed (status {status})",
            kernel.name
        );
    }
    // corrupt-io needs syscall tracepoints and bpf_probe_write_user, which the default guest
    // (no CONFIG_FTRACE_SYSCALLS) and this host (lockdown) lack; delay's fexit rung needs
    // trampolines, which this host refuses; clock needs both; the hooks' comparison needs netem
    // and a real NIC driver (virtio-net).
    let kernel = vm::Kernel::named("debian-6.12")?;
    let command = [
        "sh".into(),
        "-c".into(),
        format!(
            "mkdir -p /run/chaos-bench && mount -t tmpfs tmpfs /run/chaos-bench && \
             TMPDIR=/run/chaos-bench {bench} read 4000 5 3 && \
             {bench} delay 0 && \
             {bench} hooks 3 20000 && \
             exec {bench} clock 20000 5 3",
            bench = shell_quote(&bench.display().to_string())
        ),
    ];
    println!("in the {} guest, the same clock:", kernel.name);
    let status = vm::run(&kernel, &env, &command, None, "", vm::Clock::Instructions)?;
    if status != 0 {
        bail!(
            "the benchmark in the {} guest failed (status {status})",
            kernel.name
        );
    }
    Ok(())
}

/// Builds the fuzz target offline (setup fetched its crates), its compiler errors kept for the
/// error this returns: they are then the last lines a CI log shows, not lost in the middle.
fn build_fuzz_target() -> anyhow::Result<()> {
    let mut command = Command::new("cargo");
    command
        .arg(format!("+{}", setup::NIGHTLY))
        .args(["fuzz", "build", "experiment"])
        .env("CARGO_NET_OFFLINE", "true")
        .current_dir(workspace_root().join("fuzz"));
    let output = command
        .output()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // cargo fuzz's own backtrace (RUST_BACKTRACE) would push the compiler's errors out.
        let lines: Vec<&str> = stderr
            .lines()
            .take_while(|line| !line.starts_with("Stack backtrace"))
            .collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        bail!("{command:?} failed ({}):\n{tail}", output.status);
    }
    Ok(())
}

/// How long `cargo xtask test` fuzzes the experiment parser.
const TEST_FUZZ_SECONDS: u64 = 60;

/// Fuzzes the experiment parser for `seconds`, seeded with the shipped examples, the drills and
/// the invalid corpus; libFuzzer exits non-zero on a crash, leaving the input under fuzz/artifacts.
pub fn fuzz(seconds: u64) -> anyhow::Result<()> {
    setup::run()?;
    setup::cargo_fuzz()?;
    let root = workspace_root();
    let corpus = root.join("target/fuzz-corpus/experiment");
    std::fs::create_dir_all(&corpus)?;
    for dir in ["examples", "examples/drills", "tests/experiments/invalid"] {
        for entry in std::fs::read_dir(root.join(dir))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                std::fs::copy(&path, corpus.join(path.file_name().expect("a file name")))?;
            }
        }
    }
    build_fuzz_target()?;
    crate::run_command(
        Command::new("cargo")
            .arg(format!("+{}", setup::NIGHTLY))
            .args(["fuzz", "run", "experiment"])
            .env("CARGO_NET_OFFLINE", "true")
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-print_final_stats=1",
            ])
            .current_dir(root.join("fuzz")),
    )
}

#[cfg(test)]
mod tests {
    use super::failures_of;

    #[test]
    fn a_failure_report_is_cut_to_its_failures_section() {
        let log = "running 2 tests\ntest a ... ok\ntest b ... FAILED\n\nsuccesses:\n    a\n\n\
                   failures:\n\n---- b stdout ----\npanicked at tests/b.rs:1:1\nstack backtrace:\n\
                   \x20  0: __rustc::rust_begin_unwind\n             at /rustc/library/std/src/panicking.rs:689:5\n\
                   \nfailures:\n    b\n";
        let cut = failures_of(log);
        assert!(cut.starts_with("failures:\n\n---- b stdout"), "{cut}");
        assert!(cut.contains("panicked at"), "{cut}");
        assert!(
            !cut.contains("rust_begin_unwind") && !cut.contains("/rustc/"),
            "{cut}"
        );
        assert!(!cut.contains("successes"), "{cut}");
    }

    #[test]
    fn a_long_or_unfinished_log_gives_its_last_lines() {
        let log: String = (0..100).map(|n| format!("line {n}\n")).collect();
        let cut = failures_of(&log);
        assert_eq!(cut.lines().count(), 40);
        assert!(cut.ends_with("line 99"), "{cut}");
    }
}

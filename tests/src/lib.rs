//! Helpers for the integration tests: run the real `chaos` binary, start real victim processes in
//! a child cgroup, and read what they saw. Every helper that changes the machine undoes it on
//! drop, also when the test panics.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

use std::os::unix::{net::UnixDatagram, process::CommandExt as _};

use chaos_common::{
    features,
    hook::{self, Hook},
    names::{STATUS_LINE_PREFIX, STATUS_LINES_ENV},
};
use serde_json::Value;

mod container;
pub mod containerd;
mod engines;
pub mod fake_kube;
mod mounts;
mod netbed;

pub use container::{TestContainer, podman, podman_env};
pub use engines::{
    HttpService, assert_refused_then_recovered, detached_runs, free_port, scratch_dir,
};
pub use mounts::TestMount;
pub use netbed::{Peer, TestNet, idle_virtio_nics};

/// A tool of the Python venv `cargo xtask setup` makes (kubernetes-validate, the Chaos
/// Toolkit), found through CHAOS_PYTHON_BIN.
pub fn python_tool(tool: &str) -> PathBuf {
    let bin = std::env::var_os("CHAOS_PYTHON_BIN").map(PathBuf::from).expect(
        "CHAOS_PYTHON_BIN is not set: run through `cargo xtask test`, whose setup makes the venv",
    );
    bin.join(tool)
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock the victims stamp their lines with.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// A TCP server on `address` (port 0: any free one) that accepts and drops connections until
/// the test ends; returns the address it listens on, `ip:port`.
pub fn tcp_server(address: &str) -> String {
    let listener = std::net::TcpListener::bind(address).expect("bind the test server");
    let local = listener.local_addr().expect("local_addr").to_string();
    thread::spawn(move || for _connection in listener.incoming() {});
    local
}

/// The `chaos` binary under test: `$CHAOS_BIN`, or `chaos` next to the test's target directory
/// (`cargo xtask test` builds it first).
pub fn chaos_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CHAOS_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    // Test binaries live in target/<profile>/deps, other binaries in target/<profile>.
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("chaos"))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no chaos binary beside {}: build it with `cargo build -p chaos-user` or run `cargo xtask test`", exe.display()))
}

/// The directory `cargo xtask dist` fills with the static binary and the image (`cargo xtask
/// test` runs it first), or $CHAOS_DIST.
pub fn dist_dir() -> PathBuf {
    let dir = std::env::var_os("CHAOS_DIST").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dist"),
        PathBuf::from,
    );
    assert!(
        dir.join("chaos").exists() && dir.join("chaos-image.tar").exists(),
        "no static binary and image in {}: run `cargo xtask dist` first (`cargo xtask test` does)",
        dir.display()
    );
    dir
}

/// `chaos ARGS`, with the tests' podman configuration, so that it finds their containers.
pub fn chaos_command(args: &[&str]) -> Command {
    let mut command = Command::new(chaos_bin());
    command.args(args).envs(container::podman_env());
    command
}

/// Runs `chaos ARGS` to the end.
pub fn chaos(args: &[&str]) -> Output {
    chaos_command(args).output().expect("run chaos")
}

/// A chaos process a test started in the background: killed on drop, so that a test that
/// panics leaves no run behind for the next one to trip over.
pub struct Chaos {
    child: Option<Child>,
    /// With [`Chaos::spawn_live`]: the thread reading its stderr, which returns it without the
    /// status lines.
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Chaos {
    /// Starts `command` (a chaos command line) with piped output.
    pub fn spawn(command: &mut Command) -> Chaos {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chaos");
        Chaos {
            child: Some(child),
            stderr: None,
        }
    }

    /// Starts `command` (a fault) and returns once its programs are attached: chaos prints its
    /// first machine-readable status line (`CHAOS_STATUS_LINES`) when its run is held, after
    /// every program is attached, whatever else (a qdisc, a clsact filter) that took.
    pub fn spawn_live(command: &mut Command) -> Chaos {
        let mut chaos = Chaos::spawn(command.env(STATUS_LINES_ENV, "1"));
        let pipe = chaos
            .child
            .as_mut()
            .and_then(|c| c.stderr.take())
            .expect("piped");
        let (live, is_live) = std::sync::mpsc::channel();
        let reader = thread::spawn(move || {
            let mut kept = Vec::new();
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.starts_with(STATUS_LINE_PREFIX) {
                    let _ = live.send(());
                } else {
                    kept.extend_from_slice(line.as_bytes());
                    kept.push(b'\n');
                }
            }
            kept
        });
        chaos.stderr = Some(reader);
        if is_live.recv_timeout(Duration::from_secs(60)).is_err() {
            let output = chaos.wait_with_output().expect("chaos");
            panic!(
                "chaos never held its run: {:?} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        chaos
    }

    /// Waits for it to exit and collects its output.
    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        let mut output = self.child.take().expect("running").wait_with_output()?;
        if let Some(reader) = self.stderr.take() {
            output.stderr = reader.join().unwrap_or_default();
        }
        Ok(output)
    }
}

impl std::ops::Deref for Chaos {
    type Target = Child;

    fn deref(&self) -> &Child {
        self.child.as_ref().expect("running")
    }
}

impl std::ops::DerefMut for Chaos {
    fn deref_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The PIDs of `victims` as `--pid` takes them: comma-separated.
pub fn pid_list<'a>(victims: impl IntoIterator<Item = &'a Victim>) -> String {
    victims
        .into_iter()
        .map(|victim| victim.pid().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A directory of this test process under the system's temporary directory, made if need be.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-test-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    dir
}

/// Starts `chaos ARGS` in the background with piped output.
pub fn spawn_chaos(args: &[&str]) -> Chaos {
    Chaos::spawn(&mut chaos_command(args))
}

/// The bed of most connect faults: a TCP server on loopback and a child cgroup, in which
/// victims connect to it every 20 ms.
pub struct ConnectBed {
    pub address: String,
    pub cgroup: TestCgroup,
    victim_bin: &'static str,
}

impl ConnectBed {
    /// `victim_bin` is the tests' victim binary (`env!("CARGO_BIN_EXE_victim")`).
    pub fn new(victim_bin: &'static str, name: &str) -> Self {
        ConnectBed {
            address: tcp_server("127.0.0.1:0"),
            cgroup: TestCgroup::new(name),
            victim_bin,
        }
    }

    /// A victim connecting in the bed's cgroup, started and past its first call.
    pub fn victim(&self) -> Victim {
        Victim::start(self.victim_bin, "connect", &self.address, &self.cgroup)
    }
}

/// A run of `chaos ARGS` to its end: its JSON report and the window around it.
pub struct Ran {
    pub report: Value,
    /// `CLOCK_MONOTONIC` ns just before chaos started and just after it ended: every failure
    /// the run caused lies inside.
    pub window: (u64, u64),
    pub stderr: String,
}

/// Runs `chaos ARGS` (a fault command with `--json`) to its end and checks that it succeeded.
pub fn run_chaos(args: &[&str]) -> Ran {
    let start = monotonic_ns();
    let output = chaos(args);
    let end = monotonic_ns();
    ran(args, output, start, end)
}

/// Runs `chaos ARGS --for 10m --json` until each of `victims` has seen a failure, and 300 ms
/// more, then ends it with Ctrl-C: the fault is proved live however slowly chaos attaches (an emulated guest can
/// take longer than any fixed `--for` would allow).
pub fn run_chaos_until_failed(args: &[&str], victims: &[&Victim]) -> Ran {
    let mut full = args.to_vec();
    full.extend_from_slice(&["--for", "10m", "--json"]);
    let start = monotonic_ns();
    let child = spawn_chaos(&full);
    for victim in victims {
        victim.wait_for_failure();
    }
    // Live for a while, so the bystanders' calls meanwhile can be compared.
    thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().expect("wait for chaos");
    let end = monotonic_ns();
    let ran = ran(&full, output, start, end);
    assert_eq!(ran.report["ended_by"], "sigint", "{}", ran.report);
    ran
}

fn ran(args: &[&str], output: Output, start: u64, end: u64) -> Ran {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {:?}: {stderr}",
        output.status
    );
    Ran {
        report: json_report(&output),
        window: (start, end),
        stderr,
    }
}

/// A UNIX stream server at a fresh path that accepts and drops connections until the test ends;
/// returns the path.
pub fn unix_server() -> String {
    let path = std::env::temp_dir().join(format!(
        "chaos-test-{}-{}.sock",
        std::process::id(),
        monotonic_ns()
    ));
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the UNIX server");
    thread::spawn(move || for _connection in listener.incoming() {});
    path.to_str().expect("utf-8").to_owned()
}

/// Whether `output` is chaos refusing a fault because this kernel cannot run BPF LSM programs,
/// as the probe says: then it checks that the message gives the probe's reason and that the
/// feature is not one CHAOS_EXPECT says must work here, and prints the reason. `false` when chaos
/// did not exit 2.
pub fn refused_for_lack_of_lsm(output: &Output, what: &str) -> bool {
    if output.status.code() != Some(2) {
        return false;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let probe = Probe::run();
    let (trampoline, trampoline_detail) = probe.feature(features::TRAMPOLINE);
    let (lsm, lsm_detail) = probe.feature(features::BPF_LSM);
    assert!(
        !(trampoline && lsm),
        "{what} refused although BPF LSM works here: {stderr}"
    );
    assert!(
        !expected(features::TRAMPOLINE) && !expected(features::BPF_LSM),
        "{what} must inject on this kernel (CHAOS_EXPECT): {stderr}"
    );
    let reason = if trampoline {
        lsm_detail
    } else {
        trampoline_detail
    };
    assert!(
        stderr.contains(&reason),
        "{what}: chaos must give the probe's reason '{reason}': {stderr}"
    );
    eprintln!("{what} NOT INJECTED on this kernel, as the probe predicts (asserted): {reason}");
    assert_no_chaos_programs();
    true
}

/// Whether `output` is chaos refusing an operation whose hooks take a struct by value (`chown`'s
/// `kuid_t`) on a kernel whose trampolines take none (before 6.1), as the probe says: then it
/// checks that the message gives the probe's reason and that CHAOS_EXPECT does not require the
/// feature here, and prints the reason. `false` when chaos did not exit 2 or trampolines are
/// refused altogether ([`refused_for_lack_of_lsm`] covers that).
pub fn refused_for_lack_of_struct_args(output: &Output, what: &str) -> bool {
    if output.status.code() != Some(2) {
        return false;
    }
    let probe = Probe::run();
    let (struct_args, detail) = probe.feature(features::STRUCT_ARGS);
    if struct_args || !probe.feature(features::TRAMPOLINE).0 {
        return false;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("by value") && stderr.contains(&detail),
        "{what}: chaos must give the probe's reason '{detail}': {stderr}"
    );
    assert!(
        !expected(features::STRUCT_ARGS),
        "{what} must inject on this kernel (CHAOS_EXPECT): {stderr}"
    );
    eprintln!("{what} NOT INJECTED on this kernel, as the probe predicts (asserted): {detail}");
    assert_no_chaos_programs();
    true
}

/// Runs `chaos ARGS` and checks it refused: exit 2, every one of `named` in the message, and
/// nothing of the tool left in the kernel.
pub fn assert_refused(args: &[&str], named: &[&str]) {
    let output = chaos(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    for name in named {
        assert!(
            stderr.contains(name),
            "{args:?}: the message should name {name}: {stderr}"
        );
    }
    assert_no_chaos_programs();
}

/// Whether chaos can run a program at a syscall here (`chaos signal`, `chaos delay`):
/// fentry/fexit where trampolines load, else syscall tracepoints; and the probe's word on the
/// tracepoints.
pub fn syscall_programs_supported() -> (bool, String) {
    let probe = Probe::run();
    let (tracepoints, detail) = probe.feature(features::TRACEPOINT_SIGNAL);
    (tracepoints || probe.feature(features::TRAMPOLINE).0, detail)
}

/// Whether neither way of running a program at a syscall is expected here (CHAOS_EXPECT).
pub fn syscall_programs_unexpected() -> bool {
    !expected(features::TRACEPOINT_SIGNAL) && !expected(features::TRAMPOLINE)
}

/// Whether this kernel can count calls for `--after`, `--every` and `--count` (BPF atomics,
/// 5.12). Where it cannot (and need not, per CHAOS_EXPECT), checks that `chaos ARGS`, a fault
/// with such rules, is refused naming what is missing, and says the rules were not injected.
pub fn counting_supported_or_refused(args: &[&str]) -> bool {
    let (supported, detail) = Probe::run().feature(features::BPF_ATOMICS);
    if !supported {
        assert!(!expected(features::BPF_ATOMICS), "{detail}");
        assert_refused(args, &["BPF atomics", "5.12"]);
        eprintln!("NOT INJECTED on this kernel (the refusal is asserted): {detail}");
    }
    supported
}

/// A detached run a test started, stopped on drop if the test ends first (a panic included).
pub struct Detached {
    pub id: String,
    /// The run's deadline (`CLOCK_MONOTONIC` ns, the loader's clock right after attaching).
    pub deadline_ns: u64,
}

impl Drop for Detached {
    fn drop(&mut self) {
        let _ = chaos(&["stop", &self.id]);
    }
}

/// Runs `chaos ARGS --detach --json`, checks that it started, and returns the run.
pub fn start_detached(args: &[&str]) -> Detached {
    let mut full = args.to_vec();
    full.extend_from_slice(&["--detach", "--json"]);
    let output = chaos(&full);
    assert!(
        output.status.success(),
        "{full:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = json_report(&output);
    Detached {
        id: run["id"].as_str().expect("a run ID").to_owned(),
        deadline_ns: run["deadline_ns"].as_u64().expect("the run's deadline"),
    }
}

/// Runs `chaos cleanup --json` and checks that it found the expired detached run `id`.
pub fn assert_cleanup_finds_expired(id: &str) {
    let output = chaos(&["cleanup", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let cleaned = json_report(&output);
    assert!(
        cleaned["expired_runs"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|run| run == id)),
        "chaos cleanup did not find the expired run {id}: {cleaned}"
    );
}

/// The report of an experiment's workload `name` (`chaos run --json`).
pub fn workload<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no workload {name} in {report}"))
}

/// The JSON report `chaos ... --json` printed, with stderr in the panic message if it did not.
pub fn json_report(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
        panic!(
            "chaos did not print a JSON report ({err}); status {:?}\nstdout: {stdout}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The two rungs that fail a function of the kernel's error-injection list (`--syscall`,
/// `--kernel-fn`, `disk error`), as `--backend` names them, in `auto`'s order.
pub const OVERRIDE_RUNGS: [&str; 2] = ["fmod_ret", "kprobe-override"];

/// One `#[test]` per operation, each calling `$prove(OP)`, and `TESTED`, the operations in
/// order, for the test that the catalogue's are all there.
#[macro_export]
macro_rules! op_tests {
    ($prove:ident; $($name:ident: $op:literal,)*) => {
        $(
            #[test]
            fn $name() {
                $prove($op);
            }
        )*

        /// The operations a test proves.
        const TESTED: &[&str] = &[$($op),*];
    };
}

/// Proves `chaos fail --op OP --errno EIO` (and `extra` arguments) on a target process of
/// `victim` making OP's calls, beside a bystander in the same cgroup making the same calls: the
/// target fails with EIO only while the run lasts, as often as the report says, the bystander
/// never, and nothing is left after. `refused` judges an exit of chaos that is a refusal this
/// kernel explains (and asserts its reason): then the target must not have failed. Returns the
/// fault's report, or `None` when refused.
pub fn prove_op(
    victim: &str,
    op: &str,
    extra: &[&str],
    refused: impl FnOnce(&Output, &str) -> bool,
) -> Option<Value> {
    let report = prove_op_run(victim, op, extra, refused);
    assert_no_chaos_programs();
    report.map(|report| report["faults"][0].clone())
}

/// [`prove_op`] but for what the kernel holds after: the whole report, and no check that no
/// program is left (a run with `chaos idle` beside it leaves a spare).
pub fn prove_op_run(
    victim: &str,
    op: &str,
    extra: &[&str],
    refused: impl FnOnce(&Output, &str) -> bool,
) -> Option<Value> {
    let base = std::env::temp_dir().join(format!("chaos-op-{op}-{}", std::process::id()));
    let (target_arg, bystander_arg) = if op == "connect" {
        let address = tcp_server("127.0.0.1:0");
        (address.clone(), address)
    } else {
        let dir = |who: &str| base.join(who).to_str().expect("utf-8").to_owned();
        (dir("target"), dir("bystander"))
    };
    let cgroup = TestCgroup::new(op);
    let target = Victim::start(victim, op, &target_arg, &cgroup);
    let bystander = Victim::start(victim, op, &bystander_arg, &cgroup);
    // Let both settle past their start-up calls.
    target.wait_for_calls(3);
    bystander.wait_for_calls(3);

    let start_ns = monotonic_ns();
    let pid = target.pid().to_string();
    let mut args = vec![
        "fail", "--pid", &pid, "--op", op, "--errno", "EIO", "--for", "2s", "--json",
    ];
    args.extend_from_slice(extra);
    let output = chaos(&args);
    let end_ns = monotonic_ns();
    let what = [&["--op", op], extra].concat().join(" ");
    let report = if refused(&output, &what) {
        assert!(
            target.calls().iter().all(|call| call.errno.is_none()),
            "{what}: nothing may be attached"
        );
        None
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{what}: {stderr}");
        target.wait_for_call_after(end_ns);
        thread::sleep(Duration::from_millis(50));
        let report = json_report(&output);
        let fault = &report["faults"][0];
        assert_eq!(fault["op"], op);
        eprintln!(
            "{what} via {}: {} injected",
            fault["mechanism"], fault["injected"]
        );
        assert_scoped_fault(&[&target], &bystander, libc::EIO, (start_ns, end_ns), fault);
        Some(report)
    };
    drop((target, bystander));
    let _ = std::fs::remove_dir_all(&base);
    report
}

/// With `chaos idle` running ([`start_idle`]): proves `chaos fail --op OP` (and `extra`) as
/// [`prove_op`] does, twice; the second run takes the programs the first left as a spare.
pub fn prove_op_from_spare(victim: &str, op: &str, extra: &[&str]) {
    let never_refused = |_: &Output, _: &str| false;
    let first = prove_op_run(victim, op, extra, never_refused).expect("not refused");
    assert!(first.get("spare_programs").is_none(), "{op}: {first}");
    let second = prove_op_run(victim, op, extra, never_refused).expect("not refused");
    assert_eq!(second["spare_programs"], true, "{op}: {second}");
    eprintln!("{op} via {} from a spare", second["faults"][0]["mechanism"]);
}

/// Whether `output` is chaos refusing `--backend kprobe-override` on a kernel that cannot
/// override a kprobed function's return, as the probe says: then it checks that the message
/// gives the probe's reason and that CHAOS_EXPECT does not require the rung here, and prints
/// the reason. `false` when chaos did not exit 2.
pub fn refused_for_lack_of_kprobe_override(output: &Output, what: &str) -> bool {
    if output.status.code() != Some(2) {
        return false;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let probe = Probe::run();
    let (offered, expected, _) = override_offered(&probe, "kprobe-override");
    assert!(
        !offered,
        "{what} refused although kprobe override works here: {stderr}"
    );
    assert!(
        !expected,
        "{what} must inject on this kernel (CHAOS_EXPECT): {stderr}"
    );
    let (_, detail) = probe.feature(features::KPROBE_OVERRIDE);
    assert!(
        stderr.contains(&detail),
        "{what}: chaos must give the probe's reason '{detail}': {stderr}"
    );
    eprintln!("{what} NOT INJECTED on this kernel, as the probe predicts (asserted): {detail}");
    true
}

/// Whether `rung` can fail functions of the error-injection list here, as the probe finds it
/// (the list and the rung's own feature), whether CHAOS_EXPECT says it must, and what the probe
/// says of both.
pub fn override_offered(probe: &Probe, rung: &str) -> (bool, bool, String) {
    let feature = if rung == "fmod_ret" {
        features::FMOD_RET
    } else {
        features::KPROBE_OVERRIDE
    };
    let (list, list_detail) = probe.feature(features::ERROR_INJECTION);
    let (mechanism, detail) = probe.feature(feature);
    let expected = expected(features::ERROR_INJECTION) && expected(feature);
    (
        list && mechanism,
        expected,
        format!("{list_detail}; {detail}"),
    )
}

/// What `--backend auto` picks for those faults here: fmod_ret first.
pub fn auto_override_rung(probe: &Probe) -> Option<&'static str> {
    OVERRIDE_RUNGS
        .into_iter()
        .find(|rung| override_offered(probe, rung).0)
}

/// What `chaos probe --json` found.
pub struct Probe(Value);

impl Probe {
    /// The kernel's features do not change while a test binary runs: probed once (a probe
    /// takes seconds in an emulated guest, and many tests ask).
    pub fn run() -> Self {
        static FOUND: OnceLock<Value> = OnceLock::new();
        Probe(
            FOUND
                .get_or_init(|| json_report(&chaos(&["probe", "--json"])))
                .clone(),
        )
    }

    pub fn findings(&self) -> &[Value] {
        self.0["findings"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The mechanism this kernel uses for operation `op`, or `None` if it has none.
    pub fn mechanism(&self, op: &str) -> Option<String> {
        let operations = self.0["operations"].as_array()?;
        let row = operations.iter().find(|row| row["op"] == op)?;
        row["mechanism"].as_str().map(str::to_owned)
    }

    /// `(supported, detail)` of `feature`.
    pub fn feature(&self, feature: &str) -> (bool, String) {
        let finding = self
            .findings()
            .iter()
            .find(|finding| finding["feature"] == feature)
            .unwrap_or_else(|| panic!("probe reports no feature {feature}: {}", self.0));
        (
            finding["supported"] == true,
            finding["detail"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

/// The `chaos probe` features that must work on this kernel: `CHAOS_EXPECT=bpf-lsm,trampoline,…`,
/// set by the VM runner for each kernel, so that a regression cannot pass as "unsupported".
pub fn expected_features() -> Vec<String> {
    std::env::var("CHAOS_EXPECT")
        .map(|list| {
            list.split(',')
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `feature` must work here (see [`expected_features`]).
pub fn expected(feature: &str) -> bool {
    expected_features().iter().any(|item| item == feature)
}

/// Names of the programs loaded in the kernel (`bpftool prog list`).
pub fn loaded_program_names() -> Vec<String> {
    let output = Command::new("bpftool")
        .args(["prog", "list", "--json"])
        .output()
        .expect("run bpftool (apt-get install bpftool)");
    assert!(
        output.status.success(),
        "bpftool prog list: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let programs: Value = serde_json::from_slice(&output.stdout).expect("bpftool JSON");
    programs
        .as_array()
        .map(|programs| {
            programs
                .iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `loaded` (a name as bpftool shows it: the full name when the program has BTF, else
/// the kernel's first 15 characters) is `hook`'s program.
fn is_program_of(loaded: &str, hook: Hook) -> bool {
    let name = hook.program();
    name == loaded || name[..name.len().min(15)] == *loaded
}

/// The programs of chaos loaded in the kernel now.
pub fn loaded_chaos_programs() -> Vec<String> {
    loaded_program_names()
        .into_iter()
        .filter(|name| hook::all().any(|hook| is_program_of(name, hook)))
        .collect()
}

/// How many programs of `hook` are loaded in the kernel now (one per run that attached it).
pub fn loaded_count(hook: Hook) -> usize {
    loaded_program_names()
        .iter()
        .filter(|name| is_program_of(name, hook))
        .count()
}

/// Whether a program of `hook` is loaded in the kernel now.
pub fn loaded(hook: Hook) -> bool {
    loaded_count(hook) > 0
}

/// The hooks of the mechanism this kernel uses for operation `op`, as `chaos probe` says
/// (`connect`: cgroup_connect4 and cgroup_connect6 where cgroup programs can set the errno).
pub fn hooks_in_use(op: &str) -> &'static [Hook] {
    let mechanism = Probe::run()
        .mechanism(op)
        .unwrap_or_else(|| panic!("no mechanism for {op} on this kernel"));
    let op = chaos_common::ops::OPS
        .iter()
        .find(|candidate| candidate.name == op)
        .unwrap_or_else(|| panic!("no operation {op} in the catalogue"));
    op.rungs
        .iter()
        .find(|rung| rung.mechanism.name() == mechanism)
        .expect("the probe names a rung of the catalogue")
        .hooks
}

/// The first of [`hooks_in_use`].
pub fn first_hook(op: &str) -> Hook {
    hooks_in_use(op)[0]
}

/// Waits (up to 60 s) until `ready` says the programs it looks for are loaded (see [`loaded`]),
/// then a little more for the links, which come right after the programs load.
pub fn wait_for_programs(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "chaos never loaded {what}");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(300));
}

/// Panics if any program of the tool is still in the kernel after a short grace period.
pub fn assert_no_chaos_programs() {
    // The kernel frees a program shortly after its last link goes (an RCU grace period, for a
    // tcx link released by removing its pin): allow it two seconds.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = loaded_chaos_programs();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs of chaos left in the kernel: {left:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A child cgroup v2 directory for one test, removed on drop (its processes are killed first).
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new(name: &str) -> Self {
        let mounts = fs::read_to_string("/proc/self/mounts").expect("read mounts");
        let mount = mounts
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
            })
            .expect("a cgroup2 mount");
        let path = mount.join(format!("chaos-test-{name}-{}", std::process::id()));
        fs::create_dir_all(&path).unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
        TestCgroup { path }
    }

    /// A cgroup below this one (dropped before it, if made after it).
    pub fn child(&self, name: &str) -> Self {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
        TestCgroup { path }
    }

    pub fn add(&self, pid: u32) {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|err| panic!("move {pid} into {}: {err}", self.path.display()));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::write(self.path.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn parse_line(line: &str) -> Call {
    let mut fields = line.split_whitespace();
    let at_ns = fields
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("timestamp");
    let errno = match fields.next() {
        Some("ok") => None,
        Some(number) => Some(number.parse().expect("errno number")),
        None => panic!("victim line without result: {line}"),
    };
    Call { at_ns, errno }
}

/// One call a victim made: when, and the errno it failed with (`None` for success).
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub at_ns: u64,
    pub errno: Option<i32>,
}

/// A victim process (the `victim` binary) making one call in a loop, its lines collected.
pub struct Victim {
    /// None for a victim started elsewhere (in a container), that reports over a socket.
    child: Option<Child>,
    pid: u32,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Victim {
    /// Starts `victim OP ARG` from the binary at `bin`, inside `cgroup`, and waits for its first
    /// call. A `write` victim reports over a UNIX datagram socket, since its stdout is a write.
    pub fn start(bin: &str, op: &str, arg: &str, cgroup: &TestCgroup) -> Self {
        let mut command = Command::new(bin);
        command.args([op, arg]);
        let victim = Victim::spawn(command, op == "write", Some(cgroup));
        victim.wait_for_calls(1);
        victim
    }

    /// Starts `command` (a victim, or something that starts one later) inside `cgroup`, if
    /// given, without waiting for a call; its stdout (or, with `report_socket`, a UNIX socket)
    /// carries the lines.
    pub fn spawn(mut command: Command, report_socket: bool, cgroup: Option<&TestCgroup>) -> Self {
        command.stdout(Stdio::piped());
        let calls = Arc::new(Mutex::new(Vec::new()));
        if report_socket {
            let path = report_to(&std::env::temp_dir(), &calls);
            command.env("VICTIM_REPORT_SOCKET", &path);
        }
        if let Some(cgroup) = cgroup {
            join_before_exec(&mut command, cgroup);
        }
        let mut child = command.spawn().expect("spawn victim");
        let stdout = child.stdout.take().expect("piped");
        if report_socket {
            drop(stdout);
        } else {
            let sink = Arc::clone(&calls);
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(parse_line(&line));
                }
            });
        }
        Victim {
            pid: child.id(),
            child: Some(child),
            calls,
        }
    }

    /// `victim connect` from the binary at `bin` to a live server of its own, in a loop (in
    /// `cgroup` if given): a bystander, or a target whose calls all succeed; returns once it
    /// made its first call.
    pub fn connecting(bin: &str, cgroup: Option<&TestCgroup>) -> Self {
        let address = tcp_server("127.0.0.1:0");
        let mut command = Command::new(bin);
        command.args(["connect", &address]);
        let victim = Victim::spawn(command, false, cgroup);
        victim.wait_for_calls(1);
        victim
    }

    /// A victim started elsewhere (in a container) that reports over a UNIX datagram socket in
    /// `dir`: the socket's path, for its VICTIM_REPORT_SOCKET, and the victim collecting its
    /// lines. [`Victim::set_pid`] names it once it runs.
    pub fn reporting_in(dir: &std::path::Path) -> (Self, PathBuf) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let path = report_to(dir, &calls);
        let victim = Victim {
            child: None,
            pid: 0,
            calls,
        };
        (victim, path)
    }

    pub fn set_pid(&mut self, pid: u32) {
        self.pid = pid;
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("a victim started elsewhere is not a child of the test")
    }

    /// Waits (up to 60 s) for the victim to die; returns the signal that killed it, if one did.
    pub fn wait_for_death(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt as _;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                return status.signal();
            }
            assert!(
                Instant::now() < deadline,
                "victim {} is still alive after 60 s",
                self.pid()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the victim is still running.
    pub fn alive(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_none()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls that began after `ns`: those whose previous call had returned by then. A
    /// call's time is read when it returns, so one the kernel failed just before `ns` can carry
    /// a later time when the victim was preempted in between (seen in loaded emulated guests).
    pub fn calls_begun_after(&self, ns: u64) -> Vec<Call> {
        let calls = self.calls();
        calls
            .windows(2)
            .filter(|pair| pair[0].at_ns > ns)
            .map(|pair| pair[1])
            .collect()
    }

    /// Waits (up to 30 s, for slow emulated kernels) until at least `n` calls were made.
    pub fn wait_for_calls(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.calls.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "victim {} made fewer than {n} calls in 30 s",
                self.pid()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (up to 60 s) until the victim has seen a failure: the fault is live.
    pub fn wait_for_failure(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.calls().iter().any(|call| call.errno.is_some()) {
            assert!(
                Instant::now() < deadline,
                "the fault never became live for victim {}",
                self.pid()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until a call that began after `after_ns` has returned, so the next check sees a
    /// fresh result.
    pub fn wait_for_call_after(&self, after_ns: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.calls_begun_after(after_ns).is_empty() {
            assert!(
                Instant::now() < deadline,
                "victim {} made no call in 30 s",
                self.pid()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Binds a UNIX datagram socket in `dir` whose lines go to `calls`: its path.
fn report_to(dir: &std::path::Path, calls: &Arc<Mutex<Vec<Call>>>) -> PathBuf {
    let path = dir.join(format!(
        "chaos-victim-{}-{}.sock",
        std::process::id(),
        monotonic_ns()
    ));
    let socket = UnixDatagram::bind(&path).expect("bind the report socket");
    let sink = Arc::clone(calls);
    let bound = path.clone();
    thread::spawn(move || {
        let mut datagram = [0u8; 256];
        while let Ok(n) = socket.recv(&mut datagram) {
            sink.lock()
                .unwrap()
                .push(parse_line(&String::from_utf8_lossy(&datagram[..n])));
        }
        let _ = fs::remove_file(bound);
    });
    path
}

/// Checks that a bystander made calls to compare, and that none of them failed.
pub fn assert_bystander_untouched(bystander: &Victim) {
    let calls = bystander.calls();
    assert!(
        calls.len() > 5,
        "the bystander made too few calls to compare"
    );
    let hit: Vec<_> = calls.iter().filter_map(|c| c.errno).collect();
    assert!(hit.is_empty(), "the bystander was hit: {hit:?}");
}

/// Makes `command` join `cgroup` before exec: cgroup socket hooks go by the cgroup a socket was
/// made in, so the victim must be inside before its first call.
pub fn join_before_exec(command: &mut Command, cgroup: &TestCgroup) {
    let procs = std::ffi::CString::new(
        cgroup
            .path
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .expect("no NUL in the cgroup path");
    // SAFETY: between fork and exec, only async-signal-safe calls on memory made before fork.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            let ok = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Checks everything a scoped, timed errno fault promises, from what the processes saw:
/// each target failed with `errno` only inside `[start_ns, end_ns]`, every one of its calls
/// between its first and last failure failed, it recovered after the end, the failures of all
/// targets add up to the reported `injected`, and the bystander never failed while they did.
pub fn assert_scoped_fault(
    targets: &[&Victim],
    bystander: &Victim,
    errno: i32,
    (start_ns, end_ns): (u64, u64),
    fault_report: &Value,
) {
    let mut injected_seen = 0;
    let (mut first, mut last) = (u64::MAX, 0);
    for target in targets {
        let calls = target.calls();
        let failures: Vec<&Call> = calls.iter().filter(|call| call.errno.is_some()).collect();
        assert!(
            !failures.is_empty(),
            "target {} never failed: {fault_report}",
            target.pid()
        );
        for failure in &failures {
            assert_eq!(
                failure.errno,
                Some(errno),
                "the target failed with the wrong errno"
            );
            assert!(
                (start_ns..=end_ns).contains(&failure.at_ns),
                "a failure at {} lies outside the run [{start_ns}, {end_ns}]",
                failure.at_ns
            );
        }
        let (target_first, target_last) = (failures[0].at_ns, failures[failures.len() - 1].at_ns);
        let passed_inside = calls
            .iter()
            .filter(|c| c.errno.is_none() && (target_first..=target_last).contains(&c.at_ns))
            .count();
        assert_eq!(
            passed_inside, 0,
            "calls of the target passed while the fault was live"
        );
        assert!(
            calls.iter().any(|c| c.at_ns > end_ns && c.errno.is_none()),
            "the target did not recover after the run"
        );
        injected_seen += failures.len() as u64;
        first = first.min(target_first);
        last = last.max(target_last);
    }
    assert_eq!(
        fault_report["injected"].as_u64(),
        Some(injected_seen),
        "reported injected != failures seen"
    );
    assert_eq!(
        fault_report["matched"], fault_report["injected"],
        "matched != injected without --dry-run"
    );

    let bystander_calls = bystander.calls();
    let during = bystander_calls
        .iter()
        .filter(|c| (first..=last).contains(&c.at_ns))
        .count();
    assert!(
        during > 0,
        "the bystander made no call while the fault was live: nothing was compared"
    );
    let hit: Vec<&Call> = bystander_calls
        .iter()
        .filter(|c| c.errno.is_some())
        .collect();
    assert!(hit.is_empty(), "the untargeted process was hit: {hit:?}");
}

/// Starts `chaos net ACTION ARGS --for 10m --json` and waits until its programs are attached.
pub fn start_net_fault(action: &str, args: &[&str]) -> Chaos {
    let mut full = vec!["net", action];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--for", "10m", "--json"]);
    Chaos::spawn_live(&mut chaos_command(&full))
}

/// Starts `chaos idle`, the keeper of spare programs, and waits for its directory of spares.
pub fn start_idle() -> (Chaos, std::path::PathBuf) {
    let idle = Chaos::spawn(&mut chaos_command(&["idle"]));
    // spare-PID-START: its PID and start time.
    let prefix = format!("spare-{}-", idle.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let keeper = std::fs::read_dir("/sys/fs/bpf/chaos")
            .into_iter()
            .flatten()
            .flatten()
            .find(|entry| entry.file_name().to_string_lossy().starts_with(&prefix));
        if let Some(keeper) = keeper {
            return (idle, keeper.path());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chaos idle never made /sys/fs/bpf/chaos/{prefix}START"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Ends `chaos idle` with SIGTERM, as the DaemonSet's pod is stopped: its spares go with it.
pub fn stop_idle(mut idle: Chaos, keeper: &std::path::Path) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(idle.id() as i32, libc::SIGTERM) };
    let status = idle.wait().expect("wait for chaos idle");
    assert!(status.success(), "chaos idle on SIGTERM: {status:?}");
    assert!(!keeper.exists(), "chaos idle left {}", keeper.display());
}

/// Whether the programs of operation `op` can be kept as spares on this kernel: not where
/// they load as fmod_ret, past aya, again for each function as they attach.
pub fn spareable(op: &str) -> bool {
    !hooks_in_use(op)
        .iter()
        .any(|hook| matches!(hook, Hook::FmodRet { .. }))
}

/// How many spares (or spares being taken or made) `keeper` holds.
pub fn spares_in(keeper: &std::path::Path) -> usize {
    std::fs::read_dir(keeper).map_or(0, |entries| entries.count())
}

/// Ends a run chaos holds (a fault, a pause) with SIGINT; returns its report.
pub fn stop_chaos(chaos: Chaos) -> Value {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(chaos.id() as i32, libc::SIGINT) };
    let output = chaos.wait_with_output().expect("chaos");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_report(&output)
}

/// How this kernel hangs the TC programs, as the report names it: tcx links (6.6 and later,
/// when CHAOS_EXPECT says so) or a clsact qdisc's filters.
pub fn tc_hook() -> &'static str {
    if expected(features::TCX) {
        "tcx"
    } else {
        "clsact"
    }
}

/// Asserts that `count` of `n` packets is within 4 sigma of `expected`, for an action taken with
/// probability `p` on each; prints the comparison either way.
pub fn assert_within_4_sigma(count: u64, expected: f64, n: u64, p: f64, what: &str) {
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    eprintln!(
        "{what}: {count} of {n}, expected {expected:.0} +- {:.0} (4 sigma)",
        4.0 * sigma
    );
    assert!(
        (count as f64 - expected).abs() <= 4.0 * sigma,
        "{what}: {count}, expected {expected:.0} +- {:.0}",
        4.0 * sigma
    );
}

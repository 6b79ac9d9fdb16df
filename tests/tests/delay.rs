//! `chaos delay`: a target's returns from chosen syscalls come later (fexit programs on the
//! syscalls' functions, or their exit tracepoints, stop the process; chaos resumes it), a
//! bystander's do not, and nothing stays stopped when the run ends, however it ends. Where
//! trampolines load, the default is fexit and the tracepoints are tested with `--backend
//! tracepoint` too; where neither can run chaos must refuse and name CONFIG_FTRACE_SYSCALLS.

use std::time::{Duration, Instant};

use chaos_common::features;
use chaos_tests::*;
use serde_json::Value;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

/// The mechanism `--backend auto` takes here: fexit where trampolines load, else tracepoints.
fn auto_mechanism() -> &'static str {
    if Probe::run().feature(features::TRAMPOLINE).0 {
        "fexit"
    } else {
        "tracepoint"
    }
}

/// Whether this kernel can stop a process from fexit or a syscall tracepoint; if not, asserts
/// that chaos refuses `args` as the probe predicts, with nothing attached.
fn supported_or_refused(args: &[&str]) -> bool {
    let (supported, detail) = syscall_programs_supported();
    if supported {
        return true;
    }
    assert!(
        syscall_programs_unexpected(),
        "chaos delay must work on this kernel: {detail}"
    );
    let output = chaos(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("CONFIG_FTRACE_SYSCALLS"),
        "the refusal must name the kernel option: {stderr}"
    );
    eprintln!("NOT INJECTED on this kernel, as the probe predicts (asserted): {detail}");
    assert_no_chaos_programs();
    false
}

/// The gaps between a victim's consecutive returns, in ns, that end between `from` and `to`:
/// a target's first delayed return may follow a call made before the programs were live.
fn gaps(victim: &Victim, from: u64, to: u64) -> Vec<u64> {
    gaps_where(victim, |_, end| end > from && end <= to)
}

/// The gaps that lie wholly between `from` and `to`: a bystander's, whose gap across the
/// programs' loading may be long for reasons of the emulated guest's own.
fn gaps_within(victim: &Victim, from: u64, to: u64) -> Vec<u64> {
    gaps_where(victim, |begin, end| begin >= from && end <= to)
}

fn gaps_where(victim: &Victim, keep: impl Fn(u64, u64) -> bool) -> Vec<u64> {
    let times: Vec<u64> = victim.calls().iter().map(|call| call.at_ns).collect();
    times
        .windows(2)
        .filter(|pair| keep(pair[0], pair[1]))
        .map(|pair| pair[1] - pair[0])
        .collect()
}

/// The state letter of process `pid` (R, S, T…), `None` once it is gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Waits (up to `limit`) until process `pid`'s state is (`stopped`) or is not T.
fn wait_for_stopped(pid: u32, stopped: bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if (state(pid) == Some('T')) == stopped {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Runs `chaos ARGS` to its end: its output, and the monotonic times at which its programs were
/// all live and at which it had exited.
fn run_live(args: &[&str]) -> (std::process::Output, u64, u64) {
    let chaos = Chaos::spawn_live(&mut chaos_command(args));
    let live = monotonic_ns();
    let output = chaos.wait_with_output().expect("chaos");
    (output, live, monotonic_ns())
}

fn stopped_of(fault: &Value) -> (u64, u64, u64) {
    let stopped = &fault["stopped"];
    (
        stopped["count"].as_u64().expect("stopped.count"),
        stopped["p50_us"].as_u64().expect("stopped.p50_us"),
        stopped["cut_short"].as_u64().expect("stopped.cut_short"),
    )
}

#[test]
fn syscall_delay_makes_a_targets_returns_late_and_a_bystanders_not() {
    let cgroup = TestCgroup::new("delay");
    let target = Victim::start(VICTIM, "statfs", "/tmp", &cgroup);
    let bystander = Victim::start(VICTIM, "statfs", "/tmp", &cgroup);
    let pid = target.pid().to_string();
    let delay_ms = 400;
    let args = [
        "delay",
        "--pid",
        &pid,
        "--syscall",
        "statfs",
        "--delay",
        "400ms",
        "--for",
        "4s",
        "--json",
    ];
    if !supported_or_refused(&args) {
        return;
    }
    // The window opens once every program is live: loading them can starve the victims of an
    // emulated guest's only host thread for longer than the delay.
    let (output, started, ended) = run_live(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report = json_report(&output);
    let fault = &report["faults"][0];
    assert_eq!(fault["kind"], "delay", "{report}");
    assert_eq!(fault["op"], "statfs");
    assert_eq!(fault["delay"], "400ms");
    assert_eq!(fault["mechanism"], auto_mechanism(), "{fault}");
    let injected = fault["injected"].as_u64().unwrap();
    let (count, p50_us, _) = stopped_of(fault);
    assert!(count >= 3, "a few stops ran their delay in 4 s: {fault}");
    assert!(injected >= count, "{fault}");
    assert!(
        p50_us >= delay_ms * 1000,
        "a stop lasts at least the delay: {fault}"
    );

    // The victim sees it: one gap of at least the delay between returns per stop chaos timed.
    let long = |victim: &Victim| {
        gaps(victim, started, ended)
            .into_iter()
            .filter(|&gap| gap >= delay_ms * 1_000_000)
            .count() as u64
    };
    assert!(
        long(&target) >= count,
        "the target's returns were {count} times {delay_ms} ms late, as chaos timed: {:?}",
        gaps(&target, started, ended)
    );
    let bystander_long = gaps_within(&bystander, started, ended)
        .into_iter()
        .filter(|&gap| gap >= delay_ms * 1_000_000)
        .count();
    assert_eq!(
        bystander_long,
        0,
        "the bystander was delayed: {:?}",
        gaps_within(&bystander, started, ended)
    );
    assert_bystander_untouched(&bystander);

    // Nothing stays stopped, and the target's calls are prompt again.
    assert_ne!(state(target.pid()), Some('T'), "the target is left stopped");
    target.wait_for_call_after(ended);
    assert_no_chaos_programs();
}

/// `--op stat` delays every stat syscall a 64-bit program makes: stat(), lstat() and fstat()
/// (which enter the kernel's newstat, newlstat and newfstat), newfstatat() and statx(). The
/// victim makes each in turn, so a syscall left out would return at the victim's own pace.
#[test]
fn op_stat_delays_every_stat_syscall_and_no_bystanders() {
    let cgroup = TestCgroup::new("delay-stat");
    let dir = tempdir("delay-stat");
    let victim =
        |name: &str| Victim::start(VICTIM, "stat", dir.join(name).to_str().unwrap(), &cgroup);
    let (target, bystander) = (victim("target"), victim("bystander"));
    let pid = target.pid().to_string();
    let delay_ns = 100_000_000;
    let args = [
        "delay", "--pid", &pid, "--op", "stat", "--delay", "100ms", "--for", "3s", "--json",
    ];
    if !supported_or_refused(&args) {
        return;
    }
    let (output, started, ended) = run_live(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let fault = &json_report(&output)["faults"][0];
    assert_eq!(fault["op"], "stat", "{fault}");
    assert_eq!(fault["mechanism"], auto_mechanism(), "{fault}");
    // Two seconds well inside the fault's life: after its in-kernel deadline, calls are
    // prompt again before chaos has exited.
    let window_end = ended.min(started + 2_000_000_000);
    let target_gaps = gaps_within(&target, started, window_end);
    assert!(target_gaps.len() >= 5, "too few returns: {target_gaps:?}");
    assert!(
        target_gaps.iter().all(|&gap| gap >= delay_ns),
        "a stat syscall returned on time: {target_gaps:?}"
    );
    let bystander_gaps = gaps_within(&bystander, started, ended);
    assert!(
        bystander_gaps.iter().all(|&gap| gap < delay_ns),
        "the bystander was delayed: {bystander_gaps:?}"
    );
    assert_bystander_untouched(&bystander);
    target.wait_for_call_after(ended);
    assert_no_chaos_programs();
}

#[test]
fn syscall_delay_of_a_cgroup_target_counts_and_a_dry_run_stops_nothing() {
    let cgroup = TestCgroup::new("delay-cgroup");
    let other = TestCgroup::new("delay-other");
    let target = Victim::start(VICTIM, "statfs", "/tmp", &cgroup);
    let bystander = Victim::start(VICTIM, "statfs", "/tmp", &other);
    let path = cgroup.path.to_str().unwrap().to_owned();
    let args = [
        "delay",
        "--cgroup",
        &path,
        "--op",
        "stat",
        "--syscall",
        "statfs",
        "--delay",
        "100ms",
        "--count",
        "2",
        "--for",
        "3s",
        "--json",
    ];
    // --op and --syscall together are refused; the real run names the syscall alone.
    let both = chaos(&args);
    assert_eq!(
        both.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    let mut args: Vec<&str> = args
        .iter()
        .copied()
        .filter(|&a| a != "--op" && a != "stat")
        .collect();
    if !supported_or_refused(&args) {
        return;
    }
    // The tracepoints wherever they exist: test 1 takes fexit where trampolines load.
    let mechanism = if Probe::run().feature(features::TRACEPOINT_SIGNAL).0 {
        "tracepoint"
    } else {
        "fexit"
    };
    args.extend(["--backend", mechanism]);
    // A dry run asks for a whole second, which no natural hiccup of the victims reaches.
    let mut dry: Vec<&str> = args
        .iter()
        .map(|&a| if a == "100ms" { "1s" } else { a })
        .collect();
    dry.retain(|&a| a != "--count" && a != "2");
    dry.push("--dry-run");
    let (output, started, ended) = run_live(&dry);
    assert!(output.status.success());
    let fault = &json_report(&output)["faults"][0];
    assert_eq!(fault["mechanism"], mechanism, "{fault}");
    assert!(fault["matched"].as_u64().unwrap() > 5, "{fault}");
    assert_eq!(fault["injected"], 0, "{fault}");
    let late = |victim: &Victim| {
        gaps_within(victim, started, ended)
            .into_iter()
            .filter(|&gap| gap >= 1_000_000_000)
            .count()
    };
    assert_eq!(late(&target), 0, "a dry run delayed the target");
    assert_bystander_untouched(&bystander);
    assert_eq!(
        late(&bystander),
        0,
        "the bystander in another cgroup was delayed"
    );

    if !counting_supported_or_refused(&args) {
        return;
    }
    let output = chaos(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fault = &json_report(&output)["faults"][0];
    assert_eq!(fault["injected"], 2, "--count 2: {fault}");
    assert!(fault["matched"].as_u64().unwrap() > 2, "{fault}");
    assert_eq!(stopped_of(fault).0, 2, "{fault}");

    assert_no_chaos_programs();
}

#[test]
fn syscall_delay_leaves_nothing_stopped_when_chaos_is_killed() {
    let cgroup = TestCgroup::new("delay-kill");
    let target = Victim::start(VICTIM, "statfs", "/tmp", &cgroup);
    let pid = target.pid().to_string();
    let args = [
        "delay",
        "--pid",
        &pid,
        "--syscall",
        "statfs",
        "--delay",
        "1h",
        "--for",
        "10m",
    ];
    if !supported_or_refused(&args) {
        return;
    }
    // Ended by SIGTERM, then by SIGKILL: the target must run again long before its hour.
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let chaos = spawn_chaos(&args);
        assert!(
            wait_for_stopped(target.pid(), true, Duration::from_secs(60)),
            "the target was never stopped"
        );
        // SAFETY: kill(2) to our own child.
        unsafe { libc::kill(chaos.id() as i32, signal) };
        let output = chaos.wait_with_output().expect("chaos");
        if signal == libc::SIGTERM {
            assert!(output.status.success(), "{output:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("1 cut short by the end"), "{stderr}");
        }
        assert!(
            wait_for_stopped(target.pid(), false, Duration::from_secs(30)),
            "the target is still stopped after chaos got signal {signal}"
        );
        let resumed = monotonic_ns();
        target.wait_for_call_after(resumed);
    }
    // The guards are gone too, once they have resumed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while guards() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(guards(), 0, "a delay guard outlived its run");
    assert_no_chaos_programs();
}

/// Running `chaos pause-guard --delayed-fd` processes.
fn guards() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains("pause-guard\0--delayed-fd"))
        .count()
}

#[test]
fn syscall_delay_bad_input_exits_2_and_attaches_nothing() {
    let sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pid = sleeper.id().to_string();
    let base = ["delay", "--pid", &pid];
    for (extra, named) in [
        (vec!["--syscall", "statfs", "--delay", "0s"], "0s"),
        (vec!["--syscall", "statfs", "--delay", "2h"], "2h"),
        (
            vec!["--syscall", "statfs", "--delay", "10ms", "--jitter", "20ms"],
            "20ms",
        ),
        (
            vec!["--syscall", "statfs", "--delay", "10ms", "--detach"],
            "--detach",
        ),
        (vec!["--syscall", "../x", "--delay", "10ms"], "../x"),
        (vec!["--op", "frobnicate", "--delay", "10ms"], "frobnicate"),
        (vec!["--delay", "10ms"], "--syscall"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra).collect();
        assert_refused(&args, &[named]);
    }
    let probe = Probe::run();
    if !probe.feature(features::TRAMPOLINE).0 {
        assert_refused(
            &[
                "delay",
                "--pid",
                &pid,
                "--syscall",
                "statfs",
                "--delay",
                "10ms",
                "--backend",
                "fexit",
            ],
            &["--backend fexit", "trampoline"],
        );
    } else {
        assert_refused(
            &[
                "delay",
                "--pid",
                &pid,
                "--syscall",
                "nosuchcall",
                "--delay",
                "10ms",
            ],
            &["nosuchcall", "__x64_sys_nosuchcall"],
        );
    }
    if probe.feature(features::TRACEPOINT_SIGNAL).0 {
        assert_refused(
            &[
                "delay",
                "--pid",
                &pid,
                "--syscall",
                "nosuchcall",
                "--delay",
                "10ms",
                "--backend",
                "tracepoint",
            ],
            &["nosuchcall", "sys_enter_"],
        );
    }
    drop(sleeper);
    assert_no_chaos_programs();
}

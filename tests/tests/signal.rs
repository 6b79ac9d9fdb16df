//! `chaos signal`: a target gets a signal when it enters one syscall (an fentry program on its
//! function where trampolines load, else its sys_enter tracepoint; `--backend tracepoint` is
//! tested where both exist). On a kernel with neither, chaos must refuse and name
//! CONFIG_FTRACE_SYSCALLS.

use chaos_common::features;
use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

#[test]
fn sigkill_at_the_third_fsync_of_the_target_only() {
    let base = std::env::temp_dir().join(format!("chaos-signal-{}", std::process::id()));
    let dir = |who: &str| base.join(who).to_str().unwrap().to_owned();
    let cgroup = TestCgroup::new("signal");
    let mut target = Victim::start(VICTIM, "fsync", &dir("target"), &cgroup);
    let mut bystander = Victim::start(VICTIM, "fsync", &dir("bystander"), &cgroup);
    let pid = target.pid().to_string();
    let args = [
        "signal",
        "--pid",
        &pid,
        "--syscall",
        "fsync",
        "--signal",
        "KILL",
        "--after",
        "2",
        "--count",
        "1",
        "--for",
        "5m",
        "--json",
    ];
    let (supported, detail) = syscall_programs_supported();
    if supported && !counting_supported_or_refused(&args) {
        return;
    }
    let output = chaos(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);

    if !supported {
        assert!(
            syscall_programs_unexpected(),
            "chaos signal must work on this kernel: {detail} / {stderr}"
        );
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("CONFIG_FTRACE_SYSCALLS"),
            "the refusal must name the kernel option: {stderr}"
        );
        assert!(target.alive(), "nothing may be attached");
        eprintln!("NOT INJECTED on this kernel, as the probe predicts (asserted): {detail}");
        assert_no_chaos_programs();
        return;
    }

    assert!(output.status.success(), "{stderr}");
    let report = json_report(&output);
    assert_eq!(report["ended_by"], "target-exited", "{report}");
    let fault = &report["faults"][0];
    assert_eq!(fault["kind"], "signal");
    assert_eq!(fault["signal"], "SIGKILL");
    assert_eq!(fault["mechanism"], auto_mechanism(), "{fault}");
    assert_eq!(
        fault["matched"], 3,
        "killed at the third fsync after the fault started: {fault}"
    );
    assert_eq!(fault["injected"], 1);
    assert_eq!(target.wait_for_death(), Some(libc::SIGKILL));
    assert!(target.calls().iter().all(|call| call.errno.is_none()));
    assert!(bystander.alive(), "the bystander was signalled");
    let before = bystander.calls().len();
    bystander.wait_for_calls(before + 3);
    assert_no_chaos_programs();
    drop((target, bystander));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn unknown_syscalls_and_signals_exit_2() {
    let me = std::process::id().to_string();
    let sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pid = sleeper.id().to_string();
    for (args, named) in [
        (
            vec![
                "signal",
                "--pid",
                &pid,
                "--syscall",
                "fsync",
                "--signal",
                "FOO",
            ],
            "FOO",
        ),
        (
            vec![
                "signal",
                "--pid",
                &pid,
                "--syscall",
                "../etc",
                "--signal",
                "KILL",
            ],
            "../etc",
        ),
        (
            vec![
                "signal",
                "--pid",
                &me,
                "--syscall",
                "fsync",
                "--signal",
                "KILL",
            ],
            "refusing",
        ),
    ] {
        assert_refused(&args, &[named]);
    }
    if syscall_programs_supported().0 {
        let output = chaos(&[
            "signal",
            "--pid",
            &pid,
            "--syscall",
            "no_such_call",
            "--signal",
            "KILL",
            "--for",
            "1s",
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("no_such_call") && stderr.contains("unknown syscall"),
            "{stderr}"
        );
    }
    let mut sleeper = sleeper;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_no_chaos_programs();
}

/// A detached signal run: chaos returns at once and the tracepoint program, pinned, kills the
/// target at its next fsync with no chaos process alive; the bystander lives; `chaos stop`
/// removes everything. Where bpffs cannot pin perf-event links (before 5.15), --pid-tree's
/// fork and exit tracepoints are refused with --detach whichever program signals.
#[test]
fn a_detached_signal_run_kills_without_a_loader() {
    if !signals_supported() {
        return;
    }
    let base = std::env::temp_dir().join(format!("chaos-signal-detached-{}", std::process::id()));
    let dir = |who: &str| base.join(who).to_str().unwrap().to_owned();
    let cgroup = TestCgroup::new("signal-detached");
    let mut target = Victim::start(VICTIM, "fsync", &dir("target"), &cgroup);
    let mut bystander = Victim::start(VICTIM, "fsync", &dir("bystander"), &cgroup);
    let pid = target.pid().to_string();
    let args = [
        "signal",
        "--pid",
        &pid,
        "--syscall",
        "fsync",
        "--signal",
        "KILL",
        "--for",
        "5m",
    ];
    // Only a tracepoint needs a perf link to outlive chaos; fentry's link pins anywhere.
    let (links, detail) = Probe::run().feature(features::PERF_LINK);
    if !links {
        // --pid-tree follows forks and exits through tracepoints, whichever program signals.
        let mut tree = args.to_vec();
        tree[1] = "--pid-tree";
        tree.push("--detach");
        let fentry = auto_mechanism() == "fentry";
        let named: &[&str] = if fentry {
            &["detached", "--pid-tree", "5.15"]
        } else {
            &["detached", "5.15"]
        };
        assert_refused(&tree, named);
        assert!(target.alive(), "nothing may be attached");
    }
    if !links && auto_mechanism() == "tracepoint" {
        assert!(!expected(features::PERF_LINK), "{detail}");
        let mut detached = args.to_vec();
        detached.push("--detach");
        assert_refused(&detached, &["detached", "5.15"]);
        assert!(target.alive(), "nothing may be attached");
        eprintln!("NOT INJECTED detached on this kernel (the refusal is asserted): {detail}");
        return;
    }
    let run = start_detached(&args);
    let id = run.id.clone();
    assert_eq!(target.wait_for_death(), Some(libc::SIGKILL));
    let runs = json_report(&chaos(&["list", "--json"]));
    assert_eq!(runs[0]["id"], id.as_str(), "{runs}");
    assert_eq!(runs[0]["injected"], 1, "{runs}");
    assert!(chaos(&["stop", &id]).status.success());
    assert!(bystander.alive(), "the bystander was killed");
    assert_no_chaos_programs();
    let _ = std::fs::remove_dir_all(&base);
}

/// SIGKILL of the loader in the middle of a signal run: the tracepoint link goes with it, so the
/// target, which the fault would have killed at its 21st fsync, lives on past that.
#[test]
fn sigkill_of_the_loader_ends_a_signal_fault() {
    if !signals_supported() {
        return;
    }
    let base = std::env::temp_dir().join(format!("chaos-signal-kill-{}", std::process::id()));
    let cgroup = TestCgroup::new("signal-kill");
    let mut target = Victim::start(VICTIM, "fsync", base.to_str().unwrap(), &cgroup);
    let pid = target.pid().to_string();
    // The tracepoint wherever it exists: the first test takes fentry where trampolines load.
    let backend = if Probe::run().feature(features::TRACEPOINT_SIGNAL).0 {
        "tracepoint"
    } else {
        "fentry"
    };
    let args = [
        "signal",
        "--pid",
        &pid,
        "--syscall",
        "fsync",
        "--signal",
        "KILL",
        "--after",
        "20",
        "--for",
        "10m",
        "--backend",
        backend,
    ];
    if !counting_supported_or_refused(&args) {
        return;
    }
    let mut chaos = spawn_chaos(&args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let program = if backend == "tracepoint" {
        chaos_common::hook::SIGNAL
    } else {
        chaos_common::hook::SIGNAL_FENTRY
    };
    while !loaded(program) {
        assert!(std::time::Instant::now() < deadline, "chaos never attached");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let attached_calls = target.calls().len();
    chaos.kill().expect("SIGKILL chaos");
    chaos.wait().expect("wait chaos");
    // Well past the 20 fsyncs the fault let through.
    target.wait_for_calls(attached_calls + 40);
    assert!(
        target.alive(),
        "the target was killed after the loader died"
    );
    assert_no_chaos_programs();
    let _ = std::fs::remove_dir_all(&base);
}

/// `--syscall stat` names the stat() 64-bit programs make, which enters the kernel's newstat
/// (fentry on `__x64_sys_newstat`, or `sys_enter_newstat`): the kernel's own `stat` serves an
/// older ABI, and a program there would never fire.
#[test]
fn sigkill_at_stat_names_the_call_programs_make() {
    if !signals_supported() {
        return;
    }
    let cgroup = TestCgroup::new("signal-stat");
    let dir = tempdir("signal-stat");
    let victim =
        |name: &str| Victim::start(VICTIM, "stat", dir.join(name).to_str().unwrap(), &cgroup);
    let (mut target, mut bystander) = (victim("target"), victim("bystander"));
    let pid = target.pid().to_string();
    let args = [
        "signal",
        "--pid",
        &pid,
        "--syscall",
        "stat",
        "--signal",
        "KILL",
        "--for",
        "1m",
        "--json",
    ];
    // No --count: SIGKILL ends the target at its first stat, and --count needs BPF atomics
    // (5.12), which debian-5.10 lacks.
    let output = chaos(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report = json_report(&output);
    assert_eq!(report["ended_by"], "target-exited", "{report}");
    assert_eq!(report["faults"][0]["injected"], 1, "{report}");
    assert_eq!(target.wait_for_death(), Some(libc::SIGKILL));
    assert!(bystander.alive(), "the bystander was signalled");
    let before = bystander.calls().len();
    bystander.wait_for_calls(before + 3);
    assert_no_chaos_programs();
}

/// The mechanism `--backend auto` takes here: fentry where trampolines load.
fn auto_mechanism() -> &'static str {
    if Probe::run().feature(features::TRAMPOLINE).0 {
        "fentry"
    } else {
        "tracepoint"
    }
}

/// Whether this kernel can send signals at a syscall; when it cannot (and need not, per
/// CHAOS_EXPECT), says so. The first test asserts the exact refusal.
fn signals_supported() -> bool {
    let (supported, detail) = syscall_programs_supported();
    if !supported {
        assert!(syscall_programs_unexpected(), "{detail}");
        eprintln!(
            "NOT INJECTED on this kernel (the refusal is asserted by the first test): {detail}"
        );
    }
    supported
}

/// A 32-bit syscall is not the 64-bit syscall of the same number: close(-1) through `int $0x80`
/// is i386's syscall 6, x86_64's lstat. The kernel's syscall tracepoints skip 32-bit syscalls
/// (their numbers are another table's) and fentry hooks `__x64_sys_newlstat`, which they never
/// enter, so `--syscall lstat` leaves them alone while it kills a process's 64-bit lstat().
#[cfg(target_arch = "x86_64")]
#[test]
fn a_32bit_syscall_is_not_the_64bit_syscall_of_its_number() {
    if !signals_supported() {
        return;
    }
    let cgroup = TestCgroup::new("signal-compat");
    let dir = tempdir("signal-compat");
    let victim =
        |op: &str, name: &str| Victim::start(VICTIM, op, dir.join(name).to_str().unwrap(), &cgroup);
    let mut compat = victim("compat-close", "compat");
    let at_lstat = |target: &Victim, window: &str| {
        let pid = target.pid().to_string();
        let args = [
            "signal",
            "--pid",
            &pid,
            "--syscall",
            "lstat",
            "--signal",
            "KILL",
            "--for",
            window,
            "--json",
        ];
        let output = chaos(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        json_report(&output)
    };

    let before = compat.calls().len();
    let report = at_lstat(&compat, "1500ms");
    assert_eq!(report["ended_by"], "deadline", "{report}");
    assert_eq!(report["faults"][0]["matched"], 0, "{report}");
    assert!(compat.alive(), "a 32-bit close() was taken for lstat()");
    let calls = compat.calls();
    assert!(
        calls.len() > before + 10,
        "the 32-bit victim made no calls while the fault was live ({before} → {})",
        calls.len()
    );
    assert!(
        calls[before..]
            .iter()
            .all(|call| call.errno == Some(libc::EBADF)),
        "the victim's calls were not the 32-bit close(-1)"
    );

    // The same fault on a 64-bit lstat() (the "stat" victim calls it among the stat family).
    let mut native = victim("stat", "native");
    let report = at_lstat(&native, "1m");
    assert_eq!(report["ended_by"], "target-exited", "{report}");
    assert_eq!(native.wait_for_death(), Some(libc::SIGKILL));
    assert!(compat.alive(), "the 32-bit victim was signalled");
    assert_no_chaos_programs();
}

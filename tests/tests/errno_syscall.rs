//! `chaos fail --syscall NAME` and `--kernel-fn NAME`: the function's return overridden, by an
//! fmod_ret program where trampolines load, else by a kprobe with bpf_override_return. Both
//! need the kernel's error-injection list (the faultinj guest has it and both rungs; each rung
//! is run there by `--backend`); elsewhere chaos must refuse, name the option, and point at the
//! `--op` that covers the syscall.

use std::{thread, time::Duration};

use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

#[test]
fn fsync_fails_only_for_the_target_and_only_during_the_run() {
    let probe = Probe::run();
    for backend in ["auto", OVERRIDE_RUNGS[0], OVERRIDE_RUNGS[1]] {
        fsync_fails_through(&probe, backend);
    }
}

/// A target and a bystander calling fsync() in a loop, each on a file of its own under the
/// returned directory, in a test cgroup tagged `tag`.
fn fsync_victims(tag: &str) -> (std::path::PathBuf, TestCgroup, Victim, Victim) {
    let base = std::env::temp_dir().join(format!("chaos-{tag}-{}", std::process::id()));
    let dir = |who: &str| base.join(who).to_str().unwrap().to_owned();
    let cgroup = TestCgroup::new(tag);
    let target = Victim::start(VICTIM, "fsync", &dir("target"), &cgroup);
    let bystander = Victim::start(VICTIM, "fsync", &dir("bystander"), &cgroup);
    (base, cgroup, target, bystander)
}

/// One run of `--syscall fsync` with `--backend backend`: injected where the rung is offered,
/// refused with the option to enable where it is not.
fn fsync_fails_through(probe: &Probe, backend: &str) {
    let (base, _cgroup, target, bystander) = fsync_victims("syscall");
    let pid = target.pid().to_string();
    let start_ns = monotonic_ns();
    let output = chaos(&[
        "fail",
        "--pid",
        &pid,
        "--syscall",
        "fsync",
        "--errno",
        "EIO",
        "--for",
        "2s",
        "--backend",
        backend,
        "--json",
    ]);
    let end_ns = monotonic_ns();
    let stderr = String::from_utf8_lossy(&output.stderr);

    let rung = if backend == "auto" {
        auto_override_rung(probe)
    } else {
        Some(backend).filter(|rung| override_offered(probe, rung).0)
    };
    let Some(rung) = rung else {
        let asked: Vec<&str> = if backend == "auto" {
            OVERRIDE_RUNGS.to_vec()
        } else {
            vec![backend]
        };
        for asked in asked {
            let (_, expected, detail) = override_offered(probe, asked);
            assert!(
                !expected,
                "--syscall must work through {asked} here: {detail} / {stderr}"
            );
        }
        assert_eq!(output.status.code(), Some(2), "{backend}: {stderr}");
        let names_option = if backend == "fmod_ret" {
            stderr.contains("CONFIG_FUNCTION_ERROR_INJECTION") || stderr.contains("trampoline")
        } else {
            stderr.contains("CONFIG_BPF_KPROBE_OVERRIDE")
        };
        assert!(names_option, "the refusal must name the option: {stderr}");
        assert!(
            target.calls().iter().all(|call| call.errno.is_none()),
            "nothing may be attached"
        );
        let openat = chaos(&[
            "fail",
            "--pid",
            &pid,
            "--syscall",
            "openat",
            "--errno",
            "EIO",
            "--for",
            "1s",
            "--backend",
            backend,
        ]);
        let openat = String::from_utf8_lossy(&openat.stderr);
        assert!(
            openat.contains("--op open covers"),
            "the covering --op must be named: {openat}"
        );
        eprintln!("{backend}: NOT INJECTED on this kernel, as the probe predicts (asserted)");
        assert_no_chaos_programs();
        return;
    };

    assert!(output.status.success(), "{backend}: {stderr}");
    target.wait_for_call_after(end_ns);
    thread::sleep(Duration::from_millis(50));
    let report = json_report(&output);
    let fault = &report["faults"][0];
    assert_eq!(fault["op"], "fsync");
    assert_eq!(fault["mechanism"], rung, "--backend {backend}: {report}");
    assert_scoped_fault(&[&target], &bystander, libc::EIO, (start_ns, end_ns), fault);
    assert_no_chaos_programs();
    eprintln!("--backend {backend}: fsync failed through {rung}");
    drop((target, bystander));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_syscall_the_kernel_cannot_fail_is_refused() {
    if auto_override_rung(&Probe::run()).is_none() {
        return eprintln!(
            "NOT RUN: needs fmod_ret or kprobe-override on the error-injection list, which fsync_fails_… asserts are absent here"
        );
    }
    let sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pid = sleeper.id().to_string();
    let output = chaos(&[
        "fail",
        "--pid",
        &pid,
        "--syscall",
        "no_such_call",
        "--errno",
        "EIO",
        "--for",
        "1s",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("__x64_sys_no_such_call") && stderr.contains("error_injection"),
        "{stderr}"
    );
    let mut sleeper = sleeper;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_no_chaos_programs();
}

/// `--kernel-fn should_failslab`: every slab allocation the target makes fails, so its open()
/// (which allocates the path name) fails with ENOMEM while the run lasts; a bystander opening
/// the same way never fails. The report counts every failed allocation, which is at least the
/// failed opens. Through each rung.
#[test]
fn kernel_fn_failslab_fails_the_targets_allocations_only() {
    let probe = Probe::run();
    for rung in OVERRIDE_RUNGS {
        failslab_through(&probe, rung);
    }
}

fn failslab_through(probe: &Probe, rung: &str) {
    let base = std::env::temp_dir().join(format!("chaos-kernel-fn-{}", std::process::id()));
    let dir = |who: &str| base.join(who).to_str().unwrap().to_owned();
    let cgroup = TestCgroup::new("kernel-fn");
    let target = Victim::start(VICTIM, "open", &dir("target"), &cgroup);
    let bystander = Victim::start(VICTIM, "open", &dir("bystander"), &cgroup);
    let pid = target.pid().to_string();
    let args = [
        "fail",
        "--pid",
        &pid,
        "--kernel-fn",
        "should_failslab",
        "--errno",
        "ENOMEM",
        "--for",
        "2s",
        "--backend",
        rung,
        "--json",
    ];
    let start_ns = monotonic_ns();
    let output = chaos(&args);
    let end_ns = monotonic_ns();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (supported, expected, detail) = override_offered(probe, rung);
    if !supported {
        assert!(
            !expected,
            "{rung} must fail should_failslab here: {detail} / {stderr}"
        );
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        let names_option = if rung == "fmod_ret" {
            stderr.contains("CONFIG_FUNCTION_ERROR_INJECTION") || stderr.contains("trampoline")
        } else {
            stderr.contains("CONFIG_BPF_KPROBE_OVERRIDE")
        };
        assert!(
            stderr.contains("--kernel-fn should_failslab cannot be failed") && names_option,
            "the refusal must name the option: {stderr}"
        );
        eprintln!("{rung}: NOT INJECTED on this kernel, as the probe predicts (asserted)");
        assert_no_chaos_programs();
        return;
    }
    assert!(output.status.success(), "{stderr}");
    target.wait_for_call_after(end_ns);
    let report = json_report(&output);
    let fault = &report["faults"][0];
    assert_eq!(fault["op"], "should_failslab()", "{report}");
    assert_eq!(fault["errno"], "ENOMEM", "{report}");
    assert_eq!(fault["mechanism"], rung, "{report}");
    let calls = target.calls();
    let failed: Vec<&Call> = calls.iter().filter(|c| c.errno.is_some()).collect();
    assert!(
        !failed.is_empty(),
        "{rung}: the target's open() never failed"
    );
    for call in &failed {
        assert_eq!(call.errno, Some(libc::ENOMEM), "{call:?}");
        assert!((start_ns..=end_ns).contains(&call.at_ns), "{call:?}");
    }
    assert!(
        calls.iter().any(|c| c.at_ns > end_ns && c.errno.is_none()),
        "the target recovers after the run"
    );
    assert!(
        fault["injected"].as_u64().unwrap() >= failed.len() as u64,
        "every failed open failed an allocation: {report}"
    );
    assert_bystander_untouched(&bystander);
    assert_no_chaos_programs();
    eprintln!(
        "{rung}: target: {} of {} opens failed with ENOMEM; {} allocations failed in all",
        failed.len(),
        calls.len(),
        fault["injected"]
    );
    drop((target, bystander));
    let _ = std::fs::remove_dir_all(&base);
}

/// A name outside the error-injection list is refused naming the list; a function of type
/// ERRNO needs --errno.
#[test]
fn kernel_fn_outside_the_list_or_without_its_errno_is_refused() {
    if auto_override_rung(&Probe::run()).is_none() {
        return eprintln!(
            "NOT RUN: needs fmod_ret or kprobe-override on the error-injection list, which kernel_fn_failslab… asserts are absent here"
        );
    }
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pid = sleeper.id().to_string();
    for (args, says) in [
        (
            &["--kernel-fn", "vfs_read", "--errno", "EIO"][..],
            "not in the kernel's error-injection list",
        ),
        (&["--kernel-fn", "should_failslab"][..], "give --errno"),
    ] {
        let mut full = vec!["fail", "--pid", &pid, "--for", "1s"];
        full.extend_from_slice(args);
        let output = chaos(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_no_chaos_programs();
}

/// A detached `--syscall` run on the fmod_ret rung (its link pins): the target's fsync() fails
/// until the in-kernel deadline, with chaos long gone, and works after it; `chaos cleanup` then
/// finds the expired run and nothing of chaos is left.
#[test]
fn a_detached_fmod_ret_override_ends_at_its_deadline() {
    let probe = Probe::run();
    if !override_offered(&probe, OVERRIDE_RUNGS[0]).0 {
        return eprintln!(
            "NOT RUN: needs fmod_ret on the error-injection list, which fsync_fails_… asserts is absent here"
        );
    }
    let (base, _cgroup, target, bystander) = fsync_victims("syscall-detach");
    let pid = target.pid().to_string();
    let started = monotonic_ns();
    let run = start_detached(&[
        "fail",
        "--pid",
        &pid,
        "--syscall",
        "fsync",
        "--errno",
        "EIO",
        "--for",
        "3s",
        "--backend",
        "fmod_ret",
    ]);
    target.wait_for_call_after(run.deadline_ns);
    let calls = target.calls();
    let failed: Vec<&Call> = calls.iter().filter(|c| c.errno.is_some()).collect();
    assert!(!failed.is_empty(), "the target's fsync() never failed");
    for call in &failed {
        assert_eq!(call.errno, Some(libc::EIO), "{call:?}");
        assert!(
            (started..=run.deadline_ns).contains(&call.at_ns),
            "a failure outside the run: {call:?}"
        );
    }
    assert_bystander_untouched(&bystander);
    assert_cleanup_finds_expired(&run.id);
    assert_no_chaos_programs();
    eprintln!(
        "detached fmod_ret: {} fsync() EIO before the deadline, none after",
        failed.len()
    );
    drop((target, bystander));
    let _ = std::fs::remove_dir_all(&base);
}

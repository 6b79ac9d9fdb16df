//! `chaos fail --syscall NAME`: a kprobe with bpf_override_return on the syscall's entry
//! function. Injects on kernels with CONFIG_BPF_KPROBE_OVERRIDE (the faultinj guest); elsewhere
//! chaos must refuse, name the option, and point at the `--op` that covers the syscall.

use std::{thread, time::Duration};

use chaos_common::features;
use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

#[test]
fn fsync_fails_only_for_the_target_and_only_during_the_run() {
    let base = std::env::temp_dir().join(format!("chaos-syscall-{}", std::process::id()));
    let dir = |who: &str| base.join(who).to_str().unwrap().to_owned();
    let cgroup = TestCgroup::new("syscall");
    let target = Victim::start(VICTIM, "fsync", &dir("target"), &cgroup);
    let bystander = Victim::start(VICTIM, "fsync", &dir("bystander"), &cgroup);
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
        "--json",
    ]);
    let end_ns = monotonic_ns();
    let stderr = String::from_utf8_lossy(&output.stderr);

    let (supported, detail) = Probe::run().feature(features::KPROBE_OVERRIDE);
    if !supported {
        assert!(
            !expected(features::KPROBE_OVERRIDE),
            "--syscall must work on this kernel: {detail} / {stderr}"
        );
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("CONFIG_BPF_KPROBE_OVERRIDE"),
            "the refusal must name the option: {stderr}"
        );
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
        ]);
        let openat = String::from_utf8_lossy(&openat.stderr);
        assert!(
            openat.contains("--op open covers"),
            "the covering --op must be named: {openat}"
        );
        eprintln!("NOT INJECTED on this kernel, as the probe predicts (asserted): {detail}");
        assert_no_chaos_programs();
        return;
    }

    assert!(output.status.success(), "{stderr}");
    target.wait_for_call_after(end_ns);
    thread::sleep(Duration::from_millis(50));
    let report = json_report(&output);
    let fault = &report["faults"][0];
    assert_eq!(fault["op"], "fsync");
    assert_eq!(fault["mechanism"], "kprobe-override");
    assert_scoped_fault(&[&target], &bystander, libc::EIO, (start_ns, end_ns), fault);
    assert_no_chaos_programs();
    drop((target, bystander));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_syscall_the_kernel_cannot_fail_is_refused() {
    if !Probe::run().feature(features::KPROBE_OVERRIDE).0 {
        return eprintln!(
            "NOT RUN: needs kprobe-override, which fsync_fails_… asserts is absent here"
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
/// failed opens.
#[test]
fn kernel_fn_failslab_fails_the_targets_allocations_only() {
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
        "--json",
    ];
    let start_ns = monotonic_ns();
    let output = chaos(&args);
    let end_ns = monotonic_ns();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (supported, detail) = Probe::run().feature(features::KPROBE_OVERRIDE);
    if !supported {
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--kernel-fn should_failslab cannot be failed")
                && stderr.contains("CONFIG_BPF_KPROBE_OVERRIDE"),
            "the refusal must name the option: {stderr}"
        );
        eprintln!("NOT INJECTED on this kernel, as the probe predicts (asserted): {detail}");
        assert_no_chaos_programs();
        return;
    }
    assert!(output.status.success(), "{stderr}");
    target.wait_for_call_after(end_ns);
    let report = json_report(&output);
    let fault = &report["faults"][0];
    assert_eq!(fault["op"], "should_failslab()", "{report}");
    assert_eq!(fault["errno"], "ENOMEM", "{report}");
    assert_eq!(fault["mechanism"], "kprobe-override", "{report}");
    let calls = target.calls();
    let failed: Vec<&Call> = calls.iter().filter(|c| c.errno.is_some()).collect();
    assert!(!failed.is_empty(), "the target's open() never failed");
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
        "target: {} of {} opens failed with ENOMEM; {} allocations failed in all",
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
    if !Probe::run().feature(features::KPROBE_OVERRIDE).0 {
        return eprintln!(
            "NOT RUN: needs kprobe-override, which kernel_fn_failslab… asserts is absent here"
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

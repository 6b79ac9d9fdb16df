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

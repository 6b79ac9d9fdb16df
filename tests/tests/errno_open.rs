//! `chaos fail --op open`: the BPF LSM `file_open` hook. Needs trampoline programs: it injects in
//! the qemu guests; on a kernel that refuses them the test asserts chaos says exactly why.

use std::{thread, time::Duration};

use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

#[test]
fn open_fails_only_for_the_target_and_only_during_the_run() {
    let file = std::env::temp_dir().join(format!("chaos-open-test-{}", std::process::id()));
    std::fs::write(&file, b"data").expect("create the file both victims open");
    let file_arg = file.to_str().expect("utf-8 path");
    let cgroup = TestCgroup::new("open");
    let target = Victim::start(VICTIM, "open", file_arg, &cgroup);
    let bystander = Victim::start(VICTIM, "open", file_arg, &cgroup);

    let probe = Probe::run();
    let (trampoline, trampoline_detail) = probe.feature("trampoline");
    let (lsm, lsm_detail) = probe.feature("bpf-lsm");
    let start_ns = monotonic_ns();
    let pid = target.pid().to_string();
    let output = chaos(&[
        "fail", "--pid", &pid, "--op", "open", "--errno", "EIO", "--for", "2s", "--json",
    ]);
    let end_ns = monotonic_ns();

    if !(trampoline && lsm) {
        assert!(
            !expected("trampoline") && !expected("bpf-lsm"),
            "BPF LSM must work on this kernel (CHAOS_EXPECT), but the probe says: {trampoline_detail} / {lsm_detail}"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
        let reason = if trampoline {
            &lsm_detail
        } else {
            &trampoline_detail
        };
        assert!(
            stderr.contains(reason.as_str()),
            "chaos must give the probe's reason '{reason}'; it said: {stderr}"
        );
        assert!(
            target.calls().iter().all(|call| call.errno.is_none()),
            "nothing may be attached"
        );
        eprintln!("NOT INJECTED on this kernel, as the probe predicts (asserted): {reason}");
        assert_no_chaos_programs();
        return;
    }

    assert!(
        output.status.success(),
        "chaos failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    target.wait_for_call_after(end_ns);
    thread::sleep(Duration::from_millis(100));
    let report = json_report(&output);
    assert_eq!(report["ended_by"], "deadline");
    let fault = &report["faults"][0];
    assert_eq!(fault["op"], "open");
    assert_eq!(fault["mechanism"], "lsm");
    assert_scoped_fault(&target, &bystander, libc::EIO, (start_ns, end_ns), fault);
    assert_no_chaos_programs();
    let _ = std::fs::remove_file(&file);
}

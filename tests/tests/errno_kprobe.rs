//! The kprobe-override rung every operation has: where neither BPF LSM nor trampolines serve
//! (nor, for the socket operations, a cgroup hook that can choose the errno), a kprobe on the
//! entry function of each of the operation's syscalls fails a target's calls. Each is proved
//! with `--backend kprobe-override` as errno_ops proves the preferred rung (the victim makes
//! each syscall of the operation in turn), a bystander making the same calls untouched; on a
//! kernel without kprobe override (Debian's), chaos refuses with the probe's reason and
//! attaches nothing. A kprobe at syscall entry sees no path nor address: `--path` is refused.

use chaos_common::ops::{Mechanism, OPS};
use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

fn fault_op(op: &str) {
    let fault = prove_op(
        VICTIM,
        op,
        &["--backend", "kprobe-override"],
        refused_for_lack_of_kprobe_override,
    );
    if let Some(fault) = fault {
        assert_eq!(fault["mechanism"], "kprobe-override", "{fault}");
        assert!(
            fault["covers"]
                .as_str()
                .is_some_and(|c| c.contains("at their entry")),
            "the report says what the rung covers: {fault}"
        );
    }
}

/// An operation given a kprobe-override rung needs its test here.
#[test]
fn every_operation_with_a_kprobe_rung_has_a_test() {
    let with_rung: Vec<&str> = OPS
        .iter()
        .filter(|op| {
            op.rungs
                .iter()
                .any(|rung| rung.mechanism == Mechanism::KprobeOverride)
        })
        .map(|op| op.name)
        .collect();
    assert_eq!(TESTED, with_rung.as_slice());
}

/// A kprobe at a syscall's entry sees no path: `--path` with this rung is refused before
/// anything is attached, naming the filter and the rungs that honour it.
#[test]
fn kprobe_rung_refuses_path() {
    let pid = std::process::id().to_string();
    assert_refused(
        &[
            "fail",
            "--pid",
            &pid,
            "--op",
            "open",
            "--errno",
            "EIO",
            "--path",
            "/tmp",
            "--backend",
            "kprobe-override",
            "--for",
            "1s",
        ],
        &["--path", "kprobe-override", "lsm", "fmod_ret"],
    );
}

/// With `chaos idle` running, the kprobe programs come from a spare the second time and fail
/// only the target, as errno_ops shows for the other program kinds.
#[test]
fn kprobes_from_a_spare_fail_only_the_target() {
    let (offered, _, detail) = override_offered(&Probe::run(), "kprobe-override");
    if !offered {
        // kprobe_open asserts the refusal.
        eprintln!("NOT RUN on this kernel: {detail}");
        return;
    }
    let (idle, keeper) = start_idle();
    prove_op_from_spare(VICTIM, "open", &["--backend", "kprobe-override"]);
    stop_idle(idle, &keeper);
    assert_no_chaos_programs();
}

op_tests! {
    fault_op;
    kprobe_open: "open",
    kprobe_read: "read",
    kprobe_write: "write",
    kprobe_exec: "exec",
    kprobe_fork: "fork",
    kprobe_mmap: "mmap",
    kprobe_unlink: "unlink",
    kprobe_rmdir: "rmdir",
    kprobe_mkdir: "mkdir",
    kprobe_rename: "rename",
    kprobe_link: "link",
    kprobe_symlink: "symlink",
    kprobe_truncate: "truncate",
    kprobe_chmod: "chmod",
    kprobe_chown: "chown",
    kprobe_ioctl: "ioctl",
    kprobe_lock: "lock",
    kprobe_stat: "stat",
    kprobe_connect: "connect",
    kprobe_bind: "bind",
    kprobe_listen: "listen",
    kprobe_accept: "accept",
    kprobe_send: "send",
    kprobe_recv: "recv",
    kprobe_socket: "socket",
}

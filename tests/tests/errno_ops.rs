//! Every operation of `chaos fail --op`, each proved with real calls from a real process: the
//! target fails with the errno only while the run lasts, as often as the report says, and a
//! bystander in the same cgroup making the same calls is never touched. Operations that need BPF
//! LSM inject in the qemu guests; on a kernel that refuses trampoline programs the test asserts
//! that chaos refuses with the probe's reason and attaches nothing.

use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

fn fault_op(op: &str) {
    prove_op(VICTIM, op, &[], |output, what| {
        refused_for_lack_of_struct_args(output, what) || refused_for_lack_of_lsm(output, what)
    });
}

/// A new operation in the catalogue needs its test here.
#[test]
fn every_operation_of_the_catalogue_has_a_test() {
    let catalogue: Vec<&str> = chaos_common::ops::OPS.iter().map(|op| op.name).collect();
    assert_eq!(TESTED, catalogue.as_slice());
}

op_tests! {
    fault_op;
    op_open: "open",
    op_read: "read",
    op_write: "write",
    op_exec: "exec",
    op_fork: "fork",
    op_mmap: "mmap",
    op_unlink: "unlink",
    op_rmdir: "rmdir",
    op_mkdir: "mkdir",
    op_rename: "rename",
    op_link: "link",
    op_symlink: "symlink",
    op_truncate: "truncate",
    op_chmod: "chmod",
    op_chown: "chown",
    op_ioctl: "ioctl",
    op_lock: "lock",
    op_stat: "stat",
    op_connect: "connect",
    op_bind: "bind",
    op_listen: "listen",
    op_accept: "accept",
    op_send: "send",
    op_recv: "recv",
    op_socket: "socket",
}

/// With `chaos idle` running, the programs of an operation come from a spare the second time
/// and fail the target as freshly loaded ones do: each kind of program this kernel runs the
/// operations with, taken from its pin (cgroup_sock for socket, LSM for open). Not run where
/// they load as fmod_ret, which no spare holds (errno_connect asserts that none is made).
/// errno_kprobe does the same for a kprobe.
#[test]
fn operations_from_a_spare_fail_only_the_target() {
    let (idle, keeper) = start_idle();
    for op in ["socket", "open"] {
        if Probe::run().mechanism(op).is_none() {
            eprintln!("{op}: NOT RUN here, no mechanism on this kernel (its own test asserts why)");
            continue;
        }
        if !spareable(op) {
            eprintln!("{op}: NOT RUN here, it loads as fmod_ret, which no spare holds");
            continue;
        }
        prove_op_from_spare(VICTIM, op, &[]);
    }
    stop_idle(idle, &keeper);
    assert_no_chaos_programs();
}

//! Every operation of `chaos fail --op`, each proved with real calls from a real process: the
//! target fails with the errno only while the run lasts, as often as the report says, and a
//! bystander in the same cgroup making the same calls is never touched. Operations that need BPF
//! LSM inject in the qemu guests; on a kernel that refuses trampoline programs the test asserts
//! that chaos refuses with the probe's reason and attaches nothing.

use std::{thread, time::Duration};

use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

fn fault_op(op: &str) {
    let base = std::env::temp_dir().join(format!("chaos-op-{op}-{}", std::process::id()));
    let (target_arg, bystander_arg) = if op == "connect" {
        let address = tcp_server("127.0.0.1:0");
        (address.clone(), address)
    } else {
        let dir = |who: &str| base.join(who).to_str().expect("utf-8").to_owned();
        (dir("target"), dir("bystander"))
    };
    let cgroup = TestCgroup::new(op);
    let target = Victim::start(VICTIM, op, &target_arg, &cgroup);
    let bystander = Victim::start(VICTIM, op, &bystander_arg, &cgroup);
    // Let both settle past their start-up calls.
    target.wait_for_calls(3);
    bystander.wait_for_calls(3);

    let start_ns = monotonic_ns();
    let pid = target.pid().to_string();
    let output = chaos(&[
        "fail", "--pid", &pid, "--op", op, "--errno", "EIO", "--for", "2s", "--json",
    ]);
    let end_ns = monotonic_ns();
    let stderr = String::from_utf8_lossy(&output.stderr);

    let what = format!("--op {op}");
    if refused_for_lack_of_struct_args(&output, &what) || refused_for_lack_of_lsm(&output, &what) {
        assert!(
            target.calls().iter().all(|call| call.errno.is_none()),
            "nothing may be attached"
        );
        drop((target, bystander));
        let _ = std::fs::remove_dir_all(&base);
        return;
    }

    assert!(output.status.success(), "--op {op}: {stderr}");
    target.wait_for_call_after(end_ns);
    thread::sleep(Duration::from_millis(50));
    let report = json_report(&output);
    let fault = &report["faults"][0];
    assert_eq!(fault["op"], op);
    eprintln!(
        "--op {op} via {}: {} injected",
        fault["mechanism"], fault["injected"]
    );
    assert_scoped_fault(&[&target], &bystander, libc::EIO, (start_ns, end_ns), fault);
    assert_no_chaos_programs();
    drop((target, bystander));
    let _ = std::fs::remove_dir_all(&base);
}

macro_rules! op_tests {
    ($($name:ident: $op:literal,)*) => {
        $(
            #[test]
            fn $name() {
                fault_op($op);
            }
        )*

        /// The operations a test proves.
        const TESTED: &[&str] = &[$($op),*];
    };
}

/// A new operation in the catalogue needs its test here.
#[test]
fn every_operation_of_the_catalogue_has_a_test() {
    let catalogue: Vec<&str> = chaos_common::ops::OPS.iter().map(|op| op.name).collect();
    assert_eq!(TESTED, catalogue.as_slice());
}

op_tests! {
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

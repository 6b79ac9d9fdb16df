//! Errno faults: calls of a target process fail with a chosen errno.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::bpf_set_retval,
    macros::{cgroup_sock_addr, lsm},
    programs::{LsmContext, SockAddrContext},
};
use chaos_common::errno::{OP_CONNECT, OP_OPEN};
use chaos_ebpf::errno::injected_errno;

/// cgroup sock_addr programs: 1 lets the call through, 0 fails it (with the errno set by
/// `bpf_set_retval`, EPERM without).
const SOCK_ADDR_ALLOW: i32 = 1;
const SOCK_ADDR_DENY: i32 = 0;

/// The largest errno a kernel call can return.
const MAX_ERRNO: i32 = 4095;

/// Fails IPv4 `connect()` (and UDP `connect()`) of target processes in the attached cgroup.
/// Kernel >= 5.18 (`bpf_set_retval` in sock_addr programs); CONFIG_CGROUP_BPF.
#[cgroup_sock_addr(connect4)]
pub fn cgroup_connect4(_ctx: SockAddrContext) -> i32 {
    fail_connect()
}

/// Same as [`cgroup_connect4`] for IPv6.
#[cgroup_sock_addr(connect6)]
pub fn cgroup_connect6(_ctx: SockAddrContext) -> i32 {
    fail_connect()
}

#[inline(always)]
fn fail_connect() -> i32 {
    match injected_errno(OP_CONNECT) {
        Some(errno) => {
            // SAFETY: a helper call with a plain integer argument.
            unsafe { bpf_set_retval(-errno) };
            SOCK_ADDR_DENY
        }
        None => SOCK_ADDR_ALLOW,
    }
}

/// Fails `open()`, `openat()`, `openat2()` and `creat()` of target processes (the `file_open`
/// LSM hook). Kernel >= 5.7, CONFIG_BPF_LSM, `bpf` in the `lsm=` boot parameter, and a kernel
/// that lets trampoline programs load.
#[lsm(hook = "file_open")]
pub fn lsm_file_open(ctx: LsmContext) -> i32 {
    // The last argument is the verdict of the LSM programs before this one: keep a denial.
    let earlier: i32 = ctx.arg(1);
    if earlier != 0 {
        return lsm_verdict(earlier);
    }
    match injected_errno(OP_OPEN) {
        Some(errno) => lsm_verdict(-errno),
        None => 0,
    }
}

/// LSM programs must return 0 or a negative errno no lower than -4095, and the verifier must be
/// able to prove it: clamp on the value itself (a range check on a copy proves nothing).
#[inline(always)]
fn lsm_verdict(verdict: i32) -> i32 {
    verdict.clamp(-MAX_ERRNO, 0)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

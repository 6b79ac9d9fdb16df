//! Faults on calls: calls of target processes fail with a chosen errno, or the process gets a
//! signal when it makes one.
//!
//! cgroup programs (kernel >= 5.18 for `bpf_set_retval`, CONFIG_CGROUP_BPF) fail the calls of
//! target processes in the cgroup they are attached to. LSM programs (kernel >= 5.7,
//! CONFIG_BPF_LSM, `bpf` in `lsm=`, and a kernel that lets trampoline programs load) are global
//! and fail the calls of targets anywhere. The program names and sections are those of the
//! operation catalogue (`chaos_common::ops`) and `chaos_common::hook`; a test of chaos-user
//! checks them against this object.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _, Global,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_prandom_u32, bpf_get_stack,
        bpf_ktime_get_boot_ns, bpf_ktime_get_ns, bpf_override_return, bpf_probe_read_kernel,
        bpf_probe_read_user, bpf_probe_write_user, bpf_send_signal, bpf_set_retval,
    },
    macros::{
        btf_tracepoint, cgroup_sock, cgroup_sock_addr, fentry, fexit, kprobe, map, tracepoint,
    },
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, LsmContext, ProbeContext,
        SockAddrContext, SockContext, TracePointContext,
    },
};
use chaos_common::{
    fault::{
        AF_INET, AF_INET6, AT_IGNORE, AT_SYSINFO_EHDR, CLOCK_BOOTTIME_ALARM, CLOCK_REALTIME,
        CLOCK_REALTIME_ALARM, CallFault, ClockFilter, CorruptFilter, DelayEvent, IPV4_MAPPED_WORD,
        KernelFnFilter, MAX_CORRUPT_BITS, MAX_DELAYED, MAX_IOVECS, MAX_STACK_FRAMES,
        STATFS_F_BAVAIL, STATFS_F_BFREE, STATFS_F_FSID, STATFS_F_TYPE, ShortenedIovecs,
        StatfsFilter,
    },
    ops::*,
    target::TARGET_TREE,
};
use chaos_ebpf::{
    disk::{self, Memory, Probed, Typed, bio_ops},
    errno::{
        Attached, CGROUP_TARGET_SLOT, Call, act, acting_fault, add_injected, add_target,
        current_target, fault_in, remove_target, target_cgroup, target_of,
    },
    path::{dentry_of_bprm, dentry_of_file, dentry_of_path, pointer_at, read_at, under_dir},
};

/// cgroup programs: 1 lets the call through, 0 fails it (with the errno set by `bpf_set_retval`,
/// EPERM without).
const CGROUP_ALLOW: i32 = 1;
const CGROUP_DENY: i32 = 0;

/// The largest errno a kernel call can return.
const MAX_ERRNO: i64 = 4095;

/// `MAY_WRITE` and `MAY_READ` from linux/fs.h, in the `mask` of `file_permission`.
const MAY_WRITE: i32 = 0x2;
const MAY_READ: i32 = 0x4;

/// The address an IPv4 sock_addr program sees: what the caller passed.
#[inline(always)]
fn sock_addr_call4(ctx: &SockAddrContext) -> Call {
    // SAFETY: the kernel hands the program a valid bpf_sock_addr.
    let addr = unsafe { &*ctx.sock_addr };
    Call {
        port: u32::from(u16::from_be(addr.user_port as u16)),
        family: addr.user_family,
        addr: [0, 0, IPV4_MAPPED_WORD, addr.user_ip4],
        ..Call::UNKNOWN
    }
}

/// The address an IPv6 sock_addr program sees (its IPv4 fields are off limits to it).
#[inline(always)]
fn sock_addr_call6(ctx: &SockAddrContext) -> Call {
    // SAFETY: the kernel hands the program a valid bpf_sock_addr.
    let addr = unsafe { &*ctx.sock_addr };
    Call {
        port: u32::from(u16::from_be(addr.user_port as u16)),
        family: addr.user_family,
        addr: addr.user_ip6,
        ..Call::UNKNOWN
    }
}

/// The address in a kernel copy of a caller's `struct sockaddr` (stable layouts: the family
/// first, then for IPv4 the port and address at 2 and 4, for IPv6 the port at 2 and the address
/// at 8). An unreadable one is [`Call::UNKNOWN`], which passes only unfiltered faults.
#[inline(always)]
fn sockaddr_call(sockaddr: *const u8) -> Call {
    if sockaddr.is_null() {
        return Call::UNKNOWN;
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a failure gives UNKNOWN. The offsets
    // stay within a sockaddr_in6 (28 bytes).
    let read = |offset: usize| unsafe { bpf_probe_read_kernel(sockaddr.add(offset).cast::<u32>()) };
    // SAFETY: as `read`.
    let read16 =
        |offset: usize| unsafe { bpf_probe_read_kernel(sockaddr.add(offset).cast::<[u32; 4]>()) };
    let Ok(head) = read(0) else {
        return Call::UNKNOWN;
    };
    let family = u32::from(head as u16);
    let port = u32::from(u16::from_be((head >> 16) as u16));
    let addr = match family {
        AF_INET => match read(4) {
            Ok(ip4) => [0, 0, IPV4_MAPPED_WORD, ip4],
            Err(_) => return Call::UNKNOWN,
        },
        AF_INET6 => match read16(8) {
            Ok(ip6) => ip6,
            Err(_) => return Call::UNKNOWN,
        },
        _ => [0; 4],
    };
    let port = if family == AF_INET || family == AF_INET6 {
        port
    } else {
        0
    };
    Call {
        port,
        family,
        addr,
        ..Call::UNKNOWN
    }
}

/// Non-zero where the kernel has `bpf_set_retval` (5.18+); set at load. Without it a denied call
/// fails with EPERM, and the verifier drops the calls of the helpers here, which it would refuse.
#[unsafe(no_mangle)]
static KERNEL_SET_RETVAL: Global<u32> = Global::new(1);

#[inline(always)]
fn cgroup_verdict(op: u32, call: impl FnOnce() -> Call) -> i32 {
    match acting_fault(op, Attached::Cgroup, call) {
        Some(fault) => {
            // A cgroup runs its programs oldest first, so the newest run's errno is the one the
            // call returns, as with LSM hooks, whose trampoline runs the newest program first
            // and stops at its denial.
            if KERNEL_SET_RETVAL.load() != 0 {
                // SAFETY: a helper call with a plain integer argument.
                unsafe { bpf_set_retval(-fault.errno) };
            }
            CGROUP_DENY
        }
        None => CGROUP_ALLOW,
    }
}

/// Fails IPv4 `connect()`. Fails IPv6 `connect()`.
#[cgroup_sock_addr(connect4)]
pub fn cgroup_connect4(ctx: SockAddrContext) -> i32 {
    cgroup_verdict(OP_CONNECT, || sock_addr_call4(&ctx))
}

#[cgroup_sock_addr(connect6)]
pub fn cgroup_connect6(ctx: SockAddrContext) -> i32 {
    cgroup_verdict(OP_CONNECT, || sock_addr_call6(&ctx))
}

/// Fails IPv4 / IPv6 `bind()`.
#[cgroup_sock_addr(bind4)]
pub fn cgroup_bind4(ctx: SockAddrContext) -> i32 {
    cgroup_verdict(OP_BIND, || sock_addr_call4(&ctx))
}

#[cgroup_sock_addr(bind6)]
pub fn cgroup_bind6(ctx: SockAddrContext) -> i32 {
    cgroup_verdict(OP_BIND, || sock_addr_call6(&ctx))
}

/// Fails UDP `sendto()` / `sendmsg()` that name a destination (the hook runs only for those).
#[cgroup_sock_addr(sendmsg4)]
pub fn cgroup_sendmsg4(ctx: SockAddrContext) -> i32 {
    cgroup_verdict(OP_SEND, || sock_addr_call4(&ctx))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn cgroup_sendmsg6(ctx: SockAddrContext) -> i32 {
    cgroup_verdict(OP_SEND, || sock_addr_call6(&ctx))
}

/// Fails `socket()` for AF_INET and AF_INET6 (the hook runs only for those families).
#[cgroup_sock(sock_create)]
pub fn cgroup_sock_create(ctx: SockContext) -> i32 {
    cgroup_verdict(OP_SOCKET, || Call {
        // SAFETY: the kernel hands the program a valid bpf_sock.
        family: unsafe { (*ctx.sock).family },
        ..Call::UNKNOWN
    })
}

/// The verdict of an LSM program for `op`.
///
/// An earlier denial needs no passing through: int-returning LSM hooks run their BPF programs
/// as modify-return programs, and the trampoline stops at the first non-zero verdict, so every
/// program that runs was handed 0. (Reading that argument anyway misled the 6.12 verifier: it
/// took the value for a known constant and pruned the path that injects.)
#[inline(always)]
fn lsm_verdict(op: u32) -> i64 {
    lsm_call_verdict(op, || Call::UNKNOWN)
}

/// [`lsm_verdict`] for a hook whose call `call` describes for the filters (it runs only for
/// targets, after the one lookup).
#[inline(always)]
fn lsm_call_verdict(op: u32, call: impl FnOnce() -> Call) -> i64 {
    match acting_fault(op, Attached::Kernel, call) {
        Some(fault) => clamp_errno(-i64::from(fault.errno)),
        None => 0,
    }
}

/// LSM programs must return 0 or a negative errno no lower than -4095, and the verifier must be
/// able to prove it on the whole 64-bit register: clamp the value itself, in 64 bits (a range
/// check on a copy proves nothing, and a 32-bit result reaches the verifier zero-extended).
#[inline(always)]
fn clamp_errno(verdict: i64) -> i64 {
    // Through memory, so that the compiler cannot move the comparisons onto the value the verdict
    // was computed from (it compared the errno before negation, which proves nothing about R0).
    // SAFETY: a volatile read of a local.
    let verdict = unsafe { core::ptr::read_volatile(&verdict) };
    verdict.clamp(-MAX_ERRNO, 0)
}

/// An LSM program on `hook`. Written out rather than with aya's `#[lsm]`, whose entry returns
/// `i32`: with BPF v3's 32-bit subregisters a negative `i32` leaves R0 zero-extended, which the
/// verifier of kernels such as 6.12 rejects. This entry returns the verdict in all 64 bits.
macro_rules! lsm_program {
    ($(#[$doc:meta])* $name:ident, $hook:literal, |$ctx:ident| $body:expr) => {
        $(#[$doc])*
        #[unsafe(no_mangle)]
        #[unsafe(link_section = concat!("lsm/", $hook))]
        pub extern "C" fn $name(raw: *mut c_void) -> i64 {
            let $ctx = LsmContext::new(raw);
            $body
        }
    };
}

/// An LSM program that fails `op` on every call of `hook`. With `$dentry`, a function of the
/// context giving the dentry the call acts on, the fault's `--path` filter applies.
macro_rules! lsm_errno {
    ($(#[$doc:meta])* $name:ident, $hook:literal, $op:expr) => {
        lsm_program!($(#[$doc])* $name, $hook, |_ctx| lsm_verdict($op));
    };
    ($(#[$doc:meta])* $name:ident, $hook:literal, $op:expr, $dentry:expr) => {
        lsm_program!($(#[$doc])* $name, $hook, |ctx| {
            lsm_call_verdict($op, || file_call($dentry(&ctx)))
        });
    };
}

/// A call on the file whose dentry is `dentry`.
#[inline(always)]
fn file_call(dentry: u64) -> Call {
    Call {
        dentry,
        ..Call::UNKNOWN
    }
}

/// Dentry readers for [`lsm_errno`], by the type of the hook's argument `N`.
#[inline(always)]
fn file_arg<const N: usize>(ctx: &LsmContext) -> u64 {
    dentry_of_file(ctx.arg(N))
}

#[inline(always)]
fn path_arg<const N: usize>(ctx: &LsmContext) -> u64 {
    dentry_of_path(ctx.arg(N))
}

#[inline(always)]
fn dentry_arg<const N: usize>(ctx: &LsmContext) -> u64 {
    ctx.arg(N)
}

lsm_errno!(
    /// `open()`, `openat()`, `openat2()`, `creat()`.
    lsm_file_open, "file_open", OP_OPEN, file_arg::<0>
);
lsm_errno!(
    /// `execve()`, `execveat()`.
    lsm_bprm_check, "bprm_check_security", OP_EXEC, |ctx: &LsmContext| dentry_of_bprm(ctx.arg(0))
);
lsm_errno!(
    /// `fork()`, `vfork()`, `clone()`, `clone3()`: also new threads.
    lsm_task_alloc, "task_alloc", OP_FORK
);
lsm_errno!(
    /// `mmap()`, file-backed and anonymous.
    lsm_mmap_file, "mmap_file", OP_MMAP, file_arg::<0>
);
lsm_errno!(lsm_inode_unlink, "inode_unlink", OP_UNLINK, dentry_arg::<1>);
lsm_errno!(lsm_inode_rmdir, "inode_rmdir", OP_RMDIR, dentry_arg::<1>);
lsm_errno!(lsm_inode_mkdir, "inode_mkdir", OP_MKDIR, dentry_arg::<1>);
lsm_errno!(lsm_inode_rename, "inode_rename", OP_RENAME, dentry_arg::<1>);
lsm_errno!(lsm_inode_link, "inode_link", OP_LINK, dentry_arg::<2>);
lsm_errno!(
    lsm_inode_symlink,
    "inode_symlink",
    OP_SYMLINK,
    dentry_arg::<1>
);
lsm_errno!(
    /// `truncate()` by path (CONFIG_SECURITY_PATH).
    lsm_path_truncate, "path_truncate", OP_TRUNCATE, path_arg::<0>
);
lsm_errno!(lsm_path_chmod, "path_chmod", OP_CHMOD, path_arg::<0>);
lsm_errno!(lsm_path_chown, "path_chown", OP_CHOWN, path_arg::<0>);
lsm_errno!(lsm_file_ioctl, "file_ioctl", OP_IOCTL, file_arg::<0>);
lsm_errno!(
    /// `flock()` and `fcntl()` locks.
    lsm_file_lock, "file_lock", OP_LOCK, file_arg::<0>
);
lsm_errno!(
    /// `stat()`, `lstat()`, `fstat()`, `statx()`, `newfstatat()`.
    lsm_inode_getattr, "inode_getattr", OP_STAT, path_arg::<0>
);
lsm_program!(
    /// `connect()` of every family, AF_UNIX included; reads the address for the filters.
    lsm_socket_connect, "socket_connect", |ctx| {
        lsm_call_verdict(OP_CONNECT, || sockaddr_call(ctx.arg(1)))
    }
);
lsm_program!(
    /// `bind()` of every family, AF_UNIX included; reads the address for the filters.
    lsm_socket_bind, "socket_bind", |ctx| {
        lsm_call_verdict(OP_BIND, || sockaddr_call(ctx.arg(1)))
    }
);
lsm_errno!(lsm_socket_listen, "socket_listen", OP_LISTEN);
lsm_errno!(lsm_socket_accept, "socket_accept", OP_ACCEPT);
lsm_program!(
    /// `send()`, `sendto()`, `sendmsg()`, `write()` on sockets, every protocol. The filters see
    /// the destination of the calls that name one (`msg_name`, the first field of the kernel's
    /// `struct msghdr`).
    lsm_socket_sendmsg, "socket_sendmsg", |ctx| {
        lsm_call_verdict(OP_SEND, || {
            let msg: *const *const u8 = ctx.arg(1);
            // SAFETY: bpf_probe_read_kernel checks the address.
            let name = unsafe { bpf_probe_read_kernel(msg) }.unwrap_or(core::ptr::null());
            sockaddr_call(name)
        })
    }
);
lsm_errno!(
    /// `recv()`, `recvfrom()`, `recvmsg()`, `read()` on sockets, every protocol.
    lsm_socket_recvmsg, "socket_recvmsg", OP_RECV
);

lsm_program!(
    /// `read()` and `write()` families (`file_permission`, whose mask tells reads from writes).
    lsm_file_permission, "file_permission", |ctx| {
        let mask: i32 = ctx.arg(1);
        let op = if mask & MAY_WRITE != 0 {
            OP_WRITE
        } else if mask & MAY_READ != 0 {
            OP_READ
        } else {
            return 0;
        };
        lsm_call_verdict(op, || file_call(file_arg::<0>(&ctx)))
    }
);

lsm_program!(
    /// `socket()` of every family; sockets the kernel makes for itself (`kern`) are left alone.
    lsm_socket_create, "socket_create", |ctx| {
        let kern: i32 = ctx.arg(3);
        if kern != 0 {
            0
        } else {
            lsm_call_verdict(OP_SOCKET, || Call {
                family: ctx.arg(0),
                ..Call::UNKNOWN
            })
        }
    }
);

/// Makes a target's call of the function this kprobe is on return the fault's `retval` without
/// running: a syscall's entry function (`chaos fail --syscall`, every `__x64_sys_*`) or a
/// function of the error-injection list (`--kernel-fn`). Needs CONFIG_BPF_KPROBE_OVERRIDE and
/// CONFIG_FUNCTION_ERROR_INJECTION (kernel >= 4.16). A call `--caller` does not name, and an
/// allocation an interrupt made or one that may not fail, pass uncounted.
#[kprobe]
pub fn kprobe_override(ctx: ProbeContext) -> u32 {
    // Both arguments are read (black_box) so that the compiler does not turn the choice of one
    // into a context access at a variable offset, which the verifier refuses.
    let arg = |n: u32| {
        let (first, second) = core::hint::black_box((ctx.arg(0), ctx.arg(1)));
        if n == 0 { first } else { second }
    };
    let call = || Call {
        fn_filters_pass: allocation_may_fail(arg) && caller_on_stack(ctx.as_ptr()),
        ..Call::UNKNOWN
    };
    if let Some(fault) = acting_fault(OP_SYSCALL, Attached::Kernel, call) {
        // SAFETY: the probe's own registers; the value is what the function's type allows.
        unsafe { bpf_override_return(ctx.regs.cast(), fault.retval as u64) };
    }
    0
}

/// The kprobe-override rung of operation `$op` (`chaos_common::ops`), on the entry function of
/// each of its syscalls: a target's call returns the errno without running. Global, so it
/// filters by target; it sees no path.
macro_rules! kprobe_op {
    ($($name:ident: $op:expr,)*) => {
        $(
            #[doc = concat!(
                "The kprobe-override rung of `", stringify!($op), "`: a kprobe on each of its ",
                "syscalls' entry functions. Needs CONFIG_BPF_KPROBE_OVERRIDE and ",
                "CONFIG_FUNCTION_ERROR_INJECTION (kernel >= 4.16)."
            )]
            #[kprobe]
            pub fn $name(ctx: ProbeContext) -> u32 {
                if let Some(fault) = acting_fault($op, Attached::Kernel, || Call::UNKNOWN) {
                    // SAFETY: the probe's own registers; the errno, which a syscall returns.
                    unsafe { bpf_override_return(ctx.regs.cast(), fault.retval as u64) };
                }
                0
            }
        )*
    };
}

kprobe_op! {
    kprobe_open: OP_OPEN,
    kprobe_read: OP_READ,
    kprobe_write: OP_WRITE,
    kprobe_exec: OP_EXEC,
    kprobe_fork: OP_FORK,
    kprobe_mmap: OP_MMAP,
    kprobe_unlink: OP_UNLINK,
    kprobe_rmdir: OP_RMDIR,
    kprobe_mkdir: OP_MKDIR,
    kprobe_rename: OP_RENAME,
    kprobe_link: OP_LINK,
    kprobe_symlink: OP_SYMLINK,
    kprobe_truncate: OP_TRUNCATE,
    kprobe_chmod: OP_CHMOD,
    kprobe_chown: OP_CHOWN,
    kprobe_ioctl: OP_IOCTL,
    kprobe_lock: OP_LOCK,
    kprobe_stat: OP_STAT,
    kprobe_connect: OP_CONNECT,
    kprobe_bind: OP_BIND,
    kprobe_listen: OP_LISTEN,
    kprobe_accept: OP_ACCEPT,
    kprobe_send: OP_SEND,
    kprobe_recv: OP_RECV,
    kprobe_socket: OP_SOCKET,
}

/// [`kprobe_override`] where trampolines load (kernel >= 5.7, BTF): chaos loads it past aya as
/// an fmod_ret program on the same function (its section only names where `chaos probe` tries
/// it), whose return value it gives when it acts: the function does not run. A function that
/// fails by returning NULL (0, which fmod_ret takes for "run it") stays with the kprobe. The
/// function's arguments are the context's first slots.
#[unsafe(no_mangle)]
#[unsafe(link_section = "fexit/__x64_sys_fsync")]
pub extern "C" fn fmod_ret_override(ctx: *mut c_void) -> i64 {
    // Read as plain memory: the verifier types a pointer argument loaded from the context and
    // refuses to keep half of one (a gfp flag is the low half of its slot).
    let arg = |n: u32| {
        // SAFETY: a read of the trampoline's argument slot `n` (0 or 1), checked by the helper.
        unsafe { bpf_probe_read_kernel((ctx as *const u64).wrapping_add(n as usize)) }
            .ok()
            .map(|slot| slot as u32)
    };
    let call = || Call {
        fn_filters_pass: allocation_may_fail(arg) && caller_on_stack(ctx),
        ..Call::UNKNOWN
    };
    acting_fault(OP_SYSCALL, Attached::Kernel, call).map_or(0, |fault| fault.retval)
}

/// `--caller`'s function and an allocation function's gfp flags; all zero without either.
#[unsafe(no_mangle)]
static KERNEL_FN: Global<KernelFnFilter> = Global::new(KernelFnFilter {
    caller_start: 0,
    caller_end: 0,
    gfp_arg: 0,
    gfp_needs: 0,
    gfp_refuses: 0,
    _pad: 0,
});

/// The kernel stack of the current call, read by `--caller` (too large for the BPF stack).
#[map]
static STACK: PerCpuArray<[u64; MAX_STACK_FRAMES]> = PerCpuArray::with_max_entries(1, 0);

/// Whether `--caller`'s function is on the kernel stack (true without `--caller`): a return
/// address within its code, in the innermost [`MAX_STACK_FRAMES`] frames. Runs only for a
/// target's calls, after the cheap filters.
#[inline(always)]
fn caller_on_stack(ctx: *mut c_void) -> bool {
    let filter = KERNEL_FN.load();
    if filter.caller_end == 0 {
        return true;
    }
    let Some(frames) = STACK.get_ptr_mut(0) else {
        return false;
    };
    let size = core::mem::size_of::<[u64; MAX_STACK_FRAMES]>() as u32;
    // SAFETY: the helper writes at most `size` bytes into the per-CPU value `frames` points to.
    let len = unsafe { bpf_get_stack(ctx, frames.cast(), size, 0) };
    if len <= 0 {
        return false;
    }
    let count = len as usize / 8;
    for i in 0..MAX_STACK_FRAMES {
        if i >= count {
            break;
        }
        // SAFETY: `i` is within the array; the value was just written by this CPU.
        let ip = unsafe { (*frames)[i] };
        if ip >= filter.caller_start && ip < filter.caller_end {
            return true;
        }
    }
    false
}

/// Whether the allocation this probe sees may be failed as the target's (true for a function
/// that is not an allocation): it may sleep (`__GFP_DIRECT_RECLAIM`), so no interrupt that
/// happened to run on the target's CPU made it, and it may fail (no `__GFP_NOFAIL`).
/// `arg(n)` reads the function's argument `n` (0 or 1: the gfp flags are one of the first
/// two), only for an allocation function.
#[inline(always)]
fn allocation_may_fail(arg: impl FnOnce(u32) -> Option<u32>) -> bool {
    let filter = KERNEL_FN.load();
    if filter.gfp_needs == 0 {
        return true;
    }
    arg(filter.gfp_arg).is_some_and(|gfp| {
        gfp & filter.gfp_needs == filter.gfp_needs && gfp & filter.gfp_refuses == 0
    })
}

/// `chaos disk error`: a bio to the fault's device completes with EIO. On the block layer's
/// `should_fail_bio(bio)` (kernel >= 5.12, for `bio->bi_bdev`; CONFIG_BPF_KPROBE_OVERRIDE and
/// CONFIG_FUNCTION_ERROR_INJECTION), which turns any error into BLK_STS_IOERR. Runs for the
/// bios of every device while the fault lasts: a few kernel reads, and for the device's own
/// the counters and rules of slot 0 (with targets, only for the bios a target submits itself,
/// and for a cgroup target those the kernel charges to it: see [`disk::attributed_to`]).
#[kprobe]
pub fn kprobe_bio_error(ctx: ProbeContext) -> u32 {
    if let Some(retval) = ctx.arg::<u64>(0).and_then(bio_error::<Probed>) {
        // SAFETY: the probe's own registers; any error becomes BLK_STS_IOERR.
        unsafe { bpf_override_return(ctx.regs.cast(), retval as u64) };
    }
    0
}

/// [`kprobe_bio_error`] where trampolines load: loaded past aya as fmod_ret on
/// `should_fail_bio` (its section names the function), whose return value it gives when it
/// acts. Its argument is typed (`struct bio *`), so it follows the bio with plain loads.
#[unsafe(no_mangle)]
#[unsafe(link_section = "fexit/should_fail_bio")]
pub extern "C" fn fmod_ret_bio_error(ctx: *mut c_void) -> i64 {
    // SAFETY: the trampoline's first argument slot, which the verifier types from the kernel's
    // BTF as the function's `struct bio *`.
    let bio = unsafe { core::ptr::read_volatile(ctx as *const u64) };
    bio_error::<Typed>(bio).unwrap_or(0)
}

/// What `should_fail_bio(bio)` returns for `bio` while the fault acts on it, if it does.
#[inline(always)]
fn bio_error<M: Memory>(bio: u64) -> Option<i64> {
    let ops = bio_ops::<M>(bio);
    if ops == 0 {
        return None;
    }
    // The op the fault covers, as the counters count it: a write that is also a flush counts
    // as a write when the fault covers writes.
    let covered = ops & fault_in(0)?.ops;
    if covered == 0 {
        return None;
    }
    let op = covered.trailing_zeros();
    if !disk::targeted() {
        return act(0, 0, op, || Call::UNKNOWN).map(|fault| fault.retval);
    }
    let acting = match current_target(Attached::Kernel) {
        Some((slot, target)) => act(slot, target, op, || Call::UNKNOWN),
        // Not submitted by a target: the writeback of pages the target cgroup dirtied.
        None if disk::attributed_to(bio, target_cgroup()) => {
            act(CGROUP_TARGET_SLOT, 0, op, || Call::UNKNOWN)
        }
        None => None,
    };
    acting.map(|fault| fault.retval)
}

/// Sends the fault's signal to a target process entering the syscall whose
/// `syscalls:sys_enter_*` tracepoint this is attached to. Kernel >= 5.3 (`bpf_send_signal`),
/// CONFIG_FTRACE_SYSCALLS. Only that syscall's entries pay, one array lookup each.
#[tracepoint]
pub fn tracepoint_syscall_signal(_ctx: TracePointContext) -> u32 {
    signal_if_acting();
    0
}

/// [`tracepoint_syscall_signal`] from fentry on the syscall's function (`__x64_sys_*`), loaded by
/// chaos on the fault's syscall: only that syscall pays, where a syscall tracepoint puts every
/// syscall of the machine on the kernel's slow path. Needs trampolines (kernel >= 5.5).
#[fentry(function = "__x64_sys_fsync")]
pub fn fentry_syscall_signal(_ctx: FEntryContext) -> i32 {
    signal_if_acting();
    0
}

/// Sends the fault's signal to the calling process if it is a target the fault acts on now.
#[inline(always)]
fn signal_if_acting() {
    if let Some(fault) = acting_fault(OP_SIGNAL, Attached::Kernel, || Call::UNKNOWN) {
        // SAFETY: a helper call with a plain integer argument; signals the whole process.
        unsafe { bpf_send_signal(fault.signal) };
    }
}

/// `chaos delay`: the processes stopped and not resumed yet (tgid → when), which chaos's guard
/// resumes if chaos dies.
#[map]
static DELAYED: HashMap<u32, u64> = HashMap::with_max_entries(MAX_DELAYED, 0);

/// `chaos delay`: each stop, for chaos to resume the process after the delay.
#[map]
static DELAY_EVENTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// `BPF_NOEXIST`: an insert that fails when the key is there.
const BPF_NOEXIST: u64 = 1;
const SIGSTOP: u32 = 19;

/// Stops a target process (SIGSTOP) as one of its threads leaves a syscall whose
/// `syscalls:sys_exit_*` tracepoint this is attached to, and tells chaos, which resumes it
/// (SIGCONT) after the delay: the call returns that much later. Kernel >= 5.8 (ring buffer),
/// CONFIG_FTRACE_SYSCALLS. Only those syscalls' returns pay, one lookup each when untargeted.
#[tracepoint]
pub fn tracepoint_syscall_delay(_ctx: TracePointContext) -> u32 {
    let _ = try_delay();
    0
}

/// [`tracepoint_syscall_delay`] from fexit on a syscall's function (`__x64_sys_*`), loaded by
/// chaos once per delayed syscall: only those syscalls pay, where syscall tracepoints put every
/// syscall of the machine on the kernel's slow path. Needs trampolines (kernel >= 5.5).
#[fexit(function = "__x64_sys_fsync")]
pub fn fexit_syscall_delay(_ctx: FExitContext) -> i32 {
    let _ = try_delay();
    0
}

fn try_delay() -> Option<()> {
    let (slot, target) = current_target(Attached::Kernel)?;
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // One stop at a time per process: its other threads stop with it, and leave their calls
    // only once it is resumed.
    // SAFETY: the value is only tested for presence.
    if unsafe { DELAYED.get(tgid) }.is_some() {
        return None;
    }
    act(slot, target, OP_DELAY, || Call::UNKNOWN)?;
    // Reserved first: a process is never stopped without chaos being told.
    let mut event = DELAY_EVENTS.reserve::<DelayEvent>(0)?;
    // SAFETY: a helper call without arguments.
    let at_ns = unsafe { bpf_ktime_get_ns() };
    if DELAYED.insert(tgid, at_ns, BPF_NOEXIST).is_err() {
        event.discard(0);
        return None;
    }
    event.write(DelayEvent {
        at_ns,
        tgid,
        tid: pid_tgid as u32,
    });
    // SAFETY: a helper call with a plain integer argument; stops the whole process once this
    // thread returns to user space.
    unsafe { bpf_send_signal(SIGSTOP) };
    event.submit(0);
    Some(())
}

/// The filesystem a disk-full fault reports full; set at load.
#[unsafe(no_mangle)]
static STATFS: Global<StatfsFilter> = Global::new(StatfsFilter {
    f_type: 0,
    f_fsid: 0,
    enter_buf: 24,
    exit_ret: 16,
});

/// The buffer of each target thread's statfs()/fstatfs() in flight, by pid_tgid: the exit
/// record has only the return value.
#[map]
static STATFS_BUFFERS: HashMap<u64, u64> = HashMap::with_max_entries(4096, 0);

/// A target entering statfs() or fstatfs(): its buffer is noted. One array lookup for others.
#[inline(always)]
fn statfs_enter(ctx: &TracePointContext) -> u32 {
    if current_target(Attached::Kernel).is_none() {
        return 0;
    }
    // SAFETY: a field of the tracepoint record at the offset its format file gives.
    let Ok(buf) = (unsafe { ctx.read_at::<u64>(STATFS.load().enter_buf as usize) }) else {
        return 0;
    };
    let _ = STATFS_BUFFERS.insert(bpf_get_current_pid_tgid(), buf, 0);
    0
}

/// A target's statfs() or fstatfs() returning 0 for the filesystem of the fault: no free blocks,
/// none available. One array lookup for others.
#[inline(always)]
fn statfs_exit(ctx: &TracePointContext) -> u32 {
    let Some((slot, target)) = current_target(Attached::Kernel) else {
        return 0;
    };
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: a plain value copied out of the map.
    let Some(buf) = (unsafe { STATFS_BUFFERS.get(thread) }).copied() else {
        return 0;
    };
    let _ = STATFS_BUFFERS.remove(thread);
    // SAFETY: a field of the tracepoint record at the offset its format file gives.
    if unsafe { ctx.read_at::<i64>(STATFS.load().exit_ret as usize) } == Ok(0) {
        statfs_rewrite(slot, target, buf);
    }
    0
}

/// A target's statfs() or fstatfs() returning 0, seen by an fexit program on the syscall's
/// function: only these two syscalls pay. One array lookup for others.
#[inline(always)]
fn statfs_fexit(ctx: &FExitContext) -> i32 {
    let Some((slot, target)) = current_target(Attached::Kernel) else {
        return 0;
    };
    let regs: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    // statfs(path, buf) and fstatfs(fd, buf): the buffer is the second argument of both.
    if let Some(buf) = read_at::<u64>(regs, SYSCALL_ARGS[1]).filter(|_| ret == 0) {
        statfs_rewrite(slot, target, buf);
    }
    0
}

/// `chaos disk full`'s statfs() rewrite ([`statfs_fexit`]). Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fexit(function = "__x64_sys_statfs")]
pub fn fexit_statfs(ctx: FExitContext) -> i32 {
    statfs_fexit(&ctx)
}

/// `chaos disk full`'s fstatfs() rewrite ([`statfs_fexit`]). Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fexit(function = "__x64_sys_fstatfs")]
pub fn fexit_fstatfs(ctx: FExitContext) -> i32 {
    statfs_fexit(&ctx)
}

/// The statfs struct a target's call just filled at `buf`: no free blocks, none available, if
/// it describes the fault's filesystem and the fault acts on this call.
#[inline(always)]
fn statfs_rewrite(slot: u32, target: u32, buf: u64) {
    let filter = STATFS.load();
    let field = |offset: usize| (buf as usize + offset) as *mut u64;
    // SAFETY: reads of the caller's own buffer, which the kernel has just filled.
    let (f_type, f_fsid) = unsafe {
        (
            bpf_probe_read_user(field(STATFS_F_TYPE)),
            bpf_probe_read_user(field(STATFS_F_FSID)),
        )
    };
    if f_type != Ok(filter.f_type) || f_fsid != Ok(filter.f_fsid) {
        return;
    }
    let call = || Call {
        path_checked: true,
        ..Call::UNKNOWN
    };
    if act(slot, target, OP_STATFS, call).is_some() {
        let none = 0u64;
        // SAFETY: writes of two counts into the caller's buffer, as its own statfs() would.
        unsafe {
            let _ = bpf_probe_write_user(field(STATFS_F_BFREE), &none);
            let _ = bpf_probe_write_user(field(STATFS_F_BAVAIL), &none);
        }
    }
}

#[tracepoint]
pub fn tracepoint_statfs_enter(ctx: TracePointContext) -> u32 {
    statfs_enter(&ctx)
}

#[tracepoint]
pub fn tracepoint_fstatfs_enter(ctx: TracePointContext) -> u32 {
    statfs_enter(&ctx)
}

#[tracepoint]
pub fn tracepoint_statfs_exit(ctx: TracePointContext) -> u32 {
    statfs_exit(&ctx)
}

#[tracepoint]
pub fn tracepoint_fstatfs_exit(ctx: TracePointContext) -> u32 {
    statfs_exit(&ctx)
}

/// What corrupt-io flips and where it reads; set at load.
#[unsafe(no_mangle)]
static CORRUPT: Global<CorruptFilter> = Global::new(CorruptFilter {
    bits: 1,
    enter_fd: 16,
    enter_buf: 24,
    exit_ret: 16,
    task_files: 0,
    files_fdt: 0,
    fdt_fd: 0,
    fdt_max_fds: 0,
    short: 0,
    _pad: 0,
});

/// The buffer of each target thread's read() in flight whose file the fault covers, by
/// pid_tgid.
#[map]
static CORRUPT_BUFFERS: HashMap<u64, u64> = HashMap::with_max_entries(4096, 0);

/// The `struct file *` of the current task's descriptor `fd`; 0 when it has none.
#[inline(always)]
fn file_of_fd(filter: &CorruptFilter, fd: u64) -> u64 {
    // SAFETY: a helper call without arguments.
    let task = unsafe { bpf_get_current_task() };
    let fdt = pointer_at(pointer_at(task, filter.task_files), filter.files_fdt);
    let max_fds: u32 = read_at(fdt, filter.fdt_max_fds).unwrap_or(0);
    if fd >= u64::from(max_fds) {
        return 0;
    }
    pointer_at(pointer_at(fdt, filter.fdt_fd) + fd * 8, 0)
}

/// Whether the fault in `slot` covers reads of the current task's descriptor `fd`: always
/// without `--path`.
#[inline(always)]
fn covers_fd(slot: u32, filter: &CorruptFilter, fd: u64) -> bool {
    let Some(fault) = fault_in(slot) else {
        return false;
    };
    fault.dir_ino == 0
        || under_dir(
            dentry_of_file(file_of_fd(filter, fd)),
            fault.dir_ino,
            fault.dir_dev,
        )
}

/// A target entering read() or pread64() on a file the fault covers: its buffer is noted. One
/// array lookup for others.
#[inline(always)]
fn read_enter(ctx: &TracePointContext) -> u32 {
    let Some((slot, _)) = current_target(Attached::Kernel) else {
        return 0;
    };
    let filter = CORRUPT.load();
    // SAFETY: fields of the tracepoint record at the offsets its format file gives.
    let (Ok(fd), Ok(buf)) = (unsafe {
        (
            ctx.read_at::<u64>(filter.enter_fd as usize),
            ctx.read_at::<u64>(filter.enter_buf as usize),
        )
    }) else {
        return 0;
    };
    if covers_fd(slot, &filter, fd) {
        let _ = CORRUPT_BUFFERS.insert(bpf_get_current_pid_tgid(), buf, 0);
    }
    0
}

/// A target's read() of a covered file returning data, seen by the exit tracepoint. One array
/// lookup for others.
#[inline(always)]
fn read_exit(ctx: &TracePointContext) -> u32 {
    let Some((slot, target)) = current_target(Attached::Kernel) else {
        return 0;
    };
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: a plain value copied out of the map.
    let Some(buf) = (unsafe { CORRUPT_BUFFERS.get(thread) }).copied() else {
        return 0;
    };
    let _ = CORRUPT_BUFFERS.remove(thread);
    let filter = CORRUPT.load();
    // SAFETY: a field of the tracepoint record at the offset its format file gives.
    if let Ok(read) = unsafe { ctx.read_at::<i64>(filter.exit_ret as usize) } {
        corrupt_read(slot, target, &filter, buf, read);
    }
    0
}

/// Where in `struct pt_regs` a syscall's function (`__x64_sys_read(const struct pt_regs *)`)
/// finds the syscall's first three arguments: `di`, `si`, `dx` on x86_64, `regs[0..3]` on
/// aarch64 (whose syscall return replaces `regs[0]` only after the function has returned).
#[cfg(not(bpf_target_arch = "aarch64"))]
const SYSCALL_ARGS: [u32; 3] = [112, 104, 96];
#[cfg(bpf_target_arch = "aarch64")]
const SYSCALL_ARGS: [u32; 3] = [0, 8, 16];

/// A target's read() of a covered file returning data, seen by an fexit program on the
/// syscall's function (`__x64_sys_read(const struct pt_regs *)`): one program, where only this
/// syscall pays (a syscall tracepoint puts every syscall of the machine on the slow path). One
/// array lookup for others.
#[inline(always)]
fn read_fexit(ctx: &FExitContext) -> i32 {
    let Some((slot, target)) = current_target(Attached::Kernel) else {
        return 0;
    };
    let regs: u64 = ctx.arg(0);
    let read: i64 = ctx.arg(1);
    let filter = CORRUPT.load();
    let (Some(fd), Some(buf)) = (
        read_at::<u64>(regs, SYSCALL_ARGS[0]),
        read_at::<u64>(regs, SYSCALL_ARGS[1]),
    ) else {
        return 0;
    };
    if read > 0 && covers_fd(slot, &filter, fd) {
        corrupt_read(slot, target, &filter, buf, read);
    }
    0
}

/// Whether the fault in `slot` acts on this read of a file it covers (the counters and the rules).
#[inline(always)]
fn acts_on_read(slot: u32, target: u32) -> bool {
    let call = || Call {
        path_checked: true,
        ..Call::UNKNOWN
    };
    act(slot, target, OP_CORRUPT_READ, call).is_some()
}

/// Flips `filter.bits` bits in the `read` bytes at `buf`, if the fault in `slot` acts on this
/// read; counts the bytes altered.
#[inline(always)]
fn corrupt_read(slot: u32, target: u32, filter: &CorruptFilter, buf: u64, read: i64) {
    if read <= 0 || !acts_on_read(slot, target) {
        return;
    }
    let (mut bases, mut lens) = ([0u64; MAX_IOVECS], [0u64; MAX_IOVECS]);
    (bases[0], lens[0]) = (buf, read as u64);
    let altered = flip_bits(filter.bits, &bases, &lens, 1, read as u64);
    add_injected(slot, OP_CORRUPT_BYTES, altered);
}

/// Flips `bits` bits in the `read` bytes the first `n` buffers (`bases`, `lens`) hold, each in
/// its own byte (one chosen at random in each of `bits` equal stretches); returns how many
/// bytes were altered.
#[inline(always)]
fn flip_bits(
    bits: u32,
    bases: &[u64; MAX_IOVECS],
    lens: &[u64; MAX_IOVECS],
    n: usize,
    read: u64,
) -> u64 {
    let bits = u64::from(bits).min(read);
    let stretch = read / bits.max(1);
    let mut altered = 0;
    for i in 0..u64::from(MAX_CORRUPT_BITS) {
        if i >= bits {
            break;
        }
        // SAFETY: helper calls without arguments.
        let (at, bit) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) };
        // The byte's place in what was read, found in the buffer that holds it.
        let mut at = i * stretch + u64::from(at) % stretch;
        for k in 0..MAX_IOVECS {
            if k >= n {
                break;
            }
            if at < lens[k] {
                let byte = (bases[k] + at) as *mut u8;
                // SAFETY: a read and a write of one byte of the caller's buffer, which the
                // kernel has just filled.
                unsafe {
                    if let Ok(value) = bpf_probe_read_user(byte) {
                        let flipped: u8 = value ^ (1 << (bit % 8));
                        if bpf_probe_write_user(byte, &flipped).is_ok() {
                            altered += 1;
                        }
                    }
                }
                break;
            }
            at -= lens[k];
        }
    }
    altered
}

#[fexit(function = "__x64_sys_read")]
pub fn fexit_read(ctx: FExitContext) -> i32 {
    read_fexit(&ctx)
}

/// The iovecs of a readv()/preadv() call, as far as [`MAX_IOVECS`]: bases and lengths, and how
/// many were read (0 when the caller's array cannot be read).
#[inline(always)]
fn read_iovecs(iov: u64, count: u64) -> ([u64; MAX_IOVECS], [u64; MAX_IOVECS], usize) {
    let (mut bases, mut lens) = ([0u64; MAX_IOVECS], [0u64; MAX_IOVECS]);
    let mut read = 0;
    for i in 0..MAX_IOVECS {
        if i as u64 >= count {
            break;
        }
        let at = (iov + 16 * i as u64) as *const [u64; 2];
        // SAFETY: a read of the caller's own `struct iovec`, checked by the helper.
        let Ok([base, len]) = (unsafe { bpf_probe_read_user(at) }) else {
            return (bases, lens, 0);
        };
        bases[i] = base;
        lens[i] = len;
        read = i + 1;
    }
    (bases, lens, read)
}

/// The fd, iovec array and count of a readv(), preadv() or preadv2() call, from its registers.
#[inline(always)]
fn readv_args(regs: u64) -> Option<(u64, u64, u64)> {
    Some((
        read_at(regs, SYSCALL_ARGS[0])?,
        read_at(regs, SYSCALL_ARGS[1])?,
        read_at(regs, SYSCALL_ARGS[2])?,
    ))
}

/// The readv() family leaving the kernel: for `--short`, the lengths the entry program cut put
/// back if the kernel never copied them (a descriptor not open for reading); else, bits flipped
/// in what a target's read of a covered file returned. One array lookup for others.
#[inline(always)]
fn readv_fexit(ctx: &FExitContext) -> i32 {
    let Some((slot, target)) = current_target(Attached::Kernel) else {
        return 0;
    };
    let filter = CORRUPT.load();
    if filter.short != 0 {
        restore_iovecs();
        return 0;
    }
    let regs: u64 = ctx.arg(0);
    let read: i64 = ctx.arg(1);
    let Some((fd, iov, count)) = readv_args(regs) else {
        return 0;
    };
    if read <= 0 || !covers_fd(slot, &filter, fd) {
        return 0;
    }
    let (bases, lens, n) = read_iovecs(iov, count);
    // Bits land only in the iovecs looked at.
    let mut held = 0u64;
    for len in lens {
        held = held.saturating_add(len);
    }
    let read = (read as u64).min(held);
    if read == 0 || !acts_on_read(slot, target) {
        return 0;
    }
    let altered = flip_bits(filter.bits, &bases, &lens, n, read);
    add_injected(slot, OP_CORRUPT_BYTES, altered);
    0
}

/// The iovecs of each target thread's readv() in flight that `--short` cut, by pid_tgid.
#[map]
static SHORTENED: HashMap<u64, ShortenedIovecs> = HashMap::with_max_entries(4096, 0);

/// A target entering readv(), preadv() or preadv2() on a covered file, with `--short`: its
/// iovecs are cut so that the call asks for fewer bytes (between 1 and one less than asked),
/// before the kernel copies them; the exit program puts them back. One array lookup for others.
#[inline(always)]
fn readv_fentry(ctx: &FEntryContext) -> i32 {
    let _ = shorten_iovecs(ctx);
    0
}

#[inline(always)]
fn shorten_iovecs(ctx: &FEntryContext) -> Option<()> {
    let (slot, target) = current_target(Attached::Kernel)?;
    let filter = CORRUPT.load();
    let regs: u64 = ctx.arg(0);
    let (fd, iov, count) = readv_args(regs)?;
    if filter.short == 0 || count == 0 || count > MAX_IOVECS as u64 {
        return None;
    }
    let (_, lens, n) = read_iovecs(iov, count);
    let mut asked = 0u64;
    for len in lens {
        asked = asked.saturating_add(len);
    }
    if n == 0 || asked < 2 || !covers_fd(slot, &filter, fd) || !acts_on_read(slot, target) {
        return None;
    }
    // SAFETY: a helper call without arguments.
    let keep = 1 + u64::from(unsafe { bpf_get_prandom_u32() }) % (asked - 1);
    let saved = ShortenedIovecs { iov, count, lens };
    SHORTENED
        .insert(bpf_get_current_pid_tgid(), saved, 0)
        .ok()?;
    let mut left = keep;
    for (k, len) in lens.iter().enumerate() {
        let cut = (*len).min(left);
        left -= cut;
        if cut != *len {
            let at = (iov + 16 * k as u64 + 8) as *mut u64;
            // SAFETY: a write of one iovec length in the caller's array, put back at exit.
            if unsafe { bpf_probe_write_user(at, &cut) }.is_err() {
                // A read-only array: nothing cut (the lengths before this one are put back).
                restore_iovecs();
                return None;
            }
        }
    }
    add_injected(slot, OP_CORRUPT_BYTES, asked - keep);
    Some(())
}

/// Puts back the iovec lengths of the current thread's shortened call, if it has one.
#[inline(always)]
fn restore_iovecs() {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: a plain value copied out of the map.
    let Some(saved) = (unsafe { SHORTENED.get(thread) }).copied() else {
        return;
    };
    let _ = SHORTENED.remove(thread);
    for (k, len) in saved.lens.iter().enumerate() {
        if k as u64 >= saved.count {
            break;
        }
        let at = (saved.iov + 16 * k as u64 + 8) as *mut u64;
        // SAFETY: a write of one iovec length in the caller's array, as the caller set it.
        let _ = unsafe { bpf_probe_write_user(at, len) };
    }
}

/// Every read and write checks its range here, after the kernel has copied a readv()'s iovecs
/// and before it reads or blocks: a target's shortened call gets its iovecs back at once, so
/// that nothing can find them cut once the call blocks (a pipe, a socket), even if chaos ends
/// meanwhile. (`import_iovec`, where the copy is made, cannot be traced.) One array lookup for
/// others. Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fentry(function = "rw_verify_area")]
pub fn fentry_rw_verify_area(_ctx: FEntryContext) -> i32 {
    if current_target(Attached::Kernel).is_some() {
        restore_iovecs();
    }
    0
}

/// `chaos corrupt-io --short` on readv() ([`readv_fentry`]). Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fentry(function = "__x64_sys_readv")]
pub fn fentry_readv(ctx: FEntryContext) -> i32 {
    readv_fentry(&ctx)
}

/// `chaos corrupt-io --short` on preadv() ([`readv_fentry`]). Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fentry(function = "__x64_sys_preadv")]
pub fn fentry_preadv(ctx: FEntryContext) -> i32 {
    readv_fentry(&ctx)
}

/// `chaos corrupt-io --short` on preadv2() ([`readv_fentry`]). Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fentry(function = "__x64_sys_preadv2")]
pub fn fentry_preadv2(ctx: FEntryContext) -> i32 {
    readv_fentry(&ctx)
}

/// `chaos corrupt-io` on readv() ([`readv_fexit`]). Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fexit(function = "__x64_sys_readv")]
pub fn fexit_readv(ctx: FExitContext) -> i32 {
    readv_fexit(&ctx)
}

/// `chaos corrupt-io` on preadv() ([`readv_fexit`]). Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fexit(function = "__x64_sys_preadv")]
pub fn fexit_preadv(ctx: FExitContext) -> i32 {
    readv_fexit(&ctx)
}

/// `chaos corrupt-io` on preadv2() ([`readv_fexit`]). Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fexit(function = "__x64_sys_preadv2")]
pub fn fexit_preadv2(ctx: FExitContext) -> i32 {
    readv_fexit(&ctx)
}

#[fexit(function = "__x64_sys_pread64")]
pub fn fexit_pread64(ctx: FExitContext) -> i32 {
    read_fexit(&ctx)
}

#[tracepoint]
pub fn tracepoint_read_enter(ctx: TracePointContext) -> u32 {
    read_enter(&ctx)
}

#[tracepoint]
pub fn tracepoint_pread64_enter(ctx: TracePointContext) -> u32 {
    read_enter(&ctx)
}

#[tracepoint]
pub fn tracepoint_read_exit(ctx: TracePointContext) -> u32 {
    read_exit(&ctx)
}

#[tracepoint]
pub fn tracepoint_pread64_exit(ctx: TracePointContext) -> u32 {
    read_exit(&ctx)
}

/// What a clock fault shifts, by how much, and where its exec program reads; set at load.
#[unsafe(no_mangle)]
static CLOCK: Global<ClockFilter> = Global::new(ClockFilter {
    offset_sec: 0,
    offset_nsec: 0,
    clocks: 0,
    bprm_p: 0,
    bprm_argc: 0,
    bprm_envc: 0,
    task_mm: 0,
    mm_vdso: 0,
    _pad: 0,
    shifted_real_from_boot_ns: 0,
});

/// The fault's filter, if the current process is a target whose read of `clock` (read only
/// then) the fault shifts and acts on: one array lookup for others.
#[inline(always)]
fn clock_shift(clock: impl FnOnce() -> Option<u64>) -> Option<ClockFilter> {
    let (slot, target) = current_target(Attached::Kernel)?;
    // The kernel takes the clock as an int: CPU clocks are negative, none of them shifted.
    let clock = u64::from(clock()? as u32);
    let filter = CLOCK.load();
    if clock >= 32 || filter.clocks & (1 << clock) == 0 {
        return None;
    }
    act(slot, target, OP_CLOCK, || Call::UNKNOWN)?;
    Some(filter)
}

/// Rewrites the (seconds, fraction) pair at `at` in the caller's memory shifted by the filter's
/// offset; `per_sec` fractions make a second (10^9 for a timespec, 10^6 for a timeval).
#[inline(always)]
fn shift_time(filter: &ClockFilter, at: u64, per_sec: i64) {
    let at = at as *mut [i64; 2];
    // SAFETY: a read of the caller's own struct, which the kernel has just filled.
    let Ok([sec, frac]) = (unsafe { bpf_probe_read_user(at) }) else {
        return;
    };
    let mut shifted = [
        sec + filter.offset_sec,
        frac + i64::from(filter.offset_nsec) / (1_000_000_000 / per_sec),
    ];
    if shifted[1] >= per_sec {
        shifted[0] += 1;
        shifted[1] -= per_sec;
    }
    // SAFETY: a write of the same struct, as the syscall itself would have written it.
    let _ = unsafe { bpf_probe_write_user(at, &shifted) };
}

/// `clock_gettime(clock, tp)` returning 0 to a target: `*tp` shifted if the fault covers
/// `clock`. One array lookup for others. Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fexit(function = "__x64_sys_clock_gettime")]
pub fn fexit_clock_gettime(ctx: FExitContext) -> i32 {
    let regs: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    if ret != 0 {
        return 0;
    }
    let Some(filter) = clock_shift(|| read_at(regs, SYSCALL_ARGS[0])) else {
        return 0;
    };
    if let Some(tp) = read_at::<u64>(regs, SYSCALL_ARGS[1]) {
        shift_time(&filter, tp, 1_000_000_000);
    }
    0
}

/// `gettimeofday(tv, tz)` returning 0 to a target: `*tv` shifted if the fault covers the real
/// time. One array lookup for others. Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fexit(function = "__x64_sys_gettimeofday")]
pub fn fexit_gettimeofday(ctx: FExitContext) -> i32 {
    let regs: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    if ret != 0 {
        return 0;
    }
    let tv = || read_at::<u64>(regs, SYSCALL_ARGS[0]).filter(|&tv| tv != 0);
    // Counted only where a result is shifted: gettimeofday(NULL, tz) reads no time.
    let Some(tv) = current_target(Attached::Kernel).and_then(|_| tv()) else {
        return 0;
    };
    if let Some(filter) = clock_shift(|| Some(u64::from(CLOCK_REALTIME))) {
        shift_time(&filter, tv, 1_000_000);
    }
    0
}

/// `time(tloc)` of a target: `*tloc` shifted if the fault covers the real time (the return value
/// cannot be changed from fexit). One array lookup for others. Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fexit(function = "__x64_sys_time")]
pub fn fexit_time(ctx: FExitContext) -> i32 {
    let regs: u64 = ctx.arg(0);
    let now: i64 = ctx.arg(1);
    if now < 0 {
        return 0;
    }
    let tloc = || read_at::<u64>(regs, SYSCALL_ARGS[0]).filter(|&tloc| tloc != 0);
    // Counted only where a result is shifted: time(NULL)'s is the return value alone.
    let Some(tloc) = current_target(Attached::Kernel).and_then(|_| tloc()) else {
        return 0;
    };
    if let Some(filter) = clock_shift(|| Some(u64::from(CLOCK_REALTIME))) {
        let shifted = now + filter.offset_sec;
        // SAFETY: a write of the caller's own time_t, as time() itself wrote it.
        let _ = unsafe { bpf_probe_write_user(tloc as *mut i64, &shifted) };
    }
    0
}

/// `TIMER_ABSTIME` in clock_nanosleep()'s flags.
const TIMER_ABSTIME: u64 = 1;

/// A target thread's clock_nanosleep() in flight whose absolute deadline was taken back to the
/// true clock: where its deadline lies in the caller's memory and what the caller wrote there.
#[map]
static SLEEP_DEADLINES: HashMap<u64, [i64; 3]> = HashMap::with_max_entries(4096, 0);

/// A target entering clock_nanosleep(clock, TIMER_ABSTIME, deadline) on a clock the fault
/// shifts: the deadline, read from a shifted clock, is written back less the offset before the
/// kernel copies it, so that the target sleeps as long as it meant to (not the offset more, or
/// not at all); put back as soon as the kernel holds its copy. One array lookup for others.
/// Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fentry(function = "__x64_sys_clock_nanosleep")]
pub fn fentry_clock_nanosleep(ctx: FEntryContext) -> i32 {
    let _ = unshift_deadline(&ctx);
    0
}

#[inline(always)]
fn unshift_deadline(ctx: &FEntryContext) -> Option<()> {
    let (slot, _) = current_target(Attached::Kernel)?;
    injecting(slot)?;
    let regs: u64 = ctx.arg(0);
    let (clock, flags, at): (u64, u64, u64) = (
        read_at(regs, SYSCALL_ARGS[0])?,
        read_at(regs, SYSCALL_ARGS[1])?,
        read_at(regs, SYSCALL_ARGS[2])?,
    );
    let clock = clock as u32;
    let filter = CLOCK.load();
    // The alarm clocks sleep elsewhere than do_nanosleep, where the deadline is put back.
    let clocks = filter.clocks & !(1 << CLOCK_REALTIME_ALARM | 1 << CLOCK_BOOTTIME_ALARM);
    if flags & TIMER_ABSTIME == 0 || clock >= 32 || clocks & (1 << clock) == 0 {
        return None;
    }
    // SAFETY: a read of the caller's own timespec, checked by the helper.
    let [sec, nsec] = unsafe { bpf_probe_read_user(at as *const [i64; 2]) }.ok()?;
    let mut true_deadline = [
        sec - filter.offset_sec,
        nsec - i64::from(filter.offset_nsec),
    ];
    if true_deadline[1] < 0 {
        true_deadline[0] -= 1;
        true_deadline[1] += 1_000_000_000;
    }
    SLEEP_DEADLINES
        .insert(bpf_get_current_pid_tgid(), [at as i64, sec, nsec], 0)
        .ok()?;
    // SAFETY: a write of the caller's timespec, put back once the kernel has copied it.
    unsafe { bpf_probe_write_user(at as *mut [i64; 2], &true_deadline) }.ok()
}

/// Puts back the deadline of the current thread's clock_nanosleep(), if it was taken back.
#[inline(always)]
fn restore_deadline() {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: a plain value copied out of the map.
    let Some([at, sec, nsec]) = (unsafe { SLEEP_DEADLINES.get(thread) }).copied() else {
        return;
    };
    let _ = SLEEP_DEADLINES.remove(thread);
    // SAFETY: a write of the caller's timespec, as the caller wrote it.
    let _ = unsafe { bpf_probe_write_user(at as *mut [i64; 2], &[sec, nsec]) };
}

/// Every sleep of the machine blocks here, once the kernel holds its copy of the deadline: a
/// target's is put back before it blocks, so that nothing sees it changed even if chaos ends
/// meanwhile. One array lookup for others. Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fentry(function = "do_nanosleep")]
pub fn fentry_do_nanosleep(_ctx: FEntryContext) -> i32 {
    if current_target(Attached::Kernel).is_some() {
        restore_deadline();
    }
    0
}

/// clock_nanosleep() returning: the deadline put back if the call never reached the sleep (a
/// bad clock, a fault copying it). One array lookup for others. Needs trampolines (kernel >= 5.5, BTF) and bpf_probe_write_user (no lockdown).
#[fexit(function = "__x64_sys_clock_nanosleep")]
pub fn fexit_clock_nanosleep(_ctx: FExitContext) -> i32 {
    if current_target(Attached::Kernel).is_some() {
        restore_deadline();
    }
    0
}

/// The fault in `slot` while it injects: not a dry run, and its deadline not passed (for what
/// the rules do not pick: a clock fault's execs and sleeps).
#[inline(always)]
fn injecting(slot: u32) -> Option<&'static CallFault> {
    let fault = fault_in(slot)?;
    // SAFETY: a helper call without arguments.
    (fault.dry_run == 0 && unsafe { bpf_ktime_get_ns() } < fault.deadline_ns).then_some(fault)
}

/// `time(tloc)` of a target where the kernel lets fmod_ret replace the syscall (its
/// error-injection list): the shifted second is returned instead (and written to `*tloc`), so
/// that `time(NULL)` is shifted too; for others the program returns 0 and the syscall runs.
/// Loaded past aya as fmod_ret; its section only names the function (the fexit macro would
/// drop the return value). One array lookup for others. Needs trampolines (kernel >= 5.8 for
/// bpf_ktime_get_boot_ns, BTF), CONFIG_FUNCTION_ERROR_INJECTION and bpf_probe_write_user.
#[unsafe(no_mangle)]
#[unsafe(link_section = "fexit/__x64_sys_time")]
pub extern "C" fn fmod_ret_time(ctx: *mut c_void) -> i64 {
    shifted_time(&FExitContext::new(ctx)).unwrap_or(0)
}

#[inline(always)]
fn shifted_time(ctx: &FExitContext) -> Option<i64> {
    let filter = clock_shift(|| Some(u64::from(CLOCK_REALTIME)))?;
    // SAFETY: a helper call without arguments.
    let boot = unsafe { bpf_ktime_get_boot_ns() } as i64;
    // Unsigned: signed division needs BPF ISA v4 (kernel 6.6); a shift before 1970 is left
    // to the syscall.
    let now = u64::try_from(boot.checked_add(filter.shifted_real_from_boot_ns)?).ok()?;
    let now = (now / 1_000_000_000) as i64;
    let regs: u64 = ctx.arg(0);
    if let Some(tloc) = read_at::<u64>(regs, SYSCALL_ARGS[0]).filter(|&tloc| tloc != 0) {
        // SAFETY: a write of the caller's own time_t, as time() itself would write it.
        unsafe { bpf_probe_write_user(tloc as *mut i64, &now) }.ok()?;
    }
    Some(now)
}

/// A target's exec: the new image's auxiliary vector loses its vDSO entry (its type becomes
/// AT_IGNORE), so that its C library or Go runtime reads the clock through the syscalls above.
/// Runs on every exec of the machine while a clock fault lasts: one array lookup for others.
/// Needs tp_btf (kernel >= 5.5, BTF; a raw tracepoint, no trampoline) and bpf_probe_write_user.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn tp_btf_clock_exec(ctx: BtfTracePointContext) -> i32 {
    let _ = withhold_vdso(&ctx);
    0
}

#[inline(always)]
fn withhold_vdso(ctx: &BtfTracePointContext) -> Option<()> {
    let (slot, _) = current_target(Attached::Kernel)?;
    let filter = CLOCK.load();
    // sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
    let bprm: u64 = ctx.arg(2);
    let stack: u64 = read_at(bprm, filter.bprm_p)?;
    let argc: i32 = read_at(bprm, filter.bprm_argc)?;
    let envc: i32 = read_at(bprm, filter.bprm_envc)?;
    // SAFETY: a helper call without arguments.
    let task = unsafe { bpf_get_current_task() };
    let vdso: u64 = read_at(pointer_at(task, filter.task_mm), filter.mm_vdso)?;
    // The new stack, as the ELF loader laid it out: argc, argv[] and envp[] (each ended by a
    // null pointer), then the auxiliary vector, whose first entry on x86_64 is the vDSO's.
    let words = 3 + u64::try_from(argc).ok()? + u64::try_from(envc).ok()?;
    let auxv = (stack + 8 * words) as *mut u64;
    // SAFETY: a read of the new image's stack, which the loader has just written.
    let entry: [u64; 2] = unsafe { bpf_probe_read_user(auxv as *const [u64; 2]) }.ok()?;
    // Written only where the entry is the vDSO's, at the address this process maps it (not a
    // 32-bit image's, laid out otherwise).
    if vdso == 0 || entry != [AT_SYSINFO_EHDR, vdso] {
        return None;
    }
    // Not a read of the clock: the rules (--count, --probability…) do not pick execs.
    injecting(slot)?;
    // SAFETY: a write of one word of the new image's auxiliary vector, before it runs.
    unsafe { bpf_probe_write_user(auxv, &AT_IGNORE) }.ok()?;
    add_injected(slot, OP_CLOCK_EXEC, 1);
    Some(())
}

/// Offset of `child_pid` in the `sched_process_fork` record; set at load from the format file.
#[unsafe(no_mangle)]
static FORK_CHILD_PID_OFFSET: Global<u32> = Global::new(44);

/// A fork by a tree target makes the child a target too. The parent is the current task. Runs
/// on every fork of the machine while a `--pid-tree` run lasts: one array lookup.
#[tracepoint]
pub fn tracepoint_sched_process_fork(ctx: TracePointContext) -> u32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(target) = target_of(parent) else {
        return 0;
    };
    if target.flags & TARGET_TREE == 0 {
        return 0;
    }
    // SAFETY: reading a field of the tracepoint record at the offset its format file gives.
    let Ok(child) = (unsafe { ctx.read_at::<i32>(FORK_CHILD_PID_OFFSET.load() as usize) }) else {
        return 0;
    };
    // A new thread gets an entry under its thread ID too, which no process uses while it lives;
    // the exit program removes it.
    add_target(child as u32, &target);
    0
}

/// An exiting task leaves the targets, so a recycled PID never inherits a fault.
#[tracepoint]
pub fn tracepoint_sched_process_exit(_ctx: TracePointContext) -> u32 {
    remove_target(bpf_get_current_pid_tgid() as u32);
    0
}

chaos_ebpf::gpl_program!();

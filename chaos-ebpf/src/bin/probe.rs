//! Tiny programs that `chaos probe` loads (and briefly attaches, where that is harmless) to learn
//! what the running kernel allows. None of them changes the outcome of any call.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action::XDP_PASS},
    helpers::{bpf_get_prandom_u32, bpf_override_return, bpf_probe_write_user, bpf_send_signal},
    macros::{cgroup_skb, classifier, kprobe, lsm_cgroup, tracepoint, xdp},
    programs::{LsmContext, ProbeContext, SkBuffContext, TcContext, TracePointContext, XdpContext},
};

/// Loads only where `bpf_override_return` exists (CONFIG_BPF_KPROBE_OVERRIDE). Overrides with 0
/// on a chance of one in 2^32, and is never attached to anything.
#[kprobe]
pub fn kprobe_override_probe(ctx: ProbeContext) -> u32 {
    // SAFETY: a helper call without arguments.
    if unsafe { bpf_get_prandom_u32() } == u32::MAX {
        // SAFETY: ctx.regs is the probe's own register set.
        unsafe { bpf_override_return(ctx.regs.cast(), 0) };
    }
    0
}

/// Loads only where tracepoint programs may call `bpf_send_signal` (kernel >= 5.3). Signal 0
/// delivers nothing, so attaching it is harmless.
#[tracepoint]
pub fn tracepoint_signal_probe(_ctx: TracePointContext) -> u32 {
    // SAFETY: a helper call without arguments.
    if unsafe { bpf_get_prandom_u32() } == u32::MAX {
        // SAFETY: signal 0 delivers nothing.
        unsafe { bpf_send_signal(0) };
    }
    0
}

/// Loads only where `bpf_probe_write_user` is allowed (lockdown below integrity refuses it), as
/// faults that change what a call returns will need. Never attached.
#[tracepoint]
pub fn tracepoint_write_user_probe(_ctx: TracePointContext) -> u32 {
    // SAFETY: a helper call without arguments.
    if unsafe { bpf_get_prandom_u32() } == u32::MAX {
        let byte = 0u8;
        // SAFETY: never runs (the program is only loaded); the helper checks the address.
        let _ = unsafe { bpf_probe_write_user(core::ptr::null_mut(), &byte) };
    }
    0
}

/// Lets every packet pass.
#[classifier]
pub fn tc_probe(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

/// Lets every packet pass.
#[xdp]
pub fn xdp_probe(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// Lets every packet pass.
#[cgroup_skb(ingress)]
pub fn cgroup_skb_probe(_ctx: SkBuffContext) -> i32 {
    1
}

/// An lsm_cgroup program that allows everything; lsm_cgroup programs return 1 to allow.
#[lsm_cgroup(hook = "socket_bind")]
pub fn lsm_cgroup_probe(_ctx: LsmContext) -> i32 {
    1
}

chaos_ebpf::gpl_program!();

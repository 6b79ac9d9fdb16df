//! The decision every program on calls makes: is the current process a target, does the fault
//! cover this call, and is this one of the calls it acts on.
//!
//! Built twice: as is, for kernels with BPF atomics (5.12+), and with `--cfg chaos_legacy` for
//! older ones, whose verifier refuses an atomic instruction anywhere in a program, even one no
//! path reaches. The legacy build has no PID bitmap (a process is found by its hash lookup
//! alone: still one lookup for an untargeted one) and no rules that count calls across CPUs
//! (`--after`, `--every`, `--count`, which the loader refuses there); `--probability` needs no
//! state. Its LSM and tracing programs find a cgroup target with
//! `bpf_current_task_under_cgroup` and a cgroup array, as the ancestor-id helper is not theirs
//! before 5.11.

#[cfg(not(chaos_legacy))]
use core::intrinsics::{AtomicOrdering, atomic_and, atomic_or, atomic_xadd};

use crate::path::under_dir;
#[cfg(chaos_legacy)]
use aya_ebpf::maps::CgroupArray;
use aya_ebpf::{
    Global,
    bindings::BPF_F_MMAPABLE,
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid, bpf_get_prandom_u32,
        bpf_ktime_get_ns,
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
#[cfg(not(chaos_legacy))]
use chaos_common::target::{pid_bit, pid_word};
use chaos_common::{
    counters::{COUNTER_ENTRIES, Counters, TARGET_COUNTER_ENTRIES, counter_index},
    fault::{CallFault, FaultState, MAX_FAULTS, PROBABILITY_ONE},
    target::{MAX_TARGET_PIDS, PID_BITMAP_WORDS, Target},
};

#[map]
static TARGET_PIDS: HashMap<u32, Target> = HashMap::with_max_entries(MAX_TARGET_PIDS, 0);

/// One bit per PID, set for the keys of [`TARGET_PIDS`]: an untargeted process costs this one
/// array lookup, not a hash lookup. Mappable, so that the loader sets bits atomically while the
/// fork program may set others in the same word.
#[map]
static TARGET_PID_BITS: Array<u64> = Array::with_max_entries(PID_BITMAP_WORDS, BPF_F_MMAPABLE);

/// Non-zero: the targets are the processes under this cgroup v2, not [`TARGET_PIDS`]. Set at
/// load, so the verifier drops the branch that is not taken.
#[unsafe(no_mangle)]
static TARGET_CGROUP_ID: Global<u64> = Global::new(0);
/// The depth of that cgroup below the root (the root is 0).
#[unsafe(no_mangle)]
static TARGET_CGROUP_LEVEL: Global<u32> = Global::new(0);

/// The legacy build's handle on that cgroup: its directory at index 0, set by the loader.
#[cfg(chaos_legacy)]
#[map]
static TARGET_CGROUP: CgroupArray = CgroupArray::with_max_entries(1, 0);

/// The fault slot a cgroup target uses.
pub const CGROUP_TARGET_SLOT: u32 = 0;

/// The target cgroup's id; 0 when the targets are processes.
#[inline(always)]
pub fn target_cgroup() -> u64 {
    TARGET_CGROUP_ID.load()
}

#[map]
static FAULTS: Array<CallFault> = Array::with_max_entries(MAX_FAULTS, 0);

#[map]
static FAULT_STATE: Array<FaultState> = Array::with_max_entries(MAX_FAULTS, 0);

#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

#[map]
static TARGET_COUNTERS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(TARGET_COUNTER_ENTRIES, 0);

/// What a program knows of the call it is looking at, for the fault's filters.
#[derive(Clone, Copy)]
pub struct Call {
    /// Port in host order; 0 when the hook does not see one.
    pub port: u32,
    /// Address family; 0 when the hook does not see one.
    pub family: u32,
    /// IP address in the layout of [`CallFault::addr`]; zeros when the hook does not see one.
    pub addr: [u32; 4],
    /// The `struct dentry *` of the file the call acts on; 0 when the hook has none.
    pub dentry: u64,
    /// What only a kprobe on a kernel function tells (`--caller` on the stack, an allocation
    /// that may be failed); true elsewhere.
    pub fn_filters_pass: bool,
    /// The program judged the `--path` filter itself (statfs, by the filesystem's id).
    pub path_checked: bool,
}

impl Call {
    /// A call whose address the hook does not see: it passes only unfiltered faults.
    pub const UNKNOWN: Call = Call {
        port: 0,
        family: 0,
        addr: [0; 4],
        dentry: 0,
        fn_filters_pass: true,
        path_checked: false,
    };
}

/// What a program is attached to, which decides the helpers the verifier lets it call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// A cgroup (sock_addr, sock programs).
    Cgroup,
    /// A kernel function or event (LSM hooks, tracepoints, kprobes).
    Kernel,
}

/// The fault that acts on the current call of `op`, or `None` to let it pass. `call` reads what
/// the filters need, and runs only for targets.
///
/// An untargeted process costs exactly one array lookup here; everything after it runs only for
/// targets.
#[inline(always)]
pub fn acting_fault(
    op: u32,
    attached: Attached,
    call: impl FnOnce() -> Call,
) -> Option<&'static CallFault> {
    let (slot, target) = current_target(attached)?;
    act(slot, target, op, call)
}

/// The fault in `slot` if it acts on this call of `op` by target `target` (index of its
/// counters): the deadline, the filters, the counters and the rules.
#[inline(always)]
pub fn act(
    slot: u32,
    target: u32,
    op: u32,
    call: impl FnOnce() -> Call,
) -> Option<&'static CallFault> {
    let fault = FAULTS.get(slot)?;
    // SAFETY: a helper call without arguments.
    if !fault.covers(op) || unsafe { bpf_ktime_get_ns() } >= fault.deadline_ns {
        return None;
    }
    let call = call();
    if !call.fn_filters_pass
        || !fault.filters_pass(call.port, call.family, &call.addr)
        || (fault.dir_ino != 0
            && !call.path_checked
            && !under_dir(call.dentry, fault.dir_ino, fault.dir_dev))
    {
        return None;
    }
    let by_op = COUNTERS.get_ptr_mut(counter_index(slot, op))?;
    let by_target = TARGET_COUNTERS.get_ptr_mut(target)?;
    // SAFETY: per-CPU values, and programs do not nest on one CPU for these hooks.
    let (by_op, by_target) = unsafe { (&mut *by_op, &mut *by_target) };
    by_op.matched += 1;
    by_target.matched += 1;
    if fault.dry_run != 0 || !due(fault, slot)? {
        return None;
    }
    by_op.injected += 1;
    by_target.injected += 1;
    Some(fault)
}

/// Adds `n` to the injected count of `op` in `slot`: for a count that is not of calls (the bytes
/// corrupt-io altered).
#[inline(always)]
pub fn add_injected(slot: u32, op: u32, n: u64) {
    if let Some(counters) = COUNTERS.get_ptr_mut(counter_index(slot, op)) {
        // SAFETY: a per-CPU value, and programs do not nest on one CPU for these hooks.
        unsafe { (*counters).injected += n };
    }
}

/// The fault in `slot`, if one is set.
#[inline(always)]
pub fn fault_in(slot: u32) -> Option<&'static CallFault> {
    FAULTS.get(slot)
}

/// The fault slot and target index of the current process if it is a target: one array lookup,
/// or for a cgroup target one ancestor-id read.
#[inline(always)]
pub fn current_target(attached: Attached) -> Option<(u32, u32)> {
    let cgroup = TARGET_CGROUP_ID.load();
    if cgroup != 0 {
        return in_target_cgroup(cgroup, attached).then_some((CGROUP_TARGET_SLOT, 0));
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    target_of(tgid).map(|target| (target.fault, target.index))
}

/// Whether the current process is under the target cgroup `cgroup`.
#[inline(always)]
fn in_target_cgroup(cgroup: u64, attached: Attached) -> bool {
    #[cfg(chaos_legacy)]
    if attached == Attached::Kernel {
        return TARGET_CGROUP.current_task_under_cgroup(0) == Ok(true);
    }
    // Only the legacy build tells the two apart.
    #[cfg(not(chaos_legacy))]
    let _ = attached;
    let level = TARGET_CGROUP_LEVEL.load() as i32;
    // SAFETY: a helper call with a plain integer argument.
    unsafe { bpf_get_current_ancestor_cgroup_id(level) == cgroup }
}

/// The target entry of `pid`, if it is a target: one array lookup for a process that is not
/// (the legacy build: one hash lookup).
#[inline(always)]
pub fn target_of(pid: u32) -> Option<Target> {
    #[cfg(not(chaos_legacy))]
    if TARGET_PID_BITS
        .get(pid_word(pid))
        .is_some_and(|word| word & pid_bit(pid) == 0)
    {
        return None;
    }
    // SAFETY: the value is copied out at once; the entry may be deleted concurrently.
    unsafe { TARGET_PIDS.get(pid) }.copied()
}

/// Makes `pid` a target of `target` (a process or thread forked by a tree target).
#[inline(always)]
pub fn add_target(pid: u32, target: &Target) {
    if TARGET_PIDS.insert(pid, target, 0).is_ok() {
        set_pid_bit(pid, true);
    }
}

/// Takes the exiting task `pid` out of the targets, if it was one.
#[inline(always)]
pub fn remove_target(pid: u32) {
    if TARGET_PIDS.remove(pid).is_ok() {
        set_pid_bit(pid, false);
    }
}

/// Sets or clears `pid`'s bit in the bitmap that spares untargeted processes the hash lookup.
#[cfg(not(chaos_legacy))]
#[inline(always)]
fn set_pid_bit(pid: u32, on: bool) {
    let Some(word) = TARGET_PID_BITS.get_ptr_mut(pid_word(pid)) else {
        return;
    };
    // SAFETY: `word` points into the map's value, which outlives the call.
    unsafe {
        if on {
            atomic_or::<u64, u64, { AtomicOrdering::SeqCst }>(word, pid_bit(pid));
        } else {
            atomic_and::<u64, u64, { AtomicOrdering::SeqCst }>(word, !pid_bit(pid));
        }
    }
}

/// The legacy build has no bitmap.
#[cfg(chaos_legacy)]
#[inline(always)]
fn set_pid_bit(_pid: u32, _on: bool) {}

/// Whether this covered call is one the fault's rules pick (`after`, `every`, `probability`,
/// `count`). The sequence and the injected total are shared by all CPUs.
#[cfg(not(chaos_legacy))]
#[inline(always)]
fn due(fault: &CallFault, slot: u32) -> Option<bool> {
    let state = FAULT_STATE.get_ptr_mut(slot)?;
    // SAFETY: a field address within the map value `state` points to; nothing is read.
    let seq = fetch_add(unsafe { &raw mut (*state).seen });
    if seq < fault.after {
        return Some(false);
    }
    if fault.every > 1 && !(seq - fault.after).is_multiple_of(fault.every) {
        return Some(false);
    }
    // SAFETY: a helper call without arguments.
    let draw = || u64::from(unsafe { bpf_get_prandom_u32() });
    if fault.probability < PROBABILITY_ONE && draw() >= fault.probability {
        return Some(false);
    }
    // SAFETY: as for `seen`.
    if fault.count != 0 && fetch_add(unsafe { &raw mut (*state).acted }) >= fault.count {
        return Some(false);
    }
    Some(true)
}

/// Whether this covered call is one the fault picks, in the legacy build: by `probability`
/// alone (the loader refuses the rules that count calls).
#[cfg(chaos_legacy)]
#[inline(always)]
fn due(fault: &CallFault, _slot: u32) -> Option<bool> {
    // SAFETY: a helper call without arguments.
    let draw = u64::from(unsafe { bpf_get_prandom_u32() });
    Some(fault.probability >= PROBABILITY_ONE || draw < fault.probability)
}

/// Atomically adds one and returns the previous value (a BPF atomic fetch-add, kernel >= 5.12).
/// core's `AtomicU64::fetch_add` is not offered on the BPF target, the intrinsic is. SeqCst, not
/// Relaxed: with Relaxed, LLVM 22's BPF backend emits a plain locked add (no fetch) and then
/// treats the addend register as the old value.
#[cfg(not(chaos_legacy))]
#[inline(always)]
fn fetch_add(counter: *mut u64) -> u64 {
    // SAFETY: `counter` points into a map value that outlives the call.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(counter, 1) }
}

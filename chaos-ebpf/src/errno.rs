//! The decision every errno program makes: is the current process a target, and what does it get.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use chaos_common::{
    counters::{COUNTER_ENTRIES, Counters, counter_index},
    errno::{ErrnoFault, MAX_FAULTS, MAX_TARGET_PIDS, Target},
};

#[map]
static TARGET_PIDS: HashMap<u32, Target> = HashMap::with_max_entries(MAX_TARGET_PIDS, 0);

#[map]
static ERRNO_FAULTS: Array<ErrnoFault> = Array::with_max_entries(MAX_FAULTS, 0);

#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

/// The errno (positive) that the current call of `op` must fail with, or `None` to let it pass.
///
/// An untargeted process costs exactly one hash lookup here; everything after it runs only for
/// targets.
#[inline(always)]
pub fn injected_errno(op: u32) -> Option<i32> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is copied out at once; the entry may be deleted concurrently.
    let target = unsafe { TARGET_PIDS.get(&tgid) }?.fault;
    let fault = ERRNO_FAULTS.get(target)?;
    if !fault.covers(op) || unsafe { bpf_ktime_get_ns() } >= fault.deadline_ns {
        return None;
    }
    let counters = COUNTERS.get_ptr_mut(counter_index(target, op))?;
    // SAFETY: per-CPU value, and programs do not nest on one CPU for these hooks.
    let counters = unsafe { &mut *counters };
    counters.matched += 1;
    if fault.dry_run != 0 {
        return None;
    }
    counters.injected += 1;
    Some(fault.errno)
}

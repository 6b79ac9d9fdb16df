//! Per-CPU counters, one pair per (fault slot, operation) and one per target; userspace sums the
//! CPUs.

use crate::{fault::MAX_FAULTS, ops::OP_COUNT, target::MAX_TARGET_PIDS};

/// Entries of [`crate::names::MAP_COUNTERS`].
pub const COUNTER_ENTRIES: u32 = MAX_FAULTS * OP_COUNT;
/// Entries of [`crate::names::MAP_TARGET_COUNTERS`], indexed by [`crate::target::Target::index`].
pub const TARGET_COUNTER_ENTRIES: u32 = MAX_TARGET_PIDS;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Calls by a target that the fault covers, while the fault was live.
    pub matched: u64,
    /// Of those, the calls that were failed.
    pub injected: u64,
}
const _: () = assert!(core::mem::size_of::<Counters>() == 16);

impl Counters {
    /// `total` plus `more`: for summing the CPUs' counters.
    pub fn sum(total: Counters, more: &Counters) -> Counters {
        Counters {
            matched: total.matched + more.matched,
            injected: total.injected + more.injected,
        }
    }
}

/// The counter index of `op` under fault `slot`.
pub const fn counter_index(slot: u32, op: u32) -> u32 {
    slot * OP_COUNT + op
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, no padding (size checked above).
unsafe impl aya::Pod for Counters {}

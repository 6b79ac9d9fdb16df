//! Who a fault applies to: target processes, their entries and the PID bitmap before them.

/// Most processes one run can target.
pub const MAX_TARGET_PIDS: u32 = 4096;

/// Words of the target PID bitmap, [`crate::names::MAP_TARGET_PID_BITS`]: one bit for every
/// PID Linux can hand out (PID_MAX_LIMIT, 2^22 on 64-bit), 512 KiB.
pub const PID_BITMAP_WORDS: u32 = (1 << 22) / 64;

/// The bitmap word that holds `pid`'s bit.
#[inline(always)]
pub const fn pid_word(pid: u32) -> u32 {
    pid / 64
}

/// `pid`'s bit within its word.
#[inline(always)]
pub const fn pid_bit(pid: u32) -> u64 {
    1 << (pid % 64)
}

/// The value of a target entry: which fault slot applies to this process, and how.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub fault: u32,
    /// [`TARGET_TREE`]: processes this one forks become targets too.
    pub flags: u32,
    /// The target as the user named it: its entry in the per-target counters. A tree's
    /// descendants share their root's index; a cgroup target is index 0.
    pub index: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Target>() == 16);

/// [`Target::flags`]: the children of this process inherit the entry.
pub const TARGET_TREE: u32 = 1;

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, no padding (checked by the size assertion above).
unsafe impl aya::Pod for Target {}

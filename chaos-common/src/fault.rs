//! A fault on calls as the kernel side reads it: which calls of a target it covers, the filters
//! a call must pass, which of the covered calls it acts on, and how it acts (an errno, a signal).

/// Most faults one run can hold; each has a slot in [`crate::names::MAP_FAULTS`].
pub const MAX_FAULTS: u32 = 16;

/// One fault as the kernel side sees it. A call the fault covers is acted on when its sequence
/// number `seq` (0-based, over all CPUs) passes `after` and `every`, the random draw passes
/// `probability`, and fewer than `count` calls were acted on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallFault {
    /// Bit `1 << OP_*` set for every operation this fault covers.
    pub ops: u64,
    /// After this `CLOCK_MONOTONIC` time (`bpf_ktime_get_ns`) the fault acts on nothing, even if
    /// the loader hangs or is stopped.
    pub deadline_ns: u64,
    /// The first `after` covered calls pass.
    pub after: u64,
    /// Of the calls past `after`, every `every`-th is a candidate (1: each one).
    pub every: u64,
    /// Act on at most this many calls; 0: no limit.
    pub count: u64,
    /// Act on a candidate when a 32-bit random draw is below this; [`PROBABILITY_ONE`]: always.
    pub probability: u64,
    /// A failed call returns `-errno` (a positive errno); 0 for a fault that fails nothing.
    pub errno: i32,
    /// The signal sent to a target entering the syscall ([`crate::ops::OP_SIGNAL`]); 0: none.
    pub signal: u32,
    /// Non-zero: count matches but act on none.
    pub dry_run: u32,
    /// Only calls on this port (host order; the destination of connect/send, the port of bind);
    /// 0: any. Only the cgroup socket programs see ports.
    pub port: u32,
    /// Only calls on this address family (AF_INET, AF_INET6, AF_UNIX); 0: any.
    pub family: u32,
    pub _pad: u32,
    /// Only calls whose IP address, masked with `addr_mask`, equals this: four network-order
    /// words, an IPv4 address written as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), so that an IPv4
    /// network also matches mapped destinations of IPv6 sockets. The destination of connect and
    /// send, the local address of bind.
    pub addr: [u32; 4],
    /// All zero: any address.
    pub addr_mask: [u32; 4],
    /// Non-zero: only calls on files at or below the directory with this inode number on the
    /// filesystem `dir_dev` (the kernel's `s_dev`, `MAJOR << 20 | MINOR`), found by following
    /// `d_parent` up to [`MAX_PATH_DEPTH`] levels (within one filesystem).
    pub dir_ino: u64,
    pub dir_dev: u32,
    pub _pad2: u32,
    /// What a function a kprobe overrides returns: `-errno`, or 0 or 1 for a function of
    /// the error-injection list's NULL or TRUE type.
    pub retval: i64,
}
const _: () = assert!(core::mem::size_of::<CallFault>() == 128);

/// How many directories up the `--path` filter looks for its directory.
pub const MAX_PATH_DEPTH: u32 = 64;

/// Where the fields the `--path` filter follows lie in this kernel's structs (from its BTF), in
/// bytes. All zero unless the fault has a path filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathOffsets {
    /// `file->f_path.dentry`
    pub file_dentry: u32,
    /// `file->f_inode`
    pub file_inode: u32,
    /// `path->dentry`
    pub path_dentry: u32,
    /// `linux_binprm->file`
    pub bprm_file: u32,
    /// `dentry->d_parent`
    pub dentry_parent: u32,
    /// `dentry->d_inode`
    pub dentry_inode: u32,
    /// `inode->i_ino`
    pub inode_ino: u32,
    /// `inode->i_sb`
    pub inode_sb: u32,
    /// `super_block->s_dev`
    pub sb_dev: u32,
}
const _: () = assert!(core::mem::size_of::<PathOffsets>() == 36);

impl PathOffsets {
    pub const ZERO: PathOffsets = PathOffsets {
        file_dentry: 0,
        file_inode: 0,
        path_dentry: 0,
        bprm_file: 0,
        dentry_parent: 0,
        dentry_inode: 0,
        inode_ino: 0,
        inode_sb: 0,
        sb_dev: 0,
    };
}

/// Which bios a disk fault matches, and where the block layer's fields lie in this kernel's
/// structs (from its BTF, in bytes). `dev` 0: no disk fault.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskFilter {
    /// The device as the kernel numbers it (`MAJOR << 20 | MINOR`).
    pub dev: u32,
    /// Non-zero: `dev` is a whole disk, and bios to its partitions match too (their sectors
    /// counted from the start of the disk).
    pub whole: u32,
    /// Only bios whose data overlaps sectors `[sector_first, sector_end)` of the device named;
    /// `sector_end` 0: any (and bios without data, flushes, match only without a range).
    pub sector_first: u64,
    pub sector_end: u64,
    /// The whole disk's minor numbers, its own first: its partitions numbered
    /// `dev + 1 .. dev + minors`; the rest have [`BLOCK_EXT_MAJOR`].
    pub minors: u32,
    /// The `REQ_PREFLUSH` bit of `bio->bi_opf`.
    pub req_preflush: u32,
    /// The `BIO_REMAPPED` bit of `bio->bi_flags`: the sector is the whole disk's already (the
    /// rest of a split bio, submitted again).
    pub bio_remapped: u32,
    /// `bio->bi_bdev`, `bio->bi_opf`, `bio->bi_flags`, `bio->bi_iter.bi_sector`,
    /// `bio->bi_iter.bi_size`
    pub bio_bdev: u32,
    pub bio_opf: u32,
    pub bio_flags: u32,
    pub bio_sector: u32,
    pub bio_size: u32,
    /// `block_device->bd_dev`, `block_device->bd_start_sect`, `block_device->bd_disk`
    pub bdev_dev: u32,
    pub bdev_start_sect: u32,
    pub bdev_disk: u32,
    /// `gendisk->part0` (the whole disk's `block_device`)
    pub disk_part0: u32,
    /// Non-zero: only bios the current task submits, if it is a target (`--pid`, `--cgroup`…),
    /// and with `attributed` those the kernel charges to the target cgroup.
    pub targeted: u32,
    /// Non-zero (with a cgroup target on cgroup v2): also the bios the kernel charges to that
    /// cgroup or one below it (`bio->bi_blkg`'s cgroup: the writeback of the pages it
    /// dirtied), but for a block device's own pages (filesystem metadata).
    pub attributed: u32,
    /// `bio->bi_blkg`, `blkcg_gq->blkcg`, `blkcg->css.cgroup`, `cgroup->kn`,
    /// `kernfs_node->id` (the cgroup id), `kernfs_node->parent`
    pub bio_blkg: u32,
    pub blkg_blkcg: u32,
    pub blkcg_cgroup: u32,
    pub cgroup_kn: u32,
    pub kn_id: u32,
    pub kn_parent: u32,
    /// `bio->bi_io_vec`, `bio_vec->bv_page`, `page->mapping`, `address_space->host`,
    /// `inode->i_mode`: whose pages a bio writes.
    pub bio_io_vec: u32,
    pub bvec_page: u32,
    pub page_mapping: u32,
    pub mapping_host: u32,
    pub inode_mode: u32,
    /// This kernel's numbers of the operations that write without being `REQ_OP_WRITE`
    /// (`REQ_OP_WRITE_ZEROES`, `REQ_OP_ZONE_APPEND`) or discard without being
    /// `REQ_OP_DISCARD` (`REQ_OP_SECURE_ERASE`); [`NO_REQ_OP`] where it has none.
    pub op_write_zeroes: u32,
    pub op_zone_append: u32,
    pub op_secure_erase: u32,
}
const _: () = assert!(core::mem::size_of::<DiskFilter>() == 136);

/// The major number of the partitions a disk has no minor number of its own for (linux/major.h).
pub const BLOCK_EXT_MAJOR: u32 = 259;

/// The kernel's `dev_t` is `MAJOR << MINOR_BITS | MINOR`.
pub const MINOR_BITS: u32 = 20;

/// [`DiskFilter`]'s operation number for an operation the kernel lacks.
pub const NO_REQ_OP: u32 = u32::MAX;

impl DiskFilter {
    pub const ZERO: DiskFilter = DiskFilter {
        dev: 0,
        whole: 0,
        sector_first: 0,
        sector_end: 0,
        req_preflush: 0,
        bio_remapped: 0,
        bio_bdev: 0,
        bio_opf: 0,
        bio_flags: 0,
        bio_sector: 0,
        bio_size: 0,
        bdev_dev: 0,
        bdev_start_sect: 0,
        bdev_disk: 0,
        disk_part0: 0,
        minors: 0,
        targeted: 0,
        attributed: 0,
        bio_io_vec: 0,
        bvec_page: 0,
        page_mapping: 0,
        mapping_host: 0,
        inode_mode: 0,
        bio_blkg: 0,
        blkg_blkcg: 0,
        blkcg_cgroup: 0,
        cgroup_kn: 0,
        kn_id: 0,
        kn_parent: 0,
        op_write_zeroes: NO_REQ_OP,
        op_zone_append: NO_REQ_OP,
        op_secure_erase: NO_REQ_OP,
    };
}

/// What only a kprobe on a kernel function (`--kernel-fn`) can tell of a call, set at load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFnFilter {
    /// `--caller FN`: FN's code, `[caller_start, caller_end)`; a call is failed only when one
    /// of the kernel stack's return addresses lies there. `caller_end` 0: any caller.
    pub caller_start: u64,
    pub caller_end: u64,
    /// For an allocation function: the argument (0 or 1) holding the gfp flags, the bits an
    /// allocation must have to be failed (`__GFP_DIRECT_RECLAIM`: it may sleep, so it is a
    /// task's own and not an interrupt's that ran on the target's CPU) and those it must not
    /// have (`__GFP_NOFAIL`). `gfp_needs` 0: no gfp check.
    pub gfp_arg: u32,
    pub gfp_needs: u32,
    pub gfp_refuses: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<KernelFnFilter>() == 32);

/// The filesystem whose statfs() results `chaos disk full` rewrites, as statfs() itself names it,
/// and where the syscall tracepoints' records hold the fields the programs read (from their
/// format files). `f_type` 0: no such fault.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatfsFilter {
    /// `f_type` and the 8 bytes of `f_fsid` that statfs() reports for the filesystem.
    pub f_type: u64,
    pub f_fsid: u64,
    /// Offset of `buf` in the `sys_enter_statfs` and `sys_enter_fstatfs` records, and of `ret`
    /// in the `sys_exit_*` ones.
    pub enter_buf: u32,
    pub exit_ret: u32,
}
const _: () = assert!(core::mem::size_of::<StatfsFilter>() == 24);

/// Offsets in the `struct statfs` statfs() fills on 64-bit machines (the kernel's
/// `asm-generic/statfs.h`, with 8-byte words).
pub const STATFS_F_TYPE: usize = 0;
pub const STATFS_F_BFREE: usize = 24;
pub const STATFS_F_BAVAIL: usize = 32;
pub const STATFS_F_FSID: usize = 56;

/// What `chaos corrupt-io` flips in a target's reads, and where the fields its programs read lie:
/// in the syscall tracepoints' records (from their format files) and, for `--path`, in the
/// structs that lead from a task to the file of a descriptor (from the kernel's BTF; zero
/// without `--path`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CorruptFilter {
    /// Bits flipped in each read, one per byte, in distinct bytes (at most the bytes read).
    pub bits: u32,
    /// Offsets of `fd` and `buf` in the `sys_enter_read`/`sys_enter_pread64` records, and of
    /// `ret` in the `sys_exit_*` ones.
    pub enter_fd: u32,
    pub enter_buf: u32,
    pub exit_ret: u32,
    /// `task_struct->files`, `files_struct->fdt`, `fdtable->fd`, `fdtable->max_fds`
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    /// Non-zero (`--short`): readv()/preadv() return fewer bytes than asked instead of flipped
    /// bits.
    pub short: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<CorruptFilter>() == 40);

/// The most iovecs of a readv()/preadv() call corrupt-io looks at: bits are flipped in the
/// bytes of the first ones, and a call with more is not shortened.
pub const MAX_IOVECS: usize = 8;

/// `chaos corrupt-io --short`: a target thread's readv()/preadv() in flight whose iovecs were
/// shortened at entry, and their lengths as the caller set them, restored as the call returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShortenedIovecs {
    /// The caller's `struct iovec` array, and how many entries it has.
    pub iov: u64,
    pub count: u64,
    pub lens: [u64; MAX_IOVECS],
}
const _: () = assert!(core::mem::size_of::<ShortenedIovecs>() == 80);

/// What `chaos clock` shifts and by how much, and where the fields its exec program reads lie
/// (from the kernel's BTF).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockFilter {
    /// The shift, as whole seconds (negative: back) plus nanoseconds in `0..1_000_000_000`.
    pub offset_sec: i64,
    pub offset_nsec: u32,
    /// Bit N set: clock ID N is shifted in clock_gettime(); bit [`CLOCK_REALTIME`] also
    /// shifts gettimeofday() and time().
    pub clocks: u32,
    /// `linux_binprm->p`, `->argc`, `->envc`: where the new image's auxiliary vector lies.
    pub bprm_p: u32,
    pub bprm_argc: u32,
    pub bprm_envc: u32,
    /// `task_struct->mm`, `mm_struct->context.vdso`: the address the vDSO entry must hold.
    pub task_mm: u32,
    pub mm_vdso: u32,
    pub _pad: u32,
    /// The shifted real time less CLOCK_BOOTTIME, in nanoseconds, when the run starts: what
    /// time() returns where a program answers it (the two clocks differ only when the real
    /// time is set).
    pub shifted_real_from_boot_ns: i64,
}
const _: () = assert!(core::mem::size_of::<ClockFilter>() == 48);

/// The clock IDs of linux/time.h that `chaos clock` can shift.
pub const CLOCK_REALTIME: u32 = 0;
pub const CLOCK_MONOTONIC: u32 = 1;
pub const CLOCK_MONOTONIC_RAW: u32 = 4;
pub const CLOCK_REALTIME_COARSE: u32 = 5;
pub const CLOCK_MONOTONIC_COARSE: u32 = 6;
pub const CLOCK_BOOTTIME: u32 = 7;
pub const CLOCK_REALTIME_ALARM: u32 = 8;
pub const CLOCK_BOOTTIME_ALARM: u32 = 9;
pub const CLOCK_TAI: u32 = 11;

/// Auxiliary vector entry types (linux/auxvec.h): the vDSO's address, and an entry to ignore.
pub const AT_SYSINFO_EHDR: u64 = 33;
pub const AT_IGNORE: u64 = 1;

/// `chaos delay`: one stop, as the kernel tells chaos through the ring buffer: process `tgid`
/// was sent SIGSTOP at `at_ns` (CLOCK_MONOTONIC) as its thread `tid` left a delayed syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayEvent {
    pub at_ns: u64,
    pub tgid: u32,
    pub tid: u32,
}
const _: () = assert!(core::mem::size_of::<DelayEvent>() == 16);

/// How many processes `chaos delay` can hold stopped at once.
pub const MAX_DELAYED: u32 = 4096;

/// The most bits `--bits` flips in one read.
pub const MAX_CORRUPT_BITS: u32 = 64;

/// How many frames of the kernel stack `--caller` looks at.
pub const MAX_STACK_FRAMES: usize = 64;

/// [`CallFault::probability`] for "always": above every 32-bit draw.
pub const PROBABILITY_ONE: u64 = 1 << 32;

impl CallFault {
    pub const fn covers(&self, op: u32) -> bool {
        self.ops & (1 << op) != 0
    }

    /// Whether a call on `port`, `family` and IP address `addr` (in the layout of
    /// [`CallFault::addr`]; zeros when the hook does not see one) passes the filters.
    #[inline(always)]
    pub fn filters_pass(&self, port: u32, family: u32, addr: &[u32; 4]) -> bool {
        if (self.port != 0 && self.port != port) || (self.family != 0 && self.family != family) {
            return false;
        }
        let mask = &self.addr_mask;
        if mask[0] | mask[1] | mask[2] | mask[3] == 0 {
            return true;
        }
        (family == AF_INET || family == AF_INET6)
            && addr[0] & mask[0] == self.addr[0]
            && addr[1] & mask[1] == self.addr[1]
            && addr[2] & mask[2] == self.addr[2]
            && addr[3] & mask[3] == self.addr[3]
    }
}

/// Address families as the kernel numbers them (linux/socket.h).
pub const AF_UNIX: u32 = 1;
pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

/// The word `::ffff:0:0/96` puts before an IPv4 address, in network order as the kernel keeps it.
pub const IPV4_MAPPED_WORD: u32 = 0xffff_u32.to_be();

/// Run-time state of a fault shared by all CPUs, updated atomically.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultState {
    /// Covered calls so far: the next call's sequence number.
    pub seen: u64,
    /// Calls acted on so far, for `count`.
    pub acted: u64,
}
const _: () = assert!(core::mem::size_of::<FaultState>() == 16);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, no padding (size checked above).
unsafe impl aya::Pod for FaultState {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, no padding (size checked above).
unsafe impl aya::Pod for PathOffsets {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, explicit padding (size checked above).
unsafe impl aya::Pod for DiskFilter {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, explicit padding (size checked above).
unsafe impl aya::Pod for KernelFnFilter {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers and arrays of them, explicit padding (size checked above).
unsafe impl aya::Pod for CallFault {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, no padding (size checked above).
unsafe impl aya::Pod for StatfsFilter {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, no padding (size checked above).
unsafe impl aya::Pod for CorruptFilter {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, no padding (size checked above).
unsafe impl aya::Pod for DelayEvent {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, explicit padding (size checked above).
unsafe impl aya::Pod for ClockFilter {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers only, no padding (size checked above).
unsafe impl aya::Pod for ShortenedIovecs {}

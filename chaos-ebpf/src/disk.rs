//! `chaos disk error`: which operation a bio is, and whether it goes to the fault's device and
//! sectors. Follows kernel pointers at offsets read from the running kernel's BTF at load.

use chaos_common::{
    fault::{BLOCK_EXT_MAJOR, DiskFilter, MINOR_BITS},
    ops::*,
};

/// How a program reads the kernel memory a bio leads to.
pub trait Memory {
    /// The `T` at `base + offset`; `None` when `base` is 0 or the read fails.
    fn read_at<T>(base: u64, offset: u32) -> Option<T>;

    /// The pointer at `base + offset`; 0 when `base` is 0 or the read fails.
    #[inline(always)]
    fn pointer_at(base: u64, offset: u32) -> u64 {
        Self::read_at(base, offset).unwrap_or(0)
    }
}

/// Through `bpf_probe_read_kernel`, a helper call per read, which checks any address: a
/// kprobe's argument is a number to the verifier.
pub enum Probed {}

impl Memory for Probed {
    #[inline(always)]
    fn read_at<T>(base: u64, offset: u32) -> Option<T> {
        crate::path::read_at(base, offset)
    }
}

/// Plain loads from a trampoline program's typed argument: the verifier follows the pointer
/// types through the kernel's BTF (the offsets, in read-only globals frozen before the load,
/// are constants to it, as it requires) and the JIT makes each load one instruction that reads
/// 0 where the memory faults, where a probe read is a helper call.
pub enum Typed {}

impl Memory for Typed {
    #[inline(always)]
    fn read_at<T>(base: u64, offset: u32) -> Option<T> {
        if base == 0 {
            return None;
        }
        // SAFETY: the verifier checks the load against the type `base` points to, and the
        // JIT turns a fault into 0.
        Some(unsafe { core::ptr::read_volatile((base + u64::from(offset)) as *const T) })
    }
}

/// The fault's filter, set by the loader (so read volatile: the compiler must not take the
/// value written here). Every device's bios read it: field by field until a bio is the
/// device's, as a read of the whole filter copies all of it first.
#[unsafe(no_mangle)]
static DISK: DiskFilter = DiskFilter::ZERO;

/// Field `$field` of [`DISK`], read alone.
macro_rules! disk {
    ($field:ident) => {
        // SAFETY: a field of a static, which the loader fills before any program runs.
        unsafe { core::ptr::read_volatile(&DISK.$field) }
    };
}

/// The whole of [`DISK`].
#[inline(always)]
fn disk_filter() -> DiskFilter {
    // SAFETY: as `disk!`.
    unsafe { core::ptr::read_volatile(&DISK) }
}

/// Whether only the targets' own bios fail.
#[inline(always)]
pub fn targeted() -> bool {
    disk!(targeted) != 0
}

/// How far above a bio's cgroup the target cgroup is looked for.
const MAX_CGROUP_DEPTH: usize = 16;

/// `S_IFMT` and `S_IFBLK` of `inode->i_mode` (linux/stat.h).
const S_IFMT: u16 = 0o170_000;
const S_IFBLK: u16 = 0o060_000;
/// `PAGE_MAPPING_ANON`: the low bit of `page->mapping`, set for anonymous memory.
const PAGE_MAPPING_ANON: u64 = 1;

/// Whether the kernel charges bio `bio` to cgroup `cgroup` or one below it: the io cgroup of
/// the bio (`bio->bi_blkg`), which is the cgroup that dirtied the pages when the kernel writes
/// them back (cgroup writeback), and the submitter's otherwise. A block device's own pages
/// (the filesystem's metadata, in the bdev's cache) are never the target's, whoever dirtied
/// them first. Only for a fault that asks ([`DiskFilter::attributed`]); paid by the device's
/// bios that no target submits, so plain probe reads, a few per cgroup level.
#[inline(always)]
pub fn attributed_to(bio: u64, cgroup: u64) -> bool {
    if disk!(attributed) == 0 {
        return false;
    }
    let filter = disk_filter();
    let page = Probed::pointer_at(Probed::pointer_at(bio, filter.bio_io_vec), filter.bvec_page);
    let mapping = Probed::pointer_at(page, filter.page_mapping);
    if mapping & PAGE_MAPPING_ANON == 0 {
        let host = Probed::pointer_at(mapping, filter.mapping_host);
        let mode = Probed::read_at::<u16>(host, filter.inode_mode).unwrap_or(0);
        if mode & S_IFMT == S_IFBLK {
            return false;
        }
    }
    let blkcg = Probed::pointer_at(Probed::pointer_at(bio, filter.bio_blkg), filter.blkg_blkcg);
    let mut node = Probed::pointer_at(
        Probed::pointer_at(blkcg, filter.blkcg_cgroup),
        filter.cgroup_kn,
    );
    for _ in 0..MAX_CGROUP_DEPTH {
        if node == 0 {
            return false;
        }
        if Probed::read_at::<u64>(node, filter.kn_id) == Some(cgroup) {
            return true;
        }
        node = Probed::pointer_at(node, filter.kn_parent);
    }
    false
}

/// `REQ_OP_*` of `bio->bi_opf` (its low 8 bits: linux/blk_types.h; these four the same since
/// 4.10, the others from the kernel's BTF in [`DiskFilter`]).
const REQ_OP_MASK: u32 = 0xff;
const REQ_OP_READ: u32 = 0;
const REQ_OP_WRITE: u32 = 1;
const REQ_OP_FLUSH: u32 = 2;
const REQ_OP_DISCARD: u32 = 3;

/// The operations (`OP_DISK_*` bits) bio `bio` is, if it goes to the fault's device and
/// sectors: a write carrying a cache flush before its data (a journal commit block) is a write
/// and a flush, one without data (fsync's flush) a flush only. Three or four kernel reads for
/// another device's bio; no map lookup.
#[inline(always)]
pub fn bio_ops<M: Memory>(bio: u64) -> u64 {
    let bdev = M::pointer_at(bio, disk!(bio_bdev));
    if !on_device::<M>(bdev) {
        return 0;
    }
    let filter = disk_filter();
    let size = M::read_at::<u32>(bio, filter.bio_size).unwrap_or(0);
    if filter.sector_end != 0 && !in_sectors::<M>(&filter, bio, bdev, size) {
        return 0;
    }
    let Some(opf) = M::read_at::<u32>(bio, filter.bio_opf) else {
        return 0;
    };
    let op = opf & REQ_OP_MASK;
    let ops = if op == REQ_OP_READ {
        1 << OP_DISK_READ
    } else if op == REQ_OP_WRITE || op == filter.op_write_zeroes || op == filter.op_zone_append {
        1 << OP_DISK_WRITE
    } else if op == REQ_OP_FLUSH {
        1 << OP_DISK_FLUSH
    } else if op == REQ_OP_DISCARD || op == filter.op_secure_erase {
        1 << OP_DISK_DISCARD
    } else {
        0
    };
    match (opf & filter.req_preflush != 0, size) {
        (true, 0) => 1 << OP_DISK_FLUSH,
        (true, _) => ops | 1 << OP_DISK_FLUSH,
        (false, _) => ops,
    }
}

/// Whether `bdev` is the fault's device or, for a whole disk, one of its partitions. Two
/// reads for most other devices' bios: a disk's partitions are numbered after it, but those
/// past its minors (every partition of an NVMe disk, and of a loop device unless loop.max_part
/// is set) have [`BLOCK_EXT_MAJOR`] numbers, whose disk is found by following `bd_disk->part0`.
#[inline(always)]
fn on_device<M: Memory>(bdev: u64) -> bool {
    let (fault_dev, bdev_dev) = (disk!(dev), disk!(bdev_dev));
    let Some(dev) = M::read_at::<u32>(bdev, bdev_dev) else {
        return false;
    };
    if dev == fault_dev {
        return true;
    }
    if disk!(whole) == 0 {
        return false;
    }
    if dev > fault_dev && dev - fault_dev < disk!(minors) {
        return true;
    }
    if dev >> MINOR_BITS != BLOCK_EXT_MAJOR {
        return false;
    }
    let whole = M::pointer_at(M::pointer_at(bdev, disk!(bdev_disk)), disk!(disk_part0));
    M::read_at::<u32>(whole, bdev_dev) == Some(fault_dev)
}

/// Whether bio `bio` (to `bdev`, `size` bytes) overlaps the filter's sectors, counted from the
/// start of the device named. A partition's bio counts from the partition's start until the
/// block layer remaps it (`BIO_REMAPPED`, the rest of a split bio), then from the disk's.
#[inline(always)]
fn in_sectors<M: Memory>(filter: &DiskFilter, bio: u64, bdev: u64, size: u32) -> bool {
    let sectors = u64::from(size >> 9);
    if sectors == 0 {
        return false;
    }
    let Some(sector) = M::read_at::<u64>(bio, filter.bio_sector) else {
        return false;
    };
    let flags = u32::from(M::read_at::<u16>(bio, filter.bio_flags).unwrap_or(0));
    let remapped = flags & filter.bio_remapped != 0;
    let start = || M::read_at::<u64>(bdev, filter.bdev_start_sect).unwrap_or(0);
    let sector = match (filter.whole != 0, remapped) {
        (true, false) => sector + start(),
        (false, true) => sector.saturating_sub(start()),
        _ => sector,
    };
    sector < filter.sector_end && sector + sectors > filter.sector_first
}

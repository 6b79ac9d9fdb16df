//! `chaos disk error`: which operation a bio is, and whether it goes to the fault's device and
//! sectors. Follows kernel pointers at offsets read from the running kernel's BTF at load.

use aya_ebpf::Global;
use chaos_common::{fault::DiskFilter, ops::*};

use crate::path::{pointer_at, read_at};

#[unsafe(no_mangle)]
static DISK: Global<DiskFilter> = Global::new(DiskFilter {
    dev: 0,
    whole: 0,
    sector_first: 0,
    sector_end: 0,
    req_preflush: 0,
    bio_bdev: 0,
    bio_opf: 0,
    bio_sector: 0,
    bio_size: 0,
    bdev_dev: 0,
    bdev_start_sect: 0,
    bdev_disk: 0,
    disk_part0: 0,
    targeted: 0,
});

/// Whether only the targets' own bios fail.
#[inline(always)]
pub fn targeted() -> bool {
    DISK.load().targeted != 0
}

/// `REQ_OP_*` of `bio->bi_opf` (its low 8 bits: linux/blk_types.h, the same since 4.10).
const REQ_OP_MASK: u32 = 0xff;
const REQ_OP_READ: u32 = 0;
const REQ_OP_WRITE: u32 = 1;
const REQ_OP_FLUSH: u32 = 2;
const REQ_OP_DISCARD: u32 = 3;

/// The operations (`OP_DISK_*` bits) bio `bio` is, if it goes to the fault's device and
/// sectors: a write carrying a cache flush before it (a journal commit block) is a write and a
/// flush. Three or four kernel reads; no map lookup.
#[inline(always)]
pub fn bio_ops(bio: u64) -> u64 {
    let filter = DISK.load();
    let bdev = pointer_at(bio, filter.bio_bdev);
    let (dev, start) = if filter.whole != 0 {
        let whole = pointer_at(pointer_at(bdev, filter.bdev_disk), filter.disk_part0);
        let start = read_at::<u64>(bdev, filter.bdev_start_sect).unwrap_or(0);
        (read_at::<u32>(whole, filter.bdev_dev), start)
    } else {
        (read_at::<u32>(bdev, filter.bdev_dev), 0)
    };
    if dev != Some(filter.dev) {
        return 0;
    }
    if filter.sector_end != 0 {
        let sector = read_at::<u64>(bio, filter.bio_sector).unwrap_or(0) + start;
        let sectors = u64::from(read_at::<u32>(bio, filter.bio_size).unwrap_or(0) >> 9);
        if sectors == 0 || sector >= filter.sector_end || sector + sectors <= filter.sector_first {
            return 0;
        }
    }
    let Some(opf) = read_at::<u32>(bio, filter.bio_opf) else {
        return 0;
    };
    let op = match opf & REQ_OP_MASK {
        REQ_OP_READ => 1 << OP_DISK_READ,
        REQ_OP_WRITE => 1 << OP_DISK_WRITE,
        REQ_OP_FLUSH => 1 << OP_DISK_FLUSH,
        REQ_OP_DISCARD => 1 << OP_DISK_DISCARD,
        _ => 0,
    };
    if opf & filter.req_preflush != 0 {
        op | 1 << OP_DISK_FLUSH
    } else {
        op
    }
}

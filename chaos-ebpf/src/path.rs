//! The `--path` filter: is the file a call acts on at or below the fault's directory? Follows
//! kernel pointers at offsets read from the running kernel's BTF at load.

use aya_ebpf::{Global, helpers::bpf_probe_read_kernel};
use chaos_common::fault::{MAX_PATH_DEPTH, PathOffsets};

#[unsafe(no_mangle)]
static PATH_OFFSETS: Global<PathOffsets> = Global::new(PathOffsets::ZERO);

/// The pointer at `base + offset`; 0 when `base` is 0 or the read fails.
#[inline(always)]
pub fn pointer_at(base: u64, offset: u32) -> u64 {
    read_at(base, offset).unwrap_or(0)
}

/// The `T` at `base + offset` in kernel memory; `None` when `base` is 0 or the read fails.
#[inline(always)]
pub fn read_at<T>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.ok()
}

/// The dentry of a `struct file *`; 0 for an overlayfs backing file that carries the overlay's
/// path (kernels before 6.6 open the layer's file with the overlay's path, so its inode differs
/// from its dentry's): the hook already judged the same call on the overlay's own file, and a
/// second match would count it twice.
#[inline(always)]
pub fn dentry_of_file(file: u64) -> u64 {
    let offsets = PATH_OFFSETS.load();
    let dentry = pointer_at(file, offsets.file_dentry);
    if dentry != 0
        && pointer_at(file, offsets.file_inode) != pointer_at(dentry, offsets.dentry_inode)
    {
        return 0;
    }
    dentry
}

/// The dentry of a `const struct path *`.
#[inline(always)]
pub fn dentry_of_path(path: u64) -> u64 {
    pointer_at(path, PATH_OFFSETS.load().path_dentry)
}

/// The dentry of the file a `struct linux_binprm *` executes.
#[inline(always)]
pub fn dentry_of_bprm(bprm: u64) -> u64 {
    dentry_of_file(pointer_at(bprm, PATH_OFFSETS.load().bprm_file))
}

/// Whether `dentry` or one of its ancestors (up to [`MAX_PATH_DEPTH`], on its filesystem) is the
/// inode `ino` of the filesystem `dev`. A negative dentry (a name being created) is judged by
/// its parents.
#[inline(always)]
pub fn under_dir(mut dentry: u64, ino: u64, dev: u32) -> bool {
    let offsets = PATH_OFFSETS.load();
    for _ in 0..MAX_PATH_DEPTH {
        if dentry == 0 {
            return false;
        }
        let inode = pointer_at(dentry, offsets.dentry_inode);
        if inode != 0 && pointer_at(inode, offsets.inode_ino) == ino {
            let sb = pointer_at(inode, offsets.inode_sb);
            // SAFETY: bpf_probe_read_kernel checks the address.
            let s_dev =
                unsafe { bpf_probe_read_kernel((sb + u64::from(offsets.sb_dev)) as *const u32) };
            if s_dev == Ok(dev) {
                return true;
            }
        }
        let parent = pointer_at(dentry, offsets.dentry_parent);
        // The root of a filesystem is its own parent.
        if parent == dentry {
            return false;
        }
        dentry = parent;
    }
    false
}

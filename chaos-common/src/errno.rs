//! Errno faults: which process is a target, and what its matching calls get back.

/// Most faults one run can hold; each has a slot in [`crate::names::MAP_ERRNO_FAULTS`].
pub const MAX_FAULTS: u32 = 16;
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

/// Operations an errno fault can fail. The value is a bit position in [`ErrnoFault::ops`] and the
/// column of [`crate::counters::counter_index`].
pub const OP_OPEN: u32 = 0;
pub const OP_READ: u32 = 1;
pub const OP_WRITE: u32 = 2;
pub const OP_EXEC: u32 = 3;
pub const OP_FORK: u32 = 4;
pub const OP_MMAP: u32 = 5;
pub const OP_UNLINK: u32 = 6;
pub const OP_RMDIR: u32 = 7;
pub const OP_MKDIR: u32 = 8;
pub const OP_RENAME: u32 = 9;
pub const OP_LINK: u32 = 10;
pub const OP_SYMLINK: u32 = 11;
pub const OP_TRUNCATE: u32 = 12;
pub const OP_CHMOD: u32 = 13;
pub const OP_CHOWN: u32 = 14;
pub const OP_IOCTL: u32 = 15;
pub const OP_LOCK: u32 = 16;
pub const OP_STAT: u32 = 17;
pub const OP_CONNECT: u32 = 18;
pub const OP_BIND: u32 = 19;
pub const OP_LISTEN: u32 = 20;
pub const OP_ACCEPT: u32 = 21;
pub const OP_SEND: u32 = 22;
pub const OP_RECV: u32 = 23;
pub const OP_SOCKET: u32 = 24;
/// Not an errno operation: a signal sent when a target enters one syscall (`chaos signal`).
pub const OP_SIGNAL: u32 = 25;
/// Not an `--op` either: one syscall failed through a kprobe with `bpf_override_return`.
pub const OP_SYSCALL: u32 = 26;
/// Number of operations; sizes the counter map.
pub const OP_COUNT: u32 = 27;

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

/// One errno fault as the kernel side sees it. A call the fault covers is injected when its
/// sequence number `seq` (0-based, over all CPUs) passes `after` and `every`, the random draw
/// passes `probability`, and fewer than `count` calls were injected.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrnoFault {
    /// Bit `1 << OP_*` set for every operation this fault fails.
    pub ops: u64,
    /// After this `CLOCK_MONOTONIC` time (`bpf_ktime_get_ns`) the fault injects nothing, even if
    /// the loader hangs or is stopped.
    pub deadline_ns: u64,
    /// The first `after` covered calls pass.
    pub after: u64,
    /// Of the calls past `after`, every `every`-th is a candidate (1: each one).
    pub every: u64,
    /// Inject at most this many calls; 0: no limit.
    pub count: u64,
    /// Inject a candidate when a 32-bit random draw is below this; [`PROBABILITY_ONE`]: always.
    pub probability: u64,
    /// Positive errno value; the program returns or sets `-errno`. For [`OP_SIGNAL`], the
    /// signal number to send.
    pub errno: i32,
    /// Non-zero: count matches but fail nothing.
    pub dry_run: u32,
    /// Only calls on this port (host order; the destination of connect/send, the port of bind);
    /// 0: any. Only the cgroup socket programs see ports.
    pub port: u32,
    /// Only calls on this address family (AF_INET, AF_INET6, AF_UNIX); 0: any.
    pub family: u32,
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
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ErrnoFault>() == 112);

/// How many directories up the `--path` filter looks for its directory.
pub const MAX_PATH_DEPTH: u32 = 64;

/// Where the fields the `--path` filter follows lie in this kernel's structs (from its BTF), in
/// bytes. All zero unless the fault has a path filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathOffsets {
    /// `file->f_path.dentry`
    pub file_dentry: u32,
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
const _: () = assert!(core::mem::size_of::<PathOffsets>() == 32);

impl PathOffsets {
    pub const ZERO: PathOffsets = PathOffsets {
        file_dentry: 0,
        path_dentry: 0,
        bprm_file: 0,
        dentry_parent: 0,
        dentry_inode: 0,
        inode_ino: 0,
        inode_sb: 0,
        sb_dev: 0,
    };
}

/// [`ErrnoFault::probability`] for "always": above every 32-bit draw.
pub const PROBABILITY_ONE: u64 = 1 << 32;

impl ErrnoFault {
    pub const fn covers(&self, op: u32) -> bool {
        self.ops & (1 << op) != 0
    }

    /// Whether a call on `port`, `family` and IP address `addr` (in the layout of
    /// [`ErrnoFault::addr`]; zeros when the hook does not see one) passes the filters.
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
    /// Calls injected so far, for `count`.
    pub injected: u64,
}
const _: () = assert!(core::mem::size_of::<FaultState>() == 16);

#[cfg(feature = "user")]
unsafe impl aya::Pod for FaultState {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PathOffsets {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Target {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ErrnoFault {}

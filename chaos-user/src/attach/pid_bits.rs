//! The target PID bitmap of the errno object, mapped into this process: the loader sets a
//! target's bit with an atomic OR, as the fork program does in the kernel, so that neither loses
//! the other's bit of the same word.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::{Ebpf, maps::Map};
use chaos_common::{
    names,
    target::{PID_BITMAP_WORDS, pid_bit, pid_word},
};

use super::AttachError;

/// `TARGET_PID_BITS`, mapped shared; unmapped on drop (the map itself lives on with the object).
pub struct PidBits {
    words: NonNull<AtomicU64>,
}

impl PidBits {
    /// The bitmap's words on this machine: a bit for every PID up to pid_max
    /// (/proc/sys/kernel/pid_max: 32768 without systemd, which raises it to PID_MAX_LIMIT), not
    /// PID_MAX_LIMIT's 512 KiB, which the kernel allocates and zeroes at each start. A PID past
    /// it (pid_max raised during a run) has no bit: the programs then look it up in
    /// TARGET_PIDS, one lookup more for such a process, and find it if it is a target.
    pub fn words() -> u32 {
        static WORDS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        *WORDS.get_or_init(|| {
            crate::sys::read_proc("/proc/sys/kernel/pid_max")
                .ok()
                .and_then(|max| max.trim().parse::<u32>().ok())
                .map_or(PID_BITMAP_WORDS, |max| {
                    max.div_ceil(64).clamp(1, PID_BITMAP_WORDS)
                })
        })
    }

    fn len() -> usize {
        Self::words() as usize * size_of::<u64>()
    }

    pub fn map(ebpf: &Ebpf) -> Result<Self, AttachError> {
        let name = names::MAP_TARGET_PID_BITS;
        let Some(Map::Array(map)) = ebpf.map(name) else {
            return Err(AttachError::MissingMap(name));
        };
        // SAFETY: a fresh shared mapping of the map's whole value area; the kernel sized it and
        // made it mappable (BPF_F_MMAPABLE), and keeps the map alive while it is mapped.
        let words = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::len(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if words == libc::MAP_FAILED {
            return Err(AttachError::MapMemory {
                name,
                source: io::Error::last_os_error(),
            });
        }
        let words = NonNull::new(words.cast()).expect("mmap returned a null mapping");
        Ok(PidBits { words })
    }

    /// Marks `pid` as a target (its entry in `TARGET_PIDS` is the caller's); a PID past the
    /// bitmap has no bit (see [`PidBits::words`]).
    pub fn set(&self, pid: u32) {
        let word = pid_word(pid);
        if word >= Self::words() {
            return;
        }
        // SAFETY: in bounds of the mapping, which lives as long as `self`; the kernel writes the
        // same words only with atomic operations.
        let word = unsafe { self.words.add(word as usize).as_ref() };
        word.fetch_or(pid_bit(pid), Ordering::SeqCst);
    }
}

impl Drop for PidBits {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, not used after this.
        unsafe { libc::munmap(self.words.as_ptr().cast(), Self::len()) };
    }
}

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
    const LEN: usize = PID_BITMAP_WORDS as usize * size_of::<u64>();

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
                Self::LEN,
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

    /// Marks `pid` as a target (its entry in `TARGET_PIDS` is the caller's).
    pub fn set(&self, pid: u32) {
        let word = pid_word(pid);
        assert!(word < PID_BITMAP_WORDS, "PID {pid} beyond PID_MAX_LIMIT");
        // SAFETY: in bounds of the mapping, which lives as long as `self`; the kernel writes the
        // same words only with atomic operations.
        let word = unsafe { self.words.add(word as usize).as_ref() };
        word.fetch_or(pid_bit(pid), Ordering::SeqCst);
    }
}

impl Drop for PidBits {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, not used after this.
        unsafe { libc::munmap(self.words.as_ptr().cast(), Self::LEN) };
    }
}

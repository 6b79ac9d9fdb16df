//! The kernel side of chaos. Each binary in `src/bin` is one eBPF object; this library holds what
//! they share.
#![no_std]

pub mod errno;

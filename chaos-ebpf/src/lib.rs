//! The kernel side of chaos. Each binary in `src/bin` is one eBPF object; this library holds what
//! they share.
#![no_std]
// The BPF target lacks core's atomic read-modify-write methods; the intrinsic works (nightly).
#![allow(internal_features)]
#![feature(core_intrinsics)]

pub mod errno;
pub mod path;

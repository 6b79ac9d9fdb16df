//! Names, limits and `#[repr(C)]` types shared by the eBPF programs and the loader.
//!
//! Every map value is plain old data: integers with named constants, explicit padding, and a
//! compile-time size check, so both sides agree on the layout byte for byte.
#![no_std]

pub mod counters;
pub mod errno;
pub mod names;
pub mod net;

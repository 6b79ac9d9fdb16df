//! Names, limits, the operation catalogue and the `#[repr(C)]` types shared by the eBPF programs
//! and the loader.
//!
//! Every map value is plain old data: integers with named constants, explicit padding, and a
//! compile-time size check, so both sides agree on the layout byte for byte.
#![no_std]

pub mod counters;
pub mod fault;
pub mod features;
pub mod hook;
pub mod names;
pub mod net;
pub mod ops;
pub mod target;

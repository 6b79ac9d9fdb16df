//! The eBPF objects built by `build.rs`, embedded in the binary.

use aya::include_bytes_aligned;

/// Errno faults: cgroup sock_addr and LSM programs sharing the target, fault and counter maps.
pub static ERRNO: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/errno"));

/// Network faults: TC programs sharing the fault and counter maps.
pub static NET: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/net"));

/// Tiny harmless programs that `chaos probe` loads to learn what the kernel allows.
pub static PROBE: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe"));

//! Where runs keep what must outlive a chaos process: a detached run's pinned links and maps
//! (bpffs) and its record, and the record of each change a run made to an interface.

use std::path::{Path, PathBuf};

/// Where detached runs pin their links and maps (bpffs).
pub const PIN_ROOT: &str = "/sys/fs/bpf/chaos";
/// Where detached runs are recorded.
pub const RUN_ROOT: &str = "/run/chaos";
/// Where a run records each change it makes to an interface (a qdisc it installs).
pub const QDISC_ROOT: &str = "/run/chaos/qdisc";

/// The pin directory of detached run `id`: its links and counters; the run lives while it does.
pub fn pin_dir(id: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(id)
}

/// The record of detached run `id`.
pub fn run_file(id: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(format!("{id}.json"))
}

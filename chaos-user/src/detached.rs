//! Detached runs (`--detach`): links and counter maps pinned under `/sys/fs/bpf/chaos/<id>`,
//! a description under `/run/chaos/<id>.json`. The in-kernel deadline is the run's only guard:
//! after it the programs inject nothing, and the next `chaos` invocation unpins them.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::maps::{MapData, PerCpuArray};
use chaos_common::{counters::Counters, names};
use serde::{Deserialize, Serialize};

use crate::attach::monotonic_now_ns;

/// Where detached runs pin their links and maps (bpffs).
pub const PIN_ROOT: &str = "/sys/fs/bpf/chaos";
/// Where detached runs describe themselves.
pub const STATE_ROOT: &str = "/run/chaos";

/// What `chaos list` knows of a detached run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DetachedRun {
    pub id: String,
    /// The targets, as the start line put them.
    pub targets: String,
    /// The fault in a few words: `connect,bind ECONNREFUSED`, `drop 30% ingress`.
    pub fault: String,
    /// `CLOCK_MONOTONIC` ns after which the programs inject nothing.
    pub deadline_ns: u64,
}

impl DetachedRun {
    pub fn pin_dir(&self) -> PathBuf {
        pin_dir(&self.id)
    }

    /// Seconds until the in-kernel deadline; 0 once it passed.
    pub fn remaining_s(&self) -> f64 {
        self.deadline_ns.saturating_sub(monotonic_now_ns()) as f64 / 1e9
    }

    /// Matched and injected calls (or packets) over every operation or direction, from the
    /// pinned counters: the per-target ones of an errno run, the per-direction ones of a
    /// network run (both pairs of u64).
    pub fn counters(&self) -> Counters {
        let dir = self.pin_dir();
        let Some(data) = [names::MAP_TARGET_COUNTERS, names::MAP_NET_COUNTERS]
            .into_iter()
            .find_map(|name| MapData::from_pin(dir.join(name)).ok())
        else {
            return Counters::default();
        };
        let Ok(map) = aya::maps::Map::from_map_data(data) else {
            return Counters::default();
        };
        let Ok(counters) = PerCpuArray::<_, Counters>::try_from(map) else {
            return Counters::default();
        };
        counters
            .iter()
            .filter_map(Result::ok)
            .flat_map(|per_cpu| per_cpu.iter().copied().collect::<Vec<_>>())
            .fold(Counters::default(), |sum, c| Counters {
                matched: sum.matched + c.matched,
                injected: sum.injected + c.injected,
            })
    }
}

pub fn pin_dir(id: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(id)
}

fn state_file(id: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(format!("{id}.json"))
}

/// A fresh run ID: 8 hex digits from the clock and the PID.
pub fn new_id() -> String {
    let seed = monotonic_now_ns() ^ (u64::from(std::process::id()) << 40);
    format!("{:08x}", (seed ^ (seed >> 29)) as u32)
}

/// Makes the run's pin directory (mounting bpffs if needed).
pub fn prepare(id: &str) -> io::Result<PathBuf> {
    let note = crate::kernel::ensure_mounted("bpf", "/sys/fs/bpf");
    if !note.is_empty() {
        eprintln!("chaos: {}", note.trim());
    }
    let dir = pin_dir(id);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn save(run: &DetachedRun) -> io::Result<()> {
    fs::create_dir_all(STATE_ROOT)?;
    let json = serde_json::to_string(run).map_err(io::Error::other)?;
    fs::write(state_file(&run.id), json)
}

/// Every detached run that has a description.
pub fn all() -> Vec<DetachedRun> {
    let Ok(entries) = fs::read_dir(STATE_ROOT) else {
        return Vec::new();
    };
    let mut runs: Vec<DetachedRun> = entries
        .flatten()
        .filter_map(|entry| fs::read_to_string(entry.path()).ok())
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    runs
}

/// Ends a run: removing its pins releases the links, which detaches the programs.
pub fn stop(id: &str) -> io::Result<()> {
    let dir = pin_dir(id);
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries.flatten() {
            fs::remove_file(entry.path())?;
        }
        fs::remove_dir(&dir)?;
    }
    // What the run changed on interfaces (fq, clsact filters) goes with it.
    crate::attach::qdisc::restore_orphans();
    match fs::remove_file(state_file(id)) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Unpins the runs whose deadline has passed; returns their IDs. Every invocation of chaos
/// calls this, so expired runs do not linger in the kernel.
pub fn clean_up_expired() -> Vec<String> {
    let now = monotonic_now_ns();
    all()
        .into_iter()
        .filter(|run| run.deadline_ns <= now)
        .filter_map(|run| stop(&run.id).ok().map(|()| run.id))
        .collect()
}

//! Detached runs (`--detach`): links and counter maps pinned under `/sys/fs/bpf/chaos/<id>`,
//! a record under `/run/chaos/<id>.json`. The in-kernel deadline is the run's only guard:
//! after it the programs act on nothing, and the next `chaos` invocation unpins them.

use std::{fs, io, path::PathBuf};

use aya::maps::{MapData, PerCpuArray};
use chaos_common::{counters::Counters, names};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    attach::qdisc,
    clock::{Deadline, monotonic_now_ns},
    report::FaultKind,
    state::{RUN_ROOT, pin_dir, run_file},
    sys::ensure_mounted,
};

#[derive(Debug, Error)]
#[error("cannot {action} {}", path.display())]
pub struct DetachedError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

fn failed(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> DetachedError {
    let path = path.into();
    move |source| DetachedError {
        action,
        path,
        source,
    }
}

/// What `chaos list` knows of a detached run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DetachedRun {
    pub id: String,
    /// The targets, as the start line put them.
    pub targets: String,
    /// What the run does, as its report would say: one entry per operation or direction.
    pub faults: Vec<FaultKind>,
    /// `CLOCK_MONOTONIC` ns after which the programs act on nothing: the deadline they carry.
    pub deadline_ns: u64,
}

impl DetachedRun {
    /// Seconds until the in-kernel deadline; 0 once it passed.
    pub fn remaining_s(&self) -> f64 {
        Deadline {
            ns: self.deadline_ns,
        }
        .remaining()
        .as_secs_f64()
    }

    /// The faults in a few words: `connect ECONNREFUSED, bind ECONNREFUSED`.
    pub fn describe_faults(&self) -> String {
        let faults: Vec<String> = self.faults.iter().map(ToString::to_string).collect();
        faults.join(", ")
    }

    /// Matched and acted-on calls (or packets) over every operation or direction, from the
    /// pinned counters: the per-target ones of a run on calls, the per-direction ones of a
    /// network run.
    pub fn counters(&self) -> Counters {
        let dir = pin_dir(&self.id);
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
            .fold(Counters::default(), |sum, cpu| Counters::sum(sum, &cpu))
    }
}

/// A fresh run ID: 8 hex digits from the clock and the PID.
pub fn new_id() -> String {
    let seed = monotonic_now_ns() ^ (u64::from(std::process::id()) << 40);
    format!("{:08x}", (seed ^ (seed >> 29)) as u32)
}

/// Makes the run's pin directory (mounting bpffs if need be).
pub fn prepare(id: &str) -> Result<PathBuf, DetachedError> {
    let note = ensure_mounted("bpf", "/sys/fs/bpf");
    if !note.is_empty() {
        eprintln!("chaos: {}", note.trim());
    }
    let dir = pin_dir(id);
    fs::create_dir_all(&dir).map_err(failed("make the pin directory", &dir))?;
    Ok(dir)
}

pub fn save(run: &DetachedRun) -> Result<(), DetachedError> {
    fs::create_dir_all(RUN_ROOT).map_err(failed("make the directory", RUN_ROOT))?;
    let json = serde_json::to_string(run).expect("a run serializes");
    let file = run_file(&run.id);
    fs::write(&file, json).map_err(failed("write the run's record", &file))
}

/// Every detached run that has a record.
pub fn all() -> Vec<DetachedRun> {
    let Ok(entries) = fs::read_dir(RUN_ROOT) else {
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

/// Ends a run: removing its pins releases the links, which detaches the programs, in the
/// reverse of the order they were pinned in (the order they were attached): what undoes another
/// program's changes to a target's memory goes last.
pub fn stop(id: &str) -> Result<(), DetachedError> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = pin_dir(id);
    if let Ok(entries) = fs::read_dir(&dir) {
        let mut pins: Vec<(i64, i64, PathBuf)> = entries
            .flatten()
            .map(|entry| {
                let made = entry
                    .metadata()
                    .map_or((0, 0), |meta| (meta.ctime(), meta.ctime_nsec()));
                (made.0, made.1, entry.path())
            })
            .collect();
        pins.sort();
        for (_, _, path) in pins.into_iter().rev() {
            fs::remove_file(&path).map_err(failed("unpin", &path))?;
        }
        fs::remove_dir(&dir).map_err(failed("remove the pin directory", &dir))?;
    }
    // What the run changed on interfaces (fq, clsact filters) goes with it.
    qdisc::restore_orphans();
    let file = run_file(id);
    match fs::remove_file(&file) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(failed("remove the run's record", &file)(err))
        }
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

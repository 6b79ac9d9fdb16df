//! The fq qdisc a delay fault needs on each interface (fq holds packets until their departure
//! time). chaos puts fq only in place of a device's default root qdisc, records that in a state
//! file under /run/chaos/qdisc before it does, and puts the default back when the run ends —
//! or, when the run was killed, at the next chaos invocation or `chaos cleanup`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde::{Deserialize, Serialize};

use super::AttachError;
use crate::target::net::Netns;

/// Where a run records each qdisc it replaced.
pub const STATE_DIR: &str = "/run/chaos/qdisc";

/// What a state file says: who replaced the root qdisc of which interface.
#[derive(Debug, Serialize, Deserialize)]
struct Replaced {
    /// The chaos process, and its start time (a recycled PID is not it).
    pid: u32,
    start_time: u64,
    /// The namespace as chaos opened it (`None`: chaos's own).
    netns: Option<PathBuf>,
    iface: String,
}

/// An fq root qdisc installed for a run; [`FqGuard::restore`] (or dropping it) puts the
/// device's default back.
#[derive(Debug)]
pub struct FqGuard {
    /// `None` when fq was there already: nothing to put back.
    state_file: Option<PathBuf>,
    netns: Option<PathBuf>,
    iface: String,
}

/// Runs `tc ARGS` inside `netns` (chaos's own namespace for `None`).
fn tc(netns: Option<&Netns>, args: &[&str]) -> Result<std::process::Output, AttachError> {
    let run = || Command::new("tc").args(args).output();
    let output = match netns {
        Some(netns) => netns.enter(run).map_err(AttachError::Netns)?,
        None => run(),
    };
    output.map_err(|err| {
        AttachError::NetUnsupported(format!(
            "cannot run tc (iproute2), which installs the fq qdisc: {err}"
        ))
    })
}

/// The kind and handle of the device's root qdisc (`noqueue`, `0:`).
fn root_qdisc(netns: Option<&Netns>, iface: &str) -> Result<(String, String), AttachError> {
    let output = tc(netns, &["-j", "qdisc", "show", "dev", iface, "root"])?;
    let qdiscs: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let root = &qdiscs[0];
    match (root["kind"].as_str(), root["handle"].as_str()) {
        (Some(kind), Some(handle)) => Ok((kind.to_owned(), handle.to_owned())),
        _ => Err(AttachError::NetUnsupported(format!(
            "cannot read the root qdisc of {iface}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}

/// Makes fq the root qdisc of `iface`: kept if it is one already, put in place of the device's
/// default (handle 0:) otherwise. Any other configured root qdisc is refused, untouched.
pub fn install_fq(netns: Option<&Netns>, iface: &str) -> Result<FqGuard, AttachError> {
    let (kind, handle) = root_qdisc(netns, iface)?;
    let netns_path = netns.map(|n| n.path.clone());
    if kind == "fq" {
        return Ok(FqGuard {
            state_file: None,
            netns: netns_path,
            iface: iface.to_owned(),
        });
    }
    if handle != "0:" {
        return Err(AttachError::NetUnsupported(format!(
            "{iface} has a configured {kind} root qdisc ({handle}): chaos puts fq only in place of a device's default qdisc, which it can put back; remove it or delay on another interface"
        )));
    }
    fs::create_dir_all(STATE_DIR).map_err(|err| state_error(Path::new(STATE_DIR), err))?;
    let state_file = Path::new(STATE_DIR).join(format!(
        "{}-{}-{iface}.json",
        std::process::id(),
        netns_id(netns)
    ));
    let replaced = Replaced {
        pid: std::process::id(),
        start_time: start_time(std::process::id()).unwrap_or_default(),
        netns: netns_path.clone(),
        iface: iface.to_owned(),
    };
    let json = serde_json::to_vec(&replaced).expect("a state record serializes");
    fs::write(&state_file, json).map_err(|err| state_error(&state_file, err))?;
    let output = tc(netns, &["qdisc", "replace", "dev", iface, "root", "fq"])?;
    if !output.status.success() {
        let _ = fs::remove_file(&state_file);
        return Err(AttachError::NetUnsupported(format!(
            "tc qdisc replace dev {iface} root fq: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    tracing::debug!(iface, "fq installed");
    Ok(FqGuard {
        state_file: Some(state_file),
        netns: netns_path,
        iface: iface.to_owned(),
    })
}

fn state_error(path: &Path, err: std::io::Error) -> AttachError {
    AttachError::NetUnsupported(format!(
        "cannot record the qdisc change in {}: {err}",
        path.display()
    ))
}

/// The inode of the namespace, to tell interfaces of the same name apart in state file names.
fn netns_id(netns: Option<&Netns>) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let path = netns.map_or(PathBuf::from("/proc/self/ns/net"), |n| n.path.clone());
    fs::metadata(path).map(|m| m.ino()).unwrap_or_default()
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

impl FqGuard {
    /// Puts the device's default root qdisc back (deleting the root makes the kernel attach it).
    pub fn restore(mut self) {
        self.put_back();
    }

    fn put_back(&mut self) {
        let Some(state_file) = self.state_file.take() else {
            return;
        };
        restore_default(self.netns.as_deref(), &self.iface);
        let _ = fs::remove_file(state_file);
    }
}

impl Drop for FqGuard {
    fn drop(&mut self) {
        self.put_back();
    }
}

/// Deletes the fq root qdisc of `iface`, if fq is still there; a namespace that is gone took its
/// interfaces with it.
fn restore_default(netns: Option<&Path>, iface: &str) -> bool {
    let netns = match netns {
        Some(path) => match Netns::open(&path.to_string_lossy()) {
            Ok(netns) => Some(netns),
            Err(_) => return false,
        },
        None => None,
    };
    match root_qdisc(netns.as_ref(), iface) {
        Ok((kind, _)) if kind == "fq" => {
            let deleted = tc(netns.as_ref(), &["qdisc", "del", "dev", iface, "root"]);
            deleted.is_ok_and(|output| output.status.success())
        }
        _ => false,
    }
}

/// Puts back the qdiscs of runs that ended without doing so (killed): every state file whose
/// chaos process is gone. Returns what it restored, as `iface (netns)`.
pub fn restore_orphans() -> Vec<String> {
    let Ok(entries) = fs::read_dir(STATE_DIR) else {
        return Vec::new();
    };
    let mut restored = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        let Some(replaced) = fs::read(&path)
            .ok()
            .and_then(|data| serde_json::from_slice::<Replaced>(&data).ok())
        else {
            let _ = fs::remove_file(&path);
            continue;
        };
        if start_time(replaced.pid).is_some_and(|t| t == replaced.start_time) {
            continue;
        }
        if restore_default(replaced.netns.as_deref(), &replaced.iface) {
            restored.push(match &replaced.netns {
                Some(netns) => format!("{} ({})", replaced.iface, netns.display()),
                None => replaced.iface.clone(),
            });
        }
        let _ = fs::remove_file(&path);
    }
    restored
}

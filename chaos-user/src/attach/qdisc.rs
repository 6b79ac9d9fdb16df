//! What a network fault changes on an interface besides attaching its own programs, recorded in
//! a state file under /run/chaos/qdisc before the change and undone when the run ends — or,
//! when the run was killed, by the next chaos invocation or `chaos cleanup`:
//! - the fq qdisc a delay or limit needs (fq holds packets until their departure time), put only
//!   in place of the device's default root qdisc;
//! - on kernels without tcx, the clsact qdisc the TC programs hang from as cls_bpf filters, or,
//!   when a clsact was there already, those filters (netlink filters, unlike tcx links, outlive
//!   a killed process).

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::AttachError;
use crate::{
    netlink::{
        self, CLSACT_HANDLE, Qdisc, TC_H_CLSACT, TC_H_MIN_EGRESS, TC_H_MIN_INGRESS, TC_H_ROOT,
    },
    state::{QDISC_ROOT, pin_dir},
    sys::Netns,
};

/// What a state file says: which chaos process changed what on which interface.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The chaos process, and its start time (a recycled PID is not it).
    pid: u32,
    start_time: u64,
    /// The namespace as chaos opened it (`None`: chaos's own).
    netns: Option<PathBuf>,
    iface: String,
    change: Change,
    /// A detached run the change belongs to: undone once that run is gone (stopped or
    /// expired), not when the process that made it exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<String>,
}

/// One change to an interface, and so what undoing it means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// fq put in place of the default root qdisc: delete the root (the default comes back).
    Fq,
    /// A clsact qdisc added: delete it, with every filter on it.
    Clsact,
    /// cls_bpf filters added to a clsact qdisc that was there before: delete those, by hook
    /// (`ingress`, `egress`) and preference.
    Filters { filters: Vec<(String, u16)> },
}

impl Change {
    fn tag(&self) -> &'static str {
        match self {
            Change::Fq => "fq",
            Change::Clsact => "clsact",
            Change::Filters { .. } => "filters",
        }
    }
}

/// A change made for a run; [`Changed::restore`] (or dropping it) undoes it.
#[derive(Debug)]
pub struct Changed {
    /// `None` while there is nothing to undo (fq or clsact were there already).
    state_file: Option<PathBuf>,
    netns: Option<PathBuf>,
    netns_id: u64,
    iface: String,
    change: Change,
    run: Option<String>,
}

/// Runs `work` with the index of `iface` inside `netns` (chaos's own namespace for `None`); an
/// error names `what` was done and the interface.
fn on_iface<T>(
    netns: Option<&Netns>,
    iface: &str,
    what: &str,
    work: impl FnOnce(u32) -> std::io::Result<T>,
) -> Result<T, AttachError> {
    super::in_netns(netns, || {
        let name = std::ffi::CString::new(iface).map_err(std::io::Error::other)?;
        // SAFETY: a NUL-terminated name that lives across the call.
        match unsafe { libc::if_nametoindex(name.as_ptr()) } {
            0 => Err(std::io::Error::last_os_error()),
            index => work(index),
        }
    })?
    .map_err(|err| AttachError::Iface(format!("cannot {what} on {iface}: {err}")))
}

/// The root qdisc of `iface`.
fn root_qdisc(netns: Option<&Netns>, iface: &str) -> Result<Qdisc, AttachError> {
    on_iface(netns, iface, "read the root qdisc", netlink::qdiscs)?
        .into_iter()
        .find(|qdisc| qdisc.parent == TC_H_ROOT)
        .ok_or_else(|| AttachError::Iface(format!("{iface} lists no root qdisc")))
}

/// Makes fq the root qdisc of `iface`: kept if it is one already, put in place of the device's
/// default (handle 0:) otherwise. Any other configured root qdisc is refused, untouched.
pub fn install_fq(netns: Option<&Netns>, iface: &str) -> Result<Changed, AttachError> {
    let root = root_qdisc(netns, iface)?;
    if root.kind == "fq" {
        return Ok(Changed::nothing(netns, iface, Change::Fq));
    }
    if root.handle != 0 {
        return Err(AttachError::Iface(format!(
            "{iface} has a configured {} root qdisc ({:x}:): chaos puts fq only in place of a device's default qdisc, which it can put back; remove it or fault another interface",
            root.kind,
            root.handle >> 16
        )));
    }
    let changed = Changed::record(netns, iface, Change::Fq)?;
    let added = on_iface(netns, iface, "put fq as the root qdisc", |index| {
        netlink::add_qdisc(index, TC_H_ROOT, 0, "fq", true)
    });
    if let Err(err) = added {
        changed.forget();
        return Err(err);
    }
    tracing::debug!(iface, "fq installed");
    Ok(changed)
}

/// Makes sure `iface` has a clsact qdisc for cls_bpf filters: adds one (recorded) if it has
/// none. With one there already, the filters chaos adds are recorded once attached
/// ([`Changed::record_filter`]).
pub fn ensure_clsact(netns: Option<&Netns>, iface: &str) -> Result<Changed, AttachError> {
    let qdiscs = on_iface(netns, iface, "read the qdiscs", netlink::qdiscs)?;
    if qdiscs.iter().any(|qdisc| qdisc.kind == "ingress") {
        // Both take the ingress handle: the kernel refuses clsact beside it.
        return Err(AttachError::Iface(format!(
            "{iface} has an ingress qdisc, which leaves no room for the clsact qdisc chaos's TC programs hang from on kernels without tcx links (before 6.6); chaos does not remove someone else's qdisc: remove it (tc qdisc del dev {iface} ingress, with -n NETNS in a namespace), use --hook xdp where the fault allows it, or fault another interface"
        )));
    }
    if qdiscs.iter().any(|qdisc| qdisc.kind == "clsact") {
        let filters = Change::Filters {
            filters: Vec::new(),
        };
        return Ok(Changed::nothing(netns, iface, filters));
    }
    let changed = Changed::record(netns, iface, Change::Clsact)?;
    let added = on_iface(netns, iface, "add a clsact qdisc", |index| {
        netlink::add_qdisc(index, TC_H_CLSACT, CLSACT_HANDLE, "clsact", false).map_err(|err| {
            // ENOENT: the kernel knows no such qdisc kind (and could not load its module).
            if err.raw_os_error() != Some(libc::ENOENT) {
                return err;
            }
            std::io::Error::other(format!(
                "{err}; to enable: CONFIG_NET_SCH_INGRESS (the sch_ingress module, which \
                 provides clsact), or kernel >= 6.6 (tcx links)"
            ))
        })
    });
    if let Err(err) = added {
        changed.forget();
        return Err(err);
    }
    Ok(changed)
}

impl Changed {
    fn nothing(netns: Option<&Netns>, iface: &str, change: Change) -> Self {
        Changed {
            state_file: None,
            netns: netns.map(|n| n.path.clone()),
            netns_id: netns_id(netns),
            iface: iface.to_owned(),
            change,
            run: None,
        }
    }

    /// Writes the state file of a change about to be made.
    fn record(netns: Option<&Netns>, iface: &str, change: Change) -> Result<Self, AttachError> {
        let mut changed = Changed::nothing(netns, iface, change);
        changed.save()?;
        Ok(changed)
    }

    fn save(&mut self) -> Result<(), AttachError> {
        let record_error = |path: &Path, source| AttachError::Record {
            iface: self.iface.clone(),
            path: path.to_owned(),
            source,
        };
        fs::create_dir_all(QDISC_ROOT).map_err(|err| record_error(Path::new(QDISC_ROOT), err))?;
        let state_file = self.state_file.get_or_insert_with(|| {
            Path::new(QDISC_ROOT).join(format!(
                "{}-{}-{}-{}.json",
                std::process::id(),
                self.netns_id,
                self.iface,
                self.change.tag()
            ))
        });
        let record = Record {
            pid: std::process::id(),
            start_time: crate::sys::start_time(std::process::id()).unwrap_or_default(),
            netns: self.netns.clone(),
            iface: self.iface.clone(),
            change: self.change.clone(),
            run: self.run.clone(),
        };
        let json = serde_json::to_vec(&record).expect("a state record serializes");
        fs::write(&*state_file, json).map_err(|err| record_error(state_file, err))
    }

    /// Whether this is the clsact qdisc (chaos's, or one that was there) of `iface` in `netns`.
    pub fn is_clsact_of(&self, netns: Option<&Netns>, iface: &str) -> bool {
        matches!(self.change, Change::Clsact | Change::Filters { .. })
            && self.iface == iface
            && self.netns.as_deref() == netns.map(|n| n.path.as_path())
    }

    /// Records a cls_bpf filter chaos added to a clsact qdisc that was there before (by hook and
    /// preference), so that a killed run's filter can be found and deleted. For a clsact chaos
    /// added itself, deleting the qdisc takes the filters along: nothing to record.
    pub fn record_filter(&mut self, hook: &str, pref: u16) -> Result<(), AttachError> {
        let Change::Filters { filters } = &mut self.change else {
            return Ok(());
        };
        filters.push((hook.to_owned(), pref));
        self.save()
    }

    /// Hands the change over to detached run `id`: it stays in place after this process exits
    /// and is undone once the run is gone (`chaos stop`, or its deadline passed).
    pub fn hand_over(mut self, id: &str) -> Result<(), AttachError> {
        if self.state_file.is_some() {
            self.run = Some(id.to_owned());
            self.save()?;
        }
        self.state_file = None;
        Ok(())
    }

    /// Undoes the change.
    pub fn restore(mut self) {
        self.undo();
    }

    /// Drops the record without undoing anything (the change was never made).
    fn forget(mut self) {
        if let Some(state_file) = self.state_file.take() {
            let _ = fs::remove_file(state_file);
        }
    }

    fn undo(&mut self) {
        let Some(state_file) = self.state_file.take() else {
            return;
        };
        undo(self.netns.as_deref(), &self.iface, &self.change);
        let _ = fs::remove_file(state_file);
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        self.undo();
    }
}

/// The inode of the namespace, to tell interfaces of the same name apart in state file names.
fn netns_id(netns: Option<&Netns>) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let path = netns.map_or(PathBuf::from("/proc/self/ns/net"), |n| n.path.clone());
    fs::metadata(path).map(|m| m.ino()).unwrap_or_default()
}

/// Undoes `change` on `iface` as far as it is still in place; a namespace that is gone took its
/// interfaces with it. Returns whether something was undone.
fn undo(netns: Option<&Path>, iface: &str, change: &Change) -> bool {
    let netns = match netns {
        Some(path) => match Netns::open(path) {
            Ok(netns) => Some(netns),
            Err(_) => return false,
        },
        None => None,
    };
    let netns = netns.as_ref();
    let done = |what: &str, work: &dyn Fn(u32) -> std::io::Result<()>| {
        on_iface(netns, iface, what, work).is_ok()
    };
    match change {
        Change::Fq => {
            let root_is_fq = root_qdisc(netns, iface).is_ok_and(|root| root.kind == "fq");
            root_is_fq
                && done("delete the fq root qdisc", &|index| {
                    netlink::delete_qdisc(index, TC_H_ROOT, 0)
                })
        }
        Change::Clsact => done("delete the clsact qdisc", &|index| {
            netlink::delete_qdisc(index, TC_H_CLSACT, CLSACT_HANDLE)
        }),
        Change::Filters { filters } => filters.iter().fold(false, |any, (hook, pref)| {
            let minor = if hook == "ingress" {
                TC_H_MIN_INGRESS
            } else {
                TC_H_MIN_EGRESS
            };
            done("delete a filter", &|index| {
                netlink::delete_filters(index, CLSACT_HANDLE | minor, *pref)
            }) || any
        }),
    }
}

/// Undoes the changes of runs that ended without doing so: every state file whose chaos process
/// is gone (killed), or whose detached run is (stopped or expired, so unpinned). Returns the
/// interfaces it restored, as `iface (netns)`.
pub fn restore_orphans() -> Vec<String> {
    let Ok(entries) = fs::read_dir(QDISC_ROOT) else {
        return Vec::new();
    };
    let mut restored = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        let Some(record) = fs::read(&path)
            .ok()
            .and_then(|data| serde_json::from_slice::<Record>(&data).ok())
        else {
            let _ = fs::remove_file(&path);
            continue;
        };
        let owner_alive = match &record.run {
            Some(id) => pin_dir(id).exists(),
            None => crate::sys::start_time(record.pid).is_some_and(|t| t == record.start_time),
        };
        if owner_alive {
            continue;
        }
        if undo(record.netns.as_deref(), &record.iface, &record.change) {
            restored.push(match &record.netns {
                Some(netns) => format!("{} ({})", record.iface, netns.display()),
                None => record.iface.clone(),
            });
        }
        let _ = fs::remove_file(&path);
    }
    restored
}

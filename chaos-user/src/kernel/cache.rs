//! Kernel features found by loading probe programs, kept for the rest of the boot in
//! /run/chaos/kernel-features.json (with the boot's ID and chaos's build) so that a fault's
//! start does not probe the kernel again: aya's feature probes (about twenty bpf(2) calls before
//! its first load) and chaos's own. Only what a failure of privileges or memory cannot fake is
//! kept: a probe's success, and aya's findings when chaos had every capability it needs and
//! aya found what every kernel chaos runs on has. `chaos probe` probes afresh and rewrites them.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    sync::{
        LazyLock, Mutex, Once,
        atomic::{AtomicBool, Ordering},
    },
};

use aya_obj::{Features, btf::BtfFeatures};
use serde::{Deserialize, Serialize};

use crate::state::RUN_ROOT;

/// What the file holds: the boot and the build of chaos the features were found with, and each
/// feature by name.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Found {
    boot_id: String,
    chaos: String,
    features: BTreeMap<String, bool>,
}

/// The build of chaos, as `chaos --version` names it.
const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), " ", env!("CHAOS_COMMIT"));

/// Set by `chaos probe`: nothing is taken from the file, what is found is written to it.
static AFRESH: AtomicBool = AtomicBool::new(false);

/// Probes everything again in this process (`chaos probe`), keeping what it finds.
pub fn probe_afresh() {
    AFRESH.store(true, Ordering::Relaxed);
}

fn path() -> PathBuf {
    Path::new(RUN_ROOT).join("kernel-features.json")
}

fn boot_id() -> String {
    crate::sys::read_proc("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// This boot's features as the file holds them (none from another boot or build).
fn read(path: &Path, boot_id: &str) -> BTreeMap<String, bool> {
    fs::read(path)
        .ok()
        .and_then(|data| serde_json::from_slice::<Found>(&data).ok())
        .filter(|found| !boot_id.is_empty() && found.boot_id == boot_id && found.chaos == BUILD)
        .map(|found| found.features)
        .unwrap_or_default()
}

/// Replaces the file whole (a reader never sees half of it); a failure (no root) only costs
/// the next start its probes.
fn write(path: &Path, found: &Found) {
    let Some(dir) = path.parent() else { return };
    let partial = dir.join(format!(".kernel-features.{}", std::process::id()));
    let written = fs::create_dir_all(dir)
        .and_then(|()| fs::write(&partial, serde_json::to_vec(found).unwrap_or_default()))
        .and_then(|()| fs::rename(&partial, path));
    if let Err(err) = written {
        let _ = fs::remove_file(&partial);
        tracing::debug!(%err, "cannot keep the kernel's features for this boot");
    }
}

static FOUND: LazyLock<Mutex<Found>> = LazyLock::new(|| {
    let boot_id = boot_id();
    Mutex::new(Found {
        features: read(&path(), &boot_id),
        boot_id,
        chaos: BUILD.to_owned(),
    })
});

fn get(name: &str) -> Option<bool> {
    if AFRESH.load(Ordering::Relaxed) {
        return None;
    }
    FOUND.lock().ok()?.features.get(name).copied()
}

fn store(values: &[(&str, bool)]) {
    let Ok(mut found) = FOUND.lock() else { return };
    for &(name, value) in values {
        found.features.insert(name.to_owned(), value);
    }
    write(&path(), &found);
}

/// The feature `name`, as found earlier in this boot, else by `probe` (kept when found: a
/// failure may be the privileges', not the kernel's).
pub fn probed(name: &str, probe: impl FnOnce() -> bool) -> bool {
    if get(name) == Some(true) {
        return true;
    }
    let value = probe();
    if value {
        store(&[(name, value)]);
    }
    value
}

/// A feature's name in the file, and how to read it of aya's.
type Named<T> = (&'static str, fn(&T) -> bool);

/// aya's features, each by the name it is kept under, and how to read it.
const AYA: [Named<Features>; 7] = [
    ("aya.bpf_name", Features::bpf_name),
    ("aya.bpf_probe_read_kernel", Features::bpf_probe_read_kernel),
    ("aya.bpf_perf_link", Features::bpf_perf_link),
    ("aya.bpf_global_data", Features::bpf_global_data),
    ("aya.bpf_cookie", Features::bpf_cookie),
    ("aya.cpumap_prog_id", Features::cpumap_prog_id),
    ("aya.devmap_prog_id", Features::devmap_prog_id),
];
/// Whether the kernel takes BTF at all; then each of its BTF features.
const AYA_BTF: &str = "aya.btf";
const AYA_BTF_FEATURES: [Named<BtfFeatures>; 8] = [
    ("aya.btf_func", BtfFeatures::btf_func),
    ("aya.btf_func_global", BtfFeatures::btf_func_global),
    ("aya.btf_datasec", BtfFeatures::btf_datasec),
    ("aya.btf_datasec_zero", BtfFeatures::btf_datasec_zero),
    ("aya.btf_float", BtfFeatures::btf_float),
    ("aya.btf_decl_tag", BtfFeatures::btf_decl_tag),
    ("aya.btf_type_tag", BtfFeatures::btf_type_tag),
    ("aya.btf_enum64", BtfFeatures::btf_enum64),
];

/// Hands aya the features this boot's file holds, before it first needs them (once per process);
/// without them (the first start of a boot) aya probes, and [`remember_aya`] keeps what it
/// found.
pub fn give_aya() {
    static GIVEN: Once = Once::new();
    GIVEN.call_once(give_aya_now);
}

fn give_aya_now() {
    let [a, b, c, d, e, f, g] = AYA.map(|(name, _)| get(name));
    let (Some(a), Some(b), Some(c), Some(d), Some(e), Some(f), Some(g), Some(btf)) =
        (a, b, c, d, e, f, g, get(AYA_BTF))
    else {
        return;
    };
    let btf = if btf {
        let [h, i, j, k, l, m, n, o] = AYA_BTF_FEATURES.map(|(name, _)| get(name));
        let (Some(h), Some(i), Some(j), Some(k), Some(l), Some(m), Some(n), Some(o)) =
            (h, i, j, k, l, m, n, o)
        else {
            return;
        };
        Some(BtfFeatures::new(h, i, j, k, l, m, n, o))
    } else {
        None
    };
    aya::set_features(Features::new(a, b, c, d, e, f, g, btf));
}

/// Keeps the features aya found (or was given), once it has loaded something: only when chaos
/// had every capability (a probe refused for want of one reads as a missing feature) and aya
/// found global data and BTF, which every kernel chaos runs on has.
pub fn remember_aya() {
    let kept = AYA
        .iter()
        .map(|(name, _)| *name)
        .chain([AYA_BTF])
        .chain(AYA_BTF_FEATURES.iter().map(|(name, _)| *name))
        .all(|name| get(name).is_some());
    if kept {
        return;
    }
    let features = aya::features();
    if !features.bpf_global_data()
        || features.btf().is_none()
        || !crate::capabilities::missing().is_empty()
    {
        return;
    }
    let mut values: Vec<(&str, bool)> = AYA.map(|(name, read)| (name, read(features))).into();
    values.push((AYA_BTF, features.btf().is_some()));
    if let Some(btf) = features.btf() {
        values.extend(AYA_BTF_FEATURES.map(|(name, read)| (name, read(btf))));
    }
    store(&values);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_of_another_boot_are_not_used() {
        let dir = std::env::temp_dir().join(format!("chaos-cache-test-{}", std::process::id()));
        let path = dir.join("kernel-features.json");
        let found = Found {
            boot_id: "boot-a".into(),
            chaos: BUILD.into(),
            features: [("set_retval".to_owned(), true)].into(),
        };
        write(&path, &found);
        assert_eq!(read(&path, "boot-a"), found.features);
        assert!(read(&path, "boot-b").is_empty());
        write(
            &path,
            &Found {
                chaos: "0.0.1 another".into(),
                ..found
            },
        );
        assert!(read(&path, "boot-a").is_empty());
        assert!(read(&path, "").is_empty());
        fs::write(&path, "not json").unwrap();
        assert!(read(&path, "boot-a").is_empty());
        let _ = fs::remove_dir_all(dir);
    }
}

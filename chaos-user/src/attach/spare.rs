//! Spare programs, verified before a run asks for them. While `chaos idle` runs (the DaemonSet's
//! process on a node, or one started by hand), a run of a fault ends by loading its programs
//! and maps once more, fresh and empty, and pinning them under the idle process's directory,
//! `/sys/fs/bpf/chaos/spare-PID-START/KEY`. The next run with the same KEY (the same chaos
//! binary, programs, map sizes and globals) takes them by renaming that directory (so only one
//! run can), opens the pins and removes them: no object to parse or relocate, nothing to
//! verify, about half of a start (`cargo xtask bench`, start). A spare is never attached and its
//! maps hold no target until a run takes it. Without `chaos idle` nothing is kept: a run leaves
//! no pin behind. `chaos idle` removes its directory as it ends; if it was killed, the next
//! chaos command does ([`clean_up`]).

use std::{
    collections::{HashMap, hash_map::DefaultHasher},
    fs,
    hash::{Hash, Hasher},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    str::FromStr as _,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData},
    programs::{
        BtfTracePoint, CgroupSkb, CgroupSock, CgroupSockAddr, FEntry, FExit, KProbe, Lsm,
        LsmCgroup, ProbeKind, Program, ProgramError, SchedClassifier, TracePoint, Xdp,
    },
};
use aya_obj::ProgramSection;
use chaos_common::{
    fault::DiskFilter,
    hook::{self, Hook},
    names,
};
use tracing::debug;

use super::{AttachError, Loaded};
use crate::state::PIN_ROOT;

/// `chaos idle`'s directory of spares is `PIN_ROOT/spare-PID-START` (its PID and start time).
const KEEPER_PREFIX: &str = "spare-";
/// Spares a keeper holds at most; making one more removes the oldest.
const MAX_SPARES: usize = 16;

/// How a run's object is loaded: everything that makes two runs' programs and maps the same.
pub struct Spec {
    object: &'static [u8],
    hooks: Vec<Hook>,
    max_entries: Vec<(&'static str, u32)>,
    globals: Vec<(&'static str, Vec<u8>)>,
}

impl Spec {
    pub fn new(object: &'static [u8], hooks: &[Hook]) -> Self {
        Spec {
            object,
            hooks: hooks.to_vec(),
            max_entries: Vec::new(),
            globals: Vec::new(),
        }
    }

    /// `object` without globals (a probe, a network fault), for `hooks`. The errno object's
    /// per-CPU counters and PID bitmap, which only a fault on calls uses (through its own
    /// spec), get one entry: the kernel allocates each when the map is made.
    pub fn plain(object: &'static [u8], hooks: &[Hook]) -> Self {
        let spec = Spec::new(object, hooks)
            .max_entries(names::MAP_COUNTERS, 1)
            .max_entries(names::MAP_TARGET_COUNTERS, 1)
            .max_entries(names::MAP_TARGET_PID_BITS, 1);
        // But the fmod_ret bio program's offsets: it follows typed pointers, which verify only
        // at the fields' real offsets; and every branch a fault may take live (frozen globals
        // let the verifier drop the others).
        let disk = hooks
            .contains(&hook::BIO_ERROR_FMOD_RET)
            .then(|| {
                crate::kernel::disk_offsets(DiskFilter {
                    whole: 1,
                    minors: 2,
                    sector_end: u64::MAX,
                    targeted: 1,
                    ..DiskFilter::ZERO
                })
                .ok()
            })
            .flatten();
        match disk {
            Some(disk) => spec.global(
                names::GLOBAL_DISK,
                &DiskFilter {
                    attributed: 1,
                    ..disk
                },
            ),
            None => spec,
        }
    }

    pub fn max_entries(mut self, map: &'static str, entries: u32) -> Self {
        self.max_entries.push((map, entries));
        self
    }

    /// Overrides global `name` with `value`.
    pub fn global<T: aya::Pod>(mut self, name: &'static str, value: &T) -> Self {
        // SAFETY: as aya's own `GlobalData` from `&T`: a `Pod` value is plain bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) };
        self.globals.push((name, bytes.to_vec()));
        self
    }

    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    /// Loads the object as specified; no program is loaded yet.
    pub fn load(&self) -> Result<Loaded, AttachError> {
        let mut loader = EbpfLoader::new();
        for &(map, entries) in &self.max_entries {
            loader.map_max_entries(map, entries);
        }
        for (name, bytes) in &self.globals {
            loader.override_global(name, bytes.as_slice(), true);
        }
        Loaded::new(&mut loader, self.object, &self.hooks)
    }

    /// Takes `chaos idle`'s spare of these programs, verified already, when it keeps one, and
    /// loads the object as specified otherwise; either can leave a spare like it once its run
    /// is over ([`Loaded::leave_spare`]).
    pub fn take_or_load(self) -> Result<Loaded, AttachError> {
        let mut loaded = match take(&self) {
            Some(loaded) => loaded,
            None => self.load()?,
        };
        loaded.spec = Some(self);
        Ok(loaded)
    }

    /// The name of this spec's spares: the running binary (device, inode, size, change time)
    /// and everything the spec holds. `None` where the binary cannot be told apart, or a hook
    /// cannot be taken from a pin.
    fn key(&self) -> Option<String> {
        if !self.hooks.iter().all(|&hook| section(hook).is_some()) {
            return None;
        }
        let exe = fs::metadata("/proc/self/exe").ok()?;
        let mut hasher = DefaultHasher::new();
        (
            exe.dev(),
            exe.ino(),
            exe.size(),
            exe.ctime(),
            exe.ctime_nsec(),
        )
            .hash(&mut hasher);
        crate::object::name_of(self.object).hash(&mut hasher);
        self.hooks.hash(&mut hasher);
        self.max_entries.hash(&mut hasher);
        self.globals.hash(&mut hasher);
        Some(format!("{:016x}", hasher.finish()))
    }
}

/// The section `hook`'s program was loaded from, where a program of it can be taken from a pin
/// (not those chaos loads past aya, again per function, as it attaches).
fn section(hook: Hook) -> Option<ProgramSection> {
    if matches!(
        hook,
        Hook::FmodRet { .. }
            | Hook::FmodRetFunction { .. }
            | Hook::FmodRetOverride { .. }
            | Hook::SyscallFexit { .. }
            | Hook::SyscallFentry { .. }
    ) {
        return None;
    }
    let (kind, attach) = hook.section();
    ProgramSection::from_str(&format!("{kind}{attach}")).ok()
}

/// `hook`'s program from its pin at `path`, as aya would have made it from its section.
fn open_program(hook: Hook, path: &Path) -> Result<Program, ProgramError> {
    let unsupported = || ProgramError::UnexpectedProgramType;
    Ok(match section(hook).ok_or_else(unsupported)? {
        ProgramSection::CgroupSockAddr { attach_type } => {
            Program::CgroupSockAddr(CgroupSockAddr::from_pin(path, attach_type)?)
        }
        ProgramSection::CgroupSock { attach_type } => {
            Program::CgroupSock(CgroupSock::from_pin(path, attach_type)?)
        }
        ProgramSection::CgroupSkb {
            attach_type: Some(attach_type),
        } => Program::CgroupSkb(CgroupSkb::from_pin(path, attach_type)?),
        ProgramSection::TracePoint => Program::TracePoint(TracePoint::from_pin(path)?),
        ProgramSection::KProbe => Program::KProbe(KProbe::from_pin(path, ProbeKind::Entry)?),
        ProgramSection::SchedClassifier => {
            Program::SchedClassifier(SchedClassifier::from_pin(path)?)
        }
        ProgramSection::Xdp { attach_type, .. } => Program::Xdp(Xdp::from_pin(path, attach_type)?),
        ProgramSection::Lsm { .. } => Program::Lsm(Lsm::from_pin(path)?),
        ProgramSection::LsmCgroup => Program::LsmCgroup(LsmCgroup::from_pin(path)?),
        ProgramSection::BtfTracePoint => Program::BtfTracePoint(BtfTracePoint::from_pin(path)?),
        ProgramSection::FEntry { .. } => Program::FEntry(FEntry::from_pin(path)?),
        ProgramSection::FExit { .. } => Program::FExit(FExit::from_pin(path)?),
        _ => return Err(unsupported()),
    })
}

/// Pin names: each map and program of a spare, in its directory. bpffs refuses names with a
/// dot, which aya's maps of globals have (`.rodata`): a pin spells it `~`.
const MAP_PIN: &str = "map_";
const PROGRAM_PIN: &str = "prog_";
/// Made last in a spare, an empty directory naming how many maps it pinned: a spare is taken
/// only whole.
const MAPS_MARK: &str = "maps-";
/// What a process owns for as long as it lives, named `PREFIX-PID-START` (its start time, so
/// that a process that took the PID since owns nothing): in a keeper's directory a spare being
/// taken or made; anywhere, a directory being removed.
const TAKEN: &str = "taken-";
const MAKING: &str = "making-";
const DROPPING: &str = "dropping-";

fn map_pin(name: &str) -> String {
    format!("{MAP_PIN}{}", name.replace('.', "~"))
}

/// This process's `PID-START`, which names what it owns.
fn own_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let pid = std::process::id();
        format!("{pid}-{}", crate::sys::start_time(pid).unwrap_or_default())
    })
}

/// The owner's `PID-START` of a directory named `name`, if it is one of `prefixes`'.
fn owner<'n>(name: &'n str, prefixes: &[&str]) -> Option<&'n str> {
    prefixes.iter().find_map(|prefix| name.strip_prefix(prefix))
}

/// The owner's `PID-START` of directory `dir`, if its name is one of `prefixes`'.
fn dir_owner<'d>(dir: &'d Path, prefixes: &[&str]) -> Option<&'d str> {
    owner(dir.file_name()?.to_str()?, prefixes)
}

/// Whether the process `tag` (`PID-START`, and whatever follows) names still runs.
fn runs(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let (Some(Ok(pid)), Some(Ok(start))) = (
        parts.next().map(str::parse::<u32>),
        parts.next().map(str::parse::<u64>),
    ) else {
        return false;
    };
    crate::sys::start_time(pid) == Some(start)
}

/// The directory of a running `chaos idle` that keeps spares, if one runs.
fn keeper() -> Option<PathBuf> {
    fs::read_dir(PIN_ROOT)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| dir_owner(path, &[KEEPER_PREFIX]).is_some_and(runs))
}

/// Makes this process the keeper of spares (`chaos idle`): their directory, which
/// [`release`] removes.
pub fn keep() -> Result<PathBuf, String> {
    let dir = Path::new(PIN_ROOT).join(format!("{KEEPER_PREFIX}{}", own_tag()));
    fs::create_dir_all(&dir).map_err(|err| {
        format!(
            "cannot make {}: {err} (is bpffs mounted at /sys/fs/bpf?)",
            dir.display()
        )
    })?;
    Ok(dir)
}

/// Removes `dir` (a keeper's, a spare, one being taken or made) and every pin in it: their
/// programs and maps are freed. It is first renamed to this process's, so that no one else
/// takes, fills or removes it meanwhile: a run that made a spare in it, or took one from it, at
/// that moment finds it gone (a run still pinning into it fails and leaves, which the retries
/// wait for).
pub fn release(dir: &Path) {
    static RELEASED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RELEASED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dropping = dir.with_file_name(format!("{DROPPING}{}-{n}", own_tag()));
    if let Err(err) = fs::rename(dir, &dropping) {
        debug!(%err, dir = %dir.display(), "release the spares");
        return;
    }
    remove(&dropping);
}

/// Removes `dir` and what is in it, again while something is still pinning into it.
fn remove(dir: &Path) {
    for _ in 0..5 {
        match fs::remove_dir_all(dir) {
            Err(err) if err.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(err) => return debug!(%err, dir = %dir.display(), "remove the spares"),
            Ok(()) => return,
        }
    }
}

/// Removes the spares of keepers that are gone (killed), and what a process killed while
/// taking, making or removing one left; returns the directories removed.
pub fn clean_up() -> Vec<String> {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    let mut remove_unowned = |dir: &Path, prefixes: &[&str]| {
        if dir_owner(dir, prefixes).is_some_and(|tag| !runs(tag)) {
            remove(dir);
            removed.push(dir.display().to_string());
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if dir_owner(&path, &[KEEPER_PREFIX]).is_some_and(runs) {
            // A live keeper's: what its runs left.
            for inner in fs::read_dir(&path).into_iter().flatten().flatten() {
                remove_unowned(&inner.path(), &[TAKEN, MAKING, DROPPING]);
            }
        } else {
            remove_unowned(&path, &[KEEPER_PREFIX, DROPPING]);
        }
    }
    removed
}

/// The spare of `spec`'s programs and maps, taken (no other run can take it), if a keeper has
/// one; its pins stay until the programs are attached ([`Loaded::unpin_spare`]).
pub fn take(spec: &Spec) -> Option<Loaded> {
    let dir = keeper()?.join(spec.key()?);
    let taken = dir.with_file_name(format!("{TAKEN}{}", own_tag()));
    fs::rename(&dir, &taken).ok()?;
    match open(spec, &taken) {
        Ok(ebpf) => Some(Loaded::opened_spare(ebpf, spec.object, &spec.hooks, taken)),
        Err(err) => {
            debug!(%err, "a spare that does not open: loading the object");
            release(&taken);
            None
        }
    }
}

fn open(spec: &Spec, dir: &Path) -> Result<Ebpf, String> {
    let mut maps = HashMap::new();
    let mut pinned = None;
    for entry in fs::read_dir(dir).map_err(|err| err.to_string())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(count) = name.strip_prefix(MAPS_MARK) {
            pinned = count.parse::<usize>().ok();
        } else if let Some(map) = name.strip_prefix(MAP_PIN) {
            let map = map.replace('~', ".");
            let data = MapData::from_pin(entry.path()).map_err(|err| format!("{map}: {err}"))?;
            let map_of = Map::from_map_data(data).map_err(|err| format!("{map}: {err}"))?;
            maps.insert(map, map_of);
        }
    }
    if pinned != Some(maps.len()) {
        return Err(format!("{} maps of {pinned:?}: not whole", maps.len()));
    }
    let mut programs = HashMap::new();
    for &hook in &spec.hooks {
        let name = hook.program();
        let path = dir.join(format!("{PROGRAM_PIN}{name}"));
        let program = open_program(hook, &path).map_err(|err| format!("{name}: {err}"))?;
        programs.insert(name.to_owned(), program);
    }
    Ok(Ebpf::from_parts(maps, programs))
}

/// With a keeper running, loads `spec`'s programs once more and leaves them as its spare for
/// the next run (the oldest spare goes once it holds [`MAX_SPARES`]). Nothing happens
/// otherwise, or if the keeper has one already; a failure only costs the next run its speed.
pub fn make(spec: &Spec) {
    let (Some(keeper), Some(key)) = (keeper(), spec.key()) else {
        return;
    };
    let dir = keeper.join(key);
    if dir.exists() {
        return;
    }
    make_room(&keeper);
    let making = keeper.join(format!("{MAKING}{}", own_tag()));
    let result = pin_fresh(spec, &making)
        .and_then(|()| fs::rename(&making, &dir).map_err(|err| format!("rename: {err}")));
    if let Err(err) = result {
        debug!(%err, "no spare left");
        release(&making);
    }
}

fn pin_fresh(spec: &Spec, dir: &Path) -> Result<(), String> {
    fs::create_dir(dir).map_err(|err| err.to_string())?;
    let mut loaded = spec.load().map_err(|err| crate::error_line(&err))?;
    for &hook in &spec.hooks {
        loaded.load(hook).map_err(|err| crate::error_line(&err))?;
    }
    let ebpf = &mut loaded.ebpf;
    for (name, map) in ebpf.maps() {
        map.pin(dir.join(map_pin(name)))
            .map_err(|err| format!("{name}: {err}"))?;
    }
    for (name, program) in ebpf.programs_mut() {
        program
            .pin(dir.join(format!("{PROGRAM_PIN}{name}")))
            .map_err(|err| format!("{name}: {err}"))?;
    }
    fs::create_dir(dir.join(format!("{MAPS_MARK}{}", ebpf.maps().count())))
        .map_err(|err| format!("mark: {err}"))
}

/// Removes the oldest spares until there is room for one more.
fn make_room(keeper: &Path) {
    let Ok(entries) = fs::read_dir(keeper) else {
        return;
    };
    let mut spares: Vec<((i64, i64), PathBuf)> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            owner(&name, &[TAKEN, MAKING, DROPPING]).is_none()
        })
        .map(|entry| {
            let made = entry
                .metadata()
                .map_or((0, 0), |meta| (meta.ctime(), meta.ctime_nsec()));
            (made, entry.path())
        })
        .collect();
    spares.sort();
    let excess = (spares.len() + 1).saturating_sub(MAX_SPARES);
    for (_, dir) in spares.into_iter().take(excess) {
        release(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every hook a spare may hold opens as the program aya made from its section: opening one
    /// from a missing pin fails at BPF_OBJ_GET, not for want of a program type.
    #[test]
    fn every_hook_a_spare_may_hold_opens_as_its_program_type() {
        let missing = Path::new("/sys/fs/bpf/chaos-no-such-pin");
        let mut held = 0;
        for hook in hook::all().filter(|&hook| section(hook).is_some()) {
            held += 1;
            let err = open_program(hook, missing).expect_err("no such pin");
            assert!(
                !matches!(err, ProgramError::UnexpectedProgramType),
                "{hook:?} cannot be opened from a pin"
            );
        }
        assert!(held > 40, "only {held} hooks can be spares");
    }

    /// What a process owns is its own while it runs, and no one's once its PID is taken by
    /// another process (another start time) or its name is not an owner's.
    #[test]
    fn what_a_process_owns_is_named_by_its_pid_and_start_time() {
        let tag = own_tag();
        assert!(runs(tag));
        let name = format!("{TAKEN}{tag}");
        assert_eq!(owner(&name, &[TAKEN, MAKING]), Some(tag));
        assert!(owner(&name, &[MAKING]).is_none());
        assert!(owner("0123456789abcdef", &[TAKEN, MAKING, DROPPING]).is_none());
        let (pid, start) = tag.split_once('-').expect("PID-START");
        let start: u64 = start.parse().expect("a start time");
        assert!(
            !runs(&format!("{pid}-{}", start + 1)),
            "a later process of the PID"
        );
        assert!(
            runs(&format!("{tag}-3")),
            "what follows the start time is not the owner's"
        );
        assert!(!runs(pid), "no start time");
    }

    /// Runs share a spare only when everything they load is the same.
    #[test]
    fn the_key_names_the_programs_the_map_sizes_and_the_globals() {
        let spec = |entries: u32, cgroup: u64| {
            Spec::new(crate::object::ERRNO, &[hook::ERRNO_EXTRA[0]])
                .max_entries(names::MAP_TARGET_PIDS, entries)
                .global(names::GLOBAL_TARGET_CGROUP_ID, &cgroup)
        };
        let key = spec(1, 0).key().expect("a key");
        assert_eq!(spec(1, 0).key().as_ref(), Some(&key));
        assert_ne!(spec(2, 0).key().as_ref(), Some(&key));
        assert_ne!(spec(1, 7).key().as_ref(), Some(&key));
        let other_object = Spec::new(crate::object::ERRNO_LEGACY, &[hook::ERRNO_EXTRA[0]])
            .max_entries(names::MAP_TARGET_PIDS, 1)
            .global(names::GLOBAL_TARGET_CGROUP_ID, &0u64);
        assert_ne!(other_object.key().as_ref(), Some(&key));
        // Programs chaos loads again per function as they attach are never spares.
        assert_eq!(
            Spec::new(crate::object::ERRNO, &[hook::BIO_ERROR_FMOD_RET]).key(),
            None
        );
    }
}

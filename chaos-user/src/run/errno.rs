//! A fault on calls live in the kernel: the errno object loaded with the targets in its maps,
//! the plan's hooks (and a signal's, a syscall's, a kernel function's or the bios') attached.

use std::{collections::HashSet, fs::File, os::fd::AsFd, path::Path, time::Duration};

use aya::maps::CgroupArray;
use chaos_common::{
    counters::{Counters, counter_index},
    fault::{
        CallFault, ClockFilter, CorruptFilter, DiskFilter, KernelFnFilter, PathOffsets,
        StatfsFilter,
    },
    hook::{self, Hook},
    names,
    target::{MAX_TARGET_PIDS, TARGET_TREE, Target},
};
use thiserror::Error;

use crate::{
    attach::{AttachError, Loaded, Sites, pid_bits::PidBits, spare::Spec},
    clock::Deadline,
    kernel,
    plan::Plan,
    target::Targets,
};

/// What only a fault on calls needs of the kernel beyond its programs.
#[derive(Debug, Error)]
pub enum CallsError {
    #[error("--path needs the kernel's struct layouts from its BTF")]
    PathOffsets(#[source] crate::btf::BtfError),
    #[error(
        "a disk fault needs the block layer's struct layouts from the kernel's BTF (kernel 5.12 or later)"
    )]
    DiskOffsets(#[source] crate::btf::BtfError),
    #[error("--pid-tree needs the sched:sched_process_fork tracepoint: {0}")]
    ForkTracepoint(String),
    #[error("cannot open cgroup {path}")]
    Cgroup {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Attach(#[from] AttachError),
}

/// The slot of the one fault a run holds.
const FAULT_SLOT: u32 = 0;

/// The hook of a fault on one syscall or on bios rather than on `--op`s.
#[derive(Clone, Copy, Debug)]
pub enum ExtraHook<'a> {
    /// `chaos signal`: this program (the syscall's entry tracepoint or fentry) sends a signal.
    Signal(&'a str, Hook),
    /// `chaos fail --syscall`: this hook (a kprobe, or fmod_ret) on the syscall's entry function
    /// overrides its return.
    Override(&'a str, Hook),
    /// `chaos fail --kernel-fn`: this hook (a kprobe, or fmod_ret) on the function overrides its
    /// return, for the calls the filter lets through (`--caller`, an allocation's gfp flags).
    KernelFn(&'a str, KernelFnFilter, Hook),
    /// `chaos disk error`: this hook (fmod_ret or a kprobe) on `should_fail_bio` fails the bios
    /// this filter matches.
    Bio(DiskFilter, Hook),
    /// `chaos disk full`: these programs (fexit, or the statfs syscalls' tracepoints) report
    /// this filesystem full.
    Statfs(StatfsFilter, &'static [Hook]),
    /// `chaos corrupt-io --op read`: these programs (fexit, or syscall tracepoints) flip bits as
    /// the filter says.
    CorruptRead(CorruptFilter, &'static [Hook]),
    /// `chaos delay`: this program (the exit tracepoints or fexit) on these syscalls stops the
    /// target.
    Delay(&'a [String], Hook),
    /// `chaos clock`: fexit programs on the clock syscalls shift what they return (with
    /// `time_fmod_ret`, the first bool, an fmod_ret program answers time() itself), and an exec
    /// program withholds the vDSO, as the filter says; with the second, sleeps to absolute
    /// deadlines are taken back to the true clock.
    Clock(ClockFilter, bool, bool),
}

/// The errno object loaded for a run: every program verified, the targets in the maps, nothing
/// attached yet ([`CallsLoaded::start`] attaches).
pub struct CallsLoaded<'t> {
    loaded: Loaded,
    targets: &'t Targets,
    fault: CallFault,
    /// Its hooks, in attach order.
    hooks: Vec<Hook>,
    syscall: Option<String>,
    function: Option<String>,
    exits: Vec<String>,
}

impl<'t> CallsLoaded<'t> {
    /// Loads every program `fault` needs: the plan's hooks, the syscall's, a tree's fork and
    /// exit tracepoints; if any is refused, nothing has been attached.
    pub fn load(
        targets: &'t Targets,
        fault: CallFault,
        plan: &Plan,
        extra: Option<ExtraHook<'_>>,
    ) -> Result<Self, CallsError> {
        let tree = targets.has_tree();
        let fork_child_pid_offset = if tree {
            kernel::fork_child_pid_offset().map_err(CallsError::ForkTracepoint)?
        } else {
            0
        };
        let (cgroup_id, cgroup_level) = targets.cgroup.as_ref().map_or((0, 0), |c| (c.id, c.level));
        let path_offsets = if fault.dir_ino != 0 {
            kernel::path_offsets().map_err(CallsError::PathOffsets)?
        } else {
            PathOffsets::ZERO
        };
        let disk = match extra {
            Some(ExtraHook::Bio(filter, _)) => {
                kernel::disk_offsets(filter).map_err(CallsError::DiskOffsets)?
            }
            _ => DiskFilter::default(),
        };
        let kernel_fn = match extra {
            Some(ExtraHook::KernelFn(_, filter, _)) => filter,
            _ => KernelFnFilter::default(),
        };
        let statfs = match extra {
            Some(ExtraHook::Statfs(filter, _)) => filter,
            _ => StatfsFilter::default(),
        };
        let corrupt = match extra {
            Some(ExtraHook::CorruptRead(filter, _)) => filter,
            _ => CorruptFilter::default(),
        };
        let clock = match extra {
            Some(ExtraHook::Clock(filter, ..)) => filter,
            _ => ClockFilter::default(),
        };
        // The fork and exit tracepoints first, so that no child escapes once targets are live.
        let mut hooks = if tree {
            vec![hook::FORK, hook::EXIT]
        } else {
            Vec::new()
        };
        let (syscall, function) = match extra {
            Some(ExtraHook::Signal(name, signal_hook)) => {
                hooks.push(signal_hook);
                (Some(name.to_owned()), None)
            }
            Some(ExtraHook::Override(name, override_hook)) => {
                hooks.push(override_hook);
                (Some(name.to_owned()), None)
            }
            Some(ExtraHook::KernelFn(name, _, override_hook)) => {
                hooks.push(override_hook);
                (None, Some(name.to_owned()))
            }
            Some(ExtraHook::Bio(_, bio_hook)) => {
                hooks.push(bio_hook);
                (None, Some(hook::BIO_FUNCTION.to_owned()))
            }
            Some(ExtraHook::Statfs(_, statfs_hooks)) => {
                hooks.extend(statfs_hooks);
                (None, None)
            }
            Some(ExtraHook::CorruptRead(_, read_hooks)) => {
                hooks.extend(read_hooks);
                (None, None)
            }
            Some(ExtraHook::Delay(_, delay_hook)) => {
                hooks.push(delay_hook);
                (None, None)
            }
            Some(ExtraHook::Clock(_, time_fmod_ret, sleeps)) => {
                // Reads shifted first: an image without its vDSO reads through them.
                let [clock_gettime, gettimeofday, time] = hook::CLOCK_FEXIT;
                let time = if time_fmod_ret {
                    hook::CLOCK_TIME_FMOD_RET
                } else {
                    time
                };
                hooks.extend([clock_gettime, gettimeofday, time]);
                if sleeps {
                    hooks.extend(hook::CLOCK_SLEEP);
                }
                hooks.push(hook::CLOCK_EXEC);
                (None, None)
            }
            None => (None, None),
        };
        let exits = match extra {
            Some(ExtraHook::Delay(syscalls, _)) => syscalls.to_vec(),
            _ => Vec::new(),
        };
        for &hook in plan.iter().flat_map(|(_, rung)| rung.hooks) {
            // Read and write share one program.
            if !hooks.contains(&hook) {
                hooks.push(hook);
            }
        }
        let set_retval = u32::from(kernel::set_retval());
        // Per-CPU counters cost the kernel an allocation per entry when the map is made, most
        // of a run's start at full size: this run's fault slot and targets only.
        let counter_entries = counter_index(FAULT_SLOT + 1, 0);
        let target_entries = targets.processes.len().max(1) as u32;
        // The targets' hash is preallocated too: room for the processes named, and for their
        // descendants only where a tree adds them.
        let target_pids = if tree {
            MAX_TARGET_PIDS
        } else {
            target_entries
        };
        let spec = Spec::new(kernel::errno_object(), &hooks)
            .max_entries(names::MAP_COUNTERS, counter_entries)
            .max_entries(names::MAP_TARGET_COUNTERS, target_entries)
            .max_entries(names::MAP_TARGET_PIDS, target_pids)
            .max_entries(names::MAP_TARGET_PID_BITS, PidBits::words())
            .global(names::GLOBAL_KERNEL_SET_RETVAL, &set_retval)
            .global(names::GLOBAL_TARGET_CGROUP_ID, &cgroup_id)
            .global(names::GLOBAL_TARGET_CGROUP_LEVEL, &cgroup_level)
            .global(names::GLOBAL_FORK_CHILD_PID_OFFSET, &fork_child_pid_offset)
            .global(names::GLOBAL_PATH_OFFSETS, &path_offsets)
            .global(names::GLOBAL_DISK, &disk)
            .global(names::GLOBAL_KERNEL_FN, &kernel_fn)
            .global(names::GLOBAL_STATFS, &statfs)
            .global(names::GLOBAL_CORRUPT, &corrupt)
            .global(names::GLOBAL_CLOCK, &clock);
        // Verified ahead by `chaos idle`'s spares when it runs, else here.
        let mut loaded = spec.take_or_load()?;
        for &hook in &hooks {
            loaded.load(hook)?;
        }
        // The index of each process target is its place in `targets.processes`: the report
        // reads its counters from there.
        let pid_bits = PidBits::map(loaded.ebpf())?;
        for (index, process) in targets.processes.iter().enumerate() {
            let target = Target {
                fault: FAULT_SLOT,
                flags: if process.tree { TARGET_TREE } else { 0 },
                index: index as u32,
                _pad: 0,
            };
            add_target(&mut loaded, &pid_bits, process.pid, target)?;
        }
        drop(pid_bits);
        // The legacy object's programs on kernel functions find a cgroup target through a
        // cgroup array (the ancestor-id helper is not theirs before 5.11).
        if let Some(cgroup) = &targets.cgroup
            && loaded.ebpf().map(names::MAP_TARGET_CGROUP).is_some()
        {
            let dir = File::open(&cgroup.path).map_err(|source| CallsError::Cgroup {
                path: cgroup.path.clone(),
                source,
            })?;
            let mut array: CgroupArray<_> = loaded.map(names::MAP_TARGET_CGROUP)?;
            array
                .set(0, dir.as_fd(), 0)
                .map_err(|source| AttachError::Map {
                    name: names::MAP_TARGET_CGROUP,
                    source,
                })?;
        }
        Ok(CallsLoaded {
            loaded,
            targets,
            fault,
            hooks,
            syscall,
            function,
            exits,
        })
    }

    /// Takes map `name` out of the object (see [`Loaded::take_map`]).
    pub fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, AttachError> {
        self.loaded.take_map(name)
    }

    /// Attaches every hook, then arms the fault for `lifetime` from then (the attachment's
    /// [`CallsAttachment::deadline`]); with `pin`, every link and the counters are pinned there
    /// (a detached run).
    pub fn start(
        mut self,
        lifetime: Duration,
        pin: Option<&Path>,
    ) -> Result<CallsAttachment, CallsError> {
        // Set with its deadline passed while the hooks attach one by one, then armed at once:
        // an operation on several syscalls or sites (the kprobe rung's fork and clone, connect
        // over IPv4 and IPv6) never fails on some of them and not the others.
        self.loaded
            .set(names::MAP_FAULTS, FAULT_SLOT, disarmed(self.fault))?;
        let cgroups = self
            .targets
            .attach_cgroups()
            .into_iter()
            .map(|path| File::open(&path).map_err(|source| CallsError::Cgroup { path, source }))
            .collect::<Result<Vec<File>, _>>()?;
        let (syscall, function) = (self.syscall.take(), self.function.take());
        let exits = std::mem::take(&mut self.exits);
        let sites = Sites {
            cgroups: &cgroups,
            syscall: syscall.as_deref(),
            function: function.as_deref(),
            exits: &exits,
            ..Sites::default()
        };
        for hook in std::mem::take(&mut self.hooks) {
            if let Err(err) = self.loaded.attach(hook, &sites, pin) {
                // In the reverse of the attach order, as a run ends.
                self.loaded.detach();
                return Err(err.into());
            }
            // Once the fork and exit tracepoints are live (they come first), the descendants
            // that exist already.
            if hook == hook::EXIT {
                self.mark_descendants()?;
            }
        }
        if let Some(dir) = pin {
            // The counters `chaos list` reads, and what keeps them once this process is gone.
            for name in [names::MAP_TARGET_COUNTERS, names::MAP_COUNTERS] {
                self.loaded.pin_map(name, dir)?;
            }
        }
        // The live window is `lifetime` whatever attaching took.
        let fault = CallFault {
            deadline_ns: Deadline::after(lifetime).ns,
            ..self.fault
        };
        let mut attachment = CallsAttachment {
            loaded: self.loaded,
            fault,
        };
        attachment
            .loaded
            .set(names::MAP_FAULTS, FAULT_SLOT, fault)?;
        attachment.loaded.unpin_spare();
        Ok(attachment)
    }

    /// Makes the tree targets' existing descendants targets. A descendant that forks before it
    /// is marked has a child the fork program does not see: so look again until a pass finds no
    /// one the kernel has not marked; after that every fork is the program's. (Stopping only at
    /// a pass that finds no new process at all would never stop while a target forks faster than
    /// a pass over /proc takes, as a busy shell loop under load does.)
    fn mark_descendants(&mut self) -> Result<(), CallsError> {
        let pid_bits = PidBits::map(self.loaded.ebpf())?;
        let trees = self.targets.processes.iter().enumerate();
        for (index, process) in trees.filter(|(_, p)| p.tree) {
            let target = Target {
                fault: FAULT_SLOT,
                flags: TARGET_TREE,
                index: index as u32,
                _pad: 0,
            };
            let mut marked = HashSet::from([process.pid]);
            loop {
                let new: Vec<u32> = crate::target::descendants(process.pid)
                    .into_iter()
                    .filter(|&pid| marked.insert(pid) && !is_target(&mut self.loaded, pid))
                    .collect();
                if new.is_empty() {
                    break;
                }
                for pid in new {
                    add_target(&mut self.loaded, &pid_bits, pid, target)?;
                }
            }
        }
        Ok(())
    }
}

/// A fault on calls live in the kernel.
pub struct CallsAttachment {
    loaded: Loaded,
    /// The fault as armed.
    fault: CallFault,
}

/// An attachment dropped on an error path detaches as a finished run does: in the reverse of
/// the attach order (aya alone would drop the programs in no set order). Detaching twice is a
/// no-op; a detached run's pinned links stay.
impl Drop for CallsAttachment {
    fn drop(&mut self) {
        self.loaded.detach();
    }
}

impl CallsAttachment {
    /// Disarms the fault on every hook at once, then detaches and unloads every program but
    /// keeps the maps (final counters).
    pub fn detach(&mut self) {
        let _ = self
            .loaded
            .set(names::MAP_FAULTS, FAULT_SLOT, disarmed(self.fault));
        self.loaded.detach();
    }

    /// When the fault ends, as armed.
    pub fn deadline(&self) -> Deadline {
        Deadline {
            ns: self.fault.deadline_ns,
        }
    }

    /// The programs and maps.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// Matched and acted-on calls of operation `code` (`OP_*`) so far.
    pub fn counters(&self, code: u32) -> Counters {
        self.loaded
            .counters(names::MAP_COUNTERS, counter_index(FAULT_SLOT, code))
    }

    /// Matched and acted-on calls of the target at `index` (its place in
    /// [`Targets::processes`]; 0 for a cgroup target), over every operation.
    pub fn target_counters(&self, index: usize) -> Counters {
        self.loaded
            .counters(names::MAP_TARGET_COUNTERS, index as u32)
    }
}

/// `fault` with its deadline passed: the programs match and inject nothing (the fork and exit
/// programs still follow the targets).
fn disarmed(fault: CallFault) -> CallFault {
    CallFault {
        deadline_ns: 0,
        ..fault
    }
}

/// Whether `pid` is a target already: the fork program marked it.
fn is_target(loaded: &mut Loaded, pid: u32) -> bool {
    loaded
        .map::<aya::maps::HashMap<_, u32, Target>>(names::MAP_TARGET_PIDS)
        .is_ok_and(|pids| pids.get(&pid, 0).is_ok())
}

/// Makes `pid` a target: its entry, then its bit (the bit says to look for the entry).
fn add_target(
    loaded: &mut Loaded,
    pid_bits: &PidBits,
    pid: u32,
    target: Target,
) -> Result<(), AttachError> {
    let name = names::MAP_TARGET_PIDS;
    let mut pids: aya::maps::HashMap<_, u32, Target> = loaded.map(name)?;
    pids.insert(pid, target, 0)
        .map_err(|source| AttachError::Map { name, source })?;
    pid_bits.set(pid);
    Ok(())
}

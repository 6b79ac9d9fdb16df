//! Loading and attaching: from a planned fault to programs live in the kernel. Every link belongs
//! to the [`ErrnoAttachment`]; dropping it (or the process dying) detaches everything.

use std::{
    collections::HashMap as Map,
    fs::File,
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapError, PerCpuArray},
    programs::{
        CgroupAttachMode, CgroupSock, CgroupSockAddr, KProbe, Lsm, ProgramError, TracePoint,
        links::FdLink,
    },
};
use chaos_common::{
    counters::{Counters, counter_index},
    errno::{self as common, PathOffsets, TARGET_TREE, Target},
    names,
};
use thiserror::Error;
use tracing::debug;

pub mod net;
mod pid_bits;
pub mod qdisc;

use self::pid_bits::PidBits;
use crate::{
    fault::{Backend, BackendChoice, Hook, Mechanism, Op},
    kernel::{self, Finding},
    object,
    target::Targets,
};

#[derive(Debug, Error)]
pub enum AttachError {
    #[error("cannot load the eBPF object")]
    Object(#[source] aya::EbpfError),
    #[error("program {0} is missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("cannot map {name} into memory")]
    MapMemory {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("cannot open cgroup {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--op {op} cannot be injected on this kernel: {explanation}")]
    Unsupported { op: Op, explanation: String },
    #[error("cannot pin {name} for a detached run: {reason}")]
    Pin { name: String, reason: String },
    #[error("network faults cannot run on this kernel: {0}")]
    NetUnsupported(String),
    #[error("cannot enter the target network namespace")]
    Netns(#[source] io::Error),
    #[error("--path needs the kernel's struct layouts from its BTF: {0}")]
    PathOffsets(#[source] crate::btf::BtfError),
    #[error("--pid-tree needs the sched:sched_process_fork tracepoint: {0}")]
    ForkTracepoint(String),
    #[error("no tracepoint syscalls:{event}: {reason}")]
    SyscallTracepoint { event: String, reason: String },
    #[error("--syscall {syscall} cannot be failed on this kernel: {reason}")]
    SyscallOverride { syscall: String, reason: String },
}

/// The slot of the one fault a `chaos fail` run holds.
const FAULT_SLOT: u32 = 0;

/// The backend chosen for each operation of a fault.
pub type Plan = Vec<(Op, &'static Backend)>;

/// Picks, for each operation, the first backend the kernel supports (or the one `choice`
/// insists on). `unsupported` says why a mechanism cannot run here, or `None` when it can.
pub fn plan(
    ops: &[Op],
    choice: BackendChoice,
    mut unsupported: impl FnMut(Mechanism) -> Option<Finding>,
) -> Result<Plan, AttachError> {
    let mut verdicts: Map<Mechanism, Option<Finding>> = Map::new();
    ops.iter()
        .map(|&op| {
            let candidates: Vec<&'static Backend> = op
                .backends()
                .iter()
                .filter(|backend| {
                    choice == BackendChoice::Auto
                        || choice == BackendChoice::Only(backend.mechanism)
                })
                .collect();
            if candidates.is_empty() {
                let offered: Vec<&str> = op.backends().iter().map(|b| b.mechanism.name()).collect();
                return Err(AttachError::Unsupported {
                    op,
                    explanation: format!("no such backend for it; it has: {}", offered.join(", ")),
                });
            }
            let mut reasons = Vec::new();
            for backend in candidates {
                let verdict = verdicts
                    .entry(backend.mechanism)
                    .or_insert_with(|| unsupported(backend.mechanism));
                match verdict {
                    None => return Ok((op, backend)),
                    Some(finding) => {
                        reasons.push(format!("{}: {}", backend.mechanism, finding.explain()))
                    }
                }
            }
            Err(AttachError::Unsupported {
                op,
                explanation: reasons.join("; "),
            })
        })
        .collect()
}

/// Why `mechanism` cannot run on this kernel, or `None`.
pub fn mechanism_unsupported(mechanism: Mechanism) -> Option<Finding> {
    match mechanism {
        Mechanism::Lsm => kernel::lsm_unsupported(),
        Mechanism::Cgroup => Some(kernel::cgroup_sock_addr()).filter(|finding| !finding.supported),
    }
}

/// A fault on one syscall rather than on `--op`s.
#[derive(Clone, Copy, Debug)]
pub enum SyscallHook<'a> {
    /// `chaos signal`: the syscall's entry tracepoint sends a signal.
    Signal(&'a str),
    /// `chaos fail --syscall`: a kprobe on the syscall's entry function overrides its return.
    Override(&'a str),
}

/// An errno or signal fault live in the kernel.
pub struct ErrnoAttachment {
    ebpf: Ebpf,
    plan: Plan,
    /// Tracepoint programs attached: a signal's syscall, a process tree's fork and exit.
    tracepoints: Vec<&'static str>,
    /// Whether the syscall-override kprobe is attached.
    kprobe: bool,
}

impl ErrnoAttachment {
    /// Loads every program the fault needs (the plan's hooks, and the `syscall` hook), fills the
    /// maps, then attaches: if any program fails to load, nothing has been attached.
    pub fn attach(
        targets: &Targets,
        mut kernel_fault: common::ErrnoFault,
        plan: Plan,
        syscall: Option<SyscallHook<'_>>,
        lifetime: Duration,
        pin: Option<&Path>,
    ) -> Result<Self, AttachError> {
        let btf = Btf::from_sys_fs().ok();
        let tree = targets.processes.iter().any(|p| p.tree);
        let fork_child_pid_offset = if tree { fork_child_pid_offset()? } else { 0 };
        let (cgroup_id, cgroup_level) = targets.cgroup.as_ref().map_or((0, 0), |c| (c.id, c.level));
        let path_offsets = if kernel_fault.dir_ino != 0 {
            path_offsets().map_err(AttachError::PathOffsets)?
        } else {
            PathOffsets::ZERO
        };
        let mut ebpf = EbpfLoader::new()
            .btf(btf.as_ref())
            .override_global(names::GLOBAL_TARGET_CGROUP_ID, &cgroup_id, true)
            .override_global(names::GLOBAL_TARGET_CGROUP_LEVEL, &cgroup_level, true)
            .override_global(
                names::GLOBAL_FORK_CHILD_PID_OFFSET,
                &fork_child_pid_offset,
                true,
            )
            .override_global(names::GLOBAL_PATH_OFFSETS, &path_offsets, true)
            .load(object::ERRNO)
            .map_err(AttachError::Object)?;

        kernel_fault.deadline_ns = monotonic_now_ns().saturating_add(lifetime.as_nanos() as u64);
        let mut faults: Array<_, common::ErrnoFault> = map(&mut ebpf, names::MAP_ERRNO_FAULTS)?;
        faults
            .set(FAULT_SLOT, kernel_fault, 0)
            .map_err(map_error(names::MAP_ERRNO_FAULTS))?;
        let pid_bits = PidBits::map(&ebpf)?;
        // The index of each process target is its place in `targets.processes`: the report
        // reads its counters from there.
        for (index, process) in targets.processes.iter().enumerate() {
            let flags = if process.tree { TARGET_TREE } else { 0 };
            let target = Target {
                fault: FAULT_SLOT,
                flags,
                index: index as u32,
                _pad: 0,
            };
            add_target(&mut ebpf, &pid_bits, process.pid, target)?;
        }

        let hooks = hooks_of(&plan);
        for &hook in &hooks {
            load(&mut ebpf, hook, btf.as_ref())?;
        }
        let mut tracepoints: Vec<(&'static str, &str, String)> = Vec::new();
        if tree {
            tracepoints.push((
                names::PROG_TRACEPOINT_FORK,
                "sched",
                "sched_process_fork".into(),
            ));
            tracepoints.push((
                names::PROG_TRACEPOINT_EXIT,
                "sched",
                "sched_process_exit".into(),
            ));
        }
        if let Some(SyscallHook::Signal(syscall)) = syscall {
            let event = format!("sys_enter_{syscall}");
            syscall_tracepoint_exists(&event)?;
            tracepoints.push((names::PROG_TRACEPOINT_SYSCALL_SIGNAL, "syscalls", event));
        }
        let override_function = match syscall {
            Some(SyscallHook::Override(name)) => {
                let function = override_function(name)?;
                let name = names::PROG_KPROBE_SYSCALL_OVERRIDE;
                program::<KProbe>(&mut ebpf, name)?
                    .load()
                    .map_err(|source| AttachError::Program { name, source })?;
                Some(function)
            }
            _ => None,
        };
        for (name, ..) in &tracepoints {
            program::<TracePoint>(&mut ebpf, name)?
                .load()
                .map_err(|source| AttachError::Program { name, source })?;
        }
        // Follow forks before the fault starts, so no child escapes.
        for (name, category, event) in &tracepoints {
            let program = program::<TracePoint>(&mut ebpf, name)?;
            let error = |source| AttachError::Program { name, source };
            let id = program.attach(category, event).map_err(error)?;
            if let Some(dir) = pin {
                pin_link(program.take_link(id).map_err(error)?, dir, name, 0)?;
            }
        }
        // Descendants that exist already, looked up once the fork tracepoint is live. A
        // descendant that forks before it is marked has a child the program does not see: so
        // look again until a pass finds no one new; after that every fork is the program's.
        for (index, process) in targets.processes.iter().enumerate().filter(|(_, p)| p.tree) {
            let target = Target {
                fault: FAULT_SLOT,
                flags: TARGET_TREE,
                index: index as u32,
                _pad: 0,
            };
            let mut marked = std::collections::HashSet::from([process.pid]);
            loop {
                let found = crate::target::descendants(process.pid);
                let new: Vec<u32> = found
                    .into_iter()
                    .filter(|&pid| marked.insert(pid))
                    .collect();
                if new.is_empty() {
                    break;
                }
                for pid in new {
                    add_target(&mut ebpf, &pid_bits, pid, target)?;
                }
            }
        }
        drop(pid_bits);
        let cgroups = targets
            .attach_cgroups()
            .into_iter()
            .map(|path| File::open(&path).map_err(|source| AttachError::Cgroup { path, source }))
            .collect::<Result<Vec<File>, _>>()?;
        for &hook in &hooks {
            attach(&mut ebpf, hook, &cgroups, pin)?;
            debug!(program = hook.program(), "attached");
        }
        if let Some(function) = &override_function {
            let name = names::PROG_KPROBE_SYSCALL_OVERRIDE;
            let program = program::<KProbe>(&mut ebpf, name)?;
            let error = |source| AttachError::Program { name, source };
            let id = program.attach(function, 0).map_err(error)?;
            if let Some(dir) = pin {
                pin_link(program.take_link(id).map_err(error)?, dir, name, 0)?;
            }
        }
        if let Some(dir) = pin {
            // The counters `chaos list` reads, and what keeps them once this process is gone.
            for name in [names::MAP_TARGET_COUNTERS, names::MAP_COUNTERS] {
                let map = ebpf.map(name).ok_or(AttachError::MissingMap(name))?;
                map.pin(dir.join(name)).map_err(|err| AttachError::Pin {
                    name: name.to_owned(),
                    reason: err.to_string(),
                })?;
            }
        }
        let tracepoints = tracepoints.into_iter().map(|(name, ..)| name).collect();
        Ok(ErrnoAttachment {
            ebpf,
            plan,
            tracepoints,
            kprobe: override_function.is_some(),
        })
    }

    /// Detaches and unloads every program but keeps the maps, so the final counters read after
    /// this are exact: no call can be failed between the reading and the detaching.
    pub fn detach(&mut self) {
        for hook in hooks_of(&self.plan) {
            if let Err(err) = unload(&mut self.ebpf, hook) {
                tracing::warn!(program = hook.program(), %err, "detach");
            }
        }
        if self.kprobe {
            let name = names::PROG_KPROBE_SYSCALL_OVERRIDE;
            if let Err(err) = program::<KProbe>(&mut self.ebpf, name).and_then(|p| {
                p.unload()
                    .map_err(|source| AttachError::Program { name, source })
            }) {
                tracing::warn!(program = name, %err, "detach");
            }
        }
        for &name in &self.tracepoints {
            if let Err(err) = program::<TracePoint>(&mut self.ebpf, name).and_then(|p| {
                p.unload()
                    .map_err(|source| AttachError::Program { name, source })
            }) {
                tracing::warn!(program = name, %err, "detach");
            }
        }
    }

    /// Matched and injected calls of operation `code` (`OP_*`) so far, summed over CPUs.
    pub fn counters(&self, code: u32) -> Counters {
        self.sum_counters(names::MAP_COUNTERS, counter_index(FAULT_SLOT, code))
    }

    /// Matched and injected calls of the target at `index` (its place in
    /// [`Targets::processes`]; 0 for a cgroup target), over every operation.
    pub fn target_counters(&self, index: usize) -> Counters {
        self.sum_counters(names::MAP_TARGET_COUNTERS, index as u32)
    }

    fn sum_counters(&self, map_name: &str, index: u32) -> Counters {
        let Some(map) = self.ebpf.map(map_name) else {
            return Counters::default();
        };
        let Ok(counters) = PerCpuArray::<_, Counters>::try_from(map) else {
            return Counters::default();
        };
        counters
            .get(&index, 0)
            .map(|per_cpu| {
                per_cpu
                    .iter()
                    .fold(Counters::default(), |sum, cpu| Counters {
                        matched: sum.matched + cpu.matched,
                        injected: sum.injected + cpu.injected,
                    })
            })
            .unwrap_or_default()
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

/// Every hook of the plan, once (read and write share one program).
fn hooks_of(plan: &Plan) -> Vec<Hook> {
    let mut hooks: Vec<Hook> = Vec::new();
    for hook in plan.iter().flat_map(|(_, backend)| backend.hooks) {
        if !hooks.contains(hook) {
            hooks.push(*hook);
        }
    }
    hooks
}

fn load(ebpf: &mut Ebpf, hook: Hook, btf: Option<&Btf>) -> Result<(), AttachError> {
    let name = hook.program();
    let result = match hook {
        Hook::SockAddr(_) => program::<CgroupSockAddr>(ebpf, name)?.load(),
        Hook::Sock(_) => program::<CgroupSock>(ebpf, name)?.load(),
        Hook::Lsm((_, lsm_hook)) => {
            let btf = btf.ok_or_else(|| AttachError::Unsupported {
                op: Op::Open,
                explanation:
                    "no kernel BTF at /sys/kernel/btf/vmlinux; to enable: CONFIG_DEBUG_INFO_BTF=y"
                        .into(),
            })?;
            program::<Lsm>(ebpf, name)?.load(lsm_hook, btf)
        }
    };
    result.map_err(|source| AttachError::Program { name, source })
}

/// Attaches `hook`: an LSM program once, globally; a cgroup program to each of `cgroups`.
/// With `pin`, each link is pinned there too (a detached run).
fn attach(
    ebpf: &mut Ebpf,
    hook: Hook,
    cgroups: &[File],
    pin: Option<&Path>,
) -> Result<(), AttachError> {
    let name = hook.program();
    let error = |source| AttachError::Program { name, source };
    // A cgroup program goes on each cgroup, through a link, which always lets other programs
    // run beside ours. (A macro: the two cgroup program types share these methods, not a trait.)
    macro_rules! attach_to_cgroups {
        ($kind:ty) => {{
            let program = program::<$kind>(ebpf, name)?;
            for (n, cgroup) in cgroups.iter().enumerate() {
                let id = program
                    .attach(cgroup, CgroupAttachMode::Single)
                    .map_err(error)?;
                if let Some(dir) = pin {
                    pin_link(program.take_link(id).map_err(error)?, dir, name, n)?;
                }
            }
        }};
    }
    match hook {
        Hook::SockAddr(_) => attach_to_cgroups!(CgroupSockAddr),
        Hook::Sock(_) => attach_to_cgroups!(CgroupSock),
        Hook::Lsm(_) => {
            let program = program::<Lsm>(ebpf, name)?;
            let id = program.attach().map_err(error)?;
            if let Some(dir) = pin {
                pin_link(program.take_link(id).map_err(error)?, dir, name, 0)?;
            }
        }
    }
    Ok(())
}

/// Pins `link` as `dir/NAME-N`: the link then lives until the pin is removed, whatever happens
/// to this process.
pub(crate) fn pin_link<L>(link: L, dir: &Path, name: &str, n: usize) -> Result<(), AttachError>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::fmt::Display,
{
    let failed = |reason: String| AttachError::Pin {
        name: name.to_owned(),
        reason,
    };
    let link = FdLink::try_from(link).map_err(|err| failed(err.to_string()))?;
    link.pin(dir.join(format!("{name}-{n}")))
        .map(drop)
        .map_err(|err| failed(err.to_string()))
}

/// The kernel function of `syscall` that a kprobe may override, after checking that this kernel
/// can: bpf_override_return exists and the function is allowed for error injection.
pub fn override_function(syscall: &str) -> Result<String, AttachError> {
    let refuse = |reason: String| AttachError::SyscallOverride {
        syscall: syscall.to_owned(),
        reason,
    };
    let finding = kernel::kprobe_override();
    if !finding.supported {
        let covering = Op::covering(syscall)
            .map(|op| format!("; --op {op} covers {syscall}() through another mechanism"))
            .unwrap_or_default();
        return Err(refuse(format!("{}{covering}", finding.explain())));
    }
    let prefix = match std::env::consts::ARCH {
        "aarch64" => "__arm64_sys_",
        _ => "__x64_sys_",
    };
    let function = format!("{prefix}{syscall}");
    let list =
        std::fs::read_to_string("/sys/kernel/debug/error_injection/list").unwrap_or_default();
    if !list
        .lines()
        .any(|line| line.split_whitespace().next() == Some(function.as_str()))
    {
        return Err(refuse(format!(
            "{function} is not in /sys/kernel/debug/error_injection/list: unknown syscall, or one the kernel does not allow to fail"
        )));
    }
    Ok(function)
}

/// Checks that `syscalls:EVENT` exists, naming the kernel option when no syscall has one.
fn syscall_tracepoint_exists(event: &str) -> Result<(), AttachError> {
    kernel::ensure_mounted("tracefs", "/sys/kernel/tracing");
    let dir = std::path::Path::new("/sys/kernel/tracing/events/syscalls");
    let missing = |reason: String| AttachError::SyscallTracepoint {
        event: event.to_owned(),
        reason,
    };
    if !dir.join("sys_enter_getpid").exists() {
        return Err(missing(
            "this kernel has no syscall tracepoints; to enable: CONFIG_FTRACE_SYSCALLS=y".into(),
        ));
    }
    if !dir.join(event).exists() {
        return Err(missing(format!(
            "unknown syscall; expected a name from {} without the sys_enter_ prefix, such as fsync, write, openat",
            dir.display()
        )));
    }
    Ok(())
}

/// The offset of `child_pid` in a `sched:sched_process_fork` record, from the event's format.
fn fork_child_pid_offset() -> Result<u32, AttachError> {
    kernel::ensure_mounted("tracefs", "/sys/kernel/tracing");
    let path = "/sys/kernel/tracing/events/sched/sched_process_fork/format";
    let format = std::fs::read_to_string(path)
        .map_err(|err| AttachError::ForkTracepoint(format!("{path}: {err}")))?;
    format
        .lines()
        .find(|line| line.contains(" child_pid;"))
        .and_then(|line| {
            line.split("offset:")
                .nth(1)?
                .split(';')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| AttachError::ForkTracepoint(format!("{path} has no child_pid field")))
}

fn unload(ebpf: &mut Ebpf, hook: Hook) -> Result<(), AttachError> {
    let name = hook.program();
    let result = match hook {
        Hook::SockAddr(_) => program::<CgroupSockAddr>(ebpf, name)?.unload(),
        Hook::Sock(_) => program::<CgroupSock>(ebpf, name)?.unload(),
        Hook::Lsm(_) => program::<Lsm>(ebpf, name)?.unload(),
    };
    result.map_err(|source| AttachError::Program { name, source })
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, AttachError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(AttachError::MissingProgram(name))?;
    program
        .try_into()
        .map_err(|source| AttachError::Program { name, source })
}

/// Makes `pid` a target: its entry, then its bit (the bit says to look for the entry).
fn add_target(
    ebpf: &mut Ebpf,
    pid_bits: &PidBits,
    pid: u32,
    target: Target,
) -> Result<(), AttachError> {
    let mut pids: HashMap<_, u32, Target> = map(ebpf, names::MAP_TARGET_PIDS)?;
    pids.insert(pid, target, 0)
        .map_err(map_error(names::MAP_TARGET_PIDS))?;
    pid_bits.set(pid);
    Ok(())
}

fn map<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, AttachError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let map = ebpf.map_mut(name).ok_or(AttachError::MissingMap(name))?;
    T::try_from(map).map_err(map_error(name))
}

/// Where the fields the `--path` filter follows lie in the running kernel's structs.
fn path_offsets() -> Result<PathOffsets, crate::btf::BtfError> {
    let btf = crate::btf::Btf::kernel()?;
    Ok(PathOffsets {
        file_dentry: btf.offset_of("file", "f_path.dentry")?,
        path_dentry: btf.offset_of("path", "dentry")?,
        bprm_file: btf.offset_of("linux_binprm", "file")?,
        dentry_parent: btf.offset_of("dentry", "d_parent")?,
        dentry_inode: btf.offset_of("dentry", "d_inode")?,
        inode_ino: btf.offset_of("inode", "i_ino")?,
        inode_sb: btf.offset_of("inode", "i_sb")?,
        sb_dev: btf.offset_of("super_block", "s_dev")?,
    })
}

fn map_error(name: &'static str) -> impl Fn(MapError) -> AttachError {
    move |source| AttachError::Map { name, source }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(mechanism: Mechanism) -> Option<Finding> {
        Some(Finding {
            feature: "trampoline",
            supported: false,
            detail: format!("{mechanism} refused"),
            enable: Some("a better kernel".into()),
        })
    }

    #[test]
    fn picks_the_most_complete_supported_backend() {
        let lsm_everywhere = plan(&[Op::Send, Op::Connect], BackendChoice::Auto, |_| None).unwrap();
        assert_eq!(
            lsm_everywhere[0].1.mechanism,
            Mechanism::Lsm,
            "send prefers LSM"
        );
        assert_eq!(
            lsm_everywhere[1].1.mechanism,
            Mechanism::Cgroup,
            "connect is cgroup only"
        );

        let no_lsm = |m| {
            if m == Mechanism::Lsm {
                refused(m)
            } else {
                None
            }
        };
        let plan = plan(&[Op::Send, Op::Socket], BackendChoice::Auto, no_lsm).unwrap();
        assert!(
            plan.iter()
                .all(|(_, backend)| backend.mechanism == Mechanism::Cgroup)
        );
        assert!(
            plan[0].1.covers.contains("UDP"),
            "the narrower coverage is said"
        );
    }

    #[test]
    fn an_op_without_a_usable_backend_names_every_reason() {
        let no_lsm = |m| {
            if m == Mechanism::Lsm {
                refused(m)
            } else {
                None
            }
        };
        let err = plan(&[Op::Open], BackendChoice::Auto, no_lsm)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--op open")
                && err.contains("lsm refused")
                && err.contains("a better kernel"),
            "{err}"
        );
        let err = plan(&[Op::Open], BackendChoice::Only(Mechanism::Cgroup), |_| {
            None
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("it has: lsm"), "{err}");
    }

    #[test]
    fn read_and_write_share_one_program() {
        let plan = plan(&[Op::Read, Op::Write], BackendChoice::Auto, |_| None).unwrap();
        assert_eq!(hooks_of(&plan), vec![Hook::Lsm(names::LSM_FILE_PERMISSION)]);
    }
}

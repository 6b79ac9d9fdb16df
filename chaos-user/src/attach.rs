//! Loading and attaching: from a planned fault to programs live in the kernel. Every link belongs
//! to the [`ErrnoAttachment`]; dropping it (or the process dying) detaches everything.

use std::{fs::File, io, path::PathBuf, time::Duration};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapError, PerCpuArray},
    programs::{CgroupAttachMode, CgroupSockAddr, Lsm, ProgramError},
};
use chaos_common::{
    counters::{Counters, counter_index},
    errno::{self as common, Target},
    names,
};
use thiserror::Error;
use tracing::debug;

use crate::{
    fault::{ErrnoFault, Op},
    kernel::{self, Finding},
    object,
    target::ProcessTarget,
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
    #[error("--op {op} needs {feature}, which this kernel does not offer: {explanation}")]
    Unsupported {
        op: Op,
        feature: &'static str,
        explanation: String,
    },
}

/// The slot of the one fault a `chaos fail` run holds.
const FAULT_SLOT: u32 = 0;

/// An errno fault live in the kernel.
pub struct ErrnoAttachment {
    ebpf: Ebpf,
    ops: Vec<Op>,
}

impl ErrnoAttachment {
    /// Loads every program `fault` needs, fills the maps, then attaches: if any program fails
    /// to load, nothing has been attached.
    pub fn attach(
        target: &ProcessTarget,
        fault: &ErrnoFault,
        lifetime: Duration,
    ) -> Result<Self, AttachError> {
        let btf = Btf::from_sys_fs().ok();
        let mut ebpf = EbpfLoader::new()
            .btf(btf.as_ref())
            .load(object::ERRNO)
            .map_err(AttachError::Object)?;

        let deadline_ns = monotonic_now_ns().saturating_add(lifetime.as_nanos() as u64);
        let kernel_fault = common::ErrnoFault {
            ops: fault.op_mask(),
            deadline_ns,
            errno: fault.errno.get(),
            dry_run: u32::from(fault.dry_run),
        };
        let mut faults: Array<_, common::ErrnoFault> = map(&mut ebpf, names::MAP_ERRNO_FAULTS)?;
        faults
            .set(FAULT_SLOT, kernel_fault, 0)
            .map_err(map_error(names::MAP_ERRNO_FAULTS))?;
        let mut targets: HashMap<_, u32, Target> = map(&mut ebpf, names::MAP_TARGET_PIDS)?;
        targets
            .insert(target.pid, Target { fault: FAULT_SLOT }, 0)
            .map_err(map_error(names::MAP_TARGET_PIDS))?;

        for &op in &fault.ops {
            load(&mut ebpf, op, btf.as_ref())?;
        }
        for &op in &fault.ops {
            attach(&mut ebpf, op, target)?;
            debug!(pid = target.pid, %op, errno = %fault.errno, "attached");
        }
        Ok(ErrnoAttachment {
            ebpf,
            ops: fault.ops.clone(),
        })
    }

    /// Detaches and unloads every program but keeps the maps, so the final counters read after
    /// this are exact: no call can be failed between the reading and the detaching.
    pub fn detach(&mut self) {
        for &op in &self.ops {
            if let Err(err) = unload(&mut self.ebpf, op) {
                tracing::warn!(%op, %err, "detach");
            }
        }
    }

    /// Matched and injected calls of `op` so far, summed over CPUs.
    pub fn counters(&self, op: Op) -> Counters {
        let Some(map) = self.ebpf.map(names::MAP_COUNTERS) else {
            return Counters::default();
        };
        let Ok(counters) = PerCpuArray::<_, Counters>::try_from(map) else {
            return Counters::default();
        };
        counters
            .get(&counter_index(FAULT_SLOT, op.code()), 0)
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

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

fn load(ebpf: &mut Ebpf, op: Op, btf: Option<&Btf>) -> Result<(), AttachError> {
    match op {
        Op::Connect => {
            for name in [names::PROG_CGROUP_CONNECT4, names::PROG_CGROUP_CONNECT6] {
                let program: &mut CgroupSockAddr = program(ebpf, name)?;
                program
                    .load()
                    .map_err(|source| explain_load_error(op, name, source))?;
            }
        }
        Op::Open => {
            let name = names::PROG_LSM_FILE_OPEN;
            if let Some(finding) = kernel::lsm_unsupported() {
                return Err(unsupported(op, &finding));
            }
            let btf = btf.ok_or_else(|| AttachError::Unsupported {
                op,
                feature: kernel::feature::BTF,
                explanation:
                    "no kernel BTF at /sys/kernel/btf/vmlinux; to enable: CONFIG_DEBUG_INFO_BTF=y"
                        .into(),
            })?;
            let program: &mut Lsm = program(ebpf, name)?;
            program
                .load(names::LSM_HOOK_FILE_OPEN, btf)
                .map_err(|source| AttachError::Program { name, source })?;
        }
    }
    Ok(())
}

fn attach(ebpf: &mut Ebpf, op: Op, target: &ProcessTarget) -> Result<(), AttachError> {
    match op {
        Op::Connect => {
            let cgroup = File::open(&target.cgroup).map_err(|source| AttachError::Cgroup {
                path: target.cgroup.clone(),
                source,
            })?;
            for name in [names::PROG_CGROUP_CONNECT4, names::PROG_CGROUP_CONNECT6] {
                let program: &mut CgroupSockAddr = program(ebpf, name)?;
                // A link-based attachment always lets other programs run beside ours.
                program
                    .attach(&cgroup, CgroupAttachMode::Single)
                    .map_err(|source| AttachError::Program { name, source })?;
            }
        }
        Op::Open => {
            let name = names::PROG_LSM_FILE_OPEN;
            let program: &mut Lsm = program(ebpf, name)?;
            program
                .attach()
                .map_err(|source| AttachError::Program { name, source })?;
        }
    }
    Ok(())
}

fn unload(ebpf: &mut Ebpf, op: Op) -> Result<(), AttachError> {
    match op {
        Op::Connect => {
            for name in [names::PROG_CGROUP_CONNECT4, names::PROG_CGROUP_CONNECT6] {
                let program: &mut CgroupSockAddr = program(ebpf, name)?;
                program
                    .unload()
                    .map_err(|source| AttachError::Program { name, source })?;
            }
        }
        Op::Open => {
            let name = names::PROG_LSM_FILE_OPEN;
            let program: &mut Lsm = program(ebpf, name)?;
            program
                .unload()
                .map_err(|source| AttachError::Program { name, source })?;
        }
    }
    Ok(())
}

fn unsupported(op: Op, finding: &Finding) -> AttachError {
    AttachError::Unsupported {
        op,
        feature: finding.feature,
        explanation: finding.explain(),
    }
}

/// A cgroup program that does not load: explain it with the probe's finding when it has one.
fn explain_load_error(op: Op, name: &'static str, source: ProgramError) -> AttachError {
    match kernel::cgroup_sock_addr() {
        finding if !finding.supported => unsupported(op, &finding),
        _ => AttachError::Program { name, source },
    }
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

fn map<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, AttachError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let map = ebpf.map_mut(name).ok_or(AttachError::MissingMap(name))?;
    T::try_from(map).map_err(map_error(name))
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

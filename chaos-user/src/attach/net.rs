//! Attaching a network fault: the TC programs of the `net` object on each target interface,
//! through tcx links that belong to the [`NetAttachment`] (the kernel drops them with chaos's
//! file descriptors, so a killed loader leaves nothing behind).

use std::{fs::File, path::Path, time::Duration};

use aya::programs::links::LinkOrder;
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, PerCpuArray},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, Program, SchedClassifier, TcAttachType,
        tc::TcAttachOptions,
    },
    util::KernelVersion,
};
use chaos_common::{
    names,
    net::{self, NetCounters},
};

use super::{
    AttachError, map, map_error, monotonic_now_ns, pin_link, program,
    qdisc::{self, FqGuard},
};
use crate::{object, target::net::NetTarget};

/// A live network fault; dropping it detaches every program (and puts back the qdiscs a delay
/// replaced).
pub struct NetAttachment {
    ebpf: Ebpf,
    programs: Vec<&'static str>,
    fq: Vec<FqGuard>,
}

impl NetAttachment {
    /// Loads the net object, writes `fault` with its deadline `lifetime` from now, and attaches
    /// the program of each direction the fault asks for to every target interface; a delay
    /// first makes fq the root qdisc of each (with `delay_table`, netem's, for its jitter).
    /// With `pin`, every link and the counters are pinned there too (a detached run).
    pub fn attach(
        target: &NetTarget,
        mut fault: net::NetFault,
        delay_table: &[i16],
        lifetime: Duration,
        pin: Option<&Path>,
    ) -> Result<Self, AttachError> {
        if target.cgroup.is_none()
            && !KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
        {
            return Err(AttachError::NetUnsupported(
                "network faults attach through tcx links, which need kernel >= 6.6 (the clsact fallback for older kernels is not implemented yet)".into(),
            ));
        }
        let mut ebpf = EbpfLoader::new()
            .load(object::NET)
            .map_err(AttachError::Object)?;
        let mut table: Array<_, i16> = map(&mut ebpf, names::MAP_NET_DELAY_DIST)?;
        for (index, &entry) in delay_table.iter().enumerate() {
            table
                .set(index as u32, entry, 0)
                .map_err(map_error(names::MAP_NET_DELAY_DIST))?;
        }
        fault.dist_size = delay_table.len() as u32;
        let mut fq = Vec::new();
        if matches!(fault.action, net::NET_ACTION_DELAY | net::NET_ACTION_LIMIT) {
            for iface in &target.ifaces {
                fq.push(qdisc::install_fq(target.netns.as_ref(), iface)?);
            }
        }
        fault.deadline_ns = monotonic_now_ns().saturating_add(lifetime.as_nanos() as u64);
        let mut faults: Array<_, net::NetFault> = map(&mut ebpf, names::MAP_NET_FAULTS)?;
        faults
            .set(0, fault, 0)
            .map_err(map_error(names::MAP_NET_FAULTS))?;

        let mut programs = Vec::new();
        if let Some(cgroup) = &target.cgroup {
            let name = names::PROG_CGROUP_SKB_INGRESS;
            let error = |source| AttachError::Program { name, source };
            let file = File::open(&cgroup.path).map_err(|source| AttachError::Cgroup {
                path: cgroup.path.clone(),
                source,
            })?;
            let program: &mut CgroupSkb = program(&mut ebpf, name)?;
            program.load().map_err(error)?;
            let id = program
                .attach(
                    &file,
                    CgroupSkbAttachType::Ingress,
                    CgroupAttachMode::Single,
                )
                .map_err(error)?;
            if let Some(dir) = pin {
                pin_link(program.take_link(id).map_err(error)?, dir, name, 0)?;
            }
            programs.push(name);
        }
        let tc_directions = if target.cgroup.is_some() {
            0
        } else {
            fault.directions
        };
        for (bit, name, attach_type) in [
            (
                net::DIRECTION_INGRESS,
                names::PROG_TC_INGRESS,
                TcAttachType::Ingress,
            ),
            (
                net::DIRECTION_EGRESS,
                names::PROG_TC_EGRESS,
                TcAttachType::Egress,
            ),
        ] {
            if tc_directions & bit == 0 {
                continue;
            }
            let classifier: &mut SchedClassifier = program(&mut ebpf, name)?;
            classifier
                .load()
                .map_err(|source| AttachError::Program { name, source })?;
            let mut attach_all = || -> Result<(), AttachError> {
                let error = |source| AttachError::Program { name, source };
                for (n, iface) in target.ifaces.iter().enumerate() {
                    let options = TcAttachOptions::TcxOrder(LinkOrder::default());
                    let id = classifier
                        .attach_with_options(iface, attach_type, options)
                        .map_err(error)?;
                    if let Some(dir) = pin {
                        pin_link(classifier.take_link(id).map_err(error)?, dir, name, n)?;
                    }
                }
                Ok(())
            };
            match &target.netns {
                Some(netns) => netns.enter(attach_all).map_err(AttachError::Netns)??,
                None => attach_all()?,
            }
            programs.push(name);
        }
        if let Some(dir) = pin {
            let name = names::MAP_NET_COUNTERS;
            let map = ebpf.map(name).ok_or(AttachError::MissingMap(name))?;
            map.pin(dir.join(name)).map_err(|err| AttachError::Pin {
                name: name.to_owned(),
                reason: err.to_string(),
            })?;
        }
        Ok(NetAttachment { ebpf, programs, fq })
    }

    /// Detaches and unloads the programs but keeps the maps for the final counters.
    pub fn detach(&mut self) {
        for &name in &self.programs {
            let result = match self.ebpf.program_mut(name) {
                Some(Program::SchedClassifier(p)) => p.unload(),
                Some(Program::CgroupSkb(p)) => p.unload(),
                _ => continue,
            };
            if let Err(err) = result {
                tracing::warn!(program = name, %err, "detach");
            }
        }
        for guard in self.fq.drain(..) {
            guard.restore();
        }
    }

    /// Packets matched and acted on in `direction` (a `DIRECTION_*` bit), summed over CPUs.
    pub fn counters(&self, direction: u32) -> NetCounters {
        let Some(map) = self.ebpf.map(names::MAP_NET_COUNTERS) else {
            return NetCounters::default();
        };
        let Ok(counters) = PerCpuArray::<_, NetCounters>::try_from(map) else {
            return NetCounters::default();
        };
        counters
            .get(&(direction - 1), 0)
            .map(|per_cpu| {
                per_cpu
                    .iter()
                    .fold(NetCounters::default(), |sum, cpu| NetCounters {
                        matched: sum.matched + cpu.matched,
                        acted: sum.acted + cpu.acted,
                    })
            })
            .unwrap_or_default()
    }
}

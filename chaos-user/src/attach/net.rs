//! Attaching a network fault: the TC programs of the `net` object on each target interface,
//! through tcx links that belong to the [`NetAttachment`] (the kernel drops them with chaos's
//! file descriptors, so a killed loader leaves nothing behind) or, on kernels before 6.6, as
//! cls_bpf filters on a clsact qdisc, which [`qdisc`] records and removes.

use std::{fs::File, path::Path, time::Duration};

use aya::programs::links::LinkOrder;
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, PerCpuArray},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, Program, SchedClassifier, TcAttachType,
        tc::{NlOptions, TcAttachOptions},
    },
    util::KernelVersion,
};
use chaos_common::{
    names,
    net::{self, NetCounters},
};

use super::{
    AttachError, map, map_error, monotonic_now_ns, pin_link, program,
    qdisc::{self, Changed},
};
use crate::{fault::net::NetTables, object, target::net::NetTarget};

/// Set to `clsact` to attach TC programs as cls_bpf filters even where tcx links exist: how the
/// tests exercise the fallback on a kernel that has tcx.
pub const TC_ATTACH_ENV: &str = "CHAOS_TC_ATTACH";

/// Whether TC programs attach through tcx links (kernel >= 6.6) rather than clsact filters.
pub fn tcx_links() -> bool {
    std::env::var_os(TC_ATTACH_ENV).is_none_or(|mode| mode != "clsact")
        && KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// A live network fault; dropping it detaches every program (and undoes what it changed on the
/// interfaces: an fq or clsact qdisc it added).
pub struct NetAttachment {
    ebpf: Ebpf,
    programs: Vec<&'static str>,
    changes: Vec<Changed>,
    /// How the TC programs hang on the interfaces: tcx links, or cls_bpf filters of a clsact.
    tcx: bool,
}

impl NetAttachment {
    /// Loads the net object, writes `fault` with its deadline `lifetime` from now, and attaches
    /// the program of each direction the fault asks for to every target interface; a delay
    /// first makes fq the root qdisc of each; `tables` go to the maps beside the fault (a
    /// delay's distribution, a DNS fault's name).
    /// With `pin`, every link and the counters are pinned there too (a detached run).
    pub fn attach(
        target: &NetTarget,
        mut fault: net::NetFault,
        tables: &NetTables,
        lifetime: Duration,
        pin: Option<&Path>,
    ) -> Result<Self, AttachError> {
        let tcx = tcx_links();
        let mut ebpf = EbpfLoader::new()
            .load(object::NET)
            .map_err(AttachError::Object)?;
        let mut table: Array<_, i16> = map(&mut ebpf, names::MAP_NET_DELAY_DIST)?;
        for (index, &entry) in tables.delay.iter().enumerate() {
            table
                .set(index as u32, entry, 0)
                .map_err(map_error(names::MAP_NET_DELAY_DIST))?;
        }
        fault.dist_size = tables.delay.len() as u32;
        let mut dns_name: Array<_, net::DnsName> = map(&mut ebpf, names::MAP_NET_DNS_NAME)?;
        dns_name
            .set(0, tables.dns_name, 0)
            .map_err(map_error(names::MAP_NET_DNS_NAME))?;
        let mut changes = Vec::new();
        if matches!(fault.action, net::NET_ACTION_DELAY | net::NET_ACTION_LIMIT) {
            for iface in &target.ifaces {
                changes.push(qdisc::install_fq(target.netns.as_ref(), iface)?);
            }
        }
        // Without tcx: a clsact qdisc on each interface (one per interface, both directions).
        let mut clsact = Vec::new();
        if !tcx && target.cgroup.is_none() {
            for iface in &target.ifaces {
                clsact.push(qdisc::ensure_clsact(target.netns.as_ref(), iface)?);
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
        // The clsact filters' preference: chaos's own per process, so a killed run's filters can
        // be told from others on a clsact that was there before.
        let pref = 0xc000 | (std::process::id() & 0x3fff) as u16;
        for (bit, name, attach_type, hook) in [
            (
                net::DIRECTION_INGRESS,
                names::PROG_TC_INGRESS,
                TcAttachType::Ingress,
                "ingress",
            ),
            (
                net::DIRECTION_EGRESS,
                names::PROG_TC_EGRESS,
                TcAttachType::Egress,
                "egress",
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
                    let options = if tcx {
                        TcAttachOptions::TcxOrder(LinkOrder::default())
                    } else {
                        TcAttachOptions::Netlink(NlOptions {
                            priority: pref,
                            ..NlOptions::default()
                        })
                    };
                    let id = classifier
                        .attach_with_options(iface, attach_type, options)
                        .map_err(error)?;
                    if let Some(change) = clsact.get_mut(n) {
                        change.record_filter(hook, pref)?;
                    }
                    if let Some(dir) = pin {
                        let link = classifier.take_link(id).map_err(error)?;
                        if tcx {
                            pin_link(link, dir, name, n)?;
                        } else {
                            // A clsact filter stays without a holder; the run's record of it
                            // (handed over below) removes it once the run is gone.
                            std::mem::forget(link);
                        }
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
        changes.extend(clsact);
        if let Some(dir) = pin {
            // A detached run: its qdiscs and filters stay until the run is stopped or expires.
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for change in changes.drain(..) {
                change.hand_over(&id)?;
            }
        }
        Ok(NetAttachment {
            ebpf,
            programs,
            changes,
            tcx,
        })
    }

    /// The mechanism for the report: cgroup_skb, or the TC hook (tcx or clsact) and, when the
    /// fault times departures, the fq qdisc.
    pub fn mechanism(&self, cgroup: bool, fq: bool) -> &'static str {
        match (cgroup, self.tcx, fq) {
            (true, _, _) => "cgroup_skb",
            (false, true, true) => "tcx+fq",
            (false, true, false) => "tcx",
            (false, false, true) => "clsact+fq",
            (false, false, false) => "clsact",
        }
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
        for change in self.changes.drain(..) {
            change.restore();
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

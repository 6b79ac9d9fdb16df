//! A network fault live in the kernel: the TC programs of the `net` object on each target
//! interface (tcx links that die with chaos, or cls_bpf filters of a clsact qdisc, which the
//! qdisc records remove), its XDP program (links that die with chaos), or the cgroup_skb program
//! on a cgroup, and fq where packets are timed.

use std::{fs::File, path::Path, time::Duration};

use chaos_common::{
    counters::Counters,
    hook::{self, Hook},
    names,
    net::{self, DIRECTION_EGRESS, DIRECTION_INGRESS},
};

use crate::{
    attach::{AttachError, Loaded, Sites, qdisc, spare::Spec},
    clock::Deadline,
    fault::net::{NetHook, NetTables, XdpMode},
    object,
    target::net::NetTarget,
};

/// A live network fault; dropping it detaches every program (and undoes what it changed on the
/// interfaces: an fq or clsact qdisc it added).
pub struct NetAttachment {
    loaded: Loaded,
    /// The fault as armed.
    fault: net::NetFault,
    cgroup: bool,
    xdp: bool,
    fq: bool,
}

/// The net object loaded for a run: its programs verified, its tables written and fq in place
/// where packets are timed; nothing attached yet ([`NetLoaded::start`] attaches).
pub struct NetLoaded<'t> {
    loaded: Loaded,
    target: &'t NetTarget,
    fault: net::NetFault,
    hooks: Vec<Hook>,
    /// The XDP mode, when the fault acts at the XDP hook.
    xdp: Option<XdpMode>,
    fq: bool,
}

impl<'t> NetLoaded<'t> {
    /// Loads the program of each direction `fault` acts in at `at` (or the cgroup_skb program
    /// for a cgroup target) and writes `tables` (a delay's distribution, a DNS fault's name); a
    /// delay or a limit makes fq the root qdisc of each interface (undone when this is dropped).
    pub fn load(
        target: &'t NetTarget,
        mut fault: net::NetFault,
        tables: &NetTables,
        at: NetHook,
    ) -> Result<Self, AttachError> {
        let xdp = match at {
            NetHook::Xdp(mode) => Some(mode),
            NetHook::Tc => None,
        };
        let hooks: Vec<Hook> = match (&target.cgroup, xdp) {
            (Some(_), _) => vec![hook::CGROUP_SKB_INGRESS],
            (None, Some(_)) => vec![hook::XDP_INGRESS],
            (None, None) => [hook::TC_INGRESS, hook::TC_EGRESS]
                .into_iter()
                .filter(|hook| matches!(hook, Hook::Tc { direction, .. } if fault.directions & direction != 0))
                .collect(),
        };
        // Verified ahead by `chaos idle`'s spares when it runs, else here.
        let mut loaded = Spec::plain(object::NET, &hooks).take_or_load()?;
        for &hook in &hooks {
            loaded.load(hook)?;
        }
        for (index, &entry) in tables.delay.iter().enumerate() {
            loaded.set(names::MAP_NET_DELAY_DIST, index as u32, entry)?;
        }
        fault.dist_size = tables.delay.len() as u32;
        loaded.set(names::MAP_NET_DNS_NAME, 0, tables.dns_name)?;
        let fq = matches!(fault.action, net::NET_ACTION_DELAY | net::NET_ACTION_LIMIT);
        if fq {
            for iface in &target.ifaces {
                loaded.keep_change(qdisc::install_fq(target.netns.as_ref(), iface)?);
            }
        }
        Ok(NetLoaded {
            loaded,
            target,
            fault,
            hooks,
            xdp,
            fq,
        })
    }

    /// Attaches every program, then arms the fault for `lifetime` from then (the attachment's
    /// [`NetAttachment::deadline`]). With `pin`, every link and the counters are pinned there,
    /// and what changed on the interfaces belongs to the run.
    pub fn start(
        self,
        lifetime: Duration,
        pin: Option<&Path>,
    ) -> Result<NetAttachment, AttachError> {
        let NetLoaded {
            mut loaded,
            target,
            fault,
            hooks,
            xdp,
            fq,
        } = self;
        // Armed once every hook is attached, on all at once (both directions, every interface).
        loaded.set(names::MAP_NET_FAULTS, 0, disarmed(fault))?;
        let cgroups = match &target.cgroup {
            Some(cgroup) => {
                vec![
                    File::open(&cgroup.path).map_err(|source| AttachError::Cgroup {
                        path: cgroup.path.clone(),
                        source,
                    })?,
                ]
            }
            None => Vec::new(),
        };
        let sites = Sites {
            cgroups: &cgroups,
            ifaces: &target.ifaces,
            netns: target.netns.as_ref(),
            xdp,
            ..Sites::default()
        };
        for hook in hooks {
            loaded.attach(hook, &sites, pin)?;
        }
        if let Some(dir) = pin {
            loaded.pin_map(names::MAP_NET_COUNTERS, dir)?;
            // A detached run: its qdiscs and filters stay until the run is stopped or expires.
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            loaded.hand_over(&id)?;
        }
        // The live window is `lifetime` whatever attaching took.
        let fault = net::NetFault {
            deadline_ns: Deadline::after(lifetime).ns,
            ..fault
        };
        loaded.set(names::MAP_NET_FAULTS, 0, fault)?;
        loaded.unpin_spare();
        Ok(NetAttachment {
            loaded,
            fault,
            cgroup: target.cgroup.is_some(),
            xdp: xdp.is_some(),
            fq,
        })
    }
}

impl NetAttachment {
    /// The mechanism for the report: cgroup_skb, XDP and its mode, or the TC hook (tcx or
    /// clsact) and, when the fault times departures, the fq qdisc.
    pub fn mechanism(&self) -> &'static str {
        if self.xdp {
            return self.loaded.xdp_mode();
        }
        match (self.cgroup, self.loaded.tcx(), self.fq) {
            (true, _, _) => "cgroup_skb",
            (false, true, true) => "tcx+fq",
            (false, true, false) => "tcx",
            (false, false, true) => "clsact+fq",
            (false, false, false) => "clsact",
        }
    }

    /// Disarms the fault on every hook at once, then detaches and unloads the programs but
    /// keeps the maps for the final counters.
    pub fn detach(&mut self) {
        let _ = self
            .loaded
            .set(names::MAP_NET_FAULTS, 0, disarmed(self.fault));
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

    /// Packets matched and acted on in `direction` (a `DIRECTION_*` bit), summed over CPUs.
    pub fn counters(&self, direction: u32) -> Counters {
        let index = match direction {
            DIRECTION_INGRESS => 0,
            DIRECTION_EGRESS => 1,
            _ => return Counters::default(),
        };
        self.loaded.counters(names::MAP_NET_COUNTERS, index)
    }
}

/// `fault` with its deadline passed: the programs let every packet through untouched.
fn disarmed(fault: net::NetFault) -> net::NetFault {
    net::NetFault {
        deadline_ns: 0,
        ..fault
    }
}

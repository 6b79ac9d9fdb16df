//! The one path from a [`Hook`] to a program live in the kernel and back: load (the verifier),
//! attach to every site of its kind (with a pin for a detached run), detach. Every kind of hook
//! goes through [`Loaded`]: the faults of a run and the probe's tries alike.

use std::{
    fs::File,
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapError, PerCpuArray},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock,
        CgroupSockAddr, FEntry, FExit, KProbe, Lsm, LsmCgroup, Program, ProgramError,
        SchedClassifier, TcAttachType, TracePoint, Xdp,
        links::{FdLink, LinkOrder},
        tc::{NlOptions, TcAttachOptions},
        xdp::XdpMode as AyaXdpMode,
    },
    util::KernelVersion,
};
use aya_obj::generated::bpf_attach_type;
use chaos_common::{counters::Counters, hook::Hook, net::DIRECTION_INGRESS};
use thiserror::Error;

pub mod fmod_ret;
pub mod pid_bits;
pub mod qdisc;
pub mod spare;

use crate::{netlink, sys::Netns};

#[derive(Debug, Error)]
pub enum AttachError {
    #[error("cannot load the eBPF object")]
    Object(#[source] aya::EbpfError),
    #[error(
        "program {program} uses map {map}, which was made one entry long for the programs this run named (a bug in chaos)"
    )]
    Shrunk {
        program: &'static str,
        map: &'static str,
    },
    #[error(
        "program {0} is not in the eBPF object, or not among the programs this run loads (a bug)"
    )]
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
    #[error(
        "program {0} is an LSM program, which needs the kernel's BTF at /sys/kernel/btf/vmlinux; to enable: CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf(&'static str),
    /// A program chaos loads itself (see [`fmod_ret`]): as `how` (fmod_ret, fexit).
    #[error("program {program} as {how} on {function}: {reason}")]
    PastAya {
        program: &'static str,
        how: &'static str,
        function: String,
        reason: String,
    },
    #[error("program {0} attaches to {1}, which this run does not name")]
    NoSite(&'static str, &'static str),
    #[error("cannot open cgroup {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot pin {name} for a detached run: {reason}")]
    Pin { name: String, reason: String },
    #[error("cannot enter network namespace {path}")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An interface chaos would change is set up in a way it leaves alone, or the kernel
    /// refused the change (its words).
    #[error("{0}")]
    Iface(String),
    #[error(
        "{iface} already carries XDP program {id} ({name}, {mode}): an interface runs one XDP program per mode, and chaos does not replace someone else's; detach it (ip link set dev {iface} xdp off) or use --hook tc"
    )]
    XdpBusy {
        iface: String,
        id: u32,
        name: String,
        mode: &'static str,
    },
    #[error(
        "the driver of {iface} has no native XDP (the kernel answered EOPNOTSUPP): use --hook xdp-generic, or --hook xdp to fall back by itself"
    )]
    XdpNoNative { iface: String },
    #[error("cannot read the XDP state of {iface} (netlink RTM_GETLINK)")]
    XdpQuery {
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot record the change to {iface} in {path}")]
    Record {
        iface: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl AttachError {
    /// Whether the kernel or the machine cannot do what was asked (the user can act on it), as
    /// opposed to something failing on the way.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            AttachError::NoBtf(_)
                | AttachError::Iface(_)
                | AttachError::XdpBusy { .. }
                | AttachError::XdpNoNative { .. }
        )
    }
}

/// Set to `clsact` to attach TC programs as cls_bpf filters even where tcx links exist: how the
/// tests exercise the fallback on a kernel that has tcx.
pub const TC_ATTACH_ENV: &str = "CHAOS_TC_ATTACH";

/// Whether TC programs attach through tcx links (kernel >= 6.6) rather than clsact filters.
pub fn tcx_links() -> bool {
    std::env::var_os(TC_ATTACH_ENV).is_none_or(|mode| mode != "clsact")
        && KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// How an XDP program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native where the driver has it, generic otherwise.
    Auto,
    Native,
    Generic,
}

/// Where the hooks that attach per place attach, for one run.
#[derive(Default)]
pub struct Sites<'a> {
    /// cgroup programs: every one of these cgroup v2 directories.
    pub cgroups: &'a [File],
    /// Syscall entry tracepoints and overriding kprobes: this syscall (`fsync`).
    pub syscall: Option<&'a str>,
    /// Syscall exit tracepoints: each of these syscalls.
    pub exits: &'a [String],
    /// Kprobes overriding a kernel function: this one (`should_failslab`).
    pub function: Option<&'a str>,
    /// TC and XDP programs: these interfaces, in `netns` (chaos's own when `None`).
    pub ifaces: &'a [String],
    pub netns: Option<&'a Netns>,
    /// XDP programs: the mode (`None`: generic).
    pub xdp: Option<XdpMode>,
}

/// An eBPF object loaded for one run, and the hooks of it loaded so far. Dropping it (or the
/// process dying) releases every link; [`Loaded::detach`] unloads the programs first and keeps
/// the maps, so counters read after it are final.
pub struct Loaded {
    ebpf: Ebpf,
    /// The object's bytes, for loading its LSM programs as fmod_ret ones.
    object: &'static [u8],
    loaded: Vec<Hook>,
    /// Hash maps made one entry long, which no program this may load uses.
    shrunk: Vec<&'static str>,
    /// The object relocated against `ebpf`'s maps, once a program is loaded as fmod_ret.
    relocated: Option<fmod_ret::Relocated>,
    /// fmod_ret programs (loaded past aya) and their links.
    fmod_ret: Vec<FmodRetProgram>,
    /// What attaching changed on interfaces (a clsact qdisc and its filters, an fq qdisc),
    /// undone on detach.
    changes: Vec<qdisc::Changed>,
    /// TC programs hang from tcx links, else from a clsact qdisc's filters.
    tcx: bool,
    /// Per interface an XDP program went on: whether in native (driver) mode.
    xdp_native: Vec<bool>,
    /// The pins of the spare these programs came from, removed once they are attached
    /// ([`Loaded::unpin_spare`]): the first failure does not wait for it.
    spare: Option<PathBuf>,
    /// Whether they came from a spare.
    from_spare: bool,
    /// How they were loaded, when a spare of them may be left ([`spare::Spec::take_or_load`]).
    spec: Option<spare::Spec>,
}

impl Loaded {
    /// Loads `object` with `loader`'s globals, for loading `hooks`' programs only (aya keeps
    /// the others out of its relocation, a good part of a short run's start); no program is
    /// loaded yet. Its preallocated hash maps that none of them uses are made one entry long:
    /// the kernel allocates every entry when it makes such a map.
    pub fn new(
        loader: &mut EbpfLoader<'_>,
        object: &'static [u8],
        hooks: &[Hook],
    ) -> Result<Self, AttachError> {
        let shrunk: Vec<&'static str> = crate::object::hash_map_users(object)
            .iter()
            .filter(|(_, users)| !hooks.iter().any(|hook| users.contains(&hook.program())))
            .map(|&(map, _)| map)
            .collect();
        for map in &shrunk {
            loader.map_max_entries(map, 1);
        }
        loader.keep_programs(hooks.iter().map(|hook| hook.program()));
        crate::kernel::cache::give_aya();
        let ebpf = loader.load(object).map_err(AttachError::Object)?;
        crate::kernel::cache::remember_aya();
        Ok(Loaded {
            ebpf,
            object,
            loaded: Vec::new(),
            shrunk,
            relocated: None,
            fmod_ret: Vec::new(),
            changes: Vec::new(),
            tcx: tcx_links(),
            xdp_native: Vec::new(),
            spare: None,
            from_spare: false,
            spec: None,
        })
    }

    /// `hooks`' programs of `object`, loaded already (a spare pinned in `pins`: see [`spare`]).
    fn opened_spare(ebpf: Ebpf, object: &'static [u8], hooks: &[Hook], pins: PathBuf) -> Self {
        Loaded {
            ebpf,
            object,
            loaded: hooks.to_vec(),
            shrunk: Vec::new(),
            relocated: None,
            fmod_ret: Vec::new(),
            changes: Vec::new(),
            tcx: tcx_links(),
            xdp_native: Vec::new(),
            spare: Some(pins),
            from_spare: true,
            spec: None,
        }
    }

    /// Loads `object` without globals (a probe, a network fault), for `hooks`
    /// ([`spare::Spec::plain`]).
    pub fn plain(object: &'static [u8], hooks: &[Hook]) -> Result<Self, AttachError> {
        spare::Spec::plain(object, hooks).load()
    }

    /// Loads `hook`'s program into the kernel (the verifier runs here); once per program.
    pub fn load(&mut self, hook: Hook) -> Result<(), AttachError> {
        if self.loaded.contains(&hook) {
            return Ok(());
        }
        let name = hook.program();
        if let Some(&(map, _)) = crate::object::hash_map_users(self.object)
            .iter()
            .find(|(map, users)| self.shrunk.contains(map) && users.contains(&name))
        {
            return Err(AttachError::Shrunk { program: name, map });
        }
        if let Hook::FmodRet { function, .. } | Hook::FmodRetFunction { function, .. } = hook {
            let program = self.load_fmod_ret(name, function)?;
            self.fmod_ret.push(FmodRetProgram {
                hook,
                program,
                link: None,
            });
            self.loaded.push(hook);
            return Ok(());
        }
        // Verified here on its own function (a syscall's entry function, in every kernel's
        // error-injection list), and loaded again on the fault's as it attaches: fmod_ret, past
        // aya (an fexit program returning non-zero would not load as one).
        if let Hook::FmodRetOverride { function, .. } = hook {
            let function = crate::kernel::arch_function(function);
            let (relocated, btf) = self.relocated(name, "fmod_ret", &function)?;
            fmod_ret::load(relocated, btf, name, &function)?;
            self.loaded.push(hook);
            return Ok(());
        }
        // The kernel's BTF, which LSM and tracing programs need to load: parsed only when one
        // is.
        let btf = || crate::btf::aya_kernel().ok();
        let ebpf = &mut self.ebpf;
        let result = match hook {
            Hook::Lsm { hook: lsm_hook, .. } => {
                let btf = btf().ok_or(AttachError::NoBtf(name))?;
                program::<Lsm>(ebpf, name)?.load(lsm_hook, btf)
            }
            Hook::LsmCgroup { hook: lsm_hook, .. } => {
                let btf = btf().ok_or(AttachError::NoBtf(name))?;
                program::<LsmCgroup>(ebpf, name)?.load(lsm_hook, btf)
            }
            // A syscall fentry or fexit is verified here on its own function; attaching loads
            // it again on each syscall's.
            Hook::Fexit { function, .. } | Hook::SyscallFexit { function, .. } => {
                let btf = btf().ok_or(AttachError::NoBtf(name))?;
                program::<FExit>(ebpf, name)?.load(&crate::kernel::arch_function(function), btf)
            }
            Hook::SyscallFentry { function, .. } | Hook::Fentry { function, .. } => {
                let btf = btf().ok_or(AttachError::NoBtf(name))?;
                program::<FEntry>(ebpf, name)?.load(&crate::kernel::arch_function(function), btf)
            }
            Hook::BtfTracepoint { event, .. } => {
                let btf = btf().ok_or(AttachError::NoBtf(name))?;
                program::<BtfTracePoint>(ebpf, name)?.load(event, btf)
            }
            Hook::CgroupSockAddr { .. } => program::<CgroupSockAddr>(ebpf, name)?.load(),
            Hook::CgroupSock { .. } => program::<CgroupSock>(ebpf, name)?.load(),
            Hook::CgroupSkb { .. } => program::<CgroupSkb>(ebpf, name)?.load(),
            Hook::Tracepoint { .. } | Hook::SyscallEntry { .. } | Hook::SyscallExit { .. } => {
                program::<TracePoint>(ebpf, name)?.load()
            }
            Hook::SyscallOverride { .. }
            | Hook::OpOverride { .. }
            | Hook::FunctionOverride { .. } => program::<KProbe>(ebpf, name)?.load(),
            Hook::Tc { .. } => program::<SchedClassifier>(ebpf, name)?.load(),
            Hook::Xdp { .. } => program::<Xdp>(ebpf, name)?.load(),
            Hook::FmodRet { .. } | Hook::FmodRetFunction { .. } | Hook::FmodRetOverride { .. } => {
                unreachable!("loaded above")
            }
        };
        result.map_err(|source| AttachError::Program { name, source })?;
        // Attaching loads it again per syscall from the relocated object: relocate now, while
        // every map is still the object's (a run may take some out before it attaches).
        if let Hook::SyscallFexit { function, .. } | Hook::SyscallFentry { function, .. } = hook {
            self.relocated(
                name,
                "a syscall's program",
                &crate::kernel::arch_function(function),
            )?;
        }
        self.loaded.push(hook);
        Ok(())
    }

    /// Loads the LSM program `name` as an fmod_ret program on `function`.
    fn load_fmod_ret(
        &mut self,
        name: &'static str,
        function: &'static str,
    ) -> Result<OwnedFd, AttachError> {
        let (relocated, btf) = self.relocated(name, "fmod_ret", function)?;
        fmod_ret::load(relocated, btf, name, function)
    }

    /// The object relocated against this run's maps (made once), and the kernel's BTF, for
    /// loading program `name` as `how` on `function` past aya.
    fn relocated(
        &mut self,
        name: &'static str,
        how: &'static str,
        function: &str,
    ) -> Result<(&fmod_ret::Relocated, &'static aya::Btf), AttachError> {
        let btf = crate::btf::aya_kernel().map_err(|_| AttachError::NoBtf(name))?;
        if self.relocated.is_none() {
            let relocated =
                fmod_ret::Relocated::new(self.object, &self.ebpf, btf).map_err(|reason| {
                    AttachError::PastAya {
                        program: name,
                        how,
                        function: function.to_owned(),
                        reason: format!("cannot relocate the object: {reason}"),
                    }
                })?;
            self.relocated = Some(relocated);
        }
        Ok((self.relocated.as_ref().expect("relocated above"), btf))
    }

    /// Loads and attaches the fentry, fexit or fmod_ret program of `hook` once per kernel
    /// function of `functions`; each link pinned in `pin` if given.
    fn attach_on_functions(
        &mut self,
        hook: Hook,
        functions: &[String],
        pin: Option<&Path>,
    ) -> Result<(), AttachError> {
        let name = hook.program();
        let (attach_type, how) = match hook {
            Hook::SyscallFentry { .. } => (bpf_attach_type::BPF_TRACE_FENTRY, "fentry"),
            Hook::FmodRetOverride { .. } => (bpf_attach_type::BPF_MODIFY_RETURN, "fmod_ret"),
            _ => (bpf_attach_type::BPF_TRACE_FEXIT, "fexit"),
        };
        if functions.is_empty() {
            return Err(AttachError::NoSite(name, "a kernel function"));
        }
        for (n, function) in functions.iter().enumerate() {
            let (relocated, btf) = self.relocated(name, how, function)?;
            let program = fmod_ret::load_tracing(relocated, btf, name, function, attach_type)?;
            let failed = |err: io::Error| AttachError::PastAya {
                program: name,
                how,
                function: function.clone(),
                reason: err.to_string(),
            };
            let link = fmod_ret::attach(&program).map_err(failed)?;
            if let Some(dir) = pin {
                pin_past_aya(&link, dir, name, n)?;
            }
            self.fmod_ret.push(FmodRetProgram {
                hook,
                program,
                link: Some(link),
            });
        }
        Ok(())
    }

    /// Attaches `hook` (loading it first if need be) at each of its sites in `sites`; with
    /// `pin`, each link is pinned there too, so that it outlives this process (a detached run).
    pub fn attach(
        &mut self,
        hook: Hook,
        sites: &Sites<'_>,
        pin: Option<&Path>,
    ) -> Result<(), AttachError> {
        self.load(hook)?;
        let name = hook.program();
        let error = |source| AttachError::Program { name, source };
        let ebpf = &mut self.ebpf;
        // Attaches one link with `$attach` on the program of type `$kind`, pinned as number `$n`.
        macro_rules! link {
            ($kind:ty, $n:expr, |$program:ident| $attach:expr) => {{
                let $program = program::<$kind>(ebpf, name)?;
                let id = $attach.map_err(error)?;
                if let Some(dir) = pin {
                    pin_link($program.take_link(id).map_err(error)?, dir, name, $n)?;
                }
            }};
        }
        let syscall = || sites.syscall.ok_or(AttachError::NoSite(name, "a syscall"));
        let single = CgroupAttachMode::Single;
        match hook {
            Hook::Lsm { .. } => link!(Lsm, 0, |p| p.attach()),
            Hook::Fexit { .. } => link!(FExit, 0, |p| p.attach()),
            Hook::Fentry { .. } => link!(FEntry, 0, |p| p.attach()),
            Hook::BtfTracepoint { .. } => link!(BtfTracePoint, 0, |p| p.attach()),
            Hook::CgroupSockAddr { .. } => {
                for (n, cgroup) in sites.cgroups.iter().enumerate() {
                    link!(CgroupSockAddr, n, |p| p.attach(cgroup, single));
                }
            }
            Hook::CgroupSock { .. } => {
                for (n, cgroup) in sites.cgroups.iter().enumerate() {
                    link!(CgroupSock, n, |p| p.attach(cgroup, single));
                }
            }
            Hook::CgroupSkb { attach, .. } => {
                let kind = if attach == "egress" {
                    CgroupSkbAttachType::Egress
                } else {
                    CgroupSkbAttachType::Ingress
                };
                for (n, cgroup) in sites.cgroups.iter().enumerate() {
                    link!(CgroupSkb, n, |p| p.attach(cgroup, kind, single));
                }
            }
            Hook::LsmCgroup { .. } => {
                for (n, cgroup) in sites.cgroups.iter().enumerate() {
                    link!(LsmCgroup, n, |p| p.attach(cgroup));
                }
            }
            Hook::Tracepoint {
                category, event, ..
            } => link!(TracePoint, 0, |p| p.attach(category, event)),
            Hook::SyscallEntry { .. } => {
                let event = format!("sys_enter_{}", syscall()?);
                link!(TracePoint, 0, |p| p.attach("syscalls", &event));
            }
            Hook::SyscallExit { .. } => {
                if sites.exits.is_empty() {
                    return Err(AttachError::NoSite(name, "a syscall"));
                }
                for (n, syscall) in sites.exits.iter().enumerate() {
                    let event = format!("sys_exit_{syscall}");
                    link!(TracePoint, n, |p| p.attach("syscalls", &event));
                }
            }
            Hook::SyscallOverride { .. } => {
                let function = override_function(syscall()?);
                link!(KProbe, 0, |p| p.attach(&function, 0));
            }
            Hook::OpOverride { syscalls, .. } => {
                let functions = crate::kernel::override_functions(syscalls).map_err(|_| {
                    AttachError::NoSite(name, "a syscall's function in the error-injection list")
                })?;
                for (n, function) in functions.iter().enumerate() {
                    link!(KProbe, n, |p| p.attach(function, 0));
                }
            }
            Hook::FunctionOverride { .. } => {
                let function = sites
                    .function
                    .ok_or(AttachError::NoSite(name, "a kernel function"))?;
                link!(KProbe, 0, |p| p.attach(function, 0));
            }
            Hook::Tc { direction, .. } => self.attach_tc(name, direction, sites, pin)?,
            Hook::FmodRet { function, .. } | Hook::FmodRetFunction { function, .. } => {
                let fmod_ret = self
                    .fmod_ret
                    .iter_mut()
                    .find(|p| p.hook == hook)
                    .expect("loaded above");
                let failed = |err: io::Error| AttachError::PastAya {
                    program: name,
                    how: "fmod_ret",
                    function: function.to_owned(),
                    reason: err.to_string(),
                };
                let link = fmod_ret::attach(&fmod_ret.program).map_err(failed)?;
                if let Some(dir) = pin {
                    pin_past_aya(&link, dir, name, 0)?;
                }
                fmod_ret.link = Some(link);
            }
            Hook::Xdp { .. } => self.attach_xdp(name, sites, pin)?,
            Hook::SyscallFexit { .. } => {
                let exits: Vec<String> = sites
                    .exits
                    .iter()
                    .map(|syscall| crate::kernel::syscall_entry_function(syscall))
                    .collect();
                self.attach_on_functions(hook, &exits, pin)?;
            }
            Hook::SyscallFentry { .. } => {
                let function = crate::kernel::syscall_entry_function(syscall()?);
                self.attach_on_functions(hook, &[function], pin)?;
            }
            Hook::FmodRetOverride { .. } => {
                let function = match sites.function {
                    Some(function) => function.to_owned(),
                    None => override_function(syscall()?),
                };
                self.attach_on_functions(hook, &[function], pin)?;
            }
        }
        tracing::debug!(program = name, "attached");
        Ok(())
    }

    /// A TC program on each interface: through a tcx link, or as a cls_bpf filter of the
    /// interface's clsact qdisc (added, and recorded, when it has none).
    fn attach_tc(
        &mut self,
        name: &'static str,
        direction: u32,
        sites: &Sites<'_>,
        pin: Option<&Path>,
    ) -> Result<(), AttachError> {
        let error = |source| AttachError::Program { name, source };
        let (attach_type, hook) = if direction == DIRECTION_INGRESS {
            (TcAttachType::Ingress, "ingress")
        } else {
            (TcAttachType::Egress, "egress")
        };
        // The clsact filters' preference: chaos's own per process, so a killed run's filters
        // can be told from others on a clsact that was there before.
        let pref = 0xc000 | (std::process::id() & 0x3fff) as u16;
        for (n, iface) in sites.ifaces.iter().enumerate() {
            let clsact = if self.tcx {
                None
            } else {
                Some(self.clsact_of(sites.netns, iface)?)
            };
            let options = if self.tcx {
                TcAttachOptions::TcxOrder(LinkOrder::default())
            } else {
                TcAttachOptions::Netlink(NlOptions {
                    priority: pref,
                    ..NlOptions::default()
                })
            };
            let classifier = program::<SchedClassifier>(&mut self.ebpf, name)?;
            let id = in_netns(sites.netns, || {
                classifier.attach_with_options(iface, attach_type, options)
            })?
            .map_err(error)?;
            if let Some(index) = clsact {
                self.changes[index].record_filter(hook, pref)?;
            }
            if let Some(dir) = pin {
                let classifier = program::<SchedClassifier>(&mut self.ebpf, name)?;
                let link = classifier.take_link(id).map_err(error)?;
                if self.tcx {
                    pin_link(link, dir, name, n)?;
                } else {
                    // A clsact filter stays without a holder; the run's record of it (handed
                    // over with the other changes) removes it once the run is gone.
                    std::mem::forget(link);
                }
            }
        }
        Ok(())
    }

    /// An XDP program on each interface, in the mode `sites.xdp` asks for: native (driver)
    /// mode where the driver has it, falling back to generic with [`XdpMode::Auto`]. An
    /// interface that already carries an XDP program is refused, naming it.
    fn attach_xdp(
        &mut self,
        name: &'static str,
        sites: &Sites<'_>,
        pin: Option<&Path>,
    ) -> Result<(), AttachError> {
        let error = |source| AttachError::Program { name, source };
        let mode = sites.xdp.unwrap_or(XdpMode::Generic);
        for (n, iface) in sites.ifaces.iter().enumerate() {
            let xdp = program::<Xdp>(&mut self.ebpf, name)?;
            let (id, native) = in_netns(sites.netns, || {
                refuse_busy_xdp(iface)?;
                let generic = |program: &mut Xdp| program.attach(iface, AyaXdpMode::Skb);
                match mode {
                    XdpMode::Generic => Ok((generic(xdp).map_err(error)?, false)),
                    XdpMode::Native | XdpMode::Auto => {
                        match xdp.attach(iface, AyaXdpMode::Driver) {
                            Ok(id) => Ok((id, true)),
                            Err(err) if !is_eopnotsupp(&err) => Err(error(err)),
                            Err(_) if mode == XdpMode::Native => Err(AttachError::XdpNoNative {
                                iface: iface.clone(),
                            }),
                            Err(_) => Ok((generic(xdp).map_err(error)?, false)),
                        }
                    }
                }
            })??;
            self.xdp_native.push(native);
            if let Some(dir) = pin {
                pin_link(xdp.take_link(id).map_err(error)?, dir, name, n)?;
            }
        }
        Ok(())
    }

    /// How the XDP programs went on, for the report: `xdp-native`, `xdp-generic`, or both
    /// (`xdp-native+generic`) when the interfaces differ.
    pub fn xdp_mode(&self) -> &'static str {
        match (
            self.xdp_native.iter().any(|&n| n),
            self.xdp_native.iter().any(|&n| !n),
        ) {
            (true, true) => "xdp-native+generic",
            (true, false) => "xdp-native",
            _ => "xdp-generic",
        }
    }

    /// The index in `changes` of the clsact qdisc of `iface`, made sure of first.
    fn clsact_of(&mut self, netns: Option<&Netns>, iface: &str) -> Result<usize, AttachError> {
        if let Some(index) = self
            .changes
            .iter()
            .position(|change| change.is_clsact_of(netns, iface))
        {
            return Ok(index);
        }
        self.changes.push(qdisc::ensure_clsact(netns, iface)?);
        Ok(self.changes.len() - 1)
    }

    /// Keeps a change made to an interface for this run (an fq qdisc): undone on detach.
    pub fn keep_change(&mut self, change: qdisc::Changed) {
        self.changes.push(change);
    }

    /// Whether TC programs hang from tcx links (else clsact filters).
    pub fn tcx(&self) -> bool {
        self.tcx
    }

    /// Hands what this run changed on interfaces over to detached run `id`: it stays after this
    /// process exits and is undone once the run is gone.
    pub fn hand_over(&mut self, id: &str) -> Result<(), AttachError> {
        self.changes
            .drain(..)
            .try_for_each(|change| change.hand_over(id))
    }

    /// Whether the programs were taken verified from `chaos idle`'s spares.
    pub fn from_spare(&self) -> bool {
        self.from_spare
    }

    /// With `chaos idle` running, leaves these programs verified again for the next run (see
    /// [`spare`]); to be called once the run is over, as it costs a load.
    pub fn leave_spare(&self) {
        if let Some(spec) = &self.spec {
            spare::make(spec);
        }
    }

    /// Removes the pins of the spare the programs came from, if they did.
    pub fn unpin_spare(&mut self) {
        if let Some(pins) = self.spare.take() {
            spare::release(&pins);
        }
    }

    /// Detaches and unloads every program and undoes the changes, but keeps the maps: counters
    /// read after this are final, as no call can be acted on between the reading and the
    /// detaching.
    pub fn detach(&mut self) {
        self.unpin_spare();
        // Links first, then the programs.
        for fmod_ret in &mut self.fmod_ret {
            fmod_ret.link = None;
        }
        self.fmod_ret.clear();
        for hook in self.loaded.drain(..).rev() {
            if matches!(
                hook,
                Hook::FmodRet { .. } | Hook::FmodRetFunction { .. } | Hook::FmodRetOverride { .. }
            ) {
                continue;
            }
            let name = hook.program();
            let result = match self.ebpf.program_mut(name) {
                Some(Program::Lsm(p)) => p.unload(),
                Some(Program::LsmCgroup(p)) => p.unload(),
                Some(Program::CgroupSockAddr(p)) => p.unload(),
                Some(Program::CgroupSock(p)) => p.unload(),
                Some(Program::CgroupSkb(p)) => p.unload(),
                Some(Program::TracePoint(p)) => p.unload(),
                Some(Program::KProbe(p)) => p.unload(),
                Some(Program::SchedClassifier(p)) => p.unload(),
                Some(Program::Xdp(p)) => p.unload(),
                Some(Program::FExit(p)) => p.unload(),
                Some(Program::FEntry(p)) => p.unload(),
                Some(Program::BtfTracePoint(p)) => p.unload(),
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

    /// The map `name`, as type `T`.
    pub fn map<'a, T>(&'a mut self, name: &'static str) -> Result<T, AttachError>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(AttachError::MissingMap(name))?;
        T::try_from(map).map_err(|source| AttachError::Map { name, source })
    }

    /// Writes `value` at `index` of the array map `name`.
    pub fn set<T: aya::Pod>(
        &mut self,
        name: &'static str,
        index: u32,
        value: T,
    ) -> Result<(), AttachError> {
        let mut array: Array<_, T> = self.map(name)?;
        array
            .set(index, value, 0)
            .map_err(|source| AttachError::Map { name, source })
    }

    /// Entry `index` of the per-CPU counters `name`, summed over the CPUs; zero if unreadable.
    pub fn counters(&self, name: &'static str, index: u32) -> Counters {
        let Some(Ok(counters)) = self
            .ebpf
            .map(name)
            .map(PerCpuArray::<_, Counters>::try_from)
        else {
            return Counters::default();
        };
        counters
            .get(&index, 0)
            .map(|per_cpu| per_cpu.iter().fold(Counters::default(), Counters::sum))
            .unwrap_or_default()
    }

    /// Pins the map `name` under `dir` (a detached run's counters).
    pub fn pin_map(&self, name: &'static str, dir: &Path) -> Result<(), AttachError> {
        let map = self.ebpf.map(name).ok_or(AttachError::MissingMap(name))?;
        map.pin(dir.join(name)).map_err(|err| AttachError::Pin {
            name: name.to_owned(),
            reason: err.to_string(),
        })
    }

    /// Takes map `name` out of the object, for a part of chaos that outlives the borrow (the
    /// loaded programs keep their own reference).
    pub fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, AttachError> {
        self.ebpf
            .take_map(name)
            .ok_or(AttachError::MissingMap(name))
    }

    /// The object itself, for what only aya offers (mapping a map into memory).
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }
}

/// Pins the link of a program chaos loaded itself as `dir/NAME-N`, as [`pin_link`] pins aya's.
fn pin_past_aya(link: &OwnedFd, dir: &Path, name: &str, n: usize) -> Result<(), AttachError> {
    fmod_ret::pin(link, &dir.join(format!("{name}-{n}"))).map_err(|err| AttachError::Pin {
        name: name.to_owned(),
        reason: err.to_string(),
    })
}

/// A program chaos loaded itself: an LSM program as fmod_ret, or a syscall fexit on one
/// syscall; its link once attached.
struct FmodRetProgram {
    hook: Hook,
    program: OwnedFd,
    link: Option<OwnedFd>,
}

/// Refuses an interface (of this thread's namespace) that already carries an XDP program.
fn refuse_busy_xdp(iface: &str) -> Result<(), AttachError> {
    let query = |source| AttachError::XdpQuery {
        iface: iface.to_owned(),
        source,
    };
    let name =
        std::ffi::CString::new(iface).map_err(|_| query(io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: a NUL-terminated name that lives across the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        // Attaching names the missing interface.
        return Ok(());
    }
    let Some(other) = netlink::xdp_of(index).map_err(query)? else {
        return Ok(());
    };
    let program_name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|info| info.id() == other.id)
        .and_then(|info| info.name_as_str().map(str::to_owned))
        .unwrap_or_else(|| "name unknown".to_owned());
    Err(AttachError::XdpBusy {
        iface: iface.to_owned(),
        id: other.id,
        name: program_name,
        mode: match other.mode {
            1 => "native",
            2 => "generic",
            3 => "offloaded",
            _ => "several modes",
        },
    })
}

/// Whether attaching failed because the driver has no native XDP.
fn is_eopnotsupp(err: &ProgramError) -> bool {
    matches!(err, ProgramError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::EOPNOTSUPP))
}

/// Runs `work` inside `netns` (on this thread), or here when `None`.
fn in_netns<T>(netns: Option<&Netns>, work: impl FnOnce() -> T) -> Result<T, AttachError> {
    match netns {
        Some(netns) => netns.enter(work).map_err(|source| AttachError::Netns {
            path: netns.path.clone(),
            source,
        }),
        None => Ok(work()),
    }
}

/// The entry function of `syscall` that `--syscall` fails: the one the planner checked in the
/// error-injection list.
fn override_function(syscall: &str) -> String {
    crate::kernel::injectable_syscall_function(syscall)
        .unwrap_or_else(|| crate::kernel::syscall_entry_function(syscall))
}

/// Pins `link` as `dir/NAME-N`: the link then lives until the pin is removed, whatever happens
/// to this process.
fn pin_link<L>(link: L, dir: &Path, name: &str, n: usize) -> Result<(), AttachError>
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

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, AttachError>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(AttachError::MissingProgram(name))?;
    program
        .try_into()
        .map_err(|source| AttachError::Program { name, source })
}

/// A run that fails between taking a spare and arming its fault leaves no pin of it.
impl Drop for Loaded {
    fn drop(&mut self) {
        self.unpin_spare();
    }
}

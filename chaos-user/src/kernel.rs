//! What the running kernel can do, found by trying: load a tiny program, read /sys, ask the
//! kernel through a throwaway network namespace. Never from version numbers.

use std::{ffi::CString, fs, io, path::Path, process::Command};

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{
        CgroupSkb, CgroupSockAddr, KProbe, Lsm, LsmCgroup, ProgramError, SchedClassifier,
        TracePoint, Xdp,
        links::LinkOrder,
        tc::{TcAttachOptions, TcAttachType},
        xdp::XdpMode,
    },
};
use chaos_common::names;
use serde::Serialize;

use crate::{capabilities, object, target};

/// One capability of the kernel, supported or not, with why and how to get it.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub feature: &'static str,
    pub supported: bool,
    /// What was tried and what happened.
    pub detail: String,
    /// For an unsupported feature: what would enable it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<String>,
}

impl Finding {
    fn yes(feature: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            feature,
            supported: true,
            detail: detail.into(),
            enable: None,
        }
    }

    fn no(feature: &'static str, detail: impl Into<String>, enable: impl Into<String>) -> Self {
        Finding {
            feature,
            supported: false,
            detail: detail.into(),
            enable: Some(enable.into()),
        }
    }

    /// One line for error messages: the detail, and what would enable the feature.
    pub fn explain(&self) -> String {
        match &self.enable {
            Some(enable) => format!("{}; to enable: {enable}", self.detail),
            None => self.detail.clone(),
        }
    }
}

/// Feature names, as `chaos probe` prints them and tests look them up.
pub mod feature {
    pub const BTF: &str = "btf";
    pub const BPF_LSM: &str = "bpf-lsm";
    pub const TRAMPOLINE: &str = "trampoline";
    pub const LSM_CGROUP: &str = "lsm-cgroup";
    pub const KPROBES: &str = "kprobes";
    pub const KPROBE_OVERRIDE: &str = "kprobe-override";
    pub const CGROUP_SOCK_ADDR: &str = "cgroup-sock-addr";
    pub const TRACEPOINT_SIGNAL: &str = "tracepoint-signal";
    pub const TCX: &str = "tcx";
    pub const XDP: &str = "xdp";
    pub const CGROUP_SKB: &str = "cgroup-skb";
    pub const CGROUP_V2: &str = "cgroup-v2";
    pub const SCH_FQ: &str = "sch-fq";
    /// A bridge device can be made: container networks (podman's default) need one.
    pub const BRIDGE: &str = "bridge";
    pub const BPFFS: &str = "bpffs";
    pub const LOCKDOWN: &str = "lockdown";
    pub const CAPABILITIES: &str = "capabilities";
}

/// Everything `chaos probe` reports, in order.
pub fn probe() -> Vec<Finding> {
    let btf = Btf::from_sys_fs();
    let mut findings = vec![match &btf {
        Ok(_) => Finding::yes(feature::BTF, "/sys/kernel/btf/vmlinux parses"),
        Err(err) => Finding::no(
            feature::BTF,
            format!("/sys/kernel/btf/vmlinux: {err}"),
            "a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        ),
    }];
    findings.push(bpf_lsm_listed());
    findings.push(lsm_loadable(btf.as_ref().ok()));
    findings.push(lsm_cgroup(btf.as_ref().ok()));
    findings.push(kprobes());
    findings.push(kprobe_override());
    findings.push(cgroup_sock_addr());
    findings.push(tracepoint_signal());
    findings.extend(in_scratch_netns(network_findings));
    findings.push(cgroup_skb());
    findings.push(cgroup_v2());
    findings.push(bpffs());
    findings.push(lockdown());
    findings.push(capabilities_finding());
    findings
}

/// Why LSM-based faults cannot run here, or `None` when they can.
pub fn lsm_unsupported() -> Option<Finding> {
    let btf = Btf::from_sys_fs().ok();
    [bpf_lsm_listed(), lsm_loadable(btf.as_ref())]
        .into_iter()
        .find(|finding| !finding.supported)
}

fn bpf_lsm_listed() -> Finding {
    let note = ensure_mounted("securityfs", "/sys/kernel/security");
    match fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) if list.trim().split(',').any(|lsm| lsm == "bpf") => Finding::yes(
            feature::BPF_LSM,
            format!("bpf is in the active LSM list ({}){note}", list.trim()),
        ),
        Ok(list) => Finding::no(
            feature::BPF_LSM,
            format!("bpf is not in the active LSM list ({}){note}", list.trim()),
            format!("boot with lsm={},bpf and CONFIG_BPF_LSM=y", list.trim()),
        ),
        Err(err) => Finding::no(
            feature::BPF_LSM,
            format!("cannot read /sys/kernel/security/lsm: {err}{note}"),
            "CONFIG_SECURITYFS=y and CONFIG_BPF_LSM=y, booted with lsm=...,bpf",
        ),
    }
}

/// Trampoline programs (LSM, fentry, fexit, fmod_ret): load the real `file_open` program.
fn lsm_loadable(btf: Option<&Btf>) -> Finding {
    let Some(btf) = btf else {
        return Finding::no(
            feature::TRAMPOLINE,
            "no kernel BTF to resolve the hook",
            "CONFIG_DEBUG_INFO_BTF=y",
        );
    };
    let result = load_object(object::ERRNO).and_then(|mut ebpf| {
        let program: &mut Lsm = program(&mut ebpf, names::LSM_FILE_OPEN.0)?;
        program
            .load(names::LSM_FILE_OPEN.1, btf)
            .map_err(|err| err.to_string())
    });
    match result {
        Ok(()) => Finding::yes(feature::TRAMPOLINE, "an LSM program (lsm/file_open) loads"),
        Err(err) if is_eperm_without_log(&err) => trampoline_refused(),
        Err(err) => Finding::no(
            feature::TRAMPOLINE,
            format!("loading lsm/file_open failed: {err}"),
            "CONFIG_BPF_LSM=y and CONFIG_BPF_JIT=y",
        ),
    }
}

fn trampoline_refused() -> Finding {
    Finding::no(
        feature::TRAMPOLINE,
        "the kernel refuses trampoline programs (LSM, fentry, fexit, fmod_ret): loading lsm/file_open \
         fails with EPERM and an empty verifier log, as in paravirtualized guests that may not patch \
         kernel text",
        "run on a kernel that lets BPF trampolines load (bare metal, or a VM that allows text patching)",
    )
}

fn lsm_cgroup(btf: Option<&Btf>) -> Finding {
    let Some(btf) = btf else {
        return Finding::no(
            feature::LSM_CGROUP,
            "no kernel BTF",
            "CONFIG_DEBUG_INFO_BTF=y",
        );
    };
    let result = load_object(object::PROBE).and_then(|mut ebpf| {
        let program: &mut LsmCgroup = program(&mut ebpf, names::PROG_PROBE_LSM_CGROUP)?;
        program
            .load(names::LSM_HOOK_SOCKET_BIND, btf)
            .map_err(|err| err.to_string())
    });
    match result {
        Ok(()) => Finding::yes(feature::LSM_CGROUP, "an lsm_cgroup program loads"),
        Err(err) if is_eperm_without_log(&err) => Finding::no(
            feature::LSM_CGROUP,
            "refused with EPERM like every trampoline program on this kernel",
            "a kernel that lets BPF trampolines load",
        ),
        Err(err) => Finding::no(
            feature::LSM_CGROUP,
            format!("loading an lsm_cgroup program failed: {err}"),
            "kernel >= 6.0 with CONFIG_BPF_LSM=y",
        ),
    }
}

fn kprobes() -> Finding {
    if Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        Finding::yes(feature::KPROBES, "the kprobe perf event source exists")
    } else {
        Finding::no(
            feature::KPROBES,
            "no kprobe perf event source (/sys/bus/event_source/devices/kprobe)",
            "CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y",
        )
    }
}

/// `bpf_override_return`: the verifier knows the helper only with CONFIG_BPF_KPROBE_OVERRIDE, and
/// a kprobe may use it only on functions allowed for error injection.
pub fn kprobe_override() -> Finding {
    const ENABLE: &str = "CONFIG_BPF_KPROBE_OVERRIDE=y (needs CONFIG_FUNCTION_ERROR_INJECTION=y and CONFIG_KPROBES=y)";
    let mut ebpf = match load_object(object::PROBE) {
        Ok(ebpf) => ebpf,
        Err(err) => return Finding::no(feature::KPROBE_OVERRIDE, err, ENABLE),
    };
    let program: &mut KProbe = match program(&mut ebpf, names::PROG_PROBE_KPROBE_OVERRIDE) {
        Ok(program) => program,
        Err(err) => return Finding::no(feature::KPROBE_OVERRIDE, err, ENABLE),
    };
    if let Err(err) = program.load() {
        let err = err.to_string();
        let detail = if err.contains("bpf_override_return") || err.contains("unknown func") {
            "the verifier does not know bpf_override_return".to_owned()
        } else {
            format!(
                "a kprobe program calling bpf_override_return does not load: {}",
                first_line(&err)
            )
        };
        return Finding::no(feature::KPROBE_OVERRIDE, detail, ENABLE);
    }
    // Attach to one syscall the kernel allows error injection for, and let go at once.
    let note = ensure_mounted("debugfs", "/sys/kernel/debug");
    let Some(function) = error_injectable_syscall() else {
        return Finding::no(
            feature::KPROBE_OVERRIDE,
            format!(
                "bpf_override_return loads, but no syscall is listed in /sys/kernel/debug/error_injection/list{note}"
            ),
            "CONFIG_FUNCTION_ERROR_INJECTION=y",
        );
    };
    match program.attach(&function, 0) {
        Ok(link) => {
            let _ = program.detach(link);
            Finding::yes(
                feature::KPROBE_OVERRIDE,
                format!("an overriding kprobe attaches to {function}{note}"),
            )
        }
        Err(err) => Finding::no(
            feature::KPROBE_OVERRIDE,
            format!(
                "an overriding kprobe does not attach to {function}: {}",
                first_line(&err.to_string())
            ),
            ENABLE,
        ),
    }
}

fn error_injectable_syscall() -> Option<String> {
    let list = fs::read_to_string("/sys/kernel/debug/error_injection/list").ok()?;
    let functions: Vec<&str> = list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    // A kprobe by name needs a symbol that exists once; some are listed twice.
    let unique = |name: &&str| functions.iter().filter(|other| *other == name).count() == 1;
    [
        "__x64_sys_getppid",
        "__arm64_sys_getppid",
        "__x64_sys_openat",
        "__arm64_sys_openat",
    ]
    .into_iter()
    .find(|name| functions.contains(name) && unique(name))
    .or_else(|| {
        functions
            .iter()
            .copied()
            .filter(unique)
            .find(|name| name.contains("_sys_"))
    })
    .map(str::to_owned)
}

pub fn cgroup_sock_addr() -> Finding {
    let result = load_object(object::ERRNO).and_then(|mut ebpf| {
        let program: &mut CgroupSockAddr = program(&mut ebpf, names::PROG_CGROUP_CONNECT4)?;
        program.load().map_err(|err| err.to_string())
    });
    match result {
        Ok(()) => Finding::yes(
            feature::CGROUP_SOCK_ADDR,
            "a cgroup/connect4 program calling bpf_set_retval loads",
        ),
        Err(err) => Finding::no(
            feature::CGROUP_SOCK_ADDR,
            format!(
                "cgroup/connect4 with bpf_set_retval does not load: {}",
                first_line(&err)
            ),
            "CONFIG_CGROUP_BPF=y and kernel >= 5.18 (bpf_set_retval)",
        ),
    }
}

fn tracepoint_signal() -> Finding {
    const ENABLE: &str = "CONFIG_FTRACE_SYSCALLS=y and kernel >= 5.3 (bpf_send_signal)";
    let note = ensure_mounted("tracefs", "/sys/kernel/tracing");
    let result = load_object(object::PROBE).and_then(|mut ebpf| {
        let program: &mut TracePoint = program(&mut ebpf, names::PROG_PROBE_TRACEPOINT_SIGNAL)?;
        program.load().map_err(|err| err.to_string())?;
        let link = program
            .attach("syscalls", "sys_enter_getppid")
            .map_err(|err| err.to_string())?;
        program.detach(link).map_err(|err| err.to_string())
    });
    match result {
        Ok(()) => Finding::yes(
            feature::TRACEPOINT_SIGNAL,
            format!(
                "a program calling bpf_send_signal attaches to syscalls:sys_enter_getppid{note}"
            ),
        ),
        Err(err) => Finding::no(
            feature::TRACEPOINT_SIGNAL,
            format!("{}{note}", first_line(&err)),
            ENABLE,
        ),
    }
}

fn cgroup_skb() -> Finding {
    let result = load_object(object::PROBE).and_then(|mut ebpf| {
        let program: &mut CgroupSkb = program(&mut ebpf, names::PROG_PROBE_CGROUP_SKB)?;
        program.load().map_err(|err| err.to_string())
    });
    match result {
        Ok(()) => Finding::yes(feature::CGROUP_SKB, "a cgroup_skb program loads"),
        Err(err) => Finding::no(feature::CGROUP_SKB, first_line(&err), "CONFIG_CGROUP_BPF=y"),
    }
}

/// tcx, XDP and sch_fq are tried on the loopback device of a new network namespace that lives
/// only as long as one thread, so nothing on the machine's interfaces is touched.
fn in_scratch_netns(probe: fn() -> Vec<Finding>) -> Vec<Finding> {
    let run = std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread, which exits when the probe is done.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let err = io::Error::last_os_error();
            let detail = format!("cannot create a scratch network namespace: {err}");
            return [feature::TCX, feature::XDP, feature::SCH_FQ, feature::BRIDGE]
                .map(|name| Finding::no(name, detail.clone(), "CAP_SYS_ADMIN and CONFIG_NET_NS=y"))
                .to_vec();
        }
        probe()
    });
    run.join().unwrap_or_default()
}

/// Whether an fq qdisc can be created (tried in a scratch namespace): the finding, for delay
/// faults to refuse before they touch anything.
pub fn sch_fq_finding() -> Finding {
    in_scratch_netns(|| vec![sch_fq()])
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            Finding::no(
                feature::SCH_FQ,
                "the probe did not run",
                "CONFIG_NET_SCH_FQ=y",
            )
        })
}

fn network_findings() -> Vec<Finding> {
    vec![tcx(), xdp(), sch_fq(), bridge()]
}

fn tcx() -> Finding {
    let result = load_object(object::PROBE).and_then(|mut ebpf| {
        let program: &mut SchedClassifier = program(&mut ebpf, names::PROG_PROBE_TC)?;
        program.load().map_err(|err| err.to_string())?;
        let options = TcAttachOptions::TcxOrder(LinkOrder::default());
        let link = program
            .attach_with_options("lo", TcAttachType::Ingress, options)
            .map_err(|err| err.to_string())?;
        program.detach(link).map_err(|err| err.to_string())
    });
    match result {
        Ok(()) => Finding::yes(feature::TCX, "a TC program attaches through a tcx link"),
        Err(err) => Finding::no(
            feature::TCX,
            format!(
                "tcx attach failed ({}); TC faults fall back to clsact",
                first_line(&err)
            ),
            "kernel >= 6.6 for tcx",
        ),
    }
}

fn xdp() -> Finding {
    let result = load_object(object::PROBE).and_then(|mut ebpf| {
        let program: &mut Xdp = program(&mut ebpf, names::PROG_PROBE_XDP)?;
        program.load().map_err(|err| err.to_string())?;
        let link = program
            .attach("lo", XdpMode::Skb)
            .map_err(|err| err.to_string())?;
        program.detach(link).map_err(|err| err.to_string())
    });
    match result {
        Ok(()) => Finding::yes(feature::XDP, "an XDP program attaches in generic mode"),
        Err(err) => Finding::no(
            feature::XDP,
            first_line(&err),
            "CONFIG_BPF_SYSCALL=y and CONFIG_NET=y",
        ),
    }
}

/// In the scratch namespace: `ip link add … type bridge`, gone with the namespace.
fn bridge() -> Finding {
    let output = Command::new("ip")
        .args(["link", "add", "chaos-probe0", "type", "bridge"])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            Finding::yes(feature::BRIDGE, "a bridge device can be created")
        }
        Ok(output) => Finding::no(
            feature::BRIDGE,
            format!(
                "ip link add ... type bridge: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            "CONFIG_BRIDGE=y (or the bridge module)",
        ),
        Err(err) => Finding::no(
            feature::BRIDGE,
            format!("cannot run ip to try: {err}"),
            "install iproute2",
        ),
    }
}

fn sch_fq() -> Finding {
    let output = Command::new("tc")
        .args(["qdisc", "add", "dev", "lo", "root", "fq"])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            Finding::yes(feature::SCH_FQ, "an fq qdisc can be created")
        }
        Ok(output) => Finding::no(
            feature::SCH_FQ,
            format!(
                "tc qdisc add ... fq: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            "CONFIG_NET_SCH_FQ=y (or the sch_fq module)",
        ),
        Err(err) => Finding::no(
            feature::SCH_FQ,
            format!("cannot run tc to try: {err}"),
            "install iproute2",
        ),
    }
}

fn cgroup_v2() -> Finding {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let v1 = mounts
        .lines()
        .any(|line| line.split_whitespace().nth(2) == Some("cgroup"));
    match target::cgroup2_mount() {
        Ok(dir) => {
            let mode = if v1 { "hybrid" } else { "unified" };
            Finding::yes(
                feature::CGROUP_V2,
                format!("mounted at {} ({mode} mode)", dir.display()),
            )
        }
        Err(_) => Finding::no(
            feature::CGROUP_V2,
            "no cgroup2 mount in /proc/self/mounts",
            "mount -t cgroup2 none /sys/fs/cgroup/unified, or boot with systemd.unified_cgroup_hierarchy=1",
        ),
    }
}

fn bpffs() -> Finding {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    match mounts
        .lines()
        .find(|line| line.split_whitespace().nth(2) == Some("bpf"))
    {
        Some(line) => Finding::yes(
            feature::BPFFS,
            format!(
                "mounted at {}",
                line.split_whitespace().nth(1).unwrap_or("?")
            ),
        ),
        None => Finding::no(
            feature::BPFFS,
            "not mounted",
            "mount -t bpf bpf /sys/fs/bpf",
        ),
    }
}

fn lockdown() -> Finding {
    let note = ensure_mounted("securityfs", "/sys/kernel/security");
    match fs::read_to_string("/sys/kernel/security/lockdown") {
        Ok(modes) => {
            let current = modes
                .split_whitespace()
                .find_map(|mode| mode.strip_prefix('[')?.strip_suffix(']'))
                .unwrap_or("unknown")
                .to_owned();
            let detail = format!("{current}{note}");
            if current == "confidentiality" {
                Finding::no(
                    feature::LOCKDOWN,
                    format!("{detail}: reading kernel memory from BPF is refused"),
                    "boot with lockdown=integrity or none",
                )
            } else {
                Finding::yes(feature::LOCKDOWN, detail)
            }
        }
        Err(_) => Finding::yes(feature::LOCKDOWN, format!("no lockdown LSM{note}")),
    }
}

fn capabilities_finding() -> Finding {
    let have = capabilities::names(capabilities::effective_mask()).join(",");
    let missing = capabilities::missing();
    if missing.is_empty() {
        Finding::yes(feature::CAPABILITIES, have)
    } else {
        Finding::no(
            feature::CAPABILITIES,
            format!("have [{have}], missing [{}]", missing.join(",")),
            "run as root, or grant the missing capabilities",
        )
    }
}

fn load_object(bytes: &[u8]) -> Result<Ebpf, String> {
    EbpfLoader::new().load(bytes).map_err(|err| err.to_string())
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?;
    program
        .try_into()
        .map_err(|err: ProgramError| err.to_string())
}

/// The form the kernel's refusal of trampoline programs takes here.
pub fn is_eperm_without_log(err: &str) -> bool {
    err.contains("Operation not permitted") && err.trim_end().ends_with("Verifier output:")
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// Mounts a pseudo file system the probe needs when it is missing; the returned note says so.
pub fn ensure_mounted(fstype: &str, dir: &str) -> String {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(dir))
    {
        return String::new();
    }
    let (Ok(source), Ok(target), Ok(kind)) = (
        CString::new(fstype),
        CString::new(dir),
        CString::new(fstype),
    ) else {
        return String::new();
    };
    // SAFETY: plain C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            kind.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        format!(" (mounted {fstype} at {dir})")
    } else {
        format!(
            " ({fstype} not mounted at {dir}: {})",
            io::Error::last_os_error()
        )
    }
}

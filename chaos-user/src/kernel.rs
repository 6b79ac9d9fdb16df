//! What the running kernel can do, found by trying: load a tiny program, read /sys, ask the
//! kernel through a throwaway network namespace. Never from version numbers.

pub mod cache;

use std::{fs, io, path::Path};

use chaos_common::{
    fault::{ClockFilter, CorruptFilter, DiskFilter, NO_REQ_OP, PathOffsets, StatfsFilter},
    features as feature,
    hook::{self, Hook},
    names,
    ops::OPS,
};
use serde::Serialize;

use crate::{
    attach::{Loaded, Sites, fmod_ret},
    capabilities,
    fault::InjectionKind,
    object,
    sys::{self, ensure_mounted},
};
use aya_obj::generated::{
    BPF_ADD, BPF_ALU64, BPF_ATOMIC, BPF_CALL, BPF_DW, BPF_EXIT, BPF_FETCH, BPF_JMP, BPF_K, BPF_MEM,
    BPF_MOV, BPF_STX, bpf_attach_type, bpf_func_id, bpf_insn, bpf_prog_type,
};

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

/// Everything `chaos probe` reports, in order.
pub fn probe() -> Vec<Finding> {
    cache::probe_afresh();
    let btf = crate::btf::aya_kernel();
    let mut findings = vec![match &btf {
        Ok(_) => Finding::yes(feature::BTF, "/sys/kernel/btf/vmlinux parses"),
        Err(err) => Finding::no(
            feature::BTF,
            format!("/sys/kernel/btf/vmlinux: {err}"),
            "a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        ),
    }];
    findings.push(bpf_lsm_listed());
    findings.push(lsm_loadable(btf.is_ok()));
    findings.push(fmod_ret());
    findings.push(lsm_cgroup(btf.is_ok()));
    findings.push(kprobes());
    findings.push(kprobe_override());
    findings.push(error_injection());
    findings.push(atomics_finding());
    findings.push(struct_args());
    findings.push(cgroup_sock_addr());
    findings.push(tracepoint_signal());
    findings.push(perf_link());
    findings.extend(in_scratch_netns(network_findings));
    findings.push(xdp_native());
    findings.push(cgroup_skb());
    findings.push(cgroup_v2());
    findings.push(bpffs());
    findings.push(lockdown());
    findings.push(probe_write_user());
    findings.push(sock_destroy());
    findings.push(capabilities_finding());
    findings
}

/// Why LSM-based faults cannot run here, or `None` when they can.
pub fn lsm_unsupported() -> Option<Finding> {
    let btf = crate::btf::aya_kernel().is_ok();
    [bpf_lsm_listed(), lsm_loadable(btf)]
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

/// Trampoline programs (LSM, fentry, fexit, fmod_ret): load and attach the real `file_open`
/// program, which lets every call through without a fault. Loading alone is not enough: arm64
/// before 6.4 loads them but cannot attach them (no ftrace direct calls: ENOTSUPP).
fn lsm_loadable(btf: bool) -> Finding {
    if !btf {
        return Finding::no(
            feature::TRAMPOLINE,
            "no kernel BTF to resolve the hook",
            "CONFIG_DEBUG_INFO_BTF=y",
        );
    }
    let result = try_attach(errno_object(), first_lsm_hook(), &Sites::default());
    match result {
        Ok(()) => Finding::yes(
            feature::TRAMPOLINE,
            "an LSM program (lsm/file_open) loads and attaches",
        ),
        Err(err) if is_eperm_without_log(&err) => trampoline_refused(),
        Err(err) if cannot_patch(&err) => Finding::no(
            feature::TRAMPOLINE,
            format!("lsm/file_open loads but does not attach: {err}"),
            CANNOT_PATCH_FIX,
        ),
        Err(err) => Finding::no(
            feature::TRAMPOLINE,
            format!("loading lsm/file_open failed: {err}"),
            "CONFIG_BPF_LSM=y and CONFIG_BPF_JIT=y",
        ),
    }
}

/// Whether attaching a trampoline failed with the kernel's ENOTSUPP (524, not libc's ENOTSUP):
/// the architecture cannot patch one into the kernel's text.
fn cannot_patch(err: &str) -> bool {
    err.contains("(os error 524)")
}

/// What makes an architecture patch trampolines in.
const CANNOT_PATCH_FIX: &str =
    "kernel >= 6.4 on arm64 (ftrace direct calls), CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=y";

/// Why fmod_ret faults cannot run here, or `None` when they can.
pub fn fmod_ret_unsupported() -> Option<Finding> {
    Some(fmod_ret()).filter(|finding| !finding.supported)
}

/// An LSM program of the catalogue (`file_open`'s) loads as fmod_ret on its `security_*`
/// function: trampolines work, whatever the active LSM list.
fn fmod_ret() -> Finding {
    let hook = first_hook(|hook| matches!(hook, Hook::FmodRet { .. }));
    let Hook::FmodRet { function, .. } = hook else {
        unreachable!("an fmod_ret hook")
    };
    match try_attach(errno_object(), hook, &Sites::default()) {
        Ok(()) => Finding::yes(
            feature::FMOD_RET,
            format!("an LSM program loads and attaches as fmod_ret on {function}"),
        ),
        Err(err) => {
            if is_eperm_without_log(&err) {
                return Finding::no(
                    feature::FMOD_RET,
                    "refused with EPERM like every trampoline program on this kernel",
                    "a kernel that lets BPF trampolines load",
                );
            }
            if cannot_patch(&err) {
                return Finding::no(
                    feature::FMOD_RET,
                    format!("fmod_ret on {function} loads but does not attach: {err}"),
                    CANNOT_PATCH_FIX,
                );
            }
            Finding::no(
                feature::FMOD_RET,
                format!(
                    "loading fmod_ret on {function} failed: {}",
                    first_line(&err)
                ),
                "kernel >= 5.7 with CONFIG_BPF_JIT=y, CONFIG_DEBUG_INFO_BTF=y and CONFIG_FUNCTION_ERROR_INJECTION or CONFIG_SECURITY",
            )
        }
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

fn lsm_cgroup(btf: bool) -> Finding {
    if !btf {
        return Finding::no(
            feature::LSM_CGROUP,
            "no kernel BTF",
            "CONFIG_DEBUG_INFO_BTF=y",
        );
    }
    let result = try_load(object::PROBE, hook::PROBE_LSM_CGROUP);
    match result {
        Ok(()) => Finding::yes(feature::LSM_CGROUP, "an lsm_cgroup program loads"),
        Err(err) if is_eperm_without_log(&err) => Finding::no(
            feature::LSM_CGROUP,
            "refused with EPERM like every trampoline program on this kernel",
            "a kernel that lets BPF trampolines load",
        ),
        Err(err) => Finding::no(
            feature::LSM_CGROUP,
            format!("loading an lsm_cgroup program failed: {}", first_line(&err)),
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
    let mut probe = match Loaded::plain(object::PROBE, &[hook::PROBE_KPROBE_OVERRIDE]) {
        Ok(probe) => probe,
        Err(err) => return Finding::no(feature::KPROBE_OVERRIDE, crate::error_line(&err), ENABLE),
    };
    if let Err(err) = probe.load(hook::PROBE_KPROBE_OVERRIDE) {
        let err = crate::error_line(&err);
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
    let syscall = function
        .split_once("_sys_")
        .map_or(function.as_str(), |(_, name)| name);
    let sites = Sites {
        syscall: Some(syscall),
        ..Sites::default()
    };
    let attached = probe.attach(hook::PROBE_KPROBE_OVERRIDE, &sites, None);
    probe.detach();
    match attached {
        Ok(()) => Finding::yes(
            feature::KPROBE_OVERRIDE,
            format!("an overriding kprobe attaches to {function}{note}"),
        ),
        Err(err) => Finding::no(
            feature::KPROBE_OVERRIDE,
            format!(
                "an overriding kprobe does not attach to {function}: {}",
                first_line(&crate::error_line(&err))
            ),
            ENABLE,
        ),
    }
}

/// The kernel's error-injection list and its own fault points (`should_fail*`): what
/// `--kernel-fn` and `chaos disk error` fail, through kprobe override.
fn error_injection() -> Finding {
    const ENABLE: &str = "CONFIG_FUNCTION_ERROR_INJECTION=y (its fault points: CONFIG_FAILSLAB=y, CONFIG_FAIL_PAGE_ALLOC=y, CONFIG_FAIL_MAKE_REQUEST=y)";
    let entries = error_injection_entries();
    if entries.is_empty() {
        return Finding::no(
            feature::ERROR_INJECTION,
            "no error-injection list (/sys/kernel/debug/error_injection/list)",
            ENABLE,
        );
    }
    let points: Vec<String> = entries
        .iter()
        .filter(|(function, _)| function.starts_with("should_fail"))
        .map(|(function, kind)| format!("{function} {kind}"))
        .collect();
    let points = if points.is_empty() {
        "none of them a fault point (should_fail*)".to_owned()
    } else {
        format!("fault points: {}", points.join(", "))
    };
    // fmod_ret attaches to the list's functions too: --kernel-fn and --syscall prefer it, and
    // `chaos clock` answers time() that way.
    let fmod_ret = match load_refused(hook::FMOD_RET_OVERRIDE) {
        None => "fmod_ret attaches to them (--kernel-fn's program loads on a syscall), which --syscall, --kernel-fn, disk error and disk cut prefer and chaos clock's time() uses".to_owned(),
        Some(reason) => format!(
            "fmod_ret does not attach to them here ({}): --syscall, --kernel-fn, disk error and disk cut need kprobe-override",
            first_line(&reason)
        ),
    };
    Finding::yes(
        feature::ERROR_INJECTION,
        format!(
            "{} functions in /sys/kernel/debug/error_injection/list; {points}; {fmod_ret}",
            entries.len()
        ),
    )
}

/// The functions the kernel allows error injection for (debugfs), with their types (`ERRNO`,
/// `NULL`, …).
fn error_injection_entries() -> &'static [(String, String)] {
    static ENTRIES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    ENTRIES.get_or_init(|| {
        ensure_mounted("debugfs", "/sys/kernel/debug");
        fs::read_to_string("/sys/kernel/debug/error_injection/list")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                Some((words.next()?.to_owned(), words.next()?.to_owned()))
            })
            .collect()
    })
}

/// The functions the kernel allows error injection for.
fn error_injection_list() -> impl Iterator<Item = &'static str> {
    error_injection_entries()
        .iter()
        .map(|(function, _)| function.as_str())
}

/// Whether the kernel allows error injection for `function`.
pub fn error_injectable(function: &str) -> bool {
    error_injection_list().any(|f| f == function)
}

/// `function` on this architecture: the catalogue and the eBPF sections name a syscall's entry
/// function as x86_64 does (`__x64_sys_fsync`); arm64's is `__arm64_sys_fsync`.
pub fn arch_function(function: &str) -> std::borrow::Cow<'_, str> {
    match function.strip_prefix("__x64_sys_") {
        Some(syscall) if std::env::consts::ARCH != "x86_64" => {
            syscall_entry_function(syscall).into()
        }
        _ => function.into(),
    }
}

/// The kernel function a syscall enters through on this architecture (`__x64_sys_fsync`).
pub fn syscall_entry_function(syscall: &str) -> String {
    let prefix = match std::env::consts::ARCH {
        "aarch64" => "__arm64_sys_",
        _ => "__x64_sys_",
    };
    format!("{prefix}{syscall}")
}

/// `syscall`'s entry function, if the error-injection list allows failing it. A syscall without
/// arguments is listed by its body, `__do_sys_NAME`, which is the entry function under another
/// name (one address: the kernel checks the address).
pub fn injectable_syscall_function(syscall: &str) -> Option<String> {
    listed_syscall_function(syscall, error_injection_list())
}

/// [`injectable_syscall_function`] with the error-injection list `listed`.
fn listed_syscall_function<'a>(
    syscall: &str,
    mut listed: impl Iterator<Item = &'a str>,
) -> Option<String> {
    let function = syscall_entry_function(syscall);
    let body = format!("__do_sys_{syscall}");
    listed
        .any(|listed| listed == function || listed == body)
        .then_some(function)
}

/// The functions the kprobe rung overrides for an operation's `syscalls`: those of the
/// error-injection list. Where the list exists it holds every syscall the kernel has, so a
/// syscall missing from it is one this kernel or architecture lacks (arm64 has no open(), stat()
/// or fork(), kernels before 6.6 no fchmodat2()), which nothing can call; none listed is a
/// refusal.
pub fn override_functions(syscalls: &[&str]) -> Result<Vec<String>, String> {
    listed_override_functions(syscalls, &error_injection_list().collect::<Vec<_>>())
}

/// [`override_functions`] with the error-injection list `listed`.
fn listed_override_functions(syscalls: &[&str], listed: &[&str]) -> Result<Vec<String>, String> {
    let functions: Vec<String> = syscalls
        .iter()
        .filter_map(|syscall| listed_syscall_function(syscall, listed.iter().copied()))
        .collect();
    if functions.is_empty() {
        let names: Vec<String> = syscalls
            .iter()
            .map(|syscall| syscall_entry_function(syscall))
            .collect();
        return Err(format!(
            "none of {} is in /sys/kernel/debug/error_injection/list",
            names.join(", ")
        ));
    }
    Ok(functions)
}

/// How `function` fails, if the kernel allows error injection for it.
pub fn error_injection_kind(function: &str) -> Option<InjectionKind> {
    error_injection_entries()
        .iter()
        .find(|(name, _)| name == function)
        .and_then(|(_, kind)| InjectionKind::parse(kind))
}

/// How many functions the error-injection list holds.
pub fn error_injection_count() -> usize {
    error_injection_entries().len()
}

/// A few functions of the list that are not syscalls, for an error message: `; such as …`.
pub fn error_injection_examples() -> String {
    let examples: Vec<&str> = error_injection_list()
        .filter(|function| !function.contains("_sys_"))
        .take(6)
        .collect();
    if examples.is_empty() {
        String::new()
    } else {
        format!("; such as {}", examples.join(", "))
    }
}

/// Where function `name`'s code lies, `[start, end)`, from /proc/kallsyms: its address, and the
/// next symbol's. Refused where kallsyms hides addresses, for an unknown name (naming the
/// suffixed copies the compiler made, `name.constprop.0`, if any) and for a name that is
/// several functions.
pub fn function_range(name: &str) -> Result<(u64, u64), String> {
    let kallsyms =
        fs::read_to_string("/proc/kallsyms").map_err(|err| format!("/proc/kallsyms: {err}"))?;
    let mut addresses: Vec<u64> = Vec::new();
    let mut starts: Vec<u64> = Vec::new();
    let mut suffixed: Vec<String> = Vec::new();
    for line in kallsyms.lines() {
        let mut words = line.split_whitespace();
        let (Some(address), Some(kind), Some(symbol)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Ok(address) = u64::from_str_radix(address, 16) else {
            continue;
        };
        addresses.push(address);
        let text = matches!(kind, "t" | "T");
        if text && symbol == name {
            starts.push(address);
        } else if text && symbol.split('.').next() == Some(name) {
            suffixed.push(symbol.to_owned());
        }
    }
    match starts.as_slice() {
        [] if suffixed.is_empty() => Err(format!("no kernel function {name} in /proc/kallsyms")),
        [] => Err(format!(
            "no kernel function {name} in /proc/kallsyms, but {} (the compiler's copies): name one of them",
            suffixed.join(", ")
        )),
        [0] => Err(
            "/proc/kallsyms hides kernel addresses (kernel.kptr_restrict=2, or not root)"
                .to_owned(),
        ),
        &[start] => {
            let end = addresses
                .iter()
                .copied()
                .filter(|&a| a > start)
                .min()
                .ok_or_else(|| format!("no symbol after {name} in /proc/kallsyms"))?;
            Ok((start, end))
        }
        several => Err(format!(
            "{name} is {} functions in /proc/kallsyms (static functions of several files): cannot tell which",
            several.len()
        )),
    }
}

/// The argument (0-based) holding the gfp flags of the allocation functions of the
/// error-injection list.
pub fn gfp_argument(function: &str) -> Option<u32> {
    match function {
        // should_failslab(struct kmem_cache *s, gfp_t gfpflags)
        "should_failslab" => Some(1),
        // should_fail_alloc_page(gfp_t gfp_mask, unsigned int order)
        "should_fail_alloc_page" => Some(0),
        _ => None,
    }
}

/// This kernel's `__GFP_DIRECT_RECLAIM` and `__GFP_NOFAIL` (enumerators of its BTF from 6.10
/// on; before, macros the BTF does not keep).
pub fn gfp_bits() -> Result<(u32, u32), crate::btf::BtfError> {
    let btf = crate::btf::Btf::kernel()?;
    Ok((
        1 << btf.enum_value("___GFP_DIRECT_RECLAIM_BIT")?,
        1 << btf.enum_value("___GFP_NOFAIL_BIT")?,
    ))
}

fn error_injectable_syscall() -> Option<String> {
    let functions: Vec<&str> = error_injection_list().collect();
    // A kprobe by name needs a symbol that exists once; some are listed twice.
    let unique = |name: &&str| functions.iter().filter(|other| *other == name).count() == 1;
    [
        "__x64_sys_getppid",
        "__arm64_sys_getppid",
        "__x64_sys_openat",
        "__arm64_sys_openat",
    ]
    .into_iter()
    .find(|name| functions.iter().any(|f| f == name) && unique(name))
    .or_else(|| {
        functions
            .iter()
            .copied()
            .filter(unique)
            .find(|name| name.contains("_sys_"))
    })
    .map(str::to_owned)
}

/// Whether tracepoint and kprobe programs attach through BPF links, which bpffs can pin.
fn perf_link() -> Finding {
    if aya::features().bpf_perf_link() {
        Finding::yes(
            feature::PERF_LINK,
            "tracepoint and kprobe programs attach through BPF links (a detached run pins them)",
        )
    } else {
        Finding::no(
            feature::PERF_LINK,
            "tracepoint and kprobe programs attach only through perf event ioctls, which bpffs cannot pin: signal faults, --syscall and --pid-tree do not run detached",
            "kernel >= 5.15 (BPF perf-event links)",
        )
    }
}

/// Whether the kernel has BPF atomics (5.12), which the errno object's rules and PID bitmap
/// use. Asked once.
pub fn bpf_atomics() -> bool {
    static ATOMICS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ATOMICS.get_or_init(|| cache::probed("bpf_atomics", || atomics_finding().supported))
}

/// One instruction of a feature probe.
fn insn(code: u32, dst: u8, src: u8, off: i16, imm: i32) -> bpf_insn {
    let mut insn = bpf_insn {
        code: code as u8,
        _bitfield_align_1: [],
        _bitfield_1: Default::default(),
        off,
        imm,
    };
    insn.set_dst_reg(dst);
    insn.set_src_reg(src);
    insn
}

/// `r0 = value; exit`: the end of every probe.
fn return_value(value: i32) -> [bpf_insn; 2] {
    [
        insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, value),
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

// The probes below load instructions of their own, not the errno object's programs: they need
// no maps and no kernel BTF and take a fraction of a millisecond, where loading the object (all
// its maps, twice per run) took most of a run's start.

/// A tracepoint program's atomic fetch-and-add on its stack, the instruction class of the errno
/// object's counters and PID bitmap: 5.12 on (older kernels take only BPF_XADD, without fetch).
fn atomics_load() -> Result<(), String> {
    let (r1, r10) = (1, 10);
    let fetch_add = (BPF_ADD | BPF_FETCH) as i32;
    let program = [
        insn(BPF_ALU64 | BPF_MOV | BPF_K, r1, 0, 0, 0),
        insn(BPF_STX | BPF_MEM | BPF_DW, r10, r1, -8, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_K, r1, 0, 0, 1),
        insn(BPF_STX | BPF_ATOMIC | BPF_DW, r10, r1, -8, fetch_add),
    ];
    let program: Vec<bpf_insn> = program.into_iter().chain(return_value(0)).collect();
    fmod_ret::try_instructions(bpf_prog_type::BPF_PROG_TYPE_TRACEPOINT, None, &program)
}

/// A cgroup/connect4 program calling `bpf_set_retval(0)`, as the errno object's cgroup
/// programs do to choose the errno: 5.18 on.
fn set_retval_load() -> Result<(), String> {
    let r1 = 1;
    let program = [
        insn(BPF_ALU64 | BPF_MOV | BPF_K, r1, 0, 0, 0),
        insn(
            BPF_JMP | BPF_CALL,
            0,
            0,
            0,
            bpf_func_id::BPF_FUNC_set_retval as i32,
        ),
    ];
    let program: Vec<bpf_insn> = program.into_iter().chain(return_value(1)).collect();
    fmod_ret::try_instructions(
        bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        Some(bpf_attach_type::BPF_CGROUP_INET4_CONNECT),
        &program,
    )
}

fn atomics_finding() -> Finding {
    match atomics_load() {
        Ok(()) => Finding::yes(
            feature::BPF_ATOMICS,
            "a program with BPF atomic instructions loads",
        ),
        Err(err) => Finding::no(
            feature::BPF_ATOMICS,
            format!(
                "a program with BPF atomic instructions does not load ({}): chaos uses its build without them, which has no --after, --every or --count",
                first_line(&err)
            ),
            "kernel >= 5.12",
        ),
    }
}

/// The errno object this kernel loads: the one built without BPF atomics where it has none.
pub fn errno_object() -> &'static [u8] {
    if bpf_atomics() {
        object::ERRNO
    } else {
        object::ERRNO_LEGACY
    }
}

/// Whether cgroup programs can choose the errno (`bpf_set_retval`, 5.18). Asked once.
pub fn set_retval() -> bool {
    static SET_RETVAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET_RETVAL.get_or_init(|| cache::probed("set_retval", || cgroup_sock_addr().supported))
}

/// Why cgroup programs cannot fail calls even with EPERM here (without `bpf_set_retval`), or
/// `None` when they can.
pub fn cgroup_eperm_unsupported() -> Option<String> {
    let mut loader = aya::EbpfLoader::new();
    loader.override_global(names::GLOBAL_KERNEL_SET_RETVAL, &0u32, true);
    let hook = first_cgroup_hook();
    let result = Loaded::new(&mut loader, errno_object(), &[hook]).and_then(|mut loaded| {
        let result = loaded.load(hook);
        loaded.detach();
        result
    });
    result.err().map(|err| first_line(&crate::error_line(&err)))
}

pub fn cgroup_sock_addr() -> Finding {
    match set_retval_load() {
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
    let sites = Sites {
        syscall: Some("getppid"),
        ..Sites::default()
    };
    let result = try_attach(object::PROBE, hook::PROBE_TRACEPOINT_SIGNAL, &sites);
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
    let result = try_load(object::PROBE, hook::PROBE_CGROUP_SKB);
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
    let result = if crate::attach::tcx_links() {
        try_attach(object::PROBE, hook::PROBE_TC, &loopback())
    } else {
        Err("tcx links are off (kernel before 6.6, or CHAOS_TC_ATTACH=clsact)".to_owned())
    };
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
    let result = try_attach(object::PROBE, hook::PROBE_XDP, &loopback());
    match result {
        Ok(()) => Finding::yes(feature::XDP, "an XDP program attaches in generic mode"),
        Err(err) => Finding::no(
            feature::XDP,
            first_line(&err),
            "CONFIG_BPF_SYSCALL=y and CONFIG_NET=y",
        ),
    }
}

/// Which interfaces of chaos's own network namespace run XDP in their driver, as the kernel
/// reports it (nothing is attached): `--hook xdp` attaches there in native mode, elsewhere in
/// generic mode.
fn xdp_native() -> Finding {
    const ENABLE: &str = "an interface whose driver runs XDP (virtio_net, veth, mlx5, i40e, ixgbe, ena, …; kernel >= 6.3 to be told which)";
    let devices = match crate::netlink::xdp_features() {
        Ok(Some(devices)) => devices,
        Ok(None) => {
            return Finding::no(
                feature::XDP_NATIVE,
                "the kernel does not say which drivers run XDP (no netdev netlink family, 6.3); --hook xdp tries native mode and falls back to generic",
                ENABLE,
            );
        }
        Err(err) => {
            return Finding::no(
                feature::XDP_NATIVE,
                format!("the netdev netlink family does not answer: {err}"),
                ENABLE,
            );
        }
    };
    let name = |index: u32| {
        let mut buffer = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes, NUL-terminated, into buffer.
        let found = unsafe { libc::if_indextoname(index, buffer.as_mut_ptr()) };
        if found.is_null() {
            return format!("#{index}");
        }
        // SAFETY: if_indextoname returned buffer, which now holds a NUL-terminated name.
        unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    let (native, generic): (Vec<_>, Vec<_>) = devices
        .iter()
        .partition(|(_, features)| features & crate::netlink::XDP_ACT_BASIC != 0);
    let names = |devices: Vec<&(u32, u64)>| -> String {
        let names: Vec<String> = devices.iter().map(|(index, _)| name(*index)).collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let detail = format!(
        "native: {}; generic only: {}",
        names(native.clone()),
        names(generic)
    );
    if native.is_empty() {
        Finding::no(feature::XDP_NATIVE, detail, ENABLE)
    } else {
        Finding::yes(feature::XDP_NATIVE, detail)
    }
}

/// In the scratch namespace: a bridge device (`ip link add … type bridge`), gone with the
/// namespace.
fn bridge() -> Finding {
    match crate::netlink::add_link("chaos-probe0", "bridge") {
        Ok(()) => Finding::yes(feature::BRIDGE, "a bridge device can be created"),
        Err(err) => Finding::no(
            feature::BRIDGE,
            format!("creating a bridge device: {err}"),
            "CONFIG_BRIDGE=y (or the bridge module)",
        ),
    }
}

/// In the scratch namespace: an fq root qdisc on its loopback device.
fn sch_fq() -> Finding {
    let loopback = 1;
    match crate::netlink::add_qdisc(loopback, crate::netlink::TC_H_ROOT, 0, "fq", true) {
        Ok(()) => Finding::yes(feature::SCH_FQ, "an fq qdisc can be created"),
        Err(err) => Finding::no(
            feature::SCH_FQ,
            format!("creating an fq qdisc: {err}"),
            "CONFIG_NET_SCH_FQ=y (or the sch_fq module)",
        ),
    }
}

fn cgroup_v2() -> Finding {
    let mounts = crate::sys::read_proc("/proc/self/mounts").unwrap_or_default();
    let v1 = mounts
        .lines()
        .any(|line| line.split_whitespace().nth(2) == Some("cgroup"));
    match sys::cgroup2_mount() {
        Some(dir) => {
            let mode = if v1 { "hybrid" } else { "unified" };
            Finding::yes(
                feature::CGROUP_V2,
                format!("mounted at {} ({mode} mode)", dir.display()),
            )
        }
        None => Finding::no(
            feature::CGROUP_V2,
            "no cgroup2 mount in /proc/self/mounts",
            "mount -t cgroup2 none /sys/fs/cgroup/unified, or boot with systemd.unified_cgroup_hierarchy=1",
        ),
    }
}

fn bpffs() -> Finding {
    match sys::mounted("bpf") {
        Some(dir) => Finding::yes(feature::BPFFS, format!("mounted at {}", dir.display())),
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

pub fn probe_write_user() -> Finding {
    match try_load(object::PROBE, hook::PROBE_WRITE_USER) {
        Ok(()) => Finding::yes(
            feature::PROBE_WRITE_USER,
            "a program calling bpf_probe_write_user loads",
        ),
        Err(err) => Finding::no(
            feature::PROBE_WRITE_USER,
            format!(
                "a program calling bpf_probe_write_user does not load: {}",
                first_line(&err)
            ),
            "boot with lockdown=none (integrity and confidentiality refuse it)",
        ),
    }
}

fn sock_destroy() -> Finding {
    let found = kernel_btf().is_some_and(|btf| btf.has_function("bpf_sock_destroy"));
    if found {
        Finding::yes(
            feature::SOCK_DESTROY,
            "the kernel's BTF has the bpf_sock_destroy kfunc",
        )
    } else {
        Finding::no(
            feature::SOCK_DESTROY,
            "no bpf_sock_destroy kfunc in the kernel's BTF",
            "kernel >= 6.5 with CONFIG_BPF_SYSCALL and BTF",
        )
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

/// Loads `hook`'s program of `object` and lets go of it: what the verifier says.
fn try_load(object: &'static [u8], hook: Hook) -> Result<(), String> {
    let mut loaded = Loaded::plain(object, &[hook]).map_err(|err| crate::error_line(&err))?;
    let result = loaded.load(hook).map_err(|err| crate::error_line(&err));
    loaded.detach();
    result
}

/// Loads and attaches `hook`'s program of `object` at `sites`, and lets go of it at once.
fn try_attach(object: &'static [u8], hook: Hook, sites: &Sites<'_>) -> Result<(), String> {
    let mut loaded = Loaded::plain(object, &[hook]).map_err(|err| crate::error_line(&err))?;
    let result = loaded
        .attach(hook, sites, None)
        .map_err(|err| crate::error_line(&err));
    loaded.detach();
    result
}

/// The probe's interface: loopback, in the scratch namespace the caller runs in.
fn loopback() -> Sites<'static> {
    static LO: std::sync::LazyLock<[String; 1]> = std::sync::LazyLock::new(|| ["lo".to_owned()]);
    Sites {
        ifaces: &*LO,
        ..Sites::default()
    }
}

/// The first hook of the catalogue that `kind` accepts: the one a probe loads of its kind.
fn first_hook(kind: impl Fn(&Hook) -> bool) -> Hook {
    OPS.iter()
        .flat_map(|op| op.rungs)
        .flat_map(|rung| rung.hooks)
        .copied()
        .find(kind)
        .expect("the catalogue has a hook of each kind the probe tries")
}

/// The first LSM hook of the catalogue (`file_open`): the one the trampoline probe loads.
fn first_lsm_hook() -> Hook {
    first_hook(|hook| matches!(hook, Hook::Lsm { .. }))
}

/// The first cgroup sock_addr hook of the catalogue (`connect4`).
fn first_cgroup_hook() -> Hook {
    first_hook(|hook| matches!(hook, Hook::CgroupSockAddr { .. }))
}

/// The form the kernel's refusal of trampoline programs takes here.
pub fn is_eperm_without_log(err: &str) -> bool {
    err.contains("Operation not permitted")
        && err
            .trim_end()
            .to_ascii_lowercase()
            .ends_with("verifier output:")
}

/// A load error in one line: its first, and of the verifier's log (which starts on that line)
/// only the reason, the last line that is neither an instruction, source nor a statistic.
fn first_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    // aya says "Verifier output:", chaos's own fmod_ret loader "verifier output:".
    let Some(at) = text.to_ascii_lowercase().find("verifier output:") else {
        return first.to_owned();
    };
    let (head, log) = (&text[..at], &text[at + "verifier output:".len()..]);
    // Statistics, source lines, and the cause the error chain appends after the log.
    let statistic = [
        "verification time",
        "stack depth",
        "processed ",
        "; ",
        "mark_precise",
        ": ",
    ];
    let reason = log.lines().map(str::trim).rev().find(|line| {
        let instruction = line.split_once(':').is_some_and(|(index, _)| {
            !index.is_empty() && index.bytes().all(|byte| byte.is_ascii_digit())
        });
        !line.is_empty() && !instruction && !statistic.iter().any(|s| line.starts_with(s))
    });
    let head = head.trim_end().trim_end_matches([';', '.']);
    match reason {
        Some(reason) => format!("{head}: {reason}"),
        None => head.to_owned(),
    }
}

/// Whether the tracepoint `syscalls:EVENT` exists.
pub enum Tracepoint {
    Exists,
    /// No syscall has a tracepoint here (CONFIG_FTRACE_SYSCALLS unset).
    NoSyscallEvents,
    /// Other syscalls have one; this name is unknown. The directory they are listed in.
    Unknown(String),
}

/// Looks for `syscalls:EVENT` in tracefs (mounted if need be).
pub fn syscall_tracepoint(event: &str) -> Tracepoint {
    ensure_mounted("tracefs", "/sys/kernel/tracing");
    let dir = Path::new("/sys/kernel/tracing/events/syscalls");
    if !dir.join("sys_enter_getpid").exists() {
        Tracepoint::NoSyscallEvents
    } else if dir.join(event).exists() {
        Tracepoint::Exists
    } else {
        Tracepoint::Unknown(dir.display().to_string())
    }
}

/// The offset of `child_pid` in a `sched:sched_process_fork` record, from the event's format.
pub fn fork_child_pid_offset() -> Result<u32, String> {
    tracepoint_field_offset("sched/sched_process_fork", "child_pid")
}

/// The offset of `field` in the records of tracepoint `event` (`category/name`), from its format
/// file.
fn tracepoint_field_offset(event: &str, field: &str) -> Result<u32, String> {
    ensure_mounted("tracefs", "/sys/kernel/tracing");
    let path = format!("/sys/kernel/tracing/events/{event}/format");
    let format = fs::read_to_string(&path).map_err(|err| format!("{path}: {err}"))?;
    let declared = format!(" {field};");
    format
        .lines()
        .find(|line| line.contains(&declared))
        .and_then(|line| {
            line.split("offset:")
                .nth(1)?
                .split(';')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("{path} has no {field} field"))
}

/// What the statfs programs of `chaos disk full` need: the filesystem at `path` as statfs()
/// names it, and for the tracepoints, where the syscall records hold the buffer and the return
/// value.
pub fn statfs_filter(path: &std::fs::File, tracepoints: bool) -> Result<StatfsFilter, String> {
    use std::os::fd::AsRawFd as _;
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs() on a descriptor we hold fills the struct we pass.
    if unsafe { libc::fstatfs(path.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
        return Err(format!("statfs: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fstatfs() returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    // SAFETY: fsid_t is 8 bytes of plain data, read as the programs read them.
    let f_fsid = unsafe { std::mem::transmute::<libc::fsid_t, u64>(stat.f_fsid) };
    let [enter_buf, exit_ret] = if tracepoints {
        syscall_record_offsets(["statfs", "fstatfs"], [("enter", "buf"), ("exit", "ret")])?
    } else {
        [0, 0]
    };
    Ok(StatfsFilter {
        f_type: stat.f_type as u64,
        f_fsid,
        enter_buf,
        exit_ret,
    })
}

/// The offsets of `fields` (`("enter", "buf")`: `buf` of `sys_enter_*`) in the tracepoint records
/// of both `syscalls`, which must agree: one global holds them for the programs of both.
fn syscall_record_offsets<const N: usize>(
    syscalls: [&str; 2],
    fields: [(&str, &str); N],
) -> Result<[u32; N], String> {
    let offsets = |syscall: &str| -> Result<[u32; N], String> {
        let mut offsets = [0; N];
        for (offset, (side, field)) in offsets.iter_mut().zip(fields) {
            *offset = tracepoint_field_offset(&format!("syscalls/sys_{side}_{syscall}"), field)?;
        }
        Ok(offsets)
    };
    let first = offsets(syscalls[0])?;
    if offsets(syscalls[1])? != first {
        return Err(format!(
            "the {} and {} tracepoint records differ in layout",
            syscalls[0], syscalls[1]
        ));
    }
    Ok(first)
}

/// Whether the kernel's BTF has the function `name`.
pub fn has_function(name: &str) -> bool {
    crate::btf::aya_kernel().is_ok_and(|btf| {
        btf.id_by_type_name_kind(name, aya_obj::btf::BtfKind::Func)
            .is_ok()
    })
}

/// Why `hook`'s program cannot load here (for an fmod_ret program: its function is not on the
/// kernel's error-injection list, or trampolines are refused), or `None` when it loads.
pub fn load_refused(hook: Hook) -> Option<String> {
    try_load(errno_object(), hook).err()
}

/// Why the trampoline programs `hooks` (corrupt-io's and delay's fexit, signal's fentry) cannot
/// run here (trampolines refused, no such function, a helper refused), or `None` when they load.
pub fn trampolines_refused(hooks: &[Hook]) -> Option<String> {
    let err = hooks.iter().find_map(|&hook| try_trampoline(hook).err())?;
    Some(if is_eperm_without_log(&err) {
        trampoline_refused().explain()
    } else if cannot_patch(&err) {
        format!("{err}; to enable: {CANNOT_PATCH_FIX}")
    } else {
        err
    })
}

/// Loads `hook`'s trampoline program, and on arm64 attaches it too: there, before 6.4, it loads
/// but cannot attach. On x86_64 a trampoline that loads attaches, so the load is enough.
fn try_trampoline(hook: Hook) -> Result<(), String> {
    if !cfg!(target_arch = "aarch64") {
        return try_load(errno_object(), hook);
    }
    // A syscall's program attaches on the syscall its section names.
    let syscall = hook.section().1.strip_prefix("__x64_sys_");
    let exits: Vec<String> = syscall.iter().map(|&name| name.to_owned()).collect();
    let sites = Sites {
        syscall,
        exits: &exits,
        ..Sites::default()
    };
    try_attach(errno_object(), hook, &sites)
}

/// What the read programs of `chaos corrupt-io` need: for the tracepoints, the syscall records'
/// layout; with `--path` (`files`), the way from a task to the file of a descriptor.
pub fn corrupt_filter(bits: u32, files: bool, tracepoints: bool) -> Result<CorruptFilter, String> {
    let mut filter = CorruptFilter {
        bits,
        ..CorruptFilter::default()
    };
    if tracepoints {
        [filter.enter_fd, filter.enter_buf, filter.exit_ret] = syscall_record_offsets(
            ["read", "pread64"],
            [("enter", "fd"), ("enter", "buf"), ("exit", "ret")],
        )?;
    }
    if files {
        let btf = crate::btf::Btf::kernel().map_err(|err| err.to_string())?;
        let offset =
            |ty: &str, field: &str| btf.offset_of(ty, field).map_err(|err| err.to_string());
        filter.task_files = offset("task_struct", "files")?;
        filter.files_fdt = offset("files_struct", "fdt")?;
        filter.fdt_fd = offset("fdtable", "fd")?;
        filter.fdt_max_fds = offset("fdtable", "max_fds")?;
    }
    Ok(filter)
}

/// `filter` with the places in the running kernel's structs its exec program reads (the new
/// image's stack and argument counts, the address of the process's vDSO), and the shifted real
/// time against CLOCK_BOOTTIME now.
pub fn clock_filter(filter: ClockFilter) -> Result<ClockFilter, String> {
    let btf = crate::btf::Btf::kernel().map_err(|err| err.to_string())?;
    let offset = |ty: &str, field: &str| btf.offset_of(ty, field).map_err(|err| err.to_string());
    let now_ns = crate::clock::now_ns;
    let real_from_boot = now_ns(libc::CLOCK_REALTIME) - now_ns(libc::CLOCK_BOOTTIME);
    let shift = filter.offset_sec * 1_000_000_000 + i64::from(filter.offset_nsec);
    Ok(ClockFilter {
        shifted_real_from_boot_ns: real_from_boot + shift,
        bprm_p: offset("linux_binprm", "p")?,
        bprm_argc: offset("linux_binprm", "argc")?,
        bprm_envc: offset("linux_binprm", "envc")?,
        task_mm: offset("task_struct", "mm")?,
        mm_vdso: offset("mm_struct", "context.vdso")?,
        ..filter
    })
}

/// Where the fields the `--path` filter follows lie in the running kernel's structs.
pub fn path_offsets() -> Result<PathOffsets, crate::btf::BtfError> {
    let btf = crate::btf::Btf::kernel()?;
    Ok(PathOffsets {
        file_dentry: btf.offset_of("file", "f_path.dentry")?,
        file_inode: btf.offset_of("file", "f_inode")?,
        path_dentry: btf.offset_of("path", "dentry")?,
        bprm_file: btf.offset_of("linux_binprm", "file")?,
        dentry_parent: btf.offset_of("dentry", "d_parent")?,
        dentry_inode: btf.offset_of("dentry", "d_inode")?,
        inode_ino: btf.offset_of("inode", "i_ino")?,
        inode_sb: btf.offset_of("inode", "i_sb")?,
        sb_dev: btf.offset_of("super_block", "s_dev")?,
    })
}

/// `filter` with where the block layer's fields lie in the running kernel's structs, for
/// `chaos disk error` (bios name their `block_device` from 5.12 on), and with `attributed` those
/// that lead from a bio to the cgroup it is charged to and to whose pages it writes.
pub fn disk_offsets(filter: DiskFilter) -> Result<DiskFilter, crate::btf::BtfError> {
    let btf = crate::btf::Btf::kernel()?;
    let op = |name: &str| btf.enum_value(name).unwrap_or(NO_REQ_OP);
    let filter = DiskFilter {
        req_preflush: 1 << btf.enum_value("__REQ_PREFLUSH")?,
        bio_remapped: 1 << btf.enum_value("BIO_REMAPPED")?,
        bio_bdev: btf.offset_of("bio", "bi_bdev")?,
        bio_opf: btf.offset_of("bio", "bi_opf")?,
        bio_flags: btf.offset_of("bio", "bi_flags")?,
        op_write_zeroes: op("REQ_OP_WRITE_ZEROES"),
        op_zone_append: op("REQ_OP_ZONE_APPEND"),
        op_secure_erase: op("REQ_OP_SECURE_ERASE"),
        bio_sector: btf.offset_of("bio", "bi_iter.bi_sector")?,
        bio_size: btf.offset_of("bio", "bi_iter.bi_size")?,
        bdev_dev: btf.offset_of("block_device", "bd_dev")?,
        bdev_start_sect: btf.offset_of("block_device", "bd_start_sect")?,
        bdev_disk: btf.offset_of("block_device", "bd_disk")?,
        disk_part0: btf.offset_of("gendisk", "part0")?,
        ..filter
    };
    if filter.attributed == 0 {
        return Ok(filter);
    }
    Ok(DiskFilter {
        bio_blkg: btf.offset_of("bio", "bi_blkg")?,
        blkg_blkcg: btf.offset_of("blkcg_gq", "blkcg")?,
        blkcg_cgroup: btf.offset_of("blkcg", "css.cgroup")?,
        cgroup_kn: btf.offset_of("cgroup", "kn")?,
        kn_id: btf.offset_of("kernfs_node", "id")?,
        // `__parent` from 6.15 on.
        kn_parent: btf
            .offset_of("kernfs_node", "parent")
            .or_else(|_| btf.offset_of("kernfs_node", "__parent"))?,
        bio_io_vec: btf.offset_of("bio", "bi_io_vec")?,
        bvec_page: btf.offset_of("bio_vec", "bv_page")?,
        page_mapping: btf.offset_of("page", "mapping")?,
        mapping_host: btf.offset_of("address_space", "host")?,
        inode_mode: btf.offset_of("inode", "i_mode")?,
        ..filter
    })
}

/// Why the kernel does not charge the writeback of the pages a cgroup dirties to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Uncharged {
    #[error("this kernel has no cgroup writeback (CONFIG_CGROUP_WRITEBACK)")]
    Kernel,
    #[error("the {0} controller is not on cgroup v2 here (a v1 hierarchy has it)")]
    NotOnV2(&'static str),
    #[error("{missing} not enabled for it: write \"+io +memory\" to {}", .control.display())]
    NotEnabled {
        missing: String,
        control: std::path::PathBuf,
    },
}

/// Whether the kernel charges the writeback of the pages cgroup v2 directory `dir` dirties to
/// it (cgroup writeback): only with the io and memory controllers on cgroup v2 and enabled for
/// it, and a kernel built with it (`inode->i_wb`, `bio->bi_blkg`).
pub fn cgroup_writeback(dir: &Path) -> Result<(), Uncharged> {
    let fields = [("inode", "i_wb"), ("bio", "bi_blkg")];
    if !kernel_btf().is_some_and(|btf| fields.iter().all(|(s, f)| btf.offset_of(s, f).is_ok())) {
        return Err(Uncharged::Kernel);
    }
    let controllers = |dir: &Path| fs::read_to_string(dir.join("cgroup.controllers"));
    let root = sys::cgroup2_mount()
        .and_then(|mount| controllers(&mount).ok())
        .unwrap_or_default();
    writeback_controllers(&root, &controllers(dir).unwrap_or_default(), dir)
}

/// [`cgroup_writeback`] from the controllers of the cgroup v2 root and of the cgroup `dir`.
fn writeback_controllers(root: &str, own: &str, dir: &Path) -> Result<(), Uncharged> {
    const NEEDED: [&str; 2] = ["io", "memory"];
    let has = |list: &str, name: &str| list.split_whitespace().any(|c| c == name);
    if let Some(name) = NEEDED.into_iter().find(|name| !has(root, name)) {
        return Err(Uncharged::NotOnV2(name));
    }
    let missing: Vec<&str> = NEEDED.into_iter().filter(|name| !has(own, name)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Uncharged::NotEnabled {
        missing: missing.join(" and "),
        control: dir.parent().unwrap_or(dir).join("cgroup.subtree_control"),
    })
}

/// Why `hook` cannot attach here though its mechanism can: the kernel function it runs on is not
/// in the kernel's BTF (`bpf_lsm_path_truncate` without CONFIG_SECURITY_PATH, a `security_*`
/// function a kernel renamed), or takes a struct by value where trampolines cannot; `None` when
/// it can, or when there is no BTF to ask (the mechanism's own check says so).
pub fn hook_missing(hook: Hook) -> Option<String> {
    let function = match hook {
        Hook::OpOverride { syscalls, .. } => return override_functions(syscalls).err(),
        Hook::Lsm { hook, .. } => format!("bpf_lsm_{hook}"),
        Hook::FmodRet { function, .. } => function.to_owned(),
        _ => return None,
    };
    match kernel_btf()?.struct_params(&function) {
        Err(err) => Some(err.to_string()),
        Ok(types) if !types.is_empty() && !struct_args().supported => Some(format!(
            "{function} takes {} by value: {}",
            types.join(", "),
            struct_args().explain()
        )),
        Ok(_) => None,
    }
}

/// Whether the running kernel's BTF has `function` (what a trampoline program attaches to).
pub fn in_kernel_btf(function: &str) -> bool {
    kernel_btf().is_some_and(|btf| btf.has_function(function))
}

/// The running kernel's BTF, parsed once; `None` without one.
fn kernel_btf() -> Option<&'static crate::btf::Btf> {
    static BTF: std::sync::OnceLock<Option<crate::btf::Btf>> = std::sync::OnceLock::new();
    BTF.get_or_init(|| crate::btf::Btf::kernel().ok()).as_ref()
}

/// Whether trampoline programs take struct arguments by value here (6.1). Asked once.
fn struct_args() -> Finding {
    static STRUCT_ARGS: std::sync::OnceLock<Finding> = std::sync::OnceLock::new();
    STRUCT_ARGS.get_or_init(try_struct_args).clone()
}

/// Whether the fmod_ret program of the one catalogue hook whose function takes a struct by value
/// (`security_path_chown`, `kuid_t`) loads.
fn try_struct_args() -> Finding {
    let takes_struct = |hook: &Hook| match hook {
        Hook::FmodRet { function, .. } => kernel_btf()
            .and_then(|btf| btf.struct_params(function).ok())
            .is_some_and(|types| !types.is_empty()),
        _ => false,
    };
    let Some(hook) = OPS
        .iter()
        .flat_map(|op| op.rungs)
        .flat_map(|rung| rung.hooks)
        .copied()
        .find(takes_struct)
    else {
        return Finding::no(
            feature::STRUCT_ARGS,
            "cannot tell: no function chaos hooks here takes a struct by value",
            "CONFIG_SECURITY_PATH=y (security_path_chown takes kuid_t and kgid_t)",
        );
    };
    let function = match hook {
        Hook::FmodRet { function, .. } => function,
        _ => unreachable!("an fmod_ret hook"),
    };
    let loaded = Loaded::plain(errno_object(), &[hook]).and_then(|mut loaded| {
        let result = loaded.load(hook);
        loaded.detach();
        result
    });
    match loaded.map_err(|err| crate::error_line(&err)) {
        Ok(()) => Finding::yes(
            feature::STRUCT_ARGS,
            format!("an fmod_ret program on {function}, which takes a struct by value, loads"),
        ),
        Err(err) if is_eperm_without_log(&err) => Finding::no(
            feature::STRUCT_ARGS,
            "refused with EPERM like every trampoline program on this kernel",
            "a kernel that lets BPF trampolines load",
        ),
        Err(err) => Finding::no(
            feature::STRUCT_ARGS,
            format!(
                "an fmod_ret program on {function}, which takes a struct by value, does not load: {}",
                first_line(&err)
            ),
            "kernel >= 6.1 (struct arguments in BPF trampolines)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{
        Uncharged, arch_function, first_line, listed_override_functions, syscall_entry_function,
        writeback_controllers,
    };

    #[test]
    fn the_kprobe_rung_skips_syscalls_this_kernel_lacks() {
        // As arm64's list: no open() nor creat(); fork() listed by its body.
        let openat = syscall_entry_function("openat");
        let listed = [openat.as_str(), "__do_sys_clone", "should_failslab"];
        assert_eq!(
            listed_override_functions(&["open", "openat", "creat"], &listed),
            Ok(vec![openat.clone()])
        );
        assert_eq!(
            listed_override_functions(&["clone"], &listed),
            Ok(vec![syscall_entry_function("clone")])
        );
        let none = listed_override_functions(&["open", "creat"], &listed).unwrap_err();
        assert!(
            none.contains(&syscall_entry_function("creat"))
                && none.contains("error_injection/list"),
            "{none}"
        );
        assert!(listed_override_functions(&["openat"], &[]).is_err());
    }

    #[test]
    fn syscall_functions_are_named_as_this_architecture_does() {
        assert_eq!(
            arch_function("__x64_sys_fsync"),
            syscall_entry_function("fsync")
        );
        assert_eq!(arch_function("security_file_open"), "security_file_open");
    }

    #[test]
    fn writeback_is_charged_with_io_and_memory_on_v2_and_enabled() {
        let dir = Path::new("/sys/fs/cgroup/kubepods/pod1");
        let all = "cpuset cpu io memory pids";
        assert_eq!(writeback_controllers(all, "cpu io memory", dir), Ok(()));
        assert_eq!(
            writeback_controllers("cpu io pids", all, dir),
            Err(Uncharged::NotOnV2("memory"))
        );
        let not_enabled = writeback_controllers(all, "cpu memory", dir).unwrap_err();
        assert_eq!(
            not_enabled.to_string(),
            "io not enabled for it: write \"+io +memory\" to /sys/fs/cgroup/kubepods/cgroup.subtree_control"
        );
        let neither = writeback_controllers(all, "", dir).unwrap_err();
        assert!(neither.to_string().starts_with("io and memory not enabled"));
    }

    /// Load errors as aya and the fmod_ret loader give them, from Debian's 5.10 and this host.
    #[test]
    fn a_load_error_keeps_the_verifiers_reason() {
        let helper = "program cgroup_connect4: the BPF_PROG_LOAD syscall returned Invalid argument (os error 22). Verifier output: ; #[cgroup_sock_addr(connect4)]\n0: (bf) r6 = r1\n; fun(ancestor_level)\n22: (85) call bpf_get_retval#186\nunknown func bpf_get_retval#186\nverification time 5470 usec\nstack depth 0\nprocessed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0\n: Invalid argument (os error 22)";
        assert_eq!(
            first_line(helper),
            "program cgroup_connect4: the BPF_PROG_LOAD syscall returned Invalid argument (os error 22): unknown func bpf_get_retval#186"
        );
        let no_reason = "program lsm_cgroup_probe: the BPF_PROG_LOAD syscall returned Invalid argument (os error 22). Verifier output: verification time 44 usec\nstack depth 0\nprocessed 0 insns (limit 1000000)\n";
        assert_eq!(
            first_line(no_reason),
            "program lsm_cgroup_probe: the BPF_PROG_LOAD syscall returned Invalid argument (os error 22)"
        );
        let fmod_ret = "program lsm_path_chown as fmod_ret on security_path_chown: Invalid argument (os error 22); verifier output: The function security_path_chown arg1 type STRUCT is unsupported.\nverification time 164 usec\n";
        assert_eq!(
            first_line(fmod_ret),
            "program lsm_path_chown as fmod_ret on security_path_chown: Invalid argument (os error 22): The function security_path_chown arg1 type STRUCT is unsupported."
        );
        assert_eq!(first_line("no log here\nsecond"), "no log here");
    }
}

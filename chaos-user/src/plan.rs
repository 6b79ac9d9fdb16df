//! The planner: which mechanism fails each operation of a fault on this kernel, and whether the
//! kernel has what a syscall fault needs. Reads the catalogue's rungs and `chaos probe`'s
//! findings; everything it refuses, it refuses before anything is attached.

use std::collections::HashMap;

use chaos_common::{
    hook::{self, Hook},
    ops::{Mechanism, Rung},
};
use thiserror::Error;

use crate::{
    fault::{
        BackendChoice, Errno, InjectionKind, KernelFn, Op, When, delay::Delayed, net::PacketAction,
        ops,
    },
    kernel::{self, Finding},
};

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("--op {op} cannot be injected on this kernel: {explanation}")]
    Unsupported {
        op: &'static str,
        explanation: String,
    },
    #[error("no tracepoint syscalls:{event}: {reason}")]
    SyscallTracepoint { event: String, reason: String },
    #[error(
        "unknown syscall '{syscall}': the kernel's BTF has no function {function}; expected a syscall name such as fsync, write, openat"
    )]
    SyscallFunction { syscall: String, function: String },
    #[error("--syscall {syscall} cannot be failed on this kernel: {reason}")]
    SyscallOverride { syscall: String, reason: String },
    #[error("--kernel-fn {function} cannot be failed on this kernel: {reason}")]
    KernelFn { function: String, reason: String },
    #[error("bios cannot be failed on this kernel: {reason}")]
    DiskError { reason: String },
    #[error(
        "--after, --every and --count number the calls across CPUs with BPF atomics, which this kernel lacks; to enable: kernel >= 5.12 (--probability works without them)"
    )]
    NoAtomics,
    #[error(
        "a detached run cannot keep {what} without its loader on this kernel: they attach through perf events, which bpffs pins only as BPF links; to enable: kernel >= 5.15 (or run without --detach)"
    )]
    NotDetachable { what: &'static str },
    #[error("a full filesystem cannot be shown to statfs() on this kernel: {reason}")]
    DiskFull { reason: String },
    #[error("reads cannot be corrupted on this kernel: {reason}")]
    CorruptIo { reason: String },
    #[error("clocks cannot be shifted on this kernel: {reason}")]
    Clock { reason: String },
    #[error("--backend fexit: syscalls cannot be delayed by fexit on this kernel: {reason}")]
    Delay { reason: String },
    #[error("--backend fentry: signals cannot be sent from fentry on this kernel: {reason}")]
    SignalFentry { reason: String },
    #[error("a {action} needs the fq qdisc, which this kernel lacks: {reason}")]
    NoFq {
        action: &'static str,
        reason: String,
    },
}

/// The rung chosen for each operation of a fault.
pub type Plan = Vec<(Op, &'static Rung)>;

/// What the planner asks of the kernel.
pub trait Kernel {
    /// Why `mechanism` cannot run here, or `None` when it can (asked once per mechanism).
    fn unsupported(&mut self, mechanism: Mechanism) -> Option<Finding>;
    /// Why `hook` cannot attach here though its mechanism can (the kernel lacks the function it
    /// runs on), or `None`.
    fn missing(&mut self, hook: Hook) -> Option<String>;
}

/// The running kernel, as `chaos probe` finds it.
pub struct Running {
    /// The fault's calls may fail with EPERM (its errno is EPERM, or `--accept-eperm`): cgroup
    /// hooks serve without `bpf_set_retval`, which is all they can do there.
    pub eperm_ok: bool,
}

impl Kernel for Running {
    fn unsupported(&mut self, mechanism: Mechanism) -> Option<Finding> {
        match mechanism {
            Mechanism::Lsm => kernel::lsm_unsupported(),
            Mechanism::FmodRet => kernel::fmod_ret_unsupported(),
            Mechanism::KprobeOverride => {
                Some(kernel::kprobe_override()).filter(|finding| !finding.supported)
            }
            Mechanism::Cgroup if kernel::set_retval() => None,
            Mechanism::Cgroup => {
                let finding = kernel::cgroup_sock_addr();
                match kernel::cgroup_eperm_unsupported() {
                    Some(_) => Some(finding),
                    None if self.eperm_ok => None,
                    None => Some(Finding {
                        detail: format!(
                            "cgroup hooks here can fail calls only with EPERM ({})",
                            finding.detail
                        ),
                        enable: Some(
                            "kernel >= 5.18 for bpf_set_retval; or --errno EPERM, or --accept-eperm to take EPERM for the errno asked".into(),
                        ),
                        ..finding
                    }),
                }
            }
        }
    }

    fn missing(&mut self, hook: Hook) -> Option<String> {
        kernel::hook_missing(hook)
    }
}

/// Picks, for each operation, the first rung that `choice` allows, that honours every filter in
/// `filters` (`FILTER_*` bits), whose mechanism `kernel` supports and whose hooks it has.
pub fn plan(
    ops: &[Op],
    filters: u32,
    choice: BackendChoice,
    kernel: &mut impl Kernel,
) -> Result<Plan, PlanError> {
    let mut ladder = Ladder {
        kernel,
        verdicts: HashMap::new(),
    };
    ops.iter()
        .map(|&op| {
            let (rung, passed) = ladder.climb(op, filters, choice);
            let reasons: Vec<String> = passed
                .into_iter()
                .map(|(mechanism, why)| format!("{}: {why}", mechanism.name()))
                .collect();
            rung.map(|rung| (op, rung)).ok_or(PlanError::Unsupported {
                op: op.name,
                explanation: reasons.join("; "),
            })
        })
        .collect()
}

/// Why a rung cannot serve here: its mechanism, and the reason.
pub type Refusal = (Mechanism, String);

/// Where an operation stands on its ladder on this kernel.
pub struct Step {
    pub op: Op,
    /// The rung it takes; none: it cannot be failed here.
    pub rung: Option<&'static Rung>,
    /// Why each rung it prefers cannot serve.
    pub refused: Vec<Refusal>,
}

/// For `chaos probe`: where every operation stands on its ladder on this kernel.
pub fn ladders(kernel: &mut impl Kernel) -> Vec<Step> {
    let mut ladder = Ladder {
        kernel,
        verdicts: HashMap::new(),
    };
    chaos_common::ops::OPS
        .iter()
        .map(|op| {
            let (rung, refused) = ladder.climb(op, 0, BackendChoice::Auto);
            Step { op, rung, refused }
        })
        .collect()
}

/// The kernel's verdicts on mechanisms, asked once each.
struct Ladder<'k, K> {
    kernel: &'k mut K,
    verdicts: HashMap<Mechanism, Option<Finding>>,
}

impl<K: Kernel> Ladder<'_, K> {
    /// The first rung of `op` that serves, and why each one before it cannot.
    fn climb(
        &mut self,
        op: Op,
        filters: u32,
        choice: BackendChoice,
    ) -> (Option<&'static Rung>, Vec<Refusal>) {
        let mut passed = Vec::new();
        for rung in op.rungs {
            if choice != BackendChoice::Auto && choice != BackendChoice::Only(rung.mechanism) {
                continue;
            }
            if filters & !rung.filters != 0 {
                passed.push((
                    rung.mechanism,
                    "its hooks do not see every filter given".to_owned(),
                ));
                continue;
            }
            let kernel = &mut self.kernel;
            let verdict = self
                .verdicts
                .entry(rung.mechanism)
                .or_insert_with(|| kernel.unsupported(rung.mechanism));
            if let Some(finding) = verdict {
                passed.push((rung.mechanism, finding.explain()));
                continue;
            }
            match rung
                .hooks
                .iter()
                .find_map(|&hook| self.kernel.missing(hook))
            {
                None => return (Some(rung), passed),
                Some(missing) => {
                    let needs = if rung.needs.is_empty() {
                        String::new()
                    } else {
                        format!("; to enable: {}", rung.needs)
                    };
                    passed.push((rung.mechanism, format!("{missing}{needs}")));
                }
            }
        }
        (None, passed)
    }
}

/// Checks that this kernel can count calls for the fault's rules (`--after`, `--every`,
/// `--count`): they need BPF atomics.
pub fn check_rules(when: &When) -> Result<(), PlanError> {
    let counts = when.after > 0 || when.every > 1 || when.count.is_some();
    if counts && !kernel::bpf_atomics() {
        return Err(PlanError::NoAtomics);
    }
    Ok(())
}

/// Checks that a detached run can pin the programs it needs: `perf_events` names those that
/// attach through perf events (tracepoints, kprobes), if any, which bpffs pins only as BPF
/// perf-event links (5.15).
pub fn check_detachable(perf_events: Option<&'static str>) -> Result<(), PlanError> {
    kernel::cache::give_aya();
    match perf_events {
        Some(what) if !aya::features().bpf_perf_link() => Err(PlanError::NotDetachable { what }),
        _ => Ok(()),
    }
}

/// Checks that this kernel can fail `syscall` at its entry function (a function of the
/// error-injection list) and picks how, as `choice` allows.
pub fn check_syscall_override(
    syscall: &str,
    choice: BackendChoice,
) -> Result<Mechanism, PlanError> {
    let covering = ops::covering(syscall)
        .map(|op| {
            format!(
                "; --op {} covers {syscall}() through another mechanism",
                op.name
            )
        })
        .unwrap_or_default();
    let refuse = |reason: String| PlanError::SyscallOverride {
        syscall: syscall.to_owned(),
        reason: format!("{reason}{covering}"),
    };
    if kernel::error_injection_count() == 0 {
        return Err(refuse(NO_ERROR_INJECTION.to_owned()));
    }
    let Some(function) = kernel::injectable_syscall_function(syscall) else {
        return Err(refuse(format!(
            "{} is not in /sys/kernel/debug/error_injection/list: unknown syscall, or one the kernel does not allow to fail",
            kernel::syscall_entry_function(syscall)
        )));
    };
    override_mechanism(choice, hook::FMOD_RET_OVERRIDE, &function, false).map_err(refuse)
}

/// Why neither fmod_ret nor kprobe-override can fail a function here, without the list.
const NO_ERROR_INJECTION: &str = "the kernel has no error-injection list (/sys/kernel/debug/error_injection/list), which fmod_ret and kprobe-override both need; to enable: CONFIG_FUNCTION_ERROR_INJECTION=y, and for kprobe-override CONFIG_BPF_KPROBE_OVERRIDE=y";

/// How `function` of the error-injection list is failed, as `choice` allows: fmod_ret where
/// its program (`fmod_ret_hook`, tried here on its own function) loads and `function` is in the
/// kernel's BTF (first, as on the operations' ladder: a trampoline costs less than a kprobe),
/// else a kprobe with bpf_override_return. `fails_with_null`: the function fails by returning
/// NULL, which an fmod_ret program cannot (its 0 lets the function run).
fn override_mechanism(
    choice: BackendChoice,
    fmod_ret_hook: Hook,
    function: &str,
    fails_with_null: bool,
) -> Result<Mechanism, String> {
    let fmod_ret = || {
        if fails_with_null {
            return Err(
                "fmod_ret cannot fail a function that fails by returning NULL (its 0 lets the function run)"
                    .to_owned(),
            );
        }
        if let Some(reason) = kernel::trampolines_refused(&[fmod_ret_hook]) {
            return Err(format!("fmod_ret: {reason}"));
        }
        if !kernel::in_kernel_btf(function) {
            return Err(format!("fmod_ret: {function} is not in the kernel's BTF"));
        }
        Ok(Mechanism::FmodRet)
    };
    let kprobe = || {
        let finding = kernel::kprobe_override();
        if finding.supported {
            Ok(Mechanism::KprobeOverride)
        } else {
            Err(finding.explain())
        }
    };
    match choice {
        BackendChoice::Only(Mechanism::FmodRet) => fmod_ret(),
        BackendChoice::Only(Mechanism::KprobeOverride) => kprobe(),
        _ => fmod_ret()
            .or_else(|fmod_ret| kprobe().map_err(|kprobe| format!("{kprobe}; {fmod_ret}"))),
    }
}

/// Checks that this kernel can fail `function` (`--kernel-fn`) with `errno` and picks how, as
/// `choice` allows: the function in the error-injection list with a type that fits `errno`,
/// and for an allocation function where its gfp flags say `__GFP_NOFAIL`. Fills in what the
/// list says.
pub fn check_kernel_fn(
    function: &mut KernelFn,
    errno: Option<Errno>,
    choice: BackendChoice,
) -> Result<Mechanism, PlanError> {
    let name = function.name.clone();
    let refuse = |reason: String| PlanError::KernelFn {
        function: name.clone(),
        reason,
    };
    if kernel::error_injection_count() == 0 {
        return Err(refuse(NO_ERROR_INJECTION.to_owned()));
    }
    let Some(kind) = kernel::error_injection_kind(&function.name) else {
        return Err(refuse(format!(
            "not in the kernel's error-injection list (/sys/kernel/debug/error_injection/list, {} functions{})",
            kernel::error_injection_count(),
            kernel::error_injection_examples()
        )));
    };
    match (kind.takes_errno(), errno) {
        (true, None) => {
            return Err(refuse(
                "it returns an errno: give --errno (EIO, ENOMEM, a number)".to_owned(),
            ));
        }
        (false, Some(_)) => {
            return Err(refuse(
                "it returns NULL or true when it fails, not an errno: drop --errno".to_owned(),
            ));
        }
        _ => {}
    }
    if let Some(caller) = &function.caller {
        let (start, end) = kernel::function_range(caller)
            .map_err(|reason| refuse(format!("--caller {caller}: {reason}")))?;
        function.filter.caller_start = start;
        function.filter.caller_end = end;
    }
    if let Some(arg) = kernel::gfp_argument(&function.name) {
        let (may_sleep, no_fail) = kernel::gfp_bits().map_err(|err| refuse(err.to_string()))?;
        function.filter.gfp_arg = arg;
        function.filter.gfp_needs = may_sleep;
        function.filter.gfp_refuses = no_fail;
    }
    let fails_with_null = kind == InjectionKind::Null;
    let mechanism = override_mechanism(
        choice,
        hook::FMOD_RET_OVERRIDE,
        &function.name,
        fails_with_null,
    )
    .map_err(refuse)?;
    function.kind = Some(kind);
    Ok(mechanism)
}

/// Checks that bios can be failed here (`should_fail_bio` in the kernel's error-injection list)
/// and picks how, as `choice` allows: fmod_ret where trampolines load, else the kprobe.
pub fn check_bio_override(choice: BackendChoice) -> Result<Mechanism, PlanError> {
    let function = hook::BIO_FUNCTION;
    let refuse = |reason: String| PlanError::DiskError { reason };
    if kernel::error_injection_count() == 0 {
        return Err(refuse(NO_ERROR_INJECTION.to_owned()));
    }
    if !kernel::error_injectable(function) {
        return Err(refuse(format!(
            "{function} is not in /sys/kernel/debug/error_injection/list (kernel >= 5.12 has it)"
        )));
    }
    override_mechanism(choice, hook::BIO_ERROR_FMOD_RET, function, false).map_err(refuse)
}

/// Checks that a target's statfs() results can be rewritten (by fexit, or else at the
/// syscalls' exit tracepoints).
pub fn check_statfs_rewrite(fexit: bool) -> Result<(), PlanError> {
    let check = if fexit {
        check_write_user()
    } else {
        check_rewrite(["statfs", "fstatfs"])
    };
    check.map_err(|reason| PlanError::DiskFull { reason })
}

/// Checks that a target's read() results can be corrupted.
pub fn check_read_corruption() -> Result<(), PlanError> {
    check_rewrite(["read", "pread64"]).map_err(|reason| PlanError::CorruptIo { reason })
}

/// Checks that what the clock syscalls return to a target can be shifted, and its vDSO
/// withheld: `bpf_probe_write_user` first (the reason a locked-down kernel gives), then the
/// trampolines of the fexit programs and the exec program with the kernel's BTF.
pub fn check_clock() -> Result<(), PlanError> {
    let refuse = |reason| PlanError::Clock { reason };
    check_write_user().map_err(refuse)?;
    let mut hooks = chaos_common::hook::CLOCK_FEXIT.to_vec();
    hooks.extend(chaos_common::hook::CLOCK_SLEEP);
    hooks.push(chaos_common::hook::CLOCK_EXEC);
    match kernel::trampolines_refused(&hooks) {
        Some(reason) => Err(refuse(reason)),
        None => Ok(()),
    }
}

/// Why what `syscalls` return to a target cannot be rewritten at their exit here, if so: their
/// tracepoints, and `bpf_probe_write_user`.
fn check_rewrite(syscalls: [&str; 2]) -> Result<(), String> {
    for syscall in syscalls {
        check_syscall_tracepoint(syscall).map_err(|err| err.to_string())?;
    }
    check_write_user()
}

/// Why a program cannot write a target's memory here (lockdown), if so.
fn check_write_user() -> Result<(), String> {
    let finding = kernel::probe_write_user();
    if !finding.supported {
        return Err(finding.explain());
    }
    Ok(())
}

/// The syscalls of a delay this kernel has (with `fexit`, a function in its BTF; else
/// tracepoints, each syscall having `sys_enter_` and `sys_exit_` events): every one named, or an
/// operation's that exist here (`creat` and `open` are not on every architecture), at least one.
pub fn delay_syscalls(delayed: &Delayed, fexit: bool) -> Result<Vec<String>, PlanError> {
    let check = |syscall: &str| {
        if fexit {
            check_syscall_function(syscall)
        } else {
            check_syscall_tracepoint(syscall)
        }
    };
    let mut found = Vec::new();
    let mut missing = None;
    for syscall in delayed.syscalls() {
        match check(&syscall) {
            Ok(()) => found.push(syscall),
            Err(err) if matches!(delayed, Delayed::Syscalls(_)) => return Err(err),
            Err(err) => missing = Some(err),
        }
    }
    match missing {
        Some(err) if found.is_empty() => Err(err),
        _ => Ok(found),
    }
}

/// Checks that the kernel's BTF has `syscall`'s entry function, which fentry and fexit programs
/// go on.
pub fn check_syscall_function(syscall: &str) -> Result<(), PlanError> {
    let function = crate::kernel::syscall_entry_function(syscall);
    if kernel::has_function(&function) {
        Ok(())
    } else {
        Err(PlanError::SyscallFunction {
            syscall: syscall.to_owned(),
            function,
        })
    }
}

/// Checks that `syscalls:sys_enter_SYSCALL` exists, naming the kernel option when no syscall has
/// one.
pub fn check_syscall_tracepoint(syscall: &str) -> Result<(), PlanError> {
    let event = format!("sys_enter_{syscall}");
    let missing = |reason: String| PlanError::SyscallTracepoint {
        event: event.clone(),
        reason,
    };
    match kernel::syscall_tracepoint(&event) {
        kernel::Tracepoint::Exists => Ok(()),
        kernel::Tracepoint::NoSyscallEvents => Err(missing(
            "this kernel has no syscall tracepoints; to enable: CONFIG_FTRACE_SYSCALLS=y".into(),
        )),
        kernel::Tracepoint::Unknown(dir) => Err(missing(format!(
            "unknown syscall; expected a name from {dir} without the sys_enter_ prefix, such as fsync, write, openat"
        ))),
    }
}

/// Checks that this kernel has what the packet `action` needs beyond TC programs: fq for the
/// actions that time departures.
pub fn check_packet_action(action: PacketAction) -> Result<(), PlanError> {
    if !action.needs_fq() {
        return Ok(());
    }
    let fq = kernel::sch_fq_finding();
    if fq.supported {
        Ok(())
    } else {
        Err(PlanError::NoFq {
            action: action.name(),
            reason: fq.explain(),
        })
    }
}

#[cfg(test)]
mod tests {
    use chaos_common::ops::{FILTER_FAMILY, FILTER_PATH, FILTER_UNIX};

    use super::*;
    use crate::fault::parse_op;

    /// A kernel that refuses the mechanisms `refuses` says and has every hook.
    struct Fake(fn(Mechanism) -> Option<Finding>);

    impl Kernel for Fake {
        fn unsupported(&mut self, mechanism: Mechanism) -> Option<Finding> {
            self.0(mechanism)
        }

        fn missing(&mut self, _hook: Hook) -> Option<String> {
            None
        }
    }

    fn refused(mechanism: Mechanism) -> Option<Finding> {
        Some(Finding {
            feature: "trampoline",
            supported: false,
            detail: format!("{} refused", mechanism.name()),
            enable: Some("a better kernel".into()),
        })
    }

    /// A production kernel: `bpf` is not in the active LSM list, trampolines work.
    fn no_lsm(mechanism: Mechanism) -> Option<Finding> {
        (mechanism == Mechanism::Lsm)
            .then(|| refused(mechanism))
            .flatten()
    }

    /// A kernel that refuses trampolines: neither BPF LSM nor fmod_ret.
    fn no_trampolines(mechanism: Mechanism) -> Option<Finding> {
        matches!(mechanism, Mechanism::Lsm | Mechanism::FmodRet)
            .then(|| refused(mechanism))
            .flatten()
    }

    fn ops(names: &[&str]) -> Vec<Op> {
        names.iter().map(|name| parse_op(name).unwrap()).collect()
    }

    #[test]
    fn picks_the_most_complete_supported_rung() {
        let all = plan(
            &ops(&["send", "connect"]),
            0,
            BackendChoice::Auto,
            &mut Fake(|_| None),
        )
        .unwrap();
        assert_eq!(all[0].1.mechanism, Mechanism::Lsm, "send prefers LSM");
        assert_eq!(
            all[1].1.mechanism,
            Mechanism::Cgroup,
            "connect prefers cgroup"
        );
        let fmod_ret = plan(
            &ops(&["open", "send"]),
            0,
            BackendChoice::Auto,
            &mut Fake(no_lsm),
        )
        .unwrap();
        assert!(
            fmod_ret
                .iter()
                .all(|(_, rung)| rung.mechanism == Mechanism::FmodRet),
            "without BPF LSM, the same programs as fmod_ret"
        );
        let plan = plan(
            &ops(&["send", "socket"]),
            0,
            BackendChoice::Auto,
            &mut Fake(no_trampolines_nor_kprobes),
        )
        .unwrap();
        assert!(
            plan.iter()
                .all(|(_, rung)| rung.mechanism == Mechanism::Cgroup)
        );
        assert!(
            plan[0].1.only.contains("UDP"),
            "the narrower coverage is said"
        );
    }

    #[test]
    fn a_rung_that_cannot_honour_a_filter_is_skipped() {
        let unix = FILTER_FAMILY | FILTER_UNIX;
        let plan = plan(
            &ops(&["connect"]),
            unix,
            BackendChoice::Auto,
            &mut Fake(|_| None),
        )
        .unwrap();
        assert_eq!(
            plan[0].1.mechanism,
            Mechanism::Lsm,
            "only LSM sees UNIX sockets"
        );
        let err = super::plan(
            &ops(&["connect"]),
            unix,
            BackendChoice::Auto,
            &mut Fake(no_trampolines),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cgroup: its hooks do not see")
                && err.contains("lsm refused")
                && err.contains("fmod_ret refused"),
            "{err}"
        );
    }

    /// Nothing that fails a file operation: no trampolines, no kprobe override.
    fn no_trampolines_nor_kprobes(mechanism: Mechanism) -> Option<Finding> {
        no_trampolines(mechanism)
            .or_else(|| (mechanism == Mechanism::KprobeOverride).then(|| refused(mechanism))?)
    }

    #[test]
    fn operations_fall_back_to_their_syscalls_without_trampolines() {
        let plan = plan(
            &ops(&["open", "fork", "stat", "listen", "send"]),
            0,
            BackendChoice::Auto,
            &mut Fake(no_trampolines),
        )
        .unwrap();
        for (op, rung) in &plan {
            assert_eq!(rung.mechanism, Mechanism::KprobeOverride, "{}", op.name);
            let Hook::OpOverride { syscalls, .. } = rung.hooks[0] else {
                panic!("{}: not a kprobe on its syscalls", op.name)
            };
            assert!(
                syscalls.iter().all(|s| op.syscalls.contains(s)),
                "{}: {syscalls:?}",
                op.name
            );
            assert!(rung.only.contains("at their entry"), "{}", rung.only);
        }
        let cgroup = super::plan(
            &ops(&["connect"]),
            0,
            BackendChoice::Auto,
            &mut Fake(no_trampolines),
        )
        .unwrap();
        assert_eq!(
            cgroup[0].1.mechanism,
            Mechanism::Cgroup,
            "connect's cgroup rung comes first"
        );
        let err = super::plan(
            &ops(&["open"]),
            FILTER_PATH,
            BackendChoice::Auto,
            &mut Fake(no_trampolines),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("kprobe-override: its hooks do not see every filter given"),
            "a kprobe at syscall entry sees no path: {err}"
        );
    }

    #[test]
    fn an_op_without_a_usable_rung_names_every_reason() {
        let err = plan(
            &ops(&["open"]),
            0,
            BackendChoice::Auto,
            &mut Fake(no_trampolines_nor_kprobes),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--op open")
                && err.contains("lsm refused")
                && err.contains("kprobe-override refused")
                && err.contains("a better kernel"),
            "{err}"
        );
    }
}

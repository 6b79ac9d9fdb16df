//! `chaos fail`: calls of a target fail with an errno.

use chaos_common::{fault::KernelFnFilter, ops::Mechanism};
use clap::Args;

use crate::{
    cli::{RunArgs, TargetArgs, error::Error, require_privileges},
    fault::{self, BackendChoice, Errno, ErrnoFault, KernelFn, Op, SocketFilter, ops},
    plan,
    run::{self, CallsFault},
};

/// Make calls of a process fail with an errno, for a while.
///
/// Every thread of the process is a target; other processes, even ones that open the same files
/// or connect to the same address, are untouched. The fault ends when --for elapses, on Ctrl-C,
/// SIGTERM or SIGHUP, or when the process exits; the programs also stop injecting on their own
/// at the deadline. The report gives, per operation, the calls matched and the calls failed.
///
/// The operations and the mechanisms that can fail each are listed below; `chaos probe` says
/// which mechanisms this kernel offers.
///
/// Examples:
///   chaos fail --pid 4242 --op connect --errno ECONNREFUSED --for 30s
///   chaos fail --pid 4242 --op open --errno EIO --for 1m30s --json
///   chaos fail --pid 4242 --op open,connect --errno 5 --for 10s --dry-run
///   chaos fail --pid 4242 --op write --errno ENOSPC --after 100 --every 10 --count 5
///   chaos fail --pid 4242 --op connect --errno ETIMEDOUT --probability 0.1 --for 5m
///   chaos fail --pid 4242 --syscall fsync --errno EIO --count 1
///   chaos fail --pid 4242 --kernel-fn should_failslab --errno ENOMEM --probability 0.01
///   chaos fail --cgroup /system.slice/app.service --op connect --port 5432 --errno ECONNREFUSED
///
/// Which calls fail (compare strace -e inject=SYSCALL:error=E:when=FIRST..LAST+STEP): calls the
/// fault covers are numbered in order across all CPUs; the first --after pass; of the rest,
/// every --every-th is a candidate; a candidate fails with --probability; after --count
/// failures, every call passes. matched in the report counts every covered call.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment, after_long_help = ops::help())]
pub struct FailArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    /// Operations to fail, comma-separated (see the list below).
    #[arg(long, required_unless_present_any = ["syscall", "kernel_fn"], value_delimiter = ',', value_parser = fault::parse_op)]
    pub op: Vec<Op>,

    /// One syscall to fail by name (fsync, renameat2…) at its entry function: any syscall the
    /// kernel allows error injection for (CONFIG_FUNCTION_ERROR_INJECTION), through fmod_ret
    /// where trampolines load, else a kprobe with bpf_override_return
    /// (CONFIG_BPF_KPROBE_OVERRIDE).
    #[arg(long, value_name = "NAME", value_parser = fault::parse_syscall)]
    pub syscall: Option<String>,

    /// One kernel function to fail by name, for the target's calls only: any function of the
    /// kernel's error-injection list (/sys/kernel/debug/error_injection/list), such as
    /// should_failslab (the target's slab allocations fail: its syscalls get ENOMEM) or
    /// open_ctree. Functions of type ERRNO and ERRNO_NULL return -(--errno); NULL and TRUE
    /// ones take no --errno. Allocations with __GFP_NOFAIL never fail. Through fmod_ret where
    /// trampolines load (not for NULL ones), else a kprobe with bpf_override_return
    /// (CONFIG_BPF_KPROBE_OVERRIDE).
    #[arg(long, value_name = "NAME", value_parser = fault::parse_kernel_fn, conflicts_with = "syscall")]
    pub kernel_fn: Option<String>,

    /// With --kernel-fn: only calls made with kernel function FN on the kernel stack (the
    /// innermost 64 frames), such as do_fsync or ext4_sync_file. Inlined and tail-called
    /// functions never appear on a stack; the compiler's copies carry suffixes
    /// (name.constprop.0), which FN must then include.
    #[arg(long, value_name = "FN", value_parser = fault::parse_kernel_fn, requires = "kernel_fn")]
    pub caller: Option<String>,

    /// Only calls to (connect, send) or on (bind) this port. send: only calls that name a
    /// destination (sendto, sendmsg with an address).
    #[arg(long, value_parser = fault::parse_port)]
    pub port: Option<u16>,

    /// Only calls to (connect, send) or on (bind) an address in this network: 10.0.0.5,
    /// 10.0.0.0/8, 2001:db8::/32. An IPv4 network also matches IPv4-mapped IPv6 addresses.
    #[arg(long, value_name = "CIDR", value_parser = fault::parse_cidr)]
    pub addr: Option<fault::Cidr>,

    /// Only calls on files at or below this directory (or on this one file), on the same
    /// filesystem: the data directory of a database, say. File operations only (lsm or
    /// fmod_ret: a kprobe at a syscall's entry sees no path).
    #[arg(long, value_name = "PATH", value_parser = fault::parse_path_filter)]
    pub path: Option<fault::PathFilter>,

    /// Only calls on sockets of this address family: inet, inet6 or unix (unix needs the LSM
    /// mechanism: cgroup hooks never see UNIX sockets).
    #[arg(long, value_parser = fault::parse_family)]
    pub family: Option<u32>,

    /// The errno the calls fail with: a name (EIO, ECONNREFUSED) or a number (1-4095).
    #[arg(long)]
    pub errno: Option<Errno>,

    #[command(flatten)]
    pub run: RunArgs,

    /// Which mechanism fails the calls: auto (the most complete one this kernel offers), lsm,
    /// fmod_ret, cgroup or kprobe-override for --op (the ones each operation has: `chaos
    /// probe`); fmod_ret or kprobe-override for --syscall and --kernel-fn. The report names the
    /// one used.
    #[arg(long, default_value = "auto")]
    pub backend: BackendChoice,

    /// Where the only mechanism left for an operation can fail calls only with EPERM (cgroup
    /// hooks on kernels before 5.18, without bpf_set_retval), use it: those calls fail with
    /// EPERM, not --errno, and the report says so. Without it such a fault is refused.
    #[arg(long)]
    pub accept_eperm: bool,
}

impl FailArgs {
    /// The fault these arguments ask for, checked as far as that is possible without the kernel
    /// and the targets: each operation has a mechanism that honours the filters (one of
    /// `--backend`'s, when it names one).
    pub fn fault(&self) -> Result<ErrnoFault, fault::ParseError> {
        let mut ops = self.op.clone();
        ops.sort_by_key(|op| op.code);
        ops.dedup();
        let fault = ErrnoFault {
            ops,
            errno: self.errno,
            dry_run: self.run.dry_run,
            when: self.run.when(),
            syscall: self.syscall.clone(),
            kernel_fn: self.kernel_fn.clone().map(|name| KernelFn {
                name,
                kind: None,
                caller: self.caller.clone(),
                filter: KernelFnFilter::default(),
            }),
            override_with: None,
            filter: SocketFilter {
                port: self.port,
                addr: self.addr,
                family: self.family,
            },
            path: self.path.clone(),
        };
        fault.check()?;
        ops::check_backend(&fault.ops, fault.filter_bits(), self.backend)?;
        if let BackendChoice::Only(mechanism) = self.backend
            && fault.ops.is_empty()
            && override_backend(self.backend) == BackendChoice::Auto
        {
            return Err(fault::ParseError::BackendNotOverriding(mechanism.name()));
        }
        Ok(fault)
    }
}

/// What `--backend` asks of `--syscall` and `--kernel-fn`: fmod_ret or kprobe-override when it
/// names one, else whichever this kernel offers (the other names are the operations').
fn override_backend(choice: BackendChoice) -> BackendChoice {
    match choice {
        BackendChoice::Only(Mechanism::FmodRet | Mechanism::KprobeOverride) => choice,
        _ => BackendChoice::Auto,
    }
}

pub fn execute(args: FailArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    let mut fault = args.fault()?;
    require_privileges()?;
    let targets = args.targets.resolve(args.run.force)?;
    let eperm_ok = fault.errno.is_some_and(|e| e.get() == libc::EPERM) || args.accept_eperm;
    let plan = plan::plan(
        &fault.ops,
        fault.filter_bits(),
        args.backend,
        &mut plan::Running { eperm_ok },
    )?;
    plan::check_rules(&fault.when)?;
    let choice = override_backend(args.backend);
    if let Some(syscall) = &fault.syscall {
        fault.override_with = Some(plan::check_syscall_override(syscall, choice)?);
    }
    if let Some(function) = &mut fault.kernel_fn {
        fault.override_with = Some(plan::check_kernel_fn(function, fault.errno, choice)?);
    }
    if args.run.detach {
        let kprobe = fault.override_with == Some(Mechanism::KprobeOverride)
            || plan
                .iter()
                .any(|(_, rung)| rung.mechanism == Mechanism::KprobeOverride);
        plan::check_detachable(kprobe.then_some("the overriding kprobes"))?;
    }
    let calls: Vec<String> = fault
        .ops
        .iter()
        .map(|op| op.name.to_owned())
        .chain(fault.syscall.iter().map(|syscall| format!("{syscall}()")))
        .chain(
            fault
                .kernel_fn
                .iter()
                .map(|function| format!("{}()", function.name)),
        )
        .collect();
    eprintln!(
        "chaos: failing {} of {} with {} for {}{}{}",
        calls.join(","),
        targets.describe(),
        fault.failure(),
        humantime::format_duration(args.run.duration),
        if fault.dry_run { ", dry run" } else { "" },
        args.run.how_it_ends(),
    );
    let calls_fault = CallsFault::errno(&fault, plan);
    args.run.run_or_detach(&targets, &calls_fault)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["chaos"].iter().chain(args))
    }

    #[test]
    fn parses_a_full_fail_command() {
        let cli = parse(&[
            "fail",
            "--pid",
            "42",
            "--op",
            "open,connect",
            "--errno",
            "EIO",
            "--for",
            "1m30s",
            "--json",
        ])
        .unwrap();
        let Command::Fail(args) = cli.command else {
            panic!("not fail")
        };
        assert_eq!(args.targets.pid, [42]);
        assert_eq!(args.op.len(), 2);
        assert_eq!(args.errno.map(crate::fault::Errno::get), Some(libc::EIO));
        assert_eq!(args.run.duration.as_secs(), 90);
        assert!(args.run.json);
    }

    #[test]
    fn bad_input_exits_2_naming_the_value() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["fail", "--pid", "1", "--op", "open", "--errno", "EFOO"],
                "EFOO",
            ),
            (&["fail", "--pid", "1", "--op", "open", "--errno", "0"], "0"),
            (
                &["fail", "--pid", "0", "--op", "open", "--errno", "EIO"],
                "'0'",
            ),
            (
                &[
                    "fail", "--pid", "1", "--op", "open", "--errno", "EIO", "--for", "-1s",
                ],
                "-1s",
            ),
            (
                &[
                    "fail", "--pid", "1", "--op", "open", "--errno", "EIO", "--for", "0",
                ],
                "'0'",
            ),
            (
                &["fail", "--pid", "1", "--op", "frob", "--errno", "EIO"],
                "frob",
            ),
            (&["fail", "--op", "open", "--errno", "EIO"], "--pid"),
            (
                &["fail", "--force", "--op", "open", "--errno", "EIO"],
                "--pid",
            ),
        ];
        for (args, named) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let message = err.to_string();
            assert!(message.contains(named), "{args:?}: {message}");
        }
    }

    /// `--backend` names one of the two ways to fail --syscall and --kernel-fn, and the
    /// operations' mechanisms only where there are operations.
    #[test]
    fn backends_for_syscalls_and_operations_are_told_apart() {
        let fault = |args: &[&str]| {
            let mut full = vec!["fail", "--pid", "1", "--errno", "EIO"];
            full.extend_from_slice(args);
            let Command::Fail(args) = parse(&full).expect("parses").command else {
                panic!("not fail")
            };
            args.fault().map_err(|err| err.to_string())
        };
        for backend in ["fmod_ret", "kprobe-override", "auto"] {
            assert!(fault(&["--syscall", "fsync", "--backend", backend]).is_ok());
        }
        let err = fault(&["--syscall", "fsync", "--backend", "lsm"]).unwrap_err();
        assert!(
            err.contains("--backend lsm cannot fail a kernel function"),
            "{err}"
        );
        assert!(fault(&["--op", "open", "--backend", "kprobe-override"]).is_ok());
        let err = fault(&["--op", "open", "--backend", "cgroup"]).unwrap_err();
        assert!(
            err.contains("--backend cgroup cannot fail --op open"),
            "{err}"
        );
        // With operations, lsm is theirs, and the syscall's way is left to the kernel.
        assert!(fault(&["--op", "open", "--syscall", "fsync", "--backend", "lsm"]).is_ok());
    }
}

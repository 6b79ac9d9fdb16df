//! `chaos corrupt-io`: bits of the data a target reads are flipped on their way to it.

use clap::{Args, ValueEnum};

use chaos_common::fault::CorruptFilter;

use crate::{
    cli::{RunArgs, SyscallBackend, TargetArgs, error::Error, require_privileges},
    fault::{ErrnoFault, ParseError, PathFilter, SocketFilter, parse_path_filter},
    plan,
    run::{self, CallsFault},
};

/// Bits of what a target reads are flipped on their way to it, as by a bad disk, cable or
/// memory that no checksum caught.
///
/// Each read(), pread64(), readv(), preadv() or preadv2() of a target that returns data has
/// --bits bits flipped, one per byte in distinct bytes spread over what it read; the file, the
/// page cache and every other process's reads are untouched. With --short instead, each
/// readv(), preadv() and preadv2() returns fewer bytes than asked (1 to N-1 of N), as a real
/// short read does: its iovecs' lengths are cut as the call enters and put back as soon as the
/// kernel has copied them, so the caller never sees them changed. With --path, only reads of
/// the files at or below it. Needs bpf_probe_write_user (refused under lockdown=integrity and
/// confidentiality), and fexit programs (kernels that load trampolines) or else syscall
/// tracepoints (CONFIG_FTRACE_SYSCALLS: read and pread64 only); --short needs trampolines.
/// Not covered: mmap'd files, io_uring, short read() and pread64() (their count is a register,
/// which a program cannot change). Written data is not corrupted: flipping bits in a writer's
/// buffer would change its memory, which it could see after the call.
///
/// Examples:
///   chaos corrupt-io --pid 4242 --path /var/lib/app/data --for 30s
///   chaos corrupt-io --container db --bits 8 --probability 0.01 --for 5m --json
///   chaos corrupt-io --pid 4242 --short --probability 0.5 --for 1m
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CorruptIoArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    /// What is corrupted: read (the data read() and pread64() return).
    #[arg(long, value_enum, default_value = "read")]
    pub op: CorruptOp,

    /// Only reads of the files at or below this directory (or of this one file).
    #[arg(long, value_name = "PATH", value_parser = parse_path_filter)]
    pub path: Option<PathFilter>,

    /// How the reads are caught: fexit programs on the syscalls' functions (only those calls
    /// pay), or syscall tracepoints (every syscall of the machine then takes the kernel's slow
    /// path); auto: fexit where trampolines load.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: SyscallBackend,

    /// readv(), preadv() and preadv2() return fewer bytes than asked instead (no bit flipped).
    #[arg(long, conflicts_with = "bits")]
    pub short: bool,

    /// Bits flipped in each read, each in its own byte (fewer when fewer bytes were read).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(chaos_common::fault::MAX_CORRUPT_BITS)))]
    pub bits: u32,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CorruptOp {
    Read,
}

impl CorruptIoArgs {
    /// The filters and rules of the fault, as a fault on calls without operations of its own.
    pub fn fault(&self) -> Result<ErrnoFault, ParseError> {
        if self.short && self.backend == SyscallBackend::Tracepoint {
            return Err(ParseError::ShortNeedsTrampolines);
        }
        let fault = ErrnoFault {
            ops: Vec::new(),
            errno: None,
            dry_run: self.run.dry_run,
            when: self.run.when(),
            syscall: None,
            kernel_fn: None,
            override_with: None,
            filter: SocketFilter::default(),
            path: self.path.clone(),
        };
        fault.check()?;
        Ok(fault)
    }
}

pub fn execute(args: CorruptIoArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    let fault = args.fault()?;
    require_privileges()?;
    let targets = args.targets.resolve(args.run.force)?;
    plan::check_rules(&fault.when)?;
    let refuse = |reason: String| plan::PlanError::CorruptIo { reason };
    let hooks: &[_] = if args.short {
        &chaos_common::hook::CORRUPT_SHORT
    } else {
        &chaos_common::hook::CORRUPT_READ_FEXIT
    };
    let fexit = args.backend.fexit(hooks).map_err(refuse)?;
    if args.short && !fexit {
        let reason = crate::kernel::trampolines_refused(hooks)
            .unwrap_or_else(|| "this kernel refuses trampoline programs".to_owned());
        return Err(refuse(format!("--short needs trampolines: {reason}")).into());
    }
    if !fexit {
        plan::check_read_corruption()?;
        if args.run.detach {
            plan::check_detachable(Some("the read tracepoints"))?;
        }
    }
    let filter =
        crate::kernel::corrupt_filter(args.bits, fault.path.is_some(), !fexit).map_err(refuse)?;
    let filter = CorruptFilter {
        short: u32::from(args.short),
        ..filter
    };
    let what = if args.short {
        "shortening the readv() calls".to_owned()
    } else {
        format!("flipping {} bit(s) in each read", args.bits)
    };
    eprintln!(
        "chaos: {what} of {}{} for {}{}{}",
        targets.describe(),
        fault
            .path
            .as_ref()
            .map(|path| format!(" below {}", path.path.display()))
            .unwrap_or_default(),
        humantime::format_duration(args.run.duration),
        if fault.dry_run { ", dry run" } else { "" },
        args.run.how_it_ends(),
    );
    let calls_fault = CallsFault::corrupt_read(&fault, filter, fexit);
    args.run.run_or_detach(&targets, &calls_fault)
}

//! `chaos disk`: failures of a block device.

use chaos_common::ops::Mechanism;
use clap::{Args, Subcommand};

use crate::{
    cli::{
        HeldArgs, RunArgs, SyscallBackend, TargetArgs,
        error::{Error, exit},
        how_it_ends, require_privileges,
    },
    fault::{
        BackendChoice, Errno, ErrnoFault, ParseError, PathFilter, SocketFilter, When,
        disk::{Device, DeviceArg, DiskFault, DiskOp, Sectors, Whose},
        ops::parse_override_backend,
        parse_op, parse_path_filter,
    },
    pause::Pausable,
    plan,
    run::{self, CallsFault, RunError},
    target::Targets,
};

/// Make a block device fail for a while, cut its power under a target, or show a target a full
/// filesystem.
///
/// Examples:
///   chaos disk error --device /dev/loop0 --op write --for 10s
///   chaos disk error --device 8:16 --op write,flush --probability 0.01 --for 5m --json
///   chaos disk error --device /dev/sdb1 --sector 2048-4095 --count 1
///   chaos disk cut --device /dev/loop0 --container db --for 30s
///   chaos disk full --container db --path /var/lib/postgresql --for 1m
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DiskArgs {
    #[command(subcommand)]
    pub action: DiskAction,
}

#[derive(Debug, Subcommand)]
pub enum DiskAction {
    Error(DiskErrorArgs),
    Cut(DiskCutArgs),
    Full(DiskFullArgs),
}

/// The target's filesystem is full: its writes below a path fail with ENOSPC, and statfs() of
/// that filesystem reports no free blocks, to the target alone.
///
/// write() (writev, pwrite…) on files at or below --path, and mkdir() and symlink() there, fail
/// with ENOSPC as on a full disk (BPF LSM, as `chaos fail --op write --path`); statfs() and
/// fstatfs() of the filesystem --path is on return f_bfree and f_bavail 0 (what df and
/// Python's shutil.disk_usage read; fexit programs where trampolines load, else syscall
/// tracepoints, and bpf_probe_write_user, which lockdown=integrity refuses). Nothing is written to the disk, and every other process sees
/// the filesystem as it is. Not covered: opening or creating files, truncate, fallocate, and
/// memory-mapped writes, which a real full disk can also fail.
///
/// Examples:
///   chaos disk full --container db --path /var/lib/postgresql --for 1m
///   chaos disk full --pid 4242 --path /data --probability 0.5 --for 30s --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DiskFullArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    /// The directory (or file) whose writes fail: at or below it; statfs() of its filesystem
    /// reports it full.
    #[arg(long, value_name = "PATH", value_parser = parse_path_filter)]
    pub path: PathFilter,

    /// How statfs() and fstatfs() are caught: fexit programs on the syscalls' functions (only
    /// those calls pay), or syscall tracepoints (every syscall of the machine then takes the
    /// kernel's slow path); auto: fexit where trampolines load.
    #[arg(long, value_enum, default_value = "auto")]
    pub statfs_backend: SyscallBackend,

    #[command(flatten)]
    pub run: RunArgs,
}

/// What a full filesystem fails: the writes of data and the new names that need a block.
const FULL_OPS: [&str; 3] = ["write", "mkdir", "symlink"];

impl DiskFullArgs {
    /// The errno part of the fault: ENOSPC on the full filesystem's operations below --path.
    pub fn fault(&self) -> Result<ErrnoFault, ParseError> {
        let fault = ErrnoFault {
            ops: FULL_OPS
                .iter()
                .map(|name| parse_op(name))
                .collect::<Result<_, _>>()?,
            errno: Some(Errno::from_raw(libc::ENOSPC)),
            dry_run: self.run.dry_run,
            when: self.run.when(),
            syscall: None,
            kernel_fn: None,
            override_with: None,
            filter: SocketFilter::default(),
            path: Some(self.path.clone()),
        };
        fault.check()?;
        Ok(fault)
    }
}

/// A power cut for one disk: the target stops at one instant, and nothing it wrote after that
/// instant reaches the device.
///
/// At the cut the target is frozen (cgroup v2 freezer, or SIGSTOP), every write, flush and
/// discard bio to the device starts failing (also the kernel's own writeback of the target's
/// dirty pages: no process owns those), and the target is killed with SIGKILL. No process of
/// the target sees an error; what it had written but not yet synced is lost, as in a power cut
/// (a disk with a volatile write cache can lose more). Writes keep failing until --for ends,
/// so that the filesystem can be unmounted and the device's cache dropped (detach and attach a
/// loop device again) before it is mounted and the target's recovery tested. Reads still work.
/// Needs what `chaos disk error` needs.
///
/// Examples:
///   chaos disk cut --device /dev/loop0 --container db --for 30s
///   chaos disk cut --device 7:0 --pid-tree 4242 --for 1m --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DiskCutArgs {
    /// The block device: a path (/dev/sdb, /dev/loop0) or MAJOR:MINOR (8:16). A whole disk
    /// includes its partitions.
    #[arg(long, value_name = "DEV")]
    pub device: DeviceArg,

    #[command(flatten)]
    pub targets: TargetArgs,

    /// How the bios are failed on should_fail_bio: fmod_ret (where trampolines load) or
    /// kprobe-override; auto: fmod_ret first. The report names the one used.
    #[arg(long, default_value = "auto", value_parser = parse_override_backend)]
    pub backend: BackendChoice,

    #[command(flatten)]
    pub held: HeldArgs,
}

/// Bios to a block device complete with EIO, as from a failing disk.
///
/// The block layer fails the bio before any driver sees it (its should_fail_bio, which turns
/// any error into BLK_STS_IOERR, so the errno is always EIO): a write() into the page cache
/// still succeeds, and the error comes back from fsync() or as lost data when the cache is
/// dropped, as on real hardware. Without a target, every bio to the device matches, whoever
/// submits it: writeback kworkers, a journal's thread, direct I/O. Needs kernel >= 5.12 with
/// CONFIG_FUNCTION_ERROR_INJECTION, and trampolines (fmod_ret) or else kprobes with
/// CONFIG_BPF_KPROBE_OVERRIDE (see `chaos probe`).
///
/// Examples:
///   chaos disk error --device /dev/loop0 --op write --for 10s
///   chaos disk error --device 8:16 --op write,flush --probability 0.01 --for 5m --json
///   chaos disk error --device /dev/sdb1 --sector 2048-4095 --count 1
///
/// With a target, only the bios it submits itself fail: its reads, direct I/O, and the
/// writeback its own fsync() does. A cgroup target (--cgroup, --container, --pod) also loses
/// the kernel's background writeback of the pages it dirtied, where the kernel charges that
/// to the cgroup (cgroup writeback: the io and memory controllers enabled for it on cgroup
/// v2, and a filesystem that supports it, such as ext4 or btrfs); the start line says which.
/// A journal's commits and a block device's own pages (a filesystem's metadata) are the
/// kernel's and never fail under a target.
///
/// --op: read, write (a journal's commit blocks included), flush (bios carrying a cache
/// flush, REQ_PREFLUSH: fsync's and a journal's) and discard. A write that carries a flush
/// counts as a write when the fault covers writes.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
// A target is optional here: without one, every bio to the device.
#[command(mut_group("target", |group: clap::ArgGroup| group.required(false)))]
pub struct DiskErrorArgs {
    /// The block device: a path (/dev/sdb, /dev/loop0, /dev/mapper/vg-data) or MAJOR:MINOR
    /// (8:16). A whole disk includes its partitions.
    #[arg(long, value_name = "DEV")]
    pub device: DeviceArg,

    /// Which bios fail, comma-separated: read, write, flush, discard.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "read,write,flush,discard"
    )]
    pub op: Vec<DiskOp>,

    /// Only bios whose data overlaps sectors FIRST-LAST (512 bytes each, inclusive), counted
    /// from the start of the device named; flushes carry no data and then never match.
    #[arg(long, value_name = "FIRST-LAST")]
    pub sector: Option<Sectors>,

    /// Only bios the target submits itself (--pid, --pid-tree, --cgroup, --container, …):
    /// reads, direct I/O, and the writeback an fsync() of its own does; for a cgroup target
    /// also the kernel's writeback of the pages it dirtied, where the kernel charges that to
    /// the cgroup. Never a journal's commits. Without one, every bio.
    #[command(flatten)]
    pub targets: Option<TargetArgs>,

    /// How the bios are failed on should_fail_bio: fmod_ret (where trampolines load) or
    /// kprobe-override; auto: fmod_ret first. The report names the one used.
    #[arg(long, default_value = "auto", value_parser = parse_override_backend)]
    pub backend: BackendChoice,

    #[command(flatten)]
    pub run: RunArgs,
}

impl DiskErrorArgs {
    /// The fault, with its device resolved (it must exist).
    pub fn fault(&self) -> Result<DiskFault, ParseError> {
        let mut ops = self.op.clone();
        ops.sort();
        ops.dedup();
        Ok(DiskFault {
            device: self.device.resolve()?,
            ops,
            sectors: self.sector,
            when: self.run.when(),
            dry_run: self.run.dry_run,
            // Until the targets are resolved.
            whose: match self.targets {
                Some(_) => Whose::Processes,
                None => Whose::Any,
            },
        })
    }
}

pub fn execute(args: DiskArgs) -> Result<u8, Error> {
    match args.action {
        DiskAction::Error(args) => error(args),
        DiskAction::Cut(args) => cut(args),
        DiskAction::Full(args) => full(args),
    }
}

fn full(args: DiskFullArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    let fault = args.fault()?;
    require_privileges()?;
    let targets = args.targets.resolve(args.run.force)?;
    let plan = plan::plan(
        &fault.ops,
        fault.filter_bits(),
        BackendChoice::Auto,
        &mut plan::Running { eperm_ok: false },
    )?;
    plan::check_rules(&fault.when)?;
    let fexit = args
        .statfs_backend
        .fexit(&chaos_common::hook::STATFS_FEXIT)
        .map_err(|reason| plan::PlanError::DiskFull { reason })?;
    plan::check_statfs_rewrite(fexit)?;
    if args.run.detach && !fexit {
        plan::check_detachable(Some("the statfs tracepoints"))?;
    }
    let statfs = crate::kernel::statfs_filter(args.path.file(), !fexit).map_err(|reason| {
        ParseError::InvalidPath {
            path: args.path.path.display().to_string(),
            reason,
        }
    })?;
    eprintln!(
        "chaos: {} full for {} (writes fail with ENOSPC, statfs reports no free blocks) for {}{}{}",
        args.path.path.display(),
        targets.describe(),
        humantime::format_duration(args.run.duration),
        if fault.dry_run { ", dry run" } else { "" },
        args.run.how_it_ends(),
    );
    let calls_fault = CallsFault::disk_full(&fault, plan, statfs, fexit);
    args.run.run_or_detach(&targets, &calls_fault)
}

/// The bios a cut fails: everything that would change the device.
const CUT_OPS: [DiskOp; 3] = [DiskOp::Write, DiskOp::Flush, DiskOp::Discard];

fn cut(args: DiskCutArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    let fault = DiskFault {
        device: args.device.resolve()?,
        ops: CUT_OPS.to_vec(),
        sectors: None,
        when: When::default(),
        dry_run: false,
        whose: Whose::Any,
    };
    check_device(&fault.device, args.held.force)?;
    require_privileges()?;
    let mechanism = plan::check_bio_override(args.backend)?;
    let processes = args.targets.resolve(args.held.force)?;
    let victim = Pausable::of(&processes);
    eprintln!(
        "chaos: power cut of {} under {}: frozen, writes failing for {}, killed{}",
        fault.device,
        processes.describe(),
        humantime::format_duration(args.held.duration),
        how_it_ends(false),
    );
    // Whatever happens to chaos from the freeze on, the guard thaws what is left of the target.
    let guard = victim
        .spawn_guard()
        .map_err(Error::io("start the guard that thaws the target"))?;
    let failed = |what: &'static str| move |source| RunError::Target { what, source };
    let targets = Targets {
        device: Some(fault.device.clone()),
        ..Targets::default()
    };
    let report = run::calls_run_between(
        &targets,
        &CallsFault::disk(&fault, mechanism),
        args.held.duration,
        || victim.freeze().map_err(failed("freeze")),
        || {
            let killed = victim.kill().map_err(failed("kill"));
            let _ = victim.thaw();
            killed
        },
    );
    drop(guard);
    let report = report?;
    crate::report::print_final(&report.human(), || report.json(), args.held.json);
    Ok(exit::OK)
}

/// Refuses, unless forced, a device that carries the root filesystem.
fn check_device(device: &Device, force: bool) -> Result<(), ParseError> {
    if !force && device.carries_root() {
        return Err(ParseError::RootDevice(device.to_string()));
    }
    Ok(())
}

fn error(args: DiskErrorArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    let mut fault = args.fault()?;
    // With targets, only their own bios fail: the root filesystem is theirs to lose.
    if args.targets.is_none() {
        check_device(&fault.device, args.run.force)?;
    }
    require_privileges()?;
    let mechanism = plan::check_bio_override(args.backend)?;
    plan::check_rules(&fault.when)?;
    let targets = Targets {
        device: Some(fault.device.clone()),
        ..match &args.targets {
            Some(targets) => targets.resolve(args.run.force)?,
            None => Targets::default(),
        }
    };
    if let Some(cgroup) = &targets.cgroup {
        fault.whose = Whose::cgroup(&cgroup.path);
    }
    if args.run.detach {
        let kprobe = mechanism == Mechanism::KprobeOverride;
        plan::check_detachable(kprobe.then_some("the should_fail_bio kprobe"))?;
    }
    let ops: Vec<&str> = fault.ops.iter().map(|op| op.name()).collect();
    eprintln!(
        "chaos: failing {} bios to {} with EIO for {}{}{}",
        ops.join(","),
        targets.describe(),
        humantime::format_duration(args.run.duration),
        if fault.dry_run { ", dry run" } else { "" },
        args.run.how_it_ends(),
    );
    match &fault.whose {
        Whose::Cgroup(Ok(())) => eprintln!(
            "chaos: also the kernel's writeback of the pages the cgroup dirtied (cgroup writeback)"
        ),
        Whose::Cgroup(Err(reason)) => eprintln!(
            "chaos: note: only the bios the targets submit themselves fail: the kernel does not charge the writeback of their pages to their cgroup ({reason})"
        ),
        _ => {}
    }
    let calls_fault = CallsFault::disk(&fault, mechanism);
    args.run.run_or_detach(&targets, &calls_fault)
}

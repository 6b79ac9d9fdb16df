//! `chaos net reset`: the target's live TCP connections are aborted, and so are those it makes
//! or accepts while the run lasts.

use std::{
    collections::{BTreeSet, HashMap, hash_map::Entry},
    fs,
    path::PathBuf,
    time::Duration,
};

use clap::Args;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use crate::{
    cli::{
        HeldArgs, TargetArgs,
        error::{Error, exit},
        how_it_ends, require_privileges,
    },
    fault::{self, Cidr},
    report::{self, EndedBy, FaultKind, FaultReport, Report, StatusLine},
    run,
    sockdiag::{Connection, SockDiag},
    target::{self, Targets},
};

/// How often the target's connections are looked for while the run lasts.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Abort the target's TCP connections, as a middlebox or a peer's crash would: reads and writes
/// on them fail (ECONNABORTED for the target, a reset for its peer).
///
/// Every TCP connection the target's processes hold when the run starts is destroyed through
/// the kernel's socket diagnostics (SOCK_DESTROY, as `ss -K` does), in each network namespace the
/// target uses; then, every 100 ms until the run ends, every new one it made or accepted: new
/// connections are reset soon after they are established, not refused. --port (either end) and
/// --dst (the remote address) narrow it to some connections. Listening sockets are left alone.
/// Needs CONFIG_INET_DIAG_DESTROY.
///
/// Examples:
///   chaos net reset --pid 4242 --port 5432 --for 30s
///   chaos net reset --container web --dst 10.0.0.0/8 --for 1m --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ResetArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    /// Only connections with this port at either end.
    #[arg(long, value_name = "PORT", value_parser = fault::parse_port)]
    pub port: Option<u16>,

    /// Only connections to (or from) a remote address in this network: 10.0.0.5, 10.0.0.0/8.
    #[arg(long, value_name = "CIDR", value_parser = fault::parse_cidr)]
    pub dst: Option<Cidr>,

    #[command(flatten)]
    pub held: HeldArgs,
}

impl ResetArgs {
    fn wanted(&self, connection: &Connection) -> bool {
        self.port
            .is_none_or(|port| connection.local.1 == port || connection.remote.1 == port)
            && self.dst.is_none_or(|dst| dst.contains(connection.remote.0))
    }

    fn setting(&self) -> String {
        let mut parts = Vec::new();
        if let Some(port) = self.port {
            parts.push(format!("port {port}"));
        }
        if let Some(dst) = self.dst {
            parts.push(format!("remote {dst}"));
        }
        if parts.is_empty() {
            "every connection".into()
        } else {
            parts.join(", ")
        }
    }
}

pub fn execute(args: ResetArgs) -> Result<u8, Error> {
    run::defer_interrupts();
    require_privileges()?;
    let targets = args.targets.resolve(args.held.force)?;
    check_kernel()?;
    eprintln!(
        "chaos: resetting the TCP connections of {} ({}) for {}{}",
        targets.describe(),
        args.setting(),
        humantime::format_duration(args.held.duration),
        how_it_ends(false),
    );
    let mut holder =
        run::Holder::new().map_err(Error::io("listen for Ctrl-C, SIGTERM and SIGHUP"))?;
    let started = Instant::now();
    let mut sweeper = Sweeper::default();
    let row = |sweeper: &Sweeper| FaultReport {
        fault: FaultKind::Net {
            op: "reset".into(),
            direction: "both".into(),
            setting: args.setting(),
        },
        mechanism: "sock-destroy".into(),
        covers: "the target's established TCP connections, IPv4 and IPv6".into(),
        dry_run: false,
        matched: sweeper.matched.len() as u64,
        injected: sweeper.destroyed.len() as u64,
        altered_bytes: None,
        stopped: None,
        vdso_withheld: None,
    };
    let ended_by = holder.block_on(async |interrupts| {
        let deadline = started + args.held.duration;
        let mut status = StatusLine::new();
        let mut sweeps = interval(SWEEP_EVERY);
        sweeps.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let ended_by = loop {
            tokio::select! {
                _ = sleep_until(deadline) => break EndedBy::Deadline,
                ended_by = interrupts.next() => break ended_by,
                _ = sweeps.tick() => {
                    if !sweeper.sweep(&targets, &args) {
                        break EndedBy::TargetExited;
                    }
                    let now = Instant::now();
                    status.draw(now - started, deadline.saturating_duration_since(now), || vec![row(&sweeper)]);
                }
            }
        };
        status.clear();
        ended_by
    });
    let report = Report::new(
        vec![row(&sweeper)],
        ended_by,
        report::target_reports(&targets, |index| {
            let matched = sweeper.per_target.get(&index).cloned().unwrap_or_default();
            let injected = matched.intersection(&sweeper.destroyed).count() as u64;
            (matched.len() as u64, injected)
        }),
        started.elapsed().as_millis() as u64,
        &[],
    );
    crate::report::print_final(&report.human(), || report.json(), args.held.json);
    Ok(exit::OK)
}

/// Refuses a kernel that cannot list TCP sockets, or cannot destroy them: destroying a socket
/// that does not exist answers ENOENT where SOCK_DESTROY is built in, EOPNOTSUPP where not.
fn check_kernel() -> Result<(), Error> {
    let unsupported = |detail: String| Error::Unsupported {
        what: "net reset".into(),
        detail,
    };
    let diag = SockDiag::new().map_err(|err| {
        unsupported(format!(
            "no NETLINK_SOCK_DIAG socket ({err}); to enable: CONFIG_INET_DIAG"
        ))
    })?;
    diag.connections().map_err(|err| {
        unsupported(format!(
            "the kernel cannot list TCP sockets ({err}); to enable: CONFIG_INET_DIAG and CONFIG_INET_TCP_DIAG"
        ))
    })?;
    match diag.probe_destroy() {
        Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => Err(unsupported(
            "the kernel cannot destroy sockets; to enable: CONFIG_INET_DIAG_DESTROY=y".into(),
        )),
        _ => Ok(()),
    }
}

/// What the sweeps found and did, by socket inode.
#[derive(Default)]
struct Sweeper {
    matched: BTreeSet<u32>,
    destroyed: BTreeSet<u32>,
    /// One socket per network namespace the target uses, by the namespace's inode.
    diags: HashMap<u64, SockDiag>,
    /// Per target (as the report lists them), the connections matched.
    per_target: HashMap<usize, BTreeSet<u32>>,
}

impl Sweeper {
    /// Destroys every wanted connection the targets hold now; false when no target process is
    /// left.
    fn sweep(&mut self, targets: &Targets, args: &ResetArgs) -> bool {
        let groups = target_processes(targets);
        if groups.iter().all(|pids| pids.is_empty()) {
            return false;
        }
        // The sockets of each target, and the namespaces they live in.
        let mut namespaces: HashMap<u64, (PathBuf, BTreeSet<(usize, u32)>)> = HashMap::new();
        for (index, pids) in groups.iter().enumerate() {
            for &pid in pids {
                let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
                let Ok(ns) = fs::metadata(&netns).map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                else {
                    continue;
                };
                let entry = namespaces
                    .entry(ns)
                    .or_insert_with(|| (netns, BTreeSet::new()));
                entry
                    .1
                    .extend(socket_inodes(pid).into_iter().map(|inode| (index, inode)));
            }
        }
        for (ns, (path, sockets)) in namespaces {
            let diag = match self.diags.entry(ns) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => match SockDiag::in_netns(&path) {
                    Ok(diag) => new.insert(diag),
                    Err(err) => {
                        tracing::debug!(%err, path = %path.display(), "sock_diag in a namespace");
                        continue;
                    }
                },
            };
            let Ok(connections) = diag.connections() else {
                continue;
            };
            for connection in connections.iter().filter(|c| args.wanted(c)) {
                let owners: Vec<usize> = sockets
                    .iter()
                    .filter(|&&(_, inode)| inode == connection.inode)
                    .map(|&(index, _)| index)
                    .collect();
                if owners.is_empty() {
                    continue;
                }
                self.matched.insert(connection.inode);
                for owner in owners {
                    self.per_target
                        .entry(owner)
                        .or_default()
                        .insert(connection.inode);
                }
                if diag.destroy(connection).is_ok() {
                    self.destroyed.insert(connection.inode);
                }
            }
        }
        true
    }
}

/// The processes of each target now, in the report's order: process targets (with their
/// descendants for a tree), then the cgroup target.
fn target_processes(targets: &Targets) -> Vec<Vec<u32>> {
    let processes = targets.processes.iter().map(|p| {
        let mut pids = vec![p.pid];
        if p.tree {
            pids.extend(target::descendants(p.pid));
        }
        pids.retain(|pid| fs::metadata(format!("/proc/{pid}")).is_ok());
        pids
    });
    let cgroup = targets
        .cgroup
        .iter()
        .map(|c| target::processes_under(&c.path));
    processes.chain(cgroup).collect()
}

/// The inodes of the sockets process `pid` holds (its fd links read `socket:[INODE]`).
fn socket_inodes(pid: u32) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            link.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

//! Counters, the live status line and the final report (human on stderr, JSON on stdout).

use std::{
    fmt::{self, Write as _},
    io::{IsTerminal as _, Write as _},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndedBy {
    /// `--for` elapsed.
    Deadline,
    /// Ctrl-C.
    Sigint,
    Sigterm,
    Sighup,
    /// Every target process exited, or the target container stopped.
    TargetExited,
}

/// What a fault does, one variant per kind of fault: the report's rows and a detached run's
/// record carry it as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultKind {
    /// Calls of operation `op` (or the syscall `op`) fail with `errno`.
    Errno { op: String, errno: String },
    /// A target entering the syscall `op` gets `signal`.
    Signal { op: String, signal: String },
    /// Packets travelling in `direction` (ingress, egress) get the action `op` (drop, delay…)
    /// with `setting` (30%, 50ms ± 10ms normal, 10 Mbit/s…).
    Net {
        op: String,
        direction: String,
        setting: String,
    },
    /// The targets are frozen (`op` pause) as `setting` says (throughout, 30% of every 10s).
    Pause { op: String, setting: String },
    /// What the syscall `op` returns to a target is rewritten as `setting` says (no free blocks).
    Rewrite { op: String, setting: String },
    /// A target's returns from `op` (an operation's syscalls, or syscalls by name) come `delay`
    /// (50ms, 50ms ± 10ms) later.
    Delay { op: String, delay: String },
}

impl FaultKind {
    /// The operation, syscall or packet action.
    pub fn op(&self) -> &str {
        match self {
            FaultKind::Errno { op, .. }
            | FaultKind::Signal { op, .. }
            | FaultKind::Net { op, .. }
            | FaultKind::Pause { op, .. }
            | FaultKind::Rewrite { op, .. }
            | FaultKind::Delay { op, .. } => op,
        }
    }

    /// What the fault injects: the errno, the signal, or for packets the direction.
    pub fn injected_as(&self) -> &str {
        match self {
            FaultKind::Errno { errno, .. } => errno,
            FaultKind::Signal { signal, .. } => signal,
            FaultKind::Net { direction, .. } => direction,
            FaultKind::Pause { .. } => "frozen",
            FaultKind::Rewrite { .. } => "rewritten",
            FaultKind::Delay { delay, .. } => delay,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Errno { op, errno } => write!(f, "{op} {errno}"),
            FaultKind::Signal { op, signal } => write!(f, "{signal} on {op}()"),
            FaultKind::Net {
                op,
                direction,
                setting,
            } => write!(f, "{op} {setting} {direction}"),
            FaultKind::Pause { op, setting } => write!(f, "{op} {setting}"),
            FaultKind::Rewrite { op, setting } => write!(f, "{op}: {setting}"),
            FaultKind::Delay { op, delay } => write!(f, "{op} delayed {delay}"),
        }
    }
}

/// The counters of one fault on one operation, syscall or direction.
#[derive(Clone, Debug, Serialize)]
pub struct FaultReport {
    #[serde(flatten)]
    pub fault: FaultKind,
    pub mechanism: String,
    /// The calls (or packets) the mechanism acts on.
    pub covers: String,
    pub dry_run: bool,
    /// Calls (packets) of a target that the fault covered.
    pub matched: u64,
    /// Of those, the calls that were failed (signalled, packets acted on).
    pub injected: u64,
    /// The bytes altered in those calls' data (`chaos corrupt-io`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub altered_bytes: Option<u64>,
    /// How long the delayed calls' processes were held stopped (`chaos delay`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// The execs of targets whose new image had the vDSO withheld (`chaos clock`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vdso_withheld: Option<u64>,
}

/// How long `chaos delay` held its targets stopped, each stop from the syscall's return (the
/// kernel's timestamp) to the SIGCONT, in µs: the delay each call got, as chaos measured it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stopped {
    /// Stops resumed when due.
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Stops the run's end cut short (resumed at once, early).
    pub cut_short: u64,
}

impl Stopped {
    /// The summary of the lengths in ns of the stops resumed when due, and of `cut_short`.
    pub fn of(mut lengths: Vec<u64>, cut_short: u64) -> Self {
        lengths.sort_unstable();
        let at = |q: f64| {
            let index = ((lengths.len() as f64 * q).ceil() as usize).clamp(1, lengths.len());
            lengths[index - 1] / 1000
        };
        if lengths.is_empty() {
            return Stopped {
                cut_short,
                ..Stopped::default()
            };
        }
        Stopped {
            count: lengths.len() as u64,
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: lengths[lengths.len() - 1] / 1000,
            cut_short,
        }
    }

    /// In words, for the human report.
    fn describe(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let mut text = if self.count == 0 {
            "no stop ran its full delay".to_owned()
        } else {
            format!(
                "stopped p50 {:.1}ms, p99 {:.1}ms, max {:.1}ms",
                ms(self.p50_us),
                ms(self.p99_us),
                ms(self.max_us)
            )
        };
        if self.cut_short > 0 {
            let _ = write!(text, "; {} cut short by the end", self.cut_short);
        }
        text
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub faults: Vec<FaultReport>,
    pub ended_by: EndedBy,
    pub targets: Vec<TargetReport>,
    pub elapsed_ms: u64,
    /// What the person running it must not miss: a fault that matched nothing (a filter that
    /// named nothing the targets touched, a target that never made the call).
    pub warnings: Vec<String>,
    /// How long the targets were frozen in all (`chaos pause`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_ms: Option<u64>,
    /// Whether the run's programs were taken verified from `chaos idle`'s spares.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub spare_programs: bool,
}

/// A target: a process (`pid`, with its descendants when `tree`), or every process under
/// `cgroup` (no `pid`), which is the cgroup of `container` when one was named.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub tree: bool,
    /// The full container ID (or lxc name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The pod's UID (--pod-uid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The cgroup v2 directory (process, cgroup and container targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// A network interface (network faults), and the namespace it is in when not chaos's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// A block device (disk faults): as named, with its number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Calls of this target (and, for a tree, its descendants) that a fault covered, over every
    /// operation.
    pub matched: u64,
    /// Of those, the calls that were failed (or signalled).
    pub injected: u64,
}

/// One report per target, with the counters `counters` gives for its index: process targets by
/// their place in the list, a cgroup target (never beside processes) at index 0.
pub fn target_reports(
    targets: &crate::target::Targets,
    counters: impl Fn(usize) -> (u64, u64),
) -> Vec<TargetReport> {
    let processes = targets.processes.iter().enumerate().map(|(index, p)| {
        let (matched, injected) = counters(index);
        TargetReport {
            pid: Some(p.pid),
            tree: p.tree,
            container: None,
            pod: None,
            cgroup: Some(p.cgroup.display().to_string()),
            iface: None,
            netns: None,
            device: None,
            matched,
            injected,
        }
    });
    let cgroup = targets.cgroup.iter().map(|c| {
        let (matched, injected) = counters(0);
        TargetReport {
            pid: None,
            tree: false,
            container: targets.container.as_ref().map(|c| c.id.clone()),
            pod: targets.pod.as_ref().map(|p| p.uid.clone()),
            cgroup: Some(c.path.display().to_string()),
            iface: None,
            netns: None,
            device: None,
            matched,
            injected,
        }
    });
    // The device is the target only when no process narrows the fault.
    let untargeted = targets.processes.is_empty() && targets.cgroup.is_none();
    let device = targets.device.iter().filter(|_| untargeted).map(|device| {
        let (matched, injected) = counters(0);
        TargetReport {
            pid: None,
            tree: false,
            container: None,
            pod: None,
            cgroup: None,
            iface: None,
            netns: None,
            device: Some(device.to_string()),
            matched,
            injected,
        }
    });
    processes.chain(cgroup).chain(device).collect()
}

impl TargetReport {
    /// `pid 42`, `pid 42 and children`, `container 0123456789ab` or the cgroup path.
    pub fn describe(&self) -> String {
        match (self.pid, &self.container) {
            (Some(pid), _) if self.tree => format!("pid {pid} and children"),
            (Some(pid), _) => format!("pid {pid}"),
            (None, Some(id)) => format!("container {}", &id[..id.len().min(12)]),
            (None, None) if self.pod.is_some() => {
                format!("pod {}", self.pod.as_deref().unwrap_or_default())
            }
            (None, None) => match (&self.iface, &self.netns, &self.device) {
                (Some(iface), Some(netns), _) => format!("{iface} in {netns}"),
                (Some(iface), None, _) => iface.clone(),
                (None, _, Some(device)) => device.clone(),
                _ => self.cgroup.clone().unwrap_or_default(),
            },
        }
    }
}

impl Report {
    /// A finished run's report, with a warning for each fault that matched nothing; `filters`
    /// names the fault's filters as given (`--path /srv/db`), if it had any.
    pub fn new(
        faults: Vec<FaultReport>,
        ended_by: EndedBy,
        targets: Vec<TargetReport>,
        elapsed_ms: u64,
        filters: &[String],
    ) -> Self {
        let warnings = faults
            .iter()
            .filter(|fault| fault.matched == 0)
            .map(|row| {
                let what = match &row.fault {
                    FaultKind::Net { op, direction, .. } => format!("{op} {direction}"),
                    other => other.op().to_owned(),
                };
                let passing = if filters.is_empty() {
                    String::new()
                } else {
                    format!(" passing {}", filters.join(" "))
                };
                format!(
                    "{what} matched nothing: the targets made no such call{passing} while the fault was live"
                )
            })
            .collect();
        Report {
            faults,
            ended_by,
            targets,
            elapsed_ms,
            warnings,
            frozen_ms: None,
            spare_programs: false,
        }
    }

    /// The summary a person reads at the end of a run.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "run ended by {} after {:.1}s",
            serde_json::to_value(self.ended_by)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            self.elapsed_ms as f64 / 1000.0
        );
        for fault in &self.faults {
            let _ = writeln!(
                out,
                "  {:<8} {:<14} via {:<7} matched {:>8}  injected {:>8}{}{}",
                fault.fault.op(),
                fault.fault.injected_as(),
                fault.mechanism,
                fault.matched,
                fault.injected,
                fault
                    .altered_bytes
                    .map(|bytes| format!("  ({bytes} bytes altered)"))
                    .or(fault.stopped.map(|s| format!("  ({})", s.describe())))
                    .or(fault
                        .vdso_withheld
                        .map(|execs| format!("  (vDSO withheld from {execs} execs)")))
                    .unwrap_or_default(),
                if fault.dry_run { "  (dry run)" } else { "" }
            );
        }
        if let Some(frozen_ms) = self.frozen_ms {
            let _ = writeln!(out, "  frozen {:.1}s in all", frozen_ms as f64 / 1000.0);
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
        if self.targets.len() > 1 {
            for target in &self.targets {
                let _ = writeln!(
                    out,
                    "  {:<38} matched {:>8}  injected {:>8}",
                    target.describe(),
                    target.matched,
                    target.injected
                );
            }
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }
}

/// The end of a run: the human summary on stderr, and with `--json` the report on stdout.
pub fn print_final(human: &str, json: impl FnOnce() -> String, as_json: bool) {
    eprint!("{human}");
    if as_json {
        println!("{}", json());
    }
}

pub use chaos_common::names::{STATUS_LINE_PREFIX, STATUS_LINES_ENV};

/// What a machine-readable status line carries: the run's counters over every fault, and when
/// its programs went live (`CLOCK_MONOTONIC` ns), which `chaos run` divides its workloads'
/// numbers into phases by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatusCounters {
    pub matched: u64,
    pub injected: u64,
    #[serde(default)]
    pub live_since_ns: u64,
}

/// The live status line on stderr: redrawn in place on a terminal, one JSON line per tick for
/// `chaos run` ([`STATUS_LINES_ENV`]), nothing otherwise.
pub struct StatusLine {
    mode: StatusMode,
    drawn: bool,
    /// When it was made: a run makes it once its programs are live.
    live_since_ns: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StatusMode {
    Off,
    Terminal,
    Lines,
}

impl StatusLine {
    pub fn new() -> Self {
        let mode = if std::env::var_os(STATUS_LINES_ENV).is_some() {
            StatusMode::Lines
        } else if std::io::stderr().is_terminal() {
            StatusMode::Terminal
        } else {
            StatusMode::Off
        };
        StatusLine {
            mode,
            drawn: false,
            live_since_ns: crate::clock::monotonic_now_ns(),
        }
    }

    /// Redraws the line with the counters `faults` reads; with the line off, reads nothing (every
    /// read is a map lookup per fault and CPU).
    pub fn draw(
        &mut self,
        elapsed: Duration,
        remaining: Duration,
        faults: impl FnOnce() -> Vec<FaultReport>,
    ) {
        let line = match self.mode {
            StatusMode::Off => return,
            StatusMode::Lines => {
                let faults = faults();
                let counters = StatusCounters {
                    matched: faults.iter().map(|f| f.matched).sum(),
                    injected: faults.iter().map(|f| f.injected).sum(),
                    live_since_ns: self.live_since_ns,
                };
                let json = serde_json::to_string(&counters).expect("counters serialize");
                format!("{STATUS_LINE_PREFIX}{json}\n")
            }
            StatusMode::Terminal => {
                let mut line = format!(
                    "\r\x1b[2K[{:>5.1}s, {:>5.1}s left]",
                    elapsed.as_secs_f64(),
                    remaining.as_secs_f64()
                );
                for fault in faults() {
                    let _ = write!(
                        line,
                        "  {} {}: {}/{}",
                        fault.fault.op(),
                        fault.fault.injected_as(),
                        fault.injected,
                        fault.matched
                    );
                }
                self.drawn = true;
                line
            }
        };
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(line.as_bytes());
        let _ = stderr.flush();
    }

    pub fn clear(&mut self) {
        if self.drawn {
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Default for StatusLine {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_summarise_by_percentile() {
        let lengths = (1..=100).map(|ms| ms * 1_000_000).collect();
        let stopped = Stopped::of(lengths, 2);
        assert_eq!(
            (
                stopped.count,
                stopped.p50_us,
                stopped.p99_us,
                stopped.max_us
            ),
            (100, 50_000, 99_000, 100_000)
        );
        assert_eq!(
            stopped.describe(),
            "stopped p50 50.0ms, p99 99.0ms, max 100.0ms; 2 cut short by the end"
        );
        assert_eq!(
            Stopped::of(Vec::new(), 1).describe(),
            "no stop ran its full delay; 1 cut short by the end"
        );
    }

    #[test]
    fn json_has_the_documented_fields() {
        let report = Report::new(
            vec![FaultReport {
                fault: FaultKind::Errno {
                    op: "open".into(),
                    errno: "EIO".into(),
                },
                mechanism: "lsm".into(),
                covers: "open()".into(),
                dry_run: false,
                matched: 3,
                injected: 3,
                altered_bytes: None,
                stopped: None,
                vdso_withheld: None,
            }],
            EndedBy::TargetExited,
            vec![TargetReport {
                pid: Some(7),
                tree: false,
                container: None,
                pod: None,
                matched: 3,
                injected: 3,
                cgroup: Some("/sys/fs/cgroup".into()),
                iface: None,
                netns: None,
                device: None,
            }],
            1500,
            &[],
        );
        let value: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(value["faults"][0]["kind"], "errno");
        assert_eq!(value["faults"][0]["op"], "open");
        assert_eq!(value["faults"][0]["errno"], "EIO");
        assert_eq!(value["faults"][0]["mechanism"], "lsm");
        assert_eq!(value["faults"][0]["matched"], 3);
        assert_eq!(value["faults"][0]["injected"], 3);
        assert_eq!(value["ended_by"], "target-exited");
        assert!(report.human().contains("target-exited"));
    }
}

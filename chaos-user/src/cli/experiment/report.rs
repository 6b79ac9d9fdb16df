//! What `chaos run` reports: how the experiment ended, its checks, its workload, and each
//! fault's outcome with the fault command's own report.

use serde::{Deserialize, Serialize};

use super::{
    metrics::{self, PhaseMetrics},
    workload::Expect,
};
use crate::report::{EndedBy, FaultKind};

/// Why an experiment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExperimentEnd {
    /// Every fault window passed.
    Deadline,
    /// The steady-state check failed before any fault started: nothing was injected.
    SteadyStateNotMet,
    /// A workload's `ready` command did not succeed in time (or it exited first): nothing was
    /// injected.
    WorkloadNotReady,
    /// The steady-state check failed during the faults and the file asked to abort.
    CheckFailed,
    /// A fault could not run (its command failed); the others were stopped.
    FaultFailed,
    Sigint,
    Sigterm,
    Sighup,
}

impl From<EndedBy> for ExperimentEnd {
    fn from(ended_by: EndedBy) -> Self {
        match ended_by {
            EndedBy::Sigint => ExperimentEnd::Sigint,
            EndedBy::Sigterm => ExperimentEnd::Sigterm,
            EndedBy::Sighup => ExperimentEnd::Sighup,
            EndedBy::Deadline | EndedBy::TargetExited => ExperimentEnd::Deadline,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ExperimentReport {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The checks held, every workload met its expectation (or ran until chaos stopped it) and
    /// every fault ran.
    pub passed: bool,
    pub ended_by: ExperimentEnd,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady_state: Option<CheckReport>,
    pub workloads: Vec<WorkloadReport>,
    pub faults: Vec<FaultOutcome>,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub command: String,
    pub before: bool,
    /// Checks run while faults were active, and how many of them failed.
    pub during: u32,
    pub during_failed: u32,
    /// None when the experiment ended before the faults (the check before failed).
    pub after: Option<bool>,
    /// The last lines of the first failed check's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct WorkloadReport {
    pub name: String,
    pub command: String,
    pub start_ms: u64,
    pub expect: Expect,
    /// None: it never started (the experiment ended before its offset, or it could not start).
    pub pid: Option<u32>,
    /// From its start to its end.
    pub elapsed_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Still running at the end of the experiment or of its `for`, and stopped by chaos
    /// (SIGTERM to its group): it did its part.
    pub stopped_by_chaos: bool,
    /// It met its expectation, was stopped by chaos, or never had to start.
    pub ok: bool,
    /// Its last lines of output (stdout and stderr).
    pub output: Vec<String>,
    /// The numbers it printed, per phase (with `metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<PhaseMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FaultOutcome {
    pub name: String,
    pub command: String,
    pub start_ms: u64,
    pub for_ms: u64,
    pub state: FaultState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The fault command's own JSON report (see `chaos fail --json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultState {
    NotStarted,
    Running,
    /// Ran its window to the end.
    Ran,
    /// Ended early by chaos run (an abort, a failed fault, an interrupt).
    Stopped,
    Failed,
}

/// A row of a fault command's report, as the summary reads it.
#[derive(Deserialize)]
struct Row {
    #[serde(flatten)]
    fault: FaultKind,
    mechanism: String,
    matched: u64,
    injected: u64,
}

impl ExperimentReport {
    /// The summary a person reads at the end.
    pub fn human(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let ended_by = serde_json::to_value(self.ended_by)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "experiment {}: {} (ended by {ended_by} after {:.1}s)",
            self.file,
            if self.passed { "passed" } else { "FAILED" },
            self.elapsed_ms as f64 / 1000.0
        );
        if let Some(check) = &self.steady_state {
            let after = match check.after {
                Some(true) => "ok",
                Some(false) => "FAILED",
                None => "not run",
            };
            let _ = writeln!(
                out,
                "  steady state: before {}, during {} of {} failed, after {after}",
                if check.before { "ok" } else { "FAILED" },
                check.during_failed,
                check.during
            );
        }
        for workload in &self.workloads {
            let _ = writeln!(
                out,
                "  workload {}: {}{}, expected {}{}",
                workload.name,
                describe_exit(workload),
                if workload.stopped_by_chaos {
                    " (stopped by chaos)"
                } else {
                    ""
                },
                workload.expect.name(),
                if workload.ok { "" } else { ": FAILED" }
            );
            if let Some(error) = &workload.error {
                let _ = writeln!(out, "    {error}");
            }
            let mut phases: Vec<_> = workload.metrics.iter().flatten().collect();
            phases.sort_by_key(|(phase, _)| metrics::rank(phase));
            for (phase, stats) in phases {
                for (name, stat) in stats {
                    let _ = writeln!(
                        out,
                        "    {phase:<16} {name:<16} n {:>6}  min {:>10}  mean {:>10}  max {:>10}  last {:>10}",
                        stat.samples,
                        number(stat.min),
                        number(stat.mean),
                        number(stat.max),
                        number(stat.last)
                    );
                }
            }
        }
        for fault in &self.faults {
            let state = serde_json::to_value(fault.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} ({}, from {:.1}s for {:.1}s): {state}",
                fault.name,
                fault.command,
                fault.start_ms as f64 / 1000.0,
                fault.for_ms as f64 / 1000.0
            );
            let rows = fault
                .report
                .as_ref()
                .and_then(|report| report.get("faults"))
                .and_then(|rows| Vec::<Row>::deserialize(rows).ok())
                .unwrap_or_default();
            for row in rows {
                let _ = writeln!(
                    out,
                    "    {:<8} {:<14} via {:<10} matched {:>8}  injected {:>8}",
                    row.fault.op(),
                    row.fault.injected_as(),
                    row.mechanism,
                    row.matched,
                    row.injected
                );
            }
            if let Some(error) = &fault.error {
                for line in error.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }
}

pub(super) fn describe_exit(report: &WorkloadReport) -> String {
    match (report.pid, report.exit_code, report.signal) {
        (None, _, _) => "not started".into(),
        (_, Some(code), _) => format!("exit status {code}"),
        (_, None, Some(signal)) => format!("killed by signal {signal}"),
        (_, None, None) => "unknown status".into(),
    }
}

/// A metric for the summary: whole numbers as such, others with three decimals.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

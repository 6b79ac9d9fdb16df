//! The numbers workloads print, gathered per phase of the experiment: `before` the first fault
//! starts, `during` any fault (and `during:NAME` for each fault running), `between` faults,
//! `after` the last one ended.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

// The supervisor's clock (tokio's, the monotonic one).
use tokio::time::Instant;

use serde::Serialize;

use super::workload::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Before,
    During,
    Between,
    After,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::Between => "between",
            Phase::After => "after",
        }
    }
}

/// When each fault was live, set by the supervisor as it hears of it and read by the
/// workloads' output readers: a sample counts in the phase of the instant its line was read,
/// however late the supervisor heard that a fault went live (a call the fault delayed can
/// return before that).
#[derive(Clone)]
pub struct SharedPhase(Arc<Mutex<Timeline>>);

struct Timeline {
    faults: Vec<FaultWindow>,
    /// When the experiment ended: later samples count as after.
    closed: Option<Instant>,
}

/// One fault: its name, when its programs went live and when its process ended.
struct FaultWindow {
    name: String,
    live: Option<Instant>,
    ended: Option<Instant>,
}

impl SharedPhase {
    /// The timeline of the faults named `faults`, none started yet.
    pub fn new(faults: impl IntoIterator<Item = String>) -> Self {
        let faults = faults
            .into_iter()
            .map(|name| FaultWindow {
                name,
                live: None,
                ended: None,
            })
            .collect();
        SharedPhase(Arc::new(Mutex::new(Timeline {
            faults,
            closed: None,
        })))
    }

    /// Fault `index`'s programs went live at `at`.
    pub fn live(&self, index: usize, at: Instant) {
        self.0.lock().expect("phase lock").faults[index]
            .live
            .get_or_insert(at);
    }

    /// Fault `index`'s process ended at `at` (its programs detached before).
    pub fn ended(&self, index: usize, at: Instant) {
        self.0.lock().expect("phase lock").faults[index]
            .ended
            .get_or_insert(at);
    }

    /// The experiment ended at `at`.
    pub fn close(&self, at: Instant) {
        self.0.lock().expect("phase lock").closed.get_or_insert(at);
    }

    /// The phases a sample read at `at` counts in: `before` the first fault went live, `during`
    /// and `during:NAME` while any is live, `between` while none is but one is still to
    /// come, `after` once none is left to.
    pub fn labels_at(&self, at: Instant) -> Vec<String> {
        let timeline = self.0.lock().expect("phase lock");
        let phase = |phase: Phase| vec![phase.name().to_owned()];
        if timeline.closed.is_some_and(|closed| closed <= at) {
            return phase(Phase::After);
        }
        let live_by = |fault: &FaultWindow| fault.live.is_some_and(|live| live <= at);
        let ended_by = |fault: &FaultWindow| fault.ended.is_some_and(|ended| ended <= at);
        if !timeline.faults.iter().any(live_by) {
            return phase(Phase::Before);
        }
        let running: Vec<&FaultWindow> = timeline
            .faults
            .iter()
            .filter(|fault| live_by(fault) && !ended_by(fault))
            .collect();
        if !running.is_empty() {
            let mut labels = phase(Phase::During);
            labels.extend(running.iter().map(|fault| format!("during:{}", fault.name)));
            return labels;
        }
        if timeline
            .faults
            .iter()
            .any(|fault| !live_by(fault) && !ended_by(fault))
        {
            phase(Phase::Between)
        } else {
            phase(Phase::After)
        }
    }
}

/// Where a phase comes in the summary: in the order they happen.
pub fn rank(label: &str) -> (u8, &str) {
    let order = match label.split(':').next().unwrap_or(label) {
        "before" => 0,
        "during" if label.contains(':') => 2,
        "during" => 1,
        "between" => 3,
        _ => 4,
    };
    (order, label)
}

/// One metric's samples in one phase.
#[derive(Clone, Debug, Serialize)]
pub struct Stat {
    pub samples: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
}

impl Stat {
    fn new(value: f64) -> Self {
        Stat {
            samples: 1,
            min: value,
            max: value,
            mean: value,
            last: value,
        }
    }

    fn add(&mut self, value: f64) {
        self.samples += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.mean += (value - self.mean) / self.samples as f64;
        self.last = value;
    }
}

/// Per phase, per metric name, what a workload printed.
pub type PhaseMetrics = BTreeMap<String, BTreeMap<String, Stat>>;

/// Adds the numbers of one output `line` to `into`, in each phase of `labels`.
pub fn record(metrics: &Metrics, line: &str, labels: &[String], into: &mut PhaseMetrics) {
    let mut add = |name: String, value: f64| {
        if value.is_finite() {
            for label in labels {
                into.entry(label.clone())
                    .or_default()
                    .entry(name.clone())
                    .and_modify(|stat| stat.add(value))
                    .or_insert_with(|| Stat::new(value));
            }
        }
    };
    match metrics {
        Metrics::JsonLines => {
            if let Ok(serde_json::Value::Object(object)) =
                serde_json::from_str::<serde_json::Value>(line.trim())
            {
                numbers("", &serde_json::Value::Object(object), &mut add);
            }
        }
        Metrics::Regex(regex) => {
            if let Some(captures) = regex.captures(line) {
                for name in regex.capture_names().flatten() {
                    if let Some(value) = captures
                        .name(name)
                        .and_then(|m| m.as_str().trim().parse::<f64>().ok())
                    {
                        add(name.to_owned(), value);
                    }
                }
            }
        }
    }
}

/// Every number in a JSON value, named by its path of keys joined with dots.
fn numbers(path: &str, value: &serde_json::Value, add: &mut impl FnMut(String, f64)) {
    match value {
        serde_json::Value::Number(number) => {
            if let Some(value) = number.as_f64() {
                add(path.to_owned(), value);
            }
        }
        serde_json::Value::Object(object) => {
            for (key, value) in object {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                numbers(&path, value, add);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_give_every_number_by_its_path() {
        let mut into = PhaseMetrics::new();
        let during = vec!["during".to_owned(), "during:loss".to_owned()];
        for line in [
            r#"{"p99_ms": 12.5, "errors": 0, "latency": {"p50": 3}, "host": "x"}"#,
            "not json",
            r#"{"p99_ms": 30, "errors": 4}"#,
        ] {
            record(&Metrics::JsonLines, line, &during, &mut into);
        }
        record(
            &Metrics::JsonLines,
            r#"{"errors": 1}"#,
            &["after".to_owned()],
            &mut into,
        );
        let during = &into["during"];
        assert_eq!(during["errors"].max, into["during:loss"]["errors"].max);
        let p99 = &during["p99_ms"];
        assert_eq!(
            (p99.samples, p99.min, p99.max, p99.last),
            (2, 12.5, 30.0, 30.0)
        );
        assert_eq!(p99.mean, 21.25);
        assert_eq!(during["latency.p50"].samples, 1);
        assert!(!during.contains_key("host"));
        assert_eq!(into["after"]["errors"].last, 1.0);
        assert!(!into.contains_key("before") && !into.contains_key("after:loss"));
    }

    /// Two faults, `a` live from 10 to 30 and `b` from 20 to 40 (ms after `t0`), told to the
    /// timeline out of order and after the samples: each sample counts by when it was read.
    #[test]
    fn a_sample_counts_in_the_phase_of_when_it_was_read() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        let phase = SharedPhase::new(["a".to_owned(), "b".to_owned(), "c".to_owned()]);
        let labels = |ms: u64| phase.labels_at(at(ms)).join(",");
        phase.live(1, at(20));
        phase.live(0, at(10));
        assert_eq!(labels(5), "before");
        assert_eq!(labels(10), "during,during:a");
        assert_eq!(labels(25), "during,during:a,during:b");
        phase.ended(1, at(40));
        phase.ended(0, at(30));
        assert_eq!(labels(35), "during,during:b");
        // `c` has not gone live yet: it is still to come.
        assert_eq!(labels(45), "between");
        // Ended without going live (stopped, or refused): nothing is left to come.
        phase.ended(2, at(50));
        assert_eq!(labels(45), "between");
        assert_eq!(labels(55), "after");
        // A second report of either changes nothing.
        phase.live(0, at(100));
        assert_eq!(labels(25), "during,during:a,during:b");
        phase.close(at(60));
        assert_eq!(labels(55), "after");
        assert_eq!(labels(60), "after");
    }

    #[test]
    fn a_regex_gives_its_named_groups() {
        let metrics = Metrics::Regex(
            regex_lite::Regex::new(
                r"Requests/sec:\s+(?P<rps>[0-9.]+)|Non-2xx.*:\s+(?P<non2xx>\d+)",
            )
            .unwrap(),
        );
        let mut into = PhaseMetrics::new();
        for line in [
            "Requests/sec:   1234.56",
            "Non-2xx or 3xx responses: 7",
            "other",
        ] {
            record(&metrics, line, &["before".to_owned()], &mut into);
        }
        let before = &into["before"];
        assert_eq!(before["rps"].last, 1234.56);
        assert_eq!(before["non2xx"].last, 7.0);
        assert_eq!(before.len(), 2);
    }
}

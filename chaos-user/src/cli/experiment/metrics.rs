//! The numbers workloads print, gathered per phase of the experiment: `before` the first fault
//! starts, `during` any fault (and `during:NAME` for each fault running), `between` faults,
//! `after` the last one ended.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde::Serialize;

use super::workload::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
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

/// The experiment's phase and the faults running, set by the supervisor and read by the
/// workloads' output readers.
#[derive(Clone)]
pub struct SharedPhase(Arc<Mutex<Vec<String>>>);

impl Default for SharedPhase {
    fn default() -> Self {
        SharedPhase(Arc::new(Mutex::new(vec![Phase::Before.name().to_owned()])))
    }
}

impl SharedPhase {
    /// Enters `phase`, with the names of the faults running.
    pub fn set<'a>(&self, phase: Phase, running: impl IntoIterator<Item = &'a str>) {
        let mut labels = vec![phase.name().to_owned()];
        if phase == Phase::During {
            labels.extend(running.into_iter().map(|name| format!("during:{name}")));
        }
        *self.0.lock().expect("phase lock") = labels;
    }

    /// The phases a sample taken now counts in.
    pub fn labels(&self) -> Vec<String> {
        self.0.lock().expect("phase lock").clone()
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
        let phase = SharedPhase::default();
        let mut into = PhaseMetrics::new();
        phase.set(Phase::During, ["loss"]);
        for line in [
            r#"{"p99_ms": 12.5, "errors": 0, "latency": {"p50": 3}, "host": "x"}"#,
            "not json",
            r#"{"p99_ms": 30, "errors": 4}"#,
        ] {
            record(&Metrics::JsonLines, line, &phase.labels(), &mut into);
        }
        phase.set(Phase::After, ["loss"]);
        record(
            &Metrics::JsonLines,
            r#"{"errors": 1}"#,
            &phase.labels(),
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
            record(&metrics, line, &SharedPhase::default().labels(), &mut into);
        }
        let before = &into["before"];
        assert_eq!(before["rps"].last, 1234.56);
        assert_eq!(before["non2xx"].last, 7.0);
        assert_eq!(before.len(), 2);
    }
}

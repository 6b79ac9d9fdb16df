//! An experiment's workloads: the load, the client, the fuzzer that run beside the faults, each
//! named, each with its start, its optional length, what its exit status should be and,
//! optionally, how to read numbers from its output.

use std::time::Duration;

use serde::Serialize;
use toml::de::DeValue;

use super::{
    ExperimentError, Source, Value, check_keys, optional_duration, optional_string,
    required_string, table,
};
use crate::fault;

/// The keys of a `[workload]` or `[[workload]]` table.
pub const WORKLOAD_KEYS: [&str; 9] = [
    "name",
    "command",
    "start",
    "for",
    "expect",
    "metrics",
    "ready",
    "ready_timeout",
    "stop_timeout",
];
/// How long a workload's `ready` command may take to succeed, unless `ready_timeout` says.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped workload has between SIGTERM and SIGKILL, unless `stop_timeout` says.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The name of a workload that has none: a single `[workload]`, or `--during`.
pub const DEFAULT_NAME: &str = "workload";
/// The value of `pid`/`pid_tree` that names a workload's PID: `workload` (the first one) or
/// `workload:NAME`.
pub const PID_WORD: &str = "workload";
/// The metrics format of a workload printing one JSON object per line.
const JSON_LINES: &str = "json-lines";

/// One workload, ready to run.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    /// A shell command (`sh -c`), in its own process group.
    pub command: String,
    /// Offset from the experiment's start.
    pub start: Duration,
    /// Stopped this long after it started, if it has not ended by then.
    pub lifetime: Option<Duration>,
    pub expect: Expect,
    pub metrics: Option<Metrics>,
    /// A shell command that succeeds once the workload is ready (a server listening): the
    /// check before the faults, and the timeline, wait for it, up to `ready_timeout`.
    pub ready: Option<String>,
    pub ready_timeout: Duration,
    /// Between the SIGTERM that stops it and the SIGKILL that follows if it is still there.
    pub stop_timeout: Duration,
}

/// The exit status a workload must end with, unless chaos stopped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    Success,
    Failure,
    Any,
}

impl Expect {
    const NAMES: [(&str, Expect); 3] = [
        ("success", Expect::Success),
        ("failure", Expect::Failure),
        ("any", Expect::Any),
    ];

    /// Whether an exit with `success` meets the expectation.
    pub fn met_by(self, success: bool) -> bool {
        match self {
            Expect::Success => success,
            Expect::Failure => !success,
            Expect::Any => true,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, expect)| *expect == self)
            .map(|(name, _)| *name)
            .expect("every expectation is named")
    }
}

/// How the numbers a workload prints are found in its output lines.
#[derive(Debug, Clone)]
pub enum Metrics {
    /// Each line that is a JSON object: its numbers, named by their keys (`a.b` when nested).
    JsonLines,
    /// Each named group of the pattern that matches a number in a line.
    Regex(regex_lite::Regex),
}

impl Workload {
    /// The environment variable that gives checks this workload's PID.
    pub fn pid_env(&self) -> String {
        format!("CHAOS_WORKLOAD_PID_{}", env_suffix(&self.name))
    }
}

fn env_suffix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// Parses the top-level `workload` key: one table or an array of tables. `during` (the command
/// line's `--during`) takes the place of a single workload.
pub(super) fn parse_workloads(
    source: &Source<'_>,
    value: Option<&Value<'_>>,
    during: Option<&str>,
) -> Result<Vec<Workload>, ExperimentError> {
    let during_workload = |command: &str| Workload {
        name: DEFAULT_NAME.to_owned(),
        command: command.to_owned(),
        start: Duration::ZERO,
        lifetime: None,
        expect: Expect::Success,
        metrics: None,
        ready: None,
        ready_timeout: DEFAULT_READY_TIMEOUT,
        stop_timeout: DEFAULT_STOP_TIMEOUT,
    };
    let Some(value) = value else {
        return Ok(during.map(during_workload).into_iter().collect());
    };
    let workloads = match value.get_ref() {
        DeValue::Table(_) => vec![parse_one(source, value, "workload", false)?],
        DeValue::Array(items) => {
            let mut workloads: Vec<Workload> = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let field = format!("workload[{}]", index + 1);
                let workload = parse_one(source, item, &field, items.len() > 1)?;
                if let Some(other) = workloads
                    .iter()
                    .find(|other| env_suffix(&other.name) == env_suffix(&workload.name))
                {
                    let span = item_key_span(item, "name");
                    return Err(source.error(
                        &span,
                        &format!("{field}.name"),
                        format!(
                            "duplicate workload name '{}' (taken by '{}'): each workload needs its own",
                            workload.name, other.name
                        ),
                    ));
                }
                workloads.push(workload);
            }
            workloads
        }
        _ => {
            return Err(source.error(
                &value.span(),
                "workload",
                "expected a [workload] table or [[workload]] tables",
            ));
        }
    };
    match (during, workloads.len()) {
        (None, _) => Ok(workloads),
        (Some(command), 0 | 1) => Ok(vec![during_workload(command)]),
        (Some(_), count) => Err(source.error(
            &value.span(),
            "workload",
            format!("--during takes the place of a single workload; this file has {count}"),
        )),
    }
}

fn item_key_span(item: &Value<'_>, key: &str) -> std::ops::Range<usize> {
    match item.get_ref() {
        DeValue::Table(table) => table.get(key).map(|v| v.span()).unwrap_or(item.span()),
        _ => item.span(),
    }
}

/// One workload table; `needs_name`: it is one of several, which faults and checks tell apart by
/// name.
fn parse_one(
    source: &Source<'_>,
    value: &Value<'_>,
    field: &str,
    needs_name: bool,
) -> Result<Workload, ExperimentError> {
    let table = table(source, value, field)?;
    let prefix = format!("{field}.");
    check_keys(source, table, &prefix, &WORKLOAD_KEYS)?;
    let command = required_string(source, table, value.span(), &prefix, "command")?;
    let name = match optional_string(source, table, &prefix, "name")? {
        Some(name) => {
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(source.error(
                    &item_key_span(value, "name"),
                    &format!("{prefix}name"),
                    format!("invalid name '{name}': expected a letter, then letters, digits, '-' or '_' (it names the check's $CHAOS_WORKLOAD_PID_NAME)"),
                ));
            }
            name
        }
        None if needs_name => {
            return Err(source.error(
                &value.span(),
                &format!("{prefix}name"),
                "missing: each of several workloads needs a name",
            ));
        }
        None => DEFAULT_NAME.to_owned(),
    };
    let start = match optional_string(source, table, &prefix, "start")? {
        None => Duration::ZERO,
        Some(text) => humantime::parse_duration(&text)
            .ok()
            .filter(|start| *start <= fault::MAX_DURATION)
            .ok_or_else(|| {
                source.error(
                    &item_key_span(value, "start"),
                    &format!("{prefix}start"),
                    format!("invalid offset '{text}': expected a duration from the experiment's start of at most 365 days, such as 0s, 10s or 1m30s"),
                )
            })?,
    };
    let lifetime = optional_duration(source, table, &prefix, "for")?;
    let expect = match optional_string(source, table, &prefix, "expect")? {
        None => Expect::Success,
        Some(text) => Expect::NAMES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, expect)| *expect)
            .ok_or_else(|| {
                source.error(
                    &item_key_span(value, "expect"),
                    &format!("{prefix}expect"),
                    format!("invalid expectation '{text}': expected success, failure or any"),
                )
            })?,
    };
    let metrics = match optional_string(source, table, &prefix, "metrics")? {
        None => None,
        Some(text) if text == JSON_LINES => Some(Metrics::JsonLines),
        Some(text) => Some(Metrics::Regex(metrics_regex(&text).map_err(|why| {
            source.error(
                &item_key_span(value, "metrics"),
                &format!("{prefix}metrics"),
                format!("invalid metrics '{text}': {why}; expected \"{JSON_LINES}\" or a regex with named groups, such as 'p99=(?P<p99_ms>[0-9.]+)'"),
            )
        })?)),
    };
    let ready = optional_string(source, table, &prefix, "ready")?;
    if ready.is_some() && !start.is_zero() {
        return Err(source.error(
            &item_key_span(value, "ready"),
            &format!("{prefix}ready"),
            "only a workload that starts at 0s can be waited for: the timeline starts once it is ready",
        ));
    }
    let ready_timeout = optional_duration(source, table, &prefix, "ready_timeout")?;
    if ready_timeout.is_some() && ready.is_none() {
        return Err(source.error(
            &item_key_span(value, "ready_timeout"),
            &format!("{prefix}ready_timeout"),
            "a timeout for no `ready` command: give the workload one, or drop this key",
        ));
    }
    Ok(Workload {
        name,
        command,
        start,
        lifetime,
        expect,
        metrics,
        ready,
        ready_timeout: ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
        stop_timeout: optional_duration(source, table, &prefix, "stop_timeout")?
            .unwrap_or(DEFAULT_STOP_TIMEOUT),
    })
}

fn metrics_regex(text: &str) -> Result<regex_lite::Regex, String> {
    let regex = regex_lite::Regex::new(text).map_err(|err| {
        err.to_string()
            .lines()
            .last()
            .unwrap_or("not a regex")
            .trim()
            .to_owned()
    })?;
    if regex.capture_names().flatten().next().is_none() {
        return Err("it has no named group".into());
    }
    Ok(regex)
}

/// Which workload `word` (a `pid`/`pid_tree` value) names: `Some(Ok(index))`, `Some(Err(why))`
/// when it names none of them, `None` when it is not a workload reference at all.
pub(super) fn pid_reference(word: &str, workloads: &[Workload]) -> Option<Result<usize, String>> {
    let name = match word.strip_prefix(PID_WORD)? {
        "" => {
            return Some(if workloads.is_empty() {
                Err("\"workload\" names the workload's PID, but the experiment has no [workload] (or --during)".into())
            } else {
                Ok(0)
            });
        }
        rest => rest.strip_prefix(':')?,
    };
    Some(
        workloads
            .iter()
            .position(|workload| workload.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = workloads.iter().map(|w| w.name.as_str()).collect();
                format!(
                    "no workload named '{name}': expected one of {}",
                    if names.is_empty() {
                        "none (the experiment has no workload)".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            }),
    )
}

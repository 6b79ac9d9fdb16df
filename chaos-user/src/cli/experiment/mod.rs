//! Scripted experiments (`chaos run FILE`): several faults on a timeline, an optional
//! steady-state check and workloads, read from a TOML file.
//!
//! A fault's keys are the long options of its command (`errno = "EIO"` is `--errno EIO`), so
//! the file and the command line share one definition: each fault is checked by the same clap
//! parser and the same fault checks as the command would be, and runs as that command.

pub mod metrics;
pub mod monkey;
pub mod report;
pub mod supervise;
pub mod workload;

use std::{ops::Range, path::Path, time::Duration};

use clap::{
    Parser as _,
    error::{ContextKind, ContextValue},
};
use thiserror::Error;
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

pub use self::workload::{WORKLOAD_KEYS, Workload};
use crate::{
    cli::{Cli, fault_commands},
    fault,
};

/// The keys of each table (README's reference lists them; a test checks it does).
pub const TOP_KEYS: [&str; 5] = [
    "description",
    "duration",
    "steady_state",
    "workload",
    "fault",
];
pub const STEADY_STATE_KEYS: [&str; 4] = ["command", "every", "timeout", "abort"];
/// A fault's own keys; every other key is a long option of its command.
pub const FAULT_KEYS: [&str; 4] = ["name", "command", "start", "for"];

/// How often the steady-state check runs during the faults, unless `every` says otherwise.
const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long one steady-state check may take before it counts as failed.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated experiment, ready to run.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub description: Option<String>,
    /// From the start of the experiment to the end of its last fault window.
    pub duration: Duration,
    pub steady_state: Option<SteadyState>,
    /// What runs beside the faults, in file order (`pid = "workload"` names the first).
    pub workloads: Vec<Workload>,
    pub faults: Vec<PlannedFault>,
}

#[derive(Debug, Clone)]
pub struct SteadyState {
    /// A shell command: exit status 0 means the system is healthy.
    pub command: String,
    pub every: Duration,
    pub timeout: Duration,
    /// End the faults at once when a check fails while they are active.
    pub abort: bool,
}

/// One fault of the timeline: a chaos command started `start` after the experiment.
#[derive(Debug, Clone)]
pub struct PlannedFault {
    pub name: String,
    /// One of [`fault_commands`].
    pub command: String,
    pub start: Duration,
    pub lifetime: Duration,
    /// The command's options, without `--for`.
    pub args: Vec<Arg>,
}

/// One word of a fault's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Literal(String),
    /// The PID of the workload of this index, known once it started (`pid = "workload"`,
    /// `pid = "workload:NAME"`).
    WorkloadPid(usize),
}

impl PlannedFault {
    /// The fault's command line after `chaos`, with the workloads' PIDs filled in.
    pub fn argv(&self, workload_pids: &[Option<u32>]) -> Vec<String> {
        let mut argv = self.words(workload_pids);
        argv.extend(self.lifetime_args());
        argv
    }

    /// `--for` and the fault's lifetime.
    pub fn lifetime_args(&self) -> [String; 2] {
        ["--for".into(), format!("{}ms", self.lifetime.as_millis())]
    }

    /// [`Self::argv`] without `--for`.
    pub fn words(&self, workload_pids: &[Option<u32>]) -> Vec<String> {
        let mut argv: Vec<String> = self.command.split(' ').map(str::to_owned).collect();
        argv.extend(self.args.iter().map(|arg| {
            match arg {
                Arg::Literal(word) => word.clone(),
                Arg::WorkloadPid(index) => workload_pids
                    .get(*index)
                    .copied()
                    .flatten()
                    .map(|pid| pid.to_string())
                    .unwrap_or_default(),
            }
        }));
        argv
    }
}

/// A file that is not a valid experiment: where, which field, and what is wrong.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{file}:{line}: {}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct ExperimentError {
    pub file: String,
    pub line: usize,
    /// `steady_state.every`, `fault[2].errno`… (none for a TOML syntax error).
    pub field: Option<String>,
    pub message: String,
}

/// Reads positions and names fields of one file for its errors.
struct Source<'a> {
    file: String,
    text: &'a str,
}

impl<'a> Source<'a> {
    /// The file as TOML: its top table, with these keys only, and where it is. A syntax error
    /// names its line.
    fn parse(
        file: &Path,
        text: &'a str,
        known: &[&str],
    ) -> Result<(Self, DeTable<'a>, Range<usize>), ExperimentError> {
        let source = Source {
            file: file.display().to_string(),
            text,
        };
        let root = DeTable::parse(text).map_err(|err| ExperimentError {
            file: source.file.clone(),
            line: source.line(&err.span().unwrap_or(0..0)),
            field: None,
            message: err.message().trim().to_owned(),
        })?;
        let span = root.span();
        let root = root.into_inner();
        check_keys(&source, &root, "", known)?;
        Ok((source, root, span))
    }

    fn line(&self, span: &Range<usize>) -> usize {
        let at = span.start.min(self.text.len());
        self.text.as_bytes()[..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(
        &self,
        span: &Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ExperimentError {
        ExperimentError {
            file: self.file.clone(),
            line: self.line(span),
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

type Table<'i> = DeTable<'i>;
type Value<'i> = Spanned<DeValue<'i>>;

/// The one `[fault]` table of a `chaos k8s run -f FILE`: a fault as in experiment files, without
/// a target (but `container_name`) or a start, with how long it lasts (`for`).
pub fn parse_pod_fault(file: &Path, text: &str) -> Result<PlannedFault, ExperimentError> {
    let (source, root, span) = Source::parse(file, text, &["fault"])?;
    let Some(value) = root.get("fault") else {
        return Err(source.error(
            &span,
            "fault",
            "missing: a chaos k8s fault file holds one [fault] table",
        ));
    };
    let context = FaultContext {
        source: &source,
        field: "fault".into(),
        duration: None,
        workloads: &[],
        role: Role::Pods,
    };
    context.parse(value)
}

impl Experiment {
    /// Parses and checks an experiment. `file` names it in errors; `during` is the command
    /// line's `--during`, which takes the place of the file's single workload.
    pub fn parse(file: &Path, text: &str, during: Option<&str>) -> Result<Self, ExperimentError> {
        let (source, root, root_span) = Source::parse(file, text, &TOP_KEYS)?;
        let description = optional_string(&source, &root, "", "description")?;
        let duration = optional_duration(&source, &root, "", "duration")?;
        let steady_state = match root.get("steady_state") {
            Some(value) => Some(steady_state(&source, value)?),
            None => None,
        };
        let workloads = workload::parse_workloads(&source, root.get("workload"), during)?;
        let Some(list) = root.get("fault") else {
            return Err(source.error(
                &root_span,
                "fault",
                "missing: an experiment needs at least one [[fault]] table",
            ));
        };
        let DeValue::Array(list_items) = list.get_ref() else {
            return Err(source.error(&list.span(), "fault", "expected [[fault]] tables"));
        };
        if list_items.is_empty() {
            return Err(source.error(
                &list.span(),
                "fault",
                "expected at least one [[fault]] table",
            ));
        }
        let mut faults = Vec::new();
        for (index, value) in list_items.iter().enumerate() {
            let context = FaultContext {
                source: &source,
                field: format!("fault[{}]", index + 1),
                duration,
                workloads: &workloads,
                role: Role::Experiment,
            };
            faults.push(context.parse(value)?);
        }
        let duration = duration.unwrap_or_else(|| {
            faults
                .iter()
                .map(|f| f.start + f.lifetime)
                .max()
                .unwrap_or_default()
        });
        if let Some((index, workload)) = workloads
            .iter()
            .enumerate()
            .find(|(_, workload)| workload.start >= duration)
        {
            let span = root.get("workload").map(Spanned::span).unwrap_or(root_span);
            return Err(source.error(
                &span,
                &format!("workload[{}].start", index + 1),
                format!(
                    "'{}' starts at {}, when the experiment has ended ({})",
                    workload.name,
                    humantime::format_duration(workload.start),
                    humantime::format_duration(duration)
                ),
            ));
        }
        Ok(Experiment {
            description,
            duration,
            steady_state,
            workloads,
            faults,
        })
    }
}

fn steady_state(source: &Source<'_>, value: &Value<'_>) -> Result<SteadyState, ExperimentError> {
    let table = table(source, value, "steady_state")?;
    let prefix = "steady_state.";
    check_keys(source, table, prefix, &STEADY_STATE_KEYS)?;
    let positive = |key: &str, default: Duration| -> Result<Duration, ExperimentError> {
        Ok(optional_duration(source, table, prefix, key)?.unwrap_or(default))
    };
    Ok(SteadyState {
        command: required_string(source, table, value.span(), prefix, "command")?,
        every: positive("every", DEFAULT_CHECK_EVERY)?,
        timeout: positive("timeout", DEFAULT_CHECK_TIMEOUT)?,
        abort: match table.get("abort") {
            None => false,
            Some(value) => match value.get_ref() {
                DeValue::Boolean(abort) => *abort,
                _ => {
                    return Err(source.error(
                        &value.span(),
                        &format!("{prefix}abort"),
                        "expected true or false",
                    ));
                }
            },
        },
    })
}

/// What parsing one `[[fault]]` table needs to know of the rest of the file.
struct FaultContext<'a> {
    source: &'a Source<'a>,
    /// `fault[N]`, counted from 1 as a person reads the file.
    field: String,
    duration: Option<Duration>,
    workloads: &'a [Workload],
    role: Role,
}

/// Whose fault table it is: who gives what the table leaves out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An experiment's `[[fault]]`: complete, checked as it is.
    Experiment,
    /// A table of the monkey's menu: it names no target and no start (the monkey picks both),
    /// may have a `weight`, and is checked against each kind of target by the monkey.
    Menu,
    /// The `[fault]` of a `chaos k8s run -f FILE`: no target (the selector picks pods; but
    /// `container_name`) and no start, checked on a pod.
    Pods,
}

impl Role {
    /// Why `key` is not allowed in a table of this role, if it is not.
    fn refuses(self, key: &str) -> Option<&'static str> {
        let target = TARGET_KEYS.contains(&key);
        match self {
            Role::Experiment => None,
            Role::Menu if target => Some(
                "not allowed in the monkey's menu: the monkey picks the target from its [[target]] tables",
            ),
            Role::Menu if key == "start" => {
                Some("not allowed in the monkey's menu: the monkey picks when, by its [schedule]")
            }
            Role::Pods if target && key != "container_name" => Some(
                "not allowed in a chaos k8s fault: the selector picks the pods (container_name picks a container of each)",
            ),
            Role::Pods if key == "start" => {
                Some("not allowed in a chaos k8s fault: it starts when the injectors do")
            }
            Role::Menu | Role::Pods => None,
        }
    }
}

/// The keys that name a fault's target, which the monkey's menu leaves to the monkey.
const TARGET_KEYS: [&str; 10] = [
    "pid",
    "pid_tree",
    "cgroup",
    "container",
    "container_name",
    "pod_uid",
    "pod",
    "comm",
    "iface",
    "netns",
];

impl FaultContext<'_> {
    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.field)
    }

    fn parse(&self, value: &Value<'_>) -> Result<PlannedFault, ExperimentError> {
        let source = self.source;
        let table = table(source, value, &self.field)?;
        let prefix = format!("{}.", self.field);
        let command_value = table.get("command");
        let command = required_string(source, table, value.span(), &prefix, "command")?;
        let command_span = command_value.map(Spanned::span).unwrap_or_default();
        let command = command.split_whitespace().collect::<Vec<_>>().join(" ");
        let commands = fault_commands();
        if !commands.contains(&command) {
            return Err(source.error(
                &command_span,
                &self.field("command"),
                format!(
                    "unknown command '{command}': expected one of {}",
                    commands.join(", ")
                ),
            ));
        }
        for (key, _) in table {
            if let Some(why) = self.role.refuses(&key.get_ref().replace('-', "_")) {
                return Err(source.error(&key.span(), &self.field(key.get_ref()), why));
            }
        }
        let name =
            optional_string(source, table, &prefix, "name")?.unwrap_or_else(|| self.field.clone());
        let start = match optional_string(source, table, &prefix, "start")? {
            None => Duration::ZERO,
            Some(text) => humantime::parse_duration(&text).ok().filter(|start| *start <= fault::MAX_DURATION).ok_or_else(|| {
                let span = table.get("start").map(Spanned::span).unwrap_or_default();
                source.error(&span, &self.field("start"), format!("invalid offset '{text}': expected a duration from the experiment's start of at most 365 days, such as 0s, 10s or 1m30s"))
            })?,
        };
        let lifetime = match (
            optional_duration(source, table, &prefix, "for")?,
            self.duration,
        ) {
            (Some(lifetime), _) => lifetime,
            (None, Some(duration)) if duration > start => duration - start,
            (None, _) => {
                let why = if self.role != Role::Experiment {
                    "missing: how long the fault lasts, such as for = \"5m\""
                } else {
                    "missing: how long the fault lasts (or give the experiment a duration)"
                };
                return Err(source.error(&value.span(), &self.field("for"), why));
            }
        };
        if let Some(duration) = self.duration
            && start + lifetime > duration
        {
            let span = table
                .get("for")
                .or(table.get("start"))
                .map(Spanned::span)
                .unwrap_or(value.span());
            return Err(source.error(
                &span,
                &self.field("for"),
                format!(
                    "the fault ends at {}, after the experiment's duration of {}",
                    humantime::format_duration(start + lifetime),
                    humantime::format_duration(duration)
                ),
            ));
        }
        let mut args = Vec::new();
        for (key, value) in table {
            let key_name = key.get_ref().as_ref();
            if FAULT_KEYS.contains(&key_name) || (self.role == Role::Menu && key_name == "weight") {
                continue;
            }
            args.extend(self.option(key_name, &key.span(), value)?);
        }
        let fault = PlannedFault {
            name,
            command,
            start,
            lifetime,
            args,
        };
        self.check_workload_started(table, &fault)?;
        match self.role {
            Role::Experiment => self.check(table, value, &fault, &[])?,
            // Any UID: each injector gives its pod's.
            Role::Pods => self.check(
                table,
                value,
                &fault,
                &["--pod-uid", "00000000-0000-0000-0000-000000000000"],
            )?,
            Role::Menu => {}
        }
        Ok(fault)
    }

    /// One key of a fault table as command-line words: `--key VALUE`, `--key` for true, nothing
    /// for false, `--key V` once per element of an array.
    fn option(
        &self,
        key: &str,
        key_span: &Range<usize>,
        value: &Value<'_>,
    ) -> Result<Vec<Arg>, ExperimentError> {
        let source = self.source;
        let field = self.field(key);
        if matches!(key, "json" | "detach" | "help" | "version") {
            return Err(source.error(
                key_span,
                &field,
                "not allowed in an experiment: chaos run sets how its faults run and report",
            ));
        }
        let flag = format!("--{}", key.replace('_', "-"));
        let word = |value: &Value<'_>| -> Result<Arg, ExperimentError> {
            match value.get_ref() {
                DeValue::String(text) if matches!(key, "pid" | "pid_tree" | "pid-tree") => {
                    match workload::pid_reference(text, self.workloads) {
                        None => Ok(Arg::Literal(text.to_string())),
                        Some(Ok(index)) => Ok(Arg::WorkloadPid(index)),
                        Some(Err(why)) => Err(source.error(&value.span(), &field, why)),
                    }
                }
                DeValue::String(text) => Ok(Arg::Literal(text.to_string())),
                DeValue::Integer(number) => Ok(Arg::Literal(
                    i64::from_str_radix(number.as_str(), number.radix())
                        .map(|n| n.to_string())
                        .unwrap_or_else(|_| number.as_str().to_owned()),
                )),
                DeValue::Float(number) => Ok(Arg::Literal(number.as_str().to_owned())),
                _ => Err(source.error(&value.span(), &field, "expected a string or a number")),
            }
        };
        match value.get_ref() {
            DeValue::Boolean(true) => Ok(vec![Arg::Literal(flag)]),
            DeValue::Boolean(false) => Ok(Vec::new()),
            DeValue::Array(items) => {
                let mut words = Vec::new();
                for item in items.iter() {
                    words.push(Arg::Literal(flag.clone()));
                    words.push(word(item)?);
                }
                Ok(words)
            }
            _ => Ok(vec![Arg::Literal(flag), word(value)?]),
        }
    }

    /// Checks the fault as its command would before attaching anything: clap's parser, then the
    /// fault's own checks, with `target` (options naming a target) added. Errors point at the
    /// key of the option that is wrong.
    fn check(
        &self,
        table: &Table<'_>,
        value: &Value<'_>,
        fault: &PlannedFault,
        target: &[&str],
    ) -> Result<(), ExperimentError> {
        let source = self.source;
        // Any PID stands in for a workload's: clap only checks that it is one. A --path a
        // workload will make (a server's data directory) need not exist yet: the fault's own
        // command checks it when it starts; here any directory stands in for it.
        let pids = vec![Some(1); self.workloads.len()];
        let mut argv = fault.argv(&pids);
        for at in 1..argv.len() {
            if argv[at - 1] == "--path" && !Path::new(&argv[at]).exists() {
                argv[at] = "/".into();
            }
        }
        argv.extend(target.iter().map(|word| word.to_string()));
        let argv = std::iter::once("chaos".to_owned()).chain(argv);
        let cli = Cli::try_parse_from(argv).map_err(|err| {
            let (span, key) = match flag_of(&err).and_then(|flag| key_of(table, &flag)) {
                Some((span, key)) => (span, key),
                None => (value.span(), None),
            };
            let field = key
                .map(|k| self.field(&k))
                .unwrap_or_else(|| self.field.clone());
            source.error(&span, &field, clap_message(&err))
        })?;
        let not_a_fault = || Err(fault::ParseError::NotAFault(fault.command.clone()));
        let checked = cli.command.check_fault().unwrap_or_else(not_a_fault);
        checked.map_err(|err| source.error(&value.span(), &self.field, err.to_string()))
    }
}

impl FaultContext<'_> {
    /// Refuses a fault that targets a workload before that workload starts: its PID is not
    /// known yet.
    fn check_workload_started(
        &self,
        table: &Table<'_>,
        fault: &PlannedFault,
    ) -> Result<(), ExperimentError> {
        for arg in &fault.args {
            let Arg::WorkloadPid(index) = arg else {
                continue;
            };
            let workload = &self.workloads[*index];
            if workload.start > fault.start {
                let span = table
                    .get("start")
                    .or(table.get("pid"))
                    .or(table.get("pid_tree"))
                    .map(Spanned::span)
                    .unwrap_or_default();
                return Err(self.source.error(
                    &span,
                    &self.field("start"),
                    format!(
                        "the fault starts at {}, before the workload '{}' it targets (at {})",
                        humantime::format_duration(fault.start),
                        workload.name,
                        humantime::format_duration(workload.start)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The long option a clap error is about (`errno` for `--errno <ERRNO>`).
fn flag_of(err: &clap::Error) -> Option<String> {
    let text = match err.get(ContextKind::InvalidArg)? {
        ContextValue::String(text) => text.clone(),
        ContextValue::Strings(texts) => texts.first()?.clone(),
        _ => return None,
    };
    let flag = text.strip_prefix("--")?;
    Some(flag.split([' ', '=']).next().unwrap_or(flag).to_owned())
}

/// The key of a fault table that spells `flag`, and where it is.
fn key_of(table: &Table<'_>, flag: &str) -> Option<(Range<usize>, Option<String>)> {
    table
        .iter()
        .find(|(key, _)| key.get_ref().replace('_', "-") == flag)
        .map(|(key, _)| (key.span(), Some(key.get_ref().to_string())))
}

/// Clap's message without its `error:` prefix, usage and help hint.
fn clap_message(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let message = rendered.split("\n\n").next().unwrap_or(&rendered).trim();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("unexpected argument", "unknown option")
        .replace(" found", "")
}

fn table<'a, 'i>(
    source: &Source<'_>,
    value: &'a Value<'i>,
    field: &str,
) -> Result<&'a Table<'i>, ExperimentError> {
    match value.get_ref() {
        DeValue::Table(table) => Ok(table),
        _ => Err(source.error(&value.span(), field, "expected a table")),
    }
}

/// Refuses a key the table does not know, naming the ones it does.
fn check_keys(
    source: &Source<'_>,
    table: &Table<'_>,
    prefix: &str,
    known: &[&str],
) -> Result<(), ExperimentError> {
    for (key, _) in table {
        if !known.contains(&key.get_ref().as_ref()) {
            return Err(source.error(
                &key.span(),
                &format!("{prefix}{}", key.get_ref()),
                format!("unknown key: expected one of {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn optional_string(
    source: &Source<'_>,
    table: &Table<'_>,
    prefix: &str,
    key: &str,
) -> Result<Option<String>, ExperimentError> {
    match table.get(key) {
        None => Ok(None),
        Some(value) => match value.get_ref() {
            DeValue::String(text) => Ok(Some(text.to_string())),
            _ => Err(source.error(
                &value.span(),
                &format!("{prefix}{key}"),
                "expected a string",
            )),
        },
    }
}

fn required_string(
    source: &Source<'_>,
    table: &Table<'_>,
    table_span: Range<usize>,
    prefix: &str,
    key: &str,
) -> Result<String, ExperimentError> {
    let text = optional_string(source, table, prefix, key)?
        .ok_or_else(|| source.error(&table_span, &format!("{prefix}{key}"), "missing"))?;
    if text.trim().is_empty() {
        let span = table.get(key).map(Spanned::span).unwrap_or(table_span);
        return Err(source.error(&span, &format!("{prefix}{key}"), "must not be empty"));
    }
    Ok(text)
}

fn optional_duration(
    source: &Source<'_>,
    table: &Table<'_>,
    prefix: &str,
    key: &str,
) -> Result<Option<Duration>, ExperimentError> {
    let Some(text) = optional_string(source, table, prefix, key)? else {
        return Ok(None);
    };
    let span = table.get(key).map(Spanned::span).unwrap_or_default();
    fault::parse_duration(&text)
        .map(Some)
        .map_err(|err| source.error(&span, &format!("{prefix}{key}"), err.to_string()))
}

#[cfg(test)]
mod tests;

//! `chaos monkey FILE`: the Chaos Monkey — at random moments of the allowed hours it picks a
//! fault from a menu and a target from a pool, runs it, and journals what it did. The picks come
//! from a seed, so a day can be planned ahead (`--plan`) and replayed exactly.

pub mod pool;
mod run;
pub mod schedule;

use std::{path::PathBuf, time::Duration};

use clap::Args;
use serde_json::{Value, json};
use toml::de::{DeTable, DeValue};

use self::{
    pool::{Candidate, Entry, Kind},
    schedule::{DAY_FULL_NAMES, DAY_NAMES, MenuItem, MonkeyTime, Pick, Schedule},
};
use super::{
    ExperimentError, FaultContext, PlannedFault, Source, check_keys, optional_duration,
    optional_string, table,
};
use crate::{
    cli::{
        error::{Error, exit},
        require_privileges,
    },
    fault,
    run::{Holder, defer_interrupts},
};

pub const TOP_KEYS: [&str; 5] = ["description", "seed", "schedule", "target", "fault"];
pub const SCHEDULE_KEYS: [&str; 5] = ["days", "hours", "mean_interval", "max_at_once", "budget"];
pub const POOL_KEYS: [&str; 8] = [
    "container",
    "label",
    "cgroup",
    "comm",
    "namespace",
    "selector",
    "image",
    "chaos_namespace",
];

/// The Chaos Monkey: random faults on random targets, within the hours you allow.
///
/// FILE (TOML) holds a menu of faults ([[fault]] tables as in `chaos run` files, without a
/// target or start, with an optional weight), a pool of targets ([[target]] tables: containers
/// by name pattern and/or label, cgroups by path pattern, processes by name, Kubernetes pods by
/// namespace and label selector, faulted through `chaos k8s run`) and a [schedule]:
/// the days and local hours it may strike, the mean time between picks, how many faults may run
/// at once and a total budget of fault time. Targets opt out with the container label
/// (or pod label) `chaos.monkey/opt-out=true`, the cgroup attribute `user.chaos.monkey.opt-out` = `true`, or
/// `CHAOS_MONKEY_OPT_OUT=true` in a process's environment.
///
/// The picks are drawn from --seed (a random one when not given, printed and journaled): the
/// same seed, file, pool and --start give the same plan, so `--plan` shows a day before it
/// happens and a seed replays it. Every pick, run or skipped, is a line of the JSON-lines
/// journal with its target and its fault's report. Each fault runs as its chaos command, in a
/// child process that dies with this one; Ctrl-C, SIGTERM and SIGHUP end the faults running and
/// the day.
///
/// Examples:
///   chaos monkey examples/monkey.toml --seed 42 --start '2026-12-07 09:00' --for 8h --plan
///   chaos monkey examples/monkey.toml --seed 42 --for 8h     # run at 09:00 on that day: live
///   chaos monkey monkey.toml --seed 42 --start '2026-12-07 09:00' --for 8h --time-scale 3600
///                                                  # the same day again, in 8 seconds
///
/// Exit status: 0 when every fault the monkey started ran (also after Ctrl-C); 1 when one
/// failed; 2 when the file or an option is invalid (the message names file, line and field).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct MonkeyArgs {
    /// The monkey's file: its [schedule], [[target]] pool and [[fault]] menu.
    pub file: PathBuf,

    /// The seed the picks are drawn from (default: the file's `seed`, else a random one).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Print the plan (every pick, its time, fault and target, and why a pick will be skipped)
    /// and exit without acting.
    #[arg(long)]
    pub plan: bool,

    /// Where the monkey's clock starts, in local time (default: now). With --seed it replays a
    /// day's plan.
    #[arg(long, value_name = "YYYY-MM-DD HH:MM", value_parser = schedule::parse_local)]
    pub start: Option<MonkeyTime>,

    /// How long the monkey runs, on its clock.
    #[arg(long = "for", value_name = "DURATION", default_value = "24h", value_parser = fault::parse_duration)]
    pub duration: Duration,

    /// The monkey's clock runs this many times faster than real time, faults' lengths included
    /// (for drills and tests: 3600 makes an hour a second).
    #[arg(long, value_name = "FACTOR", default_value = "1", value_parser = parse_scale)]
    pub time_scale: f64,

    /// The JSON-lines journal the monkey appends every pick to.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/log/chaos-monkey.jsonl"
    )]
    pub journal: PathBuf,

    /// Print the plan (with --plan) or the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(scale) if (1.0..=1_000_000.0).contains(&scale) => Ok(scale),
        _ => Err(format!(
            "invalid time scale '{text}': expected a factor from 1 (real time) to 1000000"
        )),
    }
}

/// The shortest mean time between picks: a chaos command takes a while to start.
const MIN_MEAN_INTERVAL: Duration = Duration::from_secs(1);
/// The most picks one run may expect: a plan is held whole, and journaled in its first line.
const MAX_EXPECTED_PICKS: u64 = 100_000;

/// A validated monkey file.
#[derive(Debug, Clone)]
pub struct MonkeyFile {
    pub description: Option<String>,
    pub seed: Option<u64>,
    pub schedule: Schedule,
    pub pool: Vec<Entry>,
    pub menu: Vec<MenuFault>,
}

/// One fault of the menu: the command it runs and what the planner needs of it.
#[derive(Debug, Clone)]
pub struct MenuFault {
    pub fault: PlannedFault,
    pub item: MenuItem,
}

impl MonkeyFile {
    /// Refuses a run so long for its mean interval that its plan would be huge.
    fn check_length(&self, args: &MonkeyArgs) -> Result<(), Error> {
        let expected = args.duration.as_millis() / self.schedule.mean_interval.as_millis().max(1);
        if expected as u64 > MAX_EXPECTED_PICKS {
            return Err(Error::Parse(fault::ParseError::MonkeyDayTooLong {
                duration: humantime::format_duration(args.duration).to_string(),
                mean: humantime::format_duration(self.schedule.mean_interval).to_string(),
                expected: expected as u64,
                max: MAX_EXPECTED_PICKS,
            }));
        }
        Ok(())
    }

    pub fn parse(file: &std::path::Path, text: &str) -> Result<Self, ExperimentError> {
        let (source, root, root_span) = Source::parse(file, text, &TOP_KEYS)?;
        let description = optional_string(&source, &root, "", "description")?;
        let seed = match root.get("seed") {
            None => None,
            Some(value) => Some(integer(&source, value, "seed", 0)?),
        };
        let Some(schedule_value) = root.get("schedule") else {
            return Err(source.error(
                &root_span,
                "schedule",
                "missing: a [schedule] table with at least mean_interval",
            ));
        };
        let schedule = parse_schedule(&source, schedule_value)?;
        let pool = array_of(&source, &root, root_span.clone(), "target")?
            .into_iter()
            .enumerate()
            .map(|(index, value)| parse_target(&source, value, &format!("target[{}]", index + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut menu = Vec::new();
        for (index, value) in array_of(&source, &root, root_span, "fault")?
            .into_iter()
            .enumerate()
        {
            menu.push(parse_menu_fault(&source, value, index, &pool)?);
        }
        Ok(MonkeyFile {
            description,
            seed,
            schedule,
            pool,
            menu,
        })
    }
}

/// The non-empty array of tables `[[key]]`.
fn array_of<'a, 'i>(
    source: &Source<'_>,
    root: &'a DeTable<'i>,
    root_span: std::ops::Range<usize>,
    key: &str,
) -> Result<Vec<&'a super::Value<'i>>, ExperimentError> {
    let Some(list) = root.get(key) else {
        return Err(source.error(
            &root_span,
            key,
            format!("missing: at least one [[{key}]] table"),
        ));
    };
    match list.get_ref() {
        DeValue::Array(items) if !items.is_empty() => Ok(items.iter().collect()),
        _ => Err(source.error(&list.span(), key, format!("expected [[{key}]] tables"))),
    }
}

/// A whole number of at least `min`.
fn integer(
    source: &Source<'_>,
    value: &super::Value<'_>,
    field: &str,
    min: u64,
) -> Result<u64, ExperimentError> {
    let (raw, number) = match value.get_ref() {
        DeValue::Integer(number) => (
            number.as_str().to_owned(),
            u64::from_str_radix(number.as_str(), number.radix()).ok(),
        ),
        other => (format!("{other:?}"), None),
    };
    number.filter(|n| *n >= min).ok_or_else(|| {
        source.error(
            &value.span(),
            field,
            format!("invalid value {raw}: expected a whole number of at least {min}"),
        )
    })
}

fn parse_schedule(
    source: &Source<'_>,
    value: &super::Value<'_>,
) -> Result<Schedule, ExperimentError> {
    let table = table(source, value, "schedule")?;
    let prefix = "schedule.";
    check_keys(source, table, prefix, &SCHEDULE_KEYS)?;
    let days = match table.get("days") {
        None => [true; 7],
        Some(list) => {
            let expected = format!("one of {} (or the whole name)", DAY_NAMES.join(", "));
            let DeValue::Array(items) = list.get_ref() else {
                return Err(source.error(
                    &list.span(),
                    "schedule.days",
                    format!("expected a list of days, each {expected}"),
                ));
            };
            let mut days = [false; 7];
            for item in items.iter() {
                let name = match item.get_ref() {
                    DeValue::String(name) => name.to_ascii_lowercase(),
                    other => format!("{other:?}"),
                };
                let Some(day) = (0..7).find(|&d| name == DAY_NAMES[d] || name == DAY_FULL_NAMES[d])
                else {
                    return Err(source.error(
                        &item.span(),
                        "schedule.days",
                        format!("unknown day '{name}': expected {expected}"),
                    ));
                };
                days[day] = true;
            }
            if !days.contains(&true) {
                return Err(source.error(
                    &list.span(),
                    "schedule.days",
                    format!("expected at least one day, each {expected}"),
                ));
            }
            days
        }
    };
    let hours = match optional_string(source, table, prefix, "hours")? {
        None => None,
        Some(text) => Some(schedule::parse_hours(&text).map_err(|why| {
            let span = table.get("hours").map(|v| v.span()).unwrap_or_default();
            source.error(&span, "schedule.hours", why)
        })?),
    };
    let mean_interval =
        optional_duration(source, table, prefix, "mean_interval")?.ok_or_else(|| {
            source.error(
                &value.span(),
                "schedule.mean_interval",
                "missing: the mean time between two picks, such as \"2h\"",
            )
        })?;
    if mean_interval < MIN_MEAN_INTERVAL {
        let span = table
            .get("mean_interval")
            .map(|v| v.span())
            .unwrap_or_default();
        return Err(source.error(
            &span,
            "schedule.mean_interval",
            format!(
                "{} is too short: expected at least 1s",
                humantime::format_duration(mean_interval)
            ),
        ));
    }
    let max_at_once = match table.get("max_at_once") {
        None => 1,
        Some(value) => integer(source, value, "schedule.max_at_once", 1)? as usize,
    };
    Ok(Schedule {
        days,
        hours,
        mean_interval,
        max_at_once,
        budget: optional_duration(source, table, prefix, "budget")?,
    })
}

fn parse_target(
    source: &Source<'_>,
    value: &super::Value<'_>,
    field: &str,
) -> Result<Entry, ExperimentError> {
    let table = table(source, value, field)?;
    let prefix = format!("{field}.");
    check_keys(source, table, &prefix, &POOL_KEYS)?;
    let string = |key: &str| -> Result<Option<String>, ExperimentError> {
        let text = optional_string(source, table, &prefix, key)?;
        if let Some(text) = &text
            && text.trim().is_empty()
        {
            let span = table.get(key).map(|v| v.span()).unwrap_or_default();
            return Err(source.error(&span, &format!("{prefix}{key}"), "must not be empty"));
        }
        Ok(text)
    };
    let (container, label, cgroup, comm) = (
        string("container")?,
        string("label")?,
        string("cgroup")?,
        string("comm")?,
    );
    let (namespace, selector) = (string("namespace")?, string("selector")?);
    let mut options = Vec::new();
    for (key, option) in [
        ("image", "--image"),
        ("chaos_namespace", "--chaos-namespace"),
    ] {
        if let Some(value) = string(key)? {
            if namespace.is_none() && selector.is_none() {
                let span = table.get(key).map(|v| v.span()).unwrap_or_default();
                return Err(source.error(
                    &span,
                    &format!("{prefix}{key}"),
                    "goes with pods only (namespace and selector): the image and namespace of their injector pods",
                ));
            }
            if key == "chaos_namespace" && !crate::k8s::selector::is_dns_label(&value) {
                let span = table.get(key).map(|v| v.span()).unwrap_or_default();
                return Err(source.error(
                    &span,
                    &format!("{prefix}{key}"),
                    format!("invalid namespace '{value}': expected a namespace's name (lower-case letters, digits and '-')"),
                ));
            }
            options.extend([option.to_owned(), value]);
        }
    }
    let kinds = [
        container.is_some() || label.is_some(),
        cgroup.is_some(),
        comm.is_some(),
        namespace.is_some() || selector.is_some(),
    ];
    if kinds.iter().filter(|&&k| k).count() != 1 {
        return Err(source.error(
            &value.span(),
            field,
            "expected one kind of target: container and/or label, cgroup, comm, or namespace and selector (pods)",
        ));
    }
    if kinds[3] {
        return parse_pods(source, table, value, &prefix, namespace, selector, options);
    }
    Ok(match (cgroup, comm) {
        (Some(cgroup), _) => {
            if !cgroup.starts_with('/')
                || cgroup[..cgroup.rfind('/').unwrap_or(0)].contains(['*', '?'])
            {
                let span = table.get("cgroup").map(|v| v.span()).unwrap_or_default();
                return Err(source.error(&span, &format!("{prefix}cgroup"), format!("invalid cgroup '{cgroup}': expected an absolute path, with * or ? in its last component only")));
            }
            Entry::Cgroups(cgroup)
        }
        (_, Some(comm)) => Entry::Processes(comm),
        _ => Entry::Containers {
            name: container,
            label,
        },
    })
}

/// A `[[target]]` of pods: `namespace` and `selector`, both required.
fn parse_pods(
    source: &Source<'_>,
    table: &DeTable<'_>,
    value: &super::Value<'_>,
    prefix: &str,
    namespace: Option<String>,
    selector: Option<String>,
    options: Vec<String>,
) -> Result<Entry, ExperimentError> {
    let span = |key: &str| table.get(key).map(|v| v.span()).unwrap_or(value.span());
    let (Some(namespace), Some(selector)) = (namespace, selector) else {
        return Err(source.error(
            &value.span(),
            prefix.trim_end_matches('.'),
            "pods need both namespace and selector (a label selector as `kubectl -l` takes it)",
        ));
    };
    if !crate::k8s::selector::is_dns_label(&namespace) {
        return Err(source.error(
            &span("namespace"),
            &format!("{prefix}namespace"),
            format!("invalid namespace '{namespace}': expected a namespace's name (lower-case letters, digits and '-')"),
        ));
    }
    let selector = crate::k8s::selector::check(&selector).map_err(|err| {
        source.error(
            &span("selector"),
            &format!("{prefix}selector"),
            err.to_string(),
        )
    })?;
    if !cfg!(feature = "k8s") {
        return Err(source.error(
            &value.span(),
            prefix.trim_end_matches('.'),
            "pods are faulted through `chaos k8s`, which this build leaves out (the `k8s` cargo feature; the node image's binary): run the monkey where `chaos k8s` works",
        ));
    }
    Ok(Entry::Pods {
        namespace,
        selector,
        options,
    })
}

fn parse_menu_fault(
    source: &Source<'_>,
    value: &super::Value<'_>,
    index: usize,
    pool: &[Entry],
) -> Result<MenuFault, ExperimentError> {
    let field = format!("fault[{}]", index + 1);
    let context = FaultContext {
        source,
        field: field.clone(),
        duration: None,
        workloads: &[],
        role: super::Role::Menu,
    };
    let fault = context.parse(value)?;
    let table = table(source, value, &field)?;
    let weight = match table.get("weight") {
        None => 1,
        Some(value) => u32::try_from(integer(source, value, &format!("{field}.weight"), 1)?)
            .unwrap_or(u32::MAX),
    };
    let checks: Vec<Result<(), ExperimentError>> = Kind::CHECKED
        .iter()
        .map(|kind| {
            let (option, stand_in) = kind.option();
            context.check(table, value, &fault, &[option, stand_in])
        })
        .collect();
    let mut accepts: Vec<bool> = checks.iter().map(Result::is_ok).collect();
    // A hostNetwork pod's network is its node's.
    accepts.push(accepts[Kind::Pod.index()] && !crate::k8s::plan::is_network_fault(&fault.command));
    if !accepts.contains(&true) {
        // Wrong whatever the target: the fault's own options are.
        return Err(checks
            .into_iter()
            .find_map(Result::err)
            .expect("a failed check"));
    }
    let in_pool: Vec<Kind> = pool.iter().map(Entry::kind).collect();
    if !in_pool.iter().any(|kind| accepts[kind.index()]) {
        let accepted: Vec<String> = Kind::CHECKED
            .iter()
            .filter(|k| accepts[k.index()])
            .map(|k| format!("a {}", k.as_str()))
            .collect();
        let mut held: Vec<&str> = in_pool.iter().map(|k| k.plural()).collect();
        held.sort();
        held.dedup();
        return Err(source.error(
            &value.span(),
            &field,
            format!(
                "`chaos {}` can target {}, and the pool holds only {}",
                fault.command,
                match accepted.split_last() {
                    Some((last, [])) => last.clone(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => String::new(),
                },
                held.join(" and ")
            ),
        ));
    }
    Ok(MenuFault {
        item: MenuItem {
            weight,
            lifetime: fault.lifetime,
            accepts,
        },
        fault,
    })
}

/// The day the monkey will have: the file, the seed, its clock, the pool as it is now, and the
/// picks drawn.
pub struct Day {
    pub file: MonkeyFile,
    pub seed: u64,
    /// Whether the seed was drawn at random (neither --seed nor the file gave one).
    pub random_seed: bool,
    pub start: MonkeyTime,
    pub end: MonkeyTime,
    pub time_scale: f64,
    pub candidates: Vec<Candidate>,
    pub picks: Vec<Pick>,
}

impl Day {
    pub fn new(file: MonkeyFile, args: &MonkeyArgs) -> Self {
        let given = args.seed.or(file.seed);
        let seed = given.unwrap_or_else(crate::rng::random_seed);
        let start = args.start.unwrap_or_else(now);
        let end = start + args.duration.as_millis() as u64;
        let candidates = pool::candidates(&file.pool);
        let kinds: Vec<usize> = candidates.iter().map(|c| c.kind.index()).collect();
        let menu: Vec<MenuItem> = file.menu.iter().map(|m| m.item.clone()).collect();
        let picks = schedule::plan(&file.schedule, &menu, &kinds, seed, start, end);
        Day {
            file,
            seed,
            random_seed: given.is_none(),
            start,
            end,
            time_scale: args.time_scale,
            candidates,
            picks,
        }
    }

    /// A pick as the plan and the journal show it, on its planned target.
    pub fn pick_json(&self, index: usize) -> Value {
        let pick = &self.picks[index];
        let menu = &self.file.menu[pick.fault];
        json!({
            "pick": index + 1,
            "at": schedule::format(pick.at),
            "fault": menu.fault.name,
            "command": menu.fault.command,
            "for_ms": menu.fault.lifetime.as_millis() as u64,
            "target": pick.target.map(|t| self.candidates[t].json()),
            "skip": pick.skip.map(|s| s.as_str()),
        })
    }

    pub fn plan_json(&self) -> Value {
        json!({
            "seed": self.seed,
            "start": schedule::format(self.start),
            "end": schedule::format(self.end),
            "time_scale": self.time_scale,
            "candidates": self.candidates.iter().map(Candidate::json).collect::<Vec<_>>(),
            "picks": (0..self.picks.len()).map(|i| self.pick_json(i)).collect::<Vec<_>>(),
        })
    }

    pub fn plan_human(&self) -> String {
        let mut text = format!(
            "chaos monkey: seed {}, from {} to {}, {} target(s) in the pool, {} pick(s)\n",
            self.seed,
            schedule::format(self.start),
            schedule::format(self.end),
            self.candidates.len(),
            self.picks.len()
        );
        if self.random_seed {
            text += &format!(
                "  (a random seed: --seed {} --start '{}' replays this plan)\n",
                self.seed,
                schedule::format(self.start)
                    .replace('T', " ")
                    .get(..16)
                    .unwrap_or_default()
            );
        }
        for (index, pick) in self.picks.iter().enumerate() {
            let fault = &self.file.menu[pick.fault].fault;
            let target = pick
                .target
                .map(|t| {
                    let c = &self.candidates[t];
                    format!("{} {}", c.kind.as_str(), c.name)
                })
                .unwrap_or_else(|| "no target".into());
            let outcome = pick
                .skip
                .map(|s| format!("  (skipped: {})", s.as_str()))
                .unwrap_or_default();
            text += &format!(
                "  {:>3}. {}  {} ({}, {}) on {target}{outcome}\n",
                index + 1,
                schedule::format(pick.at),
                fault.name,
                fault.command,
                humantime::format_duration(fault.lifetime)
            );
        }
        text
    }
}

fn now() -> MonkeyTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

pub fn execute(args: MonkeyArgs) -> Result<u8, Error> {
    let text = std::fs::read_to_string(&args.file).map_err(|source| Error::ExperimentFile {
        path: args.file.clone(),
        source,
    })?;
    let file = MonkeyFile::parse(&args.file, &text)?;
    file.check_length(&args)?;
    if !args.plan {
        defer_interrupts();
    }
    let day = Day::new(file, &args);
    if args.plan {
        crate::report::print_final(&day.plan_human(), || day.plan_json().to_string(), args.json);
        return Ok(exit::OK);
    }
    // Pods are faulted by injector pods: only the other kinds need privileges here.
    if day.file.pool.iter().any(|entry| entry.kind() != Kind::Pod) {
        require_privileges()?;
    }
    let mut holder = Holder::new().map_err(Error::io("listen for Ctrl-C, SIGTERM and SIGHUP"))?;
    let report = holder.block_on(async |interrupts| run::run(&day, &args, interrupts).await)?;
    crate::report::print_final(&report.human(), || report.json().to_string(), args.json);
    Ok(if report.failed == 0 {
        exit::OK
    } else {
        exit::FAILURE
    })
}

#[cfg(test)]
mod tests;

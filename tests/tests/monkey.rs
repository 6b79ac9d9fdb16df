//! `chaos monkey`: a day of random faults from a seed, on a monkey clock that makes the day pass
//! in seconds. The plan is the same for the same seed and pool and keeps to the allowed days
//! and hours; the day that runs follows its plan, each fault on real processes and containers of
//! the pool, never on one that opted out, never more at once than the cap; Ctrl-C and SIGTERM
//! end the faults running; a bad file changes nothing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use chaos_tests::*;
use serde_json::Value;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

/// The comm of the victims the pool names: a link to the victim binary under this name.
const COMM: &str = "monkey-victim";

/// A monkey file for the tests' pool: victims by name, containers by pattern and label.
fn monkey_file(dir: &Path, schedule: &str, menu: &str) -> PathBuf {
    let text = format!(
        r#"
[schedule]
{schedule}

[[target]]
comm = "{COMM}"

[[target]]
container = "chaos-test-monkey-*-{pid}"
label = "tier=web"

{menu}
"#,
        pid = std::process::id()
    );
    let path = dir.join("monkey.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const WORKDAY: &str = r#"
days = ["mon", "tue", "wed", "thu", "fri"]
hours = "09:00-17:00"
mean_interval = "40m"
max_at_once = 1
budget = "3h"
"#;

const REFUSE: &str = r#"
[[fault]]
name = "refused"
command = "fail"
op = "connect"
errno = "ECONNREFUSED"
for = "20m"
"#;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("chaos-monkey-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A victim whose comm is [`COMM`], connecting to a listener of its own; `opt_out` puts
/// CHAOS_MONKEY_OPT_OUT=true in its environment.
fn named_victim(dir: &Path, opt_out: bool) -> Victim {
    let link = dir.join(COMM);
    if !link.exists() {
        std::os::unix::fs::symlink(VICTIM, &link).unwrap();
    }
    let mut command = Command::new(&link);
    command.args(["connect", "-"]);
    if opt_out {
        command.env("CHAOS_MONKEY_OPT_OUT", "true");
    }
    let victim = Victim::spawn(command, false, None);
    victim.wait_for_calls(1);
    victim
}

/// The pool of the tests: two victims and one that opted out; a container of the web tier, one
/// of the web tier that opted out, one of another tier. Each container runs a victim.
struct Pool {
    victims: Vec<Victim>,
    opted_out: Victim,
    web: TestContainer,
    in_web: Victim,
    bystanders: Vec<(TestContainer, Victim)>,
}

impl Pool {
    fn start(dir: &Path) -> Self {
        let victims = vec![named_victim(dir, false), named_victim(dir, false)];
        let opted_out = named_victim(dir, true);
        let web = TestContainer::start_labelled("monkey-web", VICTIM, &["tier=web"]);
        let in_web = web.exec_victim("connect", "-");
        let bystanders = [
            ("monkey-out", vec!["tier=web", "chaos.monkey/opt-out=true"]),
            ("monkey-db", vec!["tier=db"]),
        ]
        .into_iter()
        .map(|(name, labels)| {
            let container = TestContainer::start_labelled(name, VICTIM, &labels);
            let victim = container.exec_victim("connect", "-");
            (container, victim)
        })
        .collect();
        Pool {
            victims,
            opted_out,
            web,
            in_web,
            bystanders,
        }
    }
}

fn plan(file: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["monkey", file.to_str().unwrap(), "--plan", "--json"];
    args.extend_from_slice(extra);
    let output = chaos_command(&args).env("TZ", "UTC").output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_report(&output)
}

/// The journal's whole lines (the monkey may be writing the next one).
fn journal(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    whole
        .lines()
        .map(|line| serde_json::from_str(line).expect("a journal line is JSON"))
        .collect()
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

/// Failed calls of a victim, once it has called again after now.
fn failures(victim: &Victim) -> usize {
    victim.wait_for_call_after(monotonic_ns());
    victim.calls().iter().filter(|c| c.errno.is_some()).count()
}

/// The plan of a seed is the same each time, another seed's is not, and every pick falls on an
/// allowed day and hour (Saturday to Monday: Monday 09:00-17:00 only).
#[test]
fn a_seed_gives_the_same_plan_within_the_allowed_hours() {
    let scratch = Scratch::new("plan");
    let _victims = [
        named_victim(&scratch.0, false),
        named_victim(&scratch.0, false),
    ];
    let menu = format!(
        "{REFUSE}\n[[fault]]\nname = \"frozen\"\ncommand = \"pause\"\nfor = \"10m\"\nweight = 2\n"
    );
    let file = monkey_file(&scratch.0, WORKDAY, &menu);
    let week = ["--start", "2026-12-05 00:00", "--for", "3d"];
    let first = plan(&file, &[&["--seed", "11"], &week[..]].concat());
    assert_eq!(first, plan(&file, &[&["--seed", "11"], &week[..]].concat()));
    let other = plan(&file, &[&["--seed", "12"], &week[..]].concat());
    assert_ne!(first["picks"], other["picks"]);
    assert_eq!(first["candidates"].as_array().unwrap().len(), 2, "{first}");
    let picks = first["picks"].as_array().unwrap();
    assert!(picks.len() >= 4, "{first}");
    for pick in picks {
        let at = pick["at"].as_str().unwrap();
        assert!(
            at.starts_with("2026-12-07T"),
            "a pick at {at}, not on Monday"
        );
        let hour: u32 = at[11..13].parse().unwrap();
        assert!(
            (9..17).contains(&hour),
            "a pick at {at}, outside 09:00-17:00"
        );
        assert_eq!(pick["target"]["kind"], "process");
    }
    for fault in ["refused", "frozen"] {
        assert!(picks.iter().any(|p| p["fault"] == fault), "{first}");
    }
    // The example reads and plans.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/monkey.toml");
    let example = plan(
        &example,
        &["--seed", "7", "--start", "2026-12-07 09:00", "--for", "8h"],
    );
    assert!(
        !example["picks"].as_array().unwrap().is_empty(),
        "{example}"
    );
}

/// On the days the clocks change, the hours stay where they are on the wall: from 09:00 to
/// 17:00 local time, the first hour included.
#[test]
fn daylight_saving_days_keep_their_hours() {
    let scratch = Scratch::new("dst");
    let _victim = named_victim(&scratch.0, false);
    let schedule = "hours = \"09:00-17:00\"\nmean_interval = \"5m\"\n";
    let file = monkey_file(&scratch.0, schedule, &REFUSE.replace("20m", "1m"));
    for (day, offset) in [("2026-03-29", "+02:00"), ("2026-10-25", "+01:00")] {
        let start = format!("{day} 00:00");
        let args = ["--seed", "2", "--start", &start, "--for", "1d"];
        let output = chaos_command(
            &[
                &["monkey", file.to_str().unwrap(), "--plan", "--json"][..],
                &args[..],
            ]
            .concat(),
        )
        .env("TZ", "Europe/Berlin")
        .output()
        .unwrap();
        assert_eq!(output.status.code(), Some(0));
        let planned = json_report(&output);
        let picks = planned["picks"].as_array().unwrap();
        assert!(picks.len() > 40, "{planned}");
        for pick in picks {
            let at = pick["at"].as_str().unwrap();
            assert!(at.starts_with(day) && at.ends_with(offset), "{at}");
            let hour: u32 = at[11..13].parse().unwrap();
            assert!((9..17).contains(&hour), "a pick at {at}");
        }
        let first = picks[0]["at"].as_str().unwrap();
        assert!(
            first[11..].starts_with("09:"),
            "the first hour was lost: {first}"
        );
    }
    // A time the clocks skip is refused, naming it.
    let output = chaos_command(&[
        "monkey",
        file.to_str().unwrap(),
        "--plan",
        "--start",
        "2026-03-29 02:30",
    ])
    .env("TZ", "Europe/Berlin")
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("'2026-03-29 02:30'"));
}

/// Cgroups join the pool by pattern, unless their `user.chaos.monkey.opt-out` says `true`.
#[test]
fn cgroups_join_the_pool_unless_marked() {
    let scratch = Scratch::new("cgroups");
    let cgroups = ["a", "b", "c"].map(|name| TestCgroup::new(&format!("monkey-{name}")));
    for (cgroup, mark) in cgroups[1..].iter().zip(["true", "false"]) {
        let path = std::ffi::CString::new(cgroup.path.to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated strings and a buffer of the given length.
        let set = unsafe {
            libc::setxattr(
                path.as_ptr(),
                c"user.chaos.monkey.opt-out".as_ptr(),
                mark.as_ptr().cast(),
                mark.len(),
                0,
            )
        };
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
    }
    let pattern = cgroups[0]
        .path
        .to_str()
        .unwrap()
        .replace("monkey-a", "monkey-?");
    let text = format!(
        "[schedule]\nmean_interval = \"1h\"\n[[target]]\ncgroup = \"{pattern}\"\n{}",
        REFUSE
    );
    let file = scratch.0.join("cgroups.toml");
    std::fs::write(&file, text).unwrap();
    let planned = plan(&file, &["--seed", "1"]);
    let names: Vec<&str> = planned["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cgroup"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [&cgroups[0], &cgroups[2]].map(|c| c.path.to_str().unwrap()),
        "{planned}"
    );
}

/// A working day in 20 seconds: the journal holds the plan's picks in order, each fault on its
/// target, and its skips (at the cap, the budget spent); the victims picked fail exactly as often
/// as the faults' reports say, those that opted out and those outside the pool never; no two
/// faults ever ran at once.
#[test]
fn a_day_follows_its_plan_on_its_pool_only() {
    let scratch = Scratch::new("day");
    let pool = Pool::start(&scratch.0);
    let file = monkey_file(&scratch.0, WORKDAY, REFUSE);
    let day = ["--seed", "1", "--start", "2026-12-07 08:00", "--for", "10h"];
    let planned = plan(&file, &day);
    let candidates = planned["candidates"].as_array().unwrap();
    assert_eq!(
        candidates.len(),
        3,
        "two victims and the web container: {planned}"
    );
    assert!(
        candidates
            .iter()
            .any(|c| c["container"] == pool.web.id.as_str())
    );
    let planned_picks = planned["picks"].as_array().unwrap();
    let runs = |kind: &str| {
        planned_picks
            .iter()
            .filter(|p| p["skip"].is_null() && p["target"]["kind"] == kind)
            .count()
    };
    assert!(
        runs("process") > 0 && runs("container") > 0,
        "seed 1 picks both kinds: {planned}"
    );
    for skip in ["at-cap", "budget-spent"] {
        assert!(
            planned_picks.iter().any(|p| p["skip"] == skip),
            "seed 1 has a pick skipped {skip}: {planned}"
        );
    }

    let journal_path = scratch.0.join("journal.jsonl");
    let mut args = vec!["monkey", file.to_str().unwrap(), "--json"];
    args.extend_from_slice(&day);
    args.extend_from_slice(&[
        "--time-scale",
        "1800",
        "--journal",
        journal_path.to_str().unwrap(),
    ]);
    let started = Instant::now();
    let output = chaos_command(&args).env("TZ", "UTC").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "10 hours at 1800 times took {:?}",
        started.elapsed()
    );
    let lines = journal(&journal_path);
    let report = json_report(&output);
    assert_eq!(report["failed"], 0, "{report}");

    // The journal's picks are the plan's, in order, on the planned targets.
    let done: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "skip" || l["event"] == "start")
        .collect();
    assert_eq!(done.len(), planned_picks.len(), "{stderr}");
    for (line, pick) in done.iter().zip(planned_picks) {
        for key in ["pick", "at", "fault", "target", "skip"] {
            assert_eq!(
                line[key], pick[key],
                "{key} of {line} against the plan {pick}"
            );
        }
    }
    let ends = events(&lines, "end");
    assert_eq!(ends.len(), events(&lines, "start").len());
    assert_eq!(report["started"].as_u64().unwrap() as usize, ends.len());

    // Each target failed exactly as often as the faults on it injected.
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    for end in &ends {
        assert_eq!(end["exit_code"], 0, "{end}");
        let target = &end["target"];
        let key = target["pid"]
            .as_str()
            .or(target["container"].as_str())
            .unwrap()
            .to_owned();
        *injected.entry(key).or_default() +=
            end["report"]["faults"][0]["injected"].as_u64().unwrap();
    }
    for victim in &pool.victims {
        let expected = injected
            .get(&victim.pid().to_string())
            .copied()
            .unwrap_or(0);
        assert_eq!(failures(victim) as u64, expected, "victim {}", victim.pid());
    }
    let in_web = injected.get(&pool.web.id).copied().unwrap_or(0);
    assert!(in_web > 0, "{injected:?}");
    assert_eq!(failures(&pool.in_web) as u64, in_web);
    assert_eq!(failures(&pool.opted_out), 0, "an opted-out process was hit");
    for (container, victim) in &pool.bystanders {
        assert_eq!(failures(victim), 0, "{} was hit", container.name);
    }

    // Never two at once, in real time.
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for start in events(&lines, "start") {
        let end = ends.iter().find(|e| e["pick"] == start["pick"]).unwrap();
        spans.push((
            start["time_ms"].as_u64().unwrap(),
            end["time_ms"].as_u64().unwrap(),
        ));
    }
    for (from, _) in &spans {
        let at_once = spans.iter().filter(|(a, b)| a <= from && from < b).count();
        assert_eq!(at_once, 1, "faults at once: {spans:?}");
    }
    let finish = events(&lines, "finish");
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["seed"], 1);
}

/// SIGTERM while a fault runs: the fault ends at once with its report, the journal says so and
/// the victim calls freely again.
#[test]
fn sigterm_ends_the_day_and_its_faults() {
    let scratch = Scratch::new("term");
    let victim = named_victim(&scratch.0, false);
    let schedule = "mean_interval = \"1s\"\n";
    let menu = REFUSE.replace("20m", "5m");
    let file = monkey_file(&scratch.0, schedule, &menu);
    let journal_path = scratch.0.join("journal.jsonl");
    let monkey = Chaos::spawn(&mut chaos_command(&[
        "monkey",
        file.to_str().unwrap(),
        "--seed",
        "3",
        "--for",
        "10m",
        "--journal",
        journal_path.to_str().unwrap(),
    ]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while events(&journal(&journal_path), "start").is_empty() {
        assert!(Instant::now() < deadline, "no fault started in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    victim.wait_for_failure();
    let signalled = Instant::now();
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(monkey.id() as i32, libc::SIGTERM) };
    let output = monkey.wait_with_output().unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(0));
    let lines = journal(&journal_path);
    let end = events(&lines, "end");
    assert_eq!(end.len(), 1, "{lines:?}");
    assert_eq!(end[0]["report"]["ended_by"], "sigterm", "{}", end[0]);
    assert_eq!(events(&lines, "finish")[0]["ended_by"], "sigterm");
    let after = monotonic_ns();
    victim.wait_for_call_after(after);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        victim
            .calls_begun_after(after)
            .iter()
            .all(|c| c.errno.is_none()),
        "the victim still fails after the monkey ended"
    );
    assert_no_chaos_programs();
}

/// A bad file or option: exit 2, the message names where and what, no journal written.
#[test]
fn bad_input_is_refused() {
    let scratch = Scratch::new("bad");
    let journal_path = scratch.0.join("journal.jsonl");
    let bad_menu = "[[fault]]\ncommand = \"fail\"\nop = \"connect\"\npid = 1\nfor = \"1m\"\n";
    let file = monkey_file(&scratch.0, WORKDAY, bad_menu);
    for (args, named) in [
        (vec![], "fault[1].pid: not allowed in the monkey's menu"),
        (vec!["--time-scale", "0"], "invalid time scale '0'"),
        (vec!["--start", "monday"], "invalid time 'monday'"),
    ] {
        let mut all = vec![
            "monkey",
            file.to_str().unwrap(),
            "--journal",
            journal_path.to_str().unwrap(),
        ];
        all.extend(args);
        let output = chaos(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(!journal_path.exists());
    }
}

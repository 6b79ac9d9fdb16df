use std::path::{Path, PathBuf};

use super::*;

fn parse(text: &str) -> Result<Experiment, ExperimentError> {
    Experiment::parse(Path::new("x.toml"), text, None)
}

#[test]
fn a_fault_runs_as_its_command_line() {
    let experiment = parse(
        r#"
description = "refused connects to the database"
[workload]
command = "./client"
[[fault]]
name = "db down"
command = "fail"
start = "2s"
for = "10s"
pid_tree = "workload"
op = ["connect", "send"]
port = 5432
errno = "ECONNREFUSED"
dry_run = true
force = false
"#,
    )
    .unwrap();
    assert_eq!(experiment.duration, Duration::from_secs(12));
    assert_eq!(experiment.workloads[0].command, "./client");
    assert_eq!(experiment.workloads[0].name, "workload");
    let fault = &experiment.faults[0];
    assert_eq!(fault.name, "db down");
    assert_eq!(fault.start, Duration::from_secs(2));
    let mut argv = fault.argv(&[Some(77)]);
    // Table keys come in an order of their own; compare the options as a set of pairs.
    assert_eq!(argv.drain(..1).collect::<Vec<_>>(), ["fail"]);
    let line = argv.join(" ");
    for expected in [
        "--pid-tree 77",
        "--op connect --op send",
        "--port 5432",
        "--errno ECONNREFUSED",
        "--dry-run",
        "--for 10000ms",
    ] {
        assert!(line.contains(expected), "{expected:?} not in {line:?}");
    }
    assert!(!line.contains("--force"), "{line}");
}

#[test]
fn faults_last_until_the_experiment_ends_when_it_has_a_duration() {
    let experiment = parse(
        r#"
duration = "30s"
[steady_state]
command = "true"
[[fault]]
command = "net drop"
start = "10s"
iface = "veth0"
probability = 0.5
"#,
    )
    .unwrap();
    assert_eq!(experiment.faults[0].lifetime, Duration::from_secs(20));
    assert_eq!(experiment.faults[0].name, "fault[1]");
    let check = experiment.steady_state.unwrap();
    assert_eq!(
        (check.every, check.timeout, check.abort),
        (DEFAULT_CHECK_EVERY, DEFAULT_CHECK_TIMEOUT, false)
    );
}

#[test]
fn during_takes_the_place_of_the_files_workload() {
    let text = "[workload]\ncommand = \"a\"\n[[fault]]\ncommand = \"signal\"\npid = \"workload\"\nsyscall = \"fsync\"\nsignal = \"KILL\"\nfor = \"1s\"\n";
    let experiment = Experiment::parse(Path::new("x.toml"), text, Some("b")).unwrap();
    assert_eq!(experiment.workloads.len(), 1);
    assert_eq!(experiment.workloads[0].command, "b");
    // "workload" is a PID only for the PID options.
    let err = parse(
        "[[fault]]\ncommand = \"fail\"\ncomm = \"workload\"\nop = \"open\"\nerrno = \"EIO\"\nfor = \"1s\"\n",
    );
    assert!(err.is_ok(), "{err:?}");
}

#[test]
fn several_workloads_are_named_started_and_targeted_by_name() {
    let experiment = parse(
        r#"
[[workload]]
name = "server"
command = "./server"
expect = "any"
stop_timeout = "30s"

[[workload]]
name = "load-gen"
command = "wrk http://127.0.0.1/"
start = "2s"
for = "5s"
expect = "success"
metrics = "json-lines"

[[workload]]
name = "fuzz"
command = "./fuzz"
expect = "failure"
metrics = 'findings=(?P<findings>\d+)'

[[fault]]
command = "fail"
pid_tree = "workload:load-gen"
op = "connect"
errno = "ECONNREFUSED"
start = "3s"
for = "2s"

[[fault]]
command = "signal"
pid = "workload"
syscall = "accept4"
signal = "KILL"
for = "1s"
"#,
    )
    .unwrap();
    let names: Vec<&str> = experiment
        .workloads
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(names, ["server", "load-gen", "fuzz"]);
    let load = &experiment.workloads[1];
    assert_eq!(
        (load.start, load.lifetime, load.expect),
        (
            Duration::from_secs(2),
            Some(Duration::from_secs(5)),
            workload::Expect::Success
        )
    );
    assert!(matches!(load.metrics, Some(workload::Metrics::JsonLines)));
    assert_eq!(
        (experiment.workloads[0].stop_timeout, load.stop_timeout),
        (Duration::from_secs(30), Duration::from_secs(5))
    );
    assert!(matches!(
        experiment.workloads[2].metrics,
        Some(workload::Metrics::Regex(_))
    ));
    assert_eq!(load.pid_env(), "CHAOS_WORKLOAD_PID_LOAD_GEN");
    let pids = [Some(10), Some(20), Some(30)];
    let first = experiment.faults[0].argv(&pids).join(" ");
    assert!(first.contains("--pid-tree 20"), "{first}");
    let second = experiment.faults[1].argv(&pids).join(" ");
    assert!(
        second.contains("--pid 10"),
        "plain \"workload\" is the first: {second}"
    );
    // --during stands in for a single workload only.
    let err = Experiment::parse(
        Path::new("x.toml"),
        "[[workload]]\nname = \"a\"\ncommand = \"a\"\n[[workload]]\nname = \"b\"\ncommand = \"b\"\n[[fault]]\ncommand = \"fail\"\npid = \"1\"\nop = \"open\"\nerrno = \"EIO\"\nfor = \"1s\"\n",
        Some("c"),
    )
    .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("workload"), "{err}");
}

/// A --path that a workload will make (a server's data directory) need not exist when the file
/// is read; the fault's command checks it when it starts.
#[test]
fn a_path_may_not_exist_yet() {
    let experiment = parse(
        "[[fault]]\ncommand = \"fail\"\npid = \"1\"\nop = \"write\"\npath = \"/nonexistent/pg_wal\"\nerrno = \"EIO\"\nfor = \"1s\"\n",
    )
    .unwrap();
    let argv = experiment.faults[0].argv(&[]).join(" ");
    assert!(argv.contains("--path /nonexistent/pg_wal"), "{argv}");
}

/// Every file of the invalid corpus is refused with the message its first line expects: the
/// file, the line and the field, and what is wrong.
#[test]
fn the_invalid_corpus_is_refused_with_file_line_and_field() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/experiments/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks its '# expect: ' line", path.display()));
        let name = path.file_name().unwrap();
        let err = Experiment::parse(Path::new(name), &text, None)
            .expect_err(&format!("{} was accepted", path.display()))
            .to_string();
        assert!(
            err.starts_with(expected) || err.contains(expected),
            "{}:\n  got      {err}\n  expected {expected}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 15, "only {seen} invalid files");
}

/// The examples and drills shipped in examples/ are valid (monkey*.toml as monkey files,
/// examples/k8s/ as `chaos k8s run -f` files).
#[test]
fn the_examples_parse() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for entry in std::fs::read_dir(examples.join("k8s")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("monkey")
        {
            // A pool of pods: only a build with `chaos k8s` takes it.
            let refused = super::monkey::MonkeyFile::parse(&path, &text)
                .err()
                .map(|err| err.to_string());
            if cfg!(feature = "k8s") {
                assert_eq!(refused, None);
            } else {
                let err = refused.expect("a build without chaos k8s refuses pods");
                assert!(err.contains("which this build leaves out"), "{err}");
            }
            continue;
        }
        let fault = super::parse_pod_fault(&path, &text).unwrap_or_else(|err| panic!("{err}"));
        assert!(fault.lifetime > std::time::Duration::ZERO);
    }
    let mut seen = 0;
    for dir in [examples.clone(), examples.join("drills")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let monkey = path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("monkey");
                let parsed = if monkey {
                    super::monkey::MonkeyFile::parse(&path, &text).map(drop)
                } else {
                    Experiment::parse(&path, &text, None).map(drop)
                };
                parsed.unwrap_or_else(|err| panic!("{err}"));
                seen += 1;
            }
        }
    }
    assert!(seen >= 10, "only {seen} examples and drills");
}

/// README's reference table lists every key the parser accepts.
#[test]
fn the_readme_reference_lists_every_key() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let tables = [
        ("top", &TOP_KEYS[..]),
        ("steady_state", &STEADY_STATE_KEYS[..]),
        ("workload", &WORKLOAD_KEYS[..]),
        ("fault", &FAULT_KEYS[..]),
    ];
    for (table, keys) in tables {
        for key in keys {
            let row = format!("| {table} | `{key}` |");
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }
    for command in fault_commands() {
        assert!(
            readme.contains(&format!("`{command}`")),
            "README lacks the command {command}"
        );
    }
}

/// A `chaos k8s run -f` file: one [fault] table, no target but container_name, no start; its
/// options checked on a pod.
#[test]
fn a_pod_fault_file_names_no_target() {
    let parse = |text: &str| super::parse_pod_fault(Path::new("f.toml"), text);
    let fault = parse("[fault]\ncommand = \"fail\"\nop = \"connect\"\nerrno = \"EIO\"\ncontainer_name = \"app\"\nfor = \"2m\"\n").unwrap();
    assert_eq!(
        fault.words(&[]),
        [
            "fail",
            "--container-name",
            "app",
            "--errno",
            "EIO",
            "--op",
            "connect"
        ]
    );
    assert_eq!(fault.lifetime, std::time::Duration::from_secs(120));
    for (text, expected) in [
        (
            "[fault]\ncommand = \"fail\"\nop = \"connect\"\nerrno = \"EIO\"\ncgroup = \"/x\"\nfor = \"1m\"\n",
            "f.toml:5: fault.cgroup: not allowed in a chaos k8s fault: the selector picks the pods",
        ),
        (
            "[fault]\ncommand = \"fail\"\nop = \"connect\"\nerrno = \"EIO\"\nstart = \"1s\"\nfor = \"1m\"\n",
            "f.toml:5: fault.start: not allowed in a chaos k8s fault",
        ),
        (
            "[fault]\ncommand = \"fail\"\nop = \"connect\"\nerrno = \"EIO\"\n",
            "fault.for: missing: how long the fault lasts",
        ),
        (
            "[fault]\ncommand = \"fail\"\nop = \"connekt\"\nerrno = \"EIO\"\nfor = \"1m\"\n",
            "f.toml:3: fault.op:",
        ),
        ("description = \"x\"\n", "f.toml:1: description:"),
    ] {
        let err = parse(text).expect_err(text).to_string();
        assert!(
            err.contains(expected),
            "{text}\n  got      {err}\n  expected {expected}"
        );
    }
}

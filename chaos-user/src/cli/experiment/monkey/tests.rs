//! The monkey's file: what it accepts, and errors that name file, line and field.

use std::path::Path;

use super::{MonkeyFile, pool::Entry};

const MENU: &str = r#"
[[fault]]
name = "refused"
command = "fail"
op = "connect"
errno = "ECONNREFUSED"
for = "20m"
weight = 3

[[fault]]
command = "net drop"
probability = "0.5"
for = "5m"
"#;

fn parse(text: &str) -> Result<MonkeyFile, String> {
    MonkeyFile::parse(Path::new("monkey.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn a_whole_file_reads() {
    let text = format!(
        r#"
description = "web tier, business hours"
seed = 42
[schedule]
days = ["Mon", "tue", "Wednesday"]
hours = "09:00-17:00"
mean_interval = "1h"
max_at_once = 2
budget = "2h"
[[target]]
container = "web-*"
label = "tier=web"
[[target]]
comm = "victim"
[[target]]
cgroup = "/sys/fs/cgroup/app-*"
{MENU}"#
    );
    let file = parse(&text).unwrap();
    assert_eq!(file.seed, Some(42));
    assert_eq!(
        file.schedule.days,
        [false, true, true, true, false, false, false]
    );
    assert_eq!(file.schedule.hours, Some((540, 1020)));
    assert_eq!(file.schedule.max_at_once, 2);
    assert_eq!(
        file.pool,
        [
            Entry::Containers {
                name: Some("web-*".into()),
                label: Some("tier=web".into())
            },
            Entry::Processes("victim".into()),
            Entry::Cgroups("/sys/fs/cgroup/app-*".into()),
        ]
    );
    assert_eq!(file.menu.len(), 2);
    assert_eq!(file.menu[0].item.weight, 3);
    // Kind::ALL: a container, a cgroup, a process, a pod, a hostNetwork pod.
    assert_eq!(file.menu[0].item.accepts, [true, true, true, true, true]);
    // A network fault takes a container, a cgroup or a pod in its own network namespace, not a
    // process or a hostNetwork pod (whose network is its node's).
    assert_eq!(file.menu[1].item.accepts, [true, true, false, true, false]);
    assert_eq!(file.menu[1].fault.name, "fault[2]");
    let argv = file.menu[0].fault.argv(&[]);
    assert_eq!(
        argv,
        [
            "fail",
            "--errno",
            "ECONNREFUSED",
            "--op",
            "connect",
            "--for",
            "1200000ms"
        ]
    );
}

/// Pods by namespace and selector: taken by a build with `chaos k8s`, refused by one without.
#[test]
fn a_pool_of_pods_reads_where_chaos_k8s_is_built() {
    let text = format!(
        "[schedule]\nmean_interval = \"1h\"\n[[target]]\nnamespace = \"shop\"\nselector = \"app=web, tier!=db\"\nimage = \"registry.example/chaos:1\"\n{MENU}"
    );
    let parsed = parse(&text);
    if cfg!(feature = "k8s") {
        assert_eq!(
            parsed.map(|file| file.pool),
            Ok(vec![Entry::Pods {
                namespace: "shop".into(),
                selector: "app=web,tier!=db".into(),
                options: vec!["--image".into(), "registry.example/chaos:1".into()],
            }])
        );
    } else {
        let err = parsed.map(drop).unwrap_err();
        assert!(err.contains("monkey.toml:3: target[1]: pods are faulted through `chaos k8s`, which this build leaves out"), "{err}");
    }
}

#[test]
fn bad_files_name_line_field_and_what_is_accepted() {
    let schedule = "[schedule]\nmean_interval = \"1h\"\n";
    let target = "[[target]]\ncomm = \"victim\"\n";
    for (text, expected) in [
        (
            format!("{target}{MENU}"),
            "monkey.toml:1: schedule: missing",
        ),
        (
            format!("{schedule}{target}{MENU}days = 1\n"),
            "fault[2].days: unknown option",
        ),
        (
            format!("[schedule]\nmean_interval = \"1h\"\ndays = [\"someday\"]\n{target}{MENU}"),
            "monkey.toml:3: schedule.days: unknown day 'someday': expected one of sun, mon",
        ),
        (
            format!("[schedule]\nmean_interval = \"1h\"\nhours = \"9-5\"\n{target}{MENU}"),
            "schedule.hours: invalid hours '9-5'",
        ),
        (
            format!("[schedule]\nmean_interval = \"1h\"\nmax_at_once = 0\n{target}{MENU}"),
            "schedule.max_at_once: invalid value 0: expected a whole number of at least 1",
        ),
        (
            format!("[schedule]\nmean_interval = \"10ms\"\n{target}{MENU}"),
            "schedule.mean_interval: 10ms is too short: expected at least 1s",
        ),
        (
            format!("[schedule]\nmean_interval = \"1h\"\ndays = []\n{target}{MENU}"),
            "schedule.days: expected at least one day",
        ),
        (
            format!("[schedule]\nmean_interval = \"1h\"\ndays = [\"monsoon\"]\n{target}{MENU}"),
            "unknown day 'monsoon'",
        ),
        (
            format!("[schedule]\nhours = \"09:00-17:00\"\n{target}{MENU}"),
            "schedule.mean_interval: missing",
        ),
        (
            format!("{schedule}{MENU}"),
            "target: missing: at least one [[target]] table",
        ),
        (
            format!("{schedule}[[target]]\ncomm = \"a\"\ncgroup = \"/x\"\n{MENU}"),
            "target[1]: expected one kind of target",
        ),
        (
            format!("{schedule}[[target]]\npod = \"app=web\"\n{MENU}"),
            "target[1].pod: unknown key: expected one of container, label, cgroup, comm, namespace, selector, image, chaos_namespace",
        ),
        (
            format!("{schedule}[[target]]\nselector = \"app=web\"\n{MENU}"),
            "target[1]: pods need both namespace and selector",
        ),
        (
            format!("{schedule}[[target]]\ncomm = \"x\"\nimage = \"i\"\n{MENU}"),
            "monkey.toml:5: target[1].image: goes with pods only",
        ),
        (
            format!(
                "{schedule}[[target]]\nnamespace = \"shop\"\nselector = \"app=web\"\nchaos_namespace = \"Chaos\"\n{MENU}"
            ),
            "target[1].chaos_namespace: invalid namespace 'Chaos'",
        ),
        (
            format!("{schedule}[[target]]\nnamespace = \"Shop\"\nselector = \"app=web\"\n{MENU}"),
            "monkey.toml:4: target[1].namespace: invalid namespace 'Shop'",
        ),
        (
            format!("{schedule}[[target]]\nnamespace = \"shop\"\nselector = \"!app\"\n{MENU}"),
            "monkey.toml:5: target[1].selector:",
        ),
        (
            format!("{schedule}[[target]]\nnamespace = \"shop\"\ncomm = \"x\"\n{MENU}"),
            "target[1]: expected one kind of target",
        ),
        (
            format!("{schedule}[[target]]\ncgroup = \"/sys/*/x\"\n{MENU}"),
            "target[1].cgroup: invalid cgroup '/sys/*/x'",
        ),
        (
            format!("{schedule}{target}"),
            "fault: missing: at least one [[fault]] table",
        ),
        (
            format!(
                "{schedule}{target}[[fault]]\ncommand = \"fail\"\nop = \"open\"\npid = 1\nfor = \"1m\"\n"
            ),
            "fault[1].pid: not allowed in the monkey's menu: the monkey picks the target",
        ),
        (
            format!(
                "{schedule}{target}[[fault]]\ncommand = \"fail\"\nop = \"open\"\nstart = \"1m\"\nfor = \"1m\"\n"
            ),
            "fault[1].start: not allowed in the monkey's menu",
        ),
        (
            format!("{schedule}{target}[[fault]]\ncommand = \"fail\"\nop = \"open\"\n"),
            "fault[1].for: missing: how long the fault lasts, such as for = \"5m\"",
        ),
        (
            format!(
                "{schedule}{target}[[fault]]\ncommand = \"fail\"\nop = \"open\"\nerrno = \"EBOGUS\"\nfor = \"1m\"\n"
            ),
            "fault[1].errno:",
        ),
        (
            format!(
                "{schedule}{target}[[fault]]\ncommand = \"fail\"\nop = \"open\"\nfor = \"1m\"\nweight = 0\n"
            ),
            "fault[1].weight: invalid value 0: expected a whole number of at least 1",
        ),
        (
            format!(
                "{schedule}{target}[[fault]]\ncommand = \"net drop\"\nprobability = \"0.05\"\nfor = \"1m\"\n"
            ),
            "fault[1]: `chaos net drop` can target a container, a cgroup or a pod, and the pool holds only processes",
        ),
    ] {
        let err = parse(&text).expect_err(&text);
        assert!(
            err.contains(expected),
            "{err}\nexpected: {expected}\nin:\n{text}"
        );
    }
}

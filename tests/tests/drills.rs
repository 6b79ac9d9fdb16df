//! The drills of examples/drills run as a user runs them (`chaos run FILE --json`) against the
//! real servers (nginx, wrk), and their reports say what each fault did to the load, in terms
//! that hold on a fast host and in a slow emulated guest alike: lost packets cost the p99 a
//! retransmission timeout, a delay shows in the median, a bandwidth limit caps the requests a
//! second; after the faults, no errors. Each leaves nothing behind: no program, no namespace,
//! no server.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use chaos_common::features;
use chaos_tests::*;
use serde_json::Value;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

fn drill(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/drills")
        .join(name)
}

/// Runs a drill to its end: its report and exit code.
fn run_drill(name: &str) -> (Value, i32) {
    let path = drill(name);
    let output = chaos(&["run", path.to_str().unwrap(), "--json"]);
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let report = json_report(&output);
    let code = output.status.code().unwrap_or(-1);
    assert_eq!(
        code,
        if report["passed"] == true { 0 } else { 1 },
        "the exit code says what the report says"
    );
    (report, code)
}

/// What the drill left: nothing of chaos in the kernel, no namespace, no nginx.
fn assert_left_nothing() {
    assert_no_chaos_programs();
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains("drill-"), "namespace left: {netns}");
    let nginx = Command::new("pgrep")
        .args(["-af", "chaos-drill-"])
        .output()
        .unwrap();
    assert!(
        nginx.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&nginx.stdout)
    );
}

/// A statistic of one metric of a workload in one phase.
fn stat(workload: &Value, phase: &str, metric: &str, stat: &str) -> f64 {
    workload["metrics"][phase][metric][stat]
        .as_f64()
        .unwrap_or_else(|| panic!("no {stat} of {metric} {phase}: {workload}"))
}

/// What a fault of the drill injected, over every row of its report (a DNS fault has one for
/// each direction).
fn injected(report: &Value, fault: &str) -> u64 {
    let outcome = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == fault)
        .unwrap_or_else(|| panic!("no fault {fault}"));
    assert_eq!(outcome["state"], "ran", "{outcome}");
    outcome["report"]["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["injected"].as_u64().unwrap())
        .sum()
}

/// Lost packets: some requests waited for TCP's retransmission timeout (200 ms at least).
fn assert_loss_seen(load: &Value, phase: &str) {
    let p99 = stat(load, phase, "p99_ms", "max");
    assert!(
        p99 >= 200.0,
        "{phase}: p99 {p99} ms, under a retransmission timeout: {load}"
    );
}

/// After the faults the load is served again, without errors: its last slice after the last
/// fault ended, or (in a slow guest, where the last fault's process may end with the
/// experiment) the last slice it printed.
fn assert_recovered(load: &Value) {
    let last: Value = match load["metrics"].get("after") {
        Some(after) => serde_json::json!({
            "requests": after["requests"]["last"],
            "errors": after["errors"]["last"],
        }),
        None => {
            let line = load["output"].as_array().unwrap().last().unwrap();
            serde_json::from_str(line.as_str().unwrap()).unwrap()
        }
    };
    assert!(
        last["requests"].as_f64().unwrap() > 0.0 && last["errors"].as_f64().unwrap() == 0.0,
        "no recovery after the faults: {load}"
    );
}

fn fq_supported() -> bool {
    let (supported, detail) = Probe::run().feature(features::SCH_FQ);
    if !supported {
        assert!(!expected(features::SCH_FQ), "{detail}");
    }
    supported
}

/// Packet loss under nginx while wrk loads it: runs on every kernel.
#[test]
fn http_loss() {
    let bystander = Victim::connecting(VICTIM, None);
    let (report, _) = run_drill("http-loss.toml");
    assert!(injected(&report, "loss") > 0);
    let load = workload(&report, "load");
    assert_loss_seen(load, "during:loss");
    assert_recovered(load);
    assert_eq!(report["steady_state"]["before"], true);
    assert_bystander_untouched(&bystander);
    assert_left_nothing();
}

/// Loss, then delay, then a bandwidth limit (fq). Without fq, the delay is refused when it is
/// due: the experiment ends there, naming the kernel option, and undoes everything.
#[test]
fn http_under_load() {
    let bystander = Victim::connecting(VICTIM, None);
    let (report, code) = run_drill("http-under-load.toml");
    if !fq_supported() {
        assert_eq!(code, 1);
        assert_eq!(report["ended_by"], "fault-failed", "{report}");
        let delay = &report["faults"][1];
        assert_eq!(delay["state"], "failed", "{delay}");
        assert!(
            delay["error"]
                .as_str()
                .unwrap()
                .contains("CONFIG_NET_SCH_FQ"),
            "{delay}"
        );
        assert_eq!(report["faults"][2]["state"], "not-started");
        assert_left_nothing();
        eprintln!("NOT RUN in full on this kernel, which has no fq qdisc (refusal asserted)");
        return;
    }
    let load = workload(&report, "load");
    for fault in ["loss", "delay", "limit"] {
        assert!(injected(&report, fault) > 0, "{fault} injected nothing");
    }
    assert_loss_seen(load, "during:loss");
    assert!(
        stat(load, "during:delay", "p50_ms", "max") >= 50.0,
        "a 50 ms delay did not show in the median: {load}"
    );
    // 1 Mbit/s carries at most 15 of the 8 KiB pages a second.
    let limited = stat(load, "during:limit", "requests", "min");
    assert!(
        limited <= 16.0,
        "{limited} pages a second through 1 Mbit/s: {load}"
    );
    assert_recovered(load);
    assert_bystander_untouched(&bystander);
    assert_left_nothing();
}

/// Chaos Plus: load and a protocol fuzzer at once, while packets are lost and delayed.
#[test]
fn http_chaos_plus() {
    if !fq_supported() {
        eprintln!(
            "NOT RUN on this kernel, which has no fq qdisc for the delay (http_under_load asserts the refusal)"
        );
        return;
    }
    let bystander = Victim::connecting(VICTIM, None);
    let (report, _) = run_drill("http-chaos-plus.toml");
    assert!(injected(&report, "loss") > 0 && injected(&report, "delay") > 0);
    let load = workload(&report, "load");
    assert_loss_seen(load, "during");
    assert!(
        stat(load, "during:delay", "p50_ms", "max") >= 30.0,
        "{load}"
    );
    assert_recovered(load);
    let fuzz = workload(&report, "fuzz");
    assert!(
        stat(fuzz, "during", "sent", "samples") >= 1.0,
        "the fuzzer reported nothing while degraded: {fuzz}"
    );
    assert!(
        stat(fuzz, "during", "4xx", "max") > 0.0,
        "nginx never refused a malformed request: {fuzz}"
    );
    assert_eq!(
        stat(fuzz, "after", "findings", "last"),
        0.0,
        "the fuzzer found a failure or a dead server: {fuzz}"
    );
    assert_bystander_untouched(&bystander);
    assert_left_nothing();
}

/// "It's always DNS": the dependency's name gets SERVFAIL, then no answer, from a real
/// resolver (unbound); the application's retries show it, every other name resolves
/// throughout (the steady state), and the report says how long the dependency was unresolvable.
#[test]
fn dns() {
    let bystander = Victim::connecting(VICTIM, None);
    let (report, code) = run_drill("dns.toml");
    assert_eq!(code, 0, "other names stopped resolving: {report}");
    assert_eq!(report["steady_state"]["during_failed"], 0);
    assert!(injected(&report, "servfail") > 0 && injected(&report, "no-answer") > 0);
    let app = workload(&report, "app");
    assert!(
        stat(app, "during:servfail", "servfail", "max") > 0.0,
        "{app}"
    );
    assert!(
        stat(app, "during:servfail", "db_failed", "max") > 0.0,
        "{app}"
    );
    assert!(
        stat(app, "during:no-answer", "timeout", "max") > 0.0,
        "{app}"
    );
    for (phase, stats) in app["metrics"].as_object().unwrap() {
        assert_eq!(
            stats["other_failed"]["max"], 0.0,
            "{phase}: another name failed to resolve: {app}"
        );
    }
    // Each outage is measured when the name resolves again, after the fault that caused it.
    let outages: Vec<f64> = ["between", "after"]
        .iter()
        .map(|phase| stat(app, phase, "unresolvable_ms", "max"))
        .collect();
    assert!(outages.iter().all(|&ms| ms >= 1000.0), "{outages:?}");
    assert_eq!(stat(app, "after", "db_failed", "last"), 0.0, "{app}");
    assert_bystander_untouched(&bystander);
    assert_left_nothing();
}

/// A crash at the worst moment: Redis is killed at an fdatasync of its append-only file,
/// started again by its supervisor, and loses no write it acknowledged.
#[test]
fn redis_crash() {
    let (supported, detail) = syscall_programs_supported();
    if !supported {
        assert!(syscall_programs_unexpected(), "{detail}");
        eprintln!("NOT RUN on this kernel, which can run no program at a syscall: {detail}");
        return;
    }
    let bystander = Victim::connecting(VICTIM, None);
    let (report, code) = run_drill("redis-crash.toml");
    assert_eq!(code, 0, "{report}");
    assert_eq!(injected(&report, "crash"), 1, "one kill");
    let redis = workload(&report, "redis");
    assert!(
        redis["output"].as_array().unwrap().iter().any(|line| line
            .as_str()
            .unwrap()
            .contains("DB loaded from append only file")),
        "Redis did not reload its append-only file: {redis}"
    );
    let writer = workload(&report, "writer");
    assert_eq!(
        stat(writer, "during:crash", "reconnects", "max"),
        1.0,
        "{writer}"
    );
    assert!(
        stat(writer, "during:crash", "checked", "max") > 0.0,
        "{writer}"
    );
    assert!(stat(writer, "during:crash", "down_ms", "max") >= 0.0);
    for (phase, stats) in writer["metrics"].as_object().unwrap() {
        assert_eq!(
            stats["lost"]["max"], 0.0,
            "{phase}: acknowledged writes lost"
        );
    }
    assert!(
        stat(writer, "after", "acked", "last") > 0.0,
        "no write after the restart"
    );
    assert_bystander_untouched(&bystander);
    assert_left_nothing();
}

/// PostgreSQL failover: the application's connections to the primary fail; it reads from the
/// hot standby meanwhile, writes again afterwards, and no committed row is lost. The standby's
/// own replication connection to the primary is not the application's: it is untouched.
#[test]
fn postgres_failover() {
    let bystander = Victim::connecting(VICTIM, None);
    let (report, code) = run_drill("postgres-failover.toml");
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["steady_state"]["during_failed"], 0,
        "a committed row went missing"
    );
    assert_eq!(report["steady_state"]["after"], true);
    assert!(injected(&report, "primary-unreachable") > 0);
    let app = workload(&report, "app");
    let during = "during:primary-unreachable";
    assert!(stat(app, during, "write_failed", "max") > 0.0, "{app}");
    assert!(stat(app, during, "standby_reads", "max") > 0.0, "{app}");
    for (phase, stats) in app["metrics"].as_object().unwrap() {
        assert_eq!(
            stats["standby_failed"]["max"], 0.0,
            "{phase}: the standby failed"
        );
    }
    assert!(
        stat(app, "after", "commits", "last") > 0.0,
        "no write after the fault"
    );
    assert_bystander_untouched(&bystander);
    assert_left_nothing();
}

/// PostgreSQL under disk errors: its WAL writes fail with EIO, then ENOSPC. It PANICs and
/// recovers (or stops and is started again); every transaction committed before is there
/// whenever it answers, and after. Where chaos cannot fail file writes by path (no BPF LSM, no
/// fmod_ret), the fault is refused when it is due, naming why, and nothing is left.
#[test]
fn postgres_disk_errors() {
    let bystander = Victim::connecting(VICTIM, None);
    let (report, code) = run_drill("postgres-disk-errors.toml");
    if Probe::run().mechanism("write").is_none() {
        assert_eq!(code, 1);
        assert_eq!(report["ended_by"], "fault-failed", "{report}");
        let eio = &report["faults"][0];
        assert!(
            eio["error"]
                .as_str()
                .unwrap()
                .contains("--op write cannot be injected"),
            "{eio}"
        );
        assert_left_nothing();
        eprintln!(
            "NOT RUN in full on this kernel, which cannot fail writes by path (refusal asserted)"
        );
        return;
    }
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["steady_state"]["during_failed"], 0,
        "a committed transaction was lost"
    );
    assert_eq!(report["steady_state"]["after"], true);
    assert!(
        injected(&report, "wal-eio") > 0 && injected(&report, "wal-enospc") > 0,
        "{report}"
    );
    let db = workload(&report, "db");
    let app = workload(&report, "app");
    assert!(
        stat(app, "during:wal-eio", "write_failed", "max") > 0.0,
        "{app}"
    );
    assert!(
        stat(app, "after", "commits", "last") > 0.0,
        "no commit after the faults: {app}"
    );
    assert!(
        db["output"].as_array().unwrap().iter().any(|line| line
            .as_str()
            .unwrap()
            .contains("ready to accept connections")),
        "{db}"
    );
    assert_bystander_untouched(&bystander);
    assert_left_nothing();
}

/// A power cut under PostgreSQL: frozen, its disk's writes failing, killed; its filesystem is
/// unmounted, the image attached anew (the device's cache gone) and mounted, and PostgreSQL
/// replays its WAL. Every commit it acknowledged is there, whenever it answers and after. Where
/// chaos cannot fail bios, the fault is refused when it is due, naming why, and nothing is left.
#[test]
fn postgres_power_cut() {
    let bystander = Victim::connecting(VICTIM, None);
    let (report, code) = run_drill("postgres-power-cut.toml");
    let image = "/tmp/chaos-drill-pgdisk/disk.img";
    let attached = Command::new("losetup")
        .args(["-j", image])
        .output()
        .unwrap();
    assert!(
        attached.stdout.is_empty(),
        "the image is still attached: {} (the recovery's report: {})",
        String::from_utf8_lossy(&attached.stdout),
        report["workloads"]
    );
    let Some(rung) = auto_override_rung(&Probe::run()) else {
        assert_eq!(code, 1, "{report}");
        assert_eq!(report["ended_by"], "fault-failed", "{report}");
        let cut = &report["faults"][0];
        assert!(
            cut["error"]
                .as_str()
                .unwrap_or_default()
                .contains("bios cannot be failed"),
            "{cut}"
        );
        assert_left_nothing();
        return eprintln!(
            "NOT RUN in full on this kernel, which cannot fail bios (refusal asserted; the drill runs on faultinj-6.12)"
        );
    };
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["steady_state"]["during_failed"], 0,
        "an acknowledged commit went missing"
    );
    assert_eq!(report["steady_state"]["after"], true, "{report}");
    let cut = &report["faults"][0]["report"]["faults"][0];
    assert_eq!(cut["mechanism"], rung, "{report}");
    let db = workload(&report, "db");
    assert_eq!(db["signal"], 9, "the cut kills the server: {db}");
    let app = workload(&report, "app");
    assert!(
        stat(app, "before", "commits", "max") > 0.0,
        "commits before the cut: {app}"
    );
    let recovery = workload(&report, "recovery");
    assert_eq!(stat(recovery, "after", "missing", "max"), 0.0, "{recovery}");
    assert!(
        stat(recovery, "after", "present", "last") > 0.0,
        "{recovery}"
    );
    assert_eq!(
        stat(recovery, "after", "replayed", "last"),
        1.0,
        "PostgreSQL recovered by replaying its WAL: {recovery}"
    );
    assert_bystander_untouched(&bystander);
    assert_left_nothing();
    eprintln!(
        "power cut through {rung}: {} commits acknowledged, {} present after WAL replay",
        stat(recovery, "after", "acked", "last"),
        stat(recovery, "after", "present", "last")
    );
}

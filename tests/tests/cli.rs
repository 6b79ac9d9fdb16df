//! The command line as a user meets it: bad input, missing privileges, the probe.

use std::process::Command;

use chaos_common::features;
use chaos_tests::*;

fn assert_usage_error(args: &[&str], named: &str) {
    assert_refused(args, &[named]);
}

#[test]
fn bad_input_exits_2_naming_the_value_and_attaches_nothing() {
    let me = std::process::id().to_string();
    let me = me.as_str();
    assert_usage_error(
        &["fail", "--pid", me, "--op", "connect", "--errno", "EFOO"],
        "EFOO",
    );
    assert_usage_error(
        &["fail", "--pid", me, "--op", "connect", "--errno", "0"],
        "'0'",
    );
    assert_usage_error(
        &["fail", "--pid", me, "--op", "connect", "--errno", "512"],
        "ERESTARTSYS",
    );
    assert_usage_error(
        &["fail", "--pid", "0", "--op", "connect", "--errno", "EIO"],
        "'0'",
    );
    assert_usage_error(
        &[
            "fail", "--pid", me, "--op", "connect", "--errno", "EIO", "--for", "-1s",
        ],
        "-1s",
    );
    assert_usage_error(
        &[
            "fail", "--pid", me, "--op", "connect", "--errno", "EIO", "--for", "0",
        ],
        "'0'",
    );
    assert_usage_error(
        &["fail", "--pid", me, "--op", "frobnicate", "--errno", "EIO"],
        "frobnicate",
    );
    assert_usage_error(&["fail", "--op", "connect", "--errno", "EIO"], "--pid");
    // Kubernetes targets that do not run here, or are malformed.
    let fail_connect = |target: &[&str]| -> Vec<String> {
        ["fail"]
            .iter()
            .chain(target)
            .chain(&["--op", "connect", "--errno", "EIO"])
            .map(|s| (*s).to_owned())
            .collect()
    };
    let a_uid = "0c7b3b4e-5f1a-4c2d-9e8f-1a2b3c4d5e6f";
    let an_id = "a".repeat(64);
    let containerd_id = format!("containerd://{an_id}");
    for (target, named) in [
        (vec!["--container", "rkt://abc"], "'rkt'"),
        (
            vec!["--container", containerd_id.as_str()],
            containerd_id.as_str(),
        ),
        (vec!["--pod-uid", a_uid], a_uid),
        (vec!["--pod", "shop/web-0"], "shop/web-0"),
        (
            vec!["--pod", "shop/web-0", "--container-name", "web"],
            "shop/web-0",
        ),
        (vec!["--pid", me, "--container-name", "web"], "web"),
    ] {
        let args = fail_connect(&target);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_usage_error(&args, named);
    }
    let net = ["net", "drop", "--pod", "shop/web-0", "--probability", "0.5"];
    assert_usage_error(&net, "shop/web-0");
    // Above pid_max (at most 2^22), so no such process can exist.
    assert_usage_error(
        &[
            "fail", "--pid", "4194305", "--op", "connect", "--errno", "EIO",
        ],
        "4194305",
    );
}

#[test]
fn without_privileges_the_missing_capabilities_are_named() {
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(chaos_bin())
        .args([
            "fail",
            "--pid",
            &std::process::id().to_string(),
            "--op",
            "connect",
            "--errno",
            "EIO",
            "--for",
            "1s",
        ])
        .output()
        .expect("run setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("CAP_BPF") && stderr.contains("CAP_SYS_ADMIN"),
        "{stderr}"
    );
}

#[test]
fn probe_reports_every_feature_as_json() {
    let probe = Probe::run();
    let features: Vec<&str> = probe
        .findings()
        .iter()
        .map(|finding| finding["feature"].as_str().expect("feature name"))
        .collect();
    assert_eq!(
        features,
        chaos_common::features::ALL,
        "the probe reports every feature, in order"
    );
    for finding in probe.findings() {
        if finding["supported"] == false {
            assert!(
                finding["enable"].is_string(),
                "an unsupported feature must say what enables it: {finding}"
            );
        }
    }
    // Features this kernel must have, per the environment (the VM runner sets CHAOS_EXPECT).
    for feature in expected_features() {
        let (supported, detail) = probe.feature(&feature);
        assert!(
            supported,
            "{feature} must be supported on this kernel: {detail}"
        );
    }
    assert_no_chaos_programs();
}

/// `chaos probe` names, for every operation, the mechanism this kernel will use, and for each one
/// it prefers why it cannot serve: on kernels with BPF LSM the file operations take it, where
/// only trampolines work they take fmod_ret, where only kprobe override works kprobe-override,
/// elsewhere none.
#[test]
fn probe_names_each_operations_mechanism() {
    let report = json_report(&chaos(&["probe", "--json"]));
    let operations = report["operations"].as_array().expect("operations");
    let names: Vec<&str> = operations
        .iter()
        .map(|op| op["op"].as_str().expect("op"))
        .collect();
    let catalogue: Vec<&str> = chaos_common::ops::OPS.iter().map(|op| op.name).collect();
    assert_eq!(names, catalogue);
    let mechanism = |name: &str| {
        operations
            .iter()
            .find(|op| op["op"] == name)
            .map(|op| op["mechanism"].clone())
            .expect("the op")
    };
    for op in operations {
        if op["mechanism"].is_null() {
            assert!(
                !op["better"].as_array().unwrap().is_empty(),
                "an op no mechanism serves says why: {op}"
            );
        }
    }
    let expected_file_ops = if expected(features::BPF_LSM) {
        serde_json::json!("lsm")
    } else if expected(features::FMOD_RET) {
        serde_json::json!("fmod_ret")
    } else if expected(features::KPROBE_OVERRIDE) && expected(features::ERROR_INJECTION) {
        serde_json::json!("kprobe-override")
    } else {
        serde_json::Value::Null
    };
    if expected(features::BPF_LSM)
        || expected(features::FMOD_RET)
        || expected(features::KPROBE_OVERRIDE)
        || !expected(features::TRAMPOLINE)
    {
        assert_eq!(mechanism("open"), expected_file_ops, "{report}");
    }
    if expected(features::CGROUP_SOCK_ADDR) {
        assert_eq!(mechanism("connect"), "cgroup", "{report}");
    }
}

#[test]
fn help_completions_and_man_page_come_from_the_same_definitions() {
    let help = chaos(&["fail", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Example") && help.contains("--errno"),
        "{help}"
    );
    let bash = chaos(&["completions", "bash"]);
    assert!(String::from_utf8_lossy(&bash.stdout).contains("fail"));
    let man = chaos(&["man"]);
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH chaos"));
}

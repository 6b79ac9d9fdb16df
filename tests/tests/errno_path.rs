//! `chaos fail --path`: only calls on one file, or on the files below one directory, fail, on
//! every kind of filesystem a target's files live on: tmpfs, ext4 (a loop image), overlayfs with
//! its layers on two filesystems (the hooks run for the overlay's inode and again for the
//! layer's; each call must count once), and a container's own files named through
//! `/proc/PID/root`. Every run keeps a target working beside the filtered file and an untargeted
//! bystander on the filtered file itself. BPF LSM is needed: on a kernel that refuses it the
//! test asserts the refusal and the probe's reason.

use std::collections::BTreeMap;

use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

/// The file operations a file filter is proved with, one target victim each.
const FILE_OPS: [&str; 4] = ["open", "read", "write", "stat"];
/// The operations a directory filter is proved with: a file opened, and names created (a new
/// name's dentry has no inode yet and is judged by its parents). Each victim makes only its own
/// kind of call (an unlink victim creates its file with open(), so it would share the open row).
const DIR_OPS: [&str; 3] = ["open", "mkdir", "symlink"];

/// Runs `chaos fail ARGS --errno EIO --for 2s --json`; `None` when this kernel cannot run BPF
/// LSM programs (refusal asserted), else the report and the run's window.
fn fail_eio(args: &[&str], what: &str) -> Option<(serde_json::Value, (u64, u64))> {
    let mut full = vec!["fail"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--errno", "EIO", "--for", "2s", "--json"]);
    let start = monotonic_ns();
    let output = chaos(&full);
    let end = monotonic_ns();
    if refused_for_lack_of_lsm(&output, what) {
        return None;
    }
    assert!(
        output.status.success(),
        "{full:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some((json_report(&output), (start, end)))
}

/// The report's row for `op`.
fn row<'a>(report: &'a serde_json::Value, op: &str) -> &'a serde_json::Value {
    report["faults"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["op"] == op))
        .unwrap_or_else(|| panic!("no row for {op}: {report}"))
}

fn assert_untouched(victims: &[&Victim], what: &str) {
    for victim in victims {
        let hit: Vec<Call> = victim
            .calls()
            .into_iter()
            .filter(|call| call.errno.is_some())
            .collect();
        assert!(hit.is_empty(), "{what} {} was hit: {hit:?}", victim.pid());
    }
}

/// `--path DIR/target/file`: a target of each file op works on that file and fails; a target of
/// each op on `DIR/beside/file`, in the same directory's sibling, and an untargeted process
/// opening the filtered file itself never fail.
fn file_filter_on(dir: &std::path::Path, fs: &str) {
    let cgroup = TestCgroup::new(&format!("path-file-{fs}"));
    let at = |sub: &str| dir.join(sub).to_str().expect("utf-8").to_owned();
    let inside: BTreeMap<&str, Victim> = FILE_OPS
        .iter()
        .map(|&op| (op, Victim::start(VICTIM, op, &at("target"), &cgroup)))
        .collect();
    let beside: Vec<Victim> = FILE_OPS
        .iter()
        .map(|op| Victim::start(VICTIM, op, &at("beside"), &cgroup))
        .collect();
    let bystander = Victim::start(VICTIM, "open", &at("target"), &cgroup);
    let file = at("target/file");
    let pids: Vec<String> = inside
        .values()
        .chain(&beside)
        .map(|victim| victim.pid().to_string())
        .collect();
    let mut args = vec!["--pid"];
    let joined = pids.join(",");
    args.extend([
        joined.as_str(),
        "--op",
        "open,read,write,stat",
        "--path",
        &file,
    ]);
    let Some((report, window)) = fail_eio(&args, &format!("--path FILE on {fs}")) else {
        return;
    };
    eprintln!("--path FILE on {fs}: {}", report["faults"]);
    for (op, victim) in &inside {
        victim.wait_for_call_after(window.1);
        assert_scoped_fault(&[victim], &bystander, libc::EIO, window, row(&report, op));
    }
    assert_untouched(
        &beside.iter().collect::<Vec<_>>(),
        "a target beside the file",
    );
    assert!(
        report["warnings"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    assert_no_chaos_programs();
}

/// `--path DIR/data`: a target of each directory op below it fails; the same ops of the same
/// targets' twins in `DIR/other`, and an untargeted process below it, never fail.
fn dir_filter_on(dir: &std::path::Path, fs: &str) {
    let cgroup = TestCgroup::new(&format!("path-dir-{fs}"));
    let at = |sub: &str| dir.join(sub).to_str().expect("utf-8").to_owned();
    let inside: BTreeMap<&str, Victim> = DIR_OPS
        .iter()
        .map(|&op| {
            (
                op,
                Victim::start(VICTIM, op, &at(&format!("data/{op}")), &cgroup),
            )
        })
        .collect();
    let beside: Vec<Victim> = DIR_OPS
        .iter()
        .map(|op| Victim::start(VICTIM, op, &at(&format!("other/{op}")), &cgroup))
        .collect();
    let bystander = Victim::start(VICTIM, "open", &at("data/bystander"), &cgroup);
    let pids: Vec<String> = inside
        .values()
        .chain(&beside)
        .map(|victim| victim.pid().to_string())
        .collect();
    let joined = pids.join(",");
    let filtered = at("data");
    let args = [
        "--pid",
        joined.as_str(),
        "--op",
        "open,mkdir,symlink",
        "--path",
        &filtered,
    ];
    let Some((report, window)) = fail_eio(&args, &format!("--path DIR on {fs}")) else {
        return;
    };
    eprintln!("--path DIR on {fs}: {}", report["faults"]);
    for (op, victim) in &inside {
        victim.wait_for_call_after(window.1);
        assert_scoped_fault(&[victim], &bystander, libc::EIO, window, row(&report, op));
    }
    assert_untouched(
        &beside.iter().collect::<Vec<_>>(),
        "a target outside the directory",
    );
    assert_no_chaos_programs();
}

fn both_filters_on(mount: &TestMount) {
    assert_eq!(TestMount::kind_of(&mount.path), mount.kind);
    file_filter_on(&mount.path, mount.kind);
    dir_filter_on(&mount.path, mount.kind);
}

#[test]
fn path_filters_on_tmpfs() {
    both_filters_on(&TestMount::tmpfs("path"));
}

#[test]
fn path_filters_on_ext4() {
    both_filters_on(&TestMount::ext4("path"));
}

#[test]
fn path_filters_on_an_overlay_of_two_filesystems() {
    let mount = TestMount::overlay("path", &["target/file", "data/open/file"]);
    both_filters_on(&mount);
}

/// On overlayfs every open runs the hook twice, for the overlay's file and for the layer's: a
/// dry run over a live window counts each open of the filtered file once.
#[test]
fn an_overlay_file_counts_each_call_once() {
    let mount = TestMount::overlay("once", &["target/file"]);
    let cgroup = TestCgroup::new("path-once");
    let dir = mount.path.join("target");
    let target = Victim::start(VICTIM, "open", dir.to_str().unwrap(), &cgroup);
    let pid = target.pid().to_string();
    let file = dir.join("file");
    let args = [
        "fail",
        "--pid",
        &pid,
        "--op",
        "open",
        "--path",
        file.to_str().unwrap(),
        "--errno",
        "EIO",
        "--dry-run",
        "--for",
        "10m",
        "--detach",
        "--json",
    ];
    let launched_ns = monotonic_ns();
    let output = chaos(&args);
    if refused_for_lack_of_lsm(&output, "--path FILE --dry-run on overlay") {
        return;
    }
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = json_report(&output);
    let id = run["id"].as_str().expect("a run ID").to_owned();
    let _stop = Detached {
        id: id.clone(),
        deadline_ns: 0,
    };
    let live_ns = monotonic_ns();
    target.wait_for_call_after(live_ns + 1_000_000_000);
    let opened_since = |ns: u64| target.calls_begun_after(ns).len() as u64;
    // Every open counted began after chaos was launched and returned before the listing ended
    // (give or take the one in flight at each end); every open that began after chaos returned
    // and returned before the listing began was counted.
    let before = opened_since(live_ns);
    let listed = json_report(&chaos(&["list", "--json"]));
    let after = opened_since(launched_ns);
    let matched = listed
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["id"] == id.as_str()))
        .and_then(|r| r["matched"].as_u64())
        .expect("the run in chaos list");
    eprintln!("overlay dry run: {before} to {after} opens while live, {matched} matched");
    // A double count would give about twice `before`.
    assert!(
        matched + 1 >= before && matched <= after + 1,
        "each open must count once: {before} to {after} opens, {matched} matched"
    );
    let calls = target.calls();
    assert!(
        calls.iter().all(|call| call.errno.is_none()),
        "a dry run failed a call"
    );
}

/// A container's files, named through the container's root (`/proc/PID/root/...`), as they are
/// for image-based containers whose root exists only in their own mount namespace: the target is
/// the container, one of its processes works on the filtered file and fails, another works on a
/// file beside it, and a process of a second container never fails.
#[test]
fn a_containers_own_file_through_its_root() {
    let target = TestContainer::start("path-target", VICTIM);
    let neighbour = TestContainer::start("path-neighbour", VICTIM);
    let inside = target.exec_victim("open", "/tmp/data");
    let beside = target.exec_victim("open", "/tmp/other");
    let bystander = neighbour.exec_victim("open", "/tmp/data");
    let file = format!("/proc/{}/root/tmp/data/file", target.pid());
    let args = [
        "--container",
        target.name.as_str(),
        "--op",
        "open",
        "--path",
        &file,
    ];
    let Some((report, window)) = fail_eio(&args, "--path in a container") else {
        return;
    };
    inside.wait_for_call_after(window.1);
    assert_scoped_fault(
        &[&inside],
        &bystander,
        libc::EIO,
        window,
        row(&report, "open"),
    );
    assert_untouched(&[&beside], "a process of the container beside the file");
    assert_no_chaos_programs();
}

/// A filter that names nothing the targets touch ends with a warning in the summary and the
/// report, not a silent success. Shown with a port (cgroup hooks, every kernel).
#[test]
fn a_run_that_matched_nothing_says_so() {
    let bed = ConnectBed::new(VICTIM, "matched-nothing");
    let target = bed.victim();
    let pid = target.pid().to_string();
    let output = chaos(&[
        "fail", "--pid", &pid, "--op", "connect", "--port", "9", "--errno", "EIO", "--for", "1s",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report = json_report(&output);
    assert_eq!(report["faults"][0]["matched"], 0);
    let warning = report["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("connect matched nothing") && warning.contains("--port 9"),
        "{report}"
    );
    assert!(
        stderr.contains("warning: connect matched nothing"),
        "{stderr}"
    );
    assert!(target.calls().iter().all(|call| call.errno.is_none()));
    assert_no_chaos_programs();
}

#[test]
fn a_path_filter_on_a_socket_op_is_refused() {
    assert_refused(
        &[
            "fail", "--pid", "2", "--op", "connect", "--path", "/tmp", "--errno", "EIO",
        ],
        &["--path", "--op connect"],
    );
    assert_refused(
        &[
            "fail",
            "--pid",
            "2",
            "--op",
            "open",
            "--path",
            "/no/such/dir",
            "--errno",
            "EIO",
        ],
        &["/no/such/dir"],
    );
}

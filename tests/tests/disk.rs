//! `chaos disk error`: bios to one block device complete with EIO (the block layer's
//! `should_fail_bio` overridden: fmod_ret where trampolines load, else a kprobe; the writeback
//! test runs each rung). On loop devices carrying ext4: a write() into the page cache
//! succeeds, fsync() reports EIO once, and after the cache is dropped the old data is back (the
//! silent loss a failing disk causes); with every write failing, the journal aborts and the
//! next create gets EROFS. A second loop device sees nothing. Where the kernel cannot override
//! should_fail_bio, the refusal names what is missing.

use std::{
    fs::{self, File, OpenOptions},
    io::ErrorKind,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use chaos_common::features;
use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

/// The size of the file whose sectors fail, and of each write to it.
const FILE_LEN: usize = 64 * 1024;

/// A loop device on a file in the test's directory, carrying a fresh ext4 mounted below it;
/// unmounted and detached on drop.
struct LoopDisk {
    device: String,
    image: PathBuf,
    mount: PathBuf,
}

impl LoopDisk {
    /// `None` where the kernel has no loop devices.
    fn new(dir: &Path, name: &str) -> Option<Self> {
        let image = dir.join(format!("{name}.img"));
        File::create(&image)
            .and_then(|f| f.set_len(32 << 20))
            .expect("image file");
        let device = losetup(&image, &[])?;
        let mount = dir.join(name);
        fs::create_dir_all(&mount).unwrap();
        let disk = LoopDisk {
            device,
            image,
            mount,
        };
        // Every inode table and the journal written now, so that no lazy init writes later.
        sh(&format!(
            "mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 {} && mount {} {}",
            disk.device,
            disk.device,
            disk.mount.display()
        ));
        Some(disk)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.mount.join(name)
    }

    /// Unmounted, the loop device detached: its cache is gone, as after a power cut.
    fn unplug(&self) {
        sh(&format!(
            "umount {mount} && losetup -d {device}",
            mount = self.mount.display(),
            device = self.device
        ));
    }

    /// The image attached and mounted again.
    fn plug(&mut self) {
        self.device = losetup(&self.image, &[]).expect("the image attaches again");
        sh(&format!("mount {} {}", self.device, self.mount.display()));
    }
}

/// A free loop device attached to `image` (`extra`: more losetup options); `None`, said why,
/// where the kernel has no loop devices.
fn losetup(image: &Path, extra: &[&str]) -> Option<String> {
    if !Path::new("/dev/loop-control").exists() {
        let _ = Command::new("modprobe").arg("loop").status();
    }
    let losetup = Command::new("losetup")
        .args(["--find", "--show"])
        .args(extra)
        .arg(image)
        .output()
        .expect("losetup");
    if !losetup.status.success() {
        eprintln!(
            "no loop device: {}",
            String::from_utf8_lossy(&losetup.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&losetup.stdout).trim().to_owned())
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        // Quiet: a test may have unmounted it.
        let _ = Command::new("umount")
            .arg(&self.mount)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

fn sh(script: &str) {
    let status = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(status.success(), "{script}: {status}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-disk-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `FILE_LEN` bytes of `byte` at the start of `path` (created if need be) and fsyncs:
/// the fsync's result.
fn write_and_fsync(path: &Path, byte: u8) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)?;
    file.write_all_at(&[byte; FILE_LEN], 0)
        .expect("a write into the page cache succeeds");
    file.sync_all()
}

/// The sectors of the device `path`'s data lies on (`filefrag -e -b512`: one extent).
fn sectors_of(path: &Path) -> (u64, u64) {
    let out = Command::new("filefrag")
        .args(["-e", "-b512"])
        .arg(path)
        .output()
        .expect("filefrag");
    let text = String::from_utf8_lossy(&out.stdout);
    // "   0:        0..     127:      34816..     34943:    128:             last,eof"
    let extent = text
        .lines()
        .find(|line| line.trim_start().starts_with("0:"))
        .unwrap_or_else(|| panic!("no extent in {text}"));
    let physical: Vec<u64> = extent
        .split(':')
        .nth(2)
        .unwrap()
        .split("..")
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert!(
        !text.lines().any(|line| line.trim_start().starts_with("1:")),
        "the file must be one extent: {text}"
    );
    (physical[0], physical[1])
}

/// The kernel log's lines.
fn kernel_log() -> Vec<String> {
    let dmesg = Command::new("dmesg").output().unwrap();
    String::from_utf8_lossy(&dmesg.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn drop_caches() {
    sh("sync; echo 3 > /proc/sys/vm/drop_caches");
}

/// How this kernel fails bios with `--backend auto` (fmod_ret, else kprobe-override), or `None`
/// after asserting the refusal (exit 2, naming the kernel option) where it cannot.
fn supported_or_refused(device: &str) -> Option<&'static str> {
    let probe = Probe::run();
    if let Some(rung) = auto_override_rung(&probe) {
        return Some(rung);
    }
    for rung in OVERRIDE_RUNGS {
        let (_, expected, detail) = override_offered(&probe, rung);
        assert!(!expected, "{rung} must fail bios on this kernel: {detail}");
    }
    let output = chaos(&["disk", "error", "--device", device, "--for", "5s"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bios cannot be failed on this kernel")
            && stderr.contains("CONFIG_FUNCTION_ERROR_INJECTION"),
        "the refusal must say what is missing: {stderr}"
    );
    assert_no_chaos_programs();
    eprintln!(
        "NOT INJECTED on this kernel, which cannot fail should_fail_bio (refusal asserted): {stderr}"
    );
    None
}

/// Loop disks carrying ext4, one per name in `dir`, and the rung `--backend auto` fails bios
/// through; `None`, said why, where the kernel has no loop devices or cannot fail bios (the
/// refusal asserted on the first disk).
fn disks_or_skip<const N: usize>(
    dir: &Path,
    names: [&str; N],
) -> Option<([LoopDisk; N], &'static str)> {
    let disks = names.map(|name| LoopDisk::new(dir, name));
    if disks.iter().any(Option::is_none) {
        eprintln!("NOT RUN: no loop devices on this kernel");
        return None;
    }
    let disks = disks.map(Option::unwrap);
    let rung = supported_or_refused(&disks[0].device)?;
    Some((disks, rung))
}

/// The failing disk the page cache hides: write() succeeds, fsync() reports EIO once, the next
/// fsync() reports nothing, and once the cache is dropped the old data reads back. The fault
/// covers only the file's sectors; the other device's writes all land.
#[test]
fn disk_writeback_fails_fsync_reports_it_once_and_the_old_data_comes_back() {
    let dir = scratch("writeback");
    let (Some(disk), Some(bystander)) = (LoopDisk::new(&dir, "a"), LoopDisk::new(&dir, "b")) else {
        assert!(
            !expected(features::ERROR_INJECTION),
            "the kernel that can fail bios must have loop devices"
        );
        eprintln!(
            "NOT RUN: no loop devices on this kernel (the fault is exercised on faultinj-6.12)"
        );
        return;
    };
    if supported_or_refused(&disk.device).is_none() {
        return;
    }
    let probe = Probe::run();
    for rung in OVERRIDE_RUNGS {
        if override_offered(&probe, rung).0 {
            writeback_fails_through(&disk, &bystander, rung);
        } else {
            eprintln!("{rung}: not offered here (the probe says why)");
        }
    }
}

/// One round of the test above, with `--backend rung`.
fn writeback_fails_through(disk: &LoopDisk, bystander: &LoopDisk, rung: &str) {
    let data = disk.file("data");
    write_and_fsync(&data, b'o').expect("before the fault");
    let (first, last) = sectors_of(&data);
    let other = bystander.file("data");
    write_and_fsync(&other, b'o').expect("before the fault");

    let range = format!("{first}-{last}");
    let chaos = Chaos::spawn_live(&mut chaos_command(&[
        "disk",
        "error",
        "--device",
        &disk.device,
        "--op",
        "write",
        "--sector",
        &range,
        "--backend",
        rung,
        "--for",
        "10m",
        "--json",
    ]));
    let failed = write_and_fsync(&data, b'n');
    let again = File::open(&data).and_then(|f| f.sync_all());
    let bystander_result = write_and_fsync(&other, b'n');
    let report = stop_chaos(chaos);

    assert_eq!(
        failed.as_ref().map_err(|e| e.raw_os_error()),
        Err(Some(libc::EIO)),
        "fsync() must report the failed writeback"
    );
    assert!(again.is_ok(), "the error is reported once: {again:?}");
    assert!(
        bystander_result.is_ok(),
        "the other device: {bystander_result:?}"
    );
    let fault = &report["faults"][0];
    assert_eq!(fault["op"], "disk-write", "{report}");
    assert_eq!(fault["errno"], "EIO", "{report}");
    assert_eq!(fault["mechanism"], rung, "{report}");
    assert!(fault["injected"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["targets"][0]["device"]
            .as_str()
            .unwrap()
            .starts_with(&disk.device),
        "{report}"
    );
    assert_no_chaos_programs();

    drop_caches();
    let mut read = vec![0; FILE_LEN];
    File::open(&data)
        .unwrap()
        .read_exact_at(&mut read, 0)
        .unwrap();
    assert!(
        read.iter().all(|&b| b == b'o'),
        "the write fsync() reported lost is lost: the old data reads back"
    );
    File::open(&other)
        .unwrap()
        .read_exact_at(&mut read, 0)
        .unwrap();
    assert!(
        read.iter().all(|&b| b == b'n'),
        "the other device kept its write"
    );
    eprintln!(
        "{rung}: write() ok, fsync() EIO, fsync() ok, old data back after drop_caches; {fault}"
    );
}

/// With every write to the device failing, ext4's journal aborts: the next create fails with
/// EROFS, from the errno and in the kernel log. The other device goes on.
#[test]
fn disk_failing_every_write_aborts_the_journal() {
    let dir = scratch("journal");
    let Some(([disk, bystander], rung)) = disks_or_skip(&dir, ["a", "b"]) else {
        return;
    };
    let name = disk.device.trim_start_matches("/dev/").to_owned();
    let logged_before = kernel_log().len();
    let chaos = Chaos::spawn_live(&mut chaos_command(&[
        "disk",
        "error",
        "--device",
        &disk.device,
        "--op",
        "write",
        "--for",
        "10m",
        "--json",
    ]));
    let first = write_and_fsync(&disk.file("first"), b'x');
    // The journal thread aborts on its failed commit; creates fail with EROFS from then on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    let erofs = loop {
        n += 1;
        match File::create(disk.file(&format!("f{n}"))) {
            Err(err) if err.raw_os_error() == Some(libc::EROFS) => break true,
            _ if Instant::now() > deadline => break false,
            Ok(file) => drop(file.sync_all()),
            Err(err) => assert_ne!(err.kind(), ErrorKind::NotFound, "{err}"),
        }
        thread::sleep(Duration::from_millis(100));
    };
    let bystander_result = write_and_fsync(&bystander.file("data"), b'n');
    let report = stop_chaos(chaos);
    assert!(first.is_err(), "the first fsync fails");
    assert!(erofs, "no create failed with EROFS within 60 s: {report}");
    assert!(
        bystander_result.is_ok(),
        "the other device: {bystander_result:?}"
    );
    assert!(
        report["faults"][0]["injected"].as_u64().unwrap() > 0,
        "{report}"
    );
    // Only what the kernel logged during this run: a loop device's name is reused.
    let logged = kernel_log();
    assert!(
        logged[logged_before.min(logged.len())..]
            .iter()
            .any(|line| line.contains(&name) && line.to_lowercase().contains("journal")),
        "the kernel log says the journal aborted on {name}"
    );
    assert_no_chaos_programs();
    assert_eq!(report["faults"][0]["mechanism"], rung, "{report}");
    eprintln!("journal aborted after {n} creates; {}", report["faults"][0]);
}

/// With --pid, only the bios the target submits itself fail: its fsync()-driven writeback
/// fails, while another process writing and fsyncing on the same filesystem sees nothing.
#[test]
fn disk_fault_narrowed_to_one_process() {
    let dir = scratch("pid");
    let Some(([disk], rung)) = disks_or_skip(&dir, ["a"]) else {
        return;
    };
    let victim = |name: &str| {
        let mut command = Command::new(VICTIM);
        command.args(["write-fsync", disk.file(name).to_str().unwrap()]);
        let victim = Victim::spawn(command, false, None);
        victim.wait_for_calls(1);
        victim
    };
    let target = victim("target");
    let bystander = victim("bystander");
    let pid = target.pid().to_string();
    let chaos = Chaos::spawn_live(&mut chaos_command(&[
        "disk",
        "error",
        "--device",
        &disk.device,
        "--op",
        "write",
        "--pid",
        &pid,
        "--for",
        "10m",
        "--json",
    ]));
    target.wait_for_failure();
    let failed_at = monotonic_ns();
    bystander.wait_for_call_after(failed_at);
    target.wait_for_call_after(monotonic_ns());
    let report = stop_chaos(chaos);
    let eio = target
        .calls()
        .iter()
        .filter(|c| c.errno == Some(libc::EIO))
        .count();
    assert!(eio > 0, "the target's fsync() fails with EIO");
    assert_bystander_untouched(&bystander);
    let fault = &report["faults"][0];
    assert_eq!(fault["mechanism"], rung, "{report}");
    assert!(fault["injected"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["targets"][0]["pid"], target.pid(), "{report}");
    assert_no_chaos_programs();
    eprintln!(
        "target: {eio} fsync() EIO of {} calls; bystander: {} calls, none failed; {fault}",
        target.calls().len(),
        bystander.calls().len()
    );
}

/// `chaos fail --kernel-fn should_fail_bio --caller ext4_sync_file`: the target's bios fail
/// only when fsync is on the kernel stack, so its fsync() gets EIO; with a caller that is never
/// on that path (ksys_read), nothing matches and every fsync() succeeds. A bystander on the
/// same filesystem never fails.
#[test]
fn disk_kernel_fn_should_fail_bio_only_under_fsync() {
    let dir = scratch("caller");
    let Some(([disk], rung)) = disks_or_skip(&dir, ["a"]) else {
        return;
    };
    let victim = |name: &str| {
        let mut command = Command::new(VICTIM);
        command.args(["write-fsync", disk.file(name).to_str().unwrap()]);
        let victim = Victim::spawn(command, false, None);
        victim.wait_for_calls(1);
        victim
    };
    let target = victim("target");
    let bystander = victim("bystander");
    let pid = target.pid().to_string();
    let run = |caller: &str| {
        let started = monotonic_ns();
        let chaos = Chaos::spawn_live(&mut chaos_command(&[
            "fail",
            "--pid",
            &pid,
            "--kernel-fn",
            "should_fail_bio",
            "--errno",
            "EIO",
            "--caller",
            caller,
            "--for",
            "10m",
            "--json",
        ]));
        // Ten fsyncs of the target under the fault.
        let live = monotonic_ns();
        while target.calls().iter().filter(|c| c.at_ns > live).count() < 10 {
            thread::sleep(Duration::from_millis(20));
        }
        let report = stop_chaos(chaos);
        let failed = target
            .calls()
            .iter()
            .filter(|c| c.at_ns > started && c.errno.is_some())
            .count();
        (report, failed)
    };

    let (other, failed) = run("ksys_read");
    assert_eq!(failed, 0, "no fsync fails when the caller is elsewhere");
    assert_eq!(other["faults"][0]["matched"], 0, "{other}");
    let (under_fsync, failed) = run("ext4_sync_file");
    let fault = &under_fsync["faults"][0];
    assert!(
        failed > 0,
        "the target's fsync() fails under fsync: {under_fsync}"
    );
    assert!(
        target
            .calls()
            .iter()
            .filter_map(|c| c.errno)
            .all(|errno| errno == libc::EIO),
        "with EIO"
    );
    assert_eq!(fault["op"], "should_fail_bio()", "{under_fsync}");
    assert_eq!(fault["mechanism"], rung, "{under_fsync}");
    assert!(fault["injected"].as_u64().unwrap() > 0, "{under_fsync}");
    assert_bystander_untouched(&bystander);
    assert_no_chaos_programs();
    eprintln!(
        "--caller ksys_read: 0 matched; --caller ext4_sync_file: {failed} fsync() EIO; {fault}"
    );
}

/// `chaos disk cut`: a process appending records and fsyncing each is frozen and killed at the
/// cut, and writes to the device fail from then on; it saw no error. After an unmount, a fresh
/// attach of the image and a mount (the cache gone, as after a power cut), every record it saw
/// synced is there. Another device works throughout.
#[test]
fn disk_cut_keeps_every_synced_record() {
    let dir = scratch("cut");
    let Some(([mut disk, bystander], rung)) = disks_or_skip(&dir, ["a", "b"]) else {
        return;
    };
    let cgroup = TestCgroup::new("disk-cut");
    // `sync FILE` fsyncs it; a record is printed once it is synced.
    let log = disk.file("log");
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i >> \"$0\" && sync \"$0\" && echo $i || echo failed $i; done",
        ])
        .arg(&log)
        .stdout(std::process::Stdio::piped());
    join_before_exec(&mut command, &cgroup);
    let mut writer = command.spawn().expect("writer");
    let stdout = writer.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&lines);
    thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    while lines.lock().unwrap().len() < 20 {
        thread::sleep(Duration::from_millis(20));
    }
    let cgroup_path = cgroup.path.to_str().unwrap().to_owned();
    let chaos = Chaos::spawn_live(&mut chaos_command(&[
        "disk",
        "cut",
        "--device",
        &disk.device,
        "--cgroup",
        &cgroup_path,
        "--for",
        "10m",
        "--json",
    ]));
    let status = writer.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the writer is killed at the cut: {status:?}"
    );
    let other = write_and_fsync(&bystander.file("data"), b'n');
    // Anyone's write to the device after the cut is lost: the disk has no power.
    let late = write_and_fsync(&disk.file("late"), b'l');
    // Unmounted while writes still fail, the power back (the fault ended), then mounted: the
    // journal replays.
    disk.unplug();
    let report = stop_chaos(chaos);
    disk.plug();
    assert!(other.is_ok(), "the other device: {other:?}");
    let lines = lines.lock().unwrap().clone();
    assert!(
        !lines.iter().any(|line| line.starts_with("failed")),
        "the writer saw no error: {lines:?}"
    );
    let synced: Vec<u64> = lines.iter().map(|l| l.parse().unwrap()).collect();
    let survived: Vec<u64> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    let last = *synced.last().unwrap();
    for record in 1..=last {
        assert!(
            survived.contains(&record),
            "synced record {record} is lost (survived up to {:?})",
            survived.last()
        );
    }
    let fault = &report["faults"][0];
    assert_eq!(fault["mechanism"], rung, "{report}");
    assert_eq!(fault["op"], "disk-write", "{report}");
    assert!(
        fault["injected"].as_u64().unwrap() > 0,
        "the writes after the cut failed: {report}"
    );
    assert!(late.is_err(), "a write after the cut cannot be synced");
    assert!(
        fs::read(disk.file("late")).map_or(true, |data| data.is_empty()),
        "a write after the cut never reaches the device"
    );
    assert_no_chaos_programs();
    eprintln!(
        "{} records synced before the cut, {} in the log after it; {}",
        synced.len(),
        survived.len(),
        report["faults"]
    );
}

/// Controllers enabled in a cgroup's `cgroup.subtree_control` for the test, disabled again on
/// drop where they were not before, if nothing below still uses them (else the kernel refuses
/// and they stay enabled: the test cgroups are dropped after the guards).
struct Enabled {
    control: PathBuf,
    added: Vec<&'static str>,
}

impl Enabled {
    fn new(cgroup: &Path, controllers: &[&'static str]) -> Self {
        let control = cgroup.join("cgroup.subtree_control");
        let before = fs::read_to_string(&control).unwrap_or_default();
        let added: Vec<_> = controllers
            .iter()
            .copied()
            .filter(|c| !before.split_whitespace().any(|b| b == *c))
            .collect();
        for controller in &added {
            fs::write(&control, format!("+{controller}")).unwrap_or_else(|err| {
                panic!("enable {controller} in {}: {err}", control.display())
            });
        }
        Enabled { control, added }
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        for controller in &self.added {
            let _ = fs::write(&self.control, format!("-{controller}"));
        }
    }
}

/// Runs `script` in `sh` inside `cgroup` and waits for it to succeed.
fn run_in(cgroup: &TestCgroup, script: &str, arg: &Path) {
    let mut command = Command::new("sh");
    command.args(["-c", script]).arg(arg);
    join_before_exec(&mut command, cgroup);
    let status = command.status().expect("sh");
    assert!(status.success(), "{script}: {status}");
}

/// A cgroup target loses the kernel's writeback of the pages it dirtied (cgroup writeback: the
/// io and memory controllers enabled for it), through each rung: its process writes a file
/// into the page cache and exits, a `sync` from outside writes the file back through the
/// flusher, that writeback fails, the next fsync() reports EIO and the data is gone once the
/// cache is dropped. A sibling cgroup's file, written back by the same sync, and the journal
/// (the kernel's own) are untouched. Without the controllers, the start says why the writeback
/// is not the cgroup's.
#[test]
fn disk_cgroup_loses_its_writeback_and_nothing_else() {
    let dir = scratch("cgroup-writeback");
    let Some(([disk], _)) = disks_or_skip(&dir, ["a"]) else {
        return;
    };
    let parent = TestCgroup::new("disk-writeback");
    let target = parent.child("target");
    let bystander = parent.child("bystander");
    let output = cgroup_disk_fault(&disk, &target, "auto", "1s")
        .output()
        .expect("chaos");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not charge the writeback")
            && stderr.contains(&format!("{}/cgroup.subtree_control", parent.path.display())),
        "without io and memory for the cgroup, the start says so: {stderr}"
    );
    let report = json_report(&output);
    assert!(
        !report["faults"][0]["covers"]
            .as_str()
            .unwrap()
            .contains("written back"),
        "{report}"
    );

    let mount = parent.path.parent().unwrap();
    let v2 = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    if !["io", "memory"]
        .iter()
        .all(|c| v2.split_whitespace().any(|v| v == *c))
    {
        assert!(
            !expected(features::ERROR_INJECTION),
            "the test guests have io and memory on cgroup v2"
        );
        eprintln!("NOT RUN: io and memory are not both on cgroup v2 here ({v2:?})");
        return;
    }
    let _root = Enabled::new(mount, &["io", "memory"]);
    let _parent = Enabled::new(&parent.path, &["io", "memory"]);
    let probe = Probe::run();
    for rung in OVERRIDE_RUNGS {
        if override_offered(&probe, rung).0 {
            cgroup_writeback_fails_through(&disk, &target, &bystander, rung);
        } else {
            eprintln!("{rung}: not offered here (the probe says why)");
        }
    }

    // A block device's own pages (a filesystem's metadata lives there) are never the target's,
    // though it dirtied them first: raw writes to a fresh device, kept open by another process
    // so that the target's close does not write them back itself, land when `sync` does.
    let image = dir.join("raw.img");
    File::create(&image)
        .and_then(|f| f.set_len(16 << 20))
        .expect("image file");
    let raw = Attached(losetup(&image, &[]).expect("a loop device"));
    let held = File::open(&raw.0).expect("hold the device open");
    let mut fault = cgroup_disk_fault_on(&raw.0, &target, "auto", "10m");
    let chaos = Chaos::spawn_live(&mut fault);
    run_in(
        &target,
        "head -c 65536 /dev/zero | tr '\\0' r | dd of=\"$0\" bs=64k seek=8 status=none",
        Path::new(&raw.0),
    );
    sh("sync");
    let report = stop_chaos(chaos);
    drop(held);
    drop_caches();
    let mut data = vec![0; FILE_LEN];
    File::open(&raw.0)
        .unwrap()
        .read_exact_at(&mut data, 8 * FILE_LEN as u64)
        .unwrap();
    assert_eq!(
        data,
        vec![b'r'; FILE_LEN],
        "the device's own pages were written back: {report}"
    );
    assert_eq!(report["faults"][0]["injected"], 0, "{report}");
}

/// `chaos disk error` on `disk`'s writes for cgroup `target`, through `backend`.
fn cgroup_disk_fault(disk: &LoopDisk, target: &TestCgroup, backend: &str, time: &str) -> Command {
    cgroup_disk_fault_on(&disk.device, target, backend, time)
}

/// The same on device `device`.
fn cgroup_disk_fault_on(device: &str, target: &TestCgroup, backend: &str, time: &str) -> Command {
    chaos_command(&[
        "disk",
        "error",
        "--device",
        device,
        "--op",
        "write",
        "--cgroup",
        target.path.to_str().unwrap(),
        "--backend",
        backend,
        "--for",
        time,
        "--json",
    ])
}

/// One round of the test above, with `--backend rung`.
fn cgroup_writeback_fails_through(
    disk: &LoopDisk,
    target: &TestCgroup,
    bystander: &TestCgroup,
    rung: &str,
) {
    let chaos = Chaos::spawn_live(&mut cgroup_disk_fault(disk, target, rung, "10m"));
    // Each writes a new file into the page cache (its name's first letter, 64 KiB of it) and
    // exits: nothing it submits itself.
    let write = "head -c 65536 /dev/zero | tr '\\0' \"$(basename \"$0\" | head -c 1)\" > \"$0\"";
    let (lost, kept) = (format!("t-{rung}"), format!("b-{rung}"));
    run_in(target, write, &disk.file(&lost));
    run_in(bystander, write, &disk.file(&kept));
    assert!(
        fs::read_to_string(target.path.join("cgroup.procs"))
            .unwrap()
            .trim()
            .is_empty(),
        "the target cgroup is empty before the sync"
    );
    sh("sync");
    // While the fault lasts, others' files and the journal are written: from outside the
    // cgroups, and from the sibling.
    let outside = write_and_fsync(&disk.file(&format!("outside-{rung}")), b'o');
    run_in(
        bystander,
        "echo sibling > \"$0\" && sync \"$0\"",
        &disk.file(&format!("s-{rung}")),
    );
    let report = stop_chaos(chaos);
    assert!(
        outside.is_ok(),
        "{rung}: a write and fsync from outside: {outside:?}"
    );
    let fsync = |name: &str| File::open(disk.file(name)).and_then(|f| f.sync_all());
    let first = fsync(&lost);
    let second = fsync(&lost);
    let other = fsync(&kept);
    // The journal is not the target's: a new file is created and synced.
    let after = write_and_fsync(&disk.file(&format!("after-{rung}")), b'a');
    drop_caches();
    assert_eq!(
        first.as_ref().map_err(|e| e.raw_os_error()),
        Err(Some(libc::EIO)),
        "{rung}: the target's file was not written back, and fsync() says so"
    );
    assert!(second.is_ok(), "{rung}: and only once: {second:?}");
    assert!(
        other.is_ok(),
        "{rung}: the sibling cgroup's file: {other:?}"
    );
    assert!(after.is_ok(), "{rung}: the journal works: {after:?}");
    assert!(
        !fs::read(disk.file(&lost)).unwrap().contains(&b't'),
        "{rung}: the target's data never reached the device"
    );
    assert_eq!(
        fs::read(disk.file(&kept)).unwrap(),
        vec![b'b'; 65536],
        "{rung}: the sibling's data did"
    );
    let fault = &report["faults"][0];
    assert_eq!(fault["mechanism"], rung, "{report}");
    assert!(
        fault["covers"]
            .as_str()
            .unwrap()
            .contains("written back for their cgroup"),
        "{report}"
    );
    assert!(fault["injected"].as_u64().unwrap() > 0, "{report}");
    assert_no_chaos_programs();
    eprintln!("{rung}: the cgroup's writeback failed, its sibling's landed; {fault}");
}

/// The size of each partition of [`disk_whole_disk_includes_its_partitions`], in sectors.
const PARTITION_SECTORS: u64 = 4096;

/// Writes 64 KiB of `byte` at `offset` of block device `path` and fsyncs it: the fsync's result
/// (the writeback runs in the caller, so its bios are to that device).
fn write_device(path: &str, offset: u64, byte: u8) -> std::io::Result<()> {
    let device = OpenOptions::new().write(true).open(path)?;
    device
        .write_all_at(&[byte; FILE_LEN], offset)
        .expect("a write into the page cache succeeds");
    device.sync_all()
}

/// A GPT with two partitions of [`PARTITION_SECTORS`] on `target`, a disk or an image file.
fn make_partitions(target: &Path) {
    let table = format!("label: gpt\nsize={PARTITION_SECTORS}\nsize={PARTITION_SECTORS}\n");
    let mut sfdisk = Command::new("sfdisk")
        .arg("--quiet")
        .arg(target)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk");
    std::io::Write::write_all(&mut sfdisk.stdin.take().unwrap(), table.as_bytes()).unwrap();
    assert!(
        sfdisk.wait().unwrap().success(),
        "sfdisk {}",
        target.display()
    );
}

/// Disk `device`'s `dev` and its partitions' `(node, dev, start sector)`, in order, as /sys says.
fn partitions_of(device: &str) -> (String, Vec<(String, String, u64)>) {
    let sys = Path::new("/sys/block").join(device.trim_start_matches("/dev/"));
    let read = |dir: &Path, file: &str| {
        fs::read_to_string(dir.join(file))
            .ok()
            .map(|text| text.trim().to_owned())
    };
    let mut parts: Vec<(u32, String, String, u64)> = fs::read_dir(&sys)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let dir = entry.path();
            Some((
                read(&dir, "partition")?.parse().ok()?,
                format!("/dev/{}", entry.file_name().to_string_lossy()),
                read(&dir, "dev")?,
                read(&dir, "start")?.parse().ok()?,
            ))
        })
        .collect();
    parts.sort();
    let parts = parts
        .into_iter()
        .map(|(_, node, dev, start)| (node, dev, start))
        .collect();
    (read(&sys, "dev").unwrap(), parts)
}

/// The spare virtio disk the test guests get (found by its serial), if there is one.
fn spare_disk() -> Option<String> {
    fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let serial = fs::read_to_string(entry.path().join("serial")).ok()?;
            (serial.trim() == chaos_common::names::SPARE_DISK_SERIAL)
                .then(|| format!("/dev/{}", entry.file_name().to_string_lossy()))
        })
}

/// A loop device, detached on drop.
struct Attached(String);

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A whole disk includes its partitions, whatever their numbers, and `--sector` counts from the
/// start of the device named. Two disks with two partitions each: a loop device, whose
/// partitions get extended numbers (major 259), as an NVMe disk's do, and the guest's spare
/// virtio disk, whose partitions are numbered after it, as a SCSI disk's are. Through each
/// rung, a fault on the whole disk fails writes to both partitions; one on p2's first sectors,
/// counted from the disk or from p2, fails writes there and not 1 MiB further on, nor p1's; a
/// third device never fails.
#[test]
fn disk_whole_disk_includes_its_partitions() {
    let dir = scratch("partitions");
    let Some(([bystander], _)) = disks_or_skip(&dir, ["b"]) else {
        return;
    };
    // The bystander's ext4 is written over at its start.
    sh(&format!("umount {}", bystander.mount.display()));
    let image = dir.join("parted.img");
    File::create(&image)
        .and_then(|f| f.set_len(32 << 20))
        .expect("image file");
    make_partitions(&image);
    let looped = Attached(losetup(&image, &["--partscan"]).expect("a loop device"));
    partitions_fail_with_their_disk(&looped.0, &bystander.device, true);
    match spare_disk() {
        Some(disk) => {
            make_partitions(Path::new(&disk));
            partitions_fail_with_their_disk(&disk, &bystander.device, false);
        }
        None => {
            assert!(
                !expected(features::ERROR_INJECTION),
                "the test guests that can fail bios have a spare virtio disk"
            );
            eprintln!("NOT RUN for partitions numbered after their disk: no spare virtio disk");
        }
    }
    assert_no_chaos_programs();
}

/// The rounds of the test above on partitioned disk `disk`, whose partitions have extended
/// numbers or not, with `bystander` beside it.
fn partitions_fail_with_their_disk(disk: &str, bystander: &str, extended: bool) {
    let (disk_dev, parts) = partitions_of(disk);
    let [(first, first_dev, _), (second, second_dev, second_start)] = &parts[..] else {
        panic!("{disk} has two partitions: {parts:?}");
    };
    let major = |dev: &str| dev.split(':').next().unwrap().parse::<u32>().unwrap();
    let numbered = if extended {
        chaos_common::fault::BLOCK_EXT_MAJOR
    } else {
        major(&disk_dev)
    };
    assert!(
        major(first_dev) == numbered && major(second_dev) == numbered,
        "{disk} ({disk_dev}): partitions {first_dev} and {second_dev}"
    );
    let beyond = 2048 * 512; // 1 MiB into a partition: past the sectors below.
    let probe = Probe::run();
    for rung in OVERRIDE_RUNGS {
        if !override_offered(&probe, rung).0 {
            eprintln!("{rung}: not offered here (the probe says why)");
            continue;
        }
        let run = |device: &str, sectors: Option<String>| {
            let mut args = vec![
                "disk",
                "error",
                "--device",
                device,
                "--op",
                "write",
                "--backend",
                rung,
                "--for",
                "10m",
                "--json",
            ];
            if let Some(sectors) = &sectors {
                args.extend(["--sector", sectors]);
            }
            let chaos = Chaos::spawn_live(&mut chaos_command(&args));
            let results = [
                write_device(first, 0, b'1'),
                write_device(second, 0, b'2'),
                write_device(second, beyond, b'3'),
                write_device(bystander, 0, b'o'),
            ];
            let report = stop_chaos(chaos);
            assert_eq!(report["faults"][0]["mechanism"], rung, "{report}");
            let failed: Vec<bool> = results.iter().map(Result::is_err).collect();
            eprintln!(
                "{rung}, {device} {sectors:?}: failed {failed:?} (p1, p2, p2 + 1 MiB, another device); {}",
                report["faults"][0]
            );
            failed
        };
        let head = |start: u64| Some(format!("{start}-{}", start + 127));
        assert_eq!(
            run(disk, None),
            [true, true, true, false],
            "{rung}: the whole disk {disk} ({disk_dev}): both partitions' writes fail"
        );
        assert_eq!(
            run(disk, head(*second_start)),
            [false, true, false, false],
            "{rung}: p2's first sectors, counted from the disk's start (p2 starts at {second_start})"
        );
        assert_eq!(
            run(second, head(0)),
            [false, true, false, false],
            "{rung}: p2's first sectors, counted from p2's start"
        );
    }
}

/// A device that is not one is refused before anything is attached, naming the value.
#[test]
fn disk_bad_device_is_refused_naming_it() {
    for (device, says) in [
        ("/dev/null", "not a block device"),
        ("/no/such/disk", "No such file"),
        ("4095:1048575", "no block device"),
        ("sda", "neither a path nor a MAJOR:MINOR pair"),
    ] {
        let output = chaos(&["disk", "error", "--device", device]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{device}: {stderr}");
        assert!(
            stderr.contains(device) && stderr.contains(says),
            "{device}: {stderr}"
        );
    }
    // The device under this machine's root filesystem, where it is a block device (not in the
    // guests, whose root is an overlay).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = mountinfo
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(4) == Some(&"/"))
        .map(|fields| fields[2].to_owned())
        .unwrap();
    if Path::new(&format!("/sys/dev/block/{root}")).exists() {
        let output = chaos(&["disk", "error", "--device", &root, "--for", "1s"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("root filesystem") && stderr.contains("--force"),
            "{stderr}"
        );
    } else {
        eprintln!("the root filesystem is on no block device here ({root}): its refusal not tried");
    }
    let output = chaos(&["disk", "error", "--op", "trim", "--device", "7:0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("'trim'"));
    assert_no_chaos_programs();
}

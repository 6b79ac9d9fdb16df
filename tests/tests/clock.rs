//! `chaos clock`: programs a target starts read their clocks shifted — `date`, Python (glibc),
//! a static C program linked with musl and a static Go program, each of which reads the clock
//! through the vDSO unless chaos withholds it — while the same programs outside the target, and
//! a target process that was already running (it keeps its vDSO), read the true time. Where the
//! kernel cannot (bpf_probe_write_user refused, no trampolines), the refusal is asserted with its
//! reason.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use chaos_common::features;
use chaos_tests::*;

/// How far a reading may be from the expected one: the readers run one after the other, and a
/// guest under emulation starts Python in seconds.
const SLACK_SECS: f64 = 5.0;

const DAY: f64 = 86_400.0;

/// Whether `output` is chaos refusing the fault for what this kernel lacks, as the probe says
/// (asserted, with the reason in the message).
fn refused(output: &Output) -> bool {
    if output.status.code() != Some(2) {
        return false;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("clocks cannot be shifted on this kernel"),
        "{stderr}"
    );
    let probe = Probe::run();
    let (write_user, write_user_detail) = probe.feature(features::PROBE_WRITE_USER);
    let (trampoline, trampoline_detail) = probe.feature(features::TRAMPOLINE);
    let reason = if !write_user {
        assert!(!expected(features::PROBE_WRITE_USER), "{stderr}");
        write_user_detail
    } else {
        assert!(!trampoline, "refused although both work here: {stderr}");
        assert!(!expected(features::TRAMPOLINE), "{stderr}");
        trampoline_detail
    };
    assert!(
        stderr.contains(&reason),
        "the refusal must name '{reason}': {stderr}"
    );
    eprintln!("chaos clock NOT INJECTED on this kernel, as the probe predicts: {reason}");
    assert_no_chaos_programs();
    true
}

/// Starts `chaos clock ARGS --for 10m --json` and returns once it is live, or `None` where the
/// kernel cannot (asserted).
fn start_clock(args: &[&str]) -> Option<Chaos> {
    let mut full = vec!["clock"];
    full.extend_from_slice(args);
    // A dry run first: the refusal comes before anything is attached, and costs no wait.
    let mut dry = full.clone();
    dry.extend_from_slice(&["--for", "1ms"]);
    if !dry.contains(&"--dry-run") {
        dry.push("--dry-run");
    }
    let output = chaos(&dry);
    if refused(&output) {
        return None;
    }
    assert!(
        output.status.success(),
        "{dry:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    full.extend_from_slice(&["--for", "10m", "--json"]);
    Some(Chaos::spawn_live(&mut chaos_command(&full)))
}

/// The programs that read the clock: each prints the real time in seconds since the epoch.
struct Readers {
    go: PathBuf,
    musl: PathBuf,
    /// glibc's time(NULL): the time syscall once the vDSO is withheld, whose return value only
    /// an fmod_ret program can shift.
    time: PathBuf,
}

impl Readers {
    /// Builds them under the target directory, once per source: the host's tests run before
    /// the guests', whose root is the host's, so an emulated guest finds them built (the Go and
    /// two C builds took about a minute of this test's 69 s on debian-5.10).
    fn build() -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clock-readers");
        fs::create_dir_all(&dir).expect("create the readers' directory");
        // `binary`, built from `source` (a file `name` in `dir`) by `compile` unless that
        // source built it already.
        let built = |name: &str,
                     source: &str,
                     binary: &str,
                     what: &str,
                     compile: &dyn Fn(&Path, &Path) -> Command| {
            let (source_path, binary_path) = (dir.join(name), dir.join(binary));
            if binary_path.exists()
                && fs::read_to_string(&source_path).is_ok_and(|old| old == source)
            {
                return binary_path;
            }
            // No binary of an older source survives a failed build.
            let _ = fs::remove_file(&binary_path);
            fs::write(&source_path, source).expect("write a reader's source");
            let output = compile(&source_path, &binary_path)
                .output()
                .unwrap_or_else(|err| {
                    panic!("{what}: {err} (cargo xtask setup installs golang-go and musl-tools)")
                });
            assert!(
                output.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            binary_path
        };
        let go = built(
            "now.go",
            "package main\n\nimport (\n\t\"fmt\"\n\t\"time\"\n)\n\nfunc main() {\n\tnow := time.Now()\n\tfmt.Printf(\"%d.%09d\\n\", now.Unix(), now.Nanosecond())\n}\n",
            "now-go",
            "go build (Debian's golang-go)",
            &|source, binary| {
                let mut command = Command::new("go");
                command
                    .args(["build", "-o"])
                    .arg(binary)
                    .arg(source)
                    .env("CGO_ENABLED", "0")
                    .env("GOCACHE", dir.join("go-cache"))
                    .env("GOPATH", dir.join("go-path"))
                    .env("HOME", &dir);
                command
            },
        );
        let musl = built(
            "now.c",
            "#include <stdio.h>\n#include <time.h>\nint main(void) {\n  struct timespec now;\n  if (clock_gettime(CLOCK_REALTIME, &now)) return 1;\n  printf(\"%lld.%09ld\\n\", (long long)now.tv_sec, now.tv_nsec);\n  return 0;\n}\n",
            "now-musl",
            "musl-gcc -static (Debian's musl-tools)",
            &|source, binary| {
                let mut command = Command::new("musl-gcc");
                command
                    .args(["-static", "-O2", "-o"])
                    .arg(binary)
                    .arg(source);
                command
            },
        );
        let time = built(
            "time.c",
            "#include <stdio.h>\n#include <time.h>\nint main(void) {\n  printf(\"%ld\\n\", (long)time(NULL));\n  return 0;\n}\n",
            "time-glibc",
            "cc (Debian's gcc)",
            &|source, binary| {
                let mut command = Command::new("cc");
                command.arg("-o").arg(binary).arg(source);
                command
            },
        );
        Readers { go, musl, time }
    }

    /// Each reader's name and command line.
    fn commands(&self) -> Vec<(&'static str, Command)> {
        let mut date = Command::new("date");
        date.arg("+%s.%N");
        let mut python = Command::new("python3");
        python.args(["-c", "import time; print(repr(time.time()))"]);
        vec![
            ("date", date),
            ("python3", python),
            ("go", Command::new(&self.go)),
            ("musl", Command::new(&self.musl)),
        ]
    }
}

/// The kernel's clocksource, and whether the vDSO reads it without a syscall (x86's vDSO
/// clock modes: the TSC and the paravirtual clocks).
fn clocksource() -> (String, bool) {
    let source =
        fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .expect("read the current clocksource")
            .trim()
            .to_owned();
    let vdso = ["tsc", "kvm-clock", "hyperv_clocksource_tsc_page"].contains(&source.as_str());
    (source, vdso)
}

/// The real time now, in seconds.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64()
}

/// Runs `command` (in `cgroup` if given) and returns what it printed, as seconds, with how far
/// that is from the true time.
fn read_clock(mut command: Command, cgroup: Option<&TestCgroup>) -> f64 {
    if let Some(cgroup) = cgroup {
        join_before_exec(&mut command, cgroup);
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .expect("run a reader");
    let truth = now();
    assert!(output.status.success(), "{command:?}: {:?}", output.status);
    let printed = String::from_utf8_lossy(&output.stdout);
    let read: f64 = printed
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{command:?} printed {printed:?}"));
    read - truth
}

/// Checks that every reader, started in `cgroup` (or outside it), reads the time `offset`
/// seconds away from the true time.
fn assert_readers_see(readers: &Readers, cgroup: Option<&TestCgroup>, offset: f64) {
    for (name, command) in readers.commands() {
        let skew = read_clock(command, cgroup);
        let place = if cgroup.is_some() { "in" } else { "outside" };
        eprintln!("{name} {place} the target: {skew:+.3}s from the true time");
        assert!(
            (skew - offset).abs() < SLACK_SECS,
            "{name} {place} the target read {skew:+.3}s from the true time, expected {offset:+}s"
        );
    }
}

/// A forward shift of a day: what `date`, Python, musl and Go programs started in the target
/// cgroup read is a day ahead (the report counts their execs and reads), the same programs
/// outside it and a process of the target that was running before read the true time, and once
/// the run ends the target's new programs read the true time again.
#[test]
fn clock_programs_started_in_the_target_read_the_shifted_time() {
    // Built first, where the kernel refuses too: the guests run after the host.
    let readers = Readers::build();
    let cgroup = TestCgroup::new("clock");
    let mut early = Command::new("python3");
    early.args([
        "-c",
        "import sys, time\nfor line in sys.stdin: print(repr(time.time()), flush=True)",
    ]);
    join_before_exec(&mut early, &cgroup);
    let mut early = early
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the early reader");
    let path = cgroup.path.to_str().expect("utf-8").to_owned();
    let Some(chaos) = start_clock(&["--cgroup", &path, "--offset", "+1d"]) else {
        let _ = early.kill();
        let _ = early.wait();
        return;
    };
    assert_readers_see(&readers, Some(&cgroup), DAY);
    assert_readers_see(&readers, None, 0.0);
    // A whole second: time() truncates.
    let time_skew = read_clock(Command::new(&readers.time), Some(&cgroup)) + 0.5;
    eprintln!("time(NULL) in the target: {time_skew:+.1}s from the true time");
    // The process that was already running keeps its vDSO: the true time.
    {
        use std::io::{BufRead as _, BufReader, Write as _};
        let mut stdin = early.stdin.take().expect("piped");
        writeln!(stdin).expect("ask the early reader");
        let mut line = String::new();
        BufReader::new(early.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read the early reader");
        let skew = line.trim().parse::<f64>().expect("seconds") - now();
        // Unless the clocksource has no vDSO mode (hpet, acpi_pm: a slow guest's), where the
        // vDSO itself makes the syscall.
        let (source, vdso) = clocksource();
        let expected = if vdso { 0.0 } else { DAY };
        eprintln!(
            "a target running before the fault, clocksource {source}: {skew:+.3}s from the true time"
        );
        assert!(
            (skew - expected).abs() < SLACK_SECS,
            "the early reader read {skew:+.3}s, expected {expected:+}s (clocksource {source})"
        );
        drop(stdin);
        let _ = early.wait();
    }
    let report = stop_chaos(chaos);
    let row = &report["faults"][0];
    eprintln!("{row}");
    assert_eq!(row["kind"], "rewrite", "{row}");
    assert_eq!(row["op"], "clock", "{row}");
    assert_eq!(row["setting"], "+1day (realtime)", "{row}");
    assert_eq!(row["mechanism"], "fexit", "{row}");
    // time(NULL) is shifted where an fmod_ret program answers it, else it is the true second.
    let covers = row["covers"].as_str().expect("covers");
    let fmod_ret = covers.contains("answered by fmod_ret");
    assert!(
        fmod_ret || !expected(features::ERROR_INJECTION),
        "this kernel has the error-injection list: {row}"
    );
    let expected_time = if fmod_ret { DAY } else { 0.0 };
    assert!(
        (time_skew - expected_time).abs() < SLACK_SECS,
        "time(NULL) read {time_skew:+.1}s, expected {expected_time:+}s ({covers})"
    );
    let readers_count = readers.commands().len() as u64;
    assert!(
        row["vdso_withheld"].as_u64() >= Some(readers_count + 1),
        "each reader's exec in the target, time(NULL)'s too: {row}"
    );
    // time(NULL)'s read counts only where it is shifted.
    assert!(
        row["injected"].as_u64() >= Some(readers_count + u64::from(fmod_ret)),
        "each reader's read at least: {row}"
    );
    assert_no_chaos_programs();
    assert_readers_see(&readers, Some(&cgroup), 0.0);
}

/// A shift back, of the real time only, and a shift of the monotonic clock only, for a process
/// tree: its Python child reads the chosen clock shifted and the other one true, and its
/// `time.sleep(0.5)` (clock_nanosleep to an absolute deadline on CLOCK_MONOTONIC) still sleeps
/// half a second, not an hour more.
#[test]
fn clock_shifts_back_and_only_the_chosen_clocks() {
    let script = "import sys, time\nsys.stdin.readline()\nstart = time.monotonic()\ntime.sleep(0.5)\nslept = time.monotonic() - start\nprint(repr(time.time()), repr(time.monotonic()), repr(slept), flush=True)";
    // A dry run shifts nothing, not even the deadline of a sleep (which would then return at
    // once: the deadline taken an hour back).
    for (offset, clock, dry_run, shifted) in [
        ("-2h", "realtime", false, [-7200.0, 0.0]),
        ("+1h", "monotonic", false, [0.0, 3600.0]),
        ("+1h", "monotonic", true, [0.0, 0.0]),
    ] {
        // A shell that waits, then execs Python once the fault is live: the tree's child.
        let mut shell = Command::new("sh")
            // A regression would sleep an hour: timeout ends it.
            .args([
                "-c",
                &format!("read go && exec timeout 60 python3 -c '{script}'"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the shell");
        let pid = shell.id().to_string();
        let offset_arg = format!("--offset={offset}");
        let mut args = vec!["--pid-tree", &pid, &offset_arg, "--clock", clock];
        if dry_run {
            args.push("--dry-run");
        }
        let Some(chaos) = start_clock(&args) else {
            let _ = shell.kill();
            let _ = shell.wait();
            return;
        };
        {
            use std::io::Write as _;
            let mut stdin = shell.stdin.take().expect("piped");
            // One line for the shell's read, one for Python's.
            writeln!(stdin, "go\ngo").expect("start Python");
        }
        let output = shell.wait_with_output().expect("the shell");
        let (real, mono) = (now(), monotonic_ns() as f64 / 1e9);
        let printed = String::from_utf8_lossy(&output.stdout);
        let read: Vec<f64> = printed
            .split_whitespace()
            .map(|s| s.parse().expect("seconds"))
            .collect();
        assert_eq!(read.len(), 3, "{printed:?} {output:?}");
        let slept = read[2];
        assert!(
            (0.45..5.0).contains(&slept),
            "--offset={offset} --clock {clock}: time.sleep(0.5) took {slept:.3}s"
        );
        let skew = [read[0] - real, read[1] - mono];
        eprintln!(
            "--offset={offset} --clock {clock}: {skew:+.3?}s (real, monotonic), slept {slept:.3}s"
        );
        for (what, (skew, expected)) in ["real", "monotonic"].iter().zip(skew.iter().zip(shifted)) {
            assert!(
                (skew - expected).abs() < SLACK_SECS,
                "--offset={offset} --clock {clock}: the {what} time read {skew:+.3}s away, expected {expected:+}s"
            );
        }
        let report = stop_chaos(chaos);
        let row = &report["faults"][0];
        let withheld = if dry_run { 0 } else { 2 };
        assert_eq!(
            row["vdso_withheld"], withheld,
            "timeout's exec and Python's, unless a dry run: {row}"
        );
        assert_no_chaos_programs();
    }
}

/// chaos SIGKILLed: its links go with it, nothing of it stays in the kernel, and the target's
/// new programs read the true time.
#[test]
fn clock_ends_when_chaos_is_killed() {
    let cgroup = TestCgroup::new("clock-kill");
    let path = cgroup.path.to_str().expect("utf-8").to_owned();
    let Some(mut chaos) = start_clock(&["--cgroup", &path, "--offset", "+3h"]) else {
        return;
    };
    let mut date = Command::new("date");
    date.arg("+%s.%N");
    let skew = read_clock(date, Some(&cgroup));
    assert!((skew - 3.0 * 3600.0).abs() < SLACK_SECS, "{skew:+.3}s");
    chaos.kill().expect("SIGKILL chaos");
    let _ = chaos.wait();
    assert_no_chaos_programs();
    let mut date = Command::new("date");
    date.arg("+%s.%N");
    let skew = read_clock(date, Some(&cgroup));
    assert!(skew.abs() < SLACK_SECS, "after chaos died: {skew:+.3}s");
}

/// `--detach`: the shift outlives chaos's process and ends at the run's in-kernel deadline. A
/// Python started in the target during the run (so without its vDSO: every read a syscall) reads
/// the real time an hour back and sleeps half a second as asked while it runs; after the
/// deadline, with the programs still pinned, it reads the true time and still sleeps half a
/// second (no deadline taken back), and a new `date` reads the true time; `chaos cleanup` then
/// finds the expired run and takes its programs out.
#[test]
fn clock_detached_run_ends_at_its_deadline() {
    let cgroup = TestCgroup::new("clock-detach");
    let path = cgroup.path.to_str().expect("utf-8").to_owned();
    let args = [
        "clock",
        "--cgroup",
        &path,
        "--offset=-1h",
        "--clock",
        "realtime,monotonic",
    ];
    let mut dry = args.to_vec();
    dry.extend_from_slice(&["--for", "1ms", "--dry-run"]);
    if refused(&chaos(&dry)) {
        return;
    }
    let mut full = args.to_vec();
    full.extend_from_slice(&["--for", "10s"]);
    let run = start_detached(&full);
    let mut python = Command::new("timeout");
    python.args([
        "60",
        "python3",
        "-c",
        "import sys, time\nfor line in sys.stdin:\n    start = time.monotonic()\n    time.sleep(0.5)\n    print(repr(time.time()), repr(time.monotonic() - start), flush=True)",
    ]);
    join_before_exec(&mut python, &cgroup);
    let mut python = python
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start Python");
    let mut ask = {
        use std::io::{BufRead as _, BufReader, Write as _};
        let mut stdin = python.stdin.take().expect("piped");
        let mut lines = BufReader::new(python.stdout.take().expect("piped")).lines();
        move || {
            writeln!(stdin).expect("ask Python");
            let line = lines.next().expect("Python answers").expect("read");
            let read: Vec<f64> = line
                .split_whitespace()
                .map(|s| s.parse().expect("seconds"))
                .collect();
            (read[0] - now(), read[1])
        }
    };
    let (skew, slept) = ask();
    assert!(
        monotonic_ns() < run.deadline_ns,
        "the run ended before it was checked"
    );
    eprintln!("during the run: {skew:+.3}s, slept {slept:.3}s");
    assert!(
        (skew + 3600.0).abs() < SLACK_SECS,
        "during the run: {skew:+.3}s"
    );
    assert!(
        (0.45..5.0).contains(&slept),
        "during the run: slept {slept:.3}s"
    );
    while monotonic_ns() < run.deadline_ns {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (skew, slept) = ask();
    eprintln!("after the deadline: {skew:+.3}s, slept {slept:.3}s");
    assert!(skew.abs() < SLACK_SECS, "after the deadline: {skew:+.3}s");
    assert!(
        (0.45..5.0).contains(&slept),
        "after the deadline: slept {slept:.3}s"
    );
    let mut date = Command::new("date");
    date.arg("+%s.%N");
    let skew = read_clock(date, Some(&cgroup));
    assert!(
        skew.abs() < SLACK_SECS,
        "a new date after the deadline: {skew:+.3}s"
    );
    drop(ask);
    let _ = python.wait();
    assert_cleanup_finds_expired(&run.id);
    assert_no_chaos_programs();
}

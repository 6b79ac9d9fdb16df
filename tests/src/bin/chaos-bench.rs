//! The errno benchmark: the cost of a hooked call, per case, for one operation.
//!
//!   chaos-bench connect|open [ITERATIONS] [ROUNDS] [PASSES]
//!
//! Cases: (1) no programs; (2) every errno program this kernel offers attached, the loop not a
//! target ((2f) as fmod_ret where BPF LSM also loads, (2k) as kprobe-override where it loads);
//! (3) the loop a target with --dry-run; (4) every call failed by `--op`; on kernels with
//! kprobe-override also (4s) every call failed by `--syscall`, at the syscall's entry; (5) the
//! same failures injected by `strace -f -e inject=SYSCALL:error=E`. One loop process serves
//! every case, in interleaved passes; a case's figure is the median ns per call over all its
//! rounds. Prints the ratios the project holds itself to: (2)/(1) <= 1.05, and strace against
//! chaos's cheapest way to fail the call >= 20.
//! Run by `cargo xtask bench` on the host (connect) and in the qemu guest (open).
//!
//!   chaos-bench read [ITERATIONS] [ROUNDS] [PASSES]
//!
//! The same for `chaos corrupt-io` on a pread() loop of a 1-byte file: (1) no programs; (2) its
//! programs attached for another process (fexit where trampolines load), (2t) the same through
//! syscall tracepoints; (3) the loop a target of `--path FILE --dry-run`;
//! (4) every read of the file corrupted; (5) `strace -e trace=pread64`, the least a ptrace-based
//! corrupter pays (it stops at every call and changes nothing); and (2o) `chaos disk full` for
//! another process, whose statfs tracepoints alone put every syscall of the machine on the
//! kernel's slow path. Needs syscall tracepoints and bpf_probe_write_user (a Debian guest).
//!
//!   chaos-bench delay [CALLS]
//!
//! `chaos delay` on a statfs() loop: the cost to a process that is not a target of the exit
//! tracepoint (1, 2; 2f: the fexit program, where trampolines load; 5: `strace -e
//! trace=statfs`, what ptrace costs it), then (CALLS > 0) the delay each of CALLS calls gets,
//! each call timed on its own: without injector, and with 1 ms and 10 ms asked of chaos and of
//! `strace -e inject=statfs:delay_exit=N`, the p50 and p99 of the time added to a call and of its
//! error against the asked delay. Run on the host, whose clock is real (tracepoints), and with
//! CALLS 0 in the debian-6.12 guest (fexit against tracepoints).
//!
//!   chaos-bench clock [ITERATIONS] [ROUNDS] [PASSES]
//!
//! `chaos clock` on a loop of clock_gettime(CLOCK_REALTIME) syscalls (what a target without its
//! vDSO makes): (1) no programs; (2) its programs attached for another process; (3) the loop a
//! target with --dry-run; (4) every read shifted; (5) `strace -e trace=clock_gettime`, what
//! ptrace costs the loop. Then what one read costs a program: through the vDSO (no fault, or a
//! process started before it), and through libfaketime (LD_PRELOAD, Debian's faketime), the
//! tool users pick to shift a program's clock. Needs bpf_probe_write_user and trampolines (a
//! Debian guest).
//!
//!   chaos-bench deadline [TRIALS]
//!
//! Deadline precision: how close to `--for` a fault's failures stop.
//!
//!   chaos-bench disk [PASSES]
//!
//! Block I/O with `chaos disk error` attached to another device (its program runs for every
//! bio, matching none) against no program: a sequential write with fsync and 4 KiB random
//! direct reads, of a loop device itself (its page cache writes one 4 KiB bio per page, the
//! most bios per byte) and of a file on ext4 on another loop device (as a database writes), in
//! interleaved passes. Needs should_fail_bio in the error-injection list (the faultinj guest).
//!
//!   chaos-bench hooks [PASSES] [DATAGRAMS]
//!
//! Where to drop: DATAGRAMS UDP datagrams flooded from namespace A to B, every one dropped by
//! (2) chaos at XDP in the driver, (3) at generic XDP, (4) at TC (tcx, or clsact before 6.6) on
//! B's ingress, or (5) netem (loss 100 %) on A's egress, the only side it acts on; against (1)
//! none, each delivered to a socket. The figure is the CPU time of the whole machine per
//! datagram (/proc/stat), median and range of PASSES interleaved passes. Then TCP throughput
//! (iperf3) with each attached but matching nothing (netem: with no impairment). On a veth pair,
//! and on two virtio-net NICs on one wire where the machine has them idle (the guests).
//!
//!   chaos-bench start [TRIALS]
//!
//! Start, as a new user meets it: from starting `chaos fail --pid P --op connect` (or
//! `strace -p P -e inject=connect:…`) to the first failure P's connect() loop sees, and the
//! injector's peak RSS (wait4's ru_maxrss), side by side; chaos alone, and with `chaos idle`
//! running (the DaemonSet's process), whose spare programs a run takes verified.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener},
    os::fd::AsRawFd as _,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use chaos_common::features;
use chaos_tests::{Probe, chaos_bin};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("loop") => {
            return measure_loop(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
        }
        Some("deadline") => return deadline(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(7)),
        Some("deadline-loop") => return deadline_loop(),
        Some("start") => return start(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(7)),
        Some("net") => return net_bench(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3)),
        Some("disk") => return disk_bench(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5)),
        Some("hooks") => {
            let passes = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3);
            let datagrams = args
                .get(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or(1_000_000);
            return hooks_bench(passes, datagrams);
        }
        Some("delay") => {
            return delay_bench(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(300));
        }
        Some("clock") => {
            let number = |i: usize, default: u32| {
                args.get(i).and_then(|n| n.parse().ok()).unwrap_or(default)
            };
            return clock_bench(number(2, 20000), number(3, 5), number(4, 3));
        }
        _ => {}
    }
    let op = args.get(1).cloned().unwrap_or_else(|| "connect".into());
    let number =
        |i: usize, default: u32| args.get(i).and_then(|n| n.parse().ok()).unwrap_or(default);
    let (iterations, rounds, passes) = (number(2, 5000), number(3, 7), number(4, 3));
    if op == "read" {
        return read_bench(iterations, rounds, passes);
    }
    let (errno, syscall, all_ops) = match op.as_str() {
        "connect" => ("ECONNREFUSED", "connect", "connect,bind,send,socket"),
        "open" => ("EIO", "openat", ALL_OPS),
        other => panic!("unknown op {other}: expected connect or open"),
    };
    let all_ops = std::env::var("BENCH_ALL_OPS").unwrap_or_else(|_| all_ops.into());

    let bystander = Command::new("sleep").arg("600").spawn().expect("sleep");
    let other = bystander.id().to_string();
    let chaos = |args: &[&str]| {
        Injector::Chaos(["fail"].iter().chain(args).map(|a| a.to_string()).collect())
    };
    let mut cases: Vec<(String, Injector)> = vec![
        ("1 no programs".into(), Injector::None),
        (
            "2 all programs, not a target".into(),
            chaos(&["--pid", &other, "--op", &all_ops, "--errno", errno]),
        ),
        (
            "3 target, --dry-run".into(),
            chaos(&["--op", &op, "--errno", errno, "--dry-run"]),
        ),
        (
            format!("4 target, failed by --op {op}"),
            chaos(&["--op", &op, "--errno", errno]),
        ),
    ];
    // Case 2 through another rung, before case 3.
    let untargeted_as = |label: &str, backend: &str| {
        (
            format!("{label} all programs as {backend}, not a target"),
            chaos(&[
                "--pid",
                &other,
                "--op",
                &all_ops,
                "--errno",
                errno,
                "--backend",
                backend,
            ]),
        )
    };
    let probe = Probe::run();
    let mut rungs = Vec::new();
    // The rung kernels without an active BPF LSM use: the same programs as fmod_ret.
    if probe.feature(features::FMOD_RET).0 && probe.feature(features::BPF_LSM).0 {
        rungs.push(untargeted_as("2f", "fmod_ret"));
    }
    // The rung of kernels with neither: a kprobe on each operation's syscalls.
    if probe.feature(features::KPROBE_OVERRIDE).0 {
        rungs.push(untargeted_as("2k", "kprobe-override"));
    }
    cases.splice(2..2, rungs);
    if probe.feature(features::KPROBE_OVERRIDE).0 {
        cases.push((
            format!("4s target, failed by --syscall {syscall}"),
            chaos(&["--syscall", syscall, "--errno", errno]),
        ));
    }
    cases.push((
        "5 strace -e inject, every call failed".into(),
        Injector::Strace(format!("inject={syscall}:error={errno}")),
    ));
    let figure = measure_cases("errno", &op, |_| cases, iterations, rounds, passes);
    drop(kill(bystander));
    let (none, untargeted, strace) = (
        figure("1 ").unwrap(),
        figure("2 ").unwrap(),
        figure("5 ").unwrap(),
    );
    print_untargeted_overhead(untargeted / none);
    if let Some(fmod_ret) = figure("2f ") {
        println!(
            "  (2f)/(1) untargeted overhead, fmod_ret   {:>8.3}   required <= 1.05: {}",
            fmod_ret / none,
            verdict(fmod_ret / none <= 1.05)
        );
        println!(
            "  (2f)/(2) fmod_ret against lsm            {:>8.3}",
            fmod_ret / untargeted
        );
    }
    if let Some(kprobe) = figure("2k ") {
        println!(
            "  (2k)/(1) untargeted overhead, kprobes    {:>8.3}   required <= 1.05: {}",
            kprobe / none,
            verdict(kprobe / none <= 1.05)
        );
    }
    let by_op = strace / figure("4 ").unwrap();
    println!("  (5)/(4) strace vs chaos --op {op:<13} {by_op:>8.1}");
    let by_syscall = figure("4s ").map(|ns| strace / ns);
    if let Some(ratio) = by_syscall {
        println!("  (5)/(4s) strace vs chaos --syscall {syscall:<7} {ratio:>8.1}");
    }
    // strace's inject fails the call at the syscall's entry without running it; chaos's cheapest
    // way to fail it is the one to hold against that.
    let cheapest = by_syscall.map_or(by_op, |ratio| ratio.max(by_op));
    println!(
        "  strace vs chaos's cheapest way            {cheapest:>8.1}   required >= 20: {}",
        verdict(cheapest >= 20.0)
    );
}

/// `chaos corrupt-io` on a pread() loop: see the module's documentation.
fn read_bench(iterations: u32, rounds: u32, passes: u32) {
    let bystander = Command::new("sleep").arg("600").spawn().expect("sleep");
    let other = bystander.id().to_string();
    let cases = |file: &str| {
        let chaos = |args: &[&str]| Injector::Chaos(args.iter().map(|a| a.to_string()).collect());
        vec![
            ("1 no programs".to_owned(), Injector::None),
            (
                "2 corrupt-io programs, not a target".into(),
                chaos(&["corrupt-io", "--pid", &other]),
            ),
            (
                "2t the same as tracepoints, not a target".into(),
                chaos(&["corrupt-io", "--pid", &other, "--backend", "tracepoint"]),
            ),
            // Tracepoints on other syscalls only: what enabling any syscall tracepoint costs every
            // syscall of every process (the kernel's slow syscall path).
            (
                "2o statfs tracepoints (disk full), other".into(),
                chaos(&[
                    "disk",
                    "full",
                    "--pid",
                    &other,
                    "--path",
                    "/",
                    "--statfs-backend",
                    "tracepoint",
                ]),
            ),
            (
                "3 target, --dry-run".into(),
                chaos(&["corrupt-io", "--path", file, "--dry-run"]),
            ),
            (
                "4 target, every read corrupted".into(),
                chaos(&["corrupt-io", "--path", file]),
            ),
            (
                "5 strace -e trace=pread64, no change".into(),
                Injector::Strace("trace=pread64".into()),
            ),
        ]
    };
    let figure = measure_cases("corrupt-io", "pread", cases, iterations, rounds, passes);
    drop(kill(bystander));
    let (none, untargeted, corrupted, strace) = (
        figure("1 ").unwrap(),
        figure("2 ").unwrap(),
        figure("4 ").unwrap(),
        figure("5 ").unwrap(),
    );
    print_untargeted_overhead(untargeted / none);
    if let Some(tracepoints) = figure("2t ") {
        println!(
            "  (2t)/(1) untargeted, tracepoints          {:>8.3}",
            tracepoints / none
        );
    }
    if let Some(other) = figure("2o ") {
        println!(
            "  (2o)/(1) any syscall tracepoint enabled   {:>8.3}",
            other / none
        );
    }
    println!(
        "  (5)/(4) strace's floor vs chaos corrupting {:>7.1}",
        strace / corrupted
    );
}

/// `chaos delay` on a statfs() loop: see the module's documentation.
fn delay_bench(calls: u32) {
    let bystander = Command::new("sleep").arg("600").spawn().expect("sleep");
    let other = bystander.id().to_string();
    let chaos = |args: &[&str]| Injector::Chaos(args.iter().map(|a| a.to_string()).collect());
    let cases = vec![
        ("1 no programs".to_owned(), Injector::None),
        (
            "2 delay tracepoint, not a target".into(),
            chaos(&[
                "delay",
                "--pid",
                &other,
                "--syscall",
                "statfs",
                "--delay",
                "1ms",
                "--backend",
                "tracepoint",
            ]),
        ),
        (
            "5 strace -e trace=statfs, no change".into(),
            Injector::Strace("trace=statfs".into()),
        ),
    ];
    let mut cases = cases;
    if Probe::run().feature(features::TRAMPOLINE).0 {
        cases.insert(
            2,
            (
                "2f delay fexit, not a target".into(),
                chaos(&[
                    "delay",
                    "--pid",
                    &other,
                    "--syscall",
                    "statfs",
                    "--delay",
                    "1ms",
                    "--backend",
                    "fexit",
                ]),
            ),
        );
    }
    let figure = measure_cases("delay", "statfs", |_| cases, 20000, 5, 3);
    drop(kill(bystander));
    let (none, untargeted, strace) = (
        figure("1 ").unwrap(),
        figure("2 ").unwrap(),
        figure("5 ").unwrap(),
    );
    print_untargeted_overhead(untargeted / none);
    if let Some(fexit) = figure("2f ") {
        println!(
            "  (2f)/(1) untargeted overhead, fexit      {:>8.3}",
            fexit / none
        );
    }
    println!(
        "  (5)/(1) ptrace's cost to a traced process {:>7.1}",
        strace / none
    );
    if calls == 0 {
        return;
    }

    // Each call timed on its own: a round of one call.
    let mut looper = Looper::start("statfs", 1, calls);
    let mut baseline = looper.measure(&Injector::None);
    let base = median(&mut baseline);
    println!(
        "delay precision: {calls} statfs() calls timed one by one; time added to a call (its duration less the median undelayed call, {base:.0} ns) and its error against the asked delay, in µs"
    );
    for asked_ms in [1u32, 10] {
        let asked = format!("{asked_ms}ms");
        let injectors = [
            (
                "chaos delay",
                chaos(&["delay", "--syscall", "statfs", "--delay", &asked]),
            ),
            (
                "strace delay_exit",
                Injector::Strace(format!("inject=statfs:delay_exit={}", asked_ms * 1000)),
            ),
        ];
        for (name, injector) in injectors {
            let mut added: Vec<f64> = looper
                .measure(&injector)
                .into_iter()
                .map(|ns| (ns - base) / 1000.0)
                .collect();
            let mut error: Vec<f64> = added
                .iter()
                .map(|us| us - f64::from(asked_ms) * 1000.0)
                .collect();
            let (p50, p99) = percentiles(&mut added);
            let (e50, e99) = percentiles(&mut error);
            println!(
                "  {name:<18} {asked:>5}: added p50 {p50:>9.1}  p99 {p99:>9.1}   error p50 {e50:>8.1}  p99 {e99:>8.1}"
            );
        }
    }
    looper.finish();
}

/// `chaos clock` on a clock_gettime() loop: see the module's documentation.
fn clock_bench(iterations: u32, rounds: u32, passes: u32) {
    let bystander = Command::new("sleep").arg("600").spawn().expect("sleep");
    let other = bystander.id().to_string();
    let chaos = |args: &[&str]| {
        Injector::Chaos(
            ["clock", "--offset", "+1h"]
                .iter()
                .chain(args)
                .map(|a| a.to_string())
                .collect(),
        )
    };
    let cases = vec![
        ("1 no programs".to_owned(), Injector::None),
        (
            "2 clock programs, not a target".into(),
            chaos(&["--pid", &other]),
        ),
        ("3 target, --dry-run".into(), chaos(&["--dry-run"])),
        ("4 target, every read shifted".into(), chaos(&[])),
        (
            "5 strace -e trace=clock_gettime".into(),
            Injector::Strace("trace=clock_gettime".into()),
        ),
    ];
    let figure = measure_cases(
        "clock",
        "clock_gettime",
        |_| cases,
        iterations,
        rounds,
        passes,
    );
    drop(kill(bystander));
    let (none, untargeted, shifted, strace) = (
        figure("1 ").unwrap(),
        figure("2 ").unwrap(),
        figure("4 ").unwrap(),
        figure("5 ").unwrap(),
    );
    print_untargeted_overhead(untargeted / none);
    println!(
        "  (5)/(4) ptrace's cost vs chaos shifting  {:>8.1}",
        strace / shifted
    );
    // A read through the vDSO, and through libfaketime's wrapper of it.
    let mut vdso = Looper::start("vdso", iterations, rounds);
    let vdso_ns = median(&mut vdso.measure(&Injector::None));
    vdso.finish();
    println!("  one read through the vDSO (no fault)     {vdso_ns:>8.0} ns");
    println!(
        "  one read shifted by chaos (a syscall)    {shifted:>8.0} ns   {:.1}x the vDSO",
        shifted / vdso_ns
    );
    match Looper::start_with(
        "vdso",
        iterations,
        rounds,
        &[("LD_PRELOAD", FAKETIME_LIB), ("FAKETIME", "+1h")],
    ) {
        Some(mut faked) => {
            let faked_ns = median(&mut faked.measure(&Injector::None));
            faked.finish();
            println!(
                "  one read shifted by libfaketime          {faked_ns:>8.0} ns   {:.1}x the vDSO",
                faked_ns / vdso_ns
            );
        }
        None => {
            println!("  libfaketime: NOT RUN, {FAKETIME_LIB} is missing (apt-get install faketime)")
        }
    }
}

/// Debian's libfaketime (package faketime).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The median and the 99th percentile.
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99))
}

/// Runs every case (built from the loop's file) against one loop process of `op`, in interleaved
/// passes, prints each case's median ns per call, and returns a lookup of those by the case
/// name's prefix ("2 ").
fn measure_cases(
    title: &str,
    op: &str,
    cases: impl FnOnce(&str) -> Vec<(String, Injector)>,
    iterations: u32,
    rounds: u32,
    passes: u32,
) -> impl Fn(&str) -> Option<f64> {
    let mut looper = Looper::start(op, iterations, rounds);
    let cases = cases(&loop_file(&looper.pid).display().to_string());
    // Interleaved passes: every case once per pass, so drift of the machine hits all alike.
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _pass in 0..passes {
        for (i, (_, injector)) in cases.iter().enumerate() {
            samples[i].extend(looper.measure(injector));
        }
    }
    looper.finish();
    println!(
        "{title} benchmark: {op}() loop, {iterations} calls x {rounds} rounds x {passes} interleaved passes, one loop process; median ns per call (lowest, highest round)"
    );
    let mut figures: Vec<(String, f64)> = Vec::new();
    for ((name, _), mut rounds) in cases.into_iter().zip(samples) {
        let ns = median(&mut rounds);
        let (low, high) = (rounds[0], rounds[rounds.len() - 1]);
        println!("  {name:<40} {ns:>10.0}   ({low:.0}, {high:.0})");
        figures.push((name, ns));
    }
    move |prefix: &str| {
        figures
            .iter()
            .find_map(|(name, ns)| name.starts_with(prefix).then_some(*ns))
    }
}

fn print_untargeted_overhead(overhead: f64) {
    println!(
        "  (2)/(1) untargeted overhead               {overhead:>8.3}   required <= 1.05: {}",
        verdict(overhead <= 1.05)
    );
}

/// The file the loop of process `pid` opens or reads.
fn loop_file(pid: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("chaos-bench-{pid}"))
}

/// A loop device on an image file of `mib` MiB under the temporary directory; detached on drop.
struct LoopDevice(String);

impl LoopDevice {
    fn new(name: &str, mib: u64) -> Self {
        let image = std::env::temp_dir().join(format!("chaos-bench-{name}.img"));
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(mib << 20))
            .expect("image");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .expect("losetup");
        assert!(out.status.success(), "losetup: {out:?}");
        LoopDevice(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// ext4 on a loop device of `mib` MiB (every inode table and the journal written by mkfs, so
/// that no lazy init writes during a pass), mounted under the temporary directory; unmounted
/// on drop, before its device is detached.
struct Ext4 {
    mount: std::path::PathBuf,
    device: LoopDevice,
}

impl Ext4 {
    fn new(name: &str, mib: u64) -> Self {
        let device = LoopDevice::new(name, mib);
        let mount = std::env::temp_dir().join(format!("chaos-bench-{name}"));
        std::fs::create_dir_all(&mount).expect("mount point");
        for command in [
            vec![
                "mkfs.ext4",
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                &device.0,
            ],
            vec!["mount", &device.0, mount.to_str().unwrap()],
        ] {
            let out = Command::new(command[0])
                .args(&command[1..])
                .output()
                .expect(command[0]);
            assert!(out.status.success(), "{command:?}: {out:?}");
        }
        Ext4 { mount, device }
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
    }
}

/// A 4 KiB-aligned buffer, as O_DIRECT needs.
struct Aligned(*mut u8, std::alloc::Layout);

impl Aligned {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Aligned(ptr, layout)
    }

    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: the allocation is `len` bytes and this is its only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.0, self.1.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.0, self.1) }
    }
}

/// MB/s of a 32 MiB sequential write in 64 KiB writes and its fsync, and 4 KiB direct random
/// reads per second, on `path` (a device, or a file: made by the first call, overwritten in
/// place by the others, as a device is).
fn block_io(path: &str) -> (f64, f64) {
    use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open the device or file");
    let chunk = vec![0x5a_u8; 64 << 10];
    let started = Instant::now();
    for i in 0..512_u64 {
        file.write_all_at(&chunk, i * chunk.len() as u64).unwrap();
    }
    file.sync_all().unwrap();
    let write_mbs = 32.0 / started.elapsed().as_secs_f64();
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .expect("open the device or file with O_DIRECT");
    let mut buffer = Aligned::new(4096);
    let blocks = (32_u64 << 20) / 4096;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let reads = 2000;
    let started = Instant::now();
    for _ in 0..reads {
        // xorshift: a different block each time, the same sequence every pass.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        direct
            .read_exact_at(buffer.slice(), (state % blocks) * 4096)
            .unwrap();
    }
    let reads_per_s = reads as f64 / started.elapsed().as_secs_f64();
    (write_mbs, reads_per_s)
}

fn disk_bench(passes: usize) {
    let probe = Probe::run();
    let rungs: Vec<&str> = chaos_tests::OVERRIDE_RUNGS
        .into_iter()
        .filter(|rung| chaos_tests::override_offered(&probe, rung).0)
        .collect();
    if rungs.is_empty() {
        println!("disk benchmark: NOT RUN, this kernel cannot fail should_fail_bio");
        return;
    }
    let measured = LoopDevice::new("measured", 64);
    let other = LoopDevice::new("other", 16);
    let ext4 = Ext4::new("ext4", 96);
    let targets = [
        (format!("{} itself", measured.0), measured.0.clone()),
        (
            format!("a file on ext4 on {}", ext4.device.0),
            ext4.mount.join("file").to_str().unwrap().to_owned(),
        ),
    ];
    // Every block of the file allocated and written once, so that no pass pays for it.
    for (_, path) in &targets {
        block_io(path);
    }
    // Case 1 without programs, then one per rung: `disk error` on another device.
    let cases: Vec<Option<&str>> = std::iter::once(None)
        .chain(rungs.iter().copied().map(Some))
        .collect();
    // [target][case]: the samples of every pass.
    let mut writes = vec![vec![Vec::new(); cases.len()]; targets.len()];
    let mut reads = writes.clone();
    for _ in 0..passes {
        for (i, rung) in cases.iter().enumerate() {
            let chaos = rung.map(|rung| {
                start_chaos(
                    &[
                        "disk",
                        "error",
                        "--device",
                        &other.0,
                        "--backend",
                        rung,
                        "--for",
                        "10m",
                    ],
                    wait_for_programs,
                )
            });
            for (t, (_, path)) in targets.iter().enumerate() {
                let (write, read) = block_io(path);
                writes[t][i].push(write);
                reads[t][i].push(read);
            }
            if let Some(chaos) = chaos {
                let _ = kill(chaos);
            }
        }
    }
    println!(
        "disk benchmark: loop devices on tmpfs, {passes} interleaved passes, median [min, max] (MB/s of a 32 MiB write + fsync; 4 KiB O_DIRECT random reads/s); a ratio is the median [min, max] of each pass's own"
    );
    for (t, (target, _)) in targets.iter().enumerate() {
        println!("  {target}");
        for (i, rung) in cases.iter().enumerate() {
            let name = match rung {
                None => "(1) no programs".to_owned(),
                Some(rung) => format!("({}) disk error on another device, {rung}", i + 1),
            };
            let (write, read) = (&writes[t][i], &reads[t][i]);
            let ((wl, wh), (rl, rh)) = (range(write), range(read));
            println!(
                "    {name:<50} {:>6.1} MB/s [{wl:.1}, {wh:.1}] {:>7.0} reads/s [{rl:.0}, {rh:.0}]",
                median(&mut write.clone()),
                median(&mut read.clone()),
            );
        }
        for i in 1..cases.len() {
            // Each pass's ratio, the case against no programs in the same pass.
            let ratios = |samples: &[Vec<f64>]| -> Vec<f64> {
                samples[i]
                    .iter()
                    .zip(&samples[0])
                    .map(|(x, none)| x / none)
                    .collect()
            };
            let (mut w, mut r) = (ratios(&writes[t]), ratios(&reads[t]));
            let ((wl, wh), (rl, rh)) = (range(&w), range(&r));
            let (w, r) = (median(&mut w), median(&mut r));
            println!(
                "    ({})/(1) write + fsync {w:.3} [{wl:.3}, {wh:.3}], random reads {r:.3} [{rl:.3}, {rh:.3}]   required >= 0.98: {}, {}",
                i + 1,
                verdict(w >= 0.98),
                verdict(r >= 0.98)
            );
        }
    }
}

/// The network benchmark: TCP throughput (iperf3, 3 s per run) between two namespaces over a
/// veth pair, `passes` interleaved passes of three cases: (1) no programs; (2) `chaos net drop`
/// on the receiver's interface matching nothing (a port no packet uses); (3) matching every
/// packet with a vanishing probability (every packet parsed, counted and drawn for). Then the
/// drop accuracy: configured probability against the datagrams that did not arrive.
fn net_bench(passes: usize) {
    let net = chaos_tests::TestNet::new("bench");
    let b = net.b.clone();
    let server = net.v4(0, 2);
    let cases: [(&str, Option<Vec<&str>>); 3] = [
        ("1 no programs", None),
        (
            "2 attached, matching nothing",
            Some(vec![
                "--netns",
                &b,
                "--iface",
                "b0",
                "--dport",
                "9",
                "--probability",
                "1",
            ]),
        ),
        (
            "3 matching every packet, p=1e-9",
            Some(vec![
                "--netns",
                &b,
                "--iface",
                "b0",
                "--probability",
                "0.000000001",
            ]),
        ),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..passes {
        for (i, (_, args)) in cases.iter().enumerate() {
            let chaos = args.as_ref().map(|args| {
                let mut full = vec!["net", "drop", "--for", "10m"];
                full.extend(args.iter().copied());
                start_chaos(&full, wait_for_net_programs)
            });
            samples[i].push(iperf3(&net, &server));
            if let Some(chaos) = chaos {
                let _ = kill(chaos);
            }
        }
    }
    println!(
        "network benchmark: iperf3 TCP over veth between two namespaces, 3 s x {passes} interleaved passes, median Gbit/s"
    );
    let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    for ((name, _), gbps) in cases.iter().zip(&medians) {
        println!("  {name:<40} {:>8.2}", gbps / 1e9);
    }
    let (idle, busy) = (medians[1] / medians[0], medians[2] / medians[0]);
    println!(
        "  (2)/(1) attached, not matching          {idle:>8.3}   required >= 0.97: {}",
        verdict(idle >= 0.97)
    );
    println!("  (3)/(1) matching, p=1e-9                {busy:>8.3}");

    println!("drop accuracy: 10000 UDP datagrams per row, receiver ingress");
    for (i, p) in [0.01_f64, 0.1, 0.3, 0.5, 0.9].into_iter().enumerate() {
        let probability = p.to_string();
        let chaos = Command::new(chaos_bin())
            .args([
                "net",
                "drop",
                "--netns",
                &b,
                "--iface",
                "b0",
                "--probability",
                &probability,
            ])
            .args(["--for", "10m"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chaos");
        wait_for_net_programs();
        wait_until_idle(chaos.id());
        let port = (7600 + i).to_string();
        let addr = format!("{server}:{port}");
        let netpeer = std::env::current_exe().unwrap().with_file_name("netpeer");
        let netpeer = netpeer.to_str().unwrap();
        let mut sink = net.spawn(&b, netpeer, &["udp-sink", &addr, "1000"]);
        assert_eq!(sink.line(), "ready");
        let mut sender = net.spawn(&net.a, netpeer, &["udp-send", &addr, "10000"]);
        sender.line();
        let arrived = sink.result();
        let _ = kill(chaos);
        let observed = 1.0 - arrived as f64 / 10000.0;
        let sigma = (p * (1.0 - p) / 10000.0).sqrt();
        println!(
            "  configured {p:>5.2}  observed {observed:>7.4}  ({:+.1} sigma)",
            (observed - p) / sigma
        );
    }
}

/// What drops (or would drop) the datagrams from A to B in [`hooks_bench`].
#[derive(Clone, Copy)]
enum Dropper {
    Nobody,
    /// `chaos net drop --hook HOOK` on B's b0.
    Chaos(&'static str),
    /// netem on A's a0.
    Netem,
}

const DROPPERS: [(&str, Dropper); 5] = [
    ("(1) none", Dropper::Nobody),
    (
        "(2) chaos --hook xdp-native, b0",
        Dropper::Chaos("xdp-native"),
    ),
    (
        "(3) chaos --hook xdp-generic, b0",
        Dropper::Chaos("xdp-generic"),
    ),
    ("(4) chaos --hook tc, b0 ingress", Dropper::Chaos("tc")),
    ("(5) netem, a0 egress", Dropper::Netem),
];

/// A dropper in place; taken away on drop.
enum Attached<'a> {
    Nothing,
    Chaos(Child),
    Netem(&'a str),
}

impl Dropper {
    /// Puts it in place on `net`: dropping every packet, or (`every` false) matching none
    /// (chaos: a port nothing uses; netem: no impairment).
    fn attach<'a>(self, net: &'a chaos_tests::TestNet, every: bool) -> Attached<'a> {
        match self {
            Dropper::Nobody => Attached::Nothing,
            Dropper::Chaos(hook) => {
                let mut args = vec!["net", "drop", "--netns", &net.b, "--iface", "b0"];
                args.extend(["--hook", hook, "--probability", "1", "--for", "10m"]);
                if !every {
                    args.extend(["--dport", "9"]);
                }
                Attached::Chaos(start_chaos(&args, wait_for_net_programs))
            }
            Dropper::Netem => {
                let impairment: &[&str] = if every { &["loss", "100%"] } else { &[] };
                tc(
                    &net.a,
                    &[&["qdisc", "add", "dev", "a0", "root", "netem"], impairment].concat(),
                );
                Attached::Netem(&net.a)
            }
        }
    }
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        match self {
            Attached::Nothing => {}
            Attached::Chaos(child) => {
                // SAFETY: kill(2) on our own child: SIGINT lets chaos detach cleanly.
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                let _ = child.wait();
            }
            Attached::Netem(ns) => tc(ns, &["qdisc", "del", "dev", "a0", "root"]),
        }
    }
}

/// `tc ARGS` in namespace `ns`.
fn tc(ns: &str, args: &[&str]) {
    let status = Command::new("tc")
        .args(["-n", ns])
        .args(args)
        .status()
        .expect("tc");
    assert!(status.success(), "tc -n {ns} {}", args.join(" "));
}

/// The CPU time the whole machine has spent busy since boot, in ns: /proc/stat's user, nice,
/// system, irq and softirq (not idle, iowait or steal).
fn busy_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .expect("the cpu line")
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().expect("a tick count"))
        .collect();
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    busy * 1_000_000_000 / hz
}

/// [`DROPPERS`] on a veth pair and, where two idle virtio-net NICs are on one wire, on them.
fn hooks_bench(passes: usize, datagrams: u64) {
    hooks_on(
        "veth",
        &chaos_tests::TestNet::new("hooks"),
        passes,
        datagrams,
    );
    match chaos_tests::idle_virtio_nics().as_slice() {
        [a, b, ..] => {
            let net = chaos_tests::TestNet::over_nics("hooks-nic", [a, b]);
            hooks_on("virtio-net", &net, passes, datagrams);
        }
        _ => println!("network hooks on virtio-net: not here (no two idle virtio-net NICs)"),
    }
}

fn hooks_on(link: &str, net: &chaos_tests::TestNet, passes: usize, datagrams: u64) {
    let netpeer = std::env::current_exe().unwrap().with_file_name("netpeer");
    let netpeer = netpeer.to_str().unwrap();
    let server = net.v4(0, 2);
    let to = format!("{server}:7700");
    // netem, where the kernel has it (this host's has not).
    let netem = Command::new("tc")
        .args(["-n", &net.a, "qdisc", "add", "dev", "a0", "root", "netem"])
        .stderr(Stdio::null())
        .status()
        .expect("tc")
        .success();
    if netem {
        tc(&net.a, &["qdisc", "del", "dev", "a0", "root"]);
    }
    let droppers: Vec<(&str, Dropper)> = DROPPERS
        .into_iter()
        .filter(|(_, dropper)| netem || !matches!(dropper, Dropper::Netem))
        .collect();
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); droppers.len()];
    let mut delivered = Vec::new();
    for _ in 0..passes {
        for (i, &(_, dropper)) in droppers.iter().enumerate() {
            let _attached = dropper.attach(net, true);
            let sink = matches!(dropper, Dropper::Nobody).then(|| {
                let mut sink = net.spawn(&net.b, netpeer, &["udp-sink", &to, "300"]);
                assert_eq!(sink.line(), "ready");
                sink
            });
            let before = busy_ns();
            let status = Command::new("nsenter")
                .arg(format!(
                    "--net={}",
                    chaos_tests::TestNet::netns_path(&net.a)
                ))
                .args([netpeer, "udp-send", &to, &datagrams.to_string()])
                // Unpaced: a flood.
                .env("NETPEER_UDP_PER_MS", u32::MAX.to_string())
                .stdout(Stdio::null())
                .status()
                .expect("netpeer udp-send");
            assert!(status.success(), "netpeer udp-send failed");
            if let Some(sink) = sink {
                // Its receiving counts: until the sink has read the last one.
                delivered.push(sink.result());
            }
            // And what the receiving side still had to do when the sender returned (a NIC's
            // NAPI poll); an idle moment adds nothing.
            thread::sleep(Duration::from_millis(200));
            cpu[i].push((busy_ns() - before) as f64 / datagrams as f64);
        }
    }
    println!(
        "network hooks on {link}: {datagrams} UDP datagrams flooded from A to B, every one dropped; CPU time of the machine per datagram (/proc/stat), median [min, max] of {passes} interleaved passes"
    );
    for ((name, _), samples) in droppers.iter().zip(&mut cpu) {
        let (low, high) = range(samples);
        print!(
            "  {name:<36} {:>8.0} ns [{low:.0}, {high:.0}]",
            median(samples)
        );
        if name.starts_with("(1)") {
            let least = delivered.iter().min().copied().unwrap_or_default();
            print!("   delivered to a socket (at least {least})");
        }
        println!();
    }
    if !netem {
        println!("  (5) netem: not on this kernel (CONFIG_NET_SCH_NETEM)");
    }
    let mut gbps: Vec<Vec<f64>> = vec![Vec::new(); droppers.len()];
    for _ in 0..passes {
        for (i, &(_, dropper)) in droppers.iter().enumerate() {
            let _attached = dropper.attach(net, false);
            gbps[i].push(iperf3(net, &server) / 1e9);
        }
    }
    println!(
        "TCP over {link} with each attached, matching nothing (iperf3, 3 s): Gbit/s, median [min, max] of {passes} interleaved passes"
    );
    let none = median(&mut gbps[0]);
    for ((name, _), samples) in droppers.iter().zip(&mut gbps) {
        let (low, high) = range(samples);
        let median = median(samples);
        println!(
            "  {name:<36} {median:>8.2} [{low:.2}, {high:.2}]   x{:.3}",
            median / none
        );
    }
}

/// The least and the greatest of `samples`.
fn range(samples: &[f64]) -> (f64, f64) {
    samples
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &x| {
            (low.min(x), high.max(x))
        })
}

/// Median bits per second the receiver saw in a 3 s iperf3 TCP run from A to `server` in B.
fn iperf3(net: &chaos_tests::TestNet, server: &str) -> f64 {
    let mut daemon = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.b))
        .args(["iperf3", "--server", "--one-off", "--bind", server])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 (apt-get install iperf3)");
    thread::sleep(Duration::from_millis(300));
    let output = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.a))
        .args(["iperf3", "--client", server, "--time", "3", "--json"])
        .output()
        .expect("iperf3 client");
    let _ = daemon.wait();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("iperf3 JSON");
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("bits_per_second in iperf3's report")
}

/// Waits until the net programs are in the kernel.
fn wait_for_net_programs() {
    chaos_tests::wait_for_programs("a network program", || {
        chaos_common::hook::NET
            .iter()
            .any(|&hook| chaos_tests::loaded(hook))
    });
}

/// How long each deadline trial's fault lasts.
const DEADLINE_RUN: Duration = Duration::from_millis(500);

/// Deadline precision: `trials` runs of `chaos fail --for 500ms` against a tight connect() loop.
/// The loop stamps its first and last failed call; the spread is how far that window is from
/// 500 ms. The in-kernel deadline is set as the fault is armed, every program attached, so the
/// window is the whole `--for` but for the loop's own step (a connect() and a clock read),
/// and ends at that deadline (or the detach, whichever comes first).
fn deadline(trials: u32) {
    let exe = std::env::current_exe().unwrap();
    let mut spreads: Vec<f64> = (0..trials)
        .map(|_| {
            let mut looper = Command::new(&exe)
                .arg("deadline-loop")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the loop");
            let mut lines = BufReader::new(looper.stdout.take().unwrap()).lines();
            let pid = lines
                .next()
                .unwrap()
                .unwrap()
                .trim_start_matches("ready ")
                .to_owned();
            let status = Command::new(chaos_bin())
                .args([
                    "fail",
                    "--pid",
                    &pid,
                    "--op",
                    "connect",
                    "--errno",
                    "ETIMEDOUT",
                ])
                .args(["--for", &format!("{}ms", DEADLINE_RUN.as_millis())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("chaos");
            assert!(status.success(), "chaos fail failed");
            thread::sleep(Duration::from_millis(100));
            writeln!(looper.stdin.as_mut().unwrap(), "stop").unwrap();
            let window_ns: f64 = lines.next().unwrap().unwrap().trim().parse().unwrap();
            let _ = looper.wait();
            (window_ns - DEADLINE_RUN.as_nanos() as f64) / 1e6
        })
        .collect();
    spreads.sort_by(f64::total_cmp);
    println!(
        "deadline precision: {trials} runs of --for {}ms; failure window minus --for, ms: min {:.2}, median {:.2}, max {:.2} (required: within 100 ms)",
        DEADLINE_RUN.as_millis(),
        spreads[0],
        median(&mut spreads.clone()),
        spreads[spreads.len() - 1]
    );
}

/// The deadline trial's loop: connect() to a closed port as fast as it can; on a line on stdin,
/// prints the ns between its first and last failure other than ECONNREFUSED.
fn deadline_loop() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    println!("ready {}", std::process::id());
    // For `start`: the CLOCK_MONOTONIC ns of the first injected failure, as it happens.
    let say_first = std::env::var_os("CHAOS_BENCH_FIRST").is_some();
    let (mut first, mut last) = (None, None);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let result = std::net::TcpStream::connect(closed);
        let now = Instant::now();
        if let Err(err) = result
            && err.raw_os_error() == Some(libc::ETIMEDOUT)
        {
            if first.is_none() && say_first {
                println!("{}", chaos_tests::monotonic_ns());
            }
            first.get_or_insert(now);
            last = Some(now);
        }
    }
    let window = match (first, last) {
        (Some(first), Some(last)) => last - first,
        _ => Duration::ZERO,
    };
    println!("{}", window.as_nanos());
}

/// `chaos-bench start`: time to the first injected failure and peak RSS, chaos against strace,
/// `trials` interleaved runs of each on a fresh loop process: chaos alone (it loads and verifies
/// its programs), then with `chaos idle` running (it takes the spare the run before it left).
fn start(trials: u32) {
    let chaos = |pid: &str| {
        let mut command = Command::new(chaos_bin());
        command.args(["fail", "--pid", pid, "--op", "connect"]);
        command.args(["--errno", "ETIMEDOUT", "--for", "30s"]);
        command
    };
    let strace = |pid: &str| {
        let mut command = Command::new("strace");
        command.args(["-o", "/dev/null", "-e", "trace=connect"]);
        command.args(["-e", "inject=connect:error=ETIMEDOUT", "-p", pid]);
        command
    };
    // (first failure ms, peak RSS MiB) per row: chaos, chaos with idle, strace.
    let mut rows: [(Vec<f64>, Vec<f64>); 3] = Default::default();
    for with_idle in [false, true] {
        let idle = with_idle.then(|| {
            let idle = Command::new(chaos_bin())
                .arg("idle")
                .spawn()
                .expect("start chaos idle");
            // Its first spare: a run's, as on a node after the first fault.
            thread::sleep(Duration::from_millis(200));
            first_failure(&chaos);
            idle
        });
        let chaos_row = usize::from(with_idle);
        for _ in 0..trials {
            for (row, command) in [
                (chaos_row, &chaos as &dyn Fn(&str) -> Command),
                (2, &strace),
            ] {
                let (ms, mib) = first_failure(command);
                rows[row].0.push(ms);
                rows[row].1.push(mib);
            }
        }
        if let Some(mut idle) = idle {
            // SAFETY: kill(2) on our own child: SIGTERM ends chaos idle, which unpins its spares.
            unsafe { libc::kill(idle.id() as i32, libc::SIGTERM) };
            let _ = idle.wait();
        }
    }
    println!(
        "start: {trials} interleaved runs each, a fresh connect() loop per run; time from starting the injector to the loop's first injected failure, and the injector's peak RSS; median (lowest, highest)"
    );
    let names = [
        "chaos fail --op connect",
        "  with chaos idle running",
        "strace -e inject=connect",
    ];
    for (name, (firsts, rss)) in names.iter().zip(&mut rows) {
        let ms = median(firsts);
        let mib = median(rss);
        println!(
            "  {name:<28} {ms:>7.1} ms ({:.1}, {:.1})   peak RSS {mib:>5.1} MiB ({:.1}, {:.1})",
            firsts[0],
            firsts[firsts.len() - 1],
            rss[0],
            rss[rss.len() - 1]
        );
    }
    let [cold, warm, strace] = rows.each_mut().map(|(firsts, _)| median(firsts));
    println!(
        "  first failure, chaos alone against strace {:>8.2}",
        cold / strace
    );
    println!(
        "  first failure, chaos with chaos idle against strace {:>5.2}   required <= 1: {}",
        warm / strace,
        verdict(warm <= strace)
    );
    let chaos_rss = rows[..2]
        .iter()
        .flat_map(|(_, rss)| rss)
        .copied()
        .fold(0.0, f64::max);
    println!(
        "  chaos's peak RSS, highest run             {chaos_rss:>5.1} MiB   required <= 16 MiB: {}",
        verdict(chaos_rss <= 16.0)
    );
}

/// Starts `injector` on a fresh connect() loop; returns the ms from its start to the loop's
/// first injected failure, and its peak RSS (MiB) once Ctrl-C ended it.
fn first_failure(injector: &dyn Fn(&str) -> Command) -> (f64, f64) {
    let exe = std::env::current_exe().unwrap();
    let mut looper = Command::new(&exe)
        .arg("deadline-loop")
        .env("CHAOS_BENCH_FIRST", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the loop");
    let mut lines = BufReader::new(looper.stdout.take().unwrap()).lines();
    let pid = lines.next().unwrap().unwrap();
    let pid = pid.trim_start_matches("ready ");
    let started = chaos_tests::monotonic_ns();
    let child = injector(pid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the injector");
    let first: u64 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    // SAFETY: kill(2) on our own child: SIGINT ends chaos's run and detaches strace.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rss = peak_rss_kib(child) as f64 / 1024.0;
    writeln!(looper.stdin.as_mut().unwrap(), "stop").unwrap();
    let _ = looper.wait();
    ((first - started) as f64 / 1e6, rss)
}

/// Waits for `child` and returns its peak resident set (ru_maxrss, KiB).
fn peak_rss_kib(child: Child) -> i64 {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; the child is ours and not yet reaped.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(child.id() as i32, &mut status, 0, &mut usage);
        usage
    };
    usage.ru_maxrss
}

/// What a case attaches to the loop.
enum Injector {
    None,
    /// chaos with these arguments, its command first (and `--pid LOOP` unless they name a
    /// `--pid`).
    Chaos(Vec<String>),
    /// strace with this `-e` expression (`inject=…`, `trace=…`).
    Strace(String),
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

const ALL_OPS: &str = "open,read,write,exec,fork,mmap,unlink,rmdir,mkdir,rename,link,symlink,truncate,chmod,chown,ioctl,lock,stat,connect,bind,listen,accept,send,recv,socket";

fn verdict(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

/// The measured loop, running in a child process until [`Looper::finish`].
struct Looper {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    pid: String,
}

impl Looper {
    fn start(op: &str, iterations: u32, rounds: u32) -> Looper {
        Self::start_with(op, iterations, rounds, &[]).expect("the loop starts")
    }

    /// The loop with `env` set, if any library it preloads exists.
    fn start_with(op: &str, iterations: u32, rounds: u32, env: &[(&str, &str)]) -> Option<Looper> {
        if env
            .iter()
            .any(|(name, value)| *name == "LD_PRELOAD" && !std::path::Path::new(value).exists())
        {
            return None;
        }
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(&exe)
            .args(["loop", op, &iterations.to_string(), &rounds.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the loop");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().expect("loop ready line").expect("read");
        let pid = ready.trim_start_matches("ready ").to_owned();
        Some(Looper { child, lines, pid })
    }

    /// One measurement with `injector` attached to the loop: ns per call of each round.
    fn measure(&mut self, injector: &Injector) -> Vec<f64> {
        let pid = &self.pid;
        // Both injectors attach to the running loop, as they would to a running service.
        let attached = match injector {
            Injector::Chaos(args) => {
                let mut full = args.clone();
                full.extend(["--for".into(), "10m".into()]);
                if !args.iter().any(|a| a == "--pid") {
                    full.extend(["--pid".into(), pid.clone()]);
                }
                Some(start_chaos(&full, wait_for_programs))
            }
            Injector::Strace(inject) => {
                let child = Command::new("strace")
                    .args(["-f", "-qq", "-o", "/dev/null", "-e", inject, "-p", pid])
                    .spawn()
                    .expect("strace (apt-get install strace)");
                wait_until_traced(pid, true);
                Some(child)
            }
            Injector::None => None,
        };
        writeln!(self.child.stdin.as_mut().unwrap(), "go").unwrap();
        let result = self.lines.next().expect("loop result").expect("read");
        if let Some(attached) = attached {
            let _ = kill(attached);
        }
        if matches!(injector, Injector::Strace(_)) {
            // The next case must not start while strace is still detaching.
            wait_until_traced(pid, false);
        }
        result
            .split_whitespace()
            .map(|ns| ns.parse().expect("ns per call"))
            .collect()
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Starts `chaos ARGS` and returns once `attached` says its programs are in the kernel and it
/// has gone idle.
fn start_chaos(args: &[impl AsRef<std::ffi::OsStr>], attached: fn()) -> Child {
    let child = Command::new(chaos_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chaos");
    attached();
    wait_until_idle(child.id());
    child
}

/// Waits until a tracer is attached to `pid` (`traced`) or none is.
fn wait_until_traced(pid: &str, traced: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .map(str::trim);
        if tracer.is_some_and(|t| t != "0") == traced {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "strace never attached or detached"
        );
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(200));
}

/// Waits until `pid` has used no CPU for 300 ms: chaos has loaded, verified and attached every
/// program. Measuring while it still works would charge its CPU time to the loop (in the TCG
/// guest both share one host thread), and each attachment patches kernel text.
fn wait_until_idle(pid: u32) {
    let cpu_ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // utime and stime: fields 14 and 15, the 12th and 13th after the command name.
        let after_comm = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        field(11) + field(12)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = cpu_ticks();
    loop {
        thread::sleep(Duration::from_millis(300));
        let now = cpu_ticks();
        if now == last {
            return;
        }
        assert!(Instant::now() < deadline, "chaos never settled");
        last = now;
    }
}

/// Waits until chaos has programs in the kernel.
fn wait_for_programs() {
    chaos_tests::wait_for_programs("a fault program", || {
        !chaos_tests::loaded_chaos_programs().is_empty()
    });
}

fn kill(mut child: Child) -> std::io::Result<std::process::ExitStatus> {
    // SAFETY: kill(2) on our own child: SIGINT lets chaos detach cleanly.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait()
}

/// The measured loop: says `ready PID`, then for each line on stdin runs `rounds` rounds of
/// `iterations` calls and prints each round's ns per call.
fn measure_loop(op: &str, iterations: u32, rounds: u32) {
    let file = loop_file(&std::process::id().to_string());
    std::fs::write(&file, b"x").unwrap();
    let reader = std::fs::File::open(&file).unwrap();
    let mut byte = [0u8; 1];
    // SAFETY: statfs is plain data; all zeroes is a valid value.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Nobody listens here: a connect is refused by the kernel at once, a full round trip.
    let closed: SocketAddr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    // One socket for every connect: a refused (or failed) connect leaves it ready for another, so
    // the loop measures connect() alone, not socket() and close().
    // SAFETY: plain socket calls on an fd we own, with a sockaddr_in built here.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    let SocketAddr::V4(v4) = closed else {
        unreachable!()
    };
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    println!("ready {}", std::process::id());
    // A measurement per line on stdin, until it closes.
    for _go in std::io::stdin().lines() {
        let samples: Vec<f64> = (0..rounds)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..iterations {
                    match op {
                        // SAFETY: connect(2) with a sockaddr_in we own and its size.
                        "connect" => unsafe {
                            libc::connect(
                                fd,
                                (&raw const address).cast(),
                                size_of::<libc::sockaddr_in>() as u32,
                            );
                        },
                        // SAFETY: pread(2) into a buffer we own, on a file we own.
                        "pread" => unsafe {
                            libc::pread(reader.as_raw_fd(), byte.as_mut_ptr().cast(), 1, 0);
                        },
                        // SAFETY: statfs(2) of a C string into a struct we own.
                        "statfs" => unsafe {
                            libc::statfs(c"/".as_ptr(), &raw mut fs);
                        },
                        // SAFETY: clock_gettime(2) itself, past the vDSO, into a struct we own.
                        "clock_gettime" => unsafe {
                            libc::syscall(
                                libc::SYS_clock_gettime,
                                libc::CLOCK_REALTIME,
                                &raw mut now,
                            );
                        },
                        // SAFETY: the C library's clock_gettime, into a struct we own.
                        "vdso" => unsafe {
                            libc::clock_gettime(libc::CLOCK_REALTIME, &raw mut now);
                        },
                        _ => drop(std::fs::File::open(&file)),
                    }
                }
                start.elapsed().as_nanos() as f64 / f64::from(iterations)
            })
            .collect();
        let rounds: Vec<String> = samples.iter().map(|ns| format!("{ns:.1}")).collect();
        println!("{}", rounds.join(" "));
    }
    let _ = std::fs::remove_file(&file);
}

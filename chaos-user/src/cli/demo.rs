//! `chaos demo`: a fault on a built-in target, start to finish, on any kernel with cgroup BPF.

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use clap::Args;

use crate::{
    cli::error::{Error, exit},
    fault::{self, BackendChoice, Errno, ErrnoFault, SocketFilter, When, parse_op},
    plan,
    run::{self, CallsFault},
    target::{ProcessTarget, Targets},
};

/// Show a fault on a built-in target: two processes connect to a local server; one of them gets
/// ECONNREFUSED for a few seconds, the other is untouched; then both recover.
///
/// Starts its own workload processes and server on 127.0.0.1, attaches, detaches and cleans up.
/// Exits 0 when the target failed only during the fault and the bystander never did.
///
/// Example: chaos demo --for 3s
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the fault lasts.
    #[arg(long = "for", value_name = "DURATION", default_value = "3s", value_parser = fault::parse_duration)]
    pub duration: Duration,
}

#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// Address to connect to.
    #[arg(long)]
    pub connect: SocketAddr,
    /// Pause between attempts.
    #[arg(long, default_value = "50ms", value_parser = fault::parse_duration)]
    pub interval: Duration,
}

/// Connects forever, one line per attempt: `ok` or the errno name.
pub fn workload(args: WorkloadArgs) -> Result<u8, Error> {
    loop {
        let line = match TcpStream::connect(args.connect) {
            Ok(_) => "ok".to_owned(),
            Err(err) => err
                .raw_os_error()
                .map(|n| Errno::from_raw(n).to_string())
                .unwrap_or_else(|| err.to_string()),
        };
        println!("{line}");
        thread::sleep(args.interval);
    }
}

/// The attempts one workload made in one phase of the demo.
#[derive(Default, Clone, Copy)]
struct Tally {
    ok: u32,
    refused: u32,
    other: u32,
}

const PHASES: [&str; 3] = ["before", "during", "after"];
const QUIET_TIME: Duration = Duration::from_secs(1);

pub fn execute(args: DemoArgs) -> Result<u8, Error> {
    let server = TcpListener::bind("127.0.0.1:0")
        .map_err(Error::io("bind the demo's server to 127.0.0.1"))?;
    let address = server
        .local_addr()
        .map_err(Error::io("read the demo server's address"))?;
    thread::spawn(move || for _connection in server.incoming() {});

    let phase = Arc::new(Mutex::new(0usize));
    let mut target = Workload::start(address, &phase)?;
    let mut bystander = Workload::start(address, &phase)?;
    eprintln!(
        "demo: target pid {} and bystander pid {} connect to {address} every 50ms",
        target.child.id(),
        bystander.child.id()
    );

    thread::sleep(QUIET_TIME);
    let fault = ErrnoFault {
        ops: vec![parse_op("connect")?],
        errno: Some(Errno::from_raw(libc::ECONNREFUSED)),
        dry_run: false,
        when: When::default(),
        syscall: None,
        kernel_fn: None,
        override_with: None,
        filter: SocketFilter::default(),
        path: None,
    };
    let plan = plan::plan(
        &fault.ops,
        0,
        BackendChoice::Auto,
        &mut plan::Running { eperm_ok: false },
    )?;
    eprintln!(
        "demo: connect() of pid {} fails with ECONNREFUSED for {}",
        target.child.id(),
        humantime::format_duration(args.duration)
    );
    let targets = Targets {
        processes: vec![ProcessTarget::resolve(target.child.id(), false, false)?],
        cgroup: None,
        container: None,
        pod: None,
        device: None,
    };
    let report = run::calls_run(
        &targets,
        &CallsFault::errno(&fault, plan),
        args.duration,
        || *phase.lock().expect("phase lock") = 1,
    );
    *phase.lock().expect("phase lock") = 2;
    thread::sleep(QUIET_TIME);

    let target_tally = target.stop();
    let bystander_tally = bystander.stop();
    let report = report?;

    println!(
        "{:<8} {:>22} {:>22}",
        "phase", "target (ok/refused)", "bystander (ok/refused)"
    );
    for (i, name) in PHASES.iter().enumerate() {
        let (t, b) = (target_tally[i], bystander_tally[i]);
        println!(
            "{name:<8} {:>22} {:>22}",
            format!("{}/{}", t.ok, t.refused),
            format!("{}/{}", b.ok, b.refused)
        );
    }
    print!("{}", report.human());

    let injected = report.faults.iter().map(|f| f.injected).sum::<u64>();
    let as_expected = target_tally[1].refused > 0
        && u64::from(target_tally[1].refused) <= injected
        && target_tally[2].refused == 0
        && target_tally[0].refused == 0
        && bystander_tally
            .iter()
            .all(|t| t.refused == 0 && t.other == 0);
    if as_expected {
        println!(
            "demo: the target failed only while the fault ran; the bystander was never touched"
        );
        Ok(exit::OK)
    } else {
        println!("demo: UNEXPECTED: the counts above do not match a fault scoped to the target");
        Ok(exit::FAILURE)
    }
}

/// A workload child process and the thread that tallies its output per phase.
struct Workload {
    child: Child,
    tally: thread::JoinHandle<[Tally; 3]>,
}

impl Workload {
    fn start(address: SocketAddr, phase: &Arc<Mutex<usize>>) -> Result<Self, Error> {
        let exe = std::env::current_exe().map_err(Error::io("find chaos's own executable"))?;
        let mut child = Command::new(&exe)
            .args(["demo-workload", "--connect", &address.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(Error::io(format!("start {} demo-workload", exe.display())))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let phase = Arc::clone(phase);
        let tally = thread::spawn(move || {
            let mut tallies = [Tally::default(); 3];
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let tally = &mut tallies[*phase.lock().expect("phase lock")];
                match line.as_str() {
                    "ok" => tally.ok += 1,
                    "ECONNREFUSED" => tally.refused += 1,
                    _ => tally.other += 1,
                }
            }
            tallies
        });
        Ok(Workload { child, tally })
    }

    fn stop(&mut self) -> [Tally; 3] {
        let started = Instant::now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let tally = std::mem::replace(&mut self.tally, thread::spawn(|| [Tally::default(); 3]));
        let result = tally.join().unwrap_or_default();
        tracing::debug!(elapsed = ?started.elapsed(), "workload stopped");
        result
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

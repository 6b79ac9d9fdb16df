//! Running an experiment: the steady-state check before, during and after the faults, the
//! workload, and each fault as a `chaos` child process started at its offset.
//!
//! Each fault runs as the very command the file spells (checked by [`super::Experiment::parse`]),
//! so it gets that command's guards, deadline and report. The children die with chaos run
//! (PR_SET_PDEATHSIG), and their programs with them; their in-kernel deadlines hold regardless.

use std::{
    collections::VecDeque,
    io::{IsTerminal as _, Write as _},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader},
    process::Command,
    sync::mpsc::{UnboundedSender, unbounded_channel},
    time::{Instant, MissedTickBehavior, interval, interval_at, sleep_until, timeout},
};

use super::{
    Experiment, PlannedFault, SteadyState,
    report::{
        CheckReport, ExperimentEnd, ExperimentReport, FaultOutcome, FaultState, WorkloadReport,
        describe_exit,
    },
};
use crate::{
    report::{STATUS_LINE_PREFIX, STATUS_LINES_ENV, StatusCounters},
    run::hold::Interrupts,
};

/// The environment variable that gives the steady-state check the workload's PID.
pub const WORKLOAD_PID_ENV: &str = "CHAOS_WORKLOAD_PID";
/// How long a stopped workload gets between SIGTERM and SIGKILL.
const WORKLOAD_GRACE: Duration = Duration::from_secs(5);
/// How long past the end of the timeline a fault process may take to report before it is
/// killed: its window starts once it has attached, which takes seconds on a slow (emulated)
/// machine; the in-kernel deadline holds meanwhile.
const FAULT_GRACE: Duration = Duration::from_secs(60);
/// How often the status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// How many of a failed child's last stderr lines the report keeps.
const KEPT_LINES: usize = 8;

/// What the children tell the supervisor.
enum Event {
    FaultEnded {
        index: usize,
        status: std::io::Result<ExitStatus>,
        stdout: String,
        stderr_tail: Vec<String>,
    },
    WorkloadExited(std::io::Result<ExitStatus>),
    Checked(CheckResult),
}

struct CheckResult {
    ok: bool,
    output: String,
}

/// The counters a running fault last reported, and what the status line shows of it.
#[derive(Clone, Copy, Default)]
struct Live {
    state: Option<FaultState>,
    counters: StatusCounters,
}

/// Stderr shared by the status line and the children's messages.
struct Console {
    terminal: bool,
    drawn: bool,
}

impl Console {
    fn say(&mut self, line: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.drawn {
            let _ = stderr.write_all(b"\r\x1b[2K");
            self.drawn = false;
        }
        let _ = writeln!(stderr, "{line}");
    }

    fn draw(&mut self, line: &str) {
        if self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
            self.drawn = true;
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
            self.drawn = false;
        }
    }
}

/// Runs the experiment to its end; `file` is where it was read from (the commands run in its
/// directory).
pub async fn run(
    experiment: &Experiment,
    file: &Path,
    interrupts: &mut Interrupts,
) -> ExperimentReport {
    let workdir = file
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let console = Arc::new(Mutex::new(Console {
        terminal: std::io::stderr().is_terminal(),
        drawn: false,
    }));
    let mut supervisor = Supervisor {
        experiment,
        workdir,
        console,
        live: Arc::new(Mutex::new(vec![Live::default(); experiment.faults.len()])),
        outcomes: experiment
            .faults
            .iter()
            .map(|fault| FaultOutcome {
                name: fault.name.clone(),
                command: fault.command.clone(),
                start_ms: fault.start.as_millis() as u64,
                for_ms: fault.lifetime.as_millis() as u64,
                state: FaultState::NotStarted,
                exit_code: None,
                report: None,
                error: None,
            })
            .collect(),
        fault_pids: vec![None; experiment.faults.len()],
        workload_pid: None,
        check: experiment.steady_state.as_ref().map(|check| CheckReport {
            command: check.command.clone(),
            before: false,
            during: 0,
            during_failed: 0,
            after: None,
            failure: None,
        }),
        workload: None,
        checking: false,
    };
    let started = Instant::now();
    let ended_by = supervisor.run(interrupts).await;
    let Supervisor {
        outcomes,
        check,
        workload,
        ..
    } = supervisor;
    let passed = ended_by != ExperimentEnd::SteadyStateNotMet
        && ended_by != ExperimentEnd::FaultFailed
        && check
            .as_ref()
            .is_none_or(|c| c.before && c.during_failed == 0 && c.after != Some(false))
        && workload.as_ref().is_none_or(|w| w.ok)
        && outcomes.iter().all(|f| f.state != FaultState::Failed);
    ExperimentReport {
        file: file.display().to_string(),
        description: experiment.description.clone(),
        passed,
        ended_by,
        elapsed_ms: started.elapsed().as_millis() as u64,
        steady_state: check,
        workload,
        faults: outcomes,
    }
}

struct Supervisor<'a> {
    experiment: &'a Experiment,
    workdir: PathBuf,
    console: Arc<Mutex<Console>>,
    live: Arc<Mutex<Vec<Live>>>,
    outcomes: Vec<FaultOutcome>,
    /// The fault processes still running.
    fault_pids: Vec<Option<u32>>,
    workload_pid: Option<u32>,
    check: Option<CheckReport>,
    workload: Option<WorkloadReport>,
    /// A check during the faults is running.
    checking: bool,
}

type Events = tokio::sync::mpsc::UnboundedReceiver<Event>;

impl Supervisor<'_> {
    fn say(&self, line: &str) {
        self.console.lock().expect("console lock").say(line);
    }

    async fn run(&mut self, interrupts: &mut Interrupts) -> ExperimentEnd {
        let experiment = self.experiment;
        let (events, mut received) = unbounded_channel();
        if let Some(command) = &experiment.workload {
            let spawned = self.spawn_workload(command, events.clone());
            if let Err(err) = &spawned {
                self.say(&format!("chaos run: cannot start the workload: {err}"));
            }
            self.workload_pid = spawned.as_ref().ok().copied();
            self.workload = Some(WorkloadReport {
                command: command.clone(),
                pid: self.workload_pid,
                exit_code: None,
                signal: None,
                stopped_by_chaos: false,
                ok: spawned.is_ok(),
            });
        }

        if let Some(check) = &experiment.steady_state {
            let result = run_check(check, &self.workdir, self.workload_pid).await;
            let report = self.check.as_mut().expect("a check report");
            report.before = result.ok;
            if !result.ok {
                report.failure = Some(result.output.clone());
                self.say(&format!("chaos run: the steady-state check fails before any fault; nothing was started\n{}", result.output));
                self.stop_workload(&mut received).await;
                return ExperimentEnd::SteadyStateNotMet;
            }
        }

        let start = Instant::now();
        let deadline = start + experiment.duration;
        let mut order: Vec<usize> = (0..experiment.faults.len()).collect();
        order.sort_by_key(|&i| experiment.faults[i].start);
        let mut order = order.into_iter().peekable();
        let check_every = experiment
            .steady_state
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.every);
        let mut check_ticks = interval_at(start + check_every, check_every);
        check_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut status_ticks = interval(STATUS_EVERY);
        status_ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);

        let ended_by = loop {
            let next_start = order.peek().map(|&i| start + experiment.faults[i].start);
            tokio::select! {
                _ = sleep_until(next_start.unwrap_or(deadline)), if next_start.is_some() => {
                    let index = order.next().expect("a fault was due");
                    if let Err(err) = self.spawn_fault(index, events.clone()) {
                        let outcome = &mut self.outcomes[index];
                        outcome.state = FaultState::Failed;
                        outcome.error = Some(format!("cannot start chaos: {err}"));
                        break ExperimentEnd::FaultFailed;
                    }
                }
                _ = check_ticks.tick(), if experiment.steady_state.is_some() && !self.checking => {
                    self.checking = true;
                    let check = experiment.steady_state.clone().expect("a check");
                    let (workdir, pid, events) = (self.workdir.clone(), self.workload_pid, events.clone());
                    tokio::spawn(async move {
                        let result = run_check(&check, &workdir, pid).await;
                        let _ = events.send(Event::Checked(result));
                    });
                }
                Some(event) = received.recv() => {
                    if let Some(ended_by) = self.handle(event) {
                        break ended_by;
                    }
                }
                _ = sleep_until(deadline), if next_start.is_none() => break ExperimentEnd::Deadline,
                ended_by = interrupts.next() => break ended_by.into(),
                _ = status_ticks.tick() => self.draw_status(start, deadline),
            }
        };
        self.console.lock().expect("console lock").clear();

        let ended_by = self.end_faults(ended_by, &mut received, interrupts).await;
        if let Some(check) = &experiment.steady_state {
            let result = run_check(check, &self.workdir, self.workload_pid).await;
            let report = self.check.as_mut().expect("a check report");
            report.after = Some(result.ok);
            if !result.ok {
                report.failure.get_or_insert(result.output.clone());
                self.say(&format!(
                    "chaos run: the steady-state check fails after the faults\n{}",
                    result.output
                ));
            }
        }
        self.stop_workload(&mut received).await;
        ended_by
    }

    /// Records what a child reports; returns why the experiment must end now, if it must.
    fn handle(&mut self, event: Event) -> Option<ExperimentEnd> {
        match event {
            Event::Checked(result) => {
                self.checking = false;
                let abort = self
                    .experiment
                    .steady_state
                    .as_ref()
                    .is_some_and(|c| c.abort);
                let report = self.check.as_mut()?;
                report.during += 1;
                if result.ok {
                    return None;
                }
                report.during_failed += 1;
                report.failure.get_or_insert(result.output.clone());
                self.say(&format!(
                    "chaos run: the steady-state check failed\n{}",
                    result.output
                ));
                abort.then_some(ExperimentEnd::CheckFailed)
            }
            Event::WorkloadExited(status) => {
                let report = self.workload.as_mut()?;
                record_workload(report, status);
                let line = format!("chaos run: the workload ended ({})", describe_exit(report));
                self.say(&line);
                None
            }
            Event::FaultEnded {
                index,
                status,
                stdout,
                stderr_tail,
            } => {
                self.fault_pids[index] = None;
                let outcome = &mut self.outcomes[index];
                outcome.report = serde_json::from_str(stdout.trim()).ok();
                let failed = match status {
                    Ok(status) if status.success() => false,
                    Ok(status) => {
                        outcome.exit_code = status.code();
                        true
                    }
                    Err(err) => {
                        outcome.error = Some(err.to_string());
                        true
                    }
                };
                if failed {
                    outcome.state = FaultState::Failed;
                    outcome.error.get_or_insert_with(|| stderr_tail.join("\n"));
                } else if outcome.state == FaultState::Running {
                    outcome.state = FaultState::Ran;
                }
                self.live.lock().expect("live lock")[index].state = Some(outcome.state);
                failed.then_some(ExperimentEnd::FaultFailed)
            }
        }
    }

    /// Stops the faults still running when the experiment ended early, then waits for every
    /// fault process to report (they end at their own deadline otherwise). An interrupt while
    /// waiting stops them too, and becomes why the experiment ended.
    async fn end_faults(
        &mut self,
        mut ended_by: ExperimentEnd,
        received: &mut Events,
        interrupts: &mut Interrupts,
    ) -> ExperimentEnd {
        if ended_by != ExperimentEnd::Deadline {
            self.stop_faults();
        }
        let latest_end = self
            .experiment
            .faults
            .iter()
            .map(|f| f.start + f.lifetime)
            .max()
            .unwrap_or_default();
        let give_up = Instant::now() + latest_end + FAULT_GRACE;
        while self.fault_pids.iter().any(Option::is_some) {
            tokio::select! {
                event = received.recv() => if let Some(event) = event {
                    self.handle(event);
                },
                interrupt = interrupts.next() => {
                    ended_by = interrupt.into();
                    self.stop_faults();
                }
                _ = sleep_until(give_up) => {
                    for (index, pid) in self.fault_pids.iter_mut().enumerate() {
                        if let Some(pid) = pid.take() {
                            signal(pid as i32, libc::SIGKILL);
                            self.outcomes[index].state = FaultState::Failed;
                            self.outcomes[index].error = Some("did not end in time; killed".into());
                        }
                    }
                }
            }
        }
        ended_by
    }

    /// SIGTERM to every fault process still running: each detaches and reports.
    fn stop_faults(&mut self) {
        for (index, pid) in self.fault_pids.iter().enumerate() {
            if let Some(pid) = pid {
                signal(*pid as i32, libc::SIGTERM);
                self.outcomes[index].state = FaultState::Stopped;
            }
        }
    }

    /// Ends a workload still running at the end: SIGTERM to its process group, SIGKILL after
    /// [`WORKLOAD_GRACE`]. A workload that ran until the end did its part: it counts as ok.
    async fn stop_workload(&mut self, received: &mut Events) {
        let (Some(pid), Some(report)) = (self.workload_pid, &self.workload) else {
            return;
        };
        if report.exit_code.is_some() || report.signal.is_some() {
            return;
        }
        signal(-(pid as i32), libc::SIGTERM);
        let give_up = Instant::now() + WORKLOAD_GRACE;
        loop {
            match timeout(
                give_up.saturating_duration_since(Instant::now()),
                received.recv(),
            )
            .await
            {
                Ok(Some(Event::WorkloadExited(status))) => {
                    let report = self.workload.as_mut().expect("a workload report");
                    record_workload(report, status);
                    break;
                }
                Ok(Some(event)) => {
                    self.handle(event);
                }
                Ok(None) | Err(_) => {
                    signal(-(pid as i32), libc::SIGKILL);
                    self.workload.as_mut().expect("a workload report").signal = Some(libc::SIGKILL);
                    break;
                }
            }
        }
        let report = self.workload.as_mut().expect("a workload report");
        report.stopped_by_chaos = true;
        report.ok = true;
    }

    /// Starts fault `index` as a chaos child process.
    fn spawn_fault(&mut self, index: usize, events: UnboundedSender<Event>) -> std::io::Result<()> {
        let fault: &PlannedFault = &self.experiment.faults[index];
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(fault.argv(self.workload_pid))
            .arg("--json")
            .env(STATUS_LINES_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        self.fault_pids[index] = child.id();
        self.live.lock().expect("live lock")[index].state = Some(FaultState::Running);
        self.outcomes[index].state = FaultState::Running;
        let mut stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (live, console, name) = (self.live.clone(), self.console.clone(), fault.name.clone());
        tokio::spawn(async move {
            let read_stdout = async {
                let mut text = String::new();
                let _ = stdout.read_to_string(&mut text).await;
                text
            };
            let read_stderr = async {
                let mut tail = VecDeque::new();
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(json) = line.strip_prefix(STATUS_LINE_PREFIX) {
                        if let Ok(counters) = serde_json::from_str(json) {
                            live.lock().expect("live lock")[index].counters = counters;
                        }
                        continue;
                    }
                    console
                        .lock()
                        .expect("console lock")
                        .say(&format!("[{name}] {line}"));
                    if tail.len() == KEPT_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                Vec::from(tail)
            };
            let (stdout, stderr_tail) = tokio::join!(read_stdout, read_stderr);
            let status = child.wait().await;
            let _ = events.send(Event::FaultEnded {
                index,
                status,
                stdout,
                stderr_tail,
            });
        });
        Ok(())
    }

    fn spawn_workload(
        &self,
        command: &str,
        events: UnboundedSender<Event>,
    ) -> std::io::Result<u32> {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(command)
            .current_dir(&self.workdir)
            .env("PATH", commands_path())
            .stdin(Stdio::null())
            // Its output goes with chaos's messages, never into the report on stdout.
            .stdout(std::io::stderr())
            .process_group(0);
        die_with_parent(&mut shell);
        let mut child = shell.spawn()?;
        let pid = child.id().unwrap_or_default();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = events.send(Event::WorkloadExited(status));
        });
        Ok(pid)
    }

    fn draw_status(&self, start: Instant, deadline: Instant) {
        let now = Instant::now();
        let mut line = format!(
            "[{:>5.1}s, {:>5.1}s left]",
            (now - start).as_secs_f64(),
            deadline.saturating_duration_since(now).as_secs_f64()
        );
        let live = self.live.lock().expect("live lock");
        for (fault, live) in self.experiment.faults.iter().zip(live.iter()) {
            let state = match live.state {
                None | Some(FaultState::NotStarted) => "pending".to_owned(),
                Some(FaultState::Failed) => "failed".to_owned(),
                Some(state) => format!(
                    "{}/{}{}",
                    live.counters.injected,
                    live.counters.matched,
                    if state == FaultState::Running {
                        ""
                    } else {
                        " done"
                    }
                ),
            };
            line.push_str(&format!("  {}: {state}", fault.name));
        }
        if let Some(check) = &self.check {
            line.push_str(&format!(
                "  check: {} of {} failed",
                check.during_failed, check.during
            ));
        }
        drop(live);
        self.console.lock().expect("console lock").draw(&line);
    }
}

/// Runs the steady-state check once, in `workdir`, killed after its timeout.
async fn run_check(check: &SteadyState, workdir: &Path, workload_pid: Option<u32>) -> CheckResult {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&check.command)
        .current_dir(workdir)
        .env("PATH", commands_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(pid) = workload_pid {
        command.env(WORKLOAD_PID_ENV, pid.to_string());
    }
    let output = match command.spawn() {
        Ok(child) => timeout(check.timeout, child.wait_with_output()).await,
        Err(err) => {
            return CheckResult {
                ok: false,
                output: format!("cannot run sh: {err}"),
            };
        }
    };
    match output {
        Ok(Ok(output)) => {
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = text.lines().rev().take(KEPT_LINES).collect();
            let mut output_text = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            if !output.status.success() {
                output_text = format!(
                    "{}{output_text}",
                    format_args!("`{}` exited with {}\n", check.command, output.status)
                );
            }
            CheckResult {
                ok: output.status.success(),
                output: output_text,
            }
        }
        Ok(Err(err)) => CheckResult {
            ok: false,
            output: format!("waiting for the check: {err}"),
        },
        Err(_) => CheckResult {
            ok: false,
            output: format!(
                "`{}` took longer than {}",
                check.command,
                humantime::format_duration(check.timeout)
            ),
        },
    }
}

fn record_workload(report: &mut WorkloadReport, status: std::io::Result<ExitStatus>) {
    match status {
        Ok(status) => {
            report.exit_code = status.code();
            report.signal = status.signal();
            report.ok = status.success();
        }
        Err(_) => report.ok = false,
    }
}

/// The PATH of the workload and the check: this chaos binary's directory first, so that they
/// can call the very chaos that runs them.
fn commands_path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .into_iter()
        .collect();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Sends `sig` to a process (or, for a negative `pid`, a process group) this run started.
fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill has no memory effects; a process that already exited yields ESRCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The child gets SIGTERM when chaos run dies, even by SIGKILL: a fault never outlives its run.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

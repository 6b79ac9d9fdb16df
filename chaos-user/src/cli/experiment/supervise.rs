//! Running an experiment: the steady-state check before, during and after the faults, the
//! workloads, and each fault as a `chaos` child process started at its offset.
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
    sync::{
        mpsc::{UnboundedSender, unbounded_channel},
        oneshot,
    },
    time::{Instant, MissedTickBehavior, interval, interval_at, sleep_until, timeout},
};

use super::{
    Experiment, PlannedFault, SteadyState,
    metrics::{self, PhaseMetrics, SharedPhase},
    report::{
        CheckReport, ExperimentEnd, ExperimentReport, FaultOutcome, FaultState, WorkloadReport,
        describe_exit,
    },
    workload::{Metrics, Workload},
};
use crate::{
    report::{STATUS_LINE_PREFIX, STATUS_LINES_ENV, StatusCounters},
    run::hold::Interrupts,
};

/// The environment variable that gives the steady-state check the (first) workload's PID; each
/// one's is also in [`Workload::pid_env`].
pub const WORKLOAD_PID_ENV: &str = "CHAOS_WORKLOAD_PID";
/// How often a stopped workload's group is checked for processes still cleaning up.
const GROUP_POLL: Duration = Duration::from_millis(50);
/// How long past the end of the timeline a fault process may take to report before it is
/// killed: its window starts once it has attached, which takes seconds on a slow (emulated)
/// machine; the in-kernel deadline holds meanwhile.
const FAULT_GRACE: Duration = Duration::from_secs(60);
/// How often the status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// How many of a failed child's last stderr lines the report keeps.
const KEPT_LINES: usize = 8;
/// How many of a workload's last output lines the report keeps.
const WORKLOAD_LINES: usize = 20;
/// How often a workload's `ready` command runs until it succeeds.
const READY_EVERY: Duration = Duration::from_millis(200);
/// How long a workload's output is read after it exited: whatever it left running in the
/// background may hold its pipes open.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// How long after a workload's line is read its numbers wait to be put in a phase: the supervisor
/// hears that a fault went live (or ended) a little after it did, later still on a loaded or
/// emulated machine.
const SETTLE: Duration = Duration::from_secs(1);

/// What the children tell the supervisor.
enum Event {
    /// A fault process ended `at` (its programs detached before).
    FaultEnded {
        index: usize,
        at: Instant,
        status: std::io::Result<ExitStatus>,
        stdout: String,
        stderr_tail: Vec<String>,
    },
    /// A fault process reported its first counters: its programs went live `at`.
    FaultAttached {
        index: usize,
        at: Instant,
    },
    WorkloadExited {
        index: usize,
        status: std::io::Result<ExitStatus>,
        /// Chaos stopped it (its `for`, or the end of the experiment).
        stopped: bool,
        elapsed: Duration,
        output: Vec<String>,
        metrics: Option<PhaseMetrics>,
    },
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
        workloads: experiment
            .workloads
            .iter()
            .map(|workload| WorkloadReport {
                name: workload.name.clone(),
                command: workload.command.clone(),
                start_ms: workload.start.as_millis() as u64,
                expect: workload.expect,
                pid: None,
                elapsed_ms: None,
                exit_code: None,
                signal: None,
                stopped_by_chaos: false,
                ok: true,
                output: Vec::new(),
                metrics: None,
                error: None,
            })
            .collect(),
        workload_stops: experiment.workloads.iter().map(|_| None).collect(),
        phase: SharedPhase::new(experiment.faults.iter().map(|fault| fault.name.clone())),
        check: experiment.steady_state.as_ref().map(|check| CheckReport {
            command: check.command.clone(),
            before: false,
            during: 0,
            during_failed: 0,
            after: None,
            failure: None,
        }),
        checking: false,
    };
    let started = Instant::now();
    let ended_by = supervisor.run(interrupts).await;
    let Supervisor {
        outcomes,
        check,
        workloads,
        ..
    } = supervisor;
    let passed = !matches!(
        ended_by,
        ExperimentEnd::SteadyStateNotMet
            | ExperimentEnd::FaultFailed
            | ExperimentEnd::WorkloadNotReady
    ) && check
        .as_ref()
        .is_none_or(|c| c.before && c.during_failed == 0 && c.after != Some(false))
        && workloads.iter().all(|w| w.ok)
        && outcomes.iter().all(|f| f.state != FaultState::Failed);
    ExperimentReport {
        file: file.display().to_string(),
        description: experiment.description.clone(),
        passed,
        ended_by,
        elapsed_ms: started.elapsed().as_millis() as u64,
        steady_state: check,
        workloads,
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
    workloads: Vec<WorkloadReport>,
    /// How to stop each workload still running.
    workload_stops: Vec<Option<oneshot::Sender<()>>>,
    /// Where the experiment stands, for the workloads' metrics.
    phase: SharedPhase,
    check: Option<CheckReport>,
    /// A check during the faults is running.
    checking: bool,
}

type Events = tokio::sync::mpsc::UnboundedReceiver<Event>;

/// What starts at an offset of the timeline.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Before faults at the same offset, which may target it.
    Workload(usize),
    Fault(usize),
}

impl Supervisor<'_> {
    fn say(&self, line: &str) {
        self.console.lock().expect("console lock").say(line);
    }

    async fn run(&mut self, interrupts: &mut Interrupts) -> ExperimentEnd {
        let experiment = self.experiment;
        let (events, mut received) = unbounded_channel();
        let mut timeline: Vec<(Duration, Due)> = experiment
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| (w.start, Due::Workload(i)))
            .chain(
                experiment
                    .faults
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (f.start, Due::Fault(i))),
            )
            .collect();
        timeline.sort();
        // The workloads at offset 0 start first: the check before the faults sees them.
        let first_fault = timeline
            .iter()
            .position(|(offset, due)| !(offset.is_zero() && matches!(due, Due::Workload(_))))
            .unwrap_or(timeline.len());
        for (_, due) in timeline.drain(..first_fault) {
            if let Due::Workload(index) = due {
                self.spawn_workload(index, events.clone());
            }
        }

        if let Err(ended_by) = self.wait_until_ready(&mut received, interrupts).await {
            self.stop_workloads(&mut received).await;
            return ended_by;
        }

        if let Some(check) = &experiment.steady_state {
            let result = run_check(check, &self.workdir, self.check_env()).await;
            let report = self.check.as_mut().expect("a check report");
            report.before = result.ok;
            if !result.ok {
                report.failure = Some(result.output.clone());
                self.say(&format!("chaos run: the steady-state check fails before any fault; nothing was started\n{}", result.output));
                self.stop_workloads(&mut received).await;
                return ExperimentEnd::SteadyStateNotMet;
            }
        }

        let start = Instant::now();
        let deadline = start + experiment.duration;
        let mut timeline = timeline.into_iter().peekable();
        let check_every = experiment
            .steady_state
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.every);
        let mut check_ticks = interval_at(start + check_every, check_every);
        check_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut status_ticks = interval(STATUS_EVERY);
        status_ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);

        let ended_by = loop {
            let next_start = timeline.peek().map(|(offset, _)| start + *offset);
            tokio::select! {
                _ = sleep_until(next_start.unwrap_or(deadline)), if next_start.is_some() => {
                    match timeline.next().expect("something was due").1 {
                        Due::Workload(index) => self.spawn_workload(index, events.clone()),
                        Due::Fault(index) => {
                            if let Err(err) = self.spawn_fault(index, events.clone()) {
                                let outcome = &mut self.outcomes[index];
                                outcome.state = FaultState::Failed;
                                outcome.error = Some(format!("cannot start chaos: {err}"));
                                break ExperimentEnd::FaultFailed;
                            }
                        }
                    }
                }
                _ = check_ticks.tick(), if experiment.steady_state.is_some() && !self.checking => {
                    self.checking = true;
                    let check = experiment.steady_state.clone().expect("a check");
                    let (workdir, env, events) = (self.workdir.clone(), self.check_env(), events.clone());
                    tokio::spawn(async move {
                        let result = run_check(&check, &workdir, env).await;
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
        self.finish_check(&mut received).await;
        self.phase.close(Instant::now());
        if let Some(check) = &experiment.steady_state {
            let result = run_check(check, &self.workdir, self.check_env()).await;
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
        self.stop_workloads(&mut received).await;
        ended_by
    }

    /// Waits until every started workload with a `ready` command is ready; why the experiment
    /// must end instead, when one is not.
    async fn wait_until_ready(
        &mut self,
        received: &mut Events,
        interrupts: &mut Interrupts,
    ) -> Result<(), ExperimentEnd> {
        let waiting: Vec<(usize, String, Duration)> = self
            .experiment
            .workloads
            .iter()
            .enumerate()
            .filter(|(index, _)| self.workloads[*index].pid.is_some())
            .filter_map(|(index, w)| Some((index, w.ready.clone()?, w.ready_timeout)))
            .collect();
        for (index, command, ready_timeout) in waiting {
            let probe = SteadyState {
                command,
                every: READY_EVERY,
                timeout: ready_timeout,
                abort: false,
            };
            let give_up = Instant::now() + ready_timeout;
            let mut last = String::new();
            loop {
                if self.workloads[index].elapsed_ms.is_some() {
                    last = format!("it ended ({})", describe_exit(&self.workloads[index]));
                    break;
                }
                if Instant::now() >= give_up {
                    break;
                }
                let env = self.check_env();
                tokio::select! {
                    result = run_check(&probe, &self.workdir, env) => {
                        if result.ok {
                            last.clear();
                            break;
                        }
                        last = result.output;
                    }
                    ended_by = interrupts.next() => return Err(ended_by.into()),
                }
                tokio::select! {
                    _ = tokio::time::sleep(READY_EVERY) => {}
                    Some(event) = received.recv() => { self.handle(event); }
                    ended_by = interrupts.next() => return Err(ended_by.into()),
                }
            }
            if !last.is_empty() || self.workloads[index].elapsed_ms.is_some() {
                let report = &mut self.workloads[index];
                report.error = Some(format!("not ready: {last}"));
                report.ok = false;
                let line = format!(
                    "chaos run: the workload {} did not become ready within {}; nothing was started\n{last}",
                    report.name,
                    humantime::format_duration(ready_timeout)
                );
                self.say(&line);
                return Err(ExperimentEnd::WorkloadNotReady);
            }
        }
        Ok(())
    }

    /// What a check sees of the workloads started so far: the first one's PID in
    /// [`WORKLOAD_PID_ENV`], each one's in its own variable.
    fn check_env(&self) -> Vec<(String, String)> {
        let started = self
            .experiment
            .workloads
            .iter()
            .zip(&self.workloads)
            .filter_map(|(workload, report)| Some((workload.pid_env(), report.pid?.to_string())));
        let first = self
            .workloads
            .first()
            .and_then(|report| report.pid)
            .map(|pid| (WORKLOAD_PID_ENV.to_owned(), pid.to_string()));
        first.into_iter().chain(started).collect()
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
            Event::WorkloadExited {
                index,
                status,
                stopped,
                elapsed,
                output,
                metrics,
            } => {
                self.workload_stops[index] = None;
                let expect = self.experiment.workloads[index].expect;
                let report = &mut self.workloads[index];
                report.elapsed_ms = Some(elapsed.as_millis() as u64);
                report.output = output;
                report.metrics = metrics;
                report.stopped_by_chaos = stopped;
                match status {
                    Ok(status) => {
                        report.exit_code = status.code();
                        report.signal = status.signal();
                        // Stopped by chaos, it did its part, unless it had failed already
                        // (never ready).
                        report.ok =
                            report.error.is_none() && (stopped || expect.met_by(status.success()));
                    }
                    Err(err) => {
                        report.error = Some(format!("waiting for it: {err}"));
                        report.ok = false;
                    }
                }
                if !stopped {
                    let line = format!(
                        "chaos run: the workload {} ended ({}{})",
                        report.name,
                        describe_exit(report),
                        if report.ok { "" } else { ", not as expected" }
                    );
                    self.say(&line);
                }
                None
            }
            Event::FaultAttached { index, at } => {
                self.phase.live(index, at);
                None
            }
            Event::FaultEnded {
                index,
                at,
                status,
                stdout,
                stderr_tail,
            } => {
                self.fault_pids[index] = None;
                self.phase.ended(index, at);
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

    /// Waits for a check started during the experiment (bounded by its timeout): it counts as a
    /// check during the faults, and must not see the workloads being stopped after it.
    async fn finish_check(&mut self, received: &mut Events) {
        self.handle_while(received, |s| s.checking).await;
    }

    /// Records what the children report while `pending` holds (or until none is left to).
    async fn handle_while(&mut self, received: &mut Events, pending: impl Fn(&Self) -> bool) {
        while pending(self) {
            match received.recv().await {
                Some(event) => {
                    self.handle(event);
                }
                None => break,
            }
        }
    }

    /// Stops the workloads still running at the end and waits for each to report: each one's
    /// watcher sends SIGTERM to its process group, SIGKILL after its `stop_timeout`. A
    /// workload that ran until the end did its part.
    async fn stop_workloads(&mut self, received: &mut Events) {
        for stop in self.workload_stops.iter_mut().filter_map(Option::take) {
            let _ = stop.send(());
        }
        self.handle_while(received, |s| {
            s.workloads
                .iter()
                .any(|w| w.pid.is_some() && w.elapsed_ms.is_none())
        })
        .await;
    }

    /// Starts fault `index` as a chaos child process.
    fn spawn_fault(&mut self, index: usize, events: UnboundedSender<Event>) -> std::io::Result<()> {
        let fault: &PlannedFault = &self.experiment.faults[index];
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(fault.argv(&self.workloads.iter().map(|w| w.pid).collect::<Vec<_>>()))
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
        let attached = events.clone();
        tokio::spawn(async move {
            let read_stdout = async {
                let mut text = String::new();
                let _ = stdout.read_to_string(&mut text).await;
                text
            };
            let read_stderr = async {
                let mut tail = VecDeque::new();
                let mut seen_status = false;
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(json) = line.strip_prefix(STATUS_LINE_PREFIX) {
                        let counters = serde_json::from_str::<StatusCounters>(json).ok();
                        if let Some(counters) = counters {
                            live.lock().expect("live lock")[index].counters = counters;
                        }
                        if !std::mem::replace(&mut seen_status, true) {
                            let at = counters.map_or_else(Instant::now, |counters| {
                                Instant::from_std(crate::clock::instant_of(counters.live_since_ns))
                            });
                            let _ = attached.send(Event::FaultAttached { index, at });
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
            // Both streams closed: the process is exiting, its programs detached.
            let at = Instant::now();
            let status = child.wait().await;
            let _ = events.send(Event::FaultEnded {
                index,
                at,
                status,
                stdout,
                stderr_tail,
            });
        });
        Ok(())
    }

    /// Starts workload `index` in its own process group, watched by a task of its own.
    fn spawn_workload(&mut self, index: usize, events: UnboundedSender<Event>) {
        let workload: &Workload = &self.experiment.workloads[index];
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(&workload.command)
            .current_dir(&self.workdir)
            .env("PATH", commands_path())
            .envs(self.check_env())
            .stdin(Stdio::null())
            // Its output goes with chaos's messages and into the report, never on stdout.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        die_with_parent(&mut shell);
        let child = match shell.spawn() {
            Ok(child) => child,
            Err(err) => {
                let report = &mut self.workloads[index];
                report.error = Some(format!("cannot start sh: {err}"));
                report.ok = false;
                self.say(&format!(
                    "chaos run: cannot start the workload {}: {err}",
                    workload.name
                ));
                return;
            }
        };
        self.workloads[index].pid = child.id();
        let (stop, stopped) = oneshot::channel();
        self.workload_stops[index] = Some(stop);
        let watcher = WorkloadWatcher {
            index,
            name: workload.name.clone(),
            lifetime: workload.lifetime,
            stop_timeout: workload.stop_timeout,
            metrics: workload.metrics.clone(),
            phase: self.phase.clone(),
            console: self.console.clone(),
        };
        tokio::spawn(watcher.watch(child, stopped, events));
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

/// Runs the steady-state check once, in `workdir`, with the workloads' PIDs in `env`, killed
/// after its timeout.
async fn run_check(check: &SteadyState, workdir: &Path, env: Vec<(String, String)>) -> CheckResult {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&check.command)
        .current_dir(workdir)
        .env("PATH", commands_path())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
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

/// What watches one running workload: its output, its `for`, and the request to stop it.
struct WorkloadWatcher {
    index: usize,
    name: String,
    lifetime: Option<Duration>,
    stop_timeout: Duration,
    metrics: Option<Metrics>,
    phase: SharedPhase,
    console: Arc<Mutex<Console>>,
}

impl WorkloadWatcher {
    /// Follows the workload to its end, stopping it when its `for` is over or `stop` says so
    /// (SIGTERM to its group, SIGKILL after its `stop_timeout`), and reports it.
    async fn watch(
        mut self,
        mut child: tokio::process::Child,
        mut stop: oneshot::Receiver<()>,
        events: UnboundedSender<Event>,
    ) {
        let started = Instant::now();
        let group = -(child.id().unwrap_or_default() as i32);
        let (lines, mut received) = unbounded_channel();
        forward_lines(child.stdout.take().expect("piped stdout"), lines.clone());
        forward_lines(child.stderr.take().expect("piped stderr"), lines);
        let mut tail = VecDeque::new();
        let mut samples = Samples::default();
        let lifetime_end = self.lifetime.map(|lifetime| started + lifetime);
        // Set once SIGTERM is sent: when SIGKILL follows.
        let mut kill_at: Option<Instant> = None;
        let mut killed = false;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                Some((at, line)) = received.recv() => self.line(at, line, &mut tail, &mut samples),
                _ = sleep_until(lifetime_end.unwrap_or(started)), if lifetime_end.is_some() && kill_at.is_none() => {
                    signal(group, libc::SIGTERM);
                    kill_at = Some(Instant::now() + self.stop_timeout);
                }
                _ = &mut stop, if kill_at.is_none() => {
                    signal(group, libc::SIGTERM);
                    kill_at = Some(Instant::now() + self.stop_timeout);
                }
                _ = sleep_until(kill_at.unwrap_or(started)), if kill_at.is_some() && !killed => {
                    signal(group, libc::SIGKILL);
                    killed = true;
                }
            }
        };
        // Stopped, the shell is gone, but the rest of its group got the SIGTERM too and may
        // still be cleaning up (a script's trap: `sh -c` runs a script as its child): the
        // workload ends when its group does, or is killed at its stop timeout.
        if let Some(kill_at) = kill_at.filter(|_| !killed && group != 0) {
            while crate::sys::group_runs(group.unsigned_abs()) {
                if Instant::now() >= kill_at {
                    signal(group, libc::SIGKILL);
                    break;
                }
                tokio::time::sleep(GROUP_POLL).await;
            }
        }
        let elapsed = started.elapsed();
        let _ = timeout(OUTPUT_DRAIN, async {
            while let Some((at, line)) = received.recv().await {
                self.line(at, line, &mut tail, &mut samples);
            }
        })
        .await;
        samples.settle(self.metrics.as_ref(), &self.phase, Instant::now());
        let _ = events.send(Event::WorkloadExited {
            index: self.index,
            status,
            stopped: kill_at.is_some(),
            elapsed,
            output: Vec::from(tail),
            metrics: self.metrics.is_some().then_some(samples.gathered),
        });
    }

    /// One line of the workload's output, read `at`: shown, kept in the tail, its numbers
    /// gathered once the supervisor has surely heard what the faults did by then.
    fn line(
        &mut self,
        at: Instant,
        line: String,
        tail: &mut VecDeque<String>,
        samples: &mut Samples,
    ) {
        if self.metrics.is_some() {
            samples.unsettled.push_back((at, line.clone()));
            if let Some(settled) = Instant::now().checked_sub(SETTLE) {
                samples.settle(self.metrics.as_ref(), &self.phase, settled);
            }
        }
        self.console
            .lock()
            .expect("console lock")
            .say(&format!("[{}] {line}", self.name));
        if tail.len() == WORKLOAD_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// A workload's lines with numbers, gathered per phase once settled.
#[derive(Default)]
struct Samples {
    /// Read less than [`SETTLE`] ago, with when.
    unsettled: VecDeque<(Instant, String)>,
    gathered: PhaseMetrics,
}

impl Samples {
    /// Gathers the lines read before `until` in the phases of when each was read.
    fn settle(&mut self, metrics: Option<&Metrics>, phase: &SharedPhase, until: Instant) {
        let Some(metrics) = metrics else {
            return;
        };
        while let Some((at, _)) = self.unsettled.front()
            && *at <= until
        {
            let (at, line) = self.unsettled.pop_front().expect("a front");
            metrics::record(metrics, &line, &phase.labels_at(at), &mut self.gathered);
        }
    }
}

/// Sends each line `stream` yields to `lines` with when it was read (bytes that are not UTF-8
/// replaced), until its end.
fn forward_lines(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    lines: UnboundedSender<(Instant, String)>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader
            .read_until(b'\n', &mut line)
            .await
            .is_ok_and(|read| read > 0)
        {
            let text = String::from_utf8_lossy(&line);
            if lines
                .send((
                    Instant::now(),
                    text.trim_end_matches(['\n', '\r']).to_owned(),
                ))
                .is_err()
            {
                break;
            }
            line.clear();
        }
    });
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
pub(super) fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill has no memory effects; a process that already exited yields ESRCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The child gets SIGTERM when chaos run dies, even by SIGKILL: a fault never outlives its run.
pub(super) fn die_with_parent(command: &mut Command) {
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

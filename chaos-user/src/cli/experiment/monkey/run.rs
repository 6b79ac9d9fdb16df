//! The monkey's day as it happens: each pick at its time on the monkey's clock, its fault run as
//! its chaos command, and a journal line for every pick, start and end.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    process::{Output, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _},
    process::{Child, Command},
    sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel},
    time::{Instant, sleep_until},
};

use super::{
    Day, MonkeyArgs,
    pool::{self, Candidate},
    schedule::{self, Skip},
};
use crate::{
    cli::{
        error::Error,
        experiment::supervise::{die_with_parent, signal},
    },
    report::EndedBy,
    run::hold::Interrupts,
};

/// What the day came to.
pub struct MonkeyReport {
    seed: u64,
    /// The picks of the plan, and those whose time came before the day ended.
    planned: usize,
    reached: usize,
    started: usize,
    pub failed: usize,
    skipped: BTreeMap<&'static str, usize>,
    /// The fault time started, on the monkey's clock.
    fault_time: Duration,
    ended_by: Option<EndedBy>,
    journal: PathBuf,
}

impl MonkeyReport {
    pub fn human(&self) -> String {
        let skipped: usize = self.skipped.values().sum();
        let reasons: Vec<String> = self
            .skipped
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        let ended = match self.ended_by {
            Some(by) => format!(
                ", ended early by {}",
                json!(by).as_str().unwrap_or_default()
            ),
            None => String::new(),
        };
        format!(
            "chaos monkey: seed {}: {} of {} pick(s) due, {} run ({} failed), {skipped} skipped{}, {} of faults{ended}; journal {}\n",
            self.seed,
            self.reached,
            self.planned,
            self.started,
            self.failed,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            },
            humantime::format_duration(self.fault_time),
            self.journal.display()
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "seed": self.seed,
            "planned": self.planned,
            "reached": self.reached,
            "started": self.started,
            "failed": self.failed,
            "skipped": self.skipped,
            "fault_ms": self.fault_time.as_millis() as u64,
            "ended_by": self.ended_by,
            "journal": self.journal,
        })
    }
}

/// A fault process that ended.
struct Ended {
    index: usize,
    output: std::io::Result<Output>,
}

/// What woke the day's loop.
enum Woke {
    /// The time it waited for came.
    Due,
    /// A fault process ended (and is journaled).
    Ended,
    Interrupted(EndedBy),
}

/// How long a look at the pool may take: podman and docker answer in well under a second, the
/// Kubernetes API server (connect 10 s, read 30 s a call) may take longer.
const POOL_LOOK_LIMIT: Duration = Duration::from_secs(30);
const POD_LOOK_LIMIT: Duration = Duration::from_secs(60);

/// The candidates `entries` name now, or none if listing them takes over `limit`.
async fn look(entries: Vec<pool::Entry>, limit: Duration, hung: &str) -> Vec<Candidate> {
    if entries.is_empty() {
        return Vec::new();
    }
    let listed = tokio::task::spawn_blocking(move || pool::candidates(&entries));
    match tokio::time::timeout(limit, listed).await {
        Ok(Ok(candidates)) => candidates,
        _ => {
            eprintln!("chaos monkey: the pool could not be listed in time ({hung})");
            Vec::new()
        }
    }
}

/// The journal file, a JSON object per line, each written whole.
struct Journal {
    file: File,
    seed: u64,
}

impl Journal {
    fn open(path: &PathBuf, seed: u64) -> Result<Self, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(Error::io(format!("make {}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(Error::io(format!("open the journal {}", path.display())))?;
        Ok(Journal { file, seed })
    }

    /// Appends `event` with the seed and the real time, in ms since the epoch.
    fn write(&mut self, event: &str, mut fields: Value) {
        let object = fields
            .as_object_mut()
            .expect("journal fields are an object");
        object.insert("event".into(), event.into());
        object.insert("seed".into(), self.seed.into());
        object.insert("time_ms".into(), super::now().into());
        let mut line = fields.to_string();
        line.push('\n');
        if let Err(err) = self.file.write_all(line.as_bytes()) {
            tracing::warn!(%err, "cannot append to the monkey's journal");
        }
    }
}

/// Collects a fault process's output and exit, and sends it SIGTERM when asked; the ended
/// process goes back to the day's loop.
async fn watch(
    index: usize,
    mut child: Child,
    mut stop_asked: UnboundedReceiver<()>,
    ended: UnboundedSender<Ended>,
) {
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let waited = async {
        loop {
            tokio::select! {
                status = child.wait() => return status,
                Some(()) = stop_asked.recv() => {
                    // Not reaped yet (wait() has not returned), so the PID is still its own.
                    if let (Ok(None), Some(pid)) = (child.try_wait(), child.id()) {
                        signal(pid as i32, libc::SIGTERM);
                    }
                }
            }
        }
    };
    let (stdout, stderr, status) = tokio::join!(read_all(stdout), read_all(stderr), waited);
    let output = status.map(|status| Output {
        status,
        stdout,
        stderr,
    });
    let _ = ended.send(Ended { index, output });
}

async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes).await;
    }
    bytes
}

/// The state of the day while it runs.
struct Runner<'a> {
    day: &'a Day,
    journal: Journal,
    /// Each running pick's fault process: what asks it to stop, and its target.
    running: BTreeMap<usize, (UnboundedSender<()>, Candidate)>,
    report: MonkeyReport,
}

pub async fn run(
    day: &Day,
    args: &MonkeyArgs,
    interrupts: &mut Interrupts,
) -> Result<MonkeyReport, Error> {
    let mut journal = Journal::open(&args.journal, day.seed)?;
    journal.write(
        "begin",
        json!({
            "file": args.file,
            "start": schedule::format(day.start),
            "end": schedule::format(day.end),
            "time_scale": day.time_scale,
            "plan": day.plan_json()["picks"],
        }),
    );
    eprint!("{}", day.plan_human());
    let mut runner = Runner {
        day,
        journal,
        running: BTreeMap::new(),
        report: MonkeyReport {
            seed: day.seed,
            planned: day.picks.len(),
            reached: 0,
            started: 0,
            failed: 0,
            skipped: BTreeMap::new(),
            fault_time: Duration::ZERO,
            ended_by: None,
            journal: args.journal.clone(),
        },
    };
    let (sender, mut ended) = unbounded_channel();
    let real_start = Instant::now();
    let schedule = &day.file.schedule;
    'picks: for (index, pick) in day.picks.iter().enumerate() {
        let due = real_start + runner.real(Duration::from_millis(pick.at - day.start));
        loop {
            match runner.wake(Some(due), &mut ended, interrupts).await {
                Woke::Due => break,
                Woke::Ended => {}
                Woke::Interrupted(by) => {
                    runner.report.ended_by = Some(by);
                    break 'picks;
                }
            }
        }
        runner.report.reached += 1;
        if let Some(skip) = pick.skip {
            runner.skip(index, skip, None);
            continue;
        }
        // The plan kept to the cap on the monkey's clock; a fault that took long to start may
        // still run: its successor waits for it.
        while runner.running.len() >= schedule.max_at_once {
            if let Woke::Interrupted(by) = runner.wake(None, &mut ended, interrupts).await {
                runner.report.ended_by = Some(by);
                break 'picks;
            }
        }
        // The target is drawn again from the pool as it is now, with the same number: the
        // planned one if the pool did not change, one that exists if it did.
        // Pods apart: a slow API server leaves the other targets in the pool.
        let (pods, local): (Vec<pool::Entry>, Vec<pool::Entry>) = day
            .file
            .pool
            .iter()
            .cloned()
            .partition(|entry| entry.kind() == pool::Kind::Pod);
        let (mut candidates, pods) = tokio::join!(
            look(local, POOL_LOOK_LIMIT, "podman or docker hung?"),
            look(
                pods,
                POD_LOOK_LIMIT,
                "the Kubernetes API server did not answer"
            )
        );
        candidates.extend(pods);
        candidates.sort();
        candidates.dedup();
        let kinds: Vec<usize> = candidates.iter().map(|c| c.kind.index()).collect();
        let menu = &day.file.menu[pick.fault];
        // Late (a wait for the cap, a slow look at the pool, slow fault starts at a high
        // --time-scale): it still ends with the hours, cut short if need be.
        let now = day.start + (real_start.elapsed().as_secs_f64() * day.time_scale * 1000.0) as u64;
        let left = Duration::from_millis(schedule.window_end(now, day.end).saturating_sub(now));
        match schedule::choose(&menu.item, &kinds, pick.draw) {
            None => runner.skip(index, Skip::NoTarget, Some(Value::Null)),
            Some(target) => {
                let target = &candidates[target];
                if runner.running.values().any(|(_, busy)| busy == target) {
                    runner.skip(index, Skip::TargetBusy, Some(target.json()));
                } else if left.is_zero() {
                    runner.skip(index, Skip::OutlastsHours, Some(target.json()));
                } else {
                    runner.start(index, target, menu.fault.lifetime.min(left), &sender);
                }
            }
        }
    }
    if runner.report.ended_by.is_some() {
        runner.stop_all();
    }
    while !runner.running.is_empty() {
        if let Woke::Interrupted(by) = runner.wake(None, &mut ended, interrupts).await {
            runner.report.ended_by.get_or_insert(by);
            runner.stop_all();
        }
    }
    let report_json = runner.report.json();
    runner.journal.write("finish", report_json);
    Ok(runner.report)
}

impl Runner<'_> {
    /// The real time that `span` of the monkey's clock takes.
    fn real(&self, span: Duration) -> Duration {
        span.div_f64(self.day.time_scale)
    }

    /// Waits until `due` (without one, until something else happens): journals a fault
    /// process that ends meanwhile, and hands back an interrupt.
    async fn wake(
        &mut self,
        due: Option<Instant>,
        ended: &mut UnboundedReceiver<Ended>,
        interrupts: &mut Interrupts,
    ) -> Woke {
        let due = async {
            match due {
                Some(due) => sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = due => Woke::Due,
            Some(end) = ended.recv() => {
                self.ended(end);
                Woke::Ended
            }
            by = interrupts.next() => Woke::Interrupted(by),
        }
    }

    /// Asks every fault running now to stop (each reports, and is journaled as it ends).
    fn stop_all(&self) {
        for (stop, _) in self.running.values() {
            let _ = stop.send(());
        }
    }

    /// Journals a skipped pick; `target`, when given, replaces the planned one (the target
    /// drawn when it was due, or none).
    fn skip(&mut self, index: usize, skip: Skip, target: Option<Value>) {
        *self.report.skipped.entry(skip.as_str()).or_default() += 1;
        let mut fields = self.day.pick_json(index);
        fields["skip"] = skip.as_str().into();
        if let Some(target) = target {
            fields["target"] = target;
        }
        eprintln!(
            "chaos monkey: pick {} ({}) skipped: {}",
            index + 1,
            fields["fault"].as_str().unwrap_or_default(),
            skip.as_str()
        );
        self.journal.write("skip", fields);
    }

    /// Starts pick `index`'s fault as a chaos child process, on `candidate`, for `lifetime` of
    /// the monkey's clock (its planned length, or what is left of the hours for a late pick).
    fn start(
        &mut self,
        index: usize,
        candidate: &Candidate,
        lifetime: Duration,
        sender: &UnboundedSender<Ended>,
    ) {
        let pick = &self.day.picks[index];
        let menu = &self.day.file.menu[pick.fault];
        let mut fault = menu.fault.clone();
        fault.lifetime = self.real(lifetime).max(Duration::from_millis(1));
        let argv = candidate.argv(&fault);
        let mut fields = self.day.pick_json(index);
        fields["target"] = candidate.json();
        fields["argv"] = json!(argv);
        if lifetime < menu.fault.lifetime {
            fields["cut_to_ms"] = (lifetime.as_millis() as u64).into();
        }
        let mut command = match std::env::current_exe() {
            Ok(exe) => Command::new(exe),
            Err(err) => {
                self.failed_to_start(fields, &err);
                return;
            }
        };
        command
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        // A group of its own: a terminal's Ctrl-C reaches the monkey only, which passes it on
        // once, as SIGTERM (a `chaos k8s run` gives up waiting at a second interrupt).
        command.process_group(0);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                self.failed_to_start(fields, &err);
                return;
            }
        };
        let (stop, stop_asked) = unbounded_channel();
        self.running.insert(index, (stop, candidate.clone()));
        self.report.started += 1;
        self.report.fault_time += lifetime;
        eprintln!(
            "chaos monkey: pick {}: {} on {} {} for {}",
            index + 1,
            menu.fault.name,
            candidate.kind.as_str(),
            candidate.name,
            humantime::format_duration(lifetime)
        );
        self.journal.write("start", fields);
        tokio::spawn(watch(index, child, stop_asked, sender.clone()));
    }

    fn failed_to_start(&mut self, mut fields: Value, err: &std::io::Error) {
        self.report.failed += 1;
        fields["error"] = format!("cannot start chaos: {err}").into();
        self.journal.write("end", fields);
    }

    /// Journals a fault process that ended, with its report.
    fn ended(&mut self, end: Ended) {
        let mut fields = self.day.pick_json(end.index);
        if let Some((_, candidate)) = self.running.remove(&end.index) {
            fields["target"] = candidate.json();
        }
        let name = fields["fault"].as_str().unwrap_or_default().to_owned();
        match end.output {
            Ok(output) => {
                let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
                let stderr = String::from_utf8_lossy(&output.stderr);
                fields["exit_code"] = output.status.code().into();
                fields["signal"] = output.status.signal().into();
                fields["report"] = report;
                if !output.status.success() {
                    self.report.failed += 1;
                    let last = stderr.lines().last().unwrap_or_default().to_owned();
                    eprintln!(
                        "chaos monkey: pick {} ({name}) failed: {last}",
                        end.index + 1
                    );
                    fields["error"] = last.into();
                } else {
                    eprintln!("chaos monkey: pick {} ({name}) ended", end.index + 1);
                }
            }
            Err(err) => {
                self.report.failed += 1;
                fields["error"] = format!("cannot wait for chaos: {err}").into();
            }
        }
        self.journal.write("end", fields);
    }
}

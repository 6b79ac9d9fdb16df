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
    process::Command,
    sync::mpsc::{UnboundedSender, unbounded_channel},
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
    picks: usize,
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
            "chaos monkey: seed {}: {} pick(s), {} run ({} failed), {skipped} skipped{}, {} of faults{ended}; journal {}\n",
            self.seed,
            self.picks,
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
            "picks": self.picks,
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

/// The state of the day while it runs.
struct Runner<'a> {
    day: &'a Day,
    journal: Journal,
    /// The PID of each pick's fault process while it runs, and its target.
    running: BTreeMap<usize, (u32, Candidate)>,
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
            "start": super::schedule::format(day.start),
            "end": super::schedule::format(day.end),
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
            picks: day.picks.len(),
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
    'picks: for (index, pick) in day.picks.iter().enumerate() {
        let due = real_start + runner.real(Duration::from_millis(pick.at - day.start));
        loop {
            tokio::select! {
                _ = sleep_until(due) => break,
                Some(end) = ended.recv() => runner.ended(end),
                by = interrupts.next() => {
                    runner.report.ended_by = Some(by);
                    break 'picks;
                }
            }
        }
        if let Some(skip) = pick.skip {
            runner.skip(index, skip);
            continue;
        }
        // The plan kept to the cap on the monkey's clock; a fault that took long to start may
        // still run: its successor waits for it.
        while runner.running.len() >= day.file.schedule.max_at_once {
            tokio::select! {
                Some(end) = ended.recv() => runner.ended(end),
                by = interrupts.next() => {
                    runner.report.ended_by = Some(by);
                    break 'picks;
                }
            }
        }
        // The target is drawn again from the pool as it is now, with the same number: the
        // planned one if the pool did not change, one that exists if it did.
        let candidates = pool::candidates(&day.file.pool);
        let kinds: Vec<usize> = candidates.iter().map(|c| c.kind.index()).collect();
        match schedule::choose(&day.file.menu[pick.fault].item, &kinds, pick.draw) {
            None => runner.skip(index, Skip::NoTarget),
            Some(target)
                if runner
                    .running
                    .values()
                    .any(|(_, c)| *c == candidates[target]) =>
            {
                runner.skip(index, Skip::TargetBusy)
            }
            Some(target) => runner.start(index, &candidates[target], &sender),
        }
    }
    if runner.report.ended_by.is_some() {
        runner.stop_all();
    }
    while !runner.running.is_empty() {
        tokio::select! {
            Some(end) = ended.recv() => runner.ended(end),
            by = interrupts.next() => {
                runner.report.ended_by.get_or_insert(by);
                runner.stop_all();
            }
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

    /// Ends every fault running now (each reports, and the loop journals it as it ends).
    fn stop_all(&self) {
        for (pid, _) in self.running.values() {
            signal(*pid as i32, libc::SIGTERM);
        }
    }

    fn skip(&mut self, index: usize, skip: Skip) {
        *self.report.skipped.entry(skip.as_str()).or_default() += 1;
        let mut fields = self.day.pick_json(index);
        fields["skip"] = skip.as_str().into();
        eprintln!(
            "chaos monkey: pick {} ({}) skipped: {}",
            index + 1,
            fields["fault"].as_str().unwrap_or_default(),
            skip.as_str()
        );
        self.journal.write("skip", fields);
    }

    /// Starts pick `index`'s fault as a chaos child process.
    fn start(&mut self, index: usize, candidate: &Candidate, sender: &UnboundedSender<Ended>) {
        let pick = &self.day.picks[index];
        let menu = &self.day.file.menu[pick.fault];
        let mut fault = menu.fault.clone();
        fault.lifetime = self.real(fault.lifetime).max(Duration::from_millis(1));
        let mut argv = fault.argv(&[]);
        argv.extend(candidate.args());
        argv.push("--json".into());
        let mut fields = self.day.pick_json(index);
        fields["target"] = candidate.json();
        fields["argv"] = json!(argv);
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
        let child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                self.failed_to_start(fields, &err);
                return;
            }
        };
        self.running
            .insert(index, (child.id().unwrap_or_default(), candidate.clone()));
        self.report.started += 1;
        self.report.fault_time += menu.fault.lifetime;
        eprintln!(
            "chaos monkey: pick {}: {} on {} {} for {}",
            index + 1,
            menu.fault.name,
            candidate.kind.as_str(),
            candidate.name,
            humantime::format_duration(menu.fault.lifetime)
        );
        self.journal.write("start", fields);
        let sender = sender.clone();
        tokio::spawn(async move {
            let output = child.wait_with_output().await;
            let _ = sender.send(Ended { index, output });
        });
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

//! `chaos k8s`: a fault on the pods a label selector picks, through the Kubernetes API. Each
//! target gets an injector pod pinned to its node that runs `chaos FAULT --pod-uid UID --for D
//! --json`; every injector is owned by the run's record (a ConfigMap in chaos's namespace), so
//! deleting the record deletes them all.

// Without the `k8s` feature only the definitions and the fault's check remain.
#![cfg_attr(not(feature = "k8s"), allow(dead_code))]

use std::time::Duration;

use clap::{Args, Parser as _, Subcommand};

use super::{Cli, Error};
use crate::{fault, k8s::plan::MaxTargets};

/// Run a fault on pods picked by a label selector, through the Kubernetes API.
///
/// `chaos k8s run` talks to the cluster as kubectl does (KUBECONFIG, ~/.kube/config, or a pod's
/// service account) and needs to read pods and namespaces and to create pods and ConfigMaps in
/// chaos's namespace (deploy/kubernetes/rbac.yaml). A namespace takes faults only once it opted
/// in: `kubectl annotate namespace NS chaos/allow-faults=true`.
///
/// Examples:
///   chaos k8s run -n shop -l app=web --for 30s -- fail --op connect --errno ECONNREFUSED
///   chaos k8s run -n shop -l app=web --max-targets 25% --dry-run -- net drop --probability 0.3
///   chaos k8s run -n shop -l app=web -f examples/k8s/connect-refused.toml
///   chaos k8s list
///   chaos k8s report RUN --json
///   chaos k8s stop --all
#[derive(Debug, Args)]
pub struct K8sArgs {
    #[command(subcommand)]
    pub action: K8sAction,
}

#[derive(Debug, Subcommand)]
pub enum K8sAction {
    Run(K8sRunArgs),
    List(K8sListArgs),
    Report(K8sReportArgs),
    Stop(K8sStopArgs),
}

/// The namespace chaos keeps its runs in, unless told another (deploy/kubernetes/namespace.yaml).
pub const HOME_NAMESPACE: &str = "chaos";

/// Where chaos keeps its runs in the cluster.
#[derive(Debug, Args)]
pub struct Home {
    /// The namespace of the run records and injector pods (deploy/kubernetes/namespace.yaml).
    #[arg(long, value_name = "NAMESPACE", default_value = HOME_NAMESPACE)]
    pub chaos_namespace: String,
}

/// Start a fault on the pods a selector picks: one injector pod per target, on its node.
///
/// The fault is a chaos fault command after `--`, without a target, `--for` or `--json`, or a
/// file's [fault] table (-f): each injector adds `--pod-uid` of its pod (`--container-name`
/// picks one container of each). It is checked here, before anything is created. At most --max-targets of the running pods that
/// match are picked (drawn with --seed); more than half of them only with --allow-majority.
/// Without --detach, chaos waits for the injectors, prints their reports and ends them on
/// Ctrl-C or SIGTERM.
///
/// Example: chaos k8s run -n shop -l app=web --for 30s -- fail --op connect --errno ECONNREFUSED
#[derive(Debug, Args)]
pub struct K8sRunArgs {
    /// The namespace of the pods to fault; it must carry the annotation chaos/allow-faults=true.
    #[arg(short, long, value_name = "NAMESPACE")]
    pub namespace: String,

    /// The pods to fault, as `kubectl -l` takes them (app=web,tier in (a,b),!canary); not
    /// empty.
    #[arg(
        short = 'l',
        long,
        value_name = "SELECTOR",
        required_unless_present = "pod"
    )]
    pub selector: Option<String>,

    /// One pod to fault, by name, instead of a selector's draw (the monkey's picks use it):
    /// --max-targets and the majority rule do not apply.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["selector", "max_targets", "allow_majority", "seed"], value_parser = parse_pod_name)]
    pub pod: Option<String>,

    /// The most pods to fault: a count (3) or a share of the matching pods (25%).
    #[arg(long, value_name = "N|P%", default_value = "1", value_parser = MaxTargets::parse)]
    pub max_targets: MaxTargets,

    /// Allow a run to fault more than half of the pods that match.
    #[arg(long)]
    pub allow_majority: bool,

    /// How long the fault lasts on each pod: 30s, 1m30s.
    #[arg(long = "for", value_name = "DURATION", default_value = "60s",
          value_parser = fault::parse_duration)]
    pub duration: Duration,

    /// The seed of the draw of the targets (default: a random one, printed).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// The image of the injector pods (`cargo xtask dist` builds localhost/chaos:dist).
    #[arg(long, value_name = "IMAGE", default_value = chaos_common::names::DIST_IMAGE)]
    pub image: String,

    /// Print the targets and the injector pods, create nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Return once the injectors are created, printing the run's ID.
    #[arg(long)]
    pub detach: bool,

    /// Print the plan (--dry-run), the run's ID (--detach) or its report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub home: Home,

    /// The fault from a file: one [fault] table as in experiment files (`command`, its options,
    /// `for`), without a target.
    #[arg(short = 'f', long, value_name = "FILE.toml", conflicts_with_all = ["fault", "duration"])]
    pub file: Option<std::path::PathBuf>,

    /// The fault: a chaos fault command and its options, after `--`.
    #[arg(last = true, required_unless_present = "file", value_name = "FAULT")]
    pub fault: Vec<String>,
}

/// List the runs in the cluster, with their injectors' states.
///
/// Example: chaos k8s list --json
#[derive(Debug, Args)]
pub struct K8sListArgs {
    /// Print the runs as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub home: Home,
}

/// Print a run's report: each target, its injector's state and the report it printed.
///
/// Example: chaos k8s report 3f9c2a61 --json
#[derive(Debug, Args)]
pub struct K8sReportArgs {
    /// The run's ID, as `chaos k8s run` and `chaos k8s list` print it.
    pub run: String,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub home: Home,
}

/// End a run's injectors now, or every run's (--all: the kill switch).
///
/// Each unfinished injector's deadline becomes one second: kubelet stops it as `kubectl delete
/// pod` would (SIGTERM, on which chaos takes its programs out) and keeps its log for `chaos k8s
/// report`. --delete also deletes the runs' records, and with them their injectors.
///
/// Example: chaos k8s stop --all
#[derive(Debug, Args)]
#[group(id = "which", required = true, multiple = false)]
pub struct K8sStopArgs {
    /// The run's ID.
    #[arg(group = "which")]
    pub run: Option<String>,

    /// Every run of chaos's namespace.
    #[arg(long, group = "which")]
    pub all: bool,

    /// Delete the records too (their injectors and logs go with them).
    #[arg(long)]
    pub delete: bool,

    #[command(flatten)]
    pub home: Home,
}

/// A pod's name as the API server accepts it (a DNS subdomain).
fn parse_pod_name(text: &str) -> Result<String, String> {
    if crate::k8s::selector::is_dns_subdomain(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid pod name '{text}': expected a pod's name as `kubectl get pods` prints it (lower-case letters, digits, '-' and '.')"
        ))
    }
}

/// The options a `chaos k8s run` fault must not carry: the injector adds them.
const ADDED_BY_THE_INJECTOR: [&str; 10] = [
    "--pid",
    "--pid-tree",
    "--cgroup",
    "--container",
    "--pod-uid",
    "--pod",
    "--comm",
    "--for",
    "--json",
    "--detach",
];

/// Any UID: the fault is checked with it, as each injector will run it with its pod's.
const SOME_POD_UID: &str = "00000000-0000-0000-0000-000000000000";

pub fn execute(args: K8sArgs) -> Result<u8, Error> {
    #[cfg(feature = "k8s")]
    return live::execute(args);
    #[cfg(not(feature = "k8s"))]
    {
        let _ = args;
        Err(Error::NotBuilt {
            what: "chaos k8s",
            feature: "k8s",
        })
    }
}

/// Checks a run's fault as each injector will run it: a fault command, without the options the
/// injector adds, that chaos parses.
fn check_fault(fault: &[String], duration: Duration) -> Result<(), Error> {
    let refused = |reason: String| Err(Error::K8sFault(reason));
    for word in fault {
        let option = word.split('=').next().unwrap_or(word);
        if ADDED_BY_THE_INJECTOR.contains(&option) {
            return refused(format!(
                "the fault names {option}: each injector adds its pod (--pod-uid), --for and --json; --container-name picks a container of each pod"
            ));
        }
    }
    let commands = super::fault_commands();
    let named = |words: usize| fault.get(..words).map(|w| w.join(" "));
    if !commands
        .iter()
        .any(|command| Some(command) == named(command.split(' ').count()).as_ref())
    {
        return refused(format!(
            "'{}' is not a fault command: expected one of {}",
            fault.first().map(String::as_str).unwrap_or_default(),
            commands.join(", ")
        ));
    }
    let mut argv = vec!["chaos".to_owned()];
    argv.extend(fault.iter().cloned());
    argv.extend([
        "--pod-uid".into(),
        SOME_POD_UID.into(),
        "--for".into(),
        format!("{}ms", duration.as_millis()),
        "--json".into(),
    ]);
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(err) => {
            return refused(format!(
                "the fault '{}' is not one chaos runs on a pod: {}",
                fault.join(" "),
                err.render().to_string().lines().next().unwrap_or_default()
            ));
        }
    };
    match cli.command.check_fault() {
        Some(Err(err)) => refused(format!("the fault '{}': {err}", fault.join(" "))),
        _ => Ok(()),
    }
}

/// What talks to the cluster: left out of the node image's binary (the `k8s` feature).
#[cfg(feature = "k8s")]
mod live {
    use std::{
        io::Write as _,
        time::{Duration, Instant},
    };

    use serde::Serialize;
    use serde_json::Value;

    use super::{
        Error, K8sAction, K8sArgs, K8sListArgs, K8sReportArgs, K8sRunArgs, K8sStopArgs, check_fault,
    };
    use crate::{
        cli::exit,
        k8s::{
            Cluster, DEADLINE_EXCEEDED, FAILED, Injector, PENDING, RUNNING, Run, RunSpec,
            SUCCEEDED, TargetPod, plan, report_in, selector,
        },
    };

    pub fn execute(args: K8sArgs) -> Result<u8, Error> {
        match args.action {
            K8sAction::Run(args) => run(args),
            K8sAction::List(args) => list(args),
            K8sAction::Report(args) => report(args),
            K8sAction::Stop(args) => stop(args),
        }
    }

    fn run(args: K8sRunArgs) -> Result<u8, Error> {
        let (fault, duration) = match &args.file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| Error::ExperimentFile {
                        path: path.clone(),
                        source,
                    })?;
                let planned = crate::cli::experiment::parse_pod_fault(path, &text)?;
                (planned.words(&[]), planned.lifetime)
            }
            None => (args.fault.clone(), args.duration),
        };
        check_fault(&fault, duration)?;
        // A pod named is what a field selector on its name would select.
        let selector = match (&args.selector, &args.pod) {
            (_, Some(name)) => plan::name_selector(name),
            (Some(selector), None) => {
                selector::check(selector).map_err(|e| Error::K8sFault(e.to_string()))?
            }
            (None, None) => unreachable!("clap requires -l or --pod"),
        };
        // Blocked before the client's runtime starts threads, which inherit the mask: an
        // interrupt is then taken by sigtimedwait, never by a thread it would kill.
        let interrupts = Interrupts::block();
        let cluster = Cluster::connect(&args.home.chaos_namespace)?;
        cluster.check_opted_in(&args.namespace)?;
        let mut selected = match &args.pod {
            Some(name) => cluster.running_pod(&args.namespace, name)?,
            None => cluster.running_pods(&args.namespace, &selector)?,
        };
        if fault
            .first()
            .is_some_and(|command| plan::is_network_fault(command))
        {
            let (host, own): (Vec<TargetPod>, Vec<TargetPod>) =
                selected.into_iter().partition(|pod| pod.host_network);
            if let (Some(name), false) = (&args.pod, host.is_empty()) {
                return Err(Error::K8sFault(format!(
                    "pod {}/{name} uses its node's network (hostNetwork): a network fault there would be the node's",
                    args.namespace
                )));
            }
            if !host.is_empty() {
                let names: Vec<&str> = host.iter().map(|pod| pod.name.as_str()).collect();
                eprintln!(
                    "chaos k8s: left out {} (hostNetwork: a network fault there would be the node's)",
                    names.join(", ")
                );
            }
            selected = own;
        }
        let busy: Vec<String> = cluster
            .injectors(None)?
            .into_iter()
            .filter(|injector| !injector.finished())
            .map(|injector| injector.target_uid)
            .collect();
        let matched = selected.len();
        let seed = args.seed.unwrap_or_else(crate::rng::random_seed);
        let draw = plan::Draw {
            namespace: &args.namespace,
            selector: &selector,
            max: args.max_targets,
            // The one pod named is the user's choice, not a share of a set.
            allow_majority: args.allow_majority || args.pod.is_some(),
            seed,
            busy: &busy,
        };
        let targets = plan::pick(selected, &draw).map_err(|e| Error::K8sFault(e.to_string()))?;
        let spec = RunSpec {
            id: format!("{:08x}", crate::rng::random_seed() as u32),
            namespace: args.namespace.clone(),
            selector: selector.clone(),
            pod: args.pod.clone(),
            fault,
            duration,
            seed,
            image: args.image.clone(),
            targets,
        };
        if args.dry_run {
            return print_plan(&spec, matched, &cluster.home, args.json);
        }
        let requested_by = cluster.whoami();
        if interrupts.wait(Duration::ZERO) {
            eprintln!("chaos k8s: interrupted before the run was created: nothing was");
            return Ok(exit::OK);
        }
        cluster.create(&spec, &requested_by)?;
        eprintln!(
            "chaos k8s: run {} ({}) on {} of the {matched} running {} in {} for {}, requested by {requested_by} (seed {seed}){}",
            spec.id,
            spec.fault.join(" "),
            spec.targets.len(),
            spec.which_pods(),
            spec.namespace,
            humantime::format_duration(spec.duration),
            if args.detach {
                ": detached (`chaos k8s stop ID` ends it early)"
            } else {
                " (Ctrl-C ends it early)"
            }
        );
        for target in &spec.targets {
            eprintln!("  {}/{} on {}", target.namespace, target.name, target.node);
        }
        if args.detach {
            if args.json {
                println!("{}", serde_json::json!({ "run": spec.id }));
            } else {
                println!("{}", spec.id);
            }
            return Ok(exit::OK);
        }
        let stopped = wait(&cluster, &spec, &interrupts);
        // The spec in hand, not the record: another `chaos k8s stop --delete` may have taken it.
        let run = Run {
            spec,
            requested_by,
            created: String::new(),
        };
        let report = RunReport::gather(&cluster, &run)?;
        report.print(args.json);
        Ok(report.exit_code(stopped.as_deref()))
    }

    /// Waits until every injector of `spec` finished, drawing their states on a terminal. Ctrl-C,
    /// SIGTERM or SIGHUP ends them (a second one, a while later, stops the waiting), as does
    /// their being overdue (a pod that started late); an API call that fails is tried again.
    /// When the injectors were ended before their time, returns those that had not started
    /// then.
    fn wait(cluster: &Cluster, spec: &RunSpec, interrupts: &Interrupts) -> Option<Vec<String>> {
        let give_up = Instant::now() + spec.duration + plan::GRACE;
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut injectors: Vec<Injector> = Vec::new();
        let mut stop = false;
        let mut stopped: Option<(Instant, Vec<String>)> = None;
        loop {
            match cluster.injectors(Some(&spec.id)) {
                // None left: the run was deleted meanwhile (`chaos k8s stop --delete`).
                Ok(listed) if listed.is_empty() => break,
                Ok(listed) => injectors = listed,
                Err(err) => eprintln!("chaos k8s: {err}; trying again"),
            }
            if terminal {
                let count = |phase: &str| injectors.iter().filter(|i| i.phase == phase).count();
                eprint!(
                    "\r\x1b[2K[run {}] {} injectors: {} pending, {} running, {} succeeded, {} failed",
                    spec.id,
                    injectors.len(),
                    count(PENDING),
                    count(RUNNING),
                    count(SUCCEEDED),
                    count(FAILED)
                );
                let _ = std::io::stderr().flush();
            }
            if !injectors.is_empty() && injectors.iter().all(Injector::finished) {
                break;
            }
            let interrupted = interrupts.wait(Duration::from_secs(1));
            // Not the same Ctrl-C again: a terminal's reaches the process group, and a parent
            // (the monkey) may pass it on as SIGTERM.
            let again = |(at, _): &(Instant, Vec<String>)| at.elapsed() > SECOND_INTERRUPT;
            if interrupted && stopped.as_ref().is_some_and(again) {
                eprintln!(
                    "\nchaos k8s: not waiting for run {} any longer: `chaos k8s report {}` shows it",
                    spec.id, spec.id
                );
                break;
            }
            let overdue = Instant::now() > give_up;
            stop |= interrupted || overdue;
            if stop && stopped.is_none() {
                match cluster.stop(&injectors) {
                    Ok(_) => {
                        let pending = injectors
                            .iter()
                            .filter(|i| i.phase == PENDING)
                            .map(|i| i.name.clone())
                            .collect();
                        stopped = Some((Instant::now(), pending));
                    }
                    Err(err) => eprintln!("chaos k8s: {err}; trying again"),
                }
            }
            if Instant::now() > give_up + plan::GRACE {
                eprintln!(
                    "\nchaos k8s: run {}'s injectors did not end: `chaos k8s list` shows them",
                    spec.id
                );
                break;
            }
        }
        if terminal {
            eprint!("\r\x1b[2K");
        }
        stopped.map(|(_, pending)| pending)
    }

    /// How long after a first interrupt another one is the user's second (give up waiting).
    const SECOND_INTERRUPT: Duration = Duration::from_secs(2);

    /// Ctrl-C, SIGTERM and SIGHUP, blocked while a run waits and taken with sigtimedwait.
    struct Interrupts(libc::sigset_t);

    impl Interrupts {
        /// Called before any other thread starts, so that each inherits the mask.
        fn block() -> Self {
            crate::run::defer_interrupts();
            Interrupts(crate::run::interrupt_set())
        }

        /// Waits up to `timeout`; whether an interrupt came.
        fn wait(&self, timeout: Duration) -> bool {
            let timeout = libc::timespec {
                tv_sec: timeout.as_secs() as _,
                tv_nsec: timeout.subsec_nanos().into(),
            };
            // SAFETY: the set and the timeout live across the call; no siginfo is asked for.
            unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), &timeout) > 0 }
        }
    }

    /// `--dry-run`: what a run would create.
    fn print_plan(spec: &RunSpec, matched: usize, home: &str, json: bool) -> Result<u8, Error> {
        let injectors: Vec<Value> = spec
            .targets
            .iter()
            .enumerate()
            .map(|(index, target)| spec.injector(target, index, home, "(the record's UID)"))
            .collect();
        if json {
            let plan = serde_json::json!({
                "run": spec,
                "matched": matched,
                "record": spec.record(home, "(the caller)"),
                "injectors": injectors,
            });
            println!("{plan}");
        } else {
            eprintln!(
                "chaos k8s: dry run: would fault {} of the {matched} running {} in {} (seed {}), each with `chaos {} --pod-uid UID --for {}` in an injector pod of namespace {home}:",
                spec.targets.len(),
                spec.which_pods(),
                spec.namespace,
                spec.seed,
                spec.fault.join(" "),
                humantime::format_duration(spec.duration),
            );
            for (target, injector) in spec.targets.iter().zip(&injectors) {
                eprintln!(
                    "  {}/{} (uid {}) on {}: {}",
                    target.namespace,
                    target.name,
                    target.uid,
                    target.node,
                    injector["metadata"]["name"]
                );
            }
        }
        Ok(exit::OK)
    }

    /// A run as `chaos k8s report` and `chaos k8s run` print it.
    #[derive(Debug, Serialize)]
    struct RunReport {
        run: String,
        namespace: String,
        selector: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pod: Option<String>,
        /// The pods it was asked for, as a person reads it.
        #[serde(skip)]
        pods: String,
        fault: Vec<String>,
        duration_ms: u128,
        seed: u64,
        requested_by: String,
        created: String,
        targets: Vec<TargetReport>,
    }

    #[derive(Debug, Serialize)]
    struct TargetReport {
        /// `NAMESPACE/NAME`.
        pod: String,
        uid: String,
        node: String,
        injector: Option<String>,
        /// The injector's phase (Gone: no injector pod).
        phase: String,
        reason: Option<String>,
        /// The JSON report the injector printed.
        report: Option<Value>,
    }

    impl RunReport {
        fn gather(cluster: &Cluster, run: &Run) -> Result<Self, Error> {
            let injectors = cluster.injectors(Some(&run.spec.id))?;
            let mut targets = Vec::new();
            for (index, target) in run.spec.targets.iter().enumerate() {
                let name = plan::injector_name(&run.spec.id, index);
                let injector = injectors.iter().find(|i| i.name == name);
                let report = match injector {
                    Some(injector) if injector.finished() => cluster
                        .log(&injector.name)
                        .ok()
                        .as_deref()
                        .and_then(report_in),
                    _ => None,
                };
                targets.push(TargetReport::new(target, injector, report));
            }
            Ok(RunReport {
                run: run.spec.id.clone(),
                namespace: run.spec.namespace.clone(),
                selector: run.spec.selector.clone(),
                pod: run.spec.pod.clone(),
                pods: run.spec.which_pods(),
                fault: run.spec.fault.clone(),
                duration_ms: run.spec.duration.as_millis(),
                seed: run.spec.seed,
                requested_by: run.requested_by.clone(),
                created: run.created.clone(),
                targets,
            })
        }

        fn print(&self, json: bool) {
            let at = if self.created.is_empty() {
                String::new()
            } else {
                format!(" at {}", self.created)
            };
            let mut human = format!(
                "run {} ({}) for {} on {} in {}, requested by {}{at}:\n",
                self.run,
                self.fault.join(" "),
                humantime::format_duration(Duration::from_millis(self.duration_ms as u64)),
                self.pods,
                self.namespace,
                self.requested_by,
            );
            for target in &self.targets {
                human.push_str(&format!("  {}\n", target.summary()));
            }
            crate::report::print_final(
                &human,
                || serde_json::to_string(self).expect("a run report serializes"),
                json,
            );
        }

        /// 0 when every injector ended well: its fault's time was up, or, when chaos ended
        /// them on purpose (`stopped`: those not started then), kubelet ended it at its cut
        /// deadline and it reported, or it had not started.
        fn exit_code(&self, stopped: Option<&[String]>) -> u8 {
            let ended_well = |t: &TargetReport| {
                t.phase == SUCCEEDED
                    || stopped.is_some_and(|pending| {
                        t.reason.as_deref() == Some(DEADLINE_EXCEEDED)
                            && (t.report.is_some()
                                || t.injector.as_ref().is_some_and(|i| pending.contains(i)))
                    })
            };
            if self.targets.iter().all(ended_well) {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
    }

    impl TargetReport {
        fn new(target: &TargetPod, injector: Option<&Injector>, report: Option<Value>) -> Self {
            TargetReport {
                pod: format!("{}/{}", target.namespace, target.name),
                uid: target.uid.clone(),
                node: target.node.clone(),
                injector: injector.map(|i| i.name.clone()),
                phase: injector.map_or_else(|| "Gone".to_owned(), |i| i.phase.clone()),
                reason: injector.and_then(|i| i.reason.clone()),
                report,
            }
        }

        /// `shop/web-1 on node-1: Succeeded, injected 37 of 40 calls`.
        fn summary(&self) -> String {
            let mut line = format!("{} on {}: {}", self.pod, self.node, self.phase);
            if let Some(reason) = &self.reason {
                line.push_str(&format!(" ({reason})"));
            }
            match &self.report {
                Some(report) => {
                    let sum = |key: &str| {
                        report["faults"].as_array().map_or(0, |faults| {
                            faults.iter().filter_map(|f| f[key].as_u64()).sum::<u64>()
                        })
                    };
                    line.push_str(&format!(
                        ", injected {} of {} calls",
                        sum("injected"),
                        sum("matched")
                    ));
                }
                None => line.push_str(", no report"),
            }
            line
        }
    }

    fn list(args: K8sListArgs) -> Result<u8, Error> {
        let cluster = Cluster::connect(&args.home.chaos_namespace)?;
        let runs = cluster.runs()?;
        let injectors = cluster.injectors(None)?;
        #[derive(Serialize)]
        struct Listed<'a> {
            run: &'a str,
            namespace: &'a str,
            selector: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            pod: Option<&'a str>,
            #[serde(skip)]
            pods: String,
            fault: &'a [String],
            requested_by: &'a str,
            created: &'a str,
            injectors: Vec<&'a Injector>,
        }
        let listed: Vec<Listed<'_>> = runs
            .iter()
            .map(|run| Listed {
                run: &run.spec.id,
                namespace: &run.spec.namespace,
                selector: &run.spec.selector,
                pod: run.spec.pod.as_deref(),
                pods: run.spec.which_pods(),
                fault: &run.spec.fault,
                requested_by: &run.requested_by,
                created: &run.created,
                injectors: injectors.iter().filter(|i| i.run == run.spec.id).collect(),
            })
            .collect();
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&listed).expect("runs serialize")
            );
            return Ok(exit::OK);
        }
        if listed.is_empty() {
            println!("no runs in namespace {}", cluster.home);
        }
        for run in &listed {
            let states: Vec<String> = run
                .injectors
                .iter()
                .map(|i| format!("{} {}", i.target, i.phase))
                .collect();
            println!(
                "{}  {}  {} {}  {}  by {}  [{}]",
                run.run,
                run.created,
                run.namespace,
                run.pods,
                run.fault.join(" "),
                run.requested_by,
                states.join(", ")
            );
        }
        Ok(exit::OK)
    }

    fn report(args: K8sReportArgs) -> Result<u8, Error> {
        let cluster = Cluster::connect(&args.home.chaos_namespace)?;
        let run = cluster.run(&args.run)?;
        let report = RunReport::gather(&cluster, &run)?;
        report.print(args.json);
        Ok(exit::OK)
    }

    fn stop(args: K8sStopArgs) -> Result<u8, Error> {
        let cluster = Cluster::connect(&args.home.chaos_namespace)?;
        let runs = match &args.run {
            Some(id) => vec![cluster.run(id)?],
            None => cluster.runs()?,
        };
        let injectors = cluster.injectors(args.run.as_deref())?;
        let stopped = cluster.stop(&injectors)?;
        for name in &stopped {
            eprintln!("chaos k8s: ended injector {name}");
        }
        if args.delete {
            for run in &runs {
                cluster.delete(&run.spec.id)?;
                eprintln!("chaos k8s: deleted run {} and its injectors", run.spec.id);
            }
        }
        if stopped.is_empty() && !args.delete {
            eprintln!("chaos k8s: no injector was running");
        }
        Ok(exit::OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_checked_as_the_injector_runs_it() {
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let d = Duration::from_secs(30);
        assert!(check_fault(&words("fail --op connect --errno ECONNREFUSED"), d).is_ok());
        assert!(check_fault(&words("net drop --probability 0.5"), d).is_ok());
        assert!(
            check_fault(
                &words("fail --op connect --errno EIO --container-name app"),
                d
            )
            .is_ok()
        );
        for (fault, says) in [
            ("fail --op connect --pid 1", "the fault names --pid"),
            ("fail --op connect --for=10s", "the fault names --for"),
            ("fail --op connekt", "is not one chaos runs on a pod"),
            (
                "list",
                "'list' is not a fault command: expected one of fail, signal",
            ),
            ("fail --op connect --errno EWHAT", "EWHAT"),
        ] {
            let err = check_fault(&words(fault), d).unwrap_err().to_string();
            assert!(err.contains(says), "{fault}: {err}");
        }
    }
}

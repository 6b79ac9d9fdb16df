"""Actions (and rollbacks: in Chaos Toolkit a rollback is an action) of the chaos extension."""
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration

from chaosbpf import cli

__all__ = [
    "start_fault",
    "stop_run",
    "stop_started_runs",
    "stop_all",
    "start_k8s_fault",
    "stop_k8s_run",
    "stop_started_k8s_runs",
]

# Options the extension sets itself.
_OWN = ("--for", "--detach", "--json")


def start_fault(
    command: List[str],
    duration: str,
    timeout: float = 60,
    configuration: Configuration = None,
) -> Dict[str, Any]:
    """Start a detached fault: `chaos COMMAND... --for DURATION --detach --json`.

    `command` is the fault's command line without the binary, e.g.
    ["fail", "--pid", "4242", "--op", "connect", "--errno", "ECONNREFUSED"] or
    ["net", "drop", "--iface", "veth1", "--probability", "0.1"]. Only `fail`, `signal` and
    `net drop|duplicate|corrupt|delay|limit|dns` can be detached (`pause`, `net reset` cannot).
    Returns the run chaos printed: {"id", "targets", "faults", "deadline_ns"}. The in-kernel
    deadline ends the fault even if nothing else runs; stop_started_runs ends it sooner.
    """
    command = _checked(command)
    proc = cli.run(configuration, [*command, "--for", str(duration), "--detach", "--json"],
                   timeout)
    run = cli.json_stdout(proc)
    cli.remember(run["id"])
    return run


def _checked(command: List[str]) -> List[str]:
    """The fault's command line as strings, without the options the extension sets."""
    if isinstance(command, str) or not command:
        raise ActivityFailed("command must be a non-empty list of strings")
    # "${pid}" substitutes to the configuration value's own type (an int from an env entry
    # with env_var_type int), so numbers are accepted and turned into strings.
    if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in command):
        raise ActivityFailed(f"command must be a list of strings: {command!r}")
    command = [str(a) for a in command]
    own = [a for a in command if a.split("=", 1)[0] in _OWN]
    if own:
        raise ActivityFailed(f"command must not set {', '.join(own)}: the extension does")
    return command


def stop_run(run_id: str, configuration: Configuration = None) -> Dict[str, Any]:
    """End one detached run now (`chaos stop ID`).

    Idempotent: a run that already ended (its deadline passed, or it was stopped) is not an
    error, since chaos unpins expired runs itself and then answers "no detached run".
    """
    proc = cli.run(configuration, ["stop", run_id])
    cli.forget(run_id)
    if proc.returncode == 0:
        return {"id": run_id, "stopped": True}
    if proc.returncode == 2 and "no detached run" in proc.stderr:
        return {"id": run_id, "stopped": False, "reason": "not running (ended already)"}
    raise cli.failed(proc)


def stop_started_runs(configuration: Configuration = None) -> List[Dict[str, Any]]:
    """End every run this experiment started (through start_fault) that is still running."""
    return [stop_run(run_id, configuration) for run_id in cli.started()]


def stop_all(configuration: Configuration = None) -> Dict[str, Any]:
    """End EVERY detached run on the machine (`chaos stop --all`), this experiment's or not."""
    proc = cli.run(configuration, ["stop", "--all"])
    if proc.returncode != 0:
        raise cli.failed(proc)
    stopped = [line.split()[-1] for line in proc.stderr.splitlines()
               if line.startswith("chaos: stopped ")]
    for run_id in stopped:
        cli.forget(run_id)
    return {"stopped": stopped}


def start_k8s_fault(
    namespace: str,
    selector: str,
    command: List[str],
    duration: str,
    max_targets: str = "1",
    allow_majority: bool = False,
    seed: int = None,
    chaos_namespace: str = "chaos",
    timeout: float = 60,
    configuration: Configuration = None,
) -> Dict[str, Any]:
    """Start a fault on the pods of `namespace` that `selector` picks, through the Kubernetes
    API: `chaos k8s run -n NAMESPACE -l SELECTOR --for DURATION --detach --json -- COMMAND...`
    (one injector pod per target, on its node; see README, "Faults on pods by selector").

    `command` is the fault without a target, e.g. ["fail", "--op", "connect", "--errno",
    "ECONNREFUSED"]. At most `max_targets` pods ("2" or "25%"), more than half of them only
    with `allow_majority`. The namespace must carry the annotation chaos/allow-faults=true.
    Returns {"run": ID}. Each injector's deadline ends its fault even if nothing else runs;
    stop_started_k8s_runs ends them sooner.
    """
    args = ["k8s", "run", "-n", namespace, "-l", selector, "--for", str(duration)]
    args += ["--max-targets", str(max_targets), "--chaos-namespace", chaos_namespace]
    if allow_majority:
        args.append("--allow-majority")
    if seed is not None:
        args += ["--seed", str(seed)]
    args += ["--detach", "--json", "--", *_checked(command)]
    run = cli.json_stdout(cli.run(configuration, args, timeout))
    cli.remember(run["run"], "k8s", chaos_namespace)
    return run


def stop_k8s_run(
    run_id: str, chaos_namespace: str = "chaos", configuration: Configuration = None
) -> Dict[str, Any]:
    """End a `chaos k8s` run's injectors now (`chaos k8s stop ID`): kubelet stops each (SIGTERM)
    and keeps its log for the report. Idempotent: a run already gone is not an error."""
    proc = cli.run(configuration, ["k8s", "stop", run_id, "--chaos-namespace", chaos_namespace])
    if proc.returncode == 0:
        cli.forget(run_id, "k8s")
        return {"run": run_id, "stopped": True}
    if proc.returncode == 2 and "no run" in proc.stderr:
        cli.forget(run_id, "k8s")
        return {"run": run_id, "stopped": False, "reason": "no such run (deleted already)"}
    # Still remembered: the safeguard tries again.
    raise cli.failed(proc)


def stop_started_k8s_runs(
    chaos_namespace: str = "chaos", configuration: Configuration = None
) -> List[Dict[str, Any]]:
    """End every `chaos k8s` run this experiment started (through start_k8s_fault), each in the
    namespace it was started in (`chaos_namespace` is for runs the extension did not note)."""
    return [stop_k8s_run(run_id, cli.home(run_id, chaos_namespace), configuration)
            for run_id in cli.started("k8s")]

"""Probes of the chaos extension."""
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration

from chaosbpf import cli

__all__ = ["list_runs", "run_is_active", "run_counters", "started_runs", "k8s_run_report"]


def list_runs(configuration: Configuration = None) -> List[Dict[str, Any]]:
    """The detached runs (`chaos list --json`): id, targets, faults, deadline_ns,
    remaining_s, matched, injected."""
    runs = cli.json_stdout(cli.run(configuration, ["list", "--json"]))
    if not isinstance(runs, list):
        raise ActivityFailed(f"chaos list --json printed no array: {runs!r}")
    return runs


def _run_id(run_id: str, kind: str = "local") -> str:
    """The run named, or the last run of this kind this experiment started."""
    if run_id:
        return run_id
    mine = cli.started(kind)
    if not mine:
        raise ActivityFailed("no run_id given and this experiment started no run")
    return mine[-1]


def run_is_active(run_id: str = "", configuration: Configuration = None) -> bool:
    """Whether a detached run is still listed. Without run_id: the last run this experiment
    started (ActivityFailed if it started none)."""
    run_id = _run_id(run_id)
    return any(run.get("id") == run_id for run in list_runs(configuration))


def run_counters(run_id: str = "", configuration: Configuration = None) -> Dict[str, int]:
    """What a live detached run has done so far: {"matched", "injected"} (calls or packets
    that passed its filters, and those it acted on). Without run_id: the last run this
    experiment started. ActivityFailed when the run is not listed (ended or stopped)."""
    run_id = _run_id(run_id)
    for run in list_runs(configuration):
        if run.get("id") == run_id:
            return {"matched": run.get("matched", 0), "injected": run.get("injected", 0)}
    raise ActivityFailed(f"no detached run {run_id}: it ended or was stopped")


def started_runs() -> List[str]:
    """The IDs of the runs this experiment started and has not stopped."""
    return cli.started()


def k8s_run_report(
    run_id: str = "", chaos_namespace: str = "chaos", configuration: Configuration = None
) -> Dict[str, Any]:
    """A `chaos k8s` run as `chaos k8s report ID --json` gives it: who started it, and for each
    target pod its node, its injector's phase and the JSON report the injector printed once it
    ended. Without run_id: the last k8s run this experiment started."""
    run_id = _run_id(run_id, "k8s")
    args = ["k8s", "report", run_id, "--json", "--chaos-namespace", chaos_namespace]
    return cli.json_stdout(cli.run(configuration, args))

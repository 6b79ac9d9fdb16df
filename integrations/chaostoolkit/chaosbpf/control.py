"""A Chaos Toolkit control that stops the runs an experiment started, whatever happens.

chaoslib plays rollbacks on Ctrl-C or SIGTERM only under the rollback strategy "always"
(the default strategy skips them when the run is "interrupted" or "failed"), but it always
calls the controls' cleanup_control (run.py: `finally: cleanup_controls(experiment)`).
Declare it at the top of the experiment:

    "controls": [{"name": "chaos-safeguard",
                  "provider": {"type": "python", "module": "chaosbpf.control"}}]

It also publishes the ID of the last run start_fault started as the configuration key
`chaos_run_id` (start_k8s_fault's: `chaos_k8s_run_id`), so later activities can say
"run_id": "${chaos_run_id}". `chaos k8s` runs are stopped in the chaos namespace they were
started in.
"""
import logging
import signal
import threading
from typing import Any, Dict, Optional

from chaoslib.exceptions import InterruptExecution

from chaosbpf import cli

logger = logging.getLogger("chaostoolkit")

_configuration: Dict[str, Any] = {}
_previous_sighup = None
_previous_sigint = None


def _hangup(signum, frame):
    # chaoslib handles SIGTERM and SIGUSR1/2 but not SIGHUP (a closed SSH session), which
    # would kill the toolkit with no journal, no rollback and no cleanup. Treat it as SIGUSR1
    # does (chaoslib/exit.py): SystemExit(20), rollbacks as the strategy says.
    logger.warning("Caught SIGHUP, interrupting the experiment now")
    raise SystemExit(20)


def _interrupt(signum, frame):
    # Python's own KeyboardInterrupt reaches chaoslib only once the activity in progress ends
    # (measured: a 120 s pause ran to its end after Ctrl-C): end the run at once, as
    # chaoslib's SIGTERM handler does.
    logger.warning("Caught SIGINT, interrupting the experiment now")
    raise InterruptExecution("SIGINT signal received")


def configure_control(configuration: Optional[Dict[str, Any]] = None, **kwargs) -> None:
    global _previous_sighup, _previous_sigint
    # cleanup_control() gets no arguments: keep what finding the binary needs.
    _configuration.clear()
    _configuration.update(configuration or {})
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
            _previous_sighup = signal.signal(signal.SIGHUP, _hangup)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            _previous_sigint = signal.signal(signal.SIGINT, _interrupt)


def after_activity_control(context: Dict[str, Any], state: Dict[str, Any] = None,
                           configuration: Optional[Dict[str, Any]] = None, **kwargs) -> None:
    provider = context.get("provider", {})
    if (provider.get("module") != "chaosbpf.actions" or not state
            or state.get("status") != "succeeded" or configuration is None):
        return
    # The live configuration mapping (activities get a copy): later substitutions see it.
    if provider.get("func") == "start_fault":
        configuration["chaos_run_id"] = state["output"]["id"]
    elif provider.get("func") == "start_k8s_fault":
        configuration["chaos_k8s_run_id"] = state["output"]["run"]


def cleanup_control() -> None:
    from chaosbpf.actions import stop_k8s_run, stop_run

    global _previous_sighup, _previous_sigint
    if threading.current_thread() is threading.main_thread():
        if _previous_sighup is not None:
            signal.signal(signal.SIGHUP, _previous_sighup)
            _previous_sighup = None
        if _previous_sigint is not None:
            signal.signal(signal.SIGINT, _previous_sigint)
            _previous_sigint = None

    for run_id in cli.started():
        try:
            result = stop_run(run_id, _configuration)
            logger.info(f"chaos safeguard: {result}")
        except Exception as err:  # a cleanup must not hide the run's own outcome
            logger.error(f"chaos safeguard could not stop run {run_id}: {err}")
    # Each in the namespace it was started in; else the configuration key chaos_namespace's.
    chaos_namespace = _configuration.get("chaos_namespace", "chaos")
    for run_id in cli.started("k8s"):
        try:
            result = stop_k8s_run(run_id, cli.home(run_id, chaos_namespace), _configuration)
            logger.info(f"chaos safeguard: {result}")
        except Exception as err:
            logger.error(f"chaos safeguard could not stop k8s run {run_id}: {err}")

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
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, Optional

from chaoslib.activity import execute_activity

from chaosbpf import cli

logger = logging.getLogger("chaostoolkit")

_configuration: Dict[str, Any] = {}
# The handlers replaced, per signal, put back by cleanup_control.
_previous: Dict[int, Any] = {}
# SIGTERM (a CI job cancelled), SIGINT (Ctrl-C), SIGHUP (a closed SSH session).
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Set in the main thread only (signal handlers and controls run there).
_interrupted = False
_ending = False


def _in_pause(frame) -> bool:
    """Whether the main thread is sleeping an activity's pause (chaoslib sleeps it right in
    execute_activity)."""
    return frame is not None and frame.f_code is execute_activity.__code__


def _stop(signum, frame):
    # SystemExit(20) is what chaoslib raises on SIGUSR1 (exit.py): the run ends "interrupted",
    # rollbacks played as the strategy says. Not chaoslib's InterruptExecution for SIGTERM, nor
    # Python's KeyboardInterrupt for SIGINT: InterruptExecution is an Exception, swallowed
    # wherever the signal lands in an `except Exception` (a logging handler's emit, chaoslib's
    # event handlers, its Python provider, which turns it into a failed activity: the run went
    # on); KeyboardInterrupt reaches chaoslib only once the activity in progress ends. SIGHUP
    # would kill the toolkit with no journal, rollback or cleanup.
    global _interrupted
    if _ending:
        logger.warning(f"Caught {signal.Signals(signum).name}: the faults are being stopped")
        return
    if _interrupted:
        # Raised only into a pause: elsewhere the first interruption is on its way up, and a
        # second one could land in chaoslib's own handling of it.
        if _in_pause(frame):
            raise SystemExit(20)
        return
    _interrupted = True
    logger.warning(f"Caught {signal.Signals(signum).name}, interrupting the experiment now")
    threading.Thread(target=_nudge, args=(signum,), daemon=True).start()
    raise SystemExit(20)


def _nudge(signum: int) -> None:
    """chaoslib sleeps an activity's pauses in a `finally`: an interruption raised in the
    activity waits for its "after" pause. Signal again while the main thread sleeps one."""
    main = threading.main_thread()
    while not _ending and main.is_alive():
        time.sleep(0.2)
        if _in_pause(sys._current_frames().get(main.ident)):
            os.kill(os.getpid(), signum)


def configure_control(configuration: Optional[Dict[str, Any]] = None, **kwargs) -> None:
    # cleanup_control() gets no arguments: keep what finding the binary needs.
    _configuration.clear()
    _configuration.update(configuration or {})
    if threading.current_thread() is threading.main_thread():
        for signum in _STOP_SIGNALS:
            if signum not in _previous:
                _previous[signum] = signal.signal(signum, _stop)


def before_rollback_control(**kwargs) -> None:
    global _ending
    _ending = True


def after_experiment_control(**kwargs) -> None:
    global _ending
    _ending = True


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

    global _ending
    _ending = True
    if threading.current_thread() is threading.main_thread():
        for signum, previous in list(_previous.items()):
            signal.signal(signum, previous)
            del _previous[signum]

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

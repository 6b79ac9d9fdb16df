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


class _Run:
    """Where one experiment run is, for the stop signals: changed in the main thread, where
    signal handlers and controls run (the nudger only reads it, and flags its own signal)."""

    def __init__(self) -> None:
        self.interrupted = False
        # The frame of the activity the first signal hit (chaoslib's execute_activity), whose
        # pause must not be slept in full.
        self.pause = None
        self.nudger: Optional[threading.Thread] = None
        # A signal the nudger sent, not yet handled.
        self.nudged = False
        self.rolling_back = False
        # The cleanup stops the faults from here on.
        self.ending = False


_run = _Run()


def _activity_frame(frame):
    """The innermost execute_activity frame on `frame`'s stack, if any."""
    while frame is not None and frame.f_code is not execute_activity.__code__:
        frame = frame.f_back
    return frame


def _stop(signum, frame):
    # SystemExit(20) is what chaoslib raises on SIGUSR1 (exit.py): the run ends "interrupted",
    # rollbacks played as the strategy says. Not chaoslib's InterruptExecution for SIGTERM, nor
    # Python's KeyboardInterrupt for SIGINT: InterruptExecution is an Exception, swallowed
    # wherever the signal lands in an `except Exception` (a logging handler's emit, chaoslib's
    # event handlers, its Python provider, which turns it into a failed activity: the run went
    # on); KeyboardInterrupt reaches chaoslib only once the activity in progress ends. SIGHUP
    # would kill the toolkit with no journal, rollback or cleanup.
    run, name = _run, signal.Signals(signum).name
    if run.nudged:
        run.nudged = False
        if frame is run.pause and not (run.rolling_back or run.ending):
            raise SystemExit(20)
        return
    if run.ending:
        logger.warning(f"Caught {name}: the faults are being stopped")
        return
    if run.rolling_back:
        # A hung rollback can be cut short: chaoslib skips the rest, the cleanup stops the
        # faults.
        logger.warning(f"Caught {name}, ending the rollbacks; the cleanup stops the faults")
        raise SystemExit(20)
    if run.interrupted:
        # Elsewhere than in the pause, the first interruption is on its way up, and a second
        # could land in chaoslib's own handling of it.
        if frame is run.pause:
            raise SystemExit(20)
        return
    run.interrupted = True
    logger.warning(f"Caught {name}, interrupting the experiment now")
    run.pause = _activity_frame(frame)
    if run.pause is not None:
        run.nudger = threading.Thread(target=_nudge, args=(run, signum), daemon=True)
        run.nudger.start()
    raise SystemExit(20)


def _nudge(run: _Run, signum: int) -> None:
    """chaoslib sleeps an activity's pauses in a `finally`: an interruption raised in the
    activity waits for its "after" pause. Signal again while the main thread sleeps it."""
    main = threading.main_thread()
    while not (run.rolling_back or run.ending) and main.is_alive():
        time.sleep(0.2)
        if sys._current_frames().get(main.ident) is run.pause:
            run.nudged = True
            os.kill(os.getpid(), signum)


def configure_control(configuration: Optional[Dict[str, Any]] = None, **kwargs) -> None:
    global _run
    # cleanup_control() gets no arguments: keep what finding the binary needs.
    _configuration.clear()
    _configuration.update(configuration or {})
    _run = _Run()
    if threading.current_thread() is threading.main_thread():
        for signum in _STOP_SIGNALS:
            # An ignored signal stays ignored (nohup, a background job).
            if signum not in _previous and signal.getsignal(signum) is not signal.SIG_IGN:
                _previous[signum] = signal.signal(signum, _stop)


def before_rollback_control(**kwargs) -> None:
    _run.rolling_back = True


def after_experiment_control(**kwargs) -> None:
    _run.ending = True


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

    run = _run
    run.ending = True
    try:
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
    finally:
        # Only now: a signal during the stops above is logged and ignored.
        if run.nudger is not None:
            run.nudger.join()
        if threading.current_thread() is threading.main_thread():
            for signum, previous in list(_previous.items()):
                signal.signal(signum, previous)
                del _previous[signum]

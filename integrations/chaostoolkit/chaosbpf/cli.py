"""Running the `chaos` binary (internal to the extension; not exported as activities).

Chaos Toolkit installs a console script also named `chaos`, so the binary is never looked up
in PATH: its absolute path comes from the experiment's configuration key `chaos_bin` (a plain
string, or `{"type": "env", "key": "CHAOS_BIN"}`), else from the CHAOS_BIN environment variable.
"""
import json
import os
import subprocess
import threading
from typing import Any, Dict, List, Optional

from chaoslib.exceptions import ActivityFailed, InterruptExecution

CONFIG_KEY = "chaos_bin"
ENV_KEY = "CHAOS_BIN"

# Runs started by this toolkit process (chaoslib gives an activity no way to read an earlier
# activity's output, so probes/rollbacks without an explicit run_id use this). One process per
# `chaos run`, so module state is per experiment run.
# Kept apart by kind: "local" runs (`chaos list`/`chaos stop`) and "k8s" runs (`chaos k8s`).
_lock = threading.Lock()
_started: Dict[str, List[str]] = {"local": [], "k8s": []}
# A k8s run's chaos namespace, where it must be stopped.
_homes: Dict[str, str] = {}


def remember(run_id: str, kind: str = "local", home: Optional[str] = None) -> None:
    with _lock:
        if run_id not in _started[kind]:
            _started[kind].append(run_id)
        if home is not None:
            _homes[run_id] = home


def home(run_id: str, default: str) -> str:
    """The chaos namespace a k8s run was started in."""
    with _lock:
        return _homes.get(run_id, default)


def started(kind: str = "local") -> List[str]:
    with _lock:
        return list(_started[kind])


def forget(run_id: str, kind: str = "local") -> None:
    with _lock:
        if run_id in _started[kind]:
            _started[kind].remove(run_id)


def chaos_bin(configuration: Optional[Dict[str, Any]]) -> str:
    path = (configuration or {}).get(CONFIG_KEY) or os.environ.get(ENV_KEY)
    if not path:
        raise ActivityFailed(
            f"no path to the chaos binary: set the configuration key '{CONFIG_KEY}' "
            f"(or the {ENV_KEY} environment variable) to its absolute path"
        )
    if not os.path.isabs(path):
        # Never PATH: `chaos` there is most likely the Chaos Toolkit itself.
        raise ActivityFailed(f"{CONFIG_KEY} must be an absolute path, not '{path}'")
    if not os.access(path, os.X_OK):
        raise ActivityFailed(f"{CONFIG_KEY} '{path}' is not an executable file")
    return path


def run(
    configuration: Optional[Dict[str, Any]],
    args: List[str],
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """Runs `chaos ARGS`, returns the completed process (any exit code).

    The child gets its own session, so a terminal's Ctrl-C (sent to the whole foreground
    process group) reaches only the toolkit; and if the toolkit is interrupted while the
    child runs, the child is not killed mid-way (subprocess.run would SIGKILL it): it gets
    a few seconds to finish, so a run it started is announced and can be stopped, and the
    interruption goes on right after.
    """
    argv = [chaos_bin(configuration), *args]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise ActivityFailed(f"`{' '.join(argv)}` did not end within {timeout} s")
    except (InterruptExecution, KeyboardInterrupt, SystemExit) as exc:
        try:
            out, err = proc.communicate(timeout=10)
        except BaseException:
            proc.kill()
            proc.wait()
            raise exc
        _remember_from(out, args)
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _remember_from(stdout: str, args: List[str]) -> None:
    """After an interrupted start: note the run it printed, so cleanup can stop it."""
    if "--detach" not in args:
        return
    try:
        if args[0] == "k8s":
            namespace = args[args.index("--chaos-namespace") + 1]
            remember(json.loads(stdout)["run"], "k8s", namespace)
        else:
            remember(json.loads(stdout)["id"])
    except (ValueError, KeyError, TypeError, IndexError):
        pass


def failed(proc: subprocess.CompletedProcess) -> ActivityFailed:
    cmd = " ".join(proc.args)
    stderr = (proc.stderr or "").strip()
    return ActivityFailed(f"`{cmd}` exited with {proc.returncode}: {stderr}")


def json_stdout(proc: subprocess.CompletedProcess) -> Any:
    if proc.returncode != 0:
        raise failed(proc)
    try:
        return json.loads(proc.stdout)
    except ValueError as err:
        raise ActivityFailed(
            f"`{' '.join(proc.args)}` printed no JSON ({err}): {proc.stdout[:200]!r}"
        )

"""The queue worker: ``python -m segcore.training.worker WORKSPACE``.

A singleton per workspace (an exclusive ``fcntl`` lock on
``.queue/worker.lock``). It starts queued runs in queue order, each in its own
process (``python -m segcore.training.run RUN_DIR``), keeps at most
``max_concurrent_runs`` training at once (counting every live run in the
workspace, also those of a worker that died), sends SIGTERM to a run that
ignores a stop request for ``STOP_GRACE_S``, records how a training process
ended if it could not say so itself (killed: interrupted; crashed: failed),
and exits when the queue is empty.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from segcore.runs import RunFolder, iso, iter_run_folders, queued_runs
from segcore.training.launcher import STOP_GRACE_S, lock_path, max_concurrent_runs, spawn_module
from segcore.workspace import Workspace, get_workspace

POLL_S = 0.3


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _log(message: str) -> None:
    print(f"{iso()} worker {os.getpid()}: {message}", flush=True)


def _start(ws: Workspace, run: RunFolder) -> subprocess.Popen | None:
    now = time.time()
    # Claim the run first, so that no other worker (or a second look) starts it twice.
    claimed = run.transition(("queued",), state="running", pid=None, host=socket.gethostname(), heartbeat=now, message="starting the training process")
    if claimed is None:
        return None
    proc = spawn_module("segcore.training.run", str(run.path), ws, run.path / "process.log")
    with run._lock():
        status = run.read_status()
        if status.get("pid") is None and status.get("state") == "running":
            status["pid"] = proc.pid
            run.write_status(status)
    _log(f"started {run.run_id} as pid {proc.pid}")
    return proc


def _reap(run: RunFolder, proc: subprocess.Popen) -> None:
    code = proc.returncode
    status = run.read_status()
    if status.get("state") != "running" or status.get("pid") not in (proc.pid, None):
        _log(f"{run.run_id} ended ({status.get('state')}, exit code {code})")
        return
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        run.update_status(state="interrupted", message=f"interrupted: the training process was killed ({name}); resume continues from the last checkpoint", finished_at=iso())
    else:
        run.update_status(state="failed", message=f"the training process exited with code {code} without a result; see train.log and process.log", finished_at=iso())
    _log(f"{run.run_id} ended abnormally (exit code {code})")


def _live_runs(ws: Workspace) -> int:
    count = 0
    for run in iter_run_folders(ws):
        try:
            if run.true_status().get("state") == "running":
                count += 1
        except ValueError:
            continue
    return count


def serve(ws: Workspace) -> int:
    """Run the queue until it is empty; returns 0 (also when another worker already runs it)."""
    handle = open(lock_path(ws), "a+")
    if not _try_lock(handle):
        return 0
    _log("serving the queue")
    children: dict[str, tuple[RunFolder, subprocess.Popen]] = {}
    termed: set[str] = set()
    while True:
        for run_id, (run, proc) in list(children.items()):
            if proc.poll() is not None:
                _reap(run, proc)
                del children[run_id]
                termed.discard(run_id)
            elif run_id not in termed and run.stop_path.exists() and time.time() - run.stop_path.stat().st_mtime > STOP_GRACE_S:
                proc.send_signal(signal.SIGTERM)  # the run did not stop at a batch end in time
                termed.add(run_id)
        try:
            limit = max_concurrent_runs(ws)
        except ValueError as exc:
            _log(f"{exc}; using 1")
            limit = 1
        waiting = queued_runs(ws)
        if waiting and _live_runs(ws) < limit:
            run = waiting[0]
            proc = _start(ws, run)
            if proc is not None:
                children[run.run_id] = (run, proc)
            continue
        if not children and not waiting:
            # Release before the last look: a launch that queued after this look finds the lock free.
            fcntl.flock(handle, fcntl.LOCK_UN)
            if not queued_runs(ws) or not _try_lock(handle):
                _log("queue empty, exiting")
                handle.close()
                return 0
            continue
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = argv[0] if argv else None
    ws = get_workspace(Path(root) if root else None)
    return serve(ws)


if __name__ == "__main__":
    raise SystemExit(main())

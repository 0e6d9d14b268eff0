"""The queue worker: ``python -m segcore.queue.worker WORKSPACE``.

A singleton per workspace (an exclusive ``fcntl`` lock on
``.queue/worker.lock``). It starts queued runs in queue order on the engine of
the server settings (``engine`` in ``server.json``, ``$SEGCORE_ENGINE``):

- ``local`` (``LocalEngine``): each run in its own process on this machine
  (``python -m segcore.queue.process RUN_DIR``), at most
  ``max_concurrent_runs`` at once (counting every live run in the workspace,
  also those of a worker that died; by default one per NVIDIA GPU, 1 without
  one), each pinned to its free GPUs with ``CUDA_VISIBLE_DEVICES`` before its
  backend loads; the run's ``gpus`` in ``status.json`` say which it holds.
- ``ray`` (``segcore.queue.ray_engine.RayEngine``): each run a Ray job.

It sends SIGTERM to a run that ignores a stop request for ``STOP_GRACE_S``
(``stop_job`` on Ray), records how a training process ended if it could not
say so itself (killed: interrupted; crashed: failed), and exits when the
queue is empty and no run it started is left.

No run folder can stop it: a queued run whose ``status.json`` or
``config.json`` is damaged is skipped, with the reason in the worker's log
(once per run and reason), and an error while handling one run is logged and
the worker goes on with the others. Each training process is started with the
run's own ``train.backend`` as ``KERAS_BACKEND``, whatever this worker's
environment says. The lock file holds the worker's pid.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from segcore.runs import DAMAGED, RunFolder, iso, iter_run_folders, queued_runs
from segcore.training.device import nvidia_gpus
from segcore.queue.launcher import STOP_GRACE_S, lock_path, max_concurrent_runs, spawn_module
from segcore.workspace import Workspace, get_workspace

POLL_S = 0.3
MAX_FAILED_LOOPS = 100  # consecutive loops that raised: the workspace is gone or broken, give up


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _log(message: str) -> None:
    print(f"{iso()} worker {os.getpid()}: {message}", flush=True)


def _start(ws: Workspace, run: RunFolder, gpus: list[int] | None = None) -> subprocess.Popen | None:
    now = time.time()
    backend = run.read_config().train.backend
    gpus = list(gpus or [])
    # Claim the run first, so that no other worker (or a second look) starts it twice.
    claimed = run.transition(("queued",), state="running", pid=None, host=socket.gethostname(), heartbeat=now,
                             engine="local", job=None, gpus=gpus, devices=None, message="starting the training process")
    if claimed is None:
        return None
    env = _run_env(backend)
    if gpus:  # pinned before the backend loads: the process sees its GPUs only
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    proc = spawn_module("segcore.queue.process", str(run.path), ws, run.path / "process.log", env=env)
    with run._lock():
        status = run.read_status()
        if status.get("pid") is None and status.get("state") == "running":
            status["pid"] = proc.pid
            run.write_status(status)
    _log(f"started {run.run_id} as pid {proc.pid}" + (f" on the {backend} backend" if backend != "auto" else "")
         + (f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""))
    return proc


def _run_env(backend: str) -> dict[str, str]:
    """What a training process gets on top of the worker's environment: the run's own backend."""
    return {} if backend == "auto" else {"KERAS_BACKEND": backend}


def _reap(run: RunFolder, proc: subprocess.Popen) -> None:
    """Record how a training process ended when it could not say so itself (killed, crashed).

    Only while ``status.json`` still says this process runs, checked and written under
    one lock: a run resumed (queued again) since the process died is left as it is.
    """
    code = proc.returncode
    seen: dict[str, Any] = {}

    def still_ours(status: dict[str, Any] | None) -> bool:
        seen["status"] = status
        if status is None:  # unreadable: a process that exited 0 wrote its result, someone damaged it since
            return code != 0
        return status.get("state") == "running" and status.get("pid") in (proc.pid, None)

    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        fields = dict(state="interrupted", message=f"interrupted: the training process was killed ({name}); resume continues from the last checkpoint")
    else:
        fields = dict(state="failed", message=f"the training process exited with code {code} without a result; see train.log and process.log")
    if run.update_status_if(still_ours, finished_at=iso(), **fields) is None:
        status = seen.get("status")
        _log(f"{run.run_id} ended (exit code 0) but its status.json is damaged; it is listed as damaged" if status is None
             else f"{run.run_id} ended ({status.get('state')}, exit code {code})")
        return
    _log(f"{run.run_id} ended abnormally (exit code {code})")


def _live_runs(ws: Workspace) -> tuple[int, set[int]]:
    """How many runs of the workspace are training now, and the GPU numbers they hold (their ``gpus``)."""
    count, gpus = 0, set()
    for run in iter_run_folders(ws):
        try:
            status = run.true_status()
        except (ValueError, OSError):
            continue
        if status.get("state") == "running" or (status.get("state") == DAMAGED and status.get("process_alive")):
            count += 1
            held = status.get("gpus")
            if isinstance(held, list):
                gpus.update(g for g in held if isinstance(g, int) and not isinstance(g, bool))
    return count, gpus


def gpu_plan(wanted: int | str, total: int, taken: set[int]) -> list[int] | None:
    """The GPUs a run asking for ``wanted`` (``train.devices``) gets: the lowest free numbers, or None to wait.

    Returns [] on a machine without GPUs (``total`` 0): the run is not pinned.

    Raises:
        ValueError: the run asks for more GPUs than the machine has.
    """
    if total == 0:
        return []
    count = total if wanted == "all" else int(wanted)
    if count > total:
        raise ValueError(f"setting train.devices is {wanted}; this machine has {total} GPU(s)")
    free = [g for g in range(total) if g not in taken]
    return free[:count] if len(free) >= count else None


class LocalEngine:
    """Training processes on this machine: at most ``limit`` at once, each pinned to free GPUs where there are GPUs."""

    name = "local"

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.children: dict[str, tuple[RunFolder, subprocess.Popen]] = {}
        self.termed: set[str] = set()

    def busy(self) -> bool:
        return bool(self.children)

    def poll(self, grace: float) -> None:
        for run_id, (run, proc) in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[run_id]
                self.termed.discard(run_id)
                _reap(run, proc)
            elif run_id not in self.termed and run.stop_path.exists() and time.time() - run.stop_path.stat().st_mtime > grace:
                proc.send_signal(signal.SIGTERM)  # the run did not stop at a batch end in time
                self.termed.add(run_id)

    def try_start(self, run: RunFolder) -> bool:
        """Start ``run`` if a slot (and its GPUs) is free; False to wait. Raises for a run that can never start here."""
        gpus = nvidia_gpus()
        try:
            limit = max_concurrent_runs(self.ws) or (len(gpus) or 1)
        except ValueError as exc:
            _log(f"{exc}; using 1")
            limit = 1
        live, taken = _live_runs(self.ws)
        if live >= limit:
            return False
        plan = gpu_plan(run.read_config().train.devices, len(gpus), taken)
        if plan is None:
            return False
        proc = _start(self.ws, run, plan)
        if proc is not None:
            self.children[run.run_id] = (run, proc)
        return True

    def close(self) -> None:
        pass


def _engine(ws: Workspace):
    """The engine of the server settings; the local one (logged) when they cannot be read.

    Raises:
        RuntimeError: engine "ray" where Ray's job client cannot be imported (``ray_engine.RayUnavailable``).
    """
    try:
        settings = ws.settings()
    except ValueError as exc:
        _log(f"{exc}; using the local engine")
        return LocalEngine(ws)
    if settings.engine == "ray":
        from segcore.queue.ray_engine import RayEngine

        return RayEngine(ws, settings, _log)
    return LocalEngine(ws)


class _Skips:
    """Queued runs the worker cannot start, each logged once per reason."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def record(self, skipped: dict[str, str]) -> None:
        for run_id, reason in skipped.items():
            if self.reasons.get(run_id) != reason:
                _log(f"skipped {run_id}: {reason}")
        self.reasons = dict(skipped)


def _waiting(ws: Workspace, skips: _Skips) -> list[RunFolder]:
    skipped: dict[str, str] = {}
    waiting = queued_runs(ws, skipped)
    skips.record(skipped)
    return waiting


def serve(ws: Workspace) -> int:
    """Run the queue until it is empty; returns 0 (also when another worker already runs it)."""
    handle = open(lock_path(ws), "a+")
    if not _try_lock(handle):
        return 0
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    try:
        engine = _engine(ws)
    except RuntimeError as exc:  # engine "ray" without Ray: nothing can start; say so and leave the runs queued
        _log(f"{exc}; no run is started")
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        return 1
    _log(f"serving the queue on the {engine.name} engine")
    try:
        return _serve(ws, handle, engine)
    finally:
        engine.close()


def _serve(ws: Workspace, handle, engine) -> int:
    skips = _Skips()
    failed: dict[str, str] = {}  # runs whose start raised: not tried again by this worker
    failed_loops = 0
    while True:
        try:
            engine.poll(STOP_GRACE_S)
            waiting = [r for r in _waiting(ws, skips) if r.run_id not in failed]
            if waiting:
                run = waiting[0]
                try:
                    started = _try_start(ws, engine, run)
                except RetryLater as exc:
                    _log(f"{run.run_id} waits: {exc}")
                    time.sleep(5.0)
                    continue
                except Exception as exc:  # this run's folder, not the queue: skip it and go on
                    failed[run.run_id] = f"{type(exc).__name__}: {exc}"
                    _log(f"skipped {run.run_id}: could not start it ({failed[run.run_id]})")
                    try:
                        run.update_status(state="failed", finished_at=iso(),
                                          message=f"the queue worker could not start it: {failed[run.run_id]}")
                    except Exception:
                        pass  # the log keeps the reason
                    continue
                if started:
                    continue
            if not engine.busy() and not waiting:
                # Release before the last look: a launch that queued after this look finds the lock free.
                fcntl.flock(handle, fcntl.LOCK_UN)
                if not [r for r in _waiting(ws, skips) if r.run_id not in failed] or not _try_lock(handle):
                    _log("queue empty, exiting")
                    handle.close()
                    return 0
                continue
            failed_loops = 0
        except Exception:
            failed_loops += 1
            _log(f"error while serving the queue (it goes on):\n{traceback.format_exc()}")
            if failed_loops >= MAX_FAILED_LOOPS:
                _log("giving up after repeated errors")
                return 1
        time.sleep(POLL_S)


class RetryLater(Exception):
    """The engine cannot take a run now for a reason outside the run (its cluster is unreachable)."""


def _try_start(ws: Workspace, engine, run: RunFolder) -> bool:
    if isinstance(engine, LocalEngine):
        return engine.try_start(run)
    from segcore.queue.ray_engine import RayUnavailable

    live, _ = _live_runs(ws)
    if not engine.can_start(live):
        return False
    try:
        return engine.start(run, _run_env(run.read_config().train.backend))
    except RayUnavailable as exc:
        raise RetryLater(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = argv[0] if argv else None
    ws = get_workspace(Path(root) if root else None)
    return serve(ws)


if __name__ == "__main__":
    raise SystemExit(main())

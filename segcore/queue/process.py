"""The training process: ``python -m segcore.queue.process RUN_DIR``.

One process per run, started by the queue worker, a Ray job (or by hand), so that a
crash cannot take the worker or the dashboard down and ``stop`` can signal it.
It keeps ``status.json`` current (state, progress, a heartbeat from a thread
every few seconds) and writes the final state: finished, failed (with the
error), or stopped.

The process owns the run's status: it reads ``status.json`` once, at the
start, keeps it in memory (``LiveStatus``) and only ever writes it whole, so a
file someone else damaged is replaced by its next heartbeat instead of ending
the run. It holds ``.process.lock`` for its whole life, so readers can tell
that it lives even while ``status.json`` is unreadable, and a second process
cannot train the same run.

The Keras backend is the run's ``train.backend`` setting: this process sets
``KERAS_BACKEND`` before Keras is imported and fails the run, naming both, if
Keras runs on another backend anyway.

SIGTERM asks for a graceful stop (as the STOP file does); a second SIGTERM
ends the process at once, leaving the last finished epoch to resume from.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from segcore.fsutil import describe_os_error, is_write_refused
from segcore.runfiles import RunFileError
from segcore.runs import RESERVE_BYTES, LiveStatus, RunFolder, iso

HEARTBEAT_EVERY_S = 5.0


def _setup_logging(run: RunFolder) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    file_handler = logging.FileHandler(run.log_path, encoding="utf-8")
    file_handler.setFormatter(fmt)
    root.addHandler(file_handler)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    root.addHandler(err)


def _heartbeat_loop(status: LiveStatus, done: threading.Event) -> None:
    while not done.wait(HEARTBEAT_EVERY_S):
        try:
            status.update(heartbeat=time.time())
        except Exception:  # a full disk must not kill training; the status just ages
            pass


def use_backend(requested: str) -> str | None:
    """Make Keras use ``requested`` (a ``train.backend``) in this process; returns an error message or None."""
    if requested in (None, "", "auto"):
        return None
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = requested
    import keras

    actual = keras.backend.backend()
    if actual != requested:
        return (f"the run asks for the {requested!r} Keras backend but this process runs {actual!r} "
                f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '')!r}); start it with KERAS_BACKEND={requested}")
    return None


def execute(run_dir: str | os.PathLike) -> int:
    """Train the run in ``run_dir`` in this process; returns the exit code (0 unless it failed)."""
    run = RunFolder(Path(run_dir))
    if not run.exists():
        print(f"error: {run_dir} is not a run folder (config.json missing)", file=sys.stderr)
        return 2
    lock = run.acquire_process_lock()
    if lock is None:
        print(f"error: another process is already training {run.run_id}", file=sys.stderr)
        return 3
    _setup_logging(run)
    log = logging.getLogger("segcore.training")
    left = run.remove_temp_files()  # a process that died mid-save left these; this one holds the lock now
    if left:
        log.info("removed temporary files left by an earlier process: %s", left)
    try:
        previous = run.read_status()
    except RunFileError as exc:
        log.warning("%s; starting from the checkpoints' record", exc)
        previous = run.rebuilt_status(exc)
    job = os.environ.get("SEGCORE_RAY_JOB")
    if job and (previous.get("job") != job or previous.get("state") != "running"):
        # A Ray job that waited for resources while its run was stopped or given to a newer job: not this job's run any more.
        print(f"Ray job {job} is not the current job of run {run.run_id} (it is {previous.get('state')}, job "
              f"{previous.get('job')}); nothing to train", file=sys.stderr)
        lock.close()
        return 0
    if run.stop_requested():
        run.clear_stop()
        LiveStatus(run, previous).update(state="stopped", message="stopped before training started", finished_at=iso())
        return 0
    if not run.reserve_space():
        log.warning("could not reserve %d bytes in %s: the disk is nearly full", RESERVE_BYTES, run.path)
    status = LiveStatus(run, previous)
    status.update(
        state="running",
        pid=os.getpid(),
        host=socket.gethostname(),
        heartbeat=time.time(),
        started_at=previous.get("started_at") or iso(),
        attempt=int(previous.get("attempt", 0)) + 1,
        message="starting: loading Keras and its backend",
        phase="starting",
    )
    terms = {"count": 0}

    def on_term(signum, frame):
        terms["count"] += 1
        if terms["count"] == 1:
            run.request_stop()  # the trainer stops after the current batch
            return
        status.update(state="stopped", message="stopped by SIGTERM; resume continues from the last finished epoch", finished_at=iso())
        run.release_reserve()
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat_loop, args=(status, done), daemon=True)
    beat.start()
    code = 0
    try:
        from segcore.training.trainer import Trainer

        trainer = Trainer(run, status)
        problem = use_backend(trainer.cfg.train.backend)
        result = {"state": "failed", "message": problem} if problem else trainer.train()
    except Exception as exc:
        log.error("training failed:\n%s", traceback.format_exc())
        reason = describe_os_error(exc) if is_write_refused(exc) else f"{type(exc).__name__}: {exc}"
        result = {"state": "failed", "message": reason}
        code = 1
    finally:
        done.set()
    if result.get("state") == "failed":
        code = 1
    result.setdefault("message", "")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)  # this training process, all its threads
    log.info("run %s %s: %s", run.run_id, result["state"], result["message"])
    if result["state"] in ("stopped", "finished"):
        run.clear_stop()  # before the final state: whoever sees "stopped" sees no stop request left
    try:
        status.update(finished_at=iso(), batch_loss=None, **result)  # on a full disk, through the reserve
    finally:
        run.release_reserve()
        run.remove_temp_files()
        logging.shutdown()
        lock.close()
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m segcore.queue.process RUN_DIR", file=sys.stderr)
        return 2
    return execute(argv[0])


if __name__ == "__main__":
    raise SystemExit(main())

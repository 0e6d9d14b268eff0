"""The training process: ``python -m segcore.training.run RUN_DIR``.

One process per run, started by the queue worker (or by hand), so that a
crash cannot take the worker or the dashboard down and ``stop`` can signal it.
It keeps ``status.json`` current (state, progress, a heartbeat from a thread
every few seconds) and writes the final state: finished, failed (with the
error), or stopped.

SIGTERM asks for a graceful stop (as the STOP file does); a second SIGTERM
ends the process at once, leaving the last finished epoch to resume from.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from segcore.runs import RunFolder, iso

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


def _heartbeat_loop(run: RunFolder, done: threading.Event) -> None:
    while not done.wait(HEARTBEAT_EVERY_S):
        try:
            run.heartbeat()
        except Exception:  # a full disk must not kill training; the status just ages
            pass


def execute(run_dir: str | os.PathLike) -> int:
    """Train the run in ``run_dir`` in this process; returns the exit code (0 unless it failed)."""
    run = RunFolder(Path(run_dir))
    if not run.exists():
        print(f"error: {run_dir} is not a run folder (config.json missing)", file=sys.stderr)
        return 2
    _setup_logging(run)
    log = logging.getLogger("segcore.training")
    if run.stop_requested():
        run.update_status(state="stopped", message="stopped before training started", finished_at=iso())
        run.clear_stop()
        return 0
    status = run.read_status()
    run.update_status(
        state="running",
        pid=os.getpid(),
        host=socket.gethostname(),
        heartbeat=time.time(),
        started_at=status.get("started_at") or iso(),
        attempt=int(status.get("attempt", 0)) + 1,
        message="starting",
    )
    terms = {"count": 0}

    def on_term(signum, frame):
        terms["count"] += 1
        if terms["count"] == 1:
            run.request_stop()  # the trainer stops after the current batch
            return
        run.update_status(state="stopped", message="stopped by SIGTERM; resume continues from the last finished epoch", finished_at=iso())
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat_loop, args=(run, done), daemon=True)
    beat.start()
    code = 0
    try:
        from segcore.training.trainer import train_run

        result = train_run(run)
    except Exception as exc:
        log.error("training failed:\n%s", traceback.format_exc())
        result = {"state": "failed", "message": f"{type(exc).__name__}: {exc}"}
        code = 1
    finally:
        done.set()
    if result.get("state") == "failed":
        code = 1
    result.setdefault("message", "")
    log.info("run %s %s: %s", run.run_id, result["state"], result["message"])
    run.update_status(finished_at=iso(), batch_loss=None, **result)
    if result["state"] in ("stopped", "finished"):
        run.clear_stop()
    logging.shutdown()
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m segcore.training.run RUN_DIR", file=sys.stderr)
        return 2
    return execute(argv[0])


if __name__ == "__main__":
    raise SystemExit(main())

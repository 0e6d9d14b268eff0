"""Launch, stop and resume runs; keep a queue worker alive.

``launch(cfg)`` writes a queued run folder and returns its id at once. A queue
worker (``python -m segcore.training.worker``), a detached process that is a
singleton per workspace through an ``fcntl`` lock, starts queued runs in the
order they were queued, each in its own training process, at most
``max_concurrent_runs`` at a time (1 by default; set ``SEGCORE_MAX_CONCURRENT_RUNS``
or ``{"max_concurrent_runs": N}`` in ``<workspace>/queue.json`` for more on a CPU).

Why no launch is ever lost: a launch writes its run as queued *before* it
looks for a worker, and a worker releases its lock *before* its last look at
the queue. So either the worker's last look sees the run, or the launch finds
the lock free and starts a worker.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from segcore.config import RunConfig
from segcore.data.dataset import load_dataset
from segcore.data.split import split_ids
from segcore.runs import ACTIVE_STATES, RunFolder, create_run, iso, open_run
from segcore.workspace import Workspace, get_workspace

ENV_CONCURRENCY = "SEGCORE_MAX_CONCURRENT_RUNS"
FINAL_STATES = ("finished", "failed", "stopped", "interrupted")
STOP_GRACE_S = 30.0  # after a stop request, SIGTERM follows this many seconds later


def queue_dir(ws: Workspace) -> Path:
    path = ws.root / ".queue"
    path.mkdir(parents=True, exist_ok=True)
    return path


def lock_path(ws: Workspace) -> Path:
    return queue_dir(ws) / "worker.lock"


def max_concurrent_runs(ws: Workspace) -> int:
    """How many runs may train at once: ``$SEGCORE_MAX_CONCURRENT_RUNS``, else ``queue.json``, else 1."""
    raw: Any = os.environ.get(ENV_CONCURRENCY)
    source = f"${ENV_CONCURRENCY}"
    if raw in (None, ""):
        settings = ws.root / "queue.json"
        if settings.is_file():
            try:
                raw = json.loads(settings.read_text()).get("max_concurrent_runs", 1)
            except (ValueError, AttributeError):
                raise ValueError(f"{settings} is not a JSON object like {{\"max_concurrent_runs\": 2}}") from None
            source = str(settings)
        else:
            return 1
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{source} is {raw!r}; expected a whole number of runs >= 1") from None
    if value < 1:
        raise ValueError(f"{source} is {value}; expected a whole number of runs >= 1")
    return value


def dataset_record(ws: Workspace, name: str) -> tuple[Any, dict[str, Any]]:
    dataset = load_dataset(name, ws)
    info = dataset.info
    return dataset, {
        "name": info.name,
        "content_hash": info.content_hash,
        "mode": info.mode,
        "classes": info.class_names,
        "channels": info.channels,
        "num_samples": len(info.samples),
    }


def check_config(cfg: RunConfig) -> None:
    """Cheap checks of the training settings, so that mistakes fail at launch, not in the queue."""
    from segcore.training.device import DISTRIBUTIONS, PRECISIONS

    t = cfg.train
    for name in ("epochs", "batch_size", "image_size"):
        value = getattr(t, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"train setting {name} is {value!r}; expected a whole number >= 1")
    if t.image_size < 16:
        raise ValueError(f"image_size {t.image_size} is too small; use 16 or more")
    if not isinstance(t.learning_rate, (int, float)) or isinstance(t.learning_rate, bool) or not t.learning_rate > 0:
        raise ValueError(f"learning_rate {t.learning_rate!r} must be a positive number (1e-4 is the usual start)")
    from segcore.training.trainer import LR_SCHEDULES, OPTIMIZERS

    if t.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {t.optimizer!r}; valid ones are {list(OPTIMIZERS)}")
    if t.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {t.lr_schedule!r}; valid ones are {list(LR_SCHEDULES)}")
    if t.distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {t.distribution!r}; valid ones are {list(DISTRIBUTIONS)}")
    if t.mixed_precision not in PRECISIONS:
        raise ValueError(f"unknown mixed_precision {t.mixed_precision!r}; valid ones are {list(PRECISIONS)}")
    m = cfg.model
    if m.encoder == "none" and isinstance(m.depth, int) and m.depth > 0 and t.image_size % (2**m.depth):
        step = 2**m.depth
        raise ValueError(
            f"image_size {t.image_size} is not divisible by 2^depth = {step} (depth {m.depth}); "
            f"use a multiple of {step}, e.g. {max(step, round(t.image_size / step) * step)}"
        )
    if m.encoder != "none":
        from segcore.models import encoders

        spec = encoders.get(m.encoder)
        if t.image_size < spec.min_size or t.image_size % spec.reduction:
            step = spec.reduction
            raise ValueError(
                f"image_size {t.image_size} does not fit encoder {m.encoder!r}: use a multiple of {step} "
                f"(at least {spec.min_size}), e.g. {max(spec.min_size, round(t.image_size / step) * step)}"
            )
    if cfg.model.freeze == "fine_tune" and not 0 < cfg.model.fine_tune_after < t.epochs:
        raise ValueError(
            f"fine_tune_after {cfg.model.fine_tune_after} must lie between 1 and epochs - 1 ({t.epochs - 1}) "
            "so that some epochs are frozen and some fine-tuned"
        )


def launch(
    cfg: RunConfig,
    ws: Workspace | None = None,
    *,
    split: dict[str, list[str]] | None = None,
    extra: dict[str, Any] | None = None,
    start_worker: bool = True,
) -> str:
    """Queue a run and make sure a worker will train it; returns the run id at once.

    Args:
        cfg: the run settings.
        ws: the workspace (``get_workspace()`` when None).
        split: explicit ``{"train", "val", "test"}`` ids (a rerun or a sweep);
            computed from ``cfg.train.split`` when None.
        extra: more fields for ``config.json`` (e.g. ``{"sweep": ...}``).
        start_worker: start a queue worker if none is running.

    Returns:
        The new run id.

    Raises:
        FileNotFoundError: the dataset does not exist.
        ValueError: settings that cannot train.
    """
    ws = ws or get_workspace()
    check_config(cfg)
    dataset, record = dataset_record(ws, cfg.train.dataset)
    if split is None:
        subsets = {s.id: s.subset for s in dataset.info.samples}
        split = split_ids(dataset.ids, cfg.train.split, subsets).to_dict()
    else:
        known = set(dataset.ids)
        missing = [i for part in ("train", "val", "test") for i in split.get(part, []) if i not in known]
        if missing:
            raise ValueError(f"split names ids {missing[:5]} that dataset {cfg.train.dataset!r} does not have")
        split = {part: list(split.get(part, [])) for part in ("train", "val", "test")}
    if cfg.model.init_from_run:
        open_run(cfg.model.init_from_run, ws)  # fails now, naming the runs, rather than in the queue
    run = create_run(ws, cfg, dataset=record, split=split, extra=extra)
    if start_worker:
        ensure_worker(ws)
    return run.run_id


def worker_running(ws: Workspace) -> bool:
    """Whether a queue worker holds the workspace's lock."""
    with open(lock_path(ws), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def ensure_worker(ws: Workspace | None = None) -> bool:
    """Start a detached queue worker unless one holds the lock; returns True if one was started."""
    ws = ws or get_workspace()
    if worker_running(ws):
        return False
    # A new session: the worker outlives the dashboard or the shell that launched it.
    spawn_module("segcore.training.worker", str(ws.root), ws, queue_dir(ws) / "worker.log", detach=True)
    return True


def spawn_module(module: str, arg: str, ws: Workspace, log_path: Path, *, detach: bool = False) -> subprocess.Popen:
    """Start ``python -m <module> <arg>`` for workspace ``ws``, its output appended to ``log_path``."""
    env = dict(os.environ, SEGCORE_WORKSPACE=str(ws.root))
    project_root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = project_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, arg],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=str(ws.root),
            start_new_session=detach,
            close_fds=True,
        )


def stop(run_id: str, ws: Workspace | None = None, *, wait: float = 0.0, grace: float = STOP_GRACE_S) -> dict[str, Any]:
    """Stop a run: a queued run at once; a running one after its current batch.

    A running run gets a STOP file (checked every batch); if it is still
    running ``grace`` seconds later it gets SIGTERM (here when waiting,
    otherwise from the queue worker).

    Args:
        run_id: the run.
        ws: the workspace.
        wait: seconds to wait for the run to leave the running state (0: return at once).
        grace: seconds between the stop request and SIGTERM.

    Returns:
        The run's (true) status afterwards.

    Raises:
        ValueError: the run is not queued or running.
    """
    import signal

    ws = ws or get_workspace()
    run = open_run(run_id, ws)
    done = run.transition(("queued",), state="stopped", message="stopped before it started", finished_at=iso())
    if done is not None:
        return done
    status = run.true_status()
    if status.get("state") != "running":
        raise ValueError(f"run {run.run_id} is {status.get('state')}, not queued or running; nothing to stop")
    run.request_stop()
    deadline = time.time() + wait
    termed = False
    while time.time() < deadline:
        status = run.true_status()
        if status.get("state") != "running":
            return status
        if not termed and time.time() - _stop_age_origin(run) >= grace and status.get("pid"):
            try:
                os.kill(int(status["pid"]), signal.SIGTERM)
            except ProcessLookupError:
                pass
            termed = True
        time.sleep(0.2)
    return run.true_status()


def _stop_age_origin(run: RunFolder) -> float:
    try:
        return run.stop_path.stat().st_mtime
    except FileNotFoundError:
        return time.time()


def resume(run_id: str, ws: Workspace | None = None, *, start_worker: bool = True) -> str:
    """Queue a stopped, interrupted or failed run again; it continues from its last checkpoint.

    Returns:
        The run id.

    Raises:
        ValueError: the run is queued, running or finished.
    """
    ws = ws or get_workspace()
    run = open_run(run_id, ws)
    run.clear_stop()
    done = run.transition(
        ("stopped", "interrupted", "failed"),
        state="queued",
        queued_at=time.time(),
        message="queued to resume from the last checkpoint",
        finished_at=None,
        pid=None,
    )
    if done is None:
        state = run.true_status().get("state")
        raise ValueError(f"run {run.run_id} is {state}; only stopped, interrupted or failed runs can be resumed")
    if start_worker:
        ensure_worker(ws)
    return run.run_id


def wait_for(run_ids: list[str], ws: Workspace | None = None, *, timeout: float | None = None, poll: float = 0.5,
             on_progress=None) -> dict[str, dict[str, Any]]:
    """Wait until every run is in a final state; returns their true statuses.

    Raises:
        TimeoutError: naming the runs still active after ``timeout`` seconds.
    """
    ws = ws or get_workspace()
    runs = {rid: open_run(rid, ws) for rid in run_ids}
    start = time.time()
    last_worker_check = 0.0
    while True:
        statuses = {rid: run.true_status() for rid, run in runs.items()}
        if on_progress is not None:
            on_progress(statuses)
        active = [rid for rid, s in statuses.items() if s.get("state") in ACTIVE_STATES]
        if not active:
            return statuses
        if any(statuses[rid].get("state") == "queued" for rid in active) and time.time() - last_worker_check > 5:
            ensure_worker(ws)  # a worker that died is replaced while someone waits
            last_worker_check = time.time()
        if timeout is not None and time.time() - start > timeout:
            raise TimeoutError(f"runs {active} still active after {timeout:.0f} s")
        time.sleep(poll)

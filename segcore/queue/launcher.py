"""Launch, stop, resume and re-run runs; keep a queue worker alive.

``launch(cfg)`` writes a queued run folder and returns its id at once. A queue
worker (``python -m segcore.queue.worker``), a detached process that is a
singleton per workspace through an ``fcntl`` lock, starts queued runs in the
order they were queued, each in its own training process, at most
``max_concurrent_runs`` at a time (by default one per GPU, 1 on a CPU; set
``SEGCORE_MAX_CONCURRENT_RUNS`` or ``{"max_concurrent_runs": N}`` in
``<workspace>/server.json``), or as Ray jobs (``engine: "ray"``; see
``segcore.queue.ray_engine``).

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

from segcore.access import Actor, local_actor, require
from segcore.config import RunConfig, check_memory
from segcore.data.dataset import load_dataset
from segcore.data.split import split_ids
from segcore.runfiles import RunFileError
from segcore.runs import ACTIVE_STATES, DAMAGED, RESUMABLE_STATES, RunFolder, create_run, iso, open_run, queued_runs
from segcore.workspace import Workspace, get_workspace

STOP_GRACE_S = 30.0  # after a stop request, SIGTERM follows this many seconds later


def queue_dir(ws: Workspace) -> Path:
    path = ws.root / ".queue"
    path.mkdir(parents=True, exist_ok=True)
    return path


def lock_path(ws: Workspace) -> Path:
    return queue_dir(ws) / "worker.lock"


def max_concurrent_runs(ws: Workspace) -> int:
    """How many runs may train at once, 0 for the engine's own rule (one per GPU locally, Ray's resources on Ray).

    ``$SEGCORE_MAX_CONCURRENT_RUNS``, else ``max_concurrent_runs`` in ``server.json``, else the same key in
    the older ``queue.json``, else 0.

    Raises:
        ValueError: naming the file or variable and the value.
    """
    value = ws.settings().max_concurrent_runs
    if value:
        return value
    legacy = ws.root / "queue.json"
    if not legacy.is_file():
        return 0
    try:
        raw: Any = json.loads(legacy.read_text()).get("max_concurrent_runs", 0)
    except (ValueError, AttributeError):
        raise ValueError(f"{legacy} is not a JSON object like {{\"max_concurrent_runs\": 2}}") from None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ValueError(f"{legacy}: max_concurrent_runs is {raw!r}; expected a whole number of runs >= 1")
    return raw


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
        "class0": "background" if info.class0_is_background else "class",
        "ignore_index": info.ignore_index,
    }


def check_config(cfg: RunConfig) -> RunConfig:
    """The launch-time checks that settings objects cannot do alone; returns the settings to queue.

    The settings were validated when they were built (``segcore.config``);
    here the machine-dependent checks run again (settings read back from a run
    folder skip them), the learning rate "the encoder's own" becomes its number,
    and ``train.backend`` "auto" becomes the backend of this process's
    environment (``$KERAS_BACKEND``), checked to be installed.
    """
    from dataclasses import replace

    from segcore.config import check_machine
    from segcore.training.device import check_backend, configured_backend, distribution_for

    check_machine(cfg)
    cfg = cfg.resolved()  # config.json holds the learning rate the run starts from
    backend = cfg.train.backend if cfg.train.backend != "auto" else configured_backend()
    check_backend(backend)
    if backend != cfg.train.backend:
        cfg = replace(cfg, train=replace(cfg.train, backend=backend))
    t = cfg.train
    if t.devices != 1 and t.distribution == "none":  # several devices: the backend's own data-parallel engine
        cfg = replace(cfg, train=replace(t, distribution=distribution_for(backend)))
    elif t.devices == 1 and t.distribution != "none":  # a distribution named alone spreads over every device, as it always did
        cfg = replace(cfg, train=replace(t, devices="all"))
    return cfg


def prepare_launch(
    cfg: RunConfig,
    ws: Workspace,
    *,
    split: dict[str, list[str]] | None = None,
) -> tuple[RunConfig, dict[str, Any], dict[str, list[str]]]:
    """Every check a launch makes, with nothing written; returns the settings, dataset record and split to queue.

    Raises:
        FileNotFoundError: the dataset (or the run to start from) does not exist.
        ValueError: settings that cannot train.
    """
    cfg = check_config(cfg)
    dataset, record = dataset_record(ws, cfg.train.dataset)
    size = cfg.train.image_size
    check_memory(cfg, record["num_samples"] * size * size * (record["channels"] + 1),
                 f"the {record['num_samples']} images and masks of {cfg.train.dataset!r} in memory at {size}x{size}, "
                 "plus the activations of one training step")
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
    return cfg, record, split


def launch(
    cfg: RunConfig,
    ws: Workspace | None = None,
    *,
    split: dict[str, list[str]] | None = None,
    extra: dict[str, Any] | None = None,
    start_worker: bool = True,
    actor: Actor | None = None,
    detail: str = "",
) -> str:
    """Queue a run and make sure a worker will train it; returns the run id at once.

    Args:
        cfg: the run settings.
        ws: the workspace (``get_workspace()`` when None).
        split: explicit ``{"train", "val", "test"}`` ids (a rerun or a sweep);
            computed from ``cfg.train.split`` when None.
        extra: more fields for ``config.json`` (e.g. ``{"sweep": ...}``).
        start_worker: start a queue worker if none is running.
        actor: who launches it (default: the local user); recorded in the run's ``audit.jsonl``.
        detail: a few words for that record (``re-run of ...``).

    Returns:
        The new run id.

    Raises:
        FileNotFoundError: the dataset does not exist.
        ValueError: settings that cannot train.
        AccessDenied: ``actor`` may not launch runs.
    """
    actor = actor or local_actor()
    require(actor, "launch")
    ws = ws or get_workspace()
    cfg, record, split = prepare_launch(cfg, ws, split=split)
    run = create_run(ws, cfg, dataset=record, split=split, extra=extra)
    run.record(actor, "launch", detail)
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
    spawn_module("segcore.queue.worker", str(ws.root), ws, queue_dir(ws) / "worker.log", detach=True)
    return True


def wake_queue(ws: Workspace | None = None) -> bool:
    """Start a queue worker if runs are waiting and no worker lives (one was killed, or never started).

    The command line and every dashboard page call this, so a queue never
    stalls for want of a worker. Returns True if a worker was started; never
    raises for an unreadable or read-only workspace (it then returns False).
    """
    ws = ws or get_workspace()
    try:
        if not queued_runs(ws) or worker_running(ws):
            return False
        return ensure_worker(ws)
    except OSError:
        return False


def spawn_module(module: str, arg: str, ws: Workspace, log_path: Path, *, detach: bool = False,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python -m <module> <arg>`` for workspace ``ws``, its output appended to ``log_path``.

    ``env`` adds to (or overrides) this process's environment, e.g. the run's ``KERAS_BACKEND``.
    """
    env = dict(os.environ, SEGCORE_WORKSPACE=str(ws.root), **(env or {}))
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


def stop(run_id: str, ws: Workspace | None = None, *, wait: float = 0.0, grace: float = STOP_GRACE_S,
         actor: Actor | None = None) -> dict[str, Any]:
    """Stop a run: a queued run at once; a running one after its current batch.

    A running run gets a STOP file (checked every batch); if it is still
    running ``grace`` seconds later it gets SIGTERM (here when waiting,
    otherwise from the queue worker; on the Ray engine through Ray's
    ``stop_job``). A Ray job still waiting for resources is stopped at once.

    Args:
        run_id: the run.
        ws: the workspace.
        wait: seconds to wait for the run to leave the running state (0: return at once).
        grace: seconds between the stop request and SIGTERM.
        actor: who stops it (default: the local user); recorded in the run's ``audit.jsonl``.

    Returns:
        The run's (true) status afterwards.

    Raises:
        ValueError: the run is not queued or running.
        AccessDenied: ``actor`` may not stop this run.
    """
    import signal

    actor = actor or local_actor()
    ws = ws or get_workspace()
    run = open_run(run_id, ws)
    run.require(actor, "stop")
    done = run.transition(("queued",), state="stopped", message="stopped before it started", finished_at=iso())
    if done is not None:
        run.record(actor, "stop", "before it started")
        return done
    status = run.true_status()
    if status.get("state") != "running":
        raise ValueError(f"run {run.run_id} is {status.get('state')}, not queued or running; nothing to stop")
    run.record(actor, "stop", f"at epoch {status.get('epoch', 0)}")
    on_ray = status.get("engine") == "ray"
    if on_ray and status.get("pid") is None:  # submitted, still waiting for resources: no process to ask
        from segcore.queue.ray_engine import stop_job

        stop_job(ws, status.get("job") or run.run_id)
        done = run.transition(("running",), state="stopped", message="stopped before it started (its Ray job was stopped)",
                              finished_at=iso())
        if done is not None and done.get("pid") is None:
            return done
    run.request_stop()
    deadline = time.time() + wait
    termed = False
    while time.time() < deadline:
        status = run.true_status()
        if status.get("state") != "running":
            return status
        if not termed and time.time() - _stop_age_origin(run) >= grace and status.get("pid"):
            if on_ray:  # the process may be on another node: Ray signals it
                from segcore.queue.ray_engine import stop_job

                stop_job(ws, status.get("job") or run.run_id)
            else:
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


def resume(run_id: str, ws: Workspace | None = None, *, start_worker: bool = True, actor: Actor | None = None) -> str:
    """Queue a stopped, interrupted or failed run again; it continues from its last checkpoint.

    Returns:
        The run id.

    Raises:
        ValueError: the run is queued, running or finished.
        AccessDenied: ``actor`` (default: the local user) may not resume this run.
    """
    actor = actor or local_actor()
    ws = ws or get_workspace()
    run = open_run(run_id, ws)
    run.require(actor, "resume")
    status = run.true_status()
    if status.get("state") == DAMAGED and status.get("process_alive"):
        raise ValueError(f"run {run.run_id} is damaged but its training process still runs; wait for its next "
                         "heartbeat to rewrite status.json, or stop it")
    try:
        run.read_config()  # the settings a resumed run trains with
        run.read_train_state()  # the epoch the checkpoints hold
    except RunFileError as exc:
        raise ValueError(f"run {run.run_id} cannot be resumed: {exc}; delete it, or re-run it with new settings") from None
    run.clear_stop()
    done = run.transition(
        RESUMABLE_STATES,
        state="queued",
        queued_at=time.time(),
        message="queued to resume from the last checkpoint",
        finished_at=None,
        pid=None,
    )
    if done is None:
        state = run.true_status().get("state")
        raise ValueError(f"run {run.run_id} is {state}; only stopped, interrupted, failed or damaged runs can be resumed")
    run.record(actor, "resume", f"from {status.get('state')}")
    if start_worker:
        ensure_worker(ws)
    return run.run_id


def rerun(run_id: str, ws: Workspace | None = None, *, start_worker: bool = True, actor: Actor | None = None) -> str:
    """Queue a new run with the same settings and split as ``run_id``; returns the new id (a launch by ``actor``)."""
    run = open_run(run_id, ws)
    record = run.read_record()
    return launch(record.config, ws, split={part: list(ids) for part, ids in record.split.items()}, extra={"rerun_of": run.run_id}, start_worker=start_worker,
                  actor=actor, detail=f"re-run of {run.run_id}")


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
        # A damaged status whose training process lives is still a run in progress.
        active = [rid for rid, s in statuses.items() if s.get("state") in ACTIVE_STATES or s.get("process_alive")]
        if not active:
            return statuses
        if any(statuses[rid].get("state") == "queued" for rid in active) and time.time() - last_worker_check > 5:
            ensure_worker(ws)  # a worker that died is replaced while someone waits
            last_worker_check = time.time()
        if timeout is not None and time.time() - start > timeout:
            raise TimeoutError(f"runs {active} still active after {timeout:.0f} s")
        time.sleep(poll)

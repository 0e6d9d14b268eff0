"""The run queue: runs queued, started in their own processes, stopped, resumed; studies queued whole.

Public API (importing this package does not import Keras)::

    launch(cfg, ws=None, *, split=None) -> run_id     # queued; a worker trains it
    stop(run_id, ws=None, *, wait=0.0)                 # graceful, then SIGTERM
    resume(run_id, ws=None) -> run_id                  # continues from last.keras
    rerun(run_id, ws=None) -> new run_id               # same settings and split, a new run
    wait_for(run_ids, ws=None, *, timeout=None) -> {run_id: status}
    ensure_worker(ws=None)

Each of ``launch``, ``stop``, ``resume`` and ``rerun`` also takes ``actor=``
(a ``segcore.access.Actor``; the local user when omitted): it is refused with
``AccessDenied`` where that person's role may not, and recorded in the run's
``audit.jsonl`` where it may.

Modules: ``launcher`` (the calls above), ``worker`` (the queue worker and the
local engine), ``ray_engine`` (Ray Jobs as the engine), ``process`` (the
training process a run is trained in: it calls ``segcore.training``),
``sweep`` (the encoder study) and ``repeats`` (seeds, folds, ensembles).
"""

from __future__ import annotations

from segcore.queue.launcher import ensure_worker, launch, rerun, resume, stop, wait_for, wake_queue

__all__ = ["launch", "stop", "resume", "rerun", "wait_for", "ensure_worker", "wake_queue"]

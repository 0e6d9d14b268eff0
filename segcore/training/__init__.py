"""Training: runs in their own processes, a queue, the trainer, health checks.

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

The trainer itself (``segcore.training.trainer.train_run``) runs inside the
training process started by the queue worker.
"""

from __future__ import annotations

from segcore.training.launcher import ensure_worker, launch, rerun, resume, stop, wait_for

__all__ = ["launch", "stop", "resume", "rerun", "wait_for", "ensure_worker"]

"""The Home page's quick start: a small U-Net on the demo data, and what it costs.

``QUICK_START`` is the run the button queues; ``bench/quick_start.py`` measures
it end to end (button press to a finished, evaluated run) through the real
queue. ``MEASURED`` holds that benchmark's figures on the development machine,
so the page promises a number that was measured, and ``past_quick_starts``
gives the times of the quick starts already run in a workspace.
"""

from __future__ import annotations

from typing import Any, Iterable

from segcore.config import ModelConfig, RunConfig, TrainConfig

QUICK_START = RunConfig(
    model=ModelConfig(depth=3, filters=16),
    train=TrainConfig(dataset="demo", image_size=64, epochs=40, batch_size=16, learning_rate=1e-3, early_stopping_patience=10),
    name="quick-start",
    tags=("quick-start",),
)

# `python bench/quick_start.py` on the development machine (2 CPU cores shared
# with other work); press to finished run, including process start and the
# test evaluation.
MEASURED: dict[str, Any] = {"seconds": 627.5, "test_dice": 0.967, "cpus": 2}


def past_quick_starts(summaries: Iterable[Any]) -> list[Any]:
    """The finished quick-start runs among ``summaries`` (``RunSummary``), newest first."""
    out = [s for s in summaries if s.state == "finished" and "quick-start" in (s.tags or []) and s.name == QUICK_START.name]
    return sorted(out, key=lambda s: s.created_at, reverse=True)


def active_quick_start(summaries: Iterable[Any]) -> Any | None:
    """The newest quick-start run among ``summaries`` that is queued or running, or None."""
    out = [s for s in summaries if s.state in ("queued", "running") and "quick-start" in (s.tags or []) and s.name == QUICK_START.name]
    return max(out, key=lambda s: s.created_at, default=None)


def start_quick_start(ws: Any = None, *, actor: Any = None) -> tuple[str, bool]:
    """Queue the quick start unless one is already queued or running; ``actor`` launches it (``run_queue.launch``).

    Returns:
        ``(run_id, queued)``: the new run and True, or the quick start
        already under way and False (a second press never queues a duplicate).
    """
    import segcore.queue as run_queue
    from segcore.runs import list_runs
    from segcore.workspace import get_workspace

    ws = ws or get_workspace()
    active = active_quick_start(list_runs(ws))
    if active is not None:
        return active.run_id, False
    return run_queue.launch(QUICK_START, ws, actor=actor), True

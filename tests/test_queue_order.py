"""The queue's order can be changed: a waiting run moves up; one can be cancelled before it starts."""

from __future__ import annotations

import pytest

from segcore.config import ModelConfig, RunConfig, TrainConfig
from segcore.runs import create_run, move_up, open_run, queued_runs

DATASET = {"name": "demo", "content_hash": "abc", "mode": "multiclass", "classes": ["bg", "a"], "channels": 3}
SPLIT = {"train": ["1", "2"], "val": ["3"], "test": ["4"]}


def queue(ws, n):
    runs = []
    for i in range(n):
        cfg = RunConfig(model=ModelConfig(depth=3, filters=8), train=TrainConfig(dataset="demo", epochs=2), name=f"q{i}")
        run = create_run(ws, cfg, dataset=DATASET, split=SPLIT)
        run.update_status(queued_at=1000.0 + i)
        runs.append(run.run_id)
    return runs


def order(ws):
    return [r.run_id for r in queued_runs(ws)]


def test_move_up_swaps_with_the_run_ahead(workspace):
    a, b, c = queue(workspace, 3)
    assert move_up(c, workspace) == [a, c, b]
    assert order(workspace) == [a, c, b]
    assert move_up(c, workspace) == [c, a, b]
    # a run queued afterwards still waits behind all of them
    (d,) = [r for r in queue(workspace, 1)]
    open_run(d, workspace).update_status(queued_at=2000.0)
    assert order(workspace) == [c, a, b, d]


def test_move_up_refuses_the_front_and_runs_not_waiting(workspace):
    a, b = queue(workspace, 2)
    with pytest.raises(ValueError, match="front of the queue already"):
        move_up(a, workspace)
    open_run(b, workspace).update_status(state="running")
    with pytest.raises(ValueError, match="not waiting in the queue"):
        move_up(b, workspace)
    with pytest.raises(FileNotFoundError):
        move_up("no-such-run", workspace)


def test_move_up_with_equal_queue_times(workspace):
    a, b, c = queue(workspace, 3)
    for r in (a, b, c):
        open_run(r, workspace).update_status(queued_at=5.0)
    before = order(workspace)
    assert move_up(before[2], workspace) == [before[0], before[2], before[1]]


def test_cancel_a_queued_run(workspace):
    from segcore.queue import stop

    a, b = queue(workspace, 2)
    status = stop(a, workspace)
    assert status["state"] == "stopped"
    assert order(workspace) == [b]

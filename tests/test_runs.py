"""Run folders: names, atomic files, the true state of dead runs, notes, delete."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from segcore.config import ModelConfig, RunConfig, TrainConfig
from segcore.runs import (
    HEARTBEAT_STALE_S,
    RunFolder,
    create_run,
    delete_run,
    list_runs,
    new_run_id,
    open_run,
    queued_runs,
    set_notes,
    set_tags,
)

CFG = RunConfig(model=ModelConfig(depth=4, filters=32), train=TrainConfig(dataset="demo", epochs=3))
DATASET = {"name": "demo", "content_hash": "abc", "mode": "multiclass", "classes": ["bg", "a", "b"], "channels": 3}
SPLIT = {"train": ["1", "2"], "val": ["3"], "test": ["4"]}


def make(ws, cfg=CFG, now=None):
    return create_run(ws, cfg, dataset=DATASET, split=SPLIT, now=now)


def test_run_id_is_readable_and_unique():
    now = datetime(2026, 11, 22, 20, 30, 45, tzinfo=timezone.utc)
    rid = new_run_id(CFG, now)
    assert re.fullmatch(r"20261122-203045-unet-d4f32-demo-[0-9a-f]{4}", rid)
    enc = RunConfig(model=ModelConfig(encoder="vgg16", freeze="fine_tune", fine_tune_after=5))
    assert "-vgg16-ft5-demo-" in new_run_id(enc, now)
    assert len({new_run_id(CFG, now) for _ in range(50)}) > 40


def test_create_run_keeps_the_time_it_is_given(workspace):
    """``now`` names the folder and stamps created_at and queued_at, so a list of runs made in one second keeps its order."""
    first = make(workspace, now=datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone.utc))
    second = make(workspace, now=datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc))
    assert first.run_id.startswith("20260101-000000-")
    assert first.read_meta()["created_at"] == "2026-01-01T00:00:00Z"
    assert first.read_status()["queued_at"] == datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    assert [s.run_id for s in list_runs(workspace)] == [second.run_id, first.run_id]


def test_create_writes_config_status_and_reads_back(workspace):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    run = make(workspace, now=now)
    assert run.run_id.startswith("20260102-030405-unet-d4f32-demo-")
    assert run.read_config() == CFG
    meta = json.loads(run.config_path.read_text())
    assert meta["split"] == SPLIT and meta["dataset"]["content_hash"] == "abc"
    status = run.read_status()
    assert status["state"] == "queued" and status["epochs"] == 3
    # two runs created in the same second get different folders
    assert make(workspace, now=now).run_id != run.run_id


def test_history_round_trip_and_no_temp_files_left(workspace):
    run = make(workspace)
    rows = [{"epoch": 1, "loss": 0.5, "val_dice": 0.25}, {"epoch": 2, "loss": 0.25, "val_dice": 0.5, "lr": 1e-4}]
    run.write_history(rows)
    back = run.read_history()
    assert back[0] == {"epoch": 1, "loss": 0.5, "val_dice": 0.25, "lr": None}
    assert back[1]["lr"] == pytest.approx(1e-4) and back[1]["epoch"] == 2
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


def test_dead_pid_is_interrupted_live_pid_is_running(workspace):
    run = make(workspace)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run.update_status(state="running", pid=proc.pid, heartbeat=time.time())
    summary = {s.run_id: s for s in list_runs(workspace)}[run.run_id]
    assert summary.state == "interrupted"
    assert "no longer running" in summary.message
    assert run.read_status()["state"] == "running"  # the file is not rewritten by a reader

    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
    assert run.true_status()["state"] == "running"
    old = time.time() - HEARTBEAT_STALE_S - 5
    run.update_status(heartbeat=old)
    assert run.true_status()["state"] == "interrupted"
    assert "no heartbeat" in run.true_status()["message"]


def test_transition_only_from_allowed_states(workspace):
    run = make(workspace)
    assert run.transition(("running",), state="stopped") is None
    assert run.transition(("queued",), state="stopped")["state"] == "stopped"
    with pytest.raises(ValueError, match="not one of"):
        run.update_status(state="exploded")


def test_notes_tags_and_summary(workspace):
    run = make(workspace, cfg=RunConfig(train=TrainConfig(dataset="demo"), tags=("baseline",), name="first"))
    set_notes(run.run_id, "looks good on cells", workspace)
    set_tags(run.run_id, ["baseline", "review", "review", " "], workspace)
    s = run.summary()
    assert s.notes == "looks good on cells"
    assert s.tags == ["baseline", "review"]
    assert s.name == "first" and s.mode == "multiclass"
    run.update_status(state="finished", best={"val_dice": 0.8, "epoch": 3}, test={"macro_dice": 0.7})
    s = run.summary()
    assert (s.state, s.best_val_dice, s.test["macro_dice"]) == ("finished", 0.8, 0.7)


def test_open_by_prefix_and_errors(workspace):
    run = make(workspace)
    assert open_run(run.run_id[:-3], workspace).run_id == run.run_id
    with pytest.raises(FileNotFoundError, match="no run 'nope'"):
        open_run("nope", workspace)


def test_delete_refuses_active_runs(workspace):
    run = make(workspace)
    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
    with pytest.raises(ValueError, match="stop it first"):
        delete_run(run.run_id, workspace)
    run.update_status(state="finished")
    delete_run(run.run_id, workspace)
    assert not run.path.exists()
    assert list_runs(workspace) == []


def test_queue_order_is_queue_time(workspace):
    a, b, c = make(workspace), make(workspace), make(workspace)
    a.update_status(queued_at=30.0)
    b.update_status(queued_at=10.0)
    c.update_status(queued_at=20.0, state="finished")
    assert [r.run_id for r in queued_runs(workspace)] == [b.run_id, a.run_id]


def test_stop_request_file(workspace):
    run = make(workspace)
    assert not run.stop_requested()
    run.request_stop()
    assert run.stop_requested()
    run.clear_stop()
    assert not RunFolder(run.path).stop_requested()


def test_rerun_keeps_settings_and_split(workspace):
    import sys
    from pathlib import Path

    from segcore.queue import launch, rerun

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _train_helpers import make_shapes_dataset

    make_shapes_dataset(workspace, "shapes", n=10)
    cfg = RunConfig(model=ModelConfig(depth=3, filters=8), train=TrainConfig(dataset="shapes", image_size=32, seed=9))
    first = launch(cfg, workspace, start_worker=False)
    second = rerun(first, workspace, start_worker=False)
    a, b = open_run(first, workspace), open_run(second, workspace)
    assert second != first
    from dataclasses import replace

    from segcore.training.device import configured_backend

    # launch fills in the backend it was asked for ("auto": this process's $KERAS_BACKEND) and the
    # learning rate the run starts from (none named: the plain U-Net's own, 1e-3)
    assert cfg.train.learning_rate is None and cfg.learning_rate == 1e-3
    assert a.read_config() == replace(cfg, train=replace(cfg.train, backend=configured_backend(), learning_rate=1e-3))
    assert b.read_config() == a.read_config()
    assert b.read_meta()["split"] == a.read_meta()["split"]
    assert b.read_meta()["rerun_of"] == first and b.read_status()["state"] == "queued"


def test_launch_refuses_bad_settings_before_queueing(workspace):
    from segcore.queue import launch

    with pytest.raises(FileNotFoundError, match="no dataset named 'nope'"):
        launch(RunConfig(train=TrainConfig(dataset="nope")), workspace, start_worker=False)
    with pytest.raises(ValueError, match="setting train.optimizer is 'adamx'; expected one of 'adam', "):
        launch(RunConfig(train=TrainConfig(optimizer="adamx")), workspace, start_worker=False)
    with pytest.raises(ValueError, match="setting model.fine_tune_after is 0; expected at least 1 with model.freeze 'fine_tune'"):
        launch(RunConfig(model=ModelConfig(encoder="vgg16", freeze="fine_tune")), workspace, start_worker=False)
    assert list_runs(workspace) == []


def test_launch_checks_image_size_against_the_model(workspace):
    import sys
    from pathlib import Path

    from segcore.queue import launch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _train_helpers import make_shapes_dataset

    make_shapes_dataset(workspace, "shapes", n=6)
    with pytest.raises(ValueError, match="setting train.image_size is 60; expected a multiple of 2\\^depth = 8 .* e.g. 64"):
        launch(RunConfig(model=ModelConfig(depth=3), train=TrainConfig(dataset="shapes", image_size=60)), workspace,
               start_worker=False)
    with pytest.raises(ValueError, match="to fit encoder 'resnet50'"):
        launch(RunConfig(model=ModelConfig(encoder="resnet50"), train=TrainConfig(dataset="shapes", image_size=48)),
               workspace, start_worker=False)


def test_run_folders_do_not_import_the_launcher():
    """Arrows run one way: the launcher uses run folders, never the other way round (no import circle)."""
    import ast
    from pathlib import Path

    import segcore.runs

    tree = ast.parse(Path(segcore.runs.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("segcore.training")], imported


def _finished(ws, dataset="demo", study=None, report=True):
    cfg = RunConfig(model=ModelConfig(depth=3, filters=8), train=TrainConfig(dataset=dataset, epochs=3))
    run = create_run(ws, cfg, dataset=dict(DATASET, name=dataset), split=SPLIT, extra={"sweep": {"id": study, "label": "x"}} if study else None)
    run.update_status(state="finished", epoch=3)
    if report:
        run.write_evaluation({"per_class": [], "per_image": [], "macro": {"dice": 0.5}, "pixel_accuracy": 0.9})
    return run


def test_results_are_finished_evaluated_runs_grouped_by_dataset_and_study(workspace):
    from segcore.runs import result_datasets, result_studies, run_results, select_results

    old = _finished(workspace, study="sweep-20260101-000000-demo")
    new = _finished(workspace, study="sweep-20260202-000000-demo")
    plain = _finished(workspace)
    cells = _finished(workspace, dataset="cells", study="sweep-20260303-000000-cells")
    _finished(workspace, report=False)  # finished without a test split: no row
    make(workspace)  # queued: no row
    damaged = _finished(workspace)
    damaged.evaluation_path.write_text("{not json")
    summaries = sorted(list_runs(workspace), key=lambda s: s.run_id)
    results = run_results(summaries)
    assert [r.summary.run_id for r in results] == sorted(r.run_id for r in (old, new, plain, cells))
    assert {r.summary.run_id: r.study for r in results}[plain.run_id] == ""
    assert results[0].report["macro"] == {"dice": 0.5}
    assert result_datasets(results) == ["cells", "demo"]
    assert result_studies(results, "demo") == ["sweep-20260202-000000-demo", "sweep-20260101-000000-demo"]  # newest first
    assert [r.summary.run_id for r in select_results(results, "demo")] == sorted(r.run_id for r in (old, new, plain))
    assert [r.summary.run_id for r in select_results(results, "demo", "sweep-20260101-000000-demo")] == [old.run_id]
    assert select_results(results, "cells", "sweep-20260202-000000-demo") == []


def test_model_path_is_best_else_last(tmp_path):
    """One rule for every reader: the best checkpoint, else the last one (a run stopped before its best)."""
    from segcore.runs import RunFolder

    run = RunFolder(tmp_path / "r")
    run.checkpoints_dir.mkdir(parents=True)
    assert not run.has_model and run.model_path == run.last_model_path
    run.last_model_path.write_bytes(b"last")
    assert run.has_model and run.model_path == run.last_model_path
    run.best_model_path.write_bytes(b"best")
    assert run.model_path == run.best_model_path

"""Encoder fine-tuning after N frozen epochs, and binary-to-multiclass transfer between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
from segcore.runs import RunFolder
from segcore.queue import launch

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _train_helpers import make_shapes_dataset  # noqa: E402


def train_here(ws, cfg) -> RunFolder:
    run_id = launch(cfg, ws, start_worker=False)
    env = dict(os.environ, SEGCORE_WORKSPACE=str(ws.root), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "segcore.queue.process", str(ws.run_dir(run_id))],
                          capture_output=True, text=True, env=env, cwd=PROJECT, timeout=400)
    run = RunFolder(ws.run_dir(run_id))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def train_cfg(dataset, epochs, **model):
    return RunConfig(
        model=ModelConfig(**model),
        train=TrainConfig(dataset=dataset, image_size=32, epochs=epochs, batch_size=8, learning_rate=1e-3,
                          early_stopping_patience=0, augment=AugmentConfig(enabled=False),
                          split=SplitConfig(val_fraction=0.2, test_fraction=0.1)),
    )


def test_fine_tune_after_n_epochs_lowers_the_rate_and_unfreezes(workspace):
    make_shapes_dataset(workspace, "shapes", n=16)
    run = train_here(workspace, train_cfg("shapes", 2, encoder="mobilenetv2", freeze="fine_tune",
                                          fine_tune_after=1, fine_tune_lr_factor=0.1, filters=4))
    status = run.read_status()
    assert status["state"] == "finished", status
    lrs = [row["lr"] for row in run.read_history()]
    assert lrs == pytest.approx([1e-3, 1e-4])
    assert run.read_train_state()["fine_tuned"] is True
    assert "fine-tuning the encoder from epoch 2" in run.log_path.read_text()


def test_binary_run_weights_start_a_multiclass_run(workspace):
    make_shapes_dataset(workspace, "discs", n=12, mode="binary")
    make_shapes_dataset(workspace, "shapes", n=12, mode="multiclass")
    source = train_here(workspace, train_cfg("discs", 1, depth=3, filters=8))
    target = train_here(workspace, train_cfg("shapes", 1, depth=3, filters=8, init_from_run=source.run_id))
    report = json.loads(target.transfer_path.read_text())
    assert report["source_run"] == source.run_id
    assert "enc0_conv1" in " ".join(report["loaded"])
    assert any(s["layer"].endswith("head") for s in report["skipped"])  # new head: 1 -> 3 channels
    assert target.read_status()["state"] == "finished"

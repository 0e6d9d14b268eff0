"""End to end on the demo data: `train --wait --json`, `runs`, `eval`, `predict`.

One tiny run (depth 3, 8 filters, 32 px, 2 epochs, 32 demo images) trained
through the CLI, the queue worker and the training process, then checked
file by file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from segcore.data.demo import make_demo
from segcore.runs import RunFolder
from segcore.workspace import get_workspace

pytestmark = [pytest.mark.slow, pytest.mark.backend]

PROJECT = Path(__file__).resolve().parent.parent


def cli(ws_root, *args, check=True, timeout=300):
    env = dict(os.environ, SEGCORE_WORKSPACE=str(ws_root), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "segcore", *args], capture_output=True, text=True, env=env,
                          cwd=PROJECT, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"segcore {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "ws"
    ws = get_workspace(root)
    make_demo(ws, num_samples=32, size=64)
    proc = cli(root, "train", "--dataset", "demo", "--encoder", "none", "--depth", "3", "--filters", "8",
               "--image-size", "32", "--epochs", "2", "--batch-size", "8", "--seed", "0", "--wait", "--json")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"--json must print exactly one line, got {proc.stdout!r}"
    return ws, json.loads(lines[0])


def test_train_wait_json_prints_final_state_and_test_metrics(trained):
    ws, result = trained
    assert result["state"] == "finished", result
    assert result["epochs_done"] == 2
    for key in ("macro_dice", "macro_iou", "micro_dice", "micro_iou", "pixel_accuracy"):
        assert 0.0 <= result["test"][key] <= 1.0
    run = RunFolder(ws.run_dir(result["run_id"]))
    status = run.read_status()
    assert status["state"] == "finished" and status["test"] == result["test"]


def test_run_folder_holds_everything(trained):
    ws, result = trained
    run = RunFolder(ws.run_dir(result["run_id"]))
    meta = run.read_meta()
    split = meta["split"]
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (22, 5, 5)
    assert meta["dataset"]["content_hash"] and meta["dataset"]["mode"] == "multiclass"
    env = meta["environment"]
    assert env["backend"] == os.environ.get("KERAS_BACKEND", "tensorflow")
    assert env["device"] in ("cpu", "gpu") and env["versions"]["keras"]
    history = run.read_history()
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"loss", "val_loss", "val_dice", "lr"} <= set(history[0])
    assert run.best_model_path.is_file() and run.last_model_path.is_file()
    # Wall-clock epoch ends, after the moment training began: what bench/run_throughput.py times.
    started = float(run.read_status()["training_started_at"])
    ends = [float(row["ended_at"]) for row in history]
    assert started < ends[0] < ends[1]
    assert run.read_train_state()["epoch"] == 2
    report = run.read_evaluation()
    assert [row["id"] for row in report["per_image"]] == split["test"]
    assert [row["name"] for row in report["per_class"]] == ["background", "disc", "square", "triangle"]
    index = json.loads((run.predictions_dir / "index.json").read_text())
    assert index["ids"] == split["test"]
    sample = split["test"][0]  # cached at the image's own size, as scored
    assert run.read_cached_probs(sample).shape[:2] == cv2.imread(str(ws.dataset_dir("demo") / "images" / f"{sample}.png")).shape[:2]
    with np.load(run.predictions_dir / f"{split['test'][0]}.npz") as data:
        probs = data["probs"]
    assert probs.shape == (64, 64, 4) and probs.dtype == np.uint8  # the demo images here are 64 px; the model 32
    # softmax probabilities quantised to uint8 still sum to about 255 per pixel
    assert np.abs(probs.astype(int).sum(-1) - 255).max() <= 3
    assert "epoch 2/2" in run.log_path.read_text()
    assert any(run.tensorboard_dir.rglob("events.out.tfevents*"))


def test_runs_json_lists_the_run(trained):
    ws, result = trained
    rows = json.loads(cli(ws.root, "runs", "--json").stdout)
    row = next(r for r in rows if r["run_id"] == result["run_id"])
    assert row["state"] == "finished" and row["dataset"] == "demo" and row["model"] == "unet-d3f8"
    assert row["best_val_dice"] == result["best"]["val_dice"]
    assert row["test"]["macro_dice"] == result["test"]["macro_dice"]


def test_eval_recomputes_the_numbers_in_the_folder(trained):
    ws, result = trained
    report = json.loads(cli(ws.root, "eval", result["run_id"], "--json").stdout)
    stored = RunFolder(ws.run_dir(result["run_id"])).read_evaluation()
    for avg in ("macro", "micro"):
        for key in ("dice", "iou", "precision", "recall"):
            assert report[avg][key] == pytest.approx(stored[avg][key], abs=1e-6), (avg, key)
    assert report["pixel_accuracy"] == pytest.approx(stored["pixel_accuracy"], abs=1e-6)


def test_predict_any_image_size(trained, tmp_path):
    ws, result = trained
    run = RunFolder(ws.run_dir(result["run_id"]))
    sample = run.read_meta()["split"]["test"][0]
    image = cv2.imread(str(ws.dataset_dir("demo") / "images" / f"{sample}.png"))
    image = cv2.resize(image, (50, 40))
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), image)
    out = tmp_path / "out" / "mask.png"
    info = json.loads(cli(ws.root, "predict", result["run_id"], str(src), "--out", str(out), "--json").stdout)
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (40, 50) and mask.dtype == np.uint8
    assert mask.max() <= 3 and info["size"] == [40, 50]
    assert sum(info["class_pixels"].values()) == 40 * 50


def test_predictor_matches_the_cached_test_predictions(trained):
    from segcore.prediction import Predictor, probs_to_mask

    ws, result = trained
    run = RunFolder(ws.run_dir(result["run_id"]))
    predictor = Predictor.from_folder(run)
    assert (predictor.image_size, predictor.channels, predictor.mode) == (32, 3, "multiclass")
    sample = run.read_meta()["split"]["test"][1]
    image = cv2.cvtColor(cv2.imread(str(ws.dataset_dir("demo") / "images" / f"{sample}.png")), cv2.COLOR_BGR2RGB)
    probs = predictor.predict_probs(image)  # the image as predict gets it: scored and cached at its own size
    cached = run.read_cached_probs(sample)
    assert probs.shape == cached.shape == image.shape[:2] + (4,)
    assert np.abs(probs - cached).max() <= 0.5 / 255 + 1e-4
    assert probs_to_mask(probs, "multiclass").shape == image.shape[:2]

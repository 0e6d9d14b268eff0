"""Checkpoints load after ``import segcore`` alone; a stopped-and-resumed run repeats an uninterrupted one;
a run trains on the backend it asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _train_helpers import wait_until
from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
from segcore.data.demo import make_demo
from segcore.runs import open_run

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.backend
def test_a_checkpoint_loads_after_import_segcore_only(tmp_path):
    """``import segcore, keras; keras.saving.load_model(path)`` (also compile=True) in a fresh process."""
    import keras

    from segcore import losses, metrics
    from segcore.models import build_model

    model = build_model(ModelConfig(depth=3, filters=4), image_size=16, channels=3, mode="multiclass", num_classes=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.get("auto", mode="multiclass"),
                  metrics=metrics.segmentation_metrics("multiclass", 3))
    x = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3)).astype("float32")
    y = keras.utils.to_categorical(np.random.default_rng(1).integers(0, 3, (4, 16, 16)), 3)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "best.keras"
    model.save(path)
    expected = np.asarray(model.predict(x, verbose=0))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", expected)
    code = (
        "import sys, numpy as np\n"
        "import segcore, keras\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"c = keras.saving.load_model({str(path)!r}, compile=True)\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"assert np.allclose(m.predict(x, verbose=0), np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-5)\n"
        "print(type(c.loss).__name__, int(keras.ops.convert_to_numpy(c.optimizer.iterations)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loss_name, iterations = proc.stdout.split()[-2:]
    assert loss_name == "DiceCrossentropy" and int(iterations) == 1  # the optimizer's state came back


def _cfg(epochs: int, **train) -> RunConfig:
    return RunConfig(
        model=ModelConfig(depth=3, filters=8),
        train=TrainConfig(dataset="demo", image_size=32, epochs=epochs, batch_size=4, seed=3, learning_rate=3e-3,
                          lr_schedule="cosine", early_stopping_patience=0, class_weighting=True,
                          augment=AugmentConfig(enabled=True), split=SplitConfig(val_fraction=0.2, test_fraction=0.1),
                          **train),
    )



def _wait_until(predicate, timeout=240.0):
    return wait_until(predicate, timeout)


# The columns a run's history holds that must repeat; "seconds" is wall time.
COMPARED = ("loss", "dice", "iou", "val_loss", "val_dice", "val_iou", "lr", "val_pixel_accuracy")


@pytest.mark.slow
@pytest.mark.backend
def test_stopped_and_resumed_run_repeats_the_uninterrupted_run(workspace):
    from segcore.queue import launch, resume, stop, wait_for

    make_demo(workspace, num_samples=24, size=32)
    epochs = 5
    whole = launch(_cfg(epochs), workspace)
    assert wait_for([whole], workspace, timeout=600)[whole]["state"] == "finished"
    parted = launch(_cfg(epochs), workspace)
    run = open_run(parted, workspace)
    _wait_until(lambda: (s := run.read_status()).get("state") == "running" and s.get("pid") and int(s.get("epoch", 0)) >= 2)
    status = stop(parted, workspace, wait=120)
    assert status["state"] == "stopped", status
    done = run.read_train_state()["epoch"]
    assert 1 <= done < epochs
    resume(parted, workspace)
    final = wait_for([parted], workspace, timeout=600)[parted]
    assert final["state"] == "finished" and final["resumed_from"] == done
    assert not any("optimizer" in w for w in final.get("warnings", [])), final["warnings"]
    a, b = open_run(whole, workspace).read_history(), run.read_history()
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == list(range(1, epochs + 1))
    for ra, rb in zip(a, b):
        for key in COMPARED:
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-5), (ra["epoch"], key, ra[key], rb[key], done)
    assert final["test"]["macro_dice"] == pytest.approx(wait_for([whole], workspace)[whole]["test"]["macro_dice"], abs=1e-4)


@pytest.mark.slow
def test_a_torch_launch_trains_on_torch_beside_a_tensorflow_worker(workspace):
    """The queue worker lives in a TensorFlow environment; a run launched with KERAS_BACKEND=torch still
    trains on torch, and the run folder's environment block says so."""
    pytest.importorskip("torch")
    from segcore.queue import launch

    make_demo(workspace, num_samples=16, size=32)
    env = dict(os.environ, SEGCORE_WORKSPACE=str(workspace.root), PYTHONPATH=str(PROJECT), KERAS_BACKEND="tensorflow")
    first_cfg = RunConfig(model=ModelConfig(depth=3, filters=8),
                          train=TrainConfig(dataset="demo", image_size=32, epochs=3, batch_size=4, backend="tensorflow",
                                            early_stopping_patience=0))
    first = launch(first_cfg, workspace)  # starts a worker whose environment is this test's
    lock = workspace.root / ".queue" / "worker.lock"
    _wait_until(lambda: lock.read_text().strip().isdigit())
    args = [sys.executable, "-m", "segcore", "train", "--dataset", "demo", "--depth", "3", "--filters", "8",
            "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--wait", "--json", "--quiet"]
    proc = subprocess.run(args, capture_output=True, text=True, env={**env, "KERAS_BACKEND": "torch"}, cwd=PROJECT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    second = open_run(result["run_id"], workspace)
    meta = second.read_meta()
    assert meta["config"]["train"]["backend"] == "torch"
    assert meta["environment"]["backend"] == "torch" and meta["environment"]["requested_backend"] == "torch"
    assert open_run(first, workspace).read_meta()["environment"]["backend"] == "tensorflow"
    assert "on the torch backend" in (workspace.root / ".queue" / "worker.log").read_text()

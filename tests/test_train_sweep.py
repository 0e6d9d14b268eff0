"""The encoder study: one split and seed for every model, honest weights notes, the results table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


from segcore.config import RunConfig, TrainConfig
from segcore.runs import open_run
from segcore.queue import stop
from segcore.queue.sweep import queue_sweep, write_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _train_helpers import make_shapes_dataset  # noqa: E402


def test_sweep_queues_the_paper_set_on_one_split(workspace, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(workspace.root / "no-keras-cache"))
    make_shapes_dataset(workspace, "shapes", n=20)
    # the worker is not wanted here: stub it out, the runs stay queued
    monkeypatch.setattr("segcore.queue.launcher.ensure_worker", lambda ws=None: False)
    base = RunConfig(train=TrainConfig(dataset="shapes", image_size=32, epochs=4, seed=5))
    sweep = queue_sweep(base, workspace)
    labels = [r["label"] for r in sweep["runs"]]
    assert labels == ["U-Net", "VGG16 frozen", "VGG16 fine-tuned", "DenseNet121", "ResNet50", "MobileNetV2"]
    metas = [open_run(r["run_id"], workspace).read_meta() for r in sweep["runs"]]
    assert all(m["split"] == metas[0]["split"] for m in metas)
    assert {m["config"]["train"]["seed"] for m in metas} == {5}
    ft = metas[2]["config"]["model"]
    assert (ft["encoder"], ft["freeze"], ft["fine_tune_after"]) == ("vgg16", "fine_tune", 2)
    # no ImageNet weights in the (empty) cache: from scratch, and the notes say so
    assert all(r["weights"] == "none" for r in sweep["runs"])
    assert len(sweep["notes"]) == 5 and "not in the Keras cache" in sweep["notes"][0]

    # finished runs fill the table
    for n, r in enumerate(sweep["runs"]):
        run = open_run(r["run_id"], workspace)
        if n < 2:
            run.update_status(state="finished", epoch=4, test={"all_dice": 0.7, "macro_dice": 0.5 + n / 10, "macro_iou": 0.4,
                                                               "micro_dice": 0.6, "micro_iou": 0.45, "pixel_accuracy": 0.9})
        else:
            stop(r["run_id"], workspace)
    table = write_table(sweep["sweep_id"], workspace)
    csv_text = Path(table["csv"]).read_text().splitlines()
    assert csv_text[0].startswith("model,encoder,weights,freeze,state,epochs,all_dice,macro_dice")
    assert csv_text[1].startswith("U-Net,none,none,trainable,finished,4,0.7000,0.5000,0.4000,0.6000,0.4500,0.9000")
    assert ",stopped," in csv_text[3]
    md = Path(table["markdown"]).read_text()
    assert "| VGG16 frozen | none | finished | 4 | 0.700 | 0.600 | 0.400 | 0.600 | 0.450 | 0.900 |" in md
    assert "not in the Keras cache" in md


def test_sweep_cli_needs_a_dataset(workspace):
    env = dict(os.environ, SEGCORE_WORKSPACE=str(workspace.root))
    proc = subprocess.run([sys.executable, "-m", "segcore", "sweep"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert proc.returncode == 1 and "sweep needs --dataset" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "segcore", "sweep", "--table", "sweep-x"], capture_output=True,
                          text=True, env=env, cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert proc.returncode == 1 and "no sweep 'sweep-x'" in proc.stderr

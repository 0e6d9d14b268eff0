"""AppTest of reviewing runs: the Runs table's settings columns and filters, two runs' settings side by
side, settings against the score, the pace of a running run, smoothed and log-scale curves (Runs and
Train), and the TensorBoard command."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from streamlit.testing.v1 import AppTest

from segcore import runs as runs_mod
from segcore.config import ModelConfig, RunConfig, TrainConfig
from test_pages import APP, CLASSES, demo_ws, texts  # noqa: F401  (fixtures)

_SINCE = datetime.now(timezone.utc) - timedelta(hours=2)
_count = iter(range(10_000))


def app(timeout=60) -> AppTest:
    return AppTest.from_file(APP, default_timeout=timeout)


def timed_rows(epochs, seconds=42.0, ended_last=None, rate=1.0):
    """History rows with the trainer's time columns: ``seconds`` of wall time per epoch (the first 60 s);
    the loss falls as ``1 / (rate * epoch)``, with some noise."""
    rows = []
    for e in range(1, epochs + 1):
        t = 60.0 if e == 1 else seconds
        rows.append({"epoch": e, "loss": 1.0 / (rate * e) + 0.05 * (e % 2), "val_loss": 1.2 / (rate * e), "val_dice": 0.1 * e,
                     "seconds": t - 2.0, "time_steps": t - 4.0, "time_validation": 2.0, "time_health": 1.0,
                     "time_checkpoint": 0.5, "time_other": 0.5, "ended_at": (ended_last or time.time()) - (epochs - e) * t})
    return rows


def make_run(ws, name, *, lr=1e-3, loss="dice", encoder="none", image_size=32, batch=8, epochs=5, done=None,
             state="finished", all_dice=None, dataset="demo", budget=None, seconds=42.0):
    """A run folder with the given settings, a timed history and (when given) a test Dice over all classes."""
    cfg = RunConfig(model=ModelConfig(encoder=encoder, depth=3, filters=8),
                    train=TrainConfig(dataset=dataset, image_size=image_size, batch_size=batch, epochs=epochs,
                                      learning_rate=lr, loss=loss, budget_minutes=budget), name=name)
    ids = [f"s{i:03d}" for i in range(20)]
    run = runs_mod.create_run(
        ws, cfg, dataset={"name": dataset, "content_hash": f"hash-{dataset}-20", "mode": "multiclass",
                          "classes": [c.name for c in CLASSES], "channels": 3},
        split={"train": ids[:14], "val": ids[14:17], "test": ids[17:]}, now=_SINCE + timedelta(seconds=next(_count)),
    )
    done = epochs if done is None else done
    if done:
        run.write_history(timed_rows(done, seconds, ended_last=time.time() - 10, rate=0.5 + (all_dice or 0.5)))
    fields = dict(state=state, epoch=done, epochs=epochs, started_at=runs_mod.iso(time.time() - 300),
                  best={"val_dice": 0.1 * done, "epoch": done})
    if state == "running":
        fields.update(pid=os.getpid(), heartbeat=time.time(), message="training")
    else:
        fields.update(finished_at="2026-01-01T00:02:05Z")
    if all_dice is not None:
        fields["test"] = {"all_dice": all_dice, "macro_dice": all_dice - 0.1}
    run.update_status(**fields)
    return run


def open_runs(at: AppTest) -> AppTest:
    at.run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    return at


def runs_table(at):
    return at.dataframe[0].value  # the first table of the page


def diff_table(at):
    return next(d.value for d in at.dataframe if "setting" in d.value.columns)


def chart(at, key: str) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if key in c.proto.id).proto.spec)


def test_runs_table_shows_settings_and_filters_by_encoder_and_loss(demo_ws):
    make_run(demo_ws, "a", lr=1e-3, loss="dice", image_size=32, batch=4)
    make_run(demo_ws, "b", lr=1e-4, loss="focal", encoder="vgg16", image_size=64, epochs=7)
    make_run(demo_ws, "c", lr=3e-4, loss="dice", encoder="vgg16")
    at = open_runs(app())
    table = runs_table(at).set_index("run")
    assert table.loc["a", ["learning rate", "image size", "batch", "norm", "loss", "encoder", "max epochs"]].tolist() == [
        1e-3, 32, 4, "group", "dice", "none", 5]
    assert table.loc["b", "learning rate"] == 1e-4 and table.loc["b", "max epochs"] == 7
    assert at.multiselect(key="runs_loss").options == ["dice", "focal"]
    at.multiselect(key="runs_encoder").select("vgg16").run()
    assert sorted(runs_table(at)["run"]) == ["b", "c"]
    at.multiselect(key="runs_loss").select("dice").run()
    assert list(runs_table(at)["run"]) == ["c"]
    assert "1 of 3 runs" in texts(at)
    at.toggle(key="runs_settings_columns").set_value(False).run()
    assert "learning rate" not in runs_table(at).columns and "status" in runs_table(at).columns


def test_settings_of_two_runs_only_what_differs_then_everything(demo_ws):
    a = make_run(demo_ws, "a", lr=1e-3, loss="dice")
    b = make_run(demo_ws, "b", lr=1e-2, loss="dice", batch=2)
    at = open_runs(app())
    at.selectbox(key="diff_a").set_value(a.run_id)
    at.selectbox(key="diff_b").set_value(b.run_id).run()
    diff = diff_table(at)
    assert diff["setting"].tolist() == ["train.batch_size", "train.learning_rate", "name"]
    assert diff.set_index("setting").loc["train.learning_rate", ["a", "b"]].tolist() == ["0.001", "0.01"]
    assert "3 setting(s) differ; *All settings* shows the rest." in texts(at)
    at.toggle(key="diff_all").set_value(True).run()
    every = diff_table(at)
    assert len(every) > 20 and "train.loss" in set(every["setting"])
    assert every.set_index("setting").loc["train.loss", ["a", "b"]].tolist() == ["dice", "dice"]
    assert f"3 setting(s) differ of {len(every)}." in texts(at)
    at.selectbox(key="diff_b").set_value(a.run_id).run()
    assert "Pick two different runs." in texts(at)


def test_settings_against_the_score(demo_ws):
    make_run(demo_ws, "a", lr=1e-3, loss="dice", all_dice=0.71)
    make_run(demo_ws, "b", lr=1e-2, loss="focal", all_dice=0.64)
    make_run(demo_ws, "c", lr=1e-4, loss="dice", encoder="vgg16", all_dice=0.80)
    make_run(demo_ws, "training", state="running", done=2, all_dice=None)
    at = open_runs(app())
    assert not at.exception
    spec = chart(at, "settings_parallel")
    par = spec["data"][0]
    assert par["type"] == "parcoords"
    labels = [d["label"] for d in par["dimensions"]]
    assert labels == ["learning rate (log scale)", "loss", "encoder", "test Dice, all classes"]
    assert par["dimensions"][1]["ticktext"] == ["dice", "focal"]
    assert sorted(par["line"]["color"]) == [0.64, 0.71, 0.80]
    body = texts(at)
    assert "Left out, the same for every run: image size 32, batch 8, norm group, max epochs 5." in body
    assert "Not drawn: training (no score yet)." in body
    # While runs train, the best validation Dice is the score they have.
    at.selectbox(key="parallel_score").set_value("best val Dice").run()
    spec = chart(at, "settings_parallel")
    assert spec["data"][0]["dimensions"][-1]["label"] == "best val Dice" and len(spec["data"][0]["line"]["color"]) == 4


def test_settings_against_the_score_with_one_scored_run_or_equal_settings(demo_ws):
    make_run(demo_ws, "a", all_dice=0.7)
    make_run(demo_ws, "b")
    at = open_runs(app())
    assert "only one run shown has one so far, and the view needs two." in texts(at)
    assert not [c for c in at.get("plotly_chart") if "settings_parallel" in c.proto.id]
    make_run(demo_ws, "c", all_dice=0.6)  # the same settings as "a"
    at = open_runs(app())
    assert "Every setting shown in the table is the same for these 2 runs" in texts(at)


def test_settings_against_the_score_one_dataset_at_a_time(demo_ws):
    from test_pages import make_dataset

    make_dataset(demo_ws, "cells")
    make_run(demo_ws, "a", lr=1e-3, all_dice=0.7)
    make_run(demo_ws, "b", lr=1e-2, all_dice=0.6)
    make_run(demo_ws, "x", lr=1e-4, all_dice=0.9, dataset="cells")
    at = open_runs(app())
    assert at.selectbox(key="parallel_dataset").options == ["cells", "demo"]
    at.selectbox(key="parallel_dataset").set_value("demo").run()
    assert sorted(chart(at, "settings_parallel")["data"][0]["line"]["color"]) == [0.6, 0.7]


def test_running_run_shows_its_pace_on_runs_and_train(demo_ws):
    running = make_run(demo_ws, "live", state="running", epochs=10, done=4)
    at = open_runs(app())
    at.selectbox(key="run_detail").set_value(running.run_id).run()
    captions = [c.value for c in at.caption]
    pace = next(c for c in captions if "per epoch" in c)
    assert pace.startswith(":material/timer: 42 s per epoch · about ") and pace.endswith(" min left")
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    assert any(c.value.startswith(":material/timer: 42 s per epoch · about ") for c in at.caption)


def test_budget_run_says_its_budget(demo_ws):
    running = make_run(demo_ws, "budget", state="running", epochs=50, done=2, budget=3.0, seconds=30.0)
    runs_mod.RunFolder(running.path).write_train_state({"epoch": 2, "budget_spent_s": 100.0})
    at = open_runs(app())
    at.selectbox(key="run_detail").set_value(running.run_id).run()
    assert any("(time budget of 3 min)" in c.value for c in at.caption)


def test_curves_smoothing_and_log_scale_on_runs_and_train(demo_ws):
    make_run(demo_ws, "a", epochs=6)
    make_run(demo_ws, "live", state="running", epochs=10, done=5)
    at = open_runs(app())
    assert len(chart(at, "runs_curves")["data"]) == 4  # two runs, train and validation
    at.slider(key="curve_smoothing").set_value(0.9)
    at.toggle(key="curve_log").set_value(True).run()
    spec = chart(at, "runs_curves")
    assert len(spec["data"]) == 8 and spec["layout"]["yaxis"]["type"] == "log"
    raw = [t for t in spec["data"] if t.get("opacity") == 0.25]
    assert len(raw) == 4 and all(t["showlegend"] is False for t in raw)
    at.switch_page("app_pages/train.py").run()
    at.slider(key="train_curves_smoothing").set_value(0.6).run()
    assert not at.exception
    loss = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "_loss" in c.proto.id)
    assert len(loss["data"]) == 4 and loss["data"][0]["opacity"] == 0.25


def test_tensorboard_command_where_logs_exist(demo_ws):
    with_logs = make_run(demo_ws, "tb")
    without = make_run(demo_ws, "plain")
    (with_logs.tensorboard_dir / "train").mkdir(parents=True)
    (with_logs.tensorboard_dir / "train" / "events.out.tfevents.1.host.1.v2").write_bytes(b"\0")
    at = open_runs(app())
    at.selectbox(key="run_detail").set_value(with_logs.run_id).run()
    assert [c.value for c in at.code if c.value.startswith("tensorboard")] == [f"tensorboard --logdir {with_logs.tensorboard_dir}"]
    at.selectbox(key="run_detail").set_value(without.run_id).run()
    assert not [c for c in at.code if c.value.startswith("tensorboard")]
    assert any(c.value.startswith("No TensorBoard logs for this run") for c in at.caption)

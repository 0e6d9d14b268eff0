"""segcore.run_review and what draws it: run settings, the difference of two runs' settings, settings
against a score (parallel coordinates), TensorBoard's smoothing, the pace of training, TensorBoard logs."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pytest

from segcore import run_review as rr
from segcore import runs as runs_mod
from segcore import visualize as viz
from segcore.config import ModelConfig, RunConfig, TrainConfig
from segcore.runs import RunSummary


def config(**train) -> RunConfig:
    model = {k: train.pop(k) for k in ("encoder", "norm", "depth") if k in train}
    return RunConfig(model=ModelConfig(**{"depth": 3, "filters": 8, **model}), train=TrainConfig(image_size=32, **train))


# -- settings of a run ----------------------------------------------------------------------------


def test_run_settings_resolve_the_learning_rate_and_the_norm_of_older_settings():
    plain = rr.run_settings(config(batch_size=4, loss="dice", epochs=7))
    assert plain == {"learning rate": 1e-3, "image size": 32, "batch": 4, "norm": "group", "loss": "dice",
                     "encoder": "none", "max epochs": 7}
    assert rr.run_settings(config(encoder="vgg16"))["learning rate"] == 1e-4  # the encoder's own rate
    old = config().to_dict()
    del old["model"]["norm"]
    old["model"]["batch_norm"] = True  # written before "norm" existed
    assert rr.run_settings(old)["norm"] == "batch"
    assert rr.run_settings({}) == dict.fromkeys(rr.SETTING_COLUMNS)  # unreadable settings: nothing, not the defaults
    assert rr.run_settings({"model": "garbage"}) == dict.fromkeys(rr.SETTING_COLUMNS)


def test_flatten_settings_uses_dotted_keys():
    flat = rr.flatten_settings({"train": {"learning_rate": 0.01, "split": {"seed": 3, "test_ids": ["a", "b"]}}, "name": "x", "e": {}})
    assert flat == {"train.learning_rate": 0.01, "train.split.seed": 3, "train.split.test_ids": ("a", "b"), "name": "x", "e": {}}
    assert rr.flatten_settings(config())["model.encoder"] == "none"


def test_setting_differences_only_what_differs_or_everything():
    a = config(learning_rate=1e-3, loss="dice")
    b = dataclasses.replace(a, train=dataclasses.replace(a.train, learning_rate=1e-2), name="b")
    diffs = rr.setting_differences(a, b)
    assert [(d.key, d.a, d.b) for d in diffs] == [("train.learning_rate", 1e-3, 1e-2), ("name", "", "b")]
    every = rr.setting_differences(a, b, everything=True)
    assert len(every) == len(rr.flatten_settings(a)) and sum(d.differs for d in every) == 2
    assert [d.key for d in every] == list(rr.flatten_settings(a))
    assert rr.setting_differences(a, a.to_dict()) == []  # a RunConfig and its saved dict are the same settings


def test_setting_differences_line_up_settings_of_another_version():
    new = config().to_dict()
    old = config().to_dict()
    del old["model"]["norm"], old["train"]["tta"]  # keys an older version did not write: its defaults
    assert rr.setting_differences(new, old) == []
    # Settings that make no RunConfig (damaged, partial) are compared as they are; a key only one has is "not set".
    diffs = rr.setting_differences({"train": {"a": 1, "b": [1, 2]}}, {"train": {"a": 1.0, "b": [1, 3]}, "x": None})
    assert [(d.key, d.a, d.b) for d in diffs] == [("train.b", (1, 2), (1, 3)), ("x", rr.NOT_SET, None)]
    assert rr.setting_differences({"t": {"flag": True}}, {"t": {"flag": 1}})[0].differs  # true is not the number 1


def test_setting_text():
    assert [rr.setting_text(v) for v in (None, rr.NOT_SET, True, 0.0001, 5, ("a", "b"), (), "x", {})] == [
        "–", "not set", "true", "0.0001", "5", "a, b", "(none)", "x", "{}"]


def test_settings_diff_frame_and_its_shading():
    diffs = rr.setting_differences(config(loss="dice"), config(loss="focal", batch_size=2), everything=True)
    frame = viz.settings_diff_frame(diffs, "run a", "run b")
    assert list(frame.columns) == ["setting", "run a", "run b", "differs"]
    row = frame.set_index("setting").loc["train.loss"]
    assert (row["run a"], row["run b"], bool(row["differs"])) == ("dice", "focal", True)
    assert frame.set_index("setting").loc["train.batch_size", "run b"] == "2"
    html = viz.highlight_differences(frame).to_html()
    style = html.split("</style>")[0]
    assert viz.settings.DIFFERS_COLOR in style
    shaded = {int(r) for r in re.findall(r"_row(\d+)_col\d+", style)}
    assert shaded == set(np.flatnonzero(frame["differs"])) and len(shaded) == 2  # the loss and the batch rows
    assert "differs" not in html  # the flag column is left out: the shading says it
    with pytest.raises(ValueError, match="different labels"):
        viz.settings_diff_frame(diffs, "same", "same")


# -- settings against a score ---------------------------------------------------------------------


def settings_of(**kw):
    base = {"learning rate": 1e-3, "image size": 64, "batch": 8, "norm": "group", "loss": "dice", "encoder": "none", "max epochs": 20}
    return {**base, **kw}


def test_settings_against_score_drops_constant_settings_and_unscored_runs():
    view = rr.settings_against_score(
        {"a": settings_of(), "b": settings_of(**{"learning rate": 1e-2, "encoder": "vgg16"}), "c": settings_of(loss="focal"),
         "queued": settings_of(), "broken": dict.fromkeys(rr.SETTING_COLUMNS)},
        {"a": 0.7, "b": 0.8, "c": 0.75, "queued": None, "broken": 0.9},
    )
    assert list(view.frame.index) == ["a", "b", "c"]
    assert view.settings == ["learning rate", "loss", "encoder"] and list(view.frame.columns)[-1] == view.score
    assert view.constant == {"image size": 64, "batch": 8, "norm": "group", "max epochs": 20}
    assert view.left_out == {"queued": "no score yet", "broken": "its settings cannot be read"}
    assert view.frame.loc["b", view.score] == 0.8


def test_settings_against_score_with_one_run_or_equal_settings():
    one = rr.settings_against_score({"a": settings_of(), "b": settings_of()}, {"a": 0.5, "b": float("nan")})
    assert len(one.frame) == 1 and one.left_out == {"b": "no score yet"}
    assert viz.settings_parallel_figure(one) is None  # one line shows nothing
    same = rr.settings_against_score({"a": settings_of(), "b": settings_of()}, {"a": 0.5, "b": 0.6})
    assert same.settings == [] and len(same.constant) == len(rr.SETTING_COLUMNS)


def test_run_score():
    s = RunSummary(run_id="r", state="finished", best_val_dice=0.8, test={"all_dice": 0.7, "macro_dice": 0.6})
    assert rr.run_score(s, "test Dice, all classes") == 0.7 and rr.run_score(s, "best val Dice") == 0.8
    assert rr.run_score(RunSummary(run_id="q", state="queued"), "test Dice, all classes") is None
    with pytest.raises(ValueError, match="unknown score"):
        rr.run_score(s, "accuracy")


def test_parallel_figure_maps_names_to_ticks_and_the_learning_rate_to_a_log_axis():
    view = rr.settings_against_score(
        {"a": settings_of(), "b": settings_of(**{"learning rate": 1e-2, "encoder": "vgg16", "image size": 128}),
         "c": settings_of(**{"learning rate": 1e-4, "encoder": "<b>x</b>"})},
        {"a": 0.7, "b": 0.8, "c": 0.6},
    )
    fig = viz.settings_parallel_figure(view)
    dims = {d.label: d for d in fig.data[0].dimensions}
    assert list(dims) == ["learning rate (log scale)", "image size", "encoder", "test Dice, all classes"]
    enc = dims["encoder"]
    assert list(enc.ticktext) == ["&lt;b&gt;x&lt;/b&gt;", "none", "vgg16"]  # names are escaped for plotly
    assert list(enc.values) == [1, 2, 0] and list(enc.tickvals) == [0, 1, 2]
    lr = dims["learning rate (log scale)"]
    assert list(lr.values) == pytest.approx([-3, -2, -4]) and list(lr.ticktext) == ["0.0001", "0.001", "0.01"]
    assert list(dims["image size"].ticktext) == ["64", "128"]
    assert list(fig.data[0].line.color) == [0.7, 0.8, 0.6]


# -- smoothing ------------------------------------------------------------------------------------


def tensorboard_reference(values, weight):
    """TensorBoard's own loop (its line chart's smoothing), transcribed."""
    last, num, out = 0.0, 0, []
    constant = all(v == values[0] for v in values)
    for v in values:
        if constant or not math.isfinite(v):
            out.append(v)
        else:
            last = last * weight + (1 - weight) * v
            num += 1
            out.append(last / (1 - weight ** num))
    return out


def test_smooth_is_tensorboards_debiased_moving_average():
    assert rr.smooth([1, 2, 3], 0.5) == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    rng = np.random.default_rng(0)
    noisy = (np.exp(-np.arange(40) / 10) + rng.normal(0, 0.05, 40)).tolist()
    for w in (0.0, 0.3, 0.6, 0.9, 0.99):
        assert rr.smooth(noisy, w) == pytest.approx(tensorboard_reference(noisy, w))
    assert rr.smooth(noisy, 0.0) == noisy
    assert rr.smooth(noisy, 0.9)[0] == pytest.approx(noisy[0])  # debiased: starts at the first value, not near 0
    assert np.std(np.diff(rr.smooth(noisy, 0.9))) < np.std(np.diff(noisy)) / 3
    assert rr.smooth([0.5] * 4, 0.9) == [0.5] * 4


def test_smooth_passes_gaps_through():
    out = rr.smooth([1.0, None, float("nan"), 3.0], 0.5)
    assert out[0] == 1.0 and math.isnan(out[1]) and math.isnan(out[2])
    assert out[3] == pytest.approx((0.5 * 0.5 + 1.5) / 0.75)  # the gap does not count as a point
    with pytest.raises(ValueError, match="below 1"):
        rr.smooth([1.0], 1.0)
    with pytest.raises(ValueError):
        rr.smooth([1.0], -0.1)


def test_curves_figure_smoothing_and_log_scale():
    history = [{"epoch": e, "loss": 1.0 / e + (0.1 if e % 2 else 0.0), "val_loss": 1.2 / e} for e in range(1, 9)]
    plain = viz.curves_figure({"r": history})
    assert len(plain.data) == 2 and plain.layout.yaxis.type is None
    fig = viz.curves_figure({"r": history}, "loss", smoothing=0.6, log_y=True)
    assert len(fig.data) == 4 and fig.layout.yaxis.type == "log"
    raw, smoothed = fig.data[0], fig.data[1]
    assert raw.opacity == 0.25 and raw.showlegend is False and list(raw.y) == [r["loss"] for r in history]
    assert list(smoothed.y) == pytest.approx(rr.smooth([r["loss"] for r in history], 0.6))
    assert smoothed.name == "r · train" and fig.data[3].line.dash == "dash"


# -- the pace of training -------------------------------------------------------------------------


def timed_history(times, ended_last=1000.0):
    rows = []
    for e, t in enumerate(times, start=1):
        rows.append({"epoch": e, "loss": 1.0 / e, "seconds": t - 1.0, "time_steps": t - 3.0, "time_validation": 1.0,
                     "time_health": 0.5, "time_checkpoint": 0.5, "time_other": 1.0})
    rows[-1]["ended_at"] = ended_last
    return rows


def test_epoch_seconds_sums_the_recorded_parts():
    assert rr.epoch_seconds(timed_history([100.0, 42.0])) == pytest.approx([100.0, 42.0])
    assert rr.epoch_seconds([{"epoch": 1, "seconds": 5.0}, {"epoch": 2}]) == [5.0]  # older histories: seconds alone


def test_epoch_pace_running_by_epochs():
    history = timed_history([100.0, 42.0, 42.0])  # the first epoch compiles: left out of the typical epoch
    pace = rr.epoch_pace(history, epochs_planned=8, running=True, now=1030.0)
    assert pace.seconds_per_epoch == pytest.approx(42.0) and pace.epochs_left == 5
    assert pace.seconds_left == pytest.approx(5 * 42.0 - 30.0)  # 30 s into the fourth epoch
    assert pace.text() == "42 s per epoch · about 3 min left"
    late = rr.epoch_pace(history, epochs_planned=4, running=True, now=1100.0)  # running over: nearly done
    assert late.seconds_left == 0.0 and late.text() == "42 s per epoch · a few seconds left"


def test_epoch_pace_follows_the_time_budget():
    history = timed_history([60.0, 60.0])
    pace = rr.epoch_pace(history, epochs_planned=50, running=True, budget_minutes=5, budget_spent_s=125.0, now=1000.0)
    assert pace.limited_by == "budget" and pace.seconds_left == pytest.approx(300.0 - 125.0)
    assert pace.text() == "60 s per epoch · about 3 min left (time budget of 5 min)"
    roomy = rr.epoch_pace(history, epochs_planned=3, running=True, budget_minutes=60, now=1000.0)
    assert roomy.limited_by == "epochs" and roomy.seconds_left == pytest.approx(60.0)


def test_epoch_pace_of_runs_not_training():
    assert rr.epoch_pace([], epochs_planned=5, running=True).text() == ""  # before the first epoch ends
    assert rr.epoch_pace([{"epoch": 1, "loss": 1.0}], epochs_planned=5, running=True).text() == ""  # no times kept
    done = rr.epoch_pace(timed_history([8.0, 4.2]), epochs_planned=2, running=False)
    assert done.text() == "4.2 s per epoch"
    stopped = rr.epoch_pace(timed_history([5.0, 3600.0, 3900.0]), epochs_planned=5, running=False)
    assert stopped.text() == "1 h 02 min per epoch · 2 of 5 epochs to go, about 2 h 05 min when resumed"


def test_duration_words():
    assert [rr.duration_words(s) for s in (0.25, 9.9, 42.4, 89, 95, 3500, 3600, 7380)] == [
        "0.2 s", "9.9 s", "42 s", "89 s", "2 min", "58 min", "1 h 00 min", "2 h 03 min"]


def test_run_pace_reads_the_run_folder(workspace):
    cfg = config(epochs=10, budget_minutes=2.0)
    run = runs_mod.create_run(workspace, cfg, dataset={"name": "demo"}, split={"train": [], "val": [], "test": []})
    assert rr.run_pace(run).text() == ""  # queued: nothing recorded yet
    run.write_history(timed_history([30.0, 20.0, 20.0], ended_last=2000.0))
    run.update_status(state="stopped", epoch=3, epochs=5)  # the budget cut the plan to 5
    run.write_train_state({"epoch": 3, "budget_spent_s": 70.0})
    pace = rr.run_pace(run, now=2000.0)
    assert (pace.epochs_planned, pace.budget_minutes, pace.running) == (5, 2.0, False)
    assert pace.seconds_left == pytest.approx(40.0)
    run.history_path.write_text("epoch,loss\nnot a number,1\n")  # damaged: the pace is unknown, not an error
    assert rr.run_pace(run).text() == ""


# -- TensorBoard ----------------------------------------------------------------------------------


def test_tensorboard_logdir_and_command(workspace):
    run = runs_mod.create_run(workspace, config(), dataset={"name": "demo"}, split={"train": [], "val": [], "test": []})
    assert rr.tensorboard_logdir(run) is None
    (run.tensorboard_dir / "train").mkdir(parents=True)
    assert rr.tensorboard_logdir(run) is None  # a folder without event files
    (run.tensorboard_dir / "train" / "events.out.tfevents.1700000000.host.1.v2").write_bytes(b"\0")
    assert rr.tensorboard_logdir(run) == run.tensorboard_dir
    assert rr.tensorboard_command("/ws/runs/r1/tensorboard") == "tensorboard --logdir /ws/runs/r1/tensorboard"
    assert rr.tensorboard_command("/my ws/it's") == "tensorboard --logdir '/my ws/it'\"'\"'s'"


# -- the runs table -------------------------------------------------------------------------------


def summary(run_id, cfg: RunConfig | None, **kw) -> RunSummary:
    return RunSummary(run_id=run_id, state="finished", encoder=cfg.model.encoder if cfg else "none",
                      config=cfg.to_dict() if cfg else {}, **kw)


def test_runs_frame_has_the_settings_columns():
    rows = [summary("r1", config(batch_size=4, loss="dice", epochs=12)), summary("r2", config(encoder="vgg16", learning_rate=3e-4)),
            summary("r3", None)]
    df = viz.runs_frame(rows).set_index("id")
    assert df.loc["r1", ["learning rate", "image size", "batch", "norm", "loss", "encoder", "max epochs"]].tolist() == [
        1e-3, 32, 4, "group", "dice", "none", 12]
    assert df.loc["r2", "learning rate"] == 3e-4 and df.loc["r2", "encoder"] == "vgg16"
    assert pd.isna(df.loc["r3", "learning rate"]) and pd.isna(df.loc["r3", "loss"])  # settings unreadable: blank cells
    assert df["batch"].dtype.kind in "if" and df["learning rate"].dtype.kind == "f"  # numbers sort as numbers


def test_filter_runs_by_encoder_and_loss():
    rows = [summary("a", config(loss="dice")), summary("b", config(encoder="vgg16", loss="dice")),
            summary("c", config(encoder="vgg16", loss="focal")), summary("d", None)]
    ids = lambda out: [s.run_id for s in out]  # noqa: E731
    assert ids(viz.filter_runs(rows, encoders=["vgg16"])) == ["b", "c"]
    assert ids(viz.filter_runs(rows, losses=["dice"])) == ["a", "b"]
    assert ids(viz.filter_runs(rows, encoders=["vgg16"], losses=["dice"])) == ["b"]
    assert ids(viz.filter_runs(rows)) == ["a", "b", "c", "d"]

"""Small and real datasets: normalisation, the batch-norm health check, class 0 in every mean,
evaluation on another dataset, aspect ratio and tiles."""

from __future__ import annotations

import json

import cv2
import keras
import numpy as np
import pytest

from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
from segcore.data.arrays import fitted_size, load_arrays, window_starts
from segcore.data.resample import resize_labels
from segcore.models import build_model
from segcore.runs import open_run
from segcore.training import health
from segcore.queue.launcher import launch
from segcore.training.pipeline import make_batches
from segcore.training.trainer import make_metrics, predict_with_batch_stats, train_run
from tests._train_helpers import make_shapes_dataset

pytestmark = pytest.mark.backend


def _set_class0(ws, name: str, value: str) -> None:
    path = ws.dataset_dir(name) / "dataset.json"
    info = json.loads(path.read_text())
    info["class0"] = value
    path.write_text(json.dumps(info))


def _run(ws, cfg: RunConfig):
    run_id = launch(cfg, ws, start_worker=False)
    run = open_run(run_id, ws)
    result = train_run(run)
    assert result["state"] == "finished", result
    return run, result


def _cfg(dataset="shapes", epochs=1, size=32, norm="group", **train):
    return RunConfig(
        model=ModelConfig(depth=3, filters=8, norm=norm),
        train=TrainConfig(dataset=dataset, image_size=size, epochs=epochs, batch_size=8, learning_rate=1e-3,
                          augment=AugmentConfig(enabled=False), split=SplitConfig(val_fraction=0.2, test_fraction=0.2),
                          **train),
    )


# --------------------------------------------------------------------------- normalisation


def test_default_norm_is_group_and_older_settings_keep_batch_norm():
    assert ModelConfig().norm == "group"
    old = RunConfig.from_dict({"model": {"batch_norm": True}})
    assert old.model.norm == "batch"
    assert RunConfig.from_dict({"model": {"batch_norm": False}}).model.norm == "none"
    model = build_model(ModelConfig(depth=3, filters=8), image_size=16, channels=1, mode="binary", num_classes=2)
    assert any(isinstance(layer, keras.layers.GroupNormalization) for layer in model.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    with pytest.raises(ValueError, match="model.norm is 'layer'"):
        build_model(ModelConfig(norm="layer"), image_size=16, channels=1, mode="binary", num_classes=2)


def test_batch_statistics_prediction_leaves_the_moving_averages_alone():
    model = build_model(ModelConfig(depth=3, filters=8, norm="batch"), image_size=16, channels=1, mode="binary", num_classes=2)
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 1)).astype("float32")
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = [np.array(layer.moving_mean.numpy()) for layer in bn]
    stats = predict_with_batch_stats(model, x, 2)
    after = [np.array(layer.moving_mean.numpy()) for layer in bn]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert not np.allclose(stats, np.asarray(model.predict_on_batch(x)))  # batch statistics differ from the averages


def test_train_inference_gap_names_the_cause():
    message = health.train_inference_gap(0.008, 0.667, 3, 0.99, 6)
    assert "0.008" in message and "0.667" in message and "moving averages" in message and "norm 'group'" in message
    assert "3 steps an epoch" in message and "18 steps" in message
    assert health.train_inference_gap(0.60, 0.66, 3, 0.99, 6) is None


def test_batch_norm_run_with_few_steps_is_flagged(workspace):
    make_shapes_dataset(workspace, n=24, size=32)
    run, _ = _run(workspace, _cfg(epochs=4, norm="batch", seed=0))
    history = run.read_history()
    assert all("val_dice_batch_stats" in row for row in history)
    last = history[-1]
    status = run.read_status()
    gap = last["val_dice_batch_stats"] - last["val_dice"]
    flagged = any("moving averages" in w for w in status.get("warnings", []))
    assert flagged == (gap >= health.NORM_GAP), (last, status.get("warnings"))
    assert flagged, f"4 epochs of 2 steps: the averages lag far behind ({last})"


def test_training_hands_keras_no_autotuned_pipeline_to_wait_for(workspace, monkeypatch):
    """With tf.data's autotuner on, deleting an iterator waits for its thread to wake (seconds, both cores
    idle); Keras makes a new one for every epoch's training and validation, and ``model.predict`` on arrays
    makes an autotuned pipeline of its own. A run's epochs use neither."""
    make_shapes_dataset(workspace, n=24, size=32)
    fed = []
    fit = keras.Model.fit

    def recording_fit(self, x=None, *args, **kwargs):
        fed.extend([x, kwargs.get("validation_data")])
        return fit(self, x, *args, **kwargs)

    def no_predict(self, *args, **kwargs):
        raise AssertionError("model.predict was called during training")

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    monkeypatch.setattr(keras.Model, "predict", no_predict)
    run, _ = _run(workspace, _cfg(epochs=2, seed=0))
    assert all("val_pixel_accuracy" in row for row in run.read_history())  # the health check ran each epoch
    assert len(fed) == 2 and all(data is not None for data in fed)
    if keras.backend.backend() == "tensorflow":
        for data in fed:
            assert data.options().autotune.enabled is False, data


# --------------------------------------------------------------------------- class 0


def test_metrics_and_health_count_class0_when_it_is_a_real_class():
    y = np.zeros((1, 4, 4, 3), np.float32)
    y[..., 0] = 1.0
    y[0, :2, :, :] = [0, 1, 0]  # top half class 1, bottom half class 0
    p = np.zeros_like(y)
    p[..., 1] = 1.0  # everything predicted class 1
    fg, all_ = make_metrics("multiclass", 3)[0], make_metrics("multiclass", 3, include_background=True)[0]
    fg.update_state(y, p)
    all_.update_state(y, p)
    assert float(fg.result()) == pytest.approx(2 * 8 / (16 + 8))  # class 1 only
    assert float(all_.result()) == pytest.approx((0.0 + 2 * 8 / 24) / 2)  # class 0 (Dice 0) counted
    masks = np.zeros((1, 4, 4), np.uint8)
    masks[0, :2] = 1
    probs = np.zeros((1, 4, 4, 3), np.float32)
    probs[..., 1] = 1.0
    h = health.epoch_health(masks, probs, "multiclass", ["Sky", "Building", "Road"], include_background=True)
    assert "Sky" in h["dice"] and h["mean_dice"] == pytest.approx((0.0 + 2 / 3) / 2)
    missing: dict = {}
    for epoch in range(1, 4):
        warnings = health.health_warnings(h, missing, epoch)
    assert any("class 'Sky' has not been predicted" in w and "the output holds 'Building' 100%" in w for w in warnings)
    assert not any("background" in w for w in warnings)


def test_class0_statement_reaches_evaluation_and_best_checkpoint(workspace):
    make_shapes_dataset(workspace, n=24, size=32)
    _set_class0(workspace, "shapes", "class")
    run, _ = _run(workspace, _cfg(epochs=1))
    report = run.read_evaluation()
    scored = [row["dice"] for row in report["per_class"] if row["dice"] is not None]
    assert len(scored) == 3 and report["macro"]["dice"] == pytest.approx(float(np.mean(scored)))
    assert report["include_background"] is True
    row = run.read_history()[-1]
    assert "val_dice_0" in row  # class 0 has its own training metric


# --------------------------------------------------------------------------- eval on another dataset


def test_eval_on_another_dataset_is_kept_per_dataset(workspace):
    from segcore.evaluation import dataset_evaluations, evaluate_on_dataset
    from segcore.evaluation.cli import cmd_eval, register  # noqa: F401

    make_shapes_dataset(workspace, n=24, size=32)
    make_shapes_dataset(workspace, name="shapes-b", n=12, size=32, seed=5)
    make_shapes_dataset(workspace, name="discs", n=8, size=32, mode="binary")
    run, _ = _run(workspace, _cfg(epochs=1))
    report = evaluate_on_dataset(run, "shapes-b", subset="test", workspace=workspace)
    assert report["dataset"] == "shapes-b" and report["subset"] == "test" and report["num_images"] == 4
    whole = evaluate_on_dataset(run, "shapes-b", workspace=workspace)
    assert whole["num_images"] == 12
    kept = dataset_evaluations(run)
    assert set(kept) == {"shapes-b", "shapes-b-test"} and kept["shapes-b-test"]["num_images"] == 4
    assert run.read_evaluation()["ids"] != whole["ids"]  # the run's own test evaluation is untouched
    with pytest.raises(ValueError, match="binary with 2 classes.*multiclass with 3 classes"):
        evaluate_on_dataset(run, "discs", workspace=workspace)
    with pytest.raises(ValueError, match="no samples in subset 'val'"):
        evaluate_on_dataset(run, "shapes-b", subset="val", workspace=workspace)


def test_eval_write_shows_in_the_runs_table(workspace):
    import argparse

    from segcore.runs import list_runs
    from segcore.evaluation.cli import cmd_eval

    make_shapes_dataset(workspace, n=24, size=32)
    run, _ = _run(workspace, _cfg(epochs=1))
    run.update_status(state="stopped", test={})  # a run stopped before its test evaluation
    assert not next(r for r in list_runs(workspace) if r.run_id == run.run_id).test
    cmd_eval(argparse.Namespace(run=run.run_id, dataset=None, subset=None, cached=False, write=True, json=True))
    row = next(r for r in list_runs(workspace) if r.run_id == run.run_id)
    assert row.test.get("macro_dice") is not None


# --------------------------------------------------------------------------- aspect ratio and tiles


def _wide_dataset(ws, name="wide", n=12, h=24, w=48):
    """Non-square images: a bright disc (class 1) on noise; the mask follows the pixels exactly."""
    rng = np.random.default_rng(1)
    root = ws.dataset_dir(name)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    samples = []
    for i in range(n):
        img = rng.normal(80, 10, (h, w, 3)).clip(0, 255).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        cv2.circle(mask, (int(rng.integers(8, w - 8)), int(rng.integers(6, h - 6))), 5, 1, -1)
        img[mask == 1] = (230, 220, 90)
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"{i}.png"), mask)
        samples.append({"id": str(i), "height": h, "width": w})
    info = {"name": name, "mode": "binary", "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "disc", "color": [255, 0, 0]}],
            "channels": 3, "ignore_index": 255, "content_hash": f"wide-{n}-{h}-{w}", "samples": samples}
    (root / "dataset.json").write_text(json.dumps(info))
    return name


def test_aspect_ratio_is_kept_and_training_takes_random_windows(workspace):
    _wide_dataset(workspace)
    assert fitted_size(24, 48, 16) == (16, 32) and fitted_size(360, 480, 128) == (128, 171)
    images, masks = load_arrays("wide", None, 16, workspace=workspace, fit="short_side")
    assert images.shape == (12, 16, 32, 3) and masks.shape == (12, 16, 32)
    raw = cv2.imread(str(workspace.dataset_dir("wide") / "masks" / "0.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(masks[0], resize_labels(raw, 16, 32))  # not squashed
    batches = make_batches(images, masks, batch_size=4, mode="binary", num_classes=2, crop=16,
                           sizes=np.array([[16, 32]] * 12), seed=0, workers=1)
    x, y = batches[0]
    assert x.shape == (4, 16, 16, 3) and y.shape == (4, 16, 16, 1)
    batches.on_epoch_end()
    x2, _ = batches[0]
    assert not np.array_equal(x, x2)  # new windows every epoch
    assert window_starts(32, 16) == [0, 12, 16] and window_starts(16, 16) == [0]  # overlapping, the last at the end


class _Echo:
    """A stand-in model of window 8: its 'probability' is the first channel / 255, so tiles must line up."""

    def predict_on_batch(self, x):
        assert x.shape[1:3] == (8, 8)
        return x[..., :1] / 255.0


def test_tiled_prediction_lines_up_windows():
    from segcore.prediction import predict_tiled

    image = np.random.default_rng(0).integers(0, 256, (2, 20, 37, 3)).astype(np.uint8)
    probs = predict_tiled(_Echo(), image, 8, batch_size=5)
    assert probs.shape == (2, 20, 37, 1)
    np.testing.assert_allclose(probs[..., 0], image[..., 0] / 255.0, rtol=1e-6)


def test_wide_images_train_evaluate_and_predict_in_tiles(workspace):
    from segcore.prediction import Predictor

    _wide_dataset(workspace)
    run, _ = _run(workspace, _cfg(dataset="wide", size=16, epochs=1))
    meta = run.read_meta()
    assert meta["input"] == {"fit": "short_side", "image_size": 16, "reference_short_side": 24.0}
    report = run.read_evaluation()
    assert report["fit"] == "short_side"
    assert report["num_pixels"] == report["num_images"] * 24 * 48  # whole images at their own size, not squashed
    predictor = Predictor.from_folder(run)
    big = np.random.default_rng(2).integers(0, 256, (72, 144, 3)).astype(np.uint8)  # 3x the training images
    assert predictor.scaled_size(72, 144) == (48, 96)  # the training scale (24 px -> 16 px), then tiled
    probs = predictor.predict_probs(big)
    assert probs.shape == (72, 144, 1)

"""The training input pipeline: targets, colour jitter, batch shapes, workers, retracing."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.config import AugmentConfig, ModelConfig
from segcore.data.augment import adjust_brightness_contrast
from segcore.training.pipeline import make_batches, make_targets


def _reference_targets(masks, mode, num_classes, void=255):
    """One-hot (or foreground plane) then void = -1, written the plain way."""
    if mode == "binary":
        target = (masks > 0)[..., None].astype(np.float32)
    else:
        target = np.eye(num_classes, dtype=np.float32)[np.where(masks == void, 0, np.minimum(masks, num_classes - 1))]
    return np.where((masks == void)[..., None], np.float32(-1.0), target)


@pytest.mark.parametrize("mode,k", [("binary", 2), ("multiclass", 3), ("multiclass", 5)])
def test_targets_match_the_plain_formula(mode, k):
    rng = np.random.default_rng(0)
    masks = rng.integers(0, k + 2, (3, 9, 7)).astype(np.uint8)
    masks[0, :2] = 255
    got = make_targets(masks, mode, k)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _reference_targets(masks, mode, k))


@pytest.mark.parametrize("shape", [(40, 30), (40, 30, 1), (40, 30, 3), (40, 30, 4), (20, 20, 6)])
@pytest.mark.parametrize("brightness,contrast", [(0.08, 1.0), (0.0, 0.9), (-0.1, 1.1)])
def test_brightness_contrast_table_matches_the_formula(shape, brightness, contrast):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, shape).astype(np.uint8)
    f = image.astype(np.float64)
    mean = f.mean(axis=(0, 1), keepdims=True)
    expected = np.clip(np.rint((f - mean) * contrast + mean + brightness * 255.0), 0, 255).astype(np.uint8)
    got = adjust_brightness_contrast(image, brightness, contrast)
    assert got.shape == image.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def _data(n=10, size=16, channels=1, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, channels)).astype(np.uint8)
    masks = rng.integers(0, classes, (n, size, size)).astype(np.uint8)
    return images, masks


def _epoch(ds):
    return [ds[i] for i in range(len(ds))]


def test_training_batches_are_full_and_cover_every_sample():
    images, masks = _data(n=10)
    # Mark each sample by its first pixel so the batches can be traced back to samples.
    images[:, 0, 0, 0] = np.arange(10)
    ds = make_batches(images, masks, batch_size=4, mode="binary", num_classes=2, augment=None, workers=1)
    for _ in range(3):
        batches = _epoch(ds)
        assert len(batches) == 3
        assert {x.shape for x, _ in batches} == {(4, 16, 16, 1)}
        assert {y.shape for _, y in batches} == {(4, 16, 16, 1)}
        seen = np.concatenate([x[:, 0, 0, 0] for x, _ in batches]).astype(int)
        assert set(seen) == set(range(10))
        ds.on_epoch_end()


def test_evaluation_batches_are_padded_with_void():
    images, masks = _data(n=5)
    ds = make_batches(images, masks, batch_size=4, mode="binary", num_classes=2, shuffle=False, workers=1)
    (x0, y0), (x1, y1) = _epoch(ds)
    assert x0.shape == x1.shape == (4, 16, 16, 1)
    np.testing.assert_array_equal(x0, images[:4].astype(np.float32))
    np.testing.assert_array_equal(x1[0], images[4].astype(np.float32))
    assert np.all(y1[1:] == -1.0), "padding must be void"
    np.testing.assert_array_equal(y1[0], make_targets(masks[4:], "binary", 2)[0])


def test_void_padding_leaves_metrics_and_batch_losses_unchanged():
    from segcore import losses, metrics
    from segcore.models import build_model

    images, masks = _data(n=5, classes=3)
    model = build_model(ModelConfig(depth=3, filters=4), image_size=16, channels=1, mode="multiclass", num_classes=3)
    model.compile(optimizer="adam", loss=losses.get("auto", mode="multiclass"),
                  metrics=metrics.segmentation_metrics("multiclass", 3))
    padded = model.evaluate(
        make_batches(images, masks, batch_size=4, mode="multiclass", num_classes=3, shuffle=False, workers=1),
        verbose=0, return_dict=True,
    )
    targets = make_targets(masks, "multiclass", 3)
    whole = model.evaluate(images.astype(np.float32), targets, batch_size=4, verbose=0, return_dict=True)
    for key, value in whole.items():
        if key != "loss":
            assert padded[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # The loss of each batch is unchanged by void padding; Keras weights the
    # padded last batch by its full size in the epoch mean.
    first = model.evaluate(images[:4].astype(np.float32), targets[:4], batch_size=4, verbose=0, return_dict=True)["loss"]
    last = model.evaluate(images[4:].astype(np.float32), targets[4:], batch_size=1, verbose=0, return_dict=True)["loss"]
    assert padded["loss"] == pytest.approx((first + last) / 2, rel=1e-5)


def test_workers_give_the_same_batches_as_one_thread():
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    images, masks = _data(n=23, size=24, channels=3, classes=3)
    kw = dict(batch_size=4, mode="multiclass", num_classes=3, augment=AugmentConfig(), seed=5, epoch=2)

    def collect(workers):
        adapter = PyDatasetAdapter(make_batches(images, masks, workers=workers, **kw), shuffle=False)
        out = []
        for _ in range(2):
            adapter.on_epoch_begin()
            out.extend(adapter.get_numpy_iterator())
            adapter.on_epoch_end()
        return out

    one, four = collect(1), collect(4)
    assert len(one) == len(four) == 12
    for (xa, ya), (xb, yb) in zip(one, four):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


_TRACE_SCRIPT = """
import json, sys
import numpy as np
from segcore import losses, metrics
from segcore.config import ModelConfig
from segcore.models import build_model
from segcore.training.pipeline import make_batches

def traces(n, n_val):
    model = build_model(ModelConfig(depth=3, filters=4), image_size=16, channels=1, mode="binary", num_classes=2)
    model.compile(optimizer="adam", loss=losses.get("auto", mode="binary"),
                  metrics=metrics.segmentation_metrics("binary", 2))
    count = {"train": 0, "test": 0}
    train_step, test_step = model.train_step, model.test_step
    def counting_train(*args):
        count["train"] += 1  # the Python body runs only while the step is traced
        return train_step(*args)
    def counting_test(*args):
        count["test"] += 1
        return test_step(*args)
    model.train_step, model.test_step = counting_train, counting_test
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 16, 16, 1)).astype(np.uint8)
    m = rng.integers(0, 2, (n, 16, 16)).astype(np.uint8)
    model.fit(make_batches(x, m, batch_size=4, mode="binary", num_classes=2),
              validation_data=make_batches(x[:n_val], m[:n_val], batch_size=4, mode="binary",
                                           num_classes=2, shuffle=False),
              epochs=2, verbose=0)
    return count

print(json.dumps({"divisible": traces(8, 4), "partial": traces(10, 5)}))
"""


@pytest.mark.slow
def test_a_partial_last_batch_and_validation_compile_no_extra_step():
    """On JAX every new batch shape is a new XLA compile (a minute for a big model on a GPU)."""
    import importlib.util
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    if importlib.util.find_spec("jax") is None:
        if os.environ.get("CI"):
            pytest.fail("CI=true but jax is not installed (requirements-dev.txt lists it)")
        pytest.skip("jax is not installed")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(root), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _TRACE_SCRIPT], env=env, cwd=root, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts["partial"] == counts["divisible"], counts


def test_tensorflow_is_fed_the_same_batches_through_a_mapped_dataset_with_static_shapes():
    """Keras wraps a PyDataset in Dataset.from_generator on TensorFlow, which costs 1.5-1.9x an epoch's CPU
    time (bench/fit_feed.py); ``feed`` maps batch numbers instead, and the epoch is the one set."""
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from segcore.training.pipeline import feed

    images, masks = _data(n=10, size=16, channels=1, classes=2)
    batches = make_batches(images, masks, batch_size=4, mode="binary", num_classes=2,
                           augment=AugmentConfig(), seed=3, workers=2)
    data = feed(batches, "tensorflow")
    assert isinstance(data, tf.data.Dataset)
    x_spec, y_spec = data.element_spec
    assert tuple(x_spec.shape) == (4, 16, 16, 1) and tuple(y_spec.shape) == (4, 16, 16, 1)
    graph = data._as_serialized_graph().numpy()
    assert b"Generator" not in graph  # no from_generator inside
    seen = {}
    for epoch in (0, 1):
        batches.epoch = epoch
        got = [(x.numpy(), y.numpy()) for x, y in data]
        want = [batches[i] for i in range(len(batches))]
        assert len(got) == len(want) == 3
        for (xa, ya), (xb, yb) in zip(got, want):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
        seen[epoch] = got
    assert not np.array_equal(seen[0][0][0], seen[1][0][0])  # a new epoch, a new order and augmentation
    # The other backends read the PyDataset directly.
    assert feed(batches, "jax") is batches and feed(batches, "torch") is batches

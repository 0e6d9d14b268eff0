"""Targets, setup checks and training health checks: golden values on tiny arrays."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.training.health import check_setup, epoch_health, health_warnings, nan_message
from segcore.training.pipeline import check_masks, class_frequencies, make_targets
from segcore.catalog.optim import scheduled_lr


def test_multiclass_targets_one_hot_and_void_minus_one_everywhere():
    masks = np.array([[[0, 2], [255, 1]]], np.uint8)
    t = make_targets(masks, "multiclass", 3)
    assert t.shape == (1, 2, 2, 3) and t.dtype == np.float32
    np.testing.assert_array_equal(t[0, 0, 0], [1, 0, 0])
    np.testing.assert_array_equal(t[0, 0, 1], [0, 0, 1])
    np.testing.assert_array_equal(t[0, 1, 0], [-1, -1, -1])
    np.testing.assert_array_equal(t[0, 1, 1], [0, 1, 0])


def test_binary_and_multilabel_targets():
    b = make_targets(np.array([[[0, 1], [255, 1]]], np.uint8), "binary", 2)
    np.testing.assert_array_equal(b[0, ..., 0], [[0, 1], [-1, 1]])
    planes = np.zeros((1, 2, 2, 2), np.uint8)
    planes[0, 0, 1] = [1, 1]
    planes[0, 1, 0, 1] = 255
    m = make_targets(planes, "multilabel", 3)
    np.testing.assert_array_equal(m[0, 0, 1], [1, 1])
    np.testing.assert_array_equal(m[0, 1, 0], [-1, -1])  # void in one plane is void in every channel
    with pytest.raises(ValueError, match=r"\(N, S, S, 2\) planes"):
        make_targets(planes[..., :1], "multilabel", 3)


def test_masks_with_values_beyond_the_classes_are_refused():
    with pytest.raises(ValueError, match=r"class values \[7\].*3 classes"):
        check_masks(np.array([[0, 1, 7, 255]], np.uint8), "multiclass", 3, where=" of the train split")
    check_masks(np.array([[0, 2, 255]], np.uint8), "multiclass", 3)
    with pytest.raises(ValueError, match="planes must be 0/1"):
        check_masks(np.array([[[0, 2]]], np.uint8), "multilabel", 3)


def test_class_frequencies_skip_void():
    f = class_frequencies(np.array([[0, 0, 1, 255]], np.uint8), "multiclass", 3)
    np.testing.assert_allclose(f, [2 / 3, 1 / 3, 0])


def test_setup_check_head_and_loss():
    assert check_setup("multiclass", 3, "auto", 3) == []
    with pytest.raises(ValueError, match="needs 3"):
        check_setup("multiclass", 3, "dice", 1)
    with pytest.raises(ValueError, match="loss 'cce' does not fit a binary dataset"):
        check_setup("binary", 2, "cce")
    with pytest.raises(ValueError, match="unknown loss 'diec'"):
        check_setup("binary", 2, "diec")
    assert "independent" in check_setup("multiclass", 3, "bce")[0]


def test_nan_message_names_the_causes():
    msg = nan_message(float("nan"), 1, 2, 1e30, "dice")
    assert msg.startswith("loss became nan at epoch 1, batch 2")
    assert "learning rate 1e+30 is far too high" in msg and "bad inputs or labels" in msg
    assert "may be too high" in nan_message(float("inf"), 3, None, 1e-4, "cce")


def test_epoch_health_golden_and_collapse_after_three_epochs():
    names = ["bg", "a", "b"]
    masks = np.zeros((1, 4, 4), np.uint8)
    masks[0, 0, :2] = 1  # 2 px of a
    masks[0, 3, 3] = 2  # 1 px of b
    masks[0, 3, 0] = 255
    probs = np.zeros((1, 4, 4, 3), np.float32)
    probs[..., 0] = 1.0  # everything predicted background
    probs[0, 0, 0] = [0, 1, 0]  # one px of a right
    h = epoch_health(masks, probs, "multiclass", names)
    assert h["pixel_accuracy"] == pytest.approx(13 / 15)
    assert h["true_fraction"] == {"bg": pytest.approx(12 / 15), "a": pytest.approx(2 / 15), "b": pytest.approx(1 / 15)}
    assert h["pred_fraction"] == {"bg": pytest.approx(14 / 15), "a": pytest.approx(1 / 15), "b": 0.0}
    assert h["dice"]["a"] == pytest.approx(2 / 3) and h["dice"]["b"] == 0.0
    assert h["mean_foreground_dice"] == pytest.approx(1 / 3)
    assert h["all_dice"] == pytest.approx((24 / 26 + 2 / 3 + 0.0) / 3)  # the headline counts the background
    missing: dict[str, int] = {}
    assert health_warnings(h, missing, 1) == []
    assert health_warnings(h, missing, 2) == []
    third = health_warnings(h, missing, 3)
    assert len(third) == 1 and "class 'b' has not been predicted" in third[0] and "3 epochs" in third[0]


def test_a_check_that_skipped_epochs_counts_them_toward_a_collapse():
    names = ["bg", "a"]
    masks = np.zeros((1, 4, 4), np.uint8)
    masks[0, 0, 0] = 1
    probs = np.zeros((1, 4, 4, 2), np.float32)
    probs[..., 0] = 1.0  # 'a' never predicted
    h = epoch_health(masks, probs, "multiclass", names)
    missing: dict[str, int] = {}
    assert health_warnings(h, missing, 1) == []
    later = health_warnings(h, missing, 4, epochs_since=3)  # the next check came 3 epochs later
    assert any("class 'a' has not been predicted" in w and "4 epochs" in w for w in later)


def test_a_costly_health_check_runs_every_few_epochs_and_a_cheap_one_every_epoch():
    """The check repeats validation's predictions: at 2.5 s against 25 s epochs it keeps to about 5% of the time."""
    from types import SimpleNamespace

    from segcore.training.trainer import HEALTH_SHARE, Trainer

    def due(epoch, cost, seconds=25.0, row_keys=("val_dice",), last=1):
        t = SimpleNamespace(state={"health_epoch": last, "health_seconds": cost})
        return Trainer._health_due(t, epoch, {"seconds": seconds, **{k: 0.5 for k in row_keys}})

    every = int(np.ceil(2.5 / (HEALTH_SHARE * 25.0)))
    assert every == 2
    assert [due(e, 2.5) for e in (2, 3, 4)] == [False, True, True]  # counted from the last check (epoch 1)
    assert all(due(e, 0.4) for e in (2, 3))  # cheap: every epoch
    assert due(2, 2.5, row_keys=()) is True  # validation gave no Dice: the check supplies it
    assert Trainer._health_due(SimpleNamespace(state={}), 1, {"seconds": 25.0, "val_dice": 0.5}) is True


def test_accuracy_is_lying_warning():
    names = ["bg", "a"]
    masks = np.zeros((1, 10, 10), np.uint8)
    masks[0, 0, :5] = 1
    probs = np.zeros((1, 10, 10, 1), np.float32)
    probs[0, 0, 0] = 1.0
    h = epoch_health(masks, probs, "binary", names)
    assert h["pixel_accuracy"] == pytest.approx(0.96)
    warnings = health_warnings(h, {}, 2)
    assert any("accuracy is lying" in w for w in warnings)
    assert not any("accuracy is lying" in w for w in health_warnings(h, {}, 1))


def test_lr_schedules():
    assert scheduled_lr("none", 1e-3, 5, 10) == 1e-3
    assert scheduled_lr("cosine", 1e-3, 0, 10) == pytest.approx(1e-3)
    assert scheduled_lr("cosine", 1e-3, 5, 10) == pytest.approx(5e-4)
    assert scheduled_lr("step", 1e-3, 25, 30) == pytest.approx(2.5e-4)
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        scheduled_lr("linear", 1e-3, 0, 1)


@pytest.mark.backend
def test_batches_are_seeded_per_epoch_and_augmented_jointly():
    from segcore.config import AugmentConfig
    from segcore.training.pipeline import make_batches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    masks = (images[..., 0] > 127).astype(np.uint8)
    kw = dict(batch_size=4, mode="binary", num_classes=2, augment=AugmentConfig(), seed=3)
    a, b = make_batches(images, masks, **kw), make_batches(images, masks, **kw)
    assert len(a) == 2
    xa, ya = a[0]
    xb, yb = b[0]
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert xa.dtype == np.float32 and ya.shape == (4, 16, 16, 1)
    a.on_epoch_end()
    assert not np.array_equal(a[0][1], ya)  # a new epoch: new order and new transforms
    resumed = make_batches(images, masks, epoch=1, **kw)
    np.testing.assert_array_equal(resumed[0][0], a[0][0])  # a resumed run sees the same epoch
    # the image and the mask went through the same transform: the mask still marks bright pixels
    x, y = a[1]
    valid = y[..., 0] >= 0
    agree = (x[..., 0] > 127) == (y[..., 0] > 0.5)
    assert agree[valid].mean() > 0.8


def test_optimizers_and_schedules_are_registries_the_settings_read():
    from segcore import config
    from segcore.catalog import optim

    assert config.OPTIMIZERS == optim.optimizer_names() and config.LR_SCHEDULES == optim.schedule_names()
    sgd = optim.make_optimizer("sgd", 0.01)
    assert type(sgd).__name__ == "SGD" and float(sgd.momentum) == pytest.approx(0.9)
    assert float(sgd.learning_rate) == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"unknown optimizer 'lamb'; valid ones are \['adam', 'adamw', 'sgd'"):
        optim.make_optimizer("lamb", 1e-3)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        optim.make_optimizer("adam", 0)
    # Every registered name builds: the lists cannot offer what the trainer lacks.
    for name in config.OPTIMIZERS:
        assert optim.make_optimizer(name, 1e-3) is not None
    for name in config.LR_SCHEDULES:
        assert optim.scheduled_lr(name, 1e-3, 0, 10) == pytest.approx(1e-3)

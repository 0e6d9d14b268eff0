"""Losses: golden values on tiny arrays, void pixels, registry, serialization."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from segcore import losses  # noqa: E402

pytestmark = pytest.mark.backend

L = math.log
# Binary: 2x2, one void pixel (-1). Valid: t=1 p=.8, t=0 p=.2, t=1 p=.4.
YT_BIN = np.array([[1, 0], [1, -1]], "float32").reshape(1, 2, 2, 1)
YP_BIN = np.array([[0.8, 0.2], [0.4, 0.9]], "float32").reshape(1, 2, 2, 1)
# Multiclass K=3, 3 pixels: class 0, class 2, void.
YT_MC = np.array([[1, 0, 0], [0, 0, 1], [-1, -1, -1]], "float32").reshape(1, 1, 3, 3)
YP_MC = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4]], "float32").reshape(1, 1, 3, 3)


def value(loss, yt, yp):
    return float(keras.ops.convert_to_numpy(loss(yt, yp)))


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        # I = .8 + .4 = 1.2; sum t = 2; sum p = 1.4 -> 1 - (2.4 + 1) / (3.4 + 1)
        ("dice", {}, 1 - 3.4 / 4.4),
        # 1 - (I + 1) / (3.4 - I + 1)
        ("jaccard", {}, 1 - 2.2 / 3.2),
        ("bce", {}, (-L(0.8) - L(0.8) - L(0.4)) / 3),
        # (1-p)^2 log p for positives, p^2 log(1-p) for the negative
        ("focal", {}, (0.2**2 * -L(0.8) + 0.2**2 * -L(0.8) + 0.6**2 * -L(0.4)) / 3),
        ("focal", {"gamma": 0.0}, (-L(0.8) - L(0.8) - L(0.4)) / 3),
        ("dice_ce", {}, 1 - 3.4 / 4.4 + (-L(0.8) - L(0.8) - L(0.4)) / 3),
        ("auto", {}, 1 - 3.4 / 4.4 + (-L(0.8) - L(0.8) - L(0.4)) / 3),
        # positives weigh 3, negatives 1
        ("weighted_cce", {"class_weights": [1.0, 3.0]}, (3 * -L(0.8) + 1 * -L(0.8) + 3 * -L(0.4)) / 7),
    ],
)
def test_binary_golden(name, kwargs, expected):
    loss = losses.get(name, mode="binary", **kwargs)
    assert value(loss, YT_BIN, YP_BIN) == pytest.approx(expected, rel=1e-5)
    fn = losses.get_function(name)
    assert float(keras.ops.convert_to_numpy(fn(YT_BIN, YP_BIN, mode="binary", **kwargs))) == pytest.approx(
        expected, rel=1e-5
    )


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("cce", {}, (-L(0.7) - L(0.6)) / 2),
        ("weighted_cce", {"class_weights": [1.0, 2.0, 4.0]}, (1 * -L(0.7) + 4 * -L(0.6)) / 5),
        ("focal", {}, (0.3**2 * -L(0.7) + 0.4**2 * -L(0.6)) / 2),
        # per channel (2I + 1) / (St + Sp + 1): c0 2.4/2.8, c1 1/1.5, c2 2.2/2.7
        ("dice", {}, 1 - (2.4 / 2.8 + 1 / 1.5 + 2.2 / 2.7) / 3),
        ("dice_ce", {}, 1 - (2.4 / 2.8 + 1 / 1.5 + 2.2 / 2.7) / 3 + (-L(0.7) - L(0.6)) / 2),
        # class weights weigh the cross-entropy term only; the Dice term stays
        ("dice_ce", {"class_weights": [1.0, 2.0, 4.0]},
         1 - (2.4 / 2.8 + 1 / 1.5 + 2.2 / 2.7) / 3 + (1 * -L(0.7) + 4 * -L(0.6)) / 5),
    ],
)
def test_multiclass_golden(name, kwargs, expected):
    loss = losses.get(name, mode="multiclass", **kwargs)
    assert value(loss, YT_MC, YP_MC) == pytest.approx(expected, rel=1e-5)


def test_multilabel_bce_golden_with_void():
    # 3 pixels x 2 labels; the last pixel is void in every channel.
    yt = np.array([[1, 0], [1, 1], [-1, -1]], "float32").reshape(1, 1, 3, 2)
    yp = np.array([[0.9, 0.3], [0.5, 0.8], [0.01, 0.99]], "float32").reshape(1, 1, 3, 2)
    expected = (-L(0.9) - L(0.7) - L(0.5) - L(0.8)) / 4
    assert value(losses.get("bce", mode="multilabel"), yt, yp) == pytest.approx(expected, rel=1e-5)
    # weights [bg, label1, label2]: negatives weigh w0 = 1, label 1 positives 2, label 2 positives 4
    wexp = (2 * -L(0.9) + 1 * -L(0.7) + 2 * -L(0.5) + 4 * -L(0.8)) / (2 + 1 + 2 + 4)
    loss = losses.get("weighted_cce", mode="multilabel", class_weights=[1, 2, 4])
    assert value(loss, yt, yp) == pytest.approx(wexp, rel=1e-5)


@pytest.mark.parametrize("name", ["dice", "bce", "focal", "dice_ce", "jaccard", "cce", "weighted_cce"])
def test_void_pixels_do_not_change_the_loss(name):
    kwargs = {"class_weights": [1.0, 2.0, 4.0]} if name == "weighted_cce" else {}
    loss = losses.get(name, mode="multiclass", **kwargs)
    other = YP_MC.copy()
    other[0, 0, 2] = [0.98, 0.01, 0.01]  # change only the void pixel's prediction
    assert value(loss, YT_MC, YP_MC) == pytest.approx(value(loss, YT_MC, other), rel=1e-6)
    # ...whereas changing a valid pixel does change it
    other[0, 0, 0] = [0.2, 0.7, 0.1]
    assert value(loss, YT_MC, other) > value(loss, YT_MC, YP_MC)


def test_perfect_prediction_gives_zero_dice_loss():
    yt = np.array([[1, 0], [0, 1]], "float32").reshape(1, 2, 2, 1)
    assert value(losses.get("dice", mode="binary", smooth=0.0), yt, yt) == pytest.approx(0.0, abs=1e-6)


def test_registry_and_errors():
    assert set(losses.names()) == {"dice", "bce", "cce", "weighted_cce", "focal", "dice_ce", "jaccard", "auto"}
    assert losses.resolve("auto") == "dice_ce"
    with pytest.raises(ValueError, match=r"unknown loss 'dcie'.*valid losses are .*'dice'"):
        losses.get("dcie", mode="binary")
    with pytest.raises(ValueError, match="needs a softmax head"):
        losses.get("cce", mode="binary")
    with pytest.raises(ValueError, match="needs class_weights"):
        losses.get("weighted_cce", mode="multiclass")
    with pytest.raises(ValueError, match="unknown mode"):
        losses.get("dice", mode="softmax")
    with pytest.raises(ValueError, match="does not take settings"):
        losses.get("bce", mode="binary", gamma=2)


def test_mismatched_mask_and_head():
    with pytest.raises(ValueError, match=r"y_true has 3 channel\(s\), the model outputs 1"):
        losses.get("dice", mode="binary")(YT_MC, YP_BIN[:, :1, :1, :].repeat(3, axis=2))
    with pytest.raises(ValueError, match="expected 3"):
        losses.get("weighted_cce", mode="multiclass", class_weights=[1, 2])(YT_MC, YP_MC)


@pytest.mark.parametrize("name", ["dice", "bce", "cce", "weighted_cce", "focal", "dice_ce", "jaccard"])
def test_config_round_trip(name):
    mode = "multiclass"
    kwargs = {"class_weights": [1.0, 2.0, 4.0]} if name in ("weighted_cce", "dice_ce") else {}
    loss = losses.get(name, mode=mode, **kwargs)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert value(restored, YT_MC, YP_MC) == pytest.approx(value(loss, YT_MC, YP_MC), rel=1e-6)


def test_class_weights_from_frequencies():
    # inverse: 1 / (n f): f = [.8, .15, .05] -> [1/2.4, 1/.45, 1/.15]
    w = losses.class_weights_from_frequencies([80, 15, 5])
    assert w == pytest.approx([1 / 2.4, 1 / 0.45, 1 / 0.15])
    assert losses.class_weights_from_frequencies([1, 1]) == pytest.approx([1.0, 1.0])
    # median of [.8, .15, .05] is .15
    assert losses.class_weights_from_frequencies([0.8, 0.15, 0.05], method="median") == pytest.approx(
        [0.15 / 0.8, 1.0, 3.0]
    )
    # an absent class weighs 0; a cap holds
    assert losses.class_weights_from_frequencies([0.9, 0.1, 0.0], max_weight=3) == pytest.approx([1 / 1.8, 3.0, 0.0])
    # sqrt: 1 / sqrt(n f); balanced data still all ones
    assert losses.class_weights_from_frequencies([80, 15, 5], method="sqrt") == pytest.approx(
        [(1 / 2.4) ** 0.5, (1 / 0.45) ** 0.5, (1 / 0.15) ** 0.5])
    assert losses.class_weights_from_frequencies([1, 1], method="sqrt") == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="frequencies"):
        losses.class_weights_from_frequencies([0, 0])
    with pytest.raises(ValueError, match="unknown class weighting"):
        losses.class_weights_from_frequencies([1, 2], method="log")


@pytest.mark.parametrize(
    "name, mode, expected",
    [
        ("auto", "multiclass", "dice_ce"),
        ("dice_ce", "binary", "dice_ce"),
        ("cce", "multiclass", "weighted_cce"),
        ("bce", "multilabel", "weighted_cce"),
        ("dice", "binary", "dice"),
    ],
)
def test_trainer_applies_class_weights_without_dropping_dice(name, mode, expected):
    from segcore.training.trainer import class_weight_note, make_loss

    loss = make_loss(name, mode, 3, np.array([1.0, 2.0, 4.0]))
    assert loss.get_config()["name"] == expected
    weighted = expected != "dice"
    assert (loss.get_config().get("class_weights") is not None) == weighted
    assert (class_weight_note(name, mode) is None) == weighted


def test_training_weighs_rare_classes_by_the_square_root_of_their_rarity():
    """Inverse frequency made CamVid's rare classes painted wherever the model was unsure (precision 2-8%) and
    cost the buildings most of their pixels; a run weighs a class at 1% of 3 classes' pixels about 5.8x, not 33x."""
    from segcore.training.trainer import compute_class_weights

    masks = np.zeros((1, 10, 10), np.uint8)
    masks[0, :5] = 1
    masks[0, 0, 0] = 2  # 1% of the pixels
    w = compute_class_weights(masks, "multiclass", 3)
    assert w[2] == pytest.approx((1 / 0.03) ** 0.5) and w[0] == pytest.approx((1 / (3 * 0.5)) ** 0.5)

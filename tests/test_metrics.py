"""Training metrics: golden Dice / IoU on tiny arrays, void pixels, pooling, serialization."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from segcore.metrics import DiceScore, IoUScore, segmentation_metrics  # noqa: E402

pytestmark = pytest.mark.backend


def onehot(idx, k):
    out = np.eye(k, dtype="float32")[np.asarray(idx)]
    return out


def result(metric, yt, yp):
    metric.reset_state()
    metric.update_state(yt, yp)
    return float(keras.ops.convert_to_numpy(metric.result()))


# Multiclass K=3, 5 pixels: truth [0, 1, 2, 2, void], argmax prediction [0, 1, 1, 2, 0].
# class 0: TP1; class 1: TP1 FP1; class 2: TP1 FN1.
YT_MC = np.concatenate([onehot([0, 1, 2, 2], 3), -np.ones((1, 3), "float32")]).reshape(1, 1, 5, 3)
YP_MC = onehot([0, 1, 1, 2, 0], 3).reshape(1, 1, 5, 3) * 0.8 + 0.2 / 3


@pytest.mark.parametrize(
    "cls, kwargs, expected",
    [
        (DiceScore, {}, 2 / 3),  # mean over classes 1, 2: (2/3 + 2/3) / 2
        (IoUScore, {}, 1 / 2),
        (DiceScore, {"include_background": True}, (1 + 2 / 3 + 2 / 3) / 3),
        (DiceScore, {"class_id": 0}, 1.0),
        (DiceScore, {"class_id": 1}, 2 / 3),  # 2*1 / (2*1 + 1)
        (IoUScore, {"class_id": 2}, 1 / 2),  # 1 / (1 + 1)
    ],
)
def test_multiclass_golden(cls, kwargs, expected):
    assert result(cls("multiclass", 3, **kwargs), YT_MC, YP_MC) == pytest.approx(expected, rel=1e-6)


def test_binary_threshold_and_void():
    # truth [1, 0, 1, void]; p [.8, .2, .4, .9] -> pred [1, 0, 0, (void)]: TP1 FN1
    yt = np.array([1, 0, 1, -1], "float32").reshape(1, 2, 2, 1)
    yp = np.array([0.8, 0.2, 0.4, 0.9], "float32").reshape(1, 2, 2, 1)
    assert result(DiceScore("binary", 2), yt, yp) == pytest.approx(2 / 3)
    assert result(IoUScore("binary", 2), yt, yp) == pytest.approx(1 / 2)
    # a lower threshold catches the .4 pixel
    assert result(DiceScore("binary", 2, threshold=0.3), yt, yp) == pytest.approx(1.0)
    # background: truth bg = pixel 1; pred bg = pixels 1, 2 -> TP1 FP1
    assert result(DiceScore("binary", 2, class_id=0), yt, yp) == pytest.approx(2 / 3)


def test_multilabel_golden():
    # labels 1, 2; truth [[1,0],[1,1],[0,0],[0,1]], pred [[1,0],[1,0],[0,1],[0,1]]
    yt = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], "float32").reshape(1, 1, 4, 2)
    yp = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.7], [0.1, 0.8]], "float32").reshape(1, 1, 4, 2)
    assert result(DiceScore("multilabel", 3, class_id=1), yt, yp) == pytest.approx(1.0)
    assert result(DiceScore("multilabel", 3, class_id=2), yt, yp) == pytest.approx(0.5)  # TP1 FP1 FN1
    assert result(IoUScore("multilabel", 3, class_id=2), yt, yp) == pytest.approx(1 / 3)
    assert result(DiceScore("multilabel", 3), yt, yp) == pytest.approx(0.75)
    # background ("no label"): truth pixel 2 only, never predicted -> 0
    assert result(DiceScore("multilabel", 3, class_id=0), yt, yp) == pytest.approx(0.0)


def test_counts_pool_over_batches():
    m = DiceScore("binary", 2)
    # batch 1: TP 1 FP 0 FN 0 (Dice 1); batch 2: TP 0 FP 1 FN 2 (Dice 0)
    m.update_state(np.array([1.0]).reshape(1, 1, 1, 1), np.array([0.9]).reshape(1, 1, 1, 1))
    m.update_state(np.array([0.0, 1, 1]).reshape(1, 1, 3, 1), np.array([0.9, 0.1, 0.1]).reshape(1, 1, 3, 1))
    # pooled: 2*1 / (2 + 1 + 2) = 0.4, not the mean of batch scores (0.5)
    assert float(keras.ops.convert_to_numpy(m.result())) == pytest.approx(0.4)
    m.reset_state()
    assert float(keras.ops.convert_to_numpy(m.result())) == 0.0


def test_absent_class_left_out_of_mean():
    # K=3, class 2 absent from truth and prediction: mean is class 1's score only.
    yt = onehot([0, 1, 1, 0], 3).reshape(1, 1, 4, 3)
    yp = onehot([0, 1, 0, 0], 3).reshape(1, 1, 4, 3)
    assert result(DiceScore("multiclass", 3), yt, yp) == pytest.approx(2 / 3)
    assert result(DiceScore("multiclass", 3, class_id=2), yt, yp) == 0.0


def test_errors():
    with pytest.raises(ValueError, match="class_id must be in 0..2"):
        DiceScore("multiclass", 3, class_id=3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        DiceScore("multiclass", 1)
    with pytest.raises(ValueError, match=r"y_true has 3 channel\(s\), the model outputs 1"):
        DiceScore("binary", 2).update_state(np.zeros((1, 2, 2, 3), "float32"), np.zeros((1, 2, 2, 1), "float32"))


def test_serialization_round_trip():
    m = IoUScore("multilabel", 4, class_id=2, threshold=0.3)
    restored = keras.metrics.deserialize(keras.metrics.serialize(m))
    assert type(restored) is IoUScore
    assert restored.get_config() == m.get_config()
    assert restored.name == "iou_2"


def test_segmentation_metrics_names():
    names = [m.name for m in segmentation_metrics("multiclass", 4)]
    assert names == ["dice", "iou", "all_dice", "dice_1", "dice_2", "dice_3"]
    assert [m.name for m in segmentation_metrics("binary", 2)] == ["dice", "iou", "all_dice"]
    # class 0 a real class: "dice" counts every class already, so no second headline
    assert [m.name for m in segmentation_metrics("binary", 2, include_background=True)] == ["dice", "iou", "dice_0", "dice_1"][:2]

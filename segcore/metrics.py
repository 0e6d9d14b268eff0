"""Training metrics: Dice and IoU over hard predictions, mean or per class.

Predictions are made hard the way the model will be used: ``argmax`` for a
softmax head (multiclass), ``p >= threshold`` (0.5) for sigmoid heads. Counts
(true positives, false positives, false negatives per class) accumulate over
every batch of an epoch, so the result is the pooled score over the epoch,
not a mean of per-batch scores. Void pixels (``y_true == -1``) are left out.

Classes are dataset classes: 0 is the background, 1..K-1 the foreground.
For sigmoid heads the background is "no channel set" (derived from the
channels). The mean is over the foreground classes unless
``include_background=True``; a class absent from both truth and prediction
in everything seen so far is left out of the mean, and a single-class metric
(``class_id``) returns 0 for it, as ``keras.metrics.IoU`` does.
"""

from __future__ import annotations

import keras
from keras import ops

from segcore.catalog.heads import head_for


class _OverlapScore(keras.metrics.Metric):
    """Base: accumulates per-class TP / FP / FN over hard predictions."""

    default_name = "score"

    def __init__(self, mode: str = "binary", num_classes: int = 2, class_id: int | None = None,
                 threshold: float = 0.5, include_background: bool = False, name: str | None = None, dtype=None):
        _, self.num_outputs = head_for(mode, num_classes)
        if class_id is not None and not 0 <= int(class_id) < num_classes:
            raise ValueError(f"class_id must be in 0..{num_classes - 1} (num_classes={num_classes}), got {class_id}")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if name is None:
            name = self.default_name if class_id is None else f"{self.default_name}_{int(class_id)}"
        super().__init__(name=name, dtype=dtype)
        self.mode = mode
        self.num_classes = int(num_classes)
        self.class_id = None if class_id is None else int(class_id)
        self.threshold = float(threshold)
        self.include_background = bool(include_background)
        shape = (self.num_classes,)
        self.tp = self.add_variable(shape=shape, initializer="zeros", name="tp", dtype="float32")
        self.fp = self.add_variable(shape=shape, initializer="zeros", name="fp", dtype="float32")
        self.fn = self.add_variable(shape=shape, initializer="zeros", name="fn", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        if y_true.shape[-1] is not None and y_pred.shape[-1] is not None and y_true.shape[-1] != y_pred.shape[-1]:
            raise ValueError(f"mask and head do not match: y_true has {y_true.shape[-1]} channel(s), the model "
                             f"outputs {y_pred.shape[-1]} (mode {self.mode!r})")
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_outputs:
            raise ValueError(f"metric {self.name!r} expects {self.num_outputs} channel(s) for mode {self.mode!r} "
                             f"with {self.num_classes} classes, got {y_pred.shape[-1]}")
        valid = ops.cast(y_true[..., :1] >= 0.0, "float32")
        if self.mode == "multiclass":
            pred = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes, dtype="float32")
            true = ops.cast(y_true >= 0.5, "float32")
        else:
            pred_fg = ops.cast(y_pred >= self.threshold, "float32")
            true_fg = ops.cast(y_true >= 0.5, "float32")
            pred = ops.concatenate([1.0 - ops.max(pred_fg, axis=-1, keepdims=True), pred_fg], axis=-1)
            true = ops.concatenate([1.0 - ops.max(true_fg, axis=-1, keepdims=True), true_fg], axis=-1)
        axes = tuple(range(len(pred.shape) - 1))
        self.tp.assign_add(ops.sum(valid * pred * true, axis=axes))
        self.fp.assign_add(ops.sum(valid * pred * (1.0 - true), axis=axes))
        self.fn.assign_add(ops.sum(valid * (1.0 - pred) * true, axis=axes))

    def _per_class(self, tp, fp, fn):
        raise NotImplementedError

    def result(self):
        score, denom = self._per_class(self.tp, self.fp, self.fn)
        present = ops.cast(denom > 0, "float32")
        score = ops.where(denom > 0, score, 0.0)
        if self.class_id is not None:
            return score[self.class_id]
        first = 0 if self.include_background else 1
        score, present = score[first:], present[first:]
        return ops.sum(score * present) / ops.maximum(ops.sum(present), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, num_classes=self.num_classes, class_id=self.class_id,
                      threshold=self.threshold, include_background=self.include_background)
        return config


@keras.saving.register_keras_serializable(package="segcore")
class DiceScore(_OverlapScore):
    """Dice (F1) of hard predictions: ``2 TP / (2 TP + FP + FN)`` per class.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: K, classes including the background.
        class_id: a dataset class (0..K-1) for its own score; ``None`` for the
            mean over classes (foreground only unless ``include_background``).
        threshold: probability at which a sigmoid channel counts as set.
        include_background: include class 0 in the mean.
        name: metric name; default ``"dice"`` or ``"dice_<class_id>"``.
    """

    default_name = "dice"

    def _per_class(self, tp, fp, fn):
        denom = 2.0 * tp + fp + fn
        return 2.0 * tp / ops.maximum(denom, 1.0), denom


@keras.saving.register_keras_serializable(package="segcore")
class IoUScore(_OverlapScore):
    """IoU (Jaccard) of hard predictions: ``TP / (TP + FP + FN)`` per class.

    Args: as ``DiceScore``; default name ``"iou"`` or ``"iou_<class_id>"``.
    """

    default_name = "iou"

    def _per_class(self, tp, fp, fn):
        denom = tp + fp + fn
        return tp / ops.maximum(denom, 1.0), denom


def segmentation_metrics(mode: str, num_classes: int, *, per_class: bool = True,
                         include_background: bool = False) -> list[keras.metrics.Metric]:
    """The training metrics for a head: mean Dice and IoU, the headline ``all_dice``, plus Dice per class.

    ``dice`` and ``iou`` are the macro means; ``all_dice`` (added when the
    macro leaves class 0 out) counts every class, and picks the best
    checkpoint, so a near-constant model cannot be chosen for a high
    foreground Dice.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: K, classes including the background.
        per_class: add ``dice_<k>`` for every foreground class k (skipped for
            binary, where the mean is the one foreground class).
        include_background: class 0 is a real class (``DatasetInfo.class0_is_background``
            false): the means count it, and ``dice_0`` is added.

    Returns:
        A list of metric instances, ready for ``model.compile(metrics=...)``.
    """
    metrics: list[keras.metrics.Metric] = [
        DiceScore(mode, num_classes, include_background=include_background),
        IoUScore(mode, num_classes, include_background=include_background),
    ]
    if not include_background:  # the headline: every class, background included (segcore.labels)
        metrics.append(DiceScore(mode, num_classes, include_background=True, name="all_dice"))
    if per_class and num_classes > 2:
        first = 0 if include_background else 1
        metrics += [DiceScore(mode, num_classes, class_id=k) for k in range(first, num_classes)]
    return metrics

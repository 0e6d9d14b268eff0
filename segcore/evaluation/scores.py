"""Metrics from a confusion matrix accumulated over a split (numpy only).

Inputs are what the data and the model give: the canonical mask of each image
(an index mask ``(H, W)`` for binary and multiclass, label planes
``(H, W, K-1)`` for multilabel; ``ignore_index`` marks void pixels, which are
never counted) and the model's probabilities ``(H, W, C)``. Predictions are
``argmax`` for multiclass and ``p >= threshold`` for sigmoid heads.

Per class c, from its counts TP, FP, FN, TN (one-vs-rest):

- precision = TP / (TP + FP), recall = TP / (TP + FN)
- IoU = TP / (TP + FP + FN), Dice (= F1) = 2 TP / (2 TP + FP + FN)
- pixel accuracy = (TP + TN) / (TP + FP + FN + TN)

**Absent-class rule.** A class absent from both the truth and the prediction
(TP + FP + FN = 0) has no score: every metric of it is NaN (``None`` in JSON,
"n/a" on screen) and it is left out of the macro mean. A class that is in the
truth but never predicted (or predicted but not in the truth) is not absent:
its 0/0 precision (or recall) counts as 0 and its Dice is 0. The same rule
holds per image.

**Averages.** Macro: the mean of the per-class scores over the classes that
are not absent. Micro: the scores of TP, FP, FN, TN pooled over the classes
(large classes dominate). Both are over the foreground classes 1..K-1 by
default (``include_background=False``): the background is usually most of the
image and would hide a poor foreground. The background row is still reported.

For sigmoid heads (binary, multilabel) the background is "no label set" and
its counts are derived from the channels; the confusion matrix is K x K for
binary and multiclass, and the per-class 2 x 2 counts for multilabel.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from segcore.catalog.heads import head_for

SWEEP_BINS = 100
SWEEP_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
METRIC_NAMES = ("precision", "recall", "iou", "dice", "pixel_accuracy")


def metrics_from_counts(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Per-class metrics from one-vs-rest counts, with the absent-class rule.

    Args:
        tp, fp, fn, tn: arrays (or scalars) of counts.

    Returns:
        A dict of float arrays ``precision``, ``recall``, ``iou``, ``dice``,
        ``pixel_accuracy``; NaN where TP + FP + FN = 0 (class absent).
    """
    tp, fp, fn, tn = (np.asarray(x, dtype="float64") for x in (tp, fp, fn, tn))
    absent = (tp + fp + fn) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "precision": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), 0.0),
            "iou": np.where(absent, 0.0, tp / (tp + fp + fn)),
            "dice": np.where(absent, 0.0, 2 * tp / (2 * tp + fp + fn)),
            "pixel_accuracy": np.where(tp + fp + fn + tn > 0, (tp + tn) / (tp + fp + fn + tn), 0.0),
        }
    return {k: np.where(absent, np.nan, v) for k, v in out.items()}


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype="float64")
    return float(np.nanmean(x)) if np.any(~np.isnan(x)) else math.nan


def accuracy_is_lying(pixel_accuracy: float, dice: float, *, accuracy_at_least: float = 0.9,
                      dice_below: float = 0.5) -> str | None:
    """A warning when pixel accuracy is high but Dice is low, else ``None``.

    Mostly-background images make "all background" score a high pixel
    accuracy: a lesion model with accuracy 0.98 can have Dice 0.13.

    Args:
        pixel_accuracy: overall pixel accuracy.
        dice: mean foreground Dice.
        accuracy_at_least: accuracy from which to worry.
        dice_below: Dice under which to worry.

    Returns:
        The warning text, or ``None``.
    """
    if any(v is None or math.isnan(v) for v in (pixel_accuracy, dice)):
        return None
    if pixel_accuracy >= accuracy_at_least and dice < dice_below:
        return (f"accuracy is lying: pixel accuracy {pixel_accuracy:.2f} but mean Dice {dice:.2f}; most pixels "
                f"are background, so predicting background scores well on accuracy. Judge this model by Dice/IoU.")
    return None


# A prediction is near-constant when one class covers this share of the pixels while the truth has it on
# at most NEAR_CONSTANT_TRUTH of them; a class "collapses" when it covers at least COLLAPSE_SUPPORT of the
# true pixels but scores a Dice below COLLAPSE_DICE.
NEAR_CONSTANT_SHARE = 0.97
NEAR_CONSTANT_TRUTH = 0.9
COLLAPSE_SUPPORT = 0.01
COLLAPSE_DICE = 0.2


def degenerate_output(true_fraction: dict[str, float], pred_fraction: dict[str, float],
                      dice: dict[str, float | None], mode: str = "multiclass") -> list[str]:
    """Warnings for a model whose output is near-constant or loses a class that is in the labels.

    Args:
        true_fraction, pred_fraction: per class name, the share of valid pixels in the truth and the prediction.
        dice: per class name, its Dice (None or NaN: n/a).
        mode: for multilabel each plane is its own yes/no question, so "near-constant" looks at each plane.

    Returns:
        Zero or more warnings naming the class and the figures; they say the model is degenerate.
    """
    warnings = []
    if mode != "multilabel" and pred_fraction:
        top, share = max(pred_fraction.items(), key=lambda item: item[1])
        truth = true_fraction.get(top, 0.0)
        if share >= NEAR_CONSTANT_SHARE and truth <= NEAR_CONSTANT_TRUTH:
            warnings.append(
                f"near-constant output: '{top}' is predicted on {share:.1%} of the pixels but is {truth:.1%} of the "
                "labels; this model paints almost everything as one class, whatever its Dice for that class"
            )
    for name, truth in true_fraction.items():
        d = dice.get(name)
        if truth >= COLLAPSE_SUPPORT and d is not None and d == d and d < COLLAPSE_DICE and pred_fraction.get(name, 0.0) > 0:
            warnings.append(f"class '{name}' collapsed: Dice {d:.3f} although it is {truth:.1%} of the labelled pixels "
                            f"(predicted on {pred_fraction.get(name, 0.0):.1%})")
    return warnings


class ConfusionAccumulator:
    """Accumulates confusion counts over the images of a split.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: K, classes including the background.
        ignore_index: mask value of void pixels (never counted); ``None`` for none.
        threshold: probability at which a sigmoid channel counts as set.
        sweep: also keep probability histograms for a threshold sweep
            (sigmoid heads only).
    """

    def __init__(self, mode: str, num_classes: int, *, ignore_index: int | None = 255, threshold: float = 0.5,
                 sweep: bool = True):
        self.activation, self.num_outputs = head_for(mode, num_classes)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.mode = mode
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.threshold = float(threshold)
        self.confusion = np.zeros((num_classes, num_classes), dtype="int64") if mode != "multilabel" else None
        self._counts = np.zeros((num_classes, 4), dtype="int64")  # tp, fp, fn, tn (multilabel)
        self.sweep = sweep and self.activation == "sigmoid"
        if self.sweep:
            self._hist_pos = np.zeros((self.num_outputs, SWEEP_BINS), dtype="int64")
            self._hist_neg = np.zeros((self.num_outputs, SWEEP_BINS), dtype="int64")
        self.num_images = 0
        self.num_ignored = 0

    # -- input checking ---------------------------------------------------
    def _prepare(self, y_true, probs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (valid (N,), truth, probs (N, C)); truth is (N,) index or (N, C) planes."""
        y_true = np.asarray(y_true)
        probs = np.asarray(probs, dtype="float32")
        if probs.ndim == 2 and self.num_outputs == 1:
            probs = probs[..., None]
        if probs.ndim != 3 or probs.shape[-1] != self.num_outputs:
            raise ValueError(f"probabilities of shape {probs.shape} do not fit a {self.mode} head with "
                             f"{self.num_classes} classes: expected (H, W, {self.num_outputs})")
        if self.mode == "multilabel":
            if y_true.ndim != 3 or y_true.shape[-1] != self.num_outputs:
                raise ValueError(f"a multilabel mask must be label planes (H, W, {self.num_outputs}), got shape "
                                 f"{y_true.shape}; an index mask (H, W) belongs to a binary or multiclass head")
        else:
            if y_true.ndim == 3 and y_true.shape[-1] == 1:
                y_true = y_true[..., 0]
            if y_true.ndim != 2:
                raise ValueError(f"a {self.mode} mask must be an index mask (H, W), got shape {y_true.shape}; "
                                 "label planes (H, W, K-1) belong to a multilabel head")
        if y_true.shape[:2] != probs.shape[:2]:
            raise ValueError(f"mask size {y_true.shape[:2]} differs from prediction size {probs.shape[:2]}")
        truth = y_true.reshape(-1, self.num_outputs) if self.mode == "multilabel" else y_true.reshape(-1)
        if self.ignore_index is None:
            void = np.zeros(truth.shape[0], dtype=bool)
        else:
            void = truth == self.ignore_index
            void = void.any(axis=1) if void.ndim == 2 else void
        valid = ~void
        top = 1 if self.mode == "multilabel" else self.num_classes - 1
        bad = np.unique(truth[valid])
        bad = bad[(bad < 0) | (bad > top)]
        if bad.size:
            raise ValueError(f"mask has values {bad.tolist()}; a {self.mode} mask with {self.num_classes} classes "
                             f"holds 0..{top} (and {self.ignore_index} for void)")
        return valid, truth, probs.reshape(-1, self.num_outputs)

    # -- accumulation ------------------------------------------------------
    def _counts_of(self, valid, truth, probs):
        k = self.num_classes
        if self.mode == "multilabel":
            t = truth[valid].astype(bool)
            p = probs[valid] >= self.threshold
            t = np.concatenate([~t.any(axis=1, keepdims=True), t], axis=1)
            p = np.concatenate([~p.any(axis=1, keepdims=True), p], axis=1)
            tp = (t & p).sum(0)
            fp = (~t & p).sum(0)
            fn = (t & ~p).sum(0)
            tn = (~t & ~p).sum(0)
            return np.stack([tp, fp, fn, tn], axis=1).astype("int64"), None
        t = truth[valid].astype("int64")
        if self.mode == "binary":
            p = (probs[valid, 0] >= self.threshold).astype("int64")
        else:
            p = probs[valid].argmax(axis=1)
        cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
        return counts_from_confusion(cm), cm

    def update(self, y_true, probs) -> np.ndarray:
        """Add one image.

        Args:
            y_true: the canonical mask: index ``(H, W)`` (binary, multiclass)
                or planes ``(H, W, K-1)`` (multilabel), void = ``ignore_index``.
            probs: model output ``(H, W, C)`` (``(H, W)`` accepted for binary).

        Returns:
            This image's counts (K, 4): TP, FP, FN, TN per class.
        """
        valid, truth, flat = self._prepare(y_true, probs)
        counts, cm = self._counts_of(valid, truth, flat)
        if cm is not None:
            self.confusion += cm
        self._counts += counts
        if self.sweep:
            bins = np.clip((flat[valid] * SWEEP_BINS).astype("int64"), 0, SWEEP_BINS - 1)
            pos = (truth[valid].reshape(-1, self.num_outputs) == 1)
            for c in range(self.num_outputs):
                self._hist_pos[c] += np.bincount(bins[pos[:, c], c], minlength=SWEEP_BINS)
                self._hist_neg[c] += np.bincount(bins[~pos[:, c], c], minlength=SWEEP_BINS)
        self.num_images += 1
        self.num_ignored += int((~valid).sum())
        return counts

    @property
    def counts(self) -> np.ndarray:
        """Accumulated (K, 4) counts: TP, FP, FN, TN per class."""
        if self.confusion is not None:
            return counts_from_confusion(self.confusion)
        return self._counts.copy()

    def pixel_accuracy(self) -> float:
        """Overall pixel accuracy: the confusion trace over its sum; for
        multilabel, pooled over the label channels."""
        if self.confusion is not None:
            total = self.confusion.sum()
            return float(np.trace(self.confusion) / total) if total else math.nan
        c = self._counts[1:]
        total = c.sum()
        return float((c[:, 0].sum() + c[:, 3].sum()) / total) if total else math.nan

    def threshold_sweep(self, thresholds: Sequence[float] = SWEEP_THRESHOLDS) -> dict[str, Any] | None:
        """Dice and IoU per foreground class at each threshold (sigmoid heads).

        Thresholds are resolved to 1/100 (the probability histogram bins).

        Returns:
            ``{"thresholds", "dice": [per class lists], "iou": ..., "macro_dice",
            "best_threshold", "best_macro_dice"}``, or ``None`` for softmax heads.
        """
        if not self.sweep:
            return None
        dice_rows, iou_rows = [], []
        pos_total = self._hist_pos.sum(axis=1)
        for thr in thresholds:
            j = int(round(thr * SWEEP_BINS))
            tp = self._hist_pos[:, j:].sum(axis=1)
            fp = self._hist_neg[:, j:].sum(axis=1)
            fn = pos_total - tp
            m = metrics_from_counts(tp, fp, fn, np.zeros_like(tp))
            dice_rows.append(m["dice"])
            iou_rows.append(m["iou"])
        dice = np.array(dice_rows)  # (T, C)
        macro = np.array([_nanmean(row) for row in dice])
        best = int(np.nanargmax(macro)) if np.any(~np.isnan(macro)) else None
        return {
            "thresholds": [float(t) for t in thresholds],
            "dice": [_json_list(dice[:, c]) for c in range(dice.shape[1])],
            "iou": [_json_list(np.array(iou_rows)[:, c]) for c in range(dice.shape[1])],
            "macro_dice": _json_list(macro),
            "best_threshold": None if best is None else float(thresholds[best]),
            "best_macro_dice": None if best is None else float(macro[best]),
        }


def counts_from_confusion(cm: np.ndarray) -> np.ndarray:
    """One-vs-rest counts (K, 4) = TP, FP, FN, TN from a K x K confusion matrix
    (rows: truth, columns: prediction)."""
    cm = np.asarray(cm, dtype="int64")
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return np.stack([tp, fp, fn, tn], axis=1)


def summarize_counts(counts: np.ndarray, *, include_background: bool = False) -> dict[str, Any]:
    """Per-class, macro and micro metrics from (K, 4) counts.

    Args:
        counts: TP, FP, FN, TN per class.
        include_background: average over all K classes instead of 1..K-1.

    Returns:
        ``{"per_class": {metric: array (K,)}, "macro": {metric: float},
        "micro": {metric: float}, "absent": bool array (K,)}``.
    """
    counts = np.asarray(counts, dtype="float64")
    per_class = metrics_from_counts(*counts.T)
    first = 0 if include_background or counts.shape[0] == 1 else 1
    macro = {k: _nanmean(v[first:]) for k, v in per_class.items()}
    pooled = counts[first:].sum(axis=0)
    micro = {k: float(v) for k, v in metrics_from_counts(*pooled).items()}
    return {"per_class": per_class, "macro": macro, "micro": micro, "absent": counts[:, :3].sum(axis=1) == 0}


def _json_value(x):
    if x is None:
        return None
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _json_list(a) -> list:
    return [_json_value(v) for v in np.asarray(a).tolist()]


def json_ready(obj):
    """Numpy arrays and scalars as plain JSON data; NaN becomes ``None`` (n/a)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    return _json_value(obj)

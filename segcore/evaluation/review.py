"""What the Compare page reviews beyond the metric table: where each model errs and where models disagree (numpy only).

**Confusion matrix, normalised per true class.** Row ``t`` of a K x K matrix
of pixel counts (rows: truth, columns: prediction, void pixels never
counted) divided by its sum: the share of class ``t``'s pixels given each
class. The diagonal is each class's recall. A class with no true pixels has
a row of NaN (n/a).

**Precision-recall and threshold curves**, one-vs-rest per class on the
soft probabilities: the score of class ``k`` is ``p_k`` (its softmax
probability, or its sigmoid channel); a pixel is a positive when its true
class is ``k`` (multilabel: when plane ``k`` is set). Over every valid pixel
of the evaluated images, :class:`ScoreHistograms` keeps only two histograms
per class (positives and negatives, ``bins`` equal bins of ``p_k`` over
[0, 1]), so memory does not grow with the images. At threshold
``t_j = j / bins``, a pixel counts as ``k`` when ``p_k >= t_j``:

- ``TP_j = sum(pos[j:])``, ``FP_j = sum(neg[j:])``, ``P = sum(pos)``
- precision ``TP_j / (TP_j + FP_j)`` (NaN when nothing is predicted),
  recall ``TP_j / P``, F1 ``2 TP_j / (2 TP_j + FP_j + FN_j)``
- average precision: ``sum_j (R_j - R_{j+1}) * P_j``, the step-wise area
  under the curve (as ``sklearn.metrics.average_precision_score`` on scores
  resolved to ``1 / bins``).

The **operating point** is what the metric table scores: for sigmoid heads
the threshold 0.5 (a bin edge, so the same pixels); for a softmax head the
arg max, which is no threshold on ``p_k``: its precision and recall come
from the confusion matrix.

**Disagreement.** For the predicted masks of several runs on one image,
each valid pixel is one of: all runs give the same label and it is right,
the runs give different labels (:data:`DISAGREE`), or all give the same
wrong label (:data:`AGREE_WRONG`). :func:`rank_disagreement` orders images
by the share of valid pixels where the runs differ, then by the share
where at least one run is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from segcore.data.resample import resize_probs
from segcore.labels import probs_to_mask

CURVE_BINS = 256  # 0.5 is the edge of bin 128: the operating point of sigmoid heads is exact
AGREE, DISAGREE, AGREE_WRONG, VOID_PIXEL = 0, 1, 2, 255


def normalized_confusion(confusion) -> np.ndarray:
    """A confusion matrix (rows: truth, columns: prediction) with each row divided by its sum (NaN: no true pixels)."""
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is K x K; got shape {cm.shape}")
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, cm / np.where(rows > 0, rows, 1), np.nan)


def curve_classes(mode: str, num_classes: int) -> list[int]:
    """The classes that get a curve: the foreground of a binary head, every class of a softmax head, each plane of a multilabel one."""
    if mode == "binary":
        return [1]
    if mode == "multiclass":
        return list(range(num_classes))
    if mode == "multilabel":
        return list(range(1, num_classes))
    raise ValueError(f"unknown mode {mode!r}; expected binary, multiclass or multilabel")


def _valid_truth(truth: np.ndarray, mode: str, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(truth, valid)``: an index mask (H, W) or planes (H, W, P), and the pixels that are not void."""
    truth = np.asarray(truth)
    if mode != "multilabel" and truth.ndim == 3 and truth.shape[-1] == 1:
        truth = truth[..., 0]
    if ignore_index is None:
        return truth, np.ones(truth.shape[:2], bool)
    void = truth == ignore_index
    return truth, ~(void.any(axis=-1) if truth.ndim == 3 else void)


class ScoreHistograms:
    """Per class, histograms of ``p_k`` over its true pixels and over the others (see the module notes).

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: K, classes including class 0.
        ignore_index: mask value of void pixels (never counted); ``None`` for none.
        bins: equal bins of probability over [0, 1].
    """

    def __init__(self, mode: str, num_classes: int, *, ignore_index: int | None = 255, bins: int = CURVE_BINS):
        self.mode, self.num_classes, self.ignore_index, self.bins = mode, int(num_classes), ignore_index, int(bins)
        self.classes = curve_classes(mode, num_classes)
        self.positive = np.zeros((len(self.classes), self.bins), np.int64)
        self.negative = np.zeros((len(self.classes), self.bins), np.int64)
        self.confusion = np.zeros((num_classes, num_classes), np.int64) if mode != "multilabel" else None
        self.num_images = 0

    def update(self, truth: np.ndarray, probs: np.ndarray) -> None:
        """Add one image: its canonical mask and its probabilities ``(H, W, C)`` (resized to the mask when they differ)."""
        truth, valid = _valid_truth(truth, self.mode, self.ignore_index)
        probs = np.asarray(probs, np.float32)
        if probs.ndim == 2:
            probs = probs[..., None]
        if probs.shape[:2] != truth.shape[:2]:
            probs = resize_probs(probs, truth.shape[0], truth.shape[1])
        outputs = 1 if self.mode == "binary" else (self.num_classes if self.mode == "multiclass" else self.num_classes - 1)
        if probs.shape[-1] != outputs:
            raise ValueError(f"probabilities of shape {probs.shape} do not fit a {self.mode} head with "
                             f"{self.num_classes} classes: expected (H, W, {outputs})")
        p = probs[valid]
        t = truth[valid]
        index = np.minimum((p.astype(np.float64) * self.bins).astype(np.int64), self.bins - 1)
        for row, k in enumerate(self.classes):
            if self.mode == "multiclass":
                channel, positive = k, t == k
            elif self.mode == "binary":
                channel, positive = 0, t == 1
            else:
                channel, positive = k - 1, t[:, k - 1] == 1
            self.positive[row] += np.bincount(index[positive, channel], minlength=self.bins)
            self.negative[row] += np.bincount(index[~positive, channel], minlength=self.bins)
        if self.confusion is not None:
            predicted = probs_to_mask(p[None], self.mode)[0].astype(np.int64)
            k = self.num_classes
            self.confusion += np.bincount(t.astype(np.int64) * k + predicted, minlength=k * k).reshape(k, k)
        self.num_images += 1

    def curve(self, k: int, confusion=None) -> "PRCurve":
        """The curve of class ``k`` with its operating point (softmax heads: from ``confusion``, default this one's)."""
        if k not in self.classes:
            raise ValueError(f"class {k} has no curve for a {self.mode} head; curves exist for classes {self.classes}")
        row = self.classes.index(k)
        thresholds, precision, recall, f1 = pr_curve(self.positive[row], self.negative[row])
        if self.mode == "multiclass":
            cm = np.asarray(self.confusion if confusion is None else confusion, np.float64)
            tp, predicted, true = cm[k, k], cm[:, k].sum(), cm[k, :].sum()
            point = (None, tp / predicted if predicted else math.nan, tp / true if true else math.nan)
        else:
            j = self.bins // 2
            point = (thresholds[j], precision[j], recall[j])
        return PRCurve(k, thresholds, precision, recall, f1, int(self.positive[row].sum()),
                       average_precision(precision, recall), *point)


@dataclass(frozen=True)
class PRCurve:
    """One class's precision-recall curve over thresholds ``j / bins`` and its operating point.

    ``threshold`` of the operating point is ``None`` for a softmax head (arg max).
    """

    class_id: int
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    positives: int
    average_precision: float
    threshold: float | None
    point_precision: float
    point_recall: float


def pr_curve(positive, negative) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, precision, recall, f1)`` at each bin edge ``j / bins`` from the two histograms of one class.

    Precision is NaN where no pixel reaches the threshold; recall and F1 are NaN when the class has no true pixels.
    """
    pos = np.asarray(positive, np.float64)
    neg = np.asarray(negative, np.float64)
    tp = np.cumsum(pos[::-1])[::-1]
    fp = np.cumsum(neg[::-1])[::-1]
    total = pos.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = tp / total if total else np.full_like(tp, np.nan)
        f1 = 2 * tp / (tp + fp + total) if total else np.full_like(tp, np.nan)
    return np.arange(pos.size) / pos.size, precision, recall, f1


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """``sum_j (R_j - R_{j+1}) * P_j`` over thresholds in increasing order (NaN when the class has no true pixels)."""
    recall = np.asarray(recall, np.float64)
    if recall.size == 0 or np.isnan(recall).all():
        return math.nan
    step = recall - np.append(recall[1:], 0.0)
    return float(np.sum(np.where(step > 0, step * np.nan_to_num(np.asarray(precision, np.float64)), 0.0)))


def accumulate_curves(ids: Iterable[str], probs_of: Callable[[str], np.ndarray | None], truth_of: Callable[[str], np.ndarray],
                      mode: str, num_classes: int, *, ignore_index: int | None = 255, bins: int = CURVE_BINS) -> ScoreHistograms:
    """:class:`ScoreHistograms` over the images ``ids`` (an image whose ``probs_of`` is None is skipped), one image at a time."""
    hist = ScoreHistograms(mode, num_classes, ignore_index=ignore_index, bins=bins)
    for sample_id in ids:
        probs = probs_of(sample_id)
        if probs is not None:
            hist.update(truth_of(sample_id), probs)
    return hist


# -- where models disagree --------------------------------------------------------------------

def prediction_mask(probs: np.ndarray, shape: Sequence[int], mode: str, threshold: float = 0.5) -> np.ndarray:
    """A run's mask of an image at the image's size ``shape`` (probabilities resized first when they differ)."""
    probs = np.asarray(probs)
    if probs.shape[:2] != tuple(shape[:2]):
        probs = resize_probs(probs, int(shape[0]), int(shape[1]))
    return probs_to_mask(probs, mode, threshold)


def disagreement_map(predictions: Sequence[np.ndarray], truth: np.ndarray | None = None, *, mode: str = "multiclass",
                     ignore_index: int | None = 255) -> np.ndarray:
    """uint8 ``(H, W)``: per pixel :data:`AGREE`, :data:`DISAGREE`, :data:`AGREE_WRONG` or :data:`VOID_PIXEL`.

    Args:
        predictions: the runs' masks of one image, each an index mask ``(H, W)``
            or planes ``(H, W, P)`` (multilabel: differing in any plane is differing).
        truth: its canonical mask, or None (then nothing is "wrong" and nothing is void).
        mode: the head, for how the truth reads.
        ignore_index: void value in ``truth``.
    """
    preds = [np.asarray(p) for p in predictions]
    if len(preds) < 2:
        raise ValueError(f"disagreement needs the masks of at least two runs; got {len(preds)}")
    shape = preds[0].shape
    if any(p.shape != shape for p in preds):
        raise ValueError(f"the runs' masks differ in shape: {[p.shape for p in preds]}")
    planes = [p if p.ndim == 3 else p[..., None] for p in preds]
    differ = np.zeros(shape[:2], bool)
    for p in planes[1:]:
        differ |= (p != planes[0]).any(axis=-1)
    out = np.where(differ, DISAGREE, AGREE).astype(np.uint8)
    if truth is not None:
        t, valid = _valid_truth(truth, mode, ignore_index)
        if t.shape[:2] != shape[:2]:
            raise ValueError(f"the truth is {t.shape[:2]} but the masks are {shape[:2]}")
        t = t if t.ndim == 3 else t[..., None]
        wrong = (planes[0] != t).any(axis=-1)
        out[~differ & wrong] = AGREE_WRONG
        out[~valid] = VOID_PIXEL
    return out


def disagreement_shares(predictions: Sequence[np.ndarray], truth: np.ndarray | None = None, *, mode: str = "multiclass",
                        ignore_index: int | None = 255) -> dict[str, float]:
    """Shares of the valid pixels of one image: ``disagree`` (the runs differ), ``any_wrong`` (at least one run is
    wrong), ``all_wrong`` (all give the same wrong label); and ``pixels``, the valid pixels."""
    dmap = disagreement_map(predictions, truth, mode=mode, ignore_index=ignore_index)
    valid = dmap != VOID_PIXEL
    n = int(valid.sum())
    if truth is None or n == 0:
        any_wrong = math.nan
    else:
        t, _ = _valid_truth(truth, mode, ignore_index)
        t = t if t.ndim == 3 else t[..., None]
        wrong = np.zeros(dmap.shape, bool)
        for p in predictions:
            p = np.asarray(p)
            wrong |= ((p if p.ndim == 3 else p[..., None]) != t).any(axis=-1)
        any_wrong = float((wrong & valid).sum() / n)
    share = (lambda v: float((dmap == v).sum() / n)) if n else (lambda v: math.nan)
    return {"disagree": share(DISAGREE), "any_wrong": any_wrong,
            "all_wrong": share(AGREE_WRONG) if truth is not None else math.nan, "pixels": n}


def rank_disagreement(ids: Iterable[str], predictions_of: Callable[[str], Sequence[np.ndarray] | None],
                      truth_of: Callable[[str], np.ndarray | None] | None = None, *, mode: str = "multiclass",
                      ignore_index: int | None = 255):
    """Images ranked by how much the runs disagree on them: a ``pandas.DataFrame`` indexed by image id.

    Args:
        ids: the images.
        predictions_of: the runs' masks of an image (same order for every image), or None to leave it out.
        truth_of: its canonical mask (None: rank by disagreement alone).
        mode: the head.
        ignore_index: void value in the masks.

    Returns:
        Columns ``disagree``, ``any_wrong``, ``all_wrong`` (shares of the valid pixels) and ``pixels``, sorted by
        ``disagree`` then ``any_wrong``, largest first (ties: in the order of ``ids``).
    """
    import pandas as pd

    rows = {}
    for sample_id in ids:
        preds = predictions_of(sample_id)
        if preds is None:
            continue
        truth = truth_of(sample_id) if truth_of is not None else None
        rows[str(sample_id)] = disagreement_shares(preds, truth, mode=mode, ignore_index=ignore_index)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["disagree", "any_wrong", "all_wrong", "pixels"])
    frame.index.name = "image"
    order = sorted(range(len(frame)), key=lambda i: (-np.nan_to_num(frame["disagree"].iloc[i], nan=-1.0),
                                                     -np.nan_to_num(frame["any_wrong"].iloc[i], nan=-1.0), i))
    return frame.iloc[order]

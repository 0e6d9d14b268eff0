"""Boundary and calibration figures beside Dice and IoU (numpy and OpenCV).

**Boundary figures, per class and image**, at the labels' own resolution,
in pixels:

- the boundary of a region is its pixels with at least one of their 8
  neighbours outside it, the space beyond the image border counting as
  outside (as ``scipy.ndimage.binary_erosion`` does by default), so a
  region never has an empty boundary; void pixels belong to no region;
- distances are exact Euclidean distances from each boundary pixel of one
  region to the nearest boundary pixel of the other
  (``cv2.distanceTransform`` with ``DIST_MASK_PRECISE``);
- **HD95**: the larger of the two directed 95th percentiles (prediction to
  truth, truth to prediction). Lower is better;
- **NSD** (normalised surface Dice) at a tolerance of ``tolerance`` pixels:
  the share of both boundaries that lies within the tolerance of the other,
  ``(|{p in dP: d(p, dT) <= tol}| + |{t in dT: d(t, dP) <= tol}|) / (|dP| + |dT|)``.
  Higher is better. The boundary is counted in pixels, not in surface
  elements, so it is the pixel-grid approximation of the published figure.

A class absent from both masks has neither figure (n/a); a class in only
one of them gets HD95 = the image's diagonal (the largest distance the image
allows) and NSD = 0. A split's figure per class is the mean over the images
where it is not n/a.

**Calibration**: the expected calibration error over every valid pixel,
with ``CALIBRATION_BINS`` equal bins of confidence over [0, 1]. A pixel's
confidence is the probability of the class it is given (the arg max for a
softmax head; ``max(p, 1 - p)`` per channel for sigmoid heads) and it is
correct when that class is the true one. ECE = sum over bins of
``(n_b / N) * |accuracy_b - confidence_b|``. The bins themselves are the
reliability diagram.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

NSD_TOLERANCE = 2.0  # pixels at the labels' own resolution
CALIBRATION_BINS = 15
_KERNEL = np.ones((3, 3), np.uint8)


def boundary(region: np.ndarray) -> np.ndarray:
    """Boolean boundary of a boolean region: its pixels with an 8-neighbour outside it (beyond the image is outside)."""
    region = np.ascontiguousarray(region, dtype=np.uint8)
    inner = cv2.erode(region, _KERNEL, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (region > 0) & (inner == 0)


def _distance_to(edge: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest ``edge`` pixel (``edge`` not empty)."""
    return cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def surface_figures(pred: np.ndarray, truth: np.ndarray, tolerance: float = NSD_TOLERANCE) -> tuple[float, float]:
    """``(hd95, nsd)`` of two boolean regions of one image (NaN, NaN when both are empty)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    has_p, has_t = bool(pred.any()), bool(truth.any())
    if not has_p and not has_t:
        return math.nan, math.nan
    if not (has_p and has_t):
        return float(math.hypot(*pred.shape[:2])), 0.0
    edge_p, edge_t = boundary(pred), boundary(truth)
    d_pt = _distance_to(edge_t)[edge_p]  # prediction boundary -> truth boundary
    d_tp = _distance_to(edge_p)[edge_t]
    hd95 = max(float(np.percentile(d_pt, 95)), float(np.percentile(d_tp, 95)))
    nsd = float(((d_pt <= tolerance).sum() + (d_tp <= tolerance).sum()) / (d_pt.size + d_tp.size))
    return hd95, nsd


def class_regions(mask: np.ndarray, mode: str, num_classes: int, ignore_index: int | None):
    """Yield ``(k, region)`` per class 0..K-1 of a mask (index, or planes for multilabel), void left out."""
    mask = np.asarray(mask)
    if mode == "multilabel":
        void = (mask == ignore_index).any(axis=-1) if ignore_index is not None else np.zeros(mask.shape[:2], bool)
        on = (mask == 1) & ~void[..., None]
        yield 0, ~on.any(axis=-1) & ~void
        for k in range(1, num_classes):
            yield k, on[..., k - 1]
        return
    if mask.ndim == 3:
        mask = mask[..., 0]
    void = mask == ignore_index if ignore_index is not None else np.zeros(mask.shape, bool)
    for k in range(num_classes):
        yield k, (mask == k) & ~void


def image_surface(truth: np.ndarray, pred: np.ndarray, mode: str, num_classes: int, ignore_index: int | None,
                  tolerance: float = NSD_TOLERANCE) -> tuple[list[float], list[float]]:
    """Per class 0..K-1 of one image: ``(hd95 list, nsd list)``; ``pred`` is a mask, void taken from ``truth``."""
    truth = np.asarray(truth)
    if ignore_index is not None:
        void = (truth == ignore_index).any(axis=-1) if truth.ndim == 3 and mode == "multilabel" else (
            (truth[..., 0] if truth.ndim == 3 else truth) == ignore_index)
    else:
        void = np.zeros(truth.shape[:2], bool)
    hd, nsd = [], []
    pred_regions = dict(class_regions(pred, mode, num_classes, None))
    for k, t in class_regions(truth, mode, num_classes, ignore_index):
        h, n = surface_figures(pred_regions[k] & ~void, t, tolerance)
        hd.append(h)
        nsd.append(n)
    return hd, nsd


class CalibrationAccumulator:
    """Confidence and correctness of every valid pixel, in ``bins`` equal bins of confidence (see the module notes)."""

    def __init__(self, mode: str, bins: int = CALIBRATION_BINS, threshold: float = 0.5):
        self.mode = mode
        self.bins = int(bins)
        self.threshold = float(threshold)
        self.count = np.zeros(self.bins, np.int64)
        self.confidence = np.zeros(self.bins, np.float64)
        self.correct = np.zeros(self.bins, np.float64)

    def update(self, truth: np.ndarray, probs: np.ndarray, ignore_index: int | None = 255) -> None:
        truth = np.asarray(truth)
        probs = np.asarray(probs, np.float32)
        if self.mode == "multiclass":
            t = truth[..., 0] if truth.ndim == 3 else truth
            valid = t != ignore_index if ignore_index is not None else np.ones(t.shape, bool)
            p = probs[valid]
            conf = p.max(axis=-1)
            right = p.argmax(axis=-1) == t[valid]
        else:
            planes = truth[..., None] if truth.ndim == 2 else truth
            if ignore_index is not None:
                valid = ~(planes == ignore_index).any(axis=-1)
            else:
                valid = np.ones(planes.shape[:2], bool)
            p = probs[valid].reshape(-1)
            t = planes[valid].reshape(-1)
            on = p >= self.threshold
            conf = np.where(on, p, 1.0 - p)
            right = on == (t == 1)
        index = np.minimum((conf * self.bins).astype(np.int64), self.bins - 1)
        self.count += np.bincount(index, minlength=self.bins)
        self.confidence += np.bincount(index, weights=conf.astype(np.float64), minlength=self.bins)
        self.correct += np.bincount(index, weights=right.astype(np.float64), minlength=self.bins)

    def result(self) -> dict[str, Any]:
        """``{"ece", "bins": [{"low", "high", "count", "confidence", "accuracy"}]}`` (empty bins: None)."""
        total = int(self.count.sum())
        rows = []
        ece = 0.0
        for b in range(self.bins):
            n = int(self.count[b])
            conf = self.confidence[b] / n if n else None
            acc = self.correct[b] / n if n else None
            if n:
                ece += n / total * abs(acc - conf)
            rows.append({"low": b / self.bins, "high": (b + 1) / self.bins, "count": n,
                         "confidence": None if conf is None else float(conf),
                         "accuracy": None if acc is None else float(acc)})
        return {"ece": float(ece) if total else None, "bins": rows, "num_bins": self.bins}

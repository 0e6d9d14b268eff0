"""The evaluation report of a split: ``evaluate_predictions`` and its ``EvaluationReport``.

The counting and the metric rules (absent classes, macro and micro means)
are in :mod:`segcore.evaluation.scores`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from segcore.evaluation.scores import (
    METRIC_NAMES,
    ConfusionAccumulator,
    accuracy_is_lying,
    degenerate_output,
    json_ready,
    summarize_counts,
)
from segcore.evaluation.surface import NSD_TOLERANCE, CalibrationAccumulator, image_surface
from segcore.labels import HEADLINE_KEY, HEADLINE_NAME, Labels, mean_over, probs_to_mask


@dataclass
class EvaluationReport:
    """The result of ``evaluate_predictions``; ``to_dict()`` is JSON-ready (NaN -> None, i.e. n/a)."""

    mode: str
    class_names: list[str]
    threshold: float
    ignore_index: int | None
    include_background: bool
    num_images: int
    num_pixels: int
    num_ignored: int
    pixel_accuracy: float
    per_class: list[dict[str, Any]]
    macro: dict[str, float]
    micro: dict[str, float]
    confusion_matrix: list[list[int]] | None
    per_image: list[dict[str, Any]] = field(default_factory=list)
    threshold_sweep: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    all: dict[str, float] = field(default_factory=dict)  # means over every class (the headline's classes)
    headline: dict[str, Any] = field(default_factory=dict)  # {"key", "name", "value"}: what ranks runs
    calibration: dict[str, Any] | None = None  # {"ece", "bins", "num_bins"}
    surface_tolerance: float | None = None  # NSD tolerance in pixels; None when boundary figures were not computed
    degenerate: bool = False  # near-constant output or a collapsed class (see ``warnings``)

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON data; NaN (absent class, n/a) becomes ``None``."""
        return json_ready({f: getattr(self, f) for f in self.__dataclass_fields__})


def evaluate_predictions(y_true_iter: Iterable, prob_iter: Iterable, mode: str, class_names: Sequence[str],
                         ignore_index: int | None = 255, *, threshold: float = 0.5,
                         ids: Sequence[str] | None = None, include_background: bool = False,
                         sweep: bool = True, surface: bool = True, calibration: bool = True,
                         tolerance: float = NSD_TOLERANCE) -> EvaluationReport:
    """Evaluate a model's predictions on a split.

    Args:
        y_true_iter: canonical masks, one per image: index ``(H, W)`` for
            binary and multiclass, planes ``(H, W, K-1)`` for multilabel.
        prob_iter: the model's probabilities ``(H, W, C)``, same order.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_names: the K class names, background first.
        ignore_index: void value in the masks, never counted.
        threshold: probability at which a sigmoid channel counts as set.
        ids: optional image ids for the per-image rows.
        include_background: average over all classes instead of foreground only.
        sweep: add a threshold sweep (sigmoid heads).
        surface: add HD95 and NSD per class (:mod:`segcore.evaluation.surface`).
        calibration: add the expected calibration error and its reliability bins.
        tolerance: the NSD tolerance in pixels.

    Returns:
        An ``EvaluationReport``: per class precision / recall / IoU / Dice /
        pixel accuracy (NaN = n/a for a class absent from truth and
        prediction), macro and micro averages, per-image metrics, the
        threshold sweep, and warnings (``accuracy_is_lying``, classes
        missing from the truth or never predicted).

    Raises:
        ValueError: masks or probabilities that do not fit the mode and
            classes, or different numbers of masks and predictions.
    """
    names = [str(n) for n in class_names]
    labels = Labels(mode, tuple(names), not include_background, ignore_index)
    acc = ConfusionAccumulator(mode, len(names), ignore_index=ignore_index, threshold=threshold, sweep=sweep)
    calib = CalibrationAccumulator(mode, threshold=threshold) if calibration else None
    hd_rows: list[list[float]] = []
    nsd_rows: list[list[float]] = []
    per_image: list[dict[str, Any]] = []
    truths, probs_it = iter(y_true_iter), iter(prob_iter)
    index = 0
    while True:
        t = next(truths, None)
        p = next(probs_it, None)
        if t is None and p is None:
            break
        if t is None or p is None:
            raise ValueError(f"got {'more' if p is not None else 'fewer'} predictions than masks after {index} images")
        p = np.asarray(p)
        if p.ndim == 2:  # a binary head's (H, W) probabilities
            p = p[..., None]
        counts = acc.update(t, p)
        s = summarize_counts(counts, include_background=include_background)
        if calib is not None:
            calib.update(t, p, ignore_index)
        if surface:
            hd, nsd = image_surface(t, probs_to_mask(p, mode, threshold), mode, len(names), ignore_index, tolerance)
            hd_rows.append(hd)
            nsd_rows.append(nsd)
        total = counts[0].sum()
        fg_true = 1.0 - (counts[0, 0] + counts[0, 2]) / total if total else math.nan
        fg_pred = 1.0 - (counts[0, 0] + counts[0, 1]) / total if total else math.nan
        per_image.append({
            "index": index,
            "id": None if ids is None else str(ids[index]),
            "dice": s["per_class"]["dice"],
            "iou": s["per_class"]["iou"],
            "macro_dice": s["macro"]["dice"],
            "macro_iou": s["macro"]["iou"],
            HEADLINE_KEY: mean_over(list(s["per_class"]["dice"]), labels.ranked),
            "pixel_accuracy": _image_accuracy(counts, mode),
            "foreground_true": fg_true,
            "foreground_pred": fg_pred,
            **({"hd95": hd, "nsd": nsd} if surface else {}),
        })
        index += 1
    if index == 0:
        raise ValueError("no images to evaluate")
    counts = acc.counts
    s = summarize_counts(counts, include_background=include_background)
    per_class = []
    for k, name in enumerate(names):
        row = {"class_id": k, "name": name, "absent": bool(s["absent"][k]),
               "support": int(counts[k, 0] + counts[k, 2]), "predicted": int(counts[k, 0] + counts[k, 1]),
               "tp": int(counts[k, 0]), "fp": int(counts[k, 1]), "fn": int(counts[k, 2]), "tn": int(counts[k, 3])}
        row.update({m: float(s["per_class"][m][k]) for m in METRIC_NAMES})
        if surface:
            row["hd95"] = _column_mean(hd_rows, k)
            row["nsd"] = _column_mean(nsd_rows, k)
        per_class.append(row)
    pixel_accuracy = acc.pixel_accuracy()
    warnings = []
    lying = accuracy_is_lying(pixel_accuracy, s["macro"]["dice"])
    if lying:
        warnings.append(lying)
    first = 0 if include_background else 1
    for row in per_class[first:]:
        if row["absent"]:
            warnings.append(f"class {row['name']!r} is absent from truth and prediction: its scores are n/a "
                            "and it is left out of the macro mean")
        elif row["support"] == 0:
            warnings.append(f"class {row['name']!r} has no pixels in the truth but is predicted "
                            f"({row['predicted']} pixels)")
        elif row["predicted"] == 0:
            warnings.append(f"class {row['name']!r} is never predicted ({row['support']} true pixels missed)")
    everything = {m: mean_over([row[m] for row in per_class], labels.ranked) for m in METRIC_NAMES}
    if surface:
        everything["hd95"] = mean_over([row["hd95"] for row in per_class], labels.ranked)
        everything["nsd"] = mean_over([row["nsd"] for row in per_class], labels.ranked)
    total_valid = max(int(counts[0].sum()), 1)  # a class's TP + FP + FN + TN: every valid pixel
    true_fraction = {row["name"]: row["support"] / total_valid for row in per_class}
    pred_fraction = {row["name"]: row["predicted"] / total_valid for row in per_class}
    degenerate = degenerate_output(true_fraction, pred_fraction, {row["name"]: row["dice"] for row in per_class}, mode)
    warnings.extend(degenerate)
    return EvaluationReport(
        mode=mode, class_names=names, threshold=float(threshold), ignore_index=ignore_index,
        include_background=include_background, num_images=acc.num_images,
        num_pixels=int(counts[0].sum()), num_ignored=acc.num_ignored, pixel_accuracy=pixel_accuracy,
        per_class=per_class, macro=s["macro"], micro=s["micro"],
        confusion_matrix=None if acc.confusion is None else acc.confusion.tolist(),
        per_image=per_image, threshold_sweep=acc.threshold_sweep(), warnings=warnings,
        all=everything, headline={"key": HEADLINE_KEY, "name": HEADLINE_NAME, "value": everything["dice"]},
        calibration=None if calib is None else calib.result(), surface_tolerance=float(tolerance) if surface else None,
        degenerate=bool(degenerate),
    )


def _column_mean(rows: list[list[float]], k: int) -> float:
    """The mean of column ``k`` over the images where it is not n/a (NaN when it is n/a everywhere)."""
    values = [r[k] for r in rows if r[k] == r[k]]
    return float(np.mean(values)) if values else math.nan


def _image_accuracy(counts: np.ndarray, mode: str) -> float:
    if mode == "multilabel":
        c = counts[1:]
        total = c.sum()
        return float((c[:, 0].sum() + c[:, 3].sum()) / total) if total else math.nan
    total = counts[0].sum()
    return float(counts[:, 0].sum() / total) if total else math.nan


SUMMARY_METRICS = ("dice", "iou", "precision", "recall")


def summary_metrics(report: EvaluationReport) -> dict[str, float]:
    """The headline numbers of a report, as a run's status and the runs table keep them.

    Returns:
        ``macro_<m>``, ``micro_<m>`` and ``all_<m>`` (every class: the
        headline, ``all_dice``, ranks runs) for Dice, IoU, precision and
        recall, ``all_hd95`` and ``all_nsd``, ``ece`` and ``pixel_accuracy``;
        a value that is n/a (NaN) is left out.
    """
    out: dict[str, float] = {}
    for avg, block in (("macro", report.macro), ("micro", report.micro), ("all", report.all)):
        for key in SUMMARY_METRICS + (("hd95", "nsd") if avg == "all" else ()):
            if _is_score(block.get(key)):
                out[f"{avg}_{key}"] = float(block[key])
    ece = (report.calibration or {}).get("ece")
    if _is_score(ece):
        out["ece"] = float(ece)
    if _is_score(report.pixel_accuracy):
        out["pixel_accuracy"] = float(report.pixel_accuracy)
    return out


def _is_score(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)

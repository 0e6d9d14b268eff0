"""Tables as ``pandas.DataFrame``: class frequencies and areas, evaluation reports per class and per image,
several runs side by side with the best value marked, the study's results table, Markdown export.

Evaluation reports are read as ``EvaluationReport.to_dict()`` gives them.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from segcore.safetext import markdown_cell
from segcore.visualize.images import foreground


def class_frequency_frame(class_names: Sequence[str], fractions: Sequence[float], colors: np.ndarray | None = None) -> pd.DataFrame:
    """Pixel share per class as a table, ready for a bar chart.

    Args:
        class_names: name of each class, background first.
        fractions: ``DatasetInfo.class_pixel_fraction`` (share of all labelled pixels).
        colors: optional ``(K, 3)`` class colours (adds a ``color`` column of ``#rrggbb``).

    Returns:
        DataFrame with columns ``class``, ``fraction``, ``percent`` (and ``color``).
    """
    if len(fractions) != len(class_names):
        raise ValueError(f"{len(class_names)} classes but {len(fractions)} pixel fractions")
    df = pd.DataFrame({"class": list(class_names), "fraction": [float(f) for f in fractions]})
    df["percent"] = df["fraction"] * 100.0
    if colors is not None:
        df["color"] = [_hex(c) for c in np.asarray(colors).reshape(-1, 3)[: len(df)]]
    return df


def mask_areas(mask: np.ndarray, class_names: Sequence[str], ignore_index: int | None = 255) -> pd.DataFrame:
    """Pixels and share of the image per class in a (predicted) mask.

    Returns:
        DataFrame with columns ``class``, ``pixels``, ``percent`` (of all pixels in the image).
    """
    mask = np.asarray(mask)
    total = mask.shape[0] * mask.shape[1]
    if mask.ndim == 3:
        counts = [int(total - foreground(mask, ignore_index).sum())] + [int((mask[..., k] == 1).sum()) for k in range(mask.shape[-1])]
    else:
        counts = np.bincount(mask.ravel().astype(np.int64), minlength=len(class_names))[: len(class_names)].tolist()
    counts = counts + [0] * (len(class_names) - len(counts))
    df = pd.DataFrame({"class": list(class_names), "pixels": [int(c) for c in counts]})
    df["percent"] = df["pixels"] * (100.0 / max(total, 1))
    return df


# The summary rows of a per-class table, by the report block they come from.
SUMMARY_ROWS = {"all": "all classes", "macro": "macro", "micro": "micro"}


def per_class_table(report: Mapping[str, Any], metrics: Sequence[str] = ("dice", "iou", "precision", "recall", "pixel_accuracy")) -> pd.DataFrame:
    """One run's evaluation as a table: a row per class, then ``all classes`` (the headline), ``macro`` and ``micro``.

    Args:
        report: ``EvaluationReport.to_dict()``: ``per_class`` (a list of dicts
            with ``class`` / ``name``, or a dict keyed by class name), ``macro``
            and ``micro`` (dicts of metric -> value).
        metrics: the columns to keep, in order (missing ones are skipped).

    Returns:
        DataFrame indexed by class name (``all classes``, ``macro``, ``micro`` last).
    """
    rows: dict[str, dict[str, Any]] = {}
    for name, values in _iter_per_class(report.get("per_class", ())):
        rows[name] = {m: _num(values.get(m)) for m in metrics}
    for avg in ("all", "macro", "micro"):
        if isinstance(report.get(avg), Mapping) and report.get(avg):
            rows[SUMMARY_ROWS[avg]] = {m: _num(report[avg].get(m)) for m in metrics}
    df = pd.DataFrame.from_dict(rows, orient="index")
    if df.empty:
        return pd.DataFrame(columns=list(metrics))
    return df[[m for m in metrics if m in df.columns and df[m].notna().any()]]


def compare_table(reports: Mapping[str, Mapping[str, Any]], metric: str = "dice") -> pd.DataFrame:
    """Several runs' evaluations side by side for one metric: rows are classes + all classes + macro + micro, columns runs.

    Args:
        reports: run label -> ``EvaluationReport.to_dict()``.
        metric: which metric to show (``"dice"``, ``"iou"``, ``"precision"``, ``"recall"``, ``"pixel_accuracy"``).

    Returns:
        DataFrame indexed by class (then ``all classes``, ``macro``, ``micro``), a column per run.
    """
    cols = {}
    for label, report in reports.items():
        table = per_class_table(report, (metric,))
        cols[label] = table[metric] if metric in table.columns else pd.Series(dtype=float)
    df = pd.DataFrame(cols)
    summary = list(SUMMARY_ROWS.values())
    order = [i for i in df.index if i not in summary] + [i for i in summary if i in df.index]
    return df.loc[order]


def ranked_rows(table: pd.DataFrame) -> list[Any]:
    """The rows of a ``compare_table`` whose best run is highlighted: each class and ``all classes``.

    ``macro`` and ``micro`` are not marked: a model that paints almost every
    pixel as the majority class can top them (see :mod:`segcore.labels`).
    """
    return [i for i in table.index if i not in ("macro", "micro")]


def best_mask(df: pd.DataFrame, axis: int = 1, higher_is_better: bool | Mapping[str, bool] = True, subset: Sequence[Any] | None = None) -> pd.DataFrame:
    """Boolean frame marking the best value of each row (``axis=1``) or column (``axis=0``); ties all marked,
    except where every value is the same (a row of equal scores has no best).

    ``higher_is_better`` may be a dict keyed by column (``axis=0``) or row
    (``axis=1``) label, e.g. ``{"loss": False}``. ``subset`` limits which rows
    (``axis=1``) or columns (``axis=0``) are marked. NaN is never best.
    """
    num = df.apply(pd.to_numeric, errors="coerce")
    out = pd.DataFrame(False, index=df.index, columns=df.columns)
    labels = num.index if axis == 1 else num.columns
    for label in labels:
        if subset is not None and label not in subset:
            continue
        series = num.loc[label] if axis == 1 else num[label]
        if series.notna().sum() == 0:
            continue
        hib = higher_is_better.get(label, True) if isinstance(higher_is_better, Mapping) else higher_is_better
        best = series.max() if hib else series.min()
        hit = np.isclose(series.to_numpy(dtype=float), best, rtol=0, atol=1e-12) & series.notna().to_numpy()
        if series.notna().sum() > 1 and hit.sum() == series.notna().sum():
            continue
        if axis == 1:
            out.loc[label] = hit
        else:
            out[label] = hit
    return out


def highlight_best(df: pd.DataFrame, axis: int = 1, higher_is_better: bool | Mapping[str, bool] = True, fmt: str = "{:.3f}", subset: Sequence[Any] | None = None):
    """A pandas ``Styler`` with the best value per row/column in bold on a green background (n/a for missing values)."""
    marks = best_mask(df, axis, higher_is_better, subset)
    style = "font-weight: bold; background-color: rgba(46, 160, 67, 0.45)"
    styler = df.style.apply(lambda _: np.where(marks, style, ""), axis=None)
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    whole = [c for c in numeric if df[c].dropna().map(lambda v: float(v).is_integer()).all() and not df[c].dropna().empty and c not in (subset or ())]
    styler = styler.format("{:.0f}", subset=whole, na_rep="n/a")
    return styler.format(fmt, subset=[c for c in numeric if c not in whole], na_rep="n/a")


def _metric_series(df: pd.DataFrame, metric: str, class_index: int | None = None) -> pd.Series:
    """A per-image metric as floats; list values (per class) are indexed by ``class_index``."""
    if metric not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    col = df[metric]
    if class_index is not None or col.map(lambda v: isinstance(v, (list, tuple))).any():
        k = 0 if class_index is None else class_index
        col = col.map(lambda v: v[k] if isinstance(v, (list, tuple)) and len(v) > k else v)
    return pd.to_numeric(col, errors="coerce")


def worst_images(per_image: Sequence[Mapping[str, Any]] | pd.DataFrame, n: int = 4, metric: str = "macro_dice", class_index: int | None = None) -> list[str]:
    """Ids of the ``n`` images with the lowest ``metric`` in a report's ``per_image`` list.

    Args:
        per_image: ``EvaluationReport.to_dict()["per_image"]``.
        n: how many ids.
        metric: a per-image field: ``macro_dice`` (default), ``macro_iou``,
            ``pixel_accuracy``, or a per-class list such as ``dice`` with ``class_index``.
        class_index: the class to read from per-class lists.

    Returns:
        Image ids, worst first; images where the metric is n/a (NaN/None) are skipped.
    """
    df = per_image_frame(per_image)
    if df.empty or "id" not in df.columns:
        return []
    vals = _metric_series(df, metric, class_index)
    return df.assign(_v=vals).dropna(subset=["_v"]).sort_values("_v", kind="stable")["id"].head(n).tolist()


def per_image_frame(per_image: Sequence[Mapping[str, Any]] | Mapping[str, Any] | pd.DataFrame) -> pd.DataFrame:
    """A report's ``per_image`` entries as a DataFrame with a string ``id`` column (one row per image)."""
    if isinstance(per_image, pd.DataFrame):
        return per_image
    if isinstance(per_image, Mapping):
        rows = [{"id": k, **(v if isinstance(v, Mapping) else {"value": v})} for k, v in per_image.items()]
    else:
        rows = [dict(r) for r in per_image]
    df = pd.DataFrame(rows)
    if not df.empty and ("id" not in df.columns or df["id"].isna().all()):
        for alt in ("image", "sample", "image_id", "sample_id", "index"):
            if alt in df.columns:
                df["id"] = df[alt]
                break
    if "id" in df.columns:
        df["id"] = df["id"].astype(str)
    return df


def per_image_differences(reports: Mapping[str, Mapping[str, Any]], metric: str = "macro_dice", class_index: int | None = None) -> pd.DataFrame:
    """Per-image ``metric`` of several runs side by side, with the spread between best and worst run.

    Returns:
        DataFrame indexed by image id, a column per run and ``spread`` (max - min),
        sorted by decreasing spread (the images where the runs disagree most first).
    """
    cols = {}
    for label, report in reports.items():
        df = per_image_frame(report.get("per_image", ()))
        if df.empty or metric not in df.columns or "id" not in df.columns:
            continue
        cols[label] = pd.Series(_metric_series(df, metric, class_index).to_numpy(), index=df["id"])
    out = pd.DataFrame(cols)
    if out.empty:
        return out
    out.index.name = "image"
    out["spread"] = out.max(axis=1) - out.min(axis=1)
    return out.sort_values("spread", ascending=False, kind="stable")


STUDY_COLUMNS = {"Dice, all classes": ("all", "dice"), "Dice": ("macro", "dice"), "IoU": ("macro", "iou"), "Accuracy": (None, "pixel_accuracy"),
                 "Precision": ("macro", "precision"), "Recall": ("macro", "recall"), "micro Dice": ("micro", "dice"),
                 "HD95 px": ("all", "hd95"), "NSD": ("all", "nsd"), "ECE": ("calibration", "ece")}
# Study columns where lower is better (distances, calibration error); the rest: higher is better.
STUDY_HIGHER_IS_BETTER = {"HD95 px": False, "ECE": False}


def study_table(reports: Mapping[str, Mapping[str, Any]], info: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The paper's results table: one row per run with test Dice, IoU and pixel accuracy.

    ``Dice, all classes`` is the headline (every class, background
    included; runs are ranked by it); Dice, IoU, precision and recall are
    macro averages (the foreground classes, or every class when class 0 is a
    real class); accuracy is the pixel accuracy over all pixels; ``micro
    Dice`` pools the pixels of the macro classes; ``HD95 px`` and ``NSD`` are
    the boundary figures and ``ECE`` the calibration error
    (:mod:`segcore.evaluation.surface`).

    Args:
        reports: run label -> ``EvaluationReport.to_dict()``.
        info: optional run label -> extra columns placed first (e.g. model, encoder, epochs).

    Returns:
        DataFrame indexed by run label.
    """
    rows = {}
    for label, report in reports.items():
        row = dict((info or {}).get(label, {}))
        for col, (block, key) in STUDY_COLUMNS.items():
            src = report if block is None else (report.get(block) or {})
            row[col] = _num(src.get(key))
        rows[label] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "run"
    empty = [c for c in STUDY_COLUMNS if c in df.columns and df[c].isna().all()]  # e.g. figures older reports lack
    return df.drop(columns=empty)


def table_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A DataFrame as a GitHub Markdown table (no extra dependency), index included when named or non-default.

    Text (labels, names) is written through ``safetext.markdown_cell``: shown as
    the text itself, never as a link, tag or formula.
    """
    show_index = not isinstance(df.index, pd.RangeIndex)
    headers = ([df.index.name or ""] if show_index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(markdown_cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for idx, row in df.iterrows():
        cells = ([markdown_cell(idx)] if show_index else []) + [_fmt_cell(v, floatfmt) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _iter_per_class(per_class: Any) -> Iterable[tuple[str, Mapping[str, Any]]]:
    if isinstance(per_class, Mapping):
        for name, values in per_class.items():
            yield str(name), values
        return
    for i, row in enumerate(per_class or ()):
        name = row.get("name") or row.get("class_name") or row.get("class") or str(i)
        yield str(name), row


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _hex(color: Sequence[int]) -> str:
    r, g, b = (int(c) for c in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _fmt_cell(v: Any, floatfmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return format(float(v), floatfmt)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    return markdown_cell(v)

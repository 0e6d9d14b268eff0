"""Figures of the Compare page's review tools: the confusion matrix, precision-recall and threshold curves, the disagreement map.

The numbers come from :mod:`segcore.evaluation.review`; this module only draws
them. Plotly is imported inside each function; user text (class and run
names) passes through ``plotly_text``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import cv2
import numpy as np

from segcore.evaluation.review import AGREE_WRONG, DISAGREE, PRCurve, normalized_confusion
from segcore.safetext import plotly_text
from segcore.visualize.images import to_rgb

DISAGREE_COLOR = (255, 0, 255)  # magenta: the runs give different labels
AGREE_WRONG_COLOR = (255, 140, 0)  # orange: every run gives the same wrong label


def run_color(i: int) -> str:
    """The line colour of the ``i``-th run, the same in every curve figure."""
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly
    return palette[i % len(palette)]


def confusion_figure(confusion, class_names: Sequence[str], title: str = ""):
    """A heatmap of a confusion matrix normalised per true class, each cell labelled with its share and pixel count.

    Args:
        confusion: K x K pixel counts (rows: truth, columns: prediction), void left out.
        class_names: the K class names, on both axes.
        title: shown above (the run's label).

    Returns:
        ``plotly.graph_objects.Figure``; a class with no true pixels has an empty (n/a) row.
    """
    import plotly.graph_objects as go

    counts = np.asarray(confusion, np.int64)
    share = normalized_confusion(counts)
    names = [plotly_text(n) for n in class_names]
    text = [["n/a" if math.isnan(v) else f"{v:.2f}" for v in row] for row in share]
    fig = go.Figure(go.Heatmap(
        z=share, x=names, y=names, zmin=0.0, zmax=1.0, colorscale="Blues", text=text, texttemplate="%{text}",
        customdata=counts, colorbar={"title": "share", "thickness": 12},
        hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.3f} of the true pixels (%{customdata:,} px)<extra></extra>",
    ))
    fig.update_yaxes(title="true class", autorange="reversed", type="category")
    fig.update_xaxes(title="predicted class", type="category", side="bottom")
    size = max(260, 60 + 38 * len(names))
    fig.update_layout(title=plotly_text(title) if title else None, height=size,
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10})
    return fig


def pr_figure(curves: Mapping[str, PRCurve], class_name: str):
    """Precision against recall, one line per run, its operating point marked (the threshold 0.5, or the arg max).

    Args:
        curves: run label -> the class's :class:`~segcore.evaluation.review.PRCurve`.
        class_name: the class the curves are of.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (label, c) in enumerate(curves.items()):
        color = run_color(i)
        keep = ~np.isnan(c.precision)
        ap = "" if math.isnan(c.average_precision) else f" (AP {c.average_precision:.3f})"
        fig.add_trace(go.Scatter(
            x=c.recall[keep], y=c.precision[keep], mode="lines", name=plotly_text(label) + ap, line={"color": color},
            customdata=c.thresholds[keep], legendgroup=str(i),
            hovertemplate="threshold %{customdata:.3f}<br>recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>",
        ))
        if not (math.isnan(c.point_precision) or math.isnan(c.point_recall)):
            where = "arg max" if c.threshold is None else f"threshold {c.threshold:.2f}"
            fig.add_trace(go.Scatter(
                x=[c.point_recall], y=[c.point_precision], mode="markers", legendgroup=str(i), showlegend=False,
                marker={"color": color, "size": 11, "symbol": "diamond", "line": {"color": "black", "width": 1}},
                hovertemplate=f"{plotly_text(label)}: {where}<br>recall %{{x:.3f}}<br>precision %{{y:.3f}}<extra></extra>",
            ))
    fig.update_layout(title=f"Precision-recall: {plotly_text(class_name)}", xaxis_title="recall", yaxis_title="precision",
                      xaxis_range=[0, 1.02], yaxis_range=[0, 1.02], height=380,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.2})
    return fig


def threshold_figure(curves: Mapping[str, PRCurve], class_name: str, operating_threshold: float | None = 0.5):
    """Dice (F1) of one class against the threshold on its probability, one line per run; a line at the operating threshold.

    Args:
        curves: run label -> the class's curve.
        class_name: the class.
        operating_threshold: drawn as a dotted line (None for a softmax head, whose masks take the arg max).
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (label, c) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=c.thresholds, y=c.f1, mode="lines", name=plotly_text(label), line={"color": run_color(i)},
                                 hovertemplate="threshold %{x:.3f}<br>Dice %{y:.3f}<extra></extra>"))
    if operating_threshold is not None:
        fig.add_vline(x=operating_threshold, line_dash="dot", line_color="#666",
                      annotation_text=f"masks use {operating_threshold:g}", annotation_position="top")
    fig.update_layout(title=f"Dice at each threshold: {plotly_text(class_name)}", xaxis_title=f"threshold on p({plotly_text(class_name)})",
                      yaxis_title="Dice (F1)", xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=380,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.2})
    return fig


def disagreement_overlay(image: np.ndarray, dmap: np.ndarray, opacity: float = 0.65) -> np.ndarray:
    """An image in dimmed grey with the pixels where runs disagree in magenta and those all runs get wrong in orange.

    Args:
        image: the image (any form ``to_rgb`` takes), the size of ``dmap``.
        dmap: a :func:`segcore.evaluation.review.disagreement_map`.
        opacity: weight of the colour on the marked pixels.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    rgb = to_rgb(image)
    dmap = np.asarray(dmap)
    if rgb.shape[:2] != dmap.shape[:2]:
        raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but the disagreement map is {dmap.shape[1]}x{dmap.shape[0]}")
    # the image in dimmed grey, so that the marked colours stand out from the image's own
    grey = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2).astype(np.float32) * 0.6
    out = grey.copy()
    for value, color in ((DISAGREE, DISAGREE_COLOR), (AGREE_WRONG, AGREE_WRONG_COLOR)):
        where = dmap == value
        out[where] = (1 - opacity) * grey[where] + opacity * np.asarray(color, np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)

"""Runs' settings as people read them: two runs' settings side by side, and settings against a score
as parallel coordinates (``segcore.run_review`` decides what is compared; this module draws it).

Plotly is imported inside the figure function, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from segcore.run_review import CATEGORICAL_SETTINGS, SettingDifference, SettingsAgainstScore, setting_text
from segcore.safetext import plotly_text

DIFFERS_COLOR = "rgba(245, 166, 35, 0.25)"  # the rows that differ, when every setting is shown
SCORE_COLORS = [[0.0, "#3b528b"], [0.5, "#21918c"], [1.0, "#fde725"]]  # low score blue, high yellow


def settings_diff_frame(differences: Sequence[SettingDifference], label_a: str, label_b: str) -> pd.DataFrame:
    """Two runs' settings as a table: ``setting`` (dotted key), one column per run (headed by its label), ``differs``.

    Values are text (``setting_text``): a column of numbers, names and lists stays one readable column.
    """
    if label_a == label_b:
        raise ValueError(f"the two runs need different labels to head their columns; both are {label_a!r}")
    return pd.DataFrame(
        {"setting": [d.key for d in differences], label_a: [setting_text(d.a) for d in differences],
         label_b: [setting_text(d.b) for d in differences], "differs": [d.differs for d in differences]},
        columns=["setting", label_a, label_b, "differs"],
    )


def highlight_differences(frame: pd.DataFrame):
    """``settings_diff_frame`` output without its ``differs`` column, the rows that differ shaded (a pandas ``Styler``)."""
    shown = frame.drop(columns=["differs"])
    shade = [f"background-color: {DIFFERS_COLOR}"] * len(shown.columns)
    plain = [""] * len(shown.columns)
    differs = frame["differs"].tolist()
    return shown.style.apply(lambda row: shade if differs[shown.index.get_loc(row.name)] else plain, axis=1)


def settings_parallel_figure(view: SettingsAgainstScore):
    """Parallel coordinates of runs: an axis per varying setting, then the score; each run a line coloured by its score.

    Names (encoder, loss, norm) get one tick each, in alphabetical order; the learning rate is drawn
    on a log scale (its ticks are the rates used); numbers with few values get a tick per value. The
    score's axis is the colour scale's legend (low blue, high yellow).

    Returns:
        ``plotly.graph_objects.Figure``, or None when fewer than two runs are left to draw.
    """
    import plotly.graph_objects as go

    frame = view.frame
    if len(frame) < 2:
        return None
    dimensions = [_dimension(name, frame[name]) for name in view.settings]
    scores = frame[view.score].astype(float)
    low, high = float(scores.min()), float(scores.max())
    pad = (high - low) * 0.05 or 0.01
    dimensions.append(dict(label=plotly_text(view.score), values=scores.tolist(), range=[low - pad, high + pad],
                           tickformat=".3f"))
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        # The score's own axis is the colour's legend. Viridis without its near-black end: every line shows on a dark page.
        line=dict(color=scores.tolist(), colorscale=SCORE_COLORS, cmin=low, cmax=high, showscale=False),
        labelangle=0, labelside="top", labelfont=dict(size=13), tickfont=dict(size=12), rangefont=dict(size=10),
    ))
    fig.update_layout(height=400, margin=dict(l=80, r=80, t=70, b=30))
    return fig


def _dimension(name: str, values: pd.Series) -> dict:
    label = plotly_text(name)
    if name in CATEGORICAL_SETTINGS or not all(_is_number(v) for v in values):
        names = sorted({setting_text(v) for v in values})
        codes = [names.index(setting_text(v)) for v in values]
        return dict(label=label, values=codes, tickvals=list(range(len(names))), ticktext=[plotly_text(n) for n in names],
                    range=[-0.25, len(names) - 0.75])
    numbers = [float(v) for v in values]
    distinct = sorted(set(numbers))
    if name == "learning rate" and all(v > 0 for v in numbers):
        logs = [math.log10(v) for v in numbers]
        return dict(label=f"{label} (log scale)", values=logs, tickvals=[math.log10(v) for v in distinct],
                    ticktext=[f"{v:g}" for v in distinct], range=_padded(min(logs), max(logs)))
    dim = dict(label=label, values=numbers, range=_padded(distinct[0], distinct[-1]))
    if len(distinct) <= 8:
        dim.update(tickvals=distinct, ticktext=[f"{v:g}" for v in distinct])
    return dim


def _padded(low: float, high: float) -> list[float]:
    pad = (high - low) * 0.08 or 1.0
    return [low - pad, high + pad]


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(float(v))

"""Interactive Plotly figures: a probability heatmap, the class-frequency bar chart, training curves.

Plotly is imported inside each function, so importing this module stays cheap.
Every text that comes from users (class and run names) passes through
``plotly_text``: Plotly reads tags in labels.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from segcore.safetext import plotly_text
from segcore.visualize.images import HEATMAP_COLORMAP


def heatmap_figure(prob: np.ndarray, title: str = "", colormap: str = HEATMAP_COLORMAP):
    """An interactive plotly heatmap of a probability map with a colour bar fixed to [0, 1].

    Returns:
        ``plotly.graph_objects.Figure`` (hover shows the probability per pixel).
    """
    import plotly.graph_objects as go

    p = np.asarray(prob, dtype=np.float32)
    fig = go.Figure(
        go.Heatmap(
            z=p,
            zmin=0.0,
            zmax=1.0,
            colorscale=colormap.capitalize(),
            colorbar=dict(title="p", tickvals=[0, 0.25, 0.5, 0.75, 1.0]),
            hovertemplate="x=%{x} y=%{y}<br>p=%{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", visible=False)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_layout(title=plotly_text(title) if title else None, margin=dict(l=0, r=0, t=30 if title else 0, b=0), height=360)
    return fig


def class_frequency_figure(df: pd.DataFrame, title: str = "Pixel share per class"):
    """A plotly bar chart of ``class_frequency_frame`` output: percent of pixels on a linear axis, each bar labelled.

    A linear axis keeps the bars' lengths in proportion (a 22% class is a fifth
    of the chart, not a sliver next to a log-scale giant); classes too small to
    see still carry their percentage as a label.
    """
    import plotly.graph_objects as go

    colors = df["color"].tolist() if "color" in df else None
    colors = [("#9aa0a6" if c == "#000000" else c) for c in colors] if colors else None
    top = float(df["percent"].max()) if len(df) else 100.0
    fig = go.Figure(
        go.Bar(
            x=[plotly_text(c) for c in df["class"]],  # class names are user text; plotly reads tags in labels
            y=df["percent"],
            marker_color=colors,
            text=[_percent_label(p) for p in df["percent"]],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.3f}% of pixels<extra></extra>",
        )
    )
    fig.update_yaxes(type="linear", range=[0, min(100.0, top * 1.15) or 1.0], title="% of pixels", ticksuffix="%")
    fig.update_layout(title=plotly_text(title), height=340, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def _percent_label(p: float) -> str:
    """``22.4%``, ``0.35%``, ``0.004%``: enough digits that a small share does not read as 0."""
    if p >= 10:
        return f"{p:.1f}%"
    if p >= 0.1 or p == 0:
        return f"{p:.2f}%"
    return f"{p:.2g}%"


_CURVE_COLORS = ("#4C9AFF", "#F5A623", "#7ED321", "#D0021B", "#BD10E0", "#50E3C2", "#F8E71C", "#9B9B9B")


def history_frame(history: Any) -> pd.DataFrame:
    """A run history (list of per-epoch dicts, dict of lists, or DataFrame) as a DataFrame with an ``epoch`` column."""
    if isinstance(history, pd.DataFrame):
        df = history.copy()
    elif isinstance(history, Mapping):
        df = pd.DataFrame(dict(history))
    else:
        df = pd.DataFrame(list(history or ()))
    if df.empty:
        return df
    if "epoch" not in df.columns:
        df.insert(0, "epoch", np.arange(1, len(df) + 1))
    return df


def curve_metrics(histories: Mapping[str, Any]) -> list[str]:
    """Metric names found in histories (``loss``, ``dice``...; ``val_`` prefixes folded), loss first."""
    names: set[str] = set()
    for h in histories.values():
        for col in history_frame(h).columns:
            if col in ("epoch", "lr", "learning_rate", "time", "duration", "seconds", "wall_time", "ended_at") or col.startswith("_"):
                continue
            names.add(col[4:] if col.startswith("val_") else col)
    return sorted(names, key=lambda n: (n != "loss", n))


def curves_figure(histories: Mapping[str, Any], metric: str = "loss", title: str | None = None, *,
                  smoothing: float = 0.0, log_y: bool = False):
    """Overlay one metric's curves for several runs: solid = train, dashed = validation.

    Args:
        histories: run label -> history (see ``history_frame``).
        metric: base name, e.g. ``"loss"`` or ``"dice"``; ``val_<metric>`` is drawn dashed.
        smoothing: TensorBoard's smoothing weight, 0 (raw curves) to 0.99 (``segcore.run_review.smooth``);
            above 0 each curve is drawn smoothed, with the raw curve faint behind it.
        log_y: a logarithmic y axis (values of 0 or below are then not drawn).

    Returns:
        ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    from segcore.run_review import smooth

    fig = go.Figure()
    for i, (label, h) in enumerate(histories.items()):
        df = history_frame(h)
        color = _CURVE_COLORS[i % len(_CURVE_COLORS)]
        for col, dash, part in ((metric, "solid", "train"), (f"val_{metric}", "dash", "validation")):
            if col in df.columns:
                y = pd.to_numeric(df[col], errors="coerce")
                name = plotly_text(f"{label} · {part}")
                if smoothing > 0:
                    fig.add_trace(go.Scatter(
                        x=df["epoch"], y=y, mode="lines", name=name + " (raw)", legendgroup=name, showlegend=False,
                        line=dict(color=color, dash=dash, width=1), opacity=0.25,
                        hovertemplate="epoch %{x}: %{y:.4g} (raw)<extra></extra>",
                    ))
                    y = smooth(y.tolist(), smoothing)
                fig.add_trace(
                    go.Scatter(
                        x=df["epoch"], y=y, mode="lines+markers", name=name, legendgroup=name,
                        line=dict(color=color, dash=dash), marker=dict(size=4),
                    )
                )
    fig.update_layout(
        title=plotly_text(title or metric), xaxis_title="epoch", yaxis_title=plotly_text(metric), height=360,
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25),
    )
    if log_y:
        fig.update_yaxes(type="log")
    # Epochs are whole numbers: never label 1.5; about ten ticks on long runs.
    last = max((len(history_frame(h)) for h in histories.values()), default=1)
    fig.update_xaxes(tick0=1, dtick=max(1, math.ceil(last / 10)))
    return fig


def reliability_figure(calibrations: Mapping[str, Mapping[str, Any] | None]):
    """A reliability diagram: accuracy against confidence per bin, one line per run, the diagonal for reference.

    Args:
        calibrations: run label -> the report's ``calibration`` block
            (``{"ece", "bins": [{"low", "high", "count", "confidence", "accuracy"}]}``).

    Returns:
        ``plotly.graph_objects.Figure``; a run's legend entry carries its ECE.
        A perfectly calibrated model lies on the diagonal.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line={"dash": "dot", "color": "#888"}, hoverinfo="skip"))
    for label, block in calibrations.items():
        bins = [b for b in (block or {}).get("bins") or [] if b.get("count")]
        if not bins:
            continue
        ece = (block or {}).get("ece")
        name = plotly_text(label) + (f" (ECE {ece:.3f})" if isinstance(ece, (int, float)) else "")
        fig.add_trace(go.Scatter(
            x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers", name=name,
            customdata=[[b["count"], b["low"], b["high"]] for b in bins],
            hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{customdata[0]:,} pixels "
                          "(bin %{customdata[1]:.2f}-%{customdata[2]:.2f})<extra></extra>",
        ))
    fig.update_layout(xaxis_title="confidence (probability of the predicted class)", yaxis_title="share correct",
                      xaxis_range=[0, 1], yaxis_range=[0, 1], height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.25})
    return fig


# The parts of an epoch's time a run records (history.csv), in the order they happen.
EPOCH_TIME_PARTS = {"time_steps": "training steps", "time_validation": "validation", "time_health": "health check",
                    "time_checkpoint": "checkpoint", "time_other": "everything else"}


def epoch_time_figure(history: list[dict[str, Any]]):
    """Where each epoch's time goes: stacked bars of the ``time_*`` columns of a run's history (seconds).

    Returns:
        ``plotly.graph_objects.Figure``, or None when the history has no time columns (runs from before they were kept).
    """
    import plotly.graph_objects as go

    rows = [r for r in history if any(r.get(k) is not None for k in EPOCH_TIME_PARTS)]
    if not rows:
        return None
    fig = go.Figure()
    for key, name in EPOCH_TIME_PARTS.items():
        fig.add_trace(go.Bar(x=[r["epoch"] for r in rows], y=[r.get(key) or 0.0 for r in rows], name=name,
                             hovertemplate=f"{name}: %{{y:.2f}} s<extra>epoch %{{x}}</extra>"))
    fig.update_layout(barmode="stack", xaxis_title="epoch", yaxis_title="seconds", height=300,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.3})
    return fig

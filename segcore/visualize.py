"""Pictures and tables for people: overlays, heatmaps, charts and metric tables.

Pure numpy / OpenCV / pandas / plotly helpers used by the dashboard pages and
the benchmarks. Nothing here imports Streamlit or Keras, reads a run folder or
trains anything: each function turns arrays or plain dicts into an image, a
figure or a ``pandas.DataFrame``.

Conventions: images are uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB; masks are
``(H, W)`` class indices (``ignore_index`` = void) or ``(H, W, K-1)`` 0/1
planes for multilabel data; probability maps are float in ``[0, 1]``.
"""

from __future__ import annotations

import math
import os
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd

from segcore.data import imageio
from segcore.safetext import plotly_text

# Void pixels are drawn in a neutral grey so they never read as a class.
IGNORE_COLOR = (128, 128, 128)
# The colour scale used for every probability heatmap (perceptually uniform,
# readable on a dark theme and for colour-blind readers).
HEATMAP_COLORMAP = "viridis"
_CV2_COLORMAPS = {"viridis": cv2.COLORMAP_VIRIDIS, "magma": cv2.COLORMAP_MAGMA, "inferno": cv2.COLORMAP_INFERNO}

# Distinct colours for datasets whose dataset.json has none (index 0 = background).
_FALLBACK_PALETTE = (
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
)


# --------------------------------------------------------------------------- images


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Convert an image to uint8 RGB for display.

    Args:
        image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array, uint8
            or float. Floats in ``[0, 1]`` are scaled by 255; other floats and
            16-bit data are stretched to their min..max range.

    Returns:
        ``(H, W, 3)`` uint8 array.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {img.shape}")
    if img.dtype != np.uint8:
        f = img.astype(np.float32)
        lo, hi = float(np.nanmin(f)) if f.size else 0.0, float(np.nanmax(f)) if f.size else 0.0
        if img.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
            f = f * 255.0
        elif hi > lo:
            f = (f - lo) * (255.0 / (hi - lo))
        else:
            f = np.zeros_like(f)
        img = np.clip(np.nan_to_num(f), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def class_colors(classes: Sequence[Any]) -> np.ndarray:
    """The display colour of each class.

    Args:
        classes: ``DatasetInfo.classes`` (objects with ``.color``), dicts with
            ``"color"``, or plain class names (colours then come from a fixed palette).

    Returns:
        ``(K, 3)`` uint8 array, row ``k`` the RGB colour of class ``k``.
    """
    colors = []
    for k, c in enumerate(classes):
        color = getattr(c, "color", None)
        if color is None and isinstance(c, Mapping):
            color = c.get("color")
        if color is None:
            color = _FALLBACK_PALETTE[k % len(_FALLBACK_PALETTE)]
        colors.append(tuple(int(v) for v in color)[:3])
    return np.asarray(colors, dtype=np.uint8).reshape(-1, 3)


def colorize_mask(mask: np.ndarray, colors: np.ndarray, ignore_index: int | None = 255) -> np.ndarray:
    """Paint a mask with one colour per class.

    Args:
        mask: ``(H, W)`` class indices, or ``(H, W, K-1)`` 0/1 planes (multilabel;
            where classes overlap their colours are averaged).
        colors: ``(K, 3)`` uint8 class colours (see ``class_colors``); row 0 is
            the background.
        ignore_index: index painted in ``IGNORE_COLOR`` (void); ``None`` for none.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    mask = np.asarray(mask)
    if mask.ndim == 3:
        return _colorize_planes(mask, colors, ignore_index)
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) index mask or (H, W, K-1) planes; got shape {mask.shape}")
    lut = np.zeros((256, 3), dtype=np.uint8)
    n = min(len(colors), 256)
    lut[:n] = colors[:n]
    if ignore_index is not None and 0 <= ignore_index < 256:
        lut[ignore_index] = IGNORE_COLOR
    idx = np.clip(mask, 0, 255).astype(np.uint8)
    return lut[idx]


def _colorize_planes(planes: np.ndarray, colors: np.ndarray, ignore_index: int | None) -> np.ndarray:
    k1 = planes.shape[-1]
    if len(colors) < k1 + 1:
        raise ValueError(f"mask has {k1} class planes but only {len(colors)} colours (need {k1 + 1})")
    on = (planes == 1) | ((planes > 0) & (planes != (ignore_index if ignore_index is not None else -1)))
    count = on.sum(axis=-1, keepdims=True).astype(np.float32)
    total = on.astype(np.float32) @ colors[1 : k1 + 1].astype(np.float32)
    out = np.where(count > 0, total / np.maximum(count, 1.0), colors[0].astype(np.float32))
    out = out.astype(np.uint8)
    if ignore_index is not None:
        void = (planes == ignore_index).any(axis=-1)
        out[void] = IGNORE_COLOR
    return out


def foreground(mask: np.ndarray, ignore_index: int | None = 255) -> np.ndarray:
    """Boolean ``(H, W)``: pixels that belong to some foreground class (not background, not void)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        on = mask > 0
        if ignore_index is not None:
            on &= mask != ignore_index
        return on.any(axis=-1)
    fg = mask != 0
    if ignore_index is not None:
        fg &= mask != ignore_index
    return fg


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    colors: np.ndarray,
    opacity: float = 0.5,
    ignore_index: int | None = 255,
    outline: bool = False,
) -> np.ndarray:
    """Blend class colours over an image; background pixels stay as they are.

    ``out = (1 - opacity) * image + opacity * color`` on foreground and void
    pixels, ``image`` elsewhere.

    Args:
        image: image as accepted by ``to_rgb``.
        mask: index mask or multilabel planes of the same height and width.
        colors: ``(K, 3)`` class colours.
        opacity: weight of the mask colour, in ``[0, 1]``.
        ignore_index: void index (drawn grey), or ``None``.
        outline: also draw the class boundaries at full strength.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must be in [0, 1]; got {opacity}")
    rgb = to_rgb(image)
    mask = np.asarray(mask)
    if rgb.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but mask is {mask.shape[1]}x{mask.shape[0]}")
    painted = colorize_mask(mask, colors, ignore_index)
    shown = foreground(mask, ignore_index)
    if ignore_index is not None:
        shown |= (mask == ignore_index).any(axis=-1) if mask.ndim == 3 else (mask == ignore_index)
    blended = cv2.addWeighted(rgb, 1.0 - float(opacity), painted, float(opacity), 0.0)
    out = np.where(shown[..., None], blended, rgb)
    if outline:
        edges = _boundaries(mask)
        out[edges] = painted[edges]
    return out


def _boundaries(mask: np.ndarray) -> np.ndarray:
    idx = mask if mask.ndim == 2 else (mask > 0).astype(np.uint8) @ (1 << np.arange(mask.shape[-1])).astype(np.uint8)
    idx = idx.astype(np.int32)
    edge = np.zeros(idx.shape, dtype=bool)
    edge[:, 1:] |= idx[:, 1:] != idx[:, :-1]
    edge[1:, :] |= idx[1:, :] != idx[:-1, :]
    return edge & (idx != 0)


def resize_for_display(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Resize so the longer side is ``size`` pixels (nearest neighbour for masks)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    if abs(scale - 1.0) < 1e-6:
        return image
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)


def resize_to(image: np.ndarray, shape: Sequence[int], nearest: bool = False) -> np.ndarray:
    """Resize to exactly ``shape`` = (height, width), whatever the aspect (as the model sees an image at its
    training size); returned unchanged when it has that shape already."""
    h, w = int(shape[0]), int(shape[1])
    if image.shape[:2] == (h, w):
        return image
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if h * w < image.shape[0] * image.shape[1] else cv2.INTER_LINEAR)
    return cv2.resize(image, (w, h), interpolation=interp)


def stack_tiles(tiles: Sequence[np.ndarray], size: int, gap: int = 4, axis: int = 0) -> np.ndarray:
    """Resize RGB tiles to ``size`` x ``size`` and stack them (vertically by default) with a dark gap.

    Masks and heatmaps should already be RGB; tiles are resized with nearest
    neighbour when they are smaller than ``size`` (keeps label edges crisp).
    """
    parts = []
    for i, tile in enumerate(tiles):
        rgb = to_rgb(tile)
        interp = cv2.INTER_NEAREST if rgb.shape[0] < size else cv2.INTER_AREA
        parts.append(cv2.resize(rgb, (size, size), interpolation=interp))
        if gap and i < len(tiles) - 1:
            shape = (gap, size, 3) if axis == 0 else (size, gap, 3)
            parts.append(np.full(shape, 14, np.uint8))
    return np.concatenate(parts, axis=axis)


def decode_image(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode uploaded image bytes as a model sees them: uint8 grey or RGB.

    Raises:
        ValueError: naming the file when the bytes are not an image that can be read.
    """
    return imageio.read_image_bytes(data, name).array


def encode_mask(mask: np.ndarray, mode: str, stem: str = "mask") -> tuple[bytes, str, str]:
    """A predicted mask as a downloadable file in the canonical encoding.

    Binary and multiclass: one PNG of class ids (0 = background). Multilabel:
    a zip of one 0/1 PNG per foreground class, ``<stem>_<k>.png``.

    Returns:
        ``(data, file_name, mime_type)``.
    """
    mask = np.ascontiguousarray(np.asarray(mask).astype(np.uint8))
    if mode == "multilabel" and mask.ndim == 3:
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for k in range(mask.shape[2]):
                zf.writestr(f"{stem}_{k + 1}.png", _png(mask[..., k]))
        return buffer.getvalue(), f"{stem}_masks.zip", "application/zip"
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask for mode {mode!r}; got shape {mask.shape}")
    return _png(mask), f"{stem}_mask.png", "image/png"


def _png(array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"could not encode an array of shape {array.shape} as PNG")
    return data.tobytes()


# --------------------------------------------------------------------------- heatmaps


def class_probability(probs: np.ndarray, mode: str, class_index: int) -> np.ndarray:
    """The probability map of one class from a model output.

    Args:
        probs: ``(H, W, C)`` model output: binary ``C = 1`` (foreground),
            multiclass ``C = K`` (softmax incl. background), multilabel ``C = K-1``.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_index: dataset class index ``k`` (0 = background).

    Returns:
        ``(H, W)`` float32 map in ``[0, 1]``. For binary and multilabel data the
        background map is ``1 - p`` (binary) or ``prod_k (1 - p_k)`` (multilabel).
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim == 2:
        probs = probs[..., None]
    c = probs.shape[-1]
    if mode == "binary":
        if class_index not in (0, 1):
            raise ValueError(f"binary data has classes 0 and 1; got class {class_index}")
        p = probs[..., 0]
        return p if class_index == 1 else 1.0 - p
    if mode == "multiclass":
        if not 0 <= class_index < c:
            raise ValueError(f"model output has {c} classes; got class {class_index}")
        return probs[..., class_index]
    if mode == "multilabel":
        if class_index == 0:
            return np.prod(1.0 - probs, axis=-1)
        if not 1 <= class_index <= c:
            raise ValueError(f"model output has {c} foreground classes (1..{c}); got class {class_index}")
        return probs[..., class_index - 1]
    raise ValueError(f"mode must be binary, multiclass or multilabel; got {mode!r}")


def heatmap(prob: np.ndarray, colormap: str = HEATMAP_COLORMAP) -> np.ndarray:
    """Colour a probability map: 0 -> dark, 1 -> bright, on a fixed [0, 1] scale.

    Args:
        prob: ``(H, W)`` float map; values are clipped to ``[0, 1]`` (NaN -> 0).
        colormap: ``"viridis"`` (default), ``"magma"`` or ``"inferno"``.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    if colormap not in _CV2_COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose from {sorted(_CV2_COLORMAPS)}")
    p = np.nan_to_num(np.asarray(prob, dtype=np.float32), nan=0.0)
    if p.ndim != 2:
        raise ValueError(f"expected a (H, W) probability map; got shape {p.shape}")
    u8 = np.round(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, _CV2_COLORMAPS[colormap])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colorbar(height: int, width: int = 56, colormap: str = HEATMAP_COLORMAP, ticks: Sequence[float] = (0.0, 0.5, 1.0)) -> np.ndarray:
    """A vertical colour bar image for ``heatmap``: 1 at the top, 0 at the bottom, with tick labels.

    Returns:
        ``(height, width, 3)`` uint8 RGB image (dark background, white labels).
    """
    height = max(int(height), 24)
    bar_w = max(6, width // 4)
    out = np.full((height, width, 3), 14, dtype=np.uint8)
    pad = 6
    ramp = np.linspace(1.0, 0.0, height - 2 * pad, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    out[pad : height - pad, 2 : 2 + bar_w] = heatmap(ramp, colormap)
    scale = max(0.3, min(0.45, height / 400))
    for t in ticks:
        y = int(round(pad + (1.0 - t) * (height - 2 * pad - 1)))
        cv2.line(out, (2 + bar_w, y), (5 + bar_w, y), (255, 255, 255), 1)
        cv2.putText(out, f"{t:g}", (8 + bar_w, min(height - 2, max(10, y + 4))), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def colorbar_horizontal(width: int = 320, height: int = 34, colormap: str = HEATMAP_COLORMAP, label: str = "probability") -> np.ndarray:
    """A horizontal colour bar legend for ``heatmap``: 0 on the left, 1 on the right, labelled."""
    out = np.full((height, width, 3), 14, dtype=np.uint8)
    pad = 10
    ramp = np.linspace(0.0, 1.0, width - 2 * pad, dtype=np.float32)[None, :].repeat(height // 2 - 2, axis=0)
    out[2 : 2 + ramp.shape[0], pad : width - pad] = heatmap(ramp, colormap)
    y = height - 4
    font = cv2.FONT_HERSHEY_SIMPLEX

    def put(text: str, centre: float, scale: float, colour: tuple[int, int, int]) -> None:
        # Centre each text on its position, kept inside the image, so labels never overlap.
        (tw, _), _ = cv2.getTextSize(text, font, scale, 1)
        x = int(round(min(max(centre - tw / 2, 0), width - tw - 1)))
        cv2.putText(out, text, (x, y), font, scale, colour, 1, cv2.LINE_AA)

    for t in (0.0, 0.5, 1.0):
        put(f"{t:g}", pad + t * (width - 2 * pad - 1), 0.4, (255, 255, 255))
    if label:  # between the 0 and 0.5 ticks
        put(label, pad + 0.25 * (width - 2 * pad - 1), 0.35, (200, 200, 200))
    return out


def heatmap_with_colorbar(prob: np.ndarray, colormap: str = HEATMAP_COLORMAP, bar_width: int = 56) -> np.ndarray:
    """``heatmap(prob)`` with a labelled colour bar attached on the right (one image, fast to show)."""
    hm = heatmap(prob, colormap)
    bar = colorbar(hm.shape[0], bar_width, colormap)
    return np.concatenate([hm, bar], axis=1)


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


# --------------------------------------------------------------------------- class statistics


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


def imbalance_warning(class_names: Sequence[str], fractions: Sequence[float], ratio: float = 20.0, rare: float = 0.01) -> str | None:
    """A sentence describing class imbalance, or ``None`` when classes are balanced enough.

    Foreground classes are compared with each other, and with the background:
    a warning is given when the largest share is more than ``ratio`` times the
    smallest non-empty foreground share, when a foreground class covers less
    than ``rare`` of the pixels, or when a class has no pixels at all.
    """
    if len(fractions) != len(class_names) or len(fractions) < 2:
        return None
    fr = np.asarray(fractions, dtype=np.float64)
    names = list(class_names)
    notes = []
    empty = [names[k] for k in range(1, len(fr)) if fr[k] <= 0]
    if empty:
        notes.append(f"no pixels at all for {', '.join(empty)}")
    fg = [(names[k], fr[k]) for k in range(1, len(fr)) if fr[k] > 0]
    rare_classes = [f"{n} ({f:.2%})" for n, f in fg if f < rare]
    if rare_classes:
        notes.append(f"rare classes: {', '.join(rare_classes)}")
    if fg:
        smallest = min(fg, key=lambda t: t[1])
        largest_k = int(np.argmax(fr))
        if fr[largest_k] / smallest[1] > ratio:
            notes.append(
                f"{names[largest_k]} covers {fr[largest_k] / smallest[1]:.0f}x more pixels than {smallest[0]}"
            )
    if not notes:
        return None
    return (
        "Class imbalance: " + "; ".join(notes) + ". Pixel accuracy will look high even when these classes are missed: "
        "judge the model by per-class Dice/IoU, and consider Dice or class-weighted loss."
    )


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


# --------------------------------------------------------------------------- metric tables


def per_class_table(report: Mapping[str, Any], metrics: Sequence[str] = ("dice", "iou", "precision", "recall", "pixel_accuracy")) -> pd.DataFrame:
    """One run's evaluation as a table: a row per class, then ``macro`` and ``micro``.

    Args:
        report: ``EvaluationReport.to_dict()``: ``per_class`` (a list of dicts
            with ``class`` / ``name``, or a dict keyed by class name), ``macro``
            and ``micro`` (dicts of metric -> value).
        metrics: the columns to keep, in order (missing ones are skipped).

    Returns:
        DataFrame indexed by class name (``macro``, ``micro`` last).
    """
    rows: dict[str, dict[str, Any]] = {}
    for name, values in _iter_per_class(report.get("per_class", ())):
        rows[name] = {m: _num(values.get(m)) for m in metrics}
    for avg in ("macro", "micro"):
        if isinstance(report.get(avg), Mapping):
            rows[avg] = {m: _num(report[avg].get(m)) for m in metrics}
    df = pd.DataFrame.from_dict(rows, orient="index")
    if df.empty:
        return pd.DataFrame(columns=list(metrics))
    return df[[m for m in metrics if m in df.columns and df[m].notna().any()]]


def compare_table(reports: Mapping[str, Mapping[str, Any]], metric: str = "dice") -> pd.DataFrame:
    """Several runs' evaluations side by side for one metric: rows are classes + macro + micro, columns runs.

    Args:
        reports: run label -> ``EvaluationReport.to_dict()``.
        metric: which metric to show (``"dice"``, ``"iou"``, ``"precision"``, ``"recall"``, ``"accuracy"``).

    Returns:
        DataFrame indexed by class (then ``macro``, ``micro``), a column per run.
    """
    cols = {}
    for label, report in reports.items():
        table = per_class_table(report, (metric,))
        cols[label] = table[metric] if metric in table.columns else pd.Series(dtype=float)
    df = pd.DataFrame(cols)
    order = [i for i in df.index if i not in ("macro", "micro")] + [i for i in ("macro", "micro") if i in df.index]
    return df.loc[order]


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


STUDY_COLUMNS = {"Dice": ("macro", "dice"), "IoU": ("macro", "iou"), "Accuracy": (None, "pixel_accuracy"),
                 "Precision": ("macro", "precision"), "Recall": ("macro", "recall"), "micro Dice": ("micro", "dice")}


def study_table(reports: Mapping[str, Mapping[str, Any]], info: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The paper's results table: one row per run with test Dice, IoU and pixel accuracy.

    Dice, IoU, precision and recall are macro averages over the foreground
    classes; accuracy is the pixel accuracy over all pixels; ``micro Dice``
    pools the foreground pixels of all classes.

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
    return df


# --------------------------------------------------------------------------- runs


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


def curves_figure(histories: Mapping[str, Any], metric: str = "loss", title: str | None = None):
    """Overlay one metric's curves for several runs: solid = train, dashed = validation.

    Args:
        histories: run label -> history (see ``history_frame``).
        metric: base name, e.g. ``"loss"`` or ``"dice"``; ``val_<metric>`` is drawn dashed.

    Returns:
        ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (label, h) in enumerate(histories.items()):
        df = history_frame(h)
        color = _CURVE_COLORS[i % len(_CURVE_COLORS)]
        for col, dash, part in ((metric, "solid", "train"), (f"val_{metric}", "dash", "validation")):
            if col in df.columns:
                fig.add_trace(
                    go.Scatter(
                        x=df["epoch"], y=pd.to_numeric(df[col], errors="coerce"), mode="lines+markers",
                        name=plotly_text(f"{label} · {part}"), line=dict(color=color, dash=dash), marker=dict(size=4),
                    )
                )
    fig.update_layout(
        title=plotly_text(title or metric), xaxis_title="epoch", yaxis_title=plotly_text(metric), height=360,
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25),
    )
    # Epochs are whole numbers: never label 1.5; about ten ticks on long runs.
    last = max((len(history_frame(h)) for h in histories.values()), default=1)
    fig.update_xaxes(tick0=1, dtick=max(1, math.ceil(last / 10)))
    return fig


def runs_frame(summaries: Iterable[Any], now: float | None = None) -> pd.DataFrame:
    """Run summaries (dicts or objects from ``segcore.runs.list_runs``) as the Runs table.

    Known fields are picked by name and missing ones left empty, so the table
    keeps working as summaries gain fields.

    Returns:
        DataFrame with columns ``run`` (the label of ``run_labels``), ``id`` (the run id), ``status``, ``dataset``, ``model``,
        ``encoder``, ``best val Dice``, ``test Dice``, ``epochs``, ``duration``
        (finished - started, or so far for a running run; ``now`` is the time
        in seconds since the epoch, default the current time), ``warnings``,
        ``tags``, ``created``.
    """
    summaries = list(summaries)
    labels = run_labels(summaries)
    rows = []
    for s in summaries:
        d = _as_dict(s)
        cfg = d.get("config") or {}
        cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
        model = cfg.get("model", {}) if isinstance(cfg, Mapping) else {}
        train = cfg.get("train", {}) if isinstance(cfg, Mapping) else {}
        encoder = d.get("encoder") or model.get("encoder") or "none"
        if d.get("model"):
            model_desc = str(d["model"])
        elif encoder in ("none", "", None):
            model_desc = f"U-Net d{model.get('depth', '?')} f{model.get('filters', '?')}" if model else ""
        else:
            model_desc = f"{encoder} ({model.get('freeze', 'trainable')})"
        warnings = d.get("warnings") or ()
        if isinstance(warnings, (list, tuple)):
            warnings = "; ".join(str(w.get("message", w)) if isinstance(w, Mapping) else str(w) for w in warnings)
        tags = d.get("tags") or (cfg.get("tags", ()) if isinstance(cfg, Mapping) else ())
        epochs_done = _first(d, "epochs_done", "epoch", "epochs_completed")
        epochs_total = _first(d, "epochs_total", "epochs") or train.get("epochs")
        epochs = f"{epochs_done}/{epochs_total}" if epochs_done is not None and epochs_total else (epochs_done if epochs_done is not None else "")
        rows.append(
            {
                "run": labels.get(_run_id(d), _run_id(d)),
                "id": _run_id(d),
                "status": d.get("status") or d.get("state") or "",
                "dataset": d.get("dataset") or train.get("dataset", ""),
                "model": model_desc,
                "encoder": encoder,
                "best val Dice": _num(_first(d, "best_val_dice", "best_dice", "best_metric")),
                "epochs": str(epochs),
                "test Dice": _num(_first(d.get("test") or {}, "dice", "macro_dice", "dice_macro")),
                "duration": format_duration(_first(d, "duration_s", "duration", "elapsed_s") or _elapsed(d.get("started_at"), d.get("finished_at"), now)),
                "warnings": warnings or "",
                "tags": ", ".join(tags) if isinstance(tags, (list, tuple)) else str(tags or ""),
                "created": d.get("created_at") or d.get("created") or "",
            }
        )
    cols = ["run", "id", "status", "dataset", "model", "encoder", "best val Dice", "test Dice", "epochs", "duration", "warnings", "tags", "created"]
    return pd.DataFrame(rows, columns=cols)


def _run_id(d: Mapping[str, Any]) -> str:
    return str(d.get("run_id") or d.get("id") or "")


# A run id starts with its UTC creation time, ``yyyymmdd-HHMMSS-`` (see ``segcore.runs.new_run_id``).
_RUN_STAMP = re.compile(r"^\d{8}-\d{6}-")


def short_run_id(run_id: str) -> str:
    """A run id without its leading time stamp: ``20261122-203045-unet-d4f32-demo-1a2b`` -> ``unet-d4f32-demo-1a2b``."""
    return _RUN_STAMP.sub("", str(run_id)) or str(run_id)


def run_label(summary: Any) -> str:
    """How a run is shown everywhere: its name where one was given, else its short id (``short_run_id``)."""
    d = _as_dict(summary)
    name = str(d.get("name") or "").strip()
    return name or short_run_id(_run_id(d))


def run_labels(summaries: Iterable[Any]) -> dict[str, str]:
    """Run id -> ``run_label``, made unique: runs that share a name get their id's random suffix added
    (``baseline · 1a2b``), so selectors, legends and table rows never merge two runs.
    """
    items = [(_run_id(_as_dict(s)), run_label(s)) for s in summaries]
    counts: dict[str, int] = {}
    for _, label in items:
        counts[label] = counts.get(label, 0) + 1
    out = {}
    for run_id, label in items:
        out[run_id] = f"{label} · {run_id.rsplit('-', 1)[-1]}" if counts[label] > 1 else label
    return out


def size_summary(stats: Mapping[str, Any]) -> str:
    """``DatasetInfo.image_size_stats`` in a few words: ``"128x128"`` or ``"400-800 x 300-600 px (12 sizes)"``."""
    if not stats:
        return ""
    keys = ("min_width", "max_width", "min_height", "max_height")
    if not all(k in stats for k in keys):
        return str(stats.get("most_common_size", ""))
    w0, w1, h0, h1 = (int(stats[k]) for k in keys)
    if (w0, h0) == (w1, h1):
        return f"{w0}x{h0} px"
    distinct = stats.get("distinct_sizes")
    width = f"{w0}" if w0 == w1 else f"{w0}-{w1}"
    height = f"{h0}" if h0 == h1 else f"{h0}-{h1}"
    return f"{width} x {height} px" + (f" ({distinct} sizes)" if distinct else "")


def format_duration(seconds: Any) -> str:
    """``3725`` -> ``"1h 02m"``, ``75`` -> ``"1m 15s"``, ``None`` -> ``""``."""
    s = _num(seconds)
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return ""
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def table_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A DataFrame as a GitHub Markdown table (no extra dependency), index included when named or non-default."""
    show_index = not isinstance(df.index, pd.RangeIndex)
    headers = ([df.index.name or ""] if show_index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for idx, row in df.iterrows():
        cells = ([str(idx)] if show_index else []) + [_fmt_cell(v, floatfmt) for v in row.tolist()]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- environment


def backend_summary(env: Mapping[str, str] | None = None, keras_home: str | os.PathLike | None = None) -> dict[str, Any]:
    """Which Keras backend will be used and which accelerators the machine has, without importing Keras.

    The backend comes from ``$KERAS_BACKEND``, else ``~/.keras/keras.json``,
    else ``"tensorflow"`` (Keras's own rule). GPUs are read from the NVIDIA
    driver's ``/proc`` entries.

    Returns:
        dict with ``backend``, ``backend_source``, ``gpus`` (list of names) and ``cpus``.
    """
    env = os.environ if env is None else env
    backend, source = "tensorflow", "default"
    if env.get("KERAS_BACKEND"):
        backend, source = env["KERAS_BACKEND"], "KERAS_BACKEND"
    else:
        home = Path(keras_home) if keras_home else Path(env.get("KERAS_HOME", Path.home() / ".keras"))
        try:
            cfg = json.loads((home / "keras.json").read_text())
            if cfg.get("backend"):
                backend, source = cfg["backend"], str(home / "keras.json")
        except (OSError, ValueError):
            pass
    gpus = []
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        for info in sorted(proc.glob("*/information")):
            try:
                for line in info.read_text().splitlines():
                    if line.startswith("Model:"):
                        gpus.append(line.split(":", 1)[1].strip())
            except OSError:
                continue
    return {"backend": backend, "backend_source": source, "gpus": gpus, "cpus": os.cpu_count() or 1}


# --------------------------------------------------------------------------- small helpers


def _iter_per_class(per_class: Any) -> Iterable[tuple[str, Mapping[str, Any]]]:
    if isinstance(per_class, Mapping):
        for name, values in per_class.items():
            yield str(name), values
        return
    for i, row in enumerate(per_class or ()):
        name = row.get("name") or row.get("class_name") or row.get("class") or str(i)
        yield str(name), row


def _elapsed(started: Any, finished: Any, now: float | None) -> float | None:
    start = _parse_time(started)
    if start is None:
        return None
    end = _parse_time(finished)
    if end is None:
        import time

        end = time.time() if now is None else now
    return max(0.0, end - start)


def _parse_time(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    return dict(vars(obj))


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


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
    return str(v)


def subset_split_note(samples: Iterable[Any]) -> str | None:
    """What the "subset" split (the dataset's own folders) leaves out, as a warning; None when it has train, val and test.

    Args:
        samples: ``DatasetInfo.samples`` (each with a ``subset``: train / val / test or None).
    """
    found: dict[str, int] = {}
    for s in samples:
        subset = str(getattr(s, "subset", None) or (s.get("subset") if isinstance(s, Mapping) else "") or "").lower()
        subset = "val" if subset in ("valid", "validation") else subset
        found[subset] = found.get(subset, 0) + 1
    shown = ", ".join(f"{k} ({v})" for k, v in sorted(found.items()) if k) or "none"
    notes = []
    if not found.get("test"):
        notes.append(
            f"This dataset has no test folder (its folders: {shown}), so the 'subset' split has **no test images**: "
            "a run trained on it gets no test Dice and cannot be compared on held-out images. "
            "Use the 'random' split with a test fraction instead."
        )
    if not found.get("val") and found.get("train"):
        notes.append("It has no val folder either: validation images are drawn from train with the validation fraction.")
    return " ".join(notes) or None


def quick_start_duration_note(measured: Mapping[str, Any], past: Sequence[Any] = ()) -> str:
    """How long the quick start takes, in measured figures only.

    Args:
        measured: ``segcore.quickstart.MEASURED`` (``seconds``, ``test_dice``, ``cpus`` from ``bench/quick_start.py``).
        past: finished quick-start runs of this workspace (``RunSummary``), newest first.

    Returns:
        A sentence: the benchmark's figure, then (when there is one) how long it took here last time,
        each from pressing the button to a finished, tested run.
    """
    parts = []
    if measured.get("seconds"):
        dice = measured.get("test_dice")
        parts.append(
            f"Measured from the press to a finished, tested run: {format_duration(measured['seconds'])} on "
            f"{measured.get('cpus', '?')} CPU cores shared with other work" + (f" (test Dice {dice:.2f})" if dice else "")
            + "; a GPU or idle cores make it shorter."
        )
    if past:
        last = _as_dict(past[0])
        seconds = _elapsed(last.get("created_at"), last.get("finished_at"), None)
        if seconds is not None:
            dice = _num((last.get("test") or {}).get("macro_dice"))
            parts.append(f"Here it last took {format_duration(seconds)}" + (f" (test Dice {dice:.2f})." if dice is not None else "."))
    return " ".join(parts) or "Its duration has not been measured on this machine yet."

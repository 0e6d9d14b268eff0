"""Images for people: masks painted in class colours, overlays, probability heatmaps, colour bars, tiles.

numpy and OpenCV only. Images are uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB;
masks are ``(H, W)`` class indices (``ignore_index`` = void) or ``(H, W, K-1)``
0/1 planes for multilabel data; probability maps are float in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from segcore.data.resample import resize_image, resize_labels
from segcore.labels import class_colors  # noqa: F401  (the pages find it here too)

# Void pixels are drawn in a neutral grey so they never read as a class.
IGNORE_COLOR = (128, 128, 128)
# The colour scale used for every probability heatmap (perceptually uniform,
# readable on a dark theme and for colour-blind readers).
HEATMAP_COLORMAP = "viridis"
_CV2_COLORMAPS = {"viridis": cv2.COLORMAP_VIRIDIS, "magma": cv2.COLORMAP_MAGMA, "inferno": cv2.COLORMAP_INFERNO}

# Distinct colours for datasets whose dataset.json has none (index 0 = background).


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


def foreground(mask: np.ndarray, ignore_index: int | None = 255, unpainted: int | None = 0) -> np.ndarray:
    """Boolean ``(H, W)``: pixels of a painted class: not void, not ``unpainted`` (class 0 when it is the background;
    None when every class is real, ``segcore.labels.Labels.unpainted``)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        on = mask > 0
        if ignore_index is not None:
            on &= mask != ignore_index
        return on.any(axis=-1)
    fg = mask != unpainted if unpainted is not None else np.ones(mask.shape, bool)
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
    unpainted: int | None = 0,
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
        unpainted: the class left as it is (the background, class 0); None
            paints every class, as when class 0 is a real class
            (``segcore.labels.Labels.unpainted``).

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
    shown = foreground(mask, ignore_index, unpainted)
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
    """Resize so the longer side is ``size`` pixels (masks by the centred label vote, never blended)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    if abs(scale - 1.0) < 1e-6:
        return image
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize_labels(image, *shape) if nearest else resize_image(image, *shape)


def resize_to(image: np.ndarray, shape: Sequence[int], nearest: bool = False) -> np.ndarray:
    """Resize to exactly ``shape`` = (height, width), whatever the aspect (as the model sees an image at its
    training size); returned unchanged when it has that shape already."""
    h, w = int(shape[0]), int(shape[1])
    if image.shape[:2] == (h, w):
        return image
    return resize_labels(image, h, w) if nearest else resize_image(image, h, w)


def stack_tiles(tiles: Sequence[np.ndarray], size: int, gap: int = 4, axis: int = 0) -> np.ndarray:
    """Resize RGB tiles to ``size`` x ``size`` and stack them (vertically by default) with a dark gap.

    Masks and heatmaps should already be RGB; tiles are resized with nearest
    neighbour when they are smaller than ``size`` (keeps label edges crisp).
    """
    parts = []
    for i, tile in enumerate(tiles):
        rgb = to_rgb(tile)
        interp = cv2.INTER_NEAREST_EXACT if rgb.shape[0] < size else cv2.INTER_AREA  # centred either way
        parts.append(cv2.resize(rgb, (size, size), interpolation=interp))
        if gap and i < len(tiles) - 1:
            shape = (gap, size, 3) if axis == 0 else (size, gap, 3)
            parts.append(np.full(shape, 14, np.uint8))
    return np.concatenate(parts, axis=axis)


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

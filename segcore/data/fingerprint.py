"""A dataset's fingerprint: the facts a training plan is derived from.

Sizes, channels and class shares come from ``dataset.json``; two facts are
measured on the masks themselves, for each scored class (the background too
when class 0 is a real class):

- **Survival at a scale** (what decides the training resolution): each mask
  is scaled down so that its shorter side is ``s`` px (the centred area vote
  training uses), back up to its own size (bilinear, as predictions are),
  and compared with itself: the Dice of each class is the best score a
  perfect model trained at that scale could reach. Thin structures (a cell
  membrane, a pole in a street scene) lose most; large regions nothing.
  Measured at each of ``SURVIVAL_SIDES`` smaller than the images.
- **Typical thickness** (shown, and used for the loss): the distance
  transform of the class's region gives, on its ridge (local maxima), the
  half-width there (a line n px wide has (n + 1) / 2 at its middle). Each
  ridge pixel stands for a piece of the region as wide as the structure
  there, so the thickness is the median over the ridge weighted by that
  width: a class whose pixels lie in a few wide regions is not called thin
  because of many specks. A retinal vessel or a cell membrane comes out at
  2 to 6 px, a skin lesion at hundreds.
- **Layout asymmetry** (what decides the flips): the labels' class shares
  along each axis (``LAYOUT_BINS`` bands of rows, then of columns, each mask
  weighed alike) compared with their mirror image: the mean over bands of
  the total variation between a band's class shares and those of the band
  at the mirrored position, 0 when a flip leaves the layout as it is, 1
  when it swaps every class for another. A street scene measures about 0.7
  top to bottom (sky above, road below), microscopy and dermoscopy under
  0.05, so a flip along that axis shows the model scenes that never occur.
  ``transpose`` compares the profile down the rows with the one across the
  columns in the same way: 0 when swapping rows for columns leaves the
  layout as it is.

At most ``MAX_MASKS`` masks are read (spread evenly over the dataset), so a
fingerprint takes a second or two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

MAX_MASKS = 40
SURVIVAL_SIDES = (128, 256)
LAYOUT_BINS = 16


@dataclass(frozen=True)
class Fingerprint:
    """What a plan needs to know about a dataset (JSON-ready through ``to_dict``)."""

    name: str
    mode: str
    num_classes: int
    class_names: tuple[str, ...]
    class0_is_background: bool
    channels: int
    num_images: int
    median_height: int
    median_width: int
    min_short_side: int
    class_fraction: tuple[float, ...]  # per class, over all labelled pixels
    thickness: dict[str, float | None] = field(default_factory=dict)  # per class name: typical thickness in px
    # per shorter side (as text, "128"): per class name, the Dice of the labels scaled there and back
    survival: dict[str, dict[str, float]] = field(default_factory=dict)
    # "vertical" (top against bottom) and "horizontal" (left against right): 0 mirror-symmetric .. 1 (module notes);
    # "transpose" (rows against columns): 0 the same both ways .. 1
    layout_asymmetry: dict[str, float] = field(default_factory=dict)

    @property
    def median_short_side(self) -> int:
        return min(self.median_height, self.median_width)

    @property
    def thinnest(self) -> tuple[str | None, float | None]:
        """The class with the thinnest structures and its thickness (None when no class was measured)."""
        measured = {k: v for k, v in self.thickness.items() if v is not None}
        if not measured:
            return None, None
        name = min(measured, key=measured.get)
        return name, measured[name]

    def weakest_at(self, short_side: int) -> tuple[str | None, float | None]:
        """The class that loses most with the shorter side scaled to ``short_side``, and its Dice (None: not measured)."""
        scores = self.survival.get(str(short_side)) or {}
        if not scores:
            return None, None
        name = min(scores, key=scores.get)
        return name, scores[name]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["class_fraction"] = list(self.class_fraction)
        return d


def structure_thickness(region: np.ndarray) -> float | None:
    """The typical thickness in pixels of a boolean region: from the median distance-to-outside on its ridge."""
    region = np.ascontiguousarray(region, dtype=np.uint8)
    if not region.any():
        return None
    dist = cv2.distanceTransform(region, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ridge = (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8))) & (region > 0)
    values = np.sort(dist[ridge])
    if not values.size:
        return None
    # a pixel at the middle of a line n px wide lies (n + 1) / 2 from the nearest pixel outside it; each ridge
    # pixel stands for a piece of the region that wide, so the median is weighted by the width
    widths = 2.0 * values - 1.0
    cumulative = np.cumsum(widths)
    return float(widths[np.searchsorted(cumulative, cumulative[-1] / 2.0)])


def label_survival(mask: np.ndarray, short_side: int, classes: list[int], num_classes: int,
                   multilabel: bool = False) -> dict[int, tuple[int, int]]:
    """Per class in ``classes``, ``(2 * overlap, pixels in both)`` of ``mask`` against itself scaled to ``short_side`` and back.

    The sums over several masks give each class's Dice at that scale (see the module notes). ``mask`` is
    (H, W) class indices ``0 .. num_classes - 1`` (other values, such as void, are left out of the count)
    or, with ``multilabel``, (H, W, P) 0/1 planes where class ``k`` is plane ``k - 1``.
    """
    from segcore.data.resample import resize_labels, resize_probs

    h, w = mask.shape[:2]
    scale = short_side / min(h, w)
    small_h, small_w = max(1, round(h * scale)), max(1, round(w * scale))
    small = resize_labels(mask, small_h, small_w)
    out = {}
    if multilabel:
        for k in classes:
            back = resize_probs(small[..., k - 1].astype(np.float32), h, w) >= 0.5
            truth = mask[..., k - 1] == 1
            out[k] = (2 * int((back & truth).sum()), int(back.sum() + truth.sum()))
        return out
    planes = np.stack([(small == k).astype(np.float32) for k in range(num_classes)], axis=-1)
    back = resize_probs(planes, h, w).reshape(h, w, num_classes).argmax(-1)
    scored = mask < num_classes
    for k in classes:
        truth, got = mask == k, (back == k) & scored
        out[k] = (2 * int((got & truth).sum()), int(got.sum() + truth.sum()))
    return out


def class_profile(mask: np.ndarray, axis: int, num_classes: int, multilabel: bool = False,
                  bins: int = LAYOUT_BINS) -> np.ndarray:
    """The class shares of ``mask`` in ``bins`` bands along ``axis`` (0: bands of rows, 1: of columns).

    Returns (bins, K): for a class-index mask the share of each class among the band's labelled pixels (void
    and other values left out; a band with none is all 0), for multi-label planes (H, W, P) the share of the
    band's pixels in each plane (K = P).
    """
    n = mask.shape[axis]
    band = (np.arange(n) * bins) // max(1, n)
    if multilabel:
        on = (np.moveaxis(mask, axis, 0) == 1).reshape(n, -1, mask.shape[-1]).mean(axis=1)  # (n, P)
        counts = np.stack([on[band == b].mean(axis=0) if (band == b).any() else np.zeros(on.shape[1])
                           for b in range(bins)])
        return counts
    lines = np.moveaxis(mask, axis, 0).reshape(n, -1)
    per_line = np.stack([(lines == k).sum(axis=1) for k in range(num_classes)], axis=-1).astype(np.float64)
    counts = np.stack([per_line[band == b].sum(axis=0) for b in range(bins)])
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def mirror_asymmetry(profile: np.ndarray, multilabel: bool = False) -> float:
    """How much a (bins, K) class profile changes when mirrored: mean total variation between mirrored bands.

    Class shares: half the sum of absolute differences (0 .. 1). Multi-label planes: each plane is its own
    on/off share, so the mean absolute difference over planes.
    """
    return profile_difference(profile, profile[::-1], multilabel)


def profile_difference(a: np.ndarray, b: np.ndarray, multilabel: bool = False) -> float:
    """Mean total variation between the bands of two (bins, K) class profiles (as ``mirror_asymmetry``).

    Between the profile down the rows and the one across the columns it says how much a transposition (rows
    for columns) changes the layout: 0 for a layout the same both ways.
    """
    diff = np.abs(a - b)
    per_band = diff.mean(axis=1) if multilabel else 0.5 * diff.sum(axis=1)
    return float(per_band.mean()) if per_band.size else 0.0


def fingerprint(dataset) -> Fingerprint:
    """The fingerprint of a ``Dataset`` (reads up to ``MAX_MASKS`` of its masks)."""
    info = dataset.info
    samples = list(info.samples)
    heights = [s.height for s in samples] or [0]
    widths = [s.width for s in samples] or [0]
    step = max(1, len(samples) // MAX_MASKS)
    chosen = samples[::step][:MAX_MASKS]
    first = 0 if not info.class0_is_background and info.mode != "multilabel" else 1
    per_class: dict[int, list[float]] = {k: [] for k in range(first, info.num_classes)}
    multilabel = info.mode == "multilabel"
    kept = {side: {k: [0, 0] for k in per_class} for side in SURVIVAL_SIDES}
    profiles: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for sample in chosen:
        mask = dataset.mask(sample.id)
        for axis in profiles:
            profiles[axis].append(class_profile(mask, axis, info.num_classes, multilabel))
        for side in SURVIVAL_SIDES:
            if side < min(mask.shape[:2]):
                for k, (both, total) in label_survival(mask, side, list(per_class), info.num_classes, multilabel).items():
                    kept[side][k][0] += both
                    kept[side][k][1] += total
        for k in per_class:
            if info.mode == "multilabel":
                region = mask[..., k - 1] == 1
            else:
                region = mask == k
            t = structure_thickness(region)
            if t is not None:
                per_class[k].append(t)
    thickness = {info.class_names[k]: (float(np.median(v)) if v else None) for k, v in per_class.items()}
    survival = {str(side): {info.class_names[k]: round(both / total, 4) for k, (both, total) in counts.items() if total}
                for side, counts in kept.items() if any(total for _, total in counts.values())}
    fractions = tuple(float(f) for f in info.class_pixel_fraction) or tuple(0.0 for _ in info.class_names)
    mean_profiles = {axis: np.mean(v, axis=0) for axis, v in profiles.items() if v}
    layout = {name: round(mirror_asymmetry(mean_profiles[axis], multilabel), 4)
              for axis, name in ((0, "vertical"), (1, "horizontal")) if axis in mean_profiles}
    if len(mean_profiles) == 2:
        layout["transpose"] = round(profile_difference(mean_profiles[0], mean_profiles[1], multilabel), 4)
    return Fingerprint(
        name=info.name, mode=info.mode, num_classes=info.num_classes, class_names=tuple(info.class_names),
        class0_is_background=bool(info.class0_is_background), channels=int(info.channels), num_images=len(samples),
        median_height=int(np.median(heights)), median_width=int(np.median(widths)),
        min_short_side=int(min(min(h, w) for h, w in zip(heights, widths))), class_fraction=fractions,
        thickness=thickness, survival=survival, layout_asymmetry=layout,
    )

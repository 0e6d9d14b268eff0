"""A dataset's fingerprint: the facts a training plan is derived from.

Sizes, channels and class shares come from ``dataset.json``; the thickness
of the thinnest structure is measured on the masks themselves: for each
class (the background too when class 0 is a real class), the distance
transform of its region gives, on the region's ridge (its local maxima),
the half-width of the structure there (a line n px wide has (n + 1) / 2 at
its middle); from the median over the ridge comes the class's typical
thickness in pixels at the images' own resolution. A
retinal vessel or a cell membrane comes out at 2 to 6 px, a skin lesion at
hundreds. At most ``MAX_MASKS`` masks are read (spread evenly over the
dataset), so a fingerprint takes about a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

MAX_MASKS = 40


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
    values = dist[ridge]
    # a pixel at the middle of a line n px wide lies (n + 1) / 2 from the nearest pixel outside it
    return float(2.0 * np.median(values) - 1.0) if values.size else None


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
    for sample in chosen:
        mask = dataset.mask(sample.id)
        for k in per_class:
            if info.mode == "multilabel":
                region = mask[..., k - 1] == 1
            else:
                region = mask == k
            t = structure_thickness(region)
            if t is not None:
                per_class[k].append(t)
    thickness = {info.class_names[k]: (float(np.median(v)) if v else None) for k, v in per_class.items()}
    fractions = tuple(float(f) for f in info.class_pixel_fraction) or tuple(0.0 for _ in info.class_names)
    return Fingerprint(
        name=info.name, mode=info.mode, num_classes=info.num_classes, class_names=tuple(info.class_names),
        class0_is_background=bool(info.class0_is_background), channels=int(info.channels), num_images=len(samples),
        median_height=int(np.median(heights)), median_width=int(np.median(widths)),
        min_short_side=int(min(min(h, w) for h, w in zip(heights, widths))), class_fraction=fractions,
        thickness=thickness,
    )

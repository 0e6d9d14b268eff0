"""The built-in demo dataset: coloured shapes on textured backgrounds.

Deterministic from a seed (each image has its own generator seeded from the
dataset seed and its index, so the result does not depend on threads or
order). Four classes: background, ``disc`` (warm, speckled), ``square``
(green, striped, rotated) and ``triangle`` (blue, checkered). Discs are
common, triangles rare (class imbalance); shapes may overlap, the later drawn
over the earlier, giving a multiclass index mask.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

import segcore
from segcore.data.dataset import IGNORE_INDEX, ClassInfo, DatasetInfo, SampleInfo, load_dataset, pixel_hash
from segcore.data.imageio import encode_png as _encode
from segcore.data.imports import content_hash
from segcore.fsutil import check_name, make_temp_dir, write_json_atomic
from segcore.workspace import Workspace, get_workspace

DEMO_NAME = "demo"
CLASSES = (
    ClassInfo("background", (0, 0, 0)),
    ClassInfo("disc", (230, 25, 75)),
    ClassInfo("square", (60, 180, 75)),
    ClassInfo("triangle", (0, 130, 200)),
)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    # Low-frequency blotches plus fine grain, in a muted random tint.
    coarse = rng.random((6, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    tint = rng.uniform(70, 150, 3).astype(np.float32)
    img = tint + (smooth - 0.5) * 60 + rng.normal(0, 10, (size, size, 3)).astype(np.float32)
    return img


def _texture(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "disc":  # warm with speckles
        base = np.array([215, 85, 50], np.float32)
        return base + rng.normal(0, 18, (size, size, 3)).astype(np.float32)
    if kind == "square":  # green with diagonal stripes
        period = rng.uniform(5, 8)
        stripes = (np.sin((xx + yy) * (2 * np.pi / period)) > 0).astype(np.float32)[..., None]
        return np.array([40, 170, 60], np.float32) + stripes * np.array([50, 60, 30], np.float32)
    # triangle: blue checkerboard
    cell = int(rng.integers(3, 6))
    checks = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)[..., None]
    return np.array([30, 70, 200], np.float32) + checks * np.array([60, 80, 50], np.float32)


def _shape_mask(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0.12, 0.88, 2) * size
    r = rng.uniform(0.08, 0.2) * size
    if kind == "disc":
        cv2.circle(m, (int(cx), int(cy)), int(r), 1, -1)
    elif kind == "square":
        box = cv2.boxPoints(((float(cx), float(cy)), (2 * r, 2 * r * rng.uniform(0.7, 1.0)), float(rng.uniform(0, 90))))
        cv2.fillPoly(m, [np.round(box).astype(np.int32)], 1)
    else:
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        pts = np.stack([cx + 1.3 * r * np.cos(angles), cy + 1.3 * r * np.sin(angles)], axis=1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    return m.astype(bool)


def render_sample(seed: int, index: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One demo image and its mask.

    Args:
        seed: the dataset seed.
        index: the sample number.
        size: side length in pixels.

    Returns:
        ``(image, mask)``: uint8 RGB ``(size, size, 3)`` and uint8 index mask ``(size, size)``.
    """
    rng = np.random.default_rng([seed, index])
    img = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    # Imbalance: 1-3 discs, 0-2 squares, a triangle in about 40% of images.
    kinds = ["disc"] * int(rng.integers(1, 4)) + ["square"] * int(rng.integers(0, 3))
    if rng.random() < 0.4:
        kinds.append("triangle")
    rng.shuffle(kinds)
    for kind in kinds:
        region = _shape_mask(kind, rng, size)
        k = [c.name for c in CLASSES].index(kind)
        img[region] = _texture(kind, rng, size)[region]
        mask[region] = k
    image = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return image, mask


def make_demo(
    workspace: Workspace | None = None,
    *,
    name: str = DEMO_NAME,
    num_samples: int = 300,
    size: int = 128,
    seed: int = 0,
    force: bool = False,
) -> DatasetInfo:
    """Generate the demo dataset into the workspace.

    Args:
        workspace: the workspace (default: ``get_workspace()``).
        name: the dataset name.
        num_samples: number of images.
        size: side length of the square images.
        seed: makes the dataset reproducible.
        force: replace an existing dataset of that name.

    Returns:
        The :class:`DatasetInfo` written.

    Raises:
        FileExistsError: if the dataset exists and ``force`` is False.
    """
    ws = workspace or get_workspace()
    check_name(name, "dataset name")
    if num_samples < 1 or size < 16:
        raise ValueError(f"demo needs num_samples >= 1 and size >= 16, got {num_samples} and {size}")
    target = ws.dataset_dir(name)
    if target.exists() and not force:
        raise FileExistsError(f"dataset {name!r} already exists in {ws.datasets_dir}; use force to regenerate it")
    scratch = make_temp_dir(ws.tmp_dir, f"demo-{name}-")
    try:
        out = scratch / "dataset"
        (out / "images").mkdir(parents=True)
        (out / "masks").mkdir()
        counts = np.zeros(len(CLASSES), np.int64)
        samples = []
        for i in range(num_samples):
            image, mask = render_sample(seed, i, size)
            sid = f"demo_{i:04d}"
            (out / "images" / f"{sid}.png").write_bytes(_encode(image))
            (out / "masks" / f"{sid}.png").write_bytes(_encode(mask, mask=True))
            counts += np.bincount(mask.ravel(), minlength=len(CLASSES))[: len(CLASSES)]
            samples.append(
                SampleInfo(sid, size, size, None, f"generated:{seed}:{i}", f"generated:{seed}:{i}", pixel_sha256=pixel_hash(image))
            )
        info = DatasetInfo(
            name=name,
            mode="multiclass",
            classes=CLASSES,
            channels=3,
            samples=tuple(samples),
            ignore_index=IGNORE_INDEX,
            source={"path": "generated", "layout": "demo", "options": {"seed": seed, "num_samples": num_samples, "size": size}},
            content_hash=content_hash(out),
            image_size_stats={
                "min_height": size, "max_height": size, "min_width": size, "max_width": size,
                "median_height": float(size), "median_width": float(size), "distinct_sizes": 1,
                "most_common_size": f"{size}x{size}",
            },  # fmt: skip
            class_pixel_fraction=tuple(round(float(c) / counts.sum(), 6) for c in counts),
            problems=(),
            created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            segcore_version=segcore.__version__,
        )
        write_json_atomic(out / "dataset.json", info.to_dict())
        if target.exists():
            old = scratch / "old"
            os.rename(target, old)  # force: move the old one aside, then swap in
        os.rename(out, target)
        return info
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def ensure_demo(workspace: Workspace | None = None) -> DatasetInfo:
    """Create the demo dataset once; return its info (existing or new).

    Safe when two processes start at once: the second finds the first's dataset.
    """
    ws = workspace or get_workspace()
    if (ws.dataset_dir(DEMO_NAME) / "dataset.json").is_file():
        return load_dataset(DEMO_NAME, ws).info
    try:
        return make_demo(ws)
    except (FileExistsError, OSError):
        if (ws.dataset_dir(DEMO_NAME) / "dataset.json").is_file():
            return load_dataset(DEMO_NAME, ws).info
        raise

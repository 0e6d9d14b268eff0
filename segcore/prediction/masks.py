"""A prediction's mask: probabilities to classes, and the mask's files in the canonical encoding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from segcore.data import imageio
from segcore.labels import probs_to_mask  # noqa: F401  (one rule: segcore.labels)


def save_mask_png(mask: np.ndarray, path: str | os.PathLike, mode: str = "multiclass") -> list[Path]:
    """Save a predicted mask as PNG in the canonical encoding (class ids; multilabel: one 0/1 PNG per class).

    Returns:
        The files written (multilabel: ``<stem>_<k>.png`` for k = 1..K-1).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() != ".png":
        raise ValueError(f"mask output {path} must be a .png file")
    if mode == "multilabel" and mask.ndim == 3:
        written = []
        for name, plane in label_plane_files(mask, path.stem):
            target = path.with_name(name)
            imageio.write_png(target, plane, mask=True)
            written.append(target)
        return written
    imageio.write_png(path, np.ascontiguousarray(mask, dtype=np.uint8), mask=True)
    return [path]


def label_plane_files(mask: np.ndarray, stem: str) -> list[tuple[str, np.ndarray]]:
    """The files of a multilabel mask: one 0/1 plane per foreground class.

    Args:
        mask: ``(H, W, K-1)`` planes.
        stem: the name the files share.

    Returns:
        ``(<stem>_<k>.png, uint8 plane (H, W))`` for k = 1..K-1.
    """
    return [(f"{stem}_{k + 1}.png", np.ascontiguousarray(mask[..., k], dtype=np.uint8)) for k in range(mask.shape[2])]

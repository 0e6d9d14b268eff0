"""Resampling images and label masks on one pixel grid.

Every resize in segcore goes through these functions so that an image and
its labels stay on the same geometry. The convention is OpenCV's centred
one: destination pixel ``c`` (its centre) samples source coordinate
``(c + 0.5) / scale - 0.5`` on each axis, ``scale = destination / source``.

- Images: ``INTER_AREA`` to shrink (each destination pixel the mean of the
  source area it covers), ``INTER_LINEAR`` to enlarge. Both are centred.
- Labels (class indices, 0/1 planes, void 255): a per-value area vote.
  Each value's indicator plane is resampled like an image and every
  destination pixel takes the value with the largest share of its area
  (ties go to the smaller value). Void votes like a class. Unlike OpenCV's
  ``INTER_NEAREST``, which samples the top-left corner of each cell and so
  shifts a mask up-left of its image by ``(1 - 1/scale) / 2`` destination
  pixels, the vote is centred for every factor, integer or not, and never
  blends two classes into a third.
- Probabilities: bilinear (:func:`resize_probs`).

The tests in ``tests/test_resample.py`` check centroids against
``(c + 0.5) * scale - 0.5`` on both axes.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An image (H, W[, C]) resized to ``height`` x ``width`` (area to shrink, bilinear to enlarge)."""
    image = np.asarray(image)
    if image.shape[:2] == (height, width):
        return image
    shrink = height * width < image.shape[0] * image.shape[1]
    out = _cv_resize(image, height, width, cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out


def resize_labels(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A label mask (H, W) or label planes (H, W, P) resized by a centred per-value area vote.

    Values are never blended: every output pixel holds one of the input's
    values (void included). Planes are voted one by one.
    """
    mask = np.asarray(mask)
    if mask.shape[:2] == (height, width):
        return mask
    if mask.ndim == 3:
        return np.stack([resize_labels(mask[..., p], height, width) for p in range(mask.shape[2])], axis=-1)
    if mask.ndim != 2:
        raise ValueError(f"a label mask must be (H, W) or (H, W, P), got shape {mask.shape}")
    values = np.unique(mask)
    out = np.full((height, width), values[0], mask.dtype)
    if values.size == 1:
        return out
    shrink = height * width < mask.shape[0] * mask.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    best = _cv_resize((mask == values[0]).astype(np.float32), height, width, interpolation)
    for value in values[1:]:
        share = _cv_resize((mask == value).astype(np.float32), height, width, interpolation)
        wins = share > best
        out[wins] = value
        np.maximum(best, share, out=best)
    return out


def resize_probs(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """Probabilities (h, w, C) resized to (height, width, C), bilinear (centred), any C."""
    probs = np.asarray(probs)
    if probs.shape[:2] == (height, width):
        return probs
    return _cv_resize(probs, height, width, cv2.INTER_LINEAR)


def _cv_resize(array: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    """``cv2.resize`` for any number of channels (OpenCV takes at most 4 at once), keeping a channel axis."""
    if array.ndim == 3 and array.shape[2] > 4:
        parts = [_cv_resize(array[..., s : s + 4], height, width, interpolation) for s in range(0, array.shape[2], 4)]
        return np.concatenate(parts, axis=-1)
    out = cv2.resize(array, (int(width), int(height)), interpolation=interpolation)
    if array.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing channel axis of 1
        out = out[..., None]
    return out

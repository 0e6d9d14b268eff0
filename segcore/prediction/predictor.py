"""Predict with a finished run's model on any image, at the image's own size.

A run trained with ``fit="short_side"`` (the aspect ratio kept) saw its
images scaled so that their shorter side was the training size: a new image
is scaled by the same factor (the run records its training images' median
shorter side), so objects keep the size the model learned, and the model is
slid over it in tiles of the training size overlapping by half, blended with
Gaussian weights (:func:`predict_tiled`). A run trained with
``fit="native"`` predicts every image at its own resolution the same way. A
large image is tiled, never squashed. Runs trained with ``fit="squash"`` (and
runs from before the fit was recorded) resize the image to the square
training size as they were trained. With ``train.tta`` the image is also
predicted flipped, along the axes the run's augmentation flipped (up to four
views), and the views are averaged: a view the model never saw in training
(a street scene upside down) is not averaged in. A run that also transposed
its training windows (``augment.transpose``) is still averaged over its flips
only: adding the four transposed views changed no score by more than 0.001
on ISBI, DSB, PH2 or EPFL and doubled the time (``bench/tta.py``); ``tta_transpose``
adds them. Either way the probabilities are resized
back to the image's size (bilinear, centred), so the mask lines up with the
original pixels. ``Predictor``
holds the loaded model; the dashboard keeps one per run in
``st.cache_resource``, so treat it as read-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from segcore.data import imageio
from segcore.data.resample import resize_image, resize_probs  # noqa: F401  (resize_probs is part of this module's API)
from segcore.labels import Labels
from segcore.runs import RunFolder, open_run
from segcore.workspace import Workspace


class View(NamedTuple):
    """One test-time view of an image: flipped top to bottom, left to right, then transposed (rows for columns).

    The four flips with and without the transposition are the eight symmetries of a square.
    """

    vertical: bool
    horizontal: bool
    transpose: bool = False

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The view of an (H, W, ...) array."""
        x = x[::-1] if self.vertical else x
        x = x[:, ::-1] if self.horizontal else x
        return np.swapaxes(x, 0, 1) if self.transpose else x

    def undo(self, x: np.ndarray) -> np.ndarray:
        """An (H', W', ...) array predicted on the view, back in the image's own orientation."""
        x = np.swapaxes(x, 0, 1) if self.transpose else x
        x = x[:, ::-1] if self.horizontal else x
        return x[::-1] if self.vertical else x


@dataclass
class Predictor:
    """A run's model with what is needed to use it on new images."""

    run_id: str
    model: Any
    image_size: int
    channels: int
    mode: str
    class_names: list[str]
    checkpoint: str
    fit: str = "squash"
    reference_short_side: float | None = None  # median shorter side of the training images (fit short_side)
    tta: bool = False  # test-time augmentation: average the predictions of the flipped views
    tta_vertical: bool = True  # with tta: the axes the run's training flipped along
    tta_horizontal: bool = True
    tta_transpose: bool = False  # with tta: also each flip transposed (eight views; not set from the run, see above)
    _labels: Labels | None = None

    @classmethod
    def from_run(cls, run_id: str, ws: Workspace | None = None, *, checkpoint: str = "best") -> "Predictor":
        """Load ``checkpoints/<checkpoint>.keras`` of a run (``best``, falling back to ``last``).

        Raises:
            FileNotFoundError: the run or its checkpoint does not exist.
        """
        run = open_run(run_id, ws)
        return cls.from_folder(run, checkpoint=checkpoint)

    @classmethod
    def from_folder(cls, run: RunFolder, *, checkpoint: str = "best") -> "Predictor":
        import keras

        import segcore.losses  # noqa: F401  (registers the custom objects a .keras file names)
        import segcore.metrics  # noqa: F401
        import segcore.models.layers  # noqa: F401

        path = run.model_path if checkpoint == "best" else run.checkpoints_dir / f"{checkpoint}.keras"
        if not path.is_file():
            state = run.true_status().get("state")
            raise FileNotFoundError(f"run {run.run_id} ({state}) has no model checkpoint yet: {path} is missing")
        record = run.read_record()
        model = keras.models.load_model(path, compile=False)
        shape = model.input_shape
        augment = record.config.train.augment
        return cls(
            run_id=run.run_id,
            model=model,
            image_size=int(shape[1]),
            channels=int(shape[-1]),
            mode=record.dataset.mode,
            class_names=list(record.dataset.classes),
            checkpoint=str(path),
            fit=record.fit,
            reference_short_side=record.input.reference_short_side if record.input else None,
            tta=record.config.train.tta,
            tta_vertical=bool(augment.enabled and augment.vflip),
            tta_horizontal=bool(augment.enabled and augment.hflip),
            _labels=record.dataset.labels,
        )

    @property
    def labels(self) -> Labels:
        """What the run's classes mean (class 0, void, the means, how probabilities become a mask)."""
        return self._labels or Labels(self.mode, tuple(self.class_names))

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """An image (H, W[, C]) of any depth to the model's square input: float32 (S, S, C) in [0, 255]."""
        img = self._channels(image)
        s = self.image_size
        return resize_image(img, s, s).reshape(s, s, self.channels).astype(np.float32)

    def predict_probs(self, image: np.ndarray) -> np.ndarray:
        """Probabilities float32 ``(H, W, outputs)`` at the image's own size.

        The one way segcore predicts an image: ``predict``, the pages and
        every evaluation call it.
        """
        h, w = np.asarray(image).shape[:2]
        x = self.prepare_scaled(image) if self.fit in ("short_side", "native") else self.prepare(image)
        views = self.views()
        probs = None
        for view in views:  # test-time augmentation: each view predicted, turned back, averaged
            p = predict_tiled(self.model, np.ascontiguousarray(view.apply(x))[None], self.image_size)[0]
            p = view.undo(p)
            probs = p if probs is None else probs + p
        return resize_probs(np.ascontiguousarray(probs / len(views)), h, w)

    def views(self) -> list[View]:
        """The views predicted and averaged: the image alone, or with ``tta`` each flip the run trained with,
        each also transposed with ``tta_transpose``."""
        vertical = (False, True) if self.tta and self.tta_vertical else (False,)
        horizontal = (False, True) if self.tta and self.tta_horizontal else (False,)
        transpose = (False, True) if self.tta and self.tta_transpose else (False,)
        return [View(v, h, t) for t in transpose for v in vertical for h in horizontal]

    def scaled_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of ``height`` x ``width`` is predicted at: the training scale (``native``: its own size;
        ``short_side``: at least one window)."""
        s = self.image_size
        if self.fit == "native":
            return int(height), int(width)
        ref = self.reference_short_side or min(height, width)
        scale = s / float(ref)
        return max(s, round(height * scale)), max(s, round(width * scale))

    def prepare_scaled(self, image: np.ndarray) -> np.ndarray:
        """An image to float32 ``(H', W', C)`` at the training scale, its aspect ratio kept."""
        img = self._channels(image)
        h, w = self.scaled_size(img.shape[0], img.shape[1])
        return resize_image(img, h, w).reshape(h, w, self.channels).astype(np.float32)

    def _channels(self, image: np.ndarray) -> np.ndarray:
        """Any image as uint8 (H, W, C) with the model's channels (deep images stretched as at import, alpha dropped)."""
        img, _ = imageio.to_uint8(np.asarray(image))
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3:
            raise ValueError(f"image must be (H, W) or (H, W, C), got shape {np.asarray(image).shape}")
        if img.shape[2] == 4:
            img = img[..., :3]
        if self.channels == 1 and img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
        elif self.channels == 3 and img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        return img

    def predict_mask(self, image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """The predicted mask at the image's size (index mask, or planes for multilabel)."""
        return self.labels.to_mask(self.predict_probs(image), threshold)


# Where windows overlap in prediction: half a window, as nnU-Net's sliding window.
TILE_OVERLAP = 0.5


def tile_starts(length: int, window: int, overlap: float = TILE_OVERLAP) -> list[int]:
    """Starts of ``window``-long tiles covering ``length`` with ``overlap`` (the last one ends at ``length``)."""
    if length <= window:
        return [0]
    step = max(1, int(round(window * (1.0 - overlap))))
    starts = list(range(0, length - window + 1, step))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def gaussian_weights(window: int, sigma_scale: float = 0.125) -> np.ndarray:
    """The weight of each pixel of a tile when tiles are blended: a Gaussian centred on the tile
    (sigma = window / 8), so a pixel counts most from the tile that sees it with the most context."""
    centre = (window - 1) / 2.0
    sigma = max(window * sigma_scale, 1e-3)
    axis = np.exp(-((np.arange(window) - centre) ** 2) / (2.0 * sigma**2))
    weights = np.outer(axis, axis).astype(np.float32)
    weights /= weights.max()
    return np.maximum(weights, 1e-3)[..., None]  # every pixel keeps some weight (edges of the image)


def predict_batches(model, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Probabilities float32 for ``images`` as they are, ``batch_size`` at a time.

    ``predict_on_batch``, not ``model.predict``: on TensorFlow, ``predict``
    wraps the arrays in an autotuned ``tf.data`` pipeline whose iterator can
    take seconds to delete (see ``segcore.training.pipeline.without_autotune``).
    """
    out = [np.asarray(model.predict_on_batch(images[i : i + batch_size].astype(np.float32)), np.float32)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros(tuple(images.shape[:3]) + (1,), np.float32)


def predict_tiled(model, images: np.ndarray, window: int, batch_size: int = 8) -> np.ndarray:
    """Probabilities float32 ``(N, H, W, outputs)`` for images ``(N, H, W, C)`` of any size.

    An image of exactly ``window`` x ``window`` is predicted whole. A larger
    one is covered by ``window`` x ``window`` tiles overlapping by half
    (:func:`tile_starts`) whose probabilities are blended with Gaussian
    weights (:func:`gaussian_weights`); a side shorter than ``window`` is
    padded with zeros for the model and cut back afterwards.
    """
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    if (h, w) == (window, window):
        return predict_batches(model, images, batch_size)
    if h < window or w < window:
        padded = np.zeros((n, max(h, window), max(w, window)) + images.shape[3:], images.dtype)
        padded[:, :h, :w] = images
        return predict_tiled(model, padded, window, batch_size)[:, :h, :w]
    weight = gaussian_weights(window)
    spots = [(i, y, x) for i in range(n) for y in tile_starts(h, window) for x in tile_starts(w, window)]
    total = None
    count = np.zeros((n, h, w, 1), np.float32)
    for start in range(0, len(spots), batch_size):
        part = spots[start : start + batch_size]
        batch = np.stack([images[i, y : y + window, x : x + window] for i, y, x in part]).astype(np.float32)
        probs = np.asarray(model.predict_on_batch(batch), np.float32)
        if total is None:
            total = np.zeros((n, h, w, probs.shape[-1]), np.float32)
        for (i, y, x), p in zip(part, probs):
            total[i, y : y + window, x : x + window] += p * weight
            count[i, y : y + window, x : x + window] += weight
    return total / np.maximum(count, 1e-12)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as a model sees it: uint8 grey (H, W) or RGB (H, W, 3).

    The same conversion as at import (16-bit stretched, alpha dropped), so a
    prediction sees what training saw.

    Raises:
        FileNotFoundError / ValueError: naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    return imageio.read_image(path).array

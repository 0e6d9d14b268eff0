"""Predict with a finished run's model on any image, at the image's own size.

The image is resized to the run's training size, the model predicts class
probabilities, and these are resized back to the image's size (bilinear), so
the mask lines up with the original pixels. ``Predictor`` holds the loaded
model; the dashboard keeps one per run in ``st.cache_resource``, so treat it
as read-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segcore.data import imageio
from segcore.runs import RunFolder, open_run
from segcore.workspace import Workspace


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
        meta = run.read_meta()
        dataset = meta.get("dataset") or {}
        model = keras.models.load_model(path, compile=False)
        shape = model.input_shape
        return cls(
            run_id=run.run_id,
            model=model,
            image_size=int(shape[1]),
            channels=int(shape[-1]),
            mode=dataset.get("mode", "multiclass"),
            class_names=list(dataset.get("classes", [])),
            checkpoint=str(path),
        )

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """An image (H, W[, C]) of any depth to the model's input: float32 (S, S, C) in [0, 255]."""
        img, _ = imageio.to_uint8(np.asarray(image))  # as at import: deep images stretched
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3:
            raise ValueError(f"image must be (H, W) or (H, W, C), got shape {np.asarray(image).shape}")
        if img.shape[2] == 4:  # RGBA: drop alpha
            img = img[..., :3]
        if self.channels == 1 and img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
        elif self.channels == 3 and img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        s = self.image_size
        shrink = img.shape[0] > s or img.shape[1] > s
        resized = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return resized.reshape(s, s, self.channels).astype(np.float32)

    def predict_probs(self, image: np.ndarray) -> np.ndarray:
        """Probabilities float32 ``(H, W, outputs)`` at the image's own size."""
        h, w = np.asarray(image).shape[:2]
        x = self.prepare(image)[None]
        probs = np.asarray(self.model.predict_on_batch(x), dtype=np.float32)[0]
        return resize_probs(probs, h, w)

    def predict_mask(self, image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """The predicted mask at the image's size (index mask, or planes for multilabel)."""
        return probs_to_mask(self.predict_probs(image), self.mode, threshold)


def resize_probs(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize probabilities ``(S, S, C)`` to ``(height, width, C)`` (bilinear)."""
    if probs.shape[:2] == (height, width):
        return probs
    channels = probs.shape[2]
    parts = []
    for start in range(0, channels, 4):  # OpenCV resizes at most 4 channels at once
        part = cv2.resize(probs[..., start : start + 4], (width, height), interpolation=cv2.INTER_LINEAR)
        parts.append(part.reshape(height, width, -1))
    return np.concatenate(parts, axis=-1)


def probs_to_mask(probs: np.ndarray, mode: str, threshold: float = 0.5) -> np.ndarray:
    """Probabilities to a mask.

    Args:
        probs: ``(H, W, C)``.
        mode: ``binary`` (class 1 where p >= threshold), ``multiclass``
            (argmax), ``multilabel`` (a 0/1 plane per class, p >= threshold).
        threshold: for sigmoid heads.

    Returns:
        uint8 ``(H, W)`` index mask, or ``(H, W, K-1)`` planes for multilabel.
    """
    if mode == "multiclass":
        return np.argmax(probs, axis=-1).astype(np.uint8)
    if mode == "binary":
        return (probs[..., 0] >= threshold).astype(np.uint8)
    if mode == "multilabel":
        return (probs >= threshold).astype(np.uint8)
    raise ValueError(f"unknown mode {mode!r}; expected binary, multiclass or multilabel")


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
        for k in range(mask.shape[2]):
            target = path.with_name(f"{path.stem}_{k + 1}.png")
            imageio.write_png(target, np.ascontiguousarray(mask[..., k], dtype=np.uint8), mask=True)
            written.append(target)
        return written
    imageio.write_png(path, np.ascontiguousarray(mask, dtype=np.uint8), mask=True)
    return [path]


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

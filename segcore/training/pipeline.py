"""Training data: arrays in memory, targets in the shared convention, batches.

Targets follow the convention every loss and metric in segcore expects:
float32 ``(B, S, S, num_outputs)`` (binary: the foreground plane; multiclass:
one-hot over K; multilabel: K-1 planes) and void pixels set to -1 in every
channel.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from segcore.config import AugmentConfig
from segcore.data.arrays import window_starts
from segcore.data.augment import VOID, augment_pair, sample_rng


def make_targets(masks: np.ndarray, mode: str, num_classes: int, ignore_index: int = VOID) -> np.ndarray:
    """Masks to float32 targets ``(N, S, S, num_outputs)`` with void = -1 in every channel.

    Args:
        masks: uint8 ``(N, S, S)`` index masks, or ``(N, S, S, K-1)`` planes for multilabel.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: K, background included.
        ignore_index: the void value in masks.

    Returns:
        float32 targets.
    """
    masks = np.asarray(masks)
    if mode == "multilabel":
        if masks.ndim != 4 or masks.shape[-1] != num_classes - 1:
            raise ValueError(
                f"multilabel masks must be (N, S, S, {num_classes - 1}) planes for {num_classes} classes, "
                f"got shape {masks.shape}"
            )
        void = np.any(masks == ignore_index, axis=-1, keepdims=True)
        target = (masks > 0).astype(np.float32)
        return np.where(void, np.float32(-1.0), target)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3:
        raise ValueError(f"{mode} masks must be (N, S, S) index masks, got shape {masks.shape}")
    if masks.dtype != np.uint8:
        masks = np.clip(masks, 0, 255).astype(np.uint8)
    return _target_table(mode, num_classes, ignore_index)[masks]


def _target_table(mode: str, num_classes: int, ignore_index: int) -> np.ndarray:
    """float32 ``(256, outputs)``: row ``v`` is the target of mask value ``v``.

    One gather through this table builds a whole batch of targets, about twice
    as fast as one-hot encoding and masking void in separate passes.
    """
    values = np.arange(256)
    if mode == "binary":
        table = (values > 0).astype(np.float32)[:, None]
    elif mode == "multiclass":
        table = np.eye(num_classes, dtype=np.float32)[np.minimum(values, num_classes - 1)]
    else:
        raise ValueError(f"unknown mode {mode!r}; expected binary, multiclass or multilabel")
    if 0 <= ignore_index < 256:
        table[ignore_index] = -1.0
    return table


def check_masks(masks: np.ndarray, mode: str, num_classes: int, ignore_index: int = VOID, where: str = "") -> None:
    """Refuse masks whose values the head cannot represent.

    Raises:
        ValueError: naming the values found and the classes expected.
    """
    values = np.unique(masks)
    if mode == "multilabel":
        bad = [int(v) for v in values if v not in (0, 1, ignore_index)]
        if bad:
            raise ValueError(
                f"multilabel masks{where} hold values {bad}; planes must be 0/1 (or {ignore_index} for void)"
            )
        return
    bad = [int(v) for v in values if v >= num_classes and v != ignore_index]
    if bad:
        raise ValueError(
            f"{mode} masks{where} hold class values {bad}, but the dataset has {num_classes} classes "
            f"(0..{num_classes - 1}, {ignore_index} = void); the head and loss cannot learn them"
        )


def class_frequencies(masks: np.ndarray, mode: str, num_classes: int, ignore_index: int = VOID) -> np.ndarray:
    """Pixel fraction of each class (K values; multilabel: background = no label set)."""
    if mode == "multilabel":
        valid = ~np.any(masks == ignore_index, axis=-1)
        n = max(int(valid.sum()), 1)
        fg = [(masks[..., k][valid] > 0).sum() / n for k in range(num_classes - 1)]
        bg = (~np.any(masks > 0, axis=-1) & valid).sum() / n
        return np.asarray([bg, *fg], np.float64)
    valid = masks != ignore_index
    counts = np.bincount(np.minimum(masks[valid], num_classes - 1).ravel(), minlength=num_classes)
    return counts / max(counts.sum(), 1)


def _pydataset_base():
    import keras

    return keras.utils.PyDataset


def make_batches(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    batch_size: int,
    mode: str,
    num_classes: int,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    shuffle: bool = True,
    epoch: int = 0,
    workers: int | None = None,
    training: bool | None = None,
    crop: int | None = None,
    sizes: np.ndarray | None = None,
    rare_patches: bool = True,
    repeats: int = 1,
):
    """A ``keras.utils.PyDataset`` of (float32 images in [0, 255], targets) batches.

    The order and the augmentation of epoch ``e`` depend only on ``(seed, e)``,
    so a resumed run sees the same batches it would have seen, whatever the
    number of workers.

    Every batch has the same shape, so a compiled step is traced once:

    - training batches (``training=True``, the default when ``shuffle``) are
      always full: the last one is completed with the first samples of the
      epoch's order, so every sample is seen at least once per epoch;
    - evaluation batches pad the last one with blank images whose targets are
      void (-1) everywhere; every segcore loss and metric leaves void pixels
      out, so the figures are exactly those of the unpadded data.

    Args:
        images: uint8 ``(N, S, S, C)``.
        masks: uint8 masks, index or planes.
        batch_size: samples per batch (at most N).
        mode, num_classes: for the targets.
        augment: joint augmentation settings, or None for none.
        seed: the run seed.
        shuffle: reshuffle every epoch.
        epoch: the epoch the first pass counts as (the resume point).
        workers: threads preparing batches ahead of the model (OpenCV and
            numpy release the GIL); default: the CPU count, at most 8.
        training: full batches by repetition (True) or by void padding (False).
        crop: take a random ``crop`` x ``crop`` window of each sample (drawn
            again every epoch, from ``(seed, epoch, sample)``): for images kept
            at their aspect ratio on a larger canvas. None: the whole array.
        sizes: ``(N, 2)`` height and width of each sample's own region at the
            top left of the canvas; crops are drawn inside it.
        rare_patches: centre a third of the crops on a pixel of a class that is
            not the sample's most common one (:func:`crop_origin`).
        repeats: an epoch draws this many crops of each sample (each its own
            random window and augmentation), so few large images still make
            an epoch of useful length.

    Returns:
        The dataset; its ``epoch`` attribute advances at every epoch end.
    """
    base = _pydataset_base()
    samples = len(images)
    if samples == 0:
        raise ValueError("make_batches needs at least one sample")
    count = samples * max(1, int(repeats))  # items an epoch draws; item k is sample k % samples
    size = max(1, min(int(batch_size), count))
    training = shuffle if training is None else bool(training)
    workers = default_workers() if workers is None else max(1, int(workers))
    target_table = None if mode == "multilabel" else _target_table(mode, num_classes, VOID)
    if crop is not None and images.shape[1:3] == (crop, crop):
        crop = None  # the whole array is one window
    item_shape = images.shape[1:] if crop is None else (crop, crop) + images.shape[3:]
    mask_shape = masks.shape[1:] if crop is None else (crop, crop) + masks.shape[3:]
    regions = np.asarray(sizes if sizes is not None else [images.shape[1:3]] * samples, np.int64)

    class _Batches(base):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max(4, 2 * workers))
            self.epoch = int(epoch)
            self._orders: dict[int, np.ndarray] = {}

        def __len__(self) -> int:
            return math.ceil(count / size)

        def _order(self, key: int) -> np.ndarray:
            order = self._orders.get(key)
            if order is None:
                if shuffle:
                    order = np.random.default_rng([int(seed), key, 7]).permutation(count)
                else:
                    order = np.arange(count)
                self._orders = {key: order}  # keep one epoch's order; threads may read it concurrently
            return order

        def __getitem__(self, index: int):
            epoch_now = int(self.epoch)  # read once: the epoch may advance while worker threads still run
            order = self._order(epoch_now)
            positions = np.arange(index * size, (index + 1) * size)
            real = positions < count
            if training:
                idx = order[positions % count]
            else:
                idx = order[positions[real]]
            x = np.zeros((size,) + item_shape, np.float32)
            m = np.full((size,) + mask_shape, VOID, np.uint8)
            for n, j in enumerate(idx):
                s = int(j) % samples
                img, msk = images[s], masks[s]
                if crop is not None:
                    y0, x0 = crop_origin(regions[s], crop, seed, epoch_now, int(j), msk if rare_patches else None)
                    img, msk = img[y0 : y0 + crop, x0 : x0 + crop], msk[y0 : y0 + crop, x0 : x0 + crop]
                if augment is not None and augment.enabled:
                    img, msk = augment_pair(img, msk, augment, sample_rng(seed, epoch_now, int(j)))
                x[n] = img.reshape(x.shape[1:])
                m[n] = msk
            if target_table is not None:
                y = target_table[m if m.ndim == 3 else m[..., 0]]
            else:
                y = make_targets(m, mode, num_classes)
            return x, y

        def on_epoch_end(self) -> None:
            self.epoch += 1

    return _Batches()


def feed(batches, backend: str | None = None):
    """What ``model.fit`` is given for ``batches`` (from ``make_batches``) on the current Keras backend.

    On TensorFlow, a ``tf.data`` pipeline that maps batch numbers through
    ``batches[i]`` (``tf.numpy_function``, ``workers`` calls in parallel, in
    order, one batch prefetched), with the batches' full static shapes. Keras
    would otherwise wrap the ``PyDataset`` in ``Dataset.from_generator``, and a
    training epoch fed from a generator dataset cost 1.5x to 1.9x the CPU time
    of the same epoch fed from a mapped one, which costs what in-memory arrays
    do (``bench/fit_feed.py``). Keras calls no ``on_epoch_end`` on a
    ``tf.data`` dataset: the caller sets ``batches.epoch`` at the start of
    every epoch (the trainer's callback does).

    tf.data's autotuning is off (:func:`without_autotune`): the pipeline's
    parallelism and prefetch are fixed, and with autotuning on, every
    iterator Keras dropped at an epoch's end (training and validation each
    make one an epoch) waited for the autotuner's thread to wake from its
    sleep, which grows to seconds: whole seconds an epoch with both cores idle.

    On JAX and PyTorch the ``PyDataset`` itself, which Keras reads directly.
    """
    import keras

    if (backend or keras.backend.backend()) != "tensorflow":
        return batches
    import tensorflow as tf

    x0, y0 = batches[0]
    shapes = (tuple(x0.shape), tuple(y0.shape))

    def load(index):
        x, y = batches[int(index)]
        return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)

    def batch(index):
        x, y = tf.numpy_function(load, [index], (tf.float32, tf.float32), stateful=True)
        x.set_shape(shapes[0])
        y.set_shape(shapes[1])
        return x, y

    data = tf.data.Dataset.range(len(batches)).map(batch, num_parallel_calls=batches.workers, deterministic=True)
    return without_autotune(data.prefetch(1))


def without_autotune(data):
    """A ``tf.data`` dataset with the autotuner off (nothing in it is ``AUTOTUNE``).

    With autotuning on, ``tf.data`` runs a thread that re-tunes the pipeline
    at intervals that grow while the iterator lives, and deleting an iterator waits
    for that thread to wake: measured on 2 cores, 4.2 s for an iterator of
    20 batches, at one of five deletions (``bench/epoch_speed.py
    --deletions 5``). Keras makes a new iterator for every epoch's training and
    validation.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return data.with_options(options)


# The share of training patches centred on a pixel of a class that is not the sample's most common one.
RARE_PATCH_SHARE = 1.0 / 3.0


def crop_origin(region, crop: int, seed: int, epoch: int, index: int, mask: np.ndarray | None = None,
                rare_share: float = RARE_PATCH_SHARE) -> tuple[int, int]:
    """Top-left corner of a random ``crop`` window inside a sample's region ``(height, width)``.

    With ``mask``, a share ``rare_share`` of the draws (decided by the same
    seeded generator) centres the window on a random pixel of a class that is
    present in the region but is not its most common class (a class chosen
    uniformly first, so a rare class is found as often as a common one), as
    nnU-Net oversamples foreground; the rest are uniform.
    """
    h, w = int(region[0]), int(region[1])
    rng = np.random.default_rng([int(seed), int(epoch), int(index), 1])
    y0, x0 = int(rng.integers(0, max(h - crop, 0) + 1)), int(rng.integers(0, max(w - crop, 0) + 1))
    focus, pick = rng.random(), rng.random(2)
    if mask is None or focus >= rare_share:
        return y0, x0
    labels = mask[:h, :w]
    if labels.ndim == 3:  # multilabel planes: any class set
        labels = np.where((labels == VOID).any(axis=-1), VOID, (labels == 1).any(axis=-1).astype(np.uint8))
    counts = np.bincount(labels.reshape(-1), minlength=256)
    counts[VOID] = 0
    present = np.flatnonzero(counts)
    if present.size < 2:
        return y0, x0
    rare = present[present != counts.argmax()]
    chosen = rare[min(int(pick[0] * rare.size), rare.size - 1)]
    ys, xs = np.nonzero(labels == chosen)
    k = min(int(pick[1] * ys.size), ys.size - 1)
    cy, cx = int(ys[k]), int(xs[k])
    return (min(max(cy - crop // 2, 0), max(h - crop, 0)), min(max(cx - crop // 2, 0), max(w - crop, 0)))


def windows(images: np.ndarray, masks: np.ndarray, sizes: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every sample cut into ``window`` x ``window`` pieces covering its own region (for validation batches)."""
    xs, ms = [], []
    for img, msk, (h, w) in zip(images, masks, np.asarray(sizes, np.int64)):
        for y in window_starts(max(int(h), window), window):
            for x in window_starts(max(int(w), window), window):
                xs.append(img[y : y + window, x : x + window])
                ms.append(msk[y : y + window, x : x + window])
    return np.stack(xs), np.stack(ms)


def default_workers() -> int:
    """Threads that prepare batches: one per CPU core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))

"""Input pipeline throughput: training batches per second, by worker threads.

Times ``segcore.training.pipeline.make_batches`` as Keras consumes it (the
``PyDataset`` adapter with its worker threads), on synthetic 256x256 RGB
images with 4-class masks, with and without joint augmentation. The baseline,
timed in the same run, is the pipeline as it was written first: one thread,
colour jitter as float arithmetic on every pixel, and targets one-hot encoded
then masked for void in separate passes.

Usage:
    python bench/input_pipeline.py [--images 256] [--image-size 256] [--batch-size 32] [--workers 1,2,4]

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

NUM_CLASSES = 4


def synthetic(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for k in range(1, NUM_CLASSES):
            cx, cy = rng.integers(0, size, 2)
            cv2.circle(masks[i], (int(cx), int(cy)), int(rng.integers(size // 10, size // 4)), k, -1)
    return images, masks


def baseline_batch(images, masks, idx, augment, seed, epoch):
    """One batch as the first pipeline built it (kept here as the reference)."""
    from segcore.data.augment import draw_params, sample_rng

    xs, ms = [], []
    for j in idx:
        img, msk = images[j], masks[j]
        if augment is not None and augment.enabled:
            params = draw_params(augment, img.shape[:2], sample_rng(seed, epoch, int(j)))
            img, msk = _baseline_apply(img, msk, params)
        xs.append(img)
        ms.append(msk)
    x = np.stack(xs).astype(np.float32)
    m = np.stack(ms)
    void = (m == 255)[..., None]
    target = np.eye(NUM_CLASSES, dtype=np.float32)[np.where(m == 255, 0, np.minimum(m, NUM_CLASSES - 1))]
    return x, np.where(void, np.float32(-1.0), target)


def _baseline_apply(image, mask, params):
    from dataclasses import replace

    from segcore.data.augment import apply_params

    image, mask = apply_params(image, mask, replace(params, brightness=0.0, contrast=1.0))
    img = image.astype(np.float32)
    mean = img.mean(axis=(0, 1), keepdims=True)
    img = (img - mean) * params.contrast + mean + params.brightness * 255.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def time_baseline(images, masks, batch_size, augment, epochs) -> float:
    n = len(images)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = np.random.default_rng([0, epoch, 7]).permutation(n)
        for b in range(0, n, batch_size):
            baseline_batch(images, masks, order[b : b + batch_size], augment, 0, epoch)
    return epochs * n / (time.perf_counter() - start)


def time_pipeline(images, masks, batch_size, augment, workers, epochs) -> float:
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from segcore.training.pipeline import make_batches

    ds = make_batches(images, masks, batch_size=batch_size, mode="multiclass", num_classes=NUM_CLASSES,
                      augment=augment, workers=workers)
    adapter = PyDatasetAdapter(ds, shuffle=False)
    count = 0
    start = time.perf_counter()
    for _ in range(epochs):
        adapter.on_epoch_begin()
        for x, _y in adapter.get_numpy_iterator():
            count += len(x)
        adapter.on_epoch_end()
    return count / (time.perf_counter() - start)


def main() -> None:
    from segcore.config import AugmentConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    images, masks = synthetic(args.images, args.image_size)
    workers = [int(w) for w in args.workers.split(",")]
    results = {"cpu_count": os.cpu_count(), "image_size": args.image_size, "batch_size": args.batch_size,
               "load_average": os.getloadavg()[0]}
    for label, augment in (("augment", AugmentConfig()), ("no_augment", None)):
        base = time_baseline(images, masks, args.batch_size, augment, args.epochs)
        row = {"baseline_1_thread": round(base, 1)}
        for w in workers:
            ips = time_pipeline(images, masks, args.batch_size, augment, w, args.epochs)
            row[f"workers_{w}"] = round(ips, 1)
        row["ratio_1_thread"] = round(row[f"workers_{workers[0]}"] / base, 2)
        row["ratio_best"] = round(max(row[f"workers_{w}"] for w in workers) / base, 2)
        results[label] = row
        print(f"{label}: " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

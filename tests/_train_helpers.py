"""A tiny synthetic dataset in the canonical layout, for the training tests.

Three classes on a noisy grey-blue background: 1 = bright disc, 2 = dark
square, placed at random (seeded). Learnable by a depth-3 U-Net in seconds.
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np

from segcore.workspace import Workspace


def make_shapes_dataset(ws: Workspace, name: str = "shapes", n: int = 24, size: int = 32, seed: int = 0,
                        mode: str = "multiclass") -> str:
    rng = np.random.default_rng(seed)
    root = ws.dataset_dir(name)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        img = np.full((size, size, 3), (90, 110, 140), np.float32) + rng.normal(0, 8, (size, size, 3))
        mask = np.zeros((size, size), np.uint8)
        cx, cy = rng.integers(size // 4, 3 * size // 4, 2)
        r = int(rng.integers(size // 8, size // 5))
        cv2.circle(mask, (int(cx), int(cy)), r, 1, -1)
        if mode == "multiclass":
            x0, y0 = rng.integers(0, size - size // 4, 2)
            s = size // 4
            sq = np.zeros_like(mask)
            sq[y0 : y0 + s, x0 : x0 + s] = 1
            mask[(sq == 1) & (mask == 0)] = 2
        img[mask == 1] = (230, 220, 90)
        img[mask == 2] = (30, 40, 60)
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        sid = f"{i + 1:03d}"
        cv2.imwrite(str(root / "images" / f"{sid}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{sid}.png"), mask)
        samples.append({"id": sid, "height": size, "width": size, "subset": "train" if i < n - 4 else "test"})
    classes = [{"name": "background", "color": [0, 0, 0]}, {"name": "disc", "color": [255, 255, 0]}]
    if mode == "multiclass":
        classes.append({"name": "square", "color": [0, 0, 255]})
    info = {
        "name": name,
        "mode": mode,
        "classes": classes,
        "channels": 3,
        "ignore_index": 255,
        "content_hash": f"shapes-{seed}-{n}-{size}-{mode}",
        "samples": samples,
    }
    (root / "dataset.json").write_text(json.dumps(info))
    return name


def wait_until(predicate, timeout: float = 240.0, poll: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (returned), or raise TimeoutError after ``timeout`` s."""
    start = time.time()
    while time.time() - start < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError("condition not reached")

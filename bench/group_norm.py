"""Group normalisation's cost: Keras's ``GroupNormalization`` against segcore's ``GroupNorm``.

Two measures, each with the same inputs and weights for both layers:

- ``layer``: one layer's forward and backward pass (a ``tf.function`` of
  the layer and its gradients) on the feature maps a 16-filter U-Net makes
  from a batch of 8 patches of 256 px: 256x256x16, 64x64x64 and 16x16x256
  (8 groups), mean milliseconds over ``--repeats`` calls after a warm-up;
- ``step``: one training step (``train_on_batch``) of the plan's U-Net
  (depth 4, 16 filters, 11 softmax classes, Dice + cross-entropy, Adam) on
  8 patches of 256x256x3, with ``norm="group"`` built from each layer, and
  with ``norm="none"`` (the floor: no normalisation at all), mean seconds a
  step over ``--repeats`` steps after a warm-up.

The largest difference between the two layers' outputs is printed too: they
compute the same function. Every figure is wall time on the machine it runs
on (TensorFlow's CPU threads: all cores), one process, nothing else running.

Usage:
    python bench/group_norm.py [--repeats 10]

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SHAPES = ((256, 16), (64, 64), (16, 256))


def _layer_ms(layer_cls, shape, repeats: int) -> tuple[float, object]:
    import numpy as np
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(0.5, 2.0, shape).astype("float32"))
    layer = layer_cls(groups=8)
    layer.build(x.shape)
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(1, 0.2, shape[-1]).astype("float32"), rng.normal(0, 0.2, shape[-1]).astype("float32")])

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, *layer.trainable_weights])

    step(x)
    start = time.perf_counter()
    for _ in range(repeats):
        step(x)
    return (time.perf_counter() - start) / repeats * 1000, layer(x).numpy()


def _step_s(norm: str, layer_cls, repeats: int) -> float:
    import keras
    import numpy as np

    from segcore.config import ModelConfig
    from segcore.losses import DiceCrossentropy
    from segcore.models import builder

    saved = builder.GroupNorm
    builder.GroupNorm = layer_cls
    try:
        model = builder.build_model(ModelConfig(norm=norm, filters=16, depth=4), image_size=256, channels=3,
                                    mode="multiclass", num_classes=11)
    finally:
        builder.GroupNorm = saved
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceCrossentropy(mode="multiclass"))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 256, 256, 3)).astype("float32")
    y = np.eye(11, dtype="float32")[rng.integers(0, 11, (8, 256, 256))]
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(repeats):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import keras
    import numpy as np

    from segcore.models.layers import GroupNorm

    layers = {"keras": keras.layers.GroupNormalization, "segcore": GroupNorm}
    out: dict = {"cores": os.cpu_count(), "backend": keras.backend.backend(), "layer_ms": {}, "step_s": {}}
    for size, channels in SHAPES:
        shape = (8, size, size, channels)
        timed = {name: _layer_ms(cls, shape, args.repeats) for name, cls in layers.items()}
        key = f"{size}x{size}x{channels}"
        out["layer_ms"][key] = {name: round(ms, 1) for name, (ms, _) in timed.items()}
        out["layer_ms"][key]["max_output_difference"] = float(np.abs(timed["keras"][1] - timed["segcore"][1]).max())
        print(f"layer {key}: {out['layer_ms'][key]}", file=sys.stderr, flush=True)
    for label, norm, cls in (("group_keras", "group", keras.layers.GroupNormalization),
                             ("group_segcore", "group", GroupNorm), ("none", "none", GroupNorm)):
        out["step_s"][label] = round(_step_s(norm, cls, args.repeats), 3)
        print(f"step {label}: {out['step_s'][label]} s", file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

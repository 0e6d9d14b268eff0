"""How ``model.fit`` is fed on TensorFlow: CPU time of a training step.

Trains the default-shaped plain U-Net (depth 4, group norm) on synthetic
grey images, batch 8, with the same ``make_batches`` batches fed three ways,
in one process:

- ``pydataset``: the ``PyDataset`` itself (the baseline, as the trainer fed it
  before): Keras wraps it in ``tf.data.Dataset.from_generator``;
- ``feed``: ``segcore.training.pipeline.feed`` (batch numbers mapped through
  ``tf.numpy_function``), what the trainer gives ``fit`` now;
- ``arrays``: the same images as in-memory arrays (no augmentation), the
  floor: what a step costs with no input pipeline at all.

Each way trains a fresh model for ``--epochs`` epochs after one warm-up
epoch; CPU time is user + system of this process (all threads), per step.

Usage:
    python bench/fit_feed.py [--images 22] [--image-size 128] [--filters 16] [--epochs 4]

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=22, help="training images (ISBI's tutorial split has 22)")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=4, help="timed epochs, after one warm-up epoch")
    args = p.parse_args(argv)

    import keras
    import numpy as np

    from segcore import losses, metrics
    from segcore.config import AugmentConfig, ModelConfig
    from segcore.models import build_model
    from segcore.training.pipeline import feed, make_batches, make_targets

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("this benchmark is about the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    rng = np.random.default_rng(0)
    n, size = args.images, args.image_size
    images = rng.integers(0, 256, (n, size, size, 1)).astype(np.uint8)
    masks = (rng.random((n, size, size)) > 0.5).astype(np.uint8)
    common = dict(batch_size=args.batch_size, mode="binary", num_classes=2, seed=0)

    def timed(name, data, extra_callbacks=(), **fit_kw):
        keras.utils.set_random_seed(0)
        model = build_model(ModelConfig(filters=args.filters), image_size=size, channels=1, mode="binary",
                            num_classes=2)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.get("auto", mode="binary"),
                      metrics=metrics.segmentation_metrics("binary", 2))
        steps = {"n": 0}

        class Count(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                steps["n"] += 1

        callbacks = list(extra_callbacks)
        model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=callbacks, **fit_kw)  # warm-up: tracing
        cpu0, t0 = _cpu(), time.perf_counter()
        model.fit(data, initial_epoch=1, epochs=1 + args.epochs, verbose=0, shuffle=False, callbacks=[*callbacks, Count()],
                  **fit_kw)
        cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
        row = {"steps": steps["n"], "cpu_s_per_step": round(cpu / steps["n"], 3),
               "wall_s_per_step": round(wall / steps["n"], 3)}
        print(f"{name}: {row}", file=sys.stderr, flush=True)
        return row

    out = {"images": n, "image_size": size, "filters": args.filters, "batch_size": args.batch_size,
           "epochs": args.epochs, "cores": os.cpu_count()}
    out["pydataset"] = timed("pydataset", make_batches(images, masks, augment=AugmentConfig(), **common))
    batches = make_batches(images, masks, augment=AugmentConfig(), **common)

    class Epochs(keras.callbacks.Callback):  # what the trainer's callback does for a fed dataset
        def on_epoch_begin(self, epoch, logs=None):
            batches.epoch = epoch

    out["feed"] = timed("feed", feed(batches), extra_callbacks=[Epochs()])
    order = np.arange(len(batches) * args.batch_size) % n
    out["arrays"] = timed("arrays", images[order].astype(np.float32),
                          y=make_targets(masks[order], "binary", 2), batch_size=args.batch_size)
    out["pydataset_over_feed_cpu"] = round(out["pydataset"]["cpu_s_per_step"] / out["feed"]["cpu_s_per_step"], 2)
    out["feed_over_arrays_cpu"] = round(out["feed"]["cpu_s_per_step"] / out["arrays"]["cpu_s_per_step"], 2)
    try:
        out["load_average_end"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How ``model.fit`` is fed on TensorFlow: CPU time of a training epoch.

Trains the default plain U-Net (depth 4, group norm, 16 filters) on 22
synthetic grey 128x128 images (the size of ISBI's tutorial split), batch 8,
3 steps an epoch, with the same ``make_batches`` batches fed three ways:

- ``pydataset``: the ``PyDataset`` itself (the baseline: the trainer fed it
  this way before), which Keras wraps in ``tf.data.Dataset.from_generator``;
- ``feed``: ``segcore.training.pipeline.feed`` (batch numbers mapped through
  ``tf.numpy_function``), what the trainer gives ``fit`` now;
- ``arrays``: the same images as in-memory arrays without augmentation, the
  floor: an epoch with no input pipeline at all.

Each way runs in a fresh process (a process that has fed a generator dataset
stays slower afterwards, so one process cannot time all three fairly), trains
``--epochs`` epochs in one ``fit`` call and reports the mean CPU time (user +
system, all threads) of the epochs after the first (which traces and
compiles).

Usage:
    python bench/fit_feed.py [--filters 16] [--epochs 7]

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
WAYS = ("pydataset", "feed", "arrays")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one_way(way: str, filters: int, epochs: int, images: int = 22, size: int = 128, batch_size: int = 8) -> dict:
    """Train in this process, fed one way; per-epoch CPU and wall seconds after the first epoch."""
    import keras
    import numpy as np

    from segcore import losses, metrics
    from segcore.config import AugmentConfig, ModelConfig
    from segcore.models import build_model
    from segcore.training.pipeline import feed, make_batches, make_targets

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("this benchmark is about the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, size, size, 1)).astype(np.uint8)
    m = (rng.random((images, size, size)) > 0.5).astype(np.uint8)
    batches = make_batches(x, m, augment=AugmentConfig(), batch_size=batch_size, mode="binary", num_classes=2, seed=0)
    cpu, wall = [], []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batches.epoch = epoch  # what the trainer's callback does
            self.c, self.t = _cpu(), time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            cpu.append(_cpu() - self.c)
            wall.append(time.perf_counter() - self.t)

    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(filters=filters), image_size=size, channels=1, mode="binary", num_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.get("auto", mode="binary"),
                  metrics=metrics.segmentation_metrics("binary", 2))
    kw: dict = {}
    if way == "pydataset":
        data = batches
    elif way == "feed":
        data = feed(batches)
    else:
        order = np.arange(len(batches) * batch_size) % images
        data = x[order].astype(np.float32)
        kw = dict(y=make_targets(m[order], "binary", 2), batch_size=batch_size)
    model.fit(data, epochs=epochs, verbose=0, shuffle=False, callbacks=[Epochs()], **kw)
    return {"steps_per_epoch": len(batches), "cpu_s_per_epoch": round(float(np.mean(cpu[1:])), 3),
            "wall_s_per_epoch": round(float(np.mean(wall[1:])), 3), "first_epoch_cpu_s": round(cpu[0], 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--epochs", type=int, default=7, help="epochs per way; the first is left out of the mean")
    p.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # one way, in this process
    args = p.parse_args(argv)
    if args.way:
        print(json.dumps(one_way(args.way, args.filters, args.epochs)))
        return 0
    out: dict = {"filters": args.filters, "epochs": args.epochs, "cores": os.cpu_count()}
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=str(ROOT))
    for way in WAYS:
        proc = subprocess.run([sys.executable, __file__, "--way", way, "--filters", str(args.filters),
                               "--epochs", str(args.epochs)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"{way} failed ({proc.returncode})")
        out[way] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{way}: {out[way]}", file=sys.stderr, flush=True)
    out["pydataset_over_feed_cpu"] = round(out["pydataset"]["cpu_s_per_epoch"] / out["feed"]["cpu_s_per_epoch"], 2)
    out["feed_over_arrays_cpu"] = round(out["feed"]["cpu_s_per_epoch"] / out["arrays"]["cpu_s_per_epoch"], 2)
    try:
        out["load_average_end"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

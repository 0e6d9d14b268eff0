"""Wall time against CPU time of identical training epochs: does the machine keep a steady speed?

Trains the plan's U-Net (depth 4, 16 filters, group norm, 11 classes, Dice +
cross-entropy, Adam) on 81 random 256 px patches (27 synthetic 360x480
images, 3 windows each, drawn by ``make_batches`` once) for ``--epochs``
epochs of 11 steps of 8, from in-memory arrays (``--feed arrays``: no input
pipeline at all) or through the trainer's pipeline (``--feed pipeline``:
``make_batches`` with augmentation, fed by ``pipeline.feed``; ``--autotune
on`` puts tf.data's autotuner back, as it was before ``feed`` turned it
off), and prints
each epoch's wall seconds and the process's CPU seconds. Every epoch does
the same work, so on a steady machine every epoch after the first (which
traces the step) takes the same time; a time budget's epoch count depends
on it.

Usage:
    python bench/epoch_speed.py [--epochs 8] [--feed arrays|pipeline] [--autotune off|on]
    python bench/epoch_speed.py --deletions 5

``--deletions N`` trains nothing: it times the deletion of N iterators over
a 20-batch ``tf.data`` pipeline (each batch 0.3 s of numpy work), with the
autotuner on and off.

``--feed arrays`` is Keras's own pipeline for in-memory arrays, autotuned.

The last line is one JSON object with every epoch's figures.
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


def iterator_deletions(count: int) -> dict:
    """Seconds to delete each of ``count`` exhausted iterators, autotuner on and off."""
    import numpy as np
    import tensorflow as tf

    from segcore.training.pipeline import without_autotune

    def work(index):
        start, a = time.time(), np.full((200, 200), 0.5)
        while time.time() - start < 0.3:
            a = np.tanh(a @ a)
        return np.float32(index)

    data = tf.data.Dataset.range(20).map(lambda i: tf.numpy_function(work, [i], tf.float32), num_parallel_calls=1,
                                         deterministic=True).prefetch(1)
    out = {}
    for name, pipe in (("on", data), ("off", without_autotune(data))):
        seconds = []
        for _ in range(count):
            iterator = iter(pipe)
            for _ in iterator:
                pass
            start = time.time()
            del iterator
            seconds.append(round(time.time() - start, 2))
        out[name] = seconds
        print(f"autotuner {name}: deleting each iterator took {seconds} s", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--feed", choices=("arrays", "pipeline"), default="arrays")
    parser.add_argument("--autotune", choices=("off", "on"), default="off",
                        help="with --feed pipeline: on gives the pipeline tf.data's autotuner back")
    parser.add_argument("--deletions", type=int, default=0, help="time this many iterator deletions, train nothing")
    args = parser.parse_args()
    if args.deletions:
        print(json.dumps({"cores": os.cpu_count(), "iterator_deletion_s": iterator_deletions(args.deletions)}))
        return

    import keras
    import numpy as np

    from segcore.config import AugmentConfig, ModelConfig
    from segcore.losses import DiceCrossentropy
    from segcore.models import build_model
    from segcore.training import pipeline
    from segcore.training.pipeline import feed, make_batches

    if args.autotune == "on":
        pipeline.without_autotune = lambda data: data  # the pipeline as it was: tf.data's default options

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (27, 360, 480, 3)).astype(np.uint8)
    masks = rng.integers(0, 11, (27, 360, 480)).astype(np.uint8)
    batches = make_batches(images, masks, batch_size=8, mode="multiclass", num_classes=11, seed=0, shuffle=True,
                           augment=AugmentConfig(rotate_degrees=15, zoom=0.1, hflip=True, vflip=False), crop=256, repeats=3)
    model = build_model(ModelConfig(norm="group", filters=16, depth=4), image_size=256, channels=3, mode="multiclass",
                        num_classes=11)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceCrossentropy(mode="multiclass"))
    epochs: list[dict] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batches.epoch = epoch
            self.wall, self.cpu = time.time(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1, "wall_s": round(time.time() - self.wall, 2),
                   "cpu_s": round(time.process_time() - self.cpu, 2)}
            epochs.append(row)
            print(row, file=sys.stderr, flush=True)

    if args.feed == "arrays":
        xs, ys = zip(*(batches[i] for i in range(len(batches))))
        model.fit(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32), batch_size=8,
                  epochs=args.epochs, verbose=0, callbacks=[Timer()], shuffle=False)
    else:
        model.fit(feed(batches), epochs=args.epochs, verbose=0, callbacks=[Timer()], shuffle=False)
    print(json.dumps({"cores": os.cpu_count(), "feed": args.feed, "autotune": args.autotune if args.feed == "pipeline" else "on",
                      "epochs": epochs}))


if __name__ == "__main__":
    main()

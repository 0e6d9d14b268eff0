"""A real run's speed against its model's: images/s per epoch, wall clock, end to end.

Two figures for the same model on the same device, in one command:

- model-only: ``train_on_batch`` on one batch held on the device, compiled as
  a run compiles it (the trainer's loss, metrics and ``jit_compile``), timed
  in this process;
- the run: ``python -m segcore train ... --wait`` on a generated dataset,
  through the queue worker and the training process, timed by the wall-clock
  end of each epoch (``ended_at`` in ``history.csv``): data loading,
  augmentation, validation, health checks, checkpoints and status writes all
  included. The first epoch is reported apart (it compiles).

Defaults are the GPU benchmark (256x256, 1,024 training images, U-Net depth 4
base 64, batch 32). On a CPU pass smaller settings, e.g.
``--image-size 64 --filters 16 --images 512 --batch-size 16``.

Usage:
    python bench/run_throughput.py [--images 1024] [--image-size 256] [--batch-size 32] [--epochs 4]

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def model_only(args, on_gpu: bool) -> dict:
    import keras

    from segcore.config import ModelConfig
    from segcore.models import build_model
    from segcore.training import device
    from segcore.training.pipeline import make_targets
    from segcore.training.trainer import make_loss, make_metrics

    policy, _ = device.resolve_precision("auto", on_gpu)
    keras.mixed_precision.set_global_policy(policy)
    cfg = ModelConfig(depth=args.depth, filters=args.filters)
    model = build_model(cfg, image_size=args.image_size, channels=3, mode="multiclass", num_classes=args.classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=make_loss("auto", "multiclass", args.classes, None),
                  metrics=make_metrics("multiclass", args.classes), jit_compile=on_gpu)
    rng = np.random.default_rng(0)
    b, s = args.batch_size, args.image_size
    x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (b, s, s, 3)).astype(np.float32))
    y = keras.ops.convert_to_tensor(make_targets(rng.integers(0, args.classes, (b, s, s)).astype(np.uint8),
                                                 "multiclass", args.classes))
    start = time.perf_counter()
    for _ in range(3):
        model.train_on_batch(x, y)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        out = model.train_on_batch(x, y, return_dict=True)
    float(out["loss"])  # wait for the device
    seconds = time.perf_counter() - start
    keras.mixed_precision.set_global_policy("float32")
    return {"images_per_s": round(args.steps * b / seconds, 2), "warmup_s": round(warmup, 2), "precision": policy}


def real_run(args, workspace: Path) -> dict:
    from segcore.data.demo import make_demo
    from segcore.runs import open_run
    from segcore.workspace import get_workspace

    ws = get_workspace(workspace)
    total = int(round(args.images / 0.7))  # the run's default split keeps 70% for training
    make_demo(ws, num_samples=total, size=args.image_size)
    env = dict(os.environ, SEGCORE_WORKSPACE=str(workspace), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "segcore", "train", "--dataset", "demo", "--depth", str(args.depth),
           "--filters", str(args.filters), "--image-size", str(args.image_size), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--patience", "0", "--wait", "--json"]
    started = time.time()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"the run failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    run = open_run(result["run_id"], ws)
    meta = run.read_meta()
    train_count = len(meta["split"]["train"])
    history = run.read_history()
    ends = [float(row["ended_at"]) for row in history]
    status = run.read_status()
    began = float(status.get("training_started_at") or ends[0] - float(history[0]["seconds"]))
    per_epoch = np.diff([began] + ends)
    steady = per_epoch[1:] if len(per_epoch) > 1 else per_epoch
    return {
        "run_id": run.run_id,
        "train_images": train_count,
        "epoch_wall_s": [round(float(s), 3) for s in per_epoch],
        "images_per_s": round(train_count / float(np.median(steady)), 2),
        "first_epoch_overhead_s": round(float(per_epoch[0] - np.median(steady)), 2),
        "command_wall_s": round(wall, 1),
        "environment": {k: meta.get("environment", {}).get(k) for k in ("backend", "device", "precision", "jit_compile")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="training images (the dataset holds more for val/test)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--classes", type=int, default=4, help="the demo dataset has 4 classes")
    parser.add_argument("--steps", type=int, default=20, help="timed model-only steps")
    args = parser.parse_args()
    from segcore.training import device

    dev = device.describe_device()
    on_gpu = dev["device"] == "gpu"
    model = model_only(args, on_gpu)
    print(f"model only: {model}", flush=True)
    with tempfile.TemporaryDirectory(prefix="segcore-bench-") as tmp:
        run = real_run(args, Path(tmp) / "ws")
    print(f"run: {run}", flush=True)
    out = {
        "backend": dev["backend"], "device": dev["device"], "gpus": dev["gpus"], "cpu_count": dev["cpu_count"],
        "settings": {k: getattr(args, k) for k in ("images", "image_size", "batch_size", "epochs", "depth", "filters")},
        "model_only": model, "run": run,
        "ratio": round(run["images_per_s"] / model["images_per_s"], 3),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Several runs at once: N tiny runs through the real queue, the local engine at each concurrency.

For each value of ``--concurrency`` (``max_concurrent_runs`` in a fresh
workspace's ``server.json``), queues ``--runs`` identical small runs on the
demo data and times from the first launch to the last run's end (queue
worker, training processes, evaluation, everything). Also reports the sum of
the training processes' own CPU seconds, so a machine busy with other work
can be told apart from an engine that does not overlap runs.

On a machine with NVIDIA GPUs the default concurrency is one run per GPU, each
pinned to its GPU; pass ``--concurrency 0`` there to measure that rule.

Usage:
    python bench/parallel_runs.py [--runs 4] [--concurrency 1,2] [--epochs 3]

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(runs: int, concurrency: int, args) -> dict:
    from segcore.config import AugmentConfig, ModelConfig, RunConfig, TrainConfig
    from segcore.data.demo import make_demo
    from segcore.queue import launch, wait_for
    from segcore.workspace import get_workspace

    root = Path(tempfile.mkdtemp(prefix=f"parallel-{concurrency}-"))
    ws = get_workspace(root)
    (ws.root / "server.json").write_text(json.dumps({"max_concurrent_runs": concurrency}))
    make_demo(ws, num_samples=args.images, size=args.image_size)
    cfg = RunConfig(model=ModelConfig(depth=3, filters=args.filters),
                    train=TrainConfig(dataset="demo", image_size=args.image_size, epochs=args.epochs, batch_size=8,
                                      seed=0, early_stopping_patience=0, augment=AugmentConfig(enabled=False)))
    start = time.time()
    ids = [launch(cfg, ws) for _ in range(runs)]
    final = wait_for(ids, ws, timeout=3600)
    wall = time.time() - start
    states = sorted({s["state"] for s in final.values()})
    cpu = sum(float(s.get("cpu_seconds") or 0.0) for s in final.values())
    return {"concurrency": concurrency, "runs": runs, "wall_s": round(wall, 1), "runs_per_min": round(runs / wall * 60, 2),
            "cpu_s": round(cpu, 1), "states": states, "devices": sorted({str(s.get("devices")) for s in final.values()})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--concurrency", default="1,2", help="comma-separated max_concurrent_runs values (0: one per GPU)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--filters", type=int, default=8)
    args = p.parse_args(argv)
    from segcore.training.device import nvidia_gpus

    load = os.getloadavg()[0]
    results = []
    for value in [int(v) for v in args.concurrency.split(",")]:
        result = measure(args.runs, value, args)
        print(json.dumps(result), flush=True)
        results.append(result)
    base = results[0]["wall_s"]
    out = {"cpus": os.cpu_count(), "gpus": nvidia_gpus(), "load_average_at_start": round(load, 2),
           "results": results, "speedup": {str(r["concurrency"]): round(base / r["wall_s"], 2) for r in results}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Time to quality on CPU: validation Dice of a small U-Net over wall time on the demo data.

The run goes through the real path (``launch`` -> queue worker -> training
process), so the clock includes process start, data loading and per-epoch
checkpoints. The curve is read from the run's ``history.csv`` as epochs end.
The goal: mean foreground Dice >= 0.90 on the validation split within
5 minutes of pressing "train".

Usage:
    python bench/time_to_quality.py [--budget 300] [--image-size 64] [--epochs 200]

The last line is one JSON object: the curve ``[[seconds, epoch, val_dice], ...]``,
when the goal was reached, and the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=300.0, help="seconds of wall time (5 minutes)")
    p.add_argument("--goal", type=float, default=0.90, help="validation mean foreground Dice to reach")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--until-budget", action="store_true", help="keep training after the goal, to the end of the budget")
    p.add_argument("--workspace", help="workspace folder (default: a new temporary one)")
    args = p.parse_args(argv)

    from segcore.config import ModelConfig, RunConfig, TrainConfig
    from segcore.data.demo import ensure_demo
    from segcore.runs import open_run
    from segcore.queue import launch, stop
    from segcore.workspace import get_workspace

    root = args.workspace or tempfile.mkdtemp(prefix="segcore-ttq-")
    ws = get_workspace(root)
    os.environ["SEGCORE_WORKSPACE"] = str(ws.root)
    info = ensure_demo(ws)
    cfg = RunConfig(
        model=ModelConfig(depth=args.depth, filters=args.filters),
        train=TrainConfig(dataset=info.name, image_size=args.image_size, epochs=args.epochs,
                          batch_size=args.batch_size, learning_rate=args.lr, early_stopping_patience=0, seed=0),
        name="time-to-quality",
    )
    t0 = time.time()
    run_id = launch(cfg, ws)
    run = open_run(run_id, ws)
    curve: list[list[float]] = []
    reached = None
    seen = 0
    while True:
        time.sleep(0.5)
        now = time.time() - t0
        for row in run.read_history()[seen:]:
            seen += 1
            dice = row.get("val_dice")
            curve.append([round(now, 1), int(row["epoch"]), round(float(dice), 4) if dice is not None else None])
            print(f"{now:7.1f} s  epoch {row['epoch']:3d}  val dice {dice:.4f}", file=sys.stderr, flush=True)
            if reached is None and dice is not None and dice >= args.goal:
                reached = round(now, 1)
        state = run.true_status().get("state")
        if (reached is not None and not args.until_budget) or now > args.budget or state not in ("queued", "running"):
            break
    if run.true_status().get("state") in ("queued", "running"):
        stop(run_id, ws, wait=120)
    status = run.true_status()
    best = max((c[2] for c in curve if c[2] is not None), default=None)
    result = {
        "bench": "time_to_quality",
        "goal_dice": args.goal,
        "budget_s": args.budget,
        "reached_goal_s": reached,
        "best_val_dice": best,
        "epochs": len(curve),
        "curve": curve,
        "run_id": run_id,
        "state": status.get("state"),
        "settings": {"image_size": args.image_size, "depth": args.depth, "filters": args.filters,
                     "batch_size": args.batch_size, "lr": args.lr, "train_images": len(run.read_meta()["split"]["train"])},
        "device": f"cpu ({os.cpu_count()} cores)",
        "workspace": str(ws.root),
    }
    print(json.dumps(result))
    return 0 if reached is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())

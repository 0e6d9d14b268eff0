"""Test-time augmentation measured apart: a run's test images scored with and without its views.

For a finished run, predicts its test split with the kept checkpoint
(``Predictor`` as ``eval`` uses it, at the labels' own resolution): once
with the run's TTA setting off, once on (the flips its training used),
and, for a run that trained with transposed windows or with
``--transpose``, once more with each flip also transposed (eight views).
Each is scored as ``segcore eval`` scores (``score_images``); prints the
Dice of every class, the macro Dice, the Dice over every class (the
headline) and the inference time of each.
Nothing in the run folder is written.

Usage:
    python bench/tta.py RUN_ID [--workspace DIR] [--transpose]

The last line is one JSON object: ``{"off": {...}, "on": {...}[, "on+transpose": {...}]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--transpose", action="store_true", help="also score the views with transpositions added")
    args = parser.parse_args()
    from segcore.data.dataset import load_dataset
    from segcore.evaluation.run import score_images
    from segcore.prediction.predictor import Predictor
    from segcore.runs import open_run
    from segcore.workspace import get_workspace

    ws = get_workspace(args.workspace)
    run = open_run(args.run, ws)
    cfg = run.read_config()
    predictor = Predictor.from_folder(run)
    dataset = load_dataset(cfg.train.dataset, ws)
    test_ids = (run.read_meta().get("split") or {}).get("test") or []
    if not test_ids:
        raise SystemExit(f"run {args.run} has no test split")
    out = {}
    variants = [("off", replace(predictor, tta=False)), ("on", replace(predictor, tta=True))]
    if args.transpose or cfg.train.augment.transpose:  # the transposed views as well, to see what they add
        variants.append(("on+transpose", replace(predictor, tta=True, tta_transpose=True)))
    for name, p in variants:  # scored as `segcore eval` scores: every class, at the labels' own resolution
        start = time.perf_counter()
        report, _ = score_images(p, dataset, test_ids)
        seconds = time.perf_counter() - start
        dice = {row["name"]: round(float(row["dice"]), 4) for row in report.per_class if row["dice"] == row["dice"]}
        out[name] = {"dice": dice, "macro_dice": round(float(report.macro["dice"]), 4),
                     "dice_all_classes": round(float(report.headline["value"]), 4), "seconds": round(seconds, 1)}
        print(f"TTA {name}: {out[name]}", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

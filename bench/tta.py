"""Test-time augmentation measured apart: a run's test images scored with and without its views.

For a finished run, predicts its test split with the kept checkpoint
(``Predictor`` as ``eval`` uses it, at the labels' own resolution): once
with the run's TTA setting off, once on (the flips its training used),
and, for a run that trained with transposed windows or with
``--transpose``, once more with each flip also transposed (eight views). Prints the Dice
of every scored class and the mean, with the inference time of each.
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
    import numpy as np

    from segcore.data.dataset import load_dataset
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
    labels = predictor.labels
    out = {}
    variants = [("off", replace(predictor, tta=False)), ("on", replace(predictor, tta=True))]
    if args.transpose or cfg.train.augment.transpose:  # the transposed views as well, to see what they add
        variants.append(("on+transpose", replace(predictor, tta=True, tta_transpose=True)))
    for name, p in variants:
        inter = union = None
        start = time.perf_counter()
        for sid in test_ids:
            image, mask = dataset.image(sid), dataset.mask(sid)
            pred = p.predict_mask(image)
            k = labels.num_classes
            valid = mask < k if mask.ndim == 2 else np.ones(mask.shape[:2], bool)
            i = np.array([((pred == c) & (mask == c) & valid).sum() for c in range(k)], float)
            u = np.array([(((pred == c) & valid).sum() + ((mask == c) & valid).sum()) for c in range(k)], float)
            inter, union = (i, u) if inter is None else (inter + i, union + u)
        seconds = time.perf_counter() - start
        dice = {labels.class_names[c]: round(float(2 * inter[c] / max(union[c], 1)), 4) for c in labels.scored}
        out[name] = {"dice": dice, "mean": round(float(np.mean(list(dice.values()))), 4), "seconds": round(seconds, 1)}
        print(f"TTA {name}: {out[name]}", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

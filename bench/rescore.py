"""Rescore a run's test images independently and compare with ``segcore eval``.

The check behind "scores at the labels' own resolution": on a real dataset
whose images are not square (PH2 dermoscopy by default, 765x574-ish BMPs with
BMP lesion masks), one command

1. imports the dataset into a fresh workspace and trains a short run
   (``python -m segcore train ... --wait``);
2. runs ``python -m segcore predict RUN IMAGE --out MASK.png`` on each test
   image's *original* file, as a user would;
3. scores each predicted mask with numpy against the *original* label file
   at its own size (Dice of the background and of the lesion);
4. compares those numbers with the per-image Dice in the run's
   ``evaluation.json`` (``segcore eval``'s figures).

The last line is one JSON object: images compared, the largest absolute
difference (it must be at most 1e-6), the mean Dice both ways, and the
training settings.

Usage:
    python bench/rescore.py [--data PATH] [--epochs N] [--image-size S] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "ph2-skin-lesion"


def _dice(truth: np.ndarray, pred: np.ndarray) -> float:
    denom = int(truth.sum()) + int(pred.sum())
    return float("nan") if denom == 0 else 2.0 * int((truth & pred).sum()) / denom


def _segcore(args: list[str], env: dict) -> str:
    out = subprocess.run([sys.executable, "-m", "segcore", *args], env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"segcore {' '.join(args[:2])} failed ({out.returncode})")
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workspace", default=None)
    args = parser.parse_args()

    import cv2

    from segcore.data import imageio
    from segcore.data.dataset import load_dataset
    from segcore.data.imports import import_dataset
    from segcore.runs import open_run
    from segcore.workspace import get_workspace

    ws = get_workspace(Path(args.workspace or tempfile.mkdtemp(prefix="segcore-rescore-")))
    env = dict(os.environ, SEGCORE_WORKSPACE=str(ws.root), PYTHONPATH=str(ROOT))
    report = import_dataset(args.data, "rescore", workspace=ws)
    if not report.ok:
        raise SystemExit(f"import failed: {report.error}")
    dataset = load_dataset("rescore", ws)
    if dataset.info.mode != "binary":
        raise SystemExit(f"{args.data} imported as {dataset.info.mode}; this check scores a binary dataset")
    result = json.loads(_segcore(["train", "--dataset", "rescore", "--epochs", str(args.epochs), "--image-size",
                                  str(args.image_size), "--wait", "--json", "--quiet"], env).strip().splitlines()[-1])
    run = open_run(result["run_id"], ws)
    evaluation = run.read_evaluation()
    if not evaluation:
        raise SystemExit(f"run {run.run_id} has no evaluation ({result.get('state')})")
    source = Path(dataset.info.source.get("path") or args.data)
    diffs, ours, theirs, shapes = [], [], [], []
    out_dir = ws.root / "rescore-masks"
    for row in evaluation["per_image"]:
        sample = dataset.sample(row["id"])
        image_file = source / sample.source_image
        label_file = source / sample.source_mask
        mask_file = out_dir / f"{row['id']}.png"
        _segcore(["predict", run.run_id, str(image_file), "--out", str(mask_file)], env)
        pred = cv2.imread(str(mask_file), cv2.IMREAD_GRAYSCALE)
        label = imageio.read_image(label_file).array
        label = label if label.ndim == 2 else label[..., 0]
        truth = label > 127  # PH2: the lesion is white
        if pred.shape != truth.shape:
            raise SystemExit(f"{mask_file} is {pred.shape}, its label {label_file} {truth.shape}")
        mine = [_dice(~truth, pred == 0), _dice(truth, pred == 1)]
        diffs.append(float(np.nanmax(np.abs(np.array(mine) - np.array(row["dice"], dtype=float)))))
        ours.append(mine[1])
        theirs.append(row["dice"][1])
        shapes.append(list(truth.shape))
    out = {
        "data": str(args.data), "run_id": run.run_id, "images": len(diffs), "label_shapes": shapes,
        "max_abs_difference": max(diffs) if diffs else None, "agrees_to_1e-6": bool(diffs) and max(diffs) <= 1e-6,
        "lesion_dice_numpy": round(float(np.mean(ours)), 6) if ours else None,
        "lesion_dice_eval": round(float(np.mean(theirs)), 6) if theirs else None,
        "epochs": args.epochs, "image_size": args.image_size,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

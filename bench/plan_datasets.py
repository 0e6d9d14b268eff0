"""The plan's defaults on several real datasets, nothing tuned per dataset.

For each dataset in ``../shared/datasets`` (or those named with
``--only``), one command imports it into a fresh workspace, prints its plan
(``python -m segcore plan``) and trains with it (``python -m segcore train
--plan --dataset NAME --wait``) with no other setting than the split a
published protocol fixes:

- ``isbi``: ISBI 2012 membranes (labels inverted so the membrane is the
  class), the tutorial split (train 0-21, val 22-24, test 25-29);
- ``camvid``: the CamVid subset, 11 classes (class 0 Sky a real class),
  void 11; its own folders (80 train, 20 val), scored on the 20 val images
  (``eval --dataset camvid --subset val --checkpoint last``), the mean IoU
  over the 11 classes. Those images also validate the run, so the score is
  the last epoch's weights, which they chose nothing about (the plan has no
  early stopping); the best checkpoint, which they did choose, is shown
  apart as ``best_checkpoint_chosen_by_the_scored_images``;
- ``ph2``: PH2 dermoscopy lesions; ``dsb``: DSB 2018 nuclei (first 100);
  ``epfl``: EPFL EM, 6 overlapping classes. Random split (the defaults).

Every figure is taken at the labels' own resolution. The last line is one
JSON object with, per dataset: the plan's fit and patch size, epochs run,
the headline (Dice over every class), macro Dice, mean IoU, CPU seconds of
the training process and wall seconds.

Usage:
    python bench/plan_datasets.py [--only isbi,camvid] [--workspace DIR] [--plan-only]

``--plan-only`` prints each dataset's layout asymmetry and plan and trains nothing.
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
DATA = ROOT.parent / "shared" / "datasets"
CAMVID = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"]

DATASETS = {
    "isbi": (DATA / "isbi2012-membrane" / "data" / "membrane" / "train", {"invert": True},
             ["--train-ids", "0-21", "--val-ids", "22-24", "--test-ids", "25-29"]),
    "camvid": (DATA / "camvid-subset" / "CamVid", {"ignore": [11], "class0": "class", "classes": CAMVID}, ["--split", "subset"]),
    "ph2": (DATA / "ph2-skin-lesion", {}, []),
    "dsb": (DATA / "dsb2018-nuclei", {}, []),
    "epfl": (DATA / "epfl-em-multiclass" / "data", {}, []),
}


def _segcore(args: list[str], env: dict) -> str:
    out = subprocess.run([sys.executable, "-m", "segcore", *args], env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode not in (0, 1):
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"segcore {' '.join(args[:2])} failed ({out.returncode})")
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--plan-only", action="store_true", help="print each dataset's fingerprint and plan, train nothing")
    args = parser.parse_args()

    from segcore.data.imports import import_dataset
    from segcore.runs import open_run
    from segcore.workspace import get_workspace

    ws = get_workspace(Path(args.workspace or tempfile.mkdtemp(prefix="segcore-plans-")))
    env = dict(os.environ, SEGCORE_WORKSPACE=str(ws.root), PYTHONPATH=str(ROOT))
    results = {}
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        path, options, split = DATASETS[name]
        if not (ws.datasets_dir / name / "dataset.json").is_file():
            report = import_dataset(path, name, options=options, workspace=ws)
            if not report.ok:
                raise SystemExit(f"import of {path} failed: {report.error}")
        plan = json.loads(_segcore(["plan", name, "--json"], env).strip().splitlines()[-1])
        print(f"{name}: " + ", ".join(f"{k}={v['value']}" for k, v in plan["settings"].items()), file=sys.stderr, flush=True)
        if args.plan_only:
            results[name] = {"layout_asymmetry": plan["fingerprint"].get("layout_asymmetry"),
                             "settings": {k: v["value"] for k, v in plan["settings"].items()}}
            continue
        t0 = time.time()
        result = json.loads(_segcore(["train", "--plan", "--dataset", name, *split, "--wait", "--json", "--quiet"], env)
                            .strip().splitlines()[-1])
        wall = time.time() - t0
        run = open_run(result["run_id"], ws)
        chosen_by_scored = None
        if name == "camvid":  # the val folder is the published test set of this subset: it also validated the run
            def scored(checkpoint: str) -> dict:
                return json.loads(_segcore(["eval", run.run_id, "--dataset", name, "--subset", "val", "--checkpoint",
                                            checkpoint, "--json"], env).strip().splitlines()[-1])
            report = scored("last")  # the final weights: the scored images chose nothing about them
            best = scored("best")  # the epoch the scored images themselves picked: not a fair figure, shown apart
            chosen_by_scored = {"epoch": (run.read_train_state() or {}).get("best_epoch"),
                                "mean_iou": _r((best.get("macro") or {}).get("iou")),
                                "macro_dice": _r((best.get("macro") or {}).get("dice"))}
        else:
            report = run.read_evaluation() or {}
        state = run.read_train_state() or {}
        results[name] = {
            "state": result.get("state"), "fit": plan["settings"]["train.fit"]["value"],
            "patch": plan["settings"]["train.image_size"]["value"], "epochs": state.get("epoch"),
            "test_images": report.get("num_images"),
            "dice_all_classes": _r((report.get("all") or {}).get("dice")),
            "macro_dice": _r((report.get("macro") or {}).get("dice")),
            "mean_iou": _r((report.get("macro") or {}).get("iou")),
            "hd95": _r((report.get("all") or {}).get("hd95")), "ece": _r((report.get("calibration") or {}).get("ece")),
            "per_class_dice": {row["name"]: _r(row.get("dice")) for row in report.get("per_class") or []},
            "cpu_s": _r(run.true_status().get("cpu_seconds"), 1), "wall_s": round(wall, 1),
            "warnings": [w for w in report.get("warnings") or [] if "near-constant" in w or "collapsed" in w or "leak" in w],
        }
        if chosen_by_scored:
            results[name]["checkpoint"] = "last"
            results[name]["best_checkpoint_chosen_by_the_scored_images"] = chosen_by_scored
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    print(json.dumps({"cores": os.cpu_count(), "results": results}))


def _r(value, digits: int = 4):
    return None if not isinstance(value, (int, float)) else round(float(value), digits)


if __name__ == "__main__":
    main()

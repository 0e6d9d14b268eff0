"""Ingest benchmark: import a real dataset and load it resized to 256x256, against a plain per-file loop.

The baseline is how the tutorials load data: for each sample, ``skimage.io.imread``
the image and every mask file, ``skimage.transform.resize`` each one to the target
size, one file at a time, unioning instance masks with ``np.maximum``.

segcore's path is ``import_dataset`` (reads, checks and writes the canonical
layout) followed by ``load_arrays(size=256)`` (what training calls; its first
call also writes the per-size cache). Both are timed in the same run, on the
same files. ``images_per_s`` and ``ratio`` are for that first, whole path;
``reload_images_per_s`` decodes the canonical PNGs again and
``cached_images_per_s`` reads the cache, as every later training run does.
The last line printed is one JSON object with ``images_per_s``,
``baseline_images_per_s`` and ``ratio`` overall, and per-dataset detail.

Usage::

    .venv/bin/python bench/ingest.py [--datasets dsb isbi] [--size 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segcore.data.arrays import load_arrays  # noqa: E402
from segcore.data.dataset import load_dataset  # noqa: E402
from segcore.data.imports import import_dataset  # noqa: E402
from segcore.workspace import get_workspace  # noqa: E402

SHARED = Path(os.environ.get("SEGCORE_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
DATASETS = {
    "dsb": SHARED / "dsb2018-nuclei",
    "isbi": SHARED / "isbi2012-membrane",
}


def baseline_pairs(name: str, src: Path) -> list[tuple[Path, list[Path]]]:
    """(image, [mask files]) as a tutorial script would list them."""
    if name == "dsb":
        out = []
        for folder in sorted((src / "stage1_train").iterdir()):
            image = next((folder / "images").glob("*.png"))
            out.append((image, sorted((folder / "masks").glob("*.png"))))
        return out
    train = src / "data" / "membrane" / "train"
    return [(p, [train / "label" / p.name]) for p in sorted((train / "image").glob("*.png"))]


def run_baseline(pairs, size: int) -> tuple[float, float]:
    from skimage.io import imread
    from skimage.transform import resize

    c0 = time.process_time()
    start = time.perf_counter()
    xs, ys = [], []
    for image_path, mask_paths in pairs:
        img = imread(image_path)
        if img.ndim == 3:
            img = img[:, :, :3]
        xs.append(resize(img, (size, size), mode="constant", preserve_range=True).astype(np.uint8))
        mask = np.zeros((size, size), bool)
        for m in mask_paths:
            mask_ = resize(imread(m), (size, size), mode="constant", preserve_range=True)
            mask = np.maximum(mask, mask_ > 127)
        ys.append(mask)
    np.stack(xs), np.stack(ys)
    return time.perf_counter() - start, time.process_time() - c0


def run_segcore(src: Path, size: int, ws, tag: str) -> dict:
    c0 = time.process_time()  # CPU seconds of every thread of this process
    t0 = time.perf_counter()
    report = import_dataset(src, tag, workspace=ws)
    t1 = time.perf_counter()
    if not report.ok:
        raise SystemExit(f"import of {src} failed: {report.error}")
    ds = load_dataset(tag, ws)
    images, masks = load_arrays(ds, None, size)
    t2 = time.perf_counter()
    cpu = time.process_time() - c0
    return {"import_s": t1 - t0, "load_s": t2 - t1, "cpu_s": cpu, "n": len(ds), "shape": list(images.shape)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="segcore runs per dataset (the median is reported)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    cores = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"cores: {cores}, load average at start: {load} (the cores are shared; see cpu_s)", file=sys.stderr)
    scratch = Path(tempfile.mkdtemp(prefix="segcore-bench-"))
    detail = {}
    total_n = total_ours = total_base = 0.0
    try:
        ws = get_workspace(scratch / "ws")
        for name in args.datasets:
            src = DATASETS[name]
            if not src.is_dir():
                raise SystemExit(f"dataset {name} not found at {src}")
            pairs = baseline_pairs(name, src)
            files = len(pairs) + sum(len(m) for _, m in pairs)
            runs = [run_segcore(src, args.size, ws, f"{name}-{i}") for i in range(args.repeats)]
            total = [r["import_s"] + r["load_s"] for r in runs]
            med = statistics.median(total)
            best = runs[total.index(med)]
            # The repeated path: once imported, every training run only calls load_arrays,
            # which reads its per-size cache; decoding the PNGs again is timed too.
            ds0 = load_dataset(f"{name}-0", ws)
            t = time.perf_counter()
            load_arrays(ds0, None, args.size, cache=False)
            reload_s = time.perf_counter() - t
            t = time.perf_counter()
            load_arrays(ds0, None, args.size)
            cached_s = time.perf_counter() - t
            base, base_cpu = run_baseline(pairs, args.size)
            n = best["n"]
            detail[name] = {
                "images": n,
                "files_read": files,
                "import_s": round(best["import_s"], 3),
                "load_arrays_s": round(best["load_s"], 3),
                "images_per_s": round(n / med, 1),
                "files_per_s": round(files / med, 1),
                "reload_images_per_s": round(n / reload_s, 1),
                "cached_images_per_s": round(n / cached_s, 1),
                "baseline_s": round(base, 3),
                "baseline_images_per_s": round(n / base, 2),
                "ratio": round(base / med, 1),
                # The machine is shared: CPU seconds do not depend on what else runs.
                "cpu_s": round(best["cpu_s"], 3),
                "baseline_cpu_s": round(base_cpu, 3),
                "cpu_ratio": round(base_cpu / best["cpu_s"], 1),
                "images_per_cpu_s": round(n / best["cpu_s"], 1),
            }
            print(f"{name}: {json.dumps(detail[name])}", file=sys.stderr)
            total_n += n
            total_ours += med
            total_base += base
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "images_per_s": round(total_n / total_ours, 1),
        "baseline_images_per_s": round(total_n / total_base, 2),
        "ratio": round(total_base / total_ours, 1),
        "size": args.size,
        "cores": cores,
        "load_average_at_start": load,
        "datasets": detail,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

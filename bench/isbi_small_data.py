"""Small data: the tutorial's plain Keras U-Net against segcore's defaults on ISBI 2012.

Both train on the same split of the ISBI 2012 membrane data (30 images,
``--train-ids 0-21 --val-ids 22-24 --test-ids 25-29``), on the same machine,
in one command, and both are scored the same way: membrane Dice of the
best checkpoint on the 5 test images at their own 512x512 resolution
against the imported label files, threshold 0.5 (the tutorial's 128x128
probabilities resized back to 512x512 bilinearly, as ``segcore predict``
and ``segcore eval`` do).
The masks are imported with ``invert=true``, so the membrane (black in the
source labels) is the foreground class.

The baseline is the tutorial's model and training, written out here as the
tutorial gives them: 128x128 input, ``x / 255``, a 5-level U-Net with 16 base
filters, ELU, he_normal, dropout 0.1/0.1/0.2/0.2/0.3, transposed
convolutions, sigmoid head, binary cross-entropy, Adam (1e-3), batch 16, up to
50 epochs, early stopping with patience 5 on validation loss, the checkpoint
with the best validation loss kept; no augmentation. It runs in this process.

segcore runs through its command line (``python -m segcore train ... --wait``)
with nothing set but the dataset and the split, so every other setting is the
default. CPU time is user + system time of each side's processes
(``resource.getrusage``): the baseline's own; for segcore the CLI's, plus the
training process's own, which it records in the run's status as ``cpu_seconds``.

Usage:
    python bench/isbi_small_data.py [--data PATH] [--workspace DIR] [--skip-baseline]
        [--segcore-args "--epochs 40 ..."] [--segcore-args "..."]

The last line is one JSON object with the Dice values and CPU times of the
tutorial and of each segcore variant (``segcore``: a list; an empty
``--segcore-args`` is the defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "isbi2012-membrane" / "data" / "membrane" / "train"
SPLIT = ("0-21", "22-24", "25-29")
SIZE = 128


def _ids(text: str) -> list[str]:
    lo, hi = (int(x) for x in text.split("-"))
    return [str(i) for i in range(lo, hi + 1)]


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def tutorial_unet(size: int, channels: int):
    """The tutorial's U-Net, layer for layer."""
    import keras
    from keras import layers

    inputs = keras.Input((size, size, channels))
    s = layers.Rescaling(1.0 / 255)(inputs)

    def block(x, filters, drop):
        x = layers.Conv2D(filters, 3, activation="elu", kernel_initializer="he_normal", padding="same")(x)
        x = layers.Dropout(drop)(x)
        return layers.Conv2D(filters, 3, activation="elu", kernel_initializer="he_normal", padding="same")(x)

    c1 = block(s, 16, 0.1)
    c2 = block(layers.MaxPooling2D(2)(c1), 32, 0.1)
    c3 = block(layers.MaxPooling2D(2)(c2), 64, 0.2)
    c4 = block(layers.MaxPooling2D(2)(c3), 128, 0.2)
    c5 = block(layers.MaxPooling2D(2)(c4), 256, 0.3)
    u6 = layers.concatenate([layers.Conv2DTranspose(128, 2, strides=2, padding="same")(c5), c4])
    c6 = block(u6, 128, 0.2)
    u7 = layers.concatenate([layers.Conv2DTranspose(64, 2, strides=2, padding="same")(c6), c3])
    c7 = block(u7, 64, 0.2)
    u8 = layers.concatenate([layers.Conv2DTranspose(32, 2, strides=2, padding="same")(c7), c2])
    c8 = block(u8, 32, 0.1)
    u9 = layers.concatenate([layers.Conv2DTranspose(16, 2, strides=2, padding="same")(c8), c1])
    c9 = block(u9, 16, 0.1)
    outputs = layers.Conv2D(1, 1, activation="sigmoid")(c9)
    return keras.Model(inputs, outputs)


def membrane_dice(masks, probs) -> float:
    """Dice of class 1 (membrane) over all test pixels, void left out."""
    import numpy as np

    valid = masks != 255
    truth = (masks == 1) & valid
    pred = (probs[..., 0] >= 0.5) & valid
    denom = int(truth.sum()) + int(pred.sum())
    return float(2 * int((truth & pred).sum()) / denom) if denom else 1.0


def run_baseline(dataset, workdir: Path) -> dict:
    import keras
    import numpy as np

    from segcore.data.arrays import load_arrays

    train_ids, val_ids, test_ids = (_ids(s) for s in SPLIT)
    cpu0, t0 = _cpu(resource.RUSAGE_SELF), time.time()
    keras.utils.set_random_seed(0)
    x_train, m_train = load_arrays(dataset, train_ids, SIZE, cache=False)
    x_val, m_val = load_arrays(dataset, val_ids, SIZE, cache=False)
    x_test, m_test = load_arrays(dataset, test_ids, SIZE, cache=False)
    y = lambda m: (m == 1).astype("float32")[..., None]  # noqa: E731
    model = tutorial_unet(SIZE, x_train.shape[-1])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    best = str(workdir / "tutorial_best.keras")
    callbacks = [
        keras.callbacks.EarlyStopping(patience=5, verbose=0),
        keras.callbacks.ModelCheckpoint(best, save_best_only=True, verbose=0),
    ]
    hist = model.fit(
        x_train.astype("float32"), y(m_train), validation_data=(x_val.astype("float32"), y(m_val)),
        batch_size=16, epochs=50, callbacks=callbacks, verbose=0,
    )
    model = keras.models.load_model(best)
    probs = np.asarray(model.predict(x_test.astype("float32"), batch_size=16, verbose=0))
    from segcore.data.resample import resize_probs

    truth = np.stack([dataset.mask(i) for i in test_ids])  # the labels at their own size
    native = np.stack([resize_probs(p, *t.shape[:2]).reshape(t.shape[:2] + (1,)) for p, t in zip(probs, truth)])
    return {
        "membrane_dice": round(membrane_dice(truth, native), 4),
        "epochs": len(hist.history["loss"]),
        "cpu_s": round(_cpu(resource.RUSAGE_SELF) - cpu0, 1),
        "wall_s": round(time.time() - t0, 1),
    }


def run_segcore(ws_root: Path, extra: list[str]) -> dict:
    cmd = [
        sys.executable, "-m", "segcore", "train", "--dataset", "isbi",
        "--train-ids", SPLIT[0], "--val-ids", SPLIT[1], "--test-ids", SPLIT[2],
        "--wait", "--json", "--quiet", *extra,
    ]
    env = dict(os.environ, SEGCORE_WORKSPACE=str(ws_root), PYTHONPATH=str(ROOT))
    cpu0, t0 = _cpu(resource.RUSAGE_CHILDREN), time.time()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.time() - t0
    cpu = _cpu(resource.RUSAGE_CHILDREN) - cpu0
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"segcore train failed ({out.returncode})")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    from segcore.runs import open_run
    from segcore.workspace import get_workspace

    run = open_run(result["run_id"], get_workspace(ws_root))
    report = run.read_evaluation() or {}
    # The training runs in its own process (started by the run queue, not a child of the CLI):
    # it records its own CPU time; the CLI's (waiting) is added.
    own = run.true_status().get("cpu_seconds")
    if own is None:
        raise SystemExit(f"run {run.run_id} did not record its training process's cpu_seconds")
    cpu += float(own)
    membrane = next((r for r in report.get("per_class", []) if r.get("class_id") == 1), {})
    return {
        "membrane_dice": round(float(membrane.get("dice")), 4) if membrane.get("dice") is not None else None,
        "epochs": result.get("epochs_done"),
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "warnings": result.get("warnings", []),
        "args": extra,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the ISBI train folder (image/ + label/)")
    p.add_argument("--workspace", help="workspace folder (default: a new temporary one)")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--skip-segcore", action="store_true")
    p.add_argument("--segcore-args", action="append",
                   help="extra flags for segcore train (default: none, the defaults); repeat to train several variants")
    args = p.parse_args(argv)

    from segcore.data.dataset import load_dataset
    from segcore.data.imports import import_dataset
    from segcore.workspace import get_workspace

    ws_root = Path(args.workspace or tempfile.mkdtemp(prefix="segcore-isbi-"))
    ws = get_workspace(ws_root)
    os.environ["SEGCORE_WORKSPACE"] = str(ws.root)
    if not (ws.datasets_dir / "isbi" / "dataset.json").is_file():
        report = import_dataset(args.data, "isbi", options={"invert": True}, workspace=ws)
        if not report.ok:
            raise SystemExit(f"import failed: {report.error}")
    dataset = load_dataset("isbi", ws)
    out: dict = {"split": dict(zip(("train", "val", "test"), SPLIT)), "image_size": SIZE, "cores": os.cpu_count()}
    try:
        out["load_average_start"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if not args.skip_baseline:
        out["tutorial"] = run_baseline(dataset, ws.root)
        print(f"tutorial: {out['tutorial']}", file=sys.stderr, flush=True)
    if not args.skip_segcore:
        out["segcore"] = []
        for extra in args.segcore_args or [""]:
            result = run_segcore(ws.root, shlex.split(extra))
            if "tutorial" in out:
                result["dice_ratio"] = round(result["membrane_dice"] / max(out["tutorial"]["membrane_dice"], 1e-9), 3)
                result["cpu_ratio"] = round(result["cpu_s"] / max(out["tutorial"]["cpu_s"], 1e-9), 3)
            out["segcore"].append(result)
            print(f"segcore: {result}", file=sys.stderr, flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

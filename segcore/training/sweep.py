"""The encoder study: the paper's set of models on one dataset, one split, one seed.

``queue_sweep`` queues a plain U-Net, VGG16 frozen, VGG16 fine-tuned,
DenseNet121, ResNet50 and MobileNetV2 with the same split, seed and training
settings; ``write_table`` gathers their test metrics into
``<workspace>/sweeps/<sweep_id>/results.csv`` and ``results.md``.

Pretrained weights: ``imagenet`` by default where the weights file is in the
Keras cache (``~/.keras/models``); where it is not (no internet), that model
trains from scratch and the table says so in its ``weights`` column and notes.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from segcore.access import Actor, local_actor, require
from segcore.config import RunConfig
from segcore.fsutil import read_json, write_json_atomic, write_text_atomic
from segcore.models import encoders
from segcore.runs import open_run
from segcore.safetext import markdown_cell, spreadsheet_text
from segcore.workspace import Workspace, get_workspace

# (label, encoder, freeze) in the paper's order.
PAPER_SET = (
    ("U-Net", "none", "trainable"),
    ("VGG16 frozen", "vgg16", "frozen"),
    ("VGG16 fine-tuned", "vgg16", "fine_tune"),
    ("DenseNet121", "densenet121", "trainable"),
    ("ResNet50", "resnet50", "trainable"),
    ("MobileNetV2", "mobilenetv2", "trainable"),
)
TABLE_COLUMNS = (
    "model", "encoder", "weights", "freeze", "state", "epochs", "all_dice", "macro_dice", "macro_iou",
    "micro_dice", "micro_iou", "pixel_accuracy", "best_val_dice", "run_id",
)


def imagenet_available(encoder: str, image_size: int) -> bool:
    """Whether the ImageNet weights of ``encoder`` are in the Keras cache."""
    spec = encoders.get(encoder)
    return os.path.isfile(os.path.join(encoders.keras_cache_dir(), "models", spec.imagenet_file(image_size)))


def sweep_dir(ws: Workspace, sweep_id: str) -> Path:
    from segcore.fsutil import check_name

    return ws.root / "sweeps" / check_name(sweep_id, "sweep id")


def queue_sweep(
    base: RunConfig,
    ws: Workspace | None = None,
    *,
    weights: str = "imagenet",
    fine_tune_after: int | None = None,
    models: tuple[str, ...] | None = None,
    actor: Actor | None = None,
) -> dict[str, Any]:
    """Queue the paper's set on ``base.train.dataset`` with one split and seed.

    Args:
        base: settings shared by every run (dataset, image size, epochs, seed, split, ...).
        ws: the workspace.
        weights: ``"imagenet"`` (where cached, else none with a note), ``"none"`` or a file path.
        fine_tune_after: frozen epochs of "VGG16 fine-tuned" (default: half the epochs).
        models: labels from ``PAPER_SET`` to run (default: all).
        actor: who queues them (default: the local user); AccessDenied before anything is queued if they may not launch.

    Returns:
        The sweep record (``sweep_id``, ``runs`` with label and run id, ``notes``),
        also saved as ``sweeps/<sweep_id>/sweep.json``.
    """
    from segcore.data.split import split_ids
    from segcore.training.launcher import dataset_record, ensure_worker, launch

    actor = actor or local_actor()
    require(actor, "launch")
    ws = ws or get_workspace()
    dataset, record = dataset_record(ws, base.train.dataset)
    subsets = {s.id: s.subset for s in dataset.info.samples}
    split = split_ids(dataset.ids, base.train.split, subsets).to_dict()
    chosen = [row for row in PAPER_SET if models is None or row[0] in models]
    if models is not None and len(chosen) != len(models):
        unknown = sorted(set(models) - {row[0] for row in PAPER_SET})
        raise ValueError(f"unknown sweep model(s) {unknown}; the set is {[row[0] for row in PAPER_SET]}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    sweep_id = f"sweep-{stamp}-{base.train.dataset}"[:64]
    notes: list[str] = []
    runs = []
    epochs = base.train.epochs
    after = fine_tune_after if fine_tune_after is not None else max(1, epochs // 2)
    for label, encoder, freeze in chosen:
        w = "none"
        pretrained = encoders.get(encoder).pretrained
        if pretrained:
            if weights == "imagenet" and not imagenet_available(encoder, base.train.image_size):
                note = f"{label}: ImageNet weights are not in the Keras cache, so it trains from scratch (weights none)"
                if freeze != "trainable":
                    note += "; its frozen encoder keeps random weights, so this row measures the decoder alone"
                notes.append(note)
            else:
                w = weights
        model = replace(
            base.model, encoder=encoder, weights=w, freeze=freeze,
            fine_tune_after=after if freeze == "fine_tune" else 0,
        )
        if not pretrained:
            model = replace(model, freeze="trainable")
        cfg = replace(base, model=model, name=label, tags=tuple(dict.fromkeys([*base.tags, sweep_id])))
        run_id = launch(cfg, ws, split=split, extra={"sweep": {"id": sweep_id, "label": label}}, start_worker=False,
                        actor=actor, detail=f"study {sweep_id}: {label}")
        runs.append({"label": label, "run_id": run_id, "encoder": encoder, "weights": w, "freeze": freeze})
    ensure_worker(ws)
    record_out = {"sweep_id": sweep_id, "dataset": record, "split": split, "seed": base.train.seed, "runs": runs, "notes": notes}
    write_json_atomic(sweep_dir(ws, sweep_id) / "sweep.json", record_out)
    return record_out


def results_rows(sweep: dict[str, Any], ws: Workspace) -> list[dict[str, Any]]:
    rows = []
    for entry in sweep["runs"]:
        run = open_run(entry["run_id"], ws)
        summary = run.summary()
        test = summary.test
        rows.append({
            "model": entry["label"],
            "encoder": entry["encoder"],
            "weights": entry["weights"],
            "freeze": entry["freeze"],
            "state": summary.state,
            "epochs": summary.epoch,
            "all_dice": test.get("all_dice"),
            "macro_dice": test.get("macro_dice"),
            "macro_iou": test.get("macro_iou"),
            "micro_dice": test.get("micro_dice"),
            "micro_iou": test.get("micro_iou"),
            "pixel_accuracy": test.get("pixel_accuracy"),
            "best_val_dice": summary.best_val_dice,
            "run_id": entry["run_id"],
        })
    return rows


def write_table(sweep_id: str, ws: Workspace | None = None) -> dict[str, Any]:
    """Write ``results.csv`` and ``results.md`` for a sweep from its runs' folders.

    Returns:
        ``{"sweep_id", "csv", "markdown", "rows", "notes"}``.
    """
    ws = ws or get_workspace()
    folder = sweep_dir(ws, sweep_id)
    if not (folder / "sweep.json").is_file():
        known = sorted(p.name for p in (ws.root / "sweeps").glob("*")) if (ws.root / "sweeps").is_dir() else []
        raise FileNotFoundError(f"no sweep {sweep_id!r} in {ws.root / 'sweeps'}; sweeps are {known}")
    sweep = read_json(folder / "sweep.json")
    rows = results_rows(sweep, ws)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(TABLE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # Text cells (model, weights: a file name may be given) never open as a spreadsheet formula.
        writer.writerow({k: _fmt(row[k]) if isinstance(row[k], (int, float)) else spreadsheet_text(_fmt(row[k])) for k in TABLE_COLUMNS})
    write_text_atomic(folder / "results.csv", buffer.getvalue())
    md = [f"# Encoder study on `{sweep['dataset']['name']}` (seed {sweep['seed']}, one split)", ""]
    header = ["model", "weights", "state", "epochs", "Dice, all classes", "macro Dice", "macro IoU", "micro Dice", "micro IoU",
              "pixel acc."]
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "---|" * len(header))
    for row in rows:
        cells = [markdown_cell(row["model"]), markdown_cell(row["weights"]), markdown_cell(row["state"]), str(row["epochs"])] + [
            _fmt(row[k], 3) for k in ("all_dice", "macro_dice", "macro_iou", "micro_dice", "micro_iou", "pixel_accuracy")
        ]
        md.append("| " + " | ".join(cells) + " |")
    md.append("")
    md.append(f"Split: {len(sweep['split']['train'])} train, {len(sweep['split']['val'])} validation, "
              f"{len(sweep['split']['test'])} test images; metrics on the test split: 'Dice, all classes' counts every class, background included "
              "(runs are ranked by it); macro and micro as the dataset's class 0 says.")
    for note in sweep.get("notes", []):
        md.append(f"- {note}")
    write_text_atomic(folder / "results.md", "\n".join(md) + "\n")
    return {"sweep_id": sweep_id, "csv": str(folder / "results.csv"), "markdown": str(folder / "results.md"),
            "rows": rows, "notes": sweep.get("notes", [])}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)

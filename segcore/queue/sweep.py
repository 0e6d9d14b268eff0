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
from segcore.catalog import encoders
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


def study_configs(
    base: RunConfig,
    *,
    weights: str = "imagenet",
    fine_tune_after: int | None = None,
    models: tuple[str, ...] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The settings of every run of the study, each built and checked; nothing is queued.

    Args: as for :func:`queue_sweep`.

    Returns:
        ``(runs, notes)``: per run ``label``, ``encoder``, ``weights``, ``freeze`` and ``config`` (a ``RunConfig``),
        in the paper's order; ``notes`` say which models train without ImageNet weights.

    Raises:
        ValueError: naming the model whose settings cannot train, the setting and what was expected.
    """
    from segcore.config import SettingError

    chosen = [row for row in PAPER_SET if models is None or row[0] in models]
    if models is not None and len(chosen) != len(models):
        unknown = sorted(set(models) - {row[0] for row in PAPER_SET})
        raise ValueError(f"unknown sweep model(s) {unknown}; the set is {[row[0] for row in PAPER_SET]}")
    epochs = base.train.epochs
    if fine_tune_after is None and epochs < 2 and any(freeze == "fine_tune" for _, _, freeze in chosen):
        # The frozen epochs are derived from the epochs: name the epochs, the setting that was given.
        raise SettingError("train.epochs", epochs, "at least 2 for the study's 'VGG16 fine-tuned' run, which trains "
                           "its encoder frozen for the first half of the epochs and fine-tuned for the rest")
    after = fine_tune_after if fine_tune_after is not None else max(1, epochs // 2)
    notes: list[str] = []
    runs = []
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
        # A name typed for the study names each of its runs: "baseline: ResNet50".
        name = f"{base.name}: {label}" if base.name else label
        try:
            model = replace(
                base.model, encoder=encoder, weights=w, freeze=freeze if pretrained else "trainable",
                fine_tune_after=after if freeze == "fine_tune" else 0,
            )
            cfg = replace(base, model=model, name=name[:200])
        except ValueError as exc:
            raise ValueError(f"the study's {label!r} run cannot train: {exc}") from None
        runs.append({"label": label, "encoder": encoder, "weights": w, "freeze": freeze, "config": cfg})
    return runs, notes


def queue_sweep(
    base: RunConfig,
    ws: Workspace | None = None,
    *,
    weights: str = "imagenet",
    fine_tune_after: int | None = None,
    models: tuple[str, ...] | None = None,
    actor: Actor | None = None,
) -> dict[str, Any]:
    """Queue the paper's set on ``base.train.dataset`` with one split and seed: every run, or none.

    Every run's settings are built and checked (as ``launch`` checks them)
    before the first is queued; the queue worker starts once all are queued.

    Args:
        base: settings shared by every run (dataset, image size, epochs, seed, split, ...);
            its name, when given, starts each run's name.
        ws: the workspace.
        weights: ``"imagenet"`` (where cached, else none with a note), ``"none"`` or a file path.
        fine_tune_after: frozen epochs of "VGG16 fine-tuned" (default: half the epochs).
        models: labels from ``PAPER_SET`` to run (default: all).
        actor: who queues them (default: the local user); AccessDenied before anything is queued if they may not launch.

    Returns:
        The sweep record (``sweep_id``, ``runs`` with label and run id, ``notes``),
        also saved as ``sweeps/<sweep_id>/sweep.json``.

    Raises:
        ValueError: settings one of the runs cannot train with (nothing is queued then).
    """
    from segcore.data.split import split_ids
    from segcore.runs import delete_run
    from segcore.queue.launcher import dataset_record, ensure_worker, launch, prepare_launch

    actor = actor or local_actor()
    require(actor, "launch")
    ws = ws or get_workspace()
    planned, notes = study_configs(base, weights=weights, fine_tune_after=fine_tune_after, models=models)
    dataset, record = dataset_record(ws, base.train.dataset)
    subsets = {s.id: s.subset for s in dataset.info.samples}
    split = split_ids(dataset.ids, base.train.split, subsets).to_dict()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    sweep_id = f"sweep-{stamp}-{base.train.dataset}"[:64]
    for entry in planned:  # every launch-time check, before the first run is queued
        try:
            prepare_launch(entry["config"], ws, split=split)
        except ValueError as exc:
            raise ValueError(f"the study's {entry['label']!r} run cannot train: {exc}") from None
    runs: list[dict[str, Any]] = []
    try:
        for entry in planned:
            cfg = entry["config"]
            cfg = replace(cfg, tags=tuple(dict.fromkeys([*cfg.tags, sweep_id])))
            run_id = launch(cfg, ws, split=split, extra={"sweep": {"id": sweep_id, "label": entry["label"]}}, start_worker=False,
                            actor=actor, detail=f"study {sweep_id}: {entry['label']}")
            runs.append({k: entry[k] for k in ("label", "encoder", "weights", "freeze")} | {"run_id": run_id})
    except BaseException:
        for r in runs:  # a study is queued whole or not at all
            try:
                delete_run(r["run_id"], ws, force=True, actor=actor)
            except (OSError, ValueError):
                pass
        raise
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

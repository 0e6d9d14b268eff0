"""Seeds, folds and ensembles: one setting trained several times, its spread, and the runs' average as one model.

- ``queue_seeds(cfg, seeds=N)``: N runs of the same settings and split with
  training seeds ``seed .. seed + N - 1``: the spread of a metric over them
  is what a difference between two settings must beat to count as a win.
- ``queue_folds(cfg, folds=K)``: the split's test images stay the test
  images; its training and validation images are pooled and cut into K
  folds (shuffled with the split's seed); run k validates on fold k and
  trains on the rest.
- A group's runs are kept together in ``<workspace>/groups/<id>/group.json``
  and tagged with the group id; ``group_summary`` gives the mean, standard
  deviation, minimum and maximum of each test figure over the finished runs,
  and ``evaluate_ensemble`` scores the average of their probabilities
  (``EnsemblePredictor``) on the common test split, at the labels' own
  resolution, into ``groups/<id>/evaluation.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segcore.access import Actor, local_actor, require
from segcore.config import RunConfig
from segcore.fsutil import check_name, read_json, write_json_atomic
from segcore.runrecord import RunRecord
from segcore.runs import open_run
from segcore.workspace import Workspace, get_workspace

KINDS = ("seeds", "folds")
SUMMARY_KEYS = ("all_dice", "macro_dice", "macro_iou", "all_hd95", "all_nsd", "ece", "pixel_accuracy")


def group_dir(ws: Workspace, group_id: str) -> Path:
    return ws.root / "groups" / check_name(group_id, "group id")


def fold_splits(split: dict[str, list[str]], folds: int, seed: int) -> list[dict[str, list[str]]]:
    """K splits from one: the same test ids; train + val pooled, shuffled with ``seed`` and cut into K folds.

    Raises:
        ValueError: fewer pooled images than folds, or K < 2.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    pool = list(split.get("train", [])) + list(split.get("val", []))
    if len(pool) < folds:
        raise ValueError(f"{len(pool)} training and validation images cannot make {folds} folds")
    order = [pool[i] for i in np.random.default_rng([int(seed), 11]).permutation(len(pool))]
    chunks = [order[k::folds] for k in range(folds)]
    return [{"train": [i for j, c in enumerate(chunks) if j != k for i in c], "val": chunks[k],
             "test": list(split.get("test", []))} for k in range(folds)]


def _queue(base: RunConfig, ws: Workspace, kind: str, members: Sequence[tuple[RunConfig, dict[str, list[str]], dict]],
           split: dict[str, list[str]], actor: Actor | None = None) -> dict[str, Any]:
    from segcore.queue.launcher import dataset_record, ensure_worker, launch

    actor = actor or local_actor()
    require(actor, "launch")

    _, record = dataset_record(ws, base.train.dataset)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    group_id = f"{kind}-{stamp}-{base.train.dataset}"[:64]
    configs = [replace(cfg, tags=tuple(dict.fromkeys([*cfg.tags, group_id]))) for cfg, _, _ in members]
    from segcore.queue.launcher import check_config

    for cfg in configs:  # every run's settings are checked before any is queued: all or nothing
        check_config(cfg)
    runs = []
    for cfg, (_, run_split, info) in zip(configs, members):
        run_id = launch(cfg, ws, split=run_split, extra={"group": {"id": group_id, "kind": kind, **info}}, start_worker=False,
                        actor=actor, detail=f"{kind} group {group_id}")
        runs.append({"run_id": run_id, **info})
    ensure_worker(ws)
    out = {"group_id": group_id, "kind": kind, "dataset": record, "test": list(split.get("test", [])), "runs": runs,
           "created_at": stamp}
    write_json_atomic(group_dir(ws, group_id) / "group.json", out)
    return out


def _base_split(base: RunConfig, ws: Workspace) -> dict[str, list[str]]:
    from segcore.data.dataset import load_dataset
    from segcore.data.split import split_ids

    dataset = load_dataset(base.train.dataset, ws)
    subsets = {s.id: s.subset for s in dataset.info.samples}
    return split_ids(dataset.ids, base.train.split, subsets).to_dict()


def queue_seeds(base: RunConfig, ws: Workspace | None = None, *, seeds: int, actor: Actor | None = None) -> dict[str, Any]:
    """Queue ``seeds`` runs of ``base`` on one split, training seeds ``seed``, ``seed + 1``, ...; returns the group record."""
    ws = ws or get_workspace()
    if seeds < 2:
        raise ValueError(f"seeds must be at least 2 to show a spread, got {seeds}")
    split = _base_split(base, ws)
    first = int(base.train.seed)
    members = []
    for n in range(seeds):
        name = f"{base.name} seed {first + n}" if base.name else f"seed {first + n}"
        cfg = replace(base, train=replace(base.train, seed=first + n), name=name)
        members.append((cfg, split, {"index": n, "seed": first + n}))
    return _queue(base, ws, "seeds", members, split, actor)


def queue_folds(base: RunConfig, ws: Workspace | None = None, *, folds: int, actor: Actor | None = None) -> dict[str, Any]:
    """Queue ``folds`` runs of ``base``, run k validating on fold k of the pooled training images; returns the group record."""
    ws = ws or get_workspace()
    split = _base_split(base, ws)
    members = []
    for k, run_split in enumerate(fold_splits(split, folds, int(base.train.split.seed))):
        name = f"{base.name} fold {k + 1}/{folds}" if base.name else f"fold {k + 1}/{folds}"
        members.append((replace(base, name=name), run_split, {"index": k, "fold": k + 1, "folds": folds}))
    return _queue(base, ws, "folds", members, split, actor)


def read_group(ws: Workspace, group_id: str) -> dict[str, Any]:
    path = group_dir(ws, group_id) / "group.json"
    if not path.is_file():
        folder = ws.root / "groups"
        known = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise FileNotFoundError(f"no group {group_id!r} in {folder}; groups are {known}")
    return read_json(path)


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (0 for one value), min and max of the finite values, and how many."""
    v = np.asarray([x for x in values if isinstance(x, (int, float)) and np.isfinite(x)], np.float64)
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def group_summary(ws: Workspace, group_id: str) -> dict[str, Any]:
    """Per test figure, its spread over the group's finished runs; and the runs' states."""
    group = read_group(ws, group_id)
    tests, states = [], {}
    for entry in group["runs"]:
        summary = open_run(entry["run_id"], ws).summary()
        states[entry["run_id"]] = summary.state
        if summary.state == "finished":
            tests.append(summary.test or {})
    return {"group_id": group_id, "kind": group["kind"], "runs": states,
            "metrics": {k: spread([t.get(k) for t in tests]) for k in SUMMARY_KEYS}}


@dataclass
class EnsemblePredictor:
    """Several runs' predictors as one: the mean of their probabilities (each at the image's own size)."""

    members: list

    def __post_init__(self):
        if not self.members:
            raise ValueError("an ensemble needs at least one finished run with a checkpoint")
        heads = {(p.mode, tuple(p.class_names)) for p in self.members}
        if len(heads) != 1:
            raise ValueError(f"the runs predict different heads {sorted(heads)}; an ensemble needs one")
        first = self.members[0]
        self.mode, self.class_names, self.channels = first.mode, first.class_names, first.channels
        self.image_size, self.fit = first.image_size, "ensemble"

    @property
    def labels(self):
        return self.members[0].labels

    def predict_probs(self, image: np.ndarray) -> np.ndarray:
        total = None
        for p in self.members:
            probs = p.predict_probs(image)
            total = probs if total is None else total + probs
        return total / len(self.members)

    def predict_mask(self, image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return self.labels.to_mask(self.predict_probs(image), threshold)


def evaluate_ensemble(ws: Workspace, group_id: str, *, write: bool = True) -> dict[str, Any]:
    """Score the mean of the group's finished runs on the common test split; kept as ``groups/<id>/evaluation.json``.

    Raises:
        ValueError: no test images, or no finished run.
    """
    from segcore.data.dataset import load_dataset
    from segcore.evaluation.run import report_record, score_images
    from segcore.prediction import Predictor

    group = read_group(ws, group_id)
    if not group.get("test"):
        raise ValueError(f"group {group_id} has no test images to evaluate an ensemble on")
    members = []
    for entry in group["runs"]:
        run = open_run(entry["run_id"], ws)
        if run.summary().state == "finished" and run.has_model:
            members.append(Predictor.from_folder(run))
    if not members:
        raise ValueError(f"group {group_id} has no finished run yet")
    dataset = load_dataset(group["dataset"]["name"], ws)
    report, _ = score_images(EnsemblePredictor(members), dataset, group["test"])
    record = report_record(report, group["test"])
    record.update(group_id=group_id, members=[m.run_id for m in members], resolution="native")
    if write:
        write_json_atomic(group_dir(ws, group_id) / "evaluation.json", record)
    return record


def run_spreads(ws: Workspace, records: dict[str, RunRecord | None]) -> dict[str, dict[str, Any]]:
    """For each run (id -> its ``RunRecord``, None where unreadable) that belongs to a group: its group's spread
    of the headline.

    Returns:
        ``{run_id: {"group_id", "kind", "n", "mean", "std"}}``; runs outside a group, or whose group has
        fewer than two finished runs, are left out.
    """
    out: dict[str, dict[str, Any]] = {}
    cache: dict[str, dict[str, Any]] = {}
    for run_id, record in records.items():
        group = (record.group if record is not None else None) or {}
        gid = group.get("id")
        if not gid:
            continue
        if gid not in cache:
            try:
                cache[gid] = group_summary(ws, gid)["metrics"]["all_dice"]
            except (FileNotFoundError, ValueError, KeyError):
                cache[gid] = {"n": 0}
        s = cache[gid]
        if s.get("n", 0) >= 2:
            out[run_id] = {"group_id": gid, "kind": group.get("kind"), "n": s["n"], "mean": s["mean"], "std": s["std"]}
    return out

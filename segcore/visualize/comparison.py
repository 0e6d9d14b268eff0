"""What the Compare page puts side by side: runs that can be compared, and the images to show.

Pure functions over run summaries, prediction indexes (``predictions/index.json``)
and evaluation reports as the run folders hold them; nothing here reads a file.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from segcore.runrecord import RunRecord
from segcore.visualize.tables import worst_images

MAX_IMAGES = 8  # image rows the page shows at most


def comparable_runs(summaries: Iterable[Any]) -> dict[str, list[Any]]:
    """Finished runs grouped by dataset, for the datasets with at least two (runs compare only on one dataset).

    Args:
        summaries: ``RunSummary`` records (any state).

    Returns:
        ``{dataset: [summaries in the given order]}``, datasets in first-seen order.
    """
    groups: dict[str, list[Any]] = {}
    for s in summaries:
        if s.state == "finished":
            groups.setdefault(s.dataset, []).append(s)
    return {name: runs for name, runs in groups.items() if len(runs) >= 2}


def trained_on_older_data(records: Iterable[RunRecord | None], content_hash: str | None) -> bool:
    """Whether any run (its ``RunRecord``; None where unreadable) was trained on another version of the dataset
    than ``content_hash`` (its scores are older)."""
    hashes = {r.dataset.content_hash for r in records if r is not None} - {None, ""}
    return bool(content_hash and hashes and hashes != {content_hash})


def shared_images(dataset_ids: Sequence[str], indexes: Iterable[Mapping[str, Any]]) -> list[str]:
    """Images every run has a saved prediction of, in the dataset's order."""
    shared: set[str] | None = None
    for index in indexes:
        ids = {str(i) for i in index.get("ids") or []}
        shared = ids if shared is None else shared & ids
    return [i for i in dataset_ids if i in (shared or set())]


def image_choices(dataset_ids: Sequence[str], indexes: Sequence[Mapping[str, Any]]) -> tuple[list[str], bool]:
    """The images to offer and whether every run has them saved.

    Returns:
        ``(ids, shared)``: the images all runs were tested on (``shared``
        True); else the first run's tested images; else the whole dataset.
        Images without a saved prediction are predicted with the run's model.
    """
    shared = shared_images(dataset_ids, indexes)
    if shared:
        return shared, True
    first = {str(i) for i in (indexes[0].get("ids") or [])} if indexes else set()
    return [i for i in dataset_ids if i in first] or list(dataset_ids), False


def worst_images_per_run(reports: Mapping[str, Mapping[str, Any] | None], labels: Mapping[str, str],
                         dataset_ids: Sequence[str], n: int, limit: int = MAX_IMAGES) -> dict[str, list[str]]:
    """Each run's ``n`` lowest-scoring test images (macro Dice), with the runs each is among the worst for.

    Args:
        reports: run id -> its evaluation report (``evaluation.json``), or None.
        labels: run id -> the label people see.
        dataset_ids: the dataset's ids (images no longer in it are left out).
        n: images per run.
        limit: images in all, at most.

    Returns:
        ``{image id: [run labels]}`` in run order, at most ``limit`` images.
    """
    known = set(dataset_ids)
    worst: dict[str, list[str]] = {}
    for run_id, report in reports.items():
        for sid in worst_images((report or {}).get("per_image", ()), n=int(n)):
            if sid in known:
                worst.setdefault(sid, []).append(labels.get(run_id, run_id))
    return dict(list(worst.items())[:limit])


def rank_runs(reports: Mapping[str, Mapping[str, Any] | None],
              spread: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Runs ordered by the headline (Dice over every class), best first; runs without it last.

    Args:
        reports: run label -> evaluation record.
        spread: run label -> the standard deviation of the headline over the
            seeds (or folds) of its setting, where it was measured.

    Returns:
        ``[{"label", "value", "degenerate", "warnings", "within_spread"}]``:
        ``degenerate`` is true when the evaluation found a near-constant output
        or a collapsed class; such a run is listed after every run that is
        not. ``within_spread`` is true for a run whose gap to the first is no
        larger than the seed-to-seed spread of either: not a loss, so the
        first is not a win over it.
    """
    rows = []
    for label, report in reports.items():
        report = report or {}
        value = (report.get("all") or {}).get("dice")
        rows.append({"label": label, "value": value if isinstance(value, (int, float)) else None,
                     "degenerate": bool(report.get("degenerate")),
                     "warnings": [w for w in report.get("warnings") or [] if "near-constant" in w or "collapsed" in w]})
    rows = sorted(rows, key=lambda r: (r["value"] is None, r["degenerate"], -(r["value"] or 0.0)))
    spread = spread or {}
    top = rows[0] if rows else None
    for r in rows:
        margin = max(spread.get(r["label"]) or 0.0, spread.get(top["label"]) or 0.0) if top else 0.0
        r["within_spread"] = bool(r is not top and margin > 0 and r["value"] is not None and top["value"] is not None
                                  and not r["degenerate"] and top["value"] - r["value"] <= margin)
    return rows

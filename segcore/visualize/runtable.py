"""Runs as people see them: the label of each run, the runs table and its filters, durations, the quick start's duration note."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pandas as pd

from segcore.run_review import SETTING_COLUMNS, run_settings

if TYPE_CHECKING:
    from segcore.runs import RunSummary


def runs_frame(summaries: Iterable[RunSummary], now: float | None = None) -> pd.DataFrame:
    """Run summaries (``segcore.runs.list_runs``) as the Runs table.

    Returns:
        DataFrame with columns ``run`` (the label of ``run_labels``), ``id`` (the run id), ``status``, ``dataset``, ``model``,
        ``encoder``, ``best val Dice``, ``test Dice, all classes`` (the headline), ``test Dice`` (macro),
        ``epochs`` (done/planned), ``duration``
        (finished - started, or so far for a running run; ``now`` is the time
        in seconds since the epoch, default the current time), ``device`` (``run_device``), ``warnings``,
        ``tags``, ``created``, then the settings of ``segcore.run_review.SETTING_COLUMNS`` (``learning rate``,
        ``image size``, ``batch``, ``norm``, ``loss``, ``encoder``, ``max epochs``; empty for a run whose
        settings cannot be read).
    """
    summaries = list(summaries)
    labels = run_labels(summaries)
    rows = []
    for s in summaries:
        rows.append(
            {
                "run": labels[s.run_id],
                "id": s.run_id,
                "status": s.state,
                "dataset": s.dataset,
                "model": s.model,
                "encoder": s.encoder,
                "best val Dice": s.best_val_dice,
                "epochs": f"{s.epoch}/{s.epochs}" if s.epochs else str(s.epoch),
                "test Dice, all classes": s.test.get("all_dice"),
                "test Dice": s.test.get("macro_dice"),
                "duration": format_duration(_elapsed(s.started_at, s.finished_at, now)),
                "device": run_device(s),
                "warnings": "; ".join(s.warnings),
                "tags": ", ".join(s.tags),
                "created": s.created_at,
                # The encoder column is the summary's (as the search reads it); the other settings come from the config.
                **{k: v for k, v in run_settings(s.config).items() if k != "encoder"},
            }
        )
    cols = ["run", "id", "status", "dataset", "model", "encoder", "best val Dice", "test Dice, all classes", "test Dice", "epochs",
            "duration", "device", "warnings", "tags", "created"]
    cols += [c for c in SETTING_COLUMNS if c not in cols]
    df = pd.DataFrame(rows, columns=cols)
    for col in ("learning rate", "image size", "batch", "max epochs"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    # Scores not measured yet are missing numbers (a blank cell), not Python None shown as the word "None".
    for col in ("best val Dice", "test Dice, all classes", "test Dice"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def run_device(summary: RunSummary) -> str:
    """Where a run trains or trained: ``GPU 1 (NVIDIA H100) · node-3 · ray``; the engine is named when it is Ray."""
    parts = [summary.devices, summary.host if summary.engine == "ray" else "", "ray" if summary.engine == "ray" else ""]
    return " · ".join(p for p in parts if p)


def filter_runs(summaries: Iterable[RunSummary], states: Iterable[str] = (), datasets: Iterable[str] = (),
                query: str = "", *, encoders: Iterable[str] = (), losses: Iterable[str] = ()) -> list[RunSummary]:
    """The runs the Runs table shows for its filters, in the order given.

    Args:
        summaries: every run (labels are made unique over all of them, as in ``run_labels``).
        states: keep runs in one of these states (none: any state).
        datasets: keep runs on one of these datasets (none: any dataset).
        query: keep runs whose label, id, model, encoder, tags, notes or
            warnings contain it, ignoring case and surrounding spaces (blank: all).
        encoders: keep runs with one of these encoders (``none``: the plain U-Net; none given: any).
        losses: keep runs trained with one of these losses (as set: ``auto`` is a loss here; none given: any).
    """
    summaries = list(summaries)
    labels = run_labels(summaries)
    states, datasets, encoders, losses = set(states), set(datasets), set(encoders), set(losses)
    q = query.strip().lower()
    out = []
    for s in summaries:
        if (states and s.state not in states) or (datasets and s.dataset not in datasets):
            continue
        if (encoders and s.encoder not in encoders) or (losses and run_settings(s.config)["loss"] not in losses):
            continue
        if q:
            hay = " ".join([labels[s.run_id], s.run_id, s.model, s.encoder, ", ".join(s.tags), s.notes, "; ".join(s.warnings)])
            if q not in hay.lower():
                continue
        out.append(s)
    return out


# A run id starts with its UTC creation time, ``yyyymmdd-HHMMSS-`` (see ``segcore.runs.new_run_id``).
_RUN_STAMP = re.compile(r"^\d{8}-\d{6}-")


def short_run_id(run_id: str) -> str:
    """A run id without its leading time stamp: ``20261122-203045-unet-d4f32-demo-1a2b`` -> ``unet-d4f32-demo-1a2b``."""
    return _RUN_STAMP.sub("", str(run_id)) or str(run_id)


def run_label(summary: RunSummary) -> str:
    """How a run is shown everywhere: its name where one was given, else its short id (``short_run_id``)."""
    return summary.name.strip() or short_run_id(summary.run_id)


def run_labels(summaries: Iterable[RunSummary]) -> dict[str, str]:
    """Run id -> ``run_label``, made unique: runs that share a name get their id's random suffix added
    (``baseline · 1a2b``), so selectors, legends and table rows never merge two runs.
    """
    items = [(s.run_id, run_label(s)) for s in summaries]
    counts: dict[str, int] = {}
    for _, label in items:
        counts[label] = counts.get(label, 0) + 1
    out = {}
    for run_id, label in items:
        out[run_id] = f"{label} · {run_id.rsplit('-', 1)[-1]}" if counts[label] > 1 else label
    return out


def format_duration(seconds: Any) -> str:
    """``3725`` -> ``"1h 02m"``, ``75`` -> ``"1m 15s"``, ``None`` -> ``""``."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):  # None or not a number: no duration to show
        return ""
    if math.isnan(s):
        return ""
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def quick_start_duration_note(measured: Mapping[str, Any], past: Sequence[RunSummary] = ()) -> str:
    """How long the quick start takes, in measured figures only.

    Args:
        measured: ``segcore.quickstart.MEASURED`` (``seconds``, ``test_dice``, ``cpus`` from ``bench/quick_start.py``).
        past: finished quick-start runs of this workspace (``RunSummary``), newest first.

    Returns:
        A sentence: the benchmark's figure, then (when there is one) how long it took here last time,
        each from pressing the button to a finished, tested run.
    """
    parts = []
    if measured.get("seconds"):
        dice = measured.get("test_dice")
        parts.append(
            f"Measured from the press to a finished, tested run: {format_duration(measured['seconds'])} on "
            f"{measured.get('cpus', '?')} CPU cores shared with other work" + (f" (test Dice {dice:.2f})" if dice else "")
            + "; a GPU or idle cores make it shorter."
        )
    if past:
        last = past[0]
        seconds = _elapsed(last.created_at, last.finished_at, None)
        if seconds is not None:
            dice = last.test.get("macro_dice")
            parts.append(f"Here it last took {format_duration(seconds)}" + (f" (test Dice {dice:.2f})." if dice is not None else "."))
    return " ".join(parts) or "Its duration has not been measured on this machine yet."


def _elapsed(started: Any, finished: Any, now: float | None) -> float | None:
    start = _parse_time(started)
    if start is None:
        return None
    end = _parse_time(finished)
    if end is None:
        import time

        end = time.time() if now is None else now
    return max(0.0, end - start)


def _parse_time(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


ACTION_WORDS = {"launch": "launched", "stop": "stopped", "resume": "resumed", "notes": "edited the notes",
                "tags": "set the tags", "delete": "deleted"}


def audit_rows(entries) -> list[dict[str, str]]:
    """A run's audit records (``RunFolder.read_audit``) as table rows, newest first: When (UTC), Who, Role, Action, Detail."""
    rows = []
    for e in reversed(list(entries)):
        when = e.at.replace("T", " ").rstrip("Z")[:19] if e.at else ""
        rows.append({"When (UTC)": when, "Who": e.who, "Role": e.role, "Action": ACTION_WORDS.get(e.action, e.action),
                     "Detail": e.detail})
    return rows


def imported_by_text(source: dict) -> str | None:
    """"Imported by ana@lab.org (trainer), 2026-12-04 20:30 UTC" from a dataset's ``source`` record, or None if absent."""
    by = source.get("imported_by") if isinstance(source, dict) else None
    if not isinstance(by, dict) or not isinstance(by.get("who"), str):
        return None
    at = str(by.get("at") or "").replace("T", " ")[:16]
    return f"Imported by {by['who']}" + (f" ({by['role']})" if isinstance(by.get("role"), str) else "") + (f", {at} UTC" if at else "")

"""Runs as people see them: the label of each run, the runs table, durations, the quick start's duration note."""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd


def runs_frame(summaries: Iterable[Any], now: float | None = None) -> pd.DataFrame:
    """Run summaries (dicts or objects from ``segcore.runs.list_runs``) as the Runs table.

    Known fields are picked by name and missing ones left empty, so the table
    keeps working as summaries gain fields.

    Returns:
        DataFrame with columns ``run`` (the label of ``run_labels``), ``id`` (the run id), ``status``, ``dataset``, ``model``,
        ``encoder``, ``best val Dice``, ``test Dice``, ``epochs``, ``duration``
        (finished - started, or so far for a running run; ``now`` is the time
        in seconds since the epoch, default the current time), ``warnings``,
        ``tags``, ``created``.
    """
    summaries = list(summaries)
    labels = run_labels(summaries)
    rows = []
    for s in summaries:
        d = _as_dict(s)
        cfg = d.get("config") or {}
        cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
        model = cfg.get("model", {}) if isinstance(cfg, Mapping) else {}
        train = cfg.get("train", {}) if isinstance(cfg, Mapping) else {}
        encoder = d.get("encoder") or model.get("encoder") or "none"
        if d.get("model"):
            model_desc = str(d["model"])
        elif encoder in ("none", "", None):
            model_desc = f"U-Net d{model.get('depth', '?')} f{model.get('filters', '?')}" if model else ""
        else:
            model_desc = f"{encoder} ({model.get('freeze', 'trainable')})"
        warnings = d.get("warnings") or ()
        if isinstance(warnings, (list, tuple)):
            warnings = "; ".join(str(w.get("message", w)) if isinstance(w, Mapping) else str(w) for w in warnings)
        tags = d.get("tags") or (cfg.get("tags", ()) if isinstance(cfg, Mapping) else ())
        epochs_done = _first(d, "epochs_done", "epoch", "epochs_completed")
        epochs_total = _first(d, "epochs_total", "epochs") or train.get("epochs")
        epochs = f"{epochs_done}/{epochs_total}" if epochs_done is not None and epochs_total else (epochs_done if epochs_done is not None else "")
        rows.append(
            {
                "run": labels.get(_run_id(d), _run_id(d)),
                "id": _run_id(d),
                "status": d.get("status") or d.get("state") or "",
                "dataset": d.get("dataset") or train.get("dataset", ""),
                "model": model_desc,
                "encoder": encoder,
                "best val Dice": _num(_first(d, "best_val_dice", "best_dice", "best_metric")),
                "epochs": str(epochs),
                "test Dice": _num(_first(d.get("test") or {}, "dice", "macro_dice", "dice_macro")),
                "duration": format_duration(_first(d, "duration_s", "duration", "elapsed_s") or _elapsed(d.get("started_at"), d.get("finished_at"), now)),
                "warnings": warnings or "",
                "tags": ", ".join(tags) if isinstance(tags, (list, tuple)) else str(tags or ""),
                "created": d.get("created_at") or d.get("created") or "",
            }
        )
    cols = ["run", "id", "status", "dataset", "model", "encoder", "best val Dice", "test Dice", "epochs", "duration", "warnings", "tags", "created"]
    return pd.DataFrame(rows, columns=cols)


def _run_id(d: Mapping[str, Any]) -> str:
    return str(d.get("run_id") or d.get("id") or "")


# A run id starts with its UTC creation time, ``yyyymmdd-HHMMSS-`` (see ``segcore.runs.new_run_id``).
_RUN_STAMP = re.compile(r"^\d{8}-\d{6}-")


def short_run_id(run_id: str) -> str:
    """A run id without its leading time stamp: ``20261122-203045-unet-d4f32-demo-1a2b`` -> ``unet-d4f32-demo-1a2b``."""
    return _RUN_STAMP.sub("", str(run_id)) or str(run_id)


def run_label(summary: Any) -> str:
    """How a run is shown everywhere: its name where one was given, else its short id (``short_run_id``)."""
    d = _as_dict(summary)
    name = str(d.get("name") or "").strip()
    return name or short_run_id(_run_id(d))


def run_labels(summaries: Iterable[Any]) -> dict[str, str]:
    """Run id -> ``run_label``, made unique: runs that share a name get their id's random suffix added
    (``baseline · 1a2b``), so selectors, legends and table rows never merge two runs.
    """
    items = [(_run_id(_as_dict(s)), run_label(s)) for s in summaries]
    counts: dict[str, int] = {}
    for _, label in items:
        counts[label] = counts.get(label, 0) + 1
    out = {}
    for run_id, label in items:
        out[run_id] = f"{label} · {run_id.rsplit('-', 1)[-1]}" if counts[label] > 1 else label
    return out


def format_duration(seconds: Any) -> str:
    """``3725`` -> ``"1h 02m"``, ``75`` -> ``"1m 15s"``, ``None`` -> ``""``."""
    s = _num(seconds)
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return ""
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def quick_start_duration_note(measured: Mapping[str, Any], past: Sequence[Any] = ()) -> str:
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
        last = _as_dict(past[0])
        seconds = _elapsed(last.get("created_at"), last.get("finished_at"), None)
        if seconds is not None:
            dice = _num((last.get("test") or {}).get("macro_dice"))
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


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    return dict(vars(obj))


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

"""Looking at runs side by side and while they train: their settings, how two runs' settings differ,
settings against a score, the pace of training, smoothed curves and where the TensorBoard logs are.

Everything here is plain data in, plain data out (numbers, dicts, ``pandas`` frames); the Runs and
Train pages show it, ``segcore.visualize`` draws it. Only ``run_pace`` and ``tensorboard_logdir`` look
at a run folder (a ``segcore.runs.RunFolder``, read through its own methods).
"""

from __future__ import annotations

import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from segcore.config import RunConfig
from segcore.runfiles import RunFileError

# -- the settings people compare runs by ----------------------------------------------------------

# Column of the runs table -> where it comes from in the settings (``RunConfig``).
SETTING_COLUMNS = {
    "learning rate": "train.learning_rate",
    "image size": "train.image_size",
    "batch": "train.batch_size",
    "norm": "model.norm",
    "loss": "train.loss",
    "encoder": "model.encoder",
    "max epochs": "train.epochs",
}
# Settings that are names, not numbers: drawn as one tick per name.
CATEGORICAL_SETTINGS = ("norm", "loss", "encoder")


def run_settings(config: RunConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings of ``SETTING_COLUMNS`` for one run, by column name.

    Args:
        config: the run's ``RunConfig``, or the ``config`` object of its ``config.json``
            (``RunSummary.config``); empty or None for a run whose settings cannot be read.

    Returns:
        ``{"learning rate": 0.001, "image size": 128, "batch": 8, "norm": "group", "loss": "auto",
        "encoder": "none", "max epochs": 20}``. The learning rate is the one the run starts from (the
        encoder's own when the settings leave it to the default); ``norm`` is the normalisation in
        effect (older settings' ``batch_norm`` counted). Every value is None when the settings are
        missing or cannot be read.
    """
    empty = dict.fromkeys(SETTING_COLUMNS)
    if not config:
        return empty
    try:
        cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config, stored=True)
    except (ValueError, TypeError):  # settings of the wrong shape: the run is listed as damaged elsewhere
        return empty
    return {
        "learning rate": cfg.learning_rate,
        "image size": cfg.train.image_size,
        "batch": cfg.train.batch_size,
        "norm": cfg.model.norm,
        "loss": cfg.train.loss,
        "encoder": cfg.model.encoder,
        "max epochs": cfg.train.epochs,
    }


def flatten_settings(config: RunConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Nested settings as one level with dotted keys: ``{"train": {"learning_rate": 0.001}}`` -> ``{"train.learning_rate": 0.001}``.

    Lists become tuples (so values compare and hash alike); an empty nested object is kept as ``{}``.
    """
    data = config.to_dict() if isinstance(config, RunConfig) else config
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, (list, tuple)):
            out[prefix] = tuple(value)
        else:
            out[prefix] = value

    walk("", dict(data or {}))
    return out


class _NotSet:
    """A setting one run has and the other does not (settings written by another version)."""

    def __repr__(self) -> str:
        return "NOT_SET"


NOT_SET = _NotSet()


@dataclass(frozen=True)
class SettingDifference:
    """One setting of two runs: its dotted key, each run's value (``NOT_SET`` where absent), whether they differ."""

    key: str
    a: Any
    b: Any

    @property
    def differs(self) -> bool:
        return not _same(self.a, self.b)


def setting_differences(a: RunConfig | Mapping[str, Any], b: RunConfig | Mapping[str, Any], *,
                        everything: bool = False) -> list[SettingDifference]:
    """The settings of two runs, side by side: only those that differ, or every one.

    Args:
        a, b: each run's ``RunConfig`` or ``config.json`` ``config`` object. Settings that make a
            ``RunConfig`` are compared as one (every default spelled out, so runs saved by different
            versions line up); others (damaged, or partial) as they are.
        everything: every setting, equal or not (``differs`` tells them apart).

    Returns:
        ``SettingDifference``s in the order of ``a``'s settings, then those only ``b`` has.
    """
    fa, fb = flatten_settings(_complete(a)), flatten_settings(_complete(b))
    keys = list(fa) + [k for k in fb if k not in fa]
    rows = [SettingDifference(k, fa.get(k, NOT_SET), fb.get(k, NOT_SET)) for k in keys]
    return rows if everything else [r for r in rows if r.differs]


def _complete(config: RunConfig | Mapping[str, Any]) -> RunConfig | Mapping[str, Any]:
    if isinstance(config, RunConfig) or not config:
        return config
    try:
        return RunConfig.from_dict(config, stored=True)
    except (ValueError, TypeError):
        return config


def _same(x: Any, y: Any) -> bool:
    if x is NOT_SET or y is NOT_SET:
        return x is y
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return math.isclose(float(x), float(y), rel_tol=1e-12, abs_tol=0.0) or (math.isnan(x) and math.isnan(y))
    return x == y


def setting_text(value: Any) -> str:
    """A setting's value as a table cell: ``0.001``, ``true``, ``none``, ``a, b``; ``–`` for None, ``not set`` where absent."""
    if value is NOT_SET:
        return "not set"
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ", ".join(setting_text(v) for v in value) if value else "(none)"
    if isinstance(value, Mapping):
        return "{}" if not value else ", ".join(f"{k}: {setting_text(v)}" for k, v in value.items())
    return str(value)


# -- settings against a score ---------------------------------------------------------------------

# The scores runs can be drawn against: the headline the Runs page ranks by, and the one a run has while it trains.
SCORES = ("test Dice, all classes", "best val Dice")


def run_score(summary, score: str) -> float | None:
    """A run's score (``SCORES``) from its ``RunSummary``: test Dice over every class, or the best validation Dice."""
    if score == "test Dice, all classes":
        value = (summary.test or {}).get("all_dice")
    elif score == "best val Dice":
        value = summary.best_val_dice
    else:
        raise ValueError(f"unknown score {score!r}; expected one of {', '.join(SCORES)}")
    return float(value) if _is_number(value) else None


@dataclass(frozen=True)
class SettingsAgainstScore:
    """What a parallel-coordinates view of runs draws.

    ``frame``: one row per run that has a score and readable settings (index: run label), a column per
    setting that varies between them, then the score (column ``score``). ``constant``: the settings left
    out because every run drawn has the same value. ``left_out``: run label -> why it is not drawn.
    """

    frame: pd.DataFrame
    score: str
    constant: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> list[str]:
        """The varying settings drawn, in column order."""
        return [c for c in self.frame.columns if c != self.score]


def settings_against_score(settings: Mapping[str, Mapping[str, Any]], scores: Mapping[str, float | None],
                           score: str = "test Dice, all classes") -> SettingsAgainstScore:
    """Runs' settings (``run_settings``) next to a score, keeping only what can be drawn and what varies.

    Args:
        settings: run label -> ``run_settings`` of the run.
        scores: run label -> the score (None or NaN: not measured yet).
        score: the score's name, the last column of the frame.

    Returns:
        ``SettingsAgainstScore``. Runs without a score, or whose settings cannot be read, are left out
        (with the reason); settings equal for every run left are moved to ``constant``.
    """
    rows: dict[str, dict[str, Any]] = {}
    left_out: dict[str, str] = {}
    for label, values in settings.items():
        value = scores.get(label)
        if not _is_number(value):
            left_out[label] = "no score yet"
        elif all(v is None for v in values.values()):
            left_out[label] = "its settings cannot be read"
        else:
            rows[label] = {**values, score: float(value)}
    columns = list(next(iter(settings.values()), {}).keys())
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns + [score])
    constant: dict[str, Any] = {}
    if len(frame) >= 2:
        for col in columns:
            distinct = {setting_text(v) for v in frame[col]}
            if len(distinct) <= 1:
                constant[col] = frame[col].iloc[0]
        frame = frame.drop(columns=list(constant))
    return SettingsAgainstScore(frame=frame, score=score, constant=constant, left_out=left_out)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


# -- curves ---------------------------------------------------------------------------------------


def smooth(values: Sequence[float | None], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average with its start debiased.

    ``last = weight * last + (1 - weight) * y``, starting from ``last = 0``; the value shown after
    ``n`` finite points is ``last / (1 - weight ** n)``, so the first point is the first value itself
    rather than a fraction of it. Points that are not finite (NaN, None, inf) are passed through and
    do not move the average; a constant series is returned as it is.

    Args:
        values: the raw curve.
        weight: 0 (no smoothing) to below 1 (the dashboard offers up to 0.99).

    Returns:
        The smoothed curve, as many points as ``values``.
    """
    if not 0.0 <= float(weight) < 1.0:
        raise ValueError(f"smoothing weight {weight!r} must be at least 0 and below 1")
    ys = [math.nan if v is None else float(v) for v in values]
    finite = [y for y in ys if math.isfinite(y)]
    if weight == 0.0 or not finite or all(y == finite[0] for y in finite) and len(finite) == len(ys):
        return ys
    out, last, n = [], 0.0, 0
    for y in ys:
        if not math.isfinite(y):
            out.append(y)
            continue
        last = last * weight + (1.0 - weight) * y
        n += 1
        out.append(last / (1.0 - weight ** n))
    return out


# -- the pace of training -------------------------------------------------------------------------

# The parts of an epoch's wall time the trainer records in history.csv; together they are the time
# from one epoch's end to the next.
EPOCH_TIME_PARTS = ("time_steps", "time_validation", "time_health", "time_checkpoint", "time_other")


def epoch_seconds(history: Iterable[Mapping[str, Any]]) -> list[float]:
    """Each recorded epoch's wall time in seconds: the sum of its ``time_*`` parts, else its ``seconds``.

    Epochs with neither (histories written before the times were kept) are skipped.
    """
    out = []
    for row in history:
        parts = [row.get(k) for k in EPOCH_TIME_PARTS if _is_number(row.get(k))]
        if parts:
            out.append(float(sum(parts)))
        elif _is_number(row.get("seconds")):
            out.append(float(row["seconds"]))
    return out


@dataclass(frozen=True)
class EpochPace:
    """How fast a run trains and how long it has left.

    ``seconds_per_epoch``: the typical epoch (the mean of the epochs so far, the first, which
    compiles, left out once there are others); None before an epoch has ended. ``seconds_left``: the
    estimate for the epochs still planned, capped by the time budget when the run has one; None when
    unknown. ``limited_by``: ``"epochs"`` or ``"budget"``, what the estimate follows. ``running``:
    whether the run is training now (else the estimate is what a resumed run would need).
    """

    seconds_per_epoch: float | None
    epochs_done: int
    epochs_planned: int
    seconds_left: float | None = None
    limited_by: str = "epochs"
    running: bool = False
    budget_minutes: float | None = None

    @property
    def epochs_left(self) -> int:
        return max(0, self.epochs_planned - self.epochs_done)

    def text(self) -> str:
        """``"42 s per epoch · about 3 min left"``; ``""`` before the first epoch has ended.

        A run limited by its time budget says so; a stopped run with epochs to go says what a resume
        would take; a finished run gives its time per epoch alone.
        """
        if self.seconds_per_epoch is None:
            return ""
        parts = [f"{duration_words(self.seconds_per_epoch)} per epoch"]
        if self.seconds_left is not None and self.epochs_left:
            if self.running:
                left = "a few seconds left" if self.seconds_left < 10 else f"about {duration_words(self.seconds_left)} left"
                if self.limited_by == "budget" and self.budget_minutes:
                    left += f" (time budget of {duration_words(self.budget_minutes * 60)})"
            else:
                left = (f"{self.epochs_left} of {self.epochs_planned} epochs to go, "
                        f"about {duration_words(self.seconds_left)} when resumed")
            parts.append(left)
        return " · ".join(parts)


def epoch_pace(history: Sequence[Mapping[str, Any]], *, epochs_planned: int, running: bool,
               budget_minutes: float | None = None, budget_spent_s: float | None = None,
               now: float | None = None) -> EpochPace:
    """Time per epoch and time left, from a run's history.

    Args:
        history: ``history.csv`` rows (``RunFolder.read_history``).
        epochs_planned: the epochs the run will train (``status.json``'s ``epochs``, which a time
            budget revises as the run goes).
        running: whether the run is training now; the time since its last epoch ended (its
            ``ended_at``) then counts as part of the current epoch.
        budget_minutes: the run's time budget (``train.budget_minutes``), if any.
        budget_spent_s: training time counted against the budget so far (``checkpoints/state.json``);
            default the sum of the recorded epochs.
        now: the time in seconds since the epoch (default: now).

    Returns:
        ``EpochPace``.
    """
    times = epoch_seconds(history)
    done = max((int(r["epoch"]) for r in history if _is_number(r.get("epoch"))), default=0)
    planned = max(int(epochs_planned or 0), done)
    if not times:
        return EpochPace(None, done, planned, running=running, budget_minutes=budget_minutes)
    typical = float(np.mean(times[1:] if len(times) > 1 else times))
    in_epoch = 0.0
    last_end = history[-1].get("ended_at") if history else None
    if running and _is_number(last_end):
        now = time.time() if now is None else now
        in_epoch = min(max(0.0, now - float(last_end)), typical)  # an epoch running long is nearly done
    left = max(0.0, (planned - done) * typical - in_epoch)
    limited_by = "epochs"
    if budget_minutes:
        spent = float(budget_spent_s) if _is_number(budget_spent_s) else float(sum(times))
        budget_left = max(0.0, budget_minutes * 60.0 - spent - in_epoch)
        if budget_left < left:
            left, limited_by = budget_left, "budget"
    return EpochPace(typical, done, planned, left, limited_by, running, budget_minutes)


def run_pace(run, now: float | None = None) -> EpochPace:
    """``epoch_pace`` of a run folder (``segcore.runs.RunFolder``), from its history, status, settings and state.

    A file that cannot be read counts as empty: the pace is then unknown, never an error.
    """
    history = _or_default(run.read_history, [])
    status = _or_default(run.true_status, {})
    record = _or_default(run.read_record, None)
    state = _or_default(run.read_train_state, None) or {}
    budget = record.config.train.budget_minutes if record else None
    epochs = status.get("epochs") or (record.config.train.epochs if record else 0)
    return epoch_pace(history, epochs_planned=int(epochs), running=status.get("state") == "running",
                      budget_minutes=float(budget) if _is_number(budget) else None,
                      budget_spent_s=state.get("budget_spent_s"), now=now)


def _or_default(read, default):
    try:
        return read()
    except (RunFileError, OSError, ValueError):
        return default


def duration_words(seconds: float) -> str:
    """A length of time as people say it: ``4.2 s``, ``42 s``, ``3 min``, ``1 h 05 min``."""
    s = max(0.0, float(seconds))
    if s < 9.95:
        return f"{s:.1f} s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 3570:
        return f"{s / 60:.0f} min"
    hours, minutes = divmod(int(round(s / 60)), 60)
    return f"{hours} h {minutes:02d} min"


# -- TensorBoard ----------------------------------------------------------------------------------


def tensorboard_logdir(run) -> Path | None:
    """The run's TensorBoard log folder (``tensorboard/`` in the run folder) when it holds event files, else None.

    Runs on a machine without TensorFlow and TensorBoard train without these logs.
    """
    folder = Path(run.tensorboard_dir)
    try:
        return folder if folder.is_dir() and next(folder.rglob("events.out.tfevents*"), None) is not None else None
    except OSError:
        return None


def tensorboard_command(logdir: str | Path) -> str:
    """The command that serves ``logdir`` in TensorBoard, quoted for a POSIX shell: ``tensorboard --logdir /ws/runs/r1/tensorboard``."""
    return f"tensorboard --logdir {shlex.quote(str(logdir))}"

"""What each file of a run folder must hold, checked on every read.

Run folders are shared: a teammate, a script or a full disk may leave any file
half-written, empty, or valid JSON of the wrong shape (``[1, 2]``,
``{"queued_at": "soon"}``). Readers never trust them: ``segcore.runs`` reads
every file through these checks, and a file that fails them raises
``RunFileError`` naming the file and what is wrong with it, so the run is
listed as damaged instead of crashing the listing, a page or the queue.

Unknown extra keys are allowed (newer versions may add fields); the fields
that are there must have the right types.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import numbers
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

STATES = ("queued", "running", "finished", "failed", "stopped", "interrupted")


class RunFileError(ValueError):
    """A run folder file that is missing, unreadable, not JSON or of the wrong shape."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path} is damaged: {reason}")

    @property
    def name(self) -> str:
        """The file's name inside the run folder (``status.json``, ``checkpoints/state.json``)."""
        parent = self.path.parent.name
        return f"{parent}/{self.path.name}" if parent in ("checkpoints", "predictions") else self.path.name


# -- small type checks: each returns an error text or None --------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _describe(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def count(v: Any) -> str | None:
    return None if _is_int(v) and v >= 0 else f"expected a whole number >= 0, found {_describe(v)}"


def positive_int(v: Any) -> str | None:
    return None if _is_int(v) and v >= 1 else f"expected a whole number >= 1, found {_describe(v)}"


def number(v: Any) -> str | None:
    return None if _is_num(v) and math.isfinite(float(v)) else f"expected a finite number, found {_describe(v)}"


def text(v: Any) -> str | None:
    return None if isinstance(v, str) else f"expected a string, found {_describe(v)}"


def flag(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"expected true or false, found {_describe(v)}"


def obj(v: Any) -> str | None:
    return None if isinstance(v, dict) else f"expected a JSON object, found {_describe(v)}"


def texts(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        return f"expected a list of strings, found {_describe(v)}"
    return None


def numbers_list(v: Any) -> str | None:
    if not isinstance(v, list) or not all(_is_num(x) for x in v):
        return f"expected a list of numbers, found {_describe(v)}"
    return None


def optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda v: None if v is None else check(v)


def number_map(v: Any) -> str | None:
    if not isinstance(v, dict):
        return f"expected a JSON object of numbers, found {_describe(v)}"
    for key, value in v.items():
        if value is not None and not _is_num(value):
            return f"{key}: expected a number, found {_describe(value)}"
    return None


def one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"expected one of {list(choices)}, found {_describe(v)}"


def fields(path: Path, data: Any, spec: Mapping[str, Callable[[Any], str | None]], required: tuple[str, ...] = ()) -> dict:
    """Check a JSON object against ``spec`` (field -> check); raises RunFileError on the first bad field."""
    if not isinstance(data, dict):
        raise RunFileError(path, f"expected a JSON object, found {_describe(data)}")
    for name in required:
        if name not in data:
            raise RunFileError(path, f"field {name!r} is missing")
    for name, check in spec.items():
        if name in data:
            problem = check(data[name])
            if problem:
                raise RunFileError(path, f"field {name!r}: {problem}")
    return data


# -- reading -----------------------------------------------------------------------------


def load_json(path: str | Path) -> Any:
    """The JSON in ``path``. FileNotFoundError if absent; RunFileError if empty, not UTF-8 or not JSON."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise RunFileError(path, "is a folder, not a file") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RunFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise RunFileError(path, "the file is empty")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RunFileError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RunFileError(path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


STATUS_FIELDS: dict[str, Callable[[Any], str | None]] = {
    "state": one_of(*STATES),
    "epoch": count, "epochs": count, "batch": optional(count), "batches": optional(count),
    "attempt": count, "resumed_from": optional(count), "replicas": optional(positive_int), "params": optional(count),
    "pid": optional(positive_int), "queued_at": optional(number), "heartbeat": optional(number),
    "batch_loss": optional(number),
    "started_at": optional(text), "finished_at": optional(text), "updated_at": optional(text),
    "host": optional(text), "message": optional(text), "phase": optional(text), "backend": optional(text), "device": optional(text),
    "warnings": texts, "best": optional(obj), "last": optional(number_map), "health": optional(obj),
    "test": optional(number_map),
}
BEST_FIELDS = {"val_dice": optional(number), "epoch": optional(count)}


def check_status(path: Path, data: Any) -> dict[str, Any]:
    """``status.json``: a ``state`` from ``STATES`` and well-typed progress fields."""
    fields(path, data, STATUS_FIELDS, required=("state",))
    if isinstance(data.get("best"), dict):
        try:
            fields(path, data["best"], BEST_FIELDS)
        except RunFileError as exc:
            raise RunFileError(path, f"field 'best': {exc.reason}") from None
    return data


def record_version(v: Any) -> str | None:
    from segcore.runrecord import RECORD_VERSION

    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= RECORD_VERSION:
        return f"expected a whole number from 1 to {RECORD_VERSION} (a newer segcore wrote this run?), found {_describe(v)}"
    return None


META_FIELDS = {
    "run_id": text, "created_at": text, "config": obj, "dataset": obj, "split": obj, "environment": obj,
    "rerun_of": text, "sweep": optional(obj), "version": record_version, "input": optional(obj), "content": optional(obj),
    "group": optional(obj), "plan": optional(obj),
}
DATASET_FIELDS = {"name": text, "content_hash": optional(text), "mode": optional(text), "classes": texts,
                  "channels": optional(positive_int), "num_samples": optional(count), "class0": optional(text),
                  "ignore_index": optional(count)}


def check_meta(path: Path, data: Any) -> dict[str, Any]:
    """``config.json``: the run's settings (checked as a RunConfig), dataset record, split and environment."""
    from segcore.config import RunConfig

    fields(path, data, META_FIELDS, required=("config", "split"))
    try:
        fields(path, data.get("dataset") or {}, DATASET_FIELDS)
    except RunFileError as exc:
        raise RunFileError(path, f"field 'dataset': {exc.reason}") from None
    split = data["split"]
    for part in ("train", "val", "test"):
        problem = texts(split.get(part))
        if problem:
            raise RunFileError(path, f"field 'split.{part}': {problem}")
    try:
        RunConfig.from_dict(data["config"], stored=True)
    except ValueError as exc:
        raise RunFileError(path, f"field 'config': {exc}") from None
    return data


TRAIN_STATE_FIELDS = {
    "epoch": count, "best_val_dice": optional(number), "best_epoch": optional(count), "es_best_loss": optional(number),
    "es_wait": count, "plateau_factor": number, "fine_tuned": flag, "early_stopped": optional(count),
    "health_missing": obj, "class_weights": numbers_list,
    "budget_spent_s": number, "epoch_seconds": numbers_list, "planned_epochs": count, "budget_stopped": optional(count),
}


def check_train_state(path: Path, data: Any) -> dict[str, Any]:
    """``checkpoints/state.json``: the epoch the checkpoints hold and the early-stopping counters."""
    return fields(path, data, TRAIN_STATE_FIELDS, required=("epoch",))


def check_notes(path: Path, data: Any) -> dict[str, Any]:
    """``notes.json``: ``notes`` (text) and ``tags`` (list of text)."""
    return fields(path, data, {"notes": text, "tags": texts, "updated_at": text})


EVALUATION_FIELDS = {
    "per_class": lambda v: None if isinstance(v, list) and all(isinstance(x, dict) for x in v) else f"expected a list of objects, found {_describe(v)}",
    "per_image": lambda v: None if isinstance(v, list) and all(isinstance(x, dict) for x in v) else f"expected a list of objects, found {_describe(v)}",
    "macro": optional(number_map), "micro": optional(number_map), "pixel_accuracy": optional(number),
    "warnings": texts, "class_names": texts, "mode": optional(text),
}


def check_evaluation(path: Path, data: Any) -> dict[str, Any]:
    """``evaluation.json``: per class and per image lists, macro and micro numbers."""
    return fields(path, data, EVALUATION_FIELDS)


PREDICTION_INDEX_FIELDS = {"ids": texts, "image_size": positive_int, "mode": text, "class_names": texts,
                           "channels": positive_int}


def check_prediction_index(path: Path, data: Any) -> dict[str, Any]:
    """``predictions/index.json``: the cached test ids, their size, mode and classes."""
    return fields(path, data, PREDICTION_INDEX_FIELDS, required=("ids", "image_size"))


# What a zip file of each kind must hold: a Keras 3 ``.keras`` file, a prediction cache ``.npz``.
KERAS_MEMBERS = ("config.json", "model.weights.h5")
NPZ_MEMBERS = ("probs.npy",)


def zip_problem(path: str | Path, members: tuple[str, ...]) -> str | None:
    """What is wrong with the zip file ``path`` (a ``.keras`` checkpoint, a ``.npz`` cache), or None if it is whole.

    Reads only the zip's directory (a few kilobytes, whatever the file's size):
    a file cut short (a full disk, a copy interrupted) loses the directory at
    its end, or has members that reach past its end. Each (path, size,
    modification time) is checked once per process.

    Args:
        path: the file.
        members: the names the file must hold.

    Returns:
        The reason, for ``RunFileError``; None for a whole file or a missing one.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return _zip_problem(str(path), members, st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=4096)
def _zip_problem(path: str, members: tuple[str, ...], size: int, mtime_ns: int, inode: int) -> str | None:
    if size == 0:
        return "the file is empty"
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        return f"cut short or not a zip archive ({size} bytes, no complete zip directory at its end)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    for info in infos:
        if info.header_offset + info.compress_size > size:
            return f"cut short: member {info.filename!r} reaches past the end of the file ({size} bytes)"
    names = {info.filename for info in infos}
    missing = [m for m in members if m not in names]
    if missing:
        return f"expected members {list(members)}, found {sorted(names)[:5]}"
    return None


def parse_history(path: Path) -> list[dict[str, Any]]:
    """``history.csv`` rows as dicts of floats (``epoch`` as int, empty cells None); RunFileError if malformed."""
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunFileError(path, "not UTF-8 text") from None
    rows: list[dict[str, Any]] = []
    reader = csv.DictReader(io.StringIO(content, newline=""))
    if content.strip() and (not reader.fieldnames or "epoch" not in reader.fieldnames):
        raise RunFileError(path, f"the header has no 'epoch' column (found {reader.fieldnames})")
    last = 0
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise RunFileError(path, f"line {line} has more cells than the header")
        parsed: dict[str, Any] = {}
        for key, value in row.items():
            if value in (None, ""):
                parsed[key] = None
                continue
            try:
                number_value = float(value)
            except ValueError:
                raise RunFileError(path, f"line {line}, column {key!r}: {value!r} is not a number") from None
            parsed[key] = number_value
        epoch = parsed.get("epoch")
        if epoch is None or not float(epoch).is_integer() or epoch <= last:
            raise RunFileError(path, f"line {line}: epoch {row.get('epoch')!r} is not a whole number after epoch {last}")
        parsed["epoch"] = last = int(epoch)
        rows.append(parsed)
    return rows

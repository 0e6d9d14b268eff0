"""A run's record: what ``config.json`` in its folder says, as typed fields read and migrated in one place.

``config.json`` holds the run's settings and what they were applied to: the
dataset as it was when the run was queued, the split, the machine it trained
on, how its images met the model, the pixel hashes of what it learned from,
and how it came to be (a rerun, a sweep, a group of seeds or folds, a plan).
``RunFolder.record()`` returns a ``RunRecord``; the trainer, evaluation,
prediction, the pages and the command line read its fields, never the file's
keys.

Versions: a record written before ``version`` existed is version 1 and reads
as version 2 with the same meaning (``RunRecord.from_dict`` migrates; what a
run folder stores is never rewritten on read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from segcore.config import RunConfig
from segcore.labels import VOID, Labels

RECORD_VERSION = 2



@dataclass(frozen=True)
class DatasetRecord:
    """The dataset a run was queued on, as it was then."""

    name: str = ""
    content_hash: str | None = None
    mode: str = "multiclass"  # a run that recorded no mode predicts multiclass
    classes: tuple[str, ...] = ()
    channels: int | None = None
    num_samples: int | None = None
    class0: str = "background"  # "class" when class 0 is a real class (runs that recorded none had a background)
    ignore_index: int = VOID

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "DatasetRecord":
        data = data or {}
        return cls(
            name=str(data.get("name") or ""),
            content_hash=data.get("content_hash") or None,
            mode=str(data.get("mode") or "multiclass"),
            classes=tuple(data.get("classes") or ()),
            channels=data.get("channels"),
            num_samples=data.get("num_samples"),
            class0=str(data.get("class0") or "background"),
            ignore_index=int(data.get("ignore_index", VOID)),
        )

    @property
    def labels(self) -> Labels:
        """What the run's classes mean: class 0, void, the means, how probabilities become a mask."""
        return Labels(self.mode, self.classes, self.class0 != "class", self.ignore_index)


@dataclass(frozen=True)
class InputRecord:
    """How the training images met the model: recorded by the trainer once it has loaded them."""

    fit: str
    image_size: int
    reference_short_side: float | None = None  # median shorter side of the training images (fit short_side)


@dataclass(frozen=True)
class RunRecord:
    """One run's ``config.json`` as fields (``RunFolder.record()``)."""

    run_id: str
    config: RunConfig
    split: Mapping[str, tuple[str, ...]]
    dataset: DatasetRecord = field(default_factory=DatasetRecord)
    created_at: str = ""
    environment: Mapping[str, Any] = field(default_factory=dict)
    input: InputRecord | None = None  # None until the trainer has loaded the data
    content: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # {"train"|"val": {sample id: pixel hash}}
    rerun_of: str | None = None
    sweep: Mapping[str, Any] | None = None
    group: Mapping[str, Any] | None = None  # seeds or folds: {"id", "kind", ...}
    plan: Mapping[str, Any] | None = None  # the plan the run started from and what was changed
    version: int = RECORD_VERSION

    # -- the one answer to each question ---------------------------------------------------
    @property
    def fit(self) -> str:
        """How images meet the model: as the trainer applied it, else as the settings asked."""
        return self.input.fit if self.input else self.config.train.fit

    @property
    def image_size(self) -> int:
        """The model's input side: as the trainer applied it, else as the settings asked."""
        return self.input.image_size if self.input else self.config.train.image_size

    @property
    def dataset_name(self) -> str:
        """The dataset the run trained on."""
        return self.config.train.dataset

    @property
    def test_ids(self) -> list[str]:
        return list(self.split.get("test", ()))

    # -- reading and writing ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, run_id: str = "") -> "RunRecord":
        """A record from ``config.json``'s contents (checked by ``runfiles.check_meta``), migrated to this version.

        Raises:
            ValueError: the settings are not valid (``SettingError`` names the setting).
        """
        data = migrate(data)
        fitted = data.get("input") or None
        return cls(
            run_id=str(data.get("run_id") or run_id),
            config=RunConfig.from_dict(data["config"], stored=True),
            split={part: tuple(data["split"].get(part) or ()) for part in ("train", "val", "test")},
            dataset=DatasetRecord.from_dict(data.get("dataset")),
            created_at=str(data.get("created_at") or ""),
            environment=dict(data.get("environment") or {}),
            input=InputRecord(str(fitted["fit"]), int(fitted["image_size"]), fitted.get("reference_short_side"))
            if fitted and "fit" in fitted and "image_size" in fitted else None,
            content={part: dict(v) for part, v in (data.get("content") or {}).items() if isinstance(v, Mapping)},
            rerun_of=data.get("rerun_of") or None,
            sweep=data.get("sweep") or None,
            group=data.get("group") if isinstance(data.get("group"), Mapping) else None,
            plan=data.get("plan") if isinstance(data.get("plan"), Mapping) else None,
            version=int(data["version"]),
        )


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """``config.json``'s contents in this version's shape (a copy; the stored file is not touched).

    Version 1 (no ``version`` key) had the same fields; nothing but the number changes.
    Settings renamed since are converted by ``RunConfig.from_dict``.
    """
    out = dict(data)
    version = out.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= RECORD_VERSION:
        raise ValueError(f"field 'version' is {version!r}; expected a whole number from 1 to {RECORD_VERSION} "
                         "(a newer segcore wrote this run?)")
    out["version"] = RECORD_VERSION
    return out

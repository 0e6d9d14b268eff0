"""The canonical dataset layout and its reader.

Every import, whatever its source layout, ends as one folder under
``<workspace>/datasets/<name>/``::

    dataset.json            # DatasetInfo (see below)
    images/<id>.png         # uint8, grey (H, W) or RGB (H, W, 3)
    masks/<id>.png          # binary / multiclass: uint8 index mask,
                            #   0 = background, 1..K-1 = classes,
                            #   ``ignore_index`` (255) = void, not scored
    masks/<k>/<id>.png      # multilabel: one uint8 plane per foreground class k
                            #   (1..K-1), values 0 / 1 (255 = void, optional)

A binary dataset has two classes, a multiclass one K >= 3 exclusive classes,
a multilabel one K - 1 foreground classes that may overlap (class 0 is then
"no class set"). ``class0`` in ``dataset.json`` states what class 0 is:
``"background"`` (left out of every mean: evaluation, training metrics, the
best-checkpoint score, health messages) or ``"class"`` (a real class, such as
CamVid's Sky, counted in every mean). It is asked at import; datasets written
before it existed read as ``"background"``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segcore.config import MODES
from segcore.fsutil import read_json
from segcore.workspace import Workspace, get_workspace

IGNORE_INDEX = 255  # the void mask value of every canonical dataset


@dataclass(frozen=True)
class ClassInfo:
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class SampleInfo:
    id: str
    height: int
    width: int
    subset: str | None = None  # "train" / "test" when the source had such folders
    source_image: str = ""
    source_mask: str = ""
    pixel_sha256: str = ""  # pixel_hash() of the image as imported; "" in datasets written before it existed


def pixel_hash(image: np.ndarray) -> str:
    """The content hash of an image's pixels, the same wherever and however the image was stored.

    An image is hashed as the importer reads it: uint8, grey ``(H, W)`` or RGB
    ``(H, W, 3)``, an RGB image whose three channels are equal counting as
    grey. So a canonical ``images/<id>.png`` stored as RGB in a colour dataset,
    the source TIFF and a PNG copy of it all hash the same, and two datasets
    holding one picture can be found by comparing these hashes.

    Args:
        image: uint8 pixels, ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``.

    Returns:
        ``"sha256:<hex>"`` over ``b"<H>x<W>x<C>:"`` followed by the C-order
        pixel bytes (C = 1 or 3).

    Raises:
        ValueError: for another dtype or shape.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"pixel_hash takes uint8 pixels; got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 3 and np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 1], arr[:, :, 2]):
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"pixel_hash takes (H, W) or (H, W, 3) pixels; got shape {arr.shape}")
    channels = 1 if arr.ndim == 2 else 3
    digest = hashlib.sha256(f"{arr.shape[0]}x{arr.shape[1]}x{channels}:".encode())
    digest.update(np.ascontiguousarray(arr).tobytes())
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class Problem:
    """A problem found in the data: ``kind`` is a short code, ``files`` the files involved."""

    kind: str
    message: str
    files: tuple[str, ...] = ()
    severity: str = "warning"  # "warning" (imported, noted) or "error" (sample skipped)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "files": list(self.files), "severity": self.severity}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Problem":
        return cls(d["kind"], d["message"], tuple(d.get("files", ())), d.get("severity", "warning"))


@dataclass(frozen=True)
class DatasetInfo:
    """The contents of ``dataset.json``."""

    name: str
    mode: str
    classes: tuple[ClassInfo, ...]
    channels: int
    samples: tuple[SampleInfo, ...]
    ignore_index: int | None = IGNORE_INDEX
    source: dict[str, Any] = field(default_factory=dict)  # path, layout, options
    content_hash: str = ""
    image_size_stats: dict[str, Any] = field(default_factory=dict)
    class_pixel_fraction: tuple[float, ...] = ()  # per class, over all masks
    problems: tuple[Problem, ...] = ()
    created_at: str = ""
    segcore_version: str = ""
    class0_is_background: bool = True

    @property
    def include_background(self) -> bool:
        """True when class 0 is a real class, so that means over classes count it."""
        return not self.class0_is_background

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "classes": [{"name": c.name, "color": list(c.color)} for c in self.classes],
            "channels": self.channels,
            "ignore_index": self.ignore_index,
            "class0": "background" if self.class0_is_background else "class",
            "num_samples": len(self.samples),
            "source": self.source,
            "content_hash": self.content_hash,
            "image_size_stats": self.image_size_stats,
            "class_pixel_fraction": list(self.class_pixel_fraction),
            "problems": [p.to_dict() for p in self.problems],
            "created_at": self.created_at,
            "segcore_version": self.segcore_version,
            "samples": [
                {
                    "id": s.id,
                    "height": s.height,
                    "width": s.width,
                    "subset": s.subset,
                    "source_image": s.source_image,
                    "source_mask": s.source_mask,
                    "pixel_sha256": s.pixel_sha256,
                }
                for s in self.samples
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetInfo":
        if d.get("mode") not in MODES:
            raise ValueError(f"dataset {d.get('name')!r} has mode {d.get('mode')!r}; expected one of {MODES}")
        return cls(
            name=d["name"],
            mode=d["mode"],
            classes=tuple(ClassInfo(c["name"], tuple(c["color"])) for c in d["classes"]),
            channels=int(d["channels"]),
            samples=tuple(
                SampleInfo(
                    id=s["id"],
                    height=int(s["height"]),
                    width=int(s["width"]),
                    subset=s.get("subset"),
                    source_image=s.get("source_image", ""),
                    source_mask=s.get("source_mask", ""),
                    pixel_sha256=s.get("pixel_sha256", ""),
                )
                for s in d["samples"]
            ),
            ignore_index=d.get("ignore_index", IGNORE_INDEX),
            source=d.get("source", {}),
            content_hash=d.get("content_hash", ""),
            image_size_stats=d.get("image_size_stats", {}),
            class_pixel_fraction=tuple(d.get("class_pixel_fraction", ())),
            problems=tuple(Problem.from_dict(p) for p in d.get("problems", ())),
            created_at=d.get("created_at", ""),
            segcore_version=d.get("segcore_version", ""),
            class0_is_background=_class0(d),
        )


def _class0(d: dict[str, Any]) -> bool:
    value = d.get("class0", "background")
    if value not in ("background", "class"):
        raise ValueError(f"dataset {d.get('name')!r} has class0 {value!r}; expected 'background' or 'class'")
    return value == "background"


class Dataset:
    """A dataset in the canonical layout, read lazily from its folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.root} is not a segcore dataset: {meta_path} is missing")
        self.info = DatasetInfo.from_dict(read_json(meta_path))

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def ids(self) -> list[str]:
        return self.info.ids

    @cached_property
    def _index(self) -> dict[str, SampleInfo]:
        return {s.id: s for s in self.info.samples}

    def sample(self, sample_id: str) -> SampleInfo:
        try:
            return self._index[sample_id]
        except KeyError:
            raise KeyError(f"dataset {self.name!r} has no sample {sample_id!r}") from None

    def image_path(self, sample_id: str) -> Path:
        self.sample(sample_id)
        return self.root / "images" / f"{sample_id}.png"

    def image(self, sample_id: str) -> np.ndarray:
        """The image as uint8, (H, W) for grey or (H, W, 3) RGB."""
        path = self.image_path(sample_id)
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"cannot read image {path}")
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return img

    def mask(self, sample_id: str) -> np.ndarray:
        """The mask: (H, W) uint8 class indices, or (H, W, K-1) uint8 planes for multilabel."""
        self.sample(sample_id)
        if self.info.mode == "multilabel":
            planes = []
            for k in range(1, self.info.num_classes):
                path = self.root / "masks" / str(k) / f"{sample_id}.png"
                plane = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                if plane is None:
                    raise ValueError(f"cannot read mask plane {path}")
                planes.append(plane)
            return np.stack(planes, axis=-1)
        path = self.root / "masks" / f"{sample_id}.png"
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ValueError(f"cannot read mask {path}")
        return mask

    def __len__(self) -> int:
        return len(self.info.samples)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, mode={self.info.mode}, classes={self.info.class_names}, n={len(self)})"


def load_dataset(name: str, workspace: Workspace | None = None) -> Dataset:
    """Open the dataset called ``name`` in the workspace.

    Raises:
        FileNotFoundError: naming the dataset and the ones that exist.
    """
    ws = workspace or get_workspace()
    folder = ws.dataset_dir(name)
    if not (folder / "dataset.json").is_file():
        known = [d.name for d in list_datasets(ws)]
        raise FileNotFoundError(f"no dataset named {name!r} in {ws.datasets_dir}; datasets are {known}")
    return Dataset(folder)


def list_datasets(workspace: Workspace | None = None) -> list[DatasetInfo]:
    """Every dataset in the workspace, sorted by name (unreadable folders are skipped)."""
    ws = workspace or get_workspace()
    infos = []
    for meta in sorted(ws.datasets_dir.glob("*/dataset.json")):
        try:
            infos.append(DatasetInfo.from_dict(read_json(meta)))
        except (ValueError, KeyError):
            continue
    return infos

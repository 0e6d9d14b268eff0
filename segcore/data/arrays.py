"""Loading a canonical dataset into arrays at one size, fast.

This is the path training, evaluation and the Compare page use: every file is
decoded and resized with OpenCV in a thread pool (OpenCV releases the GIL, so
threads use every core without copying arrays between processes), and the
result is cached per size beside the dataset.

Three fits (``FITS``): ``"squash"`` resizes every image to ``size`` x ``size``
(the aspect ratio is lost); ``"short_side"`` keeps the aspect ratio: each
image is resized so that its shorter side is ``size`` (:func:`fitted_size`);
``"native"`` keeps every image at its own resolution. With the last two,
each image is placed at the top left of one canvas as large as the largest of
them (and at least ``size``); the rest of the canvas is 0 in images and void
(255) in masks. Training then takes ``size`` x ``size`` crops and prediction
tiles the image.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from segcore.config import FITS
from segcore.data.dataset import Dataset, load_dataset
from segcore.data.resample import resize_image, resize_labels
from segcore.fsutil import make_temp_dir, write_json_atomic
from segcore.workspace import Workspace


def fitted_size(height: int, width: int, size: int, fit: str = "short_side") -> tuple[int, int]:
    """(height, width) of an image after the fit: the shorter side made ``size`` (``short_side``), the image's own
    (``native``), or ``size`` x ``size`` (``squash``)."""
    if fit == "squash":
        return size, size
    if fit == "native":
        return int(height), int(width)
    if fit != "short_side":
        raise ValueError(f"unknown fit {fit!r}; expected one of {list(FITS)}")
    short = min(height, width)
    return max(size, round(height * size / short)), max(size, round(width * size / short))


def canvas_size(dataset: Dataset, size: int, fit: str = "short_side") -> tuple[int, int]:
    """The (height, width) every sample's arrays share: the largest fitted size over the dataset."""
    sizes = [fitted_size(s.height, s.width, size, fit) for s in dataset.info.samples] or [(size, size)]
    return max([h for h, _ in sizes] + [size]), max([w for _, w in sizes] + [size])  # at least one window


def window_starts(length: int, window: int) -> list[int]:
    """Starts of ``window``-long windows covering ``length`` (the last one ends at ``length``; they may overlap).

    The windows training validates on and prediction slides the model over.
    """
    if length <= window:
        return [0]
    step = max(1, window // 2) if length < 2 * window else window - window // 4
    starts = list(range(0, length - window + 1, step))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def default_workers() -> int:
    """Threads for decoding: twice the cores (file reads overlap decoding), at most 16."""
    return max(1, min(16, 2 * (os.cpu_count() or 1)))


def load_arrays(
    dataset: Dataset | str,
    ids: Sequence[str] | None,
    size: int,
    *,
    workers: int | None = None,
    workspace: Workspace | None = None,
    cache: bool = True,
    fit: str = "squash",
) -> tuple[np.ndarray, np.ndarray]:
    """Load images and masks of a dataset resized to ``size`` x ``size`` (or fitted, keeping the aspect ratio).

    The first call at a size resizes every sample and keeps the result in
    ``<dataset>/cache/size-<size>/`` (two ``.npy`` files, written atomically and
    tied to the dataset's content hash); later calls read the requested rows
    from it. Datasets are never changed after import, so the cache stays valid.

    Args:
        dataset: a :class:`~segcore.data.dataset.Dataset` or a dataset name.
        ids: sample ids to load, in order (None: all samples).
        size: the output side length in pixels.
        workers: decoding threads (default: twice the CPU cores).
        workspace: where to find a dataset given by name.
        cache: use and fill the per-size cache (False: always decode the files).
        fit: ``"squash"`` (``size`` x ``size``) or ``"short_side"`` (the aspect
            ratio kept, on the dataset's canvas; see the module notes).

    Returns:
        ``(images, masks)``: images uint8 ``(N, size, size, C)`` with C the
        dataset's channels (grey kept as 1), resized with ``INTER_AREA``;
        masks uint8 ``(N, size, size)`` class indices (255 = void kept) for
        binary and multiclass, or ``(N, size, size, K-1)`` 0/1 planes for
        multilabel, resized by a centred area vote (:mod:`segcore.data.resample`),
        so masks stay on their images' pixel grid.

    Raises:
        KeyError: for an id that is not in the dataset.
        ValueError: for a size below 1 or a file that cannot be read.
    """
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, workspace)
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size!r}")
    size = int(size)
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; expected one of {list(FITS)}")
    ids = list(dataset.ids if ids is None else ids)
    for sample_id in ids:
        dataset.sample(sample_id)  # KeyError naming the id
    if cache:
        cached = _from_cache(dataset, ids, size, workers, fit)
        if cached is not None:
            return _with_channel_axis(*cached)
    return _with_channel_axis(*_decode_resize(dataset, ids, size, workers, fit))


def _with_channel_axis(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey images ``(N, H, W)`` given their channel axis, as a model takes them."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return images, np.asarray(masks)


def _decode_resize(dataset: Dataset, ids: list[str], size: int, workers: int | None, fit: str = "squash") -> tuple[np.ndarray, np.ndarray]:
    info = dataset.info
    channels = info.channels
    multilabel = info.mode == "multilabel"
    planes = info.num_classes - 1
    ch, cw = (size, size) if fit == "squash" else canvas_size(dataset, size, fit)
    mask_shape = (len(ids), ch, cw, planes) if multilabel else (len(ids), ch, cw)
    if fit == "squash":  # every pixel is written
        images = np.empty((len(ids), ch, cw, channels), np.uint8)
        masks = np.empty(mask_shape, np.uint8)
    else:  # the canvas beyond each image: black, and void in the masks
        images = np.zeros((len(ids), ch, cw, channels), np.uint8)
        masks = np.full(mask_shape, 255, np.uint8)
    root = dataset.root
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR

    def load_one(i: int) -> None:
        sample_id = ids[i]
        path = root / "images" / f"{sample_id}.png"
        img = cv2.imread(str(path), flag)
        if img is None:
            raise ValueError(f"cannot read image {path}")
        if channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h, w = fitted_size(img.shape[0], img.shape[1], size, fit)
        img = resize_image(img, h, w)
        images[i, :h, :w] = img.reshape(h, w, channels)
        if multilabel:
            for k in range(planes):
                mpath = root / "masks" / str(k + 1) / f"{sample_id}.png"
                plane = cv2.imread(str(mpath), cv2.IMREAD_GRAYSCALE)
                if plane is None:
                    raise ValueError(f"cannot read mask plane {mpath}")
                masks[i, :h, :w, k] = resize_labels(plane, h, w)
        else:
            mpath = root / "masks" / f"{sample_id}.png"
            mask = cv2.imread(str(mpath), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise ValueError(f"cannot read mask {mpath}")
            masks[i, :h, :w] = resize_labels(mask, h, w)

    n_workers = workers or default_workers()
    if n_workers <= 1 or len(ids) <= 1:
        for i in range(len(ids)):
            load_one(i)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            list(pool.map(load_one, range(len(ids))))
    return images, masks


# Bumped whenever the arrays a cache holds would come out differently (2: labels by a centred area vote).
CACHE_VERSION = 2


def cache_dir(dataset: Dataset, size: int, fit: str = "squash") -> Path:
    """Where the arrays of ``dataset`` resized to ``size`` (with ``fit``) are kept."""
    prefix = {"squash": "size", "short_side": "short", "native": "native"}[fit]
    return dataset.root / "cache" / f"{prefix}-{int(size)}"


def _from_cache(dataset: Dataset, ids: list[str], size: int, workers: int | None, fit: str = "squash"):
    folder = cache_dir(dataset, size, fit)
    meta_path = folder / "meta.json"
    all_ids = dataset.ids
    meta = None
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            meta = None
    if (not meta or meta.get("content_hash") != dataset.info.content_hash or meta.get("ids") != all_ids
            or meta.get("version") != CACHE_VERSION):
        images, masks = _decode_resize(dataset, all_ids, size, workers, fit)
        try:
            _write_cache(folder, images, masks, dataset.info.content_hash, all_ids)
        except OSError:
            pass  # a read-only dataset folder: the arrays are still returned
        if ids == all_ids:
            return images, masks
        rows = _rows(all_ids, ids)
        return images[rows], masks[rows]
    try:
        images = np.load(folder / "images.npy", mmap_mode="r")
        masks = np.load(folder / "masks.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    rows = _rows(all_ids, ids)
    return np.ascontiguousarray(images[rows]), np.ascontiguousarray(masks[rows])


def _rows(all_ids: list[str], ids: list[str]) -> np.ndarray:
    index = {sid: i for i, sid in enumerate(all_ids)}
    return np.fromiter((index[i] for i in ids), dtype=np.int64, count=len(ids))


def _write_cache(folder: Path, images: np.ndarray, masks: np.ndarray, content_hash: str, ids: list[str]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(folder.parent, f".{folder.name}.")
    try:
        np.save(tmp / "images.npy", images)
        np.save(tmp / "masks.npy", masks)
        write_json_atomic(tmp / "meta.json", {"content_hash": content_hash, "ids": ids, "shape": list(images.shape),
                                              "version": CACHE_VERSION})
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.rename(tmp, folder)  # readers see the old cache, none, or the new one, never half of one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

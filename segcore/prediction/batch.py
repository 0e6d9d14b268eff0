"""A folder or zip of images predicted at once: one zip of masks back, each bad file named.

The upload is read in memory and nothing is written to disk. It is held to
the rules of :mod:`segcore.data.uploads` and :mod:`segcore.data.archive`:
a name that is absolute or holds ``..`` is refused, every other character
outside ``A-Z a-z 0-9 . _ -`` becomes ``_``; a zip's members are checked
with :func:`segcore.data.archive.check_members` (no links, at most the
server's ``max_archive_files`` files and ``max_archive_bytes`` bytes) and
the bytes actually read are counted too; an image claiming more than
``max_image_pixels`` pixels is refused before it is decoded.

A file that cannot be predicted (not an image, a damaged one, an unsafe
name, a refused zip) is named in ``problems`` with what was expected; the
others are predicted. Mask files are those single-image predict writes
(:func:`segcore.visualize.files.encode_mask`): ``<stem>_mask.png`` of class
ids, or for multilabel one 0/1 ``<stem>_<k>.png`` per class, in the image's
folder within the upload. Folders a Mac adds to a zip (``__MACOSX/``, ``._*``)
are left out without a word.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, Iterable, Sequence

import numpy as np

from segcore.data import imageio
from segcore.data.archive import UnsafeArchiveError, check_members
from segcore.data.uploads import UploadedFile, upload_paths
from segcore.prediction.masks import label_plane_files
from segcore.workspace import ServerSettings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
EXPECTED = "expected a PNG, JPEG, TIFF, BMP or GIF image"
PROBLEMS_FILE = "problems.txt"


@dataclass(frozen=True)
class BatchImage:
    """One image of an upload: its safe name within the upload (``folder/stem.png``) and its bytes."""

    name: str
    data: bytes


@dataclass
class BatchPrediction:
    """What a batch gave: the zip of masks, the images predicted, and one message per file that was not."""

    data: bytes = b""
    predicted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the names inside the zip


def batch_images(files: Iterable[UploadedFile], limits: ServerSettings | None = None) -> tuple[list[BatchImage], list[str]]:
    """The images of an upload (loose files and the members of ``.zip`` files) and a message for each file left out.

    Args:
        files: the uploaded files.
        limits: the server's limits (default: :class:`ServerSettings`' defaults).

    Returns:
        ``(images, problems)``: images in upload order, then member order.
    """
    limits = limits or ServerSettings()
    images: list[BatchImage] = []
    problems: list[str] = []
    budget = {"files": limits.max_archive_files, "bytes": limits.max_archive_bytes}

    def take(name: str, data: bytes) -> None:
        if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{name}: not an image file; {EXPECTED}")
            return
        budget["files"] -= 1
        budget["bytes"] -= len(data)
        if budget["files"] < 0 or budget["bytes"] < 0:
            problems.append(f"{name}: left out, the upload holds more than {limits.max_archive_files:,} files or "
                            f"{limits.max_archive_bytes:,} bytes (the server's limits)")
            return
        images.append(BatchImage(name, data))

    for upload in files:
        try:
            (safe,) = upload_paths([upload.name])
        except ValueError as exc:  # UnsafeArchiveError is a ValueError
            problems.append(f"{upload.name}: {exc}")
            continue
        data = bytes(upload.data)
        if safe.suffix.lower() != ".zip":
            take(str(safe), data)
            continue
        try:
            for name, member in _zip_members(data, str(safe), limits):
                take(name, member)
        except (UnsafeArchiveError, ValueError) as exc:
            problems.append(f"{safe}: {exc}")
    return images, problems


def _zip_members(data: bytes, archive: str, limits: ServerSettings) -> Iterable[tuple[str, bytes]]:
    """``(safe name, bytes)`` of each file member of a zip held in memory, checked as an extracted archive is."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a zip archive ({exc}); expected a .zip of images") from None
    with zf:
        members = check_members(zf, archive, limits.max_archive_bytes, limits.max_archive_files)
        read = 0
        out = []
        for info in members:
            rel = PurePosixPath(info.filename.replace("\\", "/"))
            if "__MACOSX" in rel.parts or rel.name.startswith("._"):
                continue
            (safe,) = upload_paths([str(rel)])
            try:
                member = zf.read(info)
            except (zipfile.BadZipFile, OSError, EOFError):
                member = b""  # a damaged member: named as an image that cannot be read
            read += len(member)
            if read > limits.max_archive_bytes:
                raise UnsafeArchiveError(f"{archive} expands past {limits.max_archive_bytes:,} bytes while reading "
                                         f"{info.filename!r}; refusing it (zip bomb guard)")
            out.append((str(safe), member))
    return out


def mask_files(mask: np.ndarray, mode: str, name: str) -> list[tuple[str, bytes]]:
    """The files of one predicted mask, named after the image ``name`` (``folder/stem.png``), as single-image predict names them."""
    path = PurePosixPath(name)
    stem = path.stem
    folder = "" if str(path.parent) == "." else f"{path.parent}/"
    mask = np.ascontiguousarray(np.asarray(mask).astype(np.uint8))
    if mode == "multilabel" and mask.ndim == 3:
        return [(folder + plane_name, imageio.encode_png(plane, mask=True)) for plane_name, plane in label_plane_files(mask, stem)]
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask for mode {mode!r}; got shape {mask.shape}")
    return [(f"{folder}{stem}_mask.png", imageio.encode_png(mask, mask=True))]


def predict_batch(
    images: Sequence[BatchImage],
    predict_mask: Callable[[np.ndarray], np.ndarray],
    mode: str,
    *,
    problems: Sequence[str] = (),
    max_pixels: int = ServerSettings.max_image_pixels,
    progress: Callable[[int, int, str], None] | None = None,
) -> BatchPrediction:
    """Predict each image and pack the masks into one zip.

    Args:
        images: from :func:`batch_images`.
        predict_mask: an image (as :func:`segcore.data.imageio.read_image_bytes` gives it) to its mask,
            e.g. ``lambda im: predictor.predict_mask(im, threshold)``.
        mode: the run's head (how the mask is written).
        problems: messages from :func:`batch_images`, carried into the result and the zip.
        max_pixels: images claiming more pixels are refused before decoding.
        progress: called with ``(done, total, name)`` after each image.

    Returns:
        The zip (with ``problems.txt`` when a file was left out), the names predicted, and every problem.
    """
    result = BatchPrediction(problems=list(problems))
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for done, item in enumerate(images, 1):
            try:
                image = imageio.read_image_bytes(item.data, item.name, max_pixels).array
            except (ValueError, OSError) as exc:  # ImageReadError is a ValueError
                said = str(exc)  # the reader's message names the file and the formats it takes
                result.problems.append(said if item.name in said else f"{item.name}: cannot be read ({said}); {EXPECTED}")
            else:
                path = PurePosixPath(item.name)
                key = str(path.with_suffix(""))
                if key in used:  # a.png and a.jpg: the second keeps its suffix in the mask's name (a_jpg_mask.png)
                    path = path.with_name(path.name.replace(".", "_") + path.suffix)
                used.add(key)
                for file_name, data in mask_files(predict_mask(image), mode, str(path)):
                    zf.writestr(file_name, data)
                    result.files.append(file_name)
                result.predicted.append(item.name)
            if progress is not None:
                progress(done, len(images), item.name)
        if result.problems:
            zf.writestr(PROBLEMS_FILE, "\n".join(result.problems) + "\n")
            result.files.append(PROBLEMS_FILE)
    result.data = buffer.getvalue()
    return result

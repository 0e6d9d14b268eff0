"""Importing uploaded files: what the Data page's upload does, without Streamlit.

:func:`import_upload` takes the uploaded files' names and bytes (one ``.zip``
archive, or loose files), writes them into a new ``upload-*`` folder under the
workspace's ``.tmp/``, imports them with
:func:`segcore.data.imports.import_dataset`, and removes the folder again
whatever happens. Progress reaches the caller as one typed record,
:class:`ImportProgress`.

The upload is held to the same rules as an uploaded archive's members
(:mod:`segcore.data.archive`): a file name that is absolute or holds ``..``
is refused, every other character outside ``A-Z a-z 0-9 . _ -`` becomes
``_``, and loose files count against the server's ``max_archive_files`` and
``max_archive_bytes``. A zip is extracted within those limits as before.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from segcore.access import Actor, local_actor, require
from segcore.data.archive import UnsafeArchiveError, relative_path
from segcore.data.imports import ImportReport, import_dataset
from segcore.data.options import ImportOptions
from segcore.fsutil import ensure_inside, make_temp_dir, write_bytes_atomic
from segcore.workspace import ServerSettings, Workspace, get_workspace

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_PART = 80  # characters kept of each part of an uploaded file's name


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file: its name as the browser sent it, and its bytes."""

    name: str
    data: bytes | bytearray | memoryview


@dataclass(frozen=True)
class ImportProgress:
    """How far an import has come: ``done`` of ``total`` steps (``total`` 0 when not known yet) and what it is doing."""

    done: int
    total: int
    message: str

    @property
    def fraction(self) -> float:
        """``done / total`` between 0 and 1 (0 while the total is not known)."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total else 0.0


def import_upload(
    files: Iterable[UploadedFile],
    name: str,
    *,
    options: ImportOptions | dict[str, Any] | None = None,
    layout: str = "auto",
    strict: bool = False,
    on_exists: str = "error",
    workspace: Workspace | None = None,
    progress: Callable[[ImportProgress], None] | None = None,
    actor: Actor | None = None,
) -> ImportReport:
    """Save uploaded files into the workspace, import them as dataset ``name``, and remove them again.

    Args:
        files: the uploads: one ``.zip`` archive, or loose files (names may
            hold sub-folders, ``images/a.png``).
        name: the dataset name.
        options, layout, strict, on_exists: as for :func:`~segcore.data.imports.import_dataset`.
        workspace: the workspace (default: ``get_workspace()``).
        progress: called with an :class:`ImportProgress` as the upload is saved and imported.
        actor: who imports it (default: the local user); refused before anything is saved if they may not.

    Returns:
        The import's :class:`~segcore.data.imports.ImportReport`.

    Raises:
        ValueError: for no files, a file name that would leave the upload
            folder (:class:`~segcore.data.archive.UnsafeArchiveError`), two
            files saved under one name, uploads past the server's limits, or
            what ``import_dataset`` raises.
        OSError: if the workspace cannot be written.
    """
    actor = actor or local_actor()
    require(actor, "import")
    ws = workspace or get_workspace()
    files = list(files)
    targets = upload_paths([f.name for f in files])
    check_upload_size(files, ws.settings())
    report = progress_records(progress)
    folder = make_temp_dir(ws.tmp_dir, "upload-")
    try:
        report(0, 0, f"saving {_describe(files)}")
        source = save_uploads(files, targets, folder)
        # The saved copy is deleted below: the dataset records the uploaded file names as its source.
        return import_dataset(
            source, name, layout=layout, options=options, strict=strict, workspace=ws, progress=report, on_exists=on_exists,
            source_label=_uploaded_names(files),
            actor=actor,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _uploaded_names(files: list[UploadedFile], shown: int = 3) -> str:
    """The uploaded file names as a source: ``"an upload of data.zip"``, ``"an upload of a.png, b.png, c.png and 40 more"``."""
    names = [PurePosixPath(str(f.name).replace("\\", "/")).name or str(f.name) for f in files]
    more = len(names) - shown
    return "an upload of " + ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def upload_paths(names: list[str]) -> list[PurePosixPath]:
    """Where each uploaded file is saved, relative to the upload folder.

    Each part of a name is kept with its characters outside ``A-Z a-z 0-9 . _ -``
    replaced by ``_`` (at most 80 of them, the suffix kept).

    Raises:
        ValueError: for no names, an empty name, or two names saved as the same file.
        UnsafeArchiveError: for an absolute name or one with a ``..`` part.
    """
    if not names:
        raise ValueError("nothing was uploaded")
    paths: list[PurePosixPath] = []
    for name in names:
        rel = relative_path(name, what="uploaded file", refusing="the upload")
        parts = [_safe_part(p) for p in rel.parts if p not in ("", ".")]
        if not parts:
            raise UnsafeArchiveError(f"uploaded file {name!r} has no file name; refusing the upload")
        paths.append(PurePosixPath(*parts))
    seen: set[PurePosixPath] = set()
    for name, path in zip(names, paths):
        if path in seen:
            raise ValueError(f"two uploaded files would both be saved as {str(path)!r} (the second is {name!r}); rename one")
        seen.add(path)
    return paths


def _safe_part(part: str) -> str:
    stem, suffix = os.path.splitext(_UNSAFE.sub("_", part))
    return (stem[: max(0, _MAX_PART - len(suffix))] + suffix)[:_MAX_PART]


def check_upload_size(files: list[UploadedFile], limits: ServerSettings) -> None:
    """Refuse loose files past the server's archive limits (a zip is checked as it is extracted).

    Raises:
        UnsafeArchiveError: for more than ``max_archive_files`` files or ``max_archive_bytes`` bytes.
    """
    if _is_one_zip(files):
        return
    if len(files) > limits.max_archive_files:
        raise UnsafeArchiveError(f"the upload holds more than {limits.max_archive_files:,} files; refusing it")
    total = sum(memoryview(f.data).nbytes for f in files)
    if total > limits.max_archive_bytes:
        raise UnsafeArchiveError(f"the upload holds more than {limits.max_archive_bytes:,} bytes; refusing it")


def save_uploads(files: list[UploadedFile], targets: list[PurePosixPath], folder: Path) -> Path:
    """Write each file to its target under ``folder``; the source to import (the zip, or ``folder``)."""
    for f, rel in zip(files, targets):
        path = ensure_inside(folder / Path(*rel.parts), folder)
        write_bytes_atomic(path, f.data)
    return folder / Path(*targets[0].parts) if _is_one_zip(files) else folder


def suggest_name(file_name: str) -> str:
    """A dataset name from an uploaded or server file's name: its stem, unsafe characters as ``_`` (may be empty)."""
    stem = PurePosixPath(file_name).stem
    return _UNSAFE.sub("_", stem).lstrip("._-")[:64]


def _is_one_zip(files: list[UploadedFile]) -> bool:
    return len(files) == 1 and files[0].name.lower().endswith(".zip")


def _describe(files: list[UploadedFile]) -> str:
    return _UNSAFE.sub("_", PurePosixPath(files[0].name.replace("\\", "/")).name) if len(files) == 1 else f"{len(files)} uploaded files"


def progress_records(progress: Callable[[ImportProgress], None] | None) -> Callable[[int, int, str], None]:
    """A callback for the importer's ``progress(done, total, message)`` that calls ``progress`` with one :class:`ImportProgress`.

    For :func:`~segcore.data.imports.import_dataset` called directly (a
    server folder), so that every caller reads progress the same way.
    """
    if progress is None:
        return lambda done, total, message: None
    return lambda done, total, message: progress(ImportProgress(done, total, message))


MAX_TEXT_UPLOAD = 1024**2  # bytes: a class list or colour table is a short text file


def upload_text(upload: UploadedFile, what: str, limit: int = MAX_TEXT_UPLOAD) -> str:
    """An uploaded text file (a class list, a colour table) as text.

    Raises:
        ValueError: naming the file and ``what`` it should be, when it is
            larger than ``limit`` bytes or not UTF-8 text.
    """
    if memoryview(upload.data).nbytes > limit:  # checked before any copy of the bytes
        raise ValueError(f"the uploaded {what} {upload.name!r} is larger than {limit // 1024**2} MiB; "
                         "expected a short text file")
    try:
        return bytes(upload.data).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"the uploaded {what} {upload.name!r} is not UTF-8 text") from None

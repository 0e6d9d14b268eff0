"""Safe extraction of uploaded ``.zip`` archives into the workspace.

Every member is checked before anything is written: no absolute paths, no
``..`` components, no symbolic links, at most ``max_files`` files and
``max_bytes`` bytes uncompressed (a "zip bomb" is refused from its directory,
and the bytes actually written are counted too, since the directory can lie).
Extraction goes into a fresh folder under the workspace's ``tmp`` folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from segcore.fsutil import make_temp_dir
from segcore.workspace import ServerSettings

# The server's defaults (4 GiB uncompressed, 100,000 files); a server changes them in server.json.
DEFAULT_MAX_BYTES = ServerSettings.max_archive_bytes
DEFAULT_MAX_FILES = ServerSettings.max_archive_files
_CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """An archive (or an upload) refused for safety; the message names the member and the rule."""


def relative_path(name: str, *, what: str, refusing: str) -> PurePosixPath:
    """``name`` (``/`` or ``\\`` separated) as a relative path that stays inside the folder it is written to.

    Args:
        name: a path as given by an archive member or an upload.
        what: what the name belongs to, for the message (``"cells.zip member"``).
        refusing: what is refused (``"the archive"``).

    Raises:
        UnsafeArchiveError: for an absolute path (``/``, ``\\`` or a drive letter first) or a ``..`` part.
    """
    posix = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or posix.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{what} {name!r} has an absolute path; refusing {refusing}")
    if ".." in posix.parts:
        raise UnsafeArchiveError(f"{what} {name!r} contains '..'; refusing {refusing}")
    return posix


# Folders an archive member may be nested in (plus the file itself); real datasets use a handful.
MAX_MEMBER_DEPTH = 32


def check_members(zf: zipfile.ZipFile, archive: str | Path, max_bytes: int, max_files: int) -> list[zipfile.ZipInfo]:
    """Return the file members of ``zf`` after checking every member.

    Raises:
        UnsafeArchiveError: for a path escaping the folder, a link, or too much content.
        ValueError: if the archive holds no files.
    """
    infos = zf.infolist()
    files = []
    total = 0
    seen: set[PurePosixPath] = set()
    for info in infos:
        name = info.filename
        rel = relative_path(name, what=f"{archive} member", refusing="the archive")
        if len(rel.parts) > MAX_MEMBER_DEPTH:
            raise UnsafeArchiveError(
                f"{archive} member {name[:80]!r}... is nested {len(rel.parts) - 1} folders deep; at most "
                f"{MAX_MEMBER_DEPTH - 1} are read. Refusing the archive"
            )
        if not info.is_dir():
            if rel in seen:
                raise ValueError(
                    f"{archive} holds member {name!r} twice, with different contents possible; which one is meant "
                    "cannot be told, so the archive is refused. Make the archive again"
                )
            seen.add(rel)
        unix_mode = info.external_attr >> 16
        if stat.S_ISLNK(unix_mode):
            raise UnsafeArchiveError(f"{archive} member {name!r} is a symbolic link; refusing the archive")
        if info.is_dir():
            continue
        files.append(info)
        total += info.file_size
        if len(files) > max_files:
            raise UnsafeArchiveError(f"{archive} holds more than {max_files:,} files; refusing it")
        if total > max_bytes:
            raise UnsafeArchiveError(
                f"{archive} would expand to more than {max_bytes:,} bytes; refusing it (zip bomb guard)"
            )
    if not files:
        raise ValueError(f"{archive} is empty: it contains no files")
    return files


def extract_zip(
    archive: str | os.PathLike,
    dest_parent: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> Path:
    """Extract ``archive`` safely into a new folder under ``dest_parent``.

    Args:
        archive: the ``.zip`` file.
        dest_parent: folder (inside the workspace) that receives a new extraction folder.
        max_bytes: cap on the total uncompressed size.
        max_files: cap on the number of files.

    Returns:
        The folder holding the extracted files (the caller removes it when done).

    Raises:
        UnsafeArchiveError: for unsafe members or too much content (nothing is left behind).
        ValueError: if the file is not a zip archive or is empty.
    """
    archive = Path(archive)
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"{archive} is not a zip archive")
    dest_parent = Path(dest_parent)
    dest_parent.mkdir(parents=True, exist_ok=True)
    dest = make_temp_dir(dest_parent, "unzip-")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = check_members(zf, archive, max_bytes, max_files)
            written = 0
            root = dest.resolve()
            for info in members:
                rel = PurePosixPath(info.filename.replace("\\", "/"))
                target = (dest / Path(*rel.parts)).resolve()
                if root not in target.parents:
                    raise UnsafeArchiveError(f"{archive} member {info.filename!r} would land outside {dest}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > max_bytes:
                            raise UnsafeArchiveError(
                                f"{archive} expands past {max_bytes:,} bytes while extracting "
                                f"{info.filename!r}; refusing it (zip bomb guard)"
                            )
                        out.write(chunk)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ValueError(f"{archive} is a damaged zip archive: {exc}") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def content_root(folder: Path) -> Path:
    """Descend through a chain of single sub-folders (``data.zip`` holding ``data/``)."""
    folder = Path(folder)
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder

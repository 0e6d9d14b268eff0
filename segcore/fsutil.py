"""Small filesystem helpers shared by every stage: atomic writes and safe names.

Every file that another process may read while it is being written (run status,
history, dataset.json) goes through these functions, so a reader sees either the
old content or the new one, never half a file.

Files and folders are created with the modes ordinary tools use (0666 and 0777
less the process umask: 0644 and 0755 by default), so a teammate given read
access to a shared workspace can read everything in it. ``tempfile.mkstemp``
and ``mkdtemp`` are not used for that reason: they create 0600 files and 0700
folders whatever the umask.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str, what: str = "name") -> str:
    """Validate a user-given name for a dataset or run folder.

    Args:
        name: the name received.
        what: what the name is for, used in the error message.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: if the name could escape its folder or is not a plain word.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(
            f"{what} {name!r} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..' or '/'"
        )
    return name


def ensure_inside(path: Path, root: Path) -> Path:
    """Return ``path`` resolved, raising ValueError if it lies outside ``root``."""
    resolved = Path(path).resolve()
    root_resolved = Path(root).resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise ValueError(f"path {path} lies outside {root}; refusing to write there")
    return resolved


def make_temp_dir(parent: str | os.PathLike, prefix: str = "tmp-") -> Path:
    """Create a new, uniquely named folder under ``parent`` (mode 0777 less the umask)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            path.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"could not create a new temporary folder in {parent}")  # pragma: no cover


def _create_temp_file(folder: Path, name: str) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(folder / f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp  # the kernel applies the umask
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {folder}")  # pragma: no cover


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (mode 0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp_file(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, raising ValueError that names the file if it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


# Errors that mean "this folder cannot be written", not a bug: said in one line.
_NOT_WRITABLE = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable (permission denied)",
                 errno.EPERM: "is not writable (operation not permitted)"}
_FULL = {errno.ENOSPC: "has no space left on its device", errno.EDQUOT: "is over its disk quota"}


def is_write_refused(exc: BaseException) -> bool:
    """Whether ``exc`` says a folder is read-only, not writable or full."""
    return isinstance(exc, OSError) and exc.errno in {**_NOT_WRITABLE, **_FULL}


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def describe_os_error(exc: OSError) -> str:
    """One line for a user: which folder could not be written and why (read-only, permission, full).

    Other OS errors are returned as their own message, naming the file.
    """
    path = exc.filename or exc.filename2
    reason = _NOT_WRITABLE.get(exc.errno) or _FULL.get(exc.errno)
    if reason is None or path is None:
        return str(exc)
    folder = Path(os.fsdecode(path))
    if not folder.is_dir():
        folder = folder.parent
    # Name the nearest folder that exists: the one that refused the write.
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    hint = "free some space or point SEGCORE_WORKSPACE at another folder" if exc.errno in _FULL else \
        "point SEGCORE_WORKSPACE at a writable folder"
    return f"cannot write to {folder}: it {reason}; {hint}"


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the types that end up in our JSON files.
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")

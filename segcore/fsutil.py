"""Small filesystem helpers shared by every stage: atomic writes and safe names.

Every file that another process may read while it is being written (run status,
history, dataset.json) goes through these functions, so a reader sees either the
old content or the new one, never half a file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
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


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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

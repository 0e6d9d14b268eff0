"""Paths inside an import: what an imported dataset may make segcore read.

An import reads files from one folder, its *source root* (the folder given,
the folder a zip was extracted into, or the folder of a COCO file). Two rules
keep every read inside it:

* :func:`resolve_in_source` is the one function that turns a path *named
  inside* the data (a LabelMe ``imagePath``, a COCO ``file_name``, a class or
  colour table file, a folder named by an option) into a file to read. The
  path is resolved against the source root after following symbolic links,
  and anything that ends up outside the root is refused with one message,
  the same whether or not such a file exists.
* While a folder is listed (:func:`listing`), entries that are symbolic links
  leading out of the root are skipped and remembered, so that the import can
  warn about them by name; their targets are never opened.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


class OutsideSourceError(ValueError):
    """A path named inside the imported data that leads outside it."""


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True if ``path``, with every symbolic link followed, is ``root`` or lies under it."""
    resolved = Path(path).resolve()
    base = Path(root).resolve()
    return resolved == base or base in resolved.parents


def resolve_in_source(root: str | os.PathLike, name: str | os.PathLike, *, field: str, base: str | os.PathLike | None = None) -> Path:
    """Resolve a path named inside the imported data, refusing any that leaves the data.

    Args:
        root: the import's source root.
        name: the path as written in the data (relative or absolute).
        field: where the path was written, for the message, e.g.
            ``"a.json imagePath"`` or ``"import option classes_file"``.
        base: the folder relative paths start from (default ``root``), e.g.
            the folder of the LabelMe file.

    Returns:
        The resolved path, inside ``root``. It may not exist.

    Raises:
        OutsideSourceError: if the path is absolute, climbs out with ``..``,
            or leads out through a symbolic link. The message does not say
            whether anything exists there.
    """
    text = str(name)
    if not text or "\x00" in text:
        raise OutsideSourceError(f"{field} is {text!r}; expected a path inside the imported data")
    candidate = Path(base if base is not None else root) / text
    if not is_inside(candidate, root):
        raise OutsideSourceError(refusal(field, text))
    return candidate.resolve()


def refusal(field: str, name: str) -> str:
    """The one message for a path that leads outside the imported data."""
    return (
        f"{field} names {name!r}, which is not inside the imported data; "
        "expected a path relative to the imported folder that stays inside it (not read)"
    )


# --------------------------------------------------------------------------- listing folders


@dataclass
class _Scope:
    root: Path
    skipped: set[Path] = field(default_factory=set)
    # folder -> [(entry, is_dir, is_file)]: an import lists each folder once, however often its layouts look
    listed: dict[Path, list[tuple[Path, bool, bool]]] = field(default_factory=dict)


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("segcore_import_scope", default=None)


@contextlib.contextmanager
def listing(root: str | os.PathLike) -> Iterator[_Scope]:
    """Within this block, :func:`entries` skips symbolic links that lead out of ``root``.

    The scope belongs to the calling thread (a ``ContextVar``), so concurrent
    imports do not see each other's roots. Yields the scope; its ``skipped``
    set holds the links that were skipped.
    """
    current = _SCOPE.get()
    if current is not None and is_inside(root, current.root):
        yield current  # a nested listing of the same import
        return
    scope = _Scope(Path(root).resolve())
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def _scan(folder: Path) -> list[tuple[Path, bool, bool]]:
    """``(entry, is_dir, is_file)`` for the entries of ``folder``, sorted by name, without links that leave the root.

    Inside a :func:`listing` block the result is kept for the rest of the
    block: one ``scandir`` per folder per import, whose entry types come with
    the listing (no ``stat`` per file but for links).
    """
    folder = Path(folder)
    scope = _SCOPE.get()
    if scope is not None and folder in scope.listed:
        return scope.listed[folder]
    root = scope.root if scope is not None else folder.resolve()
    kept = []
    try:
        with os.scandir(folder) as it:
            found = sorted(it, key=lambda e: e.name)
    except OSError:
        found = []
    for e in found:
        p = folder / e.name
        try:
            link = e.is_symlink()
            if link and not is_inside(p, root):
                if scope is not None:
                    scope.skipped.add(p)
                continue
            kept.append((p, e.is_dir(), e.is_file()))
        except OSError:
            continue
    if scope is not None:
        scope.listed[folder] = kept
    return kept


def entries(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted, without links that leave the current import's root.

    Outside a :func:`listing` block every symbolic link that leaves ``folder``
    itself is skipped.
    """
    return [p for p, _, _ in _scan(folder)]


def files(folder: Path) -> list[Path]:
    """The files of ``folder`` (links inside the root followed), as :func:`entries` lists them."""
    return [p for p, _, is_file in _scan(folder) if is_file]


def folders(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` (links inside the root followed), as :func:`entries` lists them."""
    return [p for p, is_dir, _ in _scan(folder) if is_dir]

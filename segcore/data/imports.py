"""Importing a dataset from any supported layout into the canonical layout.

``import_dataset(source, name)`` finds the samples (see
:mod:`segcore.data.layouts`), decides how masks encode classes (see
:mod:`segcore.data.masks`), reads and checks every file in parallel, writes
``images/`` and ``masks/`` into a scratch folder under the workspace, writes
``dataset.json``, and renames the folder into ``datasets/<name>`` in one step.
A failed import leaves nothing behind. Problems found in the data are listed
in the report and in ``dataset.json``; a bad file is skipped with a problem,
and only ``strict=True`` turns such problems into a failed import.

Inside, an import is a row of named steps that pass one record along,
:class:`_Import` (the request, where the data is read from, what was found,
the report so far): unpack, choose the layout, discover the samples, plan how
to read them (:class:`_Plan`: the class table, the mask encoding, the
channels), read every sample, finish (dataset-wide problems and statistics),
publish.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import os
import shutil
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

import segcore
from segcore.access import Actor, local_actor, require
from segcore.data import imageio, layouts, masks, paths, polygons
from segcore.data.archive import content_root, extract_zip
from segcore.data.dataset import IGNORE_INDEX, ClassInfo, DatasetInfo, Problem, SampleInfo, pixel_hash
from segcore.data.options import ImportOptions, as_options, option_hint, parse_colors
from segcore.fsutil import check_name, make_temp_dir, read_json, write_json_atomic
from segcore.workspace import ServerSettings, Workspace, get_workspace

LAYOUTS = dict(layouts.LAYOUTS)
LAYOUTS["zip"] = "a .zip archive of any layout above (extracted safely, then detected)"

Progress = Callable[[int, int, str], None]
_PROBE = 24  # masks read up front to choose the mask encoding
_BACKGROUND_NAMES = ("background", "_background_", "__background__", "bg")


@dataclass
class ImportReport:
    """What an import did: the dataset made (or the error) and every problem found."""

    name: str
    ok: bool
    dataset: DatasetInfo | None = None
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    layout: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        info = self.dataset
        return {
            "ok": self.ok,
            "name": self.name,
            "error": self.error,
            "layout": self.layout,
            "mode": info.mode if info else None,
            "classes": info.class_names if info else [],
            "num_samples": len(info.samples) if info else 0,
            "channels": info.channels if info else None,
            "class0": ("background" if info.class0_is_background else "class") if info else None,
            "problems": [p.to_dict() for p in self.problems],
            "details": self.details,
            "seconds": round(self.seconds, 3),
        }


def is_zip(path: Path) -> bool:
    """Whether ``path`` is a ``.zip`` archive to extract (a file named ``*.zip``, any case)."""
    return path.is_file() and path.suffix.lower() == ".zip"


def detect_layout(path: str | os.PathLike, workspace: Workspace | None = None) -> tuple[str, dict]:
    """Guess the layout of a folder, ``.zip`` archive or COCO ``.json`` file.

    Args:
        path: the source.

    Returns:
        ``(layout, details)``: a name from ``LAYOUTS`` and what was seen. For a
        zip the details hold the layout found inside (``inner_layout``).

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: if no layout fits (the message lists the layouts to state).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if is_zip(path):
        ws = workspace or get_workspace()
        folder = _extract(path, ws.tmp_dir, ws.settings())
        try:
            inner, details = layouts.detect(content_root(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return "zip", {"inner_layout": inner, **details}
    return layouts.detect(path.resolve())


def _extract(archive: Path, into: Path, limits: ServerSettings) -> Path:
    """Extract ``archive`` safely into a new folder under ``into``, within the server's archive limits."""
    return extract_zip(archive, into, max_bytes=limits.max_archive_bytes, max_files=limits.max_archive_files)


def import_dataset(
    source: str | os.PathLike,
    name: str,
    *,
    layout: str = "auto",
    options: ImportOptions | dict[str, Any] | None = None,
    strict: bool = False,
    workspace: Workspace | None = None,
    progress: Progress | None = None,
    on_exists: str = "error",
    source_label: str | None = None,
    actor: Actor | None = None,
) -> ImportReport:
    """Import a dataset into the workspace under ``name``.

    Args:
        source: a folder, a ``.zip`` archive, or a COCO ``.json`` file.
        name: the dataset name (letters, digits, ``.``, ``_``, ``-``).
        layout: a name from ``LAYOUTS`` or ``"auto"`` to detect it.
        options: an :class:`~segcore.data.options.ImportOptions`, or a dict
            read strictly into one (an unknown key is an error). Limits on
            pixels, archive size and threads are server settings
            (``workspace.settings()``), not options.
        strict: fail the whole import if any file had to be skipped.
        workspace: the workspace (default: ``get_workspace()``).
        progress: called as ``progress(done, total, message)``.
        on_exists: ``"error"`` to refuse an existing name, ``"version"`` to
            import as ``name-2``, ``name-3``, ...
        source_label: what ``dataset.json`` records as the source (an
            upload's file names: its saved copy is deleted afterwards);
            default the source's path.
        actor: who imports it (default: the local user); kept in ``dataset.json``'s
            ``source.imported_by`` with the time.

    Returns:
        An :class:`ImportReport`; ``ok`` is False with ``error`` set when
        nothing was imported. Never raises for problems in the data.

    Raises:
        ValueError: for a bad name, unknown layout, bad options or bad server settings.
        FileExistsError: if ``name`` exists and ``on_exists="error"``.
        FileNotFoundError: if the source does not exist.
        AccessDenied: ``actor`` may not import data.
    """
    started = time.perf_counter()
    actor = actor or local_actor()
    require(actor, "import")
    ws = workspace or get_workspace()
    ws.ensure()
    options = as_options(options)
    limits = ws.settings()
    name, source = _check_request(ws, name=name, source=source, layout=layout, on_exists=on_exists)
    job = _Import(
        source=source, name=name, options=options, workspace=ws, limits=limits,
        progress=progress or _no_progress, scratch=make_temp_dir(ws.tmp_dir, f"import-{name}-"), source_label=source_label,
        actor=actor,
    )  # fmt: skip
    try:
        _run(job, layout=layout, strict=strict)
    except _ImportFailed as exc:
        job.fail(exc)
    except (ValueError, OSError) as exc:
        if isinstance(exc, FileExistsError) and not job.report.layout:
            raise
        job.fail(exc)
    except Exception as exc:  # crafted data may break a reader in any way: a failed import that says so, never a traceback
        job.fail(f"{type(exc).__name__} while reading {job.source.name}: {exc}"[:1000])
    finally:
        shutil.rmtree(job.scratch, ignore_errors=True)
        job.report.seconds = time.perf_counter() - started
    return job.report


class _ImportFailed(Exception):
    pass


def _no_progress(done: int, total: int, message: str) -> None:
    pass


_clock = time.monotonic  # the import's time limit is measured with this


@dataclass
class _Import:
    """What an import has gathered so far, passed from one step to the next.

    The request comes first (``source`` resolved, ``name`` free, ``options``,
    ``workspace`` and its ``limits``, ``progress``, the ``scratch`` folder);
    the steps then set ``root`` (the folder the data is read from: the source,
    or the extracted archive), ``discovery`` (the samples found) and, all
    along, the ``report``.
    """

    source: Path
    name: str
    options: ImportOptions
    workspace: Workspace
    limits: ServerSettings
    progress: Progress
    scratch: Path
    source_label: str | None = None
    report: ImportReport = field(init=False)
    root: Path = field(init=False)
    discovery: layouts.Discovery | None = None
    actor: Actor | None = None  # who imports it (None: the local user)

    def __post_init__(self) -> None:
        self.report = ImportReport(name=self.name, ok=False)
        self.root = self.source
        self.started = _clock()

    def check_time(self, step: str) -> None:
        """Stop the import when it has run longer than the server's ``max_import_seconds``."""
        limit = self.limits.max_import_seconds
        if _clock() - self.started > limit:
            raise _ImportFailed(
                f"the import ran longer than {limit:,} s (server setting max_import_seconds) and was stopped while "
                f"{step}; nothing was imported"
            )

    @property
    def out(self) -> Path:
        """The dataset folder being written, inside the scratch folder until it is published."""
        return self.scratch / "dataset"

    @property
    def samples(self) -> list[layouts.RawSample]:
        return self.discovery.samples if self.discovery else []

    def fail(self, exc: Exception) -> None:
        """Mark the report failed with ``exc`` as its error (nothing is imported)."""
        message = str(exc)
        if len(message) > 2000:  # a crafted file name can be thousands of characters long
            message = message[:1997] + "..."
        self.report.ok, self.report.error, self.report.dataset = False, message, None


def _check_request(ws: Workspace, *, name: str, source: str | os.PathLike, layout: str, on_exists: str) -> tuple[str, Path]:
    """(the name to import as, the resolved source), or an error for a bad request before anything is written."""
    check_name(name, "dataset name")
    if layout not in LAYOUTS and layout != "auto":
        raise ValueError(f"layout {layout!r} is not known; layouts are {sorted(LAYOUTS)} or 'auto'")
    name = _free_name(ws, name, on_exists)
    source = Path(source).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    return name, source.resolve()


def _run(job: _Import, *, layout: str, strict: bool) -> None:
    """The import's steps in order; any of them may raise to fail the import."""
    _unpack(job)
    _count_files(job)
    job.check_time("unpacking")
    layout = _choose_layout(job, layout)
    job.options = _read_tables(job.options, job.root.parent if job.root.is_file() else job.root)
    _discover(job, layout)
    job.check_time("finding the samples")
    info = _with_source(job, _build(job))
    job.check_time("finishing")
    job.report.dataset = info
    if strict:
        _refuse_errors(job.report)
    _publish(job, info)


def _unpack(job: _Import) -> None:
    """Extract a zip source into the scratch folder and read from there."""
    if not is_zip(job.source):
        return
    job.progress(0, 0, f"extracting {job.source.name}")
    job.root = content_root(_extract(job.source, job.scratch, job.limits))
    job.report.details["archive"] = job.source.name


def _count_files(job: _Import) -> None:
    """Refuse a folder with more files than the server's ``max_archive_files`` before reading any of them."""
    if job.root.is_file():
        return  # a COCO file: only the images it names are read, not its folder
    limit = job.limits.max_archive_files
    count, stack = 0, [job.root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        count += 1
        except OSError:
            continue  # an unreadable folder is reported by the layout that needs it
        if count > limit:
            raise _ImportFailed(
                f"{job.source.name} holds more than {limit:,} files (server setting max_archive_files); refusing to import it"
            )


def _choose_layout(job: _Import, layout: str) -> str:
    """The layout stated, or the one detected (and why, in the report)."""
    if layout in ("auto", "zip"):
        layout, why = layouts.detect(job.root)
        job.report.details["detected"] = why
    job.report.layout = layout
    return layout


def _discover(job: _Import, layout: str) -> None:
    """Find the samples; the layout's problems and notable details go to the report."""
    discovery = layouts.discover(layout, job.root, job.options)
    job.report.problems.extend(discovery.problems)
    for key in ("annotators", "folder_roles", "annotator_of_samples", "class_folders_named"):
        if discovery.details.get(key):
            job.report.details[key] = discovery.details[key]
    if job.root.is_file():  # a COCO file: its folder is the source root
        job.root = job.root.parent
    job.discovery = discovery


def _with_source(job: _Import, info: DatasetInfo) -> DatasetInfo:
    """``info`` with where it came from: the source path, the layout, the options changed and the report's details."""
    source = {"path": job.source_label or str(job.source), "layout": job.report.layout, "options": job.options.changed(), **job.report.details,
              "imported_by": {**(job.actor or local_actor()).record(), "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}}
    return DatasetInfo(**{**info.__dict__, "source": source})


def _refuse_errors(report: ImportReport) -> None:
    """Strict mode: fail when any problem is an error (a file was skipped)."""
    errors = [p for p in report.problems if p.severity == "error"]
    if errors:
        raise _ImportFailed(f"strict mode: {len(errors)} problems; first: {errors[0].message}")


def _publish(job: _Import, info: DatasetInfo) -> None:
    """Write ``dataset.json`` and rename the finished folder into the workspace in one step."""
    write_json_atomic(job.out / "dataset.json", info.to_dict())
    target = job.workspace.dataset_dir(job.name)
    if target.exists():
        raise FileExistsError(f"dataset {job.name!r} appeared in {job.workspace.datasets_dir} during the import; not overwritten")
    os.rename(job.out, target)
    job.report.ok = True
    n = len(info.samples)
    job.progress(n, n, f"imported {n} samples as {job.name!r}")


def _free_name(ws: Workspace, name: str, on_exists: str) -> str:
    if on_exists not in ("error", "version"):
        raise ValueError(f"on_exists {on_exists!r} is not 'error' or 'version'")
    if not ws.dataset_dir(name).exists():
        return name
    if on_exists == "error":
        raise FileExistsError(
            f"a dataset named {name!r} already exists in {ws.datasets_dir}; choose another name "
            f"or import it as a new version, {name}-2 ({option_hint('on_exists')})"
        )
    n = 2
    while ws.dataset_dir(f"{name}-{n}").exists():
        n += 1
    return check_name(f"{name}-{n}", "dataset name")


# --------------------------------------------------------------------------- classes

_MAX_TABLE_BYTES = 1024**2  # a class list or colour table larger than this is not one


def read_class_list(text: str, ignore_labels=ImportOptions.ignore_labels) -> list[str]:
    """Class names from a class list, one a line (blank lines and void labels such as ``__ignore__`` skipped)."""
    names = [line.strip() for line in text.splitlines() if line.strip()]
    ignore = {str(x).lower() for x in ignore_labels}
    return [n for n in names if n.lower() not in ignore]


def _read_table_file(root: Path, name: str, field: str) -> Path:
    path = paths.resolve_in_source(root, name, field=field)
    if not path.is_file():
        raise ValueError(f"{field} names {name!r}, which is not a file in the imported data")
    if path.stat().st_size > _MAX_TABLE_BYTES:
        raise ValueError(f"{field} names {name!r}, which is larger than {_MAX_TABLE_BYTES:,} bytes; expected a short table")
    return path


def _read_tables(options: ImportOptions, root: Path) -> ImportOptions:
    """Read ``classes_file`` and ``colors_file`` (files inside the data) into ``classes`` and ``colors``."""
    changes: dict[str, Any] = {}
    if options.classes_file and not options.classes:
        path = _read_table_file(root, options.classes_file, "import option classes_file")
        changes["classes"] = tuple(read_class_list(path.read_text(encoding="utf-8", errors="replace"), options.ignore_labels))
    if options.colors_file and not options.colors:
        path = _read_table_file(root, options.colors_file, "import option colors_file")
        changes["colors"] = parse_colors(read_json(path), f"colour table {options.colors_file}")
    return dataclasses.replace(options, **changes) if changes else options


def _class_list_in_data(job: _Import) -> list[str]:
    """Class names from a class list file at the top of the data (``labels.txt`` ...), or none."""
    for candidate in ("labels.txt", "class_names.txt", "classes.txt"):
        try:
            path = paths.resolve_in_source(job.root, candidate, field="class list")
        except paths.OutsideSourceError as exc:
            job.report.problems.append(Problem("outside_source", str(exc), (candidate,), "warning"))
            continue
        if path.is_file() and path.stat().st_size <= _MAX_TABLE_BYTES:
            return read_class_list(path.read_text(encoding="utf-8", errors="replace"), job.options.ignore_labels)
    return []


def _polygon_classes(job: _Import) -> tuple[list[str], set[str]]:
    """(class names with background first, labels treated as void)."""
    ignore_labels = set(job.options.ignore_labels)
    names = list(job.options.classes) or _class_list_in_data(job)
    if not names:
        discovery = job.discovery
        labels = [lab for lab in discovery.labels or [] if lab not in ignore_labels]
        if discovery.layout != "coco":
            labels = sorted(labels, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s.lower()))
        names = labels
    names = [str(n) for n in names]
    if names and names[0].lower() in _BACKGROUND_NAMES:
        names = ["background"] + names[1:]
    else:
        names = ["background"] + [n for n in names if n.lower() not in _BACKGROUND_NAMES]
    return names, ignore_labels


@dataclass(frozen=True)
class _ClassTable:
    """The classes of an import: names (background first), colours, label -> value, and the mask encoding if masks are files."""

    names: list[str]
    colors: list
    value_of: dict[str, int] = field(default_factory=dict)
    spec: masks.MaskSpec | None = None


def _file_classes(job: _Import) -> _ClassTable:
    """Mask files: the classes and encoding from a probe of the masks (and the options)."""
    spec = _probe_spec(job.samples, options=job.options, max_pixels=job.limits.max_image_pixels)
    job.report.details["mask_encoding"] = spec.to_dict()
    return _ClassTable(spec.class_names, spec.class_colors, spec=spec)


def _union_classes(job: _Import) -> _ClassTable:
    """Binary masks unioned per sample: background and one foreground class."""
    names = [str(c) for c in job.options.classes or ["background", job.options.foreground]]
    if len(names) != 2:
        raise ValueError(f"a folder-per-sample dataset has 2 classes (background, foreground); got {names}")
    return _ClassTable(names, [masks.default_color(i) for i in range(2)])


def _folder_classes(job: _Import) -> _ClassTable:
    """One mask folder per class: the folders name the classes, after the background."""
    names = ["background"] + list(job.discovery.labels or [])
    value_of = {n: i for i, n in enumerate(names) if i > 0}
    return _ClassTable(names, [masks.default_color(i) for i in range(len(names))], value_of)


def _polygon_table(job: _Import) -> _ClassTable:
    """Polygons: classes named by the options, a class list in the data or the labels; an unknown label is a problem."""
    names, ignore_labels = _polygon_classes(job)
    value_of = {n: i for i, n in enumerate(names)}
    value_of.update({lab: IGNORE_INDEX for lab in ignore_labels})
    unknown = sorted({s.label for smp in job.samples for s in smp.shapes or []} - set(value_of))
    if unknown:
        job.report.problems.append(
            Problem(
                "unknown_label",
                f"polygon labels {unknown} are not in the class table {names}; those polygons were skipped",
                tuple(sorted({str(smp.label_file) for smp in job.samples for s in smp.shapes or [] if s.label in unknown})),
                "warning",
            )
        )
    return _ClassTable(names, [masks.default_color(i) for i in range(len(names))], value_of)


_CLASS_TABLES: dict[str, Callable[[_Import], _ClassTable]] = {
    "file": _file_classes,
    "union": _union_classes,
    "classes": _folder_classes,
    "polygons": _polygon_table,
}


# --------------------------------------------------------------------------- the import


@dataclass(frozen=True)
class _Plan:
    """How every sample of an import is read and written: the same for all of them, shared by the reading threads."""

    kind: str  # how labels are stored: "file", "union", "classes" or "polygons" (see _label_kind)
    root: Path  # the folder the data is read from
    out: Path  # the dataset folder being written
    classes: _ClassTable
    channels: int  # 1 or 3, as probed; the finish may raise it to 3
    max_pixels: int

    @property
    def num_classes(self) -> int:
        return len(self.classes.names)

    @property
    def spec(self) -> masks.MaskSpec | None:
        return self.classes.spec


@dataclass
class _Result:
    sample: SampleInfo | None
    grey: bool = True
    counts: np.ndarray | None = None  # per class pixel counts (index) or per plane (multilabel)
    background: int = 0
    labelled: int = 0
    overlap: int = 0
    problems: list[Problem] = field(default_factory=list)
    noisy: list = field(default_factory=list)  # (mask file, pixels snapped, of them farther than a JPEG shift)
    outside: dict = field(default_factory=dict)
    mask_mode: str = ""
    read_as: str = ""  # how a mask of an unusual mode was read, for the report
    not_finite: list = field(default_factory=list)  # (mask file, NaN or infinite pixels made void)
    notes: list[str] = field(default_factory=list)


def _build(job: _Import) -> DatasetInfo:
    """Plan, read every sample, and sum up: the dataset record of what was written under ``job.out``."""
    if not job.samples:
        raise _ImportFailed(f"no samples found in {job.root} with layout {job.discovery.layout!r}")
    plan = _plan(job)
    _make_folders(plan)
    return _finish(job, plan, _read_samples(job, plan))


def _plan(job: _Import) -> _Plan:
    kind = _label_kind(job.samples[0])
    classes = _CLASS_TABLES[kind](job)
    max_pixels = job.limits.max_image_pixels
    channels = _probe_channels(job.samples, max_pixels)
    return _Plan(kind=kind, root=job.root, out=job.out, classes=classes, channels=channels, max_pixels=max_pixels)


def _make_folders(plan: _Plan) -> None:
    (plan.out / "images").mkdir(parents=True)
    (plan.out / "masks").mkdir()
    if plan.kind == "classes":  # one plane per class until the finish decides
        for k in range(1, plan.num_classes):
            (plan.out / "masks" / str(k)).mkdir()


def _read_samples(job: _Import, plan: _Plan) -> list[_Result]:
    """Every sample read and written, in parallel; the progress is reported every 16 samples."""
    samples = job.samples
    workers = job.limits.import_workers or min(8, (os.cpu_count() or 2) * 2)
    results: list[_Result] = []
    total = len(samples)
    job.progress(0, total, f"reading {total} samples ({job.discovery.layout})")
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for i, res in enumerate(pool.map(functools.partial(_read_one, plan=plan), samples), 1):
            results.append(res)
            job.check_time(f"reading sample {i} of {total}")
            if i % 16 == 0 or i == total:
                job.progress(i, total, f"read {i}/{total} samples")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on a failure, samples not started are never read
    return results


def _read_one(raw: layouts.RawSample, *, plan: _Plan) -> _Result:
    """One sample read and written, or skipped with the problem that says why."""
    try:
        return _process(_Sample(raw=raw, plan=plan))
    except _Skipped as skipped:
        return skipped.result
    except (imageio.ImageReadError, ValueError, OSError) as exc:
        message = str(exc)
        for f in [raw.image, *raw.mask_files]:
            if f is not None:
                message = message.replace(str(f), layouts.relative_name(Path(f), plan.root))
        return _Result(None, problems=[Problem("unreadable", f"sample {raw.id}: {message}", _files_of(raw, plan), "error")])
    except Exception as exc:  # a crafted file may break a decoder in any way: that sample's problem, named
        files = _files_of(raw, plan)
        return _Result(
            None,
            problems=[Problem("unreadable", f"sample {raw.id}: {', '.join(files)} could not be read ({type(exc).__name__}: {exc})", files, "error")],
        )


def _files_of(raw: layouts.RawSample, plan: _Plan) -> tuple[str, ...]:
    """The source files of a sample, named relative to the import's root."""
    files = ([raw.image] if raw.image is not None else []) + raw.mask_files
    return tuple(layouts.relative_name(Path(f), plan.root) for f in files)

def _label_kind(raw: layouts.RawSample) -> str:
    if raw.mask is not None:
        return "file"
    if raw.union is not None:
        return "union"
    if raw.class_masks is not None:
        return "classes"
    return "polygons"


def _probe_spec(samples: list[layouts.RawSample], *, options: ImportOptions, max_pixels: int) -> masks.MaskSpec:
    """The mask encoding from a probe of up to ``_PROBE`` masks.

    Colour masks, or a colour table in the options, mean the masks are
    colour-coded: palette PNGs among them are then read through their palette
    (the colours they show) and grey masks as grey colours, never as indices.
    """
    seen = []  # (array, palette) per probed mask
    step = max(1, len(samples) // _PROBE)
    for raw in samples[::step][:_PROBE]:
        try:
            dec = imageio.read_mask(raw.mask, max_pixels)
        except imageio.ImageReadError:
            continue  # reported when the sample itself is read
        seen.append((dec.array, dec.palette))
    colour = bool(options.colors) or options.mask_encoding == "color" or any(a.ndim == 3 for a, _ in seen)
    grey: Counter = Counter()
    color: Counter = Counter()
    palette = None
    neighbours = np.zeros((256, 256), np.int64)
    for arr, pal in seen:
        if colour and arr.ndim == 2:
            arr = masks.palette_to_rgb(arr, pal) if pal is not None else np.repeat(np.clip(arr, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
        if pal is not None and palette is None:
            palette = pal
        if arr.ndim == 3:
            packed = (arr[:, :, 0].astype(np.int64) << 16) | (arr[:, :, 1].astype(np.int64) << 8) | arr[:, :, 2]
            u, c = np.unique(packed, return_counts=True)
            color.update({(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255): int(n) for v, n in zip(u, c)})
        elif arr.dtype in (np.uint8, np.uint16):
            counts = np.bincount(arr.ravel())  # far faster than np.unique for small integer types
            grey.update({int(v): int(counts[v]) for v in np.flatnonzero(counts)})
            if arr.dtype == np.uint8:
                neighbours += masks.neighbour_counts(arr)
        else:
            u, c = np.unique(arr, return_counts=True)
            grey.update({int(v): int(n) for v, n in zip(u, c)})
    if colour and options.mask_encoding == "auto" and not options.colors:
        options = dataclasses.replace(options, mask_encoding="color")
    spec = masks.infer_spec(dict(grey), dict(color), None if colour else palette, options)
    spec.suggestions = masks.void_suggestions(spec, dict(grey), neighbours)
    if spec.encoding == "color":
        for arr, pal in seen:
            if arr.ndim == 2:
                arr = masks.palette_to_rgb(arr, pal) if pal is not None else np.repeat(np.clip(arr, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
            spec.solid_colors |= masks.solid_colors(arr, spec)
    return spec


def _probe_channels(samples: list[layouts.RawSample], max_pixels: int) -> int:
    step = max(1, len(samples) // _PROBE)
    for raw in samples[::step][:_PROBE]:
        try:
            if raw.image is not None and imageio.probe(raw.image, max_pixels)[2] in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"):
                continue  # grey from the header alone
            image, _ = _read_sample_image(raw, max_pixels)
        except (imageio.ImageReadError, OSError):
            continue
        if image.ndim == 3:
            return 3
    return 1


def _read_sample_image(raw: layouts.RawSample, max_pixels: int) -> tuple[np.ndarray, list[str]]:
    image, notes, _ = _read_sample_image_full(raw, max_pixels)
    return image, notes


def _read_sample_image_full(raw: layouts.RawSample, max_pixels: int) -> tuple[np.ndarray, list[str], str]:
    """(pixels, conversion notes, PIL mode if the source is a plain 8-bit PNG else "")."""
    if raw.image is not None:
        dec = imageio.read_image(raw.image, max_pixels)
        return dec.array, dec.notes, dec.mode if dec.plain_png and not dec.notes else ""
    try:
        dec = imageio.read_image_bytes(raw.image_bytes or b"", f"{raw.label_file.name} imageData", max_pixels)
    except imageio.ImageReadError as exc:
        raise imageio.ImageReadError(f"{raw.label_file.name} holds no readable embedded image: {exc}") from None
    return dec.array, dec.notes, ""



class _Skipped(Exception):
    """A sample that cannot be imported, with the result that says why (raised while reading it)."""

    def __init__(self, result: _Result) -> None:
        super().__init__(result.problems[0].message if result.problems else "skipped")
        self.result = result


@dataclass
class _Sample:
    """One sample while it is read: the raw sample, the plan, the result so far, the image's size and the mask modes seen."""

    raw: layouts.RawSample
    plan: _Plan
    result: _Result = field(default_factory=lambda: _Result(None))
    height: int = 0
    width: int = 0
    modes: set[str] = field(default_factory=set)
    pixel_sha256: str = ""
    void: np.ndarray | None = None  # NaN / infinite pixels of the sample's float masks

    def note_void(self, dec: imageio.Decoded, path: Path) -> None:
        """Remember the NaN / infinite pixels of a decoded float mask (they become void)."""
        if dec.void is None or dec.void.shape != (self.height, self.width):
            return
        self.result.not_finite.append((self.name(path), int(np.count_nonzero(dec.void))))
        self.void = dec.void if self.void is None else (self.void | dec.void)

    def name(self, path: Path) -> str:
        """How the report names a file of this sample (relative to the import's root)."""
        return layouts.relative_name(path, self.plan.root)

    @functools.cached_property
    def mask_files(self) -> list[str]:
        return [self.name(p) for p in self.raw.mask_files]

    def check_size(self, got: tuple[int, ...], mask_file: Path | None = None) -> None:
        """Skip the sample (a ``size_mismatch`` problem) if a mask's (height, width) is not the image's."""
        if tuple(got[:2]) != (self.height, self.width):
            raise _Skipped(_size_problem(self, got=got, mask_file=mask_file))


@dataclass
class _Labels:
    """A sample's labels as read: an index mask (H, W), or class planes (H, W, K-1) with the pixels outside the field of view."""

    index: np.ndarray | None = None
    planes: np.ndarray | None = None
    outside_fov: np.ndarray | None = None


def _process(s: _Sample) -> _Result:
    """Read one sample's image and labels, write them as PNGs, and return what was seen."""
    raw, plan = s.raw, s.plan
    image, notes, plain_mode = _read_sample_image_full(raw, plan.max_pixels)
    if raw.image is not None:
        notes = [n.replace(str(raw.image), s.name(raw.image)) for n in notes]
    s.height, s.width = image.shape[:2]
    s.pixel_sha256 = pixel_hash(image)
    s.result = _Result(None, grey=image.ndim == 2, notes=notes)
    labels = _LABEL_READERS[plan.kind](s)
    _write_image(s, image, plain_mode)
    if labels.planes is not None:
        _write_planes(s, labels)
    else:
        _write_index(s, labels.index)
    s.result.sample = _sample_info(s)
    return s.result


def _file_labels(s: _Sample) -> _Labels:
    """A mask file decoded through the mask encoding; noise snapped and values outside the table noted."""
    dec = imageio.read_mask(s.raw.mask, s.plan.max_pixels)
    s.result.mask_mode = dec.mode
    s.check_size(dec.array.shape)
    arr = dec.array
    if s.plan.spec.encoding == "color" and arr.ndim == 2 and dec.palette is not None:
        arr = masks.palette_to_rgb(arr, dec.palette)  # the colours the palette PNG shows
        s.result.read_as = "palette colours"
    mr = masks.apply_spec(arr, s.plan.spec)
    s.note_void(dec, s.raw.mask)
    if s.void is not None:
        mr.index[s.void] = IGNORE_INDEX
    s.result.outside = mr.outside
    if mr.snapped:
        s.result.noisy.append((s.mask_files[0], mr.snapped, mr.snapped_far))
    return _Labels(index=mr.index)


def _union_labels(s: _Sample) -> _Labels:
    """Several binary masks of one sample, unioned into the foreground."""
    index = np.zeros((s.height, s.width), np.uint8)
    _union_binary_masks(s.raw.union, index, s)
    if s.void is not None:
        index[s.void] = IGNORE_INDEX
    s.result.mask_mode = "/".join(sorted(s.modes))
    return _Labels(index=index)


def _class_folder_labels(s: _Sample) -> _Labels:
    """One plane per class, each the union of that class's binary masks; a field-of-view mask marks void."""
    planes = np.zeros((s.height, s.width, s.plan.num_classes - 1), np.uint8)
    for cname, files in s.raw.class_masks.items():
        _union_binary_masks(files, planes[:, :, s.plan.classes.value_of[cname] - 1], s)  # a view: written in place
    s.result.mask_mode = "/".join(sorted(s.modes))
    outside = _outside_fov(s)
    if s.void is not None:
        outside = s.void if outside is None else (outside | s.void)
    return _Labels(planes=planes, outside_fov=outside)


def _outside_fov(s: _Sample) -> np.ndarray | None:
    """Where the sample's field-of-view mask is 0 (None when it has none)."""
    if s.raw.fov is None:
        return None
    dec = imageio.read_mask(s.raw.fov, s.plan.max_pixels)
    s.check_size(dec.array.shape, s.raw.fov)
    fov, _ = masks.binarize(dec.array)
    return fov == 0


def _polygon_labels(s: _Sample) -> _Labels:
    """Polygons (and COCO RLE) filled into an index mask."""
    raw = s.raw
    if raw.size:
        s.check_size(tuple(raw.size), raw.label_file)
    far = [sh for sh in raw.shapes or [] if sh.label in s.plan.classes.value_of and not polygons.inside_bounds(sh, s.height, s.width)]
    if far:
        where = s.name(raw.label_file) if raw.label_file else s.name(raw.image)
        s.result.problems.append(
            Problem(
                "polygon_outside_image",
                f"{where}: {len(far)} polygon{'s' if len(far) > 1 else ''} with coordinates that are not numbers or lie more "
                f"than one image size outside the {s.width}x{s.height} image; skipped",
                (where,),
                "error",
            )
        )
    index = polygons.fill(raw.shapes or [], s.height, s.width, s.plan.classes.value_of)
    for label, counts in raw.rle or []:
        if label in s.plan.classes.value_of:
            index[polygons.rle_decode(counts, s.height, s.width) > 0] = s.plan.classes.value_of[label]
    return _Labels(index=index)


_LABEL_READERS: dict[str, Callable[[_Sample], _Labels]] = {
    "file": _file_labels,
    "union": _union_labels,
    "classes": _class_folder_labels,
    "polygons": _polygon_labels,
}


def _write_image(s: _Sample, image: np.ndarray, plain_mode: str) -> None:
    """The image as a PNG with the dataset's channels; a canonical PNG already is one and is copied as it is."""
    path = s.plan.out / "images" / f"{s.raw.id}.png"
    if (plain_mode, s.plan.channels) in (("L", 1), ("RGB", 3)):
        shutil.copyfile(s.raw.image, path)  # re-encoding is the slowest step of an import
        return
    if s.plan.channels == 3 and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    path.write_bytes(_encode(image))


def _write_planes(s: _Sample, labels: _Labels) -> None:
    """One binary PNG per class (void outside the field of view); counts per class, background and overlap."""
    planes, outside_fov = labels.planes, labels.outside_fov
    if outside_fov is not None:
        planes[outside_fov] = 0
    for k in range(planes.shape[2]):
        plane = planes[:, :, k] if outside_fov is None else np.where(outside_fov, np.uint8(IGNORE_INDEX), planes[:, :, k])
        (s.plan.out / "masks" / str(k + 1) / f"{s.raw.id}.png").write_bytes(_encode(plane, mask=True))
    res = s.result
    res.counts = planes.reshape(-1, planes.shape[2]).sum(axis=0, dtype=np.int64)
    depth = planes.sum(axis=2, dtype=np.uint8)
    void = 0 if outside_fov is None else int(np.count_nonzero(outside_fov))
    res.background = int(np.count_nonzero(depth == 0)) - void
    res.overlap = int(np.count_nonzero(depth > 1))
    res.labelled = s.height * s.width - void


def _write_index(s: _Sample, index: np.ndarray) -> None:
    """The index mask as a PNG; counts per class. A value above the class table (not void) fails the sample."""
    (s.plan.out / "masks" / f"{s.raw.id}.png").write_bytes(_encode(index, mask=True))
    num_classes = s.plan.num_classes
    counts = np.bincount(index.ravel(), minlength=256)
    s.result.counts = counts[:num_classes].astype(np.int64)
    s.result.labelled = int(counts[:num_classes].sum())
    if counts[num_classes:IGNORE_INDEX].sum():
        raise ValueError(f"mask values above the class table in {s.mask_files}")


def _sample_info(s: _Sample) -> SampleInfo:
    """The sample's record: its id, size, subset and the source files it came from."""
    raw, mask_files = s.raw, s.mask_files
    source_mask = mask_files[0] if len(mask_files) == 1 else (str(Path(mask_files[0]).parent) if mask_files else "")
    if raw.label_file is not None:
        source_mask = s.name(raw.label_file)
    return SampleInfo(
        id=raw.id,
        height=s.height,
        width=s.width,
        subset=raw.subset,
        source_image=s.name(raw.image) if raw.image else (s.name(raw.label_file) + "#imageData"),
        source_mask=source_mask,
        pixel_sha256=s.pixel_sha256,
    )


_encode = imageio.encode_png


def _union_binary_masks(files: list[Path], into: np.ndarray, s: _Sample) -> None:
    """OR the binary masks in ``files`` into ``into`` (H, W); a mask of another size skips the sample."""
    for f in files:
        dec = imageio.read_mask(f, s.plan.max_pixels)
        s.modes.add(dec.mode)
        s.check_size(dec.array.shape, f)
        s.note_void(dec, f)
        plane, noise = masks.binarize(dec.array)
        if noise:
            s.result.noisy.append((s.name(f), noise, 0))
        np.bitwise_or(into, plane, out=into)


def _size_problem(s: _Sample, *, got: tuple[int, ...], mask_file: Path | None = None) -> _Result:
    raw = s.raw
    f = mask_file or raw.mask or raw.label_file
    files = tuple(str(s.name(Path(p))) for p in (raw.image, f) if p is not None)
    msg = f"sample {raw.id}: mask {files[-1]} is {got[0]}x{got[1]} (HxW) but image {files[0]} is {s.height}x{s.width}; skipped"
    return _Result(None, problems=[Problem("size_mismatch", msg, files, "error")])


# --------------------------------------------------------------------------- the finish


def _finish(job: _Import, plan: _Plan, results: list[_Result]) -> DatasetInfo:
    """Dataset-wide decisions, problems and statistics over every sample read: the dataset's record."""
    good = _kept_samples(job, results)
    plan = _settle_channels(plan, good)
    mode = _settle_mode(job, plan, good)
    problems = job.report.problems
    problems.extend(_value_problems(good, plan))
    problems.extend(_encoding_problems(good, plan.spec))
    fractions = _class_fractions(plan, good, mode)
    problems.extend(_fraction_problems(plan, mode=mode, fractions=fractions))
    problems.extend(duplicate_problems([r.sample for r in good]))
    background = _class0(job, plan, mode)
    job.report.details["subsets"] = {str(k): v for k, v in Counter(r.sample.subset for r in good).items()}
    job.report.details["skipped"] = len(results) - len(good)
    return _dataset_info(job, plan, good, mode=mode, fractions=fractions, background=background)


def _kept_samples(job: _Import, results: list[_Result]) -> list[_Result]:
    """The samples read, their problems merged into the report's; fails the import when none was read."""
    problems = job.report.problems
    for r in results:
        problems.extend(r.problems)
    problems[:] = _merge_problems(problems)
    good = [r for r in results if r.sample is not None]
    if not good:
        first = problems[0].message if problems else "no samples"
        raise _ImportFailed(f"no sample of {job.root} could be imported; first problem: {first}")
    return good


def _settle_channels(plan: _Plan, good: list[_Result]) -> _Plan:
    """RGB if any image has colour; grey images are then stored as RGB too.

    The probe usually decided this up front; a colour image found later means
    rewriting the grey ones written before it.
    """
    if plan.channels != 1 or all(r.grey for r in good):
        return plan
    for r in good:
        if r.grey:
            p = plan.out / "images" / f"{r.sample.id}.png"
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            p.write_bytes(_encode(cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)))
    return dataclasses.replace(plan, channels=3)


def _settle_mode(job: _Import, plan: _Plan, good: list[_Result]) -> str:
    """binary, multiclass or multilabel; class planes become index masks unless the dataset is multilabel."""
    mode = "binary" if plan.num_classes == 2 else "multiclass"
    if plan.kind != "classes":
        return mode
    overlap = sum(r.overlap for r in good)
    want = job.options.multilabel
    if want is True or (want is None and overlap > 0):
        mode = "multilabel"
    else:
        _planes_to_index(plan.out, good, plan.num_classes)
        if overlap:
            job.report.problems.append(
                Problem(
                    "overlap_resolved",
                    f"{overlap} pixels belong to several classes; multilabel=False kept the last class in order {plan.classes.names[1:]}",
                    (),
                    "warning",
                )
            )
    job.report.details["overlap_pixels"] = overlap
    return mode


def _encoding_problems(good: list[_Result], spec: masks.MaskSpec | None) -> list[Problem]:
    """Masks stored in several image modes, and images converted on the way in."""
    out: list[Problem] = []
    mixed = Counter(r.mask_mode for r in good if r.mask_mode)
    if len(mixed) > 1:
        common = mixed.most_common(1)[0][0]
        odd = [r.sample.source_mask for r in good if r.mask_mode and r.mask_mode != common]
        through_palette = sum(1 for r in good if r.read_as == "palette colours")
        if through_palette:
            how = f"{through_palette} palette masks were decoded through their palettes to the colours they show"
        elif spec is not None and spec.encoding == "color":
            how = "all were read as colours"
        else:
            how = "all were read by value" + (" (palette masks as their indices)" if "P" in mixed else "")
        out.append(
            Problem(
                "mixed_mask_encoding",
                f"masks are stored in different image modes {dict(mixed)}; {len(odd)} differ from the usual {common!r} "
                f"(e.g. {odd[0]}); {how}",
                tuple(odd),
                "warning",
            )
        )
    notes = [n for r in good for n in r.notes]
    if notes:
        out.append(Problem("converted", f"{len(notes)} images converted: {notes[0]}", tuple(n.split(":")[0] for n in notes), "warning"))
    return out


def _class_fractions(plan: _Plan, good: list[_Result], mode: str) -> list[float]:
    """Each class's share of the labelled pixels (multilabel: of all pixels, class 0 being 'no class')."""
    counts = np.sum([r.counts for r in good], axis=0)
    if mode == "multilabel":
        labelled = sum(r.labelled for r in good)
        bg = sum(r.background for r in good)
        return [bg / labelled] + [float(c) / labelled for c in counts]
    if plan.kind == "classes":
        counts = _index_counts(plan.out, good, plan.num_classes)
    labelled = max(1, int(counts.sum()))
    return [float(c) / labelled for c in counts]


def _fraction_problems(plan: _Plan, *, mode: str, fractions: list[float]) -> list[Problem]:
    """A foreground that covers most pixels, classes with no pixels, and values the probe suggests are void."""
    out: list[Problem] = []
    names = plan.classes.names
    if mode == "binary" and fractions[1] > 0.5:
        out.append(
            Problem(
                "foreground_majority",
                f"the foreground class {names[1]!r} covers {fractions[1]:.0%} of all pixels; if the masks "
                f"mark the background in white, import again with {option_hint('invert')}",
                (),
                "warning",
            )
        )
    empty = [names[k] for k in range(1, plan.num_classes) if fractions[k] == 0]
    if empty:
        out.append(Problem("empty_class", f"classes {empty} have no pixels in any mask", (), "warning"))
    if plan.spec is not None and plan.spec.suggestions:
        out.append(Problem("void_suggested", "; ".join(plan.spec.suggestions), (), "warning"))
    return out


def _size_stats(good: list[_Result]) -> dict[str, Any]:
    heights = np.array([r.sample.height for r in good])
    widths = np.array([r.sample.width for r in good])
    sizes = Counter(f"{r.sample.height}x{r.sample.width}" for r in good)
    return {
        "min_height": int(heights.min()),
        "max_height": int(heights.max()),
        "min_width": int(widths.min()),
        "max_width": int(widths.max()),
        "median_height": float(np.median(heights)),
        "median_width": float(np.median(widths)),
        "distinct_sizes": len(sizes),
        "most_common_size": sizes.most_common(1)[0][0],
    }


def _dataset_info(job: _Import, plan: _Plan, good: list[_Result], *, mode: str, fractions: list[float], background: bool) -> DatasetInfo:
    """The dataset's record (``dataset.json``) of what was written under ``plan.out``."""
    classes = plan.classes
    return DatasetInfo(
        name=job.name,
        mode=mode,
        classes=tuple(ClassInfo(n, tuple(int(x) for x in c)) for n, c in zip(classes.names, classes.colors)),
        channels=plan.channels,
        samples=tuple(sorted((r.sample for r in good), key=lambda s: s.id)),
        ignore_index=IGNORE_INDEX,
        content_hash=content_hash(plan.out),
        image_size_stats=_size_stats(good),
        class_pixel_fraction=tuple(round(f, 6) for f in fractions),
        problems=tuple(job.report.problems),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        segcore_version=segcore.__version__,
        class0_is_background=background,
    )


def kind_of_names(options: ImportOptions, spec) -> str:
    """"given" when class names came from the options or the data, "made up" when the importer named the classes."""
    if options.classes or options.colors or spec is None:
        return "given"
    return "made up" if spec.encoding == "index" else "given"


def _class0(job: _Import, plan: _Plan, mode: str) -> bool:
    """Whether class 0 is the background (True) or a real class, as stated or as assumed; the report says which."""
    options, spec, details = job.options, plan.spec, job.report.details
    if options.class0 != "auto":
        details["class0"] = {"value": options.class0, "stated": True}
        return options.class0 == "background"
    value, why = _class0_guess(options, plan, mode)
    details["class0"] = {"value": "background" if value else "class", "stated": False, "why": why}
    # Asked about when it is a guess: label files whose class 0 was not named as the background.
    if mode == "multiclass" and spec is not None and not (value and why.startswith("it is named")):
        job.report.problems.append(_class0_assumed(plan.classes.names[0], value=value, why=why))
    return value


def _class0_guess(options: ImportOptions, plan: _Plan, mode: str) -> tuple[bool, str]:
    """(class 0 is the background, why so) when the options do not say."""
    name = plan.classes.names[0]
    if mode == "multilabel":
        return True, "in a multilabel dataset class 0 is 'no class set'"
    if mode == "binary":
        return True, "the masks are binary"
    if kind_of_names(options, plan.spec) == "made up":
        return True, "no class names were given"
    if name.lower() in _BACKGROUND_NAMES:
        return True, f"it is named {name!r}"
    return False, f"its name {name!r} is not a background name"


def _class0_assumed(name: str, *, value: bool, why: str) -> Problem:
    other = "class" if value else "background"
    effect = "left out of every mean (metrics, best checkpoint, health checks)" if value else "counted in every mean like any class"
    return Problem(
        "class0_assumed",
        f"class 0 ({name!r}) was taken as {'the background' if value else 'a real class'} ({why}), so it is {effect}; "
        f"if it is {'a real class' if value else 'the background'}, import again with {option_hint('class0', other)}",
        (),
        "warning",
    )


# Pixels not explained by the colour table, as a share of all mask pixels, above which the table is wrong.
TABLE_MISMATCH = 0.05


def _value_problems(good: list[_Result], plan: _Plan) -> list[Problem]:
    """Snapped noise, values or colours outside the table, and a colour table that does not fit."""
    spec = plan.spec
    colour = spec is not None and spec.encoding == "color"
    noisy = [fn for r in good for fn in r.noisy]
    outside = [(r.sample.source_mask, r.outside) for r in good if r.outside]
    out = [_noise_problem(noisy, colour=colour)] if noisy else []
    not_finite = [fn for r in good for fn in r.not_finite]
    if not_finite:
        total = sum(n for _, n in not_finite)
        worst = ", ".join(f"{f} ({n:,} px)" for f, n in sorted(not_finite, key=lambda x: -x[1])[:3])
        out.append(
            Problem(
                "not_finite",
                f"{len(not_finite)} float masks hold NaN or infinite values ({total:,} px), which are no label: those "
                f"pixels were set to void (255, not scored). Worst: {worst}",
                tuple(f for f, _ in not_finite),
                "error",
            )
        )
    if outside:
        out.append(_outside_problem(outside, colour=colour, class_names=plan.classes.names))
    if colour and spec.color_table:
        out.extend(_table_mismatch(good, plan, noisy=noisy, outside=outside))
    return out


def _noise_problem(noisy: list, *, colour: bool) -> Problem:
    total = sum(n for _, n, _ in noisy)
    worst = ", ".join(f"{f} ({n} px)" for f, n, _ in sorted(noisy, key=lambda x: -x[1])[:3])
    what = (
        f"colours not in the table that are within {masks.JPEG_SHIFT} of a table colour or lie only on edges "
        "between regions (JPEG ringing or anti-aliasing)"
        if colour
        else "values between the class values (e.g. JPEG or anti-aliasing noise)"
    )
    return Problem(
        "mask_noise", f"{len(noisy)} masks have {total} pixels with {what}; snapped to the nearest class. Worst: {worst}",
        tuple(f for f, _, _ in noisy), "warning",
    )  # fmt: skip


def _outside_counts(outside: list) -> Counter:
    """Pixels per value (or colour) outside the table, over all masks."""
    per_value: Counter = Counter()
    for _, o in outside:
        per_value.update(o)
    return per_value


def _outside_problem(outside: list, *, colour: bool, class_names: list[str]) -> Problem:
    per_value = _outside_counts(outside)
    shown = ", ".join(f"{_value_text(v)}: {n:,} px" for v, n in per_value.most_common(8))
    if colour:
        msg = (
            f"{len(outside)} masks have colours that are not in the colour table and fill solid regions "
            f"(so they are real colours, not JPEG noise): {shown}; those pixels were set to void (255, not scored). "
            "If they are classes, add them to the colour table; if they are void, list them in ignore_colors"
        )
    else:
        msg = (
            f"{len(outside)} masks have values {sorted(per_value, key=str)[:10]} outside the class table {class_names} "
            f"({shown}); those pixels were set to void (255, not scored)"
        )
    return Problem("values_outside_table", msg, tuple(f for f, _ in outside), "error")


def _table_mismatch(good: list[_Result], plan: _Plan, *, noisy: list, outside: list) -> list[Problem]:
    """A colour table that leaves more than ``TABLE_MISMATCH`` of the mask pixels unexplained (none or one problem)."""
    pixels = sum(r.sample.height * r.sample.width for r in good)
    unexplained = sum(n for _, o in outside for n in o.values()) + sum(far for _, _, far in noisy)
    if not pixels or unexplained <= TABLE_MISMATCH * pixels:
        return []
    names = plan.classes.names
    seen = np.zeros(len(names), np.int64)
    for r in good:
        if r.counts is not None:
            seen[: len(r.counts)] += r.counts
    never = [names[k] for k in range(len(names)) if seen[k] == 0]
    common = ", ".join(_value_text(v) for v, _ in _outside_counts(outside).most_common(5)) or "none in solid regions"
    return [
        Problem(
            "color_table_mismatch",
            f"{unexplained / pixels:.1%} of all mask pixels ({unexplained:,}) are not colours of the colour table: "
            f"the table does not fit these masks. Most common colours missing from it: {common}"
            + (f"; table colours never seen: {never}" if never else "")
            + ". Check the table against the masks' colours",
            (),
            "error",
        )
    ]

def duplicate_problems(samples: list[SampleInfo]) -> list[Problem]:
    """One ``duplicate_images`` problem for images with the same pixels (none or one problem).

    Copies are named by folder where a whole folder is a copy of another
    (``copy/test/images`` holds the images of ``test/images``), else by file.
    Both copies stay in the dataset: which one is wrong is for the user to say.
    """
    by_hash: dict[str, list[SampleInfo]] = defaultdict(list)
    for s in samples:
        if s.pixel_sha256:
            by_hash[s.pixel_sha256].append(s)
    groups = [sorted(g, key=lambda s: s.source_image) for g in by_hash.values() if len(g) > 1]
    if not groups:
        return []
    groups.sort(key=lambda g: g[0].source_image)
    per_folder = Counter(str(Path(s.source_image).parent) for s in samples)
    pairs: Counter = Counter()
    for g in groups:
        folders = sorted({str(Path(s.source_image).parent) for s in g})
        for a in folders:
            for b in folders:
                if a < b:
                    pairs[(a, b)] += 1
    whole = [(a, b, n) for (a, b), n in sorted(pairs.items()) if n == per_folder[a] or n == per_folder[b]]
    said = [f"{b}/ and {a}/ hold the same {n} images" for a, b, n in whole]
    in_whole = {f for a, b, _ in whole for f in (a, b)}
    loose = [g for g in groups if not {str(Path(s.source_image).parent) for s in g} <= in_whole]
    said += [" = ".join(s.source_image for s in g) for g in loose[:5]]
    more = f" and {len(loose) - 5} more groups" if len(loose) > 5 else ""
    copies = sum(len(g) - 1 for g in groups)
    return [
        Problem(
            "duplicate_images",
            f"{copies} images are copies of others (identical pixels), each imported as its own sample: {'; '.join(said)}{more}. "
            "A copy in both the training and the test data makes the test score meaningless; remove one copy from the source "
            "and import again",
            tuple(s.source_image for g in groups for s in g),
            "warning",
        )
    ]


def _value_text(v) -> str:
    return f"({v[0]}, {v[1]}, {v[2]})" if isinstance(v, tuple) else str(v)


def _planes_to_index(out: Path, good, num_classes: int) -> None:
    for r in good:
        index = None
        for k in range(1, num_classes):
            p = out / "masks" / str(k) / f"{r.sample.id}.png"
            plane = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if index is None:
                index = np.zeros(plane.shape, np.uint8)
            index[(plane > 0) & (plane != IGNORE_INDEX)] = k
            index[plane == IGNORE_INDEX] = IGNORE_INDEX  # outside the field of view
        (out / "masks" / f"{r.sample.id}.png").write_bytes(_encode(index, mask=True))
    for k in range(1, num_classes):
        shutil.rmtree(out / "masks" / str(k), ignore_errors=True)


def _index_counts(out: Path, good, num_classes: int) -> np.ndarray:
    counts = np.zeros(num_classes, np.int64)
    for r in good:
        m = cv2.imread(str(out / "masks" / f"{r.sample.id}.png"), cv2.IMREAD_GRAYSCALE)
        counts += np.bincount(m.ravel(), minlength=256)[:num_classes]
    return counts


def _merge_problems(problems: list[Problem]) -> list[Problem]:
    """One problem per (kind, severity) for per-sample problems that repeat, files joined."""
    per_kind: dict[tuple[str, str], list[Problem]] = defaultdict(list)
    for p in problems:
        per_kind[(p.kind, p.severity)].append(p)
    merged = []
    for (kind, severity), group in per_kind.items():
        if len(group) <= 3 or kind not in ("unreadable", "size_mismatch", "polygon_outside_image"):
            merged.extend(group)
            continue
        files = tuple(f for p in group for f in p.files)
        msg = f"{len(group)} samples skipped ({kind}); first: {group[0].message}"
        merged.append(Problem(kind, msg, files, severity))
    return merged


def content_hash(out: Path) -> str:
    """sha256 over the relative paths and bytes of every PNG under images/ and masks/."""
    digest = hashlib.sha256()
    for sub in ("images", "masks"):
        for p in sorted((out / sub).rglob("*.png")):
            digest.update(str(p.relative_to(out)).encode())
            digest.update(hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()

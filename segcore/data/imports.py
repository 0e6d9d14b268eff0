"""Importing a dataset from any supported layout into the canonical layout.

``import_dataset(source, name)`` finds the samples (see
:mod:`segcore.data.layouts`), decides how masks encode classes (see
:mod:`segcore.data.masks`), reads and checks every file in parallel, writes
``images/`` and ``masks/`` into a scratch folder under the workspace, writes
``dataset.json``, and renames the folder into ``datasets/<name>`` in one step.
A failed import leaves nothing behind. Problems found in the data are listed
in the report and in ``dataset.json``; a bad file is skipped with a problem,
and only ``strict=True`` turns such problems into a failed import.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
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
from segcore.data import imageio, layouts, masks, paths, polygons
from segcore.data.archive import content_root, extract_zip
from segcore.data.dataset import IGNORE_INDEX, ClassInfo, DatasetInfo, Problem, SampleInfo
from segcore.data.options import ImportOptions, as_options, parse_colors
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
    if path.is_file() and path.suffix.lower() == ".zip":
        ws = workspace or get_workspace()
        limits = ws.settings()
        folder = extract_zip(path, ws.tmp_dir, max_bytes=limits.max_archive_bytes, max_files=limits.max_archive_files)
        try:
            inner, details = layouts.detect(content_root(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return "zip", {"inner_layout": inner, **details}
    return layouts.detect(path.resolve())


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

    Returns:
        An :class:`ImportReport`; ``ok`` is False with ``error`` set when
        nothing was imported. Never raises for problems in the data.

    Raises:
        ValueError: for a bad name, unknown layout, bad options or bad server settings.
        FileExistsError: if ``name`` exists and ``on_exists="error"``.
        FileNotFoundError: if the source does not exist.
    """
    started = time.perf_counter()
    ws = workspace or get_workspace()
    ws.ensure()
    options = as_options(options)
    limits = ws.settings()
    check_name(name, "dataset name")
    if layout not in LAYOUTS and layout != "auto":
        raise ValueError(f"layout {layout!r} is not known; layouts are {sorted(LAYOUTS)} or 'auto'")
    name = _free_name(ws, name, on_exists)
    source = Path(source).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    source = source.resolve()
    progress = progress or (lambda done, total, message: None)
    scratch = make_temp_dir(ws.tmp_dir, f"import-{name}-")
    report = ImportReport(name=name, ok=False)
    try:
        root = source
        if source.is_file() and source.suffix.lower() == ".zip":
            progress(0, 0, f"extracting {source.name}")
            extracted = extract_zip(source, scratch, max_bytes=limits.max_archive_bytes, max_files=limits.max_archive_files)
            root = content_root(extracted)
            report.details["archive"] = source.name
        if layout in ("auto", "zip"):
            layout, why = layouts.detect(root)
            report.details["detected"] = why
        report.layout = layout
        options = _read_tables(options, root.parent if root.is_file() else root)
        discovery = layouts.discover(layout, root, options)
        report.problems.extend(discovery.problems)
        for key in ("annotators", "folder_roles"):
            if discovery.details.get(key):
                report.details[key] = discovery.details[key]
        if root.is_file():  # a COCO file: its folder is the source root
            root = root.parent
        out = scratch / "dataset"
        info = _build(discovery, root, out, name, options, limits, report, progress)
        info = DatasetInfo(
            **{
                **info.__dict__,
                "source": {"path": str(source), "layout": layout, "options": options.changed(), **report.details},
            }
        )
        report.dataset = info
        if strict:
            errors = [p for p in report.problems if p.severity == "error"]
            if errors:
                raise _ImportFailed(f"strict mode: {len(errors)} problems; first: {errors[0].message}")
        write_json_atomic(out / "dataset.json", info.to_dict())
        target = ws.dataset_dir(name)
        if target.exists():
            raise FileExistsError(f"dataset {name!r} appeared in {ws.datasets_dir} during the import; not overwritten")
        os.rename(out, target)
        report.ok = True
        progress(len(info.samples), len(info.samples), f"imported {len(info.samples)} samples as {name!r}")
    except _ImportFailed as exc:
        report.ok, report.error, report.dataset = False, str(exc), None
    except (ValueError, OSError) as exc:
        if isinstance(exc, FileExistsError) and not report.layout:
            raise
        report.ok, report.error, report.dataset = False, str(exc), None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        report.seconds = time.perf_counter() - started
    return report


class _ImportFailed(Exception):
    pass


def _free_name(ws: Workspace, name: str, on_exists: str) -> str:
    if on_exists not in ("error", "version"):
        raise ValueError(f"on_exists {on_exists!r} is not 'error' or 'version'")
    if not ws.dataset_dir(name).exists():
        return name
    if on_exists == "error":
        raise FileExistsError(
            f"a dataset named {name!r} already exists in {ws.datasets_dir}; choose another name "
            "or ask for a new version (--version makes name-2)"
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


def _polygon_classes(discovery: layouts.Discovery, root: Path, options: ImportOptions, report: ImportReport) -> tuple[list[str], set[str]]:
    """(class names with background first, labels treated as void)."""
    ignore_labels = set(options.ignore_labels)
    names = list(options.classes)
    if not names:
        for candidate in ("labels.txt", "class_names.txt", "classes.txt"):
            try:
                path = paths.resolve_in_source(root, candidate, field="class list")
            except paths.OutsideSourceError as exc:
                report.problems.append(Problem("outside_source", str(exc), (candidate,), "warning"))
                continue
            if path.is_file() and path.stat().st_size <= _MAX_TABLE_BYTES:
                names = read_class_list(path.read_text(encoding="utf-8", errors="replace"), options.ignore_labels)
                break
    if not names:
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


# --------------------------------------------------------------------------- the import


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
    notes: list[str] = field(default_factory=list)


def _build(discovery, root: Path, out: Path, name: str, options: ImportOptions, limits: ServerSettings, report: ImportReport, progress) -> DatasetInfo:
    samples = discovery.samples
    if not samples:
        raise _ImportFailed(f"no samples found in {root} with layout {discovery.layout!r}")
    max_pixels = limits.max_image_pixels
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    kind = _label_kind(samples[0])
    spec = None
    value_of: dict[str, int] = {}
    if kind == "file":
        spec = _probe_spec(samples, options, max_pixels, report)
        class_names, class_colors = spec.class_names, spec.class_colors
        report.details["mask_encoding"] = spec.to_dict()
    elif kind == "union":
        fg = options.classes or ["background", options.foreground]
        class_names = [str(c) for c in fg]
        if len(class_names) != 2:
            raise ValueError(f"a folder-per-sample dataset has 2 classes (background, foreground); got {class_names}")
        class_colors = [masks.default_color(i) for i in range(2)]
    elif kind == "classes":
        class_names = ["background"] + list(discovery.labels or [])
        class_colors = [masks.default_color(i) for i in range(len(class_names))]
        value_of = {n: i for i, n in enumerate(class_names) if i > 0}
        for k in range(1, len(class_names)):
            (out / "masks" / str(k)).mkdir()
    else:  # polygons
        class_names, ignore_labels = _polygon_classes(discovery, root, options, report)
        value_of = {n: i for i, n in enumerate(class_names)}
        value_of.update({lab: IGNORE_INDEX for lab in ignore_labels})
        class_colors = [masks.default_color(i) for i in range(len(class_names))]
        unknown = sorted({s.label for smp in samples for s in smp.shapes or []} - set(value_of))
        if unknown:
            report.problems.append(
                Problem(
                    "unknown_label",
                    f"polygon labels {unknown} are not in the class table {class_names}; those polygons were skipped",
                    tuple(sorted({str(smp.label_file) for smp in samples for s in smp.shapes or [] if s.label in unknown})),
                    "warning",
                )
            )
    num_classes = len(class_names)
    channels = _probe_channels(samples, max_pixels)
    workers = limits.import_workers or min(8, (os.cpu_count() or 2) * 2)

    def work(raw: layouts.RawSample) -> _Result:
        try:
            return _process(raw, root, out, kind, spec, value_of, num_classes, max_pixels, channels)
        except (imageio.ImageReadError, ValueError, OSError) as exc:
            files = [str(raw.image)] if raw.image else []
            return _Result(None, problems=[Problem("unreadable", f"sample {raw.id}: {exc}", tuple(files), "error")])

    results: list[_Result] = []
    total = len(samples)
    progress(0, total, f"reading {total} samples ({discovery.layout})")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, res in enumerate(pool.map(work, samples), 1):
            results.append(res)
            if i % 16 == 0 or i == total:
                progress(i, total, f"read {i}/{total} samples")
    return _finish(results, discovery, root, out, name, class_names, class_colors, kind, options, report, channels, spec)


def _label_kind(raw: layouts.RawSample) -> str:
    if raw.mask is not None:
        return "file"
    if raw.union is not None:
        return "union"
    if raw.class_masks is not None:
        return "classes"
    return "polygons"


def _probe_spec(samples, options, max_pixels, report) -> masks.MaskSpec:
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
    return spec


def _probe_channels(samples, max_pixels) -> int:
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


def _process(raw, root, out, kind, spec, value_of, num_classes, max_pixels, channels) -> _Result:
    image, notes, plain_mode = _read_sample_image_full(raw, max_pixels)
    if raw.image is not None:
        notes = [n.replace(str(raw.image), layouts._rel(raw.image, root)) for n in notes]
    h, w = image.shape[:2]
    res = _Result(None, grey=image.ndim == 2, notes=notes)
    outside_fov = None
    mask_files = [layouts._rel(p, root) for p in raw.mask_files]
    planes = None
    if kind == "file":
        dec = imageio.read_mask(raw.mask, max_pixels)
        res.mask_mode = dec.mode
        if dec.array.shape[:2] != (h, w):
            return _size_problem(raw, root, dec.array.shape[:2], (h, w))
        arr = dec.array
        if spec.encoding == "color" and arr.ndim == 2 and dec.palette is not None:
            arr = masks.palette_to_rgb(arr, dec.palette)  # the colours the palette PNG shows
            res.read_as = "palette colours"
        mr = masks.apply_spec(arr, spec)
        index, res.outside = mr.index, mr.outside
        if mr.snapped:
            res.noisy.append((mask_files[0], mr.snapped, mr.snapped_far))
    elif kind == "union":
        index = np.zeros((h, w), np.uint8)
        modes: set[str] = set()
        problem = _union_binary_masks(raw.union, index, raw, root, res, modes, max_pixels)
        if problem is not None:
            return problem
        res.mask_mode = "/".join(sorted(modes))
    elif kind == "classes":
        planes = np.zeros((h, w, num_classes - 1), np.uint8)
        modes = set()
        for cname, files in raw.class_masks.items():
            plane_out = planes[:, :, value_of[cname] - 1]  # a view: written in place
            problem = _union_binary_masks(files, plane_out, raw, root, res, modes, max_pixels)
            if problem is not None:
                return problem
        res.mask_mode = "/".join(sorted(modes))
        index = None
        if raw.fov is not None:
            dec = imageio.read_mask(raw.fov, max_pixels)
            if dec.array.shape[:2] != (h, w):
                return _size_problem(raw, root, dec.array.shape[:2], (h, w), raw.fov)
            fov, _ = masks.binarize(dec.array)
            outside_fov = fov == 0
    else:
        if raw.size and tuple(raw.size) != (h, w):
            return _size_problem(raw, root, tuple(raw.size), (h, w), raw.label_file)
        index = polygons.fill(raw.shapes or [], h, w, value_of)
        for label, counts in raw.rle or []:
            if label in value_of:
                index[polygons.rle_decode(counts, h, w) > 0] = value_of[label]
    # Write.
    if (plain_mode, channels) in (("L", 1), ("RGB", 3)):
        # Already a canonical PNG: keep its bytes (re-encoding is the slowest step of an import).
        shutil.copyfile(raw.image, out / "images" / f"{raw.id}.png")
    else:
        if channels == 3 and image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        (out / "images" / f"{raw.id}.png").write_bytes(_encode(image))
    if planes is not None:
        if outside_fov is not None:
            planes[outside_fov] = 0
        for k in range(planes.shape[2]):
            plane = planes[:, :, k] if outside_fov is None else np.where(outside_fov, np.uint8(IGNORE_INDEX), planes[:, :, k])
            (out / "masks" / str(k + 1) / f"{raw.id}.png").write_bytes(_encode(plane, mask=True))
        res.counts = planes.reshape(-1, planes.shape[2]).sum(axis=0, dtype=np.int64)
        depth = planes.sum(axis=2, dtype=np.uint8)
        void = 0 if outside_fov is None else int(np.count_nonzero(outside_fov))
        res.background = int(np.count_nonzero(depth == 0)) - void
        res.overlap = int(np.count_nonzero(depth > 1))
        res.labelled = h * w - void
    else:
        (out / "masks" / f"{raw.id}.png").write_bytes(_encode(index, mask=True))
        counts = np.bincount(index.ravel(), minlength=256)
        res.counts = counts[:num_classes].astype(np.int64)
        res.labelled = int(counts[:num_classes].sum())
        stray = counts[num_classes:IGNORE_INDEX].sum()
        if stray:
            raise ValueError(f"mask values above the class table in {mask_files}")
    source_mask = mask_files[0] if len(mask_files) == 1 else (str(Path(mask_files[0]).parent) if mask_files else "")
    if raw.label_file is not None:
        source_mask = layouts._rel(raw.label_file, root)
    res.sample = SampleInfo(
        id=raw.id,
        height=h,
        width=w,
        subset=raw.subset,
        source_image=layouts._rel(raw.image, root) if raw.image else (layouts._rel(raw.label_file, root) + "#imageData"),
        source_mask=source_mask,
    )
    return res


_encode = imageio.encode_png


def _union_binary_masks(files, out: np.ndarray, raw, root, res: _Result, modes: set, max_pixels: int) -> _Result | None:
    """OR the binary masks in ``files`` into ``out`` (H, W); a size-mismatch problem, or None when all fit."""
    h, w = out.shape
    for f in files:
        dec = imageio.read_mask(f, max_pixels)
        modes.add(dec.mode)
        if dec.array.shape[:2] != (h, w):
            return _size_problem(raw, root, dec.array.shape[:2], (h, w), f)
        plane, noise = masks.binarize(dec.array)
        if noise:
            res.noisy.append((layouts._rel(f, root), noise, 0))
        np.bitwise_or(out, plane, out=out)
    return None


def _size_problem(raw, root, got, want, mask_file=None) -> _Result:
    f = mask_file or raw.mask or raw.label_file
    files = tuple(str(layouts._rel(Path(p), root)) for p in (raw.image, f) if p is not None)
    msg = f"sample {raw.id}: mask {files[-1]} is {got[0]}x{got[1]} (HxW) but image {files[0]} is {want[0]}x{want[1]}; skipped"
    return _Result(None, problems=[Problem("size_mismatch", msg, files, "error")])


def _finish(results, discovery, root, out, name, class_names, class_colors, kind, options, report, channels, spec=None) -> DatasetInfo:
    problems = report.problems
    good = [r for r in results if r.sample is not None]
    for r in results:
        problems.extend(r.problems)
    problems[:] = _merge_problems(problems)
    if not good:
        first = problems[0].message if problems else "no samples"
        raise _ImportFailed(f"no sample of {root} could be imported; first problem: {first}")
    num_classes = len(class_names)
    # Channels: RGB if any image has colour; grey images are then stored as RGB too.
    # The probe usually decided this up front; a colour image found later means
    # rewriting the grey ones written before it.
    if channels == 1 and not all(r.grey for r in good):
        channels = 3
        for r in good:
            if r.grey:
                p = out / "images" / f"{r.sample.id}.png"
                img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                (p).write_bytes(_encode(cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)))
    mode = "binary" if num_classes == 2 else "multiclass"
    if kind == "classes":
        overlap = sum(r.overlap for r in good)
        want = options.multilabel
        if want is True or (want is None and overlap > 0):
            mode = "multilabel"
        else:
            _planes_to_index(out, good, num_classes)
            if overlap:
                problems.append(
                    Problem(
                        "overlap_resolved",
                        f"{overlap} pixels belong to several classes; multilabel=False kept the last class in order {class_names[1:]}",
                        (),
                        "warning",
                    )
                )
        report.details["overlap_pixels"] = overlap
    # Noise, values outside the table, conversions, mixed encodings.
    problems.extend(_value_problems(good, class_names, spec))
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
        problems.append(
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
        problems.append(Problem("converted", f"{len(notes)} images converted: {notes[0]}", tuple(n.split(":")[0] for n in notes), "warning"))
    # Class pixel fractions.
    counts = np.sum([r.counts for r in good], axis=0)
    if mode == "multilabel":
        labelled = sum(r.labelled for r in good)
        bg = sum(r.background for r in good)
        fractions = [bg / labelled] + [float(c) / labelled for c in counts]
    else:
        if kind == "classes":
            counts = _index_counts(out, good, num_classes)
        labelled = max(1, int(counts.sum()))
        fractions = [float(c) / labelled for c in counts]
    if mode == "binary" and fractions[1] > 0.5:
        problems.append(
            Problem(
                "foreground_majority",
                f"the foreground class {class_names[1]!r} covers {fractions[1]:.0%} of all pixels; if the masks "
                "mark the background in white, import again with option invert=true",
                (),
                "warning",
            )
        )
    empty = [class_names[k] for k in range(1, num_classes) if fractions[k] == 0]
    if empty:
        problems.append(Problem("empty_class", f"classes {empty} have no pixels in any mask", (), "warning"))
    if spec is not None and spec.suggestions:
        problems.append(Problem("void_suggested", "; ".join(spec.suggestions), (), "warning"))
    background = _class0(options, mode, class_names, spec, report)
    heights = np.array([r.sample.height for r in good])
    widths = np.array([r.sample.width for r in good])
    sizes = Counter(f"{r.sample.height}x{r.sample.width}" for r in good)
    stats = {
        "min_height": int(heights.min()),
        "max_height": int(heights.max()),
        "min_width": int(widths.min()),
        "max_width": int(widths.max()),
        "median_height": float(np.median(heights)),
        "median_width": float(np.median(widths)),
        "distinct_sizes": len(sizes),
        "most_common_size": sizes.most_common(1)[0][0],
    }
    subsets = Counter(r.sample.subset for r in good)
    report.details["subsets"] = {str(k): v for k, v in subsets.items()}
    report.details["skipped"] = len(results) - len(good)
    samples = tuple(sorted((r.sample for r in good), key=lambda s: s.id))
    return DatasetInfo(
        name=name,
        mode=mode,
        classes=tuple(ClassInfo(n, tuple(int(x) for x in c)) for n, c in zip(class_names, class_colors)),
        channels=channels,
        samples=samples,
        ignore_index=IGNORE_INDEX,
        content_hash=content_hash(out),
        image_size_stats=stats,
        class_pixel_fraction=tuple(round(f, 6) for f in fractions),
        problems=tuple(problems),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        segcore_version=segcore.__version__,
        class0_is_background=background,
    )


def kind_of_names(options: ImportOptions, spec) -> str:
    """"given" when class names came from the options or the data, "made up" when the importer named the classes."""
    if options.classes or options.colors or spec is None:
        return "given"
    return "made up" if spec.encoding == "index" else "given"


def _class0(options: ImportOptions, mode: str, class_names: list[str], spec, report: ImportReport) -> bool:
    """Whether class 0 is the background (True) or a real class, as stated or as assumed; the report says which."""
    name = class_names[0]
    if options.class0 != "auto":
        report.details["class0"] = {"value": options.class0, "stated": True}
        return options.class0 == "background"
    if mode == "multilabel":
        value, why = True, "in a multilabel dataset class 0 is 'no class set'"
    elif mode == "binary":
        value, why = True, "the masks are binary"
    elif kind_of_names(options, spec) == "made up":
        value, why = True, "no class names were given"
    elif name.lower() in _BACKGROUND_NAMES:
        value, why = True, f"it is named {name!r}"
    else:
        value, why = False, f"its name {name!r} is not a background name"
    report.details["class0"] = {"value": "background" if value else "class", "stated": False, "why": why}
    # Asked about when it is a guess: label files whose class 0 was not named as the background.
    if mode == "multiclass" and spec is not None and not (value and why.startswith("it is named")):
        other = "class" if value else "background"
        effect = "left out of every mean (metrics, best checkpoint, health checks)" if value else "counted in every mean like any class"
        report.problems.append(
            Problem(
                "class0_assumed",
                f"class 0 ({name!r}) was taken as {'the background' if value else 'a real class'} ({why}), so it is {effect}; "
                f"if it is {'a real class' if value else 'the background'}, import again with --class0 {other} (option \"class0\": \"{other}\")",
                (),
                "warning",
            )
        )
    return value


# Pixels not explained by the colour table, as a share of all mask pixels, above which the table is wrong.
TABLE_MISMATCH = 0.05


def _value_problems(good, class_names, spec) -> list[Problem]:
    """Snapped noise, values or colours outside the table, and a colour table that does not fit."""
    out: list[Problem] = []
    colour = spec is not None and spec.encoding == "color"
    noisy = [fn for r in good for fn in r.noisy]
    if noisy:
        total = sum(n for _, n, _ in noisy)
        worst = ", ".join(f"{f} ({n} px)" for f, n, _ in sorted(noisy, key=lambda x: -x[1])[:3])
        what = (
            f"colours not in the table that are within {masks.JPEG_SHIFT} of a table colour or lie only on edges "
            "between regions (JPEG ringing or anti-aliasing)"
            if colour
            else "values between the class values (e.g. JPEG or anti-aliasing noise)"
        )
        out.append(
            Problem("mask_noise", f"{len(noisy)} masks have {total} pixels with {what}; snapped to the nearest class. Worst: {worst}",
                    tuple(f for f, _, _ in noisy), "warning")
        )
    outside = [(r.sample.source_mask, r.outside) for r in good if r.outside]
    if outside:
        per_value: Counter = Counter()
        for _, o in outside:
            per_value.update(o)
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
        out.append(Problem("values_outside_table", msg, tuple(f for f, _ in outside), "error"))
    if colour and spec.color_table:
        pixels = sum(r.sample.height * r.sample.width for r in good)
        unexplained = sum(n for _, o in outside for n in o.values()) + sum(far for _, _, far in noisy)
        if pixels and unexplained > TABLE_MISMATCH * pixels:
            seen = np.zeros(len(class_names), np.int64)
            for r in good:
                if r.counts is not None:
                    seen[: len(r.counts)] += r.counts
            never = [class_names[k] for k in range(len(class_names)) if seen[k] == 0]
            per_value = Counter()
            for _, o in outside:
                per_value.update(o)
            common = ", ".join(_value_text(v) for v, _ in per_value.most_common(5)) or "none in solid regions"
            out.append(
                Problem(
                    "color_table_mismatch",
                    f"{unexplained / pixels:.1%} of all mask pixels ({unexplained:,}) are not colours of the colour table: "
                    f"the table does not fit these masks. Most common colours missing from it: {common}"
                    + (f"; table colours never seen: {never}" if never else "")
                    + ". Check the table against the masks' colours",
                    (),
                    "error",
                )
            )
    return out


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
        if len(group) <= 3 or kind not in ("unreadable", "size_mismatch"):
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

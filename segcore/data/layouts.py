"""Finding the samples of a dataset in each source layout.

A layout function walks a folder and returns a :class:`Discovery`: the raw
samples (image file + where its labels are), the layout's details, and the
problems seen while pairing files (unpaired images or masks, files ignored).
Reading pixels is left to :mod:`segcore.data.imports`.

Layouts, by name (see ``LAYOUTS``): ``paired``, ``per_sample``,
``class_folders``, ``polygons``, ``labelme``, ``coco``. Mask encodings (binary,
index / palette, trimap, RGB colour) are separate from the layout and are
detected from the mask values (option ``mask_encoding``).

Every folder is listed through :func:`segcore.data.paths.entries` inside a
:func:`segcore.data.paths.listing` scope, so symbolic links that lead out of
the imported folder are skipped (and reported by name, as ``outside_link``);
paths written inside the data go through
:func:`segcore.data.paths.resolve_in_source`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from segcore.data import paths
from segcore.data import polygons as poly
from segcore.data.dataset import Problem
from segcore.data.imageio import IMAGE_EXTENSIONS, LOSSY_EXTENSIONS, is_image_file
from segcore.data.options import ImportOptions

LAYOUTS = {
    "paired": "images/ + masks/ folders matched by file stem (suffixes such as _mask, _label, _manual1 tolerated); "
    "also image/ + label/, JPEGImages/ + SegmentationClass/, train/ + trainannot/",
    "per_sample": "one folder per sample: <id>/images/<id>.png + <id>/masks/*.png, the masks unioned",
    "class_folders": "one folder of binary masks per class beside the images (masks/<class>/<stem>.png); "
    "option merge maps classes together; overlapping classes give a multilabel dataset",
    "index": "paired folders whose masks hold class ids (palette PNGs, 0/255 binary, 1/2/3 trimaps); "
    "options classes, ignore",
    "color": "paired folders whose masks are RGB colour-coded; option colors gives the colour-to-class table",
    "polygons": "images/ + a folder of .txt point lists (one polygon per line, [[x, y], ...] lists, or YOLO)",
    "labelme": "LabelMe .json files beside their images",
    "coco": "a COCO .json file with polygon (or uncompressed RLE) annotations",
}

MASK_WORDS = ("mask", "label", "annot", "seg", "gt", "truth", "manual", "lesion", "trimap", "target", "anno", "class")
IMAGE_WORDS = ("image", "img", "jpeg", "slice", "input", "raw", "photo", "frame", "rgb", "scan", "picture")
STEM_SUFFIXES = (
    "_mask", "-mask", "_masks", "_label", "-label", "_labels", "_manual1", "_manual2", "_manual", "_seg",
    "_segmentation", "_gt", "_annot", "_anno", "_annotation", "_l", "_lesion", "_trimap", "_target", "_class",
    "_training", "_train", "_test", "_image", "_img", "_dermoscopic_image", "_roi",
)  # fmt: skip
_SUBSET_RE = re.compile(r"(?:^|[_\-. ])(train|training|val|valid|validation|test|testing)(?:$|[_\-. ])", re.I)
_SUBSET_NAMES = {"training": "train", "train": "train", "val": "val", "valid": "val", "validation": "val"}
_SUBSET_NAMES.update({"test": "test", "testing": "test"})
_MAX_DEPTH = 8


@dataclass
class RawSample:
    """One sample as found in the source: its image and where its labels are."""

    id: str
    image: Path | None
    subset: str | None = None
    mask: Path | None = None  # a single mask file
    union: list[Path] | None = None  # several binary masks, unioned
    class_masks: dict[str, list[Path]] | None = None  # class name -> binary mask files (unioned)
    shapes: list[poly.Shape] | None = None  # polygons to fill
    rle: list | None = None  # COCO uncompressed RLE: (label, counts)
    image_bytes: bytes | None = None  # embedded image (LabelMe imageData)
    size: tuple[int, int] | None = None  # (height, width) stated by an annotation file
    label_file: Path | None = None

    @property
    def mask_files(self) -> list[Path]:
        if self.mask is not None:
            return [self.mask]
        if self.union:
            return list(self.union)
        if self.class_masks:
            return [p for files in self.class_masks.values() for p in files]
        return [self.label_file] if self.label_file else []


@dataclass
class Discovery:
    layout: str
    samples: list[RawSample]
    problems: list[Problem] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    labels: list[str] | None = None  # class names found in the source (folders, polygon labels)


# --------------------------------------------------------------------------- helpers


def stem_key(name: str) -> str:
    """The matching key of a file name: lower-case stem without known suffixes."""
    stem = Path(name).stem.lower()
    changed = True
    while changed:
        changed = False
        for suffix in STEM_SUFFIXES:
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                changed = True
    return stem


def subset_of(path: Path, root: Path) -> str | None:
    """train / val / test from the nearest folder name that says so, else None."""
    try:
        parts = path.relative_to(root).parts[:-1]
    except ValueError:
        parts = path.parts[:-1]
    for part in reversed(parts):
        m = _SUBSET_RE.search(part)
        if m:
            return _SUBSET_NAMES[m.group(1).lower()]
    return None


def _has_word(name: str, words) -> bool:
    low = name.lower()
    return any(w in low for w in words)


def image_files(folder: Path) -> list[Path]:
    return [p for p in paths.entries(folder) if is_image_file(p) and p.is_file()]


def _files(folder: Path, suffix: str) -> list[Path]:
    """Files of ``folder`` whose name ends with ``suffix`` (lower case), not hidden."""
    return [p for p in paths.entries(folder) if p.name.lower().endswith(suffix) and not p.name.startswith(".") and p.is_file()]


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in paths.entries(folder) if not p.name.startswith((".", "__")) and p.is_dir()]


def _walk_dirs(root: Path):
    """Every folder under root (root included), depth-limited, links not followed."""
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        yield folder
        if depth < _MAX_DEPTH:
            for sub in reversed(_subdirs(folder)):
                if not sub.is_symlink():
                    stack.append((sub, depth + 1))


def _dedupe_lossless(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Keep one file per stem, preferring lossless formats; return (kept, dropped copies)."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        by_stem[f.stem.lower()].append(f)
    kept, dropped = [], []
    for group in by_stem.values():
        group.sort(key=lambda p: (p.suffix.lower() in LOSSY_EXTENSIONS, p.name))
        kept.append(group[0])
        dropped.extend(group[1:])
    return sorted(kept), sorted(dropped)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _grouped_problem(kind: str, what: str, files: list[Path], root: Path, severity: str) -> Problem:
    names = [_rel(f, root) for f in files]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return Problem(kind, f"{len(names)} {what}: {shown}", tuple(names), severity)


def _unique_ids(samples: list[RawSample]) -> None:
    """Make sample ids safe file names and unique (subset prefix, then a counter)."""
    seen: dict[str, int] = defaultdict(int)
    for s in samples:
        seen[s.id] += 1
    used = set()
    for s in samples:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", s.id).lstrip(".") or "sample"
        if seen[s.id] > 1 and s.subset:
            base = f"{s.subset}_{base}"
        candidate, n = base, 2
        while candidate in used:
            candidate, n = f"{base}-{n}", n + 1
        used.add(candidate)
        s.id = candidate


# --------------------------------------------------------------------------- pairing


def _pair_folders(image_dir: Path, mask_dir: Path, root: Path, problems: list[Problem], ext_masks=IMAGE_EXTENSIONS):
    images = image_files(image_dir)
    masks = [p for p in paths.entries(mask_dir) if p.is_file() and p.name.lower().endswith(ext_masks)]
    masks = [m for m in masks if not m.name.startswith(".")]
    masks, copies = _dedupe_lossless(masks)
    if copies:
        problems.append(_grouped_problem("ignored_files", "lossy copies of masks ignored", copies, root, "warning"))
    by_key: dict[str, list[Path]] = defaultdict(list)
    for m in masks:
        by_key[stem_key(m.name)].append(m)
    pairs, unpaired_images, used = [], [], set()
    for img in images:
        key = stem_key(img.name)
        cands = by_key.get(key)
        if not cands:
            unpaired_images.append(img)
            continue
        # Prefer the exact stem, then the shortest name (image.png over image_mask_old.png).
        cands = sorted(cands, key=lambda m: (m.stem.lower() != img.stem.lower(), len(m.name)))
        pairs.append((img, cands[0]))
        used.add(cands[0])
    unpaired_masks = [m for m in masks if m not in used]
    if unpaired_images:
        problems.append(_grouped_problem("unpaired_image", "images without a mask (skipped)", unpaired_images, root, "error"))
    if unpaired_masks:
        problems.append(_grouped_problem("unpaired_mask", "masks without an image (skipped)", unpaired_masks, root, "error"))
    return pairs


def _stem_overlap(a: Path, b: Path, ext_b=IMAGE_EXTENSIONS) -> float:
    ka = {stem_key(p.name) for p in image_files(a)}
    kb = {stem_key(p.name) for p in paths.entries(b) if p.name.lower().endswith(ext_b) and p.is_file()}
    if not ka or not kb:
        return 0.0
    return len(ka & kb) / min(len(ka), len(kb))


def _lossy_only(folder: Path) -> bool:
    files = image_files(folder)
    return bool(files) and all(f.suffix.lower() in LOSSY_EXTENSIONS for f in files)


def _pair_candidates(root: Path, ext_masks=IMAGE_EXTENSIONS) -> list[tuple[Path, list[Path]]]:
    """(image folder, [label folders]) for every folder that has image folders with label siblings."""
    found = []
    for parent in _walk_dirs(root):
        subs = _subdirs(parent)
        with_files = [s for s in subs if image_files(s)] if ext_masks == IMAGE_EXTENSIONS else subs
        # Folders named like images first, so "slices" pairs with its class folders, not the reverse.
        img_dirs = sorted((s for s in subs if image_files(s)), key=lambda s: not _has_word(s.name, IMAGE_WORDS))
        taken = set()
        for a in img_dirs:
            if _has_word(a.name, MASK_WORDS) and not _has_word(a.name, IMAGE_WORDS):
                continue
            partners = []
            for b in with_files:
                if b == a or b in taken or (_has_word(b.name, IMAGE_WORDS) and not _has_word(b.name, MASK_WORDS)):
                    continue
                if _stem_overlap(a, b, ext_masks) >= 0.5:
                    partners.append(b)
            if len(partners) > 1:
                # Rendered overlays (SegmentationClassVisualization/*.jpg) are pictures, not labels.
                partners = [b for b in partners if not _has_word(b.name, ("visual", "overlay", "preview"))]
                lossless = [b for b in partners if not _lossy_only(b)]
                partners = lossless or partners
            if partners:
                found.append((a, partners))
                taken.update(partners)
                taken.add(a)
    return found


# --------------------------------------------------------------------------- layouts


def discover_paired(root: Path, options: ImportOptions) -> Discovery:
    """images/ + masks/ folders (possibly several pairs: train/val/test)."""
    problems: list[Problem] = []
    samples = []
    pairs_found = []
    image_dir, mask_dir = options.images_dir, options.masks_dir
    if image_dir and mask_dir:
        candidates = [
            (
                paths.resolve_in_source(root, image_dir, field="import option images_dir"),
                [paths.resolve_in_source(root, mask_dir, field="import option masks_dir")],
            )
        ]
    else:
        candidates = [(a, [b]) for a, bs in _pair_candidates(root) if len(bs) == 1 for b in bs]
        if not candidates:
            candidates = [(a, bs[:1]) for a, bs in _pair_candidates(root)]
    for img_dir, (msk_dir, *_) in candidates:
        pairs_found.append([_rel(img_dir, root), _rel(msk_dir, root)])
        for img, msk in _pair_folders(img_dir, msk_dir, root, problems):
            samples.append(RawSample(img.stem, img, subset_of(img, root), mask=msk))
    if not samples:
        raise ValueError(
            f"no image/mask folder pairs found under {root}: expected e.g. images/ + masks/ with matching file names"
        )
    _note_unused(root, candidates, problems)
    _unique_ids(samples)
    return Discovery("paired", samples, problems, {"pairs": pairs_found})


def _note_unused(root: Path, candidates, problems: list[Problem]) -> None:
    used = {a for a, _ in candidates} | {b for _, bs in candidates for b in bs}
    unused = []
    for folder in _walk_dirs(root):
        if folder in used or any(u in folder.parents for u in used):
            continue
        files = image_files(folder)
        if files:
            unused.append((folder, len(files)))
    for folder, n in unused:
        problems.append(
            Problem(
                "unused_files",
                f"{n} images in {_rel(folder, root)}/ are not part of any image/mask pair; not imported",
                (_rel(folder, root),),
                "warning",
            )
        )


def discover_per_sample(root: Path, options: ImportOptions) -> Discovery:
    """<id>/<images folder>/<image> + <id>/<masks folder>/*: several masks unioned."""
    problems: list[Problem] = []
    samples = []
    ignored: list[Path] = []
    copies_all: list[Path] = []
    no_masks: list[Path] = []
    for folder in _walk_dirs(root):
        subs = _subdirs(folder)
        img_subs = [s for s in subs if _has_word(s.name, IMAGE_WORDS) and not _has_word(s.name, MASK_WORDS)]
        msk_subs = [s for s in subs if _has_word(s.name, MASK_WORDS)]
        if len(img_subs) != 1 or not msk_subs or len(msk_subs) > 1:
            continue
        images = image_files(img_subs[0])
        if len(images) != 1:
            continue
        masks, copies = _dedupe_lossless(image_files(msk_subs[0]))
        copies_all.extend(copies)
        ignored.extend(s for s in subs if s not in img_subs and s not in msk_subs)
        if not masks:
            no_masks.append(images[0])
            continue
        samples.append(RawSample(folder.name, images[0], subset_of(folder, root), union=masks))
    if not samples:
        raise ValueError(
            f"no sample folders found under {root}: expected <id>/images/<id>.png with <id>/masks/*.png"
        )
    if copies_all:
        problems.append(_grouped_problem("ignored_files", "lossy (JPEG) copies of masks ignored", copies_all, root, "warning"))
    if ignored:
        problems.append(
            _grouped_problem("ignored_files", "folders that are neither images nor masks ignored", ignored, root, "warning")
        )
    if no_masks:
        problems.append(_grouped_problem("unpaired_image", "images whose masks folder is empty (skipped)", no_masks, root, "error"))
    _unique_ids(samples)
    return Discovery("per_sample", samples, problems, {"samples_found": len(samples)})


def discover_class_folders(root: Path, options: ImportOptions) -> Discovery:
    """An image folder and one folder of binary masks per class, per subset."""
    problems: list[Problem] = []
    merge: dict[str, str] = dict(options.merge)
    groups = []  # (image dir, [class dirs])
    for parent in _walk_dirs(root):
        subs = _subdirs(parent)
        # masks/<class>/ beside images/
        img_dirs = [s for s in subs if image_files(s) and _has_word(s.name, IMAGE_WORDS)]
        msk_parents = [s for s in subs if _has_word(s.name, MASK_WORDS) and not image_files(s) and _subdirs(s)]
        if len(img_dirs) == 1 and len(msk_parents) == 1:
            class_dirs = [c for c in _subdirs(msk_parents[0]) if _stem_overlap(img_dirs[0], c) >= 0.5]
            if class_dirs:
                groups.append((img_dirs[0], class_dirs))
                continue
    if not groups:
        groups = [(a, bs) for a, bs in _pair_candidates(root) if len(bs) >= 2]
    if not groups:
        raise ValueError(
            f"no per-class mask folders found under {root}: expected images/ beside masks/<class>/ "
            "or beside several class folders with the same file names"
        )
    samples = []
    labels: list[str] = []
    unpaired: list[Path] = []
    for img_dir, class_dirs in groups:
        by_class: dict[str, dict[str, list[Path]]] = {}
        for cdir in class_dirs:
            cname = merge.get(cdir.name, cdir.name)
            if cname not in labels:
                labels.append(cname)
            files, copies = _dedupe_lossless(image_files(cdir))
            if copies:
                problems.append(_grouped_problem("ignored_files", "lossy copies of masks ignored", copies, root, "warning"))
            table = by_class.setdefault(cname, {})
            for f in files:
                table.setdefault(stem_key(f.name), []).append(f)
        for img in image_files(img_dir):
            key = stem_key(img.name)
            cm = {c: t[key] for c, t in by_class.items() if key in t}
            if not cm:
                unpaired.append(img)
                continue
            samples.append(RawSample(img.stem, img, subset_of(img, root), class_masks=cm))
    if unpaired:
        problems.append(_grouped_problem("unpaired_image", "images without any class mask (skipped)", unpaired, root, "error"))
    order = list(options.classes)
    if order:
        order = [c for c in order if c not in ("background", "_background_")]
        missing = [c for c in order if c not in labels]
        if missing:
            raise ValueError(f"classes {missing} given in options have no folder; class folders are {labels}")
        labels = list(order) + [c for c in labels if c not in order]
    else:
        labels = sorted(labels, key=str.lower)
    _unique_ids(samples)
    details = {"groups": [[_rel(a, root), [b.name for b in bs]] for a, bs in groups], "merge": merge}
    return Discovery("class_folders", samples, problems, details, labels)


def discover_polygons(root: Path, options: ImportOptions) -> Discovery:
    """Images with .txt polygon files (same stem) in a sibling folder or beside them."""
    problems: list[Problem] = []
    samples = []
    labels: list[str] = []
    default_label = options.default_label
    pairs = []
    for folder in _walk_dirs(root):
        imgs = image_files(folder)
        texts = {stem_key(p.name): p for p in _files(folder, ".txt")}
        if imgs and texts:
            pairs.append((folder, folder))
    for a, bs in _pair_candidates(root, ext_masks=(".txt",)):
        pairs.append((a, bs[0]))
    for img_dir, txt_dir in pairs:
        texts = {stem_key(p.name): p for p in _files(txt_dir, ".txt")}
        used = set()
        for img in image_files(img_dir):
            t = texts.get(stem_key(img.name))
            if t is None:
                problems.append(Problem("unpaired_image", f"image {_rel(img, root)} has no polygon file", (_rel(img, root),), "error"))
                continue
            used.add(t)
            try:
                shapes = poly.parse_text(t, default_label)
            except (ValueError, OSError) as exc:
                problems.append(Problem("unreadable", str(exc), (_rel(t, root),), "error"))
                continue
            for s in shapes:
                if s.label not in labels:
                    labels.append(s.label)
            samples.append(RawSample(img.stem, img, subset_of(img, root), shapes=shapes, label_file=t))
        left = [t for t in texts.values() if t not in used and t.stem.lower() not in ("classes", "labels", "readme")]
        if left:
            problems.append(_grouped_problem("unpaired_mask", "polygon files without an image (skipped)", left, root, "error"))
    if not samples:
        raise ValueError(f"no images with .txt polygon files found under {root}")
    _unique_ids(samples)
    return Discovery("polygons", samples, problems, {"pairs": [[_rel(a, root), _rel(b, root)] for a, b in pairs]}, labels)


def _json_kind(path: Path) -> str | None:
    try:
        if path.stat().st_size > 512 * 1024**2:
            return None
        with open(path, encoding="utf-8") as handle:
            head = handle.read(4096)
        if '"shapes"' in head or '"imagePath"' in head:
            return "labelme"
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(doc, dict):
        if "shapes" in doc:
            return "labelme"
        if {"images", "annotations", "categories"} <= set(doc):
            return "coco"
    return None


def discover_labelme(root: Path, options: ImportOptions) -> Discovery:
    """LabelMe JSON files; each names its image (or embeds it)."""
    problems: list[Problem] = []
    samples, labels = [], []
    files = sorted(p for d in _walk_dirs(root) for p in _files(d, ".json"))
    for f in files:
        if _json_kind(f) != "labelme":
            continue
        try:
            shapes, meta = poly.read_labelme(f)
        except (ValueError, OSError) as exc:
            problems.append(Problem("unreadable", str(exc), (_rel(f, root),), "error"))
            continue
        img, refused = None, None
        if meta["image_path"] is not None:
            try:
                img = paths.resolve_in_source(root, meta["image_path"], field=f"{_rel(f, root)} imagePath", base=f.parent)
            except paths.OutsideSourceError as exc:
                refused = str(exc)
        if img is None or not img.is_file():
            beside = [f.with_suffix(e) for e in IMAGE_EXTENSIONS if f.with_suffix(e).is_file() and paths.is_inside(f.with_suffix(e), root)]
            img = beside[0] if beside else None
        if refused is not None:
            fallback = "embedded imageData used instead" if img is None and meta["image_data"] is not None else (
                f"the image beside it, {_rel(img, root)}, used instead" if img is not None else "skipped"
            )
            problems.append(
                Problem("outside_source", f"{refused}; {fallback}", (_rel(f, root),), "error" if fallback == "skipped" else "warning")
            )
            if img is None and meta["image_data"] is None:
                continue
        if img is None and meta["image_data"] is None:
            problems.append(
                Problem("unpaired_mask", f"{_rel(f, root)} names image {meta['image_path']!r}, which is not in the imported data", (_rel(f, root),), "error")
            )
            continue
        for s in shapes:
            if s.label not in labels:
                labels.append(s.label)
        size = (meta["height"], meta["width"]) if meta["height"] and meta["width"] else None
        samples.append(
            RawSample(f.stem, img, subset_of(f, root), shapes=shapes, image_bytes=None if img else meta["image_data"], size=size, label_file=f)
        )
    if not samples:
        raise ValueError(f"no LabelMe .json files found under {root}")
    _unique_ids(samples)
    return Discovery("labelme", samples, problems, {"files": len(samples)}, labels)


def discover_coco(root: Path, options: ImportOptions) -> Discovery:
    """A COCO annotation file (the first found, or option ``annotations``)."""
    problems: list[Problem] = []
    if root.is_file():
        ann_files = [root]
        root = root.parent
    elif options.annotations:
        ann_files = [paths.resolve_in_source(root, options.annotations, field="import option annotations")]
    else:
        ann_files = [p for d in _walk_dirs(root) for p in _files(d, ".json") if _json_kind(p) == "coco"]
    if not ann_files:
        raise ValueError(f"no COCO annotation file (with images, annotations, categories) found under {root}")
    samples, labels = [], []
    for ann in ann_files:
        cats, images = poly.read_coco(ann, root)
        for cid in sorted(cats):
            if cats[cid] not in labels:
                labels.append(cats[cid])
        for im in images:
            if im["refused"]:
                problems.append(Problem("outside_source", f"{im['refused']}; skipped", (_rel(ann, root),), "error"))
                continue
            if not im["file"].is_file():
                problems.append(
                    Problem("unpaired_mask", f"{_rel(ann, root)} names image {im['file_name']!r}, which is not in the imported data", (_rel(ann, root),), "error")
                )
                continue
            if im["unsupported"]:
                problems.append(
                    Problem(
                        "unsupported_annotation",
                        f"{im['unsupported']} annotations of {im['file_name']} are compressed RLE, which is not supported; skipped",
                        (_rel(ann, root),),
                        "warning",
                    )
                )
            samples.append(
                RawSample(Path(im["file"]).stem, im["file"], subset_of(im["file"], root), shapes=im["shapes"], rle=im["rle"], size=(im["height"], im["width"]), label_file=ann)
            )
    _unique_ids(samples)
    return Discovery("coco", samples, problems, {"annotation_files": [_rel(a, root) for a in ann_files]}, labels)


def discover(layout: str, root: Path, options: ImportOptions) -> Discovery:
    """Find the samples of ``root`` in ``layout``, skipping links that leave ``root``.

    Raises:
        ValueError: if the layout finds no samples (and for paths in options
            that lead outside ``root``).
    """
    scope_root = root.parent if root.is_file() else root
    with paths.listing(scope_root) as scope:
        discovery = DISCOVER[layout](root, options)
    if scope.skipped:
        links = sorted(scope.skipped)
        discovery.problems.insert(
            0, _grouped_problem("outside_link", "symbolic links lead outside the imported folder and were skipped (not read)", links, scope_root, "warning")
        )
    return discovery


DISCOVER = {
    "paired": discover_paired,
    "index": discover_paired,
    "color": discover_paired,
    "per_sample": discover_per_sample,
    "class_folders": discover_class_folders,
    "polygons": discover_polygons,
    "labelme": discover_labelme,
    "coco": discover_coco,
}


def detect(root: Path) -> tuple[str, dict]:
    """Guess the layout of a folder (or COCO file).

    Returns:
        ``(layout name, details)``; details say what was seen.

    Raises:
        ValueError: if no layout fits, saying what was looked for.
    """
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() == ".json" and _json_kind(root) == "coco":
            return "coco", {"file": root.name}
        raise ValueError(f"{root} is a file; expected a folder, a .zip archive or a COCO .json file")
    with paths.listing(root):
        return _detect(root)


def _detect(root: Path) -> tuple[str, dict]:
    dirs = list(_walk_dirs(root))
    json_kinds = defaultdict(int)
    for d in dirs:
        for j in _files(d, ".json")[:3]:
            kind = _json_kind(j)
            if kind:
                json_kinds[kind] += 1
    if json_kinds.get("coco"):
        return "coco", {"reason": "a JSON file with images, annotations and categories"}
    if json_kinds.get("labelme"):
        return "labelme", {"reason": "JSON files with LabelMe 'shapes'"}
    # Folder per sample: many folders each holding an image folder and a mask folder.
    per_sample = 0
    for d in dirs:
        subs = _subdirs(d)
        if any(_has_word(s.name, IMAGE_WORDS) and not _has_word(s.name, MASK_WORDS) and len(image_files(s)) == 1 for s in subs) and any(
            _has_word(s.name, MASK_WORDS) and image_files(s) for s in subs
        ):
            per_sample += 1
    # One such folder is more likely a small paired dataset (src/images + src/masks).
    if per_sample >= 2:
        return "per_sample", {"reason": f"{per_sample} folders each with an image folder and a masks folder"}
    for d in dirs:
        subs = _subdirs(d)
        if any(image_files(s) and _has_word(s.name, IMAGE_WORDS) for s in subs) and any(
            _has_word(s.name, MASK_WORDS) and not image_files(s) and any(image_files(c) for c in _subdirs(s)) for s in subs
        ):
            return "class_folders", {"reason": f"{_rel(d, root) or '.'}: masks/ holds one folder per class"}
    cands = _pair_candidates(root)
    if any(len(bs) >= 2 for _, bs in cands):
        group = next((a, bs) for a, bs in cands if len(bs) >= 2)
        return "class_folders", {"reason": f"{_rel(group[0], root)} has {len(group[1])} mask folders with the same file names"}
    if cands:
        return "paired", {"reason": "image and mask folders with matching file names", "pairs": [[_rel(a, root), _rel(bs[0], root)] for a, bs in cands]}
    if _pair_candidates(root, ext_masks=(".txt",)) or any(image_files(d) and _files(d, ".txt") for d in dirs):
        return "polygons", {"reason": "images with .txt files of the same name"}
    names = sorted({_rel(d, root) for d in dirs})[:10]
    raise ValueError(
        f"cannot tell the layout of {root} (folders seen: {names}); state it with layout= one of {sorted(LAYOUTS)}"
    )

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

import difflib
import functools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from segcore.data import paths
from segcore.data import polygons as poly
from segcore.data.dataset import Problem
from segcore.data.imageio import IMAGE_EXTENSIONS, LOSSY_EXTENSIONS, is_image_file
from segcore.data.options import ImportOptions, option_hint

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
# Suffixes that name a mask, not an image (the rest of STEM_SUFFIXES may end image names too).
MASK_SUFFIXES = tuple(x for x in STEM_SUFFIXES if x not in ("_training", "_train", "_test", "_image", "_img", "_dermoscopic_image"))
# Annotator suffixes: _1stHO / _2ndHO (CHASE_DB1), _manual1 / _manual2 (DRIVE), _annotator2, _rater1, _expert3 ...
_ANNOTATOR_RE = re.compile(
    r"[_\-. ](?P<tag>(?P<ord>[1-9])(?:st|nd|rd|th)[_\-]?[a-z]{0,10}|manual(?P<num>[1-9])"
    r"|(?:annotator|annot|ann|rater|expert|observer|obs|grader|reader)[_\-]?(?P<num2>[1-9]))$",
    re.I,
)
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
    fov: Path | None = None  # a field-of-view mask: pixels outside it are void
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


def annotator_of(name: str) -> tuple[str, int] | None:
    """``(tag, rank)`` of a file name that ends with an annotator suffix (``_2ndHO`` -> ("2ndHO", 2)), else None."""
    m = _ANNOTATOR_RE.search(Path(name).stem)
    if m is None:
        return None
    rank = int(m.group("ord") or m.group("num") or m.group("num2"))
    return m.group("tag"), rank


def is_mask_name(name: str) -> bool:
    """True if a file name ends with a mask or annotator suffix (``_mask``, ``_label``, ``_1stHO``, ...)."""
    stem = Path(name).stem.lower()
    return annotator_of(name) is not None or any(stem.endswith(x) and len(stem) > len(x) for x in MASK_SUFFIXES)


@functools.lru_cache(maxsize=1 << 16)
def stem_key(name: str, *, fold: bool = True) -> str:
    """The matching key of a file name: the stem without known suffixes (annotator suffixes too).

    Suffixes are found whatever their case. ``fold=True`` lower-cases the
    key; pairing compares unfolded keys first, so ``A.png`` and ``a.png`` stay
    two samples on a case-sensitive file system.
    """
    stem = Path(name).stem
    low = stem.lower()
    m = _ANNOTATOR_RE.search(stem)
    if m is not None and len(stem) > len(m.group(0)):
        stem, low = stem[: m.start()], low[: m.start()]
    changed = True
    while changed:
        changed = False
        for suffix in STEM_SUFFIXES:
            if low.endswith(suffix) and len(low) > len(suffix):
                stem, low = stem[: -len(suffix)], low[: -len(suffix)]
                changed = True
    return low if fold else stem


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
    return [p for p in paths.files(folder) if is_image_file(p)]


def _files(folder: Path, suffix: str) -> list[Path]:
    """Files of ``folder`` whose name ends with ``suffix`` (lower case), not hidden."""
    return [p for p in paths.files(folder) if p.name.lower().endswith(suffix) and not p.name.startswith(".")]


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in paths.folders(folder) if not p.name.startswith((".", "__"))]


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
        by_stem[f.stem].append(f)  # a.png and A.png are two files, not copies
    kept, dropped = [], []
    for group in by_stem.values():
        group.sort(key=lambda p: (p.suffix.lower() in LOSSY_EXTENSIONS, p.name))
        kept.append(group[0])
        dropped.extend(group[1:])
    return sorted(kept), sorted(dropped)


def relative_name(path: Path, root: Path) -> str:
    """How problems, reports and ``dataset.json`` name a source file: relative to the import's ``root``.

    Args:
        path: a file or folder found in the imported data.
        root: the folder the import reads from.

    Returns:
        ``path`` relative to ``root`` (``"."`` for ``root`` itself), or the whole
        ``path`` when it is not under ``root``.
    """
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _grouped_problem(kind: str, what: str, files: list[Path], root: Path, severity: str) -> Problem:
    names = [relative_name(f, root) for f in files]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return Problem(kind, f"{len(names)} {what}: {shown}", tuple(names), severity)


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".") or "sample"


def _folders_apart(group: list[RawSample]) -> list[str] | None:
    """For samples with one id: the nearest folder name that tells each apart (or "" for none), else None."""
    parents = []
    for s in group:
        path = s.image if s.image is not None else s.label_file
        if path is None:
            return None
        parents.append(path.parent.parts)
    common = 0  # folders all of them share from the top (the imported folder and above) tell nothing apart
    while all(len(p) > common for p in parents) and len({p[common] for p in parents}) == 1:
        common += 1
    chains = [list(reversed(p[common:])) for p in parents]
    depth = max((len(c) for c in chains), default=0)
    for k in range(depth):
        names = [c[k] if k < len(c) else "" for c in chains]
        if len(set(names)) == len(names):
            return names
    return None


def _unique_ids(samples: list[RawSample]) -> None:
    """Make sample ids safe file names and unique.

    Samples that share a name are told apart by their subset (``train_1``,
    ``test_1``) or else by the nearest folder whose name differs between them
    (``Tile_1_image_part_001``, ``Tile_5_image_part_001``); a counter is the
    last resort.
    """
    groups: dict[str, list[RawSample]] = defaultdict(list)
    for s in samples:
        groups[s.id].append(s)
    wanted: dict[int, str] = {}
    for sid, group in groups.items():
        base = _safe_id(sid)
        if len(group) == 1:
            wanted[id(group[0])] = base
            continue
        subsets = [s.subset for s in group]
        if all(subsets) and len(set(subsets)) == len(subsets):
            prefixes = subsets
        else:
            prefixes = _folders_apart(group) or [s.subset or "" for s in group]
        for s, prefix in zip(group, prefixes):
            wanted[id(s)] = _safe_id(f"{prefix}_{sid}") if prefix else base
    used = set()
    for s in samples:
        base = wanted[id(s)]
        candidate, n = base, 2
        while candidate in used:
            candidate, n = f"{base}-{n}", n + 1
        used.add(candidate)
        s.id = candidate


# --------------------------------------------------------------------------- pairing


def _pair_folders(image_dir: Path, mask_dir: Path, root: Path, problems: list[Problem], ext_masks=IMAGE_EXTENSIONS, annotator: str | None = None, annotators: dict | None = None, fallback: list | None = None):
    """(image, mask) pairs of two folders matched by stem key; ``image_dir == mask_dir``: one folder
    whose masks are told from its images by their suffixes (``_mask``, ``_1stHO``, ...)."""
    images = image_files(image_dir)
    masks = [p for p in paths.files(mask_dir) if p.name.lower().endswith(ext_masks)]
    masks = [m for m in masks if not m.name.startswith(".")]
    if image_dir == mask_dir:
        masks = [m for m in masks if is_mask_name(m.name)]
        images = [i for i in images if not is_mask_name(i.name)]
    masks, copies = _dedupe_lossless(masks)
    if copies:
        problems.append(_grouped_problem("ignored_files", "lossy copies of masks ignored", copies, root, "warning"))
    by_key: dict[str, list[Path]] = defaultdict(list)
    by_folded: dict[str, list[Path]] = defaultdict(list)
    for m in masks:
        by_key[stem_key(m.name, fold=False)].append(m)
        by_folded[stem_key(m.name)].append(m)
    image_keys = {stem_key(i.name, fold=False) for i in images}
    folded_images = Counter(stem_key(i.name) for i in images)
    pairs, unpaired_images, used, others = [], [], set(), []
    ambiguous: list[tuple[Path, list[Path]]] = []
    for img in images:
        cands = by_key.get(stem_key(img.name, fold=False))
        if not cands:
            # Only the case differs (IMG_1.png with img_1_mask.png): paired when that cannot mean another image.
            folded = [m for m in by_folded.get(stem_key(img.name), []) if stem_key(m.name, fold=False) not in image_keys]
            spellings = {stem_key(m.name, fold=False) for m in folded}
            if len(spellings) > 1 or (folded and folded_images[stem_key(img.name)] > 1):
                ambiguous.append((img, folded))
                continue
            cands = folded
        if not cands:
            unpaired_images.append(img)
            continue
        cands, rest = _pick_annotator(cands, annotator, annotators, fallback)
        others.extend(rest)
        used.update(rest)
        if not cands:
            unpaired_images.append(img)
            continue
        # Prefer the exact stem, then the shortest name (image.png over image_mask_old.png).
        cands = sorted(cands, key=lambda m: (m.stem != img.stem, len(m.name)))
        pairs.append((img, cands[0]))
        used.add(cands[0])
    if ambiguous:
        shown = "; ".join(
            f"{relative_name(i, root)} could pair with {[relative_name(m, root) for m in ms]}" for i, ms in ambiguous[:5]
        )
        problems.append(
            Problem(
                "ambiguous_pair",
                f"{len(ambiguous)} images match masks only when letter case is ignored, and more than one way: {shown}; "
                "skipped. Rename the files so that image and mask names agree exactly",
                tuple(relative_name(f, root) for i, ms in ambiguous for f in [i, *ms]),
                "error",
            )
        )
        used.update(m for _, ms in ambiguous for m in ms)
    unpaired_masks = [m for m in masks if m not in used]
    if others:
        tags = sorted({annotator_of(m.name)[0] for m in others})
        chosen = sorted({annotator_of(m.name)[0] for _, m in pairs if annotator_of(m.name)})
        problems.append(
            _grouped_problem(
                "other_annotator",
                f"masks by another annotator ({', '.join(tags)}) not used: the masks of {', '.join(chosen) or 'the first annotator'} "
                f"were (option annotator={tags[0]!r} uses the others)",
                others, root, "warning",
            )
        )
    if unpaired_images:
        problems.append(_grouped_problem("unpaired_image", "images without a mask (skipped)", unpaired_images, root, "error"))
    if unpaired_masks:
        lonely = unpaired_images or images
        problems.append(
            _unpaired_with_nearest("masks without an image (skipped)", [(m, lonely) for m in unpaired_masks], root)
        )
    return pairs


def _pick_annotator(cands: list[Path], annotator: str | None, seen: dict | None, fallback: list | None = None) -> tuple[list[Path], list[Path]]:
    """(masks of the chosen annotator, masks of the others) among one image's candidate masks."""
    tagged = [(m, annotator_of(m.name)) for m in cands]
    if seen is not None:
        for _, a in tagged:
            if a is not None:
                seen[a[0]] = seen.get(a[0], 0) + 1
    if not any(a for _, a in tagged):
        return cands, []
    want = []
    if annotator is not None:
        want = [m for m, a in tagged if a is not None and a[0].lower() == annotator.lower()]
    missing = annotator is not None and not want
    if not want:
        first = min(a[1] for _, a in tagged if a is not None)
        want = [m for m, a in tagged if a is None or a[1] == first]
    if missing and fallback is not None:
        fallback.extend(want)  # this image has no mask by the chosen annotator: the first one's are used
    return want, [m for m in cands if m not in want]


def _stem_overlap(a: Path, b: Path, ext_b=IMAGE_EXTENSIONS) -> float:
    ka = {stem_key(p.name) for p in image_files(a)}
    kb = {stem_key(p.name) for p in paths.files(b) if p.name.lower().endswith(ext_b)}
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
    if bool(image_dir) != bool(mask_dir):
        raise ValueError(
            f"import option {'images_dir' if image_dir else 'masks_dir'} is set but "
            f"{'masks_dir' if image_dir else 'images_dir'} is not; give both, or neither to let the importer find the folders"
        )
    if image_dir and mask_dir:
        a = paths.resolve_in_source(root, image_dir, field="import option images_dir")
        b = paths.resolve_in_source(root, mask_dir, field="import option masks_dir")
        if a == b:
            raise ValueError(
                f"import options images_dir ({image_dir!r}) and masks_dir ({mask_dir!r}) are the same folder: every "
                "file would pair with itself. Name two different folders, or give neither: images and masks in one "
                "folder are paired by their suffixes (_mask, _label, _1stHO, ...)"
            )
        candidates = [(a, [b])]
    else:
        candidates = [(a, [b]) for a, bs in _pair_candidates(root) if len(bs) == 1 for b in bs]
        if not candidates:
            candidates = [(a, bs[:1]) for a, bs in _pair_candidates(root)]
        if not candidates:
            candidates = [(f, [f]) for f in _same_folder_candidates(root)]
    annotators: dict[str, int] = {}
    fallback: list[Path] = []  # masks of the first annotator used where the chosen one has none
    for img_dir, (msk_dir, *_) in candidates:
        pairs_found.append([relative_name(img_dir, root) or ".", relative_name(msk_dir, root) or "."])
        for img, msk in _pair_folders(img_dir, msk_dir, root, problems, annotator=options.annotator, annotators=annotators, fallback=fallback):
            samples.append(RawSample(img.stem, img, subset_of(img, root), mask=msk))
    if options.annotator and annotators and options.annotator.lower() not in {a.lower() for a in annotators}:
        raise ValueError(f"import option annotator is {options.annotator!r}, but the annotators in the file names are {sorted(annotators)}")
    if fallback:
        problems.append(
            _grouped_problem(
                "annotator_missing",
                f"masks have no counterpart by annotator {options.annotator!r} (option annotator); these masks of the first "
                "annotator were used instead",
                sorted(fallback), root, "warning",
            )
        )
    if not samples:
        raise ValueError(
            f"no image/mask folder pairs found under {root}: expected e.g. images/ + masks/ with matching file names"
            + _stem_hint(root)
        )
    _note_unused(root, candidates, problems)
    _unique_ids(samples)
    details = {"pairs": pairs_found}
    if annotators:
        details["annotators"] = dict(sorted(annotators.items()))
    return Discovery("paired", samples, problems, details)


def _same_folder_candidates(root: Path) -> list[Path]:
    """Folders holding images and their masks side by side, told apart by mask suffixes (most images paired)."""
    found = []
    for folder in _walk_dirs(root):
        files = image_files(folder)
        masks = {stem_key(f.name) for f in files if is_mask_name(f.name)}
        images = [f for f in files if not is_mask_name(f.name)]
        if images and masks and sum(stem_key(f.name) in masks for f in images) >= 0.5 * len(images):
            found.append(folder)
    return found


def _stem_hint(root: Path) -> str:
    """Why no files paired: what the largest image folder holds, and the layout its annotation files suggest."""
    best = max(_walk_dirs(root), key=lambda d: len(image_files(d)), default=None)
    if best is None or not image_files(best):
        return "; no image files were found"
    files = image_files(best)
    stems = sorted({f.stem for f in files})
    where = relative_name(best, root) or "."
    twice = sorted(st for st in stems if sum(f.stem == st for f in files) > 1)
    hint = (
        f"; file stems did not match between any two folders, nor within one folder by a mask suffix "
        f"({', '.join(MASK_SUFFIXES[:4])}, _1stHO, _manual1, ...): e.g. {stems[:4]} in {where}/"
    )
    if twice:
        hint += (
            f". Files such as {twice[0]!r} exist in several formats there ({', '.join(sorted(f.name for f in files if f.stem == twice[0]))}), "
            "but none is named as a mask, so which is the label cannot be told"
        )
    kinds = Counter(_json_kind(j) for d in _walk_dirs(root) for j in _files(d, ".json")[:8])
    for kind in ("labelme", "coco"):
        if kinds.get(kind):
            name = "LabelMe" if kind == "labelme" else "COCO"
            return hint + f". The data holds {name} .json annotation files: import it with {option_hint('layout', kind)}"
    if any(_files(d, ".txt") for d in _walk_dirs(root)):
        hint += f". The data holds .txt files: if they are polygon point lists, import them with {option_hint('layout', 'polygons')}"
    return hint


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
                f"{n} images in {relative_name(folder, root)}/ are not part of any image/mask pair; not imported",
                (relative_name(folder, root),),
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
    odd: list[tuple[Path, str]] = []  # folders that look like samples but cannot be read as one
    for folder in _walk_dirs(root):
        subs = _subdirs(folder)
        img_subs = [s for s in subs if _has_word(s.name, IMAGE_WORDS) and not _has_word(s.name, MASK_WORDS)]
        msk_subs = [s for s in subs if _has_word(s.name, MASK_WORDS)]
        if len(img_subs) != 1 or not msk_subs or len(msk_subs) > 1:
            if img_subs and msk_subs:  # looks like a sample folder, but which folder holds what cannot be told
                odd.append((folder, f"{len(img_subs)} image folders and {len(msk_subs)} mask folders"))
            continue
        images = image_files(img_subs[0])
        if len(images) != 1:
            if images:
                odd.append((folder, f"{len(images)} images in {img_subs[0].name}/ (one expected)"))
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
    if odd:
        shown = "; ".join(f"{relative_name(f, root)}/: {why}" for f, why in odd[:5]) + (f"; and {len(odd) - 5} more" if len(odd) > 5 else "")
        problems.append(
            Problem(
                "unpaired_image",
                f"{len(odd)} sample folders could not be read as one image with its masks (skipped): {shown}",
                tuple(relative_name(f, root) for f, _ in odd),
                "error",
            )
        )
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
    unpaired_files: dict[str, list[tuple[Path, list[Path]]]] = defaultdict(list)  # role -> (file, images it may have meant)
    no_fov: list[Path] = []
    missing: dict[str, list[Path]] = defaultdict(list)
    roles_all: dict[str, str] = {}
    annotators = _Annotators.of([c for _, bs in groups for c in bs], options)
    for img_dir, class_dirs in groups:
        roles = folder_roles(img_dir, class_dirs, options, problems, root, annotators)
        roles_all.update({c.name: r for c, r in roles.items()})
        images = image_files(img_dir)
        image_of = _image_keys(images)
        fov_files: dict[str, Path] = {}
        by_class: dict[str, dict[str, list[Path]]] = {}
        for cdir in class_dirs:
            role = roles[cdir]
            if role not in ("class", "fov"):
                continue
            files, copies = _dedupe_lossless(image_files(cdir))
            if copies:
                problems.append(_grouped_problem("ignored_files", "lossy copies of masks ignored", copies, root, "warning"))
            keyed = [(image_of(f.name), f) for f in files]
            if role == "fov":
                for key, f in keyed:
                    if key is not None:
                        fov_files.setdefault(key, f)
            else:
                cname = annotators.class_name.get(cdir.name) or merge.get(cdir.name, cdir.name)
                if cname not in labels:
                    labels.append(cname)
                table = by_class.setdefault(cname, {})
                for key, f in keyed:
                    if key is not None:
                        table.setdefault(key, []).append(f)
            left = [f for key, f in keyed if key is None]
            if left:
                have = {key for key, _ in keyed}
                lonely = [i for i in images if stem_key(i.name, fold=False) not in have] or images
                unpaired_files[role].extend((f, lonely) for f in left)
        for img in images:
            key = stem_key(img.name, fold=False)
            cm = {c: t[key] for c, t in by_class.items() if key in t}
            if not cm:
                unpaired.append(img)
                continue
            for c in by_class:
                if c not in cm:
                    missing[c].append(img)
            if fov_files and key not in fov_files:
                no_fov.append(img)
            samples.append(RawSample(img.stem, img, subset_of(img, root), class_masks=cm, fov=fov_files.get(key)))
    problems[:] = _merge_folder_problems(problems)
    if unpaired:
        problems.append(_grouped_problem("unpaired_image", "images without any class mask (skipped)", unpaired, root, "error"))
    for role, found in sorted(unpaired_files.items()):
        what = "field-of-view masks" if role == "fov" else "class masks"
        problems.append(_unpaired_with_nearest(f"{what} that pair with no image (not used)", found, root))
    if no_fov:
        problems.append(
            _grouped_problem(
                "missing_field_of_view",
                "images have no field-of-view mask while the others of their folder have one, so every pixel of them is "
                "scored (look for a misnamed file among the unpaired masks)",
                no_fov, root, "warning",
            )
        )
    if annotators.fallback:
        chosen = options.annotator
        used_instead = sorted({n for n, imgs in annotators.used.items() if set(imgs) & set(annotators.fallback)})
        problems.append(
            _grouped_problem(
                "annotator_missing",
                f"images have no mask by annotator {chosen!r} (option annotator); the masks of {', '.join(used_instead)} "
                "were used for them, as the same class",
                sorted(annotators.fallback), root, "warning",
            )
        )
    if missing:
        n = len({p for files in missing.values() for p in files})
        per = "; ".join(
            f"{c!r}: {len(files)} ({', '.join(relative_name(f, root) for f in files[:3])}{', ...' if len(files) > 3 else ''})"
            for c, files in sorted(missing.items())
        )
        problems.append(
            Problem(
                "missing_class_mask",
                f"{n} samples have no mask in some class folders, so those classes are empty in them (read as absent): {per}",
                tuple(relative_name(f, root) for files in missing.values() for f in files),
                "warning",
            )
        )
    named = {}
    order = list(options.classes)
    if order:
        order = [c for c in order if c not in ("background", "_background_")]
        missing_names = [c for c in order if c not in labels]
        spare = [c for c in labels if c not in order]
        if len(missing_names) == 1 and len(spare) == 1:
            # One name given for the one folder left: the name is that folder's class.
            named = {_folder_of(spare[0], roles_all, annotators, merge): missing_names[0]}
            for smp in samples:
                if spare[0] in smp.class_masks:
                    smp.class_masks[missing_names[0]] = smp.class_masks.pop(spare[0])
            labels = [missing_names[0] if c == spare[0] else c for c in labels]
        elif missing_names:
            pairs = {_folder_of(a, roles_all, annotators, merge): b for a, b in zip(spare, missing_names)}
            hint = option_hint("merge", pairs) if pairs else ""
            raise ValueError(
                f"classes {missing_names} given in options have no folder; class folders are {labels}. "
                + (f"To give a folder a class name, merge it into that name: {hint}" if hint else
                   "Name only the class folders there are")
            )
        labels = list(order) + [c for c in labels if c not in order]
    else:
        labels = sorted(labels, key=str.lower)
    if not labels:
        raise ValueError(f"no class folders left under {root} after folder roles {roles_all}; give at least one the role 'class'")
    _unique_ids(samples)
    details = {"groups": [[relative_name(a, root), [b.name for b in bs]] for a, bs in groups], "merge": merge, "folder_roles": roles_all}
    if annotators.used:
        by_id = {img: smp for smp in samples for img in [smp.image]}
        details["annotator_of_samples"] = {
            name: sum(1 for i in imgs if i in by_id) for name, imgs in sorted(annotators.used.items())
        }
    if named:
        details["class_folders_named"] = named
    return Discovery("class_folders", samples, problems, details, labels)


def _image_keys(images: list[Path]):
    """A function from a mask file name to the key of the image it belongs to (None: no image).

    Names are compared with their case; a mask whose name matches an image
    only when case is ignored belongs to it when no other image has that
    name in another case.
    """
    exact = {stem_key(i.name, fold=False) for i in images}
    folded: dict[str, list[str]] = defaultdict(list)
    for k in exact:
        folded[k.lower()].append(k)

    def image_of(name: str) -> str | None:
        key = stem_key(name, fold=False)
        if key in exact:
            return key
        found = folded.get(key.lower(), [])
        return found[0] if len(found) == 1 else None

    return image_of


def _folder_of(label: str, roles: dict[str, str], annotators: _Annotators, merge: dict[str, str]) -> str:
    """The folder name a class label came from (the label itself when no folder was renamed into it)."""
    for folder, role in roles.items():
        if role == "class" and (annotators.class_name.get(folder) or merge.get(folder, folder)) == label:
            return folder
    return label


def _nearest_image(f: Path, images: list[Path]) -> str:
    """The image name a mask file was most likely meant for (by spelling)."""
    if not images:
        return ""
    stems = [i.stem for i in images]
    best = difflib.get_close_matches(f.stem, stems, n=1, cutoff=0.0)
    return images[stems.index(best[0])].name if best else images[0].name


def _unpaired_with_nearest(what: str, found: list[tuple[Path, list[Path]]], root: Path) -> Problem:
    """An ``unpaired_mask`` error naming each file, the first five with the image (of their candidates) they come nearest to."""
    found = sorted(found, key=lambda x: str(x[0]))
    named = [(f, _nearest_image(f, cands)) for f, cands in found[:5]]
    shown = ", ".join(f"{relative_name(f, root)!r} (nearest image: {near})" if near else relative_name(f, root) for f, near in named)
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return Problem("unpaired_mask", f"{len(found)} {what}: {shown}{more}", tuple(relative_name(f, root) for f, _ in found), "error")


def _merge_folder_problems(problems: list[Problem]) -> list[Problem]:
    """One ``other_annotator`` / ``field_of_view`` problem per folder name, however many groups have the folder."""
    out: list[Problem] = []
    seen: dict[tuple[str, tuple[str, ...]], int] = {}
    for p in problems:
        if p.kind not in ("other_annotator", "field_of_view"):
            out.append(p)
            continue
        key = (p.kind, tuple(sorted(Path(f).name for f in p.files)))
        if key in seen:
            first = out[seen[key]]
            out[seen[key]] = Problem(first.kind, first.message, first.files + tuple(f for f in p.files if f not in first.files), first.severity)
        else:
            seen[key] = len(out)
            out.append(p)
    return out


_FOV_NAMES = ("fov", "field_of_view", "field-of-view", "fieldofview", "roi")
_FOLDER_ANNOTATOR_RE = re.compile(
    r"^(?:(?P<ord>[1-9])(?:st|nd|rd|th)[_\- ]?(?P<base1>.*)|(?P<base2>.*?)[_\- ]?(?:manual|annotator|annotation|rater|expert|observer|grader|reader)[_\- ]?(?P<num>[1-9]))$",
    re.I,
)
_FOV_PROBE = 8


@dataclass
class _Annotators:
    """Mask folders named as annotators of one thing (``1st_manual``, ``2nd_manual``), over every group of an import.

    ``family`` maps a folder name to its family (the thing annotated) and
    rank; ``class_name`` maps every folder of a family with two or more
    annotators to the one class they all stand for (the lowest-ranked
    folder's name, or what option ``merge`` makes of any of them), so that
    choosing an annotator never splits a class.
    """

    family: dict[str, tuple[str, int]] = field(default_factory=dict)
    class_name: dict[str, str] = field(default_factory=dict)
    used: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))  # folder name -> images it labels
    fallback: list[Path] = field(default_factory=list)  # images without the chosen annotator's folder

    @classmethod
    def of(cls, folders: list[Path], options: ImportOptions) -> "_Annotators":
        found = cls()
        members: dict[str, dict[str, int]] = defaultdict(dict)
        for c in folders:
            m = _FOLDER_ANNOTATOR_RE.match(c.name)
            if m is None or c.name in dict(options.folder_roles):
                continue
            base = (m.group("base1") if m.group("base1") is not None else m.group("base2") or "").strip("_- ").lower()
            rank = int(m.group("ord") or m.group("num"))
            members[base][c.name] = rank
        merge = dict(options.merge)
        for base, names in members.items():
            if len(names) < 2:
                continue
            ordered = sorted(names, key=lambda n: (names[n], n))
            merged = [merge[n] for n in ordered if n in merge]
            for n in ordered:
                found.family[n] = (base, names[n])
                found.class_name[n] = merged[0] if merged else ordered[0]
        if options.annotator and options.annotator.lower() not in {n.lower() for n in found.family}:
            raise ValueError(
                f"import option annotator is {options.annotator!r}, but no mask folder of that name labels the same thing "
                f"as another; annotator folders are {sorted(found.family) or 'none'}"
            )
        return found


def folder_roles(img_dir: Path, class_dirs: list[Path], options: ImportOptions, problems: list[Problem], root: Path, annotators: _Annotators | None = None) -> dict[Path, str]:
    """The role of each mask folder beside ``img_dir``: class, fov, annotator or ignore.

    Stated roles (option ``folder_roles``) win. Otherwise: folders named as
    the 1st / 2nd ... annotator of the same thing (``1st_manual``,
    ``2nd_manual``, anywhere in the import) keep the first (or option
    ``annotator``, where this group has it) as the class and set the others
    aside; a folder whose masks cover much of every image with the same region
    (a field-of-view mask) makes the pixels outside it void. Every guess is
    reported with the option that changes it.
    """
    annotators = annotators or _Annotators.of(class_dirs, options)
    stated = dict(options.folder_roles)
    roles: dict[Path, str] = {c: stated.get(c.name, "") for c in class_dirs}
    families: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for c in class_dirs:
        if c.name in annotators.family and not roles[c]:
            base, rank = annotators.family[c.name]
            families[base].append((rank, c))
    want = (options.annotator or "").lower()
    for base, members in families.items():
        members.sort(key=lambda x: (x[0], x[1].name))
        chosen = next((c for _, c in members if want and c.name.lower() == want), None)
        wanted_here = chosen is not None or not want or not any(
            n.lower() == want and annotators.family[n][0] == base for n in annotators.family
        )
        chosen = chosen or members[0][1]
        images = image_files(img_dir)
        annotators.used[chosen.name].extend(images)
        if not wanted_here:
            annotators.fallback.extend(images)
        others = [c for _, c in members if c != chosen]
        roles[chosen] = "class"
        for c in others:
            roles[c] = "annotator"
        if others:
            names = [c.name for c in others]
            problems.append(
                Problem(
                    "other_annotator",
                    f"mask folders {names} look like other annotators' masks of what {chosen.name!r} holds (their names say so); "
                    f"{chosen.name!r} was used as the class and they were not. To use one of them instead, set option "
                    f"annotator={names[0]!r}; to make them classes, option folder_roles={{{names[0]!r}: \"class\"}}",
                    tuple(relative_name(c, root) for c in others),
                    "warning",
                )
            )
    # Field of view, by name or by contents.
    for c in class_dirs:
        if roles[c]:
            continue
        others = [o for o in class_dirs if o != c and roles[o] in ("", "class")]
        share = _fov_share(c, others)
        named = c.name.lower() in _FOV_NAMES
        if named or share is not None:
            roles[c] = "fov"
            why = f"it is named {c.name!r}" if named and share is None else (
                f"its masks cover {share:.0%} of each image with the same region in every image"
            )
            problems.append(
                Problem(
                    "field_of_view",
                    f"mask folder {c.name!r} looks like a field-of-view mask ({why}): it is not a class, and pixels outside "
                    f"it are void (not scored). If it is a class, import again with option folder_roles={{{c.name!r}: \"class\"}}; "
                    f"to ignore it, {{{c.name!r}: \"ignore\"}}",
                    (relative_name(c, root),),
                    "warning",
                )
            )
    for c in class_dirs:
        roles[c] = roles[c] or "class"
    if sum(r == "fov" for r in roles.values()) > 1:
        fovs = [c.name for c, r in roles.items() if r == "fov"]
        raise ValueError(f"mask folders {fovs} all look like field-of-view masks; state which with option folder_roles")
    return roles


def _fov_share(folder: Path, others: list[Path]) -> float | None:
    """The share of the image a field-of-view folder's masks cover, or None if they do not look like one.

    A field of view covers at least 30% of every image, the masks of
    different images are nearly the same region (IoU >= 0.9 with the first),
    and the other folders' masks of the same images lie inside it (95%).
    """
    import numpy as np

    from segcore.data import imageio, masks as mask_codec

    files = sorted(image_files(folder))
    if len(files) < 2:
        return None
    step = max(1, len(files) // _FOV_PROBE)
    first, shares, contained = None, [], 0
    for f in files[::step][:_FOV_PROBE]:
        try:
            plane, _ = mask_codec.binarize(imageio.read_mask(f).array)
        except (imageio.ImageReadError, OSError, ValueError):
            return None
        plane = plane > 0
        share = float(plane.mean())
        if share < 0.3 or share > 0.995:
            return None
        if first is None:
            first = plane
        elif first.shape != plane.shape or (first & plane).sum() < 0.9 * (first | plane).sum():
            return None
        shares.append(share)
        for o in others:
            key = stem_key(f.name)
            match = [g for g in image_files(o) if stem_key(g.name) == key]
            if not match:
                continue
            try:
                inside, _ = mask_codec.binarize(imageio.read_mask(match[0]).array)
            except (imageio.ImageReadError, OSError, ValueError):
                return None
            inside = inside > 0
            if inside.shape != plane.shape or (inside & ~plane).sum() > 0.05 * max(int(inside.sum()), 1):
                return None
            contained += 1
    if not others or contained == 0:
        return None
    return float(np.mean(shares)) if len(shares) >= 2 else None


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
        images = image_files(img_dir)
        image_of = _image_keys(images)
        all_texts = _files(txt_dir, ".txt")
        texts: dict[str, Path] = {}
        for p in all_texts:
            key = image_of(p.name)
            if key is not None:
                texts.setdefault(key, p)
        used = set()
        for img in images:
            t = texts.get(stem_key(img.name, fold=False))
            if t is None:
                problems.append(Problem("unpaired_image", f"image {relative_name(img, root)} has no polygon file", (relative_name(img, root),), "error"))
                continue
            used.add(t)
            try:
                shapes = poly.parse_text(t, default_label)
            except (ValueError, OSError) as exc:
                problems.append(Problem("unreadable", str(exc), (relative_name(t, root),), "error"))
                continue
            for s in shapes:
                if s.label not in labels:
                    labels.append(s.label)
            samples.append(RawSample(img.stem, img, subset_of(img, root), shapes=shapes, label_file=t))
        left = [t for t in all_texts if t not in used and t.stem.lower() not in ("classes", "labels", "readme")]
        if left:
            problems.append(_grouped_problem("unpaired_mask", "polygon files without an image (skipped)", left, root, "error"))
    if not samples:
        raise ValueError(f"no images with .txt polygon files found under {root}")
    _unique_ids(samples)
    return Discovery("polygons", samples, problems, {"pairs": [[relative_name(a, root), relative_name(b, root)] for a, b in pairs]}, labels)


def _json_kind(path: Path) -> str | None:
    try:
        if path.stat().st_size > 512 * 1024**2:
            return None
        with open(path, encoding="utf-8") as handle:
            head = handle.read(4096)
        if '"shapes"' in head or '"imagePath"' in head:
            return "labelme"
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's depth
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
            _labelme_sample(f, root, samples, labels, problems)
        except (ValueError, OSError) as exc:  # e.g. an imagePath too long for the file system
            problems.append(Problem("unreadable", _short(f"{relative_name(f, root)}: {exc}"), (relative_name(f, root),), "error"))
    if not samples:
        raise ValueError(f"no LabelMe .json files found under {root}")
    _note_unlabelled(root, samples, problems, "a LabelMe .json file")
    _unique_ids(samples)
    return Discovery("labelme", samples, problems, {"files": len(samples)}, labels)


def _short(text: str, limit: int = 400) -> str:
    """A message cut to ``limit`` characters (a crafted name can be thousands long)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _labelme_sample(f: Path, root: Path, samples: list[RawSample], labels: list[str], problems: list[Problem]) -> None:
    """Read one LabelMe file into ``samples`` (and its labels), or add the problem that says why not."""
    try:
        shapes, meta = poly.read_labelme(f)
    except (ValueError, OSError) as exc:
        problems.append(Problem("unreadable", _short(str(exc)), (relative_name(f, root),), "error"))
        return
    img, refused = None, None
    if meta["image_path"] is not None:
        try:
            img = paths.resolve_in_source(root, meta["image_path"], field=f"{relative_name(f, root)} imagePath", base=f.parent)
        except paths.OutsideSourceError as exc:
            refused = str(exc)
    if img is None or not img.is_file():
        beside = [f.with_suffix(e) for e in IMAGE_EXTENSIONS if f.with_suffix(e).is_file() and paths.is_inside(f.with_suffix(e), root)]
        img = beside[0] if beside else None
    if refused is not None:
        fallback = "embedded imageData used instead" if img is None and meta["image_data"] is not None else (
            f"the image beside it, {relative_name(img, root)}, used instead" if img is not None else "skipped"
        )
        problems.append(
            Problem("outside_source", f"{refused}; {fallback}", (relative_name(f, root),), "error" if fallback == "skipped" else "warning")
        )
        if img is None and meta["image_data"] is None:
            return
    if img is None and meta["image_data"] is None:
        problems.append(
            Problem("unpaired_mask", f"{relative_name(f, root)} names image {meta['image_path']!r}, which is not in the imported data", (relative_name(f, root),), "error")
        )
        return
    for s in shapes:
        if s.label not in labels:
            labels.append(s.label)
    size = (meta["height"], meta["width"]) if meta["height"] and meta["width"] else None
    samples.append(
        RawSample(f.stem, img, subset_of(f, root), shapes=shapes, image_bytes=None if img else meta["image_data"], size=size, label_file=f)
    )


def _note_unlabelled(root: Path, samples: list[RawSample], problems: list[Problem], what: str) -> None:
    """Name the image files an annotation-file import did not use.

    Files named like an imported sample (masks or renderings of the same
    image, such as ``SegmentationClass/<id>.png``) are reported apart from
    images that have no annotation at all.
    """
    used = {s.image.resolve() for s in samples if s.image is not None}
    keys = {stem_key(s.image.name) for s in samples if s.image is not None} | {
        stem_key(s.label_file.name) for s in samples if s.label_file is not None and s.image is None
    }
    beside, unlabelled = [], []
    for folder in _walk_dirs(root):
        for f in image_files(folder):
            if f.resolve() in used:
                continue
            (beside if stem_key(f.name) in keys else unlabelled).append(f)
    if unlabelled:
        problems.append(
            _grouped_problem("unlabelled_image", f"images without {what} (not imported)", sorted(unlabelled), root, "warning")
        )
    if beside:
        problems.append(
            _grouped_problem(
                "ignored_files",
                "image files named like imported samples (masks or renderings beside the annotations) not used; "
                "the annotations were",
                sorted(beside), root, "warning",
            )
        )


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
            if im.get("bad"):
                shown = "; ".join(im["bad"][:3]) + (f"; and {len(im['bad']) - 3} more" if len(im["bad"]) > 3 else "")
                problems.append(
                    Problem(
                        "bad_annotation",
                        f"{len(im['bad'])} entries in {relative_name(ann, root)} could not be read and were skipped "
                        f"(the other entries were used): {shown}",
                        (relative_name(ann, root),),
                        "error",
                    )
                )
            if im["refused"]:
                problems.append(Problem("outside_source", f"{im['refused']}; skipped", (relative_name(ann, root),), "error"))
                continue
            if not im["file"].is_file():
                problems.append(
                    Problem("unpaired_mask", f"{relative_name(ann, root)} names image {im['file_name']!r}, which is not in the imported data", (relative_name(ann, root),), "error")
                )
                continue
            if im["unsupported"]:
                problems.append(
                    Problem(
                        "unsupported_annotation",
                        f"{im['unsupported']} annotations of {im['file_name']} are compressed RLE, which is not supported; skipped",
                        (relative_name(ann, root),),
                        "warning",
                    )
                )
            samples.append(
                RawSample(Path(im["file"]).stem, im["file"], subset_of(im["file"], root), shapes=im["shapes"], rle=im["rle"], size=(im["height"], im["width"]), label_file=ann)
            )
    bare = [s for s in samples if not s.shapes and not s.rle]
    if bare:
        problems.append(
            _grouped_problem(
                "no_annotations",
                "images listed in the COCO file with no annotation (imported as all background)",
                [s.image for s in bare], root, "warning",
            )
        )
    _note_unlabelled(root, samples, problems, "an entry in the COCO file")
    _unique_ids(samples)
    return Discovery("coco", samples, problems, {"annotation_files": [relative_name(a, root) for a in ann_files]}, labels)


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
            return "class_folders", {"reason": f"{relative_name(d, root) or '.'}: masks/ holds one folder per class"}
    cands = _pair_candidates(root)
    if any(len(bs) >= 2 for _, bs in cands):
        group = next((a, bs) for a, bs in cands if len(bs) >= 2)
        return "class_folders", {"reason": f"{relative_name(group[0], root)} has {len(group[1])} mask folders with the same file names"}
    if cands:
        return "paired", {"reason": "image and mask folders with matching file names", "pairs": [[relative_name(a, root), relative_name(bs[0], root)] for a, bs in cands]}
    if _pair_candidates(root, ext_masks=(".txt",)) or any(image_files(d) and _files(d, ".txt") for d in dirs):
        return "polygons", {"reason": "images with .txt files of the same name"}
    same = _same_folder_candidates(root)
    if same:
        return "paired", {
            "reason": "images and their masks side by side in one folder, told apart by suffixes (_mask, _1stHO, ...)",
            "pairs": [[relative_name(f, root) or ".", relative_name(f, root) or "."] for f in same],
        }
    names = sorted({relative_name(d, root) or "." for d in dirs})[:10]
    raise ValueError(
        f"cannot tell the layout of {root} (folders seen: {names}){_stem_hint(root)}; "
        f"state it with layout= one of {sorted(LAYOUTS)}"
    )

"""Polygon annotations: parsing text point lists, LabelMe JSON and COCO JSON, and filling them.

A polygon is a ``Shape(label, points)`` with ``points`` an (N, 2) float array of
(x, y) pixel coordinates. Shapes are filled with OpenCV in file order, so a
later shape is drawn over an earlier one (as LabelMe's own converter does).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR_RE = re.compile(r"\[\s*(" + _NUMBER + r")\s*,\s*(" + _NUMBER + r")\s*\]")
_NUM_RE = re.compile(_NUMBER)


@dataclass(frozen=True)
class Shape:
    label: str
    points: np.ndarray  # (N, 2) x, y
    normalized: bool = False  # coordinates in [0, 1] (YOLO), scaled by the image size when filled


def parse_text(path: str | Path, default_label: str = "foreground") -> list[Shape]:
    """Parse a text file of polygon point lists.

    Accepted forms, one or more per file:

    * ``[[x, y], [x, y], ...]``: point pairs; a polygon ends where a point
      repeats the polygon's first point (several polygons may share a line).
    * ``x y x y ...`` or ``x,y x,y ...``: one polygon per line.
    * ``label x y x y ...``: the same with a class name first.
    * ``k x y x y ...`` with every coordinate in [0, 1]: YOLO segmentation
      (class id ``k``, coordinates relative to the image size).

    Args:
        path: the text file.
        default_label: the class of polygons given without a label.

    Returns:
        The shapes in file order.

    Raises:
        ValueError: naming the file and line if a line cannot be read as points.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    shapes: list[Shape] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "[" in line:
            label = default_label
            head = line.split("[", 1)[0].strip().rstrip(":").strip()
            if head:
                label = head
            pairs = [(float(a), float(b)) for a, b in _PAIR_RE.findall(line)]
            if not pairs:
                raise ValueError(f"{path} line {lineno}: no [x, y] pairs found in {line[:60]!r}")
            for poly in _split_closed(pairs):
                shapes.append(Shape(label, np.asarray(poly, np.float64)))
            continue
        tokens = line.replace(",", " ").replace(";", " ").split()
        label = default_label
        if tokens and not _NUM_RE.fullmatch(tokens[0]):
            label, tokens = tokens[0].rstrip(":"), tokens[1:]
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            raise ValueError(f"{path} line {lineno}: expected numbers, got {line[:60]!r}") from None
        normalized = False
        if label == default_label and len(values) % 2 == 1 and values[0].is_integer():
            coords = values[1:]
            if coords and all(0.0 <= v <= 1.0 for v in coords):
                label, values, normalized = str(int(values[0])), coords, True
        if len(values) % 2:
            raise ValueError(f"{path} line {lineno}: odd number of coordinates ({len(values)})")
        if len(values) < 6:
            raise ValueError(f"{path} line {lineno}: a polygon needs at least 3 points, got {len(values) // 2}")
        shapes.append(Shape(label, np.asarray(values, np.float64).reshape(-1, 2), normalized))
    return shapes


def _split_closed(pairs: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    polys, current = [], []
    for p in pairs:
        current.append(p)
        if len(current) > 2 and p == current[0]:
            polys.append(current)
            current = []
    if len(current) >= 3:
        polys.append(current)
    return polys


def read_labelme(path: str | Path) -> tuple[list[Shape], dict]:
    """Read a LabelMe JSON file.

    Args:
        path: the ``.json`` file.

    Returns:
        ``(shapes, meta)``; ``meta`` has ``image_path`` (the ``imagePath`` text
        as written, or None: resolve it with
        :func:`segcore.data.paths.resolve_in_source`), ``height``, ``width``
        and ``image_data`` (embedded bytes or None).
        Rectangles and circles become polygons; points and lines are skipped.
    """
    path = Path(path)
    doc = _load_json(path)
    if not isinstance(doc, dict) or "shapes" not in doc:
        raise ValueError(f"{path} is not a LabelMe file: it has no 'shapes' list")
    try:
        return _labelme_shapes(doc, path), _labelme_meta(doc, path)
    except ValueError:
        raise
    except Exception as exc:  # crafted files: any other failure is this file's problem, named
        raise ValueError(f"{path.name} could not be read as a LabelMe file ({type(exc).__name__}: {exc})") from None


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path} is not valid JSON: {type(exc).__name__}: {exc}"[:400]) from None


def _points(value, where: str) -> np.ndarray:
    """(N, 2) finite float points from a JSON value, or a ValueError saying what was expected."""
    try:
        pts = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a list of [x, y] numbers") from None
    if pts.size == 0:
        return np.zeros((0, 2))
    if pts.ndim != 2 or pts.shape[1] != 2:
        if pts.ndim == 1 and pts.size % 2 == 0 and pts.size >= 2:
            return pts.reshape(-1, 2)
        raise ValueError(f"{where}: expected [x, y] pairs, got an array of shape {pts.shape}")
    return pts


def _labelme_shapes(doc: dict, path: Path) -> list[Shape]:
    raw = doc.get("shapes") or []
    if not isinstance(raw, list):
        raise ValueError(f"{path.name}: 'shapes' is {type(raw).__name__}; expected a list of shapes")
    shapes = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict):
            raise ValueError(f"{path.name} shapes[{i}] is {s!r:.40}; expected an object with 'label' and 'points'")
        pts = _points(s.get("points") or [], f"{path.name} shapes[{i}] points")
        kind = s.get("shape_type") or "polygon"
        label = s.get("label", "")
        if not isinstance(label, (str, int, float)):
            raise ValueError(f"{path.name} shapes[{i}] label is {label!r:.40}; expected a text")
        if kind == "rectangle" and len(pts) == 2:
            (x0, y0), (x1, y1) = pts
            pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        elif kind == "circle" and len(pts) == 2:
            c, e = pts
            r = float(np.hypot(*(e - c)))
            t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
            pts = np.stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)], axis=1)
        elif kind not in ("polygon",) or len(pts) < 3:
            continue
        shapes.append(Shape(str(label), pts))
    return shapes


def _labelme_meta(doc: dict, path: Path) -> dict:
    image_path, image_data = doc.get("imagePath"), doc.get("imageData")
    if image_path is not None and not isinstance(image_path, str):
        raise ValueError(f"{path.name}: imagePath is {image_path!r:.40}; expected a file name")
    if image_data is not None and not isinstance(image_data, str):
        raise ValueError(f"{path.name}: imageData is {type(image_data).__name__}; expected base64 text")
    size = []
    for key in ("imageHeight", "imageWidth"):
        v = doc.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 10**6):
            raise ValueError(f"{path.name}: {key} is {v!r:.40}; expected a positive integer")
        size.append(v)
    try:
        data = base64.b64decode(image_data, validate=False) if image_data else None
    except (ValueError, TypeError):
        raise ValueError(f"{path.name}: imageData is not base64 text") from None
    return {"image_path": image_path or None, "height": size[0], "width": size[1], "image_data": data}


def read_coco(path: str | Path, root: str | Path | None = None) -> tuple[dict, list[dict]]:
    """Read a COCO annotation file.

    Args:
        path: the JSON file with ``images``, ``annotations`` and ``categories``.
        root: the imported data's folder (default: the JSON file's folder);
            image files are looked for only inside it.

    Returns:
        ``(categories, images)``: categories as ``{id: name}``; images as dicts
        with ``file`` (resolved inside ``root``, or None when ``file_name``
        leads outside it: ``refused`` then holds the message), ``file_name``
        (as written), ``height``, ``width``, ``shapes`` and ``rle`` (list of
        ``(label, counts)`` for uncompressed run-length masks).
    """
    from segcore.data import paths

    path = Path(path)
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a COCO file: expected an object with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise ValueError(f"{path} is not a COCO file: it has no {key!r} list")
        if not isinstance(doc[key], list):
            raise ValueError(f"{path.name}: {key!r} is {type(doc[key]).__name__}; expected a list")
    root = Path(root) if root is not None else path.parent
    try:
        cats = {_coco_id(c["id"]): str(c["name"]) for c in doc["categories"]}
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path.name}: every entry of 'categories' needs an integer 'id' and a 'name'") from None
    images = {}
    bad_loose: list[str] = []  # entries not tied to one readable image
    for i, im in enumerate(doc["images"]):
        try:
            file_name, height, width = str(im["file_name"]), int(im["height"]), int(im["width"])
            if not (0 < height < 10**6 and 0 < width < 10**6):
                raise ValueError
            key = _coco_id(im.get("id"))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ValueError(f"{path.name} images[{i}]: expected 'id', 'file_name', integer 'height' and 'width'") from None
        if key in images:
            bad_loose.append(f"images[{i}] repeats image id {key!r:.20}; only the first entry with that id is used")
            continue
        field = f"{path.name} images[{i}] file_name"
        try:
            file, refused = _resolve_coco_file(root, path.parent, file_name, field), None
        except paths.OutsideSourceError as exc:
            file, refused = None, str(exc)
        except (OSError, ValueError) as exc:  # e.g. a file name too long for the file system
            bad_loose.append(f"images[{i}] file_name cannot be looked up ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        images[key] = {
            "file": file,
            "file_name": file_name,
            "refused": refused,
            "height": height,
            "width": width,
            "shapes": [],
            "rle": [],
            "unsupported": 0,
            "bad": [],
        }
    for n, ann in sorted(enumerate(doc["annotations"]), key=lambda x: _draw_order(x[1], x[0])):
        where = f"annotations[{n}]" + (f" (id {ann.get('id')!r:.20})" if isinstance(ann, dict) and "id" in ann else "")
        im = None
        try:
            if not isinstance(ann, dict):
                raise ValueError(f"is {ann!r:.40}; expected an object")
            im = images.get(_coco_id(ann.get("image_id")))
            if im is None:
                continue
            if "category_id" not in ann:
                raise ValueError("has no 'category_id'")
            label = cats.get(_coco_id(ann["category_id"]), str(ann["category_id"]))
            seg = ann.get("segmentation")
            if isinstance(seg, list):
                for poly in seg:
                    if not isinstance(poly, list) or len(poly) % 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly):
                        shown = f"{len(poly)} coordinates" if isinstance(poly, list) else f"{poly!r:.20}"
                        raise ValueError(f"has a polygon of {shown}; expected a flat list of x, y numbers")
                    pts = np.asarray(poly, np.float64).reshape(-1, 2)
                    if len(pts) >= 3:
                        im["shapes"].append(Shape(label, pts))
            elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
                im["rle"].append((label, _rle_counts(seg["counts"], im["height"], im["width"])))
            else:
                im["unsupported"] += 1
        except (ValueError, TypeError, OverflowError) as exc:
            (im["bad"] if im is not None else bad_loose).append(f"{where} {exc}")
    result = list(images.values())
    if bad_loose and result:
        result[0]["bad"].extend(bad_loose)
    return cats, result


def _coco_id(value) -> int | str:
    """A COCO id: an integer (also when written as "7"), else its text."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise ValueError(f"id {value!r:.20} is not an integer or a text")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"id {value!r} is not an integer")
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _draw_order(ann, position: int) -> tuple:
    """Annotations are drawn in id order (numbers first), then file order; any id type sorts."""
    key = ann.get("id") if isinstance(ann, dict) else None
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return (0, float(key), "", position)
    return (1, 0.0, str(key), position)


def _rle_counts(counts: list, height: int, width: int) -> list[int]:
    """Uncompressed RLE counts checked: non-negative integers covering exactly height x width pixels."""
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise ValueError("has RLE counts that are not all non-negative integers")
    if sum(counts) != height * width:
        raise ValueError(f"has RLE counts summing to {sum(counts):,}; the image has {height * width:,} pixels")
    return counts


def _resolve_coco_file(root: Path, folder: Path, file_name: str, field: str) -> Path:
    """The image a COCO ``file_name`` names, looked for inside ``root`` only.

    Tried in order: beside the JSON file, in ``images/``, in ``JPEGImages/``,
    then the bare file name in ``images/`` and beside the JSON (annotation
    tools often write the annotator's own absolute paths). A ``file_name``
    that leads outside ``root`` and has no copy inside is refused.
    """
    from segcore.data import paths

    base = Path(file_name.replace("\\", "/")).name
    named = [file_name, f"images/{file_name}", f"JPEGImages/{file_name}"]
    refused = None
    for rel in named + ([f"images/{base}", base] if base else []):
        try:
            c = paths.resolve_in_source(root, rel, field=field, base=folder)
        except paths.OutsideSourceError as exc:
            refused = refused or exc
            continue
        if c.is_file():
            return c
    if refused is not None:
        raise paths.OutsideSourceError(paths.refusal(field, file_name))
    return folder / file_name


def rle_decode(counts: list[int], height: int, width: int) -> np.ndarray:
    """Decode an uncompressed COCO run-length mask (column-major runs, 0 first)."""
    flat = np.zeros(height * width, np.uint8)
    pos, val = 0, 0
    for run in counts:
        if val:
            flat[pos : pos + run] = 1
        pos += run
        val ^= 1
    return flat.reshape(width, height).T


def inside_bounds(shape: Shape, height: int, width: int) -> bool:
    """Whether a shape's coordinates are finite and within one image size of the image on every side.

    Farther points are no annotation of this image (1e308 is a crafted
    file): filling them would cost seconds of CPU for nothing.
    """
    pts = shape.points * ([width, height] if shape.normalized else [1, 1])
    if pts.size == 0 or not np.isfinite(pts).all():
        return False
    return bool(pts[:, 0].min() >= -width and pts[:, 0].max() <= 2 * width and pts[:, 1].min() >= -height and pts[:, 1].max() <= 2 * height)


def fill(shapes: list[Shape], height: int, width: int, value_of: dict[str, int], fill_value: int = 0) -> np.ndarray:
    """Rasterise shapes into a uint8 index mask, later shapes over earlier ones.

    Args:
        shapes: the polygons.
        height: mask height.
        width: mask width.
        value_of: label -> value written (labels absent from it are skipped).
        fill_value: the value of pixels no shape covers.

    Returns:
        (height, width) uint8 mask.
    """
    mask = np.full((height, width), fill_value, np.uint8)
    for s in shapes:
        if s.label not in value_of or not inside_bounds(s, height, width):
            continue
        pts = s.points * ([width, height] if s.normalized else [1, 1])
        # Pixel i spans [i, i+1): a vertex at x = 250.8 lies in pixel 250. Flooring agrees with
        # LabelMe's own PNGs on 99.7% of pixels, rounding on only 98.5%.
        poly = np.floor(pts).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [poly], int(value_of[s.label]))
    return mask

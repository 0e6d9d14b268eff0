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
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "shapes" not in doc:
        raise ValueError(f"{path} is not a LabelMe file: it has no 'shapes' list")
    shapes = []
    for s in doc.get("shapes") or []:
        pts = np.asarray(s.get("points") or [], np.float64).reshape(-1, 2)
        kind = s.get("shape_type") or "polygon"
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
        shapes.append(Shape(str(s.get("label", "")), pts))
    image_data = doc.get("imageData")
    meta = {
        "image_path": str(doc["imagePath"]) if doc.get("imagePath") else None,
        "height": doc.get("imageHeight"),
        "width": doc.get("imageWidth"),
        "image_data": base64.b64decode(image_data) if image_data else None,
    }
    return shapes, meta


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
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise ValueError(f"{path} is not a COCO file: it has no {key!r} list")
    root = Path(root) if root is not None else path.parent
    try:
        cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path.name}: every entry of 'categories' needs an integer 'id' and a 'name'") from None
    images = {}
    for i, im in enumerate(doc["images"]):
        try:
            file_name, height, width = str(im["file_name"]), int(im["height"]), int(im["width"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path.name} images[{i}]: expected 'id', 'file_name', integer 'height' and 'width'") from None
        field = f"{path.name} images[{i}] file_name"
        try:
            file, refused = _resolve_coco_file(root, path.parent, file_name, field), None
        except paths.OutsideSourceError as exc:
            file, refused = None, str(exc)
        images[im.get("id")] = {
            "file": file,
            "file_name": file_name,
            "refused": refused,
            "height": height,
            "width": width,
            "shapes": [],
            "rle": [],
            "unsupported": 0,
        }
    for ann in sorted(doc["annotations"], key=lambda a: a.get("id", 0)):
        im = images.get(ann.get("image_id"))
        if im is None:
            continue
        label = cats.get(int(ann["category_id"]), str(ann["category_id"]))
        seg = ann.get("segmentation")
        if isinstance(seg, list):
            for poly in seg:
                if len(poly) >= 6:
                    im["shapes"].append(Shape(label, np.asarray(poly, np.float64).reshape(-1, 2)))
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            im["rle"].append((label, seg["counts"]))
        else:
            im["unsupported"] += 1
    return cats, list(images.values())


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
        if s.label not in value_of:
            continue
        pts = s.points * ([width, height] if s.normalized else [1, 1])
        # Pixel i spans [i, i+1): a vertex at x = 250.8 lies in pixel 250. Flooring agrees with
        # LabelMe's own PNGs on 99.7% of pixels, rounding on only 98.5%.
        poly = np.floor(pts).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [poly], int(value_of[s.label]))
    return mask

"""Mask encodings: from the values stored in mask files to class indices.

A :class:`MaskSpec` says how raw mask values map to classes. It is inferred
from a probe of the dataset's masks (or stated with options) and then applied
to every mask. Encodings:

* ``binary``: two values (0/255, 0/1, 0/k); other values are noise, snapped
  to the nearer of the two (JPEG-saved masks).
* ``index``: class ids stored directly (palette PNGs, CamVid); a value named in
  ``ignore`` becomes void (255). Grey-level coded masks (0/128/255) map their
  sorted levels to 0, 1, 2, ...
* ``trimap``: values 1/2/3 (foreground / background / boundary, as in the
  Oxford-IIIT Pet trimaps): 2 -> background, 1 -> foreground, 3 -> boundary
  (or void with option ``trimap_boundary="ignore"``).
* ``color``: RGB masks with a colour-to-class table. Palette PNGs among them
  are decoded through their palette (to the colours they show). A colour not
  in the table is snapped to the nearest table colour when it is a JPEG shift
  (within ``JPEG_SHIFT``) or lies only on edges (noise and anti-aliasing); a
  colour that fills solid regions is a real colour the table does not list:
  its pixels are void and the import reports it.

A class named like void (``ImportOptions.ignore_labels``: ``void``,
``ignore``, ``unlabelled``, ...) in ``classes`` or ``colors`` is void, not a
class. Values that look like void without being named (one that borders
every other class, as CamVid's 11 does) are suggested, never applied
(``MaskSpec.suggestions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from segcore.data.dataset import IGNORE_INDEX
from segcore.data.options import ImportOptions, option_hint

# Fewer distinct values than this: every value is a label. More: some are noise.
MAX_CLEAN_VALUES = 64
# A value not in the table is noise (snapped) when it is near a table value and rare.
NOISE_DISTANCE = 48
NOISE_FRACTION = 0.05
COLOR_NOISE_FRACTION = 0.02
# A colour this close to a table colour is that colour shifted by JPEG.
JPEG_SHIFT = 12
# A value near a more frequent one is a JPEG shift of it only when it holds less than this share of its pixels.
SHIFT_SHARE = 0.2
# A colour with at least this many pixels whose four neighbours share it, making up
# at least SOLID_SHARE of its pixels, fills regions: a real colour, not edge noise.
SOLID_PIXELS = 25
SOLID_SHARE = 0.2

# Distinct colours for classes 1.. (class 0, the background, is black).
PALETTE = (
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128), (255, 255, 255),
)  # fmt: skip


def default_color(k: int) -> tuple[int, int, int]:
    if k < len(PALETTE):
        return PALETTE[k]
    rng = np.random.default_rng(k)
    return tuple(int(v) for v in rng.integers(40, 256, 3))


@dataclass
class MaskSpec:
    """How raw mask values map to class indices."""

    encoding: str
    class_names: list[str]
    class_colors: list[tuple[int, int, int]]
    value_map: dict[int, int] = field(default_factory=dict)  # grey value -> class (255 = void)
    color_table: list[tuple[tuple[int, int, int], int]] = field(default_factory=list)  # colour -> class
    notes: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)  # void-like values: what to state, and why
    void_names: dict[str, int] = field(default_factory=dict)  # class name read as void -> its value
    # Colours outside the table that fill solid regions somewhere in the probe: void in every mask,
    # also where they are thin, so that one colour never means void in one mask and a class in another.
    solid_colors: set[tuple[int, int, int]] = field(default_factory=set)

    def to_dict(self) -> dict:
        d = {"encoding": self.encoding}
        if self.value_map:
            d["value_map"] = {str(k): v for k, v in sorted(self.value_map.items())}
        if self.color_table:
            d["color_table"] = [[list(c), k] for c, k in self.color_table]
        if self.notes:
            d["notes"] = list(self.notes)
        if self.suggestions:
            d["suggestions"] = list(self.suggestions)
        if self.solid_colors:
            d["void_colors_found"] = [list(c) for c in sorted(self.solid_colors)]
        return d


@dataclass
class MaskResult:
    index: np.ndarray  # (H, W) uint8
    snapped: int = 0  # noise pixels snapped to the nearest table value
    outside: dict = field(default_factory=dict)  # raw value -> pixel count made void
    snapped_far: int = 0  # of ``snapped``: pixels farther than a JPEG shift from their new colour


def infer_spec(
    grey_counts: dict[int, int],
    color_counts: dict[tuple[int, int, int], int],
    palette: np.ndarray | None,
    options: ImportOptions,
) -> MaskSpec:
    """Choose the mask encoding from value counts over a probe of masks.

    Args:
        grey_counts: raw value -> pixel count over single-channel masks.
        color_counts: (r, g, b) -> pixel count over colour masks.
        palette: (256, 3) palette of the first palette PNG, or None.
        options: import options (``mask_encoding``, ``classes``, ``colors``,
            ``ignore``, ``ignore_colors``, ``invert``, ``trimap_boundary``).

    Returns:
        The :class:`MaskSpec`.
    """
    encoding = options.mask_encoding
    names = list(options.classes)
    ignore = set(options.ignore)
    if options.colors or (encoding == "auto" and color_counts and not grey_counts):
        encoding = "color" if encoding == "auto" else encoding
    if encoding == "color":
        return _color_spec(color_counts, options, names)
    if color_counts and encoding != "color":
        # Colour masks with other encodings: read them through their first channel.
        for (r, _g, _b), n in color_counts.items():
            grey_counts[r] = grey_counts.get(r, 0) + n
    values = sorted(v for v in grey_counts if v not in ignore)
    total = max(1, sum(grey_counts.values()))
    notes: list[str] = []
    if encoding == "auto":
        encoding = _guess_grey_encoding(values, grey_counts, total, names, palette)
    if encoding == "binary":
        clean = values if len(values) <= 2 else _dominant(grey_counts, total, ignore, 2)
        hi = max(clean) if clean and max(clean) > 0 else 255
        lo = min(clean) if len(clean) > 1 else 0
        vmap = {hi: 0, lo: 1} if options.invert else {lo: 0, hi: 1}
        names = names if len(names) == 2 else ["background", names[-1] if len(names) == 1 else "foreground"]
        notes.append(f"binary masks: value {lo} -> {names[vmap[lo]]}, {hi} -> {names[vmap[hi]]}")
    elif encoding == "trimap":
        boundary = options.trimap_boundary
        vmap = {2: 0, 1: 1, 3: {"class": 2, "ignore": IGNORE_INDEX, "foreground": 1}[boundary]}
        default = ["background", "foreground"] + (["boundary"] if boundary == "class" else [])
        names = names if len(names) == len(default) else default
        notes.append(f"trimap: 2 -> background, 1 -> foreground, 3 -> {boundary}")
    else:  # index
        if 255 in values and not ignore and len(values) > 2 and max(v for v in values if v != 255) < MAX_CLEAN_VALUES:
            ignore.add(255)
            values.remove(255)
            notes.append(
                f"value 255 ({grey_counts[255]:,} px in the masks probed) beside small class ids: read as void "
                "(VOC convention)"
            )
        dom = _dominant(grey_counts, total, ignore, MAX_CLEAN_VALUES)
        # Grey levels far apart (0/128/255) with rare values between them: the rare ones are noise.
        noisy_levels = len(values) > len(dom) and _spread(np.array(dom)) >= 16
        clean = values if len(values) <= MAX_CLEAN_VALUES and not noisy_levels else dom
        small = [v for v in dom if v < MAX_CLEAN_VALUES]
        far = [v for v in clean if v >= MAX_CLEAN_VALUES]
        if len(small) >= 2 and far and all(grey_counts[v] < NOISE_FRACTION * total for v in far):
            # Class ids with a few pixels of a far value (65535 beside 0/1/2): the rare value is not a class;
            # it is outside the table, made void and reported with its pixel count.
            clean = [v for v in clean if v < MAX_CLEAN_VALUES]
        if names and max(clean, default=0) < len(names):
            vmap = {v: v for v in range(len(names))}
        elif names and len(set(clean) | {0}) == len(names):
            vmap = {v: i for i, v in enumerate(sorted(set(clean) | {0}))}
            notes.append(f"mask values {sorted(vmap)} mapped to the {len(names)} classes given, in order")
        elif names:
            # More values than classes: the extra ones are reported as outside the table.
            vmap = {v: v for v in range(len(names))}
        elif max(clean, default=0) < MAX_CLEAN_VALUES:
            k = max(clean, default=0) + 1
            vmap = {v: v for v in range(max(k, len(names)))}
        else:
            vmap = {v: i for i, v in enumerate(sorted(set(clean) | {0}))}
            notes.append(f"grey levels {sorted(vmap)} mapped to classes 0..{len(vmap) - 1}")
        k = max(vmap.values()) + 1
        if names and len(names) != k:
            raise ValueError(f"{len(names)} class names given ({names}) but the masks hold {k} classes (values {clean})")
        if not names:
            names = ["background"] + [f"class_{v}" for v in range(1, k)]
    for v in ignore:
        vmap[v] = IGNORE_INDEX
    void_names: dict[str, int] = {}
    if encoding == "index":
        names, vmap, void_names = _drop_void_names(names, vmap, options.ignore_labels)
        if void_names:
            notes.append(
                f"classes {sorted(void_names)} are named as void: their values {sorted(void_names.values())} "
                "are void (255, not scored), not classes"
            )
    k = len(names)
    colors = [default_color(i) for i in range(k)]
    if palette is not None and encoding == "index":
        inv = {c: v for v, c in vmap.items() if c != IGNORE_INDEX}
        colors = [tuple(int(x) for x in palette[inv[i]]) if i in inv and inv[i] < 256 else colors[i] for i in range(k)]
    return MaskSpec(encoding, names, colors, value_map=vmap, notes=notes, void_names=void_names)


def is_void_name(name: str, ignore_labels) -> bool:
    """True for a class name that means "not labelled" (``void``, ``ignore``, ``unlabelled``, ...)."""
    return str(name).strip().lower() in {str(x).lower() for x in ignore_labels}


def _drop_void_names(names: list[str], vmap: dict[int, int], ignore_labels) -> tuple[list[str], dict[int, int], dict[str, int]]:
    """Classes named like void become void: (names left, value map, {void name: value})."""
    void = [i for i, n in enumerate(names) if is_void_name(n, ignore_labels)]
    if not void or len(void) >= len(names) - 1:
        return names, vmap, {}
    keep = [i for i in range(len(names)) if i not in void]
    new_index = {old: new for new, old in enumerate(keep)}
    void_names = {}
    out = {}
    for v, c in vmap.items():
        if c in void:
            out[v] = IGNORE_INDEX
            void_names[names[c]] = int(v)
        else:
            out[v] = new_index.get(c, c) if c != IGNORE_INDEX else IGNORE_INDEX
    return [names[i] for i in keep], out, void_names


def neighbour_counts(index: np.ndarray) -> np.ndarray:
    """(256, 256) counts of 4-neighbour pixel pairs with different values in a uint8 mask (symmetric)."""
    out = np.zeros(256 * 256, np.int64)
    a = index.astype(np.int64, copy=False)
    for x, y in ((a[:, 1:], a[:, :-1]), (a[1:], a[:-1])):
        d = x != y
        if d.any():
            out += np.bincount((x[d] * 256 + y[d]).ravel(), minlength=256 * 256)
    out = out.reshape(256, 256)
    return out + out.T


def void_suggestions(spec: MaskSpec, pixels: dict[int, int], neighbours: np.ndarray | None) -> list[str]:
    """Values that look like void but are imported as classes, each with the option that states it.

    A value other than 0 that borders (nearly) every other class, is the
    first or second neighbour of most of them, and is broken into more edges
    per pixel than the usual class (1.5 times the median) behaves as
    unlabelled pixels do (CamVid's 11): it is suggested, never applied.
    Needs 4 classes or more, and nothing is suggested once some value is void.
    """
    if spec.encoding != "index" or neighbours is None:
        return []
    if any(c == IGNORE_INDEX for c in spec.value_map.values()):
        return []  # void already stated (or 255 read as void)
    present = [v for v, c in spec.value_map.items() if c != IGNORE_INDEX and v < 256 and pixels.get(v, 0) > 0]
    if len(present) < 4:
        return []
    edges = {v: float(neighbours[v].sum()) / pixels[v] for v in present}
    out = []
    for v in present:
        if v == 0:
            continue  # 0 bordering everything is the background, the default reading
        if edges[v] < 1.5 * float(np.median([edges[u] for u in present if u != v])):
            continue
        others = [u for u in present if u != v]
        touches = [u for u in others if neighbours[v, u] > 0]
        top2 = 0
        for u in others:
            row = [(int(neighbours[u, w]), w) for w in present if w != u]
            ranked = [w for n, w in sorted(row, reverse=True) if n > 0][:2]
            top2 += v in ranked
        if len(touches) >= 0.9 * len(others) and top2 >= 0.6 * len(others):
            name = spec.class_names[spec.value_map[v]]
            out.append(
                f"value {v} borders {len(touches)} of the {len(others)} other classes and is the first or second "
                f"neighbour of {top2} of them, as unlabelled (void) pixels do; it was imported as class {name!r}. "
                f"If it marks void, import again with {option_hint('ignore', v)}"
            )
    return out


def palette_to_rgb(index: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """A palette image's indices (H, W) as the colours they show (H, W, 3) uint8."""
    pal = np.zeros((256, 3), np.uint8)
    pal[: len(palette)] = np.asarray(palette, np.uint8)[:256, :3]
    return pal[np.clip(index, 0, 255).astype(np.uint8)]


def _guess_grey_encoding(values, counts, total, names, palette) -> str:
    if palette is not None:
        return "index"
    if len(names) > 2:
        return "index"
    if len(values) <= 2 and (not values or min(values) == 0 or len(values) == 1):
        return "binary"
    if set(values) <= {1, 2, 3} and len(values) >= 2:
        return "trimap"
    dom = _dominant(counts, total, set(), MAX_CLEAN_VALUES)
    if len(dom) <= 2 and min(dom) == 0 and max(dom) >= 128:
        return "binary"  # 0 and a bright value plus rare in-between values: JPEG noise
    return "index"


def _dominant(counts: dict, total: int, ignore: set, at_most: int) -> list:
    """The values holding a real share of the pixels (noise has a tiny share each).

    JPEG also shifts whole plateaus by a level or two (255 -> 254): values within
    8 of a more frequent one are merged into it, but only when the merged levels
    end up far apart (>= 32), so class ids 0, 1, 2, ... are never merged.
    """
    ranked = sorted(((n, v) for v, n in counts.items() if v not in ignore), reverse=True)
    keep = [v for n, v in ranked if n >= 0.005 * total][:at_most] or [v for _, v in ranked[:1]]
    heads: list = []
    for v in keep:  # most frequent first
        # A JPEG-shifted level is far rarer than its plateau; ids 0, 1, 2 with a real share each are not shifts.
        if not any(abs(v - h) <= 8 and counts[v] < SHIFT_SHARE * counts[h] for h in heads):
            heads.append(v)
    if len(heads) >= 2 and _spread(np.array(heads)) >= 32:
        return sorted(heads)
    return sorted(keep)


def _color_spec(color_counts, options, names) -> MaskSpec:
    table = list(options.colors)
    ignore_colors = list(options.ignore_colors)
    notes = []
    if not table:
        total = max(1, sum(color_counts.values()))
        many = len(color_counts) > MAX_CLEAN_VALUES
        found = [c for c, n in sorted(color_counts.items(), key=lambda kv: -kv[1]) if not many or n >= 0.002 * total]
        found = [c for c in found if c not in ignore_colors]
        bg = (0, 0, 0) if (0, 0, 0) in found else (found[0] if found else (0, 0, 0))
        ordered = [bg] + sorted(c for c in found if c != bg)
        if names and len(names) == len(ordered):
            table = list(zip(names, ordered))
        else:
            table = [("background", bg)] + [(f"color_{r}_{g}_{b}", (r, g, b)) for r, g, b in ordered[1:]]
        notes.append(f"{len(table)} colours found in the masks, {ordered[0]} read as background")
    void_names = {n: c for n, c in table if is_void_name(n, options.ignore_labels)}
    if void_names and len(void_names) < len(table) - 1:
        table = [(n, c) for n, c in table if n not in void_names]
        ignore_colors += [c for c in void_names.values() if c not in ignore_colors]
        notes.append(f"colours {sorted(void_names)} are named as void: their pixels are void (255, not scored)")
    else:
        void_names = {}
    class_names = [n for n, _ in table]
    colors = [c for _, c in table]
    ctable = [(c, i) for i, c in enumerate(colors)] + [(c, IGNORE_INDEX) for c in ignore_colors]
    return MaskSpec("color", class_names, colors, color_table=ctable, notes=notes, void_names={n: -1 for n in void_names})


def apply_spec(raw: np.ndarray, spec: MaskSpec) -> MaskResult:
    """Map a raw mask to a uint8 class-index mask (255 = void).

    Args:
        raw: (H, W) integer values or (H, W, 3) colours.
        spec: the encoding.

    Returns:
        A :class:`MaskResult` with the index mask and counts of snapped and void pixels.
    """
    if spec.encoding == "color":
        return _apply_color(raw, spec)
    if raw.ndim == 3:
        raw = raw[:, :, 0]
    raw = raw.astype(np.int64, copy=False) if raw.dtype.kind not in "u" else raw
    if raw.size and int(raw.min()) < 0:
        raise ValueError(f"mask has negative values (min {int(raw.min())})")
    top = int(raw.max()) if raw.size else 0
    known = np.array(sorted(spec.value_map), np.int64)
    lut = np.full(max(top, int(known.max())) + 1, -1, np.int16)
    for v, k in spec.value_map.items():
        lut[v] = k
    present = np.flatnonzero(np.bincount(raw.ravel(), minlength=lut.size)) if raw.dtype.itemsize <= 2 else np.unique(raw)
    unknown = [int(v) for v in present if lut[v] < 0]
    snapped, outside = 0, {}
    if unknown:
        counts = np.bincount(raw.ravel(), minlength=lut.size)
        total = raw.size
        targets = np.array([v for v, k in spec.value_map.items() if k != IGNORE_INDEX], np.int64)
        # Class ids stored directly (0, 1, 2, ...) have no "nearness": an unknown id is
        # outside the table. Binary and grey-level coded masks are snapped by value.
        levels = spec.encoding == "binary" or (spec.encoding == "index" and _spread(targets) >= 16)
        for v in unknown:
            nearest = int(targets[np.argmin(np.abs(targets - v))])
            n = int(counts[v])
            d = abs(nearest - v)
            if spec.encoding == "binary" or (levels and (d <= 8 or (d <= NOISE_DISTANCE and n <= NOISE_FRACTION * total))):
                lut[v] = spec.value_map[nearest]
                snapped += n
            else:
                lut[v] = IGNORE_INDEX
                outside[v] = n
    index = lut[raw].astype(np.uint8)
    return MaskResult(index, snapped, outside)


def _spread(values: np.ndarray) -> int:
    """The smallest gap between sorted table values (large gaps: grey levels, not ids)."""
    v = np.unique(values)
    return int(np.diff(v).min()) if v.size > 1 else 255


def _apply_color(raw: np.ndarray, spec: MaskSpec) -> MaskResult:
    if raw.ndim == 2:
        raw = np.repeat(raw[:, :, None], 3, axis=2)
    packed = (raw[:, :, 0].astype(np.int32) << 16) | (raw[:, :, 1].astype(np.int32) << 8) | raw[:, :, 2].astype(np.int32)
    uniq, inverse = np.unique(packed.ravel(), return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse)
    table = {(r << 16) | (g << 8) | b: k for (r, g, b), k in spec.color_table}
    cols = np.array([c for c, _ in spec.color_table], np.int64)
    out = np.empty(len(uniq), np.uint8)
    snapped, snapped_far, outside = 0, 0, {}
    solid = None
    for i, u in enumerate(uniq.tolist()):
        if u in table:
            out[i] = table[u]
            continue
        rgb = np.array([(u >> 16) & 255, (u >> 8) & 255, u & 255])
        if tuple(int(x) for x in rgb) in spec.solid_colors:
            out[i] = IGNORE_INDEX
            outside[tuple(int(x) for x in rgb)] = int(counts[i])
            continue
        d = np.sqrt(((cols - rgb) ** 2).sum(axis=1))
        j = int(np.argmin(d))
        if d[j] > JPEG_SHIFT:
            if solid is None:
                solid = np.bincount(inverse[_interior(packed).ravel()], minlength=len(uniq))
            if solid[i] >= SOLID_PIXELS and solid[i] >= SOLID_SHARE * counts[i]:
                # Solid regions of one colour: a real colour the table does not list.
                out[i] = IGNORE_INDEX
                outside[tuple(int(x) for x in rgb)] = int(counts[i])
                continue
            snapped_far += int(counts[i])
        # A JPEG shift of a table colour, or edge pixels (JPEG ringing, anti-aliasing).
        out[i] = spec.color_table[j][1]
        snapped += int(counts[i])
    return MaskResult(out[inverse].reshape(packed.shape), snapped, outside, snapped_far)


def solid_colors(rgb: np.ndarray, spec: MaskSpec) -> set[tuple[int, int, int]]:
    """Colours of one RGB mask that are not in ``spec``'s table, not a JPEG shift of one, and fill solid regions."""
    if rgb.ndim != 3 or not spec.color_table:
        return set()
    packed = (rgb[:, :, 0].astype(np.int32) << 16) | (rgb[:, :, 1].astype(np.int32) << 8) | rgb[:, :, 2].astype(np.int32)
    uniq, inverse = np.unique(packed.ravel(), return_inverse=True)
    counts = np.bincount(inverse.reshape(-1))
    table = {(r << 16) | (g << 8) | b for (r, g, b), _ in spec.color_table}
    cols = np.array([c for c, _ in spec.color_table], np.int64)
    solid = None
    found = set()
    for i, u in enumerate(uniq.tolist()):
        if u in table:
            continue
        rgb_u = np.array([(u >> 16) & 255, (u >> 8) & 255, u & 255])
        if np.sqrt(((cols - rgb_u) ** 2).sum(axis=1)).min() <= JPEG_SHIFT:
            continue
        if solid is None:
            solid = np.bincount(inverse.reshape(-1)[_interior(packed).ravel()], minlength=len(uniq))
        if solid[i] >= SOLID_PIXELS and solid[i] >= SOLID_SHARE * counts[i]:
            found.add(tuple(int(x) for x in rgb_u))
    return found


def _interior(packed: np.ndarray) -> np.ndarray:
    """Pixels whose four neighbours have their value (image borders count as different)."""
    inner = np.zeros(packed.shape, bool)
    if packed.shape[0] > 2 and packed.shape[1] > 2:
        c = packed[1:-1, 1:-1]
        inner[1:-1, 1:-1] = (c == packed[:-2, 1:-1]) & (c == packed[2:, 1:-1]) & (c == packed[1:-1, :-2]) & (c == packed[1:-1, 2:])
    return inner


def binarize(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """A binary mask file as 0/1, and the number of pixels that were neither off nor fully on.

    0/1 masks are read as they are; others are cut at half the full scale (128 for
    8-bit), so JPEG ringing around 0 and 255 is snapped and counted.
    """
    if raw.ndim == 3:
        raw = raw.max(axis=2)
    if raw.dtype == np.uint8 and raw.size:
        # OpenCV's SIMD kernels: several times faster than the numpy expressions below.
        top = int(cv2.minMaxLoc(raw)[1])
        if top <= 1:
            return raw.copy(), 0
        _, plane = cv2.threshold(raw, 127, 1, cv2.THRESH_BINARY)
        return plane, int(cv2.countNonZero(cv2.inRange(raw, 1, 254)))
    top = int(raw.max()) if raw.size else 0
    if top <= 1:
        return (raw > 0).astype(np.uint8), 0
    full = 255 if top <= 255 else (65535 if top <= 65535 else top)
    plane = (raw >= (full + 1) // 2).astype(np.uint8)
    noise = int(raw.size - np.count_nonzero((raw == 0) | (raw == full)))
    return plane, noise

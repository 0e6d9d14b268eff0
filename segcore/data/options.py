"""Import options: how one dataset's files are read, as a typed, frozen settings object.

``ImportOptions.from_dict`` reads options given as data (a JSON object from
the dashboard, ``--option KEY=JSON`` on the command line, a dict in Python)
through the same strict reader as run settings (:func:`segcore.config.from_dict`):
an unknown key is an error that lists the valid ones, and every value is
checked here, with a message naming the option and what was expected.

Limits that protect the server (pixels per image, archive bytes and file
count, decoding threads) are not import options: they are server settings
(:class:`segcore.workspace.ServerSettings`).

Paths among the options (``classes_file``, ``colors_file``, ``images_dir``,
``masks_dir``, ``annotations``) name files *inside* the imported data and are
resolved by :func:`segcore.data.paths.resolve_in_source`.

To add an option: add a field with its default and a check in
``__post_init__``; the readers take it by attribute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from segcore.config import from_dict, to_dict

ENCODINGS = ("auto", "binary", "index", "trimap", "color")
TRIMAP_BOUNDARIES = ("class", "ignore", "foreground")
IGNORE_LABELS = ("__ignore__", "_ignore_", "ignore", "void", "unlabelled", "unlabeled")
CLASS0 = ("auto", "background", "class")
FOLDER_ROLES = ("class", "fov", "annotator", "ignore")
# Keys that used to be import options and are now server settings.
SERVER_KEYS = {
    "max_pixels": "max_image_pixels",
    "max_bytes": "max_archive_bytes",
    "max_files": "max_archive_files",
    "workers": "import_workers",
}
_MAX_NAME = 200


@dataclass(frozen=True)
class ImportOptions:
    """How to read one dataset's files (all optional).

    ``classes``: class names, background first (index masks: in id order).
    ``classes_file`` / ``colors_file``: a class list (one name a line) or a
    colour table (JSON) *inside* the imported data. ``colors``: colour table,
    name -> (r, g, b), in class order. ``ignore``: mask values that are void.
    ``ignore_colors``: colours that are void. ``ignore_labels``: polygon
    labels that are void. ``invert``: binary masks whose bright value is the
    background. ``mask_encoding``: one of ``ENCODINGS``. ``trimap_boundary``:
    one of ``TRIMAP_BOUNDARIES``. ``merge``: class folder -> class.
    ``multilabel``: for class folders, True / False / None (when classes
    overlap). ``images_dir`` / ``masks_dir``: the paired folders, inside the
    data. ``annotations``: the COCO file, inside the data. ``default_label``:
    the class of unlabelled polygons. ``foreground``: the class name of
    folder-per-sample masks.

    ``class0``: what class 0 is, one of ``CLASS0``: ``"background"`` (left
    out of every mean: metrics, best checkpoint, health messages),
    ``"class"`` (a real class such as CamVid's Sky, counted in every mean),
    or ``"auto"`` (background when its name says so or the masks are binary,
    else a real class; the report says which was assumed). ``annotator``: the
    annotator whose masks to use when files carry annotator suffixes such as
    ``_1stHO`` / ``_2ndHO`` or ``_manual1`` / ``_manual2`` (default: the
    first). ``folder_roles``: for class-folder imports, folder -> one of
    ``FOLDER_ROLES``: ``class``; ``fov`` (a field-of-view mask: pixels outside
    it are void); ``annotator`` (another annotator's masks of a class: not
    used); ``ignore``. Folders not named are recognised by their contents.
    """

    classes: tuple[str, ...] = ()
    classes_file: str | None = None
    colors: tuple[tuple[str, tuple[int, int, int]], ...] = ()
    colors_file: str | None = None
    ignore: tuple[int, ...] = ()
    ignore_colors: tuple[tuple[int, int, int], ...] = ()
    ignore_labels: tuple[str, ...] = IGNORE_LABELS
    invert: bool = False
    mask_encoding: str = "auto"
    trimap_boundary: str = "class"
    merge: tuple[tuple[str, str], ...] = ()
    multilabel: bool | None = None
    images_dir: str | None = None
    masks_dir: str | None = None
    annotations: str | None = None
    default_label: str = "foreground"
    foreground: str = "foreground"
    class0: str = "auto"
    annotator: str | None = None
    folder_roles: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        put("classes", _names("classes", self.classes))
        put("ignore_labels", _names("ignore_labels", self.ignore_labels))
        put("colors", parse_colors(self.colors))
        put("ignore", tuple(_int(f"ignore[{i}]", v, 0, 65535) for i, v in enumerate(_seq("ignore", self.ignore))))
        put("ignore_colors", tuple(_rgb(f"ignore_colors[{i}]", c) for i, c in enumerate(_seq("ignore_colors", self.ignore_colors))))
        put("merge", _pairs("merge", self.merge))
        for name in ("invert",):
            _bool(name, getattr(self, name))
        if self.multilabel is not None:
            _bool("multilabel", self.multilabel)
        _choice("mask_encoding", self.mask_encoding, ENCODINGS)
        _choice("trimap_boundary", self.trimap_boundary, TRIMAP_BOUNDARIES)
        _choice("class0", self.class0, CLASS0)
        put("folder_roles", _pairs("folder_roles", self.folder_roles))
        for folder, role in self.folder_roles:
            _choice(f"folder_roles[{folder!r}]", role, FOLDER_ROLES)
        for name in ("classes_file", "colors_file", "images_dir", "masks_dir", "annotations", "annotator"):
            value = getattr(self, name)
            if value is not None:
                _text(name, value)
        for name in ("default_label", "foreground"):
            _text(name, getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """Every option as plain JSON-ready data (``from_dict`` reads it back)."""
        return to_dict(self)

    def changed(self) -> dict[str, Any]:
        """Only the options that differ from their defaults (what a dataset records)."""
        default = ImportOptions()
        return {k: v for k, v in self.to_dict().items() if v != to_dict(getattr(default, k))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ImportOptions":
        """Read options given as data.

        Raises:
            ValueError: for an unknown key (listing the valid ones), a server
                setting given as an import option, or a value of the wrong kind.
        """
        data = {} if data is None else data
        if isinstance(data, Mapping):
            moved = sorted(k for k in data if k in SERVER_KEYS)
            if moved:
                raise ValueError(
                    f"import option(s) {moved} are server settings, not import options: set "
                    f"{[SERVER_KEYS[k] for k in moved]} in the workspace's server.json (see docs/security.md)"
                )
        try:
            return from_dict(cls, data)
        except TypeError as exc:  # defensive: a value the dataclass itself rejected
            raise ValueError(f"import options: {exc}") from None

    @staticmethod
    def names() -> list[str]:
        return [f.name for f in dataclasses.fields(ImportOptions)]


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


# How to give each option a message may advise, in the words of both places a message is read:
# (the Data page's field and its value, the command line's flag).
_PLACES = {
    "ignore": lambda v: (f'"Void mask values" {v}', f"--ignore {v}"),
    "invert": lambda v: ('"Invert binary masks" ticked', "--option invert=true"),
    "class0": lambda v: ('"Class 0 is" ' + ("a real class" if v == "class" else "the background"), f"--class0 {v}"),
    "layout": lambda v: (f'"Layout" {v}', f"--layout {v}"),
    "merge": lambda v: ("\"Other options (JSON)\" " + _json({"merge": dict(v)}), " ".join(f"--merge {a}={b}" for a, b in dict(v).items())),
    "on_exists": lambda v: ('"New version if the name exists" ticked', "--version"),
}


def option_hint(option: str, value: Any = True) -> str:
    """How to set import option ``option`` to ``value``, for a message read on the Data page or the command line.

    Returns:
        e.g. ``"Void mask values" 11 on the Data page, --ignore 11 on the command line``.

    Raises:
        KeyError: naming the options there is a hint for.
    """
    if option not in _PLACES:
        raise KeyError(f"no hint for import option {option!r}; there are hints for {sorted(_PLACES)}")
    form, flag = _PLACES[option](value)
    return f"{form} on the Data page, {flag} on the command line"


def as_options(options: "ImportOptions | Mapping[str, Any] | None") -> ImportOptions:
    """``options`` as :class:`ImportOptions` (a mapping is read strictly)."""
    if isinstance(options, ImportOptions):
        return options
    return ImportOptions.from_dict(options)


def parse_colors(colors: Any, what: str = "import option colors") -> tuple[tuple[str, tuple[int, int, int]], ...]:
    """A colour table as ``((name, (r, g, b)), ...)``.

    Accepted: ``{name: [r, g, b]}``, ``{name: "#rrggbb"}``, ``[{"name": n,
    "color": c}, ...]``, ``[[r, g, b], ...]`` (names ``class_0``, ...) and
    ``[[name, [r, g, b]], ...]`` (what ``to_dict`` writes).
    """
    if colors is None or colors == () or colors == []:
        return ()
    if isinstance(colors, Mapping):
        items = list(colors.items())
    elif isinstance(colors, (list, tuple)):
        items = []
        for i, c in enumerate(colors):
            if isinstance(c, Mapping):
                if "color" not in c:
                    raise ValueError(f"{what}[{i}] is {dict(c)!r}; expected {{'name': ..., 'color': [r, g, b]}}")
                items.append((c.get("name", f"class_{i}"), c["color"]))
            elif isinstance(c, (list, tuple)) and len(c) == 2 and isinstance(c[0], str):
                items.append((c[0], c[1]))
            else:
                items.append((f"class_{i}", c))
    else:
        raise ValueError(f"{what} is {type(colors).__name__}; expected a colour table such as {{\"road\": [128, 64, 128]}}")
    out = []
    for name, c in items:
        out.append((_text(f"{what} class name", name), _rgb(f"{what}[{name!r}]", c)))
    _unique(what, [n for n, _ in out])
    by_color: dict[tuple[int, int, int], str] = {}
    for n, c in out:
        if c in by_color:
            raise ValueError(
                f"{what} gives {by_color[c]!r} and {n!r} the same colour {list(c)}; a mask pixel of that colour "
                "could be either. Give each class its own colour"
            )
        by_color[c] = n
    return tuple(out)


# --------------------------------------------------------------------------- checks


def _seq(name: str, value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(value, (str, bytes, Mapping)):
        raise ValueError(f"import option {name} is {value!r}; expected a list")
    return (value,)  # one value for a list of one


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError(f"import option {name} is {value!r}; expected a list of names, e.g. [\"background\", \"cell\"]")
    names = tuple(_text(f"{name}[{i}]", v) for i, v in enumerate(_seq(name, value)))
    _unique(name, names)
    return names


def _unique(name: str, names) -> None:
    """Refuse a class named twice: its pixels could only go to one of the two."""
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ValueError(f"import option {name} names {n!r} twice (positions {seen[n]} and {i}); each class is named once")
        seen[n] = i


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME or any(ord(ch) < 32 for ch in value):
        raise ValueError(f"import option {name} is {value!r}; expected a non-empty text of at most {_MAX_NAME} printable characters")
    return value


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"import option {name} is {value!r}; expected an integer from {lo} to {hi}")
    return int(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"import option {name} is {value!r}; expected true or false")
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"import option {name} is {value!r}; expected one of {list(choices)}")
    return value


def _rgb(name: str, value: Any) -> tuple[int, int, int]:
    if isinstance(value, str):
        text = value.lstrip("#")
        try:
            if len(text) != 6:
                raise ValueError
            return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
        except ValueError:
            raise ValueError(f"{name} is {value!r}; expected [r, g, b] with values 0..255 or \"#rrggbb\"") from None
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"{name} is {value!r}; expected [r, g, b] with values 0..255 or \"#rrggbb\"")
    return tuple(_int(name, v, 0, 255) for v in value)  # type: ignore[return-value]


def _pairs(name: str, value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    items = list(value.items()) if isinstance(value, Mapping) else list(_seq(name, value))
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"import option {name}[{i}] is {item!r}; expected {{\"folder\": \"value\"}} pairs")
        out.append((_text(f"{name} folder", item[0]), _text(f"{name}[{item[0]!r}]", item[1])))
    return tuple(out)


def form_options(
    *,
    classes_text: str = "",
    colors_text: str = "",
    ignore_text: str = "",
    mask_encoding: str = "auto",
    invert: bool = False,
    multilabel: bool | None = None,
    class0: str = "auto",
    extra_text: str = "",
) -> ImportOptions:
    """Import options from the dashboard's form: typed text, never a server path.

    Args:
        classes_text: class names, one a line (or comma separated), background first.
        colors_text: a colour table as JSON, e.g. ``{"road": [128, 64, 128]}``.
        ignore_text: void mask values, comma separated.
        mask_encoding: one of ``ENCODINGS``.
        invert: binary masks whose bright value is the background.
        multilabel: for class folders (None: when classes overlap).
        class0: what class 0 is, one of ``CLASS0``.
        extra_text: more options as a JSON object, read strictly.

    Raises:
        ValueError: naming the form field and what was expected.
    """
    import json

    data: dict[str, Any] = {}
    if extra_text.strip():
        try:
            data = json.loads(extra_text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Other options: not valid JSON ({exc}); expected an object such as {{\"invert\": true}}") from None
        if not isinstance(data, dict):
            raise ValueError(f"Other options: got a JSON {type(data).__name__}; expected an object such as {{\"invert\": true}}")
    typed: dict[str, Any] = {}
    if classes_text.strip():
        lines = [x.strip() for x in classes_text.splitlines() if x.strip()]
        typed["classes"] = [x.strip() for x in lines[0].split(",") if x.strip()] if len(lines) == 1 else lines
    if colors_text.strip():
        try:
            typed["colors"] = parse_colors(json.loads(colors_text), "colour table")
        except json.JSONDecodeError as exc:
            raise ValueError(f"Colour table: not valid JSON ({exc}); expected e.g. {{\"road\": [128, 64, 128]}}") from None
    if ignore_text.strip():
        values = []
        for part in ignore_text.replace(";", ",").split(","):
            part = part.strip()
            if part:
                try:
                    values.append(int(part))
                except ValueError:
                    raise ValueError(f"Void values: {part!r} is not a whole number; expected e.g. 255 or 11, 255") from None
        typed["ignore"] = values
    if mask_encoding != "auto":
        typed["mask_encoding"] = mask_encoding
    if invert:
        typed["invert"] = True
    if multilabel is not None:
        typed["multilabel"] = multilabel
    if class0 != "auto":
        typed["class0"] = class0
    both = sorted(set(typed) & set(data))
    if both:
        raise ValueError(f"Other options: {both} are also set by the form fields above; give each option once")
    return ImportOptions.from_dict({**data, **typed})

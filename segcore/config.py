"""Settings as data: frozen dataclasses for model, augmentation, split and training.

A run folder stores ``RunConfig.to_dict()`` as ``config.json``;
``RunConfig.from_dict`` reads it back exactly. Unknown keys are an error that
names them, so a typo in a config file is never silently ignored.

Every setting is checked here, once, when the settings object is built: its
type (``"no"`` is not a boolean, ``3.0`` is not a whole number), its range,
names from the registries, that a weights file exists, that the image size
fits the model, and a lower-bound memory estimate. The command line, the Train
page, config files and the sweep all build these objects, so they all refuse
the same values with the same message, before anything is queued. A bad value
raises ``SettingError`` (a ``ValueError``) naming the setting (``train.seed``),
the value received and what is expected.

Checks that depend on the machine (the weights file exists, the memory
estimate) are skipped for settings read back from a run folder
(``stored_settings``); ``check_machine`` runs them again where a run is
launched.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, TypeVar

from segcore.catalog import encoders as _encoders  # the catalog is beneath the settings: it imports neither Keras nor this module
from segcore.catalog import optim as _optim
from segcore.catalog.heads import MODES  # dataset modes, each with its own head (read from here by the data layer)

T = TypeVar("T")

ENCODERS = _encoders.names()  # "none" is the plain U-Net
NORMS = ("group", "batch", "none")
FITS = ("short_side", "squash", "native")  # how images of any shape meet the square model (TrainConfig.fit)
FREEZE_MODES = ("trainable", "frozen", "fine_tune")
DEPTHS = (3, 4, 5)
ACTIVATIONS = ("relu", "elu")
UPSAMPLING = ("transpose", "upsample")
OPTIMIZERS = _optim.optimizer_names()
LR_SCHEDULES = _optim.schedule_names()
# The loss settings, each with what it does: the names of segcore.losses' classes plus "auto" (that module
# refuses to import when the two differ; it imports Keras, which this module must not).
LOSS_HELP = {
    "auto": "Dice + cross-entropy of the head (a good default)",
    "dice": "soft Dice: robust to class imbalance",
    "bce": "binary cross-entropy per channel",
    "cce": "categorical cross-entropy (exclusive classes)",
    "weighted_cce": "cross-entropy weighted by the square root of inverse class frequency",
    "focal": "focal loss: down-weights easy pixels",
    "dice_ce": "Dice + cross-entropy",
    "jaccard": "soft IoU",
}
LOSSES = tuple(LOSS_HELP)
PRECISIONS = ("auto", "off", "float32", "on", "mixed_float16", "bfloat16", "mixed_bfloat16")
DISTRIBUTIONS = ("none", "mirrored", "data_parallel")
# "auto": the backend of the process that launches the run ($KERAS_BACKEND, else
# keras.json, else tensorflow), written into config.json at launch.
BACKENDS = ("auto", "tensorflow", "torch", "jax")
SPLIT_METHODS = ("random", "ids", "subset")
_IDS_OFF_PAGE = "id lists are given on the command line or in a config file; the page splits at random or by subset"

MAX_IMAGE_SIZE = 8192
MAX_SEED = 2**32 - 1
_BIG = 1_000_000

_machine_checks: contextvars.ContextVar[bool] = contextvars.ContextVar("segcore_machine_checks", default=True)


class SettingError(ValueError):
    """A setting with a value that cannot train; the message names the setting and what is expected."""

    def __init__(self, setting: str, value: Any, expected: str, message: str | None = None):
        self.setting = setting
        self.value = value
        self.expected = expected
        super().__init__(message or f"setting {setting} is {value!r}; expected {expected}")


@contextlib.contextmanager
def stored_settings() -> Iterator[None]:
    """Build settings read back from a run folder: machine-dependent checks are skipped."""
    token = _machine_checks.set(False)
    try:
        yield
    finally:
        _machine_checks.reset(token)


# -- what each setting is, declared once ---------------------------------------------------
#
# Every field of the settings below carries a ``Setting`` in its metadata (``setting(...)``): its help,
# its choices, its command-line flag and how the Train page shows it. The command line
# (``segcore.training.cli``) and the Train page (``app_pages/_settings_form.py``) are generated from it, so
# a new setting is one field here and the code that uses it. The values are still checked in each
# class's ``__post_init__``, the one place of validation.


@dataclass(frozen=True)
class Widget:
    """How the Train page shows a setting.

    ``kind``: ``"choice"`` (a drop-down of ``values``, else the setting's choices), ``"radio"``,
    ``"steps"`` (a slider over the ``values`` given), ``"slider"`` (``values`` = min, max, step),
    ``"number"`` (``values`` = min, max[, step]), ``"toggle"``, ``"checkbox"``, ``"text"``, ``"list"``
    (comma-separated text for a tuple of strings) or ``"file"`` (a choice of ``values`` or a path typed in).
    ``labels`` are the texts shown for values; ``none`` is the text shown for None (a setting whose None
    means a default), or, for a number, that 0 stands for None. ``width`` is its share of a row of 4;
    ``hint`` a text field's placeholder.
    """

    kind: str
    label: str
    key: str = ""  # the widget's session-state key; "" is "train_" + the field name
    values: tuple = ()
    labels: Mapping[Any, str] = field(default_factory=dict)
    none: str = ""
    width: float = 1.0
    hint: str = ""  # a text field's placeholder


@dataclass(frozen=True)
class Setting:
    """What one setting is, for the command line and the Train page (``dataclasses.field`` metadata).

    Args:
        help: one or two sentences: what it does.
        widget: how the Train page shows it, or None with ``no_widget`` saying why not.
        flag: its command-line flag; "" is ``--`` + the field name with dashes. A ``bool`` flag has its
            ``--no-`` twin. None: no flag, with ``no_flag`` saying why not.
        aliases: more names for the flag.
        choices: the values it takes, where it is a name from a list (checked in ``__post_init__``).
        advanced: shown under "Advanced settings" on the page.
        applies: ``"plain"`` (the plain U-Net's own), ``"pretrained"`` (a pretrained encoder's), or "" (both).
        enabled_by: ``(sibling field, values)``: the widget is greyed out unless the sibling has one of them.
        implies: ``((sibling field, value), ...)`` the flag also sets, unless the sibling's own flag is given.
        follows: a setting (dotted) whose value this one takes where that one is given and this one is not.
        switch: the flag takes no value and sets this one (``--freeze``: ``"frozen"``).
        parse: how the flag's text is read, where the field's type does not say (``"duration"``).
        repeat: the flag may be given several times, each adding to the list (``--tag``).
        metavar: the flag's placeholder in ``--help``.
        sweep: the encoder study takes it too (the study sets the encoder, its freezing and start itself).
    """

    help: str
    widget: Widget | None = None
    flag: str | None = ""
    aliases: tuple[str, ...] = ()
    choices: tuple = ()
    advanced: bool = False
    applies: str = ""
    enabled_by: tuple[str, tuple] | None = None
    implies: tuple[tuple[str, Any], ...] = ()
    follows: str = ""
    switch: Any = None
    parse: str = ""
    repeat: bool = False
    metavar: str | None = None
    sweep: bool = True
    no_flag: str = ""
    no_widget: str = ""


def setting(default: Any = dataclasses.MISSING, help: str = "", **meta: Any) -> Any:
    """A settings field with its ``Setting`` (see there for ``meta``)."""
    return field(default=default, metadata={"setting": Setting(help=help, **meta)})


@dataclass(frozen=True)
class Declared:
    """One setting found in a settings class: where it lives, its type and default, and its ``Setting``."""

    path: str  # dotted, as errors name it: "train.augment.zoom"
    name: str  # the field's name
    owner: type
    annotation: str
    default: Any
    meta: Setting

    @property
    def flag(self) -> str | None:
        if self.meta.flag is None:
            return None
        return self.meta.flag or "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str | None:
        """The ``argparse`` attribute the flag fills (argparse's own rule: the flag without dashes)."""
        return None if self.flag is None else self.flag.lstrip("-").replace("-", "_")

    @property
    def key(self) -> str | None:
        """The Train page widget's session-state key."""
        w = self.meta.widget
        return None if w is None else (w.key or "train_" + self.name)

    @property
    def is_bool(self) -> bool:
        return self.annotation == "bool"


def nested_class(f: dataclasses.Field) -> type | None:
    """The settings class a field holds, where it holds one (``train``, ``train.augment``...), else None."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


def declared(root: type | None = None) -> list[Declared]:
    """Every setting of ``root`` (default ``RunConfig``) and the settings it holds, in field order.

    Raises:
        TypeError: for a field without its ``Setting`` (every setting says what it is, or why it is not
            on the command line or the page).
    """
    root = root or RunConfig
    out: list[Declared] = []

    def walk(cls: type, prefix: str) -> None:
        defaults = cls()
        for f in dataclasses.fields(cls):
            inner = nested_class(f)
            if inner is not None:
                walk(inner, prefix + f.name + ".")
                continue
            meta = f.metadata.get("setting")
            if not isinstance(meta, Setting):
                raise TypeError(f"setting {prefix}{f.name} of {cls.__name__} has no Setting in its metadata; "
                                "declare it with config.setting(default, help=..., ...)")
            if meta.flag is None and not meta.no_flag:
                raise TypeError(f"setting {prefix}{f.name} has no flag and no reason (no_flag)")
            if meta.widget is None and not meta.no_widget:
                raise TypeError(f"setting {prefix}{f.name} has no widget and no reason (no_widget)")
            out.append(Declared(prefix + f.name, f.name, cls, str(f.type), getattr(defaults, f.name), meta))

    walk(root, "")
    return out


def defaults(root: type | None = None) -> dict[str, Any]:
    """Every setting's default, by dotted path."""
    return {d.path: d.default for d in declared(root)}


def _by_head(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Dotted ``values`` split into a class's own settings and, per field holding settings, theirs."""
    own: dict[str, Any] = {}
    inner: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            inner.setdefault(head, {})[rest] = value
        else:
            own[head] = value
    return own, inner


def with_settings(obj: T, values: Mapping[str, Any]) -> T:
    """``obj`` (a settings object) with the settings at the dotted paths of ``values`` replaced, checked.

    A class's own settings are replaced before those of the settings it holds, so a bad ``train.seed``
    is named before the ``train.split.seed`` that follows it.
    """
    own, inner = _by_head(values)
    out = dataclasses.replace(obj, **own) if own else obj
    if inner:
        out = dataclasses.replace(out, **{name: with_settings(getattr(out, name), sub) for name, sub in inner.items()})
    return out


def build(root: type[T], values: Mapping[str, Any]) -> T:
    """A settings object of class ``root`` from the dotted ``values`` given (the rest their defaults), checked."""
    own, inner = _by_head(values)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(root):
        cls = nested_class(f)
        if cls is not None and f.name in inner:
            kwargs[f.name] = build(cls, inner[f.name])
        elif f.name in own:
            kwargs[f.name] = own[f.name]
    return root(**kwargs)


# -- field checks (each returns the value to store) ---------------------------------------


def _bool(setting: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingError(setting, value, "true or false (a boolean, not a string or number)")
    return value


def _int(setting: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= int(value) <= hi:
        raise SettingError(setting, value, f"a whole number from {lo} to {hi}")
    return int(value)


def _float(setting: str, value: Any, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        if hi == math.inf:
            raise SettingError(setting, value, f"a finite number {'>' if lo_open else '>='} {lo:g}")
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise SettingError(setting, value, f"a finite number in {left}{lo:g}, {hi:g}{right}")
    return float(value)


def _choice(setting: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise SettingError(setting, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def _devices(setting: str, value: Any) -> int | str:
    if value == "all" or (isinstance(value, numbers.Integral) and not isinstance(value, bool) and 1 <= int(value) <= 1024):
        return value if value == "all" else int(value)
    raise SettingError(setting, value, "\"all\" or a whole number of devices from 1 to 1024")


def _text(setting: str, value: Any, max_len: int = 200) -> str:
    if not isinstance(value, str) or len(value) > max_len or any(ch in value for ch in "\n\r\x00"):
        raise SettingError(setting, value, f"text of at most {max_len} characters on one line")
    return value


def _texts(setting: str, value: Any, *, numbers_ok: bool = False) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise SettingError(setting, value, "a list of strings")
    out = []
    for item in value:
        if numbers_ok and isinstance(item, numbers.Integral) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item or "\n" in item:
            raise SettingError(setting, value, "a list of non-empty strings")
        out.append(item)
    return tuple(out)


def _name(setting: str, value: Any) -> str:
    from segcore.fsutil import check_name

    try:
        return check_name(value, setting)
    except ValueError:
        raise SettingError(setting, value, "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit") from None


def _set(obj: Any, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)


# -- the settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """What network to build.

    ``encoder="none"`` is the plain U-Net (depth, filters, dropout, activation,
    norm and upsampling apply); otherwise a ``keras.applications``
    encoder with a U-Net decoder. ``weights`` is ``"none"``, ``"imagenet"`` or a
    path to a weights file. ``freeze`` is ``"trainable"``, ``"frozen"`` or
    ``"fine_tune"`` (frozen for ``fine_tune_after`` epochs, then trainable at
    ``learning_rate * fine_tune_lr_factor``). ``init_from_run`` starts the
    model from an earlier run's weights (layers matched by name and shape).

    ``norm`` is the normalisation after each convolution of the U-Net's own
    blocks (one of ``NORMS``): ``"group"`` (group normalisation, the default:
    the same in training and inference, so it works with 20 images and 3
    steps an epoch), ``"batch"`` (batch normalisation; its moving averages
    need many steps, so the health check compares training- and
    inference-mode predictions), or ``"none"``. Settings written before
    ``norm`` existed hold ``batch_norm`` instead; ``from_dict`` reads it as
    ``norm`` (True: ``"batch"``, False: ``"none"``).
    """

    encoder: str = setting("none", "'none' is the plain U-Net; the others are pretrained keras.applications encoders",
                           choices=ENCODERS, sweep=False,
                           widget=Widget("choice", "Encoder", labels={n: _encoders.get(n).label for n in ENCODERS}))
    depth: int = setting(4, "resolution levels of the plain U-Net", choices=DEPTHS, applies="plain",
                         widget=Widget("steps", "Depth", values=DEPTHS))
    filters: int = setting(16, "filters of the plain U-Net's first level (doubled at each level down)", applies="plain",
                           widget=Widget("steps", "Base filters", values=(8, 16, 32, 64)))
    dropout: float = setting(0.0, "dropout rate in the plain U-Net's blocks", applies="plain",
                             widget=Widget("slider", "Dropout", values=(0.0, 0.5, 0.05)))
    activation: str = setting("relu", "activation after each convolution of the plain U-Net", choices=ACTIVATIONS,
                              applies="plain", widget=Widget("choice", "Activation"))
    norm: str = setting(
        "group", "normalisation after each convolution of the U-Net's blocks (a pretrained encoder's decoder; the "
        "encoder keeps its own): group norm trains and predicts alike, safe with a few dozen images; batch norm "
        "predicts with moving averages that need many steps to settle (the health check says when they lag)",
        choices=NORMS, widget=Widget("choice", "Normalisation", labels={
            "group": "group norm (safe with few images)", "batch": "batch norm (needs many steps)", "none": "none"}))
    upsampling: str = setting("transpose", "how the plain U-Net's decoder doubles the resolution", choices=UPSAMPLING,
                              applies="plain", widget=Widget("choice", "Decoder upsampling", labels={
                                  "transpose": "transposed convolution", "upsample": "upsampling + convolution"}))
    weights: str = setting("none", "none | imagenet | PATH to a weights file (.h5 of the encoder without top); ImageNet "
                           "weights must be in ~/.keras/models on a machine without internet access",
                           metavar="none|imagenet|PATH", applies="pretrained",
                           widget=Widget("file", "Weights", values=("none", "imagenet")))
    freeze: str = setting("trainable", "the pretrained encoder's layers: trainable, frozen, or frozen then fine-tuned "
                          "(--freeze keeps them frozen; --fine-tune-after N fine-tunes)", choices=FREEZE_MODES,
                          switch="frozen", applies="pretrained", sweep=False,
                          widget=Widget("choice", "Encoder layers", labels={
                              "trainable": "trainable", "frozen": "frozen", "fine_tune": "frozen, then fine-tuned"}))
    fine_tune_after: int = setting(0, "frozen for N epochs, then fine-tuned (with freeze 'fine_tune')", metavar="N",
                                   implies=(("freeze", "fine_tune"),), applies="pretrained", sweep=False,
                                   enabled_by=("freeze", ("fine_tune",)),
                                   widget=Widget("number", "Fine-tune after epoch", key="train_ft_after", values=(0, 500)))
    fine_tune_lr_factor: float = setting(0.1, "the learning rate of the fine-tuning epochs, as a factor of the first",
                                         applies="pretrained", advanced=True, metavar="F",
                                         enabled_by=("freeze", ("fine_tune",)),
                                         widget=Widget("number", "Fine-tuning rate factor", values=(0.001, 1.0, 0.01)))
    init_from_run: str | None = setting(None, "start from another run's weights (layers matched by name and shape; "
                                        "the head is new)", metavar="RUN", sweep=False,
                                        widget=Widget("choice", "Start from the weights of an earlier run (layers "
                                                      "matched by name and shape; the head is new)", key="train_init_from",
                                                      none="no: random initialisation", width=4))

    def __post_init__(self) -> None:
        p = "model."
        _set(
            self,
            encoder=_choice(p + "encoder", self.encoder, _encoders.names()),
            depth=_int(p + "depth", self.depth, DEPTHS[0], DEPTHS[-1]),
            filters=_int(p + "filters", self.filters, 1, 1024),
            dropout=_float(p + "dropout", self.dropout, 0.0, 1.0, hi_open=True),
            activation=_choice(p + "activation", self.activation, ACTIVATIONS),
            norm=_choice(p + "norm", self.norm, NORMS),
            upsampling=_choice(p + "upsampling", self.upsampling, UPSAMPLING),
            freeze=_choice(p + "freeze", self.freeze, FREEZE_MODES),
            fine_tune_after=_int(p + "fine_tune_after", self.fine_tune_after, 0, _BIG),
            fine_tune_lr_factor=_float(p + "fine_tune_lr_factor", self.fine_tune_lr_factor, 0.0, 1.0, lo_open=True),
        )
        if self.init_from_run is not None:
            _set(self, init_from_run=_name(p + "init_from_run", self.init_from_run))
        if not isinstance(self.weights, str) or not self.weights.strip():
            raise SettingError(p + "weights", self.weights, "'none', 'imagenet' or the path of a weights file")
        spec = _encoders.get(self.encoder)
        if not spec.pretrained:
            if self.weights == "imagenet":
                raise SettingError(p + "weights", self.weights, "'none' or a weights file: ImageNet weights need a "
                                   f"pretrained encoder (model.encoder one of {', '.join(_encoders.pretrained_names())})")
            if self.freeze != "trainable":
                raise SettingError(p + "freeze", self.freeze, f"'trainable' for the {spec.label} (model.encoder "
                                   f"{spec.name!r}); freezing needs a pretrained encoder")
        if self.freeze == "fine_tune" and self.fine_tune_after < 1:
            raise SettingError(p + "fine_tune_after", self.fine_tune_after,
                               "at least 1 with model.freeze 'fine_tune' (epochs trained frozen before fine-tuning)")
        if self.weights not in ("none", "imagenet") and _machine_checks.get():
            path = Path(self.weights).expanduser()
            if not path.is_file():
                raise SettingError(p + "weights", self.weights,
                                   f"'none', 'imagenet' or the path of a weights file; {path} does not exist")


@dataclass(frozen=True)
class AugmentConfig:
    """Joint image and mask augmentation, applied to training batches only."""

    enabled: bool = setting(True, "augment the training images (--no-augment: train on them as they are)",
                            flag="--augment", widget=Widget("toggle", "Augment training images", key="train_aug"))
    hflip: bool = setting(True, "random horizontal flips", enabled_by=("enabled", (True,)),
                          widget=Widget("checkbox", "Horizontal flips"))
    vflip: bool = setting(True, "random vertical flips", enabled_by=("enabled", (True,)),
                          widget=Widget("checkbox", "Vertical flips"))
    transpose: bool = setting(False, "random transposition of square windows (rows for columns: a quarter turn and "
                              "a flip), for data with no up, down, left or right, such as microscopy",
                              enabled_by=("enabled", (True,)), widget=Widget("checkbox", "Transpositions"))
    rotate_degrees: float = setting(15.0, "random rotation of up to this many degrees either way",
                                    metavar="DEGREES", enabled_by=("enabled", (True,)),
                                    widget=Widget("slider", "Rotation (°)", key="train_rotate", values=(0.0, 90.0, 5.0)))
    zoom: float = setting(0.1, "random scale drawn from [1 - zoom, 1 + zoom]: zoom in and out",
                          enabled_by=("enabled", (True,)), widget=Widget("slider", "Zoom", values=(0.0, 0.5, 0.05)))
    shift: float = setting(0.05, "random shift, as a fraction of the image size", enabled_by=("enabled", (True,)),
                           widget=Widget("slider", "Shift", values=(0.0, 0.3, 0.05)))
    brightness: float = setting(0.1, "random brightness change, as a fraction", enabled_by=("enabled", (True,)),
                                widget=Widget("slider", "Brightness", values=(0.0, 0.5, 0.05)))
    contrast: float = setting(0.1, "random contrast change, as a fraction", enabled_by=("enabled", (True,)),
                              widget=Widget("slider", "Contrast", values=(0.0, 0.5, 0.05)))

    def __post_init__(self) -> None:
        p = "train.augment."
        _set(
            self,
            enabled=_bool(p + "enabled", self.enabled),
            hflip=_bool(p + "hflip", self.hflip),
            vflip=_bool(p + "vflip", self.vflip),
            transpose=_bool(p + "transpose", self.transpose),
            rotate_degrees=_float(p + "rotate_degrees", self.rotate_degrees, 0.0, 180.0),
            zoom=_float(p + "zoom", self.zoom, 0.0, 1.0, hi_open=True),
            shift=_float(p + "shift", self.shift, 0.0, 0.5),
            brightness=_float(p + "brightness", self.brightness, 0.0, 1.0),
            contrast=_float(p + "contrast", self.contrast, 0.0, 1.0),
        )


@dataclass(frozen=True)
class SplitConfig:
    """How samples are split into train, validation and test.

    ``method="random"``: seeded random ratios. ``method="ids"``: explicit id
    lists; entries may be ranges such as ``"1-27"`` over numeric ids.
    ``method="subset"``: the dataset's own train/test folders (validation is
    drawn from train with ``val_fraction``).
    """

    method: str = setting("random", "split method: random ratios, ids (the id lists), or subset (the dataset's own "
                          "train/test folders)", choices=SPLIT_METHODS, flag="--split",
                          widget=Widget("choice", "Split", key="train_split"))
    val_fraction: float = setting(0.15, "share of the images held out for validation",
                                  widget=Widget("slider", "Validation fraction", key="train_val", values=(0.05, 0.5, 0.05)))
    test_fraction: float = setting(0.15, "share of the images held out for the test (not used by 'subset': its test "
                                   "images are the dataset's test folder)", enabled_by=("method", ("random", "ids")),
                                   widget=Widget("slider", "Test fraction", key="train_test", values=(0.0, 0.5, 0.05)))
    seed: int = setting(0, "the split's random seed", follows="train.seed",
                        flag=None, no_flag="the split is drawn with the training seed (--seed)",
                        no_widget="the split is drawn with the training seed (Seed)")
    train_ids: tuple[str, ...] = setting((), "comma-separated ids or ranges, e.g. 1-27 (split ids)", metavar="IDS",
                                         implies=(("method", "ids"),), no_widget=_IDS_OFF_PAGE)
    val_ids: tuple[str, ...] = setting((), "comma-separated ids or ranges", metavar="IDS", implies=(("method", "ids"),),
                                       no_widget=_IDS_OFF_PAGE)
    test_ids: tuple[str, ...] = setting((), "comma-separated ids or ranges", metavar="IDS", implies=(("method", "ids"),),
                                        no_widget=_IDS_OFF_PAGE)

    def __post_init__(self) -> None:
        p = "train.split."
        _set(
            self,
            method=_choice(p + "method", self.method, SPLIT_METHODS),
            val_fraction=_float(p + "val_fraction", self.val_fraction, 0.0, 1.0, hi_open=True),
            test_fraction=_float(p + "test_fraction", self.test_fraction, 0.0, 1.0, hi_open=True),
            seed=_int(p + "seed", self.seed, 0, MAX_SEED),
            train_ids=_texts(p + "train_ids", self.train_ids, numbers_ok=True),
            val_ids=_texts(p + "val_ids", self.val_ids, numbers_ok=True),
            test_ids=_texts(p + "test_ids", self.test_ids, numbers_ok=True),
        )
        if self.val_fraction + self.test_fraction >= 1.0:
            raise SettingError(p + "val_fraction", self.val_fraction,
                               f"a fraction that with train.split.test_fraction {self.test_fraction:g} sums to less than 1 "
                               f"({self.val_fraction:g} + {self.test_fraction:g} leaves no training data)")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: data, optimisation, stopping, precision, backend and devices.

    ``fit``: how images of any shape meet the square ``image_size`` model.
    ``"short_side"`` (default) keeps the aspect ratio: each image is scaled
    so that its shorter side is ``image_size``; training takes a random
    ``image_size`` window of it every epoch, and evaluation and prediction
    slide the model over the whole image in overlapping windows. Square
    images are used whole, as before. ``"squash"`` resizes every image to
    ``image_size`` x ``image_size``. ``"native"`` keeps every image at its
    own resolution: training takes random ``image_size`` patches (a share of
    them centred on rarer classes), and evaluation and prediction slide the
    model over the whole image at scale 1; thin structures keep their pixels.

    ``tta``: test-time augmentation: evaluation and prediction average the
    predictions of the image and its flips along the axes training flipped
    (``augment.hflip``, ``augment.vflip``): up to 4x the inference time, and
    no view the model never saw.

    ``patches_per_image``: an epoch draws this many random windows of each
    training image (with ``short_side`` or ``native``), so a few large images
    make an epoch long enough to be worth its validation and checkpoint.

    ``budget_minutes``: a time budget for training (from the first step to
    the last epoch; the test evaluation comes after it). After every epoch
    the run estimates how many more epochs fit, never more than ``epochs``,
    and stops there; the learning-rate schedule follows that estimate, so a
    cosine schedule ends at the budget. None: ``epochs`` decides alone.

    ``learning_rate`` None (the default) is the encoder's own starting rate
    (``EncoderSpec.learning_rate``: 1e-3 for the plain U-Net trained from
    scratch, 1e-4 for a pretrained encoder); ``RunConfig.learning_rate``
    resolves it, and a launched run's ``config.json`` holds the number.

    ``devices``: how many devices (GPUs; logical devices on a CPU) one run
    spreads its batches over, or ``"all"``. ``batch_size`` is per device, so
    the global batch is ``batch_size x devices``. More than one device needs
    a ``distribution``; a run launched with ``distribution`` ``"none"`` gets
    its backend's own (``launcher.check_config``). The queue gives a run that
    many GPUs of one machine (the local engine) or of one Ray node.
    """

    dataset: str = setting("demo", "dataset name in the workspace", widget=Widget("choice", "Dataset"))
    image_size: int = setting(128, "the model's square window in pixels (training size); bigger is slower",
                              widget=Widget("steps", "Image size (px)", key="train_size",
                                            values=(32, 64, 96, 128, 160, 192, 224, 256, 384, 512), width=2))
    fit: str = setting(
        "short_side", "how images of any shape meet the square size. short_side: keep the aspect ratio (each image "
        "scaled so its shorter side is the image size; nothing is stretched), random windows in training, tiles in "
        "prediction; squash: resize every image to the square size; native: every image at its own resolution, "
        "random patches of the image size in training, tiles in prediction (thin structures keep their pixels)",
        choices=FITS, widget=Widget("radio", "Image shape", width=4, labels={
            "short_side": "keep the aspect ratio (random windows in training, tiles in prediction)",
            "squash": "squash to the square size",
            "native": "own resolution (patches of the image size in training, tiles in prediction)"}))
    tta: bool = setting(False, "test-time augmentation: evaluate and predict on the image and its flips along the "
                        "axes training flipped, averaged (up to 4x the inference time)", widget=Widget("toggle", "Test-time flips"))
    patches_per_image: int = setting(1, "random windows of each training image per epoch (short_side and native fits, "
                                     "when images are larger than the window)", metavar="N",
                                     widget=Widget("number", "Windows per image", key="train_patches", values=(1, 64)))
    budget_minutes: float | None = setting(
        None, "time budget for training, e.g. 10m, 90s, 1.5h (a bare number is minutes): the run fits as many epochs "
        "as the machine allows, at most the epochs, and the schedule (cosine) ends with the budget; none: the epochs "
        "decide", flag="--budget", parse="duration", metavar="TIME",
        widget=Widget("number", "Time budget (min; 0: none)", key="train_budget", values=(0.0, 10080.0, 1.0), none="0"))
    epochs: int = setting(20, "passes over the training images (with a budget: at most this many)",
                          widget=Widget("number", "Epochs", values=(1, 1000)))
    batch_size: int = setting(8, "images per training step, per device; lower it if memory runs out",
                              widget=Widget("number", "Batch size", key="train_batch", values=(1, 256)))
    optimizer: str = setting("adam", "the optimiser", choices=OPTIMIZERS, widget=Widget("choice", "Optimiser"))
    learning_rate: float | None = setting(
        None, "step size of the optimiser (default: the encoder's own, 1e-3 from scratch, 1e-4 pretrained): 1e-4 suits "
        "pretrained encoders, 1e-3 small models trained from scratch", flag="--lr", aliases=("--learning-rate",),
        widget=Widget("choice", "Learning rate", key="train_lr", values=(None, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                      none="the encoder's own", width=2))
    lr_schedule: str = setting("none", "learning-rate schedule: how the learning rate changes over the epochs; none "
                               "keeps it constant", choices=LR_SCHEDULES, widget=Widget("choice", "LR schedule"))
    loss: str = setting("auto", "what training minimises; Dice-based losses cope best with small objects",
                        choices=LOSSES, widget=Widget("choice", "Loss", labels={n: f"{n}: {h}" for n, h in LOSS_HELP.items()},
                                                      width=3))
    class_weighting: bool = setting(False, "weight the loss by the square root of inverse class frequency (helps rare classes)",
                                    widget=Widget("toggle", "Class weighting", key="train_class_weights", width=1.5))
    early_stopping_patience: int = setting(5, "early stopping: epochs without a lower validation loss before training "
                                           "stops (0: never stop early)", flag="--patience",
                                           widget=Widget("number", "Patience", key="train_patience", values=(0, 200)))
    seed: int = setting(0, "same seed and settings: same split, same augmentation, same starting weights",
                        widget=Widget("number", "Seed", values=(0, 2**31 - 1)))
    mixed_precision: str = setting("auto", "auto/on: float16 mixed precision on a GPU; bfloat16; off (never on a CPU)",
                                   choices=PRECISIONS, advanced=True, widget=Widget("choice", "Mixed precision"))
    distribution: str = setting("none", "how one run spreads its batches over several devices", choices=DISTRIBUTIONS,
                                advanced=True, widget=Widget("choice", "Distribution"))
    devices: int | str = setting(1, "devices one run spreads its batches over (data parallel; the batch size is per "
                                 "device)", metavar="all|N", advanced=True,
                                 widget=Widget("choice", "Devices", values=(1, 2, 4, 8, "all")))
    backend: str = setting("auto", "the Keras backend the run trains on; auto: the launching process's "
                           "(KERAS_BACKEND, else keras.json, else tensorflow)", choices=BACKENDS, advanced=True,
                           widget=Widget("choice", "Backend"))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        p = "train."
        _set(
            self,
            dataset=_name(p + "dataset", self.dataset),
            image_size=_int(p + "image_size", self.image_size, 16, MAX_IMAGE_SIZE),
            fit=_choice(p + "fit", self.fit, FITS),
            tta=_bool(p + "tta", self.tta),
            patches_per_image=_int(p + "patches_per_image", self.patches_per_image, 1, 1000),
            budget_minutes=None if self.budget_minutes is None else _float(
                p + "budget_minutes", self.budget_minutes, 0.0, 7 * 24 * 60.0, lo_open=True),
            epochs=_int(p + "epochs", self.epochs, 1, _BIG),
            batch_size=_int(p + "batch_size", self.batch_size, 1, 4096),
            optimizer=_choice(p + "optimizer", self.optimizer, OPTIMIZERS),
            learning_rate=None if self.learning_rate is None else _float(
                p + "learning_rate", self.learning_rate, 0.0, math.inf, lo_open=True),
            lr_schedule=_choice(p + "lr_schedule", self.lr_schedule, LR_SCHEDULES),
            loss=_choice(p + "loss", self.loss, LOSSES),
            class_weighting=_bool(p + "class_weighting", self.class_weighting),
            early_stopping_patience=_int(p + "early_stopping_patience", self.early_stopping_patience, 0, _BIG),
            seed=_int(p + "seed", self.seed, 0, MAX_SEED),
            mixed_precision=_choice(p + "mixed_precision", self.mixed_precision, PRECISIONS),
            distribution=_choice(p + "distribution", self.distribution, DISTRIBUTIONS),
            devices=_devices(p + "devices", self.devices),
            backend=_choice(p + "backend", self.backend, BACKENDS),
        )
        if not isinstance(self.augment, AugmentConfig):
            raise SettingError(p + "augment", self.augment, "augmentation settings (an AugmentConfig or a JSON object)")
        if not isinstance(self.split, SplitConfig):
            raise SettingError(p + "split", self.split, "split settings (a SplitConfig or a JSON object)")
        if self.loss == "weighted_cce" and not self.class_weighting:
            raise SettingError(p + "class_weighting", self.class_weighting, "true with train.loss 'weighted_cce' (it needs class weights)")
        if self.distribution == "mirrored" and self.backend not in ("auto", "tensorflow"):
            raise SettingError(p + "distribution", self.distribution, f"'none' or 'data_parallel' on the {self.backend} backend "
                               "('mirrored' is TensorFlow's MirroredStrategy)")
        if self.distribution == "data_parallel" and self.backend not in ("auto", "jax"):
            raise SettingError(p + "distribution", self.distribution, f"'none' on the {self.backend} backend "
                               "('data_parallel' is keras.distribution.DataParallel on JAX)")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, saved as ``config.json`` in its folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = setting("", "a name shown in the runs table", widget=Widget("text", "Run name (optional)", hint="e.g. baseline"))
    tags: tuple[str, ...] = setting((), "a tag (repeatable)", flag="--tag", repeat=True,
                                    widget=Widget("list", "Tags (comma separated)", hint="e.g. depth-study"))

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise SettingError("model", self.model, "model settings (a ModelConfig or a JSON object)")
        if not isinstance(self.train, TrainConfig):
            raise SettingError("train", self.train, "training settings (a TrainConfig or a JSON object)")
        _set(self, name=_text("name", self.name), tags=_texts("tags", self.tags))
        check_image_size(self.model, self.train.image_size)
        m, t = self.model, self.train
        if m.freeze == "fine_tune" and not m.fine_tune_after < t.epochs:
            raise SettingError("model.fine_tune_after", m.fine_tune_after,
                               f"a number of epochs from 1 to train.epochs - 1 ({t.epochs - 1}), so that some epochs "
                               "are frozen and some fine-tuned")
        if _machine_checks.get():
            check_memory(self)

    @property
    def learning_rate(self) -> float:
        """The learning rate the run starts from: ``train.learning_rate``, else the encoder's own."""
        if self.train.learning_rate is not None:
            return float(self.train.learning_rate)
        return float(_encoders.get(self.model.encoder).learning_rate)

    def resolved(self) -> "RunConfig":
        """These settings with every "the default" value made explicit (the learning rate), as a run stores them."""
        if self.train.learning_rate is not None:
            return self
        return dataclasses.replace(self, train=dataclasses.replace(self.train, learning_rate=self.learning_rate))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, stored: bool = False) -> "RunConfig":
        """Settings from JSON data; ``stored=True`` for data read back from a run folder (see ``stored_settings``)."""
        if not stored:
            return from_dict(cls, data)
        with stored_settings():
            return from_dict(cls, data)


# -- checks across settings ------------------------------------------------------------------


def check_image_size(model: ModelConfig, image_size: int) -> None:
    """Refuse an image size the model cannot take (depth of the U-Net, an encoder's reduction and minimum)."""
    spec = _encoders.get(model.encoder)
    step, smallest = spec.size_step(model.depth), spec.smallest_size(model.depth)
    if image_size >= smallest and image_size % step == 0:
        return
    if spec.reduction:
        raise SettingError("train.image_size", image_size,
                           f"a multiple of {step} and at least {smallest} to fit encoder {model.encoder!r}, "
                           f"e.g. {max(smallest, _nearest(image_size, step))}")
    raise SettingError("train.image_size", image_size,
                       f"a multiple of 2^depth = {step} (model.depth {model.depth}), e.g. {_nearest(image_size, step)}")


def _nearest(value: int, step: int) -> int:
    return max(step, int(round(value / step)) * step)


def activation_bytes(cfg: RunConfig) -> int:
    """A lower bound on the memory one training step holds for activations, in bytes.

    Per resolution level ``l`` of the encoder, six float32 tensors (two
    convolutions, each with normalisation and activation) of
    ``batch x (S / 2^l)^2 x channels_l``, with ``filters x 2^l`` channels for the
    plain U-Net and a 32-channel stem for the pretrained encoders; the decoder
    and the gradients come on top, so real use is several times higher.
    """
    t, m = cfg.train, cfg.model
    filters, depth = _encoders.get(m.encoder).memory_shape(m.depth, m.filters)
    values = sum(t.batch_size * (t.image_size / 2**level) ** 2 * filters * 2**level * 6 for level in range(depth + 1))
    return int(values * 4)


def machine_memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: RunConfig, extra_bytes: int = 0, what: str = "") -> None:
    """Refuse settings whose memory estimate (``activation_bytes`` + ``extra_bytes``) exceeds this machine's memory."""
    total = machine_memory_bytes()
    need = activation_bytes(cfg) + int(extra_bytes)
    if total is None or need <= total:
        return
    t = cfg.train
    gib = 1024**3
    raise SettingError(
        "train.image_size", t.image_size,
        f"a size whose training fits in memory: image size {t.image_size} with batch size {t.batch_size} needs at "
        f"least {need / gib:.1f} GiB ({what or 'activations of one training step'}), more than this machine's "
        f"{total / gib:.1f} GiB; lower train.image_size or train.batch_size",
    )


def check_machine(cfg: RunConfig) -> None:
    """Run the machine-dependent checks (weights file present, memory) on settings that may have skipped them."""
    token = _machine_checks.set(True)
    try:
        from_dict(RunConfig, to_dict(cfg))
    finally:
        _machine_checks.reset(token)


# -- JSON ----------------------------------------------------------------------------------


def to_dict(obj: Any) -> Any:
    """Convert a (nested) config dataclass to plain JSON-ready data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(x) for x in obj]
    return obj


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str | None = None) -> T:
    """Build config dataclass ``cls`` from ``data``, recursing into nested configs.

    ``prefix`` is the dotted place of ``cls`` in the settings (``train.augment.``) that errors name.
    ``model.batch_norm`` of settings written before ``model.norm`` existed is read as ``norm``
    (true: ``"batch"``, false: ``"none"``; it wins over a ``norm`` beside it, as it did then).

    Raises:
        SettingError: on keys ``cls`` does not have (naming them and the valid
            ones) and on any value the settings refuse.
    """
    if prefix is None:
        prefix = _PREFIX.get(cls.__name__, "")
    if not isinstance(data, Mapping):
        raise SettingError(prefix.rstrip(".") or "settings", data, f"a JSON object of {cls.__name__} settings")
    if issubclass(cls, ModelConfig) and "batch_norm" in data:
        data = _legacy_batch_norm(data, prefix)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SettingError(
            f"{prefix}{unknown[0]}", data[unknown[0]], f"one of {sorted(fields)}",
            message=f"unknown {cls.__name__} setting(s) {unknown} ({', '.join(prefix + k for k in unknown)}); "
            f"valid ones are {sorted(fields)}",
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        nested = nested_class(fields[name])
        kwargs[name] = from_dict(nested, value, f"{prefix}{name}.") if nested is not None else value
    return cls(**kwargs)


_PREFIX = {"ModelConfig": "model.", "TrainConfig": "train.", "AugmentConfig": "train.augment.", "SplitConfig": "train.split."}


def _legacy_batch_norm(data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``model.batch_norm`` (settings from before ``model.norm``) as ``norm``; null (written later, unset) is dropped."""
    out = dict(data)
    value = out.pop("batch_norm")
    if value is not None:
        out["norm"] = "batch" if _bool(prefix + "batch_norm", value) else "none"
    return out

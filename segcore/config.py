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
from segcore.catalog.heads import MODES  # dataset modes, each with its own head

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
    "weighted_cce": "cross-entropy weighted by inverse class frequency",
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
    inference-mode predictions), or ``"none"``. ``batch_norm`` is read from
    settings written before ``norm`` existed (True: ``"batch"``, False:
    ``"none"``) and wins over ``norm`` when set.
    """

    encoder: str = "none"
    depth: int = 4
    filters: int = 16
    dropout: float = 0.0
    activation: str = "relu"
    norm: str = "group"
    batch_norm: bool | None = None
    upsampling: str = "transpose"
    weights: str = "none"
    freeze: str = "trainable"
    fine_tune_after: int = 0
    fine_tune_lr_factor: float = 0.1
    init_from_run: str | None = None

    @property
    def normalization(self) -> str:
        """The normalisation in effect: ``batch_norm`` from older settings, else ``norm``."""
        if self.batch_norm is not None:
            return "batch" if self.batch_norm else "none"
        return self.norm

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
            batch_norm=None if self.batch_norm is None else _bool(p + "batch_norm", self.batch_norm),
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

    enabled: bool = True
    hflip: bool = True
    vflip: bool = True
    rotate_degrees: float = 15.0
    zoom: float = 0.1  # scale drawn from [1 - zoom, 1 + zoom]: zoom in and out
    shift: float = 0.05  # fraction of the image size
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        p = "train.augment."
        _set(
            self,
            enabled=_bool(p + "enabled", self.enabled),
            hflip=_bool(p + "hflip", self.hflip),
            vflip=_bool(p + "vflip", self.vflip),
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

    method: str = "random"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    train_ids: tuple[str, ...] = ()
    val_ids: tuple[str, ...] = ()
    test_ids: tuple[str, ...] = ()

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
    predictions of the image and its three flips (4x the inference time).

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

    dataset: str = "demo"
    image_size: int = 128
    fit: str = "short_side"
    tta: bool = False
    patches_per_image: int = 1
    budget_minutes: float | None = None
    epochs: int = 20
    batch_size: int = 8
    optimizer: str = "adam"
    learning_rate: float | None = None
    lr_schedule: str = "none"
    loss: str = "auto"
    class_weighting: bool = False
    early_stopping_patience: int = 5
    seed: int = 0
    mixed_precision: str = "auto"
    distribution: str = "none"
    devices: int | str = 1
    backend: str = "auto"
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
    name: str = ""
    tags: tuple[str, ...] = ()

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


_PREFIX = {"RunConfig": "", "ModelConfig": "model.", "TrainConfig": "train.", "AugmentConfig": "train.augment.",
           "SplitConfig": "train.split."}


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build config dataclass ``cls`` from ``data``, recursing into nested configs.

    Raises:
        SettingError: on keys ``cls`` does not have (naming them and the valid
            ones) and on any value the settings refuse.
    """
    prefix = _PREFIX.get(cls.__name__, "")
    if not isinstance(data, Mapping):
        raise SettingError(prefix.rstrip(".") or "settings", data, f"a JSON object of {cls.__name__} settings")
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
        nested = _NESTED.get((cls.__name__, name))
        if nested is not None:
            kwargs[name] = from_dict(nested, value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


_NESTED: dict[tuple[str, str], type] = {
    ("RunConfig", "model"): ModelConfig,
    ("RunConfig", "train"): TrainConfig,
    ("TrainConfig", "augment"): AugmentConfig,
    ("TrainConfig", "split"): SplitConfig,
}

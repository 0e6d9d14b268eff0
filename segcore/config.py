"""Settings as data: frozen dataclasses for model, augmentation, split and training.

A run folder stores ``RunConfig.to_dict()`` as ``config.json``;
``RunConfig.from_dict`` reads it back exactly. Unknown keys are an error that
names them, so a typo in a config file is never silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

ENCODERS = ("none", "vgg16", "resnet50", "densenet121", "mobilenetv2")
NORMS = ("group", "batch", "none")
FREEZE_MODES = ("trainable", "frozen", "fine_tune")


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
    filters: int = 32
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


@dataclass(frozen=True)
class TrainConfig:
    """How to train: data, optimisation, stopping, precision and devices.

    ``fit``: how images of any shape meet the square ``image_size`` model.
    ``"short_side"`` (default) keeps the aspect ratio: each image is scaled
    so that its shorter side is ``image_size``; training takes a random
    ``image_size`` window of it every epoch, and evaluation and prediction
    slide the model over the whole image in overlapping windows. Square
    images are used whole, as before. ``"squash"`` resizes every image to
    ``image_size`` x ``image_size``.
    """

    dataset: str = "demo"
    image_size: int = 128
    fit: str = "short_side"
    epochs: int = 30
    batch_size: int = 8
    optimizer: str = "adam"
    learning_rate: float = 1e-4
    lr_schedule: str = "none"
    loss: str = "auto"
    class_weighting: bool = False
    early_stopping_patience: int = 5
    seed: int = 0
    mixed_precision: str = "auto"
    distribution: str = "none"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, saved as ``config.json`` in its folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = ""
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        return from_dict(cls, data)


def to_dict(obj: Any) -> Any:
    """Convert a (nested) config dataclass to plain JSON-ready data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(x) for x in obj]
    return obj


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build config dataclass ``cls`` from ``data``, recursing into nested configs.

    Raises:
        ValueError: on keys ``cls`` does not have, naming them and the valid ones.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__} expects a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}; valid ones are {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for name, value in data.items():
        nested = _NESTED.get((cls.__name__, name))
        if nested is not None:
            kwargs[name] = from_dict(nested, value)
        elif isinstance(value, list) and "tuple" in str(hints[name]):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


_NESTED: dict[tuple[str, str], type] = {
    ("RunConfig", "model"): ModelConfig,
    ("RunConfig", "train"): TrainConfig,
    ("TrainConfig", "augment"): AugmentConfig,
    ("TrainConfig", "split"): SplitConfig,
}

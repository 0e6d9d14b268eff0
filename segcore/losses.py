"""Segmentation losses: a pure function and a serializable Keras class for each.

Conventions (shared with the trainer and the metrics):

- ``y_true`` is float32 ``(B, H, W, C)`` with C = the head's channels: the
  foreground plane (binary), one-hot over K classes (multiclass) or K - 1
  label planes (multilabel).
- Void pixels have ``y_true = -1`` in every channel; every loss leaves them
  out (they add nothing to any sum, and are not counted in any mean).
- ``mode`` is ``"binary"``, ``"multiclass"`` or ``"multilabel"``: multiclass
  outputs are softmax probabilities, the others sigmoid probabilities.

Sums run over the whole batch and all pixels (one pooled Dice per channel,
not a mean of per-image Dice), which keeps the gradient stable on images where
a class is missing. Look a loss up by name with ``get("dice", mode=...)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from segcore.config import LOSSES
from segcore.catalog.heads import MODES

EPSILON = 1e-7
AUTO_LOSS = "dice_ce"


def _prepare(y_true, y_pred, mode: str):
    """Cast, check shapes, and split off the valid-pixel mask (B, H, W, 1)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes are {list(MODES)}")
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    t_ch, p_ch = y_true.shape[-1], y_pred.shape[-1]
    if t_ch is not None and p_ch is not None and t_ch != p_ch:
        raise ValueError(
            f"mask and head do not match: y_true has {t_ch} channel(s), the model outputs {p_ch} "
            f"(mode {mode!r}); binary masks need 1 plane, multiclass one-hot K planes, multilabel K-1 planes"
        )
    if mode == "multiclass" and p_ch is not None and p_ch < 2:
        raise ValueError(f"a multiclass (softmax) head needs at least 2 channels, got {p_ch}")
    valid = ops.cast(y_true[..., :1] >= 0.0, "float32")
    y_true = ops.maximum(y_true, 0.0)
    return y_true, y_pred, valid


def _axes(x) -> tuple[int, ...]:
    return tuple(range(len(x.shape) - 1))


def dice(y_true, y_pred, mode: str = "binary", smooth: float = 1.0):
    """Soft Dice loss, pooled over the batch, averaged over channels.

    ``dice_c = (2 * sum(t * p) + smooth) / (sum(t) + sum(p) + smooth)`` over
    valid pixels of channel c; ``loss = 1 - mean_c dice_c``.

    Args:
        y_true: targets ``(B, H, W, C)``, -1 on void pixels.
        y_pred: probabilities ``(B, H, W, C)``.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        smooth: added to numerator and denominator (an empty channel
            predicted empty scores 1, and the gradient never divides by 0).

    Returns:
        Scalar loss in [0, 1].
    """
    y_true, y_pred, valid = _prepare(y_true, y_pred, mode)
    axes = _axes(y_pred)
    inter = ops.sum(valid * y_true * y_pred, axis=axes)
    denom = ops.sum(valid * y_true, axis=axes) + ops.sum(valid * y_pred, axis=axes)
    return 1.0 - ops.mean((2.0 * inter + smooth) / (denom + smooth))


def jaccard(y_true, y_pred, mode: str = "binary", smooth: float = 1.0):
    """Soft Jaccard (IoU) loss, pooled over the batch, averaged over channels.

    ``iou_c = (I + smooth) / (sum(t) + sum(p) - I + smooth)`` with
    ``I = sum(t * p)`` over valid pixels; ``loss = 1 - mean_c iou_c``.

    Args:
        y_true: targets ``(B, H, W, C)``, -1 on void pixels.
        y_pred: probabilities ``(B, H, W, C)``.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        smooth: smoothing term as in ``dice``.

    Returns:
        Scalar loss in [0, 1].
    """
    y_true, y_pred, valid = _prepare(y_true, y_pred, mode)
    axes = _axes(y_pred)
    inter = ops.sum(valid * y_true * y_pred, axis=axes)
    total = ops.sum(valid * y_true, axis=axes) + ops.sum(valid * y_pred, axis=axes)
    return 1.0 - ops.mean((inter + smooth) / (total - inter + smooth))


def _bce_map(y_true, y_pred):
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    return -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))


def bce(y_true, y_pred, mode: str = "binary"):
    """Binary cross-entropy, averaged over valid pixels and channels.

    ``loss = mean(-(t * log p + (1 - t) * log(1 - p)))`` with p clipped to
    ``[1e-7, 1 - 1e-7]``.

    Args:
        y_true: targets ``(B, H, W, C)``, -1 on void pixels.
        y_pred: probabilities ``(B, H, W, C)``.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.

    Returns:
        Scalar loss.
    """
    y_true, y_pred, valid = _prepare(y_true, y_pred, mode)
    channels = ops.cast(ops.shape(y_pred)[-1], "float32")
    total = ops.sum(valid * _bce_map(y_true, y_pred))
    return total / ops.maximum(ops.sum(valid) * channels, 1.0)


def _require_softmax(name: str, mode: str) -> None:
    if mode != "multiclass":
        raise ValueError(
            f"loss {name!r} needs a softmax head (mode 'multiclass'), got mode {mode!r}; "
            f"for sigmoid heads use 'bce', 'dice' or 'dice_ce'"
        )


def cce(y_true, y_pred, mode: str = "multiclass"):
    """Categorical cross-entropy over a softmax head, averaged over valid pixels.

    ``loss = mean_pixels(-sum_c t_c * log p_c)`` with p clipped to ``[1e-7, 1]``.

    Args:
        y_true: one-hot targets ``(B, H, W, K)``, -1 on void pixels.
        y_pred: softmax probabilities ``(B, H, W, K)``.
        mode: must be ``"multiclass"``.

    Returns:
        Scalar loss.
    """
    _require_softmax("cce", mode)
    y_true, y_pred, valid = _prepare(y_true, y_pred, mode)
    ce = -ops.sum(y_true * ops.log(ops.clip(y_pred, EPSILON, 1.0)), axis=-1, keepdims=True)
    return ops.sum(valid * ce) / ops.maximum(ops.sum(valid), 1.0)


def weighted_cce(y_true, y_pred, class_weights: Sequence[float], mode: str = "multiclass"):
    """Class-weighted cross-entropy, normalised by the total weight.

    Softmax head (K weights): ``loss = sum(w_y * ce) / sum(w_y)`` where
    ``w_y = sum_c t_c w_c`` is the weight of the pixel's true class (as
    PyTorch's ``CrossEntropyLoss(weight=...)``).

    Sigmoid heads (K weights, ``w_0`` the background): channel c's positives
    weigh ``w_{c+1}``, its negatives ``w_0``;
    ``loss = sum(w * bce) / sum(w)``.

    Args:
        y_true: targets ``(B, H, W, C)``, -1 on void pixels.
        y_pred: probabilities ``(B, H, W, C)``.
        class_weights: K weights, one per class including the background
            (see ``class_weights_from_frequencies``).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.

    Returns:
        Scalar loss.
    """
    y_true, y_pred, valid = _prepare(y_true, y_pred, mode)
    w = ops.convert_to_tensor(np.asarray(class_weights, dtype="float32"))
    channels = y_pred.shape[-1]
    expected = channels if mode == "multiclass" else (channels + 1 if channels is not None else None)
    if expected is not None and len(class_weights) != expected:
        raise ValueError(
            f"weighted_cce got {len(class_weights)} class weights for a {mode} head with {channels} channel(s); "
            f"expected {expected} (one per class, background included)"
        )
    if mode == "multiclass":
        ce = -ops.sum(y_true * ops.log(ops.clip(y_pred, EPSILON, 1.0)), axis=-1, keepdims=True)
        pixel_w = valid * ops.sum(y_true * w, axis=-1, keepdims=True)
        return ops.sum(pixel_w * ce) / ops.maximum(ops.sum(pixel_w), EPSILON)
    pixel_w = valid * (y_true * w[1:] + (1.0 - y_true) * w[0])
    return ops.sum(pixel_w * _bce_map(y_true, y_pred)) / ops.maximum(ops.sum(pixel_w), EPSILON)


def focal(y_true, y_pred, mode: str = "binary", gamma: float = 2.0, alpha: float | None = None):
    """Focal loss: cross-entropy down-weighting pixels that are already right.

    Sigmoid heads: ``-(a t (1 - p)^g log p + (1 - a)(1 - t) p^g log(1 - p))``
    averaged over valid pixels and channels (``a`` is ``alpha``, or 1 on both
    terms when ``alpha`` is None). Softmax head:
    ``-sum_c t_c (1 - p_c)^g log p_c`` averaged over valid pixels (``alpha``
    scales it when given). ``gamma = 0`` and no alpha is plain cross-entropy.

    Args:
        y_true: targets ``(B, H, W, C)``, -1 on void pixels.
        y_pred: probabilities ``(B, H, W, C)``.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        gamma: focusing exponent g.
        alpha: optional balance a in [0, 1] for positives.

    Returns:
        Scalar loss.
    """
    y_true, y_pred, valid = _prepare(y_true, y_pred, mode)
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    if mode == "multiclass":
        fl = -ops.sum(y_true * (1.0 - p) ** gamma * ops.log(p), axis=-1, keepdims=True)
        if alpha is not None:
            fl = alpha * fl
        return ops.sum(valid * fl) / ops.maximum(ops.sum(valid), 1.0)
    a_pos, a_neg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    fl = -(a_pos * y_true * (1.0 - p) ** gamma * ops.log(p) + a_neg * (1.0 - y_true) * p**gamma * ops.log(1.0 - p))
    channels = ops.cast(ops.shape(y_pred)[-1], "float32")
    return ops.sum(valid * fl) / ops.maximum(ops.sum(valid) * channels, 1.0)


def dice_ce(y_true, y_pred, mode: str = "binary", dice_weight: float = 1.0, ce_weight: float = 1.0,
            smooth: float = 1.0, class_weights: Sequence[float] | None = None):
    """Dice plus cross-entropy: ``dice_weight * dice + ce_weight * ce``.

    The cross-entropy is ``bce`` for sigmoid heads (binary, multilabel) and
    ``cce`` for the softmax head (multiclass); with ``class_weights`` it is
    ``weighted_cce`` instead. Dice copes with rare classes, cross-entropy
    gives useful gradients from the first step; this is the ``"auto"`` loss.

    Args:
        y_true: targets ``(B, H, W, C)``, -1 on void pixels.
        y_pred: probabilities ``(B, H, W, C)``.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        dice_weight: weight of the Dice term.
        ce_weight: weight of the cross-entropy term.
        smooth: Dice smoothing term.
        class_weights: optional K weights (background first) for the
            cross-entropy term.

    Returns:
        Scalar loss.
    """
    if class_weights is not None:
        ce = weighted_cce(y_true, y_pred, class_weights, mode)
    elif mode == "multiclass":
        ce = cce(y_true, y_pred, mode)
    else:
        ce = bce(y_true, y_pred, mode)
    return dice_weight * dice(y_true, y_pred, mode, smooth) + ce_weight * ce


def class_weights_from_frequencies(frequencies: Sequence[float], *, method: str = "inverse",
                                   max_weight: float | None = None) -> list[float]:
    """Class weights for ``weighted_cce`` from class pixel frequencies.

    ``"inverse"``: ``w_c = 1 / (n * f_c)`` with f normalised to sum 1 over the
    n classes present, so a balanced dataset gets all ones. ``"sqrt"``: the
    square root of that, ``w_c = 1 / sqrt(n * f_c)``: rare classes still pull
    more than their share, but a class at 1% of the pixels weighs 3x a
    balanced one's, not 9x, so it is not painted wherever the model is
    unsure. ``"median"``:
    ``w_c = median(f) / f_c`` (median frequency balancing). A class with
    frequency 0 gets weight 0 (it never is the true class).

    Args:
        frequencies: K pixel counts or fractions, background first.
        method: ``"inverse"``, ``"sqrt"`` or ``"median"``.
        max_weight: optional cap, so a class seen in a handful of pixels
            cannot dominate the loss.

    Returns:
        K float weights.
    """
    f = np.asarray(frequencies, dtype="float64")
    if f.ndim != 1 or f.size < 2 or np.any(f < 0) or not np.all(np.isfinite(f)) or f.sum() <= 0:
        raise ValueError(f"frequencies must be >= 2 non-negative numbers with a positive sum, got {list(frequencies)}")
    f = f / f.sum()
    present = f > 0
    w = np.zeros_like(f)
    if method == "inverse":
        w[present] = 1.0 / (present.sum() * f[present])
    elif method == "sqrt":
        w[present] = 1.0 / np.sqrt(present.sum() * f[present])
    elif method == "median":
        w[present] = np.median(f[present]) / f[present]
    else:
        raise ValueError(f"unknown class weighting method {method!r}; valid ones are ['inverse', 'sqrt', 'median']")
    if max_weight is not None:
        w = np.minimum(w, float(max_weight))
    return [float(x) for x in w]


class _SegLoss(keras.losses.Loss):
    """Base: wraps a pure loss function with its settings, serializable."""

    fn: Any = None
    default_name = "loss"

    def __init__(self, mode: str = "binary", name: str | None = None, reduction: str = "sum_over_batch_size",
                 dtype=None, settings: dict[str, Any] | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes are {list(MODES)}")
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)
        self.mode = mode
        self.settings = dict(settings or {})

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred, mode=self.mode, **self.settings)

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, **self.settings)
        return config


@keras.saving.register_keras_serializable(package="segcore")
class Dice(_SegLoss):
    """Soft Dice loss (see ``dice``). Args: mode, smooth=1.0."""

    fn = staticmethod(dice)
    default_name = "dice"

    def __init__(self, mode: str = "binary", smooth: float = 1.0, **kwargs):
        super().__init__(mode, settings={"smooth": float(smooth)}, **kwargs)


@keras.saving.register_keras_serializable(package="segcore")
class Jaccard(_SegLoss):
    """Soft Jaccard loss (see ``jaccard``). Args: mode, smooth=1.0."""

    fn = staticmethod(jaccard)
    default_name = "jaccard"

    def __init__(self, mode: str = "binary", smooth: float = 1.0, **kwargs):
        super().__init__(mode, settings={"smooth": float(smooth)}, **kwargs)


@keras.saving.register_keras_serializable(package="segcore")
class BinaryCrossentropy(_SegLoss):
    """Void-aware binary cross-entropy (see ``bce``). Args: mode."""

    fn = staticmethod(bce)
    default_name = "bce"


@keras.saving.register_keras_serializable(package="segcore")
class CategoricalCrossentropy(_SegLoss):
    """Void-aware categorical cross-entropy (see ``cce``). Args: mode (multiclass)."""

    fn = staticmethod(cce)
    default_name = "cce"

    def __init__(self, mode: str = "multiclass", **kwargs):
        _require_softmax("cce", mode)
        super().__init__(mode, **kwargs)


@keras.saving.register_keras_serializable(package="segcore")
class WeightedCrossentropy(_SegLoss):
    """Class-weighted cross-entropy (see ``weighted_cce``). Args: mode, class_weights (K)."""

    fn = staticmethod(weighted_cce)
    default_name = "weighted_cce"

    def __init__(self, mode: str = "multiclass", class_weights: Sequence[float] | None = None, **kwargs):
        if class_weights is None:
            raise ValueError("weighted_cce needs class_weights (K numbers, background first); compute them "
                             "with segcore.losses.class_weights_from_frequencies")
        super().__init__(mode, settings={"class_weights": [float(w) for w in class_weights]}, **kwargs)


@keras.saving.register_keras_serializable(package="segcore")
class Focal(_SegLoss):
    """Focal loss (see ``focal``). Args: mode, gamma=2.0, alpha=None."""

    fn = staticmethod(focal)
    default_name = "focal"

    def __init__(self, mode: str = "binary", gamma: float = 2.0, alpha: float | None = None, **kwargs):
        settings = {"gamma": float(gamma), "alpha": None if alpha is None else float(alpha)}
        super().__init__(mode, settings=settings, **kwargs)


@keras.saving.register_keras_serializable(package="segcore")
class DiceCrossentropy(_SegLoss):
    """Dice + cross-entropy (see ``dice_ce``). Args: mode, dice_weight, ce_weight, smooth, class_weights."""

    fn = staticmethod(dice_ce)
    default_name = "dice_ce"

    def __init__(self, mode: str = "binary", dice_weight: float = 1.0, ce_weight: float = 1.0,
                 smooth: float = 1.0, class_weights: Sequence[float] | None = None, **kwargs):
        settings = {"dice_weight": float(dice_weight), "ce_weight": float(ce_weight), "smooth": float(smooth),
                    "class_weights": None if class_weights is None else [float(w) for w in class_weights]}
        super().__init__(mode, settings=settings, **kwargs)


# The registry is the loss classes themselves, by their names: every ``_SegLoss`` subclass defined above.
_REGISTRY: dict[str, type[_SegLoss]] = {cls.default_name: cls for cls in _SegLoss.__subclasses__()}
# The settings (segcore.config.LOSSES, which must not import Keras) offer exactly these names.
if set(_REGISTRY) | {"auto"} != set(LOSSES):
    raise RuntimeError(f"segcore.config.LOSSES {sorted(LOSSES)} and the loss classes {sorted(_REGISTRY)} + 'auto' differ; "
                       "describe every loss class in config.LOSS_HELP")


def names() -> tuple[str, ...]:
    """Registered loss names, plus ``"auto"``."""
    return (*_REGISTRY, "auto")


def resolve(name: str) -> str:
    """The registered name a loss name stands for (``"auto"`` is ``"dice_ce"``)."""
    key = str(name).lower()
    if key == "auto":
        return AUTO_LOSS
    if key not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; valid losses are {list(names())}")
    return key


def get(name: str, **kwargs) -> keras.losses.Loss:
    """Build a loss by name.

    Args:
        name: one of ``dice``, ``bce``, ``cce``, ``weighted_cce``, ``focal``,
            ``dice_ce``, ``jaccard`` or ``auto`` (Dice + the head's
            cross-entropy, i.e. ``dice_ce``).
        **kwargs: settings of the loss class, always ``mode``; e.g.
            ``get("weighted_cce", mode="multiclass", class_weights=[...])``.

    Returns:
        A ``keras.losses.Loss`` that saves and loads with a ``.keras`` model.

    Raises:
        ValueError: an unknown name (listing the valid ones) or settings the
            loss cannot take.
    """
    cls = _REGISTRY[resolve(name)]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"loss {name!r} does not take settings {sorted(kwargs)}: {exc}") from exc


def get_function(name: str):
    """The pure function behind a loss name (``"auto"`` resolves to ``dice_ce``)."""
    return _REGISTRY[resolve(name)].fn

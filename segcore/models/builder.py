"""Build U-Nets: the plain U-Net and U-Nets with a pretrained encoder.

Both share one decoder builder: starting from the deepest feature map, each
stage doubles the resolution (transposed convolution or upsampling), joins the
encoder feature of that resolution (if there is one) and applies two 3x3
convolutions. Layer names carry the level (``dec2_conv1`` works at 1/4 of the
input size) so weights transfer between models by name.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import keras

from segcore.config import ACTIVATIONS, DEPTHS, FREEZE_MODES, UPSAMPLING, ModelConfig
from segcore.catalog import encoders as encoder_registry
from segcore.catalog.heads import head_for
from segcore.models.layers import GroupNorm, Preprocess


def _check_config(cfg: ModelConfig, image_size: int, channels: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {cfg.activation!r}; valid ones are {list(ACTIVATIONS)}")
    if cfg.upsampling not in UPSAMPLING:
        raise ValueError(f"unknown upsampling {cfg.upsampling!r}; valid ones are {list(UPSAMPLING)}")
    if not isinstance(cfg.filters, int) or cfg.filters < 1:
        raise ValueError(f"filters must be a positive int, got {cfg.filters!r}")
    if not 0.0 <= float(cfg.dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout!r}")
    if cfg.freeze not in FREEZE_MODES:
        raise ValueError(f"unknown freeze mode {cfg.freeze!r}; valid ones are {list(FREEZE_MODES)}")
    spec = encoder_registry.get(cfg.encoder)
    if not spec.pretrained:
        if cfg.depth not in DEPTHS:
            raise ValueError(f"U-Net depth must be one of {list(DEPTHS)}, got {cfg.depth!r}")
        if cfg.weights == "imagenet":
            raise ValueError(f"weights 'imagenet' need a pretrained encoder; the {spec.label} (encoder {spec.name!r}) "
                             "takes weights 'none' or a weights file; pretrained encoders are "
                             f"{list(encoder_registry.pretrained_names())}")
        if cfg.freeze != "trainable":
            raise ValueError(f"freeze {cfg.freeze!r} needs a pretrained encoder; the {spec.label} "
                             f"(encoder {spec.name!r}) is always 'trainable'")
    step, smallest = spec.size_step(cfg.depth), spec.smallest_size(cfg.depth)
    if image_size < smallest or image_size % step:
        if not spec.reduction:
            raise ValueError(
                f"image size {image_size} is not divisible by 2^depth = {step} (depth {cfg.depth}); "
                f"use a multiple of {step}, e.g. {_nearest_multiple(image_size, step)}"
            )
        raise ValueError(
            f"image size {image_size} does not fit encoder {spec.name!r}: it must be a multiple of "
            f"{step} and at least {smallest}, e.g. {max(smallest, _nearest_multiple(image_size, step))}"
        )


def _nearest_multiple(value: int, step: int) -> int:
    return max(step, int(round(value / step)) * step)


GROUPS = 8  # group normalisation: at most 8 groups (fewer where the filters do not divide by 8)


def _conv_block(x, filters: int, name: str, cfg: ModelConfig):
    norm = cfg.norm
    for i in (1, 2):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", kernel_initializer="he_normal", use_bias=norm == "none",
            name=f"{name}_conv{i}",
        )(x)
        if norm == "batch":
            x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        elif norm == "group":
            x = GroupNorm(groups=math.gcd(filters, GROUPS), name=f"{name}_gn{i}")(x)
        x = keras.layers.Activation(cfg.activation, name=f"{name}_act{i}")(x)
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, name=f"{name}_drop")(x)
    return x


def _decoder(x, skips: list, image_size: int, cfg: ModelConfig):
    """Upsample ``x`` to ``image_size``, joining each skip of matching size."""
    by_size = {int(s.shape[1]): s for s in skips}
    while int(x.shape[1]) < image_size:
        size = int(x.shape[1]) * 2
        level = int(round(math.log2(image_size // size)))
        filters = cfg.filters * 2**level
        if cfg.upsampling == "transpose":
            x = keras.layers.Conv2DTranspose(
                filters, 2, strides=2, padding="same", kernel_initializer="he_normal", name=f"dec{level}_up"
            )(x)
        else:
            x = keras.layers.UpSampling2D(2, name=f"dec{level}_up")(x)
        if size in by_size:
            x = keras.layers.Concatenate(name=f"dec{level}_concat")([x, by_size[size]])
        x = _conv_block(x, filters, f"dec{level}", cfg)
    return x


def build_model(cfg: ModelConfig, *, image_size: int, channels: int, mode: str, num_classes: int):
    """Build a U-Net (plain, or with a ``keras.applications`` encoder).

    The model takes float32 images of raw pixel values in [0, 255], shape
    ``(image_size, image_size, channels)``, and normalises them itself (a
    ``Preprocess`` layer: ``x / 255`` for the plain U-Net, the encoder's own
    ``preprocess_input`` otherwise, grey repeated to 3 channels). The output
    has the head of ``head_for(mode, num_classes)``.

    Args:
        cfg: the ``ModelConfig``. For encoder models ``depth`` is the encoder's
            own and ``filters`` sets the decoder width (``filters * 2**level``).
        image_size: input height and width.
        channels: 1 (grey) or 3 (RGB).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: K, classes including the background.

    Returns:
        An uncompiled ``keras.Model``; an encoder model holds the encoder as
        the sub-model ``model.get_layer("encoder")``.

    Raises:
        ValueError: a setting or size the model cannot have, or a weights
            file that does not fit; RuntimeError: ImageNet weights that
            cannot be found or downloaded (the message says where to put them).
    """
    activation, outputs = head_for(mode, num_classes)
    _check_config(cfg, image_size, channels)
    inputs = keras.Input((image_size, image_size, channels), dtype="float32", name="image")
    spec = encoder_registry.get(cfg.encoder)
    # Pretrained encoders take RGB in their own preprocessing; the plain U-Net takes the image as it is.
    x = Preprocess(spec.preprocess, to_rgb=spec.pretrained, name="preprocess", dtype="float32")(inputs)
    if spec.pretrained:
        encoder = spec.build(image_size, None if cfg.weights == "none" else cfg.weights)
        if cfg.freeze in ("frozen", "fine_tune"):
            encoder.trainable = False  # BatchNormalization then also runs in inference mode
        *skips, x = encoder(x)
        name = f"{spec.name}_unet"
    else:
        skips, x = _plain_encoder(x, cfg)
        name = "unet"
    x = _decoder(x, skips, image_size, cfg)
    # The head stays float32 under mixed precision so probabilities are exact.
    out = keras.layers.Conv2D(outputs, 1, activation=activation, dtype="float32", name="head")(x)
    model = keras.Model(inputs, out, name=name)
    if not spec.pretrained and cfg.weights not in ("none", None, ""):
        _load_whole_model_weights(model, cfg.weights)  # a pretrained encoder loaded its own file above
    return model


def _plain_encoder(x, cfg: ModelConfig) -> tuple[list, Any]:
    """The plain U-Net's contracting path: ``(skips, bottleneck)``; layers ``enc<level>_*`` and ``pool<level>``."""
    skips = []
    for level in range(cfg.depth):
        x = _conv_block(x, cfg.filters * 2**level, f"enc{level}", cfg)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
    return skips, _conv_block(x, cfg.filters * 2**cfg.depth, f"enc{cfg.depth}", cfg)


def _load_whole_model_weights(model, path: str) -> None:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist; expected a .weights.h5 file saved from "
                                "a model with the same settings, or weights 'none'")
    try:
        with warnings.catch_warnings():
            # Keras warns once per layer before raising; the error below says it all.
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError or KeyError depending on the mismatch
        raise ValueError(
            f"weights file {path} does not fit this model ({model.name}, {count_params(model):,} parameters, "
            f"input {tuple(model.input.shape[1:])}): {short_error(exc)}; to start from another run's model use "
            "segcore.models.transfer.load_matching_weights"
        ) from exc


def short_error(exc: BaseException, limit: int = 300) -> str:
    """A Keras error on one line, cut to ``limit`` characters (they can dump whole tensors)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def set_encoder_trainable(model, trainable: bool, *, train_batchnorm: bool = False) -> None:
    """Freeze or unfreeze the pretrained encoder of a model.

    Recompile the model afterwards (Keras reads ``trainable`` at compile time).

    Args:
        model: a model from ``build_model`` with an encoder.
        trainable: ``True`` to fine-tune the encoder, ``False`` to freeze it.
        train_batchnorm: when unfreezing, also let the encoder's batch-norm
            layers update; by default they stay in inference mode, as Keras
            recommends when fine-tuning a pretrained network on a small dataset.

    Raises:
        ValueError: the model has no ``encoder`` sub-model (plain U-Net).
    """
    encoder = get_encoder(model)
    if encoder is None:
        raise ValueError(f"model {model.name!r} has no pretrained encoder (layer 'encoder') to freeze or unfreeze")
    encoder.trainable = bool(trainable)
    # Set every layer explicitly: Keras skips the propagation when the
    # container's own flag does not change, leaving earlier per-layer choices.
    for layer in _walk(encoder):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = bool(trainable) and (train_batchnorm or not is_bn)


def get_encoder(model):
    """The ``encoder`` sub-model of a model, or ``None`` for a plain U-Net."""
    for layer in model.layers:
        if layer.name == "encoder" and isinstance(layer, keras.Model):
            return layer
    return None


def _walk(model):
    """All leaf layers of a model, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer)
        else:
            yield layer


def count_params(model) -> int:
    """Total number of parameters (trainable and not)."""
    return int(sum(math.prod(w.shape) for w in model.weights))


def encoder_param_count(model) -> int:
    """Parameters of the encoder: the pretrained sub-model, or the plain U-Net's contracting path."""
    encoder = get_encoder(model)
    if encoder is not None:
        return count_params(encoder)
    return int(sum(math.prod(w.shape) for layer in _walk(model) if layer.name.startswith("enc") for w in layer.weights))


def forward_gflops(model_or_cfg: Any, image_size: int | None = None, *, channels: int = 3,
                   mode: str = "binary", num_classes: int = 2) -> float:
    """Forward-pass GFLOPs for one image, from layer shapes.

    FLOPs = 2 x multiply-accumulates of the convolution and dense layers
    (``2 * H_out * W_out * k_h * k_w * C_in / groups * C_out`` for a
    convolution); batch norm, activations and pooling are left out.

    Args:
        model_or_cfg: a built model, or a ``ModelConfig`` to build (weights none).
        image_size: input size; for a model, defaults to its own (a fully
            convolutional model scales with the pixel count).
        channels, mode, num_classes: used when building from a config.

    Returns:
        GFLOPs (1e9 floating point operations) per image.
    """
    if isinstance(model_or_cfg, ModelConfig):
        if image_size is None:
            raise ValueError("forward_gflops needs image_size when given a ModelConfig")
        cfg = _replace_weights_none(model_or_cfg)
        model = build_model(cfg, image_size=image_size, channels=channels, mode=mode, num_classes=num_classes)
    else:
        model = model_or_cfg
    own = int(model.input.shape[1])
    flops = 0
    for layer in _walk(model):
        flops += _layer_flops(layer)
    if image_size is not None and image_size != own:
        flops *= (image_size / own) ** 2
    return flops / 1e9


def _replace_weights_none(cfg: ModelConfig) -> ModelConfig:
    import dataclasses

    return dataclasses.replace(cfg, weights="none")


def _layer_flops(layer) -> float:
    if not layer.weights:
        return 0.0
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        out = layer.output.shape
        return 2.0 * out[1] * out[2] * kh * kw * int(layer.input.shape[-1]) * layer.depth_multiplier
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        inp = layer.input.shape
        return 2.0 * inp[1] * inp[2] * inp[3] * kh * kw * layer.filters
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        out = layer.output.shape
        cin = int(layer.input.shape[-1]) // layer.groups
        return 2.0 * out[1] * out[2] * kh * kw * cin * layer.filters
    if isinstance(layer, keras.layers.Dense):
        inp = layer.input.shape
        return 2.0 * math.prod(int(d) for d in inp[1:]) * layer.units
    return 0.0

"""Models: the U-Net, pretrained encoders, heads, transfer between runs.

Public API::

    head_for(mode, num_classes) -> (activation, num_outputs)
    build_model(cfg, *, image_size, channels, mode, num_classes) -> keras.Model
    set_encoder_trainable(model, trainable)
    count_params(model), encoder_param_count(model), forward_gflops(model_or_cfg, image_size)
    segcore.catalog.encoders.get(name)      # registry of every encoder, the plain U-Net's included
    transfer.load_matching_weights(model, source) -> TransferReport

``head_for`` and the encoder registry live in ``segcore.catalog`` (no Keras);
the builder functions import Keras on first use, so importing this package
stays cheap.
"""

from __future__ import annotations

import importlib

from segcore.catalog.heads import MODES, head_for

_BUILDER_NAMES = (
    "build_model",
    "set_encoder_trainable",
    "get_encoder",
    "count_params",
    "encoder_param_count",
    "forward_gflops",
)

__all__ = ["MODES", "head_for", *_BUILDER_NAMES]


def __getattr__(name):
    if name in _BUILDER_NAMES:
        return getattr(importlib.import_module("segcore.models.builder"), name)
    raise AttributeError(f"module 'segcore.models' has no attribute {name!r}")

"""Models: the U-Net, pretrained encoders, heads, transfer between runs.

Public API::

    head_for(mode, num_classes) -> (activation, num_outputs)
    build_model(cfg, *, image_size, channels, mode, num_classes) -> keras.Model
    set_encoder_trainable(model, trainable)
    count_params(model), encoder_param_count(model), forward_gflops(model_or_cfg, image_size)
    encoders.get(name)                      # registry of every encoder, the plain U-Net's included
    transfer.load_matching_weights(model, source) -> TransferReport

``head_for`` and the encoder registry do not import Keras; the builder
functions import it on first use. This package imports nothing itself, so
``segcore.config`` can read the encoder registry.
"""

from __future__ import annotations

import importlib

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
    if name in ("MODES", "head_for"):
        return getattr(importlib.import_module("segcore.models.heads"), name)
    raise AttributeError(f"module 'segcore.models' has no attribute {name!r}")

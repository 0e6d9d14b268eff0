"""Serializable layers that the segcore models are built from.

Normalisation lives inside the model so that every caller (trainer, Predict
page, CLI) feeds raw [0, 255] pixels and a saved ``.keras`` file carries its
own preprocessing.
"""

from __future__ import annotations

import keras
from keras import ops

# ImageNet statistics as keras.applications' preprocess_input uses them.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
STYLES = ("unit", "caffe", "torch", "tf")


@keras.saving.register_keras_serializable(package="segcore")
class Preprocess(keras.layers.Layer):
    """Normalise raw [0, 255] pixels the way a model expects them.

    Styles (matching ``keras.applications.*.preprocess_input``):

    - ``"unit"``: ``x / 255`` (plain U-Net).
    - ``"caffe"``: RGB to BGR, then ``x - mean_bgr`` (VGG16, ResNet50).
    - ``"torch"``: ``(x / 255 - mean) / std`` (DenseNet121).
    - ``"tf"``: ``x / 127.5 - 1`` (MobileNetV2).

    Args:
        style: one of ``"unit"``, ``"caffe"``, ``"torch"``, ``"tf"``.
        to_rgb: repeat a 1-channel (grey) input to 3 channels first, for
            encoders trained on RGB.
    """

    def __init__(self, style: str = "unit", to_rgb: bool = False, **kwargs):
        super().__init__(**kwargs)
        if style not in STYLES:
            raise ValueError(f"unknown preprocessing style {style!r}; valid styles are {list(STYLES)}")
        self.style = style
        self.to_rgb = bool(to_rgb)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if self.to_rgb and x.shape[-1] == 1:
            x = ops.repeat(x, 3, axis=-1)
        if self.style == "unit":
            return x / 255.0
        if self.style == "tf":
            return x / 127.5 - 1.0
        if self.style == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype="float32")
            std = ops.convert_to_tensor(_TORCH_STD, dtype="float32")
            return (x / 255.0 - mean) / std
        x = ops.flip(x, axis=-1)  # caffe: RGB -> BGR
        return x - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype="float32")

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if self.to_rgb and shape[-1] == 1:
            shape[-1] = 3
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(style=self.style, to_rgb=self.to_rgb)
        return config

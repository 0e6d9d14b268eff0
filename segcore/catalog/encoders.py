"""Every U-Net encoder in one registry looked up by name: the plain U-Net's and ``keras.applications``'.

``"none"`` is the plain U-Net's own contracting path (its depth, filters,
normalisation and dropout come from ``ModelConfig``). The others are
pretrained ``keras.applications`` networks: each entry names the layers whose
outputs feed the U-Net decoder (skip features, highest resolution first) and
the bottleneck layer, always by layer name, never by index, so a Keras release
that inserts a layer cannot shift them. An encoder's quirks live in its
entry's fields (input size step, preprocessing, whether ImageNet weights and
freezing apply), so the settings, the builder and the run names ask the entry
instead of testing the encoder's name. Adding an encoder is adding one
``EncoderSpec`` to ``_REGISTRY``; ``segcore.config.ENCODERS`` is its names.

Importing this module does not import Keras; ``EncoderSpec.build`` does.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

_MOBILENET_SIZES = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one encoder and where its features come from.

    Attributes:
        name: registry name (``"vgg16"``; ``"none"`` for the plain U-Net).
        label: what people call it (``"VGG16"``, ``"plain U-Net"``).
        application: constructor name in ``keras.applications``; empty for
            the plain U-Net, whose encoder the builder makes from ``ModelConfig``.
        skips: layer names of the skip features, highest resolution first.
        bottleneck: layer name of the deepest feature map.
        preprocess: the ``preprocess_input`` style of the encoder: ``"unit"``
            (``x / 255``), ``"caffe"`` (RGB to BGR, ImageNet mean subtracted),
            ``"torch"`` (scaled to [0, 1], ImageNet mean and std) or ``"tf"``
            (scaled to [-1, 1]).
        reduction: input size / bottleneck size; input sizes must be
            multiples. 0: ``2 ** depth`` (the plain U-Net's own depth).
        min_size: smallest input size ``keras.applications`` accepts.
        weights_url: folder that ``keras.applications`` downloads weights from.
        stem_filters: channels of the first feature map, for the memory
            estimate; 0: ``ModelConfig.filters``.
        levels: resolution levels below the input, for the memory estimate;
            0: ``ModelConfig.depth``.
        learning_rate: the learning rate a run starts from when its settings
            name none (``TrainConfig.learning_rate`` None): 1e-3 for a network
            trained from scratch, 1e-4 for a pretrained encoder, whose ImageNet
            features a large first step would wash out.
    """

    name: str
    label: str
    application: str
    skips: tuple[str, ...]
    bottleneck: str
    preprocess: str
    reduction: int
    min_size: int
    weights_url: str
    stem_filters: int = 0
    levels: int = 0
    learning_rate: float = 1e-4

    @property
    def pretrained(self) -> bool:
        """A ``keras.applications`` network: takes ImageNet weights and can be frozen."""
        return bool(self.application)

    def size_step(self, depth: int) -> int:
        """Input sizes must be multiples of this (``depth``: ``ModelConfig.depth``, used by the plain U-Net)."""
        return self.reduction or 2 ** int(depth)

    def smallest_size(self, depth: int) -> int:
        """The smallest input size this encoder takes."""
        return max(self.min_size, self.size_step(depth))

    def memory_shape(self, depth: int, filters: int) -> tuple[int, int]:
        """``(first feature channels, levels)`` for the activation-memory estimate."""
        return self.stem_filters or int(filters), self.levels or int(depth)

    def tag(self, *, depth: int, filters: int, freeze: str, fine_tune_after: int) -> str:
        """A short readable model name for run ids: ``unet-d4f32``, ``vgg16-frozen``, ``resnet50-ft5``."""
        if not self.pretrained:
            return f"unet-d{depth}f{filters}"
        if freeze == "frozen":
            return f"{self.name}-frozen"
        if freeze == "fine_tune":
            return f"{self.name}-ft{fine_tune_after}"
        return self.name

    def imagenet_file(self, image_size: int) -> str:
        """File name ``keras.applications`` caches the no-top ImageNet weights under."""
        if self.name == "mobilenetv2":
            rows = image_size if image_size in _MOBILENET_SIZES else 224
            return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
        return f"{self.name}_weights_tf_dim_ordering_tf_kernels_notop.h5"

    def build(self, image_size: int, weights: str | None = None) -> Any:
        """Build the encoder as a Keras model named ``"encoder"``.

        Args:
            image_size: input height and width (3 channels, preprocessed).
            weights: ``None``, ``"imagenet"`` or a path to a weights file of the
                ``keras.applications`` model without its top.

        Returns:
            A functional ``keras.Model`` whose outputs are
            ``[*skips, bottleneck]`` feature maps.

        Raises:
            RuntimeError: ImageNet weights are not cached and cannot be
                downloaded; the message says which file to put where.
            ValueError: a weights file that does not fit this encoder.
        """
        if not self.pretrained:
            raise ValueError(f"encoder {self.name!r} ({self.label}) is built by segcore.models.build_model "
                             "from the model settings, not from keras.applications")
        import keras

        constructor = getattr(keras.applications, self.application)
        kwargs: dict[str, Any] = dict(include_top=False, input_shape=(image_size, image_size, 3))
        if self.name == "mobilenetv2":
            kwargs["alpha"] = 1.0
        if weights in (None, "none"):
            app = constructor(weights=None, **kwargs)
        elif weights == "imagenet":
            app = self._build_imagenet(constructor, kwargs, image_size)
        else:
            path = os.fspath(weights)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"weights file {path} for encoder {self.name!r} does not exist; expected the "
                    f"keras.applications {self.application} weights without top "
                    f"(e.g. {self.imagenet_file(image_size)}), or use weights 'imagenet' or 'none'"
                )
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # one per layer before the error
                    app = constructor(weights=path, **kwargs)
            except Exception as exc:  # Keras raises ValueError, OSError or KeyError by file kind
                detail = " ".join(str(exc).split())[:300]
                raise ValueError(
                    f"weights file {path} does not fit encoder {self.name!r} ({self.application} without top, "
                    f"input {image_size}x{image_size}x3): {detail}; expected a file such as "
                    f"{self.imagenet_file(image_size)}"
                ) from exc
        outputs = [app.get_layer(name).output for name in (*self.skips, self.bottleneck)]
        return keras.Model(app.input, outputs, name="encoder")

    def _build_imagenet(self, constructor: Any, kwargs: dict[str, Any], image_size: int) -> Any:
        fname = self.imagenet_file(image_size)
        target = os.path.join(keras_cache_dir(), "models", fname)
        try:
            return constructor(weights="imagenet", **kwargs)
        except Exception as exc:
            if os.path.isfile(target):
                raise ValueError(
                    f"cached ImageNet weights {target} for encoder {self.name!r} could not be loaded: {exc}; "
                    f"delete the file to download it again"
                ) from exc
            raise RuntimeError(
                f"ImageNet weights for encoder {self.name!r} are not cached and could not be downloaded "
                f"({exc}). Download {self.weights_url}{fname} on a machine with internet access and put it at "
                f"{target} (~/.keras/models/{fname}), or run without pretrained weights "
                f"(weights 'none', e.g. ModelConfig(weights='none'))."
            ) from exc


def keras_cache_dir() -> str:
    """The folder Keras caches downloads in: ``$KERAS_HOME`` or ``~/.keras``."""
    base = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    if os.path.isdir(base) and not os.access(base, os.W_OK):
        # Keras itself falls back to /tmp/.keras where the home is read-only.
        base = os.path.join("/tmp", ".keras")
    return base


_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"

_REGISTRY: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec(
            name="none",
            label="plain U-Net",
            application="",
            skips=(),
            bottleneck="",
            preprocess="unit",
            reduction=0,
            min_size=1,
            weights_url="",
            learning_rate=1e-3,
        ),
        EncoderSpec(
            name="vgg16",
            label="VGG16",
            application="VGG16",
            skips=("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"),
            bottleneck="block5_conv3",
            preprocess="caffe",
            reduction=16,
            min_size=32,
            weights_url=_APPS + "vgg16/",
            stem_filters=32,
            levels=5,
        ),
        EncoderSpec(
            name="resnet50",
            label="ResNet50",
            application="ResNet50",
            skips=("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"),
            bottleneck="conv5_block3_out",
            preprocess="caffe",
            reduction=32,
            min_size=32,
            weights_url=_APPS + "resnet/",
            stem_filters=32,
            levels=5,
        ),
        EncoderSpec(
            name="densenet121",
            label="DenseNet121",
            application="DenseNet121",
            skips=("conv1_relu", "pool2_relu", "pool3_relu", "pool4_relu"),
            bottleneck="relu",
            preprocess="torch",
            reduction=32,
            min_size=32,
            weights_url=_APPS + "densenet/",
            stem_filters=32,
            levels=5,
        ),
        EncoderSpec(
            name="mobilenetv2",
            label="MobileNetV2",
            application="MobileNetV2",
            skips=("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu"),
            bottleneck="out_relu",
            preprocess="tf",
            reduction=32,
            min_size=32,
            weights_url=_APPS + "mobilenet_v2/",
            stem_filters=32,
            levels=5,
        ),
    )
}


def names() -> tuple[str, ...]:
    """Every registered encoder name, in registry order (``"none"``, the plain U-Net, first)."""
    return tuple(_REGISTRY)


def pretrained_names() -> tuple[str, ...]:
    """The ``keras.applications`` encoders' names, in registry order."""
    return tuple(name for name, spec in _REGISTRY.items() if spec.pretrained)


def get(name: str) -> EncoderSpec:
    """Look up an encoder by name (case-insensitive).

    Args:
        name: e.g. ``"none"`` (the plain U-Net), ``"vgg16"``, ``"resnet50"``, ``"densenet121"``, ``"mobilenetv2"``.

    Returns:
        The ``EncoderSpec``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown encoder {name!r}; valid encoders are {list(_REGISTRY)} ('none' is the plain U-Net)")
    return _REGISTRY[key]

"""Pretrained encoders: registry, parameter counts equal keras.applications', skips by
layer name, freezing, weights files, the offline ImageNet error, .keras round trips."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from segcore.config import ModelConfig  # noqa: E402
from segcore.catalog import encoders  # noqa: E402
from segcore.models import build_model, encoder_param_count, get_encoder, set_encoder_trainable  # noqa: E402

pytestmark = pytest.mark.backend

SIZE = 32  # the smallest input keras.applications accepts for these networks
# keras.applications' own counts, include_top=False (also checked against a fresh build below)
APPLICATION_PARAMS = {"vgg16": 14_714_688, "resnet50": 23_587_712, "densenet121": 7_037_504,
                      "mobilenetv2": 2_257_984}


@pytest.fixture(scope="module")
def built():
    """Each encoder U-Net built once per module (ResNet50 and DenseNet121 are slow to build)."""
    cache = {}

    def get(name):
        if name not in cache:
            cfg = ModelConfig(encoder=name, filters=4)
            cache[name] = build_model(cfg, image_size=SIZE, channels=3, mode="binary", num_classes=2)
        return cache[name]

    return get


def test_registry():
    assert encoders.pretrained_names() == ("vgg16", "resnet50", "densenet121", "mobilenetv2")
    assert encoders.names() == ("none", *encoders.pretrained_names())  # the plain U-Net is an entry too
    assert encoders.get("VGG16").application == "VGG16"
    with pytest.raises(ValueError, match=r"unknown encoder 'efficientnet'; valid encoders are \['none', 'vgg16', "
                                         r"'resnet50', 'densenet121', 'mobilenetv2'\]"):
        encoders.get("efficientnet")
    assert encoders.get("vgg16").imagenet_file(256) == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert encoders.get("mobilenetv2").imagenet_file(128) == (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128_no_top.h5")
    assert encoders.get("mobilenetv2").imagenet_file(256).endswith("_1.0_224_no_top.h5")


@pytest.mark.slow
@pytest.mark.parametrize("name", encoders.pretrained_names())
def test_encoder_params_equal_keras_applications(built, name):
    spec = encoders.get(name)
    app = getattr(keras.applications, spec.application)(include_top=False, weights=None,
                                                        input_shape=(SIZE, SIZE, 3))
    assert encoder_param_count(built(name)) == app.count_params() == APPLICATION_PARAMS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", encoders.pretrained_names())
def test_skips_by_layer_name_feed_the_decoder(built, name):
    model = built(name)
    spec = encoders.get(name)
    encoder = get_encoder(model)
    names = [t.name for t in encoder.outputs]
    assert len(names) == len(spec.skips) + 1
    sizes = [int(t.shape[1]) for t in encoder.outputs]
    # skips halve in size level by level, the bottleneck is input / reduction
    assert sizes[-1] == SIZE // spec.reduction
    assert sizes == sorted(sizes, reverse=True)
    for size in sizes[:-1]:
        level = int(np.log2(SIZE // size))
        assert model.get_layer(f"dec{level}_concat") is not None
    assert tuple(model.output.shape) == (None, SIZE, SIZE, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", encoders.pretrained_names())
def test_encoder_unet_round_trip_through_keras_file(built, tmp_path, name):
    model = built(name)
    x = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    before = keras.ops.convert_to_numpy(model(x, training=False))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), before, rtol=1e-4, atol=1e-5)
    assert loaded.get_layer("preprocess").style == encoders.get(name).preprocess


def test_grey_input_is_repeated_to_rgb():
    model = build_model(ModelConfig(encoder="mobilenetv2", filters=4), image_size=SIZE, channels=1,
                        mode="multiclass", num_classes=3)
    assert tuple(model.input.shape) == (None, SIZE, SIZE, 1)
    assert tuple(get_encoder(model).input.shape) == (None, SIZE, SIZE, 3)
    grey = np.full((1, SIZE, SIZE, 1), 100.0, "float32")
    out = keras.ops.convert_to_numpy(model(grey, training=False))
    assert out.shape == (1, SIZE, SIZE, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


def _bn_layers(model):
    return [layer for layer in get_encoder(model).layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_frozen_encoder_and_fine_tuning():
    model = build_model(ModelConfig(encoder="mobilenetv2", filters=4, freeze="frozen"), image_size=SIZE,
                        channels=3, mode="binary", num_classes=2)
    encoder = get_encoder(model)
    assert not encoder.trainable and encoder.trainable_weights == []
    bn = _bn_layers(model)[0]
    mean_before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    kernel_before = keras.ops.convert_to_numpy(encoder.get_layer("Conv1").kernel).copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", run_eagerly=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, 2, (2, SIZE, SIZE, 1)).astype("float32")
    head_before = keras.ops.convert_to_numpy(model.get_layer("head").kernel).copy()
    model.train_on_batch(x, y)
    # frozen batch norm runs in inference mode: its statistics do not move
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), mean_before)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(encoder.get_layer("Conv1").kernel), kernel_before)
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer("head").kernel), head_before)

    set_encoder_trainable(model, True)
    assert encoder.get_layer("Conv1").trainable
    assert not any(layer.trainable for layer in _bn_layers(model))  # BN stays in inference mode
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", run_eagerly=True)
    model.train_on_batch(x, y)
    assert not np.allclose(keras.ops.convert_to_numpy(encoder.get_layer("Conv1").kernel), kernel_before)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), mean_before)

    set_encoder_trainable(model, True, train_batchnorm=True)
    assert all(layer.trainable for layer in _bn_layers(model))
    set_encoder_trainable(model, False)
    assert encoder.trainable_weights == []

    fine_tune = build_model(ModelConfig(encoder="vgg16", filters=4, freeze="fine_tune", fine_tune_after=3),
                            image_size=SIZE, channels=3, mode="binary", num_classes=2)
    assert get_encoder(fine_tune).trainable_weights == []  # frozen until the trainer unfreezes it


def test_offline_imagenet_error_says_which_file_to_put_where(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    def offline(fname=None, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    fname = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with pytest.raises(RuntimeError) as info:
        build_model(ModelConfig(encoder="vgg16", weights="imagenet", freeze="frozen"), image_size=SIZE, channels=3,
                    mode="binary", num_classes=2)
    message = str(info.value)
    assert f"Download https://storage.googleapis.com/tensorflow/keras-applications/vgg16/{fname}" in message
    assert f"put it at {tmp_path / 'kh' / 'models' / fname}" in message
    assert f"~/.keras/models/{fname}" in message
    assert "weights 'none'" in message


def test_weights_file_for_the_encoder(tmp_path):
    app = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    good = tmp_path / "vgg16_notop.weights.h5"
    app.save_weights(good)
    model = build_model(ModelConfig(encoder="vgg16", filters=4, weights=str(good)), image_size=SIZE, channels=3,
                        mode="binary", num_classes=2)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(get_encoder(model).get_layer("block3_conv2").kernel),
        keras.ops.convert_to_numpy(app.get_layer("block3_conv2").kernel),
    )
    other = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    bad = tmp_path / "mobilenet.weights.h5"
    other.save_weights(bad)
    with pytest.raises(ValueError, match=f"weights file {bad} does not fit encoder 'vgg16'"):
        build_model(ModelConfig(encoder="vgg16", weights=str(bad)), image_size=SIZE, channels=3, mode="binary",
                    num_classes=2)
    with pytest.raises(ValueError, match="setting model.weights is .*nothing.h5 does not exist"):
        build_model(ModelConfig(encoder="vgg16", weights=str(tmp_path / "nothing.h5")), image_size=SIZE,
                    channels=3, mode="binary", num_classes=2)


def test_an_encoder_is_one_registry_entry(monkeypatch):
    """The settings, the size check, the run name and the builder all ask the entry, not a second list."""
    from dataclasses import replace

    from segcore import runs
    from segcore.config import RunConfig, SettingError, TrainConfig, check_image_size

    extra = replace(encoders.get("vgg16"), name="vgg16b", label="VGG16 (second entry)")
    monkeypatch.setitem(encoders._REGISTRY, "vgg16b", extra)
    cfg = ModelConfig(encoder="vgg16b", freeze="frozen", filters=4)
    assert runs.model_tag(RunConfig(model=cfg, train=TrainConfig(image_size=32))) == "vgg16b-frozen"
    check_image_size(cfg, 32)
    with pytest.raises(SettingError, match="a multiple of 16 and at least 32 to fit encoder 'vgg16b'"):
        check_image_size(cfg, 40)
    model = build_model(cfg, image_size=32, channels=1, mode="binary", num_classes=2)
    assert model.name == "vgg16b_unet" and model.get_layer("encoder") is not None
    # The plain U-Net is an entry with its own rules: no ImageNet weights, no freezing, 2^depth sizes.
    plain = encoders.get("none")
    assert not plain.pretrained and plain.size_step(4) == 16 and plain.label == "plain U-Net"
    with pytest.raises(SettingError, match="model.freeze"):
        ModelConfig(encoder="none", freeze="frozen")
    with pytest.raises(SettingError, match=r"a multiple of 2\^depth = 8"):
        check_image_size(ModelConfig(depth=3), 36)


def test_no_code_tests_an_encoder_by_name():
    """Quirks live in the registry entries: nothing outside it compares ``encoder`` with "none"."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"""encoder\s*[!=]=\s*["']none["']""")
    found = [f"{p.relative_to(root)}:{n}" for p in [*root.glob("segcore/**/*.py"), *root.glob("app_pages/*.py")]
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found

"""Plain U-Net: heads, variants, in-model preprocessing, .keras round trips, cost, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from segcore.config import ModelConfig, RunConfig  # noqa: E402
from segcore.models import (  # noqa: E402
    build_model,
    count_params,
    encoder_param_count,
    forward_gflops,
    head_for,
    set_encoder_trainable,
)
from segcore.models.layers import Preprocess  # noqa: E402

pytestmark = pytest.mark.backend

TINY = dict(depth=3, filters=4)


def test_head_for():
    assert head_for("binary", 2) == ("sigmoid", 1)
    assert head_for("multiclass", 4) == ("softmax", 4)
    assert head_for("multilabel", 4) == ("sigmoid", 3)
    with pytest.raises(ValueError, match="softmax over 1 class"):
        head_for("multiclass", 1)
    with pytest.raises(ValueError, match="binary mode needs exactly 2 classes.*got num_classes=3"):
        head_for("binary", 3)
    with pytest.raises(ValueError, match=r"unknown mode 'softmax'; valid modes are"):
        head_for("softmax", 3)


@pytest.mark.parametrize(
    "cfg, size, channels, mode, k",
    [
        (ModelConfig(depth=3, filters=4), 16, 3, "binary", 2),
        (ModelConfig(depth=4, filters=4, activation="elu", norm="none", upsampling="upsample"), 32, 1,
         "multiclass", 4),
        (ModelConfig(depth=5, filters=2, dropout=0.2, norm="batch"), 32, 3, "multilabel", 4),
        (RunConfig.from_dict({"model": {"depth": 3, "filters": 6, "batch_norm": True}}).model, 16, 3, "binary", 2),
    ],
)
def test_unet_variants_round_trip_through_keras_file(tmp_path, cfg, size, channels, mode, k):
    from segcore import losses
    from segcore.metrics import segmentation_metrics

    model = build_model(cfg, image_size=size, channels=channels, mode=mode, num_classes=k)
    activation, outputs = head_for(mode, k)
    assert tuple(model.input.shape) == (None, size, size, channels)
    assert tuple(model.output.shape) == (None, size, size, outputs)
    assert model.get_layer("head").get_config()["activation"] == activation
    assert len([layer for layer in model.layers if layer.name.startswith("pool")]) == cfg.depth
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == (cfg.norm == "batch")
    assert any(isinstance(layer, keras.layers.GroupNormalization) for layer in model.layers) == (cfg.norm == "group")
    # the compiled loss and metrics travel with the file: no custom_objects needed to load
    # run_eagerly: one step does not repay tracing a graph (seconds per model on a small CPU)
    model.compile(optimizer="adam", loss=losses.get("auto", mode=mode), metrics=segmentation_metrics(mode, k),
                  run_eagerly=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, size, size, channels)).astype("float32")
    if mode == "multiclass":
        y = np.eye(k, dtype="float32")[rng.integers(0, k, (2, size, size))]
    else:
        y = rng.integers(0, 2, (2, size, size, outputs)).astype("float32")
    y[:, 0, :, :] = -1  # a void row, as the trainer marks ignored pixels
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and 0.0 <= logs["dice"] <= 1.0
    before = keras.ops.convert_to_numpy(model(x, training=False))
    if mode == "multiclass":
        np.testing.assert_allclose(before.sum(-1), 1.0, rtol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), before, rtol=1e-5, atol=1e-6)
    assert loaded.loss.get_config() == model.loss.get_config()


def test_preprocess_matches_keras_applications():
    x = np.random.default_rng(1).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    apps = keras.applications
    cases = {
        "caffe": apps.vgg16.preprocess_input,
        "torch": apps.densenet.preprocess_input,
        "tf": apps.mobilenet_v2.preprocess_input,
    }
    for style, reference in cases.items():
        ours = keras.ops.convert_to_numpy(Preprocess(style)(x))
        np.testing.assert_allclose(ours, reference(x.copy()), rtol=1e-5, atol=1e-4, err_msg=style)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(Preprocess("unit")(x)), x / 255.0, rtol=1e-6)
    np.testing.assert_allclose(apps.resnet50.preprocess_input(x.copy()), apps.vgg16.preprocess_input(x.copy()))
    grey = x[..., :1]
    rgb = keras.ops.convert_to_numpy(Preprocess("tf", to_rgb=True)(grey))
    assert rgb.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(rgb[..., 2], grey[..., 0] / 127.5 - 1, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown preprocessing style"):
        Preprocess("imagenet")


def test_count_params_and_contracting_path():
    # contracting path: enc0 (3->4), enc1 (4->8), enc2 (8->16), bottleneck enc3 (16->32);
    # two 3x3 convs per block without bias (a norm follows): batch norm keeps 4 weights per
    # channel, group norm 2 (scale and offset)
    for norm, per_channel in (("batch", 4), ("group", 2)):
        model = build_model(ModelConfig(**{**TINY, "norm": norm}), image_size=16, channels=3, mode="binary", num_classes=2)
        assert count_params(model) == model.count_params()
        expected = 0
        for cin, cout in ((3, 4), (4, 8), (8, 16), (16, 32)):
            expected += 9 * cin * cout + 9 * cout * cout + 2 * per_channel * cout
        assert encoder_param_count(model) == expected


def test_forward_gflops_golden():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)  # 2 * 8*8 * 3*3*3 * 4 = 13824
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 2 * 8*8 * 3*3 * 4 = 4608
    x = keras.layers.Conv2DTranspose(2, 2, strides=2)(x)  # 2 * 8*8*4 * 2*2 * 2 = 4096
    x = keras.layers.Dense(5)(x)  # 2 * 16*16*2 * 5 = 5120
    model = keras.Model(inp, x)
    total = 13824 + 4608 + 4096 + 5120
    assert forward_gflops(model) * 1e9 == pytest.approx(total)
    assert forward_gflops(model, 16) * 1e9 == pytest.approx(4 * total)
    # from a config: the same as building it
    cfg = ModelConfig(**TINY)
    built = build_model(cfg, image_size=32, channels=3, mode="binary", num_classes=2)
    assert forward_gflops(cfg, 32) == pytest.approx(forward_gflops(built))


@pytest.mark.parametrize(
    "cfg, size, channels, message",
    [
        (dict(depth=4), 40, 3, r"image size 40 is not divisible by 2\^depth = 16 \(depth 4\); use a multiple"),
        (dict(), 32, 2, "channels must be 1 .grey. or 3 .RGB., got 2"),
        (dict(encoder="resnet50"), 48, 3, "image size 48 does not fit encoder 'resnet50': it must be a "
                                          "multiple of 32"),
    ],
)
def test_bad_settings(cfg, size, channels, message):
    with pytest.raises(ValueError, match=message):
        build_model(ModelConfig(**cfg), image_size=size, channels=channels, mode="binary", num_classes=2)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(depth=6), r"setting model.depth is 6; expected a whole number from 3 to 5"),
        (dict(activation="gelu"), r"setting model.activation is 'gelu'; expected one of 'relu', 'elu'"),
        (dict(upsampling="bilinear"), "setting model.upsampling is 'bilinear'"),
        (dict(weights="imagenet"), "setting model.weights is 'imagenet'; expected 'none' or a weights file: ImageNet "
                                   "weights need a pretrained encoder"),
        (dict(freeze="frozen"), "setting model.freeze is 'frozen'; expected 'trainable' for the plain U-Net"),
        (dict(encoder="vgg19"), r"setting model.encoder is 'vgg19'; expected one of 'none', 'vgg16', 'resnet50'"),
        (dict(dropout=1.5), r"setting model.dropout is 1.5; expected a finite number in \[0, 1\)"),
    ],
)
def test_bad_model_settings_are_refused_when_built(cfg, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**cfg)


def test_k1_softmax_is_an_error():
    with pytest.raises(ValueError, match="multiclass .softmax. mode needs at least 2 classes"):
        build_model(ModelConfig(**TINY), image_size=16, channels=3, mode="multiclass", num_classes=1)


def test_weights_file_round_trip_and_misfit(tmp_path):
    cfg = ModelConfig(**TINY)
    model = build_model(cfg, image_size=16, channels=3, mode="binary", num_classes=2)
    path = tmp_path / "tiny.weights.h5"
    model.save_weights(path)
    again = build_model(ModelConfig(**TINY, weights=str(path)), image_size=16, channels=3, mode="binary",
                        num_classes=2)
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    with pytest.raises(ValueError, match=f"weights file {path} does not fit this model"):
        build_model(ModelConfig(depth=3, filters=8, weights=str(path)), image_size=16, channels=3, mode="binary",
                    num_classes=2)
    with pytest.raises(ValueError, match="setting model.weights is .*missing.weights.h5 does not exist"):
        build_model(ModelConfig(**TINY, weights=str(tmp_path / "missing.weights.h5")), image_size=16, channels=3,
                    mode="binary", num_classes=2)


def test_set_encoder_trainable_needs_an_encoder():
    model = build_model(ModelConfig(**TINY), image_size=16, channels=3, mode="binary", num_classes=2)
    with pytest.raises(ValueError, match="has no pretrained encoder"):
        set_encoder_trainable(model, True)


@pytest.mark.slow
def test_models_cli_json(capsys):
    from segcore.cli import main

    assert main(["models", "--image-size", "32", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["unet", "vgg16", "resnet50", "densenet121", "mobilenetv2"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["vgg16"]["encoder_params"] == 14_714_688  # keras.applications VGG16, no top
    unet = build_model(ModelConfig(), image_size=32, channels=3, mode="binary", num_classes=2)
    assert by_name["unet"]["params"] == count_params(unet)
    assert by_name["unet"]["gflops"] == pytest.approx(forward_gflops(unet), abs=0.01)
    assert all(r["gflops"] > 0 and r["params"] > r["encoder_params"] > 0 for r in rows)
    assert main(["models", "--image-size", "40"]) == 1
    assert "image size 40 is not divisible" in capsys.readouterr().err


@pytest.mark.parametrize("channels, groups", [(12, 4), (16, 8), (6, 6), (8, 1)])
def test_group_norm_computes_what_keras_group_normalization_does(channels, groups):
    """Same outputs as Keras's layer with the same weights, an offset far above the spread included (no
    cancellation), gradients too where the backend is TensorFlow; other ranks fall back to Keras's path."""
    from segcore.models.layers import GroupNorm

    rng = np.random.default_rng(channels + groups)
    x = (rng.normal(0, 1, (3, 9, 7, channels)) * rng.uniform(0.01, 5, channels) + rng.uniform(-300, 300, channels))
    x = x.astype("float32")
    ours, theirs = GroupNorm(groups=groups), keras.layers.GroupNormalization(groups=groups)
    ours.build(x.shape)
    theirs.build(x.shape)
    weights = [rng.normal(1, 0.3, channels).astype("float32"), rng.normal(0, 0.3, channels).astype("float32")]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    grouped = x.astype("float64").reshape(3, 9, 7, groups, channels // groups)  # the definition, in float64
    want = (grouped - grouped.mean(axis=(1, 2, 4), keepdims=True)) / np.sqrt(grouped.var(axis=(1, 2, 4), keepdims=True) + 1e-3)
    want = want.reshape(x.shape) * weights[0] + weights[1]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)), want, atol=1e-3)  # x * scale + shift: ~1e-7 of 3e4
    if keras.backend.backend() == "tensorflow":  # Keras's own, the same function (on PyTorch its moments
        # come from E[x^2] - E[x]^2, and this input's offsets cost it up to 1.9 of cancellation)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(theirs(x)), want, atol=3e-3)
    assert ours.get_config() == {**theirs.get_config(), "name": ours.get_config()["name"]}
    flat = rng.normal(0, 1, (2, 5, channels)).astype("float32")  # rank 3: Keras's own path
    np.testing.assert_allclose(keras.ops.convert_to_numpy(GroupNorm(groups=groups)(flat)),
                               keras.ops.convert_to_numpy(keras.layers.GroupNormalization(groups=groups)(flat)), atol=1e-5)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def grads(layer):
            xt = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                loss = tf.reduce_sum(layer(xt) * tf.constant(rng.normal(0, 1, x.shape).astype("float32")))
            return [g.numpy() for g in tape.gradient(loss, [xt, *layer.trainable_weights])]

        state = rng.bit_generator.state
        mine = grads(ours)
        rng.bit_generator.state = state  # the same upstream gradient for both
        for a, b in zip(mine, grads(theirs)):
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)


def test_a_model_saved_with_keras_group_normalization_gives_its_weights_to_todays(tmp_path, monkeypatch):
    """Runs trained before ``GroupNorm`` hold Keras's layer: their files load, and their weights (by layer
    name, as ``init_from_run`` matches them) predict the same in a model built today."""
    from segcore.models import builder
    from segcore.models.layers import GroupNorm

    cfg = ModelConfig(depth=3, filters=8)
    with monkeypatch.context() as m:
        m.setattr(builder, "GroupNorm", keras.layers.GroupNormalization)
        old = build_model(cfg, image_size=32, channels=3, mode="multiclass", num_classes=3)
    assert not any(isinstance(layer, GroupNorm) for layer in old.layers)
    old.save(tmp_path / "old.keras")
    loaded = keras.models.load_model(tmp_path / "old.keras", compile=False)
    new = build_model(cfg, image_size=32, channels=3, mode="multiclass", num_classes=3)
    assert sum(isinstance(layer, GroupNorm) for layer in new.layers) == 2 * (2 * cfg.depth + 1)
    for layer in new.layers:
        layer.set_weights(loaded.get_layer(layer.name).get_weights())
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(new(x)), keras.ops.convert_to_numpy(loaded(x)), atol=1e-4)

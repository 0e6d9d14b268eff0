"""Transfer between runs: a binary model's weights into a 3-class model, by name and shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from segcore.config import ModelConfig  # noqa: E402
from segcore.models import build_model  # noqa: E402
from segcore.models.transfer import load_matching_weights  # noqa: E402

pytestmark = pytest.mark.backend

CFG = ModelConfig(depth=3, filters=4)


def weights_of(model, name):
    return [keras.ops.convert_to_numpy(w) for w in model.get_layer(name).weights]


def test_binary_to_three_class_from_a_keras_file(tmp_path):
    from segcore import losses

    binary = build_model(CFG, image_size=16, channels=3, mode="binary", num_classes=2)
    binary.compile(optimizer="adam", loss=losses.get("dice", mode="binary"))
    path = tmp_path / "best.keras"
    binary.save(path)

    multi = build_model(CFG, image_size=16, channels=3, mode="multiclass", num_classes=3)
    report = load_matching_weights(multi, path)

    with_weights = [layer.name for layer in multi.layers if layer.weights]
    assert sorted(report.loaded) == sorted(n for n in with_weights if n != "head")
    assert report.skipped == [("head", "output head: always new")]
    for name in ("enc0_conv1", "enc3_gn2", "dec1_up", "dec0_conv2"):
        for a, b in zip(weights_of(multi, name), weights_of(binary, name)):
            np.testing.assert_array_equal(a, b)
    head = multi.get_layer("head").kernel
    assert tuple(head.shape) == (1, 1, 4, 3)
    d = report.to_dict()
    json.dumps(d)
    assert d["source"] == str(path)
    assert d["loaded_params"] == d["total_params"] - (4 * 3 + 3)  # all but the new head's kernel and bias


def test_shape_mismatch_and_missing_layers_are_reported():
    source = build_model(CFG, image_size=16, channels=3, mode="binary", num_classes=2)
    # one level deeper, same width: enc3 is now a plain block of the same shape as the old
    # bottleneck (loads); the new bottleneck enc4 and decoder level dec3 are not in the source
    deeper = build_model(ModelConfig(depth=4, filters=4), image_size=16, channels=3, mode="binary", num_classes=2)
    report = load_matching_weights(deeper, source, new_head=False)
    assert "enc3_conv1" in report.loaded and "dec2_up" in report.loaded
    assert "head" in report.loaded  # same head shape and new_head=False
    new_layers = sorted(n for n, _ in report.skipped)
    assert new_layers == sorted(
        [f"enc4_{k}{i}" for k in ("conv", "gn") for i in (1, 2)]
        + ["dec3_up"] + [f"dec3_{k}{i}" for k in ("conv", "gn") for i in (1, 2)]
    )
    assert {r for _, r in report.skipped} == {"not in source"}
    # a grey model: only the first convolution differs (1 input channel instead of 3)
    grey = build_model(CFG, image_size=16, channels=1, mode="binary", num_classes=2)
    report = load_matching_weights(grey, source)
    assert dict(report.skipped) == {
        "enc0_conv1": "shape mismatch: source [(3, 3, 3, 4)] vs new [(3, 3, 1, 4)]",
        "head": "output head: always new",
    }


def test_encoder_layers_transfer_by_path():
    source = build_model(ModelConfig(encoder="vgg16", filters=4), image_size=32, channels=3, mode="binary",
                         num_classes=2)
    target = build_model(ModelConfig(encoder="vgg16", filters=4), image_size=32, channels=1, mode="multilabel",
                         num_classes=4)
    report = load_matching_weights(target, source)
    assert "encoder/block1_conv1" in report.loaded and "encoder/block5_conv3" in report.loaded
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(target.get_layer("encoder").get_layer("block5_conv3").kernel),
        keras.ops.convert_to_numpy(source.get_layer("encoder").get_layer("block5_conv3").kernel),
    )
    assert ("head", "output head: always new") in report.skipped


def test_errors(tmp_path):
    model = build_model(CFG, image_size=16, channels=3, mode="binary", num_classes=2)
    with pytest.raises(FileNotFoundError, match="nope.keras does not exist"):
        load_matching_weights(model, tmp_path / "nope.keras")
    weights = tmp_path / "w.weights.h5"
    model.save_weights(weights)
    with pytest.raises(ValueError, match="is not a .keras file"):
        load_matching_weights(model, weights)
    unrelated = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    with pytest.raises(ValueError, match="no layer of 'unet' matches"):
        load_matching_weights(model, unrelated)
    with pytest.raises(ValueError, match="source must be a .keras path or a keras.Model, got int"):
        load_matching_weights(model, 3)

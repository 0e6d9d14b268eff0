"""Prediction sees images exactly as training saw them after import."""

import cv2
import numpy as np

from segcore.data import imageio
from segcore.prediction import Predictor, read_image
from segcore.visualize import decode_image


def _predictor(channels: int, size: int) -> Predictor:
    # prepare() needs no model: only the input size and channels.
    return Predictor(run_id="r", model=None, image_size=size, channels=channels, mode="binary", class_names=["bg", "fg"], checkpoint="")


def test_16bit_image_is_stretched_like_the_import(tmp_path):
    raw = np.linspace(1000, 3000, 64, dtype=np.float64).reshape(8, 8).astype(np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), raw)
    imported = imageio.read_image(path).array  # what the import stores
    assert imported.dtype == np.uint8 and imported.min() == 0 and imported.max() == 255
    from_file = read_image(path)
    from_upload = decode_image(path.read_bytes(), "deep.png")
    from_array = _predictor(1, 8).prepare(raw)[:, :, 0]
    np.testing.assert_array_equal(from_file, imported)
    np.testing.assert_array_equal(from_upload, imported)
    np.testing.assert_array_equal(from_array, imported.astype(np.float32))


def test_rgba_upload_drops_alpha_and_grey_model_gets_one_channel(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    img = decode_image(buf.tobytes(), "a.png")
    assert img.shape == (4, 4, 3) and img[0, 0].tolist() == [200, 0, 0]
    x = _predictor(1, 4).prepare(img)
    assert x.shape == (4, 4, 1) and x.dtype == np.float32

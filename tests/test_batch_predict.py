"""Predicting a folder or zip of images at once: one zip of masks back, bad files named, nothing written to disk."""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
import pytest

from segcore.data.uploads import UploadedFile
from segcore.prediction.batch import PROBLEMS_FILE, batch_images, predict_batch
from segcore.visualize import encode_mask
from segcore.workspace import ServerSettings


def _png(array) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _bright(image):
    """A stand-in model: class 1 where the image is bright."""
    grey = image if image.ndim == 2 else image.mean(axis=-1)
    return (grey > 100).astype(np.uint8)


def _image(seed, shape=(12, 10)):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def test_a_zip_with_one_bad_file_gives_masks_for_the_others_and_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = {"cells/a.png": _image(0), "cells/b.png": _image(1), "c.png": _image(2, (7, 9))}
    upload = _zip({**{k: _png(v) for k, v in good.items()}, "cells/broken.png": b"not an image",
                   "readme.txt": b"hello", "__MACOSX/cells/._a.png": b"x"})
    images, problems = batch_images([UploadedFile("batch.zip", upload)])
    assert [i.name for i in images] == ["cells/a.png", "cells/b.png", "c.png", "cells/broken.png"]
    assert problems == ["readme.txt: not an image file; expected a PNG, JPEG, TIFF, BMP or GIF image"]
    seen = []
    result = predict_batch(images, _bright, "binary", problems=problems, progress=lambda d, t, n: seen.append((d, t, n)))
    assert result.predicted == ["cells/a.png", "cells/b.png", "c.png"]
    assert len(result.problems) == 2 and result.problems[1].startswith("cells/broken.png is not an image")
    assert ".png, .jpg" in result.problems[1]  # what was expected
    assert seen[-1] == (4, 4, "cells/broken.png")
    with zipfile.ZipFile(io.BytesIO(result.data)) as zf:
        assert sorted(zf.namelist()) == sorted(["cells/a_mask.png", "cells/b_mask.png", "c_mask.png", PROBLEMS_FILE])
        for name, image in good.items():
            stem = name[:-4]
            mask = cv2.imdecode(np.frombuffer(zf.read(f"{stem}_mask.png"), np.uint8), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(mask, _bright(image))
            # the same bytes single-image predict offers for download
            assert zf.read(f"{stem}_mask.png") == encode_mask(_bright(image), "binary", stem.split("/")[-1])[0]
        assert "readme.txt" in zf.read(PROBLEMS_FILE).decode()
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_loose_files_unsafe_names_and_same_stems():
    files = [UploadedFile("a.png", _png(_image(0))), UploadedFile("a.jpg", cv2.imencode(".jpg", _image(1))[1].tobytes()),
             UploadedFile("../evil.png", _png(_image(2))), UploadedFile("odd name!.png", _png(_image(3)))]
    images, problems = batch_images(files)
    assert [i.name for i in images] == ["a.png", "a.jpg", "odd_name_.png"]
    assert len(problems) == 1 and problems[0].startswith("../evil.png:") and "'..'" in problems[0]
    result = predict_batch(images, _bright, "multiclass")
    assert result.files == ["a_mask.png", "a_jpg_mask.png", "odd_name__mask.png"] and not result.problems


def test_multilabel_masks_are_one_plane_per_class():
    image = _image(4)
    result = predict_batch(batch_images([UploadedFile("x.png", _png(image))])[0],
                           lambda im: np.stack([_bright(im), 1 - _bright(im)], axis=-1), "multilabel")
    assert result.files == ["x_1.png", "x_2.png"]


def test_unsafe_or_oversized_zips_are_refused_by_name():
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../outside.png", _png(_image(0)))
    images, problems = batch_images([UploadedFile("evil.zip", evil.getvalue()), UploadedFile("ok.png", _png(_image(1)))])
    assert [i.name for i in images] == ["ok.png"]
    assert problems[0].startswith("evil.zip:") and "refusing the archive" in problems[0]
    many = _zip({f"{i}.png": _png(_image(i)) for i in range(5)})
    images, problems = batch_images([UploadedFile("many.zip", many)], ServerSettings(max_archive_files=3))
    assert images == [] and "more than 3 files" in problems[0]
    images, problems = batch_images([UploadedFile("fake.zip", b"PK not really")])
    assert images == [] and "not a zip archive" in problems[0]


@pytest.mark.slow
def test_batch_masks_are_what_the_run_model_predicts():
    from segcore.config import ModelConfig
    from segcore.models import build_model
    from segcore.prediction import Predictor

    model = build_model(ModelConfig(depth=3, filters=8), image_size=32, channels=3, mode="multiclass", num_classes=3)
    predictor = Predictor(run_id="r", model=model, image_size=32, channels=3, mode="multiclass", class_names=["a", "b", "c"], checkpoint="")
    rgb = np.random.default_rng(5).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    images, problems = batch_images([UploadedFile("img.zip", _zip({"one.png": _png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))}))])
    result = predict_batch(images, lambda im: predictor.predict_mask(im, 0.5), predictor.mode, problems=problems)
    with zipfile.ZipFile(io.BytesIO(result.data)) as zf:
        mask = cv2.imdecode(np.frombuffer(zf.read("one_mask.png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(mask, predictor.predict_mask(rgb))

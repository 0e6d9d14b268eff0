"""load_arrays: the resize path training uses, checked against per-file OpenCV resizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from segcore.data.arrays import load_arrays
from segcore.data.resample import resize_labels
from segcore.data.dataset import load_dataset
from segcore.data.demo import make_demo
from segcore.data.imports import import_dataset


def test_multiclass_rgb(workspace):
    make_demo(workspace, num_samples=6, size=40)
    ds = load_dataset("demo", workspace)
    ids = ds.ids[::-1][:4]
    images, masks = load_arrays(ds, ids, 32, workers=3)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    assert masks.shape == (4, 32, 32) and masks.dtype == np.uint8
    for i, sid in enumerate(ids):
        assert np.array_equal(images[i], cv2.resize(ds.image(sid), (32, 32), interpolation=cv2.INTER_AREA))
        assert np.array_equal(masks[i], resize_labels(ds.mask(sid), 32, 32))  # the centred label vote
    # By name, all ids, one worker: same arrays.
    all_images, all_masks = load_arrays("demo", None, 32, workers=1, workspace=workspace)
    assert np.array_equal(all_images[ds.ids.index(ids[0])], images[0])


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_grey_binary_with_void_kept(tmp_path, workspace):
    src = tmp_path / "src"
    for i in range(3):
        _write(src / "images" / f"{i}.png", np.full((20, 30), 40 * i, np.uint8))
        m = np.zeros((20, 30), np.uint8)
        m[:, 15:] = 1
        m[:5, :] = 255
        _write(src / "masks" / f"{i}.png", m)
    report = import_dataset(src, "g", options={"classes": ["background", "thing"], "ignore": 255}, workspace=workspace)
    assert report.ok, report.error
    assert report.dataset.channels == 1
    images, masks = load_arrays("g", ["2", "0"], 10, workspace=workspace)
    assert images.shape == (2, 10, 10, 1) and images[0].max() == 80 and images[1].max() == 0
    assert masks.shape == (2, 10, 10)
    assert set(np.unique(masks)) == {0, 1, 255}  # nearest keeps void; no blended values


def test_multilabel_planes(tmp_path, workspace):
    src = tmp_path / "src"
    for i in range(2):
        _write(src / "images" / f"{i}.png", np.zeros((16, 16), np.uint8))
        a = np.zeros((16, 16), np.uint8)
        a[:, :10] = 255
        b = np.zeros((16, 16), np.uint8)
        b[:, 6:] = 255
        _write(src / "masks" / "a" / f"{i}.png", a)
        _write(src / "masks" / "b" / f"{i}.png", b)
    report = import_dataset(src, "ml", workspace=workspace)
    assert report.ok and report.dataset.mode == "multilabel"
    images, masks = load_arrays("ml", None, 8, workspace=workspace)
    assert masks.shape == (2, 8, 8, 2)
    assert masks[0, 0, :, 0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert masks[0, 0, :, 1].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]


def test_bad_arguments(workspace):
    make_demo(workspace, num_samples=2, size=16)
    with pytest.raises(KeyError, match="nope"):
        load_arrays("demo", ["nope"], 8, workspace=workspace)
    with pytest.raises(ValueError, match="size"):
        load_arrays("demo", None, 0, workspace=workspace)
    with pytest.raises(FileNotFoundError, match="no dataset named 'missing'"):
        load_arrays("missing", None, 8, workspace=workspace)


def test_cache_is_used_and_tied_to_content(workspace):
    import json

    from segcore.data.arrays import cache_dir

    make_demo(workspace, num_samples=5, size=24)
    ds = load_dataset("demo", workspace)
    fresh = load_arrays(ds, ds.ids[1:3], 16, cache=False)
    assert not cache_dir(ds, 16).exists()
    first = load_arrays(ds, ds.ids[1:3], 16)
    assert (cache_dir(ds, 16) / "images.npy").is_file()
    # With the PNGs gone, rows still come from the cache, identical to decoding.
    saved = {p: p.read_bytes() for p in (ds.root / "images").glob("*.png")}
    for p in saved:
        p.unlink()
    second = load_arrays(ds, [ds.ids[2], ds.ids[1]], 16)
    assert np.array_equal(second[0][1], fresh[0][0]) and np.array_equal(second[1][0], fresh[1][1])
    assert np.array_equal(first[0], fresh[0]) and np.array_equal(first[1], fresh[1])
    for p, data in saved.items():
        p.write_bytes(data)
    # A cache made for other content is rebuilt, not trusted.
    meta = cache_dir(ds, 16) / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "content_hash": "sha256:other"}))
    third = load_arrays(ds, ds.ids[1:3], 16)
    assert np.array_equal(third[0], fresh[0])
    assert json.loads(meta.read_text())["content_hash"] == ds.info.content_hash

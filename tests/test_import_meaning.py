"""Imports that keep their authors' meaning: annotators, fields of view, class names, copies, sample ids.

The fixtures are small trees built the way the public datasets are laid out
(a retinal-vessel set: ``images/``, ``1st_manual/``, a ``2nd_manual/`` for the
test images only, ``mask/`` holding the field of view).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segcore.data.dataset import load_dataset, pixel_hash
from segcore.data.imports import import_dataset


def _write(folder: Path, name: str, arr: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(folder / name)


def vessel_tree(root: Path, *, size: int = 48, n_train: int = 4, n_test: int = 3, misnamed: bool = True, duplicate: bool = True) -> Path:
    """A DRIVE-like tree: training/ and test/ with images/, 1st_manual/, mask/ (FOV); 2nd_manual/ in test/ only.

    ``misnamed``: one field-of-view file of training/ has a stray space in its name.
    ``duplicate``: a byte-identical copy of test/ lies in copy/test/.
    """
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    fov = ((((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2) <= (size * 0.45) ** 2) * 255).astype(np.uint8)
    for subset, n, first in (("training", n_train, 21), ("test", n_test, 1)):
        for i in range(first, first + n):
            vessels = np.zeros((size, size), np.uint8)
            cv2.line(vessels, (int(rng.integers(10, 20)), 10), (int(rng.integers(28, 38)), size - 10), 255, 2)
            vessels[fov == 0] = 0
            _write(root / subset / "images", f"{i:02d}_{subset}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
            _write(root / subset / "1st_manual", f"{i:02d}_manual1.gif", vessels)
            if subset == "test":
                second = vessels.copy()
                second[:, : size // 2] = 0  # the second annotator marks less
                _write(root / subset / "2nd_manual", f"{i:02d}_manual2.gif", second)
            space = " " if misnamed and subset == "training" and i == first + 1 else ""
            _write(root / subset / "mask", f"{i:02d}_{subset}_mask{space}.gif", fov)
    if duplicate:
        shutil.copytree(root / "test", root / "copy" / "test")
    return root


def _kinds(report) -> list[str]:
    return [p.kind for p in report.problems]


def _problem(report, kind):
    found = [p for p in report.problems if p.kind == kind]
    assert found, f"expected a {kind!r} problem, got {_kinds(report)}"
    return found[0]


def test_second_annotator_for_test_only_keeps_one_class(tmp_path, workspace):
    src = vessel_tree(tmp_path / "drive", duplicate=False)
    report = import_dataset(src, "drive2", options={"annotator": "2nd_manual"}, workspace=workspace)
    assert report.ok, report.error
    assert report.dataset.num_classes == 2, report.dataset.class_names
    ds = load_dataset("drive2", workspace)
    # Test images use the 2nd annotator (left half empty), training images the 1st (no 2nd there): one class value.
    test_mask = ds.mask("01_test")
    assert set(np.unique(test_mask)) <= {0, 1, 255} and not (test_mask[:, :24] == 1).any()
    train_mask = ds.mask("21_training")
    assert (train_mask == 1).any() and set(np.unique(train_mask)) <= {0, 1, 255}
    # Which images have which annotator is said, naming the images that fell back.
    fallback = _problem(report, "annotator_missing")
    assert "2nd_manual" in fallback.message and "1st_manual" in fallback.message
    assert sorted(fallback.files) == [f"training/images/{i}_training.png" for i in range(21, 25)]
    assert report.details["annotator_of_samples"] == {"1st_manual": 4, "2nd_manual": 3}


def test_default_annotator_names_the_class_once(tmp_path, workspace):
    src = vessel_tree(tmp_path / "drive", duplicate=False)
    report = import_dataset(src, "drive1", workspace=workspace)
    assert report.ok and report.dataset.class_names == ["background", "1st_manual"]
    others = [p for p in report.problems if p.kind == "other_annotator"]
    assert len(others) == 1 and others[0].files == ("test/2nd_manual",)
    assert len([p for p in report.problems if p.kind == "field_of_view"]) == 1


def test_unknown_annotator_folder_is_refused(tmp_path, workspace):
    src = vessel_tree(tmp_path / "drive", duplicate=False)
    report = import_dataset(src, "drive3", options={"annotator": "3rd_manual"}, workspace=workspace)
    assert not report.ok and "3rd_manual" in report.error and "2nd_manual" in report.error


def test_class_names_name_a_one_class_folder_dataset(tmp_path, workspace):
    src = vessel_tree(tmp_path / "drive", duplicate=False)
    report = import_dataset(src, "named", options={"classes": ["background", "vessel"]}, workspace=workspace)
    assert report.ok, report.error
    assert report.dataset.class_names == ["background", "vessel"]
    assert report.details["class_folders_named"] == {"1st_manual": "vessel"}


def test_class_names_that_cannot_be_matched_suggest_merge(tmp_path, workspace):
    src = tmp_path / "two"
    rng = np.random.default_rng(1)
    for i in range(3):
        _write(src / "images", f"{i}.png", rng.integers(0, 255, (16, 16), dtype=np.uint8))
        for c in ("axon", "myelin"):
            _write(src / "masks" / c, f"{i}.png", (rng.random((16, 16)) > 0.7).astype(np.uint8) * 255)
    report = import_dataset(src, "two", options={"classes": ["background", "a", "b"]}, workspace=workspace)
    assert not report.ok
    assert "--merge axon=a" in report.error and "myelin" in report.error


def test_fov_file_that_pairs_with_nothing_is_named(tmp_path, workspace):
    src = vessel_tree(tmp_path / "drive", duplicate=False)
    report = import_dataset(src, "fov", workspace=workspace)
    assert report.ok
    unpaired = _problem(report, "unpaired_mask")
    assert unpaired.files == ("training/mask/22_training_mask .gif",)
    assert "22_training.png" in unpaired.message  # the nearest name it could have meant
    missing = _problem(report, "missing_field_of_view")
    assert missing.files == ("training/images/22_training.png",)
    # The others have their field of view: outside it is void.
    ds = load_dataset("fov", workspace)
    assert (ds.mask("21_training") == 255).any() and not (ds.mask("22_training") == 255).any()


def test_identical_folders_are_reported(tmp_path, workspace):
    src = vessel_tree(tmp_path / "drive")
    report = import_dataset(src, "dup", workspace=workspace)
    assert report.ok
    dup = _problem(report, "duplicate_images")
    assert "copy/test/images" in dup.message and "test/images" in dup.message
    assert len(dup.files) == 6
    # Every sample records a hash of its pixels, the same for the copies.
    stored = json.loads((workspace.dataset_dir("dup") / "dataset.json").read_text())
    hashes = {s["source_image"]: s["pixel_sha256"] for s in stored["samples"]}
    assert hashes["test/images/01_test.png"] == hashes["copy/test/images/01_test.png"]
    assert hashes["test/images/01_test.png"] != hashes["test/images/02_test.png"]
    ids = {s["source_image"]: s["id"] for s in stored["samples"]}
    assert ids["test/images/01_test.png"] == "01_test" and ids["copy/test/images/01_test.png"] == "copy_01_test"
    ds = load_dataset("dup", workspace)
    sample = next(s for s in ds.info.samples if s.source_image == "test/images/01_test.png")
    assert sample.pixel_sha256 == pixel_hash(ds.image(sample.id))


def test_sample_ids_keep_the_folder_that_tells_them_apart(tmp_path, workspace):
    src = tmp_path / "aerial"
    rng = np.random.default_rng(2)
    for tile in (1, 5):
        for i in (1, 2):
            _write(src / f"Tile {tile}" / "images", f"image_part_00{i}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
            _write(src / f"Tile {tile}" / "masks", f"image_part_00{i}.png", (rng.random((16, 16)) > 0.5).astype(np.uint8) * 255)
    report = import_dataset(src, "tiles", layout="paired", workspace=workspace)
    assert report.ok, report.error
    ids = sorted(s.id for s in report.dataset.samples)
    assert ids == ["Tile_1_image_part_001", "Tile_1_image_part_002", "Tile_5_image_part_001", "Tile_5_image_part_002"]


def test_paired_layout_on_labelme_data_says_what_is_there(tmp_path, workspace):
    src = tmp_path / "lm"
    src.mkdir()
    for stem in ("0000e88ab", "0001f3c2d"):
        _write(src, f"{stem}.jpg", np.zeros((8, 8, 3), np.uint8))
        _write(src, f"{stem}.png", np.zeros((8, 8), np.uint8))
        (src / f"{stem}.json").write_text(json.dumps({"shapes": [], "imagePath": f"{stem}.jpg", "imageHeight": 8, "imageWidth": 8}))
    report = import_dataset(src, "lm", layout="paired", workspace=workspace)
    assert not report.ok
    assert "'0000e88ab', '0000e88ab'" not in report.error
    assert "labelme" in report.error.lower() and "--layout labelme" in report.error


# --------------------------------------------------------------------------- pairing never folds case silently


def test_names_that_differ_only_in_case_pair_exactly(tmp_path, workspace):
    src = tmp_path / "case"
    img_a, img_b = np.full((8, 8), 40, np.uint8), np.full((8, 8), 200, np.uint8)
    _write(src / "images", "A.png", img_a)
    _write(src / "images", "a.png", img_b)
    mask_a = np.zeros((8, 8), np.uint8)
    mask_a[:4] = 255
    mask_b = np.zeros((8, 8), np.uint8)
    mask_b[:, :2] = 255
    _write(src / "masks", "A.png", mask_a)
    _write(src / "masks", "a.png", mask_b)
    report = import_dataset(src, "case", workspace=workspace)
    assert report.ok, report.error
    assert "ignored_files" not in _kinds(report)
    ds = load_dataset("case", workspace)
    by_source = {s.source_image: s for s in ds.info.samples}
    assert by_source["images/A.png"].source_mask == "masks/A.png"
    assert by_source["images/a.png"].source_mask == "masks/a.png"
    assert np.array_equal(ds.mask(by_source["images/a.png"].id), (mask_b > 0).astype(np.uint8))


def test_case_only_match_that_could_mean_two_masks_is_named(tmp_path, workspace):
    src = tmp_path / "case2"
    for name in ("Cell.png", "other.png"):
        _write(src / "images", name, np.full((8, 8), 9, np.uint8))
    for name in ("CELL.png", "cell.png", "other.png"):
        _write(src / "masks", name, (np.arange(64).reshape(8, 8) % 2 * 255).astype(np.uint8))
    report = import_dataset(src, "case2", workspace=workspace)
    assert report.ok
    amb = _problem(report, "ambiguous_pair")
    assert "images/Cell.png" in amb.files and "masks/CELL.png" in amb.files and "masks/cell.png" in amb.files
    assert [s.source_image for s in report.dataset.samples] == ["images/other.png"]


# --------------------------------------------------------------------------- mask values: the histogram decides


def _id_masks(src: Path, dtype, bright: int, n: int = 4) -> None:
    """Masks with ids 0/1/2 (class 2 about a quarter of the pixels) and a few pixels of one bright value."""
    for i in range(n):
        m = np.zeros((32, 32), dtype)
        m[:, 8:16] = 1
        m[:, 16:24] = 2
        m[0, :8] = bright  # 8 of 1024 pixels
        _write(src / "images", f"{i}.png", np.full((32, 32), 50 + i, np.uint8))
        if dtype == np.uint16:
            (src / "masks").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(src / "masks" / f"{i}.png"), m)
        else:
            _write(src / "masks", f"{i}.png", m)


@pytest.mark.parametrize("dtype, bright", [(np.uint8, 255), (np.uint16, 65535)])
def test_ids_with_a_rare_bright_value_are_not_binary(tmp_path, workspace, dtype, bright):
    src = tmp_path / "ids"
    _id_masks(src, dtype, bright)
    report = import_dataset(src, "ids", workspace=workspace)
    assert report.ok, report.error
    assert report.dataset.num_classes == 3, report.details["mask_encoding"]
    assert "mask_noise" not in _kinds(report)
    m = load_dataset("ids", workspace).mask("0")
    assert (m[:, 16:24] == 2).all() and (m[1:, 8:16] == 1).all()
    assert (m[0, :8] == 255).all()  # the rare value is void, never a class or a neighbour's class
    said = json.dumps(report.to_dict())
    assert str(bright) in said and "32 px" in said.replace(",", "")  # 8 px in each of 4 masks


def test_float_mask_with_nan_is_a_problem_not_a_lost_class(tmp_path, workspace):
    tifffile = pytest.importorskip("tifffile")
    src = tmp_path / "nan"
    for i in range(3):
        m = np.zeros((16, 16), np.float32)
        m[4:12, 4:12] = 1.0
        m[0] = np.nan
        m[15, 0] = np.inf
        _write(src / "images", f"{i}.png", np.full((16, 16), 70 + i, np.uint8))
        (src / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(src / "masks" / f"{i}.tif", m)
    report = import_dataset(src, "nan", workspace=workspace)
    assert report.ok, report.error
    assert "empty_class" not in _kinds(report)
    bad = _problem(report, "not_finite")
    assert bad.severity == "error" and len(bad.files) == 3 and "17" in bad.message
    m = load_dataset("nan", workspace).mask("0")
    assert (m[4:12, 4:12] == 1).all() and (m[0] == 255).all() and m[15, 0] == 255 and m[8, 0] == 0


def test_an_unlisted_colour_is_void_in_every_mask_or_in_none(tmp_path, workspace):
    """A black strip not in the colour table: solid (3 px wide) in some masks, thin (1 px) in others."""
    src = tmp_path / "strips"
    for i in range(6):
        rgb = np.zeros((32, 32, 3), np.uint8)
        rgb[:, :16] = (255, 0, 0)
        rgb[:, 16:] = (0, 255, 0)
        width = 3 if i % 2 == 0 else 1
        rgb[:, 14 : 14 + width] = (0, 0, 0)  # unlabelled
        _write(src / "images", f"{i}.png", np.full((32, 32, 3), 20 * i, np.uint8))
        _write(src / "masks", f"{i}.png", rgb)
    report = import_dataset(src, "strips", options={"colors": {"road": [255, 0, 0], "grass": [0, 255, 0]}, "class0": "class"}, workspace=workspace)
    assert report.ok, report.error
    ds = load_dataset("strips", workspace)
    for i in range(6):
        width = 3 if i % 2 == 0 else 1
        m = ds.mask(str(i))
        assert (m[:, 14 : 14 + width] == 255).all(), f"mask {i}: {np.unique(m[:, 14:14 + width])}"
    outside = _problem(report, "values_outside_table")
    assert "(0, 0, 0)" in outside.message and len(outside.files) == 6


def test_paired_mask_that_pairs_with_nothing_names_the_nearest_image(tmp_path, workspace):
    src = tmp_path / "near"
    for stem in ("cell_01", "cell_02", "cell_03"):
        _write(src / "images", f"{stem}.png", np.full((8, 8), 10, np.uint8))
    for name in ("cell_01_mask.png", "cell_02_mask.png", "cell_03 _mask.png"):
        _write(src / "masks", name, (np.eye(8) * 255).astype(np.uint8))
    report = import_dataset(src, "near", workspace=workspace)
    assert report.ok
    lonely = _problem(report, "unpaired_mask")
    assert lonely.files == ("masks/cell_03 _mask.png",) and "nearest image: cell_03.png" in lonely.message
    assert _problem(report, "unpaired_image").files == ("images/cell_03.png",)


def test_sample_folder_with_two_images_is_named_not_dropped(tmp_path, workspace):
    src = tmp_path / "ps"
    for sid in ("s1", "s2", "s3"):
        _write(src / sid / "images", f"{sid}.png", np.full((8, 8, 3), 60, np.uint8))
        _write(src / sid / "masks", "m0.png", (np.eye(8) * 255).astype(np.uint8))
    _write(src / "s3" / "images", "s3_copy.png", np.full((8, 8, 3), 61, np.uint8))
    report = import_dataset(src, "ps", layout="per_sample", workspace=workspace)
    assert report.ok and sorted(s.id for s in report.dataset.samples) == ["s1", "s2"]
    odd = [p for p in report.problems if p.kind == "unpaired_image"]
    assert odd and odd[0].files == ("s3",) and "2 images in images/" in odd[0].message


def test_annotator_suffix_missing_for_some_images_falls_back_and_says_so(tmp_path, workspace):
    src = tmp_path / "chase"
    for i in range(4):
        _write(src, f"Image_{i:02d}L.png", np.full((8, 8), 40 + i, np.uint8))
        _write(src, f"Image_{i:02d}L_1stHO.png", (np.eye(8) * 255).astype(np.uint8))
        if i >= 2:
            _write(src, f"Image_{i:02d}L_2ndHO.png", (np.fliplr(np.eye(8)) * 255).astype(np.uint8))
    report = import_dataset(src, "chase", options={"annotator": "2ndHO"}, workspace=workspace)
    assert report.ok, report.error
    assert len(report.dataset.samples) == 4 and "unpaired_image" not in _kinds(report)
    missing = _problem(report, "annotator_missing")
    assert missing.files == ("Image_00L_1stHO.png", "Image_01L_1stHO.png")


def test_class_folder_masks_pair_with_the_image_of_their_own_case(tmp_path, workspace):
    src = tmp_path / "cf"
    _write(src / "images", "A.png", np.full((8, 8), 40, np.uint8))
    _write(src / "images", "a.png", np.full((8, 8), 90, np.uint8))
    upper, lower = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    upper[:2] = 255
    lower[:, :2] = 255
    for c in ("cell", "wall"):
        _write(src / "masks" / c, "A.png", upper if c == "cell" else np.zeros((8, 8), np.uint8))
        _write(src / "masks" / c, "a.png", lower if c == "cell" else np.zeros((8, 8), np.uint8))
    report = import_dataset(src, "cf", workspace=workspace)
    assert report.ok, report.error
    ds = load_dataset("cf", workspace)
    by_source = {s.source_image: s.id for s in ds.info.samples}
    cell = report.dataset.class_names.index("cell")
    assert np.array_equal(ds.mask(by_source["images/A.png"]) == cell, upper > 0)
    assert np.array_equal(ds.mask(by_source["images/a.png"]) == cell, lower > 0)


def test_polygon_files_pair_with_the_image_of_their_own_case(tmp_path, workspace):
    src = tmp_path / "pt"
    _write(src / "images", "A.png", np.zeros((16, 16), np.uint8))
    _write(src / "images", "a.png", np.full((16, 16), 9, np.uint8))
    (src / "labels").mkdir()
    (src / "labels" / "A.txt").write_text("cell 0 0 8 0 8 8 0 8\n")
    (src / "labels" / "a.txt").write_text("cell 8 8 15 8 15 15 8 15\n")
    report = import_dataset(src, "pt", layout="polygons", workspace=workspace)
    assert report.ok, report.error
    ds = load_dataset("pt", workspace)
    by_source = {s.source_image: s for s in ds.info.samples}
    assert by_source["images/A.png"].source_mask == "labels/A.txt"
    assert by_source["images/a.png"].source_mask == "labels/a.txt"
    assert ds.mask(by_source["images/a.png"].id)[12, 12] == 1 and ds.mask(by_source["images/a.png"].id)[2, 2] == 0


def test_demo_samples_record_their_pixel_hash(workspace):
    from segcore.data.demo import make_demo

    info = make_demo(workspace, name="tiny", num_samples=3, size=32)
    ds = load_dataset("tiny", workspace)
    assert all(s.pixel_sha256 == pixel_hash(ds.image(s.id)) for s in info.samples)
    assert len({s.pixel_sha256 for s in info.samples}) == 3


def test_dataset_json_without_pixel_hashes_still_loads(tmp_path, workspace):
    src = vessel_tree(tmp_path / "drive", duplicate=False, n_test=1)
    assert import_dataset(src, "old", workspace=workspace).ok
    path = workspace.dataset_dir("old") / "dataset.json"
    stored = json.loads(path.read_text())
    for s in stored["samples"]:
        del s["pixel_sha256"]
    path.write_text(json.dumps(stored))
    assert {s.pixel_sha256 for s in load_dataset("old", workspace).info.samples} == {""}

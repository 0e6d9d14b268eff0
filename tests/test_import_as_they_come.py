"""Real datasets as researchers get them: classes, void, palettes, colour tables, annotators, folders.

Every dataset here is real data from ../shared/datasets, or made by the test
from it (CamVid's index masks coloured with CamVid's own colour table, ISBI
images and labels laid out as CHASE_DB1 and DRIVE are).
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from segcore.data.dataset import load_dataset
from segcore.data.imports import detect_layout, import_dataset

CAMVID_CLASSES = "Sky Building Pole Road Pavement Tree SignSymbol Fence Car Pedestrian Bicyclist".split()
CAMVID_COLORS = [
    ("Sky", (128, 128, 128)), ("Building", (128, 0, 0)), ("Pole", (192, 192, 128)), ("Road", (128, 64, 128)),
    ("Pavement", (60, 40, 222)), ("Tree", (128, 128, 0)), ("SignSymbol", (192, 128, 128)), ("Fence", (64, 64, 128)),
    ("Car", (64, 0, 128)), ("Pedestrian", (64, 64, 0)), ("Bicyclist", (0, 128, 192)), ("void", (0, 0, 0)),
]  # fmt: skip


def _kinds(report):
    return [p.kind for p in report.problems]


def _problem(report, kind):
    found = [p for p in report.problems if p.kind == kind]
    assert found, f"expected a {kind!r} problem, got {_kinds(report)}"
    return found[0]


# --------------------------------------------------------------------------- class 0 and void


def test_camvid_void_value_is_suggested_and_class0_asked(shared_datasets, workspace):
    src = shared_datasets / "camvid-subset"
    report = import_dataset(src, "camvid-raw", workspace=workspace)
    assert report.ok, report.error
    hint = _problem(report, "void_suggested").message
    assert "value 11" in hint and "--ignore 11" in hint
    assert "value 1 " not in hint and "value 0 " not in hint  # only the void value, not Building or Sky
    # With the class names, class 0 is Sky: a real class, and the report asks about it.
    named = import_dataset(src, "camvid-named", options={"classes": CAMVID_CLASSES, "ignore": [11]}, workspace=workspace)
    assert named.ok and named.dataset.class0_is_background is False
    assert "--class0 background" in _problem(named, "class0_assumed").message
    assert "void_suggested" not in _kinds(named)  # void already stated
    stored = json.loads((workspace.dataset_dir("camvid-named") / "dataset.json").read_text())
    assert stored["class0"] == "class"
    # Stated at import: no question, and the statement is kept.
    stated = import_dataset(src, "camvid-bg", options={"classes": CAMVID_CLASSES, "ignore": [11], "class0": "background"}, workspace=workspace)
    assert stated.dataset.class0_is_background is True and "class0_assumed" not in _kinds(stated)
    assert load_dataset("camvid-bg", workspace).info.class0_is_background is True


def test_camvid_class_named_void_is_void(shared_datasets, workspace):
    src = shared_datasets / "camvid-subset"
    report = import_dataset(src, "camvid-void", options={"classes": CAMVID_CLASSES + ["void"]}, workspace=workspace)
    assert report.ok, report.error
    assert report.dataset.class_names == CAMVID_CLASSES
    raw = np.asarray(Image.open(src / "CamVid/trainannot/0001TP_006690.png"))
    m = load_dataset("camvid-void", workspace).mask("0001TP_006690")
    assert np.array_equal(m == 255, raw == 11) and np.array_equal(m[raw != 11], raw[raw != 11])


# --------------------------------------------------------------------------- colour masks


def _colour_camvid(shared_datasets, dst, n=6, palette_every=2, drop=()):
    """CamVid val masks coloured with CamVid's table: every other one a palette PNG of the same colours."""
    src = shared_datasets / "camvid-subset" / "CamVid"
    table = np.array([c for _, c in CAMVID_COLORS], np.uint8)
    (dst / "images").mkdir(parents=True)
    (dst / "labels").mkdir()
    raws = {}
    for i, f in enumerate(sorted((src / "val").glob("*.png"))[:n]):
        shutil.copyfile(f, dst / "images" / f.name)
        index = np.asarray(Image.open(src / "valannot" / f.name))
        raws[f.stem] = index
        if i % palette_every == 0:
            Image.fromarray(table[index]).save(dst / "labels" / f.name)
        else:
            pal = Image.fromarray(index.astype(np.uint8), mode="P")
            pal.putpalette(table.ravel().tolist() + [0] * (768 - table.size))
            pal.save(dst / "labels" / f.name)
    return raws


def test_palette_masks_in_a_colour_dataset_are_read_through_their_palette(shared_datasets, workspace, tmp_path):
    raws = _colour_camvid(shared_datasets, tmp_path / "src")
    assert {Image.open(p).mode for p in (tmp_path / "src" / "labels").iterdir()} == {"RGB", "P"}
    # No table: the colours are the classes (12 of them), not 16 grey levels from palette indices and colours.
    auto = import_dataset(tmp_path / "src", "auto", workspace=workspace)
    assert auto.ok, auto.error
    assert auto.dataset.num_classes == 12
    assert "decoded through their palettes" in _problem(auto, "mixed_mask_encoding").message
    # The right table (void named): every mask, palette or RGB, is the CamVid index mask.
    colors = {n: list(c) for n, c in CAMVID_COLORS}
    report = import_dataset(tmp_path / "src", "right", options={"colors": colors}, workspace=workspace)
    assert report.ok, report.error
    assert report.dataset.class_names == CAMVID_CLASSES
    ds = load_dataset("right", workspace)
    for stem, index in raws.items():
        m = ds.mask(stem)
        assert np.array_equal(m == 255, index == 11), stem
        assert np.array_equal(m[index != 11], index[index != 11]), stem
    assert "values_outside_table" not in _kinds(report) and "color_table_mismatch" not in _kinds(report)


def test_unlisted_colour_is_reported_not_snapped(shared_datasets, workspace, tmp_path):
    raws = _colour_camvid(shared_datasets, tmp_path / "src")
    colors = {n: list(c) for n, c in CAMVID_COLORS if n != "void"}  # black is used but not listed
    report = import_dataset(tmp_path / "src", "unlisted", options={"colors": colors}, workspace=workspace)
    assert report.ok, report.error
    outside = _problem(report, "values_outside_table")
    assert "(0, 0, 0)" in outside.message and "not JPEG noise" in outside.message
    ds = load_dataset("unlisted", workspace)
    for stem, index in raws.items():
        assert np.array_equal(ds.mask(stem) == 255, index == 11), stem  # void, not snapped to a class
    noise = [p for p in report.problems if p.kind == "mask_noise"]
    assert not noise or "(0, 0, 0)" not in noise[0].message


def test_wrong_colour_table_is_reported(shared_datasets, workspace, tmp_path):
    raws = _colour_camvid(shared_datasets, tmp_path / "src")
    colors = {n: list(c) for n, c in CAMVID_COLORS}
    colors["Road"] = [128, 64, 64]  # a wrong entry: the masks' road is (128, 64, 128)
    report = import_dataset(tmp_path / "src", "wrong", options={"colors": colors}, workspace=workspace)
    mismatch = _problem(report, "color_table_mismatch")
    assert mismatch.severity == "error" and "(128, 64, 128)" in mismatch.message and "Road" in mismatch.message
    assert "mask_noise" not in _kinds(report)  # real class colours are not called noise
    ds = load_dataset("wrong", workspace)
    stem, index = next(iter(raws.items()))
    assert np.all(ds.mask(stem)[index == 3] == 255)  # road pixels void, not snapped to another class


# --------------------------------------------------------------------------- annotators and folders


def _isbi(shared_datasets, i):
    src = shared_datasets / "isbi2012-membrane" / "data" / "membrane" / "train"
    return np.asarray(Image.open(src / "image" / f"{i}.png")), np.asarray(Image.open(src / "label" / f"{i}.png"))


def test_annotator_suffixes_in_one_folder_are_paired_and_named(shared_datasets, workspace, tmp_path):
    src = tmp_path / "chase"
    src.mkdir()
    for i in range(4):
        image, label = _isbi(shared_datasets, i)
        cv2.imwrite(str(src / f"Image_{i:02d}L.jpg"), image)
        cv2.imwrite(str(src / f"Image_{i:02d}L_1stHO.png"), label)
        cv2.imwrite(str(src / f"Image_{i:02d}L_2ndHO.png"), cv2.erode(label, np.ones((3, 3), np.uint8)))
    assert detect_layout(src)[0] == "paired"
    report = import_dataset(src, "chase", workspace=workspace)
    assert report.ok, report.error
    assert len(report.dataset.samples) == 4
    other = _problem(report, "other_annotator")
    assert "2ndHO" in other.message and "Image_00L_2ndHO.png" in other.files
    assert report.details["annotators"] == {"1stHO": 4, "2ndHO": 4}
    _, label = _isbi(shared_datasets, 0)
    assert np.array_equal(load_dataset("chase", workspace).mask("Image_00L"), (label == 255).astype(np.uint8))
    second = import_dataset(src, "chase2", options={"annotator": "2ndHO"}, workspace=workspace)
    assert "1stHO" in _problem(second, "other_annotator").message
    assert load_dataset("chase2", workspace).mask("Image_00L").sum() < load_dataset("chase", workspace).mask("Image_00L").sum()


def test_unmatched_stems_are_said_and_same_folder_options_refused(shared_datasets, workspace, tmp_path):
    src = tmp_path / "odd"
    src.mkdir()
    for i in range(3):
        image, label = _isbi(shared_datasets, i)
        cv2.imwrite(str(src / f"scan{i}.png"), image)
        cv2.imwrite(str(src / f"other{i}.png"), label)
    with pytest.raises(ValueError, match="stems did not match"):
        detect_layout(src)
    chase = tmp_path / "chase"
    chase.mkdir()
    for i in range(3):
        image, label = _isbi(shared_datasets, i)
        cv2.imwrite(str(chase / f"Image_{i:02d}L.jpg"), image)
        cv2.imwrite(str(chase / f"Image_{i:02d}L_1stHO.png"), label)
    report = import_dataset(chase, "same", layout="paired", options={"images_dir": ".", "masks_dir": "."}, workspace=workspace)
    assert not report.ok and "same folder" in report.error and "pair with itself" in report.error


def _drive_like(shared_datasets, root, n=5, missing_second=()):
    """DRIVE's layout from ISBI data: images/, 1st_manual/, 2nd_manual/, mask/ (the field of view)."""
    for sub in ("images", "1st_manual", "2nd_manual", "mask"):
        (root / sub).mkdir(parents=True)
    fov = np.zeros((512, 512), np.uint8)
    cv2.circle(fov, (256, 256), 240, 255, -1)
    for i in range(21, 21 + n):
        image, label = _isbi(shared_datasets, i)
        vessels = (255 - label) & fov
        cv2.imwrite(str(root / "images" / f"{i}_training.tif"), image)
        Image.fromarray(vessels).save(root / "1st_manual" / f"{i}_manual1.gif")
        if i not in missing_second:
            Image.fromarray(cv2.dilate(vessels, np.ones((3, 3), np.uint8)) & fov).save(root / "2nd_manual" / f"{i}_manual2.gif")
        Image.fromarray(fov).save(root / "mask" / f"{i}_training_mask.gif")
    return fov


def test_field_of_view_and_second_annotator_folders_are_not_classes(shared_datasets, workspace, tmp_path):
    fov = _drive_like(shared_datasets, tmp_path / "drive" / "training")
    report = import_dataset(tmp_path / "drive", "drive", workspace=workspace)
    assert report.ok, report.error
    assert report.dataset.class_names == ["background", "1st_manual"] and report.dataset.mode == "binary"
    assert "'mask'" in _problem(report, "field_of_view").message
    assert "2nd_manual" in _problem(report, "other_annotator").message
    m = load_dataset("drive", workspace).mask("21_training")
    assert np.all(m[fov == 0] == 255) and set(np.unique(m[fov > 0])) <= {0, 1}
    # Stated roles win over the guesses.
    stated = import_dataset(tmp_path / "drive", "drive-stated", options={"folder_roles": {"mask": "class"}}, workspace=workspace)
    assert "mask" in stated.dataset.class_names and "field_of_view" not in _kinds(stated)


def test_samples_missing_a_class_folder_are_named(shared_datasets, workspace, tmp_path):
    root = tmp_path / "cf"
    for i in range(4):
        image, label = _isbi(shared_datasets, i)
        (root / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / f"{i}.png"), image)
        for cls, plane in (("membrane", 255 - label), ("cell", label)):
            if cls == "cell" and i >= 2:
                continue  # two samples have no "cell" mask
            (root / "masks" / cls).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "masks" / cls / f"{i}.png"), plane)
    report = import_dataset(root, "cf", workspace=workspace)
    assert report.ok, report.error
    missing = _problem(report, "missing_class_mask")
    assert "'cell': 2" in missing.message and set(missing.files) == {"images/2.png", "images/3.png"}


# --------------------------------------------------------------------------- files not imported


def test_labelme_import_names_files_it_did_not_use(shared_datasets, workspace, tmp_path):
    src = shared_datasets / "labelme-voc-examples" / "examples" / "semantic_segmentation"
    report = import_dataset(src, "labelme", layout="labelme", workspace=workspace)
    assert report.ok, report.error
    ignored = _problem(report, "ignored_files")
    assert "data_dataset_voc/SegmentationClass/2011_000003.png" in ignored.files
    # Images without any annotation are counted and named apart.
    copy = tmp_path / "annotated"
    shutil.copytree(src / "data_annotated", copy)
    image, _ = _isbi(shared_datasets, 0)
    for k in range(3):
        cv2.imwrite(str(copy / f"unlabelled_{k}.png"), image)
    mixed = import_dataset(copy, "labelme-mixed", workspace=workspace)
    unlabelled = _problem(mixed, "unlabelled_image")
    assert unlabelled.message.startswith("3 images without") and "unlabelled_0.png" in unlabelled.files

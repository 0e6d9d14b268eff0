"""Importing the real datasets in ../shared/datasets, checked against numbers computed here from the raw files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcore.data.dataset import load_dataset
from segcore.data.imports import detect_layout, import_dataset, read_class_list
from segcore.workspace import get_workspace

CAMVID_CLASSES = "Sky Building Pole Road Pavement Tree SignSymbol Fence Car Pedestrian Bicyclist".split()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return get_workspace(tmp_path_factory.mktemp("ws_real"))


def _kinds(report):
    return {p.kind for p in report.problems}


def _problem(report, kind):
    found = [p for p in report.problems if p.kind == kind]
    assert found, f"expected a {kind!r} problem, got {[p.kind for p in report.problems]}"
    return found[0]


def test_isbi_paired_binary(shared_datasets, ws):
    src = shared_datasets / "isbi2012-membrane"
    assert detect_layout(src)[0] == "paired"
    report = import_dataset(src, "isbi", workspace=ws)
    assert report.ok, report.error
    info = report.dataset
    assert (len(info.samples), info.mode, info.channels) == (30, "binary", 1)
    assert info.class_names == ["background", "foreground"]
    assert {s.subset for s in info.samples} == {"train"}
    # Labels are 0/255 with 255 = cell interior: about 78% of pixels.
    raw = np.stack([np.asarray(Image.open(p)) for p in sorted((src / "data/membrane/train/label").glob("*.png"))])
    assert info.class_pixel_fraction[1] == pytest.approx((raw == 255).mean(), abs=1e-4)
    assert 0.75 < info.class_pixel_fraction[1] < 0.81
    # White is the cell interior, so "foreground" is the majority: said, not silently flipped.
    assert "78%" in _problem(report, "foreground_majority").message
    inverted = import_dataset(src, "isbi-membranes", options={"invert": True}, workspace=ws)
    assert inverted.dataset.class_pixel_fraction[1] == pytest.approx(info.class_pixel_fraction[0], abs=1e-6)
    assert "foreground_majority" not in _kinds(inverted)
    # The 30 unlabelled test images are named, not imported and not mistaken for pairs.
    unused = _problem(report, "unused_files")
    assert "data/membrane/test" in unused.message and "30 images" in unused.message
    assert "unpaired_image" not in _kinds(report)
    ds = load_dataset("isbi", ws)
    sample = ds.sample("0")
    assert sample.source_mask == "data/membrane/train/label/0.png"
    assert np.array_equal(ds.mask("0"), (np.asarray(Image.open(src / "data/membrane/train/label/0.png")) == 255).astype(np.uint8))
    assert np.array_equal(ds.image("0"), np.asarray(Image.open(src / "data/membrane/train/image/0.png")))


@pytest.mark.slow
def test_dsb_folder_per_sample_union(shared_datasets, ws):
    src = shared_datasets / "dsb2018-nuclei"
    assert detect_layout(src)[0] == "per_sample"
    report = import_dataset(src, "dsb", workspace=ws)
    assert report.ok, report.error
    info = report.dataset
    assert (len(info.samples), info.mode) == (100, "binary")
    # RGBA images with an opaque alpha; some are colour, so the dataset is RGB.
    assert info.channels == 3
    assert info.image_size_stats["distinct_sizes"] == 8
    assert info.image_size_stats["most_common_size"] == "256x256"
    # Union of the per-nucleus masks, computed independently.
    fg = total = 0
    for folder in sorted((src / "stage1_train").iterdir())[:100]:
        union = None
        for m in (folder / "masks").glob("*.png"):
            a = np.asarray(Image.open(m)) > 0
            union = a if union is None else union | a
        fg += union.sum()
        total += union.size
    assert info.class_pixel_fraction[1] == pytest.approx(fg / total, abs=1e-5)
    assert 0.10 < info.class_pixel_fraction[1] < 0.15
    assert [p for p in report.problems if p.severity == "error"] == []
    ds = load_dataset("dsb", ws)
    first = ds.ids[0]
    assert ds.image(first).shape[2] == 3
    assert set(np.unique(ds.mask(first))) <= {0, 1}


@pytest.mark.slow
def test_epfl_class_folders_multilabel(shared_datasets, ws):
    src = shared_datasets / "epfl-em-multiclass"
    assert detect_layout(src)[0] == "class_folders"
    report = import_dataset(src, "epfl", workspace=ws)
    assert report.ok, report.error
    info = report.dataset
    assert len(info.samples) == 32
    assert sorted(s.subset for s in info.samples).count("train") == 27
    assert sorted(s.subset for s in info.samples).count("test") == 5
    assert info.mode == "multilabel"  # the class masks really overlap
    assert report.details["overlap_pixels"] > 0
    assert info.num_classes == 7 and info.class_names[0] == "background"
    assert set(info.class_names[1:]) == {"PSD", "axon", "membranes", "mitochondrial boundaries", "mitochondrion", "vesicles"}
    assert info.channels == 1  # grey slices, stored as LA (train) and RGBA (test)
    # Masks hold stray grey values besides 0/255: snapped and reported, file by file.
    noise = _problem(report, "mask_noise")
    assert noise.severity == "warning" and any("vesicles" in f for f in noise.files)
    assert "mixed_mask_encoding" in _kinds(report)
    # Mitochondrion fraction, from the raw files (first channel >= 128).
    files = sorted((src / "data").glob("epfl_*/mitochondrion/*.png"))
    raw = np.mean([(np.asarray(Image.open(f))[..., 0] >= 128).mean() for f in files])
    k = info.class_names.index("mitochondrion")
    assert info.class_pixel_fraction[k] == pytest.approx(raw, abs=1e-4)
    ds = load_dataset("epfl", ws)
    m = ds.mask(ds.ids[0])
    assert m.shape == (768, 1024, 6) and set(np.unique(m)) <= {0, 1}


def test_epfl_merge_mapping(shared_datasets, ws):
    src = shared_datasets / "epfl-em-multiclass" / "data" / "epfl_test"
    merge = {"mitochondrion": "mito", "mitochondrial boundaries": "mito"}
    report = import_dataset(src, "epfl-merged", layout="class_folders", options={"merge": merge}, workspace=ws)
    assert report.ok, report.error
    assert len(report.dataset.samples) == 5
    assert "mito" in report.dataset.class_names and "mitochondrion" not in report.dataset.class_names
    assert report.dataset.num_classes == 6


def test_ph2_bmp_ignores_jpeg_copies_and_roi(shared_datasets, ws):
    src = shared_datasets / "ph2-skin-lesion"
    assert detect_layout(src)[0] == "per_sample"
    report = import_dataset(src, "ph2", workspace=ws)
    assert report.ok, report.error
    info = report.dataset
    assert (len(info.samples), info.mode, info.channels) == (10, "binary", 3)
    assert all(s.source_image.endswith(".bmp") for s in info.samples)
    ignored = [p for p in report.problems if p.kind == "ignored_files"]
    files = [f for p in ignored for f in p.files]
    assert sum(f.endswith("_lesion.jpg") for f in files) == 10
    assert sum(f.endswith("_roi") for f in files) == 5
    # One lesion mask is stored as 24-bit RGB, the others as 1-bit.
    mixed = _problem(report, "mixed_mask_encoding")
    assert mixed.files == ("PH2Dataset/PH2 Dataset images/IMD002/IMD002_lesion/IMD002_lesion.bmp",)
    fg = total = 0
    for f in sorted(src.glob("PH2Dataset/PH2 Dataset images/*/*_lesion/*_lesion.bmp")):
        a = np.asarray(Image.open(f))
        a = a[..., 0] if a.ndim == 3 else a
        fg += (a > 0).sum()
        total += a.size
    assert info.class_pixel_fraction[1] == pytest.approx(fg / total, abs=1e-5)


def test_camvid_index_masks_with_void(shared_datasets, ws):
    src = shared_datasets / "camvid-subset"
    assert detect_layout(src)[0] == "paired"
    report = import_dataset(src, "camvid", options={"classes": CAMVID_CLASSES, "ignore": 11, "class0": "class"}, workspace=ws)
    assert report.ok, report.error
    info = report.dataset
    assert (len(info.samples), info.mode, info.num_classes) == (100, "multiclass", 11)
    assert info.class0_is_background is False  # Sky is a real class
    assert info.class_names == CAMVID_CLASSES
    subsets = [s.subset for s in info.samples]
    assert (subsets.count("train"), subsets.count("val")) == (80, 20)
    assert report.problems == []
    # Road is about a quarter of the labelled pixels; void (11) is excluded from fractions.
    raw = np.stack([np.asarray(Image.open(p)) for p in sorted(src.glob("CamVid/*annot/*.png"))])
    labelled = raw != 11
    assert info.class_pixel_fraction[3] == pytest.approx((raw == 3).sum() / labelled.sum(), abs=1e-5)
    ds = load_dataset("camvid", ws)
    m = ds.mask("0001TP_006690")
    src_mask = np.asarray(Image.open(src / "CamVid/trainannot/0001TP_006690.png"))
    assert np.array_equal(m == 255, src_mask == 11)
    assert np.array_equal(m[src_mask != 11], src_mask[src_mask != 11])


def test_camvid_without_options_keeps_12_values(shared_datasets, ws):
    report = import_dataset(shared_datasets / "camvid-subset" / "CamVid", "camvid-auto", workspace=ws)
    assert report.ok, report.error
    assert report.dataset.num_classes == 12  # void cannot be guessed; 11 stays a class until stated
    assert report.dataset.class_names[11] == "class_11"


def _voc(root: Path, stem: str) -> np.ndarray:
    return np.asarray(Image.open(root / "data_dataset_voc" / "SegmentationClass" / f"{stem}.png"))


def test_labelme_polygons_match_voc_pngs(shared_datasets, ws):
    root = shared_datasets / "labelme-voc-examples" / "examples" / "semantic_segmentation"
    assert detect_layout(root / "data_annotated")[0] == "labelme"
    # labels.txt lies beside the imported folder, not inside it: the caller reads it and passes the names.
    classes = read_class_list((root / "labels.txt").read_text())
    report = import_dataset(root / "data_annotated", "labelme", options={"classes": classes}, workspace=ws)
    assert report.ok, report.error
    info = report.dataset
    assert len(info.samples) == 3 and info.mode == "multiclass" and info.num_classes == 21
    assert info.class_names[15] == "person"
    # Classes of the VOC table with no polygon are named as empty.
    assert "aeroplane" in _problem(report, "empty_class").message
    ds = load_dataset("labelme", ws)
    for sid in ds.ids:
        voc = _voc(root, sid)
        ours = ds.mask(sid)
        assert ours.shape == voc.shape
        assert (ours == 255).any() == (voc == 255).any()  # __ignore__ polygons become void
        agree = (ours == voc).mean()
        assert agree > 0.995, f"{sid}: only {agree:.4f} of pixels agree with the VOC PNG"


def test_coco_polygons_match_voc_pngs(shared_datasets, ws):
    root = shared_datasets / "labelme-voc-examples" / "examples" / "instance_segmentation"
    assert detect_layout(root / "data_dataset_coco")[0] == "coco"
    report = import_dataset(root / "data_dataset_coco", "coco", workspace=ws)
    assert report.ok, report.error
    info = report.dataset
    assert len(info.samples) == 3 and info.num_classes == 21
    assert info.class_names[0] == "background" and info.class_names[15] == "person"
    ds = load_dataset("coco", ws)
    for sid in ds.ids:
        voc = _voc(root, sid)
        ours = ds.mask(sid)
        scored = voc != 255  # COCO has no __ignore__ regions
        agree = (ours[scored] == voc[scored]).mean()
        assert agree > 0.98, f"{sid}: only {agree:.4f} of pixels agree with the VOC PNG"


def test_voc_palette_pngs_read_as_indices(shared_datasets, ws):
    root = shared_datasets / "labelme-voc-examples" / "examples" / "semantic_segmentation"
    names = [n for n in (root / "labels.txt").read_text().split("\n") if n and n != "__ignore__"]
    report = import_dataset(root / "data_dataset_voc", "voc", options={"classes": names}, workspace=ws)
    assert report.ok, report.error
    assert report.layout == "paired" and report.dataset.num_classes == 21
    assert report.details["mask_encoding"]["encoding"] == "index"
    ds = load_dataset("voc", ws)
    voc = _voc(root, "2011_000003")
    assert np.array_equal(ds.mask("2011_000003"), voc)  # palette indices, not colours; 255 void kept
    # Class colours come from the palette: person (15) is (192, 128, 128) in VOC.
    assert report.dataset.classes[15].color == (192, 128, 128)
    # The rendered visualisation folder is not taken for a second mask folder.
    assert "SegmentationClassVisualization" in _problem(report, "unused_files").message

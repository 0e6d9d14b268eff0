"""Import of formats with no real example here, from small synthetic fixtures."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segcore.data.dataset import load_dataset
from segcore.data.imports import detect_layout, import_dataset

H, W = 24, 32


def _img(seed: int = 0, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (H, W, channels) if channels > 1 else (H, W)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _squares(k: int = 3) -> np.ndarray:
    """Index mask with classes 0..k in vertical bands."""
    m = np.zeros((H, W), np.uint8)
    for c in range(1, k + 1):
        m[:, c * W // (k + 1) :] = c
    return m


def _save(arr: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def _paired(root: Path, masks: dict[str, np.ndarray], ext: str = ".png", img_channels: int = 3, **kw) -> Path:
    for i, (stem, m) in enumerate(masks.items()):
        _save(_img(i, img_channels), root / "images" / f"{stem}.png")
        _save(m, root / "masks" / f"{stem}{ext}", **kw)
    return root


def test_rgb_colour_masks_with_table(tmp_path, workspace):
    table = {"background": [0, 0, 0], "road": [128, 64, 128], "car": [64, 0, 128], "tree": [128, 128, 0]}
    colours = np.array(list(table.values()), np.uint8)
    idx = [_squares(3), _squares(3)[:, ::-1].copy()]
    src = _paired(tmp_path / "src", {f"s{i}": colours[m] for i, m in enumerate(idx)})
    report = import_dataset(src, "colour", layout="color", options={"colors": table}, workspace=workspace)
    assert report.ok, report.error
    info = report.dataset
    assert info.class_names == ["background", "road", "car", "tree"]
    assert info.classes[2].color == (64, 0, 128)
    ds = load_dataset("colour", workspace)
    assert np.array_equal(ds.mask("s1"), idx[1])


def test_rgb_colour_masks_detected_without_table(tmp_path, workspace):
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    src = _paired(tmp_path / "src", {"a": colours[_squares(2)], "b": colours[_squares(2)]})
    report = import_dataset(src, "colour-auto", workspace=workspace)
    assert report.ok, report.error
    assert report.details["mask_encoding"]["encoding"] == "color"
    assert report.dataset.num_classes == 3 and report.dataset.class_names[0] == "background"
    m = load_dataset("colour-auto", workspace).mask("a")
    assert sorted(np.unique(m)) == [0, 1, 2]


def test_jpeg_noisy_binary_masks_snapped_and_reported(tmp_path, workspace):
    truth = np.zeros((64, 64), np.uint8)
    truth[16:48, 20:50] = 255
    src = tmp_path / "src"
    for stem in ("a", "b"):
        _save(np.zeros((64, 64), np.uint8), src / "images" / f"{stem}.png")
        _save(truth, src / "masks" / f"{stem}_mask.jpg", quality=60)
    assert len(np.unique(np.asarray(Image.open(src / "masks" / "a_mask.jpg")))) > 2  # really noisy
    report = import_dataset(src, "jpegmask", workspace=workspace)
    assert report.ok, report.error
    noise = [p for p in report.problems if p.kind == "mask_noise"]
    assert noise and noise[0].severity == "warning"
    assert set(noise[0].files) == {"masks/a_mask.jpg", "masks/b_mask.jpg"}
    m = load_dataset("jpegmask", workspace).mask("a")
    assert (m == (truth > 0)).mean() > 0.99


def test_jpeg_noisy_colour_masks_snapped(tmp_path, workspace):
    table = {"background": [0, 0, 0], "a": [255, 0, 0], "b": [0, 0, 255]}
    colours = np.array(list(table.values()), np.uint8)
    big = np.kron(_squares(2), np.ones((3, 3), np.uint8))
    src = tmp_path / "src"
    _save(np.zeros(big.shape + (3,), np.uint8), src / "images" / "x.png")
    _save(colours[big], src / "masks" / "x.jpg", quality=92)
    report = import_dataset(src, "jpegcolour", layout="color", options={"colors": table}, workspace=workspace)
    assert report.ok, report.error
    assert "mask_noise" in {p.kind for p in report.problems}
    m = load_dataset("jpegcolour", workspace).mask("x")
    assert (m == big).mean() > 0.97


def test_trimaps(tmp_path, workspace):
    tri = np.full((H, W), 2, np.uint8)
    tri[6:18, 8:24] = 1
    tri[6, 8:24] = 3
    src = _paired(tmp_path / "src", {"pet1": tri, "pet2": tri})
    report = import_dataset(src, "tri", workspace=workspace)
    assert report.ok, report.error
    assert report.details["mask_encoding"]["encoding"] == "trimap"
    assert report.dataset.class_names == ["background", "foreground", "boundary"]
    m = load_dataset("tri", workspace).mask("pet1")
    assert m[0, 0] == 0 and m[10, 10] == 1 and m[6, 10] == 2
    report = import_dataset(src, "tri-void", options={"trimap_boundary": "ignore"}, workspace=workspace)
    assert report.dataset.mode == "binary"
    assert load_dataset("tri-void", workspace).mask("pet1")[6, 10] == 255


def test_grey_level_coded_masks(tmp_path, workspace):
    m = np.zeros((H, W), np.uint8)
    m[:, 10:20] = 128
    m[:, 20:] = 255
    src = _paired(tmp_path / "src", {"a": m, "b": m})
    report = import_dataset(src, "levels", workspace=workspace)
    assert report.ok, report.error
    assert report.dataset.num_classes == 3
    out = load_dataset("levels", workspace).mask("a")
    assert out[0, 0] == 0 and out[0, 15] == 1 and out[0, 25] == 2


def test_values_outside_class_table_become_void(tmp_path, workspace):
    good = _squares(2)
    bad = good.copy()
    bad[:, :8] = 9  # a large region with a value no class has
    src = _paired(tmp_path / "src", {"good": good, "bad": bad})
    report = import_dataset(src, "outside", options={"classes": ["background", "a", "b"]}, workspace=workspace)
    assert report.ok, report.error
    problem = [p for p in report.problems if p.kind == "values_outside_table"][0]
    assert problem.files == ("masks/bad.png",) and "[9]" in problem.message
    assert (load_dataset("outside", workspace).mask("bad")[:, :8] == 255).all()
    strict = import_dataset(src, "outside-strict", options={"classes": ["background", "a", "b"]}, strict=True, workspace=workspace)
    assert not strict.ok and "strict" in strict.error


def test_sixteen_bit_images_and_masks(tmp_path, workspace):
    src = tmp_path / "src"
    img16 = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 5).astype(np.uint16)  # 0..3835: 12-bit range
    mask16 = np.zeros((H, W), np.uint16)
    mask16[5:15, 5:15] = 65535
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    import cv2

    cv2.imwrite(str(src / "images" / "a.png"), img16)
    cv2.imwrite(str(src / "masks" / "a.png"), mask16)
    report = import_dataset(src, "deep", workspace=workspace)
    assert report.ok, report.error
    assert any(p.kind == "converted" and "stretched" in p.message for p in report.problems)
    ds = load_dataset("deep", workspace)
    img = ds.image("a")
    assert img.dtype == np.uint8 and img.min() == 0 and img.max() == 255
    assert ds.info.mode == "binary" and ds.mask("a").sum() == 100


def test_tiff_gif_bmp_and_rgba(tmp_path, workspace):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    m = _squares(1) * 255
    # TIFF (float32, read by tifffile), BMP, RGBA PNG with transparency.
    tifffile.imwrite(src / "images" / "t.tif", np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W))
    _save(_img(2), src / "images" / "b.bmp")
    rgba = np.dstack([_img(3), np.full((H, W), 128, np.uint8)])
    _save(rgba, src / "images" / "r.png")
    # GIF masks (palette, two frames: the first is read).
    for stem in ("t", "b", "r"):
        frames = [Image.fromarray(m).convert("P"), Image.fromarray(255 - m).convert("P")]
        frames[0].save(src / "masks" / f"{stem}_mask.gif", save_all=True, append_images=frames[1:])
    report = import_dataset(src, "formats", workspace=workspace)
    assert report.ok, report.error
    info = report.dataset
    assert len(info.samples) == 3 and info.channels == 3 and info.mode == "binary"
    ds = load_dataset("formats", workspace)
    assert np.array_equal(ds.mask("t"), (m > 0).astype(np.uint8))  # first frame, not the inverted second
    assert np.array_equal(ds.image("r"), rgba[:, :, :3])
    assert ds.image("t").shape == (H, W, 3)  # grey stored as RGB in an RGB dataset
    notes = " ".join(p.message for p in report.problems if p.kind == "converted")
    assert "alpha" in notes or "stretched" in notes


def test_stem_suffixes_pair(tmp_path, workspace):
    src = tmp_path / "src"
    m = _squares(1)
    _save(_img(0), src / "images" / "21_training.png")
    _save(m * 255, src / "labels" / "21_manual1.png")
    _save(_img(1), src / "images" / "cat.png")
    _save(m * 255, src / "labels" / "cat_label.png")
    _save(_img(2), src / "images" / "lonely.png")
    _save(m * 255, src / "labels" / "orphan_mask.png")
    report = import_dataset(src, "stems", workspace=workspace)
    assert report.ok, report.error
    assert sorted(s.id for s in report.dataset.samples) == ["21_training", "cat"]
    kinds = {p.kind: p for p in report.problems}
    assert kinds["unpaired_image"].files == ("images/lonely.png",)
    assert kinds["unpaired_mask"].files == ("labels/orphan_mask.png",)


def test_size_mismatch_skips_sample(tmp_path, workspace):
    src = _paired(tmp_path / "src", {"ok": _squares(1), "bad": _squares(1)})
    _save(np.zeros((H + 2, W), np.uint8), src / "masks" / "bad.png")
    report = import_dataset(src, "sizes", workspace=workspace)
    assert report.ok
    assert [s.id for s in report.dataset.samples] == ["ok"]
    p = [p for p in report.problems if p.kind == "size_mismatch"][0]
    assert p.severity == "error" and "26x32" in p.message and "24x32" in p.message


def test_class_folders_without_overlap_give_multiclass(tmp_path, workspace):
    src = tmp_path / "src"
    for i in range(2):
        _save(_img(i, 1), src / "images" / f"{i}.png")
        a = np.zeros((H, W), np.uint8)
        a[:, :10] = 255
        b = np.zeros((H, W), np.uint8)
        b[:, 20:] = 255
        _save(a, src / "masks" / "lesion_a" / f"{i}.png")
        _save(b, src / "masks" / "lesion_b" / f"{i}.png")
    assert detect_layout(src)[0] == "class_folders"
    report = import_dataset(src, "cf", workspace=workspace)
    assert report.ok, report.error
    assert report.dataset.mode == "multiclass" and report.dataset.class_names == ["background", "lesion_a", "lesion_b"]
    m = load_dataset("cf", workspace).mask("0")
    assert m[0, 0] == 1 and m[0, 15] == 0 and m[0, 25] == 2
    # Merging the two lesion types gives one binary class.
    merged = import_dataset(src, "cf-merged", options={"merge": {"lesion_a": "lesion", "lesion_b": "lesion"}}, workspace=workspace)
    assert merged.dataset.mode == "binary" and merged.dataset.class_names == ["background", "lesion"]
    assert load_dataset("cf-merged", workspace).mask("0")[0, 25] == 1


def test_polygon_text_files(tmp_path, workspace):
    src = tmp_path / "src"
    _save(np.zeros((100, 100, 3), np.uint8), src / "images" / "tile1.png")
    _save(np.zeros((100, 100, 3), np.uint8), src / "images" / "tile2.png")
    _save(np.zeros((100, 100, 3), np.uint8), src / "images" / "tile3.png")
    (src / "annotations").mkdir()
    # The tutorial's form: two closed polygons in one list.
    (src / "annotations" / "tile1.txt").write_text(
        "[[10, 10], [10, 30], [30, 30], [30, 10], [10, 10], [50, 50], [50, 70], [70, 70], [70, 50], [50, 50]]\n"
    )
    # Labelled lines.
    (src / "annotations" / "tile2.txt").write_text("building 10 10 40 10 40 40 10 40\nroad 60,60 90,60 90,90 60,90\n")
    # YOLO segmentation: class id, normalised coordinates.
    (src / "annotations" / "tile3.txt").write_text("0 0.1 0.1 0.4 0.1 0.4 0.4 0.1 0.4\n")
    report = import_dataset(src, "poly", layout="polygons", workspace=workspace)
    assert report.ok, report.error
    names = report.dataset.class_names
    assert names[0] == "background" and {"building", "road", "foreground", "0"} <= set(names)
    ds = load_dataset("poly", workspace)
    m1 = ds.mask("tile1")
    fg = names.index("foreground")
    assert m1[20, 20] == fg and m1[60, 60] == fg and m1[40, 40] == 0
    assert (m1 == fg).sum() == 2 * 21 * 21  # two 21x21-pixel squares (corners inclusive)
    m2 = ds.mask("tile2")
    assert m2[25, 25] == names.index("building") and m2[75, 75] == names.index("road")
    m3 = ds.mask("tile3")
    assert m3[25, 25] == names.index("0") and m3[60, 60] == 0


def test_labelme_with_embedded_image(tmp_path, workspace):
    src = tmp_path / "src"
    src.mkdir()
    buf = io.BytesIO()
    Image.fromarray(_img(5)).save(buf, format="PNG")
    doc = {
        "shapes": [
            {"label": "cat", "points": [[2, 2], [20, 2], [20, 20], [2, 20]], "shape_type": "polygon"},
            {"label": "dog", "points": [[10, 10], [30, 22]], "shape_type": "rectangle"},
        ],
        "imagePath": "missing.jpg",
        "imageData": base64.b64encode(buf.getvalue()).decode(),
        "imageHeight": H,
        "imageWidth": W,
    }
    (src / "x.json").write_text(json.dumps(doc))
    report = import_dataset(src, "lm-embedded", workspace=workspace)
    assert report.ok, report.error
    assert report.layout == "labelme" and report.dataset.class_names == ["background", "cat", "dog"]
    ds = load_dataset("lm-embedded", workspace)
    assert np.array_equal(ds.image("x"), _img(5))
    m = ds.mask("x")
    assert m[5, 5] == 1 and m[15, 15] == 2  # the rectangle drawn later covers the cat


def test_zip_of_paired_layout(tmp_path, workspace):
    src = _paired(tmp_path / "src", {"a": _squares(1) * 255, "b": _squares(1) * 255})
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, Path("mydata") / p.relative_to(src))
    assert detect_layout(archive) == ("zip", detect_layout(archive)[1])
    assert detect_layout(archive)[1]["inner_layout"] == "paired"
    report = import_dataset(archive, "zipped", workspace=workspace)
    assert report.ok, report.error
    assert report.layout == "paired" and len(report.dataset.samples) == 2
    assert report.dataset.source["archive"] == "data.zip"
    assert list(workspace.tmp_dir.iterdir()) == []  # extraction cleaned up


def test_dataset_json_is_complete(tmp_path, workspace):
    src = _paired(tmp_path / "src", {"a": _squares(2), "b": _squares(2)})
    report = import_dataset(src, "full", options={"classes": ["background", "x", "y"]}, workspace=workspace)
    d = json.loads((workspace.dataset_dir("full") / "dataset.json").read_text())
    assert d["mode"] == "multiclass" and d["num_samples"] == 2 and d["channels"] == 3
    assert d["source"]["layout"] == "paired" and d["source"]["options"]["classes"] == ["background", "x", "y"]
    assert d["content_hash"].startswith("sha256:") and d["segcore_version"] and d["created_at"]
    assert d["image_size_stats"]["most_common_size"] == f"{H}x{W}"
    assert sum(d["class_pixel_fraction"]) == pytest.approx(1.0)
    assert d["class_pixel_fraction"][0] == pytest.approx((_squares(2) == 0).mean(), abs=1e-6)
    # Same content, same hash.
    again = import_dataset(src, "full-again", options={"classes": ["background", "x", "y"]}, workspace=workspace)
    assert again.dataset.content_hash == report.dataset.content_hash

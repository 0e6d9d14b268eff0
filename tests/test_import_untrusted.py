"""Untrusted import input: every damaged or crafted file ends as a named problem, within the limits.

Each test feeds the importer one kind of crafted input and checks that the
import either succeeds with the file named in a problem or fails with one
message naming it, without a traceback, within the server's limits.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcore.data import imageio, polygons
from segcore.cli import main as data_main
from segcore.data.imports import import_dataset
from segcore.data.options import ImportOptions


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _paired(src: Path, n: int = 3, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        _write(src / "images" / f"{i}.png", _png(rng.integers(0, 255, (size, size), dtype=np.uint8)))
        _write(src / "masks" / f"{i}.png", _png(((rng.random((size, size)) > 0.5) * 255).astype(np.uint8)))
    return src


def _kinds(report) -> list[str]:
    return [p.kind for p in report.problems]


# --------------------------------------------------------------------------- tables that say one thing twice


def test_a_class_named_twice_is_refused():
    with pytest.raises(ValueError, match="names 'cell' twice"):
        ImportOptions.from_dict({"classes": ["background", "cell", "cell"]})


def test_two_classes_with_one_colour_are_refused():
    with pytest.raises(ValueError, match="same colour"):
        ImportOptions.from_dict({"colors": {"road": [128, 64, 128], "path": [128, 64, 128]}})


def test_a_zip_member_stored_twice_refuses_the_archive(tmp_path, workspace):
    src = _paired(tmp_path / "src")
    archive = tmp_path / "twice.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, str(p.relative_to(src)))
        with pytest.warns(UserWarning):  # zipfile itself warns about the duplicate name
            zf.writestr("masks/0.png", _png(np.zeros((16, 16), np.uint8)))
    report = import_dataset(archive, "twice", workspace=workspace)
    assert not report.ok and "'masks/0.png' twice" in report.error


# --------------------------------------------------------------------------- one budget for every decode


def test_only_allowed_formats_are_decoded(tmp_path):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    path = _write(tmp_path / "x.png", eps)
    with pytest.raises(imageio.ImageReadError, match="not an image"):
        imageio.read_image(path)
    # Formats Pillow knows but the importer does not read (here PPM) are refused by content too.
    ppm = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(ppm, format="PPM")
    with pytest.raises(imageio.ImageReadError, match="not an image"):
        imageio.read_image(_write(tmp_path / "y.png", ppm.getvalue()))


def test_a_tiff_volume_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "volume.tif"
    tifffile.imwrite(path, np.zeros((40, 100, 100), np.float32), photometric="minisblack", planarconfig="separate", compression="zlib")
    decoded = []
    real = tifffile.TiffPage.asarray
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda self, *a, **k: decoded.append(1) or real(self, *a, **k))
    with pytest.raises(imageio.ImageReadError, match="40"):
        imageio.read_mask(path, max_pixels=100 * 100)
    assert not decoded


def test_polygon_coordinates_far_outside_the_image_are_skipped_fast(tmp_path, workspace):
    src = tmp_path / "lm"
    _write(src / "a.png", _png(np.zeros((32, 32, 3), np.uint8)))
    shapes = [
        {"label": "cell", "points": [[1e308, 1e308], [-1e308, 5], [3, -1e308]], "shape_type": "polygon"},
        {"label": "cell", "points": [[2, 2], [20, 2], [20, 20]], "shape_type": "polygon"},
    ]
    (src / "a.json").write_text(json.dumps({"shapes": shapes, "imagePath": "a.png", "imageHeight": 32, "imageWidth": 32}))
    report = import_dataset(src, "far", workspace=workspace)
    assert report.ok, report.error
    assert report.seconds < 5
    far = [p for p in report.problems if p.kind == "polygon_outside_image"]
    assert far and far[0].files == ("a.json",) and "1 polygon" in far[0].message
    assert report.dataset.class_pixel_fraction[1] > 0


def test_too_many_files_are_refused_before_they_are_read(tmp_path, workspace):
    src = _paired(tmp_path / "src", n=2)
    for i in range(30):
        _write(src / "junk" / f"{i}.png", b"")
    workspace.ensure()
    workspace.settings_path.write_text(json.dumps({"max_archive_files": 20}))
    report = import_dataset(src, "many", workspace=workspace)
    assert not report.ok and "more than 20 files" in report.error


def test_an_import_stops_at_its_time_limit(tmp_path, workspace, monkeypatch):
    src = _paired(tmp_path / "src", n=20)
    workspace.ensure()
    workspace.settings_path.write_text(json.dumps({"max_import_seconds": 1}))
    clock = iter(range(0, 10_000, 1))
    monkeypatch.setattr("segcore.data.imports._clock", lambda: float(next(clock)))
    report = import_dataset(src, "slow", workspace=workspace)
    assert not report.ok and "max_import_seconds" in report.error
    assert not workspace.dataset_dir("slow").exists()


# --------------------------------------------------------------------------- crafted annotation files


def _labelme_dir(tmp_path: Path, doc) -> Path:
    src = tmp_path / "lm"
    _write(src / "a.png", _png(np.zeros((16, 16, 3), np.uint8)))
    _write(src / "b.png", _png(np.zeros((16, 16, 3), np.uint8)))
    good = {"shapes": [{"label": "cell", "points": [[1, 1], [9, 1], [9, 9]]}], "imagePath": "b.png", "imageHeight": 16, "imageWidth": 16}
    (src / "b.json").write_text(json.dumps(good))
    (src / "a.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return src


@pytest.mark.parametrize(
    "doc",
    [
        {"shapes": ["oops"], "imagePath": "a.png"},
        {"shapes": [{"label": "x", "points": [[1, 2, 3]]}], "imagePath": "a.png"},
        {"shapes": [{"label": "x", "points": "abc"}], "imagePath": "a.png"},
        {"shapes": {"a": 1}, "imagePath": "a.png"},
        {"shapes": [], "imagePath": ["a.png"], "imageData": 5},
        {"shapes": [{"label": ["x"], "points": [[1, 1], [5, 1], [5, 5]]}], "imagePath": "a.png", "imageHeight": "big"},
    ],
)
def test_crafted_labelme_files_are_named_problems(tmp_path, workspace, doc):
    report = import_dataset(_labelme_dir(tmp_path, doc), "lm", layout="labelme", workspace=workspace)
    assert report.ok, report.error
    named = [p for p in report.problems if "a.json" in p.files]
    assert named and named[0].severity == "error", _kinds(report)
    assert [s.source_image for s in report.dataset.samples] == ["b.png"]


def _coco_dir(tmp_path: Path, annotations, images=None, categories=None) -> Path:
    src = tmp_path / "coco"
    _write(src / "images" / "a.png", _png(np.zeros((16, 16, 3), np.uint8)))
    doc = {
        "images": images or [{"id": 1, "file_name": "a.png", "height": 16, "width": 16}],
        "annotations": annotations,
        "categories": categories or [{"id": 1, "name": "cell"}],
    }
    (src / "ann.json").write_text(json.dumps(doc))
    return src


GOOD_ANN = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]}


@pytest.mark.parametrize(
    "bad",
    [
        {"id": 2, "image_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]},  # no category_id
        {"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"counts": [10.5, 246], "size": [16, 16]}},
        {"id": 4, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5, 7]]},  # 7 coordinates
        {"id": 5, "image_id": 1, "category_id": [1], "segmentation": [[1, 1, 5, 1, 5, 5]]},
        "oops",
    ],
)
def test_crafted_coco_annotations_are_named_problems(tmp_path, workspace, bad):
    report = import_dataset(_coco_dir(tmp_path, [GOOD_ANN, bad]), "coco", workspace=workspace)
    assert report.ok, report.error
    named = [p for p in report.problems if p.kind == "bad_annotation"]
    assert named and named[0].files == ("ann.json",), _kinds(report)
    assert report.dataset.class_pixel_fraction[1] > 0  # the good polygon is kept


def test_mixed_coco_id_types_are_read(tmp_path, workspace):
    mixed = {"id": "x", "image_id": "1", "category_id": 1, "segmentation": [[10, 10, 15, 10, 15, 15]]}
    report = import_dataset(_coco_dir(tmp_path, [GOOD_ANN, mixed]), "mixed", workspace=workspace)
    assert report.ok, report.error
    assert "bad_annotation" not in _kinds(report)


def test_deeply_nested_archive_is_refused_in_one_line(tmp_path, workspace, capsys):
    archive = tmp_path / "deep.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("/".join(["d"] * 1200) + "/a.png", _png(np.zeros((4, 4), np.uint8)))
    code = data_main(["import", str(archive), "--name", "deep", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    error = json.loads(out[-1])["error"]
    assert code == 1 and "1200 folders deep" in error and "RecursionError" not in error


def test_json_output_is_one_object_even_when_the_import_breaks(tmp_path, workspace, capsys, monkeypatch):
    src = _paired(tmp_path / "src")

    def broken(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("segcore.data.layouts.discover_paired", broken)
    monkeypatch.setitem(__import__("segcore.data.layouts", fromlist=["DISCOVER"]).DISCOVER, "paired", broken)
    code = data_main(["import", str(src), "--name", "broken", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert code == 1 and result["ok"] is False and "RecursionError" in result["error"]
    assert not workspace.dataset_dir("broken").exists()


# --------------------------------------------------------------------------- fuzz


def _mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op < 0.6 and data:
            cut = rng.randrange(len(data))
            del data[cut : cut + rng.randint(1, 64)]
        elif op < 0.8:
            data[rng.randrange(len(data) + 1) : 0] = rng.choice([b"1e308", b"-1", b"null", b"[", b"{", b'"', b"NaN", b"[[[["])
        else:
            data = data[: rng.randrange(len(data) + 1)]
    return bytes(data)


def _json_mutations(doc, rng: random.Random):
    """A JSON document with one value replaced by a value of another type."""
    doc = json.loads(json.dumps(doc))
    weird = [None, "x", -1, 1e308, float("nan"), [], {}, [[1, 2, 3]], True, "../../etc/passwd", 10**30]
    target = doc
    path = []
    for _ in range(rng.randint(1, 4)):
        if isinstance(target, dict) and target:
            key = rng.choice(sorted(target))
        elif isinstance(target, list) and target:
            key = rng.randrange(len(target))
        else:
            break
        path.append((target, key))
        target = target[key]
    if path:
        parent, key = path[-1]
        parent[key] = rng.choice(weird)
    return json.dumps(doc)


@pytest.mark.parametrize("seed", range(4))
def test_fuzzed_imports_end_in_one_json_object_and_write_only_the_workspace(tmp_path, workspace, capsys, seed):
    rng = random.Random(seed)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    labelme = {"shapes": [{"label": "cell", "points": [[1, 1], [9, 1], [9, 9]], "shape_type": "polygon"}], "imagePath": "a.png", "imageHeight": 16, "imageWidth": 16}
    coco = {"images": [{"id": 1, "file_name": "a.png", "height": 16, "width": 16}], "annotations": [GOOD_ANN], "categories": [{"id": 1, "name": "cell"}]}
    colours = {"cell": [255, 0, 0], "background": [0, 0, 0]}
    outside = tmp_path / "outside"
    outside.mkdir()
    for case in range(6):
        src = tmp_path / f"case{seed}-{case}"
        kind = case % 4
        if kind == 0:  # LabelMe
            _write(src / "a.png", _png(np.zeros((16, 16, 3), np.uint8)))
            text = _json_mutations(labelme, rng) if rng.random() < 0.5 else _mutate(json.dumps(labelme).encode(), rng).decode("latin-1")
            (src / "a.json").write_text(text, encoding="latin-1")
            extra = []
        elif kind == 1:  # COCO
            _write(src / "images" / "a.png", _png(np.zeros((16, 16, 3), np.uint8)))
            text = _json_mutations(coco, rng) if rng.random() < 0.5 else _mutate(json.dumps(coco).encode(), rng).decode("latin-1")
            (src / "ann.json").write_text(text, encoding="latin-1")
            extra = ["--layout", "coco"]
        elif kind == 2:  # colour masks with a colour table inside the data
            for i in range(2):
                _write(src / "images" / f"{i}.png", _png(np.zeros((16, 16, 3), np.uint8)))
                rgb = np.zeros((16, 16, 3), np.uint8)
                rgb[mask > 0] = (255, 0, 0)
                _write(src / "masks" / f"{i}.png", _png(rgb))
            (src / "colors.json").write_text(_json_mutations(colours, rng), encoding="utf-8")
            extra = ["--option", 'colors_file="colors.json"']
        else:  # damaged mask files
            for i in range(3):
                _write(src / "images" / f"{i}.png", _png(np.full((16, 16), 30 * i, np.uint8)))
                _write(src / "masks" / f"{i}.png", _mutate(_png(mask), rng) if i else _png(mask))
            extra = []
        before = sorted(p.name for p in outside.iterdir())
        code = data_main(["import", str(src), "--name", f"f{seed}-{case}", "--json", *extra])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out
        result = json.loads(captured.out.strip().splitlines()[-1])
        assert isinstance(result, dict) and result["ok"] is (code == 0)
        assert sorted(p.name for p in outside.iterdir()) == before
        assert sorted(p.name for p in src.parent.iterdir() if p.name.startswith("case") or p.name == "outside")  # nothing new beside
    leftovers = list((workspace.root / ".tmp").iterdir()) if (workspace.root / ".tmp").exists() else []
    assert leftovers == []


def test_each_folder_is_listed_once_per_step(tmp_path, workspace, monkeypatch):
    """Many files cost one listing per folder, not one per look (99,990 empty files took ~120 CPU s)."""
    import collections
    import os
    import pathlib

    src = _paired(tmp_path / "src", n=3)
    listed = collections.Counter()
    real_scandir, real_iterdir = os.scandir, pathlib.Path.iterdir

    def scandir(path="."):
        listed[str(path)] += 1
        return real_scandir(path)

    def iterdir(self):
        listed[str(self)] += 1
        return real_iterdir(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)
    report = import_dataset(src, "listed", workspace=workspace)
    assert report.ok
    for folder in (src, src / "images", src / "masks"):
        # counting the files, detecting the layout, finding the samples: one listing each at most
        assert listed[str(folder)] <= 3, dict(listed)


def test_names_too_long_for_the_file_system_are_named_problems(tmp_path, workspace):
    lm = import_dataset(_labelme_dir(tmp_path, {"shapes": [], "imagePath": "x" * 5000}), "long-lm", layout="labelme", workspace=workspace)
    assert lm.ok and [p.kind for p in lm.problems if "a.json" in p.files] == ["unreadable"]
    assert all(len(p.message) <= 400 for p in lm.problems)
    images = [{"id": 1, "file_name": "a.png", "height": 16, "width": 16}, {"id": 2, "file_name": "y" * 5000, "height": 16, "width": 16}]
    coco = import_dataset(_coco_dir(tmp_path, [GOOD_ANN], images=images), "long-coco", workspace=workspace)
    assert coco.ok and "bad_annotation" in _kinds(coco)


def test_a_coco_image_id_given_twice_is_named(tmp_path, workspace):
    images = [{"id": 1, "file_name": "a.png", "height": 16, "width": 16}, {"id": 1, "file_name": "b.png", "height": 16, "width": 16}]
    report = import_dataset(_coco_dir(tmp_path, [GOOD_ANN], images=images), "twice", workspace=workspace)
    assert report.ok and [s.source_image for s in report.dataset.samples] == ["images/a.png"]
    assert "repeats image id 1" in next(p.message for p in report.problems if p.kind == "bad_annotation")


def test_a_file_larger_than_any_image_within_the_cap_is_not_read(tmp_path):
    path = _write(tmp_path / "big.png", _png(np.zeros((8, 8), np.uint8)) + b"\0" * (3 * 2**20))
    with pytest.raises(imageio.ImageReadError, match="bytes"):
        imageio.read_image(path, max_pixels=1000)
    with pytest.raises(imageio.ImageReadError, match="bytes"):
        imageio.probe(path, max_pixels=1000)
    assert imageio.read_image(path).array.shape == (8, 8)  # within the default cap it is an image with trailing bytes

"""AppTest tests of the dashboard pages: they drive widgets, switch pages and read what is shown.

Datasets are written straight into the canonical layout (and runs through
``segcore.runs``), so each test controls exactly what a page should show.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from segcore.data.dataset import ClassInfo, DatasetInfo, Problem, SampleInfo
from segcore.fsutil import write_json_atomic

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
CLASSES = (ClassInfo("background", (0, 0, 0)), ClassInfo("disc", (230, 25, 75)), ClassInfo("square", (60, 180, 75)), ClassInfo("speck", (0, 130, 200)))


def make_dataset(ws, name="demo", n=20, size=32, problems=()):
    """A small multiclass dataset in the canonical layout: a disc and a square per image, a rare speck."""
    root = ws.dataset_dir(name)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    counts = np.zeros(len(CLASSES))
    samples = []
    for i in range(n):
        sid = f"s{i:03d}"
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        cv2.circle(mask, (8 + i % 8, 10), 6, 1, -1)
        mask[18:28, 16:26] = 2
        mask[2, 30] = 3
        image[mask == 1] = (200, 60, 60)
        image[mask == 2] = (60, 200, 60)
        cv2.imwrite(str(root / "images" / f"{sid}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{sid}.png"), mask)
        counts += np.bincount(mask.ravel(), minlength=len(CLASSES))
        samples.append(SampleInfo(sid, size, size, subset="train" if i < n - 4 else "test"))
    info = DatasetInfo(
        name=name, mode="multiclass", classes=CLASSES, channels=3, samples=tuple(samples),
        source={"path": "/data/shapes", "layout": "paired"}, content_hash=f"hash-{name}-{n}",
        image_size_stats={"height": [size, size], "width": [size, size]},
        class_pixel_fraction=tuple((counts / counts.sum()).tolist()), problems=tuple(problems),
        created_at="2026-01-01T00:00:00Z",
    )
    write_json_atomic(root / "dataset.json", info.to_dict())
    return info


@pytest.fixture
def demo_ws(workspace, monkeypatch):
    """A workspace whose demo dataset is the small one above (the real generator is not run)."""
    problems = (Problem("jpeg_noise", "mask values snapped to the class table", ("masks/a.jpg", "masks/b.jpg"), "warning"),)
    make_dataset(workspace, problems=problems)
    try:
        import segcore.data.demo as demo
    except ModuleNotFoundError:
        pass
    else:
        monkeypatch.setattr(demo, "ensure_demo", lambda ws, *a, **k: None)
    return workspace


def app(timeout=30) -> AppTest:
    return AppTest.from_file(APP, default_timeout=timeout)


def captions_of(at) -> list[str]:
    return [c for img in at.get("image") for c in img.captions]


def texts(at) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption] + [m.value for m in at.info]
    parts += [m.value for m in at.warning] + [m.value for m in at.success] + [m.value for m in at.error]
    return "\n".join(str(p) for p in parts)


def test_home_shows_demo_backend_and_empty_runs(demo_ws):
    at = app().run()
    assert not at.exception
    body = texts(at)
    assert "The demo dataset is ready:** 20 images, multiclass, 3 classes (disc, square, speck)" in body
    assert "Keras backend:" in body and "CPU cores:" in body
    assert "No runs yet" in body
    assert at.title[0].value == "segcore"


def test_home_without_any_dataset_points_to_data_page(workspace, monkeypatch):
    try:
        import segcore.data.demo as demo

        monkeypatch.setattr(demo, "ensure_demo", lambda ws, *a, **k: None)
    except ModuleNotFoundError:
        pass
    at = app().run()
    assert not at.exception
    assert "Import your own data on the **Data** page" in texts(at)
    assert at.button(key="quick_start").disabled
    at.switch_page("pages/data.py").run()
    assert not at.exception
    assert "No datasets yet" in texts(at)


def test_data_page_browse_overlay_and_opacity(demo_ws):
    at = app().run()
    at.switch_page("pages/data.py").run()
    assert not at.exception
    assert at.selectbox(key="dataset").value == "demo"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Samples"] == "20" and metrics["Classes"] == "3" and metrics["Mode"] == "multiclass"
    assert metrics["Problems"] == "1"
    # 12 thumbnails on the first page + image, mask, overlay of the closer look
    assert len(at.get("image")) == 15
    captions = captions_of(at)
    assert sorted(captions[:12]) == [f"s{i:03d}" for i in range(12)]
    at.slider(key="opacity").set_value(0.9).run()
    assert not at.exception
    assert "overlay at 90%" in captions_of(at)
    at.number_input(key="sample_page").set_value(2).run()
    captions = captions_of(at)
    assert sorted(captions[:8]) == [f"s{i:03d}" for i in range(12, 20)]


def test_data_page_class_frequencies_warn_about_rare_class(demo_ws):
    at = app().run()
    at.switch_page("pages/data.py").run()
    at.session_state["data_tab"] = "Class frequencies"
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("Class imbalance" in w and "speck" in w for w in warnings), warnings
    table = at.dataframe[0].value
    assert table["class"].tolist() == ["background", "disc", "square", "speck"]
    assert table["percent"].sum() == pytest.approx(100.0)


def test_data_page_problems_name_the_files(demo_ws):
    at = app().run()
    at.switch_page("pages/data.py").run()
    at.session_state["data_tab"] = "Problems (1)"
    at.run()
    assert not at.exception
    df = at.dataframe[0].value
    assert df.loc[0, "kind"] == "jpeg_noise" and df.loc[0, "files"] == 2
    assert "masks/a.jpg\nmasks/b.jpg" in [c.value for c in at.code]


def test_data_page_split_counts_add_up(demo_ws):
    at = app().run()
    at.switch_page("pages/data.py").run()
    at.session_state["data_tab"] = "Split"
    at.run()
    assert not at.exception
    counts = {m.label: int(m.value) for m in at.metric if m.label in ("train", "val", "test")}
    assert sum(counts.values()) == 20 and counts["test"] == 3  # round(20 * 0.15)
    at.selectbox(key="split_method").set_value("subset").run()
    counts = {m.label: int(m.value) for m in at.metric if m.label in ("train", "val", "test")}
    assert counts["test"] == 4  # the dataset's own test folder


def test_data_page_augmentation_preview(demo_ws):
    at = app().run()
    at.switch_page("pages/data.py").run()
    at.session_state["data_tab"] = "Augmentation"
    at.run()
    assert not at.exception
    captions = captions_of(at)
    assert sorted(captions) == sorted(["original"] + [f"draw {i}" for i in range(1, 8)])

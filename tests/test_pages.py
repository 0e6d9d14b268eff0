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


# --------------------------------------------------------------------------- runs for the Train / Runs / Compare pages

import os
import time

from segcore import runs as runs_mod
from segcore.config import ModelConfig, RunConfig, TrainConfig


def make_run(ws, *, state="finished", epochs=5, done=None, name="", encoder="none", depth=3, val_dice=0.8, evaluation=None, dataset="demo"):
    """A run folder written through segcore.runs, with a history and (optionally) an evaluation."""
    cfg = RunConfig(model=ModelConfig(encoder=encoder, depth=depth, filters=8), train=TrainConfig(dataset=dataset, image_size=32, epochs=epochs), name=name)
    ids = [f"s{i:03d}" for i in range(20)]
    run = runs_mod.create_run(
        ws, cfg,
        dataset={"name": dataset, "content_hash": f"hash-{dataset}-20", "mode": "multiclass", "classes": [c.name for c in CLASSES], "channels": 3},
        split={"train": ids[:14], "val": ids[14:17], "test": ids[17:]},
    )
    done = epochs if done is None else done
    history = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.2 / e, "val_dice": val_dice * e / epochs} for e in range(1, done + 1)]
    run.write_history(history)
    fields = dict(state=state, epoch=done, epochs=epochs, started_at="2026-01-01T00:00:00Z", best={"val_dice": val_dice * done / epochs, "epoch": done})
    if state == "running":
        fields.update(pid=os.getpid(), heartbeat=time.time(), message="training")
    else:
        fields.update(finished_at="2026-01-01T00:02:05Z")
    run.update_status(**fields)
    if evaluation is not None:
        run.write_evaluation(evaluation)
    time.sleep(1.01)  # run ids and created_at have one-second resolution: keep the order stable
    return run


@pytest.fixture
def fake_training(monkeypatch):
    """segcore.training.launch / stop / resume replaced by folder-only versions that record their calls."""
    import segcore.training as training

    calls = {"launch": [], "stop": [], "resume": []}

    def launch(cfg, ws, **kwargs):
        calls["launch"].append(cfg)
        run = runs_mod.create_run(ws, cfg, dataset={"name": cfg.train.dataset}, split={"train": [], "val": [], "test": []})
        return run.run_id

    def stop(run_id, ws=None):
        calls["stop"].append(run_id)
        runs_mod.open_run(run_id, ws).request_stop()

    def resume(run_id, ws=None):
        calls["resume"].append(run_id)
        runs_mod.open_run(run_id, ws).update_status(state="queued")

    monkeypatch.setattr(training, "launch", launch, raising=False)
    monkeypatch.setattr(training, "stop", stop, raising=False)
    monkeypatch.setattr(training, "resume", resume, raising=False)
    return calls


def test_train_form_queues_the_config_it_shows(demo_ws, fake_training):
    at = app().run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert "Nothing queued" in texts(at)
    at.select_slider(key="train_depth").set_value(3)
    at.select_slider(key="train_filters").set_value(16)
    at.number_input(key="train_epochs").set_value(4)
    at.select_slider(key="train_size").set_value(64)
    at.selectbox(key="train_loss").set_value("dice")
    at.text_input(key="train_name").input("baseline")
    at.text_input(key="train_tags").input("a, b")
    at.run()
    at.button(key="train_launch").click().run()
    assert not at.exception
    cfg = fake_training["launch"][-1]
    assert (cfg.model.encoder, cfg.model.depth, cfg.model.filters) == ("none", 3, 16)
    assert (cfg.train.dataset, cfg.train.epochs, cfg.train.image_size, cfg.train.loss) == ("demo", 4, 64, "dice")
    assert cfg.name == "baseline" and cfg.tags == ("a", "b")
    run_id = at.session_state["train_launched"][0]
    assert f"`{run_id}`" in texts(at)
    assert runs_mod.open_run(run_id, demo_ws).read_config() == cfg  # saved exactly as shown


def test_train_encoder_settings(demo_ws, fake_training):
    at = app().run()
    at.switch_page("pages/train.py").run()
    at.selectbox(key="train_encoder").set_value("vgg16").run()
    at.selectbox(key="train_weights").set_value("none")
    at.selectbox(key="train_freeze").set_value("fine_tune").run()
    at.number_input(key="train_ft_after").set_value(3).run()
    at.button(key="train_launch").click().run()
    assert not at.exception
    m = fake_training["launch"][-1].model
    assert (m.encoder, m.weights, m.freeze, m.fine_tune_after) == ("vgg16", "none", "fine_tune", 3)


def test_train_live_progress_and_stop(demo_ws, fake_training):
    running = make_run(demo_ws, state="running", epochs=5, done=2)
    at = app().run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    bars = at.get("progress")
    assert bars and "epoch 2/5" in bars[0].proto.text
    assert len(at.get("plotly_chart")) >= 1  # loss curve of the running run
    at.button(key=f"stop_{running.run_id}").click().run()
    assert fake_training["stop"] == [running.run_id]
    assert running.stop_requested()


@pytest.mark.slow
def test_train_loss_names_match_the_registry():
    import ast

    from segcore import losses

    # Read the constant from the page's source: importing the page would run it.
    tree = ast.parse((Path(APP).parent / "pages" / "train.py").read_text())
    value = next(n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "LOSSES")
    assert set(ast.literal_eval(value)) == set(losses.names())

"""AppTest tests of the dashboard pages: they drive widgets, switch pages and read what is shown.

Datasets are written straight into the canonical layout (and runs through
``segcore.runs``), so each test controls exactly what a page should show.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from segcore import visualize as viz
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
        image_size_stats={"min_width": size, "max_width": size, "min_height": size, "max_height": size, "distinct_sizes": 1},
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
    at.switch_page("app_pages/data.py").run()
    assert not at.exception
    assert "No datasets yet" in texts(at)


def test_data_page_browse_overlay_and_opacity(demo_ws):
    at = app().run()
    at.switch_page("app_pages/data.py").run()
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
    at.switch_page("app_pages/data.py").run()
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
    at.switch_page("app_pages/data.py").run()
    at.session_state["data_tab"] = "Problems (1)"
    at.run()
    assert not at.exception
    df = at.table[0].value
    assert df.iloc[0]["kind"] == "jpeg_noise" and df.iloc[0]["files"] == "2"
    assert df.iloc[0]["which"] == "masks/a.jpg, masks/b.jpg"


def test_data_page_split_counts_add_up(demo_ws):
    at = app().run()
    at.switch_page("app_pages/data.py").run()
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
    at.switch_page("app_pages/data.py").run()
    at.session_state["data_tab"] = "Augmentation"
    at.run()
    assert not at.exception
    captions = captions_of(at)
    assert sorted(captions) == sorted(["original"] + [f"draw {i}" for i in range(1, 8)])


# --------------------------------------------------------------------------- runs for the Train / Runs / Compare pages

import itertools
import os
import time
from datetime import datetime, timedelta, timezone

from segcore import runs as runs_mod
from segcore.config import ModelConfig, RunConfig, TrainConfig


_CREATED = itertools.count()
_SINCE = datetime.now(timezone.utc) - timedelta(hours=1)


def make_run(ws, *, state="finished", epochs=5, done=None, name="", encoder="none", depth=3, val_dice=0.8, evaluation=None, dataset="demo"):
    """A run folder written through segcore.runs, with a history and (optionally) an evaluation."""
    cfg = RunConfig(model=ModelConfig(encoder=encoder, depth=depth, filters=8), train=TrainConfig(dataset=dataset, image_size=32, epochs=epochs), name=name)
    ids = [f"s{i:03d}" for i in range(20)]
    run = runs_mod.create_run(
        ws, cfg,
        dataset={"name": dataset, "content_hash": f"hash-{dataset}-20", "mode": "multiclass", "classes": [c.name for c in CLASSES], "channels": 3},
        split={"train": ids[:14], "val": ids[14:17], "test": ids[17:]},
        now=_SINCE + timedelta(seconds=next(_CREATED)),  # one second apart, in the past: a stable order, no sleep
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
    return run


@pytest.fixture
def fake_training(monkeypatch):
    """segcore.queue.launch / stop / resume replaced by folder-only versions that record their calls
    (no training process is started)."""
    import segcore.queue as run_queue

    calls = {"launch": [], "stop": [], "resume": [], "actors": []}

    def launch(cfg, ws, **kwargs):
        calls["launch"].append(cfg)
        calls["actors"].append(("launch", kwargs.get("actor")))
        run = runs_mod.create_run(ws, cfg, dataset={"name": cfg.train.dataset}, split=kwargs.get("split") or {"train": [], "val": [], "test": []},
                                  extra=kwargs.get("extra"))
        return run.run_id

    def stop(run_id, ws=None, *, wait=0.0, grace=None, actor=None):
        calls["stop"].append(run_id)
        calls["actors"].append(("stop", actor))
        run = runs_mod.open_run(run_id, ws)
        if run.transition(("queued",), state="stopped") is None:  # as the real stop: a queued run stops at once
            run.request_stop()

    def resume(run_id, ws=None, *, start_worker=True, actor=None):
        calls["resume"].append(run_id)
        calls["actors"].append(("resume", actor))
        runs_mod.open_run(run_id, ws).update_status(state="queued")

    import inspect

    import segcore.queue.launcher as launcher

    for name, fake in (("stop", stop), ("resume", resume)):  # the stand-ins take what the real ones take
        real = set(inspect.signature(getattr(launcher, name)).parameters)
        assert real == set(inspect.signature(fake).parameters), f"fake {name} drifted from launcher.{name}"
    for module in (run_queue, launcher):  # launcher.rerun calls launcher.launch directly
        monkeypatch.setattr(module, "launch", launch)
        monkeypatch.setattr(module, "stop", stop)
        monkeypatch.setattr(module, "resume", resume)
    monkeypatch.setattr(launcher, "ensure_worker", lambda ws=None: False)  # never start a real worker here
    return calls


def test_train_form_queues_the_config_it_shows(demo_ws, fake_training):
    at = app().run()
    at.switch_page("app_pages/train.py").run()
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
    assert "Queued 1 run(s): `baseline`" in texts(at)  # shown by its name
    assert runs_mod.open_run(run_id, demo_ws).read_config() == cfg  # saved exactly as shown


def test_train_encoder_settings(demo_ws, fake_training):
    at = app().run()
    at.switch_page("app_pages/train.py").run()
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
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    bars = at.get("progress")
    assert bars and "epoch 2/5" in bars[0].proto.text
    assert len(at.get("plotly_chart")) >= 1  # loss curve of the running run
    at.button(key=f"stop_{running.run_id}").click().run()
    assert fake_training["stop"] == [running.run_id]
    assert running.stop_requested()
    from segcore.access import local_actor
    assert fake_training["actors"][-1] == ("stop", local_actor())  # the page says who stopped it


@pytest.mark.slow
def test_train_loss_names_match_the_registry(demo_ws):
    import ast

    from segcore import config, losses

    # The page offers the settings' own list (which test_settings holds to the registry), not a copy.
    tree = ast.parse((Path(APP).parent / "app_pages" / "train.py").read_text())
    assert not any(isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") in ("LOSSES", "LOSS_HELP")
                   for n in tree.body)  # the names and their descriptions both come from segcore.config
    # the form is generated from the loss setting's declaration, whose choices are config.LOSSES itself
    assert next(d for d in config.declared() if d.path == "train.loss").meta.choices is config.LOSSES
    at = app().run()
    at.switch_page("app_pages/train.py").run()
    assert at.selectbox(key="train_loss").options == [f"{n}: {config.LOSS_HELP[n]}" for n in config.LOSSES]
    assert set(config.LOSSES) == set(losses.names())


def make_report(fg_dice, ids=("s017", "s018", "s019")):
    """An evaluation report shaped like EvaluationReport.to_dict() with the given foreground Dice per class."""
    names = [c.name for c in CLASSES]
    dice = [0.99] + list(fg_dice)
    macro = float(np.mean(fg_dice))
    per_class = [{"class_id": k, "name": n, "dice": d, "iou": d / (2 - d), "precision": d, "recall": d, "pixel_accuracy": 0.99, "absent": False}
                 for k, (n, d) in enumerate(zip(names, dice))]
    per_image = [{"index": i, "id": sid, "dice": [0.99] + [max(0.0, d - 0.1 * i) for d in fg_dice], "macro_dice": macro - 0.1 * i, "macro_iou": None,
                  "pixel_accuracy": 0.98} for i, sid in enumerate(ids)]
    return {"mode": "multiclass", "class_names": names, "per_class": per_class, "pixel_accuracy": 0.97,
            "macro": {"dice": macro, "iou": macro / (2 - macro), "precision": macro, "recall": macro, "pixel_accuracy": 0.99},
            "micro": {"dice": macro + 0.01, "iou": 0.5}, "per_image": per_image, "warnings": ["class 'speck' is never predicted (3 true pixels missed)"]}


def test_runs_page_empty_state(demo_ws):
    at = app().run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    assert "No runs yet" in texts(at)


def test_runs_page_table_filters_notes_and_study_table(demo_ws, fake_training):
    a = make_run(demo_ws, name="a", val_dice=0.7, evaluation=make_report([0.6, 0.7, 0.2]))
    b = make_run(demo_ws, name="b", encoder="vgg16", val_dice=0.9, evaluation=make_report([0.8, 0.9, 0.1]))
    c = make_run(demo_ws, state="running", epochs=5, done=1)
    at = app().run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    c_label = viz.short_run_id(c.run_id)  # no name: the id without its time stamp
    assert set(table["run"]) == {"a", "b", c_label}
    assert table.set_index("run").loc["b", "model"] == "vgg16"
    assert table.set_index("run").loc["a", "status"] == "finished"
    assert table.set_index("run").loc[c_label, "status"] == "running"
    at.multiselect(key="runs_status").select("finished").run()
    assert set(at.dataframe[0].value["run"]) == {"a", "b"}
    at.text_input(key="runs_query").input("vgg").run()
    assert list(at.dataframe[0].value["run"]) == ["b"]
    # details of the one visible run: notes and tags are saved to the run folder
    assert at.selectbox(key="run_detail").value == b.run_id
    at.text_area(key=f"notes_{b.run_id}").input("best so far")
    at.text_input(key=f"tags_{b.run_id}").input("keep, paper")
    at.button(key=f"save_notes_{b.run_id}").click().run()
    assert not at.exception
    saved = runs_mod.open_run(b.run_id, demo_ws).read_notes()
    assert saved["notes"] == "best so far" and saved["tags"] == ["keep", "paper"]
    # results table over the finished runs, exportable
    at.text_input(key="runs_query").input("").run()
    study = at.dataframe[-1].value
    assert study.loc["a", "Dice"] == pytest.approx(0.5) and study.loc["b", "Dice"] == pytest.approx(0.6)
    assert study.loc["b", "Accuracy"] == pytest.approx(0.97)
    assert at.get("download_button")  # CSV / Markdown / model / config buttons are there


def test_runs_page_curves_and_rerun(demo_ws, fake_training):
    a = make_run(demo_ws, name="a", epochs=4)
    b = make_run(demo_ws, name="b", epochs=6)
    at = app().run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    assert set(at.multiselect(key="curve_runs").value) == {a.run_id, b.run_id}
    assert at.selectbox(key="curve_metric").options == ["Loss", "Dice"]
    at.selectbox(key="run_detail").set_value(a.run_id).run()
    at.button(key=f"rerun_{a.run_id}").click().run()
    assert not at.exception
    assert len(fake_training["launch"]) == 1 and fake_training["launch"][0] == runs_mod.open_run(a.run_id, demo_ws).read_config()


def add_predictions(ws, run, quality, size=32):
    """Write a run's test prediction cache (through segcore's own writer): softened one-hot truth."""
    from segcore.data.dataset import load_dataset

    ds = load_dataset("demo", ws)
    ids = run.read_meta()["split"]["test"]
    probs = []
    for sid in ids:
        onehot = np.eye(len(CLASSES), dtype=np.float32)[ds.mask(sid)]
        probs.append(quality * onehot + (1 - quality) / len(CLASSES))
    run.write_prediction_cache(ids, np.stack(probs), "multiclass", [c.name for c in CLASSES], size)


def test_compare_needs_two_runs(demo_ws):
    make_run(demo_ws, name="only")
    at = app().run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    assert "at least two finished runs" in texts(at) and "this workspace has 1" in texts(at)


def test_compare_grid_heatmaps_and_tables(demo_ws):
    a = make_run(demo_ws, name="a", evaluation=make_report([0.6, 0.7, 0.2]))
    b = make_run(demo_ws, name="b", evaluation=make_report([0.8, 0.9, 0.1]))
    add_predictions(demo_ws, a, 0.9)
    add_predictions(demo_ws, b, 0.6)
    at = app(60).run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    assert set(at.multiselect(key="cmp_runs").value) == {a.run_id, b.run_id}
    assert at.multiselect(key="cmp_ids").value == ["s017", "s018", "s019"]
    # legend + per image: input/truth tile and one heatmap/prediction tile per run; then the 3 images ranked by
    # disagreement, each as disagreement map, truth and one prediction per run
    images = at.get("image")
    assert len(images) == 1 + 3 * 3 + 3 * 4
    caps = captions_of(at)
    # newest run first; per-image macro Dice of s017 is 0.6 for b and 0.5 for a
    assert caps[caps.index("s017") : caps.index("s017") + 3] == ["s017", "Dice 0.600", "Dice 0.500"]
    table = at.dataframe[0].value
    assert list(table.index) == ["background", "disc", "square", "speck", "macro", "micro"]
    la, lb = "a", "b"
    assert table.loc["macro", la] == pytest.approx(0.5) and table.loc["macro", lb] == pytest.approx(0.6)
    at.segmented_control(key="cmp_metric").set_value("iou").run()
    iou = at.dataframe[0].value
    assert iou.loc["disc", la] == pytest.approx(0.6 / 1.4) and iou.loc["disc", lb] == pytest.approx(0.8 / 1.2)
    diff = at.dataframe[1].value
    assert set(diff.index) == {"s017", "s018", "s019"}
    assert diff.loc["s017", la] == pytest.approx(0.5) and diff.loc["s017", lb] == pytest.approx(0.6)
    # worst images per model come from the per-image scores
    at.segmented_control(key="cmp_pick_mode").set_value("Worst for each model").run()
    at.number_input(key="cmp_worst_n").set_value(1).run()
    assert not at.exception
    # ...and say which model each is worst for
    assert [c for c in captions_of(at) if c.startswith("s0") and " · runs differ on " not in c] == ["s019 · worst for b, a"]


def test_compare_offers_only_datasets_the_runs_can_be_scored_on(demo_ws):
    """'Metrics on another dataset' lists datasets with the runs' mode and class count, not every dataset."""
    import shutil

    from segcore.data.dataset import load_dataset

    make_run(demo_ws, name="a", evaluation=make_report([0.6, 0.7, 0.2]))
    make_run(demo_ws, name="b", evaluation=make_report([0.8, 0.9, 0.1]))
    shutil.copytree(demo_ws.dataset_dir("demo"), demo_ws.dataset_dir("demo-copy"))
    info = load_dataset("demo-copy", demo_ws).info
    meta = json.loads((demo_ws.dataset_dir("demo-copy") / "dataset.json").read_text())
    meta["name"] = "demo-copy"
    (demo_ws.dataset_dir("demo-copy") / "dataset.json").write_text(json.dumps(meta))
    other = demo_ws.dataset_dir("binary-one")
    shutil.copytree(demo_ws.dataset_dir("demo"), other)
    meta = json.loads((other / "dataset.json").read_text())
    meta.update(name="binary-one", mode="binary", classes=meta["classes"][:2])
    (other / "dataset.json").write_text(json.dumps(meta))
    at = app(60).run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    assert info.num_classes == 4
    assert at.selectbox(key="cmp_eval_dataset").options == ["demo", "demo-copy"]


def test_compare_heatmap_shows_the_chosen_class(demo_ws, media):
    """The heatmap tile is p(class): a perfect run's heatmap for 'square' is bright exactly on the square."""
    a = make_run(demo_ws, name="a", evaluation=make_report([0.6, 0.7, 0.2]))
    b = make_run(demo_ws, name="b", evaluation=make_report([0.8, 0.9, 0.1]))
    add_predictions(demo_ws, a, 1.0)
    add_predictions(demo_ws, b, 1.0)
    at = app(60).run()
    at.switch_page("app_pages/compare.py").run()
    at.multiselect(key="cmp_ids").set_value(["s017"])
    at.multiselect(key="cmp_runs").set_value([a.run_id, b.run_id])
    at.selectbox(key="cmp_class").set_value(2).run()
    assert not at.exception
    urls = [img.value[0] for img in at.get("image")]
    assert len(urls) == 1 + 3 + 3 * 4  # legend, input/truth, one tile per run; then the disagreement rows
    tile = image_array(urls[2], media)  # run a: heatmap on top, prediction overlay below
    assert tile.shape == (160 + 4 + 160, 160, 3)
    heat = tile[:160]
    bright = viz.heatmap(np.ones((1, 1)))[0, 0]
    dark = viz.heatmap(np.zeros((1, 1)))[0, 0]
    # the square covers rows 18..27 and columns 16..25 of the 32-px image: 5x in the tile
    assert np.abs(heat[115, 105].astype(int) - bright).max() <= 2  # inside the square: p = 1
    assert np.abs(heat[20, 20].astype(int) - dark).max() <= 2  # elsewhere: p = 0


def image_array(url: str, media: dict) -> np.ndarray:
    """The RGB pixels of an image the page showed (from the bytes the ``media`` fixture recorded)."""
    data = media[url.rsplit("/", 1)[-1].split(".")[0]]
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture
def media(monkeypatch):
    """Record the bytes of every image a page shows, by media file id (AppTest drops its store after a run)."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def load_and_get_id(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        seen[file_id] = self._files_by_id[file_id].content
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", load_and_get_id)
    return seen


def test_predict_without_models_says_how_to_get_one(demo_ws):
    make_run(demo_ws, name="no-model")  # finished, but no checkpoint
    at = app().run()
    at.switch_page("app_pages/predict.py").run()
    assert not at.exception
    assert "No run has a trained model yet" in texts(at)


def save_tiny_model(run, image_size=32):
    """A real (untrained) Keras U-Net in the run's best checkpoint, as the trainer would leave it."""
    from segcore.models import build_model

    cfg = run.read_config()
    model = build_model(cfg.model, image_size=image_size, channels=3, mode="multiclass", num_classes=len(CLASSES))
    run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    model.save(run.best_model_path)


@pytest.mark.slow
def test_predict_upload_overlay_areas_and_mask_download(demo_ws, media):
    from segcore.prediction import Predictor

    run = make_run(demo_ws, name="tiny")
    save_tiny_model(run)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", image)
    at = app(120).run()
    at.switch_page("app_pages/predict.py").run()
    assert not at.exception
    assert "Upload an image" in texts(at)
    at.file_uploader(key="pred_upload").set_value([("cells.png", png.tobytes(), "image/png"), ("notes.png", b"not an image", "image/png")]).run()
    assert not at.exception
    assert any("notes.png is not an image" in e.value for e in at.error)
    caps = captions_of(at)
    assert "cells (48x40)" in caps and "predicted mask over the image" in caps and "probability of disc (0 to 1)" in caps
    areas = at.dataframe[0].value
    assert areas["class"].tolist() == [c.name for c in CLASSES]
    assert areas["pixels"].sum() == 40 * 48 and areas["percent"].sum() == pytest.approx(100.0)
    # the downloaded mask is exactly what the run's model predicts for this image
    button = at.get("download_button")[1]  # after the model's download
    assert button.proto.label == "Download mask"
    data = media[button.proto.url.rsplit("/", 1)[-1].split(".")[0]]
    downloaded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    expected = Predictor.from_folder(run).predict_mask(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    assert downloaded.shape == (40, 48) and np.array_equal(downloaded, expected)
    assert areas["pixels"].tolist() == np.bincount(expected.ravel(), minlength=len(CLASSES)).tolist()


@pytest.mark.slow
def test_predict_dataset_samples(demo_ws):
    run = make_run(demo_ws, name="tiny")
    save_tiny_model(run)
    at = app(120).run()
    at.switch_page("app_pages/predict.py").run()
    at.radio(key="pred_source").set_value("Dataset samples").run()
    assert not at.exception
    assert at.multiselect(key="pred_samples").value == ["s017"]  # the run's first test image
    assert "s017 (32x32)" in captions_of(at)


def paired_folder(root: Path, n=6, size=24) -> Path:
    """A paired images/ + masks/ source with 0/255 masks named <stem>_mask.png, and one unpaired image."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = np.full((size, size), 40 + i, np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[4:12, 4:12] = 255
        img[mask > 0] = 200
        cv2.imwrite(str(root / "images" / f"cell{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"cell{i}_mask.png"), mask)
    cv2.imwrite(str(root / "images" / "lonely.png"), np.zeros((size, size), np.uint8))
    return root


def test_data_import_from_server_folder(demo_ws, tmp_path):
    src = paired_folder(demo_ws.incoming_dir / "src")  # server folders are imported from the import folders
    at = app().run()
    at.switch_page("app_pages/data.py").run()
    at.radio(key="import_source").set_value("A folder on the server").run()
    at.text_input(key="import_folder").input(str(src)).run()
    assert not at.exception
    assert any("Detected layout: **paired**" in c.value for c in at.caption)
    name_box = next(t for t in at.text_input if t.label == "Dataset name")
    assert name_box.value == "src"
    name_box.input("cells").run()
    at.button(key="import_go").click().run()
    assert not at.exception
    report = at.session_state["import_report"]
    assert report["ok"] and report["num_samples"] == 6 and report["mode"] == "binary"
    assert any("Imported **cells**" in s.value for s in at.success)
    problems = at.table[0].value
    assert any("lonely.png" in ex for ex in problems["which"])  # the unpaired image is named
    assert at.selectbox(key="dataset").value == "cells"
    assert {m.label: m.value for m in at.metric}["Samples"] == "6"
    # a second import under the same name is refused with a message, not a stack trace
    at.button(key="import_go").click().run()
    assert not at.exception
    assert any("Could not import" in e.value and "cells" in e.value for e in at.error)


def test_data_import_zip_upload(demo_ws, tmp_path):
    import shutil

    src = paired_folder(tmp_path / "zsrc", n=4)
    archive = shutil.make_archive(str(tmp_path / "cells"), "zip", src)
    at = app().run()
    at.switch_page("app_pages/data.py").run()
    at.file_uploader(key="import_zip").set_value(("cells.zip", Path(archive).read_bytes(), "application/zip")).run()
    at.button(key="import_go").click().run()
    assert not at.exception
    assert at.session_state["import_report"]["num_samples"] == 4
    assert at.selectbox(key="dataset").value == "cells"
    assert not any(demo_ws.tmp_dir.glob("upload-*"))  # the uploaded zip is not left behind


def test_home_data_train_runs_do_not_import_keras(demo_ws):
    """Home, Data, Train and Runs stay fast: none of them (nor the router) imports Keras or TensorFlow."""
    import subprocess

    make_run(demo_ws, name="r", evaluation=make_report([0.5, 0.5, 0.5]))
    import sys

    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=60).run()\n"
        "assert not at.exception, at.exception\n"
        "at.switch_page('app_pages/data.py').run()\n"
        "assert not at.exception, at.exception\n"
        "at.session_state['data_tab'] = 'Augmentation'\n"
        "at.run()\n"
        "for page in ('app_pages/train.py', 'app_pages/runs.py'):\n"
        "    at.switch_page(page).run()\n"
        "    assert not at.exception, at.exception\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'jax') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_train_study_queues_the_paper_set_and_runs_page_groups_it(demo_ws, fake_training):
    at = app().run()
    at.switch_page("app_pages/train.py").run()
    at.segmented_control(key="train_kind").set_value("Encoder study").run()
    at.selectbox(key="train_study_weights").set_value("none")
    at.number_input(key="train_epochs").set_value(4)
    at.button(key="train_launch").click().run()
    assert not at.exception
    cfgs = fake_training["launch"]
    assert [c.name for c in cfgs] == ["U-Net", "VGG16 frozen", "VGG16 fine-tuned", "DenseNet121", "ResNet50", "MobileNetV2"]
    assert [(c.model.encoder, c.model.freeze) for c in cfgs][1:3] == [("vgg16", "frozen"), ("vgg16", "fine_tune")]
    # No rate chosen: each encoder starts from its own (from scratch 1e-3, pretrained 1e-4), not the U-Net's for all.
    assert all(c.train.learning_rate is None for c in cfgs)
    assert [c.learning_rate for c in cfgs] == [1e-3] + [1e-4] * 5
    assert {c.train.epochs for c in cfgs} == {4} and {c.model.weights for c in cfgs} == {"none"}
    assert len(at.session_state["train_launched"]) == 6
    # once they have finished, the Runs page offers the study's own results table
    for i, run_id in enumerate(at.session_state["train_launched"]):
        run = runs_mod.open_run(run_id, demo_ws)
        run.update_status(state="finished", epoch=4, epochs=4)
        run.write_evaluation(make_report([0.5 + 0.05 * i] * 3))
    other = make_run(demo_ws, name="not-in-study", evaluation=make_report([0.9, 0.9, 0.9]))
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    study_box = at.selectbox(key="study_pick")
    assert len(study_box.options) == 2 and study_box.options[1].startswith("sweep-")
    assert "not-in-study" in at.dataframe[-1].value.index
    study_box.set_value(study_box.options[1]).run()
    table = at.dataframe[-1].value
    assert sorted(table.index) == sorted(c.name for c in cfgs)
    assert "not-in-study" not in table.index
    assert table.loc["MobileNetV2", "Dice"] == pytest.approx(0.75)


def test_home_quick_start_queues_a_small_run(demo_ws, fake_training):
    at = app().run()
    at.button(key="quick_start").click().run()
    assert not at.exception
    cfg = fake_training["launch"][-1]
    assert (cfg.train.dataset, cfg.model.depth, cfg.model.filters, cfg.train.image_size) == ("demo", 3, 16, 64)
    run_id = at.session_state["last_launched"]
    assert any("quick-start" in s.value and "waiting in the queue" in s.value for s in at.success)
    assert at.dataframe[0].value["run"].tolist() == ["quick-start"]  # recent runs shows it at once


def test_train_bad_settings_give_a_message_not_a_trace(demo_ws):
    """The real launcher refuses settings that cannot train, before anything is queued."""
    at = app().run()
    at.switch_page("app_pages/train.py").run()
    at.selectbox(key="train_encoder").set_value("vgg16").run()
    at.selectbox(key="train_weights").set_value("none")
    at.selectbox(key="train_freeze").set_value("fine_tune").run()
    at.number_input(key="train_epochs").set_value(3)
    at.number_input(key="train_ft_after").set_value(5).run()
    assert not at.exception
    # the settings are refused as they are built: named, with the expected value, and nothing can be queued
    errors = [e.value for e in at.error]
    assert errors and errors[0].startswith("These settings cannot train: setting model.fine_tune_after is 5; "
                                           "expected a number of epochs from 1 to train.epochs - 1 (2)")
    assert at.button(key="train_launch").disabled
    assert runs_mod.list_runs(demo_ws) == []


def test_runs_page_delete_refuses_an_active_run_and_deletes_a_finished_one(demo_ws):
    done = make_run(demo_ws, name="done")
    live = make_run(demo_ws, state="running", epochs=5, done=1)
    at = app().run()
    at.switch_page("app_pages/runs.py").run()
    at.selectbox(key="run_detail").set_value(live.run_id).run()
    at.button(key=f"delete_{live.run_id}").click().run()
    assert not at.exception
    assert any("is running; stop it first" in e.value for e in at.error)
    assert live.exists()
    at.selectbox(key="run_detail").set_value(done.run_id).run()
    at.button(key=f"delete_{done.run_id}").click().run()
    assert not at.exception
    assert not done.path.exists()
    assert [s.run_id for s in runs_mod.list_runs(demo_ws)] == [live.run_id]


# --------------------------------------------------------------------------- damaged runs on every page

PAGES = ("app_pages/home.py", "app_pages/data.py", "app_pages/train.py", "app_pages/runs.py", "app_pages/compare.py", "app_pages/predict.py")
DAMAGED_FILES = ("config.json", "status.json", "notes.json", "checkpoints/state.json", "evaluation.json",
                 "predictions/index.json", "history.csv")


@pytest.mark.slow
@pytest.mark.parametrize("garbage", [b"[1, 2]", b'{"queued_at": "soon", "pid": "abc", "epoch": -1}', b"{"],
                         ids=["list", "wrong-fields", "invalid"])
def test_every_page_shows_damaged_runs_instead_of_crashing(demo_ws, monkeypatch, garbage):
    """One run per damaged file (finished, queued and running ones), beside two good finished runs:
    every page renders, the runs table lists each damaged run with the file, and its actions stay."""
    import segcore.queue.launcher as launcher

    woken = []
    monkeypatch.setattr(launcher, "ensure_worker", lambda ws=None: woken.append(ws) or True)
    make_run(demo_ws, name="good-a", evaluation=make_report([0.6, 0.7, 0.2]))
    make_run(demo_ws, name="good-b", evaluation=make_report([0.8, 0.9, 0.1]))
    damaged = {}
    for i, name in enumerate(DAMAGED_FILES):
        state = ("finished", "queued", "running")[i % 3]
        run = make_run(demo_ws, state=state, name=f"bad-{i}", evaluation=make_report([0.5, 0.5, 0.5]))
        run.write_train_state({"epoch": 1, "es_wait": 0})
        run.predictions_dir.mkdir(exist_ok=True)
        path = run.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(garbage)
        damaged[name] = run
    at = app().run()
    assert not at.exception, at.exception
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
    at.switch_page("app_pages/runs.py").run()
    table = at.dataframe[0].value.set_index("run")
    from segcore import runs as runs_mod
    from segcore.visualize import run_labels
    labels = run_labels(runs_mod.list_runs(demo_ws))
    for name in ("config.json", "status.json"):
        assert table.loc[labels[damaged[name].run_id], "status"] == "damaged"
    # the one-run view names the file and the reason, and offers resume (status) and delete
    at.selectbox(key="run_detail").set_value(damaged["status.json"].run_id).run()
    assert not at.exception
    assert any(e.value.startswith("status.json is damaged: ") for e in at.error)
    assert at.button(key=f"runs_resume_{damaged['status.json'].run_id}")
    at.selectbox(key="run_detail").set_value(damaged["config.json"].run_id).run()
    assert not at.exception
    assert any(e.value.startswith("config.json is damaged: ") for e in at.error)
    at.button(key=f"delete_{damaged['config.json'].run_id}").click().run()
    assert not at.exception
    assert not damaged["config.json"].path.exists()
    for name in ("evaluation.json", "history.csv"):
        at.selectbox(key="run_detail").set_value(damaged[name].run_id).run()
        assert not at.exception
        if garbage != b'{"queued_at": "soon", "pid": "abc", "epoch": -1}' or name == "history.csv":
            # (unknown extra keys are allowed in an evaluation: newer versions may add fields)
            assert any(f"{Path(name).name} is damaged: " in w.value for w in at.warning), name


def test_compare_and_predict_name_a_damaged_cache_or_checkpoint_and_go_on(demo_ws):
    """Half a prediction cache: Compare shows the other images and runs, names the file under the run and in
    the tile. Half a checkpoint: Predict names it instead of failing (the run stays listed and finished)."""
    import zipfile

    a = make_run(demo_ws, name="a", evaluation=make_report([0.6, 0.7, 0.2]))
    b = make_run(demo_ws, name="b", evaluation=make_report([0.8, 0.9, 0.1]))
    add_predictions(demo_ws, a, 0.9)
    add_predictions(demo_ws, b, 0.6)
    cache = a.predictions_dir / "s017.npz"
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    at = app(60).run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    assert any("a: predictions/s017.npz is damaged: " in w.value for w in at.warning)
    assert any(e.value.startswith("No prediction: ") and "s017.npz is damaged" in e.value for e in at.error)
    # every tile but the damaged one; the disagreement rows only for the 2 images both runs have saved
    assert len(at.get("image")) == 1 + 3 * 3 - 1 + 2 * 4
    with zipfile.ZipFile(a.best_model_path.parent.mkdir(parents=True, exist_ok=True) or a.best_model_path, "w") as zf:
        for member in ("metadata.json", "config.json", "model.weights.h5"):
            zf.writestr(member, b"{}" * 500)
    a.best_model_path.write_bytes(a.best_model_path.read_bytes()[:700])
    at.switch_page("app_pages/predict.py")
    at.query_params["run"] = a.run_id
    at.run()
    at.radio(key="pred_source").set_value("Dataset samples").run()
    assert not at.exception, at.exception
    assert any("checkpoints/best.keras is damaged: " in w.value for w in at.warning)
    assert any(e.value.startswith("Could not predict s017: ") and "best.keras is damaged" in e.value for e in at.error), [e.value for e in at.error]
    assert {s.run_id: s.state for s in runs_mod.list_runs(demo_ws)}[a.run_id] == "finished"


def test_train_page_shows_the_plan_and_starts_from_it(demo_ws, fake_training):
    at = app(60).run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    assert any("The plan for demo" in e.label for e in at.expander)
    at.button(key="train_plan_apply").click().run()
    assert not at.exception
    from segcore.data.dataset import load_dataset
    from segcore.training.plan import plan_dataset

    plan = plan_dataset(load_dataset("demo", demo_ws))
    assert at.radio(key="train_fit").value == plan.value("train.fit")
    assert at.number_input(key="train_budget").value == plan.value("train.budget_minutes")
    at.number_input(key="train_epochs").set_value(3).run()  # one change of the user's own
    at.button(key="train_launch").click().run()
    assert not at.exception
    cfg = fake_training["launch"][-1]
    assert cfg.train.fit == plan.value("train.fit") and cfg.train.tta == plan.value("train.tta") and cfg.train.epochs == 3
    meta = runs_mod.open_run(at.session_state["train_launched"][0], demo_ws).read_meta()
    assert meta["plan"]["used"] is True and meta["plan"]["changed"] == {"train.epochs": {"planned": 1000, "chosen": 3}}

"""Rough edges a new user met: each test names what was seen and checks the behaviour that replaces it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from segcore import runs as runs_mod
from segcore.config import RunConfig, TrainConfig
from segcore.queue import sweep
from test_pages import app, demo_ws, fake_training, make_dataset, make_run, texts  # noqa: F401  (fixtures)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _train_helpers import make_shapes_dataset  # noqa: E402


# --------------------------------------------------------------------------- the encoder study


@pytest.fixture
def study_ws(workspace, monkeypatch):
    """A dataset to study and a queue worker that is counted, never started."""
    monkeypatch.setenv("KERAS_HOME", str(workspace.root / "no-keras-cache"))
    make_shapes_dataset(workspace, "shapes", n=20)
    started = []
    monkeypatch.setattr("segcore.queue.launcher.ensure_worker", lambda ws=None: started.append(ws) or True)
    return workspace, started


def test_a_study_with_one_epoch_names_the_epochs_and_queues_nothing(study_ws):
    ws, started = study_ws
    base = RunConfig(train=TrainConfig(dataset="shapes", image_size=32, epochs=1))
    with pytest.raises(ValueError) as err:
        sweep.queue_sweep(base, ws)
    message = str(err.value)
    assert "train.epochs is 1" in message and "at least 2" in message and "VGG16 fine-tuned" in message
    assert "fine_tune_after" not in message  # a value the user never set is not the one named
    assert runs_mod.list_runs(ws) == [] and started == []
    # without the fine-tuned model, one epoch is enough
    record = sweep.queue_sweep(base, ws, models=("U-Net", "VGG16 frozen"))
    assert len(record["runs"]) == 2


def test_a_study_is_checked_whole_before_any_run_is_queued(study_ws, monkeypatch):
    ws, started = study_ws
    import segcore.queue.launcher as launcher

    real = launcher.prepare_launch

    def refuse_mobilenet(cfg, ws, **kw):  # the last model cannot train (say, too big for this machine)
        if cfg.model.encoder == "mobilenetv2":
            raise ValueError("setting train.image_size is 32; expected a size MobileNetV2 fits")
        return real(cfg, ws, **kw)

    monkeypatch.setattr(launcher, "prepare_launch", refuse_mobilenet)
    base = RunConfig(train=TrainConfig(dataset="shapes", image_size=32, epochs=4))
    with pytest.raises(ValueError, match="the study's 'MobileNetV2' run cannot train"):
        sweep.queue_sweep(base, ws)
    assert runs_mod.list_runs(ws) == [] and started == []


def test_a_study_rolls_back_if_queueing_fails_half_way(study_ws, monkeypatch):
    ws, started = study_ws
    import segcore.queue.launcher as launcher

    real, calls = launcher.launch, []

    def full_disk_on_the_fourth(cfg, ws=None, **kw):
        calls.append(cfg.name)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real(cfg, ws, **kw)

    monkeypatch.setattr(launcher, "launch", full_disk_on_the_fourth)
    with pytest.raises(OSError):
        sweep.queue_sweep(RunConfig(train=TrainConfig(dataset="shapes", image_size=32, epochs=4)), ws)
    assert runs_mod.list_runs(ws) == [] and started == []


def test_a_study_queues_every_run_named_as_typed_and_starts_the_queue_once(study_ws):
    ws, started = study_ws
    base = RunConfig(train=TrainConfig(dataset="shapes", image_size=32, epochs=4), name="baseline")
    record = sweep.queue_sweep(base, ws)
    names = sorted(s.name for s in runs_mod.list_runs(ws))
    assert names == sorted(f"baseline: {label}" for label, _, _ in sweep.PAPER_SET)
    assert [r["label"] for r in record["runs"]] == [label for label, _, _ in sweep.PAPER_SET]  # the table keeps the paper's names
    assert len(started) == 1
    # no name typed: the paper's names alone
    sweep.queue_sweep(RunConfig(train=TrainConfig(dataset="shapes", image_size=32, epochs=4)), ws)
    assert {s.name for s in runs_mod.list_runs(ws)} >= {label for label, _, _ in sweep.PAPER_SET}


def test_train_page_refuses_a_study_it_cannot_queue_before_the_button(demo_ws, fake_training):
    at = app().run()
    at.switch_page("app_pages/train.py").run()
    at.segmented_control(key="train_kind").set_value("Encoder study").run()
    at.number_input(key="train_epochs").set_value(1).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "train.epochs is 1" in errors and "fine_tune_after" not in errors
    assert at.button(key="train_launch").disabled
    assert fake_training["launch"] == []


# --------------------------------------------------------------------------- Compare's run selection


def test_compare_keeps_the_runs_picked_after_clear_all(demo_ws):
    from test_pages import make_report

    runs = [make_run(demo_ws, name=n, evaluation=make_report([0.5, 0.6, 0.2])) for n in ("a", "b", "c")]
    at = app(60).run()
    at.switch_page("app_pages/compare.py").run()
    assert len(at.multiselect(key="cmp_runs").value) == 3
    at.multiselect(key="cmp_runs").set_value([]).run()  # "Clear all"
    assert at.multiselect(key="cmp_runs").value == []
    at.multiselect(key="cmp_runs").set_value([runs[0].run_id]).run()  # pick one run
    assert not at.exception
    assert at.multiselect(key="cmp_runs").value == [runs[0].run_id]
    assert "Pick at least two runs" in texts(at)
    at.run()  # and it stays so on the next rerun
    assert at.multiselect(key="cmp_runs").value == [runs[0].run_id]


def test_compare_still_fills_out_a_link_to_one_run(demo_ws):
    from test_pages import make_report

    runs = [make_run(demo_ws, name=n, evaluation=make_report([0.5, 0.6, 0.2])) for n in ("a", "b", "c")]
    at = app(60).run()
    at.switch_page("app_pages/compare.py")
    at.query_params["run"] = runs[0].run_id
    at.run()
    chosen = at.multiselect(key="cmp_runs").value
    assert chosen[0] == runs[0].run_id and len(chosen) == 3


# --------------------------------------------------------------------------- the quick start


def test_quick_start_pressed_again_points_at_the_one_under_way(demo_ws, fake_training):
    at = app().run()
    at.button(key="quick_start").click().run()
    first = at.session_state["last_launched"]
    at.button(key="quick_start").click().run()
    assert not at.exception
    assert len(fake_training["launch"]) == 1  # no duplicate 40-epoch run
    assert at.session_state["last_launched"] == first
    assert any("already under way" in i.value for i in at.info)
    runs_mod.open_run(first, demo_ws).update_status(state="running", epoch=3, epochs=40)
    at.button(key="quick_start").click().run()
    assert len(fake_training["launch"]) == 1
    # once it has ended, the button queues a new one
    runs_mod.open_run(first, demo_ws).update_status(state="finished")
    at.button(key="quick_start").click().run()
    assert len(fake_training["launch"]) == 2 and at.session_state["last_launched"] != first


# --------------------------------------------------------------------------- links


def test_runs_page_warns_about_a_link_to_a_run_it_does_not_have(demo_ws):
    other = make_run(demo_ws, name="other")
    kept = make_run(demo_ws, name="kept")
    at = app().run()
    at.switch_page("app_pages/runs.py")
    at.query_params["run"] = "20260101-000000-gone-run"
    at.run()
    assert not at.exception
    warned = [w.value for w in at.warning if "20260101-000000-gone-run" in w.value]
    assert warned and "not in this workspace" in warned[0]
    assert at.selectbox(key="run_detail").value == kept.run_id  # what is shown instead is said to be another
    at.run()  # the page has written the run it shows into the address; the warning stays (the panel polls)
    assert any("20260101-000000-gone-run" in w.value for w in at.warning)
    at.selectbox(key="run_detail").set_value(other.run_id).run()  # until the user picks a run
    assert not any("not in this workspace" in w.value for w in at.warning)


# --------------------------------------------------------------------------- the Train form and its live panel


def test_train_learning_rate_and_start_from_show_their_default_not_choose_an_option(demo_ws, fake_training):
    make_run(demo_ws, name="earlier")
    at = app().run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    lr = at.selectbox(key="train_lr")
    assert lr.index == 0 and lr.options[0].startswith("the encoder's own")  # a value, not the "Choose an option" placeholder
    start = at.selectbox(key="train_init_from")
    assert start.index == 0 and start.options[0] == "no: random initialisation"
    at.button(key="train_launch").click().run()
    cfg = fake_training["launch"][-1]
    assert cfg.train.learning_rate is None and cfg.model.init_from_run is None
    at.selectbox(key="train_lr").set_value(3e-4).run()
    at.button(key="train_launch").click().run()
    assert fake_training["launch"][-1].train.learning_rate == 3e-4


def test_train_recent_runs_read_as_sentences(demo_ws, fake_training):
    never = make_run(demo_ws, name="never", state="stopped", epochs=2, done=0)
    never.update_status(message="stopped before it started", best=None)
    make_run(demo_ws, name="later", state="finished", epochs=2)
    make_run(demo_ws, name="last", state="finished", epochs=2)
    at = app().run()
    at.switch_page("app_pages/train.py").run()
    line = next(c.value for c in at.caption if c.value.startswith("never"))
    assert line == "never: stopped (stopped before it started)."


def test_markdown_text_keeps_one_space_at_the_ends_of_a_fragment():
    from segcore.safetext import markdown_text

    assert markdown_text(" (a  b) ") == " (a b) "
    assert "epochs" + markdown_text(" (stopped)") == "epochs (stopped)"
    assert markdown_text("  ") == "" and markdown_text(None) == ""


# --------------------------------------------------------------------------- what the tables and the Data page say


def test_runs_table_has_blank_scores_for_runs_not_measured_yet(demo_ws):
    from segcore import visualize as viz

    run = make_run(demo_ws, name="young", state="queued", done=0)
    run.update_status(best=None)
    df = viz.runs_frame(runs_mod.list_runs(demo_ws))
    for col in ("best val Dice", "test Dice, all classes", "test Dice"):
        assert df[col].dtype.kind == "f", col  # a missing number, which a table shows blank, not the word None
        assert df[col].isna().all()
    # ...and the tables of runs show a missing score as a dash, not the word None
    at = app().run()
    assert at.dataframe[0].proto.placeholder == "–"
    at.switch_page("app_pages/runs.py").run()
    assert at.dataframe[0].proto.placeholder == "–"


def _sky_dataset(ws):
    """A CamVid-like dataset whose class 0, Sky, is a real class."""
    import json

    info = make_dataset(ws, "streets")
    path = ws.dataset_dir("streets") / "dataset.json"
    record = json.loads(path.read_text())
    record["classes"][0]["name"] = "Sky"
    record["class0"] = "class"
    path.write_text(json.dumps(record))
    return info


def test_data_page_counts_a_real_class_0_and_paints_it(workspace, monkeypatch):
    import segcore.data.demo as demo

    monkeypatch.setattr(demo, "ensure_demo", lambda ws, *a, **k: None)
    _sky_dataset(workspace)
    at = app().run()
    at.switch_page("app_pages/data.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "4"  # Sky, disc, square, speck: 4 real classes, not 3
    legend = next(m.value for m in at.markdown if "Sky" in m.value)
    assert "not painted" not in legend
    at.switch_page("app_pages/train.py").run()
    assert any("classes Sky, disc, square, speck" in c.value for c in at.caption)


def test_data_page_still_leaves_a_background_unpainted(demo_ws):
    at = app().run()
    at.switch_page("app_pages/data.py").run()
    assert {m.label: m.value for m in at.metric}["Classes"] == "3"
    assert any("background (not painted)" in m.value for m in at.markdown)


def test_an_upload_records_its_file_name_as_the_source_not_a_deleted_folder(demo_ws, tmp_path):
    import shutil

    from test_pages import paired_folder

    archive = shutil.make_archive(str(tmp_path / "cells"), "zip", paired_folder(tmp_path / "zsrc", n=4))
    at = app().run()
    at.switch_page("app_pages/data.py").run()
    at.file_uploader(key="import_zip").set_value(("cells.zip", Path(archive).read_bytes(), "application/zip")).run()
    at.button(key="import_go").click().run()
    assert not at.exception
    from segcore.data.dataset import load_dataset

    assert load_dataset("cells", demo_ws).info.source["path"] == "an upload of cells.zip"
    assert any("imported from an upload of cells.zip" in c.value for c in at.caption)
    assert not any(str(demo_ws.tmp_dir) in c.value for c in at.caption)


# --------------------------------------------------------------------------- import messages


def test_import_hints_name_the_data_page_field_and_the_command_line_flag():
    from segcore.data.options import option_hint

    assert option_hint("ignore", 11) == '"Void mask values" 11 on the Data page, --ignore 11 on the command line'
    assert option_hint("class0", "class").startswith('"Class 0 is" a real class on the Data page')
    assert option_hint("invert").startswith('"Invert binary masks" ticked on the Data page')
    assert option_hint("on_exists").endswith("--version on the command line")
    assert '"Other options (JSON)" {"merge": {"axon": "a"}}' in option_hint("merge", {"axon": "a"})
    with pytest.raises(KeyError, match="there are hints for"):
        option_hint("colour")


def test_data_page_import_messages_name_its_own_fields(demo_ws, tmp_path):
    """An import whose class 0 is a guess, then the same name again: both messages name the form's fields."""
    import cv2
    import numpy as np

    root = demo_ws.root / "imports"
    for sub in ("images", "masks"):
        (root / "cells" / sub).mkdir(parents=True)
    for i in range(4):  # index masks 0/1/2 whose class 0 is named "sky": a real class, or so the import guesses
        mask = np.zeros((24, 24), np.uint8)
        mask[2:10, 2:10], mask[12:20, 12:20] = 1, 2
        cv2.imwrite(str(root / "cells" / "images" / f"c{i}.png"), (mask * 90 + i).astype(np.uint8))
        cv2.imwrite(str(root / "cells" / "masks" / f"c{i}.png"), mask)
    (demo_ws.root / "server.json").write_text('{"import_roots": ["%s"]}' % root)
    at = app().run()
    at.switch_page("app_pages/data.py").run()
    at.radio(key="import_source").set_value("A folder on the server").run()
    at.text_input(key="import_folder").set_value("cells").run()
    at.text_area(key="import_classes").set_value("sky\nroad\ncar").run()
    at.button(key="import_go").click().run()
    assert not at.exception and at.session_state["import_report"]["ok"]
    problems = " ".join(str(p["message"]) for p in at.session_state["import_report"]["problems"])
    assert '"Class 0 is" the background on the Data page' in problems
    at.button(key="import_go").click().run()  # the same name again
    error = " ".join(e.value for e in at.error)
    assert "New version if the name exists" in error and "ticked on the Data page" in error


# --------------------------------------------------------------------------- the first start


def test_first_start_says_what_it_does_before_each_long_step(tmp_path):
    """start.sh in a copy of the project, with a Python that logs what it is asked to do instead of doing it."""
    import os
    import shutil
    import subprocess

    project = Path(__file__).resolve().parent.parent
    copy = tmp_path / "project"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(project / "scripts" / "start.sh", copy / "scripts" / "start.sh")
    for name in ("requirements.txt", "requirements-core.txt", "requirements-gpu.txt"):
        shutil.copy(project / name, copy / name)
    log = tmp_path / "calls.log"
    fake = tmp_path / "python3"
    # "-m venv .venv" makes .venv/bin/python: this same script, so every later step is logged too.
    fake.write_text(f'#!/bin/sh\necho "step: $*" >> {log}\necho "step: $*"\n'
                    f'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; fi\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "SEGCORE_START_DRY_RUN")}
    env.update(PATH="/usr/bin:/bin", PYTHON=str(fake), SEGCORE_ACCELERATOR="cpu")
    out = subprocess.run(["bash", str(copy / "scripts" / "start.sh")], env=env, capture_output=True, text=True, timeout=60,
                         cwd=copy).stdout.splitlines()

    def before(step: str) -> str:
        i = next(n for n, line in enumerate(out) if line.startswith("step:") and step in line)
        return out[i - 1]

    assert "creating a Python environment" in before("-m venv")
    assert "installing the packages of requirements.txt" in before("--upgrade pip")
    assert "demo dataset" in before("segcore demo")
    assert "opening the dashboard" in before("streamlit run")
    # a second start installs nothing and says nothing about installing
    again = subprocess.run(["bash", str(copy / "scripts" / "start.sh")], env=env, capture_output=True, text=True, timeout=60,
                           cwd=copy).stdout
    assert "installing" not in again and "opening the dashboard" in again


# --------------------------------------------------------------------------- the start of a run


def test_live_panel_says_what_a_run_does_before_its_first_batch(demo_ws, fake_training):
    run = make_run(demo_ws, name="young", state="running", epochs=2, done=0)
    run.update_status(batch=0, batches=3, epoch=0, phase="first batch", best=None,
                      message="first batch: the training step is compiled on it, the slowest step")
    at = app().run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    bars = [el.proto.text for el in at.get("progress")]
    assert any(t.startswith("epoch 0/2 · first batch: the training step is compiled") for t in bars), bars
    assert not any("batch 0/3" in t for t in bars)
    run.update_status(batch=2, message="epoch 1/2", phase="training")
    at.run()
    assert any(t.startswith("epoch 0/2, batch 2/3") for t in (el.proto.text for el in at.get("progress")))


@pytest.mark.slow
@pytest.mark.backend
def test_a_run_records_each_phase_before_its_first_batch_is_done(workspace):
    from segcore.config import AugmentConfig, ModelConfig
    from segcore.queue.launcher import launch
    from segcore.queue.process import LiveStatus
    from segcore.training.trainer import train_run

    make_shapes_dataset(workspace, "shapes", n=12)
    cfg = RunConfig(model=ModelConfig(depth=3, filters=4),
                    train=TrainConfig(dataset="shapes", image_size=32, epochs=1, batch_size=4, augment=AugmentConfig(enabled=False)))
    run = runs_mod.open_run(launch(cfg, workspace, start_worker=False), workspace)
    seen = []

    class Recording(LiveStatus):
        def update(self, **fields):
            seen.append(dict(fields))
            return super().update(**fields)

    assert train_run(run, Recording(run, run.read_status()))["state"] == "finished"
    phases = [f["phase"] for f in seen if "phase" in f]
    first_batch_done = next(i for i, f in enumerate(seen) if (f.get("batch") or 0) >= 1)
    before = [f.get("phase") for f in seen[:first_batch_done] if "phase" in f]
    assert before == ["loading data", "building the model", "compiling", "first batch"], phases
    assert seen[first_batch_done].get("phase") == "training"  # and the first batch's end says so at once

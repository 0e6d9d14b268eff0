"""Every page in every plausible state of the workspace (no dataset, one, several, a running run,
queued runs, finished runs on two datasets), and the journeys between them: links that carry the
run in the URL, panels that show a run's new state at once, the queue's order, what to do next.

Pages are driven through ``streamlit.testing.v1.AppTest``; datasets and runs are written straight
into the workspace (see ``test_pages``), and training is replaced by folder-only stand-ins.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from streamlit.testing.v1 import AppTest

from segcore import runs as runs_mod
from segcore import visualize as viz
from test_pages import APP, CLASSES, fake_training, make_dataset, make_report, make_run, texts  # noqa: F401  (fixture)

PAGES = ("app_pages/home.py", "app_pages/data.py", "app_pages/train.py", "app_pages/runs.py", "app_pages/compare.py", "app_pages/predict.py")


@pytest.fixture
def no_demo(monkeypatch):
    """The router's demo generator is not run: each test decides which datasets exist."""
    try:
        import segcore.data.demo as demo
    except ModuleNotFoundError:
        return
    monkeypatch.setattr(demo, "ensure_demo", lambda ws, *a, **k: None)


def app(timeout=60) -> AppTest:
    return AppTest.from_file(APP, default_timeout=timeout)


def open_page(page: str, query: dict | None = None) -> AppTest:
    at = app()
    at.run()
    if page != "app_pages/home.py":
        at.switch_page(page)
    at.query_params.clear()
    at.query_params.update(query or {})
    return at.run()


def links(at) -> dict[str, dict]:
    """Label -> {"page": ..., "query": {...}} of every page link shown."""
    out = {}
    for el in at.get("page_link"):
        out[el.proto.label] = {"page": el.proto.page, "query": parse_qs(el.proto.query_string)}
    return out


def setup_state(ws, state: str) -> dict:
    """Write one of the workspace states; returns what was made."""
    made = {}
    if state in ("one", "several", "running", "queued", "finished"):
        made["demo"] = make_dataset(ws, "demo")
    if state in ("several", "finished"):
        made["cells"] = make_dataset(ws, "cells", n=12)
        made["roads"] = make_dataset(ws, "roads", n=16)
    if state == "running":
        made["run"] = make_run(ws, state="running", epochs=5, done=2, name="live")
    if state == "queued":
        made["run"] = make_run(ws, state="running", epochs=5, done=1, name="live")
        made["q1"] = make_run(ws, state="queued", epochs=3, done=0, name="first")
        made["q2"] = make_run(ws, state="queued", epochs=3, done=0, name="second")
    if state == "finished":
        made["a"] = make_run(ws, name="a", evaluation=make_report([0.6, 0.7, 0.2]))
        made["b"] = make_run(ws, name="b", evaluation=make_report([0.8, 0.9, 0.1]))
        made["c"] = make_run(ws, name="c", dataset="cells", evaluation=make_report([0.95, 0.95, 0.95]))
    return made


STATES = ("empty", "one", "several", "running", "queued", "finished")


@pytest.mark.parametrize("state", STATES)
def test_every_page_opens_in_every_state(workspace, no_demo, fake_training, state):
    """No page raises in any state, and each says something that fits it."""
    setup_state(workspace, state)
    at = app()
    at.run()
    assert not at.exception, (state, "home", at.exception)
    for page in PAGES[1:]:
        at.switch_page(page).run()
        assert not at.exception, (state, page, at.exception)
        body = texts(at)
        if state == "empty" and page in ("app_pages/train.py",):
            assert "no dataset to train on yet" in body
        if state == "empty" and page == "app_pages/data.py":
            assert "No datasets yet" in body
        if state in ("empty", "one", "several") and page == "app_pages/runs.py":
            assert "No runs yet" in body
        if state in ("running", "queued") and page == "app_pages/compare.py":
            assert "at least two finished runs" in body


@pytest.mark.parametrize("pick", ["cells", "roads", "demo"])
def test_train_opens_with_each_dataset_chosen(workspace, no_demo, fake_training, pick):
    """With several datasets, choosing any of them keeps the form whole (no duplicate widget keys) and queues on it."""
    setup_state(workspace, "several")
    at = open_page("app_pages/train.py")
    at.selectbox(key="train_dataset").set_value(pick).run()
    assert not at.exception, at.exception
    assert any(c.value.startswith(f"{pick}: ") for c in at.caption)
    assert at.query_params["dataset"] == pick  # the choice is in the address, to share
    at.button(key="train_launch").click().run()
    assert not at.exception
    assert fake_training["launch"][-1].train.dataset == pick


def test_a_link_with_dataset_opens_data_and_train_on_it(workspace, no_demo):
    setup_state(workspace, "several")
    at = open_page("app_pages/data.py", {"dataset": "roads"})
    assert not at.exception
    assert at.selectbox(key="dataset").value == "roads"
    at = open_page("app_pages/train.py", {"dataset": "cells"})
    assert not at.exception and at.selectbox(key="train_dataset").value == "cells"


def test_links_with_a_run_open_it_on_runs_compare_and_predict(workspace, no_demo):
    from test_pages import save_tiny_model

    made = setup_state(workspace, "finished")
    a, b, c = made["a"], made["b"], made["c"]
    at = open_page("app_pages/runs.py", {"run": a.run_id})
    assert not at.exception and at.selectbox(key="run_detail").value == a.run_id
    # Compare: the linked run is chosen, with the other run on its dataset
    at = open_page("app_pages/compare.py", {"run": a.run_id})
    assert not at.exception
    assert at.selectbox(key="cmp_dataset").value == "demo"
    assert at.multiselect(key="cmp_runs").value[0] == a.run_id and set(at.multiselect(key="cmp_runs").value) == {a.run_id, b.run_id}
    # a run whose dataset has nothing to compare with says so
    at = open_page("app_pages/compare.py", {"run": c.run_id})
    assert not at.exception and any("no other finished run on its dataset" in w.value for w in at.warning)
    # Predict: the linked run's model is chosen
    save_tiny_model(a)
    save_tiny_model(b)
    at = open_page("app_pages/predict.py", {"run": a.run_id})
    assert not at.exception and at.selectbox(key="pred_run").value == a.run_id
    at = open_page("app_pages/predict.py", {"run": b.run_id})
    assert at.selectbox(key="pred_run").value == b.run_id


def test_runs_panel_shows_stop_resume_and_rerun_at_once(workspace, no_demo, fake_training):
    """The one-run panel is read fresh after each action: no reload needed to see what happened."""
    made = setup_state(workspace, "running")
    live = made["run"]
    at = open_page("app_pages/runs.py")
    assert at.selectbox(key="run_detail").value == live.run_id
    assert {m.label: m.value for m in at.metric}["Status"] == "running"
    at.button(key=f"runs_stop_{live.run_id}").click().run()
    assert not at.exception
    assert fake_training["stop"] == [live.run_id]
    assert {m.label: m.value for m in at.metric}["Status"] == "stopping"  # not "running" any more
    live.update_status(state="stopped")  # the training process ends after its batch
    live.clear_stop()
    at.run()
    assert {m.label: m.value for m in at.metric}["Status"] == "stopped"
    at.button(key=f"runs_resume_{live.run_id}").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Status"] == "queued"  # not "stopped" any more
    # Re-run: the new run is in the selector, chosen, and named in the message
    at.button(key=f"rerun_{live.run_id}").click().run()
    assert not at.exception
    new = [s.run_id for s in runs_mod.list_runs(workspace) if s.run_id != live.run_id]
    assert len(new) == 1
    box = at.selectbox(key="run_detail")
    labels = viz.run_labels(runs_mod.list_runs(workspace))  # both are called "live": the id's suffix tells them apart
    assert f"{labels[new[0]]} · queued" in box.options and box.value == new[0]
    assert at.query_params["run"] == new[0]
    assert any(f"with the settings and split of `{labels[live.run_id]}`" in s.value for s in at.success)


def test_queued_runs_can_be_moved_up_and_cancelled(workspace, no_demo, fake_training):
    made = setup_state(workspace, "queued")
    q1, q2 = made["q1"].run_id, made["q2"].run_id
    at = open_page("app_pages/train.py")
    body = texts(at)
    assert "1. **first**" in body and "2. **second**" in body
    assert at.button(key=f"up_{q1}").disabled
    at.button(key=f"up_{q2}").click().run()
    assert not at.exception
    assert [r.run_id for r in runs_mod.queued_runs(workspace)] == [q2, q1]
    assert "1. **second**" in texts(at)
    at.button(key=f"cancel_{q1}").click().run()
    assert not at.exception
    assert [r.run_id for r in runs_mod.queued_runs(workspace)] == [q2]
    assert runs_mod.open_run(q1, workspace).read_status()["state"] == "stopped"
    # the Runs page offers the same for a queued run
    at = open_page("app_pages/runs.py", {"run": q2})
    assert at.button(key=f"runs_up_{q2}") and at.button(key=f"runs_stop_{q2}").proto.label == "Cancel"
    at.button(key=f"runs_stop_{q2}").click().run()
    assert not at.exception and runs_mod.queued_runs(workspace) == []
    assert {m.label: m.value for m in at.metric}["Status"] == "stopped"


def test_after_a_run_finishes_home_and_train_say_what_next(workspace, no_demo, fake_training):
    made = setup_state(workspace, "finished")
    a = made["a"]
    a.update_status(test={"macro_dice": 0.5})
    at = app()
    at.run()
    at.session_state["last_launched"] = a.run_id
    at.run()
    assert not at.exception
    assert any("**a** has finished: test Dice **0.500**" in m.value for m in at.markdown)
    got = links(at)
    assert got["See its predictions (Predict)"]["query"] == {"run": [a.run_id]}
    assert got["Compare it with 1 other run(s) on demo"]["query"] == {"run": [a.run_id]}
    # Train: the run that ended last
    last = made["c"]
    last.update_status(test={"macro_dice": 0.95})
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    assert any("**c** has finished: test Dice **0.950**" in m.value for m in at.markdown)
    assert links(at)["See its predictions (Predict)"]["query"] == {"run": [last.run_id]}


def test_results_table_keeps_datasets_apart(workspace, no_demo):
    made = setup_state(workspace, "finished")
    at = open_page("app_pages/runs.py", {"run": made["a"].run_id})
    assert not at.exception
    table = at.dataframe[-1].value
    assert sorted(table.index) == ["a", "b"]  # the run on 'cells' is not ranked against them
    at.selectbox(key="study_dataset").set_value("cells").run()
    assert list(at.dataframe[-1].value.index) == ["c"]


def test_runs_table_and_legends_use_the_run_label(workspace, no_demo):
    made = setup_state(workspace, "finished")
    unnamed = make_run(workspace, name="", evaluation=make_report([0.5, 0.5, 0.5]))
    at = open_page("app_pages/runs.py")
    assert not at.exception
    shown = set(at.dataframe[0].value["run"])
    assert {"a", "b", "c", viz.short_run_id(unnamed.run_id)} == shown
    chart = at.get("plotly_chart")[0].proto.spec
    names = [t["name"] for t in json.loads(chart)["data"]]
    assert names[:2] == [f"{viz.short_run_id(unnamed.run_id)} · train", f"{viz.short_run_id(unnamed.run_id)} · validation"]
    assert "c · train" in names and "b · validation" in names
    assert not any(r.run_id in chart for r in (made["b"], made["c"], unnamed))


def test_no_download_is_deferred(workspace, no_demo):
    """Every download button carries its file (a deferred file id dies with the next rerun)."""
    from test_pages import save_tiny_model

    made = setup_state(workspace, "finished")
    save_tiny_model(made["a"])
    at = open_page("app_pages/runs.py")
    at.selectbox(key="run_detail").set_value(made["a"].run_id).run()
    buttons = at.get("download_button")
    assert {b.proto.label for b in buttons} >= {"Model (.keras)", "Config (JSON)", "History (CSV)", "Evaluation (JSON)", "Download CSV"}
    for b in buttons:
        assert not b.proto.HasField("deferred_file_id") and "/media/" in b.proto.url, b.proto.label


def test_data_page_problems_and_subset_split_explain_themselves(workspace, no_demo):
    from segcore.data.dataset import Problem

    message = "the foreground class 'foreground' covers 78% of all pixels; if the masks mark the background in white, import again with option invert=true"
    make_dataset(workspace, "demo", problems=(Problem("foreground_majority", message, (), "warning"),))
    at = open_page("app_pages/data.py")
    at.session_state["data_tab"] = "Problems (1)"
    at.run()
    row = at.table[0].value.iloc[0]
    assert row["message"] == message  # whole, with what to do
    assert row["files"] == "–" and row["which"] == "the dataset as a whole"
    # a dataset with train/test folders but a split that keeps only train and val says so
    import json

    path = workspace.dataset_dir("demo") / "dataset.json"
    record = json.loads(path.read_text())
    for s in record["samples"]:
        s["subset"] = "val" if s["subset"] == "test" else s["subset"]
    record["content_hash"] = "changed"
    path.write_text(json.dumps(record))
    at.session_state["data_tab"] = "Split"
    at.run()
    at.selectbox(key="split_method").set_value("subset").run()
    assert not at.exception
    assert any("no test folder" in w.value for w in at.warning)


def test_compare_shows_predictions_of_images_that_are_not_square(workspace, no_demo):
    """CamVid's 480x360 images against square cached predictions: tiles, not "image is 32x24 but mask is 32x32"."""
    import cv2
    import numpy as np

    make_dataset(workspace, "demo")
    root = workspace.dataset_dir("demo")
    for folder, interp in (("images", cv2.INTER_AREA), ("masks", cv2.INTER_NEAREST)):
        for path in (root / folder).glob("*.png"):
            cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), (48, 36), interpolation=interp))
    a = make_run(workspace, name="a", evaluation=make_report([0.6, 0.7, 0.2]))
    b = make_run(workspace, name="b", evaluation=make_report([0.8, 0.9, 0.1]))
    for run in (a, b):
        ids = run.read_meta()["split"]["test"]
        probs = np.full((len(ids), 32, 32, len(CLASSES)), 1.0 / len(CLASSES), np.float32)
        run.write_prediction_cache(ids, probs, "multiclass", [c.name for c in CLASSES], 32)
    at = open_page("app_pages/compare.py")
    assert not at.exception
    assert not [e.value for e in at.error]
    assert len(at.get("image")) == 1 + 3 * 3 + 3 * 4  # the grid, then the disagreement rows (map, truth, 2 runs)


def test_pages_survive_choices_left_from_before(workspace, no_demo):
    """A session (or a link) that still names a deleted run or dataset: each page falls back to what exists."""
    made = setup_state(workspace, "finished")
    gone = make_run(workspace, name="gone", evaluation=make_report([0.5, 0.5, 0.5]))
    gone_id = gone.run_id
    runs_mod.delete_run(gone_id, workspace)
    stale = {"dataset": "deleted-data", "train_dataset": "deleted-data", "run_detail": gone_id, "pred_run": gone_id,
             "cmp_runs": [gone_id, made["a"].run_id], "cmp_dataset": "deleted-data", "last_launched": gone_id,
             "curve_runs_ids": [gone_id]}
    for page in PAGES:
        at = app()
        at.run()  # the router first, as a browser does; then the stale session and link
        for k, v in stale.items():
            at.session_state[k] = v
        at.switch_page(page)
        at.query_params.clear()
        at.query_params.update({"run": gone_id, "dataset": "deleted-data"})
        at.run()
        assert not at.exception, (page, at.exception)

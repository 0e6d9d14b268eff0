"""AppTest of the review tools: Compare's confusion matrix, precision-recall curves and disagreement ranking;
Predict's batch of images and model download."""

from __future__ import annotations

import io
import json
import zipfile

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from segcore.data.dataset import load_dataset
from test_pages import APP, CLASSES, demo_ws, make_report, make_run, media, save_tiny_model, texts  # noqa: F401  (fixtures)


def app(timeout=60) -> AppTest:
    return AppTest.from_file(APP, default_timeout=timeout)


def write_cache(ws, run, swap_square_in=()):
    """A run's saved test predictions: the truth, confident (0.85 on the true class), except that in the images
    ``swap_square_in`` the square (class 2) is predicted as the disc (class 1)."""
    ds = load_dataset("demo", ws)
    ids = run.read_meta()["split"]["test"]
    probs = []
    for sid in ids:
        mask = ds.mask(sid).copy()
        if sid in swap_square_in:
            mask[mask == 2] = 1
        probs.append(np.where(np.eye(len(CLASSES), dtype=bool)[mask], 0.85, 0.05).astype(np.float32))
    run.write_prediction_cache(ids, np.stack(probs), "multiclass", [c.name for c in CLASSES])


def values(v) -> np.ndarray:
    """A figure's array as plotly's JSON holds it: a list, or a typed array ``{"dtype", "bdata", "shape"}``."""
    if isinstance(v, dict):
        import base64

        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        shape = v.get("shape")
        return a.reshape([int(x) for x in str(shape).split(",")]) if shape else a
    return np.array(v, dtype=float)


def test_compare_confusion_matrix_curves_and_disagreement(demo_ws):
    cm_a = [[900, 10, 0, 0], [5, 300, 0, 0], [0, 0, 290, 10], [0, 0, 3, 0]]
    a = make_run(demo_ws, name="a", evaluation={**make_report([0.6, 0.7, 0.2]), "confusion_matrix": cm_a})
    b = make_run(demo_ws, name="b", evaluation=make_report([0.8, 0.9, 0.1]))  # no matrix kept: from its saved predictions
    write_cache(demo_ws, a)
    write_cache(demo_ws, b, swap_square_in=("s018",))
    at = app().run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    heat = {f["layout"]["title"]["text"]: f for f in figs if f["data"][0]["type"] == "heatmap"}
    assert set(heat) == {"a", "b"}
    # run a shows the matrix its evaluation kept, normalised per true class; class names on both axes
    za = values(heat["a"]["data"][0]["z"])
    assert za[0].tolist() == pytest.approx([900 / 910, 10 / 910, 0, 0]) and za[3].tolist() == pytest.approx([0, 0, 1, 0])
    assert heat["a"]["data"][0]["x"] == [c.name for c in CLASSES] == heat["a"]["data"][0]["y"]
    # run b's comes from its saved predictions: a third of the square's pixels (s018's) are called disc
    zb = values(heat["b"]["data"][0]["z"])
    assert zb[2, 1] == pytest.approx(1 / 3) and zb[2, 2] == pytest.approx(2 / 3) and zb[1, 1] == pytest.approx(1.0)

    # precision-recall of the square: b finds 2/3 of it at the arg max; a is perfect
    at.selectbox(key="cmp_pr_class").set_value(2).run()
    assert not at.exception
    pr = next(f for f in (json.loads(c.proto.spec) for c in at.get("plotly_chart")) if "Precision-recall" in f["layout"]["title"]["text"])
    points = {t["hovertemplate"].split(":")[0]: (values(t["x"])[0], values(t["y"])[0]) for t in pr["data"] if t["mode"] == "markers"}
    assert points["b"] == pytest.approx((2 / 3, 1.0)) and points["a"][0] == pytest.approx(290 / 300)
    assert "the arg max the masks use" in texts(at)

    # disagreement: s018 first, where the runs differ on the square (100 of 1024 pixels)
    table = next(d.value for d in at.dataframe if "runs differ" in d.value.columns)
    assert list(table.index)[0] == "s018"
    assert table.loc["s018", "runs differ"] == pytest.approx(100 / 1024)
    assert table.loc["s017", "runs differ"] == 0 and table.loc["s017", "a run is wrong"] == 0
    captions = [c for img in at.get("image") for c in img.captions]
    assert "s018 · runs differ on 9.8% · all wrong on 0.0%" in captions
    at.number_input(key="cmp_dis_n").set_value(1).run()
    assert [c for img in at.get("image") for c in img.captions if " · runs differ on " in c] == ["s018 · runs differ on 9.8% · all wrong on 0.0%"]


def test_compare_says_when_no_run_has_saved_predictions(demo_ws):
    make_run(demo_ws, name="a", evaluation=make_report([0.6, 0.7, 0.2]))
    make_run(demo_ws, name="b", evaluation=make_report([0.8, 0.9, 0.1]))
    at = app().run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    assert "None of these runs has saved test predictions yet" in texts(at)


def _png(image) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.mark.slow
def test_predict_a_zip_of_images_gives_one_zip_of_masks_and_names_the_bad_file(demo_ws, media):
    from segcore.prediction import Predictor

    run = make_run(demo_ws, name="tiny")
    save_tiny_model(run)
    rng = np.random.default_rng(2)
    images = {f"set/img{i}.png": rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8) for i in range(3)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, image in images.items():
            zf.writestr(name, _png(image))
        zf.writestr("set/broken.png", b"not a png")
    at = app(120).run()
    at.switch_page("app_pages/predict.py").run()
    # the model can be downloaded here too
    model = next(b for b in at.get("download_button") if b.proto.label == "Model (.keras)")
    assert media[model.proto.url.rsplit("/", 1)[-1].split(".")[0]] == run.best_model_path.read_bytes()
    at.radio(key="pred_source").set_value("Folder or zip").run()
    assert "Upload a zip" in texts(at)
    at.file_uploader(key="pred_batch_upload").set_value([("set.zip", buffer.getvalue(), "application/zip")]).run()
    at.button(key="pred_batch_go").click().run()
    assert not at.exception, at.exception
    assert any("3 of 4 images predicted" in s.value for s in at.success)
    assert any("set/broken.png is not an image" in w.value for w in at.warning)
    button = next(b for b in at.get("download_button") if b.proto.label == "Download the masks (zip)")
    with zipfile.ZipFile(io.BytesIO(media[button.proto.url.rsplit("/", 1)[-1].split(".")[0]])) as zf:
        assert sorted(zf.namelist()) == ["problems.txt", "set/img0_mask.png", "set/img1_mask.png", "set/img2_mask.png"]
        predictor = Predictor.from_folder(run)
        for name, image in images.items():
            mask = cv2.imdecode(np.frombuffer(zf.read(name[:-4] + "_mask.png"), np.uint8), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(mask, predictor.predict_mask(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))

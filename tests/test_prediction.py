"""Prediction sees images exactly as training saw them after import."""

import cv2
import numpy as np
import pytest

from segcore.data import imageio
from segcore.prediction import Predictor, read_image
from segcore.visualize import decode_image


def _predictor(channels: int, size: int) -> Predictor:
    # prepare() needs no model: only the input size and channels.
    return Predictor(run_id="r", model=None, image_size=size, channels=channels, mode="binary", class_names=["bg", "fg"], checkpoint="")


def test_16bit_image_is_stretched_like_the_import(tmp_path):
    raw = np.linspace(1000, 3000, 64, dtype=np.float64).reshape(8, 8).astype(np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), raw)
    imported = imageio.read_image(path).array  # what the import stores
    assert imported.dtype == np.uint8 and imported.min() == 0 and imported.max() == 255
    from_file = read_image(path)
    from_upload = decode_image(path.read_bytes(), "deep.png")
    from_array = _predictor(1, 8).prepare(raw)[:, :, 0]
    np.testing.assert_array_equal(from_file, imported)
    np.testing.assert_array_equal(from_upload, imported)
    np.testing.assert_array_equal(from_array, imported.astype(np.float32))


def test_rgba_upload_drops_alpha_and_grey_model_gets_one_channel(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    img = decode_image(buf.tobytes(), "a.png")
    assert img.shape == (4, 4, 3) and img[0, 0].tolist() == [200, 0, 0]
    x = _predictor(1, 4).prepare(img)
    assert x.shape == (4, 4, 1) and x.dtype == np.float32


# --------------------------------------------------------------------------- a run's setup and probabilities


def test_the_recorded_dataset_reads_with_defaults():
    from segcore.runrecord import DatasetRecord

    head = lambda d: (d.mode, list(d.classes))  # noqa: E731
    assert head(DatasetRecord.from_dict({"mode": "binary", "classes": ["bg", "fg"]})) == ("binary", ["bg", "fg"])
    assert head(DatasetRecord.from_dict({"classes": None})) == ("multiclass", [])
    assert head(DatasetRecord.from_dict(None)) == ("multiclass", [])


def test_prediction_setup_takes_colours_from_the_dataset_else_the_palette():
    from types import SimpleNamespace

    from segcore.prediction import PredictionSetup, prediction_setup
    from segcore.visualize import class_colors

    classes = [SimpleNamespace(name="bg", color=(0, 0, 0)), SimpleNamespace(name="cell", color=(10, 200, 30))]
    info = SimpleNamespace(classes=classes)
    from segcore.runrecord import DatasetRecord

    meta = DatasetRecord.from_dict({"mode": "binary", "classes": ["bg", "cell"]})
    setup = prediction_setup(meta, lambda: info)
    assert isinstance(setup, PredictionSetup)
    assert setup.mode == "binary" and setup.class_names == ["bg", "cell"] and setup.dataset is info
    assert setup.colors.tolist() == [[0, 0, 0], [10, 200, 30]]

    def gone():
        raise FileNotFoundError("dataset deleted")

    for opener in (gone, None):
        setup = prediction_setup(meta, opener)
        assert setup.dataset is None and setup.class_names == ["bg", "cell"]
        np.testing.assert_array_equal(setup.colors, class_colors(["bg", "cell"]))
    # A run that recorded no classes: named by number, as many as its dataset has.
    setup = prediction_setup(DatasetRecord.from_dict({}), lambda: info)
    assert setup.mode == "multiclass" and setup.class_names == ["class 0", "class 1"]


def test_run_probabilities_reads_saved_predictions_and_predicts_the_rest(tmp_path):
    from types import SimpleNamespace

    from segcore.prediction import run_probabilities
    from segcore.runs import RunFolder

    run = RunFolder(tmp_path / "run")
    saved = np.zeros((1, 4, 4, 2), np.float32)
    saved[..., 1] = 1.0
    run.write_prediction_cache(["a"], saved, "multiclass", ["bg", "fg"], 4)
    dataset = SimpleNamespace(image=lambda sid: np.full((6, 8, 3), ord(sid), np.uint8))
    loaded = []

    class FakePredictor:
        def predict_probs(self, image):
            return np.full(image.shape[:2] + (2,), image[0, 0, 0] / 255.0, np.float32)

    def load():
        loaded.append(1)
        return FakePredictor()

    # Saved: read from predictions/, the model never loaded.
    out = run_probabilities(run, dataset, ["a"], load_predictor=load)
    assert out["a"].shape == (4, 4, 2) and out["a"][..., 1].min() == 1.0 and not loaded
    # Not saved: predicted at the image's size, the model loaded once for all of them.
    out = run_probabilities(run, dataset, ["a", "b", "c"], load_predictor=load)
    assert list(out) == ["a", "b", "c"] and loaded == [1]
    assert out["b"].shape == (6, 8, 2) and out["c"][0, 0, 0] == pytest.approx(ord("c") / 255.0)
    # The page's own (cached) reader is used instead of the run folder's.
    out = run_probabilities(run, dataset, ["a"], read_cached=lambda sid: None, load_predictor=load)
    assert out["a"].shape == (6, 8, 2)


def test_mask_files_are_named_in_one_place(tmp_path):
    import io
    import zipfile

    from segcore.prediction import label_plane_files, save_mask_png
    from segcore.visualize import encode_mask

    planes = np.zeros((5, 6, 2), np.uint8)
    planes[1, 2, 0] = planes[3, 4, 1] = 1
    files = label_plane_files(planes, "cell")
    assert [name for name, _ in files] == ["cell_1.png", "cell_2.png"]
    assert all(p.dtype == np.uint8 and p.flags["C_CONTIGUOUS"] and p.shape == (5, 6) for _, p in files)
    np.testing.assert_array_equal(files[1][1], planes[..., 1])
    written = save_mask_png(planes, tmp_path / "cell.png", "multilabel")
    data, _, _ = encode_mask(planes, "multilabel", "cell")
    assert [p.name for p in written] == [name for name, _ in files]
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == [name for name, _ in files]
    np.testing.assert_array_equal(cv2.imread(str(written[1]), cv2.IMREAD_GRAYSCALE), planes[..., 1])


def test_runs_that_predict_have_a_saved_model_and_readable_settings(tmp_path):
    from segcore.prediction import runs_that_predict
    from segcore.runs import RunSummary

    def run(name, state, model=True, damage=None):
        folder = tmp_path / name
        (folder / "checkpoints").mkdir(parents=True)
        if model:
            (folder / "checkpoints" / "last.keras").write_bytes(b"model")
        return RunSummary(run_id=name, state=state, path=str(folder), damage=damage or {})

    summaries = [
        run("finished", "finished"), run("stopped", "stopped"), run("running", "running"),
        run("queued", "queued", model=False), run("no-model", "finished", model=False),
        run("bad-status", "damaged", damage={"status.json": "not JSON"}),
        run("bad-config", "damaged", damage={"config.json": "not JSON"}),
    ]
    assert [s.run_id for s in runs_that_predict(summaries)] == ["finished", "stopped", "bad-status"]


def test_test_time_views_are_the_flips_training_used():
    """A model never shown a street scene upside down is not asked about one: tta averages the flips it trained on."""
    class Recorder:
        """A 'model' that records the views it is given and answers with their top row's brightness."""

        def __init__(self):
            self.seen = []

        def predict_on_batch(self, x):
            self.seen.append(np.asarray(x).copy())
            return np.ones(x.shape[:3] + (1,), np.float32) * 0.5

    image = np.zeros((32, 32, 1), np.float32)
    image[:8] = 255.0  # bright at the top
    for vertical, horizontal, views in ((True, True, 4), (False, True, 2), (True, False, 2), (False, False, 1)):
        model = Recorder()
        p = Predictor(run_id="r", model=model, image_size=32, channels=1, mode="binary", class_names=["bg", "fg"],
                      checkpoint="", fit="native", tta=True, tta_vertical=vertical, tta_horizontal=horizontal)
        assert len(p.views()) == views
        p.predict_probs(image)
        tops = {float(np.asarray(x)[0, 0, :, 0].mean()) for x in model.seen}
        assert tops == ({255.0, 0.0} if vertical else {255.0})  # upside down only when training flipped vertically
    assert Predictor(run_id="r", model=None, image_size=32, channels=1, mode="binary", class_names=["bg", "fg"],
                     checkpoint="", tta=False).views() == [(False, False, False)]


def test_transposed_views_are_the_eight_symmetries_and_turn_back_exactly():
    """With ``tta_transpose`` tta averages eight views, each turned back before averaging."""
    from segcore.prediction.predictor import View

    class TopRow:
        """A 'model' whose foreground probability is 1 on the first row of what it is given, else 0."""

        def predict_on_batch(self, x):
            out = np.zeros(x.shape[:3] + (1,), np.float32)
            out[:, 0] = 1.0
            return out

    p = Predictor(run_id="r", model=TopRow(), image_size=32, channels=1, mode="binary", class_names=["bg", "fg"],
                  checkpoint="", fit="native", tta=True, tta_transpose=True)
    views = p.views()
    assert len(views) == len(set(views)) == 8 and views[0] == View(False, False, False)
    x = np.arange(6 * 4 * 2).reshape(6, 4, 2)
    for view in views:
        np.testing.assert_array_equal(view.undo(view.apply(x)), x)
    probs = p.predict_probs(np.zeros((32, 48, 1), np.float32))
    assert probs.shape == (32, 48, 1)
    # each view's first row, turned back, is one side of the image: the top, bottom, left or right edge twice
    edges = probs[..., 0]
    assert edges[0, 20] == pytest.approx(0.25) and edges[-1, 20] == pytest.approx(0.25)
    assert edges[16, 0] == pytest.approx(0.25) and edges[16, -1] == pytest.approx(0.25)
    assert edges[16, 20] == pytest.approx(0.0)


@pytest.mark.slow
def test_a_run_without_vertical_flips_predicts_without_them_and_without_transposed_views(workspace):
    from tests._train_helpers import make_shapes_dataset
    from segcore.config import AugmentConfig, ModelConfig, RunConfig, TrainConfig
    from segcore.queue.launcher import launch
    from segcore.runs import open_run
    from segcore.training.trainer import train_run

    make_shapes_dataset(workspace, n=8, size=32)
    cfg = RunConfig(model=ModelConfig(depth=3, filters=4),
                    train=TrainConfig(dataset="shapes", image_size=32, epochs=1, batch_size=4, tta=True,
                                      augment=AugmentConfig(vflip=False, transpose=True)))
    run = open_run(launch(cfg, workspace, start_worker=False), workspace)
    assert train_run(run)["state"] == "finished"
    assert Predictor.from_folder(run).views() == [(False, False, False), (False, True, False)]

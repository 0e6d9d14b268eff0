"""Honest numbers: masks on their images' grid, scores at the labels' own resolution, a ranking a
near-constant model cannot win, boundary and calibration figures checked against scipy, leaks found by content."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segcore.data.arrays import load_arrays
from segcore.data.dataset import load_dataset
from segcore.data.imports import import_dataset
from segcore.data.resample import resize_labels
from segcore.evaluation import evaluate_predictions
from segcore.labels import Labels

# --------------------------------------------------------------------------- geometry


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)


def _centroid(weights: np.ndarray) -> tuple[float, float]:
    w = weights.astype(np.float64)
    yy, xx = np.mgrid[: w.shape[0], : w.shape[1]]
    return float((w * yy).sum() / w.sum()), float((w * xx).sum() / w.sum())


def _expected(c: float, src: int, dst: int) -> float:
    """Where source coordinate ``c`` lands: destination pixel d samples source (d + 0.5) / scale - 0.5."""
    return (c + 0.5) * dst / src - 0.5


@pytest.mark.parametrize("size", [128, 146, 200, 292, 700])  # 584 / 146 and 584 / 292 are integer factors; 700 enlarges
def test_loaded_masks_keep_their_images_centroid(workspace, tmp_path, size):
    """One ellipse per 584x565 image loaded at ``size``: mask and image centroids land where the true mapping puts them."""
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    cy, cx = 300.3, 270.7
    mask = _ellipse(584, 565, cy, cx, 120, 90)
    cv2.imwrite(str(src / "images" / "a.png"), (mask * 200 + 20).astype(np.uint8))
    cv2.imwrite(str(src / "masks" / "a.png"), mask * 255)
    import_dataset(src, "ell", workspace=workspace)
    images, masks = load_arrays("ell", None, size, workspace=workspace, fit="squash")
    ey, ex = _expected(cy, 584, size), _expected(cx, 565, size)
    my, mx = _centroid(masks[0] == 1)
    iy, ix = _centroid(images[0, ..., 0].astype(np.float64) - 20)
    assert abs(iy - ey) < 0.05 and abs(ix - ex) < 0.05  # the image is centred (INTER_AREA / LINEAR)
    # the mask too, on both axes (OpenCV's INTER_NEAREST put it 0.3-0.5 px up-left)
    assert abs(my - ey) < 0.1 and abs(mx - ex) < 0.1, (my - ey, mx - ex)


def test_label_resize_never_blends_classes_and_keeps_void():
    rng = np.random.default_rng(0)
    mask = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(61, 47))
    for h, w in ((20, 13), (61, 47), (150, 99)):
        out = resize_labels(mask, h, w)
        assert out.shape == (h, w) and set(np.unique(out)) <= {0, 1, 2, 255}
    planes = np.stack([mask == 1, mask == 2], axis=-1).astype(np.uint8)
    assert resize_labels(planes, 30, 20).shape == (30, 20, 2)


def test_augmentation_warp_keeps_the_mask_on_its_image():
    from segcore.data.augment import AugmentParams, apply_params

    cy, cx = 50.2, 90.7
    mask = _ellipse(120, 160, cy, cx, 20, 30)
    image = (mask * 200).astype(np.uint8)
    for zoom, angle in ((1.3, 0.0), (0.8, 17.0), (1.1, -33.0)):
        params = AugmentParams(hflip=False, vflip=False, angle=angle, scale=zoom, shift_x=3.3, shift_y=-2.2,
                               brightness=0.0, contrast=1.0)
        img, m = apply_params(image, mask, params)
        matrix = cv2.getRotationMatrix2D(((160 - 1) / 2.0, (120 - 1) / 2.0), angle, zoom)
        ex, ey = matrix @ np.array([cx, cy, 1.0]) + np.array([3.3, -2.2])  # where the ellipse's centre goes
        my, mx = _centroid(m == 1)
        iy, ix = _centroid(img)
        assert abs(iy - ey) < 0.1 and abs(ix - ex) < 0.1, (zoom, angle, iy - ey, ix - ex)
        assert abs(my - ey) < 0.15 and abs(mx - ex) < 0.15, (zoom, angle, my - ey, mx - ex)


# --------------------------------------------------------------------------- eval == predict + numpy at full size


def _source(tmp_path, sizes):
    """A binary source folder of non-square images of several sizes: a bright disc on noise; masks 0/255."""
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for i, (h, w) in enumerate(sizes):
        mask = _ellipse(h, w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, h / 5, w / 6)
        img = np.clip(rng.normal(90, 20, (h, w)) + mask * 120, 0, 255).astype(np.uint8)
        cv2.imwrite(str(src / "images" / f"s{i:02d}.png"), img)
        cv2.imwrite(str(src / "masks" / f"s{i:02d}.png"), mask * 255)
    return src


def _dice(t: np.ndarray, p: np.ndarray) -> float:
    denom = t.sum() + p.sum()
    return float("nan") if denom == 0 else 2.0 * (t & p).sum() / denom


@pytest.mark.slow
@pytest.mark.backend
def test_eval_per_image_equals_predict_and_numpy_on_the_original_files(workspace, tmp_path):
    from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
    from segcore.prediction import Predictor, read_image
    from segcore.runs import open_run
    from segcore.queue.launcher import launch
    from segcore.training.trainer import train_run

    sizes = [(40, 60), (48, 64), (40, 60), (44, 70)] * 3
    src = _source(tmp_path, sizes)
    import_dataset(src, "discs", workspace=workspace)
    cfg = RunConfig(model=ModelConfig(depth=3, filters=4),
                    train=TrainConfig(dataset="discs", image_size=32, epochs=1, batch_size=4, learning_rate=1e-3,
                                      augment=AugmentConfig(enabled=False),
                                      split=SplitConfig(val_fraction=0.25, test_fraction=0.34)))
    run = open_run(launch(cfg, workspace, start_worker=False), workspace)
    assert train_run(run)["state"] == "finished"
    record = run.read_evaluation()
    assert record["resolution"] == "native"
    test_ids = record["ids"]
    native = sum(cv2.imread(str(src / "masks" / f"{i}.png")).shape[0] * cv2.imread(str(src / "masks" / f"{i}.png")).shape[1]
                 for i in test_ids)
    assert record["num_pixels"] == native  # every label pixel scored, at the label's own size
    predictor = Predictor.from_folder(run)  # what `segcore predict` does with a file
    for row in record["per_image"]:
        image = read_image(src / "images" / f"{row['id']}.png")
        pred = predictor.predict_mask(image)
        truth = cv2.imread(str(src / "masks" / f"{row['id']}.png"), cv2.IMREAD_GRAYSCALE) > 127
        assert pred.shape == truth.shape
        ours = [_dice(~truth, pred == 0), _dice(truth, pred == 1)]
        np.testing.assert_allclose(row["dice"], ours, atol=1e-6)
        assert row["all_dice"] == pytest.approx(np.nanmean(ours), abs=1e-6)
    cached = run.read_cached_probs(test_ids[0])
    assert cached.shape[:2] == cv2.imread(str(src / "masks" / f"{test_ids[0]}.png")).shape[:2]  # the cache is native too


# --------------------------------------------------------------------------- the ranking


def _isbi_like(seed: int = 0):
    """Foreground (cell interior) on ~78% of the pixels, thin background membranes between cells."""
    rng = np.random.default_rng(seed)
    truths = []
    for _ in range(3):
        t = np.ones((96, 96), np.uint8)
        for k in range(0, 96, 12):
            t[:, k : k + 2] = 0
            t[k, :] = 0
        truths.append(t)
    constant = [np.full((96, 96, 1), 0.97, np.float32) for _ in truths]
    structured = []
    for t in truths:
        p = np.where(t == 1, 0.8, 0.2).astype(np.float32)
        flip = rng.random(t.shape) < 0.25  # a model with visible structure and its share of mistakes
        structured.append(np.where(flip, 1.0 - p, p)[..., None])
    return truths, constant, structured


def test_a_near_constant_model_does_not_rank_first():
    from segcore import visualize as viz

    truths, constant, structured = _isbi_like()
    a = evaluate_predictions(truths, constant, "binary", ["background", "cell"]).to_dict()
    b = evaluate_predictions(truths, structured, "binary", ["background", "cell"]).to_dict()
    assert a["macro"]["dice"] > b["macro"]["dice"]  # the foreground Dice alone would crown the constant model
    assert b["all"]["dice"] > a["all"]["dice"]  # the headline counts the background it never paints
    ranking = viz.rank_runs({"constant": a, "structured": b})
    assert [r["label"] for r in ranking] == ["structured", "constant"]
    assert a["degenerate"] and not b["degenerate"]
    assert any("near-constant output: 'cell'" in w for w in a["warnings"])
    assert a["headline"] == {"key": "all_dice", "name": "Dice, all classes", "value": pytest.approx(a["all"]["dice"])}
    table = viz.compare_table({"constant": a, "structured": b})
    marked = viz.best_mask(table, axis=1, subset=viz.ranked_rows(table))
    assert bool(marked.loc["all classes", "structured"]) and not marked.loc["macro"].any()


def test_a_degenerate_epoch_is_flagged_by_the_health_check():
    from segcore.training.health import epoch_health, health_warnings

    truths, constant, _ = _isbi_like()
    h = epoch_health(np.stack(truths), np.stack(constant), "binary", ["background", "cell"])
    missing: dict = {}
    warnings = [health_warnings(h, missing, e) for e in (1, 2, 3)][-1]
    assert any("near-constant output" in w for w in warnings)
    assert any("class 'background' has not been predicted" in w for w in warnings)


def test_one_owner_of_label_meaning():
    camvid = Labels("multiclass", ("Sky", "Building", "Road"), class0_is_background=False)
    assert camvid.scored == (0, 1, 2) and camvid.painted == (0, 1, 2) and camvid.unpainted is None
    assert "all 3 classes" in camvid.macro_caption() and "'Sky') is a real class" in camvid.macro_caption()
    vessels = Labels("binary", ("background", "vessel"))
    assert vessels.scored == (1,) and vessels.ranked == (0, 1) and vessels.unpainted == 0
    assert "foreground classes 1..1" in vessels.macro_caption()
    from segcore.runrecord import DatasetRecord

    assert DatasetRecord.from_dict({"mode": "multiclass", "classes": ["Sky", "Road"], "class0": "class"}).labels.include_background
    assert not DatasetRecord.from_dict({"mode": "binary", "classes": ["bg", "fg"]}).labels.include_background


def test_overlays_paint_class_0_when_it_is_a_real_class():
    from segcore import visualize as viz

    image = np.full((4, 4, 3), 100, np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 1
    colors = np.array([[0, 0, 255], [255, 0, 0]], np.uint8)
    sky = viz.overlay(image, mask, colors, 1.0, None, unpainted=Labels("multiclass", ("Sky", "Road"), False).unpainted)
    assert (sky[3, 3] == [0, 0, 255]).all()  # class 0 painted in its colour
    bg = viz.overlay(image, mask, colors, 1.0, None, unpainted=Labels("multiclass", ("bg", "Road")).unpainted)
    assert (bg[3, 3] == [100, 100, 100]).all()


# --------------------------------------------------------------------------- boundaries and calibration


def _scipy_surface(pred: np.ndarray, truth: np.ndarray, tol: float) -> tuple[float, float]:
    from scipy import ndimage

    full = np.ones((3, 3), bool)
    edge_p = pred & ~ndimage.binary_erosion(pred, structure=full, border_value=0)
    edge_t = truth & ~ndimage.binary_erosion(truth, structure=full, border_value=0)
    d_to_t = ndimage.distance_transform_edt(~edge_t)
    d_to_p = ndimage.distance_transform_edt(~edge_p)
    a, b = d_to_t[edge_p], d_to_p[edge_t]
    hd95 = max(np.percentile(a, 95), np.percentile(b, 95))
    nsd = ((a <= tol).sum() + (b <= tol).sum()) / (a.size + b.size)
    return float(hd95), float(nsd)


def test_hd95_and_nsd_match_scipy():
    rng = np.random.default_rng(1)
    truth = np.zeros((64, 80), np.uint8)
    truth[10:40, 12:50] = 1
    truth[45:60, 55:75] = 2
    pred = truth.copy()
    pred[12:42, 15:53] = 1  # shifted by a few pixels
    pred[rng.random(pred.shape) < 0.02] = 2  # specks
    report = evaluate_predictions([truth], [np.eye(3, dtype=np.float32)[pred]], "multiclass", ["bg", "box", "patch"])
    for k in range(3):
        hd, nsd = _scipy_surface(pred == k, truth == k, report.surface_tolerance)
        assert report.per_class[k]["hd95"] == pytest.approx(hd, abs=1e-3)
        assert report.per_class[k]["nsd"] == pytest.approx(nsd, abs=1e-6)
    same = evaluate_predictions([truth], [np.eye(3, dtype=np.float32)[truth]], "multiclass", ["bg", "box", "patch"])
    assert all(r["hd95"] == 0.0 and r["nsd"] == 1.0 for r in same.per_class)


def test_ece_and_reliability_bins_match_an_independent_count():
    rng = np.random.default_rng(2)
    truth = (rng.random((50, 40)) < 0.4).astype(np.uint8)
    truth[0, :5] = 255  # void is not counted
    p = np.clip(np.where(truth == 1, 0.7, 0.3) + rng.normal(0, 0.2, truth.shape), 0, 1).astype(np.float32)
    report = evaluate_predictions([truth], [p[..., None]], "binary", ["bg", "fg"])
    valid = truth != 255
    conf = np.where(p >= 0.5, p, 1 - p)[valid]
    right = ((p >= 0.5) == (truth == 1))[valid]
    edges = np.linspace(0, 1, 16)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, 14)
    ece = sum(abs(right[which == b].mean() - conf[which == b].mean()) * (which == b).sum() for b in range(15) if (which == b).any())
    assert report.calibration["ece"] == pytest.approx(ece / conf.size, abs=1e-9)
    assert sum(b["count"] for b in report.calibration["bins"]) == conf.size


# --------------------------------------------------------------------------- leaks by content


@pytest.mark.slow
@pytest.mark.backend
def test_an_evaluation_names_images_the_run_learned_from_by_their_pixels(workspace, tmp_path):
    from tests._train_helpers import make_shapes_dataset

    from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
    from segcore.evaluation import evaluate_on_dataset
    from segcore.runs import open_run
    from segcore.queue.launcher import launch
    from segcore.training.trainer import train_run

    make_shapes_dataset(workspace, n=16, size=32)
    cfg = RunConfig(model=ModelConfig(depth=3, filters=4),
                    train=TrainConfig(dataset="shapes", image_size=32, epochs=1, batch_size=4,
                                      augment=AugmentConfig(enabled=False),
                                      split=SplitConfig(val_fraction=0.25, test_fraction=0.25)))
    run = open_run(launch(cfg, workspace, start_worker=False), workspace)
    assert train_run(run)["state"] == "finished"
    val = run.read_meta()["split"]["val"]
    # another import holding the run's validation images under other names, and new images
    src = tmp_path / "copy"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    shapes = load_dataset("shapes", workspace)
    for n, sid in enumerate(val):
        cv2.imwrite(str(src / "images" / f"other_{n}.png"), cv2.cvtColor(shapes.image(sid), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(src / "masks" / f"other_{n}.png"), shapes.mask(sid))
    fresh = np.random.default_rng(9).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(src / "images" / "new.png"), fresh)
    cv2.imwrite(str(src / "masks" / "new.png"), np.zeros((32, 32), np.uint8))
    info = json.loads((workspace.dataset_dir("shapes") / "dataset.json").read_text())
    import_dataset(src, "copy", options={"classes": [c["name"] for c in info["classes"]]}, workspace=workspace)
    report = evaluate_on_dataset(run, "copy", workspace=workspace)
    leaks = [w for w in report["warnings"] if w.startswith("leak:")]
    assert len(leaks) == 1 and f"{len(val)} of these {len(val) + 1} images" in leaks[0] and "validation" in leaks[0]
    assert "other_0" in leaks[0] and "new" not in leaks[0].split("(")[1]


def test_the_last_checkpoint_is_scored_on_request_and_validation_that_chose_nothing_is_no_leak(workspace, capsys):
    """``eval --checkpoint last`` loads ``last.keras``; images that only validated the run are a leak for the
    best checkpoint (they chose it) and for a run that stopped early on them, a note for the last of a run without."""
    import keras

    from tests._train_helpers import make_shapes_dataset

    from segcore.cli import main as cli_main
    from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
    from segcore.evaluation import evaluate_on_dataset, evaluate_run
    from segcore.queue.launcher import launch
    from segcore.runs import open_run
    from segcore.training.trainer import train_run

    make_shapes_dataset(workspace, n=16, size=32)
    runs = {}
    for patience in (0, 3):
        cfg = RunConfig(model=ModelConfig(depth=3, filters=4),
                        train=TrainConfig(dataset="shapes", image_size=32, epochs=1, batch_size=4, early_stopping_patience=patience,
                                          augment=AugmentConfig(enabled=False),
                                          split=SplitConfig(val_fraction=0.25, test_fraction=0.25)))
        runs[patience] = run = open_run(launch(cfg, workspace, start_worker=False), workspace)
        assert train_run(run)["state"] == "finished"
    run = runs[0]
    # last.keras made unmistakable: a model that paints class 0 everywhere
    model = keras.models.load_model(run.last_model_path, compile=False)
    bias = next(layer for layer in reversed(model.layers) if layer.weights).weights[-1]  # the head's bias
    bias.assign(np.array([50.0] + [-50.0] * (bias.shape[0] - 1), np.float32))
    run.last_model_path.unlink()  # best.keras may be a second name for the same file: write a new one
    model.save(run.last_model_path)
    best, last = evaluate_run(run), evaluate_run(run, checkpoint="last")
    assert best["checkpoint"] == "best" and last["checkpoint"] == "last"
    assert last["macro"]["dice"] < 0.05 < best["macro"]["dice"]  # nothing but class 0: no foreground class found
    with pytest.raises(ValueError, match="best checkpoint"):
        evaluate_run(run, checkpoint="last", write=True)

    val = run.read_meta()["split"]["val"]
    assert val  # scored on the run's own dataset, every image: its validation images are among them
    as_best = evaluate_on_dataset(run, "shapes", workspace=workspace)
    as_last = evaluate_on_dataset(run, "shapes", workspace=workspace, checkpoint="last")
    early = evaluate_on_dataset(runs[3], "shapes", workspace=workspace, checkpoint="last")
    leaks = lambda report: [w for w in report["warnings"] if w.startswith("leak:")]  # noqa: E731
    assert any("validation, which chose the best checkpoint" in w for w in leaks(as_best))
    assert any("validation, which chose when training stopped" in w for w in leaks(early))
    assert [w for w in leaks(as_last) if "validation" in w] == []
    assert any(w.startswith(f"note: {len(val)} of these") and "did not choose" in w for w in as_last["warnings"])
    assert any("training" in w for w in leaks(as_last))  # training images leak whatever the checkpoint
    assert not (run.path / "evaluations" / "shapes.json").read_text().count('"checkpoint": "last"')  # only best is kept

    assert cli_main(["eval", run.run_id, "--checkpoint", "last"]) == 0
    assert "last checkpoint" in capsys.readouterr().out

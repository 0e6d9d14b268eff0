"""Evaluation: a hand-made confusion matrix, macro vs micro, the absent-class rule,
void pixels, per-image rows, the threshold sweep and the accuracy-is-lying warning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segcore.evaluation import (
    ConfusionAccumulator,
    accuracy_is_lying,
    counts_from_confusion,
    evaluate_predictions,
    metrics_from_counts,
)
from tests._train_helpers import make_shapes_dataset

# Rows: truth, columns: prediction.
CM = np.array([[50, 2, 3], [4, 10, 1], [1, 0, 4]])


def arrays_for(cm, shape=(15, 5)):
    """An index mask and one-hot-ish probabilities that give confusion ``cm``."""
    k = cm.shape[0]
    truth, pred = [], []
    for t in range(k):
        for p in range(k):
            truth += [t] * int(cm[t, p])
            pred += [p] * int(cm[t, p])
    truth = np.array(truth, "uint8").reshape(shape)
    probs = np.full((*shape, k), 0.1, "float32")
    np.put_along_axis(probs, np.array(pred).reshape(*shape, 1), 0.8, axis=-1)
    return truth, probs


def test_confusion_matrix_macro_and_micro():
    truth, probs = arrays_for(CM)
    report = evaluate_predictions([truth], [probs], "multiclass", ["bg", "a", "b"])
    assert report.confusion_matrix == CM.tolist()
    a, b = report.per_class[1], report.per_class[2]
    # class a: TP 10, FP 2 + 0, FN 4 + 1; class b: TP 4, FP 3 + 1, FN 1 + 0
    assert (a["tp"], a["fp"], a["fn"]) == (10, 2, 5)
    assert (b["tp"], b["fp"], b["fn"]) == (4, 4, 1)
    assert a["precision"] == pytest.approx(10 / 12)
    assert a["recall"] == pytest.approx(10 / 15)
    assert a["dice"] == pytest.approx(20 / 27)
    assert b["iou"] == pytest.approx(4 / 9)
    assert b["pixel_accuracy"] == pytest.approx((4 + 75 - 9) / 75)
    assert report.macro["dice"] == pytest.approx((20 / 27 + 8 / 13) / 2)
    assert report.macro["iou"] == pytest.approx((10 / 17 + 4 / 9) / 2)
    # micro pools TP 14, FP 6, FN 6 over the foreground classes
    assert report.micro["dice"] == pytest.approx(28 / 40)
    assert report.micro["iou"] == pytest.approx(14 / 26)
    assert report.pixel_accuracy == pytest.approx(64 / 75)
    # with the background in the averages
    report_bg = evaluate_predictions([truth], [probs], "multiclass", ["bg", "a", "b"], include_background=True)
    assert report_bg.macro["dice"] == pytest.approx((100 / 110 + 20 / 27 + 8 / 13) / 3)
    # micro over all classes of an exclusive head is the pixel accuracy
    assert report_bg.micro["precision"] == pytest.approx(64 / 75)
    assert report_bg.micro["recall"] == pytest.approx(64 / 75)


def test_counts_from_confusion():
    counts = counts_from_confusion(CM)
    assert counts.tolist() == [[50, 5, 5, 15], [10, 2, 5, 58], [4, 4, 1, 66]]


def test_absent_class_rule():
    # K=4: class 3 never in truth, never predicted; class 2 in truth, never predicted.
    truth = np.array([[0, 1, 1, 2]], "uint8")
    probs = np.zeros((1, 4, 4), "float32")
    probs[0, :, 0] = [0.9, 0.1, 0.1, 0.9]
    probs[0, :, 1] = [0.1, 0.9, 0.9, 0.1]
    report = evaluate_predictions([truth], [probs], "multiclass", ["bg", "a", "b", "c"])
    c = report.per_class[3]
    assert c["absent"] and all(math.isnan(c[m]) for m in ("precision", "recall", "iou", "dice", "pixel_accuracy"))
    b = report.per_class[2]
    assert not b["absent"] and b["dice"] == 0.0 and b["precision"] == 0.0 and b["recall"] == 0.0
    # macro over a (1.0) and b (0.0); c is left out
    assert report.macro["dice"] == pytest.approx(0.5)
    d = report.to_dict()
    json.dumps(d, allow_nan=False)  # NaN became None
    assert d["per_class"][3]["dice"] is None
    assert any("'c' is absent" in w for w in d["warnings"])
    assert any("'b' is never predicted" in w for w in d["warnings"])
    # the same rule per image: image macro over present classes only
    assert d["per_image"][0]["dice"][3] is None
    assert d["per_image"][0]["macro_dice"] == pytest.approx(0.5)


def test_metrics_from_counts_all_absent_is_nan():
    m = metrics_from_counts([0], [0], [0], [10])
    assert math.isnan(m["dice"][0])


def test_void_pixels_are_excluded():
    truth = np.array([[1, 0], [255, 255]], "uint8")
    good = np.array([[0.9, 0.1], [0.9, 0.1]], "float32")
    bad = np.array([[0.9, 0.1], [0.1, 0.9]], "float32")  # differs on void pixels only
    r1 = evaluate_predictions([truth], [good], "binary", ["bg", "fg"])
    r2 = evaluate_predictions([truth], [bad], "binary", ["bg", "fg"])
    assert r1.to_dict()["per_class"] == r2.to_dict()["per_class"]
    assert r1.num_pixels == 2 and r1.num_ignored == 2
    assert r1.per_class[1]["dice"] == 1.0


def test_multilabel_planes_and_background_row():
    # labels 1, 2 overlap; one void pixel (255 in a plane)
    truth = np.array([[[1, 0], [1, 1], [0, 0], [0, 1], [255, 255]]], "uint8")
    probs = np.array([[[0.9, 0.1], [0.6, 0.4], [0.2, 0.7], [0.1, 0.8], [0.9, 0.9]]], "float32")
    report = evaluate_predictions([truth], [probs], "multilabel", ["none", "x", "y"])
    assert report.confusion_matrix is None
    assert report.per_class[1]["dice"] == pytest.approx(1.0)
    assert report.per_class[2]["dice"] == pytest.approx(0.5)
    assert report.per_class[0]["tp"] == 0 and report.per_class[0]["fn"] == 1  # no-label pixel not predicted
    assert report.macro["dice"] == pytest.approx(0.75)
    # pooled over the label channels: 8 decisions, 6 right
    assert report.pixel_accuracy == pytest.approx(6 / 8)


def test_per_image_rows_and_ids():
    t1 = np.array([[1, 1], [0, 0]], "uint8")
    t2 = np.array([[1, 0], [0, 0]], "uint8")
    p1 = np.array([[0.9, 0.9], [0.1, 0.1]], "float32")
    p2 = np.array([[0.1, 0.9], [0.1, 0.1]], "float32")  # TP0 FP1 FN1
    report = evaluate_predictions(iter([t1, t2]), iter([p1, p2]), "binary", ["bg", "fg"], ids=["a", "b"])
    rows = report.to_dict()["per_image"]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[0]["macro_dice"] == 1.0 and rows[1]["macro_dice"] == 0.0
    assert rows[1]["pixel_accuracy"] == pytest.approx(0.5)
    assert rows[0]["foreground_true"] == pytest.approx(0.5)
    assert rows[1]["foreground_pred"] == pytest.approx(0.25)
    # split: TP 2 FP 1 FN 1
    assert report.macro["dice"] == pytest.approx(4 / 6)


def test_threshold_sweep():
    # positives at .32 and .9, negatives at .12 and .6
    truth = np.array([[1, 1, 0, 0]], "uint8")
    probs = np.array([[0.32, 0.9, 0.12, 0.6]], "float32")
    sweep = evaluate_predictions([truth], [probs], "binary", ["bg", "fg"]).threshold_sweep
    d = dict(zip(sweep["thresholds"], sweep["dice"][0]))
    assert d[0.1] == pytest.approx(4 / 6)  # TP2 FP2
    assert d[0.2] == pytest.approx(0.8)  # TP2 FP1
    assert d[0.5] == pytest.approx(0.5)  # TP1 FP1 FN1
    assert d[0.7] == pytest.approx(2 / 3)  # TP1 FN1
    assert d[0.95] == 0.0
    assert sweep["best_threshold"] == pytest.approx(0.15) and sweep["best_macro_dice"] == pytest.approx(0.8)
    # softmax heads have no sweep
    p3 = np.stack([1 - probs, probs], axis=-1)
    assert evaluate_predictions([truth], [p3], "multiclass", ["bg", "fg"]).threshold_sweep is None


def test_accuracy_is_lying_like_the_lesion_model():
    # 1000 pixels, 20 lesion pixels; 2 found, 18 missed, 8 false alarms:
    # accuracy (2 + 972) / 1000 = 0.974, Dice 4 / 30 = 0.13
    truth = np.zeros((20, 50), "uint8")
    truth[0, :20] = 1
    probs = np.zeros((20, 50), "float32")
    probs[0, :2] = 0.9
    probs[5, :8] = 0.9
    report = evaluate_predictions([truth], [probs], "binary", ["bg", "lesion"])
    assert report.pixel_accuracy == pytest.approx(0.974)
    assert report.macro["dice"] == pytest.approx(4 / 30)
    assert any(w.startswith("accuracy is lying: pixel accuracy 0.97 but mean Dice 0.13") for w in report.warnings)
    assert accuracy_is_lying(0.98, 0.13) is not None
    assert accuracy_is_lying(0.98, 0.8) is None
    assert accuracy_is_lying(0.7, 0.13) is None


def test_bad_inputs():
    acc = ConfusionAccumulator("multilabel", 3)
    with pytest.raises(ValueError, match=r"multilabel mask must be label planes \(H, W, 2\), got shape \(2, 2\)"):
        acc.update(np.zeros((2, 2), "uint8"), np.zeros((2, 2, 2), "float32"))
    acc = ConfusionAccumulator("multiclass", 3)
    with pytest.raises(ValueError, match=r"shape \(2, 2, 2\) do not fit a multiclass head with 3 classes"):
        acc.update(np.zeros((2, 2), "uint8"), np.zeros((2, 2, 2), "float32"))
    with pytest.raises(ValueError, match=r"mask has values \[7\]"):
        acc.update(np.full((2, 2), 7, "uint8"), np.zeros((2, 2, 3), "float32"))
    with pytest.raises(ValueError, match="differs from prediction size"):
        acc.update(np.zeros((2, 3), "uint8"), np.zeros((2, 2, 3), "float32"))
    with pytest.raises(ValueError, match="more predictions than masks"):
        evaluate_predictions([np.zeros((2, 2), "uint8")], [np.zeros((2, 2))] * 2, "binary", ["bg", "fg"])
    with pytest.raises(ValueError, match="at least 2 classes"):
        ConfusionAccumulator("multiclass", 1)


# --------------------------------------------------------------------------- typed reports of a run


def test_summary_metrics_are_the_headline_numbers_and_leave_out_na():
    from segcore.evaluation import EvaluationReport, summary_metrics

    truth, probs = arrays_for(CM)
    report = evaluate_predictions([truth], [probs], "multiclass", ["bg", "a", "b"])
    summary = summary_metrics(report)
    assert set(summary) == ({f"{avg}_{m}" for avg in ("macro", "micro", "all") for m in ("dice", "iou", "precision", "recall")}
                            | {"pixel_accuracy", "all_hd95", "all_nsd", "ece"})
    assert summary["all_dice"] == pytest.approx(np.mean([r["dice"] for r in report.per_class]))  # the headline: every class
    assert summary["macro_dice"] == pytest.approx(report.macro["dice"])
    assert summary["micro_iou"] == pytest.approx(report.micro["iou"])
    assert summary["pixel_accuracy"] == pytest.approx(report.pixel_accuracy)
    assert all(type(v) is float for v in summary.values())
    na = EvaluationReport(mode="binary", class_names=["bg", "fg"], threshold=0.5, ignore_index=255, include_background=False,
                          num_images=1, num_pixels=4, num_ignored=0, pixel_accuracy=math.nan, per_class=[],
                          macro={"dice": math.nan, "iou": 0.25}, micro={"dice": 0.5}, confusion_matrix=None)
    assert summary_metrics(na) == {"macro_iou": 0.25, "micro_dice": 0.5}  # n/a left out, missing keys too


def test_report_record_is_the_json_a_run_keeps_with_its_ids():
    from segcore.evaluation import report_record

    truth = np.zeros((4, 4), "uint8")  # class 1 absent from truth and prediction: n/a
    probs = np.zeros((4, 4, 2), "float32")
    probs[..., 0] = 1.0
    report = evaluate_predictions([truth, truth], [probs, probs], "multiclass", ["bg", "fg"], ids=["a", "b"])
    record = report_record(report, ["a", "b"])
    assert record["ids"] == ["a", "b"] and [row["id"] for row in record["per_image"]] == ["a", "b"]
    assert record["per_class"][1]["dice"] is None and record["macro"]["dice"] is None  # NaN -> None (n/a)
    assert {k: v for k, v in record.items() if k != "ids"} == report.to_dict()
    json.dumps(record, allow_nan=False)


class _FlatModel:
    """A stand-in for a Keras model: the same probabilities everywhere (no Keras needed)."""

    def __init__(self, outputs: int):
        self.outputs = outputs
        self.batches = 0

    def predict_on_batch(self, x):
        self.batches += 1
        probs = np.zeros(x.shape[:3] + (self.outputs,), np.float32)
        probs[..., 0] = 0.8
        probs[..., 1:] = 0.2 / (self.outputs - 1)
        return probs


def _flat_predictor(outputs: int, size: int = 16):
    from segcore.prediction import Predictor

    return Predictor(run_id="flat", model=_FlatModel(outputs), image_size=size, channels=3, mode="multiclass",
                     class_names=[f"c{k}" for k in range(outputs)], checkpoint="")


def test_evaluate_run_model_keeps_the_record_and_returns_the_typed_report(workspace):
    from segcore.config import RunConfig, TrainConfig
    from segcore.data.dataset import load_dataset
    from segcore.evaluation import EvaluationReport, RunEvaluation, evaluate_run_model, summary_metrics
    from segcore.runs import create_run

    make_shapes_dataset(workspace, n=6, size=16)
    dataset = load_dataset("shapes", workspace)
    test_ids = dataset.ids[-2:]
    run = create_run(workspace, RunConfig(train=TrainConfig(dataset="shapes", image_size=16)),
                     dataset={"name": "shapes", "mode": "multiclass", "classes": dataset.info.class_names, "channels": 3},
                     split={"train": dataset.ids[:4], "val": [], "test": test_ids})
    evaluation = evaluate_run_model(run, _flat_predictor(3), dataset, test_ids)
    assert isinstance(evaluation, RunEvaluation) and isinstance(evaluation.report, EvaluationReport)
    assert evaluation.report.num_images == 2 and evaluation.report.mode == "multiclass"
    record = evaluation.record
    assert record["ids"] == test_ids and record["run_id"] == run.run_id and record["split"] == "test"
    assert record["image_size"] == 16 and record["fit"] == "squash"
    assert run.read_evaluation() == json.loads(json.dumps(record))  # what the run folder keeps
    assert run.read_prediction_index()["ids"] == test_ids
    assert summary_metrics(evaluation.report)["pixel_accuracy"] == pytest.approx(record["pixel_accuracy"])

    other = create_run(workspace, RunConfig(train=TrainConfig(dataset="shapes", image_size=16)),
                       dataset={"name": "shapes", "mode": "multiclass", "classes": dataset.info.class_names, "channels": 3},
                       split={"train": dataset.ids[:4], "val": [], "test": test_ids})
    evaluate_run_model(other, _flat_predictor(3), dataset, test_ids, write=False, save_predictions=False)
    assert other.read_evaluation() is None and other.read_prediction_index() is None

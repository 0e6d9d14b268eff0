"""The Compare page's review numbers: confusion matrix, precision-recall curves, images ranked by disagreement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segcore.evaluation import evaluate_predictions
from segcore.evaluation.review import (
    AGREE,
    AGREE_WRONG,
    DISAGREE,
    VOID_PIXEL,
    ScoreHistograms,
    accumulate_curves,
    average_precision,
    disagreement_map,
    normalized_confusion,
    pr_curve,
    rank_disagreement,
)


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _multiclass_split(seed=0, n=3, k=4, size=(20, 24)):
    rng = np.random.default_rng(seed)
    masks, probs = [], []
    for _ in range(n):
        t = rng.integers(0, k, size).astype(np.uint8)
        t[rng.random(size) < 0.1] = 255  # void
        logits = rng.normal(size=size + (k,)) + 2.0 * np.eye(k)[np.where(t == 255, 0, t)]
        masks.append(t)
        probs.append(_softmax(logits))
    return masks, probs


def test_confusion_matrix_matches_a_numpy_reference_and_leaves_void_out():
    masks, probs = _multiclass_split()
    k = 4
    hist = accumulate_curves(range(3), lambda i: probs[i], lambda i: masks[i], "multiclass", k)
    ref = np.zeros((k, k), np.int64)
    for t, p in zip(masks, probs):
        pred = p.argmax(-1)
        for a in range(k):
            for b in range(k):
                ref[a, b] += int(((t == a) & (pred == b)).sum())
    assert np.array_equal(hist.confusion, ref)
    assert hist.confusion.sum() == sum(int((t != 255).sum()) for t in masks)
    # the same matrix the metric table's evaluation keeps
    report = evaluate_predictions(iter(masks), iter(probs), "multiclass", list("abcd"), 255, surface=False)
    assert np.array_equal(np.asarray(report.confusion_matrix), ref)
    share = normalized_confusion(ref)
    assert np.allclose(share.sum(axis=1), 1.0)
    assert share[2, 1] == pytest.approx(ref[2, 1] / ref[2].sum())
    # the diagonal is each class's recall as the metric table reports it
    assert np.allclose(np.diag(share), [row["recall"] for row in report.per_class])


def test_a_class_with_no_true_pixels_has_an_empty_row():
    share = normalized_confusion([[5, 1, 0], [0, 0, 0], [2, 0, 2]])
    assert np.isnan(share[1]).all() and share[0].tolist() == pytest.approx([5 / 6, 1 / 6, 0])
    with pytest.raises(ValueError, match="K x K"):
        normalized_confusion([[1, 2, 3]])


def _brute_force(scores, positive, thresholds):
    rows = []
    for t in thresholds:
        on = scores >= t
        tp = int((on & positive).sum())
        fp = int((on & ~positive).sum())
        rows.append((tp / (tp + fp) if tp + fp else math.nan, tp / positive.sum()))
    return np.array(rows)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_pr_curve_matches_a_brute_force_threshold_sweep(mode):
    rng = np.random.default_rng(3)
    h, w, n = 16, 18, 4
    if mode == "multiclass":
        masks, probs = _multiclass_split(seed=3, n=n)
        pairs = [(k, lambda p, k=k: p[..., k], lambda t, k=k: t == k) for k in range(4)]
    elif mode == "binary":
        masks = [rng.integers(0, 2, (h, w)).astype(np.uint8) for _ in range(n)]
        probs = [np.clip(0.35 * m + rng.random((h, w)) * 0.65, 0, 1)[..., None].astype(np.float32) for m in masks]
        pairs = [(1, lambda p: p[..., 0], lambda t: t == 1)]
    else:
        masks = [rng.integers(0, 2, (h, w, 2)).astype(np.uint8) for _ in range(n)]
        probs = [np.clip(0.3 * m + rng.random((h, w, 2)) * 0.7, 0, 1).astype(np.float32) for m in masks]
        pairs = [(k, lambda p, k=k: p[..., k - 1], lambda t, k=k: t[..., k - 1] == 1) for k in (1, 2)]
    num_classes = {"binary": 2, "multiclass": 4, "multilabel": 3}[mode]
    hist = accumulate_curves(range(n), lambda i: probs[i], lambda i: masks[i], mode, num_classes)
    assert hist.classes == [k for k, _, _ in pairs]
    for k, score, positive in pairs:
        valid = [(t != 255) if t.ndim == 2 else (t != 255).all(-1) for t in masks]
        s = np.concatenate([score(p)[v] for p, v in zip(probs, valid)])
        pos = np.concatenate([positive(t)[v] for t, v in zip(masks, valid)])
        curve = hist.curve(k)
        ref = _brute_force(s.astype(np.float64), pos, curve.thresholds)
        assert np.allclose(curve.precision, ref[:, 0], equal_nan=True)
        assert np.allclose(curve.recall, ref[:, 1])
        assert curve.positives == int(pos.sum())
        if mode == "multiclass":  # the arg max: precision and recall from the confusion matrix
            assert curve.threshold is None
            pred = np.concatenate([p.argmax(-1)[v] for p, v in zip(probs, valid)])
            truth = np.concatenate([t[v] for t, v in zip(masks, valid)])
            assert curve.point_recall == pytest.approx(((pred == k) & (truth == k)).sum() / (truth == k).sum())
            assert curve.point_precision == pytest.approx(((pred == k) & (truth == k)).sum() / (pred == k).sum())
        else:  # the threshold the masks use
            assert curve.threshold == 0.5
            assert (curve.point_precision, curve.point_recall) == pytest.approx(tuple(_brute_force(s, pos, [0.5])[0]))


def test_average_precision_is_the_step_area_and_one_for_a_perfect_model():
    t = np.array([[0, 1], [1, 0]], np.uint8)
    hist = ScoreHistograms("binary", 2)
    hist.update(t, np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)[..., None])
    assert hist.curve(1).average_precision == pytest.approx(1.0)
    # precision 1/2 at recall 1 (threshold 0), 1 at recall 1/2 (threshold just above the lower positive)
    assert average_precision(np.array([0.5, 1.0, np.nan]), np.array([1.0, 0.5, 0.0])) == pytest.approx(0.75)
    assert math.isnan(average_precision(*pr_curve(np.zeros(4), np.ones(4))[1:3]))


def test_curves_refuse_probabilities_of_another_head():
    hist = ScoreHistograms("multiclass", 3)
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\)"):
        hist.update(np.zeros((4, 4), np.uint8), np.zeros((4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="curves exist for classes"):
        ScoreHistograms("binary", 2).curve(0)


def test_disagreement_map_marks_differences_shared_errors_and_void():
    truth = np.array([[0, 1, 2], [1, 1, 255]], np.uint8)
    a = np.array([[0, 1, 1], [2, 1, 0]], np.uint8)
    b = np.array([[0, 2, 1], [2, 1, 1]], np.uint8)
    dmap = disagreement_map([a, b], truth)
    assert dmap.tolist() == [[AGREE, DISAGREE, AGREE_WRONG], [AGREE_WRONG, AGREE, VOID_PIXEL]]
    assert disagreement_map([a, b]).tolist() == [[AGREE, DISAGREE, AGREE], [AGREE, AGREE, DISAGREE]]
    with pytest.raises(ValueError, match="at least two runs"):
        disagreement_map([a], truth)


def test_images_are_ranked_by_disagreement_then_by_errors():
    truth = {i: np.zeros((4, 4), np.uint8) for i in ("calm", "split", "wrong", "worst")}
    a = {i: np.zeros((4, 4), np.uint8) for i in truth}
    b = {i: np.zeros((4, 4), np.uint8) for i in truth}
    b["split"][:2] = 1  # half the pixels differ
    a["wrong"][:] = 1
    b["wrong"][:] = 1  # both wrong everywhere, but they agree
    b["worst"][:3] = 1  # 3/4 differ
    truth["calm"][0, 0] = 255
    frame = rank_disagreement(list(truth), lambda i: [a[i], b[i]], truth.get)
    assert list(frame.index) == ["worst", "split", "wrong", "calm"]
    assert frame.loc["worst", "disagree"] == pytest.approx(0.75)
    assert frame.loc["split", "any_wrong"] == pytest.approx(0.5) and frame.loc["split", "all_wrong"] == 0
    assert frame.loc["wrong", "all_wrong"] == 1 and frame.loc["wrong", "disagree"] == 0
    assert frame.loc["calm", "pixels"] == 15
    # multilabel planes: differing in any plane is differing
    pa, pb = np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 2), np.uint8)
    pb[0, 0, 1] = 1
    ml = rank_disagreement(["x"], lambda i: [pa, pb], lambda i: pa, mode="multilabel")
    assert ml.loc["x", "disagree"] == pytest.approx(0.25)


def test_disagreement_overlay_colours_the_marked_pixels_over_grey():
    from segcore.visualize import AGREE_WRONG_COLOR, DISAGREE_COLOR, disagreement_overlay

    image = np.full((2, 2, 3), (0, 200, 0), np.uint8)  # green: the overlay's base is grey
    out = disagreement_overlay(image, np.array([[AGREE, DISAGREE], [AGREE_WRONG, VOID_PIXEL]], np.uint8), opacity=1.0)
    assert out[0, 1].tolist() == list(DISAGREE_COLOR) and out[1, 0].tolist() == list(AGREE_WRONG_COLOR)
    assert out[0, 0, 0] == out[0, 0, 1] == out[0, 0, 2] == out[1, 1, 0]  # unmarked and void: grey
    with pytest.raises(ValueError, match="disagreement map is 3x3"):
        disagreement_overlay(image, np.zeros((3, 3), np.uint8))

"""Seeds, folds and ensembles: the group's runs, their spread, the ensemble's probabilities, and Compare's ranking."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.queue.repeats import fold_splits, spread


def test_folds_cut_the_training_pool_and_keep_the_test_images():
    split = {"train": [f"t{i}" for i in range(10)], "val": ["v0", "v1"], "test": ["x0", "x1"]}
    folds = fold_splits(split, 3, seed=4)
    assert len(folds) == 3 and all(f["test"] == ["x0", "x1"] for f in folds)
    vals = [set(f["val"]) for f in folds]
    assert set().union(*vals) == set(split["train"] + split["val"]) and sum(len(v) for v in vals) == 12  # disjoint, complete
    for f in folds:
        assert not set(f["train"]) & set(f["val"]) and len(f["train"]) + len(f["val"]) == 12
    assert fold_splits(split, 3, seed=4) == folds and fold_splits(split, 3, seed=5) != folds
    with pytest.raises(ValueError, match="cannot make 20 folds"):
        fold_splits(split, 20, seed=0)


def test_spread_is_mean_sd_min_max():
    s = spread([0.7, 0.8, None, float("nan"), 0.9])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.8) and s["std"] == pytest.approx(0.1)
    assert spread([])["mean"] is None and spread([0.5])["std"] == 0.0


def test_a_gap_inside_the_seed_spread_is_not_a_win():
    from segcore import visualize as viz

    reports = {"a": {"all": {"dice": 0.80}}, "b": {"all": {"dice": 0.79}}, "c": {"all": {"dice": 0.60}}}
    ranking = viz.rank_runs(reports, {"a": 0.02, "b": 0.015})
    assert [r["label"] for r in ranking] == ["a", "b", "c"]
    assert [r["within_spread"] for r in ranking] == [False, True, False]
    assert not any(r["within_spread"] for r in viz.rank_runs(reports))  # no spread measured: plain order


@pytest.mark.slow
@pytest.mark.backend
def test_folds_train_as_a_group_and_their_ensemble_averages_the_runs(workspace, monkeypatch):
    import segcore.queue.launcher as launcher
    from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
    from segcore.data.dataset import load_dataset
    from segcore.prediction import Predictor
    from segcore.runs import open_run
    from segcore.queue.repeats import EnsemblePredictor, evaluate_ensemble, group_summary, queue_folds, run_spreads
    from segcore.training.trainer import train_run
    from tests._train_helpers import make_shapes_dataset

    monkeypatch.setattr(launcher, "ensure_worker", lambda ws: None)  # trained here, one after the other
    make_shapes_dataset(workspace, n=16, size=32)
    cfg = RunConfig(model=ModelConfig(depth=3, filters=4),
                    train=TrainConfig(dataset="shapes", image_size=32, epochs=1, batch_size=4, augment=AugmentConfig(enabled=False),
                                      split=SplitConfig(val_fraction=0.2, test_fraction=0.25)))
    group = queue_folds(cfg, workspace, folds=3)
    assert group["kind"] == "folds" and len(group["runs"]) == 3 and len(group["test"]) == 4
    metas = {}
    for entry in group["runs"]:
        run = open_run(entry["run_id"], workspace)
        meta = run.read_meta()
        assert meta["split"]["test"] == group["test"] and meta["group"]["id"] == group["group_id"]
        assert group["group_id"] in run.read_config().tags
        result = train_run(run)
        assert result["state"] == "finished"
        run.update_status(**result)  # as the training process records its end
        metas[entry["run_id"]] = run.read_record()
    summary = group_summary(workspace, group["group_id"])
    assert summary["metrics"]["all_dice"]["n"] == 3 and summary["metrics"]["all_dice"]["std"] >= 0
    spreads = run_spreads(workspace, metas)
    assert set(spreads) == set(metas) and all(s["n"] == 3 for s in spreads.values())
    members = [Predictor.from_folder(open_run(e["run_id"], workspace)) for e in group["runs"]]
    image = load_dataset("shapes", workspace).image(group["test"][0])
    np.testing.assert_allclose(EnsemblePredictor(members).predict_probs(image),
                               np.mean([m.predict_probs(image) for m in members], axis=0), atol=1e-6)
    record = evaluate_ensemble(workspace, group["group_id"])
    assert record["members"] == [e["run_id"] for e in group["runs"]] and record["num_images"] == 4
    assert (workspace.root / "groups" / group["group_id"] / "evaluation.json").is_file()

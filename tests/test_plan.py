"""The plan from a dataset's fingerprint, native-resolution patches, blended tiles, the time budget."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segcore.data.fingerprint import (Fingerprint, class_profile, fingerprint, label_survival, mirror_asymmetry,
                                     profile_difference, structure_thickness)
from segcore.training.plan import make_plan


def _fp(**kw) -> Fingerprint:
    base = dict(name="d", mode="binary", num_classes=2, class_names=("background", "thing"), class0_is_background=True,
                channels=1, num_images=30, median_height=512, median_width=512, min_short_side=512,
                class_fraction=(0.78, 0.22), thickness={"thing": 6.0},
                survival={"128": {"thing": 0.80}, "256": {"thing": 0.93}})
    base.update(kw)
    return Fingerprint(**base)


def test_structure_thickness_measures_lines_and_discs():
    img = np.zeros((200, 200), np.uint8)
    cv2.line(img, (10, 100), (190, 100), 1, thickness=5)
    assert structure_thickness(img == 1) == pytest.approx(img[:, 100].sum(), abs=0.5)  # the line's width in pixels
    disc = np.zeros((200, 200), np.uint8)
    cv2.circle(disc, (100, 100), 60, 1, -1)
    assert structure_thickness(disc == 1) > 60
    assert structure_thickness(np.zeros((5, 5), bool)) is None


def test_thickness_is_not_fooled_by_specks():
    """A class of one wide region and many specks (sky seen through leaves) is as thick as the region."""
    rng = np.random.default_rng(0)
    img = np.zeros((360, 480), np.uint8)
    cv2.rectangle(img, (20, 20), (459, 140), 1, thickness=-1)  # a band 121 px tall
    ys, xs = rng.integers(180, 360, 1500), rng.integers(0, 480, 1500)
    img[ys, xs] = 1  # about 1,500 specks: far fewer pixels than the band's 53,000
    assert structure_thickness(img == 1) > 60
    line = np.zeros((200, 200), np.uint8)
    cv2.line(line, (10, 100), (190, 100), 1, thickness=5)
    line[rng.integers(0, 60, 100), rng.integers(0, 200, 100)] = 1  # a few specks beside a line do not make it thinner
    assert structure_thickness(line == 1) == pytest.approx(line[80:120, 100].sum(), abs=0.5)


def test_label_survival_loses_thin_lines_and_keeps_wide_regions():
    mask = np.zeros((512, 512), np.uint8)
    cv2.rectangle(mask, (40, 40), (300, 300), 1, thickness=-1)  # a wide square
    for y in range(350, 500, 30):
        cv2.line(mask, (10, y), (500, y), 2, thickness=3)  # lines 3 px wide
    mask[0:8, :] = 255  # void is left out
    counts = {side: label_survival(mask, side, [0, 1, 2], 3) for side in (128, 256)}
    dice = {side: {k: both / total for k, (both, total) in c.items()} for side, c in counts.items()}
    assert dice[128][1] > 0.98 and dice[256][1] > 0.99
    assert dice[128][2] < 0.8 and dice[128][2] < dice[256][2]
    planes = np.stack([mask == 1, mask == 2], axis=-1).astype(np.uint8)  # the same as 0/1 planes (multilabel)
    multi = label_survival(planes, 128, [1, 2], 3, multilabel=True)
    assert multi[1][0] / multi[1][1] > 0.98 and multi[2][0] / multi[2][1] < 0.8


def test_thin_structures_train_at_native_resolution_and_thick_ones_at_a_low_scale():
    thin = make_plan(_fp())
    assert thin.value("train.fit") == "native" and thin.value("train.image_size") == 256
    assert "'thing' keeps only 93%" in next(p.reason for p in thin.settings if p.setting == "train.fit")
    thick = make_plan(_fp(median_height=574, median_width=765, min_short_side=570, thickness={"thing": 288.0},
                          class_fraction=(0.63, 0.37), num_images=10,
                          survival={"128": {"thing": 0.996}, "256": {"thing": 0.998}}))
    assert thick.value("train.fit") == "short_side" and thick.value("train.image_size") == 128
    assert thick.value("train.loss") == "auto" and thin.value("train.loss") == "dice_ce"


def test_the_plan_is_deterministic_and_every_setting_has_a_reason():
    a, b = make_plan(_fp()), make_plan(_fp())
    assert a.to_dict() == b.to_dict()
    assert all(p.reason for p in a.settings)
    cfg = a.config()  # settings objects check every value
    assert cfg.train.dataset == "d" and cfg.train.fit == "native" and cfg.train.budget_minutes == a.value("train.budget_minutes")
    assert cfg.train.augment.rotate_degrees == a.value("train.augment.rotate_degrees")
    many = make_plan(_fp(num_images=800, median_height=256, median_width=256, min_short_side=256, thickness={"thing": 40.0},
                         survival={"128": {"thing": 0.99}}))
    assert many.value("train.patches_per_image") == 1 and many.value("model.norm") in ("group", "batch")


def _street_scene(**kw) -> Fingerprint:
    names = ("sky", "road", "pole", "car")
    base = dict(mode="multiclass", num_classes=4, class_names=names, class0_is_background=False, channels=3,
                num_images=100, median_height=360, median_width=480, min_short_side=360,
                class_fraction=(0.3, 0.6, 0.01, 0.09), thickness={"sky": 30.0, "road": 70.0, "pole": 1.5, "car": 38.0},
                survival={"128": {n: 0.99 for n in names} | {"pole": 0.79}, "256": {n: 0.99 for n in names} | {"pole": 0.91}})
    return _fp(**(base | kw))


def test_class_weighting_when_several_classes_are_scored_and_one_is_rare():
    street = make_plan(_street_scene())
    assert street.value("train.class_weighting") is True and street.config().train.class_weighting
    assert make_plan(_fp()).value("train.class_weighting") is False  # one scored class: the Dice term weighs it
    even = make_plan(_street_scene(class_fraction=(0.3, 0.3, 0.2, 0.2)))
    assert even.value("train.class_weighting") is False


def _scattered_blobs(seed: int, n: int = 30, size: int = 64) -> list[np.ndarray]:
    """Masks of five random discs each: no up, down, left or right."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n):
        m = np.zeros((size, size), np.uint8)
        for _ in range(5):
            cv2.circle(m, tuple(int(v) for v in rng.integers(0, size, 2)), 5, 1, -1)
        masks.append(m)
    return masks


def test_layout_asymmetry_tells_an_upright_scene_from_a_micrograph():
    """Sky above road: far from its mirror image top to bottom, itself left to right. Scattered blobs: neither."""
    scene = np.zeros((60, 80), np.uint8)
    scene[:20] = 0  # sky
    scene[20:40] = 1  # buildings
    scene[40:] = 2  # road
    scene[45:50, 10:20] = 3  # a car
    scene[45:50, 60:70] = 3
    scene[0, :] = 255  # a void row: left out of the shares
    top_bottom = mirror_asymmetry(class_profile(scene, 0, 4))
    left_right = mirror_asymmetry(class_profile(scene, 1, 4))
    assert top_bottom > 0.5 and left_right < 0.01
    blobs = _scattered_blobs(seed=0)
    for axis in (0, 1):
        assert mirror_asymmetry(np.mean([class_profile(m, axis, 2) for m in blobs], axis=0)) < 0.1
    # multi-label planes: one plane on in the top rows only
    planes = np.zeros((40, 40, 2), np.uint8)
    planes[:10, :, 0] = 1
    assert mirror_asymmetry(class_profile(planes, 0, 3, multilabel=True), multilabel=True) == pytest.approx(0.25)
    assert mirror_asymmetry(class_profile(planes, 1, 3, multilabel=True), multilabel=True) == pytest.approx(0.0)


def test_flips_only_along_axes_the_layout_is_symmetric_along():
    upright = make_plan(_street_scene(layout_asymmetry={"vertical": 0.74, "horizontal": 0.16}))
    cfg = upright.config()
    assert (cfg.train.augment.vflip, cfg.train.augment.hflip, cfg.train.tta) == (False, True, True)
    assert "74%" in next(p.reason for p in upright.settings if p.setting == "train.augment.vflip")
    both = make_plan(_street_scene(layout_asymmetry={"vertical": 0.74, "horizontal": 0.4})).config()
    assert (both.train.augment.vflip, both.train.augment.hflip, both.train.tta) == (False, False, False)
    free = make_plan(_fp(layout_asymmetry={"vertical": 0.03, "horizontal": 0.03})).config()
    assert (free.train.augment.vflip, free.train.augment.hflip, free.train.tta) == (True, True, True)
    assert make_plan(_fp()).config().train.augment.vflip  # an older fingerprint without the measure: flips as before


def test_layout_alike_down_rows_and_across_columns_is_transposed():
    """Scattered blobs look the same with rows for columns; vertical stripes of classes do not, though mirror-symmetric."""
    blobs = _scattered_blobs(seed=1)
    rows, cols = (np.mean([class_profile(m, axis, 2) for m in blobs], axis=0) for axis in (0, 1))
    assert profile_difference(rows, cols) < 0.1
    centre = np.zeros((64, 64), np.uint8)
    centre[:, 16:48] = 1  # a class in a central column band only: symmetric both ways, not under transposition
    rows, cols = class_profile(centre, 0, 2), class_profile(centre, 1, 2)
    assert mirror_asymmetry(rows) < 0.01 and mirror_asymmetry(cols) < 0.01
    assert profile_difference(rows, cols) > 0.3


def test_windows_are_transposed_only_where_no_axis_is_special():
    free = make_plan(_fp(layout_asymmetry={"vertical": 0.03, "horizontal": 0.03, "transpose": 0.02}))
    cfg = free.config()
    assert cfg.train.augment.transpose is True and cfg.train.tta is True
    assert "4 views" in next(p.reason for p in free.settings if p.setting == "train.tta")  # the flips only
    for layout in ({"vertical": 0.74, "horizontal": 0.16, "transpose": 0.05},  # upright: no quarter turns
                   {"vertical": 0.03, "horizontal": 0.03, "transpose": 0.45},  # rows and columns differ
                   {"vertical": 0.03, "horizontal": 0.03}):  # an older fingerprint: not measured
        plan = make_plan(_fp(layout_asymmetry=layout))
        assert plan.config().train.augment.transpose is False, layout


def test_an_epoch_trains_on_more_windows_than_validation_predicts():
    """Large images cut into many validation windows: the epoch grows so that validation stays a small part of it."""
    from segcore.data.arrays import window_starts
    from segcore.training.plan import PATCHES_PER_EPOCH, TRAIN_PER_VALIDATION

    street = make_plan(_street_scene())  # 15 validation images of 360x480: 6 windows of 256 each
    per_val_image = len(window_starts(360, 256)) * len(window_starts(480, 256))
    drawn = street.value("train.patches_per_image") * 70
    assert drawn >= TRAIN_PER_VALIDATION * 15 * per_val_image > PATCHES_PER_EPOCH
    small = make_plan(_fp(num_images=30, median_height=96, median_width=96, min_short_side=96))  # one window each
    train_images = 30 - 2 * round(30 * 0.15)  # the default split's share
    assert small.value("train.patches_per_image") == -(-PATCHES_PER_EPOCH // train_images)


def test_the_budget_grows_with_the_training_pixels_within_its_bounds():
    from segcore.training.plan import BUDGET_MINUTES, MAX_BUDGET_MINUTES

    isbi, street = make_plan(_fp()), make_plan(_street_scene())
    assert isbi.value("train.budget_minutes") == BUDGET_MINUTES  # 21 images of 512x512: under the floor
    assert BUDGET_MINUTES < street.value("train.budget_minutes") < MAX_BUDGET_MINUTES  # 70 of 360x480 at native
    huge = make_plan(_street_scene(num_images=5000))
    assert huge.value("train.budget_minutes") == MAX_BUDGET_MINUTES
    scaled = make_plan(_street_scene(survival={"128": {"sky": 0.99, "road": 0.99, "pole": 0.98, "car": 0.99}}))
    assert scaled.value("train.fit") == "short_side" and scaled.value("train.budget_minutes") == BUDGET_MINUTES
    assert "passes over 70 images of 360x480" in next(p.reason for p in street.settings if p.setting == "train.budget_minutes")


def test_plan_changes_name_what_the_user_set():
    from dataclasses import replace

    from segcore.training.plan import changes

    plan = make_plan(_fp())
    cfg = plan.config()
    assert changes(plan.to_dict(), cfg) == {}
    changed = replace(cfg, train=replace(cfg.train, image_size=128))
    assert changes(plan.to_dict(), changed) == {"train.image_size": {"planned": 256, "chosen": 128}}


def test_fingerprint_of_a_real_thin_structure_dataset(shared_datasets, workspace):
    from segcore.data.dataset import load_dataset
    from segcore.data.imports import import_dataset

    path = shared_datasets / "isbi2012-membrane" / "data" / "membrane" / "train"
    assert import_dataset(path, "isbi", options={"invert": True}, workspace=workspace).ok
    fp = fingerprint(load_dataset("isbi", workspace))
    assert fp.num_images == 30 and (fp.median_height, fp.median_width) == (512, 512)
    name, thin = fp.thinnest
    assert 2.0 <= thin <= 10.0  # membranes a few pixels wide
    assert fp.weakest_at(128)[1] < fp.weakest_at(256)[1] < 0.97  # membranes are lost when the images are scaled down
    assert make_plan(fp).value("train.fit") == "native"
    # membranes look the same mirrored either way: flipped in training and averaged over 4 views at test time
    assert max(fp.layout_asymmetry.values()) < 0.1
    plan = make_plan(fp)
    assert plan.value("train.augment.vflip") and plan.value("train.augment.hflip") and plan.value("train.tta")
    assert plan.value("train.augment.transpose")  # and alike with rows for columns: windows transposed too


def test_fingerprint_of_a_real_street_scene_dataset_is_upright(shared_datasets, workspace):
    """CamVid: sky above, road below. The plan does not flip it upside down, in training or at test time."""
    from segcore.data.dataset import load_dataset
    from segcore.data.imports import import_dataset

    names = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"]
    path = shared_datasets / "camvid-subset" / "CamVid"
    assert import_dataset(path, "camvid", options={"ignore": [11], "class0": "class", "classes": names},
                          workspace=workspace).ok
    fp = fingerprint(load_dataset("camvid", workspace))
    assert fp.layout_asymmetry["vertical"] > 0.5 > fp.layout_asymmetry["horizontal"]
    cfg = make_plan(fp).config()
    assert cfg.train.augment.vflip is False and cfg.train.augment.hflip is True and cfg.train.tta is True
    assert cfg.train.augment.transpose is False


def test_plan_command_prints_every_setting_with_its_reason(workspace, capsys):
    from segcore.cli import main
    from segcore.data.demo import make_demo

    make_demo(workspace, num_samples=12, size=64)
    assert main(["plan", "demo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["fingerprint"]["name"] == "demo" and "train.fit" in data["settings"]
    assert all(entry["reason"] for entry in data["settings"].values())


# --------------------------------------------------------------------------- patches and tiles


def test_rare_class_patches_land_on_the_rare_class():
    from segcore.training.pipeline import crop_origin

    mask = np.zeros((512, 512), np.uint8)
    mask[400:410, 30:40] = 1  # a rare class in one corner
    hits = 0
    for epoch in range(300):
        y0, x0 = crop_origin((512, 512), 64, 0, epoch, 0, mask)
        hits += bool((mask[y0 : y0 + 64, x0 : x0 + 64] == 1).any())
    uniform = sum(bool((mask[y : y + 64, x : x + 64] == 1).any())
                  for y, x in (crop_origin((512, 512), 64, 0, e, 0) for e in range(300)))
    assert hits >= 90 and hits > 3 * uniform  # about a third of the draws, far more than uniform windows find


def test_tiles_overlap_by_half_and_blend_with_gaussian_weights():
    from segcore.prediction.predictor import gaussian_weights, predict_tiled, tile_starts

    assert tile_starts(512, 256) == [0, 128, 256] and tile_starts(200, 256) == [0] and tile_starts(300, 256) == [0, 44]
    w = gaussian_weights(64)[..., 0]
    assert w[32, 32] == pytest.approx(w.max(), rel=0.01) and w[0, 0] < 0.05 and w.min() > 0

    class Echo:  # a model whose probability is the input: blending must give the image back exactly
        def predict_on_batch(self, x):
            return x[..., :1] / 255.0

    image = np.random.default_rng(0).integers(0, 255, (1, 100, 150, 1)).astype(np.float32)
    out = predict_tiled(Echo(), image, 64)
    np.testing.assert_allclose(out[..., 0] * 255.0, image[..., 0], rtol=1e-5, atol=1e-3)
    small = predict_tiled(Echo(), image[:, :40, :50], 64)  # smaller than a window: padded, then cut back
    assert small.shape == (1, 40, 50, 1)


@pytest.mark.backend
def test_native_fit_loads_images_at_their_own_size(workspace):
    from segcore.data.arrays import load_arrays
    from tests._train_helpers import make_shapes_dataset

    make_shapes_dataset(workspace, n=4, size=48)
    images, masks = load_arrays("shapes", None, 32, workspace=workspace, fit="native")
    assert images.shape[1:3] == (48, 48)  # not scaled to 32: windows of 32 are cut from it


def test_budget_parses_times():
    import argparse

    from segcore.training.cli import parse_budget

    assert parse_budget("10m") == 10 and parse_budget("90s") == 1.5 and parse_budget("1.5h") == 90 and parse_budget("7") == 7
    with pytest.raises(argparse.ArgumentTypeError, match="not a time"):
        parse_budget("ten minutes")


@pytest.mark.slow
@pytest.mark.backend
def test_a_time_budget_stops_the_run_and_the_schedule_ends_with_it(workspace):
    from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
    from segcore.runs import open_run
    from segcore.queue.launcher import launch
    from segcore.training.trainer import train_run
    from tests._train_helpers import make_shapes_dataset

    make_shapes_dataset(workspace, n=16, size=32)
    cfg = RunConfig(model=ModelConfig(depth=3, filters=4),
                    train=TrainConfig(dataset="shapes", image_size=32, epochs=500, batch_size=4, lr_schedule="cosine",
                                      budget_minutes=0.5, early_stopping_patience=0, augment=AugmentConfig(enabled=False),
                                      split=SplitConfig(val_fraction=0.25, test_fraction=0.25)))
    run = open_run(launch(cfg, workspace, start_worker=False), workspace)
    result = train_run(run)
    assert result["state"] == "finished" and "time budget of 0.5 min used" in result["message"]
    state = run.read_train_state()
    done = int(state["epoch"])
    # how many epochs fit depends on this machine's speed (a loaded one may fit one); what holds at any speed:
    assert 1 <= done < 500 and state["budget_stopped"] == done and state["planned_epochs"] == done
    assert state["budget_spent_s"] <= 0.5 * 60 + 2 * max(state["epoch_seconds"])  # at most about one epoch over
    lrs = [row["lr"] for row in run.read_history()]
    assert len(lrs) == done and (done == 1 or lrs[-1] < lrs[0])  # the cosine schedule followed the budget down


def test_the_budget_replans_the_epochs_from_the_time_each_takes(monkeypatch):
    """With a clock: a 20 s first epoch (compiling), then 10 s epochs, in a 1-minute budget: 5 epochs, then a stop."""
    from types import SimpleNamespace

    from segcore.config import TrainConfig
    from segcore.training import trainer as trainer_mod

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainer_mod, "time", SimpleNamespace(time=lambda: clock.now))
    t = SimpleNamespace(cfg=SimpleNamespace(train=TrainConfig(budget_minutes=1.0, epochs=500)), state={}, fit_started=0.0,
                        epochs=500)
    model = SimpleNamespace(stop_training=False)
    planned = []
    for completed, at in enumerate((20, 30, 40, 50, 60), start=1):
        clock.now = float(at)
        trainer_mod.Trainer._follow_budget(t, model, completed)
        planned.append(t.epochs)
    assert planned == [3, 5, 5, 5, 5]  # after the first: 40 s left at 20 s an epoch; then 10 s epochs
    assert model.stop_training and t.state["budget_stopped"] == 5 and t.state["budget_spent_s"] == 60.0
    assert t.state["epoch_seconds"] == [20.0, 10.0, 10.0, 10.0, 10.0]


def test_the_progress_line_names_each_epoch_once():
    from segcore.training.cli import progress_line

    line = progress_line("r", {"state": "running", "epoch": 1, "epochs": 8, "batch": 7, "batches": 10, "message": "epoch 2/8"})
    assert line == "r: running epoch 2/8, batch 7/10"  # not "epoch 1/8 batch 7/10 epoch 2/8"
    assert progress_line("r", {"state": "queued", "epoch": 0, "epochs": 8}) == "r: queued, 0/8 epochs done"
    assert "(loading data)" in progress_line("r", {"state": "running", "epoch": 0, "epochs": 8, "message": "loading data"})


@pytest.mark.slow
@pytest.mark.backend
def test_every_epoch_records_where_its_time_goes(workspace):
    from segcore import visualize as viz
    from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig
    from segcore.runs import open_run
    from segcore.queue.launcher import launch
    from segcore.training.trainer import train_run
    from tests._train_helpers import make_shapes_dataset

    make_shapes_dataset(workspace, n=12, size=32)
    cfg = RunConfig(model=ModelConfig(depth=3, filters=4),
                    train=TrainConfig(dataset="shapes", image_size=32, epochs=2, batch_size=4, augment=AugmentConfig(enabled=False),
                                      split=SplitConfig(val_fraction=0.25, test_fraction=0.25)))
    run = open_run(launch(cfg, workspace, start_worker=False), workspace)
    assert train_run(run)["state"] == "finished"
    history = run.read_history()
    for row in history:
        parts = [row[k] for k in ("time_steps", "time_validation", "time_health", "time_checkpoint", "time_other")]
        assert all(p is not None and p >= 0 for p in parts)
        assert row["time_validation"] > 0 and row["time_checkpoint"] > 0  # a validation split and a save every epoch
        assert row["time_steps"] + row["time_validation"] == pytest.approx(row["seconds"], abs=0.01)
    assert viz.epoch_time_figure(history) is not None and viz.epoch_time_figure([{"epoch": 1, "loss": 1.0}]) is None

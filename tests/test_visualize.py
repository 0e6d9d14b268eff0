"""Golden-value tests for segcore.visualize (pure numpy / pandas / plotly helpers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segcore import visualize as viz
from segcore.runs import RunSummary

COLORS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def test_to_rgb_grey_float_and_16bit():
    grey = np.array([[0, 255]], dtype=np.uint8)
    assert viz.to_rgb(grey).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    assert viz.to_rgb(np.array([[0.0, 0.5, 1.0]])).tolist() == [[[0] * 3, [127] * 3, [255] * 3]]
    # 16-bit data is stretched min..max, not cut at 255
    u16 = np.array([[1000, 3000]], dtype=np.uint16)
    assert viz.to_rgb(u16)[0, :, 0].tolist() == [0, 255]
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert viz.to_rgb(rgba).shape == (2, 2, 3)
    with pytest.raises(ValueError, match=r"\(2, 2, 5\)"):
        viz.to_rgb(np.zeros((2, 2, 5), np.uint8))


def test_class_colors_from_objects_dicts_and_names():
    class C:
        def __init__(self, color):
            self.color = color

    assert viz.class_colors([C((1, 2, 3)), C([4, 5, 6])]).tolist() == [[1, 2, 3], [4, 5, 6]]
    assert viz.class_colors([{"color": [7, 8, 9]}]).tolist() == [[7, 8, 9]]
    names = viz.class_colors(["bg", "a", "b"])
    assert names.shape == (3, 3) and len({tuple(c) for c in names.tolist()}) == 3


def test_colorize_index_mask_with_void():
    mask = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    out = viz.colorize_mask(mask, COLORS, ignore_index=255)
    assert out.tolist() == [[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], list(viz.IGNORE_COLOR)]]


def test_colorize_multilabel_planes_average_overlaps():
    planes = np.zeros((1, 3, 3), np.uint8)
    planes[0, 1, 0] = 1  # class 1 only
    planes[0, 2, 0] = 1  # classes 1 and 2 overlap
    planes[0, 2, 1] = 1
    out = viz.colorize_mask(planes, COLORS)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 1].tolist() == [255, 0, 0]
    assert out[0, 2].tolist() == [127, 127, 0]


def test_overlay_blends_foreground_only():
    image = np.full((1, 3), 100, np.uint8)
    mask = np.array([[0, 1, 255]], np.uint8)
    out = viz.overlay(image, mask, COLORS, opacity=0.5)
    assert out[0, 0].tolist() == [100, 100, 100]  # background untouched
    assert out[0, 1].tolist() == [178, 50, 50]  # 0.5 * 100 + 0.5 * (255, 0, 0), rounded
    assert out[0, 2].tolist() == [114, 114, 114]  # void blended with grey 128
    assert viz.overlay(image, mask, COLORS, opacity=0.0)[0, 1].tolist() == [100, 100, 100]
    assert viz.overlay(image, mask, COLORS, opacity=1.0)[0, 1].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match="opacity"):
        viz.overlay(image, mask, COLORS, opacity=1.5)
    with pytest.raises(ValueError, match="3x1 but mask is 2x1"):
        viz.overlay(image, mask[:, :2], COLORS)


def test_overlay_outline_marks_boundaries():
    mask = np.zeros((5, 5), np.uint8)
    mask[1:4, 1:4] = 2
    out = viz.overlay(np.zeros((5, 5), np.uint8), mask, COLORS, opacity=0.2, outline=True)
    assert out[1, 1].tolist() == [0, 255, 0]  # boundary at full colour
    assert out[2, 2].tolist() == [0, 51, 0]  # interior at 20 %


def test_class_probability_for_each_mode():
    p = np.array([[[0.2]]], np.float32)
    assert viz.class_probability(p, "binary", 1)[0, 0] == pytest.approx(0.2)
    assert viz.class_probability(p, "binary", 0)[0, 0] == pytest.approx(0.8)
    soft = np.array([[[0.1, 0.6, 0.3]]], np.float32)
    assert viz.class_probability(soft, "multiclass", 2)[0, 0] == pytest.approx(0.3)
    ml = np.array([[[0.5, 0.2]]], np.float32)
    assert viz.class_probability(ml, "multilabel", 2)[0, 0] == pytest.approx(0.2)
    assert viz.class_probability(ml, "multilabel", 0)[0, 0] == pytest.approx(0.4)  # (1-0.5)(1-0.2)
    with pytest.raises(ValueError, match="3 classes; got class 3"):
        viz.class_probability(soft, "multiclass", 3)


def test_heatmap_fixed_scale_and_colorbar():
    prob = np.array([[0.0, 1.0, np.nan, 2.0]], np.float32)
    hm = viz.heatmap(prob)
    # viridis: 0 is dark purple, 1 is bright yellow; NaN -> 0, values above 1 clipped
    assert hm[0, 0].tolist() == hm[0, 2].tolist()
    assert hm[0, 1].tolist() == hm[0, 3].tolist()
    assert hm[0, 0, 2] > hm[0, 0, 1] and hm[0, 0].sum() < 250  # purple, dark
    assert hm[0, 1, 0] > 200 and hm[0, 1, 1] > 200 and hm[0, 1, 2] < 80  # yellow
    both = viz.heatmap_with_colorbar(np.zeros((64, 64), np.float32))
    assert both.shape == (64, 64 + 56, 3)
    bar = viz.colorbar(100)
    top, bottom = bar[6, 4], bar[93, 4]
    assert top.tolist() == viz.heatmap(np.ones((1, 1)))[0, 0].tolist()  # 1 at the top
    assert bottom.tolist() == viz.heatmap(np.zeros((1, 1)))[0, 0].tolist()


def test_heatmap_figure_has_colorbar_fixed_to_unit_range():
    fig = viz.heatmap_figure(np.random.default_rng(0).random((8, 8)), "cat")
    trace = fig.data[0]
    assert (trace.zmin, trace.zmax) == (0.0, 1.0)
    assert trace.colorbar.title.text == "p"


def test_class_frequency_and_imbalance():
    df = viz.class_frequency_frame(["bg", "a", "b"], [0.9, 0.099, 0.001], COLORS[:3])
    assert df["percent"].round(3).tolist() == [90.0, 9.9, 0.1]
    assert df["color"].tolist() == ["#000000", "#ff0000", "#00ff00"]
    warning = viz.imbalance_warning(["bg", "a", "b"], [0.9, 0.099, 0.001])
    assert "b (0.10%)" in warning and "900x" in warning
    assert viz.imbalance_warning(["bg", "a", "b"], [0.5, 0.25, 0.25]) is None
    assert "no pixels at all for b" in viz.imbalance_warning(["bg", "a", "b"], [0.5, 0.5, 0.0])
    fig = viz.class_frequency_figure(df)
    assert list(fig.data[0].x) == ["bg", "a", "b"]
    with pytest.raises(ValueError, match="3 classes but 2"):
        viz.class_frequency_frame(["bg", "a", "b"], [0.5, 0.5])


def test_mask_areas_index_and_planes():
    mask = np.array([[0, 1], [1, 2]], np.uint8)
    df = viz.mask_areas(mask, ["bg", "a", "b"])
    assert df["pixels"].tolist() == [1, 2, 1]
    assert df["percent"].tolist() == [25.0, 50.0, 25.0]
    planes = np.zeros((2, 2, 2), np.uint8)
    planes[0, 0] = 1
    planes[1, 1, 1] = 1
    assert viz.mask_areas(planes, ["bg", "a", "b"])["pixels"].tolist() == [2, 1, 2]


# Shaped like segcore.evaluation.EvaluationReport.to_dict(): per_image dice is per class, n/a is None.
REPORT_A = {
    "per_class": [{"class_id": 0, "name": "bg", "dice": 0.9, "iou": 0.8}, {"class_id": 1, "name": "cat", "dice": 0.5, "iou": 0.4}],
    "macro": {"dice": 0.7, "iou": 0.6, "precision": 0.7, "recall": 0.7},
    "micro": {"dice": 0.85, "iou": 0.75},
    "pixel_accuracy": 0.93,
    "per_image": [
        {"index": 0, "id": "1", "dice": [0.9, 0.1], "macro_dice": 0.2},
        {"index": 1, "id": "2", "dice": [0.9, 0.8], "macro_dice": 0.9},
        {"index": 2, "id": "3", "dice": [0.9, None], "macro_dice": None},
    ],
}
REPORT_B = {
    "per_class": {"bg": {"dice": 0.95, "iou": 0.9}, "cat": {"dice": 0.3, "iou": 0.2}},
    "macro": {"dice": 0.625, "iou": 0.55},
    "micro": {"dice": 0.88, "iou": 0.8},
    "per_image": [{"id": "1", "macro_dice": 0.6, "dice": [1, 0.2]}, {"id": "2", "macro_dice": 0.8, "dice": [1, 0.3]}, {"id": "3", "macro_dice": 0.5, "dice": [1, 0.4]}],
}


def test_per_class_and_compare_tables():
    t = viz.per_class_table(REPORT_A)
    assert list(t.index) == ["bg", "cat", "macro", "micro"]
    assert list(t.columns) == ["dice", "iou", "precision", "recall"]  # pixel_accuracy absent: dropped
    assert np.isnan(t.loc["bg", "precision"]) and t.loc["macro", "precision"] == 0.7
    c = viz.compare_table({"A": REPORT_A, "B": REPORT_B}, "dice")
    assert c.loc["cat"].tolist() == [0.5, 0.3]
    assert c.loc["micro"].tolist() == [0.85, 0.88]
    best = viz.best_mask(c)
    assert best.loc["bg"].tolist() == [False, True]
    assert best.loc["macro"].tolist() == [True, False]
    tie = viz.best_mask(pd.DataFrame({"a": [0.5, 0.2], "b": [0.5, 0.3]}))
    assert tie.values.tolist() == [[False, False], [False, True]]  # equal scores: no best to highlight
    assert viz.best_mask(pd.DataFrame({"a": [0.5]})).values.tolist() == [[True]]
    low = viz.best_mask(pd.DataFrame({"loss": [0.3, 0.1]}), axis=0, higher_is_better={"loss": False})
    assert low["loss"].tolist() == [False, True]
    html = viz.highlight_best(c).to_html()
    assert html.count("font-weight: bold") >= 1 and "0.880" in html


def test_worst_images_and_differences():
    assert viz.worst_images(REPORT_A["per_image"], n=2) == ["1", "2"]  # n/a (None) skipped
    assert viz.worst_images(REPORT_B["per_image"], n=1, metric="dice", class_index=1) == ["1"]
    diff = viz.per_image_differences({"A": REPORT_A, "B": REPORT_B})
    assert diff.index.tolist()[0] == "1"  # spread 0.4, the largest
    assert diff.loc["1", "spread"] == pytest.approx(0.4)
    per_class = viz.per_image_differences({"A": REPORT_A, "B": REPORT_B}, "dice", class_index=1)
    assert per_class.loc["2", "spread"] == pytest.approx(0.5)


def test_study_table():
    df = viz.study_table({"A": REPORT_A, "B": REPORT_B}, {"A": {"model": "unet"}, "B": {"model": "vgg16"}})
    assert list(df.columns[:4]) == ["model", "Dice", "IoU", "Accuracy"]
    assert df.loc["A", "Dice"] == 0.7 and df.loc["A", "Accuracy"] == 0.93
    assert df.loc["B", "Accuracy"] is None or np.isnan(df.loc["B", "Accuracy"])
    md = viz.table_markdown(df)
    assert md.splitlines()[0] == "| run | model | Dice | IoU | Accuracy | Precision | Recall | micro Dice |"
    assert "| A | unet | 0.700 | 0.600 | 0.930 |" in md


def test_history_curves_and_metric_names():
    hist = [{"epoch": 1, "loss": 1.0, "val_loss": 1.2, "val_dice": 0.3, "lr": 1e-3}, {"epoch": 2, "loss": 0.5, "val_loss": 0.7, "val_dice": 0.6, "lr": 1e-3}]
    assert viz.curve_metrics({"r": hist}) == ["loss", "dice"]
    fig = viz.curves_figure({"r1": hist, "r2": hist}, "loss")
    assert [t.name for t in fig.data] == ["r1 · train", "r1 · validation", "r2 · train", "r2 · validation"]
    assert fig.data[1].line.dash == "dash" and list(fig.data[1].y) == [1.2, 0.7]
    assert fig.layout.xaxis.dtick == 1  # whole epochs only
    long = [{"epoch": e, "loss": 1.0 / e} for e in range(1, 41)]
    assert viz.curves_figure({"r": long}).layout.xaxis.dtick == 4
    assert viz.history_frame([{"loss": 1}])["epoch"].tolist() == [1]


def test_runs_frame_from_summaries():
    rows = [
        RunSummary(run_id="r1", state="finished", dataset="demo", model="unet-d3f16", encoder="none",
                   epoch=5, epochs=8, best_val_dice=0.81, test={"macro_dice": 0.79}, warnings=["NaN loss"],
                   tags=["a", "b"], started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:01:15Z"),
        RunSummary(run_id="r2", state="running", started_at="2026-01-01T00:00:00Z"),
    ]
    df = viz.runs_frame(rows, now=pd.Timestamp("2026-01-01T02:00:00Z").timestamp())
    assert df.loc[0, "status"] == "finished" and df.loc[0, "epochs"] == "5/8"
    assert df.loc[0, "duration"] == "1m 15s" and df.loc[1, "duration"] == "2h 00m"
    assert df.loc[0, "best val Dice"] == 0.81 and df.loc[0, "test Dice"] == 0.79
    assert df.loc[0, "warnings"] == "NaN loss" and df.loc[0, "tags"] == "a, b"


def test_runs_frame_test_dice_is_the_macro_dice_not_a_guessed_key():
    """The test block holds any metric names; the table's test Dice is its macro Dice, as the Runs page's is."""
    row = RunSummary(run_id="r1", state="finished", epochs=3, test={"dice": 0.1, "macro_dice": 0.7, "micro_dice": 0.9})
    assert viz.runs_frame([row]).loc[0, "test Dice"] == 0.7


def test_format_duration_and_markdown():
    assert [viz.format_duration(s) for s in (None, 5, 75, 3725)] == ["", "5s", "1m 15s", "1h 02m"]
    md = viz.table_markdown(pd.DataFrame({"model": ["u|net"], "dice": [0.12345]}))
    assert md == "| model | dice |\n|---|---|\n| u\\|net | 0.123 |\n"


def test_stack_tiles_and_colorbar_legend():
    a = np.zeros((8, 8), np.uint8)
    b = np.full((16, 16, 3), 200, np.uint8)
    out = viz.stack_tiles([a, b], 32, gap=4)
    assert out.shape == (32 + 4 + 32, 32, 3)
    assert out[0, 0].tolist() == [0, 0, 0] and out[40, 0].tolist() == [200, 200, 200]
    legend = viz.colorbar_horizontal(200)
    assert legend.shape == (34, 200, 3)
    assert legend[5, 10].tolist() == viz.heatmap(np.zeros((1, 1)))[0, 0].tolist()  # 0 on the left


def test_decode_and_encode_mask_round_trip():
    import io
    import zipfile

    import cv2

    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255  # red
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert viz.decode_image(png.tobytes())[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match="notes.txt is not an image"):
        viz.decode_image(b"hello", "notes.txt")
    mask = np.array([[0, 1], [2, 3]], np.uint8)
    data, name, mime = viz.encode_mask(mask, "multiclass", "cell")
    assert (name, mime) == ("cell_mask.png", "image/png")
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).tolist() == mask.tolist()
    planes = np.zeros((2, 2, 2), np.uint8)
    planes[0, 0, 1] = 1
    data, name, mime = viz.encode_mask(planes, "multilabel", "cell")
    assert name == "cell_masks.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["cell_1.png", "cell_2.png"]
        second = cv2.imdecode(np.frombuffer(zf.read("cell_2.png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert second.tolist() == [[1, 0], [0, 0]]


def test_size_summary():
    same = {"min_width": 128, "max_width": 128, "min_height": 128, "max_height": 128, "distinct_sizes": 1}
    assert viz.size_summary(same) == "128x128 px"
    mixed = {"min_width": 256, "max_width": 640, "min_height": 256, "max_height": 256, "distinct_sizes": 3}
    assert viz.size_summary(mixed) == "256-640 x 256 px (3 sizes)"
    assert viz.size_summary({}) == ""


def test_class_frequency_axis_keeps_shares_in_proportion():
    """ISBI's background is 22% of the pixels: its bar must be about a quarter of the membrane's, not a sliver."""
    df = viz.class_frequency_frame(["background", "foreground"], [0.22, 0.78])
    fig = viz.class_frequency_figure(df)
    axis = fig.layout.yaxis
    assert axis.type == "linear" and axis.range[0] == 0
    assert list(fig.data[0].text) == ["22.0%", "78.0%"]
    tiny = viz.class_frequency_figure(viz.class_frequency_frame(["bg", "a", "b"], [0.99, 0.00996, 0.00004]))
    assert list(tiny.data[0].text) == ["99.0%", "1.00%", "0.004%"]  # a tiny class still says how tiny


def test_run_labels_name_else_short_id_and_never_merge():
    rows = [
        RunSummary(run_id="20261122-203045-unet-d3f8-camvid-1a2b", state="finished", name="camvid-tiny"),
        RunSummary(run_id="20261122-203046-unet-d3f8-camvid-3c4d", state="finished", name=""),
        RunSummary(run_id="20261122-203047-vgg16-demo-5e6f", state="finished", name="base"),
        RunSummary(run_id="20261122-203048-vgg16-demo-7a8b", state="finished", name="base"),
    ]
    assert viz.run_label(rows[0]) == "camvid-tiny"
    assert viz.run_label(rows[1]) == "unet-d3f8-camvid-3c4d"
    assert viz.run_labels(rows) == {
        rows[0].run_id: "camvid-tiny", rows[1].run_id: "unet-d3f8-camvid-3c4d",
        rows[2].run_id: "base · 5e6f", rows[3].run_id: "base · 7a8b",
    }
    df = viz.runs_frame(rows)
    assert df["run"].tolist() == ["camvid-tiny", "unet-d3f8-camvid-3c4d", "base · 5e6f", "base · 7a8b"]
    assert df["id"].tolist() == [r.run_id for r in rows]


def test_subset_split_note_warns_without_a_test_folder():
    from segcore.data.dataset import SampleInfo

    camvid_like = [SampleInfo(f"t{i}", 8, 8, subset="train") for i in range(8)] + [SampleInfo(f"v{i}", 8, 8, subset="val") for i in range(2)]
    note = viz.subset_split_note(camvid_like)
    assert "no test folder" in note and "train (8), val (2)" in note and "random" in note
    assert "no val folder" in viz.subset_split_note([SampleInfo("a", 8, 8, subset="train")])
    full = camvid_like + [SampleInfo("x", 8, 8, subset="test")]
    assert viz.subset_split_note(full) is None


def test_quick_start_note_states_measured_figures_only():
    assert viz.quick_start_duration_note({"seconds": None}) == "Its duration has not been measured on this machine yet."
    note = viz.quick_start_duration_note({"seconds": 131.0, "test_dice": 0.962, "cpus": 2})
    assert "2m 11s" in note and "2 CPU cores" in note and "test Dice 0.96" in note
    past = [RunSummary(run_id="r", state="finished", created_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:03:05Z",
                       test={"macro_dice": 0.951})]
    assert "Here it last took 3m 05s (test Dice 0.95)." in viz.quick_start_duration_note({"seconds": None}, past)


def test_filter_runs_by_state_dataset_and_text():
    rows = [
        RunSummary(run_id="20260101-000001-vgg16-demo-1a2b", state="finished", name="base", dataset="demo", model="vgg16",
                   encoder="vgg16", tags=["Baseline"]),
        RunSummary(run_id="20260101-000002-unet-d3f8-cells-3c4d", state="running", dataset="cells", model="unet-d3f8",
                   notes="try a lower learning rate"),
        RunSummary(run_id="20260101-000003-unet-d3f8-demo-5e6f", state="failed", name="base", dataset="demo",
                   model="unet-d3f8", warnings=["NaN loss at epoch 2"]),
    ]
    ids = lambda shown: [s.run_id[-4:] for s in shown]  # noqa: E731
    assert ids(viz.filter_runs(rows)) == ["1a2b", "3c4d", "5e6f"]
    assert ids(viz.filter_runs(rows, states=["finished", "failed"])) == ["1a2b", "5e6f"]
    assert ids(viz.filter_runs(rows, datasets=["demo"], states=["failed"])) == ["5e6f"]
    assert ids(viz.filter_runs(rows, query="  baseline ")) == ["1a2b"]  # tags, any case, spaces ignored
    assert ids(viz.filter_runs(rows, query="LEARNING rate")) == ["3c4d"]  # notes
    assert ids(viz.filter_runs(rows, query="nan loss")) == ["5e6f"]  # warnings
    assert ids(viz.filter_runs(rows, query="unet-d3f8")) == ["3c4d", "5e6f"]  # model
    assert ids(viz.filter_runs(rows, query="base · 5e6f")) == ["5e6f"]  # the label people see, made unique over all runs
    assert ids(viz.filter_runs(rows, query="20260101-000002")) == ["3c4d"]  # the run id
    assert viz.filter_runs(rows, datasets=["roads"]) == []


def test_compare_page_choices_runs_and_images():
    from segcore.runs import RunSummary

    s = [RunSummary(run_id="a", state="finished", dataset="d1"), RunSummary(run_id="b", state="running", dataset="d1"),
         RunSummary(run_id="c", state="finished", dataset="d2"), RunSummary(run_id="e", state="finished", dataset="d1"),
         RunSummary(run_id="f", state="finished", dataset="d3"), RunSummary(run_id="g", state="finished", dataset="d2")]
    groups = viz.comparable_runs(s)
    assert list(groups) == ["d1", "d2"] and [r.run_id for r in groups["d1"]] == ["a", "e"]

    from types import SimpleNamespace

    def rec(h):
        return SimpleNamespace(dataset=SimpleNamespace(content_hash=h))

    assert viz.trained_on_older_data([rec("h1"), rec("h2")], "h2")
    assert not viz.trained_on_older_data([rec("h2"), None, rec(None)], "h2")
    assert not viz.trained_on_older_data([rec("h1")], None)

    ids = ["1", "2", "3", "4"]
    assert viz.shared_images(ids, [{"ids": ["4", "2", "3"]}, {"ids": [2, "4"]}]) == ["2", "4"]
    assert viz.image_choices(ids, [{"ids": ["3", "1"]}, {"ids": ["2"]}]) == (["1", "3"], False)
    assert viz.image_choices(ids, [{"ids": ["3"]}, {"ids": ["3"]}]) == (["3"], True)
    assert viz.image_choices(ids, [{}, {}]) == (ids, False)

    reports = {"a": {"per_image": [{"id": "1", "macro_dice": 0.9}, {"id": "2", "macro_dice": 0.1},
                                   {"id": "gone", "macro_dice": 0.0}]},
               "e": {"per_image": [{"id": "2", "macro_dice": 0.2}, {"id": "3", "macro_dice": 0.3}]}, "x": None}
    worst = viz.worst_images_per_run(reports, {"a": "A", "e": "E"}, ids, n=2)
    assert worst == {"2": ["A", "E"], "3": ["E"]}  # "gone" is among A's worst but no longer in the dataset
    assert list(viz.worst_images_per_run(reports, {}, ids, n=2, limit=1)) == ["2"]

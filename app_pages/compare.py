"""Compare: 2 to 6 finished runs on the same dataset and images: input, truth, per-run probability
heatmap for a chosen class and thresholded overlay; metric tables side by side; per-image differences."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_pages import _ui
from segcore import runs as runs_mod
from segcore import visualize as viz
from segcore.data.dataset import list_datasets
from segcore.evaluation import review
from segcore.evaluation import run as run_eval
from segcore.labels import Labels
from segcore.prediction import probs_to_mask, run_probabilities
from segcore.safetext import csv_bytes, markdown_text, quoted

TILE = 160  # pixels per image tile in the grid
MAX_RUNS = 6

ws = _ui.workspace()
st.title("Compare")
summaries = [s for s in runs_mod.list_runs(ws) if s.state == "finished"]
if len(summaries) < 2:
    st.info(
        f"Compare needs at least two finished runs on the same dataset; this workspace has {len(summaries)}. "
        "Queue a second model on the **Train** page (the encoder study queues six at once)."
    )
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()


@st.cache_data(max_entries=64, show_spinner=False)
def run_report(path: str, mtime: float) -> dict | None:
    return _ui.readable(runs_mod.RunFolder(path).read_evaluation)


@st.cache_data(max_entries=64, show_spinner=False)
def cache_index(path: str, mtime: float) -> dict:
    return _ui.readable(runs_mod.RunFolder(path).read_prediction_index) or {}


@st.cache_data(max_entries=384, show_spinner=False)
def cached_probs(path: str, sample_id: str, mtime: float) -> np.ndarray | None:
    return runs_mod.RunFolder(path).read_cached_probs(sample_id)


eligible = viz.comparable_runs(summaries)
if not eligible:
    st.info("No dataset has two finished runs yet; runs can only be compared on the same dataset.")
    st.stop()

labels = _ui.run_labels(summaries)
by_id = {s.run_id: s for s in summaries}
# A shared link names a run (?run=...): open its dataset with it chosen.
linked = [r for r in st.query_params.get_all("run") if r in by_id]
if linked and by_id[linked[0]].dataset in eligible:
    st.query_params["dataset"] = by_id[linked[0]].dataset
elif linked:
    st.warning(f"Run {quoted(labels[linked[0]])} has no other finished run on its dataset {quoted(by_id[linked[0]].dataset)} to compare with; "
               "train another model on it first.")
c = st.columns([1, 3])
_ui.from_url("cmp_dataset", "dataset", sorted(eligible))
dataset_name = c[0].selectbox("Dataset", sorted(eligible), key="cmp_dataset", **_ui.url_sync("dataset", "cmp_dataset"))
_ui.to_url("dataset", "cmp_dataset")
candidates = {s.run_id: s for s in eligible[dataset_name]}
mine = [r for r in linked if r in candidates]
default = list(dict.fromkeys(mine + list(candidates)))[: max(min(4, len(candidates)), len(mine))]
# A link that arrives (the URL names runs the selection does not hold yet) is filled out; a selection
# the user made here, such as one run after "Clear all", is theirs and stays as it is.
arriving = bool(mine) and st.session_state.get("cmp_runs") != mine
_ui.many_from_url("cmp_runs", "run", list(candidates), default)
if arriving and len(st.session_state["cmp_runs"]) < 2:  # one linked run: compare it with the newest others
    st.session_state["cmp_runs"] = default
chosen = c[1].multiselect(
    f"Runs (2 to {MAX_RUNS})", list(candidates), max_selections=MAX_RUNS, key="cmp_runs",
    format_func=lambda r: labels[r], **_ui.url_sync("run", "cmp_runs"),
)
_ui.to_url("run", "cmp_runs")
if len(chosen) < 2:
    st.info("Pick at least two runs.")
    st.stop()
runs = {r: runs_mod.RunFolder(candidates[r].path) for r in chosen}
for r in chosen:
    _ui.damage_notes(candidates[r], labels[r])
reports = {r: run_report(str(f.path), _ui.mtime(f.evaluation_path)) for r, f in runs.items()}
indexes = {r: cache_index(str(f.path), _ui.mtime(f.predictions_dir / "index.json")) for r, f in runs.items()}

try:
    ds = _ui.open_dataset(str(ws.root), dataset_name, str(_ui.mtime(ws.dataset_dir(dataset_name) / "dataset.json")))
except (FileNotFoundError, ValueError) as exc:
    st.error(f"The runs were trained on dataset {quoted(dataset_name)}, which cannot be opened: {markdown_text(exc)}")
    st.stop()
info = ds.info
label_meaning = Labels.of_dataset(info)
if viz.trained_on_older_data([_ui.readable(runs[r].read_record, None) for r in chosen], info.content_hash):
    st.warning(f"Dataset {quoted(dataset_name)} has changed since some of these runs were trained; their scores refer to the older version.")

# --------------------------------------------------------------------------- images

c = st.columns([2, 1, 1])
pick_mode = c[0].segmented_control("Images", ["Test images", "Worst for each model"], default="Test images", key="cmp_pick_mode")
class_names = info.class_names
class_index = c[1].selectbox("Heatmap class", list(range(len(class_names))), index=1 if len(class_names) > 1 else 0,
                             format_func=lambda k: class_names[k], key="cmp_class")
threshold = c[2].slider("Threshold", 0.05, 0.95, 0.5, 0.05, key="cmp_threshold", help="Probability above which a pixel counts as the class (binary and multilabel datasets); multiclass models take the most likely class.",
                        disabled=info.mode == "multiclass")
if pick_mode == "Worst for each model":
    per_run = st.columns([1, 3])[0].number_input("Images per model", 1, 4, 2, key="cmp_worst_n")
    worst_for = viz.worst_images_per_run(reports, labels, ds.ids, int(per_run))  # image -> the models it is worst for
    ids = list(worst_for)
    if not ids:
        st.info("These runs have no per-image scores; pick test images instead.")
else:
    options, all_saved = viz.image_choices(ds.ids, [indexes[r] for r in chosen])
    if not all_saved:
        st.caption("These runs were tested on different images; images without a cached prediction are predicted with the run's model.")
    ids = st.multiselect("Pick images", options, default=options[: min(4, len(options))], max_selections=8, key="cmp_ids")

c = st.columns([1, 2], vertical_alignment="center")
c[0].image(viz.colorbar_horizontal(320, label=f"p({class_names[class_index]})"), width=320)
c[1].caption(
    f"Heatmaps: the model's probability that a pixel is **{markdown_text(class_names[class_index])}** (dark = 0, yellow = 1). "
    "Below each heatmap, the predicted mask over the image, in the class colours of the legend under the grid."
)


def prediction(r: str, sid: str) -> np.ndarray:
    """Probabilities for one image: from the run's test cache, else from its model (both through the page's caches)."""
    f = runs[r]
    return run_probabilities(
        f, ds, [sid],
        read_cached=lambda i: cached_probs(str(f.path), i, _ui.mtime(f.predictions_dir / f"{i}.npz")),
        load_predictor=lambda: _ui.predictor(str(f.path), _ui.mtime(f.model_path)),
    )[sid]


def prediction_tiles(r: str, sid: str, image: np.ndarray, colors: np.ndarray) -> np.ndarray:
    probs = prediction(r, sid)
    # Cached probabilities are at the training size (square); the image goes to the same shape.
    shown = viz.resize_to(image, probs.shape[:2])
    mask = probs_to_mask(probs, info.mode, threshold)
    hm = viz.heatmap(viz.class_probability(probs, info.mode, class_index))
    return viz.stack_tiles([hm, viz.overlay(shown, mask, colors, 0.5, None, unpainted=label_meaning.unpainted)], TILE)


colors = viz.class_colors(info.classes)
# On a narrow screen Streamlit stacks columns into one; the grid keeps its rows and shrinks its tiles instead.
st.html("<style>.st-key-cmp_grid [data-testid='stHorizontalBlock']{flex-wrap:nowrap!important;gap:0.5rem}"
        ".st-key-cmp_grid [data-testid='stColumn']{min-width:0!important;flex:1 1 0!important;width:auto!important}</style>")
grid = st.container(key="cmp_grid")
if ids:
    header = grid.columns(1 + len(chosen))
    header[0].markdown("**input / truth**")
    for col, r in zip(header[1:], chosen):
        col.markdown(f"**{markdown_text(labels[r])}**  \nheatmap / prediction")
    for sid in ids:
        row = grid.columns(1 + len(chosen))
        image = viz.to_rgb(ds.image(sid))
        image_s = viz.resize_for_display(image, 2 * TILE)
        truth = viz.resize_for_display(ds.mask(sid), 2 * TILE, nearest=True)
        worst = worst_for.get(sid) if pick_mode == "Worst for each model" else None
        row[0].image(viz.stack_tiles([image_s, viz.overlay(image_s, truth, colors, 0.5, info.ignore_index,
                                                                  unpainted=label_meaning.unpainted)], TILE),
                     caption=markdown_text(f"{sid} · worst for {', '.join(worst)}" if worst else sid))
        for col, r in zip(row[1:], chosen):
            try:
                tile = prediction_tiles(r, sid, image, colors)
            except (FileNotFoundError, ValueError) as exc:
                col.error(f"No prediction: {markdown_text(exc)}")
                continue
            row_of = next((p for p in (reports[r] or {}).get("per_image", ()) if str(p.get("id")) == sid), {})
            name, score = ("Dice, all classes", row_of["all_dice"]) if "all_dice" in row_of else ("Dice", row_of.get("macro_dice"))
            col.image(tile, caption=f"{name} {score:.3f}" if isinstance(score, (int, float)) else "not in its test split")
    st.markdown(_ui.class_legend(info), unsafe_allow_html=True)

# --------------------------------------------------------------------------- tables

st.subheader("Metrics on the test split")
have = {labels[r]: reports[r] for r in chosen if reports[r]}
if not have:
    st.info("None of these runs has an evaluation yet.")
else:
    metric = st.segmented_control("Metric", ["dice", "iou", "precision", "recall"], default="dice", key="cmp_metric",
                                  format_func=_ui.metric_label, help=_ui.METRICS_HELP)
    from segcore.queue.repeats import run_spreads

    spreads = run_spreads(ws, {r: _ui.readable(runs[r].read_record, None) for r in chosen})
    spread_of = {labels[r]: s["std"] for r, s in spreads.items()}
    ranking = viz.rank_runs(have, spread_of)
    by_label = {labels[r]: spreads.get(r) for r in chosen}
    st.markdown("**Ranked by Dice, all classes**: " + " · ".join(
        f"{i}. {markdown_text(r['label'])} {'n/a' if r['value'] is None else format(r['value'], '.3f')}"
        + (f" (its {by_label[r['label']]['kind']}: {by_label[r['label']]['mean']:.3f} ± {by_label[r['label']]['std']:.3f}, "
           f"{by_label[r['label']]['n']} runs)" if by_label.get(r["label"]) else "")
        + (" ≈ the first, within the seed-to-seed spread" if r["within_spread"] else "")
        + (" ⚠ degenerate output" if r["degenerate"] else "") for i, r in enumerate(ranking, 1)),
        help=label_meaning.headline_caption() + ". Where a run belongs to a group of seeds or folds (train --seeds / "
             "--folds), its group's mean ± standard deviation is shown, and a gap smaller than that spread is not a win.")
    table = viz.compare_table(have, metric or "dice")
    st.dataframe(viz.highlight_best(table, axis=1, subset=viz.ranked_rows(table)), key="cmp_table")
    st.download_button("Download this table (CSV)", csv_bytes(table, index_label="class"), f"compare-{dataset_name}-{metric or 'dice'}.csv",
                       "text/csv", key="cmp_csv", icon=":material/download:", on_click="ignore")
    accuracy = ", ".join(f"{markdown_text(label)} {rep['pixel_accuracy']:.3f}" for label, rep in have.items() if isinstance(rep.get("pixel_accuracy"), (int, float)))
    st.caption("The best run of each class and of 'all classes' is highlighted. "
               f"{label_meaning.headline_caption()}. {markdown_text(label_meaning.macro_caption())}; {label_meaning.micro_caption()}. "
               "n/a: the class is in neither the true nor the predicted masks. Scored at each image's own resolution."
               + (f" Pixel accuracy over all pixels: {accuracy}." if accuracy else ""))
    boundary = {label: {"HD95 px": (rep.get("all") or {}).get("hd95"), "NSD": (rep.get("all") or {}).get("nsd"),
                        "ECE": (rep.get("calibration") or {}).get("ece")} for label, rep in have.items()}
    if any(v is not None for row in boundary.values() for v in row.values()):
        import pandas as pd

        frame = pd.DataFrame.from_dict(boundary, orient="index")
        tolerance = next((rep.get("surface_tolerance") for rep in have.values() if rep.get("surface_tolerance")), None)
        c = st.columns([1, 1])
        c[0].markdown("**Boundaries and calibration** (means over every class)")
        c[0].dataframe(viz.highlight_best(frame, axis=0, higher_is_better=viz.STUDY_HIGHER_IS_BETTER), key="cmp_boundary")
        c[0].caption("HD95: the 95th percentile of the distance between the predicted and the true boundaries, in pixels "
                     "(lower is better). NSD: the share of both boundaries within "
                     + (f"{tolerance:g} px" if tolerance else "the tolerance") + " of the other (higher is better). "
                     "ECE: expected calibration error, how far the probabilities are from the share of pixels "
                     "they get right (lower is better).")
        c[1].plotly_chart(viz.reliability_figure({label: rep.get("calibration") for label, rep in have.items()}),
                          key="cmp_reliability")
    st.markdown("**Per image**: Dice over every class; the images where the runs disagree most come first.")
    # Only images every run was tested on can be compared; runs with different split seeds share fewer.
    diff = viz.per_image_differences(have, "all_dice" if all(
        any("all_dice" in p for p in rep.get("per_image") or ()) for rep in have.values()) else "macro_dice")
    common = diff.dropna(subset=[c for c in diff.columns if c != "spread"]) if not diff.empty else diff
    if diff.empty:
        st.info("These evaluations have no per-image scores.")
    elif common.empty:
        st.info("These runs were tested on different images (their splits differ: another seed or split setting), "
                "so no image has a score from every run. Train them with the same seed to compare image by image.")
    else:
        st.dataframe(viz.highlight_best(common.drop(columns="spread"), axis=1), key="cmp_diff")
        st.download_button("Download per-image scores (CSV)", csv_bytes(common, index_label="image"), f"compare-{dataset_name}-per-image.csv",
                           "text/csv", key="cmp_diff_csv", icon=":material/download:", on_click="ignore")
        if len(common) < len(diff):
            st.caption(f"{len(common)} image(s) were in the test split of every selected run; "
                       f"{len(diff) - len(common)} tested by only some runs are left out.")
    for label, rep in have.items():
        for w in rep.get("warnings") or []:
            st.caption(f"⚠ {markdown_text(label)}: {markdown_text(w)}")

# --------------------------------------------------------------------------- errors and disagreement

st.subheader("Where the models go wrong")
VOID = info.ignore_index if info.ignore_index is not None else 255
dataset_key = f"{dataset_name}:{info.content_hash}"
saved_ids = {r: [i for i in (indexes[r].get("ids") or []) if i in set(ds.ids)] for r in chosen}


def saved_probs(r: str, sid: str) -> np.ndarray | None:
    """A run's saved test probabilities of one image, read straight from its folder (a whole test set would not
    fit the page's image cache); None when it has none or its file is damaged (named at the top of the page)."""
    try:
        return runs[r].read_cached_probs(sid)
    except ValueError:
        return None


@st.cache_data(max_entries=32, show_spinner=False)
def run_curves(r: str, path: str, index_mtime: float, key: str, ids: tuple[str, ...]) -> review.ScoreHistograms:
    return review.accumulate_curves(ids, lambda i: saved_probs(r, i), ds.mask, info.mode, info.num_classes, ignore_index=VOID)


@st.cache_data(max_entries=32, show_spinner=False)
def disagreement_ranking(runs_key: tuple, key: str, ids: tuple[str, ...], threshold: float):
    def masks(sid: str):
        shape = ds.mask(sid).shape[:2]
        probs = [saved_probs(r, sid) for r in chosen]
        if any(p is None for p in probs):
            return None
        return [review.prediction_mask(p, shape, info.mode, threshold) for p in probs]

    return review.rank_disagreement(ids, masks, ds.mask, mode=info.mode, ignore_index=VOID)


have_saved = [r for r in chosen if saved_ids[r]]
if not have_saved:
    st.info("None of these runs has saved test predictions yet; they are written when a run is evaluated "
            "(at the end of training, or `segcore eval RUN --write`).")
else:
    with st.spinner("Reading the saved test predictions…"):
        curves = {r: run_curves(r, str(runs[r].path), _ui.mtime(runs[r].predictions_dir / "index.json"), dataset_key,
                                tuple(saved_ids[r])) for r in have_saved}
    confusion = {r: (reports[r] or {}).get("confusion_matrix") or (None if curves[r].confusion is None else curves[r].confusion.tolist())
                 for r in have_saved}
    tab_cm, tab_pr, tab_dis = st.tabs(["Confusion matrix", "Precision-recall", "Where the models disagree"])
    with tab_cm:
        if info.mode == "multilabel":
            st.info("A multilabel pixel can carry several classes at once, so there is no single true and predicted class "
                    "to cross; each class's hits and misses are its precision and recall in the metric table.")
        else:
            cols = st.columns(2)
            for n, r in enumerate(have_saved):
                cols[n % 2].plotly_chart(viz.confusion_figure(confusion[r], class_names, labels[r]), key=f"cmp_cm_{r}")
            st.caption("Each row is a true class: the share of its pixels predicted as each class (the diagonal is its recall; "
                       "hover for the pixel counts). Pixels of the test images at their own resolution, as the metric table "
                       "counts them; void pixels are left out. n/a: the class has no true pixels in these images.")
    with tab_pr:
        classes = curves[have_saved[0]].classes
        default = classes.index(class_index) if class_index in classes else 0
        k = st.selectbox("Class", classes, index=default, format_func=lambda c: class_names[c], key="cmp_pr_class")
        per_run = {labels[r]: curves[r].curve(k, confusion[r] if info.mode != "multilabel" else None) for r in have_saved}
        c = st.columns(2)
        c[0].plotly_chart(viz.pr_figure(per_run, class_names[k]), key="cmp_pr")
        c[1].plotly_chart(viz.threshold_figure(per_run, class_names[k], None if info.mode == "multiclass" else 0.5), key="cmp_thr")
        point = ("the arg max the masks use (a softmax model picks the most likely class, not a threshold)"
                 if info.mode == "multiclass" else "the threshold 0.5 the metric table uses")
        st.caption(f"One-vs-rest on p({markdown_text(class_names[k])}): at each threshold, a pixel counts as "
                   f"{markdown_text(class_names[k])} when its probability reaches it. The diamond marks {point}. "
                   "AP: average precision, the area under the precision-recall steps. From each run's saved test "
                   f"predictions ({', '.join(f'{markdown_text(labels[r])}: {len(saved_ids[r])}' for r in have_saved)} images), "
                   f"probabilities resolved to 1/{review.CURVE_BINS}.")
    with tab_dis:
        common = [i for i in ds.ids if all(i in set(saved_ids[r]) for r in chosen)]
        if not common:
            st.info("No test image has a saved prediction from every selected run (their test splits differ, or a run "
                    "has not been evaluated), so their pixels cannot be compared.")
        else:
            runs_key = tuple((str(runs[r].path), _ui.mtime(runs[r].predictions_dir / "index.json")) for r in chosen)
            with st.spinner("Comparing the runs pixel by pixel…"):
                ranking = disagreement_ranking(runs_key, dataset_key, tuple(common), float(threshold))
            st.markdown(f"**Images ranked by the share of pixels where the {len(chosen)} runs give different labels**, "
                        "then by the share at least one run gets wrong.")
            shown = st.number_input("Images shown", 1, min(8, len(ranking)), min(3, len(ranking)), key="cmp_dis_n")
            swatch = "<span style='display:inline-block;width:0.9em;height:0.9em;background:rgb{};border:1px solid #888;margin:0 0.3em;vertical-align:middle'></span>"
            st.markdown(swatch.format(viz.DISAGREE_COLOR) + "the runs differ &nbsp; " + swatch.format(viz.AGREE_WRONG_COLOR)
                        + "every run gives the same wrong label &nbsp; (grey: every run agrees and is right; void pixels are not marked)",
                        unsafe_allow_html=True)
            for sid in list(ranking.index)[: int(shown)]:
                row = ranking.loc[sid]
                truth = ds.mask(sid)
                image = viz.to_rgb(ds.image(sid))
                preds = [review.prediction_mask(saved_probs(r, sid), truth.shape, info.mode, threshold) for r in chosen]
                dmap = review.disagreement_map(preds, truth, mode=info.mode, ignore_index=VOID)
                size = 2 * TILE
                cols = st.columns(2 + len(chosen))
                cols[0].image(viz.resize_for_display(viz.disagreement_overlay(image, dmap), size, nearest=True),
                              caption=f"{sid} · runs differ on {row['disagree']:.1%} · all wrong on {row['all_wrong']:.1%}", width="stretch")
                shown_image = viz.resize_for_display(image, size)
                cols[1].image(viz.overlay(shown_image, viz.resize_for_display(truth, size, nearest=True), colors, 0.5, info.ignore_index,
                                          unpainted=label_meaning.unpainted), caption="truth", width="stretch")
                for col, r, pred in zip(cols[2:], chosen, preds):
                    col.image(viz.overlay(shown_image, viz.resize_for_display(pred, size, nearest=True), colors, 0.5, None,
                                          unpainted=label_meaning.unpainted), caption=markdown_text(labels[r]), width="stretch")
            st.dataframe(ranking.rename(columns={"disagree": "runs differ", "any_wrong": "a run is wrong",
                                                 "all_wrong": "all runs wrong", "pixels": "valid pixels"}),
                         column_config={c: st.column_config.NumberColumn(format="percent") for c in ("runs differ", "a run is wrong", "all runs wrong")},
                         key="cmp_dis_table")
            st.caption(f"{len(ranking)} test images with a saved prediction from every selected run; masks at the threshold "
                       "above (softmax models: the most likely class), at each image's own resolution.")

st.subheader("Metrics on another dataset")
st.caption("Score these runs on any dataset with the same classes (an official test split imported on its own, "
           "another site's images). Results are kept in each run folder, per dataset and subset.")
others = run_eval.compatible_datasets(list_datasets(ws), info.mode, info.num_classes)
if not others:
    st.info(f"No dataset in this workspace is {markdown_text(info.mode)} with {info.num_classes} classes like {markdown_text(dataset_name)}.")
else:
    c = st.columns([2, 1, 1])
    target = c[0].selectbox("Dataset", [d.name for d in others], key="cmp_eval_dataset",
                            help=f"Datasets that are {info.mode} with {info.num_classes} classes, as these runs predict.")
    other = next(d for d in others if d.name == target)
    subsets = sorted({s.subset for s in other.samples if s.subset})
    subset = c[1].selectbox("Subset", ["all"] + subsets, key="cmp_eval_subset")
    subset = None if subset == "all" else subset
    key = run_eval.evaluation_key(target, subset)
    if c[2].button("Evaluate", key="cmp_eval_go", icon=":material/play_arrow:"):
        for r in chosen:
            try:
                with st.spinner(f"Evaluating {markdown_text(labels[r])} on {markdown_text(target)}…"):
                    run_eval.evaluate_on_dataset(runs[r], target, subset=subset, workspace=ws)
            except (ValueError, FileNotFoundError) as exc:
                st.error(f"{markdown_text(labels[r])}: {markdown_text(str(exc))}")
    kept = {labels[r]: run_eval.dataset_evaluations(runs[r]).get(key) for r in chosen}
    kept = {label: rep for label, rep in kept.items() if rep}
    if kept:
        table = viz.compare_table(kept, "dice")
        st.dataframe(viz.highlight_best(table, axis=1), key="cmp_eval_table")
        first = next(iter(kept.values()))
        st.caption(f"Dice on {markdown_text(target)} ({markdown_text(subset or 'all samples')}, {first.get('num_images')} images); "
                   + markdown_text(Labels.of_report(first).macro_caption()) + ".")
        for label, rep in kept.items():
            for w in rep.get("warnings") or []:
                st.caption(f"⚠ {markdown_text(label)}: {markdown_text(w)}")
    else:
        st.caption("No evaluation of these runs on this dataset yet.")

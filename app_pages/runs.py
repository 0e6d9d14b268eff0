"""Runs: the table of runs with their settings and filters, curves of several runs overlaid, two runs'
settings side by side, settings against the score, notes and tags, the pace of training, actions (stop,
resume, re-run, delete), downloads, and the study results table."""

from __future__ import annotations

import streamlit as st

import segcore.queue as run_queue
from app_pages import _ui
from segcore import run_review
from segcore import runs as runs_mod
from segcore import visualize as viz
from segcore.labels import Labels
from segcore.safetext import csv_bytes, markdown_text
from segcore.queue import ray_engine as training_engines

ws = _ui.workspace()
st.title("Runs")

if not runs_mod.list_runs(ws):
    st.info(
        "No runs yet. Start one from **Home** (one click on the demo data) or set one up on the **Train** page; "
        "runs started from the command line (`python -m segcore train ...`) appear here too."
    )
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()


# --------------------------------------------------------------------------- table


@st.fragment(run_every=5)
def runs_table() -> None:
    summaries = runs_mod.list_runs(ws)
    df = viz.runs_frame(summaries)
    c = st.columns([2, 2, 2, 2, 3])
    states = c[0].multiselect("Status", sorted({s.state for s in summaries}), key="runs_status", placeholder="any")
    datasets = c[1].multiselect("Dataset", sorted({s.dataset for s in summaries}), key="runs_dataset", placeholder="any")
    encoders = c[2].multiselect("Encoder", sorted({s.encoder for s in summaries}), key="runs_encoder", placeholder="any",
                                help="none: the plain U-Net.")
    losses = c[3].multiselect("Loss", sorted(df["loss"].dropna().unique()), key="runs_loss", placeholder="any",
                              help="The loss as set on the Train form; auto: Dice + cross-entropy.")
    query = c[4].text_input("Search run, model, tags, notes", key="runs_query", placeholder="e.g. vgg16 or baseline")
    kept = [s.run_id for s in viz.filter_runs(summaries, states, datasets, query, encoders=encoders, losses=losses)]
    shown = df[df["id"].isin(kept)]
    c = st.columns([3, 1], vertical_alignment="center")
    c[0].caption(f"{len(shown)} of {len(df)} runs · updates every 5 s · click a column header to sort")
    with_settings = c[1].toggle("Settings columns", value=True, key="runs_settings_columns",
                                help="Learning rate, image size, batch, normalisation, loss, encoder and the most epochs of each run.")
    # Tags and warnings only take room when some run has them.
    columns = ["run", "status", "dataset", "model", "best val Dice", "test Dice, all classes", "test Dice", "epochs"]
    if with_settings:
        columns += list(run_review.SETTING_COLUMNS)
    columns += ["duration", "device"]
    columns += [c for c in ("tags", "warnings") if shown[c].astype(bool).any()]
    st.dataframe(
        shown[columns], hide_index=True, key="runs_df",
        column_config={**_ui.run_columns(), "warnings": st.column_config.TextColumn(width="large")}, placeholder=_ui.MISSING,
    )
    st.session_state["runs_visible"] = shown["id"].tolist()


runs_table()
summaries = runs_mod.list_runs(ws)
by_id = {s.run_id: s for s in summaries}
labels = _ui.run_labels(summaries)
visible = [r for r in st.session_state.get("runs_visible", list(by_id)) if r in by_id] or list(by_id)

# --------------------------------------------------------------------------- curves

st.subheader("Curves")
with_history = [r for r in visible if runs_mod.RunFolder(by_id[r].path).history_path.is_file()]
if not with_history:
    st.info("No run has finished an epoch yet; curves appear after the first one.")
else:
    c = st.columns([3, 1])
    # The choice is kept by run id: a label that changes (a second run of the same name) must not drop it.
    kept = st.session_state.get("curve_runs_ids")
    st.session_state["curve_runs"] = [r for r in kept if r in with_history] if kept is not None else with_history[:3]
    chosen = c[0].multiselect("Runs to overlay", with_history, key="curve_runs", format_func=lambda r: labels[r],
                              on_change=lambda: st.session_state.update(curve_runs_ids=list(st.session_state["curve_runs"])))
    st.session_state["curve_runs_ids"] = list(chosen)
    histories = {labels[r]: h for r in chosen if (h := _ui.readable(runs_mod.RunFolder(by_id[r].path).read_history, warn=True))}
    metrics = viz.curve_metrics(histories) or ["loss"]
    records = (_ui.readable(runs_mod.RunFolder(by_id[r].path).read_record) for r in chosen)  # read until one opens
    classes = next((list(rec.dataset.classes) for rec in records if rec is not None), [])
    metric = c[1].selectbox("Metric", metrics, key="curve_metric", format_func=lambda m: _ui.metric_label(m, classes))
    smoothing, log_y = _ui.curve_options("curve")
    if chosen:
        st.plotly_chart(viz.curves_figure(histories, metric, f"{_ui.metric_label(metric, classes)}: solid = training, dashed = validation",
                                          smoothing=smoothing, log_y=log_y),
                        key="runs_curves")

# --------------------------------------------------------------------------- settings

st.subheader("Settings of two runs")
if len(visible) < 2:
    st.info("Two runs are needed to compare their settings; the filters above leave "
            + ("one." if visible else "none."))
else:
    c = st.columns([2, 2, 1], vertical_alignment="bottom")
    for key, fallback in (("diff_a", visible[0]), ("diff_b", visible[1])):  # the two newest, until others are picked
        if st.session_state.get(key) not in visible:
            st.session_state[key] = fallback
    run_a = c[0].selectbox("Run", visible, key="diff_a", format_func=lambda r: labels[r])
    run_b = c[1].selectbox("and run", visible, key="diff_b", format_func=lambda r: labels[r])
    everything = c[2].toggle("All settings", key="diff_all", help="Every setting, the ones that differ shaded; off: only those that differ.")
    if run_a == run_b:
        st.info("Pick two different runs.")
    else:
        differences = run_review.setting_differences(by_id[run_a].config, by_id[run_b].config, everything=everything)
        if not differences:
            st.success(f"{markdown_text(labels[run_a])} and {markdown_text(labels[run_b])} have the same settings.")
        else:
            frame = viz.settings_diff_frame(differences, labels[run_a], labels[run_b])
            # Shading tells the differing rows apart among all settings; when only those are shown it says nothing.
            st.dataframe(viz.highlight_differences(frame) if everything else frame.drop(columns=["differs"]), hide_index=True, key="settings_diff",
                         column_config={"setting": st.column_config.TextColumn("setting", help="As in config.json: section.name.")})
            differ = int(frame["differs"].sum())
            st.caption(f"{differ} setting(s) differ" + (f" of {len(frame)}." if everything else "; *All settings* shows the rest."))

st.subheader("Settings against the score")
c = st.columns([2, 2])
score = c[0].selectbox("Score", run_review.SCORES, key="parallel_score",
                       help="Test Dice over every class ranks finished runs; best validation Dice is there while a run trains.")
datasets_shown = sorted({by_id[r].dataset for r in visible})
if len(datasets_shown) > 1:  # scores on different datasets are not comparable
    parallel_dataset = c[1].selectbox("Dataset", datasets_shown, key="parallel_dataset", help="Scores are compared on one dataset at a time.")
else:
    parallel_dataset = datasets_shown[0] if datasets_shown else None
drawn = [by_id[r] for r in visible if by_id[r].dataset == parallel_dataset]
view = run_review.settings_against_score({labels[s.run_id]: run_review.run_settings(s.config) for s in drawn},
                                         {labels[s.run_id]: run_review.run_score(s, score) for s in drawn}, score)
figure = viz.settings_parallel_figure(view)
if figure is None:
    st.info(f"Each run with a score ({score}) is drawn here as one line across its settings: "
            + ("none of the runs shown has one yet." if view.frame.empty else "only one run shown has one so far, and the view needs two."))
elif not view.settings:
    st.info(f"Every setting shown in the table is the same for these {len(view.frame)} runs, so there is nothing to draw "
            "against the score. *Settings of two runs* above compares every setting.")
else:
    st.plotly_chart(figure, key="settings_parallel")
    st.caption("One line per run, coloured by its score; drag along an axis to pick out runs.")
if view.constant and figure is not None:
    st.caption("Left out, the same for every run: " + ", ".join(
        f"{name} {markdown_text(run_review.setting_text(value))}" for name, value in view.constant.items()) + ".")
if view.left_out:
    st.caption("Not drawn: " + ", ".join(f"{markdown_text(label)} ({why})" for label, why in view.left_out.items()) + ".")
if len(view.frame) >= 2 and view.settings:
    with st.expander("The runs drawn"):
        st.dataframe(view.frame.sort_values(score, ascending=False), key="parallel_table",
                     column_config={score: st.column_config.NumberColumn(format="%.3f")})

# --------------------------------------------------------------------------- one run

st.subheader("One run")


def _act(action: str, fn, *args) -> None:
    """Run an action on a run, then rerun the whole page so every panel shows the run's new state."""
    with _ui.friendly_errors(action):
        fn(*args, actor=_ui.actor())
        st.rerun()


def one_run() -> None:
    """One run's numbers, actions and downloads, read fresh from its folder on every rerun."""
    summaries = runs_mod.list_runs(ws)
    by_id = {s.run_id: s for s in summaries}
    labels = _ui.run_labels(summaries)
    shown = [r for r in st.session_state.get("runs_visible", list(by_id)) if r in by_id] or list(by_id)
    wanted = st.query_params.get("run")
    if wanted in by_id and wanted not in shown:
        if "run_detail" in st.session_state:  # the filters have just hidden the chosen run: follow them
            del st.query_params["run"]
        else:  # a shared link opened with filters left over from before
            shown = [wanted] + shown
    _ui.from_url("run_detail", "run", shown)
    _ui.unknown_in_url("run", by_id, "run", "run_detail")
    run_id = st.selectbox("Run", shown, key="run_detail", format_func=lambda r: f"{labels[r]} · {by_id[r].state}",
                          **_ui.url_sync("run", "run_detail"))
    _ui.to_url("run", "run_detail")
    s = by_id[run_id]
    run = runs_mod.RunFolder(s.path)
    owner = run.owner()
    stopping = s.state == "running" and run.stop_requested()
    c = st.columns(4)
    c[0].metric("Status", "stopping" if stopping else s.state,
                help="Stop was pressed: the run stops after its current batch." if stopping else None)
    c[1].metric("Epochs", f"{s.epoch}/{s.epochs}")
    c[2].metric("Best validation Dice", "–" if s.best_val_dice is None else f"{s.best_val_dice:.3f}",
                help="Overlap with the true masks on the validation images, 0 to 1" + (f"; reached at epoch {s.best_epoch}." if s.best_epoch else "."))
    test_dice = (s.test or {}).get("all_dice", (s.test or {}).get("macro_dice"))
    c[3].metric("Test Dice, all classes" if "all_dice" in (s.test or {}) else "Test Dice", "–" if test_dice is None else f"{test_dice:.3f}",
                help="On the held-out test images at their own resolution, averaged over every class, background included "
                     "(the figure runs are ranked by); the per-class table below has the macro mean too. Measured when training has ended.")
    # A finished run's message only repeats the epochs above.
    st.caption(f"Run id `{run_id}` · {markdown_text(s.model)} on {markdown_text(s.dataset)}"
               + (f" · {markdown_text(s.devices)}" if s.devices else "")
               + (f" · {markdown_text(s.engine)} engine on {markdown_text(s.host or 'a node not known yet')}" if s.engine else "")
               + (f" · {markdown_text(s.message)}" if s.message and s.state != "finished" else ""))
    pace = run_review.run_pace(run).text()
    if pace:
        st.caption(f":material/timer: {pace}")
    for name, reason in s.damage.items():
        st.error(markdown_text(f"{name} is damaged: {reason}"))
    for w in s.warnings:
        if not any(w.startswith(f"{name} is damaged") for name in s.damage):
            st.warning(markdown_text(w))

    notes = _ui.readable(run.read_notes, {"notes": "", "tags": []})
    c = st.columns([3, 2])
    new_notes = c[0].text_area("Notes (everyone using this workspace sees them)", notes.get("notes", ""), key=f"notes_{run_id}", height=100)
    new_tags = c[1].text_input("Tags (comma separated)", ", ".join(notes.get("tags", [])), key=f"tags_{run_id}")
    if c[1].button("Save notes and tags", key=f"save_notes_{run_id}", **_ui.permit("notes")):
        with _ui.friendly_errors("save the notes"):
            runs_mod.set_notes(run_id, new_notes, ws, actor=_ui.actor())
            runs_mod.set_tags(run_id, [t.strip() for t in new_tags.split(",") if t.strip()], ws, actor=_ui.actor())
            st.toast("Saved")

    a = st.container(horizontal=True)
    if s.state == "queued":
        if a.button("Cancel", key=f"runs_stop_{run_id}", icon=":material/close:",
                    **_ui.permit("stop", owner, help="Takes the run out of the queue; Resume queues it again.")):
            _act("cancel the run", run_queue.stop, run_id, ws)
        queue = [r.run_id for r in runs_mod.queued_runs(ws)]
        place = queue.index(run_id) + 1 if run_id in queue else 0
        if a.button("Move up the queue", key=f"runs_up_{run_id}", icon=":material/arrow_upward:",
                    **_ui.permit("reorder", owner, disabled=place <= 1,
                                 help=f"Place {place} of {len(queue)} in the queue; the worker starts the first one next." if place else None)):
            _act("move the run up", runs_mod.move_up, run_id, ws)
    if s.state == "running" and not stopping:
        if a.button("Stop", key=f"runs_stop_{run_id}",
                    **_ui.permit("stop", owner, help="Stops after the current batch; Resume continues from the last checkpoint.")):
            _act("stop the run", run_queue.stop, run_id, ws)
    if s.state in runs_mod.RESUMABLE_STATES:
        if a.button("Resume", key=f"runs_resume_{run_id}", **_ui.permit("resume", owner)):
            _act("resume the run", run_queue.resume, run_id, ws)
    if a.button("Re-run with the same settings", key=f"rerun_{run_id}",
                **_ui.permit("launch", help="Queues a new run with this config and split, and shows it here.")):
        with _ui.friendly_errors("re-run"):
            new_id = run_queue.rerun(run_id, ws, actor=_ui.actor())
            st.session_state["rerun_of"] = (run_id, new_id)
            st.query_params["run"] = new_id
            st.rerun()
    rerun_of = st.session_state.get("rerun_of") or (None, None)
    if rerun_of[1] == run_id and rerun_of[0] in by_id:
        st.success(f"Queued {_ui.code_text(labels[run_id])} with the settings and split of {_ui.code_text(labels[rerun_of[0]])}.")
    with a.popover("Delete", icon=":material/delete:", **_ui.permit("delete", owner)):
        st.write(f"Delete **{markdown_text(labels[run_id])}** (`{run_id}`) and everything in its folder? This cannot be undone.")
        if st.button("Yes, delete it", type="primary", key=f"delete_{run_id}"):
            with _ui.friendly_errors("delete the run"):
                runs_mod.delete_run(run_id, ws, actor=_ui.actor())
                st.session_state.pop("run_detail", None)
                if "run" in st.query_params:
                    del st.query_params["run"]
                st.rerun()

    history_rows = viz.audit_rows(run.read_audit())
    with st.expander(f"History ({len(history_rows)})" if history_rows else "History (nothing recorded)", expanded=bool(history_rows)):
        if history_rows:
            st.dataframe(history_rows, hide_index=True)
        else:
            st.caption("No launch, stop, resume or note is recorded for this run (runs launched by older versions have none).")

    rows = _ui.readable(run.read_history, []) if run.history_path.is_file() else []
    timing = viz.epoch_time_figure(rows or [])
    if timing is not None:
        with st.expander("Where each epoch's time goes"):
            st.plotly_chart(timing, key=f"epoch_time_{run_id}")
            st.caption("Seconds per epoch: training steps, Keras's validation pass, the health check's predictions, "
                       "saving the checkpoint, and everything else (history and status files, the input pipeline's start).")

    # Every download is handed over as bytes: a file id that stays valid across reruns
    # (a deferred callable's id is dropped by the next rerun, and the download then fails).
    d = st.container(horizontal=True)
    model_path = run.model_path
    model_bytes = _ui.readable(model_path.read_bytes, b"") if model_path.is_file() else b""
    d.download_button("Model (.keras)", model_bytes, f"{run_id}.keras", "application/octet-stream", on_click="ignore",
                      key=f"dl_model_{run_id}", disabled=not model_bytes, icon=":material/download:")
    config_bytes = _ui.readable(run.config_path.read_bytes, b"")
    d.download_button("Config (JSON)", config_bytes, f"{run_id}-config.json", "application/json", on_click="ignore",
                      key=f"dl_cfg_{run_id}", disabled=not config_bytes, icon=":material/download:")
    history = _ui.readable(run.history_path.read_bytes, b"") if run.history_path.is_file() else b""
    d.download_button("History (CSV)", history, f"{run_id}-history.csv", "text/csv", on_click="ignore",
                      key=f"dl_hist_{run_id}", disabled=not history, icon=":material/download:")
    evaluation = _ui.readable(run.read_evaluation, warn=True)
    d.download_button("Evaluation (JSON)", _ui.readable(run.evaluation_path.read_bytes, b"") if evaluation else b"", f"{run_id}-evaluation.json", "application/json",
                      on_click="ignore", key=f"dl_eval_{run_id}", disabled=evaluation is None, icon=":material/download:")
    if evaluation:
        st.markdown("**Scores on the test images, per class**", help=_ui.METRICS_HELP)
        # Per-class pixel accuracy (one class against the rest) is left out: next to the overall pixel
        # accuracy it reads as a second, different accuracy of the same run.
        table = viz.per_class_table(evaluation, ("dice", "iou", "precision", "recall")).rename(columns=_ui.METRIC_LABELS)
        st.dataframe(table.style.format("{:.3f}", na_rep="n/a"), key=f"eval_{run_id}")
        overall = evaluation.get("pixel_accuracy")
        meaning = Labels.of_report(evaluation)
        st.caption(("" if overall is None else f"Pixel accuracy over all pixels: {overall:.3f}. ")
                   + f"all classes: {meaning.headline_caption()}. {markdown_text(meaning.macro_caption())}; {meaning.micro_caption()}. "
                   "n/a: the class is in neither the true nor the predicted masks.")
        for w in evaluation.get("warnings") or []:
            st.caption(f"⚠ {markdown_text(w)}")
    if s.state == "finished":
        _ui.what_next(s, summaries, key="runs")
    with st.expander("Settings"):
        st.json(s.config, expanded=False)
    if s.state != "queued":
        logdir = run_review.tensorboard_logdir(run)
        if logdir is not None:
            st.markdown("**TensorBoard**: this run's logs, served by TensorBoard on the machine that holds the workspace:")
            st.code(run_review.tensorboard_command(logdir), language="bash")
        else:
            st.caption("No TensorBoard logs for this run (they are written where TensorFlow and TensorBoard are installed).")
    log = _ui.readable(lambda: run.log_path.read_text(errors="replace"), "") if run.log_path.is_file() else ""
    if log:
        with st.expander("Log (last 40 lines)"):
            st.code("\n".join(log.splitlines()[-40:]), language=None)
    if s.engine == "ray":
        with st.expander("Ray job log (last 40 lines)"):
            if st.button("Fetch from the Ray cluster", key=f"ray_log_{run_id}"):
                st.code(training_engines.job_log(ws, _ui.readable(run.read_status, {}).get("job") or run_id), language=None)


# While a run is queued or running its panel polls the folder, so Stop, Resume and the end of
# training show without a reload; otherwise it redraws only when something is pressed.
active = any(s.state in runs_mod.ACTIVE_STATES for s in summaries)
st.fragment(run_every=3 if active else None)(one_run)()

# --------------------------------------------------------------------------- study table

st.subheader("Results table")


def results_table() -> None:
    """The test scores of the finished runs shown above, one dataset at a time."""
    summaries = runs_mod.list_runs(ws)
    by_id = {s.run_id: s for s in summaries}
    labels = _ui.run_labels(summaries)
    visible = [r for r in st.session_state.get("runs_visible", list(by_id)) if r in by_id] or list(by_id)
    results = runs_mod.run_results(by_id[r] for r in visible)
    if not results:
        st.info("No finished run has a test evaluation yet. The table of Dice, IoU and accuracy appears here when one has.")
    else:
        # Scores on different datasets are not comparable: one table per dataset, best values within it.
        c = st.columns(2)
        dataset_names = runs_mod.result_datasets(results)
        if len(dataset_names) > 1:
            current = by_id.get(st.session_state.get("run_detail"))
            _ui.from_url("study_dataset", "dataset", dataset_names, fallback=current.dataset if current else None)
            dataset_name = c[0].selectbox("Dataset", dataset_names, key="study_dataset", help="Test scores are compared on one dataset at a time.")
        else:
            dataset_name = dataset_names[0]
        everything = "all finished runs shown above"
        studies = runs_mod.result_studies(results, dataset_name)
        pick = c[1].selectbox("Encoder study", [everything] + studies, key="study_pick") if studies else everything
        chosen = runs_mod.select_results(results, dataset_name, None if pick == everything else pick)
        info = {labels[r.summary.run_id]: {"model": r.summary.model, "epochs": r.summary.epoch} for r in chosen}
        table = viz.study_table({labels[r.summary.run_id]: r.report for r in chosen}, info)
        st.dataframe(viz.highlight_best(table, axis=0, subset=list(viz.STUDY_COLUMNS),
                                        higher_is_better=viz.STUDY_HIGHER_IS_BETTER), key="study_table", placeholder=_ui.MISSING)
        st.caption(f"Test scores on {markdown_text(dataset_name)}, each run on its own test split: 'Dice, all classes' counts every "
                   "class, background included, and ranks runs; Dice, IoU, precision and recall are macro means "
                   f"({markdown_text(Labels.of_report(chosen[0].report).macro_caption()) if chosen else 'macro'}); "
                   "accuracy: pixel accuracy; HD95 (px, lower is better) and NSD: boundaries; ECE: calibration error (lower is better). "
                   "The best value of each column is highlighted.")
        e = st.container(horizontal=True)
        e.download_button("Download CSV", csv_bytes(table), f"results-{dataset_name}.csv", "text/csv", key="study_csv",
                          icon=":material/download:", on_click="ignore")
        e.download_button("Download Markdown", viz.table_markdown(table).encode(), f"results-{dataset_name}.md", "text/markdown",
                          key="study_md", icon=":material/download:", on_click="ignore")


# Polls while runs are active, so a run that finishes joins the table without a reload.
st.fragment(run_every=5 if active else None)(results_table)()

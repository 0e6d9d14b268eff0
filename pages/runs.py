"""Runs: the table of runs with filters, curves of several runs overlaid, notes and tags,
actions (stop, resume, re-run, delete), downloads, and the study results table."""

from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st

import segcore.training as training
from pages import _ui
from segcore import runs as runs_mod
from segcore import visualize as viz
from segcore.safetext import markdown_text

ws = _ui.workspace()
st.title("Runs")

if not runs_mod.list_runs(ws):
    st.info(
        "No runs yet. Start one from **Home** (one click on the demo data) or set one up on the **Train** page; "
        "runs started from the command line (`python -m segcore train ...`) appear here too."
    )
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()


# --------------------------------------------------------------------------- table


@st.fragment(run_every=5)
def runs_table() -> None:
    summaries = runs_mod.list_runs(ws)
    df = viz.runs_frame(summaries)
    df["notes"] = [s.notes for s in summaries]
    c = st.columns([2, 2, 3])
    states = c[0].multiselect("Status", sorted(df["status"].unique()), key="runs_status", placeholder="any")
    datasets = c[1].multiselect("Dataset", sorted(df["dataset"].unique()), key="runs_dataset", placeholder="any")
    query = c[2].text_input("Search run, model, tags, notes", key="runs_query", placeholder="e.g. vgg16 or baseline")
    shown = df
    if states:
        shown = shown[shown["status"].isin(states)]
    if datasets:
        shown = shown[shown["dataset"].isin(datasets)]
    if query.strip():
        q = query.strip().lower()
        hay = shown[["run", "model", "encoder", "tags", "notes", "warnings"]].astype(str).agg(" ".join, axis=1).str.lower()
        shown = shown[hay.str.contains(q, regex=False)]
    st.caption(f"{len(shown)} of {len(df)} runs · updates every 5 s")
    # Tags and warnings only take room when some run has them.
    columns = ["run", "status", "dataset", "model", "best val Dice", "test Dice", "epochs", "duration"]
    columns += [c for c in ("tags", "warnings") if shown[c].astype(bool).any()]
    st.dataframe(
        shown[columns], hide_index=True, key="runs_df",
        column_config={**_ui.run_columns(), "warnings": st.column_config.TextColumn(width="large")},
    )
    st.session_state["runs_visible"] = shown["run"].tolist()


runs_table()
summaries = runs_mod.list_runs(ws)
by_id = {s.run_id: s for s in summaries}
visible = [r for r in st.session_state.get("runs_visible", list(by_id)) if r in by_id] or list(by_id)

# --------------------------------------------------------------------------- curves

st.subheader("Curves")
with_history = [r for r in visible if runs_mod.RunFolder(by_id[r].path).history_path.is_file()]
if not with_history:
    st.info("No run has finished an epoch yet; curves appear after the first one.")
else:
    c = st.columns([3, 1])
    chosen = c[0].multiselect("Runs to overlay", with_history, default=with_history[:3], key="curve_runs")
    histories = {r: h for r in chosen if (h := _ui.readable(runs_mod.RunFolder(by_id[r].path).read_history, warn=True))}
    metrics = viz.curve_metrics(histories) or ["loss"]
    classes = next((_ui.readable(runs_mod.RunFolder(by_id[r].path).read_meta, {}).get("dataset") or {} for r in chosen), {}).get("classes") or []
    metric = c[1].selectbox("Metric", metrics, key="curve_metric", format_func=lambda m: _ui.metric_label(m, classes))
    if chosen:
        st.plotly_chart(viz.curves_figure(histories, metric, f"{_ui.metric_label(metric, classes)}: solid = training, dashed = validation"),
                        key="runs_curves")

# --------------------------------------------------------------------------- one run

st.subheader("One run")
run_id = st.selectbox("Run", visible, key="run_detail", format_func=lambda r: f"{r} · {by_id[r].state}")
s = by_id[run_id]
run = runs_mod.RunFolder(s.path)
status = run.true_status()
c = st.columns(4)
c[0].metric("Status", s.state)
c[1].metric("Epochs", f"{s.epoch}/{s.epochs}")
c[2].metric("Best validation Dice", "–" if s.best_val_dice is None else f"{s.best_val_dice:.3f}",
            help="Overlap with the true masks on the validation images, 0 to 1" + (f"; reached at epoch {s.best_epoch}." if s.best_epoch else "."))
test_dice = (s.test or {}).get("macro_dice")
c[3].metric("Test Dice", "–" if test_dice is None else f"{test_dice:.3f}",
            help="On the held-out test images, averaged over the foreground classes (macro); measured when training has ended.")
if s.message and s.state != "finished":  # a finished run's message only repeats the epochs above
    st.caption(markdown_text(s.message))
for name, reason in s.damage.items():
    st.error(markdown_text(f"{name} is damaged: {reason}"))
for w in s.warnings:
    if not any(w.startswith(f"{name} is damaged") for name in s.damage):
        st.warning(markdown_text(w))

notes = _ui.readable(run.read_notes, {"notes": "", "tags": []})
c = st.columns([3, 2])
new_notes = c[0].text_area("Notes (everyone using this workspace sees them)", notes.get("notes", ""), key=f"notes_{run_id}", height=100)
new_tags = c[1].text_input("Tags (comma separated)", ", ".join(notes.get("tags", [])), key=f"tags_{run_id}")
if c[1].button("Save notes and tags", key=f"save_notes_{run_id}"):
    with _ui.friendly_errors("save the notes"):
        runs_mod.set_notes(run_id, new_notes, ws)
        runs_mod.set_tags(run_id, [t.strip() for t in new_tags.split(",") if t.strip()], ws)
        st.toast("Saved")

a = st.container(horizontal=True)
if s.state in ("queued", "running"):
    if a.button("Stop", key=f"runs_stop_{run_id}"):
        with _ui.friendly_errors("stop the run"):
            training.stop(run_id, ws)
            st.toast(f"Stop requested for {run_id}")
if s.state in ("stopped", "interrupted", "failed", "damaged"):
    if a.button("Resume", key=f"runs_resume_{run_id}"):
        with _ui.friendly_errors("resume the run"):
            training.resume(run_id, ws)
            st.toast(f"{run_id} queued again")
if a.button("Re-run with the same settings", key=f"rerun_{run_id}", help="Queues a new run with this config and split."):
    with _ui.friendly_errors("re-run"):
        new_id = runs_mod.rerun(run_id, ws)
        st.session_state["rerun_of"] = (run_id, new_id)
if st.session_state.get("rerun_of", (None,))[0] == run_id:
    st.success(f"Queued `{st.session_state['rerun_of'][1]}` with the settings of `{run_id}`.")
with a.popover("Delete", icon=":material/delete:"):
    st.write(f"Delete **{run_id}** and everything in its folder? This cannot be undone.")
    if st.button("Yes, delete it", type="primary", key=f"delete_{run_id}"):
        with _ui.friendly_errors("delete the run"):
            runs_mod.delete_run(run_id, ws)
            st.session_state.pop("run_detail", None)
            st.rerun()


def _read(path: Path) -> bytes:
    return path.read_bytes()


d = st.container(horizontal=True)
model_path = run.best_model_path if run.best_model_path.is_file() else run.last_model_path
d.download_button("Model (.keras)", functools.partial(_read, model_path), f"{run_id}.keras", "application/octet-stream",
                     key=f"dl_model_{run_id}", disabled=not model_path.is_file(), icon=":material/download:")
d.download_button("Config (JSON)", _ui.readable(run.config_path.read_bytes, b""), f"{run_id}-config.json", "application/json",
                  key=f"dl_cfg_{run_id}", disabled=not run.config_path.is_file(), icon=":material/download:")
d.download_button("History (CSV)", run.history_path.read_bytes() if run.history_path.is_file() else b"", f"{run_id}-history.csv", "text/csv",
                     key=f"dl_hist_{run_id}", disabled=not run.history_path.is_file(), icon=":material/download:")
evaluation = _ui.readable(run.read_evaluation, warn=True)
d.download_button("Evaluation (JSON)", run.evaluation_path.read_bytes() if evaluation else b"", f"{run_id}-evaluation.json", "application/json",
                     key=f"dl_eval_{run_id}", disabled=evaluation is None, icon=":material/download:")
if evaluation:
    st.markdown("**Scores on the test images, per class**", help=_ui.METRICS_HELP)
    # Per-class pixel accuracy (one class against the rest) is left out: next to the overall pixel
    # accuracy it reads as a second, different accuracy of the same run.
    table = viz.per_class_table(evaluation, ("dice", "iou", "precision", "recall")).rename(columns=_ui.METRIC_LABELS)
    st.dataframe(table.style.format("{:.3f}", na_rep="n/a"), key=f"eval_{run_id}")
    overall = evaluation.get("pixel_accuracy")
    st.caption(("" if overall is None else f"Pixel accuracy over all pixels: {overall:.3f}. ")
               + "macro: mean over the foreground classes; micro: the foreground pixels of all classes pooled. "
               "n/a: the class is in neither the true nor the predicted masks.")
    for w in evaluation.get("warnings") or []:
        st.caption(f"⚠ {markdown_text(w)}")
with st.expander("Settings"):
    st.json(_ui.readable(run.read_meta, {}).get("config", {}), expanded=False)
if run.log_path.is_file():
    with st.expander("Log (last 40 lines)"):
        st.code("\n".join(run.log_path.read_text(errors="replace").splitlines()[-40:]), language=None)

# --------------------------------------------------------------------------- study table

st.subheader("Results table")
finished = [r for r in visible if by_id[r].state == "finished"]
reports = {}
meta_study = {}
for r in finished:
    folder = runs_mod.RunFolder(by_id[r].path)
    rep = _ui.readable(folder.read_evaluation)
    if rep:
        reports[r] = rep
        study = _ui.readable(folder.read_meta, {}).get("sweep") or {}
        meta_study[r] = study.get("id", "") if isinstance(study, dict) else str(study)
if not reports:
    st.info("No finished run has a test evaluation yet. The table of Dice, IoU and accuracy appears here when one has.")
else:
    everything = "all finished runs shown above"
    studies = sorted({v for v in meta_study.values() if v}, reverse=True)
    pick = st.selectbox("Encoder study", [everything] + studies, key="study_pick") if studies else everything
    labels = [r for r in reports if pick == everything or meta_study.get(r) == pick]
    info = {r: {"model": by_id[r].name or by_id[r].model, "dataset": by_id[r].dataset, "epochs": by_id[r].epoch} for r in labels}
    table = viz.study_table({r: reports[r] for r in labels}, info)
    st.dataframe(viz.highlight_best(table, axis=0, subset=list(viz.STUDY_COLUMNS)), key="study_table")
    st.caption("Dice, IoU, precision and recall: macro means over the foreground classes on each run's test split; accuracy: pixel accuracy.")
    e = st.container(horizontal=True)
    e.download_button("Download CSV", table.to_csv().encode(), "results.csv", "text/csv", key="study_csv", icon=":material/download:")
    e.download_button("Download Markdown", viz.table_markdown(table).encode(), "results.md", "text/markdown", key="study_md", icon=":material/download:")

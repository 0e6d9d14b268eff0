"""Home: what segcore is, a quick start on the demo data, recent runs, backend and devices."""

from __future__ import annotations

import streamlit as st

from app_pages import _ui
from segcore import runs as runs_mod
from segcore import visualize as viz
from segcore.labels import Labels
from segcore.quickstart import MEASURED, QUICK_START, past_quick_starts, start_quick_start
from segcore.safetext import markdown_text
from segcore.training.device import backend_summary

ws = _ui.workspace()
st.title("segcore")
st.markdown(
    "A U-Net segmentation workbench: import image + mask datasets, train Keras U-Nets (plain or with "
    "pretrained encoders) and watch them learn.  \n"
    "Then compare several models' predictions side by side, with probability heatmaps and per-class metric tables."
)

st.subheader("Quick start")
infos = {i.name: i for i in _ui.datasets(ws)}
demo = infos.get("demo")
col_data, col_train = st.columns(2)
with col_data:
    if demo is None:
        st.info("The demo dataset is not there yet. Import your own data on the **Data** page.")
    else:
        real = Labels.of_dataset(demo).real_class_names
        st.markdown(
            f"**1. The demo dataset is ready:** {len(demo.samples)} images, {demo.mode}, "
            f"{len(real)} classes ({', '.join(markdown_text(n) for n in real)})."
        )
        st.page_link("app_pages/data.py", label="Browse it on the Data page", icon=":material/photo_library:")
with col_train:
    st.markdown(
        f"**2. Train a small U-Net on it:** depth {QUICK_START.model.depth}, {QUICK_START.model.filters} filters, "
        f"{QUICK_START.train.image_size}x{QUICK_START.train.image_size} px, up to {QUICK_START.train.epochs} epochs "
        "(early stopping may end it sooner)."
    )
    st.caption(viz.quick_start_duration_note(MEASURED, past_quick_starts(runs_mod.list_runs(ws))))
    if st.button("Train a small model on the demo data", type="primary", key="quick_start", **_ui.permit("launch", disabled=demo is None)):
        with _ui.friendly_errors("start the run"):
            run_id, queued = start_quick_start(ws, actor=_ui.actor())
            st.session_state["last_launched"] = run_id
            if not queued:
                st.info("A quick start is already under way (shown below), so no second one was queued.")

st.subheader("Recent runs")


@st.fragment(run_every=3)
def recent_runs() -> None:
    with _ui.friendly_errors("read the runs"):
        summaries = runs_mod.list_runs(ws)
        by_id = {s.run_id: s for s in summaries}
        launched = by_id.get(st.session_state.get("last_launched"))
        if launched is not None:
            label = _ui.run_labels(summaries)[launched.run_id]
            if launched.state == "finished":
                _ui.what_next(launched, summaries, key="home")
            elif launched.state in runs_mod.ACTIVE_STATES:
                where = "waiting in the queue" if launched.state == "queued" else f"training, epoch {launched.epoch}/{launched.epochs}"
                st.success(f"Run {_ui.code_text(label)} is {where}; it trains in its own process.")
                st.page_link("app_pages/train.py", label="Watch it learn on the Train page", icon=":material/model_training:")
            else:
                st.warning(f"Run {_ui.code_text(label)} is {launched.state}: {markdown_text(launched.message or 'see the Runs page')}")
                st.page_link("app_pages/runs.py", label="Open it on the Runs page", icon=":material/table_chart:",
                             query_params={"run": launched.run_id})
        if not summaries:
            st.info("No runs yet. Start one with the button above, or set one up on the **Train** page.")
            return
        df = viz.runs_frame(summaries)
        df = df.sort_values("created", ascending=False, kind="stable").head(8)
        columns = ["run", "status", "dataset", "model", "best val Dice", "test Dice", "epochs", "duration"]
        columns += ["warnings"] if df["warnings"].astype(bool).any() else []  # damaged files are named here too
        st.dataframe(
            df[columns],
            hide_index=True,
            column_config=_ui.run_columns(),
            placeholder=_ui.MISSING,
        )
        st.page_link("app_pages/runs.py", label="All runs", icon=":material/table_chart:")


recent_runs()

st.subheader("Backend and devices")
env = backend_summary()
gpus = ", ".join(env["gpus"]) if env["gpus"] else "none found (training runs on the CPU)"
st.markdown(
    f"- Keras backend: **{env['backend']}** (from {env['backend_source']}; set `KERAS_BACKEND` to change it)\n"
    f"- GPUs: {gpus}\n"
    f"- CPU cores: {env['cpus']}\n"
    f"- Workspace: `{ws.root}` (`SEGCORE_WORKSPACE`)"
)

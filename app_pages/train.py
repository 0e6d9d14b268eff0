"""Train: set up a run (or the encoder study), queue it, and watch the queue and the running run live."""

from __future__ import annotations

import streamlit as st

import segcore.queue as run_queue
from app_pages import _ui
from segcore import run_review
from segcore import runs as runs_mod
from segcore import visualize as viz
from segcore.config import RunConfig, build, declared, defaults
from segcore.labels import Labels
from segcore.catalog import encoders
from segcore.safetext import markdown_text
from segcore.queue import sweep
from app_pages import _settings_form as form

SETTINGS = declared(RunConfig)  # every setting with its widget: the form below is generated from them
BY_PATH = {d.path: d for d in SETTINGS}
STUDY = "The paper's encoder study: plain U-Net, VGG16 frozen, VGG16 fine-tuned (frozen for the first half of the epochs), DenseNet121, ResNet50, MobileNetV2"
# Where the training settings sit (the rest follow in field order); the other sections keep field order.
TRAINING_ROWS = (
    ("train.loss", "train.optimizer", "train.lr_schedule"),
    ("train.learning_rate", "train.early_stopping_patience", "train.seed", "train.class_weighting"),
    ("train.budget_minutes", "train.patches_per_image", "train.tta"),
    ("train.epochs", "train.batch_size", "train.image_size"),
    ("train.fit",),
)

ws = _ui.workspace()
st.title("Train")
if (launching := _ui.permit("launch"))["disabled"]:
    st.info(f"{launching['help']} The settings and the plan can still be looked at.")


def launch_study(cfg, ws, weights):
    """Queue the paper's set with these shared settings and encoder ``weights``; returns the run ids."""
    record = sweep.queue_sweep(cfg, ws, weights=weights, actor=_ui.actor())
    st.session_state["train_study_notes"] = record.get("notes", [])
    return [r["run_id"] for r in record["runs"]]


@st.cache_data(max_entries=16, show_spinner="Reading the masks for the plan…")
def dataset_plan(root: str, name: str, mtime: str):
    from segcore.data.dataset import load_dataset
    from segcore.training.plan import plan_dataset

    try:
        return plan_dataset(load_dataset(name, _ui.workspace()))
    except (FileNotFoundError, ValueError):
        return None


def apply_plan(plan) -> None:
    for p in plan.settings:
        d = BY_PATH.get(p.setting)
        if d is not None and d.key:
            st.session_state[d.key] = form.state_value(d, p.value)
    st.session_state["train_plan_used"] = plan.fingerprint.name


infos = _ui.datasets(ws)
if not infos:
    st.info("There is no dataset to train on yet. Import one on the **Data** page first.")
    st.page_link("app_pages/data.py", label="Go to Data", icon=":material/photo_library:")
    st.stop()

# --------------------------------------------------------------------------- the form

with st.container(border=True):
    st.subheader("New run")
    values = defaults(RunConfig)  # every widget starts from the settings' own defaults
    c = st.columns([2, 2, 2])
    names = [i.name for i in infos]
    dataset = BY_PATH["train.dataset"]
    _ui.from_url(dataset.key, "dataset", names, fallback=st.session_state.get("dataset", "demo"))
    chosen_name = c[0].selectbox(dataset.meta.widget.label, names, key=dataset.key, **_ui.url_sync("dataset", dataset.key))
    _ui.to_url("dataset", dataset.key)
    info = infos[names.index(chosen_name)]
    values["train.dataset"] = info.name
    for column, path in zip(c[1:], ("name", "tags")):
        values[path] = form.widget(BY_PATH[path], column, value=values[path])
    kind = st.segmented_control("What to train", ["One model", "Encoder study"], default="One model", key="train_kind",
                                help=STUDY)
    study = kind == "Encoder study"
    study_weights = None
    st.caption(f"{info.name}: {len(info.samples)} images, {info.mode}, classes {markdown_text(', '.join(Labels.of_dataset(info).real_class_names))}.")
    plan = dataset_plan(str(ws.root), info.name, str(_ui.mtime(ws.dataset_dir(info.name) / "dataset.json")))
    if plan is not None and not study:
        with st.expander(f"The plan for {info.name}: settings derived from the data", icon=":material/lightbulb:"):
            fp = plan.fingerprint
            thin_name, thin = fp.thinnest
            st.caption(markdown_text(
                f"{fp.num_images} images, median {fp.median_height}x{fp.median_width}"
                + (f"; the thinnest structures ('{thin_name}') are {thin:.1f} px wide" if thin is not None else "")
                + ". Each value below is derived from these facts; press the button to start from them, then change any."))
            st.dataframe([{"setting": p.setting, "value": str(p.value), "why": p.reason} for p in plan.settings],
                         hide_index=True, key="train_plan_table")
            st.button("Start from the plan", key="train_plan_apply", icon=":material/auto_awesome:",
                      on_click=apply_plan, args=(plan,))

    st.markdown("**Model**")
    pretrained = None
    if study:
        st.info(STUDY + ". Every model trains on the same data and split, one after the other; the Runs page lists them as one study.")
        # the shared settings are the defaults; each encoder gets study_weights
        study_weights = st.selectbox("Encoder weights", ["imagenet", "none"], key="train_study_weights",
                                     help="ImageNet weights must be in ~/.keras/models on a machine without internet access.")
    else:
        # The encoder chosen decides which model settings apply (its widget's state holds it before it is drawn).
        pretrained = encoders.get(st.session_state.get(BY_PATH["model.encoder"].key, values["model.encoder"])).pretrained
        if pretrained:  # a pretrained encoder is picked for its weights: the page starts there (the settings' "none" is the plain U-Net's)
            values["model.weights"] = "imagenet"
        all_runs = runs_mod.list_runs(ws)
        labels = _ui.run_labels(all_runs)
        finished = [s.run_id for s in all_runs if s.state == "finished"]
        form.show(form.pick(SETTINGS, "model", pretrained=pretrained, exclude=() if finished else ("model.init_from_run",)),
                  values, overrides={"model.init_from_run": {"options": [None, *finished], "labels": labels}})

    st.markdown("**Training**")
    # None: TrainConfig.learning_rate None, which each run resolves from its encoder (the study's runs too).
    own = "each encoder's own (1e-3 from scratch, 1e-4 pretrained)" if study else \
        f"the encoder's own ({encoders.get(values['model.encoder']).learning_rate:g})"
    form.show(form.pick(SETTINGS, "train", exclude=("train.dataset",)), values, layout=TRAINING_ROWS,
              overrides={"train.learning_rate": {"none": own}})

    with st.expander("Augmentation and split"):
        form.show(form.pick(SETTINGS, "train.augment"), values)
        has_subsets = any(x.subset for x in info.samples)
        form.show(form.pick(SETTINGS, "train.split"), values,
                  overrides={"train.split.method": {"options": ["random", "subset"] if has_subsets else ["random"]}})
        split_method = values["train.split.method"]
        note = viz.subset_split_note(info.samples) if split_method == "subset" else None
        if note:
            st.warning(note)

    with st.expander("Advanced settings"):
        advanced = [d for section in ("model", "train", "train.augment", "train.split")
                    for d in form.pick(SETTINGS, section, advanced=True, pretrained=pretrained)
                    if not (study and section == "model")]
        form.show(advanced, values)
    form.follow(SETTINGS, values)

    # Every setting is checked when the settings are built: a bad combination is shown here, not queued.
    try:
        cfg, cfg_error = None, None
        cfg = build(RunConfig, values)
        if study:  # every run of the study is built and checked here, before any is queued
            sweep.study_configs(cfg, weights=study_weights)
    except ValueError as exc:
        cfg, cfg_error = None, str(exc)
    label = "Queue the study" if study else "Queue this run"
    if cfg_error:
        st.error(f"These settings cannot train: {markdown_text(cfg_error)}")
    if st.button(label, type="primary", key="train_launch", **_ui.permit("launch", disabled=cfg is None)):
        with _ui.friendly_errors("queue the run"):
            extra = None
            if plan is not None and not study:
                from segcore.training.plan import changes

                record = plan.to_dict()
                record["changed"] = changes(record, cfg)
                record["used"] = st.session_state.get("train_plan_used") == info.name
                extra = {"plan": record}
            launched = launch_study(cfg, ws, study_weights) if study else run_queue.launch(cfg, ws, extra=extra, actor=_ui.actor())
            ids = list(launched) if isinstance(launched, (list, tuple)) else [launched]
            st.session_state["train_launched"] = ids
    if st.session_state.get("train_launched"):
        ids = st.session_state["train_launched"]
        labels = _ui.run_labels(runs_mod.list_runs(ws))
        st.success(f"Queued {len(ids)} run(s): {', '.join(_ui.code_text(labels.get(i, i)) for i in ids)}. "
                   "Training runs in its own process; you can leave this page.")
        for note in st.session_state.get("train_study_notes") or []:
            st.caption(markdown_text(note))
    with st.expander("The settings as saved in the run's config.json"):
        st.json(cfg.to_dict() if cfg is not None else {}, expanded=False)

# --------------------------------------------------------------------------- live progress

st.subheader("Queue and progress")


@st.fragment(run_every=2)
def live() -> None:
    summaries = runs_mod.list_runs(ws)
    labels = _ui.run_labels(summaries)
    active = [s for s in summaries if s.state in runs_mod.ACTIVE_STATES]
    recent = [s for s in summaries if s.state not in runs_mod.ACTIVE_STATES][:3]
    if not active and not recent:
        st.info("Nothing queued. Set up a run above and press **Queue this run**; its progress appears here by itself.")
        return
    queued = [r.run_id for r in runs_mod.queued_runs(ws)]
    if queued:
        queue_panel(queued, {s.run_id: s for s in summaries}, labels)
    running = [x for x in active if x.state == "running"]
    # Full panels (progress and curves) for running runs and the run that ended last;
    # one line for the other recent ones.
    panels = running + recent[:1]
    if any(runs_mod.RunFolder(s.path).history_path.is_file() for s in panels):
        smoothing, log_y = _ui.curve_options("train_curves")
    else:
        smoothing, log_y = 0.0, False
    for s in panels:
        run_panel(s, labels, smoothing, log_y)
    if recent and recent[0].state == "finished":
        _ui.what_next(recent[0], summaries, key="train")
    for s in recent[1:]:
        best = "" if s.best_val_dice is None else f", best val Dice {s.best_val_dice:.3f}"
        detail = "" if s.state == "finished" or not s.message else f" ({s.message})"
        done = f" after {s.epoch}/{s.epochs} epochs" if s.epoch else ""  # "stopped after 0/2 epochs" says nothing
        st.caption(f"{markdown_text(labels[s.run_id])}: {s.state}{done}{best}{markdown_text(detail)}.")
    if recent or running:
        st.page_link("app_pages/runs.py", label="Every run, with notes and downloads, is on the Runs page", icon=":material/table_chart:")


def queue_panel(queued: list[str], by_id: dict, labels: dict) -> None:
    """The waiting runs, front first, each with Cancel and Move up."""
    with st.container(border=True, key="queue_panel"):
        st.markdown(f"**Waiting in the queue** ({len(queued)}; the first starts when the running one ends)")
        for place, run_id in enumerate(queued, start=1):
            s = by_id.get(run_id)
            row = st.columns([5, 1, 1], vertical_alignment="center")
            row[0].markdown(f"{place}. **{markdown_text(labels.get(run_id, run_id))}** · {markdown_text(s.model) if s else ''} on {markdown_text(s.dataset) if s else ''}")
            owner = runs_mod.RunFolder(s.path).owner() if s else None
            if row[1].button("Move up", key=f"up_{run_id}", icon=":material/arrow_upward:", **_ui.permit("reorder", owner, disabled=place == 1)):
                with _ui.friendly_errors("move the run up"):
                    runs_mod.move_up(run_id, ws, actor=_ui.actor())
                    st.rerun()
            if row[2].button("Cancel", key=f"cancel_{run_id}", icon=":material/close:",
                             **_ui.permit("stop", owner, help="Takes it out of the queue (it shows as stopped; Resume queues it again).")):
                with _ui.friendly_errors("cancel the run"):
                    run_queue.stop(run_id, ws, actor=_ui.actor())
                    st.rerun()


def run_panel(s, labels: dict, smoothing: float = 0.0, log_y: bool = False) -> None:
    run = runs_mod.RunFolder(s.path)
    owner = run.owner()
    status = run.true_status()
    with st.container(border=True):
        c = st.columns([4, 1])
        stopping = s.state == "running" and run.stop_requested()
        state = "stopping after the current batch" if stopping else s.state
        c[0].markdown(f"**{markdown_text(labels.get(s.run_id, s.run_id))}** · {markdown_text(s.model)} on {markdown_text(s.dataset)} · **{state}**")
        if s.state == "running" and not stopping and c[1].button(
                "Stop", key=f"stop_{s.run_id}",
                **_ui.permit("stop", owner, help="Stops after the current batch; resume continues from the last checkpoint.")):
            with _ui.friendly_errors("stop the run"):
                run_queue.stop(s.run_id, ws, actor=_ui.actor())
                st.rerun()
        if s.state in runs_mod.RESUMABLE_STATES:
            if c[1].button("Resume", key=f"resume_{s.run_id}", **_ui.permit("resume", owner)):
                with _ui.friendly_errors("resume the run"):
                    run_queue.resume(s.run_id, ws, actor=_ui.actor())
                    st.rerun()
        epochs = max(int(status.get("epochs") or s.epochs or 1), 1)
        epoch = int(status.get("epoch") or 0)
        batch, batches = status.get("batch"), status.get("batches")
        frac = epoch / epochs
        if batch is not None and batches and s.state == "running":
            frac = min(1.0, (epoch + float(batch) / float(batches)) / epochs)
        # Before its first batch a run says what it is doing instead (the message: building, compiling, first batch).
        text = f"epoch {epoch}/{epochs}" + (f", batch {batch}/{batches}" if batch and batches else "")
        st.progress(min(max(frac, 0.0), 1.0), text=text + (f" · {status.get('message')}" if status.get("message") else ""))
        pace = run_review.run_pace(run).text()
        if pace:
            st.caption(f":material/timer: {pace}")
        for w in status.get("warnings") or []:
            st.warning(markdown_text(w))
        for name, reason in s.damage.items():
            st.error(markdown_text(f"{name} is damaged: {reason}"))
        history = _ui.readable(run.read_history, [])
        if history:
            curves = {labels.get(s.run_id, s.run_id): history}
            metrics = [m for m in viz.curve_metrics(curves) if m in ("loss", "dice")]
            cols = st.columns(2)
            for col, metric in zip(cols, metrics):
                col.plotly_chart(viz.curves_figure(curves, metric, f"{_ui.metric_label(metric)}: solid = training, dashed = validation",
                                                   smoothing=smoothing, log_y=log_y),
                                 key=f"curve_{s.run_id}_{metric}")
        elif s.state == "running":
            st.caption("The first epoch is under way; curves appear when it ends.")


live()

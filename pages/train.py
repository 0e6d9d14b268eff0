"""Train: set up a run (or the encoder study), queue it, and watch the queue and the running run live."""

from __future__ import annotations

import streamlit as st

import segcore.training as training
from pages import _ui
from segcore import run_review
from segcore import runs as runs_mod
from segcore import visualize as viz
from segcore.config import (  # the settings' own lists and defaults; no Keras import
    ACTIVATIONS, DEPTHS, ENCODERS, FITS, FREEZE_MODES, LOSS_HELP, LOSSES, LR_SCHEDULES, NORMS, OPTIMIZERS, UPSAMPLING,
    AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig,
)
from segcore.labels import Labels
from segcore.models import encoders
from segcore.safetext import markdown_text
from segcore.training import sweep
M, T = ModelConfig(), TrainConfig()  # the defaults every widget starts from
STUDY = "The paper's encoder study: plain U-Net, VGG16 frozen, VGG16 fine-tuned (frozen for the first half of the epochs), DenseNet121, ResNet50, MobileNetV2"

ws = _ui.workspace()
st.title("Train")
if (launching := _ui.permit("launch"))["disabled"]:
    st.info(f"{launching['help']} The settings and the plan can still be looked at.")


def launch_study(cfg, ws, weights):
    """Queue the paper's set with these shared settings and encoder ``weights``; returns the run ids."""
    record = sweep.queue_sweep(cfg, ws, weights=weights, actor=_ui.actor())
    st.session_state["train_study_notes"] = record.get("notes", [])
    return [r["run_id"] for r in record["runs"]]


# The widgets a plan sets, by setting (the plan's values go into their session state).
PLAN_WIDGETS = {
    "train.fit": "train_fit", "train.image_size": "train_size", "train.batch_size": "train_batch", "train.epochs": "train_epochs",
    "model.norm": "train_norm", "train.loss": "train_loss", "train.lr_schedule": "train_lr_schedule",
    "train.early_stopping_patience": "train_patience", "train.augment.rotate_degrees": "train_rotate",
    "train.augment.zoom": "train_zoom", "train.budget_minutes": "train_budget", "train.patches_per_image": "train_patches",
    "train.tta": "train_tta",
}


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
        key = PLAN_WIDGETS.get(p.setting)
        if key:
            st.session_state[key] = float(p.value) if key in ("train_rotate", "train_zoom", "train_budget") else p.value
    st.session_state["train_plan_used"] = plan.fingerprint.name


infos = _ui.datasets(ws)
if not infos:
    st.info("There is no dataset to train on yet. Import one on the **Data** page first.")
    st.page_link("pages/data.py", label="Go to Data", icon=":material/photo_library:")
    st.stop()

# --------------------------------------------------------------------------- the form

with st.container(border=True):
    st.subheader("New run")
    c = st.columns([2, 2, 2])
    names = [i.name for i in infos]
    _ui.from_url("train_dataset", "dataset", names, fallback=st.session_state.get("dataset", "demo"))
    chosen_name = c[0].selectbox("Dataset", names, key="train_dataset", **_ui.url_sync("dataset", "train_dataset"))
    _ui.to_url("dataset", "train_dataset")
    info = infos[names.index(chosen_name)]
    name = c[1].text_input("Run name (optional)", key="train_name", placeholder="e.g. baseline")
    tags = c[2].text_input("Tags (comma separated)", key="train_tags", placeholder="e.g. depth-study")
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
    if study:
        st.info(STUDY + ". Every model trains on the same data and split, one after the other; the Runs page lists them as one study.")
        encoder, weights = "none", "none"  # the shared settings; each encoder gets study_weights
        study_weights = st.selectbox("Encoder weights", ["imagenet", "none"], key="train_study_weights",
                                     help="ImageNet weights must be in ~/.keras/models on a machine without internet access.")
        depth, filters, dropout, activation, norm, upsampling = M.depth, M.filters, M.dropout, M.activation, M.norm, M.upsampling
        freeze, fine_tune_after = M.freeze, M.fine_tune_after
    else:
        c = st.columns(4)
        encoder = c[0].selectbox("Encoder", ENCODERS, key="train_encoder",
                                 format_func=lambda e: encoders.get(e).label)
        if not encoders.get(encoder).pretrained:
            depth = c[1].select_slider("Depth", DEPTHS, M.depth, key="train_depth")
            filters = c[2].select_slider("Base filters", sorted({8, 16, 32, 64, M.filters}), M.filters, key="train_filters")
            dropout = c[3].slider("Dropout", 0.0, 0.5, M.dropout, 0.05, key="train_dropout")
            c = st.columns(3)
            activation = c[0].selectbox("Activation", ACTIVATIONS, ACTIVATIONS.index(M.activation), key="train_activation")
            upsampling = c[1].selectbox("Decoder upsampling", UPSAMPLING, UPSAMPLING.index(M.upsampling), key="train_upsampling",
                                        format_func={"transpose": "transposed convolution", "upsample": "upsampling + convolution"}.get)
            norm = c[2].selectbox(
                "Normalisation", NORMS, NORMS.index(M.norm), key="train_norm",
                format_func={"group": "group norm (safe with few images)", "batch": "batch norm (needs many steps)", "none": "none"}.get,
                help="Batch norm predicts with moving averages that need many training steps to settle; on a few dozen "
                "images group norm (or none) trains and predicts alike. The health check says when batch norm lags.",
            )
            weights, freeze, fine_tune_after = "none", "trainable", M.fine_tune_after
        else:
            weights = c[1].selectbox("Weights", ["imagenet", "none", "a file…"], key="train_weights")
            if weights == "a file…":
                weights = st.text_input("Weights file on the server (.h5 of the encoder without top)", key="train_weights_file")
            freeze = c[2].selectbox("Encoder layers", FREEZE_MODES, key="train_freeze",
                                    format_func={"trainable": "trainable", "frozen": "frozen", "fine_tune": "frozen, then fine-tuned"}.get)
            fine_tune_after = c[3].number_input("Fine-tune after epoch", 0, 500, 5, key="train_ft_after", disabled=freeze != "fine_tune")
            depth, filters, dropout, activation, upsampling = M.depth, M.filters, M.dropout, M.activation, M.upsampling
            norm = st.selectbox("Decoder normalisation", NORMS, NORMS.index(M.norm), key="train_norm_dec",
                                help="In the decoder blocks; the pretrained encoder keeps its own.")
    init_from = None
    if not study:
        all_runs = runs_mod.list_runs(ws)
        labels = _ui.run_labels(all_runs)
        finished = [s.run_id for s in all_runs if s.state == "finished"]
        if finished:
            # "" stands for "none": a selectbox whose value is None shows "Choose an option" instead of it.
            init_from = st.selectbox("Start from the weights of an earlier run (layers matched by name and shape; the head is new)",
                                     [""] + finished, key="train_init_from",
                                     format_func=lambda r: "no: random initialisation" if not r else labels.get(r, r)) or None

    st.markdown("**Training**")
    c = st.columns([3, 1, 1])
    loss = c[0].selectbox("Loss", LOSSES, LOSSES.index(T.loss), key="train_loss", format_func=lambda n: f"{n}: {LOSS_HELP.get(n, '')}",
                          help="What training minimises. Dice-based losses cope best with small objects.")
    optimizer = c[1].selectbox("Optimiser", OPTIMIZERS, OPTIMIZERS.index(T.optimizer), key="train_optimizer")
    lr_schedule = c[2].selectbox("LR schedule", LR_SCHEDULES, LR_SCHEDULES.index(T.lr_schedule), key="train_lr_schedule",
                                 help="Learning-rate schedule: how the learning rate changes over the epochs; none keeps it constant.")
    c = st.columns([2, 1, 1, 1.5])
    # "own": TrainConfig.learning_rate None, which each run resolves from its encoder (the study's runs too).
    own = "each encoder's own (1e-3 from scratch, 1e-4 pretrained)" if study else \
        f"the encoder's own ({encoders.get(encoder).learning_rate:g})"
    # "own" stands for None (a selectbox whose value is None shows "Choose an option" instead of it).
    learning_rate = c[0].selectbox(
        "Learning rate", list(dict.fromkeys(["own" if T.learning_rate is None else T.learning_rate, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2])),
        key="train_lr", format_func=lambda v: own if v == "own" else f"{v:g}",
        help="Step size of the optimiser: 1e-4 suits pretrained encoders, 1e-3 small models trained from scratch.")
    learning_rate = None if learning_rate == "own" else learning_rate
    patience = c[1].number_input("Patience", 0, 200, T.early_stopping_patience, key="train_patience",
                                 help="Early stopping: epochs without a lower validation loss before training stops; 0 = never stop early.")
    seed = c[2].number_input("Seed", 0, 2**31 - 1, T.seed, key="train_seed", help="Same seed and settings: same split, same augmentation, same starting weights.")
    class_weighting = c[3].toggle("Class weighting", T.class_weighting, key="train_class_weights", help="Weight the loss by inverse class frequency (helps rare classes).")
    c = st.columns([1, 1, 1])
    budget = c[0].number_input("Time budget (min)", 0.0, 10080.0, 0.0, 1.0, key="train_budget",
                               help="Train for this long (0: no budget, the epochs decide). The run fits as many epochs as the "
                                    "machine allows, at most the epochs above, and a cosine schedule ends with the budget.")
    patches = c[1].number_input("Windows per image", 1, 64, T.patches_per_image, key="train_patches",
                                help="Random windows of each training image an epoch (when images are larger than the window).")
    tta = c[2].toggle("Test-time flips", T.tta, key="train_tta",
                      help="Evaluate and predict on the image and its three flips, averaged (4x the inference time).")
    c = st.columns([1, 1, 2])
    epochs = c[0].number_input("Epochs", 1, 1000, T.epochs, key="train_epochs", help="Passes over the training images.")
    batch_size = c[1].number_input("Batch size", 1, 256, T.batch_size, key="train_batch", help="Images per training step; lower it if memory runs out.")
    image_size = c[2].select_slider("Image size (px)", sorted({32, 64, 96, 128, 160, 192, 224, 256, 384, 512, T.image_size}),
                                    T.image_size, key="train_size",
                                    help="The model's square window; bigger is slower.")
    fit = st.radio(
        "Image shape", FITS, FITS.index(T.fit), horizontal=True, key="train_fit",
        format_func={"short_side": "keep the aspect ratio (random windows in training, tiles in prediction)",
                     "squash": "squash to the square size",
                     "native": "own resolution (patches of the image size in training, tiles in prediction)"}.get,
        help="Keeping the aspect ratio scales each image so its shorter side is the image size; nothing is stretched. "
             "Own resolution never scales: thin structures keep their pixels.",
    )

    with st.expander("Augmentation and split"):
        d = AugmentConfig()
        c = st.columns(4)
        aug_on = c[0].toggle("Augment training images", d.enabled, key="train_aug")
        hflip = c[1].checkbox("Horizontal flips", d.hflip, key="train_hflip", disabled=not aug_on)
        vflip = c[2].checkbox("Vertical flips", d.vflip, key="train_vflip", disabled=not aug_on)
        rotate = c[3].slider("Rotation (°)", 0.0, 90.0, d.rotate_degrees, 5.0, key="train_rotate", disabled=not aug_on)
        c = st.columns(4)
        zoom = c[0].slider("Zoom", 0.0, 0.5, d.zoom, 0.05, key="train_zoom", disabled=not aug_on)
        shift = c[1].slider("Shift", 0.0, 0.3, d.shift, 0.05, key="train_shift", disabled=not aug_on)
        brightness = c[2].slider("Brightness", 0.0, 0.5, d.brightness, 0.05, key="train_brightness", disabled=not aug_on)
        contrast = c[3].slider("Contrast", 0.0, 0.5, d.contrast, 0.05, key="train_contrast", disabled=not aug_on)
        s = SplitConfig()
        c = st.columns(3)
        has_subsets = any(x.subset for x in info.samples)
        split_method = c[0].selectbox("Split", ["random", "subset"] if has_subsets else ["random"], key="train_split",
                                      help="'subset' keeps the dataset's own train/test folders.")
        val_fraction = c[1].slider("Validation fraction", 0.05, 0.5, s.val_fraction, 0.05, key="train_val")
        test_fraction = c[2].slider("Test fraction", 0.0, 0.5, s.test_fraction, 0.05, key="train_test",
                                    disabled=split_method == "subset", help="Not used by 'subset': its test images are the dataset's test folder.")
        note = viz.subset_split_note(info.samples) if split_method == "subset" else None
        if note:
            st.warning(note)

    # Every setting is checked when the settings are built: a bad combination is shown here, not queued.
    try:
        cfg, cfg_error = None, None
        cfg = RunConfig(
            model=ModelConfig(
                encoder=encoder, depth=int(depth), filters=int(filters), dropout=float(dropout), activation=activation,
                norm=norm, upsampling=upsampling, weights=weights or "none", freeze=freeze,
                fine_tune_after=int(fine_tune_after), init_from_run=init_from,
            ),
            train=TrainConfig(
                dataset=info.name, image_size=int(image_size), fit=fit, epochs=int(epochs), batch_size=int(batch_size),
                optimizer=optimizer, learning_rate=learning_rate, lr_schedule=lr_schedule, loss=loss, class_weighting=bool(class_weighting),
                early_stopping_patience=int(patience), seed=int(seed), tta=bool(tta), patches_per_image=int(patches),
                budget_minutes=float(budget) if budget else None,
                augment=AugmentConfig(aug_on, hflip, vflip, rotate, zoom, shift, brightness, contrast),
                split=SplitConfig(method=split_method, val_fraction=val_fraction, test_fraction=test_fraction, seed=int(seed)),
            ),
            name=name.strip(),
            tags=tuple(t.strip() for t in tags.split(",") if t.strip()),
        )
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
            launched = launch_study(cfg, ws, study_weights) if study else training.launch(cfg, ws, extra=extra, actor=_ui.actor())
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
    active = [s for s in summaries if s.state in ("queued", "running")]
    recent = [s for s in summaries if s.state not in ("queued", "running")][:3]
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
        st.page_link("pages/runs.py", label="Every run, with notes and downloads, is on the Runs page", icon=":material/table_chart:")


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
                    training.stop(run_id, ws, actor=_ui.actor())
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
                training.stop(s.run_id, ws, actor=_ui.actor())
                st.rerun()
        if s.state in ("stopped", "interrupted", "failed", "damaged"):
            if c[1].button("Resume", key=f"resume_{s.run_id}", **_ui.permit("resume", owner)):
                with _ui.friendly_errors("resume the run"):
                    training.resume(s.run_id, ws, actor=_ui.actor())
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

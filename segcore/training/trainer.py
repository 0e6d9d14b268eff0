"""The trainer: one run, from its folder's config to its evaluation.

``train_run(run)`` is what the training process executes (see
``segcore.queue.process``). It is backend-agnostic Keras: ``model.fit`` over a
``keras.utils.PyDataset`` of in-memory arrays with joint augmentation. It
resumes from ``checkpoints/last.keras`` when the folder has one, so a run
killed mid-epoch loses at most that epoch.

The trainer reads the run folder once, at the start (settings, and on resume
the checkpoint, ``state.json`` and ``history.csv``); from then on it keeps
everything in memory and only writes: status through a ``LiveStatus``, the
history, checkpoints and ``state.json`` whole at every epoch end.

Resuming restores the weights and the optimizer state (moments and step
count) from ``last.keras``; with the batch order and augmentation depending
only on (seed, epoch), a stopped-and-resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np

from segcore.config import RunConfig
from segcore.data.arrays import load_arrays
from segcore.data.dataset import load_dataset
from segcore.evaluation import evaluate_run_model, summary_metrics
from segcore.prediction.predictor import predict_batches
from segcore.runs import LiveStatus, RunFolder
from segcore.training import health
from segcore.catalog.optim import make_optimizer, scheduled_lr
from segcore.training.pipeline import check_masks, class_frequencies, feed, make_batches, windows, without_autotune

log = logging.getLogger("segcore.training")

HEALTH_SAMPLES = 32  # validation images the per-epoch health check predicts
HEALTH_SHARE = 0.05  # beyond this share of an epoch's time (and a second), the health check runs every few epochs
HEALTH_FREE_S = 1.0  # a health check cheaper than this runs every epoch
STATUS_EVERY_S = 1.0  # batch progress is written at most this often


class StopRun(Exception):
    """Raised inside training to end the run with a given state and message."""

    def __init__(self, state: str, message: str):
        super().__init__(message)
        self.state = state
        self.message = message


# -- settings to Keras objects ---------------------------------------------------


# Losses whose cross-entropy term takes class weights, and what they become with them.
_WEIGHTED = {"dice_ce": "dice_ce", "cce": "weighted_cce", "bce": "weighted_cce", "weighted_cce": "weighted_cce"}


def make_loss(name: str, mode: str, num_classes: int, class_weights: np.ndarray | None):
    """The loss for ``name`` from ``segcore.losses`` (``"auto"`` picks Dice + cross-entropy).

    With class weights (``TrainConfig.class_weighting``) the cross-entropy
    term is weighted: ``auto``/``dice_ce`` keep their Dice term, ``cce`` and
    ``bce`` become ``weighted_cce``. Dice, Jaccard and focal keep their loss
    and ``class_weight_note`` says so.
    """
    from segcore import losses

    resolved = losses.resolve(name)
    if resolved == "weighted_cce" and class_weights is None:
        raise ValueError("loss 'weighted_cce' needs class weights: turn class_weighting on")
    if class_weights is not None and resolved in _WEIGHTED:
        return losses.get(_WEIGHTED[resolved], mode=mode, class_weights=[float(w) for w in class_weights])
    return losses.get(name, mode=mode)


def class_weight_note(name: str, mode: str) -> str | None:
    """Why class weighting has no effect for this loss, or None when it applies."""
    from segcore import losses

    if losses.resolve(name) not in _WEIGHTED:
        return f"class weighting applies to losses with a cross-entropy term; loss {name!r} is unweighted"
    return None


def make_metrics(mode: str, num_classes: int, include_background: bool = False) -> list:
    """Keras metrics ``dice`` and ``iou`` (mean over the scored classes, void excluded) and ``dice_<k>`` per class.

    ``include_background``: class 0 is a real class, counted in the means.
    """
    from segcore import metrics

    return metrics.segmentation_metrics(mode, num_classes, include_background=include_background)


def batch_norm_layers(model) -> list:
    """The batch-normalisation layers of a model, nested models included."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += batch_norm_layers(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


def predict_with_batch_stats(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities with batch statistics (training mode), leaving the moving averages as they were."""
    import keras

    layers = batch_norm_layers(model)
    saved = [(v, np.array(v.numpy())) for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
    try:
        out = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].astype(np.float32)
            out.append(np.asarray(keras.ops.convert_to_numpy(model(batch, training=True)), dtype=np.float32))
        return np.concatenate(out)
    finally:
        for var, value in saved:
            var.assign(value)


def compute_class_weights(masks: np.ndarray, mode: str, num_classes: int) -> np.ndarray:
    """Class weights (K values) from the training masks' pixel frequencies: the square root of the inverse
    frequency, capped at 50 (see ``losses.class_weights_from_frequencies``)."""
    from segcore import losses

    freqs = class_frequencies(masks, mode, num_classes)
    return np.asarray(losses.class_weights_from_frequencies(freqs, method="sqrt", max_weight=50.0), dtype=np.float64)


# -- the per-run callback ----------------------------------------------------------


def _callback_base():
    import keras

    return keras.callbacks.Callback


def make_run_callback(trainer: "Trainer"):
    """The Keras callback that reports progress, stops, checkpoints and checks health."""
    base = _callback_base()

    class RunCallback(base):
        def __init__(self):
            super().__init__()
            self.t = trainer
            self._last_status = 0.0
            self._epoch_start = 0.0
            self.partial_epoch = False
            self.batches_done = 0  # in this process: the first batch compiles the training step
            self._epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.partial_epoch = False
            self._epoch = epoch
            self._epoch_start = time.time()
            self._validation = 0.0
            if self.t.train_batches is not None:
                self.t.train_batches.epoch = epoch  # the batch order and augmentation of this epoch
            lr = self.t.lr_for_epoch(epoch)
            _set_lr(self.model, lr)
            message, phase = f"epoch {epoch + 1}/{self.t.epochs}", "training"
            if self.batches_done == 0:  # tens of seconds with no batch done: say why
                message, phase = "first batch: the training step is compiled on it, the slowest step", "first batch"
            self.t.status.update(epoch=epoch, batch=0, batches=self.t.steps_per_epoch, message=message, phase=phase)

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            first = self.batches_done == 0
            self.batches_done += 1
            loss = logs.get("loss")
            if loss is not None and not health.is_finite(loss):
                self.t.failure = health.nan_message(
                    float(loss), self.t.current_epoch + 1, batch + 1, self.t.current_lr, self.t.cfg.train.loss
                )
                self.model.stop_training = True
                self.partial_epoch = True
                return
            if self.t.run.stop_requested():
                self.t.stopped = True
                self.model.stop_training = True
                self.partial_epoch = batch + 1 < self.t.steps_per_epoch
                return
            now = time.time()
            if first or now - self._last_status >= STATUS_EVERY_S:
                self._last_status = now
                fields = {"batch": batch + 1, "heartbeat": now}
                if first:
                    fields.update(message=f"epoch {self._epoch + 1}/{self.t.epochs}", phase="training")
                if loss is not None:
                    fields["batch_loss"] = float(loss) * getattr(self.t, "loss_scale", 1.0)
                self.t.status.update(**fields)

        def on_test_begin(self, logs=None):
            self._test_start = time.time()

        def on_test_end(self, logs=None):
            self._validation += time.time() - getattr(self, "_test_start", time.time())

        def on_epoch_end(self, epoch, logs=None):
            if self.partial_epoch:
                return  # an interrupted epoch is not a finished one: nothing is saved
            self.t.end_epoch(self.model, epoch, dict(logs or {}), time.time() - self._epoch_start,
                             validation_seconds=self._validation)

    return RunCallback()


def _set_lr(model, lr: float) -> None:
    opt = model.optimizer
    inner = getattr(opt, "inner_optimizer", None) or opt  # LossScaleOptimizer under mixed float16
    try:
        inner.learning_rate.assign(lr)
    except AttributeError:
        inner.learning_rate = lr


def save_model_atomic(model, path) -> None:
    """Save a ``.keras`` file through a temporary name and a rename."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)  # a full disk or an interrupted save leaves no half file behind
        raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def link_atomic(source, target) -> None:
    """Give ``source``'s file the name ``target`` too (a hard link, or a copy where links fail), atomically."""
    source, target = os.fspath(source), os.fspath(target)
    tmp = os.path.join(os.path.dirname(target), f".tmp-{os.getpid()}-{os.path.basename(target)}")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            import shutil

            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def health_sample_count(available: int, batch_size: int) -> int:
    """Validation images the per-epoch health check predicts: up to ``HEALTH_SAMPLES``, whole batches only.

    Whole batches keep the compiled prediction step at one shape.
    """
    n = min(HEALTH_SAMPLES, available)
    batch = max(1, min(batch_size, n))
    return max(batch, (n // batch) * batch)


# -- the trainer -----------------------------------------------------------------


class Trainer:
    """Trains one run in its folder. Use ``train_run(run)``."""

    def __init__(self, run: RunFolder, status: LiveStatus | None = None):
        self.run = run
        self.record = run.read_record()
        self.cfg: RunConfig = self.record.config
        self.status = status or LiveStatus(run, run.read_status())
        self.epochs = int(self.cfg.train.epochs)
        self.failure: str | None = None
        self.stopped = False
        self.state: dict[str, Any] = {}
        self.current_epoch = 0
        self.current_lr = self.cfg.learning_rate
        self.base_lr = self.cfg.learning_rate
        self.steps_per_epoch = 0
        self.train_batches = None  # the training batches when fed as tf.data: their epoch is set at every epoch start
        self.replicas = 1  # devices the model is trained on (a distribution's replicas)
        self.history: list[dict[str, Any]] = []
        self.health_missing: dict[str, int] = {}
        self.setup_warnings: list[str] = []

    # -- data ----------------------------------------------------------------
    def load_data(self) -> None:
        t = self.cfg.train
        from segcore.workspace import get_workspace

        self.dataset = load_dataset(t.dataset, get_workspace(self.run.workspace_root))
        info = self.dataset.info
        recorded = self.record.dataset.content_hash
        if recorded and info.content_hash and recorded != info.content_hash:
            self.setup_warnings.append(
                f"dataset {t.dataset!r} changed since the run was created (content hash {info.content_hash[:12]}, "
                f"was {recorded[:12]}); results may differ"
            )
        self.mode, self.class_names = info.mode, info.class_names
        self.include_background = info.include_background
        self.num_classes = info.num_classes
        self.channels = info.channels
        split = self.record.split
        if not split.get("train"):
            raise ValueError(f"run {self.run.run_id} has no training samples in its split")
        size = t.image_size
        from segcore.data.arrays import fitted_size

        self.fit = t.fit
        log.info("loading %d train, %d val, %d test samples at %dx%d (%s)", len(split["train"]), len(split["val"]), len(split["test"]), size, size, t.fit)
        self.train_x, self.train_m = load_arrays(self.dataset, split["train"], size, fit=t.fit)
        regions = lambda ids: np.array([fitted_size(self.dataset.sample(i).height, self.dataset.sample(i).width, size, t.fit) for i in ids], np.int64).reshape(-1, 2)  # noqa: E731
        self.train_sizes = regions(split["train"])
        self.val_x, self.val_m = load_arrays(self.dataset, split["val"], size, fit=t.fit) if split["val"] else (None, None)
        if self.val_x is not None and self.val_x.shape[1:3] != (size, size):
            # Validation in windows of the model's size covering each image.
            self.val_x, self.val_m = windows(self.val_x, self.val_m, regions(split["val"]), size)
        self.test_ids = list(split["test"])
        shorter = [min(self.dataset.sample(i).height, self.dataset.sample(i).width) for i in split["train"]]
        self.run.update_meta(input={"fit": t.fit, "image_size": size, "reference_short_side": float(np.median(shorter))},
                             content=self._content(split))
        for name, masks in (("train", self.train_m), ("validation", self.val_m)):
            if masks is not None:
                check_masks(masks, self.mode, self.num_classes, where=f" of the {name} split")

    def _content(self, split: dict[str, list[str]]) -> dict[str, dict[str, str]]:
        """The pixel hashes of the training and validation images (an evaluation finds leaks by them)."""
        from segcore.data.dataset import pixel_hash

        def digest(sample_id: str) -> str:  # recorded at import; computed for datasets imported before that
            return self.dataset.sample(sample_id).pixel_sha256 or pixel_hash(self.dataset.image(sample_id))

        return {part: {i: digest(i) for i in split.get(part, [])} for part in ("train", "val")}

    # -- model ---------------------------------------------------------------
    def build(self) -> Any:
        from segcore.models import build_model

        m = self.cfg.model
        model = build_model(m, image_size=self.cfg.train.image_size, channels=self.channels, mode=self.mode, num_classes=self.num_classes)
        if m.init_from_run:
            from segcore.models.transfer import load_matching_weights
            from segcore.runs import open_run
            from segcore.workspace import get_workspace

            source = open_run(m.init_from_run, get_workspace(self.run.workspace_root))
            path = source.model_path
            if not path.is_file():
                raise FileNotFoundError(f"init_from_run {m.init_from_run!r} has no checkpoint ({path} is missing)")
            report = load_matching_weights(model, str(path))
            data = {**report.to_dict(), "source_run": source.run_id}
            self.run.write_transfer(data)
            log.info("transferred weights from %s: %s", source.run_id, {k: v for k, v in data.items() if not isinstance(v, list)})
        return model

    def compile(self, model, lr: float) -> None:
        t = self.cfg.train
        weights = None
        if t.class_weighting:
            note = class_weight_note(t.loss, self.mode)
            if note:
                if note not in self.setup_warnings:
                    self.setup_warnings.append(note)
            else:
                weights = compute_class_weights(self.train_m, self.mode, self.num_classes)
                self.state["class_weights"] = [float(w) for w in weights]
        model.compile(
            optimizer=make_optimizer(t.optimizer, lr),
            loss=make_loss(t.loss, self.mode, self.num_classes, weights),
            metrics=make_metrics(self.mode, self.num_classes, self.include_background),
            jit_compile=self.on_gpu,
        )
        self.current_lr = lr

    def _follow_budget(self, model, completed: int) -> None:
        """With a time budget: the epochs that still fit (never more than ``train.epochs``), and a stop at the last.

        Time is counted from the first step of training, over every process
        of the run (a resumed run adds to what the state recorded); the
        estimate of an epoch's time is the mean of the epochs so far, the
        first (which compiles) left out once there are others.
        """
        budget = self.cfg.train.budget_minutes
        if budget is None:
            return
        now = time.time()
        spent = float(self.state.get("budget_spent_s", 0.0)) + (now - getattr(self, "_budget_mark", self.fit_started))
        self._budget_mark = now
        self.state["budget_spent_s"] = round(spent, 3)
        times = self.state.setdefault("epoch_seconds", [])
        times.append(round(now - getattr(self, "_epoch_mark", self.fit_started), 3))
        self._epoch_mark = now
        typical = float(np.mean(times[1:] if len(times) > 1 else times))
        left = budget * 60.0 - spent
        fits = completed + max(0, int(left // max(typical, 1e-6)))
        self.epochs = max(completed, min(int(self.cfg.train.epochs), fits))
        self.state["planned_epochs"] = self.epochs
        if completed >= self.epochs and completed < int(self.cfg.train.epochs):
            model.stop_training = True
            self.state["budget_stopped"] = completed

    def lr_for_epoch(self, epoch: int) -> float:
        """The learning rate for 0-based ``epoch`` (schedule, plateau cuts, fine-tune factor)."""
        t = self.cfg.train
        base = self.base_lr * float(self.state.get("plateau_factor", 1.0))
        if self.state.get("fine_tuned"):
            base *= float(self.cfg.model.fine_tune_lr_factor)
        self.current_lr = scheduled_lr(t.lr_schedule, base, epoch, self.epochs)
        self.current_epoch = epoch
        return self.current_lr

    # -- epoch end: history, checkpoints, early stopping, health ------------------
    def _health_due(self, completed: int, row: dict[str, Any]) -> bool:
        """Whether the health check runs after this epoch.

        Every epoch while it is cheap (under ``HEALTH_FREE_S`` or ``HEALTH_SHARE``
        of the epoch). When it is not (large validation images on a CPU), every
        few epochs, so that it keeps to about that share: it repeats what
        validation already predicted, and its warnings can wait an epoch or
        two. It always runs when validation reported no Dice of its own (the
        check supplies it) and on the first epoch.
        """
        if "val_dice" not in row and "val_all_dice" not in row:
            return True
        last, cost = self.state.get("health_epoch"), self.state.get("health_seconds")
        if not last or cost is None or float(cost) <= HEALTH_FREE_S:
            return True
        every = math.ceil(float(cost) / max(HEALTH_SHARE * float(row.get("seconds") or 0.0), 1e-6))
        return completed - int(last) >= max(1, every)

    def end_epoch(self, model, epoch: int, logs: dict[str, Any], seconds: float, validation_seconds: float = 0.0) -> None:
        """History, health, checkpoints, early stopping and the budget after an epoch.

        The history row records where the epoch's time went: ``time_steps``
        (training batches), ``time_validation`` (Keras's validation pass),
        ``time_health`` (the health check's predictions), ``time_checkpoint``
        (saving ``last.keras``, linking ``best.keras``) and ``time_other``
        (everything else since the previous epoch ended: history and state
        files, status, callbacks, the input pipeline's start).
        """
        completed = epoch + 1
        mark = getattr(self, "_epoch_end_mark", None) or getattr(self, "fit_started", None) or (time.time() - seconds)
        scale = getattr(self, "loss_scale", 1.0)
        logs = {k: (v * scale if k in ("loss", "val_loss") and _is_number(v) else v) for k, v in logs.items()}
        val_loss = logs.get("val_loss")
        for key in ("loss", "val_loss"):
            if key in logs and not health.is_finite(logs[key]):
                self.failure = health.nan_message(float(logs[key]), completed, None, self.current_lr, self.cfg.train.loss)
                model.stop_training = True
                return
        row: dict[str, Any] = {"epoch": completed}
        row.update({k: float(v) for k, v in logs.items() if _is_number(v)})
        row["lr"] = self.current_lr
        row["seconds"] = round(seconds, 3)
        row["ended_at"] = round(time.time(), 3)  # wall clock: epoch-to-epoch time includes everything
        warnings: list[str] = []
        health_start = time.time()
        if self.val_x is not None and not self._health_due(completed, row):
            pass  # validation's own figures are in the row; the last check's health stands
        elif self.val_x is not None:
            since = completed - int(self.state.get("health_epoch") or 0)
            n = health_sample_count(len(self.val_x), int(self.cfg.train.batch_size))
            x = self.val_x[:n].astype(np.float32)
            if self.replicas > 1:
                # Under a distribution, predict_on_batch gives every replica's outputs (measured: 8 for 4
                # images on two devices); predict splits the batch, fed with the autotuner off (see feed).
                probs = _predict_split(model, x, min(int(self.cfg.train.batch_size), n))
            else:
                probs = predict_batches(model, x, min(int(self.cfg.train.batch_size), n))
            h = health.epoch_health(
                self.val_m[:n], probs, self.mode, self.class_names,
                include_background=self.include_background,
            )
            warnings = health.health_warnings(h, self.health_missing, completed, epochs_since=since)
            row["val_pixel_accuracy"] = h["pixel_accuracy"]
            if "val_dice" not in row and h["mean_dice"] is not None:
                row["val_dice"] = h["mean_dice"]
            bn = batch_norm_layers(model)
            if bn:
                # Batch norm predicts with moving averages: compare with batch statistics.
                stats = predict_with_batch_stats(model, x, int(self.cfg.train.batch_size))
                hb = health.epoch_health(
                    self.val_m[:n], stats, self.mode, self.class_names, include_background=self.include_background,
                )
                h["mean_dice_batch_stats"] = hb["mean_dice"]
                if hb["mean_dice"] is not None:
                    row["val_dice_batch_stats"] = hb["mean_dice"]
                gap = health.train_inference_gap(
                    h["mean_dice"], hb["mean_dice"], self.steps_per_epoch, float(bn[0].momentum), completed
                )
                if gap:
                    warnings.append(gap)
            self.last_health = h
            self.state["health_epoch"] = completed
            self.state["health_seconds"] = round(time.time() - health_start, 3)
        else:
            self.last_health = None
        health_timer = time.time() - health_start
        self.history = [r for r in self.history if int(r["epoch"]) < completed] + [row]
        # Best checkpoint by the headline, validation Dice over every class (training's when there is no
        # validation split); "dice" is that already when class 0 is a real class.
        score = next((row[k] for k in ("val_all_dice", "val_dice", "all_dice", "dice") if row.get(k) is not None), None)
        best = self.state.get("best_val_dice")
        improved = score is not None and (best is None or score > best)
        if improved:
            self.state["best_val_dice"] = float(score)
            self.state["best_epoch"] = completed
        # Early stopping on validation loss (patience counted in epochs, kept across resumes).
        monitor = val_loss if val_loss is not None else logs.get("loss")
        es_best = self.state.get("es_best_loss")
        if monitor is not None and (es_best is None or monitor < es_best - 1e-6):
            self.state["es_best_loss"] = float(monitor)
            self.state["es_wait"] = 0
        else:
            self.state["es_wait"] = int(self.state.get("es_wait", 0)) + 1
        if self.cfg.train.lr_schedule == "plateau" and self.state["es_wait"] > 0 and self.state["es_wait"] % 3 == 0:
            self.state["plateau_factor"] = float(self.state.get("plateau_factor", 1.0)) * 0.5
        patience = int(self.cfg.train.early_stopping_patience)
        if patience > 0 and self.state["es_wait"] >= patience:
            model.stop_training = True
            self.state["early_stopped"] = completed
        self._follow_budget(model, completed)
        self.state["epoch"] = completed
        self.state["health_missing"] = dict(self.health_missing)
        checkpoint_start = time.time()
        save_model_atomic(model, self.run.last_model_path)
        if improved:  # the same bytes: a second name for the file just written, not a second save
            link_atomic(self.run.last_model_path, self.run.best_model_path)
        now = time.time()
        row["time_steps"] = round(max(seconds - validation_seconds, 0.0), 3)
        row["time_validation"] = round(validation_seconds, 3)
        row["time_health"] = round(health_timer, 3)
        row["time_checkpoint"] = round(now - checkpoint_start, 3)
        row["time_other"] = round(max((now - mark) - seconds - health_timer - (now - checkpoint_start), 0.0), 3)
        self.run.write_history(self.history)
        self.run.write_train_state(self.state)  # the commit point: resume starts after this epoch
        status = {
            "epoch": completed,
            "epochs": self.epochs,  # a time budget changes the plan as it goes
            "batch": self.steps_per_epoch,
            "heartbeat": time.time(),
            "best": {"val_dice": self.state.get("best_val_dice"), "epoch": self.state.get("best_epoch")},
            "last": {k: v for k, v in row.items() if k != "epoch"},
            "warnings": self.setup_warnings + warnings,
            "message": f"epoch {completed}/{self.epochs} done",
        }
        if self.last_health is not None:
            status["health"] = self.last_health
        self.status.update(**status)
        log.info("epoch %d/%d %s", completed, self.epochs, {k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
        self._epoch_end_mark = time.time()

    # -- the whole run -----------------------------------------------------------
    def run_training(self) -> dict[str, Any]:
        import keras

        from segcore.training import device

        t = self.cfg.train
        dev = device.describe_device()
        self.on_gpu = dev["device"] == "gpu"
        self.gpus = list(dev["gpus"])
        policy, warning = device.resolve_precision(t.mixed_precision, self.on_gpu)
        if warning:
            self.setup_warnings.append(warning)
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(int(t.seed))
        env = dict(dev, requested_backend=t.backend, precision=policy, jit_compile=self.on_gpu,
                   versions=device.package_versions())
        self.run.update_meta(environment=env)
        self.status.update(message="loading data", phase="loading data", backend=dev["backend"], device=dev["device"])
        self.load_data()
        self.setup_warnings += health.check_setup(self.mode, self.num_classes, t.loss)
        resume_state = self.run.read_train_state() if self.run.last_model_path.is_file() else None
        if resume_state:
            self.run.checked_model_path("last")  # half a checkpoint: fail naming it, not with Keras's "File not found"
        fine_tune_at = int(self.cfg.model.fine_tune_after) if self.cfg.model.freeze == "fine_tune" else 0
        with device.distribution_scope(t.distribution, t.devices) as strategy:
            model = self._train_in_scope(strategy, resume_state, fine_tune_at)
        # Outside the distribution: the test split is predicted by a plain model (under a
        # MirroredStrategy, predict gave more outputs than images).
        return self._finish(model)

    def _train_in_scope(self, strategy, resume_state, fine_tune_at: int):
        """Build or resume the model and fit it, inside the distribution scope; returns the trained model."""
        from segcore.training import device

        t = self.cfg.train
        # Keras 3 on TensorFlow reports the loss of a MirroredStrategy step summed over the
        # replicas (measured: exactly 2x the one-device loss on two devices, with the same Dice);
        # the history and status keep the per-example mean of one device.
        replicas = self.replicas = device.replicas(strategy)
        self.loss_scale = 1.0 / replicas if t.distribution == "mirrored" and replicas > 1 else 1.0
        if resume_state:
            self.state = dict(resume_state)
            self.status.update(message="loading the last checkpoint", phase="building the model")
            model = self._resume_model()
            self.history = [r for r in self.run.read_history() if int(r["epoch"]) <= int(self.state["epoch"])]
            self.health_missing = dict(self.state.get("health_missing", {}))
            start = int(self.state["epoch"])
            if t.budget_minutes is not None and self.state.get("planned_epochs"):
                self.epochs = int(self.state["planned_epochs"])  # the schedule goes on where the budget left it
            log.info("resuming from epoch %d (checkpoint %s)", start, self.run.last_model_path)
            self.status.update(resumed_from=start)
        else:
            self.state = {"epoch": 0}
            self.status.update(message="building the model", phase="building the model")
            model = self.build()
            self.status.update(message="compiling the model", phase="compiling")
            self.compile(model, self.lr_for_epoch(0))
            start = 0
        health.check_setup(self.mode, self.num_classes, t.loss, int(model.output.shape[-1]))
        self.status.update(
            message="training", epoch=start, epochs=self.epochs, warnings=list(self.setup_warnings),
            replicas=replicas, params=int(model.count_params()), devices=device.device_label(self.gpus, replicas),
        )
        batch_size = int(t.batch_size) * replicas
        common = dict(batch_size=batch_size, mode=self.mode, num_classes=self.num_classes, seed=int(t.seed))
        if self.state.get("early_stopped") or self.state.get("budget_stopped") or start >= self.epochs:
            return model
        total = int(t.epochs)  # fit may run this far; a time budget stops it sooner (_follow_budget)
        train = make_batches(
            self.train_x, self.train_m, augment=t.augment, shuffle=True, epoch=start,
            crop=int(t.image_size), sizes=self.train_sizes, repeats=int(t.patches_per_image), **common,
        )
        val = None
        if self.val_x is not None:
            val = make_batches(self.val_x, self.val_m, augment=None, shuffle=False, **common)
        self.steps_per_epoch = len(train)
        train_data = feed(train)
        # Keras advances a PyDataset's epoch itself (its on_epoch_end); a fed tf.data pipeline
        # gets no such call, so the callback sets the epoch at every epoch start.
        self.train_batches = None if train_data is train else train
        callbacks = [make_run_callback(self)]
        tb, tb_note = _tensorboard(self.run)
        if tb is not None:
            callbacks.append(tb)
        else:
            log.warning("%s", tb_note)
        self.fit_started = time.time()
        self.status.update(training_started_at=self.fit_started)
        phases = []
        if fine_tune_at and start < fine_tune_at < total and not self.state.get("fine_tuned"):
            phases = [(start, fine_tune_at, False), (fine_tune_at, total, True)]
        else:
            phases = [(start, total, bool(fine_tune_at and start >= fine_tune_at))]
        for first, last, unfreeze in phases:
            if unfreeze and not self.state.get("fine_tuned"):
                from segcore.models import set_encoder_trainable

                set_encoder_trainable(model, True)
                self.state["fine_tuned"] = True
                self.compile(model, self.lr_for_epoch(first))
                log.info("fine-tuning the encoder from epoch %d at lr %g", first + 1, self.current_lr)
            # shuffle=False: the batches already come in a (seed, epoch) order; Keras's own shuffle of
            # the batch order draws from Python's global random state, which a resumed process does not share.
            model.fit(train_data, validation_data=None if val is None else feed(val), initial_epoch=first, epochs=last, callbacks=callbacks, verbose=0,
                      shuffle=False)
            if self.failure:
                raise StopRun("failed", self.failure)
            if self.stopped:
                done = int(self.state.get("epoch", 0))
                raise StopRun("stopped", f"stopped after {done} finished epoch(s); resume continues from epoch {done + 1}")
            if self.state.get("early_stopped") or self.state.get("budget_stopped"):
                break
        return model

    def train(self) -> dict[str, Any]:
        """Train to the end; returns the final status fields (state, message, test metrics)."""
        try:
            return self.run_training()
        except StopRun as stop:
            return {"state": stop.state, "message": stop.message}

    def _resume_model(self):
        import keras

        try:
            model = keras.models.load_model(self.run.last_model_path, compile=True)
            if model.optimizer is None:
                raise ValueError("checkpoint has no optimizer")
        except Exception as exc:  # an unloadable optimizer state: rebuild and restore the weights only
            note = (f"the optimizer state could not be restored from checkpoints/last.keras ({type(exc).__name__}: "
                    f"{str(exc)[:200]}); training went on from the weights with a fresh optimizer, so this run "
                    "differs from an uninterrupted one")
            log.warning(note)
            self.setup_warnings.append(note)
            model = self.build()
            if self.state.get("fine_tuned"):
                from segcore.models import set_encoder_trainable

                set_encoder_trainable(model, True)
            model.load_weights(self.run.last_model_path)
            self.compile(model, self.lr_for_epoch(int(self.state["epoch"])))
            return model
        return model

    def _finish(self, model) -> dict[str, Any]:
        """Evaluate the best model on the test split and cache its predictions."""
        import keras

        done = int(self.state.get("epoch", 0))
        if self.state.get("early_stopped"):
            message = f"early stopping after epoch {done}: validation loss did not improve for {self.cfg.train.early_stopping_patience} epochs"
        elif self.state.get("budget_stopped"):
            message = (f"time budget of {self.cfg.train.budget_minutes:g} min used after {done} epoch(s) "
                       f"({float(self.state.get('budget_spent_s', 0.0)):.0f} s of training)")
        else:
            message = f"finished {done} epoch(s)"
        best_path = self.run.model_path
        if self.test_ids:
            self.status.update(message="evaluating the test split")
            from segcore.prediction import Predictor

            evaluation = evaluate_run_model(self.run, Predictor.from_folder(self.run), self.dataset, self.test_ids,
                                            save_predictions=True)
            test = summary_metrics(evaluation.report)
        else:
            test = {}
            message += "; no test split, so no evaluation"
        return {"state": "finished", "message": message, "test": test}


def _tensorboard(run: RunFolder):
    """Keras's TensorBoard callback, or None with a reason when TensorBoard cannot write here.

    The callback writes through TensorFlow's summary API, so it needs the
    ``tensorflow`` and ``tensorboard`` packages whatever the Keras backend; a
    run on a JAX or PyTorch machine without them trains without those logs.
    """
    try:
        import tensorboard  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError as exc:
        return None, f"no TensorBoard logs for this run: they need TensorFlow and TensorBoard ({exc})"
    import keras

    return keras.callbacks.TensorBoard(log_dir=str(run.tensorboard_dir), write_graph=False, update_freq="epoch"), None


def _predict_split(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict``, which splits each batch across a distribution's replicas.

    On TensorFlow it is given a dataset of batches with tf.data's autotuner off: on arrays it builds an
    autotuned one, whose deletion waits for the autotuner's thread (seconds with the cores idle).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), np.float32)
    import tensorflow as tf

    data = without_autotune(tf.data.Dataset.from_tensor_slices(images).batch(batch_size))
    return np.asarray(model.predict(data, verbose=0), np.float32)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bool))


def train_run(run: RunFolder, status: LiveStatus | None = None) -> dict[str, Any]:
    """Train the run in ``run``'s folder to the end; returns the final status fields.

    Returns:
        ``{"state": "finished" | "failed" | "stopped", "message": ..., "test": {...}}``.
    """
    return Trainer(run, status).train()

"""Health checks that turn the usual segmentation debugging into messages.

- Before training: masks, head and loss agree (``check_setup``).
- While training: a NaN or infinite loss stops the run with a message naming
  the likely cause (``nan_message``); a class never predicted for several
  epochs (output collapsed to one class) and high pixel accuracy with low
  Dice ("accuracy is lying") become warnings (``epoch_health``); a model
  that predicts far better with batch statistics than in inference mode
  (batch-norm moving averages that have not caught up) is named
  (``train_inference_gap``).

Means over classes count class 0 only when it is a real class
(``include_background``, from the dataset's ``class0`` statement).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from segcore.evaluation.scores import degenerate_output
from segcore.labels import Labels, probs_to_mask

COLLAPSE_EPOCHS = 3  # a class missing from every prediction this many epochs in a row
LYING_ACCURACY = 0.9
LYING_DICE = 0.5

# Losses that cannot train a head: softmax cross-entropy on sigmoid planes.
_WRONG_FOR = {
    "binary": {"cce", "weighted_cce"},
    "multilabel": {"cce", "weighted_cce"},
    "multiclass": set(),
}


def check_setup(mode: str, num_classes: int, loss: str, model_outputs: int | None = None) -> list[str]:
    """Check that the masks' mode, the model head and the loss agree.

    Args:
        mode: the dataset's mode.
        num_classes: K, background included.
        loss: the loss name from the settings.
        model_outputs: the model's output channels, when already built.

    Returns:
        Warnings (an unusual but workable pairing).

    Raises:
        ValueError: a pairing that cannot train (a softmax loss on sigmoid
            planes, a head with the wrong number of channels).
    """
    from segcore.models import head_for

    activation, outputs = head_for(mode, num_classes)
    if model_outputs is not None and model_outputs != outputs:
        raise ValueError(
            f"the model has {model_outputs} output channels but a {mode} dataset with {num_classes} classes "
            f"needs {outputs} ({activation})"
        )
    if loss in _WRONG_FOR.get(mode, ()):
        raise ValueError(
            f"loss {loss!r} does not fit a {mode} dataset: its head is {activation} with {outputs} channel(s) "
            "and the loss needs softmax; use 'dice', 'bce', 'focal', 'dice_ce' or 'auto'"
        )
    from segcore import losses

    losses.resolve(loss)  # an unknown name raises, listing the valid ones
    warnings = []
    if mode == "multiclass" and loss == "bce":
        warnings.append("loss 'bce' on a softmax head treats each class as independent; 'cce' or 'dice_ce' fit better")
    return warnings


def nan_message(value: float, epoch: int, batch: int | None, learning_rate: float, loss: str) -> str:
    """The message for a run stopped by a NaN or infinite loss, naming the likely causes."""
    where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else "")
    causes = []
    if learning_rate >= 1e-2:
        causes.append(f"the learning rate {learning_rate:g} is far too high (try 1e-4)")
    else:
        causes.append(f"the learning rate {learning_rate:g} may be too high (try a tenth of it)")
    causes.append("bad inputs or labels (mask values outside the classes, empty or constant images)")
    causes.append(f"a numerically unstable loss ({loss!r}: log of 0 or division by an empty class)")
    return f"loss became {value} at {where}; likely causes: " + "; ".join(causes)


def is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def epoch_health(masks: np.ndarray, probs: np.ndarray, mode: str, class_names: Sequence[str], void: int = 255,
                 include_background: bool = False) -> dict[str, Any]:
    """Per-class true vs predicted pixel fractions, pixel accuracy and Dice, for every class.

    Args:
        masks: uint8 validation masks at training size (index or planes).
        probs: the model's probabilities for the same images.
        mode: the dataset's mode.
        class_names: the K class names.
        void: mask value not scored.
        include_background: class 0 is a real class, counted in the macro mean.

    Returns:
        ``{"pixel_accuracy", "mean_dice", "mean_foreground_dice", "all_dice",
        "true_fraction": {name: f}, "pred_fraction": {name: f}, "dice": {name: d}}``
        with every class (class 0 included; for multilabel, the planes 1..K-1).
        ``mean_dice`` is over the macro classes (1..K-1, or 0..K-1 with
        ``include_background``) present in the truth, ``mean_foreground_dice``
        the same number under its older name; ``all_dice`` is over every class
        present (the headline, which a near-constant model cannot win).
    """
    labels = Labels(mode, tuple(class_names), not include_background, void)
    pred = probs_to_mask(probs, mode)
    k = len(class_names)
    true_fraction, pred_fraction, dice = {}, {}, {}
    if mode == "multilabel":
        valid = ~np.any(masks == void, axis=-1)
        n = max(int(valid.sum()), 1)
        correct = 0
        for c in range(1, k):
            t = (masks[..., c - 1] == 1) & valid
            p = (pred[..., c - 1] == 1) & valid
            true_fraction[class_names[c]] = float(t.sum() / n)
            pred_fraction[class_names[c]] = float(p.sum() / n)
            dice[class_names[c]] = _dice(t, p)
            correct += int((t == p)[valid].sum())
        accuracy = correct / (n * max(k - 1, 1))
    else:
        valid = masks != void
        n = max(int(valid.sum()), 1)
        accuracy = float(((pred == masks) & valid).sum() / n)
        for c in range(k):
            t = (masks == c) & valid
            p = (pred == c) & valid
            true_fraction[class_names[c]] = float(t.sum() / n)
            pred_fraction[class_names[c]] = float(p.sum() / n)
            dice[class_names[c]] = _dice(t, p)
    scored = {class_names[c] for c in labels.scored}
    present = [dice[name] for name in dice if true_fraction[name] > 0 and name in scored]
    everything = [dice[name] for name in dice if true_fraction[name] > 0]
    mean = float(np.mean(present)) if present else None
    return {
        "pixel_accuracy": float(accuracy),
        "mean_dice": mean,
        "mean_foreground_dice": mean,
        "all_dice": float(np.mean(everything)) if everything else None,
        "class0": class_names[0] if class_names else "background",
        "include_background": labels.include_background,
        "true_fraction": true_fraction,
        "pred_fraction": pred_fraction,
        "dice": dice,
    }


def _dice(t: np.ndarray, p: np.ndarray) -> float:
    denom = int(t.sum()) + int(p.sum())
    return 1.0 if denom == 0 else float(2 * int((t & p).sum()) / denom)


def health_warnings(health: dict[str, Any], missing_epochs: dict[str, int], epoch: int, epochs_since: int = 1) -> list[str]:
    """Warnings for the latest epoch: collapsed classes, near-constant output and "accuracy is lying".

    Args:
        health: this epoch's ``epoch_health``.
        missing_epochs: class name (or a check's name) -> consecutive epochs it held
            (updated in place).
        epoch: completed epochs so far (1-based).
        epochs_since: epochs since the previous check (the check may skip
            epochs when it is costly): what a state that holds now adds.

    Returns:
        The warnings that hold now.
    """
    warnings = []
    for name, frac in health["true_fraction"].items():
        if frac > 0 and health["pred_fraction"].get(name, 0.0) == 0.0:
            missing_epochs[name] = missing_epochs.get(name, 0) + epochs_since
        else:
            missing_epochs[name] = 0
        if missing_epochs[name] >= COLLAPSE_EPOCHS:
            warnings.append(
                f"class '{name}' has not been predicted anywhere in the validation images for "
                f"{missing_epochs[name]} epochs ({_collapse_text(health, name)}): try the Dice or focal loss, "
                "class weighting, more epochs or a higher learning rate"
            )
    degenerate = [w for w in degenerate_output(health["true_fraction"], health["pred_fraction"], health["dice"])
                  if w.startswith("near-constant")]
    key = "(near-constant output)"
    missing_epochs[key] = missing_epochs.get(key, 0) + epochs_since if degenerate else 0
    if degenerate and missing_epochs[key] >= COLLAPSE_EPOCHS:
        warnings.append(f"{degenerate[0]} (for {missing_epochs[key]} epochs)")
    acc, dice = health["pixel_accuracy"], health.get("mean_dice", health.get("mean_foreground_dice"))
    if epoch >= 2 and dice is not None and acc >= LYING_ACCURACY and dice < LYING_DICE:
        if health.get("include_background"):
            what, why = "mean Dice", "a few large classes dominate the pixels"
        else:
            what, why = "mean foreground Dice", f"the background ('{health.get('class0', 'background')}') dominates the pixels"
        warnings.append(
            f"pixel accuracy is {acc:.3f} but {what} is {dice:.3f}: accuracy is lying "
            f"({why}); judge this model by Dice and IoU"
        )
    return warnings


def _collapse_text(health: dict[str, Any], missing: str) -> str:
    """What the output collapsed to: every class it does predict, largest first, with its share."""
    predicted = sorted(((f, n) for n, f in health["pred_fraction"].items() if n != missing and f > 0), reverse=True)
    if not predicted:
        return "nothing else is predicted either"
    return "the output holds " + ", ".join(f"'{n}' {f:.0%}" for f, n in predicted)


# Dice in inference mode this far below Dice with batch statistics: the moving averages are off.
NORM_GAP = 0.15


def train_inference_gap(inference_dice: float | None, batch_stats_dice: float | None, steps_per_epoch: int,
                        momentum: float | None, epoch: int) -> str | None:
    """A warning when the model scores far worse in inference mode than with batch statistics.

    Batch normalisation predicts with moving averages of the batch
    statistics; with few steps (a 20-image dataset gives 3 an epoch) the
    averages (momentum 0.99 keeps 99% of the old value each step) lag far
    behind the weights, so the saved model scores much worse than training
    suggests, and the best checkpoint is chosen on those numbers.

    Args:
        inference_dice: validation mean Dice in inference mode (as saved).
        batch_stats_dice: the same with batch statistics (training mode).
        steps_per_epoch: training steps an epoch.
        momentum: the batch-norm momentum (None if unknown).
        epoch: completed epochs.

    Returns:
        The warning, naming the cause and the fix, or None.
    """
    if inference_dice is None or batch_stats_dice is None:
        return None
    if batch_stats_dice - inference_dice < NORM_GAP:
        return None
    steps = steps_per_epoch * epoch
    caught = "" if momentum is None else (
        f"; with momentum {momentum:g} the moving averages keep {momentum ** steps:.0%} of their starting value "
        f"after the {steps} steps so far"
    )
    return (
        f"validation Dice is {inference_dice:.3f} in inference mode (the model as saved) but {batch_stats_dice:.3f} "
        f"with batch statistics: the batch-norm moving averages have not caught up with the weights "
        f"({steps_per_epoch} steps an epoch{caught}). Use norm 'group' or 'none' (model setting norm), "
        "or train on more images or for many more steps"
    )

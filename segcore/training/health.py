"""Health checks that turn the usual segmentation debugging into messages.

- Before training: masks, head and loss agree (``check_setup``).
- While training: a NaN or infinite loss stops the run with a message naming
  the likely cause (``nan_message``); a class never predicted for several
  epochs (output collapsed to background) and high pixel accuracy with low
  Dice ("accuracy is lying") become warnings (``epoch_health``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

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


def predicted_labels(probs: np.ndarray, mode: str, threshold: float = 0.5) -> np.ndarray:
    """Probabilities to labels: index masks (N, S, S) for binary/multiclass, 0/1 planes for multilabel."""
    if mode == "multiclass":
        return np.argmax(probs, axis=-1).astype(np.uint8)
    if mode == "binary":
        return (probs[..., 0] >= threshold).astype(np.uint8)
    return (probs >= threshold).astype(np.uint8)


def epoch_health(masks: np.ndarray, probs: np.ndarray, mode: str, class_names: Sequence[str], void: int = 255) -> dict[str, Any]:
    """Per-class true vs predicted pixel fractions, pixel accuracy and foreground Dice.

    Args:
        masks: uint8 validation masks at training size (index or planes).
        probs: the model's probabilities for the same images.
        mode: the dataset's mode.
        class_names: the K class names.
        void: mask value not scored.

    Returns:
        ``{"pixel_accuracy", "mean_foreground_dice", "true_fraction": {name: f},
        "pred_fraction": {name: f}, "dice": {name: d}}``; classes 1..K-1 for the
        fractions and Dice.
    """
    pred = predicted_labels(probs, mode)
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
        for c in range(1, k):
            t = (masks == c) & valid
            p = (pred == c) & valid
            true_fraction[class_names[c]] = float(t.sum() / n)
            pred_fraction[class_names[c]] = float(p.sum() / n)
            dice[class_names[c]] = _dice(t, p)
    present = [dice[name] for name in dice if true_fraction[name] > 0]
    return {
        "pixel_accuracy": float(accuracy),
        "mean_foreground_dice": float(np.mean(present)) if present else None,
        "true_fraction": true_fraction,
        "pred_fraction": pred_fraction,
        "dice": dice,
    }


def _dice(t: np.ndarray, p: np.ndarray) -> float:
    denom = int(t.sum()) + int(p.sum())
    return 1.0 if denom == 0 else float(2 * int((t & p).sum()) / denom)


def health_warnings(health: dict[str, Any], missing_epochs: dict[str, int], epoch: int) -> list[str]:
    """Warnings for the latest epoch: collapsed classes and "accuracy is lying".

    Args:
        health: this epoch's ``epoch_health``.
        missing_epochs: class name -> consecutive epochs it was never predicted
            (updated in place).
        epoch: completed epochs so far (1-based).

    Returns:
        The warnings that hold now.
    """
    warnings = []
    for name, frac in health["true_fraction"].items():
        if frac > 0 and health["pred_fraction"].get(name, 0.0) == 0.0:
            missing_epochs[name] = missing_epochs.get(name, 0) + 1
        else:
            missing_epochs[name] = 0
        if missing_epochs[name] >= COLLAPSE_EPOCHS:
            warnings.append(
                f"class '{name}' has not been predicted anywhere in the validation images for "
                f"{missing_epochs[name]} epochs (output collapsed to background): try the Dice or focal loss, "
                "class weighting, more epochs or a higher learning rate"
            )
    acc, dice = health["pixel_accuracy"], health["mean_foreground_dice"]
    if epoch >= 2 and dice is not None and acc >= LYING_ACCURACY and dice < LYING_DICE:
        warnings.append(
            f"pixel accuracy is {acc:.3f} but mean foreground Dice is {dice:.3f}: accuracy is lying "
            "(the background dominates the pixels); judge this model by Dice and IoU"
        )
    return warnings

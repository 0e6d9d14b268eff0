"""Output heads: which activation and how many channels a segmentation mode needs."""

from __future__ import annotations

MODES = ("binary", "multiclass", "multilabel")  # dataset modes, each with its own head


def head_for(mode: str, num_classes: int) -> tuple[str, int]:
    """The head (activation, number of output channels) for a mode.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: K, the number of classes including the background
            (``classes[0]``).

    Returns:
        ``("sigmoid", 1)`` for binary (K must be 2), ``("softmax", K)`` for
        exclusive classes (K >= 2, background included), ``("sigmoid", K - 1)``
        for overlapping labels (one channel per foreground class).

    Raises:
        ValueError: for an unknown mode or a class count the mode cannot have.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes are {list(MODES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise ValueError(f"num_classes must be an int, got {num_classes!r}")
    if mode == "binary":
        if num_classes != 2:
            raise ValueError(
                f"binary mode needs exactly 2 classes (background + foreground), got num_classes={num_classes}"
            )
        return "sigmoid", 1
    if mode == "multiclass":
        if num_classes < 2:
            raise ValueError(
                f"multiclass (softmax) mode needs at least 2 classes including the background, "
                f"got num_classes={num_classes}; a softmax over 1 class is always 1"
            )
        return "softmax", num_classes
    if num_classes < 2:
        raise ValueError(
            f"multilabel mode needs at least 2 classes (background + 1 label), got num_classes={num_classes}"
        )
    return "sigmoid", num_classes - 1

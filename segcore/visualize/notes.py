"""Sentences about a dataset for the pages: its image sizes, its class imbalance, what its own split leaves out."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from segcore.safetext import markdown_text


def size_summary(stats: Mapping[str, Any]) -> str:
    """``DatasetInfo.image_size_stats`` in a few words: ``"128x128"`` or ``"400-800 x 300-600 px (12 sizes)"``."""
    if not stats:
        return ""
    keys = ("min_width", "max_width", "min_height", "max_height")
    if not all(k in stats for k in keys):
        return str(stats.get("most_common_size", ""))
    w0, w1, h0, h1 = (int(stats[k]) for k in keys)
    if (w0, h0) == (w1, h1):
        return f"{w0}x{h0} px"
    distinct = stats.get("distinct_sizes")
    width = f"{w0}" if w0 == w1 else f"{w0}-{w1}"
    height = f"{h0}" if h0 == h1 else f"{h0}-{h1}"
    return f"{width} x {height} px" + (f" ({distinct} sizes)" if distinct else "")


def imbalance_warning(class_names: Sequence[str], fractions: Sequence[float], ratio: float = 20.0, rare: float = 0.01) -> str | None:
    """A sentence describing class imbalance, or ``None`` when classes are balanced enough.

    Foreground classes are compared with each other, and with the background:
    a warning is given when the largest share is more than ``ratio`` times the
    smallest non-empty foreground share, when a foreground class covers less
    than ``rare`` of the pixels, or when a class has no pixels at all.
    """
    if len(fractions) != len(class_names) or len(fractions) < 2:
        return None
    fr = np.asarray(fractions, dtype=np.float64)
    names = list(class_names)
    notes = []
    empty = [names[k] for k in range(1, len(fr)) if fr[k] <= 0]
    if empty:
        notes.append(f"no pixels at all for {', '.join(empty)}")
    fg = [(names[k], fr[k]) for k in range(1, len(fr)) if fr[k] > 0]
    rare_classes = [f"{n} ({f:.2%})" for n, f in fg if f < rare]
    if rare_classes:
        notes.append(f"rare classes: {', '.join(rare_classes)}")
    if fg:
        smallest = min(fg, key=lambda t: t[1])
        largest_k = int(np.argmax(fr))
        if fr[largest_k] / smallest[1] > ratio:
            notes.append(
                f"{names[largest_k]} covers {fr[largest_k] / smallest[1]:.0f}x more pixels than {smallest[0]}"
            )
    if not notes:
        return None
    return (
        "Class imbalance: " + "; ".join(notes) + ". Pixel accuracy will look high even when these classes are missed: "
        "judge the model by per-class Dice/IoU, and consider Dice or class-weighted loss."
    )


def subset_split_note(samples: Iterable[Any]) -> str | None:
    """What the "subset" split (the dataset's own folders) leaves out, as a warning; None when it has train, val and test.

    Args:
        samples: ``DatasetInfo.samples`` (each with a ``subset``: train / val / test or None).
    """
    found: dict[str, int] = {}
    for s in samples:
        subset = str(getattr(s, "subset", None) or (s.get("subset") if isinstance(s, Mapping) else "") or "").lower()
        subset = "val" if subset in ("valid", "validation") else subset
        found[subset] = found.get(subset, 0) + 1
    # Folder names come from the data: written as text, never as markup (the note itself is Markdown).
    shown = markdown_text(", ".join(f"{k} ({v})" for k, v in sorted(found.items()) if k) or "none")
    notes = []
    if not found.get("test"):
        notes.append(
            f"This dataset has no test folder (its folders: {shown}), so the 'subset' split has **no test images**: "
            "a run trained on it gets no test Dice and cannot be compared on held-out images. "
            "Use the 'random' split with a test fraction instead."
        )
    if not found.get("val") and found.get("train"):
        notes.append("It has no val folder either: validation images are drawn from train with the validation fraction.")
    return " ".join(notes) or None

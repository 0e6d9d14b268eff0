"""What a dataset's labels mean: one object every stage asks.

A :class:`Labels` knows the head (``binary``, ``multiclass``,
``multilabel``), the class names, whether class 0 is the background or a
real class (the dataset's ``class0``), the void value, which classes the
means are taken over, which classes rank models, how probabilities become a
mask, which classes an overlay paints, and the sentences captions use. It is
built from a dataset (``Labels.of_dataset``), a run's record
(``Labels.of_run``) or an evaluation report (``Labels.of_report``), so the
rule lives here and nowhere else.

Two means, each named where it is shown:

- **macro** (``scored``): the mean over the classes a user asks about:
  the foreground classes 1..K-1 when class 0 is the background, every class
  when class 0 is a real class. It is the usual figure in papers.
- **headline** (``ranked``): the mean over every class that carries
  information, background included (for a binary task both classes). It
  ranks runs and picks the best, because a model that paints nearly every
  pixel as the majority class scores a high foreground Dice on data where the
  foreground is most of the image, but a background Dice near 0.

numpy only; no Keras, no Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

MODES = ("binary", "multiclass", "multilabel")
VOID = 255

# The key and the words of the headline metric, wherever it is stored or shown.
HEADLINE_KEY = "all_dice"
HEADLINE_NAME = "Dice, all classes"


@dataclass(frozen=True)
class Labels:
    """The meaning of a dataset's labels (see the module notes)."""

    mode: str
    class_names: tuple[str, ...]
    class0_is_background: bool = True
    ignore_index: int | None = VOID

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {list(MODES)}")
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))

    # -- constructors ------------------------------------------------------------
    @classmethod
    def of_dataset(cls, info: Any) -> "Labels":
        """From a ``DatasetInfo``."""
        return cls(info.mode, tuple(info.class_names), bool(info.class0_is_background),
                   getattr(info, "ignore_index", VOID))

    @classmethod
    def of_report(cls, report: Mapping[str, Any]) -> "Labels":
        """From an evaluation record (``include_background`` is the class-0 statement it was scored with)."""
        return cls(report.get("mode", "multiclass"), tuple(report.get("class_names") or ()),
                   not bool(report.get("include_background")), report.get("ignore_index", VOID))

    # -- classes -------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def include_background(self) -> bool:
        """True when class 0 is a real class (counted in the macro mean)."""
        return not self.class0_is_background and self.mode != "multilabel"

    @property
    def scored(self) -> tuple[int, ...]:
        """The classes of the macro mean: 1..K-1, or 0..K-1 when class 0 is a real class."""
        first = 0 if self.include_background or self.num_classes == 1 else 1
        return tuple(range(first, self.num_classes))

    @property
    def real_class_names(self) -> tuple[str, ...]:
        """The names of the real classes (those of ``scored``): a background class 0 is not one, a class 0 such as Sky is."""
        return tuple(self.class_names[k] for k in self.scored)

    @property
    def ranked(self) -> tuple[int, ...]:
        """The classes of the headline mean: every class (for multilabel, row 0 is "no class set")."""
        return tuple(range(self.num_classes))

    @property
    def painted(self) -> tuple[int, ...]:
        """The classes an overlay paints: every class but a background class 0."""
        return tuple(range(0 if self.include_background else 1, self.num_classes))

    @property
    def unpainted(self) -> int | None:
        """The class an overlay leaves unpainted (the background), or None when every class is real."""
        return None if self.include_background else 0

    # -- probabilities to masks ---------------------------------------------------------
    def to_mask(self, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Probabilities ``(H, W, C)`` to a mask: index ``(H, W)``, or planes ``(H, W, K-1)`` for multilabel."""
        return probs_to_mask(probs, self.mode, threshold)

    # -- words -----------------------------------------------------------------------------
    def class0_sentence(self) -> str:
        name = self.class_names[0] if self.class_names else "class 0"
        if self.mode == "multilabel":
            return f"class 0 ('{name}') is 'no class set'"
        return f"class 0 ('{name}') is {'the background' if self.class0_is_background else 'a real class'}"

    def macro_caption(self) -> str:
        """What "macro" means for these labels, in one sentence."""
        if self.include_background:
            return f"macro: mean over all {self.num_classes} classes ({self.class0_sentence()})"
        return f"macro: mean over the foreground classes 1..{self.num_classes - 1} ({self.class0_sentence()})"

    def micro_caption(self) -> str:
        return ("micro: the pixels of " + ("all classes" if self.include_background else "the foreground classes")
                + " pooled")

    def headline_caption(self) -> str:
        """What the headline figure is and why it ranks runs."""
        return (f"{HEADLINE_NAME}: mean Dice over every class, background included; runs are ranked by it, "
                "so a model that paints nearly everything as one class cannot come first")


def probs_to_mask(probs: np.ndarray, mode: str, threshold: float = 0.5) -> np.ndarray:
    """Probabilities ``(H, W, C)`` to a mask.

    ``binary``: class 1 where p >= threshold; ``multiclass``: argmax;
    ``multilabel``: a 0/1 plane per class, p >= threshold. uint8 ``(H, W)``,
    or ``(H, W, K-1)`` for multilabel.
    """
    probs = np.asarray(probs)
    if mode == "multiclass":
        return np.argmax(probs, axis=-1).astype(np.uint8)
    if mode == "binary":
        return (probs[..., 0] >= threshold).astype(np.uint8)
    if mode == "multilabel":
        return (probs >= threshold).astype(np.uint8)
    raise ValueError(f"unknown mode {mode!r}; expected binary, multiclass or multilabel")


def mean_over(values: Sequence[float | None], classes: Sequence[int]) -> float:
    """The mean of ``values[k]`` over ``classes``, skipping n/a (None or NaN); NaN when none is left."""
    picked = [values[k] for k in classes if k < len(values)]
    picked = [float(v) for v in picked if v is not None and v == v]
    return float(np.mean(picked)) if picked else float("nan")


_FALLBACK_PALETTE = (
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
)


def class_colors(classes: Sequence[Any]) -> np.ndarray:
    """The display colour of each class.

    Args:
        classes: ``DatasetInfo.classes`` (objects with ``.color``), dicts with
            ``"color"``, or plain class names (colours then come from a fixed palette).

    Returns:
        ``(K, 3)`` uint8 array, row ``k`` the RGB colour of class ``k``.
    """
    colors = []
    for k, c in enumerate(classes):
        color = getattr(c, "color", None)
        if color is None and isinstance(c, Mapping):
            color = c.get("color")
        if color is None:
            color = _FALLBACK_PALETTE[k % len(_FALLBACK_PALETTE)]
        colors.append(tuple(int(v) for v in color)[:3])
    return np.asarray(colors, dtype=np.uint8).reshape(-1, 3)

"""What the pages need to predict with a run: its head, classes and colours, and its probabilities on dataset images.

Nothing here caches: the pages keep loaded models and read files in
Streamlit's caches and pass their cached loaders in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from segcore.labels import class_colors
from segcore.prediction.predictor import Predictor
from segcore.runrecord import DatasetRecord
from segcore.runs import PREDICTABLE_STATES, RunFolder, RunSummary

# States whose model is kept; a damaged run predicts too while its settings (config.json) can be read.


def runs_that_predict(summaries: Sequence[RunSummary]) -> list[RunSummary]:
    """The runs whose model can predict now: not training, settings readable, a checkpoint saved."""
    return [s for s in summaries if s.state in PREDICTABLE_STATES and "config.json" not in s.damage
            and RunFolder(s.path).has_model]


@dataclass(frozen=True)
class PredictionSetup:
    """How a run's predictions are read and shown.

    Attributes:
        mode: the run's head (``binary``, ``multiclass``, ``multilabel``).
        class_names: a name per class, background first; ``class <k>``
            when the run recorded none.
        colors: ``(K, 3)`` uint8 RGB, row ``k`` the colour of class ``k``:
            the dataset's class colours, else a fixed palette.
        dataset: the run's dataset when it could be opened (its legend), else ``None``.
    """

    mode: str
    class_names: list[str]
    colors: np.ndarray
    dataset: Any = None


def prediction_setup(recorded: DatasetRecord, open_dataset: Callable[[], Any] | None = None) -> PredictionSetup:
    """The mode, classes and colours to predict with, from the dataset a run recorded.

    Args:
        recorded: the run's ``RunRecord.dataset`` (``RunFolder.read_record()``).
        open_dataset: returns the run's ``DatasetInfo`` (the pages pass their
            cached loader); it may raise ``FileNotFoundError`` or
            ``ValueError`` when the dataset is gone or unreadable.

    Returns:
        The setup: colours from the dataset's classes when it opens, else
        from the palette by the run's class names.
    """
    mode, class_names = recorded.mode, list(recorded.classes)
    dataset, colors = None, None
    if open_dataset is not None:
        try:
            dataset = open_dataset()
            colors = class_colors(dataset.classes)
        except (FileNotFoundError, ValueError):
            dataset = None
    if dataset is None:
        colors = class_colors(class_names)
    if not class_names:
        class_names = [f"class {k}" for k in range(len(colors))]
    return PredictionSetup(mode=mode, class_names=class_names, colors=colors, dataset=dataset)


def run_probabilities(
    run: RunFolder,
    dataset,
    ids: Sequence[str],
    *,
    read_cached: Callable[[str], np.ndarray | None] | None = None,
    load_predictor: Callable[[], Predictor] | None = None,
) -> dict[str, np.ndarray]:
    """A run's probabilities on dataset images: its saved test predictions, else its model's.

    Args:
        run: the run folder.
        dataset: the ``Dataset`` the images come from.
        ids: the sample ids.
        read_cached: the saved probabilities of a sample, or ``None`` when
            it has none (default ``run.read_cached_probs``).
        load_predictor: the run's ``Predictor``, asked for only when an image
            has no saved probabilities (default ``Predictor.from_folder(run)``).

    Returns:
        ``{id: float32 (H, W, outputs)}``: saved probabilities are at the
        training size (square); the model's are at the image's own size.

    Raises:
        FileNotFoundError: an image has no saved probabilities and the run no checkpoint.
    """
    read_cached = read_cached or run.read_cached_probs
    predictor = None
    out: dict[str, np.ndarray] = {}
    for sample_id in ids:
        probs = read_cached(sample_id)
        if probs is None:
            if predictor is None:
                predictor = load_predictor() if load_predictor else Predictor.from_folder(run)
            probs = predictor.predict_probs(dataset.image(sample_id))
        out[sample_id] = probs
    return out

"""Evaluate a run's model on its test split; cache the test probabilities.

The evaluation runs at the training size (images and masks resized as for
training, masks with nearest-neighbour), so it scores exactly what the model
was trained to output. The report comes from
``segcore.evaluation.evaluate_predictions`` (per class, macro, micro, per
image); the run folder keeps it as ``evaluation.json``.

The prediction cache under ``predictions/`` holds one ``<id>.npz`` per test
image with ``probs``: uint8 ``(S, S, num_outputs)`` = ``round(p * 255)``, and
``index.json`` with the ids, size, mode and class names, so the Compare page
can show several runs on the same images without loading any model.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from segcore.runs import RunFolder, iso
from segcore.training.pipeline import load_arrays

def predict_arrays(model, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Probabilities float32 ``(N, S, S, outputs)`` for uint8 images ``(N, S, S, C)``."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32)
        out.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def evaluate_run_model(
    run: RunFolder,
    model,
    dataset,
    test_ids: Sequence[str],
    size: int,
    *,
    save_predictions: bool = True,
    write: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``test_ids`` and (optionally) write the report and cache.

    Args:
        run: the run folder.
        model: the loaded Keras model.
        dataset: the run's ``Dataset``.
        test_ids: test sample ids.
        size: the training image size.
        save_predictions: write ``predictions/``.
        write: write ``evaluation.json``.

    Returns:
        The evaluation report as a dict (``per_class``, ``macro``, ``micro``,
        ``per_image`` with ids, ``warnings``).
    """
    info = dataset.info
    images, masks = load_arrays(dataset, list(test_ids), size)
    probs = predict_arrays(model, images)
    report = evaluate_probs(masks, probs, info.mode, info.class_names, list(test_ids))
    report["run_id"] = run.run_id
    report["split"] = "test"
    report["image_size"] = size
    report["created_at"] = iso()
    if write:
        run.write_evaluation(report)
    if save_predictions:
        run.write_prediction_cache(list(test_ids), probs, info.mode, info.class_names, size)
    return report


def evaluate_probs(masks: np.ndarray, probs: np.ndarray, mode: str, class_names: Sequence[str], ids: Sequence[str]) -> dict[str, Any]:
    """The evaluation report for masks and probabilities at the same size."""
    from segcore.evaluation import evaluate_predictions

    result = evaluate_predictions(iter(list(masks)), iter(list(probs)), mode, list(class_names), ignore_index=255, ids=list(ids))
    report = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    report["ids"] = list(ids)
    return _plain(report)


def _plain(obj: Any) -> Any:
    """numpy scalars and NaN to JSON-safe values (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return None if value != value or value in (float("inf"), float("-inf")) else value
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj

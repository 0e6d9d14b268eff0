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

from segcore.fsutil import write_bytes_atomic, write_json_atomic
from segcore.runs import RunFolder, iso
from segcore.training.pipeline import load_arrays

QUANT = 255.0


def predict_arrays(model, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Probabilities float32 ``(N, S, S, outputs)`` for uint8 images ``(N, S, S, C)``."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32)
        out.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def quantize(probs: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(probs * QUANT), 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) / QUANT


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
        save_prediction_cache(run, list(test_ids), probs, info.mode, info.class_names, size)
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


def save_prediction_cache(run: RunFolder, ids: Sequence[str], probs: np.ndarray, mode: str, class_names: Sequence[str], size: int) -> None:
    """Write ``predictions/<id>.npz`` (uint8 probabilities) and ``predictions/index.json``."""
    import io

    run.predictions_dir.mkdir(parents=True, exist_ok=True)
    for sample_id, p in zip(ids, probs):
        buffer = io.BytesIO()
        np.savez_compressed(buffer, probs=quantize(p))
        write_bytes_atomic(run.predictions_dir / f"{sample_id}.npz", buffer.getvalue())
    write_json_atomic(
        run.predictions_dir / "index.json",
        {
            "ids": list(ids),
            "image_size": int(size),
            "mode": mode,
            "class_names": list(class_names),
            "channels": int(probs.shape[-1]) if probs.ndim == 4 else None,
            "encoding": "probs uint8 = round(p * 255), shape (S, S, outputs)",
        },
    )


def load_cached_probs(run: RunFolder, sample_id: str) -> np.ndarray | None:
    """Cached float32 test probabilities for ``sample_id``, or None if the run has none."""
    path = run.predictions_dir / f"{sample_id}.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        return dequantize(data["probs"])

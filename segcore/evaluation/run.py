"""Evaluate a run's model: on its test split, on any dataset with the same classes; cache the test probabilities.

The evaluation runs at the training size (images and masks resized as for
training, masks with nearest-neighbour), so it scores exactly what the model
was trained to output. The report comes from
:func:`segcore.evaluation.report.evaluate_predictions` (per class, macro,
micro, per image); the run folder keeps it as ``evaluation.json``.

The prediction cache under ``predictions/`` holds one ``<id>.npz`` per test
image with ``probs``: uint8 ``(S, S, num_outputs)`` = ``round(p * 255)``, and
``index.json`` with the ids, size, mode and class names, so the Compare page
can show several runs on the same images without loading any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from segcore.data.arrays import load_arrays
from segcore.evaluation.report import EvaluationReport, evaluate_predictions, summary_metrics
from segcore.prediction.predictor import predict_tiled
from segcore.runs import RunFolder, iso


@dataclass(frozen=True)
class RunEvaluation:
    """A run's model scored on its test split.

    ``report`` is the typed result; ``record`` the JSON the run folder keeps
    as ``evaluation.json`` (the report with the ids, ``run_id``, ``split``,
    ``image_size``, ``fit`` and ``created_at``).
    """

    report: EvaluationReport
    record: dict[str, Any]


def evaluate_run_model(
    run: RunFolder,
    model,
    dataset,
    test_ids: Sequence[str],
    size: int,
    *,
    save_predictions: bool = True,
    write: bool = True,
    fit: str = "squash",
) -> RunEvaluation:
    """Evaluate ``model`` on ``test_ids`` and (optionally) write the report and cache.

    Args:
        run: the run folder.
        model: the loaded Keras model.
        dataset: the run's ``Dataset``.
        test_ids: test sample ids.
        size: the training image size.
        save_predictions: write ``predictions/``.
        write: write ``evaluation.json``.
        fit: how the run fitted images (``TrainConfig.fit``): with
            ``"short_side"`` each image is scored whole at the training scale,
            the model slid over it in overlapping windows.

    Returns:
        The typed report and the record written as ``evaluation.json``
        (``per_class``, ``macro``, ``micro``, ``per_image`` with ids, ``warnings``).
    """
    info = dataset.info
    images, masks = load_arrays(dataset, list(test_ids), size, fit=fit)
    probs = predict_tiled(model, images, size)  # whole arrays at the model's size, else slid windows
    report = evaluate_probs(masks, probs, info.mode, info.class_names, list(test_ids), include_background=info.include_background)
    record = report_record(report, list(test_ids))
    record["run_id"] = run.run_id
    record["split"] = "test"
    record["image_size"] = size
    record["fit"] = fit
    record["created_at"] = iso()
    if write:
        run.write_evaluation(record)
    if save_predictions:
        run.write_prediction_cache(list(test_ids), _own_regions(dataset, test_ids, probs, size, fit), info.mode, info.class_names, size)
    return RunEvaluation(report, record)


def evaluate_run(run: RunFolder, *, write: bool = False, workspace=None) -> dict[str, Any]:
    """Evaluate a run's best checkpoint on its test split again (the numbers ``evaluation.json`` holds).

    Args:
        run: the run folder.
        write: rewrite ``evaluation.json``, the prediction cache and the
            test numbers of the run's status (the runs table shows them).
        workspace: where the run's dataset is (default: the current workspace).

    Returns:
        The evaluation record (as ``evaluation.json`` holds it).

    Raises:
        ValueError: the run has no test split.
        FileNotFoundError: the run has no checkpoint, or its dataset is gone.
        RunFileError: the checkpoint is damaged (cut short, not a Keras file).
    """
    from segcore.data.dataset import load_dataset
    from segcore.prediction import Predictor
    from segcore.workspace import get_workspace

    meta = run.read_meta()
    test_ids = meta["split"]["test"]
    if not test_ids:
        raise ValueError(f"run {run.run_id} has no test split to evaluate")
    run.checked_model_path()  # a checkpoint cut short is named as damaged, not "File not found"
    predictor = Predictor.from_folder(run)
    dataset = load_dataset(meta["config"]["train"]["dataset"], workspace or get_workspace())
    evaluation = evaluate_run_model(run, predictor.model, dataset, test_ids, predictor.image_size, save_predictions=write,
                                    write=write, fit=predictor.fit)
    if write:
        run.update_status(test=summary_metrics(evaluation.report))  # the runs table shows the rewritten numbers
    return evaluation.record


def _own_regions(dataset, ids, probs: np.ndarray, size: int, fit: str) -> np.ndarray:
    """The canvas probabilities cut to the images' own region when all the images have the same one."""
    if fit == "squash" or probs.shape[1:3] == (size, size):
        return probs
    from segcore.data.arrays import fitted_size

    regions = {fitted_size(dataset.sample(i).height, dataset.sample(i).width, size, fit) for i in ids}
    if len(regions) != 1:
        return probs
    h, w = regions.pop()
    return probs[:, :h, :w]


def evaluate_probs(masks: np.ndarray, probs: np.ndarray, mode: str, class_names: Sequence[str], ids: Sequence[str],
                   include_background: bool = False) -> EvaluationReport:
    """The evaluation report for masks and probabilities at the same size (void = 255).

    ``include_background``: class 0 is a real class (the dataset's ``class0``), counted in the macro and micro means.
    """
    return evaluate_predictions(iter(list(masks)), iter(list(probs)), mode, list(class_names), ignore_index=255,
                                ids=list(ids), include_background=include_background)


def report_record(report: EvaluationReport, ids: Sequence[str]) -> dict[str, Any]:
    """A report as the JSON a run folder keeps: ``report.to_dict()`` with the evaluated ``ids``."""
    record = report.to_dict()
    record["ids"] = list(ids)
    return _plain(record)


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


# -- any run on any compatible dataset --------------------------------------------

EVALUATIONS_DIR = "evaluations"


def evaluation_key(dataset: str, subset: str | None) -> str:
    """The file stem of a per-dataset evaluation: ``<dataset>`` or ``<dataset>-<subset>``."""
    return dataset if not subset else f"{dataset}-{subset}"


def compatible_datasets(infos, mode: str, num_classes: int) -> list:
    """The datasets (``DatasetInfo``) a model for ``mode`` with ``num_classes`` classes can be scored on."""
    return [d for d in infos if d.mode == mode and d.num_classes == num_classes]


def check_compatible(run_mode: str, run_classes: list[str], run_channels: int, info) -> list[str]:
    """Refuse a dataset a run's model cannot be scored on; warnings for what differs but fits.

    Raises:
        ValueError: a different mode or number of classes, naming both.
    """
    if info.mode != run_mode or info.num_classes != len(run_classes):
        raise ValueError(
            f"dataset {info.name!r} is {info.mode} with {info.num_classes} classes {info.class_names}, but the run's model "
            f"predicts {run_mode} with {len(run_classes)} classes {run_classes}; evaluate it on a dataset with the same classes"
        )
    warnings = []
    if list(info.class_names) != list(run_classes):
        warnings.append(f"class names differ: the run's {run_classes}, the dataset's {info.class_names}; matched by position")
    if info.channels != run_channels:
        warnings.append(f"the dataset's images have {info.channels} channel(s), the model takes {run_channels}: converted")
    return warnings


def evaluate_on_dataset(run: RunFolder, dataset_name: str, *, subset: str | None = None, workspace=None,
                        write: bool = True, batch_size: int = 8) -> dict[str, Any]:
    """Evaluate a run's best model on (a subset of) any dataset with the same classes.

    The result is kept in the run folder per dataset and subset
    (``evaluations/<dataset>[-<subset>].json``); the run's own
    ``evaluation.json`` (its test split) is left as it is. Means count class 0
    as the evaluated dataset states it (``class0``).

    Args:
        run: the run folder.
        dataset_name: a dataset in the workspace.
        subset: only samples of this subset (``train``, ``val``, ``test``, as
            the source folders named them); None: every sample.
        workspace: the workspace (default: the current one).
        write: keep the report in the run folder.

    Raises:
        FileNotFoundError: no such dataset, or the run has no checkpoint.
        ValueError: an incompatible dataset, or a subset with no samples.
    """
    from segcore.data.dataset import load_dataset
    from segcore.prediction import Predictor
    from segcore.workspace import get_workspace

    ws = workspace or get_workspace()
    run.checked_model_path()
    predictor = Predictor.from_folder(run)
    dataset = load_dataset(dataset_name, ws)
    info = dataset.info
    warnings = check_compatible(predictor.mode, predictor.class_names, predictor.channels, info)
    ids = [s.id for s in info.samples if subset is None or s.subset == subset]
    if not ids:
        subsets = sorted({str(s.subset) for s in info.samples})
        raise ValueError(f"dataset {dataset_name!r} has no samples in subset {subset!r}; its subsets are {subsets}")
    meta = run.read_meta()
    if dataset_name == (meta.get("config") or {}).get("train", {}).get("dataset"):
        seen = set((meta.get("split") or {}).get("train", [])) | set((meta.get("split") or {}).get("val", []))
        overlap = sum(1 for i in ids if i in seen)
        if overlap:
            warnings.append(f"{overlap} of these {len(ids)} images were in the run's training or validation split")
    images, masks = load_arrays(dataset, ids, predictor.image_size, fit=predictor.fit)
    images = _to_channels(images, predictor.channels)
    probs = predict_tiled(predictor.model, images, predictor.image_size, batch_size)
    result = evaluate_probs(masks, probs, info.mode, info.class_names, ids, include_background=info.include_background)
    report = report_record(result, ids)
    report["warnings"] = warnings + list(result.warnings)
    report.update(run_id=run.run_id, dataset=dataset_name, subset=subset, image_size=predictor.image_size,
                  class0="class" if info.include_background else "background", created_at=iso())
    if write:
        from segcore.fsutil import write_json_atomic

        write_json_atomic(run.path / EVALUATIONS_DIR / f"{evaluation_key(dataset_name, subset)}.json", report)
    return report


def dataset_evaluations(run: RunFolder) -> dict[str, dict[str, Any]]:
    """The run's evaluations on other datasets, by ``evaluation_key`` (unreadable files skipped)."""
    from segcore.fsutil import read_json

    out = {}
    folder = run.path / EVALUATIONS_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out[path.stem] = read_json(path)
        except (OSError, ValueError):
            continue
    return out


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(images.astype(np.float32) @ weights, 0, 255).astype(np.uint8)[..., None]

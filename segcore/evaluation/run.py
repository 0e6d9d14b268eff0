"""Evaluate a run's model: on its test split, on any dataset with the same classes; cache the test probabilities.

Scores are taken at the labels' own resolution. Each image is predicted the
way ``predict`` predicts a file (:meth:`segcore.prediction.Predictor.predict_probs`:
the training scale, tiles where the image is larger than the model's window,
the probabilities resized back to the image's size), and scored against its
mask as stored at import, at full size, void left out. So ``eval``'s
figures are what a user gets from ``predict`` and any other scorer run on
the original label files. The report comes from
:func:`segcore.evaluation.report.evaluate_predictions` (per class, macro,
micro, every class, per image, boundary and calibration figures); the run
folder keeps it as ``evaluation.json``.

The prediction cache under ``predictions/`` holds one ``<id>.npz`` per test
image with ``probs``: uint8 ``(H, W, num_outputs)`` = ``round(p * 255)`` at
the image's own size, and ``index.json`` with the ids, mode and class
names, so the Compare page can show several runs on the same images without
loading any model.

Leaks are found by content: the run records a hash of the pixels of every
training and validation image (``meta.json`` ``content``), and an evaluation
on any dataset names the images whose pixels the run was trained or
validated on (:func:`leaked_images`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from segcore.data.dataset import pixel_hash
from segcore.evaluation.report import EvaluationReport, evaluate_predictions, summary_metrics
from segcore.runs import RunFolder, iso


@dataclass(frozen=True)
class RunEvaluation:
    """A run's model scored on its test split.

    ``report`` is the typed result; ``record`` the JSON the run folder keeps
    as ``evaluation.json`` (the report with the ids, ``run_id``, ``split``,
    ``image_size``, ``fit``, ``resolution`` and ``created_at``).
    """

    report: EvaluationReport
    record: dict[str, Any]


def score_images(predictor, dataset, ids: Sequence[str], *, on_image=None,
                 include_background: bool | None = None) -> tuple[EvaluationReport, dict[str, str]]:
    """Predict every image of ``ids`` as ``predict`` does and score it against its mask at full size.

    Args:
        predictor: a :class:`segcore.prediction.Predictor`.
        dataset: the ``Dataset`` the images and masks come from.
        ids: its sample ids.
        on_image: called with ``(sample_id, probs)`` after each prediction
            (the prediction cache is written this way, one image at a time).
        include_background: class 0 counted in the macro mean (default: the dataset's ``class0``).

    Returns:
        The report and ``{id: pixel hash}`` of the images scored.
    """
    info = dataset.info
    hashes: dict[str, str] = {}
    ids = list(ids)

    def truths() -> Iterator[np.ndarray]:
        for sample_id in ids:
            yield dataset.mask(sample_id)

    def probabilities() -> Iterator[np.ndarray]:
        for sample_id in ids:
            image = dataset.image(sample_id)
            hashes[sample_id] = pixel_hash(image)
            probs = predictor.predict_probs(image)
            if on_image is not None:
                on_image(sample_id, probs)
            yield probs

    background = info.include_background if include_background is None else include_background
    report = evaluate_predictions(truths(), probabilities(), info.mode, info.class_names,
                                  ignore_index=info.ignore_index if info.ignore_index is not None else 255,
                                  ids=ids, include_background=background)
    return report, hashes


def evaluate_run_model(
    run: RunFolder,
    predictor,
    dataset,
    test_ids: Sequence[str],
    *,
    save_predictions: bool = True,
    write: bool = True,
    checkpoint: str = "best",
) -> RunEvaluation:
    """Evaluate a run's ``predictor`` on ``test_ids`` at full resolution and (optionally) write the report and cache.

    Args:
        run: the run folder.
        predictor: the run's :class:`segcore.prediction.Predictor` (its best checkpoint).
        dataset: the run's ``Dataset``.
        test_ids: test sample ids.
        save_predictions: write ``predictions/`` (each image's probabilities at its own size).
        write: write ``evaluation.json``.
        checkpoint: which of the run's checkpoints ``predictor`` holds (``best`` or ``last``): it decides
            whether validation images among ``test_ids`` leaked (``leak_warnings``).

    Returns:
        The typed report and the record written as ``evaluation.json``.
    """
    info = dataset.info
    test_ids = list(test_ids)
    cache = run.prediction_cache_writer(info.mode, info.class_names) if save_predictions else None
    report, hashes = score_images(predictor, dataset, test_ids, on_image=cache.add if cache else None)
    record = report_record(report, test_ids)
    record["warnings"] = leak_warnings(run, hashes, checkpoint) + list(record.get("warnings") or [])
    record["run_id"] = run.run_id
    record["checkpoint"] = checkpoint
    record["split"] = "test"
    record["image_size"] = predictor.image_size
    record["fit"] = predictor.fit
    record["resolution"] = "native"
    record["created_at"] = iso()
    if write:
        run.write_evaluation(record)
    if cache is not None:
        cache.close()
    return RunEvaluation(report, record)


def evaluate_run(run: RunFolder, *, write: bool = False, workspace=None, checkpoint: str = "best") -> dict[str, Any]:
    """Evaluate a run's best checkpoint on its test split again (the numbers ``evaluation.json`` holds).

    Args:
        run: the run folder.
        write: rewrite ``evaluation.json``, the prediction cache and the
            test numbers of the run's status (the runs table shows them).
        workspace: where the run's dataset is (default: the current workspace).
        checkpoint: ``best`` (the one every page uses) or ``last`` (the final epoch's weights, which no
            validation score chose); ``last`` is only printed, never written.

    Returns:
        The evaluation record (as ``evaluation.json`` holds it).

    Raises:
        ValueError: the run has no test split, or ``write`` with a checkpoint other than ``best``.
        FileNotFoundError: the run has no checkpoint, or its dataset is gone.
        RunFileError: the checkpoint is damaged (cut short, not a Keras file).
    """
    from segcore.data.dataset import load_dataset
    from segcore.prediction import Predictor
    from segcore.workspace import get_workspace

    if write and checkpoint != "best":
        raise ValueError(f"evaluation.json holds the best checkpoint's figures; the {checkpoint!r} checkpoint's are "
                         "printed only (leave out --write)")
    record = run.read_record()
    test_ids = record.test_ids
    if not test_ids:
        raise ValueError(f"run {run.run_id} has no test split to evaluate")
    run.checked_model_path(checkpoint)  # a checkpoint cut short is named as damaged, not "File not found"
    predictor = Predictor.from_folder(run, checkpoint=checkpoint)
    dataset = load_dataset(record.dataset_name, workspace or get_workspace())
    evaluation = evaluate_run_model(run, predictor, dataset, test_ids, save_predictions=write, write=write,
                                    checkpoint=checkpoint)
    if write:
        run.update_status(test=summary_metrics(evaluation.report))  # the runs table shows the rewritten numbers
    return evaluation.record


def run_content(run: RunFolder) -> dict[str, dict[str, str]]:
    """``{"train": {id: hash}, "val": {id: hash}}``: the pixel hashes a run recorded of the images it learned from."""
    try:
        content = run.read_record().content
    except (OSError, ValueError):
        content = {}
    return {part: dict(content.get(part) or {}) for part in ("train", "val")}


def leaked_images(run: RunFolder, hashes: dict[str, str]) -> dict[str, list[str]]:
    """The evaluated images whose pixels the run trained or validated on: ``{"train": [ids], "val": [ids]}``.

    Matched by the pixels' hash (:func:`segcore.data.dataset.pixel_hash`), so a
    copy under another name or in another dataset is found.
    """
    content = run_content(run)
    found: dict[str, list[str]] = {}
    for part in ("train", "val"):
        seen = set(content[part].values())
        hits = [i for i, h in hashes.items() if h in seen]
        if hits:
            found[part] = hits
    return found


def validation_chose(run: RunFolder, checkpoint: str = "best") -> str | None:
    """What the run's validation images decided about ``checkpoint``'s weights (None: nothing).

    The best checkpoint is the epoch with the best validation score; early
    stopping and the plateau schedule follow the validation loss. The last
    checkpoint of a run with neither was decided by its training images alone.
    """
    if checkpoint == "best":
        return "the best checkpoint"
    try:
        train = run.read_record().config.train
    except (OSError, ValueError, AttributeError):
        return "the run's settings (unreadable)"
    chose = [what for what, used in (("when training stopped", int(train.early_stopping_patience) > 0),
                                     ("the learning rate", train.lr_schedule == "plateau")) if used]
    return " and ".join(chose) or None


def leak_warnings(run: RunFolder, hashes: dict[str, str], checkpoint: str = "best") -> list[str]:
    """One warning per split part the evaluated images leaked from, naming up to 5 images.

    Validation images scored with a checkpoint they decided nothing about (``validation_chose``)
    are named in a note, not a leak: they were never trained on and chose nothing.
    """
    out = []
    leaked = leaked_images(run, hashes)
    chose = validation_chose(run, checkpoint) if "val" in leaked else None  # the run's settings, read once
    for part, ids in leaked.items():
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        if part == "val" and chose is None:
            out.append(f"note: {len(ids)} of these {len(hashes)} images validated the run ({shown}); scored with its "
                       f"{checkpoint} checkpoint, which they did not choose (no early stopping, no plateau schedule), "
                       "their scores still measure generalisation")
            continue
        word = "training" if part == "train" else f"validation, which chose {chose}"
        out.append(f"leak: {len(ids)} of these {len(hashes)} images have the same pixels as images the run used for "
                   f"{word} ({shown}); their scores do not measure generalisation")
    return out


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
                        write: bool = True, checkpoint: str = "best") -> dict[str, Any]:
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
        write: keep the report in the run folder (the best checkpoint's only).
        checkpoint: ``best`` or ``last`` (the final epoch's weights: images that only validated the run
            chose nothing about them, so they are named in a note, not as a leak; see ``leak_warnings``).

    Raises:
        FileNotFoundError: no such dataset, or the run has no checkpoint.
        ValueError: an incompatible dataset, or a subset with no samples.
    """
    from segcore.data.dataset import load_dataset
    from segcore.prediction import Predictor
    from segcore.workspace import get_workspace

    ws = workspace or get_workspace()
    run.checked_model_path(checkpoint)
    predictor = Predictor.from_folder(run, checkpoint=checkpoint)
    dataset = load_dataset(dataset_name, ws)
    info = dataset.info
    warnings = check_compatible(predictor.mode, predictor.class_names, predictor.channels, info)
    ids = [s.id for s in info.samples if subset is None or s.subset == subset]
    if not ids:
        subsets = sorted({str(s.subset) for s in info.samples})
        raise ValueError(f"dataset {dataset_name!r} has no samples in subset {subset!r}; its subsets are {subsets}")
    record = run.read_record()
    result, hashes = score_images(predictor, dataset, ids)
    if any(run_content(run).values()):
        warnings.extend(leak_warnings(run, hashes, checkpoint))
    elif dataset_name == record.dataset_name:
        # a run from before pixel hashes were recorded: by sample id within its own dataset
        seen = set(record.split["train"]) | set(record.split["val"])
        overlap = sum(1 for i in ids if i in seen)
        if overlap:
            warnings.append(f"{overlap} of these {len(ids)} images were in the run's training or validation split")
    report = report_record(result, ids)
    report["warnings"] = warnings + list(result.warnings)
    report.update(run_id=run.run_id, dataset=dataset_name, subset=subset, image_size=predictor.image_size,
                  resolution="native", class0="class" if info.include_background else "background", created_at=iso(),
                  checkpoint=checkpoint)
    if write and checkpoint == "best":
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

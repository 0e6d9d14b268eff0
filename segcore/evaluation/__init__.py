"""Evaluation: scores of a model's predictions against the true masks (numpy only, no Keras at import).

One module per part:

- ``metrics``: confusion counts over a split and the per-class, macro and
  micro metrics from them (the absent-class rule);
- ``report``: ``evaluate_predictions`` and its typed ``EvaluationReport``,
  and the headline numbers a run's status keeps (``summary_metrics``);
- ``run``: a run's model scored on its test split or on any dataset with the
  same classes, and the prediction cache the Compare page reads;
- ``review``: the confusion matrix normalised per true class, precision-recall
  curves from probability histograms, and images ranked by where runs disagree;
- ``cli``: the ``eval`` command.

Evaluation may import data, models, runs and prediction; training imports
evaluation, never the other way.
"""

from __future__ import annotations

from segcore.evaluation.scores import (
    METRIC_NAMES,
    SWEEP_BINS,
    SWEEP_THRESHOLDS,
    ConfusionAccumulator,
    accuracy_is_lying,
    counts_from_confusion,
    metrics_from_counts,
    summarize_counts,
)
from segcore.evaluation.report import EvaluationReport, evaluate_predictions, summary_metrics
from segcore.evaluation.run import (
    EVALUATIONS_DIR,
    RunEvaluation,
    check_compatible,
    compatible_datasets,
    dataset_evaluations,
    evaluate_on_dataset,
    evaluate_probs,
    evaluate_run,
    evaluate_run_model,
    evaluation_key,
    report_record,
)

__all__ = [
    "METRIC_NAMES", "SWEEP_BINS", "SWEEP_THRESHOLDS", "ConfusionAccumulator", "accuracy_is_lying", "counts_from_confusion",
    "metrics_from_counts", "summarize_counts", "EvaluationReport", "evaluate_predictions", "summary_metrics",
    "EVALUATIONS_DIR", "RunEvaluation", "check_compatible", "compatible_datasets", "dataset_evaluations",
    "evaluate_on_dataset", "evaluate_probs", "evaluate_run", "evaluate_run_model", "evaluation_key", "report_record",
]

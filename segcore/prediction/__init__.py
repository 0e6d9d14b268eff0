"""Prediction: a finished run's model on any image, at the image's own size (no Keras until a model is loaded).

One module per part:

- ``predictor``: ``Predictor`` (a run's loaded model), tiled prediction,
  probabilities resized back to the image, ``read_image``;
- ``masks``: probabilities to a mask, and the mask's files (``save_mask_png``,
  the per-class file names of a multilabel mask);
- ``run``: what the pages need from a run: its ``PredictionSetup`` (mode,
  classes, colours) and its probabilities on dataset images (saved, else predicted);
- ``batch``: a folder or zip of uploaded images predicted at once, one zip of masks back;
- ``cli``: the ``predict`` command.
"""

from __future__ import annotations

from segcore.prediction.masks import label_plane_files, probs_to_mask, save_mask_png
from segcore.prediction.predictor import Predictor, predict_tiled, read_image, resize_probs
from segcore.prediction.run import PredictionSetup, prediction_setup, run_probabilities, runs_that_predict

__all__ = [
    "Predictor", "predict_tiled", "read_image", "resize_probs",
    "label_plane_files", "probs_to_mask", "save_mask_png",
    "PredictionSetup", "prediction_setup", "run_probabilities", "runs_that_predict",
]

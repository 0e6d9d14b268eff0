"""segcore: a U-Net segmentation workbench (datasets, models, runs, evaluation).

Importing the package is cheap: Keras and TensorFlow are only imported by the
modules that need them (models, losses, training, prediction).
"""

__version__ = "0.1.0"

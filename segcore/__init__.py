"""segcore: a U-Net segmentation workbench (datasets, models, runs, evaluation).

Importing the package is cheap: Keras and TensorFlow are only imported by the
modules that need them (models, losses, training, prediction).

Every custom layer, loss and metric is registered with Keras as soon as Keras
is imported in a process that has imported ``segcore`` (or at once, if Keras
was imported first), so ``import segcore, keras;
keras.saving.load_model("best.keras")`` works, with ``compile=True`` too.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

# The modules whose import registers segcore's Keras objects (package "segcore").
KERAS_OBJECT_MODULES = ("segcore.models.layers", "segcore.losses", "segcore.metrics")


def register_keras_objects() -> None:
    """Register segcore's layers, losses and metrics with Keras (imports Keras)."""
    for name in KERAS_OBJECT_MODULES:
        importlib.import_module(name)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Registers segcore's Keras objects right after ``keras`` itself has been imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # one import of keras, then out of the way
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            register_keras_objects()
        except Exception as exc:  # keras itself imported fine; say why saved models may not load
            warnings.warn(f"segcore could not register its Keras objects: {type(exc).__name__}: {exc}", stacklevel=2)

    def __getattr__(self, name):
        return getattr(self._loader, name)


if "keras" in sys.modules:
    register_keras_objects()
elif not any(isinstance(finder, _KerasImportHook) for finder in sys.meta_path):
    sys.meta_path.insert(0, _KerasImportHook())

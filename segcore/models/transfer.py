"""Start a model from another model's weights: layers matched by name and shape.

The tutorial's path from a binary U-Net to a 4-class one: every layer of the
new model whose name (``encoder/`` prefixed inside the encoder) and weight
shapes match a layer of the source gets the source's weights; the head is
always new by default. The report says which layers were loaded and why each
other one was not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

HEAD = "head"


@dataclass
class TransferReport:
    """What ``load_matching_weights`` did.

    Attributes:
        source: the source file, or the source model's name.
        loaded: names of the layers that got the source's weights.
        skipped: ``(name, reason)`` for each layer with weights that did not.
        loaded_params: parameters copied.
        total_params: parameters of the target model.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    loaded_params: int = 0
    total_params: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": list(self.loaded),
            "skipped": [{"layer": n, "reason": r} for n, r in self.skipped],
            "loaded_params": self.loaded_params,
            "total_params": self.total_params,
        }


def _layers_by_path(model, prefix: str = "") -> dict[str, Any]:
    import keras

    out: dict[str, Any] = {}
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            out.update(_layers_by_path(layer, prefix=f"{path}/"))
        elif layer.weights:
            out[path] = layer
    return out


def load_matching_weights(model, source, *, new_head: bool = True) -> TransferReport:
    """Copy weights from ``source`` into ``model`` where layer names and shapes match.

    Args:
        model: the new model (modified in place).
        source: a ``keras.Model`` or the path of a ``.keras`` file (e.g. an
            earlier run's best checkpoint).
        new_head: leave the output layer (``head``) as initialised even when
            its shape matches.

    Returns:
        A ``TransferReport`` listing loaded and skipped layers with reasons.

    Raises:
        FileNotFoundError: the source file does not exist.
        ValueError: the source is not a ``.keras`` model, or no layer matches.
    """
    import keras

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"source model {path} does not exist; expected a .keras file from an earlier run")
        if not path.endswith(".keras"):
            raise ValueError(f"source model {path} is not a .keras file; expected e.g. runs/<run>/best.keras")
        import segcore.losses  # noqa: F401  (registers the custom objects a saved model may name)
        import segcore.metrics  # noqa: F401
        import segcore.models.layers  # noqa: F401

        try:
            source_model = keras.saving.load_model(path, compile=False)
        except Exception as exc:
            raise ValueError(f"could not load source model {path}: {exc}") from exc
        label = path
    elif isinstance(source, keras.Model):
        source_model, label = source, source.name
    else:
        raise ValueError(f"source must be a .keras path or a keras.Model, got {type(source).__name__}")

    src = _layers_by_path(source_model)
    report = TransferReport(source=label)
    for path, layer in _layers_by_path(model).items():
        report.total_params += sum(_size(w.shape) for w in layer.weights)
        if new_head and path == HEAD:
            report.skipped.append((path, "output head: always new"))
            continue
        other = src.get(path)
        if other is None:
            report.skipped.append((path, "not in source"))
            continue
        want = [tuple(w.shape) for w in layer.weights]
        have = [tuple(w.shape) for w in other.weights]
        if want != have:
            report.skipped.append((path, f"shape mismatch: source {have} vs new {want}"))
            continue
        layer.set_weights(other.get_weights())
        report.loaded.append(path)
        report.loaded_params += sum(int(_size(s)) for s in want)
    if not report.loaded:
        raise ValueError(f"no layer of {model.name!r} matches {label} by name and shape; the models are "
                         "different architectures (encoder, depth or filters differ)")
    return report


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n

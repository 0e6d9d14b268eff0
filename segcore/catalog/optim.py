"""Optimizers and learning-rate schedules, each a registry looked up by name.

The registries are the lists: ``segcore.config.OPTIMIZERS`` and
``segcore.config.LR_SCHEDULES`` are their keys, so the settings, the command
line and the Train page offer exactly what the trainer can build. Adding an
optimizer is one ``OptimizerSpec``; adding a schedule is one function of
``(base_lr, epoch, epochs)`` in ``_SCHEDULES``.

Importing this module does not import Keras; ``OptimizerSpec.build`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class OptimizerSpec:
    """A Keras optimizer by name, with the options segcore gives it.

    Attributes:
        name: registry name (``"sgd"``).
        keras_class: the class in ``keras.optimizers`` (``"SGD"``).
        options: keyword arguments besides the learning rate (``{"momentum": 0.9}``).
    """

    name: str
    keras_class: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self, learning_rate: float):
        """A new ``keras.optimizers`` instance at ``learning_rate``."""
        import keras

        if isinstance(learning_rate, bool) or not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        return getattr(keras.optimizers, self.keras_class)(float(learning_rate), **dict(self.options))


_OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec("adam", "Adam"),
        OptimizerSpec("adamw", "AdamW"),
        OptimizerSpec("sgd", "SGD", {"momentum": 0.9}),
        OptimizerSpec("rmsprop", "RMSprop"),
        OptimizerSpec("nadam", "Nadam"),
    )
}


def _constant(base_lr: float, epoch: int, epochs: int) -> float:
    return base_lr


def _cosine(base_lr: float, epoch: int, epochs: int) -> float:
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def _step(base_lr: float, epoch: int, epochs: int) -> float:
    return base_lr * 0.5 ** (epoch // 10)


def _exponential(base_lr: float, epoch: int, epochs: int) -> float:
    return base_lr * 0.95**epoch


# "plateau" is constant here: the trainer cuts the rate when validation loss stalls.
_SCHEDULES: dict[str, Callable[[float, int, int], float]] = {
    "none": _constant,
    "cosine": _cosine,
    "step": _step,
    "exponential": _exponential,
    "plateau": _constant,
}


def optimizer_names() -> tuple[str, ...]:
    """The registered optimizers, in registry order."""
    return tuple(_OPTIMIZERS)


def schedule_names() -> tuple[str, ...]:
    """The registered learning-rate schedules, in registry order."""
    return tuple(_SCHEDULES)


def make_optimizer(name: str, learning_rate: float):
    """A Keras optimizer by name (``adam``, ``adamw``, ``sgd`` with momentum 0.9, ``rmsprop``, ``nadam``).

    Raises:
        ValueError: an unknown name (listing the valid ones) or a learning rate that is not positive.
    """
    spec = _OPTIMIZERS.get(name)
    if spec is None:
        raise ValueError(f"unknown optimizer {name!r}; valid ones are {list(_OPTIMIZERS)}")
    return spec.build(learning_rate)


def scheduled_lr(schedule: str, base_lr: float, epoch: int, epochs: int) -> float:
    """Learning rate at (0-based) ``epoch`` for a schedule that depends on the epoch only.

    ``cosine``: ``base * 0.5 * (1 + cos(pi * epoch / epochs))``; ``step``: halved
    every 10 epochs; ``exponential``: ``base * 0.95 ** epoch``; ``none`` and
    ``plateau`` (handled by the trainer on validation loss): ``base``.
    """
    fn = _SCHEDULES.get(schedule)
    if fn is None:
        raise ValueError(f"unknown lr_schedule {schedule!r}; valid ones are {list(_SCHEDULES)}")
    return fn(base_lr, epoch, epochs)

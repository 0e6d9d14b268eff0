"""The catalog: what can be chosen, by name, with its quirks; beneath the settings.

- ``encoders``: every U-Net encoder (the plain U-Net's own included) as an ``EncoderSpec``.
- ``optim``: optimizers and learning-rate schedules.
- ``heads``: the dataset modes and the output head each needs.

Nothing here imports Keras at import time, nor any other ``segcore`` module:
``segcore.config`` reads these registries for its lists of choices, and every
layer above reads them through it or directly.
"""

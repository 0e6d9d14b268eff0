"""Training: the fit of one run, inside its training process.

Modules: ``trainer`` (``train_run``: data, model, ``fit``, checkpoints, early
stopping, the time budget), ``pipeline`` (batches, patches, augmentation fed
to ``fit``), ``device`` (devices, precision, distribution), ``health`` (the
checks after each epoch), ``plan`` (settings from a dataset's fingerprint) and
``cli`` (the ``train``, ``sweep``, ``plan``, ``runs``, ``stop`` and ``resume``
commands).

The queue that starts training processes is ``segcore.queue``; importing this
package imports neither it nor Keras.
"""

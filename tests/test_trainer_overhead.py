"""Per-epoch work outside the training step: checkpoints, health predictions, the default backend."""

from __future__ import annotations

import os

import pytest

from segcore.training import device
from segcore.training.trainer import HEALTH_SAMPLES, health_sample_count, link_atomic


def test_the_best_checkpoint_is_a_second_name_not_a_second_save(tmp_path):
    last, best = tmp_path / "last.keras", tmp_path / "best.keras"
    last.write_bytes(b"epoch 3")
    link_atomic(last, best)
    assert best.read_bytes() == b"epoch 3"
    # The next epoch replaces last.keras by rename, as save_model_atomic does: best keeps epoch 3.
    tmp = tmp_path / ".tmp-last"
    tmp.write_bytes(b"epoch 4")
    os.replace(tmp, last)
    assert best.read_bytes() == b"epoch 3" and last.read_bytes() == b"epoch 4"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("available,batch,expected", [
    (100, 8, 32), (100, 5, 30), (100, 64, 32), (7, 4, 4), (3, 8, 3), (32, 32, 32), (1, 1, 1),
])
def test_health_predictions_come_in_whole_batches(available, batch, expected):
    n = health_sample_count(available, batch)
    assert n == expected and n <= max(HEALTH_SAMPLES, 1)
    assert n % min(batch, n) == 0


def test_the_default_backend_is_the_fastest_measured_on_a_gpu(tmp_path, monkeypatch):
    home = {"KERAS_HOME": str(tmp_path)}  # no keras.json there
    jax_installed = device.importlib.util.find_spec("jax") is not None
    assert device.configured_backend(home, gpus=[]) == "tensorflow"
    on_gpu = device.configured_backend(home, gpus=["NVIDIA H100 80GB HBM3"])
    assert on_gpu == ("jax" if jax_installed else "tensorflow")
    # What the user chose always wins.
    assert device.configured_backend(dict(home, KERAS_BACKEND="torch"), gpus=["NVIDIA H100"]) == "torch"
    (tmp_path / "keras.json").write_text('{"backend": "tensorflow"}')
    assert device.configured_backend(home, gpus=["NVIDIA H100"]) == "tensorflow"


def test_nvidia_gpus_are_read_from_the_driver(tmp_path):
    (tmp_path / "0000:01:00.0").mkdir()
    (tmp_path / "0000:01:00.0" / "information").write_text("Model: \t\t NVIDIA H100 80GB HBM3\nIRQ: 1\n")
    assert device.nvidia_gpus(tmp_path) == ["NVIDIA H100 80GB HBM3"]
    assert device.nvidia_gpus(tmp_path / "missing") == []
